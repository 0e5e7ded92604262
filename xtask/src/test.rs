//! `cargo xtask test`: what CI runs (`.ci/run`). Release profile throughout, so the tests and
//! the binaries they start share one build.

use crate::{deps, util};
use anyhow::{Context, Result};
use std::process::Command;
use std::time::{Duration, Instant};

const STEPS: &[(&str, &[&str])] = &[
    ("fmt", &["fmt", "--all", "--", "--check"]),
    (
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    ),
    ("build", &["build", "--release", "--workspace"]),
    ("test", &["test", "--release", "--workspace"]),
];

pub fn run() -> Result<()> {
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let started = Instant::now();
    let env = deps::run().context("step `deps` failed")?;
    timings.push(("deps", started.elapsed()));
    for (var, value) in &env.vars {
        eprintln!("    {var}={}", value.display());
    }

    for (name, args) in STEPS {
        eprintln!("\n==> step `{name}`: cargo {}", args.join(" "));
        let started = Instant::now();
        let mut cmd = Command::new(util::cargo());
        cmd.current_dir(util::workspace_root()).args(*args);
        // Same env for every step, so no build script sees it change between steps.
        for (var, value) in &env.vars {
            cmd.env(var, value);
        }
        let result = util::run(&mut cmd);
        timings.push((name, started.elapsed()));
        if let Err(e) = result {
            print_timings(&timings);
            return Err(e).context(format!("step `{name}` failed"));
        }
    }
    print_timings(&timings);
    eprintln!("==> all steps passed");
    Ok(())
}

fn print_timings(timings: &[(&str, Duration)]) {
    eprintln!("\n==> timings:");
    for (name, took) in timings {
        eprintln!("    {name:<8} {:>8}", util::fmt_duration(*took));
    }
}

//! cargo-fuzz, for the fuzz smoke test (`tests/tests/fuzz_smoke.rs`): installed from crates.io
//! with `cargo install --locked` into the cache, one folder per version, when missing.
//!
//! The fuzz targets need nightly flags (`-Zsanitizer=address`); the machine has one stable
//! toolchain, so the smoke test sets `RUSTC_BOOTSTRAP=1` for its `cargo fuzz` invocations only.
//! Nothing else in the build sees it.

use crate::util;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The folder holding `cargo-fuzz` (to put first on `PATH` for `cargo fuzz`).
pub fn ensure(cache: &Path) -> Result<PathBuf> {
    let root = cache.join(format!("cargo-fuzz-{CARGO_FUZZ_VERSION}"));
    let bin = root.join("bin");
    let exe = bin.join("cargo-fuzz");
    let expected = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    let installed = || {
        Command::new(&exe).arg("--version").output().is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == expected
        })
    };
    if installed() {
        eprintln!(
            "==> cargo-fuzz {CARGO_FUZZ_VERSION}: cached in {}",
            root.display()
        );
        return Ok(bin);
    }
    let started = Instant::now();
    let logs = cache.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = logs.join(format!("cargo-fuzz-{CARGO_FUZZ_VERSION}.log"));
    let _ = std::fs::remove_file(&log);
    eprintln!(
        "==> installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io (1-3 minutes; log: {})",
        log.display()
    );
    util::run_logged(
        Command::new(util::cargo())
            .args(["install", "cargo-fuzz", "--locked", "--version"])
            .arg(format!("={CARGO_FUZZ_VERSION}"))
            .arg("--root")
            .arg(&root),
        &log,
    )
    .context("installing cargo-fuzz")?;
    if !installed() {
        bail!(
            "{} does not report `{expected}` after `cargo install`",
            exe.display()
        );
    }
    eprintln!(
        "==> cargo-fuzz {CARGO_FUZZ_VERSION} installed in {}",
        util::fmt_duration(started.elapsed())
    );
    Ok(bin)
}

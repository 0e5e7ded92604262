//! A short run of every cargo-fuzz target (`fuzz/`): each must build and run
//! for `SECONDS` from its committed seeds without a crash, a leak report, a
//! timeout or an out-of-memory. The long runs (10 minutes and more) are done
//! by hand: see fuzz/README.md.
//!
//! Needs `cargo-fuzz`, which `cargo xtask deps` installs and names in
//! `KIPUKA_TEST_CARGO_FUZZ_BIN`; fails (never skips) without it. The targets
//! use nightly flags (`-Zsanitizer=address`) on the one stable toolchain:
//! `RUSTC_BOOTSTRAP=1` is set for these invocations only.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use kipuka_tests::artifacts::workspace_root;

/// Seconds each target runs.
const SECONDS: u32 = 20;

/// The targets, as in fuzz/Cargo.toml.
const TARGETS: [&str; 6] = [
    "csr",
    "base64_body",
    "pkcs11_uri",
    "config",
    "serverkeygen_attrs",
    "ocsp_request",
];

fn cargo_fuzz_bin() -> PathBuf {
    let dir = std::env::var_os("KIPUKA_TEST_CARGO_FUZZ_BIN").map(PathBuf::from).expect(
        "KIPUKA_TEST_CARGO_FUZZ_BIN is not set: run `cargo xtask deps` and `. target/kipuka-test-env.sh`",
    );
    assert!(
        dir.join("cargo-fuzz").is_file(),
        "{} has no cargo-fuzz: run `cargo xtask deps`",
        dir.display()
    );
    dir
}

/// `cargo fuzz <args>` in fuzz/, with cargo-fuzz first on PATH, nightly
/// flags allowed, and nothing of the outer `cargo test` leaking in.
fn cargo_fuzz(fuzz_dir: &Path, args: &[&str]) -> Command {
    let path = std::env::join_paths(std::iter::once(cargo_fuzz_bin()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("fuzz")
        .args(args)
        .current_dir(fuzz_dir)
        .env("PATH", path)
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    cmd
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        tail(&text, 80)
    );
    text
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn every_fuzz_target_runs_from_its_seeds_without_a_crash() {
    let fuzz_dir = workspace_root().join("fuzz");
    let started = Instant::now();
    run(&mut cargo_fuzz(&fuzz_dir, &["build"]), "cargo fuzz build");
    eprintln!("cargo fuzz build: {:?}", started.elapsed());
    let listed = run(&mut cargo_fuzz(&fuzz_dir, &["list"]), "cargo fuzz list");
    let mut listed: Vec<&str> = listed.lines().map(str::trim).collect();
    listed.sort_unstable();
    let mut expected = TARGETS.to_vec();
    expected.sort_unstable();
    assert_eq!(
        listed, expected,
        "fuzz/Cargo.toml and this test disagree on the targets"
    );
    for target in TARGETS {
        let seeds = fuzz_dir.join("seeds").join(target);
        assert!(
            std::fs::read_dir(&seeds).is_ok_and(|mut d| d.next().is_some()),
            "{} has no seeds",
            seeds.display()
        );
        // A scratch corpus (libFuzzer writes new inputs into the first
        // directory), then the committed seeds, read only.
        let scratch = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let max_time = format!("-max_total_time={SECONDS}");
        let out = run(
            cargo_fuzz(&fuzz_dir, &["run", target])
                .arg(scratch.path())
                .arg(&seeds)
                .args(["--", &max_time, "-rss_limit_mb=2048", "-timeout=10"]),
            &format!("cargo fuzz run {target}"),
        );
        // libFuzzer's last line: "Done N runs in S second(s)".
        let done = out
            .lines()
            .rev()
            .find(|l| l.starts_with("Done ") && l.contains(" runs in "))
            .unwrap_or_else(|| panic!("{target}: no \"Done\" line:\n{}", tail(&out, 40)));
        let runs: u64 = done
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{target}: cannot read {done:?}"));
        assert!(runs > 100, "{target}: only {runs} executions: {done}");
        eprintln!("{target}: {done} (wall {:?})", started.elapsed());
    }
}

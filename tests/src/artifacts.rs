//! The binaries under test: the host and the plugins from the workspace's
//! release build, plus separately built fixtures and the out-of-tree example.
//!
//! Each is built once per test process with a nested `cargo build`. Under
//! `cargo xtask test` the workspace is already built, so that is a no-op.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The five vendor plugins the workspace ships.
pub const VENDOR_PLUGINS: [&str; 5] = ["nshield", "utimaco", "kryoptic", "luna", "thales-csp"];

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run_cargo(args: &[&str], dir: &Path, what: &str) {
    let status = cargo()
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(status.success(), "building {what} failed ({status})");
}

/// The workspace's release output folder, with the host and the five
/// plugins built in it.
pub fn release_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let mut args = vec!["build", "--release", "--quiet", "-p", "kipuka"];
        let packages: Vec<String> = VENDOR_PLUGINS
            .iter()
            .map(|p| format!("kipuka-plugin-{p}"))
            .collect();
        for p in &packages {
            args.extend(["-p", p.as_str()]);
        }
        run_cargo(&args, &root, "the host and the vendor plugins");
        root.join("target").join("release")
    })
}

/// The `kipuka` binary.
pub fn kipuka_bin() -> PathBuf {
    release_dir().join("kipuka")
}

/// The shared-library file of a workspace plugin (`luna` → `libkipuka_plugin_luna.so`).
pub fn vendor_plugin(name: &str) -> PathBuf {
    release_dir().join(format!(
        "{}kipuka_plugin_{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ))
}

/// The fixtures of `tests/fixtures` (incompatible, panicking, not-a-plugin),
/// built with their own cargo invocation into `target/fixtures`.
pub fn fixtures_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target").join("fixtures");
        let target_arg = target.to_string_lossy().into_owned();
        run_cargo(
            &[
                "build",
                "--release",
                "--quiet",
                "--manifest-path",
                "tests/fixtures/Cargo.toml",
                "--target-dir",
                &target_arg,
            ],
            &root,
            "the plugin test fixtures",
        );
        target.join("release")
    })
}

/// A fixture library (`incompatible` → `libkipuka_fixture_incompatible.so`).
pub fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(format!(
        "{}kipuka_fixture_{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ))
}

/// Builds `examples/out-of-tree-plugin` as a third party would: `cargo
/// build --release` in its own folder, its own lock file and target.
pub fn out_of_tree_plugin() -> PathBuf {
    let dir = workspace_root().join("examples").join("out-of-tree-plugin");
    run_cargo(
        &["build", "--release", "--quiet"],
        &dir,
        "the out-of-tree plugin",
    );
    dir.join("target").join("release").join(format!(
        "{}kipuka_plugin_nimbus{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// The test-only PKCS#11 module `tests/pkcs11-shim` (forwards to SoftHSM2 or
/// Kryoptic and emulates a vendor's limits and faults), built in the
/// workspace's release folder. Its file name is not a plugin's, so the
/// host's plugin scan of that folder does not pick it up.
pub fn pkcs11_shim() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let root = workspace_root();
        run_cargo(
            &["build", "--release", "--quiet", "-p", "kipuka-pkcs11-shim"],
            &root,
            "the PKCS#11 test shim",
        );
        let path = root.join("target").join("release").join(format!(
            "{}kipuka_pkcs11_shim{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        assert!(path.is_file(), "{} missing after the build", path.display());
        path
    })
    .clone()
}

/// The `kipuka-bench` load generator, built in the workspace's release
/// output folder (a no-op under `cargo xtask test`, which builds it).
pub fn bench_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = workspace_root();
        run_cargo(
            &["build", "--release", "--quiet", "-p", "kipuka-bench"],
            &root,
            "kipuka-bench",
        );
        root.join("target").join("release").join("kipuka-bench")
    })
    .clone()
}

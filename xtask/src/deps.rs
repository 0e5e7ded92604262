//! `cargo xtask deps`: Debian packages, OpenSSL 3.5 and Kryoptic, and the test environment.

use crate::{cargo_fuzz, kryoptic, openssl, packages, util};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The crates whose sources we build (not link): fetched by cargo through a throwaway manifest
/// in the cache, so the workspace's Cargo.lock and xtask's dependencies stay untouched.
const FETCH_MANIFEST: &str = r#"# Written by `cargo xtask deps`: only used to fetch crate sources. Delete Cargo.lock to pick up
# a newer openssl-src 300.5.x.
[package]
name = "kipuka-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
# 300.5.x = OpenSSL 3.5 (LTS). A plain "300.5" would resolve to 300.6 = OpenSSL 3.6.
openssl-src = "~300.5"
kryoptic = { version = "=1.5.4", default-features = false }

[workspace]
"#;

/// What the tests need, as environment variables.
pub struct TestEnv {
    pub vars: Vec<(&'static str, PathBuf)>,
}

impl TestEnv {
    pub fn to_shell(&self) -> String {
        self.vars
            .iter()
            .map(|(k, v)| format!("export {k}={}\n", shell_quote(&v.to_string_lossy())))
            .collect()
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Source directories of the fetched crates.
pub struct Sources {
    /// e.g. `~/.cargo/registry/src/index.crates.io-…/openssl-src-300.5.5+3.5.5`
    pub openssl_src: PathBuf,
    /// `openssl-src`'s version, e.g. `300.5.5+3.5.5`.
    pub openssl_src_version: String,
    pub kryoptic: PathBuf,
    pub kryoptic_version: String,
}

/// Finds `name`'s manifest in `cargo metadata` output (scanned as text to keep xtask free of
/// a JSON dependency: the fields we need are plain strings).
fn find_package(metadata: &str, name: &str) -> Result<(PathBuf, String)> {
    for chunk in metadata.split("\"manifest_path\":\"").skip(1) {
        let Some(end) = chunk.find('"') else { continue };
        let manifest = Path::new(&chunk[..end]);
        let Some(dir) = manifest.parent() else {
            continue;
        };
        let Some(dir_name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(version) = dir_name.strip_prefix(&format!("{name}-")) {
            if version.starts_with(|c: char| c.is_ascii_digit()) && manifest.ends_with("Cargo.toml")
            {
                return Ok((dir.to_path_buf(), version.to_string()));
            }
        }
    }
    bail!("`cargo metadata` did not list the sources of crate `{name}`")
}

pub fn fetch_sources(cache: &Path) -> Result<Sources> {
    let dir = cache.join("fetch");
    std::fs::create_dir_all(dir.join("src"))?;
    let manifest = dir.join("Cargo.toml");
    if std::fs::read_to_string(&manifest).ok().as_deref() != Some(FETCH_MANIFEST) {
        std::fs::write(&manifest, FETCH_MANIFEST)?;
    }
    let lib = dir.join("src/lib.rs");
    if !lib.exists() {
        std::fs::write(&lib, "")?;
    }
    // `cargo metadata` downloads and unpacks the packages it resolves; with the Cargo.lock
    // from an earlier run and the sources unpacked it needs no network.
    let metadata = util::output(
        Command::new(util::cargo())
            .args([
                "metadata",
                "--quiet",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(&manifest),
    )
    .context("fetching the openssl-src and kryoptic crate sources")?;
    let (openssl_src, openssl_src_version) = find_package(&metadata, "openssl-src")?;
    let (kryoptic, kryoptic_version) = find_package(&metadata, "kryoptic")?;
    Ok(Sources {
        openssl_src,
        openssl_src_version,
        kryoptic,
        kryoptic_version,
    })
}

pub fn run() -> Result<TestEnv> {
    let started = Instant::now();
    packages::ensure()?;
    if !Path::new(SOFTHSM2_MODULE).is_file() {
        bail!("{SOFTHSM2_MODULE} is missing although package softhsm2 is installed");
    }

    let cache = util::cache_root()?;
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create cache directory {}", cache.display()))?;
    let sources = fetch_sources(&cache)?;
    let ossl = openssl::ensure(&cache, &sources)?;
    let kryoptic = kryoptic::ensure(&cache, &sources, &ossl)?;
    let cargo_fuzz_bin = cargo_fuzz::ensure(&cache)?;

    let env = TestEnv {
        vars: vec![
            (
                "KIPUKA_TEST_SOFTHSM2_MODULE",
                PathBuf::from(SOFTHSM2_MODULE),
            ),
            ("KIPUKA_TEST_KRYOPTIC_MODULE", kryoptic),
            ("KIPUKA_TEST_OPENSSL", ossl.bin),
            // The folder of `cargo-fuzz`, for tests/tests/fuzz_smoke.rs.
            ("KIPUKA_TEST_CARGO_FUZZ_BIN", cargo_fuzz_bin),
        ],
    };
    let target = util::target_dir();
    std::fs::create_dir_all(&target)?;
    let env_file = target.join("kipuka-test-env.sh");
    let text = format!(
        "# Written by `cargo xtask deps`; use with: . {}\n{}",
        env_file.display(),
        env.to_shell()
    );
    std::fs::write(&env_file, text)
        .with_context(|| format!("cannot write {}", env_file.display()))?;
    eprintln!(
        "==> deps ready in {} (env also in {})",
        util::fmt_duration(started.elapsed()),
        env_file.display()
    );
    Ok(env)
}

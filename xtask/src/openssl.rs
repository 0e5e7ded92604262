//! OpenSSL 3.5 from the sources in the `openssl-src` crate: `libcrypto.a` + headers for
//! Kryoptic, and the `openssl` program (Debian 12's is 3.0, which knows no ML-DSA).
//!
//! We run OpenSSL's own `Configure` + `make` rather than `openssl_src::Build`, because that
//! builds the libraries only and we need the command-line program too: one build gives both.

use crate::deps::Sources;
use crate::util;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Options for `./Configure`. `--prefix`, `--openssldir` and `--libdir` are added.
/// `no-shared`: a static `libcrypto.a` for Kryoptic and a self-contained `openssl` program.
const CONFIGURE_ARGS: &[&str] = &["no-shared", "no-module", "no-tests", "no-legacy", "no-docs"];

pub struct OpenSsl {
    /// e.g. `3.5.5`
    pub version: String,
    /// `<cache>/openssl-<version>/bin/openssl` (the prefix also holds `lib/ include/ ssl/`).
    pub bin: PathBuf,
    /// `<cache>/openssl-<version>/kryoptic-sources`: `libcrypto.a` at its top and `include/` (links), the layout
    /// Kryoptic's `KRYOPTIC_OPENSSL_SOURCES` expects.
    pub kryoptic_sources: PathBuf,
}

pub fn ensure(cache: &Path, sources: &Sources) -> Result<OpenSsl> {
    let crate_version = &sources.openssl_src_version;
    // openssl-src versions are `300.<minor>.<n>+<OpenSSL version>`.
    let version = crate_version
        .split_once('+')
        .map(|(_, v)| v.to_string())
        .with_context(|| format!("unexpected openssl-src version {crate_version}"))?;
    if !version.starts_with("3.5.") {
        bail!(
            "openssl-src {crate_version} is not OpenSSL 3.5 (check {})",
            cache.join("fetch").display()
        );
    }
    let prefix = cache.join(format!("openssl-{version}"));
    let ossl = OpenSsl {
        bin: prefix.join("bin/openssl"),
        kryoptic_sources: prefix.join("kryoptic-sources"),
        version: version.clone(),
    };
    let stamp = prefix.join(".kipuka-stamp");
    let expected = format!(
        "OpenSSL {version} from openssl-src {crate_version}\nConfigure {}\n",
        CONFIGURE_ARGS.join(" ")
    );
    if util::stamp_ok(&stamp, &expected)
        && ossl.bin.is_file()
        && ossl.kryoptic_sources.join("libcrypto.a").is_file()
    {
        write_config(&prefix)?;
        eprintln!("==> OpenSSL {version}: cached in {}", prefix.display());
        return Ok(ossl);
    }

    let started = Instant::now();
    let build = cache.join(format!("openssl-{version}.build"));
    let logs = cache.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = logs.join(format!("openssl-{version}.log"));
    eprintln!(
        "==> building OpenSSL {version} from openssl-src {crate_version} \
         (3-5 minutes on 2 cores; log: {})",
        log.display()
    );
    let _ = std::fs::remove_file(&log);
    util::remove_tree(&prefix)?;
    util::remove_tree(&build)?;
    util::copy_tree(&sources.openssl_src.join("openssl"), &build)?;

    util::run_logged(
        Command::new("./Configure")
            .current_dir(&build)
            .args(CONFIGURE_ARGS)
            .arg(format!("--prefix={}", prefix.display()))
            .arg(format!("--openssldir={}", prefix.join("ssl").display()))
            .arg("--libdir=lib"),
        &log,
    )?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    util::run_logged(
        Command::new("make")
            .current_dir(&build)
            .arg(format!("-j{jobs}")),
        &log,
    )?;
    util::run_logged(
        Command::new("make").current_dir(&build).arg("install_sw"),
        &log,
    )?;

    std::fs::create_dir_all(&ossl.kryoptic_sources)?;
    symlink(
        Path::new("../lib/libcrypto.a"),
        &ossl.kryoptic_sources.join("libcrypto.a"),
    )?;
    symlink(
        Path::new("../include"),
        &ossl.kryoptic_sources.join("include"),
    )?;

    write_config(&prefix)?;
    let reported = util::output(Command::new(&ossl.bin).arg("version"))?;
    if !reported.starts_with(&format!("OpenSSL {version} ")) {
        bail!(
            "{} reports `{}`, expected OpenSSL {version}",
            ossl.bin.display(),
            reported.trim()
        );
    }
    std::fs::write(&stamp, expected)?;
    util::remove_tree(&build)?;
    eprintln!(
        "==> OpenSSL {version} built in {}: {}",
        util::fmt_duration(started.elapsed()),
        prefix.display()
    );
    Ok(ossl)
}

/// The `openssl.cnf` that `openssl req` insists on: the `openssl-src` crate leaves out
/// `apps/openssl.cnf` (so `make install_ssldirs` fails), hence this minimal one.
const OPENSSL_CNF: &str = "\
# Written by `cargo xtask deps` (the openssl-src crate ships no apps/openssl.cnf).
[ req ]
distinguished_name = req_distinguished_name
x509_extensions = v3_ca

[ req_distinguished_name ]

[ v3_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
";

/// Writes `<prefix>/ssl/openssl.cnf` (the build's OPENSSLDIR) unless it is already current.
fn write_config(prefix: &Path) -> Result<()> {
    let dir = prefix.join("ssl");
    let file = dir.join("openssl.cnf");
    if std::fs::read_to_string(&file).ok().as_deref() != Some(OPENSSL_CNF) {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&file, OPENSSL_CNF)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}

fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link {} -> {}", link.display(), target.display()))
}

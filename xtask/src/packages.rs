//! Debian packages the tests (and the OpenSSL/Kryoptic builds) need.

use crate::util;
use anyhow::{bail, Result};
use std::process::{Command, Stdio};

/// Package, and why we need it.
const PACKAGES: &[(&str, &str)] = &[
    ("softhsm2", "SoftHSM2 token"),
    ("opensc", "pkcs11-tool"),
    ("curl", "EST client in tests"),
    ("strongswan-pki", "EST client in tests (pki --est)"),
    (
        "libstrongswan-extra-plugins",
        "plugins that pki --est needs",
    ),
    (
        "libstrongswan-standard-plugins",
        "pki's openssl plugin, which parses EC certificates (the TLS trust anchor)",
    ),
    ("sqlite3", "inspecting token databases"),
    ("binutils", "strip, in cargo xtask deb"),
    (
        "systemd",
        "systemd-analyze verify/security on the packaged unit (tests/tests/deb_package.rs)",
    ),
    ("perl", "OpenSSL's Configure"),
    ("make", "OpenSSL build"),
    ("gcc", "OpenSSL build"),
    ("libc6-dev", "C headers (gcc only recommends them)"),
    ("pkg-config", "Kryoptic build (rusqlite finds libsqlite3)"),
    (
        "libsqlite3-dev",
        "Kryoptic's sqlite token store links the system libsqlite3",
    ),
    (
        "libclang-dev",
        "bindgen (libclang) in Kryoptic's ossl-sys build script",
    ),
    (
        "python3-prometheus-client",
        "an independent Prometheus text parser for the scraped /metrics (tests/metrics.rs)",
    ),
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.ends_with(b" installed"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Installs the missing packages the tests need with apt (root only).
pub fn ensure() -> Result<()> {
    ensure_list(PACKAGES, "cargo xtask deps")
}

/// Installs the missing packages of `packages` (name, why) with apt (root
/// only), naming each and why; `who` is the command, for messages.
pub fn ensure_list(packages: &[(&str, &str)], who: &str) -> Result<()> {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        let all: Vec<&str> = packages.iter().map(|(p, _)| *p).collect();
        bail!(
            "dpkg-query not found: `{who}` supports Debian 12 (or a close derivative); \
             install the equivalents of: {}",
            all.join(" ")
        );
    }
    let missing: Vec<&str> = packages
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        eprintln!("==> Debian packages: all {} present", packages.len());
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {m}\nrun as root: apt-get update && apt-get install -y {m}",
            m = missing.join(" ")
        );
    }
    for pkg in &missing {
        let why = packages
            .iter()
            .find(|(p, _)| p == pkg)
            .map_or("", |(_, w)| *w);
        eprintln!("==> installing {pkg} with apt ({why})");
    }
    util::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            // stdout is for the `export` lines only.
            .stdout(std::io::stderr()),
    )?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            // stdout is for the `export` lines only.
            .stdout(std::io::stderr()),
    )?;
    let still: Vec<&str> = missing.into_iter().filter(|p| !installed(p)).collect();
    if !still.is_empty() {
        bail!(
            "apt-get reported success but these are still missing: {}",
            still.join(" ")
        );
    }
    Ok(())
}

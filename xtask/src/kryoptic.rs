//! Kryoptic (`libkryoptic_pkcs11.so`), a PKCS#11 soft token with ML-DSA, linked statically
//! against our OpenSSL 3.5 (Debian 12's OpenSSL 3.0 is too old for it).

use crate::deps::Sources;
use crate::openssl::OpenSsl;
use crate::util;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub const KRYOPTIC_VERSION: &str = "1.5.4";
/// `standard`: sqlite token store, RSA, EC, AES, hashes, KDFs; `pqc`: ML-DSA, ML-KEM, SLH-DSA;
/// `ossl/ossl-sys`: link the OpenSSL in `KRYOPTIC_OPENSSL_SOURCES` statically (the default
/// `dynamic` feature would use the system's OpenSSL 3.0 and fail).
const FEATURES: &str = "standard,pqc,ossl/ossl-sys";
const LIBRARY: &str = "libkryoptic_pkcs11.so";

pub fn ensure(cache: &Path, sources: &Sources, ossl: &OpenSsl) -> Result<PathBuf> {
    if sources.kryoptic_version != KRYOPTIC_VERSION {
        bail!(
            "fetched kryoptic {}, expected {KRYOPTIC_VERSION}",
            sources.kryoptic_version
        );
    }
    let name = format!("kryoptic-{KRYOPTIC_VERSION}-openssl-{}", ossl.version);
    let dir = cache.join(&name);
    let library = dir.join(LIBRARY);
    let stamp = dir.join(".kipuka-stamp");
    let expected = format!(
        "kryoptic {KRYOPTIC_VERSION} --features {FEATURES}\nOpenSSL {}\n",
        ossl.version
    );
    if util::stamp_ok(&stamp, &expected) && library.is_file() {
        eprintln!(
            "==> Kryoptic {KRYOPTIC_VERSION}: cached in {}",
            dir.display()
        );
        return Ok(library);
    }

    let started = Instant::now();
    let build = cache.join(format!("{name}.build"));
    let logs = cache.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = logs.join(format!("{name}.log"));
    eprintln!(
        "==> building Kryoptic {KRYOPTIC_VERSION} against OpenSSL {} (1-2 minutes; log: {})",
        ossl.version,
        log.display()
    );
    let _ = std::fs::remove_file(&log);
    util::remove_tree(&dir)?;
    util::remove_tree(&build)?;
    std::fs::create_dir_all(&build)?;
    let src = build.join("src");
    util::copy_tree(&sources.kryoptic, &src)?;
    // Its own workspace root, wherever the cache lives.
    let manifest = src.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest)?;
    text.push_str("\n[workspace]\n");
    std::fs::write(&manifest, text)?;

    util::run_logged(
        Command::new(util::cargo())
            .current_dir(&src)
            .args([
                "build",
                "--release",
                "--locked",
                "--lib",
                "--no-default-features",
            ])
            .args(["--features", FEATURES])
            .arg("--target-dir")
            .arg(build.join("target"))
            .env("KRYOPTIC_OPENSSL_SOURCES", &ossl.kryoptic_sources)
            .env_remove("CARGO_TARGET_DIR"),
        &log,
    )
    .context("building Kryoptic")?;

    std::fs::create_dir_all(&dir)?;
    let built = build.join("target/release").join(LIBRARY);
    std::fs::copy(&built, &library)
        .with_context(|| format!("cannot copy {} to {}", built.display(), library.display()))?;
    sanity_check(&library)?;
    std::fs::write(&stamp, expected)?;
    util::remove_tree(&build)?;
    eprintln!(
        "==> Kryoptic {KRYOPTIC_VERSION} built in {}: {}",
        util::fmt_duration(started.elapsed()),
        library.display()
    );
    Ok(library)
}

/// After a build: the module loads in pkcs11-tool and offers ML-DSA. Kryoptic answers
/// C_GetMechanismList with CKR_TOKEN_NOT_INITIALIZED (0x208) on a fresh slot, so initialise a
/// throwaway token first. pkcs11-tool 0.23 prints unknown mechanisms as `mechtype-0x1C`.
fn sanity_check(library: &Path) -> Result<()> {
    let tmp = library.with_file_name("sanity-check");
    util::remove_tree(&tmp)?;
    std::fs::create_dir_all(&tmp)?;
    let conf = tmp.join("token.conf");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = 0\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            tmp.join("token.sql").display()
        ),
    )?;
    let tool = |args: &[&str]| {
        util::output(
            Command::new("pkcs11-tool")
                .arg("--module")
                .arg(library)
                .args(args)
                .env("KRYOPTIC_CONF", &conf),
        )
    };
    let listed = tool(&[
        "--init-token",
        "--label",
        "sanity",
        "--so-pin",
        "sanity-so-pin",
    ])
    .and_then(|_| tool(&["--list-mechanisms"]));
    util::remove_tree(&tmp)?;
    let listed = listed.context("listing the mechanisms of the new Kryoptic module")?;
    for (number, name) in [
        ("mechtype-0x1C", "CKM_ML_DSA_KEY_PAIR_GEN"),
        ("mechtype-0x1D", "CKM_ML_DSA"),
    ] {
        if !listed.lines().any(|l| {
            let mech = l.trim().split(',').next().unwrap_or("");
            mech.eq_ignore_ascii_case(number)
                || mech == name.trim_start_matches("CKM_").replace('_', "-")
        }) {
            bail!(
                "{} does not offer {name} ({number}):\n{listed}",
                library.display()
            );
        }
    }
    Ok(())
}

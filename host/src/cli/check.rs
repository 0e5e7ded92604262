//! `kipuka check --config FILE`: everything `serve` would do before it
//! listens, with a report per CA. Exits non-zero on the first problem.

use std::{path::Path, process::ExitCode};

use crate::{
    config::Config,
    hsm::{
        engine::{describe_library, load_plugins, HsmEngine},
        KeyCustody,
    },
};

/// Runs the check; prints the report on stdout and the problem on stderr.
pub fn check(config_path: &Path) -> ExitCode {
    match run(config_path) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("kipuka check: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn run(config_path: &Path) -> Result<String, String> {
    use std::fmt::Write;
    let config = Config::load(Some(config_path)).map_err(|e| e.to_string())?;
    let registry = load_plugins(&config);
    let mut out = String::new();
    for refused in registry.refused() {
        let _ = writeln!(out, "warning: refused plugin {refused}");
    }
    let (engine, profile) = HsmEngine::start(&config, &registry).map_err(|e| e.to_string())?;
    let pool = engine.pool();
    let token = pool.context().summary();
    let stats = pool.stats();
    let _ = writeln!(
        out,
        "provider:  {} ({}, chosen by {:?})",
        profile.name,
        profile.vendor,
        engine.chosen_by()
    );
    let _ = writeln!(
        out,
        "library:   {} ({} {}, Cryptoki {})",
        describe_library(config.hsm.library.as_deref(), &profile),
        token.library_manufacturer,
        token.library_description,
        token.cryptoki_version
    );
    let _ = writeln!(
        out,
        "token:     {:?} in slot {} ({} {}, serial {})",
        token.label, token.slot, token.manufacturer, token.model, token.serial
    );
    let _ = writeln!(
        out,
        "sessions:  pool of {} (configured {}, vendor max {}, token max {}); logged in",
        stats.size,
        config.hsm_pool_size(),
        profile
            .max_sessions
            .map_or("unlimited".into(), |n| n.to_string()),
        token
            .max_sessions
            .map_or("unlimited".into(), |n| n.to_string())
    );
    let _ = writeln!(
        out,
        "health:    checked every {:?}",
        engine.health_interval()
    );
    for ca in &config.ca {
        let key = engine.open_ca(ca).map_err(|e| e.to_string())?;
        let _ = writeln!(
            out,
            "CA {} (label {:?}{}):",
            ca.id,
            ca.label(),
            if ca.default { ", default" } else { "" }
        );
        let _ = writeln!(
            out,
            "  key:       {} — {}",
            key.algorithm,
            match key.custody {
                KeyCustody::Hardware => "hardware-held (in the HSM)",
                KeyCustody::Software =>
                    "SOFTWARE-HELD (encrypted PKCS#8 file, SoftwarePqcFallback)",
            }
        );
        let _ = writeln!(out, "  signs:     {} via {}", key.scheme, key.mechanism);
        let _ = writeln!(
            out,
            "  cert:      {} matches the key ({} certificate(s) in chain)",
            ca.cert.display(),
            key.chain.len()
        );
        for w in &key.warnings {
            let _ = writeln!(out, "  warning:   {w}");
        }
        serverkeygen_report(&mut out, ca, pool)?;
    }
    let _ = writeln!(out, "ok: {} CA(s) ready", config.ca.len());
    Ok(out)
}

/// What `/serverkeygen` does for `ca` on this token: how generated keys
/// leave the HSM, the content encryption, and which recipients work. A
/// configured KEK missing from the token is an error, as a missing CA key is.
fn serverkeygen_report(
    out: &mut String,
    ca: &crate::config::CaConfig,
    pool: &std::sync::Arc<crate::hsm::SessionPool>,
) -> Result<(), String> {
    use crate::hsm::keygen::{check_recipient, key_export, CekRecipient};
    use kipuka_plugin_api::{Curve, HashAlg};
    use std::fmt::Write;
    let skg = &ca.serverkeygen;
    if !skg.enabled {
        let _ = writeln!(out, "  keygen:    serverkeygen disabled");
        return Ok(());
    }
    let ctx = pool.context();
    let path = match key_export(ctx) {
        Ok(export) => format!(
            "keys made in the HSM, read out under a one-time transport key with {export} into \
             zeroizing memory (RFC 7030 signs the plaintext key package, so no token can \
             encrypt it alone)"
        ),
        Err(e) => format!("UNAVAILABLE: {e}"),
    };
    let _ = writeln!(out, "  keygen:    {path}");
    let _ = writeln!(
        out,
        "  keygen:    content {}; TLS-only delivery {}",
        skg.content_encryption,
        if skg.allow_unencrypted {
            "ALLOWED"
        } else {
            "refused"
        }
    );
    let oaep = match skg.oaep_hash {
        crate::config::HashChoice::Sha384 => HashAlg::SHA384,
        _ => HashAlg::SHA256,
    };
    let verdict = |r: Result<(), crate::hsm::HsmError>| match r {
        Ok(()) => "yes".to_string(),
        Err(e) => format!("no: {e}"),
    };
    let rsa = verdict(check_recipient(
        ctx,
        &CekRecipient::RsaOaep {
            modulus: Vec::new(),
            exponent: Vec::new(),
            hash: oaep,
        },
    ));
    let ecdh = verdict(check_recipient(
        ctx,
        &CekRecipient::EcdhEs {
            curve: Curve::P256,
            point: Vec::new(),
            shared_info: Vec::new(),
        },
    ));
    let _ = writeln!(out, "  keygen:    RSA-OAEP {oaep} recipients: {rsa}");
    let _ = writeln!(
        out,
        "  keygen:    ECDH-ES recipients: {ecdh} (mechanisms listed; a token that lacks the \
         X9.63 KDF says so at first use)"
    );
    for kek in &skg.kek {
        let uri: crate::hsm::Pkcs11Uri = kek.key.parse().map_err(|e| format!("{e}"))?;
        let found = pool.run_blocking(&|s| crate::hsm::keys::find_secret_key(s, &uri));
        match found {
            Ok(_) => {
                let _ = writeln!(
                    out,
                    "  keygen:    KEK {} = {} on the token",
                    kek.id, kek.key
                );
            }
            Err(e) => return Err(format!("CA {}: serverkeygen KEK {}: {e}", ca.id, kek.id)),
        }
    }
    Ok(())
}

//! `kipuka check --config FILE`: everything `serve` would do before it
//! listens, with a report per CA. Exits non-zero on the first problem.

use std::{path::Path, process::ExitCode};

use x509_cert::Certificate;

use crate::{
    ca::chain::read_certificates,
    config::Config,
    est::auth::ClientIssuers,
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
    // Before the HSM: a missing issuer file is a configuration mistake,
    // reported at once rather than after logging in to the token.
    let clients = client_reports(&config)?;
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
    for (ca, clients) in config.ca.iter().zip(&clients) {
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
        let _ = writeln!(out, "  clients:   {}", clients.accepts);
        for w in &clients.warnings {
            let _ = writeln!(out, "  warning:   {w}");
        }
        serverkeygen_report(&mut out, ca, pool)?;
    }
    let _ = writeln!(out, "ok: {} CA(s) ready", config.ca.len());
    Ok(out)
}

/// What `check` warns about `client_issuers` (a listed issuer that no TLS
/// anchor leads to), one line per issuer naming its CA, for `serve` to log.
/// An unusable issuer file is an error naming the CA and the file.
pub fn client_issuer_warnings(config: &Config) -> Result<Vec<String>, String> {
    let reports = client_reports(config)?;
    Ok(config
        .ca
        .iter()
        .zip(reports)
        .flat_map(|(ca, report)| {
            report
                .warnings
                .into_iter()
                .map(move |w| format!("CA {}: {w}", ca.id))
        })
        .collect())
}

/// Which client certificates one CA accepts, as `check` reports it.
struct ClientReport {
    /// One line.
    accepts: String,
    /// Listed issuers that cannot be reached from a TLS anchor.
    warnings: Vec<String>,
}

/// Reads every CA's `client_issuers` (an unusable file is an error naming
/// the CA and the file) and says what each CA accepts, in configuration order.
fn client_reports(config: &Config) -> Result<Vec<ClientReport>, String> {
    // Read only when some CA lists issuers, so that nothing changes for
    // configurations without client_issuers.
    let anchors = if config.ca.iter().any(|ca| ca.client_issuers.is_some()) {
        client_anchors(config)?
    } else {
        Vec::new()
    };
    let mut reports = Vec::new();
    for ca in &config.ca {
        // A [ca.policy] rule that cannot be compiled stops `serve`: say so here too.
        crate::policy::NamePolicy::for_ca(ca).map_err(|e| e.to_string())?;
        let issuers = ClientIssuers::for_ca(ca).map_err(|e| format!("CA {}: {e}", ca.id))?;
        let Some(issuers) = issuers else {
            reports.push(ClientReport {
                accepts: "any TLS client certificate that verifies to [server] client_ca or a \
                          CA of this server (client_issuers unset)"
                    .into(),
                warnings: Vec::new(),
            });
            continue;
        };
        reports.push(client_report(&issuers, &anchors));
    }
    Ok(reports)
}

fn client_report(issuers: &ClientIssuers, anchors: &[Certificate]) -> ClientReport {
    let listed: Vec<String> = issuers
        .iter()
        .map(|i| format!("{:?} ({})", i.subject(), i.path.display()))
        .collect();
    let warnings = issuers
        .unanchored(anchors)
        .into_iter()
        .map(|i| {
            format!(
                "client_issuers: {} ({:?}) is not a TLS anchor ([server] client_ca or a CA of \
                 this server) nor issued by one: the certificates it issued pass the TLS \
                 handshake only if their clients also send the intermediates up to an anchor",
                i.path.display(),
                i.subject()
            )
        })
        .collect();
    ClientReport {
        accepts: format!(
            "TLS client certificates issued by {} only (client_issuers); others get 403",
            listed.join(", ")
        ),
        warnings,
    }
}

/// The anchors the TLS layer verifies client chains against: the
/// `[server] client_ca` certificates and each CA's own certificate.
fn client_anchors(config: &Config) -> Result<Vec<Certificate>, String> {
    let mut anchors = Vec::new();
    for path in &config.server.client_ca {
        anchors.extend(read_certificates(path).map_err(|e| format!("[server] client_ca: {e}"))?);
    }
    // A CA certificate that cannot be read is reported by the CA's own check.
    for ca in &config.ca {
        if let Some(cert) = read_certificates(&ca.cert)
            .ok()
            .and_then(|c| c.into_iter().next())
        {
            anchors.push(cert);
        }
    }
    Ok(anchors)
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

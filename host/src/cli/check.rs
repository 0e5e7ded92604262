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
    }
    let _ = writeln!(out, "ok: {} CA(s) ready", config.ca.len());
    Ok(out)
}

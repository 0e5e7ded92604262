//! `kipuka ca init`: a self-signed CA certificate for a key in the HSM (or
//! the software ML-DSA key), written where `[[ca]] cert` says.

use std::{path::Path, process::ExitCode};

use crate::{
    ca::selfsign::self_signed_ca,
    config::Config,
    hsm::engine::{load_plugins, HsmEngine},
};

/// Makes the certificate; refuses to overwrite an existing file unless `force`.
pub fn init(
    config_path: &Path,
    ca_id: &str,
    subject: &str,
    days: u32,
    out: Option<&Path>,
    force: bool,
) -> ExitCode {
    match run(config_path, ca_id, subject, days, out, force) {
        Ok(path) => {
            println!("wrote the self-signed certificate of CA {ca_id} to {path}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kipuka ca init: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    config_path: &Path,
    ca_id: &str,
    subject: &str,
    days: u32,
    out: Option<&Path>,
    force: bool,
) -> Result<String, String> {
    let config = Config::load(Some(config_path)).map_err(|e| e.to_string())?;
    let ca = config
        .ca
        .iter()
        .find(|c| c.id == ca_id)
        .ok_or_else(|| format!("no [[ca]] with id {ca_id:?} in {}", config_path.display()))?;
    let out = out.unwrap_or(&ca.cert);
    if out.exists() && !force {
        return Err(format!(
            "{} exists; pass --force to replace it",
            out.display()
        ));
    }
    let registry = load_plugins(&config);
    let (engine, _) = HsmEngine::start(&config, &registry).map_err(|e| e.to_string())?;
    let key = engine.open_key(ca).map_err(|e| e.to_string())?;
    for w in &key.warnings {
        eprintln!("warning: {w}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let der = runtime
        .block_on(self_signed_ca(
            &key.signer,
            key.algorithm,
            key.scheme,
            &key.spki,
            subject,
            days,
        ))
        .map_err(|e| e.to_string())?;
    let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der)
        .map_err(|e| e.to_string())?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(out, pem).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out.display().to_string())
}

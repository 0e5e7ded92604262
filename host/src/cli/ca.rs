//! `kipuka ca init`: a self-signed CA certificate for a key in the HSM (or
//! the software ML-DSA key), written where `[[ca]] cert` says; and
//! `kipuka ca keygen-software`: a new encrypted ML-DSA key file for the
//! software fallback.

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

/// Writes a new ML-DSA key (parameter set `44`, `65` or `87`) as an encrypted
/// PKCS#8 PEM to `out` (mode 0600), encrypted under the passphrase in the
/// environment variable `passphrase_env`; refuses to overwrite `out`.
pub fn keygen_software(set: &str, out: &Path, passphrase_env: &str) -> ExitCode {
    match run_keygen(set, out, passphrase_env) {
        Ok(()) => {
            println!("wrote an encrypted ML-DSA-{set} key to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kipuka ca keygen-software: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_keygen(set: &str, out: &Path, passphrase_env: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    use kipuka_plugin_api::MlDsaParameterSet;
    use secrecy::{ExposeSecret, SecretString};

    use crate::hsm::pqc_fallback::SoftwarePqcFallback;

    let set = match set {
        "44" => MlDsaParameterSet::ML_DSA_44,
        "65" => MlDsaParameterSet::ML_DSA_65,
        "87" => MlDsaParameterSet::ML_DSA_87,
        other => {
            return Err(format!(
                "unknown ML-DSA parameter set {other:?} (44, 65, 87)"
            ))
        }
    };
    let passphrase = match std::env::var(passphrase_env) {
        Ok(v) => SecretString::from(v),
        Err(std::env::VarError::NotPresent) => {
            return Err(format!("environment variable {passphrase_env} is not set"))
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!(
                "environment variable {passphrase_env} is not valid UTF-8"
            ))
        }
    };
    if passphrase.expose_secret().is_empty() {
        return Err(format!("environment variable {passphrase_env} is empty"));
    }
    if out.exists() {
        return Err(format!("{} exists; it is never replaced", out.display()));
    }
    let key = SoftwarePqcFallback::generate(set).map_err(|e| e.to_string())?;
    let pem = key
        .to_encrypted_pkcs8_pem(&passphrase)
        .map_err(|e| e.to_string())?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // create_new: never replace a file that appeared since the check above.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", out.display()))
}

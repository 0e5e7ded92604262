//! `kipuka enroll-codes create|list|revoke`: one-time enrollment codes.
//!
//! A code is an HTTP Basic user (`code-<16 hex>`) and password (144 random
//! bits, base64url) that may enroll only its NAME (the policy's `{user}`) at
//! one CA, at most N times, before it expires. The password is printed once
//! and stored only as its argon2id hash.

use std::{
    path::Path,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use zeroize::Zeroizing;

use crate::{
    config::Config,
    store::{open_store, EnrollmentCode, SharedStore, CODE_PREFIX},
};

fn open(config_path: &Path) -> Result<(Config, SharedStore), String> {
    let config = Config::load(Some(config_path)).map_err(|e| e.to_string())?;
    let store = open_store(&config.db).map_err(|e| e.to_string())?;
    Ok((config, store))
}

/// `24h`, `30m`, `7d`, `90s`: a positive duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("--expires {text:?}: write a number followed by s, m, h or d (e.g. 24h)");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| format!("the random number generator failed: {e}"))?;
    Ok(b)
}

/// The options of `create`.
pub struct CreateOptions<'a> {
    /// `--ca`.
    pub ca: &'a str,
    /// `--name`.
    pub name: &'a str,
    /// `--uses`.
    pub uses: u32,
    /// `--expires`.
    pub expires: &'a str,
    /// `--json`.
    pub json: bool,
}

/// `kipuka enroll-codes create`.
pub fn create(config_path: &Path, o: &CreateOptions<'_>) -> ExitCode {
    report("create", create_code(config_path, o))
}

fn create_code(config_path: &Path, o: &CreateOptions<'_>) -> Result<String, String> {
    use argon2::{
        password_hash::{rand_core::OsRng, PasswordHasher, SaltString},
        Argon2,
    };
    use base64ct::{Base64UrlUnpadded, Encoding};
    let lifetime = parse_duration(o.expires)?;
    if o.uses == 0 {
        return Err("--uses must be at least 1".into());
    }
    if o.name.is_empty() || o.name.chars().any(char::is_control) {
        return Err("--name must be a non-empty name without control characters".into());
    }
    let (config, store) = open(config_path)?;
    let ca = config
        .ca
        .iter()
        .find(|c| c.id == o.ca)
        .ok_or_else(|| format!("no [[ca]] with id {:?}", o.ca))?;
    if ca.policy.is_none() {
        return Err(format!(
            "CA {} has no [ca.policy]: a code could enroll any name there; give it a policy \
             that names {{user}} (e.g. allow_cn = [\"{{user}}\"])",
            ca.id
        ));
    }
    let id = format!(
        "{CODE_PREFIX}{}",
        random::<8>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let secret = Zeroizing::new(Base64UrlUnpadded::encode_string(&random::<18>()?));
    let secret_hash = Argon2::default()
        .hash_password(secret.as_bytes(), &SaltString::generate(&mut OsRng))
        .map_err(|e| format!("hashing the code: {e}"))?
        .to_string();
    let now = SystemTime::now();
    let code = EnrollmentCode {
        id: id.clone(),
        ca_id: ca.id.clone(),
        name: o.name.to_string(),
        secret_hash,
        uses: o.uses,
        uses_left: o.uses,
        expires_at: now + lifetime,
        revoked: false,
        created_at: now,
    };
    store
        .create_enrollment_code(&code)
        .map_err(|e| e.to_string())?;
    let expires = humantime(code.expires_at);
    Ok(if o.json {
        serde_json::json!({
            "user": id,
            "password": secret.as_str(),
            "ca": code.ca_id,
            "name": code.name,
            "uses": code.uses,
            "expires": expires,
        })
        .to_string()
    } else {
        format!(
            "user:     {id}\npassword: {}\n(shown once; enrolls {:?} at CA {} up to {} time(s) until {expires})",
            secret.as_str(),
            code.name,
            code.ca_id,
            code.uses
        )
    })
}

fn humantime(t: SystemTime) -> String {
    x509_cert::time::Time::try_from(t).map_or_else(|_| format!("{t:?}"), |t| t.to_string())
}

fn state(c: &EnrollmentCode, now: SystemTime) -> &'static str {
    c.unusable(now).unwrap_or("usable")
}

/// `kipuka enroll-codes list`.
pub fn list(config_path: &Path, json: bool) -> ExitCode {
    report(
        "list",
        open(config_path).and_then(|(_, store)| {
            let codes = store.enrollment_codes().map_err(|e| e.to_string())?;
            let now = SystemTime::now();
            Ok(if json {
                serde_json::Value::Array(
                    codes
                        .iter()
                        .map(|c| {
                            serde_json::json!({
                                "user": c.id, "ca": c.ca_id, "name": c.name, "uses": c.uses,
                                "uses_left": c.uses_left, "expires": humantime(c.expires_at),
                                "state": state(c, now),
                            })
                        })
                        .collect(),
                )
                .to_string()
            } else {
                let mut out = String::from("USER                   CA        NAME                 USES LEFT  EXPIRES               STATE");
                for c in &codes {
                    out.push_str(&format!(
                        "\n{:<22} {:<9} {:<20} {:>4} {:>4}  {:<21} {}",
                        c.id,
                        c.ca_id,
                        c.name,
                        c.uses,
                        c.uses_left,
                        humantime(c.expires_at),
                        state(c, now)
                    ));
                }
                out
            })
        }),
    )
}

/// `kipuka enroll-codes revoke`.
pub fn revoke(config_path: &Path, user: &str) -> ExitCode {
    report(
        "revoke",
        open(config_path).and_then(|(_, store)| {
            match store
                .revoke_enrollment_code(user)
                .map_err(|e| e.to_string())?
            {
                true => Ok(format!("revoked {user}")),
                false => Err(format!("no enrollment code {user:?}")),
            }
        }),
    )
}

fn report(what: &str, result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kipuka enroll-codes {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

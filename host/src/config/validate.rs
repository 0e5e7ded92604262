//! Cross-field rules that serde cannot express. Each error names where
//! (`ca "ec"`, `hsm`, ...) and the offending value.

use std::{collections::HashSet, net::SocketAddr};

use kipuka_plugin_api::UserType;

use super::error::{invalid, ConfigError};
use super::{AuthConfig, CaConfig, Config, DbConfig, HsmConfig, KeySpec, LogConfig, ServerConfig};

/// keyUsage names accepted in `profile.key_usage` (RFC 5280 §4.2.1.3).
/// `contentCommitment` is the newer name of `nonRepudiation`.
pub const KEY_USAGES: &[&str] = &[
    "digitalSignature",
    "nonRepudiation",
    "contentCommitment",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
];

/// extendedKeyUsage names accepted in `profile.extended_key_usage`
/// (RFC 5280 §4.2.1.12); any dotted OID is accepted too.
pub const EXTENDED_KEY_USAGES: &[&str] = &[
    "serverAuth",
    "clientAuth",
    "codeSigning",
    "emailProtection",
    "timeStamping",
    "OCSPSigning",
];

impl Config {
    /// Checks the rules below; [`Config::load`] calls it.
    ///
    /// - at least one `[[ca]]`;
    /// - CA ids and labels unique and `[A-Za-z0-9_-]{1,64}` (a label is a URL
    ///   path segment, so `..` and `/` are out); at most one `default = true`;
    /// - each CA has exactly one of `key` (a `pkcs11:` URI) and `software_key`;
    ///   key usages, extended key usages and allowed key specs are known;
    ///   `client_issuers`, when set, is a non-empty list of distinct paths
    ///   (the files themselves are read at start-up, not here);
    /// - `[hsm]`: at most one of `pin_env`, `pin_file`, `pin`; `env` names and
    ///   `user_type` valid; error thresholds ordered;
    /// - `[auth]` users unique, argon2 hashes, known CA ids; sane `[server]`,
    ///   `[db]`, `[log]` values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(true)
    }

    /// [`validate`](Self::validate) without requiring a `[[ca]]`: for commands
    /// that only load plugins. CAs that are present are still checked.
    pub fn validate_for_plugins_only(&self) -> Result<(), ConfigError> {
        self.check(false)
    }

    fn check(&self, require_ca: bool) -> Result<(), ConfigError> {
        check_server(&self.server)?;
        check_hsm(&self.hsm)?;
        if require_ca && self.ca.is_empty() {
            return Err(invalid(
                "ca",
                "no [[ca]] is configured: kipuka needs at least one CA to serve",
            ));
        }
        check_cas(&self.ca)?;
        check_auth(&self.auth, &self.ca)?;
        check_db(&self.db)?;
        check_log(&self.log)?;
        check_metrics(&self.metrics, &self.server)
    }
}

fn check_server(s: &ServerConfig) -> Result<(), ConfigError> {
    let at = "server";
    if s.tls_cert.is_some() != s.tls_key.is_some() {
        return Err(invalid(at, "tls_cert and tls_key must be set together"));
    }
    if s.tls_versions.is_empty() {
        return Err(invalid(
            at,
            "tls_versions is empty: offer \"1.2\", \"1.3\" or both",
        ));
    }
    if s.max_body_bytes == 0
        || s.request_timeout_secs == 0
        || s.max_connections == 0
        || s.max_connections_per_ip == 0
    {
        return Err(invalid(
            at,
            "max_body_bytes, request_timeout_secs, max_connections and max_connections_per_ip \
             must be greater than 0",
        ));
    }
    // The realm is sent inside a quoted string in WWW-Authenticate.
    if s.realm.is_empty()
        || s.realm
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(invalid(
            at,
            format!(
                "realm {:?} must be non-empty, without quotes, backslashes or control characters",
                s.realm
            ),
        ));
    }
    Ok(())
}

fn check_hsm(h: &HsmConfig) -> Result<(), ConfigError> {
    let at = "hsm";
    let sources: Vec<&str> = [
        (h.pin_env.is_some(), "pin_env"),
        (h.pin_file.is_some(), "pin_file"),
        (h.pin.is_some(), "pin"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if sources.len() > 1 {
        return Err(invalid(
            at,
            format!(
                "set at most one PIN source, found {}",
                sources.join(" and ")
            ),
        ));
    }
    if let Some(name) = &h.pin_env {
        check_env_name(at, "pin_env", name)?;
    }
    for name in h.env.keys() {
        check_env_name(at, "env", name)?;
    }
    if let Some(user_type) = &h.user_type {
        parse_user_type(user_type)?;
    }
    if h.pool_size == Some(0)
        || h.acquire_timeout_ms == 0
        || h.operation_timeout_ms == 0
        || h.health_check_interval_secs == 0
    {
        return Err(invalid(
            at,
            "pool_size, acquire_timeout_ms, operation_timeout_ms and health_check_interval_secs \
             must be greater than 0",
        ));
    }
    if h.degraded_after_errors == 0 || h.unavailable_after_errors < h.degraded_after_errors {
        return Err(invalid(
            at,
            format!(
                "need 0 < degraded_after_errors ({}) <= unavailable_after_errors ({})",
                h.degraded_after_errors, h.unavailable_after_errors
            ),
        ));
    }
    Ok(())
}

/// `hsm.user_type`: `user`, `crypto-user`, a `CKU_*` name or a number
/// (`0x80000001`, `1`). The SO and context-specific types are refused:
/// kipuka only ever signs as a normal or crypto user.
pub(crate) fn parse_user_type(text: &str) -> Result<UserType, ConfigError> {
    let number = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    let user = match text.to_ascii_lowercase().as_str() {
        "user" => Some(UserType::USER),
        "crypto-user" | "crypto_user" => Some(UserType::LUNA_CRYPTO_USER),
        _ => UserType::from_name(text).or(number.map(UserType)),
    };
    match user {
        Some(u) if u != UserType::SO && u != UserType::CONTEXT_SPECIFIC => Ok(u),
        Some(_) => Err(invalid("hsm", format!("user_type {text:?}: kipuka does not log in as the SO or context-specific user"))),
        None => Err(invalid(
            "hsm",
            format!("user_type {text:?} is not \"user\", \"crypto-user\", a CKU_* name or a number like \"0x80000001\""),
        )),
    }
}

/// A POSIX-portable environment variable name.
fn check_env_name(at: &str, key: &str, name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(invalid(
            at,
            format!("{key}: {name:?} is not a valid environment variable name"),
        ))
    }
}

/// `[A-Za-z0-9_-]{1,64}`: safe as a URL path segment, file name and log field.
fn is_label(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_cas(cas: &[CaConfig]) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    let mut labels = HashSet::new();
    let mut default: Option<&str> = None;
    for ca in cas {
        let at = format!("ca {:?}", ca.id);
        if !is_label(&ca.id) {
            return Err(invalid(
                at,
                "id must be 1 to 64 characters from A-Z a-z 0-9 _ -",
            ));
        }
        if !is_label(ca.label()) {
            return Err(invalid(
                at,
                format!("label {:?} must be 1 to 64 characters from A-Z a-z 0-9 _ - (it is a URL path segment)", ca.label()),
            ));
        }
        if !ids.insert(ca.id.as_str()) {
            return Err(invalid(at, "duplicate CA id"));
        }
        if !labels.insert(ca.label()) {
            return Err(invalid(at, format!("duplicate CA label {:?}", ca.label())));
        }
        if ca.default {
            if let Some(first) = default {
                return Err(invalid(
                    at,
                    format!("default = true is also set on ca {first:?}: at most one default CA"),
                ));
            }
            default = Some(&ca.id);
        }
        check_ca(ca, &at)?;
    }
    Ok(())
}

fn check_ca(ca: &CaConfig, at: &str) -> Result<(), ConfigError> {
    if ca.cert.as_os_str().is_empty() {
        return Err(invalid(at, "cert is empty"));
    }
    match (ca.key.is_empty(), &ca.software_key) {
        (true, None) => return Err(invalid(at, "set key (a pkcs11: URI) or software_key")),
        (false, Some(_)) => return Err(invalid(at, "set key or software_key, not both")),
        (false, None)
            if !ca
                .key
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("pkcs11:")) =>
        {
            return Err(invalid(
                at,
                format!("key {:?} is not a pkcs11: URI (RFC 7512)", ca.key),
            ));
        }
        _ => {}
    }
    let (env, file) = (
        &ca.software_key_passphrase_env,
        &ca.software_key_passphrase_file,
    );
    if ca.software_key.is_none() {
        if env.is_some() || file.is_some() {
            return Err(invalid(
                at,
                "software_key_passphrase_env / software_key_passphrase_file is set without software_key",
            ));
        }
    } else if env.is_some() == file.is_some() {
        return Err(invalid(
            at,
            "software_key needs exactly one of software_key_passphrase_env and software_key_passphrase_file",
        ));
    }
    if let Some(name) = env {
        check_env_name(at, "software_key_passphrase_env", name)?;
    }
    let p = &ca.profile;
    if p.validity_days == 0 {
        return Err(invalid(at, "profile.validity_days must be greater than 0"));
    }
    if let Some(bad) = p
        .key_usage
        .iter()
        .find(|k| !KEY_USAGES.contains(&k.as_str()))
    {
        return Err(invalid(
            at,
            format!(
                "profile.key_usage {bad:?} is not one of {}",
                KEY_USAGES.join(", ")
            ),
        ));
    }
    if let Some(bad) = p
        .extended_key_usage
        .iter()
        .find(|k| !EXTENDED_KEY_USAGES.contains(&k.as_str()) && !is_dotted_oid(k))
    {
        return Err(invalid(
            at,
            format!(
                "profile.extended_key_usage {bad:?} is not one of {} nor a dotted OID",
                EXTENDED_KEY_USAGES.join(", ")
            ),
        ));
    }
    if p.allowed_keys.is_empty() {
        return Err(invalid(
            at,
            "profile.allowed_keys is empty: no CSR could be accepted",
        ));
    }
    for spec in &p.allowed_keys {
        spec.parse::<KeySpec>()
            .map_err(|e| invalid(at, format!("profile.allowed_keys: {e}")))?;
    }
    for (key, urls) in [
        ("crl_urls", &p.crl_urls),
        ("ocsp_urls", &p.ocsp_urls),
        ("ca_issuers_urls", &p.ca_issuers_urls),
    ] {
        for url in urls {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || !url.is_ascii() || url.contains(char::is_whitespace) {
                return Err(invalid(
                    at,
                    format!("profile.{key}: {url:?} is not an http:// or https:// URL in ASCII"),
                ));
            }
        }
    }
    check_client_issuers(ca, at)?;
    ca.crl.check(at)?;
    ca.ocsp.check(at)?;
    check_serverkeygen(ca, at)
}

/// `client_issuers`: the list's shape only. Reading the files is start-up
/// work (`serve`, `check`), like every other path of the configuration.
fn check_client_issuers(ca: &CaConfig, at: &str) -> Result<(), ConfigError> {
    let Some(paths) = &ca.client_issuers else {
        return Ok(());
    };
    // An empty list could mean "no certificate" or "any certificate": refuse
    // the ambiguity rather than guess.
    if paths.is_empty() {
        return Err(invalid(
            at,
            "client_issuers is empty: list at least one issuer certificate file, or leave \
             client_issuers out to accept every client certificate that verifies to \
             [server] client_ca",
        ));
    }
    let mut seen = HashSet::new();
    for path in paths {
        if path.as_os_str().is_empty() {
            return Err(invalid(at, "client_issuers has an empty path"));
        }
        if !seen.insert(path) {
            return Err(invalid(
                at,
                format!("client_issuers lists {} twice", path.display()),
            ));
        }
    }
    Ok(())
}

fn check_serverkeygen(ca: &CaConfig, at: &str) -> Result<(), ConfigError> {
    let skg = &ca.serverkeygen;
    if skg.oaep_hash == super::HashChoice::Sha512 {
        return Err(invalid(
            at,
            "serverkeygen.oaep_hash must be sha256 or sha384 (the matrix's RSA-OAEP hashes)",
        ));
    }
    let mut seen = Vec::new();
    for kek in &skg.kek {
        let id = kek
            .id_bytes()
            .map_err(|e| invalid(at, format!("serverkeygen.kek: {e}")))?;
        if seen.contains(&id) {
            return Err(invalid(
                at,
                format!("serverkeygen.kek id {:?} is listed twice", kek.id),
            ));
        }
        seen.push(id);
        kek.key.parse::<crate::hsm::Pkcs11Uri>().map_err(|e| {
            invalid(
                at,
                format!("serverkeygen.kek {:?}: key {:?}: {e}", kek.id, kek.key),
            )
        })?;
    }
    Ok(())
}

/// `1.3.6.1.5.5.7.3.2`: at least two arcs, no leading zeros, first arc 0-2,
/// second arc below 40 under arcs 0 and 1 (X.660).
fn is_dotted_oid(s: &str) -> bool {
    let arcs: Vec<&str> = s.split('.').collect();
    let numeric = |a: &&str| {
        !a.is_empty()
            && a.bytes().all(|b| b.is_ascii_digit())
            && (a.len() == 1 || !a.starts_with('0'))
    };
    if arcs.len() < 2 || !arcs.iter().all(numeric) {
        return false;
    }
    match (arcs[0], arcs[1].parse::<u64>()) {
        ("0" | "1", Ok(second)) => second < 40,
        ("2", _) => true,
        _ => false,
    }
}

fn check_auth(auth: &AuthConfig, cas: &[CaConfig]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for user in &auth.users {
        let at = format!("auth.users {:?}", user.name);
        if user.name.is_empty()
            || user.name.contains(':')
            || user.name.chars().any(char::is_control)
        {
            return Err(invalid(
                at,
                "name must be non-empty, without ':' or control characters",
            ));
        }
        if !names.insert(user.name.as_str()) {
            return Err(invalid(at, "duplicate user name"));
        }
        // Only the scheme is checked here; the hash itself is parsed at start-up.
        if !user.password_hash.starts_with("$argon2") {
            return Err(invalid(
                at,
                "password_hash must be an argon2 PHC string ($argon2id$v=19$...)",
            ));
        }
        if let Some(unknown) = user
            .cas
            .iter()
            .find(|id| !cas.iter().any(|ca| &ca.id == *id))
        {
            return Err(invalid(at, format!("cas: no [[ca]] has id {unknown:?}")));
        }
    }
    Ok(())
}

fn check_db(db: &DbConfig) -> Result<(), ConfigError> {
    if db.url.is_empty() {
        return Err(invalid("db", "url is empty"));
    }
    if db.max_connections == 0 {
        return Err(invalid("db", "max_connections must be greater than 0"));
    }
    Ok(())
}

fn check_log(log: &LogConfig) -> Result<(), ConfigError> {
    const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];
    let level = log.level.trim();
    // A bare word is a level; anything richer is a `tracing` filter. (A bare
    // unknown word would parse as a filter on a target of that name: a typo.)
    let ok = if level.contains(['=', ',', ':', '[']) {
        tracing_subscriber::EnvFilter::try_new(level).is_ok()
    } else {
        LEVELS.contains(&level.to_ascii_lowercase().as_str())
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "log",
            format!(
                "level {:?} is not one of {} nor a tracing filter",
                log.level,
                LEVELS.join(", ")
            ),
        ))
    }
}

/// `[metrics] listen` must be a socket of its own: metrics are plain HTTP
/// and must never be reachable on the EST port (or the status port).
fn check_metrics(m: &super::MetricsConfig, server: &ServerConfig) -> Result<(), ConfigError> {
    let Some(listen) = m.listen else {
        return Ok(());
    };
    // Port 0 asks the kernel for a free port: never the same as another.
    let same = |other: SocketAddr| listen.port() != 0 && listen == other;
    if same(server.listen) {
        return Err(invalid(
            "metrics.listen",
            format!(
                "{listen} is the EST listener (server.listen): metrics need a socket of their own"
            ),
        ));
    }
    if server.http_listen.is_some_and(same) {
        return Err(invalid(
            "metrics.listen",
            format!("{listen} is the status listener (server.http_listen): metrics need a socket of their own"),
        ));
    }
    Ok(())
}

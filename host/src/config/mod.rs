//! kipuka's configuration: defaults < TOML file < `KIPUKA_<SECTION>__<KEY>`
//! environment variables.
//!
//! - Defaults are the serde defaults of the types below, so a minimal file
//!   (such as the HSM compatibility matrix's examples) is a whole configuration.
//! - Environment variables name nested keys with `__`:
//!   `KIPUKA_SERVER__LISTEN=0.0.0.0:9443`, `KIPUKA_HSM__TOKEN_LABEL=x`,
//!   `KIPUKA_DB__MAX_CONNECTIONS=4`, `KIPUKA_HSM__ENV__NFAST_HOME=/opt/nfast`.
//!   Variables without `__` after the prefix (`KIPUKA_HSM_PIN`, the matrix's
//!   PIN variable) are not configuration and are ignored. Values are strings;
//!   arrays and tables may be written in TOML syntax (`["1.3"]`). `[[ca]]`
//!   entries cannot be set from the environment.
//! - Unknown keys are errors naming the key and the file or variable: a
//!   misspelt `tokn_label` silently ignored would log in to the wrong token.
//!
//! Paths are not checked for existence here; `kipuka check` does that.

mod env;
mod error;
mod keyspec;
mod policy;
mod revocation;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::Figment;
use kipuka_plugin_api::UserType;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use error::{ConfigError, Origin};
pub use keyspec::{KeySpec, KeySpecError};
pub use policy::{PolicyConfig, PolicyMode};
pub use revocation::{CrlConfig, OcspConfig};
pub use validate::{EXTENDED_KEY_USAGES, KEY_USAGES};

use env::EnvSource;

/// The whole configuration.
///
/// Not `Serialize`: it holds the HSM PIN (when given literally), password
/// hashes and possibly database credentials.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listening socket, TLS, HTTP limits.
    pub server: ServerConfig,
    /// `[plugins]`: where the vendor plugins (`.so`) are found.
    pub plugins: PluginsConfig,
    /// `[hsm]`: the PKCS#11 library, token and login.
    pub hsm: HsmConfig,
    /// `[[ca]]`: the CAs this server issues from, one table each.
    pub ca: Vec<CaConfig>,
    /// `[db]`: the store of issued certificates and audit events.
    pub db: DbConfig,
    /// `[auth]`: HTTP Basic users (clients may also authenticate with a certificate).
    pub auth: AuthConfig,
    /// `[log]`: log format and level.
    pub log: LogConfig,
    /// `[limits]`: rate limits, per process.
    pub limits: LimitsConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// `[metrics]`: Prometheus metrics on a listener of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Plain-HTTP socket serving `GET /metrics` (e.g. `127.0.0.1:9464`).
    /// Absent: no metrics are kept or served. Never the EST listener.
    pub listen: Option<SocketAddr>,
}

/// `[limits]`: token-bucket rate limits, kept in each process's memory (N
/// kipuka instances allow N times as much). 0 turns a limit off; all are
/// off by default. A limited request gets HTTP 429 with `Retry-After`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Enrollments (`/simpleenroll`, `/simplereenroll`, `/serverkeygen`)
    /// per hour per requester: Basic user, enrollment code, or client
    /// certificate (subject and serial).
    pub enrollments_per_hour: u32,
    /// Enrollments per hour per source IP address.
    pub enrollments_per_hour_per_ip: u32,
    /// How many enrollments a requester or address may make at once before
    /// the hourly rate applies (the bucket's size). Default 0 = 1.
    pub burst: u32,
    /// Failed Basic authentications per minute, per source IP address and
    /// per user name; once spent, further attempts are refused before any
    /// password is checked.
    pub failed_auth_per_minute: u32,
    /// Failed authentications allowed at once (the bucket's size). Default 0 = 1.
    pub failed_auth_burst: u32,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on. Default `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// A plain-HTTP listener for relying parties (RFC 5280 §4.2.1.13:
    /// CRLs and OCSP are fetched over HTTP), e.g. `"127.0.0.1:8080"`. It
    /// serves only `/crl/*`, `/ocsp/*` and `/healthz`, never EST. Default:
    /// none (CRLs and OCSP are served on the TLS listener anyway).
    pub http_listen: Option<SocketAddr>,
    /// Server certificate chain (PEM). Must be set together with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM). Must be set together with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) trusted for TLS client authentication. Empty: no
    /// client certificates are requested (HTTP Basic only).
    pub client_ca: Vec<PathBuf>,
    /// TLS protocol versions offered: `"1.2"`, `"1.3"`. Default both.
    pub tls_versions: Vec<TlsVersion>,
    /// Largest request body accepted, in bytes. Default 65536 (64 KiB): ample
    /// for a CSR, small enough to refuse floods early.
    pub max_body_bytes: usize,
    /// The HTTP Basic realm (`WWW-Authenticate: Basic realm="..."`). Default `kipuka`.
    pub realm: String,
    /// Seconds a request body may take to arrive. Default 30. (HSM work is
    /// bounded by `[hsm] acquire_timeout_ms` and `operation_timeout_ms`.)
    pub request_timeout_secs: u64,
    /// Most client connections served at once. Beyond it kipuka stops
    /// accepting and new connections wait in the listen backlog until one
    /// ends. Keep it below the process's open-file limit (`ulimit -n`,
    /// systemd's `LimitNOFILE`). Default 1024.
    pub max_connections: usize,
    /// Most connections one source (an IPv4 address, an IPv6 /64) holds
    /// open at once, on each listener; a connection over it is closed as
    /// soon as it is accepted. Default 256 (a quarter of `max_connections`). Several devices behind one NAT
    /// share it: raise it for them.
    pub max_connections_per_ip: usize,
    /// Seconds to let in-flight requests finish on shutdown. Default 30.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8443)),
            http_listen: None,
            tls_cert: None,
            tls_key: None,
            client_ca: Vec::new(),
            tls_versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            max_body_bytes: 64 * 1024,
            realm: "kipuka".to_string(),
            request_timeout_secs: 30,
            max_connections: 1024,
            max_connections_per_ip: 256,
            shutdown_grace_secs: 30,
        }
    }
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2, written `"1.2"`.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3, written `"1.3"`.
    #[serde(rename = "1.3")]
    Tls13,
}

/// `[plugins]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folders scanned for vendor plugins. Empty: the built-in default folders.
    pub dirs: Vec<PathBuf>,
    /// Individual plugin files loaded in addition to those found in `dirs`.
    pub files: Vec<PathBuf>,
}

/// `[hsm]`: how to reach the token holding the CA keys.
///
/// Not `Serialize`: `pin` is a secret. Its `Debug` is redacted by `secrecy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HsmConfig {
    /// Vendor plugin to use (`nshield`, `utimaco`, `kryoptic`, `luna`,
    /// `thales-csp`, ...). Unset: chosen from the library and token.
    pub provider: Option<String>,
    /// The vendor's PKCS#11 library. Unset: the plugin's default path.
    pub library: Option<PathBuf>,
    /// Label of the token to log in to (`CKA_LABEL` of the token). Use this or `slot`.
    pub token_label: Option<String>,
    /// Slot id of the token. Use this or `token_label`.
    pub slot: Option<u64>,
    /// Name of the environment variable holding the user PIN, conventionally
    /// `KIPUKA_HSM_PIN`. At most one of `pin_env`, `pin_file`, `pin`.
    pub pin_env: Option<String>,
    /// File holding the user PIN (one trailing newline is ignored).
    pub pin_file: Option<PathBuf>,
    /// The PIN itself. For development only: it ends up in files and backups.
    pub pin: Option<SecretString>,
    /// `C_Login` user type: `"user"` (CKU_USER), `"crypto-user"` (Luna's
    /// CKU_CRYPTO_USER, 0x80000001), a `CKU_*` name or a number such as
    /// `"0x80000001"`. Unset: the plugin's default. Never the SO.
    pub user_type: Option<String>,
    /// Extra environment variables for the vendor library, set before it is
    /// loaded (e.g. `NFAST_HOME`, `CS_PKCS11_R3_CFG`, `ChrystokiConfigurationPath`).
    pub env: BTreeMap<String, String>,
    /// PKCS#11 sessions kept open. Unset: `db.max_connections`, as the HSM
    /// compatibility matrix documents. Keep it under the HSM's session limit.
    pub pool_size: Option<u32>,
    /// Milliseconds to wait for a free session before failing a request. Default 2000.
    pub acquire_timeout_ms: u64,
    /// Milliseconds one HSM operation (a signature; for `/serverkeygen`, the
    /// key generation and its export) may take before its request gets 503.
    /// PKCS#11 cannot cancel a call: the session stays in use until the HSM
    /// answers, and each timeout counts towards `degraded_after_errors`.
    /// Default 30000. Raise it where `/serverkeygen` makes RSA-4096 keys on
    /// a slow HSM: generating one can take tens of seconds.
    pub operation_timeout_ms: u64,
    /// Seconds between health checks of the token. Default 10. Keep it below
    /// the HSM's idle-session timeout (Luna) to avoid session churn.
    pub health_check_interval_secs: u64,
    /// Consecutive session errors after which the CA is reported degraded. Default 3.
    pub degraded_after_errors: u32,
    /// Consecutive session errors after which the CA is unavailable. Default 10.
    pub unavailable_after_errors: u32,
}

impl Default for HsmConfig {
    fn default() -> Self {
        HsmConfig {
            provider: None,
            library: None,
            token_label: None,
            slot: None,
            pin_env: None,
            pin_file: None,
            pin: None,
            user_type: None,
            env: BTreeMap::new(),
            pool_size: None,
            acquire_timeout_ms: 2000,
            operation_timeout_ms: 30_000,
            health_check_interval_secs: 10,
            degraded_after_errors: 3,
            unavailable_after_errors: 10,
        }
    }
}

impl HsmConfig {
    /// `user_type` as a PKCS#11 user type; `Ok(None)` when unset (use the
    /// plugin's default). `validate` has already rejected bad values.
    pub fn login_user_type(&self) -> Result<Option<UserType>, ConfigError> {
        self.user_type
            .as_deref()
            .map(validate::parse_user_type)
            .transpose()
    }
}

/// `[[ca]]`: one CA, its certificate and where its key is.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// Stable identifier, used in the store, logs and `auth.users.cas`.
    /// `[A-Za-z0-9_-]{1,64}`.
    pub id: String,
    /// Human-readable name, for logs and `kipuka check`.
    #[serde(default)]
    pub name: Option<String>,
    /// The RFC 7030 CA label: the path segment in `/.well-known/est/<label>/...`.
    /// `[A-Za-z0-9_-]{1,64}`. Default: the id (see [`CaConfig::label`]).
    #[serde(default)]
    pub label: Option<String>,
    /// Serve this CA on the unlabelled path `/.well-known/est/...`. At most
    /// one CA may set it; a lone CA is the default anyway.
    #[serde(default)]
    pub default: bool,
    /// The CA certificate (PEM); it may be followed by the rest of the chain.
    pub cert: PathBuf,
    /// Further chain certificates (PEM), in order towards the root.
    #[serde(default)]
    pub chain: Vec<PathBuf>,
    /// The CA private key as an RFC 7512 `pkcs11:` URI, e.g.
    /// `pkcs11:token=kipuka-ca;object=ca-signing-key`. Leave it out only
    /// when `software_key` is used instead.
    #[serde(default)]
    pub key: String,
    /// Slot of the token holding this CA's key, when it differs from `hsm.slot`.
    #[serde(default)]
    pub hsm_slot: Option<u64>,
    /// RSA signature scheme: `"pkcs1"` (default, PKCS#1 v1.5) or `"pss"`. Ignored for EC and ML-DSA keys.
    #[serde(default)]
    pub rsa_scheme: RsaScheme,
    /// Hash for RSA and ECDSA signatures (the matrix's `RsaHashAlgorithm`):
    /// `"sha256"` (default), `"sha384"`, `"sha512"`.
    #[serde(default)]
    pub hash: HashChoice,
    /// ML-DSA key held in software (`SoftwarePqcFallback`), for tokens without
    /// ML-DSA: an encrypted PKCS#8 file. Use this or `key`, not both.
    #[serde(default)]
    pub software_key: Option<PathBuf>,
    /// Environment variable holding the passphrase of `software_key`.
    #[serde(default)]
    pub software_key_passphrase_env: Option<String>,
    /// Or a file holding it (one trailing newline ignored; keep it mode 0600,
    /// readable by kipuka only). Exactly one of the two with `software_key`.
    #[serde(default)]
    pub software_key_passphrase_file: Option<PathBuf>,
    /// Which TLS client certificates may authenticate at this CA: the
    /// certificates (PEM or DER files, one issuer certificate per file) of
    /// the issuers whose certificates are accepted, e.g.
    /// `["/etc/kipuka/idevid-ca.pem"]`.
    ///
    /// Unset (the default): any client certificate that verifies to a
    /// `[server] client_ca` anchor or a CA certificate of this server
    /// authenticates `/simpleenroll` and `/serverkeygen` here.
    ///
    /// Set: a client certificate is accepted for `/simpleenroll`,
    /// `/serverkeygen` and `/simplereenroll` only if one of the listed
    /// certificates issued it — its issuer name is that certificate's
    /// subject and its signature verifies with that certificate's public
    /// key. Any other client certificate gets 403 naming this CA. It
    /// narrows, never widens: the TLS handshake still verifies every client
    /// chain to a `[server] client_ca` anchor, so list each issuer there too
    /// (or an anchor above it). `/simplereenroll` further requires that
    /// this CA issued the certificate being renewed, so list this CA's own
    /// `cert` here to let its certificates re-enroll (and enroll anew).
    /// HTTP Basic users are not affected (see `auth.users.cas`). A client
    /// that presents a certificate is judged by it, even if it also sends
    /// Basic credentials.
    ///
    /// Each file must hold exactly one certificate: a file with a whole
    /// chain would also accept the certificates its root issued directly.
    /// The files are read at start-up (`kipuka serve`, `kipuka check`); a
    /// missing or unusable file stops it with an error naming the CA and the
    /// file. An empty list is refused (leave the key out instead).
    #[serde(default)]
    pub client_issuers: Option<Vec<PathBuf>>,
    /// What certificates this CA issues.
    #[serde(default)]
    pub profile: ProfileConfig,
    /// `[ca.policy]`: which names it issues, and to whom (see
    /// [`PolicyConfig`]). Unset: every name a CSR requests is issued.
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// `/serverkeygen` (RFC 7030 §4.4): keys generated in the HSM for clients.
    #[serde(default)]
    pub serverkeygen: ServerKeygenConfig,
    /// `[ca.crl]`: the CRL this CA publishes at `/crl/<label>.crl`.
    #[serde(default)]
    pub crl: CrlConfig,
    /// `[ca.ocsp]`: its OCSP responder at `/ocsp/<label>`.
    #[serde(default)]
    pub ocsp: OcspConfig,
}

/// `[ca.serverkeygen]`: how this CA delivers keys it generates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerKeygenConfig {
    /// Serve `/serverkeygen` for this CA. Default true.
    pub enabled: bool,
    /// Content encryption of the key package: `"aes-256-cbc"` (default,
    /// EnvelopedData) or `"aes-256-gcm"` (AuthEnvelopedData, RFC 5083).
    pub content_encryption: ContentEncryption,
    /// Hash of RSA-OAEP for clients with RSA keys: `"sha256"` (default) or
    /// `"sha384"` (not on every HSM: the plugin says which).
    pub oaep_hash: HashChoice,
    /// Answer a CSR that asks for no encryption with the key in the clear
    /// (`application/pkcs8`, protected by TLS alone). Default false: such a
    /// request is refused and told which attribute to add.
    pub allow_unencrypted: bool,
    /// Pre-shared AES-256 key-encryption keys on the token, for clients whose
    /// CSR names one in DecryptKeyIdentifier (RFC 7030 §4.4.1.1).
    pub kek: Vec<KekConfig>,
}

impl Default for ServerKeygenConfig {
    fn default() -> Self {
        ServerKeygenConfig {
            enabled: true,
            content_encryption: ContentEncryption::default(),
            oaep_hash: HashChoice::Sha256,
            allow_unencrypted: false,
            kek: Vec::new(),
        }
    }
}

/// Content-encryption algorithm of a server-generated key package.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum ContentEncryption {
    /// AES-256-CBC in EnvelopedData.
    #[default]
    #[serde(rename = "aes-256-cbc")]
    Aes256Cbc,
    /// AES-256-GCM in AuthEnvelopedData.
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

impl std::fmt::Display for ContentEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContentEncryption::Aes256Cbc => "AES-256-CBC (EnvelopedData)",
            ContentEncryption::Aes256Gcm => "AES-256-GCM (AuthEnvelopedData)",
        })
    }
}

/// `[[ca.serverkeygen.kek]]`: one pre-shared key-encryption key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KekConfig {
    /// The DecryptKeyIdentifier that names it, in hex (as `openssl cms
    /// -secretkeyid` takes it).
    pub id: String,
    /// The AES-256 key on the token, as a `pkcs11:` URI (`object=` and/or `id=`).
    pub key: String,
}

impl KekConfig {
    /// The identifier's bytes.
    pub fn id_bytes(&self) -> Result<Vec<u8>, String> {
        let hex = self.id.trim();
        if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 512 {
            return Err(format!(
                "kek id {:?} must be 1 to 256 bytes of hex",
                self.id
            ));
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&hex[i..i + 2], 16)
                    .map_err(|_| format!("kek id {:?} is not hex", self.id))
            })
            .collect()
    }
}

impl CaConfig {
    /// The RFC 7030 label: `label`, or the id when no label is set.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.id)
    }
}

/// RSA signature scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RsaScheme {
    /// RSASSA-PKCS1-v1_5 (`CKM_RSA_PKCS`), the most widely verified.
    #[default]
    Pkcs1,
    /// RSASSA-PSS (`CKM_RSA_PKCS_PSS`), salt length = hash length.
    Pss,
}

/// Signature hash (the matrix's `RsaHashAlgorithm`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HashChoice {
    /// SHA-256.
    #[default]
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// `[ca.profile]`: the certificates a CA issues.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    /// Validity of issued certificates, in days. Default 365.
    pub validity_days: u32,
    /// keyUsage bits: `digitalSignature`, `nonRepudiation` (or
    /// `contentCommitment`), `keyEncipherment`, `dataEncipherment`,
    /// `keyAgreement`, `keyCertSign`, `cRLSign`. Default digitalSignature, keyEncipherment.
    pub key_usage: Vec<String>,
    /// extendedKeyUsage: `serverAuth`, `clientAuth`, `codeSigning`,
    /// `emailProtection`, `timeStamping`, `OCSPSigning` or a dotted OID. Default clientAuth.
    pub extended_key_usage: Vec<String>,
    /// Subject key types accepted in CSRs: `rsa:<2048..8192, multiple of 1024>`,
    /// `ec:P-256|P-384|P-521`, `ml-dsa-44|65|87`. Default: all of the usual ones.
    pub allowed_keys: Vec<String>,
    /// Subject alternative names: `"copy-from-csr"` (default) or `"none"`.
    pub san_policy: SanPolicy,
    /// Require the CSR to carry the TLS exporter value (channel binding,
    /// RFC 7030 §3.5), proving it was made for this TLS session.
    pub require_tls_exporter: bool,
    /// `http://` URLs written into issued certificates as CRL Distribution
    /// Points, e.g. `["http://ca.example:8080/crl/ec.crl"]`. Default none.
    pub crl_urls: Vec<String>,
    /// OCSP responder URLs for Authority Information Access, e.g.
    /// `["http://ca.example:8080/ocsp/ec"]`. Default none.
    pub ocsp_urls: Vec<String>,
    /// URLs of the CA certificate for Authority Information Access
    /// (caIssuers). Default none.
    pub ca_issuers_urls: Vec<String>,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        ProfileConfig {
            validity_days: 365,
            key_usage: strings(&["digitalSignature", "keyEncipherment"]),
            extended_key_usage: strings(&["clientAuth"]),
            allowed_keys: strings(&[
                "rsa:2048",
                "rsa:3072",
                "rsa:4096",
                "ec:P-256",
                "ec:P-384",
                "ec:P-521",
                "ml-dsa-44",
                "ml-dsa-65",
                "ml-dsa-87",
            ]),
            san_policy: SanPolicy::CopyFromCsr,
            require_tls_exporter: false,
            crl_urls: Vec::new(),
            ocsp_urls: Vec::new(),
            ca_issuers_urls: Vec::new(),
        }
    }
}

impl ProfileConfig {
    /// `allowed_keys` parsed. `validate` has already rejected bad entries.
    pub fn allowed_key_specs(&self) -> Result<Vec<KeySpec>, KeySpecError> {
        self.allowed_keys.iter().map(|k| k.parse()).collect()
    }
}

/// Where subject alternative names come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SanPolicy {
    /// Copy the CSR's subjectAltName extension.
    #[default]
    CopyFromCsr,
    /// Issue without subjectAltName.
    None,
}

/// `[db]`
///
/// Not `Serialize`: `url` may carry a database password.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// Database URL. Default `sqlite://kipuka.db` (relative to the working directory).
    pub url: String,
    /// Database connections; also the HSM session pool size unless
    /// `hsm.pool_size` is set. Default 16.
    pub max_connections: u32,
    /// SQLite `PRAGMA synchronous` for the write connection (WAL mode):
    /// `"full"` (default) fsyncs every commit, so an acknowledged certificate
    /// survives a power loss or OS crash; `"normal"` fsyncs only at
    /// checkpoints: faster, still safe against a killed or crashed kipuka
    /// process, but the last commits may be lost on power loss.
    pub synchronous: crate::store::Synchronous,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            url: "sqlite://kipuka.db".to_string(),
            max_connections: 16,
            synchronous: crate::store::Synchronous::Full,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HTTP Basic users, as `[[auth.users]]` tables.
    pub users: Vec<BasicUser>,
}

/// `[[auth.users]]`: one HTTP Basic user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicUser {
    /// User name (no `:`, which Basic authentication cannot carry).
    pub name: String,
    /// Argon2 password hash as a PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
    /// Ids of the CAs this user may enroll with. Empty: all.
    #[serde(default)]
    pub cas: Vec<String>,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `"human"` (default) or `"json"`.
    pub format: LogFormat,
    /// Level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or a
    /// `tracing` filter such as `info,kipuka::hsm=debug`. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".to_string(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Loads defaults < the TOML file at `path` (if any) < `KIPUKA_*__*`
    /// environment variables, then [`validate`](Self::validate)s.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = Self::load_unvalidated(path)?;
        config.validate()?;
        Ok(config)
    }

    /// Like [`load`](Self::load) but validated with
    /// [`validate_for_plugins_only`](Self::validate_for_plugins_only), for
    /// commands (`kipuka plugins ...`) that need no CA.
    pub fn load_for_plugins_only(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = Self::load_unvalidated(path)?;
        config.validate_for_plugins_only()?;
        Ok(config)
    }

    /// Parses TOML without the environment and without validating, so tests
    /// can build partial configurations; call [`validate`](Self::validate) to
    /// apply the cross-field rules.
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        parse_toml(toml, Origin::Inline).map(|(_, config)| config)
    }

    /// Parses and validates TOML text the way [`load`](Self::load) treats a
    /// file's content (the same parse and validation), without reading the
    /// environment: for the fuzzer and for tests.
    pub fn load_str(toml: &str) -> Result<Config, ConfigError> {
        let (_, config) = parse_toml(toml, Origin::Inline)?;
        config.validate()?;
        Ok(config)
    }

    /// The CA served at `/.well-known/est/<label>/...`.
    pub fn ca_by_label(&self, label: &str) -> Option<&CaConfig> {
        self.ca.iter().find(|ca| ca.label() == label)
    }

    /// The CA served at the unlabelled `/.well-known/est/...`: the one with
    /// `default = true`, else the only CA. With several CAs and none marked
    /// default, the unlabelled path has no CA (allowed: clients must use labels).
    pub fn default_ca(&self) -> Option<&CaConfig> {
        match self.ca.iter().find(|ca| ca.default) {
            Some(ca) => Some(ca),
            None if self.ca.len() == 1 => self.ca.first(),
            None => None,
        }
    }

    /// PKCS#11 sessions to keep open: `hsm.pool_size`, else `db.max_connections`.
    pub fn hsm_pool_size(&self) -> u32 {
        self.hsm.pool_size.unwrap_or(self.db.max_connections)
    }

    fn load_unvalidated(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            figment = parse_toml(&text, Origin::File(path.to_owned()))?.0;
        }
        // Each source is extracted alone first: merged, figment would blame
        // an unknown key in `[hsm]` on whichever source created the table.
        let env = EnvSource::from_process()?;
        let env_figment = env.figment();
        extract(&env_figment, true, |key| env.origin_of(key))?;
        // Both sources are well-formed, so this only merges them.
        extract(&figment.merge(env_figment), true, |key| env.origin_of(key))
    }
}

/// The TOML source as a figment, after checking it alone: syntax, unknown
/// keys and types are reported against `origin`.
fn parse_toml(text: &str, origin: Origin) -> Result<(Figment, Config), ConfigError> {
    // Parsed once more by figment below; this one gives the line and column.
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(error::from_toml(&e, text, origin));
    }
    let figment = Figment::from(Toml::string(text));
    let config = extract(&figment, false, |_| origin.clone())?;
    Ok((figment, config))
}

/// Extracts a [`Config`]. `lossy` lets strings stand for numbers and booleans
/// (environment values are strings); files must use the proper TOML types.
fn extract(
    figment: &Figment,
    lossy: bool,
    origin_of: impl Fn(&str) -> Origin,
) -> Result<Config, ConfigError> {
    let result = if lossy {
        figment.extract_lossy()
    } else {
        figment.extract()
    };
    result.map_err(|e| error::from_figment(e, origin_of))
}

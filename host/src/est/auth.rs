//! Who is asking: a verified TLS client certificate or HTTP Basic; and
//! whether a CA accepts that certificate (`client_issuers`).

mod client_issuers;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use argon2::{password_hash::PasswordHash, Argon2, PasswordVerifier};
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::{config::BasicUser, policy::Requester, tls::ConnInfo};

use super::error::EstError;

pub use client_issuers::{ClientIssuer, ClientIssuers, IssuerFileError, NotAccepted};

/// An authenticated requester.
#[derive(Clone, Debug)]
pub enum Principal {
    /// HTTP Basic user.
    Basic {
        /// User name.
        user: String,
    },
    /// TLS client certificate (verified by the TLS layer).
    Certificate {
        /// The certificate.
        cert: Arc<Certificate>,
    },
    /// A one-time enrollment code (`kipuka enroll-codes`).
    Code {
        /// Its id, the Basic user name (`code-...`).
        id: String,
        /// The one name it may enroll: the policy's `{user}`.
        name: String,
    },
}

impl Principal {
    /// For the store and the audit log: `basic:alice`, `cert:CN=dev1|<serial hex>`,
    /// `code:code-0123abcd|device-42` (never the code's password).
    pub fn describe(&self) -> String {
        match self {
            Principal::Basic { user } => format!("basic:{user}"),
            Principal::Code { id, name } => format!("code:{id}|{name}"),
            Principal::Certificate { cert } => {
                let tbs = cert.tbs_certificate();
                format!(
                    "cert:{}|{}",
                    tbs.subject(),
                    hex_lower(tbs.serial_number().as_bytes())
                )
            }
        }
    }
}

impl Principal {
    /// Who is asking, for the name policy's templates.
    pub fn requester(&self) -> Requester {
        match self {
            Principal::Basic { user } => Requester::user(user),
            Principal::Code { name, .. } => Requester::user(name),
            Principal::Certificate { cert } => Requester::certificate(cert),
        }
    }
}

/// Lower-case hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The DER of the connection's client certificate, as the client sent it.
pub fn client_certificate_der(conn: &ConnInfo) -> Option<&[u8]> {
    conn.peer_chain
        .as_ref()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.as_ref())
}

/// The client certificate of the connection, if it presented one.
pub fn client_certificate(conn: &ConnInfo) -> Result<Option<Arc<Certificate>>, EstError> {
    let Some(leaf) = client_certificate_der(conn) else {
        return Ok(None);
    };
    Certificate::from_der(leaf)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| EstError::BadRequest(format!("client certificate cannot be decoded: {e}")))
}

struct User {
    phc: String,
    cas: Vec<String>,
}

/// Checks HTTP Basic credentials against the argon2 (PHC) hashes of `[auth]`.
///
/// argon2 is deliberately slow (tens of milliseconds). A device re-sending
/// the same credentials would pay that on every request, so a successful
/// check is remembered as SHA-256(user, password, hash) — never the
/// password — for the life of the process. Failures are not cached.
pub struct Authenticator {
    users: HashMap<String, User>,
    verified: Mutex<HashMap<[u8; 32], ()>>,
    argon2: tokio::sync::Semaphore,
}

const CACHE_LIMIT: usize = 10_000;

impl Authenticator {
    /// From the configured users.
    pub fn new(users: &[BasicUser]) -> Self {
        Authenticator {
            users: users
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        User {
                            phc: u.password_hash.clone(),
                            cas: u.cas.clone(),
                        },
                    )
                })
                .collect(),
            verified: Mutex::new(HashMap::new()),
            argon2: tokio::sync::Semaphore::new(argon2_at_once()),
        }
    }

    /// Whether any Basic user is configured.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Authenticates Basic `credentials` as a configured user for CA `ca_id`.
    pub async fn basic(
        &self,
        credentials: &Credentials,
        ca_id: &str,
    ) -> Result<Principal, EstError> {
        let user = credentials.user.as_str();
        let password = credentials.password.as_str();
        let entry = self.users.get(user).ok_or_else(wrong_credentials)?;
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(user.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
            h.update([0]);
            h.update(entry.phc.as_bytes());
            h.finalize().into()
        };
        let cached = self.verified.lock().expect("auth cache").contains_key(&key);
        if !cached {
            if !self.verify_hash(&entry.phc, password).await? {
                return Err(wrong_credentials());
            }
            let mut cache = self.verified.lock().expect("auth cache");
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, ());
        }
        if !entry.cas.is_empty() && !entry.cas.iter().any(|c| c == ca_id) {
            return Err(EstError::Forbidden(format!(
                "user {user} may not enroll with CA {ca_id}"
            )));
        }
        Ok(Principal::Basic {
            user: user.to_string(),
        })
    }

    /// Whether `password` matches the argon2 PHC hash `phc`. At most
    /// [`argon2_at_once`] checks run at a time, off the async workers: a
    /// flood of bad passwords queues here instead of taking every core.
    pub async fn verify_hash(&self, phc: &str, password: &str) -> Result<bool, EstError> {
        let _permit = self
            .argon2
            .acquire()
            .await
            .map_err(|e| EstError::Internal(format!("password check failed: {e}")))?;
        let phc = phc.to_string();
        let password = zeroize::Zeroizing::new(password.to_string());
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .map(|hash| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &hash)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(|e| EstError::Internal(format!("password check failed: {e}")))
    }
}

/// Most argon2 verifications running at once: half the cores (at least
/// one). Each takes a core for tens of milliseconds; the other half stays
/// free for TLS, CSR checks and signing while bad passwords pour in.
pub fn argon2_at_once() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The answer to an unknown user and to a wrong password alike.
pub fn wrong_credentials() -> EstError {
    EstError::Unauthorized("unknown user or wrong password".into())
}

/// HTTP Basic credentials as sent; the password is wiped on drop.
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: zeroize::Zeroizing<String>,
}

impl Credentials {
    /// Parses an `Authorization` header: `Ok(None)` when there is none.
    pub fn from_header(header: Option<&str>) -> Result<Option<Credentials>, EstError> {
        let Some(value) = header else { return Ok(None) };
        let Some(encoded) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        else {
            return Err(EstError::Unauthorized(
                "only HTTP Basic authentication is accepted".into(),
            ));
        };
        use base64ct::Encoding;
        let decoded = base64ct::Base64::decode_vec(encoded.trim()).map_err(|_| {
            EstError::Unauthorized("Authorization header is not valid base64".into())
        })?;
        let decoded = zeroize::Zeroizing::new(decoded);
        let text = std::str::from_utf8(&decoded)
            .map_err(|_| EstError::Unauthorized("credentials are not UTF-8".into()))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| EstError::Unauthorized("Basic credentials need user:password".into()))?;
        Ok(Some(Credentials {
            user: user.to_string(),
            password: zeroize::Zeroizing::new(password.to_string()),
        }))
    }
}

/// Whether `cert` was issued by the CA whose certificate is `ca`: same
/// issuer name, and (when both carry them) matching key identifiers. The
/// TLS layer has already verified the signature chain to a configured anchor.
pub fn issued_by(cert: &Certificate, ca: &Certificate) -> bool {
    let tbs = cert.tbs_certificate();
    if tbs.issuer().to_der().ok() != ca.tbs_certificate().subject().to_der().ok() {
        return false;
    }
    use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
    let aki = tbs
        .get_extension::<AuthorityKeyIdentifier>()
        .ok()
        .flatten()
        .and_then(|(_, a)| a.key_identifier);
    let ski = ca
        .tbs_certificate()
        .get_extension::<SubjectKeyIdentifier>()
        .ok()
        .flatten()
        .map(|(_, s)| s.0);
    match (aki, ski) {
        (Some(a), Some(s)) => a.as_bytes() == s.as_bytes(),
        _ => true,
    }
}

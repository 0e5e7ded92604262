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
}

impl Principal {
    /// For the store and the audit log: `basic:alice`, `cert:CN=dev1|<serial hex>`.
    pub fn describe(&self) -> String {
        match self {
            Principal::Basic { user } => format!("basic:{user}"),
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
        }
    }

    /// Whether any Basic user is configured.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Authenticates an `Authorization` header for CA `ca_id`. `Ok(None)`
    /// when there is no Basic header at all.
    pub async fn basic(
        self: &Arc<Self>,
        header: Option<&str>,
        ca_id: &str,
    ) -> Result<Option<Principal>, EstError> {
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
        let bad = || EstError::Unauthorized("unknown user or wrong password".into());
        let entry = self.users.get(user).ok_or_else(bad)?;
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
            let phc = entry.phc.clone();
            let password = zeroize::Zeroizing::new(password.to_string());
            let ok = tokio::task::spawn_blocking(move || {
                PasswordHash::new(&phc)
                    .map(|hash| {
                        Argon2::default()
                            .verify_password(password.as_bytes(), &hash)
                            .is_ok()
                    })
                    .unwrap_or(false)
            })
            .await
            .map_err(|e| EstError::Internal(format!("password check failed: {e}")))?;
            if !ok {
                return Err(bad());
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
        Ok(Some(Principal::Basic {
            user: user.to_string(),
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

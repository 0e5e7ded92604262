//! The OCSP responder (RFC 6960, RFC 5019 profile) of one CA: what the
//! store says about each asked serial, signed by the CA key.
//!
//! - A request with a nonce (RFC 8954) is signed for that request, nonce
//!   echoed.
//! - A request without one, for a single certificate (the RFC 5019 common
//!   case), is answered from a cache of signed responses keyed by CertID:
//!   no HSM operation until the CA's revocations change (the store's
//!   revocation generation) or half of `[ca.ocsp] max_age_seconds` has
//!   passed, when it is re-signed on the next request.
//! - If the HSM or the store fails, a cached response that has not expired
//!   keeps being served; an uncached one gets `tryLater`.
//! - A CertID whose issuer hashes are not this CA's gets `unauthorized`;
//!   an undecodable request `malformedRequest`.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use der::Encode;

use crate::{
    ca::{
        issue::Issuer,
        ocsp::{
            error_response, responder_key_hash, sign_response, CertId, CertStatus, OcspRequest,
            ResponseStatus, SingleAnswer, ID_SHA1, ID_SHA256,
        },
    },
    config::OcspConfig,
    store::{hex_lower, CertificateStore},
};

/// Most cached responses per CA; past it the cache starts again empty.
const MAX_CACHED: usize = 100_000;

/// A response, with what the HTTP layer needs for RFC 5019 caching headers.
#[derive(Clone, Debug)]
pub struct OcspAnswer {
    /// The DER `OCSPResponse`.
    pub der: Bytes,
    /// thisUpdate and nextUpdate of a successful single-certificate
    /// response without nonce (the one HTTP caches may keep).
    pub validity: Option<(SystemTime, SystemTime)>,
    /// For `kipuka_ocsp_responses`: `good`, `revoked`, `unknown` (one
    /// certificate asked), `several`, or the error status.
    pub status: &'static str,
}

impl OcspAnswer {
    fn error(status: ResponseStatus) -> Self {
        OcspAnswer {
            der: error_response(status).into(),
            validity: None,
            status: match status {
                ResponseStatus::MalformedRequest => "malformedRequest",
                ResponseStatus::InternalError => "internalError",
                ResponseStatus::TryLater => "tryLater",
                ResponseStatus::SigRequired => "sigRequired",
                ResponseStatus::Unauthorized => "unauthorized",
                _ => "error",
            },
        }
    }
}

#[derive(Clone, Debug)]
struct Cached {
    generation: i64,
    refresh_at: SystemTime,
    answer: OcspAnswer,
}

impl Cached {
    fn unexpired(&self, now: SystemTime) -> bool {
        self.answer.validity.is_some_and(|(_, next)| now < next)
    }
}

/// The signed responses of one CA, by CertID (DER).
#[derive(Debug, Default)]
pub struct OcspCache(Mutex<HashMap<Vec<u8>, Cached>>);

impl OcspCache {
    fn get(&self, key: &[u8]) -> Option<Cached> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn put(&self, key: Vec<u8>, value: Cached) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert(key, value);
    }

    /// How many responses are cached.
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `id` names a certificate of `issuer` (its name and key hashes,
/// with SHA-1 or SHA-256).
fn issued_by(id: &CertId, issuer: &Issuer) -> bool {
    use sha2::Digest;
    let Ok(name) = issuer.name().to_der() else {
        return false;
    };
    let cert = &issuer.chain()[0];
    let key = cert
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes();
    let (name_hash, key_hash) = match id.hash_algorithm.oid {
        ID_SHA1 => (sha1_of(&name), responder_key_hash(issuer)),
        ID_SHA256 => (
            sha2::Sha256::digest(&name).to_vec(),
            sha2::Sha256::digest(key).to_vec(),
        ),
        _ => return false,
    };
    id.issuer_name_hash.as_bytes() == name_hash && id.issuer_key_hash.as_bytes() == key_hash
}

fn sha1_of(bytes: &[u8]) -> Vec<u8> {
    use sha1::Digest;
    sha1::Sha1::digest(bytes).to_vec()
}

/// The store's spelling of a CertID serial (no leading zero octets).
pub fn serial_hex(id: &CertId) -> String {
    let bytes = id.serial_number.as_bytes();
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    hex_lower(&bytes[start..])
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
}

/// Answers the DER `request` for `issuer`'s certificates.
pub async fn respond(
    store: &dyn CertificateStore,
    issuer: &Issuer,
    config: &OcspConfig,
    cache: &OcspCache,
    request: &[u8],
) -> OcspAnswer {
    let req = match OcspRequest::parse(request) {
        Ok(r) => r,
        Err(why) => {
            tracing::debug!(ca = %issuer.ca_id(), %why, "malformed OCSP request");
            return OcspAnswer::error(ResponseStatus::MalformedRequest);
        }
    };
    let ids: Vec<&CertId> = req
        .tbs_request
        .request_list
        .iter()
        .map(|r| &r.req_cert)
        .collect();
    if !ids.iter().all(|id| issued_by(id, issuer)) {
        return OcspAnswer::error(ResponseStatus::Unauthorized);
    }
    let nonce = req.nonce();
    let now = whole_seconds(SystemTime::now());
    // Only a single-certificate request without nonce is cached.
    let key = match (nonce, ids.as_slice()) {
        (None, [id]) => id.to_der().ok(),
        _ => None,
    };
    let cached = key.as_ref().and_then(|k| cache.get(k));
    let ca_id = issuer.ca_id();
    let generation = match store.ca_revocation_generation(ca_id) {
        Ok(g) => g,
        Err(e) => return fallback(cached, now, ca_id, &e),
    };
    if let Some(c) = &cached {
        if c.generation == generation && now < c.refresh_at && c.unexpired(now) {
            return c.answer.clone();
        }
    }
    let max_age = config.max_age();
    let mut answers = Vec::with_capacity(ids.len());
    for id in &ids {
        let status = match store.find_entry(&serial_hex(id)) {
            Ok(Some(e)) if e.record.ca_id == ca_id => match e.revocation {
                Some(r) => CertStatus::Revoked {
                    at: r.revoked_at,
                    reason_code: r.reason_code,
                },
                None => CertStatus::Good,
            },
            Ok(_) => CertStatus::Unknown,
            Err(e) => return fallback(cached, now, ca_id, &e),
        };
        answers.push(SingleAnswer {
            cert_id: (*id).clone(),
            status,
            this_update: now,
            next_update: now + max_age,
        });
    }
    match sign_response(issuer, &answers, now, nonce).await {
        Ok(der) => {
            let answer = OcspAnswer {
                der: der.into(),
                validity: key.is_some().then_some((now, now + max_age)),
                status: match answers.as_slice() {
                    [one] => match one.status {
                        CertStatus::Good => "good",
                        CertStatus::Revoked { .. } => "revoked",
                        CertStatus::Unknown => "unknown",
                    },
                    _ => "several",
                },
            };
            if let Some(k) = key {
                cache.put(
                    k,
                    Cached {
                        generation,
                        refresh_at: now + max_age / 2,
                        answer: answer.clone(),
                    },
                );
            }
            answer
        }
        Err(e) => fallback(cached, now, ca_id, &e),
    }
}

/// After a failure: the cached answer while it is valid, else `tryLater`.
fn fallback(
    cached: Option<Cached>,
    now: SystemTime,
    ca_id: &str,
    error: &dyn std::fmt::Display,
) -> OcspAnswer {
    match cached {
        Some(c) if c.unexpired(now) => {
            tracing::warn!(ca = %ca_id, %error, "OCSP: serving the cached response");
            c.answer
        }
        _ => {
            tracing::warn!(ca = %ca_id, %error, "OCSP: tryLater");
            OcspAnswer::error(ResponseStatus::TryLater)
        }
    }
}

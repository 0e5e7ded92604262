//! The OCSP responder (RFC 6960, RFC 5019 profile) of one CA: what the
//! store says about each asked serial, signed by the CA key.
//!
//! - A request with a nonce (RFC 8954) is signed for that request, nonce
//!   echoed.
//! - A request without one, for a single certificate (the RFC 5019 common
//!   case), is answered from a cache of signed responses keyed by CertID,
//!   signed at the first request for that certificate. From then on no
//!   request waits for the HSM: [`refresh`], run every second by the
//!   server, re-signs each response half-way to its nextUpdate (`[ca.ocsp]
//!   max_age_seconds`), and after a revocation re-signs only the responses
//!   whose certificate's status changed (the store's revocation generation
//!   says that something changed; the status, read again, says what).
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
        issue::{IssueError, Issuer},
        ocsp::{
            error_response, responder_key_hash, sign_response, CertId, CertStatus, OcspRequest,
            ResponseStatus, SingleAnswer, ID_SHA1, ID_SHA256,
        },
    },
    config::OcspConfig,
    store::{hex_lower, CertificateStore, StoreError},
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
    /// The CA's revocation generation the status was read at.
    generation: i64,
    /// When the background refresh ([`refresh`]) re-signs it.
    refresh_at: SystemTime,
    cert_id: CertId,
    status: CertStatus,
    answer: OcspAnswer,
    /// Served since it was signed: only those are kept warm, so that
    /// certificates nobody asks about any more cost no signatures.
    asked: bool,
}

impl Cached {
    fn unexpired(&self, now: SystemTime) -> bool {
        self.answer.validity.is_some_and(|(_, next)| now < next)
    }

    /// Whether [`refresh`] has work with it: the CA's revocations changed
    /// since its status was read, or it is half-way to its nextUpdate.
    fn due(&self, generation: i64, now: SystemTime) -> bool {
        self.generation != generation || now >= self.refresh_at
    }
}

/// The signed responses of one CA, by CertID (DER).
#[derive(Debug, Default)]
pub struct OcspCache(Mutex<HashMap<Vec<u8>, Cached>>);

impl OcspCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Cached>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached response under `key`, marked as asked for.
    fn get(&self, key: &[u8]) -> Option<Cached> {
        self.map().get_mut(key).map(|c| {
            c.asked = true;
            c.clone()
        })
    }

    /// Forgets the response under `key` unless it was replaced meanwhile.
    fn forget(&self, key: &[u8], answer: &OcspAnswer) {
        let mut map = self.map();
        if map
            .get(key)
            .is_some_and(|c| c.answer.der.as_ptr() == answer.der.as_ptr())
        {
            map.remove(key);
        }
    }

    fn put(&self, key: Vec<u8>, value: Cached) {
        let mut map = self.map();
        if map.len() >= MAX_CACHED && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, value);
    }

    /// Records that the response under `key` still holds at `generation`
    /// (its certificate's status did not change), unless it was replaced
    /// meanwhile.
    fn confirm(&self, key: &[u8], answer: &OcspAnswer, generation: i64) {
        if let Some(c) = self.map().get_mut(key) {
            if c.answer.der.as_ptr() == answer.der.as_ptr() {
                c.generation = generation;
            }
        }
    }

    /// At most `limit` entries [`Cached::due`], the longest due first.
    fn due(&self, generation: i64, now: SystemTime, limit: usize) -> Vec<(Vec<u8>, Cached)> {
        let map = self.map();
        // Only the entries taken are cloned: after a revocation every one
        // of up to MAX_CACHED is due.
        let mut due: Vec<(SystemTime, &Vec<u8>)> = map
            .iter()
            .filter(|(_, c)| c.due(generation, now))
            .map(|(k, c)| (c.refresh_at, k))
            .collect();
        if due.len() > limit {
            due.select_nth_unstable(limit);
            due.truncate(limit);
        }
        due.sort_unstable();
        due.into_iter()
            .map(|(_, k)| (k.clone(), map[k].clone()))
            .collect()
    }

    /// How many responses are cached.
    pub fn len(&self) -> usize {
        self.map().len()
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

/// What the store says about the certificate `id` names, for CA `ca_id`.
fn status_of(
    store: &dyn CertificateStore,
    ca_id: &str,
    id: &CertId,
) -> Result<CertStatus, StoreError> {
    Ok(match store.find_entry(&serial_hex(id))? {
        Some(e) if e.record.ca_id == ca_id => match e.revocation {
            Some(r) => CertStatus::Revoked {
                at: r.revoked_at,
                reason_code: r.reason_code,
            },
            None => CertStatus::Good,
        },
        _ => CertStatus::Unknown,
    })
}

/// Signs one response with `answers` (and `nonce`); `cacheable` when it is
/// the answer to a single-certificate request without nonce.
async fn sign(
    issuer: &Issuer,
    answers: &[SingleAnswer],
    now: SystemTime,
    nonce: Option<&x509_cert::ext::Extension>,
    cacheable: bool,
) -> Result<OcspAnswer, IssueError> {
    let der = sign_response(issuer, answers, now, nonce).await?;
    Ok(OcspAnswer {
        der: der.into(),
        validity: match (cacheable, answers) {
            (true, [one]) => Some((one.this_update, one.next_update)),
            _ => None,
        },
        status: match answers {
            [one] => match one.status {
                CertStatus::Good => "good",
                CertStatus::Revoked { .. } => "revoked",
                CertStatus::Unknown => "unknown",
            },
            _ => "several",
        },
    })
}

/// Signs the single-certificate answer for `id` and caches it.
async fn sign_and_cache(
    issuer: &Issuer,
    config: &OcspConfig,
    cache: &OcspCache,
    (key, id): (Vec<u8>, CertId),
    status: CertStatus,
    generation: i64,
    now: SystemTime,
) -> Result<OcspAnswer, IssueError> {
    let max_age = config.max_age();
    let single = SingleAnswer {
        cert_id: id,
        status,
        this_update: now,
        next_update: now + max_age,
    };
    let answer = sign(issuer, std::slice::from_ref(&single), now, None, true).await?;
    cache.put(
        key,
        Cached {
            generation,
            refresh_at: now + max_age / 2,
            cert_id: single.cert_id,
            status: single.status,
            answer: answer.clone(),
            asked: false,
        },
    );
    Ok(answer)
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
    let ca_id = issuer.ca_id();
    // Only a single-certificate request without nonce is cached.
    let single = match (nonce, ids.as_slice()) {
        (None, [id]) => id.to_der().ok().map(|k| (k, (*id).clone())),
        _ => None,
    };
    let cached = single.as_ref().and_then(|(k, _)| cache.get(k));
    let generation = match store.ca_revocation_generation(ca_id) {
        Ok(g) => g,
        Err(e) => return fallback(cached, now, ca_id, &e),
    };
    if let (Some(c), Some((key, _))) = (&cached, &single) {
        if c.unexpired(now) {
            // Re-signing before nextUpdate is the background refresh's job.
            if c.generation == generation {
                return c.answer.clone();
            }
            // Another certificate of the CA was revoked: this answer holds
            // unless this certificate's status is what changed.
            match status_of(store, ca_id, &c.cert_id) {
                Ok(st) if st == c.status => {
                    cache.confirm(key, &c.answer, generation);
                    return c.answer.clone();
                }
                Ok(_) => {}
                Err(e) => return fallback(cached, now, ca_id, &e),
            }
        }
    }
    let max_age = config.max_age();
    let mut answers = Vec::with_capacity(ids.len());
    for id in &ids {
        match status_of(store, ca_id, id) {
            Ok(status) => answers.push(SingleAnswer {
                cert_id: (*id).clone(),
                status,
                this_update: now,
                next_update: now + max_age,
            }),
            Err(e) => return fallback(cached, now, ca_id, &e),
        }
    }
    let signed = match single {
        Some(single) => {
            let status = answers.swap_remove(0).status;
            sign_and_cache(issuer, config, cache, single, status, generation, now).await
        }
        None => sign(issuer, &answers, now, nonce, false).await,
    };
    signed.unwrap_or_else(|e| fallback(cached, now, ca_id, &e))
}

/// Most cached responses whose status [`refresh`] re-reads in one call.
const REFRESH_READS: usize = 4096;
/// Most responses [`refresh`] signs in one call: it runs every second
/// beside enrollment, on the same HSM sessions.
const REFRESH_SIGNS: usize = 64;

/// What one [`refresh`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Responses re-signed.
    pub signed: usize,
    /// Responses confirmed after a revocation of another certificate.
    pub confirmed: usize,
    /// Responses due but not asked for since they were signed, dropped.
    pub forgotten: usize,
}

/// Keeps `cache` warm, so that a request without nonce never waits for
/// the HSM once its certificate was asked about: re-signs the responses
/// half-way to their nextUpdate, and after the CA's revocations changed,
/// re-signs those whose certificate's status changed (the others are
/// confirmed as they are). Only responses served since they were signed
/// are re-signed; the others are dropped, so that background signing
/// follows what relying parties ask. Bounded per call; run it every second.
pub async fn refresh(
    store: &dyn CertificateStore,
    issuer: &Issuer,
    config: &OcspConfig,
    cache: &OcspCache,
) -> Result<Refreshed, RefreshError> {
    let ca_id = issuer.ca_id();
    let generation = store.ca_revocation_generation(ca_id)?;
    let now = whole_seconds(SystemTime::now());
    let mut done = Refreshed::default();
    // Up to REFRESH_READS store reads: in one batch, off the async worker.
    let due = super::blocking(|| {
        cache
            .due(generation, now, REFRESH_READS)
            .into_iter()
            .map(|(key, c)| Ok((status_of(store, ca_id, &c.cert_id)?, key, c)))
            .collect::<Result<Vec<_>, StoreError>>()
    })?;
    for (status, key, c) in due {
        if status == c.status && now < c.refresh_at {
            cache.confirm(&key, &c.answer, generation);
            done.confirmed += 1;
            continue;
        }
        // Not asked for since it was signed: dropped rather than re-signed;
        // a later request signs it again, once.
        if !c.asked {
            cache.forget(&key, &c.answer);
            done.forgotten += 1;
            continue;
        }
        if done.signed == REFRESH_SIGNS {
            break;
        }
        sign_and_cache(
            issuer,
            config,
            cache,
            (key, c.cert_id),
            status,
            generation,
            now,
        )
        .await?;
        done.signed += 1;
    }
    Ok(done)
}

/// Why [`refresh`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed (the HSM): the cached responses stay until they expire.
    #[error(transparent)]
    Sign(#[from] IssueError),
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

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::OctetString;
    use spki::AlgorithmIdentifierOwned;
    use x509_cert::serial_number::SerialNumber;

    fn cached(serial: u8, generation: i64, refresh_at: u64) -> (Vec<u8>, Cached) {
        let cert_id = CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: ID_SHA1,
                parameters: None,
            },
            issuer_name_hash: OctetString::new([1u8; 20]).unwrap(),
            issuer_key_hash: OctetString::new([2u8; 20]).unwrap(),
            serial_number: SerialNumber::new(&[serial]).unwrap(),
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(refresh_at);
        let answer = OcspAnswer {
            der: Bytes::from(vec![serial]),
            validity: Some((t, t + Duration::from_secs(3600))),
            status: "good",
        };
        let key = cert_id.to_der().unwrap();
        let c = Cached {
            generation,
            refresh_at: t,
            cert_id,
            status: CertStatus::Good,
            answer,
            asked: true,
        };
        (key, c)
    }

    #[test]
    fn the_refresh_takes_the_longest_due_first_and_only_so_many() {
        let cache = OcspCache::default();
        for (serial, refresh_at) in [(1, 500), (2, 100), (3, 300), (4, 900), (5, 200)] {
            let (k, c) = cached(serial, 7, refresh_at);
            cache.put(k, c);
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(600);
        let serials = |due: Vec<(Vec<u8>, Cached)>| -> Vec<u8> {
            due.iter()
                .map(|(_, c)| c.cert_id.serial_number.as_bytes()[0])
                .collect()
        };
        // Same generation: those past their refresh time, oldest first.
        assert_eq!(serials(cache.due(7, now, 10)), [2, 5, 3, 1]);
        assert_eq!(serials(cache.due(7, now, 2)), [2, 5]);
        // After a revocation every one is due.
        assert_eq!(serials(cache.due(8, now, 10)), [2, 5, 3, 1, 4]);
    }

    #[test]
    fn a_confirmation_does_not_touch_a_replaced_answer() {
        let cache = OcspCache::default();
        let (k, old) = cached(1, 7, 100);
        cache.put(k.clone(), old.clone());
        cache.confirm(&k, &old.answer, 8);
        assert_eq!(cache.get(&k).unwrap().generation, 8);
        let (_, mut newer) = cached(1, 9, 200);
        newer.answer.der = Bytes::from(vec![9, 9]);
        cache.put(k.clone(), newer);
        cache.confirm(&k, &old.answer, 10);
        assert_eq!(
            cache.get(&k).unwrap().generation,
            9,
            "the newer answer keeps its own"
        );
    }
}

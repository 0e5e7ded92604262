//! A CA's signing key: on the token through the pool, or — for ML-DSA on
//! tokens without it — the software fallback.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use cryptoki::{object::ObjectHandle, session::Session};

use super::{
    error::{FailureClass, HsmError},
    keys::{find_private_key, read_key_info, KeyAlgorithm, KeyInfo},
    pool::SessionPool,
    sign::{choose_mechanism, sign_with, SignMechanism, SignatureScheme},
    uri::Pkcs11Uri,
};
use crate::hsm::pqc_fallback::SoftwarePqcFallback;

/// Where the key is held, for `kipuka check` and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCustody {
    /// Inside the HSM.
    Hardware,
    /// In a software key file (`SoftwarePqcFallback`).
    Software,
}

/// A private key on the token, re-found after the library is re-initialised
/// (object handles do not survive `C_Finalize`).
struct KeyRef {
    uri: Pkcs11Uri,
    /// (pool re-initialisation count when found, handle)
    handle: Mutex<(usize, ObjectHandle)>,
}

impl KeyRef {
    fn handle(&self, pool: &SessionPool, session: &Session) -> Result<ObjectHandle, HsmError> {
        let generation = pool.stats().reinitialized;
        let mut cached = self.handle.lock().expect("key lock");
        if cached.0 != generation {
            *cached = (generation, find_private_key(session, &self.uri)?);
        }
        Ok(cached.1)
    }
}

/// A signing key in the HSM with its mechanism chosen.
pub struct HsmKeySigner {
    pool: Arc<SessionPool>,
    key: Arc<KeyRef>,
    info: KeyInfo,
    scheme: SignatureScheme,
    mechanism: SignMechanism,
}

/// A CA signing key, wherever it is held.
pub enum CaSigner {
    /// In the HSM.
    Hsm(Box<HsmKeySigner>),
    /// ML-DSA in software, because the token cannot.
    Software(Arc<SoftwarePqcFallback>),
}

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaSigner::Hsm(s) => write!(
                f,
                "CaSigner::Hsm({}, {}, {})",
                s.info.uri,
                s.info.algorithm,
                s.mechanism.mechanism()
            ),
            CaSigner::Software(k) => write!(f, "CaSigner::Software({})", k.parameter_set()),
        }
    }
}

impl HsmKeySigner {
    /// Finds the key `uri` on the token, reads what it is and chooses the
    /// mechanism for `scheme`. Blocking: call at start-up or from a
    /// blocking thread. `Ok(None)`: ML-DSA the token cannot do natively.
    pub fn open(
        pool: &Arc<SessionPool>,
        uri: &Pkcs11Uri,
        scheme: SignatureScheme,
    ) -> Result<(KeyInfo, Option<Self>), HsmError> {
        Self::open_choosing(pool, uri, |_| scheme)
    }

    /// Like [`HsmKeySigner::open`], with the scheme chosen from the key's
    /// algorithm as read from the token (one lookup, not two).
    pub fn open_choosing(
        pool: &Arc<SessionPool>,
        uri: &Pkcs11Uri,
        choose: impl FnOnce(KeyAlgorithm) -> SignatureScheme,
    ) -> Result<(KeyInfo, Option<Self>), HsmError> {
        let info = pool.run_blocking(&|s| {
            let handle = find_private_key(s, uri)?;
            read_key_info(s, uri, handle)
        })?;
        let scheme = choose(info.algorithm);
        let mechanism =
            choose_mechanism(pool.context(), info.algorithm, scheme).map_err(|e| match e {
                HsmError::Key { reason, .. } => HsmError::Key {
                    uri: uri.to_string(),
                    reason,
                },
                other => other,
            })?;
        let signer = mechanism.map(|mechanism| HsmKeySigner {
            pool: pool.clone(),
            key: Arc::new(KeyRef {
                uri: uri.clone(),
                handle: Mutex::new((pool.stats().reinitialized, info.handle)),
            }),
            info: info.clone(),
            scheme,
            mechanism,
        });
        Ok((info, signer))
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.info.algorithm
    }

    /// What is known of the key.
    pub fn info(&self) -> &KeyInfo {
        &self.info
    }

    /// The mechanism in use.
    pub fn mechanism(&self) -> SignMechanism {
        self.mechanism
    }

    /// Signs `data` on a pooled session, on a blocking thread.
    pub async fn sign(&self, data: Bytes) -> Result<Vec<u8>, HsmError> {
        let pool = self.pool.clone();
        let key = self.key.clone();
        let (scheme, mechanism) = (self.scheme, self.mechanism);
        self.pool
            .run(move |session| {
                let handle = key.handle(&pool, session)?;
                let started = std::time::Instant::now();
                let signed = sign_with(session, handle, scheme, mechanism, &data);
                tracing::debug!(
                    target: "kipuka::hsm",
                    mechanism = %mechanism.mechanism(),
                    bytes = data.len(),
                    ok = signed.is_ok(),
                    micros = started.elapsed().as_micros() as u64,
                    "C_Sign"
                );
                signed.inspect_err(|e| {
                    // A stale handle after an HSM restart: find the key again next time.
                    if e.class() != FailureClass::Operation {
                        key.handle.lock().expect("key lock").0 = usize::MAX;
                    }
                })
            })
            .await
    }

    /// Signs on the calling thread (tools, start-up self-test).
    pub fn sign_blocking(&self, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.pool.run_blocking(&|session| {
            let handle = self.key.handle(&self.pool, session)?;
            sign_with(session, handle, self.scheme, self.mechanism, data)
        })
    }
}

impl CaSigner {
    /// The vendor plugin that reaches the key, or `software` for the
    /// ML-DSA fallback: the `plugin` label of the signing metrics.
    pub fn plugin(&self) -> String {
        match self {
            CaSigner::Hsm(s) => s.pool.context().profile().name.clone(),
            CaSigner::Software(_) => "software".into(),
        }
    }

    /// Where the key is held.
    pub fn custody(&self) -> KeyCustody {
        match self {
            CaSigner::Hsm(_) => KeyCustody::Hardware,
            CaSigner::Software(_) => KeyCustody::Software,
        }
    }

    /// Signs `data` (the DER of a TBSCertificate) and returns the signature
    /// as X.509 carries it (DER `Ecdsa-Sig-Value` for ECDSA, raw otherwise).
    pub async fn sign(&self, data: Bytes) -> Result<Vec<u8>, HsmError> {
        match self {
            CaSigner::Hsm(s) => s.sign(data).await,
            CaSigner::Software(k) => {
                let k = k.clone();
                tokio::task::spawn_blocking(move || {
                    k.sign(&data).map_err(|e| HsmError::Software(e.to_string()))
                })
                .await
                .map_err(|e| HsmError::Internal(e.to_string()))?
            }
        }
    }

    /// Signs on the calling thread.
    pub fn sign_blocking(&self, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        match self {
            CaSigner::Hsm(s) => s.sign_blocking(data),
            CaSigner::Software(k) => k.sign(data).map_err(|e| HsmError::Software(e.to_string())),
        }
    }
}

//! `--raw-sign`: what the same machine does with no server around it.
//!
//! Three phases, each for the same time and on as many threads as the load
//! phase had connections, one PKCS#11 session per thread (a `Session` is
//! not `Sync`):
//! 1. sign: `C_Sign` with the CA key, the mechanism kipuka uses for it
//!    (`CKM_ECDSA` on a SHA-256 hash for P-256, `CKM_RSA_PKCS_PSS` with
//!    SHA-256 for RSA), each over a different hash;
//! 2. verify: kipuka's own `verify_csr` on the load phase's CSRs;
//! 3. verify + sign: both, one after the other, per CSR.

use std::{
    path::PathBuf,
    str::FromStr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Barrier,
    },
    time::{Duration, Instant},
};

use cryptoki::{
    context::{CInitializeArgs, CInitializeFlags, Pkcs11},
    error::{Error as CkError, RvError},
    mechanism::Mechanism,
    object::{Attribute, AttributeType, KeyType, ObjectHandle},
    session::{Session, UserType},
    slot::Slot,
};
use kipuka::hsm::{keys::find_private_key, sign::pss_params, PinSource, Pkcs11Uri};
use kipuka_plugin_api::HashAlg;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::{cli::RawMechanism, error::BenchError};

/// What `--raw-sign` needs.
pub struct RawConfig {
    /// The PKCS#11 library.
    pub module: PathBuf,
    /// The key, as an RFC 7512 URI (`token=` and `object=` and/or `id=`).
    pub uri: String,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// Forced mechanism, else the one kipuka uses for the key type.
    pub mechanism: Option<RawMechanism>,
    /// Threads (= sessions).
    pub threads: usize,
    /// Length of each phase.
    pub duration: Duration,
}

/// The three rates.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RawResult {
    /// The key's URI.
    pub key: String,
    /// `CKK_EC` or `CKK_RSA`.
    pub key_type: String,
    /// The mechanism driven.
    pub mechanism: RawMechanism,
    /// Threads (sessions).
    pub threads: usize,
    /// Seconds per phase.
    pub phase_seconds: f64,
    /// `C_Sign` per second.
    pub sign_per_s: f64,
    /// `verify_csr` per second (None when no CSRs were made: `--ocsp-request`).
    pub verify_per_s: Option<f64>,
    /// `verify_csr` + `C_Sign` per second (None likewise).
    pub verify_sign_per_s: Option<f64>,
}

fn ck(function: &'static str) -> impl FnOnce(CkError) -> BenchError {
    BenchError::pkcs11(function)
}

/// The loaded library, the logged-in token and the key.
struct Token {
    pkcs11: Pkcs11,
    slot: Slot,
    key: ObjectHandle,
    key_type: KeyType,
    /// Kept open for the whole run: closing the last session logs out.
    _login: Session,
}

impl Token {
    fn open(cfg: &RawConfig) -> Result<Self, BenchError> {
        let uri = Pkcs11Uri::from_str(&cfg.uri)
            .map_err(|e| BenchError::Pkcs11(format!("{:?} is not a PKCS#11 URI: {e}", cfg.uri)))?;
        let label = uri.token.clone().ok_or_else(|| {
            BenchError::Pkcs11(format!("{:?} names no token (token=...)", cfg.uri))
        })?;
        let pkcs11 = Pkcs11::new(&cfg.module).map_err(|e| {
            BenchError::Pkcs11(format!("cannot load {}: {e}", cfg.module.display()))
        })?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(ck("C_Initialize")(e)),
        }
        let mut slot = None;
        for s in pkcs11.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
            let info = pkcs11.get_token_info(s).map_err(ck("C_GetTokenInfo"))?;
            if info.label().trim_end() == label {
                slot = Some(s);
                break;
            }
        }
        let slot = slot.ok_or_else(|| {
            BenchError::Pkcs11(format!(
                "no token labelled {label:?} in {} (for SoftHSM2: is SOFTHSM2_CONF the server's?)",
                cfg.module.display()
            ))
        })?;
        let session = pkcs11.open_ro_session(slot).map_err(ck("C_OpenSession"))?;
        let pin: Option<SecretString> = cfg
            .pin
            .read()
            .map_err(|e| BenchError::Pkcs11(format!("PIN: {e}")))?;
        if let Some(pin) = pin {
            match session.login(UserType::User, Some(&pin)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(ck("C_Login")(e)),
            }
        }
        let key =
            find_private_key(&session, &uri).map_err(|e| BenchError::Pkcs11(e.to_string()))?;
        let key_type = session
            .get_attributes(key, &[AttributeType::KeyType])
            .map_err(ck("C_GetAttributeValue"))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::KeyType(t) => Some(t),
                _ => None,
            })
            .ok_or_else(|| BenchError::Pkcs11("the token does not say the key's type".into()))?;
        Ok(Token {
            pkcs11,
            slot,
            key,
            key_type,
            _login: session,
        })
    }

    /// The mechanism kipuka uses for this key type, or the forced one.
    fn mechanism(&self, forced: Option<RawMechanism>) -> Result<RawMechanism, BenchError> {
        let default = if self.key_type == KeyType::EC {
            RawMechanism::Ecdsa
        } else if self.key_type == KeyType::RSA {
            RawMechanism::RsaPss
        } else {
            return Err(BenchError::Pkcs11(format!(
                "key type {} is neither EC nor RSA: give --raw-mechanism",
                self.key_type
            )));
        };
        Ok(forced.unwrap_or(default))
    }
}

/// SHA-256 DigestInfo prefix (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Signs the SHA-256 of `message` the way kipuka would.
fn sign(
    session: &Session,
    key: ObjectHandle,
    mechanism: RawMechanism,
    message: &[u8],
) -> Result<Vec<u8>, BenchError> {
    let hash = Sha256::digest(message);
    let result = match mechanism {
        RawMechanism::Ecdsa => session.sign(&Mechanism::Ecdsa, key, &hash),
        RawMechanism::RsaPss => session.sign(
            &Mechanism::RsaPkcsPss(pss_params(HashAlg::SHA256)),
            key,
            &hash,
        ),
        RawMechanism::RsaPkcs => {
            let mut info = SHA256_DIGEST_INFO.to_vec();
            info.extend_from_slice(&hash);
            session.sign(&Mechanism::RsaPkcs, key, &info)
        }
    };
    result.map_err(ck("C_Sign"))
}

/// Runs `op(thread, i)` on `threads` threads for `duration`; returns ops/s.
/// Each thread first makes its own state with `setup` (its session).
fn rate<S>(
    threads: usize,
    duration: Duration,
    setup: impl Fn() -> Result<S, BenchError> + Sync,
    op: impl Fn(&S, u64) -> Result<(), BenchError> + Sync,
) -> Result<f64, BenchError> {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let (counts, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, barrier, setup, op) = (&stop, &barrier, &setup, &op);
                s.spawn(move || -> Result<u64, BenchError> {
                    let state = setup();
                    barrier.wait();
                    let state = state?;
                    let mut n = 0u64;
                    // Distinct inputs per thread: thread in the high bits.
                    let base = (t as u64) << 40;
                    while !stop.load(Ordering::Relaxed) {
                        op(&state, base + n)?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let counts: Vec<Result<u64, BenchError>> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BenchError::Runtime("a measuring thread panicked".into()))
                })
            })
            .collect();
        (counts, start.elapsed())
    });
    let mut total = 0u64;
    for c in counts {
        total += c?;
    }
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// Runs the three phases over `csrs` (DER); only `C_Sign` when there are
/// no CSRs (an OCSP run).
pub fn run(cfg: &RawConfig, csrs: Arc<Vec<Vec<u8>>>) -> Result<RawResult, BenchError> {
    // Every CSR was made here and must verify: a failure is a bug, said so.
    if let Some(first) = csrs.first() {
        kipuka::ca::csr::verify_csr(first)
            .map_err(|e| BenchError::Runtime(format!("a generated CSR does not verify: {e}")))?;
    }
    let token = Token::open(cfg)?;
    let mechanism = token.mechanism(cfg.mechanism)?;
    let open = || {
        token
            .pkcs11
            .open_ro_session(token.slot)
            .map_err(ck("C_OpenSession"))
    };
    let csr = |i: u64| &csrs[(i % csrs.len() as u64) as usize];
    let verify = |i: u64| {
        kipuka::ca::csr::verify_csr(csr(i))
            .map(|_| ())
            .map_err(|e| BenchError::Runtime(format!("verify_csr: {e}")))
    };

    let sign_per_s = rate(cfg.threads, cfg.duration, open, |s, i| {
        sign(s, token.key, mechanism, &i.to_le_bytes()).map(|_| ())
    })?;
    let (verify_per_s, verify_sign_per_s) = if csrs.is_empty() {
        (None, None)
    } else {
        let v = rate(cfg.threads, cfg.duration, || Ok(()), |_, i| verify(i))?;
        let vs = rate(cfg.threads, cfg.duration, open, |s, i| {
            verify(i)?;
            sign(s, token.key, mechanism, csr(i)).map(|_| ())
        })?;
        (Some(v), Some(vs))
    };
    Ok(RawResult {
        key: cfg.uri.clone(),
        key_type: format!("{}", token.key_type),
        mechanism,
        threads: cfg.threads,
        phase_seconds: cfg.duration.as_secs_f64(),
        sign_per_s,
        verify_per_s,
        verify_sign_per_s,
    })
}

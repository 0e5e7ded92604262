//! Software ML-DSA (FIPS 204) for HSMs that cannot do it themselves.
//!
//! nShield, Luna and SoftHSM2 have no ML-DSA mechanism. For them kipuka signs
//! ML-DSA certificates with a key held in memory, loaded from an encrypted
//! PKCS#8 file whose passphrase comes from an environment variable. The file
//! is the one OpenSSL 3.5 writes:
//!
//! ```text
//! openssl genpkey -algorithm ML-DSA-65 \
//!   | openssl pkcs8 -topk8 -v2 aes-256-cbc -passout env:KIPUKA_PQC_PASSPHRASE > ca-mldsa.p8.pem
//! ```
//!
//! # Crate choices
//!
//! * ML-DSA: RustCrypto `ml-dsa` 0.1.2 rather than `fips204` 0.5.0. Both are
//!   pure Rust, implement FIPS 204 final, derive keys from the 32-byte seed
//!   `xi` (`ExpandedSigningKey::from_seed` / `KG::keygen_from_seed`) and sign
//!   hedged with a caller-chosen context, the empty one included
//!   (`sign_randomized(m, &[], rng)` / `try_sign_with_rng(rng, m, &[])`).
//!   `ml-dsa` wins because it is part of the RustCrypto family kipuka already
//!   builds certificates with (`der` 0.8, `spki` 0.8, `pkcs8` 0.11, the
//!   `signature` 3 traits, `rand_core` 0.10, `zeroize`): one set of ASN.1 types
//!   and RNG traits, the RFC 9881 OIDs and SPKI encoding upstream, and a
//!   project with several maintainers and a security changelog (0.1.2 fixed
//!   constant-time issues). `fips204` is a single-maintainer crate on the
//!   older `rand_core` 0.6 with no PKCS#8/SPKI support. Neither has been
//!   independently audited. Note `ml-dsa` 0.1.2 needs rustc 1.87.
//!   `ml-dsa`'s `Signer` impls are deterministic, so [`SoftwarePqcFallback::sign`]
//!   calls the hedged `ExpandedSigningKey::sign_randomized` with OS randomness
//!   (FIPS 204 recommends the hedged variant).
//! * Encrypted PKCS#8: RustCrypto `pkcs8` 0.11 (`encryption`, `pem`), which
//!   reads PBES2 with PBKDF2 (HMAC-SHA1/SHA-224/256/384/512) or scrypt and
//!   AES-CBC/GCM. That covers OpenSSL's `-v2 aes-256-cbc` output (PBKDF2 with
//!   `hmacWithSHA256` and NULL parameters, 2048 iterations, AES-256-CBC). We
//!   write PBES2 + PBKDF2-HMAC-SHA256 (600 000 iterations, the OWASP figure) +
//!   AES-256-CBC, which every OpenSSL 3 reads.
//!
//! # Key format (RFC 9881)
//!
//! The `privateKey` OCTET STRING of the PKCS#8 holds
//!
//! ```text
//! ML-DSA-PrivateKey ::= CHOICE {
//!   seed        [0] IMPLICIT OCTET STRING (SIZE (32)),
//!   expandedKey OCTET STRING (SIZE (2560 | 4032 | 4896)),
//!   both        SEQUENCE { seed OCTET STRING (SIZE (32)), expandedKey OCTET STRING } }
//! ```
//!
//! OpenSSL 3.5 writes `both` by default. We read `seed` and `both` (checking
//! that the expanded key is the one the seed gives) and refuse `expandedKey`
//! alone: without the seed the key cannot be re-exported in the recommended
//! form, and `ml-dsa` only loads a bare expanded key through a deprecated
//! function that does not validate its input. We write `seed`, the form
//! RFC 9881 recommends, which OpenSSL 3.5 reads.

use std::fmt;
use std::path::{Path, PathBuf};

use kipuka_plugin_api::MlDsaParameterSet;
use ml_dsa::{ExpandedSigningKey, MlDsa44, MlDsa65, MlDsa87, MlDsaParams, Seed};
use pkcs8::der::asn1::{AnyRef, BitStringRef, ContextSpecific, OctetStringRef};
use pkcs8::der::{Decode, Encode, Reader, SliceReader, Tag, TagMode, TagNumber, Tagged};
use pkcs8::pkcs5::pbes2;
use pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use pkcs8::{
    EncryptedPrivateKeyInfoRef, LineEnding, ObjectIdentifier, PrivateKeyInfoRef, SecretDocument,
};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// PBKDF2-HMAC-SHA256 iterations for the files kipuka writes (OWASP 2023).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// PEM label of an encrypted PKCS#8 document.
const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";
/// PEM label of a plaintext PKCS#8 document.
const PLAINTEXT_LABEL: &str = "PRIVATE KEY";
/// Length of the ML-DSA seed `xi`.
const SEED_LEN: usize = 32;

/// Everything that can go wrong with the software ML-DSA key.
///
/// Messages name the key file (or the environment variable), never the
/// passphrase or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PqcError {
    /// The key file could not be read.
    #[error("cannot read ML-DSA key file {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The passphrase environment variable is unset, empty or not UTF-8.
    #[error("ML-DSA key passphrase: environment variable {var} {problem}")]
    PassphraseEnv {
        /// The variable's name.
        var: String,
        /// What is wrong with it ("is not set", "is empty", ...).
        problem: &'static str,
    },
    /// The file holds an unencrypted private key; kipuka only accepts encrypted ones.
    #[error(
        "ML-DSA key file {path} is not encrypted; encrypt it with \
         `openssl pkcs8 -topk8 -v2 aes-256-cbc -passout env:VAR`"
    )]
    NotEncrypted {
        /// The key file.
        path: PathBuf,
    },
    /// The file is not an encrypted PKCS#8 document (PEM or DER).
    #[error("ML-DSA key file {path} is not an encrypted PKCS#8 private key: {reason}")]
    NotPkcs8 {
        /// The key file.
        path: PathBuf,
        /// What the parser found.
        reason: String,
    },
    /// The encryption scheme is not one kipuka can decrypt (PBES1, DES, ...).
    #[error(
        "ML-DSA key file {path} uses an unsupported encryption scheme ({reason}); \
         use PBES2 with PBKDF2 or scrypt and AES (openssl pkcs8 -topk8 -v2 aes-256-cbc)"
    )]
    UnsupportedEncryption {
        /// The key file.
        path: PathBuf,
        /// The scheme that was refused.
        reason: String,
    },
    /// Decryption failed: the passphrase is wrong or the file is damaged.
    #[error("cannot decrypt ML-DSA key file {path}: wrong passphrase or damaged file")]
    Decrypt {
        /// The key file.
        path: PathBuf,
    },
    /// The key is not an ML-DSA key.
    #[error(
        "key file {path} holds a key of algorithm {oid}, not ML-DSA-44/65/87 \
         (2.16.840.1.101.3.4.3.17/18/19)"
    )]
    NotMlDsa {
        /// The key file.
        path: PathBuf,
        /// The algorithm OID found.
        oid: String,
    },
    /// The file holds only the expanded private key, without the seed.
    #[error(
        "ML-DSA key file {path} holds only the expanded private key (no seed); kipuka needs \
         the 32-byte seed: write the key in the `seed` or `both` form (the OpenSSL 3.5 default)"
    )]
    ExpandedKeyOnly {
        /// The key file.
        path: PathBuf,
    },
    /// The `both` form holds an expanded key that does not come from its seed.
    #[error("ML-DSA key file {path} is inconsistent: the expanded key does not match the seed")]
    SeedMismatch {
        /// The key file.
        path: PathBuf,
    },
    /// The PKCS#8 `publicKey` field does not match the private key.
    #[error("ML-DSA key file {path} is inconsistent: its public key does not match the seed")]
    PublicKeyMismatch {
        /// The key file.
        path: PathBuf,
    },
    /// The ML-DSA private key structure is malformed.
    #[error("ML-DSA key file {path} is malformed: {reason}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A parameter set other than ML-DSA-44/65/87.
    #[error("unsupported ML-DSA parameter set {0}")]
    UnsupportedParameterSet(MlDsaParameterSet),
    /// The operating system's random number generator failed.
    #[error("operating system random number generator failed: {0}")]
    Random(String),
    /// Encoding the key or its encryption failed.
    #[error("cannot encode ML-DSA key: {0}")]
    Encode(String),
    /// Signing failed (no randomness, or rejection sampling gave up).
    #[error("ML-DSA signing failed: {0}")]
    Sign(String),
}

/// The RFC 9881 facts of one parameter set.
struct SetInfo {
    set: MlDsaParameterSet,
    oid: ObjectIdentifier,
    oid_str: &'static str,
}

const ML_DSA_44: SetInfo = SetInfo {
    set: MlDsaParameterSet::ML_DSA_44,
    oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17"),
    oid_str: "2.16.840.1.101.3.4.3.17",
};
const ML_DSA_65: SetInfo = SetInfo {
    set: MlDsaParameterSet::ML_DSA_65,
    oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18"),
    oid_str: "2.16.840.1.101.3.4.3.18",
};
const ML_DSA_87: SetInfo = SetInfo {
    set: MlDsaParameterSet::ML_DSA_87,
    oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.19"),
    oid_str: "2.16.840.1.101.3.4.3.19",
};

/// One parameter set's key: the expanded signing key, the seed it came from
/// (for export) and the encoded public key. `ExpandedSigningKey` zeroizes
/// itself on drop (`ml-dsa`'s `zeroize` feature); the seed is `Zeroizing`.
struct KeyPair<P: MlDsaParams> {
    signing: Box<ExpandedSigningKey<P>>,
    seed: Zeroizing<[u8; SEED_LEN]>,
    public: Vec<u8>,
}

impl<P: MlDsaParams> KeyPair<P> {
    fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let xi = Zeroizing::new(Seed::from(*seed));
        let signing = Box::new(ExpandedSigningKey::<P>::from_seed(&xi));
        let public = signing.verifying_key().encode().to_vec();
        KeyPair {
            signing,
            seed: Zeroizing::new(*seed),
            public,
        }
    }

    /// FIPS 204 `skEncode` of the key, to compare with a file's `expandedKey`.
    fn expanded_bytes(&self) -> Zeroizing<Vec<u8>> {
        // `to_expanded` is deprecated in favour of seeds; we only use it to
        // check the `both` form, never to store or write the expanded key.
        #[allow(deprecated)]
        let bytes = Zeroizing::new(self.signing.to_expanded());
        Zeroizing::new(bytes.to_vec())
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PqcError> {
        // Hedged ML-DSA.Sign (FIPS 204 Algorithm 2) with an empty context,
        // as RFC 9881 requires for X.509.
        let signature = self
            .signing
            .sign_randomized(message, &[], &mut getrandom::SysRng)
            .map_err(|e| PqcError::Sign(e.to_string()))?;
        Ok(signature.encode().to_vec())
    }
}

enum Inner {
    MlDsa44(KeyPair<MlDsa44>),
    MlDsa65(KeyPair<MlDsa65>),
    MlDsa87(KeyPair<MlDsa87>),
}

/// Dispatches `$body` over the parameter set, binding the `KeyPair` to `$k`.
macro_rules! with_key {
    ($inner:expr, $k:ident => $body:expr) => {
        match $inner {
            Inner::MlDsa44($k) => $body,
            Inner::MlDsa65($k) => $body,
            Inner::MlDsa87($k) => $body,
        }
    };
}

/// An ML-DSA-44/65/87 signing key held in software, for HSMs without ML-DSA.
///
/// Private material (seed and expanded key) is zeroized on drop. `Debug`
/// shows the parameter set only.
pub struct SoftwarePqcFallback {
    inner: Inner,
}

impl fmt::Debug for SoftwarePqcFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwarePqcFallback")
            .field("parameter_set", &self.parameter_set())
            .finish_non_exhaustive()
    }
}

impl SoftwarePqcFallback {
    /// Loads an encrypted PKCS#8 ML-DSA private key (PEM `ENCRYPTED PRIVATE KEY`
    /// or DER), as written by `openssl pkcs8 -topk8 -v2 aes-256-cbc`.
    pub fn load(path: &Path, passphrase: &SecretString) -> Result<Self, PqcError> {
        let bytes = std::fs::read(path).map_err(|source| PqcError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_encrypted_bytes(path, &bytes, passphrase)
    }

    /// Like [`load`](Self::load), with the passphrase read from the
    /// environment variable `passphrase_env`; an unset or empty variable is
    /// an error naming it.
    pub fn load_from_env(path: &Path, passphrase_env: &str) -> Result<Self, PqcError> {
        let env_error = |problem| PqcError::PassphraseEnv {
            var: passphrase_env.to_owned(),
            problem,
        };
        let value = match std::env::var(passphrase_env) {
            Ok(value) => SecretString::from(value),
            Err(std::env::VarError::NotPresent) => return Err(env_error("is not set")),
            Err(std::env::VarError::NotUnicode(raw)) => {
                drop(Zeroizing::new(raw.into_encoded_bytes()));
                return Err(env_error("is not valid UTF-8"));
            }
        };
        if value.expose_secret().is_empty() {
            return Err(env_error("is empty"));
        }
        Self::load(path, &value)
    }

    /// Generates a new key from 32 bytes of operating-system randomness.
    pub fn generate(set: MlDsaParameterSet) -> Result<Self, PqcError> {
        let info = set_info(set).ok_or(PqcError::UnsupportedParameterSet(set))?;
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        getrandom::fill(seed.as_mut()).map_err(|e| PqcError::Random(e.to_string()))?;
        Ok(Self::from_seed(info, &seed))
    }

    /// The key as an encrypted PKCS#8 PEM (`ENCRYPTED PRIVATE KEY`): PBES2,
    /// PBKDF2-HMAC-SHA256 with [`PBKDF2_ITERATIONS`] and a random 16-byte
    /// salt, AES-256-CBC; the private key in the RFC 9881 `seed` form.
    pub fn to_encrypted_pkcs8_pem(
        &self,
        passphrase: &SecretString,
    ) -> Result<Zeroizing<String>, PqcError> {
        self.encrypted_pem_with_iterations(passphrase, PBKDF2_ITERATIONS)
    }

    /// [`to_encrypted_pkcs8_pem`](Self::to_encrypted_pkcs8_pem) with a chosen
    /// PBKDF2 iteration count (tests use a small one: debug builds are slow).
    pub(crate) fn encrypted_pem_with_iterations(
        &self,
        passphrase: &SecretString,
        iterations: u32,
    ) -> Result<Zeroizing<String>, PqcError> {
        let encode = |e: &dyn fmt::Display| PqcError::Encode(e.to_string());
        let params = pbes2_params(iterations)?;

        let seed = with_key!(&self.inner, k => &k.seed);
        let seed_der = Zeroizing::new(
            ContextSpecific {
                tag_number: TagNumber(0),
                tag_mode: TagMode::Implicit,
                value: OctetStringRef::new(seed.as_slice()).map_err(|e| encode(&e))?,
            }
            .to_der()
            .map_err(|e| encode(&e))?,
        );
        let info = PrivateKeyInfoRef::new(
            AlgorithmIdentifierRef {
                oid: self.info().oid,
                parameters: None,
            },
            OctetStringRef::new(&seed_der).map_err(|e| encode(&e))?,
        );
        let encrypted = info
            .encrypt_with_params(params, passphrase.expose_secret().as_bytes())
            .map_err(|e| encode(&e))?;
        encrypted
            .to_pem(ENCRYPTED_LABEL, LineEnding::LF)
            .map_err(|e| encode(&e))
    }

    /// `ML_DSA_44`, `ML_DSA_65` or `ML_DSA_87`.
    pub fn parameter_set(&self) -> MlDsaParameterSet {
        self.info().set
    }

    /// The FIPS 204 encoded public key (`pkEncode`): 1312, 1952 or 2592 bytes.
    pub fn public_key(&self) -> Vec<u8> {
        with_key!(&self.inner, k => k.public.clone())
    }

    /// The DER `SubjectPublicKeyInfo`: the algorithm OID with absent
    /// parameters, and the encoded public key as the BIT STRING (RFC 9881).
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        let public = with_key!(&self.inner, k => &k.public);
        let spki = SubjectPublicKeyInfoRef {
            algorithm: AlgorithmIdentifierRef {
                oid: self.info().oid,
                parameters: None,
            },
            subject_public_key: BitStringRef::new(0, public)
                .expect("a byte-aligned BIT STRING of a few KiB is always valid"),
        };
        spki.to_der()
            .expect("encoding a SubjectPublicKeyInfo of known shape cannot fail")
    }

    /// The dotted OID of the parameter set (`id-ml-dsa-44/65/87`).
    pub fn algorithm_oid(&self) -> &'static str {
        self.info().oid_str
    }

    /// Pure ML-DSA signature of `message` (hedged, empty context, as X.509
    /// signing requires per RFC 9881): 2420, 3309 or 4627 bytes.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PqcError> {
        with_key!(&self.inner, k => k.sign(message))
    }

    fn info(&self) -> &'static SetInfo {
        match self.inner {
            Inner::MlDsa44(_) => &ML_DSA_44,
            Inner::MlDsa65(_) => &ML_DSA_65,
            Inner::MlDsa87(_) => &ML_DSA_87,
        }
    }

    fn from_seed(info: &SetInfo, seed: &[u8; SEED_LEN]) -> Self {
        let inner = match info.set {
            MlDsaParameterSet::ML_DSA_44 => Inner::MlDsa44(KeyPair::from_seed(seed)),
            MlDsaParameterSet::ML_DSA_65 => Inner::MlDsa65(KeyPair::from_seed(seed)),
            _ => Inner::MlDsa87(KeyPair::from_seed(seed)),
        };
        SoftwarePqcFallback { inner }
    }

    fn from_encrypted_bytes(
        path: &Path,
        bytes: &[u8],
        passphrase: &SecretString,
    ) -> Result<Self, PqcError> {
        let not_pkcs8 = |reason: String| PqcError::NotPkcs8 {
            path: path.to_owned(),
            reason,
        };
        let not_encrypted = || PqcError::NotEncrypted {
            path: path.to_owned(),
        };

        // PEM if it looks like PEM, else DER.
        let der: Vec<u8> = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(bytes.trim_ascii())
                .map_err(|_| not_pkcs8("PEM file is not UTF-8".into()))?;
            let (label, doc) =
                pkcs8::Document::from_pem(text).map_err(|e| not_pkcs8(format!("bad PEM: {e}")))?;
            match label {
                ENCRYPTED_LABEL => doc.into_vec(),
                PLAINTEXT_LABEL => return Err(not_encrypted()),
                other => {
                    return Err(not_pkcs8(format!(
                        "PEM label is \"{other}\", expected \"{ENCRYPTED_LABEL}\""
                    )))
                }
            }
        } else {
            bytes.to_vec()
        };

        let encrypted = match EncryptedPrivateKeyInfoRef::from_der(&der) {
            Ok(encrypted) => encrypted,
            Err(e) => {
                if PrivateKeyInfoRef::from_der(&der).is_ok() {
                    return Err(not_encrypted());
                }
                return Err(not_pkcs8(e.to_string()));
            }
        };
        let plaintext = decrypt(path, &encrypted, passphrase)?;
        let info = plaintext
            .decode_msg::<PrivateKeyInfoRef<'_>>()
            // Right padding, wrong contents: almost surely a wrong passphrase.
            .map_err(|_| PqcError::Decrypt {
                path: path.to_owned(),
            })?;
        Self::from_private_key_info(path, &info)
    }

    fn from_private_key_info(path: &Path, info: &PrivateKeyInfoRef<'_>) -> Result<Self, PqcError> {
        let malformed = |reason: &str| PqcError::Malformed {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let oid = info.algorithm.oid;
        let set = [&ML_DSA_44, &ML_DSA_65, &ML_DSA_87]
            .into_iter()
            .find(|s| s.oid == oid)
            .ok_or_else(|| PqcError::NotMlDsa {
                path: path.to_owned(),
                oid: oid.to_string(),
            })?;
        if info.algorithm.parameters.is_some() {
            return Err(malformed(
                "the AlgorithmIdentifier has parameters; RFC 9881 requires them absent",
            ));
        }

        let key = parse_ml_dsa_private_key(info.private_key.as_bytes())
            .map_err(|reason| malformed(&reason))?;
        let (seed, expanded) = match key {
            PrivateKeyForm::Seed(seed) => (seed, None),
            PrivateKeyForm::Both { seed, expanded } => (seed, Some(expanded)),
            PrivateKeyForm::ExpandedOnly => {
                return Err(PqcError::ExpandedKeyOnly {
                    path: path.to_owned(),
                })
            }
        };
        let seed: Zeroizing<[u8; SEED_LEN]> = Zeroizing::new(
            seed.try_into()
                .map_err(|_| malformed("the seed is not 32 bytes"))?,
        );
        let key = Self::from_seed(set, &seed);

        if let Some(expanded) = expanded {
            let ours = with_key!(&key.inner, k => k.expanded_bytes());
            if !ct_eq(&ours, expanded) {
                return Err(PqcError::SeedMismatch {
                    path: path.to_owned(),
                });
            }
        }
        if let Some(public) = &info.public_key {
            let theirs = public.as_bytes().unwrap_or_default();
            if !ct_eq(&key.public_key(), theirs) {
                return Err(PqcError::PublicKeyMismatch {
                    path: path.to_owned(),
                });
            }
        }
        Ok(key)
    }
}

/// PBES2 with PBKDF2-HMAC-SHA256 (`iterations`, random 16-byte salt) and
/// AES-256-CBC (random IV): what `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes.
fn pbes2_params(iterations: u32) -> Result<pbes2::Parameters, PqcError> {
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PqcError::Random(e.to_string()))?;
    getrandom::fill(&mut iv).map_err(|e| PqcError::Random(e.to_string()))?;
    pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(iterations, &salt, iv)
        .map_err(|e| PqcError::Encode(e.to_string()))
}

fn set_info(set: MlDsaParameterSet) -> Option<&'static SetInfo> {
    [&ML_DSA_44, &ML_DSA_65, &ML_DSA_87]
        .into_iter()
        .find(|s| s.set == set)
}

fn decrypt(
    path: &Path,
    encrypted: &EncryptedPrivateKeyInfoRef<'_>,
    passphrase: &SecretString,
) -> Result<SecretDocument, PqcError> {
    use pkcs8::pkcs5::Error as P5;
    encrypted
        .decrypt(passphrase.expose_secret().as_bytes())
        .map_err(|e| match e {
            pkcs8::Error::EncryptedPrivateKey(
                e @ (P5::UnsupportedAlgorithm { .. }
                | P5::AlgorithmParametersInvalid { .. }
                | P5::NoPbes1CryptSupport),
            ) => PqcError::UnsupportedEncryption {
                path: path.to_owned(),
                reason: e.to_string(),
            },
            _ => PqcError::Decrypt {
                path: path.to_owned(),
            },
        })
}

/// The three forms of `ML-DSA-PrivateKey`, borrowing from the decrypted DER.
enum PrivateKeyForm<'a> {
    Seed(&'a [u8]),
    Both { seed: &'a [u8], expanded: &'a [u8] },
    ExpandedOnly,
}

fn parse_ml_dsa_private_key(der: &[u8]) -> Result<PrivateKeyForm<'_>, String> {
    let any = AnyRef::from_der(der).map_err(|e| format!("bad ML-DSA-PrivateKey: {e}"))?;
    match any.tag() {
        Tag::ContextSpecific {
            constructed: false,
            number: TagNumber(0),
        } => Ok(PrivateKeyForm::Seed(any.value())),
        Tag::OctetString => Ok(PrivateKeyForm::ExpandedOnly),
        Tag::Sequence => {
            let mut reader = SliceReader::new(any.value()).map_err(|e| e.to_string())?;
            let seed: &OctetStringRef = reader
                .decode()
                .map_err(|e| format!("bad seed in `both`: {e}"))?;
            let expanded: &OctetStringRef = reader
                .decode()
                .map_err(|e| format!("bad expandedKey in `both`: {e}"))?;
            reader
                .finish()
                .map_err(|e| format!("trailing data in `both`: {e}"))?;
            Ok(PrivateKeyForm::Both {
                seed: seed.as_bytes(),
                expanded: expanded.as_bytes(),
            })
        }
        other => Err(format!(
            "ML-DSA-PrivateKey has tag {other}; expected seed [0], expandedKey or both"
        )),
    }
}

/// Comparison whose time does not depend on where the inputs differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use ml_dsa::signature::Verifier;
    use pkcs8::EncodePublicKey;

    /// Small PBKDF2 count: the unit tests run in debug builds.
    const TEST_ITERATIONS: u32 = 1000;

    const SETS: [(MlDsaParameterSet, usize, usize); 3] = [
        (MlDsaParameterSet::ML_DSA_44, 1312, 2420),
        (MlDsaParameterSet::ML_DSA_65, 1952, 3309),
        (MlDsaParameterSet::ML_DSA_87, 2592, 4627),
    ];

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn load_pem(pem: &str, passphrase: &str) -> Result<SoftwarePqcFallback, PqcError> {
        SoftwarePqcFallback::from_encrypted_bytes(
            Path::new("test.pem"),
            pem.as_bytes(),
            &secret(passphrase),
        )
    }

    /// Verifies with `ml-dsa`'s own verifier (the OpenSSL cross-check is the
    /// integration test `pqc_fallback`).
    fn verify(key: &SoftwarePqcFallback, msg: &[u8], sig: &[u8]) -> bool {
        fn check<P: MlDsaParams>(k: &KeyPair<P>, msg: &[u8], sig: &[u8]) -> bool {
            let vk = k.signing.verifying_key();
            match ml_dsa::Signature::<P>::try_from(sig) {
                Ok(sig) => vk.verify(msg, &sig).is_ok(),
                Err(_) => false,
            }
        }
        with_key!(&key.inner, k => check(k, msg, sig))
    }

    #[test]
    fn generate_pem_load_round_trip() {
        for (set, pk_len, _) in SETS {
            let key = SoftwarePqcFallback::generate(set).unwrap();
            assert_eq!(key.parameter_set(), set);
            assert_eq!(key.public_key().len(), pk_len);
            let pem = key
                .encrypted_pem_with_iterations(&secret("correct horse"), TEST_ITERATIONS)
                .unwrap();
            assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
            let loaded = load_pem(&pem, "correct horse").unwrap();
            assert_eq!(loaded.parameter_set(), set);
            assert_eq!(loaded.public_key(), key.public_key());
            assert_eq!(loaded.public_key_spki_der(), key.public_key_spki_der());
            assert_eq!(
                *with_key!(&loaded.inner, k => k.seed.clone()),
                *with_key!(&key.inner, k => k.seed.clone())
            );
        }
    }

    /// The written file uses PBES2 + PBKDF2-HMAC-SHA256 + AES-256-CBC with fresh salt and IV.
    /// (The full 600 000-iteration path takes seconds in a debug build: the integration test
    /// `pqc_fallback` runs it and has OpenSSL read the result.)
    #[test]
    fn pem_uses_pbes2_pbkdf2_sha256_aes256cbc() {
        let key = SoftwarePqcFallback::generate(MlDsaParameterSet::ML_DSA_44).unwrap();
        let params = |pem: &str| {
            let (label, doc) = pkcs8::Document::from_pem(pem).unwrap();
            assert_eq!(label, ENCRYPTED_LABEL);
            let enc = EncryptedPrivateKeyInfoRef::from_der(doc.as_bytes()).unwrap();
            enc.encryption_algorithm.pbes2().unwrap().clone()
        };
        let pem = key
            .encrypted_pem_with_iterations(&secret("pw"), TEST_ITERATIONS)
            .unwrap();
        let a = params(&pem);
        let pbkdf2 = a.kdf.pbkdf2().unwrap();
        assert_eq!(pbkdf2.iteration_count, TEST_ITERATIONS);
        assert_eq!(pbkdf2.prf, pbes2::Pbkdf2Prf::HmacWithSha256);
        assert_eq!(pbkdf2.salt.as_ref().len(), 16);
        assert_eq!(a.encryption.oid(), pbes2::AES_256_CBC_OID);

        let b = params(
            &key.encrypted_pem_with_iterations(&secret("pw"), TEST_ITERATIONS)
                .unwrap(),
        );
        assert_ne!(a, b, "salt and IV must be fresh for every file");

        let strong = pbes2_params(PBKDF2_ITERATIONS).unwrap();
        assert_eq!(strong.kdf.pbkdf2().unwrap().iteration_count, 600_000);
    }

    #[test]
    fn wrong_passphrase_is_refused() {
        let key = SoftwarePqcFallback::generate(MlDsaParameterSet::ML_DSA_65).unwrap();
        let pem = key
            .encrypted_pem_with_iterations(&secret("right"), TEST_ITERATIONS)
            .unwrap();
        let err = load_pem(&pem, "wrong").unwrap_err();
        assert!(matches!(err, PqcError::Decrypt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("test.pem") && msg.contains("wrong passphrase"),
            "{msg}"
        );
        assert!(!msg.contains("right"), "{msg}");
    }

    #[test]
    fn signatures_have_fips204_length_and_verify() {
        for (set, _, sig_len) in SETS {
            let key = SoftwarePqcFallback::generate(set).unwrap();
            let a = key.sign(b"tbsCertificate").unwrap();
            let b = key.sign(b"tbsCertificate").unwrap();
            assert_eq!(a.len(), sig_len, "{set}");
            assert_ne!(a, b, "hedged signing must be randomized");
            assert!(verify(&key, b"tbsCertificate", &a));
            assert!(!verify(&key, b"tbsCertificatf", &a));
        }
    }

    #[test]
    fn spki_matches_ml_dsa_and_rfc9881() {
        let key = SoftwarePqcFallback::generate(MlDsaParameterSet::ML_DSA_65).unwrap();
        let upstream = match &key.inner {
            Inner::MlDsa65(k) => k.signing.verifying_key().to_public_key_der().unwrap(),
            _ => unreachable!(),
        };
        let spki = key.public_key_spki_der();
        assert_eq!(spki, upstream.as_bytes());
        // SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.3.18 } BIT STRING 00 || pk }
        assert_eq!(
            &spki[..22],
            &[
                0x30, 0x82, 0x07, 0xb2, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
                0x04, 0x03, 0x12, 0x03, 0x82, 0x07, 0xa1, 0x00
            ]
        );
        assert_eq!(&spki[22..], key.public_key().as_slice());
        assert_eq!(key.algorithm_oid(), "2.16.840.1.101.3.4.3.18");
        for info in [&ML_DSA_44, &ML_DSA_65, &ML_DSA_87] {
            assert_eq!(info.oid.to_string(), info.oid_str);
        }
    }

    /// Builds an unencrypted PKCS#8 DER with the given `privateKey` contents.
    fn pkcs8_with(oid: ObjectIdentifier, private_key: &[u8]) -> Vec<u8> {
        PrivateKeyInfoRef::new(
            AlgorithmIdentifierRef {
                oid,
                parameters: None,
            },
            OctetStringRef::new(private_key).unwrap(),
        )
        .to_der()
        .unwrap()
    }

    fn octets(bytes: &[u8]) -> Vec<u8> {
        OctetStringRef::new(bytes).unwrap().to_der().unwrap()
    }

    fn both(seed: &[u8], expanded: &[u8]) -> Vec<u8> {
        let body = [octets(seed), octets(expanded)].concat();
        let len = pkcs8::der::Length::try_from(body.len()).unwrap();
        let mut out = Vec::new();
        pkcs8::der::Header::new(Tag::Sequence, len)
            .encode_to_vec(&mut out)
            .unwrap();
        out.extend_from_slice(&body);
        out
    }

    fn from_plain_der(der: &[u8]) -> Result<SoftwarePqcFallback, PqcError> {
        let info = PrivateKeyInfoRef::from_der(der).unwrap();
        SoftwarePqcFallback::from_private_key_info(Path::new("k.der"), &info)
    }

    #[test]
    fn both_form_is_checked_and_expanded_only_refused() {
        let key = SoftwarePqcFallback::generate(MlDsaParameterSet::ML_DSA_87).unwrap();
        let seed = *with_key!(&key.inner, k => k.seed.clone());
        let expanded = with_key!(&key.inner, k => k.expanded_bytes());
        assert_eq!(expanded.len(), 4896);

        let good = pkcs8_with(ML_DSA_87.oid, &both(&seed, &expanded));
        let loaded = from_plain_der(&good).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());

        let mut bad = expanded.to_vec();
        bad[100] ^= 1;
        let err = from_plain_der(&pkcs8_with(ML_DSA_87.oid, &both(&seed, &bad))).unwrap_err();
        assert!(matches!(err, PqcError::SeedMismatch { .. }), "{err:?}");

        // Right seed and expanded key, wrong parameter set.
        let err = from_plain_der(&pkcs8_with(ML_DSA_65.oid, &both(&seed, &expanded))).unwrap_err();
        assert!(matches!(err, PqcError::SeedMismatch { .. }), "{err:?}");

        let err = from_plain_der(&pkcs8_with(ML_DSA_87.oid, &octets(&expanded))).unwrap_err();
        assert!(matches!(err, PqcError::ExpandedKeyOnly { .. }), "{err:?}");
        assert!(err.to_string().contains("k.der"));

        let ed25519 = ObjectIdentifier::new_unwrap("1.3.101.112");
        let err = from_plain_der(&pkcs8_with(ed25519, &octets(&seed))).unwrap_err();
        assert!(matches!(err, PqcError::NotMlDsa { .. }), "{err:?}");
    }

    #[test]
    fn unencrypted_and_garbage_files_are_refused() {
        let key = SoftwarePqcFallback::generate(MlDsaParameterSet::ML_DSA_44).unwrap();
        let seed = *with_key!(&key.inner, k => k.seed.clone());
        let seed_form = [&[0x80, 0x20][..], &seed].concat();
        let der = pkcs8_with(ML_DSA_44.oid, &seed_form);
        let pem = pkcs8::der::pem::encode_string(PLAINTEXT_LABEL, LineEnding::LF, &der).unwrap();
        for bytes in [der.as_slice(), pem.as_bytes()] {
            let err = SoftwarePqcFallback::from_encrypted_bytes(
                Path::new("plain.pem"),
                bytes,
                &secret("x"),
            )
            .unwrap_err();
            assert!(matches!(err, PqcError::NotEncrypted { .. }), "{err:?}");
        }
        let err =
            SoftwarePqcFallback::from_encrypted_bytes(Path::new("junk"), b"junk", &secret("x"))
                .unwrap_err();
        assert!(matches!(err, PqcError::NotPkcs8 { .. }), "{err:?}");
    }

    #[test]
    fn env_passphrase_errors_name_the_variable() {
        let var = "KIPUKA_PQC_FALLBACK_UNIT_TEST_UNSET_VARIABLE";
        let err = SoftwarePqcFallback::load_from_env(Path::new("/nonexistent"), var).unwrap_err();
        assert!(matches!(err, PqcError::PassphraseEnv { .. }), "{err:?}");
        assert!(err.to_string().contains(var), "{err}");

        let err =
            SoftwarePqcFallback::load(Path::new("/nonexistent/k.pem"), &secret("x")).unwrap_err();
        assert!(matches!(err, PqcError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/k.pem"));
    }

    #[test]
    fn unsupported_parameter_set_and_debug() {
        let err = SoftwarePqcFallback::generate(MlDsaParameterSet(9)).unwrap_err();
        assert!(matches!(err, PqcError::UnsupportedParameterSet(_)));

        let key = SoftwarePqcFallback::generate(MlDsaParameterSet::ML_DSA_44).unwrap();
        let debug = format!("{key:?}");
        assert_eq!(
            debug,
            "SoftwarePqcFallback { parameter_set: MlDsaParameterSet(1), .. }"
        );
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SoftwarePqcFallback>();
    }
}

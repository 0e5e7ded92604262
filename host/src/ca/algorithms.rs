//! Signature algorithms: the AlgorithmIdentifier a CA signs certificates
//! with, and parsing and verifying what clients sign CSRs with.
//!
//! Verification uses RustCrypto (`rsa`, `p256`/`p384`/`p521`, `ml-dsa`),
//! with ring as a fast path where it applies ([`PublicKey::verify`]);
//! signing never happens here (it is the HSM's, see [`crate::hsm`]).
//! Everything that reads client data returns an error, never panics.

use const_oid::db::{rfc5912, DB};
use der::{
    asn1::{AnyRef, ObjectIdentifier},
    Any, Decode,
};
use ecdsa::signature::hazmat::PrehashVerifier;
use kipuka_plugin_api::{HashAlg, MlDsaParameterSet};
use sha2::Digest as _;
use spki::{AlgorithmIdentifierOwned, AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use super::csr::CsrError;
use crate::{
    config::KeySpec,
    hsm::{keys::oids as key_oids, KeyAlgorithm, SignatureScheme},
};

/// Smallest RSA modulus accepted in a CSR, in bits.
pub const RSA_MIN_BITS: u32 = 2048;
/// Largest RSA modulus accepted in a CSR, in bits (verification cost grows
/// with the square of the size: a bound against denial of service).
pub const RSA_MAX_BITS: u32 = 8192;

/// `ecdsa-with-SHA1` (RFC 3279), named only to refuse it clearly.
const ECDSA_WITH_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");

/// A SHA-2 hash, the only family kipuka signs or verifies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// All of them, shortest first.
    pub const ALL: [Hash; 3] = [Hash::Sha256, Hash::Sha384, Hash::Sha512];

    /// `id-sha256`, `id-sha384`, `id-sha512`.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Hash::Sha256 => rfc5912::ID_SHA_256,
            Hash::Sha384 => rfc5912::ID_SHA_384,
            Hash::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    /// The hash named by `oid`, if it is one of the three.
    pub fn from_oid(oid: ObjectIdentifier) -> Option<Hash> {
        Hash::ALL.into_iter().find(|h| h.oid() == oid)
    }

    /// The engine's hash identifier as a [`Hash`] (SHA-1 and unknown: `None`).
    pub fn from_hash_alg(h: HashAlg) -> Option<Hash> {
        match h {
            HashAlg::SHA256 => Some(Hash::Sha256),
            HashAlg::SHA384 => Some(Hash::Sha384),
            HashAlg::SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// `SHA-256`, ...
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "SHA-256",
            Hash::Sha384 => "SHA-384",
            Hash::Sha512 => "SHA-512",
        }
    }

    /// The hash of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// ML-DSA parameter set as its FIPS 204 number (44, 65, 87).
fn ml_dsa_level(set: MlDsaParameterSet) -> Option<u8> {
    match set {
        MlDsaParameterSet::ML_DSA_44 => Some(44),
        MlDsaParameterSet::ML_DSA_65 => Some(65),
        MlDsaParameterSet::ML_DSA_87 => Some(87),
        _ => None,
    }
}

fn ml_dsa_oid(level: u8) -> Option<ObjectIdentifier> {
    match level {
        44 => Some(key_oids::ML_DSA_44),
        65 => Some(key_oids::ML_DSA_65),
        87 => Some(key_oids::ML_DSA_87),
        _ => None,
    }
}

fn ml_dsa_level_of(oid: ObjectIdentifier) -> Option<u8> {
    [44, 65, 87]
        .into_iter()
        .find(|l| ml_dsa_oid(*l) == Some(oid))
}

/// A signature algorithm, with the parameters that matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// `sha{256,384,512}WithRSAEncryption` (RSASSA-PKCS1-v1_5).
    RsaPkcs1(Hash),
    /// `id-RSASSA-PSS` with this hash, MGF1 with the same hash, and this salt length.
    RsaPss {
        /// Message hash (and MGF1 hash).
        hash: Hash,
        /// Salt length in bytes.
        salt_len: u8,
    },
    /// `ecdsa-with-SHA{256,384,512}`.
    Ecdsa(Hash),
    /// `id-ml-dsa-{44,65,87}`: pure ML-DSA, empty context (RFC 9881).
    MlDsa(u8),
}

impl std::fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureAlgorithm::RsaPkcs1(h) => write!(f, "RSASSA-PKCS1-v1_5 with {}", h.name()),
            SignatureAlgorithm::RsaPss { hash, salt_len } => write!(
                f,
                "RSASSA-PSS with {} (MGF1 {}, salt {salt_len} bytes)",
                hash.name(),
                hash.name()
            ),
            SignatureAlgorithm::Ecdsa(h) => write!(f, "ECDSA with {}", h.name()),
            SignatureAlgorithm::MlDsa(l) => write!(f, "ML-DSA-{l}"),
        }
    }
}

/// `1.2.3.4 (name)` for error messages.
pub(crate) fn describe_oid(oid: &ObjectIdentifier) -> String {
    match DB.by_oid(oid) {
        Some(name) => format!("{oid} ({name})"),
        None => oid.to_string(),
    }
}

/// True when an AlgorithmIdentifier's parameters are absent or NULL.
fn null_or_absent(params: Option<AnyRef<'_>>) -> bool {
    params.is_none_or(|p| p.is_null())
}

impl SignatureAlgorithm {
    /// What a CA signs with: its key's algorithm and configured scheme.
    pub fn from_scheme(
        scheme: SignatureScheme,
        key: KeyAlgorithm,
    ) -> Result<SignatureAlgorithm, String> {
        let hash = |h: HashAlg| {
            Hash::from_hash_alg(h)
                .ok_or_else(|| format!("{h} is not a hash kipuka signs certificates with"))
        };
        match (scheme, key) {
            (SignatureScheme::RsaPkcs1(h), KeyAlgorithm::Rsa { .. }) => {
                Ok(SignatureAlgorithm::RsaPkcs1(hash(h)?))
            }
            (SignatureScheme::RsaPss(h), KeyAlgorithm::Rsa { .. }) => {
                let hash = hash(h)?;
                Ok(SignatureAlgorithm::RsaPss {
                    hash,
                    // 32, 48 or 64: always fits.
                    salt_len: u8::try_from(hash.output_len()).unwrap_or(u8::MAX),
                })
            }
            (SignatureScheme::Ecdsa(h), KeyAlgorithm::Ec { .. }) => {
                Ok(SignatureAlgorithm::Ecdsa(hash(h)?))
            }
            (SignatureScheme::MlDsa, KeyAlgorithm::MlDsa { set }) => ml_dsa_level(set)
                .map(SignatureAlgorithm::MlDsa)
                .ok_or_else(|| format!("unknown ML-DSA parameter set {set}")),
            (scheme, key) => Err(format!("a {key} key cannot sign with {scheme}")),
        }
    }

    /// The AlgorithmIdentifier for certificates: NULL parameters for
    /// PKCS#1 v1.5 (RFC 4055), explicit RSASSA-PSS-params (hash and MGF1
    /// hash with NULL parameters, as OpenSSL writes them; trailerField
    /// omitted), absent parameters for ECDSA (RFC 5758) and ML-DSA (RFC 9881).
    pub fn algorithm_identifier(&self) -> Result<AlgorithmIdentifierOwned, der::Error> {
        Ok(match *self {
            SignatureAlgorithm::RsaPkcs1(h) => AlgorithmIdentifierOwned {
                oid: match h {
                    Hash::Sha256 => rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                    Hash::Sha384 => rfc5912::SHA_384_WITH_RSA_ENCRYPTION,
                    Hash::Sha512 => rfc5912::SHA_512_WITH_RSA_ENCRYPTION,
                },
                parameters: Some(Any::null()),
            },
            SignatureAlgorithm::RsaPss { hash, salt_len } => {
                let hash_ai = AlgorithmIdentifierRef {
                    oid: hash.oid(),
                    parameters: Some(AnyRef::NULL),
                };
                let params = pkcs1::RsaPssParams::<AnyRef<'_>> {
                    hash: hash_ai,
                    mask_gen: spki::AlgorithmIdentifier {
                        oid: rfc5912::ID_MGF_1,
                        parameters: Some(hash_ai),
                    },
                    salt_len,
                    trailer_field: pkcs1::TrailerField::BC,
                };
                AlgorithmIdentifierOwned {
                    oid: rfc5912::ID_RSASSA_PSS,
                    parameters: Some(Any::encode_from(&params)?),
                }
            }
            SignatureAlgorithm::Ecdsa(h) => AlgorithmIdentifierOwned {
                oid: match h {
                    Hash::Sha256 => rfc5912::ECDSA_WITH_SHA_256,
                    Hash::Sha384 => rfc5912::ECDSA_WITH_SHA_384,
                    Hash::Sha512 => rfc5912::ECDSA_WITH_SHA_512,
                },
                parameters: None,
            },
            SignatureAlgorithm::MlDsa(level) => AlgorithmIdentifierOwned {
                oid: ml_dsa_oid(level).ok_or_else(|| der::Error::from(der::ErrorKind::Failed))?,
                parameters: None,
            },
        })
    }

    /// Parses a signature AlgorithmIdentifier a client used, or says
    /// precisely why kipuka does not accept it.
    pub fn parse(alg: &AlgorithmIdentifierRef<'_>) -> Result<SignatureAlgorithm, CsrError> {
        let unsupported = |why: String| CsrError::UnsupportedSignature(why);
        let oid = alg.oid;
        let params = alg.parameters;
        let rsa = [
            (rfc5912::SHA_256_WITH_RSA_ENCRYPTION, Hash::Sha256),
            (rfc5912::SHA_384_WITH_RSA_ENCRYPTION, Hash::Sha384),
            (rfc5912::SHA_512_WITH_RSA_ENCRYPTION, Hash::Sha512),
        ];
        let ecdsa = [
            (rfc5912::ECDSA_WITH_SHA_256, Hash::Sha256),
            (rfc5912::ECDSA_WITH_SHA_384, Hash::Sha384),
            (rfc5912::ECDSA_WITH_SHA_512, Hash::Sha512),
        ];
        if let Some((_, h)) = rsa.iter().find(|(o, _)| *o == oid) {
            // RFC 4055 §5: NULL; absent is tolerated as many encoders omit it.
            if !null_or_absent(params) {
                return Err(unsupported(format!(
                    "{} must have NULL or absent parameters",
                    describe_oid(&oid)
                )));
            }
            return Ok(SignatureAlgorithm::RsaPkcs1(*h));
        }
        if let Some((_, h)) = ecdsa.iter().find(|(o, _)| *o == oid) {
            if params.is_some() {
                return Err(unsupported(format!(
                    "{} must have absent parameters (RFC 5758)",
                    describe_oid(&oid)
                )));
            }
            return Ok(SignatureAlgorithm::Ecdsa(*h));
        }
        if let Some(level) = ml_dsa_level_of(oid) {
            if params.is_some() {
                return Err(unsupported(format!(
                    "id-ml-dsa-{level} must have absent parameters (RFC 9881)"
                )));
            }
            return Ok(SignatureAlgorithm::MlDsa(level));
        }
        if oid == rfc5912::ID_RSASSA_PSS {
            return parse_pss(alg.parameters);
        }
        if [
            rfc5912::SHA_1_WITH_RSA_ENCRYPTION,
            ECDSA_WITH_SHA1,
            rfc5912::SHA_224_WITH_RSA_ENCRYPTION,
            rfc5912::ECDSA_WITH_SHA_224,
        ]
        .contains(&oid)
        {
            return Err(unsupported(format!(
                "{} is not accepted: sign the CSR with SHA-256, SHA-384 or SHA-512",
                describe_oid(&oid)
            )));
        }
        Err(unsupported(format!(
            "signature algorithm {} is not supported (accepted: RSASSA-PKCS1-v1_5 and RSASSA-PSS \
             with SHA-256/384/512, ECDSA with SHA-256/384/512, ML-DSA-44/65/87)",
            describe_oid(&oid)
        )))
    }
}

/// RSASSA-PSS-params: hash, MGF1 hash, salt length; SHA-2 only, MGF1 hash
/// equal to the message hash.
fn parse_pss(params: Option<AnyRef<'_>>) -> Result<SignatureAlgorithm, CsrError> {
    let bad = |why: String| CsrError::UnsupportedSignature(format!("RSASSA-PSS: {why}"));
    let params = params.ok_or_else(|| {
        bad("parameters are absent (they default to SHA-1, which is not accepted)".into())
    })?;
    let p: pkcs1::RsaPssParamsOwned = params
        .decode_as()
        .map_err(|e| bad(format!("malformed RSASSA-PSS-params: {e}")))?;
    let hash = Hash::from_oid(p.hash.oid).ok_or_else(|| {
        bad(format!(
            "hash {} is not accepted (SHA-256, SHA-384 or SHA-512)",
            describe_oid(&p.hash.oid)
        ))
    })?;
    if !null_or_absent(p.hash.parameters.as_ref().map(Any::to_ref)) {
        return Err(bad(format!(
            "{} must have NULL or absent parameters",
            hash.name()
        )));
    }
    if p.mask_gen.oid != rfc5912::ID_MGF_1 {
        return Err(bad(format!(
            "mask generation function {} is not MGF1",
            describe_oid(&p.mask_gen.oid)
        )));
    }
    let mgf_hash = p
        .mask_gen
        .parameters
        .as_ref()
        .ok_or_else(|| bad("MGF1 has no hash parameter".into()))?;
    let mgf = Hash::from_oid(mgf_hash.oid).ok_or_else(|| {
        bad(format!(
            "MGF1 hash {} is not accepted (SHA-256, SHA-384 or SHA-512)",
            describe_oid(&mgf_hash.oid)
        ))
    })?;
    if !null_or_absent(mgf_hash.parameters.as_ref().map(Any::to_ref)) {
        return Err(bad(format!(
            "MGF1 {} must have NULL or absent parameters",
            mgf.name()
        )));
    }
    if mgf != hash {
        return Err(bad(format!(
            "MGF1 with {} and message hash {} differ; kipuka accepts only the same hash for both",
            mgf.name(),
            hash.name()
        )));
    }
    Ok(SignatureAlgorithm::RsaPss {
        hash,
        salt_len: p.salt_len,
    })
}

/// A public key kipuka verifies signatures with.
pub enum PublicKey {
    /// RSA, with its modulus size in bits.
    Rsa(Box<rsa::PublicKey>, u32),
    /// ECDSA P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// ECDSA P-521.
    P521(p521::ecdsa::VerifyingKey),
    /// ML-DSA-44.
    MlDsa44(Box<ml_dsa::VerifyingKey<ml_dsa::MlDsa44>>),
    /// ML-DSA-65.
    MlDsa65(Box<ml_dsa::VerifyingKey<ml_dsa::MlDsa65>>),
    /// ML-DSA-87.
    MlDsa87(Box<ml_dsa::VerifyingKey<ml_dsa::MlDsa87>>),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_spec())
    }
}

/// Bits in a big-endian unsigned integer.
fn bit_length(n: &[u8]) -> u32 {
    let Some(first) = n.iter().position(|b| *b != 0) else {
        return 0;
    };
    let n = n.get(first..).unwrap_or_default();
    let lead = n.first().map_or(0, |b| b.leading_zeros());
    u32::try_from(n.len())
        .unwrap_or(u32::MAX / 8)
        .saturating_mul(8)
        .saturating_sub(lead)
}

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo: RSA 2048..=8192 bits (rsaEncryption),
    /// EC on P-256/P-384/P-521 (id-ecPublicKey, named curve), ML-DSA-44/65/87.
    pub fn from_spki(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<PublicKey, CsrError> {
        let bad = |why: String| CsrError::UnsupportedKey(why);
        let oid = spki.algorithm.oid;
        let params = spki.algorithm.parameters;
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| bad("the public key BIT STRING has unused bits".into()))?;
        if oid == rfc5912::RSA_ENCRYPTION {
            if !null_or_absent(params) {
                return Err(bad("rsaEncryption parameters must be NULL".into()));
            }
            let pk = pkcs1::RsaPublicKeyRef::from_der(key)
                .map_err(|e| bad(format!("malformed RSA public key: {e}")))?;
            let bits = bit_length(pk.modulus.as_bytes());
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(bad(format!(
                    "RSA key of {bits} bits: kipuka accepts {RSA_MIN_BITS} to {RSA_MAX_BITS} bits"
                )));
            }
            let key = rsa::PublicKey::try_from(pk)
                .map_err(|e| bad(format!("invalid RSA public key: {e}")))?;
            return Ok(PublicKey::Rsa(Box::new(key), bits));
        }
        if oid == rfc5912::ID_EC_PUBLIC_KEY {
            let curve = params
                .ok_or_else(|| bad("id-ecPublicKey without curve parameters".into()))?
                .decode_as::<ObjectIdentifier>()
                .map_err(|_| {
                    bad("EC parameters must name a curve (namedCurve OID); explicit or implicit curves are not accepted".into())
                })?;
            let invalid = |e: ecdsa::Error| bad(format!("invalid EC public key point: {e}"));
            return match curve {
                rfc5912::SECP_256_R_1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .map(PublicKey::P256)
                    .map_err(invalid),
                rfc5912::SECP_384_R_1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .map(PublicKey::P384)
                    .map_err(invalid),
                rfc5912::SECP_521_R_1 => p521::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .map(PublicKey::P521)
                    .map_err(invalid),
                other => Err(bad(format!(
                    "EC curve {} is not accepted (P-256, P-384, P-521)",
                    describe_oid(&other)
                ))),
            };
        }
        if let Some(level) = ml_dsa_level_of(oid) {
            let bad_key = |_| {
                bad(format!(
                    "malformed ML-DSA-{level} public key ({} bytes, parameters {})",
                    key.len(),
                    if params.is_some() {
                        "present: they must be absent"
                    } else {
                        "absent"
                    }
                ))
            };
            return match level {
                44 => ml_dsa::VerifyingKey::try_from(spki.clone())
                    .map(|k| PublicKey::MlDsa44(Box::new(k)))
                    .map_err(bad_key),
                65 => ml_dsa::VerifyingKey::try_from(spki.clone())
                    .map(|k| PublicKey::MlDsa65(Box::new(k)))
                    .map_err(bad_key),
                _ => ml_dsa::VerifyingKey::try_from(spki.clone())
                    .map(|k| PublicKey::MlDsa87(Box::new(k)))
                    .map_err(bad_key),
            };
        }
        if oid == rfc5912::ID_RSASSA_PSS {
            return Err(bad(
                "id-RSASSA-PSS keys are not accepted: use an rsaEncryption key (it may still sign the CSR with RSASSA-PSS)".into(),
            ));
        }
        Err(bad(format!(
            "public key algorithm {} is not supported (RSA, EC P-256/P-384/P-521, ML-DSA-44/65/87)",
            describe_oid(&oid)
        )))
    }

    /// The key as a profile's `allowed_keys` names it.
    pub fn key_spec(&self) -> KeySpec {
        match self {
            PublicKey::Rsa(_, bits) => KeySpec::Rsa(*bits),
            PublicKey::P256(_) => KeySpec::Ec("P-256".into()),
            PublicKey::P384(_) => KeySpec::Ec("P-384".into()),
            PublicKey::P521(_) => KeySpec::Ec("P-521".into()),
            PublicKey::MlDsa44(_) => KeySpec::MlDsa(44),
            PublicKey::MlDsa65(_) => KeySpec::MlDsa(65),
            PublicKey::MlDsa87(_) => KeySpec::MlDsa(87),
        }
    }

    /// ring's verdict for the combinations ring covers (P-256/P-384 with
    /// SHA-256/384, RSA PKCS#1 v1.5, RSA-PSS with salt = hash length), None
    /// for the others. ring is linked anyway (TLS), and is several times
    /// faster than the pure-Rust `p256`/`rsa` arithmetic, which profiling
    /// showed to be most of the CPU time of an enrollment (the CSR check and
    /// the check of the HSM's signature: two verifications per certificate).
    fn ring_verify(&self, alg: &SignatureAlgorithm, msg: &[u8], sig: &[u8]) -> Option<bool> {
        use ring::signature::{self as rs, UnparsedPublicKey, VerificationAlgorithm};
        let (algorithm, key): (&'static dyn VerificationAlgorithm, Vec<u8>) = match (self, *alg) {
            (PublicKey::P256(k), SignatureAlgorithm::Ecdsa(h)) => (
                match h {
                    Hash::Sha256 => &rs::ECDSA_P256_SHA256_ASN1,
                    Hash::Sha384 => &rs::ECDSA_P256_SHA384_ASN1,
                    Hash::Sha512 => return None,
                },
                k.to_sec1_bytes().into_vec(),
            ),
            (PublicKey::P384(k), SignatureAlgorithm::Ecdsa(h)) => (
                match h {
                    Hash::Sha256 => &rs::ECDSA_P384_SHA256_ASN1,
                    Hash::Sha384 => &rs::ECDSA_P384_SHA384_ASN1,
                    Hash::Sha512 => return None,
                },
                k.to_sec1_bytes().into_vec(),
            ),
            (PublicKey::Rsa(k, _), SignatureAlgorithm::RsaPkcs1(h)) => (
                match h {
                    Hash::Sha256 => &rs::RSA_PKCS1_2048_8192_SHA256,
                    Hash::Sha384 => &rs::RSA_PKCS1_2048_8192_SHA384,
                    Hash::Sha512 => &rs::RSA_PKCS1_2048_8192_SHA512,
                },
                pkcs1::EncodeRsaPublicKey::to_pkcs1_der(k.as_ref())
                    .ok()?
                    .into_vec(),
            ),
            (PublicKey::Rsa(k, _), SignatureAlgorithm::RsaPss { hash, salt_len })
                if usize::from(salt_len) == hash.output_len() =>
            {
                (
                    match hash {
                        Hash::Sha256 => &rs::RSA_PSS_2048_8192_SHA256,
                        Hash::Sha384 => &rs::RSA_PSS_2048_8192_SHA384,
                        Hash::Sha512 => &rs::RSA_PSS_2048_8192_SHA512,
                    },
                    pkcs1::EncodeRsaPublicKey::to_pkcs1_der(k.as_ref())
                        .ok()?
                        .into_vec(),
                )
            }
            _ => return None,
        };
        Some(
            UnparsedPublicKey::new(algorithm, key)
                .verify(msg, sig)
                .is_ok(),
        )
    }

    /// Verifies `sig` over `msg` with `alg`; an algorithm that does not fit
    /// the key is [`CsrError::AlgorithmMismatch`].
    pub fn verify(&self, alg: &SignatureAlgorithm, msg: &[u8], sig: &[u8]) -> Result<(), CsrError> {
        // What ring accepts is a valid signature. What it refuses, or does
        // not cover, is decided by the RustCrypto code below, so that what
        // is accepted and every error stay exactly as they were.
        if self.ring_verify(alg, msg, sig) == Some(true) {
            return Ok(());
        }
        use rsa::sha2::{Digest as _, Sha256, Sha384, Sha512};
        let ok = |r: bool| {
            if r {
                Ok(())
            } else {
                Err(CsrError::BadSignature)
            }
        };
        match (self, *alg) {
            (PublicKey::Rsa(k, _), SignatureAlgorithm::RsaPkcs1(h)) => {
                let scheme = match h {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
                };
                ok(k.verify(scheme, &h.digest(msg), sig).is_ok())
            }
            (PublicKey::Rsa(k, _), SignatureAlgorithm::RsaPss { hash, salt_len }) => {
                let salt_len = Some(usize::from(salt_len));
                let m_hash = hash.digest(msg);
                let r = match hash {
                    Hash::Sha256 => k.verify(
                        rsa::Pss {
                            blinded: false,
                            digest: Sha256::new(),
                            salt_len,
                        },
                        &m_hash,
                        sig,
                    ),
                    Hash::Sha384 => k.verify(
                        rsa::Pss {
                            blinded: false,
                            digest: Sha384::new(),
                            salt_len,
                        },
                        &m_hash,
                        sig,
                    ),
                    Hash::Sha512 => k.verify(
                        rsa::Pss {
                            blinded: false,
                            digest: Sha512::new(),
                            salt_len,
                        },
                        &m_hash,
                        sig,
                    ),
                };
                ok(r.is_ok())
            }
            // Any SHA-2 with any of the three curves: RFC 5758/5480 allow it,
            // and OpenSSL signs P-384 CSRs with SHA-256 by default. The hash
            // is truncated to the curve order's size as ECDSA specifies.
            (PublicKey::P256(k), SignatureAlgorithm::Ecdsa(h)) => {
                let sig =
                    p256::ecdsa::Signature::from_der(sig).map_err(|_| CsrError::BadSignature)?;
                ok(k.verify_prehash(&h.digest(msg), &sig).is_ok())
            }
            (PublicKey::P384(k), SignatureAlgorithm::Ecdsa(h)) => {
                let sig =
                    p384::ecdsa::Signature::from_der(sig).map_err(|_| CsrError::BadSignature)?;
                ok(k.verify_prehash(&h.digest(msg), &sig).is_ok())
            }
            (PublicKey::P521(k), SignatureAlgorithm::Ecdsa(h)) => {
                let sig =
                    p521::ecdsa::Signature::from_der(sig).map_err(|_| CsrError::BadSignature)?;
                ok(k.verify_prehash(&h.digest(msg), &sig).is_ok())
            }
            (PublicKey::MlDsa44(k), SignatureAlgorithm::MlDsa(44)) => {
                let sig = ml_dsa::Signature::<ml_dsa::MlDsa44>::try_from(sig)
                    .map_err(|_| CsrError::BadSignature)?;
                ok(k.verify_with_context(msg, &[], &sig))
            }
            (PublicKey::MlDsa65(k), SignatureAlgorithm::MlDsa(65)) => {
                let sig = ml_dsa::Signature::<ml_dsa::MlDsa65>::try_from(sig)
                    .map_err(|_| CsrError::BadSignature)?;
                ok(k.verify_with_context(msg, &[], &sig))
            }
            (PublicKey::MlDsa87(k), SignatureAlgorithm::MlDsa(87)) => {
                let sig = ml_dsa::Signature::<ml_dsa::MlDsa87>::try_from(sig)
                    .map_err(|_| CsrError::BadSignature)?;
                ok(k.verify_with_context(msg, &[], &sig))
            }
            (key, alg) => Err(CsrError::AlgorithmMismatch {
                signature: alg.to_string(),
                key: key.key_spec().to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Encode;
    use kipuka_plugin_api::Curve;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ai_der(scheme: SignatureScheme, key: KeyAlgorithm) -> Vec<u8> {
        SignatureAlgorithm::from_scheme(scheme, key)
            .unwrap()
            .algorithm_identifier()
            .unwrap()
            .to_der()
            .unwrap()
    }

    const RSA: KeyAlgorithm = KeyAlgorithm::Rsa { bits: 3072 };

    #[test]
    fn pkcs1_identifiers_have_null_parameters() {
        // From `openssl x509 -sha256/-sha384/-sha512` certificates.
        for (h, der) in [
            (HashAlg::SHA256, "300d06092a864886f70d01010b0500"),
            (HashAlg::SHA384, "300d06092a864886f70d01010c0500"),
            (HashAlg::SHA512, "300d06092a864886f70d01010d0500"),
        ] {
            assert_eq!(ai_der(SignatureScheme::RsaPkcs1(h), RSA), hex(der));
        }
    }

    #[test]
    fn pss_identifiers_are_explicit_like_openssls() {
        // `openssl req -x509 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest`
        // with -sha256 / -sha384 / -sha512 (OpenSSL 3.5).
        let sha256 = "3041 06092a864886f70d01010a 3034 a00f300d06096086480165030402010500 \
                      a11c301a06092a864886f70d010108300d06096086480165030402010500 a203020120";
        let sha384 = "3041 06092a864886f70d01010a 3034 a00f300d06096086480165030402020500 \
                      a11c301a06092a864886f70d010108300d06096086480165030402020500 a203020130";
        let sha512 = "3041 06092a864886f70d01010a 3034 a00f300d06096086480165030402030500 \
                      a11c301a06092a864886f70d010108300d06096086480165030402030500 a203020140";
        for (h, der) in [
            (HashAlg::SHA256, sha256),
            (HashAlg::SHA384, sha384),
            (HashAlg::SHA512, sha512),
        ] {
            let got = ai_der(SignatureScheme::RsaPss(h), RSA);
            assert_eq!(got, hex(der), "{h}");
            // And it parses back to the same algorithm.
            let ai = AlgorithmIdentifierRef::from_der(&got).unwrap();
            assert_eq!(
                SignatureAlgorithm::parse(&ai).unwrap(),
                SignatureAlgorithm::RsaPss {
                    hash: Hash::from_hash_alg(h).unwrap(),
                    salt_len: Hash::from_hash_alg(h).unwrap().output_len() as u8
                }
            );
        }
    }

    #[test]
    fn ecdsa_and_ml_dsa_identifiers_have_absent_parameters() {
        for (h, curve, der) in [
            (HashAlg::SHA256, Curve::P256, "300a06082a8648ce3d040302"),
            (HashAlg::SHA384, Curve::P384, "300a06082a8648ce3d040303"),
            (HashAlg::SHA512, Curve::P521, "300a06082a8648ce3d040304"),
        ] {
            assert_eq!(
                ai_der(SignatureScheme::Ecdsa(h), KeyAlgorithm::Ec { curve }),
                hex(der)
            );
        }
        for (set, last) in [
            (MlDsaParameterSet::ML_DSA_44, "11"),
            (MlDsaParameterSet::ML_DSA_65, "12"),
            (MlDsaParameterSet::ML_DSA_87, "13"),
        ] {
            assert_eq!(
                ai_der(SignatureScheme::MlDsa, KeyAlgorithm::MlDsa { set }),
                hex(&format!("300b06096086480165030403{last}"))
            );
        }
    }

    #[test]
    fn a_scheme_that_does_not_fit_the_key_is_refused() {
        assert!(SignatureAlgorithm::from_scheme(SignatureScheme::MlDsa, RSA).is_err());
        assert!(
            SignatureAlgorithm::from_scheme(SignatureScheme::RsaPkcs1(HashAlg::SHA1), RSA).is_err()
        );
        assert!(SignatureAlgorithm::from_scheme(
            SignatureScheme::Ecdsa(HashAlg::SHA256),
            KeyAlgorithm::MlDsa {
                set: MlDsaParameterSet::ML_DSA_65
            }
        )
        .is_err());
    }

    fn parse_hex(der: &str) -> Result<SignatureAlgorithm, CsrError> {
        let der = hex(der);
        SignatureAlgorithm::parse(&AlgorithmIdentifierRef::from_der(&der).unwrap())
    }

    #[test]
    fn weak_or_odd_signature_algorithms_are_refused_by_name() {
        // sha1WithRSAEncryption
        let e = parse_hex("300d06092a864886f70d0101050500").unwrap_err();
        assert!(e.to_string().contains("sha1WithRSAEncryption"), "{e}");
        // ECDSA with NULL parameters
        assert!(parse_hex("300c06082a8648ce3d0403020500").is_err());
        // PKCS#1 v1.5 without parameters is tolerated.
        assert_eq!(
            parse_hex("300b06092a864886f70d01010b").unwrap(),
            SignatureAlgorithm::RsaPkcs1(Hash::Sha256)
        );
        // PSS with absent parameters (SHA-1 defaults).
        assert!(parse_hex("300b06092a864886f70d01010a").is_err());
        // PSS SHA-256 with MGF1-SHA-1: refused.
        let e = parse_hex(
            "303d 06092a864886f70d01010a 3030 a00f300d06096086480165030402010500 \
             a118301606092a864886f70d010108300906052b0e03021a0500 a203020120",
        )
        .unwrap_err();
        assert!(e.to_string().contains("MGF1"), "{e}");
        // An unknown OID.
        assert!(parse_hex("3006060428030405").is_err());
    }

    #[test]
    fn bit_length_counts_significant_bits() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x01, 0xff]), 9);
    }
}

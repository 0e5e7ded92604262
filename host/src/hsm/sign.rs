//! Signing with a key on the token: `sign_rsa_pkcs1`, `sign_rsa_pss`,
//! `sign_ecdsa`, `sign_ml_dsa`, with the mechanism chosen once, at start-up,
//! from the key type and from what both the plugin and the token support.

use cryptoki::{
    mechanism::{
        dsa::SignAdditionalContext,
        rsa::{PkcsMgfType, PkcsPssParams},
        vendor_defined::VendorDefinedMechanism,
        Mechanism, MechanismType,
    },
    object::ObjectHandle,
    session::Session,
};
use der::{asn1::UintRef, Encode};
use kipuka_plugin_api::{HashAlg, MechanismId, MlDsaAccess, Operations};
use sha2::Digest;

use super::{
    context::Pkcs11Context,
    error::HsmError,
    keys::{curve_field_bytes, KeyAlgorithm},
};

/// The signature scheme a CA signs certificates with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 with this hash.
    RsaPkcs1(HashAlg),
    /// RSASSA-PSS with this hash, MGF1 of the same hash, salt = hash length.
    RsaPss(HashAlg),
    /// ECDSA with this hash (the curve's: P-256/SHA-256, P-384/SHA-384, P-521/SHA-512).
    Ecdsa(HashAlg),
    /// Pure ML-DSA over the whole message, empty context (RFC 9881).
    MlDsa,
}

impl std::fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureScheme::RsaPkcs1(h) => write!(f, "RSASSA-PKCS1-v1_5 with {h}"),
            SignatureScheme::RsaPss(h) => write!(f, "RSASSA-PSS with {h}"),
            SignatureScheme::Ecdsa(h) => write!(f, "ECDSA with {h}"),
            SignatureScheme::MlDsa => f.write_str("ML-DSA"),
        }
    }
}

/// The hash ECDSA uses on `curve`: exactly the curve's size, because
/// `CKM_ECDSA` silently truncates a longer input.
pub fn ecdsa_hash(curve: kipuka_plugin_api::Curve) -> HashAlg {
    match curve_field_bytes(curve) {
        32 => HashAlg::SHA256,
        48 => HashAlg::SHA384,
        _ => HashAlg::SHA512,
    }
}

/// How the token is driven for a scheme: which mechanism, and whether the
/// host hashes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignMechanism {
    /// The host hashes; the token signs the hash (`CKM_RSA_PKCS` over a
    /// DigestInfo, `CKM_RSA_PKCS_PSS`, `CKM_ECDSA`).
    HostHash(MechanismId),
    /// The token hashes and signs (`CKM_SHA256_RSA_PKCS`, `CKM_ECDSA_SHA384`, ...).
    TokenHash(MechanismId),
    /// `CKM_ML_DSA` (PKCS#11 3.2) over the whole message.
    MlDsa,
    /// A vendor ML-DSA mechanism over the whole message.
    VendorMlDsa(MechanismId),
}

impl SignMechanism {
    /// The mechanism used, for logs and `kipuka check`.
    pub fn mechanism(&self) -> MechanismId {
        match *self {
            SignMechanism::HostHash(m)
            | SignMechanism::TokenHash(m)
            | SignMechanism::VendorMlDsa(m) => m,
            SignMechanism::MlDsa => MechanismId::ML_DSA,
        }
    }
}

fn hash_index(h: HashAlg) -> Option<usize> {
    [HashAlg::SHA256, HashAlg::SHA384, HashAlg::SHA512]
        .iter()
        .position(|x| *x == h)
}

fn pick(h: HashAlg, ids: [MechanismId; 3]) -> Option<MechanismId> {
    hash_index(h).map(|i| ids[i])
}

/// The host-hashing mechanism `host` when it is usable (`host_usable`),
/// else the token's hash-and-sign `token_hash` when both plugin and token
/// have it, else None.
fn host_or_token_hash(
    ctx: &Pkcs11Context,
    host: MechanismId,
    host_usable: bool,
    token_hash: MechanismId,
) -> Option<SignMechanism> {
    if host_usable {
        Some(SignMechanism::HostHash(host))
    } else if ctx.usable(token_hash, Operations::SIGN) {
        Some(SignMechanism::TokenHash(token_hash))
    } else {
        None
    }
}

/// Chooses the mechanism for `scheme` on a key of `algorithm`, or says
/// precisely why the vendor/token cannot. `Ok(None)` for ML-DSA means: no
/// native support, use the software fallback if one is configured.
pub fn choose_mechanism(
    ctx: &Pkcs11Context,
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
) -> Result<Option<SignMechanism>, HsmError> {
    let p = ctx.profile();
    let vendor = || format!("{} ({})", p.name, ctx.summary().manufacturer);
    let unsupported = |what: String| HsmError::Unsupported {
        vendor: vendor(),
        mechanism: what,
        detail: String::new(),
    };
    let sign = Operations::SIGN;
    match (algorithm, scheme) {
        (KeyAlgorithm::Rsa { .. }, SignatureScheme::RsaPkcs1(h)) => {
            let token_hash = pick(
                h,
                [
                    MechanismId::SHA256_RSA_PKCS,
                    MechanismId::SHA384_RSA_PKCS,
                    MechanismId::SHA512_RSA_PKCS,
                ],
            )
            .ok_or_else(|| unsupported(format!("RSASSA-PKCS1-v1_5 with {h}")))?;
            let host = ctx.usable(MechanismId::RSA_PKCS, sign);
            host_or_token_hash(ctx, MechanismId::RSA_PKCS, host, token_hash)
                .ok_or_else(|| {
                    unsupported(format!(
                        "CKM_RSA_PKCS or {token_hash} (RSASSA-PKCS1-v1_5 with {h})"
                    ))
                })
                .map(Some)
        }
        (KeyAlgorithm::Rsa { .. }, SignatureScheme::RsaPss(h)) => {
            let token_hash = pick(
                h,
                [
                    MechanismId::SHA256_RSA_PKCS_PSS,
                    MechanismId::SHA384_RSA_PKCS_PSS,
                    MechanismId::SHA512_RSA_PKCS_PSS,
                ],
            )
            .ok_or_else(|| unsupported(format!("RSASSA-PSS with {h}")))?;
            let pss_has_hash = p
                .mechanism(MechanismId::RSA_PKCS_PSS)
                .is_some_and(|m| m.hashes.is_empty() || m.hashes.contains(&h));
            let host = ctx.usable(MechanismId::RSA_PKCS_PSS, sign) && pss_has_hash;
            host_or_token_hash(ctx, MechanismId::RSA_PKCS_PSS, host, token_hash)
                .ok_or_else(|| {
                    unsupported(format!(
                        "CKM_RSA_PKCS_PSS or {token_hash} (RSASSA-PSS with {h})"
                    ))
                })
                .map(Some)
        }
        (KeyAlgorithm::Ec { curve }, SignatureScheme::Ecdsa(h)) => {
            if h != ecdsa_hash(curve) {
                return Err(unsupported(format!(
                    "ECDSA {curve} with {h} (kipuka uses {} on {curve})",
                    ecdsa_hash(curve)
                )));
            }
            let token_hash = pick(
                h,
                [
                    MechanismId::ECDSA_SHA256,
                    MechanismId::ECDSA_SHA384,
                    MechanismId::ECDSA_SHA512,
                ],
            )
            .expect("curve hashes are SHA-2");
            let host = ctx.usable(MechanismId::ECDSA, sign);
            host_or_token_hash(ctx, MechanismId::ECDSA, host, token_hash)
                .ok_or_else(|| unsupported(format!("CKM_ECDSA or {token_hash} on {curve}")))
                .map(Some)
        }
        (KeyAlgorithm::MlDsa { .. }, SignatureScheme::MlDsa) => match p.ml_dsa.native {
            MlDsaAccess::PKCS11_3_2 if ctx.token_has(MechanismId::ML_DSA) => {
                Ok(Some(SignMechanism::MlDsa))
            }
            MlDsaAccess::VENDOR_MECHANISM => match p.ml_dsa.vendor_mechanism {
                Some(m) if ctx.token_has(m) => Ok(Some(SignMechanism::VendorMlDsa(m))),
                _ => Ok(None),
            },
            _ => Ok(None),
        },
        (algorithm, scheme) => Err(HsmError::Key {
            uri: String::new(),
            reason: format!("a {algorithm} key cannot sign with {scheme}"),
        }),
    }
}

/// The DER DigestInfo prefix of `h` (RFC 8017 §9.2 note 1).
fn digest_info_prefix(h: HashAlg) -> &'static [u8] {
    match h {
        HashAlg::SHA384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        HashAlg::SHA512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
        _ => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
    }
}

/// Hashes `data` with `h` (SHA-256, SHA-384 or SHA-512).
pub fn hash(h: HashAlg, data: &[u8]) -> Vec<u8> {
    match h {
        HashAlg::SHA384 => sha2::Sha384::digest(data).to_vec(),
        HashAlg::SHA512 => sha2::Sha512::digest(data).to_vec(),
        _ => sha2::Sha256::digest(data).to_vec(),
    }
}

fn hash_mechanism(h: HashAlg) -> (MechanismType, PkcsMgfType) {
    match h {
        HashAlg::SHA384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
        HashAlg::SHA512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
        HashAlg::SHA1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        _ => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
    }
}

/// PSS parameters: hash, MGF1 of the same hash, salt length = hash length.
pub fn pss_params(h: HashAlg) -> PkcsPssParams {
    let (hash_alg, mgf) = hash_mechanism(h);
    PkcsPssParams {
        hash_alg,
        mgf,
        s_len: (hash_index(h).map_or(32, |i| [32, 48, 64][i]) as u64).into(),
    }
}

fn sign_raw(
    session: &Session,
    mechanism: &Mechanism,
    key: ObjectHandle,
    data: &[u8],
) -> Result<Vec<u8>, HsmError> {
    session
        .sign(mechanism, key, data)
        .map_err(HsmError::pkcs11("C_Sign"))
}

/// RSASSA-PKCS1-v1_5: `CKM_RSA_PKCS` over a DigestInfo built here, or the
/// token's `CKM_SHA*_RSA_PKCS`.
pub fn sign_rsa_pkcs1(
    session: &Session,
    key: ObjectHandle,
    how: SignMechanism,
    h: HashAlg,
    data: &[u8],
) -> Result<Vec<u8>, HsmError> {
    match how {
        SignMechanism::HostHash(_) => {
            let mut info = digest_info_prefix(h).to_vec();
            info.extend_from_slice(&hash(h, data));
            sign_raw(session, &Mechanism::RsaPkcs, key, &info)
        }
        _ => {
            let m = match h {
                HashAlg::SHA384 => Mechanism::Sha384RsaPkcs,
                HashAlg::SHA512 => Mechanism::Sha512RsaPkcs,
                _ => Mechanism::Sha256RsaPkcs,
            };
            sign_raw(session, &m, key, data)
        }
    }
}

/// RSASSA-PSS: `CKM_RSA_PKCS_PSS` over the hash, or `CKM_SHA*_RSA_PKCS_PSS`.
pub fn sign_rsa_pss(
    session: &Session,
    key: ObjectHandle,
    how: SignMechanism,
    h: HashAlg,
    data: &[u8],
) -> Result<Vec<u8>, HsmError> {
    let params = pss_params(h);
    match how {
        SignMechanism::HostHash(_) => {
            sign_raw(session, &Mechanism::RsaPkcsPss(params), key, &hash(h, data))
        }
        _ => {
            let m = match h {
                HashAlg::SHA384 => Mechanism::Sha384RsaPkcsPss(params),
                HashAlg::SHA512 => Mechanism::Sha512RsaPkcsPss(params),
                _ => Mechanism::Sha256RsaPkcsPss(params),
            };
            sign_raw(session, &m, key, data)
        }
    }
}

/// ECDSA: `CKM_ECDSA` over exactly the curve's hash, or `CKM_ECDSA_SHA*`;
/// the token's raw `r || s` becomes a DER `Ecdsa-Sig-Value`.
pub fn sign_ecdsa(
    session: &Session,
    key: ObjectHandle,
    how: SignMechanism,
    h: HashAlg,
    data: &[u8],
) -> Result<Vec<u8>, HsmError> {
    let raw = match how {
        SignMechanism::HostHash(_) => sign_raw(session, &Mechanism::Ecdsa, key, &hash(h, data))?,
        _ => {
            let m = match h {
                HashAlg::SHA384 => Mechanism::EcdsaSha384,
                HashAlg::SHA512 => Mechanism::EcdsaSha512,
                _ => Mechanism::EcdsaSha256,
            };
            sign_raw(session, &m, key, data)?
        }
    };
    ecdsa_raw_to_der(&raw).ok_or(HsmError::Pkcs11 {
        function: "C_Sign",
        source: cryptoki::error::Error::InvalidValue,
    })
}

/// `r || s` (each half the length) → DER `SEQUENCE { INTEGER r, INTEGER s }`.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    #[derive(der::Sequence)]
    struct EcdsaSigValue<'a> {
        r: UintRef<'a>,
        s: UintRef<'a>,
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    EcdsaSigValue {
        r: UintRef::new(r).ok()?,
        s: UintRef::new(s).ok()?,
    }
    .to_der()
    .ok()
}

/// ML-DSA over the whole message with an empty context: `CKM_ML_DSA`, or
/// the vendor's mechanism (no parameters).
pub fn sign_ml_dsa(
    session: &Session,
    key: ObjectHandle,
    how: SignMechanism,
    data: &[u8],
) -> Result<Vec<u8>, HsmError> {
    match how {
        SignMechanism::VendorMlDsa(id) => {
            let ty =
                MechanismType::new_vendor_defined(id.0 as _).map_err(HsmError::pkcs11("C_Sign"))?;
            let m = Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(ty, None));
            sign_raw(session, &m, key, data)
        }
        _ => sign_raw(
            session,
            &Mechanism::MlDsa(SignAdditionalContext::new(
                cryptoki::mechanism::dsa::HedgeType::Preferred,
                None,
            )),
            key,
            data,
        ),
    }
}

/// Signs `data` with `scheme` through `how`.
pub fn sign_with(
    session: &Session,
    key: ObjectHandle,
    scheme: SignatureScheme,
    how: SignMechanism,
    data: &[u8],
) -> Result<Vec<u8>, HsmError> {
    match scheme {
        SignatureScheme::RsaPkcs1(h) => sign_rsa_pkcs1(session, key, how, h, data),
        SignatureScheme::RsaPss(h) => sign_rsa_pss(session, key, how, h, data),
        SignatureScheme::Ecdsa(h) => sign_ecdsa(session, key, how, h, data),
        SignatureScheme::MlDsa => sign_ml_dsa(session, key, how, data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_becomes_der_with_positive_integers() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r has its top bit set: needs a leading zero in DER
        raw[63] = 1;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x21, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
    }

    #[test]
    fn digest_info_prefixes_have_the_right_lengths() {
        for (h, n) in [
            (HashAlg::SHA256, 32),
            (HashAlg::SHA384, 48),
            (HashAlg::SHA512, 64),
        ] {
            let p = digest_info_prefix(h);
            assert_eq!(p[1] as usize + 2, p.len() + n);
            assert_eq!(*p.last().unwrap() as usize, n);
        }
    }
}

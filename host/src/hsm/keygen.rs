//! Server-side key generation (RFC 7030 §4.4) on the token: the client's key
//! pair is made inside the HSM, read out once under a transport key, and the
//! content-encryption key (CEK) that protects it in transit is wrapped for the
//! client by the HSM (AES key wrap, RSA-OAEP or ECDH-ES, see [`super::wrap`]).
//!
//! Every object made here is a session object recorded in a [`Scratch`], so
//! the key pair, the CEK, the transport key and any ephemeral key are
//! destroyed before the operation returns, whether it succeeded or failed.
//!
//! Why the private key is read out at all: RFC 7030 §4.4.2 puts the key
//! package in a SignedData *inside* the EnvelopedData, so the signature covers
//! the plaintext key and must be computed over it; no PKCS#11 mechanism signs
//! a private key's encoding. The key therefore passes through kipuka's memory,
//! only in zeroizing buffers, and only between this module and the encryption
//! under the CEK.

use cryptoki::{
    mechanism::Mechanism,
    object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle},
    session::Session,
};
use kipuka_plugin_api::{Curve, HashAlg, MechanismId, Operations};
use zeroize::Zeroizing;

use super::{
    context::Pkcs11Context,
    error::HsmError,
    keys::{curve_oid, ec_spki, find_secret_key, read_ec_point, rsa_spki},
    uri::Pkcs11Uri,
    wrap::{
        ecdh_es_wrap, require, require_ecdh_es, require_oaep, rsa_oaep_wrap, unsupported,
        EcdhWrapped, Scratch,
    },
};

/// AES-256: the CEK and the transport key.
pub const AES256_KEY_BYTES: usize = 32;

/// The key pair a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPairSpec {
    /// RSA with this modulus size (public exponent 65537).
    Rsa(u32),
    /// EC on this curve.
    Ec(Curve),
}

impl std::fmt::Display for KeyPairSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyPairSpec::Rsa(bits) => write!(f, "RSA-{bits}"),
            KeyPairSpec::Ec(curve) => write!(f, "EC {curve}"),
        }
    }
}

/// Whom the CEK is wrapped for.
#[derive(Clone, Debug)]
pub enum CekRecipient {
    /// A pre-shared AES key-encryption key on the token (`KEKRecipientInfo`).
    Kek(Pkcs11Uri),
    /// An RSA public key: RSAES-OAEP with `hash` (`KeyTransRecipientInfo`).
    RsaOaep {
        /// Modulus, big-endian.
        modulus: Vec<u8>,
        /// Public exponent, big-endian.
        exponent: Vec<u8>,
        /// OAEP and MGF1 hash.
        hash: HashAlg,
    },
    /// An EC public key: ephemeral-static ECDH, X9.63 KDF with SHA-256,
    /// AES-256 key wrap (`KeyAgreeRecipientInfo`, RFC 5753).
    EcdhEs {
        /// The recipient's curve.
        curve: Curve,
        /// Its uncompressed point.
        point: Vec<u8>,
        /// The DER `ECC-CMS-SharedInfo` fed to the KDF.
        shared_info: Vec<u8>,
    },
}

/// The CEK as the recipient receives it.
#[derive(Clone, Debug)]
pub enum WrappedCek {
    /// AES key wrap (RFC 3394) under the pre-shared key.
    Kek(Vec<u8>),
    /// RSAES-OAEP ciphertext.
    RsaOaep(Vec<u8>),
    /// Ephemeral public point and the wrapped CEK.
    EcdhEs(EcdhWrapped),
}

/// A freshly generated key pair, its private half read out.
pub struct ExportedKey {
    /// Its SubjectPublicKeyInfo (DER), for the certificate.
    pub spki_der: Vec<u8>,
    /// Its private key as the token encodes it: PKCS#8 `PrivateKeyInfo` (DER).
    pub pkcs8: Zeroizing<Vec<u8>>,
}

/// A generated key and the CEK that will protect it, wrapped for its owner.
pub struct GeneratedKey {
    /// The key pair.
    pub key: ExportedKey,
    /// The CEK, wrapped for the recipient.
    pub wrapped_cek: WrappedCek,
}

/// How the generated private key leaves the token: wrapped under a one-time
/// AES-256 transport key that kipuka holds in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyExport {
    /// `CKM_AES_KEY_WRAP_PAD` (RFC 5649; SoftHSM2).
    AesKeyWrapPad,
    /// `CKM_AES_CBC_PAD` (Kryoptic and most hardware).
    AesCbcPad,
}

impl std::fmt::Display for KeyExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyExport::AesKeyWrapPad => "CKM_AES_KEY_WRAP_PAD (RFC 5649)",
            KeyExport::AesCbcPad => "CKM_AES_CBC_PAD",
        })
    }
}

/// The export mechanism this token offers, if any.
pub fn key_export(ctx: &Pkcs11Context) -> Result<KeyExport, HsmError> {
    if ctx.token_has(MechanismId::AES_KEY_WRAP_PAD) {
        Ok(KeyExport::AesKeyWrapPad)
    } else if ctx.token_has(MechanismId::AES_CBC_PAD) {
        Ok(KeyExport::AesCbcPad)
    } else {
        Err(unsupported(
            ctx,
            MechanismId::AES_KEY_WRAP_PAD,
            " or CKM_AES_CBC_PAD: the token offers neither, so a key it generates cannot be \
             delivered"
                .into(),
        ))
    }
}

/// Checks, before any object is made, that the plugin and the token support
/// generating `spec` and delivering a CEK to `recipient`; the token may still
/// refuse parameters it does not list (SoftHSM2's OAEP hashes), which
/// [`generate_and_wrap`] reports the same way.
pub fn check_support(
    ctx: &Pkcs11Context,
    spec: KeyPairSpec,
    recipient: &CekRecipient,
) -> Result<KeyExport, HsmError> {
    let export = check_generation(ctx, spec)?;
    check_recipient(ctx, recipient)?;
    Ok(export)
}

/// Checks that `spec` can be generated and read out on this token.
pub fn check_generation(ctx: &Pkcs11Context, spec: KeyPairSpec) -> Result<KeyExport, HsmError> {
    match spec {
        KeyPairSpec::Rsa(_) => require(
            ctx,
            MechanismId::RSA_PKCS_KEY_PAIR_GEN,
            Operations::GENERATE_KEY_PAIR,
            "",
        )?,
        KeyPairSpec::Ec(curve) => require(
            ctx,
            MechanismId::EC_KEY_PAIR_GEN,
            Operations::GENERATE_KEY_PAIR,
            &format!(" on {curve}"),
        )?,
    }
    key_export(ctx)
}

/// Checks that the CEK can be wrapped for `recipient` on this token.
pub fn check_recipient(ctx: &Pkcs11Context, recipient: &CekRecipient) -> Result<(), HsmError> {
    match recipient {
        CekRecipient::Kek(_) => {
            require(ctx, MechanismId::AES_KEY_WRAP, Operations::WRAP, "")?;
        }
        CekRecipient::RsaOaep { hash, .. } => require_oaep(ctx, *hash)?,
        CekRecipient::EcdhEs { curve, .. } => require_ecdh_es(ctx, *curve)?,
    }
    Ok(())
}

/// Makes a session AES-256 key holding `value`, recorded for destruction.
fn import_aes_key(
    session: &Session,
    scratch: &mut Scratch<'_>,
    value: &[u8; AES256_KEY_BYTES],
    usage: &[Attribute],
) -> Result<ObjectHandle, HsmError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Value(value.to_vec()),
    ];
    template.extend_from_slice(usage);
    let handle = session
        .create_object(&template)
        .map_err(HsmError::pkcs11("C_CreateObject"))?;
    // The template's copy of the value is gone with `template`; the
    // attribute type does not zeroize, so keep that copy short-lived.
    drop(template);
    Ok(scratch.keep(handle))
}

/// Generates the key pair; returns (private handle, SPKI DER).
fn generate_pair(
    session: &Session,
    scratch: &mut Scratch<'_>,
    spec: KeyPairSpec,
) -> Result<(ObjectHandle, Vec<u8>), HsmError> {
    let private_template = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        // Extractable only by wrapping, and only under the transport key:
        // the one way the key can reach its owner.
        Attribute::Extractable(true),
        Attribute::Sign(true),
    ];
    let internal = |e: String| HsmError::Internal(format!("generated {spec} key: {e}"));
    match spec {
        KeyPairSpec::Rsa(bits) => {
            let (public, private) = session
                .generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &[
                        Attribute::Token(false),
                        Attribute::Verify(true),
                        Attribute::ModulusBits(u64::from(bits).into()),
                        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                    ],
                    &private_template,
                )
                .map_err(HsmError::pkcs11("C_GenerateKeyPair"))?;
            scratch.keep(public);
            scratch.keep(private);
            let attrs = session
                .get_attributes(
                    public,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(HsmError::pkcs11("C_GetAttributeValue"))?;
            let (mut n, mut e) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Modulus(v) => n = Some(v),
                    Attribute::PublicExponent(v) => e = Some(v),
                    _ => {}
                }
            }
            let (n, e) = n
                .zip(e)
                .ok_or_else(|| internal("the token returned no modulus or exponent".into()))?;
            Ok((private, rsa_spki(&n, &e).map_err(internal)?))
        }
        KeyPairSpec::Ec(curve) => {
            let params = curve_oid(curve)
                .ok_or_else(|| internal(format!("no OID for {curve}")))
                .and_then(|oid| der::Encode::to_der(&oid).map_err(|e| internal(e.to_string())))?;
            let (public, private) = session
                .generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &[
                        Attribute::Token(false),
                        Attribute::Verify(true),
                        Attribute::EcParams(params),
                    ],
                    &private_template,
                )
                .map_err(HsmError::pkcs11("C_GenerateKeyPair"))?;
            scratch.keep(public);
            scratch.keep(private);
            let point = read_ec_point(session, public, curve, "the generated key")?;
            Ok((private, ec_spki(curve, &point).map_err(internal)?))
        }
    }
}

/// Reads the private key `key` out under a one-time transport key and
/// returns its PKCS#8 encoding.
fn export_private_key(
    session: &Session,
    scratch: &mut Scratch<'_>,
    export: KeyExport,
    key: ObjectHandle,
) -> Result<Zeroizing<Vec<u8>>, HsmError> {
    let transport = Zeroizing::new(random_bytes::<AES256_KEY_BYTES>()?);
    let handle = import_aes_key(
        session,
        scratch,
        &transport,
        &[Attribute::Wrap(true), Attribute::Extractable(false)],
    )?;
    let opened = match export {
        KeyExport::AesKeyWrapPad => {
            let wrapped = session
                .wrap_key(&Mechanism::AesKeyWrapPad, handle, key)
                .map_err(HsmError::pkcs11("C_WrapKey"))?;
            crate::crypto::kwp_unwrap(&transport, &wrapped)
        }
        KeyExport::AesCbcPad => {
            let iv = random_bytes::<16>()?;
            let wrapped = session
                .wrap_key(&Mechanism::AesCbcPad(iv), handle, key)
                .map_err(HsmError::pkcs11("C_WrapKey"))?;
            crate::crypto::cbc_decrypt(&transport, &iv, &wrapped)
        }
    };
    let mut pkcs8 = opened.map_err(|e| {
        HsmError::Internal(format!(
            "the generated key came back unreadable from {export}: {e}"
        ))
    })?;
    let len = der_element_len(&pkcs8).ok_or_else(|| {
        HsmError::Internal(format!("the generated key exported by {export} is not DER"))
    })?;
    // SoftHSM2 zero-pads the key to whole 8-byte blocks before its RFC 5649
    // wrap, so the padding comes back as data; anything but zeros is not ours.
    if pkcs8[len..].iter().any(|b| *b != 0) || pkcs8.len() - len >= 8 {
        return Err(HsmError::Internal(format!(
            "the generated key exported by {export} has {} unexpected bytes after it",
            pkcs8.len() - len
        )));
    }
    pkcs8.truncate(len);
    Ok(pkcs8)
}

/// The length of the DER element at the start of `der` (definite lengths
/// only), if it fits in `der`.
fn der_element_len(der: &[u8]) -> Option<usize> {
    let first = *der.get(1)?;
    let (header, body) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = der
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (2 + n, len)
    };
    let total = header.checked_add(body)?;
    (total <= der.len()).then_some(total)
}

/// `N` bytes from the operating system's generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], HsmError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| HsmError::Internal(format!("the system random generator failed: {e}")))?;
    Ok(bytes)
}

/// Generates a `spec` key pair on the token and reads its private key out
/// as PKCS#8 (delivery protected by TLS alone); every object it made is gone
/// when it returns. Blocking: run it on a pool session.
pub fn generate_exported(
    ctx: &Pkcs11Context,
    session: &Session,
    spec: KeyPairSpec,
) -> Result<ExportedKey, HsmError> {
    let export = check_generation(ctx, spec)?;
    let mut scratch = Scratch::new(session);
    generate_in(session, &mut scratch, spec, export)
}

fn generate_in(
    session: &Session,
    scratch: &mut Scratch<'_>,
    spec: KeyPairSpec,
    export: KeyExport,
) -> Result<ExportedKey, HsmError> {
    let (private, spki_der) = generate_pair(session, scratch, spec)?;
    let pkcs8 = export_private_key(session, scratch, export, private)?;
    Ok(ExportedKey { spki_der, pkcs8 })
}

/// Generates a `spec` key pair on the token, reads its private key out as
/// PKCS#8, and wraps `cek` for `recipient`; every object it made is gone when
/// it returns. Blocking: run it on a pool session.
pub fn generate_and_wrap(
    ctx: &Pkcs11Context,
    session: &Session,
    spec: KeyPairSpec,
    cek: &[u8; AES256_KEY_BYTES],
    recipient: &CekRecipient,
) -> Result<GeneratedKey, HsmError> {
    let export = check_support(ctx, spec, recipient)?;
    let mut scratch = Scratch::new(session);
    // The CEK can only be wrapped out of the token (and by a token key), so it
    // goes in first: extractable, usable for nothing else.
    let cek_handle = import_aes_key(
        session,
        &mut scratch,
        cek,
        &[
            Attribute::Extractable(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
        ],
    )?;
    let key = generate_in(session, &mut scratch, spec, export)?;
    let wrapped_cek = match recipient {
        CekRecipient::Kek(uri) => {
            let kek = find_secret_key(session, uri)?;
            WrappedCek::Kek(
                session
                    .wrap_key(&Mechanism::AesKeyWrap, kek, cek_handle)
                    .map_err(HsmError::pkcs11("C_WrapKey"))?,
            )
        }
        CekRecipient::RsaOaep {
            modulus,
            exponent,
            hash,
        } => WrappedCek::RsaOaep(rsa_oaep_wrap(
            ctx, session, modulus, exponent, *hash, cek_handle,
        )?),
        CekRecipient::EcdhEs {
            curve,
            point,
            shared_info,
        } => WrappedCek::EcdhEs(ecdh_es_wrap(
            ctx,
            session,
            *curve,
            point,
            shared_info,
            (AES256_KEY_BYTES * 8) as u32,
            cek_handle,
        )?),
    };
    Ok(GeneratedKey { key, wrapped_cek })
}

#[cfg(test)]
mod tests {
    use super::der_element_len;

    #[test]
    fn der_lengths() {
        assert_eq!(der_element_len(&[0x30, 0x00]), Some(2));
        assert_eq!(der_element_len(&[0x30, 0x02, 1, 2, 0, 0]), Some(4));
        assert_eq!(der_element_len(&[0x30, 0x81, 0x01, 9]), Some(4));
        assert_eq!(der_element_len(&[0x30, 0x82, 0x01, 0x00]), None);
        assert_eq!(der_element_len(&[0x30, 0x80]), None);
        assert_eq!(der_element_len(&[0x30]), None);
    }
}

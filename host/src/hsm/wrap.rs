//! Key wrapping for server-side key generation: AES-256 key wrap
//! (`CKM_AES_KEY_WRAP`), RSA-OAEP (`CKM_RSA_PKCS_OAEP`) with SHA-256 or
//! SHA-384, and ECDH-ES (`CKM_ECDH1_DERIVE` with the ANSI X9.63 KDF of
//! RFC 5753) followed by AES key wrap. A method the plugin or the token does
//! not support is refused with an error naming the vendor, the mechanism and
//! the hash — never replaced by a weaker one.

use cryptoki::{
    error::{Error as CkError, RvError},
    mechanism::{
        elliptic_curve::{EcKdf, Ecdh1DeriveParams},
        rsa::{PkcsOaepParams, PkcsOaepSource},
        Mechanism, MechanismType,
    },
    object::{Attribute, KeyType, ObjectClass, ObjectHandle},
    session::Session,
};
use der::Encode;
use kipuka_plugin_api::{Curve, HashAlg, MechanismId, Operations};

use super::{
    context::Pkcs11Context,
    error::HsmError,
    keys::{curve_field_bytes, curve_oid, read_ec_point, unwrap_ec_point},
};

/// Session objects created for one operation, destroyed when it ends —
/// whether it succeeded or failed — so nothing is left on the token.
pub struct Scratch<'s> {
    session: &'s Session,
    objects: Vec<ObjectHandle>,
}

impl<'s> Scratch<'s> {
    /// An empty set of scratch objects on `session`.
    pub fn new(session: &'s Session) -> Self {
        Scratch {
            session,
            objects: Vec::new(),
        }
    }

    /// Records `handle` for destruction.
    pub fn keep(&mut self, handle: ObjectHandle) -> ObjectHandle {
        self.objects.push(handle);
        handle
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        for h in self.objects.drain(..).rev() {
            if let Err(e) = self.session.destroy_object(h) {
                tracing::warn!(error = %super::error::ckr_name(&e), "could not destroy a session object; it goes with the session");
            }
        }
    }
}

pub(crate) fn unsupported(ctx: &Pkcs11Context, mechanism: MechanismId, detail: String) -> HsmError {
    HsmError::Unsupported {
        vendor: format!("{} ({})", ctx.profile().name, ctx.summary().manufacturer),
        mechanism: mechanism.to_string(),
        detail,
    }
}

/// Fails unless both the plugin (for `ops`) and the token support `mechanism`.
pub fn require(
    ctx: &Pkcs11Context,
    mechanism: MechanismId,
    ops: Operations,
    detail: &str,
) -> Result<(), HsmError> {
    if !ctx.profile().supports(mechanism, ops) {
        return Err(unsupported(
            ctx,
            mechanism,
            format!(
                "{detail} (the {} plugin does not declare it)",
                ctx.profile().name
            ),
        ));
    }
    if !ctx.token_has(mechanism) {
        return Err(unsupported(
            ctx,
            mechanism,
            format!("{detail} (the token does not list it)"),
        ));
    }
    Ok(())
}

/// Wraps `key` under the AES key-encryption key `kek` (RFC 3394).
pub fn aes_key_wrap(
    ctx: &Pkcs11Context,
    session: &Session,
    kek: ObjectHandle,
    key: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    require(ctx, MechanismId::AES_KEY_WRAP, Operations::WRAP, "")?;
    session
        .wrap_key(&Mechanism::AesKeyWrap, kek, key)
        .map_err(HsmError::pkcs11("C_WrapKey"))
}

fn oaep_hash(h: HashAlg) -> Option<(MechanismType, cryptoki::mechanism::rsa::PkcsMgfType)> {
    use cryptoki::mechanism::rsa::PkcsMgfType;
    match h {
        HashAlg::SHA256 => Some((MechanismType::SHA256, PkcsMgfType::MGF1_SHA256)),
        HashAlg::SHA384 => Some((MechanismType::SHA384, PkcsMgfType::MGF1_SHA384)),
        _ => None,
    }
}

/// Fails unless the plugin and the token support RSA-OAEP wrapping and the
/// vendor supports `hash` with it (Utimaco: no SHA-384).
pub fn require_oaep(ctx: &Pkcs11Context, hash: HashAlg) -> Result<(), HsmError> {
    let detail = format!(", hash {hash}");
    require(ctx, MechanismId::RSA_PKCS_OAEP, Operations::WRAP, &detail)?;
    if ctx.profile().oaep_hashes.contains(&hash) {
        return Ok(());
    }
    Err(unsupported(
        ctx,
        MechanismId::RSA_PKCS_OAEP,
        format!(
            "{detail} (the vendor supports only {})",
            ctx.profile()
                .oaep_hashes
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// Encrypts `key` to the RSA public key (`modulus`, `exponent`) with
/// RSAES-OAEP, `hash` for both the label hash and MGF1, empty label.
/// The public key is imported as a session object and destroyed after.
pub fn rsa_oaep_wrap(
    ctx: &Pkcs11Context,
    session: &Session,
    modulus: &[u8],
    exponent: &[u8],
    hash: HashAlg,
    key: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    let detail = format!(", hash {hash}");
    let (hash_alg, mgf) = oaep_hash(hash).ok_or_else(|| {
        unsupported(
            ctx,
            MechanismId::RSA_PKCS_OAEP,
            format!("{detail} (kipuka wraps with SHA-256 or SHA-384)"),
        )
    })?;
    require_oaep(ctx, hash)?;
    let mut scratch = Scratch::new(session);
    let public = scratch.keep(
        session
            .create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(false),
                Attribute::Modulus(modulus.to_vec()),
                Attribute::PublicExponent(exponent.to_vec()),
                Attribute::Wrap(true),
                Attribute::Encrypt(true),
            ])
            .map_err(HsmError::pkcs11("C_CreateObject"))?,
    );
    let params = PkcsOaepParams::new(hash_alg, mgf, PkcsOaepSource::empty());
    session
        .wrap_key(&Mechanism::RsaPkcsOaep(params), public, key)
        .map_err(|e| match e {
            // The token refuses the parameters although the plugin lists
            // them (SoftHSM2 does OAEP with SHA-1 only): say so plainly.
            CkError::Pkcs11(
                RvError::MechanismParamInvalid | RvError::ArgumentsBad | RvError::MechanismInvalid,
                _,
            ) => unsupported(
                ctx,
                MechanismId::RSA_PKCS_OAEP,
                format!(
                    "{detail} (the token refused it: {})",
                    super::error::ckr_name(&e)
                ),
            ),
            other => HsmError::pkcs11("C_WrapKey")(other),
        })
}

/// Fails unless the plugin and the token support what [`ecdh_es_wrap`]
/// needs on `curve`: an ephemeral key pair, ECDH derivation, AES key wrap.
pub fn require_ecdh_es(ctx: &Pkcs11Context, curve: Curve) -> Result<(), HsmError> {
    let detail = format!(" on {curve}");
    require(
        ctx,
        MechanismId::EC_KEY_PAIR_GEN,
        Operations::GENERATE_KEY_PAIR,
        &detail,
    )?;
    require(ctx, MechanismId::ECDH1_DERIVE, Operations::DERIVE, &detail)?;
    require(ctx, MechanismId::AES_KEY_WRAP, Operations::WRAP, "")
}

/// The result of an ECDH-ES key wrap.
#[derive(Clone, Debug)]
pub struct EcdhWrapped {
    /// The ephemeral public key, an uncompressed point (`04 || X || Y`).
    pub ephemeral_point: Vec<u8>,
    /// `key` wrapped with AES key wrap under the derived key-encryption key.
    pub wrapped_key: Vec<u8>,
}

/// ECDH-ES + AES key wrap (RFC 5753): generates an ephemeral key pair on
/// `curve` in the token, derives a `kek_bits` AES key-encryption key from
/// ECDH with `recipient_point` through the X9.63 KDF with SHA-256 and
/// `shared_info` (the DER `ECC-CMS-SharedInfo`), and wraps `key` with it.
/// The ephemeral private key and the derived key never leave the token and
/// are destroyed before returning.
pub fn ecdh_es_wrap(
    ctx: &Pkcs11Context,
    session: &Session,
    curve: Curve,
    recipient_point: &[u8],
    shared_info: &[u8],
    kek_bits: u32,
    key: ObjectHandle,
) -> Result<EcdhWrapped, HsmError> {
    require_ecdh_es(ctx, curve)?;
    let point = unwrap_ec_point(recipient_point, curve).ok_or_else(|| {
        unsupported(
            ctx,
            MechanismId::ECDH1_DERIVE,
            format!(" with a recipient point that is not an uncompressed {curve} point"),
        )
    })?;
    let oid = curve_oid(curve)
        .ok_or_else(|| unsupported(ctx, MechanismId::ECDH1_DERIVE, format!(" on {curve}")))?;
    let params = oid
        .to_der()
        .map_err(|e| HsmError::Internal(e.to_string()))?;

    let mut scratch = Scratch::new(session);
    let (public, private) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[Attribute::Token(false), Attribute::EcParams(params)],
            &[
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Derive(true),
            ],
        )
        .map_err(HsmError::pkcs11("C_GenerateKeyPair"))?;
    scratch.keep(public);
    scratch.keep(private);
    let ephemeral = read_ec_point(session, public, curve, "the ephemeral public key")?;
    debug_assert_eq!(ephemeral.len(), 1 + 2 * curve_field_bytes(curve));

    let derive = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::sha256(shared_info), point));
    let kek = scratch.keep(
        session
            .derive_key(
                &derive,
                private,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen((u64::from(kek_bits) / 8).into()),
                    Attribute::Token(false),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Wrap(true),
                ],
            )
            .map_err(|e| match e {
                // SoftHSM2 2.6 derives with the null KDF only: RFC 5753 needs
                // X9.63 with SHA-256 inside the token, so this is a refusal,
                // not a reason to derive the shared secret into memory.
                CkError::Pkcs11(RvError::MechanismParamInvalid | RvError::ArgumentsBad, _) => {
                    unsupported(
                        ctx,
                        MechanismId::ECDH1_DERIVE,
                        format!(
                            " with the X9.63 SHA-256 KDF on {curve} (the token refused it: {})",
                            super::error::ckr_name(&e)
                        ),
                    )
                }
                other => HsmError::pkcs11("C_DeriveKey")(other),
            })?,
    );
    let wrapped_key = session
        .wrap_key(&Mechanism::AesKeyWrap, kek, key)
        .map_err(HsmError::pkcs11("C_WrapKey"))?;
    Ok(EcdhWrapped {
        ephemeral_point: ephemeral,
        wrapped_key,
    })
}

/// Generates an AES content-encryption key of `bits` as a session object
/// that may be wrapped (and only wrapped) out of the token.
pub fn generate_cek(
    ctx: &Pkcs11Context,
    session: &Session,
    bits: u32,
) -> Result<ObjectHandle, HsmError> {
    require(ctx, MechanismId::AES_KEY_GEN, Operations::GENERATE, "")?;
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen((u64::from(bits) / 8).into()),
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(true),
            ],
        )
        .map_err(HsmError::pkcs11("C_GenerateKey"))
}

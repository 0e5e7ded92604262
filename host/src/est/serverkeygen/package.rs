//! The private-key part of a `/serverkeygen` answer, as RFC 7030 §4.4.2
//! builds it:
//!
//! ```text
//! ContentInfo { EnvelopedData (AES-256-CBC) | AuthEnvelopedData (AES-256-GCM, RFC 5083)
//!   recipientInfos: one kekri (AES-256 wrap) | ktri (RSAES-OAEP) | kari (ECDH-ES, RFC 5753)
//!   encrypted content: ContentInfo { SignedData, signed by the CA (the key generator)
//!     eContent: AsymmetricKeyPackage (RFC 5958) { OneAsymmetricKey } } }
//! ```
//!
//! The CEK wrap for the recipient is done by the HSM ([`crate::hsm::keygen`]);
//! this module only assembles DER around what it returns. Every buffer that
//! holds the plaintext key is zeroizing.

use cms::{
    authenveloped_data::AuthEnvelopedData,
    cert::{CertificateChoices, IssuerAndSerialNumber},
    content_info::{CmsVersion, ContentInfo},
    enveloped_data::{
        EncryptedContentInfo, EnvelopedData, KekIdentifier, KekRecipientInfo,
        KeyAgreeRecipientIdentifier, KeyAgreeRecipientInfo, KeyTransRecipientInfo,
        OriginatorIdentifierOrKey, OriginatorPublicKey, RecipientEncryptedKey, RecipientIdentifier,
        RecipientInfo, RecipientInfos,
    },
    signed_data::{CertificateSet, SignerIdentifier, SignerInfo, SignerInfos},
};
use const_oid::ObjectIdentifier;
use der::{
    asn1::{BitString, OctetString, OctetStringRef, SetOfVec},
    Any, AnyRef, Decode, Encode, Sequence,
};
use spki::AlgorithmIdentifierOwned;
use x509_cert::{attr::Attribute, Certificate};
use zeroize::Zeroizing;

use crate::{config::ContentEncryption, crypto, hsm::keygen::WrappedCek};

/// `id-ct-KP-aKeyPackage` (RFC 5958).
pub const ID_CT_KP_A_KEY_PACKAGE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.2.1.2.78.5");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
const ID_CT_AUTH_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.23");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_AES256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
const ID_AES256_WRAP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.45");
const ID_AES256_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.46");
const ID_RSAES_OAEP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `dhSinglePass-stdDH-sha256kdf-scheme` (RFC 5753).
const ID_ECDH_SHA256_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.11.1");

/// What went wrong assembling the package (a bug or an unusable input).
#[derive(Debug, thiserror::Error)]
#[error("key package: {0}")]
pub struct PackageError(String);

fn err(what: &str) -> impl FnOnce(der::Error) -> PackageError + '_ {
    move |e| PackageError(format!("{what}: {e}"))
}

/// `AlgorithmIdentifier` for AES-256 key wrap, parameters absent (RFC 3565).
fn aes256_wrap() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_AES256_WRAP,
        parameters: None,
    }
}

/// `ECC-CMS-SharedInfo` (RFC 5753 §7.2), the X9.63 KDF input for a kari
/// whose key wrap is AES-256 and which carries no ukm.
#[derive(Sequence)]
struct EccCmsSharedInfo {
    key_info: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    supp_pub_info: OctetString,
}

/// The DER `ECC-CMS-SharedInfo` for an AES-256 key-encryption key.
pub fn ecdh_shared_info() -> Result<Vec<u8>, PackageError> {
    EccCmsSharedInfo {
        key_info: aes256_wrap(),
        // The KEK length in bits, 32-bit big-endian.
        supp_pub_info: OctetString::new(256u32.to_be_bytes().to_vec())
            .map_err(err("ECC-CMS-SharedInfo"))?,
    }
    .to_der()
    .map_err(err("ECC-CMS-SharedInfo"))
}

/// `GCMParameters` (RFC 5084): a 12-byte nonce and a 16-byte tag.
#[derive(Sequence)]
struct GcmParameters {
    nonce: OctetString,
    icv_len: u8,
}

/// `AsymmetricKeyPackage ::= SEQUENCE SIZE (1..MAX) OF OneAsymmetricKey`
/// holding the one key the token exported (PKCS#8 is OneAsymmetricKey v1).
pub fn asymmetric_key_package(pkcs8: &[u8]) -> Result<Zeroizing<Vec<u8>>, PackageError> {
    let key = AnyRef::from_der(pkcs8).map_err(err("the exported private key"))?;
    let package = vec![key];
    let len = usize::try_from(package.encoded_len().map_err(err("AsymmetricKeyPackage"))?)
        .map_err(err("AsymmetricKeyPackage"))?;
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    package
        .encode_to_vec(&mut out)
        .map_err(err("AsymmetricKeyPackage"))?;
    Ok(out)
}

/// The signed attributes (content type, message digest) of the key
/// generator's SignerInfo, DER-encoded as the SET OF that is signed.
pub fn signed_attributes(digest: &[u8]) -> Result<SetOfVec<Attribute>, PackageError> {
    let attr = |oid, value: Any| -> Result<Attribute, PackageError> {
        Ok(Attribute {
            oid,
            values: SetOfVec::try_from(vec![value]).map_err(err("attribute"))?,
        })
    };
    let content_type = Any::encode_from(&ID_CT_KP_A_KEY_PACKAGE).map_err(err("contentType"))?;
    let message_digest =
        Any::encode_from(&OctetString::new(digest.to_vec()).map_err(err("messageDigest"))?)
            .map_err(err("messageDigest"))?;
    SetOfVec::try_from(vec![
        attr(ID_CONTENT_TYPE, content_type)?,
        attr(ID_MESSAGE_DIGEST, message_digest)?,
    ])
    .map_err(err("signed attributes"))
}

/// The signer of the key package: the CA certificate chain (first = signer),
/// and the algorithms of its signature.
pub struct Signer<'a> {
    /// The CA certificate followed by the rest of its chain.
    pub chain: &'a [Certificate],
    /// The digest algorithm (`digestAlgorithm`).
    pub digest: AlgorithmIdentifierOwned,
    /// The signature algorithm (`signatureAlgorithm`).
    pub signature_algorithm: AlgorithmIdentifierOwned,
}

fn issuer_and_serial(cert: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: cert.tbs_certificate().issuer().clone(),
        serial_number: cert.tbs_certificate().serial_number().clone(),
    }
}

/// `EncapsulatedContentInfo` borrowing the key package, so that the one
/// plaintext copy is the caller's zeroizing buffer (the `cms` types own their
/// bytes in buffers that are not wiped).
#[derive(Sequence)]
struct EncapsulatedKeyPackage<'a> {
    econtent_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    econtent: &'a OctetStringRef,
}

/// `SignedData` around an [`EncapsulatedKeyPackage`] (RFC 5652 §5.1).
#[derive(Sequence)]
struct SignedKeyPackage<'a> {
    version: CmsVersion,
    digest_algorithms: SetOfVec<AlgorithmIdentifierOwned>,
    encap_content_info: EncapsulatedKeyPackage<'a>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    certificates: CertificateSet,
    signer_infos: SignerInfos,
}

/// `ContentInfo { id-signedData, SignedKeyPackage }`.
#[derive(Sequence)]
struct SignedKeyPackageInfo<'a> {
    content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: SignedKeyPackage<'a>,
}

/// `ContentInfo { SignedData }` over the key package, with the signature
/// the CA made over `signed_attrs`. The result holds the plaintext key.
pub fn signed_key_package(
    akp: &[u8],
    signer: &Signer<'_>,
    signed_attrs: SetOfVec<Attribute>,
    signature: Vec<u8>,
) -> Result<Zeroizing<Vec<u8>>, PackageError> {
    let ca = signer
        .chain
        .first()
        .ok_or_else(|| PackageError("the CA has no certificate".into()))?;
    let certificates = signer
        .chain
        .iter()
        .map(|c| CertificateChoices::Certificate(c.clone()))
        .collect::<Vec<_>>();
    let message = SignedKeyPackageInfo {
        content_type: ID_SIGNED_DATA,
        content: SignedKeyPackage {
            // RFC 5652 §5.1: 3 because the eContentType is not id-data.
            version: CmsVersion::V3,
            digest_algorithms: SetOfVec::try_from(vec![signer.digest.clone()])
                .map_err(err("digestAlgorithms"))?,
            encap_content_info: EncapsulatedKeyPackage {
                econtent_type: ID_CT_KP_A_KEY_PACKAGE,
                econtent: OctetStringRef::new(akp).map_err(err("eContent"))?,
            },
            certificates: CertificateSet(
                SetOfVec::try_from(certificates).map_err(err("certificates"))?,
            ),
            signer_infos: SignerInfos(
                SetOfVec::try_from(vec![SignerInfo {
                    version: CmsVersion::V1,
                    sid: SignerIdentifier::IssuerAndSerialNumber(issuer_and_serial(ca)),
                    digest_alg: signer.digest.clone(),
                    signed_attrs: Some(signed_attrs),
                    signature_algorithm: signer.signature_algorithm.clone(),
                    signature: OctetString::new(signature).map_err(err("signature"))?,
                    unsigned_attrs: None,
                }])
                .map_err(err("signerInfos"))?,
            ),
        },
    };
    let len = usize::try_from(message.encoded_len().map_err(err("SignedData"))?)
        .map_err(err("SignedData"))?;
    // Sized up front: a growing Vec would leave unwiped copies behind.
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    message.encode_to_vec(&mut out).map_err(err("SignedData"))?;
    Ok(out)
}

/// Whom the CEK was wrapped for, as the RecipientInfo names them.
pub enum RecipientId<'a> {
    /// The DecryptKeyIdentifier of a pre-shared key.
    Kek(&'a [u8]),
    /// The recipient's certificate (RSA or EC).
    Certificate(&'a Certificate),
}

fn recipient_info(
    id: RecipientId<'_>,
    wrapped: &WrappedCek,
    oaep_params: Option<Any>,
) -> Result<RecipientInfo, PackageError> {
    match (id, wrapped) {
        (RecipientId::Kek(kid), WrappedCek::Kek(key)) => {
            Ok(RecipientInfo::Kekri(KekRecipientInfo {
                version: CmsVersion::V4,
                kek_id: KekIdentifier {
                    kek_identifier: OctetString::new(kid.to_vec()).map_err(err("kekid"))?,
                    date: None,
                    other: None,
                },
                key_enc_alg: aes256_wrap(),
                encrypted_key: OctetString::new(key.clone()).map_err(err("encryptedKey"))?,
            }))
        }
        (RecipientId::Certificate(cert), WrappedCek::RsaOaep(key)) => {
            Ok(RecipientInfo::Ktri(KeyTransRecipientInfo {
                version: CmsVersion::V0,
                rid: RecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(cert)),
                key_enc_alg: AlgorithmIdentifierOwned {
                    oid: ID_RSAES_OAEP,
                    parameters: oaep_params,
                },
                enc_key: OctetString::new(key.clone()).map_err(err("encryptedKey"))?,
            }))
        }
        (RecipientId::Certificate(cert), WrappedCek::EcdhEs(w)) => {
            Ok(RecipientInfo::Kari(KeyAgreeRecipientInfo {
                version: CmsVersion::V3,
                originator: OriginatorIdentifierOrKey::OriginatorKey(OriginatorPublicKey {
                    // RFC 5753 §3.1.1: id-ecPublicKey; the curve is the recipient's.
                    algorithm: AlgorithmIdentifierOwned {
                        oid: ID_EC_PUBLIC_KEY,
                        parameters: None,
                    },
                    public_key: BitString::from_bytes(&w.ephemeral_point)
                        .map_err(err("originator key"))?,
                }),
                ukm: None,
                key_enc_alg: AlgorithmIdentifierOwned {
                    oid: ID_ECDH_SHA256_KDF,
                    parameters: Some(Any::encode_from(&aes256_wrap()).map_err(err("kari"))?),
                },
                recipient_enc_keys: vec![RecipientEncryptedKey {
                    rid: KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(issuer_and_serial(
                        cert,
                    )),
                    enc_key: OctetString::new(w.wrapped_key.clone())
                        .map_err(err("encryptedKey"))?,
                }],
            }))
        }
        _ => Err(PackageError(
            "the wrapped CEK does not fit the recipient (a bug)".into(),
        )),
    }
}

/// `RSAES-OAEP-params` for `hash` (MGF1 with the same hash, empty label).
pub fn oaep_params(hash: kipuka_plugin_api::HashAlg) -> Result<Any, PackageError> {
    use kipuka_plugin_api::HashAlg;
    let params = match hash {
        HashAlg::SHA256 => pkcs1::RsaOaepParamsRef::new::<rsa::sha2::Sha256>(),
        HashAlg::SHA384 => pkcs1::RsaOaepParamsRef::new::<rsa::sha2::Sha384>(),
        other => return Err(PackageError(format!("no OAEP parameters for {other}"))),
    };
    Any::encode_from(&params).map_err(err("RSAES-OAEP-params"))
}

/// Encrypts `signed` (the ContentInfo of the SignedData) under `cek` and
/// wraps it in the CMS content type `cipher` names.
pub fn envelope(
    signed: &[u8],
    cek: &crypto::Aes256Key,
    cipher: ContentEncryption,
    recipient: RecipientId<'_>,
    wrapped: &WrappedCek,
    oaep: Option<Any>,
) -> Result<Vec<u8>, PackageError> {
    let rid = recipient_info(recipient, wrapped, oaep)?;
    let recip_infos = RecipientInfos(SetOfVec::try_from(vec![rid]).map_err(err("recipientInfos"))?);
    let random = |what: &str| -> Result<[u8; 16], PackageError> {
        crate::hsm::keygen::random_bytes::<16>().map_err(|e| PackageError(format!("{what}: {e}")))
    };
    let (content_type, content) = match cipher {
        ContentEncryption::Aes256Cbc => {
            let iv = random("IV")?;
            let ciphertext = crypto::cbc_encrypt(cek, &iv, signed);
            // RFC 5652 §6.1: 0 only when every recipient is a version-0 ktri.
            let version = if recip_infos
                .0
                .iter()
                .all(|r| matches!(r, RecipientInfo::Ktri(k) if k.version == CmsVersion::V0))
            {
                CmsVersion::V0
            } else {
                CmsVersion::V2
            };
            let enveloped = EnvelopedData {
                version,
                originator_info: None,
                recip_infos,
                encrypted_content: EncryptedContentInfo {
                    content_type: ID_SIGNED_DATA,
                    content_enc_alg: AlgorithmIdentifierOwned {
                        oid: ID_AES256_CBC,
                        parameters: Some(
                            Any::encode_from(&OctetString::new(iv.to_vec()).map_err(err("IV"))?)
                                .map_err(err("IV"))?,
                        ),
                    },
                    encrypted_content: Some(
                        OctetString::new(ciphertext).map_err(err("encryptedContent"))?,
                    ),
                },
                unprotected_attrs: None,
            };
            (
                ID_ENVELOPED_DATA,
                Any::encode_from(&enveloped).map_err(err("EnvelopedData"))?,
            )
        }
        ContentEncryption::Aes256Gcm => {
            let nonce: [u8; 12] = random("nonce")?[..12].try_into().expect("12 of 16 bytes");
            // No authAttrs, so no additional authenticated data (RFC 5083 §2.2).
            let (ciphertext, tag) = crypto::gcm_encrypt(cek, &nonce, signed, &[])
                .map_err(|e| PackageError(e.to_string()))?;
            let params = GcmParameters {
                nonce: OctetString::new(nonce.to_vec()).map_err(err("nonce"))?,
                icv_len: 16,
            };
            let auth = AuthEnvelopedData {
                version: CmsVersion::V0,
                originator_info: None,
                recip_infos,
                auth_encrypted_content_info: EncryptedContentInfo {
                    content_type: ID_SIGNED_DATA,
                    content_enc_alg: AlgorithmIdentifierOwned {
                        oid: ID_AES256_GCM,
                        parameters: Some(Any::encode_from(&params).map_err(err("GCM"))?),
                    },
                    encrypted_content: Some(
                        OctetString::new(ciphertext).map_err(err("encryptedContent"))?,
                    ),
                },
                auth_attrs: None,
                mac: OctetString::new(tag.to_vec()).map_err(err("mac"))?,
                unauth_attrs: None,
            };
            (
                ID_CT_AUTH_ENVELOPED_DATA,
                Any::encode_from(&auth).map_err(err("AuthEnvelopedData"))?,
            )
        }
    };
    ContentInfo {
        content_type,
        content,
    }
    .to_der()
    .map_err(err("ContentInfo"))
}

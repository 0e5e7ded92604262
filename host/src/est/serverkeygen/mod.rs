//! `POST /serverkeygen` (RFC 7030 §4.4): the server makes the client's key
//! pair in the HSM, certifies it, and returns the private key encrypted for
//! that one client together with the certificate.
//!
//! Order of work, so that nothing is lost or handed out half-made: decode
//! and check the CSR → decide how the key travels (refusing what the CA or
//! the HSM cannot do before any key exists) → generate and wrap on one HSM
//! session (every object destroyed before it returns) → sign and encrypt the
//! key package → issue the certificate and commit it to the store → answer.
//! A failure before the last step issues nothing; the private key is never
//! stored or logged.

pub mod attributes;
pub mod multipart;
pub mod package;

use std::sync::Arc;

use bytes::Bytes;

use der::{Decode, Encode};
use kipuka_plugin_api::{Curve, HashAlg};
use spki::AlgorithmIdentifierOwned;
use x509_cert::{ext::pkix::SubjectKeyIdentifier, Certificate};
use zeroize::Zeroizing;

use crate::{
    ca::csr::verify_csr,
    config::{HashChoice, KeySpec},
    crypto::Aes256Key,
    hsm::{
        keygen::{
            generate_and_wrap, generate_exported, random_bytes, CekRecipient, KeyPairSpec,
            WrappedCek,
        },
        HsmError, Pkcs11Uri,
    },
    tls::ConnInfo,
};

pub use attributes::{parse_keygen_attributes, AttributeError, KeyProtection};

use super::{
    auth::{client_certificate, Principal},
    error::EstError,
    service::{CaEndpoint, EstService},
    wire::{certs_only, decode_body, CONTENT_TYPE_CERTS_ONLY},
};

/// `Content-Type` of an encrypted private-key part.
pub const CONTENT_TYPE_SERVER_GENERATED_KEY: &str =
    "application/pkcs7-mime; smime-type=server-generated-key";
/// `Content-Type` of a private-key part protected by TLS alone.
pub const CONTENT_TYPE_PKCS8: &str = "application/pkcs8";

/// A successful `/serverkeygen` answer, before the multipart encoding.
pub struct KeygenReply {
    /// The private-key part's media type.
    pub key_content_type: &'static str,
    /// The private-key part (DER): CMS when encrypted, PKCS#8 when not.
    pub key_der: Zeroizing<Vec<u8>>,
    /// The certificate part's media type.
    pub cert_content_type: &'static str,
    /// The certificate part: certs-only PKCS#7, as `/simpleenroll` answers.
    pub cert_der: Vec<u8>,
    /// The requested names the policy left out (rewrite mode).
    pub dropped: Vec<String>,
}

/// How the key travels to this client.
enum Delivery {
    /// `application/pkcs8` over TLS.
    Clear,
    /// Encrypted under a CEK wrapped for a recipient.
    Encrypted(Box<Encrypted>),
}

struct Encrypted {
    recipient: CekRecipient,
    /// The KEK identifier, or the recipient's certificate.
    named: Named,
}

enum Named {
    Kek(Vec<u8>),
    Certificate(Box<Certificate>),
}

fn bad(e: impl std::fmt::Display) -> EstError {
    EstError::BadRequest(e.to_string())
}

fn internal(e: impl std::fmt::Display) -> EstError {
    EstError::Internal(e.to_string())
}

/// HSM failures as the client sees them: what the HSM cannot do is 501 (this
/// server cannot serve that request); trouble reaching it is 503.
fn hsm_error(ca: &CaEndpoint, e: HsmError) -> EstError {
    match e {
        HsmError::Unsupported { .. } => {
            EstError::NotImplemented(format!("CA {}: serverkeygen: {e}", ca.config.id))
        }
        e if e.is_transient() => EstError::Unavailable(format!("CA {}: {e}", ca.config.id)),
        e => EstError::Internal(format!("CA {}: serverkeygen: {e}", ca.config.id)),
    }
}

fn key_pair_spec(key: &KeySpec) -> Result<KeyPairSpec, EstError> {
    match key {
        KeySpec::Rsa(bits) => Ok(KeyPairSpec::Rsa(*bits)),
        KeySpec::Ec(name) => match name.as_str() {
            "P-256" => Ok(KeyPairSpec::Ec(Curve::P256)),
            "P-384" => Ok(KeyPairSpec::Ec(Curve::P384)),
            "P-521" => Ok(KeyPairSpec::Ec(Curve::P521)),
            other => Err(bad(format!(
                "serverkeygen cannot make keys on curve {other}"
            ))),
        },
        KeySpec::MlDsa(_) => Err(EstError::NotImplemented(
            "serverkeygen makes RSA and EC keys; ask for ML-DSA keys with simpleenroll".into(),
        )),
    }
}

/// The recipient's public key as the HSM wraps to it.
fn recipient_of(cert: &Certificate, oaep: HashChoice) -> Result<CekRecipient, EstError> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    let key_bytes = spki.subject_public_key.as_bytes().ok_or_else(|| {
        bad("the recipient certificate's public key is not a whole number of bytes")
    })?;
    match spki.algorithm.oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => {
            let key = pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(key_bytes)
                .map_err(|e| bad(format!("the recipient's RSA public key: {e}")))?;
            Ok(CekRecipient::RsaOaep {
                modulus: key.modulus.as_bytes().to_vec(),
                exponent: key.public_exponent.as_bytes().to_vec(),
                hash: match oaep {
                    HashChoice::Sha384 => HashAlg::SHA384,
                    // Sha512 is refused by the configuration check.
                    _ => HashAlg::SHA256,
                },
            })
        }
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<const_oid::ObjectIdentifier>().ok())
                .and_then(|oid| match oid.to_string().as_str() {
                    "1.2.840.10045.3.1.7" => Some(Curve::P256),
                    "1.3.132.0.34" => Some(Curve::P384),
                    "1.3.132.0.35" => Some(Curve::P521),
                    _ => None,
                })
                .ok_or_else(|| bad("the recipient's EC key is not on P-256, P-384 or P-521"))?;
            Ok(CekRecipient::EcdhEs {
                curve,
                point: key_bytes.to_vec(),
                shared_info: package::ecdh_shared_info().map_err(internal)?,
            })
        }
        other => Err(bad(format!(
            "the recipient certificate's key ({other}) can neither receive RSA-OAEP nor \
             ECDH-ES; use an RSA or EC certificate, or a DecryptKeyIdentifier"
        ))),
    }
}

fn subject_key_id(cert: &Certificate) -> Option<Vec<u8>> {
    cert.tbs_certificate()
        .get_extension::<SubjectKeyIdentifier>()
        .ok()
        .flatten()
        .map(|(_, ski)| ski.0.as_bytes().to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl EstService {
    /// Decides how the key travels, from the CSR's attributes and the CA's
    /// configuration; refuses before any key is made.
    async fn delivery(
        &self,
        ca: &CaEndpoint,
        protection: KeyProtection,
        conn: &ConnInfo,
    ) -> Result<Delivery, EstError> {
        let skg = &ca.config.serverkeygen;
        match protection {
            KeyProtection::TlsOnly if skg.allow_unencrypted => Ok(Delivery::Clear),
            KeyProtection::TlsOnly => Err(bad(format!(
                "CA {} delivers server-generated keys encrypted only: add a \
                 DecryptKeyIdentifier (a pre-shared key) or an AsymmetricDecryptKeyIdentifier \
                 (your certificate's subject key identifier) attribute to the CSR",
                ca.config.id
            ))),
            KeyProtection::Symmetric(id) => {
                let kek = skg
                    .kek
                    .iter()
                    .find(|k| k.id_bytes().ok().as_deref() == Some(id.as_slice()))
                    .ok_or_else(|| {
                        bad(format!(
                            "DecryptKeyIdentifier {} names no key-encryption key of CA {}",
                            hex(&id),
                            ca.config.id
                        ))
                    })?;
                let uri: Pkcs11Uri = kek.key.parse().map_err(internal)?;
                Ok(Delivery::Encrypted(Box::new(Encrypted {
                    recipient: CekRecipient::Kek(uri),
                    named: Named::Kek(id),
                })))
            }
            KeyProtection::Asymmetric(ski) => {
                let cert = self.recipient_certificate(&ski, conn)?.ok_or_else(|| {
                    bad(format!(
                        "AsymmetricDecryptKeyIdentifier {} matches neither the TLS client \
                         certificate nor a certificate this server issued",
                        hex(&ski)
                    ))
                })?;
                Ok(Delivery::Encrypted(Box::new(Encrypted {
                    recipient: recipient_of(&cert, skg.oaep_hash)?,
                    named: Named::Certificate(Box::new(cert)),
                })))
            }
        }
    }

    /// The certificate whose subjectKeyIdentifier is `ski`: the TLS client
    /// certificate if it is the one, else one recorded in the store.
    fn recipient_certificate(
        &self,
        ski: &[u8],
        conn: &ConnInfo,
    ) -> Result<Option<Certificate>, EstError> {
        if let Some(cert) = client_certificate(conn)? {
            if subject_key_id(&cert).as_deref() == Some(ski) {
                return Ok(Some((*cert).clone()));
            }
        }
        match self.store.find_by_subject_key_id(ski) {
            Ok(Some(der)) => Certificate::from_der(&der)
                .map(Some)
                .map_err(|e| internal(format!("a stored certificate does not decode: {e}"))),
            Ok(None) => Ok(None),
            Err(e) => Err(EstError::Unavailable(format!("certificate store: {e}"))),
        }
    }

    /// `POST /serverkeygen`, after authentication.
    pub async fn serverkeygen(
        &self,
        ca: &CaEndpoint,
        principal: &Principal,
        conn: &ConnInfo,
        body: &[u8],
    ) -> Result<KeygenReply, EstError> {
        if !ca.config.serverkeygen.enabled {
            return Err(EstError::NotImplemented(format!(
                "serverkeygen is disabled for CA {}",
                ca.config.id
            )));
        }
        let pool = self.hsm.clone().ok_or_else(|| {
            EstError::NotImplemented("serverkeygen needs an HSM, and none is configured".into())
        })?;
        let der = decode_body(body, self.max_body).map_err(bad)?;
        let csr = tokio::task::spawn_blocking(move || verify_csr(&der))
            .await
            .map_err(|e| internal(format!("CSR check failed: {e}")))?
            .map_err(|e| bad(format!("CSR: {e}")))?;
        let protection = parse_keygen_attributes(&csr.der).map_err(bad)?;
        // Names first: a refused request costs no key generation.
        let names = ca
            .policy
            .decide(&csr, &principal.requester(), None)
            .map_err(super::service::policy_error)?;
        let spec = key_pair_spec(&csr.key)?;
        let delivery = self.delivery(ca, protection, conn).await?;

        let ctx = pool.context().clone();
        let (key_content_type, key_der, spki_der) = match delivery {
            Delivery::Clear => {
                let key = pool
                    .run(move |session| generate_exported(&ctx, session, spec))
                    .await
                    .map_err(|e| hsm_error(ca, e))?;
                (CONTENT_TYPE_PKCS8, key.pkcs8, key.spki_der)
            }
            Delivery::Encrypted(encrypted) => {
                let Encrypted { recipient, named } = *encrypted;
                let cek: Arc<Zeroizing<Aes256Key>> =
                    Arc::new(Zeroizing::new(random_bytes().map_err(internal)?));
                let cek_for_op = cek.clone();
                let generated = pool
                    .run(move |session| {
                        generate_and_wrap(&ctx, session, spec, &cek_for_op, &recipient)
                    })
                    .await
                    .map_err(|e| hsm_error(ca, e))?;
                let envelope = self
                    .sign_and_envelope(
                        ca,
                        &generated.key.pkcs8,
                        &cek,
                        &named,
                        &generated.wrapped_cek,
                    )
                    .await?;
                (
                    CONTENT_TYPE_SERVER_GENERATED_KEY,
                    envelope,
                    generated.key.spki_der,
                )
            }
        };

        // What can still fail is the CA's profile (403) and the store (503);
        // either way no certificate is handed out and the key is already gone
        // from the token. The certificate is committed before the answer.
        let mut issued_for = csr;
        issued_for.spki_der = spki_der;
        let cert = self
            .issue_recorded(ca, &issued_for, &names, principal, "serverkeygen")
            .await?;
        Ok(KeygenReply {
            key_content_type,
            key_der,
            cert_content_type: CONTENT_TYPE_CERTS_ONLY,
            cert_der: certs_only(&[cert]).map_err(internal)?,
            dropped: names.dropped().to_vec(),
        })
    }

    /// The key package signed by the CA, then encrypted under `cek`.
    async fn sign_and_envelope(
        &self,
        ca: &CaEndpoint,
        pkcs8: &[u8],
        cek: &Aes256Key,
        named: &Named,
        wrapped: &WrappedCek,
    ) -> Result<Zeroizing<Vec<u8>>, EstError> {
        let akp = package::asymmetric_key_package(pkcs8).map_err(internal)?;
        let digest_alg = ca.issuer.message_digest();
        let signed_attrs =
            package::signed_attributes(&digest_alg.digest(&akp)).map_err(internal)?;
        let to_sign: Bytes = signed_attrs.to_der().map_err(internal)?.into();
        let signature = ca.issuer.sign_message(to_sign).await.map_err(|e| {
            if e.is_transient() {
                EstError::Unavailable(format!("CA {}: {e}", ca.config.id))
            } else {
                EstError::Internal(format!("CA {}: {e}", ca.config.id))
            }
        })?;
        let signer = package::Signer {
            chain: ca.issuer.chain(),
            digest: AlgorithmIdentifierOwned {
                oid: digest_alg.oid(),
                parameters: None,
            },
            signature_algorithm: ca.issuer.signature_algorithm(),
        };
        let signed = package::signed_key_package(&akp, &signer, signed_attrs, signature)
            .map_err(internal)?;
        drop(akp);
        let (recipient, oaep) = match named {
            Named::Kek(id) => (package::RecipientId::Kek(id), None),
            Named::Certificate(cert) => {
                let oaep = match wrapped {
                    WrappedCek::RsaOaep(_) => Some(
                        package::oaep_params(match ca.config.serverkeygen.oaep_hash {
                            HashChoice::Sha384 => HashAlg::SHA384,
                            _ => HashAlg::SHA256,
                        })
                        .map_err(internal)?,
                    ),
                    _ => None,
                };
                (package::RecipientId::Certificate(cert), oaep)
            }
        };
        package::envelope(
            &signed,
            cek,
            ca.config.serverkeygen.content_encryption,
            recipient,
            wrapped,
            oaep,
        )
        .map(Zeroizing::new)
        .map_err(internal)
    }
}

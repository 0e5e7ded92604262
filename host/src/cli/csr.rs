//! `kipuka csr`: the client's side of `/serverkeygen`. A CSR carrying the
//! RFC 7030 §4.4.1 key-protection attribute — DecryptKeyIdentifier or
//! AsymmetricDecryptKeyIdentifier, each an OCTET STRING — which `openssl req`
//! cannot write (its attributes are text strings). The CSR is signed with a
//! key file the client made with OpenSSL (PKCS#8 PEM: P-256, P-384 or RSA);
//! the key only says which key type the server should generate.

use std::{path::Path, process::ExitCode, str::FromStr};

use der::{
    asn1::{Any, BitString, OctetString, SetOfVec},
    Encode,
};
use pkcs8::DecodePrivateKey;
use spki::{AlgorithmIdentifierOwned, EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::{
    attr::Attribute,
    name::Name,
    request::{CertReq, CertReqInfo, Version},
};
use zeroize::Zeroizing;

use crate::est::serverkeygen::attributes::{ID_AA_ASYMM_DECRYPT_KEY_ID, ID_AA_DECRYPT_KEY_ID};

/// Which attribute to add.
#[derive(Debug, Clone)]
pub enum Protection {
    /// None: the key travels under TLS alone (if the CA allows it).
    None,
    /// DecryptKeyIdentifier (a pre-shared key's identifier).
    Symmetric(Vec<u8>),
    /// AsymmetricDecryptKeyIdentifier (the client certificate's subject key identifier).
    Asymmetric(Vec<u8>),
}

/// Parses hex (colons allowed, as `openssl x509 -ext subjectKeyIdentifier` prints it).
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return Err(format!("{s:?} is not an even number of hex digits"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| format!("{s:?} is not hex")))
        .collect()
}

/// A signing key read from a PKCS#8 PEM file.
enum ClientKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(Box<rsa::PrivateKey>),
}

impl ClientKey {
    fn read(pem: &str) -> Result<Self, String> {
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(ClientKey::P256(k));
        }
        if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(ClientKey::P384(k));
        }
        rsa::PrivateKey::from_pkcs8_pem(pem)
            .map(|k| ClientKey::Rsa(Box::new(k)))
            .map_err(|_| {
                "the key is not an unencrypted PKCS#8 PEM P-256, P-384 or RSA key \
                 (openssl genpkey writes one)"
                    .to_string()
            })
    }

    fn spki(&self) -> Result<SubjectPublicKeyInfoOwned, String> {
        let der = match self {
            ClientKey::P256(k) => k.verifying_key().to_public_key_der(),
            ClientKey::P384(k) => k.verifying_key().to_public_key_der(),
            ClientKey::Rsa(k) => k.to_public_key().to_public_key_der(),
        }
        .map_err(|e| e.to_string())?;
        der::Decode::from_der(der.as_bytes()).map_err(|e: der::Error| e.to_string())
    }

    /// (signature algorithm, signature) over `message`.
    fn sign(&self, message: &[u8]) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), String> {
        use signature::Signer;
        let oid = |s| const_oid::ObjectIdentifier::new_unwrap(s);
        Ok(match self {
            ClientKey::P256(k) => {
                let sig: p256::ecdsa::DerSignature = k.sign(message);
                (
                    AlgorithmIdentifierOwned {
                        oid: oid("1.2.840.10045.4.3.2"),
                        parameters: None,
                    },
                    sig.to_bytes().to_vec(),
                )
            }
            ClientKey::P384(k) => {
                let sig: p384::ecdsa::DerSignature = k.sign(message);
                (
                    AlgorithmIdentifierOwned {
                        oid: oid("1.2.840.10045.4.3.3"),
                        parameters: None,
                    },
                    sig.to_bytes().to_vec(),
                )
            }
            ClientKey::Rsa(k) => {
                let key = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new((**k).clone());
                let sig: rsa::pkcs1v15::Signature = key.sign(message);
                (
                    AlgorithmIdentifierOwned {
                        oid: oid("1.2.840.113549.1.1.11"),
                        parameters: Some(Any::null()),
                    },
                    signature::SignatureEncoding::to_vec(&sig),
                )
            }
        })
    }
}

/// The CSR (DER) for `key_pem` with `subject` (RFC 4514, `CN=device1,O=Example`)
/// and the `protection` attribute.
pub fn build_csr(key_pem: &str, subject: &str, protection: &Protection) -> Result<Vec<u8>, String> {
    let key = ClientKey::read(key_pem)?;
    let subject = Name::from_str(subject).map_err(|e| format!("subject {subject:?}: {e}"))?;
    let mut attributes = SetOfVec::new();
    let attr = match protection {
        Protection::None => None,
        Protection::Symmetric(id) => Some((ID_AA_DECRYPT_KEY_ID, id)),
        Protection::Asymmetric(id) => Some((ID_AA_ASYMM_DECRYPT_KEY_ID, id)),
    };
    if let Some((oid, id)) = attr {
        let value = OctetString::new(id.clone())
            .and_then(|o| Any::encode_from(&o))
            .map_err(|e| e.to_string())?;
        attributes
            .insert(Attribute {
                oid,
                values: SetOfVec::try_from(vec![value]).map_err(|e| e.to_string())?,
            })
            .map_err(|e| e.to_string())?;
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key: key.spki()?,
        attributes,
    };
    let (algorithm, signature) = key.sign(&info.to_der().map_err(|e| e.to_string())?)?;
    CertReq {
        info,
        algorithm,
        signature: BitString::from_bytes(&signature).map_err(|e| e.to_string())?,
    }
    .to_der()
    .map_err(|e| e.to_string())
}

/// `kipuka csr`: prints the CSR as base64 (what EST POSTs).
pub fn csr_command(key: &Path, subject: &str, protection: &Protection) -> ExitCode {
    let result = std::fs::read_to_string(key)
        .map(Zeroizing::new)
        .map_err(|e| format!("cannot read {}: {e}", key.display()))
        .and_then(|pem| build_csr(&pem, subject, protection));
    match result {
        Ok(der) => {
            println!("{}", crate::est::wire::base64_lines(&der).trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kipuka csr: {e}");
            ExitCode::FAILURE
        }
    }
}

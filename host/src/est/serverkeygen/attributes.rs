//! What a `/serverkeygen` CSR asks for beyond an enrollment: how the private
//! key is to be protected in transit (RFC 7030 §4.4.1.1 and §4.4.1.2).

use const_oid::ObjectIdentifier;
use der::{asn1::OctetString, Decode};
use x509_cert::request::CertReq;

/// `id-aa-decryptKeyID` (RFC 7030 §4.4.1.1).
pub const ID_AA_DECRYPT_KEY_ID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.37");
/// `id-aa-asymmDecryptKeyID` (RFC 7030 §4.4.1.2).
pub const ID_AA_ASYMM_DECRYPT_KEY_ID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.54");

/// Identifiers are key names, not data: anything longer is hostile.
const MAX_IDENTIFIER_BYTES: usize = 256;

/// How the client wants its private key protected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyProtection {
    /// No attribute: TLS only (`application/pkcs8`), if the CA allows it.
    TlsOnly,
    /// `DecryptKeyIdentifier`: a pre-shared symmetric key (KEKRecipientInfo).
    Symmetric(Vec<u8>),
    /// `AsymmetricDecryptKeyIdentifier`: the subject key identifier of the
    /// client's certificate (KeyTransRecipientInfo or KeyAgreeRecipientInfo).
    Asymmetric(Vec<u8>),
}

/// A malformed protection request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttributeError {
    /// Not a CSR.
    #[error("the CSR does not decode: {0}")]
    Csr(String),
    /// The attribute is not one OCTET STRING of 1..=256 bytes.
    #[error("{name}: {reason}")]
    Malformed {
        /// Attribute name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Both ways at once, or one of them twice.
    #[error("the CSR carries {0}; send exactly one of DecryptKeyIdentifier and AsymmetricDecryptKeyIdentifier")]
    Ambiguous(String),
}

/// Reads the protection attributes of the CSR `csr_der`.
pub fn parse_keygen_attributes(csr_der: &[u8]) -> Result<KeyProtection, AttributeError> {
    let req = CertReq::from_der(csr_der).map_err(|e| AttributeError::Csr(e.to_string()))?;
    let mut found = Vec::new();
    for attr in req.info.attributes.iter() {
        let (name, symmetric) = if attr.oid == ID_AA_DECRYPT_KEY_ID {
            ("DecryptKeyIdentifier", true)
        } else if attr.oid == ID_AA_ASYMM_DECRYPT_KEY_ID {
            ("AsymmetricDecryptKeyIdentifier", false)
        } else {
            continue;
        };
        let malformed = |reason: String| AttributeError::Malformed { name, reason };
        let [value] = attr.values.as_slice() else {
            return Err(malformed(format!(
                "{} values; exactly one is allowed",
                attr.values.len()
            )));
        };
        let id = value
            .decode_as::<OctetString>()
            .map_err(|e| malformed(format!("not an OCTET STRING: {e}")))?
            .into_bytes()
            .into_vec();
        if id.is_empty() || id.len() > MAX_IDENTIFIER_BYTES {
            return Err(malformed(format!(
                "{} bytes; 1 to {MAX_IDENTIFIER_BYTES} are allowed",
                id.len()
            )));
        }
        found.push((name, symmetric, id));
    }
    match found.as_slice() {
        [] => Ok(KeyProtection::TlsOnly),
        [(_, true, id)] => Ok(KeyProtection::Symmetric(id.clone())),
        [(_, false, id)] => Ok(KeyProtection::Asymmetric(id.clone())),
        many => Err(AttributeError::Ambiguous(
            many.iter()
                .map(|(n, _, _)| *n)
                .collect::<Vec<_>>()
                .join(" and "),
        )),
    }
}

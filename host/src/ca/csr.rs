//! Decoding a PKCS#10 certification request (RFC 2986) and checking its
//! proof of possession: the request is signed by the private key of the
//! public key it carries.
//!
//! Every input is client data: sizes are bounded first (64 KiB, 100
//! requested extensions), then the DER is decoded strictly (the `der` crate
//! rejects BER, indefinite lengths and trailing data), and every failure is
//! a [`CsrError`] whose message is fit for an HTTP 400 body. Nothing here
//! panics on any input.
//!
//! Accepted keys: RSA 2048..=8192 bits (`rsaEncryption`), EC on P-256,
//! P-384, P-521 (named curves), ML-DSA-44/65/87 (RFC 9881). Accepted
//! signatures: RSASSA-PKCS1-v1_5 and RSASSA-PSS (MGF1 with the same hash)
//! with SHA-256/384/512, ECDSA with SHA-256/384/512 on any of the three
//! curves, pure ML-DSA with an empty context.

use const_oid::db::{rfc2985, rfc5280, rfc5912};
use der::{
    asn1::{AnyRef, BitStringRef},
    referenced::OwnedToRef,
    Decode, Encode, Sequence, SliceReader, Tag, Tagged,
};
use spki::AlgorithmIdentifierRef;
use x509_cert::{
    ext::{
        pkix::{name::DirectoryString, name::GeneralName, SubjectAltName},
        Extension,
    },
    name::Name,
    request::CertReqInfo,
};

use super::algorithms::{describe_oid, PublicKey, SignatureAlgorithm};
use crate::config::KeySpec;

/// Largest CSR accepted, in bytes of DER.
pub const MAX_CSR_BYTES: usize = 64 * 1024;
/// Most extensions a CSR may request.
pub const MAX_REQUESTED_EXTENSIONS: usize = 100;

/// Why a CSR was refused. The messages are written for the client (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Larger than [`MAX_CSR_BYTES`].
    #[error("the CSR is {size} bytes long; at most {max} bytes are accepted")]
    TooLarge {
        /// Size received.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not a DER CertificationRequest.
    #[error("the CSR is not a valid DER PKCS#10 CertificationRequest: {0}")]
    Der(String),
    /// Bytes after the CertificationRequest.
    #[error("{extra} unexpected bytes follow the CSR's DER encoding")]
    TrailingData {
        /// How many.
        extra: usize,
    },
    /// A version other than v1 (0).
    #[error("CSR version {0} is not supported: only version 1 (encoded as 0) exists")]
    UnsupportedVersion(String),
    /// A key kipuka does not certify.
    #[error("unsupported public key in the CSR: {0}")]
    UnsupportedKey(String),
    /// A signature algorithm kipuka does not verify.
    #[error("unsupported CSR signature algorithm: {0}")]
    UnsupportedSignature(String),
    /// The signature algorithm does not fit the key.
    #[error("the CSR is signed with {signature}, which its {key} key cannot produce")]
    AlgorithmMismatch {
        /// The signature algorithm.
        signature: String,
        /// The key, as a key spec (`rsa:2048`, `ec:P-256`, `ml-dsa-65`).
        key: String,
    },
    /// More than [`MAX_REQUESTED_EXTENSIONS`].
    #[error("the CSR requests {count} extensions; at most {max} are accepted")]
    TooManyExtensions {
        /// Extensions requested.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The same extension twice.
    #[error("the CSR requests extension {0} more than once")]
    DuplicateExtension(String),
    /// A malformed attribute or requested extension.
    #[error("CSR attribute {attribute}: {reason}")]
    BadAttribute {
        /// The attribute (or extension) name.
        attribute: String,
        /// What is wrong.
        reason: String,
    },
    /// Proof of possession failed.
    #[error(
        "the CSR signature does not verify with the CSR's public key (proof of possession failed)"
    )]
    BadSignature,
}

/// A CSR whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    /// The CSR as received (DER).
    pub der: Vec<u8>,
    /// The requested subject (may be empty).
    pub subject: Name,
    /// The DER SubjectPublicKeyInfo, as received.
    pub spki_der: Vec<u8>,
    /// Key type and size.
    pub key: KeySpec,
    /// The signature algorithm the client used.
    pub signature_algorithm: SignatureAlgorithm,
    /// subjectAltName entries of the extensionRequest attribute.
    pub sans: Vec<GeneralName>,
    /// The challengePassword attribute (RFC 7030 §3.5 channel binding).
    pub challenge_password: Option<String>,
    /// Every extension of the extensionRequest attribute (subjectAltName included).
    pub requested_extensions: Vec<Extension>,
}

/// The outer structure, with the signed part kept as it was received.
#[derive(Sequence)]
struct RawCertReq<'a> {
    info: AnyRef<'a>,
    algorithm: AlgorithmIdentifierRef<'a>,
    signature: BitStringRef<'a>,
}

fn der_err(e: der::Error) -> CsrError {
    CsrError::Der(e.to_string())
}

/// Decodes `der` (a DER CertificationRequest, nothing before or after it),
/// checks its key and signature algorithm and verifies its signature.
pub fn verify_csr(der: &[u8]) -> Result<VerifiedCsr, CsrError> {
    if der.is_empty() {
        return Err(CsrError::Der("empty input".into()));
    }
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge {
            size: der.len(),
            max: MAX_CSR_BYTES,
        });
    }
    let (raw, rest) = RawCertReq::from_der_partial(der).map_err(der_err)?;
    if !rest.is_empty() {
        return Err(CsrError::TrailingData { extra: rest.len() });
    }
    if raw.info.tag() != Tag::Sequence {
        return Err(CsrError::Der(format!(
            "certificationRequestInfo is a {}, not a SEQUENCE",
            raw.info.tag()
        )));
    }
    check_version(raw.info)?;
    let tbs = raw.info.to_der().map_err(der_err)?;
    let info = CertReqInfo::from_der(&tbs).map_err(der_err)?;

    let spki_der = info.public_key.to_der().map_err(der_err)?;
    let key = PublicKey::from_spki(&info.public_key.owned_to_ref())?;
    let signature_algorithm = SignatureAlgorithm::parse(&raw.algorithm)?;
    let signature = raw
        .signature
        .as_bytes()
        .ok_or_else(|| CsrError::Der("the signature BIT STRING has unused bits".into()))?;
    // Structure first (cheap, bounded, precise errors), then the signature.
    let attrs = read_attributes(&info)?;
    key.verify(&signature_algorithm, &tbs, signature)?;

    Ok(VerifiedCsr {
        der: der.to_vec(),
        subject: info.subject,
        spki_der,
        key: key.key_spec(),
        signature_algorithm,
        sans: attrs.sans,
        challenge_password: attrs.challenge_password,
        requested_extensions: attrs.extensions,
    })
}

/// The version must be INTEGER 0: says which version it is otherwise,
/// rather than a generic decoding error.
fn check_version(info: AnyRef<'_>) -> Result<(), CsrError> {
    let mut reader = SliceReader::new(info.value()).map_err(der_err)?;
    let version = der::asn1::IntRef::decode(&mut reader)
        .map_err(|e| CsrError::Der(format!("CSR version: {e}")))?;
    match version.as_bytes() {
        [0] => Ok(()),
        [v] => Err(CsrError::UnsupportedVersion(format!(
            "{}",
            i8::from_ne_bytes([*v])
        ))),
        _ => Err(CsrError::UnsupportedVersion(
            "(a multi-byte integer)".into(),
        )),
    }
}

#[derive(Default)]
struct Attrs {
    sans: Vec<GeneralName>,
    challenge_password: Option<String>,
    extensions: Vec<Extension>,
}

fn single_value<'a>(
    attr: &'a x509_cert::attr::Attribute,
    name: &str,
) -> Result<&'a der::Any, CsrError> {
    match attr.values.as_slice() {
        [one] => Ok(one),
        values => Err(CsrError::BadAttribute {
            attribute: name.into(),
            reason: format!("has {} values; exactly one is allowed", values.len()),
        }),
    }
}

fn read_attributes(info: &CertReqInfo) -> Result<Attrs, CsrError> {
    let mut out = Attrs::default();
    let mut seen_ext_req = false;
    for attr in info.attributes.iter() {
        if attr.oid == rfc5912::ID_EXTENSION_REQ {
            let name = "extensionRequest";
            if std::mem::replace(&mut seen_ext_req, true) {
                return Err(CsrError::BadAttribute {
                    attribute: name.into(),
                    reason: "appears more than once".into(),
                });
            }
            let value = single_value(attr, name)?;
            out.extensions = read_extensions(value)?;
        } else if attr.oid == rfc2985::PKCS_9_AT_CHALLENGE_PASSWORD {
            let name = "challengePassword";
            if out.challenge_password.is_some() {
                return Err(CsrError::BadAttribute {
                    attribute: name.into(),
                    reason: "appears more than once".into(),
                });
            }
            let value = single_value(attr, name)?;
            let s = DirectoryString::try_from(value).map_err(|e| CsrError::BadAttribute {
                attribute: name.into(),
                reason: format!("not a DirectoryString: {e}"),
            })?;
            out.challenge_password = Some(String::from(s));
        }
        // Other attributes (unstructuredName, Microsoft's, ...) carry
        // nothing kipuka uses: ignored.
    }
    if let Some(ext) = out
        .extensions
        .iter()
        .find(|e| e.extn_id == rfc5280::ID_CE_SUBJECT_ALT_NAME)
    {
        let bad = |reason: String| CsrError::BadAttribute {
            attribute: "extensionRequest subjectAltName".into(),
            reason,
        };
        let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
            .map_err(|e| bad(format!("malformed: {e}")))?;
        if san.0.is_empty() {
            return Err(bad("is empty (it must hold at least one name)".into()));
        }
        out.sans = san.0;
    }
    Ok(out)
}

fn read_extensions(value: &der::Any) -> Result<Vec<Extension>, CsrError> {
    let bad = |reason: String| CsrError::BadAttribute {
        attribute: "extensionRequest".into(),
        reason,
    };
    if value.tag() != Tag::Sequence {
        return Err(bad(format!(
            "is a {}, not a SEQUENCE OF Extension",
            value.tag()
        )));
    }
    // Count before decoding each one: a flood of extensions is refused cheaply.
    let mut reader = SliceReader::new(value.value()).map_err(der_err)?;
    let mut count = 0usize;
    while !der::Reader::is_finished(&reader) {
        der::asn1::AnyRef::decode(&mut reader).map_err(|e| bad(format!("malformed: {e}")))?;
        count += 1;
        if count > MAX_REQUESTED_EXTENSIONS {
            let mut total = count;
            while !der::Reader::is_finished(&reader) {
                if der::asn1::AnyRef::decode(&mut reader).is_err() {
                    break;
                }
                total += 1;
            }
            return Err(CsrError::TooManyExtensions {
                count: total,
                max: MAX_REQUESTED_EXTENSIONS,
            });
        }
    }
    let extensions: Vec<Extension> = value
        .decode_as()
        .map_err(|e| bad(format!("malformed: {e}")))?;
    for (i, e) in extensions.iter().enumerate() {
        if extensions
            .iter()
            .skip(i + 1)
            .any(|other| other.extn_id == e.extn_id)
        {
            return Err(CsrError::DuplicateExtension(describe_oid(&e.extn_id)));
        }
    }
    Ok(extensions)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A P-256 CSR made by OpenSSL 3.5.5:
    /// `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj /CN=dev1
    ///  -addext subjectAltName=DNS:dev1.example -addext extendedKeyUsage=clientAuth
    ///  -nodes -keyout /dev/null -outform DER`.
    const P256_CSR_HEX: &str = "308201093081b0020100300f310d300b06035504030c04646576313059301306072a8648ce3d020106082a8648ce3d03010703420004e69e05fa945ef697fdc2cdde2a4a5b2f0b0395662081c5f55280a595286c065e8e9aaefa96b98f8482a6594961bc2887bb1a3a48e7554be37e92d785a69d8844a03f303d06092a864886f70d01090e3130302e30170603551d110410300e820c646576312e6578616d706c6530130603551d25040c300a06082b06010505070302300a06082a8648ce3d0403020348003045022100be6845ccb1d63ceab5fcbf8d3dd1e8b5e5d5da1587ae6c7400d58c4429f153d50220400bbaa73ecb16f352c2525810038d60004f4bfff47f7f62030abd81f90d4672";

    /// The CSR above (other modules' tests start from it).
    pub(crate) fn p256_csr() -> Vec<u8> {
        (0..P256_CSR_HEX.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&P256_CSR_HEX[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_real_openssl_csr_verifies() {
        let der = p256_csr();
        let csr = verify_csr(&der).unwrap();
        assert_eq!(csr.key, KeySpec::Ec("P-256".into()));
        assert_eq!(csr.subject.to_string(), "CN=dev1");
        assert_eq!(csr.sans.len(), 1);
        assert_eq!(csr.requested_extensions.len(), 2);
        assert!(csr.challenge_password.is_none());
    }

    #[test]
    fn a_flipped_signature_bit_is_a_bad_signature() {
        let mut der = p256_csr();
        // The last byte is inside s of the ECDSA signature.
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert_eq!(verify_csr(&der).unwrap_err(), CsrError::BadSignature);
        // A flipped byte in the subject (the signed part) too.
        let mut der = p256_csr();
        let at = der.windows(4).position(|w| w == b"dev1").unwrap();
        der[at] = b'x';
        assert_eq!(verify_csr(&der).unwrap_err(), CsrError::BadSignature);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut der = p256_csr();
        der.extend_from_slice(&[0, 0]);
        assert_eq!(
            verify_csr(&der).unwrap_err(),
            CsrError::TrailingData { extra: 2 }
        );
    }

    #[test]
    fn empty_truncated_and_garbage_inputs_are_errors_not_panics() {
        let der = p256_csr();
        assert!(matches!(verify_csr(&[]), Err(CsrError::Der(_))));
        for n in 0..der.len() {
            assert!(verify_csr(&der[..n]).is_err(), "truncated to {n}");
        }
        // Every single-byte corruption: an error or (in the unsigned
        // wrapper) a still-valid CSR, never a panic.
        for i in 0..der.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut d = der.clone();
                d[i] ^= x;
                let _ = verify_csr(&d);
            }
        }
        // Pseudo-random bytes, some starting like a SEQUENCE.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in [1usize, 2, 3, 10, 100, 1000, 5000] {
            for lead in [None, Some(0x30u8)] {
                let mut buf: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect();
                if let (Some(l), Some(first)) = (lead, buf.first_mut()) {
                    *first = l;
                }
                assert!(verify_csr(&buf).is_err());
            }
        }
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let big = vec![0x30u8; MAX_CSR_BYTES + 1];
        assert!(matches!(
            verify_csr(&big),
            Err(CsrError::TooLarge { size, .. }) if size == MAX_CSR_BYTES + 1
        ));
    }

    /// Rebuilds the P-256 CSR's info with `f` applied; the signature no
    /// longer matches, which is fine for checks that come first.
    fn with_info(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let der = p256_csr();
        let raw = RawCertReq::from_der(&der).unwrap();
        let mut info = raw.info.value().to_vec();
        f(&mut info);
        let info = der::asn1::Any::new(Tag::Sequence, info).unwrap();
        #[derive(Sequence)]
        struct Out<'a> {
            info: der::asn1::Any,
            algorithm: AlgorithmIdentifierRef<'a>,
            signature: BitStringRef<'a>,
        }
        Out {
            info,
            algorithm: raw.algorithm,
            signature: raw.signature,
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn unsupported_versions_are_named() {
        let der = with_info(|info| {
            assert_eq!(&info[..3], &[0x02, 0x01, 0x00]);
            info[2] = 1;
        });
        assert_eq!(
            verify_csr(&der).unwrap_err(),
            CsrError::UnsupportedVersion("1".into())
        );
    }

    fn csr_with_extensions(n: usize) -> Vec<u8> {
        use der::asn1::OctetString;
        let exts: Vec<Extension> = (0..n)
            .map(|i| Extension {
                extn_id: der::asn1::ObjectIdentifier::new(&format!("1.3.6.1.4.1.32473.{}", i + 1))
                    .unwrap(),
                critical: false,
                extn_value: OctetString::new([0x05, 0x00]).unwrap(),
            })
            .collect();
        let attr: x509_cert::attr::Attribute =
            x509_cert::request::ExtensionReq(exts).try_into().unwrap();
        let attr_der = attr.to_der().unwrap();
        with_info(|info| {
            // Keep version, subject and key; replace the attributes [0].
            let mut reader = SliceReader::new(info).unwrap();
            let mut kept = Vec::new();
            for _ in 0..3 {
                kept.extend(AnyRef::decode(&mut reader).unwrap().to_der().unwrap());
            }
            let mut attrs = der::asn1::Any::new(Tag::Set, attr_der.clone())
                .unwrap()
                .to_der()
                .unwrap();
            attrs[0] = 0xa0; // [0] IMPLICIT SET OF Attribute
            kept.extend(attrs);
            *info = kept;
        })
    }

    #[test]
    fn too_many_requested_extensions_are_refused() {
        assert_eq!(
            verify_csr(&csr_with_extensions(101)).unwrap_err(),
            CsrError::TooManyExtensions {
                count: 101,
                max: 100
            }
        );
        // 100 is within the limit: it fails later, on the (now stale) signature.
        assert_eq!(
            verify_csr(&csr_with_extensions(100)).unwrap_err(),
            CsrError::BadSignature
        );
    }
}

//! The `/csrattrs` response (RFC 7030 4.5.2, with the key-request conventions of RFC 9908).
//!
//! ```text
//! CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID
//! AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }
//! ```
//!
//! What the server writes, in this order (the order of the RFC 7030 4.5.2 example):
//! - `challengePassword` (1.2.840.113549.1.9.7) as a bare OID, when the CA wants the
//!   tls-exporter value in it;
//! - the key: `Attribute { id-ecPublicKey, SET { namedCurve } }`,
//!   `Attribute { rsaEncryption, SET { INTEGER bits } }` (RFC 9908), or the ML-DSA algorithm
//!   as a bare OID;
//! - any extra OIDs from the configuration;
//! - the signature algorithm as a bare OID.
//!
//! A bare OID that would repeat one already written (ML-DSA's key and signature algorithm are
//! the same OID) is written once.

use const_oid::db::{
    fips204::{ID_ML_DSA_44, ID_ML_DSA_65, ID_ML_DSA_87},
    rfc2985::PKCS_9_AT_CHALLENGE_PASSWORD,
    rfc5912::{
        ECDSA_WITH_SHA_224, ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, ECDSA_WITH_SHA_512,
        ID_EC_PUBLIC_KEY, ID_RSASSA_PSS, RSA_ENCRYPTION, SHA_224_WITH_RSA_ENCRYPTION,
        SHA_256_WITH_RSA_ENCRYPTION, SHA_384_WITH_RSA_ENCRYPTION, SHA_512_WITH_RSA_ENCRYPTION,
    },
};
/// Re-exported: the type of every field of [`CsrAttrsSpec`].
pub use const_oid::ObjectIdentifier;
use der::{
    asn1::{Any, SetOfVec},
    Choice, Decode, Encode,
};
use x509_cert::attr::Attribute;

use super::wire::WireError;

/// The pure ML-DSA parameter sets (FIPS 204; OIDs of RFC 9881).
const ML_DSA: [ObjectIdentifier; 3] = [ID_ML_DSA_44, ID_ML_DSA_65, ID_ML_DSA_87];
const ECDSA: [ObjectIdentifier; 4] = [
    ECDSA_WITH_SHA_224,
    ECDSA_WITH_SHA_256,
    ECDSA_WITH_SHA_384,
    ECDSA_WITH_SHA_512,
];
const RSA_SIGNATURES: [ObjectIdentifier; 5] = [
    SHA_224_WITH_RSA_ENCRYPTION,
    SHA_256_WITH_RSA_ENCRYPTION,
    SHA_384_WITH_RSA_ENCRYPTION,
    SHA_512_WITH_RSA_ENCRYPTION,
    ID_RSASSA_PSS,
];

/// What a CA asks of the CSRs it signs, to be told to clients by `/csrattrs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrAttrsSpec {
    /// The algorithm the CSR is to be signed with: `ecdsa-with-SHA256`,
    /// `sha256WithRSAEncryption`, `id-RSASSA-PSS`, `id-ml-dsa-65`, ...
    pub signature_algorithm: ObjectIdentifier,
    /// The key the client is to generate.
    pub key: KeyRequest,
    /// The CA requires the tls-exporter value in `challengePassword`.
    pub challenge_password: bool,
    /// More OIDs to list, bare, before the signature algorithm.
    pub extra_oids: Vec<ObjectIdentifier>,
}

/// The key type (and size) a CA asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRequest {
    /// An EC key on this named curve (`secp256r1`, `secp384r1`, ...).
    Ec {
        /// The curve's OID.
        curve_oid: ObjectIdentifier,
    },
    /// An RSA key of this modulus size.
    Rsa {
        /// Modulus bits.
        bits: u32,
    },
    /// An ML-DSA key of this parameter set (`id-ml-dsa-44/65/87`).
    MlDsa {
        /// The parameter set's OID.
        oid: ObjectIdentifier,
    },
    /// No key requirement is published.
    Any,
}

/// One element of a CSR attributes response.
#[derive(Clone, Debug, PartialEq, Eq, Choice)]
pub enum AttrOrOid {
    /// A bare OID: an attribute or algorithm the CSR should carry or use.
    Oid(ObjectIdentifier),
    /// An attribute with values (a key type and its parameter, an extension request, ...).
    Attribute(Attribute),
}

impl AttrOrOid {
    /// The OID, bare or the attribute's type.
    pub fn oid(&self) -> ObjectIdentifier {
        match self {
            Self::Oid(oid) => *oid,
            Self::Attribute(attr) => attr.oid,
        }
    }
}

fn invalid(message: String) -> WireError {
    WireError::InvalidSpec(message)
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<AttrOrOid, WireError> {
    let values = SetOfVec::try_from(vec![value]).map_err(|e| WireError::Encode {
        what: "a CSR attribute value set",
        reason: e.to_string(),
    })?;
    Ok(AttrOrOid::Attribute(Attribute { oid, values }))
}

fn any_from<T: der::EncodeValue + der::Tagged>(value: &T) -> Result<Any, WireError> {
    Any::encode_from(value).map_err(|e| WireError::Encode {
        what: "a CSR attribute value",
        reason: e.to_string(),
    })
}

/// Refuses a key request that cannot go with the signature algorithm, for the algorithms we
/// know; unknown signature algorithms pass.
fn check_spec(spec: &CsrAttrsSpec) -> Result<(), WireError> {
    let sig = spec.signature_algorithm;
    match &spec.key {
        KeyRequest::Rsa { bits: 0 } => return Err(invalid("RSA key size of 0 bits".into())),
        KeyRequest::MlDsa { oid } if !ML_DSA.contains(oid) => {
            return Err(invalid(format!(
                "{oid} is not an ML-DSA parameter set (id-ml-dsa-44, -65 or -87)"
            )))
        }
        _ => {}
    }
    let fits = match &spec.key {
        KeyRequest::Any => true,
        KeyRequest::Ec { .. } => !RSA_SIGNATURES.contains(&sig) && !ML_DSA.contains(&sig),
        KeyRequest::Rsa { .. } => !ECDSA.contains(&sig) && !ML_DSA.contains(&sig),
        KeyRequest::MlDsa { oid } => {
            !ECDSA.contains(&sig)
                && !RSA_SIGNATURES.contains(&sig)
                && (!ML_DSA.contains(&sig) || sig == *oid)
        }
    };
    if fits {
        Ok(())
    } else {
        Err(invalid(format!(
            "signature algorithm {sig} cannot sign with the requested key ({:?})",
            spec.key
        )))
    }
}

/// The DER `CsrAttrs` for `spec` (base64 it with [`super::wire::base64_lines`] to answer).
pub fn encode_csrattrs(spec: &CsrAttrsSpec) -> Result<Vec<u8>, WireError> {
    check_spec(spec)?;
    let mut items = Vec::new();
    if spec.challenge_password {
        items.push(AttrOrOid::Oid(PKCS_9_AT_CHALLENGE_PASSWORD));
    }
    match &spec.key {
        KeyRequest::Ec { curve_oid } => {
            items.push(attribute(ID_EC_PUBLIC_KEY, any_from(curve_oid)?)?);
        }
        KeyRequest::Rsa { bits } => items.push(attribute(RSA_ENCRYPTION, any_from(bits)?)?),
        KeyRequest::MlDsa { oid } => items.push(AttrOrOid::Oid(*oid)),
        KeyRequest::Any => {}
    }
    items.extend(spec.extra_oids.iter().copied().map(AttrOrOid::Oid));
    items.push(AttrOrOid::Oid(spec.signature_algorithm));

    let mut seen = Vec::new();
    items.retain(|item| match item {
        AttrOrOid::Oid(oid) if seen.contains(oid) => false,
        AttrOrOid::Oid(oid) => {
            seen.push(*oid);
            true
        }
        AttrOrOid::Attribute(_) => true,
    });
    items.to_der().map_err(|e| WireError::Encode {
        what: "the CSR attributes",
        reason: e.to_string(),
    })
}

/// Parses a DER `CsrAttrs`. Total: any input gives `Ok` or `Err`, never a panic. An attribute
/// must have at least one value (`SET SIZE (1..MAX)`).
pub fn decode_csrattrs(der: &[u8]) -> Result<Vec<AttrOrOid>, WireError> {
    let items = Vec::<AttrOrOid>::from_der(der)
        .map_err(|e| WireError::NotDer(format!("not a DER CsrAttrs: {e}")))?;
    if let Some(empty) = items.iter().find_map(|item| match item {
        AttrOrOid::Attribute(attr) if attr.values.is_empty() => Some(attr.oid),
        _ => None,
    }) {
        return Err(WireError::NotDer(format!(
            "CsrAttrs attribute {empty} has no value"
        )));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use const_oid::db::rfc5912::{ID_EXTENSION_REQ, SECP_256_R_1, SECP_384_R_1};

    fn spec(signature_algorithm: ObjectIdentifier, key: KeyRequest) -> CsrAttrsSpec {
        CsrAttrsSpec {
            signature_algorithm,
            key,
            challenge_password: false,
            extra_oids: Vec::new(),
        }
    }

    /// The `/csrattrs` example of RFC 7030 4.5.2.
    fn rfc_7030_example() -> Vec<u8> {
        <base64ct::Base64 as base64ct::Encoding>::decode_vec(
            "MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJ\
             BgcrBgEBAQEWBggqhkjOPQQDAw==",
        )
        .unwrap()
    }

    #[test]
    fn ec_with_challenge_password_has_the_shape_of_the_rfc_7030_example() {
        // RFC 7030 4.5.2 example, minus its extensionRequest attribute (bytes 33..57):
        // challengePassword, { id-ecPublicKey, { secp384r1 } }, ecdsa-with-SHA384.
        let example = rfc_7030_example();
        let mut expected = vec![0x30, 0x29];
        expected.extend_from_slice(&example[2..33]);
        expected.extend_from_slice(&example[57..]);
        let mut s = spec(
            ECDSA_WITH_SHA_384,
            KeyRequest::Ec {
                curve_oid: SECP_384_R_1,
            },
        );
        s.challenge_password = true;
        let der = encode_csrattrs(&s).unwrap();
        assert_eq!(der, expected);
    }

    #[test]
    fn round_trips() {
        let cases = [
            spec(
                ECDSA_WITH_SHA_256,
                KeyRequest::Ec {
                    curve_oid: SECP_256_R_1,
                },
            ),
            spec(SHA_256_WITH_RSA_ENCRYPTION, KeyRequest::Rsa { bits: 3072 }),
            spec(ID_RSASSA_PSS, KeyRequest::Rsa { bits: 4096 }),
            spec(ID_ML_DSA_65, KeyRequest::MlDsa { oid: ID_ML_DSA_65 }),
            spec(ECDSA_WITH_SHA_256, KeyRequest::Any),
            CsrAttrsSpec {
                challenge_password: true,
                extra_oids: vec![ID_EXTENSION_REQ, ID_EXTENSION_REQ],
                ..spec(ID_ML_DSA_87, KeyRequest::MlDsa { oid: ID_ML_DSA_87 })
            },
        ];
        for s in cases {
            let der = encode_csrattrs(&s).unwrap();
            let items = decode_csrattrs(&der).unwrap();
            let mut expected = Vec::new();
            if s.challenge_password {
                expected.push(PKCS_9_AT_CHALLENGE_PASSWORD);
            }
            match s.key {
                KeyRequest::Ec { .. } => expected.push(ID_EC_PUBLIC_KEY),
                KeyRequest::Rsa { .. } => expected.push(RSA_ENCRYPTION),
                KeyRequest::MlDsa { oid } => expected.push(oid),
                KeyRequest::Any => {}
            }
            for oid in &s.extra_oids {
                if !expected.contains(oid) {
                    expected.push(*oid);
                }
            }
            if !expected.contains(&s.signature_algorithm) {
                expected.push(s.signature_algorithm);
            }
            assert_eq!(
                items.iter().map(AttrOrOid::oid).collect::<Vec<_>>(),
                expected,
                "{s:?}"
            );
            // The key attribute's value.
            match s.key {
                KeyRequest::Ec { curve_oid } => {
                    let AttrOrOid::Attribute(attr) = &items[0] else {
                        panic!("{items:?}")
                    };
                    assert_eq!(attr.values.len(), 1);
                    let v = attr.values.get(0).unwrap();
                    assert_eq!(v.decode_as::<ObjectIdentifier>().unwrap(), curve_oid);
                }
                KeyRequest::Rsa { bits } => {
                    let AttrOrOid::Attribute(attr) = &items[0] else {
                        panic!("{items:?}")
                    };
                    let v = attr.values.get(0).unwrap();
                    assert_eq!(v.decode_as::<u32>().unwrap(), bits);
                }
                _ => {}
            }
            // Re-encoding what was decoded gives the same bytes.
            assert_eq!(items.to_der().unwrap(), der);
        }
    }

    #[test]
    fn refuses_inconsistent_specs() {
        for bad in [
            spec(ECDSA_WITH_SHA_256, KeyRequest::Rsa { bits: 2048 }),
            spec(
                SHA_256_WITH_RSA_ENCRYPTION,
                KeyRequest::Ec {
                    curve_oid: SECP_256_R_1,
                },
            ),
            spec(ID_ML_DSA_65, KeyRequest::MlDsa { oid: ID_ML_DSA_44 }),
            spec(ID_ML_DSA_65, KeyRequest::Rsa { bits: 2048 }),
            spec(SHA_256_WITH_RSA_ENCRYPTION, KeyRequest::Rsa { bits: 0 }),
            spec(ID_ML_DSA_65, KeyRequest::MlDsa { oid: SECP_256_R_1 }),
        ] {
            let e = encode_csrattrs(&bad).unwrap_err();
            assert!(matches!(e, WireError::InvalidSpec(_)), "{bad:?}: {e}");
            assert!(!e.is_client_error());
        }
    }

    #[test]
    fn decodes_the_rfc_7030_example() {
        let der = rfc_7030_example();
        assert_eq!(der.len(), 67);
        let items = decode_csrattrs(&der).unwrap();
        let oids: Vec<_> = items.iter().map(AttrOrOid::oid).collect();
        assert_eq!(
            oids,
            [
                PKCS_9_AT_CHALLENGE_PASSWORD,
                ID_EC_PUBLIC_KEY,
                const_oid::db::rfc2985::PKCS_9_AT_EXTENSION_REQUEST,
                ECDSA_WITH_SHA_384
            ]
        );
    }

    #[test]
    fn decoder_refuses_garbage_without_panicking() {
        let mut s = spec(
            ECDSA_WITH_SHA_384,
            KeyRequest::Ec {
                curve_oid: SECP_384_R_1,
            },
        );
        s.challenge_password = true;
        s.extra_oids.push(ID_EXTENSION_REQ);
        let der = encode_csrattrs(&s).unwrap();
        // Every truncation.
        for len in 0..der.len() {
            assert!(decode_csrattrs(&der[..len]).is_err(), "truncated to {len}");
        }
        // Trailing data, a SET instead of a SEQUENCE, a bad element, an attribute without value.
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(decode_csrattrs(&trailing).is_err());
        let mut set = der.clone();
        set[0] = 0x31;
        assert!(decode_csrattrs(&set).is_err());
        assert!(decode_csrattrs(&[0x30, 0x03, 0x02, 0x01, 0x05]).is_err());
        assert!(decode_csrattrs(&[
            0x30, 0x0b, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x31, 0x00
        ])
        .is_err());
        assert_eq!(decode_csrattrs(&[0x30, 0x00]).unwrap(), vec![]);
        // Byte flips and random junk (a small deterministic fuzz; the real fuzzer comes later).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut m = der.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            let _ = decode_csrattrs(&m);
            let junk: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
            let _ = decode_csrattrs(&junk);
        }
    }
}

//! Finding a key on the token and reading what it is.

use cryptoki::{
    object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle},
    session::Session,
};
use der::{
    asn1::{BitString, ObjectIdentifier, UintRef},
    Encode,
};
use kipuka_plugin_api::{Curve, MlDsaParameterSet};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use super::{error::HsmError, uri::Pkcs11Uri};

/// The algorithm and size of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA with this modulus size in bits.
    Rsa {
        /// Modulus bits.
        bits: u32,
    },
    /// ECDSA on this curve.
    Ec {
        /// The curve.
        curve: Curve,
    },
    /// ML-DSA with this parameter set.
    MlDsa {
        /// The parameter set.
        set: MlDsaParameterSet,
    },
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyAlgorithm::Ec { curve } => write!(f, "ECDSA {curve}"),
            KeyAlgorithm::MlDsa { set } => write!(f, "{set}"),
        }
    }
}

/// What kipuka knows of a private key on the token.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// The URI it was found by.
    pub uri: Pkcs11Uri,
    /// The private key object (valid until the library is re-initialised).
    pub handle: ObjectHandle,
    /// Algorithm and size.
    pub algorithm: KeyAlgorithm,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// The public key as a DER SubjectPublicKeyInfo, read from the token.
    pub public_key_spki: Vec<u8>,
}

/// OIDs of the curves and of the ML-DSA parameter sets.
pub mod oids {
    use der::asn1::ObjectIdentifier as Oid;
    /// id-ecPublicKey.
    pub const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    /// rsaEncryption.
    pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    /// secp256r1.
    pub const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    /// secp384r1.
    pub const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
    /// secp521r1.
    pub const P521: Oid = Oid::new_unwrap("1.3.132.0.35");
    /// id-ml-dsa-44.
    pub const ML_DSA_44: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.17");
    /// id-ml-dsa-65.
    pub const ML_DSA_65: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.18");
    /// id-ml-dsa-87.
    pub const ML_DSA_87: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.19");
}

/// The named-curve OID of `curve`.
pub fn curve_oid(curve: Curve) -> Option<ObjectIdentifier> {
    match curve {
        Curve::P256 => Some(oids::P256),
        Curve::P384 => Some(oids::P384),
        Curve::P521 => Some(oids::P521),
        _ => None,
    }
}

/// The curve named by a DER `ECParameters` (a namedCurve OID).
pub fn curve_from_params(params: &[u8]) -> Option<Curve> {
    use der::Decode;
    let oid = ObjectIdentifier::from_der(params).ok()?;
    [Curve::P256, Curve::P384, Curve::P521]
        .into_iter()
        .find(|c| curve_oid(*c) == Some(oid))
}

/// The OID of an ML-DSA parameter set.
pub fn ml_dsa_oid(set: MlDsaParameterSet) -> Option<ObjectIdentifier> {
    match set {
        MlDsaParameterSet::ML_DSA_44 => Some(oids::ML_DSA_44),
        MlDsaParameterSet::ML_DSA_65 => Some(oids::ML_DSA_65),
        MlDsaParameterSet::ML_DSA_87 => Some(oids::ML_DSA_87),
        _ => None,
    }
}

/// Size in bytes of a coordinate (and of a hash) on `curve`.
pub fn curve_field_bytes(curve: Curve) -> usize {
    match curve {
        Curve::P256 => 32,
        Curve::P384 => 48,
        _ => 66,
    }
}

fn template(uri: &Pkcs11Uri, class: ObjectClass) -> Vec<Attribute> {
    let mut t = vec![Attribute::Class(class), Attribute::Token(true)];
    if let Some(label) = &uri.object {
        t.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        t.push(Attribute::Id(id.clone()));
    }
    t
}

fn key_error(uri: &Pkcs11Uri, reason: impl Into<String>) -> HsmError {
    HsmError::Key {
        uri: uri.to_string(),
        reason: reason.into(),
    }
}

/// Finds exactly one private key matching `uri` (by `object=` and/or `id=`).
pub fn find_private_key(session: &Session, uri: &Pkcs11Uri) -> Result<ObjectHandle, HsmError> {
    find_key(session, uri, ObjectClass::PRIVATE_KEY, "private key")
}

/// Finds exactly one secret key matching `uri` (a pre-shared AES
/// key-encryption key for `/serverkeygen`).
pub fn find_secret_key(session: &Session, uri: &Pkcs11Uri) -> Result<ObjectHandle, HsmError> {
    find_key(session, uri, ObjectClass::SECRET_KEY, "secret key")
}

fn find_key(
    session: &Session,
    uri: &Pkcs11Uri,
    class: ObjectClass,
    what: &str,
) -> Result<ObjectHandle, HsmError> {
    if uri.object.is_none() && uri.id.is_none() {
        return Err(key_error(uri, "the URI names neither object= nor id="));
    }
    let found = session
        .find_objects(&template(uri, class))
        .map_err(HsmError::pkcs11("C_FindObjects"))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(key_error(uri, format!("no such {what} on the token"))),
        many => Err(key_error(
            uri,
            format!("{} {what}s match; add id= to the URI", many.len()),
        )),
    }
}

fn get(
    session: &Session,
    handle: ObjectHandle,
    types: &[AttributeType],
) -> Result<Vec<Attribute>, HsmError> {
    session
        .get_attributes(handle, types)
        .map_err(HsmError::pkcs11("C_GetAttributeValue"))
}

/// Reads algorithm, protection flags and public key of the private key `handle`.
pub fn read_key_info(
    session: &Session,
    uri: &Pkcs11Uri,
    handle: ObjectHandle,
) -> Result<KeyInfo, HsmError> {
    let mut key_type = None;
    let mut sensitive = false;
    let mut extractable = true;
    let mut label = None;
    let mut id = None;
    for a in get(
        session,
        handle,
        &[
            AttributeType::KeyType,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::Label,
            AttributeType::Id,
        ],
    )? {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Sensitive(b) => sensitive = b,
            Attribute::Extractable(b) => extractable = b,
            Attribute::Label(l) => label = Some(l),
            Attribute::Id(i) => id = Some(i),
            _ => {}
        }
    }
    let key_type =
        key_type.ok_or_else(|| key_error(uri, "the token does not say the key's type"))?;
    // The public half: the private object carries it for RSA; EC and ML-DSA
    // need the public key object with the same label and id.
    let public = || -> Result<ObjectHandle, HsmError> {
        let mut t = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(key_type),
        ];
        if let Some(l) = &label {
            t.push(Attribute::Label(l.clone()));
        }
        if let Some(i) = id.as_ref().filter(|i| !i.is_empty()) {
            t.push(Attribute::Id(i.clone()));
        }
        let found = session
            .find_objects(&t)
            .map_err(HsmError::pkcs11("C_FindObjects"))?;
        found.first().copied().ok_or_else(|| {
            key_error(
                uri,
                "no public key object with the same label and id on the token",
            )
        })
    };
    let (algorithm, spki) = if key_type == KeyType::RSA {
        let (mut n, mut e) = (Vec::new(), Vec::new());
        for a in get(
            session,
            handle,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )? {
            match a {
                Attribute::Modulus(m) => n = m,
                Attribute::PublicExponent(x) => e = x,
                _ => {}
            }
        }
        if n.is_empty() || e.is_empty() {
            return Err(key_error(uri, "the token does not reveal the RSA modulus"));
        }
        let bits = bit_length(&n);
        (
            KeyAlgorithm::Rsa { bits },
            rsa_spki(&n, &e).map_err(|e| key_error(uri, e))?,
        )
    } else if key_type == KeyType::EC {
        let params = get(session, handle, &[AttributeType::EcParams])?
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcParams(p) => Some(p),
                _ => None,
            })
            .ok_or_else(|| key_error(uri, "the token does not say the EC curve"))?;
        let curve = curve_from_params(&params).ok_or_else(|| {
            key_error(
                uri,
                "the key is on a curve kipuka does not sign with (P-256, P-384, P-521 only)",
            )
        })?;
        let point = get(session, public()?, &[AttributeType::EcPoint])?
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .ok_or_else(|| key_error(uri, "the public key object has no CKA_EC_POINT"))?;
        let point = unwrap_ec_point(&point, curve)
            .ok_or_else(|| key_error(uri, "CKA_EC_POINT is not an uncompressed point"))?;
        (
            KeyAlgorithm::Ec { curve },
            ec_spki(curve, point).map_err(|e| key_error(uri, e))?,
        )
    } else if key_type == KeyType::ML_DSA {
        let set = get(session, handle, &[AttributeType::ParameterSet])?
            .into_iter()
            .find_map(|a| match a {
                Attribute::ParameterSet(p) => Some(MlDsaParameterSet(u64::from(*p))),
                _ => None,
            })
            .ok_or_else(|| key_error(uri, "the token does not say the ML-DSA parameter set"))?;
        let oid = ml_dsa_oid(set)
            .ok_or_else(|| key_error(uri, format!("unknown ML-DSA parameter set {set}")))?;
        let value = get(session, public()?, &[AttributeType::Value])?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })
            .ok_or_else(|| key_error(uri, "the ML-DSA public key object has no CKA_VALUE"))?;
        (
            KeyAlgorithm::MlDsa { set },
            raw_spki(oid, None, &value).map_err(|e| key_error(uri, e))?,
        )
    } else {
        return Err(key_error(
            uri,
            format!("key type {key_type} is not one kipuka signs with (RSA, EC, ML-DSA)"),
        ));
    };
    Ok(KeyInfo {
        uri: uri.clone(),
        handle,
        algorithm,
        sensitive,
        extractable,
        public_key_spki: spki,
    })
}

fn bit_length(n: &[u8]) -> u32 {
    let n = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return 0,
    };
    (n.len() as u32 - 1) * 8 + (8 - n[0].leading_zeros())
}

/// Accepts CKA_EC_POINT both as PKCS#11 2.40 says (a DER OCTET STRING
/// around the point) and raw, as some tokens return it.
pub fn unwrap_ec_point(value: &[u8], curve: Curve) -> Option<&[u8]> {
    let raw_len = 1 + 2 * curve_field_bytes(curve);
    if value.len() == raw_len && value[0] == 0x04 {
        return Some(value);
    }
    use der::Decode;
    let inner = <&der::asn1::OctetStringRef>::from_der(value).ok()?;
    let point = inner.as_bytes();
    (point.len() == raw_len && point[0] == 0x04).then_some(point)
}

fn raw_spki(
    oid: ObjectIdentifier,
    params: Option<der::Any>,
    key: &[u8],
) -> Result<Vec<u8>, String> {
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid,
            parameters: params,
        },
        subject_public_key: BitString::from_bytes(key).map_err(|e| e.to_string())?,
    }
    .to_der()
    .map_err(|e| e.to_string())
}

/// The uncompressed point of the EC public key object `public` on `curve`
/// (CKA_EC_POINT, with or without its OCTET STRING wrapper); `what` names
/// the key in errors.
pub fn read_ec_point(
    session: &Session,
    public: ObjectHandle,
    curve: Curve,
    what: &str,
) -> Result<Vec<u8>, HsmError> {
    get(session, public, &[AttributeType::EcPoint])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .and_then(|p| unwrap_ec_point(&p, curve).map(<[u8]>::to_vec))
        .ok_or_else(|| {
            HsmError::Internal(format!(
                "{what} has no uncompressed {curve} point in CKA_EC_POINT"
            ))
        })
}

/// SubjectPublicKeyInfo of an RSA key from its modulus and exponent.
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Result<Vec<u8>, String> {
    let key = pkcs1::RsaPublicKey {
        modulus: UintRef::new(n).map_err(|e| e.to_string())?,
        public_exponent: UintRef::new(e).map_err(|e| e.to_string())?,
    }
    .to_der()
    .map_err(|e| e.to_string())?;
    raw_spki(oids::RSA_ENCRYPTION, Some(der::Any::null()), &key)
}

/// SubjectPublicKeyInfo of an EC key from its uncompressed point.
pub fn ec_spki(curve: Curve, point: &[u8]) -> Result<Vec<u8>, String> {
    let oid = curve_oid(curve).ok_or("unknown curve")?;
    let params = der::Any::encode_from(&oid).map_err(|e| e.to_string())?;
    raw_spki(oids::EC_PUBLIC_KEY, Some(params), point)
}

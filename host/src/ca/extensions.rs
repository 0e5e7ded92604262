//! The X.509 v3 extensions kipuka puts in certificates, and the key-usage
//! rules per key type.

use const_oid::{db::rfc5280, AssociatedOid};
use der::{
    asn1::{ObjectIdentifier, OctetString},
    flagset::FlagSet,
    Encode,
};
use sha1::Digest as _;
use spki::SubjectPublicKeyInfoRef;
use x509_cert::{
    ext::{
        pkix::{
            name::GeneralName, AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage,
            KeyUsage, KeyUsages, SubjectAltName, SubjectKeyIdentifier,
        },
        Extension,
    },
    Certificate,
};

use crate::config::KeySpec;

/// `KeyUsages` and the names `profile.key_usage` uses for them.
const USAGE_NAMES: [(KeyUsages, &str); 9] = [
    (KeyUsages::DigitalSignature, "digitalSignature"),
    (KeyUsages::NonRepudiation, "nonRepudiation"),
    (KeyUsages::KeyEncipherment, "keyEncipherment"),
    (KeyUsages::DataEncipherment, "dataEncipherment"),
    (KeyUsages::KeyAgreement, "keyAgreement"),
    (KeyUsages::KeyCertSign, "keyCertSign"),
    (KeyUsages::CRLSign, "cRLSign"),
    (KeyUsages::EncipherOnly, "encipherOnly"),
    (KeyUsages::DecipherOnly, "decipherOnly"),
];

/// Parses `profile.key_usage` names (`contentCommitment` = `nonRepudiation`).
pub fn parse_key_usages(names: &[String]) -> Result<FlagSet<KeyUsages>, String> {
    let mut flags = FlagSet::<KeyUsages>::default();
    for name in names {
        let name = if name == "contentCommitment" {
            "nonRepudiation"
        } else {
            name.as_str()
        };
        let (flag, _) = USAGE_NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .ok_or_else(|| format!("unknown key usage {name:?}"))?;
        flags |= *flag;
    }
    Ok(flags)
}

/// The names of `flags`, in bit order.
pub fn key_usage_names(flags: FlagSet<KeyUsages>) -> Vec<&'static str> {
    USAGE_NAMES
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect()
}

/// Key usages an end-entity certificate for `key` may carry:
/// - RSA (RFC 3279 §2.3.1 / RFC 8017): signing and encipherment, not keyAgreement;
/// - EC `id-ecPublicKey` (RFC 5480 §3): signing and keyAgreement (with
///   encipherOnly/decipherOnly), not keyEncipherment or dataEncipherment;
/// - ML-DSA (RFC 9881 §5): signing only.
///
/// keyCertSign is never valid here: issued certificates have cA=false,
/// and RFC 5280 §4.2.1.3 forbids keyCertSign without cA=true.
pub fn end_entity_usages(key: &KeySpec) -> FlagSet<KeyUsages> {
    let signing = KeyUsages::DigitalSignature | KeyUsages::NonRepudiation | KeyUsages::CRLSign;
    match key {
        KeySpec::Rsa(_) => signing | KeyUsages::KeyEncipherment | KeyUsages::DataEncipherment,
        KeySpec::Ec(_) => {
            signing | KeyUsages::KeyAgreement | KeyUsages::EncipherOnly | KeyUsages::DecipherOnly
        }
        KeySpec::MlDsa(_) => signing,
    }
}

/// The profile's usages that `key` can have. encipherOnly/decipherOnly
/// only mean something with keyAgreement, so they are dropped without it.
pub fn filter_key_usages(profile: FlagSet<KeyUsages>, key: &KeySpec) -> FlagSet<KeyUsages> {
    let mut flags = profile & end_entity_usages(key);
    if !flags.contains(KeyUsages::KeyAgreement) {
        flags -= KeyUsages::EncipherOnly | KeyUsages::DecipherOnly;
    }
    flags
}

/// Parses `profile.extended_key_usage` names or dotted OIDs.
pub fn parse_extended_key_usages(names: &[String]) -> Result<Vec<ObjectIdentifier>, String> {
    names
        .iter()
        .map(|name| {
            Ok(match name.as_str() {
                "serverAuth" => rfc5280::ID_KP_SERVER_AUTH,
                "clientAuth" => rfc5280::ID_KP_CLIENT_AUTH,
                "codeSigning" => rfc5280::ID_KP_CODE_SIGNING,
                "emailProtection" => rfc5280::ID_KP_EMAIL_PROTECTION,
                "timeStamping" => rfc5280::ID_KP_TIME_STAMPING,
                "OCSPSigning" => rfc5280::ID_KP_OCSP_SIGNING,
                other => ObjectIdentifier::new(other)
                    .map_err(|_| format!("unknown extended key usage {other:?}"))?,
            })
        })
        .collect()
}

/// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's
/// value (without tag, length and unused-bits octet).
pub fn key_identifier(spki: &SubjectPublicKeyInfoRef<'_>) -> Vec<u8> {
    sha1::Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec()
}

/// The CA's key identifier: its certificate's subjectKeyIdentifier, or
/// computed from its public key when the extension is absent or malformed.
pub fn ca_key_identifier(cert: &Certificate) -> Vec<u8> {
    use der::referenced::OwnedToRef;
    match cert
        .tbs_certificate()
        .get_extension::<SubjectKeyIdentifier>()
    {
        Ok(Some((_, ski))) if !ski.0.as_bytes().is_empty() => ski.0.as_bytes().to_vec(),
        _ => key_identifier(
            &cert
                .tbs_certificate()
                .subject_public_key_info()
                .owned_to_ref(),
        ),
    }
}

/// `value` as the extension `T::OID`.
pub fn extension<T: AssociatedOid + Encode>(value: &T, critical: bool) -> der::Result<Extension> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// basicConstraints, critical.
pub fn basic_constraints(ca: bool) -> der::Result<Extension> {
    extension(
        &BasicConstraints {
            ca,
            path_len_constraint: None,
        },
        true,
    )
}

/// keyUsage, critical.
pub fn key_usage(flags: FlagSet<KeyUsages>) -> der::Result<Extension> {
    extension(&KeyUsage(flags), true)
}

/// extendedKeyUsage, not critical.
pub fn extended_key_usage(oids: &[ObjectIdentifier]) -> der::Result<Extension> {
    extension(&ExtendedKeyUsage(oids.to_vec()), false)
}

/// subjectKeyIdentifier, not critical.
pub fn subject_key_identifier(id: &[u8]) -> der::Result<Extension> {
    extension(&SubjectKeyIdentifier(OctetString::new(id)?), false)
}

/// authorityKeyIdentifier with keyIdentifier only, not critical.
pub fn authority_key_identifier(id: &[u8]) -> der::Result<Extension> {
    extension(
        &AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(id)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        },
        false,
    )
}

fn uri(url: &str) -> der::Result<GeneralName> {
    Ok(GeneralName::UniformResourceIdentifier(
        der::asn1::Ia5String::new(url)?,
    ))
}

/// cRLDistributionPoints (RFC 5280 §4.2.1.13), one fullName URI per point,
/// not critical; None for no URL.
pub fn crl_distribution_points(urls: &[String]) -> der::Result<Option<Extension>> {
    use x509_cert::ext::pkix::{
        crl::dp::DistributionPoint, name::DistributionPointName, CrlDistributionPoints,
    };
    if urls.is_empty() {
        return Ok(None);
    }
    let points = urls
        .iter()
        .map(|u| {
            Ok(DistributionPoint {
                distribution_point: Some(DistributionPointName::FullName(vec![uri(u)?])),
                reasons: None,
                crl_issuer: None,
            })
        })
        .collect::<der::Result<Vec<_>>>()?;
    extension(&CrlDistributionPoints(points), false).map(Some)
}

/// authorityInfoAccess (RFC 5280 §4.2.2.1): OCSP responders and CA
/// certificate locations, not critical; None for no URL.
pub fn authority_info_access(
    ocsp_urls: &[String],
    ca_issuers_urls: &[String],
) -> der::Result<Option<Extension>> {
    use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
    let described = |method: ObjectIdentifier, urls: &[String]| {
        urls.iter()
            .map(move |u| {
                Ok(AccessDescription {
                    access_method: method,
                    access_location: uri(u)?,
                })
            })
            .collect::<der::Result<Vec<_>>>()
    };
    let mut all = described(rfc5280::ID_AD_OCSP, ocsp_urls)?;
    all.extend(described(rfc5280::ID_AD_CA_ISSUERS, ca_issuers_urls)?);
    if all.is_empty() {
        return Ok(None);
    }
    extension(&AuthorityInfoAccessSyntax(all), false).map(Some)
}

/// subjectAltName; critical when the subject is empty (RFC 5280 §4.2.1.6).
pub fn subject_alt_name(names: &[GeneralName], critical: bool) -> der::Result<Extension> {
    extension(&SubjectAltName(names.to_vec()), critical)
}

/// A SAN entry as OpenSSL prints it: `DNS:host`, `IP Address:192.0.2.1`,
/// `email:a@b`, `URI:...`, `DirName:CN=...`, `othername:<oid>`, `Registered ID:<oid>`.
pub fn describe_general_name(name: &GeneralName) -> String {
    match name {
        GeneralName::DnsName(s) => format!("DNS:{s}"),
        GeneralName::Rfc822Name(s) => format!("email:{s}"),
        GeneralName::UniformResourceIdentifier(s) => format!("URI:{s}"),
        GeneralName::IpAddress(octets) => {
            let b = octets.as_bytes();
            let ip = <[u8; 4]>::try_from(b)
                .map(|a| std::net::IpAddr::from(a).to_string())
                .or_else(|_| <[u8; 16]>::try_from(b).map(|a| std::net::IpAddr::from(a).to_string()))
                .unwrap_or_else(|_| b.iter().map(|x| format!("{x:02x}")).collect());
            format!("IP Address:{ip}")
        }
        GeneralName::DirectoryName(n) => format!("DirName:{n}"),
        GeneralName::OtherName(o) => format!("othername:{}", o.type_id),
        GeneralName::RegisteredId(oid) => format!("Registered ID:{oid}"),
        GeneralName::EdiPartyName(_) => "EdiPartyName".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn key_usages_are_filtered_by_key_type() {
        let profile = parse_key_usages(&names(&[
            "digitalSignature",
            "keyEncipherment",
            "keyAgreement",
        ]))
        .unwrap();
        let rsa = filter_key_usages(profile, &KeySpec::Rsa(2048));
        assert_eq!(
            key_usage_names(rsa),
            ["digitalSignature", "keyEncipherment"]
        );
        let ec = filter_key_usages(profile, &KeySpec::Ec("P-256".into()));
        assert_eq!(key_usage_names(ec), ["digitalSignature", "keyAgreement"]);
        let ml = filter_key_usages(profile, &KeySpec::MlDsa(65));
        assert_eq!(key_usage_names(ml), ["digitalSignature"]);
        // keyCertSign never reaches an end-entity certificate.
        let ca_bits = parse_key_usages(&names(&["keyCertSign", "cRLSign"])).unwrap();
        assert_eq!(
            key_usage_names(filter_key_usages(ca_bits, &KeySpec::Rsa(2048))),
            ["cRLSign"]
        );
        // contentCommitment is nonRepudiation; encipherOnly needs keyAgreement.
        let cc = parse_key_usages(&names(&["contentCommitment"])).unwrap();
        assert_eq!(key_usage_names(cc), ["nonRepudiation"]);
        assert!(parse_key_usages(&names(&["everything"])).is_err());
        let only = parse_key_usages(&names(&["encipherOnly"])).unwrap();
        assert!(filter_key_usages(only, &KeySpec::Ec("P-384".into())).is_empty());
    }

    #[test]
    fn extended_key_usages_by_name_or_oid() {
        let oids =
            parse_extended_key_usages(&names(&["clientAuth", "1.3.6.1.5.5.7.3.17"])).unwrap();
        assert_eq!(oids[0].to_string(), "1.3.6.1.5.5.7.3.2");
        assert_eq!(oids[1].to_string(), "1.3.6.1.5.5.7.3.17");
        assert!(parse_extended_key_usages(&names(&["nonsense"])).is_err());
    }

    #[test]
    fn ski_is_sha1_of_the_bit_string_value() {
        // P-256 SPKI; the SKI OpenSSL computes for it (`openssl x509 -text`
        // on a self-signed certificate with subjectKeyIdentifier=hash).
        let spki = hex("3059301306072a8648ce3d020106082a8648ce3d03010703420004e69e05fa945ef697fdc2cdde2a4a5b2f0b0395662081c5f55280a595286c065e8e9aaefa96b98f8482a6594961bc2887bb1a3a48e7554be37e92d785a69d8844");
        let spki = SubjectPublicKeyInfoRef::from_der(&spki).unwrap();
        let point = spki.subject_public_key.raw_bytes();
        assert_eq!(point.len(), 65);
        assert_eq!(key_identifier(&spki), sha1::Sha1::digest(point).to_vec());
        assert_eq!(
            key_identifier(&spki),
            hex("d066b2c42cb0575f288412a7ca6539408a46c501")
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn extension_encodings() {
        // basicConstraints cA=false: an empty SEQUENCE (DEFAULT omitted), critical.
        let bc = basic_constraints(false).unwrap();
        assert!(bc.critical);
        assert_eq!(bc.extn_value.as_bytes(), [0x30, 0x00]);
        let bc = basic_constraints(true).unwrap();
        assert_eq!(bc.extn_value.as_bytes(), [0x30, 0x03, 0x01, 0x01, 0xff]);
        // keyUsage digitalSignature + keyEncipherment: 03 02 05 a0.
        let ku = key_usage(KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment).unwrap();
        assert!(ku.critical);
        assert_eq!(ku.extn_value.as_bytes(), [0x03, 0x02, 0x05, 0xa0]);
        // keyCertSign + cRLSign + digitalSignature: 03 02 01 86.
        let ku =
            key_usage(KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature)
                .unwrap();
        assert_eq!(ku.extn_value.as_bytes(), [0x03, 0x02, 0x01, 0x86]);
        let aki = authority_key_identifier(&[1, 2, 3]).unwrap();
        assert_eq!(aki.extn_value.as_bytes(), [0x30, 0x05, 0x80, 0x03, 1, 2, 3]);
    }

    #[test]
    fn general_names_are_described_like_openssl() {
        use der::asn1::Ia5String;
        assert_eq!(
            describe_general_name(&GeneralName::DnsName(Ia5String::new("a.example").unwrap())),
            "DNS:a.example"
        );
        assert_eq!(
            describe_general_name(&GeneralName::IpAddress(
                OctetString::new([192, 0, 2, 1]).unwrap()
            )),
            "IP Address:192.0.2.1"
        );
        assert_eq!(
            describe_general_name(&GeneralName::IpAddress(OctetString::new([1, 2]).unwrap())),
            "IP Address:0102"
        );
    }
}

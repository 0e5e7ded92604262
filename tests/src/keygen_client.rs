//! The client side of `/serverkeygen` as a device would do it with the
//! OpenSSL command line: a CSR carrying RFC 7030's key-protection attribute
//! (assembled here, signed by `openssl dgst`, because `openssl req` cannot
//! write OCTET STRING attributes), and the reading of the multipart answer.
//! Nothing here checks kipuka's cryptography: OpenSSL does that in the tests.

use std::{path::Path, process::Command, str::FromStr};

use der::{
    asn1::{Any, BitString, OctetString, SetOfVec},
    oid::ObjectIdentifier,
    Decode, Encode,
};
use x509_cert::{
    attr::Attribute,
    name::Name,
    request::{CertReq, CertReqInfo, Version},
    spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned},
};

use crate::{
    est_client::Answer,
    est_server::{openssl, run},
};

/// `id-aa-decryptKeyID` (RFC 7030 §4.4.1.1).
pub const DECRYPT_KEY_ID: &str = "1.2.840.113549.1.9.16.2.37";
/// `id-aa-asymmDecryptKeyID` (RFC 7030 §4.4.1.2).
pub const ASYMM_DECRYPT_KEY_ID: &str = "1.2.840.113549.1.9.16.2.54";

/// A CSR for the key `key_pem` (OpenSSL PEM, RSA or EC) with `subject` and
/// the attributes `(oid, identifier)`, each an OCTET STRING; signed by
/// OpenSSL with SHA-256. DER.
pub fn csr_with_attributes(
    dir: &Path,
    key_pem: &Path,
    subject: &str,
    attrs: &[(&str, &[u8])],
) -> Vec<u8> {
    let spki_der = run(openssl()
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(key_pem))
    .stdout;
    let spki = SubjectPublicKeyInfoOwned::from_der(&spki_der).unwrap();
    let rsa = spki.algorithm.oid.to_string() == "1.2.840.113549.1.1.1";
    let mut attributes = SetOfVec::new();
    for (oid, id) in attrs {
        let value = Any::encode_from(&OctetString::new(id.to_vec()).unwrap()).unwrap();
        attributes
            .insert(Attribute {
                oid: ObjectIdentifier::new_unwrap(oid),
                values: SetOfVec::try_from(vec![value]).unwrap(),
            })
            .unwrap();
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject: Name::from_str(subject).unwrap(),
        public_key: spki,
        attributes,
    };
    let info_der = info.to_der().unwrap();
    let info_path = dir.join("csr-info.der");
    std::fs::write(&info_path, &info_der).unwrap();
    let signature = run(openssl()
        .args(["dgst", "-sha256", "-sign"])
        .arg(key_pem)
        .arg(&info_path))
    .stdout;
    let algorithm = if rsa {
        AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
            parameters: Some(Any::null()),
        }
    } else {
        AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
            parameters: None,
        }
    };
    CertReq {
        info,
        algorithm,
        signature: BitString::from_bytes(&signature).unwrap(),
    }
    .to_der()
    .unwrap()
}

/// A private key made by OpenSSL: `spec` is `ec:P-256`, `ec:P-384` or `rsa:2048`.
pub fn openssl_key(dir: &Path, name: &str, spec: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.key"));
    let mut cmd = openssl();
    cmd.arg("genpkey");
    match spec.split_once(':') {
        Some(("ec", curve)) => cmd
            .args(["-algorithm", "EC", "-pkeyopt"])
            .arg(format!("ec_paramgen_curve:{curve}")),
        Some(("rsa", bits)) => cmd
            .args(["-algorithm", "RSA", "-pkeyopt"])
            .arg(format!("rsa_keygen_bits:{bits}")),
        _ => panic!("key spec {spec}"),
    };
    run(cmd.arg("-out").arg(&path));
    path
}

/// The parts of a `multipart/mixed` answer: (Content-Type, body text).
pub fn multipart_parts(answer: &Answer) -> Vec<(String, String)> {
    let ct = answer.header("content-type").expect("Content-Type");
    assert!(
        ct.starts_with("multipart/mixed"),
        "not multipart/mixed: {ct}: {}",
        answer.text()
    );
    let boundary = ct
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .expect("boundary")
        .trim_matches('"')
        .to_string();
    let text = answer.text();
    let delimiter = format!("--{boundary}");
    let mut sections: Vec<&str> = text.split(delimiter.as_str()).collect();
    assert_eq!(sections.first().map(|s| s.trim()), Some(""), "preamble");
    assert!(
        sections.last().is_some_and(|s| s.starts_with("--")),
        "closing delimiter missing"
    );
    sections.remove(0);
    sections.pop();
    sections
        .into_iter()
        .map(|s| {
            let (head, body) = s
                .split_once("\r\n\r\n")
                .expect("part headers end with an empty line");
            let content_type = head
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(n, _)| n.trim().eq_ignore_ascii_case("content-type"))
                        .map(|(_, v)| v.trim().to_string())
                })
                .expect("part Content-Type");
            (content_type, body.trim().to_string())
        })
        .collect()
}

/// Base64 text → bytes, decoded by OpenSSL.
pub fn unbase64(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let b64 = dir.join(format!("{name}.b64"));
    // `openssl base64 -d` wants lines of at most 64 columns with a final newline.
    let mut wrapped = String::new();
    let flat: String = text.split_whitespace().collect();
    for chunk in flat.as_bytes().chunks(64) {
        wrapped.push_str(std::str::from_utf8(chunk).unwrap());
        wrapped.push('\n');
    }
    std::fs::write(&b64, wrapped).unwrap();
    let der = dir.join(format!("{name}.der"));
    run(openssl()
        .args(["base64", "-d", "-in"])
        .arg(&b64)
        .arg("-out")
        .arg(&der));
    der
}

/// The one OneAsymmetricKey inside an AsymmetricKeyPackage (a DER SEQUENCE
/// OF): the element's own DER, for `openssl pkey`.
pub fn only_key_of_package(akp: &[u8]) -> Vec<u8> {
    let elements: Vec<Any> = Vec::from_der(akp).expect("AsymmetricKeyPackage is a SEQUENCE OF");
    assert_eq!(elements.len(), 1, "one key in the package");
    elements[0].to_der().unwrap()
}

/// `openssl pkey` public key (DER) of a private key file (DER PKCS#8) or of
/// a certificate (PEM).
pub fn public_key_of(path: &Path, cert: bool) -> Vec<u8> {
    if cert {
        let pem = run(openssl()
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(path))
        .stdout;
        let tmp = path.with_extension("certpub.pem");
        std::fs::write(&tmp, pem).unwrap();
        run(openssl()
            .args(["pkey", "-pubin", "-outform", "DER", "-in"])
            .arg(&tmp))
        .stdout
    } else {
        run(openssl()
            .args([
                "pkey", "-inform", "DER", "-pubout", "-outform", "DER", "-in",
            ])
            .arg(path))
        .stdout
    }
}

/// `openssl <args>`, returning (success, stdout+stderr).
pub fn openssl_try(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(crate::tokens::openssl35().unwrap())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

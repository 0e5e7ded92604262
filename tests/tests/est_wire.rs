//! `est::wire` and `est::csrattrs` against the OpenSSL command line: what kipuka writes, OpenSSL
//! reads; what OpenSSL (and coreutils `base64`) write, kipuka reads.
//!
//! Uses `KIPUKA_TEST_OPENSSL` (OpenSSL 3.5) when set, else the `openssl` on the PATH (Debian 12's
//! 3.0 is enough: nothing here needs ML-DSA from OpenSSL).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use kipuka::est::{
    csrattrs::{decode_csrattrs, encode_csrattrs, CsrAttrsSpec, KeyRequest, ObjectIdentifier},
    wire::{base64_lines, certs_from_certs_only, certs_only, decode_body},
};

const LIMIT: usize = 64 * 1024;

fn openssl() -> PathBuf {
    std::env::var_os("KIPUKA_TEST_OPENSSL")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("openssl"))
}

/// Runs a program in `dir`; panics with its stderr when it fails. Returns stdout.
fn run(dir: &Path, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Vec<u8> {
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    assert!(
        out.status.success(),
        "{program:?} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ossl(dir: &Path, args: &[&str]) -> Vec<u8> {
    run(dir, openssl(), args)
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8 output")
}

/// A P-256 CA and a leaf it issued, made by OpenSSL; returns (ca DER, leaf DER).
fn make_chain(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "ca.key",
        "-subj",
        "/CN=EST Wire Test CA",
        "-days",
        "30",
        "-out",
        "ca.pem",
    ]);
    ossl(dir, &args);
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "leaf.key",
        "-subj",
        "/CN=est-wire-device-7",
        "-out",
        "leaf.csr",
    ]);
    ossl(dir, &args);
    ossl(
        dir,
        &[
            "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "30",
            "-out", "leaf.pem",
        ],
    );
    let der = |name: &str| ossl(dir, &["x509", "-in", name, "-outform", "DER"]);
    (der("ca.pem"), der("leaf.pem"))
}

#[test]
fn openssl_reads_certs_only_with_both_subjects_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf) = make_chain(dir.path());
    let p7 = certs_only(&[ca.clone(), leaf.clone()]).unwrap();
    std::fs::write(dir.path().join("p7.der"), &p7).unwrap();

    let printed = text(ossl(
        dir.path(),
        &["pkcs7", "-inform", "DER", "-in", "p7.der", "-print_certs"],
    ));
    // "subject=CN = X" (OpenSSL 3.0) or "subject=CN=X" (3.5): the subjects, in order.
    let subjects: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("subject="))
        .collect();
    assert_eq!(subjects.len(), 2, "{printed}");
    assert!(
        subjects[0].ends_with("EST Wire Test CA"),
        "CA first, as given:\n{printed}"
    );
    assert!(subjects[1].ends_with("est-wire-device-7"), "{printed}");
    assert_eq!(printed.matches("-----BEGIN CERTIFICATE-----").count(), 2);

    // The certificates come back byte for byte, as OpenSSL extracts them.
    std::fs::write(dir.path().join("printed.pem"), &printed).unwrap();
    let first = ossl(
        dir.path(),
        &["x509", "-in", "printed.pem", "-outform", "DER"],
    );
    assert_eq!(first, ca);
    assert_eq!(certs_from_certs_only(&p7).unwrap(), [ca, leaf]);

    // Byte for byte what OpenSSL itself writes for the same chain, in the same order.
    let ossl_p7 = ossl(
        dir.path(),
        &[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            "ca.pem",
            "-certfile",
            "leaf.pem",
            "-outform",
            "DER",
        ],
    );
    assert_eq!(p7, ossl_p7);

    // The same through base64 and OpenSSL's PEM reader of PKCS#7.
    let pem = format!(
        "-----BEGIN PKCS7-----\n{}-----END PKCS7-----\n",
        base64_lines(&p7)
    );
    std::fs::write(dir.path().join("p7.pem"), pem).unwrap();
    let again = text(ossl(
        dir.path(),
        &["pkcs7", "-in", "p7.pem", "-print_certs", "-noout"],
    ));
    assert!(
        again.contains("EST Wire Test CA") && again.contains("est-wire-device-7"),
        "{again}"
    );
}

#[test]
fn openssl_base64_decodes_base64_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, leaf) = make_chain(dir.path());
    for der in [
        ca.clone(),
        certs_only(&[ca, leaf]).unwrap(),
        vec![0x30, 0x00],
    ] {
        let lines = base64_lines(&der);
        assert!(lines.split_terminator("\r\n").all(|l| l.len() <= 64));
        std::fs::write(dir.path().join("b64.txt"), &lines).unwrap();
        let decoded = ossl(dir.path(), &["base64", "-d", "-in", "b64.txt"]);
        assert_eq!(decoded, der, "{lines}");
    }
}

#[test]
fn openssl_asn1parse_shows_the_csrattrs_oids() {
    let oid = ObjectIdentifier::new_unwrap;
    let ecdsa_with_sha384 = oid("1.2.840.10045.4.3.3");
    let secp384r1 = oid("1.3.132.0.34");
    let sha256_with_rsa = oid("1.2.840.113549.1.1.11");
    let ml_dsa_65 = oid("2.16.840.1.101.3.4.3.18");
    let dir = tempfile::tempdir().unwrap();
    // (spec, what asn1parse must show, how many AttrOrOID elements)
    let cases: [(CsrAttrsSpec, &[&str], usize); 3] = [
        (
            CsrAttrsSpec {
                signature_algorithm: ecdsa_with_sha384,
                key: KeyRequest::Ec {
                    curve_oid: secp384r1,
                },
                challenge_password: true,
                extra_oids: vec![],
            },
            &[
                ":challengePassword",
                ":id-ecPublicKey",
                ":secp384r1",
                ":ecdsa-with-SHA384",
            ],
            3,
        ),
        (
            CsrAttrsSpec {
                signature_algorithm: sha256_with_rsa,
                key: KeyRequest::Rsa { bits: 3072 },
                challenge_password: false,
                extra_oids: vec![],
            },
            &[
                ":rsaEncryption",
                "INTEGER           :0C00",
                ":sha256WithRSAEncryption",
            ],
            2,
        ),
        (
            CsrAttrsSpec {
                signature_algorithm: ml_dsa_65,
                key: KeyRequest::MlDsa { oid: ml_dsa_65 },
                challenge_password: true,
                extra_oids: vec![],
            },
            &[":challengePassword"],
            2,
        ),
    ];
    for (spec, wanted, elements) in cases {
        let der = encode_csrattrs(&spec).unwrap();
        std::fs::write(dir.path().join("attrs.der"), &der).unwrap();
        let parsed = text(ossl(
            dir.path(),
            &["asn1parse", "-inform", "DER", "-in", "attrs.der"],
        ));
        for w in wanted {
            assert!(parsed.contains(w), "{w} not in\n{parsed}");
        }
        if spec.signature_algorithm == ml_dsa_65 {
            // OpenSSL 3.5 names it, 3.0 prints the number; written once, not twice.
            let n = parsed.matches(":ML-DSA-65").count()
                + parsed.matches(":2.16.840.1.101.3.4.3.18").count();
            assert_eq!(n, 1, "{parsed}");
        }
        assert_eq!(decode_csrattrs(&der).unwrap().len(), elements, "{parsed}");
    }
}

#[test]
fn openssl_csr_in_every_wrapping_decodes_to_the_same_der() {
    let dir = tempfile::tempdir().unwrap();
    ossl(
        dir.path(),
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-subj",
            "/CN=est-wire-csr",
            "-out",
            "req.pem",
        ],
    );
    let der = ossl(dir.path(), &["req", "-in", "req.pem", "-outform", "DER"]);
    std::fs::write(dir.path().join("req.der"), &der).unwrap();

    let pem = std::fs::read(dir.path().join("req.pem")).unwrap();
    let at64 = ossl(dir.path(), &["base64", "-in", "req.der"]);
    let unwrapped = ossl(dir.path(), &["base64", "-A", "-in", "req.der"]);
    let at76 = run(dir.path(), "base64", &["-w", "76", "req.der"]);
    assert!(at76.split(|b| *b == b'\n').any(|l| l.len() == 76));
    let crlf = String::from_utf8(at64.clone())
        .unwrap()
        .replace('\n', "\r\n");
    let new_label = String::from_utf8(pem.clone())
        .unwrap()
        .replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");

    for (name, body) in [
        ("PEM", pem),
        ("PEM NEW", new_label.into_bytes()),
        ("base64 at 64", at64),
        ("base64 at 76", at76),
        ("base64 unwrapped", unwrapped),
        ("base64 at 64, CRLF", crlf.into_bytes()),
    ] {
        assert_eq!(decode_body(&body, LIMIT).unwrap(), der, "{name}");
    }
}

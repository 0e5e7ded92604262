//! `kipuka serve` end to end: real tokens, real TLS, real EST clients (curl
//! with the OpenSSL command line, and strongSwan's `pki`). Every issued
//! certificate is verified by OpenSSL against the chain from `/cacerts`.

use std::process::Command;

use kipuka_tests::{
    est_server::{openssl, run, EstServer, PASSWORD, USER},
    tokens::TokenKind,
};

const PKCS10: &str = "Content-Type: application/pkcs10";

fn basic() -> String {
    format!("{USER}:{PASSWORD}")
}

fn key_args(label: &str) -> Vec<&'static str> {
    match label {
        "rsa" => vec!["-newkey", "rsa:2048"],
        "mldsa" => vec!["-newkey", "ML-DSA-65"],
        _ => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    }
}

#[test]
fn three_cas_enroll_on_softhsm2_and_kryoptic_and_verify_with_openssl() {
    for kind in TokenKind::ALL {
        let s = EstServer::start(kind);
        // The unlabelled path is the default CA (ec).
        let default = s.curl(&[&s.url(None, "cacerts")]);
        assert_eq!(default.status, 200, "{kind}: {}", default.text());
        let default_pem = s.pkcs7_to_pem(&default, "default-ca");
        assert!(std::fs::read_to_string(&default_pem)
            .unwrap()
            .contains("kipuka test EC CA"));
        for label in ["ec", "rsa", "mldsa"] {
            let cacerts = s.curl(&[&s.url(Some(label), "cacerts")]);
            assert_eq!(cacerts.status, 200, "{kind} {label}");
            assert_eq!(
                cacerts.header("content-type"),
                Some("application/pkcs7-mime; smime-type=certs-only")
            );
            assert_eq!(cacerts.header("content-transfer-encoding"), Some("base64"));
            assert_eq!(
                cacerts
                    .header("content-length")
                    .map(|l| l.parse::<usize>().unwrap()),
                Some(cacerts.body.len())
            );
            assert!(
                cacerts.text().lines().all(|l| l.len() <= 64),
                "64-column lines for curl"
            );
            let ca = s.pkcs7_to_pem(&cacerts, &format!("{label}-ca"));
            run(openssl()
                .args(["verify", "-check_ss_sig", "-CAfile"])
                .arg(&ca)
                .arg(&ca));

            let (csr, _) = s.csr(
                &format!("{label}-dev"),
                &key_args(label),
                &format!("/CN=device-{label}"),
                Some(&format!("DNS:device-{label}.example")),
            );
            let answer = s.curl(&[
                "-u",
                &basic(),
                "-H",
                PKCS10,
                "--data-binary",
                &format!("@{}", csr.display()),
                &s.url(Some(label), "simpleenroll"),
            ]);
            assert_eq!(answer.status, 200, "{kind} {label}: {}", answer.text());
            let leaf = s.pkcs7_to_pem(&answer, &format!("{label}-leaf"));
            s.verify(&ca, &leaf).unwrap_or_else(|e| {
                panic!("{kind} {label}: OpenSSL rejects the issued certificate: {e}")
            });
            let text = String::from_utf8(
                run(openssl()
                    .args(["x509", "-noout", "-text", "-in"])
                    .arg(&leaf))
                .stdout,
            )
            .unwrap();
            assert!(
                text.contains(&format!("DNS:device-{label}.example")),
                "{text}"
            );
            let expected_alg = match label {
                "rsa" => "rsassaPss",
                "mldsa" => "ML-DSA-65",
                _ => "ecdsa-with-SHA256",
            };
            assert!(
                text.contains(&format!("Signature Algorithm: {expected_alg}")),
                "{kind} {label}: {text}"
            );
        }
    }
}

#[test]
fn basic_challenge_client_certificate_enrollment_and_reenrollment() {
    let s = EstServer::start(TokenKind::SoftHsm2);
    let (csr, key) = s.csr("dev", &key_args("ec"), "/CN=dev1", Some("DNS:dev1.example"));
    let data = format!("@{}", csr.display());
    // libest-style clients send credentials only after the challenge.
    let challenge = s.curl(&[
        "-H",
        PKCS10,
        "--data-binary",
        &data,
        &s.url(None, "simpleenroll"),
    ]);
    assert_eq!(challenge.status, 401);
    assert_eq!(
        challenge.header("www-authenticate"),
        Some("Basic realm=\"kipuka\"")
    );
    let wrong = s.curl(&[
        "-u",
        &format!("{USER}:nope"),
        "-H",
        PKCS10,
        "--data-binary",
        &data,
        &s.url(None, "simpleenroll"),
    ]);
    assert_eq!(
        (wrong.status, wrong.text().trim()),
        (401, "unknown user or wrong password")
    );

    let first = s.curl(&[
        "-u",
        &basic(),
        "-H",
        PKCS10,
        "--data-binary",
        &data,
        &s.url(None, "simpleenroll"),
    ]);
    assert_eq!(first.status, 200, "{}", first.text());
    let cert = s.pkcs7_to_pem(&first, "dev1");
    let ca = s.pkcs7_to_pem(&s.curl(&[&s.url(None, "cacerts")]), "ca");
    let tls = |args: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--cert".to_string(),
            cert.display().to_string(),
            "--key".to_string(),
            key.display().to_string(),
        ];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    };
    // Enrollment with the client certificate instead of a password (a new key).
    let (csr2, _) = s.csr("dev-second", &key_args("ec"), "/CN=dev1-second", None);
    let args = tls(&[
        "-H",
        PKCS10,
        "--data-binary",
        &format!("@{}", csr2.display()),
        &s.url(None, "simpleenroll"),
    ]);
    let by_cert = s.curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(by_cert.status, 200, "{}", by_cert.text());
    s.verify(&ca, &s.pkcs7_to_pem(&by_cert, "dev1-second"))
        .unwrap();

    // Re-enrollment with a new key, same subject and SAN.
    let (recsr, _) = s.csr(
        "dev-rekey",
        &key_args("ec"),
        "/CN=dev1",
        Some("DNS:dev1.example"),
    );
    let args = tls(&[
        "-H",
        PKCS10,
        "--data-binary",
        &format!("@{}", recsr.display()),
        &s.url(None, "simplereenroll"),
    ]);
    let renewed = s.curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(renewed.status, 200, "{}", renewed.text());
    s.verify(&ca, &s.pkcs7_to_pem(&renewed, "dev1-renewed"))
        .unwrap();

    // Re-enrollment that changes the subject is refused; without a client certificate it is unauthenticated.
    let (other, _) = s.csr(
        "dev-other",
        &key_args("ec"),
        "/CN=someone-else",
        Some("DNS:dev1.example"),
    );
    let args = tls(&[
        "-H",
        PKCS10,
        "--data-binary",
        &format!("@{}", other.display()),
        &s.url(None, "simplereenroll"),
    ]);
    let refused = s.curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("must keep the subject"),
        "{}",
        refused.text()
    );
    let (san_changed, _) = s.csr(
        "dev-san",
        &key_args("ec"),
        "/CN=dev1",
        Some("DNS:evil.example"),
    );
    let args = tls(&[
        "-H",
        PKCS10,
        "--data-binary",
        &format!("@{}", san_changed.display()),
        &s.url(None, "simplereenroll"),
    ]);
    assert_eq!(
        s.curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .status,
        403
    );
    let no_cert = s.curl(&[
        "-u",
        &basic(),
        "-H",
        PKCS10,
        "--data-binary",
        &format!("@{}", recsr.display()),
        &s.url(None, "simplereenroll"),
    ]);
    assert_eq!(no_cert.status, 401, "{}", no_cert.text());
    // A certificate from the ec CA does not re-enroll at the rsa CA.
    let (rsa_csr, _) = s.csr(
        "dev-rsa-re",
        &key_args("rsa"),
        "/CN=dev1",
        Some("DNS:dev1.example"),
    );
    let args = tls(&[
        "-H",
        PKCS10,
        "--data-binary",
        &format!("@{}", rsa_csr.display()),
        &s.url(Some("rsa"), "simplereenroll"),
    ]);
    let wrong_ca = s.curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(wrong_ca.status, 403, "{}", wrong_ca.text());
}

#[test]
fn csrattrs_name_the_key_and_signature_algorithm_each_ca_wants() {
    let s = EstServer::start(TokenKind::SoftHsm2);
    for (label, expected) in [
        (
            "ec",
            vec!["id-ecPublicKey", "prime256v1", "ecdsa-with-SHA256"],
        ),
        (
            "rsa",
            vec!["rsaEncryption", ":0800", "sha256WithRSAEncryption"],
        ),
        ("mldsa", vec!["ML-DSA-65"]),
    ] {
        let a = s.curl(&[&s.url(Some(label), "csrattrs")]);
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), Some("application/csrattrs"));
        let b64 = s.dir.join(format!("{label}.attrs"));
        std::fs::write(&b64, &a.body).unwrap();
        let der = s.dir.join(format!("{label}.attrs.der"));
        run(openssl()
            .args(["base64", "-d", "-in"])
            .arg(&b64)
            .arg("-out")
            .arg(&der));
        let parsed = String::from_utf8(
            run(openssl()
                .args(["asn1parse", "-inform", "DER", "-in"])
                .arg(&der))
            .stdout,
        )
        .unwrap();
        for e in expected {
            assert!(parsed.contains(e), "{label}: {e} missing in\n{parsed}");
        }
    }
}

struct Bad {
    what: &'static str,
    args: Vec<String>,
    status: u16,
    body: &'static str,
}

#[test]
fn bad_requests_get_precise_errors_over_tls_12_and_13() {
    let s = EstServer::start(TokenKind::SoftHsm2);
    let (csr, _) = s.csr("good", &key_args("ec"), "/CN=good", None);
    let good = std::fs::read_to_string(&csr).unwrap();
    let garbage_der = s.dir.join("garbage.b64");
    std::fs::write(&garbage_der, "MIIBAAAAAAAAAAAA\n").unwrap();
    let tampered = s.dir.join("tampered.b64");
    {
        // Flip a byte inside the CSR's signature: valid DER, bad proof of possession.
        let der = std::fs::read(s.dir.join("good.csr.der")).unwrap();
        let mut der = der.clone();
        let n = der.len();
        der[n - 5] ^= 0x01;
        std::fs::write(s.dir.join("tampered.der"), &der).unwrap();
        run(openssl()
            .args(["base64", "-in"])
            .arg(s.dir.join("tampered.der"))
            .arg("-out")
            .arg(&tampered));
    }
    let big = s.dir.join("big.b64");
    std::fs::write(&big, "A".repeat(20_000)).unwrap();
    let post = |path: &str, extra: &[&str], data: String| -> Vec<String> {
        let mut v: Vec<String> = vec!["-u".into(), basic(), "-X".into(), "POST".into()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(["--data-binary".into(), data, path.into()]);
        v
    };
    let enroll = s.url(None, "simpleenroll");
    let table = vec![
        Bad {
            what: "malformed base64",
            args: post(&enroll, &["-H", PKCS10], "not base64!!".into()),
            status: 400,
            body: "body is not base64: invalid character '!' at byte 10",
        },
        Bad {
            what: "base64 of garbage DER",
            args: post(
                &enroll,
                &["-H", PKCS10],
                format!("@{}", garbage_der.display()),
            ),
            status: 400,
            body: "",
        },
        Bad {
            what: "CSR with a bad signature",
            args: post(&enroll, &["-H", PKCS10], format!("@{}", tampered.display())),
            status: 400,
            body: "CSR",
        },
        Bad {
            what: "wrong content type",
            args: post(
                &enroll,
                &["-H", "Content-Type: application/json"],
                good.clone(),
            ),
            status: 415,
            body: "application/json",
        },
        Bad {
            what: "body over the limit",
            args: post(&enroll, &["-H", PKCS10], format!("@{}", big.display())),
            status: 413,
            body: "larger than 16384 bytes",
        },
        Bad {
            what: "unknown label",
            args: vec![s.url(Some("nope"), "cacerts")],
            status: 404,
            body: "no CA labelled \"nope\"",
        },
        Bad {
            what: "path traversal in the label",
            args: vec![
                "--path-as-is".into(),
                format!("{}/.well-known/est/../cacerts", s.base),
            ],
            status: 404,
            body: "",
        },
        Bad {
            what: "encoded slash in the label",
            args: vec![format!("{}/.well-known/est/a%2Fb/cacerts", s.base)],
            status: 404,
            body: "not a CA label",
        },
        Bad {
            what: "unknown operation",
            args: vec![s.url(None, "enrollme")],
            status: 404,
            body: "not an EST operation",
        },
        Bad {
            what: "wrong method",
            args: vec!["-X".into(), "DELETE".into(), s.url(None, "cacerts")],
            status: 405,
            body: "cacerts takes GET, not DELETE",
        },
        Bad {
            what: "GET on simpleenroll",
            args: vec![enroll.clone()],
            status: 405,
            body: "takes POST",
        },
        Bad {
            what: "bad credentials",
            args: vec![
                "-u".into(),
                "alice:wrong".into(),
                "-H".into(),
                PKCS10.into(),
                "--data-binary".into(),
                good.clone(),
                enroll.clone(),
            ],
            status: 401,
            body: "wrong password",
        },
        Bad {
            what: "fullcmc",
            args: post(&s.url(None, "fullcmc"), &["-H", PKCS10], good.clone()),
            status: 501,
            body: "fullcmc",
        },
        Bad {
            what: "key type the CA does not allow",
            args: post(
                &s.url(Some("rsa"), "simpleenroll"),
                &["-H", PKCS10],
                good.clone(),
            ),
            status: 403,
            body: "",
        },
        Bad {
            what: "not an EST path",
            args: vec![format!("{}/index.html", s.base)],
            status: 404,
            body: "/.well-known/est/",
        },
    ];
    for tls in [
        ["--tlsv1.2", "--tls-max", "1.2"],
        ["--tlsv1.3", "--tls-max", "1.3"],
    ] {
        for bad in &table {
            let mut args: Vec<&str> = tls.to_vec();
            args.extend(bad.args.iter().map(String::as_str));
            let a = s.curl(&args);
            assert_eq!(
                a.status,
                bad.status,
                "{} over {}: {}",
                bad.what,
                tls[0],
                a.text()
            );
            assert!(
                a.text().contains(bad.body),
                "{} over {}: body {:?}",
                bad.what,
                tls[0],
                a.text()
            );
            assert!(
                a.elapsed < std::time::Duration::from_secs(10),
                "{} took {:?}",
                bad.what,
                a.elapsed
            );
        }
        // And a good enrollment still succeeds on the same server.
        let mut args: Vec<&str> = tls.to_vec();
        let data = format!("@{}", csr.display());
        let auth = basic();
        args.extend(["-u", &auth, "-H", PKCS10, "--data-binary", &data, &enroll]);
        assert_eq!(s.curl(&args).status, 200);
    }
}

/// strongSwan's `pki --est` of the DER CSR `csr` at the default CA, as the
/// Basic user; the certificate comes out as PEM on stdout.
fn pki_est(s: &EstServer, csr: &std::path::Path) -> std::process::Output {
    Command::new("pki")
        .args(["--est", "--url", &s.base, "--in"])
        .arg(csr)
        .arg("--cacert")
        .arg(&s.tls_ca)
        .args(["--userpass", &basic(), "--outform", "pem"])
        .output()
        .expect("strongSwan pki (package strongswan-pki) is installed by cargo xtask test")
}

#[test]
fn strongswan_pki_fetches_the_ca_and_enrolls() {
    let s = EstServer::start(TokenKind::SoftHsm2);
    // strongSwan reaches the unlabelled (default) CA: it cannot name a label.
    let ca = s.dir.join("ss-ca.pem");
    let out = Command::new("pki")
        .args(["--estca", "--url", &s.base, "--cacert"])
        .arg(&s.tls_ca)
        .arg("--caout")
        .arg(&ca)
        .args(["--outform", "pem", "--force"])
        .output()
        .expect("strongSwan pki (package strongswan-pki) is installed by cargo xtask test");
    assert!(
        out.status.success() && ca.exists(),
        "pki --estca: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(
        run(openssl()
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&ca))
        .stdout
    )
    .unwrap()
    .contains("kipuka test EC CA"));

    run(openssl()
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=strongswan-client",
            "-outform",
            "DER",
            "-keyout",
        ])
        .arg(s.dir.join("ss.key"))
        .arg("-out")
        .arg(s.dir.join("ss.csr.der")));
    let out = pki_est(&s, &s.dir.join("ss.csr.der"));
    assert!(
        out.status.success(),
        "pki --est: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = s.dir.join("ss.pem");
    std::fs::write(&cert, &out.stdout).unwrap();
    s.verify(&ca, &cert)
        .unwrap_or_else(|e| panic!("strongSwan's certificate: {e}"));
}

/// strongSwan's `pki --est` against the demo's name policy (the rules
/// `xtask/src/demo.rs` writes for its default CA): a device name with a DNS
/// name under devices.kipuka.test is issued with those names; a CSR for
/// `CN=www.bank.example` with `DNS:*.example.com` is refused, and strongSwan
/// says so and writes no certificate.
#[test]
fn strongswan_pki_enrolls_under_the_demo_policy_and_is_refused_a_foreign_name() {
    let mut s = EstServer::start_opts(
        TokenKind::SoftHsm2,
        kipuka_tests::est_server::EstOptions {
            no_launch: true,
            ..Default::default()
        },
    );
    let config = std::fs::read_to_string(&s.config).unwrap();
    let ec_profile = "allowed_keys = [\"ec:P-256\", \"ec:P-384\"]\n";
    assert!(config.contains(ec_profile), "{config}");
    let policy = "[ca.policy]\nmode = \"enforce\"\nallow_cn = [\"*\", \"{user}\"]\n\
                  allow_dns = [\".devices.kipuka.test\"]\n";
    std::fs::write(
        &s.config,
        config.replacen(ec_profile, &format!("{ec_profile}{policy}"), 1),
    )
    .unwrap();
    s.launch();
    let enroll = |name: &str, subject: &str, san: &str| {
        let csr = s.dir.join(format!("{name}.csr.der"));
        run(openssl()
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes", "-subj", subject, "-addext", san, "-outform", "DER", "-keyout",
            ])
            .arg(s.dir.join(format!("{name}.key")))
            .arg("-out")
            .arg(&csr));
        pki_est(&s, &csr)
    };
    let out = enroll(
        "device-42",
        "/CN=device-42",
        "subjectAltName=DNS:device-42.devices.kipuka.test",
    );
    assert!(
        out.status.success(),
        "pki --est: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = s.dir.join("device-42.pem");
    std::fs::write(&cert, &out.stdout).unwrap();
    let text = String::from_utf8(
        run(openssl()
            .args([
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "subjectAltName",
                "-in",
            ])
            .arg(&cert))
        .stdout,
    )
    .unwrap();
    // OpenSSL 3.0 prints "CN = device-42", 3.5 "CN=device-42".
    assert!(
        text.replace(" = ", "=").contains("subject=CN=device-42"),
        "{text}"
    );
    assert!(text.contains("DNS:device-42.devices.kipuka.test"), "{text}");

    let out = enroll(
        "bank",
        "/CN=www.bank.example",
        "subjectAltName=DNS:www.bank.example,DNS:*.example.com",
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a foreign name was issued: {said}");
    assert!(!said.contains("BEGIN CERTIFICATE"), "{said}");
    // The rule that refused it is in the 403's body (name_policy.rs reads
    // it with curl); strongSwan prints only the status.
    assert!(said.contains("403"), "strongSwan does not say why: {said}");
}

#[test]
fn every_certificate_issued_before_a_restart_is_in_the_store_after_it() {
    let mut s = EstServer::start(TokenKind::SoftHsm2);
    let mut serials = Vec::new();
    for i in 0..6 {
        let (csr, _) = s.csr(
            &format!("r{i}"),
            &key_args("ec"),
            &format!("/CN=restart-{i}"),
            None,
        );
        let a = s.curl(&[
            "-u",
            &basic(),
            "-H",
            PKCS10,
            "--data-binary",
            &format!("@{}", csr.display()),
            &s.url(None, "simpleenroll"),
        ]);
        assert_eq!(a.status, 200, "{}", a.text());
        let pem = s.pkcs7_to_pem(&a, &format!("r{i}"));
        let serial = String::from_utf8(
            run(openssl()
                .args(["x509", "-noout", "-serial", "-in"])
                .arg(&pem))
            .stdout,
        )
        .unwrap();
        serials.push(
            serial
                .trim()
                .trim_start_matches("serial=")
                .to_ascii_lowercase(),
        );
    }
    assert!(s.stop().success(), "graceful shutdown exits 0");
    s.launch();
    // Read the database with SQLite's own command line, not kipuka's store code.
    let db = s.dir.join("kipuka.db");
    for serial in &serials {
        let out = run(Command::new("sqlite3").arg(&db).arg(format!(
            "SELECT count(*) FROM issued_certificates WHERE serial_hex = '{serial}'"
        )));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "1",
            "serial {serial} missing after restart"
        );
    }
    let total = run(Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT count(*) FROM issued_certificates"));
    assert_eq!(String::from_utf8_lossy(&total.stdout).trim(), "6");
    let events = run(Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT count(*) FROM audit_events WHERE kind = 'CertificateIssued'"));
    assert_eq!(String::from_utf8_lossy(&events.stdout).trim(), "6");
    // And the restarted server issues again.
    let (csr, _) = s.csr("after", &key_args("ec"), "/CN=after-restart", None);
    let a = s.curl(&[
        "-u",
        &basic(),
        "-H",
        PKCS10,
        "--data-binary",
        &format!("@{}", csr.display()),
        &s.url(None, "simpleenroll"),
    ]);
    assert_eq!(a.status, 200, "{}", a.text());
}

#[test]
fn health_and_readiness_endpoints_answer() {
    let s = EstServer::start(TokenKind::SoftHsm2);
    let h = s.curl(&[&format!("{}/healthz", s.base)]);
    assert_eq!((h.status, h.text().as_str()), (200, "ok\n"));
    let r = s.curl(&[&format!("{}/readyz", s.base)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "ec healthy\nrsa healthy\nmldsa healthy\n");
}

/// One HTTP/1.1 exchange on a TLS 1.3 connection whose tls-exporter value
/// (RFC 9266) is handed to `make_body` first, so the CSR can carry it.
fn post_on_bound_connection(
    s: &EstServer,
    path: &str,
    make_body: impl FnOnce(&[u8; 32]) -> Vec<u8>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&s.tls_ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr = s.base.trim_start_matches("https://");
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    let exporter = tls
        .conn
        .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
        .unwrap();
    let body = make_body(&exporter);
    use base64ct::Encoding;
    let auth = base64ct::Base64::encode_string(format!("{USER}:{PASSWORD}").as_bytes());
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: kipuka-test\r\nAuthorization: Basic {auth}\r\nContent-Type: application/pkcs10\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(&body).unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn csr_with_challenge(s: &EstServer, name: &str, challenge: &str) -> Vec<u8> {
    let cnf = s.dir.join(format!("{name}.cnf"));
    std::fs::write(
        &cnf,
        format!("[req]\ndistinguished_name = dn\nattributes = attrs\nprompt = no\n[dn]\nCN = {name}\n[attrs]\nchallengePassword = {challenge}\n"),
    )
    .unwrap();
    let der = s.dir.join(format!("{name}.csr.der"));
    run(openssl()
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
        ])
        .arg(s.dir.join(format!("{name}.key")))
        .arg("-config")
        .arg(&cnf)
        .args(["-outform", "DER", "-out"])
        .arg(&der));
    let out = run(openssl().args(["base64", "-in"]).arg(&der));
    out.stdout
}

#[test]
fn a_ca_that_requires_channel_binding_checks_the_tls_exporter_in_challenge_password() {
    let bound = r#"[[ca]]
id = "bound"
cert = "{dir}/ca/bound.pem"
key = "pkcs11:token={label};object=ec-ca-key"
[ca.profile]
require_tls_exporter = true
allowed_keys = ["ec:P-256"]
"#;
    let s = EstServer::start_custom(TokenKind::SoftHsm2, "", Some(("bound", bound)));
    let path = "/.well-known/est/bound/simpleenroll";
    use base64ct::Encoding;

    // The CSR carries this connection's tls-exporter: issued.
    let (status, text) = post_on_bound_connection(&s, path, |exporter| {
        csr_with_challenge(&s, "bound-ok", &base64ct::Base64::encode_string(exporter))
    });
    assert_eq!(status, 200, "{text}");

    // The value of another connection: refused.
    let (_, _) = post_on_bound_connection(&s, "/.well-known/est/cacerts", |_| Vec::new());
    let stale = {
        let mut other = [0u8; 32];
        let (_, _) = post_on_bound_connection(&s, "/.well-known/est/bound/cacerts", |e| {
            other = *e;
            Vec::new()
        });
        base64ct::Base64::encode_string(&other)
    };
    let (status, text) =
        post_on_bound_connection(&s, path, |_| csr_with_challenge(&s, "bound-stale", &stale));
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("does not match this TLS connection's tls-exporter value"),
        "{text}"
    );

    // No challengePassword at all: refused, saying what is needed.
    let plain = s.curl(&[
        "-u",
        &basic(),
        "-H",
        PKCS10,
        "--data-binary",
        &format!(
            "@{}",
            s.csr("bound-none", &key_args("ec"), "/CN=none", None)
                .0
                .display()
        ),
        &s.url(Some("bound"), "simpleenroll"),
    ]);
    assert_eq!(plain.status, 403, "{}", plain.text());
    assert!(plain.text().contains("RFC 9266"), "{}", plain.text());

    // /csrattrs tells clients about it.
    let attrs = s.curl(&[&s.url(Some("bound"), "csrattrs")]);
    let b64 = s.dir.join("bound.attrs");
    std::fs::write(&b64, &attrs.body).unwrap();
    let der = s.dir.join("bound.attrs.der");
    run(openssl()
        .args(["base64", "-d", "-in"])
        .arg(&b64)
        .arg("-out")
        .arg(&der));
    let parsed = String::from_utf8(
        run(openssl()
            .args(["asn1parse", "-inform", "DER", "-in"])
            .arg(&der))
        .stdout,
    )
    .unwrap();
    assert!(parsed.contains("challengePassword"), "{parsed}");
}

//! Revocation end to end: `kipuka certs revoke` while `kipuka serve` runs,
//! then the OpenSSL command line checks the CRL the server publishes at
//! `/crl/<label>.crl` (`openssl crl -CAfile`, `openssl verify -crl_check`)
//! for the RSA-PSS, ECDSA and ML-DSA CAs on SoftHSM2 and Kryoptic, and the
//! revoked certificate is refused at /simplereenroll.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use kipuka_tests::{
    est_server::{openssl, run, EstServer},
    tokens::TokenKind,
};

const PKCS10: &str = "Content-Type: application/pkcs10";

fn key_args(label: &str) -> Vec<&'static str> {
    match label {
        "rsa" => vec!["-newkey", "rsa:2048"],
        "mldsa" => vec!["-newkey", "ML-DSA-65"],
        _ => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Enrolls `/CN=<name>` at `label` with Basic; `(cert PEM, key)`.
fn enroll(s: &EstServer, label: &str, name: &str) -> (PathBuf, PathBuf) {
    let (csr, key) = s.csr(name, &key_args(label), &format!("/CN={name}"), None);
    let answer = s.post_csr_basic(Some(label), "simpleenroll", &csr);
    assert_eq!(answer.status, 200, "{label} {name}: {}", answer.text());
    (s.pkcs7_to_pem(&answer, name), key)
}

/// `serial=...` as `openssl x509 -serial` prints it: what an operator pastes.
fn openssl_serial(cert: &Path) -> String {
    let out = run(openssl()
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `kipuka certs ARGS --config ...`.
fn certs(s: &EstServer, args: &[&str]) -> Output {
    s.kipuka()
        .arg("certs")
        .args(args)
        .arg("--config")
        .arg(&s.config)
        .output()
        .unwrap()
}

/// The CRL of `label` fetched with curl, as PEM (converted by OpenSSL).
fn fetch_crl(s: &EstServer, label: &str, name: &str) -> PathBuf {
    fetch_crl_at(s, &format!("{}/crl/{label}.crl", s.base), name)
}

/// The CRL at `url` (https on the server's TLS CA, or plain http), as PEM.
fn fetch_crl_at(s: &EstServer, url: &str, name: &str) -> PathBuf {
    let answer = s.curl(&[url]);
    assert_eq!(answer.status, 200, "{url}: {}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/pkix-crl"));
    let der = s.dir.join(format!("{name}.crl.der"));
    std::fs::write(&der, &answer.body).unwrap();
    let pem = s.dir.join(format!("{name}.crl.pem"));
    run(openssl()
        .args(["crl", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&pem));
    pem
}

/// `openssl crl -CAfile ca -text`: checks the signature; the text.
fn crl_text(ca: &Path, crl: &Path) -> String {
    let out = openssl()
        .args(["crl", "-noout", "-text", "-CAfile"])
        .arg(ca)
        .arg("-in")
        .arg(crl)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(
        out.status.success() && t.contains("verify OK"),
        "openssl crl -CAfile refused the CRL:\n{t}"
    );
    t
}

fn crl_number(text: &str) -> u64 {
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| l.contains("X509v3 CRL Number"))
        .and_then(|_| lines.next())
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no CRL Number in:\n{text}"))
}

/// `openssl verify -crl_check` of `leaf` against `ca` and `crl`.
fn verify_with_crl(ca: &Path, crl: &Path, leaf: &Path) -> Result<(), String> {
    let out = openssl()
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(ca)
        .arg("-CRLfile")
        .arg(crl)
        .arg(leaf)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

/// Polls the CRL of `label` until it lists `hex_serial` (or no longer does,
/// when `listed` is false); the time it took since `since`.
fn wait_for_crl(
    s: &EstServer,
    ca: &Path,
    label: &str,
    hex_serial: &str,
    listed: bool,
    since: Instant,
) -> (PathBuf, String, Duration) {
    for attempt in 0.. {
        let pem = fetch_crl(
            s,
            label,
            &format!("{label}-{hex_serial}-{listed}-{attempt}"),
        );
        let t = crl_text(ca, &pem);
        if t.contains(hex_serial) == listed {
            return (pem, t, since.elapsed());
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "{label}: the CRL did not change within 5 s:\n{t}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    unreachable!()
}

/// `openssl ocsp -issuer ca -CAfile ca -url .../ocsp/<label>` for `certs`
/// (and `serials`, hex), with `extra` options; (succeeded, output).
fn ocsp(
    s: &EstServer,
    label: &str,
    ca: &Path,
    certs: &[&Path],
    serials: &[&str],
    extra: &[&str],
) -> (bool, String) {
    let mut cmd = openssl();
    cmd.args(["ocsp", "-issuer"])
        .arg(ca)
        .arg("-CAfile")
        .arg(ca)
        .args(["-url", &format!("{}/ocsp/{label}", s.base)]);
    for c in certs {
        cmd.arg("-cert").arg(c);
    }
    for serial in serials {
        cmd.args(["-serial", &format!("0x{serial}")]);
    }
    let out = cmd.args(extra).output().unwrap();
    (out.status.success(), text(&out))
}

/// The status line OpenSSL prints for `name` (a -cert path or `0x<serial>`).
fn ocsp_status<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no status for {name} in:\n{output}"))
        .trim()
}

/// The OCSP status of `cert` without nonce, until it reads `want`; the time
/// it took since `since`.
fn wait_for_ocsp(
    s: &EstServer,
    label: &str,
    ca: &Path,
    cert: &Path,
    want: &str,
    since: Instant,
) -> Duration {
    loop {
        let (ok, out) = ocsp(s, label, ca, &[cert], &[], &["-no_nonce"]);
        assert!(ok && out.contains("Response verify OK"), "{label}: {out}");
        if ocsp_status(&out, cert.to_str().unwrap()) == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "{label}: OCSP still says {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// /simplereenroll with `cert` and its `key` for TLS, a new key in the CSR,
/// the same subject `/CN=<name>`.
fn reenroll(s: &EstServer, label: &str, cert: &Path, key: &Path, name: &str) -> (u16, String) {
    let file = format!("{name}-renewal");
    let (csr, _) = s.csr(&file, &key_args(label), &format!("/CN={name}"), None);
    let answer = s.curl(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-H",
        PKCS10,
        "--data-binary",
        &format!("@{}", csr.display()),
        &s.url(Some(label), "simplereenroll"),
    ]);
    (answer.status, answer.text())
}

fn revoke_and_check(kind: TokenKind, s: &EstServer, label: &str) {
    let ca = s.pkcs7_to_pem(
        &s.curl(&[&s.url(Some(label), "cacerts")]),
        &format!("{label}-ca"),
    );
    let (revoked, revoked_key) = enroll(s, label, &format!("{label}-lost"));
    let (kept, _) = enroll(s, label, &format!("{label}-kept"));

    let before = fetch_crl(s, label, &format!("{label}-before"));
    let before_text = crl_text(&ca, &before);
    assert!(
        before_text.contains("No Revoked Certificates"),
        "{before_text}"
    );
    verify_with_crl(&ca, &before, &revoked).unwrap();

    let serial = openssl_serial(&revoked);
    let hex = serial.trim_start_matches("serial=").to_string();
    // OCSP before: good, and the answer without nonce is cached.
    wait_for_ocsp(s, label, &ca, &revoked, "good", Instant::now());
    let out = certs(
        s,
        &[
            "revoke",
            &serial,
            "--reason",
            "keyCompromise",
            "--invalidity-date",
            "2026-01-02T03:04:05Z",
        ],
    );
    assert!(out.status.success(), "{kind} {label}: {}", text(&out));
    let revoked_at = Instant::now();

    let (after, after_text, took) = wait_for_crl(s, &ca, label, &hex, true, revoked_at);
    assert!(
        took <= Duration::from_secs(1),
        "{kind} {label}: the server took {took:?} to publish the revocation"
    );
    assert!(after_text.contains("Key Compromise"), "{after_text}");
    assert!(after_text.contains("Invalidity Date"), "{after_text}");
    assert!(
        after_text.contains("Jan  2 03:04:05 2026 GMT"),
        "{after_text}"
    );
    assert!(
        after_text.contains("X509v3 Authority Key Identifier"),
        "{after_text}"
    );
    assert!(crl_number(&after_text) > crl_number(&before_text));
    let e = verify_with_crl(&ca, &after, &revoked).unwrap_err();
    assert!(e.contains("certificate revoked"), "{kind} {label}: {e}");
    verify_with_crl(&ca, &after, &kept).unwrap_or_else(|e| panic!("{kind} {label}: {e}"));

    // OCSP: the cached "good" gave way to "revoked" (the store's generation).
    let took = wait_for_ocsp(s, label, &ca, &revoked, "revoked", revoked_at);
    assert!(
        took <= Duration::from_secs(2),
        "{kind} {label}: OCSP took {took:?}"
    );
    // With a nonce (OpenSSL checks it is echoed), several certificates and an unknown serial.
    let (ok, out) = ocsp(s, label, &ca, &[&revoked, &kept], &["7F00FF"], &[]);
    assert!(
        ok && out.contains("Response verify OK"),
        "{kind} {label}: {out}"
    );
    assert!(!out.contains("WARNING: no nonce"), "{out}");
    assert_eq!(
        ocsp_status(&out, revoked.to_str().unwrap()),
        "revoked",
        "{out}"
    );
    assert!(out.contains("Reason: keyCompromise"), "{out}");
    assert_eq!(ocsp_status(&out, kept.to_str().unwrap()), "good", "{out}");
    assert_eq!(ocsp_status(&out, "0x7F00FF"), "unknown", "{out}");

    // Twice is a clear error; the CLI sees the state.
    let again = certs(
        s,
        &["revoke", &hex.to_lowercase(), "--reason", "superseded"],
    );
    assert!(!again.status.success());
    assert!(text(&again).contains("already revoked"), "{}", text(&again));
    let shown = certs(s, &["show", &hex, "--json"]);
    assert!(shown.status.success(), "{}", text(&shown));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["revocation"]["reason"], "keyCompromise");

    // ML-DSA client certificates cannot do TLS with this server (rustls'
    // ring provider has no ML-DSA); the EC and RSA ones can.
    if label != "mldsa" {
        let (status, body) = reenroll(s, label, &revoked, &revoked_key, &format!("{label}-lost"));
        assert_eq!(status, 403, "{kind} {label}: {body}");
        assert!(body.contains("revoked (keyCompromise)"), "{body}");
    }
}

#[test]
fn cli_revocations_reach_the_crl_of_every_ca_and_block_reenrollment() {
    for kind in TokenKind::ALL {
        let s = EstServer::start(kind);
        for label in ["ec", "rsa", "mldsa"] {
            revoke_and_check(kind, &s, label);
        }
    }
}

#[test]
fn holds_lift_numbers_survive_restarts_and_bad_requests_get_precise_errors() {
    let mut s = EstServer::start(TokenKind::SoftHsm2);
    let ca = s.pkcs7_to_pem(&s.curl(&[&s.url(Some("ec"), "cacerts")]), "ec-ca");
    let (cert, key) = enroll(&s, "ec", "held");
    let hex = openssl_serial(&cert)
        .trim_start_matches("serial=")
        .to_string();
    // With colons, as some tools print serials.
    let colons: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let out = certs(
        &s,
        &["revoke", &colons.join(":"), "--reason", "certificateHold"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (held, t, _) = wait_for_crl(&s, &ca, "ec", &hex, true, Instant::now());
    assert!(t.contains("Certificate Hold"), "{t}");
    assert!(verify_with_crl(&ca, &held, &cert).is_err());
    let (status, body) = reenroll(&s, "ec", &cert, &key, "held");
    assert_eq!(status, 403, "{body}");

    let listed = certs(&s, &["list", "--status", "revoked", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["serial"], hex.to_lowercase());
    let table = certs(&s, &["list", "--ca", "ec"]);
    assert!(text(&table).contains("revoked"), "{}", text(&table));

    let out = certs(&s, &["unhold", &hex]);
    assert!(out.status.success(), "{}", text(&out));
    let (lifted, t, _) = wait_for_crl(&s, &ca, "ec", &hex, false, Instant::now());
    verify_with_crl(&ca, &lifted, &cert).unwrap();
    let number = crl_number(&t);
    let (status, body) = reenroll(&s, "ec", &cert, &key, "held");
    assert_eq!(status, 200, "{body}");

    // Clear errors, non-zero exits.
    for (args, want) in [
        (vec!["unhold", hex.as_str()], "not on hold"),
        (
            vec!["revoke", "7f00ff", "--reason", "keyCompromise"],
            "no certificate with serial 7f00ff",
        ),
        (
            vec!["revoke", hex.as_str(), "--reason", "stolen"],
            "unknown revocation reason",
        ),
        (
            vec!["revoke", "xyz", "--reason", "superseded"],
            "is not a certificate serial",
        ),
        (
            vec![
                "revoke",
                hex.as_str(),
                "--reason",
                "superseded",
                "--at",
                "2999-01-01T00:00:00Z",
            ],
            "in the future",
        ),
        (
            vec!["list", "--status", "lost"],
            "use valid, revoked or expired",
        ),
        (vec!["list", "--ca", "nope"], "no [[ca]] with id \"nope\""),
    ] {
        let out = certs(&s, &args);
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
    }
    let pem = certs(&s, &["show", &hex, "--pem"]);
    assert!(pem.status.success());
    let pem_file = s.dir.join("shown.pem");
    std::fs::write(&pem_file, &pem.stdout).unwrap();
    s.verify(&ca, &pem_file).unwrap();

    // The audit log has each change, with who made it.
    {
        use kipuka::store::CertificateStore;
        let store = kipuka::store::SqliteStore::open(&kipuka::config::DbConfig {
            url: format!("sqlite://{}", s.dir.join("kipuka.db").display()),
            ..Default::default()
        })
        .unwrap();
        let revoked = store.events(Some("CertificateRevoked"), 10).unwrap();
        assert_eq!(revoked.len(), 1, "{revoked:?}");
        assert_eq!(revoked[0].data["reason"], "certificateHold");
        assert!(revoked[0].data["by"].as_str().unwrap().starts_with("cli:"));
        assert_eq!(
            store.events(Some("CertificateUnheld"), 10).unwrap().len(),
            1
        );
    }

    // HTTP: precise errors, never a panic.
    for (args, status, want) in [
        (
            vec![format!("{}/crl/nope.crl", s.base)],
            404,
            "no CA labelled \"nope\"",
        ),
        (
            vec![format!("{}/crl/ec", s.base)],
            404,
            "/crl/<ca-label>.crl",
        ),
        (
            vec!["-X".into(), "POST".into(), format!("{}/crl/ec.crl", s.base)],
            405,
            "takes GET",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = s.curl(&args);
        assert_eq!(a.status, status, "{args:?}: {}", a.text());
        assert!(a.text().contains(want), "{args:?}: {}", a.text());
    }
    // By id as well as by label.
    fetch_crl(&s, "rsa", "rsa-by-id");

    // A restart keeps cRLNumber growing.
    s.stop();
    s.launch();
    let after_restart = fetch_crl(&s, "ec", "ec-restarted");
    let t = crl_text(&ca, &after_restart);
    assert!(crl_number(&t) > number, "{number} then {t}");
}

#[test]
fn ocsp_get_is_cached_with_rfc5019_headers_and_bad_requests_get_precise_errors() {
    let s = EstServer::start(TokenKind::SoftHsm2);
    let ca = s.pkcs7_to_pem(&s.curl(&[&s.url(Some("ec"), "cacerts")]), "ec-ca");
    let (cert, _) = enroll(&s, "ec", "ocsp-dev");
    let (other_ca_cert, _) = enroll(&s, "rsa", "ocsp-rsa-dev");
    let rsa_ca = s.pkcs7_to_pem(&s.curl(&[&s.url(Some("rsa"), "cacerts")]), "rsa-ca");

    // Without nonce: the same signed bytes twice (cached, no HSM operation).
    let (r1, r2) = (s.dir.join("r1.der"), s.dir.join("r2.der"));
    for r in [&r1, &r2] {
        let (ok, out) = ocsp(
            &s,
            "ec",
            &ca,
            &[&cert],
            &[],
            &["-no_nonce", "-respout", r.to_str().unwrap()],
        );
        assert!(ok && out.contains("Response verify OK"), "{out}");
        assert_eq!(ocsp_status(&out, cert.to_str().unwrap()), "good");
    }
    assert_eq!(std::fs::read(&r1).unwrap(), std::fs::read(&r2).unwrap());

    // GET with the request in base64, standard and URL-safe.
    let req = s.dir.join("req.der");
    let (ok, out) = ocsp(
        &s,
        "ec",
        &ca,
        &[&cert],
        &[],
        &[
            "-no_nonce",
            "-reqout",
            req.to_str().unwrap(),
            "-respout",
            "/dev/null",
        ],
    );
    assert!(ok, "{out}");
    use base64ct::{Base64, Base64UrlUnpadded, Encoding};
    let der = std::fs::read(&req).unwrap();
    let std_b64 = Base64::encode_string(&der)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    for encoded in [std_b64, Base64UrlUnpadded::encode_string(&der)] {
        let a = s.curl(&[&format!("{}/ocsp/ec/{encoded}", s.base)]);
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.header("content-type"), Some("application/ocsp-response"));
        let cc = a.header("cache-control").unwrap_or_default().to_string();
        assert!(
            cc.contains("max-age=") && cc.contains("public") && cc.contains("no-transform"),
            "{cc}"
        );
        assert!(a.header("expires").is_some() && a.header("last-modified").is_some());
        assert!(a.header("etag").is_some());
        let resp = s.dir.join("get.der");
        std::fs::write(&resp, &a.body).unwrap();
        let out = openssl()
            .args(["ocsp", "-no_nonce", "-issuer"])
            .arg(&ca)
            .arg("-CAfile")
            .arg(&ca)
            .arg("-cert")
            .arg(&cert)
            .arg("-respin")
            .arg(&resp)
            .output()
            .unwrap();
        let t = text(&out);
        assert!(
            out.status.success() && t.contains("Response verify OK"),
            "{t}"
        );
        assert!(t.contains(": good"), "{t}");
    }

    // Another CA's certificate: unauthorized (OCSPResponseStatus 6).
    let (_, out) = ocsp(&s, "ec", &rsa_ca, &[&other_ca_cert], &[], &["-no_nonce"]);
    assert!(out.contains("unauthorized"), "{out}");

    let post = |content_type: &str, body: &Path| {
        s.curl(&[
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            &format!("@{}", body.display()),
            &format!("{}/ocsp/ec", s.base),
        ])
    };
    let junk = s.dir.join("junk.der");
    std::fs::write(&junk, b"\x30\x03junk").unwrap();
    let a = post("application/ocsp-request", &junk);
    assert_eq!(
        (a.status, a.body.as_slice()),
        (200, &[0x30, 0x03, 0x0a, 0x01, 0x01][..]),
        "malformedRequest"
    );
    let a = post("application/octet-stream", &req);
    assert_eq!(a.status, 415, "{}", a.text());
    assert!(
        a.text().contains("application/ocsp-request"),
        "{}",
        a.text()
    );
    let big = s.dir.join("big.der");
    std::fs::write(&big, vec![0x30; 20_000]).unwrap();
    let a = post("application/ocsp-request", &big);
    assert_eq!(a.status, 413, "{}", a.text());
    for (url, status, want) in [
        (
            format!("{}/ocsp/nope", s.base),
            404,
            "no CA labelled \"nope\"",
        ),
        (
            format!("{}/ocsp/ec/%%%not-base64", s.base),
            400,
            "percent escape",
        ),
        (format!("{}/ocsp/ec/not*base64", s.base), 400, "not base64"),
        (format!("{}/ocsp/ec", s.base), 400, "the request is missing"),
    ] {
        let a = s.curl(&[&url]);
        assert_eq!(a.status, status, "{url}: {}", a.text());
        assert!(a.text().contains(want), "{url}: {}", a.text());
    }
    let a = s.curl(&["-X", "DELETE", &format!("{}/ocsp/ec", s.base)]);
    assert_eq!(a.status, 405, "{}", a.text());
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn certificates_name_the_plain_http_crl_and_ocsp_urls_and_openssl_follows_them() {
    let port = free_port();
    let http = format!("http://127.0.0.1:{port}");
    let block = format!(
        r#"[[ca]]
id = "pub"
cert = "{{dir}}/ca/pub.pem"
key = "pkcs11:token={{label}};object=ec-ca-key"
[ca.profile]
allowed_keys = ["ec:P-256"]
crl_urls = ["{http}/crl/pub.crl"]
ocsp_urls = ["{http}/ocsp/pub"]
ca_issuers_urls = ["{http}/ca/pub.pem"]
"#
    );
    let s = EstServer::start_custom(
        TokenKind::SoftHsm2,
        &format!("http_listen = \"127.0.0.1:{port}\""),
        Some(("pub", &block)),
    );
    let ca = s.pkcs7_to_pem(&s.curl(&[&s.url(Some("pub"), "cacerts")]), "pub-ca");
    let (cert, _) = enroll(&s, "pub", "published");
    let (kept, _) = enroll(&s, "pub", "published-kept");
    let out = run(openssl()
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert));
    let t = text(&out);
    assert!(t.contains(&format!("URI:{http}/crl/pub.crl")), "{t}");
    assert!(t.contains(&format!("OCSP - URI:{http}/ocsp/pub")), "{t}");
    assert!(
        t.contains(&format!("CA Issuers - URI:{http}/ca/pub.pem")),
        "{t}"
    );
    let ocsp_uri = run(openssl()
        .args(["x509", "-noout", "-ocsp_uri", "-in"])
        .arg(&cert));
    let ocsp_uri = String::from_utf8_lossy(&ocsp_uri.stdout).trim().to_string();
    assert_eq!(ocsp_uri, format!("{http}/ocsp/pub"));

    let hex = openssl_serial(&cert)
        .trim_start_matches("serial=")
        .to_string();
    let out = certs(&s, &["revoke", &hex, "--reason", "cessationOfOperation"]);
    assert!(out.status.success(), "{}", text(&out));
    let since = Instant::now();

    // OCSP at the URL the certificate names, over plain HTTP.
    loop {
        let out = openssl()
            .args(["ocsp", "-issuer"])
            .arg(&ca)
            .arg("-CAfile")
            .arg(&ca)
            .arg("-cert")
            .arg(&cert)
            .args(["-url", &ocsp_uri])
            .output()
            .unwrap();
        let t = text(&out);
        assert!(
            out.status.success() && t.contains("Response verify OK"),
            "{t}"
        );
        if ocsp_status(&t, cert.to_str().unwrap()) == "revoked" {
            assert!(t.contains("Reason: cessationOfOperation"), "{t}");
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(5), "{t}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The CRL from the distribution point, over plain HTTP (re-signed
    // within the server's poll of the store).
    let mut attempt = 0;
    let crl_pem = loop {
        attempt += 1;
        let crl_pem = fetch_crl_at(
            &s,
            &format!("{http}/crl/pub.crl"),
            &format!("cdp-{attempt}"),
        );
        match verify_with_crl(&ca, &crl_pem, &cert) {
            Err(e) => {
                assert!(e.contains("certificate revoked"), "{e}");
                break crl_pem;
            }
            Ok(()) => assert!(
                since.elapsed() < Duration::from_secs(5),
                "the CRL at the distribution point still passes the revoked certificate"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    verify_with_crl(&ca, &crl_pem, &kept).unwrap();

    // The plain listener never serves EST.
    let out = run(Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{http}/.well-known/est/pub/cacerts")));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    let out = run(Command::new("curl")
        .args(["-sSf"])
        .arg(format!("{http}/healthz")));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

/// A server on SoftHSM2 with one more CA, `id`, on the EC key, with the
/// TOML `tables` (e.g. its `[ca.crl]`).
fn start_with_ec_ca(id: &str, tables: &str) -> EstServer {
    let block = format!(
        "[[ca]]\nid = \"{id}\"\ncert = \"{{dir}}/ca/{id}.pem\"\n\
         key = \"pkcs11:token={{label}};object=ec-ca-key\"\n\
         [ca.profile]\nallowed_keys = [\"ec:P-256\"]\n{tables}\n"
    );
    EstServer::start_custom(TokenKind::SoftHsm2, "", Some((id, &block)))
}

/// `[ca.crl] keep_expired_days`: a revoked certificate leaves the CRL once
/// it has expired (default), or that many days after it expired, and a CRL
/// that keeps expired certificates says since when with `expiredCertsOnCRL`
/// (RFC 5280 §5.2.7). Expiry is what the store records as `not_after`: the
/// test moves it into the past with the `sqlite3` command line rather than
/// wait for certificates to expire.
#[test]
fn expired_certificates_leave_the_crl_after_the_configured_grace() {
    let s = start_with_ec_ca("kept", "[ca.crl]\nkeep_expired_days = 5");
    let db = s.dir.join("kipuka.db");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for label in ["ec", "kept"] {
        let ca = s.pkcs7_to_pem(
            &s.curl(&[&s.url(Some(label), "cacerts")]),
            &format!("{label}-ca"),
        );
        let mut serials = Vec::new();
        for name in ["recent", "old", "live", "trigger"] {
            let (cert, _) = enroll(&s, label, &format!("{label}-{name}"));
            serials.push(
                openssl_serial(&cert)
                    .trim_start_matches("serial=")
                    .to_string(),
            );
        }
        let [recent, old, live, trigger] = &serials[..] else {
            unreachable!()
        };
        for hex in [recent, old, live] {
            let out = certs(&s, &["revoke", hex.as_str(), "--reason", "superseded"]);
            assert!(out.status.success(), "{}", text(&out));
        }
        wait_for_crl(&s, &ca, label, live, true, Instant::now());
        // Expired two days ago (inside the grace of "kept") and ten days ago.
        for (hex, days) in [(recent, 2), (old, 10)] {
            kipuka_tests::est_client::sqlite(
                &db,
                &format!(
                    "PRAGMA busy_timeout = 5000; UPDATE issued_certificates SET not_after = {} \
                     WHERE serial_hex = '{}'",
                    now - days * 86_400,
                    hex.to_lowercase()
                ),
            );
        }
        // The next revocation re-signs the CRL.
        let out = certs(&s, &["revoke", trigger.as_str(), "--reason", "superseded"]);
        assert!(out.status.success(), "{}", text(&out));
        let (_, t, _) = wait_for_crl(&s, &ca, label, trigger, true, Instant::now());
        assert!(t.contains(live.as_str()), "{label}: {t}");
        assert!(
            !t.contains(old.as_str()),
            "{label}: expired 10 days ago:\n{t}"
        );
        // OpenSSL 3.5 has no name for expiredCertsOnCRL; it prints the OID
        // and the value's octets, a GeneralizedTime, with their ASCII.
        let marker = "2.5.29.60";
        if label == "kept" {
            assert!(t.contains(recent.as_str()), "kept for 5 days:\n{t}");
            let since =
                der::DateTime::from_unix_duration(std::time::Duration::from_secs(now - 5 * 86_400))
                    .unwrap();
            let day = format!("{:04}{:02}{:02}", since.year(), since.month(), since.day());
            let ext = t
                .split(marker)
                .nth(1)
                .unwrap_or_else(|| panic!("no expiredCertsOnCRL:\n{t}"));
            let ext: String = ext.lines().take(3).collect();
            assert!(
                ext.contains(&day),
                "expiredCertsOnCRL is not 5 days ago ({day}): {ext}"
            );
        } else {
            assert!(!t.contains(recent.as_str()), "expired 2 days ago:\n{t}");
            assert!(!t.contains(marker), "{t}");
        }
    }
    let listed = certs(&s, &["list", "--status", "expired", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");
}

/// `openssl ocsp -no_nonce` for `cert` of CA `label`, the response kept in
/// `respout`; the output, and the thisUpdate as Unix seconds (read by
/// GNU `date` from what OpenSSL prints).
fn ocsp_kept(s: &EstServer, label: &str, ca: &Path, cert: &Path, respout: &Path) -> (String, u64) {
    let (ok, out) = ocsp(
        s,
        label,
        ca,
        &[cert],
        &[],
        &["-no_nonce", "-respout", respout.to_str().unwrap()],
    );
    assert!(ok && out.contains("Response verify OK"), "{out}");
    let this_update = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("This Update: "))
        .unwrap_or_else(|| panic!("no This Update in:\n{out}"));
    let secs = run(Command::new("date")
        .args(["-u", "+%s", "-d"])
        .arg(this_update));
    let secs = String::from_utf8_lossy(&secs.stdout)
        .trim()
        .parse()
        .unwrap();
    (out, secs)
}

/// RFC 5019 responses are kept warm by the server, not by the requests: a
/// revocation of another certificate leaves a cached response as it was
/// (no signature), and a response half-way to its nextUpdate is re-signed
/// in the background, so that the next request gets a response signed
/// before it came; but only a response asked for since it was signed.
#[test]
fn cached_ocsp_responses_are_re_signed_in_the_background() {
    let s = start_with_ec_ca("warm", "[ca.ocsp]\nmax_age_seconds = 60");
    let ca = s.pkcs7_to_pem(&s.curl(&[&s.url(Some("warm"), "cacerts")]), "warm-ca");
    let (kept, _) = enroll(&s, "warm", "warm-kept");
    let (lost, _) = enroll(&s, "warm", "warm-lost");
    let (idle, _) = enroll(&s, "warm", "warm-idle");
    let (first, first_at) = (s.dir.join("first.der"), Instant::now());
    let (_, t1) = ocsp_kept(&s, "warm", &ca, &kept, &first);
    // Asked once, then not again until the end.
    ocsp_kept(&s, "warm", &ca, &idle, &s.dir.join("idle-first.der"));

    let hex = openssl_serial(&lost)
        .trim_start_matches("serial=")
        .to_string();
    let out = certs(&s, &["revoke", &hex, "--reason", "keyCompromise"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for_ocsp(&s, "warm", &ca, &lost, "revoked", Instant::now());
    let again = s.dir.join("again.der");
    ocsp_kept(&s, "warm", &ca, &kept, &again);
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&again).unwrap(),
        "another certificate's revocation re-signed this one's response"
    );

    // Re-signed at 30 s (half of max_age), within the refresh task's second.
    std::thread::sleep(Duration::from_secs(40).saturating_sub(first_at.elapsed()));
    let asked_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (out, t3) = ocsp_kept(&s, "warm", &ca, &kept, &s.dir.join("later.der"));
    assert!(out.contains(&format!("{}: good", kept.display())), "{out}");
    assert!(
        (t1 + 30..=t1 + 33).contains(&t3),
        "thisUpdate {t3}: first {t1}, asked at {asked_at}: not re-signed half-way"
    );
    assert!(t3 + 5 <= asked_at, "re-signed when asked, not before");
    // The response nobody asked for again was not kept warm: dropped at
    // 30 s, signed anew for this request.
    let (_, t_idle) = ocsp_kept(&s, "warm", &ca, &idle, &s.dir.join("idle-later.der"));
    assert!(
        t_idle + 1 >= asked_at,
        "thisUpdate {t_idle}, asked at {asked_at}: an unasked response was re-signed in the background"
    );
}

//! `kipuka-bench` against a real `kipuka serve` on SoftHSM2: short runs
//! (a couple of seconds) that check what it counts, not how fast anything
//! is. What it reports as enrollments is checked against the server's own
//! SQLite store with the sqlite3 command line.

use std::process::{Command, Output};

use kipuka_tests::{
    artifacts::bench_bin,
    est_server::{openssl, run, EstServer, PASSWORD, USER},
    tokens::TokenKind,
};
use serde_json::Value;

const PKCS10: &str = "Content-Type: application/pkcs10";

fn bench_output(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(bench_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("kipuka-bench runs")
}

/// A short JSON run at concurrency 4 against `label`'s simpleenroll.
fn bench(s: &EstServer, label: Option<&str>, extra: &[&str]) -> Value {
    bench_env(s, label, extra, &[])
}

fn bench_env(
    s: &EstServer,
    label: Option<&str>,
    extra: &[&str],
    env: &[(String, String)],
) -> Value {
    let url = s.url(label, "simpleenroll");
    let cacert = s.tls_ca.display().to_string();
    let mut args = vec![
        "--url",
        &url,
        "--cacert",
        &cacert,
        "--concurrency",
        "4",
        "--duration",
        "2",
        "--csrs",
        "2000",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = bench_output(&args, env);
    assert!(
        out.status.success(),
        "kipuka-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kipuka-bench printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn count(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {v:#}"))
}

fn rate(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {v:#}"))
}

/// Certificates the server committed to its store.
fn stored(s: &EstServer) -> u64 {
    let out = Command::new("sqlite3")
        .arg(s.dir.join("kipuka.db"))
        .arg("SELECT count(*) FROM issued_certificates")
        .output()
        .expect("sqlite3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn assert_clean(v: &Value) {
    assert!(count(v, "/load/enrollments") > 0, "{v:#}");
    assert_eq!(count(v, "/load/error_total"), 0, "{v:#}");
    assert!(rate(v, "/load/enrollments_per_s") > 0.0, "{v:#}");
    assert!(rate(v, "/load/latency/p99_ms") > 0.0, "{v:#}");
}

#[test]
fn counts_enrollments_with_basic_and_client_certificate_and_401s_as_errors() {
    let s = EstServer::start(TokenKind::SoftHsm2);
    let basic = format!("{USER}:{PASSWORD}");

    let keepalive = bench(&s, None, &["--basic", &basic]);
    assert_clean(&keepalive);
    assert_eq!(keepalive["setup"]["auth"], "basic");
    // Keep-alive: one connection per worker (more only if the server closed one).
    assert!(count(&keepalive, "/load/connections") <= 8, "{keepalive:#}");
    let after_first = stored(&s);
    assert!(
        after_first >= count(&keepalive, "/load/enrollments"),
        "the bench counted more enrollments than the store holds ({after_first})"
    );

    let fresh = bench(&s, None, &["--basic", &basic, "--no-keepalive"]);
    assert_clean(&fresh);
    assert_eq!(
        count(&fresh, "/load/connections"),
        count(&fresh, "/load/requests_sent"),
        "{fresh:#}"
    );
    assert!(stored(&s) >= after_first + count(&fresh, "/load/enrollments"));

    // A client certificate from the EC CA (a trust anchor for TLS clients).
    let (csr, key) = s.csr(
        "bench-client",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=bench-client",
        None,
    );
    let enrolled = s.curl(&[
        "-u",
        &basic,
        "-H",
        PKCS10,
        "--data-binary",
        &format!("@{}", csr.display()),
        &s.url(None, "simpleenroll"),
    ]);
    assert_eq!(enrolled.status, 200, "{}", enrolled.text());
    let cert = s.pkcs7_to_pem(&enrolled, "bench-client");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let by_cert = bench(&s, None, &["--cert", &cert, "--key", &key]);
    assert_clean(&by_cert);
    assert_eq!(by_cert["setup"]["auth"], "certificate");

    // A wrong password: every answer is a 401, counted as an error.
    let wrong = bench(&s, None, &["--basic", &format!("{USER}:not the password")]);
    assert_eq!(count(&wrong, "/load/enrollments"), 0, "{wrong:#}");
    let errors = count(&wrong, "/load/error_total");
    assert!(errors > 0, "{wrong:#}");
    assert_eq!(
        count(&wrong, "/load/errors/by_kind/401"),
        errors,
        "{wrong:#}"
    );
    assert_eq!(
        wrong["load"]["errors"]["by_kind"]
            .as_object()
            .unwrap()
            .len(),
        1,
        "{wrong:#}"
    );
}

#[test]
fn raw_sign_measures_the_ca_keys_on_the_same_token() {
    let s = EstServer::start(TokenKind::SoftHsm2);
    let basic = format!("{USER}:{PASSWORD}");
    let mut env = s.token.env.clone();
    env.push(("KIPUKA_HSM_PIN".into(), s.token.user_pin.clone()));
    let module = s.token.module.display().to_string();
    for (label, object, key_type, mechanism) in [
        ("ec", "ec-ca-key", "ec:P-256", "ecdsa"),
        ("rsa", "rsa-ca-key", "rsa:2048", "rsa-pss"),
    ] {
        let uri = format!("pkcs11:token={};object={object}", s.token.label);
        let v = bench_env(
            &s,
            Some(label),
            &[
                "--basic",
                &basic,
                "--key-type",
                key_type,
                "--csrs",
                "200",
                "--rsa-keys",
                "2",
                "--raw-sign",
                &uri,
                "--module",
                &module,
                "--raw-duration",
                "1",
            ],
            &env,
        );
        assert_clean(&v);
        assert_eq!(v["raw"]["mechanism"], mechanism, "{v:#}");
        for field in ["sign_per_s", "verify_per_s", "verify_sign_per_s"] {
            assert!(
                rate(&v, &format!("/raw/{field}")) > 0.0,
                "{label} {field}: {v:#}"
            );
        }
        let ratio = rate(&v, "/ratios/enroll_to_sign");
        let expected = rate(&v, "/load/enrollments_per_s") / rate(&v, "/raw/sign_per_s");
        assert!((ratio - expected).abs() < 1e-9 * expected.max(1.0), "{v:#}");
    }
}

#[test]
fn a_missing_server_or_a_bad_url_is_a_clear_error_not_a_panic() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Any trust anchor will do: the connection fails before TLS.
    let dir = tempfile::tempdir().unwrap();
    let anchor = dir.path().join("anchor.pem");
    run(openssl()
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=anchor",
            "-keyout",
        ])
        .arg(dir.path().join("anchor.key"))
        .arg("-out")
        .arg(&anchor));
    let cacert = anchor.display().to_string();
    for (url, expected) in [
        (
            format!("https://127.0.0.1:{port}/.well-known/est/simpleenroll"),
            "cannot connect to 127.0.0.1",
        ),
        (
            format!("http://127.0.0.1:{port}/.well-known/est/simpleenroll"),
            "use https://",
        ),
        (
            format!("https://127.0.0.1:{port}/enroll"),
            "/.well-known/est",
        ),
    ] {
        let out = bench_output(
            &["--url", &url, "--cacert", &cacert, "--duration", "1"],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(!stderr.contains("panicked"), "{url}: {stderr}");
    }
}

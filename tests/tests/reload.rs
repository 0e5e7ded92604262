//! SIGHUP reloads the configuration while clients keep talking: a Basic
//! user's new password and a new TLS certificate apply at once, the old
//! password is refused, no request under a concurrent curl load fails, and
//! a configuration that does not build is refused while the previous one
//! keeps serving.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use kipuka_tests::{
    artifacts::kipuka_bin,
    est_server::{openssl, run, tls_leaf, EstServer, PASSWORD, USER},
    tokens::TokenKind,
};

const NEW_PASSWORD: &str = "a new password after the reload";

fn hash_password(password: &str) -> String {
    let mut child = Command::new(kipuka_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// SHA-256 fingerprint of a PEM certificate file, as OpenSSL prints it.
fn fingerprint(pem: &Path) -> String {
    let out = run(openssl()
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The fingerprint of the certificate the server presents to `openssl s_client`.
fn served_fingerprint(server: &EstServer) -> String {
    let host = server.base.trim_start_matches("https://");
    let out = run(openssl()
        .args([
            "s_client",
            "-connect",
            host,
            "-servername",
            "localhost",
            "-CAfile",
        ])
        .arg(&server.tls_ca)
        .stdin(Stdio::null()));
    let served = server.dir.join("served.pem");
    std::fs::write(&served, &out.stdout).unwrap();
    fingerprint(&served)
}

/// Sends SIGHUP and waits for the log to say `expect` once more than now.
fn reload(server: &EstServer, expect: &str) {
    let log = || std::fs::read_to_string(&server.log).unwrap_or_default();
    let before = log().matches(expect).count();
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while log().matches(expect).count() == before {
        assert!(
            Instant::now() < deadline,
            "no `{expect}` in the log after SIGHUP:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Enrolls a new P-256 CSR at the default CA as `user:password`; the status.
fn enroll(server: &EstServer, name: &str, user: &str, password: &str) -> u16 {
    let (csr, _) = server.csr(
        name,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &format!("/CN={name}"),
        None,
    );
    server
        .curl(&[
            "-u",
            &format!("{user}:{password}"),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", csr.display()),
            &server.url(None, "simpleenroll"),
        ])
        .status
}

/// curl loops fetching /cacerts, ten requests per connection, until `stop`:
/// each returns the status of every request.
fn load(server: &EstServer, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<u16>>> {
    (0..3)
        .map(|_| {
            let stop = stop.clone();
            let tls_ca = server.tls_ca.clone();
            let url = server.url(None, "cacerts");
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let out = Command::new("curl")
                        .args(["-sS", "--max-time", "30", "--cacert"])
                        .arg(&tls_ca)
                        .args(["-w", "%{http_code}\n"])
                        // One `-o` per URL: curl pairs them in order.
                        .args((0..10).flat_map(|_| ["-o", "/dev/null", url.as_str()]))
                        .output()
                        .unwrap();
                    let codes = String::from_utf8_lossy(&out.stdout);
                    statuses.extend(codes.lines().map(|c| c.parse::<u16>().unwrap_or(0)));
                    // A connection curl could not make prints fewer codes.
                    statuses.extend(std::iter::repeat_n(0, 10 - codes.lines().count().min(10)));
                }
                statuses
            })
        })
        .collect()
}

#[test]
fn sighup_applies_new_password_and_certificate_without_failing_requests() {
    let server = EstServer::start(TokenKind::SoftHsm2);
    let tls = server.dir.join("tls");
    assert_eq!(enroll(&server, "before", USER, PASSWORD), 200);
    let old_cert = fingerprint(&tls.join("server.pem"));
    assert_eq!(served_fingerprint(&server), old_cert);

    // The new certificate (same TLS CA, new key), the new password, and one
    // restart-only change.
    let (new_cert, _) = tls_leaf(
        &tls,
        "server2",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let new_fp = fingerprint(&new_cert);
    assert_ne!(new_fp, old_cert);
    let original = std::fs::read_to_string(&server.config).unwrap();
    let old_hash = hash_password_line(&original);
    let changed = original
        .replace(&old_hash, &hash_password(NEW_PASSWORD))
        .replace("/server.pem\"", "/server2.pem\"")
        .replace("/server.key\"", "/server2.key\"")
        .replace("request_timeout_secs = 5", "request_timeout_secs = 6");
    assert_ne!(changed, original);
    std::fs::write(&server.config, &changed).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let loaders = load(&server, &stop);
    std::thread::sleep(Duration::from_millis(500));
    reload(&server, "configuration reloaded");
    std::thread::sleep(Duration::from_millis(500));

    assert_eq!(
        served_fingerprint(&server),
        new_fp,
        "the new certificate is served"
    );
    assert_eq!(enroll(&server, "new-password", USER, NEW_PASSWORD), 200);
    assert_eq!(enroll(&server, "old-password", USER, PASSWORD), 401);
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains("applies only after a restart") && log.contains("\"server (listen"),
        "the restart-only change is not reported:\n{log}"
    );

    // Refused: a certificate file that does not exist, with yet another
    // password: neither half may apply.
    let broken = changed
        .replace(&hash_password_line(&changed), &hash_password("third"))
        .replace("/server2.pem\"", "/missing.pem\"");
    std::fs::write(&server.config, broken).unwrap();
    reload(&server, "configuration refused");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);

    assert_eq!(
        served_fingerprint(&server),
        new_fp,
        "still the last good certificate"
    );
    assert_eq!(enroll(&server, "after-refusal", USER, NEW_PASSWORD), 200);
    assert_eq!(enroll(&server, "third", USER, "third"), 401);

    let statuses: Vec<u16> = loaders
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let failed = statuses.iter().filter(|s| **s != 200).count();
    println!(
        "reload under load: {} requests, {failed} not 200",
        statuses.len()
    );
    assert!(statuses.len() >= 30, "too little load: {}", statuses.len());
    assert_eq!(
        failed, 0,
        "requests failed across the reloads: {statuses:?}"
    );
}

/// The password hash in a configuration text.
fn hash_password_line(config: &str) -> String {
    config
        .lines()
        .find_map(|l| l.strip_prefix("password_hash = "))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

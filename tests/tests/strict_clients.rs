//! EST clients that do not behave like curl (issue 13): a client that
//! writes the headers, then the body in a second write, reads the 401
//! challenge and answers it on the same connection; a client that finds
//! headers by comparing names byte for byte; a client still sending when
//! the server has decided to close.
//!
//! The client here is raw rustls over TCP, so that the test sees the bytes
//! on the wire: header names exactly as sent, whether the whole body came,
//! and how the connection ended (TLS close_notify, or a reset). What it
//! receives is checked by the OpenSSL command line.

use std::{
    io::{self, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use base64ct::Encoding;
use kipuka_tests::{
    est_server::{EstOptions, EstServer, PASSWORD, USER},
    shim::start_behind_shim,
    tokens::TokenKind,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;

/// Every header name kipuka may send, spelled as the RFCs write them.
const CANONICAL: &[&str] = &[
    "WWW-Authenticate",
    "Content-Type",
    "Content-Length",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Retry-After",
    "Date",
    "Allow",
    "Connection",
    "Cache-Control",
    "X-Request-Id",
];

/// The pause between a request's headers and its body: long enough that
/// the server has answered from the headers alone before the body comes.
const PAUSE: Duration = Duration::from_millis(200);

/// An answer as it came off the wire.
struct Wire {
    status: u16,
    /// Header names and values, names exactly as sent.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    fn header(&self, exact_name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == exact_name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Names not spelled as the RFCs write them.
    fn misspelled(&self) -> Vec<String> {
        self.headers
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| !CANONICAL.contains(&n.as_str()))
            .collect()
    }
}

/// One TLS connection, written and read by hand.
struct Raw {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    pending: Vec<u8>,
}

impl Raw {
    /// Connects to `s`; with `client` = `(cert, key)` PEM files, with that
    /// TLS client certificate.
    fn connect(s: &EstServer, client: Option<(&Path, &Path)>) -> Raw {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&s.tls_ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let tcp = TcpStream::connect(s.base.trim_start_matches("https://")).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        Raw {
            tls,
            pending: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// Sends the head, waits [`PAUSE`], sends the body, reads the answer.
    fn exchange_paused(&mut self, head: &[u8], body: &[u8]) -> io::Result<Wire> {
        self.send(head)?;
        std::thread::sleep(PAUSE);
        self.send(body)?;
        self.answer()
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 16384];
        let n = self.tls.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed with {} bytes of an answer",
                    self.pending.len()
                ),
            ));
        }
        self.pending.extend_from_slice(&buf[..n]);
        Ok(())
    }

    /// Reads one answer (kipuka always sends Content-Length).
    fn answer(&mut self) -> io::Result<Wire> {
        let head_end = loop {
            if let Some(i) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill()?;
        };
        let head = String::from_utf8(self.pending[..head_end].to_vec()).unwrap();
        self.pending.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
        while self.pending.len() < len {
            self.fill()?;
        }
        let body = self.pending.drain(..len).collect();
        Ok(Wire {
            status,
            headers,
            body,
        })
    }

    /// Reads until the server ends the connection: `Ok` for a TLS
    /// close_notify (the graceful end), the error otherwise (a reset, an
    /// EOF without close_notify).
    fn expect_graceful_end(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            match self.tls.read(&mut buf)? {
                0 => return Ok(()),
                n => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}

fn basic() -> String {
    base64ct::Base64::encode_string(format!("{USER}:{PASSWORD}").as_bytes())
}

/// A request head (no body): `headers` are extra lines.
fn head(method: &str, path: &str, headers: &[String], body_len: usize) -> Vec<u8> {
    let mut h =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: strict-est/1.0\r\n");
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str(&format!("Content-Length: {body_len}\r\n\r\n"));
    h.into_bytes()
}

fn pkcs10() -> String {
    "Content-Type: application/pkcs10".into()
}

fn auth() -> String {
    format!("Authorization: Basic {}", basic())
}

/// A CSR for a new P-256 key and `/CN=name` (base64 of DER, as EST sends
/// it), and the key's file.
fn csr(s: &EstServer, name: &str, san: Option<&str>) -> (Vec<u8>, PathBuf) {
    csr_as(s, name, name, san)
}

/// Same, with the files named `file`.
fn csr_as(s: &EstServer, file: &str, name: &str, san: Option<&str>) -> (Vec<u8>, PathBuf) {
    let (b64, key) = s.csr(
        file,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &format!("/CN={name}"),
        san,
    );
    (std::fs::read(b64).unwrap(), key)
}

/// The default CA's certificate (from /cacerts, by curl and OpenSSL).
fn ca_pem(s: &EstServer) -> PathBuf {
    let cacerts = s.curl(&[&s.url(None, "cacerts")]);
    assert_eq!(cacerts.status, 200);
    s.pkcs7_to_pem(&cacerts, "ca")
}

/// The 401 challenge, whole, with the header spelled as RFC 7235 does.
fn assert_challenge(answer: &Wire, what: &str) {
    assert_eq!(answer.status, 401, "{what}: {}", answer.text());
    let challenge = answer.header("WWW-Authenticate").unwrap_or_else(|| {
        panic!(
            "{what}: no header named exactly WWW-Authenticate in {:?}",
            answer.headers
        )
    });
    assert!(challenge.starts_with("Basic realm="), "{what}: {challenge}");
    assert_eq!(
        answer.header("Content-Length").map(str::parse::<usize>),
        Some(Ok(answer.body.len())),
        "{what}: the whole body came"
    );
    assert!(!answer.body.is_empty(), "{what}: the 401 says why");
    assert_eq!(
        answer.header("Connection"),
        None,
        "{what}: the connection stays open, and the server must not say otherwise"
    );
}

fn a_client_that_answers_the_challenge_on_the_same_connection_enrolls(s: &EstServer) {
    let ca = ca_pem(s);
    let (body, _) = csr(s, "strict-1", None);
    let path = "/.well-known/est/simpleenroll";
    let mut c = Raw::connect(s, None);

    // The challenge: headers first, the CSR 200 ms later.
    let challenge = c
        .exchange_paused(&head("POST", path, &[pkcs10()], body.len()), &body)
        .expect("the whole 401 arrives");
    assert_challenge(&challenge, "first attempt");

    // The answer to it, on the same connection.
    let enrolled = c
        .exchange_paused(&head("POST", path, &[pkcs10(), auth()], body.len()), &body)
        .expect("the retry on the same connection is answered");
    assert_eq!(enrolled.status, 200, "{}", enrolled.text());
    assert_eq!(
        enrolled.header("Content-Type"),
        Some("application/pkcs7-mime; smime-type=certs-only")
    );
    assert_eq!(enrolled.header("Content-Transfer-Encoding"), Some("base64"));
    assert_eq!(enrolled.misspelled(), Vec::<String>::new());
    let leaf = s.pkcs7_b64_to_pem(&enrolled.body, "strict-1-leaf");
    s.verify(&ca, &leaf).unwrap();

    // And again with a fresh CSR on the same connection, headers and body
    // in one write this time.
    let (body2, _) = csr(s, "strict-2", None);
    let mut req = head("POST", path, &[pkcs10(), auth()], body2.len());
    req.extend_from_slice(&body2);
    c.send(&req).unwrap();
    let again = c.answer().unwrap();
    assert_eq!(again.status, 200, "{}", again.text());
    s.verify(&ca, &s.pkcs7_b64_to_pem(&again.body, "strict-2-leaf"))
        .unwrap();
}

fn early_refusals_leave_the_connection_usable(s: &EstServer) {
    let (body, _) = csr(s, "early", None);
    let wrong = format!(
        "Authorization: Basic {}",
        base64ct::Base64::encode_string(format!("{USER}:not the password").as_bytes())
    );
    let mut c = Raw::connect(s, None);
    // Each of these is decided from the headers alone, before the body.
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "wrong password",
            head(
                "POST",
                "/.well-known/est/simpleenroll",
                &[pkcs10(), wrong],
                body.len(),
            ),
            401,
        ),
        (
            "unknown CA label",
            head(
                "POST",
                "/.well-known/est/nope/simpleenroll",
                &[pkcs10(), auth()],
                body.len(),
            ),
            404,
        ),
        (
            "wrong content type",
            head(
                "POST",
                "/.well-known/est/simpleenroll",
                &["Content-Type: text/plain".into(), auth()],
                body.len(),
            ),
            415,
        ),
        (
            "wrong method",
            head(
                "PUT",
                "/.well-known/est/simpleenroll",
                &[pkcs10(), auth()],
                body.len(),
            ),
            405,
        ),
        (
            "Full CMC",
            head(
                "POST",
                "/.well-known/est/fullcmc",
                &["Content-Type: application/pkcs7-mime".into(), auth()],
                body.len(),
            ),
            501,
        ),
    ];
    for (what, request_head, status) in cases {
        let answer = c
            .exchange_paused(&request_head, &body)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        assert_eq!(answer.header("Connection"), None, "{what}");
        assert_eq!(
            answer.header("Content-Length").map(str::parse::<usize>),
            Some(Ok(answer.body.len())),
            "{what}"
        );
        assert_eq!(answer.misspelled(), Vec::<String>::new(), "{what}");
    }
    // Still the same connection: an enrollment on it.
    let ok = c
        .exchange_paused(
            &head(
                "POST",
                "/.well-known/est/simpleenroll",
                &[pkcs10(), auth()],
                body.len(),
            ),
            &body,
        )
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    s.verify(&ca_pem(s), &s.pkcs7_b64_to_pem(&ok.body, "early-leaf"))
        .unwrap();
}

fn reenroll_challenge_keeps_the_connection_and_mtls_reenroll_works(s: &EstServer) {
    let ca = ca_pem(s);
    let (body, key) = csr(s, "renew-me", Some("DNS:renew-me.example"));
    let enroll_path = "/.well-known/est/simpleenroll";
    let reenroll_path = "/.well-known/est/simplereenroll";

    let mut c = Raw::connect(s, None);
    let first = c
        .exchange_paused(
            &head("POST", enroll_path, &[pkcs10(), auth()], body.len()),
            &body,
        )
        .unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    let cert = s.pkcs7_b64_to_pem(&first.body, "renew-me-leaf");

    // Without the client certificate, re-enrollment is challenged, and the
    // connection stays usable.
    let refused = c
        .exchange_paused(
            &head("POST", reenroll_path, &[pkcs10(), auth()], body.len()),
            &body,
        )
        .unwrap();
    assert_challenge(&refused, "simplereenroll without a client certificate");
    let cacerts = c
        .exchange_paused(&head("GET", "/.well-known/est/cacerts", &[], 0), b"")
        .unwrap();
    assert_eq!(cacerts.status, 200);

    // With it, on a new connection: a new subject is refused (403), and
    // the connection stays usable for the renewal with a new key.
    let mut m = Raw::connect(s, Some((&cert, &key)));
    let (other, _) = csr(s, "someone-else", Some("DNS:renew-me.example"));
    let forbidden = m
        .exchange_paused(
            &head("POST", reenroll_path, &[pkcs10()], other.len()),
            &other,
        )
        .unwrap();
    assert_eq!(forbidden.status, 403, "{}", forbidden.text());
    assert!(
        forbidden.text().contains("must keep the subject"),
        "{}",
        forbidden.text()
    );
    assert_eq!(forbidden.header("Connection"), None);
    assert_eq!(forbidden.misspelled(), Vec::<String>::new());
    let (rekey, _) = csr_as(s, "renew-me-2", "renew-me", Some("DNS:renew-me.example"));
    let renewed = m
        .exchange_paused(
            &head("POST", reenroll_path, &[pkcs10()], rekey.len()),
            &rekey,
        )
        .unwrap();
    assert_eq!(renewed.status, 200, "{}", renewed.text());
    assert_eq!(renewed.misspelled(), Vec::<String>::new());
    s.verify(&ca, &s.pkcs7_b64_to_pem(&renewed.body, "renewed-leaf"))
        .unwrap();
}

fn serverkeygen_after_a_challenge_on_the_same_connection(s: &EstServer) {
    let (body, _) = csr(s, "skg-device", None);
    let path = "/.well-known/est/skg/serverkeygen";
    let mut c = Raw::connect(s, None);
    let challenge = c
        .exchange_paused(&head("POST", path, &[pkcs10()], body.len()), &body)
        .unwrap();
    assert_challenge(&challenge, "serverkeygen");
    let answer = c
        .exchange_paused(&head("POST", path, &[pkcs10(), auth()], body.len()), &body)
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.misspelled(), Vec::<String>::new());
    let ct = answer.header("Content-Type").expect("Content-Type");
    let boundary = ct
        .strip_prefix("multipart/mixed; boundary=")
        .unwrap_or_else(|| panic!("{ct}"));
    // The parts' headers too, as RFC 7030 §4.4.2 writes them.
    let text = answer.text();
    for needle in [
        "Content-Type: application/pkcs8",
        "Content-Type: application/pkcs7-mime; smime-type=certs-only",
        "Content-Transfer-Encoding: base64",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    // The certificate part verifies against the CA.
    let cert_part = text
        .split(&format!("--{boundary}"))
        .find(|p| p.contains("smime-type=certs-only"))
        .unwrap();
    let b64 = cert_part.split("\r\n\r\n").nth(1).unwrap();
    let leaf = s.pkcs7_b64_to_pem(b64.as_bytes(), "skg-leaf");
    let cacerts = s.curl(&[&s.url(Some("skg"), "cacerts")]);
    s.verify(&s.pkcs7_to_pem(&cacerts, "skg-ca"), &leaf)
        .unwrap();
}

fn an_oversize_body_gets_the_whole_413_and_a_graceful_close(s: &EstServer) {
    let mut c = Raw::connect(s, None);
    let total = 100_000; // the harness allows 16,384
    c.send(&head(
        "POST",
        "/.well-known/est/simpleenroll",
        &[pkcs10(), auth()],
        total,
    ))
    .unwrap();
    // The client keeps sending its body, in 4 KiB writes, before it reads:
    // without a lingering close the server's kernel answers these bytes
    // with a reset, and the client loses the 413 it has not read yet.
    let chunk = vec![b'A'; 4096];
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        c.send(&chunk[..n])
            .expect("the server still takes the body");
        sent += n;
        std::thread::sleep(Duration::from_millis(5));
    }
    let answer = c.answer().expect("the whole 413 arrives");
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(answer.text().contains("16384"), "{}", answer.text());
    assert_eq!(answer.header("Connection"), Some("close"));
    assert_eq!(answer.misspelled(), Vec::<String>::new());
    c.expect_graceful_end()
        .expect("the server ends with close_notify, not a reset");
}

fn a_body_that_never_comes_gets_an_answer_and_a_graceful_close(s: &EstServer) {
    let mut c = Raw::connect(s, None);
    // 1,000 bytes announced, 10 sent, then silence: the 401 waits for the
    // body up to the request timeout (5 s in the harness), then goes out
    // with Connection: close.
    c.send(&head(
        "POST",
        "/.well-known/est/simpleenroll",
        &[pkcs10()],
        1000,
    ))
    .unwrap();
    c.send(&[b'A'; 10]).unwrap();
    let started = Instant::now();
    let answer = c.answer().expect("the whole 401 arrives");
    let waited = started.elapsed();
    assert_eq!(answer.status, 401, "{}", answer.text());
    assert!(answer.header("WWW-Authenticate").is_some());
    assert_eq!(answer.header("Connection"), Some("close"));
    assert!(
        waited < Duration::from_secs(8),
        "answered after {waited:?}, the request timeout is 5 s"
    );
    c.expect_graceful_end()
        .expect("the server ends with close_notify, not a reset");
}

/// One request on a fresh connection, all at once.
fn once(s: &EstServer, request_head: Vec<u8>, body: &[u8]) -> Wire {
    let mut c = Raw::connect(s, None);
    let mut req = request_head;
    req.extend_from_slice(body);
    c.send(&req).unwrap();
    c.answer().unwrap()
}

fn every_answer_spells_its_header_names_as_the_rfcs_do(s: &EstServer) {
    let (body, _) = csr(s, "spelling", None);
    let get = |path: &str| head("GET", path, &[], 0);
    let post = |path: &str, lines: &[String], len: usize| head("POST", path, lines, len);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, u16)> = vec![
        ("cacerts", get("/.well-known/est/cacerts"), vec![], 200),
        ("csrattrs", get("/.well-known/est/csrattrs"), vec![], 200),
        ("healthz", get("/healthz"), vec![], 200),
        (
            "simpleenroll",
            post(
                "/.well-known/est/simpleenroll",
                &[pkcs10(), auth()],
                body.len(),
            ),
            body.clone(),
            200,
        ),
        (
            "bad base64",
            post("/.well-known/est/simpleenroll", &[pkcs10(), auth()], 9),
            b"!!not-b64".to_vec(),
            400,
        ),
        (
            "no credentials",
            post("/.well-known/est/simpleenroll", &[pkcs10()], body.len()),
            body.clone(),
            401,
        ),
        (
            "unknown label",
            get("/.well-known/est/nope/cacerts"),
            vec![],
            404,
        ),
        (
            "wrong method",
            head("DELETE", "/.well-known/est/cacerts", &[], 0),
            vec![],
            405,
        ),
        (
            "oversize",
            post("/.well-known/est/simpleenroll", &[pkcs10(), auth()], 20_000),
            vec![b'A'; 20_000],
            413,
        ),
        (
            "wrong content type",
            post(
                "/.well-known/est/simpleenroll",
                &["Content-Type: text/plain".into(), auth()],
                body.len(),
            ),
            body.clone(),
            415,
        ),
        (
            "Full CMC",
            post(
                "/.well-known/est/fullcmc",
                &["Content-Type: application/pkcs7-mime".into(), auth()],
                body.len(),
            ),
            body.clone(),
            501,
        ),
    ];
    for (what, request_head, request_body, status) in cases {
        let answer = once(s, request_head, &request_body);
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        assert_eq!(answer.misspelled(), Vec::<String>::new(), "{what}");
        assert!(
            answer.header("Content-Type").is_some(),
            "{what}: {:?}",
            answer.headers
        );
        assert!(answer.header("Content-Length").is_some(), "{what}");
        assert!(answer.header("Date").is_some(), "{what}");
    }
}

/// A CA with TLS-only `/serverkeygen` delivery beside the harness's CAs.
const SKG_CA: &str = r#"
[[ca]]
id = "skg"
cert = "{dir}/ca/skg.pem"
key = "pkcs11:token={label};object=ec-ca-key"
[ca.profile]
allowed_keys = ["ec:P-256"]
[ca.serverkeygen]
allow_unencrypted = true
"#;

/// The clients above, one after the other, on one server (a server per
/// test costs more than the tests on two cores).
#[test]
fn strict_clients_enroll_and_get_whole_answers() {
    let s = EstServer::start_custom(TokenKind::SoftHsm2, "", Some(("skg", SKG_CA)));
    a_client_that_answers_the_challenge_on_the_same_connection_enrolls(&s);
    early_refusals_leave_the_connection_usable(&s);
    reenroll_challenge_keeps_the_connection_and_mtls_reenroll_works(&s);
    serverkeygen_after_a_challenge_on_the_same_connection(&s);
    an_oversize_body_gets_the_whole_413_and_a_graceful_close(&s);
    a_body_that_never_comes_gets_an_answer_and_a_graceful_close(&s);
    every_answer_spells_its_header_names_as_the_rfcs_do(&s);
}

#[test]
fn the_503_says_retry_after_in_its_rfc_spelling() {
    // Every HSM signature failing (the PKCS#11 shim).
    let (s, mut shim) = start_behind_shim(TokenKind::SoftHsm2, None, EstOptions::default(), |_| ());
    shim.set("sign_error_rate", json!(1.0));
    std::thread::sleep(Duration::from_millis(100));
    let (body, _) = csr(&s, "unavailable", None);
    let answer = once(
        &s,
        head(
            "POST",
            "/.well-known/est/simpleenroll",
            &[pkcs10(), auth()],
            body.len(),
        ),
        &body,
    );
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert_eq!(answer.header("Retry-After"), Some("5"));
    assert_eq!(answer.misspelled(), Vec::<String>::new());
}

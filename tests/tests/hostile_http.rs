//! Hostile HTTP through a real `kipuka serve` (SoftHSM2): oversized and
//! never-ending headers, trickled bodies, truncated DER, ASN.1 bombs, CSRs
//! with thousands of extensions, wrong methods, path traversal in labels,
//! non-UTF-8 bytes, wrong media types and a million-line body. Each must get
//! its precise 4xx — or a closed connection where HTTP cannot answer (a
//! client that never finishes its headers or never starts TLS) — within a
//! bounded time, while curl enrollments, verified by OpenSSL, keep
//! succeeding during and after.
//!
//! curl normalises what it sends (paths, methods, header bytes), so the
//! hostile requests go through a raw TLS client (rustls) that writes the
//! exact bytes at the pace each case asks for, and reads the answer while
//! it writes (a server refusing a body early answers before the upload ends).
//!
//! `est_serve.rs` has the ordinary bad requests (bad base64, bad signature,
//! bad credentials, unknown label, ...); this table does not repeat them.

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use base64ct::Encoding;
use kipuka_tests::{
    est_server::{openssl, run, EstServer, PASSWORD, USER},
    tokens::TokenKind,
};

/// The harness's `max_body_bytes`.
const HARNESS_BODY_LIMIT: usize = 16384;
/// The limit of the second run, above every CSR byte limit.
const LARGE_BODY_LIMIT: usize = 512 * 1024;
/// `kipuka serve`'s header read timeout (host/src/cli/serve.rs).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The harness's `request_timeout_secs` (a body must arrive within it).
const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack for a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(10);
/// A refusal that needs no timer must come within this.
const PROMPT: Duration = Duration::from_secs(10);

/// How the client writes its bytes: the first `burst` at once, then `step`
/// bytes every `every` (`step` 0: never any more).
#[derive(Clone, Copy, Debug)]
struct Pace {
    burst: usize,
    step: usize,
    every: Duration,
}

const AT_ONCE: Pace = Pace {
    burst: usize::MAX,
    step: 0,
    every: Duration::ZERO,
};

/// What the server did.
#[derive(Debug)]
struct Outcome {
    /// The status line's code, when an answer came.
    status: Option<u16>,
    /// The whole answer as text (lossy).
    text: String,
    /// The connection was closed (or reset) by the server.
    closed: bool,
    /// From the TCP connect to the answer or the close.
    elapsed: Duration,
}

/// What a case must get.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// This status, with this text in the body.
    Status(u16, &'static str),
    /// The connection closed without an answer.
    Closed,
}

struct Case {
    what: String,
    /// false: a plain TCP connection on which the client never starts TLS.
    tls: bool,
    request: Vec<u8>,
    pace: Pace,
    expect: Expect,
    within: Duration,
}

fn client_config(s: &EstServer) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&s.tls_ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn addr(s: &EstServer) -> String {
    s.base.trim_start_matches("https://").to_string()
}

/// The status code of a response head, if the head is complete.
fn parse_status(response: &[u8]) -> Option<u16> {
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..head_end]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A response is complete when its head is and its Content-Length bytes
/// have arrived (every kipuka answer, and hyper's automatic ones, carry one).
fn complete(response: &[u8]) -> bool {
    let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => response.len() >= head_end + 4 + n,
        None => false,
    }
}

/// One request on a fresh TLS connection, written at `pace`, read while
/// writing. Gives up (status None, closed false) after `give_up`.
fn exchange(
    s: &EstServer,
    config: &Arc<rustls::ClientConfig>,
    data: &[u8],
    pace: Pace,
    give_up: Duration,
) -> Outcome {
    let start = Instant::now();
    let mut tcp = TcpStream::connect(addr(s)).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut sent = 0usize;
    let mut next_step = start;
    let mut response = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut write_failed = false;
    let outcome = |response: &[u8], closed: bool| Outcome {
        status: parse_status(response),
        text: String::from_utf8_lossy(response).into_owned(),
        closed,
        elapsed: start.elapsed(),
    };
    loop {
        if start.elapsed() > give_up {
            return Outcome {
                status: None,
                text: String::from_utf8_lossy(&response).into_owned(),
                closed: false,
                elapsed: start.elapsed(),
            };
        }
        let mut progressed = false;
        let now = Instant::now();
        if !conn.is_handshaking() && !write_failed && sent < data.len() && !conn.wants_write() {
            let piece = if sent < pace.burst {
                Some((pace.burst - sent).min(16 * 1024))
            } else if pace.step > 0 && now >= next_step {
                next_step = now + pace.every;
                Some(pace.step)
            } else {
                None
            };
            if let Some(piece) = piece {
                let end = (sent + piece).min(data.len());
                conn.writer().write_all(&data[sent..end]).unwrap();
                sent = end;
                progressed = true;
            }
        }
        while conn.wants_write() && !write_failed {
            match conn.write_tls(&mut tcp) {
                Ok(_) => progressed = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // The server stopped reading and closed: read what it said.
                Err(_) => write_failed = true,
            }
        }
        let mut eof = false;
        match conn.read_tls(&mut tcp) {
            Ok(0) => eof = true,
            Ok(_) => {
                progressed = true;
                if conn.process_new_packets().is_err() {
                    eof = true;
                }
                loop {
                    match conn.reader().read(&mut buf) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => response.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => eof = true,
        }
        if complete(&response) {
            return outcome(&response, false);
        }
        if eof {
            return outcome(&response, true);
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A TCP connection on which the client sends nothing: the server must
/// close it (TLS handshake timeout).
fn silent_tcp(s: &EstServer, give_up: Duration) -> Outcome {
    let start = Instant::now();
    let mut tcp = TcpStream::connect(addr(s)).unwrap();
    tcp.set_read_timeout(Some(give_up)).unwrap();
    let mut buf = [0u8; 256];
    let closed = match tcp.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    };
    Outcome {
        status: None,
        text: String::new(),
        closed,
        elapsed: start.elapsed(),
    }
}

/// Length of a request's head (through the blank line).
fn head_len(request: &[u8]) -> usize {
    request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
}

/// A password no log line or stored event may contain.
const WRONG_PASSWORD: &str = "wrong-password-marker-5f1c";

fn wrong_password_header() -> String {
    format!(
        "Basic {}",
        base64ct::Base64::encode_string(format!("{USER}:{WRONG_PASSWORD}").as_bytes())
    )
}

/// The server's log and its store (SQLite files) hold none of the secrets
/// it was given or sent: the Basic passwords (right and wrong, plain and in
/// their Authorization form) and the token PIN.
fn assert_no_secret_at_rest(s: &EstServer) {
    let secrets = [
        PASSWORD.to_string(),
        basic_header().trim_start_matches("Basic ").to_string(),
        WRONG_PASSWORD.to_string(),
        wrong_password_header()
            .trim_start_matches("Basic ")
            .to_string(),
        s.token.user_pin.clone(),
    ];
    let mut files = vec![s.log.clone()];
    for entry in std::fs::read_dir(&s.dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("kipuka.db"))
        {
            files.push(path);
        }
    }
    assert!(
        files.len() >= 2,
        "no store files next to the log in {}",
        s.dir.display()
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} contains the secret {secret:?}",
                file.display()
            );
        }
    }
    // The refusal itself was recorded (the scan looked at the right place).
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("unknown user or wrong password"), "{log}");
}

/// TLS: only 1.2 and 1.3, only AEAD suites. Checked with the OpenSSL
/// client, each refusal next to an accepted control.
fn assert_tls_settings(s: &EstServer) {
    let connect = |args: &[&str]| {
        openssl()
            .args(["s_client", "-connect", &addr(s), "-CAfile"])
            .arg(&s.tls_ca)
            .args(["-verify_return_error", "-brief"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    for (args, accepted) in [
        (&["-tls1_3"][..], true),
        (
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"][..],
            true,
        ),
        (
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"][..],
            false,
        ),
        (
            &[
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0",
            ][..],
            false,
        ),
        (&["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"][..], false),
        (&["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"][..], false),
    ] {
        let out = connect(args);
        assert_eq!(
            out.status.success(),
            accepted,
            "openssl s_client {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn basic_header() -> String {
    format!(
        "Basic {}",
        base64ct::Base64::encode_string(format!("{USER}:{PASSWORD}").as_bytes())
    )
}

/// An HTTP/1.1 request: `Host`, `User-Agent`, `Connection: close`, the
/// given headers, `Content-Length` for a body.
fn request(method: &[u8], path: &[u8], headers: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method);
    r.push(b' ');
    r.extend_from_slice(path);
    r.extend_from_slice(
        b" HTTP/1.1\r\nHost: localhost\r\nUser-Agent: kipuka-hostile\r\nConnection: close\r\n",
    );
    for (name, value) in headers {
        r.extend_from_slice(name);
        r.extend_from_slice(b": ");
        r.extend_from_slice(value);
        r.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == b"POST" {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

/// An authenticated `application/pkcs10` POST to the default CA's simpleenroll.
fn enroll_request(body: &[u8]) -> Vec<u8> {
    let auth = basic_header();
    request(
        b"POST",
        b"/.well-known/est/simpleenroll",
        &[
            (b"Authorization", auth.as_bytes()),
            (b"Content-Type", b"application/pkcs10"),
        ],
        body,
    )
}

fn b64(der: &[u8]) -> Vec<u8> {
    let text = base64ct::Base64::encode_string(der);
    let mut out = Vec::new();
    for line in text.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

/// A DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A CSR made by OpenSSL requesting `count` distinct private extensions
/// (`1.3.6.1.4.1.32473.<n>`, value NULL): properly signed, only too big or
/// too many.
fn csr_with_extensions(dir: &Path, count: usize) -> Vec<u8> {
    let cnf = dir.join(format!("ext{count}.cnf"));
    let mut text = String::from(
        "[req]\ndistinguished_name = dn\nreq_extensions = ext\nprompt = no\n[dn]\nCN = many\n[ext]\n",
    );
    for n in 1..=count {
        text.push_str(&format!("1.3.6.1.4.1.32473.{n} = ASN1:NULL\n"));
    }
    std::fs::write(&cnf, text).unwrap();
    let der = dir.join(format!("ext{count}.csr.der"));
    run(openssl()
        .args([
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
        ])
        .arg(dir.join(format!("ext{count}.key")))
        .arg("-config")
        .arg(&cnf)
        .args(["-outform", "DER", "-out"])
        .arg(&der));
    let der = std::fs::read(&der).unwrap();
    // Independent count: OpenSSL must have put them all in.
    let text = String::from_utf8(
        run(openssl()
            .args(["req", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(dir.join(format!("ext{count}.csr.der"))))
        .stdout,
    )
    .unwrap();
    assert_eq!(
        text.matches("1.3.6.1.4.1.32473.").count(),
        count,
        "OpenSSL made a CSR with a different number of extensions"
    );
    der
}

/// Runs `cases` one after the other, the slow ones (those with a long
/// `within`) each on their own thread first so that the table's wall time
/// is that of its slowest case; returns the failures.
fn run_table(s: &EstServer, phase: &str, cases: &[Case]) -> Vec<String> {
    let config = client_config(s);
    let failures = Mutex::new(Vec::new());
    let check = |case: &Case| {
        let give_up = case.within + SLACK;
        let got = if case.tls {
            exchange(s, &config, &case.request, case.pace, give_up)
        } else {
            silent_tcp(s, give_up)
        };
        let ok = match case.expect {
            Expect::Status(status, text) => got.status == Some(status) && got.text.contains(text),
            Expect::Closed => got.closed && got.status.is_none(),
        };
        let in_time = got.elapsed <= case.within;
        eprintln!(
            "[{phase}] {}: {:?} closed={} in {:?}",
            case.what, got.status, got.closed, got.elapsed
        );
        if !ok || !in_time {
            failures.lock().unwrap().push(format!(
                "[{phase}] {}: expected {:?} within {:?}, got status {:?} closed={} after {:?}: {}",
                case.what,
                case.expect,
                case.within,
                got.status,
                got.closed,
                got.elapsed,
                got.text.chars().take(300).collect::<String>()
            ));
        }
    };
    std::thread::scope(|scope| {
        for case in cases.iter().filter(|c| c.within > PROMPT) {
            scope.spawn(|| check(case));
        }
        for case in cases.iter().filter(|c| c.within <= PROMPT) {
            check(case);
        }
    });
    failures.into_inner().unwrap()
}

/// The CA certificate of the default CA, as PEM, from `/cacerts`.
fn default_ca_pem(s: &EstServer) -> PathBuf {
    let cacerts = s.curl(&[&s.url(None, "cacerts")]);
    assert_eq!(cacerts.status, 200, "{}", cacerts.text());
    s.pkcs7_to_pem(&cacerts, "hostile-default-ca")
}

/// One curl enrollment with a fresh OpenSSL key, verified by OpenSSL.
fn good_enrollment(s: &EstServer, ca: &Path, name: &str) -> Result<(), String> {
    let (csr, _) = s.csr(
        name,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &format!("/CN={name}"),
        None,
    );
    let answer = s.post_csr_basic(None, "simpleenroll", &csr);
    if answer.status != 200 {
        return Err(format!(
            "{name}: status {}: {}",
            answer.status,
            answer.text()
        ));
    }
    let leaf = s.pkcs7_to_pem(&answer, &format!("{name}-leaf"));
    s.verify(ca, &leaf).map_err(|e| format!("{name}: {e}"))
}

/// Runs `table` while a thread enrolls with curl in a loop; then enrolls
/// once more. Panics with every failure.
fn table_during_enrollments(s: &EstServer, phase: &str, table: &[Case]) {
    let ca = default_ca_pem(s);
    let done = AtomicBool::new(false);
    let enrolled = AtomicUsize::new(0);
    let enroll_errors = Mutex::new(Vec::new());
    let failures = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                n += 1;
                match good_enrollment(s, &ca, &format!("{phase}-during-{n}")) {
                    Ok(()) => {
                        enrolled.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => enroll_errors.lock().unwrap().push(e),
                }
            }
        });
        let failures = run_table(s, phase, table);
        done.store(true, Ordering::SeqCst);
        failures
    });
    let enroll_errors = enroll_errors.into_inner().unwrap();
    let after = good_enrollment(s, &ca, &format!("{phase}-after"));
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    let mut problems = failures;
    problems.extend(
        enroll_errors
            .iter()
            .map(|e| format!("[{phase}] enrollment during the table failed: {e}")),
    );
    if enrolled.load(Ordering::SeqCst) == 0 {
        problems.push(format!(
            "[{phase}] no enrollment completed while the table ran"
        ));
    }
    if let Err(e) = after {
        problems.push(format!("[{phase}] enrollment after the table failed: {e}"));
    }
    if log.contains("panicked") {
        problems.push(format!("[{phase}] the server log shows a panic:\n{log}"));
    }
    eprintln!(
        "[{phase}] {} enrollments succeeded while the table ran",
        enrolled.load(Ordering::SeqCst)
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Requests refused the same way whatever the body limit.
fn common_cases(good_der: &[u8]) -> Vec<Case> {
    let auth = basic_header();
    let get = |path: &[u8]| request(b"GET", path, &[], b"");
    let fast = |what: &str, request: Vec<u8>, status: u16, text: &'static str| Case {
        what: what.to_string(),
        request,
        tls: true,
        pace: AT_ONCE,
        expect: Expect::Status(status, text),
        within: PROMPT,
    };
    let mut cases = Vec::new();

    // Headers.
    let big = vec![b'a'; 20 * 1024];
    cases.push(fast(
        "one 20 KiB header (over the 16 KiB head limit)",
        request(
            b"GET",
            b"/.well-known/est/cacerts",
            &[(&b"X-Big"[..], &big[..])],
            b"",
        ),
        431,
        "",
    ));
    let many: Vec<(Vec<u8>, Vec<u8>)> = (0..200)
        .map(|i| (format!("X-H{i}").into_bytes(), b"v".to_vec()))
        .collect();
    let many_refs: Vec<(&[u8], &[u8])> = many
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    cases.push(fast(
        "200 headers (over hyper's 100)",
        request(b"GET", b"/.well-known/est/cacerts", &many_refs, b""),
        431,
        "",
    ));
    let mut long_path = b"/.well-known/est/".to_vec();
    long_path.extend(std::iter::repeat_n(b'a', 12_000));
    long_path.extend_from_slice(b"/cacerts");
    cases.push(fast(
        "a 12,000-byte label",
        get(&long_path),
        404,
        "not a CA label",
    ));
    cases.push(Case {
        what: "headers never finished (client stalls)".into(),
        tls: true,
        request: b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/pkcs10\r\n".to_vec(),
        pace: Pace { burst: 80, step: 0, every: Duration::ZERO },
        expect: Expect::Closed,
        within: HEADER_TIMEOUT + SLACK,
    });
    let mut endless =
        b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".to_vec();
    endless.extend(std::iter::repeat_n(b'z', 4000));
    cases.push(Case {
        what: "slowloris: a header trickled 4 bytes every 200 ms".into(),
        tls: true,
        request: endless,
        pace: Pace {
            burst: 0,
            step: 4,
            every: Duration::from_millis(200),
        },
        expect: Expect::Closed,
        within: HEADER_TIMEOUT + SLACK,
    });

    // Bodies.
    let good_b64 = b64(good_der);
    cases.push(Case {
        what: "slow body: a good CSR trickled 8 bytes a second".into(),
        tls: true,
        request: enroll_request(&good_b64),
        pace: Pace {
            burst: head_len(&enroll_request(&good_b64)),
            step: 8,
            every: Duration::from_secs(1),
        },
        expect: Expect::Status(400, "did not arrive within 5s"),
        within: BODY_TIMEOUT + SLACK,
    });
    cases.push(fast(
        "chunked body with an overflowing chunk size",
        {
            let mut r = Vec::new();
            r.extend_from_slice(b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/pkcs10\r\nTransfer-Encoding: chunked\r\nAuthorization: ");
            r.extend_from_slice(auth.as_bytes());
            r.extend_from_slice(b"\r\n\r\nfffffffffffffffffffff\r\nAAAA\r\n0\r\n\r\n");
            r
        },
        400,
        "cannot read the request body",
    ));
    cases.push(fast(
        "Content-Length twice, different",
        {
            let mut r = Vec::new();
            r.extend_from_slice(b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/pkcs10\r\nContent-Length: 4\r\nContent-Length: 8\r\nAuthorization: ");
            r.extend_from_slice(auth.as_bytes());
            r.extend_from_slice(b"\r\n\r\nAAAAAAAA");
            r
        },
        400,
        "",
    ));

    // DER.
    let half = &good_der[..good_der.len() / 2];
    cases.push(fast(
        "truncated DER (first half of a CSR)",
        enroll_request(&b64(half)),
        400,
        "not one DER value",
    ));
    // Cut inside the signature, outer length fixed up: one SEQUENCE, not a CSR.
    let outer_header = match good_der[1] {
        n if n < 0x80 => 2,
        n => 2 + usize::from(n & 0x7f),
    };
    let shortened = tlv(0x30, &good_der[outer_header..good_der.len() - 10]);
    cases.push(fast(
        "truncated DER (CSR cut short, outer length fixed)",
        enroll_request(&b64(&shortened)),
        400,
        "CSR",
    ));
    let mut indefinite = Vec::new();
    for _ in 0..2500 {
        indefinite.extend_from_slice(&[0x30, 0x80]);
    }
    for _ in 0..2500 {
        indefinite.extend_from_slice(&[0x00, 0x00]);
    }
    cases.push(fast(
        "ASN.1 bomb: 2,500 nested indefinite-length SEQUENCEs",
        enroll_request(&b64(&indefinite)),
        400,
        "not one DER value",
    ));
    let mut nested = tlv(0x30, &[]);
    for _ in 0..2500 {
        nested = tlv(0x30, &nested);
    }
    cases.push(fast(
        "ASN.1 bomb: 2,500 nested definite-length SEQUENCEs",
        enroll_request(&b64(&nested)),
        400,
        "CSR",
    ));
    // Nested SETs where the subject Name is.
    let mut set_bomb = tlv(0x31, &[]);
    for _ in 0..1000 {
        set_bomb = tlv(0x31, &tlv(0x30, &set_bomb));
    }
    let fake = tlv(
        0x30,
        &[
            tlv(
                0x30,
                &[&[0x02, 0x01, 0x00][..], &tlv(0x30, &set_bomb)].concat(),
            ),
            tlv(0x30, &[0x06, 0x01, 0x2a]),
            tlv(0x03, &[0x00]),
        ]
        .concat(),
    );
    cases.push(fast(
        "ASN.1 bomb: 1,000 nested RDNs in the subject",
        enroll_request(&b64(&fake)),
        400,
        "CSR",
    ));

    // Methods.
    for (method, path, allow) in [
        (&b"PUT"[..], &b"/.well-known/est/simpleenroll"[..], "POST"),
        (b"PATCH", b"/.well-known/est/ec/simplereenroll", "POST"),
        (b"TRACE", b"/.well-known/est/cacerts", "GET"),
        (b"OPTIONS", b"/.well-known/est/ec/csrattrs", "GET"),
        (b"BREW", b"/.well-known/est/cacerts", "GET"),
        (b"DELETE", b"/.well-known/est/serverkeygen", "POST"),
    ] {
        cases.push(fast(
            &format!(
                "method {} on {}",
                String::from_utf8_lossy(method),
                String::from_utf8_lossy(path)
            ),
            request(method, path, &[], b""),
            405,
            if allow == "GET" {
                "takes GET"
            } else {
                "takes POST"
            },
        ));
    }
    cases.push(fast(
        "a method with a control byte",
        get(b"/x")
            .into_iter()
            .enumerate()
            .map(|(i, b)| if i == 1 { 0x01 } else { b })
            .collect(),
        400,
        "",
    ));

    // Path traversal in the label.
    for path in [
        &b"/.well-known/est/%2e%2e/cacerts"[..],
        b"/.well-known/est/%2E%2E%2Fec/cacerts",
        b"/.well-known/est/..%2f..%2fetc%2fpasswd/cacerts",
        b"/.well-known/est/ec%2F..%2F../cacerts",
        b"/.well-known/est/%252e%252e/cacerts",
        b"/.well-known/est/ec%00/cacerts",
        b"/.well-known/est/%ff%fe/cacerts",
        b"/.well-known/est/..%5c..%5cec/cacerts",
    ] {
        cases.push(fast(
            &format!("label {}", String::from_utf8_lossy(path)),
            get(path),
            404,
            "not a CA label",
        ));
    }
    cases.push(fast(
        "label ..",
        get(b"/.well-known/est/../cacerts"),
        404,
        "not a CA label",
    ));
    cases.push(fast(
        "ec/../ec/cacerts",
        get(b"/.well-known/est/ec/../ec/cacerts"),
        404,
        "no EST operation",
    ));
    cases.push(fast(
        "/.well-known/../.well-known/est/cacerts",
        get(b"/.well-known/../.well-known/est/cacerts"),
        404,
        "EST lives under",
    ));

    // Non-UTF-8.
    cases.push(fast(
        "raw 0xFF bytes in the path",
        get(b"/.well-known/est/\xff\xfe/cacerts"),
        400,
        "",
    ));
    cases.push(fast(
        "raw 0xFF in a header name",
        request(
            b"GET",
            b"/.well-known/est/cacerts",
            &[(b"X-\xff", b"v")],
            b"",
        ),
        400,
        "",
    ));
    cases.push(fast(
        "non-UTF-8 Authorization",
        request(
            b"POST",
            b"/.well-known/est/simpleenroll",
            &[
                (b"Authorization", b"Basic \xff\xfe\xfd"),
                (b"Content-Type", b"application/pkcs10"),
            ],
            &good_b64,
        ),
        401,
        "authentication required",
    ));
    cases.push(fast(
        "non-UTF-8 Content-Type",
        request(
            b"POST",
            b"/.well-known/est/simpleenroll",
            &[
                (b"Authorization", auth.as_bytes()),
                (b"Content-Type", b"application/pkcs10\xff"),
            ],
            &good_b64,
        ),
        415,
        "Content-Type header is not ASCII",
    ));
    cases.push(fast(
        "a non-UTF-8 header value on cacerts is ignored",
        request(
            b"GET",
            b"/.well-known/est/cacerts",
            &[(b"X-Note", b"\xc3\x28\xff")],
            b"",
        ),
        200,
        "",
    ));

    // Media types.
    for (content_type, text) in [
        (None, "Content-Type is missing"),
        (Some(&b"text/plain"[..]), "text/plain"),
        (Some(b"application/pkcs10x"), "application/pkcs10x"),
        (
            Some(b"application/pkcs7-mime; smime-type=certs-only"),
            "pkcs7-mime",
        ),
        (Some(b"multipart/form-data; boundary=x"), "multipart"),
        (Some(b""), "got \"\""),
    ] {
        let mut headers: Vec<(&[u8], &[u8])> = vec![(b"Authorization", auth.as_bytes())];
        if let Some(ct) = content_type {
            headers.push((b"Content-Type", ct));
        }
        cases.push(fast(
            &format!(
                "Content-Type {:?}",
                content_type.map(String::from_utf8_lossy)
            ),
            request(
                b"POST",
                b"/.well-known/est/simpleenroll",
                &headers,
                &good_b64,
            ),
            415,
            text,
        ));
    }

    // Credentials that must never reach the log or the store.
    cases.push(fast(
        "a wrong Basic password",
        request(
            b"POST",
            b"/.well-known/est/simpleenroll",
            &[
                (b"Authorization", wrong_password_header().as_bytes()),
                (b"Content-Type", b"application/pkcs10"),
            ],
            &good_b64,
        ),
        401,
        "unknown user or wrong password",
    ));

    // A million-line body: over any limit either way.
    cases.push(fast(
        "a million-line base64 body (5 MB)",
        enroll_request(&b"AAAA\n".repeat(1_000_000)),
        413,
        "larger than",
    ));
    cases
}

#[test]
fn hostile_requests_get_bounded_precise_refusals_while_enrollments_continue() {
    let mut s = EstServer::start(TokenKind::SoftHsm2);
    let good_der = {
        s.csr(
            "hostile-good",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "/CN=good",
            None,
        );
        std::fs::read(s.dir.join("hostile-good.csr.der")).unwrap()
    };
    let ext1k = csr_with_extensions(&s.dir, 1_000);
    let ext10k = csr_with_extensions(&s.dir, 10_000);
    assert!(b64(&ext1k).len() > HARNESS_BODY_LIMIT && b64(&ext1k).len() < LARGE_BODY_LIMIT);
    assert!(ext10k.len() > kipuka::ca::csr::MAX_CSR_BYTES && b64(&ext10k).len() < LARGE_BODY_LIMIT);

    // Phase 1: the harness's 16 KiB body limit.
    let mut table = common_cases(&good_der);
    for (what, der) in [("1,000", &ext1k), ("10,000", &ext10k)] {
        table.push(Case {
            what: format!("CSR with {what} extensions, beyond max_body_bytes"),
            tls: true,
            request: enroll_request(&b64(der)),
            pace: AT_ONCE,
            expect: Expect::Status(413, "larger than 16384 bytes"),
            within: PROMPT,
        });
    }
    table.push(Case {
        what: "TCP connection that never starts TLS".into(),
        tls: false,
        request: Vec::new(),
        pace: AT_ONCE,
        expect: Expect::Closed,
        within: HEADER_TIMEOUT + SLACK,
    });
    table_during_enrollments(&s, "16 KiB limit", &table);

    // Phase 2: a body limit above every CSR limit, so that the CSR checks
    // themselves refuse.
    s.stop();
    let text = std::fs::read_to_string(&s.config).unwrap();
    let needle = format!("max_body_bytes = {HARNESS_BODY_LIMIT}");
    assert!(text.contains(&needle), "the harness config changed: {text}");
    std::fs::write(
        &s.config,
        text.replace(&needle, &format!("max_body_bytes = {LARGE_BODY_LIMIT}")),
    )
    .unwrap();
    s.launch();
    let mut table = common_cases(&good_der);
    table.push(Case {
        what: "CSR with 1,000 extensions, within every byte limit".into(),
        tls: true,
        request: enroll_request(&b64(&ext1k)),
        pace: AT_ONCE,
        expect: Expect::Status(400, "requests 1000 extensions; at most 100 are accepted"),
        within: PROMPT,
    });
    table.push(Case {
        what: "CSR with 10,000 extensions, within max_body_bytes".into(),
        tls: true,
        request: enroll_request(&b64(&ext10k)),
        pace: AT_ONCE,
        expect: Expect::Status(400, "at most 65536 bytes are accepted"),
        within: PROMPT,
    });
    table_during_enrollments(&s, "512 KiB limit", &table);
    assert_tls_settings(&s);
    assert_no_secret_at_rest(&s);
}

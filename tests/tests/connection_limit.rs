//! `[server] max_connections` through `kipuka serve` on SoftHSM2, with a
//! rustls client: at the limit a new connection is not served (its TLS
//! handshake does not complete) until an open one ends; then it is, and
//! enrolls. And `[server] max_connections_per_ip`: one source holding idle
//! connections does not hold up another source.

use std::{
    io::Read,
    net::TcpStream,
    process::Command,
    sync::mpsc,
    time::{Duration, Instant},
};

use kipuka_tests::{
    est_client::{certs_from_pkcs7_b64, ec_csrs, EstClient},
    est_server::{EstOptions, EstServer, PASSWORD, USER},
    tokens::TokenKind,
};

const ENROLL: &str = "/.well-known/est/ec/simpleenroll";
const LIMIT: usize = 4;

#[test]
fn at_the_connection_limit_new_connections_wait_for_a_free_one() {
    let s = EstServer::start_opts(
        TokenKind::SoftHsm2,
        EstOptions {
            server_extra: format!("max_connections = {LIMIT}"),
            ..EstOptions::default()
        },
    );
    let client = EstClient::new(&s);
    let csrs = ec_csrs(&s, "limit", 2);

    // LIMIT connections, each proven served by one enrollment, kept open.
    let mut open: Vec<_> = (0..LIMIT)
        .map(|i| {
            let mut c = client.connect().expect("connection within the limit");
            let a = c
                .exchange(&client.post_request(ENROLL, &csrs[0]))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert_eq!(a.status, 200, "connection {i}: {}", a.text());
            c
        })
        .collect();

    // One more: the kernel accepts its TCP connection into the backlog, but
    // kipuka does not take it, so its handshake cannot finish.
    let (done, finished) = mpsc::channel();
    let waiting = {
        let (client, csr) = (client.clone(), csrs[1].clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let result = client.connect().and_then(|mut c| {
                let connected = started.elapsed();
                c.exchange(&client.post_request(ENROLL, &csr))
                    .map(|a| (connected, a))
            });
            let _ = done.send(());
            result
        })
    };
    assert!(
        finished.recv_timeout(Duration::from_millis(1500)).is_err(),
        "a connection beyond the limit of {LIMIT} was served"
    );

    // One connection ends: the waiting one is served, and enrolls.
    let closing = Instant::now();
    drop(open.pop());
    finished
        .recv_timeout(Duration::from_secs(5))
        .expect("the waiting connection was served after a slot came free");
    let (connected, answer) = waiting.join().unwrap().expect("the waiting connection");
    eprintln!(
        "handshake finished {connected:?} after connecting, {:?} after a slot came free",
        closing.elapsed()
    );
    assert!(connected >= Duration::from_millis(1500), "{connected:?}");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let certs = certs_from_pkcs7_b64(&answer.body).expect("certs-only PKCS#7");
    assert_eq!(certs.len(), 1);

    // The connections that stayed open were never disturbed.
    for (i, c) in open.iter_mut().enumerate() {
        let a = c
            .exchange(&client.post_request(ENROLL, &csrs[0]))
            .unwrap_or_else(|e| panic!("connection {i} after: {e}"));
        assert_eq!(a.status, 200, "connection {i} after: {}", a.text());
    }
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(
        log.contains("connection limit reached"),
        "the limit is logged"
    );
}

/// Whether the server closed `tcp` (end of stream or reset) within `wait`.
fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    tcp.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match tcp.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// curl from source address `from`: (HTTP status, curl's own total time).
fn curl_from(s: &EstServer, from: &str, args: &[&str]) -> (u16, Duration) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--interface", from, "--cacert"])
        .arg(&s.tls_ca)
        .args(["-o", "/dev/null", "-w", "%{http_code} %{time_total}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (code, secs) = text
        .split_once(' ')
        .unwrap_or_else(|| panic!("curl: {text} {}", String::from_utf8_lossy(&out.stderr)));
    (
        code.parse().unwrap(),
        Duration::from_secs_f64(secs.parse().unwrap()),
    )
}

const PER_IP: usize = 8;

/// One source (127.0.0.1) opens idle TCP connections, never starting TLS,
/// up to and beyond `max_connections_per_ip`: those beyond are closed at
/// once; those within stay open (until the handshake timeout). Meanwhile
/// another source (127.0.0.2: Linux routes all of 127/8 to loopback) gets
/// /healthz and an enrollment answered at once, and when one idle
/// connection ends the first source can connect again.
#[test]
fn one_source_over_its_connection_limit_does_not_hold_up_another() {
    let s = EstServer::start_opts(
        TokenKind::SoftHsm2,
        EstOptions {
            server_extra: format!("max_connections_per_ip = {PER_IP}"),
            ..EstOptions::default()
        },
    );
    let addr = s.base.trim_start_matches("https://").to_string();
    let (csr, _) = s.csr(
        "other-source",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=other-source",
        None,
    );
    let mut idle: Vec<TcpStream> = (0..PER_IP)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    // Accepted and counted: none of them is closed.
    std::thread::sleep(Duration::from_millis(300));
    for (i, tcp) in idle.iter_mut().enumerate() {
        assert!(
            !closed_within(tcp, Duration::from_millis(50)),
            "idle connection {i} within the limit was closed"
        );
    }
    for i in 0..4 {
        let mut over = TcpStream::connect(&addr).unwrap();
        let started = Instant::now();
        assert!(
            closed_within(&mut over, Duration::from_secs(2)),
            "connection {} from the same source was not closed",
            PER_IP + i + 1
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    let (status, took) = curl_from(&s, "127.0.0.2", &[&format!("{}/healthz", s.base)]);
    assert_eq!(status, 200);
    let (enrolled, enroll_took) = curl_from(
        &s,
        "127.0.0.2",
        &[
            "-u",
            &format!("{USER}:{PASSWORD}"),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", csr.display()),
            &s.url(None, "simpleenroll"),
        ],
    );
    assert_eq!(enrolled, 200);
    eprintln!("another source: /healthz in {took:?}, an enrollment in {enroll_took:?}");
    // Well under the 10 s TLS handshake timeout that would free the idle
    // connections' slots: nothing waited for them. (The figure,
    // 100 ms, is what this takes on an idle machine; under the full test
    // suite on two cores it can take longer, so the bound is looser.)
    for (what, t) in [("/healthz", took), ("an enrollment", enroll_took)] {
        assert!(
            t < Duration::from_secs(2),
            "{what} from another source took {t:?}"
        );
    }

    // One idle connection ends: the source may connect again.
    drop(idle.pop());
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = curl_from(&s, "127.0.0.1", &[&format!("{}/healthz", s.base)]);
    assert_eq!(status, 200, "the freed slot was not given back");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert_eq!(
        log.matches("connection limit per source reached").count(),
        1,
        "one warning per episode, not per connection"
    );
    drop(idle);
}

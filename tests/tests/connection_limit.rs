//! `[server] max_connections` through `kipuka serve` on SoftHSM2, with a
//! rustls client: at the limit a new connection is not served (its TLS
//! handshake does not complete) until an open one ends; then it is, and
//! enrolls.

use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use kipuka_tests::{
    est_client::{certs_from_pkcs7_b64, ec_csrs, EstClient},
    est_server::{EstOptions, EstServer},
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

//! systemd's notification protocol as `Type=notify` units see it: the test
//! plays systemd's part on a `NOTIFY_SOCKET` datagram socket. `READY=1`
//! comes only once the server answers (/healthz is fetched the moment it
//! arrives), `WATCHDOG=1` every half `WATCHDOG_USEC`, `RELOADING=1` with
//! `MONOTONIC_USEC` then `READY=1` on SIGHUP, `STOPPING=1` on SIGTERM.

use std::{
    os::unix::net::UnixDatagram,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use kipuka_tests::{
    est_server::{EstOptions, EstServer},
    tokens::TokenKind,
};

/// The next datagram that is not a `WATCHDOG=1` (counted in `watchdogs`).
fn next_state(sock: &UnixDatagram, watchdogs: &mut usize, child: &mut Child) -> String {
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let state = String::from_utf8(buf[..n].to_vec()).unwrap();
                if state == "WATCHDOG=1" {
                    *watchdogs += 1;
                } else {
                    return state;
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("no notification from kipuka serve: {e}");
            }
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn ready_after_serving_watchdog_reloading_and_stopping() {
    let server = EstServer::start_opts(
        TokenKind::SoftHsm2,
        EstOptions {
            no_launch: true,
            ..EstOptions::default()
        },
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let socket_path = server.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    // Start-up on a loaded CI machine can take tens of seconds.
    sock.set_read_timeout(Some(Duration::from_secs(180)))
        .unwrap();
    let log = std::fs::File::create(&server.log).unwrap();
    let mut child = server
        .kipuka()
        .args(["serve", "--config"])
        .arg(&server.config)
        .env("KIPUKA_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let healthz = || {
        server.curl(&[
            "--connect-timeout",
            "2",
            &format!("https://127.0.0.1:{port}/healthz"),
        ])
    };

    let mut watchdogs = 0;
    let first = next_state(&sock, &mut watchdogs, &mut child);
    // Nothing may answer before READY=1, and it must answer right after.
    let answer = healthz();
    let log_text = || std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(
        first.lines().any(|l| l == "READY=1"),
        "first notification: {first:?}\n{}",
        log_text()
    );
    assert_eq!(
        answer.status,
        200,
        "/healthz right after READY=1: {}\n{}",
        answer.text(),
        log_text()
    );
    assert_eq!(watchdogs, 0, "WATCHDOG=1 before READY=1");

    // WATCHDOG_USEC = 400 ms: a keep-alive every 200 ms.
    let watching = Instant::now();
    let mut buf = [0u8; 256];
    while watchdogs < 3 {
        let n = sock.recv(&mut buf).expect("WATCHDOG=1 keep-alives");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        watchdogs += 1;
    }
    let took = watching.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "3 keep-alives took {took:?} (one per 200 ms expected)"
    );

    signal(&child, "-HUP");
    let reloading = next_state(&sock, &mut watchdogs, &mut child);
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec > 0);
    let ready = next_state(&sock, &mut watchdogs, &mut child);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert_eq!(healthz().status, 200, "serving after the reload");

    signal(&child, "-TERM");
    let stopping = next_state(&sock, &mut watchdogs, &mut child);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kipuka serve did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status}\n{}", log_text());
}

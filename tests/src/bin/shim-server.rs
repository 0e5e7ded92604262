//! `kipuka serve` behind the test-only PKCS#11 module (`tests/pkcs11-shim`)
//! with a network HSM's latency, for `bench/latency.sh` (issue 7 item 4):
//!
//! `shim-server SESSIONS SIGN_DELAY_MS [softhsm2|kryoptic]`
//!
//! Sets up a fresh token and server exactly as the integration tests do
//! (`shim::start_behind_shim`), with the pool and the shim's session limit both at
//! SESSIONS and every `C_Sign` that returns a signature delayed by
//! SIGN_DELAY_MS. Prints one `KEY=VALUE` line per thing a load generator
//! needs, then `ready`, and serves until its standard input closes; then it
//! prints the shim's counters and removes everything it made.

use std::io::Read;

use kipuka_tests::{
    est_server::{EstOptions, PASSWORD, USER},
    shim::start_behind_shim,
    tokens::TokenKind,
};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (sessions, delay, kind) = match args.as_slice() {
        [s, d] => (s, d, TokenKind::SoftHsm2),
        [s, d, k] if k == "softhsm2" => (s, d, TokenKind::SoftHsm2),
        [s, d, k] if k == "kryoptic" => (s, d, TokenKind::Kryoptic),
        _ => usage(),
    };
    let (Ok(sessions), Ok(delay)) = (sessions.parse::<u32>(), delay.parse::<f64>()) else {
        usage()
    };
    if sessions == 0 || !(0.0..=10_000.0).contains(&delay) {
        usage()
    }
    let (server, shim) = start_behind_shim(
        kind,
        None,
        EstOptions {
            pool_size: Some(sessions),
            mldsa_software: true,
            ..EstOptions::default()
        },
        |shim| {
            shim.set("max_sessions", json!(sessions));
            shim.set("sign_delay_ms", json!([delay, delay]));
        },
    );
    let basic = server.dir.join("basic-auth.txt");
    std::fs::write(&basic, format!("{USER}:{PASSWORD}\n")).expect("basic-auth.txt");
    println!("URL={}/.well-known/est/ec/simpleenroll", server.base);
    println!("RSA_URL={}/.well-known/est/rsa/simpleenroll", server.base);
    println!("CACERT={}", server.tls_ca.display());
    println!("BASIC_FILE={}", basic.display());
    println!("PID={}", server.pid().expect("server running"));
    println!("LOG={}", server.log.display());
    println!("ready");
    // Serve until whoever started us closes our standard input.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    println!("SHIM_STATS={}", shim.stats());
}

fn usage() -> ! {
    eprintln!("usage: shim-server SESSIONS SIGN_DELAY_MS [softhsm2|kryoptic]");
    std::process::exit(2)
}

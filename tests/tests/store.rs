//! The store under load and under SIGKILL.
//!
//! - `group_commit_under_load`: 20,000 certificates from 64 concurrent tasks
//!   into a database file, with `synchronous = FULL` then `NORMAL`; every
//!   acknowledged record is found after reopening. The rates are printed
//!   (`--nocapture`), not asserted: this machine's disk is not the product's.
//! - `acked_records_survive_sigkill`: a child process (this test binary,
//!   re-executed in writer-child mode) writes in a loop and prints each
//!   acknowledged serial; it is SIGKILLed mid-write. The database must then
//!   open, pass `PRAGMA integrity_check`, and hold every printed serial.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use kipuka::{
    config::DbConfig,
    store::{CertificateStore, IssuedRecord, SqliteStore, Synchronous},
};
use sha2::{Digest, Sha256};

/// Set (to a database path) in the re-executed child: writer-child mode.
const CHILD_ENV: &str = "KIPUKA_STORE_WRITER_CHILD_DB";
const RECORDS: u64 = 20_000;
const TASKS: u64 = 64;

/// The tests measure and kill: one at a time, on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// A random-looking 20-octet serial, as the CA makes them (so the index is
/// written at random places, as in production).
fn serial(tag: &str, i: u64) -> String {
    let digest = Sha256::new()
        .chain_update(tag.as_bytes())
        .chain_update(i.to_be_bytes())
        .finalize();
    hex::encode(&digest[..20])
}

fn record(serial_hex: String, i: u64) -> IssuedRecord {
    let now = SystemTime::now();
    IssuedRecord {
        serial_hex,
        ca_id: "main".into(),
        subject: format!("CN=device-{i},O=Example"),
        sans: vec![format!("dns:device-{i}.example")],
        not_before: now,
        not_after: now + Duration::from_secs(365 * 86_400),
        requester: "basic:enroller".into(),
        operation: "simpleenroll".into(),
        // About the size of a P-256 device certificate.
        der: vec![0x30; 700],
    }
}

fn db_config(path: &std::path::Path, synchronous: Synchronous) -> DbConfig {
    DbConfig {
        url: format!("sqlite://{}", path.display()),
        synchronous,
        ..DbConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `RECORDS` records from `TASKS` tasks; returns records/s.
fn load(path: &std::path::Path, synchronous: Synchronous) -> f64 {
    let store = Arc::new(SqliteStore::open(&db_config(path, synchronous)).unwrap());
    let tag = format!("{synchronous:?}");
    let started = Instant::now();
    let acked: u64 = runtime().block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (store, tag) = (store.clone(), tag.clone());
                tokio::spawn(async move {
                    let mut acked = 0;
                    for i in (t..RECORDS).step_by(TASKS as usize) {
                        store
                            .record_issued(record(serial(&tag, i), i))
                            .await
                            .unwrap();
                        acked += 1;
                    }
                    acked
                })
            })
            .collect();
        let mut acked = 0;
        for t in tasks {
            acked += t.await.unwrap();
        }
        store.close().await;
        acked
    });
    let rate = acked as f64 / started.elapsed().as_secs_f64();
    assert_eq!(acked, RECORDS);
    drop(store);

    // Reopened: every acknowledged record is there, and nothing else.
    let store = SqliteStore::open(&db_config(path, synchronous)).unwrap();
    assert_eq!(store.count_issued().unwrap(), RECORDS);
    for i in 0..RECORDS {
        let s = serial(&tag, i);
        assert!(store.serial_exists(&s).unwrap(), "record {i} ({s}) lost");
    }
    let found = store.find_by_serial(&serial(&tag, 4242)).unwrap().unwrap();
    assert_eq!(found.subject, "CN=device-4242,O=Example");
    assert_eq!(found.der.len(), 700);
    assert_eq!(store.integrity_check().unwrap(), "ok");
    rate
}

#[test]
fn group_commit_under_load() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let full = load(&dir.path().join("full.db"), Synchronous::Full);
    let normal = load(&dir.path().join("normal.db"), Synchronous::Normal);
    eprintln!(
        "store: {RECORDS} records from {TASKS} tasks: synchronous=FULL {full:.0} records/s, \
         synchronous=NORMAL {normal:.0} records/s"
    );
}

#[test]
fn acked_records_survive_sigkill() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, acks) = mpsc::channel::<String>();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        // A line cut short by the kill has no '\n': not an acknowledgement.
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(s) = line.strip_prefix("ACK ").and_then(|l| l.strip_suffix('\n')) {
                let _ = lines.send(s.to_string());
            }
            line.clear();
        }
    });

    // Let it write for about a second after its first acknowledgement.
    let mut printed = Vec::new();
    let first = acks
        .recv_timeout(Duration::from_secs(20))
        .expect("the writer child acknowledged nothing within 20 s");
    printed.push(first);
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Ok(s) = acks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        printed.push(s);
        if Instant::now() >= deadline {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was meant to be killed");
    reader.join().unwrap();
    printed.extend(acks.try_iter());

    // Killed mid-write: its WAL is still there, unmerged.
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    assert!(std::path::Path::new(&wal).exists(), "no WAL left behind");

    let store = SqliteStore::open(&db_config(&path, Synchronous::Full))
        .expect("a database left by a killed process opens");
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let lost: Vec<_> = printed
        .iter()
        .filter(|s| !store.serial_exists(s).unwrap())
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records lost, e.g. {}",
        lost.len(),
        printed.len(),
        lost[0]
    );
    let stored = store.count_issued().unwrap();
    // Committed but killed before it printed: more rows than lines is fine.
    assert!(
        stored >= printed.len() as u64,
        "{stored} < {}",
        printed.len()
    );
    eprintln!(
        "store: writer child SIGKILLed after {} acknowledged records ({stored} in the database)",
        printed.len()
    );
}

/// Not a test on its own: the body of the child process of
/// `acked_records_survive_sigkill`. Does nothing unless `CHILD_ENV` is set.
#[test]
fn writer_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // NORMAL: the weaker setting, documented as safe against a killed process.
    let config = db_config(std::path::Path::new(&path), Synchronous::Normal);
    let store = Arc::new(SqliteStore::open(&config).unwrap());
    let give_up = Instant::now() + Duration::from_secs(60); // if the parent is gone
    runtime().block_on(async {
        let tasks: Vec<_> = (0..16u64)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut i = t;
                    while Instant::now() < give_up {
                        let s = serial("child", i);
                        match store.record_issued(record(s.clone(), i)).await {
                            Ok(()) => {
                                let mut out = std::io::stdout().lock();
                                out.write_all(format!("ACK {s}\n").as_bytes()).unwrap();
                                out.flush().unwrap();
                            }
                            Err(e) => panic!("writer child: {e}"),
                        }
                        i += 16;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::audit::{AuditEvent, Auditor};

fn config(url: &str) -> DbConfig {
    DbConfig {
        url: url.to_string(),
        ..DbConfig::default()
    }
}

fn record(serial: &str) -> IssuedRecord {
    IssuedRecord {
        serial_hex: serial.to_string(),
        ca_id: "main".into(),
        subject: "CN=device-1,O=Example".into(),
        sans: vec!["dns:device-1.example".into(), "ip:192.0.2.7".into()],
        not_before: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        not_after: UNIX_EPOCH + Duration::from_secs(1_798_761_600),
        requester: "basic:alice".into(),
        operation: "simpleenroll".into(),
        der: vec![0x30, 0x82, 0x01, 0x00, 0xde, 0xad],
    }
}

fn serial(n: u32) -> String {
    format!("{n:040x}")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn url_parsing() {
    assert_eq!(
        DbLocation::parse("sqlite://kipuka.db").unwrap(),
        DbLocation::File("kipuka.db".into())
    );
    assert_eq!(
        DbLocation::parse("sqlite://data/k.db").unwrap(),
        DbLocation::File("data/k.db".into())
    );
    assert_eq!(
        DbLocation::parse("sqlite:///var/lib/kipuka/k.db").unwrap(),
        DbLocation::File("/var/lib/kipuka/k.db".into())
    );
    assert_eq!(
        DbLocation::parse("sqlite:k.db").unwrap(),
        DbLocation::File("k.db".into())
    );
    assert_eq!(
        DbLocation::parse("sqlite::memory:").unwrap(),
        DbLocation::Memory
    );
    for bad in ["sqlite://", "sqlite:", "sqlite:///"] {
        let e = DbLocation::parse(bad).unwrap_err();
        assert!(matches!(e, StoreError::InvalidUrl(_)), "{bad}: {e}");
    }
    let e = DbLocation::parse("sqlite://k.db?mode=ro").unwrap_err();
    assert!(e.to_string().contains("URL parameters"), "{e}");
}

#[test]
fn unsupported_schemes_name_the_scheme_but_not_the_password() {
    let e = SqliteStore::open(&config("postgres://kipuka:s3cret@db/kipuka")).unwrap_err();
    match &e {
        StoreError::UnsupportedUrl { scheme, .. } => assert_eq!(scheme, "postgres"),
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("postgres:// is not built in yet"), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
    let Err(e) = open_store(&config("mysql://root:pw@h/db")) else {
        panic!("mysql accepted")
    };
    assert!(
        matches!(&e, StoreError::UnsupportedUrl { scheme, .. } if scheme == "mysql"),
        "{e}"
    );
    assert!(!e.to_string().contains("pw@"), "{e}");
    let Err(e) = open_store(&config("kipuka.db")) else {
        panic!("bare path accepted")
    };
    assert!(matches!(e, StoreError::UnsupportedUrl { .. }), "{e}");
}

#[test]
fn schema_is_created_once_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let url = format!("sqlite://{}", path.display());
    {
        let store = SqliteStore::open(&config(&url)).unwrap();
        assert_eq!(store.schema_version().unwrap(), schema::latest());
        assert_eq!(store.count_issued().unwrap(), 0);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }
    assert!(path.exists());
    // Reopening applies nothing and keeps the data.
    let store = SqliteStore::open(&config(&url)).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::latest());

    // A database from a newer kipuka is refused.
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (?1, 0)",
        [schema::latest() + 1],
    )
    .unwrap();
    drop(conn);
    let e = SqliteStore::open(&config(&url)).unwrap_err();
    assert!(matches!(e, StoreError::SchemaTooNew { .. }), "{e}");
}

#[test]
fn missing_folder_is_an_open_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/folder/k.db");
    let e = SqliteStore::open(&config(&format!("sqlite://{}", path.display()))).unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e}");
    assert!(e.to_string().contains("no/such/folder/k.db"), "{e}");
}

#[test]
fn insert_find_count_and_duplicates() {
    let store = SqliteStore::open(&config("sqlite::memory:")).unwrap();
    rt().block_on(async {
        store.record_issued(record(&serial(1))).await.unwrap();
        store.record_issued(record(&serial(2))).await.unwrap();
        let e = store.record_issued(record(&serial(1))).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::DuplicateSerial(s) if *s == serial(1)),
            "{e}"
        );
        // Malformed serials never reach the database.
        for bad in ["", "ABCDEF", "0x12", &"a".repeat(41)] {
            let e = store.record_issued(record(bad)).await.unwrap_err();
            assert!(matches!(e, StoreError::InvalidRecord(_)), "{bad}: {e}");
        }
    });
    assert_eq!(store.count_issued().unwrap(), 2);
    assert!(store.serial_exists(&serial(2)).unwrap());
    assert!(!store.serial_exists(&serial(3)).unwrap());
    assert_eq!(store.find_by_serial(&serial(3)).unwrap(), None);
    assert_eq!(
        store.find_by_serial(&serial(1)).unwrap().unwrap(),
        record(&serial(1))
    );
}

#[test]
fn a_duplicate_fails_only_its_own_caller_within_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let store = SqliteStore::open(&config(&url)).unwrap();
    let results = rt().block_on(async {
        // Queued together, so most likely written in one transaction.
        let futures: Vec<_> = (0..100)
            .map(|i| store.record_issued(record(&serial(i % 90))))
            .collect();
        let mut results = Vec::new();
        for f in futures {
            results.push(f.await);
        }
        results
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let dups = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::DuplicateSerial(_))))
        .count();
    assert_eq!((ok, dups), (90, 10));
    assert_eq!(store.count_issued().unwrap(), 90);
}

#[test]
fn a_certificate_and_its_event_are_recorded_together_or_not_at_all() {
    let store = SqliteStore::open(&config("sqlite::memory:")).unwrap();
    let event = |n: u32| AuditEvent::CertificateIssued {
        ca_id: "main".into(),
        serial_hex: serial(n),
        subject: "CN=device-1,O=Example".into(),
        requester: "basic:alice".into(),
        operation: "simpleenroll".into(),
    };
    rt().block_on(async {
        store
            .record_issued_with_event(record(&serial(1)), &event(1))
            .await
            .unwrap();
        // A duplicate serial: neither the certificate nor its event.
        let e = store
            .record_issued_with_event(record(&serial(1)), &event(1))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::DuplicateSerial(_)), "{e}");
    });
    assert_eq!(store.count_issued().unwrap(), 1);
    let events = store.events(Some("CertificateIssued"), 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["serial_hex"], serial(1));
}

#[test]
fn events_are_listed_newest_first_and_by_kind() {
    let store: SharedStore = open_store(&config("sqlite::memory:")).unwrap();
    let auditor = Auditor::new(store.clone());
    rt().block_on(async {
        for i in 0..3 {
            auditor
                .emit(AuditEvent::CertificateIssued {
                    ca_id: "main".into(),
                    serial_hex: serial(i),
                    subject: format!("CN=d{i}"),
                    requester: "basic:alice".into(),
                    operation: "simpleenroll".into(),
                })
                .await;
        }
        auditor
            .emit(AuditEvent::ServerStopped {
                reason: "SIGTERM".into(),
            })
            .await;
    });
    let all = store.events(None, 10).unwrap();
    assert_eq!(
        all.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        [
            "ServerStopped",
            "CertificateIssued",
            "CertificateIssued",
            "CertificateIssued"
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all[0].ca_id, None);
    assert_eq!(all[0].data["reason"], "SIGTERM");
    let issued = store.events(Some("CertificateIssued"), 2).unwrap();
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[0].ca_id.as_deref(), Some("main"));
    assert_eq!(issued[0].data["subject"], "CN=d2");
    assert_eq!(issued[0].data["event"], "CertificateIssued");
    assert!(store.events(Some("PluginLoaded"), 10).unwrap().is_empty());
    assert!(store.events(None, 0).unwrap().is_empty());
    let age = SystemTime::now().duration_since(all[0].at).unwrap();
    assert!(age < Duration::from_secs(60), "{age:?}");
}

#[test]
fn close_flushes_then_refuses_writes_and_keeps_reads() {
    let store = SqliteStore::open(&config("sqlite::memory:")).unwrap();
    rt().block_on(async {
        // Not awaited before close: still written, since queued before it.
        let pending = store.record_issued(record(&serial(7)));
        store.close().await;
        pending.await.unwrap();
        store.close().await; // idempotent
        let e = store.record_issued(record(&serial(8))).await.unwrap_err();
        assert!(matches!(e, StoreError::Closed), "{e}");
    });
    assert!(store.serial_exists(&serial(7)).unwrap());
    assert_eq!(store.count_issued().unwrap(), 1);
}

#[test]
fn drop_flushes_queued_writes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let store = SqliteStore::open(&config(&url)).unwrap();
    for i in 0..50 {
        // Submitted now; the futures (answers) are discarded.
        drop(store.record_issued(record(&serial(i))));
    }
    drop(store);
    let store = SqliteStore::open(&config(&url)).unwrap();
    assert_eq!(store.count_issued().unwrap(), 50);
}

#[test]
fn synchronous_is_read_from_the_configuration() {
    let c: crate::config::Config =
        crate::config::Config::from_toml_str("[db]\nsynchronous = \"normal\"\n").unwrap();
    assert_eq!(c.db.synchronous, Synchronous::Normal);
    assert_eq!(DbConfig::default().synchronous, Synchronous::Full);
    assert!(crate::config::Config::from_toml_str("[db]\nsynchronous = \"off\"\n").is_err());
}

#[test]
fn times_round_trip_to_the_second() {
    for s in [-86_401_i64, -1, 0, 1, 1_798_761_600] {
        assert_eq!(unix_secs(from_unix_secs(s)), s);
    }
    assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(500)), -1);
}

#[test]
fn health_changes_from_a_plain_thread_are_stored() {
    let store: SharedStore = open_store(&config("sqlite::memory:")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Made inside the runtime: remembers it for listeners called elsewhere.
    let auditor = runtime.block_on(async { Auditor::new(store.clone()) });
    let listener = auditor.health_listener();
    std::thread::spawn(move || {
        listener(&crate::hsm::HealthChange {
            token: "kipuka-ca".into(),
            from: crate::hsm::HealthState::Healthy,
            to: crate::hsm::HealthState::Unavailable,
            reason: "CKR_TOKEN_NOT_PRESENT".into(),
            at: SystemTime::now(),
        })
    })
    .join()
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = store.events(Some("CaHealthChange"), 10).unwrap();
        if !events.is_empty() || std::time::Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data["to"], "unavailable");
    assert_eq!(events[0].data["token"], "kipuka-ca");
}

#[test]
fn an_enrollment_code_gives_exactly_its_uses_and_gets_failed_ones_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/codes.db", dir.path().display());
    let store = SqliteStore::open(&config(&url)).unwrap();
    let now = SystemTime::now();
    let code = EnrollmentCode {
        id: "code-00".into(),
        ca_id: "dev".into(),
        name: "device-1".into(),
        secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        uses: 2,
        uses_left: 2,
        expires_at: now + Duration::from_secs(60),
        revoked: false,
        created_at: now,
    };
    store.create_enrollment_code(&code).unwrap();
    // A second store on the same file: another process.
    let other = SqliteStore::open(&config(&url)).unwrap();
    let taken: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let st = if i % 2 == 0 { &store } else { &other };
                s.spawn(move || st.take_enrollment_code_use("code-00", now).unwrap())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum()
    });
    assert_eq!(taken, 2);
    let found = store.enrollment_code("code-00").unwrap().unwrap();
    assert_eq!(found.unusable(now), Some("used up"));
    store.give_back_enrollment_code_use("code-00").unwrap();
    assert!(other.take_enrollment_code_use("code-00", now).unwrap());
    // Never more than its uses, even given back too often.
    for _ in 0..5 {
        store.give_back_enrollment_code_use("code-00").unwrap();
    }
    assert_eq!(
        store.enrollment_code("code-00").unwrap().unwrap().uses_left,
        2
    );
    // Expired and revoked codes give nothing.
    assert!(!store
        .take_enrollment_code_use("code-00", now + Duration::from_secs(61))
        .unwrap());
    assert!(store.revoke_enrollment_code("code-00").unwrap());
    assert!(!store.take_enrollment_code_use("code-00", now).unwrap());
    assert!(!store.revoke_enrollment_code("code-missing").unwrap());
    assert_eq!(store.enrollment_codes().unwrap().len(), 1);
}

fn revocation(serial_hex: &str, reason_code: u8, at: u64) -> RevocationRequest {
    RevocationRequest {
        serial_hex: serial_hex.to_string(),
        status: RevocationStatus {
            revoked_at: UNIX_EPOCH + Duration::from_secs(at),
            reason_code,
            invalidity_date: (reason_code == 1).then(|| UNIX_EPOCH + Duration::from_secs(at - 60)),
        },
    }
}

fn revoked_event(serial_hex: &str) -> AuditEvent {
    AuditEvent::CertificateRevoked {
        ca_id: "main".into(),
        serial_hex: serial_hex.into(),
        reason: "keyCompromise".into(),
        revoked_at: UNIX_EPOCH,
        invalidity_date: None,
        by: "cli:test".into(),
    }
}

#[test]
fn revoke_unhold_and_their_errors() {
    let store = SqliteStore::open(&config("sqlite::memory:")).unwrap();
    rt().block_on(async {
        store.record_issued(record(&serial(1))).await.unwrap();
        store.record_issued(record(&serial(2))).await.unwrap();
        assert_eq!(store.revocation_generation().unwrap(), 0);
        let req = revocation(&serial(1), 1, 1_780_000_000);
        store
            .revoke(req.clone(), &revoked_event(&serial(1)))
            .await
            .unwrap();
        let e = store
            .revoke(req.clone(), &revoked_event(&serial(1)))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::AlreadyRevoked(_)), "{e}");
        let e = store
            .revoke(revocation(&serial(9), 0, 1), &revoked_event(&serial(9)))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::UnknownSerial(_)), "{e}");
        // Only a hold can be lifted.
        let e = store
            .unhold(&serial(1), &revoked_event(&serial(1)))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotOnHold(_)), "{e}");
        assert_eq!(
            store.revocation_status(&serial(1)).unwrap(),
            Some(req.status)
        );
        assert_eq!(store.revocation_status(&serial(2)).unwrap(), None);
        let g1 = store.revocation_generation().unwrap();
        assert!(g1 > 0);

        store
            .revoke(
                revocation(&serial(2), 6, 1_780_000_100),
                &revoked_event(&serial(2)),
            )
            .await
            .unwrap();
        let g2 = store.revocation_generation().unwrap();
        assert!(g2 > g1);
        assert_eq!(store.ca_revocation_generation("main").unwrap(), g2);
        assert_eq!(store.ca_revocation_generation("other").unwrap(), 0);
        store
            .unhold(&serial(2), &revoked_event(&serial(2)))
            .await
            .unwrap();
        assert!(store.revocation_generation().unwrap() > g2);
        assert_eq!(store.revocation_status(&serial(2)).unwrap(), None);
    });
    // Each successful change wrote its audit event in the same commit.
    assert_eq!(
        store.events(Some("CertificateRevoked"), 10).unwrap().len(),
        3
    );
    let crl = store.revoked_entries("main", UNIX_EPOCH).unwrap();
    assert_eq!(crl.len(), 1);
    assert_eq!(crl[0].serial_hex, serial(1));
    assert_eq!(crl[0].status.reason_code, 1);
    // Expired past the cut-off: off the CRL.
    let after = record(&serial(1)).not_after + Duration::from_secs(1);
    assert!(store.revoked_entries("main", after).unwrap().is_empty());
}

#[test]
fn certificates_are_listed_by_ca_status_and_subject() {
    let store = SqliteStore::open(&config("sqlite::memory:")).unwrap();
    rt().block_on(async {
        for n in 1..=3 {
            let mut rec = record(&serial(n));
            rec.subject = format!("CN=device_{n},O=Example");
            store.record_issued(rec).await.unwrap();
        }
        let mut other = record(&serial(4));
        other.ca_id = "other".into();
        other.not_after = UNIX_EPOCH + Duration::from_secs(1_000);
        store.record_issued(other).await.unwrap();
        store
            .revoke(
                revocation(&serial(2), 4, 1_780_000_000),
                &revoked_event(&serial(2)),
            )
            .await
            .unwrap();
    });
    let serials = |f: CertificateFilter<'_>| -> Vec<String> {
        store
            .list_certificates(&f)
            .unwrap()
            .into_iter()
            .map(|e| e.record.serial_hex)
            .collect()
    };
    let now = Some(UNIX_EPOCH + Duration::from_secs(1_780_000_000));
    assert_eq!(serials(CertificateFilter::default()).len(), 4);
    assert_eq!(
        serials(CertificateFilter {
            ca_id: Some("main"),
            now,
            ..Default::default()
        }),
        [serial(3), serial(2), serial(1)]
    );
    let status = |s| CertificateFilter {
        status: Some(s),
        now,
        ..Default::default()
    };
    assert_eq!(serials(status(StatusFilter::Revoked)), [serial(2)]);
    assert_eq!(serials(status(StatusFilter::Expired)), [serial(4)]);
    assert_eq!(serials(status(StatusFilter::Valid)), [serial(3), serial(1)]);
    // `_` is a literal underscore, not a LIKE wildcard; case does not matter.
    let subject = |s| CertificateFilter {
        subject_contains: Some(s),
        ..Default::default()
    };
    assert_eq!(serials(subject("DEVICE_3")), [serial(3)]);
    // Serial 4 keeps record()'s "CN=device-1": a wildcard `_` would match it.
    assert_eq!(
        serials(subject("device_")),
        [serial(3), serial(2), serial(1)]
    );
    assert_eq!(
        serials(CertificateFilter {
            limit: 1,
            ..Default::default()
        }),
        [serial(4)]
    );
    let e = store.find_entry(&serial(2)).unwrap().unwrap();
    assert_eq!(e.revocation.unwrap().reason_code, 4);
    assert_eq!(e.record.sans, record(&serial(2)).sans);
}

#[test]
fn another_process_sees_revocations_and_crl_numbers_stay_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let server = SqliteStore::open(&config(&url)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for n in 1..=20 {
            server.record_issued(record(&serial(n))).await.unwrap();
        }
        assert_eq!(server.next_crl_number("main").await.unwrap(), 1);
        assert_eq!(server.next_crl_number("main").await.unwrap(), 2);
        assert_eq!(server.next_crl_number("other").await.unwrap(), 1);
    });
    let before = server.revocation_generation().unwrap();
    // Two "CLI processes" racing: every revocation lands.
    let a = SqliteStore::open(&config(&url)).unwrap();
    let b = SqliteStore::open(&config(&url)).unwrap();
    runtime.block_on(async {
        fn revoke(s: &SqliteStore, n: u32) -> BoxFuture<'_, Result<(), StoreError>> {
            s.revoke(
                revocation(&serial(n), 0, 1_780_000_000),
                &revoked_event(&serial(n)),
            )
        }
        let (ra, rb) = tokio::join!(
            futures_util::future::join_all((1..=10).map(|n| revoke(&a, n))),
            futures_util::future::join_all((11..=20).map(|n| revoke(&b, n))),
        );
        assert!(ra.iter().chain(&rb).all(Result::is_ok), "{ra:?} {rb:?}");
        assert_eq!(b.next_crl_number("main").await.unwrap(), 3);
    });
    assert!(server.revocation_generation().unwrap() >= before + 20);
    assert_eq!(
        server.revoked_entries("main", UNIX_EPOCH).unwrap().len(),
        20
    );
    drop((a, b, server));
    // After a restart the count goes on.
    let server = SqliteStore::open(&config(&url)).unwrap();
    let n = runtime.block_on(server.next_crl_number("main")).unwrap();
    assert_eq!(n, 4);
    assert!(server.schema_version().unwrap() >= 3);
}

#[test]
fn the_crl_is_read_from_one_index_without_sorting() {
    // A CRL of a million entries must not sort a million rows or look each
    // one up in the table: the plan SQLite picks for the CRL query shows it.
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    schema::migrate(&mut conn, ":memory:").unwrap();
    conn.execute_batch("ANALYZE").unwrap();
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", revocations::CRL_ENTRIES))
        .unwrap()
        .query_map(("main", 0i64), |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let plan = plan.join(" | ");
    assert!(
        plan.contains("USING COVERING INDEX issued_certificates_crl"),
        "{plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}

#[test]
fn revoked_rows_are_visited_in_serial_order_with_their_state() {
    let store = SqliteStore::open(&config("sqlite::memory:")).unwrap();
    let runtime = rt();
    for n in [3, 1, 2, 4] {
        runtime
            .block_on(store.record_issued(record(&serial(n))))
            .unwrap();
    }
    for (n, reason) in [(3, 4u8), (1, 1), (2, 0)] {
        runtime
            .block_on(store.revoke(
                revocation(&serial(n), reason, 1_780_000_000),
                &revoked_event(&serial(n)),
            ))
            .unwrap();
    }
    let mut seen = Vec::new();
    store
        .for_each_revoked("main", UNIX_EPOCH, &mut |e| {
            seen.push((e.serial_hex.to_owned(), e.status.reason_code))
        })
        .unwrap();
    assert_eq!(
        seen,
        vec![(serial(1), 1), (serial(2), 0), (serial(3), 4)],
        "the unrevoked 4 is not visited"
    );
}

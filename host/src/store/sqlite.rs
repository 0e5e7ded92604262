//! [`SqliteStore`]: the embedded SQLite store, with a group-commit writer.
//!
//! - The database is in WAL mode: readers never block the writer nor each
//!   other, and a database left by a killed process is recovered by SQLite
//!   itself on the next open (the committed transactions in the WAL are
//!   kept, the unfinished one is discarded).
//! - One writer thread owns the write connection (see the module docs of
//!   [`crate::store`] for group commit). Nothing is acknowledged before the
//!   transaction holding it has committed.
//! - Reads go through a few read-only connections (`min(db.max_connections,
//!   4)`), each behind a mutex. An in-memory database (`sqlite::memory:`) has
//!   a single connection shared by the writer and the readers.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc, Mutex, MutexGuard, PoisonError, TryLockError,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use rusqlite::{ffi, Connection, OpenFlags, TransactionBehavior};
use tokio::sync::oneshot;

use super::{
    check_serial,
    codes::{self, EnrollmentCode},
    from_unix_millis, revocations, schema, unix_millis, unix_secs, BoxFuture, CertificateEntry,
    CertificateFilter, CertificateStore, DbLocation, IssuedRecord, RevocationRequest,
    RevocationStatus, RevokedRef, StoreError, StoredEvent, MAX_BATCH,
};
use crate::{audit::AuditEvent, config::DbConfig};

/// How long a connection waits for a lock held by another connection
/// (another process on the same file, a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most read-only connections kept open.
const MAX_READERS: usize = 4;
/// The WAL file is truncated back to this size after a checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

const INSERT_ISSUED: &str = "INSERT INTO issued_certificates
    (serial_hex, ca_id, subject, sans, not_before, not_after, requester, operation, der, recorded_at,
     ski_hex)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
pub(super) const INSERT_EVENT: &str =
    "INSERT INTO audit_events (at, kind, ca_id, data) VALUES (?1, ?2, ?3, ?4)";

type Ack = oneshot::Sender<Result<(), StoreError>>;

/// A row ready to insert (serialised by the caller, not by the writer).
enum Row {
    Issued {
        rec: IssuedRecord,
        sans_json: String,
        recorded_at: i64,
        /// The certificate's subjectKeyIdentifier (lower-case hex), if it has one.
        ski_hex: Option<String>,
        /// Its `CertificateIssued` event, written in the same transaction:
        /// one commit per enrollment, and never one row without the other.
        event: Option<Box<EventRow>>,
    },
    Event(EventRow),
}

/// An audit event ready to insert.
pub(super) struct EventRow {
    pub(super) at: i64,
    pub(super) kind: &'static str,
    pub(super) ca_id: Option<String>,
    pub(super) data: String,
}

impl EventRow {
    pub(super) fn of(ev: &AuditEvent) -> Self {
        EventRow {
            at: unix_millis(SystemTime::now()),
            kind: ev.kind(),
            ca_id: ev.ca_id().map(str::to_owned),
            data: ev.to_json().to_string(),
        }
    }
}

// Nearly every job is a `Write`: boxing its row would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Job {
    Write(Row, Ack),
    /// Write what was queued before, answer, stop.
    Shutdown(oneshot::Sender<()>),
}

/// The SQLite store: WAL mode, one group-commit writer thread, a few
/// read-only connections. See [`crate::store`] for durability and group
/// commit.
///
/// A database left by a killed process opens normally: SQLite replays the
/// committed transactions of its WAL and discards the unfinished one.
/// Dropping the store writes what is queued and joins the writer thread;
/// [`close`](Self::close) does the same without blocking.
pub struct SqliteStore {
    name: String,
    jobs: mpsc::Sender<Job>,
    closed: AtomicBool,
    writer: Option<JoinHandle<()>>,
    /// The writer thread's connection, also taken (briefly) by the
    /// read-check-write transactions of revocation (`super::revocations`).
    pub(super) writer_conn: Arc<Mutex<Connection>>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    /// Enrollment-code writes (small, immediate, outside group commit): a
    /// connection of its own on a file, the only one in memory.
    codes: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("database", &self.name)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its schema if needed) the database `config.url`
    /// names: `sqlite://path` (relative to the working directory),
    /// `sqlite:///abs/path` or `sqlite::memory:`. Other schemes fail with
    /// [`StoreError::UnsupportedUrl`]. Starts the writer thread.
    pub fn open(config: &DbConfig) -> Result<Self, StoreError> {
        let location = DbLocation::parse(&config.url)?;
        Self::open_location(location, config)
    }

    fn open_location(location: DbLocation, config: &DbConfig) -> Result<Self, StoreError> {
        let name = location.display();
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: name.clone(),
            source: Arc::new(e),
        };
        let mut conn = match &location {
            DbLocation::File(path) => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            DbLocation::Memory => Connection::open_in_memory(),
        }
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        if let DbLocation::File(_) = location {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(open_err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Open {
                    path: name,
                    source: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(format!(
                        "the database refused WAL mode (journal_mode is {mode:?})"
                    ))),
                });
            }
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {}; PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};",
            config.synchronous.as_sql()
        ))
        .map_err(open_err)?;
        schema::migrate(&mut conn, &name)?;

        let writer_conn = Arc::new(Mutex::new(conn));
        let readers = match &location {
            DbLocation::File(path) => {
                let n = usize::try_from(config.max_connections)
                    .unwrap_or(MAX_READERS)
                    .clamp(1, MAX_READERS);
                (0..n)
                    .map(|_| open_reader(path).map(|c| Arc::new(Mutex::new(c))))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(open_err)?
            }
            DbLocation::Memory => vec![writer_conn.clone()],
        };
        let codes = match &location {
            DbLocation::File(path) => {
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(open_err)?;
                c.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
                Arc::new(Mutex::new(c))
            }
            DbLocation::Memory => writer_conn.clone(),
        };

        let (jobs, rx) = mpsc::channel();
        let thread_name = name.clone();
        let thread_conn = writer_conn.clone();
        let writer = std::thread::Builder::new()
            .name("kipuka-store-writer".into())
            .spawn(move || run_writer(&thread_conn, &rx, &thread_name))
            .map_err(|e| StoreError::Open {
                path: name.clone(),
                source: Arc::new(e),
            })?;
        tracing::info!(
            database = %name,
            synchronous = config.synchronous.as_sql(),
            readers = readers.len(),
            "store opened"
        );
        Ok(SqliteStore {
            name,
            jobs,
            closed: AtomicBool::new(false),
            writer: Some(writer),
            writer_conn,
            readers,
            next_reader: AtomicUsize::new(0),
            codes,
        })
    }

    /// Writes what is queued, then stops the writer; later writes fail with
    /// [`StoreError::Closed`]. Reads keep working. Idempotent.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let (ack, done) = oneshot::channel();
        if self.jobs.send(Job::Shutdown(ack)).is_ok() {
            // Err: the writer had already stopped (an earlier close).
            let _ = done.await;
        }
    }

    /// `PRAGMA integrity_check`: `"ok"`, or SQLite's list of problems.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| StoreError::database("checking integrity", e))?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| StoreError::database("checking integrity", e))?;
        Ok(lines.join("\n"))
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        schema::current(&self.reader()).map_err(|e| StoreError::database("reading the schema", e))
    }

    /// Queues a row for the writer. The row is written even if the returned
    /// receiver is dropped.
    fn submit(&self, row: Row) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let (ack, answer) = oneshot::channel();
        self.jobs
            .send(Job::Write(row, ack))
            .map_err(|_| StoreError::Closed)?;
        Ok(answer)
    }

    fn write(&self, row: Result<Row, StoreError>) -> BoxFuture<'_, Result<(), StoreError>> {
        let answer = row.and_then(|row| self.submit(row));
        Box::pin(async move {
            // A dropped ack: the writer stopped before writing the row.
            answer?.await.unwrap_or(Err(StoreError::Closed))
        })
    }

    fn codes_conn(&self) -> MutexGuard<'_, Connection> {
        self.codes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether [`close`](Self::close) was called.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// A free read connection, else the next one in turn.
    pub(super) fn reader(&self) -> MutexGuard<'_, Connection> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.readers[(start + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.readers[start]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for SqliteStore {
    /// Flushes what is queued and waits for the writer thread to stop.
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            let (ack, _done) = oneshot::channel();
            let _ = self.jobs.send(Job::Shutdown(ack));
            let _ = writer.join();
        }
    }
}

/// The row of an issued certificate, with the audit event to commit in the
/// same transaction, if any.
fn issued_row(rec: IssuedRecord, event: Option<Box<EventRow>>) -> Result<Row, StoreError> {
    check_serial(&rec.serial_hex)?;
    let sans_json = serde_json::to_string(&rec.sans)
        .map_err(|e| StoreError::InvalidRecord(format!("subject alt names: {e}")))?;
    Ok(Row::Issued {
        ski_hex: super::schema::subject_key_id_hex(&rec.der),
        rec,
        sans_json,
        recorded_at: unix_millis(SystemTime::now()),
        event,
    })
}

impl CertificateStore for SqliteStore {
    fn record_issued(&self, rec: IssuedRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write(issued_row(rec, None))
    }

    fn record_issued_with_event(
        &self,
        rec: IssuedRecord,
        ev: &AuditEvent,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write(issued_row(rec, Some(Box::new(EventRow::of(ev)))))
    }

    fn record_event(&self, ev: &AuditEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write(Ok(Row::Event(EventRow::of(ev))))
    }

    fn serial_exists(&self, serial_hex: &str) -> Result<bool, StoreError> {
        self.reader()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM issued_certificates WHERE serial_hex = ?1)",
            )
            .and_then(|mut s| s.query_row([serial_hex], |r| r.get(0)))
            .map_err(|e| StoreError::database("looking up a serial", e))
    }

    fn find_by_serial(&self, serial_hex: &str) -> Result<Option<IssuedRecord>, StoreError> {
        Ok(self.find_entry(serial_hex)?.map(|e| e.record))
    }

    fn find_by_subject_key_id(&self, ski: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        use rusqlite::OptionalExtension;
        self.reader()
            .prepare_cached(
                "SELECT der FROM issued_certificates WHERE ski_hex = ?1 ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row([hex_lower(ski)], |r| r.get(0)).optional())
            .map_err(|e| StoreError::database("looking up a subject key identifier", e))
    }

    fn count_issued(&self) -> Result<u64, StoreError> {
        self.reader()
            .prepare_cached("SELECT COUNT(*) FROM issued_certificates")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map(|n| n.unsigned_abs())
            .map_err(|e| StoreError::database("counting certificates", e))
    }

    fn events(&self, kind: Option<&str>, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let op = "reading events";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.reader();
        let map = |r: &rusqlite::Row<'_>| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
            ))
        };
        let rows = match kind {
            Some(kind) => conn
                .prepare_cached(
                    "SELECT id, at, kind, ca_id, data FROM audit_events
                     WHERE kind = ?1 ORDER BY id DESC LIMIT ?2",
                )
                .and_then(|mut s| {
                    s.query_map((kind, limit), map)?
                        .collect::<Result<Vec<_>, _>>()
                }),
            None => conn
                .prepare_cached(
                    "SELECT id, at, kind, ca_id, data FROM audit_events ORDER BY id DESC LIMIT ?1",
                )
                .and_then(|mut s| s.query_map([limit], map)?.collect::<Result<Vec<_>, _>>()),
        }
        .map_err(|e| StoreError::database(op, e))?;
        rows.into_iter()
            .map(|(id, at, kind, ca_id, data)| {
                Ok(StoredEvent {
                    id,
                    at: from_unix_millis(at),
                    kind,
                    ca_id,
                    data: serde_json::from_str(&data).map_err(|e| StoreError::database(op, e))?,
                })
            })
            .collect()
    }

    fn revoke(
        &self,
        req: RevocationRequest,
        ev: &AuditEvent,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let event = EventRow::of(ev);
        self.transact("recording a revocation", move |tx| {
            revocations::revoke(tx, &req, &event)
        })
    }

    fn unhold(&self, serial_hex: &str, ev: &AuditEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        let event = EventRow::of(ev);
        let serial = serial_hex.to_string();
        self.transact("lifting a hold", move |tx| {
            revocations::unhold(tx, &serial, &event)
        })
    }

    fn revocation_status(&self, serial_hex: &str) -> Result<Option<RevocationStatus>, StoreError> {
        revocations::status(&self.reader(), serial_hex)
    }

    fn find_entry(&self, serial_hex: &str) -> Result<Option<CertificateEntry>, StoreError> {
        revocations::find_entry(&self.reader(), serial_hex)
    }

    fn list_certificates(
        &self,
        filter: &CertificateFilter<'_>,
    ) -> Result<Vec<CertificateEntry>, StoreError> {
        revocations::list(&self.reader(), filter)
    }

    fn for_each_revoked(
        &self,
        ca_id: &str,
        not_after_from: SystemTime,
        visit: &mut dyn FnMut(RevokedRef<'_>),
    ) -> Result<(), StoreError> {
        revocations::for_each_revoked(&self.reader(), ca_id, not_after_from, visit)
    }

    fn revocation_generation(&self) -> Result<i64, StoreError> {
        revocations::generation(&self.reader(), None)
    }

    fn ca_revocation_generation(&self, ca_id: &str) -> Result<i64, StoreError> {
        revocations::generation(&self.reader(), Some(ca_id))
    }

    fn next_crl_number(&self, ca_id: &str) -> BoxFuture<'_, Result<u64, StoreError>> {
        let ca_id = ca_id.to_string();
        self.transact("drawing a cRLNumber", move |tx| {
            revocations::next_crl_number(tx, &ca_id)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(SqliteStore::close(self))
    }

    fn create_enrollment_code(&self, code: &EnrollmentCode) -> Result<(), StoreError> {
        codes::insert(&self.codes_conn(), code)
    }

    fn enrollment_code(&self, id: &str) -> Result<Option<EnrollmentCode>, StoreError> {
        codes::find(&self.reader(), id)
    }

    fn enrollment_codes(&self) -> Result<Vec<EnrollmentCode>, StoreError> {
        codes::list(&self.reader())
    }

    fn revoke_enrollment_code(&self, id: &str) -> Result<bool, StoreError> {
        codes::revoke(&self.codes_conn(), id)
    }

    fn take_enrollment_code_use(&self, id: &str, now: SystemTime) -> Result<bool, StoreError> {
        codes::take_use(&self.codes_conn(), id, now)
    }

    fn give_back_enrollment_code_use(&self, id: &str) -> Result<(), StoreError> {
        codes::give_back(&self.codes_conn(), id)
    }
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// The writer thread: batches, commits, answers; stops on `Shutdown`.
fn run_writer(conn: &Mutex<Connection>, jobs: &mpsc::Receiver<Job>, name: &str) {
    let mut batch: Vec<(Row, Ack)> = Vec::with_capacity(MAX_BATCH);
    // Err: every sender is gone, which `Drop` precedes with a `Shutdown`.
    while let Ok(first) = jobs.recv() {
        let mut shutdown = None;
        match first {
            Job::Write(row, ack) => batch.push((row, ack)),
            Job::Shutdown(ack) => shutdown = Some(ack),
        }
        while shutdown.is_none() && batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(Job::Write(row, ack)) => batch.push((row, ack)),
                Ok(Job::Shutdown(ack)) => shutdown = Some(ack),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            let started = std::time::Instant::now();
            write_batch(&mut conn, &mut batch, name);
            // One group commit (fsync included) for the whole batch.
            crate::metrics::store_operation("commit_batch", started.elapsed());
        }
        if let Some(ack) = shutdown {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            // Moves the WAL into the database file if no reader is in the way;
            // never waits. Not needed for safety: the WAL is the database too.
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                tracing::debug!(database = %name, error = %e, "checkpoint at shutdown failed");
            }
            let _ = ack.send(());
            break;
        }
    }
    // Jobs still queued are dropped: their callers get `StoreError::Closed`.
    tracing::debug!(database = %name, "store writer stopped");
}

/// Writes `batch` in one transaction, commits, then answers every caller.
/// A row that fails alone (duplicate serial) fails only its caller; an
/// error that aborts the transaction fails the whole batch, unacknowledged.
fn write_batch(conn: &mut Connection, batch: &mut Vec<(Row, Ack)>, name: &str) {
    let size = batch.len();
    let outcome = (|| -> Result<Vec<Result<(), StoreError>>, rusqlite::Error> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(size);
        {
            let mut insert_issued = tx.prepare_cached(INSERT_ISSUED)?;
            let mut insert_event = tx.prepare_cached(INSERT_EVENT)?;
            for (row, _) in batch.iter() {
                let result = match row {
                    Row::Issued {
                        rec,
                        sans_json,
                        recorded_at,
                        ski_hex,
                        event,
                    } => insert_issued
                        .execute((
                            &rec.serial_hex,
                            &rec.ca_id,
                            &rec.subject,
                            sans_json,
                            unix_secs(rec.not_before),
                            unix_secs(rec.not_after),
                            &rec.requester,
                            &rec.operation,
                            &rec.der,
                            recorded_at,
                            ski_hex,
                        ))
                        .and_then(|n| match event {
                            Some(ev) => insert_event
                                .execute((ev.at, ev.kind, &ev.ca_id, &ev.data))
                                .map(|m| n + m),
                            None => Ok(n),
                        }),
                    Row::Event(ev) => insert_event.execute((ev.at, ev.kind, &ev.ca_id, &ev.data)),
                };
                results.push(match result {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => {
                        let serial = match row {
                            Row::Issued { rec, .. } => rec.serial_hex.clone(),
                            Row::Event(_) => String::new(),
                        };
                        Err(StoreError::DuplicateSerial(serial))
                    }
                    // A failed statement is undone alone; if SQLite rolled
                    // back the whole transaction instead, give up the batch.
                    Err(e) if !tx.is_autocommit() => {
                        Err(StoreError::database("recording a row", e))
                    }
                    Err(e) => return Err(e),
                });
            }
        }
        tx.commit()?;
        Ok(results)
    })();
    match outcome {
        Ok(results) => {
            tracing::trace!(database = %name, rows = size, "batch committed");
            for ((_, ack), result) in batch.drain(..).zip(results) {
                let _ = ack.send(result);
            }
        }
        Err(e) => {
            tracing::error!(database = %name, rows = size, error = %e,
                "store write failed; no row of the batch was recorded");
            let e = StoreError::database("recording rows", e);
            for (_, ack) in batch.drain(..) {
                let _ = ack.send(Err(e.clone()));
            }
        }
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Lower-case hex, the store's spelling of serials and key identifiers.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

//! The SQLite side of revocation: the revocation columns of
//! `issued_certificates`, `revocation_log` and `crl_numbers` (schema
//! version 3).
//!
//! Revoking is read-check-write (unknown serial? already revoked?), so it
//! does not go through the group-commit queue, which only inserts: it runs
//! as one IMMEDIATE transaction on the write connection, on a blocking
//! thread. Revocations are rare; the writer waits for the few milliseconds
//! one takes. IMMEDIATE also serialises revocations made by another process
//! (`kipuka certs revoke` beside `kipuka serve`): two racing revocations
//! both land, one after the other.
//!
//! The "revocation generation" is the newest `revocation_log` id: a running
//! server polls it (one indexed read) to notice a revocation made by another
//! process and re-sign its CRL.
//!
//! The SQL is plain enough for PostgreSQL too (`ON CONFLICT ... RETURNING`,
//! `LIKE ... ESCAPE`).

use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension, ToSql, Transaction, TransactionBehavior};

use super::{
    from_unix_secs,
    sqlite::{EventRow, SqliteStore, INSERT_EVENT},
    unix_millis, unix_secs, BoxFuture, CertificateEntry, CertificateFilter, IssuedRecord,
    RevocationRequest, RevocationStatus, RevokedRef, StatusFilter, StoreError,
};

/// The columns [`entry`] reads, in its order.
const ENTRY_COLUMNS: &str = "serial_hex, ca_id, subject, sans, not_before, not_after, requester, \
    operation, der, revoked_at, revocation_reason, invalidity_date";

/// The reason code of `certificateHold`, the one revocation that can be lifted.
const CERTIFICATE_HOLD: u8 = 6;

fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::database(op, e)
}

impl SqliteStore {
    /// Runs `f` in one IMMEDIATE transaction on the write connection, off
    /// the async workers; commits if `f` succeeds, rolls back otherwise.
    pub(super) fn transact<T, F>(
        &self,
        op: &'static str,
        f: F,
    ) -> BoxFuture<'_, Result<T, StoreError>>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let closed = self.is_closed();
        let conn = self.writer_conn.clone();
        Box::pin(async move {
            if closed {
                return Err(StoreError::Closed);
            }
            tokio::task::spawn_blocking(move || {
                let mut conn = conn
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db(op))?;
                let out = f(&tx)?;
                tx.commit().map_err(db(op))?;
                Ok(out)
            })
            .await
            .map_err(|e| StoreError::database(op, e))?
        })
    }
}

/// `kipuka certs revoke`: the certificate row, the log row and the audit
/// event, in the caller's transaction.
pub(super) fn revoke(
    tx: &Transaction<'_>,
    req: &RevocationRequest,
    event: &EventRow,
) -> Result<(), StoreError> {
    let op = "recording a revocation";
    let serial = &req.serial_hex;
    let ca_id = match current(tx, serial)? {
        None => return Err(StoreError::UnknownSerial(serial.clone())),
        Some((_, Some(_))) => return Err(StoreError::AlreadyRevoked(serial.clone())),
        Some((ca_id, None)) => ca_id,
    };
    let st = &req.status;
    tx.execute(
        "UPDATE issued_certificates
         SET revoked_at = ?1, revocation_reason = ?2, invalidity_date = ?3
         WHERE serial_hex = ?4",
        (
            unix_secs(st.revoked_at),
            i64::from(st.reason_code),
            st.invalidity_date.map(unix_secs),
            serial,
        ),
    )
    .map_err(db(op))?;
    log_change(tx, &ca_id, serial, "revoke", Some(st.reason_code), event).map_err(db(op))
}

/// `kipuka certs unhold`: clears a `certificateHold`.
pub(super) fn unhold(
    tx: &Transaction<'_>,
    serial: &str,
    event: &EventRow,
) -> Result<(), StoreError> {
    let op = "lifting a hold";
    let ca_id = match current(tx, serial)? {
        None => return Err(StoreError::UnknownSerial(serial.to_string())),
        Some((ca_id, Some(CERTIFICATE_HOLD))) => ca_id,
        Some(_) => return Err(StoreError::NotOnHold(serial.to_string())),
    };
    tx.execute(
        "UPDATE issued_certificates
         SET revoked_at = NULL, revocation_reason = NULL, invalidity_date = NULL
         WHERE serial_hex = ?1",
        [serial],
    )
    .map_err(db(op))?;
    log_change(tx, &ca_id, serial, "unhold", None, event).map_err(db(op))
}

/// The CA and current reason code (None: not revoked) of a recorded serial.
fn current(tx: &Transaction<'_>, serial: &str) -> Result<Option<(String, Option<u8>)>, StoreError> {
    tx.query_row(
        "SELECT ca_id, revocation_reason FROM issued_certificates WHERE serial_hex = ?1",
        [serial],
        |r| Ok((r.get(0)?, r.get::<_, Option<u8>>(1)?)),
    )
    .optional()
    .map_err(db("reading a certificate"))
}

fn log_change(
    tx: &Transaction<'_>,
    ca_id: &str,
    serial: &str,
    action: &str,
    reason: Option<u8>,
    event: &EventRow,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO revocation_log (ca_id, serial_hex, action, reason, at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        (
            ca_id,
            serial,
            action,
            reason,
            unix_millis(SystemTime::now()),
        ),
    )?;
    tx.execute(
        INSERT_EVENT,
        (event.at, event.kind, &event.ca_id, &event.data),
    )?;
    Ok(())
}

/// The next cRLNumber of `ca_id`, counted in the caller's transaction.
pub(super) fn next_crl_number(tx: &Transaction<'_>, ca_id: &str) -> Result<u64, StoreError> {
    tx.query_row(
        "INSERT INTO crl_numbers (ca_id, last_number) VALUES (?1, 1)
         ON CONFLICT (ca_id) DO UPDATE SET last_number = crl_numbers.last_number + 1
         RETURNING last_number",
        [ca_id],
        |r| r.get::<_, i64>(0),
    )
    .map(i64::unsigned_abs)
    .map_err(db("drawing a cRLNumber"))
}

/// The revocation of one serial (None: not revoked, or not recorded).
pub(super) fn status(
    conn: &Connection,
    serial: &str,
) -> Result<Option<RevocationStatus>, StoreError> {
    conn.prepare_cached(
        "SELECT revoked_at, revocation_reason, invalidity_date
         FROM issued_certificates WHERE serial_hex = ?1",
    )
    .and_then(|mut s| s.query_row([serial], |r| revocation_at(r, 0)).optional())
    .map(Option::flatten)
    .map_err(db("looking up a revocation"))
}

/// The revocation read from columns `first..first + 3` (revoked_at,
/// revocation_reason, invalidity_date).
fn revocation_at(
    r: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<Option<RevocationStatus>> {
    let revoked_at: Option<i64> = r.get(first)?;
    let reason: Option<u8> = r.get(first + 1)?;
    let invalidity: Option<i64> = r.get(first + 2)?;
    Ok(revoked_at.map(|at| RevocationStatus {
        revoked_at: from_unix_secs(at),
        reason_code: reason.unwrap_or(0),
        invalidity_date: invalidity.map(from_unix_secs),
    }))
}

/// A row of [`ENTRY_COLUMNS`]; the SANs are still JSON.
fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<(CertificateEntry, String)> {
    Ok((
        CertificateEntry {
            record: IssuedRecord {
                serial_hex: r.get(0)?,
                ca_id: r.get(1)?,
                subject: r.get(2)?,
                sans: Vec::new(),
                not_before: from_unix_secs(r.get(4)?),
                not_after: from_unix_secs(r.get(5)?),
                requester: r.get(6)?,
                operation: r.get(7)?,
                der: r.get(8)?,
            },
            revocation: revocation_at(r, 9)?,
        },
        r.get(3)?,
    ))
}

fn with_sans(
    op: &'static str,
    (mut e, sans): (CertificateEntry, String),
) -> Result<CertificateEntry, StoreError> {
    e.record.sans = serde_json::from_str(&sans).map_err(|e| StoreError::database(op, e))?;
    Ok(e)
}

/// One certificate and its revocation state.
pub(super) fn find_entry(
    conn: &Connection,
    serial: &str,
) -> Result<Option<CertificateEntry>, StoreError> {
    let op = "reading a certificate";
    conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM issued_certificates WHERE serial_hex = ?1"
    ))
    .and_then(|mut s| s.query_row([serial], entry).optional())
    .map_err(db(op))?
    .map(|row| with_sans(op, row))
    .transpose()
}

/// `kipuka certs list`.
pub(super) fn list(
    conn: &Connection,
    filter: &CertificateFilter<'_>,
) -> Result<Vec<CertificateEntry>, StoreError> {
    let op = "listing certificates";
    let now = unix_secs(filter.now.unwrap_or_else(SystemTime::now));
    let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM issued_certificates WHERE 1 = 1");
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    if let Some(ca) = filter.ca_id {
        args.push(Box::new(ca.to_string()));
        sql.push_str(&format!(" AND ca_id = ?{}", args.len()));
    }
    match filter.status {
        None => {}
        Some(StatusFilter::Revoked) => sql.push_str(" AND revoked_at IS NOT NULL"),
        Some(StatusFilter::Valid) => {
            args.push(Box::new(now));
            sql.push_str(&format!(
                " AND revoked_at IS NULL AND not_after > ?{}",
                args.len()
            ));
        }
        Some(StatusFilter::Expired) => {
            args.push(Box::new(now));
            sql.push_str(&format!(" AND not_after <= ?{}", args.len()));
        }
    }
    if let Some(text) = filter.subject_contains {
        let escaped: String = text
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        args.push(Box::new(format!("%{escaped}%")));
        sql.push_str(&format!(" AND subject LIKE ?{} ESCAPE '\\'", args.len()));
    }
    sql.push_str(" ORDER BY id DESC");
    if filter.limit > 0 {
        args.push(Box::new(i64::try_from(filter.limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    let rows = conn
        .prepare(&sql)
        .and_then(|mut s| {
            s.query_map(rusqlite::params_from_iter(args.iter()), entry)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(db(op))?;
    rows.into_iter().map(|row| with_sans(op, row)).collect()
}

/// The CRL entries of `ca_id`, by serial, visited row by row. The partial
/// index `issued_certificates_crl` (migration 5) holds every column read
/// here in serial order, so SQLite walks one index and neither sorts nor
/// touches the table.
pub(super) fn for_each_revoked(
    conn: &Connection,
    ca_id: &str,
    not_after_from: SystemTime,
    visit: &mut dyn FnMut(RevokedRef<'_>),
) -> Result<(), StoreError> {
    let mut read = || -> rusqlite::Result<()> {
        let mut s = conn.prepare_cached(CRL_ENTRIES)?;
        let mut rows = s.query((ca_id, unix_secs(not_after_from)))?;
        while let Some(r) = rows.next()? {
            let serial_hex = r.get_ref(0)?.as_str().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
            })?;
            let not_after: i64 = r.get(1)?;
            // The WHERE clause keeps only revoked rows: every one is Some.
            if let Some(status) = revocation_at(r, 2)? {
                visit(RevokedRef {
                    serial_hex,
                    not_after: from_unix_secs(not_after),
                    status,
                });
            }
        }
        Ok(())
    };
    read().map_err(db("reading revoked certificates"))
}

/// What [`for_each_revoked`] reads. `revoked_at IS NOT NULL` is spelled as
/// in the partial index's WHERE, which is what lets SQLite use it.
pub(super) const CRL_ENTRIES: &str =
    "SELECT serial_hex, not_after, revoked_at, revocation_reason, invalidity_date
     FROM issued_certificates
     WHERE ca_id = ?1 AND revoked_at IS NOT NULL AND not_after >= ?2
     ORDER BY serial_hex";

/// The newest `revocation_log` id, of one CA or of all (0: none yet).
pub(super) fn generation(conn: &Connection, ca_id: Option<&str>) -> Result<i64, StoreError> {
    let op = "reading the revocation generation";
    match ca_id {
        None => conn
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM revocation_log")
            .and_then(|mut s| s.query_row([], |r| r.get(0))),
        Some(ca) => conn
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM revocation_log WHERE ca_id = ?1")
            .and_then(|mut s| s.query_row([ca], |r| r.get(0))),
    }
    .map_err(db(op))
}

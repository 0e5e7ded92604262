//! The SQLite schema and its migrations.
//!
//! `schema_version` holds one row per applied migration. On open, every
//! migration the database has not applied yet is applied, in version order,
//! together with its `schema_version` row, in one transaction: a crash leaves
//! the old schema or the new one, never half of it. A database that has
//! applied a version this build does not know is refused rather than written
//! with an older idea of the schema. Migrations are append-only: never edit
//! one that has shipped.
//!
//! Version numbers are assigned per feature in advance (3: revocation, 4:
//! enrollment codes, 5: the CRL index), so a build may lack one in the middle: the set of
//! applied versions, not the highest one, decides what is still to apply, and
//! a database that skipped a version gets it when a build that has it opens it.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// `(version, SQL)`, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE issued_certificates (
         id          INTEGER PRIMARY KEY,
         serial_hex  TEXT    NOT NULL,
         ca_id       TEXT    NOT NULL,
         subject     TEXT    NOT NULL,
         sans        TEXT    NOT NULL,  -- JSON array of strings
         not_before  INTEGER NOT NULL,  -- Unix seconds
         not_after   INTEGER NOT NULL,  -- Unix seconds
         requester   TEXT    NOT NULL,
         operation   TEXT    NOT NULL,
         der         BLOB    NOT NULL,
         recorded_at INTEGER NOT NULL   -- Unix milliseconds
     );
     CREATE UNIQUE INDEX issued_certificates_serial ON issued_certificates (serial_hex);
     CREATE INDEX issued_certificates_ca_id ON issued_certificates (ca_id);
     CREATE INDEX issued_certificates_not_after ON issued_certificates (not_after);

     CREATE TABLE audit_events (
         id    INTEGER PRIMARY KEY,
         at    INTEGER NOT NULL,        -- Unix milliseconds
         kind  TEXT    NOT NULL,
         ca_id TEXT,
         data  TEXT    NOT NULL         -- JSON object
     );
     CREATE INDEX audit_events_kind ON audit_events (kind, id);",
    ),
    (
        2,
        // /serverkeygen finds a client's certificate by its subjectKeyIdentifier
        // (RFC 7030 §4.4.1.2); rows of version 1 are filled in by `backfill_ski`.
        "ALTER TABLE issued_certificates ADD COLUMN ski_hex TEXT;
         CREATE INDEX issued_certificates_ski ON issued_certificates (ski_hex);",
    ),
    (
        3,
        // Revocation (issue 14). The state lives on the certificate row (one
        // place to look for /simplereenroll and OCSP); `revocation_log` keeps
        // every revoke and unhold, and its growing id is the "revocation
        // generation" a running server polls to notice another process's
        // revocation. `crl_numbers` keeps each CA's cRLNumber monotonic.
        "ALTER TABLE issued_certificates ADD COLUMN revoked_at INTEGER;        -- Unix seconds
         ALTER TABLE issued_certificates ADD COLUMN revocation_reason INTEGER; -- RFC 5280 CRLReason
         ALTER TABLE issued_certificates ADD COLUMN invalidity_date INTEGER;   -- Unix seconds
         CREATE INDEX issued_certificates_revoked ON issued_certificates (ca_id, revoked_at);

         CREATE TABLE revocation_log (
             id          INTEGER PRIMARY KEY,
             ca_id       TEXT    NOT NULL,
             serial_hex  TEXT    NOT NULL,
             action      TEXT    NOT NULL,  -- 'revoke' or 'unhold'
             reason      INTEGER,
             at          INTEGER NOT NULL   -- Unix milliseconds
         );
         CREATE INDEX revocation_log_ca_id ON revocation_log (ca_id, id);

         CREATE TABLE crl_numbers (
             ca_id       TEXT    PRIMARY KEY,
             last_number INTEGER NOT NULL
         );",
    ),
    (
        4,
        // One-time enrollment codes: only the argon2 hash of the secret is kept.
        "CREATE TABLE enrollment_codes (
         id          TEXT    PRIMARY KEY,  -- the Basic user name, code-<hex>
         ca_id       TEXT    NOT NULL,
         name        TEXT    NOT NULL,     -- the policy's {user}
         secret_hash TEXT    NOT NULL,     -- argon2id PHC string
         uses        INTEGER NOT NULL,
         uses_left   INTEGER NOT NULL,
         expires_at  INTEGER NOT NULL,     -- Unix seconds
         revoked     INTEGER NOT NULL DEFAULT 0,
         created_at  INTEGER NOT NULL      -- Unix seconds
     );",
    ),
    (
        5,
        // The CRL's read (issue 14): every column it needs, in serial order,
        // for revoked rows only. With it a CRL of a million entries is one
        // walk of one index: no sort, no table lookups.
        "CREATE INDEX issued_certificates_crl ON issued_certificates
             (ca_id, serial_hex, not_after, revoked_at, revocation_reason, invalidity_date)
             WHERE revoked_at IS NOT NULL;",
    ),
];

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// The database's schema version (0: empty database).
pub(crate) fn current(conn: &Connection) -> rusqlite::Result<i64> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
}

/// Brings the schema up to [`latest`].
pub(crate) fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let op = "migrating the schema";
    let db = |e| StoreError::database(op, e);
    // IMMEDIATE: a second process opening the same new file waits instead of
    // racing to create the same tables.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL  -- Unix milliseconds
         );",
    )
    .map_err(db)?;
    let applied: std::collections::BTreeSet<i64> = tx
        .prepare("SELECT version FROM schema_version")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(db)?;
    if let Some(unknown) = applied
        .iter()
        .rev()
        .find(|v| !MIGRATIONS.iter().any(|(m, _)| m == *v))
    {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found: *unknown,
            supported: latest(),
        });
    }
    let now = super::unix_millis(std::time::SystemTime::now());
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        tx.execute_batch(sql).map_err(db)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            (version, now),
        )
        .map_err(db)?;
        tracing::info!(database = %path, version, "store schema migrated");
    }
    if !applied.contains(&2) {
        backfill_ski(&tx).map_err(db)?;
    }
    tx.commit().map_err(db)
}

/// Fills `ski_hex` for the certificates recorded before schema version 2.
fn backfill_ski(conn: &Connection) -> rusqlite::Result<()> {
    let rows: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT id, der FROM issued_certificates WHERE ski_hex IS NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = conn.prepare("UPDATE issued_certificates SET ski_hex = ?1 WHERE id = ?2")?;
    for (id, der) in rows {
        if let Some(ski) = subject_key_id_hex(&der) {
            update.execute((ski, id))?;
        }
    }
    Ok(())
}

/// The subjectKeyIdentifier of the certificate `der`, lower-case hex.
pub(crate) fn subject_key_id_hex(der: &[u8]) -> Option<String> {
    use der::Decode;
    use x509_cert::{ext::pkix::SubjectKeyIdentifier, Certificate};
    let cert = Certificate::from_der(der).ok()?;
    let (_, ski) = cert
        .tbs_certificate()
        .get_extension::<SubjectKeyIdentifier>()
        .ok()??;
    Some(super::sqlite::hex_lower(ski.0.as_bytes()))
}

//! The store: issued certificates and audit events.
//!
//! [`CertificateStore`] is the interface the EST handlers and the audit layer
//! use; [`SqliteStore`] is the built-in implementation (embedded SQLite,
//! nothing to install). A shared database (PostgreSQL), for several kipuka
//! instances side by side, would be a second implementation of the same
//! trait; [`open_store`] picks one from `db.url`.
//!
//! # Durability
//! [`CertificateStore::record_issued`] and [`CertificateStore::record_event`]
//! return only once the row is committed: an EST response that follows a
//! successful `record_issued` is never about a certificate the store could
//! forget. How durable "committed" is depends on `db.synchronous`
//! ([`Synchronous`]): `full` survives power loss, `normal` survives a killed
//! process.
//!
//! # Throughput: group commit
//! One writer thread owns the write connection. Callers queue their row with
//! a one-shot reply channel; the writer takes everything queued (up to
//! [`MAX_BATCH`]), writes it in one transaction, commits (one fsync for the
//! whole batch) and then answers each caller. The more callers wait, the
//! larger the batches: the cost of an fsync is shared, not multiplied. A
//! duplicate serial fails only its own caller.
//!
//! Reads ([`CertificateStore::serial_exists`], ...) are blocking and fast
//! (indexed lookups on separate read connections; WAL lets them run while the
//! writer commits). They may be called from async code.
//!
//! # Secrets
//! Nothing stored here is secret: certificates, subjects, requester names and
//! audit events. Callers must never put passwords, PINs or private keys in an
//! [`IssuedRecord`] or an [`AuditEvent`](crate::audit::AuditEvent).

mod codes;
mod revocations;
mod schema;
mod sqlite;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::config::DbConfig;

pub use codes::{EnrollmentCode, CODE_PREFIX};
pub(crate) use sqlite::hex_lower;
pub use sqlite::SqliteStore;

/// Most rows written in one transaction by the group-commit writer.
pub const MAX_BATCH: usize = 512;

/// A boxed, `Send` future, so that [`CertificateStore`] can be used as
/// `dyn CertificateStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An issued certificate, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedRecord {
    /// The certificate's serial number, lowercase hexadecimal without
    /// separators (40 characters for kipuka's 20-octet serials; at most 40).
    pub serial_hex: String,
    /// The `[[ca]]` id that issued it.
    pub ca_id: String,
    /// The subject DN, RFC 4514 string.
    pub subject: String,
    /// Subject alternative names, as strings (`dns:...`, `ip:...`, ...).
    pub sans: Vec<String>,
    /// Start of validity. Stored with one-second precision, as in the certificate.
    pub not_before: SystemTime,
    /// End of validity. Stored with one-second precision, as in the certificate.
    pub not_after: SystemTime,
    /// Who asked: `basic:<user>` or `cert:<subject>|<serial>`. Never a password.
    pub requester: String,
    /// The EST operation: `simpleenroll`, `simplereenroll` or `serverkeygen`.
    pub operation: String,
    /// The certificate, DER. Never the private key (`serverkeygen`).
    pub der: Vec<u8>,
}

/// A certificate's revocation, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationStatus {
    /// When it was revoked (whole seconds).
    pub revoked_at: SystemTime,
    /// The RFC 5280 CRLReason code (`crate::revocation::Reason`).
    pub reason_code: u8,
    /// When the key is known or suspected to have been compromised, if given.
    pub invalidity_date: Option<SystemTime>,
}

/// A revocation to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationRequest {
    /// The serial, lowercase hex.
    pub serial_hex: String,
    /// What to record.
    pub status: RevocationStatus,
}

/// A recorded certificate with its revocation state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateEntry {
    /// The certificate.
    pub record: IssuedRecord,
    /// None: not revoked.
    pub revocation: Option<RevocationStatus>,
}

/// Which certificates `list_certificates` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    /// Not revoked and not expired.
    Valid,
    /// Revoked (expired or not).
    Revoked,
    /// Past notAfter (revoked or not).
    Expired,
}

/// The filter of [`CertificateStore::list_certificates`].
#[derive(Clone, Debug, Default)]
pub struct CertificateFilter<'a> {
    /// Only this CA's.
    pub ca_id: Option<&'a str>,
    /// Only these; "expired" and "valid" are judged at `now`.
    pub status: Option<StatusFilter>,
    /// Only subjects containing this text (ASCII case-insensitive).
    pub subject_contains: Option<&'a str>,
    /// The time `status` is judged at (None: the current time).
    pub now: Option<SystemTime>,
    /// At most this many, newest first (0: no limit).
    pub limit: usize,
}

/// One entry of a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The serial, lowercase hex.
    pub serial_hex: String,
    /// The certificate's notAfter.
    pub not_after: SystemTime,
    /// Its revocation.
    pub status: RevocationStatus,
}

/// One entry of a CRL, borrowed from the store's row while it is visited
/// (see [`CertificateStore::for_each_revoked`]).
#[derive(Clone, Copy, Debug)]
pub struct RevokedRef<'a> {
    /// The serial, lowercase hex.
    pub serial_hex: &'a str,
    /// The certificate's notAfter.
    pub not_after: SystemTime,
    /// Its revocation.
    pub status: RevocationStatus,
}

/// An audit event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Row id: increases with every event recorded.
    pub id: i64,
    /// When the event was recorded (millisecond precision).
    pub at: SystemTime,
    /// [`AuditEvent::kind`](crate::audit::AuditEvent::kind), e.g. `CertificateIssued`.
    pub kind: String,
    /// The CA the event is about, when it is about one.
    pub ca_id: Option<String>,
    /// [`AuditEvent::to_json`](crate::audit::AuditEvent::to_json).
    pub data: serde_json::Value,
}

/// SQLite's `PRAGMA synchronous` for the write connection (the database is
/// always in WAL mode). `db.synchronous` in the configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// `FULL`: every commit is fsynced before it is acknowledged. An
    /// acknowledged record survives a process kill, an OS crash and a power
    /// loss. The default.
    #[default]
    Full,
    /// `NORMAL`: commits are written to the WAL but fsynced only at
    /// checkpoints. An acknowledged record survives a process kill or crash
    /// (the OS has the data); the last commits may be lost if the machine
    /// loses power or the OS crashes. Faster on slow disks.
    Normal,
}

impl Synchronous {
    /// The pragma value.
    pub fn as_sql(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Errors of the store layer.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `db.url` names a database kipuka does not support (yet). Only the
    /// scheme is reported: the rest of the URL may hold a password.
    #[error("db.url: unsupported database scheme \"{scheme}:\": {hint}")]
    UnsupportedUrl {
        /// The URL scheme, e.g. `postgres`.
        scheme: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// `db.url` is a `sqlite:` URL that cannot be used.
    #[error("db.url: {0}")]
    InvalidUrl(String),
    /// A certificate with this serial is already recorded.
    #[error("a certificate with serial {0} is already recorded")]
    DuplicateSerial(String),
    /// No certificate with this serial is recorded.
    #[error("no certificate with serial {0} is recorded")]
    UnknownSerial(String),
    /// The certificate is already revoked.
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),
    /// `unhold` of a certificate that is not on hold.
    #[error("certificate {0} is not on hold (certificateHold): only a hold can be lifted")]
    NotOnHold(String),
    /// A record that cannot be stored as given (e.g. a malformed serial).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The database was written by a newer kipuka.
    #[error(
        "database {path} has schema version {found}; this kipuka supports up to {supported}: \
         upgrade kipuka or use another database"
    )]
    SchemaTooNew {
        /// The database file.
        path: String,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// The database could not be opened or created.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file (or `:memory:`).
        path: String,
        /// Why.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// A database operation failed.
    #[error("database error while {op}: {source}")]
    Database {
        /// What was being done (`recording certificates`, `reading events`, ...).
        op: &'static str,
        /// The driver's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The store was closed (shutdown): the row was not recorded.
    #[error("the store is closed; the record was not written")]
    Closed,
}

impl StoreError {
    pub(crate) fn database(
        op: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Database {
            op,
            source: Arc::new(source),
        }
    }
}

/// Where issued certificates and audit events are kept.
///
/// Writes are asynchronous and durable: their futures resolve once the row is
/// committed. Reads are blocking but fast (indexed). Dropping a write's
/// future after it was created does not cancel the write; it only discards
/// the answer.
pub trait CertificateStore: Send + Sync + 'static {
    /// Records an issued certificate; resolves once it is committed. Fails
    /// with [`StoreError::DuplicateSerial`] if the serial is already recorded.
    fn record_issued(&self, rec: IssuedRecord) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Records an issued certificate and its audit event together: both or
    /// neither, in one commit (the enrollment path's one durable write).
    fn record_issued_with_event(
        &self,
        rec: IssuedRecord,
        ev: &crate::audit::AuditEvent,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Records an audit event, with the same durability as `record_issued`.
    fn record_event(&self, ev: &crate::audit::AuditEvent) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Whether a certificate with this serial (lowercase hex) is recorded.
    fn serial_exists(&self, serial_hex: &str) -> Result<bool, StoreError>;

    /// The certificate recorded with this serial (lowercase hex).
    fn find_by_serial(&self, serial_hex: &str) -> Result<Option<IssuedRecord>, StoreError>;

    /// The most recently recorded certificate (DER) whose subjectKeyIdentifier
    /// is `ski` (the `/serverkeygen` AsymmetricDecryptKeyIdentifier).
    fn find_by_subject_key_id(&self, ski: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// How many certificates are recorded.
    fn count_issued(&self) -> Result<u64, StoreError>;

    /// The most recent `limit` events, newest first; only those of `kind`
    /// (e.g. `"CertificateIssued"`) when given.
    fn events(&self, kind: Option<&str>, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Records a revocation and its audit event in one commit. Fails with
    /// [`StoreError::UnknownSerial`] or [`StoreError::AlreadyRevoked`].
    /// Bumps [`revocation_generation`](Self::revocation_generation).
    fn revoke(
        &self,
        req: RevocationRequest,
        ev: &crate::audit::AuditEvent,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Lifts a `certificateHold` (reason code 6), with its audit event, in
    /// one commit. Fails with [`StoreError::UnknownSerial`] or
    /// [`StoreError::NotOnHold`]. Bumps the revocation generation.
    fn unhold(
        &self,
        serial_hex: &str,
        ev: &crate::audit::AuditEvent,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The revocation of the certificate with this serial; None if it is
    /// not revoked or not recorded.
    fn revocation_status(&self, serial_hex: &str) -> Result<Option<RevocationStatus>, StoreError>;

    /// A certificate and its revocation state.
    fn find_entry(&self, serial_hex: &str) -> Result<Option<CertificateEntry>, StoreError>;

    /// Recorded certificates, newest first.
    fn list_certificates(
        &self,
        filter: &CertificateFilter<'_>,
    ) -> Result<Vec<CertificateEntry>, StoreError>;

    /// Visits the revoked certificates of `ca_id` whose notAfter is at or
    /// after `not_after_from` (older ones have left the CRL), by serial,
    /// one row at a time: a CRL of a million entries is encoded as it is
    /// read, never held as a million values.
    fn for_each_revoked(
        &self,
        ca_id: &str,
        not_after_from: SystemTime,
        visit: &mut dyn FnMut(RevokedRef<'_>),
    ) -> Result<(), StoreError>;

    /// [`for_each_revoked`](Self::for_each_revoked), collected.
    fn revoked_entries(
        &self,
        ca_id: &str,
        not_after_from: SystemTime,
    ) -> Result<Vec<RevokedEntry>, StoreError> {
        let mut entries = Vec::new();
        self.for_each_revoked(ca_id, not_after_from, &mut |e| {
            entries.push(RevokedEntry {
                serial_hex: e.serial_hex.to_owned(),
                not_after: e.not_after,
                status: e.status,
            })
        })?;
        Ok(entries)
    }

    /// A number that grows with every revocation and unhold, of any CA, by
    /// any process sharing the database: cheap to poll.
    fn revocation_generation(&self) -> Result<i64, StoreError>;

    /// The generation at which `ca_id`'s revocations last changed (0: never).
    fn ca_revocation_generation(&self, ca_id: &str) -> Result<i64, StoreError>;

    /// The next cRLNumber of `ca_id` (1, 2, ...), committed before it is
    /// returned: numbers never repeat, across restarts and processes.
    fn next_crl_number(&self, ca_id: &str) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Writes what is queued, then stops accepting writes (they fail with
    /// [`StoreError::Closed`]). Reads keep working. Idempotent.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Records a new enrollment code (blocking; `kipuka enroll-codes create`).
    fn create_enrollment_code(&self, code: &EnrollmentCode) -> Result<(), StoreError>;

    /// The enrollment code `id`.
    fn enrollment_code(&self, id: &str) -> Result<Option<EnrollmentCode>, StoreError>;

    /// Every enrollment code, oldest first.
    fn enrollment_codes(&self) -> Result<Vec<EnrollmentCode>, StoreError>;

    /// Revokes the code `id`: false if there is none.
    fn revoke_enrollment_code(&self, id: &str) -> Result<bool, StoreError>;

    /// Takes one use of the code `id` if it is usable at `now` (not revoked,
    /// not expired, a use left), atomically across connections and
    /// processes: true if a use was taken. Blocking, a few milliseconds.
    fn take_enrollment_code_use(&self, id: &str, now: SystemTime) -> Result<bool, StoreError>;

    /// Gives back a use taken for an issuance that then failed.
    fn give_back_enrollment_code_use(&self, id: &str) -> Result<(), StoreError>;
}

/// A shared store, as the server holds it.
pub type SharedStore = Arc<dyn CertificateStore>;

/// Opens the store `config.url` names (creating a SQLite database and its
/// schema on first start).
pub fn open_store(config: &DbConfig) -> Result<SharedStore, StoreError> {
    // Every supported URL is SQLite today; a `postgres://` arm goes here.
    Ok(Arc::new(SqliteStore::open(config)?))
}

/// Where a SQLite database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DbLocation {
    /// A file (created if missing; its folder must exist).
    File(PathBuf),
    /// A private in-memory database (`sqlite::memory:`), for tests.
    Memory,
}

impl DbLocation {
    /// Parses `sqlite://path` (relative to the working directory),
    /// `sqlite:///abs/path`, `sqlite:path` and `sqlite::memory:`.
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Err(unsupported_scheme(url));
        };
        if rest == ":memory:" || rest == "//:memory:" {
            return Ok(DbLocation::Memory);
        }
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() || path.ends_with('/') {
            return Err(StoreError::InvalidUrl(format!(
                "{url:?} names no file; use sqlite://kipuka.db (relative to the working \
                 directory) or sqlite:///absolute/path.db"
            )));
        }
        if path.contains('?') || path.contains('#') {
            return Err(StoreError::InvalidUrl(format!(
                "{url:?}: URL parameters are not supported; the file name would be taken \
                 literally (set db.synchronous instead of a query string)"
            )));
        }
        Ok(DbLocation::File(PathBuf::from(path)))
    }

    pub(crate) fn display(&self) -> String {
        match self {
            DbLocation::File(p) => p.display().to_string(),
            DbLocation::Memory => ":memory:".to_string(),
        }
    }
}

fn unsupported_scheme(url: &str) -> StoreError {
    // Only what precedes the first ':' is repeated: the rest may be a password.
    let scheme = url
        .split_once(':')
        .map(|(s, _)| s)
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 32
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .unwrap_or("")
        .to_ascii_lowercase();
    let hint = match scheme.as_str() {
        "postgres" | "postgresql" => {
            "postgres:// is not built in yet; use sqlite://<file> (one kipuka instance per database)"
        }
        "" => "db.url must be a URL such as sqlite://kipuka.db",
        _ => "only sqlite: URLs are supported, e.g. sqlite://kipuka.db or sqlite:///var/lib/kipuka/kipuka.db",
    };
    StoreError::UnsupportedUrl { scheme, hint }
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            // Round towards negative infinity: -0.5 s is second -1.
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                -s - 1
            } else {
                -s
            }
        }
    }
}

/// The inverse of [`unix_secs`].
pub(crate) fn from_unix_secs(s: i64) -> SystemTime {
    if s >= 0 {
        UNIX_EPOCH + Duration::from_secs(s.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
    }
}

/// Milliseconds since the Unix epoch (0 before it: only "now" is stored this way).
pub(crate) fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`unix_millis`].
pub(crate) fn from_unix_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0).unsigned_abs())
}

/// Serials are looked up by exact string: only one spelling is accepted.
pub(crate) fn check_serial(serial_hex: &str) -> Result<(), StoreError> {
    let ok = !serial_hex.is_empty()
        && serial_hex.len() <= 40
        && serial_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidRecord(format!(
            "serial {serial_hex:?} is not 1 to 40 lowercase hexadecimal digits"
        )))
    }
}

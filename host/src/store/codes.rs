//! One-time enrollment codes as stored: the secret only as its argon2 hash.
//!
//! A use is taken with one conditional `UPDATE ... WHERE uses_left > 0`,
//! which SQLite (like PostgreSQL) applies atomically across connections and
//! processes: N uses give at most N certificates, however many requests
//! race. The use is taken before the certificate is signed and given back
//! if the issuance fails; a process killed in between loses that use (one
//! certificate fewer, never one more).

use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension};

use super::{from_unix_secs, unix_secs, StoreError};

/// The Basic user names of enrollment codes start with this.
pub const CODE_PREFIX: &str = "code-";

/// An enrollment code as stored (never the secret itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollmentCode {
    /// The id, which is also the HTTP Basic user name: `code-<hex>`.
    pub id: String,
    /// The CA it enrolls at.
    pub ca_id: String,
    /// The name it may enroll: the policy's `{user}`.
    pub name: String,
    /// The argon2id PHC hash of the secret.
    pub secret_hash: String,
    /// Certificates it may give in all.
    pub uses: u32,
    /// Certificates it may still give.
    pub uses_left: u32,
    /// When it stops working (one-second precision).
    pub expires_at: SystemTime,
    /// Revoked by `kipuka enroll-codes revoke`.
    pub revoked: bool,
    /// When it was created.
    pub created_at: SystemTime,
}

impl EnrollmentCode {
    /// Why it cannot be used at `now`, or None.
    pub fn unusable(&self, now: SystemTime) -> Option<&'static str> {
        if self.revoked {
            Some("revoked")
        } else if self.expires_at <= now {
            Some("expired")
        } else if self.uses_left == 0 {
            Some("used up")
        } else {
            None
        }
    }
}

const COLUMNS: &str =
    "id, ca_id, name, secret_hash, uses, uses_left, expires_at, revoked, created_at";

fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::database(op, e)
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnrollmentCode> {
    Ok(EnrollmentCode {
        id: r.get(0)?,
        ca_id: r.get(1)?,
        name: r.get(2)?,
        secret_hash: r.get(3)?,
        uses: r.get(4)?,
        uses_left: r.get(5)?,
        expires_at: from_unix_secs(r.get(6)?),
        revoked: r.get(7)?,
        created_at: from_unix_secs(r.get(8)?),
    })
}

pub(super) fn insert(conn: &Connection, code: &EnrollmentCode) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO enrollment_codes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        rusqlite::params![
            code.id,
            code.ca_id,
            code.name,
            code.secret_hash,
            code.uses,
            code.uses_left,
            unix_secs(code.expires_at),
            code.revoked,
            unix_secs(code.created_at),
        ],
    )
    .map(drop)
    .map_err(db("recording an enrollment code"))
}

pub(super) fn find(conn: &Connection, id: &str) -> Result<Option<EnrollmentCode>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM enrollment_codes WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], from_row).optional())
    .map_err(db("reading an enrollment code"))
}

pub(super) fn list(conn: &Connection) -> Result<Vec<EnrollmentCode>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM enrollment_codes ORDER BY created_at, id"
    ))
    .and_then(|mut s| s.query_map([], from_row)?.collect())
    .map_err(db("listing enrollment codes"))
}

pub(super) fn revoke(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    conn.execute(
        "UPDATE enrollment_codes SET revoked = 1 WHERE id = ?1",
        [id],
    )
    .map(|n| n == 1)
    .map_err(db("revoking an enrollment code"))
}

/// Takes one use if the code is usable at `now`: true if it was taken.
pub(super) fn take_use(conn: &Connection, id: &str, now: SystemTime) -> Result<bool, StoreError> {
    conn.execute(
        "UPDATE enrollment_codes SET uses_left = uses_left - 1
         WHERE id = ?1 AND uses_left > 0 AND revoked = 0 AND expires_at > ?2",
        rusqlite::params![id, unix_secs(now)],
    )
    .map(|n| n == 1)
    .map_err(db("using an enrollment code"))
}

/// Gives back a use taken for an issuance that failed.
pub(super) fn give_back(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE enrollment_codes SET uses_left = uses_left + 1
         WHERE id = ?1 AND uses_left < uses",
        [id],
    )
    .map(drop)
    .map_err(db("giving back an enrollment code use"))
}

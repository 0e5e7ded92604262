//! `kipuka certs list|show|revoke|unhold`: the certificate inventory and
//! revocation, straight on the store. It runs beside `kipuka serve` on the
//! same database (SQLite in WAL mode): the server reads the revocation on
//! the next client request and re-signs its CRLs within a second.

use std::{
    path::Path,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use der::Decode;
use serde_json::{json, Value};

use crate::{
    audit::{rfc3339, AuditEvent},
    config::Config,
    revocation::{normalize_serial, parse_rfc3339, Reason},
    store::{
        open_store, CertificateEntry, CertificateFilter, RevocationRequest, RevocationStatus,
        SharedStore, StatusFilter,
    },
};

/// What `kipuka certs` was asked to do.
#[derive(Debug)]
pub enum CertsAction<'a> {
    /// `list`.
    List {
        /// `--ca`.
        ca: Option<&'a str>,
        /// `--status`.
        status: Option<&'a str>,
        /// `--subject`.
        subject: Option<&'a str>,
        /// `--json`.
        json: bool,
    },
    /// `show SERIAL`.
    Show {
        /// The serial as typed.
        serial: &'a str,
        /// `--json`.
        json: bool,
        /// `--pem`.
        pem: bool,
    },
    /// `revoke SERIAL`.
    Revoke {
        /// The serial as typed.
        serial: &'a str,
        /// `--reason`.
        reason: &'a str,
        /// `--at` (default: now).
        at: Option<&'a str>,
        /// `--invalidity-date`.
        invalidity_date: Option<&'a str>,
    },
    /// `unhold SERIAL`.
    Unhold {
        /// The serial as typed.
        serial: &'a str,
    },
}

impl CertsAction<'_> {
    fn name(&self) -> &'static str {
        match self {
            CertsAction::List { .. } => "list",
            CertsAction::Show { .. } => "show",
            CertsAction::Revoke { .. } => "revoke",
            CertsAction::Unhold { .. } => "unhold",
        }
    }
}

/// Runs one `kipuka certs` command; prints the result on stdout, errors on
/// stderr (non-zero exit).
pub fn certs(config_path: &Path, action: &CertsAction<'_>) -> ExitCode {
    match run(config_path, action) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kipuka certs {}: {e}", action.name());
            ExitCode::FAILURE
        }
    }
}

fn run(config_path: &Path, action: &CertsAction<'_>) -> Result<String, String> {
    let config = Config::load(Some(config_path)).map_err(|e| e.to_string())?;
    let store = open_store(&config.db).map_err(|e| format!("certificate store: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let out = runtime.block_on(async {
        let out = match *action {
            CertsAction::List {
                ca,
                status,
                subject,
                json,
            } => list(&config, &store, ca, status, subject, json),
            CertsAction::Show { serial, json, pem } => show(&store, serial, json, pem),
            CertsAction::Revoke {
                serial,
                reason,
                at,
                invalidity_date,
            } => revoke(&store, serial, reason, at, invalidity_date).await,
            CertsAction::Unhold { serial } => unhold(&store, serial).await,
        };
        store.close().await;
        out
    })?;
    Ok(out)
}

fn list(
    config: &Config,
    store: &SharedStore,
    ca: Option<&str>,
    status: Option<&str>,
    subject: Option<&str>,
    json: bool,
) -> Result<String, String> {
    if let Some(ca) = ca {
        if !config.ca.iter().any(|c| c.id == ca) {
            let ids: Vec<&str> = config.ca.iter().map(|c| c.id.as_str()).collect();
            return Err(format!(
                "no [[ca]] with id {ca:?} (ids: {})",
                ids.join(", ")
            ));
        }
    }
    let status = status.map(parse_status).transpose()?;
    let now = SystemTime::now();
    let entries = store
        .list_certificates(&CertificateFilter {
            ca_id: ca,
            status,
            subject_contains: subject,
            now: Some(now),
            limit: 0,
        })
        .map_err(|e| e.to_string())?;
    if json {
        let rows: Vec<Value> = entries.iter().map(|e| entry_json(e, now)).collect();
        return Ok(format!("{}\n", Value::Array(rows)));
    }
    let mut out = format!(
        "{:<40}  {:<12}  {:<8}  {:<20}  SUBJECT\n",
        "SERIAL", "CA", "STATUS", "NOT AFTER"
    );
    for e in &entries {
        out.push_str(&format!(
            "{:<40}  {:<12}  {:<8}  {:<20}  {}\n",
            e.record.serial_hex,
            e.record.ca_id,
            status_name(e, now),
            seconds(e.record.not_after),
            e.record.subject
        ));
    }
    Ok(out)
}

fn parse_status(s: &str) -> Result<StatusFilter, String> {
    match s.to_ascii_lowercase().as_str() {
        "valid" => Ok(StatusFilter::Valid),
        "revoked" => Ok(StatusFilter::Revoked),
        "expired" => Ok(StatusFilter::Expired),
        _ => Err(format!("--status {s:?}: use valid, revoked or expired")),
    }
}

/// `valid`, `revoked` or `expired` (a revoked certificate stays `revoked`
/// after it expires: it is on the CRL until then, and in the record after).
fn status_name(e: &CertificateEntry, now: SystemTime) -> &'static str {
    if e.revocation.is_some() {
        "revoked"
    } else if e.record.not_after <= now {
        "expired"
    } else {
        "valid"
    }
}

/// RFC 3339 without the milliseconds the store does not keep.
fn seconds(t: SystemTime) -> String {
    let s = rfc3339(t);
    match s.strip_suffix(".000Z") {
        Some(head) => format!("{head}Z"),
        None => s,
    }
}

fn entry_json(e: &CertificateEntry, now: SystemTime) -> Value {
    let r = &e.record;
    json!({
        "serial": r.serial_hex,
        "ca_id": r.ca_id,
        "subject": r.subject,
        "sans": r.sans,
        "not_before": seconds(r.not_before),
        "not_after": seconds(r.not_after),
        "requester": r.requester,
        "operation": r.operation,
        "status": status_name(e, now),
        "revocation": e.revocation.as_ref().map(|st| json!({
            "revoked_at": seconds(st.revoked_at),
            "reason": Reason::from_code(st.reason_code).map_or("unknown", Reason::name),
            "invalidity_date": st.invalidity_date.map(seconds),
        })),
    })
}

fn find(store: &SharedStore, serial: &str) -> Result<(String, CertificateEntry), String> {
    let serial = normalize_serial(serial)?;
    let entry = store
        .find_entry(&serial)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no certificate with serial {serial} is recorded"))?;
    Ok((serial, entry))
}

fn show(store: &SharedStore, serial: &str, json: bool, pem: bool) -> Result<String, String> {
    let (_, entry) = find(store, serial)?;
    let now = SystemTime::now();
    if pem {
        use der::EncodePem;
        let cert = x509_cert::Certificate::from_der(&entry.record.der)
            .map_err(|e| format!("the recorded certificate does not parse: {e}"))?;
        return cert
            .to_pem(der::pem::LineEnding::LF)
            .map_err(|e| e.to_string());
    }
    if json {
        return Ok(format!("{}\n", entry_json(&entry, now)));
    }
    let r = &entry.record;
    let mut out = format!(
        "serial:     {}\nca:         {}\nsubject:    {}\nsans:       {}\nnot before: {}\n\
         not after:  {}\nrequester:  {}\noperation:  {}\nstatus:     {}\n",
        r.serial_hex,
        r.ca_id,
        r.subject,
        r.sans.join(", "),
        seconds(r.not_before),
        seconds(r.not_after),
        r.requester,
        r.operation,
        status_name(&entry, now),
    );
    if let Some(st) = &entry.revocation {
        out.push_str(&format!(
            "revoked at: {}\nreason:     {}\n",
            seconds(st.revoked_at),
            Reason::from_code(st.reason_code).map_or("unknown", Reason::name)
        ));
        if let Some(d) = st.invalidity_date {
            out.push_str(&format!("invalidity: {}\n", seconds(d)));
        }
    }
    Ok(out)
}

/// Who is acting, for the audit event: the login name, as far as the
/// environment tells it.
fn operator() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// A time given on the command line, whole seconds, not in the future.
fn past_time(flag: &str, text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let t = parse_rfc3339(text).map_err(|e| format!("{flag}: {e}"))?;
    // A little slack for clocks: "now" typed by a script a moment ago.
    if t > now + Duration::from_secs(5) {
        return Err(format!("{flag} {text}: the time is in the future"));
    }
    Ok(t)
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

async fn revoke(
    store: &SharedStore,
    serial: &str,
    reason: &str,
    at: Option<&str>,
    invalidity_date: Option<&str>,
) -> Result<String, String> {
    let reason = Reason::parse(reason)?;
    let now = SystemTime::now();
    let revoked_at = whole_seconds(match at {
        Some(t) => past_time("--at", t, now)?,
        None => now,
    });
    let invalidity_date = invalidity_date
        .map(|t| past_time("--invalidity-date", t, now).map(whole_seconds))
        .transpose()?;
    let (serial, entry) = find(store, serial)?;
    let status = RevocationStatus {
        revoked_at,
        reason_code: reason.code(),
        invalidity_date,
    };
    let event = AuditEvent::CertificateRevoked {
        ca_id: entry.record.ca_id.clone(),
        serial_hex: serial.clone(),
        reason: reason.name().to_string(),
        revoked_at,
        invalidity_date,
        by: operator(),
    };
    store
        .revoke(
            RevocationRequest {
                serial_hex: serial.clone(),
                status,
            },
            &event,
        )
        .await
        .map_err(|e| e.to_string())?;
    crate::audit::Auditor::log_only().log(&event);
    Ok(format!(
        "revoked certificate {serial} of CA {} ({}) at {}\n",
        entry.record.ca_id,
        reason.name(),
        seconds(revoked_at)
    ))
}

async fn unhold(store: &SharedStore, serial: &str) -> Result<String, String> {
    let (serial, entry) = find(store, serial)?;
    let event = AuditEvent::CertificateUnheld {
        ca_id: entry.record.ca_id.clone(),
        serial_hex: serial.clone(),
        by: operator(),
    };
    store
        .unhold(&serial, &event)
        .await
        .map_err(|e| e.to_string())?;
    crate::audit::Auditor::log_only().log(&event);
    Ok(format!(
        "lifted the hold on certificate {serial} of CA {}: it is valid again\n",
        entry.record.ca_id
    ))
}

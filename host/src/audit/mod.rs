//! Audit: typed events, to the log and to the store.
//!
//! Every security-relevant fact (a certificate issued, an enrollment refused,
//! the HSM's health changing, a plugin loaded or refused, the server starting
//! or stopping) is one [`AuditEvent`]. The [`Auditor`] logs it with `tracing`
//! (field `event` = [`AuditEvent::kind`]) and records it in the store with the
//! same durability as issued certificates.
//!
//! # No secrets
//! Events never carry passwords, PINs, private keys, Authorization headers or
//! database URLs. Requesters are named (`basic:<user>`,
//! `cert:<subject>|<serial>`), never authenticated with what they sent; a
//! `reason` is a message written by kipuka, not an echo of a request body or
//! of a configuration value that may hold a credential. Whoever adds a
//! variant or builds a `reason` keeps it that way: the audit log is read by
//! more people than the key custodians.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};

use crate::{
    hsm::{HealthChange, HealthListener, HealthState},
    store::SharedStore,
};

/// One audit event. See the [module documentation](self) about secrets.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AuditEvent {
    /// A certificate was issued and recorded.
    CertificateIssued {
        /// The `[[ca]]` id.
        ca_id: String,
        /// Serial, lowercase hex.
        serial_hex: String,
        /// Subject DN (RFC 4514).
        subject: String,
        /// `basic:<user>` or `cert:<subject>|<serial>`.
        requester: String,
        /// `simpleenroll`, `simplereenroll` or `serverkeygen`.
        operation: String,
    },
    /// An enrollment request was refused.
    EnrollmentRejected {
        /// The CA, when the request got far enough to name one.
        ca_id: Option<String>,
        /// The EST operation asked for.
        operation: String,
        /// Who asked, when authenticated.
        requester: Option<String>,
        /// The HTTP status returned.
        status: u16,
        /// Why, as told to the client. Never request content or credentials.
        reason: String,
    },
    /// The CA's HSM changed health state.
    CaHealthChange(HealthChange),
    /// A vendor plugin was loaded.
    PluginLoaded {
        /// The plugin's name (`nshield`, ...).
        name: String,
        /// The file it was loaded from.
        path: PathBuf,
        /// Its ABI version.
        abi_version: String,
    },
    /// A file in the plugin folders was refused.
    PluginRefused {
        /// The file.
        path: PathBuf,
        /// Why (wrong ABI, not a plugin, duplicate name, ...).
        reason: String,
    },
    /// A certificate was revoked (`kipuka certs revoke`).
    CertificateRevoked {
        /// The `[[ca]]` id that issued it.
        ca_id: String,
        /// Serial, lowercase hex.
        serial_hex: String,
        /// The RFC 5280 reason name (`keyCompromise`, ...).
        reason: String,
        /// The revocation time recorded.
        revoked_at: SystemTime,
        /// The invalidity date given, if any.
        invalidity_date: Option<SystemTime>,
        /// Who did it: `cli:<user>`.
        by: String,
    },
    /// A `certificateHold` was lifted (`kipuka certs unhold`).
    CertificateUnheld {
        /// The `[[ca]]` id that issued it.
        ca_id: String,
        /// Serial, lowercase hex.
        serial_hex: String,
        /// Who did it: `cli:<user>`.
        by: String,
    },
    /// The server is listening.
    ServerStarted {
        /// The listening socket.
        listen: SocketAddr,
        /// Ids of the CAs served.
        cas: Vec<String>,
    },
    /// The server stopped.
    ServerStopped {
        /// Why (signal, error, ...).
        reason: String,
    },
}

impl AuditEvent {
    /// The variant's name: `CertificateIssued`, `EnrollmentRejected`,
    /// `CaHealthChange`, `PluginLoaded`, `PluginRefused`, `CertificateRevoked`,
    /// `CertificateUnheld`, `ServerStarted`,
    /// `ServerStopped`. Stored as the event's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::CertificateIssued { .. } => "CertificateIssued",
            AuditEvent::EnrollmentRejected { .. } => "EnrollmentRejected",
            AuditEvent::CaHealthChange(_) => "CaHealthChange",
            AuditEvent::PluginLoaded { .. } => "PluginLoaded",
            AuditEvent::PluginRefused { .. } => "PluginRefused",
            AuditEvent::CertificateRevoked { .. } => "CertificateRevoked",
            AuditEvent::CertificateUnheld { .. } => "CertificateUnheld",
            AuditEvent::ServerStarted { .. } => "ServerStarted",
            AuditEvent::ServerStopped { .. } => "ServerStopped",
        }
    }

    /// The CA the event is about, if any (stored in its own, indexed column).
    pub fn ca_id(&self) -> Option<&str> {
        match self {
            AuditEvent::CertificateIssued { ca_id, .. }
            | AuditEvent::CertificateRevoked { ca_id, .. }
            | AuditEvent::CertificateUnheld { ca_id, .. } => Some(ca_id),
            AuditEvent::EnrollmentRejected { ca_id, .. } => ca_id.as_deref(),
            _ => None,
        }
    }

    /// Whether the event is logged as a warning rather than as information:
    /// rejections, refused plugins, and health getting worse. (A recovery to
    /// healthy is information, as `hsm::health` logs it.)
    pub fn is_warning(&self) -> bool {
        match self {
            AuditEvent::EnrollmentRejected { .. } | AuditEvent::PluginRefused { .. } => true,
            AuditEvent::CaHealthChange(c) => c.to != HealthState::Healthy,
            _ => false,
        }
    }

    /// The event as a JSON object: `{"event": kind, ...fields}`. Times are
    /// RFC 3339 UTC strings, paths are strings.
    pub fn to_json(&self) -> Value {
        let mut v = match self {
            AuditEvent::CertificateIssued {
                ca_id,
                serial_hex,
                subject,
                requester,
                operation,
            } => json!({
                "ca_id": ca_id, "serial_hex": serial_hex, "subject": subject,
                "requester": requester, "operation": operation,
            }),
            AuditEvent::EnrollmentRejected {
                ca_id,
                operation,
                requester,
                status,
                reason,
            } => json!({
                "ca_id": ca_id, "operation": operation, "requester": requester,
                "status": status, "reason": reason,
            }),
            AuditEvent::CaHealthChange(c) => json!({
                "token": c.token, "from": c.from, "to": c.to, "reason": c.reason,
                "at": rfc3339(c.at),
            }),
            AuditEvent::PluginLoaded {
                name,
                path,
                abi_version,
            } => json!({
                "name": name, "path": path.display().to_string(), "abi_version": abi_version,
            }),
            AuditEvent::PluginRefused { path, reason } => json!({
                "path": path.display().to_string(), "reason": reason,
            }),
            AuditEvent::CertificateRevoked {
                ca_id,
                serial_hex,
                reason,
                revoked_at,
                invalidity_date,
                by,
            } => json!({
                "ca_id": ca_id, "serial_hex": serial_hex, "reason": reason,
                "revoked_at": rfc3339(*revoked_at),
                "invalidity_date": invalidity_date.map(rfc3339), "by": by,
            }),
            AuditEvent::CertificateUnheld {
                ca_id,
                serial_hex,
                by,
            } => json!({ "ca_id": ca_id, "serial_hex": serial_hex, "by": by }),
            AuditEvent::ServerStarted { listen, cas } => json!({
                "listen": listen.to_string(), "cas": cas,
            }),
            AuditEvent::ServerStopped { reason } => json!({ "reason": reason }),
        };
        if let Value::Object(map) = &mut v {
            map.insert("event".into(), Value::from(self.kind()));
        }
        v
    }

    fn message(&self) -> &'static str {
        match self {
            AuditEvent::CertificateIssued { .. } => "certificate issued",
            AuditEvent::EnrollmentRejected { .. } => "enrollment rejected",
            AuditEvent::CaHealthChange(_) => "CA health changed",
            AuditEvent::PluginLoaded { .. } => "plugin loaded",
            AuditEvent::PluginRefused { .. } => "plugin refused",
            AuditEvent::CertificateRevoked { .. } => "certificate revoked",
            AuditEvent::CertificateUnheld { .. } => "certificate hold lifted",
            AuditEvent::ServerStarted { .. } => "server started",
            AuditEvent::ServerStopped { .. } => "server stopped",
        }
    }
}

/// Sends events to the log and to the store. Cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    store: Option<SharedStore>,
    /// The runtime `new` was called on, for `emit_detached` from plain threads.
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("stores", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl Auditor {
    /// An auditor writing to `store`. Called inside a Tokio runtime, it
    /// remembers that runtime for [`emit_detached`](Self::emit_detached).
    pub fn new(store: SharedStore) -> Self {
        Auditor {
            store: Some(store),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// An auditor that only logs (commands without a store, tests).
    pub fn log_only() -> Self {
        Auditor {
            store: None,
            runtime: None,
        }
    }

    /// Logs the event, then records it in the store; returns once it is
    /// recorded. A store failure is logged (error), never returned: auditing
    /// does not fail the operation it describes.
    pub async fn emit(&self, ev: AuditEvent) {
        log(&ev);
        if let Some(store) = &self.store {
            if let Err(e) = store.record_event(&ev).await {
                store_failed(&ev, &e);
            }
        }
    }

    /// Logs `ev` without recording it: for events the caller has already
    /// written to the store with the row they describe.
    pub fn log(&self, ev: &AuditEvent) {
        log(ev);
    }

    /// [`emit`](Self::emit) from synchronous code (e.g. a
    /// [`HealthListener`]): logs now, and records in the background on the
    /// current Tokio runtime, or on the one `new` was called on. Without a
    /// runtime the event is only logged (and a warning says so).
    pub fn emit_detached(&self, ev: AuditEvent) {
        log(&ev);
        let Some(store) = &self.store else { return };
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.runtime.clone());
        match runtime {
            Some(rt) => {
                let store = store.clone();
                rt.spawn(async move {
                    if let Err(e) = store.record_event(&ev).await {
                        store_failed(&ev, &e);
                    }
                });
            }
            None => tracing::warn!(
                event = ev.kind(),
                "no async runtime: audit event logged but not stored"
            ),
        }
    }

    /// A [`HealthListener`] that emits every change as
    /// [`AuditEvent::CaHealthChange`] (detached: listeners are synchronous).
    pub fn health_listener(&self) -> HealthListener {
        let auditor = self.clone();
        Arc::new(move |change: &HealthChange| {
            auditor.emit_detached(AuditEvent::CaHealthChange(change.clone()))
        })
    }
}

fn log(ev: &AuditEvent) {
    if let AuditEvent::CertificateIssued { ca_id, .. } = ev {
        crate::metrics::certificate_issued(ca_id);
    }
    let details = ev.to_json();
    if ev.is_warning() {
        tracing::warn!(event = ev.kind(), ca_id = ev.ca_id(), %details, "{}", ev.message());
    } else {
        tracing::info!(event = ev.kind(), ca_id = ev.ca_id(), %details, "{}", ev.message());
    }
}

fn store_failed(ev: &AuditEvent, e: &crate::store::StoreError) {
    tracing::error!(event = ev.kind(), error = %e, "audit event not recorded in the store");
}

/// `2026-03-21T08:15:00.123Z`. Times before 1970 are clamped to the epoch.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_000 + 3_723_456);
        assert_eq!(rfc3339(t), "2000-02-29T01:02:03.456Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(rfc3339(t), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn kinds_and_json() {
        let ev = AuditEvent::EnrollmentRejected {
            ca_id: None,
            operation: "simpleenroll".into(),
            requester: Some("basic:alice".into()),
            status: 401,
            reason: "bad credentials".into(),
        };
        assert_eq!(ev.kind(), "EnrollmentRejected");
        assert!(ev.is_warning());
        assert_eq!(
            ev.to_json(),
            json!({"event": "EnrollmentRejected", "ca_id": null, "operation": "simpleenroll",
                   "requester": "basic:alice", "status": 401, "reason": "bad credentials"})
        );
        let ev = AuditEvent::CaHealthChange(HealthChange {
            token: "kipuka-ca".into(),
            from: HealthState::Healthy,
            to: HealthState::Degraded,
            reason: "CKR_DEVICE_ERROR".into(),
            at: UNIX_EPOCH,
        });
        assert_eq!(ev.kind(), "CaHealthChange");
        assert!(ev.is_warning());
        assert_eq!(ev.to_json()["to"], "degraded");
        assert_eq!(ev.to_json()["at"], "1970-01-01T00:00:00.000Z");
        let ev = AuditEvent::ServerStarted {
            listen: "127.0.0.1:8443".parse().unwrap(),
            cas: vec!["a".into()],
        };
        assert!(!ev.is_warning());
        assert_eq!(ev.to_json()["listen"], "127.0.0.1:8443");
        assert_eq!(ev.ca_id(), None);
    }
}

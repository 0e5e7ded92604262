//! Revocation: the RFC 5280 reason codes, serial numbers as operators type
//! them, and the one question the EST handlers ask ("is this client
//! certificate revoked?"), answered from the store — not from a CRL file,
//! so a revocation made by `kipuka certs revoke` in another process counts
//! on the very next request.
//!
//! Status publishing: [`crl`] (CRLs).

pub mod crl;
pub mod ocsp;

use std::time::SystemTime;

use x509_cert::Certificate;

use crate::store::{hex_lower, CertificateStore, RevocationStatus, StoreError};

/// Runs `f`, which blocks on the store for a while (a large CRL, a batch
/// of OCSP statuses), without stalling the other tasks of the runtime's
/// worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        // A current-thread runtime (tests, tools) has no other worker to
        // hand its tasks to.
        _ => f(),
    }
}

/// An RFC 5280 §5.3.1 CRLReason. `removeFromCRL` (8) is a delta-CRL
/// marker, not a reason an operator gives, hence absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// 0
    Unspecified,
    /// 1
    KeyCompromise,
    /// 2
    CaCompromise,
    /// 3
    AffiliationChanged,
    /// 4
    Superseded,
    /// 5
    CessationOfOperation,
    /// 6: the only reason that can be lifted (`kipuka certs unhold`).
    CertificateHold,
    /// 9
    PrivilegeWithdrawn,
    /// 10
    AaCompromise,
}

const REASONS: [(Reason, &str, u8); 9] = [
    (Reason::Unspecified, "unspecified", 0),
    (Reason::KeyCompromise, "keyCompromise", 1),
    (Reason::CaCompromise, "cACompromise", 2),
    (Reason::AffiliationChanged, "affiliationChanged", 3),
    (Reason::Superseded, "superseded", 4),
    (Reason::CessationOfOperation, "cessationOfOperation", 5),
    (Reason::CertificateHold, "certificateHold", 6),
    (Reason::PrivilegeWithdrawn, "privilegeWithdrawn", 9),
    (Reason::AaCompromise, "aACompromise", 10),
];

impl Reason {
    /// The RFC 5280 name, e.g. `keyCompromise`.
    pub fn name(self) -> &'static str {
        REASONS.iter().find(|r| r.0 == self).map_or("", |r| r.1)
    }

    /// The CRLReason enumeration value.
    pub fn code(self) -> u8 {
        REASONS.iter().find(|r| r.0 == self).map_or(0, |r| r.2)
    }

    /// From the enumeration value, as stored.
    pub fn from_code(code: u8) -> Option<Reason> {
        REASONS.iter().find(|r| r.2 == code).map(|r| r.0)
    }

    /// From the RFC 5280 name (case-insensitive: `keycompromise` works too).
    pub fn parse(name: &str) -> Result<Reason, String> {
        REASONS
            .iter()
            .find(|r| r.1.eq_ignore_ascii_case(name))
            .map(|r| r.0)
            .ok_or_else(|| {
                let names: Vec<&str> = REASONS.iter().map(|r| r.1).collect();
                format!(
                    "unknown revocation reason {name:?}; use one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// The store's spelling of a serial (lowercase hex, no separators, no
/// leading zero octets) from what an operator types: `openssl x509 -serial`
/// output (`serial=1A2B...`), with or without colons, any case.
pub fn normalize_serial(input: &str) -> Result<String, String> {
    let s = input.trim();
    let s = s
        .strip_prefix("serial=")
        .or_else(|| s.strip_prefix("0x"))
        .unwrap_or(s);
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 42 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{input:?} is not a certificate serial: give it in hex, as `openssl x509 -serial` \
             prints it (colons allowed)"
        ));
    }
    let digits = digits.to_ascii_lowercase();
    // Whole octets, leading zero octets dropped: the DER integer's magnitude.
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let mut trimmed = padded.as_str();
    while trimmed.len() > 2 && trimmed.starts_with("00") {
        trimmed = &trimmed[2..];
    }
    if trimmed.len() > 40 {
        return Err(format!("{input:?}: a serial has at most 20 octets"));
    }
    Ok(trimmed.to_string())
}

/// The store's spelling of a certificate's serial.
pub fn serial_of(cert: &Certificate) -> String {
    let bytes = cert.tbs_certificate().serial_number().as_bytes();
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    hex_lower(&bytes[start..])
}

/// Why a client certificate is refused, if it is revoked: the check every
/// mTLS-authenticated EST request passes. A serial the store does not know
/// (a certificate from another issuer, e.g. an IDevID) is not revoked here,
/// nor is another issuer's certificate that happens to share a serial with
/// a revoked one of ours (the recorded DER must be the presented one).
pub fn refusal(
    store: &dyn CertificateStore,
    cert: &Certificate,
    cert_der: &[u8],
) -> Result<Option<String>, StoreError> {
    let serial = serial_of(cert);
    // The common case, not revoked, costs one indexed read of three columns.
    let Some(st) = store.revocation_status(&serial)? else {
        return Ok(None);
    };
    let ours = store
        .find_entry(&serial)?
        .is_some_and(|e| e.record.der == cert_der);
    Ok(ours.then(|| describe(&serial, &st)))
}

fn describe(serial: &str, st: &RevocationStatus) -> String {
    let reason = Reason::from_code(st.reason_code).map_or("unknown", Reason::name);
    format!(
        "the client certificate {serial} was revoked ({reason}) at {}",
        crate::audit::rfc3339(st.revoked_at)
    )
}

/// Parses an RFC 3339 time: `2026-12-07T03:00:00Z`, with fractional seconds
/// and `+hh:mm` / `-hh:mm` offsets allowed.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time such as 2026-12-07T03:00:00Z");
    let t = text.trim();
    if t.len() < 20 || !t.is_char_boundary(19) {
        return Err(bad());
    }
    let (main, rest) = t.split_at(19);
    let b = main.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<u16, String> {
        main.get(r)
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let dt = der::DateTime::new(
        num(0..4)?,
        u8::try_from(num(5..7)?).map_err(|_| bad())?,
        u8::try_from(num(8..10)?).map_err(|_| bad())?,
        u8::try_from(num(11..13)?).map_err(|_| bad())?,
        u8::try_from(num(14..16)?).map_err(|_| bad())?,
        u8::try_from(num(17..19)?).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    // Fractions of a second are dropped: CRLs and OCSP carry whole seconds.
    let rest = match rest.strip_prefix('.') {
        Some(r) => r.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let h: i64 = o[1..3].parse().map_err(|_| bad())?;
            let m: i64 = o[4..6].parse().map_err(|_| bad())?;
            let s = h * 3600 + m * 60;
            if o.starts_with('+') {
                s
            } else {
                -s
            }
        }
        _ => return Err(bad()),
    };
    let utc = dt.to_system_time();
    let shift = std::time::Duration::from_secs(offset_secs.unsigned_abs());
    Ok(if offset_secs >= 0 {
        utc - shift
    } else {
        utc + shift
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_by_name_and_code() {
        for (r, name, code) in REASONS {
            assert_eq!(Reason::parse(name), Ok(r));
            assert_eq!(Reason::from_code(code), Some(r));
            assert_eq!((r.name(), r.code()), (name, code));
        }
        assert_eq!(Reason::parse("KEYCOMPROMISE"), Ok(Reason::KeyCompromise));
        assert!(Reason::parse("removeFromCRL").is_err());
        assert_eq!(Reason::from_code(8), None);
    }

    #[test]
    fn serials_are_accepted_as_openssl_prints_them() {
        let want = "1a2b3c";
        for s in [
            "1A2B3C",
            "1a:2b:3c",
            "serial=1A2B3C",
            "001A2B3C",
            " 1a2b3c\n",
        ] {
            assert_eq!(normalize_serial(s).as_deref(), Ok(want), "{s}");
        }
        assert_eq!(normalize_serial("abc").as_deref(), Ok("0abc"));
        for bad in ["", "xyz", "12 34", &"ab".repeat(21)] {
            assert!(normalize_serial(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_times_with_offsets() {
        let z = parse_rfc3339("2026-12-07T03:00:00Z").unwrap();
        assert_eq!(crate::audit::rfc3339(z), "2026-12-07T03:00:00.000Z");
        assert_eq!(parse_rfc3339("2026-12-07T04:30:00.25+01:30").unwrap(), z);
        assert_eq!(parse_rfc3339("2026-12-06T22:00:00-05:00").unwrap(), z);
        for bad in [
            "2026-12-07",
            "2026-13-07T03:00:00Z",
            "2026-12-07T03:00:00",
            "yesterday",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}

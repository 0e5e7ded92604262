//! One revokedCertificates entry, written straight into the CRL's buffer.
//!
//! A million-entry CRL spends most of its build time here. Going through
//! the der crate's `RevokedCert` costs a heap-allocated integer, an
//! extension vector and two length passes per entry; an entry is at most
//! 81 octets with every length in one octet, so it is written directly.
//! The tests hold the result to the der crate's encoding.

use std::time::SystemTime;

use super::{encoding, reason, CrlEntry};
use crate::ca::issue::IssueError;

/// RFC 5280 §4.1.2.2: a serial number's encoding is at most 20 octets.
const MAX_SERIAL_LEN: usize = 20;

/// Extension { reasonCode (2.5.29.21), OCTET STRING { ENUMERATED ... } }
/// up to the code's octet.
const REASON_CODE_PREFIX: [u8; 11] = [
    0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01,
];
/// Extension { invalidityDate (2.5.29.24), OCTET STRING { GeneralizedTime } }
/// up to the time's digits.
const INVALIDITY_DATE_PREFIX: [u8; 11] = [
    0x30, 0x18, 0x06, 0x03, 0x55, 0x1d, 0x18, 0x04, 0x11, 0x18, 0x0f,
];

/// Appends the DER of `e` (a RevokedCert) to `out`.
pub(super) fn encode(e: &CrlEntry<'_>, out: &mut Vec<u8>) -> Result<(), IssueError> {
    // The magnitude without leading zeros; zero is one 0x00 octet.
    let first = e.serial.iter().position(|b| *b != 0);
    let magnitude = first.map_or(&[0u8][..], |i| &e.serial[i..]);
    // A set top bit needs a 0x00 before it to stay positive.
    let pad = usize::from(magnitude[0] & 0x80 != 0);
    if magnitude.len() + pad > MAX_SERIAL_LEN {
        return Err(encoding(format!(
            "serial number of {} octets is longer than {MAX_SERIAL_LEN}",
            magnitude.len() + pad
        )));
    }
    let revoked_at = Digits::of(e.revoked_at)?;
    let reason = reason(e.reason_code).map(|_| e.reason_code);
    let invalidity = e.invalidity_date.map(Digits::of).transpose()?;

    let serial_len = 2 + pad + magnitude.len();
    let exts_len = reason.map_or(0, |_| REASON_CODE_PREFIX.len() + 1)
        + invalidity.map_or(0, |_| INVALIDITY_DATE_PREFIX.len() + 15);
    let exts_tlv = if exts_len > 0 { 2 + exts_len } else { 0 };
    let len = serial_len + revoked_at.time_len() + exts_tlv;
    // 22 + 17 + 40 at most: every length fits in one octet.
    debug_assert!(len < 0x80);

    out.reserve(2 + len);
    out.extend_from_slice(&[0x30, len as u8, 0x02, (pad + magnitude.len()) as u8]);
    if pad == 1 {
        out.push(0);
    }
    out.extend_from_slice(magnitude);
    revoked_at.put_time(out);
    if exts_len > 0 {
        out.extend_from_slice(&[0x30, exts_len as u8]);
        if let Some(code) = reason {
            out.extend_from_slice(&REASON_CODE_PREFIX);
            out.push(code);
        }
        if let Some(t) = invalidity {
            out.extend_from_slice(&INVALIDITY_DATE_PREFIX);
            t.put_digits(out, true);
        }
    }
    Ok(())
}

/// A time's calendar fields, whole seconds, UTC.
#[derive(Clone, Copy)]
struct Digits(der::DateTime);

impl Digits {
    fn of(t: SystemTime) -> Result<Self, IssueError> {
        der::DateTime::from_system_time(t)
            .map(Digits)
            .map_err(encoding)
    }

    /// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime after.
    fn utc(&self) -> bool {
        self.0.year() < 2050
    }

    /// The length of the Time TLV.
    fn time_len(&self) -> usize {
        if self.utc() {
            15
        } else {
            17
        }
    }

    /// A Time: UTCTime or GeneralizedTime as [`utc`](Self::utc) says.
    fn put_time(&self, out: &mut Vec<u8>) {
        if self.utc() {
            out.extend_from_slice(&[0x17, 13]);
            self.put_digits(out, false);
        } else {
            out.extend_from_slice(&[0x18, 15]);
            self.put_digits(out, true);
        }
    }

    /// YYMMDDHHMMSSZ, or YYYYMMDDHHMMSSZ when `four_digit_year`.
    fn put_digits(&self, out: &mut Vec<u8>, four_digit_year: bool) {
        let d = &self.0;
        let two = |out: &mut Vec<u8>, v: u8| out.extend_from_slice(&[b'0' + v / 10, b'0' + v % 10]);
        if four_digit_year {
            two(out, (d.year() / 100) as u8);
        }
        two(out, (d.year() % 100) as u8);
        for v in [d.month(), d.day(), d.hour(), d.minutes(), d.seconds()] {
            two(out, v);
        }
        out.push(b'Z');
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use der::{
        asn1::{GeneralizedTime, OctetString},
        Encode,
    };
    use x509_cert::{crl::RevokedCert, ext::Extension, serial_number::SerialNumber, time::Time};

    use super::*;
    use crate::ca::extensions::extension;

    /// The same entry, built and encoded by the der crate.
    pub(in crate::ca::crl) fn reference(e: &CrlEntry<'_>) -> der::Result<RevokedCert> {
        let mut exts = Vec::new();
        if let Some(r) = reason(e.reason_code) {
            exts.push(extension(&r, false)?);
        }
        if let Some(t) = e.invalidity_date {
            exts.push(Extension {
                extn_id: der::asn1::ObjectIdentifier::new_unwrap("2.5.29.24"),
                critical: false,
                extn_value: OctetString::new(GeneralizedTime::from_system_time(t)?.to_der()?)?,
            });
        }
        Ok(RevokedCert {
            serial_number: SerialNumber::new(e.serial)?,
            revocation_date: Time::try_from(e.revoked_at)?,
            crl_entry_extensions: (!exts.is_empty()).then_some(exts),
        })
    }

    fn mine(e: &CrlEntry<'_>) -> Result<Vec<u8>, IssueError> {
        let mut out = vec![0xee];
        encode(e, &mut out)?;
        assert_eq!(out[0], 0xee, "appends, leaves what is there");
        Ok(out.split_off(1))
    }

    #[test]
    fn entries_are_the_der_crates_encoding() {
        let secs = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let serials: [&[u8]; 7] = [
            &[0],
            &[0, 0, 1],
            &[0x7f],
            &[0x80],
            &[0, 0x80, 1],
            &[0x7f; 20],
            &[0x12; 19],
        ];
        let times = [
            secs(0),
            secs(1_800_000_000),
            // 2049-12-31T23:59:59Z, the last UTCTime, and the next second.
            secs(2_524_607_999),
            secs(2_524_608_000),
            secs(4_102_444_800 + 86_399),
        ];
        let mut checked = 0;
        for serial in serials {
            for revoked_at in times {
                for reason_code in 0..=11 {
                    for invalidity_date in [None, Some(times[1]), Some(times[3])] {
                        let e = CrlEntry {
                            serial,
                            revoked_at,
                            reason_code,
                            invalidity_date,
                        };
                        assert_eq!(
                            mine(&e).unwrap(),
                            reference(&e).unwrap().to_der().unwrap(),
                            "{e:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 7 * 5 * 12 * 3);
        // An empty serial is zero, as one 0x00 octet (the der crate writes
        // a zero-length INTEGER, which DER does not allow).
        let zero = |serial| CrlEntry {
            serial,
            revoked_at: times[1],
            reason_code: 1,
            invalidity_date: None,
        };
        assert_eq!(mine(&zero(&[])).unwrap(), mine(&zero(&[0])).unwrap());
    }

    #[test]
    fn serials_longer_than_twenty_octets_are_refused_as_the_der_crate_does() {
        for serial in [&[0x80u8; 20][..], &[1u8; 21][..]] {
            let e = CrlEntry {
                serial,
                revoked_at: SystemTime::UNIX_EPOCH,
                reason_code: 1,
                invalidity_date: None,
            };
            assert!(reference(&e).is_err(), "{e:?}");
            let err = mine(&e).unwrap_err().to_string();
            assert!(err.contains("longer than 20"), "{err}");
        }
    }
}

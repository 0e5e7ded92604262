//! Certificate revocation lists (RFC 5280 §5), signed by the CA key through
//! the same [`Issuer`] (engine, quirks, signature check) as certificates.
//!
//! What a CRL carries:
//! - version 2, the CA's signature algorithm and name, thisUpdate and
//!   nextUpdate;
//! - per entry: the serial, the revocation date, `reasonCode` unless the
//!   reason is `unspecified` (RFC 5280 §5.3.1: absent rather than 0), and
//!   `invalidityDate` when known;
//! - `cRLNumber`, `authorityKeyIdentifier` (the CA's subjectKeyIdentifier),
//!   and `expiredCertsOnCRL` (§5.2.7) when expired certificates are kept.

use std::time::SystemTime;

use bytes::Bytes;

use spki::AlgorithmIdentifierOwned;

use der::{
    asn1::{BitString, GeneralizedTime, OctetString},
    Encode,
};
use x509_cert::{
    ext::{
        pkix::{crl::CrlNumber, CrlReason},
        Extension,
    },
    time::Time,
    Version,
};

mod entry;

use super::{
    extensions::{authority_key_identifier, extension},
    issue::{IssueError, Issuer},
};

/// expiredCertsOnCRL (RFC 5280 §5.2.7).
const ID_CE_EXPIRED_CERTS_ON_CRL: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.60");

/// One revoked certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrlEntry<'a> {
    /// The serial's big-endian magnitude.
    pub serial: &'a [u8],
    /// revocationDate.
    pub revoked_at: SystemTime,
    /// The CRLReason code.
    pub reason_code: u8,
    /// invalidityDate, if known.
    pub invalidity_date: Option<SystemTime>,
}

/// What one CRL says besides its entries.
#[derive(Clone, Copy, Debug)]
pub struct CrlHeader {
    /// cRLNumber.
    pub number: u64,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate.
    pub next_update: SystemTime,
    /// `expiredCertsOnCRL`: certificates that expired at or after this time
    /// are still listed (None: expired ones are dropped).
    pub expired_certs_on_crl: Option<SystemTime>,
}

fn encoding(e: impl std::fmt::Display) -> IssueError {
    IssueError::Encoding(format!("CRL: {e}"))
}

fn raw_extension(oid: der::asn1::ObjectIdentifier, value: &impl Encode) -> der::Result<Extension> {
    Ok(Extension {
        extn_id: oid,
        critical: false,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// The CRLReason of a stored code; None for 0 (unspecified), which is
/// left out rather than written.
pub(crate) fn reason(code: u8) -> Option<CrlReason> {
    Some(match code {
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        9 => CrlReason::PrivilegeWithdrawn,
        10 => CrlReason::AaCompromise,
        // 0 (unspecified) is left out; nothing else is stored.
        _ => return None,
    })
}

/// The most a DER tag and length take here: a tag octet, `0x84` and four
/// length octets (up to 4 GiB).
const MAX_HEADER: usize = 6;

/// A DER tag and length, and how many of the octets are used.
fn header(tag: u8, len: usize) -> Result<([u8; MAX_HEADER], usize), IssueError> {
    let mut out = [0u8; MAX_HEADER];
    out[0] = tag;
    let used = der::Length::try_from(len)
        .and_then(|l| {
            let mut w = der::SliceWriter::new(&mut out[1..]);
            l.encode(&mut w)?;
            Ok(w.finish()?.len())
        })
        .map_err(encoding)?;
    Ok((out, 1 + used))
}

/// What of the CA goes into the TBS part.
struct CrlSigner<'a> {
    algorithm: AlgorithmIdentifierOwned,
    name: &'a x509_cert::name::Name,
    key_identifier: &'a [u8],
}

/// SEQUENCE.
const TAG_SEQUENCE: u8 = 0x30;
/// [0], constructed (crlExtensions, EXPLICIT).
const TAG_CRL_EXTENSIONS: u8 = 0xa0;
/// Room kept after the TBS for the signature algorithm and BIT STRING
/// (an ML-DSA-87 signature is 4,627 octets).
const TAIL_ROOM: usize = 8192;

/// Writes a CRL front to back into one buffer, entry by entry as the store
/// yields them. A CRL can hold a million entries (49 MB): encoding it as one
/// `TbsCertList` value would build every entry as nested structures and
/// copy the result several times. Here the buffer starts with room for the
/// TBS fields and headers whose lengths are only known at the end; they are
/// written into that room backwards once the entries are in, the TBS is
/// signed where it lies, and the CertificateList's header and tail go
/// around it in the same buffer.
pub struct CrlWriter<'a> {
    signer: CrlSigner<'a>,
    header: CrlHeader,
    /// version, signature, issuer, thisUpdate, nextUpdate.
    head: Vec<u8>,
    buf: Vec<u8>,
    /// Where the first entry starts.
    entries_at: usize,
    /// The first entry that could not be encoded.
    error: Option<IssueError>,
}

impl<'a> CrlWriter<'a> {
    /// A CRL by `issuer`, with room for about `entries_hint` entries.
    pub fn new(
        issuer: &'a Issuer,
        header: CrlHeader,
        entries_hint: usize,
    ) -> Result<Self, IssueError> {
        let signer = CrlSigner {
            algorithm: issuer.signature_algorithm(),
            name: issuer.name(),
            key_identifier: issuer.key_identifier(),
        };
        Self::with_signer(signer, header, entries_hint)
    }

    fn with_signer(
        signer: CrlSigner<'a>,
        header: CrlHeader,
        entries_hint: usize,
    ) -> Result<Self, IssueError> {
        let mut head = Vec::with_capacity(256);
        Version::V2.encode_to_vec(&mut head).map_err(encoding)?;
        signer
            .algorithm
            .encode_to_vec(&mut head)
            .map_err(encoding)?;
        signer.name.encode_to_vec(&mut head).map_err(encoding)?;
        for t in [header.this_update, header.next_update] {
            Time::try_from(t)
                .map_err(encoding)?
                .encode_to_vec(&mut head)
                .map_err(encoding)?;
        }
        // CertificateList, TBSCertList and revokedCertificates headers, and
        // the head fields, come before the entries.
        let entries_at = 3 * MAX_HEADER + head.len();
        // About 48 octets per entry with a reason code.
        let mut buf = Vec::with_capacity(entries_at + entries_hint.saturating_mul(48) + TAIL_ROOM);
        buf.resize(entries_at, 0);
        Ok(CrlWriter {
            signer,
            header,
            head,
            buf,
            entries_at,
            error: None,
        })
    }

    /// Appends one entry. An entry that cannot be encoded makes the CRL
    /// fail at [`sign`](Self::sign), rather than be left out silently.
    pub fn push(&mut self, e: &CrlEntry<'_>) {
        if self.error.is_some() {
            return;
        }
        if let Err(err) = entry::encode(e, &mut self.buf) {
            self.error = Some(err);
        }
    }

    /// Finishes the TBSCertList: the extensions after the entries, the
    /// headers and head fields in the room before them. Returns the buffer
    /// and where in it the TBS lies.
    fn finish_tbs(mut self) -> Result<(Vec<u8>, std::ops::Range<usize>), IssueError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let revoked_len = self.buf.len() - self.entries_at;
        let mut exts = vec![
            extension(
                &CrlNumber::try_from(self.header.number).map_err(encoding)?,
                false,
            )
            .map_err(encoding)?,
            authority_key_identifier(self.signer.key_identifier).map_err(encoding)?,
        ];
        if let Some(t) = self.header.expired_certs_on_crl {
            let t = GeneralizedTime::from_system_time(t).map_err(encoding)?;
            exts.push(raw_extension(ID_CE_EXPIRED_CERTS_ON_CRL, &t).map_err(encoding)?);
        }
        let exts = exts.to_der().map_err(encoding)?;
        let (h, n) = header(TAG_CRL_EXTENSIONS, exts.len())?;
        self.buf.extend_from_slice(&h[..n]);
        self.buf.extend_from_slice(&exts);

        let mut start = self.entries_at;
        // revokedCertificates is absent, not empty, when nothing is revoked.
        if revoked_len > 0 {
            start = put_before(&mut self.buf, start, TAG_SEQUENCE, revoked_len)?;
        }
        start -= self.head.len();
        self.buf[start..start + self.head.len()].copy_from_slice(&self.head);
        let tbs_len = self.buf.len() - start;
        start = put_before(&mut self.buf, start, TAG_SEQUENCE, tbs_len)?;
        let end = self.buf.len();
        Ok((self.buf, start..end))
    }

    /// Has the CA key sign the CRL (the signature is checked against the CA
    /// certificate before it is returned) and returns its DER.
    pub async fn sign(self, issuer: &Issuer) -> Result<Bytes, IssueError> {
        let (buf, tbs) = self.finish_tbs()?;
        let all = Bytes::from(buf);
        let signature = issuer.sign_message(all.slice(tbs.clone())).await?;
        // CertificateList: the TBS bytes as signed, then the algorithm and
        // the signature.
        let mut tail = Vec::with_capacity(signature.len() + 64);
        issuer
            .signature_algorithm()
            .encode_to_vec(&mut tail)
            .map_err(encoding)?;
        BitString::from_bytes(&signature)
            .and_then(|b| b.encode_to_vec(&mut tail))
            .map_err(encoding)?;
        let (h, n) = header(TAG_SEQUENCE, tbs.len() + tail.len())?;
        match all.try_into_mut() {
            Ok(mut buf) => {
                // The usual case: the signer has let go of the TBS, so the
                // CRL is finished where it lies.
                let start = tbs.start - n;
                buf[start..tbs.start].copy_from_slice(&h[..n]);
                buf.extend_from_slice(&tail);
                Ok(buf.freeze().slice(start..))
            }
            Err(all) => {
                // The signer still holds the TBS (an HSM call that timed out
                // is still running on its thread): copy rather than wait.
                let mut der = Vec::with_capacity(n + tbs.len() + tail.len());
                der.extend_from_slice(&h[..n]);
                der.extend_from_slice(&all[tbs]);
                der.extend_from_slice(&tail);
                Ok(der.into())
            }
        }
    }
}

/// Writes a tag and length for `len` octets into `buf` just before `at`,
/// and returns where it starts.
fn put_before(buf: &mut [u8], at: usize, tag: u8, len: usize) -> Result<usize, IssueError> {
    let (h, n) = header(tag, len)?;
    let start = at - n;
    buf[start..at].copy_from_slice(&h[..n]);
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_has_no_reason_code_and_the_others_map_one_to_one() {
        assert_eq!(reason(0), None);
        assert_eq!(reason(8), None);
        for (code, want) in [
            (1, CrlReason::KeyCompromise),
            (6, CrlReason::CertificateHold),
            (10, CrlReason::AaCompromise),
        ] {
            assert_eq!(reason(code), Some(want));
        }
    }

    /// The same TBSCertList, encoded by the der crate as one value.
    fn reference_tbs(
        signer: &CrlSigner<'_>,
        header: &CrlHeader,
        entries: &[CrlEntry<'_>],
    ) -> Vec<u8> {
        use x509_cert::crl::TbsCertList;
        let revoked: Vec<_> = entries
            .iter()
            .map(|e| entry::tests::reference(e).unwrap())
            .collect();
        let mut exts = vec![
            extension(&CrlNumber::try_from(header.number).unwrap(), false).unwrap(),
            authority_key_identifier(signer.key_identifier).unwrap(),
        ];
        if let Some(t) = header.expired_certs_on_crl {
            let t = GeneralizedTime::from_system_time(t).unwrap();
            exts.push(raw_extension(ID_CE_EXPIRED_CERTS_ON_CRL, &t).unwrap());
        }
        TbsCertList {
            version: Version::V2,
            signature: signer.algorithm.clone(),
            issuer: signer.name.clone(),
            this_update: Time::try_from(header.this_update).unwrap(),
            next_update: Some(Time::try_from(header.next_update).unwrap()),
            revoked_certificates: (!revoked.is_empty()).then_some(revoked),
            crl_extensions: Some(exts),
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn the_tbs_written_front_to_back_is_the_der_crates_encoding() {
        use std::{str::FromStr, time::Duration};
        let name = x509_cert::name::Name::from_str("CN=test CA,O=kipuka").unwrap();
        let signer = || CrlSigner {
            algorithm: AlgorithmIdentifierOwned {
                oid: der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
                parameters: None,
            },
            name: &name,
            key_identifier: &[7u8; 20],
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // 0 entries (no revokedCertificates), 1, and enough that the
        // lengths need two, three and four octets.
        for n in [0usize, 1, 5, 3_000, 500_000] {
            let serials: Vec<Vec<u8>> = (0..n)
                .map(|i| {
                    (i as u128 + 1)
                        .to_be_bytes()
                        .iter()
                        .copied()
                        .skip_while(|b| *b == 0)
                        .collect()
                })
                .collect();
            let entries: Vec<CrlEntry<'_>> = serials
                .iter()
                .enumerate()
                .map(|(i, serial)| CrlEntry {
                    serial,
                    revoked_at: t0 + Duration::from_secs(i as u64),
                    reason_code: [0, 1, 6, 10][i % 4],
                    invalidity_date: (i % 3 == 0).then_some(t0),
                })
                .collect();
            for expired in [None, Some(t0)] {
                let header = CrlHeader {
                    number: 42 + n as u64,
                    this_update: t0,
                    next_update: t0 + Duration::from_secs(86_400),
                    expired_certs_on_crl: expired,
                };
                // A hint far off either way changes nothing but capacity.
                let mut w = CrlWriter::with_signer(signer(), header, n / 3).unwrap();
                for e in &entries {
                    w.push(e);
                }
                let (buf, tbs) = w.finish_tbs().unwrap();
                assert!(
                    buf[tbs.clone()] == reference_tbs(&signer(), &header, &entries),
                    "{n} entries"
                );
            }
        }
    }
}

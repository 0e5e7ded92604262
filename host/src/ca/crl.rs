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

use std::{sync::Arc, time::SystemTime};

use spki::AlgorithmIdentifierOwned;

use der::{
    asn1::{BitString, GeneralizedTime, OctetString},
    Encode,
};
use x509_cert::{
    crl::RevokedCert,
    ext::{
        pkix::{crl::CrlNumber, CrlReason},
        Extension,
    },
    serial_number::SerialNumber,
    time::Time,
    Version,
};

use super::{
    extensions::{authority_key_identifier, extension},
    issue::{IssueError, Issuer},
};

/// invalidityDate (RFC 5280 §5.3.2).
const ID_CE_INVALIDITY_DATE: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.24");
/// expiredCertsOnCRL (RFC 5280 §5.2.7).
const ID_CE_EXPIRED_CERTS_ON_CRL: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.60");

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlEntry {
    /// The serial's big-endian magnitude.
    pub serial: Vec<u8>,
    /// revocationDate.
    pub revoked_at: SystemTime,
    /// The CRLReason code.
    pub reason_code: u8,
    /// invalidityDate, if known.
    pub invalidity_date: Option<SystemTime>,
}

/// What one CRL says.
#[derive(Clone, Debug)]
pub struct CrlContent {
    /// cRLNumber.
    pub number: u64,
    /// thisUpdate.
    pub this_update: SystemTime,
    /// nextUpdate.
    pub next_update: SystemTime,
    /// The entries, in any order.
    pub entries: Vec<CrlEntry>,
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

fn revoked_cert(e: &CrlEntry) -> Result<RevokedCert, IssueError> {
    let mut exts = Vec::new();
    if let Some(r) = reason(e.reason_code) {
        exts.push(extension(&r, false).map_err(encoding)?);
    }
    if let Some(t) = e.invalidity_date {
        let t = GeneralizedTime::from_system_time(t).map_err(encoding)?;
        exts.push(raw_extension(ID_CE_INVALIDITY_DATE, &t).map_err(encoding)?);
    }
    Ok(RevokedCert {
        serial_number: SerialNumber::new(&e.serial).map_err(encoding)?,
        revocation_date: Time::try_from(e.revoked_at).map_err(encoding)?,
        crl_entry_extensions: (!exts.is_empty()).then_some(exts),
    })
}

/// Appends a DER tag and length.
fn header(tag: u8, len: usize, out: &mut Vec<u8>) -> Result<(), IssueError> {
    out.push(tag);
    der::Length::try_from(len)
        .and_then(|l| l.encode_to_vec(out))
        .map(|_| ())
        .map_err(encoding)
}

/// The bytes of a DER tag and length.
fn header_len(len: usize) -> Result<usize, IssueError> {
    der::Length::try_from(len)
        .and_then(|l| l.encoded_len())
        .and_then(|l| usize::try_from(l).map_err(|_| der::ErrorKind::Overflow.into()))
        .map(|l| l + 1)
        .map_err(encoding)
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

/// The DER `TBSCertList`, written front to back in one buffer. A CRL can
/// hold a million entries: encoding it as one `TbsCertList` value would
/// build every entry as nested structures and walk them once per nesting
/// level for the lengths; here each entry is encoded once, on its own,
/// into the revokedCertificates bytes, and those are copied once.
fn tbs_der(signer: &CrlSigner<'_>, content: &CrlContent) -> Result<Vec<u8>, IssueError> {
    let mut revoked = Vec::with_capacity(content.entries.len() * 48);
    for e in &content.entries {
        revoked_cert(e)?
            .encode_to_vec(&mut revoked)
            .map_err(encoding)?;
    }
    let mut exts = vec![
        extension(
            &CrlNumber::try_from(content.number).map_err(encoding)?,
            false,
        )
        .map_err(encoding)?,
        authority_key_identifier(signer.key_identifier).map_err(encoding)?,
    ];
    if let Some(t) = content.expired_certs_on_crl {
        let t = GeneralizedTime::from_system_time(t).map_err(encoding)?;
        exts.push(raw_extension(ID_CE_EXPIRED_CERTS_ON_CRL, &t).map_err(encoding)?);
    }
    let exts = exts.to_der().map_err(encoding)?;

    // version, signature, issuer, thisUpdate, nextUpdate.
    let mut head = Vec::with_capacity(256);
    Version::V2.encode_to_vec(&mut head).map_err(encoding)?;
    signer
        .algorithm
        .encode_to_vec(&mut head)
        .map_err(encoding)?;
    signer.name.encode_to_vec(&mut head).map_err(encoding)?;
    for t in [content.this_update, content.next_update] {
        Time::try_from(t)
            .map_err(encoding)?
            .encode_to_vec(&mut head)
            .map_err(encoding)?;
    }

    // revokedCertificates is absent, not empty, when nothing is revoked.
    let revoked_len = if revoked.is_empty() {
        0
    } else {
        header_len(revoked.len())? + revoked.len()
    };
    let body_len = head.len() + revoked_len + header_len(exts.len())? + exts.len();
    let mut tbs = Vec::with_capacity(header_len(body_len)? + body_len);
    header(TAG_SEQUENCE, body_len, &mut tbs)?;
    tbs.extend_from_slice(&head);
    if !revoked.is_empty() {
        header(TAG_SEQUENCE, revoked.len(), &mut tbs)?;
        tbs.extend_from_slice(&revoked);
    }
    drop(revoked);
    header(TAG_CRL_EXTENSIONS, exts.len(), &mut tbs)?;
    tbs.extend_from_slice(&exts);
    Ok(tbs)
}

/// Builds the CRL, has the CA key sign it (the signature is checked
/// against the CA certificate before it is returned) and encodes it (DER).
pub async fn sign_crl(issuer: &Issuer, content: &CrlContent) -> Result<Vec<u8>, IssueError> {
    let signer = CrlSigner {
        algorithm: issuer.signature_algorithm(),
        name: issuer.name(),
        key_identifier: issuer.key_identifier(),
    };
    let tbs: Arc<[u8]> = tbs_der(&signer, content)?.into();
    let signature = issuer.sign_message(tbs.clone()).await?;
    // CertificateList: the TBS bytes as signed, then the algorithm and the
    // signature.
    let mut tail = Vec::with_capacity(signature.len() + 64);
    issuer
        .signature_algorithm()
        .encode_to_vec(&mut tail)
        .map_err(encoding)?;
    BitString::from_bytes(&signature)
        .and_then(|b| b.encode_to_vec(&mut tail))
        .map_err(encoding)?;
    let body_len = tbs.len() + tail.len();
    let mut der = Vec::with_capacity(header_len(body_len)? + body_len);
    header(TAG_SEQUENCE, body_len, &mut der)?;
    der.extend_from_slice(&tbs);
    der.extend_from_slice(&tail);
    Ok(der)
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
    fn reference_tbs(signer: &CrlSigner<'_>, content: &CrlContent) -> Vec<u8> {
        use x509_cert::crl::TbsCertList;
        let revoked: Vec<RevokedCert> = content
            .entries
            .iter()
            .map(|e| revoked_cert(e).unwrap())
            .collect();
        let mut exts = vec![
            extension(&CrlNumber::try_from(content.number).unwrap(), false).unwrap(),
            authority_key_identifier(signer.key_identifier).unwrap(),
        ];
        if let Some(t) = content.expired_certs_on_crl {
            let t = GeneralizedTime::from_system_time(t).unwrap();
            exts.push(raw_extension(ID_CE_EXPIRED_CERTS_ON_CRL, &t).unwrap());
        }
        TbsCertList {
            version: Version::V2,
            signature: signer.algorithm.clone(),
            issuer: signer.name.clone(),
            this_update: Time::try_from(content.this_update).unwrap(),
            next_update: Some(Time::try_from(content.next_update).unwrap()),
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
        let signer = CrlSigner {
            algorithm: AlgorithmIdentifierOwned {
                oid: der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
                parameters: None,
            },
            name: &name,
            key_identifier: &[7u8; 20],
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // 0 entries (no revokedCertificates), 1, and enough that the
        // lengths need three and four octets.
        for n in [0usize, 1, 5, 3_000] {
            let entries: Vec<CrlEntry> = (0..n)
                .map(|i| CrlEntry {
                    serial: (i as u128 + 1)
                        .to_be_bytes()
                        .iter()
                        .copied()
                        .skip_while(|b| *b == 0)
                        .collect(),
                    revoked_at: t0 + Duration::from_secs(i as u64),
                    reason_code: [0, 1, 6, 10][i % 4],
                    invalidity_date: (i % 3 == 0).then_some(t0),
                })
                .collect();
            for expired in [None, Some(t0)] {
                let content = CrlContent {
                    number: 42 + n as u64,
                    this_update: t0,
                    next_update: t0 + Duration::from_secs(86_400),
                    entries: entries.clone(),
                    expired_certs_on_crl: expired,
                };
                assert_eq!(
                    tbs_der(&signer, &content).unwrap(),
                    reference_tbs(&signer, &content),
                    "{n} entries"
                );
            }
        }
    }
}

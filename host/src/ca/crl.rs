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

use der::{
    asn1::{BitString, GeneralizedTime, OctetString},
    Encode,
};
use x509_cert::{
    crl::{CertificateList, RevokedCert, TbsCertList},
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

/// Builds the CRL, has the CA key sign it (the signature is checked
/// against the CA certificate before it is returned) and encodes it (DER).
pub async fn sign_crl(issuer: &Issuer, content: &CrlContent) -> Result<Vec<u8>, IssueError> {
    let revoked = content
        .entries
        .iter()
        .map(revoked_cert)
        .collect::<Result<Vec<_>, _>>()?;
    let mut exts = vec![
        extension(
            &CrlNumber::try_from(content.number).map_err(encoding)?,
            false,
        )
        .map_err(encoding)?,
        authority_key_identifier(issuer.key_identifier()).map_err(encoding)?,
    ];
    if let Some(t) = content.expired_certs_on_crl {
        let t = GeneralizedTime::from_system_time(t).map_err(encoding)?;
        exts.push(raw_extension(ID_CE_EXPIRED_CERTS_ON_CRL, &t).map_err(encoding)?);
    }
    let tbs = TbsCertList {
        version: Version::V2,
        signature: issuer.signature_algorithm(),
        issuer: issuer.name().clone(),
        this_update: Time::try_from(content.this_update).map_err(encoding)?,
        next_update: Some(Time::try_from(content.next_update).map_err(encoding)?),
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(exts),
    };
    let tbs_der: Arc<[u8]> = tbs.to_der().map_err(encoding)?.into();
    let signature = issuer.sign_message(tbs_der).await?;
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: issuer.signature_algorithm(),
        signature: BitString::from_bytes(&signature).map_err(encoding)?,
    }
    .to_der()
    .map_err(encoding)
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
}

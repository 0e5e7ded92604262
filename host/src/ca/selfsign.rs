//! A self-signed CA certificate for a key in the HSM (`kipuka ca init`).

use std::{str::FromStr, time::SystemTime};

use der::{referenced::OwnedToRef, Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::{ext::pkix::KeyUsages, name::Name};

use super::{
    algorithms::{PublicKey, SignatureAlgorithm},
    extensions,
    issue::{sign_certificate, validity_window, IssueError, SerialNumber20, Template},
};
use crate::hsm::{CaSigner, KeyAlgorithm, SignatureScheme};

/// 9999-12-31 23:59:59 UTC, the latest time X.509 can express (RFC 5280 §4.1.2.5).
fn latest_not_after() -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_799)
}

/// Makes a self-signed CA certificate, valid from one minute ago for `days`
/// days, for the key `key` whose public key is `spki_der`:
/// basicConstraints cA=true (critical), keyUsage keyCertSign, cRLSign,
/// digitalSignature (critical), subjectKeyIdentifier, and
/// authorityKeyIdentifier equal to it. Returns the DER certificate.
///
/// `subject` is an RFC 4514 string such as `CN=kipuka EC CA,O=Example`.
pub async fn self_signed_ca(
    key: &CaSigner,
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
    spki_der: &[u8],
    subject: &str,
    days: u32,
) -> Result<Vec<u8>, IssueError> {
    let config = |why: String| IssueError::Config(why);
    if days == 0 {
        return Err(config(
            "a CA certificate must be valid for at least one day".into(),
        ));
    }
    let name = Name::from_str(subject)
        .map_err(|e| config(format!("subject {subject:?} is not an RFC 4514 name: {e}")))?;
    if name.is_empty() {
        return Err(config("a CA certificate needs a non-empty subject".into()));
    }
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der).map_err(|e| {
        config(format!(
            "the CA public key is not a DER SubjectPublicKeyInfo: {e}"
        ))
    })?;
    let public_key = PublicKey::from_spki(&spki.owned_to_ref())
        .map_err(|e| config(format!("the CA public key: {e}")))?;
    let sig_alg = SignatureAlgorithm::from_scheme(scheme, algorithm).map_err(config)?;
    let algorithm_id = sig_alg
        .algorithm_identifier()
        .map_err(|e| IssueError::Encoding(e.to_string()))?;
    let now = SystemTime::now();
    let (not_before, not_after) = validity_window(now, days, latest_not_after()).map_err(config)?;
    let key_id = extensions::key_identifier(&spki.owned_to_ref());
    let enc = |e: der::Error| IssueError::Encoding(e.to_string());
    let template = Template {
        serial: SerialNumber20::random(),
        issuer: name.clone(),
        subject: name,
        not_before,
        not_after,
        spki,
        extensions: vec![
            extensions::basic_constraints(true).map_err(enc)?,
            extensions::key_usage(
                KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature,
            )
            .map_err(enc)?,
            extensions::subject_key_identifier(&key_id).map_err(enc)?,
            extensions::authority_key_identifier(&key_id).map_err(enc)?,
        ],
    };
    let cert = sign_certificate(
        key,
        None,
        &algorithm_id,
        spki_der,
        &public_key,
        &sig_alg,
        template,
    )
    .await?;
    cert.to_der().map_err(enc)
}

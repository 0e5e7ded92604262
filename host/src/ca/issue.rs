//! Issuing end-entity certificates from verified CSRs.
//!
//! The certificate is built with x509-cert's [`CertificateBuilder`] and a
//! kipuka [`BuilderProfile`] (the extensions below), its TBSCertificate is
//! signed by the CA's [`CaSigner`] (the HSM, asynchronously), and the
//! signature is checked against the CA certificate's public key before the
//! certificate leaves this module: a faulty signature (an RSA-CRT fault
//! leaks the key) is never handed out.
//!
//! What a certificate gets:
//! - serial: 20 random bytes, positive, first byte non-zero ([`SerialNumber20`]);
//! - validity: from `now − 60 s` (clock skew) to `min(now + validity_days,
//!   CA notAfter)`, never past the CA;
//! - subject and subjectAltName: the [`ApprovedNames`] of the name policy
//!   (`crate::policy`), never the CSR's directly; an empty subject comes
//!   with a subjectAltName, which is then critical (RFC 5280 §4.2.1.6);
//! - basicConstraints cA=false (critical); keyUsage (critical): the
//!   profile's usages that the key type allows (see
//!   [`extensions::end_entity_usages`]; the others are dropped, logged at
//!   debug, and an empty result is a policy error); extendedKeyUsage from
//!   the profile; subjectKeyIdentifier (SHA-1 of the key, RFC 5280 method 1);
//!   authorityKeyIdentifier (the CA certificate's subjectKeyIdentifier).
//!   Other requested extensions are not copied.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use der::{asn1::BitString, flagset::FlagSet, referenced::OwnedToRef, Decode, Encode};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef,
};
use x509_cert::{
    builder::{profile::BuilderProfile, Builder, CertificateBuilder},
    ext::{
        pkix::{BasicConstraints, KeyUsage, KeyUsages},
        Extension,
    },
    name::Name,
    serial_number::SerialNumber,
    time::{Time, Validity},
    Certificate, TbsCertificate,
};

use super::{
    algorithms::{Hash, PublicKey, SignatureAlgorithm},
    csr::VerifiedCsr,
    extensions,
};
use crate::{
    config::{CaConfig, KeySpec},
    hsm::{engine::CaKey, CaSigner, HsmError, KeyAlgorithm, SignatureScheme},
    metrics::SignLabels,
    policy::ApprovedNames,
};

/// Clock skew allowance: certificates are valid from this long before `now`.
pub const BACKDATE: Duration = Duration::from_secs(60);

const DAY: u64 = 24 * 60 * 60;

/// Why a certificate was not issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The request is not allowed by the CA's profile (HTTP 403).
    #[error("{0}")]
    Policy(String),
    /// The HSM failed ([`HsmError::is_transient`]: HTTP 503, else 500).
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// A certificate could not be encoded (HTTP 500).
    #[error("certificate encoding: {0}")]
    Encoding(String),
    /// The CA cannot issue as configured (HTTP 500): an unusable CA
    /// certificate, an expired CA, a bad profile.
    #[error("{0}")]
    Config(String),
}

impl IssueError {
    /// Whether the client may retry later.
    pub fn is_transient(&self) -> bool {
        matches!(self, IssueError::Hsm(e) if e.is_transient())
    }
}

fn encoding(e: impl std::fmt::Display) -> IssueError {
    IssueError::Encoding(e.to_string())
}

/// A certificate serial number: 20 bytes, positive (top bit clear), first
/// byte non-zero, so that it always encodes in exactly 20 octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SerialNumber20([u8; 20]);

impl SerialNumber20 {
    /// Checks the rules.
    pub fn new(bytes: [u8; 20]) -> Result<Self, IssueError> {
        match bytes.first() {
            Some(b) if *b != 0 && *b < 0x80 => Ok(SerialNumber20(bytes)),
            _ => Err(IssueError::Encoding(
                "a 20-byte serial must start with a byte from 0x01 to 0x7f".into(),
            )),
        }
    }

    /// A fresh random serial ([`random_serial`]).
    pub fn random() -> Self {
        SerialNumber20(random_serial())
    }

    /// The 20 bytes, big-endian.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Lower-case hex, 40 digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl TryFrom<[u8; 20]> for SerialNumber20 {
    type Error = IssueError;
    fn try_from(bytes: [u8; 20]) -> Result<Self, IssueError> {
        SerialNumber20::new(bytes)
    }
}

/// 20 bytes from the operating system's CSPRNG, top bit cleared, first
/// byte non-zero (159 bits of randomness, minus the rare redraw).
///
/// # Panics
/// If the operating system's random source fails: the process cannot
/// issue certificates safely without it.
pub fn random_serial() -> [u8; 20] {
    loop {
        let mut b = [0u8; 20];
        if let Err(e) = getrandom::fill(&mut b) {
            panic!("the operating system random number generator failed: {e}");
        }
        b[0] &= 0x7f;
        if b[0] != 0 {
            return b;
        }
    }
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The certificate (DER).
    pub der: Vec<u8>,
    /// The serial as 40 lower-case hex digits.
    pub serial_hex: String,
    /// The subject, RFC 4514 (empty when the subject is empty).
    pub subject: String,
    /// subjectAltName entries (`DNS:...`, `IP Address:...`), as OpenSSL prints them.
    pub sans: Vec<String>,
    /// notBefore (whole seconds).
    pub not_before: SystemTime,
    /// notAfter (whole seconds).
    pub not_after: SystemTime,
}

/// What a CA's profile allows, parsed once.
#[derive(Debug, Clone)]
struct Profile {
    validity_days: u32,
    key_usage: FlagSet<KeyUsages>,
    extended_key_usage: Vec<der::asn1::ObjectIdentifier>,
    allowed_keys: Vec<KeySpec>,
    /// cRLDistributionPoints and authorityInfoAccess, when URLs are configured.
    status_extensions: Vec<Extension>,
}

/// A CA ready to issue: its signer, certificate chain and profile.
pub struct Issuer {
    ca_id: String,
    signer: CaSigner,
    algorithm: SignatureAlgorithm,
    algorithm_id: AlgorithmIdentifierOwned,
    chain: Vec<Certificate>,
    ca_name: Name,
    ca_not_after: SystemTime,
    ca_key_id: Vec<u8>,
    ca_public_key: PublicKey,
    ca_spki_der: Vec<u8>,
    profile: Profile,
    /// Labels of this CA's `kipuka_hsm_sign_duration_seconds`.
    sign_labels: SignLabels,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("ca_id", &self.ca_id)
            .field("signer", &self.signer)
            .field("algorithm", &self.algorithm)
            .field("ca", &self.ca_name.to_string())
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Prepares `ca` to issue with `key` (opened by the engine, which has
    /// checked that the key matches the CA certificate).
    pub fn new(ca: &CaConfig, key: CaKey) -> Result<Self, IssueError> {
        let config = |why: String| IssueError::Config(format!("CA {}: {why}", ca.id));
        if key.ca_id != ca.id {
            return Err(config(format!("the key was opened for CA {}", key.ca_id)));
        }
        let cert = key
            .chain
            .first()
            .ok_or_else(|| config("no CA certificate".into()))?;
        let tbs = cert.tbs_certificate();
        // The CA certificate must be able to certify: OpenSSL and every other
        // verifier would refuse the chain otherwise.
        match tbs.get_extension::<BasicConstraints>() {
            Ok(Some((_, bc))) if !bc.ca => {
                return Err(config(
                    "the CA certificate has basicConstraints cA=false".into(),
                ))
            }
            Err(e) => return Err(config(format!("CA certificate basicConstraints: {e}"))),
            _ => {}
        }
        match tbs.get_extension::<KeyUsage>() {
            Ok(Some((_, ku))) if !ku.key_cert_sign() => {
                return Err(config(
                    "the CA certificate's keyUsage lacks keyCertSign".into(),
                ))
            }
            Err(e) => return Err(config(format!("CA certificate keyUsage: {e}"))),
            _ => {}
        }
        let algorithm =
            SignatureAlgorithm::from_scheme(key.scheme, key.algorithm).map_err(config)?;
        let algorithm_id = algorithm.algorithm_identifier().map_err(encoding)?;
        let ca_public_key = PublicKey::from_spki(&tbs.subject_public_key_info().owned_to_ref())
            .map_err(|e| config(format!("CA certificate public key: {e}")))?;
        let ca_spki_der = tbs.subject_public_key_info().to_der().map_err(encoding)?;
        let p = &ca.profile;
        if p.validity_days == 0 {
            return Err(config("profile.validity_days is 0".into()));
        }
        let profile = Profile {
            validity_days: p.validity_days,
            key_usage: extensions::parse_key_usages(&p.key_usage)
                .map_err(|e| config(format!("profile.key_usage: {e}")))?,
            extended_key_usage: extensions::parse_extended_key_usages(&p.extended_key_usage)
                .map_err(|e| config(format!("profile.extended_key_usage: {e}")))?,
            allowed_keys: p
                .allowed_key_specs()
                .map_err(|e| config(format!("profile.allowed_keys: {e}")))?,
            status_extensions: [
                extensions::crl_distribution_points(&p.crl_urls),
                extensions::authority_info_access(&p.ocsp_urls, &p.ca_issuers_urls),
            ]
            .into_iter()
            .filter_map(Result::transpose)
            .collect::<Result<_, _>>()
            .map_err(|e| config(format!("profile URLs: {e}")))?,
        };
        let sign_labels = SignLabels {
            ca: ca.id.clone(),
            plugin: key.signer.plugin(),
            mechanism: key.mechanism.clone(),
        };
        Ok(Issuer {
            sign_labels,
            ca_id: ca.id.clone(),
            ca_name: tbs.subject().clone(),
            ca_not_after: tbs.validity().not_after.to_system_time(),
            ca_key_id: extensions::ca_key_identifier(cert),
            chain: key.chain,
            signer: key.signer,
            algorithm,
            algorithm_id,
            ca_public_key,
            ca_spki_der,
            profile,
        })
    }

    /// The CA id.
    pub fn ca_id(&self) -> &str {
        &self.ca_id
    }

    /// The CA certificate followed by the rest of its chain.
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// The CA certificate's subject: the issuer of what this CA signs.
    pub fn name(&self) -> &Name {
        &self.ca_name
    }

    /// The CA's key identifier (its subjectKeyIdentifier), for
    /// authorityKeyIdentifier.
    pub fn key_identifier(&self) -> &[u8] {
        &self.ca_key_id
    }

    /// The AlgorithmIdentifier of the certificates this CA signs.
    pub fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        self.algorithm_id.clone()
    }

    /// Signs `message` with the CA key — the key generator's signature on a
    /// `/serverkeygen` key package — and checks the signature against the CA
    /// certificate, as every certificate signature is checked.
    pub async fn sign_message(&self, message: Bytes) -> Result<Vec<u8>, IssueError> {
        let signature = timed_sign(&self.signer, Some(&self.sign_labels), message.clone()).await?;
        if self
            .ca_public_key
            .verify(&self.algorithm, &message, &signature)
            .is_err()
        {
            return Err(IssueError::Hsm(HsmError::Internal(format!(
                "CA {}: the signer returned a {} signature that does not verify with the CA \
                 certificate's public key",
                self.ca_id, self.algorithm
            ))));
        }
        Ok(signature)
    }

    /// The digest a CMS SignerInfo of this CA names: the hash of its
    /// signature algorithm, and SHA-512 for ML-DSA (RFC 9882).
    pub fn message_digest(&self) -> Hash {
        match self.algorithm {
            SignatureAlgorithm::RsaPkcs1(h) | SignatureAlgorithm::Ecdsa(h) => h,
            SignatureAlgorithm::RsaPss { hash, .. } => hash,
            SignatureAlgorithm::MlDsa(_) => Hash::Sha512,
        }
    }

    fn policy(&self, why: impl std::fmt::Display) -> IssueError {
        IssueError::Policy(format!("CA {}: {why}", self.ca_id))
    }

    /// Checks the CSR's key against the profile and signs a certificate
    /// for it with the `names` the name policy approved.
    pub async fn issue(
        &self,
        csr: &VerifiedCsr,
        names: &ApprovedNames,
        serial: SerialNumber20,
        now: SystemTime,
    ) -> Result<IssuedCertificate, IssueError> {
        if !self.profile.allowed_keys.contains(&csr.key) {
            let allowed: Vec<String> = self
                .profile
                .allowed_keys
                .iter()
                .map(|k| k.to_string())
                .collect();
            return Err(self.policy(format!(
                "{} keys are not allowed (allowed: {})",
                csr.key,
                allowed.join(", ")
            )));
        }
        let sans = names.sans();
        let subject = names.subject();
        let key_usage = extensions::filter_key_usages(self.profile.key_usage, &csr.key);
        if key_usage.is_empty() {
            return Err(self.policy(format!(
                "none of the profile's key usages ({}) is valid for a {} key",
                extensions::key_usage_names(self.profile.key_usage).join(", "),
                csr.key
            )));
        }
        let dropped = self.profile.key_usage - key_usage;
        if !dropped.is_empty() {
            tracing::debug!(
                ca = %self.ca_id,
                key = %csr.key,
                dropped = ?extensions::key_usage_names(dropped),
                "key usages not valid for the key type left out"
            );
        }
        let (not_before, not_after) = self.validity(now)?;
        let spki = SubjectPublicKeyInfoOwned::from_der(&csr.spki_der).map_err(encoding)?;
        let mut exts = vec![
            extensions::basic_constraints(false).map_err(encoding)?,
            extensions::key_usage(key_usage).map_err(encoding)?,
        ];
        if !self.profile.extended_key_usage.is_empty() {
            exts.push(
                extensions::extended_key_usage(&self.profile.extended_key_usage)
                    .map_err(encoding)?,
            );
        }
        exts.push(
            extensions::subject_key_identifier(&extensions::key_identifier(&spki.owned_to_ref()))
                .map_err(encoding)?,
        );
        exts.push(extensions::authority_key_identifier(&self.ca_key_id).map_err(encoding)?);
        exts.extend(self.profile.status_extensions.iter().cloned());
        if !sans.is_empty() {
            exts.push(extensions::subject_alt_name(sans, subject.is_empty()).map_err(encoding)?);
        }
        let template = Template {
            serial,
            issuer: self.ca_name.clone(),
            subject: subject.clone(),
            not_before,
            not_after,
            spki,
            extensions: exts,
        };
        let cert = sign_certificate(
            &self.signer,
            Some(&self.sign_labels),
            &self.algorithm_id,
            &self.ca_spki_der,
            &self.ca_public_key,
            &self.algorithm,
            template,
        )
        .await
        .map_err(|e| match e {
            IssueError::Hsm(HsmError::Internal(why)) => {
                IssueError::Hsm(HsmError::Internal(format!("CA {}: {why}", self.ca_id)))
            }
            other => other,
        })?;
        let validity = cert.tbs_certificate().validity();
        Ok(IssuedCertificate {
            der: cert.to_der().map_err(encoding)?,
            serial_hex: serial.to_hex(),
            subject: subject.to_string(),
            sans: sans.iter().map(extensions::describe_general_name).collect(),
            not_before: validity.not_before.to_system_time(),
            not_after: validity.not_after.to_system_time(),
        })
    }

    /// (notBefore, notAfter) for a certificate issued at `now`.
    fn validity(&self, now: SystemTime) -> Result<(SystemTime, SystemTime), IssueError> {
        validity_window(now, self.profile.validity_days, self.ca_not_after)
            .map_err(|why| IssueError::Config(format!("CA {}: {why}", self.ca_id)))
    }
}

/// notBefore = now − [`BACKDATE`]; notAfter = min(now + days, CA notAfter).
/// Whole seconds (X.509 times have no fractions). An expired CA is an error.
pub fn validity_window(
    now: SystemTime,
    days: u32,
    ca_not_after: SystemTime,
) -> Result<(SystemTime, SystemTime), String> {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()))
            .map_err(|_| "the clock is before 1970".to_string())
    };
    let now = secs(now)?;
    let ca_not_after = secs(ca_not_after)?;
    if ca_not_after <= now {
        return Err(format!(
            "the CA certificate expired at {}",
            humantime(ca_not_after)
        ));
    }
    let wanted = now
        .checked_add(Duration::from_secs(u64::from(days) * DAY))
        .unwrap_or(ca_not_after);
    let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
    Ok((not_before, wanted.min(ca_not_after)))
}

fn humantime(t: SystemTime) -> String {
    Time::try_from(t).map_or_else(|_| format!("{t:?}"), |t| t.to_string())
}

/// The variable parts of a certificate.
pub(crate) struct Template {
    pub serial: SerialNumber20,
    pub issuer: Name,
    pub subject: Name,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub spki: SubjectPublicKeyInfoOwned,
    pub extensions: Vec<Extension>,
}

/// x509-cert's builder profile: names and extensions as computed above.
struct FixedProfile {
    issuer: Name,
    subject: Name,
    extensions: Vec<Extension>,
}

impl BuilderProfile for FixedProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(self.extensions.clone())
    }
}

/// Stands in for the signer in x509-cert's builder, which only asks it for
/// the AlgorithmIdentifier and the issuer's public key: the signing itself
/// is asynchronous, on the HSM, between `finalize` and `assemble`.
struct AlgorithmOnly<'a> {
    algorithm: &'a AlgorithmIdentifierOwned,
    issuer_spki: &'a [u8],
}

#[derive(Clone)]
struct SpkiDer(Vec<u8>);

impl EncodePublicKey for SpkiDer {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::from_der(&self.0)?)
    }
}

impl signature::Keypair for AlgorithmOnly<'_> {
    type VerifyingKey = SpkiDer;
    fn verifying_key(&self) -> SpkiDer {
        SpkiDer(self.issuer_spki.to_vec())
    }
}

impl DynSignatureAlgorithmIdentifier for AlgorithmOnly<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(self.algorithm.clone())
    }
}

/// Builds the TBSCertificate, has `signer` sign it, checks the signature
/// with `issuer_key` and assembles the certificate.
pub(crate) async fn sign_certificate(
    signer: &CaSigner,
    labels: Option<&SignLabels>,
    algorithm_id: &AlgorithmIdentifierOwned,
    issuer_spki: &[u8],
    issuer_key: &PublicKey,
    algorithm: &SignatureAlgorithm,
    t: Template,
) -> Result<Certificate, IssueError> {
    let validity = Validity::new(
        Time::try_from(t.not_before).map_err(encoding)?,
        Time::try_from(t.not_after).map_err(encoding)?,
    );
    let serial = SerialNumber::new(t.serial.as_bytes()).map_err(encoding)?;
    let mut builder = CertificateBuilder::new(
        FixedProfile {
            issuer: t.issuer,
            subject: t.subject,
            extensions: t.extensions,
        },
        serial,
        validity,
        t.spki,
    )
    .map_err(encoding)?;
    let placeholder = AlgorithmOnly {
        algorithm: algorithm_id,
        issuer_spki,
    };
    let tbs: Bytes = builder.finalize(&placeholder).map_err(encoding)?.into();
    let signature = timed_sign(signer, labels, tbs.clone()).await?;
    if issuer_key.verify(algorithm, &tbs, &signature).is_err() {
        return Err(IssueError::Hsm(HsmError::Internal(format!(
            "the signer returned a {algorithm} signature that does not verify with the CA \
             certificate's public key; the certificate was not issued"
        ))));
    }
    let signature = BitString::from_bytes(&signature).map_err(encoding)?;
    builder.assemble(signature, &placeholder).map_err(encoding)
}

/// The signature algorithm of a CA key, for callers that hold only the
/// engine's view ([`KeyAlgorithm`], [`SignatureScheme`]).
pub fn algorithm_identifier(
    scheme: SignatureScheme,
    key: KeyAlgorithm,
) -> Result<AlgorithmIdentifierOwned, IssueError> {
    SignatureAlgorithm::from_scheme(scheme, key)
        .map_err(IssueError::Config)?
        .algorithm_identifier()
        .map_err(encoding)
}

/// Has `signer` sign `data`; a success is timed into
/// `kipuka_hsm_sign_duration_seconds` when `labels` are given.
async fn timed_sign(
    signer: &CaSigner,
    labels: Option<&SignLabels>,
    data: Bytes,
) -> Result<Vec<u8>, HsmError> {
    let started = std::time::Instant::now();
    let signature = signer.sign(data).await?;
    if let Some(labels) = labels {
        crate::metrics::hsm_sign(labels, started.elapsed());
    }
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_follow_the_rules() {
        for _ in 0..2000 {
            let s = random_serial();
            assert!(s[0] != 0 && s[0] < 0x80, "{s:?}");
            let sn = SerialNumber20::new(s).unwrap();
            assert_eq!(sn.to_hex().len(), 40);
            // Encodes in exactly 20 content octets: INTEGER 02 14 ...
            let der = SerialNumber::<x509_cert::certificate::Rfc5280>::new(&s)
                .unwrap()
                .to_der()
                .unwrap();
            assert_eq!(&der[..2], &[0x02, 20]);
        }
        assert_ne!(random_serial(), random_serial());
    }

    #[test]
    fn serials_with_a_bad_first_byte_are_refused() {
        let mut b = [0x11u8; 20];
        b[0] = 0;
        assert!(SerialNumber20::new(b).is_err());
        b[0] = 0x80;
        assert!(SerialNumber20::new(b).is_err());
        b[0] = 0x7f;
        assert_eq!(SerialNumber20::new(b).unwrap().to_hex()[..2], *"7f");
    }

    #[test]
    fn not_after_is_capped_by_the_ca_and_times_are_whole_seconds() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_250);
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let far = whole + Duration::from_secs(10 * 365 * DAY);
        let (nb, na) = validity_window(t0, 365, far).unwrap();
        assert_eq!(nb, whole - BACKDATE);
        assert_eq!(na, whole + Duration::from_secs(365 * DAY));
        // The CA expires in one day: the certificate too.
        let soon = whole + Duration::from_secs(DAY);
        let (_, na) = validity_window(t0, 365, soon).unwrap();
        assert_eq!(na, soon);
        // An expired CA issues nothing.
        assert!(validity_window(t0, 365, whole).is_err());
        assert!(validity_window(t0, 365, whole - Duration::from_secs(1)).is_err());
    }

    /// Compiles only if `issue` can run on a multi-threaded runtime.
    #[allow(dead_code)]
    fn issue_future_is_send(issuer: &Issuer, csr: &VerifiedCsr, names: &ApprovedNames) {
        fn send<T: Send>(_: T) {}
        send(issuer.issue(csr, names, SerialNumber20::random(), SystemTime::now()));
    }

    #[test]
    fn issuer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Issuer>();
        check::<IssuedCertificate>();
    }

    #[test]
    fn transient_only_for_hsm_trouble() {
        assert!(!IssueError::Policy("x".into()).is_transient());
        assert!(IssueError::Hsm(HsmError::Unavailable("down".into())).is_transient());
        assert!(!IssueError::Hsm(HsmError::Internal("x".into())).is_transient());
    }
}

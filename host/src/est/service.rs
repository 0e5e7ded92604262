//! The EST operations, one handler each (RFC 7030 §4), over the CA issuers,
//! the store and the audit log. HTTP details stay in `routes`; encodings
//! at the edge are in `wire`.

use std::{sync::Arc, time::SystemTime};

use const_oid::ObjectIdentifier;
use der::Encode;
use x509_cert::Certificate;

use crate::{
    audit::{AuditEvent, Auditor},
    ca::{
        csr::{verify_csr, VerifiedCsr},
        issue::{IssueError, Issuer, SerialNumber20},
    },
    config::{CaConfig, KeySpec},
    hsm::{HealthState, SessionPool},
    revocation::{crl::CrlSlot, ocsp::OcspCache},
    store::{IssuedRecord, SharedStore, StoreError},
    tls::ConnInfo,
};

use super::{
    auth::{
        client_certificate, client_certificate_der, issued_by, Authenticator, ClientIssuers,
        NotAccepted, Principal,
    },
    csrattrs::{encode_csrattrs, CsrAttrsSpec, KeyRequest},
    error::EstError,
    wire::{certs_only, decode_body},
};

/// One CA as the EST layer serves it.
pub struct CaEndpoint {
    /// Its configuration.
    pub config: CaConfig,
    /// Its issuer (key, chain, profile).
    pub issuer: Issuer,
    /// The pool its key is reached through, for readiness (None: software key).
    pub pool: Option<Arc<SessionPool>>,
    /// `/cacerts` answer, computed once: the certs-only PKCS#7 (DER).
    pub cacerts_der: bytes::Bytes,
    /// `/csrattrs` answer (DER), or None for 204.
    pub csrattrs_der: Option<bytes::Bytes>,
    /// `client_issuers`, read at start-up; None: every client certificate
    /// that passed TLS is accepted.
    pub client_issuers: Option<ClientIssuers>,
    /// Its newest signed CRL (`super::status` keeps it fresh).
    pub crl: CrlSlot,
    /// Its signed OCSP responses to requests without nonce.
    pub ocsp: OcspCache,
}

/// Everything the handlers need.
pub struct EstService {
    /// CAs in configuration order.
    pub cas: Vec<Arc<CaEndpoint>>,
    /// The CA of the unlabelled path.
    pub default_ca: Option<Arc<CaEndpoint>>,
    /// Basic users.
    pub auth: Arc<Authenticator>,
    /// Issued certificates and events.
    pub store: SharedStore,
    /// Audit events.
    pub auditor: Auditor,
    /// Basic realm.
    pub realm: String,
    /// Largest accepted body.
    pub max_body: usize,
    /// The HSM where `/serverkeygen` makes keys (None: no HSM configured).
    pub hsm: Option<Arc<SessionPool>>,
}

/// A successful EST answer: the media type and the DER to send (base64
/// encoding happens at the edge, in `routes`).
pub struct EstReply {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The DER.
    pub der: bytes::Bytes,
}

fn internal(e: impl std::fmt::Display) -> EstError {
    EstError::Internal(e.to_string())
}

/// The CSR attributes a CA publishes: the key type its profile allows first
/// and the signature algorithm that goes with it.
pub fn csrattrs_for(ca: &CaConfig) -> Result<Option<Vec<u8>>, EstError> {
    let specs = ca.profile.allowed_key_specs().map_err(internal)?;
    let Some(first) = specs.first() else {
        return Ok(None);
    };
    let oid = |s: &str| ObjectIdentifier::new_unwrap(s);
    let (signature_algorithm, key) = match first {
        KeySpec::Ec(curve) => match curve.as_str() {
            "P-384" => (
                oid("1.2.840.10045.4.3.3"),
                KeyRequest::Ec {
                    curve_oid: oid("1.3.132.0.34"),
                },
            ),
            "P-521" => (
                oid("1.2.840.10045.4.3.4"),
                KeyRequest::Ec {
                    curve_oid: oid("1.3.132.0.35"),
                },
            ),
            _ => (
                oid("1.2.840.10045.4.3.2"),
                KeyRequest::Ec {
                    curve_oid: oid("1.2.840.10045.3.1.7"),
                },
            ),
        },
        KeySpec::Rsa(bits) => (
            oid("1.2.840.113549.1.1.11"),
            KeyRequest::Rsa { bits: *bits },
        ),
        KeySpec::MlDsa(set) => {
            let o = oid(match set {
                44 => "2.16.840.1.101.3.4.3.17",
                87 => "2.16.840.1.101.3.4.3.19",
                _ => "2.16.840.1.101.3.4.3.18",
            });
            (o, KeyRequest::MlDsa { oid: o })
        }
    };
    let spec = CsrAttrsSpec {
        signature_algorithm,
        key,
        challenge_password: ca.profile.require_tls_exporter,
        extra_oids: Vec::new(),
    };
    encode_csrattrs(&spec).map(Some).map_err(internal)
}

impl CaEndpoint {
    /// Builds the endpoint, precomputing the static answers and reading the
    /// `client_issuers` files (an unusable one is an error naming the file).
    pub fn new(
        config: CaConfig,
        issuer: Issuer,
        pool: Option<Arc<SessionPool>>,
    ) -> Result<Self, EstError> {
        let chain: Vec<Vec<u8>> = issuer
            .chain()
            .iter()
            .map(|c| c.to_der())
            .collect::<Result<_, _>>()
            .map_err(internal)?;
        let cacerts_der = certs_only(&chain).map_err(internal)?.into();
        let csrattrs_der = csrattrs_for(&config)?.map(Into::into);
        let client_issuers = ClientIssuers::for_ca(&config).map_err(internal)?;
        Ok(CaEndpoint {
            config,
            issuer,
            pool,
            cacerts_der,
            csrattrs_der,
            client_issuers,
            crl: CrlSlot::default(),
            ocsp: OcspCache::default(),
        })
    }

    /// Whether its HSM can be used now.
    pub fn health(&self) -> HealthState {
        self.pool
            .as_ref()
            .map_or(HealthState::Healthy, |p| p.health().state())
    }

    fn ca_cert(&self) -> &Certificate {
        &self.issuer.chain()[0]
    }

    /// Whether this CA accepts the client certificate `cert` of `conn`
    /// (`client_issuers`): 403 naming the CA otherwise. The certificate has
    /// authenticated at the TLS layer; this is authorisation, hence not 401.
    fn accept_client_certificate(
        &self,
        op: Enrollment,
        cert: &Certificate,
        conn: &ConnInfo,
    ) -> Result<(), EstError> {
        let Some(issuers) = &self.client_issuers else {
            return Ok(());
        };
        let der = peer_der(conn)?;
        let refusal = match issuers.issuer_of(cert, der) {
            Ok(_) => return Ok(()),
            Err(refusal) => refusal,
        };
        // The one refusal an operator may not expect: a renewal at a CA
        // whose list leaves out the CA itself.
        let hint = match (&refusal, op) {
            (NotAccepted::NotListed { .. }, Enrollment::Re) => {
                "; to let the certificates this CA issued re-enroll, list its own certificate \
                 in client_issuers"
            }
            _ => "",
        };
        Err(EstError::Forbidden(format!(
            "CA {} does not accept this client certificate: {refusal}{hint}",
            self.config.id
        )))
    }
}

/// The DER of the client certificate `client_certificate` parsed.
fn peer_der(conn: &ConnInfo) -> Result<&[u8], EstError> {
    client_certificate_der(conn).ok_or_else(|| {
        EstError::Internal("the client certificate's DER is gone from the connection".into())
    })
}

/// The enrollment operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enrollment {
    /// `/simpleenroll`.
    Simple,
    /// `/simplereenroll`.
    Re,
}

impl Enrollment {
    fn name(self) -> &'static str {
        match self {
            Enrollment::Simple => "simpleenroll",
            Enrollment::Re => "simplereenroll",
        }
    }
}

impl EstService {
    /// The CA for a path label (None: the unlabelled path).
    pub fn ca(&self, label: Option<&str>) -> Result<Arc<CaEndpoint>, EstError> {
        match label {
            None => self.default_ca.clone().ok_or_else(|| {
                EstError::NotFound(format!(
                    "no default CA: use /.well-known/est/<label>/... with one of: {}",
                    self.labels()
                ))
            }),
            Some(l) => self
                .cas
                .iter()
                .find(|c| c.config.label() == l)
                .cloned()
                .ok_or_else(|| {
                    EstError::NotFound(format!("no CA labelled {l:?} (labels: {})", self.labels()))
                }),
        }
    }

    fn labels(&self) -> String {
        self.cas
            .iter()
            .map(|c| c.config.label())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `GET /cacerts`.
    pub fn cacerts(&self, ca: &CaEndpoint) -> EstReply {
        EstReply {
            content_type: super::wire::CONTENT_TYPE_CERTS_ONLY,
            der: ca.cacerts_der.clone(),
        }
    }

    /// `GET /csrattrs`: None means 204.
    pub fn csrattrs(&self, ca: &CaEndpoint) -> Option<EstReply> {
        ca.csrattrs_der.as_ref().map(|der| EstReply {
            content_type: super::wire::CONTENT_TYPE_CSRATTRS,
            der: der.clone(),
        })
    }

    /// Authenticates for an enrollment on `ca`: the TLS client certificate
    /// if there is one (required for re-enrollment), else HTTP Basic. A
    /// certificate must also be one `ca` accepts (`client_issuers`), and a
    /// Basic user one `ca` allows (`auth.users.cas`).
    pub async fn authenticate(
        &self,
        ca: &CaEndpoint,
        op: Enrollment,
        conn: &ConnInfo,
        authorization: Option<&str>,
    ) -> Result<Principal, EstError> {
        let cert = client_certificate(conn)?;
        if let Some(cert) = &cert {
            self.refuse_revoked(cert, conn)?;
        }
        if op == Enrollment::Re {
            let cert = cert.ok_or_else(|| {
                EstError::Unauthorized(
                    "simplereenroll needs the TLS client certificate being renewed".into(),
                )
            })?;
            if !issued_by(&cert, ca.ca_cert()) {
                return Err(EstError::Forbidden(format!(
                    "the client certificate was not issued by CA {}",
                    ca.config.id
                )));
            }
            ca.accept_client_certificate(op, &cert, conn)?;
            return Ok(Principal::Certificate { cert });
        }
        // A presented certificate decides, even alongside Basic credentials:
        // falling back to the password would make the refusal depend on
        // what else the client happened to send.
        if let Some(cert) = cert {
            ca.accept_client_certificate(op, &cert, conn)?;
            return Ok(Principal::Certificate { cert });
        }
        match self.auth.basic(authorization, &ca.config.id).await? {
            Some(p) => Ok(p),
            None => Err(EstError::Unauthorized(
                "authentication required: a TLS client certificate or HTTP Basic credentials"
                    .into(),
            )),
        }
    }

    /// 403 for a revoked client certificate: the store decides, so a
    /// revocation made by `kipuka certs revoke` a moment ago counts.
    fn refuse_revoked(&self, cert: &Certificate, conn: &ConnInfo) -> Result<(), EstError> {
        let der = peer_der(conn)?;
        match crate::revocation::refusal(&*self.store, cert, der) {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(EstError::Forbidden(why)),
            Err(e) => Err(EstError::Unavailable(format!(
                "certificate store (revocation check): {e}"
            ))),
        }
    }

    /// `POST /simpleenroll` and `/simplereenroll`, after authentication:
    /// decode, verify, check policy, issue, record, answer.
    pub async fn enroll(
        &self,
        ca: &CaEndpoint,
        op: Enrollment,
        principal: &Principal,
        conn: &ConnInfo,
        body: &[u8],
    ) -> Result<EstReply, EstError> {
        let der =
            decode_body(body, self.max_body).map_err(|e| EstError::BadRequest(e.to_string()))?;
        // Signature checks cost up to tens of milliseconds (RSA-4096,
        // ML-DSA-87): keep them off the async workers.
        let csr = tokio::task::spawn_blocking(move || verify_csr(&der))
            .await
            .map_err(|e| EstError::Internal(format!("CSR check failed: {e}")))?
            .map_err(|e| EstError::BadRequest(format!("CSR: {e}")))?;
        if ca.config.profile.require_tls_exporter {
            check_channel_binding(&csr, conn)?;
        }
        if let (Enrollment::Re, Principal::Certificate { cert }) = (op, principal) {
            check_same_identity(&csr, cert)?;
        }
        let issued = self.issue_recorded(ca, &csr, principal, op.name()).await?;
        let pkcs7 = certs_only(&[issued]).map_err(internal)?;
        Ok(EstReply {
            content_type: super::wire::CONTENT_TYPE_CERTS_ONLY,
            der: pkcs7.into(),
        })
    }

    /// Issues a certificate for `csr` and commits it to the store before
    /// returning it; a serial collision (vanishingly rare) draws again.
    pub async fn issue_recorded(
        &self,
        ca: &CaEndpoint,
        csr: &VerifiedCsr,
        principal: &Principal,
        operation: &str,
    ) -> Result<Vec<u8>, EstError> {
        for _ in 0..3 {
            let serial = SerialNumber20::random();
            let issued = ca
                .issuer
                .issue(csr, serial, SystemTime::now())
                .await
                .map_err(|e| match e {
                    IssueError::Policy(reason) => EstError::Forbidden(reason),
                    e if e.is_transient() => {
                        EstError::Unavailable(format!("CA {}: {e}", ca.config.id))
                    }
                    e => EstError::Internal(format!("CA {}: {e}", ca.config.id)),
                })?;
            let record = IssuedRecord {
                serial_hex: issued.serial_hex.clone(),
                ca_id: ca.config.id.clone(),
                subject: issued.subject.clone(),
                sans: issued.sans.clone(),
                not_before: issued.not_before,
                not_after: issued.not_after,
                requester: principal.describe(),
                operation: operation.to_string(),
                der: issued.der.clone(),
            };
            let event = AuditEvent::CertificateIssued {
                ca_id: ca.config.id.clone(),
                serial_hex: issued.serial_hex,
                subject: issued.subject,
                requester: principal.describe(),
                operation: operation.to_string(),
            };
            // The certificate and its event in one commit: the answer waits
            // for one durable write, not two.
            match self.store.record_issued_with_event(record, &event).await {
                Ok(()) => {
                    self.auditor.log(&event);
                    return Ok(issued.der);
                }
                Err(StoreError::DuplicateSerial(_)) => continue,
                Err(e) => {
                    // Never hand out a certificate that is not recorded.
                    return Err(EstError::Unavailable(format!("certificate store: {e}")));
                }
            }
        }
        Err(EstError::Internal(
            "three serial numbers in a row collided".into(),
        ))
    }

    /// Records a refusal in the audit log.
    pub async fn rejected(
        &self,
        ca: Option<&CaEndpoint>,
        operation: &str,
        principal: Option<&Principal>,
        error: &EstError,
    ) {
        self.auditor
            .emit(AuditEvent::EnrollmentRejected {
                ca_id: ca.map(|c| c.config.id.clone()),
                operation: operation.to_string(),
                requester: principal.map(Principal::describe),
                status: error.status().as_u16(),
                reason: error.to_string(),
            })
            .await;
    }
}

/// RFC 7030 §3.5 carried to TLS 1.3 by RFC 9266: the CSR's
/// challengePassword must be the base64 of this connection's tls-exporter.
fn check_channel_binding(csr: &VerifiedCsr, conn: &ConnInfo) -> Result<(), EstError> {
    use base64ct::{Base64, Encoding};
    let exporter = conn.tls_exporter.ok_or_else(|| {
        EstError::Forbidden(
            "this CA requires channel binding, and the connection has no tls-exporter value".into(),
        )
    })?;
    let expected = Base64::encode_string(&exporter);
    match csr.challenge_password.as_deref() {
        Some(p) if p == expected => Ok(()),
        Some(_) => Err(EstError::Forbidden(
            "challengePassword does not match this TLS connection's tls-exporter value".into(),
        )),
        None => Err(EstError::Forbidden(
            "this CA requires the tls-exporter value (RFC 9266) in the CSR's challengePassword"
                .into(),
        )),
    }
}

/// RFC 7030 §4.2.2: a re-enrollment keeps the subject and subjectAltName of
/// the certificate being renewed (the key may change).
fn check_same_identity(csr: &VerifiedCsr, cert: &Certificate) -> Result<(), EstError> {
    let tbs = cert.tbs_certificate();
    if csr.subject.to_der().ok() != tbs.subject().to_der().ok() {
        return Err(EstError::Forbidden(format!(
            "re-enrollment must keep the subject: the certificate has {:?}, the CSR {:?}",
            tbs.subject().to_string(),
            csr.subject.to_string()
        )));
    }
    use x509_cert::ext::pkix::SubjectAltName;
    let mut cert_sans: Vec<Vec<u8>> = tbs
        .get_extension::<SubjectAltName>()
        .ok()
        .flatten()
        .map(|(_, san)| san.0.iter().filter_map(|g| g.to_der().ok()).collect())
        .unwrap_or_default();
    let mut csr_sans: Vec<Vec<u8>> = csr.sans.iter().filter_map(|g| g.to_der().ok()).collect();
    cert_sans.sort();
    csr_sans.sort();
    if cert_sans != csr_sans {
        return Err(EstError::Forbidden(
            "re-enrollment must keep the subjectAltName of the certificate being renewed".into(),
        ));
    }
    Ok(())
}

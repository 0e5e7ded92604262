//! The EST operations, one handler each (RFC 7030 §4), over the CA issuers,
//! the store and the audit log. HTTP details stay in `routes`; encodings
//! at the edge are in `wire`.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

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
    limits::{Limited, Limits},
    metrics,
    policy::{ApprovedNames, NamePolicy, PolicyError},
    revocation::{crl::CrlSlot, ocsp::OcspCache},
    store::{IssuedRecord, SharedStore, StoreError, CODE_PREFIX},
    tls::ConnInfo,
};

use super::{
    auth::{
        client_certificate, client_certificate_der, issued_by, wrong_credentials, Authenticator,
        ClientIssuers, Credentials, NotAccepted, Principal,
    },
    csrattrs::{encode_csrattrs, CsrAttrsSpec, KeyRequest},
    current::Current,
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
    /// `[ca.policy]`: the names it issues.
    pub policy: NamePolicy,
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
    /// Basic users (replaced by a reload).
    pub auth: Current<Authenticator>,
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
    /// `[limits]` (replaced by a reload that changes them).
    pub limits: Current<Limits>,
}

/// A successful enrollment: the answer, and the requested names the
/// policy left out (rewrite mode), for the `Kipuka-Policy-Dropped` header.
pub struct Enrolled {
    /// The certs-only answer.
    pub reply: EstReply,
    /// `DNS:x (allow_dns)`, ...; empty when nothing was left out.
    pub dropped: Vec<String>,
}

/// How long a password attempt refused by the `failed_auth_*` limits waits
/// for its 429.
const REFUSED_AUTH_PAUSE: Duration = Duration::from_secs(1);

fn too_many(l: Limited) -> EstError {
    EstError::TooManyRequests {
        what: l.what,
        retry_after: l.retry_after,
    }
}

/// A refusal of the name policy: 403 with its message; an encoding failure: 500.
pub(super) fn policy_error(e: PolicyError) -> EstError {
    match e {
        PolicyError::Refused(why) => EstError::Forbidden(why),
        e => EstError::Internal(e.to_string()),
    }
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
        let policy = NamePolicy::for_ca(&config).map_err(internal)?;
        if !policy.is_restricted() {
            tracing::warn!(
                ca = %config.id,
                "no [ca.policy]: this CA issues every name a CSR requests"
            );
        }
        Ok(CaEndpoint {
            config,
            issuer,
            pool,
            cacerts_der,
            csrattrs_der,
            client_issuers,
            policy,
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

    /// Authenticates for an enrollment on `ca` ([`Self::principal`]), then
    /// applies the enrollment rate limits (`[limits]`, HTTP 429).
    pub async fn authenticate(
        &self,
        ca: &CaEndpoint,
        op: Enrollment,
        conn: &ConnInfo,
        authorization: Option<&str>,
    ) -> Result<Principal, EstError> {
        let principal = self.principal(ca, op, conn, authorization).await?;
        self.limits
            .get()
            .enrollment(&principal.describe(), conn.remote.map(|a| a.ip()))
            .map_err(too_many)?;
        Ok(principal)
    }

    /// Who is asking: the TLS client certificate if there is one (required
    /// for re-enrollment), else HTTP Basic. A certificate must also be one
    /// `ca` accepts (`client_issuers`), and a Basic user one `ca` allows
    /// (`auth.users.cas`). Failed passwords count against the source address
    /// and the user name, and once those are spent no password is checked.
    async fn principal(
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
        let Some(credentials) = Credentials::from_header(authorization)? else {
            return Err(EstError::Unauthorized(
                "authentication required: a TLS client certificate or HTTP Basic credentials"
                    .into(),
            ));
        };
        let ip = conn.remote.map(|a| a.ip());
        let limits = self.limits.get();
        if let Err(limited) = limits.before_password(ip, &credentials.user) {
            // Answered after a pause: a flood from a source (or as a name)
            // whose failed attempts are spent then gets one answer per
            // connection and second, instead of as many as it can send,
            // each costing the cores a request cycle.
            tokio::time::sleep(REFUSED_AUTH_PAUSE).await;
            return Err(too_many(limited));
        }
        let result = if credentials.user.starts_with(CODE_PREFIX) {
            self.enrollment_code(ca, &credentials).await
        } else {
            self.auth.get().basic(&credentials, &ca.config.id).await
        };
        if let Err(EstError::Unauthorized(_)) = &result {
            limits.password_failed(ip, &credentials.user);
        }
        result
    }

    /// Authenticates an enrollment code (`kipuka enroll-codes`) for `ca`.
    /// Its use is taken later, with the issuance ([`Self::issue_recorded`]).
    async fn enrollment_code(
        &self,
        ca: &CaEndpoint,
        credentials: &Credentials,
    ) -> Result<Principal, EstError> {
        let id = credentials.user.as_str();
        let store = |e: StoreError| EstError::Unavailable(format!("certificate store: {e}"));
        let code = self
            .store
            .enrollment_code(id)
            .map_err(store)?
            .ok_or_else(wrong_credentials)?;
        if !self
            .auth
            .get()
            .verify_hash(&code.secret_hash, &credentials.password)
            .await?
        {
            return Err(wrong_credentials());
        }
        if let Some(why) = code.unusable(SystemTime::now()) {
            return Err(EstError::Unauthorized(format!(
                "enrollment code {id} is {why}"
            )));
        }
        if code.ca_id != ca.config.id {
            return Err(EstError::Forbidden(format!(
                "enrollment code {id} enrolls at CA {}, not {}",
                code.ca_id, ca.config.id
            )));
        }
        if !ca.policy.is_restricted() {
            return Err(EstError::Forbidden(format!(
                "CA {} has no [ca.policy], so an enrollment code cannot be held to its name",
                ca.config.id
            )));
        }
        Ok(Principal::Code {
            id: code.id,
            name: code.name,
        })
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
    ) -> Result<Enrolled, EstError> {
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
        let renewing = match (op, principal) {
            (Enrollment::Re, Principal::Certificate { cert }) => Some(cert.as_ref()),
            _ => None,
        };
        let names = ca
            .policy
            .decide(&csr, &principal.requester(), renewing)
            .map_err(policy_error)?;
        let issued = self
            .issue_recorded(ca, &csr, &names, principal, op.name())
            .await?;
        let pkcs7 = certs_only(&[issued]).map_err(internal)?;
        Ok(Enrolled {
            reply: EstReply {
                content_type: super::wire::CONTENT_TYPE_CERTS_ONLY,
                der: pkcs7.into(),
            },
            dropped: names.dropped().to_vec(),
        })
    }

    /// Issues a certificate for `csr` with the policy's `names` and commits
    /// it to the store before returning it; a serial collision (vanishingly
    /// rare) draws again. An enrollment code's use is taken first, in the
    /// store (atomically, across processes), and given back if the
    /// certificate is not issued.
    pub async fn issue_recorded(
        &self,
        ca: &CaEndpoint,
        csr: &VerifiedCsr,
        names: &ApprovedNames,
        principal: &Principal,
        operation: &str,
    ) -> Result<Vec<u8>, EstError> {
        let Principal::Code { id, .. } = principal else {
            return self
                .issue_and_record(ca, csr, names, principal, operation)
                .await;
        };
        let code_store = |e| EstError::Unavailable(format!("certificate store: {e}"));
        let (store, code) = (self.store.clone(), id.clone());
        let started = std::time::Instant::now();
        let taken = tokio::task::spawn_blocking(move || {
            store.take_enrollment_code_use(&code, SystemTime::now())
        })
        .await
        .map_err(internal)?
        .map_err(code_store)?;
        metrics::store_operation("take_enrollment_code_use", started.elapsed());
        metrics::enrollment_code(if taken { "taken" } else { "refused" });
        if !taken {
            return Err(EstError::Forbidden(format!(
                "enrollment code {id} is used up, expired or revoked"
            )));
        }
        let issued = self
            .issue_and_record(ca, csr, names, principal, operation)
            .await;
        if issued.is_err() {
            let (store, code) = (self.store.clone(), id.clone());
            let given =
                tokio::task::spawn_blocking(move || store.give_back_enrollment_code_use(&code))
                    .await;
            if matches!(given, Ok(Ok(()))) {
                metrics::enrollment_code("given_back");
            } else {
                tracing::warn!(code = %id, "an enrollment code use could not be given back");
            }
        }
        issued
    }

    async fn issue_and_record(
        &self,
        ca: &CaEndpoint,
        csr: &VerifiedCsr,
        names: &ApprovedNames,
        principal: &Principal,
        operation: &str,
    ) -> Result<Vec<u8>, EstError> {
        for _ in 0..3 {
            let serial = SerialNumber20::random();
            let issued = ca
                .issuer
                .issue(csr, names, serial, SystemTime::now())
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
            let started = std::time::Instant::now();
            let recorded = self.store.record_issued_with_event(record, &event).await;
            metrics::store_operation("record_issued", started.elapsed());
            match recorded {
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

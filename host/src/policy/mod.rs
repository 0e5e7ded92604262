//! The name policy: which names a requester may get in a certificate.
//!
//! This is kipuka's registration authority (Boulder's "policy authority",
//! step-ca's x509 policy): every issuing path (`/simpleenroll`,
//! `/simplereenroll`, `/serverkeygen`) asks [`NamePolicy::decide`], and the
//! issuer signs only the [`ApprovedNames`] it returns — a type no other
//! module can build, so a CSR's names reach a certificate only through here.
//!
//! Without `[ca.policy]` a CA issues the CSR's subject as requested (and its
//! subjectAltNames under `san_policy = "copy-from-csr"`), as before this
//! module existed; `kipuka serve` warns about such CAs. With it, the subject
//! is rebuilt from the allowed CN alone and each subjectAltName must match a
//! rule (see [`PolicyConfig`]).
//!
//! Re-enrollment (RFC 7030 §4.2.2) keeps the names of the certificate being
//! renewed; a name it did not have must be allowed by the rules for this
//! client (without rules: refused).

mod matching;
mod pattern;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use const_oid::db::rfc4519;
use der::{asn1::Any, Decode, Encode};
use x509_cert::{
    attr::AttributeTypeAndValue,
    ext::pkix::{name::DirectoryString, name::GeneralName, SubjectAltName},
    name::{Name, RdnSequence, RelativeDistinguishedName},
    Certificate,
};

use crate::{
    ca::{csr::VerifiedCsr, extensions::describe_general_name},
    config::{CaConfig, PolicyConfig, PolicyMode, SanPolicy},
};
use matching::Cidr;
use pattern::Pattern;

/// Who is asking, as far as the rules' templates are concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requester {
    /// `{user}`: the HTTP Basic user, or the enrollment code's name.
    pub user: Option<String>,
    /// `{client.subject.cn}` of the TLS client certificate.
    pub client_cn: Option<String>,
    /// `{client.subject.serialNumber}` of the TLS client certificate.
    pub client_serial_number: Option<String>,
    /// `{client.san.dns}`: the dNSNames of the TLS client certificate.
    pub client_dns: Vec<String>,
}

impl Requester {
    /// A Basic user or an enrollment code's name.
    pub fn user(name: &str) -> Self {
        Requester {
            user: Some(name.to_string()),
            ..Requester::default()
        }
    }

    /// A client authenticated by its TLS certificate.
    pub fn certificate(cert: &Certificate) -> Self {
        let subject = cert.tbs_certificate().subject();
        let text = |d: DirectoryString| String::from(d);
        let client_dns = sans_of(cert)
            .into_iter()
            .filter_map(|g| match g {
                GeneralName::DnsName(s) => Some(s.to_string()),
                _ => None,
            })
            .collect();
        Requester {
            user: None,
            client_cn: subject.common_name().ok().flatten().map(text),
            client_serial_number: subject
                .by_oid::<DirectoryString>(rfc4519::SERIAL_NUMBER)
                .ok()
                .flatten()
                .map(text),
            client_dns,
        }
    }
}

fn sans_of(cert: &Certificate) -> Vec<GeneralName> {
    cert.tbs_certificate()
        .get_extension::<SubjectAltName>()
        .ok()
        .flatten()
        .map(|(_, san)| san.0)
        .unwrap_or_default()
}

/// Why the policy cannot be used, or why it refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A `[ca.policy]` rule that cannot be compiled (start-up).
    #[error("ca {ca:?} policy {rule}: {reason}")]
    Config {
        /// The CA id.
        ca: String,
        /// The rule (`allow_dns`, ...).
        rule: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The request names something the policy does not allow (HTTP 403);
    /// the message names each refused name and its rule.
    #[error("{0}")]
    Refused(String),
    /// A name could not be encoded (HTTP 500).
    #[error("name encoding: {0}")]
    Encoding(String),
}

/// The names a certificate may carry, as decided by [`NamePolicy::decide`].
/// Its fields are private to this module: no other code can make one.
#[derive(Clone, Debug)]
pub struct ApprovedNames {
    subject: Name,
    sans: Vec<GeneralName>,
    dropped: Vec<String>,
}

impl ApprovedNames {
    /// The subject (may be empty, then `sans` is not).
    pub fn subject(&self) -> &Name {
        &self.subject
    }

    /// The subjectAltNames.
    pub fn sans(&self) -> &[GeneralName] {
        &self.sans
    }

    /// In rewrite mode, the requested names left out, each as
    /// `DNS:x (allow_dns)`.
    pub fn dropped(&self) -> &[String] {
        &self.dropped
    }
}

/// The compiled `[ca.policy]` of one CA.
#[derive(Debug)]
pub struct NamePolicy {
    ca_id: String,
    copy_sans: bool,
    rules: Option<Rules>,
}

#[derive(Debug)]
struct Rules {
    mode: PolicyMode,
    allow_cn: Vec<Pattern>,
    allow_dns: Vec<Pattern>,
    deny_dns: Vec<Pattern>,
    allow_ip: Vec<Cidr>,
    allow_email: Vec<Pattern>,
    allow_uri: Vec<Pattern>,
    allow_wildcards: bool,
}

/// A name as requested.
enum Item {
    Cn(String),
    OtherAttribute,
    San(GeneralName),
}

struct Candidate {
    item: Item,
    /// As OpenSSL prints it, control characters escaped.
    shown: String,
    /// For comparing with the certificate being renewed.
    key: String,
}

/// A refused name: the rule, and what is wrong beyond "no rule matched".
struct Refusal {
    rule: &'static str,
    why: Option<&'static str>,
}

fn refuse(rule: &'static str) -> Refusal {
    Refusal { rule, why: None }
}

fn malformed(rule: &'static str, why: &'static str) -> Refusal {
    Refusal {
        rule,
        why: Some(why),
    }
}

/// Printable ASCII for messages and headers: everything else escaped.
fn shown(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                vec![c]
            } else {
                c.escape_default().collect()
            }
        })
        .collect()
}

fn compile(
    ca: &str,
    rule: &'static str,
    texts: &[String],
    stars: bool,
    check: impl Fn(&str) -> bool,
) -> Result<Vec<Pattern>, PolicyError> {
    let err = |reason: String| PolicyError::Config {
        ca: ca.to_string(),
        rule,
        reason,
    };
    texts
        .iter()
        .map(|t| {
            let p = Pattern::parse(t, stars).map_err(err)?;
            if !check(&p.sample()) {
                return Err(err(format!("{t:?} is not a valid {rule} pattern")));
            }
            Ok(p)
        })
        .collect()
}

impl NamePolicy {
    /// Compiles `config` for CA `ca_id`; `copy_sans` is the profile's
    /// `san_policy = "copy-from-csr"` (false: no subjectAltName is issued).
    pub fn new(
        ca_id: &str,
        config: Option<&PolicyConfig>,
        copy_sans: bool,
    ) -> Result<Self, PolicyError> {
        let rules = match config {
            None => None,
            Some(c) => Some(Rules {
                mode: c.mode,
                allow_cn: compile(ca_id, "allow_cn", &c.allow_cn, true, |s| {
                    matching::cn_syntax_error(s).is_none()
                })?,
                allow_dns: compile(
                    ca_id,
                    "allow_dns",
                    &c.allow_dns,
                    false,
                    matching::dns_constraint_ok,
                )?,
                deny_dns: compile(
                    ca_id,
                    "deny_dns",
                    &c.deny_dns,
                    false,
                    matching::dns_constraint_ok,
                )?,
                allow_ip: c
                    .allow_ip
                    .iter()
                    .map(|t| {
                        Cidr::parse(t).map_err(|reason| PolicyError::Config {
                            ca: ca_id.to_string(),
                            rule: "allow_ip",
                            reason,
                        })
                    })
                    .collect::<Result<_, _>>()?,
                allow_email: compile(ca_id, "allow_email", &c.allow_email, false, |s| {
                    let domain = s.rsplit_once('@').map_or(s, |(_, d)| d);
                    matching::dns_constraint_ok(domain)
                })?,
                allow_uri: compile(
                    ca_id,
                    "allow_uri",
                    &c.allow_uri,
                    false,
                    matching::dns_constraint_ok,
                )?,
                allow_wildcards: c.allow_wildcards,
            }),
        };
        Ok(NamePolicy {
            ca_id: ca_id.to_string(),
            copy_sans,
            rules,
        })
    }

    /// The policy of `ca` (its `[ca.policy]` and `profile.san_policy`).
    pub fn for_ca(ca: &CaConfig) -> Result<Self, PolicyError> {
        Self::new(
            &ca.id,
            ca.policy.as_ref(),
            ca.profile.san_policy == SanPolicy::CopyFromCsr,
        )
    }

    /// Whether `[ca.policy]` is configured (else every requested name is issued).
    pub fn is_restricted(&self) -> bool {
        self.rules.is_some()
    }

    /// The names the certificate for `csr`, asked for by `who`, may carry;
    /// `renewing` is the certificate being renewed (`/simplereenroll`).
    pub fn decide(
        &self,
        csr: &VerifiedCsr,
        who: &Requester,
        renewing: Option<&Certificate>,
    ) -> Result<ApprovedNames, PolicyError> {
        let requested_sans: &[GeneralName] = if self.copy_sans { &csr.sans } else { &[] };
        let Some(rules) = &self.rules else {
            if let Some(cert) = renewing {
                same_identity(csr, cert)?;
            }
            return self.approved(csr.subject.clone(), requested_sans.to_vec(), Vec::new());
        };
        let candidates = candidates(&csr.subject, requested_sans);
        let renewed: BTreeSet<String> = renewing
            .map(|cert| {
                let sans = sans_of(cert);
                candidates_of_cert(cert.tbs_certificate().subject(), &sans)
            })
            .unwrap_or_default();
        if let Some(cert) = renewing {
            let asked: BTreeSet<String> = candidates.iter().map(|c| c.key.clone()).collect();
            if asked == renewed {
                // The same names as before: the certificate's own encoding.
                let tbs = cert.tbs_certificate();
                return self.approved(tbs.subject().clone(), sans_of(cert), Vec::new());
            }
        }
        let mut cn: Option<String> = None;
        let mut sans = Vec::new();
        let mut refused = Vec::new();
        for c in candidates {
            let verdict = if renewed.contains(&c.key) {
                Ok(())
            } else {
                rules.judge(&c.item, who)
            };
            let verdict = match (verdict, &c.item) {
                (Ok(()), Item::Cn(_)) if cn.is_some() => Err(malformed(
                    "allow_cn",
                    "only one CN is issued in the subject",
                )),
                (v, _) => v,
            };
            match verdict {
                Ok(()) => match c.item {
                    Item::Cn(v) => cn = Some(v),
                    Item::San(g) => sans.push(g),
                    Item::OtherAttribute => {}
                },
                Err(r) => refused.push((c.shown, r)),
            }
        }
        let subject = match &cn {
            Some(v) => cn_name(v)?,
            None => Name::default(),
        };
        if rules.mode == PolicyMode::Enforce && !refused.is_empty() {
            let lines: Vec<String> = refused
                .iter()
                .map(|(name, r)| {
                    let why = r.why.map(|w| format!(" ({w})")).unwrap_or_default();
                    let renewal = if renewing.is_some() {
                        " (it is not in the certificate being renewed)"
                    } else {
                        ""
                    };
                    format!(
                        "name {name} not allowed by ca \"{}\" policy {}{why}{renewal}",
                        self.ca_id, r.rule
                    )
                })
                .collect();
            return Err(PolicyError::Refused(lines.join("; ")));
        }
        let dropped = refused
            .into_iter()
            .map(|(name, r)| format!("{name} ({})", r.rule))
            .collect();
        self.approved(subject, sans, dropped)
    }

    fn approved(
        &self,
        subject: Name,
        sans: Vec<GeneralName>,
        dropped: Vec<String>,
    ) -> Result<ApprovedNames, PolicyError> {
        if subject.is_empty() && sans.is_empty() {
            let why = if !dropped.is_empty() {
                format!(
                    "no requested name is allowed by ca \"{}\" policy (left out: {})",
                    self.ca_id,
                    dropped.join(", ")
                )
            } else if self.copy_sans {
                "the CSR has an empty subject and no subjectAltName: the certificate would \
                 name no one"
                    .to_string()
            } else {
                "the CSR has an empty subject, and this CA's profile issues no subjectAltName"
                    .to_string()
            };
            return Err(PolicyError::Refused(format!("CA {}: {why}", self.ca_id)));
        }
        Ok(ApprovedNames {
            subject,
            sans,
            dropped,
        })
    }
}

impl Rules {
    fn judge(&self, item: &Item, who: &Requester) -> Result<(), Refusal> {
        let any_text = |patterns: &[Pattern], f: &dyn Fn(&str) -> bool| {
            patterns
                .iter()
                .flat_map(|p| p.expand_text(who))
                .any(|c| f(&c))
        };
        match item {
            Item::Cn(v) => {
                if let Some(why) = matching::cn_syntax_error(v) {
                    return Err(malformed("allow_cn", why));
                }
                let ok = self
                    .allow_cn
                    .iter()
                    .flat_map(|p| p.expand(who))
                    .any(|atoms| matching::cn_matches(&atoms, v));
                ok.then_some(()).ok_or(refuse("allow_cn"))
            }
            Item::OtherAttribute => Err(malformed(
                "allow_cn",
                "only the CN is issued in the subject",
            )),
            Item::San(GeneralName::DnsName(s)) => {
                let name = s.to_string();
                if let Some(why) = matching::dns_syntax_error(&name) {
                    return Err(malformed("allow_dns", why));
                }
                let wildcard = name.strip_prefix("*.");
                let denied = |c: &str| {
                    matching::dns_matches(c, &name)
                        || wildcard.is_some_and(|base| {
                            matching::dns_matches(base, c.trim_start_matches('.'))
                        })
                };
                if any_text(&self.deny_dns, &denied) {
                    return Err(refuse("deny_dns"));
                }
                if !any_text(&self.allow_dns, &|c| matching::dns_matches(c, &name)) {
                    return Err(refuse("allow_dns"));
                }
                if wildcard.is_some() && !self.allow_wildcards {
                    return Err(malformed("allow_wildcards", "a wildcard"));
                }
                Ok(())
            }
            Item::San(GeneralName::Rfc822Name(s)) => {
                let addr = s.to_string();
                let (local, domain) =
                    matching::split_email(&addr).map_err(|why| malformed("allow_email", why))?;
                any_text(&self.allow_email, &|c| {
                    matching::email_matches(c, local, domain)
                })
                .then_some(())
                .ok_or(refuse("allow_email"))
            }
            Item::San(GeneralName::UniformResourceIdentifier(s)) => {
                let uri = s.to_string();
                let host = matching::uri_host(&uri).map_err(|why| malformed("allow_uri", why))?;
                any_text(&self.allow_uri, &|c| matching::uri_matches(c, host))
                    .then_some(())
                    .ok_or(refuse("allow_uri"))
            }
            Item::San(GeneralName::IpAddress(octets)) => {
                let ip = match octets.as_bytes().len() {
                    4 => <[u8; 4]>::try_from(octets.as_bytes()).map(std::net::IpAddr::from),
                    _ => <[u8; 16]>::try_from(octets.as_bytes()).map(std::net::IpAddr::from),
                }
                .map_err(|_| malformed("allow_ip", "not a 4- or 16-byte address"))?;
                self.allow_ip
                    .iter()
                    .any(|c| c.contains(ip))
                    .then_some(())
                    .ok_or(refuse("allow_ip"))
            }
            Item::San(_) => Err(malformed(
                "subjectAltName types",
                "only DNS, IP, e-mail and URI subjectAltNames are issued",
            )),
        }
    }
}

/// The requested names, subject attributes first.
fn candidates(subject: &Name, sans: &[GeneralName]) -> Vec<Candidate> {
    let mut out = Vec::new();
    for atv in subject.iter() {
        let cn = (atv.oid == rfc4519::CN)
            .then(|| DirectoryString::try_from(&atv.value).ok())
            .flatten()
            .map(String::from);
        out.push(match cn {
            Some(v) => Candidate {
                shown: format!("CN={}", shown(&v)),
                key: format!("CN={}", v.to_lowercase()),
                item: Item::Cn(v),
            },
            None => Candidate {
                shown: shown(&atv.to_string()),
                key: hex(&atv.to_der().unwrap_or_default()),
                item: Item::OtherAttribute,
            },
        });
    }
    for g in sans {
        let text = describe_general_name(g);
        let key = match g {
            GeneralName::DnsName(_) => text.to_lowercase(),
            GeneralName::IpAddress(_) | GeneralName::Rfc822Name(_) => text.clone(),
            GeneralName::UniformResourceIdentifier(_) => text.clone(),
            _ => hex(&g.to_der().unwrap_or_default()),
        };
        out.push(Candidate {
            shown: shown(&text),
            key,
            item: Item::San(g.clone()),
        });
    }
    out
}

fn candidates_of_cert(subject: &Name, sans: &[GeneralName]) -> BTreeSet<String> {
    candidates(subject, sans)
        .into_iter()
        .map(|c| c.key)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A subject of one CN, as a UTF8String.
fn cn_name(cn: &str) -> Result<Name, PolicyError> {
    let enc = |e: der::Error| PolicyError::Encoding(e.to_string());
    let value = Any::encode_from(&der::asn1::Utf8StringRef::new(cn).map_err(enc)?).map_err(enc)?;
    let mut rdn = RelativeDistinguishedName::default();
    rdn.insert(AttributeTypeAndValue {
        oid: rfc4519::CN,
        value,
    })
    .map_err(enc)?;
    let mut seq = RdnSequence::default();
    seq.push(rdn);
    Name::from_der(&seq.to_der().map_err(enc)?).map_err(enc)
}

/// RFC 7030 §4.2.2 without rules: a re-enrollment keeps the subject and
/// subjectAltName of the certificate being renewed, byte for byte.
fn same_identity(csr: &VerifiedCsr, cert: &Certificate) -> Result<(), PolicyError> {
    let tbs = cert.tbs_certificate();
    if csr.subject.to_der().ok() != tbs.subject().to_der().ok() {
        return Err(PolicyError::Refused(format!(
            "re-enrollment must keep the subject: the certificate has {:?}, the CSR {:?}",
            tbs.subject().to_string(),
            csr.subject.to_string()
        )));
    }
    let der_set = |names: &[GeneralName]| {
        let mut v: Vec<Vec<u8>> = names.iter().filter_map(|g| g.to_der().ok()).collect();
        v.sort();
        v
    };
    if der_set(&sans_of(cert)) != der_set(&csr.sans) {
        return Err(PolicyError::Refused(
            "re-enrollment must keep the subjectAltName of the certificate being renewed".into(),
        ));
    }
    Ok(())
}

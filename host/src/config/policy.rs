//! `[ca.policy]`: the rules as written in the configuration. They are
//! compiled (patterns parsed, CIDRs read) by `policy::NamePolicy::new` when
//! `kipuka serve` or `kipuka check` starts: a bad rule stops it, naming the
//! CA and the rule.

use serde::{Deserialize, Serialize};

/// `[ca.policy]`: which names this CA issues, and to whom.
///
/// Patterns follow RFC 5280 name constraints (§4.2.1.10): a DNS pattern
/// `example.com` matches that name and every name below it, `.example.com`
/// only the names below it; an e-mail pattern is a mailbox
/// (`ops@example.com`), a host (`example.com`: every mailbox there) or
/// `.example.com` (every mailbox on a host below it); a URI pattern is the
/// URI's host (`example.com`) or `.example.com`. A CN pattern is the whole
/// CN, where `*` stands for one DNS label (1 to 63 letters, digits and
/// dashes: no dots). Patterns may name who is asking: `{user}` (the HTTP
/// Basic user or the enrollment code's name), `{client.subject.cn}`,
/// `{client.subject.serialNumber}` and `{client.san.dns}` (of the TLS client
/// certificate); a pattern whose value is missing for a request matches
/// nothing. Names are compared without regard to ASCII case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// `"enforce"` (default): a request with any name the rules do not
    /// allow is refused (403, naming the name and the rule). `"rewrite"`:
    /// the certificate gets only the allowed names, and the answer's
    /// `Kipuka-Policy-Dropped` header lists the others.
    pub mode: PolicyMode,
    /// The subject's CN. Other subject attributes are never issued.
    pub allow_cn: Vec<String>,
    /// dNSName subjectAltNames.
    pub allow_dns: Vec<String>,
    /// dNSNames refused even when `allow_dns` matches.
    pub deny_dns: Vec<String>,
    /// iPAddress subjectAltNames: CIDR blocks (`10.20.0.0/16`, `fd00::/8`) or
    /// single addresses.
    pub allow_ip: Vec<String>,
    /// rfc822Name (e-mail) subjectAltNames.
    pub allow_email: Vec<String>,
    /// uniformResourceIdentifier subjectAltNames, by host.
    pub allow_uri: Vec<String>,
    /// Whether a requested dNSName may be a wildcard (`*.devices.example`).
    /// Default false.
    pub allow_wildcards: bool,
}

/// What happens to a name no rule allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Refuse the request.
    #[default]
    Enforce,
    /// Leave the name out of the certificate.
    Rewrite,
}

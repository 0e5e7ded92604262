//! RFC 5280 §4.2.1.10 name-constraint matching, and the syntax checks a
//! requested name must pass before it is compared at all.
//!
//! Requested names are checked strictly: ASCII only (an IA5String cannot
//! carry anything else, and a Unicode look-alike of an allowed name must not
//! pass as it), no empty labels, no trailing dot (`example.com.` is a
//! different string to most verifiers), labels of letters, digits and
//! dashes (and `*` as a whole leftmost label, judged by `allow_wildcards`).

use std::net::IpAddr;

use super::pattern::Atom;

/// Why a DNS name is malformed, or None.
pub(crate) fn dns_syntax_error(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if !name.is_ascii() {
        return Some("not ASCII (IDNs must be requested as xn-- labels)");
    }
    if name.len() > 253 {
        return Some("longer than 253 characters");
    }
    if name.ends_with('.') {
        return Some("a trailing dot");
    }
    for (i, label) in name.split('.').enumerate() {
        if label.is_empty() {
            return Some("an empty label");
        }
        if label == "*" && i == 0 {
            continue;
        }
        if label.len() > 63 {
            return Some("a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Some(if label.contains('*') {
                "a '*' that is not a whole leftmost label"
            } else {
                "a character other than letters, digits, '-' and '.'"
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a label that starts or ends with '-'");
        }
    }
    None
}

/// Whether `name` (syntax-checked) satisfies the DNS constraint `c`:
/// `.example.com` matches the names below example.com; `example.com`
/// matches it and the names below it.
pub(crate) fn dns_matches(c: &str, name: &str) -> bool {
    let (c, name) = (c.to_ascii_lowercase(), name.to_ascii_lowercase());
    if c.starts_with('.') {
        name.len() > c.len() && name.ends_with(&c)
    } else {
        name == c || name.ends_with(&format!(".{c}"))
    }
}

/// Whether the DNS constraint `c` (from the configuration, after
/// templates) is well-formed: an optional leading dot, then a DNS name
/// without wildcards.
pub(crate) fn dns_constraint_ok(c: &str) -> bool {
    let bare = c.strip_prefix('.').unwrap_or(c);
    !bare.contains('*') && dns_syntax_error(bare).is_none()
}

/// Splits an e-mail address into (local part, domain), or says why it is
/// malformed.
pub(crate) fn split_email(addr: &str) -> Result<(&str, &str), &'static str> {
    if !addr.is_ascii() {
        return Err("not ASCII");
    }
    let (local, domain) = addr.rsplit_once('@').ok_or("no '@'")?;
    if local.is_empty() || local.contains('@') {
        return Err("not exactly one mailbox");
    }
    if local.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("control characters or spaces in the local part");
    }
    if let Some(why) = dns_syntax_error(domain) {
        return Err(why);
    }
    if domain.contains('*') {
        return Err("a wildcard domain");
    }
    Ok((local, domain))
}

/// Whether the address satisfies the e-mail constraint `c`: a mailbox
/// (`ops@example.com`), a host (`example.com`) or `.example.com`.
pub(crate) fn email_matches(c: &str, local: &str, domain: &str) -> bool {
    match c.rsplit_once('@') {
        Some((c_local, c_domain)) => c_local == local && c_domain.eq_ignore_ascii_case(domain),
        None if c.starts_with('.') => dns_matches(c, domain),
        None => c.eq_ignore_ascii_case(domain),
    }
}

/// The host of an absolute URI (`scheme://[user@]host[:port]/...`), or why
/// there is none. IP literals are refused: RFC 5280 constrains URIs by
/// host name only.
pub(crate) fn uri_host(uri: &str) -> Result<&str, &'static str> {
    if !uri.is_ascii() {
        return Err("not ASCII");
    }
    if uri.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("control characters or spaces");
    }
    let (scheme, rest) = uri.split_once("://").ok_or("no scheme://authority")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err("a malformed scheme");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return Err("an IP literal host");
    }
    let host = host_port.split_once(':').map_or(host_port, |(h, _)| h);
    if host.parse::<IpAddr>().is_ok() {
        return Err("an IP address host");
    }
    if let Some(why) = dns_syntax_error(host) {
        return Err(why);
    }
    if host.contains('*') {
        return Err("a wildcard host");
    }
    Ok(host)
}

/// Whether the URI host satisfies the constraint `c`: `.example.com`
/// (hosts below it) or `example.com` (that host only, RFC 5280).
pub(crate) fn uri_matches(c: &str, host: &str) -> bool {
    if c.starts_with('.') {
        dns_matches(c, host)
    } else {
        c.eq_ignore_ascii_case(host)
    }
}

/// An address block: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        let cidr = Cidr { net, prefix };
        if !cidr.contains(net) || cidr.masked(net) != bits(net) {
            return Err(format!("{text:?} has bits set after the prefix"));
        }
        Ok(cidr)
    }

    fn masked(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let b = bits(ip);
        if self.prefix == 0 {
            0
        } else {
            b & (u128::MAX << (width - u32::from(self.prefix)))
                & if width == 32 {
                    u128::from(u32::MAX)
                } else {
                    u128::MAX
                }
        }
    }

    /// Whether `ip` is in the block (same address family only: an
    /// IPv4-mapped IPv6 address is not in an IPv4 block).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.net.is_ipv4() && self.masked(ip) == self.masked(self.net)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Why a CN cannot be issued at all, or None.
pub(crate) fn cn_syntax_error(cn: &str) -> Option<&'static str> {
    if cn.is_empty() {
        return Some("empty");
    }
    if cn.chars().count() > 64 {
        return Some("longer than 64 characters (RFC 5280 ub-common-name)");
    }
    if cn.chars().any(char::is_control) {
        return Some("control characters");
    }
    None
}

/// Whether `cn` matches the expanded CN pattern `atoms` (`*`: one DNS label).
pub(crate) fn cn_matches(atoms: &[Atom], cn: &str) -> bool {
    match atoms.split_first() {
        None => cn.is_empty(),
        Some((Atom::Lit(lit), rest)) => {
            cn.get(..lit.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(lit))
                && cn_matches(rest, &cn[lit.len()..])
        }
        Some((Atom::Star, rest)) => {
            let run = cn
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-')
                .count()
                .min(63);
            (1..=run).any(|n| cn_matches(rest, &cn[n..]))
        }
    }
}

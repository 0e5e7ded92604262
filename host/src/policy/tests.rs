//! Matching rules on hand-made names (the end-to-end table with curl and
//! OpenSSL is `tests/tests/name_policy.rs`).

use std::str::FromStr;

use der::asn1::{Ia5String, OctetString};
use x509_cert::{ext::pkix::name::GeneralName, name::Name};

use super::*;
use crate::ca::csr::{tests::p256_csr, verify_csr};

fn policy(toml: &str) -> NamePolicy {
    let config: PolicyConfig = toml::from_str(toml).unwrap();
    NamePolicy::new("ec", Some(&config), true).unwrap()
}

const DEMO: &str = r#"
allow_cn = ["*", "{user}"]
allow_dns = ["devices.kipuka.test", "{user}.users.kipuka.test"]
deny_dns = ["admin.devices.kipuka.test"]
allow_ip = ["10.20.0.0/16", "fd00::/8"]
allow_email = ["ops@kipuka.test", ".mail.kipuka.test"]
allow_uri = [".devices.kipuka.test"]
"#;

fn dns(s: &str) -> GeneralName {
    GeneralName::DnsName(Ia5String::new(s).unwrap())
}

fn csr_with(subject: &str, sans: Vec<GeneralName>) -> VerifiedCsr {
    let mut csr = verify_csr(&p256_csr()).unwrap();
    csr.subject = if subject.is_empty() {
        Name::default()
    } else {
        Name::from_str(subject).unwrap()
    };
    csr.sans = sans;
    csr
}

fn decide(p: &NamePolicy, subject: &str, sans: Vec<GeneralName>) -> Result<ApprovedNames, String> {
    p.decide(&csr_with(subject, sans), &Requester::user("alice"), None)
        .map_err(|e| e.to_string())
}

#[test]
fn dns_constraints_follow_rfc_5280() {
    use matching::dns_matches;
    assert!(dns_matches("example.com", "example.com"));
    assert!(dns_matches("example.com", "a.b.EXAMPLE.com"));
    assert!(!dns_matches("example.com", "badexample.com"));
    assert!(!dns_matches(".example.com", "example.com"));
    assert!(dns_matches(".example.com", "a.example.com"));
    assert!(!dns_matches("example.com", "example.com.evil"));
}

#[test]
fn malformed_dns_names_are_named() {
    use matching::dns_syntax_error as e;
    assert_eq!(e("a.example.com"), None);
    assert_eq!(e("*.example.com"), None);
    assert!(e("a.example.com.").unwrap().contains("trailing dot"));
    assert!(e("a..example.com").unwrap().contains("empty label"));
    assert!(e("a*.example.com").unwrap().contains("'*'"));
    assert!(e("a.*.example.com").unwrap().contains("'*'"));
    assert!(e("bad\0.example.com").is_some());
    assert!(e("a_b.example.com").is_some());
    assert!(e("-a.example.com").is_some());
    assert!(e("dévices.kipuka.test").unwrap().contains("ASCII"));
    assert!(e(&format!("{}.example.com", "a".repeat(64))).is_some());
}

#[test]
fn cidrs_match_their_family_only() {
    let c = matching::Cidr::parse("10.20.0.0/16").unwrap();
    assert!(c.contains("10.20.255.1".parse().unwrap()));
    assert!(!c.contains("10.21.0.1".parse().unwrap()));
    assert!(!c.contains("::ffff:10.20.0.1".parse().unwrap()));
    assert!(matching::Cidr::parse("10.20.0.1/16").is_err());
    assert!(matching::Cidr::parse("10.0.0.0/33").is_err());
    let one = matching::Cidr::parse("192.0.2.7").unwrap();
    assert!(one.contains("192.0.2.7".parse().unwrap()));
    assert!(!one.contains("192.0.2.8".parse().unwrap()));
    let v6 = matching::Cidr::parse("fd00::/8").unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
    assert!(!v6.contains("fe80::1".parse().unwrap()));
    assert!(matching::Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("8.8.8.8".parse().unwrap()));
}

#[test]
fn emails_and_uris() {
    use matching::*;
    let (l, d) = split_email("ops@kipuka.test").unwrap();
    assert!(email_matches("ops@kipuka.test", l, d));
    assert!(!email_matches("root@kipuka.test", l, d));
    assert!(email_matches("KIPUKA.test", l, d));
    assert!(!email_matches(".kipuka.test", l, d));
    assert!(split_email("a@b@kipuka.test").is_err());
    assert_eq!(
        uri_host("https://user@x.kipuka.test:8443/p?q").unwrap(),
        "x.kipuka.test"
    );
    assert_eq!(
        uri_host("https://x.kipuka.test@evil.example/").unwrap(),
        "evil.example"
    );
    assert!(uri_host("https://[::1]/").is_err());
    assert!(uri_host("https://10.0.0.1/").is_err());
    assert!(uri_host("urn:uuid:1234").is_err());
    assert!(uri_matches(".kipuka.test", "x.kipuka.test"));
    assert!(!uri_matches("kipuka.test", "x.kipuka.test"));
}

#[test]
fn cn_stars_are_one_label() {
    let p = pattern::Pattern::parse("*", true).unwrap();
    let forms = p.expand(&Requester::default());
    assert!(matching::cn_matches(&forms[0], "device-42"));
    assert!(!matching::cn_matches(&forms[0], "www.bank.example"));
    assert!(!matching::cn_matches(&forms[0], ""));
    assert!(!matching::cn_matches(&forms[0], "dev ice"));
    let p = pattern::Pattern::parse("*.devices.kipuka.test", true).unwrap();
    let forms = p.expand(&Requester::default());
    assert!(matching::cn_matches(&forms[0], "d1.devices.kipuka.test"));
    assert!(!matching::cn_matches(&forms[0], "a.b.devices.kipuka.test"));
}

#[test]
fn templates_insert_values_literally_or_not_at_all() {
    let p = pattern::Pattern::parse("{user}.users.kipuka.test", false).unwrap();
    assert_eq!(
        p.expand_text(&Requester::user("alice")),
        vec!["alice.users.kipuka.test"]
    );
    // An empty, dotted or starred value would widen the rule: it matches nothing.
    for bad in ["", ".evil", "a*", "x.", "a\0b"] {
        assert!(p.expand_text(&Requester::user(bad)).is_empty(), "{bad:?}");
    }
    let p = pattern::Pattern::parse("{client.san.dns}", false).unwrap();
    let who = Requester {
        client_dns: vec!["a.example".into(), "b.example".into()],
        ..Requester::default()
    };
    assert_eq!(p.expand_text(&who), vec!["a.example", "b.example"]);
    assert!(pattern::Pattern::parse("{nobody}", false).is_err());
    assert!(pattern::Pattern::parse("*.example.com", false).is_err());
    assert!(pattern::Pattern::parse("{user", false).is_err());
}

#[test]
fn bad_rules_are_refused_at_start_up() {
    for bad in [
        r#"allow_dns = ["*.example.com"]"#,
        r#"allow_dns = ["a..b"]"#,
        r#"allow_ip = ["10.0.0.0/40"]"#,
        r#"allow_cn = ["{who}"]"#,
        r#"deny_dns = [""]"#,
    ] {
        let config: PolicyConfig = toml::from_str(bad).unwrap();
        let err = NamePolicy::new("ec", Some(&config), true).unwrap_err();
        assert!(matches!(err, PolicyError::Config { .. }), "{bad}: {err}");
    }
}

#[test]
fn enforce_names_the_refused_name_and_rule() {
    let p = policy(DEMO);
    let ok = decide(
        &p,
        "CN=device-42",
        vec![dns("device-42.devices.kipuka.test")],
    )
    .unwrap();
    assert_eq!(ok.subject().to_string(), "CN=device-42");
    assert_eq!(ok.sans().len(), 1);
    let err = decide(
        &p,
        "CN=www.bank.example",
        vec![dns("www.bank.example"), dns("*.example.com")],
    )
    .unwrap_err();
    assert!(
        err.contains("name CN=www.bank.example not allowed by ca \"ec\" policy allow_cn"),
        "{err}"
    );
    assert!(
        err.contains("name DNS:*.example.com not allowed by ca \"ec\" policy allow_dns"),
        "{err}"
    );
    let err = decide(&p, "CN=d", vec![dns("admin.devices.kipuka.test")]).unwrap_err();
    assert!(err.contains("policy deny_dns"), "{err}");
    let err = decide(&p, "CN=d", vec![dns("*.x.devices.kipuka.test")]).unwrap_err();
    assert!(err.contains("policy allow_wildcards"), "{err}");
    let err = decide(&p, "CN=d,O=Bank", vec![]).unwrap_err();
    assert!(err.contains("name O=Bank not allowed"), "{err}");
    // {user}: alice may have her own name, not bob's.
    assert!(decide(&p, "CN=alice", vec![dns("alice.users.kipuka.test")]).is_ok());
    let err = decide(&p, "CN=d", vec![dns("bob.users.kipuka.test")]).unwrap_err();
    assert!(err.contains("allow_dns"), "{err}");
    let ip = |b: &[u8]| GeneralName::IpAddress(OctetString::new(b).unwrap());
    assert!(decide(&p, "CN=d", vec![ip(&[10, 20, 1, 2])]).is_ok());
    let err = decide(&p, "CN=d", vec![ip(&[10, 21, 1, 2])]).unwrap_err();
    assert!(err.contains("IP Address:10.21.1.2 not allowed by ca \"ec\" policy allow_ip"));
    assert!(decide(&p, "CN=d", vec![ip(&[10, 20, 0, 0, 255, 255, 0, 0])]).is_err());
}

#[test]
fn a_wildcard_over_a_denied_name_is_denied() {
    let p = policy(
        r#"
allow_dns = ["devices.kipuka.test"]
deny_dns = ["admin.devices.kipuka.test"]
allow_wildcards = true
"#,
    );
    assert!(decide(&p, "", vec![dns("*.x.devices.kipuka.test")]).is_ok());
    let err = decide(&p, "", vec![dns("*.devices.kipuka.test")]).unwrap_err();
    assert!(err.contains("deny_dns"), "{err}");
}

#[test]
fn rewrite_keeps_the_allowed_names_and_lists_the_rest() {
    let p = policy(&format!("mode = \"rewrite\"\n{DEMO}"));
    let ok = decide(
        &p,
        "CN=www.bank.example,O=Bank",
        vec![dns("d1.devices.kipuka.test"), dns("*.example.com")],
    )
    .unwrap();
    assert!(ok.subject().is_empty());
    assert_eq!(ok.sans(), &[dns("d1.devices.kipuka.test")]);
    let dropped = ok.dropped();
    assert_eq!(dropped.len(), 3, "{dropped:?}");
    for d in [
        "CN=www.bank.example (allow_cn)",
        "O=Bank (allow_cn)",
        "DNS:*.example.com (allow_dns)",
    ] {
        assert!(dropped.iter().any(|x| x == d), "{d} not in {dropped:?}");
    }
    // Nothing left: refused, naming what was left out.
    let err = decide(&p, "CN=www.bank.example", vec![]).unwrap_err();
    assert!(err.contains("no requested name is allowed"), "{err}");
}

#[test]
fn without_rules_the_request_is_issued_as_before() {
    let p = NamePolicy::new("ec", None, true).unwrap();
    assert!(!p.is_restricted());
    let ok = decide(&p, "CN=www.bank.example", vec![dns("*.example.com")]).unwrap();
    assert_eq!(ok.subject().to_string(), "CN=www.bank.example");
    assert_eq!(ok.sans().len(), 1);
    let no_sans = NamePolicy::new("ec", None, false).unwrap();
    assert!(decide(&no_sans, "CN=a", vec![dns("a.example")])
        .unwrap()
        .sans()
        .is_empty());
    assert!(decide(&no_sans, "", vec![dns("a.example")]).is_err());
}

#[test]
fn escaped_names_are_printable() {
    assert_eq!(shown("a\0b\u{430}"), "a\\u{0}b\\u{430}");
}

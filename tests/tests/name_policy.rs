//! `[ca.policy]` end to end: `kipuka serve` on SoftHSM2, CSRs made by the
//! OpenSSL command line, sent by curl, and every issued certificate read
//! back and verified by OpenSSL.
//!
//! CA `dev` enforces the policy below (the demo's, plus IP, e-mail and URI
//! rules); CA `rw` applies the same rules in rewrite mode. A table of
//! hostile requests must each be refused with 403 naming the rule that
//! refused it; in rewrite mode the certificate carries only the allowed
//! names and `Kipuka-Policy-Dropped` lists the others.

use std::path::PathBuf;

use kipuka_tests::{
    est_client::Answer,
    est_server::{openssl, run, EstOptions, EstServer},
    tokens::TokenKind,
};

const P256: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

const RULES: &str = r#"
allow_cn = ["*", "{user}"]
allow_dns = [".devices.kipuka.test", "{user}.users.kipuka.test"]
deny_dns = ["admin.devices.kipuka.test"]
allow_ip = ["10.20.0.0/16"]
allow_email = ["ops@kipuka.test"]
allow_uri = [".devices.kipuka.test"]
"#;

fn ca_block(id: &str, mode: &str) -> String {
    format!(
        r#"
[[ca]]
id = "{id}"
cert = "{{dir}}/ca/{id}.pem"
key = "pkcs11:token={{label}};object=ec-ca-key"
[ca.profile]
allowed_keys = ["ec:P-256"]
[ca.policy]
mode = "{mode}"
{RULES}
"#
    )
}

/// A server with CA `dev` (enforce) and CA `rw` (rewrite).
fn server() -> EstServer {
    let mut s = EstServer::start_opts(
        TokenKind::SoftHsm2,
        EstOptions {
            extra_ca: Some(("dev".into(), ca_block("dev", "enforce"))),
            no_launch: true,
            ..EstOptions::default()
        },
    );
    let config = std::fs::read_to_string(&s.config).unwrap();
    let rw = ca_block("rw", "rewrite")
        .replace("{dir}", &s.dir.display().to_string())
        .replace("{label}", &s.token.label);
    std::fs::write(&s.config, format!("{config}\n{rw}")).unwrap();
    run(s
        .kipuka()
        .args(["ca", "init", "--config"])
        .arg(&s.config)
        .args([
            "--ca",
            "rw",
            "--subject",
            "CN=kipuka test rewrite CA",
            "--days",
            "60",
        ]));
    s.launch();
    s
}

/// DER hex of a subjectAltName value holding one dNSName of raw bytes
/// (OpenSSL's `-addext` cannot write a NUL byte).
fn san_der_dns(raw: &[u8]) -> String {
    let mut der = vec![0x30, (raw.len() + 2) as u8, 0x82, raw.len() as u8];
    der.extend_from_slice(raw);
    der.iter().map(|b| format!("{b:02x}")).collect()
}

/// One hostile request: OpenSSL `req` arguments after the key, and the
/// text the refusal must contain.
struct Case {
    name: &'static str,
    args: Vec<String>,
    expect: &'static str,
}

fn case(name: &'static str, subject: &str, san: Option<&str>, expect: &'static str) -> Case {
    let mut args = vec!["-subj".to_string(), subject.to_string()];
    if let Some(san) = san {
        args.extend(["-addext".to_string(), format!("subjectAltName={san}")]);
    }
    Case { name, args, expect }
}

fn hostile(printable_cnf: &str) -> Vec<Case> {
    let nul = san_der_dns(b"bad\0.devices.kipuka.test");
    let long = format!("DNS:{}.devices.kipuka.test", "a".repeat(64));
    let mut cases = vec![
        case("foreign domain", "/CN=d1", Some("DNS:www.bank.example"), "name DNS:www.bank.example not allowed by ca \"dev\" policy allow_dns"),
        case("issue example", "/CN=www.bank.example", Some("DNS:www.bank.example,DNS:*.example.com"), "name DNS:*.example.com not allowed by ca \"dev\" policy allow_dns"),
        case("cn like a dns name", "/CN=www.bank.example", None, "name CN=www.bank.example not allowed by ca \"dev\" policy allow_cn"),
        case("wildcard under the allowed domain", "/CN=d1", Some("DNS:*.x.devices.kipuka.test"), "name DNS:*.x.devices.kipuka.test not allowed by ca \"dev\" policy allow_wildcards"),
        case("wildcard over a denied name", "/CN=d1", Some("DNS:*.devices.kipuka.test"), "policy deny_dns"),
        case("suffix trick", "/CN=d1", Some("DNS:d1.devices.kipuka.test.bank.example"), "policy allow_dns"),
        case("prefix trick", "/CN=d1", Some("DNS:evildevices.kipuka.test"), "policy allow_dns"),
        case("the bare domain (leading-dot rule)", "/CN=d1", Some("DNS:devices.kipuka.test"), "policy allow_dns"),
        case("trailing dot", "/CN=d1", Some("DNS:d1.devices.kipuka.test."), "policy allow_dns (a trailing dot)"),
        case("upper case foreign", "/CN=d1", Some("DNS:WWW.BANK.EXAMPLE"), "name DNS:WWW.BANK.EXAMPLE not allowed"),
        case("punycode foreign", "/CN=d1", Some("DNS:xn--bnk-sna.example"), "policy allow_dns"),
        case("empty label", "/CN=d1", Some("DNS:d1..devices.kipuka.test"), "(an empty label)"),
        case("underscore", "/CN=d1", Some("DNS:d_1.devices.kipuka.test"), "policy allow_dns (a character other"),
        case("overlong label", "/CN=d1", Some(long.as_str()), "label longer than 63"),
        case("denied name", "/CN=d1", Some("DNS:admin.devices.kipuka.test"), "policy deny_dns"),
        case("another user's name", "/CN=d1", Some("DNS:bob.users.kipuka.test"), "name DNS:bob.users.kipuka.test not allowed by ca \"dev\" policy allow_dns"),
        case("ip outside the range", "/CN=d1", Some("IP:10.21.0.1"), "name IP Address:10.21.0.1 not allowed by ca \"dev\" policy allow_ip"),
        case("ipv4-mapped ipv6", "/CN=d1", Some("IP:::ffff:10.20.0.1"), "policy allow_ip"),
        case("ipv6", "/CN=d1", Some("IP:fe80::1"), "policy allow_ip"),
        case("foreign e-mail", "/CN=d1", Some("email:root@bank.example"), "name email:root@bank.example not allowed by ca \"dev\" policy allow_email"),
        case("e-mail on a subdomain", "/CN=d1", Some("email:ops@x.kipuka.test"), "policy allow_email"),
        case("foreign uri", "/CN=d1", Some("URI:https://bank.example/"), "policy allow_uri"),
        case("uri userinfo trick", "/CN=d1", Some("URI:https://d1.devices.kipuka.test@bank.example/"), "policy allow_uri"),
        case("uri ip literal", "/CN=d1", Some("URI:https://10.20.0.1/"), "policy allow_uri (an IP address host)"),
        case("otherName", "/CN=d1", Some("otherName:1.3.6.1.4.1.311.20.2.3;UTF8:admin@bank.example"), "only DNS, IP, e-mail and URI"),
        case("directoryName", "/CN=d1", Some("dirName:dir_sect"), "only DNS, IP, e-mail and URI"),
        case("extra subject attribute", "/CN=d1/O=Bank of Example", None, "name O=Bank of Example not allowed by ca \"dev\" policy allow_cn (only the CN is issued"),
        case("two CNs", "/CN=d1/CN=www.bank.example", None, "policy allow_cn"),
        case("unicode look-alike cn", "/CN=d\u{435}vice-1", None, "policy allow_cn"),
        case("critical san, foreign name", "/CN=d1", Some("critical,DNS:www.bank.example"), "name DNS:www.bank.example not allowed"),
    ];
    cases.push(Case {
        name: "nul byte in a dns name",
        args: vec![
            "-subj".into(),
            "/CN=d1".into(),
            "-addext".into(),
            format!("subjectAltName=DER:{nul}"),
        ],
        expect: "name DNS:bad\\u{0}.devices.kipuka.test not allowed",
    });
    cases.push(Case {
        name: "printablestring cn like a dns name",
        args: vec![
            "-config".into(),
            printable_cnf.into(),
            "-subj".into(),
            "/CN=www.bank.example".into(),
        ],
        expect: "name CN=www.bank.example not allowed by ca \"dev\" policy allow_cn",
    });
    cases
}

fn post(s: &EstServer, label: &str, op: &str, csr: &std::path::Path) -> Answer {
    s.post_csr_basic(Some(label), op, csr)
}

/// The issued certificate's `openssl x509 -text`, after `openssl verify`.
fn issued_text(s: &EstServer, answer: &Answer, ca: &str, name: &str) -> String {
    let leaf = s.pkcs7_to_pem(answer, name);
    let chain = s.pkcs7_to_pem(&s.curl(&[&s.url(Some(ca), "cacerts")]), &format!("{ca}-ca"));
    s.verify(&chain, &leaf).unwrap();
    let out = run(openssl()
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&leaf));
    String::from_utf8(out.stdout).unwrap()
}

/// OpenSSL `req` configurations: UTF8String names (and the directoryName
/// section), and PrintableString names (`string_mask = default`).
fn req_configs(s: &EstServer) -> (PathBuf, PathBuf) {
    let write = |name: &str, mask: &str| {
        let cnf = s.dir.join(name);
        std::fs::write(
            &cnf,
            format!(
                "[req]\ndistinguished_name = dn\nstring_mask = {mask}\n[dn]\n\
                 [dir_sect]\nCN = www.bank.example\n"
            ),
        )
        .unwrap();
        cnf
    };
    (
        write("utf8.cnf", "utf8only"),
        write("printable.cnf", "default"),
    )
}

#[test]
fn hostile_names_are_refused_by_a_named_rule() {
    let s = server();
    let (utf8, printable) = req_configs(&s);
    let cases = hostile(printable.to_str().unwrap());
    assert!(cases.len() >= 25);
    for (i, c) in cases.iter().enumerate() {
        let mut args: Vec<&str> = P256.to_vec();
        // -utf8: the look-alike CN's bytes are read as UTF-8.
        args.push("-utf8");
        if !c.args.iter().any(|a| a == "-config") {
            args.extend(["-config", utf8.to_str().unwrap()]);
        }
        args.extend(c.args.iter().map(String::as_str));
        let (csr, _) = s.csr_args(&format!("hostile-{i}"), &args);
        let answer = post(&s, "dev", "simpleenroll", &csr);
        assert_eq!(answer.status, 403, "{}: {}", c.name, answer.text());
        assert!(
            answer.text().contains(c.expect),
            "{}: expected {:?} in {:?}",
            c.name,
            c.expect,
            answer.text()
        );
    }

    // The allowed names are issued, and OpenSSL reads them back.
    let (csr, _) = s.csr(
        "device-42",
        &P256,
        "/CN=device-42",
        Some("DNS:device-42.devices.kipuka.test,DNS:alice.users.kipuka.test,IP:10.20.3.4,email:ops@kipuka.test,URI:https://device-42.devices.kipuka.test/id"),
    );
    let ok = post(&s, "dev", "simpleenroll", &csr);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("kipuka-policy-dropped"), None);
    let text = issued_text(&s, &ok, "dev", "device-42");
    assert!(text.contains("Subject: CN=device-42\n"), "{text}");
    for name in [
        "DNS:device-42.devices.kipuka.test",
        "DNS:alice.users.kipuka.test",
        "IP Address:10.20.3.4",
        "email:ops@kipuka.test",
        "URI:https://device-42.devices.kipuka.test/id",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    // {user} in allow_cn: alice may be CN=alice. A critical SAN with an
    // allowed name is fine too.
    let (csr, _) = s.csr(
        "alice",
        &P256,
        "/CN=alice",
        Some("critical,DNS:d7.devices.kipuka.test"),
    );
    let ok = post(&s, "dev", "simpleenroll", &csr);
    assert_eq!(ok.status, 200, "{}", ok.text());

    // /serverkeygen consults the same policy, before any key is made.
    let (csr, _) = s.csr("keygen", &P256, "/CN=www.bank.example", None);
    let refused = post(&s, "dev", "serverkeygen", &csr);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("policy allow_cn"),
        "{}",
        refused.text()
    );

    // A CA without [ca.policy] still issues what is asked (documented).
    let (csr, _) = s.csr(
        "free",
        &P256,
        "/CN=www.bank.example",
        Some("DNS:*.example.com"),
    );
    assert_eq!(post(&s, "ec", "simpleenroll", &csr).status, 200);
}

#[test]
fn rewrite_issues_only_allowed_names_and_renewal_keeps_them() {
    let s = server();
    let (csr, _) = s.csr(
        "mixed",
        &P256,
        "/CN=www.bank.example/O=Bank",
        Some("DNS:d9.devices.kipuka.test,DNS:*.example.com,IP:192.0.2.1"),
    );
    let ok = post(&s, "rw", "simpleenroll", &csr);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let dropped = ok.header("kipuka-policy-dropped").unwrap_or("").to_string();
    for d in [
        "CN=www.bank.example (allow_cn)",
        "O=Bank (allow_cn)",
        "DNS:*.example.com (allow_dns)",
        "IP Address:192.0.2.1 (allow_ip)",
    ] {
        assert!(dropped.contains(d), "{d} not in {dropped:?}");
    }
    let text = issued_text(&s, &ok, "rw", "mixed");
    assert!(text.contains("DNS:d9.devices.kipuka.test"), "{text}");
    assert!(!text.contains("example.com"), "{text}");
    assert!(!text.contains("Bank"), "{text}");
    assert!(!text.contains("192.0.2.1"), "{text}");
    // Nothing allowed: refused even in rewrite mode.
    let (csr, _) = s.csr("nothing", &P256, "/CN=www.bank.example", None);
    let refused = post(&s, "rw", "simpleenroll", &csr);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("no requested name is allowed"));

    // Renewal with the enforcing CA: same names pass, a new allowed name
    // passes, a new foreign name is refused naming the rule.
    let (csr, key) = s.csr(
        "renew-me",
        &P256,
        "/CN=r1",
        Some("DNS:r1.devices.kipuka.test"),
    );
    let first = post(&s, "dev", "simpleenroll", &csr);
    assert_eq!(first.status, 200, "{}", first.text());
    let cert = s.pkcs7_to_pem(&first, "renew-me");
    let reenroll = |name: &str, subject: &str, san: &str| {
        let (csr, _) = s.csr(name, &P256, subject, Some(san));
        let (cert, key, csr) = (
            cert.display().to_string(),
            key.display().to_string(),
            format!("@{}", csr.display()),
        );
        s.curl(&[
            "--cert",
            &cert,
            "--key",
            &key,
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &csr,
            &s.url(Some("dev"), "simplereenroll"),
        ])
    };
    let same = reenroll("renew-same", "/CN=r1", "DNS:r1.devices.kipuka.test");
    assert_eq!(same.status, 200, "{}", same.text());
    let added = reenroll(
        "renew-added",
        "/CN=r1",
        "DNS:r1.devices.kipuka.test,DNS:r1b.devices.kipuka.test",
    );
    assert_eq!(added.status, 200, "{}", added.text());
    let foreign = reenroll(
        "renew-foreign",
        "/CN=r1",
        "DNS:r1.devices.kipuka.test,DNS:www.bank.example",
    );
    assert_eq!(foreign.status, 403, "{}", foreign.text());
    assert!(
        foreign.text().contains(
            "name DNS:www.bank.example not allowed by ca \"dev\" policy allow_dns (it is not in \
             the certificate being renewed)"
        ),
        "{}",
        foreign.text()
    );
}

//! `[[ca]] client_issuers` end to end: `kipuka serve` on a SoftHSM2 token,
//! curl presenting client certificates made by the OpenSSL command line,
//! and every issued certificate checked by `openssl verify` against the
//! chain its CA publishes at `/cacerts`.
//!
//! The client PKI, all of it trusted by the TLS layer (`[server] client_ca`):
//! - A, "Fleet A IDevID CA" (P-256): the manufacturer CA of fleet A;
//! - A', another "Fleet A IDevID CA" with its own key (as after a key
//!   rollover): same issuer name, different signer;
//! - B, "Fleet B IDevID CA" (RSA-2048): the manufacturer CA of fleet B.
//!
//! The CAs: `only-a` lists A; `only-b` lists B and its own certificate (so
//! that what it issues can re-enroll); `ec` lists nothing (today's
//! behaviour: any certificate that passed TLS).

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use kipuka_tests::{
    est_server::{openssl, run, EstOptions, EstServer, PASSWORD, USER},
    tokens::TokenKind,
};

/// A client certificate and its key (PEM files).
struct Client {
    cert: PathBuf,
    key: PathBuf,
}

/// The client PKI, made by OpenSSL in its own folder.
struct Pki {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let tmp = tempfile::Builder::new()
            .prefix("kipuka-client-pki-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let pki = Pki { _tmp: tmp, dir };
        pki.issuer("a", "/CN=Fleet A IDevID CA", EC);
        pki.issuer("a-rollover", "/CN=Fleet A IDevID CA", EC);
        pki.issuer("b", "/CN=Fleet B IDevID CA", &["-newkey", "rsa:2048"]);
        // Not in [server] client_ca: nothing it issues passes TLS.
        pki.issuer("unanchored", "/CN=Unanchored CA", EC);
        pki
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A self-signed CA certificate `NAME.pem` and its key `NAME.key`.
    fn issuer(&self, name: &str, subject: &str, key_args: &[&str]) {
        run(openssl()
            .args(["req", "-x509", "-nodes", "-days", "30", "-subj", subject])
            .args(key_args)
            .args([
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
            ])
            .arg(self.path(&format!("{name}.key")))
            .arg("-out")
            .arg(self.path(&format!("{name}.pem"))));
    }

    /// A device certificate (TLS client authentication) issued by `issuer`.
    fn device(&self, name: &str, issuer: &str) -> Client {
        let (key, csr, ext, cert) = (
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.csr")),
            self.path(&format!("{name}.ext")),
            self.path(&format!("{name}.pem")),
        );
        run(openssl()
            .args(["req", "-new", "-nodes", "-subj", &format!("/CN={name}")])
            .args(EC)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr));
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        run(openssl()
            .args(["x509", "-req", "-days", "30", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(self.path(&format!("{issuer}.pem")))
            .arg("-CAkey")
            .arg(self.path(&format!("{issuer}.key")))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert));
        Client { cert, key }
    }
}

const EC: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

/// The CAs beyond the three every test server has (`ec`, `rsa`, `mldsa`),
/// all on the EC key; `{dir}` and `{label}` are filled in by `EstServer`.
fn extra_cas(pki: &Pki) -> String {
    format!(
        r#"[[ca]]
id = "only-a"
cert = "{{dir}}/ca/only-a.pem"
key = "pkcs11:token={{label}};object=ec-ca-key"
client_issuers = ["{a}"]
[ca.profile]
allowed_keys = ["ec:P-256"]
[ca.serverkeygen]
allow_unencrypted = true

[[ca]]
id = "only-b"
cert = "{{dir}}/ca/only-b.pem"
key = "pkcs11:token={{label}};object=ec-ca-key"
client_issuers = ["{b}", "{{dir}}/ca/only-b.pem"]
[ca.profile]
allowed_keys = ["ec:P-256"]
"#,
        a = pki.path("a.pem").display(),
        b = pki.path("b.pem").display(),
    )
}

/// A SoftHSM2 server with the CAs above, its certificates made, not started.
fn server(pki: &Pki) -> EstServer {
    let client_ca = format!(
        "client_ca = [\"{}\", \"{}\", \"{}\"]",
        pki.path("a.pem").display(),
        pki.path("a-rollover.pem").display(),
        pki.path("b.pem").display()
    );
    let s = EstServer::start_opts(
        TokenKind::SoftHsm2,
        EstOptions {
            server_extra: client_ca,
            extra_ca: Some(("only-a".into(), extra_cas(pki))),
            no_launch: true,
            ..EstOptions::default()
        },
    );
    // `EstServer` made the certificate of the one extra CA it knows of.
    run(s
        .kipuka()
        .args(["ca", "init", "--config"])
        .arg(&s.config)
        .args([
            "--ca",
            "only-b",
            "--subject",
            "CN=kipuka test only-b CA",
            "--days",
            "60",
        ]));
    s
}

/// An answer, as much of it as these tests read.
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// POSTs the CSR `csr` (base64 file) to `label`'s `op`, authenticated by
/// `client`'s certificate, or by HTTP Basic when `client` is None.
fn post(s: &EstServer, label: &str, op: &str, csr: &Path, client: Option<&Client>) -> Reply {
    let data = format!("@{}", csr.display());
    let url = s.url(Some(label), op);
    let basic = format!("{USER}:{PASSWORD}");
    let (cert, key);
    let mut args = vec![
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        &data,
    ];
    match client {
        Some(c) => {
            cert = c.cert.display().to_string();
            key = c.key.display().to_string();
            args.extend(["--cert", &cert, "--key", &key]);
        }
        None => args.extend(["-u", &basic]),
    }
    args.push(&url);
    let answer = s.curl(&args);
    Reply {
        status: answer.status,
        content_type: answer.header("content-type").unwrap_or("").to_string(),
        body: answer.body.clone(),
    }
}

/// `label`'s chain as `/cacerts` publishes it (PEM).
fn cacerts(s: &EstServer, label: &str) -> PathBuf {
    let answer = s.curl(&[&s.url(Some(label), "cacerts")]);
    assert_eq!(answer.status, 200, "{label} cacerts");
    s.pkcs7_b64_to_pem(&answer.body, &format!("{label}-cacerts"))
}

/// The issued certificate of a 200 answer, checked by `openssl verify`
/// against `label`'s chain from `/cacerts`; returns it (PEM).
fn issued(s: &EstServer, label: &str, reply: &Reply, name: &str) -> PathBuf {
    assert_eq!(reply.status, 200, "{name} at {label}: {}", reply.text());
    let leaf = s.pkcs7_b64_to_pem(&reply.body, name);
    s.verify(&cacerts(s, label), &leaf)
        .unwrap_or_else(|e| panic!("{name} at {label}: OpenSSL rejects the certificate: {e}"));
    leaf
}

/// A 403 whose message names the CA and says `why`.
fn refused(reply: &Reply, label: &str, why: &str) {
    let text = reply.text();
    assert_eq!(reply.status, 403, "at {label}: {text}");
    assert!(
        text.starts_with(&format!(
            "CA {label} does not accept this client certificate: "
        )),
        "at {label}: {text}"
    );
    assert!(text.contains(why), "at {label}, expected {why:?}: {text}");
}

/// The certs-only part of a `/serverkeygen` answer (base64).
fn certs_part(reply: &Reply) -> Vec<u8> {
    let boundary = reply
        .content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .unwrap_or_else(|| panic!("no boundary in {:?}", reply.content_type))
        .trim_matches('"')
        .to_string();
    reply
        .text()
        .split(&format!("--{boundary}"))
        .filter_map(|part| part.split_once("\r\n\r\n"))
        .find(|(head, _)| head.contains("smime-type=certs-only"))
        .map(|(_, body)| body.trim().as_bytes().to_vec())
        .unwrap_or_else(|| panic!("no certs-only part: {}", reply.text()))
}

fn kipuka_check(s: &EstServer, config: &Path) -> Output {
    s.kipuka()
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn a_client_certificate_enrolls_only_at_the_cas_that_list_its_issuer() {
    let pki = Pki::new();
    let device_a = pki.device("device-a", "a");
    let device_a_rollover = pki.device("device-a-rollover", "a-rollover");
    let device_b = pki.device("device-b", "b");
    let mut s = server(&pki);
    s.launch();
    let csr = |name: &str| s.csr(name, EC, &format!("/CN={name}"), None).0;

    // Each fleet enrolls at the CA that lists its issuer.
    let (a_csr, a_key) = s.csr("a-at-a", EC, "/CN=a-at-a", None);
    let a_at_a = post(&s, "only-a", "simpleenroll", &a_csr, Some(&device_a));
    let a_leaf = issued(&s, "only-a", &a_at_a, "a-at-a");
    let (b_csr, b_key) = s.csr("b-at-b", EC, "/CN=b-at-b", Some("DNS:b.example"));
    let b_at_b = post(&s, "only-b", "simpleenroll", &b_csr, Some(&device_b));
    let b_leaf = issued(&s, "only-b", &b_at_b, "b-at-b");

    // ... and nowhere else: 403 (authenticated, not authorised), naming the CA.
    let a_at_b = post(
        &s,
        "only-b",
        "simpleenroll",
        &csr("a-at-b"),
        Some(&device_a),
    );
    refused(
        &a_at_b,
        "only-b",
        r#"its issuer "CN=Fleet A IDevID CA" is not one of the CA's client_issuers"#,
    );
    let b_at_a = post(
        &s,
        "only-a",
        "simpleenroll",
        &csr("b-at-a"),
        Some(&device_b),
    );
    refused(&b_at_a, "only-a", r#"its issuer "CN=Fleet B IDevID CA""#);
    // A certificate presented decides: valid Basic credentials beside it
    // do not turn the refusal into an enrollment.
    let both = s.curl(&[
        "--cert",
        &device_b.cert.display().to_string(),
        "--key",
        &device_b.key.display().to_string(),
        "-u",
        &format!("{USER}:{PASSWORD}"),
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        &format!("@{}", csr("b-and-basic-at-a").display()),
        &s.url(Some("only-a"), "simpleenroll"),
    ]);
    assert_eq!(both.status, 403, "{}", both.text());

    // The name is not enough: A' has A's name, not A's key.
    let rollover_at_a = post(
        &s,
        "only-a",
        "simpleenroll",
        &csr("rollover-at-a"),
        Some(&device_a_rollover),
    );
    refused(
        &rollover_at_a,
        "only-a",
        "did not sign it (its signature does not verify)",
    );

    // A CA without client_issuers accepts every certificate that passed TLS.
    for (name, client) in [
        ("a-at-ec", &device_a),
        ("rollover-at-ec", &device_a_rollover),
        ("b-at-ec", &device_b),
    ] {
        let reply = post(&s, "ec", "simpleenroll", &csr(name), Some(client));
        issued(&s, "ec", &reply, name);
    }

    // HTTP Basic is untouched by client_issuers (auth.users.cas governs it).
    for label in ["only-a", "only-b"] {
        let name = format!("basic-at-{label}");
        let reply = post(&s, label, "simpleenroll", &csr(&name), None);
        issued(&s, label, &reply, &name);
    }

    // /serverkeygen authenticates as /simpleenroll does.
    let keygen = post(
        &s,
        "only-a",
        "serverkeygen",
        &csr("keygen-a"),
        Some(&device_a),
    );
    assert_eq!(keygen.status, 200, "{}", keygen.text());
    let keygen_leaf = s.pkcs7_b64_to_pem(&certs_part(&keygen), "keygen-a-leaf");
    s.verify(&cacerts(&s, "only-a"), &keygen_leaf)
        .unwrap_or_else(|e| panic!("serverkeygen at only-a: {e}"));
    let keygen_b = post(
        &s,
        "only-a",
        "serverkeygen",
        &csr("keygen-b"),
        Some(&device_b),
    );
    refused(&keygen_b, "only-a", r#"its issuer "CN=Fleet B IDevID CA""#);

    // /simplereenroll: issued by this CA (as before) *and* listed. only-b
    // lists its own certificate, so what it issued renews there.
    let b_renewal = Client {
        cert: b_leaf,
        key: b_key,
    };
    let (re_csr, _) = s.csr("b-renewed", EC, "/CN=b-at-b", Some("DNS:b.example"));
    let renewed = post(&s, "only-b", "simplereenroll", &re_csr, Some(&b_renewal));
    issued(&s, "only-b", &renewed, "b-renewed");
    // only-a lists only A: its own certificates cannot renew, and the
    // refusal says what to change.
    let a_renewal = Client {
        cert: a_leaf,
        key: a_key,
    };
    let (re_csr, _) = s.csr("a-renewed", EC, "/CN=a-at-a", None);
    let not_listed = post(&s, "only-a", "simplereenroll", &re_csr, Some(&a_renewal));
    refused(
        &not_listed,
        "only-a",
        "to let the certificates this CA issued re-enroll, list its own certificate in \
         client_issuers",
    );
    // A's own device certificate is listed at only-a but was not issued by
    // it: the same-issuer check of re-enrollment still refuses it.
    let (re_csr, _) = s.csr("device-a-re", EC, "/CN=device-a", None);
    let not_ours = post(&s, "only-a", "simplereenroll", &re_csr, Some(&device_a));
    assert_eq!(not_ours.status, 403, "{}", not_ours.text());
    assert_eq!(
        not_ours.text().trim(),
        "the client certificate was not issued by CA only-a"
    );

    // `kipuka check` says, per CA, which client certificates it accepts.
    let out = kipuka_check(&s, &s.config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let block = |id: &str| -> String {
        let start = stdout
            .find(&format!("CA {id} ("))
            .unwrap_or_else(|| panic!("no CA {id}:\n{stdout}"));
        let rest = &stdout[start..];
        let end = rest[1..].find("\nCA ").map_or(rest.len(), |i| i + 1);
        rest[..end].to_string()
    };
    assert!(
        block("only-a").contains(&format!(
            "  clients:   TLS client certificates issued by \"CN=Fleet A IDevID CA\" ({}) only \
             (client_issuers); others get 403",
            pki.path("a.pem").display()
        )),
        "{stdout}"
    );
    assert!(
        block("only-b").contains(&format!(
            "\"CN=Fleet B IDevID CA\" ({}), \"CN=kipuka test only-b CA\" ({})",
            pki.path("b.pem").display(),
            s.dir.join("ca/only-b.pem").display()
        )),
        "{stdout}"
    );
    assert!(
        block("ec").contains("  clients:   any TLS client certificate that verifies to"),
        "{stdout}"
    );
    assert!(!stdout.contains("warning:   client_issuers"), "{stdout}");
}

/// The configuration `base` with only-a's `client_issuers` replaced, as a
/// new file in `s`'s folder.
fn variant(s: &EstServer, base: &Path, pki: &Pki, name: &str, client_issuers: &str) -> PathBuf {
    let text = std::fs::read_to_string(base).unwrap();
    let listed = format!("client_issuers = [\"{}\"]", pki.path("a.pem").display());
    assert!(text.contains(&listed), "{text}");
    let path = s.dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        text.replace(&listed, &format!("client_issuers = {client_issuers}")),
    )
    .unwrap();
    path
}

fn stderr_of(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unusable_issuer_file_stops_check_and_serve_naming_the_ca_and_the_file() {
    let pki = Pki::new();
    let mut s = server(&pki);
    let base = s.config.clone();
    let missing = pki.path("missing.pem");
    let two = pki.path("two.pem");
    std::fs::write(
        &two,
        [
            std::fs::read_to_string(pki.path("a.pem")).unwrap(),
            std::fs::read_to_string(pki.path("b.pem")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let q = |p: &Path| format!("[\"{}\"]", p.display());
    let cases = [
        (
            "missing",
            q(&missing),
            format!(
                "CA only-a: client_issuers: {} cannot be read: No such file or directory",
                missing.display()
            ),
        ),
        (
            "a-key",
            q(&pki.path("a.key")),
            format!(
                "CA only-a: client_issuers: {} holds no usable certificate",
                pki.path("a.key").display()
            ),
        ),
        (
            "two-certificates",
            q(&two),
            format!(
                "CA only-a: client_issuers: {} holds 2 certificates: give each issuer a file of \
                 its own",
                two.display()
            ),
        ),
        (
            "empty",
            "[]".to_string(),
            "ca \"only-a\": client_issuers is empty".to_string(),
        ),
    ];
    for (name, list, expected) in &cases {
        let config = variant(&s, &base, &pki, name, list);
        let check = stderr_of(&kipuka_check(&s, &config));
        assert!(
            check.starts_with(&format!("kipuka check: {expected}")),
            "{name}: {check}"
        );
        // serve refuses the same configuration before it listens.
        s.config = config;
        let log = s
            .try_launch()
            .expect_err(&format!("{name}: kipuka serve started"));
        assert!(log.contains(expected.as_str()), "{name}: {log}");
    }

    // An issuer that no TLS anchor leads to is served, with a warning.
    let config = variant(
        &s,
        &base,
        &pki,
        "unanchored",
        &format!(
            "[\"{}\", \"{}\"]",
            pki.path("a.pem").display(),
            pki.path("unanchored.pem").display()
        ),
    );
    let out = kipuka_check(&s, &config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "  warning:   client_issuers: {} (\"CN=Unanchored CA\") is not a TLS anchor",
            pki.path("unanchored.pem").display()
        )),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("warning:   client_issuers").count(),
        1,
        "{stdout}"
    );
}

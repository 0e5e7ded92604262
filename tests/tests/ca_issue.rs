//! The CA layer end to end, checked by an independent implementation (the
//! OpenSSL 3.5 command line): CSRs made by OpenSSL pass `verify_csr`;
//! tampered ones do not; CA certificates made by `self_signed_ca` with keys
//! in SoftHSM2 / Kryoptic (and the software ML-DSA fallback) issue
//! certificates that `openssl verify -x509_strict -check_ss_sig` accepts,
//! with the extensions `openssl x509 -text` shows.
//!
//! Fails (does not skip) without the tokens or OpenSSL 3.5: run `cargo xtask test`
//! or `. target/kipuka-test-env.sh` first.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use kipuka::{
    ca::{
        chain::read_certificates,
        csr::{verify_csr, CsrError, VerifiedCsr},
        issue::{IssueError, IssuedCertificate, Issuer, SerialNumber20},
        selfsign::self_signed_ca,
    },
    config::{CaConfig, Config, KeySpec},
    hsm::{
        engine::CaKey, pqc_fallback::SoftwarePqcFallback, CaSigner, HsmKeySigner, KeyAlgorithm,
        KeyCustody, SignatureScheme,
    },
    policy::{ApprovedNames, NamePolicy, Requester},
};
use kipuka_plugin_api::{HashAlg, MlDsaParameterSet};
use kipuka_tests::{
    engine_fixture::{engine_token, RELAXED},
    tokens::{openssl35, TokenKind},
};

/// `openssl` with a scratch directory.
struct OpenSsl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl OpenSsl {
    fn new() -> OpenSsl {
        OpenSsl {
            bin: openssl35().unwrap_or_else(|e| panic!("{e:#}")),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("openssl {args:?}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.run(args)
            .unwrap_or_else(|e| panic!("openssl {} failed:\n{e}", args.join(" ")))
    }

    /// Writes a DER certificate as `<name>.pem`.
    fn cert_pem(&self, name: &str, der: &[u8]) -> PathBuf {
        let der_path = self.path(&format!("{name}.der"));
        let pem_path = self.path(&format!("{name}.pem"));
        std::fs::write(&der_path, der).unwrap();
        self.ok(&[
            "x509",
            "-inform",
            "DER",
            "-in",
            s(&der_path),
            "-out",
            s(&pem_path),
        ]);
        pem_path
    }

    fn text(&self, pem: &Path) -> String {
        self.ok(&["x509", "-in", s(pem), "-noout", "-text"])
    }

    /// `openssl verify -x509_strict -check_ss_sig -CAfile ca leaf`.
    fn verify(&self, ca: &Path, leaf: &Path) -> Result<String, String> {
        self.run(&[
            "verify",
            "-x509_strict",
            "-check_ss_sig",
            "-CAfile",
            s(ca),
            s(leaf),
        ])
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A CSR made by OpenSSL, with its private key file and what kipuka must see.
struct TestCsr {
    name: &'static str,
    der: Vec<u8>,
    /// The private key (PEM), for OpenSSL's own SKI computation.
    key_pem: Vec<u8>,
    key: KeySpec,
    signature: &'static str,
}

/// `(name, req -newkey args, extra args, expected key spec, expected
/// signature algorithm)`.
type CsrSpec = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    KeySpec,
    &'static str,
);

/// The CSRs, made once per test process.
fn csrs() -> &'static [TestCsr] {
    static CSRS: OnceLock<Vec<TestCsr>> = OnceLock::new();
    CSRS.get_or_init(|| {
        let ssl = OpenSsl::new();
        let specs: [CsrSpec; 10] = [
            (
                "ec-p256",
                &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                &[],
                KeySpec::Ec("P-256".into()),
                "ECDSA with SHA-256",
            ),
            // OpenSSL's default hash for any curve is SHA-256.
            (
                "ec-p384-sha256",
                &["ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
                &[],
                KeySpec::Ec("P-384".into()),
                "ECDSA with SHA-256",
            ),
            (
                "ec-p521-sha512",
                &["ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
                &["-sha512"],
                KeySpec::Ec("P-521".into()),
                "ECDSA with SHA-512",
            ),
            (
                "rsa-2048-pkcs1",
                &["rsa:2048"],
                &[],
                KeySpec::Rsa(2048),
                "RSASSA-PKCS1-v1_5 with SHA-256",
            ),
            (
                "rsa-3072-pkcs1-sha384",
                &["rsa:3072"],
                &["-sha384"],
                KeySpec::Rsa(3072),
                "RSASSA-PKCS1-v1_5 with SHA-384",
            ),
            (
                "rsa-2048-pss",
                &["rsa:2048"],
                &["-sigopt", "rsa_padding_mode:pss"],
                KeySpec::Rsa(2048),
                "RSASSA-PSS with SHA-256 (MGF1 SHA-256, salt 32 bytes)",
            ),
            (
                "rsa-3072-pss-sha512-salt20",
                &["rsa:3072"],
                &[
                    "-sha512",
                    "-sigopt",
                    "rsa_padding_mode:pss",
                    "-sigopt",
                    "rsa_pss_saltlen:20",
                ],
                KeySpec::Rsa(3072),
                "RSASSA-PSS with SHA-512 (MGF1 SHA-512, salt 20 bytes)",
            ),
            (
                "ml-dsa-44",
                &["ml-dsa-44"],
                &[],
                KeySpec::MlDsa(44),
                "ML-DSA-44",
            ),
            (
                "ml-dsa-65",
                &["ml-dsa-65"],
                &[],
                KeySpec::MlDsa(65),
                "ML-DSA-65",
            ),
            (
                "ml-dsa-87",
                &["ml-dsa-87"],
                &[],
                KeySpec::MlDsa(87),
                "ML-DSA-87",
            ),
        ];
        specs
            .into_iter()
            .map(|(name, newkey, extra, key, signature)| {
                let key_file = ssl.path(&format!("{name}.key"));
                let out = ssl.path(&format!("{name}.csr.der"));
                let cn = format!("/CN={name}/O=kipuka tests");
                let san = format!("subjectAltName=DNS:{name}.example,IP:192.0.2.7");
                let mut args = vec!["req", "-new", "-newkey"];
                args.extend_from_slice(newkey);
                args.extend_from_slice(&["-subj", &cn, "-addext", &san, "-nodes"]);
                args.extend_from_slice(&["-keyout", s(&key_file), "-outform", "DER"]);
                args.extend_from_slice(&["-out", s(&out)]);
                args.extend_from_slice(extra);
                ssl.ok(&args);
                TestCsr {
                    name,
                    der: std::fs::read(&out).unwrap(),
                    key_pem: std::fs::read(&key_file).unwrap(),
                    key,
                    signature,
                }
            })
            .collect()
    })
}

#[test]
fn openssl_csrs_verify_and_tampered_ones_do_not() {
    for c in csrs() {
        let csr = verify_csr(&c.der).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(csr.key, c.key, "{}", c.name);
        assert_eq!(
            csr.signature_algorithm.to_string(),
            c.signature,
            "{}",
            c.name
        );
        assert_eq!(
            csr.subject.to_string(),
            format!("O=kipuka tests,CN={}", c.name)
        );
        assert_eq!(csr.sans.len(), 2, "{}", c.name);
        assert_eq!(csr.requested_extensions.len(), 1, "{}", c.name);

        // The last byte and a middle byte of the signature, and a byte of the
        // signed subject: each is caught.
        let n = c.der.len();
        let sig_len = match &c.key {
            KeySpec::Rsa(bits) => *bits as usize / 8,
            KeySpec::Ec(_) => 60,
            KeySpec::MlDsa(_) => 2000,
        };
        for at in [n - 1, n - sig_len / 2] {
            let mut bad = c.der.clone();
            bad[at] ^= 0x01;
            assert_eq!(
                verify_csr(&bad).unwrap_err(),
                CsrError::BadSignature,
                "{}: flipped byte {at} of {n}",
                c.name
            );
        }
        let mut bad = c.der.clone();
        let at = bad.windows(6).position(|w| w == b"kipuka").unwrap();
        bad[at] = b'K';
        assert_eq!(verify_csr(&bad).unwrap_err(), CsrError::BadSignature);
        // Trailing garbage.
        let mut bad = c.der.clone();
        bad.push(0);
        assert_eq!(
            verify_csr(&bad).unwrap_err(),
            CsrError::TrailingData { extra: 1 }
        );
    }
}

#[test]
fn small_rsa_keys_and_other_curves_are_refused() {
    let ssl = OpenSsl::new();
    for (newkey, want) in [
        (&["rsa:1024"][..], "1024 bits"),
        (
            &["ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"][..],
            "1.3.132.0.10",
        ),
        (&["ed25519"][..], "1.3.101.112"),
    ] {
        let out = ssl.path("weak.der");
        let mut args = vec!["req", "-new", "-newkey"];
        args.extend_from_slice(newkey);
        args.extend_from_slice(&["-subj", "/CN=weak", "-nodes", "-keyout", "/dev/null"]);
        args.extend_from_slice(&["-outform", "DER", "-out", s(&out)]);
        ssl.ok(&args);
        let err = verify_csr(&std::fs::read(&out).unwrap()).unwrap_err();
        assert!(
            matches!(err, CsrError::UnsupportedKey(ref m) if m.contains(want)),
            "{newkey:?}: {err}"
        );
    }
}

/// A `[[ca]]` with `profile`, through the configuration parser.
fn ca_config(id: &str, profile: &str) -> CaConfig {
    let toml = format!(
        "[[ca]]\nid = \"{id}\"\ncert = \"/nonexistent/{id}.pem\"\nkey = \"pkcs11:object={id}\"\n\
         [ca.profile]\n{profile}\n"
    );
    let mut config = Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("{e}"));
    config.ca.remove(0)
}

const PROFILE: &str = r#"
validity_days = 365
key_usage = ["digitalSignature", "keyEncipherment", "keyAgreement"]
extended_key_usage = ["clientAuth", "serverAuth"]
"#;

/// A CA key, its self-signed certificate and an [`Issuer`].
struct TestCa {
    name: String,
    issuer: Issuer,
    /// The profile's name policy (no `[ca.policy]`: the CSR's names).
    policy: NamePolicy,
    ca_pem: PathBuf,
    ca_not_after: String,
    ssl: OpenSsl,
}

async fn make_ca(
    name: &str,
    signer: CaSigner,
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
    spki: &[u8],
    days: u32,
    profile: &str,
) -> TestCa {
    let ssl = OpenSsl::new();
    let subject = format!("CN=kipuka {name} CA,O=Example");
    let der = self_signed_ca(&signer, algorithm, scheme, spki, &subject, days)
        .await
        .unwrap_or_else(|e| panic!("{name}: self_signed_ca: {e}"));
    let ca_pem = ssl.cert_pem("ca", &der);
    // The CA certificate itself: self-signed, strict, and what was asked.
    let verified = ssl.verify(&ca_pem, &ca_pem);
    assert!(verified.is_ok(), "{name}: CA does not verify: {verified:?}");
    let text = ssl.text(&ca_pem);
    for want in [
        // "CN=..,O=.." is RFC 4514 order; OpenSSL prints the DER order.
        &format!("Issuer: O=Example, CN=kipuka {name} CA") as &str,
        &format!("Subject: O=Example, CN=kipuka {name} CA"),
        "X509v3 Basic Constraints: critical\n                CA:TRUE",
        "X509v3 Key Usage: critical\n                Digital Signature, Certificate Sign, CRL Sign",
        "X509v3 Subject Key Identifier:",
        "X509v3 Authority Key Identifier:",
    ] {
        assert!(text.contains(want), "{name}: CA lacks {want:?}:\n{text}");
    }
    assert_eq!(
        field(&text, "X509v3 Subject Key Identifier:"),
        field(&text, "X509v3 Authority Key Identifier:"),
        "{name}: AKI = SKI on a self-signed CA"
    );
    let ca_not_after = ssl.ok(&["x509", "-in", s(&ca_pem), "-noout", "-enddate"]);
    let chain = read_certificates(&ssl.path("ca.der")).unwrap();
    let id = format!("ca-{}", name.to_lowercase().replace(' ', "-"));
    let key = CaKey {
        ca_id: id.clone(),
        custody: signer.custody(),
        signer,
        algorithm,
        scheme,
        mechanism: "test".into(),
        warnings: Vec::new(),
        chain,
    };
    let config = ca_config(&id, profile);
    let issuer = Issuer::new(&config, key).unwrap_or_else(|e| panic!("{name}: Issuer::new: {e}"));
    let policy = NamePolicy::for_ca(&config).unwrap();
    assert_eq!(issuer.ca_id(), id);
    assert_eq!(issuer.chain().len(), 1);
    TestCa {
        name: name.into(),
        issuer,
        policy,
        ca_pem,
        ca_not_after: ca_not_after.trim().to_string(),
        ssl,
    }
}

/// The line after `label` in `openssl x509 -text`.
fn field(text: &str, label: &str) -> String {
    let mut lines = text.lines();
    lines
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label} in:\n{text}"));
    lines.next().unwrap_or_default().trim().to_string()
}

/// OpenSSL's own subjectKeyIdentifier for `key_pem`, from a throwaway
/// self-signed certificate.
fn openssl_ski(ssl: &OpenSsl, key_pem: &[u8]) -> String {
    let key_file = ssl.path("ski-ref.key");
    std::fs::write(&key_file, key_pem).unwrap();
    let out = ssl.path("ski-ref.pem");
    ssl.ok(&[
        "req",
        "-new",
        "-x509",
        "-key",
        s(&key_file),
        "-subj",
        "/CN=ski",
        "-days",
        "1",
        "-addext",
        "subjectKeyIdentifier=hash",
        "-out",
        s(&out),
    ]);
    field(&ssl.text(&out), "X509v3 Subject Key Identifier:")
}

/// The names the CA's policy approves for `csr` (a refusal as a policy error).
fn names(ca: &TestCa, csr: &VerifiedCsr) -> Result<ApprovedNames, IssueError> {
    ca.policy
        .decide(csr, &Requester::default(), None)
        .map_err(|e| IssueError::Policy(e.to_string()))
}

async fn issue(ca: &TestCa, csr: &VerifiedCsr) -> Result<IssuedCertificate, IssueError> {
    ca.issuer
        .issue(
            csr,
            &names(ca, csr)?,
            SerialNumber20::random(),
            SystemTime::now(),
        )
        .await
}

/// Issues a certificate for every OpenSSL CSR and checks each with OpenSSL.
async fn issue_all_and_check(ca: &TestCa, sig_text: &[&str]) {
    let name = &ca.name;
    let ca_text = ca.ssl.text(&ca.ca_pem);
    let ca_ski = field(&ca_text, "X509v3 Subject Key Identifier:");
    for c in csrs() {
        let csr = verify_csr(&c.der).unwrap();
        let issued = issue(ca, &csr)
            .await
            .unwrap_or_else(|e| panic!("{name} / {}: {e}", c.name));
        let leaf = ca.ssl.cert_pem(c.name, &issued.der);
        let verified = ca.ssl.verify(&ca.ca_pem, &leaf);
        assert!(
            verified.as_deref().is_ok_and(|o| o.contains(": OK")),
            "{name} / {}: openssl verify: {verified:?}",
            c.name
        );
        let text = ca.ssl.text(&leaf);
        let ctx = format!("{name} / {}:\n{text}", c.name);
        let has = |want: &str| assert!(text.contains(want), "missing {want:?} in {ctx}");
        has(&format!("Subject: CN={}, O=kipuka tests", c.name));
        has(&format!("Issuer: O=Example, CN=kipuka {name} CA"));
        has("X509v3 Basic Constraints: critical\n                CA:FALSE");
        has("X509v3 Extended Key Usage: \n                TLS Web Client Authentication, TLS Web Server Authentication");
        has(&format!(
            "X509v3 Subject Alternative Name: \n                DNS:{}.example, IP Address:192.0.2.7",
            c.name
        ));
        for want in sig_text {
            has(want);
        }
        // keyUsage: the profile's digitalSignature, keyEncipherment,
        // keyAgreement, filtered by key type.
        let usages = match c.key {
            KeySpec::Rsa(_) => "Digital Signature, Key Encipherment",
            KeySpec::Ec(_) => "Digital Signature, Key Agreement",
            KeySpec::MlDsa(_) => "Digital Signature",
        };
        has(&format!(
            "X509v3 Key Usage: critical\n                {usages}\n"
        ));
        // SKI as OpenSSL computes it for the same key; AKI = the CA's SKI.
        assert_eq!(
            field(&text, "X509v3 Subject Key Identifier:"),
            openssl_ski(&ca.ssl, &c.key_pem),
            "{ctx}"
        );
        assert_eq!(
            field(&text, "X509v3 Authority Key Identifier:"),
            ca_ski,
            "{ctx}"
        );
        // A 20-byte serial, the one reported.
        let serial = ca.ssl.ok(&["x509", "-in", s(&leaf), "-noout", "-serial"]);
        let serial = serial.trim().strip_prefix("serial=").unwrap().to_string();
        assert_eq!(serial.len(), 40, "{ctx}");
        assert_eq!(serial.to_lowercase(), issued.serial_hex);
        assert_eq!(issued.subject, format!("O=kipuka tests,CN={}", c.name));
        assert_eq!(
            issued.sans,
            [
                format!("DNS:{}.example", c.name),
                "IP Address:192.0.2.7".into()
            ]
        );
        let lifetime = issued.not_after.duration_since(issued.not_before).unwrap();
        assert_eq!(lifetime, Duration::from_secs(365 * 86400 + 60), "{ctx}");
    }
    // The check can fail: a corrupted signature is refused by OpenSSL.
    let csr = verify_csr(&csrs()[0].der).unwrap();
    let mut der = issue(ca, &csr).await.unwrap().der;
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let bad = ca.ssl.cert_pem("tampered", &der);
    assert!(
        ca.ssl.verify(&ca.ca_pem, &bad).is_err(),
        "{name}: tampered leaf verifies"
    );
}

fn hsm_signer(
    kind: TokenKind,
    label: &str,
    scheme: SignatureScheme,
) -> (CaSigner, KeyAlgorithm, Vec<u8>) {
    let t = engine_token(kind);
    let pool = t.pool(2, RELAXED);
    let (info, signer) = HsmKeySigner::open(&pool, &t.uri(label), scheme)
        .unwrap_or_else(|e| panic!("{kind} {label}: {e}"));
    let signer = signer.unwrap_or_else(|| panic!("{kind} {label}: no native signer"));
    (
        CaSigner::Hsm(Box::new(signer)),
        info.algorithm,
        info.public_key_spki,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecdsa_p256_ca_on_softhsm2_issues_certificates_openssl_verifies() {
    let scheme = SignatureScheme::Ecdsa(HashAlg::SHA256);
    let (signer, algorithm, spki) = hsm_signer(TokenKind::SoftHsm2, "ec-p256", scheme);
    assert_eq!(signer.custody(), KeyCustody::Hardware);
    let ca = make_ca("EC", signer, algorithm, scheme, &spki, 3650, PROFILE).await;
    issue_all_and_check(&ca, &["Signature Algorithm: ecdsa-with-SHA256"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_3072_pss_ca_on_softhsm2_issues_certificates_openssl_verifies() {
    for (hash, md, salt) in [
        (HashAlg::SHA256, "sha256", "0x20"),
        (HashAlg::SHA512, "sha512", "0x40"),
    ] {
        let scheme = SignatureScheme::RsaPss(hash);
        let (signer, algorithm, spki) = hsm_signer(TokenKind::SoftHsm2, "rsa-3072", scheme);
        assert_eq!(algorithm, KeyAlgorithm::Rsa { bits: 3072 });
        let ca = make_ca("RSA PSS", signer, algorithm, scheme, &spki, 3650, PROFILE).await;
        issue_all_and_check(
            &ca,
            &[
                "Signature Algorithm: rsassaPss",
                &format!("Hash Algorithm: {md}"),
                &format!("Mask Algorithm: mgf1 with {md}"),
                &format!("Salt Length: {salt}"),
            ],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_dsa_65_ca_native_on_kryoptic_issues_certificates_openssl_verifies() {
    let scheme = SignatureScheme::MlDsa;
    let (signer, algorithm, spki) = hsm_signer(TokenKind::Kryoptic, "mldsa-65", scheme);
    assert_eq!(
        algorithm,
        KeyAlgorithm::MlDsa {
            set: MlDsaParameterSet::ML_DSA_65
        }
    );
    let ca = make_ca("ML-DSA", signer, algorithm, scheme, &spki, 3650, PROFILE).await;
    issue_all_and_check(&ca, &["Signature Algorithm: ML-DSA-65"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_dsa_65_ca_in_software_issues_certificates_openssl_verifies() {
    let key = SoftwarePqcFallback::generate(MlDsaParameterSet::ML_DSA_65).unwrap();
    let spki = key.public_key_spki_der();
    let algorithm = KeyAlgorithm::MlDsa {
        set: key.parameter_set(),
    };
    let signer = CaSigner::Software(Arc::new(key));
    assert_eq!(signer.custody(), KeyCustody::Software);
    let ca = make_ca(
        "Software ML-DSA",
        signer,
        algorithm,
        SignatureScheme::MlDsa,
        &spki,
        3650,
        PROFILE,
    )
    .await;
    issue_all_and_check(&ca, &["Signature Algorithm: ML-DSA-65"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_after_is_capped_when_the_ca_expires_sooner() {
    let scheme = SignatureScheme::Ecdsa(HashAlg::SHA384);
    let (signer, algorithm, spki) = hsm_signer(TokenKind::SoftHsm2, "ec-p384", scheme);
    // The CA lives one day; the profile asks for 365.
    let ca = make_ca("Short", signer, algorithm, scheme, &spki, 1, PROFILE).await;
    let csr = verify_csr(&csrs()[0].der).unwrap();
    let issued = issue(&ca, &csr).await.unwrap();
    let leaf = ca.ssl.cert_pem("capped", &issued.der);
    assert!(ca.ssl.verify(&ca.ca_pem, &leaf).is_ok());
    let leaf_end = ca.ssl.ok(&["x509", "-in", s(&leaf), "-noout", "-enddate"]);
    assert_eq!(leaf_end.trim(), ca.ca_not_after);
    let lifetime = issued.not_after.duration_since(issued.not_before).unwrap();
    assert!(lifetime <= Duration::from_secs(86400 + 60), "{lifetime:?}");
    // And an expired CA issues nothing.
    let later = SystemTime::now() + Duration::from_secs(2 * 86400);
    let err = ca
        .issuer
        .issue(
            &csr,
            &names(&ca, &csr).unwrap(),
            SerialNumber20::random(),
            later,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, IssueError::Config(ref m) if m.contains("expired")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_decides_keys_sans_and_empty_subjects() {
    let scheme = SignatureScheme::Ecdsa(HashAlg::SHA256);
    let (signer, algorithm, spki) = hsm_signer(TokenKind::SoftHsm2, "ec-p256", scheme);
    let profile = r#"
allowed_keys = ["ec:P-256", "ml-dsa-65"]
key_usage = ["keyEncipherment"]
san_policy = "none"
"#;
    let ca = make_ca("Policy", signer, algorithm, scheme, &spki, 30, profile).await;
    let by_name = |n: &str| {
        let c = csrs().iter().find(|c| c.name == n).unwrap();
        verify_csr(&c.der).unwrap()
    };
    // RSA is not allowed.
    let err = issue(&ca, &by_name("rsa-2048-pkcs1")).await.unwrap_err();
    assert!(
        matches!(err, IssueError::Policy(ref m) if m.contains("rsa:2048") && m.contains("ca-policy")),
        "{err}"
    );
    // keyEncipherment alone is valid for neither EC nor ML-DSA.
    let err = issue(&ca, &by_name("ec-p256")).await.unwrap_err();
    assert!(
        matches!(err, IssueError::Policy(ref m) if m.contains("keyEncipherment")),
        "{err}"
    );

    let profile = r#"
allowed_keys = ["ec:P-256"]
san_policy = "none"
extended_key_usage = []
"#;
    let (signer, algorithm, spki) = hsm_signer(TokenKind::SoftHsm2, "ec-p256", scheme);
    let ca = make_ca("NoSan", signer, algorithm, scheme, &spki, 30, profile).await;
    let issued = issue(&ca, &by_name("ec-p256")).await.unwrap();
    assert!(issued.sans.is_empty());
    let leaf = ca.ssl.cert_pem("nosan", &issued.der);
    assert!(ca.ssl.verify(&ca.ca_pem, &leaf).is_ok());
    let text = ca.ssl.text(&leaf);
    assert!(!text.contains("Subject Alternative Name"), "{text}");
    assert!(!text.contains("Extended Key Usage"), "{text}");
    // Default key usage (digitalSignature, keyEncipherment) on EC: digitalSignature only.
    assert!(text.contains("X509v3 Key Usage: critical\n                Digital Signature\n"));

    // An empty subject: refused without SANs, issued with a critical SAN otherwise.
    let ssl = OpenSsl::new();
    let out = ssl.path("empty.der");
    ssl.ok(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-subj",
        "/",
        "-addext",
        "subjectAltName=DNS:only.example",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-outform",
        "DER",
        "-out",
        s(&out),
    ]);
    let empty = verify_csr(&std::fs::read(&out).unwrap()).unwrap();
    assert!(empty.subject.is_empty());
    let err = issue(&ca, &empty).await.unwrap_err();
    assert!(matches!(err, IssueError::Policy(_)), "{err}");
    let (signer, algorithm, spki) = hsm_signer(TokenKind::SoftHsm2, "ec-p256", scheme);
    let ca = make_ca("Copy", signer, algorithm, scheme, &spki, 30, PROFILE).await;
    let issued = issue(&ca, &empty).await.unwrap();
    assert_eq!(issued.subject, "");
    let leaf = ca.ssl.cert_pem("empty", &issued.der);
    let verified = ca.ssl.verify(&ca.ca_pem, &leaf);
    assert!(verified.is_ok(), "{verified:?}");
    let text = ca.ssl.text(&leaf);
    assert!(
        text.contains(
            "X509v3 Subject Alternative Name: critical\n                DNS:only.example"
        ),
        "{text}"
    );
}

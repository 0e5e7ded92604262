//! `/serverkeygen` end to end: `kipuka serve` on SoftHSM2 and Kryoptic makes
//! the key pair in the token, and the client side is curl and the OpenSSL
//! command line — `openssl cms -decrypt` (with the pre-shared key, or the
//! client's RSA or EC key), then `openssl cms -verify` of the key generator's
//! signature — and the decrypted private key must match the public key of
//! the certificate in the same answer, which must verify against the CA.
//! Plus the refusals, and a count of the token's objects around 100
//! key generations, half of them failing half-way.

use std::{ffi::OsStr, path::Path, process::Command};

use kipuka::hsm::keygen::{generate_and_wrap, CekRecipient, KeyPairSpec};
use kipuka_plugin_api::Curve;
use kipuka_tests::{
    engine_fixture::{engine_token, RELAXED},
    est_client::{store_certificates, Answer},
    est_server::{openssl, run, EstServer, PASSWORD, USER},
    keygen_client::{
        csr_with_attributes, multipart_parts, only_key_of_package, openssl_key, openssl_try,
        public_key_of, unbase64, ASYMM_DECRYPT_KEY_ID, DECRYPT_KEY_ID,
    },
    tokens::TokenKind,
};

/// The pre-shared key-encryption key: its identifier and value, in hex.
const KEK_ID_HEX: &str = "6b656b2d31";
const KEK_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The one CA whose key packages are encrypted with AES-256-GCM.
const GCM_CA: &str = "skg-gcm";

/// The TLS client certificates the server trusts besides its CAs' own: the
/// test TLS CA's, which kipuka never issues from (so never in its store).
const CLIENT_CA: &str = r#"client_ca = ["{dir}/tls/ca.pem"]"#;

/// A `[[ca]]` on the EC key, with the CA certificate `skg.pem`, certifying
/// `allowed_keys`; `serverkeygen` are the lines of its `[ca.serverkeygen]`
/// table and `keks` its key-encryption keys `(id in hex, object label)`.
fn skg_ca(id: &str, allowed_keys: &[&str], serverkeygen: &[&str], keks: &[(&str, &str)]) -> String {
    let allowed: Vec<String> = allowed_keys.iter().map(|k| format!("{k:?}")).collect();
    let allowed = allowed.join(", ");
    let mut toml = format!(
        r#"
[[ca]]
id = "{id}"
cert = "{{dir}}/ca/skg.pem"
key = "pkcs11:token={{label}};object=ec-ca-key"
[ca.profile]
allowed_keys = [{allowed}]
[ca.serverkeygen]
"#
    );
    for line in serverkeygen {
        toml.push_str(&format!("{line}\n"));
    }
    for (kek_id, object) in keks {
        toml.push_str(&format!(
            r#"[[ca.serverkeygen.kek]]
id = "{kek_id}"
key = "pkcs11:token={{label}};object={object}"
"#
        ));
    }
    toml
}

/// Four CAs on the EC key, differing only in `[ca.serverkeygen]` (and the
/// keys they certify).
fn cas() -> String {
    [
        skg_ca(
            "skg",
            &["ec:P-256", "ec:P-384", "rsa:2048"],
            &[],
            &[(KEK_ID_HEX, "kek-1"), ("6d697373696e67", "no-such-kek")],
        ),
        skg_ca(
            GCM_CA,
            &["ec:P-256", "rsa:2048"],
            &[r#"content_encryption = "aes-256-gcm""#],
            &[(KEK_ID_HEX, "kek-1")],
        ),
        skg_ca(
            "skg-oaep384",
            &["ec:P-256"],
            &[r#"oaep_hash = "sha384""#],
            &[],
        ),
        skg_ca(
            "skg-clear",
            &["ec:P-256"],
            &["allow_unencrypted = true"],
            &[],
        ),
    ]
    .concat()
}

fn start(kind: TokenKind) -> EstServer {
    let server = EstServer::start_custom(kind, CLIENT_CA, Some(("skg", &cas())));
    let kek = server.dir.join("kek.bin");
    std::fs::write(&kek, hex_bytes(KEK_HEX)).unwrap();
    let out = server
        .token
        .pkcs11_tool([
            OsStr::new("--write-object"),
            kek.as_os_str(),
            OsStr::new("--type"),
            OsStr::new("secrkey"),
            OsStr::new("--key-type"),
            OsStr::new("AES:32"),
            OsStr::new("--label"),
            OsStr::new("kek-1"),
            OsStr::new("--id"),
            OsStr::new("6b31"),
            OsStr::new("--usage-wrap"),
            OsStr::new("--sensitive"),
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// POSTs the DER CSR (base64) to `label`'s serverkeygen with Basic, or
/// with the client certificate `mtls` (cert, key).
fn post(
    server: &EstServer,
    label: &str,
    name: &str,
    csr_der: &[u8],
    mtls: Option<(&Path, &Path)>,
) -> Answer {
    let der = server.dir.join(format!("{name}.csr.der"));
    std::fs::write(&der, csr_der).unwrap();
    let b64 = server.dir.join(format!("{name}.csr.b64"));
    run(openssl()
        .args(["base64", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&b64));
    let data = format!("@{}", b64.display());
    let url = server.url(Some(label), "serverkeygen");
    let auth = format!("{USER}:{PASSWORD}");
    let mut args = vec![
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        &data,
    ];
    let (cert, key);
    match mtls {
        Some((c, k)) => {
            cert = c.display().to_string();
            key = k.display().to_string();
            args.extend(["--cert", &cert, "--key", &key]);
        }
        None => args.extend(["-u", &auth]),
    }
    args.push(&url);
    server.curl(&args)
}

/// `openssl cms OPERATION` (`-decrypt`, `-verify`) of the DER `input` into
/// `out`, with the further arguments `more` (the key or the trust anchor):
/// (success, OpenSSL's output).
fn cms(operation: &str, input: &Path, out: &Path, more: &[&OsStr]) -> (bool, String) {
    let mut args: Vec<&OsStr> = ["cms", operation, "-inform", "DER", "-binary", "-in"]
        .map(OsStr::new)
        .to_vec();
    args.extend([input.as_os_str(), OsStr::new("-out"), out.as_os_str()]);
    args.extend_from_slice(more);
    openssl_try(&args)
}

/// The certificate of the CA behind `label` (the `skg*` CAs share one).
fn ca_cert(server: &EstServer, label: &str) -> std::path::PathBuf {
    let file = if label.starts_with("skg") {
        "skg"
    } else {
        label
    };
    server.dir.join(format!("ca/{file}.pem"))
}

/// Everything a client checks in a good answer from `label`; returns the
/// leaf (PEM). `decrypt` are the `openssl cms -decrypt` arguments naming
/// the key. The key comes in AuthEnvelopedData from [`GCM_CA`], in
/// EnvelopedData from every other CA.
fn check_answer(
    server: &EstServer,
    answer: &Answer,
    name: &str,
    label: &str,
    decrypt: &[&OsStr],
) -> std::path::PathBuf {
    assert_eq!(answer.status, 200, "{name}: {}", answer.text());
    let parts = multipart_parts(answer);
    assert_eq!(parts.len(), 2, "{name}: two parts");
    assert_eq!(
        parts[0].0,
        "application/pkcs7-mime; smime-type=server-generated-key"
    );
    assert_eq!(parts[1].0, "application/pkcs7-mime; smime-type=certs-only");
    let dir = &server.dir;
    let enveloped = unbase64(dir, &format!("{name}-key"), &parts[0].1);
    let printed = run(openssl()
        .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
        .arg(&enveloped))
    .stdout;
    let printed = String::from_utf8_lossy(&printed);
    let outer = if label == GCM_CA {
        "id-smime-ct-authEnvelopedData"
    } else {
        "pkcs7-envelopedData"
    };
    assert!(printed.contains(outer), "{name}: not {outer}:\n{printed}");

    // 1. Decrypt (the client's own key or the pre-shared key).
    let signed = dir.join(format!("{name}-signed.der"));
    let (ok, log) = cms("-decrypt", &enveloped, &signed, decrypt);
    assert!(ok, "{name}: openssl cms -decrypt failed: {log}");

    // 2. Verify the key generator's signature (the CA's), get the package.
    let akp = dir.join(format!("{name}-akp.der"));
    let ca = ca_cert(server, label);
    let (ok, log) = cms(
        "-verify",
        &signed,
        &akp,
        &[
            OsStr::new("-purpose"),
            OsStr::new("any"),
            OsStr::new("-CAfile"),
            ca.as_os_str(),
        ],
    );
    assert!(ok, "{name}: openssl cms -verify failed: {log}");
    let printed = run(openssl()
        .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
        .arg(&signed))
    .stdout;
    assert!(
        String::from_utf8_lossy(&printed).contains("2.16.840.1.101.2.1.2.78.5"),
        "{name}: eContentType is not id-ct-KP-aKeyPackage"
    );

    // 3. The private key inside matches the certificate, which verifies.
    let pk8 = dir.join(format!("{name}.p8.der"));
    std::fs::write(&pk8, only_key_of_package(&std::fs::read(&akp).unwrap())).unwrap();
    let leaf = server.pkcs7_b64_to_pem(parts[1].1.as_bytes(), &format!("{name}-cert"));
    server
        .verify(&ca, &leaf)
        .unwrap_or_else(|e| panic!("{name}: certificate does not verify: {e}"));
    assert_eq!(
        public_key_of(&pk8, false),
        public_key_of(&leaf, true),
        "{name}: the delivered private key is not the certified key"
    );
    leaf
}

/// The subjectKeyIdentifier of a certificate, as OpenSSL prints it.
fn ski_of(cert: &Path) -> Vec<u8> {
    let out = run(openssl()
        .args(["x509", "-noout", "-ext", "subjectKeyIdentifier", "-in"])
        .arg(cert))
    .stdout;
    let text = String::from_utf8_lossy(&out);
    let hex: String = text
        .lines()
        .nth(1)
        .expect("SKI line")
        .trim()
        .split(':')
        .collect();
    hex_bytes(&hex)
}

/// A client certificate from `/simpleenroll` on `label` for a new key `spec`.
fn enrolled_client(
    server: &EstServer,
    label: &str,
    name: &str,
    key_args: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (csr, key) = server.csr(name, key_args, &format!("/CN={name}"), None);
    let answer = server.post_csr_basic(Some(label), "simpleenroll", &csr);
    assert_eq!(answer.status, 200, "{}", answer.text());
    (server.pkcs7_to_pem(&answer, name), key)
}

fn secret_key_args() -> Vec<&'static OsStr> {
    vec![
        OsStr::new("-secretkey"),
        OsStr::new(KEK_HEX),
        OsStr::new("-secretkeyid"),
        OsStr::new(KEK_ID_HEX),
    ]
}

fn recip_args<'a>(cert: &'a Path, key: &'a Path) -> Vec<&'a OsStr> {
    vec![
        OsStr::new("-recip"),
        cert.as_os_str(),
        OsStr::new("-inkey"),
        key.as_os_str(),
    ]
}

fn serverkeygen_delivers(kind: TokenKind) {
    let server = start(kind);
    let dir = server.dir.clone();
    let kek_id = hex_bytes(KEK_ID_HEX);

    // Pre-shared key, AES-256-CBC, an EC P-256 key made in the token.
    let k = openssl_key(&dir, "kek-cbc", "ec:P-256");
    let csr = csr_with_attributes(&dir, &k, "CN=device kek cbc", &[(DECRYPT_KEY_ID, &kek_id)]);
    let answer = post(&server, "skg", "kek-cbc", &csr, None);
    check_answer(&server, &answer, "kek-cbc", "skg", &secret_key_args());

    // The same CSR made by `kipuka csr` (the README's walkthrough): OpenSSL
    // verifies its signature and sees the attribute; the server takes it.
    for (name, spec) in [("walk-ec", "ec:P-384"), ("walk-rsa", "rsa:2048")] {
        let k = openssl_key(&dir, name, spec);
        let out = run(server.kipuka().args([
            "csr",
            "--key",
            k.to_str().unwrap(),
            "--subject",
            "CN=walkthrough,O=kipuka",
            "--decrypt-key-id",
            KEK_ID_HEX,
        ]));
        let der = unbase64(
            &dir,
            &format!("{name}-csr"),
            &String::from_utf8_lossy(&out.stdout),
        );
        let text = run(openssl()
            .args(["req", "-verify", "-noout", "-text", "-inform", "DER", "-in"])
            .arg(&der));
        let shown = String::from_utf8_lossy(&text.stdout);
        assert!(
            shown.contains("1.2.840.113549.1.9.16.2.37") && shown.contains("CN=walkthrough"),
            "{name}: {shown}"
        );
        let answer = post(&server, "skg", name, &std::fs::read(&der).unwrap(), None);
        check_answer(&server, &answer, name, "skg", &secret_key_args());
    }

    // Pre-shared key, AES-256-GCM (AuthEnvelopedData), an RSA-2048 key.
    let k = openssl_key(&dir, "kek-gcm", "rsa:2048");
    let csr = csr_with_attributes(&dir, &k, "CN=device kek gcm", &[(DECRYPT_KEY_ID, &kek_id)]);
    let answer = post(&server, GCM_CA, "kek-gcm", &csr, None);
    check_answer(&server, &answer, "kek-gcm", GCM_CA, &secret_key_args());

    // ECDH-ES to the client's EC certificate, found in the store by its
    // subject key identifier; a P-384 key, both content encryptions.
    let (ec_cert, ec_key) = enrolled_client(
        &server,
        "ec",
        "ec-client",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let ski = ski_of(&ec_cert);
    // SoftHSM2 2.6 derives ECDH with the null KDF only, and RFC 5753 needs
    // X9.63 with SHA-256 in the token: a clean refusal, never another KDF.
    let ecdh_refused = |name: &str, answer: &Answer| {
        assert_eq!(answer.status, 501, "{name}: {}", answer.text());
        assert!(
            answer.text().contains("CKM_ECDH1_DERIVE") && answer.text().contains("X9.63"),
            "{name}: {}",
            answer.text()
        );
    };
    // An ECDH-ES answer: on Kryoptic the key, which the recipient's
    // `(cert, key)` decrypts; on SoftHSM2 the refusal.
    let ecdh_answer =
        |name: &str, label: &str, answer: &Answer, recipient: (&Path, &Path)| match kind {
            TokenKind::Kryoptic => {
                let decrypt = recip_args(recipient.0, recipient.1);
                check_answer(&server, answer, name, label, &decrypt);
            }
            TokenKind::SoftHsm2 => ecdh_refused(name, answer),
        };
    for (label, spec) in [("skg", "ec:P-384"), (GCM_CA, "ec:P-256")] {
        let name = format!("ecdh-{label}");
        let k = openssl_key(&dir, &name, spec);
        let csr = csr_with_attributes(&dir, &k, "CN=device ecdh", &[(ASYMM_DECRYPT_KEY_ID, &ski)]);
        let answer = post(&server, label, &name, &csr, None);
        ecdh_answer(&name, label, &answer, (&ec_cert, &ec_key));
    }
    // The same through the TLS client certificate (mTLS instead of Basic) on
    // the `ec` CA, which has the default serverkeygen settings.
    let k = openssl_key(&dir, "ecdh-mtls", "ec:P-256");
    let csr = csr_with_attributes(&dir, &k, "CN=device mtls", &[(ASYMM_DECRYPT_KEY_ID, &ski)]);
    let answer = post(&server, "ec", "ecdh-mtls", &csr, Some((&ec_cert, &ec_key)));
    ecdh_answer("ecdh-mtls", "ec", &answer, (&ec_cert, &ec_key));

    // There the named certificate was both the TLS client certificate and
    // in the store, which tells neither way of finding it from the other.
    // Now each place alone. A TLS client certificate that kipuka never
    // issued (the test TLS CA's, trusted by `client_ca`):
    let (tls_cert, tls_key) = server.tls_client_cert("tls-only-client");
    let tls_der = run(openssl()
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&tls_cert))
    .stdout;
    assert!(
        !store_certificates(&dir.join("kipuka.db")).contains(&tls_der),
        "the TLS-only client certificate is in kipuka's store"
    );
    let tls_ski = ski_of(&tls_cert);
    assert_ne!(tls_ski, ski);
    let named = |name: &str, ski: &[u8], mtls: Option<(&Path, &Path)>| {
        let k = openssl_key(&dir, name, "ec:P-256");
        let csr = csr_with_attributes(&dir, &k, "CN=device named", &[(ASYMM_DECRYPT_KEY_ID, ski)]);
        post(&server, "skg", name, &csr, mtls)
    };
    // ... named over mTLS with it: found as the TLS client certificate (on
    // SoftHSM2 the ECDH refusal, which comes only after the certificate
    // was found, shows it);
    let answer = named("tls-named", &tls_ski, Some((&tls_cert, &tls_key)));
    ecdh_answer("tls-named", "skg", &answer, (&tls_cert, &tls_key));
    // ... named over Basic, without it: known nowhere, a 400;
    let answer = named("tls-named-basic", &tls_ski, None);
    assert_eq!(answer.status, 400, "tls-named-basic: {}", answer.text());
    assert!(
        answer.text().contains("matches neither"),
        "tls-named-basic: {}",
        answer.text()
    );
    // ... and over mTLS with it, naming the enrolled certificate instead:
    // that one is taken from the store, and only its key decrypts. (Over
    // Basic, the store is the only place, as the ECDH-ES answers above.)
    let answer = named("store-named", &ski, Some((&tls_cert, &tls_key)));
    ecdh_answer("store-named", "skg", &answer, (&ec_cert, &ec_key));
    if kind == TokenKind::Kryoptic {
        let (ok, log) = cms(
            "-decrypt",
            &dir.join("store-named-key.der"),
            &dir.join("store-named-wrong.der"),
            &recip_args(&tls_cert, &tls_key),
        );
        assert!(
            !ok,
            "store-named: the TLS client key decrypts it too: {log}"
        );
    }

    // RSA-OAEP to the client's RSA certificate.
    let (rsa_cert, rsa_key) =
        enrolled_client(&server, "rsa", "rsa-client", &["-newkey", "rsa:2048"]);
    let rsa_ski = ski_of(&rsa_cert);
    for (label, hash) in [("skg", "SHA-256"), ("skg-oaep384", "SHA-384")] {
        let name = format!("oaep-{label}");
        let k = openssl_key(&dir, &name, "ec:P-256");
        let csr = csr_with_attributes(
            &dir,
            &k,
            "CN=device oaep",
            &[(ASYMM_DECRYPT_KEY_ID, &rsa_ski)],
        );
        let answer = post(&server, label, &name, &csr, None);
        match kind {
            TokenKind::Kryoptic => {
                let leaf = check_answer(
                    &server,
                    &answer,
                    &name,
                    label,
                    &recip_args(&rsa_cert, &rsa_key),
                );
                let printed = run(openssl()
                    .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
                    .arg(dir.join(format!("{name}-key.der"))))
                .stdout;
                let printed = String::from_utf8_lossy(&printed).to_lowercase();
                assert!(printed.contains("rsaesoaep"), "{name}: {printed}");
                let sha = if hash == "SHA-384" {
                    "sha384"
                } else {
                    "sha256"
                };
                assert!(printed.contains(sha), "{name}: OAEP hash is not {sha}");
                assert!(leaf.is_file());
            }
            // SoftHSM2 (the nimbus plugin) does OAEP with SHA-1 only: a clean
            // refusal naming vendor, mechanism and hash, never SHA-1 instead.
            TokenKind::SoftHsm2 => {
                assert_eq!(answer.status, 501, "{name}: {}", answer.text());
                let text = answer.text();
                assert!(
                    text.contains("CKM_RSA_PKCS_OAEP")
                        && text.contains(hash)
                        && text.contains("nimbus"),
                    "{name}: {text}"
                );
            }
        }
    }

    // TLS-only delivery where the CA allows it: application/pkcs8.
    let k = openssl_key(&dir, "clear", "ec:P-256");
    let csr = csr_with_attributes(&dir, &k, "CN=device clear", &[]);
    let answer = post(&server, "skg-clear", "clear", &csr, None);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let parts = multipart_parts(&answer);
    assert_eq!(parts[0].0, "application/pkcs8");
    let pk8 = unbase64(&dir, "clear-key", &parts[0].1);
    let leaf = server.pkcs7_b64_to_pem(parts[1].1.as_bytes(), "clear-cert");
    assert_eq!(public_key_of(&pk8, false), public_key_of(&leaf, true));

    // Refusals, each with its reason.
    let k = openssl_key(&dir, "refused", "ec:P-256");
    let refusals: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "skg",
            csr_with_attributes(&dir, &k, "CN=r", &[]),
            400,
            "encrypted only",
        ),
        (
            "skg",
            csr_with_attributes(&dir, &k, "CN=r", &[(DECRYPT_KEY_ID, b"nope")]),
            400,
            "names no key-encryption key",
        ),
        (
            "skg",
            csr_with_attributes(&dir, &k, "CN=r", &[(ASYMM_DECRYPT_KEY_ID, &[7u8; 20])]),
            400,
            "matches neither",
        ),
        (
            "skg",
            csr_with_attributes(
                &dir,
                &k,
                "CN=r",
                &[(DECRYPT_KEY_ID, &kek_id), (ASYMM_DECRYPT_KEY_ID, &ski)],
            ),
            400,
            "exactly one",
        ),
        // A configured KEK that is not on the token: fails after the key was made.
        (
            "skg",
            csr_with_attributes(&dir, &k, "CN=r", &[(DECRYPT_KEY_ID, b"missing")]),
            500,
            "no such secret key",
        ),
    ];
    for (i, (label, csr, status, reason)) in refusals.iter().enumerate() {
        let answer = post(&server, label, &format!("refused-{i}"), csr, None);
        assert_eq!(answer.status, *status, "refusal {i}: {}", answer.text());
        assert!(
            answer.text().contains(reason),
            "refusal {i}: {:?} lacks {reason:?}",
            answer.text()
        );
    }
    let ml = server.dir.join("ml.key");
    run(openssl()
        .args(["genpkey", "-algorithm", "ML-DSA-44", "-out"])
        .arg(&ml));
    let (csr, _) = server.csr("ml", &["-key", ml.to_str().unwrap()], "/CN=ml", None);
    let answer = server.post_csr_basic(Some("skg"), "serverkeygen", &csr);
    assert_eq!(answer.status, 501, "{}", answer.text());
    let no_auth = server.curl(&[
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        "@/dev/null",
        &server.url(Some("skg"), "serverkeygen"),
    ]);
    assert_eq!(no_auth.status, 401);

    // Every certificate handed out is in the store, marked serverkeygen;
    // the refusals issued none.
    let handed_out = match kind {
        TokenKind::Kryoptic => 12,
        TokenKind::SoftHsm2 => 5,
    };
    let out = run(Command::new("sqlite3")
        .arg(dir.join("kipuka.db"))
        .arg("SELECT COUNT(*) FROM issued_certificates WHERE operation = 'serverkeygen'"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        handed_out.to_string()
    );
    // The private keys are nowhere in the log.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains("PRIVATE KEY"));
}

#[test]
fn serverkeygen_on_softhsm2() {
    serverkeygen_delivers(TokenKind::SoftHsm2);
}

#[test]
fn serverkeygen_on_kryoptic() {
    serverkeygen_delivers(TokenKind::Kryoptic);
}

/// Objects visible to this application on the token (token objects and
/// every session object of every session), through a pool session.
async fn object_count(pool: &std::sync::Arc<kipuka::hsm::SessionPool>) -> usize {
    pool.run(|s| {
        s.find_objects(&[])
            .map(|v| v.len())
            .map_err(kipuka::hsm::HsmError::pkcs11("C_FindObjects"))
    })
    .await
    .unwrap()
}

/// 100 generations on 4 sessions, every other one failing after the key
/// pair, CEK and transport key exist (its KEK is not on the token): the
/// token holds exactly as many objects afterwards as before. Counted inside
/// the process, because session objects are invisible to other processes.
async fn nothing_left_behind(kind: TokenKind) {
    let token = engine_token(kind);
    let pool = token.pool(4, RELAXED);
    // The good recipient: a pre-shared AES key on the token (the one method
    // both tokens do); the bad one names a key that is not there.
    {
        use cryptoki::object::{Attribute, KeyType, ObjectClass};
        let s = pool.context().open_rw_session().unwrap();
        if s.find_objects(&[Attribute::Label(b"count-kek".to_vec())])
            .unwrap()
            .is_empty()
        {
            s.create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Label(b"count-kek".to_vec()),
                Attribute::Value(vec![5u8; 32]),
                Attribute::Wrap(true),
                Attribute::Sensitive(true),
            ])
            .unwrap();
        }
    }
    let kek = |object: &str| {
        CekRecipient::Kek(
            format!("pkcs11:token={};object={object}", token.token.label)
                .parse()
                .unwrap(),
        )
    };
    let (good, bad) = (kek("count-kek"), kek("absent-kek"));
    let before = object_count(&pool).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let pool = pool.clone();
        let recipient = if i % 2 == 0 {
            good.clone()
        } else {
            bad.clone()
        };
        tasks.push(tokio::spawn(async move {
            let ctx = pool.context().clone();
            pool.run(move |s| {
                generate_and_wrap(
                    &ctx,
                    s,
                    KeyPairSpec::Ec(Curve::P256),
                    &[9u8; 32],
                    &recipient,
                )
                .map(|g| g.key.spki_der.len())
            })
            .await
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(e.to_string().contains("absent-kek"), "{e}");
                failed += 1;
            }
        }
    }
    assert_eq!((ok, failed), (50, 50));
    assert_eq!(
        object_count(&pool).await,
        before,
        "{kind}: objects were left on the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_left_behind_on_softhsm2() {
    nothing_left_behind(TokenKind::SoftHsm2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_left_behind_on_kryoptic() {
    nothing_left_behind(TokenKind::Kryoptic).await;
}

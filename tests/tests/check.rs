//! `kipuka check` on the repository's example configurations, against real
//! SoftHSM2 and Kryoptic tokens whose keys were made by the token tools and
//! whose CA certificates were made by OpenSSL.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use kipuka_tests::{
    artifacts::{kipuka_bin, out_of_tree_plugin, workspace_root},
    tokens::{openssl35, TestToken, TokenKind},
};

const PASSPHRASE: &str = "correct horse battery staple";

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    token: TestToken,
    config: PathBuf,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn openssl() -> Command {
    Command::new(openssl35().unwrap())
}

/// A CA certificate whose public key is `public_pem`, signed by a throwaway
/// key: `kipuka check` compares public keys, not who signed the certificate.
fn ca_cert(dir: &Path, public_pem: &Path, name: &str) {
    let signer = dir.join("throwaway.pem");
    if !signer.exists() {
        run(openssl()
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&signer));
    }
    run(openssl()
        .args([
            "x509",
            "-new",
            "-subj",
            &format!("/CN=kipuka test {name} CA"),
            "-days",
            "30",
            "-key",
        ])
        .arg(&signer)
        .arg("-force_pubkey")
        .arg(public_pem)
        .arg("-out")
        .arg(dir.join(format!("{name}-ca.pem"))));
}

fn export_pub(token: &TestToken, label: &str, dir: &Path) -> PathBuf {
    let der = dir.join(format!("{label}.der"));
    let out = token
        .pkcs11_tool([
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            label,
            "-o",
            der.to_str().unwrap(),
        ])
        .unwrap();
    assert!(out.status.success());
    let pem = dir.join(format!("{label}.pem"));
    run(openssl()
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&pem));
    pem
}

fn setup(kind: TokenKind) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let token = TestToken::create(kind, &dir.join("token"), "kipuka-dev")
        .unwrap_or_else(|e| panic!("{e:#}"));
    for (label, key_type, id) in [
        ("ec-ca-key", "EC:prime256v1", "01"),
        ("rsa-ca-key", "rsa:3072", "02"),
    ] {
        let out = token
            .pkcs11_tool([
                "--keypairgen",
                "--key-type",
                key_type,
                "--label",
                label,
                "--id",
                id,
                "--usage-sign",
            ])
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ca_cert(&ca_dir, &export_pub(&token, "ec-ca-key", &dir), "ec");
    ca_cert(&ca_dir, &export_pub(&token, "rsa-ca-key", &dir), "rsa");
    let mldsa_pub = dir.join("mldsa.pem");
    match kind {
        TokenKind::Kryoptic => {
            run(Command::new(env!("CARGO_BIN_EXE_mldsa-keygen"))
                .args([
                    token.module.to_str().unwrap(),
                    &token.label,
                    &token.user_pin,
                    "mldsa-ca-key",
                    "2",
                ])
                .arg(dir.join("mldsa.der"))
                .envs(token.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
            run(openssl()
                .args(["pkey", "-pubin", "-inform", "DER", "-in"])
                .arg(dir.join("mldsa.der"))
                .arg("-out")
                .arg(&mldsa_pub));
        }
        TokenKind::SoftHsm2 => {
            let plain = dir.join("mldsa-plain.pem");
            run(openssl()
                .args(["genpkey", "-algorithm", "ML-DSA-65", "-out"])
                .arg(&plain));
            run(openssl()
                .args([
                    "pkcs8",
                    "-topk8",
                    "-v2",
                    "aes-256-cbc",
                    "-passout",
                    "env:KIPUKA_MLDSA_PASSPHRASE",
                    "-in",
                ])
                .arg(&plain)
                .arg("-out")
                .arg(ca_dir.join("mldsa-ca-key.p8"))
                .env("KIPUKA_MLDSA_PASSPHRASE", PASSPHRASE));
            // The example configuration reads it from a file: `kipuka
            // check` below runs without it in its environment.
            std::fs::write(ca_dir.join("mldsa-passphrase"), format!("{PASSPHRASE}\n")).unwrap();
            run(openssl()
                .args(["pkey", "-pubout", "-in"])
                .arg(&plain)
                .arg("-out")
                .arg(&mldsa_pub));
        }
    }
    ca_cert(&ca_dir, &mldsa_pub, "mldsa");

    let example = match kind {
        TokenKind::SoftHsm2 => "softhsm2.toml",
        TokenKind::Kryoptic => "kryoptic.toml",
    };
    let text =
        std::fs::read_to_string(workspace_root().join("examples/config").join(example)).unwrap();
    let conf = &token.env[0].1;
    let text = text
        .replace("/etc/kipuka/ca/", &format!("{}/", ca_dir.display()))
        .replace("/etc/kipuka/tls/", &format!("{}/tls/", dir.display()))
        .replace("/etc/kipuka/softhsm2.conf", conf)
        .replace("/etc/kipuka/kryoptic.conf", conf)
        .replace(
            "/usr/lib/kryoptic/libkryoptic_pkcs11.so",
            token.module.to_str().unwrap(),
        )
        .replace(
            "/usr/local/lib/kipuka/plugins/libkipuka_plugin_nimbus.so",
            out_of_tree_plugin().to_str().unwrap(),
        )
        .replace("/var/lib/kipuka/", &format!("{}/", dir.display()));
    let config = dir.join("kipuka.toml");
    std::fs::write(&config, text).unwrap();
    Setup {
        _dir: tmp,
        dir,
        token,
        config,
    }
}

fn check(s: &Setup, config: &Path) -> Output {
    Command::new(kipuka_bin())
        .args(["check", "--config"])
        .arg(config)
        .env("KIPUKA_HSM_PIN", &s.token.user_pin)
        .env_remove("KIPUKA_MLDSA_PASSPHRASE")
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KRYOPTIC_CONF")
        .output()
        .unwrap()
}

#[test]
fn check_passes_on_the_example_configurations_and_reports_each_ca() {
    for kind in TokenKind::ALL {
        let s = setup(kind);
        let out = check(&s, &s.config);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{kind}: kipuka check failed:\n{stdout}\n{stderr}"
        );
        let provider = if kind == TokenKind::SoftHsm2 {
            "nimbus"
        } else {
            "kryoptic"
        };
        assert!(
            stdout.contains(&format!("provider:  {provider}")),
            "{kind}:\n{stdout}"
        );
        assert!(stdout.contains("pool of 4"), "{kind}:\n{stdout}");
        assert!(
            stdout.contains("CA dev-ec") && stdout.contains("ECDSA P-256 — hardware-held"),
            "{kind}:\n{stdout}"
        );
        assert!(
            stdout.contains("ECDSA with SHA-256 via CKM_ECDSA"),
            "{kind}:\n{stdout}"
        );
        assert!(
            stdout.contains("RSA-3072 — hardware-held")
                && stdout.contains("RSASSA-PSS with SHA-256 via CKM_RSA_PKCS_PSS"),
            "{kind}:\n{stdout}"
        );
        // How /serverkeygen delivers keys, per token.
        let export = match kind {
            TokenKind::SoftHsm2 => "CKM_AES_KEY_WRAP_PAD",
            TokenKind::Kryoptic => "CKM_AES_CBC_PAD",
        };
        assert!(
            stdout.contains("keygen:    keys made in the HSM")
                && stdout.contains(export)
                && stdout.contains("content AES-256-CBC (EnvelopedData)"),
            "{kind}:\n{stdout}"
        );
        let oaep = match kind {
            TokenKind::SoftHsm2 => "RSA-OAEP SHA-256 recipients: no:",
            TokenKind::Kryoptic => "RSA-OAEP SHA-256 recipients: yes",
        };
        assert!(stdout.contains(oaep), "{kind}:\n{stdout}");
        match kind {
            TokenKind::SoftHsm2 => {
                assert!(stdout.contains("ML-DSA-65 — SOFTWARE-HELD"), "{stdout}")
            }
            TokenKind::Kryoptic => assert!(
                stdout.contains("ML-DSA-65 — hardware-held") && stdout.contains("via CKM_ML_DSA"),
                "{stdout}"
            ),
        }
        assert!(stdout.contains("ok: 3 CA(s) ready"), "{kind}:\n{stdout}");
    }
}

#[test]
fn check_fails_when_a_ca_certificate_does_not_match_its_key() {
    for kind in TokenKind::ALL {
        let s = setup(kind);
        let text = std::fs::read_to_string(&s.config).unwrap();
        // The EC CA pointed at the RSA CA's certificate.
        let swapped = text.replacen("ec-ca.pem\"\nkey", "rsa-ca.pem\"\nkey", 1);
        assert_ne!(swapped, text, "the example's ec CA block changed shape");
        let bad = s.dir.join("swapped.toml");
        std::fs::write(&bad, swapped).unwrap();
        let out = check(&s, &bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{kind}: check passed with a mismatched certificate"
        );
        assert!(
            stderr.contains("CA dev-ec") && stderr.contains("does not match the key"),
            "{kind}: {stderr}"
        );
    }
}

#[test]
fn check_fails_on_a_wrong_pin_and_on_a_missing_token() {
    let s = setup(TokenKind::SoftHsm2);
    let out = Command::new(kipuka_bin())
        .args(["check", "--config"])
        .arg(&s.config)
        .env("KIPUKA_HSM_PIN", "not-the-pin")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("C_Login failed: CKR_PIN_INCORRECT"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-pin"),
        "the PIN must never be printed: {stderr}"
    );

    let text = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("kipuka-dev", "no-such-token");
    let bad = s.dir.join("missing-token.toml");
    std::fs::write(&bad, text).unwrap();
    let out = check(&s, &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no token label \"no-such-token\"") && stderr.contains("kipuka-dev"),
        "{stderr}"
    );
}

#[test]
fn check_names_a_missing_or_wrong_passphrase_file() {
    let s = setup(TokenKind::SoftHsm2);
    let file = s.dir.join("ca/mldsa-passphrase");
    std::fs::remove_file(&file).unwrap();
    let out = check(&s, &s.config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("dev-mldsa")
            && stderr.contains(&format!("cannot read passphrase file {}", file.display())),
        "{stderr}"
    );
    std::fs::write(&file, "not the passphrase\n").unwrap();
    let out = check(&s, &s.config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("dev-mldsa"), "{stderr}");
    assert!(!stderr.contains("not the passphrase"), "{stderr}");
}

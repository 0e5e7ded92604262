//! The software tokens work: both initialise, make EC and RSA key pairs through pkcs11-tool,
//! list them, and Kryoptic offers ML-DSA. Fails (does not skip) when a token is missing:
//! run `cargo xtask test`.

use anyhow::Result;
use kipuka_tests::tokens::{openssl35, TestToken, TokenKind};
use std::process::Command;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keys_on(kind: TokenKind) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let token = TestToken::create(kind, tmp.path(), "kipuka-test")?;

    token.pkcs11_tool([
        "--keypairgen",
        "--key-type",
        "EC:prime256v1",
        "--label",
        "ec-key",
        "--id",
        "01",
    ])?;
    token.pkcs11_tool([
        "--keypairgen",
        "--key-type",
        "rsa:2048",
        "--label",
        "rsa-key",
        "--id",
        "02",
    ])?;

    let listed = stdout(&token.pkcs11_tool(["--list-objects"])?);
    for (label, class) in [
        ("ec-key", "Private Key Object; EC"),
        ("ec-key", "Public Key Object; EC"),
        ("rsa-key", "Private Key Object; RSA"),
        ("rsa-key", "Public Key Object; RSA"),
    ] {
        let found = listed.split("\n\n").any(|object| {
            object.contains(class) && object.contains(&format!("label:      {label}"))
        });
        assert!(found, "{kind}: no `{class}` labelled {label} in:\n{listed}");
    }
    Ok(())
}

#[test]
fn softhsm2_makes_ec_and_rsa_keys() -> Result<()> {
    keys_on(TokenKind::SoftHsm2)
}

#[test]
fn kryoptic_makes_ec_and_rsa_keys() -> Result<()> {
    keys_on(TokenKind::Kryoptic)
}

#[test]
fn kryoptic_offers_ml_dsa() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let token = TestToken::create(TokenKind::Kryoptic, tmp.path(), "kipuka-mldsa")?;
    let mechanisms = stdout(&token.pkcs11_tool_anonymous(["--list-mechanisms"])?);
    // pkcs11-tool 0.23 does not know the PKCS#11 3.2 ML-DSA names and prints the numbers.
    for (number, name) in [("0x1c", "CKM_ML_DSA_KEY_PAIR_GEN"), ("0x1d", "CKM_ML_DSA")] {
        assert!(
            mechanisms.lines().any(|l| is_mechanism(l, number, name)),
            "Kryoptic does not list {name} ({number}):\n{mechanisms}"
        );
    }
    Ok(())
}

/// A `pkcs11-tool -M` line for the mechanism `number` (e.g. `0x1d`) or `name`.
fn is_mechanism(line: &str, number: &str, name: &str) -> bool {
    let mech = line.trim().split([',', ' ']).next().unwrap_or("");
    mech == name || mech.eq_ignore_ascii_case(&format!("{number}")) || {
        // Also accept a zero-padded number, e.g. 0x0000001D.
        let digits = number.trim_start_matches("0x");
        mech.to_ascii_lowercase()
            .strip_prefix("0x")
            .is_some_and(|m| m.trim_start_matches('0') == digits)
    }
}

#[test]
fn openssl35_is_openssl_3_5() -> Result<()> {
    let out = Command::new(openssl35()?).arg("version").output()?;
    let version = stdout(&out);
    assert!(version.starts_with("OpenSSL 3.5."), "{version}");
    Ok(())
}

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
    let objects = objects(&listed);
    for (label, class) in [
        ("ec-key", "Private Key Object; EC"),
        ("ec-key", "Public Key Object; EC"),
        ("rsa-key", "Private Key Object; RSA"),
        ("rsa-key", "Public Key Object; RSA"),
    ] {
        let found = objects
            .iter()
            .any(|(header, attrs)| header.starts_with(class) && attrs.get("label") == Some(&label));
        assert!(found, "{kind}: no `{class}` labelled {label} in:\n{listed}");
    }
    Ok(())
}

/// Splits `pkcs11-tool --list-objects` output into (header line, attributes): an object is an
/// unindented line (`Private Key Object; EC`) followed by indented `name: value` lines.
/// (Kryoptic also lists one `Object N, type 7` per mechanism: CKO_MECHANISM objects.)
fn objects(listed: &str) -> Vec<(&str, std::collections::HashMap<&str, &str>)> {
    let mut objects: Vec<(&str, std::collections::HashMap<&str, &str>)> = Vec::new();
    for line in listed.lines() {
        if !line.starts_with(char::is_whitespace) {
            objects.push((line, Default::default()));
        } else if let (Some((_, attrs)), Some((name, value))) =
            (objects.last_mut(), line.split_once(':'))
        {
            attrs.insert(name.trim(), value.trim());
        }
    }
    objects
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
    // pkcs11-tool 0.23 does not know the PKCS#11 3.2 ML-DSA mechanisms and prints their
    // numbers: `  mechtype-0x1D, keySize={1312,2592}, sign, verify`.
    for (printed, name) in [
        ("mechtype-0x1C", "CKM_ML_DSA_KEY_PAIR_GEN"),
        ("mechtype-0x1D", "CKM_ML_DSA"),
    ] {
        let listed = mechanisms.lines().any(|line| {
            let mech = line.trim().split(',').next().unwrap_or("");
            // A newer pkcs11-tool prints a name instead, e.g. `ML-DSA`.
            mech.eq_ignore_ascii_case(printed)
                || mech == name.trim_start_matches("CKM_").replace('_', "-")
        });
        assert!(listed, "Kryoptic does not offer {name}:\n{mechanisms}");
    }
    Ok(())
}

#[test]
fn openssl35_is_openssl_3_5() -> Result<()> {
    let out = Command::new(openssl35()?).arg("version").output()?;
    let version = stdout(&out);
    assert!(version.starts_with("OpenSSL 3.5."), "{version}");
    Ok(())
}

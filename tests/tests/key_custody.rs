//! CA key custody as SECURITY.md states it: a CA key the token lets out
//! (`CKA_EXTRACTABLE=true`) is named at start-up by `kipuka check` and
//! `kipuka serve` — a warning, not a refusal — and a non-extractable one is
//! not. The token's own tool (OpenSC `pkcs11-tool`) says which is which.

use kipuka_tests::{
    est_server::{run, EstServer},
    tokens::TokenKind,
};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn an_extractable_ca_key_is_named_at_start_up_and_a_non_extractable_one_is_not() {
    let mut s = EstServer::start(TokenKind::SoftHsm2);
    s.stop();
    let out = s
        .token
        .pkcs11_tool([
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "loose-ca-key",
            "--id",
            "09",
            "--usage-sign",
            "--sensitive",
            "--extractable",
        ])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Independent view: the token says the new key is extractable and the
    // harness's EC CA key is not.
    let listing = text(
        &s.token
            .pkcs11_tool(["--list-objects", "--type", "privkey"])
            .unwrap(),
    );
    let access_of = |label: &str| -> String {
        let block = listing
            .split("Private Key Object")
            .find(|b| b.contains(&format!("label:      {label}")))
            .unwrap_or_else(|| panic!("{label} not listed:\n{listing}"));
        block
            .lines()
            .find(|l| l.trim_start().starts_with("Access:"))
            .unwrap_or_else(|| panic!("no Access line for {label}:\n{block}"))
            .to_string()
    };
    assert!(
        !access_of("loose-ca-key").contains("never extractable"),
        "{listing}"
    );
    assert!(
        access_of("ec-ca-key").contains("never extractable"),
        "{listing}"
    );

    let config = std::fs::read_to_string(&s.config).unwrap();
    let label = s.token.label.clone();
    std::fs::write(
        &s.config,
        format!(
            "{config}\n[[ca]]\nid = \"loose\"\ncert = \"{}\"\nkey = \"pkcs11:token={label};object=loose-ca-key\"\n",
            s.dir.join("ca/loose.pem").display()
        ),
    )
    .unwrap();
    run(s
        .kipuka()
        .args(["ca", "init", "--config"])
        .arg(&s.config)
        .args(["--ca", "loose", "--subject", "CN=loose CA", "--days", "30"]));

    let warning = format!(
        "CA key pkcs11:token={label};object=loose-ca-key is extractable (CKA_EXTRACTABLE=true): it can leave the HSM"
    );
    let check = s
        .kipuka()
        .args(["check", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    let report = text(&check);
    assert!(
        check.status.success(),
        "a warning, not a refusal:\n{report}"
    );
    assert!(report.contains(&warning), "{report}");
    assert_eq!(
        report.matches("is extractable").count(),
        1,
        "only the loose key is named:\n{report}"
    );

    s.launch();
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains(&warning), "{log}");
    let ready = s.curl(&[&format!("{}/readyz", s.base)]);
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(ready.text().contains("loose healthy"), "{}", ready.text());
}

//! One-time enrollment codes end to end: `kipuka enroll-codes` makes them,
//! curl enrolls with them against two `kipuka serve` processes on one
//! SQLite store, OpenSSL checks what was issued.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    time::Duration,
};

use kipuka_tests::{
    est_client::Answer,
    est_server::{run, EstOptions, EstServer},
    tokens::TokenKind,
};

const P256: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

const DEV_CA: &str = r#"
[[ca]]
id = "dev"
cert = "{dir}/ca/dev.pem"
key = "pkcs11:token={label};object=ec-ca-key"
[ca.profile]
allowed_keys = ["ec:P-256"]
[ca.policy]
allow_cn = ["{user}"]
allow_dns = ["{user}.devices.kipuka.test"]
"#;

#[derive(Debug)]
struct Code {
    user: String,
    password: String,
}

fn create(s: &EstServer, ca: &str, name: &str, uses: &str, expires: &str) -> Result<Code, String> {
    let out = s
        .kipuka()
        .args(["enroll-codes", "create", "--config"])
        .arg(&s.config)
        .args([
            "--ca",
            ca,
            "--name",
            name,
            "--uses",
            uses,
            "--expires",
            expires,
            "--json",
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(Code {
        user: v["user"].as_str().unwrap().to_string(),
        password: v["password"].as_str().unwrap().to_string(),
    })
}

fn list(s: &EstServer) -> serde_json::Value {
    let out = run(s
        .kipuka()
        .args(["enroll-codes", "list", "--json", "--config"])
        .arg(&s.config));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn enroll(s: &EstServer, base: &str, code: &Code, name: &str, cn: &str) -> Answer {
    let (csr, _) = s.csr(name, &P256, &format!("/CN={cn}"), None);
    s.curl(&[
        "-u",
        &format!("{}:{}", code.user, code.password),
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        &format!("@{}", csr.display()),
        &format!("{base}/.well-known/est/dev/simpleenroll"),
    ])
}

/// A second `kipuka serve` on the same configuration (and store); its URL.
fn second_server(s: &EstServer) -> (Child, String) {
    let log = std::fs::File::create(s.dir.join("server2.log")).unwrap();
    let mut child = s
        .kipuka()
        .args(["serve", "--config"])
        .arg(&s.config)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("kipuka listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(180))
        .expect("the second kipuka serve did not start");
    (child, url)
}

#[test]
fn a_one_use_code_gives_exactly_one_certificate_across_two_servers() {
    let s = EstServer::start_opts(
        TokenKind::SoftHsm2,
        EstOptions {
            extra_ca: Some(("dev".into(), DEV_CA.into())),
            ..EstOptions::default()
        },
    );
    let (mut second, second_url) = second_server(&s);

    let code = create(&s, "dev", "device-7", "1", "24h").unwrap();
    assert!(code.user.starts_with("code-"), "{}", code.user);
    // 18 random bytes, base64url: 144 bits.
    assert!(code.password.len() >= 24, "{}", code.password);

    // 16 at once, half to each process: exactly one certificate.
    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let base = if i % 2 == 0 {
                    s.base.clone()
                } else {
                    second_url.clone()
                };
                let code = &code;
                let s = &s;
                scope.spawn(move || enroll(s, &base, code, &format!("race-{i}"), "device-7"))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(
        ok.len(),
        1,
        "{:?}",
        answers
            .iter()
            .map(|a| (a.status, a.text()))
            .collect::<Vec<_>>()
    );
    for a in answers.iter().filter(|a| a.status != 200) {
        assert!(
            matches!(a.status, 401 | 403) && a.text().contains("used up"),
            "{} {}",
            a.status,
            a.text()
        );
    }
    let leaf = s.pkcs7_to_pem(ok[0], "device-7");
    let chain = s.pkcs7_to_pem(&s.curl(&[&s.url(Some("dev"), "cacerts")]), "dev-ca");
    s.verify(&chain, &leaf).unwrap();
    let subject = run(kipuka_tests::est_server::openssl()
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(&leaf));
    assert_eq!(
        String::from_utf8_lossy(&subject.stdout).trim(),
        "subject=CN=device-7"
    );
    let listed = list(&s);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user"] == code.user.as_str())
        .unwrap();
    assert_eq!(
        (row["uses_left"].as_u64(), row["state"].as_str()),
        (Some(0), Some("used up"))
    );

    // A code enrolls only its name; a refused name does not use it up.
    let code2 = create(&s, "dev", "device-8", "3", "24h").unwrap();
    let wrong = enroll(&s, &s.base, &code2, "wrong-name", "device-9");
    assert_eq!(wrong.status, 403, "{}", wrong.text());
    assert!(
        wrong
            .text()
            .contains("name CN=device-9 not allowed by ca \"dev\" policy allow_cn"),
        "{}",
        wrong.text()
    );
    let right = enroll(&s, &second_url, &code2, "right-name", "device-8");
    assert_eq!(right.status, 200, "{}", right.text());
    // A wrong password is refused like an unknown user.
    let forged = Code {
        user: code2.user.clone(),
        password: "not-the-password".into(),
    };
    let bad = enroll(&s, &s.base, &forged, "forged", "device-8");
    assert_eq!(
        (bad.status, bad.text().trim()),
        (401, "unknown user or wrong password")
    );
    // Revoked: refused.
    run(s
        .kipuka()
        .args(["enroll-codes", "revoke", "--config"])
        .arg(&s.config)
        .arg(&code2.user));
    let revoked = enroll(&s, &s.base, &code2, "revoked", "device-8");
    assert_eq!(revoked.status, 401, "{}", revoked.text());
    assert!(revoked.text().contains("is revoked"), "{}", revoked.text());

    // Expired: refused.
    let code3 = create(&s, "dev", "device-9", "1", "1s").unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let expired = enroll(&s, &s.base, &code3, "expired", "device-9");
    assert_eq!(expired.status, 401, "{}", expired.text());
    assert!(expired.text().contains("is expired"), "{}", expired.text());

    // A CA without [ca.policy] gets no codes (they could enroll any name there).
    let err = create(&s, "ec", "device-1", "1", "1h").unwrap_err();
    assert!(err.contains("has no [ca.policy]"), "{err}");

    // The codes are nowhere in clear: not in the database, not in the logs.
    let _ = second.kill();
    let _ = second.wait();
    let mut stored = Vec::new();
    for f in ["kipuka.db", "kipuka.db-wal"] {
        stored.extend(std::fs::read(s.dir.join(f)).unwrap_or_default());
    }
    assert!(
        stored.windows(9).any(|w| w == b"$argon2id"),
        "no argon2 hash in the database"
    );
    let logs = [
        std::fs::read(&s.log).unwrap(),
        std::fs::read(s.dir.join("server2.log")).unwrap(),
    ]
    .concat();
    for secret in [&code.password, &code2.password, &code3.password] {
        for (what, bytes) in [("database", &stored), ("logs", &logs)] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a code's password is in the {what}"
            );
        }
    }
}

#[test]
fn limits_answer_429_with_retry_after() {
    use kipuka_tests::est_server::{PASSWORD, USER};
    let mut s = EstServer::start_opts(
        TokenKind::SoftHsm2,
        EstOptions {
            no_launch: true,
            ..EstOptions::default()
        },
    );
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!(
            "{config}\n[limits]\nenrollments_per_hour = 2\nburst = 2\n\
             failed_auth_per_minute = 3\nfailed_auth_burst = 3\n"
        ),
    )
    .unwrap();
    s.launch();
    let post = |name: &str, credentials: &str| {
        let (csr, _) = s.csr(name, &P256, &format!("/CN={name}"), None);
        s.curl(&[
            "-u",
            credentials,
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", csr.display()),
            &s.url(None, "simpleenroll"),
        ])
    };
    let good = format!("{USER}:{PASSWORD}");
    assert_eq!(post("l1", &good).status, 200);
    assert_eq!(post("l2", &good).status, 200);
    let limited = post("l3", &good);
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(
        limited.text().contains("too many enrollments"),
        "{}",
        limited.text()
    );
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    // One enrollment comes back every 30 minutes.
    assert!((1..=1800).contains(&retry), "{retry}");

    // Three bad passwords for another name, then even its right password waits.
    for i in 0..3 {
        let bad = post(&format!("b{i}"), "mallory:wrong");
        assert_eq!(bad.status, 401, "{}", bad.text());
    }
    let refused = post("b3", "mallory:wrong");
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(
        refused.text().contains("too many failed authentications"),
        "{}",
        refused.text()
    );
    assert!(refused.header("retry-after").is_some());
    // After a pause, so that a flood gets few answers.
    assert!(
        refused.elapsed >= std::time::Duration::from_millis(950),
        "{:?}",
        refused.elapsed
    );
}

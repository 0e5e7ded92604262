//! The four hardware plugins driven against their emulated vendor: `kipuka
//! serve` on the test-only PKCS#11 module (`tests/pkcs11-shim`), which
//! forwards to SoftHSM2 or Kryoptic and behaves as the vendor's library
//! does (session limit, idle timeout, mechanism list, OAEP hashes, required
//! environment, manufacturer). Requests are real EST enrollments; every
//! certificate is verified by the OpenSSL command line.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use kipuka::hsm::{
    context::{Pkcs11Context, TokenSelector},
    pin::PinSource,
    pool::{PoolSettings, SessionPool},
    wrap, HsmError,
};
use kipuka_plugin_api::{HashAlg, MechanismId, UserType};
use kipuka_tests::{
    est_client::{ca_pem, certs_from_pkcs7_b64, ec_csrs, load, openssl_verify_all, EstClient},
    est_server::{openssl, run, EstOptions, EstServer, PASSWORD, USER},
    shim::{start_behind_shim, vendor_profile, Shim, CONFIG_VAR},
    tokens::{TestToken, TokenKind},
};
use serde_json::json;

const PKCS10: &str = "Content-Type: application/pkcs10";

/// How one vendor is emulated and what the pool must come to.
struct Case {
    plugin: &'static str,
    backend: TokenKind,
    /// `[hsm] provider`, when the manufacturer is shared by two plugins.
    provider: Option<&'static str>,
    /// `[hsm] pool_size`, above the limit.
    pool_size: u32,
    /// A session limit the token itself reports (`ulMaxSessionCount`).
    token_max: Option<u64>,
    /// The pool size kipuka must arrive at.
    expected_pool: u64,
    /// Environment the vendor library needs.
    env: Vec<(String, String)>,
}

fn start(case: &Case) -> (EstServer, Shim) {
    start_behind_shim(
        case.backend,
        Some(case.plugin),
        EstOptions {
            provider: case.provider.map(str::to_string),
            pool_size: Some(case.pool_size),
            mldsa_software: true,
            env: case.env.clone(),
            ..EstOptions::default()
        },
        |shim| {
            if let Some(max) = case.token_max {
                shim.set("max_sessions", json!(max));
            }
        },
    )
}

/// The log without terminal colours.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn basic() -> String {
    format!("{USER}:{PASSWORD}")
}

/// `n` concurrent enrollments at `/ec`: all 200, each certificate verified.
fn burst(s: &EstServer, workers: usize, total: usize) {
    let client = EstClient::new(s);
    let csrs = ec_csrs(s, "burst", 4);
    let path = "/.well-known/est/ec/simpleenroll";
    let answers = load(
        &client,
        total,
        workers,
        Instant::now() + Duration::from_secs(120),
        None,
        |i| client.post_request(path, &csrs[i % csrs.len()]),
    );
    assert_eq!(answers.len(), total, "every request was answered");
    let mut certs = Vec::new();
    for (i, a) in &answers {
        assert_eq!(a.status, 200, "request {i}: {} {}", a.status, a.text());
        let c = certs_from_pkcs7_b64(&a.body).expect("certs-only PKCS#7");
        assert_eq!(c.len(), 1);
        certs.extend(c);
    }
    openssl_verify_all(&s.dir, &ca_pem(s, "ec"), &certs);
}

fn enroll_and_verify(s: &EstServer, label: &str, key_args: &[&str]) {
    let (csr, _) = s.csr(
        &format!("{label}-one"),
        key_args,
        &format!("/CN={label}-one"),
        None,
    );
    let a = s.curl(&[
        "-u",
        &basic(),
        "-H",
        PKCS10,
        "--data-binary",
        &format!("@{}", csr.display()),
        &s.url(Some(label), "simpleenroll"),
    ]);
    assert_eq!(a.status, 200, "{label}: {}", a.text());
    let leaf = s.pkcs7_to_pem(&a, &format!("{label}-one-leaf"));
    s.verify(&ca_pem(s, label), &leaf)
        .unwrap_or_else(|e| panic!("{label}: OpenSSL rejects the certificate: {e}"));
}

fn check_vendor(case: Case) {
    let (s, mut shim) = start(&case);
    let log = strip_ansi(&std::fs::read_to_string(&s.log).unwrap());
    let ready = log
        .lines()
        .find(|l| l.contains("HSM ready"))
        .unwrap_or_else(|| panic!("no 'HSM ready' line:\n{log}"));
    assert!(
        ready.contains(&format!("provider={}", case.plugin))
            || ready.contains(&format!("\"provider\":\"{}\"", case.plugin)),
        "{}: {ready}",
        case.plugin
    );
    if case.provider.is_none() {
        assert!(
            ready.contains("Manufacturer"),
            "{}: chosen by its manufacturer string: {ready}",
            case.plugin
        );
    }
    assert!(
        ready.contains(&format!("pool={}", case.expected_pool))
            || ready.contains(&format!("\"pool\":{}", case.expected_pool)),
        "{}: pool of {}: {ready}",
        case.plugin,
        case.expected_pool
    );
    // ML-DSA: none of the four has it in this emulation (Utimaco's is
    // firmware-dependent and absent): the software fallback signs.
    let mldsa = log
        .lines()
        .find(|l| l.contains("CA ready") && l.contains("mldsa"))
        .unwrap_or_else(|| panic!("no mldsa CA line:\n{log}"));
    assert!(mldsa.contains("software"), "{}: {mldsa}", case.plugin);
    enroll_and_verify(&s, "mldsa", &["-newkey", "ML-DSA-65"]);
    enroll_and_verify(&s, "rsa", &["-newkey", "rsa:2048"]);

    // A network HSM's latency, switched on while the server runs: enough
    // signatures in flight to need every session the vendor allows.
    shim.set("sign_delay_ms", json!([150, 250]));
    std::thread::sleep(Duration::from_millis(200));
    let workers = case.expected_pool as usize + 12;
    burst(&s, workers, workers * 3);
    // The shim writes its counters at most every 100 ms; the next health
    // check (every 2 s) makes it write the last ones.
    std::thread::sleep(Duration::from_millis(2500));
    let stats = shim.stats();
    assert_eq!(
        stats["pid"].as_u64(),
        s.pid().map(u64::from),
        "counters of the server process: {stats}"
    );
    assert_eq!(
        stats["high_water"].as_u64(),
        Some(case.expected_pool),
        "{}: the pool uses every session allowed and no more: {stats}",
        case.plugin
    );
    assert_eq!(
        stats["refused_session_count"].as_u64(),
        Some(0),
        "{}: never over the vendor's limit: {stats}",
        case.plugin
    );
    assert!(
        stats["sign_calls"].as_u64().unwrap_or(0) >= (workers * 3) as u64,
        "{stats}"
    );
}

#[test]
fn nshield_licence_limit_from_the_token_bounds_the_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let nfast = tmp.path().join("nfast");
    std::fs::create_dir_all(nfast.join("kmdata/local")).unwrap();
    check_vendor(Case {
        plugin: "nshield",
        backend: TokenKind::SoftHsm2,
        provider: None,
        pool_size: 300,
        // A module licensed for fewer sessions than the Solo XC's 256 says so.
        token_max: Some(24),
        expected_pool: 24,
        env: vec![
            ("NFAST_HOME".into(), nfast.display().to_string()),
            (
                "NFAST_KMDATA".into(),
                nfast.join("kmdata").display().to_string(),
            ),
        ],
    });
}

#[test]
fn utimaco_pool_stays_within_128_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cs_pkcs11_R3.cfg");
    std::fs::write(
        &cfg,
        "[Global]\nLogging = 0\n[CryptoServer]\nDevice = TCP:127.0.0.1:3001\n",
    )
    .unwrap();
    check_vendor(Case {
        plugin: "utimaco",
        backend: TokenKind::Kryoptic,
        provider: None,
        pool_size: 150,
        token_max: None,
        expected_pool: 128,
        env: vec![("CS_PKCS11_R3_CFG".into(), cfg.display().to_string())],
    });
}

#[test]
fn luna_pool_stays_within_64_sessions() {
    check_vendor(Case {
        plugin: "luna",
        backend: TokenKind::SoftHsm2,
        // "SafeNet" is claimed by luna and thales-csp alike.
        provider: Some("luna"),
        pool_size: 100,
        token_max: None,
        expected_pool: 64,
        env: vec![],
    });
}

#[test]
fn thales_csp_pool_follows_the_slot_limit_the_token_reports() {
    check_vendor(Case {
        plugin: "thales-csp",
        backend: TokenKind::SoftHsm2,
        provider: Some("thales-csp"),
        pool_size: 40,
        // ProtectServer: per-slot limit (CKA_MAX_SESSIONS), reported by the token.
        token_max: Some(16),
        expected_pool: 16,
        env: vec![("ET_HSM_NETCLIENT_SERVERLIST".into(), "127.0.0.1".into())],
    });
}

#[test]
fn a_manufacturer_two_plugins_claim_needs_an_explicit_provider() {
    let (mut s, _shim) = start_behind_shim(
        TokenKind::SoftHsm2,
        Some("luna"),
        EstOptions {
            provider: Some("luna".into()),
            mldsa_software: true,
            no_launch: true,
            ..EstOptions::default()
        },
        |_| (),
    );
    // Without `provider`, "SafeNet, Inc." matches luna and thales-csp.
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, config.replace("provider = \"luna\"\n", "")).unwrap();
    let log = s
        .try_launch()
        .expect_err("an ambiguous manufacturer must not start");
    assert!(
        log.contains("luna") && log.contains("thales-csp") && log.contains("provider"),
        "{log}"
    );
}

#[test]
fn luna_idle_timeout_causes_no_failed_request() {
    let (mut s, mut shim) = start_behind_shim(
        TokenKind::SoftHsm2,
        Some("luna"),
        EstOptions {
            provider: Some("luna".into()),
            mldsa_software: true,
            // Far above the partition's timeout: kipuka's keep-alive does
            // not save the sessions, so they do expire.
            health_check_interval_secs: Some(60),
            ..EstOptions::default()
        },
        |_| (),
    );
    let timeout_ms = 1500u64;
    shim.set("idle_timeout_ms", json!(timeout_ms));
    let client = EstClient::new(&s);
    let csrs = ec_csrs(&s, "idle", 2);
    let path = "/.well-known/est/ec/simpleenroll";
    // Phase 1: several sessions open (a concurrent burst), then requests
    // spaced past the timeout, so every idle session has expired each time.
    shim.set("sign_delay_ms", json!([100, 100]));
    let phase = |rounds: usize, gap: Duration| {
        let mut failures = Vec::new();
        for round in 0..rounds {
            let answers = load(
                &client,
                6,
                6,
                Instant::now() + Duration::from_secs(60),
                None,
                |i| client.post_request(path, &csrs[i % 2]),
            );
            for (i, a) in answers {
                if a.status != 200 {
                    failures.push(format!(
                        "round {round} request {i}: {} {}",
                        a.status,
                        a.text()
                    ));
                }
            }
            std::thread::sleep(gap);
        }
        failures
    };
    let failures = phase(4, Duration::from_millis(timeout_ms + 700));
    std::thread::sleep(Duration::from_millis(300));
    let expired = shim.stat("idle_expired");
    assert!(
        failures.is_empty(),
        "idle sessions expired by the partition made requests fail:\n{}",
        failures.join("\n")
    );
    assert!(
        expired >= 3,
        "the emulated partition closed idle sessions ({})",
        shim.stats()
    );

    // Phase 2: kipuka's keep-alive shorter than the partition's timeout
    // (the matrix's advice): no session expires at all.
    s.stop();
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        config.replace(
            "health_check_interval_secs = 60",
            "health_check_interval_secs = 1",
        ),
    )
    .unwrap();
    s.launch();
    let before = shim.stat("idle_expired");
    let client2 = EstClient::new(&s);
    let answers = load(
        &client2,
        6,
        6,
        Instant::now() + Duration::from_secs(60),
        None,
        |i| client2.post_request(path, &csrs[i % 2]),
    );
    assert!(answers.iter().all(|(_, a)| a.status == 200));
    std::thread::sleep(Duration::from_millis(timeout_ms * 3));
    let answers = load(
        &client2,
        6,
        6,
        Instant::now() + Duration::from_secs(60),
        None,
        |i| client2.post_request(path, &csrs[i % 2]),
    );
    assert!(answers.iter().all(|(_, a)| a.status == 200));
    std::thread::sleep(Duration::from_millis(300));
    let stats = shim.stats();
    assert_eq!(
        stats["pid"].as_u64(),
        s.pid().map(u64::from),
        "counters of the restarted server: {stats}"
    );
    assert_eq!(
        stats["idle_expired"].as_u64(),
        Some(0),
        "the health check keeps sessions alive (was {before} before the restart): {stats}"
    );
}

#[test]
fn nshield_starts_only_with_its_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let nfast = tmp.path().join("nfast");
    std::fs::create_dir_all(nfast.join("kmdata/local")).unwrap();
    let nfast_env = vec![
        ("NFAST_HOME".to_string(), nfast.display().to_string()),
        (
            "NFAST_KMDATA".to_string(),
            nfast.join("kmdata").display().to_string(),
        ),
    ];
    let (mut s, shim) = start_behind_shim(
        TokenKind::SoftHsm2,
        Some("nshield"),
        EstOptions {
            mldsa_software: true,
            env: nfast_env.clone(),
            ..EstOptions::default()
        },
        |_| (),
    );
    let shim_env = shim.env();
    enroll_and_verify(
        &s,
        "ec",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    s.stop();

    // Without NFAST_*: chosen by manufacturer, the library cannot even be
    // asked who made it.
    s.env = vec![shim_env.clone()];
    let log = s
        .try_launch()
        .expect_err("nShield without its environment must not start");
    // The vendor library says so (the shim, as libcknfast would), and so
    // does kipuka, naming the variables and the plugin that needs them.
    assert!(
        log.contains("NFAST_HOME is not set"),
        "the library names what is missing:\n{log}"
    );
    let host_line = log
        .lines()
        .find(|l| l.starts_with("kipuka serve:"))
        .unwrap_or_else(|| panic!("no error line from kipuka:\n{log}"));
    assert!(
        host_line.contains("NFAST_HOME (nshield)") && host_line.contains("NFAST_KMDATA (nshield)"),
        "{host_line}"
    );
    // With `provider = "nshield"` and no NFAST_*, kipuka exports the
    // plugin's defaults (/opt/nfast), which do not exist here.
    assert!(!std::path::Path::new("/opt/nfast").exists());
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        config.replacen("[hsm]\n", "[hsm]\nprovider = \"nshield\"\n", 1),
    )
    .unwrap();
    let log2 = s
        .try_launch()
        .expect_err("nShield with a missing Security World must not start");
    let fresh = &log2[log.len().min(log2.len())..];
    let host_line = fresh
        .lines()
        .find(|l| l.starts_with("kipuka serve:"))
        .unwrap_or_else(|| panic!("no error line from kipuka:\n{fresh}"));
    assert!(
        host_line.contains("C_Initialize")
            && host_line.contains("NFAST_HOME=/opt/nfast (the plugin's default)"),
        "kipuka names the variable and the value it gave it: {host_line}"
    );
    // And with them again, it serves.
    s.env = nfast_env;
    s.env.push(shim_env);
    s.launch();
    enroll_and_verify(
        &s,
        "ec",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
}

/// Utimaco wraps with OAEP SHA-256 and refuses SHA-384 — through the
/// engine's wrap API, in process, on Kryoptic (whose own OAEP does both).
#[test]
fn utimaco_refuses_oaep_sha384_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let token = TestToken::create(TokenKind::Kryoptic, &tmp.path().join("token"), "kipuka-uti")
        .unwrap_or_else(|e| panic!("{e:#}"));
    // This test is the only one in this binary that loads a module in process.
    for (k, v) in &token.env {
        std::env::set_var(k, v);
    }
    let shim = Shim::vendor(&tmp.path().join("shim"), &token, "utimaco");
    std::env::set_var(CONFIG_VAR, &shim.config_path);
    let cfg = tmp.path().join("cs_pkcs11_R3.cfg");
    std::fs::write(&cfg, "[Global]\nLogging = 0\n").unwrap();
    let env = BTreeMap::from([("CS_PKCS11_R3_CFG".to_string(), cfg.display().to_string())]);
    let ctx = Arc::new(
        Pkcs11Context::open(
            Some(&shim.library()),
            Arc::new(vendor_profile("utimaco")),
            &env,
            TokenSelector {
                label: Some(token.label.clone()),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(ctx.summary().library_manufacturer.starts_with("Utimaco"));
    // Kryoptic has ML-DSA; the emulated Utimaco firmware has none.
    assert!(!ctx.token_has(MechanismId::ML_DSA));
    assert!(!ctx.token_has(MechanismId(0x8001_0023)));
    let pool = SessionPool::start(
        ctx.clone(),
        PinSource::Literal(secrecy::SecretString::from(token.user_pin.clone())),
        UserType::USER,
        PoolSettings {
            size: 2,
            acquire_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(60),
            thresholds: kipuka_tests::engine_fixture::RELAXED,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let dir = tmp.path();
    let key = dir.join("client.pem");
    run(openssl()
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key));
    let modulus_hex = String::from_utf8(
        run(openssl()
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&key))
        .stdout,
    )
    .unwrap();
    let modulus = hex::decode(modulus_hex.trim().trim_start_matches("Modulus=")).unwrap();
    let exponent = [0x01, 0x00, 0x01];
    let cek: Vec<u8> = (7..39).collect();
    let known = |s: &cryptoki::session::Session| {
        use cryptoki::object::{Attribute, KeyType, ObjectClass};
        s.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Value(cek.clone()),
            Attribute::Extractable(true),
            Attribute::Sensitive(false),
            Attribute::Encrypt(true),
        ])
        .map_err(HsmError::pkcs11("C_CreateObject"))
    };
    let wrapped = pool
        .run_blocking(&|s| {
            let k = known(s)?;
            let w = wrap::rsa_oaep_wrap(&ctx, s, &modulus, &exponent, HashAlg::SHA256, k);
            let _ = s.destroy_object(k);
            w
        })
        .unwrap_or_else(|e| panic!("OAEP SHA-256 on Utimaco: {e}"));
    let wfile = dir.join("wrapped");
    std::fs::write(&wfile, &wrapped).unwrap();
    let plain = run(openssl()
        .args(["pkeyutl", "-decrypt", "-inkey"])
        .arg(&key)
        .arg("-in")
        .arg(&wfile)
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
        ]))
    .stdout;
    assert_eq!(
        plain, cek,
        "OpenSSL unwraps what the emulated Utimaco wrapped"
    );

    let err = pool
        .run_blocking(&|s| {
            let k = known(s)?;
            let w = wrap::rsa_oaep_wrap(&ctx, s, &modulus, &exponent, HashAlg::SHA384, k);
            let _ = s.destroy_object(k);
            w
        })
        .expect_err("Utimaco cannot do OAEP with SHA-384");
    assert!(
        matches!(err, HsmError::Unsupported { .. }),
        "refused as unsupported, not as a token failure: {err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("utimaco") && text.contains("CKM_RSA_PKCS_OAEP") && text.contains("SHA-384"),
        "{text}"
    );
    // The pool is unharmed: the refusal did not cost a session.
    assert_eq!(pool.stats().replaced, 0);

    // The emulated library itself refuses SHA-384 too (a plugin that
    // forgot the limit would meet CKR_MECHANISM_PARAM_INVALID, not a
    // wrong ciphertext).
    let p11 = cryptoki::context::Pkcs11::new(shim.library()).unwrap();
    let _ = p11.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ));
    let slot = p11.get_slots_with_token().unwrap()[0];
    let session = p11.open_ro_session(slot).unwrap();
    let _ = session.login(
        cryptoki::session::UserType::User,
        Some(&secrecy::SecretString::from(token.user_pin.clone())),
    );
    use cryptoki::{
        mechanism::{
            rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource},
            Mechanism, MechanismType,
        },
        object::{Attribute, KeyType, ObjectClass},
    };
    let public = session
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(false),
            Attribute::Modulus(modulus.clone()),
            Attribute::PublicExponent(exponent.to_vec()),
            Attribute::Wrap(true),
            Attribute::Encrypt(true),
        ])
        .unwrap();
    let k = known(&session).unwrap();
    let params = PkcsOaepParams::new(
        MechanismType::SHA384,
        PkcsMgfType::MGF1_SHA384,
        PkcsOaepSource::empty(),
    );
    let raw = session.wrap_key(&Mechanism::RsaPkcsOaep(params), public, k);
    assert!(
        matches!(
            raw,
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::MechanismParamInvalid,
                _
            ))
        ),
        "{raw:?}"
    );
    assert!(shim.stat("oaep_refusals") >= 1, "{}", shim.stats());
}

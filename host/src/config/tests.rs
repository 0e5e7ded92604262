//! Unit tests of the configuration layer. Environment tests run inside
//! `figment::Jail`, which serializes them and restores the environment.

// Jail's closures must return figment's (large) error type.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Jail;
use kipuka_plugin_api::UserType;
use secrecy::ExposeSecret;

use super::env::EnvSource;
use super::*;

const NSHIELD: &str = include_str!("../../../examples/config/matrix/nshield.toml");
const UTIMACO: &str = include_str!("../../../examples/config/matrix/utimaco.toml");
const KRYOPTIC_MATRIX: &str = include_str!("../../../examples/config/matrix/kryoptic.toml");
const LUNA: &str = include_str!("../../../examples/config/matrix/luna.toml");
const SOFTHSM2_DEV: &str = include_str!("../../../examples/config/softhsm2.toml");
const KRYOPTIC_DEV: &str = include_str!("../../../examples/config/kryoptic.toml");

/// A valid configuration the validation tests break one rule of.
const BASE: &str = r#"
[hsm]
token_label = "t"
pin_env = "KIPUKA_HSM_PIN"
[[ca]]
id = "a"
cert = "/a.pem"
key = "pkcs11:token=t;object=a"
"#;

fn parse(toml: &str) -> Config {
    Config::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}"))
}

fn parsed_valid(toml: &str) -> Config {
    let config = parse(toml);
    config.validate().unwrap_or_else(|e| panic!("{e}"));
    config
}

/// The validation error of `BASE` + `extra`.
fn invalid_msg(extra: &str) -> String {
    parse(&format!("{BASE}{extra}"))
        .validate()
        .expect_err("should be invalid")
        .to_string()
}

fn jail_err(e: impl std::fmt::Display) -> figment::Error {
    e.to_string().into()
}

#[test]
fn matrix_nshield_parses() {
    let c = parsed_valid(NSHIELD);
    assert_eq!(
        c.hsm.library.as_deref(),
        Some(Path::new("/opt/nfast/toolkits/pkcs11/libcknfast.so"))
    );
    assert_eq!(c.hsm.token_label.as_deref(), Some("kipuka-ca"));
    assert_eq!(c.hsm.pin_env.as_deref(), Some("KIPUKA_HSM_PIN"));
    let ca = &c.ca[0];
    assert_eq!(
        (ca.id.as_str(), ca.label(), ca.name.as_deref()),
        ("nshield-ca", "nshield-ca", Some("nShield-backed CA"))
    );
    assert_eq!(ca.cert, PathBuf::from("/etc/kipuka/ca/nshield-ca.pem"));
    assert_eq!(ca.key, "pkcs11:token=kipuka-ca;object=ca-signing-key");
    assert_eq!(ca.hsm_slot, Some(0));
    assert_eq!(c.default_ca().map(|ca| ca.id.as_str()), Some("nshield-ca"));
}

#[test]
fn matrix_utimaco_parses() {
    let c = parsed_valid(UTIMACO);
    assert_eq!(
        c.hsm.library.as_deref(),
        Some(Path::new("/usr/lib/utimaco/libcs_pkcs11_R3.so"))
    );
    assert_eq!((c.hsm.slot, c.hsm.token_label.as_deref()), (Some(0), None));
    assert_eq!(c.ca[0].id, "utimaco-ca");
    assert_eq!(c.ca[0].key, "pkcs11:slot=0;object=ca-signing-key");
    assert_eq!(c.ca[0].hsm_slot, Some(0));
    // The matrix: the session pool follows db.max_connections.
    assert_eq!(c.hsm_pool_size(), 16);
}

#[test]
fn matrix_kryoptic_parses() {
    let c = parsed_valid(KRYOPTIC_MATRIX);
    assert_eq!(c.hsm.token_label.as_deref(), Some("kipuka-dev"));
    assert_eq!(
        c.hsm.pin.as_ref().map(|p| p.expose_secret()),
        Some("userpin")
    );
    assert!(c.hsm.pin_env.is_none());
    assert!(
        !format!("{c:?}").contains("userpin"),
        "the PIN must not appear in Debug output"
    );
    assert_eq!(c.ca[0].id, "dev-ca");
    assert_eq!(c.ca[0].name.as_deref(), Some("Development CA"));
    assert_eq!(c.ca[0].hsm_slot, None);
}

#[test]
fn matrix_luna_parses() {
    let c = parsed_valid(LUNA);
    assert_eq!(
        c.hsm.library.as_deref(),
        Some(Path::new("/usr/safenet/lunaclient/lib/libCryptoki2_64.so"))
    );
    assert_eq!(c.hsm.slot, Some(1));
    assert_eq!(c.ca[0].id, "luna-ca");
    assert_eq!(c.ca[0].key, "pkcs11:slot=1;object=ca-signing-key");
    assert_eq!(c.ca[0].hsm_slot, Some(1));
}

#[test]
fn dev_examples_parse_and_validate() {
    for (text, software_mldsa) in [(SOFTHSM2_DEV, true), (KRYOPTIC_DEV, false)] {
        let c = parsed_valid(text);
        assert_eq!(c.ca.len(), 3);
        assert_eq!(c.default_ca().map(|ca| ca.label()), Some("ec"));
        let rsa = c.ca_by_label("rsa").expect("rsa CA");
        assert_eq!(
            (rsa.rsa_scheme, rsa.hash),
            (RsaScheme::Pss, HashChoice::Sha256)
        );
        let mldsa = c.ca_by_label("mldsa").expect("mldsa CA");
        assert_eq!(mldsa.software_key.is_some(), software_mldsa);
        assert_eq!(mldsa.key.is_empty(), software_mldsa);
        assert_eq!(
            mldsa.profile.allowed_key_specs().unwrap()[1],
            KeySpec::MlDsa(65)
        );
        assert_eq!(c.hsm.pin_env.as_deref(), Some("KIPUKA_HSM_PIN"));
        assert_eq!(c.hsm_pool_size(), 4);
    }
}

#[test]
fn defaults_fill_a_minimal_config() {
    let c = parse(BASE);
    assert_eq!(
        c.server.listen,
        "127.0.0.1:8443".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        c.server.tls_versions,
        [TlsVersion::Tls12, TlsVersion::Tls13]
    );
    assert_eq!(
        (
            c.server.max_body_bytes,
            c.server.realm.as_str(),
            c.server.max_connections
        ),
        (65536, "kipuka", 1024)
    );
    assert_eq!(
        (
            c.hsm.acquire_timeout_ms,
            c.hsm.operation_timeout_ms,
            c.hsm.degraded_after_errors,
            c.hsm.unavailable_after_errors
        ),
        (2000, 30_000, 3, 10)
    );
    assert_eq!(
        (c.db.url.as_str(), c.db.max_connections),
        ("sqlite://kipuka.db", 16)
    );
    assert_eq!(
        (c.log.format, c.log.level.as_str()),
        (LogFormat::Human, "info")
    );
    let p = &c.ca[0].profile;
    assert_eq!(p.validity_days, 365);
    assert_eq!(p.allowed_key_specs().unwrap().len(), 9);
    assert_eq!(
        (c.ca[0].rsa_scheme, c.ca[0].hash, p.san_policy),
        (RsaScheme::Pkcs1, HashChoice::Sha256, SanPolicy::CopyFromCsr)
    );
}

#[test]
fn env_overrides_file_and_ignores_non_config_vars() {
    Jail::expect_with(|jail| {
        let path = jail.directory().join("kipuka.toml");
        jail.create_file(
            &path,
            &format!("[server]\nlisten = \"127.0.0.1:1\"\n{BASE}"),
        )?;
        jail.set_env("KIPUKA_SERVER__LISTEN", "0.0.0.0:9443");
        jail.set_env("KIPUKA_HSM__TOKEN_LABEL", "0012");
        jail.set_env("KIPUKA_DB__MAX_CONNECTIONS", "4");
        jail.set_env("KIPUKA_HSM__ENV__NFAST_HOME", "/opt/nfast");
        jail.set_env("KIPUKA_SERVER__TLS_VERSIONS", r#"["1.3"]"#);
        // Not configuration: the PIN variable and someone else's variable.
        jail.set_env("KIPUKA_HSM_PIN", "1234");
        jail.set_env("KIPUKA_CACHE", "/tmp/cache");
        let c = Config::load(Some(&path)).map_err(jail_err)?;
        assert_eq!(
            c.server.listen,
            "0.0.0.0:9443".parse::<SocketAddr>().unwrap()
        );
        // A numeric-looking label stays the string it is.
        assert_eq!(c.hsm.token_label.as_deref(), Some("0012"));
        assert_eq!(c.db.max_connections, 4);
        assert_eq!(
            c.hsm.env.get("NFAST_HOME").map(String::as_str),
            Some("/opt/nfast")
        );
        assert_eq!(c.server.tls_versions, [TlsVersion::Tls13]);
        assert!(c.hsm.pin.is_none());
        assert_eq!(c.hsm.pin_env.as_deref(), Some("KIPUKA_HSM_PIN"));
        // The file still provides what the environment does not override.
        assert_eq!(c.ca[0].id, "a");
        Ok(())
    });
}

#[test]
fn env_unknown_key_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("KIPUKA_HSM__TOKN_LABEL", "x");
        let msg = Config::load(None).expect_err("unknown key").to_string();
        assert!(msg.contains(r#"unknown key "hsm.tokn_label""#), "{msg}");
        assert!(
            msg.contains("environment variable KIPUKA_HSM__TOKN_LABEL"),
            "{msg}"
        );
        assert!(msg.contains("token_label"), "{msg}");
        Ok(())
    });
}

#[test]
fn env_wrong_type_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("KIPUKA_DB__MAX_CONNECTIONS", "many");
        let msg = Config::load(None).expect_err("wrong type").to_string();
        assert!(
            msg.contains(
                r#"key "db.max_connections" in environment variable KIPUKA_DB__MAX_CONNECTIONS"#
            ),
            "{msg}"
        );
        Ok(())
    });
}

#[test]
fn env_key_mapping() {
    let vars = [
        ("KIPUKA_SERVER__LISTEN", "x"),
        ("KIPUKA_HSM__ENV__CS_PKCS11_R3_CFG", "y"),
        ("KIPUKA_HSM_PIN", "1234"),
        ("KIPUKA_CACHE", "z"),
        ("PATH", "/bin"),
    ];
    let env = EnvSource::from_vars(vars.map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
    assert_eq!(
        env.origin_of("server.listen"),
        Origin::EnvVar("KIPUKA_SERVER__LISTEN".into())
    );
    assert_eq!(
        env.origin_of("hsm.env.CS_PKCS11_R3_CFG"),
        Origin::EnvVar("KIPUKA_HSM__ENV__CS_PKCS11_R3_CFG".into())
    );
    assert_eq!(env.origin_of("hsm.pin"), Origin::Env);
    let bad = EnvSource::from_vars([("KIPUKA_HSM__".to_string(), String::new())]);
    assert!(bad.is_err_and(|e| e.to_string().contains("KIPUKA_HSM__")));
}

#[test]
fn unknown_key_in_file_names_key_and_file() {
    Jail::expect_with(|jail| {
        let path = jail.directory().join("kipuka.toml");
        jail.create_file(&path, "[hsm]\ntokn_label = \"x\"\n")?;
        let msg = Config::load(Some(&path))
            .expect_err("unknown key")
            .to_string();
        let want = format!(
            r#"unknown key "hsm.tokn_label" in {} (expected one of: "#,
            path.display()
        );
        assert!(msg.starts_with(&want), "{msg}");
        assert!(msg.contains("token_label") && !msg.contains('\n'), "{msg}");
        Ok(())
    });
}

#[test]
fn unknown_key_in_ca_table_names_its_index() {
    let msg = Config::from_toml_str(&format!("{BASE}lable = \"x\"\n"))
        .expect_err("unknown")
        .to_string();
    assert!(
        msg.starts_with(r#"unknown key "ca[0].lable" in the configuration string"#),
        "{msg}"
    );
}

#[test]
fn wrong_type_names_key_file_and_expectation() {
    Jail::expect_with(|jail| {
        let path = jail.directory().join("kipuka.toml");
        jail.create_file(&path, "[server]\nlisten = 5\n")?;
        let msg = Config::load(Some(&path))
            .expect_err("wrong type")
            .to_string();
        let want = format!(
            r#"key "server.listen" in {}: invalid type: found signed int `5`, expected socket address"#,
            path.display()
        );
        assert_eq!(msg, want);
        Ok(())
    });
}

#[test]
fn mistyped_pin_is_not_shown() {
    let msg = Config::from_toml_str("[hsm]\npin = 987654\n")
        .expect_err("wrong type")
        .to_string();
    assert!(
        msg.contains(r#"key "hsm.pin""#) && !msg.contains("987654"),
        "{msg}"
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let msg = Config::from_toml_str("[server]\nlisten = \n")
        .expect_err("syntax")
        .to_string();
    assert!(
        msg.starts_with("invalid TOML in the configuration string at line 2, column"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn missing_file_is_a_read_error() {
    let err = Config::load(Some(Path::new("/nonexistent/kipuka.toml"))).expect_err("missing");
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/kipuka.toml"));
}

#[test]
fn validate_rejects_duplicate_label() {
    let msg = invalid_msg("label = \"x\"\n[[ca]]\nid = \"b\"\nlabel = \"x\"\ncert = \"/b.pem\"\nkey = \"pkcs11:object=b\"\n");
    assert_eq!(msg, r#"ca "b": duplicate CA label "x""#);
}

#[test]
fn validate_rejects_path_like_label() {
    let msg = invalid_msg("label = \"../x\"\n");
    assert!(
        msg.starts_with(r#"ca "a": label "../x" must be 1 to 64 characters"#),
        "{msg}"
    );
}

#[test]
fn validate_rejects_two_defaults() {
    let msg = invalid_msg("default = true\n[[ca]]\nid = \"b\"\ndefault = true\ncert = \"/b.pem\"\nkey = \"pkcs11:object=b\"\n");
    assert!(
        msg.starts_with(r#"ca "b": default = true is also set on ca "a""#),
        "{msg}"
    );
}

#[test]
fn validate_rejects_two_pin_sources() {
    let c = parse(&BASE.replace("[hsm]\n", "[hsm]\npin = \"1234\"\n"));
    let msg = c.validate().expect_err("two pins").to_string();
    assert_eq!(
        msg,
        "hsm: set at most one PIN source, found pin_env and pin"
    );
}

#[test]
fn validate_rejects_bad_key_spec() {
    let msg = invalid_msg("[ca.profile]\nallowed_keys = [\"ec:P-256\", \"rsa:1000\"]\n");
    assert!(msg.starts_with(r#"ca "a": profile.allowed_keys: invalid key spec "rsa:1000": RSA size must be a multiple of 1024"#), "{msg}");
}

#[test]
fn validate_rejects_bad_eku_and_key_usage() {
    let msg = invalid_msg("[ca.profile]\nextended_key_usage = [\"clientAuth\", \"clientauthx\"]\n");
    assert!(
        msg.starts_with(r#"ca "a": profile.extended_key_usage "clientauthx" is not one of"#),
        "{msg}"
    );
    let msg = invalid_msg("[ca.profile]\nkey_usage = [\"digitalSig\"]\n");
    assert!(
        msg.starts_with(r#"ca "a": profile.key_usage "digitalSig" is not one of"#),
        "{msg}"
    );
    // A dotted OID is a valid EKU.
    parsed_valid(&format!(
        "{BASE}[ca.profile]\nextended_key_usage = [\"1.3.6.1.5.5.7.3.28\"]\n"
    ));
}

#[test]
fn validate_requires_a_ca_unless_plugins_only() {
    let c = parse("[hsm]\nlibrary = \"/usr/lib/softhsm/libsofthsm2.so\"\n");
    assert!(c
        .validate()
        .expect_err("no CA")
        .to_string()
        .contains("no [[ca]]"));
    c.validate_for_plugins_only().unwrap();
}

#[test]
fn validate_ca_key_sources_and_auth() {
    let msg = invalid_msg("software_key = \"/k.p8\"\n");
    assert_eq!(msg, r#"ca "a": set key or software_key, not both"#);
    let msg = invalid_msg(
        "[[auth.users]]\nname = \"u\"\npassword_hash = \"$argon2id$v=19$x\"\ncas = [\"nope\"]\n",
    );
    assert_eq!(msg, r#"auth.users "u": cas: no [[ca]] has id "nope""#);
}

#[test]
fn software_key_takes_exactly_one_passphrase_source() {
    let ca = |lines: &str| {
        format!(
            "[hsm]\ntoken_label = \"t\"\npin_env = \"P\"\n[[ca]]\nid = \"pq\"\ncert = \"/pq.pem\"\nsoftware_key = \"/pq.p8\"\n{lines}"
        )
    };
    let c = parsed_valid(&ca(
        "software_key_passphrase_file = \"/etc/kipuka/pq-passphrase\"\n",
    ));
    assert_eq!(
        c.ca[0].software_key_passphrase_file,
        Some(PathBuf::from("/etc/kipuka/pq-passphrase"))
    );
    parsed_valid(&ca("software_key_passphrase_env = \"PQ_PASS\"\n"));
    let exactly_one = r#"ca "pq": software_key needs exactly one of software_key_passphrase_env and software_key_passphrase_file"#;
    for lines in [
        "",
        "software_key_passphrase_env = \"PQ_PASS\"\nsoftware_key_passphrase_file = \"/p\"\n",
    ] {
        let msg = parse(&ca(lines)).validate().unwrap_err().to_string();
        assert_eq!(msg, exactly_one, "{lines}");
    }
    let msg = invalid_msg("software_key_passphrase_file = \"/p\"\n");
    assert_eq!(
        msg,
        r#"ca "a": software_key_passphrase_env / software_key_passphrase_file is set without software_key"#
    );
}

#[test]
fn client_issuers_unset_by_default_and_listed_in_order() {
    let c = parsed_valid(BASE);
    assert_eq!(c.ca[0].client_issuers, None, "unset: today's behaviour");
    let c = parsed_valid(&format!(
        "{BASE}client_issuers = [\"/etc/kipuka/idevid-ca.pem\", \"fleet-ca.der\"]\n"
    ));
    assert_eq!(
        c.ca[0].client_issuers,
        Some(vec![
            PathBuf::from("/etc/kipuka/idevid-ca.pem"),
            PathBuf::from("fleet-ca.der")
        ])
    );
    // Validation does not read the files: `serve` and `check` do, at start-up.
    parsed_valid(&format!(
        "{BASE}client_issuers = [\"/nonexistent/issuer.pem\"]\n"
    ));
}

#[test]
fn validate_rejects_empty_duplicate_and_blank_client_issuers() {
    let msg = invalid_msg("client_issuers = []\n");
    assert!(
        msg.starts_with(r#"ca "a": client_issuers is empty: list at least one issuer"#),
        "{msg}"
    );
    let msg = invalid_msg("client_issuers = [\"/i.pem\", \"/j.pem\", \"/i.pem\"]\n");
    assert_eq!(msg, r#"ca "a": client_issuers lists /i.pem twice"#);
    let msg = invalid_msg("client_issuers = [\"\"]\n");
    assert_eq!(msg, r#"ca "a": client_issuers has an empty path"#);
}

#[test]
fn client_issuers_must_be_a_list_of_paths() {
    let err = Config::from_toml_str(&format!("{BASE}client_issuers = \"/i.pem\"\n"))
        .expect_err("a string is not a list")
        .to_string();
    assert!(
        err.starts_with(r#"key "ca[0].client_issuers" in the configuration string: invalid type"#),
        "{err}"
    );
}

#[test]
fn user_type_parses() {
    let mut c = parse(BASE);
    for (text, want) in [
        ("user", UserType::USER),
        ("crypto-user", UserType::LUNA_CRYPTO_USER),
        ("0x80000001", UserType::LUNA_CRYPTO_USER),
    ] {
        c.hsm.user_type = Some(text.to_string());
        assert_eq!(c.hsm.login_user_type().unwrap(), Some(want));
    }
    c.hsm.user_type = Some("so".to_string());
    assert!(c
        .validate()
        .expect_err("so")
        .to_string()
        .contains("user_type \"so\""));
}

#[test]
fn key_spec_round_trips() {
    for (text, spec) in [
        ("rsa:3072", KeySpec::Rsa(3072)),
        ("ec:P-384", KeySpec::Ec("P-384".into())),
        ("ml-dsa-87", KeySpec::MlDsa(87)),
    ] {
        assert_eq!(text.parse::<KeySpec>().unwrap(), spec);
        assert_eq!(spec.to_string(), text);
    }
    assert_eq!(
        "ec:prime256v1".parse::<KeySpec>().unwrap(),
        KeySpec::Ec("P-256".into())
    );
    for bad in [
        "rsa:1024",
        "rsa:2500",
        "rsa:16384",
        "ec:P-192",
        "ml-dsa-50",
        "ed25519",
    ] {
        assert!(bad.parse::<KeySpec>().is_err(), "{bad}");
    }
}

#[test]
fn default_ca_rules() {
    let two = format!("{BASE}[[ca]]\nid = \"b\"\ncert = \"/b.pem\"\nkey = \"pkcs11:object=b\"\n");
    // Several CAs, none default: the unlabelled path has no CA.
    assert!(parsed_valid(&two).default_ca().is_none());
    let c = parsed_valid(&two.replace(
        "id = \"b\"\n",
        "id = \"b\"\nlabel = \"bee\"\ndefault = true\n",
    ));
    assert_eq!(c.default_ca().map(|ca| ca.id.as_str()), Some("b"));
    assert_eq!(c.ca_by_label("bee").map(|ca| ca.id.as_str()), Some("b"));
    assert!(c.ca_by_label("b").is_none());
}

#[test]
fn metrics_need_a_socket_of_their_own() {
    let msg = invalid_msg(
        "[server]\nlisten = \"127.0.0.1:8443\"\n[metrics]\nlisten = \"127.0.0.1:8443\"\n",
    );
    assert!(
        msg.contains("metrics.listen") && msg.contains("server.listen"),
        "{msg}"
    );
    let msg = invalid_msg(
        "[server]\nhttp_listen = \"127.0.0.1:8080\"\n[metrics]\nlisten = \"127.0.0.1:8080\"\n",
    );
    assert!(msg.contains("server.http_listen"), "{msg}");
    let c = parsed_valid(&format!("{BASE}[metrics]\nlisten = \"127.0.0.1:9464\"\n"));
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(parsed_valid(BASE).metrics.listen, None, "off when absent");
}

//! The plugin system end to end: the real host binary loading real plugin
//! files — the five vendors, a plugin built out of tree, and broken ones.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use kipuka_tests::artifacts::{
    fixture, kipuka_bin, out_of_tree_plugin, release_dir, vendor_plugin, VENDOR_PLUGINS,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn kipuka(args: &[&str]) -> Output {
    Command::new(kipuka_bin())
        .args(args)
        .output()
        .expect("run kipuka")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn list_json(dir: &Path) -> (Vec<Value>, String) {
    let out = kipuka(&[
        "plugins",
        "list",
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "plugins list failed: {}",
        stderr(&out)
    );
    let plugins: Vec<Value> =
        serde_json::from_slice(&out.stdout).expect("list --json is a JSON array");
    (plugins, stderr(&out))
}

fn names(plugins: &[Value]) -> BTreeSet<String> {
    plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

fn by_name<'a>(plugins: &'a [Value], name: &str) -> &'a Value {
    plugins
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("plugin {name} listed"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v} is an array"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn env_names(p: &Value) -> Vec<String> {
    p["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn mechanism<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["mechanisms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{} declares {name}", p["name"]))
}

/// A folder holding the five vendor plugins.
fn plugin_folder_with_vendors() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in VENDOR_PLUGINS {
        let src = vendor_plugin(name);
        fs::copy(&src, dir.path().join(src.file_name().unwrap())).unwrap();
    }
    dir
}

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(fs::read(path).unwrap()).to_vec()
}

#[test]
fn release_build_lists_exactly_the_five_vendors_with_the_matrix_data() {
    let (plugins, _) = list_json(release_dir());
    assert_eq!(
        names(&plugins),
        VENDOR_PLUGINS
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );

    for p in &plugins {
        assert_eq!(p["abi_version"], "1.0.0", "{}", p["name"]);
        for m in p["mechanisms"].as_array().unwrap() {
            assert!(m["name"].as_str().unwrap().starts_with("CKM_"), "{m}");
            assert!(m["id"].is_u64(), "{m}");
            assert!(!m["operations"].as_array().unwrap().is_empty(), "{m}");
        }
        // The matrix rows every vendor shares.
        let rsa = mechanism(p, "CKM_RSA_PKCS");
        assert_eq!(rsa["key_sizes"], serde_json::json!([2048, 3072, 4096]));
        assert_eq!(
            strings(&mechanism(p, "CKM_ECDSA")["curves"]),
            ["P-256", "P-384", "P-521"]
        );
        assert!(strings(&mechanism(p, "CKM_RSA_PKCS_PSS")["operations"]).contains(&"sign".into()));
        assert!(strings(&mechanism(p, "CKM_AES_KEY_WRAP")["operations"]).contains(&"wrap".into()));
        assert!(strings(&mechanism(p, "CKM_ECDH1_DERIVE")["operations"]).contains(&"derive".into()));
        assert_eq!(
            strings(&mechanism(p, "CKM_RSA_PKCS_OAEP")["hashes"]),
            strings(&p["oaep_hashes"])
        );
    }

    let nshield = by_name(&plugins, "nshield");
    assert_eq!(
        nshield["default_library_path"],
        "/opt/nfast/toolkits/pkcs11/libcknfast.so"
    );
    assert_eq!(nshield["max_sessions"], 256);
    assert!(env_names(nshield).starts_with(&["NFAST_HOME".into(), "NFAST_KMDATA".into()]));
    assert_eq!(nshield["ml_dsa"]["native"], "none");
    assert_eq!(nshield["ml_dsa"]["software_fallback"], true);
    assert!(strings(&nshield["oaep_hashes"]).contains(&"SHA-384".into()));

    let utimaco = by_name(&plugins, "utimaco");
    assert_eq!(
        utimaco["default_library_path"],
        "/usr/lib/utimaco/libcs_pkcs11_R3.so"
    );
    assert_eq!(utimaco["max_sessions"], 128);
    assert_eq!(env_names(utimaco), ["CS_PKCS11_R3_CFG"]);
    assert_eq!(
        strings(&utimaco["oaep_hashes"]),
        ["SHA-256"],
        "Utimaco has no OAEP SHA-384"
    );
    assert_eq!(utimaco["ml_dsa"]["native"], "vendor-mechanism");
    assert_eq!(utimaco["ml_dsa"]["firmware_dependent"], true);

    let kryoptic = by_name(&plugins, "kryoptic");
    assert_eq!(
        kryoptic["default_library_path"],
        "/usr/lib/kryoptic/libkryoptic_pkcs11.so"
    );
    assert_eq!(
        kryoptic["library_paths"]["macos"],
        "/usr/local/lib/libkryoptic_pkcs11.dylib"
    );
    assert!(kryoptic["max_sessions"].is_null(), "Kryoptic is unlimited");
    assert_eq!(env_names(kryoptic), ["KRYOPTIC_CONF"]);
    assert_eq!(kryoptic["ml_dsa"]["native"], "pkcs11-3.2");
    let ml_dsa = mechanism(kryoptic, "CKM_ML_DSA");
    assert_eq!(ml_dsa["id"], 0x1D);
    assert_eq!(
        strings(&ml_dsa["parameter_sets"]),
        ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"]
    );

    let luna = by_name(&plugins, "luna");
    assert_eq!(
        luna["default_library_path"],
        "/usr/safenet/lunaclient/lib/libCryptoki2_64.so"
    );
    assert_eq!(luna["max_sessions"], 64);
    assert_eq!(env_names(luna), ["ChrystokiConfigurationPath"]);
    assert_eq!(
        luna["idle_sessions"]["behaviour"],
        "closed-after-configured-timeout"
    );
    assert_eq!(luna["ml_dsa"]["native"], "none");

    let csp = by_name(&plugins, "thales-csp");
    assert!(
        env_names(csp).iter().all(|n| n.starts_with("ET_")),
        "{:?}",
        env_names(csp)
    );
    assert_eq!(csp["ml_dsa"]["native"], "none");
}

#[test]
fn an_out_of_tree_plugin_loads_into_the_unchanged_host() {
    let host = kipuka_bin();
    let before = sha256(&host);

    let nimbus = out_of_tree_plugin();
    let folder = plugin_folder_with_vendors();
    fs::copy(&nimbus, folder.path().join(nimbus.file_name().unwrap())).unwrap();

    assert_eq!(
        sha256(&host),
        before,
        "building a plugin must not rebuild the host"
    );
    let (plugins, errors) = list_json(folder.path());
    assert_eq!(
        plugins.len(),
        6,
        "five vendors and nimbus; stderr: {errors}"
    );
    let p = by_name(&plugins, "nimbus");
    assert_eq!(p["default_library_path"], "/usr/lib/softhsm/libsofthsm2.so");
    assert_eq!(p["plugin_version"], "0.3.0");
    assert_eq!(strings(&p["oaep_hashes"]), ["SHA-1"]);

    let by_path = kipuka(&["plugins", "inspect", nimbus.to_str().unwrap()]);
    assert!(by_path.status.success(), "{}", stderr(&by_path));
    assert!(stdout(&by_path).contains("Nimbus Security (fictional)"));
    let by_name_out = kipuka(&[
        "plugins",
        "inspect",
        "nimbus",
        "--plugin-dir",
        folder.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(by_name_out.status.success(), "{}", stderr(&by_name_out));
    let v: Value = serde_json::from_slice(&by_name_out.stdout).unwrap();
    assert_eq!(v["name"], "nimbus");
}

#[test]
fn bad_plugins_are_refused_with_a_reason_and_the_rest_load() {
    let folder = plugin_folder_with_vendors();
    let put = |src: &Path, name: &str| -> PathBuf {
        let dst = folder.path().join(name);
        fs::copy(src, &dst).unwrap();
        dst
    };
    let incompatible = put(&fixture("incompatible"), "libfuture_vendor.so");
    let not_plugin = put(&fixture("not-a-plugin"), "libsomething_else.so");
    let panicking = put(&fixture("panicking"), "libbroken_vendor.so");
    let duplicate = put(&vendor_plugin("luna"), "libzz_second_luna.so");
    let garbage = folder.path().join("libgarbage.so");
    fs::write(&garbage, b"this is not ELF").unwrap();

    let (plugins, errors) = list_json(folder.path());
    assert_eq!(
        names(&plugins),
        VENDOR_PLUGINS
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        "stderr: {errors}"
    );
    let line_for = |path: &Path| -> String {
        errors
            .lines()
            .find(|l| l.contains(path.to_str().unwrap()))
            .unwrap_or_else(|| panic!("no refusal line names {}: {errors}", path.display()))
            .to_string()
    };
    let l = line_for(&incompatible);
    assert!(l.contains("ABI 2.0.0") && l.contains("ABI 1.0.0"), "{l}");
    assert!(line_for(&not_plugin).contains("not a kipuka plugin"));
    assert!(
        line_for(&panicking).contains("provider_config() failed: panicked: vendor table missing")
    );
    let l = line_for(&duplicate);
    assert!(
        l.contains("duplicate plugin name 'luna'") && l.contains("libkipuka_plugin_luna.so"),
        "{l}"
    );
    assert!(line_for(&garbage).contains("not a loadable shared library"));
    assert_eq!(
        errors
            .lines()
            .filter(|l| l.starts_with("refused plugin "))
            .count(),
        5,
        "{errors}"
    );
}

#[test]
fn inspecting_a_missing_or_foreign_file_fails_naming_it() {
    let missing = kipuka(&["plugins", "inspect", "/nonexistent/libacme.so"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/nonexistent/libacme.so: no such plugin file"),
        "{}",
        stderr(&missing)
    );

    let foreign = fixture("not-a-plugin");
    let out = kipuka(&["plugins", "inspect", foreign.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a kipuka plugin"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_folder_without_any_good_plugin_is_an_error() {
    let folder = tempfile::tempdir().unwrap();
    fs::copy(fixture("not-a-plugin"), folder.path().join("libx.so")).unwrap();
    let out = kipuka(&[
        "plugins",
        "list",
        "--plugin-dir",
        folder.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("not a kipuka plugin") && err.contains("no kipuka plugins found"),
        "{err}"
    );

    let out = kipuka(&["plugins", "list", "--plugin-dir", "/nonexistent/plugins"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/plugins: cannot read plugin folder"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_prints_every_quirk_of_a_vendor() {
    let out = kipuka(&[
        "plugins",
        "inspect",
        vendor_plugin("luna").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "name:                 luna",
        "max sessions:         64",
        "idle sessions:        closed-after-configured-timeout (keep-alive every 30 s)",
        "login user type:      CKU_USER",
        "C_Initialize flags:   CKF_OS_LOCKING_OK",
        "ChrystokiConfigurationPath = /etc",
        "FIPS 140-3 level:     3",
        "CKM_RSA_PKCS_OAEP",
        "Idle Sessions Timeout",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

//! `cargo xtask deb`: the package's contents, checked with dpkg-deb; the
//! packaged binary runs and loads the packaged plugins; systemd-analyze
//! accepts the packaged unit and rates its hardening.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use kipuka_tests::artifacts::{workspace_root, VENDOR_PLUGINS};

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?} (is it installed? `cargo xtask deps`): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds the package (a no-op build after `cargo xtask test`'s release build,
/// then the packaging, a few seconds) and returns its path.
fn build_deb() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let stdout = output(Command::new(cargo).current_dir(workspace_root()).args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "xtask",
        "--",
        "deb",
    ]));
    let deb = PathBuf::from(stdout.lines().last().expect("xtask deb printed the path"));
    assert!(deb.is_file(), "{} missing", deb.display());
    deb
}

/// A root for `systemd-analyze verify --root`: the unpacked package plus the
/// host's unit folder (targets the unit names) and `kill` (ExecReload).
fn analysis_root(unpacked: &Path) {
    output(
        Command::new("cp")
            .args(["-a", "--no-clobber", "/lib/systemd/system/."])
            .arg(unpacked.join("lib/systemd/system")),
    );
    std::fs::create_dir_all(unpacked.join("bin")).unwrap();
    std::fs::copy("/bin/kill", unpacked.join("bin/kill")).unwrap();
}

#[test]
fn package_installs_a_working_binary_plugins_config_and_a_hardened_unit() {
    let deb = build_deb();

    let listing = output(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let mut expected = vec![
        "./usr/bin/kipuka".to_string(),
        "./etc/kipuka/kipuka.toml".into(),
        "./lib/systemd/system/kipuka.service".into(),
        "./usr/lib/kipuka/plugins/libkipuka_plugin_nimbus.so".into(),
    ];
    for p in VENDOR_PLUGINS {
        expected.push(format!(
            "./usr/lib/kipuka/plugins/libkipuka_plugin_{}.so",
            p.replace('-', "_")
        ));
    }
    for path in &expected {
        assert!(
            listing.lines().any(|l| l.ends_with(path.as_str())),
            "{path} not in the package:\n{listing}"
        );
    }
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x root/root") && l.ends_with("./usr/bin/kipuka")),
        "/usr/bin/kipuka must be root-owned and executable:\n{listing}"
    );

    let control = output(Command::new("dpkg-deb").arg("-f").arg(&deb));
    assert!(control.contains("Package: kipuka\n"), "{control}");
    assert!(control.contains("Depends: "), "{control}");

    let root = tempfile::tempdir().unwrap();
    output(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(root.path()),
    );
    let meta = root.path().join("DEBIAN");
    output(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&meta));
    assert_eq!(
        std::fs::read_to_string(meta.join("conffiles")).unwrap(),
        "/etc/kipuka/kipuka.toml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        output(Command::new("sh").arg("-n").arg(meta.join(script)));
    }
    let postinst = std::fs::read_to_string(meta.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    let postrm = std::fs::read_to_string(meta.join("postrm")).unwrap();
    assert!(postrm.contains("remove-on-purge"), "{postrm}");

    // The packaged binary runs and loads every packaged plugin.
    let kipuka = root.path().join("usr/bin/kipuka");
    let version = output(Command::new(&kipuka).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("kipuka {}", env!("CARGO_PKG_VERSION"))
    );
    let plugins = output(
        Command::new(&kipuka)
            .args(["plugins", "list", "--json", "--plugin-dir"])
            .arg(root.path().join("usr/lib/kipuka/plugins")),
    );
    let plugins: serde_json::Value = serde_json::from_str(&plugins).unwrap();
    let names: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), VENDOR_PLUGINS.len() + 1, "{names:?}");
    for p in VENDOR_PLUGINS.iter().chain(&["nimbus"]) {
        assert!(
            names.contains(p),
            "{p} not loaded from the package: {names:?}"
        );
    }

    // The example configuration reads its plugins from the packaged folder,
    // which is also the host's default.
    let config = std::fs::read_to_string(root.path().join("etc/kipuka/kipuka.toml")).unwrap();
    assert!(
        config.contains("dirs = [\"/usr/lib/kipuka/plugins\"]"),
        "{config}"
    );
    assert!(!config.contains("/usr/local/lib"), "{config}");

    let unit_path = root.path().join("lib/systemd/system/kipuka.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for line in [
        "Type=notify",
        "User=kipuka",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/kipuka -/var/lib/softhsm",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "ExecStart=/usr/bin/kipuka serve --config /etc/kipuka/kipuka.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "`{line}` missing from the unit"
        );
    }

    // systemd-analyze checks the unit against the unpacked tree: the
    // commands it names must exist and be executable there.
    analysis_root(root.path());
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--root"])
        .arg(root.path())
        .arg("/lib/systemd/system/kipuka.service")
        .output()
        .expect("systemd-analyze missing: install the `systemd` package (`cargo xtask deps`)");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {}\n{complaints}",
        verify.status
    );

    let security = output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit_path),
    );
    let exposure: f64 = security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for kipuka.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
    println!("systemd-analyze security: exposure {exposure}");
    // README.md records 1.5 ("OK"); systemd calls < 2.0 well hardened.
    assert!(exposure <= 2.0, "exposure {exposure}:\n{security}");
}

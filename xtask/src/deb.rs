//! `cargo xtask deb`: `target/debian/kipuka_<version>_<arch>.deb`, assembled
//! with `dpkg-deb --build` (part of dpkg, on every Debian machine; cargo-deb
//! would be one more tool to build and cache for what is a folder tree and a
//! control file). The package holds:
//!
//! * `/usr/bin/kipuka`;
//! * the vendor plugins, and the out-of-tree example plugin that describes
//!   SoftHSM2, in `/usr/lib/kipuka/plugins/` (the host's default plugin folder);
//! * `/etc/kipuka/kipuka.toml` (a conffile): `examples/config/softhsm2.toml`
//!   reading its plugins from that folder;
//! * `/lib/systemd/system/kipuka.service` and the maintainer scripts from `deploy/`.

use crate::util;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const USAGE: &str =
    "deb     build target/debian/kipuka_<version>_<arch>.deb (release build, dpkg-deb)";

/// The plugin folder the host scans when `[plugins] dirs` is empty.
const PLUGIN_DIR: &str = "usr/lib/kipuka/plugins";

/// The workspace's vendor plugins (`plugins/*`), by library file name.
const PLUGINS: &[&str] = &[
    "libkipuka_plugin_kryoptic.so",
    "libkipuka_plugin_luna.so",
    "libkipuka_plugin_nshield.so",
    "libkipuka_plugin_thales_csp.so",
    "libkipuka_plugin_utimaco.so",
];

/// In the example: the plugin line pointing at a hand-built out-of-tree plugin.
const EXAMPLE_PLUGINS_LINE: &str =
    "files = [\"/usr/local/lib/kipuka/plugins/libkipuka_plugin_nimbus.so\"]";

pub fn run() -> Result<PathBuf> {
    let root = util::workspace_root();
    let target = util::target_dir();
    eprintln!("==> building kipuka and its plugins (release)");
    let mut build = Command::new(util::cargo());
    build
        .current_dir(&root)
        .args(["build", "--release", "-p", "kipuka"]);
    for p in PLUGINS {
        let package = p
            .trim_start_matches("lib")
            .trim_end_matches(".so")
            .replace('_', "-");
        build.args(["-p", &package]);
    }
    util::run(&mut build)?;
    let nimbus_dir = root.join("examples/out-of-tree-plugin");
    util::run(
        Command::new(util::cargo())
            .current_dir(&nimbus_dir)
            .args(["build", "--release", "--target-dir"])
            .arg(nimbus_dir.join("target")),
    )?;

    let kipuka = target.join("release/kipuka");
    let version = util::output(Command::new(&kipuka).arg("--version"))?;
    let version = version
        .split_whitespace()
        .nth(1)
        .context("`kipuka --version` printed no version")?
        .to_string();
    let arch = util::output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();

    let out = target.join("debian");
    let tree = out.join(format!("kipuka_{version}_{arch}"));
    if tree.exists() {
        util::remove_tree(&tree)?;
    }
    let deploy = root.join("deploy");
    install(&kipuka, &tree.join("usr/bin/kipuka"), 0o755)?;
    for p in PLUGINS {
        install(
            &target.join("release").join(p),
            &tree.join(PLUGIN_DIR).join(p),
            0o644,
        )?;
    }
    let nimbus = "libkipuka_plugin_nimbus.so";
    install(
        &nimbus_dir.join("target/release").join(nimbus),
        &tree.join(PLUGIN_DIR).join(nimbus),
        0o644,
    )?;
    // The release profile keeps debug info (for backtraces in tests): ~90 MB
    // that a package does not need.
    let mut strip = Command::new("strip");
    strip.arg("--strip-debug").arg(tree.join("usr/bin/kipuka"));
    for p in PLUGINS.iter().chain([&nimbus]) {
        strip.arg(tree.join(PLUGIN_DIR).join(p));
    }
    util::run(&mut strip)?;
    install(
        &deploy.join("kipuka.service"),
        &tree.join("lib/systemd/system/kipuka.service"),
        0o644,
    )?;
    write(
        &tree.join("etc/kipuka/kipuka.toml"),
        &example_config(&root)?,
        0o640,
    )?;
    install(
        &root.join("README.md"),
        &tree.join("usr/share/doc/kipuka/README.md"),
        0o644,
    )?;
    for script in ["postinst", "prerm", "postrm"] {
        install(
            &deploy.join("debian").join(script),
            &tree.join("DEBIAN").join(script),
            0o755,
        )?;
    }
    write(
        &tree.join("DEBIAN/conffiles"),
        "/etc/kipuka/kipuka.toml\n",
        0o644,
    )?;
    write(
        &tree.join("DEBIAN/control"),
        &control(&version, &arch, &tree)?,
        0o644,
    )?;

    let deb = out.join(format!("kipuka_{version}_{arch}.deb"));
    eprintln!("==> dpkg-deb --build {}", deb.display());
    util::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&tree)
            .arg(&deb),
    )?;
    println!("{}", deb.display());
    Ok(deb)
}

/// `examples/config/softhsm2.toml`, taking its plugins from the packaged folder.
fn example_config(root: &Path) -> Result<String> {
    let path = root.join("examples/config/softhsm2.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !text.contains(EXAMPLE_PLUGINS_LINE) {
        bail!(
            "{}: the line `{EXAMPLE_PLUGINS_LINE}` changed; update xtask/src/deb.rs",
            path.display()
        );
    }
    Ok(format!(
        "# Installed by the kipuka package (a conffile: your changes survive upgrades).\n\
         # Edit the paths, token and CAs, put KIPUKA_HSM_PIN=... in /etc/kipuka/kipuka.env\n\
         # (mode 0600), then `systemctl enable --now kipuka`.\n\n{}",
        text.replace(
            EXAMPLE_PLUGINS_LINE,
            &format!(
                "# The packaged plugins (nimbus describes SoftHSM2).\ndirs = [\"/{PLUGIN_DIR}\"]"
            )
        )
    ))
}

fn control(version: &str, arch: &str, tree: &Path) -> Result<String> {
    let size_kib = util::output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(tree),
    )?
    .split_whitespace()
    .next()
    .unwrap_or("0")
    .to_string();
    Ok(format!(
        "Package: kipuka\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: kipuka developers <kipuka@localhost>\n\
         Installed-Size: {size_kib}\n\
         Depends: libc6 (>= 2.34), adduser\n\
         Recommends: softhsm2\n\
         Section: net\n\
         Priority: optional\n\
         Description: EST server (RFC 7030) whose CA keys stay in HSMs\n \
         kipuka enrolls devices over EST and signs their certificates with CA keys\n \
         held in hardware security modules, reached through PKCS#11. Vendor quirks\n \
         live in plugins under /usr/lib/kipuka/plugins.\n"
    ))
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if !from.is_file() {
        bail!("{} is missing", from.display());
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(to, text).with_context(|| format!("cannot write {}", to.display()))?;
    set_mode(to, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

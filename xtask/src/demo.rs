//! `cargo xtask demo [--port N]`: a complete kipuka on a SoftHSM2 token, in
//! `target/kipuka-demo/`, then `kipuka serve` in the foreground.
//!
//! Everything made here is kept: a second run reuses the token, keys, PINs and
//! certificates and only rewrites `kipuka.toml` (the port may differ) and the
//! Basic user's hash (a fresh salt for the same password).

use crate::util;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SOFTHSM2_MODULE: &str = crate::deps::SOFTHSM2_MODULE;
const TOKEN_LABEL: &str = "kipuka-demo";
const PASSPHRASE_ENV: &str = "KIPUKA_MLDSA_PASSPHRASE";
const USER: &str = "demo";
/// The demo's pre-shared key for /serverkeygen: DecryptKeyIdentifier "demo-kek".
const KEK_LABEL: &str = "kek-demo";
const KEK_ID_HEX: &str = "64656d6f2d6b656b";

/// Debian packages the demo needs (a subset of the test packages, plus openssl).
const PACKAGES: &[(&str, &str)] = &[
    ("softhsm2", "SoftHSM2 token"),
    ("opensc", "pkcs11-tool, to make the CA keys"),
    ("openssl", "TLS certificates and the example client"),
    ("curl", "the example EST client"),
];

pub const USAGE: &str = "demo    [--port N] kipuka on a SoftHSM2 token in target/kipuka-demo (kept between runs),\n          then `kipuka serve` in the foreground on 127.0.0.1:N (default 8443)";

/// Sets everything up, then execs `kipuka serve`: returns only on error.
pub fn run(args: &[&str]) -> Result<()> {
    let port = parse_port(args)?;
    ensure_packages()?;
    let root = util::workspace_root();
    let target = util::target_dir();

    eprintln!("==> building kipuka (release)");
    util::run(Command::new(util::cargo()).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "kipuka",
    ]))?;
    let plugin_dir = root.join("examples/out-of-tree-plugin");
    eprintln!("==> building the out-of-tree SoftHSM2 plugin (release)");
    util::run(
        Command::new(util::cargo())
            .current_dir(&plugin_dir)
            .args(["build", "--release", "--target-dir"])
            .arg(plugin_dir.join("target")),
    )?;
    let kipuka = target.join("release/kipuka");
    let nimbus = plugin_dir.join("target/release/libkipuka_plugin_nimbus.so");
    for f in [&kipuka, &nimbus] {
        if !f.is_file() {
            bail!("{} is missing after the build", f.display());
        }
    }

    let dir = target.join("kipuka-demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let d = Demo {
        dir: dir.clone(),
        kipuka,
    };

    d.token()?;
    d.kek()?;
    d.mldsa_key()?;
    d.tls()?;
    let password = d.basic_password()?;
    d.write_config(port, &nimbus, &password)?;
    d.ca_certs()?;
    d.print_instructions(port, &root);

    eprintln!("==> kipuka serve --config {}", d.config().display());
    use std::os::unix::process::CommandExt;
    // exec: kipuka takes over this process, so Ctrl-C / SIGTERM reach it directly and its
    // exit status is ours.
    let err = d
        .kipuka_cmd()
        .args(["serve", "--config"])
        .arg(d.config())
        .exec();
    Err(err).with_context(|| format!("cannot run {}", d.kipuka.display()))
}

fn parse_port(args: &[&str]) -> Result<u16> {
    match args {
        [] => Ok(8443),
        ["--port", n] => n
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .with_context(|| format!("--port: {n:?} is not a port number (1-65535)")),
        other => bail!("demo: unexpected arguments `{}`", other.join(" ")),
    }
}

/// Installs the missing demo packages with apt (as root), saying which and why.
fn ensure_packages() -> Result<()> {
    crate::packages::ensure_list(PACKAGES, "cargo xtask demo")
}

/// 24 random bytes from the kernel, hex-encoded.
fn random_secret() -> Result<String> {
    let mut buf = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `text` to a new file with mode 0600 (replacing any old one).
fn write_private(path: &Path, text: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read_secret(path: &Path) -> Result<String> {
    let s =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

fn remove_files(dir: &Path, names: &[&str]) -> Result<()> {
    for n in names {
        match std::fs::remove_file(dir.join(n)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {n}")),
        }
    }
    Ok(())
}

struct Demo {
    dir: PathBuf,
    kipuka: PathBuf,
}

impl Demo {
    fn p(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn config(&self) -> PathBuf {
        self.p("kipuka.toml")
    }

    fn softhsm_conf(&self) -> PathBuf {
        self.p("softhsm2.conf")
    }

    /// `kipuka` with a clean token environment (the config's `[hsm] env` sets SOFTHSM2_CONF).
    fn kipuka_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.kipuka);
        cmd.env_remove("SOFTHSM2_CONF").env_remove("KRYOPTIC_CONF");
        cmd
    }

    fn openssl(&self) -> Command {
        let mut cmd = Command::new("openssl");
        cmd.current_dir(&self.dir);
        cmd
    }

    /// Step 1 and 2: the token with its user PIN in `hsm-pin`, and the two CA key pairs.
    fn token(&self) -> Result<()> {
        let stamp = self.p(".token.done");
        if stamp.is_file() && self.p("hsm-pin").is_file() {
            eprintln!("==> token {TOKEN_LABEL}: reusing (keys ec-ca-key, rsa-ca-key)");
            return Ok(());
        }
        eprintln!("==> token {TOKEN_LABEL}: creating, with CA keys ec-ca-key (P-256) and rsa-ca-key (RSA-3072)");
        let tokens = self.p("tokens");
        util::remove_tree(&tokens)?;
        // Certificates of the old keys would no longer match.
        remove_files(&self.dir, &["ca-ec.pem", "ca-rsa.pem"])?;
        std::fs::create_dir_all(&tokens)?;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o700))?;
        std::fs::write(
            self.softhsm_conf(),
            format!(
                "# Written by `cargo xtask demo`.\ndirectories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
        let pin = random_secret()?;
        let so_pin = random_secret()?;
        write_private(&self.p("hsm-pin"), &format!("{pin}\n"))?;
        write_private(&self.p("hsm-so-pin"), &format!("{so_pin}\n"))?;
        util::output(
            Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", self.softhsm_conf())
                .args(["--init-token", "--free", "--label", TOKEN_LABEL])
                .args(["--so-pin", &so_pin, "--pin", &pin]),
        )?;
        for (label, key_type, id) in [
            ("ec-ca-key", "EC:prime256v1", "01"),
            ("rsa-ca-key", "rsa:3072", "02"),
        ] {
            util::output(
                Command::new("pkcs11-tool")
                    .env("SOFTHSM2_CONF", self.softhsm_conf())
                    .args(["--module", SOFTHSM2_MODULE, "--token-label", TOKEN_LABEL])
                    .args([
                        "--login",
                        "--pin",
                        &pin,
                        "--keypairgen",
                        "--key-type",
                        key_type,
                    ])
                    .args(["--label", label, "--id", id, "--usage-sign"]),
            )?;
        }
        std::fs::write(&stamp, "")?;
        Ok(())
    }

    /// Step 2b: the AES-256 key-encryption key for /serverkeygen, in the token
    /// (`kek-demo`) and, for the demo's client, in `kek.hex`.
    fn kek(&self) -> Result<()> {
        let stamp = self.p(".kek.done");
        if stamp.is_file() && self.p("kek.hex").is_file() {
            eprintln!("==> serverkeygen key-encryption key {KEK_LABEL}: reusing (kek.hex)");
            return Ok(());
        }
        eprintln!("==> serverkeygen key-encryption key {KEK_LABEL}: creating (value in kek.hex)");
        let hex = format!("{}{}", random_secret()?, &random_secret()?[..16]);
        write_private(&self.p("kek.hex"), &format!("{hex}\n"))?;
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<_, _>>()?;
        let raw = self.p(".kek.bin");
        std::fs::write(&raw, &bytes)?;
        std::fs::set_permissions(&raw, std::fs::Permissions::from_mode(0o600))?;
        let pin = read_secret(&self.p("hsm-pin"))?;
        let result = util::output(
            Command::new("pkcs11-tool")
                .env("SOFTHSM2_CONF", self.softhsm_conf())
                .args(["--module", SOFTHSM2_MODULE, "--token-label", TOKEN_LABEL])
                .args(["--login", "--pin", &pin, "--write-object"])
                .arg(&raw)
                .args([
                    "--type",
                    "secrkey",
                    "--key-type",
                    "AES:32",
                    "--label",
                    KEK_LABEL,
                ])
                .args(["--id", "6b", "--usage-wrap", "--sensitive"]),
        );
        std::fs::remove_file(&raw)?;
        result?;
        std::fs::write(&stamp, "")?;
        Ok(())
    }

    /// Step 3: the ML-DSA-65 key of the software fallback and its passphrase.
    fn mldsa_key(&self) -> Result<()> {
        let key = self.p("ca-mldsa-key.p8");
        let pass = self.p("mldsa-passphrase");
        if key.is_file() && pass.is_file() {
            eprintln!("==> ML-DSA-65 software key: reusing");
            return Ok(());
        }
        eprintln!(
            "==> ML-DSA-65 software key: creating (encrypted PKCS#8, kipuka ca keygen-software)"
        );
        remove_files(
            &self.dir,
            &["ca-mldsa-key.p8", "mldsa-passphrase", "ca-mldsa.pem"],
        )?;
        let passphrase = random_secret()?;
        write_private(&pass, &format!("{passphrase}\n"))?;
        util::output(
            self.kipuka_cmd()
                .args(["ca", "keygen-software", "--set", "65", "--out"])
                .arg(&key)
                .args(["--passphrase-env", PASSPHRASE_ENV])
                .env(PASSPHRASE_ENV, &passphrase),
        )?;
        Ok(())
    }

    /// Steps 5 and 6: TLS CA, server certificate, client certificate (all EC P-256).
    fn tls(&self) -> Result<()> {
        let have = |names: &[&str]| names.iter().all(|n| self.p(n).is_file());
        let mut fresh = false;
        if !have(&["tls-ca.pem", "tls-ca.key"]) {
            eprintln!("==> TLS CA: creating tls-ca.pem");
            remove_files(
                &self.dir,
                &["server.pem", "server.key", "client.pem", "client.key"],
            )?;
            util::output(self.openssl().args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=kipuka demo TLS CA",
                "-days",
                "3650",
                "-keyout",
                "tls-ca.key",
                "-out",
                "tls-ca.pem",
            ]))?;
            std::fs::set_permissions(self.p("tls-ca.key"), std::fs::Permissions::from_mode(0o600))?;
            fresh = true;
        }
        for (name, subject, ext) in [
            (
                "server",
                "/CN=localhost",
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
            ),
            (
                "client",
                "/CN=kipuka demo client",
                "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
            ),
        ] {
            let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
            if !fresh && have(&[&pem, &key]) {
                continue;
            }
            eprintln!("==> TLS {name} certificate: creating {pem}");
            let csr = format!("{name}.csr");
            let extfile = format!("{name}.ext");
            util::output(self.openssl().args([
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
            ]))?;
            std::fs::set_permissions(self.p(&key), std::fs::Permissions::from_mode(0o600))?;
            std::fs::write(self.p(&extfile), ext)?;
            util::output(self.openssl().args([
                "x509", "-req", "-days", "825", "-in", &csr, "-CA", "tls-ca.pem",
                "-CAkey", "tls-ca.key", "-CAcreateserial", "-extfile", &extfile, "-out", &pem,
            ]))?;
            remove_files(&self.dir, &[&csr, &extfile])?;
        }
        if !fresh && have(&["server.pem", "client.pem"]) {
            eprintln!("==> TLS certificates: reusing tls-ca.pem, server.pem, client.pem");
        }
        Ok(())
    }

    /// Step 7: `basic-auth.txt` = `demo:<password>`; returns the password.
    fn basic_password(&self) -> Result<String> {
        let file = self.p("basic-auth.txt");
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some(pw) = text.trim_end().strip_prefix(&format!("{USER}:")) {
                if !pw.is_empty() {
                    return Ok(pw.to_string());
                }
            }
        }
        eprintln!("==> Basic user {USER}: creating basic-auth.txt");
        let pw = random_secret()?;
        write_private(&file, &format!("{USER}:{pw}\n"))?;
        Ok(pw)
    }

    fn hash_password(&self, password: &str) -> Result<String> {
        let mut child = self
            .kipuka_cmd()
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run kipuka hash-password")?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(password.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("kipuka hash-password failed ({})", out.status);
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// Step 8: `kipuka.toml`, rewritten every run (port, fresh hash salt).
    fn write_config(&self, port: u16, nimbus: &Path, password: &str) -> Result<()> {
        let hash = self.hash_password(password)?;
        let d = self.dir.display();
        let text = format!(
            r#"# Written by `cargo xtask demo` on every run; edits are lost.
[server]
listen = "127.0.0.1:{port}"
tls_cert = "{d}/server.pem"
tls_key = "{d}/server.key"
# A client certificate from the demo TLS CA authenticates /simpleenroll.
client_ca = ["{d}/tls-ca.pem"]
# CRLs and OCSP for relying parties, over plain HTTP (never EST).
http_listen = "127.0.0.1:{hp}"

[plugins]
# SoftHSM2 is described by the out-of-tree example plugin.
files = ["{nimbus}"]

[hsm]
library = "{SOFTHSM2_MODULE}"
token_label = "{TOKEN_LABEL}"
pin_file = "{d}/hsm-pin"
pool_size = 4
env = {{ SOFTHSM2_CONF = "{conf}" }}

[[ca]]
id = "ec"
label = "ec"
name = "kipuka demo ECDSA P-256 CA"
default = true
cert = "{d}/ca-ec.pem"
key = "pkcs11:token={TOKEN_LABEL};object=ec-ca-key"
[ca.profile]
key_usage = ["digitalSignature"]
allowed_keys = ["ec:P-256", "ec:P-384"]
crl_urls = ["http://127.0.0.1:{hp}/crl/ec.crl"]
ocsp_urls = ["http://127.0.0.1:{hp}/ocsp/ec"]
# The names this CA issues: single-label device names as the CN (device-42:
# letters, digits and dashes, no dots) or the Basic user's own name, and DNS
# names below devices.kipuka.test. Anything else is refused with 403 naming
# the rule ("rewrite" would issue the allowed names only).
[ca.policy]
mode = "enforce"
allow_cn = ["*", "{{user}}"]
allow_dns = [".devices.kipuka.test"]
# /serverkeygen: keys made in the token, delivered encrypted under the
# pre-shared AES-256 key "demo-kek" (value in kek.hex). SoftHSM2 2.6 has no
# RSA-OAEP with SHA-256 and no X9.63 KDF, so certificate recipients are refused.
[[ca.serverkeygen.kek]]
id = "{KEK_ID_HEX}"
key = "pkcs11:token={TOKEN_LABEL};object={KEK_LABEL}"

[[ca]]
id = "rsa"
label = "rsa"
name = "kipuka demo RSA-3072 PSS CA"
cert = "{d}/ca-rsa.pem"
key = "pkcs11:token={TOKEN_LABEL};object=rsa-ca-key"
rsa_scheme = "pss"
[ca.profile]
allowed_keys = ["rsa:2048", "rsa:3072", "rsa:4096"]
crl_urls = ["http://127.0.0.1:{hp}/crl/rsa.crl"]
ocsp_urls = ["http://127.0.0.1:{hp}/ocsp/rsa"]
[ca.policy]
allow_cn = ["*", "{{user}}"]
allow_dns = [".devices.kipuka.test"]

[[ca]]
id = "mldsa"
label = "mldsa"
name = "kipuka demo ML-DSA-65 CA (software key)"
cert = "{d}/ca-mldsa.pem"
software_key = "{d}/ca-mldsa-key.p8"
software_key_passphrase_file = "{d}/mldsa-passphrase"
[ca.profile]
allowed_keys = ["ml-dsa-44", "ml-dsa-65", "ml-dsa-87"]
crl_urls = ["http://127.0.0.1:{hp}/crl/mldsa.crl"]
ocsp_urls = ["http://127.0.0.1:{hp}/ocsp/mldsa"]

[db]
url = "sqlite://{d}/kipuka.db"

# Failed passwords per source address and per user name: once spent, further
# attempts get 429 before any password is checked.
[limits]
failed_auth_per_minute = 30
failed_auth_burst = 10

[[auth.users]]
name = "{USER}"
password_hash = "{hash}"

[log]
level = "info"

# Prometheus metrics: plain HTTP, GET /metrics only, never on the EST port.
[metrics]
listen = "127.0.0.1:{mp}"
"#,
            nimbus = nimbus.display(),
            conf = self.softhsm_conf().display(),
            hp = status_port(port),
            mp = metrics_port(port),
        );
        std::fs::write(self.config(), text)
            .with_context(|| format!("cannot write {}", self.config().display()))
    }

    /// Step 4: the three self-signed CA certificates.
    fn ca_certs(&self) -> Result<()> {
        for (id, subject) in [
            ("ec", "CN=kipuka demo EC CA"),
            ("rsa", "CN=kipuka demo RSA CA"),
            ("mldsa", "CN=kipuka demo ML-DSA CA"),
        ] {
            let pem = format!("ca-{id}.pem");
            if self.p(&pem).is_file() {
                eprintln!("==> CA {id}: reusing {pem}");
                continue;
            }
            eprintln!("==> CA {id}: kipuka ca init -> {pem}");
            util::output(
                self.kipuka_cmd()
                    .args(["ca", "init", "--config"])
                    .arg(self.config())
                    .args(["--ca", id, "--subject", subject, "--days", "3650"]),
            )?;
        }
        Ok(())
    }

    fn print_instructions(&self, port: u16, root: &Path) {
        let hp = status_port(port);
        let mp = metrics_port(port);
        let shown = self
            .dir
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| self.dir.clone());
        let url = format!("https://127.0.0.1:{port}/.well-known/est");
        println!(
            r#"
kipuka demo: three CAs (ec = default, rsa = RSA-PSS, mldsa = ML-DSA-65 software key) on
SoftHSM2 token {TOKEN_LABEL}; files in {dir}. In a second shell, from the repository root:

  cd {shown}
  # CA certificates (the default CA; /rsa/ and /mldsa/ give the others)
  curl --cacert tls-ca.pem {url}/cacerts | openssl base64 -d | openssl pkcs7 -inform DER -print_certs
  # a device key and CSR, enrolled with HTTP Basic (user demo, basic-auth.txt)
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key -subj /CN=device1 -outform DER | openssl base64 > device.csr
  curl --cacert tls-ca.pem -u "$(cat basic-auth.txt)" -H 'Content-Type: application/pkcs10' --data-binary @device.csr {url}/simpleenroll | openssl base64 -d | openssl pkcs7 -inform DER -print_certs > device.pem
  openssl verify -CAfile ca-ec.pem device.pem
  # the name policy ([ca.policy]): device names and DNS names below devices.kipuka.test are
  # issued; a name the operator does not own is refused with 403 naming the rule
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device42.key -subj /CN=device-42 -addext subjectAltName=DNS:device-42.devices.kipuka.test -outform DER | openssl base64 > device42.csr
  curl --cacert tls-ca.pem -u "$(cat basic-auth.txt)" -H 'Content-Type: application/pkcs10' --data-binary @device42.csr {url}/simpleenroll | openssl base64 -d | openssl pkcs7 -inform DER -print_certs | openssl x509 -noout -subject -ext subjectAltName
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout bank.key -subj /CN=www.bank.example -addext 'subjectAltName=DNS:www.bank.example,DNS:*.example.com' -outform DER | openssl base64 > bank.csr
  curl --cacert tls-ca.pem -u "$(cat basic-auth.txt)" -H 'Content-Type: application/pkcs10' --data-binary @bank.csr -w ' (HTTP %{{http_code}})\n' {url}/simpleenroll
  # revoking it: OCSP at the URL device.pem names (plain HTTP, port {hp}), the CLI, the CRL
  openssl ocsp -issuer ca-ec.pem -CAfile ca-ec.pem -cert device.pem -url "$(openssl x509 -in device.pem -noout -ocsp_uri)"
  {kipuka} certs revoke "$(openssl x509 -in device.pem -noout -serial)" --reason keyCompromise --config kipuka.toml
  {kipuka} certs list --status revoked --config kipuka.toml
  openssl ocsp -issuer ca-ec.pem -CAfile ca-ec.pem -cert device.pem -url "$(openssl x509 -in device.pem -noout -ocsp_uri)" -no_nonce
  curl -s http://127.0.0.1:{hp}/crl/ec.crl | openssl crl -inform DER -out ec.crl.pem
  openssl verify -crl_check -CAfile ca-ec.pem -CRLfile ec.crl.pem device.pem || echo "device.pem is revoked"
  # the same with TLS client authentication: client.pem (from tls-ca.pem, listed in
  # [server] client_ca) authenticates simpleenroll; simplereenroll needs a certificate
  # issued by the EST CA itself (e.g. --cert device.pem --key device.key)
  curl --cacert tls-ca.pem --cert client.pem --key client.key -H 'Content-Type: application/pkcs10' --data-binary @device.csr {url}/simpleenroll | openssl base64 -d | openssl pkcs7 -inform DER -print_certs > device-mtls.pem
  openssl verify -CAfile ca-ec.pem device-mtls.pem
  # the RSA-3072 CA (RSA-PSS) at the /rsa/ label takes RSA keys
  openssl req -new -newkey rsa:2048 -nodes -keyout device-rsa.key -subj /CN=device2 -outform DER | openssl base64 > device-rsa.csr
  curl --cacert tls-ca.pem -u "$(cat basic-auth.txt)" -H 'Content-Type: application/pkcs10' --data-binary @device-rsa.csr {url}/rsa/simpleenroll | openssl base64 -d | openssl pkcs7 -inform DER -print_certs > device-rsa.pem
  openssl verify -CAfile ca-rsa.pem device-rsa.pem
  # (Debian 12's OpenSSL 3.0 cannot make or verify ML-DSA: /mldsa/ needs OpenSSL >= 3.5.)
  # serverkeygen: the token makes a P-256 key; it comes back encrypted under the pre-shared key
  # demo-kek (hex id {KEK_ID_HEX}, value in kek.hex), signed by the CA, with its certificate
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out want.key
  {kipuka} csr --key want.key --subject CN=device3 --decrypt-key-id {KEK_ID_HEX} > keygen.csr
  curl --cacert tls-ca.pem -u "$(cat basic-auth.txt)" -H 'Content-Type: application/pkcs10' --data-binary @keygen.csr -o keygen.mime {url}/serverkeygen
  part() {{ awk -v n="$1" '{{sub(/\r$/,"")}} /^--est-part-/{{p++; h=1; next}} h{{if($0=="")h=0; next}} p==n' keygen.mime | openssl base64 -d; }}
  part 2 | openssl pkcs7 -inform DER -print_certs > device3.pem
  part 1 | openssl cms -decrypt -inform DER -secretkey "$(cat kek.hex)" -secretkeyid {KEK_ID_HEX} -binary -out device3.signed.der
  openssl cms -verify -inform DER -in device3.signed.der -CAfile ca-ec.pem -purpose any -binary -out device3.akp.der
  tail -c +$(( $(od -An -tu1 -j1 -N1 device3.akp.der | awk '{{print ($1<128)?3:3+$1-128}}') )) device3.akp.der | openssl pkey -inform DER -out device3.key
  [ "$(openssl pkey -in device3.key -pubout)" = "$(openssl x509 -in device3.pem -noout -pubkey)" ] && echo "device3.key is the certified key"
  openssl verify -CAfile ca-ec.pem device3.pem
  # Prometheus metrics (plain HTTP, port {mp}): the enrollments above, by CA, operation and status
  curl -s http://127.0.0.1:{mp}/metrics | grep '^kipuka_est_requests_total'

Starting kipuka serve on 127.0.0.1:{port}; Ctrl-C stops it. Next runs reuse everything
(delete {shown} to start over).
"#,
            dir = self.dir.display(),
            shown = shown.display(),
            kipuka = self.kipuka.display(),
        );
        let _ = std::io::stdout().flush();
    }
}

/// The plain-HTTP status port (CRLs, OCSP): the TLS port + 1.
fn status_port(port: u16) -> u16 {
    port.wrapping_add(1)
}

/// The metrics port (`[metrics] listen`): the TLS port + 2.
fn metrics_port(port: u16) -> u16 {
    port.wrapping_add(2)
}

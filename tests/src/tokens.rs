//! Real PKCS#11 software tokens for tests: SoftHSM2 (Debian package) and Kryoptic (built by
//! `cargo xtask deps`, with ML-DSA), plus the OpenSSL 3.5 command line.
//!
//! Everything here fails loudly when a token or tool is missing: a test that needs a token
//! must fail, not skip, on a machine that lacks it. `cargo xtask test` provides all of them.
//!
//! Each token lives in its own directory, and its module configuration is passed through
//! [`TestToken::env`] to child processes only, so tests may run in parallel threads. A test that
//! loads a module in-process (cryptoki) must set that variable itself before `C_Initialize`,
//! and both modules read it only once per process.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Set by `cargo xtask deps` / `cargo xtask test` (also in `target/kipuka-test-env.sh`).
pub const SOFTHSM2_MODULE_VAR: &str = "KIPUKA_TEST_SOFTHSM2_MODULE";
pub const KRYOPTIC_MODULE_VAR: &str = "KIPUKA_TEST_KRYOPTIC_MODULE";
pub const OPENSSL_VAR: &str = "KIPUKA_TEST_OPENSSL";
/// Debian's SoftHSM2 module, used when `KIPUKA_TEST_SOFTHSM2_MODULE` is not set.
pub const SOFTHSM2_DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

const HOW_TO_GET: &str = "run `cargo xtask test`, which builds it (or `cargo xtask deps` and \
     then `. target/kipuka-test-env.sh` before `cargo test`)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// SoftHSM2 2.6: RSA, EC, AES; no ML-DSA, no CKM_ECDSA_SHA*.
    SoftHsm2,
    /// Kryoptic 1.5: RSA, EC, AES, ML-DSA, ML-KEM, SLH-DSA.
    Kryoptic,
}

impl TokenKind {
    pub const ALL: [TokenKind; 2] = [TokenKind::SoftHsm2, TokenKind::Kryoptic];

    /// The PKCS#11 module, from the environment; an error that says how to get it if missing.
    pub fn module(self) -> Result<PathBuf> {
        let (var, default) = match self {
            TokenKind::SoftHsm2 => (SOFTHSM2_MODULE_VAR, Some(SOFTHSM2_DEFAULT_MODULE)),
            TokenKind::Kryoptic => (KRYOPTIC_MODULE_VAR, None),
        };
        let path = match (std::env::var_os(var).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => PathBuf::from(v),
            (None, Some(d)) => PathBuf::from(d),
            (None, None) => bail!("{self} module: {var} is not set; {HOW_TO_GET}"),
        };
        if !path.is_file() {
            bail!(
                "{self} module {} does not exist ({var}); {HOW_TO_GET}",
                path.display()
            );
        }
        Ok(path)
    }

    /// The environment variable that points the module at its configuration file.
    pub fn config_var(self) -> &'static str {
        match self {
            TokenKind::SoftHsm2 => "SOFTHSM2_CONF",
            TokenKind::Kryoptic => "KRYOPTIC_CONF",
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenKind::SoftHsm2 => "SoftHSM2",
            TokenKind::Kryoptic => "Kryoptic",
        })
    }
}

/// The OpenSSL 3.5 `openssl` program (`KIPUKA_TEST_OPENSSL`), which knows ML-DSA; Debian 12's
/// own `openssl` is 3.0 and does not.
pub fn openssl35() -> Result<PathBuf> {
    let path = std::env::var_os(OPENSSL_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .with_context(|| format!("OpenSSL 3.5 program: {OPENSSL_VAR} is not set; {HOW_TO_GET}"))?;
    if !path.is_file() {
        bail!(
            "OpenSSL 3.5 program {} does not exist ({OPENSSL_VAR}); {HOW_TO_GET}",
            path.display()
        );
    }
    Ok(path)
}

/// An initialised token with a user PIN, in its own directory.
#[derive(Clone, Debug)]
pub struct TestToken {
    pub kind: TokenKind,
    /// The PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// The token's directory: its configuration file and storage (owned by the caller, e.g.
    /// a `tempfile::TempDir` that outlives the token).
    pub dir: PathBuf,
    pub label: String,
    pub user_pin: String,
    pub so_pin: String,
    /// What the module needs in its environment: `SOFTHSM2_CONF` or `KRYOPTIC_CONF`.
    pub env: Vec<(String, String)>,
}

impl TestToken {
    pub const USER_PIN: &'static str = "kipuka-user-1234";
    pub const SO_PIN: &'static str = "kipuka-so-5678";

    /// Initialises a new token labelled `label` in `dir` (created if needed; should be empty).
    pub fn create(kind: TokenKind, dir: &Path, label: &str) -> Result<TestToken> {
        let module = kind.module()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("canonicalizing {}", dir.display()))?;
        let conf = match kind {
            TokenKind::SoftHsm2 => {
                let tokens = dir.join("tokens");
                std::fs::create_dir_all(&tokens)?;
                let conf = dir.join("softhsm2.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                        tokens.display()
                    ),
                )?;
                conf
            }
            TokenKind::Kryoptic => {
                let conf = dir.join("token.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "[[slots]]\nslot = 0\ndbtype = \"sqlite\"\ndbargs = {}\n",
                        toml_string(&dir.join("token.sql").to_string_lossy())
                    ),
                )?;
                conf
            }
        };
        let token = TestToken {
            kind,
            module,
            env: vec![(
                kind.config_var().to_string(),
                conf.to_string_lossy().into_owned(),
            )],
            dir,
            label: label.to_string(),
            user_pin: Self::USER_PIN.to_string(),
            so_pin: Self::SO_PIN.to_string(),
        };
        match kind {
            TokenKind::SoftHsm2 => {
                let mut cmd = Command::new("softhsm2-util");
                cmd.args(["--init-token", "--free", "--label", label])
                    .args(["--so-pin", &token.so_pin, "--pin", &token.user_pin])
                    .envs(token.env.iter().map(|(k, v)| (k, v)));
                checked(&mut cmd, "softhsm2-util (package softhsm2)")?;
            }
            TokenKind::Kryoptic => {
                // Kryoptic has one slot (0) per `[[slots]]` entry; initialise it, then set the
                // user PIN as SO.
                let mut init = token.pkcs11_tool_command();
                init.args(["--slot", "0", "--init-token", "--label", label])
                    .args(["--so-pin", &token.so_pin]);
                checked(&mut init, "pkcs11-tool (package opensc)")?;
                let mut pin = token.pkcs11_tool_command();
                pin.args(["--token-label", label, "--login", "--login-type", "so"])
                    .args(["--so-pin", &token.so_pin, "--init-pin", "--new-pin"])
                    .arg(&token.user_pin);
                checked(&mut pin, "pkcs11-tool (package opensc)")?;
            }
        }
        Ok(token)
    }

    /// `pkcs11-tool --module <module>` with the token's environment, nothing else.
    pub fn pkcs11_tool_command(&self) -> Command {
        let mut cmd = Command::new("pkcs11-tool");
        cmd.arg("--module")
            .arg(&self.module)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `pkcs11-tool` on this token, logged in as the user:
    /// `pkcs11-tool --module M --token-label L --login --pin P <args>`.
    /// Fails (with its output) when pkcs11-tool exits non-zero.
    ///
    /// E.g. `token.pkcs11_tool(["--keypairgen", "--key-type", "EC:prime256v1", "--label", "x",
    /// "--id", "01"])`.
    pub fn pkcs11_tool<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.pkcs11_tool_command();
        cmd.args([
            "--token-label",
            &self.label,
            "--login",
            "--pin",
            &self.user_pin,
        ])
        .args(args);
        checked(&mut cmd, "pkcs11-tool (package opensc)")
    }

    /// Runs `pkcs11-tool --module M <args>` without selecting a token or logging in (for
    /// `--show-info`, `--list-slots`, `--list-mechanisms`). Fails when it exits non-zero.
    pub fn pkcs11_tool_anonymous<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.pkcs11_tool_command();
        cmd.args(args);
        checked(&mut cmd, "pkcs11-tool (package opensc)")
    }
}

/// Runs `cmd`, capturing its output; an error with that output when it fails.
fn checked(cmd: &mut Command, what: &str) -> Result<Output> {
    let line = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {what}; `cargo xtask deps` installs it: {line}"))?;
    if !out.status.success() {
        bail!(
            "{line} failed ({}):\n--- stdout\n{}--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

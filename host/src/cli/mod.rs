//! The command line: `kipuka plugins ...` (and, later, `serve`, `check`).

pub mod ca;
pub mod certs;
pub mod check;
pub mod codes;
pub mod csr;
pub mod metrics;
pub mod plugins;
pub mod reload;
pub mod sd_notify;
pub mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// kipuka: an EST server whose CA keys stay in HSMs.
#[derive(Debug, Parser)]
#[command(name = "kipuka", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List or inspect HSM vendor plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Certificate-authority tasks.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issued certificates: list, show, revoke, lift a hold.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Read a password on standard input and print its argon2id PHC hash,
    /// for `[[auth.users]] password_hash`.
    HashPassword,
    /// Run the EST server until SIGTERM/SIGINT.
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Client side of /serverkeygen: print (base64) a CSR for the PKCS#8 PEM
    /// key file KEY that asks for the generated key to be encrypted for a
    /// pre-shared key (--decrypt-key-id) or for a certificate
    /// (--asymmetric-decrypt-key-id, its subject key identifier). Both in hex.
    Csr {
        /// The key whose type the server should generate (P-256, P-384 or RSA).
        #[arg(long)]
        key: PathBuf,
        /// The subject, RFC 4514: `CN=device1,O=Example`.
        #[arg(long)]
        subject: String,
        /// DecryptKeyIdentifier (RFC 7030 §4.4.1.1), hex.
        #[arg(long, conflicts_with = "asymmetric_decrypt_key_id")]
        decrypt_key_id: Option<String>,
        /// AsymmetricDecryptKeyIdentifier (RFC 7030 §4.4.1.2), hex (colons allowed).
        #[arg(long)]
        asymmetric_decrypt_key_id: Option<String>,
    },
    /// One-time enrollment codes: an HTTP Basic user and password that may
    /// enroll one name, a few times, before it expires.
    #[command(subcommand)]
    EnrollCodes(EnrollCodesCommand),
    /// Load plugins, open the token, log in, find every CA key and match it
    /// to its certificate; report per CA. Non-zero exit on the first problem.
    Check {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// `kipuka enroll-codes ...`
#[derive(Debug, Subcommand)]
pub enum EnrollCodesCommand {
    /// Make a code; its password is printed once and stored only hashed.
    Create {
        /// The configuration file (its `[db]` holds the codes).
        #[arg(long, short)]
        config: PathBuf,
        /// The `[[ca]] id` it enrolls at (the CA needs a `[ca.policy]`).
        #[arg(long)]
        ca: String,
        /// The only name it may enroll: the policy's `{user}`.
        #[arg(long)]
        name: String,
        /// How many certificates it may give.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it works: `90s`, `30m`, `24h`, `7d`.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every code, with its uses left and state (never its password).
    List {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a code: it enrolls nothing more.
    Revoke {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The code's user (`code-...`).
        user: String,
    },
}

/// `kipuka plugins ...`
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// One row per loadable plugin; refused files are listed on stderr.
    List {
        /// Folder to scan instead of the defaults (repeatable).
        #[arg(long = "plugin-dir", value_name = "DIR")]
        plugin_dirs: Vec<PathBuf>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything one plugin declares.
    Inspect {
        /// A plugin name (searched in the plugin folders) or a path to a plugin file.
        target: String,
        /// Folder to scan instead of the defaults (repeatable).
        #[arg(long = "plugin-dir", value_name = "DIR")]
        plugin_dirs: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `kipuka certs ...`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// The issued certificates, newest first: a table, or JSON.
    List {
        /// The configuration file (its `[db]` is read).
        #[arg(long, short)]
        config: PathBuf,
        /// Only the certificates of this `[[ca]] id`.
        #[arg(long)]
        ca: Option<String>,
        /// Only `valid`, `revoked` or `expired` ones.
        #[arg(long)]
        status: Option<String>,
        /// Only subjects containing this text (case-insensitive).
        #[arg(long)]
        subject: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One certificate: its record and revocation state.
    Show {
        /// The serial in hex, as `openssl x509 -serial` prints it (colons and any case allowed).
        serial: String,
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print the certificate as PEM.
        #[arg(long, conflicts_with = "json")]
        pem: bool,
    },
    /// Revoke a certificate. A running server sees it within a second.
    Revoke {
        /// The serial in hex (colons and any case allowed).
        serial: String,
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise,
        /// affiliationChanged, superseded, cessationOfOperation,
        /// certificateHold, privilegeWithdrawn, aACompromise.
        #[arg(long)]
        reason: String,
        /// When it was revoked, RFC 3339 (default: now; not in the future).
        #[arg(long)]
        at: Option<String>,
        /// When the key is known or suspected to have been compromised, RFC 3339.
        #[arg(long)]
        invalidity_date: Option<String>,
    },
    /// Lift a certificateHold: the certificate is valid again.
    Unhold {
        /// The serial in hex (colons and any case allowed).
        serial: String,
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// `kipuka ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make a self-signed CA certificate for a configured CA's key.
    Init {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The `[[ca]] id`.
        #[arg(long)]
        ca: String,
        /// Subject, RFC 4514 (`CN=Example EC CA,O=Example`).
        #[arg(long)]
        subject: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Where to write the PEM (default: the CA's `cert`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Generate an ML-DSA key for the software fallback
    /// (`[[ca]] software_key`): an encrypted PKCS#8 PEM, mode 0600.
    KeygenSoftware {
        /// ML-DSA parameter set: 44, 65 or 87.
        #[arg(long, value_parser = ["44", "65", "87"])]
        set: String,
        /// The file to write; an existing file is never replaced.
        #[arg(long)]
        out: PathBuf,
        /// The environment variable holding the passphrase.
        #[arg(long, value_name = "VAR")]
        passphrase_env: String,
    },
}

/// `kipuka hash-password`: one line of standard input (without its line
/// ending) → an argon2id PHC string with a random salt.
pub fn hash_password() -> std::process::ExitCode {
    use argon2::{
        password_hash::{rand_core::OsRng, PasswordHasher, SaltString},
        Argon2,
    };
    let mut line = zeroize::Zeroizing::new(String::new());
    if std::io::stdin().read_line(&mut line).is_err()
        || line.trim_end_matches(['\r', '\n']).is_empty()
    {
        eprintln!("kipuka hash-password: give the password on standard input");
        return std::process::ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    match Argon2::default().hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng)) {
        Ok(hash) => {
            println!("{hash}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kipuka hash-password: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

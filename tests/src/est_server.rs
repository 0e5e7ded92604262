//! A real `kipuka serve` for end-to-end tests: a token with CA keys made by
//! the token tools, CA certificates made by `kipuka ca init`, a TLS server
//! certificate made by OpenSSL, a Basic user, and the server process on a
//! loopback port. Clients are curl, the OpenSSL command line and strongSwan.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{
    artifacts::{kipuka_bin, out_of_tree_plugin, release_dir},
    est_client::Answer,
    tokens::{openssl35, TestToken, TokenKind},
};

/// The Basic user every server has.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "correct horse battery";
const MLDSA_PASSPHRASE: &str = "pq passphrase";

/// A running server and everything around it.
pub struct EstServer {
    /// Work folder (token, certificates, database, config).
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    /// The token.
    pub token: TestToken,
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// The TLS trust anchor for clients.
    pub tls_ca: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    child: Option<Child>,
    /// Server stderr (logs).
    pub log: PathBuf,
    /// `http://127.0.0.1:PORT/metrics`, when `[metrics] listen` is set.
    pub metrics_url: Option<String>,
    /// Extra environment of every `kipuka` process started from here
    /// (`ca init`, `serve`); a test may change it before [`Self::try_launch`].
    pub env: Vec<(String, String)>,
}

/// What a server is started with beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct EstOptions {
    /// Extra TOML appended to the `[server]` table; `{dir}` stands for the
    /// server's work folder (e.g. `client_ca = ["{dir}/tls/ca.pem"]`).
    pub server_extra: String,
    /// One more CA: `(id, toml)`, see [`EstServer::start_custom`].
    pub extra_ca: Option<(String, String)>,
    /// `[hsm] library` (default: the token's own module), e.g. the PKCS#11 shim.
    pub library: Option<PathBuf>,
    /// `[hsm] provider` (default: unset, chosen by library path or manufacturer).
    pub provider: Option<String>,
    /// `[hsm] pool_size` (default 8).
    pub pool_size: Option<u32>,
    /// `[hsm] health_check_interval_secs` (default 2).
    pub health_check_interval_secs: Option<u64>,
    /// Extra lines for the `[hsm]` table.
    pub hsm_extra: String,
    /// Extra environment of every `kipuka` process (`ca init`, `serve`).
    pub env: Vec<(String, String)>,
    /// The `mldsa` CA uses the software fallback even on Kryoptic (for a
    /// vendor profile without ML-DSA).
    pub mldsa_software: bool,
    /// Do not start `kipuka serve` (the test calls [`EstServer::try_launch`]).
    pub no_launch: bool,
}

/// The `mldsa-keygen` helper of this package: cargo builds a package's
/// binaries next to its integration tests (`target/<profile>/`), and this
/// library code cannot use `CARGO_BIN_EXE_*`, which only tests see.
fn mldsa_keygen() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = profile_dir.join("mldsa-keygen");
    assert!(
        bin.is_file(),
        "{} missing: build the kipuka-tests binaries",
        bin.display()
    );
    bin
}

/// `openssl req` arguments for a new P-256 key.
const NEW_P256_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

/// A P-256 key `tls/NAME.key` and its certificate `tls/NAME.pem`, signed by
/// the test TLS CA (`tls/ca.pem`, `tls/ca.key`) with the OpenSSL
/// `-extfile` lines `ext`.
pub fn tls_leaf(tls: &Path, name: &str, subject: &str, ext: &str) -> (PathBuf, PathBuf) {
    let (key, csr, cnf, cert) = (
        tls.join(format!("{name}.key")),
        tls.join(format!("{name}.csr")),
        tls.join(format!("{name}.cnf")),
        tls.join(format!("{name}.pem")),
    );
    run(openssl()
        .args(["req", "-new"])
        .args(NEW_P256_KEY)
        .args(["-nodes", "-subj", subject, "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    std::fs::write(&cnf, ext).unwrap();
    run(openssl()
        .args(["x509", "-req", "-days", "30", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(tls.join("ca.pem"))
        .arg("-CAkey")
        .arg(tls.join("ca.key"))
        .arg("-extfile")
        .arg(&cnf)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

/// Runs a command; panics with its stderr if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The OpenSSL 3.5 command line.
pub fn openssl() -> Command {
    Command::new(openssl35().unwrap())
}

impl EstServer {
    /// Builds everything and starts the server (three CAs: `ec` P-256
    /// default, `rsa` RSA-3072 PSS, `mldsa` ML-DSA-65 — native on Kryoptic,
    /// software fallback on SoftHSM2).
    pub fn start(kind: TokenKind) -> EstServer {
        Self::start_with(kind, "")
    }

    /// Same, with extra TOML appended to the `[server]` table.
    pub fn start_with(kind: TokenKind, server_extra: &str) -> EstServer {
        Self::start_custom(kind, server_extra, None)
    }

    /// Same, plus one more CA: `(id, toml)` where `toml` is a whole
    /// `[[ca]]` block using the EC key; its certificate is made by `ca init`.
    pub fn start_custom(
        kind: TokenKind,
        server_extra: &str,
        extra_ca: Option<(&str, &str)>,
    ) -> EstServer {
        Self::start_opts(
            kind,
            EstOptions {
                server_extra: server_extra.to_string(),
                extra_ca: extra_ca.map(|(id, toml)| (id.to_string(), toml.to_string())),
                ..EstOptions::default()
            },
        )
    }

    /// Same, with every option of [`EstOptions`].
    pub fn start_opts(kind: TokenKind, opts: EstOptions) -> EstServer {
        Self::start_opts_with(kind, opts, |_| ()).0
    }

    /// Same, calling `prepare` with the new token before anything uses it
    /// (e.g. to write the PKCS#11 shim's configuration, which names the
    /// token's module); returns what `prepare` returned.
    pub fn start_opts_with<T>(
        kind: TokenKind,
        opts: EstOptions,
        prepare: impl FnOnce(&TestToken) -> T,
    ) -> (EstServer, T) {
        let extra_ca = opts
            .extra_ca
            .as_ref()
            .map(|(id, toml)| (id.as_str(), toml.as_str()));
        let tmp = tempfile::Builder::new()
            .prefix("kipuka-est-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        for sub in ["ca", "tls"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let token = TestToken::create(kind, &dir.join("token"), "kipuka-est")
            .unwrap_or_else(|e| panic!("{e:#}"));
        let prepared = prepare(&token);
        for (label, key_type, id) in [
            ("ec-ca-key", "EC:prime256v1", "01"),
            ("rsa-ca-key", "rsa:3072", "02"),
        ] {
            let out = token
                .pkcs11_tool([
                    "--keypairgen",
                    "--key-type",
                    key_type,
                    "--label",
                    label,
                    "--id",
                    id,
                    "--usage-sign",
                ])
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mldsa = match kind {
            TokenKind::Kryoptic if !opts.mldsa_software => {
                run(Command::new(mldsa_keygen())
                    .args([
                        token.module.to_str().unwrap(),
                        &token.label,
                        &token.user_pin,
                        "mldsa-ca-key",
                        "2",
                    ])
                    .arg(dir.join("mldsa.der"))
                    .envs(token.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
                format!("key = \"pkcs11:token={};object=mldsa-ca-key\"", token.label)
            }
            _ => {
                let key = dir.join("ca/mldsa-ca-key.p8");
                run(openssl()
                    .args(["genpkey", "-algorithm", "ML-DSA-65", "-out"])
                    .arg(dir.join("mldsa-plain.pem")));
                run(openssl()
                    .args([
                        "pkcs8",
                        "-topk8",
                        "-v2",
                        "aes-256-cbc",
                        "-passout",
                        "env:KIPUKA_MLDSA_PASSPHRASE",
                        "-in",
                    ])
                    .arg(dir.join("mldsa-plain.pem"))
                    .arg("-out")
                    .arg(&key)
                    .env("KIPUKA_MLDSA_PASSPHRASE", MLDSA_PASSPHRASE));
                format!("software_key = \"{}\"\nsoftware_key_passphrase_env = \"KIPUKA_MLDSA_PASSPHRASE\"", key.display())
            }
        };
        // TLS: a test CA and a server certificate for 127.0.0.1.
        let tls = dir.join("tls");
        run(openssl()
            .args(["req", "-x509"])
            .args(NEW_P256_KEY)
            .args([
                "-nodes",
                "-subj",
                "/CN=kipuka test TLS CA",
                "-days",
                "30",
                "-keyout",
            ])
            .arg(tls.join("ca.key"))
            .arg("-out")
            .arg(tls.join("ca.pem")));
        tls_leaf(
            &tls,
            "server",
            "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );

        let hash = {
            let mut child = Command::new(kipuka_bin())
                .arg("hash-password")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(PASSWORD.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let conf = &token.env[0];
        let config = format!(
            r#"[server]
listen = "127.0.0.1:0"
tls_cert = "{tls}/server.pem"
tls_key = "{tls}/server.key"
max_body_bytes = 16384
request_timeout_secs = 5
shutdown_grace_secs = 5
{server_extra}

[plugins]
dirs = ["{plugins}"]
files = ["{nimbus}"]

[hsm]
library = "{module}"
{provider}token_label = "{label}"
pin_env = "KIPUKA_HSM_PIN"
pool_size = {pool_size}
health_check_interval_secs = {health}
{hsm_extra}
env = {{ {conf_var} = "{conf_val}" }}

[[ca]]
id = "ec"
default = true
cert = "{dir}/ca/ec.pem"
key = "pkcs11:token={label};object=ec-ca-key"
[ca.profile]
validity_days = 30
extended_key_usage = ["clientAuth"]
allowed_keys = ["ec:P-256", "ec:P-384"]

[[ca]]
id = "rsa"
cert = "{dir}/ca/rsa.pem"
key = "pkcs11:token={label};object=rsa-ca-key"
rsa_scheme = "pss"
[ca.profile]
allowed_keys = ["rsa:2048", "rsa:3072"]

[[ca]]
id = "mldsa"
cert = "{dir}/ca/mldsa.pem"
{mldsa}
[ca.profile]
allowed_keys = ["ml-dsa-65", "ml-dsa-44", "ml-dsa-87"]

[db]
url = "sqlite://{dir}/kipuka.db"

[[auth.users]]
name = "{USER}"
password_hash = "{hash}"

[log]
level = "info"
"#,
            tls = tls.display(),
            server_extra = opts
                .server_extra
                .replace("{dir}", &dir.display().to_string()),
            plugins = release_dir().display(),
            nimbus = out_of_tree_plugin().display(),
            module = opts.library.as_ref().unwrap_or(&token.module).display(),
            provider = opts
                .provider
                .as_ref()
                .map(|p| format!("provider = \"{p}\"\n"))
                .unwrap_or_default(),
            pool_size = opts.pool_size.unwrap_or(8),
            health = opts.health_check_interval_secs.unwrap_or(2),
            hsm_extra = opts.hsm_extra,
            label = token.label,
            conf_var = conf.0,
            conf_val = conf.1,
            dir = dir.display(),
        );
        let config = match extra_ca {
            Some((_, block)) => format!(
                "{config}\n{}\n",
                block
                    .replace("{dir}", &dir.display().to_string())
                    .replace("{label}", &token.label)
            ),
            None => config,
        };
        let config_path = dir.join("kipuka.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut server = EstServer {
            dir: dir.clone(),
            _tmp: tmp,
            token,
            base: String::new(),
            tls_ca: tls.join("ca.pem"),
            config: config_path,
            child: None,
            log: dir.join("server.log"),
            metrics_url: None,
            env: opts.env.clone(),
        };
        let mut cas = vec![
            ("ec", "CN=kipuka test EC CA"),
            ("rsa", "CN=kipuka test RSA CA"),
            ("mldsa", "CN=kipuka test ML-DSA CA"),
        ];
        if let Some((id, _)) = extra_ca {
            cas.push((id, "CN=kipuka test extra CA"));
        }
        for (id, subject) in cas {
            run(server
                .kipuka()
                .args(["ca", "init", "--config"])
                .arg(&server.config)
                .args(["--ca", id, "--subject", subject, "--days", "60"]));
        }
        if !opts.no_launch {
            server.launch();
        }
        (server, prepared)
    }

    /// `kipuka` with the server's secrets in the environment.
    pub fn kipuka(&self) -> Command {
        let mut cmd = Command::new(kipuka_bin());
        cmd.env("KIPUKA_HSM_PIN", &self.token.user_pin)
            .env("KIPUKA_MLDSA_PASSPHRASE", MLDSA_PASSPHRASE)
            .env_remove("SOFTHSM2_CONF")
            .env_remove("KRYOPTIC_CONF")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Starts `kipuka serve` and waits for its "listening" line.
    pub fn launch(&mut self) {
        if let Err(log) = self.try_launch() {
            panic!("kipuka serve did not start:\n{log}");
        }
    }

    /// Starts `kipuka serve`; its log if it does not start listening.
    pub fn try_launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = self
            .kipuka()
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The metrics line comes first, when there is one.
                if let Some(url) = line.strip_prefix("kipuka metrics listening on ") {
                    let _ = tx.send((false, url.to_string()));
                }
                if let Some(url) = line.strip_prefix("kipuka listening on ") {
                    let _ = tx.send((true, url.to_string()));
                }
            }
        });
        // Generous: on a loaded 2-core CI machine start-up (plugins, login, key
        // checks) can take tens of seconds.
        let deadline = Instant::now() + Duration::from_secs(180);
        let listening = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((false, metrics)) => self.metrics_url = Some(metrics),
                other => break other,
            }
        };
        match listening {
            Ok((_, url)) => self.base = url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::fs::read_to_string(&self.log).unwrap_or_default());
            }
        }
        self.child = Some(child);
        Ok(())
    }

    /// Sends SIGKILL and waits for the process to end.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for the process to end.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        panic!("kipuka serve did not stop within 10 s of SIGTERM");
    }

    /// `https://127.0.0.1:PORT/.well-known/est[/label]/op`.
    pub fn url(&self, label: Option<&str>, op: &str) -> String {
        match label {
            Some(l) => format!("{}/.well-known/est/{l}/{op}", self.base),
            None => format!("{}/.well-known/est/{op}", self.base),
        }
    }

    /// curl POSTs the CSR file `csr` to `op` at `label` (None: the default
    /// CA) as the Basic user.
    pub fn post_csr_basic(&self, label: Option<&str>, op: &str, csr: &Path) -> Answer {
        self.curl(&[
            "-u",
            &format!("{USER}:{PASSWORD}"),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", csr.display()),
            &self.url(label, op),
        ])
    }

    /// curl with the TLS anchor; `args` are extra curl arguments. The
    /// answer's `elapsed` is this whole call, curl's process included.
    pub fn curl(&self, args: &[&str]) -> Answer {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let (h, b) = (dir.path().join("h"), dir.path().join("b"));
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--cacert"])
            .arg(&self.tls_ca)
            .arg("-D")
            .arg(&h)
            .arg("-o")
            .arg(&b)
            .args(["-w", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let headers = std::fs::read_to_string(&h)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            })
            .collect();
        Answer {
            status,
            headers,
            body: std::fs::read(&b).unwrap_or_default(),
            elapsed: started.elapsed(),
        }
    }

    /// A TLS client certificate for a new P-256 key, `(cert, key)` in PEM,
    /// made by OpenSSL with the test TLS CA: kipuka never issued it, so it is
    /// not in the store, and the server accepts it only if `[server]
    /// client_ca` names `{dir}/tls/ca.pem`.
    pub fn tls_client_cert(&self, name: &str) -> (PathBuf, PathBuf) {
        tls_leaf(
            &self.dir.join("tls"),
            name,
            &format!("/CN={name}"),
            "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\n",
        )
    }

    /// A CSR (base64 of DER, as EST wants) and its key, made by OpenSSL.
    pub fn csr(
        &self,
        name: &str,
        key_args: &[&str],
        subject: &str,
        san: Option<&str>,
    ) -> (PathBuf, PathBuf) {
        let san = san.map(|san| format!("subjectAltName={san}"));
        let mut args = key_args.to_vec();
        args.extend(["-subj", subject]);
        if let Some(san) = &san {
            args.extend(["-addext", san]);
        }
        self.csr_args(name, &args)
    }

    /// A CSR made by `openssl req -new -nodes ARGS` (the key, `-subj`,
    /// `-addext`, `-config`...): base64 of DER, as EST wants, and its key.
    pub fn csr_args(&self, name: &str, args: &[&str]) -> (PathBuf, PathBuf) {
        let key = self.dir.join(format!("{name}.key"));
        let der = self.dir.join(format!("{name}.csr.der"));
        run(openssl()
            .args(["req", "-new", "-nodes"])
            .args(args)
            .arg("-keyout")
            .arg(&key)
            .args(["-outform", "DER", "-out"])
            .arg(&der));
        let b64 = self.dir.join(format!("{name}.csr.b64"));
        run(openssl()
            .args(["base64", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&b64));
        (b64, key)
    }

    /// The certificates of a certs-only answer, as PEM, via OpenSSL.
    pub fn pkcs7_to_pem(&self, answer: &Answer, name: &str) -> PathBuf {
        self.pkcs7_b64_to_pem(&answer.body, name)
    }

    /// The certificates of a certs-only PKCS#7 in base64 (an answer's body,
    /// or a part of a multipart answer), as PEM, via OpenSSL.
    ///
    /// Any line layout: `openssl base64 -d` wants lines of at most 64
    /// columns, and an answer to a client without User-Agent has one line.
    pub fn pkcs7_b64_to_pem(&self, b64_body: &[u8], name: &str) -> PathBuf {
        let flat: Vec<u8> = b64_body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let mut wrapped = Vec::with_capacity(flat.len() + flat.len() / 64 + 1);
        for line in flat.chunks(64) {
            wrapped.extend_from_slice(line);
            wrapped.push(b'\n');
        }
        let b64 = self.dir.join(format!("{name}.p7.b64"));
        std::fs::write(&b64, wrapped).unwrap();
        let der = self.dir.join(format!("{name}.p7.der"));
        run(openssl()
            .args(["base64", "-d", "-in"])
            .arg(&b64)
            .arg("-out")
            .arg(&der));
        let pem = self.dir.join(format!("{name}.pem"));
        run(openssl()
            .args(["pkcs7", "-inform", "DER", "-print_certs", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem));
        pem
    }

    /// `openssl verify -CAfile ca leaf` (OpenSSL 3.5, so ML-DSA works).
    pub fn verify(&self, ca: &Path, leaf: &Path) -> Result<(), String> {
        let out = openssl()
            .args(["verify", "-CAfile"])
            .arg(ca)
            .arg(leaf)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for EstServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

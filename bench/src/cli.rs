//! The command line.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

use crate::{csr::KeyType, error::BenchError};

/// Load generator for a running kipuka: POSTs distinct pre-generated CSRs
/// to `simpleenroll` over N concurrent TLS connections and reports
/// enrollments per second, latency percentiles and errors by status. Only
/// answers that are 200 and carry a certificate (a PKCS#7 certs-only with
/// at least one X.509 certificate) count as enrollments.
///
/// With `--raw-sign`, the same run then measures, with no server around
/// it: the raw C_Sign rate of the CA key on the token, the rate of kipuka's
/// own CSR verification on the same CSRs, and the two together (verify the
/// CSR, sign a certificate-sized hash), and prints the ratio of
/// enrollments per second to each.
///
/// Every run stops by itself: at --duration and/or --requests, each
/// request bounded by --timeout. An option given twice takes the last value.
#[derive(Debug, Parser)]
#[command(name = "kipuka-bench", version, args_override_self = true)]
pub struct Args {
    /// The enrollment URL: https://HOST:PORT/.well-known/est[/LABEL]/simpleenroll
    #[arg(long)]
    pub url: String,

    /// Trust anchor (PEM) for the server's TLS certificate.
    #[arg(long, value_name = "PEM")]
    pub cacert: PathBuf,

    /// TLS client certificate (PEM chain) for certificate authentication.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,

    /// HTTP Basic credentials `user:password` (visible to `ps`: prefer --basic-file).
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "basic_file")]
    pub basic: Option<String>,

    /// A file holding `user:password` on its first line (e.g. the demo's basic-auth.txt).
    #[arg(long, value_name = "FILE")]
    pub basic_file: Option<PathBuf>,

    /// Concurrent connections (and requests in flight).
    #[arg(long, short = 'c', default_value_t = 4)]
    pub concurrency: usize,

    /// Stop sending after this many seconds (default 10 when --requests is not given).
    #[arg(long, short = 'd', value_name = "SECS")]
    pub duration: Option<f64>,

    /// Stop after this many requests.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,

    /// Seconds at the start whose requests are sent but not counted
    /// (connections, caches, the server's pools warming up).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub warmup: f64,

    /// Send at most this many requests per second in total (paced; latency is
    /// then measured from each request's scheduled time, so a stalled server
    /// is not hidden). Default: as fast as the server answers.
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<f64>,

    /// Per-request timeout, connection and TLS handshake included.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,

    /// A new TCP + TLS connection for every request (TLS session resumption
    /// as rustls does by default), instead of keep-alive connections.
    #[arg(long)]
    pub no_keepalive: bool,

    /// Key of the CSRs: ec:P-256 (a fresh key per CSR), rsa:2048 or rsa:3072.
    /// RSA key generation is too slow for thousands of keys, so RSA CSRs
    /// reuse a small set of keys (--rsa-keys) with distinct subjects; the
    /// server verifies each CSR's signature all the same.
    #[arg(long, default_value = "ec:P-256")]
    pub key_type: KeyType,

    /// Send each CSR's base64 in lines of this many columns (e.g. 64), as
    /// some EST servers want (those that decode with OpenSSL's base64 BIO
    /// refuse one long line); default: one line.
    #[arg(long, value_name = "COLUMNS")]
    pub base64_lines: Option<usize>,

    /// Load an OCSP responder instead of enrolling: POST this DER OCSP
    /// request (`openssl ocsp -no_nonce -issuer CA.pem -cert C.pem -reqout
    /// FILE`) to --url (e.g. https://HOST:PORT/ocsp/LABEL) as
    /// application/ocsp-request. Counted: 200 answers that are a successful
    /// OCSPResponse with a BasicOCSPResponse. No CSRs are made; the raw
    /// phases measure C_Sign only.
    #[arg(long, value_name = "DER")]
    pub ocsp_request: Option<PathBuf>,

    /// With --ocsp-request: give every request its own fresh nonce (RFC
    /// 8954), so that every answer is signed anew.
    #[arg(long, requires = "ocsp_request")]
    pub ocsp_nonce: bool,

    /// Connect from this local address (e.g. 127.0.0.2, to be another
    /// source than a second kipuka-bench on 127.0.0.1: the server's
    /// per-source limits then count them apart).
    #[arg(long, value_name = "IP")]
    pub source: Option<std::net::IpAddr>,

    /// Give every CSR this subject (e.g. `CN=device-1`, the client
    /// certificate's) instead of a distinct `CN=kipuka-bench-...` each: for
    /// /simplereenroll, where the server issues only the names of the
    /// certificate being renewed. EC CSRs still differ (a fresh key each).
    #[arg(long, value_name = "DN")]
    pub subject: Option<String>,

    /// How many distinct RSA keys to generate for RSA CSRs.
    #[arg(long, default_value_t = 4)]
    pub rsa_keys: usize,

    /// How many distinct CSRs (or nonce OCSP requests) to generate before the clock starts (default:
    /// --requests, else 50,000 for EC and 5,000 for RSA). A run that sends
    /// more cycles through them again, and says so.
    #[arg(long)]
    pub csrs: Option<usize>,

    /// Also measure, in the same run, the raw C_Sign rate of this key (an
    /// RFC 7512 URI, e.g. pkcs11:token=kipuka-demo;object=ec-ca-key), the CSR
    /// verification rate, and both together.
    #[arg(long, value_name = "PKCS11_URI")]
    pub raw_sign: Option<String>,

    /// The PKCS#11 library for --raw-sign.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/usr/lib/softhsm/libsofthsm2.so"
    )]
    pub module: PathBuf,

    /// Environment variable holding the token's user PIN for --raw-sign.
    #[arg(long, value_name = "VAR", default_value = "KIPUKA_HSM_PIN")]
    pub pin_env: String,

    /// A file holding the user PIN (first line), instead of --pin-env.
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,

    /// Mechanism for --raw-sign: ecdsa (CKM_ECDSA on a SHA-256 hash),
    /// rsa-pss (CKM_RSA_PKCS_PSS, SHA-256, MGF1-SHA-256, 32-byte salt) or
    /// rsa-pkcs (CKM_RSA_PKCS over a SHA-256 DigestInfo). Default: what kipuka
    /// uses for the key's type (ecdsa for EC keys, rsa-pss for RSA keys).
    #[arg(long, value_name = "MECH")]
    pub raw_mechanism: Option<RawMechanism>,

    /// Seconds for each of the three --raw-sign phases.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub raw_duration: f64,

    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// The signing mechanisms `--raw-sign` can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawMechanism {
    /// CKM_ECDSA over a 32-byte SHA-256 hash.
    Ecdsa,
    /// CKM_RSA_PKCS_PSS over a SHA-256 hash.
    RsaPss,
    /// CKM_RSA_PKCS over a SHA-256 DigestInfo.
    RsaPkcs,
}

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Stop sending at this elapsed time.
    pub duration: Option<Duration>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Not counted at the start.
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Requests per second, in total.
    pub rate: Option<f64>,
}

fn seconds(name: &str, v: f64) -> Result<Duration, BenchError> {
    if v.is_finite() && (0.0..=86_400.0).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(BenchError::Usage(format!(
            "{name} {v}: give a number of seconds from 0 to 86400"
        )))
    }
}

impl Args {
    /// Checks the numbers and says when the run stops.
    pub fn limits(&self) -> Result<Limits, BenchError> {
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return Err(BenchError::Usage(
                "--concurrency: give 1 to 10000 connections".into(),
            ));
        }
        if self.requests == Some(0) {
            return Err(BenchError::Usage("--requests: give at least 1".into()));
        }
        let duration = match (self.duration, self.requests) {
            (None, None) => Some(Duration::from_secs(10)),
            (d, _) => d.map(|d| seconds("--duration", d)).transpose()?,
        };
        if duration == Some(Duration::ZERO) {
            return Err(BenchError::Usage("--duration: give more than 0 s".into()));
        }
        let timeout = seconds("--timeout", self.timeout)?;
        if timeout.is_zero() {
            return Err(BenchError::Usage("--timeout: give more than 0 s".into()));
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(BenchError::Usage(
                    "--rate: give a positive number of requests per second".into(),
                ));
            }
        }
        let raw = seconds("--raw-duration", self.raw_duration)?;
        if self.raw_sign.is_some() && raw.is_zero() {
            return Err(BenchError::Usage(
                "--raw-duration: give more than 0 s".into(),
            ));
        }
        if self.rsa_keys == 0 {
            return Err(BenchError::Usage("--rsa-keys: give at least 1".into()));
        }
        Ok(Limits {
            duration,
            requests: self.requests,
            warmup: seconds("--warmup", self.warmup)?,
            timeout,
            rate: self.rate,
        })
    }

    /// How many CSRs to generate.
    pub fn csr_count(&self) -> usize {
        if let Some(n) = self.csrs {
            return n.max(1);
        }
        if let Some(n) = self.requests {
            return usize::try_from(n).unwrap_or(usize::MAX).min(2_000_000);
        }
        match self.key_type {
            KeyType::EcP256 => 50_000,
            KeyType::Rsa(_) => 5_000,
        }
    }
}

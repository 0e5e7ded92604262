//! kipuka-bench: a load generator for a running kipuka, with the raw HSM
//! signing and CSR verification rates measured in the same run.
//!
//! Order of a run: check the arguments, connect once (a clear error now
//! rather than thousands later), generate the CSRs, then the clock starts:
//! the load phase, then (with `--raw-sign`) the three raw phases. The exit
//! status is 0 whenever the run completed, whatever the server answered
//! (failures are in the figures); 2 when it could not run.

mod cli;
mod csr;
mod error;
mod load;
mod ocsp;
mod pkcs7;
mod raw;
mod report;
mod stats;
mod target;
mod tls;

use std::{sync::Arc, time::Instant};

use base64ct::{Base64, Encoding};
use bytes::Bytes;
use clap::Parser;
use http::HeaderValue;
use kipuka::hsm::PinSource;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::{
    cli::Args,
    error::BenchError,
    load::{LoadConfig, Payload},
    raw::RawConfig,
    report::{Report, RunSetup},
    target::Target,
};

/// `user:password` from `--basic` or `--basic-file`.
fn basic_credentials(args: &Args) -> Result<Option<SecretString>, BenchError> {
    let text = match (&args.basic, &args.basic_file) {
        (Some(b), _) => Zeroizing::new(b.clone()),
        (None, Some(path)) => {
            let all = Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| BenchError::file(path, e))?,
            );
            Zeroizing::new(all.lines().next().unwrap_or("").trim_end().to_string())
        }
        (None, None) => return Ok(None),
    };
    if !text.contains(':') {
        return Err(BenchError::Usage(
            "Basic credentials must be user:password".into(),
        ));
    }
    Ok(Some(SecretString::from(text.to_string())))
}

/// `Basic base64(user:password)`, marked sensitive so that it is never printed.
fn authorization(credentials: &SecretString) -> Result<HeaderValue, BenchError> {
    let value = Zeroizing::new(format!(
        "Basic {}",
        Base64::encode_string(credentials.expose_secret().as_bytes())
    ));
    let mut h = HeaderValue::from_str(&value)
        .map_err(|_| BenchError::Usage("Basic credentials must be printable text".into()))?;
    h.set_sensitive(true);
    Ok(h)
}

async fn run(args: Args) -> Result<Report, BenchError> {
    let limits = args.limits()?;
    let ocsp_template = match &args.ocsp_request {
        Some(path) => Some(std::fs::read(path).map_err(|e| BenchError::file(path, e))?),
        None => None,
    };
    let mut target = match ocsp_template {
        Some(_) => Target::parse_ocsp(&args.url)?,
        None => Target::parse(&args.url)?,
    };
    target.source = args.source;
    let client = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        _ => None,
    };
    let connector = tokio_rustls::TlsConnector::from(tls::client_config(&args.cacert, client)?);
    let credentials = basic_credentials(&args)?;
    let auth = match (&credentials, client) {
        (_, Some(_)) => "certificate",
        (Some(_), None) => "basic",
        (None, None) => "none",
    };
    let authorization = credentials.as_ref().map(authorization).transpose()?;
    let raw_config = match &args.raw_sign {
        Some(uri) => Some(RawConfig {
            module: args.module.clone(),
            uri: uri.clone(),
            pin: match &args.pin_file {
                Some(f) => PinSource::File(f.clone()),
                None => PinSource::Env(args.pin_env.clone()),
            },
            mechanism: args.raw_mechanism,
            threads: args.concurrency,
            duration: std::time::Duration::from_secs_f64(args.raw_duration),
        }),
        None => None,
    };

    // One connection first: "connection refused" or a TLS failure is said
    // once, clearly, before minutes of CSR generation.
    tokio::time::timeout(limits.timeout, tls::connect(&target, &connector))
        .await
        .map_err(|_| BenchError::Connect {
            addr: target.authority(),
            reason: format!("no TLS connection within {:?}", limits.timeout),
        })??;

    let count = args.csr_count();
    let t = Instant::now();
    let (csrs, bodies) = match &ocsp_template {
        Some(template) => (
            Vec::new(),
            ocsp::requests(template, args.ocsp_nonce, count)?,
        ),
        None => {
            if !args.json {
                eprintln!("generating {count} {} CSRs ...", args.key_type);
            }
            let (key_type, rsa_keys) = (args.key_type, args.rsa_keys);
            let subject = args.subject.clone();
            let csrs = tokio::task::spawn_blocking(move || {
                csr::generate(key_type, count, rsa_keys, subject.as_deref())
            })
            .await
            .map_err(|e| BenchError::Runtime(format!("CSR generation: {e}")))??;
            let bodies = csrs
                .iter()
                .map(|der| Bytes::from(csr::base64_body(der, args.base64_lines)))
                .collect();
            (csrs, bodies)
        }
    };
    let csr_generation_seconds = t.elapsed().as_secs_f64();
    let distinct = bodies.len();
    let bodies: Arc<Vec<Bytes>> = Arc::new(bodies);

    let cfg = Arc::new(LoadConfig {
        payload: match ocsp_template {
            Some(_) => Payload::Ocsp,
            None => Payload::Enroll,
        },
        target,
        connector,
        authorization,
        concurrency: args.concurrency,
        keepalive: !args.no_keepalive,
        limits,
    });
    let load = load::run(cfg, bodies).await?;

    let raw = match raw_config {
        Some(rc) => {
            let csrs = Arc::new(csrs);
            Some(
                tokio::task::spawn_blocking(move || raw::run(&rc, csrs))
                    .await
                    .map_err(|e| BenchError::Runtime(format!("raw phases: {e}")))??,
            )
        }
        None => None,
    };
    let setup = RunSetup {
        mode: match (&args.ocsp_request, args.ocsp_nonce) {
            (None, _) => "enroll",
            (Some(_), false) => "ocsp",
            (Some(_), true) => "ocsp-nonce",
        },
        url: args.url.clone(),
        concurrency: args.concurrency,
        keepalive: !args.no_keepalive,
        auth,
        key_type: args.key_type.to_string(),
        csrs: distinct,
        csrs_reused: load.requests_sent > distinct as u64,
        csr_generation_seconds,
        rate_limit_per_s: args.rate,
        warmup_seconds: args.warmup,
    };
    Ok(Report::new(setup, load, raw))
}

fn main() {
    let args = Args::parse();
    let json = args.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kipuka-bench: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("kipuka-bench: cannot write JSON: {e}");
                        std::process::exit(2);
                    }
                }
            } else {
                print!("{}", report.text());
            }
        }
        Err(e) => {
            eprintln!("kipuka-bench: {e}");
            std::process::exit(2);
        }
    }
}

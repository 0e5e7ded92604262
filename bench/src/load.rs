//! The load phase: `concurrency` workers, each with its own connection
//! (kept alive, or a new one per request), POSTing the pre-generated CSRs
//! (or OCSP requests) in turn until the duration or the request count is
//! reached.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsConnector;

use crate::{
    cli::Limits,
    error::BenchError,
    ocsp::check_successful,
    pkcs7::certificates_in,
    stats::{Errors, Latencies, Percentiles},
    target::Target,
    tls::connect,
};

/// What the workers send, and what counts as an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Base64 CSRs to an EST enrollment URL; a 200 must carry a certificate.
    Enroll,
    /// DER OCSP requests; a 200 must be a successful OCSPResponse.
    Ocsp,
}

/// What every worker shares.
pub struct LoadConfig {
    /// What is sent.
    pub payload: Payload,
    /// Where to POST.
    pub target: Target,
    /// TLS client.
    pub connector: TlsConnector,
    /// `Authorization: Basic ...`, marked sensitive.
    pub authorization: Option<HeaderValue>,
    /// Workers = connections.
    pub concurrency: usize,
    /// Reuse connections.
    pub keepalive: bool,
    /// When to stop.
    pub limits: Limits,
}

/// The load phase's figures.
#[derive(Debug, serde::Serialize)]
pub struct LoadResult {
    /// 200 answers that carried a certificate, counted (after warm-up).
    pub enrollments: u64,
    /// Failed requests, counted, by kind.
    pub errors: Errors,
    /// All failed requests, counted.
    pub error_total: u64,
    /// Seconds the counted window lasted (warm-up excluded).
    pub seconds: f64,
    /// enrollments / seconds.
    pub enrollments_per_s: f64,
    /// Latency of the enrollments (from the scheduled time when paced).
    pub latency: Percentiles,
    /// Requests sent in all, warm-up included.
    pub requests_sent: u64,
    /// TLS connections made, and how many resumed a session.
    pub connections: u64,
    /// TLS connections that resumed a session.
    pub resumed: u64,
}

/// One worker's tally.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: Errors,
    latencies: Latencies,
    sent: u64,
    connections: u64,
    resumed: u64,
}

enum Outcome {
    Enrolled,
    Failed(&'static str, String),
}

/// One open HTTP/1.1 connection.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

async fn open(cfg: &LoadConfig, tally: &mut Tally) -> Result<Connection, (&'static str, String)> {
    let tls = connect(&cfg.target, &cfg.connector).await.map_err(|e| {
        let kind = match e {
            BenchError::Tls { .. } => "tls",
            _ => "connect",
        };
        (kind, e.to_string())
    })?;
    tally.connections += 1;
    if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        tally.resumed += 1;
    }
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| ("http", format!("HTTP/1.1 handshake: {e}")))?;
    // Drives the connection; ends when the connection closes.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Connection { sender })
}

fn request(cfg: &LoadConfig, body: Bytes) -> Request<Full<Bytes>> {
    let builder = Request::post(cfg.target.path.as_str())
        .header(header::HOST, cfg.target.authority())
        .header(header::USER_AGENT, "kipuka-bench");
    let builder = match cfg.payload {
        Payload::Enroll => builder
            .header(header::CONTENT_TYPE, "application/pkcs10")
            .header("content-transfer-encoding", "base64"),
        Payload::Ocsp => builder.header(header::CONTENT_TYPE, "application/ocsp-request"),
    };
    let mut req = builder
        .body(Full::new(body))
        .expect("static request parts are valid");
    let h = req.headers_mut();
    if let Some(a) = &cfg.authorization {
        h.insert(header::AUTHORIZATION, a.clone());
    }
    if !cfg.keepalive {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    req
}

async fn enroll(
    cfg: &LoadConfig,
    conn: &mut Option<Connection>,
    body: Bytes,
    tally: &mut Tally,
) -> Outcome {
    // A kept connection the server closed (idle timeout, error) is replaced.
    if let Some(c) = conn.as_mut() {
        if c.sender.ready().await.is_err() {
            *conn = None;
        }
    }
    if conn.is_none() {
        match open(cfg, tally).await {
            Ok(c) => *conn = Some(c),
            Err((kind, m)) => return Outcome::Failed(kind, m),
        }
    }
    let Some(c) = conn.as_mut() else {
        return Outcome::Failed("connect", "no connection".into());
    };
    let answer = async {
        let response = c.sender.send_request(request(cfg, body)).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    }
    .await;
    if !cfg.keepalive {
        *conn = None;
    }
    match answer {
        Err(e) => {
            *conn = None;
            Outcome::Failed("http", e.to_string())
        }
        Ok((status, body)) if status == http::StatusCode::OK => match cfg.payload {
            Payload::Enroll => match certificates_in(&body) {
                Ok(_) => Outcome::Enrolled,
                Err(e) => Outcome::Failed("200-no-certificate", e.0),
            },
            Payload::Ocsp => match check_successful(&body) {
                Ok(()) => Outcome::Enrolled,
                Err(e) => Outcome::Failed("200-not-successful", e),
            },
        },
        Ok((status, body)) => {
            let kind: &'static str = match status.as_u16() {
                400 => "400",
                401 => "401",
                403 => "403",
                404 => "404",
                405 => "405",
                413 => "413",
                415 => "415",
                429 => "429",
                500 => "500",
                501 => "501",
                502 => "502",
                503 => "503",
                504 => "504",
                _ => "other-status",
            };
            Outcome::Failed(
                kind,
                format!("{status}: {}", String::from_utf8_lossy(&body).trim()),
            )
        }
    }
}

/// Shared by the workers: the next request's number, and the clock.
struct Schedule {
    next: AtomicU64,
    start: Instant,
    count_from: Instant,
    stop_at: Option<Instant>,
}

async fn worker(cfg: Arc<LoadConfig>, bodies: Arc<Vec<Bytes>>, sched: Arc<Schedule>) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Connection> = None;
    let limits = cfg.limits;
    loop {
        let i = sched.next.fetch_add(1, Ordering::Relaxed);
        if limits.requests.is_some_and(|n| i >= n) {
            break;
        }
        let scheduled = match limits.rate {
            Some(r) => sched.start + Duration::from_secs_f64(i as f64 / r),
            None => Instant::now(),
        };
        if sched
            .stop_at
            .is_some_and(|t| scheduled >= t || Instant::now() >= t)
        {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let body = bodies[(i % bodies.len() as u64) as usize].clone();
        tally.sent += 1;
        let outcome =
            tokio::time::timeout(limits.timeout, enroll(&cfg, &mut conn, body, &mut tally))
                .await
                .unwrap_or_else(|_| {
                    Outcome::Failed("timeout", format!("no answer within {:?}", limits.timeout))
                });
        if matches!(outcome, Outcome::Failed("timeout", _)) {
            conn = None;
        }
        if scheduled < sched.count_from {
            continue;
        }
        match outcome {
            Outcome::Enrolled => {
                tally.ok += 1;
                tally.latencies.record(scheduled.elapsed());
            }
            Outcome::Failed(kind, message) => tally.errors.add(kind, || message),
        }
    }
    tally
}

/// Runs the load phase.
pub async fn run(cfg: Arc<LoadConfig>, bodies: Arc<Vec<Bytes>>) -> Result<LoadResult, BenchError> {
    let start = Instant::now();
    let sched = Arc::new(Schedule {
        next: AtomicU64::new(0),
        start,
        count_from: start + cfg.limits.warmup,
        stop_at: cfg.limits.duration.map(|d| start + cfg.limits.warmup + d),
    });
    let handles: Vec<_> = (0..cfg.concurrency)
        .map(|_| tokio::spawn(worker(cfg.clone(), bodies.clone(), sched.clone())))
        .collect();
    let mut total = Tally::default();
    for h in handles {
        let t = h
            .await
            .map_err(|e| BenchError::Runtime(format!("a load worker failed: {e}")))?;
        total.ok += t.ok;
        total.errors.merge(t.errors);
        total.latencies.merge(t.latencies);
        total.sent += t.sent;
        total.connections += t.connections;
        total.resumed += t.resumed;
    }
    let end = Instant::now();
    let seconds = end
        .saturating_duration_since(sched.count_from)
        .as_secs_f64()
        .max(1e-9);
    let error_total = total.errors.total();
    Ok(LoadResult {
        enrollments: total.ok,
        error_total,
        errors: total.errors,
        seconds,
        enrollments_per_s: total.ok as f64 / seconds,
        latency: total.latencies.percentiles(),
        requests_sent: total.sent,
        connections: total.connections,
        resumed: total.resumed,
    })
}

//! The result of a run, as text for people or as one JSON object.

use crate::{load::LoadResult, raw::RawResult};

/// How the run was set up.
#[derive(Debug, serde::Serialize)]
pub struct RunSetup {
    /// `enroll`, `ocsp` (one request, no nonce) or `ocsp-nonce`.
    pub mode: &'static str,
    /// `--url`.
    pub url: String,
    /// Connections.
    pub concurrency: usize,
    /// Keep-alive connections (false: one per request).
    pub keepalive: bool,
    /// `basic`, `certificate` or `none`.
    pub auth: &'static str,
    /// CSR key type (enroll mode).
    pub key_type: String,
    /// Distinct CSRs generated (distinct OCSP requests in OCSP modes).
    pub csrs: usize,
    /// Whether more requests were sent than distinct CSRs.
    pub csrs_reused: bool,
    /// Seconds spent generating them (before the clock).
    pub csr_generation_seconds: f64,
    /// `--rate`, if paced.
    pub rate_limit_per_s: Option<f64>,
    /// `--warmup` seconds.
    pub warmup_seconds: f64,
}

/// Enrollments per second over each raw rate.
#[derive(Debug, serde::Serialize)]
pub struct Ratios {
    /// enrollments/s ÷ C_Sign/s.
    pub enroll_to_sign: f64,
    /// enrollments/s ÷ verify_csr/s.
    pub enroll_to_verify: Option<f64>,
    /// enrollments/s ÷ (verify_csr + C_Sign)/s.
    pub enroll_to_verify_sign: Option<f64>,
}

/// Everything a run measured.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// Setup.
    pub setup: RunSetup,
    /// The load phase.
    pub load: LoadResult,
    /// The `--raw-sign` phases.
    pub raw: Option<RawResult>,
    /// The ratios, with `--raw-sign`.
    pub ratios: Option<Ratios>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl Report {
    /// Puts the parts together and computes the ratios.
    pub fn new(setup: RunSetup, load: LoadResult, raw: Option<RawResult>) -> Self {
        let ratios = raw.as_ref().map(|r| Ratios {
            enroll_to_sign: ratio(load.enrollments_per_s, r.sign_per_s),
            enroll_to_verify: r.verify_per_s.map(|v| ratio(load.enrollments_per_s, v)),
            enroll_to_verify_sign: r
                .verify_sign_per_s
                .map(|v| ratio(load.enrollments_per_s, v)),
        });
        Report {
            setup,
            load,
            raw,
            ratios,
        }
    }

    /// The text report.
    pub fn text(&self) -> String {
        let s = &self.setup;
        let l = &self.load;
        let (what, bodies) = match s.mode {
            "enroll" => ("enrollments", format!("{} CSRs", s.key_type)),
            "ocsp" => ("OCSP responses", "OCSP requests (no nonce)".to_string()),
            _ => (
                "OCSP responses",
                "OCSP requests, each with its own nonce".to_string(),
            ),
        };
        let mut out = format!(
            "kipuka-bench {url}\n  {conn}, concurrency {c}, auth {auth}, {n} distinct {bodies}{reused}{rate}\n",
            url = s.url,
            conn = if s.keepalive { "keep-alive" } else { "new TLS connection per request" },
            c = s.concurrency,
            auth = s.auth,
            n = s.csrs,
            reused = if s.csrs_reused { " (cycled)" } else { "" },
            rate = s.rate_limit_per_s.map(|r| format!(", paced at {r:.0}/s")).unwrap_or_default(),
        );
        out += &format!(
            "  {what}  {} in {:.2} s = {:.1}/s\n",
            l.enrollments, l.seconds, l.enrollments_per_s
        );
        out += &format!(
            "  latency      p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
            l.latency.p50_ms, l.latency.p90_ms, l.latency.p99_ms, l.latency.max_ms
        );
        out += &format!("  errors       {}\n", l.error_total);
        for (kind, n) in &l.errors.by_kind {
            let m = l.errors.first_message.get(kind).map_or("", String::as_str);
            out += &format!("    {kind:<20} {n:>8}  first: {m}\n");
        }
        out += &format!(
            "  connections  {} ({} resumed TLS sessions); {} requests sent, warm-up included\n",
            l.connections, l.resumed, l.requests_sent
        );
        if let (Some(r), Some(q)) = (&self.raw, &self.ratios) {
            out += &format!(
                "raw, no server: {} ({}, {:?}), {} threads, {:.1} s per phase\n",
                r.key, r.key_type, r.mechanism, r.threads, r.phase_seconds
            );
            out += &format!(
                "  C_Sign               {:>10.1}/s   {what}/s ÷ this = {:.3}\n",
                r.sign_per_s, q.enroll_to_sign
            );
            if let (Some(v), Some(q)) = (r.verify_per_s, q.enroll_to_verify) {
                out += &format!("  verify_csr           {v:>10.1}/s   {what}/s ÷ this = {q:.3}\n",);
            }
            if let (Some(v), Some(q)) = (r.verify_sign_per_s, q.enroll_to_verify_sign) {
                out += &format!("  verify_csr + C_Sign  {v:>10.1}/s   {what}/s ÷ this = {q:.3}\n",);
            }
        }
        out
    }
}

//! One access-log line and one metrics sample per request, and the request
//! id that ties every log line about a request together.
//!
//! The connection layer opens a `request` span (field `request_id`) around
//! the routes, so every event logged while the request is served — the
//! audit `CertificateIssued`, the HSM signature on its blocking thread
//! (`hsm::pool` enters the caller's span there) — carries the id. The id
//! goes back to the client in `X-Request-Id`. The routes say what they
//! learnt (CA, operation, who) by putting [`RequestFacts`] in the
//! response's extensions; the connection layer takes them out again before
//! the response is written.

use std::time::{Duration, Instant};

use http::{header, HeaderMap, HeaderValue, Method};
use warp::reply::Response;

use crate::metrics;

/// What the routes know of a request, for the access log and the metrics.
#[derive(Clone, Debug, Default)]
pub struct RequestFacts {
    /// The `[[ca]]` id the request reached; `None` before one was chosen.
    pub ca: Option<String>,
    /// A bounded operation name ([`metrics::operation_label`], or a fixed
    /// name of the other paths).
    pub operation: &'static str,
    /// Who the client authenticated as ([`crate::est::auth::Principal::describe`]):
    /// never a password.
    pub client: Option<String>,
}

impl RequestFacts {
    /// Attaches these facts to `response`.
    pub fn attach(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// A new request id: 16 random hex digits (64 bits: unique across
/// restarts and instances for any practical log).
pub fn request_id() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Only if the OS has no randomness at all; still distinct per call.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        b = N
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the request line and headers said, taken before the routes run.
pub struct RequestHead {
    pub method: Method,
    pub path: String,
    pub bytes_in: Option<u64>,
    pub started: Instant,
}

impl RequestHead {
    /// The longest path logged; the rest is cut (paths are client-chosen).
    const MAX_PATH: usize = 200;

    pub fn new(method: &Method, path: &str, headers: &HeaderMap) -> RequestHead {
        let mut cut = path.len().min(Self::MAX_PATH);
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        RequestHead {
            method: method.clone(),
            path: path[..cut].to_string(),
            bytes_in: content_length(headers),
            started: Instant::now(),
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The operation label of a path the EST routes did not describe.
fn other_operation(path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        p if p.starts_with("/crl/") => "crl",
        p if p == "/ocsp" || p.starts_with("/ocsp/") => "ocsp",
        _ => "unknown",
    }
}

/// Sets `X-Request-Id`, logs the access line (inside the request's span)
/// and counts the request.
pub fn finish(head: &RequestHead, id: &str, response: &mut Response) {
    let elapsed: Duration = head.started.elapsed();
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let facts = response
        .extensions_mut()
        .remove::<RequestFacts>()
        .unwrap_or_default();
    let operation = if facts.operation.is_empty() {
        other_operation(&head.path)
    } else {
        facts.operation
    };
    let ca = facts.ca.as_deref().unwrap_or(metrics::NO_CA);
    let status = response.status().as_u16();
    let bytes_out = http_body::Body::size_hint(response.body()).exact();
    tracing::info!(
        target: "kipuka::access",
        method = %head.method,
        path = %head.path,
        ca,
        operation,
        status,
        // Whole microseconds, as milliseconds.
        duration_ms = elapsed.as_micros() as f64 / 1000.0,
        client = facts.client.as_deref().unwrap_or("-"),
        bytes_in = head.bytes_in,
        bytes_out,
        "request"
    );
    metrics::est_request(ca, operation, status, elapsed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_hex_digits_and_differ() {
        let (a, b) = (request_id(), request_id());
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let path = format!("/{}", "é".repeat(300));
        let head = RequestHead::new(&Method::GET, &path, &HeaderMap::new());
        assert!(head.path.len() <= RequestHead::MAX_PATH);
        assert!(head.path.starts_with("/é"));
    }

    #[test]
    fn paths_outside_est_get_fixed_operation_names() {
        assert_eq!(other_operation("/crl/ec.crl"), "crl");
        assert_eq!(other_operation("/ocsp/MEQw"), "ocsp");
        assert_eq!(other_operation("/metrics"), "unknown");
    }
}

//! Status publishing over HTTP: `GET /crl/<label>.crl` (or `<id>.crl`),
//! the CA's newest signed CRL as DER (`application/pkix-crl`), the
//! background task that keeps every CA's CRL fresh, and the OCSP responder
//! (`POST /ocsp/<label>`, `GET /ocsp/<label>/<base64 request>`).
//!
//! The CRL is signed by the task, never by a request: a request answers
//! from the cached bytes. The same task keeps the cached OCSP responses
//! fresh. The task polls the store's revocation generation
//! ([`POLL`]), so a `kipuka certs revoke` run in another process is on the
//! CRL within a second.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use http::{header, HeaderValue, Method};
use warp::{reply::Response, Filter};

use super::{
    error::EstError,
    service::{CaEndpoint, EstService},
};
use crate::revocation::{
    crl::{publish, refresh_due},
    ocsp::{self, respond, OcspAnswer},
};

/// How often the store's revocation generation is read.
pub const POLL: Duration = Duration::from_millis(250);
/// How often the cached OCSP responses are looked at for re-signing.
const OCSP_REFRESH: Duration = Duration::from_secs(1);
/// How long a CA whose CRL could not be signed (HSM down) waits before the
/// next attempt.
const RETRY: Duration = Duration::from_secs(5);

/// `application/pkix-crl` (RFC 2585).
pub const CONTENT_TYPE_CRL: &str = "application/pkix-crl";

/// The CA a status path names: by label first, then by id; 404 listing
/// the labels (and `hint`, where the service lives) otherwise.
fn ca_named<'a>(
    svc: &'a EstService,
    name: &str,
    hint: &str,
) -> Result<&'a Arc<CaEndpoint>, EstError> {
    svc.cas
        .iter()
        .find(|c| c.config.label() == name)
        .or_else(|| svc.cas.iter().find(|c| c.config.id == name))
        .ok_or_else(|| {
            let labels: Vec<&str> = svc.cas.iter().map(|c| c.config.label()).collect();
            EstError::NotFound(format!(
                "no CA labelled {name:?} (labels: {}); {hint}",
                labels.join(", ")
            ))
        })
}

fn crl_response(svc: &EstService, tail: &str, method: &Method) -> Result<Response, EstError> {
    let name = tail.strip_suffix(".crl").ok_or_else(|| {
        EstError::NotFound(format!(
            "no CRL at /crl/{tail}: CRLs are at /crl/<ca-label>.crl"
        ))
    })?;
    let ca = ca_named(svc, name, "CRLs are at /crl/<ca-label>.crl")?;
    if method != Method::GET && method != Method::HEAD {
        return Err(EstError::MethodNotAllowed(format!(
            "/crl takes GET, not {method}"
        )));
    }
    let crl = ca.crl.get().ok_or_else(|| {
        EstError::Unavailable(format!(
            "the CRL of CA {} is not signed yet (is its HSM reachable?)",
            ca.config.id
        ))
    })?;
    let len = crl.der.len();
    let mut r = Response::new(crl.der.clone().into());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_CRL),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(r)
}

/// `/crl/*`. Never rejects: every request gets a response.
pub fn crl_routes(
    svc: Arc<EstService>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path("crl")
        .and(warp::path::tail())
        .and(warp::method())
        .map(move |tail: warp::path::Tail, method: Method| {
            crl_response(&svc, tail.as_str(), &method).unwrap_or_else(|e| {
                let mut r = e.into_response(&svc.realm);
                if r.status() == http::StatusCode::METHOD_NOT_ALLOWED {
                    r.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                }
                r
            })
        })
}

/// Signs the CRLs that are due: every CA at the first call, then those
/// whose revocations changed or whose `refresh_minutes` passed. A CA whose
/// signing failed is retried after [`RETRY`]; its last CRL keeps being
/// served meanwhile.
pub async fn refresh_crls(svc: &EstService, retry_at: &mut HashMap<String, Instant>) {
    for ca in &svc.cas {
        let id = &ca.config.id;
        if retry_at.get(id).is_some_and(|t| Instant::now() < *t) {
            continue;
        }
        let generation = match svc.store.ca_revocation_generation(id) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(ca = %id, error = %e, "cannot read the revocation generation");
                retry_at.insert(id.clone(), Instant::now() + RETRY);
                continue;
            }
        };
        if !refresh_due(&ca.crl, generation, &ca.config.crl, SystemTime::now()) {
            continue;
        }
        match publish(&*svc.store, &ca.issuer, &ca.config.crl, &ca.crl).await {
            Ok(_) => {
                retry_at.remove(id);
            }
            Err(e) => {
                tracing::warn!(ca = %id, error = %e, retry_in = ?RETRY, "CRL not signed");
                retry_at.insert(id.clone(), Instant::now() + RETRY);
            }
        }
    }
}

/// Re-signs the cached OCSP responses that are due ([`ocsp::refresh`]),
/// CA by CA. A CA whose HSM or store fails is tried again at the next call;
/// its cached responses are served until they expire.
pub async fn refresh_ocsp(svc: &EstService) {
    for ca in &svc.cas {
        if ca.ocsp.is_empty() {
            continue;
        }
        match ocsp::refresh(&*svc.store, &ca.issuer, &ca.config.ocsp, &ca.ocsp).await {
            Ok(done) if done.signed + done.forgotten > 0 => {
                tracing::debug!(
                    ca = %ca.config.id,
                    signed = done.signed,
                    confirmed = done.confirmed,
                    forgotten = done.forgotten,
                    "OCSP responses refreshed"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(ca = %ca.config.id, error = %e, "OCSP responses not refreshed")
            }
        }
    }
}

/// Runs [`refresh_crls`] every [`POLL`] and [`refresh_ocsp`] every
/// [`OCSP_REFRESH`], until aborted.
pub fn spawn_status_refresh(svc: Arc<EstService>) -> tokio::task::JoinHandle<Infallible> {
    tokio::spawn(async move {
        let mut retry_at = HashMap::new();
        let mut ocsp_at = Instant::now();
        loop {
            refresh_crls(&svc, &mut retry_at).await;
            if Instant::now() >= ocsp_at {
                refresh_ocsp(&svc).await;
                ocsp_at = Instant::now() + OCSP_REFRESH;
            }
            tokio::time::sleep(POLL).await;
        }
    })
}

/// `application/ocsp-request`.
pub const CONTENT_TYPE_OCSP_REQUEST: &str = "application/ocsp-request";
/// `application/ocsp-response`.
pub const CONTENT_TYPE_OCSP_RESPONSE: &str = "application/ocsp-response";

/// `%2B`, `%2F`, `%3D` and the like, as clients escape base64 in a path.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i} of the request path"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the request path is not UTF-8".to_string())
}

/// The DER of a GET request: standard or URL-safe base64, padded or not
/// (RFC 6960 §A.1 says standard, many clients send URL-safe), percent
/// escapes undone. Public for the `ocsp_request` fuzz target.
pub fn decode_get(encoded: &str) -> Result<Vec<u8>, EstError> {
    use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
    let text = percent_decode(encoded).map_err(EstError::BadRequest)?;
    Base64::decode_vec(&text)
        .or_else(|_| Base64Unpadded::decode_vec(&text))
        .or_else(|_| Base64Url::decode_vec(&text))
        .or_else(|_| Base64UrlUnpadded::decode_vec(&text))
        .map_err(|_| {
            EstError::BadRequest(
                "GET /ocsp/<label>/<request>: the request is not base64 (standard or URL-safe)"
                    .into(),
            )
        })
}

fn ocsp_reply(answer: OcspAnswer, get: bool) -> Response {
    let len = answer.der.len();
    let etag = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&answer.der);
        format!("\"{}\"", crate::store::hex_lower(&digest[..16]))
    };
    let mut r = Response::new(answer.der.into());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_OCSP_RESPONSE),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    // RFC 5019 §6.2: GET answers may be cached until nextUpdate.
    if let (true, Some((this_update, next_update))) = (get, answer.validity) {
        let max_age = next_update
            .duration_since(SystemTime::now())
            .map_or(0, |d| d.as_secs());
        let pairs = [
            (header::LAST_MODIFIED, httpdate::fmt_http_date(this_update)),
            (header::EXPIRES, httpdate::fmt_http_date(next_update)),
            (
                header::CACHE_CONTROL,
                format!("max-age={max_age}, public, no-transform, must-revalidate"),
            ),
            (header::ETAG, etag),
        ];
        for (name, value) in pairs {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
    } else {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    r
}

async fn ocsp_request<S>(
    svc: &EstService,
    tail: &str,
    method: &Method,
    headers: &http::HeaderMap,
    body: S,
    timeout: Duration,
) -> Result<Response, EstError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, warp::Error>> + Unpin,
{
    let (name, encoded) = match tail.split_once('/') {
        Some((name, rest)) => (name, Some(rest)),
        None => (tail, None),
    };
    let ca = ca_named(svc, name, "OCSP is at /ocsp/<ca-label>")?;
    let (der, get) = match (method, encoded) {
        (&Method::GET, Some(encoded)) if !encoded.is_empty() => (decode_get(encoded)?, true),
        (&Method::GET, _) => {
            return Err(EstError::BadRequest(
                "GET /ocsp/<label>/<base64 OCSPRequest>: the request is missing".into(),
            ))
        }
        (&Method::POST, None) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let essence = content_type.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case(CONTENT_TYPE_OCSP_REQUEST) {
                return Err(EstError::UnsupportedMediaType(format!(
                    "POST /ocsp takes {CONTENT_TYPE_OCSP_REQUEST}, not {content_type:?}"
                )));
            }
            let body = super::routes::read_body(body, svc.max_body, timeout).await?;
            (body.to_vec(), false)
        }
        (&Method::POST, Some(_)) => {
            return Err(EstError::NotFound(
                "POST the OCSPRequest to /ocsp/<label> itself".into(),
            ))
        }
        _ => {
            return Err(EstError::MethodNotAllowed(format!(
                "/ocsp takes POST or GET, not {method}"
            )))
        }
    };
    let answer = respond(&*svc.store, &ca.issuer, &ca.config.ocsp, &ca.ocsp, &der).await;
    crate::metrics::ocsp_response(answer.status);
    Ok(ocsp_reply(answer, get))
}

/// `/ocsp/*`. Never rejects: every request gets a response.
pub fn ocsp_routes(
    svc: Arc<EstService>,
    timeout: Duration,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path("ocsp")
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |tail: warp::path::Tail, method: Method, headers: http::HeaderMap, body| {
                let svc = svc.clone();
                async move {
                    let body = Box::pin(super::routes::into_bytes(body));
                    match ocsp_request(&svc, tail.as_str(), &method, &headers, body, timeout).await
                    {
                        Ok(r) => r,
                        Err(e) => {
                            let mut r = e.into_response(&svc.realm);
                            if r.status() == http::StatusCode::METHOD_NOT_ALLOWED {
                                r.headers_mut()
                                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                            }
                            r
                        }
                    }
                }
            },
        )
}

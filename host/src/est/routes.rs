//! HTTP: the paths under `/.well-known/est[/<label>]/`, `/healthz`,
//! `/readyz` and `/crl/` (`super::status`), mapped onto [`EstService`]. Every answer, good or bad, is
//! built here; errors become `text/plain` bodies with the right status.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::{reply::Response, Filter};

use crate::{hsm::HealthState, tls::ConnInfo};

use zeroize::Zeroizing;

use crate::metrics;

use super::{
    connection::access::RequestFacts,
    error::EstError,
    serverkeygen::{multipart, KeygenReply},
    service::{CaEndpoint, Enrollment, EstReply, EstService},
    wire::{base64_lines, check_pkcs10_content_type},
};

/// Base64 as RFC 7030 clients read it: 64-column lines, except for a
/// client that sends no `User-Agent` — strongSwan's `pki --est` (5.9), which
/// sends none, decodes base64 four characters at a time and cannot skip
/// line breaks, so it gets one unbroken line. RFC 8951 requires clients to
/// accept both.
fn encode_body(der: &[u8], headers: &HeaderMap) -> String {
    if headers.contains_key(header::USER_AGENT) {
        base64_lines(der)
    } else {
        use base64ct::Encoding;
        base64ct::Base64::encode_string(der)
    }
}

fn reply(r: EstReply, headers: &HeaderMap) -> Response {
    let body = encode_body(&r.der, headers);
    let len = body.len();
    let mut response = Response::new(body.into());
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    h.insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    // Strict clients (strongSwan) cannot read chunked bodies.
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

fn plain(status: StatusCode, text: String) -> Response {
    let len = text.len();
    let mut response = Response::new(text.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// A label is a path segment: RFC 7030 §3.2.2 allows letters, digits and
/// a few marks; anything else (`..`, `%2F`, non-UTF-8) is no label of ours.
fn valid_label(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 64
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Splits `[label/]operation`.
fn parse_tail(tail: &str) -> Result<(Option<&str>, &str), EstError> {
    let parts: Vec<&str> = tail.split('/').collect();
    match parts.as_slice() {
        [op] if !op.is_empty() => Ok((None, op)),
        [label, op] if !op.is_empty() => {
            if !valid_label(label) {
                return Err(EstError::NotFound(format!("{label:?} is not a CA label")));
            }
            Ok((Some(label), op))
        }
        _ => Err(EstError::NotFound(format!(
            "no EST operation at /.well-known/est/{tail}"
        ))),
    }
}

pub(super) async fn read_body<S>(
    mut body: S,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, EstError>
where
    S: futures_util::Stream<Item = Result<Bytes, warp::Error>> + Unpin,
{
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|e| EstError::BadRequest(format!("cannot read the request body: {e}")))?;
            if buf.len() + chunk.len() > limit {
                return Err(EstError::TooLarge(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| {
        EstError::BadRequest(format!(
            "the request body did not arrive within {timeout:?}"
        ))
    })?
}

/// What one request to the EST paths is.
struct EstRequest {
    method: Method,
    tail: String,
    headers: HeaderMap,
    conn: ConnInfo,
}

async fn dispatch<S>(svc: Arc<EstService>, req: EstRequest, body: S, timeout: Duration) -> Response
where
    S: futures_util::Stream<Item = Result<Bytes, warp::Error>> + Unpin,
{
    let realm = svc.realm.clone();
    let mut facts = RequestFacts::default();
    let (label, op) = match parse_tail(&req.tail) {
        Ok(x) => x,
        Err(e) => {
            facts.operation = "unknown";
            return facts.attach(e.into_response(&realm));
        }
    };
    facts.operation = metrics::operation_label(op);
    let ca = match svc.ca(label) {
        Ok(ca) => ca,
        Err(e) => return facts.attach(e.into_response(&realm)),
    };
    facts.ca = Some(ca.config.id.clone());
    let response = answer(&svc, &ca, op, &req, body, timeout, &mut facts).await;
    facts.attach(response)
}

/// The answer to `op` on `ca`; `facts.client` is set once the client has
/// authenticated.
async fn answer<S>(
    svc: &EstService,
    ca: &Arc<CaEndpoint>,
    op: &str,
    req: &EstRequest,
    body: S,
    timeout: Duration,
    facts: &mut RequestFacts,
) -> Response
where
    S: futures_util::Stream<Item = Result<Bytes, warp::Error>> + Unpin,
{
    let realm = svc.realm.clone();
    let allow = |methods: &'static str, e: EstError| {
        let mut r = e.into_response(&realm);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(methods));
        r
    };
    match (op, &req.method) {
        ("cacerts", &Method::GET) => reply(svc.cacerts(ca), &req.headers),
        ("csrattrs", &Method::GET) => match svc.csrattrs(ca) {
            Some(r) => reply(r, &req.headers),
            None => {
                let mut r = Response::new(Bytes::new().into());
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
        },
        ("simpleenroll", &Method::POST) => {
            enroll(
                svc,
                ca,
                Operation::Enroll(Enrollment::Simple),
                req,
                body,
                timeout,
                facts,
            )
            .await
        }
        ("simplereenroll", &Method::POST) => {
            enroll(
                svc,
                ca,
                Operation::Enroll(Enrollment::Re),
                req,
                body,
                timeout,
                facts,
            )
            .await
        }
        ("fullcmc", &Method::POST) => EstError::NotImplemented(
            "fullcmc (RFC 7030 §4.3) is not supported by this server".into(),
        )
        .into_response(&realm),
        ("serverkeygen", &Method::POST) => {
            enroll(svc, ca, Operation::ServerKeygen, req, body, timeout, facts).await
        }
        ("cacerts" | "csrattrs", _) => allow(
            "GET",
            EstError::MethodNotAllowed(format!("{op} takes GET, not {}", req.method)),
        ),
        ("simpleenroll" | "simplereenroll" | "fullcmc" | "serverkeygen", _) => allow(
            "POST",
            EstError::MethodNotAllowed(format!("{op} takes POST, not {}", req.method)),
        ),
        _ => EstError::NotFound(format!("{op:?} is not an EST operation")).into_response(&realm),
    }
}

/// The POST operations that take a CSR.
#[derive(Clone, Copy)]
enum Operation {
    /// `/simpleenroll` or `/simplereenroll`.
    Enroll(Enrollment),
    /// `/serverkeygen`: authenticated as `/simpleenroll` is (RFC 7030 §4.4).
    ServerKeygen,
}

async fn enroll<S>(
    svc: &EstService,
    ca: &CaEndpoint,
    op: Operation,
    req: &EstRequest,
    body: S,
    timeout: Duration,
    facts: &mut RequestFacts,
) -> Response
where
    S: futures_util::Stream<Item = Result<Bytes, warp::Error>> + Unpin,
{
    let (name, auth_as) = match op {
        Operation::Enroll(Enrollment::Simple) => ("simpleenroll", Enrollment::Simple),
        Operation::Enroll(Enrollment::Re) => ("simplereenroll", Enrollment::Re),
        Operation::ServerKeygen => ("serverkeygen", Enrollment::Simple),
    };
    let authorization = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match svc
        .authenticate(ca, auth_as, &req.conn, authorization)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            // A client without credentials is told how to authenticate; that
            // first 401 is part of the protocol (libest), not worth an event.
            if authorization.is_some() || req.conn.peer_chain.is_some() {
                svc.rejected(Some(ca), name, None, &e).await;
            }
            return e.into_response(&svc.realm);
        }
    };
    facts.client = Some(principal.describe());
    let result = async {
        let content_type = match req.headers.get(header::CONTENT_TYPE) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                EstError::UnsupportedMediaType(
                    "the Content-Type header is not ASCII text; send application/pkcs10".into(),
                )
            })?),
        };
        check_pkcs10_content_type(content_type)
            .map_err(|e| EstError::UnsupportedMediaType(e.to_string()))?;
        let body = read_body(body, svc.max_body, timeout).await?;
        match op {
            Operation::Enroll(e) => svc
                .enroll(ca, e, &principal, &req.conn, &body)
                .await
                .map(|r| with_dropped(reply(r.reply, &req.headers), &r.dropped)),
            Operation::ServerKeygen => svc
                .serverkeygen(ca, &principal, &req.conn, &body)
                .await
                .map(|r| with_dropped(keygen_reply(&r, &req.headers), &r.dropped)),
        }
    }
    .await;
    match result {
        Ok(r) => r,
        Err(e) => {
            svc.rejected(Some(ca), name, Some(&principal), &e).await;
            e.into_response(&svc.realm)
        }
    }
}

/// `Kipuka-Policy-Dropped`: the requested names the policy left out
/// (rewrite mode), comma-separated, each with its rule. The policy escapes
/// every non-printable character, so the value is always a valid header.
fn with_dropped(mut response: Response, dropped: &[String]) -> Response {
    if !dropped.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&dropped.join(", ")) {
            response.headers_mut().insert("kipuka-policy-dropped", v);
        }
    }
    response
}

/// The two-part `multipart/mixed` answer of `/serverkeygen`.
fn keygen_reply(r: &KeygenReply, headers: &HeaderMap) -> Response {
    let key = Zeroizing::new(encode_body(&r.key_der, headers));
    let cert = encode_body(&r.cert_der, headers);
    let boundary = multipart::new_boundary();
    let body = multipart::body(
        &boundary,
        &[
            multipart::Part {
                content_type: r.key_content_type,
                base64: &key,
            },
            multipart::Part {
                content_type: r.cert_content_type,
                base64: &cert,
            },
        ],
    );
    let len = body.len();
    let mut response = Response::new(body.into());
    let h = response.headers_mut();
    match HeaderValue::from_str(&multipart::content_type(&boundary)) {
        Ok(v) => h.insert(header::CONTENT_TYPE, v),
        Err(_) => unreachable!("the boundary is hex and ASCII"),
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

fn readiness(svc: &EstService) -> Response {
    let mut lines = Vec::new();
    let mut ready = true;
    for ca in &svc.cas {
        let state = ca.health();
        ready &= state != HealthState::Unavailable;
        lines.push(format!("{} {}", ca.config.id, state));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut text = lines.join("\n");
    text.push('\n');
    let mut r = plain(status, text);
    if !ready {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

/// warp's body stream yields some `impl Buf`; the handlers want `Bytes`.
pub(super) fn into_bytes<S, B>(
    body: S,
) -> impl futures_util::Stream<Item = Result<Bytes, warp::Error>>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    body.map(|r| r.map(|mut b| b.copy_to_bytes(b.remaining())))
}

/// All routes. Never rejects: every request gets a response.
pub fn routes(
    svc: Arc<EstService>,
    timeout: Duration,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_svc = {
        let svc = svc.clone();
        warp::any().map(move || svc.clone())
    };
    let est = warp::path(".well-known")
        .and(warp::path("est"))
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<ConnInfo>())
        .and(warp::body::stream())
        .and(with_svc.clone())
        .then(
            move |tail: warp::path::Tail,
                  method: Method,
                  headers: HeaderMap,
                  conn: Option<ConnInfo>,
                  body,
                  svc: Arc<EstService>| {
                let req = EstRequest {
                    method,
                    tail: tail.as_str().to_string(),
                    headers,
                    conn: conn.unwrap_or_default(),
                };
                let body = Box::pin(into_bytes(body));
                dispatch(svc, req, body, timeout)
            },
        );
    let healthz = warp::path("healthz")
        .and(warp::path::end())
        .map(|| plain(StatusCode::OK, "ok\n".into()));
    let readyz = warp::path("readyz")
        .and(warp::path::end())
        .and(with_svc)
        .map(|svc: Arc<EstService>| readiness(&svc));
    let realm = svc.realm.clone();
    let fallback = warp::any().map(move || {
        EstError::NotFound("not an EST path: EST lives under /.well-known/est/".into())
            .into_response(&realm)
    });
    est.or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(super::status::crl_routes(svc.clone()))
        .unify()
        .or(super::status::ocsp_routes(svc, timeout))
        .unify()
        .or(fallback)
        .unify()
}

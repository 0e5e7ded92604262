//! Status publishing over HTTP: `GET /crl/<label>.crl` (or `<id>.crl`),
//! the CA's newest signed CRL as DER (`application/pkix-crl`), and the
//! background task that keeps every CA's CRL fresh.
//!
//! The CRL is signed by the task, never by a request: a request answers
//! from the cached bytes. The task polls the store's revocation generation
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
use crate::revocation::crl::{publish, refresh_due};

/// How often the store's revocation generation is read.
pub const POLL: Duration = Duration::from_millis(250);
/// How long a CA whose CRL could not be signed (HSM down) waits before the
/// next attempt.
const RETRY: Duration = Duration::from_secs(5);

/// `application/pkix-crl` (RFC 2585).
pub const CONTENT_TYPE_CRL: &str = "application/pkix-crl";

/// The CA `/crl/<name>.crl` names: by label first, then by id.
fn ca_named<'a>(svc: &'a EstService, name: &str) -> Option<&'a Arc<CaEndpoint>> {
    svc.cas
        .iter()
        .find(|c| c.config.label() == name)
        .or_else(|| svc.cas.iter().find(|c| c.config.id == name))
}

fn crl_response(svc: &EstService, tail: &str, method: &Method) -> Result<Response, EstError> {
    let name = tail.strip_suffix(".crl").ok_or_else(|| {
        EstError::NotFound(format!(
            "no CRL at /crl/{tail}: CRLs are at /crl/<ca-label>.crl"
        ))
    })?;
    let ca = ca_named(svc, name).ok_or_else(|| {
        let labels: Vec<&str> = svc.cas.iter().map(|c| c.config.label()).collect();
        EstError::NotFound(format!(
            "no CA labelled {name:?} (labels: {})",
            labels.join(", ")
        ))
    })?;
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

/// Runs [`refresh_crls`] every [`POLL`] until aborted.
pub fn spawn_crl_refresh(svc: Arc<EstService>) -> tokio::task::JoinHandle<Infallible> {
    tokio::spawn(async move {
        let mut retry_at = HashMap::new();
        loop {
            refresh_crls(&svc, &mut retry_at).await;
            tokio::time::sleep(POLL).await;
        }
    })
}

//! The optional plain-HTTP listener (`[server] http_listen`) for relying
//! parties: `/crl/*`, `/ocsp/*` and `/healthz` only. EST is never served
//! without TLS; its paths get 404 here.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use http::StatusCode;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::{net::TcpListener, sync::Semaphore};
use warp::{reply::Response, Filter};

use super::{
    connection::{header_case::HeaderSpellings, serve_connection},
    error::EstError,
    server::HttpLimits,
    service::EstService,
    status,
};
use crate::tls::ConnInfo;

/// The status routes. Never rejects.
pub fn status_routes(
    svc: Arc<EstService>,
    timeout: Duration,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let realm = svc.realm.clone();
    let healthz = warp::path("healthz").and(warp::path::end()).map(|| {
        let mut r = Response::new("ok\n".into());
        *r.status_mut() = StatusCode::OK;
        r
    });
    status::crl_routes(svc.clone())
        .or(status::ocsp_routes(svc, timeout))
        .unify()
        .or(healthz)
        .unify()
        .or(warp::any().map(move || {
            EstError::NotFound(
                "this plain-HTTP listener serves only /crl/, /ocsp/ and /healthz; EST needs TLS"
                    .into(),
            )
            .into_response(&realm)
        }))
        .unify()
}

/// Serves `routes` over plain HTTP/1.1 on `listener` until `shutdown`, with
/// the EST listener's connection handling ([`super::connection`]: header
/// spellings, early answers, lingering close) and `limits`, then lets
/// requests in flight finish for up to the grace period.
pub async fn serve_plain<F>(
    listener: TcpListener,
    routes: F,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let spellings = match HeaderSpellings::learn().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "header names will go out in title case only");
            HeaderSpellings::default()
        }
    };
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = super::per_ip::PerIpLimit::new(limits.max_connections_per_ip);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "plain-HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(ip_slot) = super::per_ip::admit(&per_ip, remote.ip(), "http") else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let routes = routes.clone();
        let spellings = spellings.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slots = (slot, ip_slot);
            let info = ConnInfo {
                remote: Some(remote),
                ..ConnInfo::default()
            };
            serve_connection(tcp, info, routes, limits, spellings, watcher, remote).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await;
}

//! The optional plain-HTTP listener (`[server] http_listen`) for relying
//! parties: `/crl/*`, `/ocsp/*` and `/healthz` only. EST is never served
//! without TLS; its paths get 404 here.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore};
use warp::{reply::Response, Filter};

use super::{error::EstError, service::EstService, status};

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

/// Serves `routes` over plain HTTP/1.1 on `listener` until `shutdown`,
/// at most `max_connections` at once, then lets requests in flight finish
/// for up to `grace`.
pub async fn serve_plain<F>(
    listener: TcpListener,
    routes: F,
    max_connections: usize,
    header_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
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
        let _ = tcp.set_nodelay(true);
        let svc = warp::service(routes.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let mut svc = svc.clone();
                async move { tower_service::Service::call(&mut svc, req).await }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%remote, error = %e, "plain-HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}

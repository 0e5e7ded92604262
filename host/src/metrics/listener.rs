//! `[metrics] listen`: plain HTTP, `GET /metrics` and nothing else. Its own
//! small hyper server, apart from the EST connection handling: scrapers
//! need none of what strict EST clients need, and the EST port must never
//! answer `/metrics`.

use std::{convert::Infallible, future::Future, time::Duration};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// The exposition's media type (prometheus-client writes OpenMetrics text,
/// which Prometheus' text parsers read as well).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve_metrics(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(
                    TokioIo::new(tcp),
                    hyper::service::service_fn(|req: Request<Incoming>| async move {
                        Ok::<_, Infallible>(answer(req.method(), req.uri().path()))
                    }),
                );
            if let Err(e) = conn.await {
                tracing::debug!(%remote, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

fn answer(method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET, "/metrics") => match super::render() {
            Some(text) => (StatusCode::OK, CONTENT_TYPE, text),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "metrics are not enabled\n".to_string(),
            ),
        },
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "/metrics takes GET\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "this listener serves /metrics only\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

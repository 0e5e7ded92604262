//! One HTTP/1.1 connection: hyper serving the warp routes, with what strict
//! EST clients need from the front door.
//!
//! - Header names go out in the RFCs' spelling ([`header_case`]).
//! - An answer given before the request body was read (a 401 challenge, a
//!   403, 404, 405, 415) first reads and discards the rest of the body
//!   ([`body`]), so the client can send the request again on the same
//!   connection.
//! - A connection that must close with input still unread (a 413, a body too
//!   slow) says `Connection: close` and closes gracefully ([`linger`]), so
//!   the client receives the whole answer.

pub mod access;
pub mod body;
pub mod header_case;
pub mod linger;

use std::net::SocketAddr;

use hyper::{body::Incoming, server::conn::http1, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;
use warp::{reply::Response, Filter};

use crate::tls::ConnInfo;

use self::{
    body::{settle, DrainLimits, Settled, TrackedBody, Unread},
    header_case::HeaderSpellings,
    linger::{LingerFlag, Lingering, RawTcp},
};
use super::server::HttpLimits;

/// Serves HTTP/1.1 requests on `io` with `routes` until the client or the
/// server ends the connection (or `watcher`'s graceful shutdown).
pub async fn serve_connection<IO, F>(
    io: IO,
    info: ConnInfo,
    routes: F,
    limits: HttpLimits,
    spellings: HeaderSpellings,
    watcher: hyper_util::server::graceful::Watcher,
    remote: SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + RawTcp + Unpin + Send + 'static,
    F: Filter<Extract = (Response,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let svc = warp::service(routes);
    let linger = LingerFlag::default();
    let drain = DrainLimits {
        max_bytes: limits.max_body_bytes,
        timeout: limits.body_timeout,
    };
    let on_close = linger.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (mut parts, body) = req.into_parts();
        let head = access::RequestHead::new(&parts.method, parts.uri.path(), &parts.headers);
        let id = access::request_id();
        let span = tracing::info_span!("request", request_id = %id);
        parts.extensions.insert(info.clone());
        let unread = Unread::default();
        let req = Request::from_parts(parts, TrackedBody::new(body, unread.clone()));
        let mut svc = svc.clone();
        let spellings = spellings.clone();
        let linger = linger.clone();
        async move {
            let mut response = tower_service::Service::call(&mut svc, req)
                .instrument(span.clone())
                .await?;
            // The routes' future, and with it the body, is dropped by now.
            if settle(&unread, &mut response, drain).await == Settled::Close {
                linger.set();
            }
            spellings.apply(&mut response);
            span.in_scope(|| access::finish(&head, &id, &mut response));
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .title_case_headers(true)
        .serve_connection(TokioIo::new(Lingering::new(io, on_close)), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

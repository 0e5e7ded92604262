//! Our own accept loop: TCP → rustls handshake → hyper HTTP/1.1 serving
//! the warp filters ([`super::connection`]), with the connection's TLS facts
//! in each request's extensions, and a graceful shutdown that lets requests
//! in flight finish.

use std::{future::Future, sync::Arc, time::Duration};

use hyper_util::server::graceful::GracefulShutdown;
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::TlsAcceptor;
use warp::{reply::Response, Filter};

use super::{
    connection::{header_case::HeaderSpellings, serve_connection},
    current::Current,
    per_ip::{self, PerIpLimit},
};
use crate::tls::ConnInfo;

/// Timeouts and limits of the HTTP layer.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// Request headers must arrive within this (slowloris).
    pub header_timeout: Duration,
    /// Largest header block, bytes (hyper answers 431 past it).
    pub max_header_bytes: usize,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Most connections served at once (TLS handshakes included). Beyond
    /// it the server stops accepting, and new connections wait in the
    /// kernel's listen backlog until one ends.
    pub max_connections: usize,
    /// Most connections one source holds at once ([`super::per_ip`]);
    /// over it a new connection is closed at once.
    pub max_connections_per_ip: usize,
    /// Largest request body (`[server] max_body_bytes`): also how much of a
    /// body an early answer (401, 403, ...) reads and discards so that the
    /// connection stays usable.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive (`[server]
    /// request_timeout_secs`); also bounds that discarding.
    pub body_timeout: Duration,
}

/// Serves `routes` on `listener` with TLS until `shutdown` completes. Each
/// connection is accepted with the TLS configuration current when it
/// arrives: a reload (certificate, key, client trust anchors) applies to
/// the next handshake and never to a connection already open.
pub async fn serve<F>(
    listener: TcpListener,
    tls: Arc<Current<rustls::ServerConfig>>,
    routes: F,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
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
    let per_ip = PerIpLimit::new(limits.max_connections_per_ip);
    let mut at_limit = false;
    tokio::pin!(shutdown);
    loop {
        // A slot first, then accept: at the limit, connections queue in the
        // backlog (and their clients' connect timeouts apply) instead of
        // costing a task, a TLS handshake and memory each.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                at_limit = false;
                slot
            }
            Err(_) => {
                if !at_limit {
                    at_limit = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached; new connections wait until one ends"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // closed: never, the semaphore is ours
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Over its source's limit: closed here, its slot given back.
        let Some(ip_slot) = per_ip::admit(&per_ip, remote.ip(), "tls") else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.get());
        let routes = routes.clone();
        let spellings = spellings.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slots = (slot, ip_slot);
            let tls =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
            let info = ConnInfo::from_connection(tls.get_ref().1, Some(remote));
            serve_connection(tls, info, routes, limits, spellings, watcher, remote).await;
        });
    }
    drop(listener);
    tracing::info!("no longer accepting connections; finishing requests in flight");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "requests still running at the end of the grace period were cut");
    }
}

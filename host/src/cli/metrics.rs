//! `[metrics] listen`: turns the metrics on, registers the samplers that
//! read the session pool, the token health and the CRLs at scrape time,
//! and starts the listener. Kept out of `serve.rs` so that the server's
//! start-up reads as one call.

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use crate::{
    est::service::EstService,
    hsm::{HealthState, SessionPool},
    metrics,
};

/// Starts the metrics listener on `listen` (nothing when `None`). The task
/// runs until aborted.
pub async fn start_metrics(
    listen: Option<SocketAddr>,
    pool: &Arc<SessionPool>,
    service: &Arc<EstService>,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let Some(addr) = listen else {
        return Ok(None);
    };
    metrics::install();
    let pool = pool.clone();
    metrics::add_sampler(move |s| {
        let name = pool.context().summary().label;
        let (open, idle) = (pool.stats().open, pool.idle_sessions());
        s.pool_sessions(&name, open.saturating_sub(idle), idle);
        s.token_health(
            &name,
            match pool.health().state() {
                HealthState::Healthy => 0,
                HealthState::Degraded => 1,
                HealthState::Unavailable => 2,
            },
        );
    });
    let service = service.clone();
    metrics::add_sampler(move |s| {
        let now = SystemTime::now();
        for ca in &service.cas {
            if let Some(crl) = ca.crl.get() {
                let age = now.duration_since(crl.this_update).unwrap_or_default();
                s.crl(&ca.config.id, age, crl.entries);
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (metrics.listen): {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    // Scripts and tests wait for this line on stdout, as for the others.
    println!("kipuka metrics listening on http://{bound}/metrics");
    Ok(Some(tokio::spawn(metrics::listener::serve_metrics(
        listener,
        std::future::pending(),
    ))))
}

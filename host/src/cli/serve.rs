//! `kipuka serve --config FILE`: the EST server.

use std::{path::Path, process::ExitCode, sync::Arc, time::Duration};

use der::Encode;

use crate::{
    audit::{AuditEvent, Auditor},
    ca::issue::Issuer,
    cli::{
        reload::Reloader,
        sd_notify::{watchdog_interval, Notifier},
    },
    config::{Config, LogFormat},
    est::{
        auth::Authenticator,
        current::Current,
        routes::routes,
        server::{serve, HttpLimits},
        service::{CaEndpoint, EstService},
    },
    hsm::{
        engine::{load_plugins, HsmEngine},
        KeyCustody,
    },
    limits::Limits,
    store::open_store,
    tls::server_config,
};

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KIPUKA_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // cryptoki logs every vendor mechanism it has no name for as an error.
        .add_directive("cryptoki::mechanism=off".parse().expect("static directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        // Stable field names: timestamp, level, target, the event's own
        // fields flattened beside `message`, and `span` (`request_id` for
        // every line about one HTTP request).
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Runs the server until SIGTERM or SIGINT; SIGHUP reloads ([`Reloader`]).
pub fn serve_command(config_path: &Path) -> ExitCode {
    let config = match Config::load(Some(config_path)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kipuka serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config);
    // Unusable client_issuers files stop the server before it logs in to
    // the HSM; issuers no TLS anchor leads to are only worth a warning.
    match crate::cli::check::client_issuer_warnings(&config) {
        Ok(warnings) => warnings.iter().for_each(|w| tracing::warn!("{w}")),
        Err(e) => {
            eprintln!("kipuka serve: {e}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, config_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("kipuka serve: {e}");
            eprintln!("kipuka serve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, config_path: &Path) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Before the slow start-up: SIGHUP's default action would end the process.
    let hangup = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP handler: {e}"))?;
    let notifier = Notifier::from_env().map(Arc::new);
    // The URL may hold credentials: the store's error names only what is needed.
    let store = open_store(&config.db).map_err(|e| format!("certificate store: {e}"))?;
    let auditor = Auditor::new(store.clone());

    let registry = load_plugins(&config);
    for p in registry.plugins() {
        auditor
            .emit(AuditEvent::PluginLoaded {
                name: p.name.clone(),
                path: p.path.clone(),
                abi_version: p.abi_version.clone(),
            })
            .await;
    }
    for refused in registry.refused() {
        auditor
            .emit(AuditEvent::PluginRefused {
                path: refused.path().to_path_buf(),
                reason: refused.to_string(),
            })
            .await;
    }

    // PKCS#11 start-up blocks: run it off the async workers.
    let (engine, cas) = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || -> Result<_, String> {
            let (engine, profile) = HsmEngine::start(&config, &registry).map_err(|e| e.to_string())?;
            tracing::info!(provider = %profile.name, chosen_by = ?engine.chosen_by(), pool = engine.pool().stats().size, "HSM ready");
            let mut cas = Vec::new();
            for ca in &config.ca {
                let key = engine.open_ca(ca).map_err(|e| e.to_string())?;
                for w in &key.warnings {
                    tracing::warn!(ca = %ca.id, "{w}");
                }
                let custody = key.custody;
                tracing::info!(ca = %ca.id, label = %ca.label(), key = %key.algorithm, scheme = %key.scheme, mechanism = %key.mechanism,
                    custody = if custody == KeyCustody::Hardware { "hardware" } else { "software" }, "CA ready");
                let pool = (custody == KeyCustody::Hardware).then(|| engine.pool().clone());
                let issuer = Issuer::new(ca, key).map_err(|e| format!("CA {}: {e}", ca.id))?;
                cas.push(Arc::new(CaEndpoint::new(ca.clone(), issuer, pool).map_err(|e| format!("CA {}: {e}", ca.id))?));
            }
            Ok((engine, cas))
        })
        .await
        .map_err(|e| e.to_string())??
    };
    engine.pool().health().subscribe(auditor.health_listener());
    let health_task = engine.spawn_health_checks();

    let ca_certs: Vec<rustls::pki_types::CertificateDer<'static>> = cas
        .iter()
        .filter_map(|c| c.issuer.chain()[0].to_der().ok().map(Into::into))
        .collect();
    let tls = Arc::new(Current::new(
        server_config(&config.server, &ca_certs).map_err(|e| e.to_string())?,
    ));
    let default_ca = config
        .default_ca()
        .and_then(|d| cas.iter().find(|c| c.config.id == d.id).cloned());
    let service = Arc::new(EstService {
        cas: cas.clone(),
        default_ca,
        auth: Current::new(Authenticator::new(&config.auth.users)),
        store: store.clone(),
        auditor: auditor.clone(),
        realm: config.server.realm.clone(),
        max_body: config.server.max_body_bytes,
        hsm: Some(engine.pool().clone()),
        limits: Current::new(Limits::new(&config.limits)),
    });
    // Every CA's first CRL is signed before the server says it listens.
    let mut crl_retry = std::collections::HashMap::new();
    crate::est::status::refresh_crls(&service, &mut crl_retry).await;
    let refresh_task = crate::est::status::spawn_status_refresh(service.clone());
    let metrics_task =
        crate::cli::metrics::start_metrics(config.metrics.listen, engine.pool(), &service).await?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?;
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(config.server.request_timeout_secs);
    let limits = HttpLimits {
        handshake_timeout: Duration::from_secs(10),
        header_timeout: Duration::from_secs(10),
        max_header_bytes: 16 * 1024,
        shutdown_grace: Duration::from_secs(config.server.shutdown_grace_secs),
        max_connections: config.server.max_connections,
        max_connections_per_ip: config.server.max_connections_per_ip,
        max_body_bytes: config.server.max_body_bytes,
        body_timeout: Duration::from_secs(config.server.request_timeout_secs),
    };
    let (status_stop, status_stopped) = tokio::sync::oneshot::channel::<()>();
    let status_task = match config.server.http_listen {
        Some(addr) => {
            let plain = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (server.http_listen): {e}"))?;
            let plain_addr = plain.local_addr().map_err(|e| e.to_string())?;
            println!("kipuka status listening on http://{plain_addr}");
            Some(tokio::spawn(crate::est::plain_http::serve_plain(
                plain,
                crate::est::plain_http::status_routes(service.clone(), timeout),
                limits,
                async {
                    let _ = status_stopped.await;
                },
            )))
        }
        None => None,
    };
    auditor
        .emit(AuditEvent::ServerStarted {
            listen,
            cas: cas.iter().map(|c| c.config.id.clone()).collect(),
        })
        .await;
    // Scripts and tests wait for this line on stdout; systemd for READY=1.
    println!("kipuka listening on https://{listen}");
    if let Some(n) = &notifier {
        n.ready();
    }
    let watchdog_task = notifier.clone().zip(watchdog_interval()).map(|(n, every)| {
        tokio::spawn(async move {
            loop {
                n.watchdog();
                tokio::time::sleep(every).await;
            }
        })
    });
    let reloader = Reloader {
        path: config_path.to_path_buf(),
        running: config.clone(),
        tls: tls.clone(),
        service: service.clone(),
        ca_certs,
    };
    let reload_task = tokio::spawn(reload_on_hangup(hangup, reloader, notifier.clone()));

    let reason = Arc::new(std::sync::Mutex::new(String::new()));
    let reason_set = reason.clone();
    serve(
        listener,
        tls,
        routes(service, timeout),
        limits,
        async move {
            *reason_set.lock().expect("reason") = shutdown_signal().await;
            if let Some(n) = &notifier {
                n.stopping();
            }
        },
    )
    .await;
    reload_task.abort();
    if let Some(task) = watchdog_task {
        task.abort();
    }
    health_task.abort();
    refresh_task.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    let _ = status_stop.send(());
    if let Some(task) = status_task {
        let _ = task.await;
    }
    let reason = reason.lock().expect("reason").clone();
    auditor.emit(AuditEvent::ServerStopped { reason }).await;
    store.close().await;
    Ok(())
}

/// Each SIGHUP: reload, telling systemd `RELOADING=1` then `READY=1` (also
/// after a refused file: the old configuration serves on).
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    mut reloader: Reloader,
    notifier: Option<Arc<Notifier>>,
) {
    while hangup.recv().await.is_some() {
        if let Some(n) = &notifier {
            n.reloading();
        }
        tracing::info!(config = %reloader.path.display(), "SIGHUP: reloading the configuration");
        // A few small files read on this worker: not worth a blocking thread.
        match reloader.reload() {
            Ok(done) => {
                for section in &done.need_restart {
                    tracing::warn!(
                        section,
                        "changed, but applies only after a restart: not applied"
                    );
                }
                tracing::info!(applied = ?done.applied, "configuration reloaded");
            }
            Err(e) => tracing::error!(
                error = %e,
                "configuration refused; the previous configuration keeps serving"
            ),
        }
        if let Some(n) = &notifier {
            n.ready();
        }
    }
}

async fn shutdown_signal() -> String {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM".into(),
        _ = tokio::signal::ctrl_c() => "SIGINT".into(),
    }
}

//! `kill -HUP` / `systemctl reload`: re-read the configuration file and
//! apply, without dropping a connection, what can change while serving:
//! the Basic users, `[limits]`, and the TLS certificate, key, protocol
//! versions and client trust anchors (`client_ca`).
//!
//! All or nothing: the new file is loaded and validated, the new TLS
//! configuration built (files read, key checked against the certificate),
//! and only then is anything replaced. A file that fails leaves the running
//! configuration serving, with the error in the log. What needs a restart
//! (listeners, HTTP limits, plugins, the HSM, the CAs, the store, logging)
//! is compared and, when changed, logged as not applied.

use std::{path::PathBuf, sync::Arc};

use rustls::pki_types::CertificateDer;

use crate::{
    config::Config,
    est::{auth::Authenticator, current::Current, service::EstService},
    limits::Limits,
    tls::server_config,
};

/// What a reload replaces, and the configuration it compares against.
pub struct Reloader {
    /// The configuration file.
    pub path: PathBuf,
    /// The configuration in force.
    pub running: Config,
    /// The TLS configuration each new connection takes.
    pub tls: Arc<Current<rustls::ServerConfig>>,
    /// The handlers' state (users, limits).
    pub service: Arc<EstService>,
    /// The CA certificates, trusted for client certificates beside `client_ca`.
    pub ca_certs: Vec<CertificateDer<'static>>,
}

/// What a successful reload did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Sections that changed and now apply.
    pub applied: Vec<&'static str>,
    /// Sections that changed but need a restart.
    pub need_restart: Vec<&'static str>,
}

impl Reloader {
    /// Reads and applies the file; on error nothing changed.
    pub fn reload(&mut self) -> Result<Applied, String> {
        let new = Config::load(Some(&self.path)).map_err(|e| e.to_string())?;
        let tls = server_config(&new.server, &self.ca_certs).map_err(|e| e.to_string())?;
        let mut done = Applied {
            need_restart: needs_restart(&self.running, &new),
            ..Applied::default()
        };
        // Built first, replaced together: a request sees the old set or the new one.
        self.tls.replace(tls);
        done.applied
            .push("server TLS (certificate, key, versions, client_ca)");
        self.service
            .auth
            .replace(Arc::new(Authenticator::new(&new.auth.users)));
        done.applied.push("auth.users");
        // New limits start with full buckets: replace them only when they changed.
        if new.limits != self.running.limits {
            self.service
                .limits
                .replace(Arc::new(Limits::new(&new.limits)));
            done.applied.push("limits");
        }
        self.running = new;
        Ok(done)
    }
}

/// The sections of `new` that differ from `old` and that only a restart applies.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    // Compared through their serialized (or, for the types that hold
    // secrets and are not Serialize, Debug) forms; nothing here is logged.
    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    let server_fixed = |c: &Config| {
        let mut s = c.server.clone();
        s.tls_cert = None;
        s.tls_key = None;
        s.client_ca.clear();
        s.tls_versions.clear();
        json(&s)
    };
    let mut changed = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check(
        "server (listen, http_listen, body/time/connection limits, realm)",
        server_fixed(old) != server_fixed(new),
    );
    check("plugins", json(&old.plugins) != json(&new.plugins));
    check("hsm", format!("{:?}", old.hsm) != format!("{:?}", new.hsm));
    check("ca", json(&old.ca) != json(&new.ca));
    check("db", format!("{:?}", old.db) != format!("{:?}", new.db));
    check("log", json(&old.log) != json(&new.log));
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_sections_are_named() {
        let old = Config::default();
        let mut new = old.clone();
        new.server.tls_cert = Some("/other.pem".into());
        new.limits.burst = 7;
        assert!(needs_restart(&old, &new).is_empty());
        new.server.listen = "127.0.0.1:1".parse().unwrap();
        new.hsm.token_label = Some("other".into());
        let changed = needs_restart(&old, &new);
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(changed[0].starts_with("server"));
        assert_eq!(changed[1], "hsm");
    }
}

//! TLS: the rustls server configuration, client-certificate verification,
//! and what each connection carries to the handlers.
//!
//! A client certificate is optional at the TLS layer (devices enrolling
//! with HTTP Basic have none) and required by policy where the operation
//! needs it (re-enrollment). The tls-exporter value (RFC 9266) of each
//! connection travels with its requests for channel binding (RFC 7030 3.5).

use std::{path::Path, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig, ServerConnection,
};

use crate::config::{ServerConfig as ServerSettings, TlsVersion};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// `server.tls_cert` / `server.tls_key` missing.
    #[error("[server] needs tls_cert and tls_key (EST runs over TLS only)")]
    NoCertificate,
    /// A PEM file could not be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Reads every certificate of a PEM file.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// The label RFC 9266 defines for tls-exporter channel bindings.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// What a connection tells its requests.
#[derive(Clone, Debug, Default)]
pub struct ConnInfo {
    /// The verified client chain, leaf first, when the client presented one.
    pub peer_chain: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The RFC 9266 tls-exporter value (32 bytes).
    pub tls_exporter: Option<[u8; 32]>,
    /// `"TLSv1.2"` / `"TLSv1.3"`.
    pub tls_version: &'static str,
    /// The peer's address.
    pub remote: Option<std::net::SocketAddr>,
}

impl ConnInfo {
    /// Reads what a finished handshake established.
    pub fn from_connection(conn: &ServerConnection, remote: Option<std::net::SocketAddr>) -> Self {
        let tls_exporter = conn
            .export_keying_material([0u8; 32], TLS_EXPORTER_LABEL, None)
            .ok();
        ConnInfo {
            peer_chain: conn
                .peer_certificates()
                .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
            tls_exporter,
            tls_version: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "unknown",
            },
            remote,
        }
    }
}

/// Builds the server configuration: certificate and key from the files,
/// protocol versions from `tls_versions` (1.2 and 1.3 by default: libest
/// clients speak only 1.2), client certificates verified against
/// `client_ca` and the CA certificates but optional.
pub fn server_config(
    settings: &ServerSettings,
    ca_certs: &[CertificateDer<'static>],
) -> Result<Arc<ServerConfig>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&settings.tls_cert, &settings.tls_key) else {
        return Err(TlsError::NoCertificate);
    };
    let chain = read_pem_certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_error(key_path, e))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = settings
        .tls_versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;

    let mut roots = RootCertStore::empty();
    for path in &settings.client_ca {
        for cert in read_pem_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| file_error(path, format!("not a usable trust anchor: {e}")))?;
        }
    }
    for cert in ca_certs {
        // A CA whose key webpki cannot use (ML-DSA) cannot anchor client
        // certificates; it still issues them.
        if let Err(e) = roots.add(cert.clone()) {
            tracing::debug!(error = %e, "a CA certificate is not usable as a client trust anchor");
        }
    }
    let builder = if roots.is_empty() {
        builder.with_no_client_auth()
    } else {
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", key_path.display())))?;
    // strongSwan and libest speak HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

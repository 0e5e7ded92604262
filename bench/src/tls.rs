//! The client side of TLS: rustls with the ring provider (as the server),
//! the given trust anchor, and an optional client certificate.

use std::{path::Path, sync::Arc};

use rustls::{pki_types::pem::PemObject, ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};

use crate::{error::BenchError, target::Target};

/// Reads every certificate of a PEM file; none is an error.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, BenchError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| BenchError::file(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BenchError::file(path, e))?;
    if certs.is_empty() {
        return Err(BenchError::file(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The client configuration: trust `cacert`, present `cert`/`key` if given.
pub fn client_config(
    cacert: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, BenchError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(cacert)? {
        roots
            .add(cert)
            .map_err(|e| BenchError::file(cacert, format!("not a usable trust anchor: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BenchError::Runtime(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| BenchError::file(key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| BenchError::file(cert, format!("unusable with its key: {e}")))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Opens a TCP connection and completes the TLS handshake, with messages
/// that say what is probably wrong.
pub async fn connect(
    target: &Target,
    connector: &TlsConnector,
) -> Result<TlsStream<TcpStream>, BenchError> {
    let addr = target.authority();
    let tcp = tcp_connect(target).await.map_err(|e| BenchError::Connect {
        addr: addr.clone(),
        reason: match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("{e} (is kipuka serve running and listening there?)")
            }
            _ => e.to_string(),
        },
    })?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(target.host.clone()).map_err(|e| BenchError::BadUrl {
        url: target.url.clone(),
        reason: format!("{:?} is not a TLS server name: {e}", target.host),
    })?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| BenchError::Tls {
            addr,
            reason: tls_hint(&e),
        })
}

/// A TCP connection to the target, from `target.source` if given.
async fn tcp_connect(target: &Target) -> std::io::Result<TcpStream> {
    let Some(source) = target.source else {
        return TcpStream::connect((target.host.as_str(), target.port)).await;
    };
    let to = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .find(|a| a.is_ipv4() == source.is_ipv4())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!(
                    "{} has no address of the family of --source {source}",
                    target.host
                ),
            )
        })?;
    let socket = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind((source, 0).into())?;
    socket.connect(to).await
}

fn tls_hint(e: &std::io::Error) -> String {
    let text = e.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (is --cacert the trust anchor of the server's TLS certificate?)"
    } else if text.contains("NotValidForName") {
        " (the server's certificate does not name the --url host)"
    } else if text.contains("CertificateRequired") || text.contains("alert") {
        " (the server refused the client certificate, or needs one: check --cert/--key)"
    } else if text.contains("corrupt message") || text.contains("InvalidContentType") {
        " (is the server speaking TLS on that port?)"
    } else {
        ""
    };
    format!("{text}{hint}")
}

//! Loading a CA's certificate chain from PEM files.

use std::path::{Path, PathBuf};

use der::{Decode, DecodePem, Encode};
use x509_cert::Certificate;

/// Why a CA certificate could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The file could not be read.
    #[error("cannot read CA certificate {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file holds no certificate, or a malformed one.
    #[error("CA certificate {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Reads every certificate in the PEM (or DER) file at `path`, in order.
pub fn read_certificates(path: &Path) -> Result<Vec<Certificate>, ChainError> {
    let bytes = std::fs::read(path).map_err(|e| ChainError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let parse_err = |reason: String| ChainError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    if !bytes.starts_with(b"-----") && bytes.first() == Some(&0x30) {
        return Certificate::from_der(&bytes)
            .map(|c| vec![c])
            .map_err(|e| parse_err(e.to_string()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| parse_err("neither PEM nor DER".into()))?;
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let end_marker = "-----END CERTIFICATE-----";
        let end = rest[start..]
            .find(end_marker)
            .ok_or_else(|| parse_err("unterminated PEM block".into()))?
            + start
            + end_marker.len();
        certs.push(Certificate::from_pem(&rest[start..end]).map_err(|e| parse_err(e.to_string()))?);
        rest = &rest[end..];
    }
    if certs.is_empty() {
        return Err(parse_err("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The CA certificate (first in `cert`) followed by the rest of its chain.
pub fn load_chain(cert: &Path, chain: &[PathBuf]) -> Result<Vec<Certificate>, ChainError> {
    let mut all = read_certificates(cert)?;
    for extra in chain {
        all.extend(read_certificates(extra)?);
    }
    Ok(all)
}

/// The DER SubjectPublicKeyInfo of `cert`.
pub fn spki_der(cert: &Certificate) -> Vec<u8> {
    cert.tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .expect("a decoded SPKI re-encodes")
}

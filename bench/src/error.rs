//! The one error type of the benchmark. Every message says what to fix;
//! none carries a PIN or a password.

use std::path::PathBuf;

/// Why a benchmark run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The command line is inconsistent or a value is malformed.
    #[error("{0}")]
    Usage(String),
    /// `--url` is not an https URL kipuka-bench can use.
    #[error("--url {url:?}: {reason}")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The server could not be reached at all.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// What the operating system said, with a hint.
        reason: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// What rustls said, with a hint.
        reason: String,
    },
    /// Generating the CSRs failed.
    #[error("generating CSRs: {0}")]
    Csr(String),
    /// The PKCS#11 part of `--raw-sign`.
    #[error("--raw-sign: {0}")]
    Pkcs11(String),
    /// Anything else at run time (a thread that could not start, ...).
    #[error("{0}")]
    Runtime(String),
}

impl BenchError {
    /// A file error.
    pub fn file(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        BenchError::File {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    /// A PKCS#11 error from the function that failed.
    pub fn pkcs11(function: &'static str) -> impl FnOnce(cryptoki::error::Error) -> BenchError {
        move |e| BenchError::Pkcs11(format!("{function}: {e}"))
    }
}

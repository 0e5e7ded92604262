//! The engine's one error type.

use std::time::Duration;

use cryptoki::error::{Error as CkError, RvError};

/// What went wrong talking to the HSM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The vendor library could not be loaded.
    #[error("cannot load PKCS#11 library {library}: {reason}")]
    Library {
        /// The library path.
        library: String,
        /// Why.
        reason: String,
    },
    /// A required vendor environment variable is missing.
    #[error("{vendor} needs environment variable {name} ({description}); it is unset and has no default")]
    MissingEnv {
        /// Plugin name.
        vendor: String,
        /// Variable.
        name: String,
        /// What it is for.
        description: String,
    },
    /// A PKCS#11 call failed.
    #[error("{function} failed: {}", ckr_name(.source))]
    Pkcs11 {
        /// The PKCS#11 function (`C_Sign`, ...).
        function: &'static str,
        /// cryptoki's error.
        source: CkError,
    },
    /// No token matched the configuration.
    #[error("no token {wanted} in {library} (tokens present: {present})")]
    TokenNotFound {
        /// What was asked for.
        wanted: String,
        /// The library.
        library: String,
        /// What is there.
        present: String,
    },
    /// The PIN could not be obtained.
    #[error("HSM PIN: {0}")]
    Pin(String),
    /// A key could not be found or used.
    #[error("key {uri}: {reason}")]
    Key {
        /// The key's URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// The vendor or token cannot do what was asked.
    #[error("{vendor} cannot do {mechanism}{detail}")]
    Unsupported {
        /// Plugin name (and token manufacturer).
        vendor: String,
        /// Mechanism name.
        mechanism: String,
        /// Extra words (", hash SHA-384", ...).
        detail: String,
    },
    /// Every session is in use and none came free in time.
    #[error("all {pool_size} HSM sessions are busy (waited {waited:?})")]
    Busy {
        /// Pool size.
        pool_size: usize,
        /// How long the caller waited.
        waited: Duration,
    },
    /// An operation ran past the deadline; the session stays checked out
    /// until the HSM answers, because PKCS#11 cannot cancel a call.
    #[error("the HSM did not answer within {0:?}; its session stays in use until it does")]
    TimedOut(Duration),
    /// The HSM is not reachable right now.
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    /// The software fallback failed.
    #[error("software ML-DSA key: {0}")]
    Software(String),
    /// The engine is shutting down or a worker thread died.
    #[error("HSM engine: {0}")]
    Internal(String),
}

/// The classes of failure the pool reacts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// The operation failed for its own reasons (bad mechanism, bad data):
    /// the session is fine.
    Operation,
    /// The session is broken: drop it and open another.
    Session,
    /// The token or device went away: every session is gone; re-initialise.
    Token,
}

impl HsmError {
    /// Wraps a cryptoki error from `function`.
    pub fn pkcs11(function: &'static str) -> impl FnOnce(CkError) -> HsmError {
        move |source| HsmError::Pkcs11 { function, source }
    }

    /// The PKCS#11 return value, if this is a PKCS#11 error.
    pub fn rv(&self) -> Option<RvError> {
        match self {
            HsmError::Pkcs11 {
                source: CkError::Pkcs11(rv, _),
                ..
            } => Some(*rv),
            _ => None,
        }
    }

    /// The `code` label of `kipuka_hsm_errors`: the CKR name, or what the
    /// pool itself gave up on. Bounded: every vendor-defined value is one
    /// label (the log line names the value).
    pub fn metric_code(&self) -> String {
        match self {
            HsmError::Pkcs11 {
                source: CkError::Pkcs11(RvError::VendorDefined(_), _),
                ..
            } => "CKR_VENDOR_DEFINED".into(),
            HsmError::Pkcs11 {
                source: e @ CkError::Pkcs11(..),
                ..
            } => ckr_name(e),
            HsmError::Pkcs11 { .. } => "library".into(),
            HsmError::Busy { .. } => "busy".into(),
            HsmError::TimedOut(_) => "timeout".into(),
            HsmError::Unavailable(_) => "unavailable".into(),
            _ => "other".into(),
        }
    }

    /// How the pool should treat this failure.
    pub fn class(&self) -> FailureClass {
        match self.rv() {
            Some(
                RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::CryptokiNotInitialized
                | RvError::TokenNotRecognized,
            ) => FailureClass::Token,
            Some(
                RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::UserNotLoggedIn
                | RvError::FunctionFailed,
            ) => FailureClass::Session,
            _ => match self {
                HsmError::Unavailable(_) => FailureClass::Token,
                _ => FailureClass::Operation,
            },
        }
    }

    /// Whether the client may retry later (busy or HSM trouble), as opposed
    /// to a request or configuration problem.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HsmError::Busy { .. } | HsmError::Unavailable(_) | HsmError::TimedOut(_)
        ) || self.class() != FailureClass::Operation
    }
}

/// `CKR_SESSION_HANDLE_INVALID` style name of a cryptoki error; cryptoki's
/// own Display is a paragraph from the specification.
pub fn ckr_name(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(RvError::VendorDefined(rv), _) => format!("vendor-defined CKR {rv:#x}"),
        CkError::Pkcs11(rv, _) => {
            let camel = format!("{rv:?}");
            let mut name = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn names_and_classes() {
        let e = HsmError::Pkcs11 {
            function: "C_Sign",
            source: CkError::Pkcs11(RvError::SessionHandleInvalid, Function::Sign),
        };
        assert_eq!(e.to_string(), "C_Sign failed: CKR_SESSION_HANDLE_INVALID");
        assert_eq!(e.class(), FailureClass::Session);
        let e = HsmError::Pkcs11 {
            function: "C_Sign",
            source: CkError::Pkcs11(RvError::DeviceRemoved, Function::Sign),
        };
        assert_eq!(e.class(), FailureClass::Token);
        let e = HsmError::Pkcs11 {
            function: "C_Sign",
            source: CkError::Pkcs11(RvError::MechanismInvalid, Function::Sign),
        };
        assert_eq!(e.class(), FailureClass::Operation);
        assert!(!e.is_transient());
    }
}

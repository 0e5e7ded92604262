//! The generic PKCS#11 engine.
//!
//! One code path over `cryptoki` for every vendor; what differs between
//! vendors comes from the plugin's [`crate::plugins::VendorProfile`].

pub mod context;
pub mod engine;
pub mod env;
pub mod error;
pub mod health;
pub mod keygen;
pub mod keys;
pub mod pin;
pub mod pool;
pub mod pqc_fallback;
pub mod sign;
pub mod signer;
pub mod uri;
pub mod wrap;

pub use context::{Pkcs11Context, TokenSelector, TokenSummary};
pub use error::{FailureClass, HsmError};
pub use health::{HealthChange, HealthListener, HealthState, HealthThresholds};
pub use keys::{KeyAlgorithm, KeyInfo};
pub use pin::PinSource;
pub use pool::{PoolSettings, PoolStats, SessionPool};
pub use sign::{SignMechanism, SignatureScheme};
pub use signer::{CaSigner, HsmKeySigner, KeyCustody};
pub use uri::Pkcs11Uri;

//! kipuka: an EST server (RFC 7030) whose CA keys stay in HSMs.
//!
//! The binary is `kipuka`; this library holds its layers so that the
//! integration tests and benchmarks can drive them directly.

pub mod audit;
pub mod ca;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod est;
pub mod hsm;
pub mod limits;
pub mod metrics;
pub mod plugins;
pub mod policy;
pub mod revocation;
pub mod store;
pub mod tls;

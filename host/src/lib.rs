//! kipuka: an EST server (RFC 7030) whose CA keys stay in HSMs.
//!
//! The binary is `kipuka`; this library holds its layers so that the
//! integration tests and benchmarks can drive them directly.

pub mod ca;
pub mod cli;
pub mod config;
pub mod hsm;
pub mod plugins;

//! Test support: artifacts, tokens, independent verifiers.

pub mod artifacts;
pub mod engine_fixture;
pub mod est_client;
pub mod est_server;
pub mod keygen_client;
pub mod shim;

pub mod tokens;

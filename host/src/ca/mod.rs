//! The certificate authority: chains, profiles, issuing.

pub mod chain;

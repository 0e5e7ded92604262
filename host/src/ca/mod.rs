//! The certificate authority: chains, profiles, issuing.

pub mod algorithms;
pub mod chain;
pub mod crl;
pub mod csr;
pub mod extensions;
pub mod issue;
pub mod ocsp;
pub mod selfsign;

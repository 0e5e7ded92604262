//! Test support: artifacts, tokens, independent verifiers.

pub mod artifacts;

pub mod tokens;

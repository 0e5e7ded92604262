//! Test support: artifacts, tokens, independent verifiers.

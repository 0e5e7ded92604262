//! EST (RFC 7030): one handler per operation, and the encoding rules at the edge.

pub mod auth;
pub mod connection;
pub mod csrattrs;
pub mod current;
pub mod error;
pub mod per_ip;
pub mod plain_http;
pub mod routes;
pub mod server;
pub mod serverkeygen;
pub mod service;
pub mod status;
pub mod wire;

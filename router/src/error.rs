//! The crate's error type: failures of setup and I/O (bad configuration, sockets, files).
//! Errors that a caller of the Invoke API sees are [`crate::lambda_error::LambdaError`] instead.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {message}")]
    ParseFile { path: String, message: String },
    #[error("cannot start the function process: {0}")]
    Spawn(std::io::Error),
    #[error("kubernetes: {0}")]
    Kube(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

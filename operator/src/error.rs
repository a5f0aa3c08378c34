//! The operator's one error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{kind} {name} has no {field}")]
    MissingField {
        kind: &'static str,
        name: String,
        field: &'static str,
    },
    #[error("deletion of capacity provider {name} waits: {reason}")]
    DeletionBlocked { name: String, reason: String },
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("leader election: {0}")]
    LeaderElection(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("watch caches: {0}")]
    WatchNotReady(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

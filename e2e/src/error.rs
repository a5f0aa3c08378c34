//! The one error type of this crate.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "Go is not installed (no `go` on PATH): lmi-dev builds etcd, the Kubernetes control plane, kwok and the NATS server from their Go modules; install Go {0} or newer"
    )]
    GoMissing(&'static str),

    #[error("building {component} failed: {message}\n--- last lines of {log} ---\n{tail}")]
    Build {
        component: String,
        message: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{component} failed: {message}\n--- last lines of {log} ---\n{tail}")]
    Component {
        component: String,
        message: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("generating certificates: {0}")]
    Certificate(#[from] rcgen::Error),

    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),

    #[error("YAML in {path}: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml::Error,
    },

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },

    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error that says what was being done to which file.
    pub fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}

//! Where lmi-dev keeps its build cache, cluster state and logs: all outside the repository, so a
//! fresh clone (CI) reuses what an earlier run on the same machine built.

use std::path::{Path, PathBuf};

use crate::versions;

/// Root of everything lmi-dev writes: `$LMI_CACHE_DIR`, else `$HOME/.cache/lmi`.
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    pub fn from_env() -> Self {
        let root = match std::env::var_os("LMI_CACHE_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => {
                let home =
                    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
                home.join(".cache").join("lmi")
            }
        };
        Paths { root }
    }

    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Paths { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Build directory of the Kubernetes control plane, keyed by its version.
    pub fn kubernetes_dir(&self) -> PathBuf {
        self.root.join(format!("k8s-{}", versions::KUBERNETES))
    }

    pub fn etcd_dir(&self) -> PathBuf {
        self.root.join(format!("etcd-{}", versions::ETCD))
    }

    pub fn kwok_dir(&self) -> PathBuf {
        self.root.join(format!("kwok-{}", versions::KWOK))
    }

    /// Build directory of the NATS server, keyed by its version.
    pub fn nats_server_dir(&self) -> PathBuf {
        self.root
            .join(format!("nats-server-{}", versions::NATS_SERVER))
    }

    /// The main job's processes (`scripts/run.sh`: operator, router): their pid
    /// files (in [`crate::process`]'s format) and logs. `down` stops them with the cluster.
    pub fn main_job_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// State of the running cluster: certificates, etcd data, pid files, kubeconfig.
    pub fn cluster_dir(&self) -> PathBuf {
        self.root.join("cluster")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.cluster_dir().join("state")
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.state_dir().join("pki")
    }

    pub fn pid_dir(&self) -> PathBuf {
        self.state_dir().join("pids")
    }

    pub fn etcd_data_dir(&self) -> PathBuf {
        self.state_dir().join("etcd")
    }

    /// JetStream's file store of the cluster's NATS server: throw-away like etcd's data.
    pub fn nats_store_dir(&self) -> PathBuf {
        self.state_dir().join("nats")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.state_dir().join("kubeconfig")
    }

    /// Every component (and every Go build) logs here; kept after `down` for post-mortems.
    pub fn log_dir(&self) -> PathBuf {
        self.cluster_dir().join("logs")
    }

    /// Serialises `up`, `down` and the test harness across processes.
    pub fn lock_file(&self) -> PathBuf {
        self.cluster_dir().join("lock")
    }
}

//! Leader election on a Lease: only the leader reconciles; a replica that loses the lease stops
//! (and is restarted to stand by), so two leaders never write at once.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// Waits until this replica holds the lease. The returned receiver turns false if it is lost.
pub async fn acquire(client: Client, name: &str, namespace: &str) -> Result<watch::Receiver<bool>> {
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("lmi-operator-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity.clone())
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .map_err(|e| Error::LeaderElection(e.to_string()))?;
    let (mut leading, _task) = manager.watch().await;
    tracing::info!(lease = name, %namespace, %identity, "waiting to lead");
    leading
        .wait_for(|leader| *leader)
        .await
        .map_err(|e| Error::LeaderElection(e.to_string()))?;
    tracing::info!(lease = name, %identity, "leading");
    Ok(leading)
}

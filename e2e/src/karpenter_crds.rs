//! Karpenter's own CRDs (NodeClaim, EC2NodeClass, ...), taken from its Go module through the Go
//! module proxy and installed into the test cluster, so the operator and the simulated cloud
//! write the real API.

use std::path::PathBuf;

use kube::Client;
use tokio::process::Command;

use crate::crds;
use crate::error::{Error, Result};
use crate::versions::KARPENTER_AWS;

const MODULE: &str = "github.com/aws/karpenter-provider-aws";

/// The folder of the CRD manifests in the module cache, downloading the module once.
pub async fn crd_dir() -> Result<PathBuf> {
    let output = Command::new("go")
        .args([
            "mod",
            "download",
            "-json",
            &format!("{MODULE}@v{KARPENTER_AWS}"),
        ])
        .env("GOFLAGS", "-mod=mod")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::GoMissing(crate::versions::GO_DIRECTIVE),
            _ => Error::Other(format!("running go mod download: {e}")),
        })?;
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        Error::Other(format!(
            "go mod download {MODULE}@v{KARPENTER_AWS} printed no module info ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    })?;
    if let Some(error) = info.get("Error").and_then(|e| e.as_str()) {
        return Err(Error::Other(format!(
            "go mod download {MODULE}@v{KARPENTER_AWS}: {error}"
        )));
    }
    let dir = info
        .get("Dir")
        .and_then(|d| d.as_str())
        .ok_or_else(|| Error::Other(format!("go mod download {MODULE}: no Dir in its answer")))?;
    Ok(PathBuf::from(dir).join("pkg/apis/crds"))
}

/// Installs Karpenter's CRDs (idempotent: server-side apply).
pub async fn install(client: &Client) -> Result<Vec<String>> {
    crds::install_dir(client, &crd_dir().await?).await
}

//! Karpenter's own CRDs (NodeClaim, EC2NodeClass, ...), taken from its Go module through the Go
//! module proxy and installed into the test cluster, so the operator and the simulated cloud
//! write the real API.

use std::path::PathBuf;

use kube::Client;

use crate::error::Result;
use crate::versions::KARPENTER_AWS;
use crate::{crds, gomod};

const MODULE: &str = "github.com/aws/karpenter-provider-aws";

/// The folder of the CRD manifests in the module cache, downloading the module once.
pub async fn crd_dir() -> Result<PathBuf> {
    Ok(gomod::download(MODULE, KARPENTER_AWS)
        .await?
        .dir
        .join("pkg/apis/crds"))
}

/// Installs Karpenter's CRDs (idempotent: server-side apply).
pub async fn install(client: &Client) -> Result<Vec<String>> {
    crds::install_dir(client, &crd_dir().await?).await
}

//! Karpenter's own CRDs, taken from its Go modules through the Go module proxy and installed into
//! the test cluster, so that the operator writes the real API and real Karpenter serves it:
//!
//! - `karpenter.sh` (NodeClaim, NodePool, NodeOverlay) from Karpenter's core module, the version
//!   of the controller the local cluster runs ([`crate::karpenter`]);
//! - `KWOKNodeClass` from the same module: the node class of its kwok cloud provider;
//! - `EC2NodeClass` from Karpenter's AWS provider: what the operator makes per provider on AWS.

use std::path::PathBuf;

use kube::Client;

use crate::error::Result;
use crate::versions::{KARPENTER, KARPENTER_AWS};
use crate::{crds, gomod};

const CORE_MODULE: &str = "sigs.k8s.io/karpenter";
const AWS_MODULE: &str = "github.com/aws/karpenter-provider-aws";

/// The CRD files, downloading the modules once.
pub async fn crd_files() -> Result<Vec<PathBuf>> {
    let core = gomod::download(CORE_MODULE, KARPENTER).await?.dir;
    let aws = gomod::download(AWS_MODULE, KARPENTER_AWS).await?.dir;
    Ok(vec![
        core.join("pkg/apis/crds/karpenter.sh_nodeclaims.yaml"),
        core.join("pkg/apis/crds/karpenter.sh_nodepools.yaml"),
        core.join("pkg/apis/crds/karpenter.sh_nodeoverlays.yaml"),
        core.join("kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml"),
        aws.join("pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml"),
    ])
}

/// Installs Karpenter's CRDs (idempotent: server-side apply).
pub async fn install(client: &Client) -> Result<Vec<String>> {
    crds::install_files(client, &crd_files().await?).await
}

//! The Gateway API's standard CRDs (Gateway, HTTPRoute, ...), from its Go module through the Go
//! module proxy (the module carries its manifests under `config/crd/standard`), so the chart's
//! dry run covers the optional HTTPRoute to the function URL listener.

use kube::Client;

use crate::error::Result;
use crate::versions::GATEWAY_API;
use crate::{crds, gomod};

const MODULE: &str = "sigs.k8s.io/gateway-api";

/// Installs the standard channel's CRDs (idempotent: server-side apply).
pub async fn install(client: &Client) -> Result<Vec<String>> {
    let module = gomod::download(MODULE, GATEWAY_API).await?;
    crds::install_dir(client, &module.dir.join("config/crd/standard")).await
}

//! Installing the project's CustomResourceDefinitions and waiting until they serve.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tracing::info;

use crate::error::{Error, Result};
use crate::manifests::{self, FIELD_MANAGER};

/// Applies every CRD in `dir/*.yaml` (none is fine: the folder may not be generated yet) and
/// waits until each is Established. Returns their names.
pub async fn install_dir(client: &Client, dir: &Path) -> Result<Vec<String>> {
    let names = install_files(client, &manifests::yaml_files(dir)?).await?;
    if names.is_empty() {
        info!(dir = %dir.display(), "no CRDs to install");
    }
    Ok(names)
}

/// Applies every CRD in `files` and waits until each is Established. Returns their names.
pub async fn install_files(client: &Client, files: &[PathBuf]) -> Result<Vec<String>> {
    let mut crds = Vec::new();
    for file in files {
        for document in manifests::read_documents(file)? {
            if document.get("kind").and_then(|k| k.as_str()) != Some("CustomResourceDefinition") {
                continue;
            }
            let crd: CustomResourceDefinition = serde_json::from_value(document)?;
            crds.push(crd);
        }
    }
    if crds.is_empty() {
        return Ok(Vec::new());
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for crd in &crds {
        let name = crd
            .metadata
            .name
            .clone()
            .ok_or_else(|| Error::Other("a CRD has no metadata.name".into()))?;
        api.patch(&name, &params, &Patch::Apply(crd)).await?;
        names.push(name);
    }
    for name in &names {
        wait_established(&api, name).await?;
    }
    info!(crds = ?names, "CRDs installed");
    Ok(names)
}

/// Whether the CRD has condition Established=True.
pub fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

async fn wait_established(api: &Api<CustomResourceDefinition>, name: &str) -> Result<()> {
    let timeout = Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if api
            .get_opt(name)
            .await?
            .as_ref()
            .is_some_and(is_established)
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("CRD {name} to be Established"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

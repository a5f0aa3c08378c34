//! The admin kubeconfig `up` writes, and building clients from it.

use std::path::Path;

use crate::certs::Pki;
use crate::error::{Error, Result};

pub const CONTEXT: &str = "lmi-dev";

/// Writes a kubeconfig for `server` that authenticates with the admin client certificate.
/// Paths (not inline data) keep it readable and need no base64.
pub fn write(path: &Path, server: &str, pki: &Pki) -> Result<()> {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": CONTEXT,
            "cluster": {
                "server": server,
                "certificate-authority": pki.ca_cert,
            },
        }],
        "users": [{
            "name": CONTEXT,
            "user": {
                "client-certificate": pki.admin_cert,
                "client-key": pki.admin_key,
            },
        }],
        "contexts": [{
            "name": CONTEXT,
            "context": { "cluster": CONTEXT, "user": CONTEXT, "namespace": "default" },
        }],
        "current-context": CONTEXT,
    });
    // YAML is a superset of JSON, but write YAML anyway: it is what people expect to read.
    let text = serde_yaml::to_string(&config).map_err(|source| Error::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text).map_err(Error::io("writing", path))
}

/// A client for the cluster described by the kubeconfig at `path` (its current context).
pub async fn client(path: &Path) -> Result<kube::Client> {
    let config = config(path).await?;
    Ok(kube::Client::try_from(config)?)
}

pub async fn config(path: &Path) -> Result<kube::Config> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    // Without a read timeout a hung apiserver would hang a test forever.
    config.read_timeout = Some(std::time::Duration::from_secs(60));
    Ok(config)
}

//! `go mod download` of one module version, through the Go module proxy into the module cache:
//! where its files are. Used for the builds (Kubernetes' go.mod) and for files a module carries
//! (Karpenter's CRDs, Kubernetes' pause.c).

use std::path::PathBuf;

use tokio::process::Command;

use crate::error::{Error, Result};
use crate::versions;

/// A downloaded module.
#[derive(Debug, Clone)]
pub struct Module {
    /// Its files in the module cache.
    pub dir: PathBuf,
    /// Its go.mod in the module cache.
    pub go_mod: PathBuf,
}

/// Downloads `module@v<version>` (once; later calls read the cache).
pub async fn download(module: &str, version: &str) -> Result<Module> {
    let at = format!("{module}@v{version}");
    let output = Command::new("go")
        .args(["mod", "download", "-json", &at])
        // Outside any module, so that no go.mod around the caller's directory gets involved.
        .current_dir(std::env::temp_dir())
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::GoMissing(versions::GO_DIRECTIVE),
            _ => Error::Other(format!("running go mod download {at}: {e}")),
        })?;
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        Error::Other(format!(
            "go mod download {at} printed no module info ({e}): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    })?;
    if let Some(error) = info.get("Error").and_then(|e| e.as_str()) {
        return Err(Error::Other(format!("go mod download {at}: {error}")));
    }
    let field = |name: &str| {
        info.get(name)
            .and_then(|d| d.as_str())
            .map(PathBuf::from)
            .ok_or_else(|| Error::Other(format!("go mod download {at}: no {name} in its answer")))
    };
    Ok(Module {
        dir: field("Dir")?,
        go_mod: field("GoMod")?,
    })
}

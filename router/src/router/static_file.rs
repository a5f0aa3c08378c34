//! The static catalog source: a YAML (or JSON) file listing functions, versions and EE addresses,
//! for local runs and benchmarks. Re-read when its modification time changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Router;
use super::catalog::CatalogSpec;
use crate::Error;

pub fn load(path: &Path) -> Result<CatalogSpec, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|e| Error::ParseFile {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Load once (an error here stops the router: a typo should not start an empty router), then
/// watch for changes; a bad edit later keeps the last good catalog and logs why.
pub async fn watch(router: Arc<Router>, path: PathBuf) -> Result<(), Error> {
    let spec = load(&path)?;
    router.install(&spec).map_err(Error::Config)?;
    let mut seen = mtime(&path);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = mtime(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match load(&path)
                .map_err(|e| e.to_string())
                .and_then(|s| router.install(&s))
            {
                Ok(()) => tracing::info!(path = %path.display(), "catalog reloaded"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "catalog not reloaded")
                }
            }
        }
    });
    Ok(())
}

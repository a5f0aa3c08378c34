//! Helm, built from its Go module (`helm.sh/helm/v3`) once per pinned version, the same way
//! [`crate::gobuild`] builds the control plane: a generated wrapper module in
//! `$CACHE/helm-<version>/src`, the binary in `$CACHE/helm-<version>/bin/helm`, filled by the rename
//! of a finished build and rebuilt when its recipe (`bin/.recipe`) changes. The chart tests
//! (`e2e/tests/chart.rs`) run it.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::error::{Error, Result};
use crate::gobuild;
use crate::paths::Paths;
use crate::versions;

const MODULE: &str = "helm.sh/helm/v3";

/// The wrapper module's only source: it names the command to build.
const TOOLS_GO: &str = "//go:build tools\n\n// Package tools names the helm command that lmi-e2e builds (e2e/src/helm.rs).\npackage tools\n\nimport (\n\t_ \"helm.sh/helm/v3/cmd/helm\"\n)\n";

/// A built helm binary.
#[derive(Debug, Clone)]
pub struct Helm {
    path: PathBuf,
    /// HELM_CACHE_HOME, HELM_CONFIG_HOME and HELM_DATA_HOME: kept apart from the user's own.
    home: PathBuf,
}

/// `$CACHE/helm-<version>`.
pub fn dir(paths: &Paths) -> PathBuf {
    paths.root().join(format!("helm-{}", versions::HELM))
}

/// The link flags: the version `helm version` prints, and the Kubernetes version `helm template`
/// and `helm lint` assume without a cluster (helm's own Makefile derives it from client-go; here it
/// is the local cluster's, [`versions::KUBERNETES`]).
pub fn ldflags() -> String {
    let mut parts = versions::KUBERNETES.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    let mut flags = format!(
        "-s -w -X {MODULE}/internal/version.version=v{} -X {MODULE}/internal/version.gitTreeState=clean",
        versions::HELM
    );
    for pkg in ["pkg/chartutil", "pkg/lint/rules"] {
        flags.push_str(&format!(
            " -X {MODULE}/{pkg}.k8sVersionMajor={major} -X {MODULE}/{pkg}.k8sVersionMinor={minor}"
        ));
    }
    flags
}

fn recipe() -> String {
    format!(
        "helm={} go={}\nldflags={}\n--- tools.go\n{TOOLS_GO}\n",
        versions::HELM,
        versions::GO_DIRECTIVE,
        ldflags()
    )
}

fn go_mod() -> String {
    format!(
        "module lmi.dev/e2e/helm\n\ngo {}\n\nrequire {MODULE} v{}\n",
        versions::GO_DIRECTIVE,
        versions::HELM
    )
}

impl Helm {
    /// Builds helm unless the cache already holds the pinned version (a few minutes the first
    /// time, mostly module downloads; then nothing). Concurrent callers (other test binaries)
    /// wait on a lock file instead of building twice.
    pub async fn ensure_built(paths: &Paths) -> Result<Helm> {
        let dir = dir(paths);
        let path = gobuild::ensure_tool(paths, &tool(), &dir).await?;
        Ok(Helm {
            path,
            home: dir.join("home"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs helm with `args`; returns its standard output, or an error with its standard error.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.path)
            .args(args)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(Error::io("running", &self.path))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(Error::Other(format!(
                "`helm {}` exited with {}:\n{}{}",
                args.join(" "),
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

fn tool() -> gobuild::ToolBuild<'static> {
    gobuild::ToolBuild {
        name: "helm",
        binary: "helm",
        tools_go: TOOLS_GO,
        go_mod: go_mod(),
        ldflags: ldflags(),
        package: format!("{MODULE}/cmd/helm"),
        tags: "",
        recipe: recipe(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_the_helm_version_and_the_local_clusters_kubernetes_version() {
        let flags = ldflags();
        assert!(flags.contains(&format!("internal/version.version=v{}", versions::HELM)));
        let minor = versions::KUBERNETES.split('.').nth(1).unwrap();
        assert!(flags.contains(&format!("pkg/chartutil.k8sVersionMinor={minor}")));
        assert!(go_mod().contains(&format!("require helm.sh/helm/v3 v{}", versions::HELM)));
    }
}

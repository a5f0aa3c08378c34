//! The prometheus-operator CRDs the chart's optional objects use (ServiceMonitor, PodMonitor,
//! PrometheusRule),
//! generated here with controller-gen from prometheus-operator's API types, both from the Go
//! module proxy (the module that carries prometheus-operator's own manifests is not served there).
//! Cached in `$CACHE/monitoring-crds-<version>/crds`, so the chart's dry run covers them.

use std::path::{Path, PathBuf};

use kube::Client;
use tokio::process::Command;

use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::versions::{CONTROLLER_TOOLS, GO_DIRECTIVE, PROMETHEUS_OPERATOR};
use crate::{crds, logs};

const TYPES: &str = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring";
const TOOLS_GO: &str = include_str!("../gomod/monitoring/tools.go");
/// The kinds the chart renders; the others (Prometheus, Alertmanager, ...) are not needed.
const WANTED: [&str; 3] = [
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_podmonitors.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
];

/// The folder holding the generated ServiceMonitor and PodMonitor CRDs, generating them once.
pub async fn crd_dir(paths: &Paths) -> Result<PathBuf> {
    let dir = paths.root().join(format!(
        "monitoring-crds-{PROMETHEUS_OPERATOR}-{CONTROLLER_TOOLS}"
    ));
    let crds = dir.join("crds");
    if WANTED.iter().all(|f| crds.join(f).is_file()) {
        return Ok(crds);
    }
    let log = paths.log_dir().join("build-monitoring-crds.log");
    std::fs::create_dir_all(paths.log_dir()).map_err(Error::io("creating", &paths.log_dir()))?;
    logs::truncate(&log)?;
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(Error::io("creating", &src))?;
    let go_mod = format!(
        "module lmi.dev/e2e/monitoring\n\ngo {GO_DIRECTIVE}\n\nrequire (\n\t{TYPES} v{PROMETHEUS_OPERATOR}\n\tsigs.k8s.io/controller-tools v{CONTROLLER_TOOLS}\n)\n"
    );
    write(&src.join("go.mod"), &go_mod)?;
    write(&src.join("tools.go"), TOOLS_GO)?;
    let generator = dir.join("controller-gen");
    let generator_arg = format!("-o={}", generator.display());
    run(&src, &log, "go", &["mod", "tidy"]).await?;
    run(
        &src,
        &log,
        "go",
        &[
            "build",
            &generator_arg,
            "sigs.k8s.io/controller-tools/cmd/controller-gen",
        ],
    )
    .await?;
    // Into a fresh folder, renamed into place only when complete.
    let partial = dir.join("crds.partial");
    let _ = std::fs::remove_dir_all(&partial);
    let paths_arg = format!("paths={TYPES}/v1");
    let output_arg = format!("output:crd:dir={}", partial.display());
    let generator_path = generator.display().to_string();
    run(
        &src,
        &log,
        &generator_path,
        &["crd:crdVersions=v1,maxDescLen=0", &paths_arg, &output_arg],
    )
    .await?;
    let _ = std::fs::remove_dir_all(&crds);
    std::fs::create_dir_all(&crds).map_err(Error::io("creating", &crds))?;
    for file in WANTED {
        let from = partial.join(file);
        std::fs::rename(&from, crds.join(file)).map_err(Error::io("moving", &from))?;
    }
    let _ = std::fs::remove_dir_all(&partial);
    Ok(crds)
}

/// Installs the ServiceMonitor, PodMonitor and PrometheusRule CRDs (idempotent: server-side apply).
pub async fn install(client: &Client, paths: &Paths) -> Result<Vec<String>> {
    crds::install_dir(client, &crd_dir(paths).await?).await
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(Error::io("writing", path))
}

async fn run(dir: &Path, log: &Path, program: &str, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local");
    logs::run_logged("monitoring-crds", log, &mut cmd).await
}

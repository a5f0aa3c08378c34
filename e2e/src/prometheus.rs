//! Prometheus, built from its Go module (`github.com/prometheus/prometheus`) the way
//! [`crate::helm`] builds helm, for the chart tests:
//! - promtool (tag `remove_all_sd`: no service-discovery plugins, which its rule commands do not
//!   need), cached in `$CACHE/promtool-<version>/bin`: `promtool check rules` and `promtool test
//!   rules` on the chart's alerts (`charts/lmi/rules/`);
//! - the server (only the Kubernetes service discovery, tags `remove_all_sd,enable_kubernetes_sd`),
//!   cached in `$CACHE/prometheus-<version>/bin`: it scrapes what the chart installs, with the
//!   chart's ServiceMonitor and PodMonitor settings, and answers the dashboard's queries.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::error::{Error, Result};
use crate::gobuild;
use crate::paths::Paths;
use crate::versions;

const MODULE: &str = "github.com/prometheus/prometheus";

/// The wrapper's tools.go for one of Prometheus' commands.
fn tools_go(command: &str) -> String {
    format!(
        "//go:build tools\n\n// Package tools names the {command} command that lmi-e2e builds (e2e/src/prometheus.rs).\npackage tools\n\nimport (\n\t_ \"{MODULE}/cmd/{command}\"\n)\n"
    )
}

/// Builds `command` of Prometheus with `tags` into `$CACHE/<command>-<version>/bin` unless cached
/// (a few minutes the first time, mostly module downloads).
async fn ensure(paths: &Paths, command: &'static str, tags: &'static str) -> Result<PathBuf> {
    let tools_go = tools_go(command);
    let tool = gobuild::ToolBuild {
        name: command,
        binary: command,
        tools_go: &tools_go,
        go_mod: format!(
            "module lmi.dev/e2e/{command}\n\ngo {}\n\nrequire {MODULE} v{}\n",
            versions::GO_DIRECTIVE,
            versions::PROMETHEUS
        ),
        ldflags: "-s -w".to_string(),
        package: format!("{MODULE}/cmd/{command}"),
        tags,
        recipe: format!(
            "prometheus={} go={} tags={tags}\n--- tools.go\n{tools_go}\n",
            versions::PROMETHEUS,
            versions::GO_DIRECTIVE
        ),
    };
    let dir = paths
        .root()
        .join(format!("{command}-{}", versions::PROMETHEUS));
    gobuild::ensure_tool(paths, &tool, &dir).await
}

/// The promtool binary.
pub async fn ensure_promtool(paths: &Paths) -> Result<PathBuf> {
    ensure(paths, "promtool", "remove_all_sd").await
}

/// The Prometheus server binary, with the Kubernetes service discovery only.
pub async fn ensure_server(paths: &Paths) -> Result<PathBuf> {
    ensure(paths, "prometheus", "remove_all_sd,enable_kubernetes_sd").await
}

/// Runs `promtool ARGS` in `dir`; its output, or an error with it.
pub async fn run(promtool: &Path, dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(Error::io("running", promtool))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(Error::Other(format!(
            "`promtool {}` exited with {}:\n{text}",
            args.join(" "),
            out.status
        )))
    }
}

//! promtool, Prometheus' rule checker and rule unit tester, built from Prometheus' Go module
//! (`github.com/prometheus/prometheus`, tag `remove_all_sd`: no service-discovery plugins, which
//! promtool's rule commands do not need) the way [`crate::helm`] builds helm, cached in
//! `$CACHE/promtool-<version>/bin`. The chart tests run `promtool check rules` and
//! `promtool test rules` on the chart's alerts (`charts/lmi/rules/`).

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::error::{Error, Result};
use crate::gobuild;
use crate::paths::Paths;
use crate::versions;

const MODULE: &str = "github.com/prometheus/prometheus";

const TOOLS_GO: &str = "//go:build tools\n\n// Package tools names the promtool command that lmi-e2e builds (e2e/src/promtool.rs).\npackage tools\n\nimport (\n\t_ \"github.com/prometheus/prometheus/cmd/promtool\"\n)\n";

const TAGS: &str = "remove_all_sd";

fn tool() -> gobuild::ToolBuild<'static> {
    gobuild::ToolBuild {
        binary: "promtool",
        tools_go: TOOLS_GO,
        go_mod: format!(
            "module lmi.dev/e2e/promtool\n\ngo {}\n\nrequire {MODULE} v{}\n",
            versions::GO_DIRECTIVE,
            versions::PROMETHEUS
        ),
        ldflags: "-s -w".to_string(),
        package: format!("{MODULE}/cmd/promtool"),
        tags: TAGS,
        recipe: format!(
            "prometheus={} go={} tags={TAGS}\n--- tools.go\n{TOOLS_GO}\n",
            versions::PROMETHEUS,
            versions::GO_DIRECTIVE
        ),
    }
}

/// The promtool binary, built once per pinned version (a few minutes the first time, mostly
/// module downloads).
pub async fn ensure_built(paths: &Paths) -> Result<PathBuf> {
    let dir = paths
        .root()
        .join(format!("promtool-{}", versions::PROMETHEUS));
    gobuild::ensure_tool(paths, &tool(), &dir).await
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

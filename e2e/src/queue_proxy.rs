//! Knative's queue-proxy (`knative.dev/serving`, command `cmd/queue`), built from its Go module the
//! way [`crate::helm`] builds helm, cached in `$CACHE/queue-proxy-<version>/bin/queue`. Only the
//! data-plane benchmark uses it (`bench SECONDS queue-proxy`, docs/benchmarks.md), as the
//! comparison a Kubernetes user knows: the per-pod proxy of Knative Serving. `lmi-dev queue-proxy`
//! builds it and prints its path.

use std::path::PathBuf;

use crate::error::Result;
use crate::gobuild;
use crate::paths::Paths;
use crate::versions;

const MODULE: &str = "knative.dev/serving";

const TOOLS_GO: &str = "//go:build tools\n\n// Package tools names the queue-proxy command that lmi-e2e builds (e2e/src/queue_proxy.rs).\npackage tools\n\nimport (\n\t_ \"knative.dev/serving/cmd/queue\"\n)\n";

/// The queue-proxy binary, built once per pinned version.
pub async fn ensure_built(paths: &Paths) -> Result<PathBuf> {
    let tool = gobuild::ToolBuild {
        name: "queue-proxy",
        binary: "queue",
        tools_go: TOOLS_GO,
        go_mod: format!(
            "module lmi.dev/e2e/queue-proxy\n\ngo {}\n\nrequire {MODULE} v{}\n",
            versions::GO_DIRECTIVE,
            versions::KNATIVE_SERVING
        ),
        ldflags: "-s -w".to_string(),
        package: format!("{MODULE}/cmd/queue"),
        tags: "",
        recipe: format!(
            "knative-serving={} go={}\n--- tools.go\n{TOOLS_GO}\n",
            versions::KNATIVE_SERVING,
            versions::GO_DIRECTIVE
        ),
    };
    let dir = paths
        .root()
        .join(format!("queue-proxy-{}", versions::KNATIVE_SERVING));
    gobuild::ensure_tool(paths, &tool, &dir).await
}

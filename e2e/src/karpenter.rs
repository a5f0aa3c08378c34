//! Real Karpenter in the local cluster: its core controller with its kwok cloud provider
//! (`sigs.k8s.io/karpenter`, package `kwok`), built from its Go module like the cluster's other
//! components and started by `up` with leader election on, its log beside the rest.
//!
//! Its kwok provider turns a NodeClaim into a Node object (there is no kubelet), which the
//! cluster's kwok then runs as a fake node; Karpenter registers and initialises it, and drains
//! and deletes it when the NodeClaim goes, as it does on a cloud. It offers the instance types of
//! a file: here the operator's EC2 catalog (`crds/data/ec2-instance-types.tsv`), on demand in the
//! local zones, at the catalog's prices ([`instance_types`]).
//!
//! The operators on the local cluster name one shared node class, [`NODE_CLASS`], with the zones
//! [`ZONES`] (`--node-class`, `--zones`).

use std::path::{Path, PathBuf};

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use lmi_crds::catalog::Catalog;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::gobuild;
use crate::manifests::FIELD_MANAGER;
use crate::paths::Paths;
use crate::versions;

/// The component name: its log file, pid file and `status` line.
pub const COMPONENT: &str = "karpenter";

const MODULE: &str = "sigs.k8s.io/karpenter";

/// The node class every NodeClaim of the local cluster names (`--node-class`).
pub const NODE_CLASS: &str = "karpenter.kwok.sh/KWOKNodeClass/default";

/// Name of that node class object.
pub const NODE_CLASS_NAME: &str = "default";

/// The zones of the local cluster's offerings (`--zones`).
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

/// Offerings the local cluster's Karpenter does not have, as a zone that lacks an instance
/// type: a NodeClaim for one of them is not launched (the operator's failed-launch handling is
/// tested on it). No other test uses the type.
pub const UNOFFERED: [(&str, &str); 1] = [("c6gn.large", "us-east-1a")];

/// Loopback ports of its metrics and health probes (defaults 8080 and 8081, moved like the
/// cluster's other ports).
pub const METRICS_PORT: u16 = 18300;
pub const HEALTH_PORT: u16 = 18301;

/// About how long the first build takes on this project's 2-core machine (for progress lines).
pub(crate) const TYPICAL_BUILD: std::time::Duration = std::time::Duration::from_secs(240);

const TOOLS_GO: &str = "//go:build tools\n\n// Package tools names the Karpenter controller with its kwok provider that lmi-e2e builds (e2e/src/karpenter.rs).\npackage tools\n\nimport (\n\t_ \"sigs.k8s.io/karpenter/kwok\"\n)\n";

/// The controller binary, built once per pinned version.
pub async fn ensure_built(paths: &Paths) -> Result<PathBuf> {
    let tool = gobuild::ToolBuild {
        name: COMPONENT,
        binary: "kwok",
        tools_go: TOOLS_GO,
        go_mod: format!(
            "module lmi.dev/e2e/karpenter\n\ngo {}\n\nrequire {MODULE} v{}\n",
            versions::GO_DIRECTIVE,
            versions::KARPENTER
        ),
        ldflags: "-s -w".to_string(),
        package: format!("{MODULE}/kwok"),
        tags: "",
        recipe: format!(
            "karpenter={} go={}\n--- tools.go\n{TOOLS_GO}\n",
            versions::KARPENTER,
            versions::GO_DIRECTIVE
        ),
    };
    gobuild::ensure_tool(paths, &tool, &karpenter_dir(paths)).await
}

fn karpenter_dir(paths: &Paths) -> PathBuf {
    paths
        .root()
        .join(format!("karpenter-kwok-{}", versions::KARPENTER))
}

/// Where the binary is (or will be).
pub fn binary(paths: &Paths) -> PathBuf {
    karpenter_dir(paths).join("bin").join("kwok")
}

/// What the kwok provider keeps off every instance (its fixed kube-reserved), in millicores and
/// MiB: it reports a node's allocatable as the file's resources less this.
const KWOK_RESERVED: (u32, u64) = (100, 10);

/// The kwok provider's instance-type file for `catalog`: every type on demand in each of
/// `zones` at its catalog price, unless `unavailable` names that (type, zone): Karpenter then
/// has no offering for it, as when a zone lacks a type.
///
/// Its resources are chosen so that a node's allocatable is what an EKS node of the type
/// reports (the catalog's allocatable: EKS's reservations and eviction threshold), not the
/// type's whole vCPUs and memory less kwok's small fixed reservation: the EEs a node holds are
/// then those it would hold on EKS (a `c7g.xlarge` two EEs of 1 vCPU and 2 GiB, not three).
pub fn instance_types(catalog: &Catalog, zones: &[&str], unavailable: &[(&str, &str)]) -> Value {
    let types: Vec<Value> = catalog
        .types()
        .iter()
        .map(|t| {
            let (cpu, memory) = t.allocatable();
            let offerings: Vec<Value> = zones
                .iter()
                .filter(|zone| !unavailable.contains(&(t.name.as_str(), **zone)))
                .map(|zone| {
                    json!({
                        "Price": t.price_per_hour,
                        "Available": true,
                        "Requirements": [
                            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]},
                        ],
                    })
                })
                .collect();
            json!({
                "name": t.name,
                "offerings": offerings,
                "architecture": t.arch.kubernetes_arch(),
                "operatingSystems": ["linux"],
                "resources": {
                    "cpu": format!("{}m", cpu + KWOK_RESERVED.0),
                    "memory": format!("{}Mi", memory + KWOK_RESERVED.1),
                    "pods": "110",
                },
            })
        })
        .collect();
    Value::Array(types)
}

/// Writes the local cluster's instance-type file into `dir` (unless it is current) and returns
/// its path, and whether it changed (a running Karpenter then reads it only when restarted).
pub fn write_instance_types(dir: &Path) -> Result<(PathBuf, bool)> {
    let path = dir.join("karpenter-instance-types.json");
    let text = serde_json::to_string(&instance_types(Catalog::builtin(), &ZONES, &UNOFFERED))?;
    if std::fs::read_to_string(&path).is_ok_and(|current| current == text) {
        return Ok((path, false));
    }
    std::fs::write(&path, text).map_err(Error::io("writing", &path))?;
    Ok((path, true))
}

/// Its flags: ports away from the defaults, the lease in `kube-system` (it runs outside the
/// cluster, so it has no namespace of its own), the instance types.
pub fn args(instance_types: &Path) -> Vec<String> {
    vec![
        format!("--metrics-port={METRICS_PORT}"),
        format!("--health-probe-port={HEALTH_PORT}"),
        "--leader-election-namespace=kube-system".to_string(),
        format!("--instance-types-file-path={}", instance_types.display()),
        "--log-level=info".to_string(),
    ]
}

/// Its environment: the kubeconfig (controller-runtime reads `KUBECONFIG`; Karpenter's own flag
/// set has no `--kubeconfig`).
pub fn env(kubeconfig: &Path) -> Vec<(String, String)> {
    vec![("KUBECONFIG".to_string(), kubeconfig.display().to_string())]
}

/// Karpenter answers its readiness probe.
pub async fn healthy() -> Result<()> {
    crate::health::http_ok(HEALTH_PORT, "/readyz").await
}

/// Creates (or keeps) the shared node class: launches register without delay.
pub async fn ensure_node_class(client: &Client) -> Result<()> {
    let resource = ApiResource {
        group: "karpenter.kwok.sh".to_string(),
        version: "v1alpha1".to_string(),
        api_version: "karpenter.kwok.sh/v1alpha1".to_string(),
        kind: "KWOKNodeClass".to_string(),
        plural: "kwoknodeclasses".to_string(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let class = json!({
        "apiVersion": "karpenter.kwok.sh/v1alpha1",
        "kind": "KWOKNodeClass",
        "metadata": {"name": NODE_CLASS_NAME},
        "spec": {},
    });
    api.patch(
        NODE_CLASS_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&class),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_types_are_the_catalog_on_demand_in_each_zone() {
        let catalog = Catalog::builtin();
        let file = instance_types(catalog, &ZONES, &[("c7g.large", "us-east-1b")]);
        let types = file.as_array().expect("a list");
        assert_eq!(types.len(), catalog.types().len());
        let c7g = types
            .iter()
            .find(|t| t["name"] == "c7g.large")
            .expect("c7g.large");
        assert_eq!(c7g["architecture"], "arm64");
        // c7g.large: EKS keeps 70m of 2 vCPUs; kwok takes its 100m off what the file says.
        assert_eq!(c7g["resources"]["cpu"], "2030m");
        let zones: Vec<&str> = c7g["offerings"]
            .as_array()
            .expect("offerings")
            .iter()
            .map(|o| o["Requirements"][1]["values"][0].as_str().expect("zone"))
            .collect();
        assert_eq!(zones, ["us-east-1a", "us-east-1c"]);
        let price = catalog
            .get("c7g.large")
            .expect("in the catalog")
            .price_per_hour;
        assert_eq!(c7g["offerings"][0]["Price"], price);
    }

    #[test]
    fn the_node_class_setting_names_the_class_made_here() {
        let zones: Vec<String> = ZONES.iter().map(|z| z.to_string()).collect();
        let choice = lmi_operator::karpenter::NodeClassChoice::parse(NODE_CLASS, &zones)
            .expect("a valid setting");
        assert_eq!(choice.reference("any").name, NODE_CLASS_NAME);
    }
}

//! Simulated (kwok) nodes that look like the nodes Karpenter launches on EC2: instance type,
//! zone, architecture, CPU and memory, with Karpenter's well-known labels.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::cluster::KWOK_NODE_ANNOTATION;
use crate::error::{Error, Result};

/// Label and taint key that fence a capacity provider's nodes (see DESIGN.md, section 4).
pub const CAPACITY_PROVIDER_KEY: &str = "lmi.dev/capacity-provider";

/// CPU architecture as Kubernetes names it (`kubernetes.io/arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// The shape of an EC2 instance type: what a node of that type reports.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceShape {
    /// `c7g.2xlarge`
    pub instance_type: String,
    /// `c7g`
    pub family: String,
    /// `c`, `m` or `r` (lower case, as Karpenter labels it)
    pub category: String,
    pub generation: u32,
    pub arch: Arch,
    pub vcpu: u32,
    pub memory_mib: u64,
    /// What is left for pods; equal to the capacity unless the catalog says otherwise.
    pub allocatable_cpu_millis: u32,
    pub allocatable_memory_mib: u64,
}

impl InstanceShape {
    /// `2xlarge` of `c7g.2xlarge`.
    pub fn size(&self) -> &str {
        self.instance_type
            .split_once('.')
            .map_or("", |(_, size)| size)
    }

    /// The shape of a catalog instance type, allocatable as the catalog computes it.
    pub fn from_catalog(name: &str) -> Result<Self> {
        let catalog = lmi_crds::catalog::Catalog::builtin();
        let it = catalog
            .get(name)
            .ok_or_else(|| Error::Other(format!("instance type {name} is not in the catalog")))?;
        let (cpu, memory) = it.allocatable();
        Ok(InstanceShape {
            instance_type: it.name.clone(),
            family: it.family.clone(),
            // Karpenter's category label is the family's letter (`c7g` -> `c`).
            category: it.family.chars().take(1).collect(),
            generation: it.generation,
            arch: match it.arch {
                lmi_crds::Architecture::Arm64 => Arch::Arm64,
                lmi_crds::Architecture::X86_64 => Arch::Amd64,
            },
            vcpu: it.vcpu,
            memory_mib: it.memory_mib,
            allocatable_cpu_millis: cpu,
            allocatable_memory_mib: memory,
        })
    }
}

/// A kwok node to create.
#[derive(Debug, Clone)]
pub struct FakeNode {
    pub name: String,
    pub shape: InstanceShape,
    /// `us-east-1a`
    pub zone: String,
    /// Label and taint the node as belonging to this capacity provider.
    pub capacity_provider: Option<String>,
    pub extra_labels: BTreeMap<String, String>,
}

impl FakeNode {
    pub fn new(name: impl Into<String>, shape: InstanceShape, zone: impl Into<String>) -> Self {
        FakeNode {
            name: name.into(),
            shape,
            zone: zone.into(),
            capacity_provider: None,
            extra_labels: BTreeMap::new(),
        }
    }

    /// A node of a catalog instance type, e.g. `FakeNode::of_type("n1", "m7g.xlarge", "us-east-1a")`.
    pub fn of_type(
        name: impl Into<String>,
        instance_type: &str,
        zone: impl Into<String>,
    ) -> Result<Self> {
        Ok(FakeNode::new(
            name,
            InstanceShape::from_catalog(instance_type)?,
            zone,
        ))
    }

    pub fn capacity_provider(mut self, name: impl Into<String>) -> Self {
        self.capacity_provider = Some(name.into());
        self
    }

    /// The labels Karpenter (and the kubelet) put on such a node.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let s = &self.shape;
        let region = self
            .zone
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .to_string();
        let mut labels: BTreeMap<String, String> = [
            ("kubernetes.io/hostname", self.name.clone()),
            ("kubernetes.io/os", "linux".to_string()),
            ("kubernetes.io/arch", s.arch.as_str().to_string()),
            ("node.kubernetes.io/instance-type", s.instance_type.clone()),
            ("topology.kubernetes.io/zone", self.zone.clone()),
            ("topology.kubernetes.io/region", region),
            ("karpenter.sh/capacity-type", "on-demand".to_string()),
            ("karpenter.k8s.aws/instance-category", s.category.clone()),
            ("karpenter.k8s.aws/instance-family", s.family.clone()),
            (
                "karpenter.k8s.aws/instance-generation",
                s.generation.to_string(),
            ),
            ("karpenter.k8s.aws/instance-size", s.size().to_string()),
            ("karpenter.k8s.aws/instance-cpu", s.vcpu.to_string()),
            // Karpenter gives memory in MiB.
            (
                "karpenter.k8s.aws/instance-memory",
                s.memory_mib.to_string(),
            ),
            ("type", "kwok".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(cp) = &self.capacity_provider {
            labels.insert(CAPACITY_PROVIDER_KEY.to_string(), cp.clone());
        }
        labels.extend(self.extra_labels.clone());
        labels
    }

    /// The Node object. Capacity and allocatable go into the status on create (as a kubelet
    /// registers itself); kwok then keeps the node Ready.
    pub fn to_node(&self) -> Node {
        let s = &self.shape;
        let resources = |cpu_millis: u32, memory_mib: u64| -> BTreeMap<String, Quantity> {
            [
                ("cpu", format!("{cpu_millis}m")),
                ("memory", format!("{memory_mib}Mi")),
                ("pods", "110".to_string()),
                ("ephemeral-storage", "20Gi".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v)))
            .collect()
        };
        let taints = self.capacity_provider.as_ref().map(|cp| {
            vec![Taint {
                key: CAPACITY_PROVIDER_KEY.to_string(),
                value: Some(cp.clone()),
                effect: "NoSchedule".to_string(),
                ..Default::default()
            }]
        });
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels()),
                annotations: Some(
                    [(
                        KWOK_NODE_ANNOTATION.0.to_string(),
                        KWOK_NODE_ANNOTATION.1.to_string(),
                    )]
                    .into_iter()
                    .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                provider_id: Some(format!("kwok://{}/{}", self.zone, self.name)),
                taints,
                ..Default::default()
            }),
            status: Some(NodeStatus {
                capacity: Some(resources(s.vcpu * 1000, s.memory_mib)),
                allocatable: Some(resources(
                    s.allocatable_cpu_millis,
                    s.allocatable_memory_mib,
                )),
                ..Default::default()
            }),
        }
    }
}

/// Creates the node; kwok picks it up through its annotation.
pub async fn create(client: &Client, node: &FakeNode) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    Ok(api.create(&PostParams::default(), &node.to_node()).await?)
}

pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Creates the node and waits until kwok reports it Ready.
pub async fn create_ready(client: &Client, node: &FakeNode, timeout: Duration) -> Result<Node> {
    create(client, node).await?;
    wait_ready(client, &node.name, timeout).await
}

/// Waits until kwok reports the node Ready.
pub async fn wait_ready(client: &Client, name: &str, timeout: Duration) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(node) = api.get_opt(name).await?
            && is_ready(&node)
        {
            return Ok(node);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("node {name} to become Ready (is kwok running?)"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> InstanceShape {
        InstanceShape {
            instance_type: "c7g.2xlarge".into(),
            family: "c7g".into(),
            category: "c".into(),
            generation: 7,
            arch: Arch::Arm64,
            vcpu: 8,
            memory_mib: 16384,
            allocatable_cpu_millis: 7910,
            allocatable_memory_mib: 14162,
        }
    }

    #[test]
    fn node_carries_karpenter_labels_and_capacity() {
        let node = FakeNode::new("n1", shape(), "us-east-1a")
            .capacity_provider("cp1")
            .to_node();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["node.kubernetes.io/instance-type"], "c7g.2xlarge");
        assert_eq!(labels["topology.kubernetes.io/zone"], "us-east-1a");
        assert_eq!(labels["topology.kubernetes.io/region"], "us-east-1");
        assert_eq!(labels["kubernetes.io/arch"], "arm64");
        assert_eq!(labels["karpenter.k8s.aws/instance-size"], "2xlarge");
        assert_eq!(labels["karpenter.k8s.aws/instance-memory"], "16384");
        assert_eq!(labels[CAPACITY_PROVIDER_KEY], "cp1");
        let status = node.status.unwrap_or_default();
        assert_eq!(status.capacity.unwrap_or_default()["cpu"].0, "8000m");
        assert_eq!(
            status.allocatable.unwrap_or_default()["memory"].0,
            "14162Mi"
        );
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        assert_eq!(taints.len(), 1);
    }
}

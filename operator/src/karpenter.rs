//! The parts of Karpenter's API the operator writes and reads: `EC2NodeClass`
//! (karpenter.k8s.aws/v1) and `NodeClaim` (karpenter.sh/v1). Only the fields we use are typed;
//! the CRDs themselves are Karpenter's.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// Label Karpenter puts on a NodeClaim's node naming its EC2NodeClass.
pub const NODE_CLASS_LABEL: &str = "karpenter.k8s.aws/ec2nodeclass";
/// Taints Karpenter puts on a node it has not registered yet (NoExecute: a pod bound meanwhile
/// would be evicted) and on a node it is draining to delete: no EE goes there.
pub const NOT_FOR_EES_TAINTS: [&str; 2] = ["karpenter.sh/unregistered", "karpenter.sh/disrupted"];

/// The group and kind of the node class the operator makes for each provider on AWS.
pub const EC2_NODE_CLASS: (&str, &str) = ("karpenter.k8s.aws", "EC2NodeClass");
pub const CAPACITY_TYPE_LABEL: &str = "karpenter.sh/capacity-type";
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const ARCH_LABEL: &str = "kubernetes.io/arch";

/// Which Karpenter node class the operator's NodeClaims name (`--node-class`).
///
/// Karpenter's node classes are its cloud providers' own kinds: AWS has `EC2NodeClass`, Azure
/// `AKSNodeClass`, the kwok provider `KWOKNodeClass`. Only the AWS one has a shape the operator
/// knows how to fill from a provider (subnets, security groups, role, KMS key), so it makes one
/// per provider. Any other kind is the platform team's: one node class they made, named by every
/// provider's claims, with the zones its offerings cover given to the operator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NodeClassChoice {
    /// One EC2NodeClass per provider, named after it; zones are the subnets' zones Karpenter
    /// resolves into its status.
    #[default]
    Ec2PerProvider,
    /// One existing node class of another Karpenter provider for every capacity provider.
    Shared {
        group: String,
        kind: String,
        name: String,
        /// The zones instances may be launched in (the node class has no common way to say).
        zones: Vec<String>,
    },
}

impl NodeClassChoice {
    /// Parses `GROUP/KIND/NAME` (or the AWS default `karpenter.k8s.aws/EC2NodeClass`) and the
    /// zones that go with a shared node class.
    pub fn parse(value: &str, zones: &[String]) -> Result<Self, String> {
        let parts: Vec<&str> = value.split('/').collect();
        match parts.as_slice() {
            [group, kind] if (*group, *kind) == EC2_NODE_CLASS => {
                if zones.is_empty() {
                    Ok(NodeClassChoice::Ec2PerProvider)
                } else {
                    // Silently ignoring them would launch where the operator was told not to.
                    Err("--zones applies only with a GROUP/KIND/NAME --node-class: with EC2NodeClasses the zones are those of each provider's subnets".to_string())
                }
            }
            [group, kind, name] if !group.is_empty() && !kind.is_empty() && !name.is_empty() => {
                if zones.is_empty() {
                    return Err(format!(
                        "--node-class {value} needs --zones: the zones its instance offerings cover (e.g. us-east-1a,us-east-1b)"
                    ));
                }
                Ok(NodeClassChoice::Shared {
                    group: group.to_string(),
                    kind: kind.to_string(),
                    name: name.to_string(),
                    zones: zones.to_vec(),
                })
            }
            _ => Err(format!(
                "--node-class {value:?} must be GROUP/KIND/NAME of an existing node class (e.g. karpenter.kwok.sh/KWOKNodeClass/default), or karpenter.k8s.aws/EC2NodeClass for one per provider"
            )),
        }
    }

    /// The reference a provider's NodeClaims carry.
    pub fn reference(&self, provider: &str) -> NodeClassRef {
        match self {
            NodeClassChoice::Ec2PerProvider => NodeClassRef {
                group: EC2_NODE_CLASS.0.to_string(),
                kind: EC2_NODE_CLASS.1.to_string(),
                name: provider.to_string(),
            },
            NodeClassChoice::Shared {
                group, kind, name, ..
            } => NodeClassRef {
                group: group.clone(),
                kind: kind.clone(),
                name: name.clone(),
            },
        }
    }

    /// Karpenter's label naming a claim's node class: `<group>/<kind in lower case>`.
    pub fn label(&self, provider: &str) -> (String, String) {
        let reference = self.reference(provider);
        (
            format!("{}/{}", reference.group, reference.kind.to_lowercase()),
            reference.name,
        )
    }
}

/// An EC2NodeClass: how Karpenter launches instances (subnets, security groups, role, AMI, disks).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "karpenter.k8s.aws",
    version = "v1",
    kind = "EC2NodeClass",
    plural = "ec2nodeclasses",
    status = "EC2NodeClassStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassSpec {
    pub subnet_selector_terms: Vec<SelectorTerm>,
    pub security_group_selector_terms: Vec<SelectorTerm>,
    pub ami_selector_terms: Vec<AmiSelectorTerm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SelectorTerm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AmiSelectorTerm {
    pub alias: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeviceMapping {
    pub device_name: String,
    pub root_volume: bool,
    pub ebs: Ebs,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ebs {
    pub volume_size: String,
    pub volume_type: String,
    pub encrypted: bool,
    #[serde(rename = "kmsKeyID", default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// What Karpenter resolved: the subnets (with their zones) it will launch into, and the AMIs
/// new instances get (an instance on another image is out of date).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassStatus {
    #[serde(default)]
    pub subnets: Vec<ResolvedSubnet>,
    #[serde(default)]
    pub amis: Vec<ResolvedAmi>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedSubnet {
    pub id: String,
    pub zone: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ResolvedAmi {
    pub id: String,
}

/// A standalone NodeClaim: one instance of one type in one zone.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "karpenter.sh",
    version = "v1",
    kind = "NodeClaim",
    plural = "nodeclaims",
    status = "NodeClaimStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimSpec {
    pub node_class_ref: NodeClassRef,
    pub requirements: Vec<NodeSelectorRequirement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NodeClassRef {
    pub group: String,
    pub kind: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(
        rename = "providerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
    /// The machine image the instance was launched with.
    #[serde(rename = "imageID", default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl NodeClaim {
    /// The value of requirement `key` (the operator writes one value per key).
    pub fn requirement(&self, key: &str) -> Option<&str> {
        self.spec
            .requirements
            .iter()
            .find(|r| r.key == key && r.operator == "In")
            .and_then(|r| r.values.first())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_class_choice_is_ec2_per_provider_or_a_shared_class_with_zones() {
        assert_eq!(
            NodeClassChoice::parse("karpenter.k8s.aws/EC2NodeClass", &[]),
            Ok(NodeClassChoice::Ec2PerProvider)
        );
        let zones = vec!["z1".to_string()];
        let kwok = NodeClassChoice::parse("karpenter.kwok.sh/KWOKNodeClass/default", &zones)
            .expect("valid");
        assert_eq!(kwok.reference("prod").name, "default");
        assert_eq!(
            kwok.label("prod"),
            (
                "karpenter.kwok.sh/kwoknodeclass".to_string(),
                "default".to_string()
            )
        );
        assert_eq!(
            NodeClassChoice::Ec2PerProvider.label("prod"),
            (NODE_CLASS_LABEL.to_string(), "prod".to_string())
        );
        let no_zones = NodeClassChoice::parse("karpenter.kwok.sh/KWOKNodeClass/default", &[]);
        assert!(no_zones.is_err_and(|e| e.contains("--zones")));
        assert!(NodeClassChoice::parse("KWOKNodeClass", &zones).is_err());
        assert!(
            NodeClassChoice::parse("karpenter.k8s.aws/EC2NodeClass", &zones)
                .is_err_and(|e| e.contains("subnets"))
        );
        assert!(NodeClassChoice::parse("a//c", &zones).is_err());
    }
}

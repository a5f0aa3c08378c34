//! The Karpenter objects of a capacity provider: its EC2NodeClass and its standalone NodeClaims.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use lmi_crds::CapacityProvider;
use lmi_crds::common::{CAPACITY_PROVIDER_LABEL, instance_label};

use super::capacity_plan::NewClaim;
use crate::karpenter::{
    ARCH_LABEL, AmiSelectorTerm, BlockDeviceMapping, CAPACITY_TYPE_LABEL, EC2NodeClass,
    EC2NodeClassSpec, Ebs, INSTANCE_TYPE_LABEL, NodeClaim, NodeClaimSpec, NodeClassChoice,
    NodeSelectorRequirement, SelectorTerm, ZONE_LABEL,
};

/// Tag Karpenter's getting-started guide puts on a cluster's node security group; used when a
/// capacity provider names no security group.
pub const DISCOVERY_TAG: &str = "karpenter.sh/discovery";

fn owner(cp: &CapacityProvider) -> Option<OwnerReference> {
    cp.controller_owner_ref(&())
}

/// The role name Karpenter wants from an IAM role ARN (`arn:aws:iam::1:role/path/name` -> `name`).
pub fn role_name(role: &str) -> &str {
    if role.starts_with("arn:") {
        role.rsplit('/').next().unwrap_or(role)
    } else {
        role
    }
}

/// The EC2NodeClass named after the capacity provider.
pub fn node_class(cp: &CapacityProvider, cluster_name: &str, ami_alias: &str) -> EC2NodeClass {
    let vpc =
        cp.spec
            .vpc_config
            .clone()
            .unwrap_or_else(|| lmi_crds::capacity_provider::VpcConfig {
                subnet_ids: Vec::new(),
                security_group_ids: Vec::new(),
            });
    let by_id = |id: &String| SelectorTerm {
        id: Some(id.clone()),
        tags: BTreeMap::new(),
    };
    let security_groups = if vpc.security_group_ids.is_empty() {
        vec![SelectorTerm {
            id: None,
            tags: BTreeMap::from([(DISCOVERY_TAG.to_string(), cluster_name.to_string())]),
        }]
    } else {
        vpc.security_group_ids.iter().map(by_id).collect()
    };
    let block_device_mappings = cp
        .spec
        .kms_key_arn
        .as_ref()
        .map(|key| {
            vec![BlockDeviceMapping {
                device_name: "/dev/xvda".to_string(),
                root_volume: true,
                ebs: Ebs {
                    volume_size: "20Gi".to_string(),
                    volume_type: "gp3".to_string(),
                    encrypted: true,
                    kms_key_id: Some(key.clone()),
                },
            }]
        })
        .unwrap_or_default();
    let mut class = EC2NodeClass::new(
        &cp.name_any(),
        EC2NodeClassSpec {
            subnet_selector_terms: vpc.subnet_ids.iter().map(by_id).collect(),
            security_group_selector_terms: security_groups,
            ami_selector_terms: vec![AmiSelectorTerm {
                alias: ami_alias.to_string(),
            }],
            role: cp
                .spec
                .instance_role
                .as_deref()
                .map(|r| role_name(r).to_string()),
            block_device_mappings,
            tags: BTreeMap::from([(CAPACITY_PROVIDER_LABEL.to_string(), cp.name_any())]),
        },
    );
    class.metadata.owner_references = owner(cp).map(|o| vec![o]);
    let mut labels = BTreeMap::from([(CAPACITY_PROVIDER_LABEL.to_string(), cp.name_any())]);
    labels.extend(instance_label(cp.metadata.labels.as_ref()));
    class.metadata.labels = Some(labels);
    class
}

/// A standalone NodeClaim: one on-demand instance of one type in one zone that Karpenter never
/// consolidates or expires (consolidation is the operator's), naming the chosen node class.
pub fn node_claim(cp: &CapacityProvider, claim: &NewClaim, class: &NodeClassChoice) -> NodeClaim {
    let cp_name = cp.name_any();
    let requirement = |key: &str, value: &str| NodeSelectorRequirement {
        key: key.to_string(),
        operator: "In".to_string(),
        values: vec![value.to_string()],
    };
    let arch = cp
        .spec
        .instance_requirements
        .architecture()
        .kubernetes_arch();
    NodeClaim {
        metadata: ObjectMeta {
            name: Some(claim.name.clone()),
            labels: Some(
                BTreeMap::from([
                    (CAPACITY_PROVIDER_LABEL.to_string(), cp_name.clone()),
                    class.label(&cp_name),
                ])
                .into_iter()
                .chain(instance_label(cp.metadata.labels.as_ref()))
                .collect(),
            ),
            owner_references: owner(cp).map(|o| vec![o]),
            ..Default::default()
        },
        spec: NodeClaimSpec {
            node_class_ref: class.reference(&cp_name),
            requirements: vec![
                requirement(INSTANCE_TYPE_LABEL, &claim.instance_type),
                requirement(ZONE_LABEL, &claim.zone),
                requirement(CAPACITY_TYPE_LABEL, "on-demand"),
                requirement(ARCH_LABEL, arch),
            ],
            taints: vec![Taint {
                key: CAPACITY_PROVIDER_LABEL.to_string(),
                value: Some(cp_name),
                effect: "NoSchedule".to_string(),
                ..Default::default()
            }],
            expire_after: Some("Never".to_string()),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> CapacityProvider {
        let spec: lmi_crds::CapacityProviderSpec = serde_json::from_value(serde_json::json!({
            "vpcConfig": {"subnetIds": ["subnet-1", "subnet-2"], "securityGroupIds": []},
            "instanceRole": "arn:aws:iam::123456789012:role/path/lmi-node",
            "kmsKeyArn": "arn:aws:kms:us-east-1:1:key/k",
            "instanceRequirements": {"architectures": ["arm64"]}
        }))
        .unwrap();
        let mut cp = CapacityProvider::new("prod", spec);
        cp.metadata.uid = Some("u".into());
        cp
    }

    #[test]
    fn node_class_names_subnets_role_and_key() {
        let class = node_class(&cp(), "my-cluster", "al2023@latest");
        assert_eq!(class.spec.subnet_selector_terms.len(), 2);
        assert_eq!(class.spec.role.as_deref(), Some("lmi-node"));
        assert_eq!(
            class.spec.security_group_selector_terms[0].tags[DISCOVERY_TAG],
            "my-cluster"
        );
        assert_eq!(
            class.spec.block_device_mappings[0]
                .ebs
                .kms_key_id
                .as_deref(),
            Some("arn:aws:kms:us-east-1:1:key/k")
        );
        assert_eq!(
            class.metadata.owner_references.unwrap()[0].kind,
            "CapacityProvider"
        );
    }

    #[test]
    fn node_claim_is_standalone_on_demand_and_tainted() {
        let claim = NewClaim {
            name: "prod-us-east-1a-0".into(),
            instance_type: "c7g.large".into(),
            zone: "us-east-1a".into(),
            vcpu: 2,
        };
        let nc = node_claim(&cp(), &claim, &NodeClassChoice::Ec2PerProvider);
        assert_eq!(nc.requirement(INSTANCE_TYPE_LABEL), Some("c7g.large"));
        assert_eq!(nc.requirement(ZONE_LABEL), Some("us-east-1a"));
        assert_eq!(nc.requirement(CAPACITY_TYPE_LABEL), Some("on-demand"));
        assert_eq!(nc.requirement(ARCH_LABEL), Some("arm64"));
        assert_eq!(nc.spec.expire_after.as_deref(), Some("Never"));
        assert_eq!(nc.labels()[crate::karpenter::NODE_CLASS_LABEL], "prod");
        assert_eq!(nc.spec.node_class_ref.kind, "EC2NodeClass");
        assert_eq!(nc.spec.taints[0].key, CAPACITY_PROVIDER_LABEL);
        let kwok = NodeClassChoice::Shared {
            group: "karpenter.kwok.sh".into(),
            kind: "KWOKNodeClass".into(),
            name: "default".into(),
            zones: vec!["us-east-1a".into()],
        };
        let nc = node_claim(&cp(), &claim, &kwok);
        assert_eq!(nc.labels()["karpenter.kwok.sh/kwoknodeclass"], "default");
        assert_eq!(nc.spec.node_class_ref.name, "default");
    }
}

//! Builds the planner's snapshot of one capacity provider from the reflector stores.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use lmi_crds::capacity_provider::ProvisioningMode;
use lmi_crds::common::CAPACITY_PROVIDER_LABEL;
use lmi_crds::rules::{EeShape, RuleError, init_timeout_seconds};
use lmi_crds::{CapacityProvider, FunctionVersion};

use crate::autoscale::version_scaling::VersionScaling;
use crate::karpenter::{
    INSTANCE_TYPE_LABEL, NOT_FOR_EES_TAINTS, NodeClaim, NodeClassChoice, ZONE_LABEL,
};
use crate::object_key::{key, key_of};
use crate::plan::consolidation_times::ConsolidationTimes;
use crate::plan::snapshot::{InitFailure, Lifecycle, UnavailableOfferings};
use crate::plan::{ClaimView, EeView, NodeView, Provisioner, Snapshot, VersionView};
use crate::quantity;
use crate::stores::Stores;
use crate::version_view::{Functions, Skip, version_view};

/// Annotation on a NodeClaim: unix seconds since which it holds no EE.
pub const EMPTY_SINCE_ANNOTATION: &str = "lmi.dev/empty-since";

/// Annotation on a NodeClaim: unix seconds since which its EEs move away (consolidation).
pub const CONSOLIDATING_SINCE_ANNOTATION: &str = "lmi.dev/consolidating-since";

/// Annotation on a NodeClaim: unix seconds since which its EEs move away to replace it (it is
/// due: older than the provider's maximum lifetime, out of date, or asked for).
pub const REPLACING_SINCE_ANNOTATION: &str = "lmi.dev/replacing-since";

/// Unix seconds of an object's creation, if the API server set it.
fn created_at(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<i64> {
    meta.creation_timestamp.as_ref().map(|t| t.0.as_second())
}

/// A version attached to the provider whose configuration breaks a rule (kept out of planning).
pub struct InvalidVersion {
    pub version: Arc<FunctionVersion>,
    pub error: RuleError,
}

pub struct Observed {
    pub snapshot: Snapshot,
    /// The versions planned, by key.
    pub versions: BTreeMap<String, Arc<FunctionVersion>>,
    pub invalid: Vec<InvalidVersion>,
    /// Karpenter mode: whether Karpenter has resolved the subnets' zones yet.
    pub zones_known: bool,
}

impl Observed {
    /// A planned version by key: its object (for its EE pods and status) and the planner's view.
    pub fn version(&self, key: &str) -> Option<(&Arc<FunctionVersion>, &VersionView)> {
        let version = self.versions.get(key)?;
        let view = self.snapshot.versions.iter().find(|v| v.key == key)?;
        Some((version, view))
    }
}

/// The versions whose configuration names capacity provider `name`.
pub fn attached_versions(stores: &Stores, name: &str) -> Vec<Arc<FunctionVersion>> {
    let mut versions: Vec<_> = stores
        .versions
        .state()
        .into_iter()
        .filter(|v| {
            v.spec
                .configuration
                .capacity_provider_config
                .capacity_provider_name
                == name
        })
        .collect();
    versions.sort_by_key(|v| key_of(v.as_ref()));
    versions
}

/// Whether `cp` may place versions of `namespace` (its `namespaceSelector`): a refused version
/// gets no EE, whatever the admission policy let through.
fn namespace_allowed(
    cp: &CapacityProvider,
    namespace: Option<&str>,
    stores: &Stores,
) -> Result<(), RuleError> {
    let namespace = namespace.unwrap_or_default();
    namespace_rule(cp, namespace, &stores.namespace_labels(namespace))
}

/// The rule of [`namespace_allowed`], given the namespace's labels.
fn namespace_rule(
    cp: &CapacityProvider,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), RuleError> {
    if cp.allows_namespace(labels) {
        Ok(())
    } else {
        Err(RuleError::NamespaceNotAllowed {
            capacity_provider: cp.name_any(),
            namespace: namespace.to_string(),
        })
    }
}

/// The operator's settings and memory an observation carries into the snapshot.
#[derive(Debug, Clone)]
pub struct ObserveOptions<'a> {
    /// Where the zones come from.
    pub node_class: &'a NodeClassChoice,
    /// How long an empty NodeClaim is kept.
    pub cooldown_seconds: i64,
    pub consolidation: ConsolidationTimes,
    /// How long Karpenter may take to launch a NodeClaim.
    pub launch_timeout_seconds: i64,
    /// Offerings that failed to launch recently.
    pub unavailable: UnavailableOfferings,
}

/// What the planner needs of one provider.
pub fn observe(
    cp: &CapacityProvider,
    stores: &Stores,
    scaling: &BTreeMap<String, VersionScaling>,
    now: i64,
    options: &ObserveOptions<'_>,
) -> Observed {
    let cp_name = cp.name_any();
    let karpenter = cp.spec.provisioning.mode == ProvisioningMode::Karpenter;

    let nodes: Vec<NodeView> = stores
        .nodes
        .state()
        .iter()
        .filter(|n| {
            if karpenter {
                n.labels().get(CAPACITY_PROVIDER_LABEL) == Some(&cp_name)
            } else {
                let selector = cp
                    .spec
                    .provisioning
                    .node_selector
                    .clone()
                    .unwrap_or_default();
                !selector.is_empty() && selector.iter().all(|(k, v)| n.labels().get(k) == Some(v))
            }
        })
        .map(|n| node_view(n))
        .collect();

    let claims: Vec<ClaimView> = if karpenter {
        stores
            .claims
            .state()
            .iter()
            .filter(|c| c.labels().get(CAPACITY_PROVIDER_LABEL) == Some(&cp_name))
            .map(|c| ClaimView {
                name: c.name_any(),
                instance_type: c
                    .requirement(INSTANCE_TYPE_LABEL)
                    .unwrap_or_default()
                    .to_string(),
                zone: c.requirement(ZONE_LABEL).unwrap_or_default().to_string(),
                node_name: c.status.as_ref().and_then(|s| s.node_name.clone()),
                empty_since: c
                    .annotations()
                    .get(EMPTY_SINCE_ANNOTATION)
                    .and_then(|v| v.parse().ok()),
                consolidating_since: c
                    .annotations()
                    .get(CONSOLIDATING_SINCE_ANNOTATION)
                    .and_then(|v| v.parse().ok()),
                replacing_since: c
                    .annotations()
                    .get(REPLACING_SINCE_ANNOTATION)
                    .and_then(|v| v.parse().ok()),
                created_at: created_at(&c.metadata),
                image_id: c.status.as_ref().and_then(|s| s.image_id.clone()),
                deleting: c.metadata.deletion_timestamp.is_some(),
                launched: launched(c),
                launch_message: launch_message(c),
            })
            .collect()
    } else {
        Vec::new()
    };

    // The provider's own EC2NodeClass: its subnets' zones, and the AMIs instances should run.
    let class_status = match options.node_class {
        NodeClassChoice::Ec2PerProvider if karpenter => stores
            .node_classes
            .as_ref()
            .and_then(|classes| {
                classes
                    .state()
                    .into_iter()
                    .find(|c| c.name_any() == cp_name)
            })
            .and_then(|c| c.status.clone()),
        _ => None,
    };
    let (zones, zones_known) = if karpenter {
        let mut zones: Vec<String> = match options.node_class {
            NodeClassChoice::Ec2PerProvider => class_status
                .as_ref()
                .map(|s| s.subnets.iter().map(|s| s.zone.clone()).collect())
                .unwrap_or_default(),
            NodeClassChoice::Shared { zones, .. } => zones.clone(),
        };
        zones.sort();
        zones.dedup();
        let known = !zones.is_empty();
        (zones, known)
    } else {
        (Vec::new(), true)
    };

    let mut versions = BTreeMap::new();
    let mut invalid = Vec::new();
    let mut version_views = Vec::new();
    let functions = stores.functions.state();
    let functions = Functions::new(&functions);
    for version in attached_versions(stores, &cp_name) {
        let view = match version_view(&version, &functions) {
            Err(Skip::Gone) => continue,
            Ok(view) => Ok(view),
            Err(Skip::Invalid(error)) => Err(error),
        };
        // The provider's namespace rule is reported before a rule of the configuration.
        let view = namespace_allowed(cp, version.namespace().as_deref(), stores).and(view);
        let mut view = match view {
            Ok(view) => view,
            Err(error) => {
                invalid.push(InvalidVersion { version, error });
                continue;
            }
        };
        view.wish = scaling.get(&view.key).and_then(|s| s.wish);
        versions.insert(view.key.clone(), version);
        version_views.push(view);
    }

    let shapes: BTreeMap<&str, &EeShape> = version_views
        .iter()
        .map(|v| (v.key.as_str(), &v.shape))
        .collect();
    let timeouts: BTreeMap<String, i32> = versions
        .iter()
        .map(|(k, v)| (k.clone(), v.spec.configuration.timeout))
        .collect();
    let ees: Vec<EeView> = stores
        .pods
        .state()
        .iter()
        .filter(|p| p.labels().get(CAPACITY_PROVIDER_LABEL) == Some(&cp_name))
        .map(|p| ee_view(p, &shapes, &timeouts, now))
        .collect();

    Observed {
        snapshot: Snapshot {
            capacity_provider: cp_name,
            provisioner: if karpenter {
                Provisioner::Karpenter {
                    zones,
                    max_vcpu: u32::try_from(cp.spec.scaling_config.max_v_cpu_count).unwrap_or(0),
                    requirements: cp.spec.instance_requirements.clone(),
                }
            } else {
                Provisioner::Static
            },
            nodes,
            claims,
            ees,
            versions: version_views,
            now,
            empty_claim_cooldown_seconds: options.cooldown_seconds,
            consolidation: options.consolidation,
            launch_timeout_seconds: options.launch_timeout_seconds,
            unavailable: options.unavailable.clone(),
            lifecycle: Lifecycle {
                max_lifetime_seconds: cp.spec.instance_lifecycle.max_lifetime_seconds(),
                replace_launched_before: cp.spec.instance_lifecycle.replace_launched_before(),
                current_images: class_status
                    .map(|s| s.amis.into_iter().map(|a| a.id).collect())
                    .unwrap_or_default(),
            },
        },
        versions,
        invalid,
        zones_known,
    }
}

/// Karpenter's `Launched` condition of a NodeClaim.
fn launched_condition(claim: &NodeClaim) -> Option<&Condition> {
    claim
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Launched")
}

/// Whether Karpenter launched the claim's instance.
pub fn launched(claim: &NodeClaim) -> bool {
    launched_condition(claim).is_some_and(|c| c.status == "True")
}

/// What Karpenter said of a launch not done: `Reason: message`.
fn launch_message(claim: &NodeClaim) -> Option<String> {
    launched_condition(claim)
        .filter(|c| c.status != "True")
        .map(|c| match c.message.trim() {
            "" => c.reason.clone(),
            message => format!("{}: {message}", c.reason),
        })
}

fn node_view(node: &Node) -> NodeView {
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let karpenter_holds = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|taints| {
            taints
                .iter()
                .any(|t| NOT_FOR_EES_TAINTS.contains(&t.key.as_str()))
        });
    NodeView {
        name: node.name_any(),
        zone: node
            .labels()
            .get(ZONE_LABEL)
            .cloned()
            .unwrap_or_else(|| "unknown".to_string()),
        cpu_millis: allocatable
            .get("cpu")
            .and_then(|q| quantity::cpu_millis(&q.0))
            .unwrap_or(0),
        memory_mib: allocatable
            .get("memory")
            .and_then(|q| quantity::memory_mib(&q.0))
            .unwrap_or(0),
        schedulable: ready
            && !cordoned
            && !karpenter_holds
            && node.metadata.deletion_timestamp.is_none(),
    }
}

/// CPU (millicores) and memory (MiB) a pod requests, summed over its containers.
fn pod_requests(pod: &Pod) -> (u64, u64) {
    let Some(spec) = &pod.spec else { return (0, 0) };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter_map(|c| c.resources.as_ref().and_then(|r| r.requests.as_ref()))
        .fold((0, 0), |(cpu, memory), requests| {
            (
                cpu + requests
                    .get("cpu")
                    .and_then(|q| quantity::cpu_millis(&q.0))
                    .unwrap_or(0),
                memory
                    + requests
                        .get("memory")
                        .and_then(|q| quantity::memory_mib(&q.0))
                        .unwrap_or(0),
            )
        })
}

fn ee_view(
    pod: &Pod,
    shapes: &BTreeMap<&str, &EeShape>,
    timeouts: &BTreeMap<String, i32>,
    now: i64,
) -> EeView {
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.kind == "FunctionVersion")
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let version_key = key(pod.namespace().as_deref(), &owner);
    let (cpu_millis, memory_mib) = match shapes.get(version_key.as_str()) {
        Some(shape) => {
            let (cpu, memory) = lmi_crds::catalog::ee_pod_resources(shape);
            (u64::from(cpu), memory)
        }
        None => pod_requests(pod),
    };
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let init_failure = if ready {
        None
    } else {
        init_failure(pod, timeouts.get(&version_key).copied().unwrap_or(3), now)
    };
    EeView {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        version_key,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        cpu_millis,
        memory_mib,
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        finished: phase == "Failed" || phase == "Succeeded",
        init_failure,
        created_at: created_at(&pod.metadata),
    }
}

/// An EE that never became ready: its function container keeps exiting (the runtime failed to
/// initialize), or it has not asked for work within the init timeout.
fn init_failure(pod: &Pod, timeout: i32, now: i64) -> Option<InitFailure> {
    let status = pod.status.as_ref()?;
    let function = status
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "function");
    if let Some(function) = function {
        // A Secret or ConfigMap key of `environment.valueFrom` that is missing: the kubelet never
        // starts the function, so say so now rather than after the init timeout. The kubelet's
        // message names the object and key, never a value.
        if let Some(waiting) = function
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .filter(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
        {
            return Some(InitFailure {
                reason_code: "InvalidConfiguration",
                message: waiting
                    .message
                    .clone()
                    .unwrap_or_else(|| "the function container cannot be configured".to_string()),
            });
        }
        let terminated = function
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .or_else(|| {
                function
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.clone())
            });
        if let Some(t) = terminated.filter(|t| t.exit_code != 0 && function.restart_count >= 1) {
            let message = t.message.filter(|m| !m.is_empty()).unwrap_or_else(|| {
                format!(
                    "the runtime exited with code {} before it was ready",
                    t.exit_code
                )
            });
            return Some(InitFailure {
                reason_code: "FunctionError.RuntimeInitError",
                message,
            });
        }
    }
    let started = status.start_time.as_ref()?.0.as_second();
    let limit = i64::from(init_timeout_seconds(timeout));
    (now - started > limit).then(|| InitFailure {
        reason_code: "FunctionError.InitTimeout",
        message: format!("the runtime did not ask for work within {limit} s"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node Karpenter has not registered (or drains) takes no EE: one bound there would be
    /// evicted by the NoExecute taint, or lost with the node.
    #[test]
    fn a_node_karpenter_holds_is_not_schedulable() {
        let node = |taint: Option<&str>| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n", "labels": {"topology.kubernetes.io/zone": "z"}},
                "spec": {"taints": taint.map(|key| vec![serde_json::json!(
                    {"key": key, "effect": "NoExecute"})]).unwrap_or_default()},
                "status": {
                    "allocatable": {"cpu": "2", "memory": "4Gi"},
                    "conditions": [{"type": "Ready", "status": "True"}]
                }
            }))
            .unwrap()
        };
        assert!(node_view(&node(None)).schedulable);
        assert!(!node_view(&node(Some("karpenter.sh/unregistered"))).schedulable);
        assert!(!node_view(&node(Some("karpenter.sh/disrupted"))).schedulable);
        assert!(node_view(&node(Some("lmi.dev/capacity-provider"))).schedulable);
    }

    #[test]
    fn a_missing_secret_fails_the_ee_at_once_with_the_kubelets_message() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "f-v1-ee-0"},
            "status": {
                "startTime": "2026-01-01T00:00:00Z",
                "containerStatuses": [{
                    "name": "function", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "CreateContainerConfigError",
                        "message": "secret \"db\" not found"}}
                }]
            }
        }))
        .unwrap();
        let failure = init_failure(&pod, 3, 1).unwrap();
        assert_eq!(failure.reason_code, "InvalidConfiguration");
        assert_eq!(failure.message, "secret \"db\" not found");
    }

    #[test]
    fn versions_of_a_namespace_the_provider_does_not_select_are_not_planned() {
        let cp: CapacityProvider = serde_json::from_value(serde_json::json!({
            "apiVersion": "lmi.dev/v1alpha1", "kind": "CapacityProvider",
            "metadata": {"name": "payments"},
            "spec": {
                "provisioning": {"mode": "Static", "nodeSelector": {"pool": "p"}},
                "namespaceSelector": {"matchLabels": {"team": "payments"}}
            }
        }))
        .unwrap();
        let team = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        assert_eq!(namespace_rule(&cp, "pay", &team), Ok(()));
        let refused = namespace_rule(&cp, "sandbox", &BTreeMap::new()).unwrap_err();
        assert_eq!(refused.reason_code(), "NamespaceNotAllowed");
        assert_eq!(
            refused.to_string(),
            "capacity provider payments does not allow functions in namespace sandbox (see its spec.namespaceSelector)"
        );
    }
}

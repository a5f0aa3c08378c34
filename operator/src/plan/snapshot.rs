//! What the planner sees: a plain-data view of one capacity provider, built by the observer from
//! the reflector stores.

use lmi_crds::State;
use lmi_crds::capacity_provider::InstanceRequirements;
use lmi_crds::rules::{EeShape, ScalingBounds};

use super::consolidation_times::ConsolidationTimes;

/// A node of the capacity provider.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub zone: String,
    /// Allocatable CPU (millicores) and memory (MiB).
    pub cpu_millis: u64,
    pub memory_mib: u64,
    /// Ready, not cordoned, not being deleted.
    pub schedulable: bool,
}

/// A NodeClaim the operator created (Karpenter mode).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimView {
    pub name: String,
    pub instance_type: String,
    pub zone: String,
    /// The node it became, once registered.
    pub node_name: Option<String>,
    /// Unix seconds since which the claim's node holds no EE (the operator's annotation).
    pub empty_since: Option<i64>,
    /// Unix seconds since which the operator moves the claim's EEs away to remove it
    /// (consolidation; the operator's annotation).
    pub consolidating_since: Option<i64>,
    /// Unix seconds since which the operator moves the claim's EEs away to replace it (it is
    /// due: too old, out of date, or asked for; the operator's annotation).
    pub replacing_since: Option<i64>,
    /// Unix seconds it was created; unknown counts as new (never consolidated or replaced).
    pub created_at: Option<i64>,
    /// The machine image Karpenter launched it with, once known.
    pub image_id: Option<String>,
    pub deleting: bool,
    /// Karpenter launched its instance (condition `Launched=True`).
    pub launched: bool,
    /// What Karpenter said of the launch so far (the `Launched` condition's reason and message).
    pub launch_message: Option<String>,
}

/// An instance type in a zone that recently failed to launch, with why: the planner avoids it
/// until the operator forgets it.
pub type UnavailableOfferings = std::collections::BTreeMap<(String, String), String>;

/// Why an EE failed to initialize (from its containers' state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFailure {
    /// Lambda's reason code, e.g. `FunctionError.RuntimeInitError`.
    pub reason_code: &'static str,
    pub message: String,
}

/// An EE pod.
#[derive(Debug, Clone, PartialEq)]
pub struct EeView {
    pub namespace: String,
    pub name: String,
    /// `namespace/name` of its FunctionVersion.
    pub version_key: String,
    pub node: Option<String>,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub ready: bool,
    pub terminating: bool,
    /// Ended (phase Failed or Succeeded): to be replaced.
    pub finished: bool,
    pub init_failure: Option<InitFailure>,
    /// Unix seconds the pod was created; unknown counts as new.
    pub created_at: Option<i64>,
}

/// A function version placed on this capacity provider.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionView {
    /// `namespace/name`.
    pub key: String,
    /// The prefix of its EE pod names (`<version object name>-ee-`).
    pub pod_prefix: String,
    pub shape: EeShape,
    pub bounds: ScalingBounds,
    /// The autoscaler's wish, if it has one.
    pub wish: Option<u32>,
    pub previous_state: Option<State>,
}

/// When instances are replaced (Karpenter mode), from the provider's `instanceLifecycle` and its
/// node class.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lifecycle {
    /// Instances older than this are replaced; `None`: never for their age.
    pub max_lifetime_seconds: Option<i64>,
    /// Instances launched before these unix seconds are replaced, once the time has come.
    pub replace_launched_before: Option<i64>,
    /// The machine images the node class resolves now; an instance on another one is out of
    /// date. Empty: not known (a node class without images, such as kwok's), nothing is.
    pub current_images: Vec<String>,
}

/// How the capacity provider gets nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum Provisioner {
    /// Launches NodeClaims in `zones` (the subnets' zones), within `max_vcpu`.
    Karpenter {
        zones: Vec<String>,
        max_vcpu: u32,
        requirements: InstanceRequirements,
    },
    /// Uses the nodes it has.
    Static,
}

/// Everything the planner needs about one capacity provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub capacity_provider: String,
    pub provisioner: Provisioner,
    pub nodes: Vec<NodeView>,
    pub claims: Vec<ClaimView>,
    pub ees: Vec<EeView>,
    pub versions: Vec<VersionView>,
    /// Unix seconds now, and how long an empty NodeClaim is kept.
    pub now: i64,
    pub empty_claim_cooldown_seconds: i64,
    /// When consolidation may act (Karpenter mode).
    pub consolidation: ConsolidationTimes,
    /// A NodeClaim not launched this many seconds after its creation has failed to launch.
    pub launch_timeout_seconds: i64,
    /// Offerings (instance type, zone) that failed to launch recently.
    pub unavailable: UnavailableOfferings,
    /// When instances are replaced.
    pub lifecycle: Lifecycle,
}

//! What the capacity plan says should change: the planner's output, as plain data the
//! controllers (and the simulator) apply. Kept apart from the planning itself so that placement,
//! consolidation and the version state all build on it without depending on each other.

use std::collections::BTreeMap;

use super::snapshot::InitFailure;

/// A new EE pod, bound to `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEe {
    pub version_key: String,
    pub name: String,
    pub node: String,
}

/// A NodeClaim to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClaim {
    pub name: String,
    pub instance_type: String,
    pub zone: String,
    pub vcpu: u32,
}

/// An existing EE pod, by namespace and name (one to delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EeRef {
    pub namespace: String,
    pub name: String,
}

/// A change of one of a NodeClaim's unix-seconds marks (empty since, consolidating since): set
/// to `since`, or cleared (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMark {
    pub claim: String,
    pub since: Option<i64>,
}

/// Why some of a version's EEs have nowhere to go yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Instances are launching for them.
    Launching,
    /// More instances would pass the capacity provider's `maxVCpuCount`.
    VcpuLimitExceeded { limit: u32 },
    /// No node has room and none can be launched (Static mode, or no instance type fits).
    InsufficientCapacity(String),
    /// Karpenter has not resolved the subnets' zones yet, so nothing can be launched yet.
    ZonesUnknown,
    /// Instances are launching for them, of another type or zone than the best one, which
    /// failed to launch (the message says which and why).
    LaunchFailed(String),
}

/// A NodeClaim that Karpenter did not launch within the launch timeout: it is deleted and its
/// offering avoided for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedLaunch {
    pub claim: String,
    pub instance_type: String,
    pub zone: String,
    /// Karpenter's reason and message, or that it said nothing.
    pub message: String,
}

/// The outcome for one version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionPlan {
    pub desired: u32,
    /// EEs that exist and are not going away.
    pub live: u32,
    pub ready: u32,
    /// EEs that could not be bound to a node in this plan.
    pub unplaced: u32,
    pub waiting: Option<Waiting>,
    pub init_failure: Option<InitFailure>,
}

/// Everything that should change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CapacityPlan {
    pub create_ees: Vec<NewEe>,
    pub delete_ees: Vec<EeRef>,
    pub create_claims: Vec<NewClaim>,
    pub delete_claims: Vec<String>,
    /// NodeClaims that failed to launch (also in `delete_claims`).
    pub failed_launches: Vec<FailedLaunch>,
    /// NodeClaims whose empty-since mark changes.
    pub mark_claims: Vec<ClaimMark>,
    /// NodeClaims whose consolidating-since mark changes: set (its EEs move away), or cleared
    /// (the move is called off). Applied before the EEs are created.
    pub consolidate_claims: Vec<ClaimMark>,
    /// EEs started to replace EEs of an instance being consolidated (for the log and events).
    pub moves: Vec<Move>,
    /// Instances due for replacement whose EEs start moving away now (their mark is set).
    pub replacements: Vec<Replacement>,
    /// Instances due for replacement, those being replaced included.
    pub instances_due: u32,
    pub versions: BTreeMap<String, VersionPlan>,
    pub vcpu_allocated: u32,
    pub instance_count: u32,
}

/// An EE to move: `replacement` starts on `to` (a node), then `from` (an EE) drains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub version_key: String,
    pub from: String,
    pub replacement: String,
    pub to: String,
}

/// An instance due for replacement, marked in this plan: its EEs move away, then it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub claim: String,
    /// Why it is due, as a sentence about the instance ("it has run ...").
    pub reason: String,
}

impl EeRef {
    /// The EE `name` in `namespace`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl ClaimMark {
    /// Sets the mark of `claim` to `since` (`Some`), or clears it (`None`).
    pub fn new(claim: &str, since: Option<i64>) -> Self {
        Self {
            claim: claim.to_string(),
            since,
        }
    }
}

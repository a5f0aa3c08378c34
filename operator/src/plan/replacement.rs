//! Patching by replacement (Karpenter mode). LMI keeps its instances patched by replacing them:
//! an instance is due once it is older than the provider's maximum lifetime, when its machine
//! image is no longer one its node class resolves (a new AMI was published), or when it was
//! launched before a time the user asked for.
//!
//! A due instance is marked (`replacing_since` on its NodeClaim) and from then on it is left the
//! way a consolidated one is: it takes no new EEs, its EEs do not count towards the desired ones
//! (so placement starts replacements on other instances, launching new ones when none has room),
//! and each old EE drains only once enough replacements are Ready. Emptied, it is removed at once.
//! Unlike a consolidation, a replacement is never called off: a scale-up that needs more room
//! launches it, and an instance that must be patched still must be.
//!
//! One instance per zone at a time, the oldest first: the other zones keep serving untouched, and
//! a version's zone spread holds because its replacements go where its EEs were missing.
//! Karpenter's own expiry (`expireAfter`) is not used: it deletes the instance with its EEs on it,
//! where this makes the new EEs Ready first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use lmi_crds::catalog::Catalog;

use super::capacity_plan::{CapacityPlan, Replacement};
use super::snapshot::{ClaimView, Provisioner, Snapshot};

/// Why an instance is due for replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Older than the maximum lifetime.
    Lifetime { age_seconds: i64, max_seconds: i64 },
    /// Launched before the time the provider asks for.
    Requested { before: i64 },
    /// Its image is not one the node class resolves now.
    Image { image: String },
}

impl fmt::Display for Due {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Due::Lifetime {
                age_seconds,
                max_seconds,
            } => write!(
                f,
                "it has run {age_seconds} s, longer than the maximum instance lifetime of {max_seconds} s"
            ),
            Due::Requested { before } => write!(
                f,
                "it was launched before {}, as instanceLifecycle.replaceInstancesLaunchedBefore asks",
                k8s_openapi::jiff::Timestamp::from_second(*before)
                    .map_or_else(|_| before.to_string(), |t| t.to_string())
            ),
            Due::Image { image } => write!(
                f,
                "its image {image} is out of date (the node class resolves other images now)"
            ),
        }
    }
}

/// Why `claim` is due for replacement, if it is. Unknown ages and images are never due.
pub fn due(snapshot: &Snapshot, claim: &ClaimView) -> Option<Due> {
    let lifecycle = &snapshot.lifecycle;
    if let (Some(created), Some(before)) = (claim.created_at, lifecycle.replace_launched_before) {
        // A time still to come takes effect when it comes; instances launched after it are new.
        if created < before && before <= snapshot.now {
            return Some(Due::Requested { before });
        }
    }
    if let Some(image) = &claim.image_id
        && !lifecycle.current_images.is_empty()
        && !lifecycle.current_images.contains(image)
    {
        return Some(Due::Image {
            image: image.clone(),
        });
    }
    let (created, max) = (claim.created_at?, lifecycle.max_lifetime_seconds?);
    let age = snapshot.now - created;
    (age >= max).then_some(Due::Lifetime {
        age_seconds: age,
        max_seconds: max,
    })
}

/// Claims being replaced (none in Static mode: its nodes are the platform's).
fn replacing_claims(snapshot: &Snapshot) -> impl Iterator<Item = &ClaimView> {
    let karpenter = matches!(snapshot.provisioner, Provisioner::Karpenter { .. });
    snapshot
        .claims
        .iter()
        .filter(move |c| karpenter && !c.deleting && c.replacing_since.is_some())
}

/// Nodes of the instances being replaced.
pub(super) fn replacing_nodes(snapshot: &Snapshot) -> BTreeSet<String> {
    replacing_claims(snapshot)
        .filter_map(|c| c.node_name.clone())
        .collect()
}

/// vCPUs that launches may add past `maxVCpuCount`: those of the instances being replaced, which
/// go once their EEs have moved. Without it a provider at its ceiling could never be patched.
pub(super) fn vcpu_allowance(snapshot: &Snapshot, catalog: &Catalog) -> u32 {
    replacing_claims(snapshot)
        .filter_map(|c| catalog.get(&c.instance_type))
        .map(|t| t.vcpu)
        .sum()
}

/// Marks, in each zone where no instance is being replaced, the oldest due instance, and counts
/// every due one (`plan.instances_due`). Only registered instances that are not already leaving
/// (consolidation) are marked.
pub(super) fn start(snapshot: &Snapshot, plan: &mut CapacityPlan) {
    if !matches!(snapshot.provisioner, Provisioner::Karpenter { .. }) {
        return;
    }
    let busy_zones: BTreeSet<&str> = replacing_claims(snapshot)
        .map(|c| c.zone.as_str())
        .collect();
    let registered = |c: &ClaimView| {
        c.node_name
            .as_ref()
            .is_some_and(|n| snapshot.nodes.iter().any(|node| &node.name == n))
    };
    let mut oldest: BTreeMap<&str, (&ClaimView, Due)> = BTreeMap::new();
    plan.instances_due = 0;
    for claim in snapshot
        .claims
        .iter()
        .filter(|c| !c.deleting && !plan.delete_claims.contains(&c.name))
    {
        let Some(why) = due(snapshot, claim) else {
            continue;
        };
        plan.instances_due += 1;
        let markable = claim.replacing_since.is_none()
            && claim.consolidating_since.is_none()
            && registered(claim)
            && !busy_zones.contains(claim.zone.as_str());
        if !markable {
            continue;
        }
        let older = oldest
            .get(claim.zone.as_str())
            .is_none_or(|(o, _)| (claim.created_at, &claim.name) < (o.created_at, &o.name));
        if older {
            oldest.insert(claim.zone.as_str(), (claim, why));
        }
    }
    for (claim, why) in oldest.into_values() {
        plan.replacements.push(Replacement {
            claim: claim.name.clone(),
            reason: why.to_string(),
        });
    }
}

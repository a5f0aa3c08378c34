//! Names for the EEs and NodeClaims a plan creates. They are deterministic (the lowest ordinal
//! not in use), so a restarted operator that plans again finds what it created before rather
//! than creating it twice.

use std::collections::BTreeSet;

use super::capacity_plan::CapacityPlan;
use super::snapshot::{Snapshot, VersionView};

/// EE names of `version` not used by any pod, nor by an EE `plan` creates.
pub(super) fn fresh_ee_names(
    snapshot: &Snapshot,
    version: &VersionView,
    plan: &CapacityPlan,
) -> impl Iterator<Item = String> + use<> {
    let used: BTreeSet<String> = snapshot
        .ees
        .iter()
        .filter(|e| e.version_key == version.key)
        .map(|e| e.name.clone())
        .chain(
            plan.create_ees
                .iter()
                .filter(|e| e.version_key == version.key)
                .map(|e| e.name.clone()),
        )
        .collect();
    let prefix = version.pod_prefix.clone();
    (0u32..)
        .map(move |i| format!("{prefix}{i}"))
        .filter(move |n| !used.contains(n))
}

/// A NodeClaim name in `zone` not in `taken`.
pub(super) fn fresh_claim_name(
    snapshot: &Snapshot,
    zone: &str,
    taken: &BTreeSet<String>,
) -> String {
    let prefix = format!("{}-{zone}-", snapshot.capacity_provider);
    (0u32..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| format!("{prefix}x"))
}

//! Consolidation (Karpenter mode only): when the EEs of an instance fit into the free room of the
//! other instances of its zone, they move there and the instance is removed.
//!
//! A move never lowers a version's ready EEs below its desired count: the replacement EE starts
//! first, and the old one drains only once enough replacements are Ready. The instance being
//! consolidated is marked on its NodeClaim (`consolidating_since`), so the plan stays a function
//! of what it observes: a marked instance takes no new EEs, its EEs do not count towards the
//! desired ones (so they are replaced elsewhere), and they go as their replacements become Ready.
//! Once empty, it is removed after the usual empty-instance cool-down.
//!
//! Against churn: an instance is consolidated only after `MIN_INSTANCE_AGE_SECONDS`, only while
//! every version on it is settled (at its desired count, all Ready, none starting or draining, and
//! no EE started for `SETTLE_SECONDS`, so not right after a scale-up), and only into room in its
//! own zone (the versions' zone spread stays as it is). One wave of moves at a time, at most
//! `MAX_MOVES` EEs. Static-mode providers use nodes they do not own: nothing moves there.

use std::collections::BTreeSet;

use super::capacity::{CapacityPlan, Move, NewEe, Slot, best_slot, fresh_ee_names};
use super::snapshot::{ClaimView, EeView, Provisioner, Snapshot};

/// An instance younger than this is not consolidated: it was launched for a scale-up whose EEs
/// (and the room left for the next one) are still coming.
pub const MIN_INSTANCE_AGE_SECONDS: i64 = 600;

/// A version that started an EE within this is still scaling (or moving): its EEs stay put. Longer
/// than the autoscaler's reaction time (about 80 s) and its stabilization window (30 s).
pub const SETTLE_SECONDS: i64 = 120;

/// The most EEs one wave of moves starts (each needs a replacement starting beside it).
pub const MAX_MOVES: usize = 8;

/// A consolidation whose EEs are still there after this is called off (a replacement that never
/// becomes Ready must not keep the instance, and every later consolidation, waiting).
pub const MOVE_TIMEOUT_SECONDS: i64 = 600;

/// Nodes of the instances being consolidated (none in Static mode).
pub(super) fn leaving_nodes(snapshot: &Snapshot) -> BTreeSet<String> {
    if matches!(snapshot.provisioner, Provisioner::Static) {
        return BTreeSet::new();
    }
    marked_claims(snapshot)
        .filter_map(|c| c.node_name.clone())
        .collect()
}

fn marked_claims(snapshot: &Snapshot) -> impl Iterator<Item = &ClaimView> {
    snapshot
        .claims
        .iter()
        .filter(|c| !c.deleting && c.consolidating_since.is_some())
}

/// EEs that hold a node and are not going away.
fn is_live(ee: &EeView) -> bool {
    !ee.terminating && !ee.finished
}

fn live_ees_on<'a>(snapshot: &'a Snapshot, node: &'a str) -> impl Iterator<Item = &'a EeView> {
    snapshot
        .ees
        .iter()
        .filter(move |e| is_live(e) && e.node.as_deref() == Some(node))
}

/// Stops every consolidation: a scale-up needs the room.
pub(super) fn call_off(snapshot: &Snapshot, plan: &mut CapacityPlan) {
    for claim in marked_claims(snapshot) {
        plan.consolidate_claims.push((claim.name.clone(), None));
    }
}

/// Calls off consolidations whose EEs are still there after `MOVE_TIMEOUT_SECONDS`.
pub(super) fn abandon_stuck(snapshot: &Snapshot, plan: &mut CapacityPlan) {
    for claim in marked_claims(snapshot) {
        let since = claim.consolidating_since.unwrap_or(snapshot.now);
        let occupied = claim
            .node_name
            .as_deref()
            .is_some_and(|n| live_ees_on(snapshot, n).next().is_some());
        if occupied && snapshot.now - since >= MOVE_TIMEOUT_SECONDS {
            plan.consolidate_claims.push((claim.name.clone(), None));
        }
    }
}

/// Deletes the `moving` EEs of a version (on instances being consolidated) that are no longer
/// needed: those not Ready, and Ready ones as far as `ready_staying` EEs elsewhere already reach
/// `desired`. Returns how many stay for now.
pub(super) fn drain_moved(
    moving: &[&EeView],
    ready_staying: usize,
    desired: usize,
    plan: &mut CapacityPlan,
) -> usize {
    let mut keep = desired.saturating_sub(ready_staying);
    let mut kept = 0;
    for ee in moving {
        if ee.ready && keep > 0 {
            keep -= 1;
            kept += 1;
        } else {
            plan.delete_ees
                .push((ee.namespace.clone(), ee.name.clone()));
        }
    }
    kept
}

/// Whether a new wave of moves may start: Karpenter mode, nothing waits for room, and the last
/// wave's EEs have left.
pub(super) fn may_start(
    snapshot: &Snapshot,
    leaving: &BTreeSet<String>,
    plan: &CapacityPlan,
) -> bool {
    let karpenter = matches!(snapshot.provisioner, Provisioner::Karpenter { .. });
    let waiting = !plan.create_claims.is_empty() || plan.versions.values().any(|v| v.unplaced > 0);
    let in_flight = leaving
        .iter()
        .any(|n| live_ees_on(snapshot, n).next().is_some());
    karpenter && !waiting && !in_flight
}

/// Whether the EEs of version `key` may move: it is at its desired count with all of them Ready,
/// none starts or drains, it did not start one for `SETTLE_SECONDS`, and this plan changes none.
fn settled(snapshot: &Snapshot, plan: &CapacityPlan, key: &str) -> bool {
    let Some(outcome) = plan.versions.get(key) else {
        return false;
    };
    let at_desired = outcome.live == outcome.desired
        && outcome.ready == outcome.desired
        && outcome.unplaced == 0;
    let mine = || snapshot.ees.iter().filter(|e| e.version_key == key);
    let quiet = mine().all(|e| {
        is_live(e)
            && e.ready
            && e.created_at
                .is_some_and(|t| snapshot.now - t >= SETTLE_SECONDS)
    });
    let untouched = !plan.create_ees.iter().any(|e| e.version_key == key)
        && !plan
            .delete_ees
            .iter()
            .any(|(ns, name)| mine().any(|e| &e.namespace == ns && &e.name == name));
    at_desired && quiet && untouched
}

/// An instance whose EEs could move away.
struct Candidate<'a> {
    claim: &'a ClaimView,
    node: &'a str,
    zone: &'a str,
    ees: Vec<&'a EeView>,
    price: f64,
}

/// Instances old enough, holding EEs of settled versions only, and taking none in this plan;
/// the emptiest first (fewest EEs to move), then the dearest (most saved).
fn candidates<'a>(snapshot: &'a Snapshot, plan: &CapacityPlan) -> Vec<Candidate<'a>> {
    let catalog = lmi_crds::catalog::Catalog::builtin();
    let mut found: Vec<Candidate<'a>> = snapshot
        .claims
        .iter()
        .filter(|c| !c.deleting && c.consolidating_since.is_none() && c.empty_since.is_none())
        .filter(|c| {
            c.created_at
                .is_some_and(|t| snapshot.now - t >= MIN_INSTANCE_AGE_SECONDS)
        })
        .filter_map(|claim| {
            let node = snapshot
                .nodes
                .iter()
                .find(|n| n.schedulable && Some(&n.name) == claim.node_name.as_ref())?;
            let on_node: Vec<&EeView> = snapshot
                .ees
                .iter()
                .filter(|e| !e.finished && e.node.as_deref() == Some(node.name.as_str()))
                .collect();
            let movable = !on_node.is_empty()
                && on_node.iter().all(|e| is_live(e))
                && on_node
                    .iter()
                    .all(|e| settled(snapshot, plan, &e.version_key))
                && !plan.create_ees.iter().any(|e| e.node == node.name);
            movable.then(|| Candidate {
                claim,
                node: node.name.as_str(),
                zone: node.zone.as_str(),
                ees: on_node,
                price: catalog
                    .get(&claim.instance_type)
                    .map_or(0.0, |t| t.price_per_hour),
            })
        })
        .collect();
    found.sort_by(|a, b| {
        a.ees
            .len()
            .cmp(&b.ees.len())
            .then(b.price.total_cmp(&a.price))
            .then(a.claim.name.cmp(&b.claim.name))
    });
    found
}

/// Nodes that hold EEs, or take some in this plan: the only ones moves go to (moving into an
/// empty instance frees none).
fn occupied_nodes(snapshot: &Snapshot, plan: &CapacityPlan) -> BTreeSet<String> {
    snapshot
        .ees
        .iter()
        .filter(|e| is_live(e))
        .filter_map(|e| e.node.clone())
        .chain(plan.create_ees.iter().map(|e| e.node.clone()))
        .collect()
}

/// Where each EE of `candidate` would go (indices into `slots`): the fullest room in its zone,
/// on occupied nodes other than itself and the instances leaving in this wave. `None` when one
/// does not fit.
fn destinations(
    candidate: &Candidate<'_>,
    slots: &[Slot],
    occupied: &BTreeSet<String>,
    leaving: &BTreeSet<String>,
) -> Option<Vec<usize>> {
    let usable = |slot: &Slot| {
        slot.real
            && slot.name != candidate.node
            && occupied.contains(&slot.name)
            && !leaving.contains(&slot.name)
    };
    // Only destinations keep their room in this copy; the others fit nothing.
    let mut room: Vec<Slot> = slots
        .iter()
        .map(|s| Slot {
            free_cpu: if usable(s) { s.free_cpu } else { -1 },
            free_memory: if usable(s) { s.free_memory } else { -1 },
            ..s.clone()
        })
        .collect();
    candidate
        .ees
        .iter()
        .map(|ee| {
            let (cpu, memory) = ee_resources(ee);
            let index = best_slot(&room, candidate.zone, cpu, memory)?;
            room[index].take(cpu, memory);
            Some(index)
        })
        .collect()
}

fn ee_resources(ee: &EeView) -> (i64, i64) {
    (
        i64::try_from(ee.cpu_millis).unwrap_or(i64::MAX),
        i64::try_from(ee.memory_mib).unwrap_or(i64::MAX),
    )
}

/// Starts one wave of moves: instances, emptiest first, whose EEs all fit into room on the other
/// occupied instances of their zone, up to `MAX_MOVES` EEs. Each gets its replacements created
/// now and its mark set; the old EEs drain in later plans, once the replacements are Ready.
pub(super) fn start_moves(snapshot: &Snapshot, slots: &mut [Slot], plan: &mut CapacityPlan) {
    let occupied = occupied_nodes(snapshot, plan);
    let mut leaving: BTreeSet<String> = BTreeSet::new();
    let mut receiving: BTreeSet<String> = BTreeSet::new();
    let mut moved = 0;
    for candidate in candidates(snapshot, plan) {
        if moved + candidate.ees.len() > MAX_MOVES || receiving.contains(candidate.node) {
            continue;
        }
        let Some(chosen) = destinations(&candidate, slots, &occupied, &leaving) else {
            continue;
        };
        for (ee, index) in candidate.ees.iter().zip(chosen) {
            let (cpu, memory) = ee_resources(ee);
            slots[index].take(cpu, memory);
            let to = slots[index].name.clone();
            receiving.insert(to.clone());
            let Some(version) = snapshot.versions.iter().find(|v| v.key == ee.version_key) else {
                continue;
            };
            let Some(name) = fresh_ee_names(snapshot, version, plan).next() else {
                continue;
            };
            plan.create_ees.push(NewEe {
                version_key: version.key.clone(),
                name: name.clone(),
                node: to.clone(),
            });
            plan.moves.push(Move {
                version_key: version.key.clone(),
                from: ee.name.clone(),
                replacement: name,
                to,
            });
        }
        leaving.insert(candidate.node.to_string());
        moved += candidate.ees.len();
        plan.consolidate_claims
            .push((candidate.claim.name.clone(), Some(snapshot.now)));
    }
}

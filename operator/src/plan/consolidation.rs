//! Consolidation (Karpenter mode only): when the EEs of an instance fit into the free room of the
//! other instances of its zone, they move there and the instance is removed; when they fit
//! nowhere and a smaller type would hold them for at most `RIGHT_SIZE_SHARE` of the price, that
//! smaller instance is launched first and they move into it.
//!
//! A move never lowers a version's ready EEs below its desired count: the replacement EE starts
//! first, and the old one drains only once enough replacements are Ready. The instance being
//! consolidated is marked on its NodeClaim (`consolidating_since`), so the plan stays a function
//! of what it observes: a marked instance takes no new EEs, its EEs do not count towards the
//! desired ones (so they are replaced elsewhere), and they go as their replacements become Ready.
//! Once empty, it is removed at once (see [`empty_grace_seconds`]). A scale-up that needs its room
//! calls the consolidation off.
//!
//! Against churn: an instance is consolidated only after a minimum age, only while every version
//! on it is settled (at its desired count, all Ready, none starting or draining, and no EE started
//! for the settle time, so not right after a scale-up), and only into room in its own zone (the
//! versions' zone spread stays as it is). One wave of moves at a time, at most `MAX_MOVES` EEs.
//! Static-mode providers use nodes they do not own: nothing moves there. The times come in the
//! snapshot ([`ConsolidationTimes`](super::consolidation_times::ConsolidationTimes), operator
//! settings with defaults).

use std::collections::{BTreeMap, BTreeSet};

use lmi_crds::catalog::{Catalog, InstanceType, ee_pod_resources};

use super::capacity_plan::{CapacityPlan, ClaimMark, EeRef, Move, NewClaim, NewEe};
use super::fresh_names::{fresh_claim_name, fresh_ee_names};
use super::room::{Slot, best_slot};
use super::snapshot::{ClaimView, EeView, Provisioner, Snapshot};

/// The most EEs one wave of moves starts (each needs a replacement starting beside it).
pub const MAX_MOVES: usize = 8;

/// An instance is replaced by a smaller one only when that costs at most this share of it: the
/// saving must pay for the moves, and for the launch should the load turn.
pub const RIGHT_SIZE_SHARE: f64 = 0.75;

/// How long `claim` is kept once it holds no EE. An instance emptied by a scale-down keeps the
/// provider's cool-down (a scale-up soon after reuses it rather than waiting for a launch). One
/// that consolidation emptied goes at once: its EEs were moved because the other instances had
/// room for them, and while it was being emptied a scale-up that needed its room called the
/// consolidation off. Keeping it the cool-down too put the simulator's diurnal profile at
/// 1.22-1.33x the oracle's cost instead of 1.13-1.20x (seeds 1-6), for no gain in time in band.
pub(super) fn empty_grace_seconds(claim: &ClaimView, cooldown_seconds: i64) -> i64 {
    if claim.consolidating_since.is_some() || claim.replacing_since.is_some() {
        0
    } else {
        cooldown_seconds
    }
}

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
        plan.consolidate_claims
            .push(ClaimMark::new(&claim.name, None));
    }
}

/// Calls off consolidations whose EEs are still there after the move timeout.
pub(super) fn abandon_stuck(snapshot: &Snapshot, plan: &mut CapacityPlan) {
    for claim in marked_claims(snapshot) {
        let since = claim.consolidating_since.unwrap_or(snapshot.now);
        let occupied = claim
            .node_name
            .as_deref()
            .is_some_and(|n| live_ees_on(snapshot, n).next().is_some());
        if occupied && snapshot.now - since >= snapshot.consolidation.move_timeout_seconds {
            plan.consolidate_claims
                .push(ClaimMark::new(&claim.name, None));
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
            plan.delete_ees.push(EeRef::new(&ee.namespace, &ee.name));
        }
    }
    kept
}

/// Whether a new wave of moves may start: Karpenter mode, nothing waits for room, no replacement
/// starts in this plan, and the EEs of the last wave (and of instances being replaced) have left.
pub(super) fn may_start(
    snapshot: &Snapshot,
    leaving: &BTreeSet<String>,
    plan: &CapacityPlan,
) -> bool {
    let karpenter = matches!(snapshot.provisioner, Provisioner::Karpenter { .. });
    let waiting = !plan.create_claims.is_empty()
        || plan.versions.values().any(|v| v.unplaced > 0)
        || !plan.replacements.is_empty();
    let in_flight = leaving
        .iter()
        .any(|n| live_ees_on(snapshot, n).next().is_some());
    karpenter && !waiting && !in_flight
}

/// Whether the EEs of version `key` may move: it is at its desired count with all of them Ready,
/// none starts or drains, it did not start one for the settle time, and this plan changes none.
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
                .is_some_and(|t| snapshot.now - t >= snapshot.consolidation.settle_seconds)
    });
    let untouched = !plan.create_ees.iter().any(|e| e.version_key == key)
        && !plan
            .delete_ees
            .iter()
            .any(|d| mine().any(|e| e.namespace == d.namespace && e.name == d.name));
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
fn candidates<'a>(
    snapshot: &'a Snapshot,
    catalog: &Catalog,
    plan: &CapacityPlan,
) -> Vec<Candidate<'a>> {
    let mut found: Vec<Candidate<'a>> = snapshot
        .claims
        .iter()
        .filter(|c| {
            !c.deleting
                && c.consolidating_since.is_none()
                && c.replacing_since.is_none()
                && c.empty_since.is_none()
        })
        .filter(|c| {
            c.created_at.is_some_and(|t| {
                snapshot.now - t >= snapshot.consolidation.min_instance_age_seconds
            })
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

/// Nodes that hold EEs, or take some in this plan.
fn occupied_nodes(snapshot: &Snapshot, plan: &CapacityPlan) -> BTreeSet<String> {
    snapshot
        .ees
        .iter()
        .filter(|e| is_live(e))
        .filter_map(|e| e.node.clone())
        .chain(plan.create_ees.iter().map(|e| e.node.clone()))
        .collect()
}

/// Price per hour of each node's instance.
fn node_prices(snapshot: &Snapshot, catalog: &Catalog) -> BTreeMap<String, f64> {
    snapshot
        .claims
        .iter()
        .filter_map(|c| {
            let price = catalog.get(&c.instance_type)?.price_per_hour;
            Some((c.node_name.clone()?, price))
        })
        .collect()
}

/// What one wave knows about the provider's nodes.
struct Wave {
    occupied: BTreeSet<String>,
    prices: BTreeMap<String, f64>,
    /// Instances whose EEs move in this wave, and those taking moved EEs.
    leaving: BTreeSet<String>,
    receiving: BTreeSet<String>,
    moved: usize,
}

/// Where each EE of `candidate` would go (indices into `slots`): the fullest room in its zone,
/// on other nodes not leaving in this wave. Occupied nodes take EEs for free; empty ones count
/// at their price, and the move must pay (the empty ones used cost less than the candidate,
/// as when a smaller instance was launched to replace it). `None` when one does not fit or
/// the move does not pay.
fn destinations(candidate: &Candidate<'_>, slots: &[Slot], wave: &Wave) -> Option<Vec<usize>> {
    let usable = |slot: &Slot| {
        slot.real && slot.name != candidate.node && !wave.leaving.contains(&slot.name)
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
    // Occupied nodes first: only when they have no room does an empty one come in.
    let mut chosen = Vec::with_capacity(candidate.ees.len());
    let mut opened: BTreeSet<usize> = BTreeSet::new();
    for ee in &candidate.ees {
        let (cpu, memory) = ee_resources(ee);
        let occupied_room: Vec<Slot> = room
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let open = wave.occupied.contains(&s.name) || opened.contains(&i);
                Slot {
                    free_cpu: if open { s.free_cpu } else { -1 },
                    ..s.clone()
                }
            })
            .collect();
        let index = best_slot(&occupied_room, candidate.zone, cpu, memory)
            .or_else(|| best_slot(&room, candidate.zone, cpu, memory))?;
        if !wave.occupied.contains(&room[index].name) {
            opened.insert(index);
        }
        room[index].take(cpu, memory);
        chosen.push(index);
    }
    let cost_of_opened: f64 = opened
        .iter()
        .map(|i| {
            wave.prices
                .get(&slots[*i].name)
                .copied()
                .unwrap_or(f64::MAX)
        })
        .sum();
    (opened.is_empty() || cost_of_opened < candidate.price).then_some(chosen)
}

fn ee_resources(ee: &EeView) -> (i64, i64) {
    (
        i64::try_from(ee.cpu_millis).unwrap_or(i64::MAX),
        i64::try_from(ee.memory_mib).unwrap_or(i64::MAX),
    )
}

/// Starts one wave of moves: instances, emptiest first, whose EEs all fit into room on the other
/// instances of their zone (see [`destinations`]), up to `MAX_MOVES` EEs. Each gets its
/// replacements created now and its mark set; the old EEs drain in later plans, once the
/// replacements are Ready. An instance whose EEs fit nowhere may get a smaller instance launched
/// to move into (see [`right_size`]).
pub(super) fn start_moves(
    snapshot: &Snapshot,
    catalog: &Catalog,
    slots: &mut [Slot],
    plan: &mut CapacityPlan,
) {
    let mut wave = Wave {
        occupied: occupied_nodes(snapshot, plan),
        prices: node_prices(snapshot, catalog),
        leaving: BTreeSet::new(),
        receiving: BTreeSet::new(),
        moved: 0,
    };
    for candidate in candidates(snapshot, catalog, plan) {
        if wave.moved + candidate.ees.len() > MAX_MOVES || wave.receiving.contains(candidate.node) {
            continue;
        }
        match destinations(&candidate, slots, &wave) {
            Some(chosen) => move_away(snapshot, &candidate, &chosen, slots, &mut wave, plan),
            None => {
                right_size(snapshot, catalog, &candidate, plan);
            }
        }
    }
    // An empty instance that takes moved EEs is not empty any more.
    plan.mark_claims.retain(|mark| {
        mark.since.is_none()
            || !snapshot.claims.iter().any(|c| {
                c.name == mark.claim
                    && c.node_name
                        .as_ref()
                        .is_some_and(|n| wave.receiving.contains(n))
            })
    });
}

/// Starts the replacements of `candidate`'s EEs on the `chosen` slots and marks it.
fn move_away(
    snapshot: &Snapshot,
    candidate: &Candidate<'_>,
    chosen: &[usize],
    slots: &mut [Slot],
    wave: &mut Wave,
    plan: &mut CapacityPlan,
) {
    for (ee, index) in candidate.ees.iter().zip(chosen) {
        let (cpu, memory) = ee_resources(ee);
        let slot = &mut slots[*index];
        slot.take(cpu, memory);
        let to = slot.name.clone();
        wave.receiving.insert(to.clone());
        wave.occupied.insert(to.clone());
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
    wave.leaving.insert(candidate.node.to_string());
    wave.moved += candidate.ees.len();
    plan.consolidate_claims
        .push(ClaimMark::new(&candidate.claim.name, Some(snapshot.now)));
}

/// Launches, in `candidate`'s zone, the cheapest permitted instance type that holds all its EEs,
/// when that costs at most `RIGHT_SIZE_SHARE` of it (an instance launched for more EEs than the
/// load now needs, alone in its zone). Once up, it is an empty instance cheaper than the
/// candidate, so the candidate's EEs move there. Not while an instance launches or an empty one
/// waits in the zone (that one is the destination, or the launch already happened).
fn right_size(
    snapshot: &Snapshot,
    catalog: &Catalog,
    candidate: &Candidate<'_>,
    plan: &mut CapacityPlan,
) -> bool {
    let Provisioner::Karpenter {
        max_vcpu,
        requirements,
        ..
    } = &snapshot.provisioner
    else {
        return false;
    };
    let launching_or_empty = snapshot.claims.iter().any(|c| {
        let up = c
            .node_name
            .as_ref()
            .is_some_and(|n| snapshot.nodes.iter().any(|node| &node.name == n));
        !c.deleting && c.zone == candidate.zone && (!up || c.empty_since.is_some())
    }) || plan.create_claims.iter().any(|c| c.zone == candidate.zone);
    if launching_or_empty {
        return false;
    }
    let room = max_vcpu.saturating_sub(plan.vcpu_allocated);
    let Some(smaller) = cheapest_type_holding(snapshot, catalog, requirements, &candidate.ees)
        .filter(|t| t.vcpu <= room && t.price_per_hour <= candidate.price * RIGHT_SIZE_SHARE)
    else {
        return false;
    };
    let taken: BTreeSet<String> = snapshot.claims.iter().map(|c| c.name.clone()).collect();
    let name = fresh_claim_name(snapshot, candidate.zone, &taken);
    plan.vcpu_allocated += smaller.vcpu;
    plan.instance_count += 1;
    plan.create_claims.push(NewClaim {
        name,
        instance_type: smaller.name.clone(),
        zone: candidate.zone.to_string(),
        vcpu: smaller.vcpu,
    });
    true
}

/// The cheapest permitted instance type (for the shape of the first EE's version) whose
/// allocatable room holds all of `ees`.
fn cheapest_type_holding<'a>(
    snapshot: &Snapshot,
    catalog: &'a Catalog,
    requirements: &lmi_crds::capacity_provider::InstanceRequirements,
    ees: &[&EeView],
) -> Option<&'a InstanceType> {
    let shape = ees
        .first()
        .and_then(|e| snapshot.versions.iter().find(|v| v.key == e.version_key))
        .map(|v| v.shape)?;
    let (cpu, memory) = ees.iter().fold((0u64, 0u64), |(c, m), e| {
        (c + e.cpu_millis, m + e.memory_mib)
    });
    let (one_cpu, _) = ee_pod_resources(&shape);
    catalog
        .select(requirements, &shape)
        .ok()?
        .into_iter()
        .map(|c| c.instance_type)
        .filter(|t| {
            let (free_cpu, free_memory) = t.allocatable();
            u64::from(free_cpu) >= cpu.max(u64::from(one_cpu)) && free_memory >= memory
        })
        .min_by(|a, b| a.price_per_hour.total_cmp(&b.price_per_hour))
}

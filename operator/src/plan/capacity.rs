//! The capacity plan of one capacity provider: how many EEs each version should have, where new
//! ones go, which go away, and which NodeClaims to launch or remove.
//!
//! Placement fills the nodes the provider has before launching new ones (most allocated node
//! first), spreads each version's EEs over zones, and counts NodeClaims still launching as
//! capacity, so that a second reconcile while instances boot launches nothing more.

use std::collections::{BTreeMap, BTreeSet};

use lmi_crds::catalog::Catalog;

use super::capacity_plan::{
    CapacityPlan, ClaimMark, EeRef, FailedLaunch, NewClaim, NewEe, VersionPlan, Waiting,
};
use super::consolidation;
use super::fresh_names::{fresh_claim_name, fresh_ee_names};
use super::replacement;
use super::room::{Slot, best_slot, resources};
use super::snapshot::{EeView, Provisioner, Snapshot, UnavailableOfferings, VersionView};

/// Plans one capacity provider.
///
/// In Karpenter mode it also consolidates (see [`consolidation`]) and replaces instances that are
/// due (see [`replacement`]): instances being consolidated or replaced take no new EEs, and their
/// EEs go once replacements elsewhere are Ready. Should a scale-up need more room than the other
/// instances have, consolidation is called off and the plan is made again with those instances'
/// room (but not the room of instances being replaced).
///
/// `catalog` prices and sizes the instance types (the controllers and the simulator pass
/// [`Catalog::builtin`]; a test may pass its own).
pub fn plan_capacity(snapshot: &Snapshot, catalog: &Catalog) -> CapacityPlan {
    let replacing = replacement::replacing_nodes(snapshot);
    let consolidating = consolidation::leaving_nodes(snapshot);
    let leaving: BTreeSet<String> = replacing.union(&consolidating).cloned().collect();
    let (mut plan, mut slots) = plan_with(snapshot, catalog, &leaving);
    if !consolidating.is_empty() && wants_more_room(&plan) {
        // Replacements go on: only the consolidations give their room back.
        let (mut plan, _) = plan_with(snapshot, catalog, &replacing);
        consolidation::call_off(snapshot, &mut plan);
        replacement::start(snapshot, &mut plan);
        return plan;
    }
    consolidation::abandon_stuck(snapshot, &mut plan);
    replacement::start(snapshot, &mut plan);
    if consolidation::may_start(snapshot, &leaving, &plan) {
        consolidation::start_moves(snapshot, catalog, &mut slots, &mut plan);
    }
    plan
}

/// Whether some version waits for room: launches, or EEs with nowhere to go.
fn wants_more_room(plan: &CapacityPlan) -> bool {
    !plan.create_claims.is_empty() || plan.versions.values().any(|v| v.unplaced > 0)
}

/// CPU millicores and MiB of memory of the EEs that find no room, per zone.
type Unmet = BTreeMap<String, (i64, i64)>;

/// The plan with the nodes in `leaving` (being consolidated) taking no new EEs, and the room
/// left on every node afterwards.
///
/// In Karpenter mode launches are planned jointly: a survey pass places every version's EEs
/// without launching and sums, per zone, what finds no room; the real pass then sizes each
/// zone's launches for all of that, not for one version's EEs. A GitOps sync creating many
/// functions at once thus gets a few larger instances (cheaper per EE) rather than one small
/// instance per version and zone, which consolidation would later have to undo.
fn plan_with(
    snapshot: &Snapshot,
    catalog: &Catalog,
    leaving: &BTreeSet<String>,
) -> (CapacityPlan, Vec<Slot>) {
    let mut unmet = Unmet::new();
    if matches!(snapshot.provisioner, Provisioner::Karpenter { .. }) {
        // The zones' unmet demand only sizes launches: when a pass without it launches nothing,
        // the joint plan would launch nothing either and is the same plan. Most reconciles (a
        // pod turning Ready, a status change) are of that kind, and skip the survey.
        let single = plan_pass(snapshot, catalog, leaving, Pass::Launch, &mut unmet);
        if single.0.create_claims.is_empty() {
            return single;
        }
        unmet.clear();
        plan_pass(snapshot, catalog, leaving, Pass::Survey, &mut unmet);
    }
    plan_pass(snapshot, catalog, leaving, Pass::Launch, &mut unmet)
}

/// What a planning pass does with an EE that finds no room in Karpenter mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Records it in the zone's unmet demand; launches nothing.
    Survey,
    /// Launches for it, sized for the zone's unmet demand still uncovered.
    Launch,
}

fn plan_pass(
    snapshot: &Snapshot,
    catalog: &Catalog,
    leaving: &BTreeSet<String>,
    pass: Pass,
    unmet: &mut Unmet,
) -> (CapacityPlan, Vec<Slot>) {
    let mut plan = CapacityPlan::default();
    // Claims that failed to launch hold no room and count for nothing: they go, and their
    // offerings are avoided with the ones that failed before.
    let failed = failed_launches(snapshot);
    let failed_names: BTreeSet<&str> = failed.iter().map(|f| f.claim.as_str()).collect();
    let mut unavailable = snapshot.unavailable.clone();
    for f in &failed {
        unavailable.insert((f.instance_type.clone(), f.zone.clone()), f.message.clone());
    }
    let mut slots = build_slots(snapshot, catalog, &failed_names);
    slots.retain(|s| !leaving.contains(&s.name));
    let mut ees_per_node: BTreeMap<&str, u32> = BTreeMap::new();
    for ee in snapshot.ees.iter().filter(|e| !e.finished) {
        if let Some(node) = &ee.node {
            *ees_per_node.entry(node.as_str()).or_default() += 1;
        }
    }
    let mut vcpu_allocated: u32 = match &snapshot.provisioner {
        Provisioner::Karpenter { .. } => snapshot
            .claims
            .iter()
            .filter(|c| !c.deleting && !failed_names.contains(c.name.as_str()))
            .filter_map(|c| catalog.get(&c.instance_type))
            .map(|t| t.vcpu)
            .sum(),
        Provisioner::Static => snapshot
            .nodes
            .iter()
            .map(|n| u32::try_from(n.cpu_millis.div_ceil(1000)).unwrap_or(u32::MAX))
            .sum(),
    };
    let mut claim_names: BTreeSet<String> =
        snapshot.claims.iter().map(|c| c.name.clone()).collect();

    let mut versions: Vec<&VersionView> = snapshot.versions.iter().collect();
    versions.sort_by(|a, b| a.key.cmp(&b.key));
    for version in versions {
        let outcome = plan_version(
            snapshot,
            catalog,
            version,
            &mut slots,
            &ees_per_node,
            leaving,
            &mut vcpu_allocated,
            &mut claim_names,
            &mut plan,
            (pass, &mut *unmet),
            &unavailable,
        );
        plan.versions.insert(version.key.clone(), outcome);
    }

    plan_claim_cleanup(snapshot, &slots, &ees_per_node, &failed_names, &mut plan);
    plan.delete_claims
        .extend(failed.iter().map(|f| f.claim.clone()));
    plan.failed_launches = failed;
    plan.vcpu_allocated = vcpu_allocated;
    plan.instance_count = match &snapshot.provisioner {
        Provisioner::Karpenter { .. } => {
            let kept = snapshot
                .claims
                .iter()
                .filter(|c| !c.deleting && !plan.delete_claims.contains(&c.name));
            u32::try_from(kept.count() + plan.create_claims.len()).unwrap_or(u32::MAX)
        }
        Provisioner::Static => u32::try_from(snapshot.nodes.len()).unwrap_or(u32::MAX),
    };
    (plan, slots)
}

/// The NodeClaims Karpenter has not launched within the launch timeout.
fn failed_launches(snapshot: &Snapshot) -> Vec<FailedLaunch> {
    snapshot
        .claims
        .iter()
        .filter(|c| !c.deleting && !c.launched)
        .filter(|c| {
            c.created_at
                .is_some_and(|t| snapshot.now - t >= snapshot.launch_timeout_seconds)
        })
        .map(|c| FailedLaunch {
            claim: c.name.clone(),
            instance_type: c.instance_type.clone(),
            zone: c.zone.clone(),
            message: format!(
                "not launched {} s after its NodeClaim was created ({})",
                snapshot.launch_timeout_seconds,
                c.launch_message
                    .as_deref()
                    .unwrap_or("Karpenter reported nothing")
            ),
        })
        .collect()
}

/// Room on every schedulable node, and on every NodeClaim whose node is not up yet (but those
/// in `failed`).
fn build_slots(snapshot: &Snapshot, catalog: &Catalog, failed: &BTreeSet<&str>) -> Vec<Slot> {
    let mut slots: Vec<Slot> = snapshot
        .nodes
        .iter()
        .filter(|n| n.schedulable)
        .map(|n| Slot {
            name: n.name.clone(),
            zone: n.zone.clone(),
            free_cpu: i64::try_from(n.cpu_millis).unwrap_or(i64::MAX),
            free_memory: i64::try_from(n.memory_mib).unwrap_or(i64::MAX),
            real: true,
            planned: 0,
        })
        .collect();
    // Every EE that has not ended holds its resources, terminating ones included.
    for ee in snapshot.ees.iter().filter(|e| !e.finished) {
        if let Some(slot) = ee
            .node
            .as_ref()
            .and_then(|n| slots.iter_mut().find(|s| &s.name == n))
        {
            slot.free_cpu -= i64::try_from(ee.cpu_millis).unwrap_or(i64::MAX);
            slot.free_memory -= i64::try_from(ee.memory_mib).unwrap_or(i64::MAX);
        }
    }
    if matches!(snapshot.provisioner, Provisioner::Karpenter { .. }) {
        let schedulable: BTreeSet<&str> = snapshot
            .nodes
            .iter()
            .filter(|n| n.schedulable)
            .map(|n| n.name.as_str())
            .collect();
        for claim in snapshot
            .claims
            .iter()
            .filter(|c| !c.deleting && !failed.contains(c.name.as_str()))
        {
            let up = claim
                .node_name
                .as_deref()
                .is_some_and(|n| schedulable.contains(n));
            if up {
                continue;
            }
            if let Some(t) = catalog.get(&claim.instance_type) {
                let (cpu, memory) = t.allocatable();
                slots.push(Slot {
                    name: claim.name.clone(),
                    zone: claim.zone.clone(),
                    free_cpu: i64::from(cpu),
                    free_memory: i64::try_from(memory).unwrap_or(i64::MAX),
                    real: false,
                    planned: 0,
                });
            }
        }
    }
    slots
}

#[allow(clippy::too_many_arguments)]
fn plan_version(
    snapshot: &Snapshot,
    catalog: &Catalog,
    version: &VersionView,
    slots: &mut Vec<Slot>,
    ees_per_node: &BTreeMap<&str, u32>,
    leaving: &BTreeSet<String>,
    vcpu_allocated: &mut u32,
    claim_names: &mut BTreeSet<String>,
    plan: &mut CapacityPlan,
    (pass, unmet): (Pass, &mut Unmet),
    unavailable: &UnavailableOfferings,
) -> VersionPlan {
    let mut outcome = VersionPlan::default();
    let mine: Vec<_> = snapshot
        .ees
        .iter()
        .filter(|e| e.version_key == version.key)
        .collect();
    // Ended pods are replaced; pods whose runtime failed to start are kept as evidence (and
    // counted) until the version is scaled down or deactivated.
    for ee in mine.iter().filter(|e| e.finished && !e.terminating) {
        plan.delete_ees.push(EeRef::new(&ee.namespace, &ee.name));
    }
    outcome.init_failure = mine.iter().find_map(|e| e.init_failure.clone());
    // EEs on instances being consolidated are not counted towards the desired EEs: they are
    // replaced elsewhere, and go once the replacements serve.
    let (mut live, moving): (Vec<&EeView>, Vec<&EeView>) = mine
        .iter()
        .filter(|e| !e.terminating && !e.finished)
        .copied()
        .partition(|e| !e.node.as_ref().is_some_and(|n| leaving.contains(n)));
    outcome.desired = if version.bounds.is_deactivated() {
        0
    } else {
        version
            .bounds
            .clamp(version.wish.unwrap_or(version.bounds.min))
    };
    let desired = usize::try_from(outcome.desired).unwrap_or(usize::MAX);

    if live.len() > desired {
        for ee in remove_surplus(snapshot, &mut live, desired, ees_per_node) {
            plan.delete_ees.push(EeRef::new(&ee.namespace, &ee.name));
        }
    }
    let ready_staying = live.iter().filter(|e| e.ready).count();
    let kept = consolidation::drain_moved(&moving, ready_staying, desired, plan);
    outcome.live = u32::try_from(live.len() + kept).unwrap_or(u32::MAX);
    outcome.ready = u32::try_from(ready_staying + kept).unwrap_or(u32::MAX);

    let need = desired.saturating_sub(live.len());
    if need == 0 {
        return outcome;
    }

    // Zone of each existing EE, to spread the new ones.
    let zone_of_node: BTreeMap<&str, &str> = snapshot
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.zone.as_str()))
        .collect();
    let mut zone_counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut zones: BTreeSet<String> = slots.iter().map(|s| s.zone.clone()).collect();
    if let Provisioner::Karpenter {
        zones: subnet_zones,
        ..
    } = &snapshot.provisioner
    {
        zones.extend(subnet_zones.iter().cloned());
    }
    for zone in &zones {
        zone_counts.insert(zone.clone(), 0);
    }
    for ee in &live {
        if let Some(zone) = ee.node.as_deref().and_then(|n| zone_of_node.get(n)) {
            *zone_counts.entry((*zone).to_string()).or_default() += 1;
        }
    }
    let mut ordinals = fresh_ee_names(snapshot, version, plan);
    let (cpu, memory) = resources(&version.shape);

    // The version's EEs before this scale-up, for the room a launch leaves for the next one. EEs
    // that only replace ones on a leaving instance (a replacement) are no scale-up: they get no
    // headroom (with it, replacing an instance launched a larger one: the simulator's spike
    // profile with a 15-minute lifetime cost 1.76 rather than 1.29 USD).
    let growing = need > kept;
    let before = if growing {
        u32::try_from(live.len()).unwrap_or(u32::MAX)
    } else {
        0
    };
    for _ in 0..need {
        let mut order: Vec<(u32, String)> =
            zone_counts.iter().map(|(z, c)| (*c, z.clone())).collect();
        order.sort();
        let Some((_, preferred)) = order.first().cloned() else {
            outcome.unplaced += 1;
            outcome.waiting = Some(match snapshot.provisioner {
                Provisioner::Karpenter { .. } => Waiting::ZonesUnknown,
                Provisioner::Static => Waiting::InsufficientCapacity(
                    "the capacity provider's node selector picks no schedulable node".to_string(),
                ),
            });
            continue;
        };
        let candidates = candidate_zones(&snapshot.provisioner, version, &order);
        let mut chosen = candidates
            .iter()
            .find_map(|zone| best_slot(slots, zone, cpu, memory));
        if chosen.is_none() {
            if let Provisioner::Karpenter {
                max_vcpu,
                requirements,
                ..
            } = &snapshot.provisioner
            {
                if pass == Pass::Survey {
                    let demand = unmet.entry(preferred.clone()).or_default();
                    demand.0 += cpu;
                    demand.1 += memory;
                    outcome.unplaced += 1;
                    *zone_counts.entry(preferred).or_default() += 1;
                    continue;
                }
                let zones = zone_counts.len();
                let in_zone = zone_counts.get(&preferred).copied().unwrap_or(0);
                let waiting_in_zone = unmet
                    .get(&preferred)
                    .map_or(0, |&(c, m)| ees_worth(c, m, cpu, memory));
                // The zone's EEs waiting for room (this version's among them), or this
                // version's own share if larger, plus room for its next scale-up.
                let wanted = zone_waiting(outcome.desired, zones, in_zone)
                    .max(waiting_in_zone)
                    .saturating_add(headroom(before, zones));
                let zones_in_order: Vec<&str> = order.iter().map(|(_, z)| z.as_str()).collect();
                let offer = Offer {
                    requirements,
                    max_vcpu: max_vcpu
                        .saturating_add(replacement::vcpu_allowance(snapshot, catalog)),
                    zones: &zones_in_order,
                    unavailable,
                };
                match launch(
                    snapshot,
                    catalog,
                    version,
                    &offer,
                    wanted,
                    vcpu_allocated,
                    claim_names,
                ) {
                    Ok((claim, avoided)) => {
                        if let Some(why) = avoided {
                            outcome.waiting = Some(Waiting::LaunchFailed(why));
                        }
                        let t = catalog.get(&claim.instance_type);
                        let (free_cpu, free_memory) = t.map_or((0, 0), |t| t.allocatable());
                        // What this instance will hold is no longer waiting in its zone.
                        if let Some(demand) = unmet.get_mut(&claim.zone) {
                            demand.0 = (demand.0 - i64::from(free_cpu)).max(0);
                            demand.1 =
                                (demand.1 - i64::try_from(free_memory).unwrap_or(i64::MAX)).max(0);
                        }
                        slots.push(Slot {
                            name: claim.name.clone(),
                            zone: claim.zone.clone(),
                            free_cpu: i64::from(free_cpu),
                            free_memory: i64::try_from(free_memory).unwrap_or(i64::MAX),
                            real: false,
                            planned: 0,
                        });
                        plan.create_claims.push(claim);
                        chosen = Some(slots.len() - 1);
                    }
                    Err(waiting) => outcome.waiting = Some(waiting),
                }
            } else {
                outcome.waiting = Some(Waiting::InsufficientCapacity(format!(
                    "no node of the capacity provider has {cpu}m CPU and {memory} MiB free"
                )));
            }
        }
        let Some(index) = chosen else {
            outcome.unplaced += 1;
            *zone_counts.entry(preferred).or_default() += 1;
            continue;
        };
        let slot = &mut slots[index];
        slot.free_cpu -= cpu;
        slot.free_memory -= memory;
        *zone_counts.entry(slot.zone.clone()).or_default() += 1;
        if slot.real {
            if let Some(name) = ordinals.next() {
                plan.create_ees.push(NewEe {
                    version_key: version.key.clone(),
                    name,
                    node: slot.name.clone(),
                });
                outcome.live += 1;
            }
        } else {
            slot.planned += 1;
            outcome.unplaced += 1;
            if outcome.waiting.is_none() {
                outcome.waiting = Some(Waiting::Launching);
            }
        }
    }
    outcome
}

/// How many EEs of a version a zone may hold beyond its least used zone before Karpenter mode
/// launches in the least used zone rather than use room elsewhere: the room launched for the next
/// scale-up then fills evenly, and the version stays spread.
const ZONE_SLACK: u32 = 1;

/// The zones where the next EE of `version` may take room, best first; `order` is every zone
/// with the version's EEs there, least used first.
///
/// Until the version's first EEs cover as many zones as its minimum allows, Karpenter mode keeps
/// the spread strict (it can launch in the least used zone). After that it takes room in zones
/// within `ZONE_SLACK` of the least used. Static mode cannot launch: room anywhere is taken
/// (least used zones first).
fn candidate_zones(
    provisioner: &Provisioner,
    version: &VersionView,
    order: &[(u32, String)],
) -> Vec<String> {
    let Some((fewest, preferred)) = order.first() else {
        return Vec::new();
    };
    if matches!(provisioner, Provisioner::Static) {
        return order.iter().map(|(_, z)| z.clone()).collect();
    }
    let covered = order.iter().filter(|(c, _)| *c > 0).count();
    let spread_target = order
        .len()
        .min(usize::try_from(version.bounds.min).unwrap_or(usize::MAX));
    if covered < spread_target {
        return vec![preferred.clone()];
    }
    order
        .iter()
        .filter(|(c, _)| *c <= fewest.saturating_add(ZONE_SLACK))
        .map(|(_, z)| z.clone())
        .collect()
}

/// Takes the EEs beyond `desired` out of `live` (one version's), one at a time: those not
/// serving first, then from the zone holding most of the version's EEs (the spread stays even),
/// there from the node holding fewest EEs (so whole instances free up), newest name first.
fn remove_surplus<'a>(
    snapshot: &Snapshot,
    live: &mut Vec<&'a EeView>,
    desired: usize,
    ees_per_node: &BTreeMap<&str, u32>,
) -> Vec<&'a EeView> {
    let zone_of = |e: &EeView| -> Option<&str> {
        let node = e.node.as_deref()?;
        snapshot
            .nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.zone.as_str())
    };
    let mut load: BTreeMap<String, u32> = ees_per_node
        .iter()
        .map(|(n, c)| ((*n).to_string(), *c))
        .collect();
    let mut removed = Vec::new();
    while live.len() > desired {
        let mut in_zone: BTreeMap<Option<&str>, u32> = BTreeMap::new();
        for e in live.iter() {
            *in_zone.entry(zone_of(e)).or_default() += 1;
        }
        let node_load = |e: &EeView| {
            e.node
                .as_ref()
                .and_then(|n| load.get(n))
                .copied()
                .unwrap_or(0)
        };
        let most = in_zone.values().copied().max().unwrap_or(0);
        // Zones within ZONE_SLACK of the most used one may give up an EE.
        let may_shrink =
            |e: &EeView| in_zone.get(&zone_of(e)).copied().unwrap_or(0) + ZONE_SLACK >= most;
        let Some(index) = (0..live.len()).min_by(|&i, &j| {
            let (a, b) = (live[i], live[j]);
            a.ready
                .cmp(&b.ready)
                .then(may_shrink(b).cmp(&may_shrink(a)))
                .then(node_load(a).cmp(&node_load(b)))
                .then(b.name.cmp(&a.name))
        }) else {
            break;
        };
        let ee = live.remove(index);
        if let Some(count) = ee.node.as_ref().and_then(|n| load.get_mut(n)) {
            *count = count.saturating_sub(1);
        }
        removed.push(ee);
    }
    removed
}

/// Room a new instance is sized for, as a share of the version's EEs already in the zone: the
/// next scale-up of a growing version then finds room instead of launching again, and the
/// larger types are up to 40% cheaper per EE (`c7g.2xlarge` holds six EEs of 1 vCPU at $0.048
/// each, a `c7g.large` one at $0.0725). Half the zone's EEs is what a doubling within 5 minutes
/// (the Auto target's assumption) adds in about the reaction time of two scale-ups; more would
/// leave room idle when the load turns, which only consolidation gets back.
const HEADROOM_SHARE: f64 = 0.5;

// The EE slots a launch in a zone is sized for: the EEs that will wait for it ([`zone_waiting`],
// or all the versions' EEs waiting in the zone when more), plus room for the version's next
// scale-up ([`headroom`]).

/// The EEs of a version that will wait for a launch in a zone: the zone's share of its
/// `desired` EEs, less the `in_zone` it has (at least the one being placed).
fn zone_waiting(desired: u32, zones: usize, in_zone: u32) -> u32 {
    let zones = u32::try_from(zones.max(1)).unwrap_or(u32::MAX);
    desired.div_ceil(zones).saturating_sub(in_zone).max(1)
}

/// Room for a version's next scale-up in a zone: a share of the zone's part of the `before` EEs
/// the version had.
fn headroom(before: u32, zones: usize) -> u32 {
    let zones = u32::try_from(zones.max(1)).unwrap_or(u32::MAX);
    // A share of a count of EEs: small, non-negative, and rounded up to whole slots.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let share = (f64::from(before.div_ceil(zones)) * HEADROOM_SHARE).ceil() as u32;
    share
}

/// How many EEs of `cpu` millicores and `memory` MiB a demand of `demand_cpu` and
/// `demand_memory` is worth (EEs of other versions may have other sizes), rounded up.
fn ees_worth(demand_cpu: i64, demand_memory: i64, cpu: i64, memory: i64) -> u32 {
    // Non-negative, so unsigned division rounds up as wanted.
    let ceil = |a: i64, b: i64| a.max(0).unsigned_abs().div_ceil(b.max(1).unsigned_abs());
    u32::try_from(ceil(demand_cpu, cpu).max(ceil(demand_memory, memory))).unwrap_or(u32::MAX)
}

/// Price per hour of the slots of `candidate` that `wanted` EEs would use: an instance is
/// judged by the EEs it will hold, not by the EEs it could hold.
fn price_per_used_slot(candidate: &lmi_crds::catalog::Candidate<'_>, wanted: u32) -> f64 {
    let used = candidate.ees_per_instance.min(wanted.max(1));
    candidate.instance_type.price_per_hour / f64::from(used)
}

/// What a launch may choose from.
struct Offer<'a> {
    requirements: &'a lmi_crds::capacity_provider::InstanceRequirements,
    max_vcpu: u32,
    /// The zones, preferred first.
    zones: &'a [&'a str],
    unavailable: &'a UnavailableOfferings,
}

/// Chooses the instance type for `wanted` EE slots of `version`: the cheapest per slot those EEs
/// would use (smaller types win ties: less idle room), within the vCPU ceiling, in the first of
/// the offer's zones where such a type has not failed to launch recently. Says, besides the
/// claim, which better offering it avoided and why.
fn launch(
    snapshot: &Snapshot,
    catalog: &Catalog,
    version: &VersionView,
    offer: &Offer<'_>,
    wanted: u32,
    vcpu_allocated: &mut u32,
    claim_names: &mut BTreeSet<String>,
) -> Result<(NewClaim, Option<String>), Waiting> {
    let candidates = catalog
        .select(offer.requirements, &version.shape)
        .map_err(|e| Waiting::InsufficientCapacity(e.to_string()))?;
    let room = offer.max_vcpu.saturating_sub(*vcpu_allocated);
    let cheaper = |a: &&lmi_crds::catalog::Candidate<'_>, b: &&lmi_crds::catalog::Candidate<'_>| {
        price_per_used_slot(a, wanted)
            .total_cmp(&price_per_used_slot(b, wanted))
            .then(a.instance_type.vcpu.cmp(&b.instance_type.vcpu))
    };
    let fitting: Vec<_> = candidates
        .iter()
        .filter(|c| c.instance_type.vcpu <= room)
        .collect();
    let best = fitting
        .iter()
        .copied()
        .min_by(cheaper)
        .ok_or(Waiting::VcpuLimitExceeded {
            limit: offer.max_vcpu,
        })?;
    let offered = |c: &lmi_crds::catalog::Candidate<'_>, zone: &str| {
        !offer
            .unavailable
            .contains_key(&(c.instance_type.name.clone(), zone.to_string()))
    };
    let Some((zone, chosen)) = offer.zones.iter().find_map(|zone| {
        fitting
            .iter()
            .copied()
            .filter(|c| offered(c, zone))
            .min_by(cheaper)
            .map(|c| (*zone, c))
    }) else {
        let failed: Vec<String> = offer
            .unavailable
            .iter()
            .map(|((t, z), why)| format!("{t} in {z}: {why}"))
            .collect();
        return Err(Waiting::InsufficientCapacity(format!(
            "no instance type the capacity provider allows can be launched in any of its zones now; failed launches: {}",
            failed.join("; ")
        )));
    };
    let preferred = offer.zones.first().copied().unwrap_or(zone);
    let avoided = (!offered(best, preferred)).then(|| {
        let key = (best.instance_type.name.clone(), preferred.to_string());
        format!(
            "{} in {preferred} failed to launch ({}); launching {} in {zone} instead",
            best.instance_type.name,
            offer.unavailable.get(&key).map_or("", String::as_str),
            chosen.instance_type.name
        )
    });
    let name = fresh_claim_name(snapshot, zone, claim_names);
    claim_names.insert(name.clone());
    *vcpu_allocated += chosen.instance_type.vcpu;
    Ok((
        NewClaim {
            name,
            instance_type: chosen.instance_type.name.clone(),
            zone: zone.to_string(),
            vcpu: chosen.instance_type.vcpu,
        },
        avoided,
    ))
}

/// Marks NodeClaims that hold no EE, and removes them once empty for the cool-down (at once for
/// an instance consolidation emptied).
fn plan_claim_cleanup(
    snapshot: &Snapshot,
    slots: &[Slot],
    ees_per_node: &BTreeMap<&str, u32>,
    failed: &BTreeSet<&str>,
    plan: &mut CapacityPlan,
) {
    for claim in snapshot
        .claims
        .iter()
        .filter(|c| !c.deleting && !failed.contains(c.name.as_str()))
    {
        let on_node = claim
            .node_name
            .as_deref()
            .and_then(|n| ees_per_node.get(n))
            .copied()
            .unwrap_or(0);
        let new_here = claim
            .node_name
            .as_deref()
            .is_some_and(|n| plan.create_ees.iter().any(|e| e.node == n));
        let waited_for = slots
            .iter()
            .any(|s| !s.real && s.name == claim.name && s.planned > 0);
        let occupied = on_node > 0 || new_here || waited_for;
        let grace =
            consolidation::empty_grace_seconds(claim, snapshot.empty_claim_cooldown_seconds);
        match (occupied, claim.empty_since) {
            (true, Some(_)) => plan.mark_claims.push(ClaimMark::new(&claim.name, None)),
            (false, _) if grace <= 0 => plan.delete_claims.push(claim.name.clone()),
            (false, None) => plan
                .mark_claims
                .push(ClaimMark::new(&claim.name, Some(snapshot.now))),
            (false, Some(since)) if snapshot.now - since >= grace => {
                plan.delete_claims.push(claim.name.clone());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "capacity_tests.rs"]
mod tests;

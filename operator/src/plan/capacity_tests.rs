//! Unit tests of the capacity plan.

use lmi_crds::capacity_provider::InstanceRequirements;
use lmi_crds::catalog::Catalog;
use lmi_crds::rules::{Category, EeShape, ScalingBounds};
use lmi_crds::{Architecture, State};

use crate::plan::capacity::plan_capacity;
use crate::plan::capacity_plan::{ClaimMark, EeRef, Waiting};
use crate::plan::snapshot::{ClaimView, EeView, NodeView, Provisioner, Snapshot, VersionView};
use crate::plan::version_state::version_state;

/// The snapshots' clock (unix seconds) unless a test moves it.
const NOW: i64 = 1000;

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

fn shape_1vcpu() -> EeShape {
    EeShape {
        vcpus: 1,
        memory_mib: 2048,
        category: Category::Compute,
        max_concurrency: 8,
    }
}

fn version(key: &str, min: u32, max: Option<u32>) -> VersionView {
    let name = key.split('/').nth(1).unwrap();
    VersionView {
        key: key.to_string(),
        pod_prefix: format!("{name}-ee-"),
        shape: shape_1vcpu(),
        bounds: ScalingBounds { min, max },
        wish: None,
        previous_state: None,
    }
}

fn karpenter(max_vcpu: u32, allowed: &[&str]) -> Provisioner {
    Provisioner::Karpenter {
        zones: ZONES.iter().map(|z| z.to_string()).collect(),
        max_vcpu,
        requirements: InstanceRequirements {
            architectures: vec![Architecture::Arm64],
            allowed_instance_types: allowed.iter().map(|s| s.to_string()).collect(),
            excluded_instance_types: vec![],
        },
    }
}

fn snapshot(provisioner: Provisioner, versions: Vec<VersionView>) -> Snapshot {
    Snapshot {
        capacity_provider: "cp".into(),
        provisioner,
        nodes: vec![],
        claims: vec![],
        ees: vec![],
        versions,
        now: NOW,
        empty_claim_cooldown_seconds: 60,
        consolidation: Default::default(),
        launch_timeout_seconds: 60,
        unavailable: Default::default(),
        lifecycle: Default::default(),
    }
}

/// Turns planned claims into registered, schedulable nodes (what Karpenter would do).
fn launch_all(s: &mut Snapshot, claims: &[crate::plan::NewClaim]) {
    for c in claims {
        let t = Catalog::builtin().get(&c.instance_type).unwrap();
        let (cpu, memory) = t.allocatable();
        s.claims.push(ClaimView {
            name: c.name.clone(),
            instance_type: c.instance_type.clone(),
            zone: c.zone.clone(),
            node_name: Some(format!("node-{}", c.name)),
            empty_since: None,
            consolidating_since: None,
            created_at: Some(s.now),
            deleting: false,
            launched: true,
            launch_message: None,
            replacing_since: None,
            image_id: None,
        });
        s.nodes.push(NodeView {
            name: format!("node-{}", c.name),
            zone: c.zone.clone(),
            cpu_millis: u64::from(cpu),
            memory_mib: memory,
            schedulable: true,
        });
    }
}

fn run_ees(s: &mut Snapshot, plan: &crate::plan::CapacityPlan, ready: bool) {
    for e in &plan.create_ees {
        s.ees.push(ee(&e.name, &e.version_key, &e.node, ready));
    }
}

/// A running EE of the 1-vCPU shape (with its sidecar) on `node`.
fn ee(name: &str, version_key: &str, node: &str, ready: bool) -> EeView {
    EeView {
        namespace: "ns".into(),
        name: name.into(),
        version_key: version_key.into(),
        node: Some(node.into()),
        cpu_millis: 1050,
        memory_mib: 2112,
        ready,
        terminating: false,
        finished: false,
        init_failure: None,
        created_at: Some(NOW),
    }
}

#[test]
fn a_fresh_provider_launches_one_instance_per_zone_for_min_three() {
    let s = snapshot(karpenter(400, &[]), vec![version("ns/hello-v1", 3, None)]);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(plan.create_ees.is_empty(), "no node exists yet");
    let mut zones: Vec<_> = plan.create_claims.iter().map(|c| c.zone.as_str()).collect();
    zones.sort();
    assert_eq!(zones, ZONES);
    assert!(
        plan.create_claims
            .iter()
            .all(|c| c.instance_type.starts_with('c')),
        "ratio 2 means category c"
    );
    let v = &plan.versions["ns/hello-v1"];
    assert_eq!((v.desired, v.live, v.unplaced), (3, 0, 3));
    assert_eq!(v.waiting, Some(Waiting::Launching));
    assert_eq!(
        version_state(None, &ScalingBounds { min: 3, max: None }, v).state,
        State::Pending
    );
}

#[test]
fn replanning_while_instances_launch_launches_nothing_more() {
    let mut s = snapshot(karpenter(400, &[]), vec![version("ns/hello-v1", 3, None)]);
    let first = plan_capacity(&s, Catalog::builtin());
    for c in &first.create_claims {
        s.claims.push(ClaimView {
            name: c.name.clone(),
            instance_type: c.instance_type.clone(),
            zone: c.zone.clone(),
            node_name: None,
            empty_since: None,
            consolidating_since: None,
            created_at: Some(s.now),
            deleting: false,
            launched: true,
            launch_message: None,
            replacing_since: None,
            image_id: None,
        });
    }
    let second = plan_capacity(&s, Catalog::builtin());
    assert!(
        second.create_claims.is_empty(),
        "{:?}",
        second.create_claims
    );
    assert!(
        second.mark_claims.is_empty(),
        "claims awaited by EEs are not empty"
    );
}

#[test]
fn launched_nodes_get_one_ee_per_zone_and_the_version_turns_active() {
    let mut s = snapshot(karpenter(400, &[]), vec![version("ns/hello-v1", 3, None)]);
    let plan = plan_capacity(&s, Catalog::builtin());
    launch_all(&mut s, &plan.create_claims);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(plan.create_claims.is_empty());
    assert_eq!(plan.create_ees.len(), 3);
    let mut nodes: Vec<_> = plan.create_ees.iter().map(|e| e.node.clone()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one EE per zone's node");
    let mut names: Vec<_> = plan.create_ees.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["hello-v1-ee-0", "hello-v1-ee-1", "hello-v1-ee-2"]);
    run_ees(&mut s, &plan, true);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(
        plan.create_ees.is_empty() && plan.delete_ees.is_empty() && plan.create_claims.is_empty()
    );
    let v = &plan.versions["ns/hello-v1"];
    assert_eq!(
        version_state(
            Some(State::Pending),
            &ScalingBounds { min: 3, max: None },
            v
        )
        .state,
        State::Active
    );
}

#[test]
fn a_second_version_fills_existing_nodes_before_launching() {
    // xlarge instances hold 3 EEs of 1 vCPU each, so the first version leaves room for 2 more.
    let mut s = snapshot(
        karpenter(400, &["c7g.xlarge"]),
        vec![version("ns/a-v1", 3, None)],
    );
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.create_claims.len(), 3);
    launch_all(&mut s, &plan.create_claims);
    let plan = plan_capacity(&s, Catalog::builtin());
    run_ees(&mut s, &plan, true);
    s.versions.push(version("ns/b-v1", 3, None));
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(
        plan.create_claims.is_empty(),
        "existing nodes have room: {:?}",
        plan.create_claims
    );
    assert_eq!(
        plan.create_ees
            .iter()
            .filter(|e| e.version_key == "ns/b-v1")
            .count(),
        3
    );
}

#[test]
fn the_vcpu_ceiling_stops_launches_and_says_so() {
    // Each EE needs its own 2-vCPU instance; a ceiling of 4 allows two.
    let s = snapshot(
        karpenter(4, &["c7g.large"]),
        vec![version("ns/hello-v1", 3, None)],
    );
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.create_claims.len(), 2);
    assert_eq!(plan.vcpu_allocated, 4);
    let v = &plan.versions["ns/hello-v1"];
    assert_eq!(v.waiting, Some(Waiting::VcpuLimitExceeded { limit: 4 }));
    let state = version_state(None, &ScalingBounds { min: 3, max: None }, v);
    assert_eq!(
        (state.state, state.reason_code),
        (State::Pending, Some("VcpuLimitExceeded"))
    );
}

#[test]
fn raising_min_adds_ees_and_lowering_removes_the_idle_first() {
    let mut s = snapshot(
        karpenter(400, &["c7g.2xlarge"]),
        vec![version("ns/v-v1", 3, None)],
    );
    let plan = plan_capacity(&s, Catalog::builtin());
    launch_all(&mut s, &plan.create_claims);
    let plan = plan_capacity(&s, Catalog::builtin());
    run_ees(&mut s, &plan, true);
    // Past one EE per zone, scale-up fills the existing instances.
    s.versions[0].bounds = ScalingBounds { min: 5, max: None };
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.create_ees.len(), 2);
    assert!(
        plan.create_claims.is_empty(),
        "2xlarge nodes have room for more"
    );
    run_ees(&mut s, &plan, false);
    s.versions[0].bounds = ScalingBounds {
        min: 4,
        max: Some(4),
    };
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.delete_ees.len(), 1);
    let deleted = &plan.delete_ees[0].name;
    assert!(
        !s.ees.iter().find(|e| &e.name == deleted).unwrap().ready,
        "an idle (not ready) EE goes first"
    );
}

#[test]
fn the_first_ees_spread_over_zones_even_when_one_node_has_room() {
    let mut s = snapshot(
        karpenter(400, &["c7g.2xlarge"]),
        vec![version("ns/v-v1", 1, None)],
    );
    let plan = plan_capacity(&s, Catalog::builtin());
    launch_all(&mut s, &plan.create_claims);
    let plan = plan_capacity(&s, Catalog::builtin());
    run_ees(&mut s, &plan, true);
    s.versions[0].bounds = ScalingBounds { min: 3, max: None };
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(
        plan.create_claims.len(),
        2,
        "two more zones get an instance"
    );
    assert!(plan.create_ees.is_empty());
}

#[test]
fn deactivation_removes_every_ee_then_the_empty_instances_after_the_cooldown() {
    let mut s = snapshot(karpenter(400, &[]), vec![version("ns/v-v1", 3, None)]);
    let plan = plan_capacity(&s, Catalog::builtin());
    launch_all(&mut s, &plan.create_claims);
    let plan = plan_capacity(&s, Catalog::builtin());
    run_ees(&mut s, &plan, true);
    s.versions[0].bounds = ScalingBounds {
        min: 0,
        max: Some(0),
    };
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.delete_ees.len(), 3);
    let v = &plan.versions["ns/v-v1"];
    assert_eq!(v.desired, 0);
    assert_eq!(
        version_state(Some(State::Active), &s.versions[0].bounds, v).state,
        State::Deactivated
    );
    // The pods are gone: the claims are empty, marked now, removed once the cool-down passed.
    s.ees.clear();
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.mark_claims.len(), 3);
    assert!(plan.mark_claims.iter().all(|mark| mark.since == Some(1000)));
    assert!(plan.delete_claims.is_empty());
    for c in &mut s.claims {
        c.empty_since = Some(1000);
    }
    s.now = 1059;
    assert!(
        plan_capacity(&s, Catalog::builtin())
            .delete_claims
            .is_empty()
    );
    s.now = 1060;
    assert_eq!(plan_capacity(&s, Catalog::builtin()).delete_claims.len(), 3);
    assert_eq!(plan_capacity(&s, Catalog::builtin()).instance_count, 0);
}

#[test]
fn terminating_ees_are_deactivating_until_gone() {
    let mut s = snapshot(Provisioner::Static, vec![version("ns/v-v1", 0, Some(0))]);
    s.nodes.push(NodeView {
        name: "n".into(),
        zone: "z".into(),
        cpu_millis: 4000,
        memory_mib: 8000,
        schedulable: true,
    });
    s.ees.push(ee("v-v1-ee-0", "ns/v-v1", "n", true));
    let plan = plan_capacity(&s, Catalog::builtin());
    let v = &plan.versions["ns/v-v1"];
    // The one EE is planned away, so nothing live remains in the plan's view.
    assert_eq!(plan.delete_ees.len(), 1);
    assert_eq!(
        version_state(Some(State::Active), &s.versions[0].bounds, v).state,
        State::Deactivated
    );
    s.ees[0].terminating = true;
    let v = &plan_capacity(&s, Catalog::builtin()).versions["ns/v-v1"];
    assert_eq!(v.live, 0);
}

#[test]
fn static_providers_use_any_zone_with_room_and_report_when_full() {
    let mut s = snapshot(Provisioner::Static, vec![version("ns/v-v1", 3, None)]);
    // One node with room for two EEs.
    s.nodes.push(NodeView {
        name: "n1".into(),
        zone: "a".into(),
        cpu_millis: 2200,
        memory_mib: 8000,
        schedulable: true,
    });
    s.nodes.push(NodeView {
        name: "n2".into(),
        zone: "b".into(),
        cpu_millis: 4000,
        memory_mib: 8000,
        schedulable: false,
    });
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.create_ees.len(), 2);
    assert!(plan.create_claims.is_empty());
    let v = &plan.versions["ns/v-v1"];
    assert_eq!(v.unplaced, 1);
    let state = version_state(None, &s.versions[0].bounds, v);
    assert_eq!(
        (state.state, state.reason_code),
        (State::Pending, Some("InsufficientCapacity"))
    );
}

#[test]
fn an_active_version_says_why_the_autoscalers_wish_waits() {
    // One node with room for one EE; min 1 is met, the autoscaler wants 2.
    let mut s = snapshot(
        Provisioner::Static,
        vec![VersionView {
            wish: Some(2),
            previous_state: Some(State::Active),
            ..version("ns/v-v1", 1, Some(2))
        }],
    );
    s.nodes.push(NodeView {
        name: "n".into(),
        zone: "a".into(),
        cpu_millis: 2000,
        memory_mib: 8000,
        schedulable: true,
    });
    s.ees.push(ee("v-v1-ee-0", "ns/v-v1", "n", true));
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(plan.create_ees.is_empty(), "no room for a second EE");
    let v = &plan.versions["ns/v-v1"];
    assert_eq!((v.desired, v.unplaced), (2, 1));
    let state = version_state(Some(State::Active), &s.versions[0].bounds, v);
    assert_eq!(
        (state.state, state.reason_code),
        (State::Active, Some("InsufficientCapacity"))
    );
    // Without a wish beyond what runs, Active says nothing.
    s.versions[0].wish = Some(1);
    let plan = plan_capacity(&s, Catalog::builtin());
    let state = version_state(
        Some(State::Active),
        &s.versions[0].bounds,
        &plan.versions["ns/v-v1"],
    );
    assert_eq!((state.state, state.reason_code), (State::Active, None));
}

#[test]
fn ended_ees_are_replaced_and_init_failures_fail_a_new_version() {
    let mut s = snapshot(Provisioner::Static, vec![version("ns/v-v1", 1, None)]);
    s.nodes.push(NodeView {
        name: "n".into(),
        zone: "a".into(),
        cpu_millis: 4000,
        memory_mib: 8000,
        schedulable: true,
    });
    s.ees.push(EeView {
        finished: true,
        ..ee("v-v1-ee-0", "ns/v-v1", "n", false)
    });
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.delete_ees, vec![EeRef::new("ns", "v-v1-ee-0")]);
    assert_eq!(plan.create_ees.len(), 1);
    assert_eq!(
        plan.create_ees[0].name, "v-v1-ee-1",
        "a fresh name, never the one still terminating"
    );

    s.ees[0].finished = false;
    s.ees[0].init_failure = Some(crate::plan::snapshot::InitFailure {
        reason_code: "FunctionError.RuntimeInitError",
        message: "boom".into(),
    });
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(
        plan.create_ees.is_empty(),
        "a failing EE is kept, not replaced in a loop"
    );
    let state = version_state(
        Some(State::Pending),
        &s.versions[0].bounds,
        &plan.versions["ns/v-v1"],
    );
    assert_eq!(
        (state.state, state.reason_code),
        (State::Failed, Some("FunctionError.RuntimeInitError"))
    );
}

#[test]
fn launches_choose_the_type_cheapest_per_slot_the_ees_will_use() {
    let mut s = snapshot(
        karpenter(
            400,
            &["c7g.large", "c7g.xlarge", "c7g.2xlarge", "c7g.4xlarge"],
        ),
        vec![version("ns/v-v1", 3, None)],
    );
    // One EE per zone and nothing there yet: a c7g.large is the cheapest for the one slot used.
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(
        plan.create_claims
            .iter()
            .all(|c| c.instance_type == "c7g.large"),
        "{:?}",
        plan.create_claims
    );
    launch_all(&mut s, &plan.create_claims);
    let plan = plan_capacity(&s, Catalog::builtin());
    run_ees(&mut s, &plan, true);
    // Scale to 15: four EEs wait per zone, plus room for half the one already there. Four
    // c7g.large ($0.0725 per EE) lose to one c7g.2xlarge used for five of its six slots
    // ($0.058 per slot used); a c7g.4xlarge would be used for 5 of 13 ($0.116).
    s.versions[0].wish = Some(15);
    let plan = plan_capacity(&s, Catalog::builtin());
    let types: Vec<_> = plan
        .create_claims
        .iter()
        .map(|c| c.instance_type.as_str())
        .collect();
    assert_eq!(types, ["c7g.2xlarge"; 3], "one per zone");
    let mut zones: Vec<_> = plan.create_claims.iter().map(|c| c.zone.as_str()).collect();
    zones.sort();
    assert_eq!(zones, ZONES);
    assert_eq!(plan.versions["ns/v-v1"].unplaced, 12);
}

#[test]
fn launch_sizing_counts_waiting_ees_and_room_for_the_next_scale_up() {
    use super::{headroom, price_per_used_slot, zone_waiting};
    let slots_wanted = |desired, before, zones, in_zone| {
        zone_waiting(desired, zones, in_zone) + headroom(before, zones)
    };
    // Min 3 on a fresh provider: one EE per zone, no room beyond it.
    assert_eq!(slots_wanted(3, 0, 3, 0), 1);
    // 30 to 45 EEs: 15 per zone wanted, 10 there, and room for half of those 10.
    assert_eq!(slots_wanted(45, 30, 3, 10), 10);
    assert_eq!(
        slots_wanted(3, 3, 3, 1),
        2,
        "at least one EE waits for a launch"
    );
    let candidates = Catalog::builtin()
        .select(
            &InstanceRequirements {
                architectures: vec![Architecture::Arm64],
                allowed_instance_types: vec!["c7g.2xlarge".into()],
                excluded_instance_types: vec![],
            },
            &shape_1vcpu(),
        )
        .unwrap();
    let c = &candidates[0];
    assert_eq!(c.ees_per_instance, 6);
    assert!(
        (price_per_used_slot(c, 2) - 0.145).abs() < 1e-9,
        "2 of 6 slots used"
    );
    assert!(
        (price_per_used_slot(c, 60) - 0.29 / 6.0).abs() < 1e-9,
        "full"
    );
}

/// Long after `NOW`: instances and EEs created at `NOW` are old enough to consolidate.
const LATER: i64 = NOW + 3600;

/// A registered instance `name` of `instance_type` in `zone`, created at `NOW`.
fn instance(s: &mut Snapshot, name: &str, instance_type: &str, zone: &str) {
    let t = Catalog::builtin().get(instance_type).unwrap();
    let (cpu, memory) = t.allocatable();
    s.claims.push(ClaimView {
        name: name.into(),
        instance_type: instance_type.into(),
        zone: zone.into(),
        node_name: Some(format!("node-{name}")),
        empty_since: None,
        consolidating_since: None,
        created_at: Some(NOW),
        deleting: false,
        launched: true,
        launch_message: None,
        replacing_since: None,
        image_id: None,
    });
    s.nodes.push(NodeView {
        name: format!("node-{name}"),
        zone: zone.into(),
        cpu_millis: u64::from(cpu),
        memory_mib: memory,
        schedulable: true,
    });
}

/// `count` ready EEs of `ns/v-v1`, numbered from `first`, on instance `name`.
fn ees_on(s: &mut Snapshot, name: &str, first: u32, count: u32) {
    for i in first..first + count {
        s.ees.push(ee(
            &format!("v-v1-ee-{i}"),
            "ns/v-v1",
            &format!("node-{name}"),
            true,
        ));
    }
}

/// A Karpenter-mode provider whose subnets are all in zone a (so new EEs need not spread).
fn karpenter_zone_a(allowed: &[&str]) -> Provisioner {
    match karpenter(400, allowed) {
        Provisioner::Karpenter {
            max_vcpu,
            requirements,
            ..
        } => Provisioner::Karpenter {
            zones: vec![ZONES[0].to_string()],
            max_vcpu,
            requirements,
        },
        other => other,
    }
}

/// Zone a: `big` (a c7g.2xlarge, room for six) holds four EEs, `small` (another) holds one.
fn two_underused_instances(provisioner: Provisioner) -> Snapshot {
    let mut s = snapshot(
        provisioner,
        vec![VersionView {
            wish: Some(5),
            ..version("ns/v-v1", 1, None)
        }],
    );
    instance(&mut s, "big", "c7g.2xlarge", ZONES[0]);
    instance(&mut s, "small", "c7g.2xlarge", ZONES[0]);
    ees_on(&mut s, "big", 0, 4);
    ees_on(&mut s, "small", 4, 1);
    s.now = LATER;
    s
}

fn apply_moves(s: &mut Snapshot, plan: &crate::plan::CapacityPlan) {
    run_ees(s, plan, false);
    for e in s
        .ees
        .iter_mut()
        .filter(|e| e.created_at == Some(NOW) && !e.ready)
    {
        e.created_at = Some(s.now);
    }
    for mark in &plan.consolidate_claims {
        if let Some(c) = s.claims.iter_mut().find(|c| c.name == mark.claim) {
            c.consolidating_since = mark.since;
        }
    }
}

#[test]
fn consolidation_moves_the_emptiest_instances_ees_then_removes_it() {
    let mut s = two_underused_instances(karpenter_zone_a(&[]));
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.moves.len(), 1, "{:?}", plan.moves);
    assert_eq!(plan.moves[0].from, "v-v1-ee-4");
    assert_eq!(plan.moves[0].to, "node-big");
    assert_eq!(plan.create_ees.len(), 1);
    assert_eq!(
        plan.consolidate_claims,
        vec![ClaimMark::new("small", Some(LATER))]
    );
    assert!(
        plan.delete_ees.is_empty(),
        "the old EE waits for its replacement"
    );
    apply_moves(&mut s, &plan);

    // The replacement starts: nothing drains, nothing more moves, ready stays at desired.
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(plan.delete_ees.is_empty() && plan.create_ees.is_empty() && plan.moves.is_empty());
    let v = &plan.versions["ns/v-v1"];
    assert_eq!((v.desired, v.ready), (5, 5));

    // Ready: the old EE drains.
    for e in &mut s.ees {
        e.ready = true;
    }
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.delete_ees, vec![EeRef::new("ns", "v-v1-ee-4")]);
    assert!(plan.create_ees.is_empty());

    // Once it is gone the instance is removed, without the empty-instance cool-down.
    s.ees.retain(|e| e.name != "v-v1-ee-4");
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.delete_claims, vec!["small".to_string()]);
    assert!(
        plan.moves.is_empty(),
        "one instance left: nothing more to move"
    );
}

#[test]
fn a_scale_up_that_needs_a_leaving_instances_room_calls_the_consolidation_off() {
    let mut s = two_underused_instances(karpenter_zone_a(&["c7g.2xlarge"]));
    let plan = plan_capacity(&s, Catalog::builtin());
    apply_moves(&mut s, &plan);
    // 7 EEs: `big` has room for one more beside its five; the seventh would need a launch,
    // while `small` still has room.
    s.versions[0].wish = Some(7);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.consolidate_claims, vec![ClaimMark::new("small", None)]);
    assert!(plan.create_claims.is_empty(), "{:?}", plan.create_claims);
    assert!(plan.delete_ees.is_empty());
    assert_eq!(plan.create_ees.len(), 1);
}

#[test]
fn static_providers_never_consolidate() {
    let mut s = two_underused_instances(Provisioner::Static);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(plan.moves.is_empty() && plan.create_ees.is_empty() && plan.delete_ees.is_empty());
    assert!(plan.consolidate_claims.is_empty());
    // Even a consolidation mark (say, left from when the provider was in Karpenter mode) moves
    // and drains nothing: Static mode uses nodes it does not own.
    s.claims[1].consolidating_since = Some(NOW);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(plan.moves.is_empty() && plan.create_ees.is_empty() && plan.delete_ees.is_empty());
    assert_eq!(plan.versions["ns/v-v1"].live, 5);
}

#[test]
fn nothing_moves_while_a_version_is_not_settled_or_the_instance_is_young() {
    let base = two_underused_instances(karpenter_zone_a(&[]));
    // An EE not Ready yet.
    let mut s = base.clone();
    s.ees[0].ready = false;
    assert!(
        plan_capacity(&s, Catalog::builtin()).moves.is_empty(),
        "an EE is not ready"
    );
    // A scale-up pending (the wish is above what runs, and fits the room there is).
    let mut s = base.clone();
    s.versions[0].wish = Some(6);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(plan.moves.is_empty() && plan.create_ees.len() == 1);
    // An EE started a minute ago (right after a scale-up).
    let mut s = base.clone();
    s.ees[0].created_at = Some(LATER - 60);
    assert!(
        plan_capacity(&s, Catalog::builtin()).moves.is_empty(),
        "the version just scaled"
    );
    // An instance launched five minutes ago.
    let mut s = base.clone();
    for c in &mut s.claims {
        c.created_at = Some(LATER - 300);
    }
    assert!(
        plan_capacity(&s, Catalog::builtin()).moves.is_empty(),
        "the instances are young"
    );
    // An EE draining (a scale-down in progress).
    let mut s = base;
    s.ees[0].terminating = true;
    s.versions[0].wish = Some(4);
    assert!(
        plan_capacity(&s, Catalog::builtin()).moves.is_empty(),
        "an EE drains"
    );
}

#[test]
fn one_wave_moves_at_most_max_moves_ees() {
    use crate::plan::consolidation::MAX_MOVES;
    let mut s = snapshot(
        karpenter(400, &[]),
        vec![VersionView {
            wish: Some(12),
            ..version("ns/v-v1", 1, None)
        }],
    );
    // Ten c7g.large with one EE each, and a c7g.8xlarge (27 slots) holding two.
    instance(&mut s, "big", "c7g.8xlarge", ZONES[0]);
    ees_on(&mut s, "big", 0, 2);
    for i in 0..10 {
        let name = format!("small-{i}");
        instance(&mut s, &name, "c7g.large", ZONES[0]);
        ees_on(&mut s, &name, 2 + i, 1);
    }
    s.now = LATER;
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.moves.len(), MAX_MOVES);
    assert_eq!(plan.consolidate_claims.len(), MAX_MOVES);
    assert!(plan.moves.iter().all(|m| m.to == "node-big"));
    // While those move, no second wave starts.
    apply_moves(&mut s, &plan);
    assert!(plan_capacity(&s, Catalog::builtin()).moves.is_empty());
}

#[test]
fn moves_stay_in_their_zone() {
    let mut s = snapshot(
        karpenter(400, &[]),
        vec![VersionView {
            wish: Some(5),
            ..version("ns/v-v1", 1, None)
        }],
    );
    // Room in zone a only; the EE alone in zone b has nowhere to go in its zone.
    instance(&mut s, "a", "c7g.2xlarge", ZONES[0]);
    instance(&mut s, "b", "c7g.large", ZONES[1]);
    ees_on(&mut s, "a", 0, 4);
    ees_on(&mut s, "b", 4, 1);
    s.now = LATER;
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(plan.moves.is_empty(), "{:?}", plan.moves);
}

#[test]
fn scale_down_keeps_the_zones_even() {
    let mut s = snapshot(
        karpenter(400, &[]),
        vec![VersionView {
            wish: Some(6),
            ..version("ns/v-v1", 1, None)
        }],
    );
    // Zone a holds five EEs on one instance, zones b and c one each on their own.
    instance(&mut s, "a", "c7g.2xlarge", ZONES[0]);
    instance(&mut s, "b", "c7g.large", ZONES[1]);
    instance(&mut s, "c", "c7g.large", ZONES[2]);
    ees_on(&mut s, "a", 0, 5);
    ees_on(&mut s, "b", 5, 1);
    ees_on(&mut s, "c", 6, 1);
    s.versions[0].wish = Some(4);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.delete_ees.len(), 3);
    let from_a = plan
        .delete_ees
        .iter()
        .filter(|d| {
            s.ees
                .iter()
                .any(|e| e.name == d.name && e.node.as_deref() == Some("node-a"))
        })
        .count();
    assert_eq!(from_a, 3, "the emptiest instances are alone in their zones");
}

/// A GitOps sync: eight functions of min 3 created at once on a fresh provider. Launches are
/// sized for every EE waiting in a zone, not one version's: per zone one `c7g.2xlarge` (six EEs)
/// and small ones for the rest, instead of eight `c7g.large`.
#[test]
fn many_functions_at_once_share_launches_sized_for_the_whole_zone() {
    let versions: Vec<VersionView> = (0..8)
        .map(|i| version(&format!("ns/f{i}-v1"), 3, None))
        .collect();
    let s = snapshot(karpenter(400, &["c7g.*"]), versions);
    let plan = plan_capacity(&s, Catalog::builtin());
    let catalog = Catalog::builtin();
    let cost = |claims: &[crate::plan::NewClaim]| -> f64 {
        claims
            .iter()
            .map(|c| catalog.get(&c.instance_type).unwrap().price_per_hour)
            .sum()
    };
    for zone in ZONES {
        let mut types: Vec<&str> = plan
            .create_claims
            .iter()
            .filter(|c| c.zone == zone)
            .map(|c| c.instance_type.as_str())
            .collect();
        types.sort();
        assert_eq!(types[0], "c7g.2xlarge", "zone {zone}: {types:?}");
        let slots: u32 = types
            .iter()
            .map(|t| catalog.get(t).unwrap().ees_per_instance(&shape_1vcpu()))
            .sum();
        assert!(slots >= 8, "zone {zone} holds its 8 EEs: {types:?}");
    }
    // Every EE waits for one of these launches; none is left without room.
    for i in 0..8 {
        let v = &plan.versions[&format!("ns/f{i}-v1")];
        assert_eq!(v.unplaced, 3);
        assert_eq!(v.waiting, Some(Waiting::Launching));
    }
    // One c7g.large per EE, as sizing for one version at a time gave, costs more.
    let one_each = 24.0 * catalog.get("c7g.large").unwrap().price_per_hour;
    let joint = cost(&plan.create_claims);
    assert!(
        joint < one_each * 0.8,
        "joint {joint:.3}/h against {one_each:.3}/h"
    );
    // Once the instances are up, the next plan places every EE and launches nothing more.
    let mut s = s;
    launch_all(&mut s, &plan.create_claims);
    let next = plan_capacity(&s, Catalog::builtin());
    assert!(next.create_claims.is_empty());
    assert_eq!(next.create_ees.len(), 24);
}

/// Karpenter did not launch a NodeClaim within the launch timeout (no offering, a cloud short of
/// the type): the claim goes, its offering is avoided, and the EE waiting for it gets another
/// instance type in its zone, with the reason on the version.
#[test]
fn a_claim_not_launched_in_time_is_replaced_by_another_type_or_zone() {
    let mut s = snapshot(
        karpenter(400, &["c7g.large", "c7g.xlarge"]),
        vec![version("ns/hello-v1", 1, None)],
    );
    let first = plan_capacity(&s, Catalog::builtin());
    assert_eq!(first.create_claims.len(), 1);
    let claim = first.create_claims[0].clone();
    assert_eq!(claim.instance_type, "c7g.large");
    s.claims.push(ClaimView {
        name: claim.name.clone(),
        instance_type: claim.instance_type.clone(),
        zone: claim.zone.clone(),
        node_name: None,
        empty_since: None,
        consolidating_since: None,
        created_at: Some(NOW),
        deleting: false,
        launched: false,
        launch_message: Some("LaunchFailed: no offering".into()),
        replacing_since: None,
        image_id: None,
    });
    // Within the timeout the claim is waited for.
    s.now = NOW + 59;
    let waiting = plan_capacity(&s, Catalog::builtin());
    assert!(waiting.create_claims.is_empty() && waiting.delete_claims.is_empty());
    assert!(waiting.failed_launches.is_empty());
    // Past it, it is given up and another type launches in the same zone.
    s.now = NOW + 60;
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.delete_claims, vec![claim.name.clone()]);
    assert_eq!(plan.failed_launches.len(), 1);
    assert!(plan.failed_launches[0].message.contains("no offering"));
    assert_eq!(plan.create_claims.len(), 1);
    let replacement = &plan.create_claims[0];
    assert_eq!(replacement.instance_type, "c7g.xlarge");
    assert_eq!(replacement.zone, claim.zone);
    assert_ne!(replacement.name, claim.name);
    match &plan.versions["ns/hello-v1"].waiting {
        Some(Waiting::LaunchFailed(why)) => {
            assert!(
                why.contains("c7g.large") && why.contains("c7g.xlarge"),
                "{why}"
            );
        }
        other => panic!("waiting {other:?}"),
    }
}

/// Offerings that failed before are avoided: with every allowed type unavailable in the
/// preferred zone the launch goes to the next zone; with none left anywhere the version says so.
#[test]
fn unavailable_offerings_move_the_launch_to_another_zone_or_say_none_is_left() {
    let mut s = snapshot(
        karpenter(400, &["c7g.large"]),
        vec![version("ns/hello-v1", 1, None)],
    );
    let preferred = plan_capacity(&s, Catalog::builtin()).create_claims[0]
        .zone
        .clone();
    s.unavailable.insert(
        ("c7g.large".into(), preferred.clone()),
        "no offering".into(),
    );
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.create_claims.len(), 1);
    assert_eq!(plan.create_claims[0].instance_type, "c7g.large");
    assert_ne!(plan.create_claims[0].zone, preferred);
    for zone in ZONES {
        s.unavailable
            .insert(("c7g.large".into(), zone.into()), "no offering".into());
    }
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(plan.create_claims.is_empty());
    match &plan.versions["ns/hello-v1"].waiting {
        Some(Waiting::InsufficientCapacity(why)) => {
            assert!(why.contains("c7g.large in us-east-1a"), "{why}");
        }
        other => panic!("waiting {other:?}"),
    }
}

#[path = "replacement_tests.rs"]
mod replacement;

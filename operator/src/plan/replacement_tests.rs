//! Unit tests of instance replacement (patching by replacement), on the capacity tests' helpers.

use super::*;
use crate::plan::CapacityPlan;
use crate::plan::replacement::{Due, due};
use crate::plan::snapshot::Lifecycle;

/// Version `ns/v-v1` (min 3) with one Ready EE on one c7g.large per zone (one EE fills one),
/// all created at `NOW`; instances live at most `max_lifetime` seconds.
fn one_instance_per_zone(max_vcpu: u32, max_lifetime: i64) -> Snapshot {
    let mut s = snapshot(
        karpenter(max_vcpu, &["c7g.*"]),
        vec![version("ns/v-v1", 3, None)],
    );
    for (i, zone) in (0u32..).zip(ZONES) {
        let name = format!("old-{i}");
        instance(&mut s, &name, "c7g.large", zone);
        ees_on(&mut s, &name, i, 1);
    }
    s.lifecycle = Lifecycle {
        max_lifetime_seconds: Some(max_lifetime),
        ..Default::default()
    };
    s
}

/// Sets the replacing mark of every claim the plan marks, as the controller does.
fn mark_replacing(s: &mut Snapshot, plan: &CapacityPlan) {
    for r in &plan.replacements {
        if let Some(c) = s.claims.iter_mut().find(|c| c.name == r.claim) {
            c.replacing_since = Some(s.now);
        }
    }
}

fn marked(plan: &CapacityPlan) -> Vec<&str> {
    let mut names: Vec<&str> = plan.replacements.iter().map(|r| r.claim.as_str()).collect();
    names.sort_unstable();
    names
}

#[test]
fn instances_past_their_lifetime_are_replaced_with_new_ees_ready_before_the_old_drain() {
    let mut s = one_instance_per_zone(400, 600);
    s.now = NOW + 599;
    let young = plan_capacity(&s, Catalog::builtin());
    assert!(young.replacements.is_empty() && young.instances_due == 0);

    s.now = NOW + 600;
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(marked(&plan), ["old-0", "old-1", "old-2"], "one per zone");
    assert_eq!(plan.instances_due, 3);
    assert!(
        plan.replacements[0]
            .reason
            .contains("maximum instance lifetime")
    );
    assert!(plan.delete_ees.is_empty() && plan.create_claims.is_empty());
    mark_replacing(&mut s, &plan);

    // Marked: their EEs are replaced elsewhere; none fits beside them, so each zone launches.
    let plan = plan_capacity(&s, Catalog::builtin());
    let mut zones: Vec<&str> = plan.create_claims.iter().map(|c| c.zone.as_str()).collect();
    zones.sort_unstable();
    assert_eq!(zones, ZONES, "the zone spread holds");
    assert!(
        plan.delete_ees.is_empty(),
        "nothing drains before its replacement serves"
    );
    assert!(plan.replacements.is_empty(), "no second instance per zone");
    let v = &plan.versions["ns/v-v1"];
    assert_eq!((v.desired, v.ready), (3, 3));
    let bounds = ScalingBounds { min: 3, max: None };
    assert_eq!(
        version_state(Some(State::Active), &bounds, v).state,
        State::Active
    );

    s.now += 60;
    launch_all(&mut s, &plan.create_claims);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.create_ees.len(), 3);
    assert!(
        plan.create_ees
            .iter()
            .all(|e| !e.node.starts_with("node-old"))
    );
    assert!(plan.delete_ees.is_empty());
    run_ees(&mut s, &plan, false);
    let starting = plan_capacity(&s, Catalog::builtin());
    assert!(starting.delete_ees.is_empty(), "replacements not Ready yet");

    for e in s.ees.iter_mut() {
        e.ready = true;
    }
    let plan = plan_capacity(&s, Catalog::builtin());
    let mut drained: Vec<&str> = plan.delete_ees.iter().map(|e| e.name.as_str()).collect();
    drained.sort_unstable();
    assert_eq!(drained, ["v-v1-ee-0", "v-v1-ee-1", "v-v1-ee-2"]);

    s.ees.retain(|e| !drained.contains(&e.name.as_str()));
    let plan = plan_capacity(&s, Catalog::builtin());
    let mut removed: Vec<&str> = plan.delete_claims.iter().map(String::as_str).collect();
    removed.sort_unstable();
    assert_eq!(
        removed,
        ["old-0", "old-1", "old-2"],
        "emptied, they go at once"
    );
    assert!(plan.replacements.is_empty(), "the new instances are young");
}

#[test]
fn one_instance_per_zone_at_a_time_the_oldest_first() {
    let mut s = one_instance_per_zone(400, 600);
    instance(&mut s, "older", "c7g.large", ZONES[0]);
    if let Some(c) = s.claims.iter_mut().find(|c| c.name == "older") {
        c.created_at = Some(NOW - 100);
    }
    s.now = NOW + 700;
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(marked(&plan), ["old-1", "old-2", "older"]);
    assert_eq!(plan.instances_due, 4);
    mark_replacing(&mut s, &plan);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(
        plan.replacements.is_empty(),
        "old-0 waits for its zone's replacement"
    );
    assert!(
        plan.delete_claims.contains(&"older".to_string()),
        "empty: it goes at once"
    );
    s.claims.retain(|c| c.name != "older");
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(marked(&plan), ["old-0"], "its zone's turn");
}

#[test]
fn a_requested_time_replaces_what_was_launched_before_it_once_it_has_come() {
    let mut s = one_instance_per_zone(400, 1_000_000);
    s.now = NOW + 100;
    s.lifecycle.replace_launched_before = Some(NOW + 200);
    assert!(
        plan_capacity(&s, Catalog::builtin())
            .replacements
            .is_empty(),
        "not yet"
    );
    s.now = NOW + 200;
    let claim = s.claims[0].clone();
    assert_eq!(due(&s, &claim), Some(Due::Requested { before: NOW + 200 }));
    assert_eq!(plan_capacity(&s, Catalog::builtin()).replacements.len(), 3);
    let mut newer = claim;
    newer.created_at = Some(NOW + 200);
    assert_eq!(
        due(&s, &newer),
        None,
        "launched at or after the time: new enough"
    );
}

#[test]
fn an_instance_on_an_image_the_node_class_no_longer_resolves_is_out_of_date() {
    let mut s = one_instance_per_zone(400, 1_000_000);
    let mut claim = s.claims[0].clone();
    claim.image_id = Some("ami-old".into());
    assert_eq!(
        due(&s, &claim),
        None,
        "images unknown: nothing is out of date"
    );
    s.lifecycle.current_images = vec!["ami-new".into(), "ami-new-x86".into()];
    assert_eq!(
        due(&s, &claim),
        Some(Due::Image {
            image: "ami-old".into()
        })
    );
    claim.image_id = Some("ami-new".into());
    assert_eq!(due(&s, &claim), None);
}

#[test]
fn a_provider_at_its_vcpu_ceiling_can_still_be_replaced() {
    // Three c7g.large: 6 vCPUs, all the ceiling allows.
    let mut s = one_instance_per_zone(6, 600);
    s.now = NOW + 600;
    let plan = plan_capacity(&s, Catalog::builtin());
    mark_replacing(&mut s, &plan);
    let plan = plan_capacity(&s, Catalog::builtin());
    assert_eq!(plan.create_claims.len(), 3, "{:?}", plan.versions);
    assert!(
        plan.versions
            .values()
            .all(|v| !matches!(v.waiting, Some(Waiting::VcpuLimitExceeded { .. }))),
        "{:?}",
        plan.versions
    );
}

#[test]
fn static_nodes_are_never_replaced() {
    let mut s = one_instance_per_zone(400, 600);
    s.provisioner = Provisioner::Static;
    s.now = NOW + 10_000;
    let plan = plan_capacity(&s, Catalog::builtin());
    assert!(plan.replacements.is_empty() && plan.instances_due == 0);
}

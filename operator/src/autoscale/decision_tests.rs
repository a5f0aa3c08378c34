//! Unit tests of the scaling decision: the band and its edges, scale-up, the stabilization window
//! and bounded step of scale-down, min/max and the vCPU ceiling.

use lmi_crds::rules::ScalingBounds;

use super::decision::{Limits, Observation, Policy, Reason, ScalerState, decide};

const T: f64 = 60.0;

fn obs(ready: u32, cpu: f64) -> Observation {
    Observation {
        ready_ees: ready,
        live_ees: ready,
        cpu_percent: cpu,
        saturation: 0.1,
        throttled_share: 0.0,
    }
}

fn limits(min: u32, max: Option<u32>, ceiling: Option<u32>) -> Limits {
    Limits {
        bounds: ScalingBounds { min, max },
        ceiling,
    }
}

fn asked(n: u32) -> ScalerState {
    ScalerState {
        desired: Some(n),
        ..ScalerState::default()
    }
}

fn once(o: &Observation, l: &Limits, s: &ScalerState) -> (u32, Reason) {
    let d = decide(&Policy::default(), T, o, l, s, 1000);
    (d.desired, d.reason)
}

#[test]
fn band_edges_are_inside_the_band() {
    let l = limits(1, None, None);
    for cpu in [50.0, 55.0, 60.0, 65.0, 70.0] {
        assert_eq!(
            once(&obs(10, cpu), &l, &asked(10)),
            (10, Reason::InBand),
            "{cpu}"
        );
    }
    // Just past the top edge: scale up at once, ceil(10 * 70.01 / 60) = 12.
    assert_eq!(once(&obs(10, 70.01), &l, &asked(10)), (12, Reason::ScaleUp));
    // Just past the bottom edge: wait, do not scale down yet.
    assert_eq!(
        once(&obs(10, 49.99), &l, &asked(10)),
        (10, Reason::Stabilizing)
    );
}

#[test]
fn scale_up_is_ceil_n_u_over_t() {
    let l = limits(1, None, None);
    assert_eq!(once(&obs(10, 90.0), &l, &asked(10)).0, 15);
    assert_eq!(once(&obs(3, 85.0), &l, &asked(3)).0, 5);
    assert_eq!(once(&obs(7, 100.0), &l, &asked(7)).0, 12);
}

#[test]
fn starting_ees_are_not_asked_for_twice() {
    let l = limits(1, None, None);
    // 10 ready at 90% need 15; 15 are already asked for (5 still starting): no change.
    let o = Observation {
        live_ees: 15,
        ..obs(10, 90.0)
    };
    assert_eq!(once(&o, &l, &asked(15)), (15, Reason::UpPending));
    // The load grew further: ask for more.
    assert_eq!(once(&obs(10, 99.0), &l, &asked(15)), (17, Reason::ScaleUp));
}

#[test]
fn refused_work_counts_as_demand() {
    let l = limits(1, None, None);
    // Pinned at the refusal threshold with 80% of invocations refused: the demand is 5x.
    let o = Observation {
        throttled_share: 0.8,
        ..obs(10, 90.0)
    };
    let d = decide(&Policy::default(), T, &o, &l, &asked(10), 0);
    assert_eq!((d.desired, d.reason), (75, Reason::ScaleUp));
    assert!((d.demand_percent - 450.0).abs() < 1e-9);
}

#[test]
fn concurrency_saturation_scales_up_within_the_band() {
    let l = limits(1, None, None);
    let o = Observation {
        saturation: 0.9,
        ..obs(10, 30.0)
    };
    // ceil(10 * 0.9 / 0.6) = 15, although CPU is below the band.
    assert_eq!(once(&o, &l, &asked(10)), (15, Reason::ScaleUp));
    let just_below = Observation {
        saturation: 0.79,
        ..obs(10, 60.0)
    };
    assert_eq!(once(&just_below, &l, &asked(10)), (10, Reason::InBand));
}

#[test]
fn scale_down_waits_for_the_stabilization_window() {
    let p = Policy::default();
    let l = limits(1, None, None);
    let mut state = asked(20);
    // 20 EEs at 30%: they need 10. Below the band from t=0.
    for t in (0..p.stabilization_seconds).step_by(10) {
        let d = decide(&p, T, &obs(20, 30.0), &l, &state, t);
        assert_eq!((d.desired, d.reason), (20, Reason::Stabilizing), "t={t}");
        state = d.next;
    }
    let d = decide(&p, T, &obs(20, 30.0), &l, &state, p.stabilization_seconds);
    // The step is bounded: at most 25% of 20 go.
    assert_eq!((d.desired, d.reason), (15, Reason::ScaleDown));
    // A new window starts after each step.
    let d2 = decide(
        &p,
        T,
        &obs(15, 40.0),
        &l,
        &d.next,
        p.stabilization_seconds + 10,
    );
    assert_eq!((d2.desired, d2.reason), (15, Reason::Stabilizing));
}

#[test]
fn one_sample_in_the_band_restarts_the_window() {
    let p = Policy::default();
    let w = p.stabilization_seconds;
    let l = limits(1, None, None);
    let d = decide(&p, T, &obs(20, 30.0), &l, &asked(20), 0);
    let d = decide(&p, T, &obs(20, 55.0), &l, &d.next, w / 2);
    assert_eq!(d.reason, Reason::InBand);
    let start = w / 2 + 10;
    let d = decide(&p, T, &obs(20, 30.0), &l, &d.next, start);
    let d = decide(&p, T, &obs(20, 30.0), &l, &d.next, start + w - 10);
    assert_eq!((d.desired, d.reason), (20, Reason::Stabilizing));
    let d = decide(&p, T, &obs(20, 30.0), &l, &d.next, start + w);
    assert_eq!(d.reason, Reason::ScaleDown);
}

#[test]
fn scale_down_goes_no_lower_than_the_window_needed() {
    let p = Policy {
        max_step_down: 1.0,
        ..Policy::default()
    };
    let l = limits(1, None, None);
    // The first sample of the window needed 8 (20 * 24 / 60), the later ones fewer.
    let w = p.stabilization_seconds;
    let d = decide(&p, T, &obs(20, 24.0), &l, &asked(20), 0);
    let d = decide(&p, T, &obs(20, 6.0), &l, &d.next, w / 2);
    let d = decide(&p, T, &obs(20, 6.0), &l, &d.next, w);
    assert_eq!((d.desired, d.reason), (8, Reason::ScaleDown));
}

#[test]
fn min_and_max_bound_the_wish() {
    let l = limits(3, Some(12), None);
    assert_eq!(once(&obs(10, 100.0), &l, &asked(10)), (12, Reason::ScaleUp));
    assert_eq!(once(&obs(12, 100.0), &l, &asked(12)), (12, Reason::AtLimit));
    let p = Policy::default();
    let d = decide(&p, T, &obs(3, 5.0), &l, &asked(3), 0);
    assert_eq!((d.desired, d.reason), (3, Reason::AtLimit));
    let d = decide(&p, T, &obs(3, 5.0), &l, &d.next, 600);
    assert_eq!((d.desired, d.reason), (3, Reason::AtLimit));
    // A raised min applies at once, whatever was asked before.
    let raised = limits(8, Some(12), None);
    assert_eq!(once(&obs(3, 60.0), &raised, &asked(3)).0, 8);
    // 0/0 deactivates.
    assert_eq!(
        once(&obs(3, 99.0), &limits(0, Some(0), None), &asked(3)).0,
        0
    );
}

#[test]
fn the_vcpu_ceiling_caps_the_wish() {
    let l = limits(3, None, Some(14));
    assert_eq!(once(&obs(10, 100.0), &l, &asked(10)), (14, Reason::ScaleUp));
    assert_eq!(once(&obs(14, 100.0), &l, &asked(14)), (14, Reason::AtLimit));
    // Even below min: more could not be placed.
    assert_eq!(
        once(&obs(2, 60.0), &limits(3, None, Some(2)), &asked(2)).0,
        2
    );
}

#[test]
fn no_ready_ee_keeps_what_was_asked() {
    let l = limits(3, None, None);
    let o = Observation {
        live_ees: 3,
        ..obs(0, 0.0)
    };
    assert_eq!(once(&o, &l, &asked(7)), (7, Reason::NoSignal));
    assert_eq!(once(&o, &l, &ScalerState::default()), (3, Reason::NoSignal));
}

#[test]
fn state_round_trips_through_json() {
    let s = ScalerState {
        desired: Some(4),
        below_since: Some(17),
        below_needed: 2,
    };
    let text = serde_json::to_string(&s).expect("serializes");
    assert_eq!(text, r#"{"desired":4,"belowSince":17,"belowNeeded":2}"#);
    assert_eq!(
        serde_json::from_str::<ScalerState>(&text).expect("parses"),
        s
    );
}

#[test]
fn scale_down_continues_step_by_step_to_min() {
    let l = limits(2, Some(10), Some(500));
    let mut state = asked(4);
    let mut desired = 4;
    let mut steps = Vec::new();
    for second in 0..200 {
        let d = decide(
            &Policy::default(),
            50.0,
            &obs(desired, 2.0),
            &l,
            &state,
            1000 + second,
        );
        if d.desired != desired {
            steps.push((second, d.desired));
        }
        desired = d.desired;
        state = d.next;
    }
    assert_eq!(
        steps.iter().map(|s| s.1).collect::<Vec<_>>(),
        vec![3, 2],
        "{steps:?}"
    );
}

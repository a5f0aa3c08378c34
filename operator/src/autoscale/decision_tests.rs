//! Unit tests of the scaling decision: the band and its edges, scale-up, the stabilization window
//! and bounded step of scale-down, min/max and the vCPU ceiling, and the trend (scale-up and
//! scale-down ahead).

use lmi_crds::rules::ScalingBounds;

use super::decision::{Decision, Limits, Observation, Policy, Reason, ScalerState, Trend, decide};

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
        trend: None,
    };
    let text = serde_json::to_string(&s).expect("serializes");
    // A state written before the trend existed reads the same.
    assert_eq!(text, r#"{"desired":4,"belowSince":17,"belowNeeded":2}"#);
    assert_eq!(
        serde_json::from_str::<ScalerState>(&text).expect("parses"),
        s
    );
    let with_trend = ScalerState {
        trend: Some(Trend {
            level: 250.5,
            slope: -0.25,
            at: 40,
        }),
        ..s
    };
    let text = serde_json::to_string(&with_trend).expect("serializes");
    assert_eq!(
        text,
        r#"{"desired":4,"belowSince":17,"belowNeeded":2,"trend":{"level":250.5,"slope":-0.25,"at":40}}"#
    );
    assert_eq!(
        serde_json::from_str::<ScalerState>(&text).expect("parses"),
        with_trend
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

/// Feeds `cpu(t)` for 10 ready EEs every 10 s from t=0 until the decision changes the count (or
/// t reaches `until`); returns the decision that did, with the CPU it saw.
fn until_change(
    p: &Policy,
    l: &Limits,
    cpu: impl Fn(i64) -> f64,
    until: i64,
) -> Option<(f64, Decision)> {
    let mut state = asked(10);
    for t in (0..=until).step_by(10) {
        let c = cpu(t);
        let d = decide(p, T, &obs(10, c), l, &state, t);
        if d.desired != 10 {
            return Some((c, d));
        }
        state = d.next;
    }
    None
}

#[test]
fn a_ramp_is_met_ahead_of_the_band() {
    let p = Policy::default();
    let l = limits(1, None, None);
    // 10 EEs from 50% up by 0.15 points a second: 1.5 EE-percent a second, 120 over the lead.
    let (cpu, d) = until_change(&p, &l, |t| 50.0 + 0.15 * t as f64, 300).expect("scales up");
    assert_eq!(d.reason, Reason::ScaleUpAhead);
    // Still within the band when it acts, and for the forecast demand, not the measured one.
    assert!(cpu <= T + p.band, "{cpu}");
    assert!(d.desired > 10 && d.desired == d.needed, "{d:?}");
    let reactive = (10.0 * cpu / T).ceil() as u32;
    assert!(d.desired > reactive, "{d:?} vs {reactive}");
    // The forecast at the end of the lead is within the band with what is asked.
    let forecast = 10.0 * (cpu + 0.15 * p.lead_seconds);
    assert!(forecast / f64::from(d.desired) <= T + p.band, "{d:?}");
}

#[test]
fn above_the_band_the_step_is_reactive_even_on_a_rising_trend() {
    // A rising trend, then a jump above the band: the step is ceil(n x U / T), as specified;
    // the forecast only acts while still in the band (a jump is a spike, not the trend).
    let p = Policy::default();
    let l = limits(1, None, None);
    let mut state = asked(2);
    for (t, cpu) in [(0, 50.0), (10, 54.0), (20, 58.0)] {
        state = decide(&p, 50.0, &obs(2, cpu), &l, &state, t).next;
    }
    let d = decide(&p, 50.0, &obs(2, 95.0), &l, &state, 30);
    assert_eq!(
        (d.desired, d.reason),
        (4, Reason::ScaleUp),
        "ceil(2 x 95 / 50) = 4"
    );
}

#[test]
fn without_a_lead_the_rule_is_purely_reactive() {
    let p = Policy {
        lead_seconds: 0.0,
        ..Policy::default()
    };
    let l = limits(1, None, None);
    let (cpu, d) = until_change(&p, &l, |t| 50.0 + 0.15 * t as f64, 300).expect("scales up");
    assert_eq!(d.reason, Reason::ScaleUp);
    assert!(cpu > T + p.band);
    assert_eq!(d.desired, (10.0 * cpu / T - 1e-9).ceil() as u32);
    // Falling: nothing until the stabilization window below the band has passed.
    let (cpu, d) = until_change(&p, &l, |t| 70.0 - 0.15 * t as f64, 600).expect("scales down");
    assert_eq!(d.reason, Reason::ScaleDown);
    assert!(cpu < T - p.band);
}

#[test]
fn noise_around_the_target_moves_nothing() {
    let p = Policy::default();
    let l = limits(1, None, None);
    // +/- 6 points around the target, alternating: no trend, always within the band.
    let wobble = |t: i64| if (t / 10) % 2 == 0 { T + 6.0 } else { T - 6.0 };
    assert_eq!(until_change(&p, &l, wobble, 600), None);
    // Steady at either edge of the band: no trend, no change.
    assert_eq!(until_change(&p, &l, |_| T + p.band, 600), None);
    assert_eq!(until_change(&p, &l, |_| T - p.band, 600), None);
}

#[test]
fn the_forecast_believes_no_more_than_the_doubling_it_is_built_for() {
    let p = Policy::default();
    let l = limits(1, None, None);
    // A steep climb within the band: 2 points a second.
    let (cpu, d) = until_change(&p, &l, |t| 50.0 + 2.0 * t as f64, 60).expect("scales up");
    // At most 1 + lead / 300 times the measured demand.
    let most = (10.0 * cpu * (1.0 + p.lead_seconds / 300.0) / T).ceil() as u32;
    assert!(d.desired <= most, "{d:?} > {most}");
}

#[test]
fn refusals_restart_the_trend() {
    let p = Policy::default();
    let l = limits(1, None, None);
    let rising = ScalerState {
        trend: Some(Trend {
            level: 500.0,
            slope: 5.0,
            at: 990,
        }),
        ..asked(10)
    };
    let refusing = Observation {
        throttled_share: 0.5,
        ..obs(10, 90.0)
    };
    let d = decide(&p, T, &refusing, &l, &rising, 1000);
    let trend = d.next.trend.expect("trend");
    assert_eq!((trend.level, trend.slope, trend.at), (1800.0, 0.0, 1000));
    // Sized on the measured demand alone: ceil(10 * 180 / 60).
    assert_eq!((d.desired, d.reason), (30, Reason::ScaleUp));
    // The same rise without refusals is believed.
    let d = decide(&p, T, &obs(10, 65.0), &l, &rising, 1000);
    assert_eq!(d.reason, Reason::ScaleUpAhead);
}

#[test]
fn a_stale_trend_starts_again() {
    let p = Policy::default();
    let l = limits(1, None, None);
    let old = ScalerState {
        trend: Some(Trend {
            level: 100.0,
            slope: 50.0,
            at: 0,
        }),
        ..asked(10)
    };
    let d = decide(&p, T, &obs(10, 65.0), &l, &old, 1000);
    assert_eq!(d.reason, Reason::InBand);
    assert_eq!(d.next.trend.map(|t| t.slope), Some(0.0));
    // No signal keeps the trend as it was.
    let none = Observation {
        live_ees: 10,
        ..obs(0, 0.0)
    };
    assert_eq!(decide(&p, T, &none, &l, &old, 1000).next.trend, old.trend);
}

#[test]
fn a_fall_is_met_ahead_of_the_band_with_a_bounded_step() {
    let p = Policy::default();
    let l = limits(1, None, None);
    // 10 EEs from 70% down by 0.3 points a second.
    let (cpu, d) = until_change(&p, &l, |t| 70.0 - 0.3 * t as f64, 300).expect("scales down");
    assert_eq!(d.reason, Reason::ScaleDownAhead);
    assert!(cpu >= T - p.band, "{cpu}");
    // To the target for the demand measured now, never past it, and at most 25% of the EEs.
    assert_eq!(
        d.desired,
        ((10.0 * cpu / T - 1e-9).ceil() as u32).max(10 - 3)
    );
    assert!(10.0 * cpu / f64::from(d.desired) <= T + p.band);
    // A new stabilization window starts.
    assert_eq!(d.next.below_since, None);
}

#[test]
fn ahead_decisions_stay_within_min_max_and_the_ceiling() {
    let p = Policy::default();
    let up = |t: i64| 50.0 + 0.15 * t as f64;
    // Max 11: the scale-up ahead stops there.
    let (_, d) = until_change(&p, &limits(1, Some(11), None), up, 300).expect("scales up");
    assert_eq!((d.desired, d.reason), (11, Reason::ScaleUpAhead));
    // The ceiling at 10: nothing to add, whatever the trend; above the band it says so.
    let (cpu, d) = until_change(&p, &limits(1, None, Some(10)), up, 300)
        .map_or((0.0, None), |(c, d)| (c, Some(d)));
    assert_eq!(d, None, "{cpu}");
    let mut state = asked(10);
    for t in (0..=200).step_by(10) {
        state = decide(
            &p,
            T,
            &obs(10, up(t)),
            &limits(1, None, Some(10)),
            &state,
            t,
        )
        .next;
    }
    let d = decide(
        &p,
        T,
        &obs(10, up(210)),
        &limits(1, None, Some(10)),
        &state,
        210,
    );
    assert_eq!((d.desired, d.reason), (10, Reason::AtLimit));
    // Min 10: a fall ahead of the band removes nothing.
    let down = |t: i64| 70.0 - 0.3 * t as f64;
    let mut state = asked(10);
    for t in (0..=150).step_by(10) {
        let d = decide(&p, T, &obs(10, down(t)), &limits(10, None, None), &state, t);
        assert_eq!(d.desired, 10, "t={t} {d:?}");
        state = d.next;
    }
}

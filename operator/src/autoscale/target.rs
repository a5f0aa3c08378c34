//! The CPU target of a version: the capacity provider's Manual target, or in Auto mode one derived
//! from how long it takes to add capacity.
//!
//! # The Auto rule
//!
//! LMI promises that traffic may double within 5 minutes without throttling. Read as a rate, the
//! worst case is a linear climb that starts now: after `r` seconds the load is `1 + r/300` times
//! what it was (an exponential doubling, `2^(r/300)`, grows more slowly at first, so the linear
//! reading is the stricter one for `r` below 300 s).
//!
//! A scale-up starts when utilization passes the band's top, `T + band`. The new capacity serves
//! only after the *reaction time* `r`: up to one sampling interval to notice, the launch of an
//! instance when no node has room, and the EE's start-up. Until then the load keeps growing on the
//! old capacity, so utilization reaches `(T + band) * (1 + r/300)`. No invocation is refused as
//! long as that stays below the sidecar's CPU refusal threshold `C` (90% by default):
//!
//! ```text
//! T = C / (1 + r/300) - band
//! ```
//!
//! With a 10 s interval, 60 s instance launches and 10 s EE start-ups (`r = 80 s`) that is
//! `90 / 1.267 - 10 = 61%`; with 30 s launches it is 67%. The result is kept within
//! [`AUTO_TARGET_MIN`, `AUTO_TARGET_MAX`]: below 30% the provider would pay for mostly idle
//! instances, and above 70% the band would reach the refusal threshold itself.

use std::time::Duration;

use lmi_crds::capacity_provider::{CapacityScalingConfig, ScalingMode};

/// Half-width of the band around the target, in utilization points.
pub const BAND_POINTS: f64 = 10.0;
/// The period over which traffic may double without throttling.
pub const DOUBLING_PERIOD: Duration = Duration::from_secs(300);
/// Bounds of an Auto target (percent).
pub const AUTO_TARGET_MIN: f64 = 30.0;
pub const AUTO_TARGET_MAX: f64 = 70.0;
/// The sidecar's default CPU refusal threshold (percent of the EE's CPU limit).
pub const DEFAULT_CPU_REFUSAL_PERCENT: f64 = 90.0;

/// How long capacity takes to arrive, the inputs of the Auto rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reaction {
    /// How often utilization is sampled and a decision taken.
    pub sample_interval: Duration,
    /// From NodeClaim creation to a schedulable node.
    pub instance_launch: Duration,
    /// From EE pod creation to Ready (runtime initialized).
    pub ee_startup: Duration,
}

impl Reaction {
    /// Worst-case seconds from the moment utilization leaves the band to new EEs serving.
    pub fn seconds(&self) -> f64 {
        (self.sample_interval + self.instance_launch + self.ee_startup).as_secs_f64()
    }
}

impl Default for Reaction {
    fn default() -> Self {
        Self {
            sample_interval: Duration::from_secs(10),
            instance_launch: Duration::from_secs(60),
            ee_startup: Duration::from_secs(10),
        }
    }
}

/// The Auto target (percent) for a reaction time and the sidecar's CPU refusal threshold.
pub fn auto_target(reaction: &Reaction, cpu_refusal_percent: f64) -> f64 {
    let growth = 1.0 + reaction.seconds() / DOUBLING_PERIOD.as_secs_f64();
    let target = cpu_refusal_percent / growth - BAND_POINTS;
    // Whole percents: the target shows up in status and metrics, and 61.04 says nothing 61 does not.
    target.floor().clamp(AUTO_TARGET_MIN, AUTO_TARGET_MAX)
}

/// The target (percent) of every version on a capacity provider with this scaling config.
///
/// A Manual target is taken as given, except that 0 is read as 1: the decision divides by it.
pub fn target_for(
    scaling: &CapacityScalingConfig,
    reaction: &Reaction,
    cpu_refusal_percent: f64,
) -> f64 {
    match (scaling.scaling_mode, scaling.target_cpu_utilization) {
        (ScalingMode::Manual, Some(t)) => f64::from(t.clamp(1, 100)),
        // Manual without a target is refused by the CRD's CEL rule; fall back to Auto if it slips by.
        _ => auto_target(reaction, cpu_refusal_percent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reaction(interval: u64, launch: u64, startup: u64) -> Reaction {
        Reaction {
            sample_interval: Duration::from_secs(interval),
            instance_launch: Duration::from_secs(launch),
            ee_startup: Duration::from_secs(startup),
        }
    }

    #[test]
    fn auto_target_follows_the_reaction_time() {
        assert_eq!(auto_target(&Reaction::default(), 90.0), 61.0);
        assert_eq!(auto_target(&reaction(10, 30, 10), 90.0), 67.0);
        // Slow launches leave more headroom, down to the floor.
        assert_eq!(auto_target(&reaction(10, 600, 10), 90.0), AUTO_TARGET_MIN);
        // Instant capacity would allow 80%, but the band must stay below the threshold.
        assert_eq!(auto_target(&reaction(0, 0, 0), 90.0), AUTO_TARGET_MAX);
    }

    #[test]
    fn doubling_after_the_reaction_time_stays_below_the_refusal_threshold() {
        for launch in [0, 30, 60, 90, 120] {
            let r = reaction(10, launch, 10);
            let t = auto_target(&r, 90.0);
            let peak = (t + BAND_POINTS) * (1.0 + r.seconds() / 300.0);
            assert!(peak <= 90.0 + 1e-9, "launch {launch}: peak {peak}");
        }
    }

    #[test]
    fn manual_target_wins_in_manual_mode() {
        let manual = CapacityScalingConfig {
            max_v_cpu_count: 400,
            scaling_mode: ScalingMode::Manual,
            target_cpu_utilization: Some(45),
        };
        assert_eq!(target_for(&manual, &Reaction::default(), 90.0), 45.0);
        let zero = CapacityScalingConfig {
            target_cpu_utilization: Some(0),
            ..manual.clone()
        };
        assert_eq!(target_for(&zero, &Reaction::default(), 90.0), 1.0);
        let auto = CapacityScalingConfig::default();
        assert_eq!(target_for(&auto, &Reaction::default(), 90.0), 61.0);
    }
}

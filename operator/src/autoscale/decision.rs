//! The scaling decision of one version: from what its EEs did during the last sampling interval to
//! how many EEs it should have. Pure; the state it carries between decisions is plain data that
//! the caller keeps (in memory, or in an annotation: it serializes).

use lmi_crds::rules::ScalingBounds;
use serde::{Deserialize, Serialize};

use super::target::BAND_POINTS;

/// Tunables of the decision. The defaults are the ones the simulator was tuned with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Half-width of the band around the target (points).
    pub band: f64,
    /// Mean in-flight over the concurrency limit (0-1) at which the version scales up whatever its
    /// CPU says: an I/O-bound function fills its slots long before it uses its CPU.
    pub saturation_threshold: f64,
    /// How long utilization must stay below the band, without a break, before EEs are removed.
    /// Noise that dips below the band once must not remove an EE the next sample needs back.
    pub stabilization_seconds: i64,
    /// At most this share of the EEs (and at least one) goes in one scale-down.
    pub max_step_down: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            band: BAND_POINTS,
            saturation_threshold: 0.8,
            stabilization_seconds: 30,
            max_step_down: 0.25,
        }
    }
}

/// What a version's EEs are doing at the sampling instant, aggregated over its Ready EEs.
///
/// Take all three figures over the same short window (the sidecar's smoothed CPU covers the last
/// few seconds; count 429s over as many): a long window mixes the load before EEs joined with the
/// EEs after, and over-counts the demand. The simulator smooths totals with weight 0.3 per second.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Observation {
    /// Ready EEs the averages are over (not draining, not starting).
    pub ready_ees: u32,
    /// EEs that exist and are not going away (ready or starting): what was last asked for.
    pub live_ees: u32,
    /// Mean CPU utilization of the ready EEs, percent of their CPU limit.
    pub cpu_percent: f64,
    /// Mean in-flight invocations over the concurrency limit (0-1).
    pub saturation: f64,
    /// Share (0-1) of the version's invocations that got a 429 lately. Refused work never
    /// shows up as CPU, so without it a version pinned at the refusal threshold would look only a
    /// little above the band however large the overload.
    pub throttled_share: f64,
}

/// Limits the decision must stay within.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub bounds: ScalingBounds,
    /// Most EEs of this version the capacity provider's `maxVCpuCount` can hold (see
    /// [`super::vcpu_ceiling_ees`]); `None`: no ceiling (Static providers).
    pub ceiling: Option<u32>,
}

impl Limits {
    /// `wanted` within [min, max] and the ceiling. The ceiling wins over min: more could not be
    /// placed anyway, and the planner reports `VcpuLimitExceeded` for the shortfall.
    pub fn clamp(&self, wanted: u32) -> u32 {
        if self.bounds.is_deactivated() {
            return 0;
        }
        let within = self.bounds.clamp(wanted);
        self.ceiling.map_or(within, |c| within.min(c))
    }
}

/// What the decision remembers between samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalerState {
    /// The last desired count (the wish given to the planner).
    pub desired: Option<u32>,
    /// Since when (unix seconds) every sample has been below the band.
    pub below_since: Option<i64>,
    /// The most EEs any sample since `below_since` needed: the scale-down goes no lower.
    pub below_needed: u32,
}

/// Why the decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No ready EE, so no measurement: keep what was asked.
    NoSignal,
    /// Utilization within the band.
    InBand,
    /// Above the band (or concurrency saturated): scale up at once.
    ScaleUp,
    /// Above the band, but what is already asked for covers it (EEs still starting).
    UpPending,
    /// Below the band, waiting out the stabilization window.
    Stabilizing,
    /// Below the band for the whole window: scale down by a bounded step.
    ScaleDown,
    /// Out of the band but pinned at min, max or the vCPU ceiling.
    AtLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoSignal => "NoSignal",
            Reason::InBand => "InBand",
            Reason::ScaleUp => "ScaleUp",
            Reason::UpPending => "UpPending",
            Reason::Stabilizing => "Stabilizing",
            Reason::ScaleDown => "ScaleDown",
            Reason::AtLimit => "AtLimit",
        }
    }
}

/// The outcome: the wish for the planner and the state for the next decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Desired EEs, within the limits: set it as `VersionView::wish`.
    pub desired: u32,
    pub reason: Reason,
    /// The utilization the decision acted on: measured CPU with refused work added back.
    pub demand_percent: f64,
    /// EEs that would bring `demand_percent` to the target.
    pub needed: u32,
    pub next: ScalerState,
}

/// `n * x / target`, rounded up, as an EE count.
fn scaled(n: u32, x: f64, target: f64) -> u32 {
    // The epsilon keeps float noise (10 * 0.9 / 0.6 = 15.000000000000002) from adding an EE.
    let v = (f64::from(n) * x / target.max(1e-9) - 1e-9).ceil();
    // Saturating float-to-int conversion is what we want for absurd inputs.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = v.clamp(0.0, f64::from(u32::MAX)) as u32;
    v
}

/// Decides the desired EE count of one version at `now` (unix seconds).
///
/// `target` is in percent (see [`super::target_for`]). Within `target +/- band`: no change. Above
/// (or when concurrency saturation reaches the threshold): at once to
/// `ceil(ready * U / target)`, never below what is already asked. Below: only once every sample
/// for `stabilization_seconds` was below, then to the largest count any of those samples needed,
/// removing at most `max_step_down` of the EEs.
pub fn decide(
    policy: &Policy,
    target: f64,
    obs: &Observation,
    limits: &Limits,
    state: &ScalerState,
    now: i64,
) -> Decision {
    let current = limits.clamp(state.desired.unwrap_or(obs.live_ees));
    let reset = ScalerState {
        desired: Some(current),
        below_since: None,
        below_needed: 0,
    };
    if obs.ready_ees == 0 {
        return Decision {
            desired: current,
            reason: Reason::NoSignal,
            demand_percent: 0.0,
            needed: current,
            next: reset,
        };
    }
    // Refused invocations are demand the CPU figure does not show: add them back. Capped so a
    // version refusing nearly everything does not ask for an absurd count (the next sample,
    // taken with more EEs, corrects the estimate).
    let served = (1.0 - obs.throttled_share).clamp(0.05, 1.0);
    let demand = obs.cpu_percent / served;
    let saturation = obs.saturation / served;
    let n = obs.ready_ees;
    let needed = scaled(n, demand, target);

    let above = demand > target + policy.band;
    let saturated = saturation >= policy.saturation_threshold;
    if above || saturated {
        let mut wanted = needed;
        if saturated {
            // Bring concurrency to the same share of its limit as CPU is brought to of its own.
            wanted = wanted.max(scaled(n, saturation, target / 100.0));
        }
        let desired = limits.clamp(current.max(wanted));
        let reason = if desired > current {
            Reason::ScaleUp
        } else if limits.clamp(wanted) < wanted {
            Reason::AtLimit
        } else {
            Reason::UpPending
        };
        return Decision {
            desired,
            reason,
            demand_percent: demand,
            needed: wanted,
            next: ScalerState {
                desired: Some(desired),
                ..reset
            },
        };
    }
    if demand >= target - policy.band {
        return Decision {
            desired: current,
            reason: Reason::InBand,
            demand_percent: demand,
            needed,
            next: reset,
        };
    }

    // Below the band.
    let since = state.below_since.unwrap_or(now);
    let below_needed = state.below_needed.max(needed);
    if now - since < policy.stabilization_seconds {
        let at_floor = limits.clamp(needed) >= current;
        return Decision {
            desired: current,
            reason: if at_floor {
                Reason::AtLimit
            } else {
                Reason::Stabilizing
            },
            demand_percent: demand,
            needed,
            next: ScalerState {
                desired: Some(current),
                below_since: Some(since),
                below_needed,
            },
        };
    }
    let step = scaled(current, policy.max_step_down, 1.0).max(1);
    let desired = limits.clamp(below_needed.max(current.saturating_sub(step)));
    Decision {
        desired,
        reason: if desired < current {
            Reason::ScaleDown
        } else {
            Reason::AtLimit
        },
        demand_percent: demand,
        needed,
        // A new window starts: the samples after this change are the ones that count.
        next: ScalerState {
            desired: Some(desired),
            ..reset
        },
    }
}

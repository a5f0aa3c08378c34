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
    /// How far ahead (seconds) a scale-up looks: the reaction time, from a decision to new EEs
    /// serving (see [`super::Reaction::seconds`]; [`Policy::for_reaction`]). Zero: no forecast
    /// either way, the rule is purely reactive. (A scale-down ahead looks as far as the
    /// stabilization window: removing EEs takes effect at once, waiting is its only delay.)
    pub lead_seconds: f64,
    /// Weight of a new sample in the demand's smoothed level (Holt's alpha, 0-1).
    pub level_smoothing: f64,
    /// Weight of a new sample in the demand's smoothed slope (Holt's beta, 0-1).
    pub slope_smoothing: f64,
    /// Most growth the forecast believes, as a share of the demand per second. A spike's first
    /// samples (refused work added back) make a huge slope; the forecast is for the ramps the Auto
    /// target is built for, the reactive rule handles the rest.
    pub max_growth_per_second: f64,
    /// Within the band, a scale-up starts ahead when the utilization forecast at the end of the
    /// lead passes `target + ahead_margin` with what is already asked for.
    pub ahead_margin: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            band: BAND_POINTS,
            saturation_threshold: 0.8,
            stabilization_seconds: 30,
            max_step_down: 0.25,
            lead_seconds: super::Reaction::default().seconds(),
            level_smoothing: 0.5,
            slope_smoothing: 0.2,
            max_growth_per_second: 1.0 / super::target::DOUBLING_PERIOD.as_secs_f64(),
            ahead_margin: BAND_POINTS,
        }
    }
}

impl Policy {
    /// The default policy, looking ahead by this reaction time.
    pub fn for_reaction(reaction: &super::Reaction) -> Self {
        Self {
            lead_seconds: reaction.seconds(),
            ..Self::default()
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
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalerState {
    /// The last desired count (the wish given to the planner).
    pub desired: Option<u32>,
    /// Since when (unix seconds) every sample has been below the band.
    pub below_since: Option<i64>,
    /// The most EEs any sample since `below_since` needed: the scale-down goes no lower.
    pub below_needed: u32,
    /// The version's demand, smoothed, and how fast it moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
}

/// The demand of a version (ready EEs x utilization, in EE-percent: 3 EEs at 50% are 150)
/// smoothed with Holt's linear method: a level and a slope, as of a time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trend {
    pub level: f64,
    /// EE-percent per second.
    pub slope: f64,
    /// Unix seconds of the last sample.
    pub at: i64,
}

/// A version refusing more than this share of its invocations is in a spike: its trend restarts.
const THROTTLED_RESTARTS_TREND: f64 = 0.01;

/// A trend older than this (seconds) says nothing about the load now: it starts again.
const TREND_STALE_SECONDS: i64 = 120;

impl Trend {
    /// The trend after a sample of `demand` (EE-percent) at `now`.
    fn update(previous: Option<Trend>, policy: &Policy, demand: f64, now: i64) -> Trend {
        let fresh = Trend {
            level: demand,
            slope: 0.0,
            at: now,
        };
        let Some(p) = previous else {
            return fresh;
        };
        let dt = now - p.at;
        if dt > TREND_STALE_SECONDS || !p.level.is_finite() || !p.slope.is_finite() {
            return fresh;
        }
        if dt <= 0 {
            return Trend {
                level: p.level + policy.level_smoothing * (demand - p.level),
                ..p
            };
        }
        #[allow(clippy::cast_precision_loss)]
        let dt = dt as f64;
        let predicted = p.level + p.slope * dt;
        let level = predicted + policy.level_smoothing * (demand - predicted);
        let slope = p.slope + policy.slope_smoothing * ((level - p.level) / dt - p.slope);
        Trend {
            level,
            slope,
            at: now,
        }
    }

    /// The demand `lead` seconds ahead of `demand` (EE-percent, measured now): growth only (a
    /// falling load is met by the scale-down), at most `max_growth_per_second` of `demand` per
    /// second.
    fn ahead(&self, policy: &Policy, demand: f64) -> f64 {
        let growth = self
            .slope
            .clamp(0.0, policy.max_growth_per_second * demand.max(0.0));
        demand + growth * policy.lead_seconds.max(0.0)
    }

    /// The demand `seconds` ahead of `demand`: decline only, at most `max_growth_per_second`
    /// of `demand` per second.
    fn behind(&self, policy: &Policy, demand: f64, seconds: f64) -> f64 {
        let decline = self
            .slope
            .clamp(-policy.max_growth_per_second * demand.max(0.0), 0.0);
        demand + decline * seconds.max(0.0)
    }
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
    /// Not above the band yet, but the trend takes it above `target + ahead_margin` before new
    /// capacity could serve: scale up now, for the demand forecast at that time.
    ScaleUpAhead,
    /// Above the band, but what is already asked for covers it (EEs still starting).
    UpPending,
    /// Below the band, waiting out the stabilization window.
    Stabilizing,
    /// Below the band for the whole window: scale down by a bounded step.
    ScaleDown,
    /// Still in the band, but falling so fast that it would be below the band before the
    /// stabilization window could end: scale down to the target now, by a bounded step.
    ScaleDownAhead,
    /// Out of the band but pinned at min, max or the vCPU ceiling.
    AtLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoSignal => "NoSignal",
            Reason::InBand => "InBand",
            Reason::ScaleUp => "ScaleUp",
            Reason::ScaleUpAhead => "ScaleUpAhead",
            Reason::UpPending => "UpPending",
            Reason::Stabilizing => "Stabilizing",
            Reason::ScaleDown => "ScaleDown",
            Reason::ScaleDownAhead => "ScaleDownAhead",
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
/// `target` is in percent (see [`super::target_for`]). Above the band (or when concurrency
/// saturation reaches the threshold): at once to `ceil(ready * U / target)`, never below what
/// is already asked (a jump out of the band is a spike, not the trend: sizing it for the trend
/// over-provisions, and the simulator shows no gain from it). Not above the band, but forecast above `target + ahead_margin` at the end of the lead
/// with what is asked: scale up ahead, to the forecast. Within the band but falling so fast that
/// it would be below it before `stabilization_seconds` could pass: scale down ahead, to the
/// target (a bounded step). Otherwise, within the band: no change. Below: only once every sample
/// for `stabilization_seconds` was below, then to the largest count any of those samples
/// needed, removing at most `max_step_down` of the EEs.
pub fn decide(
    policy: &Policy,
    target: f64,
    obs: &Observation,
    limits: &Limits,
    state: &ScalerState,
    now: i64,
) -> Decision {
    let current = limits.clamp(state.desired.unwrap_or(obs.live_ees));
    if obs.ready_ees == 0 {
        return Decision {
            desired: current,
            reason: Reason::NoSignal,
            demand_percent: 0.0,
            needed: current,
            next: ScalerState {
                desired: Some(current),
                below_since: None,
                below_needed: 0,
                trend: state.trend,
            },
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
    let total = f64::from(n) * demand;
    // Refusing work is a jump the Auto target was not built for (a spike, not a ramp), and the
    // demand is an estimate then: the trend starts again, and only the reactive rule acts.
    let trend = if obs.throttled_share > THROTTLED_RESTARTS_TREND {
        Trend::update(None, policy, total, now)
    } else {
        Trend::update(state.trend, policy, total, now)
    };
    let ahead = trend.ahead(policy, total);
    let needed_ahead = scaled(1, ahead, target);
    let reset = ScalerState {
        desired: Some(current),
        below_since: None,
        below_needed: 0,
        trend: Some(trend),
    };

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
    // What is asked for, at the demand forecast for when new capacity could serve.
    if current > 0 && ahead > total && ahead / f64::from(current) > target + policy.ahead_margin {
        let desired = limits.clamp(current.max(needed_ahead));
        if desired > current {
            return Decision {
                desired,
                reason: Reason::ScaleUpAhead,
                demand_percent: demand,
                needed: needed_ahead,
                next: ScalerState {
                    desired: Some(desired),
                    ..reset
                },
            };
        }
    }
    if demand >= target - policy.band {
        // Falling so fast that it would be below the band before the stabilization window could
        // end: bring it to the target now (the step still bounded).
        let falling = trend.behind(policy, total, policy.stabilization_seconds as f64);
        if policy.lead_seconds > 0.0
            && falling < total
            && current > 0
            && falling / f64::from(current) < target - policy.band
        {
            let step = scaled(current, policy.max_step_down, 1.0).max(1);
            let desired = limits.clamp(needed.max(current.saturating_sub(step)));
            if desired < current {
                return Decision {
                    desired,
                    reason: Reason::ScaleDownAhead,
                    demand_percent: demand,
                    needed,
                    next: ScalerState {
                        desired: Some(desired),
                        ..reset
                    },
                };
            }
        }
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
                below_since: Some(since),
                below_needed,
                ..reset
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

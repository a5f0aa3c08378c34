//! The autoscaler's decision: per version, a CPU target `T` and a band of +/- 10 points around
//! it; how many EEs the version should have. Pure, shared by the operator and the simulator
//! (`lmi-sim`), which proves the rule against load profiles. It depends on nothing else of this
//! crate: the simulator and the controllers call it, never the other way round.
//!
//! # Calling it from the operator
//!
//! Every sampling interval, for each version on a capacity provider:
//!
//! ```text
//! let reaction = Reaction { sample_interval, instance_launch, ee_startup };   // settings
//! let target = target_for(&cp.spec.scaling_config, &reaction, DEFAULT_CPU_REFUSAL_PERCENT);
//! let obs = Observation {                 // aggregated from the sidecars over the interval
//!     ready_ees, live_ees,                // Ready EEs measured; EEs alive (ready or starting)
//!     cpu_percent,                        // mean CPU of the ready EEs, % of their limit
//!     saturation,                         // mean in-flight / max concurrency, 0-1
//!     throttled_share,                    // 429s / invocations of the version, 0-1
//!                                         // (all over the same few seconds: see Observation)
//! };
//! let limits = Limits {
//!     bounds: version_view.bounds,
//!     // Karpenter: vcpu_ceiling_ees(catalog, max_vcpu, vCPUs of the other versions' EEs, &shape, &reqs)
//!     ceiling,
//! };
//! let policy = Policy::for_reaction(&reaction);   // looks ahead by the reaction time
//! let d = decide(&policy, target, &obs, &limits, &state[version], now_unix_seconds);
//! state[version] = d.next;                // keep per version (it serializes, e.g. to an annotation)
//! version_view.wish = Some(d.desired);    // then plan_capacity(&snapshot, catalog) as today
//! ```
//!
//! The decision never does I/O and never looks at the clock: `now` and the state come in, the
//! wish and the next state go out. `Decision::reason` says why (for status, events and metrics).
//! A version with no ready EE gives no signal: the decision keeps what was asked.
//!
//! # The rule
//!
//! - Within `T +/- 10`: no change, unless the trend says it leaves the band before the rule
//!   could react (below).
//! - Above the band, or mean concurrency saturation at 80% or more: scale up at once to
//!   `ceil(n * U / T)` (`n` ready EEs, `U` their mean CPU with refused invocations added back),
//!   or to the demand forecast for when new EEs serve if that is more; never below what is
//!   already asked (EEs still starting are not counted twice).
//! - The trend: the demand `n * U` smoothed (Holt: a level and a slope). A rise that takes `U`
//!   above the band, with what is asked, within the reaction time (interval + launch + start-up)
//!   scales up *ahead*, to put the forecast demand at `T`. A fall that takes it below the band
//!   within the stabilization window scales down ahead, to `T` now (a bounded step). The
//!   forecast believes at most the growth the Auto target is built for (doubling in 5 minutes),
//!   and restarts while the version refuses work (a spike is the reactive rule's business).
//! - Below the band: only after every sample for the stabilization window (30 s) was below, to
//!   the largest count those samples needed, removing at most 25% of the EEs (at least one).
//! - Always within the version's [min, max] and the capacity provider's vCPU ceiling.
//!
//! How `T` is chosen in Auto mode is documented in [`target`].

pub mod ceiling;
pub mod decision;
pub mod target;
pub mod version_scaling;

pub use ceiling::vcpu_ceiling_ees;
pub use decision::{Decision, Limits, Observation, Policy, Reason, ScalerState, Trend, decide};
pub use target::{BAND_POINTS, DEFAULT_CPU_REFUSAL_PERCENT, Reaction, auto_target, target_for};

#[cfg(test)]
mod decision_tests;

//! What a run records: every function's seconds, the autoscaler's samples, and the cost of the
//! run and of the oracle. Plain data between the engine (which fills it) and the report and plot
//! (which read it).

use crate::autoscale::Reason;

/// One function's second.
#[derive(Debug, Clone, PartialEq)]
pub struct Second {
    pub t: i64,
    pub function: usize,
    pub rate: f64,
    pub arrivals: u64,
    pub admitted: u64,
    pub throttled: u64,
    /// CPU utilization of the ready EEs this second (percent).
    pub cpu_percent: f64,
    /// The last sample the autoscaler acted on (percent).
    pub sampled_percent: f64,
    pub ready: u32,
    pub live: u32,
    pub desired: u32,
    pub reason: &'static str,
    /// The capacity provider's instances (launching or up) and their vCPUs.
    pub instances: u32,
    pub instance_vcpu: u32,
    /// EEs the oracle holds for this function.
    pub oracle_ees: u32,
}

/// One decision of one function.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub function: usize,
    pub cpu_percent: f64,
    pub ready: u32,
    pub desired: u32,
    pub reason: Reason,
    /// Out of the band only because the count is pinned: below the band at the version's min
    /// (nothing to remove), or above it at its max or the vCPU ceiling (nothing to add).
    pub pinned: bool,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Run {
    pub target: f64,
    pub band: f64,
    pub seconds: Vec<Second>,
    pub samples: Vec<Sample>,
    pub instance_seconds: f64,
    pub on_demand_usd: f64,
    pub oracle_instance_seconds: f64,
    pub oracle_on_demand_usd: f64,
    /// Instances replaced for their age (see `--lifetime-s`).
    pub instances_replaced: u32,
}

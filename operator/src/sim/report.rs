//! What a run reports: the per-second time series (CSV) and the summary.

use std::fmt::Write as _;

use super::outcome::Run;
use super::scenario::{MANAGEMENT_FEE, Scenario};

/// The summary of one function in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSummary {
    pub name: String,
    /// Share of samples with CPU within target +/- band.
    pub in_band: f64,
    /// Share of samples in the band, or out of it only because the EE count is pinned at min,
    /// max or the vCPU ceiling.
    pub in_band_or_pinned: f64,
    pub invocations: u64,
    pub throttled: u64,
    /// The longest stretch with throttles (seconds; throttles less than 10 s apart join).
    pub longest_throttling_seconds: i64,
    pub peak_ees: u32,
    /// Live EEs (ready or starting) over time, and the oracle's: what the decision itself asks
    /// for, apart from how the planner packs it on instances.
    pub ee_hours: f64,
    pub oracle_ee_hours: f64,
}

impl FunctionSummary {
    pub fn throttled_share(&self) -> f64 {
        if self.invocations == 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let share = self.throttled as f64 / self.invocations as f64;
        share
    }
}

/// The summary of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub profile: String,
    pub target: f64,
    pub functions: Vec<FunctionSummary>,
    pub instance_hours: f64,
    /// On-demand price plus the management fee.
    pub cost_usd: f64,
    pub oracle_instance_hours: f64,
    pub oracle_cost_usd: f64,
    pub instances_replaced: u32,
}

impl Summary {
    pub fn cost_ratio(&self) -> f64 {
        if self.oracle_cost_usd <= 0.0 {
            return 0.0;
        }
        self.cost_usd / self.oracle_cost_usd
    }
}

/// Summarizes a run.
pub fn summarize(scenario: &Scenario, run: &Run) -> Summary {
    let functions = scenario
        .functions
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let samples: Vec<_> = run.samples.iter().filter(|s| s.function == i).collect();
            let in_band_of = |cpu: f64| (cpu - run.target).abs() <= run.band;
            let count = samples.len().max(1);
            let in_band = samples.iter().filter(|s| in_band_of(s.cpu_percent)).count();
            let in_band_or_pinned = samples
                .iter()
                .filter(|s| in_band_of(s.cpu_percent) || s.pinned)
                .count();
            let seconds: Vec<_> = run.seconds.iter().filter(|s| s.function == i).collect();
            let mut longest = 0;
            let mut stretch: Option<(i64, i64)> = None;
            for s in seconds.iter().filter(|s| s.throttled > 0) {
                stretch = match stretch {
                    Some((start, last)) if s.t - last < 10 => Some((start, s.t)),
                    _ => Some((s.t, s.t)),
                };
                if let Some((start, last)) = stretch {
                    longest = longest.max(last - start + 1);
                }
            }
            #[allow(clippy::cast_precision_loss)]
            let share = |k: usize| k as f64 / count as f64;
            FunctionSummary {
                name: f.name.clone(),
                in_band: share(in_band),
                in_band_or_pinned: share(in_band_or_pinned),
                invocations: seconds.iter().map(|s| s.arrivals).sum(),
                throttled: seconds.iter().map(|s| s.throttled).sum(),
                longest_throttling_seconds: longest,
                peak_ees: seconds.iter().map(|s| s.live).max().unwrap_or(0),
                ee_hours: seconds.iter().map(|s| f64::from(s.live)).sum::<f64>() / 3600.0,
                oracle_ee_hours: seconds.iter().map(|s| f64::from(s.oracle_ees)).sum::<f64>()
                    / 3600.0,
            }
        })
        .collect();
    Summary {
        profile: scenario.profile.name.clone(),
        target: run.target,
        functions,
        instance_hours: run.instance_seconds / 3600.0,
        cost_usd: run.on_demand_usd * (1.0 + MANAGEMENT_FEE),
        oracle_instance_hours: run.oracle_instance_seconds / 3600.0,
        oracle_cost_usd: run.oracle_on_demand_usd * (1.0 + MANAGEMENT_FEE),
        instances_replaced: run.instances_replaced,
    }
}

/// The header of the summary table (Markdown).
pub fn table_header() -> String {
    "| profile | function | target | in band | in band or pinned | throttled | longest throttling | peak EEs | EE-hours (oracle) | instance-hours (oracle) | cost USD (oracle) | cost / oracle | instances replaced |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        .to_string()
}

/// The summary as table rows (Markdown), one per function; the provider's numbers on each.
pub fn table_rows(s: &Summary) -> String {
    let mut out = String::new();
    for f in &s.functions {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0}% | {:.1}% | {:.1}% | {:.3}% ({} of {}) | {} s | {} | {:.1} ({:.1}) | {:.2} ({:.2}) | {:.3} ({:.3}) | {:.2} | {} |",
            s.profile,
            f.name,
            s.target,
            f.in_band * 100.0,
            f.in_band_or_pinned * 100.0,
            f.throttled_share() * 100.0,
            f.throttled,
            f.invocations,
            f.longest_throttling_seconds,
            f.peak_ees,
            f.ee_hours,
            f.oracle_ee_hours,
            s.instance_hours,
            s.oracle_instance_hours,
            s.cost_usd,
            s.oracle_cost_usd,
            s.cost_ratio(),
            s.instances_replaced,
        );
    }
    out
}

/// The per-second time series as CSV, one row per function and second.
pub fn csv(scenario: &Scenario, run: &Run) -> String {
    let mut out = String::from(
        "t,function,rate,arrivals,admitted,throttled,cpu_percent,sampled_cpu_percent,target,ready_ees,live_ees,desired_ees,reason,instances,instance_vcpu,oracle_ees\n",
    );
    for s in &run.seconds {
        let name = scenario
            .functions
            .get(s.function)
            .map_or("", |f| f.name.as_str());
        let _ = writeln!(
            out,
            "{},{},{:.2},{},{},{},{:.2},{:.2},{:.0},{},{},{},{},{},{},{}",
            s.t,
            name,
            s.rate,
            s.arrivals,
            s.admitted,
            s.throttled,
            s.cpu_percent,
            s.sampled_percent,
            run.target,
            s.ready,
            s.live,
            s.desired,
            s.reason,
            s.instances,
            s.instance_vcpu,
            s.oracle_ees,
        );
    }
    out
}

//! The simulated cluster: NodeClaims that become nodes after the launch delay, EEs that become
//! Ready after the start-up delay and drain before they go. It turns itself into the planner's
//! `Snapshot` and applies the planner's `CapacityPlan`, as the controllers do with the real API.

use lmi_crds::catalog::{Catalog, ee_pod_resources};
use lmi_crds::rules::ScalingBounds;

use super::scenario::Scenario;
use crate::plan::{CapacityPlan, ClaimView, EeView, NodeView, Provisioner, Snapshot, VersionView};

const NAMESPACE: &str = "sim";

#[derive(Debug, Clone)]
struct Claim {
    name: String,
    instance_type: String,
    zone: String,
    vcpu: u32,
    price_per_hour: f64,
    launched_at: i64,
    node_at: i64,
    empty_since: Option<i64>,
    consolidating_since: Option<i64>,
    replacing_since: Option<i64>,
}

impl Claim {
    fn node_name(&self) -> String {
        format!("node-{}", self.name)
    }
}

#[derive(Debug, Clone)]
struct Ee {
    name: String,
    function: usize,
    node: String,
    created_at: i64,
    ready_at: i64,
    /// Draining since the plan removed it: serves nothing new, gone at this time.
    gone_at: Option<i64>,
}

/// Counts of one function's EEs at an instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EeCounts {
    /// Ready and not draining: they take invocations.
    pub ready: u32,
    /// Not draining (ready or starting).
    pub live: u32,
}

/// The simulated world of one capacity provider.
#[derive(Debug, Clone, Default)]
pub struct World {
    claims: Vec<Claim>,
    ees: Vec<Ee>,
    /// Instance-seconds and on-demand dollars so far.
    pub instance_seconds: f64,
    pub on_demand_usd: f64,
    /// Instances marked for replacement so far.
    pub replaced: u32,
}

impl World {
    /// Version key of function `i` (`namespace/name`).
    pub fn version_key(scenario: &Scenario, i: usize) -> String {
        format!("{NAMESPACE}/{}-1", scenario.functions[i].name)
    }

    /// The planner's view at `now`, with the autoscaler's wishes.
    pub fn snapshot(
        &self,
        scenario: &Scenario,
        catalog: &Catalog,
        wishes: &[Option<u32>],
        now: i64,
    ) -> Snapshot {
        let nodes = self
            .claims
            .iter()
            .filter(|c| c.node_at <= now)
            .filter_map(|c| {
                let (cpu, memory) = catalog.get(&c.instance_type)?.allocatable();
                Some(NodeView {
                    name: c.node_name(),
                    zone: c.zone.clone(),
                    cpu_millis: u64::from(cpu),
                    memory_mib: memory,
                    schedulable: true,
                })
            })
            .collect();
        let claims = self
            .claims
            .iter()
            .map(|c| ClaimView {
                name: c.name.clone(),
                instance_type: c.instance_type.clone(),
                zone: c.zone.clone(),
                node_name: (c.node_at <= now).then(|| c.node_name()),
                empty_since: c.empty_since,
                consolidating_since: c.consolidating_since,
                replacing_since: c.replacing_since,
                created_at: Some(c.launched_at),
                image_id: None,
                deleting: false,
                launched: true,
                launch_message: None,
            })
            .collect();
        let ees = self
            .ees
            .iter()
            .map(|e| {
                let shape = &scenario.functions[e.function].shape;
                let (cpu, memory) = ee_pod_resources(shape);
                EeView {
                    namespace: NAMESPACE.to_string(),
                    name: e.name.clone(),
                    version_key: Self::version_key(scenario, e.function),
                    node: Some(e.node.clone()),
                    cpu_millis: u64::from(cpu),
                    memory_mib: memory,
                    ready: e.ready_at <= now && e.gone_at.is_none(),
                    terminating: e.gone_at.is_some(),
                    finished: false,
                    init_failure: None,
                    created_at: Some(e.created_at),
                }
            })
            .collect();
        let versions = scenario
            .functions
            .iter()
            .enumerate()
            .map(|(i, f)| VersionView {
                key: Self::version_key(scenario, i),
                pod_prefix: format!("{}-1-ee-", f.name),
                shape: f.shape,
                bounds: f.bounds,
                wish: wishes.get(i).copied().flatten(),
                previous_state: None,
            })
            .collect();
        Snapshot {
            capacity_provider: scenario.provider.name.clone(),
            provisioner: Provisioner::Karpenter {
                zones: scenario.provider.zones.clone(),
                max_vcpu: scenario.provider.max_vcpu,
                requirements: scenario.provider.requirements.clone(),
            },
            nodes,
            claims,
            ees,
            versions,
            now,
            empty_claim_cooldown_seconds: scenario.params.empty_claim_cooldown_seconds,
            // The operator's defaults: the simulator measures the product as it ships.
            consolidation: Default::default(),
            // The simulated cloud launches every claim at once (its node comes after the
            // launch delay), so none fails.
            launch_timeout_seconds: 60,
            unavailable: Default::default(),
            lifecycle: crate::plan::snapshot::Lifecycle {
                max_lifetime_seconds: scenario.provider.max_lifetime_seconds,
                ..Default::default()
            },
        }
    }

    /// Applies a plan made at `now`, as the controllers would.
    pub fn apply(&mut self, scenario: &Scenario, catalog: &Catalog, plan: &CapacityPlan, now: i64) {
        for new in &plan.create_claims {
            let Some(t) = catalog.get(&new.instance_type) else {
                continue;
            };
            self.claims.push(Claim {
                name: new.name.clone(),
                instance_type: new.instance_type.clone(),
                zone: new.zone.clone(),
                vcpu: t.vcpu,
                price_per_hour: t.price_per_hour,
                launched_at: now,
                node_at: now + i64::from(scenario.params.instance_launch_seconds),
                empty_since: None,
                consolidating_since: None,
                replacing_since: None,
            });
        }
        for mark in &plan.mark_claims {
            if let Some(c) = self.claims.iter_mut().find(|c| c.name == mark.claim) {
                c.empty_since = mark.since;
            }
        }
        for mark in &plan.consolidate_claims {
            if let Some(c) = self.claims.iter_mut().find(|c| c.name == mark.claim) {
                c.consolidating_since = mark.since;
            }
        }
        for replacement in &plan.replacements {
            if let Some(c) = self.claims.iter_mut().find(|c| c.name == replacement.claim) {
                c.replacing_since = Some(now);
                self.replaced += 1;
            }
        }
        self.claims
            .retain(|c| !plan.delete_claims.contains(&c.name));
        for new in &plan.create_ees {
            let Some(function) = (0..scenario.functions.len())
                .find(|i| Self::version_key(scenario, *i) == new.version_key)
            else {
                continue;
            };
            self.ees.push(Ee {
                name: new.name.clone(),
                function,
                node: new.node.clone(),
                created_at: now,
                ready_at: now + i64::from(scenario.params.ee_startup_seconds),
                gone_at: None,
            });
        }
        for deleted in &plan.delete_ees {
            if let Some(e) = self.ees.iter_mut().find(|e| e.name == deleted.name) {
                if e.gone_at.is_some() {
                    continue;
                }
                // A serving EE drains: its in-flight invocations finish first. One that never
                // became ready has nothing to finish.
                let drain = if e.ready_at <= now {
                    scenario.functions[e.function]
                        .duration_seconds
                        .ceil()
                        .max(1.0)
                } else {
                    0.0
                };
                // Whole seconds of a bounded duration (<= 900 s).
                #[allow(clippy::cast_possible_truncation)]
                let drain = drain as i64;
                e.gone_at = Some(now + drain);
            }
        }
    }

    /// Removes the EEs whose drain has ended, and bills the instances for `dt` seconds.
    pub fn advance(&mut self, now: i64, dt: f64) {
        self.ees.retain(|e| e.gone_at.is_none_or(|g| g > now));
        for c in &self.claims {
            self.instance_seconds += dt;
            self.on_demand_usd += c.price_per_hour * dt / 3600.0;
        }
    }

    pub fn ee_counts(&self, function: usize, now: i64) -> EeCounts {
        let mut counts = EeCounts::default();
        for e in self
            .ees
            .iter()
            .filter(|e| e.function == function && e.gone_at.is_none())
        {
            counts.live += 1;
            if e.ready_at <= now {
                counts.ready += 1;
            }
        }
        counts
    }

    /// Instances (launching or up) and their vCPUs.
    pub fn instances(&self) -> (u32, u32) {
        let n = u32::try_from(self.claims.len()).unwrap_or(u32::MAX);
        (n, self.claims.iter().map(|c| c.vcpu).sum())
    }

    /// vCPUs requested by the live EEs of every function but `function`.
    pub fn others_vcpu(&self, scenario: &Scenario, function: usize) -> u32 {
        self.ees
            .iter()
            .filter(|e| e.function != function && e.gone_at.is_none())
            .map(|e| scenario.functions[e.function].shape.vcpus)
            .sum()
    }
}

/// Bounds with the deactivation rule applied, for the oracle.
pub fn floor_of(bounds: &ScalingBounds) -> u32 {
    if bounds.is_deactivated() {
        0
    } else {
        bounds.min
    }
}

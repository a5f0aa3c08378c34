//! The autoscaler's loop: every interval it samples each EE, decides per version how many EEs
//! it wants (`crate::autoscale::decide`), and asks the capacity provider's planner to act when a
//! wish changes. It never touches the invoke path, and never writes to the API itself: the
//! planner stays the one writer of EEs, NodeClaims and status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use lmi_crds::CapacityProvider;
use lmi_crds::capacity_provider::ProvisioningMode;
use lmi_crds::rules::{self, effective_scaling_config};
use tokio::sync::mpsc;

use crate::autoscale::{
    DEFAULT_CPU_REFUSAL_PERCENT, Limits, Observation, Policy, Reaction, ScalerState, decide,
    target_for, vcpu_ceiling_ees,
};
use crate::context::Context;
use crate::observe::key;
use crate::utilization::{Counters, UtilizationSource, observe_version};

/// What the autoscaler knows of one version, shared with the planner (which reads `wish`) and
/// the status writer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VersionScaling {
    pub wish: Option<u32>,
    pub state: ScalerState,
    pub observation: Option<Observation>,
    pub target_percent: f64,
}

/// What the autoscaler starts from for a version it has no memory of (a new version, or any
/// version after an operator restart or a change of leader): the desired count its status shows,
/// which the previous leader's wish set. Without this a restart would forget a scale-up whose EEs
/// are still starting and plan for the EEs that run now. The stabilization window starts again
/// (the safe side: no scale-down on a half-remembered window), and so does the trend.
pub fn resumed(status_desired: Option<i32>) -> VersionScaling {
    match status_desired
        .and_then(|d| u32::try_from(d).ok())
        .filter(|d| *d > 0)
    {
        Some(desired) => VersionScaling {
            wish: Some(desired),
            state: ScalerState {
                desired: Some(desired),
                ..ScalerState::default()
            },
            ..VersionScaling::default()
        },
        None => VersionScaling::default(),
    }
}

/// Shared by the autoscaler loop and the planner, by version key.
pub type ScalingTable = Arc<Mutex<BTreeMap<String, VersionScaling>>>;

/// Runs until the process stops.
pub async fn run(
    ctx: Arc<Context>,
    providers: Store<CapacityProvider>,
    source: Arc<dyn UtilizationSource>,
    replan: mpsc::UnboundedSender<ObjectRef<CapacityProvider>>,
) {
    let interval = ctx.settings.autoscale_interval;
    let reaction = Reaction {
        sample_interval: interval,
        ..Reaction::default()
    };
    let mut counters: BTreeMap<String, Counters> = BTreeMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if ctx.stores.ready().await.is_err() {
            return;
        }
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        tick(
            &ctx,
            &providers,
            source.as_ref(),
            &replan,
            &reaction,
            &mut counters,
            now,
        )
        .await;
    }
}

async fn tick(
    ctx: &Context,
    providers: &Store<CapacityProvider>,
    source: &dyn UtilizationSource,
    replan: &mpsc::UnboundedSender<ObjectRef<CapacityProvider>>,
    reaction: &Reaction,
    counters: &mut BTreeMap<String, Counters>,
    now: i64,
) {
    // Sample every EE that is not going away, all at once.
    let pods: Vec<_> = ctx
        .stores
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let samples = join_all(pods.iter().map(|p| source.sample(p))).await;
    let mut by_version: BTreeMap<String, (u32, Vec<(String, crate::utilization::Sample)>)> =
        BTreeMap::new();
    for (pod, sample) in pods.iter().zip(samples) {
        let Some(owner) = pod
            .owner_references()
            .iter()
            .find(|o| o.kind == "FunctionVersion")
        else {
            continue;
        };
        let entry = by_version
            .entry(key(pod.namespace().as_deref(), &owner.name))
            .or_default();
        entry.0 += 1;
        if let Some(sample) = sample {
            entry.1.push((pod.name_any(), sample));
        }
    }

    let versions = ctx.stores.versions.state();
    let functions = ctx.stores.functions.state();
    let mut changed_providers = Vec::new();
    let mut table = match ctx.scaling.lock() {
        Ok(table) => table.clone(),
        Err(_) => return,
    };
    for version in &versions {
        let Ok(shape) = rules::ee_shape(&version.spec.configuration) else {
            continue;
        };
        let cp_name = &version
            .spec
            .configuration
            .capacity_provider_config
            .capacity_provider_name;
        let Some(cp) = providers.get(&ObjectRef::new(cp_name)) else {
            continue;
        };
        let version_key = key(version.namespace().as_deref(), &version.name_any());
        let function = functions.iter().find(|f| {
            f.namespace() == version.namespace() && f.name_any() == version.spec.function_name
        });
        let latest = function
            .and_then(|f| f.status.as_ref())
            .and_then(|s| s.latest_published_version.as_deref())
            .and_then(|v| v.parse::<i32>().ok());
        let bounds = effective_scaling_config(
            version.spec.scaling_config.as_ref(),
            function.and_then(|f| f.spec.scaling_config.as_ref()),
            latest == Some(version.spec.version),
        );
        let (live, samples) = by_version.remove(&version_key).unwrap_or_default();
        let observation = observe_version(live, &samples, counters);
        for (pod, s) in &samples {
            counters.insert(
                pod.clone(),
                Counters {
                    invocations: s.invocations,
                    refusals: s.refusals,
                },
            );
        }
        let ceiling = (cp.spec.provisioning.mode == ProvisioningMode::Karpenter).then(|| {
            let others: u32 = versions
                .iter()
                .filter(|v| v.capacity_provider_name() == cp_name.as_str())
                .filter(|v| key(v.namespace().as_deref(), &v.name_any()) != version_key)
                .filter_map(|v| {
                    let k = key(v.namespace().as_deref(), &v.name_any());
                    let ees = table.get(&k).and_then(|s| s.wish).unwrap_or(0);
                    rules::ee_shape(&v.spec.configuration)
                        .ok()
                        .map(|s| s.vcpus * ees)
                })
                .sum();
            let max = u32::try_from(cp.spec.scaling_config.max_v_cpu_count).unwrap_or(0);
            vcpu_ceiling_ees(max, others, &shape, &cp.spec.instance_requirements)
        });
        let limits = Limits { bounds, ceiling };
        let target = target_for(
            &cp.spec.scaling_config,
            reaction,
            DEFAULT_CPU_REFUSAL_PERCENT,
        );
        let previous = table.get(&version_key).copied().unwrap_or_else(|| {
            resumed(
                version
                    .status
                    .as_ref()
                    .and_then(|s| s.desired_execution_environments),
            )
        });
        let decision = decide(
            &Policy::for_reaction(reaction),
            target,
            &observation,
            &limits,
            &previous.state,
            now,
        );
        // Without any signal yet the planner keeps to min; the wish starts with the first sample.
        let wish = match (observation.ready_ees, previous.wish) {
            (0, None) => None,
            _ => Some(decision.desired),
        };
        tracing::debug!(version = %version_key, ready = observation.ready_ees, live = observation.live_ees,
            cpu = observation.cpu_percent, target, desired = decision.desired, reason = decision.reason.as_str(),
            state = ?decision.next, "autoscaler decision");
        if wish != previous.wish {
            tracing::info!(version = %version_key, from = ?previous.wish, to = ?wish, reason = decision.reason.as_str(),
                cpu = observation.cpu_percent, target, "autoscaler wish");
            changed_providers.push(cp_name.clone());
        }
        let labels = [
            version.namespace().unwrap_or_default(),
            version.spec.function_name.clone(),
            version.spec.version.to_string(),
        ];
        let labels = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
        if observation.ready_ees > 0 {
            ctx.metrics
                .cpu_utilization
                .with_label_values(&labels)
                .set(observation.cpu_percent);
            ctx.metrics
                .concurrency_saturation
                .with_label_values(&labels)
                .set(observation.saturation);
        }
        ctx.metrics
            .cpu_target
            .with_label_values(&labels)
            .set(target);
        table.insert(
            version_key,
            VersionScaling {
                wish,
                state: decision.next,
                observation: (observation.ready_ees > 0).then_some(observation),
                target_percent: target,
            },
        );
    }
    // Versions that are gone leave the table, and their EEs' counters go with them.
    table.retain(|k, _| {
        versions
            .iter()
            .any(|v| key(v.namespace().as_deref(), &v.name_any()) == *k)
    });
    counters.retain(|pod, _| pods.iter().any(|p| p.name_any() == *pod));
    if let Ok(mut shared) = ctx.scaling.lock() {
        *shared = table;
    }
    changed_providers.sort();
    changed_providers.dedup();
    for cp in changed_providers {
        let _ = replan.send(ObjectRef::new(&cp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_resumes_from_the_desired_count_in_the_status() {
        let resumed = resumed(Some(4));
        assert_eq!(resumed.wish, Some(4));
        assert_eq!(resumed.state.desired, Some(4));
        assert_eq!(resumed.state.below_since, None, "the window starts again");
        assert!(resumed.state.trend.is_none());
    }

    #[test]
    fn nothing_to_resume_without_a_status() {
        assert_eq!(resumed(None), VersionScaling::default());
        assert_eq!(resumed(Some(0)), VersionScaling::default());
        assert_eq!(resumed(Some(-1)), VersionScaling::default());
    }
}

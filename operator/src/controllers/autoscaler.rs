//! The autoscaler's loop: every interval it samples each EE, decides per version how many EEs
//! it wants (`crate::autoscale::decide`), and asks the capacity provider's planner to act when a
//! wish changes. It never touches the invoke path, and never writes to the API itself: the
//! planner stays the one writer of EEs, NodeClaims and status.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use lmi_crds::capacity_provider::ProvisioningMode;
use lmi_crds::catalog::Catalog;
use lmi_crds::{CapacityProvider, FunctionVersion};
use tokio::sync::mpsc;

use crate::autoscale::version_scaling::{VersionScaling, resumed};
use crate::autoscale::{
    DEFAULT_CPU_REFUSAL_PERCENT, Limits, Policy, Reaction, decide, target_for, vcpu_ceiling_ees,
};
use crate::context::Context;
use crate::object_key::{key, key_of};
use crate::plan::VersionView;
use crate::utilization::{Counters, UtilizationSource, observe_version};
use crate::version_view::{Functions, version_view};

/// How many EEs are sampled at once. A sample takes about a millisecond, so 10,000 EEs take a
/// fraction of a second; EEs that do not answer take the source's timeout each, 512 at a time.
const SAMPLES_AT_ONCE: usize = 512;

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
    // Sample every EE that is not going away, a bounded number at a time: all 10,000 at once
    // held about 75 MiB of connection state at the peak.
    let pods: Vec<_> = ctx
        .stores
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    // Made first (a future does nothing until polled): a stream of a closure's futures would
    // keep the closure's borrows, which rustc cannot prove Send.
    let requests: Vec<_> = pods.iter().map(|p| source.sample(p)).collect();
    let samples: Vec<_> = futures::stream::iter(requests)
        .buffered(SAMPLES_AT_ONCE)
        .collect()
        .await;
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
    let functions = Functions::new(&functions);
    // The versions the planner plans, as it sees them: one whose Function is gone or being
    // deleted gets no decision, and one that breaks a rule gets no EE to decide for.
    let views: Vec<(&FunctionVersion, VersionView)> = versions
        .iter()
        .filter_map(|v| Some((v.as_ref(), version_view(v, &functions).ok()?)))
        .collect();
    let catalog = Catalog::builtin();
    let mut changed_providers = Vec::new();
    let mut table = match ctx.scaling.lock() {
        Ok(table) => table.clone(),
        Err(_) => return,
    };
    for (version, view) in &views {
        let cp_name = version.capacity_provider_name();
        let Some(cp) = providers.get(&ObjectRef::new(cp_name)) else {
            continue;
        };
        let version_key = view.key.clone();
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
            let others: u32 = views
                .iter()
                .filter(|(v, other)| {
                    v.capacity_provider_name() == cp_name && other.key != version_key
                })
                .map(|(_, other)| {
                    let ees = table.get(&other.key).and_then(|s| s.wish).unwrap_or(0);
                    other.shape.vcpus * ees
                })
                .sum();
            let max = u32::try_from(cp.spec.scaling_config.max_v_cpu_count).unwrap_or(0);
            vcpu_ceiling_ees(
                catalog,
                max,
                others,
                &view.shape,
                &cp.spec.instance_requirements,
            )
        });
        let limits = Limits {
            bounds: view.bounds,
            ceiling,
        };
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
            changed_providers.push(cp_name.to_string());
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
    table.retain(|k, _| versions.iter().any(|v| key_of(v.as_ref()) == *k));
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

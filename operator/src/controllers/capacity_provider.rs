//! The capacity provider controller: one planner per capacity provider places the EEs of every
//! version attached to it, launches and removes its NodeClaims, and writes the status of the
//! provider and of its versions. One writer per provider means placement never races itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use lmi_crds::capacity_provider::{CapacityProviderState, ProvisioningMode};
use lmi_crds::catalog::Catalog;
use lmi_crds::common::CAPACITY_PROVIDER_LABEL;
use lmi_crds::function_version::FunctionVersionStatus;
use lmi_crds::{CapacityProvider, CapacityProviderStatus, FunctionVersion, State};
use serde_json::json;

use std::collections::BTreeMap;

use crate::autoscale::version_scaling::VersionScaling;
use crate::conditions;
use crate::context::{Context, FIELD_MANAGER, PendingLaunch};
use crate::controllers::launch_refusals;
use crate::error::{Error, Result};
use crate::karpenter::{EC2NodeClass, NodeClaim, NodeClassChoice};
use crate::object_key::key_of;
use crate::observe::{
    CONSOLIDATING_SINCE_ANNOTATION, EMPTY_SINCE_ANNOTATION, ObserveOptions, Observed,
    REPLACING_SINCE_ANNOTATION, attached_versions, observe,
};
use crate::plan::capacity_plan::{FailedLaunch, VersionPlan};
use crate::plan::ee_pod::ee_pod;
use crate::plan::karpenter_objects::{node_claim, node_class};
use crate::plan::version_state::{VersionState, version_state};
use crate::plan::{CapacityPlan, plan_capacity};

pub const FINALIZER: &str = "lmi.dev/capacity-provider";
const CONTROLLER: &str = "capacityprovider";

pub async fn reconcile(cp: Arc<CapacityProvider>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics
        .reconciles
        .with_label_values(&[CONTROLLER])
        .inc();
    let api: Api<CapacityProvider> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, cp, |event| async {
        match event {
            FinalizerEvent::Apply(cp) => apply(&cp, &ctx).await,
            FinalizerEvent::Cleanup(cp) => cleanup(&cp, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics
        .reconcile_seconds
        .with_label_values(&[CONTROLLER])
        .observe(started.elapsed().as_secs_f64());
    result
}

pub fn error_policy(cp: Arc<CapacityProvider>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[CONTROLLER])
        .inc();
    match error {
        Error::DeletionBlocked { .. } => {
            tracing::info!(capacity_provider = %cp.name_any(), %error, "deletion waits")
        }
        _ => tracing::warn!(capacity_provider = %cp.name_any(), %error, "reconcile failed"),
    }
    Action::requeue(Duration::from_secs(5))
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// Observe -> plan -> apply -> status.
async fn apply(cp: &CapacityProvider, ctx: &Context) -> Result<Action> {
    ctx.stores.ready_for_reconcile().await?;
    let now = now();
    let karpenter = cp.spec.provisioning.mode == ProvisioningMode::Karpenter;
    if karpenter {
        match tokio::time::timeout(Duration::from_secs(30), ctx.stores.karpenter_ready()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::WatchNotReady(format!("a watch ended: {e}"))),
            Err(_) => {
                return Err(Error::Config(
                    "Karpenter's NodeClaims (and EC2NodeClasses) cannot be listed after 30 s: is Karpenter installed? (Static mode needs no Karpenter)".to_string(),
                ));
            }
        }
        if ctx.settings.node_class == NodeClassChoice::Ec2PerProvider {
            let class = node_class(cp, &ctx.settings.cluster_name, &ctx.settings.ami_alias);
            let api: Api<EC2NodeClass> = Api::all(ctx.client.clone());
            api.patch(
                &cp.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&class),
            )
            .await?;
        }
        for refused in launch_refusals::learn(ctx, &cp.name_any(), now).await? {
            report_failed_launch(cp, ctx, &refused).await;
        }
    }
    let cooldown = i64::try_from(ctx.settings.empty_claim_cooldown.as_secs()).unwrap_or(i64::MAX);
    let scaling = ctx.scaling.lock().map(|t| t.clone()).unwrap_or_default();
    let options = ObserveOptions {
        node_class: &ctx.settings.node_class,
        cooldown_seconds: cooldown,
        consolidation: ctx.settings.consolidation,
        launch_timeout_seconds: i64::try_from(ctx.settings.launch_timeout.as_secs())
            .unwrap_or(i64::MAX),
        unavailable: ctx.unavailable_offerings(now),
    };
    let observed = observe(cp, &ctx.stores, &scaling, now, &options);
    let plan = plan_capacity(&observed.snapshot, Catalog::builtin());
    tracing::debug!(
        capacity_provider = %cp.name_any(),
        versions = observed.snapshot.versions.len(),
        invalid = observed.invalid.len(),
        ees = observed.snapshot.ees.len(),
        zones_known = observed.zones_known,
        unplaced = plan.versions.values().map(|v| v.unplaced).sum::<u32>(),
        "planned"
    );
    apply_plan(cp, ctx, &observed, &plan).await?;
    write_version_statuses(ctx, &observed, &plan, &scaling).await?;
    write_status(cp, ctx, &observed, &plan, &scaling).await?;

    // While something waits (EEs without a node, zones not resolved yet, EEs moving off an
    // instance) plan again soon, besides the watches; an empty instance is looked at again when
    // its cool-down may have passed.
    let moving = !plan.moves.is_empty()
        || observed.snapshot.claims.iter().any(|c| {
            (c.consolidating_since.is_some() || c.replacing_since.is_some())
                && c.empty_since.is_none()
        })
        || !plan.replacements.is_empty();
    let waiting = !observed.zones_known || moving || plan.versions.values().any(|v| v.unplaced > 0);
    let cooling = plan.mark_claims.iter().any(|mark| mark.since.is_some())
        || observed
            .snapshot
            .claims
            .iter()
            .any(|c| c.empty_since.is_some());
    let next = if waiting {
        ctx.settings.resync.min(Duration::from_secs(2))
    } else if cooling {
        ctx.settings
            .empty_claim_cooldown
            .min(ctx.settings.resync)
            .max(Duration::from_secs(1))
    } else {
        ctx.settings.resync
    };
    Ok(Action::requeue(next))
}

/// Says that a NodeClaim did not launch: the log, and a Warning Event on its provider.
async fn report_failed_launch(cp: &CapacityProvider, ctx: &Context, failed: &FailedLaunch) {
    tracing::warn!(capacity_provider = %cp.name_any(), claim = %failed.claim, instance_type = %failed.instance_type, zone = %failed.zone, message = %failed.message, "instance failed to launch");
    ctx.event(
        cp,
        true,
        "InstanceLaunchFailed",
        format!(
            "NodeClaim {} ({} in {}) {}; {} in {} is avoided for {} s",
            failed.claim,
            failed.instance_type,
            failed.zone,
            failed.message,
            failed.instance_type,
            failed.zone,
            ctx.settings.unavailable_for.as_secs()
        ),
    )
    .await;
}

/// Creates and deletes EEs and NodeClaims. Creates use deterministic names, so a restart in the
/// middle of this leaves no duplicates (an existing name is success).
async fn apply_plan(
    cp: &CapacityProvider,
    ctx: &Context,
    observed: &Observed,
    plan: &CapacityPlan,
) -> Result<()> {
    let claims: Api<NodeClaim> = Api::all(ctx.client.clone());
    // Remembered before anything else: should this apply fail half-way, the next plan still
    // avoids the offering.
    for failed in &plan.failed_launches {
        ctx.remember_failed_launch(failed, observed.snapshot.now);
        ctx.launch_settled(&failed.claim);
        report_failed_launch(cp, ctx, failed).await;
    }
    for claim in &plan.create_claims {
        ignore_conflict(
            claims
                .create(
                    &PostParams::default(),
                    &node_claim(cp, claim, &ctx.settings.node_class),
                )
                .await,
        )?;
        ctx.launch_started(
            &claim.name,
            PendingLaunch {
                provider: cp.name_any(),
                instance_type: claim.instance_type.clone(),
                zone: claim.zone.clone(),
                created_at: observed.snapshot.now,
            },
        );
        tracing::info!(capacity_provider = %cp.name_any(), claim = %claim.name, instance_type = %claim.instance_type, zone = %claim.zone, "launching instance");
        ctx.event(
            cp,
            false,
            "LaunchingInstance",
            format!(
                "NodeClaim {} for a {} in {}",
                claim.name, claim.instance_type, claim.zone
            ),
        )
        .await;
    }
    // The consolidation mark goes first: should the operator stop before its replacement EEs
    // exist, the next plan starts them (rather than seeing surplus EEs to delete).
    for mark in &plan.consolidate_claims {
        let name = &mark.claim;
        annotate_claim(&claims, name, CONSOLIDATING_SINCE_ANNOTATION, mark.since).await?;
        let (reason, note) = match mark.since {
            Some(_) => (
                "ConsolidatingInstance",
                format!("NodeClaim {name}: its execution environments move to instances with room"),
            ),
            None => (
                "ConsolidationCalledOff",
                format!(
                    "NodeClaim {name} keeps its execution environments: a scale-up needs its room, or their replacements did not become ready"
                ),
            ),
        };
        tracing::info!(capacity_provider = %cp.name_any(), claim = %name, reason, "consolidation");
        ctx.event(cp, false, reason, note).await;
    }
    // Marked before its EEs' replacements are planned (in the next plan, which the mark's watch
    // event starts): from then on the instance takes no new EEs.
    for replacement in &plan.replacements {
        let name = &replacement.claim;
        annotate_claim(
            &claims,
            name,
            REPLACING_SINCE_ANNOTATION,
            Some(observed.snapshot.now),
        )
        .await?;
        tracing::info!(capacity_provider = %cp.name_any(), claim = %name, reason = %replacement.reason, "replacing instance");
        ctx.event(
            cp,
            false,
            "ReplacingInstance",
            format!(
                "NodeClaim {name} is replaced: {}. Its execution environments move to other instances (launched if needed) before it is removed",
                replacement.reason
            ),
        )
        .await;
    }
    for new in &plan.create_ees {
        let Some((version, view)) = observed.version(&new.version_key) else {
            continue;
        };
        let pod = ee_pod(
            version,
            &view.shape,
            &cp.name_any(),
            &new.name,
            &new.node,
            &ctx.settings.ee,
            &ctx.invoke_key,
        );
        let pods: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &version.namespace().unwrap_or_default());
        ignore_conflict(pods.create(&PostParams::default(), &pod).await)?;
        tracing::info!(ee = %new.name, node = %new.node, "started execution environment");
    }
    for m in &plan.moves {
        tracing::info!(version = %m.version_key, from = %m.from, to = %m.to, replacement = %m.replacement,
            "moving execution environment: the old one drains once the replacement is ready");
    }
    for ee in &plan.delete_ees {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ee.namespace);
        ignore_not_found(
            pods.delete(&ee.name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
        tracing::info!(ee = %ee.name, "stopping execution environment");
    }
    for mark in &plan.mark_claims {
        annotate_claim(&claims, &mark.claim, EMPTY_SINCE_ANNOTATION, mark.since).await?;
    }
    for name in &plan.delete_claims {
        ignore_not_found(
            claims
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
        ctx.launch_settled(name);
        if plan.failed_launches.iter().any(|f| &f.claim == name) {
            continue; // said above
        }
        let replaced = observed
            .snapshot
            .claims
            .iter()
            .any(|c| &c.name == name && c.replacing_since.is_some());
        let note = if replaced {
            format!("NodeClaim {name} is replaced: its execution environments serve elsewhere")
        } else {
            format!("NodeClaim {name} held no execution environment")
        };
        tracing::info!(capacity_provider = %cp.name_any(), claim = %name, replaced, "removing empty instance");
        ctx.event(cp, false, "RemovingInstance", note).await;
    }
    Ok(())
}

/// A percentage as the whole number status shows.
fn percent(value: f64) -> i32 {
    // Utilization is 0-100 (a little more when a function bursts past its limit): it fits.
    #[allow(clippy::cast_possible_truncation)]
    let rounded = value.round().clamp(0.0, 1000.0) as i32;
    rounded
}

/// Mean CPU of the provider's Ready EEs, weighted by how many each version has.
fn provider_cpu(observed: &Observed, scaling: &BTreeMap<String, VersionScaling>) -> Option<i32> {
    let (sum, count) = observed
        .versions
        .keys()
        .filter_map(|k| scaling.get(k).and_then(|s| s.observation))
        .fold((0.0, 0u32), |(sum, n), o| {
            (
                sum + o.cpu_percent * f64::from(o.ready_ees),
                n + o.ready_ees,
            )
        });
    (count > 0).then(|| percent(sum / f64::from(count)))
}

fn ignore_conflict<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sets a NodeClaim's unix-seconds annotation `key`, or removes it (`None`); a NodeClaim already
/// gone needs neither.
async fn annotate_claim(
    claims: &Api<NodeClaim>,
    name: &str,
    key: &str,
    since: Option<i64>,
) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {key: since.map(|s| s.to_string())}}});
    ignore_not_found(
        claims
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ()),
    )
}

fn ignore_not_found(result: kube::Result<()>) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes each version's state, and an Event when it changes.
async fn write_version_statuses(
    ctx: &Context,
    observed: &Observed,
    plan: &CapacityPlan,
    scaling: &BTreeMap<String, VersionScaling>,
) -> Result<()> {
    for version_key in observed.versions.keys() {
        let Some((version, view)) = observed.version(version_key) else {
            continue;
        };
        let outcome = plan.versions.get(version_key).cloned().unwrap_or_default();
        let state = version_state(view.previous_state, &view.bounds, &outcome);
        write_version_status(
            ctx,
            version,
            &state,
            Some(&outcome),
            scaling.get(version_key),
        )
        .await?;
        let labels = [
            version.namespace().unwrap_or_default(),
            version.spec.function_name.clone(),
            version.spec.version.to_string(),
        ];
        let labels = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
        ctx.metrics
            .execution_environments
            .with_label_values(&labels)
            .set(i64::from(outcome.live));
        ctx.metrics
            .execution_environments_ready
            .with_label_values(&labels)
            .set(i64::from(outcome.ready));
    }
    for invalid in &observed.invalid {
        let state = VersionState {
            state: State::Failed,
            reason_code: Some(invalid.error.reason_code()),
            reason: Some(invalid.error.to_string()),
        };
        write_version_status(ctx, &invalid.version, &state, None, None).await?;
    }
    Ok(())
}

async fn write_version_status(
    ctx: &Context,
    version: &FunctionVersion,
    state: &VersionState,
    outcome: Option<&VersionPlan>,
    scaling: Option<&VersionScaling>,
) -> Result<()> {
    let current = version.status.clone().unwrap_or_default();
    let generation = version.metadata.generation;
    let mut conditions = current.conditions.clone();
    let (ready_reason, ready_message) = match state.state {
        State::Active => (
            "Active",
            "the minimum of execution environments is ready".to_string(),
        ),
        other => (
            state.reason_code.unwrap_or(other.as_str()),
            state
                .reason
                .clone()
                .unwrap_or_else(|| other.as_str().to_string()),
        ),
    };
    let ready_reason = ready_reason.replace('.', "");
    conditions::set(
        &mut conditions,
        "Ready",
        state.state == State::Active,
        &ready_reason,
        ready_message,
        generation,
    );
    let status = FunctionVersionStatus {
        state: Some(state.state),
        state_reason_code: state.reason_code.map(str::to_string),
        state_reason: state.reason.clone(),
        observed_generation: generation,
        desired_execution_environments: outcome
            .map(|o| i32::try_from(o.desired).unwrap_or(i32::MAX)),
        ready_execution_environments: outcome.map(|o| i32::try_from(o.ready).unwrap_or(i32::MAX)),
        cpu_utilization: scaling
            .and_then(|s| s.observation)
            .map(|o| percent(o.cpu_percent)),
        target_cpu_utilization: scaling.map(|s| percent(s.target_percent)),
        conditions,
    };
    // conditions::set keeps a condition's transition time while its status holds, so an
    // unchanged status compares equal and costs no write.
    let unchanged = current == status;
    if unchanged {
        return Ok(());
    }
    let api: Api<FunctionVersion> =
        Api::namespaced(ctx.client.clone(), &version.namespace().unwrap_or_default());
    crate::context::apply_status(&api, &version.name_any(), &status).await?;
    if current.state != status.state || current.state_reason_code != status.state_reason_code {
        let warning = matches!(state.state, State::Failed) || state.reason_code.is_some();
        let reason = state
            .reason_code
            .unwrap_or(state.state.as_str())
            .replace('.', "");
        let note = match &state.reason {
            Some(why) => format!("{}: {why}", state.state.as_str()),
            None => state.state.as_str().to_string(),
        };
        ctx.event(version, warning, &reason, note).await;
    }
    Ok(())
}

/// Writes the capacity provider's status.
async fn write_status(
    cp: &CapacityProvider,
    ctx: &Context,
    observed: &Observed,
    plan: &CapacityPlan,
    scaling: &BTreeMap<String, VersionScaling>,
) -> Result<()> {
    let current = cp.status.clone().unwrap_or_default();
    let generation = cp.metadata.generation;
    let mut conditions = current.conditions.clone();
    let state = if observed.zones_known {
        conditions::set(
            &mut conditions,
            "Ready",
            true,
            "Active",
            "capacity can be placed",
            generation,
        );
        CapacityProviderState::Active
    } else {
        conditions::set(
            &mut conditions,
            "Ready",
            false,
            "WaitingForSubnets",
            format!(
                "Karpenter has not resolved the subnets' zones yet (EC2NodeClass {} status.subnets)",
                cp.name_any()
            ),
            generation,
        );
        CapacityProviderState::Pending
    };
    conditions.retain(|c| c.type_ != "DeletionBlocked");
    // Offerings that failed to launch and are avoided now (this plan's failures included).
    let mut failed: Vec<String> = observed
        .snapshot
        .unavailable
        .iter()
        .map(|((t, z), why)| format!("{t} in {z}: {why}"))
        .chain(
            plan.failed_launches
                .iter()
                .map(|f| format!("{} in {}: {}", f.instance_type, f.zone, f.message)),
        )
        .collect();
    failed.sort();
    failed.dedup();
    if failed.is_empty() {
        conditions.retain(|c| c.type_ != "InstanceLaunchFailed");
    } else {
        conditions::set(
            &mut conditions,
            "InstanceLaunchFailed",
            true,
            "InstanceLaunchFailed",
            format!(
                "launching other instance types or zones instead of: {}",
                failed.join("; ")
            ),
            generation,
        );
    }
    let mut attached: Vec<String> = observed
        .versions
        .values()
        .map(|v| {
            format!(
                "{}/{}:{}",
                v.namespace().unwrap_or_default(),
                v.spec.function_name,
                v.spec.version
            )
        })
        .collect();
    attached.sort();
    let limit = cp.spec.scaling_config.max_v_cpu_count;
    let status = CapacityProviderStatus {
        state: Some(state),
        observed_generation: generation,
        v_cpu_allocated: Some(i32::try_from(plan.vcpu_allocated).unwrap_or(i32::MAX)),
        v_cpu_limit: Some(limit),
        instance_count: Some(i32::try_from(plan.instance_count).unwrap_or(i32::MAX)),
        instances_due_for_replacement: Some(i32::try_from(plan.instances_due).unwrap_or(i32::MAX)),
        cpu_utilization: provider_cpu(observed, scaling),
        attached_function_versions: attached,
        conditions,
    };
    let name = cp.name_any();
    ctx.metrics
        .vcpu_allocated
        .with_label_values(&[name.as_str()])
        .set(i64::from(plan.vcpu_allocated));
    ctx.metrics
        .vcpu_limit
        .with_label_values(&[name.as_str()])
        .set(i64::from(limit));
    ctx.metrics
        .instances
        .with_label_values(&[name.as_str()])
        .set(i64::from(plan.instance_count));
    patch_status_if_changed(cp, ctx, &current, status).await
}

async fn patch_status_if_changed(
    cp: &CapacityProvider,
    ctx: &Context,
    current: &CapacityProviderStatus,
    status: CapacityProviderStatus,
) -> Result<()> {
    // conditions::set keeps a condition's transition time while its status holds, so an
    // unchanged status compares equal and costs no write.
    let unchanged = *current == status;
    if unchanged {
        return Ok(());
    }
    let api: Api<CapacityProvider> = Api::all(ctx.client.clone());
    crate::context::apply_status(&api, &cp.name_any(), &status).await?;
    if current.state != status.state {
        let state = format!("{:?}", status.state.unwrap_or_default());
        let note = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        ctx.event(cp, false, &state, note).await;
    }
    Ok(())
}

/// Deletion: refused while function versions are attached; then the provider's NodeClaims and
/// EC2NodeClass go with it.
async fn cleanup(cp: &CapacityProvider, ctx: &Context) -> Result<Action> {
    let name = cp.name_any();
    let attached = attached_versions(&ctx.stores, &name);
    if !attached.is_empty() {
        let mut list: Vec<String> = attached.iter().map(|v| key_of(v.as_ref())).collect();
        list.truncate(10);
        let reason = format!(
            "{} function versions are attached ({}); delete their functions first",
            attached.len(),
            list.join(", ")
        );
        let current = cp.status.clone().unwrap_or_default();
        let mut status = current.clone();
        status.state = Some(CapacityProviderState::Deleting);
        conditions::set(
            &mut status.conditions,
            "DeletionBlocked",
            true,
            "VersionsAttached",
            reason.clone(),
            cp.metadata.generation,
        );
        if current.conditions != status.conditions {
            ctx.event(cp, true, "DeletionBlocked", reason.clone()).await;
        }
        patch_status_if_changed(cp, ctx, &current, status).await?;
        return Err(Error::DeletionBlocked { name, reason });
    }
    // Only Karpenter-mode providers launch instances; a Static one has nothing to release (and
    // its cluster may not serve Karpenter's kinds at all).
    if cp.spec.provisioning.mode == ProvisioningMode::Karpenter {
        let claims: Api<NodeClaim> = Api::all(ctx.client.clone());
        let selector = ListParams::default().labels(&format!("{CAPACITY_PROVIDER_LABEL}={name}"));
        claims
            .delete_collection(&DeleteParams::default(), &selector)
            .await?;
        if ctx.settings.node_class == NodeClassChoice::Ec2PerProvider {
            let classes: Api<EC2NodeClass> = Api::all(ctx.client.clone());
            ignore_not_found(
                classes
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            )?;
        }
    }
    ctx.event(
        cp,
        false,
        "Deleted",
        "no function versions attached; instances released".to_string(),
    )
    .await;
    Ok(Action::await_change())
}

/// Map from a label value to the capacity provider it names.
pub fn by_label<K: Resource>(
    object: &K,
) -> Option<kube::runtime::reflector::ObjectRef<CapacityProvider>> {
    object
        .meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(CAPACITY_PROVIDER_LABEL))
        .map(|name| kube::runtime::reflector::ObjectRef::new(name))
}

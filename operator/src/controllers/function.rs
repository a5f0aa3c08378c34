//! The function controller: checks a function against its capacity provider and, with
//! `publish: true`, turns each new configuration into the next FunctionVersion.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use lmi_crds::capacity_provider::ProvisioningMode;
use lmi_crds::catalog::Catalog;
use lmi_crds::common::{FUNCTION_LABEL, INSTANCE_LABEL, instance_label};
use lmi_crds::namespace_selector::not_allowed_message;
use lmi_crds::rules;
use lmi_crds::{CapacityProvider, Function, FunctionAlias, FunctionStatus, FunctionVersion, State};
use sha2::{Digest, Sha256};

use crate::conditions;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::plan::invoke_secrets::function_secret;
use crate::plan::publication::{CONFIG_SHA_ANNOTATION, published_version};
use crate::plan::retirement::{self, Retention, Retire, VersionFacts};

const CONTROLLER: &str = "function";

pub async fn reconcile(function: Arc<Function>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics
        .reconciles
        .with_label_values(&[CONTROLLER])
        .inc();
    let result = reconcile_inner(&function, &ctx).await;
    ctx.metrics
        .reconcile_seconds
        .with_label_values(&[CONTROLLER])
        .observe(started.elapsed().as_secs_f64());
    result
}

pub fn error_policy(function: Arc<Function>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[CONTROLLER])
        .inc();
    tracing::warn!(function = %function.name_any(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// SHA-256 (hex) of a function's configuration: serde writes struct fields in declaration order
/// and maps sorted, so equal configurations hash equally.
pub fn config_sha256(function: &Function) -> Result<String> {
    Ok(sha256_hex(&serde_json::to_vec(
        &function.spec.configuration,
    )?))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What is wrong with a function given its capacity provider and its namespace's labels (None:
/// nothing).
pub fn validate(
    function: &Function,
    cp: Option<&CapacityProvider>,
    namespace_labels: &BTreeMap<String, String>,
) -> Option<(&'static str, String)> {
    let config = &function.spec.configuration;
    let cp_name = &config.capacity_provider_config.capacity_provider_name;
    let Some(cp) = cp else {
        return Some((
            "CapacityProviderNotFound",
            format!("capacity provider {cp_name} does not exist"),
        ));
    };
    let instance_of = |labels| instance_label(labels).map(|(_, v)| v);
    let (cp_instance, fn_instance) = (
        instance_of(cp.metadata.labels.as_ref()),
        instance_of(function.metadata.labels.as_ref()),
    );
    if cp_instance != fn_instance {
        let describe = |i: Option<String>| i.map_or("none".to_string(), |i| format!("{i:?}"));
        return Some((
            "CapacityProviderNotFound",
            format!(
                "capacity provider {cp_name} belongs to operator instance {} (label {INSTANCE_LABEL}), this function to {}: they must match",
                describe(cp_instance),
                describe(fn_instance)
            ),
        ));
    }
    // The second line behind the admission policy, which a cluster may not have installed (or
    // which a namespace relabelled after admission slips past).
    if !cp.allows_namespace(namespace_labels) {
        return Some((
            rules::NAMESPACE_NOT_ALLOWED,
            not_allowed_message(cp_name, &function.namespace().unwrap_or_default()),
        ));
    }
    let shape = match rules::ee_shape(config) {
        Ok(shape) => shape,
        Err(e) => return Some(("InvalidConfiguration", e.to_string())),
    };
    let cp_arch = cp.spec.instance_requirements.architecture();
    if cp_arch != config.architecture {
        return Some((
            "ArchitectureMismatch",
            format!(
                "the function is {} but capacity provider {cp_name} runs {}",
                config.architecture.as_str(),
                cp_arch.as_str()
            ),
        ));
    }
    if cp.spec.provisioning.mode == ProvisioningMode::Karpenter
        && let Err(e) = Catalog::builtin().select(&cp.spec.instance_requirements, &shape)
    {
        return Some((
            "NoInstanceTypeFits",
            format!("capacity provider {cp_name}: {e}"),
        ));
    }
    None
}

async fn reconcile_inner(function: &Function, ctx: &Context) -> Result<Action> {
    // Versions and providers come from the caches: after a restart, a reconcile before they are
    // listed would publish the same configuration again.
    ctx.stores.ready_for_reconcile().await?;
    let namespace = function.namespace().unwrap_or_default();
    let name = function.name_any();
    let cp_name = &function
        .spec
        .configuration
        .capacity_provider_config
        .capacity_provider_name;
    // Before any version exists: its EEs' sidecars read the token from this Secret (and do not
    // start without it).
    apply_token_secret(function, ctx).await?;
    // From the caches: a resync that changes nothing sends no request. The caches are complete
    // (listed) before any reconcile. One may lag a version this operator has just created; the
    // next publication then takes the same number, which exists already (success), and the
    // version's watch event brings the reconcile that sees it.
    let cp = ctx
        .stores
        .capacity_providers
        .get(&ObjectRef::new(cp_name))
        .map(|cp| (*cp).clone());
    let versions: Vec<FunctionVersion> = ctx
        .stores
        .versions
        .state()
        .iter()
        .filter(|v| {
            v.namespace().as_deref() == Some(namespace.as_str())
                && v.labels().get(FUNCTION_LABEL) == Some(&name)
                && v.spec.function_name == name
        })
        .map(|v| (**v).clone())
        .collect();
    let highest = versions.iter().map(|v| v.spec.version).max();
    let problem = validate(
        function,
        cp.as_ref(),
        &ctx.stores.namespace_labels(&namespace),
    );
    let sha = config_sha256(function)?;

    let mut latest = highest;
    // Set when a new configuration waits for room under the provider's version limit.
    let mut waiting: Option<String> = None;
    if problem.is_none() && function.spec.publish {
        // As Lambda: publish only when the configuration differs from the latest version's.
        let already = versions
            .iter()
            .max_by_key(|v| v.spec.version)
            .is_some_and(|v| v.annotations().get(CONFIG_SHA_ANNOTATION) == Some(&sha));
        // Counted from the operator's cache of versions (its instance's): publications in the
        // same instant may pass the limit by a few, none is lost.
        let on_provider = ctx
            .stores
            .versions
            .state()
            .iter()
            .filter(|v| v.capacity_provider_name() == cp_name.as_str())
            .count();
        waiting = (!already)
            .then(|| rules::version_limit(cp_name, on_provider))
            .flatten();
        if !already && waiting.is_none() {
            let previous = function
                .status
                .as_ref()
                .and_then(|s| s.latest_published_version.as_deref())
                .and_then(|v| v.parse::<i32>().ok());
            let next = highest.max(previous).unwrap_or(0) + 1;
            publish(function, ctx, next, &sha).await?;
            latest = Some(next);
        }
    }

    let current = function.status.clone().unwrap_or_default();
    let generation = function.metadata.generation;
    let mut conditions = current.conditions.clone();
    let was_waiting = current
        .conditions
        .iter()
        .find(|c| c.type_ == "Published" && c.status == "False")
        .map(|c| c.message.clone());
    if function.spec.publish && problem.is_none() {
        match &waiting {
            Some(message) => conditions::set(
                &mut conditions,
                "Published",
                false,
                rules::VERSION_LIMIT_EXCEEDED,
                message.clone(),
                generation,
            ),
            None => conditions::set(
                &mut conditions,
                "Published",
                true,
                "Published",
                "the configuration is published",
                generation,
            ),
        }
    }
    let state = match &problem {
        Some((reason, message)) => {
            conditions::set(
                &mut conditions,
                "Ready",
                false,
                reason,
                message.clone(),
                generation,
            );
            if *reason == "CapacityProviderNotFound" {
                State::Pending
            } else {
                State::Failed
            }
        }
        None => {
            conditions::set(
                &mut conditions,
                "Ready",
                true,
                "Valid",
                "the configuration fits its capacity provider",
                generation,
            );
            State::Active
        }
    };
    let current_version = lmi_crds::rules::current_version(versions.iter().filter_map(|v| {
        let active = v.status.as_ref().and_then(|s| s.state) == Some(State::Active);
        u32::try_from(v.spec.version).ok().map(|n| (n, active))
    }));
    let status = FunctionStatus {
        state: Some(state),
        observed_generation: generation,
        latest_published_version: latest.map(|v| v.to_string()),
        current_version: current_version.map(|v| v.to_string()),
        queued_events: None,
        url: function.spec.url.as_ref().map(|_| {
            lmi_crds::function_url::function_url(&ctx.settings.url_template, &namespace, &name)
        }),
        config_sha256: Some(sha),
        conditions,
    };
    // conditions::set keeps a condition's transition time while its status holds, so an
    // unchanged status compares equal and costs no write.
    // queuedEvents is the event counter's (its own field manager), not part of this status.
    let unchanged = FunctionStatus {
        queued_events: None,
        ..current.clone()
    } == status;
    if !unchanged {
        let api: Api<Function> = Api::namespaced(ctx.client.clone(), &namespace);
        crate::context::apply_status(&api, &name, &status).await?;
        let old_problem = current
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
            .map(|c| c.message.clone());
        if let Some((reason, message)) = &problem
            && old_problem.as_deref() != Some(message.as_str())
        {
            ctx.event(function, true, reason, message.clone()).await;
        }
    }
    if let Some(message) = &waiting
        && was_waiting.as_deref() != Some(message.as_str())
    {
        ctx.event(
            function,
            true,
            rules::VERSION_LIMIT_EXCEEDED,
            message.clone(),
        )
        .await;
    }
    // Versions this function publishes are its to retire; versions made by hand are left alone.
    let recheck = match Retention::of(&function.spec) {
        Some(retention) if function.spec.publish && versions.len() > 1 => {
            retire(function, ctx, &versions, retention).await?
        }
        _ => None,
    };
    // A missing capacity provider may appear later, and room under the version limit when other
    // functions' versions go: look again now and then besides the watch.
    tracing::debug!(
        function = %name,
        problem = ?problem.as_ref().map(|(reason, _)| reason),
        waiting = waiting.is_some(),
        latest = ?latest,
        "reconciled"
    );
    let requeue = if waiting.is_some() {
        Duration::from_secs(10)
    } else if problem.is_some() {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(300)
    };
    Ok(Action::requeue(recheck.map_or(requeue, |r| r.min(requeue))))
}

/// Retires the versions that a rolling update replaced or that `versionRetention` no longer
/// keeps (observe -> `retirement::plan` -> apply). Returns when to look again, if a step waits
/// for time to pass; the versions' status changes bring the next steps otherwise.
async fn retire(
    function: &Function,
    ctx: &Context,
    versions: &[FunctionVersion],
    retention: Retention,
) -> Result<Option<Duration>> {
    let namespace = function.namespace().unwrap_or_default();
    let name = function.name_any();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let facts: Vec<VersionFacts> = versions
        .iter()
        .filter_map(|v| {
            let number = u32::try_from(v.spec.version).ok()?;
            let status = v.status.as_ref();
            let state = status.and_then(|s| s.state);
            let active_since = status
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .filter(|c| c.status == "True" && state == Some(State::Active))
                .map(|c| c.last_transition_time.0.as_second());
            Some(VersionFacts {
                number,
                state,
                deactivated: rules::scaling_bounds(v.spec.scaling_config.as_ref()).is_deactivated(),
                active_for: active_since
                    .map(|t| Duration::from_secs(u64::try_from(now - t).unwrap_or(0))),
            })
        })
        .collect();
    let aliased = aliased_versions(ctx, &namespace, &name).await?;
    let plan = retirement::plan(&facts, &aliased, retention);
    let api: Api<FunctionVersion> = Api::namespaced(ctx.client.clone(), &namespace);
    let newest_active = rules::current_version(
        facts
            .iter()
            .map(|f| (f.number, f.state == Some(State::Active))),
    )
    .unwrap_or_default();
    let why = match function.spec.publish_to {
        lmi_crds::function::PublishTo::LatestPublished => {
            format!("$LATEST.PUBLISHED rolled over to version {newest_active}")
        }
        lmi_crds::function::PublishTo::Version => {
            format!("versionRetention (newest Active: version {newest_active})")
        }
    };
    for step in &plan.steps {
        let (Retire::Deactivate(number) | Retire::Delete(number)) = *step;
        let Some(version) = versions
            .iter()
            .find(|v| u32::try_from(v.spec.version).ok() == Some(number))
        else {
            continue;
        };
        let object = version.name_any();
        match step {
            Retire::Deactivate(_) => {
                let zero = serde_json::json!({"spec": {"scalingConfig": {
                    "minExecutionEnvironments": 0, "maxExecutionEnvironments": 0
                }}});
                api.patch(&object, &PatchParams::default(), &Patch::Merge(&zero))
                    .await?;
                tracing::info!(function = %name, version = number, "retiring: deactivated");
                ctx.event(
                    function,
                    false,
                    "VersionDeactivated",
                    format!("version {number} deactivated, its EEs drain: {why}"),
                )
                .await;
            }
            Retire::Delete(_) => {
                match api.delete(&object, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(function = %name, version = number, "retired: deleted");
                ctx.event(
                    function,
                    false,
                    "VersionDeleted",
                    format!("version {number} deleted after it drained: {why}"),
                )
                .await;
            }
        }
    }
    Ok(plan.recheck_after)
}

/// The version numbers the function's aliases name (as `functionVersion` or with a weight).
/// Without the FunctionAlias CRD (an upgrade that installed no new CRDs) there are none.
async fn aliased_versions(
    ctx: &Context,
    namespace: &str,
    function: &str,
) -> Result<std::collections::BTreeSet<u32>> {
    let api: Api<FunctionAlias> = Api::namespaced(ctx.client.clone(), namespace);
    let aliases = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(aliases
        .iter()
        .filter(|a| a.spec.function_name == function)
        .flat_map(|a| {
            let weighted = a
                .spec
                .routing_config
                .iter()
                .flat_map(|r| r.additional_version_weights.keys());
            std::iter::once(&a.spec.function_version).chain(weighted)
        })
        .filter_map(|v| v.parse().ok())
        .collect())
}

/// Writes the Secret with the function's invoke token (server-side apply): the first time, when
/// the Secret this process last applied differs (a new key, a recreated Function), and on every
/// change of the Function (its generation), which also puts right a Secret someone edited or
/// deleted. A resync of an unchanged Function sends nothing: the operator may not read Secrets,
/// so what it applied is remembered instead (and forgotten on restart, which applies again).
async fn apply_token_secret(function: &Function, ctx: &Context) -> Result<()> {
    let Some(secret) = function_secret(function, &ctx.invoke_key) else {
        return Ok(());
    };
    let (Some(namespace), Some(name)) = (&secret.metadata.namespace, &secret.metadata.name) else {
        return Ok(());
    };
    let key = format!("{namespace}/{name}");
    let digest = format!(
        "{}@{}",
        sha256_hex(&serde_json::to_vec(&secret)?),
        function.metadata.generation.unwrap_or(0)
    );
    if !ctx.secret_outdated(&key, &digest) {
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await?;
    ctx.secret_applied(&key, &digest);
    Ok(())
}

/// Creates version `number` of `function` (see [`published_version`]); a version that exists
/// already is success.
async fn publish(function: &Function, ctx: &Context, number: i32, sha: &str) -> Result<()> {
    let namespace = function.namespace().unwrap_or_default();
    let name = function.name_any();
    let version = published_version(function, number, sha);
    let api: Api<FunctionVersion> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.create(&PostParams::default(), &version).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(function = %name, version = number, "published");
    ctx.event(
        function,
        false,
        "Published",
        format!("published version {number}"),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(labels: serde_json::Value) -> CapacityProvider {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lmi.dev/v1alpha1", "kind": "CapacityProvider",
            "metadata": {"name": "local", "labels": labels},
            "spec": {"provisioning": {"mode": "Static", "nodeSelector": {"lmi.dev/pool": "functions"}}}
        }))
        .unwrap()
    }

    fn function(labels: serde_json::Value) -> Function {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lmi.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": "f", "namespace": "default", "labels": labels},
            "spec": {
                "capacityProviderConfig": {"capacityProviderName": "local", "executionEnvironmentMemoryGiBPerVCpu": 2},
                "code": {"imageUri": "img"},
                "memorySize": 2048
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_function_and_its_provider_belong_to_one_operator_instance() {
        let e2e = serde_json::json!({"lmi.dev/instance": "e2e"});
        let none = serde_json::json!({});
        let labels = BTreeMap::new();
        assert_eq!(
            validate(
                &function(e2e.clone()),
                Some(&provider(e2e.clone())),
                &labels
            ),
            None
        );
        assert_eq!(
            validate(
                &function(none.clone()),
                Some(&provider(none.clone())),
                &labels
            ),
            None
        );
        let (reason, message) = validate(&function(none), Some(&provider(e2e)), &labels).unwrap();
        assert_eq!(reason, "CapacityProviderNotFound");
        assert!(
            message.contains(r#"operator instance "e2e""#) && message.contains("to none"),
            "{message}"
        );
    }

    #[test]
    fn a_namespace_the_provider_does_not_select_is_refused_with_the_provider_named() {
        let none = serde_json::json!({});
        let mut cp = provider(none.clone());
        cp.spec.namespace_selector = Some(
            serde_json::from_value(serde_json::json!({"matchLabels": {"team": "a"}})).unwrap(),
        );
        let team_a = BTreeMap::from([("team".to_string(), "a".to_string())]);
        assert_eq!(validate(&function(none.clone()), Some(&cp), &team_a), None);
        let (reason, message) = validate(&function(none), Some(&cp), &BTreeMap::new()).unwrap();
        assert_eq!(reason, "NamespaceNotAllowed");
        assert_eq!(
            message,
            "capacity provider local does not allow functions in namespace default (see its spec.namespaceSelector)"
        );
    }
}

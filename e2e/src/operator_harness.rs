//! Runs the operator inside a test process, against the test cluster, whose real Karpenter (with
//! its kwok provider, [`crate::karpenter`]) launches the operator's NodeClaims.
//!
//! The operator runs cluster-wide for the tests' instance (`lmi.dev/instance=e2e`, see
//! [`crate::harness::E2E_INSTANCE`]), so tests that run it take [`exclusive`] first: one operator
//! of that instance at a time, as leader election would ensure in a real cluster. Operators of
//! other instances (the main job's) may run beside it: neither sees the other's objects.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use lmi_crds::{CapacityProvider, Function, FunctionVersion};
use lmi_operator::karpenter::NodeClaim;
use lmi_operator::metrics::Metrics;
use lmi_operator::plan::consolidation_times::ConsolidationTimes;
use lmi_operator::plan::ee_pod::EeSettings;
use lmi_operator::settings::Settings;
use lmi_operator::utilization::{Sample, SampleFuture, UtilizationSource};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Async-aware: every `#[tokio::test]` has its own runtime, and the guard is held across awaits.
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Installs Karpenter's CRDs into the test cluster (once per cluster; re-applying is harmless),
/// and makes sure the system namespace exists: an operator waits for its invoke key there.
pub async fn prepare(client: &Client) -> Result<()> {
    crate::karpenter_crds::install(client).await?;
    ensure_system_namespace(client).await
}

/// Creates the namespace of the invoke key (`lmi-system`) unless it exists. It is shared with the
/// main job (scripts/run.sh creates it too) and never deleted by the tests.
pub async fn ensure_system_namespace(client: &Client) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let name = lmi_operator::settings::DEFAULT_SYSTEM_NAMESPACE;
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
    }))?;
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Serializes the tests that run an operator (a failed test does not block the rest: the lock
/// does not poison).
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

/// Settings for an operator under test: short cool-down and resync, no leader election.
pub fn test_settings() -> Settings {
    Settings {
        ee: EeSettings {
            sidecar_image: crate::images::SIDECAR_IMAGE.to_string(),
            region: "us-east-1".to_string(),
            image_pull_policy: Some("Never".to_string()),
            image_pull_secrets: Vec::new(),
        },
        metrics_addr: ([127, 0, 0, 1], 0).into(),
        lease: None,
        empty_claim_cooldown: Duration::from_secs(2),
        launch_timeout: Duration::from_secs(60),
        unavailable_for: Duration::from_secs(180),
        resync: Duration::from_secs(2),
        cluster_name: "e2e".to_string(),
        ami_alias: "al2023@latest".to_string(),
        node_class: local_node_class(&crate::karpenter::ZONES),
        autoscale_interval: Duration::from_secs(1),
        // The product's times: no test but the consolidation one sees EEs move.
        consolidation: ConsolidationTimes::default(),
        instance: Some(crate::harness::E2E_INSTANCE.to_string()),
        // Shared with the main job's operator and router: one invoke key per cluster.
        system_namespace: lmi_operator::settings::DEFAULT_SYSTEM_NAMESPACE.to_string(),
        nats_url: None,
        nats_files: Default::default(),
        url_template: lmi_operator::settings::DEFAULT_URL_TEMPLATE.to_string(),
    }
}

/// Starts the operator's controllers on this runtime; abort the handle to "kill" it. Its
/// autoscaler reads utilization from `source`.
pub fn start_operator_with(
    client: Client,
    settings: Settings,
    source: Arc<dyn UtilizationSource>,
) -> Result<JoinHandle<()>> {
    let metrics = Metrics::new().map_err(|e| Error::Other(format!("operator metrics: {e}")))?;
    Ok(tokio::spawn(lmi_operator::controllers::run::run(
        client,
        settings,
        metrics,
        source,
        std::future::pending(),
    )))
}

/// Starts the operator with a utilization source that reports nothing (kwok pods run nothing),
/// so versions keep to their minimum.
pub fn start_operator(client: Client, settings: Settings) -> Result<JoinHandle<()>> {
    start_operator_with(client, settings, Arc::new(TestUtilization::default()))
}

/// A test source of utilization: what the test sets, per version (`namespace/name`), for every
/// Ready EE of that version. Stands in for the sidecars, which kwok pods do not run.
#[derive(Default, Clone)]
pub struct TestUtilization {
    by_version: Arc<std::sync::Mutex<BTreeMap<String, Sample>>>,
}

impl TestUtilization {
    /// From now on every EE of `version_key` reports `cpu_percent` and `in_flight` of 8.
    pub fn set(&self, version_key: &str, cpu_percent: f64, in_flight: u64) {
        let sample = Sample {
            ready: true,
            cpu_utilization: cpu_percent / 100.0,
            in_flight,
            max_concurrency: 8,
            ..Default::default()
        };
        if let Ok(mut map) = self.by_version.lock() {
            map.insert(version_key.to_string(), sample);
        }
    }
}

impl UtilizationSource for TestUtilization {
    fn sample<'a>(&'a self, pod: &'a Pod) -> SampleFuture<'a> {
        Box::pin(async move {
            let ready = pod_ready(pod);
            let owner = pod
                .owner_references()
                .iter()
                .find(|o| o.kind == "FunctionVersion")?;
            let key = format!("{}/{}", pod.namespace().unwrap_or_default(), owner.name);
            let sample = self.by_version.lock().ok()?.get(&key).copied()?;
            Some(Sample { ready, ..sample })
        })
    }
}

/// The local cluster's Karpenter node class, launching in `zones` (a subset of its offerings'
/// zones, [`crate::karpenter::ZONES`]).
pub fn local_node_class(zones: &[&str]) -> lmi_operator::karpenter::NodeClassChoice {
    let zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
    lmi_operator::karpenter::NodeClassChoice::parse(crate::karpenter::NODE_CLASS, &zones)
        .unwrap_or_default()
}

/// Creates an object from a JSON manifest (an lmi.dev one labelled with the tests' instance).
pub async fn create<K>(api: &Api<K>, manifest: serde_json::Value) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let mut manifest = manifest;
    crate::harness::label_for_tests(&mut manifest);
    let object: K = serde_json::from_value(manifest)?;
    Ok(api.create(&PostParams::default(), &object).await?)
}

/// The tests' Static provider for their real nodes ([`crate::node::TEST_NODES`]): the Static
/// example (`examples/capacity-provider-static.yaml`) with the tests' name, pool and instance
/// label, so that the example's own provider `local` stays the main job's.
pub fn real_node_provider() -> Result<serde_json::Value> {
    let path = crate::harness::repo_root().join("examples/capacity-provider-static.yaml");
    let text = std::fs::read_to_string(&path).map_err(Error::io("reading", &path))?;
    let mut manifest: serde_json::Value = serde_yaml::from_str(&text)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    let selector = &mut manifest["spec"]["provisioning"]["nodeSelector"];
    if selector[crate::node::NODE_POOL_KEY] != crate::node::MAIN_POOL {
        return Err(Error::Other(format!(
            "{} no longer selects the pool {}={}",
            path.display(),
            crate::node::NODE_POOL_KEY,
            crate::node::MAIN_POOL
        )));
    }
    selector[crate::node::NODE_POOL_KEY] = crate::node::TEST_POOL.into();
    manifest["metadata"]["name"] = crate::node::TEST_CAPACITY_PROVIDER.into();
    crate::harness::label_for_tests(&mut manifest);
    Ok(manifest)
}

/// Creates (or updates) [`real_node_provider`].
pub async fn apply_real_node_provider(client: &Client) -> Result<()> {
    let cps: Api<CapacityProvider> = Api::all(client.clone());
    cps.patch(
        crate::node::TEST_CAPACITY_PROVIDER,
        &PatchParams::apply("lmi-e2e").force(),
        &Patch::Apply(real_node_provider()?),
    )
    .await?;
    Ok(())
}

/// Merge-patches an object's spec.
pub async fn patch_spec<K>(api: &Api<K>, name: &str, spec: serde_json::Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": spec})),
    )
    .await?;
    Ok(())
}

/// The NodeClaims of capacity provider `cp`.
pub async fn claims_of(client: &Client, cp: &str) -> Result<Vec<NodeClaim>> {
    let api: Api<NodeClaim> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(&format!("lmi.dev/capacity-provider={cp}")))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .collect())
}

/// The EE pods of version `version` of `function` in `namespace` (not terminating).
pub async fn ees_of(
    client: &Client,
    namespace: &str,
    function: &str,
    version: i32,
) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("lmi.dev/function={function},lmi.dev/version={version}");
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A version's state and reason code, as strings.
pub async fn version_state(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<(String, Option<String>)>> {
    let api: Api<FunctionVersion> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(name)
        .await?
        .and_then(|v| v.status)
        .and_then(|s| {
            s.state
                .map(|state| (state.as_str().to_string(), s.state_reason_code))
        }))
}

/// Deletes the functions of `namespace` and then capacity provider `cp`, while the operator
/// runs, and waits until the provider is gone (so nothing is left behind for later tests).
pub async fn tear_down(client: &Client, namespace: &str, cp: &str) -> Result<()> {
    let functions: Api<Function> = Api::namespaced(client.clone(), namespace);
    for f in functions.list(&ListParams::default()).await?.items {
        let _ = functions
            .delete(&f.name_any(), &DeleteParams::foreground())
            .await;
    }
    let cps: Api<CapacityProvider> = Api::all(client.clone());
    let _ = cps.delete(cp, &DeleteParams::default()).await;
    crate::harness::eventually(
        &format!("capacity provider {cp} to be deleted"),
        Duration::from_secs(60),
        || async { Ok(cps.get_opt(cp).await?.is_none().then_some(())) },
    )
    .await
}

/// Whether the provider got an Event with `reason` (Events of a cluster-scoped object go to the
/// client's default namespace).
pub async fn has_provider_event(client: &Client, cp: &str, reason: &str) -> Result<bool> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(client.clone());
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={cp}")))
        .await?;
    Ok(list
        .items
        .iter()
        .any(|e| e.reason.as_deref() == Some(reason)))
}

/// Removes the operator's finalizer from `cp` (after a failed test, when no operator runs).
pub async fn force_remove(client: &Client, cp: &str) {
    let cps: Api<CapacityProvider> = Api::all(client.clone());
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    let _ = cps
        .patch(cp, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    let _ = cps.delete(cp, &DeleteParams::default()).await;
}

//! End-to-end tests of the operator on the local cluster: kwok nodes, and real Karpenter (its kwok
//! provider) turning the operator's NodeClaims into them. Each test runs its own operator (one at
//! a time) and its own capacity provider.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use lmi_crds::{CapacityProvider, Function, FunctionVersion};
use lmi_e2e::cluster::KWOK_READY_DELAY_ENV;
use lmi_e2e::error::Result;
use lmi_e2e::harness::{TestEnv, eventually, with_namespace};
use lmi_e2e::operator_harness::{
    TestUtilization, claims_of, create, ees_of, exclusive, force_remove, has_provider_event,
    local_node_class, patch_spec, pod_ready, prepare, start_operator, start_operator_with,
    tear_down, test_settings, version_state,
};
use lmi_operator::karpenter::NodeClaim;
use lmi_operator::karpenter::ZONE_LABEL;
use lmi_operator::observe::{CONSOLIDATING_SINCE_ANNOTATION, REPLACING_SINCE_ANNOTATION};
use lmi_operator::plan::consolidation_times::ConsolidationTimes;
use lmi_operator::settings::Settings;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn provider(name: &str, max_vcpu: i32, allowed: &[&str]) -> Value {
    json!({
        "apiVersion": "lmi.dev/v1alpha1",
        "kind": "CapacityProvider",
        "metadata": {"name": name},
        "spec": {
            "vpcConfig": {"subnetIds": ["subnet-a", "subnet-b", "subnet-c"], "securityGroupIds": ["sg-1"]},
            "instanceRole": "arn:aws:iam::123456789012:role/lmi-e2e",
            "instanceRequirements": {"architectures": ["arm64"], "allowedInstanceTypes": allowed},
            "scalingConfig": {"maxVCpuCount": max_vcpu}
        }
    })
}

fn function(name: &str, namespace: &str, cp: &str, min: i32) -> Value {
    json!({
        "apiVersion": "lmi.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "capacityProviderConfig": {"capacityProviderName": cp, "executionEnvironmentMemoryGiBPerVCpu": 2},
            "code": {"imageUri": "localhost/lmi/example:dev"},
            "architecture": "arm64",
            "memorySize": 2048,
            "publish": true,
            "scalingConfig": {"minExecutionEnvironments": min}
        }
    })
}

/// Creates the test's capacity provider; the Functions of its namespace.
async fn provider_and_functions(
    client: &Client,
    ns: &str,
    provider: Value,
) -> Result<Api<Function>> {
    create(&Api::<CapacityProvider>::all(client.clone()), provider).await?;
    Ok(Api::namespaced(client.clone(), ns))
}

/// A capacity provider name unique to this test and namespace.
fn cp_name(env: &TestEnv, test: &str) -> String {
    let suffix = env.namespace.rsplit('-').next().unwrap_or("x");
    format!("{test}-{suffix}")
}

async fn wait_state(
    client: &Client,
    ns: &str,
    version: &str,
    want: &str,
) -> Result<Option<String>> {
    eventually(&format!("{version} to be {want}"), WAIT, || async {
        Ok(version_state(client, ns, version)
            .await?
            .filter(|(s, _)| s == want)
            .map(|(_, code)| code))
    })
    .await
}

async fn zones_of(
    client: &Client,
    pods: &[k8s_openapi::api::core::v1::Pod],
) -> Result<BTreeSet<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut zones = BTreeSet::new();
    for pod in pods {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let node = nodes.get(&node).await?;
        zones.insert(
            node.labels()
                .get("topology.kubernetes.io/zone")
                .cloned()
                .unwrap_or_default(),
        );
    }
    Ok(zones)
}

/// Runs `body` with an operator, then deletes what it made.
async fn scenario<F, Fut>(test: &'static str, body: F) -> Result<()>
where
    F: FnOnce(TestEnv, String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    scenario_with(test, TestUtilization::default(), body).await
}

/// [`scenario`] with the utilization the operator's autoscaler reads.
async fn scenario_with<F, Fut>(test: &'static str, load: TestUtilization, body: F) -> Result<()>
where
    F: FnOnce(TestEnv, String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    scenario_in(test, test_settings(), load, body).await
}

/// [`scenario`] with the operator's settings and the utilization its autoscaler reads.
async fn scenario_in<F, Fut>(
    test: &'static str,
    settings: Settings,
    load: TestUtilization,
    body: F,
) -> Result<()>
where
    F: FnOnce(TestEnv, String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let _one_operator = exclusive().await;
    with_namespace(test, |env| async move {
        prepare(&env.client).await?;
        let cp = cp_name(&env, test);
        let operator = start_operator_with(env.client.clone(), settings, Arc::new(load))?;
        let outcome = body(env.clone(), cp.clone()).await;
        finish(&env, &cp, outcome, operator).await
    })
    .await
}

/// Deletes the test's functions and capacity provider while the operator still runs, then stops
/// the operator; a provider that could not be deleted loses its finalizer.
async fn finish(
    env: &TestEnv,
    cp: &str,
    outcome: Result<()>,
    operator: tokio::task::JoinHandle<()>,
) -> Result<()> {
    let cleaned = tear_down(&env.client, &env.namespace, cp).await;
    operator.abort();
    if cleaned.is_err() {
        force_remove(&env.client, cp).await;
    }
    outcome.and(cleaned)
}

#[tokio::test]
async fn min_three_on_a_fresh_karpenter_provider_spreads_over_three_zones() -> Result<()> {
    scenario("spread", |env, cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        create(
            &Api::<CapacityProvider>::all(client.clone()),
            provider(&cp, 400, &[]),
        )
        .await?;
        create(
            &Api::<Function>::namespaced(client.clone(), &ns),
            function("hello", &ns, &cp, 3),
        )
        .await?;
        wait_state(&client, &ns, "hello-v1", "Active").await?;

        let claims = claims_of(&client, &cp).await?;
        assert_eq!(claims.len(), 3, "one NodeClaim per zone");
        let zones: BTreeSet<_> = claims
            .iter()
            .filter_map(|c| {
                c.requirement("topology.kubernetes.io/zone")
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(zones.len(), 3);
        for claim in &claims {
            let t = claim
                .requirement("node.kubernetes.io/instance-type")
                .unwrap_or_default();
            assert!(
                t.starts_with('c'),
                "2 GiB per vCPU means a compute instance, got {t}"
            );
            assert_eq!(
                claim.requirement("karpenter.sh/capacity-type"),
                Some("on-demand")
            );
            assert_eq!(claim.spec.expire_after.as_deref(), Some("Never"));
        }
        let pods = ees_of(&client, &ns, "hello", 1).await?;
        assert_eq!(pods.len(), 3);
        assert!(pods.iter().all(pod_ready));
        assert_eq!(zones_of(&client, &pods).await?.len(), 3, "one EE per zone");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_second_function_fills_existing_nodes_before_new_node_claims() -> Result<()> {
    scenario("fill", |env, cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        // A c7g.xlarge holds three 1-vCPU EEs: the first function leaves room for the second.
        let functions =
            provider_and_functions(&client, &ns, provider(&cp, 400, &["c7g.xlarge"])).await?;
        create(&functions, function("first", &ns, &cp, 3)).await?;
        wait_state(&client, &ns, "first-v1", "Active").await?;
        assert_eq!(claims_of(&client, &cp).await?.len(), 3);

        create(&functions, function("second", &ns, &cp, 3)).await?;
        wait_state(&client, &ns, "second-v1", "Active").await?;
        assert_eq!(
            claims_of(&client, &cp).await?.len(),
            3,
            "no new NodeClaim while nodes have room"
        );
        assert_eq!(ees_of(&client, &ns, "second", 1).await?.len(), 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn raising_min_adds_ees_zero_deactivates_and_raising_again_reactivates() -> Result<()> {
    scenario("scale", |env, cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        let functions = provider_and_functions(&client, &ns, provider(&cp, 400, &["c7g.2xlarge"])).await?;
        create(&functions, function("app", &ns, &cp, 1)).await?;
        wait_state(&client, &ns, "app-v1", "Active").await?;

        patch_spec(&functions, "app", json!({"scalingConfig": {"minExecutionEnvironments": 3}})).await?;
        eventually("three ready EEs", WAIT, || async {
            let pods = ees_of(&client, &ns, "app", 1).await?;
            Ok((pods.len() == 3 && pods.iter().all(pod_ready)).then_some(()))
        })
        .await?;

        patch_spec(&functions, "app", json!({"scalingConfig": {"minExecutionEnvironments": 0, "maxExecutionEnvironments": 0}}))
            .await?;
        wait_state(&client, &ns, "app-v1", "Deactivated").await?;
        eventually("EE pods to be gone", WAIT, || async {
            Ok(ees_of(&client, &ns, "app", 1).await?.is_empty().then_some(()))
        })
        .await?;
        eventually("empty NodeClaims to be removed after the cool-down", WAIT, || async {
            Ok(claims_of(&client, &cp).await?.is_empty().then_some(()))
        })
        .await?;

        patch_spec(&functions, "app", json!({"scalingConfig": {"minExecutionEnvironments": 1, "maxExecutionEnvironments": 2}}))
            .await?;
        wait_state(&client, &ns, "app-v1", "Active").await?;
        assert_eq!(ees_of(&client, &ns, "app", 1).await?.len(), 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn no_node_claim_beyond_max_vcpu_and_the_version_says_so() -> Result<()> {
    scenario("ceiling", |env, cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        // Each EE needs its own c7g.large (2 vCPUs); a ceiling of 4 vCPUs allows two of three.
        create(
            &Api::<CapacityProvider>::all(client.clone()),
            provider(&cp, 4, &["c7g.large"]),
        )
        .await?;
        create(
            &Api::<Function>::namespaced(client.clone(), &ns),
            function("big", &ns, &cp, 3),
        )
        .await?;
        let code = eventually("VcpuLimitExceeded", WAIT, || async {
            Ok(version_state(&client, &ns, "big-v1")
                .await?
                .and_then(|(_, code)| code)
                .filter(|c| c == "VcpuLimitExceeded"))
        })
        .await?;
        assert_eq!(code, "VcpuLimitExceeded");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(claims_of(&client, &cp).await?.len(), 2);
        let cps: Api<CapacityProvider> = Api::all(client.clone());
        let status = cps.get(&cp).await?.status.unwrap_or_default();
        assert_eq!(status.v_cpu_allocated, Some(4));
        assert_eq!(status.v_cpu_limit, Some(4));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn deleting_a_provider_with_versions_is_refused_until_its_functions_are_gone() -> Result<()> {
    scenario("delete", |env, cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        let cps: Api<CapacityProvider> = Api::all(client.clone());
        create(&cps, provider(&cp, 400, &[])).await?;
        let functions = Api::<Function>::namespaced(client.clone(), &ns);
        create(&functions, function("app", &ns, &cp, 1)).await?;
        wait_state(&client, &ns, "app-v1", "Active").await?;

        cps.delete(&cp, &DeleteParams::default()).await?;
        let message = eventually("DeletionBlocked condition", WAIT, || async {
            let status = cps.get(&cp).await?.status.unwrap_or_default();
            Ok(status
                .conditions
                .iter()
                .find(|c| c.type_ == "DeletionBlocked" && c.status == "True")
                .map(|c| c.message.clone()))
        })
        .await?;
        assert!(
            message.contains("function versions are attached"),
            "{message}"
        );
        let blocked = eventually("a DeletionBlocked event", WAIT, || async {
            Ok(has_provider_event(&client, &cp, "DeletionBlocked")
                .await?
                .then_some(()))
        })
        .await;
        blocked?;
        assert!(
            !claims_of(&client, &cp).await?.is_empty(),
            "instances stay while versions need them"
        );

        functions.delete("app", &DeleteParams::foreground()).await?;
        eventually("the provider to be deleted", WAIT, || async {
            Ok(cps.get_opt(&cp).await?.is_none().then_some(()))
        })
        .await?;
        eventually("its NodeClaims to be deleted", WAIT, || async {
            Ok(claims_of(&client, &cp).await?.is_empty().then_some(()))
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn killing_the_operator_mid_reconcile_leaves_no_duplicates() -> Result<()> {
    let _one_operator = exclusive().await;
    with_namespace("restart", |env| async move {
        prepare(&env.client).await?;
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        let cp = cp_name(&env, "restart");
        create(
            &Api::<CapacityProvider>::all(client.clone()),
            provider(&cp, 400, &[]),
        )
        .await?;
        create(
            &Api::<Function>::namespaced(client.clone(), &ns),
            function("hello", &ns, &cp, 3),
        )
        .await?;
        // Kill the operator at different points of its work, then let one run to the end.
        for millis in [150u64, 400, 80, 700, 250, 1200] {
            let operator = start_operator(client.clone(), test_settings())?;
            tokio::time::sleep(Duration::from_millis(millis)).await;
            operator.abort();
            let _ = operator.await;
        }
        let operator = start_operator(client.clone(), test_settings())?;
        let outcome = async {
            wait_state(&client, &ns, "hello-v1", "Active").await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(
                claims_of(&client, &cp).await?.len(),
                3,
                "no duplicate NodeClaims"
            );
            assert_eq!(
                ees_of(&client, &ns, "hello", 1).await?.len(),
                3,
                "no duplicate EEs"
            );
            let versions: Api<lmi_crds::FunctionVersion> = Api::namespaced(client.clone(), &ns);
            assert_eq!(
                versions.list(&ListParams::default()).await?.items.len(),
                1,
                "one version published"
            );
            Ok(())
        }
        .await;
        finish(&env, &cp, outcome, operator).await
    })
    .await
}

#[tokio::test]
async fn a_missing_capacity_provider_is_a_condition_and_an_event() -> Result<()> {
    scenario("missing", |env, _cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        let functions = Api::<Function>::namespaced(client.clone(), &ns);
        create(&functions, function("orphan", &ns, "no-such-provider", 1)).await?;
        let reason = eventually("the Ready condition", WAIT, || async {
            let status = functions.get("orphan").await?.status.unwrap_or_default();
            Ok(status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")
                .map(|c| c.reason.clone()))
        })
        .await?;
        assert_eq!(reason, "CapacityProviderNotFound");
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        eventually("a CapacityProviderNotFound event", WAIT, || async {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some("CapacityProviderNotFound"))
                .then_some(()))
        })
        .await?;
        let versions: Api<lmi_crds::FunctionVersion> = Api::namespaced(client.clone(), &ns);
        assert!(
            versions
                .list(&ListParams::default())
                .await?
                .items
                .is_empty(),
            "nothing is published"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn cpu_above_the_band_adds_ees_and_they_return_to_min_when_load_stops() -> Result<()> {
    let load = TestUtilization::default();
    scenario_with("autoscale", load.clone(), |env, cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        // Manual target 50%: the band is 40-60.
        let mut manifest = provider(&cp, 400, &["c7g.2xlarge"]);
        manifest["spec"]["scalingConfig"] =
            json!({"maxVCpuCount": 400, "scalingMode": "Manual", "targetCpuUtilization": 50});
        create(&Api::<CapacityProvider>::all(client.clone()), manifest).await?;
        let mut f = function("busy", &ns, &cp, 2);
        f["spec"]["scalingConfig"] =
            json!({"minExecutionEnvironments": 2, "maxExecutionEnvironments": 10});
        create(&Api::<Function>::namespaced(client.clone(), &ns), f).await?;
        wait_state(&client, &ns, "busy-v1", "Active").await?;
        let key = format!("{ns}/busy-v1");

        // In band: nothing changes.
        load.set(&key, 55.0, 2);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            ees_of(&client, &ns, "busy", 1).await?.len(),
            2,
            "55% is inside 40-60"
        );

        // 95% on 2 EEs at a 50% target wants ceil(2 x 95 / 50) = 4.
        load.set(&key, 95.0, 4);
        eventually("four ready EEs", WAIT, || async {
            let pods = ees_of(&client, &ns, "busy", 1).await?;
            Ok((pods.len() == 4 && pods.iter().all(pod_ready)).then_some(()))
        })
        .await?;
        let versions: Api<lmi_crds::FunctionVersion> = Api::namespaced(client.clone(), &ns);
        let status = versions.get("busy-v1").await?.status.unwrap_or_default();
        assert_eq!(status.target_cpu_utilization, Some(50));
        assert_eq!(status.desired_execution_environments, Some(4));

        // The load stops: after the stabilization window the EEs go back to min.
        load.set(&key, 2.0, 0);
        eventually("back to min (2 EEs)", Duration::from_secs(150), || async {
            Ok((ees_of(&client, &ns, "busy", 1).await?.len() == 2).then_some(()))
        })
        .await?;
        Ok(())
    })
    .await
}

/// Consolidation times short enough for a test (the defaults wait 10 minutes).
const SHORT: ConsolidationTimes = ConsolidationTimes {
    min_instance_age_seconds: 3,
    settle_seconds: 2,
    move_timeout_seconds: 30,
};

/// A provider that launches only c7g.xlarge instances: two EEs of 1 vCPU and 2 GiB each (memory
/// bounds it). Its operator launches in one zone ([`one_zone`]): consolidation moves EEs only
/// within a zone.
fn one_zone_provider(name: &str) -> Value {
    provider(name, 400, &["c7g.xlarge"])
}

/// Test settings launching in one zone only.
fn one_zone(settings: Settings) -> Settings {
    Settings {
        node_class: local_node_class(&["us-east-1a"]),
        ..settings
    }
}

fn marked(claim: &NodeClaim) -> bool {
    claim
        .annotations()
        .contains_key(CONSOLIDATING_SINCE_ANNOTATION)
}

/// Node name -> how many EEs of each function it holds, over `functions` (version 1).
async fn placement(
    client: &Client,
    ns: &str,
    functions: &[&str],
) -> Result<BTreeMap<String, BTreeMap<String, usize>>> {
    let mut by_node: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for function in functions {
        for pod in ees_of(client, ns, function, 1).await? {
            let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
            *by_node
                .entry(node)
                .or_default()
                .entry((*function).to_string())
                .or_default() += 1;
        }
    }
    Ok(by_node)
}

/// What watches saw while the operator consolidated: every change to the provider's NodeClaims
/// and to the namespace's EE pods, not samples (on kwok a whole move, mark to removal, takes
/// under 0.2 s).
#[derive(Debug, Default)]
struct Watched {
    /// Watches that have listed their objects once (both: nothing later is missed).
    listed: usize,
    /// NodeClaims seen with the consolidating-since mark.
    marked: BTreeSet<String>,
    /// The fewest Ready (not terminating) EEs seen per function.
    fewest_ready: BTreeMap<String, usize>,
    /// Every state in which a function had fewer Ready EEs than its desired count.
    below_desired: Vec<String>,
}

type Shared = Arc<std::sync::Mutex<Watched>>;

fn record(watched: &Shared, update: impl FnOnce(&mut Watched)) {
    if let Ok(mut w) = watched.lock() {
        update(&mut w);
    }
}

/// Watches the NodeClaims of `cp` and the EE pods of `ns` until aborted, checking after every
/// pod change that each function keeps `desired` Ready EEs.
fn watch_consolidation(
    client: &Client,
    ns: &str,
    cp: &str,
    desired: BTreeMap<String, usize>,
) -> (Shared, tokio::task::JoinHandle<()>) {
    let watched = Shared::default();
    let claims = watch_marks(client.clone(), cp.to_string(), watched.clone());
    let pods = watch_ready(client.clone(), ns.to_string(), desired, watched.clone());
    let task = tokio::spawn(async move {
        tokio::join!(claims, pods);
    });
    (watched, task)
}

async fn watch_marks(client: Client, cp: String, watched: Shared) {
    let config = watcher::Config::default().labels(&format!("lmi.dev/capacity-provider={cp}"));
    let mut events = watcher(Api::<NodeClaim>::all(client), config)
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => record(&watched, |w| w.listed += 1),
            Ok(watcher::Event::Apply(claim) | watcher::Event::InitApply(claim))
                if marked(&claim) =>
            {
                record(&watched, |w| {
                    w.marked.insert(claim.name_any());
                });
            }
            _ => {}
        }
    }
}

async fn watch_ready(
    client: Client,
    ns: String,
    desired: BTreeMap<String, usize>,
    watched: Shared,
) {
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().labels("lmi.dev/version=1");
    let mut events = reflector(
        writer,
        watcher(Api::<Pod>::namespaced(client, &ns), config).default_backoff(),
    )
    .boxed();
    let mut listed = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => {
                listed = true;
                record(&watched, |w| w.listed += 1);
            }
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {}
            _ => continue,
        }
        if listed {
            let ready = ready_by_function(&store.state());
            record(&watched, |w| check_ready(w, &desired, &ready));
        }
    }
}

/// Ready, not terminating EEs per function.
fn ready_by_function(pods: &[Arc<Pod>]) -> BTreeMap<String, usize> {
    let mut ready = BTreeMap::new();
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
    {
        if let Some(function) = pod.labels().get("lmi.dev/function") {
            *ready.entry(function.clone()).or_default() += 1;
        }
    }
    ready
}

fn check_ready(
    w: &mut Watched,
    desired: &BTreeMap<String, usize>,
    ready: &BTreeMap<String, usize>,
) {
    for (function, want) in desired {
        let have = ready.get(function).copied().unwrap_or(0);
        let fewest = w.fewest_ready.entry(function.clone()).or_insert(have);
        *fewest = (*fewest).min(have);
        if have < *want {
            w.below_desired
                .push(format!("{function}: {have} Ready of {want} in {ready:?}"));
        }
    }
}

/// Whether the provider is down to `instances` NodeClaims and each function has exactly its
/// desired EEs, all Ready.
async fn consolidated(
    client: &Client,
    ns: &str,
    cp: &str,
    desired: &BTreeMap<String, usize>,
    instances: usize,
) -> Result<bool> {
    if claims_of(client, cp).await?.len() != instances {
        return Ok(false);
    }
    for (function, want) in desired {
        let pods = ees_of(client, ns, function, 1).await?;
        if pods.len() != *want || !pods.iter().all(pod_ready) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[tokio::test]
async fn an_underused_instance_is_consolidated_without_dropping_below_desired() -> Result<()> {
    let settings = one_zone(Settings {
        consolidation: SHORT,
        ..test_settings()
    });
    scenario_in(
        "consolidate",
        settings,
        TestUtilization::default(),
        |env, cp| async move {
            let (client, ns) = (env.client.clone(), env.namespace.clone());
            create(
                &Api::<CapacityProvider>::all(client.clone()),
                one_zone_provider(&cp),
            )
            .await?;
            let functions = Api::<Function>::namespaced(client.clone(), &ns);

            // EEs take 3 s to turn Ready (kwok otherwise makes them Ready at once): a move that
            // drained the old EE before its replacement was Ready shows as Ready EEs below desired.
            let slow_ready = |name: &str| {
                let mut f = function(name, &ns, &cp, 2);
                f["spec"]["environment"]["variables"][KWOK_READY_DELAY_ENV] = json!("3s");
                f
            };
            // Instance A gets first's two EEs, B second's two: both full.
            create(&functions, slow_ready("first")).await?;
            wait_state(&client, &ns, "first-v1", "Active").await?;
            create(&functions, slow_ready("second")).await?;
            wait_state(&client, &ns, "second-v1", "Active").await?;
            assert_eq!(
                claims_of(&client, &cp).await?.len(),
                2,
                "one full instance each"
            );

            // Negative: past the minimum age and the settle time, full instances stay as they are.
            let quiet = SHORT.min_instance_age_seconds + SHORT.settle_seconds + 1;
            tokio::time::sleep(Duration::from_secs(quiet.unsigned_abs())).await;
            let claims = claims_of(&client, &cp).await?;
            assert_eq!(claims.len(), 2);
            assert!(
                !claims.iter().any(marked),
                "nothing to consolidate while both are full"
            );
            assert!(!has_provider_event(&client, &cp, "ConsolidatingInstance").await?);

            // Watch from here on: both watches list first, so no later change escapes them.
            let desired: BTreeMap<String, usize> =
                [("first".to_string(), 1), ("second".to_string(), 1)].into();
            let (watched, watching) = watch_consolidation(&client, &ns, &cp, desired.clone());
            eventually("the watches to list", WAIT, || async {
                Ok(watched.lock().is_ok_and(|w| w.listed == 2).then_some(()))
            })
            .await?;

            // Both scale down to one EE (the maximum, since without load samples the autoscaler
            // keeps its wish): A and B hold one each, and both fit on one instance.
            for name in ["first", "second"] {
                let one = json!({"minExecutionEnvironments": 1, "maxExecutionEnvironments": 1});
                patch_spec(&functions, name, json!({"scalingConfig": one})).await?;
            }
            let outcome = eventually("one instance holding both EEs", WAIT, || async {
                let marked = watched.lock().is_ok_and(|w| !w.marked.is_empty());
                Ok((marked && consolidated(&client, &ns, &cp, &desired, 1).await?).then_some(()))
            })
            .await;
            watching.abort();
            let watched = std::mem::take(&mut *watched.lock().expect("the watches do not panic"));
            println!("consolidation seen: {watched:?}");
            outcome?;
            assert!(
                watched.below_desired.is_empty(),
                "Ready EEs dropped below desired during the move: {:?}",
                watched.below_desired
            );
            assert_eq!(
                watched.fewest_ready, desired,
                "each function went down to its desired Ready EEs, never below"
            );

            let left = claims_of(&client, &cp).await?;
            let emptied: Vec<&String> = watched
                .marked
                .iter()
                .filter(|m| !left.iter().any(|c| &c.name_any() == *m))
                .collect();
            assert_eq!(
                emptied.len(),
                1,
                "the marked instance is the one removed: {watched:?}"
            );
            let claims: Api<NodeClaim> = Api::all(client.clone());
            let gone = emptied[0].clone();
            eventually("the emptied NodeClaim to be deleted", WAIT, || async {
                Ok(claims.get_opt(&gone).await?.is_none().then_some(()))
            })
            .await?;
            assert!(
                has_provider_event(&client, &cp, "ConsolidatingInstance").await?,
                "a ConsolidatingInstance event"
            );
            assert!(!has_provider_event(&client, &cp, "ConsolidationCalledOff").await?);

            // Every EE is on the instance left, none lost, and the versions still want what they have.
            let node = left[0]
                .status
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .expect("the remaining NodeClaim has a node");
            let placed = placement(&client, &ns, &["first", "second"]).await?;
            assert_eq!(placed.keys().collect::<Vec<_>>(), vec![&node], "{placed:?}");
            assert_eq!(placed[&node].get("first"), Some(&1));
            assert_eq!(placed[&node].get("second"), Some(&1));
            let versions: Api<lmi_crds::FunctionVersion> = Api::namespaced(client.clone(), &ns);
            for name in ["first-v1", "second-v1"] {
                let status = versions.get(name).await?.status.unwrap_or_default();
                assert_eq!(status.desired_execution_environments, Some(1), "{name}");
            }
            Ok(())
        },
    )
    .await
}

/// The most NodeClaims of `cp` seen with the replacing-since mark at once in one zone, and every
/// claim seen marked; watched until aborted.
#[derive(Debug, Default)]
struct Replacements {
    listed: bool,
    most_at_once_per_zone: usize,
    marked: BTreeSet<String>,
}

fn watch_replacements(
    client: &Client,
    cp: &str,
) -> (
    Arc<std::sync::Mutex<Replacements>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Replacements::default()));
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().labels(&format!("lmi.dev/capacity-provider={cp}"));
    let mut events = reflector(
        writer,
        watcher(Api::<NodeClaim>::all(client.clone()), config).default_backoff(),
    )
    .boxed();
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if event.is_err() {
                    continue;
                }
                let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
                let mut marked = Vec::new();
                for claim in store.state() {
                    if claim.annotations().contains_key(REPLACING_SINCE_ANNOTATION) {
                        let zone = claim
                            .requirement(ZONE_LABEL)
                            .unwrap_or_default()
                            .to_string();
                        *per_zone.entry(zone).or_default() += 1;
                        marked.push(claim.name_any());
                    }
                }
                if let Ok(mut s) = seen.lock() {
                    s.listed |= matches!(event, Ok(watcher::Event::InitDone));
                    s.marked.extend(marked);
                    let most = per_zone.values().copied().max().unwrap_or(0);
                    s.most_at_once_per_zone = s.most_at_once_per_zone.max(most);
                }
            }
        })
    };
    (seen, task)
}

/// Patching by replacement, on real Karpenter: instances older than the provider's (shortened)
/// maximum lifetime are replaced one per zone at a time, each EE's replacement Ready before the
/// old one drains (the EEs take 3 s to turn Ready, so an early drain would show), the zone spread
/// holding, and the old NodeClaims deleted.
#[tokio::test]
async fn instances_past_their_lifetime_are_replaced_without_dropping_below_desired() -> Result<()> {
    scenario("lifetime", |env, cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        // One EE fills a c7g.large: every replacement needs a launch.
        let mut manifest = provider(&cp, 400, &["c7g.large"]);
        manifest["spec"]["instanceLifecycle"] = json!({"maxInstanceLifetime": "1m"});
        let functions = provider_and_functions(&client, &ns, manifest).await?;
        let mut f = function("aged", &ns, &cp, 3);
        f["spec"]["environment"]["variables"][KWOK_READY_DELAY_ENV] = json!("3s");
        create(&functions, f).await?;
        wait_state(&client, &ns, "aged-v1", "Active").await?;
        let first: BTreeSet<String> = claims_of(&client, &cp)
            .await?
            .iter()
            .map(|c| c.name_any())
            .collect();
        assert_eq!(first.len(), 3, "one instance per zone");

        let desired: BTreeMap<String, usize> = [("aged".to_string(), 3)].into();
        let ready = Shared::default();
        let pods = tokio::spawn(watch_ready(
            client.clone(),
            ns.clone(),
            desired.clone(),
            ready.clone(),
        ));
        let (replacing, claims_watch) = watch_replacements(&client, &cp);
        eventually("the watches to list", WAIT, || async {
            let pods_listed = ready.lock().is_ok_and(|w| w.listed == 1);
            let claims_listed = replacing.lock().is_ok_and(|r| r.listed);
            Ok((pods_listed && claims_listed).then_some(()))
        })
        .await?;

        // Due after 60 s, then a launch, a 3 s start and a drain per zone.
        let outcome = eventually(
            "every first instance replaced",
            Duration::from_secs(150),
            || async {
                let now: BTreeSet<String> = claims_of(&client, &cp)
                    .await?
                    .iter()
                    .map(|c| c.name_any())
                    .collect();
                let pods = ees_of(&client, &ns, "aged", 1).await?;
                let done = now.is_disjoint(&first) && pods.len() == 3 && pods.iter().all(pod_ready);
                Ok(done.then_some(()))
            },
        )
        .await;
        pods.abort();
        claims_watch.abort();
        let ready = std::mem::take(&mut *ready.lock().expect("the watch does not panic"));
        let replacing = std::mem::take(&mut *replacing.lock().expect("the watch does not panic"));
        println!("replacement seen: {ready:?} {replacing:?}");
        outcome?;
        assert!(
            ready.below_desired.is_empty(),
            "Ready EEs dropped below desired: {:?}",
            ready.below_desired
        );
        assert_eq!(
            replacing.most_at_once_per_zone, 1,
            "one instance per zone at a time"
        );
        assert!(
            first.is_subset(&replacing.marked),
            "each old instance was marked first: {replacing:?}"
        );
        assert!(has_provider_event(&client, &cp, "ReplacingInstance").await?);
        let pods = ees_of(&client, &ns, "aged", 1).await?;
        assert_eq!(
            zones_of(&client, &pods).await?.len(),
            3,
            "the zone spread holds"
        );
        let cps: Api<CapacityProvider> = Api::all(client.clone());
        let lifecycle = cps.get(&cp).await?.spec.instance_lifecycle;
        assert_eq!(lifecycle.max_lifetime_seconds(), Some(60));
        Ok(())
    })
    .await
}

/// A rolling update of `$LATEST.PUBLISHED` (the default `publishTo`): unqualified invocations
/// move to the new version only once it is Active (the Function's `status.currentVersion`
/// follows the router's rule, `lmi_crds::rules::current_version`, while
/// `latestPublishedVersion` names the new version from its publication on); then the replaced
/// version drains and is deleted, and no EE of it is left.
#[tokio::test]
async fn a_rolling_update_moves_to_the_new_version_once_active_and_retires_the_old() -> Result<()> {
    scenario("current", |env, cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        let functions =
            provider_and_functions(&client, &ns, provider(&cp, 400, &["c7g.2xlarge"])).await?;
        create(&functions, function("app", &ns, &cp, 1)).await?;
        wait_state(&client, &ns, "app-v1", "Active").await?;
        let versions = |f: Function| {
            let s = f.status.unwrap_or_default();
            (s.latest_published_version, s.current_version)
        };
        let one = Some("1".to_string());
        eventually("currentVersion 1", WAIT, || async {
            Ok((versions(functions.get("app").await?) == (one.clone(), one.clone())).then_some(()))
        })
        .await?;

        // A new configuration, whose EEs turn Ready only after 8 s: version 2 is published and
        // Pending meanwhile, and unqualified calls stay on version 1.
        patch_spec(
            &functions,
            "app",
            json!({"environment": {"variables": {KWOK_READY_DELAY_ENV: "8s"}}}),
        )
        .await?;
        let two = Some("2".to_string());
        eventually(
            "version 2 published while 1 stays current",
            WAIT,
            || async {
                Ok(
                    (versions(functions.get("app").await?) == (two.clone(), one.clone()))
                        .then_some(()),
                )
            },
        )
        .await?;
        assert_ne!(
            version_state(&client, &ns, "app-v2")
                .await?
                .map(|(s, _)| s)
                .as_deref(),
            Some("Active"),
            "version 2 is still deploying"
        );
        wait_state(&client, &ns, "app-v2", "Active").await?;
        eventually("currentVersion 2", WAIT, || async {
            Ok((versions(functions.get("app").await?) == (two.clone(), two.clone())).then_some(()))
        })
        .await?;
        // The rolling update ends: version 1 kept its EE while version 2 deployed, and once
        // version 2 has been Active for the settle time, version 1 drains and is deleted.
        assert_eq!(
            ees_of(&client, &ns, "app", 1).await?.len(),
            1,
            "version 1 serves until 2 has settled"
        );
        let fv = Api::<FunctionVersion>::namespaced(client.clone(), &ns);
        eventually("version 1 retired (deleted)", WAIT, || async {
            Ok(fv.get_opt("app-v1").await?.is_none().then_some(()))
        })
        .await?;
        eventually("no EE of version 1 left", WAIT, || async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let left = pods
                .list(&ListParams::default().labels("lmi.dev/function=app,lmi.dev/version=1"))
                .await?;
            Ok(left.items.is_empty().then_some(()))
        })
        .await?;
        assert_eq!(
            ees_of(&client, &ns, "app", 2).await?.len(),
            1,
            "version 2 keeps its EE"
        );
        assert_eq!(
            versions(functions.get("app").await?),
            (two.clone(), two.clone())
        );
        let reasons = event_reasons(&client, &ns, "app").await?;
        for reason in ["VersionDeactivated", "VersionDeleted"] {
            assert!(
                reasons.contains(reason),
                "an Event {reason} on the function: {reasons:?}"
            );
        }
        Ok(())
    })
    .await
}

/// The reasons of the Events on object `name`.
async fn event_reasons(client: &Client, ns: &str, name: &str) -> Result<BTreeSet<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await?;
    Ok(list.items.into_iter().filter_map(|e| e.reason).collect())
}

/// Numbered versions with `versionRetention`: of the versions no alias names, the newest Active
/// one stays Active, one deactivated version is kept and older ones are deleted; the version an
/// alias names stays Active whatever its age.
#[tokio::test]
async fn version_retention_keeps_the_newest_and_what_an_alias_names() -> Result<()> {
    scenario("retention", |env, cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        let functions =
            provider_and_functions(&client, &ns, provider(&cp, 400, &["c7g.2xlarge"])).await?;
        let mut f = function("app", &ns, &cp, 1);
        f["spec"]["publishTo"] = json!("Version");
        f["spec"]["versionRetention"] = json!({"activeVersions": 1, "deactivatedVersions": 1});
        create(&functions, f).await?;
        wait_state(&client, &ns, "app-v1", "Active").await?;
        let aliases = Api::<lmi_crds::FunctionAlias>::namespaced(client.clone(), &ns);
        create(
            &aliases,
            json!({
                "apiVersion": "lmi.dev/v1alpha1", "kind": "FunctionAlias",
                "metadata": {"name": "app-live", "namespace": ns},
                "spec": {"name": "live", "functionName": "app", "functionVersion": "1"}
            }),
        )
        .await?;
        // Versions 2, 3 and 4, each published once the one before is Active.
        for n in 2..=4 {
            patch_spec(
                &functions,
                "app",
                json!({"environment": {"variables": {"RELEASE": n.to_string()}}}),
            )
            .await?;
            wait_state(&client, &ns, &format!("app-v{n}"), "Active").await?;
        }
        let fv = Api::<FunctionVersion>::namespaced(client.clone(), &ns);
        let expected = [
            ("app-v1", Some("Active")),
            ("app-v2", None),
            ("app-v3", Some("Deactivated")),
            ("app-v4", Some("Active")),
        ];
        let seen = eventually(
            "retention to settle: 1 (aliased) and 4 Active, 3 Deactivated, 2 deleted",
            Duration::from_secs(90),
            || async {
                let mut seen = Vec::new();
                for (name, _) in expected {
                    let state = fv.get_opt(name).await?.map(|v| {
                        v.status
                            .and_then(|s| s.state)
                            .map_or("none", |s| s.as_str())
                    });
                    seen.push((name, state));
                }
                Ok((seen == expected).then_some(seen))
            },
        )
        .await?;
        assert_eq!(seen, expected);
        // No EE of a retired version is left.
        for n in [2, 3] {
            assert!(
                ees_of(&client, &ns, "app", n).await?.is_empty(),
                "no EE of version {n}"
            );
        }
        Ok(())
    })
    .await
}

/// Lambda's limit of 100 versions per capacity provider: a publication past it waits, with a
/// condition and an Event that name the provider, and happens once a version on it is deleted.
#[tokio::test]
async fn a_publication_past_the_providers_version_limit_waits_and_is_not_lost() -> Result<()> {
    scenario("limit", |env, cp| async move {
        let (client, ns) = (env.client.clone(), env.namespace.clone());
        create(&Api::<CapacityProvider>::all(client.clone()), provider(&cp, 400, &["c7g.2xlarge"])).await?;
        // 100 versions on the provider, deactivated (no EEs), of a function kept elsewhere.
        let versions = Api::<FunctionVersion>::namespaced(client.clone(), &ns);
        let mut filler = function("filler", &ns, &cp, 0);
        filler["spec"]["scalingConfig"] = json!({"minExecutionEnvironments": 0, "maxExecutionEnvironments": 0});
        for n in 1..=lmi_crds::rules::MAX_VERSIONS_PER_CAPACITY_PROVIDER as i32 {
            let mut config = filler["spec"].clone();
            let scaling = config
                .as_object_mut()
                .and_then(|c| c.remove("scalingConfig"))
                .unwrap_or(Value::Null);
            if let Some(c) = config.as_object_mut() {
                c.remove("publish");
            }
            create(
                &versions,
                json!({
                    "apiVersion": "lmi.dev/v1alpha1", "kind": "FunctionVersion",
                    "metadata": {"name": format!("filler-v{n}"), "namespace": ns, "labels": {"lmi.dev/function": "filler"}},
                    "spec": {"functionName": "filler", "version": n, "configuration": config, "scalingConfig": scaling}
                }),
            )
            .await?;
        }
        let functions = Api::<Function>::namespaced(client.clone(), &ns);
        create(&functions, function("app", &ns, &cp, 1)).await?;
        let waiting = eventually("the publication to wait at the limit", WAIT, || async {
            let f = functions.get("app").await?;
            Ok(f.status
                .unwrap_or_default()
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Published" && c.status == "False"))
        })
        .await?;
        assert_eq!(waiting.reason, lmi_crds::rules::VERSION_LIMIT_EXCEEDED);
        assert!(waiting.message.contains(&cp), "{}", waiting.message);
        assert!(versions.get_opt("app-v1").await?.is_none(), "nothing published past the limit");
        eventually("a VersionLimitExceeded Event on the function", WAIT, || async {
            Ok(event_reasons(&client, &ns, "app")
                .await?
                .contains(lmi_crds::rules::VERSION_LIMIT_EXCEEDED)
                .then_some(()))
        })
        .await?;

        // Room again: the waiting configuration is published.
        versions.delete("filler-v1", &DeleteParams::default()).await?;
        eventually("app-v1 once there is room", WAIT, || async {
            Ok(versions.get_opt("app-v1").await?)
        })
        .await?;
        // The filler versions have no Function for the tear-down to delete, and the provider's
        // deletion waits for every version on it.
        versions
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels("lmi.dev/function=filler"),
            )
            .await?;
        Ok(())
    })
    .await
}

/// The operator counts each function's events stored in the routers' NATS JetStream stream (the
/// local cluster's nats-server) and shows them on the Function: `status.queuedEvents`, the
/// Queued column of `kubectl get fn`.
#[tokio::test]
async fn queued_events_show_on_the_function() -> Result<()> {
    use lmi_router::router::events::meta::{EventMeta, now_ms};
    use lmi_router::router::events::{EventQueue, EventSettings};
    let mut settings = test_settings();
    settings.nats_url = Some(lmi_e2e::nats::url());
    scenario_in(
        "queued",
        settings,
        TestUtilization::default(),
        |env, cp| async move {
            let (client, ns) = (env.client.clone(), env.namespace.clone());
            create(
                &Api::<CapacityProvider>::all(client.clone()),
                provider(&cp, 400, &["c7g.2xlarge"]),
            )
            .await?;
            let functions = Api::<Function>::namespaced(client.clone(), &ns);
            create(&functions, function("app", &ns, &cp, 1)).await?;
            let queued = |f: Function| f.status.and_then(|s| s.queued_events);
            eventually("queuedEvents 0 before any event", WAIT, || async {
                Ok((queued(functions.get("app").await?) == Some(0)).then_some(()))
            })
            .await?;

            // Five events as a router stores them, not to run for ten minutes (so whichever router
            // dispatches events on this cluster leaves them queued).
            let fail = |e: String| lmi_e2e::error::Error::Other(format!("the event queue: {e}"));
            let queue = EventQueue::connect(EventSettings::new(lmi_e2e::nats::url()))
                .await
                .map_err(|e| fail(e.to_string()))?;
            queue.ensure().await.map_err(fail)?;
            for i in 0..5 {
                let meta = EventMeta {
                    request_id: format!("{ns}-queued-{i}"),
                    namespace: ns.clone(),
                    function: "app".to_string(),
                    qualifier: None,
                    received_ms: now_ms(),
                    attempts: 0,
                    not_before_ms: now_ms() + 600_000,
                    trace_id: "Root=1-00000000-000000000000000000000000".to_string(),
                    retry_delays_ms: Vec::new(),
                };
                queue
                    .enqueue(&meta, bytes::Bytes::from_static(b"{}"))
                    .await
                    .map_err(|e| fail(e.message()))?;
            }
            eventually("queuedEvents 5", WAIT, || async {
                Ok((queued(functions.get("app").await?) == Some(5)).then_some(()))
            })
            .await?;

            // Gone from the queue, gone from the count.
            let nats = async_nats::connect(lmi_e2e::nats::url())
                .await
                .map_err(|e| fail(e.to_string()))?;
            let stream = async_nats::jetstream::new(nats)
                .get_stream(lmi_crds::event_queue::STREAM)
                .await
                .map_err(|e| fail(e.to_string()))?;
            stream
                .purge()
                .filter(lmi_crds::event_queue::subject(&ns, "app"))
                .await
                .map_err(|e| fail(e.to_string()))?;
            eventually("queuedEvents 0 after the purge", WAIT, || async {
                Ok((queued(functions.get("app").await?) == Some(0)).then_some(()))
            })
            .await?;
            Ok(())
        },
    )
    .await
}

/// [`scenario_in`] with a provider allowing `types` and one function `hello` of min 1 created.
async fn one_function_on<F, Fut>(
    test: &'static str,
    settings: Settings,
    types: &'static [&'static str],
    body: F,
) -> Result<()>
where
    F: FnOnce(TestEnv, String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    scenario_in(
        test,
        settings,
        TestUtilization::default(),
        |env, cp| async move {
            let (client, ns) = (env.client.clone(), env.namespace.clone());
            let functions = provider_and_functions(&client, &ns, provider(&cp, 400, types)).await?;
            create(&functions, function("hello", &ns, &cp, 1)).await?;
            body(env, cp).await
        },
    )
    .await
}

/// A NodeClaim real Karpenter cannot launch (the local cluster's Karpenter has no offering of
/// `c6gn.large` in us-east-1a, `lmi_e2e::karpenter::UNOFFERED`) is given up after the launch
/// timeout; the provider says why (an Event and a condition), and the EE gets the next type.
#[tokio::test]
async fn a_launch_karpenter_cannot_satisfy_moves_to_another_type_and_says_why() -> Result<()> {
    let settings = Settings {
        launch_timeout: Duration::from_secs(8),
        ..one_zone(test_settings())
    };
    one_function_on(
        "unoffered",
        settings,
        &["c6gn.large", "c6gn.xlarge"],
        |env, cp| async move {
            let (client, ns) = (env.client.clone(), env.namespace.clone());
            // The planner's first choice, the cheaper type, is the one Karpenter cannot launch.
            eventually("a c6gn.large NodeClaim", WAIT, || async {
                let claims = claims_of(&client, &cp).await?;
                Ok(claims
                    .iter()
                    .any(|c| {
                        c.requirement("node.kubernetes.io/instance-type") == Some("c6gn.large")
                    })
                    .then_some(()))
            })
            .await?;
            wait_state(&client, &ns, "hello-v1", "Active").await?;
            assert!(
                has_provider_event(&client, &cp, "InstanceLaunchFailed").await?,
                "an InstanceLaunchFailed Event on the provider"
            );
            let claims = claims_of(&client, &cp).await?;
            let types: Vec<_> = claims
                .iter()
                .filter(|c| c.metadata.deletion_timestamp.is_none())
                .filter_map(|c| c.requirement("node.kubernetes.io/instance-type"))
                .collect();
            assert_eq!(types, ["c6gn.xlarge"], "the failed claim is gone");
            let provider = Api::<CapacityProvider>::all(client.clone())
                .get(&cp)
                .await?;
            let condition = provider
                .status
                .unwrap_or_default()
                .conditions
                .into_iter()
                .find(|c| c.type_ == "InstanceLaunchFailed")
                .expect("the provider's InstanceLaunchFailed condition");
            assert!(
                condition.message.contains("c6gn.large in us-east-1a"),
                "{}",
                condition.message
            );
            Ok(())
        },
    )
    .await
}

/// Karpenter deletes a NodeClaim its cloud refuses for lack of capacity and records an
/// `InsufficientCapacityError` Event. Real Karpenter's kwok provider refuses every launch whose
/// node class does not exist: the operator reads the Events, avoids each refused type, and once
/// none is left the version waits with `InsufficientCapacity`, naming the refusals.
#[tokio::test]
async fn launches_karpenter_refuses_for_capacity_are_avoided_until_none_is_left() -> Result<()> {
    let zones: Vec<String> = vec!["us-east-1b".to_string()];
    let settings = Settings {
        node_class: lmi_operator::karpenter::NodeClassChoice::parse(
            "karpenter.kwok.sh/KWOKNodeClass/no-such-class",
            &zones,
        )
        .expect("a valid setting"),
        ..test_settings()
    };
    one_function_on(
        "refused",
        settings,
        &["c7g.large", "c7g.xlarge"],
        |env, cp| async move {
            let (client, ns) = (env.client.clone(), env.namespace.clone());
            let (state, _) = eventually("the version to run out of types", WAIT, || async {
                let state = version_state(&client, &ns, "hello-v1").await?;
                Ok(state.filter(|(_, code)| code.as_deref() == Some("InsufficientCapacity")))
            })
            .await?;
            assert_eq!(state, "Pending");
            let version = Api::<FunctionVersion>::namespaced(client.clone(), &ns)
                .get("hello-v1")
                .await?;
            let message = version
                .status
                .and_then(|s| s.state_reason)
                .unwrap_or_default();
            for offering in ["c7g.large in us-east-1b", "c7g.xlarge in us-east-1b"] {
                assert!(message.contains(offering), "{offering}: {message}");
            }
            assert!(message.contains("InsufficientCapacityError"), "{message}");
            assert!(has_provider_event(&client, &cp, "InstanceLaunchFailed").await?);
            assert!(
                claims_of(&client, &cp).await?.is_empty(),
                "no claim is left"
            );
            Ok(())
        },
    )
    .await
}

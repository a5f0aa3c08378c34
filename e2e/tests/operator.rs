//! End-to-end tests of the operator on the local cluster: kwok nodes, and a simulated cloud that
//! turns NodeClaims into nodes. Each test runs its own operator (one at a time) and its own
//! capacity provider.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use lmi_crds::{CapacityProvider, Function};
use lmi_e2e::error::Result;
use lmi_e2e::harness::{TestEnv, eventually, with_namespace};
use lmi_e2e::operator_harness::{
    TestUtilization, claims_of, create, ees_of, exclusive, force_remove, patch_spec, pod_ready,
    prepare, start_cloud, start_operator, start_operator_with, tear_down, test_settings,
    version_state,
};
use lmi_e2e::simcloud::SimCloud;
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

/// Runs `body` with an operator and a simulated cloud, then deletes what it made.
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
    let _one_operator = exclusive().await;
    with_namespace(test, |env| async move {
        prepare(&env.client).await?;
        let cp = cp_name(&env, test);
        let operator = start_operator_with(env.client.clone(), test_settings(), Arc::new(load))?;
        let cloud = start_cloud(env.client.clone(), SimCloud::default());
        let outcome = body(env.clone(), cp.clone()).await;
        finish(&env, &cp, outcome, [operator, cloud]).await
    })
    .await
}

/// Deletes the test's functions and capacity provider while the operator still runs, then stops
/// the operator and the cloud; a provider that could not be deleted loses its finalizer.
async fn finish(
    env: &TestEnv,
    cp: &str,
    outcome: Result<()>,
    tasks: [tokio::task::JoinHandle<()>; 2],
) -> Result<()> {
    let cleaned = tear_down(&env.client, &env.namespace, cp).await;
    for task in tasks {
        task.abort();
    }
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
        create(
            &Api::<CapacityProvider>::all(client.clone()),
            provider(&cp, 400, &["c7g.xlarge"]),
        )
        .await?;
        let functions = Api::<Function>::namespaced(client.clone(), &ns);
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
        create(&Api::<CapacityProvider>::all(client.clone()), provider(&cp, 400, &["c7g.2xlarge"])).await?;
        let functions = Api::<Function>::namespaced(client.clone(), &ns);
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
        let events: Api<Event> = Api::default_namespaced(client.clone());
        let blocked = eventually("a DeletionBlocked event", WAIT, || async {
            let list = events
                .list(&ListParams::default().fields(&format!("involvedObject.name={cp}")))
                .await?;
            Ok(list
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some("DeletionBlocked"))
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
        let cloud = start_cloud(
            client.clone(),
            SimCloud {
                launch_delay: Duration::from_millis(300),
                ..Default::default()
            },
        );
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
        finish(&env, &cp, outcome, [operator, cloud]).await
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

//! The local cluster itself: CRDs installed, kwok nodes and pods behave like real ones.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use lmi_e2e::harness::{self, TestEnv, eventually};
use lmi_e2e::nodes::{self, FakeNode};
use lmi_e2e::{Error, Result, crds, manifests};

#[tokio::test]
async fn crds_are_installed_and_established() -> Result<()> {
    let client = harness::client().await?;
    let dir = harness::repo_root().join("crds").join("yaml");
    let files = manifests::yaml_files(&dir)?;
    assert!(!files.is_empty(), "no CRD manifests in {}", dir.display());
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for file in files {
        for doc in manifests::read_documents(&file)? {
            // The admission policies share the folder.
            if doc["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let crd = api.get(&name).await?;
            assert!(crds::is_established(&crd), "CRD {name} is not Established");
        }
    }
    Ok(())
}

#[tokio::test]
async fn kwok_node_becomes_ready_and_a_pod_bound_to_it_runs() -> Result<()> {
    let used_namespace = Arc::new(Mutex::new(None));
    let record = used_namespace.clone();
    harness::with_namespace("kwok-node", |env: TestEnv| async move {
        if let Ok(mut slot) = record.lock() {
            *slot = Some(env.namespace.clone());
        }
        let node_name = format!("kwok-{}", env.namespace);
        let node = FakeNode::of_type(&node_name, "m7g.xlarge", "us-east-1a")?;
        env.delete_node_afterwards(&node_name);
        let ready = nodes::create_ready(&env.client, &node, Duration::from_secs(60)).await?;
        let labels = ready.metadata.labels.unwrap_or_default();
        assert_eq!(labels["node.kubernetes.io/instance-type"], "m7g.xlarge");
        assert_eq!(labels["kubernetes.io/arch"], "arm64");
        assert_eq!(labels["karpenter.k8s.aws/instance-cpu"], "4");
        let capacity = ready.status.and_then(|s| s.capacity).unwrap_or_default();
        assert_eq!(
            capacity["cpu"].0, "4",
            "capacity as the server normalises it"
        );

        // Bound by the real scheduler (node selector), then marked Running by kwok.
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("hello".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_selector: Some(
                    [("kubernetes.io/hostname".to_string(), node_name.clone())].into(),
                ),
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("registry.invalid/hello:1".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        pods.create(&PostParams::default(), &pod).await?;
        let running = eventually("pod hello to be Running", Duration::from_secs(60), || {
            let pods = pods.clone();
            async move {
                let pod = pods.get("hello").await?;
                let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                Ok::<_, Error>((phase.as_deref() == Some("Running")).then_some(pod))
            }
        })
        .await?;
        let spec = running.spec.unwrap_or_default();
        assert_eq!(spec.node_name.as_deref(), Some(node_name.as_str()));
        let ip = running.status.and_then(|s| s.pod_ip);
        assert!(ip.is_some(), "kwok gives the pod an IP");
        Ok(())
    })
    .await?;

    // The harness's cleanup really empties the namespace: kwok finishes deleting the pod.
    let namespace = used_namespace
        .lock()
        .ok()
        .and_then(|slot| slot.clone())
        .ok_or(Error::Other("the test did not run".into()))?;
    let namespaces: Api<Namespace> = Api::all(harness::client().await?);
    eventually(
        "the test namespace to be gone",
        Duration::from_secs(60),
        || {
            let namespaces = namespaces.clone();
            let namespace = namespace.clone();
            async move {
                Ok(namespaces
                    .get_opt(&namespace)
                    .await?
                    .is_none()
                    .then_some(()))
            }
        },
    )
    .await
}

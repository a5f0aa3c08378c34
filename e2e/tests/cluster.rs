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

/// `lmi-dev export-images` writes registry-ready archives: a real registry (Distribution, Debian's
/// `docker-registry`) takes them from `skopeo copy` as the docs say, and containerd (a real node's)
/// pulls them back as the same images (the same config digest: the same layers and settings).
#[tokio::test]
async fn exported_images_push_to_a_registry_and_a_node_pulls_them_back() -> Result<()> {
    use std::process::Command;
    use std::time::Instant;

    let run = |program: &str, args: &[&str]| -> Result<String> {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| Error::Other(format!("running {program}: {e}")))?;
        if !out.status.success() {
            return Err(Error::Other(format!(
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // The cluster (started when none runs): its real nodes' containerd pull the images.
    harness::client().await?;
    let paths = lmi_e2e::paths::Paths::from_env();
    let work = paths
        .root()
        .join(format!("push-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    // The programs this test binary was built beside (cargo's debug folder).
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .ok_or_else(|| Error::Other("no target folder".into()))?;
    let exported =
        lmi_e2e::images::write_product_archives(&paths, &bin_dir, &work.as_path().join("out"))
            .await?;
    assert_eq!(exported.len(), 3);

    // A registry on a free loopback port, its storage in the temporary folder.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Error::Other(e.to_string()))?
        .port();
    let config = work.as_path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            work.as_path().join("storage").display()
        ),
    )
    .map_err(|e| Error::Other(e.to_string()))?;
    let mut registry = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Error::Other(format!("starting docker-registry: {e}")))?;
    let outcome = async {
        eventually(
            "the registry to listen",
            Duration::from_secs(10),
            || async {
                Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ()))
            },
        )
        .await?;
        let containerd = lmi_e2e::node::TEST_NODES[1].containerd_address();
        let containerd = containerd.to_string_lossy();
        for image in &exported {
            let reference = format!("127.0.0.1:{port}/lmi/{}:e2e", image.repository);
            let started = Instant::now();
            run(
                "skopeo",
                &[
                    "copy",
                    "--dest-tls-verify=false",
                    &format!("oci-archive:{}", image.archive.display()),
                    &format!("docker://{reference}"),
                ],
            )?;
            let pushed = started.elapsed();
            let manifest: serde_json::Value = serde_json::from_str(&run(
                "skopeo",
                &[
                    "inspect",
                    "--raw",
                    "--tls-verify=false",
                    &format!("docker://{reference}"),
                ],
            )?)?;
            // The archive's own manifest names the same config.
            let archive = run(
                "tar",
                &[
                    "-xOf",
                    &image.archive.to_string_lossy(),
                    &format!(
                        "blobs/sha256/{}",
                        image.manifest_digest.trim_start_matches("sha256:")
                    ),
                ],
            )?;
            let local: serde_json::Value = serde_json::from_str(&archive)?;
            assert_eq!(
                manifest["config"]["digest"], local["config"]["digest"],
                "{reference}"
            );
            // A namespace of its own in the node's containerd: the kubelet's images are untouched.
            let ctr = |args: &[&str]| {
                let mut all = vec!["--address", &containerd, "-n", "lmi-push-test", "images"];
                all.extend_from_slice(args);
                run("ctr", &all)
            };
            ctr(&["pull", "--plain-http", &reference])?;
            let listed = ctr(&["ls"])?;
            ctr(&["rm", &reference])?;
            assert!(
                listed.contains(&reference) && listed.contains("linux/amd64"),
                "{listed}"
            );
            println!(
                "{reference}: pushed in {:.1} s, pulled by containerd",
                pushed.as_secs_f64()
            );
        }
        Ok(())
    }
    .await;
    let _ = registry.kill();
    let _ = registry.wait();
    let _ = std::fs::remove_dir_all(&work);
    outcome
}

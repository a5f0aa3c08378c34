//! Test harness for integration tests against a real apiserver.
//!
//! - One cluster per test run: the cluster named by `KUBECONFIG` when that is set; else the local
//!   cluster, started by the first test that needs it (later test binaries find it running and
//!   reuse it; `lmi-dev down` or `.ci/run` stops it).
//! - The project's CRDs are (re)applied once per test binary, so tests see the current schema.
//! - Each test runs in its own namespace, deleted afterwards together with the cluster-scoped
//!   objects the test registered, whether the test passed, failed or panicked.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::OnceCell;
use tracing::info;

use crate::cluster::{self, UpOptions};
use crate::crds;
use crate::error::{Error, Result};
use crate::health;
use crate::paths::Paths;

/// Label on every namespace the harness creates, to find leftovers.
pub const NAMESPACE_LABEL: &str = "lmi.dev/e2e";

/// The operator instance of the tests (`lmi.dev/instance`): every lmi.dev object a test creates
/// carries it, and the operators the tests run serve only it. Another
/// operator on the same cluster (the main job's, a chart-installed one) ignores the tests'
/// objects, and the tests' operators ignore its objects.
pub const E2E_INSTANCE: &str = "e2e";

/// Labels an lmi.dev manifest with the tests' instance (other kinds are left as they are).
pub fn label_for_tests(manifest: &mut serde_json::Value) {
    let is_lmi = manifest["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("lmi.dev/"));
    if !is_lmi || !manifest.is_object() {
        return;
    }
    let metadata = &mut manifest["metadata"];
    if !metadata.is_object() {
        *metadata = serde_json::json!({});
    }
    let labels = &mut metadata["labels"];
    if !labels.is_object() {
        *labels = serde_json::json!({});
    }
    labels[lmi_crds::common::INSTANCE_LABEL] = serde_json::Value::from(E2E_INSTANCE);
}

static KUBECONFIG: OnceCell<PathBuf> = OnceCell::const_new();

/// The kubeconfig of the cluster for this test run, starting the local cluster if needed.
pub async fn kubeconfig() -> Result<PathBuf> {
    KUBECONFIG
        .get_or_try_init(|| async {
            init_tracing();
            let path = match user_kubeconfig() {
                Some(path) => {
                    info!(kubeconfig = %path.display(), "using the cluster from KUBECONFIG");
                    path
                }
                None => {
                    let paths = Paths::from_env();
                    cluster::up(&paths, &UpOptions::default()).await?.kubeconfig
                }
            };
            // `up` installed them on the local cluster already; a user's cluster needs them too,
            // and either may hold an older version from an earlier run.
            let client = crate::kubeconfig::client(&path).await?;
            crds::install_dir(&client, &cluster::default_crd_dir()).await?;
            Ok(path)
        })
        .await
        .cloned()
}

/// The first file of `KUBECONFIG`, when set and non-empty.
fn user_kubeconfig() -> Option<PathBuf> {
    let value = std::env::var_os("KUBECONFIG")?;
    std::env::split_paths(&value).find(|p| !p.as_os_str().is_empty())
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client=off")),
        )
        .with_test_writer()
        .try_init();
}

/// A client for this test run's cluster. Each test makes its own: a client is bound to the
/// tokio runtime it was first used on, and every `#[tokio::test]` has its own runtime.
pub async fn client() -> Result<Client> {
    crate::kubeconfig::client(&kubeconfig().await?).await
}

/// What a test gets: a client, its namespace, and a place to register cluster-scoped objects for
/// deletion.
#[derive(Clone)]
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    cleanup: Arc<Mutex<Vec<ClusterScoped>>>,
}

#[derive(Debug, Clone)]
enum ClusterScoped {
    Node(String),
    Dynamic(serde_json::Value),
}

impl TestEnv {
    /// Deletes this node when the test ends.
    pub fn delete_node_afterwards(&self, name: &str) {
        if let Ok(mut list) = self.cleanup.lock() {
            list.push(ClusterScoped::Node(name.to_string()));
        }
    }

    /// Gives a cluster-scoped manifest a name of this test's own (`<namespace>-<name>`), so that
    /// the test never creates, changes or deletes a cluster-scoped object it did not make (the
    /// main job's provider `local`, say); even a dry-run apply under a taken name would be an
    /// update of that object, merged with its fields. Namespaced manifests are left as they are.
    pub async fn own_name(&self, manifest: &mut serde_json::Value) -> Result<()> {
        if crate::manifests::is_namespaced(&self.client, manifest).await? {
            return Ok(());
        }
        if let Some(name) = manifest["metadata"]["name"].as_str() {
            let owned: String = format!("{}-{name}", self.namespace)
                .chars()
                .take(253)
                .collect();
            manifest["metadata"]["name"] = serde_json::Value::from(owned);
        }
        Ok(())
    }

    /// Labels the test's namespace to enforce the Pod Security Standard `restricted`: the
    /// apiserver's PodSecurity admission then refuses any pod of it that does not pass.
    pub async fn enforce_restricted_pod_security(&self) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let restricted = serde_json::json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}});
        namespaces
            .patch(
                &self.namespace,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&restricted),
            )
            .await?;
        Ok(())
    }

    /// Deletes the object a manifest names when the test ends (for cluster-scoped kinds).
    pub fn delete_afterwards(&self, manifest: &serde_json::Value) {
        if let Ok(mut list) = self.cleanup.lock() {
            list.push(ClusterScoped::Dynamic(manifest.clone()));
        }
    }
}

/// Runs `test` in a fresh namespace and cleans up afterwards, even when the test fails or
/// panics; then passes the failure or panic on.
pub async fn with_namespace<F, Fut>(test_name: &str, test: F) -> Result<()>
where
    F: FnOnce(TestEnv) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let client = client().await?;
    let namespace = create_namespace(&client, test_name).await?;
    let env = TestEnv {
        client: client.clone(),
        namespace: namespace.clone(),
        cleanup: Arc::new(Mutex::new(Vec::new())),
    };
    let outcome = AssertUnwindSafe(test(env.clone())).catch_unwind().await;
    let cleaned = cleanup(&env).await;
    match outcome {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(result) => {
            result?;
            cleaned
        }
    }
}

async fn create_namespace(client: &Client, test_name: &str) -> Result<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let prefix: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("e2e-{}-", prefix.trim_matches('-'))),
            labels: Some([(NAMESPACE_LABEL.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = api.create(&PostParams::default(), &ns).await?;
    let name = created
        .metadata
        .name
        .ok_or_else(|| Error::Other("created namespace has no name".into()))?;
    // Pods are refused until the service-account controller has made `default`.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while health::service_account_exists(client, &name, "default")
        .await
        .is_err()
    {
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("service account default in namespace {name}"),
                seconds: 30,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(name)
}

/// How long cleanup waits for a test's pods to go before it deletes the test's nodes.
const POD_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

async fn cleanup(env: &TestEnv) -> Result<()> {
    let mut first_error = None;
    // The namespace first, while the test's kwok nodes still exist: kwok finishes the deletion of
    // pods on nodes it manages; a pod whose node is already gone waits for pod GC instead (40 s).
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    match namespaces
        .delete(&env.namespace, &DeleteParams::default())
        .await
    {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => {
            first_error.get_or_insert(Error::from(e));
        }
    }
    let registered: Vec<ClusterScoped> = env
        .cleanup
        .lock()
        .map(|list| list.clone())
        .unwrap_or_default();
    if registered
        .iter()
        .any(|object| matches!(object, ClusterScoped::Node(_)))
    {
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
        let drained = eventually("the test's pods to be deleted", POD_DRAIN_TIMEOUT, || {
            let pods = pods.clone();
            async move {
                Ok(pods
                    .list(&ListParams::default())
                    .await?
                    .items
                    .is_empty()
                    .then_some(()))
            }
        })
        .await;
        if let Err(e) = drained {
            tracing::warn!(namespace = %env.namespace, "{e}; deleting the nodes anyway");
        }
    }
    for object in registered.iter().rev() {
        let result = match object {
            ClusterScoped::Node(name) => {
                let api: Api<Node> = Api::all(env.client.clone());
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(Error::from(e)),
                }
            }
            ClusterScoped::Dynamic(manifest) => {
                crate::manifests::delete(&env.client, &env.namespace, manifest).await
            }
        };
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The repository's root (for `examples/`, `crds/yaml/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lmi_manifests_get_the_tests_instance_label() {
        let mut function = serde_json::json!({"apiVersion": "lmi.dev/v1alpha1", "kind": "Function", "metadata": {"name": "f", "labels": {"team": "a"}}});
        label_for_tests(&mut function);
        assert_eq!(function["metadata"]["labels"]["lmi.dev/instance"], "e2e");
        assert_eq!(function["metadata"]["labels"]["team"], "a");
        let mut pod =
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        label_for_tests(&mut pod);
        assert!(pod["metadata"].get("labels").is_none());
    }
}

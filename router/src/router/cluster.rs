//! The cluster catalog source: kube-rs reflectors on FunctionVersions, FunctionAliases and EE pods
//! (all namespaces).
//!
//! A version's EEs are the pods labelled `lmi.dev/function=<functionName>` and
//! `lmi.dev/version=<version>` in the version's namespace that are Ready (the sidecar's readiness:
//! runtime initialized, not draining) and not being deleted; the router calls their sidecars on
//! `podIP:<sidecar port>`.
//!
//! A third reflector holds the invoke key (the Secret `lmi-invoke-key` of the system namespace),
//! from which each function's token is derived: it may appear after the router started (the
//! operator creates it), and each change rebuilds the catalog.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use lmi_crds::common::{FUNCTION_LABEL, VERSION_LABEL};
use lmi_crds::invoke_token::{INVOKE_KEY_FIELD, INVOKE_KEY_SECRET, InvokeKey};
use lmi_crds::{Function, FunctionAlias, FunctionVersion};
use tokio::sync::Notify;

use super::Router;
use super::catalog::{AliasSpec, CatalogSpec, FunctionSpec, VersionSpec, WeightedVersion};
use crate::Error;

/// Build the catalog from what the reflectors hold. Pure.
pub fn spec_from(
    functions_found: &[Arc<Function>],
    versions: &[Arc<FunctionVersion>],
    aliases: &[Arc<FunctionAlias>],
    pods: &[Arc<Pod>],
    sidecar_port: u16,
) -> CatalogSpec {
    // (namespace, function, version) -> ready endpoints
    let mut endpoints: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() || !is_ready(pod) {
            continue;
        }
        let labels = pod.metadata.labels.as_ref();
        let get = |k: &str| labels.and_then(|l| l.get(k)).cloned();
        let (Some(ns), Some(f), Some(v)) = (
            pod.metadata.namespace.clone(),
            get(FUNCTION_LABEL),
            get(VERSION_LABEL),
        ) else {
            continue;
        };
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let addr = if ip.contains(':') {
            format!("[{ip}]:{sidecar_port}")
        } else {
            format!("{ip}:{sidecar_port}")
        };
        endpoints.entry((ns, f, v)).or_default().push(addr);
    }
    let mut functions: BTreeMap<(String, String), FunctionSpec> = BTreeMap::new();
    for fv in versions {
        let Some(ns) = fv.metadata.namespace.clone() else {
            continue;
        };
        let Ok(number) = u32::try_from(fv.spec.version) else {
            continue;
        };
        let name = fv.spec.function_name.clone();
        let state = fv
            .status
            .as_ref()
            .and_then(|s| s.state)
            .unwrap_or(lmi_crds::State::Pending);
        let mut eps = endpoints
            .get(&(ns.clone(), name.clone(), number.to_string()))
            .cloned()
            .unwrap_or_default();
        eps.sort();
        let timeout = f64::from(fv.spec.configuration.timeout.clamp(1, 900));
        functions
            .entry((ns.clone(), name.clone()))
            .or_insert_with(|| FunctionSpec {
                namespace: ns,
                name,
                versions: Vec::new(),
                // Derived from the invoke key when the catalog is built.
                invoke_token: None,
                aliases: Vec::new(),
                event_invoke_config: None,
                // From the Function, below.
                url: None,
            })
            .versions
            .push(VersionSpec {
                version: number,
                state,
                timeout_seconds: timeout,
                endpoints: eps,
            });
    }
    for alias in aliases {
        let Some(ns) = alias.metadata.namespace.clone() else {
            continue;
        };
        // An alias of a function without versions is left out: it answers 404 either way.
        let Some(function) = functions.get_mut(&(ns, alias.spec.function_name.clone())) else {
            continue;
        };
        // The CRD's rules refuse versions that are not numbers, weights outside [0, 1) and an
        // additional version equal to the main one; an object from before a rule existed is
        // skipped here rather than failing the whole catalog.
        let Some((version, additional)) = alias.spec.versions() else {
            continue;
        };
        if additional.is_some_and(|(v, w)| v == version || !(0.0..1.0).contains(&w)) {
            continue;
        }
        function.aliases.push(AliasSpec {
            name: alias.spec.name.clone(),
            version,
            additional_version: additional
                .map(|(version, weight)| WeightedVersion { version, weight }),
        });
    }
    for function in functions_found {
        let key = (
            function.metadata.namespace.clone().unwrap_or_default(),
            function.metadata.name.clone().unwrap_or_default(),
        );
        if let Some(f) = functions.get_mut(&key) {
            f.event_invoke_config = function.spec.event_invoke_config.clone();
            f.url = function.spec.url.clone();
        }
    }
    // The object name is <function>-<alias>, so an alias name is unique per function; sorted so
    // the spec does not depend on the reflector's order.
    for f in functions.values_mut() {
        f.aliases.sort_by(|a, b| a.name.cmp(&b.name));
    }
    CatalogSpec {
        functions: functions.into_values().collect(),
    }
}

/// The invoke key in what the key reflector holds (None: no such Secret, or no usable `key`).
pub fn key_from(secrets: &[Arc<Secret>]) -> Option<InvokeKey> {
    secrets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(INVOKE_KEY_SECRET))
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(INVOKE_KEY_FIELD))
        .and_then(|b| InvokeKey::new(b.0.clone()))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Start the reflectors and keep the router's catalog in step with them. Returns once they have
/// listed everything once (so the router does not answer 404 for functions it has not seen yet,
/// nor call EEs without their token when the key exists). With `watch_key` false the router's key
/// came from elsewhere (`--invoke-key-file`) and the Secret is not read.
pub async fn watch(
    router: Arc<Router>,
    client: kube::Client,
    watch_key: bool,
) -> Result<(), Error> {
    let sidecar_port = router.config.sidecar_port;
    let changed = Arc::new(Notify::new());
    // One Secret, by name: the router may read no other (a Role in its own namespace).
    let keys: Option<Store<Secret>> = watch_key.then(|| {
        spawn_reflector(
            Api::namespaced(client.clone(), &router.config.system_namespace),
            watcher::Config::default().fields(&format!("metadata.name={INVOKE_KEY_SECRET}")),
            changed.clone(),
        )
    });
    let versions: Store<FunctionVersion> = spawn_reflector(
        Api::all(client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    // For their eventInvokeConfig (retries, age, destinations of Event invocations).
    let functions: Store<Function> = spawn_reflector(
        Api::all(client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    // `helm upgrade` does not install new CRDs: a router upgraded before FunctionAlias's CRD was
    // applied still serves versions (aliases then answer 404) instead of failing to start.
    let aliases: Option<Store<FunctionAlias>> = if aliases_served(&client).await {
        Some(spawn_reflector(
            Api::all(client.clone()),
            watcher::Config::default(),
            changed.clone(),
        ))
    } else {
        tracing::warn!(
            "the CRD functionaliases.lmi.dev is not installed: aliases answer 404; apply \
             crds/yaml/ and restart the router"
        );
        None
    };
    let pods: Store<Pod> = spawn_trimmed_reflector(
        Api::all(client),
        watcher::Config::default().labels(FUNCTION_LABEL),
        changed.clone(),
        trim_pod,
    );
    let ready = async {
        versions.wait_until_ready().await.ok();
        functions.wait_until_ready().await.ok();
        if let Some(a) = &aliases {
            a.wait_until_ready().await.ok();
        }
        pods.wait_until_ready().await.ok();
        if let Some(k) = &keys {
            k.wait_until_ready().await.ok();
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .is_err()
    {
        return Err(Error::Kube(format!(
            "Functions, FunctionVersions, FunctionAliases, pods and the Secret {INVOKE_KEY_SECRET} of namespace {} not \
             listed within 60 s (RBAC? CRDs installed?)",
            router.config.system_namespace
        )));
    }
    let rebuild = move || {
        if let Some(k) = &keys {
            let key = key_from(&k.state());
            let known = key.is_some();
            if router.set_invoke_key(key) {
                if known {
                    tracing::info!("invoke key loaded: EEs get their functions' tokens");
                } else {
                    tracing::warn!(
                        "no invoke key (Secret {INVOKE_KEY_SECRET}): EEs are called without a \
                         token, and those that require one refuse"
                    );
                }
            }
        }
        let spec = spec_from(
            &functions.state(),
            &versions.state(),
            &aliases.as_ref().map(Store::state).unwrap_or_default(),
            &pods.state(),
            sidecar_port,
        );
        if let Err(e) = router.install(&spec) {
            tracing::warn!(error = %e, "catalog from the cluster rejected");
        }
    };
    rebuild();
    tokio::spawn(async move {
        loop {
            changed.notified().await;
            // Coalesce bursts (a rollout touches many pods at once) into one rebuild.
            tokio::time::sleep(Duration::from_millis(50)).await;
            rebuild();
        }
    });
    Ok(())
}

/// Whether the apiserver serves FunctionAliases (one discovery request, which every
/// authenticated client may make). When discovery fails the answer is yes: the reflector then
/// tries, and the wait for it reports the problem.
async fn aliases_served(client: &kube::Client) -> bool {
    use kube::Resource;
    match client
        .list_api_group_resources(&FunctionAlias::api_version(&()))
        .await
    {
        Ok(list) => list
            .resources
            .iter()
            .any(|r| r.name == FunctionAlias::plural(&()).as_ref()),
        Err(e) => {
            tracing::warn!(error = %e, "discovery of lmi.dev failed; watching FunctionAliases anyway");
            true
        }
    }
}

/// Keeps of an EE pod what [`spec_from`] reads (namespace, name, labels, deletion, IP, Ready): the
/// router holds every EE of the cluster, and the rest of a pod (its containers' environment,
/// volumes, probes, statuses) would be most of its memory at 10,000 EEs.
fn trim_pod(pod: &mut Pod) {
    use k8s_openapi::api::core::v1::PodStatus;
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    pod.spec = None;
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            pod_ip: status.pod_ip,
            conditions: lmi_crds::ee_contract::ready_condition_only(status.conditions),
            ..PodStatus::default()
        });
    }
}

/// What a reflected kind must be: kube's bounds for an object watched and stored.
pub(super) trait Reflected:
    kube::Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Reflected for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Drops `managedFields`, which nothing here reads.
fn trim_managed_fields<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

pub(super) fn spawn_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Arc<Notify>,
) -> Store<K>
where
    K: Reflected,
{
    spawn_trimmed_reflector(api, config, changed, trim_managed_fields::<K>)
}

/// [`spawn_reflector`], storing each object as `trim` leaves it.
fn spawn_trimmed_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Arc<Notify>,
    trim: fn(&mut K),
) -> Store<K>
where
    K: Reflected,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).modify(trim)).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, kind = %K::kind(&()), "watch error (retrying)");
            }
            changed.notify_one();
        }
    });
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fv(ns: &str, name: &str, version: i32, state: Option<&str>) -> Arc<FunctionVersion> {
        let mut v: FunctionVersion = serde_json::from_value(serde_json::json!({
            "apiVersion": "lmi.dev/v1alpha1",
            "kind": "FunctionVersion",
            "metadata": {"name": format!("{name}-v{version}"), "namespace": ns},
            "spec": {
                "functionName": name,
                "version": version,
                "configuration": {
                    "capacityProviderConfig": {
                        "capacityProviderName": "cp",
                        "executionEnvironmentMemoryGiBPerVCpu": 2
                    },
                    "code": {"imageUri": "img"},
                    "timeout": 30
                }
            }
        }))
        .expect("FunctionVersion");
        if let Some(s) = state {
            v.status =
                Some(serde_json::from_value(serde_json::json!({"state": s})).expect("status"));
        }
        Arc::new(v)
    }

    fn pod(ns: &str, f: &str, v: &str, ip: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        let mut p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{f}-{ip}"), "namespace": ns,
                         "labels": {"lmi.dev/function": f, "lmi.dev/version": v}},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .expect("pod");
        if deleting {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        Arc::new(p)
    }

    fn alias(
        ns: &str,
        function: &str,
        name: &str,
        version: &str,
        extra: &[(&str, f64)],
    ) -> Arc<FunctionAlias> {
        let weights: serde_json::Map<String, serde_json::Value> = extra
            .iter()
            .map(|(v, w)| (v.to_string(), serde_json::json!(w)))
            .collect();
        let mut spec = serde_json::json!({
            "name": name, "functionName": function, "functionVersion": version
        });
        if !weights.is_empty() {
            spec["routingConfig"] = serde_json::json!({"additionalVersionWeights": weights});
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "lmi.dev/v1alpha1",
                "kind": "FunctionAlias",
                "metadata": {"name": format!("{function}-{name}"), "namespace": ns},
                "spec": spec
            }))
            .expect("FunctionAlias"),
        )
    }

    #[test]
    fn aliases_join_their_function() {
        let versions = [
            fv("a", "hello", 1, Some("Active")),
            fv("a", "hello", 2, Some("Active")),
            fv("b", "hello", 1, Some("Active")),
        ];
        let aliases = [
            alias("a", "hello", "live", "1", &[("2", 0.25)]),
            alias("a", "hello", "beta", "2", &[]),
            // Another namespace's function of the same name gets only its own.
            alias("b", "hello", "old", "1", &[]),
            // No such function: left out.
            alias("a", "nope", "live", "1", &[]),
            // Refused by the CRD's rules; skipped if one got in anyway.
            alias("a", "hello", "latest", "$LATEST", &[]),
            alias("a", "hello", "same", "1", &[("1", 0.5)]),
            alias("a", "hello", "heavy", "1", &[("2", 1.5)]),
        ];
        let spec = spec_from(&[], &versions, &aliases, &[], 9000);
        let a = &spec.functions[0];
        assert_eq!(
            a.aliases,
            [
                AliasSpec {
                    name: "beta".into(),
                    version: 2,
                    additional_version: None
                },
                AliasSpec {
                    name: "live".into(),
                    version: 1,
                    additional_version: Some(WeightedVersion {
                        version: 2,
                        weight: 0.25
                    })
                },
            ]
        );
        let b = &spec.functions[1];
        assert_eq!(b.aliases.len(), 1);
        assert_eq!(
            (b.aliases[0].name.as_str(), b.aliases[0].version),
            ("old", 1)
        );
        assert_eq!(spec.functions.len(), 2);
    }

    #[test]
    fn the_key_is_the_named_secrets_key_field() {
        let secret = |name: &str, data: serde_json::Value| -> Arc<Secret> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "namespace": "lmi-system"},
                    "data": data
                }))
                .expect("secret"),
            )
        };
        // "a2V5IGJ5dGVz" is base64 of "key bytes".
        let good = secret(
            INVOKE_KEY_SECRET,
            serde_json::json!({"key": "a2V5IGJ5dGVz"}),
        );
        assert_eq!(key_from(&[good]), InvokeKey::new(b"key bytes".to_vec()));
        let other = secret("other", serde_json::json!({"key": "a2V5IGJ5dGVz"}));
        assert_eq!(key_from(&[other]), None);
        let empty = secret(INVOKE_KEY_SECRET, serde_json::json!({"key": ""}));
        assert_eq!(key_from(&[empty]), None);
        assert_eq!(key_from(&[]), None);
    }

    #[test]
    fn a_functions_url_and_event_config_come_from_the_function() {
        let function = |ns: &str, spec_extra: serde_json::Value| -> Arc<Function> {
            let mut spec = serde_json::json!({
                "capacityProviderConfig": {
                    "capacityProviderName": "cp",
                    "executionEnvironmentMemoryGiBPerVCpu": 2
                },
                "code": {"imageUri": "img"}
            });
            if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
                s.extend(extra.clone());
            }
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "lmi.dev/v1alpha1",
                    "kind": "Function",
                    "metadata": {"name": "hello", "namespace": ns},
                    "spec": spec
                }))
                .expect("Function"),
            )
        };
        let functions = [
            function(
                "a",
                serde_json::json!({"url": {"authType": "AWS_IAM", "invokeMode": "RESPONSE_STREAM"}}),
            ),
            function("b", serde_json::json!({})),
        ];
        let versions = [
            fv("a", "hello", 1, Some("Active")),
            fv("b", "hello", 1, Some("Active")),
        ];
        let spec = spec_from(&functions, &versions, &[], &[], 9000);
        let url = spec.functions[0].url.as_ref().expect("a's URL");
        assert_eq!(url.auth_type, lmi_crds::UrlAuthType::AwsIam);
        assert_eq!(url.invoke_mode, lmi_crds::UrlInvokeMode::ResponseStream);
        assert_eq!(spec.functions[1].url, None, "b has no url section");
    }

    #[test]
    fn versions_get_their_ready_pods() {
        let versions = [
            fv("a", "hello", 1, Some("Active")),
            fv("a", "hello", 2, None),
            fv("b", "hello", 1, Some("Active")),
        ];
        let pods = [
            pod("a", "hello", "1", "10.0.0.2", true, false),
            pod("a", "hello", "1", "10.0.0.1", true, false),
            pod("a", "hello", "1", "10.0.0.3", false, false),
            pod("a", "hello", "1", "10.0.0.4", true, true),
            pod("a", "hello", "2", "fd00::5", true, false),
            pod("b", "other", "1", "10.0.1.1", true, false),
        ];
        let spec = spec_from(&[], &versions, &[], &pods, 9000);
        assert_eq!(spec.functions.len(), 2);
        let a = &spec.functions[0];
        assert_eq!((a.namespace.as_str(), a.name.as_str()), ("a", "hello"));
        assert_eq!(a.versions[0].state, lmi_crds::State::Active);
        assert_eq!(a.versions[0].timeout_seconds, 30.0);
        assert_eq!(a.versions[0].endpoints, ["10.0.0.1:9000", "10.0.0.2:9000"]);
        assert_eq!(a.versions[1].state, lmi_crds::State::Pending);
        assert_eq!(a.versions[1].endpoints, ["[fd00::5]:9000"]);
        let b = &spec.functions[1];
        assert!(
            b.versions[0].endpoints.is_empty(),
            "pods of another function do not count"
        );
    }

    #[test]
    fn trimmed_pods_give_the_same_catalog() {
        let versions = [fv("a", "hello", 1, Some("Active"))];
        let pods: Vec<Arc<Pod>> = [
            pod("a", "hello", "1", "10.0.0.2", true, false),
            pod("a", "hello", "1", "10.0.0.3", false, false),
            pod("a", "hello", "1", "10.0.0.4", true, true),
        ]
        .into_iter()
        .map(|p| {
            let mut p = (*p).clone();
            p.spec = Some(Default::default());
            p.metadata.annotations = Some([("a".to_string(), "b".repeat(1000))].into());
            Arc::new(p)
        })
        .collect();
        let trimmed: Vec<Arc<Pod>> = pods
            .iter()
            .map(|p| {
                let mut p = (**p).clone();
                trim_pod(&mut p);
                Arc::new(p)
            })
            .collect();
        assert!(
            trimmed
                .iter()
                .all(|p| p.spec.is_none() && p.metadata.annotations.is_none())
        );
        assert_eq!(
            spec_from(&[], &versions, &[], &trimmed, 9000),
            spec_from(&[], &versions, &[], &pods, 9000)
        );
    }
}

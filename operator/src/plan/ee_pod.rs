//! The pod of one execution environment: the function container, the sidecar as a native
//! sidecar, Guaranteed QoS, restricted Pod Security, bound to the node placement chose.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapKeySelector, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, HTTPHeader, Lifecycle, LifecycleHandler, ObjectFieldSelector, Pod,
    PodSecurityContext, PodSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lmi_crds::FunctionVersion;
use lmi_crds::catalog::{SIDECAR_CPU_MILLIS, SIDECAR_MEMORY_MIB};
use lmi_crds::common::{
    CAPACITY_PROVIDER_LABEL, FUNCTION_LABEL, MANAGED_BY, MANAGED_BY_LABEL, VERSION_LABEL,
    instance_label,
};
use lmi_crds::ee_contract::{self, RUNTIME_API_ADDR, env as ee_env};
use lmi_crds::function::EnvValueSource;
use lmi_crds::invoke_token::{
    DRAIN_TOKEN_ENV, DRAIN_TOKEN_HEADER, FUNCTION_TOKEN_FIELD, INVOKE_TOKEN_ENV, InvokeKey,
    function_secret_name,
};
use lmi_crds::rules::{EeShape, init_timeout_seconds};

/// The sidecar's pod port (a container port is an i32).
const SIDECAR_PORT: i32 = ee_contract::SIDECAR_PORT as i32;
/// UID and GID the function runs as (Lambda runs functions as an unprivileged user too).
const RUN_AS_USER: i64 = 993;
/// Lambda gives every function a writable /tmp of 512 MiB; the root file system is read-only.
const TMP_SIZE: &str = "512Mi";

/// Settings of the operator that shape every EE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EeSettings {
    pub sidecar_image: String,
    pub region: String,
    pub image_pull_policy: Option<String>,
    /// Secrets (in each function's namespace) for pulling the sidecar's and functions' images
    /// from private registries. Empty: the namespace service account's pull secrets apply.
    pub image_pull_secrets: Vec<String>,
}

/// Builds the pod `name` of `version`, bound to `node`. Its sidecar takes invocations only with
/// the function's token (from the function's Secret, `lmi-invoke-<function>`) and drains
/// only for this pod's drain token, derived from `key` (see `lmi_crds::invoke_token`).
pub fn ee_pod(
    version: &FunctionVersion,
    shape: &EeShape,
    capacity_provider: &str,
    name: &str,
    node: &str,
    settings: &EeSettings,
    key: &InvokeKey,
) -> Pod {
    let spec = &version.spec;
    let namespace = version.metadata.namespace.clone().unwrap_or_default();
    // In the pod spec (a preStop header cannot come from a Secret): whoever may read this pod
    // may drain it, and that alone; the key stays out of reach.
    let drain_token = key.drain_token(&namespace, name);
    let config = &spec.configuration;
    let version_name = version.metadata.name.clone().unwrap_or_default();
    let mut labels = BTreeMap::from([
        (FUNCTION_LABEL.to_string(), spec.function_name.clone()),
        (VERSION_LABEL.to_string(), spec.version.to_string()),
        (
            CAPACITY_PROVIDER_LABEL.to_string(),
            capacity_provider.to_string(),
        ),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
    ]);
    labels.extend(instance_label(version.metadata.labels.as_ref()));
    let owner = OwnerReference {
        api_version: "lmi.dev/v1alpha1".to_string(),
        kind: "FunctionVersion".to_string(),
        name: version_name,
        uid: version.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };

    let function_memory = format!("{}Mi", shape.memory_mib);
    let lambda_env = [
        (ee_env::RUNTIME_API, RUNTIME_API_ADDR.to_string()),
        (ee_env::MAX_CONCURRENCY, shape.max_concurrency.to_string()),
        (ee_env::FUNCTION_NAME, spec.function_name.clone()),
        (ee_env::FUNCTION_VERSION, spec.version.to_string()),
        (ee_env::FUNCTION_MEMORY_SIZE, shape.memory_mib.to_string()),
        (
            "AWS_LAMBDA_INITIALIZATION_TYPE",
            "lambda-managed-instances".to_string(),
        ),
        ("AWS_REGION", settings.region.clone()),
        ("AWS_DEFAULT_REGION", settings.region.clone()),
    ];
    let mut function_env: Vec<EnvVar> = lambda_env.iter().map(|(k, v)| env(k, v)).collect();
    if let Some(handler) = &config.handler {
        function_env.push(env("_HANDLER", handler));
    }
    if let Some(environment) = &config.environment {
        function_env.extend(environment.variables.iter().map(|(k, v)| env(k, v)));
        // References only: the kubelet reads the values when the EE starts, so they never pass
        // through the operator, a version or a status.
        function_env.extend(
            environment
                .value_from
                .iter()
                .map(|(name, source)| env_from(name, source)),
        );
    }
    let image_config = config.image_config.clone().unwrap_or_default();
    let function = Container {
        name: "function".to_string(),
        image: Some(config.code.image_uri.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        command: (!image_config.entry_point.is_empty()).then(|| image_config.entry_point.clone()),
        args: (!image_config.command.is_empty()).then(|| image_config.command.clone()),
        working_dir: image_config.working_directory.clone(),
        env: Some(function_env),
        resources: Some(guaranteed(&format!("{}", shape.vcpus), &function_memory)),
        security_context: Some(restricted(true)),
        // On deletion the kubelet stops the function before its (native) sidecar: this hook holds
        // the function's SIGTERM until the sidecar has drained, so no admitted invocation is cut.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                http_get: Some(HTTPGetAction {
                    path: Some("/drain".to_string()),
                    port: IntOrString::Int(SIDECAR_PORT),
                    http_headers: Some(vec![HTTPHeader {
                        name: DRAIN_TOKEN_HEADER.to_string(),
                        value: drain_token.clone(),
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".to_string(),
            mount_path: "/tmp".to_string(),
            ..Default::default()
        }]),
        ..Default::default()
    };

    let timeout = config.timeout.max(1);
    let sidecar_env = vec![
        env(ee_env::MAX_CONCURRENCY, &shape.max_concurrency.to_string()),
        env(ee_env::FUNCTION_NAME, &spec.function_name),
        env(ee_env::FUNCTION_VERSION, &spec.version.to_string()),
        env(ee_env::FUNCTION_MEMORY_SIZE, &shape.memory_mib.to_string()),
        env(ee_env::FUNCTION_TIMEOUT_SECONDS, &timeout.to_string()),
        env(
            ee_env::INIT_TIMEOUT_SECONDS,
            &init_timeout_seconds(timeout).to_string(),
        ),
        env(
            ee_env::CPU_LIMIT_MILLICORES,
            &(shape.vcpus * 1000).to_string(),
        ),
        env(
            ee_env::MEMORY_LIMIT_BYTES,
            &(u64::from(shape.memory_mib) * 1024 * 1024).to_string(),
        ),
        env(ee_env::LISTEN_ADDR, &format!("0.0.0.0:{SIDECAR_PORT}")),
        env(ee_env::RUNTIME_API_ADDR, RUNTIME_API_ADDR),
        EnvVar {
            name: ee_env::NAMESPACE.to_string(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        // The sidecar's only: the function container never gets it in its environment.
        EnvVar {
            name: INVOKE_TOKEN_ENV.to_string(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: function_secret_name(&spec.function_name),
                    key: FUNCTION_TOKEN_FIELD.to_string(),
                    // Without its Secret the sidecar does not start, rather than start open.
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        env(DRAIN_TOKEN_ENV, &drain_token),
    ];
    let sidecar = Container {
        name: "sidecar".to_string(),
        image: Some(settings.sidecar_image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        // A native sidecar: starts before the function and outlives it, so it can drain.
        restart_policy: Some("Always".to_string()),
        env: Some(sidecar_env),
        ports: Some(vec![ContainerPort {
            name: Some("invoke".to_string()),
            container_port: SIDECAR_PORT,
            ..Default::default()
        }]),
        resources: Some(guaranteed(
            &format!("{SIDECAR_CPU_MILLIS}m"),
            &format!("{SIDECAR_MEMORY_MIB}Mi"),
        )),
        // Ready once the runtime has asked for work, and not while draining.
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".to_string()),
                port: IntOrString::Int(SIDECAR_PORT),
                ..Default::default()
            }),
            period_seconds: Some(1),
            failure_threshold: Some(1),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".to_string()),
                port: IntOrString::Int(SIDECAR_PORT),
                ..Default::default()
            }),
            period_seconds: Some(10),
            ..Default::default()
        }),
        security_context: Some(restricted(true)),
        ..Default::default()
    };

    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: version.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_string()),
            image_pull_secrets: (!settings.image_pull_secrets.is_empty()).then(|| {
                settings
                    .image_pull_secrets
                    .iter()
                    .map(|name| k8s_openapi::api::core::v1::LocalObjectReference {
                        name: name.clone(),
                    })
                    .collect()
            }),
            init_containers: Some(vec![sidecar]),
            containers: vec![function],
            // The sidecar measures the function's CPU and memory under /proc.
            share_process_namespace: Some(true),
            restart_policy: Some("Always".to_string()),
            // The function's identity (its execution role) when it names one; otherwise the
            // namespace's default account, with no token: nothing to steal, nothing to call with.
            service_account_name: config.service_account_name.clone(),
            automount_service_account_token: Some(config.service_account_name.is_some()),
            enable_service_links: Some(false),
            // In-flight invocations may run for the whole function timeout while draining.
            termination_grace_period_seconds: Some(i64::from(timeout) + 10),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            tolerations: Some(vec![Toleration {
                key: Some(CAPACITY_PROVIDER_LABEL.to_string()),
                operator: Some("Equal".to_string()),
                value: Some(capacity_provider.to_string()),
                effect: Some("NoSchedule".to_string()),
                ..Default::default()
            }]),
            volumes: Some(vec![Volume {
                name: "tmp".to_string(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity(TMP_SIZE.to_string())),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

fn env_from(name: &str, source: &EnvValueSource) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: source.secret_key_ref.as_ref().map(|r| SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: r.optional,
            }),
            config_map_key_ref: source
                .config_map_key_ref
                .as_ref()
                .map(|r| ConfigMapKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: r.optional,
                }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Requests equal to limits: Guaranteed QoS, so the kubelet never squeezes an EE.
fn guaranteed(cpu: &str, memory: &str) -> ResourceRequirements {
    let amounts = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.to_string())),
        ("memory".to_string(), Quantity(memory.to_string())),
    ]);
    ResourceRequirements {
        requests: Some(amounts.clone()),
        limits: Some(amounts),
        ..Default::default()
    }
}

/// The restricted Pod Security profile for one container.
fn restricted(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmi_crds::function::{CapacityProviderConfig, FunctionCode};
    use lmi_crds::{FunctionConfiguration, FunctionVersionSpec};

    fn key() -> InvokeKey {
        InvokeKey::new(vec![5u8; 32]).unwrap()
    }

    fn version() -> FunctionVersion {
        let configuration = FunctionConfiguration {
            capacity_provider_config: CapacityProviderConfig {
                capacity_provider_name: "cp".into(),
                per_execution_environment_max_concurrency: None,
                execution_environment_memory_gib_per_vcpu: 4,
            },
            code: FunctionCode {
                image_uri: "img:1".into(),
            },
            image_config: None,
            handler: Some("app.handler".into()),
            runtime: Some("python3.13".into()),
            memory_size: 8192,
            timeout: 30,
            environment: None,
            service_account_name: None,
            architecture: Default::default(),
        };
        let mut v = FunctionVersion::new(
            "hello-v2",
            FunctionVersionSpec {
                function_name: "hello".into(),
                version: 2,
                configuration,
                scaling_config: None,
            },
        );
        v.metadata.namespace = Some("team".into());
        v.metadata.uid = Some("uid-1".into());
        v
    }

    fn settings() -> EeSettings {
        EeSettings {
            sidecar_image: "sidecar:1".into(),
            region: "us-east-1".into(),
            image_pull_policy: None,
            image_pull_secrets: Vec::new(),
        }
    }

    #[test]
    fn pod_is_bound_guaranteed_and_restricted() {
        let v = version();
        let shape = lmi_crds::rules::ee_shape(&v.spec.configuration).unwrap();
        let settings = settings();
        let pod = ee_pod(
            &v,
            &shape,
            "cp",
            "hello-v2-ee-0",
            "node-a",
            &settings,
            &key(),
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
        assert_eq!(spec.share_process_namespace, Some(true));
        let function = &spec.containers[0];
        let pre_stop = function.lifecycle.as_ref().unwrap().pre_stop.as_ref();
        let drain = pre_stop.unwrap().http_get.as_ref().unwrap();
        assert_eq!(drain.path.as_deref(), Some("/drain"));
        assert_eq!(drain.port, IntOrString::Int(SIDECAR_PORT));
        let res = function.resources.as_ref().unwrap();
        assert_eq!(res.requests, res.limits);
        assert_eq!(res.limits.as_ref().unwrap()["cpu"], Quantity("2".into()));
        assert_eq!(
            res.limits.as_ref().unwrap()["memory"],
            Quantity("8192Mi".into())
        );
        let env: BTreeMap<_, _> = function
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(env["AWS_LAMBDA_MAX_CONCURRENCY"], "32"); // Python: 16 per vCPU x 2
        assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001");
        assert_eq!(env["_HANDLER"], "app.handler");
        assert_eq!(
            env["AWS_LAMBDA_INITIALIZATION_TYPE"],
            "lambda-managed-instances"
        );
        let sidecar = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
        assert!(sidecar.readiness_probe.is_some());
        let sc = function.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
        let tol = &spec.tolerations.as_ref().unwrap()[0];
        assert_eq!(tol.value.as_deref(), Some("cp"));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("FunctionVersion", Some(true))
        );
        assert_eq!(pod.metadata.labels.as_ref().unwrap()[VERSION_LABEL], "2");
    }

    #[test]
    fn only_the_sidecar_gets_the_token_and_the_hook_drains_with_the_pods_own() {
        let v = version();
        let shape = lmi_crds::rules::ee_shape(&v.spec.configuration).unwrap();
        let settings = settings();
        let pod = ee_pod(&v, &shape, "cp", "hello-v2-ee-0", "n", &settings, &key());
        let spec = pod.spec.unwrap();
        let sidecar = &spec.init_containers.as_ref().unwrap()[0];
        let sidecar_env = sidecar.env.as_ref().unwrap();
        let find = |name: &str| sidecar_env.iter().find(|e| e.name == name).unwrap();
        let token = find(INVOKE_TOKEN_ENV);
        assert_eq!(token.value, None, "a reference, not the value");
        let secret = token
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str(), secret.optional),
            ("lmi-invoke-hello", "token", Some(false))
        );
        let drain = key().drain_token("team", "hello-v2-ee-0");
        assert_eq!(find(DRAIN_TOKEN_ENV).value.as_deref(), Some(drain.as_str()));

        let function = &spec.containers[0];
        let function_env = function.env.as_ref().unwrap();
        assert!(
            function_env
                .iter()
                .all(|e| e.name != INVOKE_TOKEN_ENV && e.name != DRAIN_TOKEN_ENV),
            "the function container gets neither token"
        );
        let hook = function.lifecycle.as_ref().unwrap().pre_stop.as_ref();
        let headers = hook
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .http_headers
            .clone();
        assert_eq!(
            headers.unwrap(),
            vec![HTTPHeader {
                name: DRAIN_TOKEN_HEADER.to_string(),
                value: drain.clone()
            }]
        );
        // Another pod of the same version drains with another token.
        let other = ee_pod(&v, &shape, "cp", "hello-v2-ee-1", "n", &settings, &key());
        let other_env = other.spec.unwrap().init_containers.unwrap()[0]
            .env
            .clone()
            .unwrap();
        let other_drain = other_env
            .iter()
            .find(|e| e.name == DRAIN_TOKEN_ENV)
            .unwrap();
        assert_ne!(other_drain.value.as_deref(), Some(drain.as_str()));
    }

    #[test]
    fn a_token_is_mounted_only_for_a_named_service_account() {
        let settings = settings();
        let mut v = version();
        let shape = lmi_crds::rules::ee_shape(&v.spec.configuration).unwrap();
        let pod = ee_pod(&v, &shape, "cp", "p", "n", &settings, &key());
        let spec = pod.spec.unwrap();
        assert_eq!(spec.service_account_name, None);
        assert_eq!(spec.automount_service_account_token, Some(false));

        v.spec.configuration.service_account_name = Some("payments-reader".into());
        let pod = ee_pod(&v, &shape, "cp", "p", "n", &settings, &key());
        let spec = pod.spec.unwrap();
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("payments-reader")
        );
        assert_eq!(spec.automount_service_account_token, Some(true));
    }

    #[test]
    fn pull_secrets_are_named_only_when_set() {
        let mut settings = settings();
        let v = version();
        let shape = lmi_crds::rules::ee_shape(&v.spec.configuration).unwrap();
        let pod = ee_pod(&v, &shape, "cp", "p", "n", &settings, &key());
        assert_eq!(pod.spec.unwrap().image_pull_secrets, None);
        settings.image_pull_secrets = vec!["registry".into(), "mirror".into()];
        let pod = ee_pod(&v, &shape, "cp", "p", "n", &settings, &key());
        let names: Vec<String> = pod
            .spec
            .unwrap()
            .image_pull_secrets
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["registry", "mirror"]);
    }

    #[test]
    fn secret_and_config_map_values_are_references_in_the_pod() {
        let settings = settings();
        let mut v = version();
        v.spec.configuration.environment = Some(
            serde_json::from_value(serde_json::json!({
                "variables": {"LOG_LEVEL": "info"},
                "valueFrom": {
                    "DB_PASSWORD": {"secretKeyRef": {"name": "db", "key": "password"}},
                    "FEATURES": {"configMapKeyRef": {"name": "flags", "key": "features", "optional": true}}
                }
            }))
            .unwrap(),
        );
        let shape = lmi_crds::rules::ee_shape(&v.spec.configuration).unwrap();
        let pod = ee_pod(&v, &shape, "cp", "p", "n", &settings, &key());
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let find = |name: &str| env.iter().find(|e| e.name == name).cloned().unwrap();
        assert_eq!(find("LOG_LEVEL").value.as_deref(), Some("info"));
        let password = find("DB_PASSWORD");
        assert_eq!(password.value, None);
        let secret = password.value_from.unwrap().secret_key_ref.unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("db", "password")
        );
        let features = find("FEATURES").value_from.unwrap();
        assert!(features.secret_key_ref.is_none());
        let config_map = features.config_map_key_ref.unwrap();
        assert_eq!(
            (
                config_map.name.as_str(),
                config_map.key.as_str(),
                config_map.optional
            ),
            ("flags", "features", Some(true))
        );
    }
}

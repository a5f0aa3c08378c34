//! `Function`: the current configuration of a Lambda function; publishing snapshots it into a
//! `FunctionVersion`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Architecture, ScalingConfig};

/// Desired state of a function: its configuration, whether to publish it, and the
/// `$LATEST.PUBLISHED` scaling config.
#[derive(CustomResource, kube::KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lmi.dev",
    version = "v1alpha1",
    kind = "Function",
    namespaced,
    shortname = "fn",
    category = "lmi",
    status = "FunctionStatus",
    doc = "A Lambda function running on a capacity provider",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Latest", type_ = "string", json_path = ".status.latestPublishedVersion"),
    printcolumn(name = "Current", type_ = "string", json_path = ".status.currentVersion"),
    printcolumn(name = "Queued", type_ = "integer", json_path = ".status.queuedEvents"),
    printcolumn(name = "Capacity-Provider", type_ = "string", json_path = ".spec.capacityProviderConfig.capacityProviderName"),
    printcolumn(name = "Memory", type_ = "integer", json_path = ".spec.memorySize"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 64").message("a function name has at most 64 characters"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("a function name has lower-case letters, digits and '-', and starts and ends with a letter or digit"),
    validation = Rule::new("!has(self.spec.versionRetention) || self.spec.publishTo == 'Version'")
        .message("versionRetention applies to numbered versions (publishTo: Version); publishing to $LATEST.PUBLISHED keeps only the newest"),
)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    /// Everything a published version freezes.
    #[serde(flatten)]
    pub configuration: FunctionConfiguration,
    /// When true, every change of the configuration publishes it.
    #[serde(default)]
    pub publish: bool,
    /// Where a change is published: `LatestPublished` (default) rolls `$LATEST.PUBLISHED` over
    /// to it and retires the version it replaces; `Version` publishes a numbered version and
    /// keeps the older ones (see `versionRetention`).
    #[serde(default)]
    pub publish_to: PublishTo,
    /// With `publishTo: Version`: how many older numbered versions stay. Unset: all, as in
    /// Lambda.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_retention: Option<VersionRetention>,
    /// Scaling of `$LATEST.PUBLISHED`; carries over to every version published later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_config: Option<ScalingConfig>,
    /// Asynchronous (`Event`) invocations: retries, maximum age and destinations (Lambda's
    /// `PutFunctionEventInvokeConfig`). Not part of a version: changing it publishes nothing
    /// and applies to events from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_invoke_config: Option<EventInvokeConfig>,
    /// The function's URL (Lambda's function URL config): plain HTTP(S) to the function,
    /// served by the routers' URL listener. Not part of a version: changing it publishes
    /// nothing. Its address shows in `status.url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<crate::function_url::FunctionUrlConfig>,
}

/// Lambda's event invoke config.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventInvokeConfig {
    /// How often a function error is retried (0-2). Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2))]
    pub maximum_retry_attempts: Option<i32>,
    /// How long an event may wait, queued or between retries, in seconds (60-21600). Default
    /// 21600 (6 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 21600))]
    pub maximum_event_age_in_seconds: Option<i32>,
    /// Where the record of an event's outcome goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_config: Option<DestinationConfig>,
}

/// Destinations of event outcomes (Lambda's `DestinationConfig`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationConfig {
    /// Receives a record of each event the function handled without error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Destination>,
    /// Receives a record of each event that failed all its attempts or grew too old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Destination>,
}

/// One destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Another function, invoked with the record as an event: its name (same namespace) or ARN
    /// (`arn:aws:lambda:<region>:<namespace>:function:<name>[:<qualifier>]`); or a NATS subject,
    /// `nats:<subject>`, where the record is published to JetStream.
    #[schemars(
        length(min = 1, max = 350),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?|arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:[a-z0-9]([-a-z0-9]*[a-z0-9])?:function:[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[a-zA-Z0-9$_.-]+)?|nats:[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)$"
        )
    )]
    pub destination: String,
}

/// Where a Function publishes a new configuration (Lambda's `PublishVersion` `PublishTo`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PublishTo {
    /// A rolling update of `$LATEST.PUBLISHED`: the new configuration's EEs start, unqualified
    /// calls move to it once its minimum is Ready, and the version it replaces is drained and
    /// deleted. What GitOps repositories want: a commit does not leave warm capacity behind.
    #[default]
    LatestPublished,
    /// A new numbered version, for aliases, blue/green and canaries; older versions stay (or
    /// go by `versionRetention`).
    Version,
}

/// How many numbered versions a Function keeps besides the newest Active one and those an alias
/// names. Applied only once a newer version is Active, and a version is deleted only after it
/// has been deactivated and drained.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionRetention {
    /// Versions that stay Active, the newest Active one included (1-100). Older ones are
    /// deactivated (scaling config 0/0). Unset: all stay Active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub active_versions: Option<i32>,
    /// Deactivated versions kept (0-100); the oldest beyond it are deleted. Unset: all kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub deactivated_versions: Option<i32>,
}

/// The configuration of a function that a version freezes. Field names follow Lambda's API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.memorySize % (self.capacityProviderConfig.executionEnvironmentMemoryGiBPerVCpu * 1024) == 0")
        .message("memorySize must be a multiple of executionEnvironmentMemoryGiBPerVCpu x 1024 MiB (whole vCPUs only)"),
    validation = Rule::new("!has(self.capacityProviderConfig.perExecutionEnvironmentMaxConcurrency) || self.capacityProviderConfig.perExecutionEnvironmentMaxConcurrency <= 64 * (self.memorySize / (self.capacityProviderConfig.executionEnvironmentMemoryGiBPerVCpu * 1024))")
        .message("perExecutionEnvironmentMaxConcurrency may be at most 64 per vCPU (vCPUs = memorySize / (executionEnvironmentMemoryGiBPerVCpu x 1024))"),
)]
pub struct FunctionConfiguration {
    /// The capacity provider and the EE's shape and concurrency.
    pub capacity_provider_config: CapacityProviderConfig,
    /// The function's container image.
    pub code: FunctionCode,
    /// Overrides of the image's entry point, command and working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_config: Option<ImageConfig>,
    /// The handler the runtime loads (`_HANDLER`), e.g. `app.handler`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub handler: Option<String>,
    /// The runtime family of the image (sets the default concurrency per vCPU), e.g.
    /// `python3.13`, `nodejs22.x`, `java21`, `dotnet8`, `provided.al2023`. Unset: custom runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(python3\.[0-9]+|nodejs[0-9]+\.x|java[0-9]+|dotnet[0-9]+|provided(\.al2|\.al2023)?)$"
    ))]
    pub runtime: Option<String>,
    /// Memory of one EE in MiB (2048-32768). Default 2048.
    #[serde(default = "default_memory_size")]
    #[schemars(range(min = 2048, max = 32768))]
    pub memory_size: i32,
    /// Invocation timeout in seconds (1-900). Default 3.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 900))]
    pub timeout: i32,
    /// Environment variables of the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// The Kubernetes service account the function runs as (Lambda's execution role): its token
    /// is mounted, so IRSA or EKS Pod Identity give the function that role's AWS credentials.
    /// Unset: no token is mounted. Naming one needs verb `use` on it (admission policy
    /// `lmi-pass-service-account`, Lambda's `iam:PassRole`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub service_account_name: Option<String>,
    /// x86_64 (default) or arm64; must match the capacity provider's architecture.
    #[serde(default)]
    pub architecture: Architecture,
}

fn default_memory_size() -> i32 {
    crate::rules::DEFAULT_MEMORY_MIB
}

fn default_timeout() -> i32 {
    crate::rules::DEFAULT_TIMEOUT_SECONDS
}

/// Which capacity provider runs the function, and the shape of one EE.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.capacityProviderName == oldSelf.capacityProviderName")
    .message("capacityProviderName is immutable: create a new function to move it"))]
pub struct CapacityProviderConfig {
    /// Name of the (cluster-scoped) CapacityProvider.
    #[schemars(length(min = 1, max = 64))]
    pub capacity_provider_name: String,
    /// Invocations one EE serves at once (1-1600, at most 64 per vCPU). Default: by runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1600))]
    pub per_execution_environment_max_concurrency: Option<i32>,
    /// Memory per vCPU in GiB: 2 (compute), 4 (general) or 8 (memory optimized). Default 2.
    #[serde(
        default = "default_ratio",
        rename = "executionEnvironmentMemoryGiBPerVCpu"
    )]
    #[schemars(extend("enum" = [2, 4, 8]))]
    pub execution_environment_memory_gib_per_vcpu: i32,
}

fn default_ratio() -> i32 {
    crate::rules::DEFAULT_MEMORY_GIB_PER_VCPU
}

/// Where the function's code comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCode {
    /// Container image with a Lambda runtime interface client.
    #[schemars(length(min = 1, max = 1024))]
    pub image_uri: String,
}

/// Overrides of the container image's settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub entry_point: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub working_directory: Option<String>,
}

/// Environment variables of the function: literal values, and values read from Secrets and
/// ConfigMaps of the function's namespace when an EE starts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.valueFrom) || !has(self.variables) || self.valueFrom.all(k, !(k in self.variables))")
    .message("an environment variable is set in variables or in valueFrom, not both"))]
pub struct Environment {
    /// Variable names and values. Bounded so the apiserver can cost the CEL rules below.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 128))]
    #[x_kube(
        validation = Rule::new("self.all(k, k.matches('^[a-zA-Z][a-zA-Z0-9_]*$'))")
            .message("environment variable names start with a letter and have only letters, digits and '_'"),
        validation = Rule::new("self.all(k, !k.startsWith('AWS_LAMBDA_') && !(k in ['_HANDLER', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_EXECUTION_ENV', 'LAMBDA_TASK_ROOT', 'LAMBDA_RUNTIME_DIR']))")
            .message("environment variable names AWS_LAMBDA_*, _HANDLER, AWS_REGION, AWS_DEFAULT_REGION, AWS_EXECUTION_ENV, LAMBDA_TASK_ROOT and LAMBDA_RUNTIME_DIR are reserved"),
    )]
    pub variables: BTreeMap<String, String>,
    /// Variables whose values come from a Secret or a ConfigMap key (Kubernetes' `valueFrom`
    /// shapes), by variable name. Versions and statuses hold these references only, never the
    /// values; each EE reads the values when it starts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(
        validation = Rule::new("self.all(k, k.matches('^[a-zA-Z][a-zA-Z0-9_]*$'))")
            .message("environment variable names start with a letter and have only letters, digits and '_'"),
        validation = Rule::new("self.all(k, !k.startsWith('AWS_LAMBDA_') && !(k in ['_HANDLER', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_EXECUTION_ENV', 'LAMBDA_TASK_ROOT', 'LAMBDA_RUNTIME_DIR']))")
            .message("environment variable names AWS_LAMBDA_*, _HANDLER, AWS_REGION, AWS_DEFAULT_REGION, AWS_EXECUTION_ENV, LAMBDA_TASK_ROOT and LAMBDA_RUNTIME_DIR are reserved"),
    )]
    pub value_from: BTreeMap<String, EnvValueSource>,
}

/// Where one variable's value comes from: exactly one of a Secret key or a ConfigMap key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretKeyRef) != has(self.configMapKeyRef)")
    .message("each valueFrom entry takes exactly one of secretKeyRef and configMapKeyRef"))]
pub struct EnvValueSource {
    /// A key of a Secret in the function's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    /// A key of a ConfigMap in the function's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// A key of a Secret or ConfigMap, as Kubernetes' `secretKeyRef` and `configMapKeyRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// The Secret's or ConfigMap's name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// The key within it.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
    /// When true, a missing object or key leaves the variable unset instead of keeping the EE
    /// from starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// Lifecycle state of a function or version, as Lambda names it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum State {
    #[default]
    Pending,
    Active,
    Inactive,
    Failed,
    Deactivating,
    Deactivated,
    Deleting,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::Active => "Active",
            State::Inactive => "Inactive",
            State::Failed => "Failed",
            State::Deactivating => "Deactivating",
            State::Deactivated => "Deactivated",
            State::Deleting => "Deleting",
        }
    }
}

/// Observed state of a function.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The newest published version. It takes unqualified invocations once it is Active (see
    /// `currentVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_published_version: Option<String>,
    /// The version unqualified invocations and `$LATEST.PUBLISHED` run now: the newest Active
    /// version, else the newest (`lmi_crds::rules::current_version`, the router's rule too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Event invocations stored and not yet done (waiting, running or waiting for a retry), as
    /// the operator last counted them in NATS JetStream; unset without an event queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_events: Option<i64>,
    /// The function URL's address, when the function has a `url` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// SHA-256 of the configuration, to publish a version only when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

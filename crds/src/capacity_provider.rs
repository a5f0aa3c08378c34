//! `CapacityProvider`: where functions may run, and the vCPU ceiling for cost.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Architecture;
use crate::namespace_selector::NamespaceSelector;

/// Desired state of a capacity provider. Only `scalingConfig`, `namespaceSelector`,
/// `instanceLifecycle` (and a Static provider's `nodeSelector`) may change after creation: the
/// first two as in Lambda, the lifecycle because replacing instances is how they are patched.
#[derive(CustomResource, kube::KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lmi.dev",
    version = "v1alpha1",
    kind = "CapacityProvider",
    shortname = "cp",
    category = "lmi",
    status = "CapacityProviderStatus",
    doc = "Where Lambda functions run: instance requirements, network, and a vCPU ceiling",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.provisioning.mode"),
    printcolumn(name = "Instances", type_ = "integer", json_path = ".status.instanceCount"),
    printcolumn(name = "vCPU", type_ = "integer", json_path = ".status.vCpuAllocated"),
    printcolumn(name = "Max-vCPU", type_ = "integer", json_path = ".spec.scalingConfig.maxVCpuCount"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 64").message("a capacity provider name has at most 64 characters"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("a capacity provider name has lower-case letters, digits and '-', and starts and ends with a letter or digit"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.provisioning.mode != 'Karpenter' || has(self.vpcConfig)")
        .message("vpcConfig is required in Karpenter mode"),
    validation = Rule::new("self.provisioning.mode != 'Karpenter' || has(self.instanceRole)")
        .message("instanceRole is required in Karpenter mode"),
    validation = Rule::new("has(self.vpcConfig) == has(oldSelf.vpcConfig) && (!has(self.vpcConfig) || self.vpcConfig == oldSelf.vpcConfig)")
        .message("vpcConfig is immutable: create a new capacity provider"),
    validation = Rule::new("has(self.instanceRole) == has(oldSelf.instanceRole) && (!has(self.instanceRole) || self.instanceRole == oldSelf.instanceRole)")
        .message("instanceRole is immutable: create a new capacity provider"),
    validation = Rule::new("has(self.kmsKeyArn) == has(oldSelf.kmsKeyArn) && (!has(self.kmsKeyArn) || self.kmsKeyArn == oldSelf.kmsKeyArn)")
        .message("kmsKeyArn is immutable: create a new capacity provider"),
)]
pub struct CapacityProviderSpec {
    /// Subnets and security groups of the instances (Karpenter mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
    /// The IAM role (ARN or instance profile role name) the instances run with (Karpenter mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub instance_role: Option<String>,
    /// Which instances may be launched. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceRequirements is immutable: create a new capacity provider"))]
    pub instance_requirements: InstanceRequirements,
    /// KMS key for the instances' EBS volumes (Karpenter mode). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub kms_key_arn: Option<String>,
    /// vCPU ceiling and scaling mode. The only part that may change after creation.
    #[serde(default)]
    pub scaling_config: CapacityScalingConfig,
    /// How nodes are obtained: launched through Karpenter, or existing nodes picked by label.
    #[serde(default)]
    pub provisioning: Provisioning,
    /// The namespaces whose functions may run here (Lambda's `lambda:PassCapacityProvider`), by
    /// namespace labels. Unset: every namespace. Enforced at admission by the
    /// `lmi-pass-capacity-provider` policy and again by the operator. May change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// When instances are replaced by new ones (Karpenter mode): after a maximum lifetime, when
    /// their machine image is out of date, or on request. May change.
    #[serde(default)]
    pub instance_lifecycle: InstanceLifecycle,
}

/// LMI patches instances by replacing them: none lives longer than 14 days.
pub const DEFAULT_MAX_INSTANCE_LIFETIME: &str = "336h";

/// When a provider's instances are replaced (Karpenter mode; Static nodes are the platform's).
/// An instance due for replacement has its EEs moved to other instances (launched when needed)
/// before it is removed, one instance per zone at a time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceLifecycle {
    /// The longest an instance may run, as hours, minutes and seconds (`336h`, `90m`, `1h30m`):
    /// from 1 minute to 2160 hours (90 days). Default `336h` (14 days, as in LMI).
    #[serde(default = "default_max_instance_lifetime")]
    #[schemars(
        length(min = 2, max = 32),
        regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('60s') && duration(self) <= duration('2160h')")
        .message("instanceLifecycle.maxInstanceLifetime is from 1m to 2160h (90 days)"))]
    pub max_instance_lifetime: String,
    /// Instances launched before this time are replaced (to pick up a new image or setting now,
    /// like `kubectl rollout restart`). A time in the future takes effect when it comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_instances_launched_before:
        Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

impl Default for InstanceLifecycle {
    fn default() -> Self {
        Self {
            max_instance_lifetime: default_max_instance_lifetime(),
            replace_instances_launched_before: None,
        }
    }
}

fn default_max_instance_lifetime() -> String {
    DEFAULT_MAX_INSTANCE_LIFETIME.to_string()
}

impl InstanceLifecycle {
    /// The maximum lifetime in seconds (`None` if the string is not one the schema accepts).
    pub fn max_lifetime_seconds(&self) -> Option<i64> {
        crate::rules::duration_seconds(&self.max_instance_lifetime)
    }

    /// Unix seconds before which instances were launched are replaced, if asked.
    pub fn replace_launched_before(&self) -> Option<i64> {
        self.replace_instances_launched_before
            .as_ref()
            .map(|t| t.0.as_second())
    }
}

impl CapacityProvider {
    /// Whether functions of a namespace with `labels` may run on this provider.
    pub fn allows_namespace(&self, labels: &BTreeMap<String, String>) -> bool {
        crate::namespace_selector::allows(self.spec.namespace_selector.as_ref(), labels)
    }
}

/// Network placement of the instances.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcConfig {
    /// 1 to 16 subnet ids; their zones are the zones EEs spread over.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 1024)))]
    pub subnet_ids: Vec<String>,
    /// 0 to 5 security group ids.
    #[serde(default)]
    #[schemars(length(max = 5), inner(length(min = 1, max = 1024)))]
    pub security_group_ids: Vec<String>,
}

/// Instance types a capacity provider may use.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.allowedInstanceTypes) == 0 || size(self.excludedInstanceTypes) == 0")
    .message("set allowedInstanceTypes or excludedInstanceTypes, not both"))]
pub struct InstanceRequirements {
    /// Exactly one architecture. Default `x86_64`.
    #[serde(default = "default_architectures")]
    #[x_kube(validation = Rule::new("size(self) == 1").message("instanceRequirements.architectures takes exactly one architecture"))]
    pub architectures: Vec<Architecture>,
    /// Instance types allowed (0-400, `*` wildcards, e.g. `c7g.*`). Empty: all that fit.
    #[serde(default)]
    #[schemars(length(max = 400), inner(length(min = 1, max = 64)))]
    pub allowed_instance_types: Vec<String>,
    /// Instance types never used (0-400, `*` wildcards). Not together with allowedInstanceTypes.
    #[serde(default)]
    #[schemars(length(max = 400), inner(length(min = 1, max = 64)))]
    pub excluded_instance_types: Vec<String>,
}

impl Default for InstanceRequirements {
    fn default() -> Self {
        Self {
            architectures: default_architectures(),
            allowed_instance_types: Vec::new(),
            excluded_instance_types: Vec::new(),
        }
    }
}

fn default_architectures() -> Vec<Architecture> {
    vec![Architecture::X86_64]
}

impl InstanceRequirements {
    /// The single architecture (validation guarantees exactly one; x86_64 if somehow empty).
    pub fn architecture(&self) -> Architecture {
        self.architectures.first().copied().unwrap_or_default()
    }
}

/// How the capacity provider scales its instances.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ScalingMode {
    /// The autoscaler picks the CPU target.
    #[default]
    Auto,
    /// The user gives `targetCpuUtilization`.
    Manual,
}

/// Capacity scaling: the vCPU ceiling and the CPU target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scalingMode == 'Manual' || !has(self.targetCpuUtilization)")
        .message("targetCpuUtilization is only allowed with scalingMode Manual"),
    validation = Rule::new("self.scalingMode != 'Manual' || has(self.targetCpuUtilization)")
        .message("scalingMode Manual requires targetCpuUtilization"),
)]
pub struct CapacityScalingConfig {
    /// Most vCPUs this provider's instances may add up to (2-15000, default 400).
    #[serde(default = "default_max_vcpu")]
    #[schemars(range(min = 2, max = 15000))]
    pub max_v_cpu_count: i32,
    /// Auto (default) or Manual.
    #[serde(default)]
    pub scaling_mode: ScalingMode,
    /// Target average CPU utilization in percent (0-100), Manual mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub target_cpu_utilization: Option<i32>,
}

impl Default for CapacityScalingConfig {
    fn default() -> Self {
        Self {
            max_v_cpu_count: default_max_vcpu(),
            scaling_mode: ScalingMode::Auto,
            target_cpu_utilization: None,
        }
    }
}

fn default_max_vcpu() -> i32 {
    crate::rules::DEFAULT_MAX_VCPU_COUNT
}

/// Where nodes come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ProvisioningMode {
    /// Launch EC2 instances through Karpenter NodeClaims.
    #[default]
    Karpenter,
    /// Use existing nodes chosen by `nodeSelector`.
    Static,
}

/// Provisioning mode and, for Static, the node selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode != 'Static' || (has(self.nodeSelector) && size(self.nodeSelector) > 0)")
        .message("Static mode requires a non-empty nodeSelector"),
    validation = Rule::new("self.mode != 'Karpenter' || !has(self.nodeSelector)")
        .message("nodeSelector is only used in Static mode"),
    validation = Rule::new("self.mode == oldSelf.mode").message("provisioning.mode is immutable: create a new capacity provider"),
)]
pub struct Provisioning {
    /// Karpenter (default) or Static.
    #[serde(default)]
    pub mode: ProvisioningMode,
    /// Labels that pick the existing nodes of a Static provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
}

/// Lifecycle state of a capacity provider, as Lambda names it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CapacityProviderState {
    #[default]
    Pending,
    Active,
    Failed,
    Deleting,
}

/// Observed state of a capacity provider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProviderStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CapacityProviderState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// vCPUs of the instances this provider holds now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v_cpu_allocated: Option<i32>,
    /// The ceiling in force (`spec.scalingConfig.maxVCpuCount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v_cpu_limit: Option<i32>,
    /// Mean CPU of the Ready EEs of its versions at the last sample, percent of their limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_utilization: Option<i32>,
    /// Instances (nodes) this provider holds now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<i32>,
    /// Instances due for replacement (too old, out of date, or asked for), those being replaced
    /// now included: one per zone at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_due_for_replacement: Option<i32>,
    /// Function versions placed on this provider, as `namespace/function:version`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached_function_versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

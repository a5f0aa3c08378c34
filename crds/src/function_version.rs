//! `FunctionVersion`: an immutable snapshot of a function's configuration. Only its scaling config
//! may change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ScalingConfig;
use crate::function::{FunctionConfiguration, State};

/// A published version of a function.
#[derive(CustomResource, kube::KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lmi.dev",
    version = "v1alpha1",
    kind = "FunctionVersion",
    namespaced,
    shortname = "fv",
    category = "lmi",
    status = "FunctionVersionStatus",
    doc = "An immutable, published version of a Function; publishing it deploys warm execution environments",
    printcolumn(name = "Function", type_ = "string", json_path = ".spec.functionName"),
    printcolumn(name = "Version", type_ = "integer", json_path = ".spec.version"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.stateReasonCode"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyExecutionEnvironments"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredExecutionEnvironments"
    ),
    printcolumn(name = "CPU%", type_ = "integer", json_path = ".status.cpuUtilization"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FunctionVersionSpec {
    /// The Function (same namespace) this is a version of.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("functionName is immutable"))]
    pub function_name: String,
    /// The version number, 1, 2, 3...
    #[schemars(range(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("version is immutable"))]
    pub version: i32,
    /// The frozen configuration.
    #[x_kube(validation = Rule::new("self == oldSelf").message("a version's configuration is immutable: publish a new version instead"))]
    pub configuration: FunctionConfiguration,
    /// Scaling of this version alone (the only mutable part). Unset: min 3, no max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_config: Option<ScalingConfig>,
}

/// Observed state of a version.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionVersionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// Lambda's reason code, e.g. `VcpuLimitExceeded`, `FunctionError.InitTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason_code: Option<String>,
    /// A sentence for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_execution_environments: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_execution_environments: Option<i32>,
    /// Mean CPU of the Ready EEs at the autoscaler's last sample, percent of their limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_utilization: Option<i32>,
    /// The CPU target the autoscaler holds this version near (+/- 10 points), percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu_utilization: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl FunctionVersion {
    /// The capacity provider the version runs on.
    pub fn capacity_provider_name(&self) -> &str {
        &self
            .spec
            .configuration
            .capacity_provider_config
            .capacity_provider_name
    }

    /// The Kubernetes name of version `version` of function `function`: `<function>-v<version>`.
    pub fn object_name(function: &str, version: i32) -> String {
        format!("{function}-v{version}")
    }
}

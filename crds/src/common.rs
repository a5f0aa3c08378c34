//! Types shared by the three kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every kind here.
pub const GROUP: &str = "lmi.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Label and taint key that marks a capacity provider's nodes (the isolation boundary).
pub const CAPACITY_PROVIDER_LABEL: &str = "lmi.dev/capacity-provider";
/// Label on EE pods: the Function's name.
pub const FUNCTION_LABEL: &str = "lmi.dev/function";
/// Label on EE pods: the version number.
pub const VERSION_LABEL: &str = "lmi.dev/version";
/// Label that gives an object to one operator instance (`lmi-operator --instance NAME`): an
/// operator reconciles only the objects labelled with its instance name, or, without a name, only
/// those without the label. Several operators can then share a cluster without acting on each
/// other's objects (the tests' operator beside the main job's, or a staging operator).
/// Label that tells the operator's objects (EE pods, function Secrets) from other objects.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "lmi-operator";
pub const INSTANCE_LABEL: &str = "lmi.dev/instance";

/// The label selector of one operator instance's objects.
pub fn instance_selector(instance: Option<&str>) -> String {
    match instance {
        Some(name) => format!("{INSTANCE_LABEL}={name}"),
        None => format!("!{INSTANCE_LABEL}"),
    }
}

/// The instance label of an object, to copy onto what the operator creates for it (versions,
/// EE pods, NodeClaims), so that they stay with the operator instance that made them.
pub fn instance_label(
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> Option<(String, String)> {
    labels
        .and_then(|l| l.get(INSTANCE_LABEL))
        .map(|v| (INSTANCE_LABEL.to_string(), v.clone()))
}

/// CPU architecture of a function and of the instances that run it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Architecture {
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Architecture {
    /// The name AWS uses (`x86_64`, `arm64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// The value of the node label `kubernetes.io/arch` (Go's naming).
    pub fn kubernetes_arch(self) -> &'static str {
        match self {
            Architecture::X86_64 => "amd64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// Parses the AWS name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "x86_64" => Some(Architecture::X86_64),
            "arm64" => Some(Architecture::Arm64),
            _ => None,
        }
    }
}

/// Scaling limits of one function version, in execution environments (EEs).
///
/// Set on a Function it is the `$LATEST.PUBLISHED` configuration and carries over to every version
/// published later; set on a FunctionVersion it applies to that version alone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.maxExecutionEnvironments) || has(self.minExecutionEnvironments)")
        .message("set minExecutionEnvironments together with maxExecutionEnvironments"),
    validation = Rule::new("!has(self.minExecutionEnvironments) || !has(self.maxExecutionEnvironments) || self.minExecutionEnvironments <= self.maxExecutionEnvironments")
        .message("minExecutionEnvironments must not exceed maxExecutionEnvironments"),
    validation = Rule::new("!has(self.minExecutionEnvironments) || self.minExecutionEnvironments >= 1 || (has(self.maxExecutionEnvironments) && self.maxExecutionEnvironments == 0)")
        .message("minExecutionEnvironments 0 is only allowed with maxExecutionEnvironments 0 (0/0 deactivates the version)"),
)]
pub struct ScalingConfig {
    /// Warm EEs kept at all times, spread over zones. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 15000))]
    pub min_execution_environments: Option<i32>,
    /// Upper bound on EEs. No default (unbounded, within the capacity provider's vCPU ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 15000))]
    pub max_execution_environments: Option<i32>,
}

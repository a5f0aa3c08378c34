//! The contract between the operator, which builds execution-environment (EE) pods, and the
//! sidecar that runs in each: the port it serves on, the environment it reads, and the
//! `/utilization` sample the autoscaler reads. One definition for both sides, so that a name
//! changed on one side cannot silently stop meaning anything on the other.

use serde::{Deserialize, Serialize};

/// Where the sidecar serves the router, its probes and metrics (the pod port).
pub const SIDECAR_PORT: u16 = 9000;
/// The Runtime API address the function's runtime calls (`AWS_LAMBDA_RUNTIME_API`), served by
/// the sidecar on the pod's loopback.
pub const RUNTIME_API_ADDR: &str = "127.0.0.1:9001";
/// The sidecar's utilization endpoint (JSON: [`UtilizationSample`]).
pub const UTILIZATION_PATH: &str = "/utilization";

/// Environment variables the operator sets on the sidecar (and, for the `AWS_LAMBDA_*` ones,
/// on the function as Lambda does).
pub mod env {
    /// Invocations one EE serves at once (Lambda's name; the runtime reads it too).
    pub const MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";
    pub const FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
    pub const FUNCTION_VERSION: &str = "AWS_LAMBDA_FUNCTION_VERSION";
    /// The EE's memory in MiB.
    pub const FUNCTION_MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
    /// The runtime's Runtime API address (the function container's only).
    pub const RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";
    /// The function's timeout, seconds (1-900).
    pub const FUNCTION_TIMEOUT_SECONDS: &str = "LMI_FUNCTION_TIMEOUT_SECONDS";
    /// How long the runtime may take to ask for its first invocation, seconds.
    pub const INIT_TIMEOUT_SECONDS: &str = "LMI_INIT_TIMEOUT_SECONDS";
    /// The function container's CPU limit, millicores (for the CPU share the sidecar reports).
    pub const CPU_LIMIT_MILLICORES: &str = "LMI_CPU_LIMIT_MILLICORES";
    /// The function container's memory limit, bytes.
    pub const MEMORY_LIMIT_BYTES: &str = "LMI_MEMORY_LIMIT_BYTES";
    /// Where the sidecar listens for the router, the probes and metrics.
    pub const LISTEN_ADDR: &str = "LMI_LISTEN_ADDR";
    /// Where the sidecar serves the Runtime API.
    pub const RUNTIME_API_ADDR: &str = "LMI_RUNTIME_API_ADDR";
    /// The EE's namespace (from the downward API).
    pub const NAMESPACE: &str = "LMI_NAMESPACE";
}

/// One EE's numbers at `GET /utilization`, as the sidecar reports them and the autoscaler reads
/// them. Every field defaults, so a sidecar of another release that lacks one still parses.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UtilizationSample {
    /// The runtime has asked for work and the EE is not draining.
    pub ready: bool,
    pub draining: bool,
    /// Open `/next` long-polls now: how many invocations the runtime really takes at once.
    pub runtime_polling: u64,
    pub in_flight: u64,
    pub max_concurrency: u64,
    /// CPU used by the function, as a fraction of its limit (1.0 = all of it).
    pub cpu_utilization: f64,
    pub cpu_cores: f64,
    pub cpu_limit_cores: f64,
    /// Memory used by the function, as a fraction of its limit.
    pub memory_utilization: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    /// Invocations served since the sidecar started.
    pub invocations: u64,
    /// Invocations refused (throttled) since the sidecar started.
    pub refusals: u64,
}

/// Of an EE pod's conditions, what the operator and the router read: Ready (the sidecar's
/// readiness: runtime initialized, not draining), its type and status only. Both keep every EE
/// pod of the cluster in memory, so the rest is dropped as the pods arrive.
pub fn ready_condition_only(
    conditions: Option<Vec<k8s_openapi::api::core::v1::PodCondition>>,
) -> Option<Vec<k8s_openapi::api::core::v1::PodCondition>> {
    conditions.map(|cs| {
        cs.into_iter()
            .filter(|c| c.type_ == "Ready")
            .map(|c| k8s_openapi::api::core::v1::PodCondition {
                type_: c.type_,
                status: c.status,
                ..Default::default()
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_round_trips_in_camel_case_and_missing_fields_default() {
        let sample = UtilizationSample {
            ready: true,
            in_flight: 3,
            max_concurrency: 8,
            cpu_utilization: 0.5,
            refusals: 2,
            ..Default::default()
        };
        let json = serde_json::to_value(sample).expect("serialize");
        assert_eq!(json["inFlight"], 3);
        assert_eq!(json["cpuUtilization"], 0.5);
        let back: UtilizationSample = serde_json::from_value(json).expect("parse");
        assert_eq!(back, sample);
        let old: UtilizationSample =
            serde_json::from_str(r#"{"ready": true, "inFlight": 1}"#).expect("parse");
        assert_eq!((old.ready, old.in_flight, old.refusals), (true, 1, 0));
    }
}

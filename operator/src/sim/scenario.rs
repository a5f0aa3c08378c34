//! What is simulated: the capacity provider, its functions, the load and the timing parameters.
//! Built from defaults or from the same Function and CapacityProvider manifests users apply.

use std::sync::Arc;

use lmi_crds::capacity_provider::{
    CapacityScalingConfig, InstanceRequirements, ProvisioningMode, ScalingMode,
};
use lmi_crds::rules::{EeShape, ScalingBounds};
use lmi_crds::{Architecture, CapacityProvider, Function};

use super::profile::Profile;
use crate::error::{Error, Result};
use crate::plan::publication::published_version;
use crate::version_view::{Functions, Skip, version_view};

/// One simulated function (its one version).
#[derive(Debug, Clone, PartialEq)]
pub struct SimFunction {
    pub name: String,
    pub shape: EeShape,
    pub bounds: ScalingBounds,
    /// CPU time one invocation uses (vCPU-seconds).
    pub cpu_seconds: f64,
    /// Wall-clock time of one invocation (seconds): how long it holds a concurrency slot.
    pub duration_seconds: f64,
}

/// The simulated capacity provider (Karpenter mode).
#[derive(Debug, Clone, PartialEq)]
pub struct SimProvider {
    pub name: String,
    pub zones: Vec<String>,
    pub max_vcpu: u32,
    pub requirements: InstanceRequirements,
    pub scaling: CapacityScalingConfig,
    /// Instances older than this are replaced (`instanceLifecycle.maxInstanceLifetime`).
    pub max_lifetime_seconds: Option<i64>,
}

/// Timing and behaviour parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub sample_interval_seconds: u32,
    pub instance_launch_seconds: u32,
    pub ee_startup_seconds: u32,
    /// The sidecar refuses new work above this CPU utilization (percent).
    pub cpu_refusal_percent: f64,
    /// How long an empty instance is kept (the operator's `--empty-claim-cooldown-seconds`).
    pub empty_claim_cooldown_seconds: i64,
    pub seed: u64,
    /// The decision's tunables (its `lead_seconds` is set from the reaction time, see
    /// `lead_seconds` below).
    pub policy: crate::autoscale::Policy,
    /// How far ahead the scale-up looks; None: the reaction time (interval + launch + start-up).
    pub lead_seconds: Option<f64>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            sample_interval_seconds: 10,
            instance_launch_seconds: 60,
            ee_startup_seconds: 10,
            cpu_refusal_percent: crate::autoscale::DEFAULT_CPU_REFUSAL_PERCENT,
            empty_claim_cooldown_seconds: 300,
            seed: 1,
            policy: crate::autoscale::Policy::default(),
            lead_seconds: None,
        }
    }
}

/// Everything one run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub provider: SimProvider,
    pub functions: Vec<SimFunction>,
    pub profile: Profile,
    pub params: Params,
}

/// Management fee on top of the on-demand price (LMI pricing).
pub const MANAGEMENT_FEE: f64 = 0.15;

/// The default function: Python, 2 GiB and 1 vCPU per EE, 16 concurrent invocations, min 3.
pub fn default_function() -> SimFunction {
    SimFunction {
        name: "hello".to_string(),
        shape: EeShape {
            vcpus: 1,
            memory_mib: 2048,
            category: lmi_crds::rules::Category::Compute,
            max_concurrency: 16,
        },
        bounds: ScalingBounds { min: 3, max: None },
        cpu_seconds: 0.05,
        duration_seconds: 0.1,
    }
}

/// The default capacity provider: Graviton compute instances in three zones, 400 vCPUs, Auto.
pub fn default_provider() -> SimProvider {
    SimProvider {
        name: "sim".to_string(),
        zones: ["us-east-1a", "us-east-1b", "us-east-1c"]
            .iter()
            .map(|z| z.to_string())
            .collect(),
        max_vcpu: 400,
        requirements: InstanceRequirements {
            architectures: vec![Architecture::Arm64],
            allowed_instance_types: vec!["c7g.*".to_string(), "c8g.*".to_string()],
            excluded_instance_types: vec![],
        },
        scaling: CapacityScalingConfig {
            max_v_cpu_count: 400,
            scaling_mode: ScalingMode::Auto,
            target_cpu_utilization: None,
        },
        max_lifetime_seconds: lmi_crds::capacity_provider::InstanceLifecycle::default()
            .max_lifetime_seconds(),
    }
}

/// A function from a Function manifest (YAML), with the per-invocation costs the manifest does
/// not say. It runs as the function's latest published version, with the view the operator
/// builds for that version: the EE shape of its configuration, and the Function's scaling,
/// which the latest published version follows.
pub fn function_from_yaml(
    text: &str,
    cpu_seconds: f64,
    duration_seconds: f64,
) -> Result<SimFunction> {
    let mut function: Function =
        serde_yaml::from_str(text).map_err(|e| Error::Config(format!("function manifest: {e}")))?;
    let name = function
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "function".to_string());
    const PUBLISHED: i32 = 1;
    let version = published_version(&function, PUBLISHED, "");
    function
        .status
        .get_or_insert_with(Default::default)
        .latest_published_version = Some(PUBLISHED.to_string());
    let functions = [Arc::new(function)];
    let view = version_view(&version, &Functions::new(&functions)).map_err(|skip| match skip {
        Skip::Invalid(e) => Error::Config(format!("function manifest: {e}")),
        Skip::Gone => Error::Config("function manifest: the function is being deleted".to_string()),
    })?;
    Ok(SimFunction {
        name,
        shape: view.shape,
        bounds: view.bounds,
        cpu_seconds,
        duration_seconds,
    })
}

/// A capacity provider from its manifest (YAML). Its subnets stand for its zones (one each).
pub fn provider_from_yaml(text: &str) -> Result<SimProvider> {
    let cp: CapacityProvider = serde_yaml::from_str(text)
        .map_err(|e| Error::Config(format!("capacity provider manifest: {e}")))?;
    if cp.spec.provisioning.mode == ProvisioningMode::Static {
        return Err(Error::Config(
            "the simulator launches instances: use a Karpenter-mode capacity provider".to_string(),
        ));
    }
    let subnets = cp
        .spec
        .vpc_config
        .as_ref()
        .map_or(1, |v| v.subnet_ids.len().max(1));
    let zones = (0..subnets)
        .map(|i| {
            format!(
                "zone-{}",
                char::from(b'a' + u8::try_from(i % 26).unwrap_or(0))
            )
        })
        .collect();
    Ok(SimProvider {
        name: cp
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| "sim".to_string()),
        zones,
        max_vcpu: u32::try_from(cp.spec.scaling_config.max_v_cpu_count).unwrap_or(0),
        requirements: cp.spec.instance_requirements.clone(),
        max_lifetime_seconds: cp.spec.instance_lifecycle.max_lifetime_seconds(),
        scaling: cp.spec.scaling_config.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_manifests_load() {
        let f = function_from_yaml(include_str!("../../../examples/function.yaml"), 0.05, 0.1)
            .expect("example function");
        assert_eq!(
            (f.name.as_str(), f.shape.vcpus, f.shape.max_concurrency),
            ("hello", 1, 16)
        );
        assert_eq!(
            f.bounds,
            ScalingBounds {
                min: 3,
                max: Some(30)
            }
        );
        let p = provider_from_yaml(include_str!(
            "../../../examples/capacity-provider-karpenter.yaml"
        ))
        .expect("example provider");
        assert_eq!((p.zones.len(), p.max_vcpu), (3, 64));
        assert!(
            provider_from_yaml(include_str!(
                "../../../examples/capacity-provider-static.yaml"
            ))
            .is_err()
        );
    }
}

//! A version's Lambda state from what the capacity plan found.

use lmi_crds::State;
use lmi_crds::rules::ScalingBounds;

use super::capacity_plan::{VersionPlan, Waiting};

/// Lambda's state, reason code and reason of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionState {
    pub state: State,
    pub reason_code: Option<&'static str>,
    pub reason: Option<String>,
}

impl VersionState {
    fn new(state: State, reason_code: Option<&'static str>, reason: Option<String>) -> Self {
        Self {
            state,
            reason_code,
            reason,
        }
    }
}

/// Pending until `min` EEs are Ready, then Active (and it stays Active while lost EEs are
/// replaced); 0/0 deactivates; an EE whose runtime failed to start fails a version that is not
/// Active yet.
pub fn version_state(
    previous: Option<State>,
    bounds: &ScalingBounds,
    plan: &VersionPlan,
) -> VersionState {
    if bounds.is_deactivated() {
        return if plan.live > 0 {
            VersionState::new(
                State::Deactivating,
                None,
                Some(format!("stopping {} execution environments", plan.live)),
            )
        } else {
            VersionState::new(
                State::Deactivated,
                None,
                Some("scaling config is 0/0".to_string()),
            )
        };
    }
    let needed = bounds.min.max(1);
    if plan.ready >= needed {
        // Serving. EEs beyond the minimum (the autoscaler's wish) that cannot be placed are
        // still reported, so "why does it not scale out?" has an answer on the version.
        return match (&plan.waiting, plan.unplaced) {
            (Some(_), unplaced) if unplaced > 0 => {
                let (code, reason) = waiting_reason(plan, needed);
                VersionState::new(State::Active, code, Some(reason))
            }
            _ => VersionState::new(State::Active, None, None),
        };
    }
    if previous == Some(State::Active) {
        return VersionState::new(
            State::Active,
            None,
            Some(format!(
                "{} of {} execution environments ready; replacing the rest",
                plan.ready, needed
            )),
        );
    }
    if let Some(failure) = &plan.init_failure {
        return VersionState::new(
            State::Failed,
            Some(failure.reason_code),
            Some(failure.message.clone()),
        );
    }
    let (code, reason) = waiting_reason(plan, needed);
    VersionState::new(State::Pending, code, Some(reason))
}

/// The reason code and message of whatever keeps EEs from being placed.
fn waiting_reason(plan: &VersionPlan, needed: u32) -> (Option<&'static str>, String) {
    match &plan.waiting {
        Some(Waiting::VcpuLimitExceeded { limit }) => (
            Some("VcpuLimitExceeded"),
            format!(
                "{} execution environments wait: more instances would pass the capacity provider's maxVCpuCount of {limit}",
                plan.unplaced
            ),
        ),
        Some(Waiting::InsufficientCapacity(why)) => (Some("InsufficientCapacity"), why.clone()),
        Some(Waiting::ZonesUnknown) => (
            None,
            "waiting for Karpenter to resolve the capacity provider's subnets and zones"
                .to_string(),
        ),
        Some(Waiting::LaunchFailed(why)) => (Some("InstanceLaunchFailed"), why.clone()),
        Some(Waiting::Launching) => (
            None,
            format!(
                "launching instances for {} execution environments",
                plan.unplaced
            ),
        ),
        None => (
            None,
            format!("{} of {} execution environments ready", plan.ready, needed),
        ),
    }
}

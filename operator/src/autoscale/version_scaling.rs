//! What the autoscaler knows of each version, shared by the autoscaler loop (which writes it),
//! the planner (which reads the wish) and the status writer. It lives with the decision rather
//! than with the loop, so that the shared context and the observer can hold it without depending
//! on the controller that fills it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::decision::{Observation, ScalerState};

/// What the autoscaler knows of one version.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VersionScaling {
    pub wish: Option<u32>,
    pub state: ScalerState,
    pub observation: Option<Observation>,
    pub target_percent: f64,
}

/// Shared by the autoscaler loop and the planner, by version key.
pub type ScalingTable = Arc<Mutex<BTreeMap<String, VersionScaling>>>;

/// What the autoscaler starts from for a version it has no memory of (a new version, or any
/// version after an operator restart or a change of leader): the desired count its status shows,
/// which the previous leader's wish set. Without this a restart would forget a scale-up whose EEs
/// are still starting and plan for the EEs that run now. The stabilization window starts again
/// (the safe side: no scale-down on a half-remembered window), and so does the trend.
pub fn resumed(status_desired: Option<i32>) -> VersionScaling {
    match status_desired
        .and_then(|d| u32::try_from(d).ok())
        .filter(|d| *d > 0)
    {
        Some(desired) => VersionScaling {
            wish: Some(desired),
            state: ScalerState {
                desired: Some(desired),
                ..ScalerState::default()
            },
            ..VersionScaling::default()
        },
        None => VersionScaling::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_resumes_from_the_desired_count_in_the_status() {
        let resumed = resumed(Some(4));
        assert_eq!(resumed.wish, Some(4));
        assert_eq!(resumed.state.desired, Some(4));
        assert_eq!(resumed.state.below_since, None, "the window starts again");
        assert!(resumed.state.trend.is_none());
    }

    #[test]
    fn nothing_to_resume_without_a_status() {
        assert_eq!(resumed(None), VersionScaling::default());
        assert_eq!(resumed(Some(0)), VersionScaling::default());
        assert_eq!(resumed(Some(-1)), VersionScaling::default());
    }
}

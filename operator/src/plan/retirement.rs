//! Which of a function's versions to retire: a rolling update of `$LATEST.PUBLISHED` retires the
//! version it replaced, and `versionRetention` bounds the numbered versions kept.
//!
//! Retiring is two steps, each taken only when it is safe: a version is first deactivated (its
//! scaling config set to 0/0, so its EEs drain like any scale-in: invocations in flight finish),
//! and deleted only once it is Deactivated (no EE left). Nothing is retired until a newer
//! version has been Active for [`SETTLE`]: the routers move unqualified calls to it as soon
//! as they see it Active, and the pause covers their watch's lag. Versions an alias names are
//! never retired.

use std::collections::BTreeSet;
use std::time::Duration;

use lmi_crds::State;
use lmi_crds::function::{FunctionSpec, PublishTo};

/// How long the newest Active version must have been Active before older ones are retired.
pub const SETTLE: Duration = Duration::from_secs(10);

/// How many versions stay, besides those an alias names. `None`: no bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Versions that stay Active, the newest Active one included (at least 1).
    pub active: Option<u32>,
    /// Deactivated versions kept.
    pub deactivated: Option<u32>,
}

impl Retention {
    /// A function's retention: publishing to `$LATEST.PUBLISHED` keeps only the newest Active
    /// version; numbered versions keep what `versionRetention` says, all when it is unset.
    pub fn of(spec: &FunctionSpec) -> Option<Self> {
        match spec.publish_to {
            PublishTo::LatestPublished => Some(Self {
                active: Some(1),
                deactivated: Some(0),
            }),
            PublishTo::Version => spec.version_retention.map(|r| Self {
                active: r.active_versions.map(|n| n.unsigned_abs().max(1)),
                deactivated: r.deactivated_versions.map(i32::unsigned_abs),
            }),
        }
    }
}

/// What retirement needs to know of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFacts {
    pub number: u32,
    pub state: Option<State>,
    /// Its scaling config is 0/0 (deactivated, or being deactivated).
    pub deactivated: bool,
    /// How long it has been Active (`None`: it is not).
    pub active_for: Option<Duration>,
}

/// One step of retiring a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Retire {
    /// Set its scaling config to 0/0: its EEs drain and go.
    Deactivate(u32),
    /// Delete it: it is Deactivated and beyond the number kept.
    Delete(u32),
}

/// The plan: the steps to take now, and when to look again if a step waits for time to pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetirementPlan {
    pub steps: Vec<Retire>,
    pub recheck_after: Option<Duration>,
}

/// The retirement steps for a function's versions. Only versions older than the newest Active
/// one are considered; newer ones are still deploying.
pub fn plan(
    versions: &[VersionFacts],
    aliased: &BTreeSet<u32>,
    retention: Retention,
) -> RetirementPlan {
    let Some(newest_active) = versions
        .iter()
        .filter(|v| v.state == Some(State::Active) && !v.deactivated)
        .max_by_key(|v| v.number)
    else {
        return RetirementPlan::default();
    };
    let active_for = newest_active.active_for.unwrap_or_default();
    if active_for < SETTLE {
        return RetirementPlan {
            steps: Vec::new(),
            recheck_after: Some(SETTLE - active_for),
        };
    }
    let mut older: Vec<&VersionFacts> = versions
        .iter()
        .filter(|v| v.number < newest_active.number && !aliased.contains(&v.number))
        .collect();
    // Newest first: the ones kept are the newest.
    older.sort_by_key(|v| std::cmp::Reverse(v.number));
    let mut steps = Vec::new();
    if let Some(active) = retention.active {
        // The newest Active version is one of those kept Active.
        let keep = usize::try_from(active.saturating_sub(1)).unwrap_or(usize::MAX);
        steps.extend(
            older
                .iter()
                .filter(|v| !v.deactivated)
                .skip(keep)
                .map(|v| Retire::Deactivate(v.number)),
        );
    }
    if let Some(kept) = retention.deactivated {
        let keep = usize::try_from(kept).unwrap_or(usize::MAX);
        steps.extend(
            older
                .iter()
                .filter(|v| v.deactivated)
                .skip(keep)
                // Drained first: a Deactivating version still has EEs finishing invocations.
                .filter(|v| v.state == Some(State::Deactivated))
                .map(|v| Retire::Delete(v.number)),
        );
    }
    steps.sort();
    RetirementPlan {
        steps,
        recheck_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLED: Option<Duration> = Some(Duration::from_secs(60));

    fn active(number: u32) -> VersionFacts {
        VersionFacts {
            number,
            state: Some(State::Active),
            deactivated: false,
            active_for: SETTLED,
        }
    }

    fn with(number: u32, state: State, deactivated: bool) -> VersionFacts {
        VersionFacts {
            number,
            state: Some(state),
            deactivated,
            active_for: (state == State::Active).then_some(Duration::from_secs(60)),
        }
    }

    const ROLLING: Retention = Retention {
        active: Some(1),
        deactivated: Some(0),
    };

    #[test]
    fn a_rolling_update_deactivates_the_replaced_version_then_deletes_it_once_drained() {
        let none = BTreeSet::new();
        assert_eq!(
            plan(&[active(1), active(2)], &none, ROLLING).steps,
            [Retire::Deactivate(1)]
        );
        // Still draining: nothing to delete yet.
        let draining = [with(1, State::Deactivating, true), active(2)];
        assert_eq!(plan(&draining, &none, ROLLING), RetirementPlan::default());
        let drained = [with(1, State::Deactivated, true), active(2)];
        assert_eq!(plan(&drained, &none, ROLLING).steps, [Retire::Delete(1)]);
    }

    #[test]
    fn nothing_is_retired_until_the_new_version_is_active_and_settled() {
        let none = BTreeSet::new();
        // Version 2 still deploying: version 1 serves.
        let deploying = [active(1), with(2, State::Pending, false)];
        assert_eq!(plan(&deploying, &none, ROLLING), RetirementPlan::default());
        // Version 2 Active for 3 s: look again in 7 s.
        let mut fresh = active(2);
        fresh.active_for = Some(Duration::from_secs(3));
        let planned = plan(&[active(1), fresh], &none, ROLLING);
        assert!(planned.steps.is_empty());
        assert_eq!(planned.recheck_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn versions_an_alias_names_and_newer_ones_are_never_retired() {
        let aliased = BTreeSet::from([1]);
        let versions = [
            active(1),
            active(2),
            active(3),
            with(4, State::Pending, false),
        ];
        assert_eq!(
            plan(&versions, &aliased, ROLLING).steps,
            [Retire::Deactivate(2)]
        );
    }

    #[test]
    fn retention_keeps_the_newest_active_and_deactivated_versions() {
        let keep = Retention {
            active: Some(2),
            deactivated: Some(1),
        };
        let versions = [
            with(1, State::Deactivated, true),
            with(2, State::Deactivated, true),
            with(3, State::Failed, false),
            active(4),
            active(5),
            active(6),
        ];
        // 6 and 5 stay Active; 4 and the failed 3 are deactivated; of the deactivated 2 and 1,
        // 2 is kept and 1 deleted.
        assert_eq!(
            plan(&versions, &BTreeSet::new(), keep).steps,
            [
                Retire::Deactivate(3),
                Retire::Deactivate(4),
                Retire::Delete(1)
            ]
        );
    }

    #[test]
    fn unbounded_retention_retires_nothing_and_no_active_version_means_no_plan() {
        let all = Retention {
            active: None,
            deactivated: None,
        };
        let versions = [with(1, State::Deactivated, true), active(2), active(3)];
        assert!(plan(&versions, &BTreeSet::new(), all).steps.is_empty());
        let failing = [
            with(1, State::Failed, false),
            with(2, State::Pending, false),
        ];
        assert_eq!(
            plan(&failing, &BTreeSet::new(), ROLLING),
            RetirementPlan::default()
        );
    }

    #[test]
    fn the_function_spec_chooses_the_retention() {
        let spec = |value: serde_json::Value| -> FunctionSpec {
            let mut spec = serde_json::json!({
                "capacityProviderConfig": {"capacityProviderName": "cp"},
                "code": {"imageUri": "img"}
            });
            if let (Some(s), Some(extra)) = (spec.as_object_mut(), value.as_object()) {
                s.extend(extra.clone());
            }
            serde_json::from_value(spec).expect("spec")
        };
        assert_eq!(Retention::of(&spec(serde_json::json!({}))), Some(ROLLING));
        assert_eq!(
            Retention::of(&spec(serde_json::json!({"publishTo": "Version"}))),
            None
        );
        assert_eq!(
            Retention::of(&spec(serde_json::json!({
                "publishTo": "Version",
                "versionRetention": {"activeVersions": 2}
            }))),
            Some(Retention {
                active: Some(2),
                deactivated: None
            })
        );
    }
}

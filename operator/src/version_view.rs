//! The view of one FunctionVersion that the operator plans and scales by: its key, EE shape,
//! scaling bounds and previous state (a [`VersionView`]). Built here alone, so that the planner's
//! observer, the autoscaler and the simulator agree on which versions count and on their bounds.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use lmi_crds::rules::{self, RuleError, effective_scaling_config};
use lmi_crds::{Function, FunctionVersion};

use crate::object_key::key_of;
use crate::plan::VersionView;

/// Why a version has no view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The version is being deleted, or so is (or was) the Function that owns it: nothing is
    /// planned or decided for it, and its status is left alone.
    Gone,
    /// Its configuration breaks a rule (the planner reports it in the version's status).
    Invalid(RuleError),
}

/// The Functions versions belong to, indexed once for a pass over many versions.
pub struct Functions<'a> {
    all: &'a [Arc<Function>],
    /// UIDs of the Functions that are not being deleted.
    live: BTreeSet<String>,
}

impl<'a> Functions<'a> {
    pub fn new(all: &'a [Arc<Function>]) -> Self {
        let live = all
            .iter()
            .filter(|f| f.metadata.deletion_timestamp.is_none())
            .filter_map(|f| f.uid())
            .collect();
        Self { all, live }
    }

    /// The Function `version` is a version of (same namespace, its `functionName`).
    pub fn of(&self, version: &FunctionVersion) -> Option<&'a Function> {
        let namespace = version.namespace();
        self.all
            .iter()
            .find(|f| f.namespace() == namespace && f.name_any() == version.spec.function_name)
            .map(Arc::as_ref)
    }

    /// Whether a version with these owners belongs to a Function that is gone or being deleted.
    /// Deleted with the default (background) propagation, a Function leaves its versions behind
    /// until the garbage collector reaches them; planning for them meanwhile would fall back to
    /// each version's publish-time scaling and could launch capacity for a function that no
    /// longer exists. A version orphaned on purpose (`--cascade=orphan`) loses its owner
    /// reference and is planned as before.
    fn owner_gone(&self, owners: &[OwnerReference]) -> bool {
        owners.iter().any(|o| {
            o.controller == Some(true)
                && o.kind == "Function"
                && o.api_version.starts_with("lmi.dev/")
                && !self.live.contains(&o.uid)
        })
    }
}

/// The view of `version`, without the autoscaler's wish (the caller adds it), or why it has
/// none. The latest published version follows its Function's scaling config (see
/// [`effective_scaling_config`]); any other keeps its own.
pub fn version_view(
    version: &FunctionVersion,
    functions: &Functions<'_>,
) -> Result<VersionView, Skip> {
    if version.metadata.deletion_timestamp.is_some()
        || functions.owner_gone(version.owner_references())
    {
        return Err(Skip::Gone);
    }
    let shape = rules::ee_shape(&version.spec.configuration).map_err(Skip::Invalid)?;
    let function = functions.of(version);
    let latest = function
        .and_then(|f| f.status.as_ref())
        .and_then(|s| s.latest_published_version.as_deref())
        .and_then(|v| v.parse::<i32>().ok());
    let bounds = effective_scaling_config(
        version.spec.scaling_config.as_ref(),
        function.and_then(|f| f.spec.scaling_config.as_ref()),
        latest == Some(version.spec.version),
    );
    Ok(VersionView {
        key: key_of(version),
        pod_prefix: format!("{}-ee-", version.name_any()),
        shape,
        bounds,
        wish: None,
        previous_state: version.status.as_ref().and_then(|s| s.state),
    })
}

#[cfg(test)]
mod tests {
    use lmi_crds::rules::ScalingBounds;
    use serde_json::json;

    use super::*;

    fn owner(kind: &str, api_version: &str, uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            name: "f".to_string(),
            uid: uid.to_string(),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    /// Function `f` (uid `uid-f`) with min 5 / max 9 on its `$LATEST.PUBLISHED`, whose latest
    /// published version is 2.
    fn function(deleting: bool) -> Arc<Function> {
        let mut metadata = json!({"name": "f", "namespace": "team", "uid": "uid-f"});
        if deleting {
            metadata["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "lmi.dev/v1alpha1", "kind": "Function",
                "metadata": metadata,
                "spec": {
                    "capacityProviderConfig": {"capacityProviderName": "cp", "executionEnvironmentMemoryGiBPerVCpu": 2},
                    "code": {"imageUri": "img"},
                    "memorySize": 2048,
                    "scalingConfig": {"minExecutionEnvironments": 5, "maxExecutionEnvironments": 9}
                },
                "status": {"latestPublishedVersion": "2"}
            }))
            .expect("function"),
        )
    }

    /// Version `number` of `f`, owned by it, with its own scaling of min 1 / max 2.
    fn version(number: i32) -> FunctionVersion {
        serde_json::from_value(json!({
            "apiVersion": "lmi.dev/v1alpha1", "kind": "FunctionVersion",
            "metadata": {
                "name": format!("f-v{number}"), "namespace": "team",
                "ownerReferences": [{"apiVersion": "lmi.dev/v1alpha1", "kind": "Function",
                    "name": "f", "uid": "uid-f", "controller": true}]
            },
            "spec": {
                "functionName": "f", "version": number,
                "configuration": {
                    "capacityProviderConfig": {"capacityProviderName": "cp", "executionEnvironmentMemoryGiBPerVCpu": 2},
                    "code": {"imageUri": "img"},
                    "memorySize": 2048
                },
                "scalingConfig": {"minExecutionEnvironments": 1, "maxExecutionEnvironments": 2}
            }
        }))
        .expect("version")
    }

    #[test]
    fn the_latest_published_version_follows_the_functions_scaling_and_others_keep_their_own() {
        let all = [function(false)];
        let functions = Functions::new(&all);
        let latest = version_view(&version(2), &functions).expect("a view");
        assert_eq!(latest.key, "team/f-v2");
        assert_eq!(latest.pod_prefix, "f-v2-ee-");
        assert_eq!(latest.shape.vcpus, 1);
        assert_eq!(
            latest.bounds,
            ScalingBounds {
                min: 5,
                max: Some(9)
            }
        );
        assert_eq!(latest.wish, None, "the caller adds the autoscaler's wish");
        let older = version_view(&version(1), &functions).expect("a view");
        assert_eq!(
            older.bounds,
            ScalingBounds {
                min: 1,
                max: Some(2)
            }
        );
    }

    #[test]
    fn a_version_whose_function_is_gone_or_being_deleted_is_skipped() {
        assert_eq!(
            version_view(&version(2), &Functions::new(&[])),
            Err(Skip::Gone)
        );
        let deleting = [function(true)];
        assert_eq!(
            version_view(&version(2), &Functions::new(&deleting)),
            Err(Skip::Gone)
        );
        let mut being_deleted = version(2);
        being_deleted.metadata.deletion_timestamp =
            function(true).metadata.deletion_timestamp.clone();
        assert_eq!(
            version_view(&being_deleted, &Functions::new(&[function(false)])),
            Err(Skip::Gone)
        );
    }

    #[test]
    fn only_an_lmi_function_that_controls_the_version_counts_as_its_owner() {
        let live = [function(false)];
        let functions = Functions::new(&live);
        assert!(functions.owner_gone(&[owner("Function", "lmi.dev/v1alpha1", "uid-gone", true)]));
        assert!(!functions.owner_gone(&[owner("Function", "lmi.dev/v1alpha1", "uid-f", true)]));
        // Orphaned on purpose (no owner), or owned by something else: planned as before.
        assert!(!functions.owner_gone(&[]));
        assert!(!functions.owner_gone(&[owner("Function", "other.dev/v1", "uid-gone", true)]));
        assert!(!functions.owner_gone(&[owner("Function", "lmi.dev/v1alpha1", "uid-gone", false)]));
    }

    #[test]
    fn a_version_that_breaks_a_rule_is_invalid() {
        let mut broken = version(2);
        broken.spec.configuration.memory_size = 100;
        let all = [function(false)];
        assert!(matches!(
            version_view(&broken, &Functions::new(&all)),
            Err(Skip::Invalid(_))
        ));
    }
}

//! What publishing a function creates: version `number`, an immutable snapshot of the function's
//! configuration. Pure, so that the function controller (which creates it) and the simulator
//! (which runs the function's latest published version) build the same object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use lmi_crds::common::{FUNCTION_LABEL, instance_label};
use lmi_crds::rules::scaling_for_new_version;
use lmi_crds::{Function, FunctionVersion, FunctionVersionSpec};

/// Annotation on a FunctionVersion: the SHA-256 of the configuration it froze.
pub const CONFIG_SHA_ANNOTATION: &str = "lmi.dev/config-sha256";

/// Version `number` of `function`, whose configuration hashes to `config_sha`. The name is
/// deterministic (`<function>-v<number>`), so a second attempt after a restart finds the first;
/// the Function owns it, so it goes with the Function.
pub fn published_version(function: &Function, number: i32, config_sha: &str) -> FunctionVersion {
    let name = function.name_any();
    let mut labels = BTreeMap::from([(FUNCTION_LABEL.to_string(), name.clone())]);
    labels.extend(instance_label(function.metadata.labels.as_ref()));
    FunctionVersion {
        metadata: ObjectMeta {
            name: Some(FunctionVersion::object_name(&name, number)),
            namespace: Some(function.namespace().unwrap_or_default()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                CONFIG_SHA_ANNOTATION.to_string(),
                config_sha.to_string(),
            )])),
            owner_references: function.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: FunctionVersionSpec {
            function_name: name,
            version: number,
            configuration: function.spec.configuration.clone(),
            scaling_config: scaling_for_new_version(function.spec.scaling_config.as_ref()),
        },
        status: None,
    }
}

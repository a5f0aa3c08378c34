//! The admission policies shipped beside the CRDs: ValidatingAdmissionPolicies (CEL in the
//! apiserver, no webhook to run) for the rules that need another object than the one admitted.
//!
//! - `lmi-pass-capacity-provider` (Lambda's `lambda:PassCapacityProvider`): a Function or
//!   FunctionVersion may only name a capacity provider whose `namespaceSelector` selects its
//!   namespace. Every CapacityProvider is a parameter (`paramRef.selector: {}`); each is checked
//!   against the request and only the one the object names can refuse it.
//! - `lmi-pass-service-account` (Lambda's `iam:PassRole`): naming a `serviceAccountName` needs
//!   the custom verb `use` on that service account (RBAC, asked through the `authorizer` CEL
//!   library), so that whoever may write Functions but not Pods cannot run code as any identity
//!   of the namespace.
//!
//! `lmi-crdgen` writes them to `crds/yaml/` and, wrapped in a values switch, to the chart's
//! templates; the drift test keeps both equal to what this module generates. The CEL here mirrors
//! the Rust rules in [`crate::namespace_selector`]; the tests evaluate both on the same cases.

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ParamKind, ParamRef,
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec, Validation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::common::{GROUP, VERSION};

/// The name of the PassCapacityProvider policy and of its binding.
pub const PASS_CAPACITY_PROVIDER: &str = "lmi-pass-capacity-provider";

/// The capacity provider an admitted Function or FunctionVersion names. The apiserver compiles
/// policy expressions with `object` untyped, so one expression serves both kinds.
pub const PROVIDER_NAME: &str = "(has(object.spec.configuration) ? object.spec.configuration.capacityProviderConfig.capacityProviderName : object.spec.capacityProviderConfig.capacityProviderName)";

/// Whether `namespaceObject` carries label `key` (`KEY` is replaced by a CEL expression).
const HAS_LABEL: &str =
    "(has(namespaceObject.metadata.labels) && KEY in namespaceObject.metadata.labels)";

/// Whether the namespace is selected by the provider in `params` (Kubernetes' label selector
/// semantics, as [`crate::namespace_selector::NamespaceSelector::matches`]).
pub fn selector_matches_expression() -> String {
    let has = |key: &str| HAS_LABEL.replace("KEY", key);
    let value = |key: &str| format!("namespaceObject.metadata.labels[{key}]");
    let match_labels = format!(
        "(!has(params.spec.namespaceSelector.matchLabels) || params.spec.namespaceSelector.matchLabels.all(k, {} && {} == params.spec.namespaceSelector.matchLabels[k]))",
        has("k"),
        value("k")
    );
    let in_values = format!("({} && {} in e.values)", has("e.key"), value("e.key"));
    let match_expressions = format!(
        "(!has(params.spec.namespaceSelector.matchExpressions) || params.spec.namespaceSelector.matchExpressions.all(e, e.operator == 'In' ? {in_values} : e.operator == 'NotIn' ? !{in_values} : e.operator == 'Exists' ? {} : e.operator == 'DoesNotExist' ? !{} : false))",
        has("e.key"),
        has("e.key"),
    );
    format!("{match_labels} && {match_expressions}")
}

/// The PassCapacityProvider check: true when `params` is not the named provider, has no
/// selector, or selects the namespace.
pub fn pass_capacity_provider_expression() -> String {
    format!(
        "params.metadata.name != {PROVIDER_NAME} || !has(params.spec.namespaceSelector) || ({})",
        selector_matches_expression()
    )
}

/// The refusal; the same words as [`crate::namespace_selector::not_allowed_message`].
pub const PASS_CAPACITY_PROVIDER_MESSAGE: &str = "'capacity provider ' + params.metadata.name + ' does not allow functions in namespace ' + request.namespace + ' (see its spec.namespaceSelector)'";

/// Updates that leave the spec alone (finalizers, labels, the operator's metadata) are not
/// checked again: a namespace relabelled later must not wedge deletion or bookkeeping; the
/// operator stops placing such a function instead.
pub const SPEC_CHANGED: &str = "request.operation != 'UPDATE' || object.spec != oldObject.spec";

/// The name of the PassServiceAccount policy and of its binding.
pub const PASS_SERVICE_ACCOUNT: &str = "lmi-pass-service-account";
/// The RBAC verb on `serviceaccounts` that lets a user name one in a Function.
pub const USE_VERB: &str = "use";

/// Whether the admitted Function or FunctionVersion names a service account.
pub const NAMES_SERVICE_ACCOUNT: &str = "(has(object.spec.configuration) ? has(object.spec.configuration.serviceAccountName) : has(object.spec.serviceAccountName))";
/// The service account it names.
pub const SERVICE_ACCOUNT: &str = "(has(object.spec.configuration) ? object.spec.configuration.serviceAccountName : object.spec.serviceAccountName)";

/// The PassServiceAccount check: no service account named, or the requester may `use` it.
pub fn pass_service_account_expression() -> String {
    format!(
        "!{NAMES_SERVICE_ACCOUNT} || authorizer.group('').resource('serviceaccounts').namespace(request.namespace).name({SERVICE_ACCOUNT}).check('{USE_VERB}').allowed()"
    )
}

/// The refusal: who, which account, and the grant that would let them.
pub fn pass_service_account_message() -> String {
    format!(
        "request.userInfo.username + ' may not run functions as service account ' + {SERVICE_ACCOUNT} + ' in namespace ' + request.namespace + ': it needs verb {USE_VERB} on serviceaccounts, resourceNames [' + {SERVICE_ACCOUNT} + '] (docs/security.md)'"
    )
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some([("app.kubernetes.io/part-of".to_string(), "lmi".to_string())].into()),
        ..Default::default()
    }
}

fn functions_and_versions() -> MatchResources {
    MatchResources {
        resource_rules: Some(vec![NamedRuleWithOperations {
            api_groups: Some(vec![GROUP.to_string()]),
            api_versions: Some(vec![VERSION.to_string()]),
            operations: Some(vec!["CREATE".to_string(), "UPDATE".to_string()]),
            resources: Some(vec![
                "functions".to_string(),
                "functionversions".to_string(),
            ]),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// The PassCapacityProvider policy.
pub fn pass_capacity_provider_policy() -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: meta(PASS_CAPACITY_PROVIDER),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_string()),
            param_kind: Some(ParamKind {
                api_version: Some(format!("{GROUP}/{VERSION}")),
                kind: Some("CapacityProvider".to_string()),
            }),
            match_constraints: Some(functions_and_versions()),
            match_conditions: Some(vec![MatchCondition {
                name: "spec-changed".to_string(),
                expression: SPEC_CHANGED.to_string(),
            }]),
            validations: Some(vec![Validation {
                expression: pass_capacity_provider_expression(),
                message_expression: Some(PASS_CAPACITY_PROVIDER_MESSAGE.to_string()),
                reason: Some("Forbidden".to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Its binding: every CapacityProvider is a parameter; with none, there is nothing to refuse
/// (the operator reports a missing provider).
pub fn pass_capacity_provider_binding() -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta(PASS_CAPACITY_PROVIDER),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: PASS_CAPACITY_PROVIDER.to_string(),
            param_ref: Some(ParamRef {
                selector: Some(LabelSelector::default()),
                parameter_not_found_action: Some("Allow".to_string()),
                ..Default::default()
            }),
            validation_actions: vec!["Deny".to_string()],
            ..Default::default()
        },
    }
}

/// The PassServiceAccount policy.
pub fn pass_service_account_policy() -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: meta(PASS_SERVICE_ACCOUNT),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_string()),
            match_constraints: Some(functions_and_versions()),
            match_conditions: Some(vec![MatchCondition {
                name: "spec-changed".to_string(),
                expression: SPEC_CHANGED.to_string(),
            }]),
            validations: Some(vec![Validation {
                expression: pass_service_account_expression(),
                message_expression: Some(pass_service_account_message()),
                reason: Some("Forbidden".to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Its binding (no parameters).
pub fn pass_service_account_binding() -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta(PASS_SERVICE_ACCOUNT),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: PASS_SERVICE_ACCOUNT.to_string(),
            validation_actions: vec!["Deny".to_string()],
            ..Default::default()
        },
    }
}

/// Every policy and binding, in the order to apply them.
pub fn all() -> Result<Vec<serde_yaml::Value>, serde_yaml::Error> {
    Ok(vec![
        serde_yaml::to_value(pass_capacity_provider_policy())?,
        serde_yaml::to_value(pass_capacity_provider_binding())?,
        serde_yaml::to_value(pass_service_account_policy())?,
        serde_yaml::to_value(pass_service_account_binding())?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_names_its_policy() {
        let binding = pass_capacity_provider_binding();
        assert_eq!(binding.spec.policy_name, PASS_CAPACITY_PROVIDER);
    }
}

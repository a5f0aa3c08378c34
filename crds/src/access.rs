//! Who may invoke: the names the router, the chart and the docs share.
//!
//! - **Access keys** are Secrets of type [`ACCESS_KEY_SECRET_TYPE`] in the router's system
//!   namespace. Each holds an AWS-style key pair and the Kubernetes identity the key acts as; the
//!   router watches them (no API call per request) and verifies SigV4 against them. Only those who
//!   may write Secrets in that namespace can mint keys, and a key may name any identity, so that
//!   namespace is as sensitive as the cluster's admin credentials.
//! - **Authorization** is RBAC: verb [`INVOKE_VERB`] on `functions` in group `lmi.dev`, in the
//!   function's namespace, optionally limited by `resourceNames`. [`invoker_cluster_role`] is the
//!   ClusterRole shipped to bind (Lambda's `lambda:InvokeFunction`).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::common::GROUP;

/// The `type` of an access-key Secret (the router selects them by it: `type` is one of the few
/// fields a Secret watch can select on, so one `kubectl create secret` makes a key).
pub const ACCESS_KEY_SECRET_TYPE: &str = "lmi.dev/access-key";
/// Data key: the access key id callers put in `AWS_ACCESS_KEY_ID`.
pub const ACCESS_KEY_ID: &str = "accessKeyId";
/// Data key: the secret access key (`AWS_SECRET_ACCESS_KEY`).
pub const SECRET_ACCESS_KEY: &str = "secretAccessKey";
/// Data key: the Kubernetes user name the key acts as (`alice`, or
/// `system:serviceaccount:<namespace>:<name>` for a service account).
pub const USER: &str = "user";
/// Data key (optional): groups of the user, separated by commas.
pub const GROUPS: &str = "groups";

/// The RBAC verb that allows invoking a function.
pub const INVOKE_VERB: &str = "invoke";
/// The resource it is checked on.
pub const FUNCTIONS_RESOURCE: &str = "functions";
/// The ClusterRole that grants it.
pub const INVOKER_CLUSTER_ROLE: &str = "lmi-invoker";

/// The ClusterRole `lmi-invoker`: `invoke` on every function of the namespaces it is bound in
/// (a RoleBinding) or of all namespaces (a ClusterRoleBinding). For some functions only, bind a
/// Role of your own with `resourceNames`.
pub fn invoker_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(INVOKER_CLUSTER_ROLE.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/part-of".to_string(),
                "lmi".to_string(),
            )])),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![GROUP.to_string()]),
            resources: Some(vec![FUNCTIONS_RESOURCE.to_string()]),
            verbs: vec![INVOKE_VERB.to_string()],
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// The groups the apiserver gives a service account's user name, so that a key acting as one
/// matches RBAC bindings to its groups as its token would. Empty for other user names.
pub fn service_account_groups(user: &str) -> Vec<String> {
    match user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{namespace}"),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_accounts_get_their_groups() {
        assert_eq!(
            service_account_groups("system:serviceaccount:team-a:ci"),
            vec!["system:serviceaccounts", "system:serviceaccounts:team-a"]
        );
        assert!(service_account_groups("alice").is_empty());
        assert!(service_account_groups("system:serviceaccount:team-a").is_empty());
    }

    #[test]
    fn the_invoker_role_grants_invoke_on_functions() {
        let role = invoker_cluster_role();
        let rules = role.rules.unwrap_or_default();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].verbs, vec!["invoke"]);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["functions".to_string()][..])
        );
    }
}

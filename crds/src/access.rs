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

/// The ClusterRole aggregated into Kubernetes' `edit` and `admin` roles.
pub const EDIT_CLUSTER_ROLE: &str = "lmi-edit";
/// The ClusterRole aggregated into Kubernetes' `view` role.
pub const VIEW_CLUSTER_ROLE: &str = "lmi-view";

/// The namespaced kinds app teams work with.
const APP_TEAM_RESOURCES: [&str; 3] = ["functions", "functionversions", "functionaliases"];
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// The ClusterRoles that let Kubernetes' own `edit`/`admin` and `view` roles work with
/// Functions, versions and aliases (RBAC aggregation), so a namespace's app team needs no
/// lmi-specific binding. Invoking stays a separate grant ([`invoker_cluster_role`]), as in Lambda
/// where managing a function and calling it are different permissions; capacity providers stay
/// the platform team's (cluster-scoped, not aggregated).
pub fn app_team_cluster_roles() -> [ClusterRole; 2] {
    let role = |name: &str, aggregate_to: &[&str], verbs: Vec<&str>| ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                std::iter::once(("app.kubernetes.io/part-of".to_string(), "lmi".to_string()))
                    .chain(aggregate_to.iter().map(|to| {
                        (
                            format!("rbac.authorization.k8s.io/aggregate-to-{to}"),
                            "true".to_string(),
                        )
                    }))
                    .collect(),
            ),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![GROUP.to_string()]),
            resources: Some(APP_TEAM_RESOURCES.iter().map(|r| r.to_string()).collect()),
            verbs: verbs.into_iter().map(str::to_string).collect(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    // Aggregation does not chain through custom roles: `edit` gets only roles labelled
    // aggregate-to-edit, so the edit role carries the read verbs too.
    [
        role(
            EDIT_CLUSTER_ROLE,
            &["edit", "admin"],
            READ_VERBS.into_iter().chain(WRITE_VERBS).collect(),
        ),
        role(VIEW_CLUSTER_ROLE, &["view"], READ_VERBS.to_vec()),
    ]
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

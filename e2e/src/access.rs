//! Callers' credentials for tests that invoke through a router with authentication on: access
//! keys, RBAC bindings of ClusterRole `lmi-invoker`, and service-account tokens from the
//! TokenRequest API (docs/security.md).

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use lmi_crds::access::{ACCESS_KEY_SECRET_TYPE, INVOKER_CLUSTER_ROLE, invoker_cluster_role};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Applies ClusterRole `lmi-invoker` as `crds/yaml` and the chart ship it (a cluster may have it
/// already: the main job applies it).
pub async fn apply_invoker_role(client: &Client) -> Result<()> {
    Api::<ClusterRole>::all(client.clone())
        .patch(
            INVOKER_CLUSTER_ROLE,
            &PatchParams::apply("lmi-e2e").force(),
            &Patch::Apply(invoker_cluster_role()),
        )
        .await?;
    Ok(())
}

/// Binds `lmi-invoker` in `namespace` to `subject` (an RBAC subject, e.g. a User or ServiceAccount).
pub async fn bind_invoker(
    client: &Client,
    namespace: &str,
    name: &str,
    subject: Value,
) -> Result<()> {
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": INVOKER_CLUSTER_ROLE},
        "subjects": [subject]
    }))?;
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await?;
    Ok(())
}

/// An access-key Secret (type `lmi.dev/access-key`) in `namespace`, acting as `user`.
pub async fn create_access_key(
    client: &Client,
    namespace: &str,
    name: &str,
    key: (&str, &str),
    user: &str,
) -> Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "type": ACCESS_KEY_SECRET_TYPE,
        "stringData": {"accessKeyId": key.0, "secretAccessKey": key.1, "user": user}
    }))?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// Copies the cluster's invoke key (`lmi-invoke-key` of `from`, which the operator makes) into
/// namespace `to`, for a router whose system namespace is `to`: it derives the EEs' tokens from it.
pub async fn copy_invoke_key(client: &Client, from: &str, to: &str) -> Result<()> {
    let name = lmi_crds::invoke_token::INVOKE_KEY_SECRET;
    let key = Api::<Secret>::namespaced(client.clone(), from)
        .get(name)
        .await?;
    let copy = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: key.data,
        type_: key.type_,
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), to)
        .create(&PostParams::default(), &copy)
        .await?;
    Ok(())
}

/// Creates service account `name` in `namespace`.
pub async fn create_service_account(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &account)
        .await?;
    Ok(())
}

/// A token of service account `name` for `audience`, valid 10 minutes (what a projected token
/// volume gives a pod).
pub async fn service_account_token(
    client: &Client,
    namespace: &str,
    name: &str,
    audience: &str,
) -> Result<String> {
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": [audience], "expirationSeconds": 600}
    }))?;
    let issued = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await?;
    issued
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Other(format!("no token issued for {namespace}/{name}")))
}

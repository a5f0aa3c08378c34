//! The shipped admission policies (`crds/yaml/lmi-admission-policies.yaml`) against the real
//! apiserver:
//!
//! - PassCapacityProvider: a Function in a namespace its capacity provider's `namespaceSelector`
//!   does not select is refused with the provider's name in the message; once the namespace
//!   carries the label, the same Function is admitted.
//! - PassServiceAccount: a user who may write Functions but lacks verb `use` on the service
//!   account a Function names is refused; granted `use` on it, admitted.
//!
//! - The app-team ClusterRoles (`crds/yaml/lmi-app-team-clusterroles.yaml`), aggregated into
//!   Kubernetes' own roles: a user bound to `edit` in a namespace may create a Function there, one
//!   bound to `view` may read Functions but not create one.
//!
//! Each test applies the shipped policy and binding under names of its own, bound to its
//! namespace only (and to the tests' capacity providers), so that nothing outside the test is
//! affected; they are deleted afterwards. Creates are dry runs.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams};
use lmi_crds::admission::{PASS_CAPACITY_PROVIDER, PASS_SERVICE_ACCOUNT};
use lmi_crds::common::INSTANCE_LABEL;
use lmi_e2e::harness::{self, E2E_INSTANCE, TestEnv};
use lmi_e2e::manifests::{self, ApplyOptions};
use lmi_e2e::{Error, Result};
use serde_json::{Value, json};

const TEAM_LABEL: &str = "lmi.dev/e2e-team";

/// The shipped policy `policy` and its binding, renamed for this test and scoped to its
/// namespace, applied, and deleted when the test ends.
async fn apply_scoped_policy(env: &TestEnv, policy: &str) -> Result<()> {
    let path = harness::repo_root().join("crds/yaml/lmi-admission-policies.yaml");
    let name = format!("{policy}-{}", env.namespace);
    let mut docs = Vec::new();
    for mut doc in manifests::read_documents(&path)? {
        if doc["metadata"]["name"] != policy {
            continue;
        }
        doc["metadata"]["name"] = json!(name);
        if doc["kind"] == "ValidatingAdmissionPolicyBinding" {
            let spec = &mut doc["spec"];
            spec["policyName"] = json!(name);
            if spec.get("paramRef").is_some() {
                spec["paramRef"]["selector"] =
                    json!({"matchLabels": {INSTANCE_LABEL: E2E_INSTANCE}});
            }
            spec["matchResources"] = json!({"namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": env.namespace}
            }});
        }
        docs.push(doc);
    }
    if docs.len() != 2 {
        return Err(Error::Other(format!(
            "{} should hold the policy and binding {policy}, found {} documents",
            path.display(),
            docs.len()
        )));
    }
    for doc in &docs {
        env.delete_afterwards(doc);
        manifests::apply(&env.client, &env.namespace, doc, ApplyOptions::default()).await?;
    }
    Ok(())
}

/// How a dry-run apply of `doc` by `client` ended: admitted, or the apiserver's refusal.
async fn try_apply(
    client: &kube::Client,
    namespace: &str,
    doc: &Value,
) -> Result<Result<(), kube::core::Status>> {
    match manifests::apply(client, namespace, doc, ApplyOptions { dry_run: true }).await {
        Ok(_) => Ok(Ok(())),
        Err(Error::Kube(kube::Error::Api(status))) => Ok(Err(*status)),
        Err(e) => Err(e),
    }
}

fn function(provider: &str) -> Value {
    json!({
        "apiVersion": "lmi.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "hello"},
        "spec": {
            "capacityProviderConfig": {"capacityProviderName": provider, "executionEnvironmentMemoryGiBPerVCpu": 2},
            "code": {"imageUri": "example.com/hello:1"},
            "memorySize": 2048
        }
    })
}

#[tokio::test]
async fn a_function_in_a_namespace_its_provider_does_not_allow_is_refused() -> Result<()> {
    harness::with_namespace("pass-capacity-provider", |env: TestEnv| async move {
        let provider_name = format!("pass-{}", env.namespace.trim_start_matches("e2e-"));
        let provider_name: String = provider_name.chars().take(63).collect();
        let provider_name = provider_name.trim_end_matches('-').to_string();
        let provider = json!({
            "apiVersion": "lmi.dev/v1alpha1",
            "kind": "CapacityProvider",
            "metadata": {"name": provider_name},
            "spec": {
                "provisioning": {"mode": "Static", "nodeSelector": {"lmi.dev/pool": "none-pass-capacity-provider"}},
                "namespaceSelector": {"matchLabels": {TEAM_LABEL: "allowed"}}
            }
        });
        env.delete_afterwards(&provider);
        manifests::apply(&env.client, &env.namespace, &provider, ApplyOptions::default()).await?;
        apply_scoped_policy(&env, PASS_CAPACITY_PROVIDER).await?;

        let doc = function(&provider_name);
        // A new policy takes effect once the apiserver has compiled it: a moment after its create.
        let refusal = harness::eventually(
            "the Function to be refused by the policy",
            Duration::from_secs(60),
            || async { Ok(try_apply(&env.client, &env.namespace, &doc).await?.err()) },
        )
        .await?;
        let expected = format!(
            "capacity provider {provider_name} does not allow functions in namespace {}",
            env.namespace
        );
        assert!(
            refusal.message.contains(&expected) && refusal.message.contains(PASS_CAPACITY_PROVIDER),
            "refusal should name the provider and the policy: {refusal:?}"
        );
        assert_eq!(refusal.code, 403, "{refusal:?}");
        println!("refused: {}", refusal.message);

        // Labelled as the provider asks, the namespace may use it.
        let namespaces: Api<Namespace> = Api::all(env.client.clone());
        let label = json!({"metadata": {"labels": {TEAM_LABEL: "allowed"}}});
        namespaces
            .patch(&env.namespace, &PatchParams::default(), &Patch::Merge(&label))
            .await?;
        harness::eventually(
            "the Function to be admitted in the labelled namespace",
            Duration::from_secs(30),
            || async { Ok(try_apply(&env.client, &env.namespace, &doc).await?.ok()) },
        )
        .await?;
        Ok(())
    })
    .await
}

/// A client that acts as `user` (impersonation by the test's admin credentials).
async fn client_as(user: &str) -> Result<kube::Client> {
    let mut config = lmi_e2e::kubeconfig::config(&harness::kubeconfig().await?).await?;
    config.auth_info.impersonate = Some(user.to_string());
    Ok(kube::Client::try_from(config)?)
}

#[tokio::test]
async fn naming_a_service_account_needs_verb_use_on_it() -> Result<()> {
    harness::with_namespace("pass-service-account", |env: TestEnv| async move {
        let user = format!("e2e-writer-{}", env.namespace);
        // The user may write Functions (server-side apply is a patch), and nothing else.
        let role_binding = |name: &str, rules: Value| {
            [
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": {"name": name}, "rules": rules}),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": {"name": name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}),
            ]
        };
        let writer = role_binding(
            "function-writer",
            json!([{"apiGroups": ["lmi.dev"], "resources": ["functions"], "verbs": ["get", "create", "patch"]}]),
        );
        for doc in &writer {
            manifests::apply(&env.client, &env.namespace, doc, ApplyOptions::default()).await?;
        }
        apply_scoped_policy(&env, PASS_SERVICE_ACCOUNT).await?;
        let as_user = client_as(&user).await?;

        let mut doc = function("any-provider");
        // Without a service account there is nothing to check: admitted once RBAC lets the user
        // write Functions.
        harness::eventually(
            "a Function without a service account to be admitted",
            Duration::from_secs(30),
            || async { Ok(try_apply(&as_user, &env.namespace, &doc).await?.ok()) },
        )
        .await?;

        doc["spec"]["serviceAccountName"] = json!("reader");
        let refusal = harness::eventually(
            "the Function naming a service account to be refused",
            Duration::from_secs(60),
            || async { Ok(try_apply(&as_user, &env.namespace, &doc).await?.err()) },
        )
        .await?;
        let expected = format!(
            "{user} may not run functions as service account reader in namespace {}",
            env.namespace
        );
        assert!(
            refusal.message.contains(&expected) && refusal.message.contains(PASS_SERVICE_ACCOUNT),
            "refusal should name the user, the account and the policy: {refusal:?}"
        );
        println!("refused: {}", refusal.message);

        let user_of_reader = role_binding(
            "use-reader",
            json!([{"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": ["reader"], "verbs": ["use"]}]),
        );
        for doc in &user_of_reader {
            manifests::apply(&env.client, &env.namespace, doc, ApplyOptions::default()).await?;
        }
        harness::eventually(
            "the Function to be admitted once the user may use the account",
            Duration::from_secs(30),
            || async { Ok(try_apply(&as_user, &env.namespace, &doc).await?.ok()) },
        )
        .await?;
        // Another account is still refused: the grant names one account.
        doc["spec"]["serviceAccountName"] = json!("admin-bot");
        let other = try_apply(&as_user, &env.namespace, &doc).await?;
        assert!(other.is_err(), "admin-bot should still be refused: {other:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn kubernetes_edit_and_view_roles_cover_functions() -> Result<()> {
    harness::with_namespace("app-team-roles", |env: TestEnv| async move {
        // Cluster-wide and shared with the chart's copy: applied, never deleted.
        let path = harness::repo_root().join("crds/yaml/lmi-app-team-clusterroles.yaml");
        for doc in manifests::read_documents(&path)? {
            manifests::apply(&env.client, "", &doc, ApplyOptions::default()).await?;
        }
        let (editor, viewer) = (
            format!("e2e-editor-{}", env.namespace),
            format!("e2e-viewer-{}", env.namespace),
        );
        for (user, role) in [(&editor, "edit"), (&viewer, "view")] {
            let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": format!("{role}-binding")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]});
            manifests::apply(&env.client, &env.namespace, &binding, ApplyOptions::default())
                .await?;
        }
        let doc = function("any-provider");
        // The controller manager aggregates the rules into edit and view a moment later.
        let as_editor = client_as(&editor).await?;
        harness::eventually(
            "a user bound to edit to create a Function",
            Duration::from_secs(30),
            || async { Ok(try_apply(&as_editor, &env.namespace, &doc).await?.ok()) },
        )
        .await?;
        let as_viewer = client_as(&viewer).await?;
        let functions: Api<lmi_crds::Function> = Api::namespaced(as_viewer.clone(), &env.namespace);
        harness::eventually(
            "a user bound to view to list Functions",
            Duration::from_secs(30),
            || async { Ok(functions.list(&Default::default()).await.ok().map(|_| ())) },
        )
        .await?;
        let refusal = try_apply(&as_viewer, &env.namespace, &doc)
            .await?
            .expect_err("a view user must not create a Function");
        assert_eq!(refusal.code, 403, "{refusal:?}");
        Ok(())
    })
    .await
}

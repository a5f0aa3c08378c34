//! PassCapacityProvider at admission, against the real apiserver: with the shipped policy
//! (`crds/yaml/lmi-admission-policies.yaml`) in force, a Function in a namespace its capacity
//! provider's `namespaceSelector` does not select is refused with the provider's name in the
//! message; once the namespace carries the label, the same Function is admitted.
//!
//! The policy and binding are the shipped ones under names of this test's own, bound to this
//! test's namespace and to the tests' capacity providers only, so that nothing outside the test
//! is affected; they and the provider are deleted afterwards. Creates are dry runs.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams};
use lmi_crds::admission::PASS_CAPACITY_PROVIDER;
use lmi_crds::common::INSTANCE_LABEL;
use lmi_e2e::harness::{self, E2E_INSTANCE, TestEnv};
use lmi_e2e::manifests::{self, ApplyOptions};
use lmi_e2e::{Error, Result};
use serde_json::{Value, json};

const TEAM_LABEL: &str = "lmi.dev/e2e-team";

/// The shipped policy and binding, renamed for this test and scoped to its namespace.
fn scoped_policies(namespace: &str) -> Result<Vec<Value>> {
    let path = harness::repo_root().join("crds/yaml/lmi-admission-policies.yaml");
    let name = format!("{PASS_CAPACITY_PROVIDER}-{namespace}");
    let mut docs = Vec::new();
    for mut doc in manifests::read_documents(&path)? {
        if doc["metadata"]["name"] != PASS_CAPACITY_PROVIDER {
            continue;
        }
        doc["metadata"]["name"] = json!(name);
        if doc["kind"] == "ValidatingAdmissionPolicyBinding" {
            let spec = &mut doc["spec"];
            spec["policyName"] = json!(name);
            spec["paramRef"]["selector"] = json!({"matchLabels": {INSTANCE_LABEL: E2E_INSTANCE}});
            spec["matchResources"] = json!({"namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": namespace}
            }});
        }
        docs.push(doc);
    }
    if docs.len() != 2 {
        return Err(Error::Other(format!(
            "{} should hold the policy and binding {PASS_CAPACITY_PROVIDER}, found {} documents",
            path.display(),
            docs.len()
        )));
    }
    Ok(docs)
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
        for doc in scoped_policies(&env.namespace)? {
            env.delete_afterwards(&doc);
            manifests::apply(&env.client, &env.namespace, &doc, ApplyOptions::default()).await?;
        }

        let dry_run = ApplyOptions { dry_run: true };
        let doc = function(&provider_name);
        // A new policy takes effect once the apiserver has compiled it: a moment after its create.
        let refusal = harness::eventually(
            "the Function to be refused by the policy",
            Duration::from_secs(60),
            || async {
                match manifests::apply(&env.client, &env.namespace, &doc, dry_run).await {
                    Ok(_) => Ok(None),
                    Err(Error::Kube(kube::Error::Api(status))) => Ok(Some(status)),
                    Err(e) => Err(e),
                }
            },
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
            || async {
                match manifests::apply(&env.client, &env.namespace, &doc, dry_run).await {
                    Ok(_) => Ok(Some(())),
                    Err(Error::Kube(kube::Error::Api(_))) => Ok(None),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        Ok(())
    })
    .await
}

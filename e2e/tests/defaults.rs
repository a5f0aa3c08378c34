//! The apiserver fills in the defaults the CRD schemas declare (the Lambda defaults).

use lmi_e2e::harness::{self, TestEnv};
use lmi_e2e::manifests::{self, ApplyOptions};
use lmi_e2e::{Error, Result};

fn example(name: &str) -> Result<serde_json::Value> {
    let path = harness::repo_root().join("examples").join(name);
    manifests::read_documents(&path)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Other(format!("{} is empty", path.display())))
}

fn remove(doc: &mut serde_json::Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = doc;
    for key in parents {
        match at.get_mut(*key) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Some(object) = at.as_object_mut() {
        object.remove(*last);
    }
}

#[tokio::test]
async fn function_gets_lambda_memory_and_timeout_defaults() -> Result<()> {
    harness::with_namespace("defaults-function", |env: TestEnv| async move {
        let mut doc = example("function.yaml")?;
        remove(&mut doc, &["spec", "memorySize"]);
        remove(&mut doc, &["spec", "timeout"]);
        let stored =
            manifests::apply(&env.client, &env.namespace, &doc, ApplyOptions::default()).await?;
        let spec = &stored.data["spec"];
        assert_eq!(spec["memorySize"], 2048, "memorySize default in {spec}");
        assert_eq!(spec["timeout"], 3, "timeout default in {spec}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn capacity_provider_gets_scaling_defaults() -> Result<()> {
    harness::with_namespace("defaults-capacity-provider", |env: TestEnv| async move {
        let mut doc = example("capacity-provider-karpenter.yaml")?;
        remove(&mut doc, &["spec", "scalingConfig"]);
        // A name of the test's own, so the dry run cannot merge with a provider of the example's
        // name that someone else made.
        env.own_name(&mut doc).await?;
        // Cluster-scoped: a dry run returns the defaulted object without storing it.
        let options = ApplyOptions { dry_run: true };
        let stored = manifests::apply(&env.client, &env.namespace, &doc, options).await?;
        let scaling = &stored.data["spec"]["scalingConfig"];
        assert_eq!(
            scaling["maxVCpuCount"], 400,
            "maxVCpuCount default in {scaling}"
        );
        assert_eq!(
            scaling["scalingMode"], "Auto",
            "scalingMode default in {scaling}"
        );
        Ok(())
    })
    .await
}

//! Every valid example in `examples/*.yaml` is accepted by the real apiserver (CRD schema and CEL
//! rules). Namespaced objects are created in the test's namespace; cluster-scoped ones are applied
//! as a server-side dry run, under a name of the test's own (`TestEnv::own_name`): the example
//! provider `local` may be the main job's, running.

use lmi_e2e::Result;
use lmi_e2e::harness::{self, TestEnv};
use lmi_e2e::manifests::{self, ApplyOptions};

#[tokio::test]
async fn every_valid_example_applies() -> Result<()> {
    harness::with_namespace("examples-valid", |env: TestEnv| async move {
        let files = manifests::yaml_files(&harness::repo_root().join("examples"))?;
        let mut failures = Vec::new();
        let mut applied = 0;
        for file in &files {
            for mut doc in manifests::read_documents(file)? {
                let kind = doc["kind"].as_str().unwrap_or_default().to_string();
                let namespaced = manifests::is_namespaced(&env.client, &doc).await?;
                env.own_name(&mut doc).await?;
                let options = ApplyOptions {
                    dry_run: !namespaced,
                };
                match manifests::apply(&env.client, &env.namespace, &doc, options).await {
                    Ok(_) => applied += 1,
                    Err(e) => failures.push(format!("{}: {kind}: {e}", file.display())),
                }
            }
        }
        println!("applied {applied} objects from {} files", files.len());
        assert!(
            failures.is_empty(),
            "rejected valid examples:\n{}",
            failures.join("\n")
        );
        Ok(())
    })
    .await
}

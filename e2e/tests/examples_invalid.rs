//! Every manifest in `examples/invalid/` is rejected by the real apiserver with the message its
//! first comment expects (`# expect: <substring>`). A file with `# update-of: <valid example>` is
//! applied as an update of that example (created first), to test the immutability rules.

use std::path::Path;

use lmi_e2e::harness::{self, TestEnv};
use lmi_e2e::manifests::{self, ApplyOptions, InvalidExample};
use lmi_e2e::{Error, Result};

#[tokio::test]
async fn every_invalid_example_is_rejected_with_its_message() -> Result<()> {
    harness::with_namespace("examples-invalid", |env: TestEnv| async move {
        let root = harness::repo_root().join("examples");
        let files = manifests::yaml_files(&root.join("invalid"))?;
        let mut failures = Vec::new();
        for file in &files {
            if let Err(problem) = check(&env, &root, file).await {
                failures.push(format!("{}: {problem}", file.display()));
            }
        }
        println!("checked {} invalid examples", files.len());
        assert!(
            failures.is_empty(),
            "{} of {} invalid examples misbehaved:\n{}",
            failures.len(),
            files.len(),
            failures.join("\n")
        );
        Ok(())
    })
    .await
}

/// `Err` says what went wrong with this file.
async fn check(env: &TestEnv, examples: &Path, file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let header = InvalidExample::parse(&text);
    let expect = header
        .expect
        .ok_or("no `# expect: <substring>` comment at the top")?;
    let mut docs = manifests::read_documents(file).map_err(|e| e.to_string())?;
    let [doc] = docs.as_mut_slice() else {
        return Err(format!("holds {} documents, expected one", docs.len()));
    };
    // The base is looked up by the example's own name, before both get the test's.
    let original_name = doc["metadata"]["name"].clone();
    env.own_name(doc).await.map_err(|e| e.to_string())?;
    let doc = &*doc;

    let base = match &header.update_of {
        Some(base_file) => {
            Some(create_base(env, &examples.join(base_file), doc, &original_name).await?)
        }
        None => None,
    };
    // A create is only validated (dry run); an update must really happen against the stored base.
    let options = ApplyOptions {
        dry_run: base.is_none(),
    };
    let outcome = manifests::apply(&env.client, &env.namespace, doc, options).await;
    if let Some(base) = &base {
        // Delete at once: the next file may use the same name.
        manifests::delete(&env.client, &env.namespace, base)
            .await
            .map_err(|e| format!("deleting the base object: {e}"))?;
    }
    match outcome {
        Ok(_) => Err(format!(
            "was accepted; expected a rejection containing {expect:?}"
        )),
        Err(Error::Kube(e)) if e.to_string().contains(&expect) => Ok(()),
        Err(e) => Err(format!(
            "rejected, but the error does not contain {expect:?}: {e}"
        )),
    }
}

/// Creates the valid example that `doc` is an update of (the one named `original_name`, under
/// `doc`'s name), and returns it.
async fn create_base(
    env: &TestEnv,
    base_file: &Path,
    doc: &serde_json::Value,
    original_name: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let docs = manifests::read_documents(base_file).map_err(|e| format!("update-of: {e}"))?;
    let mut base = docs
        .into_iter()
        .find(|b| b["kind"] == doc["kind"] && b["metadata"]["name"] == *original_name)
        .ok_or_else(|| {
            format!(
                "update-of {} holds no {} named {}",
                base_file.display(),
                doc["kind"],
                original_name
            )
        })?;
    base["metadata"]["name"] = doc["metadata"]["name"].clone();
    // A leftover from an interrupted run would make this an update of something else.
    manifests::delete(&env.client, &env.namespace, &base)
        .await
        .map_err(|e| format!("deleting a leftover base: {e}"))?;
    env.delete_afterwards(&base);
    manifests::apply(&env.client, &env.namespace, &base, ApplyOptions::default())
        .await
        .map_err(|e| format!("creating the base from {}: {e}", base_file.display()))?;
    Ok(base)
}

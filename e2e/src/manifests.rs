//! Reading Kubernetes manifests and applying them to whatever kind they are.

use std::path::{Path, PathBuf};

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Api, Client};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Field manager of everything the tools and tests apply.
pub const FIELD_MANAGER: &str = "lmi-e2e";

/// The `*.yaml` files of a folder, sorted; a missing folder has none.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", dir)(e)),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Every non-empty document of a (multi-document) YAML file, as JSON values.
pub fn read_documents(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
    parse_documents(&text).map_err(|source| Error::Yaml {
        path: path.to_path_buf(),
        source,
    })
}

pub fn parse_documents(text: &str) -> Result<Vec<serde_json::Value>, serde_yaml::Error> {
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(document)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The API resource and scope of an object's apiVersion and kind, found by discovery (so that
/// CRDs installed a moment ago are known).
pub async fn resolve(
    client: &Client,
    object: &DynamicObject,
) -> Result<(ApiResource, ApiCapabilities)> {
    let types = object
        .types
        .as_ref()
        .ok_or_else(|| Error::Other("manifest has no apiVersion/kind".into()))?;
    let gvk = GroupVersionKind::try_from(types)
        .map_err(|e| Error::Other(format!("bad apiVersion/kind: {e}")))?;
    Ok(kube::discovery::pinned_kind(client, &gvk).await?)
}

/// Whether the manifest's kind lives in a namespace.
pub async fn is_namespaced(client: &Client, value: &serde_json::Value) -> Result<bool> {
    let object: DynamicObject = serde_json::from_value(value.clone())?;
    let (_, caps) = resolve(client, &object).await?;
    Ok(matches!(caps.scope, Scope::Namespaced))
}

/// How to apply one object.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Ask the server to validate, default and admit the object, but not to store it.
    pub dry_run: bool,
}

/// Server-side applies `value`; namespaced kinds go to `namespace`. Returns the object as the
/// server has it (defaults filled in).
pub async fn apply(
    client: &Client,
    namespace: &str,
    value: &serde_json::Value,
    options: ApplyOptions,
) -> Result<DynamicObject> {
    let mut value = value.clone();
    crate::harness::label_for_tests(&mut value);
    let mut object: DynamicObject = serde_json::from_value(value)?;
    let (resource, caps) = resolve(client, &object).await?;
    let name = object
        .metadata
        .name
        .clone()
        .ok_or_else(|| Error::Other("manifest has no metadata.name".into()))?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => {
            object.metadata.namespace = Some(namespace.to_string());
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        Scope::Cluster => {
            object.metadata.namespace = None;
            Api::all_with(client.clone(), &resource)
        }
    };
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    if options.dry_run {
        params = params.dry_run();
    }
    Ok(api.patch(&name, &params, &Patch::Apply(&object)).await?)
}

/// Deletes the object `value` names (namespaced kinds in `namespace`); a missing one is fine.
pub async fn delete(client: &Client, namespace: &str, value: &serde_json::Value) -> Result<()> {
    let object: DynamicObject = serde_json::from_value(value.clone())?;
    let (resource, caps) = resolve(client, &object).await?;
    let Some(name) = object.metadata.name else {
        return Ok(());
    };
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    match api.delete(&name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The directives in the leading comment lines of an `examples/invalid/` manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvalidExample {
    /// `# expect: <substring>`: what the rejection must say.
    pub expect: Option<String>,
    /// `# update-of: <file>`: apply as an update of that valid example, not as a create.
    pub update_of: Option<String>,
}

impl InvalidExample {
    pub fn parse(text: &str) -> Self {
        let mut header = InvalidExample::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some(comment) = line.strip_prefix('#') else {
                break;
            };
            let Some((key, value)) = comment.split_once(':') else {
                continue;
            };
            let value = value.trim().to_string();
            match key.trim() {
                "expect" => header.expect = Some(value),
                "update-of" => header.update_of = Some(value),
                _ => {}
            }
        }
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_expect_and_update_of_from_the_leading_comments() {
        let text = "# expect: vpcConfig is immutable: create a new one\n# update-of: cp.yaml\napiVersion: v1\n# expect: not this\n";
        assert_eq!(
            InvalidExample::parse(text),
            InvalidExample {
                expect: Some("vpcConfig is immutable: create a new one".into()),
                update_of: Some("cp.yaml".into()),
            }
        );
        assert_eq!(
            InvalidExample::parse("kind: X\n"),
            InvalidExample::default()
        );
    }

    #[test]
    fn splits_multi_document_yaml_and_skips_empty_documents() -> Result<(), serde_yaml::Error> {
        let docs = parse_documents("# comment\n---\na: 1\n---\n---\nb: 2\n")?;
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"], 2);
        Ok(())
    }
}

//! Offline validation of manifests against the generated CRDs: the OpenAPI keywords the CRDs use
//! (checked here with the apiserver's wording) and the CEL rules (evaluated by kube's `cel`
//! feature). The same manifests are replayed against a real kube-apiserver by the e2e tests.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

pub mod openapi;

use std::path::{Path, PathBuf};

use kube::core::cel::{Validator, apply_defaults};
use serde_json::Value;

/// A manifest from `examples/` with what it is expected to do.
pub struct Example {
    pub path: PathBuf,
    pub object: Value,
    /// `# expect: <substring of the error>` (invalid examples only).
    pub expect: Option<String>,
    /// `# update-of: <file>`: applied as an update of that valid example.
    pub update_of: Option<String>,
}

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(&format!("# {key}:"))
                .map(|v| v.trim().to_string())
        })
}

pub fn load(path: &Path) -> Example {
    let text = std::fs::read_to_string(path).expect("example readable");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("example is YAML");
    Example {
        path: path.to_path_buf(),
        object: serde_json::to_value(yaml).expect("YAML maps to JSON"),
        expect: header(&text, "expect"),
        update_of: header(&text, "update-of"),
    }
}

pub fn load_dir(dir: &Path) -> Vec<Example> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("examples folder readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

/// The openAPIV3Schema of the generated CRD for `kind`.
pub fn schema_for(kind: &str) -> Value {
    let crd = lmi_crds::crdgen::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    serde_json::to_value(schema).expect("schema as JSON")
}

/// Every error the apiserver would give for creating `object` (or updating `old` to it).
pub fn errors(object: &Value, old: Option<&Value>) -> Vec<String> {
    let kind = object["kind"].as_str().expect("manifest has a kind");
    let schema = schema_for(kind);
    let defaulted = apply_defaults(&schema, object);
    let mut errors = openapi::check(&schema, &defaulted);
    let old = old.map(|o| apply_defaults(&schema, o));
    if let Err(cel) = Validator::new().validate(&schema, &defaulted, old.as_ref()) {
        errors.extend(cel.iter().map(|e| e.to_string()));
    }
    errors
}

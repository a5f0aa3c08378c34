//! FunctionAlias: the schema and CEL rules around the edges the examples do not show (the
//! examples in `examples/` and `examples/invalid/` cover each rule once).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::errors;

fn alias(name: &str, version: &str, weights: Option<Value>) -> Value {
    let mut spec = json!({"name": name, "functionName": "hello", "functionVersion": version});
    if let Some(w) = weights {
        spec["routingConfig"] = json!({"additionalVersionWeights": w});
    }
    json!({
        "apiVersion": "lmi.dev/v1alpha1",
        "kind": "FunctionAlias",
        "metadata": {"name": format!("hello-{name}"), "namespace": "default"},
        "spec": spec
    })
}

fn refused_with(object: &Value, message: &str) -> bool {
    errors(object, None).iter().any(|e| e.contains(message))
}

#[test]
fn accepted_aliases() {
    let long = "a".repeat(128);
    for object in [
        alias("live", "1", None),
        alias("v2-canary", "12", None),
        alias("2x", "3", None),
        alias(&long, "1", None),
        alias("live", "1", Some(json!({"2": 0.0}))),
        // An integer weight (YAML `0`): the apiserver takes it as a double.
        alias("live", "1", Some(json!({"2": 0}))),
        alias("live", "1", Some(json!({"2": 0.999}))),
        alias("live", "7", Some(json!({"12": 0.5}))),
        alias("live", "1", Some(json!({}))),
    ] {
        let errs = errors(&object, None);
        assert!(errs.is_empty(), "{object}: {errs:#?}");
        serde_json::from_value::<lmi_crds::FunctionAlias>(object).expect("deserializes");
    }
}

#[test]
fn refused_aliases() {
    let cases = [
        (alias(&"a".repeat(129), "1", None), "spec.name: Too long"),
        (alias("", "1", None), "should be at least 1 chars long"),
        (
            alias("-live", "1", None),
            "an alias name has lower-case letters",
        ),
        (
            alias("live_2", "1", None),
            "an alias name has lower-case letters",
        ),
        (alias("42", "1", None), "an alias name is not all digits"),
        (
            alias("live", "01", None),
            "functionVersion is a published version number",
        ),
        (
            alias("live", "0", None),
            "functionVersion is a published version number",
        ),
        (
            alias("live", "$LATEST.PUBLISHED", None),
            "spec.functionVersion",
        ),
        (
            alias("live", "1", Some(json!({"0": 0.5}))),
            "additionalVersionWeights' keys are published version numbers",
        ),
        (
            alias("live", "1", Some(json!({"2": 1.5}))),
            "an additional version's weight is at least 0 and below 1",
        ),
        (
            alias("live", "3", Some(json!({"3": 0.2}))),
            "the additional version must differ from functionVersion",
        ),
    ];
    for (object, message) in &cases {
        assert!(
            refused_with(object, message),
            "{object} should be refused with {message:?}, got {:#?}",
            errors(object, None)
        );
    }
}

#[test]
fn the_object_name_is_the_function_and_the_alias() {
    let mut object = alias("live", "1", None);
    object["metadata"]["name"] = json!("other-live");
    assert!(refused_with(
        &object,
        "an alias's object name is <functionName>-<name>"
    ));
    assert_eq!(
        lmi_crds::FunctionAlias::object_name("hello", "live"),
        "hello-live"
    );
}

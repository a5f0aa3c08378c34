//! Every valid example passes the generated CRDs' schema and CEL rules; every manifest in
//! `examples/invalid/` is rejected with the message it names; every CEL rule has an example.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use support::{errors, examples_dir, load, load_dir};

#[test]
fn valid_examples_pass_and_deserialize() {
    let examples = load_dir(&examples_dir());
    assert!(
        examples.len() >= 4,
        "expected the valid examples in examples/"
    );
    for ex in &examples {
        let errs = errors(&ex.object, None);
        assert!(
            errs.is_empty(),
            "{} should be valid, got: {errs:#?}",
            ex.path.display()
        );
        let kind = ex.object["kind"].as_str().expect("kind");
        let parsed = match kind {
            "CapacityProvider" => {
                serde_json::from_value::<lmi_crds::CapacityProvider>(ex.object.clone()).map(|_| ())
            }
            "Function" => {
                serde_json::from_value::<lmi_crds::Function>(ex.object.clone()).map(|_| ())
            }
            "FunctionVersion" => {
                serde_json::from_value::<lmi_crds::FunctionVersion>(ex.object.clone()).map(|_| ())
            }
            "FunctionAlias" => {
                serde_json::from_value::<lmi_crds::FunctionAlias>(ex.object.clone()).map(|_| ())
            }
            other => panic!("unexpected kind {other} in {}", ex.path.display()),
        };
        parsed.unwrap_or_else(|e| panic!("{} does not deserialize: {e}", ex.path.display()));
    }
}

#[test]
fn invalid_examples_are_rejected_with_their_message() {
    let examples = load_dir(&examples_dir().join("invalid"));
    assert!(
        examples.len() >= 40,
        "expected one invalid example per rule"
    );
    let mut failures = Vec::new();
    for ex in &examples {
        let expect = ex
            .expect
            .as_deref()
            .unwrap_or_else(|| panic!("{} lacks '# expect:'", ex.path.display()));
        let old = ex
            .update_of
            .as_ref()
            .map(|base| load(&examples_dir().join(base)).object);
        if let Some(old) = &old {
            assert!(
                errors(old, None).is_empty(),
                "base of {} must be valid",
                ex.path.display()
            );
        }
        let errs = errors(&ex.object, old.as_ref());
        if std::env::var_os("LMI_SHOW_ERRORS").is_some() {
            eprintln!("{}:\n  {}", ex.path.display(), errs.join("\n  "));
        }
        if !errs.iter().any(|e| e.contains(expect)) {
            failures.push(format!(
                "{}: expected {expect:?}, got {errs:#?}",
                ex.path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_cel_rule_has_an_invalid_example() {
    let expectations: Vec<String> = load_dir(&examples_dir().join("invalid"))
        .into_iter()
        .filter_map(|e| e.expect)
        .collect();
    let mut messages = Vec::new();
    for crd in lmi_crds::crdgen::all() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema as JSON");
        collect_messages(&schema, &mut messages);
    }
    assert!(
        messages.len() >= 20,
        "expected the CEL rules in the CRDs, found {}",
        messages.len()
    );
    let uncovered: Vec<&String> = messages
        .iter()
        .filter(|m| !expectations.iter().any(|x| m.contains(x.as_str())))
        .collect();
    assert!(
        uncovered.is_empty(),
        "CEL rules without an invalid example: {uncovered:#?}"
    );
}

fn collect_messages(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                if k == "x-kubernetes-validations" {
                    for rule in child.as_array().into_iter().flatten() {
                        if let Some(m) = rule["message"].as_str() {
                            out.push(m.to_string());
                        }
                    }
                } else {
                    collect_messages(child, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_messages(i, out)),
        _ => {}
    }
}

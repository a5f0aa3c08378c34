//! The admission policies' CEL agrees with the Rust rules it mirrors: each case is evaluated by
//! the CEL interpreter (as the apiserver would, `authorizer` aside) and by the Rust function.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use kube_cel::{AdmissionRequest, VapEvaluator, VapExpression};
use lmi_crds::admission;
use lmi_crds::namespace_selector::{self, NamespaceSelector};
use serde_json::{Value, json};

fn provider(name: &str, selector: Option<Value>) -> Value {
    let mut spec = json!({"provisioning": {"mode": "Static", "nodeSelector": {"a": "b"}}});
    if let Some(selector) = selector {
        spec["namespaceSelector"] = selector;
    }
    json!({"apiVersion": "lmi.dev/v1alpha1", "kind": "CapacityProvider", "metadata": {"name": name}, "spec": spec})
}

fn function(provider: &str) -> Value {
    json!({"apiVersion": "lmi.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "f", "namespace": "team"},
        "spec": {"capacityProviderConfig": {"capacityProviderName": provider}, "code": {"imageUri": "i"}}})
}

fn version(provider: &str) -> Value {
    json!({"apiVersion": "lmi.dev/v1alpha1", "kind": "FunctionVersion",
        "metadata": {"name": "f-v1", "namespace": "team"},
        "spec": {"functionName": "f", "version": 1,
            "configuration": {"capacityProviderConfig": {"capacityProviderName": provider}, "code": {"imageUri": "i"}}}})
}

fn namespace(labels: &[(&str, &str)]) -> Value {
    let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    if !labels.is_empty() {
        let map: BTreeMap<_, _> = labels.iter().copied().collect();
        ns["metadata"]["labels"] = json!(map);
    }
    ns
}

/// `Ok(())` when admitted, `Err(message)` when refused.
fn admit(object: Value, params: Value, ns: Value) -> Result<(), String> {
    let evaluator = VapEvaluator::builder()
        .object(object)
        .params(params)
        .namespace_object(ns)
        .request(AdmissionRequest {
            operation: "CREATE".into(),
            namespace: "team".into(),
            ..Default::default()
        })
        .build();
    let results = evaluator.evaluate(&[VapExpression {
        expression: admission::pass_capacity_provider_expression(),
        message: None,
        message_expression: Some(admission::PASS_CAPACITY_PROVIDER_MESSAGE.into()),
    }]);
    let result = &results[0];
    if result.passed {
        Ok(())
    } else {
        Err(result.message.clone().unwrap_or_default())
    }
}

fn selectors() -> Vec<Value> {
    vec![
        json!({}),
        json!({"matchLabels": {"team": "a"}}),
        json!({"matchLabels": {"team": "a", "tier": "prod"}}),
        json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}),
        json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}),
        json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]}),
        json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}),
        json!({"matchLabels": {"tier": "prod"}, "matchExpressions": [{"key": "team", "operator": "In", "values": ["b"]}]}),
    ]
}

fn namespaces() -> Vec<Vec<(&'static str, &'static str)>> {
    vec![
        vec![],
        vec![("team", "a")],
        vec![("team", "b"), ("tier", "prod")],
        vec![("team", "a"), ("tier", "prod")],
        vec![("other", "x")],
    ]
}

#[test]
fn the_policy_agrees_with_the_rust_rule() {
    let mut checked = 0;
    for selector in selectors() {
        let parsed: NamespaceSelector = serde_json::from_value(selector.clone()).unwrap();
        for labels in namespaces() {
            let rust = namespace_selector::allows(
                Some(&parsed),
                &labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            for object in [function("gpu"), version("gpu")] {
                let cel = admit(
                    object,
                    provider("gpu", Some(selector.clone())),
                    namespace(&labels),
                );
                assert_eq!(
                    cel.is_ok(),
                    rust,
                    "selector {selector}, labels {labels:?}: {cel:?}"
                );
                if let Err(message) = cel {
                    assert_eq!(
                        message,
                        namespace_selector::not_allowed_message("gpu", "team")
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 80);
}

#[test]
fn only_the_named_provider_can_refuse() {
    let strict = provider("strict", Some(json!({"matchLabels": {"team": "a"}})));
    assert!(admit(function("other"), strict.clone(), namespace(&[])).is_ok());
    assert!(admit(function("strict"), strict, namespace(&[])).is_err());
}

#[test]
fn a_provider_without_a_selector_allows_every_namespace() {
    assert!(admit(function("open"), provider("open", None), namespace(&[])).is_ok());
}

#[test]
fn updates_that_keep_the_spec_are_not_checked_again() {
    let check = |operation: &str, old: Option<Value>, new: Value| {
        let mut builder = VapEvaluator::builder()
            .object(new)
            .request(AdmissionRequest {
                operation: operation.into(),
                ..Default::default()
            });
        if let Some(old) = old {
            builder = builder.old_object(old);
        }
        let results = builder.build().evaluate(&[VapExpression {
            expression: admission::SPEC_CHANGED.into(),
            message: None,
            message_expression: None,
        }]);
        results[0].passed
    };
    assert!(check("CREATE", None, function("a")));
    assert!(check("UPDATE", Some(function("a")), function("b")));
    let mut relabelled = function("a");
    relabelled["metadata"]["labels"] = json!({"x": "y"});
    assert!(!check("UPDATE", Some(function("a")), relabelled));
}

#[test]
fn the_service_account_check_asks_the_authorizer_only_when_one_is_named() {
    let evaluate = |object: Value| {
        let evaluator = VapEvaluator::builder()
            .object(object)
            .request(AdmissionRequest {
                operation: "CREATE".into(),
                namespace: "team".into(),
                ..Default::default()
            })
            .build();
        evaluator.evaluate(&[VapExpression {
            expression: admission::pass_service_account_expression(),
            message: None,
            message_expression: None,
        }])[0]
            .passed
    };
    assert!(evaluate(function("gpu")));
    assert!(evaluate(version("gpu")));
    // Named: the interpreter has no `authorizer` (only the apiserver does), so the expression
    // reaches it and fails; e2e/tests/pass_service_account.rs checks the real answer.
    let mut named = function("gpu");
    named["spec"]["serviceAccountName"] = json!("reader");
    assert!(!evaluate(named));
    let mut named = version("gpu");
    named["spec"]["configuration"]["serviceAccountName"] = json!("reader");
    assert!(!evaluate(named));
}

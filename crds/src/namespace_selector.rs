//! Which namespaces may place functions on a capacity provider: Lambda's
//! `lambda:PassCapacityProvider`, answered by a namespace label selector.
//!
//! The same rule runs in three places, so it is written once here and mirrored in CEL:
//! the admission policy (`crate::admission`), the function controller (a condition) and the
//! capacity planner (no EEs for a refused version).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A label selector over namespaces, shaped like Kubernetes' `metav1.LabelSelector` so that users
/// write what they know. Bounded (unlike the upstream type) so that the apiserver can cost the
/// CEL rules that read it. An empty selector selects every namespace, as in Kubernetes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Labels the namespace must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub match_expressions: Vec<NamespaceSelectorRequirement>,
}

/// One requirement on a namespace label.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.operator == 'Exists' || self.operator == 'DoesNotExist') ? size(self.values) == 0 : size(self.values) > 0")
    .message("namespaceSelector.matchExpressions: In and NotIn need values, Exists and DoesNotExist take none"))]
pub struct NamespaceSelectorRequirement {
    /// The label key.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: SelectorOperator,
    /// The values for In and NotIn; empty for Exists and DoesNotExist.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub values: Vec<String>,
}

/// The operators of a label selector requirement.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl NamespaceSelector {
    /// Whether a namespace with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl NamespaceSelectorRequirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let in_values = value.is_some_and(|v| self.values.contains(v));
        match self.operator {
            SelectorOperator::In => in_values,
            SelectorOperator::NotIn => !in_values,
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

/// Whether capacity provider `selector` admits functions of a namespace with `labels`; no
/// selector admits every namespace.
pub fn allows(selector: Option<&NamespaceSelector>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_none_or(|s| s.matches(labels))
}

/// The refusal, worded the same at admission, in conditions and in version states, so that a
/// user who searches for it finds every place.
pub fn not_allowed_message(capacity_provider: &str, namespace: &str) -> String {
    format!(
        "capacity provider {capacity_provider} does not allow functions in namespace {namespace} (see its spec.namespaceSelector)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn requirement(key: &str, operator: SelectorOperator, values: &[&str]) -> NamespaceSelector {
        NamespaceSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![NamespaceSelectorRequirement {
                key: key.into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn no_selector_and_the_empty_selector_allow_every_namespace() {
        assert!(allows(None, &labels(&[])));
        assert!(allows(Some(&NamespaceSelector::default()), &labels(&[])));
    }

    #[test]
    fn match_labels_need_every_label_with_its_value() {
        let s = NamespaceSelector {
            match_labels: labels(&[("team", "a"), ("tier", "prod")]),
            match_expressions: Vec::new(),
        };
        assert!(s.matches(&labels(&[("team", "a"), ("tier", "prod"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("team", "a")])));
        assert!(!s.matches(&labels(&[("team", "b"), ("tier", "prod")])));
        assert!(!s.matches(&labels(&[])));
    }

    #[test]
    fn expressions_follow_kubernetes_semantics() {
        use SelectorOperator::*;
        let team_a = labels(&[("team", "a")]);
        let unlabelled = labels(&[]);
        assert!(requirement("team", In, &["a", "b"]).matches(&team_a));
        assert!(!requirement("team", In, &["b"]).matches(&team_a));
        assert!(!requirement("team", In, &["a"]).matches(&unlabelled));
        assert!(!requirement("team", NotIn, &["a"]).matches(&team_a));
        // NotIn also selects namespaces without the label, as in Kubernetes.
        assert!(requirement("team", NotIn, &["a"]).matches(&unlabelled));
        assert!(requirement("team", Exists, &[]).matches(&team_a));
        assert!(!requirement("team", Exists, &[]).matches(&unlabelled));
        assert!(requirement("team", DoesNotExist, &[]).matches(&unlabelled));
        assert!(!requirement("team", DoesNotExist, &[]).matches(&team_a));
    }

    #[test]
    fn the_message_names_the_provider_and_the_namespace() {
        let m = not_allowed_message("gpu", "team-b");
        assert!(m.contains("capacity provider gpu") && m.contains("namespace team-b"));
    }
}

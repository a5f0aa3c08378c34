//! `FunctionAlias`: a name for one published version of a function, optionally sending a share of
//! invocations to a second version (Lambda's alias with a routing config).
//!
//! Naming. Lambda's alias names are unique per function; Kubernetes object names are unique per
//! namespace and kind. So the alias name is `spec.name`, and the object's name must be
//! `<functionName>-<name>` (a CEL rule): the apiserver then refuses a second alias of the same
//! name for the same function, and `live` can exist for every function of a namespace. Since the
//! alias name becomes part of an object name it keeps to what both allow: lower-case letters,
//! digits and '-' (Lambda also allows upper case and '_'), not all digits (that is a version), at
//! most 128 characters (Lambda's limit; a function name has at most 64, so the object name stays
//! well under Kubernetes' 253).

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// An alias of a function.
#[derive(CustomResource, kube::KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lmi.dev",
    version = "v1alpha1",
    kind = "FunctionAlias",
    namespaced,
    shortname = "fa",
    category = "lmi",
    doc = "A named pointer to a published version of a Function, optionally splitting invocations with a second version",
    printcolumn(name = "Function", type_ = "string", json_path = ".spec.functionName"),
    printcolumn(name = "Alias", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.functionVersion"),
    printcolumn(
        name = "Additional",
        type_ = "string",
        json_path = ".spec.routingConfig.additionalVersionWeights"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name == self.spec.functionName + '-' + self.spec.name")
        .message("an alias's object name is <functionName>-<name>"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.routingConfig) || !(self.functionVersion in self.routingConfig.additionalVersionWeights)")
        .message("the additional version must differ from functionVersion"),
)]
pub struct FunctionAliasSpec {
    /// The alias name (Lambda's `Name`), used as the qualifier: `my-function:live`.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(
        validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
            .message("an alias name has lower-case letters, digits and '-', and starts and ends with a letter or digit"),
        validation = Rule::new("!self.matches('^[0-9]+$')")
            .message("an alias name is not all digits (that is a version number)"),
    )]
    pub name: String,
    /// The Function (same namespace) this is an alias of.
    #[schemars(length(min = 1, max = 64))]
    pub function_name: String,
    /// The version the alias points to, as a string like Lambda's (`"3"`). `$LATEST` is not
    /// allowed: functions on managed instances run published versions only.
    #[schemars(length(min = 1, max = 10))]
    #[x_kube(validation = Rule::new("self.matches('^[1-9][0-9]*$')")
        .message("functionVersion is a published version number ($LATEST cannot be aliased on managed instances)"))]
    pub function_version: String,
    /// A second version that takes a share of the invocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_config: Option<AliasRoutingConfig>,
    /// Free text, at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
}

/// Lambda's `AliasRoutingConfiguration`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AliasRoutingConfig {
    /// At most one other version, with the share of invocations it takes, in [0, 1): e.g.
    /// `{"4": 0.1}` sends 10% to version 4 and the rest to `functionVersion`.
    #[schemars(extend("maxProperties" = 1))]
    #[x_kube(
        validation = Rule::new("self.all(k, k.matches('^[1-9][0-9]*$'))")
            .message("additionalVersionWeights' keys are published version numbers"),
        validation = Rule::new("self.all(k, self[k] >= 0.0 && self[k] < 1.0)")
            .message("an additional version's weight is at least 0 and below 1"),
    )]
    pub additional_version_weights: BTreeMap<String, f64>,
}

impl FunctionAlias {
    /// The Kubernetes name of alias `alias` of function `function`: `<function>-<alias>`.
    pub fn object_name(function: &str, alias: &str) -> String {
        format!("{function}-{alias}")
    }
}

impl FunctionAliasSpec {
    /// The version the alias points to and, when it has one, the additional version with its
    /// weight. None when a version is not a number (the CRD's rules refuse that).
    pub fn versions(&self) -> Option<(u32, Option<(u32, f64)>)> {
        let main = self.function_version.parse().ok()?;
        let additional = match &self.routing_config {
            Some(r) => match r.additional_version_weights.iter().next() {
                Some((v, w)) => Some((v.parse().ok()?, *w)),
                None => None,
            },
            None => None,
        };
        Some((main, additional))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(version: &str, weights: &[(&str, f64)]) -> FunctionAliasSpec {
        FunctionAliasSpec {
            name: "live".into(),
            function_name: "hello".into(),
            function_version: version.into(),
            routing_config: (!weights.is_empty()).then(|| AliasRoutingConfig {
                additional_version_weights: weights
                    .iter()
                    .map(|(k, w)| (k.to_string(), *w))
                    .collect(),
            }),
            description: None,
        }
    }

    #[test]
    fn versions_are_parsed() {
        assert_eq!(spec("3", &[]).versions(), Some((3, None)));
        assert_eq!(
            spec("3", &[("4", 0.25)]).versions(),
            Some((3, Some((4, 0.25))))
        );
        assert_eq!(spec("$LATEST", &[]).versions(), None);
        assert_eq!(spec("3", &[("x", 0.5)]).versions(), None);
        assert_eq!(FunctionAlias::object_name("hello", "live"), "hello-live");
    }
}

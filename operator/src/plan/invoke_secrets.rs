//! The Secrets behind the sidecar's tokens (see `lmi_crds::invoke_token`): the cluster's invoke
//! key, and one token Secret per function. Pure: the key's bytes come from the caller.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use lmi_crds::Function;
use lmi_crds::common::{FUNCTION_LABEL, instance_label};
use lmi_crds::invoke_token::{
    FUNCTION_TOKEN_FIELD, INVOKE_KEY_FIELD, INVOKE_KEY_SECRET, InvokeKey, function_secret_name,
};

use lmi_crds::common::{MANAGED_BY, MANAGED_BY_LABEL};

/// The invoke key Secret of the system namespace `namespace`, holding `key`. Immutable: a key is
/// replaced by deleting the Secret (see docs/security.md), never edited in place by mistake.
pub fn key_secret(namespace: &str, key: &[u8]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(INVOKE_KEY_SECRET.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY.to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        immutable: Some(true),
        data: Some(BTreeMap::from([(
            INVOKE_KEY_FIELD.to_string(),
            ByteString(key.to_vec()),
        )])),
        ..Default::default()
    }
}

/// The Secret holding `function`'s invoke token, in its namespace and owned by it (deleted with
/// it), labelled with its operator instance like every object made for it. None for a function
/// without a namespace or uid (not one read from the API).
pub fn function_secret(function: &Function, key: &InvokeKey) -> Option<Secret> {
    let namespace = function.namespace()?;
    let owner = function.controller_owner_ref(&())?;
    let name = function.name_any();
    let mut labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (FUNCTION_LABEL.to_string(), name.clone()),
    ]);
    labels.extend(instance_label(function.metadata.labels.as_ref()));
    let token = key.function_token(&namespace, &name);
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(function_secret_name(&name)),
            namespace: Some(namespace),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            FUNCTION_TOKEN_FIELD.to_string(),
            ByteString(token.into_bytes()),
        )])),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmi_crds::common::INSTANCE_LABEL;

    fn function() -> Function {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lmi.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": "hello", "namespace": "team", "uid": "uid-f",
                         "labels": {"lmi.dev/instance": "e2e"}},
            "spec": {
                "capacityProviderConfig": {"capacityProviderName": "local", "executionEnvironmentMemoryGiBPerVCpu": 2},
                "code": {"imageUri": "img"},
                "memorySize": 2048
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_function_secret_holds_its_token_and_belongs_to_it() {
        let key = InvokeKey::new(vec![3u8; 32]).unwrap();
        let s = function_secret(&function(), &key).unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("lmi-invoke-hello"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("team"));
        let data = s.data.as_ref().unwrap();
        assert_eq!(
            data[FUNCTION_TOKEN_FIELD].0,
            key.function_token("team", "hello").into_bytes()
        );
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Function", "hello", "uid-f")
        );
        assert_eq!(owner.controller, Some(true));
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[INSTANCE_LABEL], "e2e");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);

        let mut unsaved = function();
        unsaved.metadata.uid = None;
        assert!(function_secret(&unsaved, &key).is_none());
    }

    #[test]
    fn the_key_secret_is_immutable_and_holds_the_bytes() {
        let s = key_secret("lmi-system", &[9u8; 32]);
        assert_eq!(s.metadata.name.as_deref(), Some(INVOKE_KEY_SECRET));
        assert_eq!(s.metadata.namespace.as_deref(), Some("lmi-system"));
        assert_eq!(s.immutable, Some(true));
        assert_eq!(s.data.unwrap()[INVOKE_KEY_FIELD].0, vec![9u8; 32]);
    }
}

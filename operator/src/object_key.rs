//! The `namespace/name` key by which the planner, the autoscaler and the status writer name a
//! version (and its EEs name their version). A module of its own so that every layer can use it
//! without importing the layer that happens to use it most.

use kube::ResourceExt;

/// `namespace/name` of an object.
pub fn key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

/// The key of `object` (see [`key`]).
pub fn key_of<K: ResourceExt>(object: &K) -> String {
    key(object.namespace().as_deref(), &object.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_namespace_slash_name_and_cluster_scoped_objects_have_an_empty_namespace() {
        assert_eq!(key(Some("team"), "hello-v1"), "team/hello-v1");
        assert_eq!(key(None, "cp"), "/cp");
    }
}

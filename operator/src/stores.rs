//! In-memory views of the cluster that every reconcile reads: one reflector store per kind, kept
//! current by the watches `controllers::run` starts. Apart from the rest of the shared context
//! (client, event recorder, settings) so that the observer, which only reads, depends on the stores
//! alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::runtime::reflector::{ObjectRef, Store};
use lmi_crds::{CapacityProvider, Function, FunctionVersion};

use crate::karpenter::{EC2NodeClass, NodeClaim};

/// In-memory views of the cluster, kept current by one watch per kind.
#[derive(Clone)]
pub struct Stores {
    pub functions: Store<Function>,
    /// The function controller's view of the providers (the provider controller has its own).
    pub capacity_providers: Store<CapacityProvider>,
    pub versions: Store<FunctionVersion>,
    /// EE pods only (label `app.kubernetes.io/managed-by=lmi-operator`).
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    /// Their labels decide which capacity providers a namespace's functions may use.
    pub namespaces: Store<Namespace>,
    pub claims: Store<NodeClaim>,
    /// The operator's EC2NodeClasses; None when NodeClaims name another provider's node class
    /// (`--node-class`), whose kind the operator neither makes nor watches.
    pub node_classes: Option<Store<EC2NodeClass>>,
}

impl Stores {
    /// Waits until the stores of the core kinds hold their first full list, so that a plan made
    /// after a restart sees every EE that already exists. Karpenter's kinds are waited for
    /// separately ([`Stores::karpenter_ready`]): a cluster without Karpenter (Static providers
    /// only) never fills them.
    pub async fn ready(&self) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
        self.functions.wait_until_ready().await?;
        self.capacity_providers.wait_until_ready().await?;
        self.versions.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        self.namespaces.wait_until_ready().await?;
        self.nodes.wait_until_ready().await
    }

    /// [`Stores::ready`] within 30 s, as a reconcile needs it: plan only on complete caches, and a
    /// watch that cannot list is an error to retry, not a hang.
    pub async fn ready_for_reconcile(&self) -> crate::error::Result<()> {
        match tokio::time::timeout(std::time::Duration::from_secs(30), self.ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(crate::error::Error::WatchNotReady(format!(
                "a watch ended: {e}"
            ))),
            Err(_) => Err(crate::error::Error::Config(
                "the watch caches are not filled after 30 s".to_string(),
            )),
        }
    }

    /// Karpenter's NodeClaims (and EC2NodeClasses, when watched) are listed (their CRDs are
    /// installed).
    pub async fn karpenter_ready(
        &self,
    ) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
        self.claims.wait_until_ready().await?;
        match &self.node_classes {
            Some(classes) => classes.wait_until_ready().await,
            None => Ok(()),
        }
    }
}

impl Stores {
    /// The labels of namespace `name` (none when the store does not hold it: a function of an
    /// unknown namespace is then judged as unlabelled, which fails closed).
    pub fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&ObjectRef::new(name))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default()
    }
}

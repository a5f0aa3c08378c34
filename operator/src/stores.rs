//! In-memory views of the cluster that every reconcile reads: one reflector store per kind, kept
//! current by the watches `controllers::run` starts. Apart from the rest of the shared context
//! (client, event recorder, settings) so that the observer, which only reads, depends on the stores
//! alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::runtime::reflector::store::WriterDropped;
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

/// `store.wait_until_ready()`, looked at again every 100 ms. kube's readiness signal keeps one
/// waker: of several tasks waiting at once (both controllers' reconciles, the autoscaler, the
/// controllers themselves), only the last to look is woken, and the others wait until something
/// else wakes them. A function created as the operator started waited 30 s that way, until its
/// reconcile's timeout woke it. Once the store is ready, this returns at once.
async fn until_ready<K>(store: &Store<K>) -> Result<(), WriterDropped>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(ready) = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            store.wait_until_ready(),
        )
        .await
        {
            return ready;
        }
    }
}

impl Stores {
    /// Waits until the stores of the core kinds hold their first full list, so that a plan made
    /// after a restart sees every EE that already exists. Karpenter's kinds are waited for
    /// separately ([`Stores::karpenter_ready`]): a cluster without Karpenter (Static providers
    /// only) never fills them.
    pub async fn ready(&self) -> Result<(), WriterDropped> {
        until_ready(&self.functions).await?;
        until_ready(&self.capacity_providers).await?;
        until_ready(&self.versions).await?;
        until_ready(&self.pods).await?;
        until_ready(&self.namespaces).await?;
        until_ready(&self.nodes).await
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
    pub async fn karpenter_ready(&self) -> Result<(), WriterDropped> {
        until_ready(&self.claims).await?;
        match &self.node_classes {
            Some(classes) => until_ready(classes).await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store;
    use kube::runtime::watcher;

    #[tokio::test]
    async fn every_task_waiting_for_a_store_learns_it_is_ready() {
        let (reader, mut writer) = store::<Namespace>();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let reader = reader.clone();
                tokio::spawn(async move { until_ready(&reader).await })
            })
            .collect();
        // Let each task look (and wait) before the store is ready.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
                .await
                .expect("woken within 2 s")
                .expect("joined")
                .expect("ready");
        }
    }
}

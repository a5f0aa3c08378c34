//! Triggers that coalesce. A controller takes its triggers only between the steps of its
//! reconciles, so while it plans (a provider with thousands of EEs) the watches run ahead of it.
//! Queued as whole objects, as kube's `watches_stream` takes them, that backlog grew with every
//! event: at 10,000 EEs, about 14,000 pod and 16,000 node copies waited at once (found with
//! heaptrack), and a new version's trigger waited behind all of them. Here each object to
//! reconcile is queued once, however many events name it before the controller takes it, and
//! only for an update that changes something ([`Seen`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::Stream;
use kube::Resource;
use serde::Serialize;
use tokio::sync::Notify;

/// The objects waiting for a reconcile, in the order they were first named.
pub struct TriggerSet<R> {
    waiting: Mutex<Waiting<R>>,
    /// Wakes the controller's stream when something is queued.
    queued: Notify,
    /// Set (and the watches' tasks woken) once the controller dropped its stream.
    closed: AtomicBool,
    gone: Notify,
}

struct Waiting<R> {
    order: VecDeque<R>,
    members: HashSet<R>,
}

impl<R> TriggerSet<R>
where
    R: Hash + Eq + Clone + Send + 'static,
{
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            waiting: Mutex::new(Waiting {
                order: VecDeque::new(),
                members: HashSet::new(),
            }),
            queued: Notify::new(),
            closed: AtomicBool::new(false),
            gone: Notify::new(),
        })
    }

    /// Queues `object` unless it is queued already.
    pub fn push(&self, object: R) {
        let Ok(mut waiting) = self.waiting.lock() else {
            return;
        };
        if waiting.members.insert(object.clone()) {
            waiting.order.push_back(object);
            // A permit is kept when the stream is not waiting yet, so no push is missed.
            self.queued.notify_one();
        }
    }

    fn pop(&self) -> Option<R> {
        let mut waiting = self.waiting.lock().ok()?;
        let object = waiting.order.pop_front()?;
        waiting.members.remove(&object);
        Some(object)
    }

    /// Whether the controller dropped its stream.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once the controller dropped its stream.
    pub async fn closed(&self) {
        loop {
            // Created before the check: `notify_waiters` reaches a future from its creation on.
            let gone = self.gone.notified();
            if self.is_closed() {
                return;
            }
            gone.await;
        }
    }

    /// The queued objects, for the controller (`Controller::reconcile_on`); one stream per set.
    pub fn stream(self: &Arc<Self>) -> impl Stream<Item = R> + Send + 'static {
        futures::stream::unfold(Taker(self.clone()), |taker| async move {
            loop {
                if let Some(object) = taker.0.pop() {
                    return Some((object, taker));
                }
                taker.0.queued.notified().await;
            }
        })
    }
}

/// The stream's hold on its set: dropping it (the controller stopped) closes the set.
struct Taker<R>(Arc<TriggerSet<R>>);

impl<R> Drop for Taker<R> {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.gone.notify_waiters();
    }
}

/// What each watched object last looked like, as a hash of it with its `resourceVersion` left
/// out, to tell the updates that change something the operator keeps (see [`crate::trim`]) from
/// those that do not: a node's status is rewritten by every heartbeat, and each rewrite of 192
/// nodes planned a provider of 850 EEs again (most of the operator's CPU at 10,000 EEs).
#[derive(Default)]
pub struct Seen {
    hashes: HashMap<String, u64>,
}

impl Seen {
    /// Whether `object` differs from the last time it was seen, remembering it. `present` is
    /// whether the store holds it now: one it does not (deleted, or listed and not yet stored) is
    /// always a change, and forgotten.
    pub fn changed<K>(&mut self, object: &K, present: bool) -> bool
    where
        K: Resource + Serialize + Clone,
    {
        let meta = object.meta();
        let key = meta.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            )
        });
        if !present {
            self.hashes.remove(&key);
            return true;
        }
        let mut unversioned = object.clone();
        unversioned.meta_mut().resource_version = None;
        let Ok(bytes) = serde_json::to_vec(&unversioned) else {
            return true;
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        let hash = hasher.finish();
        self.hashes.insert(key, hash) != Some(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn many_events_for_one_object_are_one_trigger_in_first_named_order() {
        let set = TriggerSet::new();
        for name in ["a", "b", "a", "a", "c", "b"] {
            set.push(name.to_string());
        }
        let mut stream = Box::pin(set.stream());
        let mut taken = Vec::new();
        for _ in 0..3 {
            taken.push(stream.next().await.expect("queued"));
        }
        assert_eq!(taken, ["a", "b", "c"]);
        // Taken, an object may be queued again.
        set.push("a".to_string());
        assert_eq!(stream.next().await.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn the_stream_waits_for_a_push() {
        let set = TriggerSet::new();
        let mut stream = Box::pin(set.stream());
        let pusher = set.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            pusher.push(7);
        });
        assert_eq!(stream.next().await, Some(7));
    }

    #[test]
    fn only_a_change_beyond_the_resource_version_counts() {
        let mut node = k8s_openapi::api::core::v1::Node::default();
        node.metadata.uid = Some("u".to_string());
        node.metadata.resource_version = Some("1".to_string());
        let mut seen = Seen::default();
        assert!(seen.changed(&node, true), "first seen");
        node.metadata.resource_version = Some("2".to_string());
        assert!(!seen.changed(&node, true), "only the version moved");
        node.metadata.labels = Some([("k".to_string(), "v".to_string())].into());
        assert!(seen.changed(&node, true), "a label changed");
        assert!(seen.changed(&node, false), "gone from the store: deleted");
        assert!(seen.changed(&node, true), "forgotten once deleted");
    }

    #[tokio::test]
    async fn dropping_the_stream_closes_the_set() {
        let set: Arc<TriggerSet<u8>> = TriggerSet::new();
        let stream = set.stream();
        let waiter = {
            let set = set.clone();
            tokio::spawn(async move { set.closed().await })
        };
        assert!(!set.is_closed());
        drop(stream);
        assert!(set.is_closed());
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }
}

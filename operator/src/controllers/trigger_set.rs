//! Triggers that coalesce. A controller takes its triggers only between the steps of its
//! reconciles, so while it plans (a provider with thousands of EEs) the watches run ahead of it.
//! Queued as whole objects, as kube's `watches_stream` takes them, that backlog grew with every
//! event: at 10,000 EEs, about 14,000 pod and 16,000 node copies waited at once (found with
//! heaptrack), and a new version's trigger waited behind all of them. Here each object to
//! reconcile is queued once, however many events name it before the controller takes it.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::Stream;
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

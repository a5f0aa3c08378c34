//! A small cache whose entries expire, bounded in size: the router's memory of TokenReview and
//! SubjectAccessReview answers, so the apiserver sees a handful of requests, not one per
//! invocation. Time is passed in, so the rules are tested without a clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// The value stored for `key` less than the TTL before `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(v, _)| v.clone())
    }

    /// Stores `value` as of `now`. A full cache first drops what expired; if that frees nothing
    /// it starts over empty. Crude but bounded, and a refill costs one review per live caller.
    pub fn insert(&self, key: K, value: V, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < self.ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, now));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Locks chosen by a key's hash: a burst of misses of one key (1000 invocations a second when an
/// entry expires) waits for one review instead of asking the apiserver once each; misses of other
/// keys mostly take other locks.
pub struct Stripes(Vec<tokio::sync::Mutex<()>>);

impl Stripes {
    pub fn new(count: usize) -> Self {
        Self(
            (0..count.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }

    pub async fn lock<K: Hash>(&self, key: &K) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        // DefaultHasher's default keys are fixed: one key always takes one lock.
        let hash =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .hash_one(key);
        self.0[(hash % self.0.len() as u64) as usize].lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = TtlCache::new(Duration::from_secs(10), 4);
        let t0 = Instant::now();
        cache.insert("a", 1, t0);
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(9)), Some(1));
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(10)), None);
    }

    #[test]
    fn the_size_stays_bounded() {
        let cache = TtlCache::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        for i in 0..3 {
            cache.insert(i, i, t0);
        }
        // Full of live entries: the cache starts over rather than grow.
        cache.insert(3, 3, t0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&3, t0), Some(3));
        // Expired entries make room first.
        cache.insert(4, 4, t0);
        cache.insert(5, 5, t0 + Duration::from_secs(11));
        assert_eq!(cache.len(), 3);
        cache.insert(6, 6, t0 + Duration::from_secs(11));
        assert_eq!(cache.len(), 2, "3 and 4 expired");
    }
}

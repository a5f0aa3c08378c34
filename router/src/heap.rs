//! Giving freed memory back to the system once a burst of load is over.
//!
//! glibc's malloc returns memory to the system only from the top of its heap. After a flood of
//! connections or requests, the state they freed lies below a few small allocations made while it
//! lasted (timers, the runtime's queues, a catalog reload), so it stays resident: 10,000
//! connections left the router at 62 MiB for 147 KiB in use (docs/benchmarks.md). No malloc
//! setting changes that (`MALLOC_TRIM_THRESHOLD_`, `MALLOC_ARENA_MAX` and a lower mmap threshold
//! were measured); `malloc_trim` does, by releasing the free pages inside the heap too.
//!
//! A trim costs a walk of the heap's free lists and a page fault for each page used again, so it
//! runs once when the load (connections open and requests in progress, counted by the HTTP
//! servers through [`Load`]) has fallen to half its peak since the last trim, by at least
//! [`MIN_DROP`]: after each burst, and not over and over in a steady state.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The fall in load (connections and requests) that is worth a trim: 32 idle connections hold
/// about 0.4 MiB, 32 large payloads much more; smaller ups and downs are left alone.
pub const MIN_DROP: usize = 32;

/// How often the trim looks whether the load is still falling.
const SETTLE: Duration = Duration::from_millis(500);

// Process-wide, as the allocator is.
static OPEN: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static PENDING: AtomicBool = AtomicBool::new(false);
static FALLEN: Notify = Notify::const_new();

/// One unit of load (an open connection, a request in progress) while it lives.
pub struct Load(());

impl Load {
    pub fn enter() -> Load {
        let now = OPEN.fetch_add(1, Ordering::Relaxed) + 1;
        PEAK.fetch_max(now, Ordering::Relaxed);
        Load(())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let now = OPEN.fetch_sub(1, Ordering::Relaxed) - 1;
        // One wake-up per fall, not one per connection that closes.
        if fallen(PEAK.load(Ordering::Relaxed), now) && !PENDING.swap(true, Ordering::Relaxed) {
            FALLEN.notify_one();
        }
    }
}

/// Whether the load fell enough from `peak` to `now` to trim.
fn fallen(peak: usize, now: usize) -> bool {
    peak >= now + MIN_DROP && now <= peak / 2
}

/// Trim the heap after each fall of the load, for as long as the process runs (spawn it once).
pub async fn trim_after_bursts() {
    loop {
        FALLEN.notified().await;
        // Wait until the load stops falling (the rest of the burst closing, refused payloads
        // still being read), so that one trim gives back all of it: a trim halfway would reset
        // the peak, and the rest of the fall would then be too small for another.
        let mut last = OPEN.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep(SETTLE).await;
            let now = OPEN.load(Ordering::Relaxed);
            if now >= last {
                break;
            }
            last = now;
        }
        let started = Instant::now();
        let released = crate::glibc::malloc_trim();
        // The next trim waits for a new peak above what is left now.
        let left = OPEN.load(Ordering::Relaxed);
        PEAK.store(left, Ordering::Relaxed);
        PENDING.store(false, Ordering::Relaxed);
        tracing::debug!(
            released,
            left,
            micros = started.elapsed().as_micros() as u64,
            "freed heap memory given back after a burst"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_large_fall_trims() {
        // After a flood of connections that closed.
        assert!(fallen(4096, 0));
        assert!(fallen(4096, 2048));
        assert!(!fallen(4096, 2049));
        // Small ups and downs of a light load do not.
        assert!(!fallen(20, 0));
        assert!(!fallen(MIN_DROP - 1, 0));
        assert!(fallen(MIN_DROP, 0));
        assert!(!fallen(40, 10));
        // No load, no peak.
        assert!(!fallen(0, 0));
    }
}

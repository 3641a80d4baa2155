//! Memory comes back after large requests.
//!
//! A large review (up to the 3 MiB body limit) becomes a JSON document several times its size, copied into each
//! engine's input; a burst of them spreads that over the allocator's per-thread arenas. Once the burst is over the
//! memory is free but glibc keeps it, so the resident set would stay at the peak. The handlers report every large
//! request here ([`Reclaim::large`]); a background task ([`Reclaim::run`]) gives the free memory back to the
//! operating system ([`policyctl_memory::release_free_memory`]) once such requests are done: on the first tick with
//! none in flight, or after [`FORCE_AFTER_BYTES`] of them even under steady large traffic. Small requests never
//! trigger it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A request body at least this large counts as large.
pub const LARGE_REQUEST_BYTES: usize = 256 * 1024;

/// Release even while large requests are in flight once this many bytes of them finished since the last release.
pub const FORCE_AFTER_BYTES: u64 = 256 * 1024 * 1024;

/// How often the background task looks.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Tracks large requests and releases free memory after them.
#[derive(Debug, Default)]
pub struct Reclaim {
    in_flight: AtomicUsize,
    finished_bytes: AtomicU64,
    releases: AtomicU64,
}

/// A large request in flight; dropping it (when the request is done) counts its bytes.
#[derive(Debug)]
pub struct LargeRequest {
    reclaim: Arc<Reclaim>,
    bytes: u64,
}

impl Drop for LargeRequest {
    fn drop(&mut self) {
        self.reclaim
            .finished_bytes
            .fetch_add(self.bytes, Ordering::SeqCst);
        self.reclaim.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Reclaim {
    /// A new tracker.
    pub fn new() -> Arc<Reclaim> {
        Arc::new(Reclaim::default())
    }

    /// Note a request of `bytes`: a guard to hold until the request is done when it is large, else `None`.
    pub fn large(self: &Arc<Self>, bytes: usize) -> Option<LargeRequest> {
        if bytes < LARGE_REQUEST_BYTES {
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Some(LargeRequest {
            reclaim: self.clone(),
            bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
        })
    }

    /// Whether to release now; resets the count of finished bytes when it says yes.
    pub fn due(&self) -> bool {
        let finished = self.finished_bytes.load(Ordering::SeqCst);
        if finished == 0 {
            return false;
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 && finished < FORCE_AFTER_BYTES {
            return false;
        }
        self.finished_bytes.fetch_sub(finished, Ordering::SeqCst);
        true
    }

    /// How many times memory was released.
    pub fn releases(&self) -> u64 {
        self.releases.load(Ordering::SeqCst)
    }

    /// Look every `interval`, releasing free memory when [`due`](Self::due). Runs until aborted.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !self.due() {
                continue;
            }
            // It locks each arena in turn: off the runtime's worker threads.
            let released = tokio::task::spawn_blocking(policyctl_memory::release_free_memory)
                .await
                .unwrap_or(false);
            self.releases.fetch_add(1, Ordering::SeqCst);
            tracing::debug!(released, "gave free memory back after large requests");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_requests_never_make_a_release_due() {
        let reclaim = Reclaim::new();
        for _ in 0..1000 {
            assert!(reclaim.large(LARGE_REQUEST_BYTES - 1).is_none());
        }
        assert!(!reclaim.due());
    }

    #[test]
    fn a_release_is_due_once_large_requests_are_done_and_only_once() {
        let reclaim = Reclaim::new();
        let first = reclaim.large(LARGE_REQUEST_BYTES);
        let second = reclaim.large(3 * 1024 * 1024);
        assert!(!reclaim.due(), "nothing finished yet");
        drop(first);
        assert!(
            !reclaim.due(),
            "one still in flight, under the forcing bound"
        );
        drop(second);
        assert!(reclaim.due());
        assert!(!reclaim.due(), "already released for those");
    }

    #[test]
    fn steady_large_traffic_still_releases_after_enough_bytes() {
        let reclaim = Reclaim::new();
        let _held = reclaim.large(LARGE_REQUEST_BYTES);
        let per_request = 3 * 1024 * 1024;
        let needed = FORCE_AFTER_BYTES.div_ceil(per_request as u64);
        for _ in 0..needed - 1 {
            drop(reclaim.large(per_request));
        }
        assert!(!reclaim.due());
        drop(reclaim.large(per_request));
        assert!(reclaim.due());
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_releases_after_a_large_request() {
        let reclaim = Reclaim::new();
        let task = tokio::spawn(reclaim.clone().run(Duration::from_millis(100)));
        drop(reclaim.large(LARGE_REQUEST_BYTES));
        for _ in 0..50 {
            if reclaim.releases() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.abort();
        assert_eq!(reclaim.releases(), 1);
    }
}

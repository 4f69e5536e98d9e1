//! Per-variant counters that scale across threads, readable as a snapshot.
//!
//! A decision counts one request for its assigned variant on the hot path, so the counters must
//! not be one shared atomic that every core writes. Each [`VariantStats`] holds
//! [`shard_count`] cache-line-aligned shards (twice the cores, at most [`SHARDS`]: 192 bytes
//! each, so a 3-variant router's counters are 2.3 KiB on a 2-core machine instead of the 6 KiB
//! of 8 shards padded to 256 bytes); a thread always writes the shard picked for it on its
//! first use (round robin), so two threads write the same line only when there are more threads
//! than shards. Reading ([`VariantStats::snapshot`]) sums the shards.
//!
//! Counters are kept across config swaps for variants that still exist (keyed by router,
//! route and variant id in a [`StatsRegistry`]), like health.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::health::{FailureClass, Outcome};

/// The most shards per variant (see [`shard_count`]).
pub const SHARDS: usize = 8;
/// Upper bounds (inclusive, in milliseconds) of the latency histogram's buckets; a last bucket
/// holds everything slower.
pub const LATENCY_BUCKETS_MS: [u64; 15] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];

const CLASSES: usize = 5;

fn class_index(c: FailureClass) -> usize {
    match c {
        FailureClass::RateLimited => 0,
        FailureClass::ServerError => 1,
        FailureClass::Timeout => 2,
        FailureClass::SlowFirstToken => 3,
        FailureClass::ClientError => 4,
    }
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    requests: AtomicU64,
    served: AtomicU64,
    failovers: AtomicU64,
    failures: [AtomicU64; CLASSES],
    latency: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// The number of shards of this process, 0 until first computed: see [`shard_count`].
static SHARD_COUNT: AtomicUsize = AtomicUsize::new(0);

/// How many shards each variant's counters have in this process: twice the available
/// parallelism rounded up to a power of two, at most [`SHARDS`] (4 on a 2-core machine). More
/// shards than twice the cores that can run at once buy little contention and cost 192 bytes
/// each per variant. Computed once, without a lock (every thread computes the same value).
pub fn shard_count() -> usize {
    let known = SHARD_COUNT.load(Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    let cores = std::thread::available_parallelism().map_or(SHARDS, std::num::NonZeroUsize::get);
    let count = cores.saturating_mul(2).next_power_of_two().min(SHARDS);
    SHARD_COUNT.store(count, Ordering::Relaxed);
    count
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn shard_index() -> usize {
    SHARD.with(|s| {
        let i = s.get();
        if i != usize::MAX {
            return i;
        }
        let i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % shard_count();
        s.set(i);
        i
    })
}

/// Counters of one variant.
#[derive(Debug)]
pub struct VariantStats {
    /// [`shard_count`] shards.
    shards: Box<[Shard]>,
}

impl Default for VariantStats {
    fn default() -> Self {
        VariantStats {
            shards: (0..shard_count()).map(|_| Shard::default()).collect(),
        }
    }
}

/// A point-in-time sum of a variant's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VariantStatsSnapshot {
    /// Decisions that assigned this variant.
    pub requests: u64,
    /// Requests this variant's models served successfully (whoever was assigned).
    pub served: u64,
    /// Requests assigned here that were finally served by another variant.
    pub failovers: u64,
    /// Failed attempts on this variant's models, by class.
    pub rate_limited: u64,
    /// HTTP 5xx.
    pub server_errors: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Slow first token.
    pub slow_first_token: u64,
    /// Client errors (4xx).
    pub client_errors: u64,
    /// Latency histogram of successful attempts: counts per bucket of [`LATENCY_BUCKETS_MS`],
    /// plus one last bucket for slower.
    pub latency_ms_buckets: Vec<u64>,
}

impl VariantStats {
    #[inline]
    fn shard(&self) -> &Shard {
        // shard_index() < shard_count() == shards.len(); the fallback is never taken.
        let i = shard_index();
        self.shards.get(i).unwrap_or(&self.shards[0])
    }

    /// Counts one decision assigning this variant. Hot path: one relaxed add on this thread's shard.
    #[inline]
    pub fn record_request(&self) {
        self.shard().requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one attempt's outcome on this variant's models.
    pub fn record_outcome(&self, outcome: Outcome, latency: Duration) {
        let shard = self.shard();
        match outcome {
            Outcome::Success => {
                shard.served.fetch_add(1, Ordering::Relaxed);
                let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
                let bucket = LATENCY_BUCKETS_MS
                    .iter()
                    .position(|&b| ms <= b)
                    .unwrap_or(LATENCY_BUCKETS_MS.len());
                shard.latency[bucket].fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failure(c) => {
                shard.failures[class_index(c)].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a request assigned here and finally served by another variant.
    pub fn record_failover(&self) {
        self.shard().failovers.fetch_add(1, Ordering::Relaxed);
    }

    /// Sums the shards.
    pub fn snapshot(&self) -> VariantStatsSnapshot {
        let sum = |f: &dyn Fn(&Shard) -> &AtomicU64| -> u64 {
            self.shards
                .iter()
                .map(|s| f(s).load(Ordering::Relaxed))
                .sum()
        };
        VariantStatsSnapshot {
            requests: sum(&|s| &s.requests),
            served: sum(&|s| &s.served),
            failovers: sum(&|s| &s.failovers),
            rate_limited: sum(&|s| &s.failures[0]),
            server_errors: sum(&|s| &s.failures[1]),
            timeouts: sum(&|s| &s.failures[2]),
            slow_first_token: sum(&|s| &s.failures[3]),
            client_errors: sum(&|s| &s.failures[4]),
            latency_ms_buckets: (0..=LATENCY_BUCKETS_MS.len())
                .map(|b| sum(&|s| &s.latency[b]))
                .collect(),
        }
    }
}

/// Every variant's [`VariantStats`], keyed by (router, route_id, variant_id), held weakly like
/// [`HealthRegistry`](crate::health::HealthRegistry) so counters survive config swaps.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    entries: Mutex<HashMap<VariantKey, Weak<VariantStats>>>,
}

/// (router, route_id, variant_id).
type VariantKey = (Box<str>, Box<str>, Box<str>);

impl StatsRegistry {
    /// The counters of one variant, created at zero if nobody holds them.
    pub fn variant(&self, router: &str, route: &str, variant: &str) -> Arc<VariantStats> {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let key: VariantKey = (router.into(), route.into(), variant.into());
        if let Some(s) = map.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        if map.len() >= 64 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let s = Arc::new(VariantStats::default());
        map.insert(key, Arc::downgrade(&s));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_across_threads() {
        let stats = Arc::new(VariantStats::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let stats = Arc::clone(&stats);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        stats.record_request();
                    }
                    stats.record_outcome(Outcome::Success, Duration::from_millis(7));
                    stats.record_outcome(
                        Outcome::Failure(FailureClass::Timeout),
                        Duration::from_secs(30),
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        let s = stats.snapshot();
        assert_eq!(s.requests, 40_000);
        assert_eq!(s.served, 4);
        assert_eq!(s.timeouts, 4);
        assert_eq!(
            s.latency_ms_buckets[3], 4,
            "7 ms falls in the ≤10 ms bucket"
        );
    }
}

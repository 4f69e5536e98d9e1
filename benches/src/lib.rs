//! Shared fixtures for the benches and the disruption report.
//!
//! Everything a bench needs that is not the thing being measured lives here, so that every
//! implementation in a group is fed the same weights, the same generator and the same configs:
//!
//! - [`weights`] and [`bench_rng`]: deterministic inputs for the `pick` group.
//! - [`CumulativeScan`] and [`Sha256Scan`]: the peers abroute's [`AliasTable`](abroute::AliasTable)
//!   is compared with (what Portkey, Envoy and Bifrost do; what TensorZero does).
//! - [`seed_router`], [`alt_router`] and [`RwLockRouters`]: the `engine` group's router, the
//!   config a writer alternates with, and the `RwLock<Arc<HashMap>>` baseline.
//! - [`run_parallel`] and [`Writer`]: the threads of the multi-threaded scenarios.
//! - [`router_with_variants`]: the `compile` group's configs.
//! - [`sticky_peers`]: the sticky-assignment peers of the `sticky` group and the disruption
//!   report's contiguous-range baseline.
//! - [`disruption`]: the disruption report's suite of split changes and its exact measures,
//!   shared by the `disruption` and `plots` binaries.

pub mod disruption;
pub mod sticky_peers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use abroute::{CompiledRouter, RequestContext, RouteError, RouterConfig};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use sha2::{Digest, Sha256};

/// The table sizes of the `pick` group: 2, 3, then 2^4, 2^8, 2^12, 2^16 and 2^20.
pub const PICK_SIZES: [usize; 7] = [2, 3, 16, 256, 4096, 65_536, 1_048_576];

/// The seed of the generator every `pick` implementation draws from.
pub const RNG_SEED: u64 = 0x5eed_ab70_07e5_0001;

/// The seed the pseudo-random weights are made from.
pub const WEIGHT_SEED: u64 = 0x5eed_ab70_07e5_0002;

/// The generator of the `pick` group: `SmallRng` (Xoshiro256++ on 64-bit targets), fixed seed.
///
/// Each bench makes its own with this function, so every implementation sees the same draws.
pub fn bench_rng() -> SmallRng {
    SmallRng::seed_from_u64(RNG_SEED)
}

/// `n` deterministic pseudo-random weights in `1..=1000` (the same list for the same `n`).
pub fn weights(n: usize) -> Vec<u32> {
    let mut rng = SmallRng::seed_from_u64(WEIGHT_SEED);
    (0..n).map(|_| rng.random_range(1..=1000u32)).collect()
}

/// The weighted pick most gateways do: a uniform value in `[0, total)`, then a linear walk over
/// the running sum of the weights until it passes the value.
///
/// Portkey (`Math.random() * total`, subtract weights in order), Envoy's weighted clusters
/// (`random % total`, add weights in order) and Bifrost (`rand.Float64() * total`) all have this
/// shape. Here the running sums are precomputed and the draw is mapped to `[0, total)` with a
/// multiply-shift instead of a division, which favours the peer: O(n) per pick all the same.
#[derive(Debug, Clone)]
pub struct CumulativeScan {
    cumulative: Box<[u64]>,
    total: u64,
}

impl CumulativeScan {
    /// Precomputes the running sums of `weights`.
    ///
    /// # Panics
    ///
    /// When `weights` is empty or sums to 0.
    pub fn new(weights: &[u32]) -> CumulativeScan {
        let mut total = 0u64;
        let cumulative: Box<[u64]> = weights
            .iter()
            .map(|&w| {
                total += u64::from(w);
                total
            })
            .collect();
        assert!(total > 0, "weights must not be empty or all zero");
        CumulativeScan { cumulative, total }
    }

    /// The sum of the weights.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The index whose slot of `[0, total)` holds `r`: the first running sum above `r`.
    ///
    /// `r ≥ total` (only reachable through rounding in a caller) gives the last index.
    #[inline]
    pub fn index_for_value(&self, r: u64) -> usize {
        self.cumulative
            .iter()
            .position(|&c| r < c)
            .unwrap_or(self.cumulative.len() - 1)
    }

    /// Maps a uniform 64-bit draw to `[0, total)` (multiply-shift) and walks the running sums.
    #[inline]
    pub fn index_for(&self, x: u64) -> usize {
        let r = ((u128::from(x) * u128::from(self.total)) >> 64) as u64;
        self.index_for_value(r)
    }
}

/// TensorZero's pick: `sha256(function_name ‖ episode_id)`, the first 4 bytes big-endian as a
/// fraction of `u32::MAX`, times the total weight, then a linear walk over the running sums.
///
/// The episode id is a 16-byte value; the benches derive it from a counter (TensorZero uses a
/// fresh UUIDv7 per episode, whose cost is not counted here). The function name plus 16 bytes is
/// one SHA-256 block, as it is for any name up to 39 bytes.
#[derive(Debug, Clone)]
pub struct Sha256Scan {
    function_name: Box<str>,
    scan: CumulativeScan,
}

impl Sha256Scan {
    /// A picker over `weights` for the function `function_name`.
    ///
    /// # Panics
    ///
    /// When `weights` is empty or sums to 0.
    pub fn new(function_name: &str, weights: &[u32]) -> Sha256Scan {
        Sha256Scan {
            function_name: function_name.into(),
            scan: CumulativeScan::new(weights),
        }
    }

    /// The uniform value in `[0, 1]` TensorZero derives from the function name and episode id.
    #[inline]
    pub fn uniform(&self, episode_id: &[u8; 16]) -> f64 {
        let mut hasher = Sha256::new();
        hasher.update(self.function_name.as_bytes());
        hasher.update(episode_id);
        let hash = hasher.finalize();
        let truncated = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]);
        f64::from(truncated) / f64::from(u32::MAX)
    }

    /// The index picked for `episode_id`. Deterministic.
    #[inline]
    pub fn index_for(&self, episode_id: &[u8; 16]) -> usize {
        let threshold = (self.uniform(episode_id) * self.scan.total() as f64) as u64;
        self.scan.index_for_value(threshold)
    }

    /// The 16-byte episode id the benches use for the `i`-th pick.
    #[inline]
    pub fn episode_id(i: u64) -> [u8; 16] {
        u128::from(i).to_le_bytes()
    }
}

/// The name of the seed router.
pub const SEED_ROUTER_NAME: &str = "compare-frontier-models";

/// The seed router, as sent to Inworld's `POST /router/v1/routers`: three variants, 33/33/34.
pub const SEED_ROUTER_JSON: &str = r#"{"name":"compare-frontier-models","defaultRoute":{"route_id":"default","variants":[{"variant":{"variant_id":"openai/gpt-4o-mini-a","model_id":"openai/gpt-4o-mini"},"weight":33},{"variant":{"variant_id":"openai/gpt-3.5-turbo-b","model_id":"openai/gpt-3.5-turbo"},"weight":33},{"variant":{"variant_id":"openai/gpt-4.1-c","model_id":"openai/gpt-4.1"},"weight":34}]}}"#;

/// The seed router with other weights (50/30/20): what the benches' writer alternates with.
pub const ALT_ROUTER_JSON: &str = r#"{"name":"compare-frontier-models","defaultRoute":{"route_id":"default","variants":[{"variant":{"variant_id":"openai/gpt-4o-mini-a","model_id":"openai/gpt-4o-mini"},"weight":50},{"variant":{"variant_id":"openai/gpt-3.5-turbo-b","model_id":"openai/gpt-3.5-turbo"},"weight":30},{"variant":{"variant_id":"openai/gpt-4.1-c","model_id":"openai/gpt-4.1"},"weight":20}]}}"#;

/// [`SEED_ROUTER_JSON`], parsed.
///
/// # Panics
///
/// Never for the constant; it would only if the JSON stopped parsing.
pub fn seed_router() -> RouterConfig {
    RouterConfig::from_json(SEED_ROUTER_JSON).expect("the seed router parses")
}

/// [`ALT_ROUTER_JSON`], parsed.
///
/// # Panics
///
/// Never for the constant; it would only if the JSON stopped parsing.
pub fn alt_router() -> RouterConfig {
    RouterConfig::from_json(ALT_ROUTER_JSON).expect("the alternate router parses")
}

/// A router named `compile-{n}` whose default route has `n` variants with [`weights`]`(n)`,
/// spread over `models` distinct models.
///
/// Variant `i` has id `variant-{i}` and model `provider-{m % 4}/model-{m}` with `m = i % models`:
/// `models = 16` is a catalogue-sized set of models shared by many variants, `models = n` gives
/// every variant its own model (the worst case for anything kept per model). One variant is
/// parsed from JSON as a template (so optional fields added to the config model later keep their
/// defaults) and cloned `n` times in memory.
///
/// # Panics
///
/// When `models` is 0; never otherwise for `1 ≤ n ≤ 1,000,000` (the template would only fail if
/// the config model changed).
pub fn router_with_variants(n: usize, models: usize) -> RouterConfig {
    assert!(models > 0, "at least one model");
    let mut config = RouterConfig::from_json(
        r#"{"name":"compile","defaultRoute":{"route_id":"default","variants":[
            {"variant":{"variant_id":"v","model_id":"p/m"},"weight":1}]}}"#,
    )
    .expect("the template router parses");
    config.name = format!("compile-{n}");
    let route = config
        .default_route
        .as_mut()
        .expect("the template has a default route");
    let template = route.variants.pop().expect("the template has a variant");
    route.variants = weights(n)
        .into_iter()
        .enumerate()
        .map(|(i, weight)| {
            let mut v = template.clone();
            v.variant.variant_id = format!("variant-{i}");
            let m = i % models;
            v.variant.model_id = format!("provider-{}/model-{m}", m % 4);
            v.weight = weight;
            v
        })
        .collect();
    config
}

/// Router `i` of the `scale` group and the scale report, as a host reads it from its store:
/// [`SEED_ROUTER_JSON`]'s shape (three variants, 33/33/34) named `tenant-{i}`, with variant ids
/// of its own (`t{i}-a`, `t{i}-b`, `t{i}-c`), so nothing is shared between routers but models.
///
/// # Panics
///
/// Never: the JSON is well formed for every `i`.
pub fn tenant_router(i: usize) -> RouterConfig {
    RouterConfig::from_json(&tenant_router_json(i, 33)).expect("the tenant router parses")
}

/// [`tenant_router`]`(i)` as JSON, with the first variant's weight `first` (the other two share
/// the rest of 100; `first` at most 98).
pub fn tenant_router_json(i: usize, first: u32) -> String {
    let b = (100 - first) / 2;
    let c = 100 - first - b;
    format!(
        r#"{{"name":"tenant-{i}","defaultRoute":{{"route_id":"default","variants":[{{"variant":{{"variant_id":"t{i}-a","model_id":"openai/gpt-4o-mini"}},"weight":{first}}},{{"variant":{{"variant_id":"t{i}-b","model_id":"openai/gpt-3.5-turbo"}},"weight":{b}}},{{"variant":{{"variant_id":"t{i}-c","model_id":"openai/gpt-4.1"}},"weight":{c}}}]}}}}"#
    )
}

/// The baseline the `engine` group compares with: `RwLock<Arc<HashMap<String, Arc<CompiledRouter>>>>`.
///
/// A reader takes the read lock, looks the router up by name (std `HashMap`, SipHash) and calls
/// [`CompiledRouter::decide`] while holding the lock. A writer compiles outside the lock, copies
/// the map, inserts, and swaps the `Arc` under the write lock: the same work the engine does.
#[derive(Debug, Default)]
pub struct RwLockRouters {
    routers: RwLock<Arc<HashMap<String, Arc<CompiledRouter>>>>,
}

impl RwLockRouters {
    /// An empty set of routers.
    pub fn new() -> RwLockRouters {
        RwLockRouters::default()
    }

    /// Compiles `config` and adds or replaces the router of that name.
    ///
    /// # Panics
    ///
    /// When `config` does not compile.
    pub fn upsert(&self, config: &RouterConfig) {
        let compiled = config.compile().expect("the bench config compiles");
        let current = Arc::clone(&self.routers.read().unwrap_or_else(PoisonError::into_inner));
        let mut next = HashMap::clone(&current);
        next.insert(config.name.clone(), Arc::new(compiled));
        *self.routers.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }

    /// Compiles every config and loads them all at once (one map, built without copies).
    ///
    /// # Panics
    ///
    /// When a config does not compile.
    pub fn load_all(&self, configs: &[RouterConfig]) {
        let next: HashMap<String, Arc<CompiledRouter>> = configs
            .iter()
            .map(|c| {
                let compiled = c.compile().expect("the bench config compiles");
                (c.name.clone(), Arc::new(compiled))
            })
            .collect();
        *self.routers.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }

    /// Removes router `name`, copying the map as [`upsert`](Self::upsert) does.
    pub fn remove(&self, name: &str) {
        let current = Arc::clone(&self.routers.read().unwrap_or_else(PoisonError::into_inner));
        let mut next = HashMap::clone(&current);
        next.remove(name);
        *self.routers.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }

    /// Routes one request for router `name`; returns what the benches keep of the decision
    /// (the length of the chosen `model_id`, which reads the chosen variant).
    ///
    /// # Errors
    ///
    /// [`RouteError::UnknownRouter`] for a name that is not loaded, or whatever `decide` says.
    #[inline]
    pub fn route(&self, name: &str, ctx: &RequestContext<'_>) -> Result<usize, RouteError> {
        let routers = self.routers.read().unwrap_or_else(PoisonError::into_inner);
        match routers.get(name) {
            Some(router) => router.decide(ctx).map(|d| d.model_id().len()),
            None => Err(RouteError::UnknownRouter(name.to_owned())),
        }
    }
}

/// Runs `body(thread_index, iters)` on `threads` threads started together and returns the wall
/// time from the first thread's start to the last thread's end.
///
/// The threads meet at a spinning start line (an atomic counter, not a sleeping barrier), so
/// they start within a few hundred nanoseconds of each other instead of a futex wake-up apart;
/// spawning and joining are outside the returned time. With `iters` per thread, the returned
/// time divided by `iters` is the time per operation *per thread*; aggregate throughput is
/// `threads · iters / wall`. Meant for at most as many threads as cores: a thread waiting at the
/// start line spins, yielding now and then.
///
/// # Panics
///
/// When a thread panics.
pub fn run_parallel<F>(threads: usize, iters: u64, body: F) -> Duration
where
    F: Fn(usize, u64) + Sync,
{
    let arrived = AtomicUsize::new(0);
    let spans: Vec<(Instant, Instant)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let arrived = &arrived;
                let body = &body;
                scope.spawn(move || {
                    arrived.fetch_add(1, Ordering::AcqRel);
                    let mut spins = 0u32;
                    while arrived.load(Ordering::Acquire) < threads {
                        spins = spins.wrapping_add(1);
                        if spins.is_multiple_of(1024) {
                            thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                    let start = Instant::now();
                    body(t, iters);
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bench thread panicked"))
            .collect()
    });
    let first = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let last = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    last - first
}

/// What a [`Writer`] did: how many writes in how long.
#[derive(Debug, Clone, Copy)]
pub struct WriterStats {
    /// Writes done.
    pub writes: u64,
    /// Time from start to stop.
    pub elapsed: Duration,
}

impl WriterStats {
    /// Writes per second achieved.
    pub fn rate(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64()
    }
}

/// A background thread calling `write(i)` for `i = 0, 1, 2, …` at a fixed rate until stopped.
///
/// Paced by sleeping until each write's deadline (`start + i / rate`), so a late write does not
/// push back the ones after it. Stopped and joined by [`stop`](Writer::stop) or on drop.
#[derive(Debug)]
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<WriterStats>>,
}

impl Writer {
    /// Starts a thread writing `per_second` times a second.
    pub fn start<F>(per_second: u32, mut write: F) -> Writer
    where
        F: FnMut(u64) + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let period = Duration::from_secs(1) / per_second.max(1);
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let mut writes = 0u64;
            let mut deadline = start;
            while !flag.load(Ordering::Relaxed) {
                write(writes);
                writes += 1;
                deadline += period;
                if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
            WriterStats {
                writes,
                elapsed: start.elapsed(),
            }
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread and returns what it did.
    ///
    /// # Panics
    ///
    /// When the writer thread panicked.
    pub fn stop(mut self) -> WriterStats {
        self.stop_inner().expect("the writer was running")
    }

    fn stop_inner(&mut self) -> Option<WriterStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .map(|h| h.join().expect("the writer thread panicked"))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abroute::AliasTable;

    #[test]
    fn weights_are_deterministic_and_in_range() {
        let a = weights(1000);
        assert_eq!(a, weights(1000));
        assert!(a.iter().all(|&w| (1..=1000).contains(&w)));
        assert_eq!(weights(3), a[..3]);
    }

    #[test]
    fn peers_agree_on_the_distribution_support() {
        let w = [0u32, 5, 0, 7];
        let scan = CumulativeScan::new(&w);
        for x in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(matches!(scan.index_for(x), 1 | 3));
        }
        let sha = Sha256Scan::new("f", &w);
        for i in 0..100 {
            assert!(matches!(sha.index_for(&Sha256Scan::episode_id(i)), 1 | 3));
        }
    }

    #[test]
    fn scan_matches_alias_table_in_distribution() {
        // Same weights, counted over an even grid of draws: within 1% of each other.
        let w = weights(16);
        let scan = CumulativeScan::new(&w);
        let table = AliasTable::new(&w).expect("valid weights");
        let mut a = [0u32; 16];
        let mut b = [0u32; 16];
        let steps = 1u64 << 16;
        for i in 0..steps {
            let x = i.wrapping_mul(u64::MAX / steps);
            a[scan.index_for(x)] += 1;
            b[table.index_for(x)] += 1;
        }
        for (x, y) in a.iter().zip(&b) {
            assert!(x.abs_diff(*y) <= (steps / 100) as u32, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn configs_compile_and_route() {
        let routers = RwLockRouters::new();
        routers.upsert(&seed_router());
        assert!(
            routers
                .route(SEED_ROUTER_NAME, &RequestContext::new())
                .is_ok()
        );
        routers.upsert(&alt_router());
        assert!(routers.route("nope", &RequestContext::new()).is_err());
        let big = router_with_variants(1000, 16);
        assert_eq!(big.compile().map(|c| c.routes().count()).ok(), Some(1));
    }

    #[test]
    fn writer_paces_itself() {
        let w = Writer::start(1000, |_| {});
        thread::sleep(Duration::from_millis(50));
        let stats = w.stop();
        assert!(stats.writes >= 10 && stats.writes <= 80, "{stats:?}");
    }

    #[test]
    fn run_parallel_runs_every_thread() {
        let count = std::sync::atomic::AtomicU64::new(0);
        run_parallel(2, 10, |_, iters| {
            count.fetch_add(iters, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 20);
    }
}

//! The scale report: load time, memory per router, one change while loaded, a batch of 1,000,
//! the first sticky request of a route, and route by name, for 1,000 to 100,000 routers of
//! three variants ([`tenant_router`]), through the public API.
//!
//! Memory is counted by a global allocator that adds up the bytes live: a router's share is the
//! bytes live after `replace_all` (configs parsed from JSON, moved into the engine) over the
//! count, and its sticky tables' share is what forcing every route's table adds afterwards.
//!
//! `cargo run --release -p abroute-benches --bin scale_report [-- 1000 10000 100000]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use abroute::{Change, Engine, EngineConfig, RequestContext, RouterConfig};
use abroute_benches::{RwLockRouters, tenant_router, tenant_router_json};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` with the same arguments; the counter is a side
// effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System.dealloc`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract is `System.realloc`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Routes one request for `name`, keeping what the benches keep (the model id's length).
fn route(engine: &Engine, name: &str, ctx: &RequestContext<'_>) -> Option<usize> {
    engine
        .load()
        .route(name, ctx)
        .map(|d| d.model_id().len())
        .ok()
}

/// The median time of `count` calls of `f`.
fn time_each(count: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..count)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn configs(n: usize) -> Vec<RouterConfig> {
    (0..n)
        .map(|i| RouterConfig::from_json(&tenant_router_json(i, 33)).expect("parses"))
        .collect()
}

fn report(n: usize) {
    println!("## {n} routers");

    // Load, lazy sticky tables, memory.
    let engine = EngineConfig::new().lazy_sticky_tables(true).build();
    let before = live();
    let all = configs(n);
    let config_bytes = live() - before;
    let t = Instant::now();
    engine.replace_all(all).expect("loads");
    let load = t.elapsed();
    let bytes = live() - before;
    println!(
        "parsed configs alone: {} bytes per router (kept by the engine, inside the figure below)",
        config_bytes / n as isize
    );
    println!(
        "load (replace_all, lazy sticky tables, 1 thread): {load:.2?}; live bytes per router: {} ({:.1} KiB)",
        bytes / n as isize,
        bytes as f64 / n as f64 / 1024.0
    );

    // Route by name: warm (one router) and cycling over every router.
    let ctx = RequestContext::new();
    let iters = 2_000_000usize;
    let names: Vec<String> = (0..n).map(|i| format!("tenant-{i}")).collect();
    let per_route = |pick: &dyn Fn(usize) -> usize| {
        let t = Instant::now();
        for i in 0..iters {
            let name = &names[pick(i)];
            black_box(route(&engine, name, &ctx));
        }
        t.elapsed() / iters as u32
    };
    let warm = per_route(&|_| 7);
    let cycling = per_route(&|i| i.wrapping_mul(7919) % n);
    let cycling_1024 = per_route(&|i| i.wrapping_mul(7919) % 1024.min(n));
    println!(
        "route by name: warm {warm:.1?}, cycling over 1,024 {cycling_1024:.1?}, over all {n} {cycling:.1?}"
    );

    // One change while loaded: upsert of an existing router (new weights), removal, re-insert.
    let upserts: Vec<RouterConfig> = (0..1001)
        .map(|k| RouterConfig::from_json(&tenant_router_json(k * 31 % n, 40)).expect("parses"))
        .collect();
    let mut up = Vec::new();
    for c in upserts {
        let t = Instant::now();
        engine.upsert(c).expect("loads");
        up.push(t.elapsed());
    }
    let mut rm = Vec::new();
    for k in 0..1001 {
        let name = format!("tenant-{}", k * 37 % n);
        let t = Instant::now();
        black_box(engine.remove(&name));
        rm.push(t.elapsed());
        engine.upsert(tenant_router(k * 37 % n)).expect("loads");
    }
    println!(
        "one upsert while loaded: median {:.1?}; one removal: median {:.1?}",
        median(up),
        median(rm)
    );

    // A batch of 1,000 upserts through apply.
    let batch: Vec<Change> = (0..1000)
        .map(|k| {
            Change::Upsert(
                RouterConfig::from_json(&tenant_router_json(k * 13 % n, 20)).expect("parses"),
            )
        })
        .collect();
    let distinct = batch
        .iter()
        .map(|c| c.name().to_owned())
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct == batch.len() {
        let t = Instant::now();
        engine.apply(batch).expect("applies");
        println!("apply of 1,000 upserts: {:.2?}", t.elapsed());
    }

    // The first sticky request of each route builds its table: the worst wait, and the bytes.
    let before = live();
    let mut worst = Duration::ZERO;
    let mut first = Vec::new();
    let m = n.min(10_000);
    for name in names.iter().take(m) {
        let ctx = RequestContext::new().with_user("user-42");
        let t = Instant::now();
        black_box(route(&engine, name, &ctx));
        let e = t.elapsed();
        worst = worst.max(e);
        first.push(e);
    }
    let sticky = (live() - before) / m as isize;
    println!(
        "first sticky request of a route ({m} routes): median {:.2?}, worst {worst:.2?}; sticky bytes per router {} ({:.1} KiB)",
        median(first),
        sticky,
        sticky as f64 / 1024.0
    );

    // The baseline: RwLock<Arc<HashMap>>, a copy of the map per change.
    let rw = RwLockRouters::new();
    let all = configs(n);
    rw.load_all(&all);
    let c = tenant_router(n / 2);
    let up = time_each(101, || rw.upsert(&c));
    println!("baseline RwLock<Arc<HashMap>> (copy per change): one upsert median {up:.1?}");
    drop(engine);

    // The eager engine (sticky tables built before publishing) for the smaller counts.
    if n <= 2_000 {
        let engine = Engine::new();
        let all = configs(n);
        let t = Instant::now();
        engine.replace_all(all).expect("loads");
        println!(
            "load (replace_all, eager sticky tables, 1 thread): {:.2?}",
            t.elapsed()
        );
    }
    println!();
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1_000, 10_000, 20_000, 100_000]
    } else {
        counts
    };
    for n in counts {
        report(n);
    }
}

//! `engine`: snapshot load + route by name, the way a gateway calls abroute per request, beside
//! the `RwLock<Arc<HashMap<String, CompiledRouter>>>` baseline ([`RwLockRouters`]).
//!
//! Four scenarios per implementation:
//!
//! - `1-thread`: one thread routes in a loop; the reported time is the time per route.
//! - `2-threads`: two threads, released together by a barrier, each route `iters` times; the
//!   reported time is wall time / `iters`, i.e. the time per route **per thread**. Aggregate
//!   throughput is `2 / time`; perfect scaling reports the same time as `1-thread`.
//! - `+writer`: the same, while a background thread replaces the router 1,000 times a second,
//!   alternating between two configs ([`seed_router`] and [`alt_router`], sleep-paced). The
//!   writer's achieved rate is printed on stderr after each such bench.
//!
//! Every route uses `RequestContext::new()` (no user, no metadata, thread-local draw) and keeps
//! the length of the chosen `model_id`, so the chosen variant is read.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use abroute::{Engine, RequestContext};
use abroute_benches::{
    RwLockRouters, SEED_ROUTER_NAME, Writer, alt_router, run_parallel, seed_router,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};

/// How often the writer replaces the router.
const WRITES_PER_SECOND: u32 = 1_000;

/// One scenario: `threads` readers, with or without the writer.
fn scenario<R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    threads: usize,
    writer: Option<Writer>,
    route: R,
) where
    R: Fn() -> usize + Sync,
{
    let label = match (threads, writer.is_some()) {
        (1, false) => "1-thread".to_owned(),
        (1, true) => "1-thread+writer".to_owned(),
        (t, false) => format!("{t}-threads"),
        (t, true) => format!("{t}-threads+writer"),
    };
    group.bench_function(BenchmarkId::new(name, &label), |b| {
        if threads == 1 {
            b.iter(&route);
        } else {
            b.iter_custom(|iters| {
                run_parallel(threads, iters, |_, iters| {
                    for _ in 0..iters {
                        black_box(route());
                    }
                })
            });
        }
    });
    if let Some(w) = writer {
        let stats = w.stop();
        // A bench filtered out on the command line still starts and stops its writer: say
        // nothing about those.
        if stats.writes <= 1 {
            return;
        }
        eprintln!(
            "engine/{name}/{label}: writer did {} upserts in {:.2?} ({:.0}/s)",
            stats.writes,
            stats.elapsed,
            stats.rate()
        );
    }
}

fn engine(c: &mut Criterion) {
    let seed = seed_router();
    let alt = alt_router();
    let mut group = c.benchmark_group("engine");

    let engine = Arc::new(Engine::new());
    engine.upsert(seed.clone()).expect("the seed router loads");
    let abroute_route = || {
        engine
            .load()
            .route(SEED_ROUTER_NAME, &RequestContext::new())
            .map_or(0, |d| d.model_id().len())
    };
    let abroute_writer = || {
        let engine = Arc::clone(&engine);
        let (seed, alt) = (seed.clone(), alt.clone());
        Writer::start(WRITES_PER_SECOND, move |i| {
            let config = if i % 2 == 0 {
                alt.clone()
            } else {
                seed.clone()
            };
            engine.upsert(config).expect("the bench configs load");
        })
    };

    let rwlock = Arc::new(RwLockRouters::new());
    rwlock.upsert(&seed);
    let rwlock_route = || {
        rwlock
            .route(SEED_ROUTER_NAME, &RequestContext::new())
            .unwrap_or(0)
    };
    let rwlock_writer = || {
        let rwlock = Arc::clone(&rwlock);
        let (seed, alt) = (seed.clone(), alt.clone());
        Writer::start(WRITES_PER_SECOND, move |i| {
            rwlock.upsert(if i % 2 == 0 { &alt } else { &seed });
        })
    };

    for threads in [1, 2] {
        scenario(&mut group, "abroute", threads, None, abroute_route);
        scenario(&mut group, "rwlock", threads, None, rwlock_route);
        scenario(
            &mut group,
            "abroute",
            threads,
            Some(abroute_writer()),
            abroute_route,
        );
        scenario(
            &mut group,
            "rwlock",
            threads,
            Some(rwlock_writer()),
            rwlock_route,
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = engine
}
criterion_main!(benches);

//! `scale`: the engine with many routers loaded ([`tenant_router`]: three variants each,
//! variant ids of their own), beside the `RwLock<Arc<HashMap>>` baseline ([`RwLockRouters`],
//! which copies its whole map per change, as the engine's snapshot did before it was sharded).
//!
//! - `load/{n}`: `Engine::replace_all` of `n` parsed configs (lazy sticky tables), and the
//!   baseline's `load_all`.
//! - `upsert/{n}`, `remove/{n}`: one change while `n` routers are loaded (compile included).
//! - `route/warm/{n}`: route by name to one router; `route/cycling/{n}`: to every router in turn.
//!
//! Flat sampling and few samples: the big cases take seconds to set up and are measured in
//! microseconds. The scale report (`--bin scale_report`) has memory and the first sticky request.

use std::hint::black_box;
use std::time::Duration;

use abroute::{EngineConfig, RequestContext};
use abroute_benches::{RwLockRouters, tenant_router};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};

const COUNTS: [usize; 3] = [1_000, 10_000, 100_000];

fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for n in COUNTS {
        let configs: Vec<_> = (0..n).map(tenant_router).collect();
        if n <= 10_000 {
            group.bench_with_input(BenchmarkId::new("load/abroute", n), &n, |b, _| {
                b.iter(|| {
                    let engine = EngineConfig::new().lazy_sticky_tables(true).build();
                    engine.replace_all(configs.clone()).expect("loads");
                    engine
                });
            });
        }
        let engine = EngineConfig::new().lazy_sticky_tables(true).build();
        engine.replace_all(configs.clone()).expect("loads");
        let rwlock = RwLockRouters::new();
        rwlock.load_all(&configs);
        let changed = tenant_router(n / 2);
        group.bench_with_input(BenchmarkId::new("upsert/abroute", n), &n, |b, _| {
            b.iter(|| engine.upsert(changed.clone()).expect("loads"));
        });
        group.bench_with_input(BenchmarkId::new("upsert/rwlock", n), &n, |b, _| {
            b.iter(|| rwlock.upsert(&changed));
        });
        group.bench_with_input(BenchmarkId::new("remove/abroute", n), &n, |b, _| {
            b.iter(|| {
                engine.remove(&changed.name);
                engine.upsert(changed.clone()).expect("loads")
            });
        });
        let names: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
        let route = |name: &str| {
            engine
                .load()
                .route(name, &RequestContext::new())
                .map_or(0, |d| d.model_id().len())
        };
        group.bench_with_input(BenchmarkId::new("route/warm/abroute", n), &n, |b, _| {
            b.iter(|| black_box(route(&names[7])));
        });
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::new("route/cycling/abroute", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 7919) % n;
                black_box(route(&names[i]))
            });
        });
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::new("route/cycling/rwlock", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 7919) % n;
                black_box(rwlock.route(&names[i], &RequestContext::new()).unwrap_or(0))
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = scale
}
criterion_main!(benches);

//! `compile`: `RouterConfig::compile()` (validate, build the alias tables, and everything else
//! compile does per variant) for 3, 1,000 and 1,000,000 variants.
//!
//! - `abroute/3` is the seed router itself.
//! - `abroute/{n}`: `n` variants over a catalogue of 16 models (4 providers), as a large
//!   experiment that splits traffic finely across a handful of models would be.
//! - `abroute-distinct-models/{n}`: every variant names its own model: the worst case for any
//!   per-model state compile keeps.
//!
//! The `RouterConfig` is built in memory once, outside the timed loop. The compiled router is
//! dropped outside the timed loop too (`iter_with_large_drop`): freeing a million variants is
//! not compiling them.

use std::time::Duration;

use abroute::RouterConfig;
use abroute_benches::{router_with_variants, seed_router};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main,
};

/// Models in the catalogue the `abroute/{n}` configs draw from.
const CATALOGUE: usize = 16;

fn bench(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, n: usize, config: &RouterConfig) {
    if n >= 1_000_000 {
        group.sample_size(10).sampling_mode(SamplingMode::Flat);
    } else {
        group.sample_size(100).sampling_mode(SamplingMode::Auto);
    }
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter_with_large_drop(|| config.compile().expect("the config compiles"));
    });
}

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    bench(&mut group, "abroute", 3, &seed_router());
    for n in [1_000, 1_000_000] {
        bench(
            &mut group,
            "abroute",
            n,
            &router_with_variants(n, CATALOGUE),
        );
        bench(
            &mut group,
            "abroute-distinct-models",
            n,
            &router_with_variants(n, n),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = compile
}
criterion_main!(benches);

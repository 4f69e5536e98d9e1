//! `pick`: one weighted pick, abroute's alias table beside its peers, n = 2 … 2^20.
//!
//! Every implementation draws from the same generator ([`bench_rng`]: `SmallRng`, fixed seed)
//! over the same weights ([`weights`]: pseudo-random in `1..=1000`, fixed seed), so the only
//! difference between two lines of the table is the pick itself. `rng` is the bare draw every
//! other line pays at least once. `sha256-scan` draws nothing: its input is a counter-derived
//! 16-byte episode id, as TensorZero's is a UUID.

use std::hint::black_box;
use std::time::Duration;

use abroute::AliasTable;
use abroute_benches::{CumulativeScan, PICK_SIZES, Sha256Scan, bench_rng, weights};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use rand::Rng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand_distr::weighted::WeightedAliasIndex;

/// Above this many entries the O(n) peers take tens of microseconds or more per pick: fewer,
/// flat samples keep the group's run time reasonable without changing what is measured.
const SLOW_SCAN_FROM: usize = 1 << 16;

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    group.throughput(Throughput::Elements(1));
    for &n in &PICK_SIZES {
        let w = weights(n);

        group.bench_function(BenchmarkId::new("rng", n), |b| {
            let mut rng = bench_rng();
            b.iter(|| black_box(rng.next_u64()));
        });

        let table = AliasTable::new(&w).expect("valid weights");
        group.bench_function(BenchmarkId::new("abroute", n), |b| {
            let mut rng = bench_rng();
            b.iter(|| table.sample(&mut rng));
        });
        drop(table);

        let alias = WeightedAliasIndex::<u32>::new(w.clone()).expect("valid weights");
        group.bench_function(BenchmarkId::new("rand_distr-WeightedAliasIndex", n), |b| {
            let mut rng = bench_rng();
            b.iter(|| alias.sample(&mut rng));
        });
        drop(alias);

        let index = WeightedIndex::<u32>::new(w.iter().copied()).expect("valid weights");
        group.bench_function(BenchmarkId::new("rand-WeightedIndex", n), |b| {
            let mut rng = bench_rng();
            b.iter(|| index.sample(&mut rng));
        });
        drop(index);

        if n >= SLOW_SCAN_FROM {
            group.sample_size(20).sampling_mode(SamplingMode::Flat);
        }
        let scan = CumulativeScan::new(&w);
        group.bench_function(BenchmarkId::new("linear-scan", n), |b| {
            let mut rng = bench_rng();
            b.iter(|| scan.index_for(rng.next_u64()));
        });
        drop(scan);

        let sha = Sha256Scan::new("compare-frontier-models", &w);
        group.bench_function(BenchmarkId::new("sha256-scan", n), |b| {
            let mut episode = 0u64;
            b.iter(|| {
                episode = episode.wrapping_add(1);
                sha.index_for(&Sha256Scan::episode_id(episode))
            });
        });
        group.sample_size(100).sampling_mode(SamplingMode::Auto);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = pick
}
criterion_main!(benches);

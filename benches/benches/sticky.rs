//! `sticky`: one sticky assignment of a 36-byte key (a UUID in text form), hashing included,
//! abroute's `StickyTable` beside GrowthBook-style FNV-1a(32) + contiguous range scan and
//! TensorZero-style SHA-256 + cumulative scan, for 2 to 4,096 variants. `xxh3-only` is the key
//! hash alone (the floor of abroute's line). `sticky_build` is the cost of compiling a table, beside the first builder (`race`,
//! `StickyTable::new_by_race`) up to 16 variants.
//!
//! Every line cycles through the same 4,096 pre-generated keys, so each iteration hashes a
//! different key (as a gateway would) while the key bytes stay in cache.

use std::hint::black_box;
use std::time::Duration;

use abroute::sticky::StickyTable;
use abroute_benches::sticky_peers::{GrowthBookStyle, TensorZeroStyle, uuid_keys};
use abroute_benches::weights;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

/// The variant counts of the lookup group.
const SIZES: [usize; 5] = [2, 3, 16, 256, 4096];

/// The variant counts of the build group.
const BUILD_SIZES: [usize; 6] = [2, 3, 16, 64, 256, 4096];

/// The salt every table uses: the seed router's name, a NUL, and its route id.
const SALT: &str = "compare-frontier-models\0default";

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("variant-{i}")).collect()
}

fn sticky(c: &mut Criterion) {
    let keys = uuid_keys(4096, 0x5eed_0036);
    let mut group = c.benchmark_group("sticky");
    group.throughput(Throughput::Elements(1));
    for &n in &SIZES {
        let w = weights(n);
        let ids = ids(n);
        let variants: Vec<(&str, u32)> = ids
            .iter()
            .map(String::as_str)
            .zip(w.iter().copied())
            .collect();

        let table = StickyTable::new(SALT.as_bytes(), &variants).expect("valid variants");
        group.bench_function(BenchmarkId::new("abroute", n), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 4095;
                table.assign(black_box(&keys[i])).variant()
            });
        });
        group.bench_function(BenchmarkId::new("xxh3-only", n), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 4095;
                table.key_hash(black_box(&keys[i]))
            });
        });

        let gb = GrowthBookStyle::new(SALT, &w);
        group.bench_function(BenchmarkId::new("growthbook-fnv1a32-ranges", n), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 4095;
                gb.assign(black_box(&keys[i]))
            });
        });

        let tz = TensorZeroStyle::new(SALT, &w);
        group.bench_function(BenchmarkId::new("tensorzero-sha256-scan", n), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 4095;
                tz.assign(black_box(&keys[i]))
            });
        });
    }
    group.finish();
}

fn sticky_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("sticky_build");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for &n in &BUILD_SIZES {
        let w = weights(n);
        let ids = ids(n);
        let variants: Vec<(&str, u32)> = ids
            .iter()
            .map(String::as_str)
            .zip(w.iter().copied())
            .collect();
        group.bench_function(BenchmarkId::new("abroute", n), |b| {
            b.iter(|| StickyTable::new(SALT.as_bytes(), black_box(&variants)).map(|t| t.len()));
        });
        // The first builder, the reference of the differential test: the same tables.
        if n <= 16 {
            group.bench_function(BenchmarkId::new("race", n), |b| {
                b.iter(|| {
                    StickyTable::new_by_race(SALT.as_bytes(), black_box(&variants)).map(|t| t.len())
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = sticky, sticky_build
}
criterion_main!(benches);

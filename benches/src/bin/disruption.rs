//! The sticky disruption and balance report: how many users a config change moves.
//!
//! For a suite of split changes it prints the total-variation distance `TV(p, q)` (the least
//! any scheme can move), the closed form `1 − J_P(p, q)` of continuous weighted rendezvous
//! hashing (P-MinHash, the best stateless scheme; see `docs/sticky.md`), the optimal worst-case
//! bound `2·TV / (1 + TV)`, abroute's moved fraction over random 36-byte keys and exactly over
//! all 65,536 buckets, and the moved fraction of contiguous ranges in config order (what
//! GrowthBook and TensorZero do) on the same key hashes. Then random sweeps and a balance table.
//! The suite and its exact measures are in [`abroute_benches::disruption`] (the `plots` binary
//! draws them).
//!
//! ```text
//! cargo run --release -p abroute-benches --bin disruption [-- --keys N --sweep N]
//! ```

use std::time::Instant;

use abroute::sticky::STICKY_SLOTS;
use abroute_benches::disruption::{
    Split, moved_buckets, numbered, pminhash_moved, shares, suite, table, tv,
};
use abroute_benches::sticky_peers::{ContiguousRanges, uuid_keys};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The seed of the random keys.
const KEY_SEED: u64 = 0xd152_0000_5eed;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n_keys = arg("--keys", 1_000_000);
    let n_sweep = arg("--sweep", 300);
    let started = Instant::now();
    let keys = uuid_keys(n_keys, KEY_SEED);
    println!("abroute sticky disruption report");
    println!(
        "{n_keys} random 36-byte UUID-text keys (seed {KEY_SEED:#x}); exact figures count all \
         {STICKY_SLOTS} buckets; contiguous = ranges in config order on the same key hash"
    );
    println!();
    println!(
        "{:<32} {:>7} {:>7} {:>7} | {:>8} {:>8} {:>8} {:>7} | {:>10}",
        "change", "TV", "1-J_P", "2TV/1+TV", "moved", "exact", "-TV", "cross", "contiguous"
    );
    let mut worst_single: f64 = f64::NEG_INFINITY;
    for c in suite() {
        let (ta, tb) = (table(&c.from), table(&c.to));
        let w = |s: &Split| s.iter().map(|(_, w)| *w).collect::<Vec<u32>>();
        let (ca, cb) = (
            ContiguousRanges::new(&w(&c.from)),
            ContiguousRanges::new(&w(&c.to)),
        );
        let (mut moved, mut contiguous) = (0usize, 0usize);
        for key in &keys {
            // Both tables use the same salt, so the key hash is the same.
            let h = ta.key_hash(key);
            let (x, y) = (ta.assign_hashed(h).variant(), tb.assign_hashed(h).variant());
            if ta.variant_id(x) != tb.variant_id(y) {
                moved += 1;
            }
            if c.from[ca.assign(h)].0 != c.to[cb.assign(h)].0 {
                contiguous += 1;
            }
        }
        let e = c.exact_with(&ta, &tb);
        let k = n_keys as f64;
        if c.pivot.is_some() {
            worst_single = worst_single.max(e.abroute - e.tv);
        }
        println!(
            "{:<32} {:>7.4} {:>7.4} {:>7.4} | {:>8.4} {:>8.4} {:>+8.4} {:>7} | {:>10.4}",
            c.name,
            e.tv,
            e.pminhash,
            e.bound,
            moved as f64 / k,
            e.abroute,
            e.abroute - e.tv,
            e.cross
                .map_or("-".to_owned(), |cross| format!("{cross:.4}")),
            contiguous as f64 / k,
        );
    }
    println!("worst exact excess over TV among single-weight changes above: {worst_single:+.4}");
    println!();

    sweep(n_sweep);
    println!();
    balance(&keys);
    println!();
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
}

/// Random changes, measured exactly over all buckets.
fn sweep(n: usize) {
    let mut rng = StdRng::seed_from_u64(0x5_3eed);
    let (mut single_max, mut single_sum, mut cross_max) = (f64::NEG_INFINITY, 0.0, 0.0f64);
    let (mut any_max_jp, mut any_max_bound, mut any_max_tv) =
        (f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
    let mut any_over = 0usize;
    for _ in 0..n {
        // One weight changes (to or from 0 included); the others keep their weights.
        let len = rng.random_range(2..=64usize);
        let mut from: Vec<u32> = (0..len).map(|_| rng.random_range(0..=1000)).collect();
        from[0] = from[0].max(1);
        let j = rng.random_range(0..len);
        let mut to = from.clone();
        to[j] = rng.random_range(0..=2000);
        if to.iter().all(|&w| w == 0) {
            to[(j + 1) % len] = 1;
        }
        let (a, b) = (numbered(&from), numbered(&to));
        let (p, q, _) = shares(&a, &b);
        let pivot = format!("v{j}");
        let (exact, cross) = moved_buckets(&table(&a), &table(&b), Some(&pivot));
        let excess = exact - tv(&p, &q);
        single_max = single_max.max(excess);
        single_sum += excess;
        cross_max = cross_max.max(cross);

        // Anything: new weights for every variant, some removed, some added.
        let len_b = rng.random_range(2..=64usize);
        let from: Vec<u32> = (0..len).map(|_| rng.random_range(1..=1000)).collect();
        let to: Vec<u32> = (0..len_b).map(|_| rng.random_range(0..=1000)).collect();
        let (a, mut b) = (numbered(&from), numbered(&to));
        if b.iter().all(|(_, w)| *w == 0) {
            b[0].1 = 1;
        }
        let (p, q, _) = shares(&a, &b);
        let d = tv(&p, &q);
        let (exact, _) = moved_buckets(&table(&a), &table(&b), None);
        any_max_jp = any_max_jp.max(exact - pminhash_moved(&p, &q));
        any_max_bound = any_max_bound.max(exact - 2.0 * d / (1.0 + d));
        any_max_tv = any_max_tv.max(exact - d);
        any_over += usize::from(exact > d + 0.01);
    }
    println!("random sweep, {n} changes of each kind, 2 to 64 variants, exact over all buckets:");
    println!(
        "  one weight changes (0..=1000 -> 0..=2000): moved - TV max {single_max:+.4}, mean \
         {:+.4}; moves between the other variants max {cross_max:.4}",
        single_sum / n as f64
    );
    println!(
        "  every weight changes, variants added/removed: moved - (1-J_P) max {any_max_jp:+.4}; \
         moved - 2TV/(1+TV) max {any_max_bound:+.4}; moved - TV max {any_max_tv:+.4}; \
         {any_over} of {n} above TV + 0.01"
    );
}

/// Shares over the keys against `weight / sum`.
fn balance(keys: &[[u8; 36]]) {
    let mut rng = StdRng::seed_from_u64(0xba1a);
    let random64: Vec<u32> = (0..64).map(|_| rng.random_range(1..=1000)).collect();
    let random16: Vec<u32> = (0..16).map(|_| rng.random_range(1..=100)).collect();
    let configs: Vec<(&str, Vec<u32>)> = vec![
        ("50/50", vec![50, 50]),
        ("33/33/34", vec![33, 33, 34]),
        ("1/999", vec![1, 999]),
        ("999/1", vec![999, 1]),
        ("1/1/998", vec![1, 1, 998]),
        ("10/90", vec![10, 90]),
        ("16 random 1..=100", random16),
        ("64 equal", vec![1; 64]),
        ("64 random 1..=1000", random64),
        (
            "64 with 1 and 999s",
            (0..64).map(|i| if i % 2 == 0 { 1 } else { 999 }).collect(),
        ),
        ("256 equal", vec![1; 256]),
        ("4096 equal", vec![1; 4096]),
    ];
    println!(
        "balance over {} keys: max |share - weight/sum| in percentage points",
        keys.len()
    );
    println!(
        "{:<22} {:>9} {:>12} {:>12}",
        "config", "variants", "keys", "slots"
    );
    for (name, w) in configs {
        let s = numbered(&w);
        let t = table(&s);
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        let mut counts = vec![0usize; w.len()];
        for key in keys {
            counts[t.assign(key).variant()] += 1;
        }
        let k = keys.len() as f64;
        let (mut worst_keys, mut worst_slots) = (0.0f64, 0.0f64);
        for (i, &wi) in w.iter().enumerate() {
            let want = f64::from(wi) / total;
            worst_keys = worst_keys.max((counts[i] as f64 / k - want).abs());
            worst_slots =
                worst_slots.max((f64::from(t.slot_count(i)) / STICKY_SLOTS as f64 - want).abs());
        }
        println!(
            "{:<22} {:>9} {:>12.4} {:>12.5}",
            name,
            w.len(),
            worst_keys * 100.0,
            worst_slots * 100.0
        );
    }
}

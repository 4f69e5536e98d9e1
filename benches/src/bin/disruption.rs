//! The sticky disruption and balance report: how many users a config change moves.
//!
//! For a suite of split changes it prints the total-variation distance `TV(p, q)` (the least
//! any scheme can move), the closed form `1 − J_P(p, q)` of continuous weighted rendezvous
//! hashing (P-MinHash, the best stateless scheme; see `docs/sticky.md`), the optimal worst-case
//! bound `2·TV / (1 + TV)`, abroute's moved fraction over random 36-byte keys and exactly over
//! all 65,536 buckets, and the moved fraction of contiguous ranges in config order (what
//! GrowthBook and TensorZero do) on the same key hashes. Then random sweeps and a balance table.
//!
//! ```text
//! cargo run --release -p abroute-benches --bin disruption [-- --keys N --sweep N]
//! ```

#[allow(dead_code)]
#[path = "../sticky_peers.rs"]
mod sticky_peers;

use std::collections::BTreeSet;
use std::time::Instant;

use abroute::sticky::{STICKY_SLOTS, StickyTable};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sticky_peers::{ContiguousRanges, uuid_keys};

/// The seed of the random keys.
const KEY_SEED: u64 = 0xd152_0000_5eed;

/// The salt every table of the report uses.
const SALT: &[u8] = b"disruption-report\0default";

/// One side of a change: `(variant_id, weight)` in config order.
type Split = Vec<(String, u32)>;

fn split(spec: &[(&str, u32)]) -> Split {
    spec.iter().map(|&(id, w)| (id.to_owned(), w)).collect()
}

fn numbered(weights: &[u32]) -> Split {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (format!("v{i}"), w))
        .collect()
}

fn table(s: &Split) -> StickyTable {
    let v: Vec<(&str, u32)> = s.iter().map(|(id, w)| (id.as_str(), *w)).collect();
    match StickyTable::new(SALT, &v) {
        Ok(t) => t,
        Err(e) => panic!("report config does not build: {e}"),
    }
}

/// The shares of `a` and `b` over the union of their ids (absent = 0).
fn shares(a: &Split, b: &Split) -> (Vec<f64>, Vec<f64>, Vec<String>) {
    let ids: BTreeSet<&str> = a.iter().chain(b).map(|(id, _)| id.as_str()).collect();
    let total = |s: &Split| s.iter().map(|(_, w)| f64::from(*w)).sum::<f64>();
    let (ta, tb) = (total(a), total(b));
    let get = |s: &Split, id: &str, t: f64| {
        s.iter()
            .find(|(x, _)| x == id)
            .map_or(0.0, |(_, w)| f64::from(*w) / t)
    };
    let p = ids.iter().map(|id| get(a, id, ta)).collect();
    let q = ids.iter().map(|id| get(b, id, tb)).collect();
    (p, q, ids.into_iter().map(str::to_owned).collect())
}

fn tv(p: &[f64], q: &[f64]) -> f64 {
    0.5 * p.iter().zip(q).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

/// `1 − J_P(p, q)`: what continuous P-MinHash moves (Moulton & Jiang 2018).
fn pminhash_moved(p: &[f64], q: &[f64]) -> f64 {
    let mut j = 0.0;
    for i in 0..p.len() {
        if p[i] == 0.0 || q[i] == 0.0 {
            continue;
        }
        let d: f64 = p
            .iter()
            .zip(q)
            .map(|(pj, qj)| (pj / p[i]).max(qj / q[i]))
            .sum();
        j += 1.0 / d;
    }
    1.0 - j
}

/// Exact moved fraction over all buckets, and the part of it between variants other than
/// `pivot` (for a change of `pivot`'s weight alone).
fn moved_buckets(ta: &StickyTable, tb: &StickyTable, pivot: Option<&str>) -> (f64, f64) {
    let (mut moved, mut cross) = (0usize, 0usize);
    for b in 0..STICKY_SLOTS as u32 {
        let (Some(x), Some(y)) = (ta.variant_at(b), tb.variant_at(b)) else {
            continue;
        };
        let (x, y) = (ta.variant_id(x), tb.variant_id(y));
        if x != y {
            moved += 1;
            if pivot.is_some_and(|p| x != p && y != p) {
                cross += 1;
            }
        }
    }
    let n = STICKY_SLOTS as f64;
    (moved as f64 / n, cross as f64 / n)
}

struct Change {
    name: &'static str,
    from: Split,
    to: Split,
    /// The variant whose weight alone changes, if that is the kind of change.
    pivot: Option<&'static str>,
}

fn suite() -> Vec<Change> {
    let mut rng = StdRng::seed_from_u64(0x5117e);
    let mut random = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.random_range(1..=100)).collect() };
    let w64 = random(64);
    let w64b = random(64);
    let w64c: Vec<u32> = w64
        .iter()
        .enumerate()
        .map(|(i, &w)| (w * (90 + (i as u32 * 7) % 21) / 100).max(1))
        .collect();
    let mut w64swap = w64.clone();
    w64swap.swap(3, 40);
    let mut u64doubled = vec![10u32; 64];
    u64doubled[5] = 20;
    let w16 = random(16);
    let mut w16rm = numbered(&w16);
    w16rm.remove(7);
    let w8 = numbered(&[10, 20, 30, 40, 15, 25, 35, 45]);
    let mut w8renamed = w8.clone();
    w8renamed[3].0 = "v3-renamed".into();
    let seed = [
        ("openai/gpt-4o-mini-a", 33),
        ("openai/gpt-3.5-turbo-b", 33),
        ("openai/gpt-4.1-c", 34),
    ];
    let alt = [
        ("openai/gpt-4o-mini-a", 50),
        ("openai/gpt-3.5-turbo-b", 30),
        ("openai/gpt-4.1-c", 20),
    ];
    vec![
        Change {
            name: "ramp 10/90 -> 20/80",
            from: split(&[("a", 10), ("b", 90)]),
            to: split(&[("a", 20), ("b", 80)]),
            pivot: Some("a"),
        },
        Change {
            name: "ramp 1/99 -> 50/50",
            from: split(&[("a", 1), ("b", 99)]),
            to: split(&[("a", 50), ("b", 50)]),
            pivot: Some("a"),
        },
        Change {
            name: "1/999 -> 2/998",
            from: split(&[("a", 1), ("b", 999)]),
            to: split(&[("a", 2), ("b", 998)]),
            pivot: Some("a"),
        },
        Change {
            name: "add: 50/50 -> 34/33/33",
            from: split(&[("a", 50), ("b", 50)]),
            to: split(&[("a", 34), ("b", 33), ("c", 33)]),
            pivot: None,
        },
        Change {
            name: "remove: 34/33/33 -> 50/50",
            from: split(&[("a", 34), ("b", 33), ("c", 33)]),
            to: split(&[("a", 50), ("b", 50)]),
            pivot: None,
        },
        Change {
            name: "add: 3 -> 4 equal",
            from: numbered(&[1; 3]),
            to: numbered(&[1; 4]),
            pivot: Some("v3"),
        },
        Change {
            name: "weight 0 -> 10: 50/50/0",
            from: split(&[("a", 50), ("b", 50), ("c", 0)]),
            to: split(&[("a", 50), ("b", 50), ("c", 10)]),
            pivot: Some("c"),
        },
        Change {
            name: "one up: 25x4 -> 40/25/25/25",
            from: split(&[("a", 25), ("b", 25), ("c", 25), ("d", 25)]),
            to: split(&[("a", 40), ("b", 25), ("c", 25), ("d", 25)]),
            pivot: Some("a"),
        },
        Change {
            name: "reorder 50/30/20 (same ids)",
            from: split(&[("a", 50), ("b", 30), ("c", 20)]),
            to: split(&[("c", 20), ("a", 50), ("b", 30)]),
            pivot: None,
        },
        Change {
            name: "swap two: 50/30/20 -> 30/50/20",
            from: split(&[("a", 50), ("b", 30), ("c", 20)]),
            to: split(&[("a", 30), ("b", 50), ("c", 20)]),
            pivot: None,
        },
        Change {
            name: "seed 33/33/34 -> 50/30/20",
            from: split(&seed),
            to: split(&alt),
            pivot: None,
        },
        Change {
            name: "rename one of 8",
            from: w8,
            to: w8renamed,
            pivot: None,
        },
        Change {
            name: "16 random, remove one",
            from: numbered(&w16),
            to: w16rm,
            pivot: Some("v7"),
        },
        Change {
            name: "64 equal, one doubled",
            from: numbered(&[10; 64]),
            to: numbered(&u64doubled),
            pivot: Some("v5"),
        },
        Change {
            name: "64 random, swap two",
            from: numbered(&w64),
            to: numbered(&w64swap),
            pivot: None,
        },
        Change {
            name: "64 random, each +-10%",
            from: numbered(&w64),
            to: numbered(&w64c),
            pivot: None,
        },
        Change {
            name: "64 random -> 64 random",
            from: numbered(&w64),
            to: numbered(&w64b),
            pivot: None,
        },
    ]
}

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
        let (p, q, _) = shares(&c.from, &c.to);
        let d = tv(&p, &q);
        let (exact, cross) = moved_buckets(&ta, &tb, c.pivot);
        let k = n_keys as f64;
        if c.pivot.is_some() {
            worst_single = worst_single.max(exact - d);
        }
        println!(
            "{:<32} {:>7.4} {:>7.4} {:>7.4} | {:>8.4} {:>8.4} {:>+8.4} {:>7} | {:>10.4}",
            c.name,
            d,
            pminhash_moved(&p, &q),
            2.0 * d / (1.0 + d),
            moved as f64 / k,
            exact,
            exact - d,
            c.pivot.map_or("-".to_owned(), |_| format!("{cross:.4}")),
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

//! The fixed suite of split changes of the sticky disruption report, and the exact measures of
//! how many users a change moves. Shared by the `disruption` report and the `plots` binary.
//!
//! Every measure here is deterministic and exact, with no random keys:
//!
//! - [`tv`]: the total-variation distance `TV(p, q)`, the least any scheme can move;
//! - [`pminhash_moved`]: `1 − J_P(p, q)`, what continuous P-MinHash (weighted rendezvous
//!   hashing, the best stateless scheme) moves;
//! - [`moved_buckets`]: what abroute's [`StickyTable`] moves, counted over all
//!   [`STICKY_SLOTS`] buckets of the hash space;
//! - [`contiguous_moved`]: what contiguous ranges in config order (GrowthBook, TensorZero)
//!   move, as the exact fraction of the hash space whose variant changes.
//!
//! [`Change::exact`] computes all of them for one change of the [`suite`].

use std::collections::BTreeSet;

use abroute::sticky::{STICKY_SLOTS, StickyTable};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The salt every table of the report uses.
pub const SALT: &[u8] = b"disruption-report\0default";

/// One side of a change: `(variant_id, weight)` in config order.
pub type Split = Vec<(String, u32)>;

/// A split from `(variant_id, weight)` pairs.
pub fn split(spec: &[(&str, u32)]) -> Split {
    spec.iter().map(|&(id, w)| (id.to_owned(), w)).collect()
}

/// A split whose variants are named `v0`, `v1`, … in order.
pub fn numbered(weights: &[u32]) -> Split {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (format!("v{i}"), w))
        .collect()
}

/// The sticky table of a split, with [`SALT`].
///
/// # Panics
///
/// When the split is not a valid sticky config (every split of the report is).
pub fn table(s: &Split) -> StickyTable {
    let v: Vec<(&str, u32)> = s.iter().map(|(id, w)| (id.as_str(), *w)).collect();
    match StickyTable::new(SALT, &v) {
        Ok(t) => t,
        Err(e) => panic!("report config does not build: {e}"),
    }
}

/// The shares of `a` and `b` over the union of their ids (absent = 0), in id order, and the
/// ids.
pub fn shares(a: &Split, b: &Split) -> (Vec<f64>, Vec<f64>, Vec<String>) {
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

/// The total-variation distance `½ Σ |p − q|`: the least fraction any scheme can move.
pub fn tv(p: &[f64], q: &[f64]) -> f64 {
    0.5 * p.iter().zip(q).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

/// `1 − J_P(p, q)`: what continuous P-MinHash moves (Moulton & Jiang 2018).
pub fn pminhash_moved(p: &[f64], q: &[f64]) -> f64 {
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
pub fn moved_buckets(ta: &StickyTable, tb: &StickyTable, pivot: Option<&str>) -> (f64, f64) {
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

/// The fraction of the hash space whose variant changes when contiguous ranges in config order
/// (what GrowthBook and TensorZero lay out) go from `a` to `b`, exactly.
///
/// Variant `i` of `a` holds `[c_{i−1} / T_a, c_i / T_a)` of the unit interval, `c` being the
/// running sums of the weights and `T_a` their total; the fraction that stays is the overlap,
/// summed over the ids, of an id's range in `a` with its range in `b`. Computed in integers
/// (both sides scaled by `T_a · T_b`), so it is exact up to the final division. A hash of
/// `h` bits maps to these ranges with an error of at most `T / 2^h` at each boundary.
pub fn contiguous_moved(a: &Split, b: &Split) -> f64 {
    fn ranges(s: &Split, scale: u128) -> Vec<(&str, u128, u128)> {
        let mut start = 0u128;
        s.iter()
            .map(|(id, w)| {
                let end = start + u128::from(*w) * scale;
                let r = (id.as_str(), start, end);
                start = end;
                r
            })
            .collect()
    }
    let total = |s: &Split| s.iter().map(|(_, w)| u128::from(*w)).sum::<u128>();
    let (ta, tb) = (total(a), total(b));
    if ta == 0 || tb == 0 {
        return 1.0;
    }
    let (ra, rb) = (ranges(a, tb), ranges(b, ta));
    let mut kept = 0u128;
    for &(id, s1, e1) in &ra {
        for &(_, s2, e2) in rb.iter().filter(|(other, _, _)| *other == id) {
            kept += e1.min(e2).saturating_sub(s1.max(s2));
        }
    }
    1.0 - kept as f64 / (ta * tb) as f64
}

/// One change of the suite: a split before and after.
#[derive(Debug, Clone)]
pub struct Change {
    /// The name the report prints.
    pub name: &'static str,
    /// The split before the change.
    pub from: Split,
    /// The split after the change.
    pub to: Split,
    /// The variant whose weight alone changes, if that is the kind of change.
    pub pivot: Option<&'static str>,
}

/// The exact figures of one [`Change`], as fractions of users in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exact {
    /// `TV(p, q)`: the least any scheme can move.
    pub tv: f64,
    /// `1 − J_P(p, q)`: what continuous P-MinHash moves.
    pub pminhash: f64,
    /// `2·TV / (1 + TV)`: the optimal worst-case bound.
    pub bound: f64,
    /// What abroute moves, over all buckets.
    pub abroute: f64,
    /// For a change of one variant's weight: what abroute moves between the other variants.
    pub cross: Option<f64>,
    /// What contiguous ranges in config order move, exactly.
    pub contiguous: f64,
}

impl Change {
    /// The exact figures of this change (builds both sticky tables: milliseconds in release).
    pub fn exact(&self) -> Exact {
        self.exact_with(&table(&self.from), &table(&self.to))
    }

    /// [`Change::exact`] with the two tables already built (`ta` from `from`, `tb` from `to`).
    pub fn exact_with(&self, ta: &StickyTable, tb: &StickyTable) -> Exact {
        let (p, q, _) = shares(&self.from, &self.to);
        let d = tv(&p, &q);
        let (abroute, cross) = moved_buckets(ta, tb, self.pivot);
        Exact {
            tv: d,
            pminhash: pminhash_moved(&p, &q),
            bound: 2.0 * d / (1.0 + d),
            abroute,
            cross: self.pivot.map(|_| cross),
            contiguous: contiguous_moved(&self.from, &self.to),
        }
    }
}

/// The 17 named changes of the disruption report, in its order (fixed seeds).
pub fn suite() -> Vec<Change> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sticky_peers::ContiguousRanges;

    /// `x` as the report prints it.
    fn f4(x: f64) -> String {
        format!("{x:.4}")
    }

    /// The report's rows in `docs/sticky.md` (`--bin disruption -- --sweep 1000`): name, `TV`,
    /// `1-J_P`, `2TV/1+TV` and `exact`, as printed.
    const REPORT: [(&str, &str, &str, &str, &str); 17] = [
        (
            "ramp 10/90 -> 20/80",
            "0.1000",
            "0.1000",
            "0.1818",
            "0.1008",
        ),
        ("ramp 1/99 -> 50/50", "0.4900", "0.4900", "0.6577", "0.4900"),
        ("1/999 -> 2/998", "0.0010", "0.0010", "0.0020", "0.0010"),
        (
            "add: 50/50 -> 34/33/33",
            "0.3300",
            "0.3334",
            "0.4962",
            "0.3335",
        ),
        (
            "remove: 34/33/33 -> 50/50",
            "0.3300",
            "0.3334",
            "0.4962",
            "0.3335",
        ),
        ("add: 3 -> 4 equal", "0.2500", "0.2500", "0.4000", "0.2512"),
        (
            "weight 0 -> 10: 50/50/0",
            "0.0909",
            "0.0909",
            "0.1667",
            "0.0912",
        ),
        (
            "one up: 25x4 -> 40/25/25/25",
            "0.0978",
            "0.0978",
            "0.1782",
            "0.0987",
        ),
        (
            "reorder 50/30/20 (same ids)",
            "0.0000",
            "0.0000",
            "0.0000",
            "0.0000",
        ),
        (
            "swap two: 50/30/20 -> 30/50/20",
            "0.2000",
            "0.2333",
            "0.3333",
            "0.2341",
        ),
        (
            "seed 33/33/34 -> 50/30/20",
            "0.1700",
            "0.1995",
            "0.2906",
            "0.2003",
        ),
        ("rename one of 8", "0.1818", "0.3077", "0.3077", "0.3068"),
        (
            "16 random, remove one",
            "0.0640",
            "0.0640",
            "0.1202",
            "0.0652",
        ),
        (
            "64 equal, one doubled",
            "0.0151",
            "0.0151",
            "0.0298",
            "0.0181",
        ),
        (
            "64 random, swap two",
            "0.0183",
            "0.0358",
            "0.0360",
            "0.0398",
        ),
        (
            "64 random, each +-10%",
            "0.0261",
            "0.0341",
            "0.0509",
            "0.0372",
        ),
        (
            "64 random -> 64 random",
            "0.3088",
            "0.3958",
            "0.4718",
            "0.3969",
        ),
    ];

    /// The suite is the report's, in its order, and its closed forms (which depend on every
    /// weight, the seeded ones included) are the printed ones.
    #[test]
    fn suite_is_the_reports() {
        let s = suite();
        assert_eq!(s.len(), REPORT.len());
        for (c, (name, d, jp, bound, _)) in s.iter().zip(REPORT) {
            assert_eq!(c.name, name);
            let (p, q, _) = shares(&c.from, &c.to);
            let t = tv(&p, &q);
            assert_eq!(f4(t), d, "{name}: TV");
            assert_eq!(f4(pminhash_moved(&p, &q)), jp, "{name}: 1-J_P");
            assert_eq!(f4(2.0 * t / (1.0 + t)), bound, "{name}: bound");
        }
    }

    /// abroute's exact moved fraction over all buckets, as printed, for every row, and the
    /// `cross` column of the single-weight changes.
    #[test]
    fn exact_figures_match_the_printed_report() {
        let cross = [
            ("ramp 10/90 -> 20/80", "0.0000"),
            ("add: 3 -> 4 equal", "0.0012"),
            ("weight 0 -> 10: 50/50/0", "0.0003"),
            ("64 equal, one doubled", "0.0028"),
        ];
        for (c, row) in suite().iter().zip(REPORT) {
            let e = c.exact();
            assert_eq!(f4(e.abroute), row.4, "{}: exact", c.name);
            assert_eq!(e.cross.is_some(), c.pivot.is_some());
            if let Some(&(_, printed)) = cross.iter().find(|r| r.0 == c.name) {
                assert_eq!(
                    e.cross.map(f4).as_deref(),
                    Some(printed),
                    "{}: cross",
                    c.name
                );
            }
        }
    }

    #[test]
    fn contiguous_closed_form() {
        let c = |a: &[(&str, u32)], b: &[(&str, u32)]| contiguous_moved(&split(a), &split(b));
        // 50/50 -> 34/33/33: a keeps [0, .34), b keeps [.5, .67).
        assert!(
            (c(&[("a", 50), ("b", 50)], &[("a", 34), ("b", 33), ("c", 33)]) - 0.49).abs() < 1e-12
        );
        // Reordering the same ids moves what no longer lines up.
        assert!(
            (c(
                &[("a", 50), ("b", 30), ("c", 20)],
                &[("c", 20), ("a", 50), ("b", 30)]
            ) - 0.6)
                .abs()
                < 1e-12
        );
        assert_eq!(c(&[("a", 1), ("b", 3)], &[("a", 2), ("b", 6)]), 0.0);
        assert_eq!(c(&[("a", 1)], &[("b", 1)]), 1.0);
    }

    /// The closed form against [`ContiguousRanges`] (the report's baseline) on an even grid of
    /// 64-bit hashes: the grid's moved fraction is within one grid step per range boundary.
    #[test]
    fn contiguous_matches_the_baseline_on_a_grid() {
        const STEPS: u64 = 1 << 16;
        for c in suite() {
            let w = |s: &Split| s.iter().map(|(_, w)| *w).collect::<Vec<u32>>();
            let (ca, cb) = (
                ContiguousRanges::new(&w(&c.from)),
                ContiguousRanges::new(&w(&c.to)),
            );
            let moved = (0..STEPS)
                .map(|i| i * (u64::MAX / STEPS))
                .filter(|&h| c.from[ca.assign(h)].0 != c.to[cb.assign(h)].0)
                .count();
            let boundaries = (c.from.len() + c.to.len()) as f64;
            let grid = moved as f64 / STEPS as f64;
            let exact = contiguous_moved(&c.from, &c.to);
            assert!(
                (grid - exact).abs() <= boundaries / STEPS as f64,
                "{}: grid {grid} vs closed form {exact}",
                c.name
            );
        }
    }
}

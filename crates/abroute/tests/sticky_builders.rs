//! The differential test of the sticky builders: [`StickyTable::new`] (proposals for routes of
//! up to 16 variants, the race past that) against [`StickyTable::new_by_race`] (the first
//! builder, kept as the reference), entry for entry over 10,000 random routes from a fixed seed.
//!
//! The routes mix variant counts 1 to 20, weights from 0 to `u32::MAX` (zero weights, equal
//! weights, one huge weight beside tiny ones) and ids of random bytes, so that ties, empty
//! quotas and long rejection chains all occur. The core is optimized in tests
//! (`[profile.test.package.abroute]` in the workspace's Cargo.toml), so the 20,000 builds take
//! seconds; two threads share them.

use abroute::sticky::{STICKY_SLOTS, StickyTable};
use rand::rngs::SmallRng as StdRng;
use rand::{RngExt, SeedableRng};

/// The number of random routes compared.
const ROUTES: usize = 10_000;

/// One random route: a salt and `(variant_id, weight)` pairs with distinct ids.
fn random_route(rng: &mut StdRng) -> (Vec<u8>, Vec<(String, u32)>) {
    let n = match rng.random_range(0..20) {
        0..=13 => rng.random_range(1..=4),
        14..=18 => rng.random_range(5..=16),
        _ => rng.random_range(17..=20),
    };
    let shape = rng.random_range(0..4);
    let variants = (0..n)
        .map(|i| {
            let weight = match shape {
                0 => rng.random_range(0..=100),
                1 => 50,
                2 if i == 0 => u32::MAX - rng.random_range(0..1000),
                2 => rng.random_range(0..=3),
                _ => rng.random::<u32>(),
            };
            let len = rng.random_range(0..12);
            let id: String = (0..len)
                .map(|_| char::from(rng.random_range(b'a'..=b'z')))
                .collect();
            (format!("{id}-{i}"), weight)
        })
        .collect::<Vec<_>>();
    let mut variants = variants;
    if variants.iter().all(|&(_, w)| w == 0) {
        variants[0].1 = 1;
    }
    let salt: Vec<u8> = (0..rng.random_range(0..24))
        .map(|_| rng.random::<u8>())
        .collect();
    (salt, variants)
}

/// Compares the two builders on `count` routes drawn from `seed`; the first difference panics
/// with the route and the first bucket that differs.
fn compare(seed: u64, count: usize) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut compared = 0;
    for route in 0..count {
        let (salt, owned) = random_route(&mut rng);
        let variants: Vec<(&str, u32)> = owned.iter().map(|(id, w)| (id.as_str(), *w)).collect();
        let reference = StickyTable::new_by_race(&salt, &variants)
            .unwrap_or_else(|e| panic!("route {route} of seed {seed}: {variants:?}: {e}"));
        let fast = StickyTable::new(&salt, &variants)
            .unwrap_or_else(|e| panic!("route {route} of seed {seed}: {variants:?}: {e}"));
        if fast != reference {
            let bucket =
                (0..STICKY_SLOTS as u32).find(|&b| fast.variant_at(b) != reference.variant_at(b));
            panic!(
                "route {route} of seed {seed} ({variants:?}, salt {salt:?}): the builders differ \
                 at bucket {bucket:?}"
            );
        }
        compared += 1;
    }
    compared
}

#[test]
fn the_fast_builder_gives_the_reference_tables() {
    let per_thread = ROUTES / 2;
    let compared: usize = std::thread::scope(|s| {
        let a = s.spawn(|| compare(0x5EED_0001, per_thread));
        let b = s.spawn(|| compare(0x5EED_0002, ROUTES - per_thread));
        [a, b]
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .sum()
    });
    assert_eq!(compared, ROUTES);
}

/// Every slot's owner, one by one, for a few fixed routes: the entry-for-entry comparison
/// spelled out (the test above compares whole tables with `==`).
#[test]
fn fixed_routes_agree_slot_for_slot() {
    for variants in [
        &[("a", 33), ("b", 33), ("c", 34)][..],
        &[("only", 7)][..],
        &[("x", 1), ("y", 0), ("z", 999_999)][..],
        &[("p", u32::MAX), ("q", u32::MAX)][..],
    ] {
        let reference = StickyTable::new_by_race(b"fixed", variants).expect("builds");
        let fast = StickyTable::new(b"fixed", variants).expect("builds");
        for bucket in 0..STICKY_SLOTS as u32 {
            assert_eq!(
                fast.variant_at(bucket),
                reference.variant_at(bucket),
                "{variants:?}"
            );
        }
        for i in 0..variants.len() {
            assert_eq!(fast.slot_count(i), reference.slot_count(i));
        }
    }
}

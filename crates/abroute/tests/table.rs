//! Behaviour of the alias table: exactness counted over its own arithmetic, zero weights,
//! a fixed-seed chi-square test, errors.

use abroute::{AliasTable, WeightError};
use proptest::prelude::*;
use rand::distr::Distribution;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TWO_64: u128 = 1 << 64;

/// Checks the documented bound: for every index j, |count_j / 2^64 − w_j / W| ≤ N/2 · 2^-64,
/// and the absolute bound 2^-40 whenever n ≤ 2^24. Exact integer arithmetic.
fn check_exactness(weights: &[u32]) {
    let table = AliasTable::new(weights).expect("valid weights");
    let counts = table.preimage_counts();
    assert_eq!(counts.len(), weights.len());
    assert_eq!(
        counts.iter().sum::<u128>(),
        TWO_64,
        "every input maps somewhere"
    );
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let half_buckets = table.buckets() as u128 / 2;
    for (j, (&count, &w)) in counts.iter().zip(weights).enumerate() {
        // |count·W − w·2^64| is the error times 2^64·W.
        let lhs = count * total;
        let rhs = u128::from(w) * TWO_64;
        let err = lhs.abs_diff(rhs);
        assert!(
            err <= half_buckets * total,
            "index {j}: error {err} over bound {} (n = {})",
            half_buckets * total,
            weights.len()
        );
        if weights.len() <= 1 << 24 {
            assert!(err <= (1u128 << 24) * total, "index {j}: above 2^-40");
        }
        if w == 0 {
            assert_eq!(count, 0, "weight-0 index {j} is reachable");
        }
    }
}

#[test]
fn exact_for_small_examples() {
    check_exactness(&[1]);
    check_exactness(&[33, 33, 34]);
    check_exactness(&[0, 0, 1]);
    check_exactness(&[u32::MAX, 1]);
    check_exactness(&[u32::MAX; 7]);
    check_exactness(&[1, 999]);
}

#[test]
fn exact_at_two_to_the_twenty() {
    let mut rng = SmallRng::seed_from_u64(20);
    let weights: Vec<u32> = (0..1 << 20).map(|_| rng.next_u32() % 1001).collect();
    check_exactness(&weights);
}

#[test]
fn exact_at_two_to_the_twenty_four() {
    // The largest size the 2^-40 bound is promised for, with extreme and zero weights.
    let n = 1usize << 24;
    let mut rng = SmallRng::seed_from_u64(24);
    let weights: Vec<u32> = (0..n)
        .map(|i| match i % 5 {
            0 => 0,
            1 => u32::MAX,
            _ => rng.next_u32(),
        })
        .collect();
    check_exactness(&weights);
}

#[test]
fn exact_just_past_a_power_of_two() {
    // n = 2^k + 1 pads to 2^(k+1) buckets: the worst case for the bound relative to n.
    let weights: Vec<u32> = (0..(1 << 16) + 1).map(|i| (i % 97) as u32).collect();
    check_exactness(&weights);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn exact_for_random_weights(weights in prop::collection::vec(
        prop_oneof![Just(0u32), 1u32..10, any::<u32>()], 1..600)
        .prop_filter("positive sum", |w| w.iter().any(|&x| x > 0)))
    {
        check_exactness(&weights);
    }

    #[test]
    fn zero_weights_are_never_picked(
        weights in prop::collection::vec(prop_oneof![Just(0u32), 1u32..1000], 1..200)
            .prop_filter("positive sum", |w| w.iter().any(|&x| x > 0)),
        xs in prop::collection::vec(any::<u64>(), 64),
    ) {
        let table = AliasTable::new(&weights).unwrap();
        for x in xs {
            let i = table.index_for(x);
            prop_assert!(i < weights.len());
            prop_assert!(weights[i] > 0, "picked weight-0 index {}", i);
        }
        for (j, &c) in table.preimage_counts().iter().enumerate() {
            prop_assert_eq!(c == 0, weights[j] == 0);
        }
    }
}

/// Pearson's chi-square over `draws` samples from a fixed seed, against the critical value at
/// p = 0.001. Deterministic: the seed fixes every draw, so the test cannot flake.
fn chi_square(weights: &[u32], draws: u64, seed: u64) -> (f64, usize) {
    let table = AliasTable::new(weights).expect("valid weights");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut counts = vec![0u64; weights.len()];
    for _ in 0..draws {
        counts[table.sample(&mut rng)] += 1;
    }
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    let mut stat = 0.0;
    let mut cells = 0;
    for (&c, &w) in counts.iter().zip(weights) {
        if w == 0 {
            assert_eq!(c, 0);
            continue;
        }
        let expected = draws as f64 * f64::from(w) / total;
        stat += (c as f64 - expected).powi(2) / expected;
        cells += 1;
    }
    (stat, cells - 1)
}

/// Upper 0.1% point of the chi-square distribution (Wilson–Hilferty approximation).
fn critical(df: usize) -> f64 {
    let k = df as f64;
    let z = 3.090_232; // standard normal upper 0.1%
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

#[test]
fn chi_square_fixed_seed() {
    for (weights, seed) in [
        (vec![33, 33, 34], 1u64),
        ((1..=10).collect::<Vec<u32>>(), 2),
        (vec![1, 999], 3),
        (vec![5, 0, 5, 0, 90], 4),
        ((0..256).map(|i| 1 + (i * 7919) % 1000).collect(), 5),
    ] {
        let (stat, df) = chi_square(&weights, 1_000_000, seed);
        assert!(
            stat < critical(df),
            "chi-square {stat:.1} ≥ {:.1} (df {df}) for {weights:?}",
            critical(df)
        );
    }
}

#[test]
fn distribution_trait_and_sample_agree() {
    let table = AliasTable::new(&[1, 2, 3]).unwrap();
    let mut a = SmallRng::seed_from_u64(9);
    let mut b = SmallRng::seed_from_u64(9);
    for _ in 0..1000 {
        let x = Distribution::<usize>::sample(&table, &mut a);
        assert_eq!(x, table.sample(&mut b));
    }
}

#[test]
fn errors() {
    assert_eq!(AliasTable::new(&[]), Err(WeightError::Empty));
    assert_eq!(AliasTable::new(&[0, 0]), Err(WeightError::AllZero));
    assert_eq!(
        WeightError::AllZero.to_string(),
        "every weight is 0, so nothing can be picked"
    );
}

#[test]
fn deterministic_index_for() {
    // Value stability: these picks must never change within a major version.
    let table = AliasTable::new(&[33, 33, 34]).unwrap();
    let picks: Vec<usize> = [0u64, 1 << 62, 1 << 63, u64::MAX, 0x5555_5555_5555_5555]
        .iter()
        .map(|&x| table.index_for(x))
        .collect();
    // Worked by hand in docs/design.md: buckets 0 (full), 1 (68% keeps 1, else 0),
    // 2 (36% keeps 2, else 1), 3 (padding, all to 2).
    assert_eq!(picks, vec![0, 1, 2, 2, 1]);
}

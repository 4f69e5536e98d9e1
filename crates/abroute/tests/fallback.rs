//! Fallback order for random decisions: each other positive-weight variant exactly once, and the
//! first fallback follows the conditional distribution given the primary.

use abroute::{RequestContext, RouterConfig};
use proptest::prelude::*;

fn config(weights: &[u32]) -> RouterConfig {
    let variants: Vec<String> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(r#"{{"variant":{{"variant_id":"v{i}","model_id":"m{i}"}},"weight":{w}}}"#)
        })
        .collect();
    RouterConfig::from_json(&format!(
        r#"{{"name":"r","defaultRoute":{{"route_id":"d","variants":[{}]}}}}"#,
        variants.join(",")
    ))
    .expect("valid")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn each_other_positive_variant_exactly_once(
        weights in prop::collection::vec(prop_oneof![Just(0u32), 1u32..100, Just(1_000_000)], 1..40)
            .prop_filter("positive", |w| w.iter().any(|&x| x > 0)),
        draw in any::<u64>(),
    ) {
        let router = config(&weights).compile().unwrap();
        let d = router.decide(&RequestContext::new().with_random(draw)).unwrap();
        let primary = d.variant_index();
        let order: Vec<usize> = d.fallbacks().map(|(i, _)| i).collect();
        let mut expected: Vec<usize> =
            (0..weights.len()).filter(|&i| i != primary && weights[i] > 0).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        prop_assert_eq!(&sorted, &expected, "order {:?}", order);
        expected.clear();
        // Reproducible from the draw.
        let again: Vec<usize> = d.fallbacks().map(|(i, _)| i).collect();
        prop_assert_eq!(order, again);
    }

    #[test]
    fn first_fallback_is_the_conditional_distribution(
        weights in prop::collection::vec(1u32..50, 2..6),
    ) {
        let router = config(&weights).compile().unwrap();
        let n = weights.len();
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        // counts[primary][first fallback], over a deterministic equidistributed draw sequence.
        let mut counts = vec![vec![0u64; n]; n];
        let mut x = 0u64;
        for _ in 0..40_000 {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let d = router.decide(&RequestContext::new().with_random(x)).unwrap();
            if let Some((j, _)) = d.fallbacks().next() {
                counts[d.variant_index()][j] += 1;
            }
        }
        for (i, row) in counts.iter().enumerate() {
            let m: u64 = row.iter().sum();
            if m < 2_000 {
                continue;
            }
            let rest = (total - u64::from(weights[i])) as f64;
            for (j, &c) in row.iter().enumerate() {
                let p = if i == j { 0.0 } else { f64::from(weights[j]) / rest };
                let sd = (p * (1.0 - p) / m as f64).sqrt();
                let got = c as f64 / m as f64;
                prop_assert!(
                    (got - p).abs() <= 5.0 * sd + 1e-9,
                    "primary {} fallback {}: {} vs exact {} (n = {}, weights {:?})",
                    i, j, got, p, m, weights
                );
            }
        }
    }
}

#[test]
fn heavy_primary_uses_the_exact_scan() {
    // The primary holds 99.9999% of the weight: rejection would loop; the scan answers at once.
    let router = config(&[999_999, 0, 1]).compile().unwrap();
    let d = router
        .decide(&RequestContext::new().with_random(0))
        .unwrap();
    assert_eq!(d.variant_index(), 0);
    let order: Vec<&str> = d.fallbacks().map(|(_, v)| v.id()).collect();
    assert_eq!(order, vec!["v2"]);
}

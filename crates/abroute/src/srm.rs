//! The sample-ratio guard: did the arms of a split get the traffic their weights promise?
//!
//! A sample ratio mismatch (SRM) means the assignment, or what is counted of it, is broken,
//! and every metric read from the experiment is suspect. The test: the *assigned* counts of a
//! route's arms against their weights.
//!
//! - Two arms: the exact two-sided binomial test ([`binomial_p_value`]): the probability,
//!   under the weights, of a count at most as likely as the one seen (the method of R's
//!   `binom.test`, with its relative tolerance of 1 + 10⁻⁷ for ties).
//! - More arms: Pearson's chi-square, `X² = Σ (oᵢ − eᵢ)² / eᵢ` with `eᵢ = n·wᵢ/Σw`, against the
//!   chi-square distribution with `k − 1` degrees of freedom ([`chi_square_p_value`]):
//!   `p = Q((k−1)/2, X²/2)`, the regularized upper incomplete gamma function (series below
//!   `a + 1`, Lentz's continued fraction above).
//!
//! Arms of weight zero are left out of both the counts and the weights.
//!
//! Sticky traffic is counted once per key ([`SrmCounter::assign_sticky`]): a heavy user sends
//! a thousand requests to one arm, which per request looks like a skew though nothing is
//! wrong. Remembering every key is unbounded, so the counter keeps an *adaptive distinct
//! sample* of at most [`SrmCounter::MAX_KEYS`] keys: a key is sampled when the top `level`
//! bits of a mix of its hash (independent of the assignment's use of it) are zero; when the
//! sample is full, `level` rises by one and the keys no longer sampled are dropped, halving
//! it. The sample is then a uniform random subset of the distinct keys (each kept with
//! probability 2^−level, whatever its arm), so the test stays exact for it; what is lost is
//! power: beyond `MAX_KEYS` keys the test sees between `MAX_KEYS/2` and `MAX_KEYS` of them.
//! Memory: 9 bytes a key (the 64-bit hash and the arm), 576 KiB at most per route and config
//! version. Two distinct keys with the same 64-bit hash count once (probability about
//! `n²/2⁶⁵`: 10⁻¹⁰ for 65,536 keys).

use std::collections::HashMap;

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, nine coefficients: about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// `ln P(X = k)` for `X ~ Binomial(n, p)`, `0 < p < 1`.
fn ln_pmf(n: u64, k: u64, p: f64) -> f64 {
    let (n, k) = (n as f64, k as f64);
    ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
        + k * p.ln()
        + (n - k) * (-p).ln_1p()
}

/// The exact two-sided binomial p-value of `x` successes in `n` trials of probability `p`:
/// the total probability of the outcomes at most as likely as `x`.
pub fn binomial_p_value(x: u64, n: u64, p: f64) -> f64 {
    if n == 0 || x > n {
        return 1.0;
    }
    if p <= 0.0 {
        return if x == 0 { 1.0 } else { 0.0 };
    }
    if p >= 1.0 {
        return if x == n { 1.0 } else { 0.0 };
    }
    let d = ln_pmf(n, x, p) + 1e-7f64.ln_1p();
    let mode = (((n + 1) as f64 * p).floor() as u64).min(n);
    // Outcomes more likely than `x` form an interval around the mode (the pmf is unimodal).
    let more = |k: u64| ln_pmf(n, k, p) > d;
    if !more(mode) {
        return 1.0;
    }
    // The first k in [0, mode] that is more likely, and the last in [mode, n].
    let (mut lo, mut hi) = (0u64, mode);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if more(mid) { hi = mid } else { lo = mid + 1 }
    }
    let first = lo;
    let (mut lo, mut hi) = (mode, n);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if more(mid) { lo = mid } else { hi = mid - 1 }
    }
    let last = lo;
    // The two tails, summed from their inner edge outward until the terms stop mattering.
    let mut sum = 0.0f64;
    let mut k = first;
    while k > 0 {
        k -= 1;
        let t = ln_pmf(n, k, p).exp();
        sum += t;
        if t <= sum * 1e-17 {
            break;
        }
    }
    let mut k = last;
    while k < n {
        k += 1;
        let t = ln_pmf(n, k, p).exp();
        sum += t;
        if t <= sum * 1e-17 {
            break;
        }
    }
    sum.min(1.0)
}

/// The regularized upper incomplete gamma function `Q(a, x) = Γ(a, x) / Γ(a)`.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_front = -x + a * x.ln() - ln_gamma(a);
    if x < a + 1.0 {
        // The series of P(a, x).
        let (mut ap, mut sum, mut del) = (a, 1.0 / a, 1.0 / a);
        for _ in 0..1000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * ln_front.exp()).clamp(0.0, 1.0)
    } else {
        // Lentz's continued fraction of Q(a, x).
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (ln_front.exp() * h).clamp(0.0, 1.0)
    }
}

/// Pearson's chi-square p-value of `counts` against `weights` (same length, weights > 0).
pub fn chi_square_p_value(counts: &[u64], weights: &[f64]) -> f64 {
    let n: u64 = counts.iter().sum();
    let total: f64 = weights.iter().sum();
    if n == 0 || counts.len() < 2 || total <= 0.0 {
        return 1.0;
    }
    let stat: f64 = counts
        .iter()
        .zip(weights)
        .map(|(&o, &w)| {
            let e = n as f64 * w / total;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    gamma_q((counts.len() - 1) as f64 / 2.0, stat / 2.0)
}

/// The SRM p-value of assigned `counts` under `weights` (one each per arm): binomial for two
/// arms of positive weight, chi-square for more; `None` with fewer than two such arms.
pub fn srm_p_value(counts: &[u64], weights: &[u32]) -> Option<f64> {
    let mut c = [0u64; 64];
    let mut w = [0f64; 64];
    let mut k = 0;
    for (&n, &wt) in counts.iter().zip(weights) {
        if wt > 0 && k < c.len() {
            c[k] = n;
            w[k] = f64::from(wt);
            k += 1;
        }
    }
    match k {
        0 | 1 => None,
        2 => Some(binomial_p_value(c[0], c[0] + c[1], w[0] / (w[0] + w[1]))),
        _ => Some(chi_square_p_value(&c[..k], &w[..k])),
    }
}

/// The assignments of one route under one config version, counted for the SRM test. See the
/// [module documentation](crate::srm).
#[derive(Debug, Clone)]
pub struct SrmCounter {
    /// Random assignments, per arm.
    random: Vec<u64>,
    /// Distinct sticky keys sampled, per arm.
    sticky: Vec<u64>,
    /// The sampled keys: mixed hash to arm.
    keys: HashMap<u64, u8>,
    level: u32,
    /// Sticky requests (every one, for the record).
    sticky_requests: u64,
    /// Requests left out: re-picked by capability routing or served by fail-open.
    excluded: u64,
}

/// splitmix64's finalizer: the sampling hash, independent of how the assignment used the
/// key's hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SrmCounter {
    /// The most sticky keys kept (per route and config version).
    pub const MAX_KEYS: usize = 65_536;

    /// A counter for a route of `arms` variants (at most 255 are counted).
    pub fn new(arms: usize) -> SrmCounter {
        let arms = arms.min(255);
        SrmCounter {
            random: vec![0; arms],
            sticky: vec![0; arms],
            keys: HashMap::new(),
            level: 0,
            sticky_requests: 0,
            excluded: 0,
        }
    }

    /// A request randomly assigned to `arm`.
    pub fn assign_random(&mut self, arm: usize) {
        if let Some(c) = self.random.get_mut(arm) {
            *c += 1;
        }
    }

    /// A request assigned to `arm` from the sticky key of hash `key_hash`: counted once per key.
    pub fn assign_sticky(&mut self, key_hash: u64, arm: usize) {
        self.assign_sticky_capped(key_hash, arm, Self::MAX_KEYS);
    }

    fn assign_sticky_capped(&mut self, key_hash: u64, arm: usize, cap: usize) {
        self.sticky_requests += 1;
        if arm >= self.sticky.len() {
            return;
        }
        let h = mix(key_hash);
        if !self.sampled(h) || self.keys.contains_key(&h) {
            return;
        }
        self.keys.insert(h, arm as u8);
        self.sticky[arm] += 1;
        while self.keys.len() > cap && self.level < 64 {
            self.level += 1;
            let level = self.level;
            self.keys.retain(|&k, _| Self::sampled_at(k, level));
            self.sticky.iter_mut().for_each(|c| *c = 0);
            for &a in self.keys.values() {
                self.sticky[usize::from(a)] += 1;
            }
        }
    }

    fn sampled_at(h: u64, level: u32) -> bool {
        level == 0 || h >> (64 - level) == 0
    }

    fn sampled(&self, h: u64) -> bool {
        Self::sampled_at(h, self.level)
    }

    /// A request left out of the test (capability re-pick, fail-open).
    pub fn exclude(&mut self) {
        self.excluded += 1;
    }

    /// The counts the test reads: random assignments plus sampled sticky keys, per arm.
    pub fn counts(&self) -> Vec<u64> {
        self.random
            .iter()
            .zip(&self.sticky)
            .map(|(r, s)| r + s)
            .collect()
    }

    /// How many assignments the test reads.
    pub fn total(&self) -> u64 {
        self.counts().iter().sum()
    }

    /// Requests left out.
    pub fn excluded(&self) -> u64 {
        self.excluded
    }

    /// Sticky requests seen (every one, not once per key).
    pub fn sticky_requests(&self) -> u64 {
        self.sticky_requests
    }

    /// The sampling level: each distinct key is in the sample with probability `2^-level`.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// The SRM p-value under `weights` (see [`srm_p_value`]).
    pub fn p_value(&self, weights: &[u32]) -> Option<f64> {
        srm_p_value(&self.counts(), weights)
    }
}

/// A p-value below which, after [`MIN_ASSIGNMENTS`], a route's split is reported as broken.
pub const ALARM_P: f64 = 0.001;
/// The assignments needed before an SRM alarm.
pub const MIN_ASSIGNMENTS: u64 = 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 as a seeded generator.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            ((u128::from(mix(self.0)) * u128::from(n)) >> 64) as u64
        }
    }

    #[test]
    fn binomial_matches_known_values() {
        // R: binom.test(60, 100, 0.5)$p.value = 0.05688793
        assert!((binomial_p_value(60, 100, 0.5) - 0.056_887_93).abs() < 1e-7);
        // binom.test(7, 20, 0.3)$p.value = 0.6294980 (asymmetric)
        assert!((binomial_p_value(7, 20, 0.3) - 0.629_498_0).abs() < 1e-6);
        // binom.test(50, 100, 0.5) = 1; binom.test(0, 10, 0.5) = 0.001953125
        assert!((binomial_p_value(50, 100, 0.5) - 1.0).abs() < 1e-12);
        assert!((binomial_p_value(0, 10, 0.5) - 0.001_953_125).abs() < 1e-12);
        assert_eq!(binomial_p_value(0, 0, 0.5), 1.0);
    }

    #[test]
    fn chi_square_matches_known_values() {
        // pchisq(7.815, 3, lower=FALSE) ≈ 0.05; pchisq(1, 1, lower = FALSE) = 0.3173105
        assert!((gamma_q(1.5, 7.814_727_9 / 2.0) - 0.05).abs() < 1e-6);
        assert!((gamma_q(0.5, 0.5) - 0.317_310_5).abs() < 1e-6);
        // counts 30/30/40 against equal weights: X² = 2, df 2, p = e^-1.
        let p = chi_square_p_value(&[30, 30, 40], &[1.0, 1.0, 1.0]);
        assert!((p - (-1.0f64).exp()).abs() < 1e-9, "{p}");
        assert!((ln_gamma(10.0) - 362_880f64.ln()).abs() < 1e-10);
    }

    #[test]
    fn a_51_49_skew_is_caught_at_100_000() {
        let p = srm_p_value(&[51_000, 49_000], &[50, 50]).unwrap_or(1.0);
        assert!(p < 1e-9, "{p}");
        let honest = srm_p_value(&[50_100, 49_900], &[50, 50]).unwrap_or(0.0);
        assert!(honest > 0.1, "{honest}");
        assert_eq!(srm_p_value(&[5, 0], &[1, 0]), None);
        assert!(srm_p_value(&[5, 9, 3], &[0, 1, 1]).is_some());
    }

    /// The rate of p < α over many honest simulated experiments is about α (fixed seeds).
    fn false_alarm_rate(sticky: bool, arms: &[u32], experiments: usize, n: usize) -> [f64; 2] {
        let mut rng = Rng(0x5e4d_0017 + arms.len() as u64 + u64::from(sticky));
        let total: u32 = arms.iter().sum();
        let mut alarms = [0usize; 2];
        for e in 0..experiments {
            // Each experiment its own salt: its own assignment of the users.
            let salt = mix(e as u64 ^ 0xabcd);
            let mut c = SrmCounter::new(arms.len());
            let users = n / 4;
            for _ in 0..n {
                let (key, draw) = if sticky {
                    // Heavy users: the key's arm is fixed by its hash.
                    let u: u64 = rng.below(users as u64).pow(2) / users as u64;
                    let key = mix(u ^ salt);
                    (key, (key % u64::from(total)) as u32)
                } else {
                    (0, rng.below(u64::from(total)) as u32)
                };
                let mut acc = 0;
                let arm = arms
                    .iter()
                    .position(|&w| {
                        acc += w;
                        draw < acc
                    })
                    .unwrap_or(0);
                if sticky {
                    c.assign_sticky_capped(key, arm, 512);
                } else {
                    c.assign_random(arm);
                }
            }
            let p = c.p_value(arms).unwrap_or(1.0);
            alarms[0] += usize::from(p < 0.05);
            alarms[1] += usize::from(p < 0.01);
        }
        alarms.map(|a| a as f64 / experiments as f64)
    }

    #[test]
    fn honest_traffic_alarms_at_the_nominal_rate() {
        for (sticky, arms) in [
            (false, &[50u32, 50][..]),
            (false, &[70, 30]),
            (false, &[40, 30, 30]),
            (true, &[50, 50]),
            (true, &[25, 25, 50]),
        ] {
            let [r05, r01] = false_alarm_rate(sticky, arms, 1_000, 2_000);
            // Binomial sd of a rate of 0.05 over 1,000 experiments: 0.007. The exact binomial
            // test is conservative (at most α), never above it.
            assert!(
                (0.02..=0.05 + 0.022).contains(&r05),
                "{sticky} {arms:?}: {r05}"
            );
            assert!(r01 <= 0.01 + 0.01, "{sticky} {arms:?}: {r01}");
        }
    }

    #[test]
    fn sticky_keys_count_once_and_the_sample_stays_bounded() {
        let mut c = SrmCounter::new(2);
        for _ in 0..1000 {
            c.assign_sticky(7, 0);
        }
        assert_eq!(c.counts(), vec![1, 0]);
        assert_eq!(c.sticky_requests(), 1000);
        for k in 0..10_000u64 {
            c.assign_sticky_capped(k, (k % 2) as usize, 1_000);
        }
        assert!(
            c.keys.len() <= 1_000 && c.keys.len() >= 500,
            "{}",
            c.keys.len()
        );
        assert!(c.level() >= 3);
        assert_eq!(c.total() as usize, c.keys.len());
        // Per request a heavy user skews; per key nothing is wrong.
        assert!(c.p_value(&[1, 1]).unwrap_or(0.0) > 0.001);
    }
}

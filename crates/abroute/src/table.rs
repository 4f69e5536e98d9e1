//! The alias table: an exact, O(1) weighted pick from one 64-bit draw.
//!
//! [`AliasTable`] is Walker's alias method built with exact integer arithmetic (Vose's
//! construction, no floating point), laid out so that a pick is one shift, one load, one mask,
//! one comparison and one select: no division, no loop, no branch on the data.
//!
//! The table has `N = 2^k` buckets, the smallest power of two with `N ≥ max(n, 2)`; buckets past
//! `n` carry weight zero. A draw `x` is split into its top `k` bits (the bucket `b`) and its low
//! `64 − k` bits (the position `r` inside the bucket). Each bucket stores one `u64`: the alias
//! index in its top `k` bits and the threshold `t` in the low `64 − k` bits. The pick is `b` when
//! `r < t`, the alias otherwise. Because both parts of `x` are used exactly, the number of the
//! 2^64 inputs that map to each index is a plain sum of thresholds, and the largest difference
//! between an index's probability and `weight / sum` is at most `N / 2 · 2^-64`, which is at most
//! `2^-40` for every `n ≤ 2^24`. `docs/design.md` proves it; [`AliasTable::preimage_counts`]
//! lets a test check it over the table's own arithmetic.
//!
//! ```
//! use abroute::AliasTable;
//!
//! let table = AliasTable::new(&[33, 33, 34]).unwrap();
//! assert_eq!(table.len(), 3);
//! // Any 64-bit value maps to an index; uniform values give the weighted distribution.
//! assert!(table.index_for(0x0123_4567_89ab_cdef) < 3);
//! // A weight-0 entry is never picked.
//! let t = AliasTable::new(&[0, 5]).unwrap();
//! assert_eq!(t.index_for(0), 1);
//! assert_eq!(t.index_for(u64::MAX), 1);
//! ```

use std::fmt;

use rand::Rng;
use rand::distr::Distribution;

/// The largest number of entries an [`AliasTable`] accepts.
///
/// The error bound of `2^-40` holds up to `2^24` entries; past that it degrades to
/// `N / 2 · 2^-64` (see the module docs), still far below any measurable bias.
pub const MAX_ENTRIES: usize = 1 << 31;

/// Why a list of weights cannot become an [`AliasTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WeightError {
    /// The list of weights is empty.
    Empty,
    /// Every weight is zero, so nothing could ever be picked.
    AllZero,
    /// More entries than [`MAX_ENTRIES`].
    TooMany {
        /// How many weights were given.
        len: usize,
    },
}

impl fmt::Display for WeightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightError::Empty => f.write_str("no weights were given"),
            WeightError::AllZero => f.write_str("every weight is 0, so nothing can be picked"),
            WeightError::TooMany { len } => {
                write!(f, "{len} weights is more than the limit of {MAX_ENTRIES}")
            }
        }
    }
}

impl std::error::Error for WeightError {}

/// An exact O(1) weighted sampler over `0..len()`.
///
/// Built once from integer weights; afterwards [`index_for`](Self::index_for) maps one uniformly
/// distributed `u64` to an index with probability `weight[i] / sum` up to `2^-40`
/// (see the module docs). It implements [`Distribution<usize>`].
#[derive(Clone, PartialEq, Eq)]
pub struct AliasTable {
    /// One packed entry per bucket: alias in the top `k` bits, threshold in the low `64 − k`.
    buckets: Box<[u64]>,
    /// `64 − k`: the shift that turns a draw into its bucket.
    shift: u32,
    /// `2^(64 − k) − 1`: the mask that keeps a draw's position inside its bucket.
    mask: u64,
    /// The number of real (unpadded) entries.
    len: usize,
}

impl fmt::Debug for AliasTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AliasTable")
            .field("len", &self.len)
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

impl AliasTable {
    /// Builds the table for `weights`. Weight 0 entries are allowed and never picked.
    ///
    /// Costs O(n) time and `8 · 2^⌈log2 n⌉` bytes.
    ///
    /// # Errors
    ///
    /// [`WeightError::Empty`] for no weights, [`WeightError::AllZero`] when they sum to 0,
    /// [`WeightError::TooMany`] past [`MAX_ENTRIES`].
    pub fn new(weights: &[u32]) -> Result<AliasTable, WeightError> {
        let n = weights.len();
        if n == 0 {
            return Err(WeightError::Empty);
        }
        if n > MAX_ENTRIES {
            return Err(WeightError::TooMany { len: n });
        }
        // n ≤ 2^31 and every weight < 2^32, so the sum fits in 63 bits.
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return Err(WeightError::AllZero);
        }
        let buckets_len = n.max(2).next_power_of_two();
        let k = buckets_len.trailing_zeros();
        let shift = 64 - k; // k ≥ 1, so shift ≤ 63 and every shift below is defined
        let mask = (1u64 << shift) - 1;
        let span = 1u128 << shift; // the number of draws that land in one bucket

        // Exact Vose construction. Entry i carries mass w_i · N; each bucket holds `total`.
        // With n ≤ 2^31 (so N ≤ 2^31) and weights below 2^32, every mass and the capacity stay
        // below 2^63: u64 is exact, and half the memory traffic of u128.
        let cap = total;
        let n_buckets = buckets_len as u64;
        let mut mass: Vec<u64> = (0..buckets_len)
            .map(|i| weights.get(i).map_or(0, |&w| u64::from(w) * n_buckets))
            .collect();
        // keep[b]: how much of bucket b stays with b (in units of `cap`); alias[b]: the rest.
        let mut keep: Vec<u64> = vec![cap; buckets_len];
        let mut alias: Vec<u32> = (0..buckets_len as u32).collect();
        let mut small: Vec<u32> = Vec::new();
        let mut large: Vec<u32> = Vec::new();
        for (i, &m) in mass.iter().enumerate() {
            if m < cap {
                small.push(i as u32);
            } else if m > cap {
                large.push(i as u32);
            }
        }
        // Invariant: the masses still unplaced sum to (#unplaced) · cap, so `small` and `large`
        // run out together and every entry left over carries exactly `cap` (a full bucket).
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            let s_mass = mass[s as usize];
            keep[s as usize] = s_mass;
            alias[s as usize] = l;
            let l_mass = mass[l as usize] - (cap - s_mass);
            mass[l as usize] = l_mass;
            if l_mass < cap {
                large.pop();
                small.push(l);
            } else if l_mass == cap {
                large.pop();
            }
        }
        debug_assert!(small.is_empty() && large.is_empty());

        let buckets = (0..buckets_len)
            .map(|b| {
                // Threshold: round(keep / cap · span), exact in u128 (keep ≤ cap < 2^63).
                let cap = u128::from(cap);
                let t = (u128::from(keep[b]) * span + cap / 2) / cap;
                let (alias_b, t) = if t >= span {
                    (b as u64, 0) // full bucket: every position picks b via its alias
                } else {
                    (u64::from(alias[b]), t as u64)
                };
                (alias_b << shift) | t
            })
            .collect::<Vec<u64>>()
            .into_boxed_slice();
        Ok(AliasTable {
            buckets,
            shift,
            mask,
            len: n,
        })
    }

    /// The number of entries (the length of the weight list it was built from).
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a table has at least one entry. Present for API symmetry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maps one uniformly distributed 64-bit value to an index in `0..len()`.
    ///
    /// Deterministic: the same `x` gives the same index. No division, no loop, no allocation.
    #[inline]
    pub fn index_for(&self, x: u64) -> usize {
        let b = (x >> self.shift) as usize;
        // `b < 2^k == buckets.len()` because `x < 2^64`: the bounds check never fails and is
        // perfectly predicted.
        let entry = self.buckets[b];
        let threshold = entry & self.mask;
        let alias = (entry >> self.shift) as usize;
        if (x & self.mask) < threshold {
            b
        } else {
            alias
        }
    }

    /// Draws one index using one `next_u64()` of `rng`.
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        self.index_for(rng.next_u64())
    }

    /// How many of the 2^64 possible inputs of [`index_for`](Self::index_for) map to each
    /// index, computed from the table's own arithmetic (not by sampling).
    ///
    /// Divide by 2^64 for the exact probability of each index. O(number of buckets).
    pub fn preimage_counts(&self) -> Vec<u128> {
        let span = 1u128 << self.shift;
        let mut counts = vec![0u128; self.buckets.len()];
        for (b, &entry) in self.buckets.iter().enumerate() {
            let threshold = u128::from(entry & self.mask);
            let alias = (entry >> self.shift) as usize;
            // Positions r < threshold pick b; the rest pick the alias.
            counts[b] += threshold;
            counts[alias] += span - threshold;
        }
        counts.truncate(self.len);
        counts
    }

    /// The number of buckets (a power of two, at least 2): the table costs 8 bytes per bucket.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

impl Distribution<usize> for AliasTable {
    #[inline]
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        self.index_for(rng.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `index_for` agrees with the arithmetic `preimage_counts` sums: at every bucket, the last
    /// position below the threshold picks the bucket and the first position at it picks the alias.
    #[test]
    fn index_for_matches_the_counted_intervals() {
        for weights in [
            vec![1u32],
            vec![0, 5],
            vec![33, 33, 34],
            vec![1, 0, 999, 7, 0, 3],
            (1..=37).collect::<Vec<u32>>(),
        ] {
            let t = AliasTable::new(&weights).unwrap();
            for (b, &entry) in t.buckets.iter().enumerate() {
                let threshold = entry & t.mask;
                let alias = (entry >> t.shift) as usize;
                let base = (b as u64) << t.shift;
                if threshold > 0 {
                    assert_eq!(t.index_for(base), b);
                    assert_eq!(t.index_for(base | (threshold - 1)), b);
                }
                assert_eq!(t.index_for(base | threshold), alias);
                assert_eq!(t.index_for(base | t.mask), alias);
                assert!(alias < weights.len(), "alias {alias} out of range");
            }
        }
    }
}

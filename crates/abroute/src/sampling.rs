//! Weighted sampling without replacement over a compiled route's variants: [`RandomFallbacks`],
//! the fallback order of a random decision (see [`fallback`](crate::fallback)).
//!
//! The first fallback is drawn from the conditional distribution given the primary,
//! `P(j | primary i) = w_j / (W − w_i)`, the second given both, and so on. Weight-0 variants are
//! never yielded and every positive-weight variant other than the primary comes exactly once.
//!
//! The draws come from a SplitMix64 stream seeded by the primary's own 64-bit draw, so a decision
//! made with [`RequestContext::with_random`](crate::RequestContext::with_random) has a
//! reproducible fallback order too. Each step draws from the route's alias table and rejects
//! variants already used (exact: rejection sampling from `w` restricted to a set is exactly `w`
//! conditioned on that set). When the weight still available falls below a quarter of the total,
//! or after 32 rejections in a row, the step switches to an exact scan over the remaining weights
//! with one draw, so no step loops for long whatever the weights.
//!
//! It sits below both [`fallback`](crate::fallback) (which gives a decision its order) and
//! [`decision`](crate::decision) (whose capability re-pick of a hashed sticky key walks the same
//! order), so neither imports the other. Off the hot path (it runs only when an attempt failed,
//! or a variant cannot serve a request); it allocates one bitset of `n / 8` bytes.

use crate::compiled::{CompiledRoute, CompiledVariant};
use crate::random::{GAMMA, mix64};

/// A fixed tweak so the fallback stream never replays the primary's draw.
const STREAM_TWEAK: u64 = 0x6661_6c6c_6261_636b; // "fallback"
/// Rejections in a row before a step switches to the exact scan.
const MAX_REJECTIONS: u32 = 32;

/// Weighted sampling without replacement over a route's variants, excluding the primary.
#[derive(Debug, Clone)]
pub struct RandomFallbacks<'a> {
    route: &'a CompiledRoute,
    /// A bitset over the route's variants: the primary and every variant yielded so far.
    used: Vec<u64>,
    remaining: u64,
    state: u64,
}

impl<'a> RandomFallbacks<'a> {
    /// The fallback order after `primary`, seeded by the primary's draw.
    pub(crate) fn new(route: &'a CompiledRoute, primary: usize, draw: u64) -> RandomFallbacks<'a> {
        let primary_weight = route
            .variants()
            .get(primary)
            .map_or(0, |v| u64::from(v.weight()));
        let mut used = vec![0u64; route.variants().len().div_ceil(64)];
        if let Some(word) = used.get_mut(primary / 64) {
            *word |= 1 << (primary % 64);
        }
        RandomFallbacks {
            route,
            used,
            remaining: route.total_weight() - primary_weight,
            state: mix64(draw ^ STREAM_TWEAK),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    fn is_used(&self, i: usize) -> bool {
        self.used
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// One exact draw over the remaining weights: a uniform `u < remaining`, then a scan.
    fn scan(&mut self) -> Option<usize> {
        // Multiply-high maps a u64 to [0, remaining) with bias below remaining / 2^64.
        let u = ((u128::from(self.next_u64()) * u128::from(self.remaining)) >> 64) as u64;
        let mut acc = 0u64;
        for (i, v) in self.route.variants().iter().enumerate() {
            if v.weight() == 0 || self.is_used(i) {
                continue;
            }
            acc += u64::from(v.weight());
            if u < acc {
                return Some(i);
            }
        }
        None
    }
}

impl<'a> Iterator for RandomFallbacks<'a> {
    type Item = (usize, &'a CompiledVariant);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let mut pick = None;
        if self.remaining * 4 >= self.route.total_weight() {
            for _ in 0..MAX_REJECTIONS {
                let i = self.route.table().index_for(self.next_u64());
                if !self.is_used(i) {
                    pick = Some(i);
                    break;
                }
            }
        }
        let i = match pick {
            Some(i) => i,
            None => self.scan()?,
        };
        let v = &self.route.variants()[i];
        if let Some(word) = self.used.get_mut(i / 64) {
            *word |= 1 << (i % 64);
        }
        self.remaining -= u64::from(v.weight());
        Some((i, v))
    }
}

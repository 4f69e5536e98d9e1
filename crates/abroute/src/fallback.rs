//! Fallback order: the other variants of a decision's route, to try when the chosen one fails.
//!
//! [`Decision::fallbacks`] gives them as [`Fallbacks`]. For a random (non-sticky) request the
//! order is weighted sampling without replacement ([`RandomFallbacks`], see
//! [`sampling`](crate::sampling)), reproducible from the decision's draw: weight-0 variants are
//! never yielded and every positive-weight variant other than the primary comes exactly once.
//!
//! For a sticky request the order is the key's own preference order (see
//! [`StickyTable::fallbacks`](crate::StickyTable::fallbacks)): deterministic per key, so every
//! replica agrees on every user's second choice.
//!
//! This is off the hot path (it runs only when an attempt failed); it allocates.

use crate::compiled::{CompiledRoute, CompiledVariant};
use crate::decision::{Assignment, Decision};
use crate::sticky::StickyFallbacks;

pub use crate::sampling::RandomFallbacks;

/// The fallback order of a decision, whatever its assignment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Fallbacks<'a> {
    /// Weighted sampling without replacement, for a random decision (and for a sticky key in a
    /// route too large for a sticky table, seeded by the key's hash).
    Random(RandomFallbacks<'a>),
    /// The sticky key's own preference order over the route's other variants.
    Sticky(&'a CompiledRoute, StickyFallbacks),
}

impl<'a> Iterator for Fallbacks<'a> {
    type Item = (usize, &'a CompiledVariant);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Fallbacks::Random(r) => r.next(),
            Fallbacks::Sticky(route, order) => {
                let i = order.next()?;
                route.variants().get(i).map(|v| (i, v))
            }
        }
    }
}

impl<'a> Decision<'a> {
    /// The other variants of the chosen route, in the order to try them when this one fails:
    /// never the chosen variant, never a weight-0 one, each other variant exactly once.
    ///
    /// For a random decision this is weighted sampling without replacement (see
    /// [`fallback`](crate::fallback)), reproducible from the decision's draw; for a sticky one,
    /// the key's own preference order, the same on every replica. Off the hot path: it
    /// allocates.
    pub fn fallbacks(&self) -> Fallbacks<'a> {
        let route = self.route();
        let primary = self.variant_index();
        match self.assignment() {
            Assignment::Random { draw } => {
                Fallbacks::Random(RandomFallbacks::new(route, primary, draw))
            }
            Assignment::Hashed { key_hash } => {
                Fallbacks::Random(RandomFallbacks::new(route, primary, key_hash))
            }
            Assignment::Sticky { key_hash, .. } => match route.sticky_table() {
                Some(table) => {
                    Fallbacks::Sticky(route, table.fallbacks(&table.assign_hashed(key_hash)))
                }
                None => Fallbacks::Random(RandomFallbacks::new(route, primary, key_hash)),
            },
        }
    }
}

//! The fast builder for routes of few variants: slot-proposing deferred acceptance from the
//! first round, with each variant's held proposals kept as a bitset of ranks.
//!
//! It computes the same matching as the race ([`super::race`]): the pairs (variant, slot) are
//! totally ordered by `(score, tie rank)`, and both sides rank pairs by that one order, so the
//! stable matching under the quotas is unique; the race finds it by taking pairs in increasing
//! order, deferred acceptance finds it by proposals (Gale–Shapley finds a stable matching). The
//! differential test `crates/abroute/tests/sticky_builders.rs` compares both builders entry for
//! entry over 10,000 random routes.
//!
//! Why it is faster for few variants: the exponential race already gives each variant about
//! its share of first choices (a slot's best pair is variant `v` with probability `w_v / W`),
//! so after the first round, where every slot proposes to its best variant (`n` keyed
//! permutations evaluated per slot, in slot order, with no heap), only a few hundred slots are
//! over a quota and move on. The race instead merges `n` streams in a heap for most of the
//! 65,536 · `n` pairs. The first round costs `n` evaluations per slot, so past
//! [`PROPOSALS_MAX_VARIANTS`] the race is used.

use std::hint::select_unpredictable;

use super::{
    EXP_SCORES, FREE, RoundTables, STICKY_SLOTS, VariantKey, exp_score, pair_score, tie_ranks,
};

/// Up to this many variants (weight-0 ones included) the table is built by proposals; past it
/// by the race. Only speed depends on it, never the result (measured on the 2-core machine:
/// proposals are faster up to about this count, see `docs/benchmarks.md`).
pub(super) const PROPOSALS_MAX_VARIANTS: usize = 16;

/// A pair's place in pair order: its score, then its variant's tie rank.
type PairKey = (u128, u32);

/// How many slots the first round takes at a time (divides [`STICKY_SLOTS`]).
const CHUNK: usize = 256;

/// The ranks a variant holds, one bit each, and where the highest may be.
struct Held {
    bits: Vec<u64>,
    count: u32,
    /// No bit is set in words above this one.
    top: usize,
}

/// The owner of every slot: the unique stable matching of slots to variants under `quota`.
pub(super) fn propose(variants: &[VariantKey], quota: &[u32]) -> Vec<u16> {
    let scores = &EXP_SCORES;
    let tables = RoundTables::new(variants);
    let tie = tie_ranks(variants);
    // Variants with no quota take no slot: they never receive a proposal.
    let active: Vec<usize> = (0..variants.len()).filter(|&v| quota[v] > 0).collect();
    let key =
        |v: usize, rank: u32| -> PairKey { (pair_score(scores, rank, variants[v].factor), tie[v]) };
    // The best active variant for `slot` whose pair comes after `bound`, with its rank and key.
    let best_after = |slot: u32, bound: Option<PairKey>| -> Option<(usize, u32, PairKey)> {
        let mut best: Option<(usize, u32, PairKey)> = None;
        for &v in &active {
            let rank = tables.rank_of(v, slot);
            let k = key(v, rank);
            if bound.is_some_and(|b| k <= b) {
                continue;
            }
            if best.is_none_or(|(_, _, bk)| k < bk) {
                best = Some((v, rank, k));
            }
        }
        best
    };
    let mut held: Vec<Held> = variants
        .iter()
        .map(|_| Held {
            bits: vec![0u64; STICKY_SLOTS / 64],
            count: 0,
            top: 0,
        })
        .collect();
    let mut owner = vec![FREE; STICKY_SLOTS];
    let accept = |held: &mut [Held], owner: &mut [u16], v: usize, rank: u32, slot: u32| {
        let h = &mut held[v];
        let word = rank as usize / 64;
        h.bits[word] |= 1u64 << (rank % 64);
        h.count += 1;
        h.top = h.top.max(word);
        owner[slot as usize] = v as u16;
    };
    // First round: every slot proposes to its best variant. By chunks of slots, each
    // variant's ranks computed in a loop of independent lookups, then compared.
    let mut ranks = vec![[0u32; CHUNK]; active.len()];
    let mut exps = vec![[0u64; CHUNK]; active.len()];
    let factors: Vec<u64> = active.iter().map(|&v| variants[v].factor).collect();
    let ties: Vec<u32> = active.iter().map(|&v| tie[v]).collect();
    for base in (0..STICKY_SLOTS as u32).step_by(CHUNK) {
        for ((lane, exp), &v) in ranks.iter_mut().zip(&mut exps).zip(&active) {
            for (i, r) in lane.iter_mut().enumerate() {
                *r = tables.rank_of(v, base + i as u32);
            }
            // Apart from the ranks: independent loads from the 512 KiB table overlap.
            for (e, &r) in exp.iter_mut().zip(lane.iter()) {
                *e = exp_score(scores, r);
            }
        }
        for i in 0..CHUNK {
            // The best pair of the slot, chosen without branches: which variant wins is a
            // coin toss for the predictor.
            let mut best = 0usize;
            let mut best_score = u128::from(exps[0][i]) * u128::from(factors[0]);
            let mut best_tie = ties[0];
            for (a, exp) in exps.iter().enumerate().skip(1) {
                let score = u128::from(exp[i]) * u128::from(factors[a]);
                let before = (score < best_score) | ((score == best_score) & (ties[a] < best_tie));
                best = select_unpredictable(before, a, best);
                best_score = select_unpredictable(before, score, best_score);
                best_tie = select_unpredictable(before, ties[a], best_tie);
            }
            let v = active[best];
            let rank = ranks[best][i];
            let h = &mut held[v];
            h.bits[rank as usize / 64] |= 1u64 << (rank % 64);
            h.count += 1;
            owner[(base as usize) + i] = v as u16;
        }
    }
    for h in &mut held {
        h.top = h.bits.len() - 1;
    }
    // A variant over its quota rejects its worst ranks; a rejected slot proposes to its next
    // best variant, which may in turn go over its quota.
    let mut queue: Vec<(u32, PairKey)> = Vec::new();
    let reject_worst = |held: &mut [Held], queue: &mut Vec<(u32, PairKey)>, v: usize| {
        let h = &mut held[v];
        while h.count > quota[v] {
            let word = h.bits[h.top];
            if word == 0 {
                // count > 0, so a lower word holds a bit.
                h.top -= 1;
                continue;
            }
            let bit = 63 - word.leading_zeros();
            h.bits[h.top] &= !(1u64 << bit);
            h.count -= 1;
            let rank = (h.top * 64) as u32 + bit;
            queue.push((tables.slot_at(v, rank), key(v, rank)));
        }
    };
    for &v in &active {
        reject_worst(&mut held, &mut queue, v);
    }
    while let Some((slot, bound)) = queue.pop() {
        // A rejected slot always finds a variant: the quotas sum to the slot count, so while
        // a slot is unheld some variant below its quota has not rejected it.
        let Some((v, rank, _)) = best_after(slot, Some(bound)) else {
            continue;
        };
        accept(&mut held, &mut owner, v, rank, slot);
        reject_worst(&mut held, &mut queue, v);
    }
    owner
}

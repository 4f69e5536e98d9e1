//! Sticky assignment: the same user always gets the same variant, with no state.
//!
//! A [`StickyTable`] is compiled once per route from a salt and the route's `(variant_id,
//! weight)` pairs. Afterwards [`StickyTable::assign`] maps a sticky key (a user id) to a variant
//! with one XXH3-64 hash, one shift and one load from a packed table of [`STICKY_SLOTS`]
//! (65,536) slots. The answer depends on the salt, the set of variant ids and their weights, and
//! the key; nothing else (not the order of the variants, not their model ids, not the process,
//! machine, platform or time). All arithmetic is on integers; there is no floating point at
//! build time or at lookup, so every platform computes the same table bit for bit.
//!
//! How the table is built (`docs/sticky.md` specifies every constant and byte):
//!
//! - **Quotas.** Every variant gets exactly its share of the 65,536 slots by largest-remainder
//!   apportionment of its weight, so its share of uniformly hashed keys is `weight / sum` to
//!   within `1 / 65,536`. A weight-0 variant gets no slot and so nobody.
//! - **Preferences.** Each variant ranks every slot with its own keyed 16-bit Feistel
//!   permutation, seeded from the salt and its `variant_id` only. Rank `r` of a variant of
//!   weight `w` has the score `F[r] · ⌊(2^64 − 1) / w⌋`, where `F[r]` is the expected
//!   `(r+1)`-th smallest of 65,536 unit exponentials in 2^-48 fixed point (a partial harmonic
//!   sum, computed with integer division): the scores are an exponential race, as in weighted
//!   rendezvous hashing (P-MinHash). Equal scores are ordered by a hash of the `variant_id`.
//! - **Assignment.** The slots go to the variants by the unique stable matching of those scores
//!   under the quotas: take (variant, slot) pairs in increasing score order and give the slot to
//!   the variant when the slot is still free and the variant is below its quota.
//!
//! Without quotas this is P-MinHash on the slots: a change of one variant's weight moves only
//! users to or from that variant, exactly as many as the weights say (the total-variation
//! distance), and no stateless scheme does better on any change without doing worse on another
//! (Pareto optimality). The quotas make the balance exact at the cost of a few tenths of a
//! percent of extra movement; `docs/sticky.md` has the measurements and the theory, including
//! why no stateless scheme can move only `TV(p, q)` users for every change of several weights.
//!
//! For failover, [`StickyTable::fallbacks`] lists the other positive-weight variants in the
//! key's own preference order (its slot's scores), so every replica agrees on every user's
//! second choice. That choice is also, for all but a fraction of a percent of users, where the
//! user would go if the first choice were removed from the route, and fallback traffic spreads
//! over the other variants in proportion to their weights.
//!
//! ```
//! use abroute::sticky::StickyTable;
//!
//! let table = StickyTable::new(b"my-router\0default", &[("a", 10), ("b", 90)]).unwrap();
//! let first = table.assign(b"user-42");
//! // Same salt, same variants and weights, same key: same answer, everywhere, always.
//! let again = StickyTable::new(b"my-router\0default", &[("b", 90), ("a", 10)]).unwrap();
//! assert_eq!(again.variant_id(again.assign(b"user-42").variant()),
//!            table.variant_id(first.variant()));
//! // The other variants, in the key's own order of preference.
//! let fallbacks: Vec<usize> = table.fallbacks(&first).collect();
//! assert_eq!(fallbacks.len(), 1);
//! assert_ne!(fallbacks[0], first.variant());
//! ```

use std::cmp::Ordering;
use std::fmt;

use xxhash_rust::xxh3::xxh3_64_with_seed;

mod proposals;
mod slots;

use slots::Slots;

/// log2 of [`STICKY_SLOTS`]: a key's bucket is the top 16 bits of its hash.
pub const STICKY_SLOT_BITS: u32 = 16;

/// The number of slots (buckets) in every [`StickyTable`]: 65,536.
///
/// Shares are exact to within one slot, `1 / 65,536 ≈ 0.0015` percentage points. Part of the
/// stable algorithm: changing it would move users, so it only changes with a major version.
pub const STICKY_SLOTS: usize = 1 << STICKY_SLOT_BITS;

/// The most variants (counting weight-0 ones) a [`StickyTable`] accepts.
///
/// Past this a sticky route is refused with [`StickyError::TooManyVariants`]. The build cost
/// grows slowly with the variant count (`docs/sticky.md` has the measured figures for 16, 256
/// and 4,096 variants); with 65,536 slots, 4,096 variants still get 16 slots each on average.
pub const MAX_STICKY_VARIANTS: usize = 4096;

/// The version of the algorithm, for logs and decision records.
///
/// Every assignment depends only on the salt, the variants, their weights and the key, under
/// this version of the algorithm. A new version would be a new major release of the crate.
pub const STICKY_ALGORITHM: &str = "abroute-sticky-v1";

/// The seed given to XXH3-64 to turn the salt into the seed of everything else.
const SALT_SEED: u64 = 0;

/// The seed of everything a salt determines: XXH3-64 of the salt's bytes with seed 0.
pub fn salt_seed(salt: &[u8]) -> u64 {
    xxh3_64_with_seed(salt, SALT_SEED)
}

/// A sticky key's hash under a salt seed: XXH3-64 of the key's bytes seeded with
/// [`salt_seed`]. The same as [`StickyTable::key_hash`] for a table built with that salt.
#[inline]
pub fn key_hash_with(salt_seed: u64, key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, salt_seed)
}

/// XORed into the salt's seed to hash variant ids, so that a key equal to a variant id gets an
/// unrelated hash: the ASCII bytes of `"variant!"`, read as a big-endian integer.
const VARIANT_DOMAIN: u64 = 0x7661_7269_616e_7421;

/// The number of Feistel rounds in a variant's permutation of the slots.
const ROUNDS: usize = 4;

/// Half of [`STICKY_SLOT_BITS`]: the width of each Feistel half.
const HALF_BITS: u32 = STICKY_SLOT_BITS / 2;

/// The mask of one Feistel half.
const HALF_MASK: u32 = (1 << HALF_BITS) - 1;

/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The fixed-point scale of the exponential scores: `F[r]` is in units of 2^-48.
const SCORE_ONE: u64 = 1 << 48;

/// SplitMix64's output function. A private copy: the sticky algorithm is frozen and must not
/// change when the rest of the crate does.
#[inline]
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `F[r] = Σ_{m = N−r}^{N} ⌊2^48 / m⌋` for `r` in `0..N`, `N` = [`STICKY_SLOTS`].
///
/// `F[r] / 2^48` is (to within `(r+1) · 2^-48`) the expected `(r+1)`-th smallest of `N` independent
/// unit exponentials. Strictly increasing, below `2^52`. 0.5 MiB of read-only data.
static EXP_SCORES: [u64; STICKY_SLOTS] = exp_scores();

/// [`EXP_SCORES`], computed at compile time: no first use pays for it or waits on another.
const fn exp_scores() -> [u64; STICKY_SLOTS] {
    let n = STICKY_SLOTS as u64;
    let mut f = [0u64; STICKY_SLOTS];
    let mut acc = 0u64;
    let mut r = 0;
    while r < STICKY_SLOTS {
        acc += SCORE_ONE / (n - r as u64);
        f[r] = acc;
        r += 1;
    }
    f
}

/// The exponential score of rank `rank` (see [`EXP_SCORES`]).
#[inline]
fn exp_score(scores: &[u64; STICKY_SLOTS], rank: u32) -> u64 {
    // rank < STICKY_SLOTS everywhere this is called; the mask lets the compiler drop the check.
    scores[rank as usize & (STICKY_SLOTS - 1)]
}

/// Why a list of variants cannot become a [`StickyTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StickyError {
    /// The list of variants is empty.
    NoVariants,
    /// Every weight is zero, so nobody could be assigned.
    AllWeightsZero,
    /// More variants than [`MAX_STICKY_VARIANTS`].
    TooManyVariants {
        /// How many variants were given.
        count: usize,
        /// The limit, [`MAX_STICKY_VARIANTS`].
        max: usize,
    },
    /// Two variants share a `variant_id`; a variant's identity is its id, so ids must differ.
    DuplicateVariantId {
        /// The repeated id.
        id: String,
        /// The index of its first occurrence.
        first: usize,
        /// The index of the repetition.
        second: usize,
    },
}

impl fmt::Display for StickyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StickyError::NoVariants => f.write_str("a sticky route needs at least one variant"),
            StickyError::AllWeightsZero => {
                f.write_str("every weight is 0, so no sticky key could be assigned")
            }
            StickyError::TooManyVariants { count, max } => write!(
                f,
                "sticky assignment supports at most {max} variants per route, and this route has \
                 {count}; use random (non-sticky) routing for it or split it into fewer variants"
            ),
            StickyError::DuplicateVariantId { id, first, second } => write!(
                f,
                "variant_id {id:?} appears at index {first} and again at index {second}; \
                 sticky assignment identifies variants by id, so ids must be unique"
            ),
        }
    }
}

impl std::error::Error for StickyError {}

/// Where one sticky key goes, and why: the key's hash and its bucket (slot).
///
/// Produced by [`StickyTable::assign`]; log [`key_hash`](Self::key_hash) and
/// [`bucket`](Self::bucket) in decision records to explain a sticky decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StickyAssignment {
    key_hash: u64,
    bucket: u32,
    variant: u32,
}

impl StickyAssignment {
    /// The assigned variant's index in the list the table was built from.
    #[inline]
    pub fn variant(&self) -> usize {
        self.variant as usize
    }

    /// The key's 64-bit hash: XXH3-64 of the key's bytes, seeded from the salt.
    #[inline]
    pub fn key_hash(&self) -> u64 {
        self.key_hash
    }

    /// The key's bucket: the top [`STICKY_SLOT_BITS`] bits of [`key_hash`](Self::key_hash),
    /// in `0..STICKY_SLOTS`.
    #[inline]
    pub fn bucket(&self) -> u32 {
        self.bucket
    }
}

/// One variant's part in the table: what its scores and tie-breaks are computed from.
#[derive(Clone, PartialEq, Eq)]
struct VariantKey {
    id: Box<str>,
    weight: u32,
    /// `⌊(2^64 − 1) / weight⌋`, 0 for weight 0: a score is `F[rank] · factor`.
    factor: u64,
    /// XXH3-64 of the id, seeded with `salt_seed ^ VARIANT_DOMAIN`: the tie-break and the seed
    /// of the round keys.
    hash: u64,
    /// The Feistel round keys: SplitMix64's first [`ROUNDS`] outputs from `hash`.
    round_keys: [u64; ROUNDS],
}

impl VariantKey {
    fn new(id: &str, weight: u32, salt_seed: u64) -> VariantKey {
        let hash = xxh3_64_with_seed(id.as_bytes(), salt_seed ^ VARIANT_DOMAIN);
        let mut round_keys = [0u64; ROUNDS];
        for (t, k) in round_keys.iter_mut().enumerate() {
            *k = mix64(hash.wrapping_add((t as u64 + 1).wrapping_mul(GAMMA)));
        }
        VariantKey {
            id: id.into(),
            weight,
            factor: u64::MAX.checked_div(u64::from(weight)).unwrap_or(0),
            hash,
            round_keys,
        }
    }

    /// The Feistel round function: the top 8 bits of `mix64(key ^ half)`.
    #[inline]
    fn round(key: u64, half: u32) -> u32 {
        (mix64(key ^ u64::from(half)) >> (64 - HALF_BITS)) as u32
    }

    /// The rank this variant gives `slot`: its keyed Feistel permutation of `0..STICKY_SLOTS`.
    #[inline]
    fn rank_of(&self, slot: u32) -> u32 {
        let (mut l, mut r) = ((slot >> HALF_BITS) & HALF_MASK, slot & HALF_MASK);
        for &k in &self.round_keys {
            (l, r) = (r, l ^ Self::round(k, r));
        }
        (l << HALF_BITS) | r
    }

    /// The slot this variant ranks `rank`-th: the inverse of [`rank_of`](Self::rank_of).
    #[cfg(test)]
    fn slot_at(&self, rank: u32) -> u32 {
        let (mut l, mut r) = ((rank >> HALF_BITS) & HALF_MASK, rank & HALF_MASK);
        for &k in self.round_keys.iter().rev() {
            (l, r) = (r ^ Self::round(k, l), l);
        }
        (l << HALF_BITS) | r
    }
}

/// The score of rank `rank` for a variant whose weight factor is `factor`:
/// `F[rank] · ⌊(2^64 − 1) / weight⌋`, below 2^116.
#[inline]
fn pair_score(scores: &[u64; STICKY_SLOTS], rank: u32, factor: u64) -> u128 {
    u128::from(exp_score(scores, rank)) * u128::from(factor)
}

/// The total order on (variant, score) pairs: by score, then by variant hash, then by id bytes.
#[inline]
fn pair_order(a: &VariantKey, sa: u128, b: &VariantKey, sb: u128) -> Ordering {
    sa.cmp(&sb)
        .then(a.hash.cmp(&b.hash))
        .then_with(|| a.id.as_bytes().cmp(b.id.as_bytes()))
}

/// Largest-remainder (Hamilton) apportionment of [`STICKY_SLOTS`] by weight.
///
/// `q_i = ⌊N·w_i / W⌋`; the `N − Σq` slots left go one each to the variants with the largest
/// remainders `N·w_i mod W`, ties to the smaller variant hash, then the smaller id. Weight-0
/// variants have remainder 0 and never get a slot left over (there are always more positive
/// remainders than slots left).
fn quotas(variants: &[VariantKey], total: u64) -> Vec<u32> {
    let n = STICKY_SLOTS as u64;
    // w < 2^32 and N = 2^16, so N·w < 2^48; total ≥ 1.
    let mut quota: Vec<u32> = variants
        .iter()
        .map(|v| (n * u64::from(v.weight) / total) as u32)
        .collect();
    let given: u64 = quota.iter().map(|&q| u64::from(q)).sum();
    let left = (n - given) as usize;
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let remainder = |i: usize| n * u64::from(variants[i].weight) % total;
    order.sort_unstable_by(|&a, &b| {
        remainder(b)
            .cmp(&remainder(a))
            .then(variants[a].hash.cmp(&variants[b].hash))
            .then_with(|| variants[a].id.as_bytes().cmp(variants[b].id.as_bytes()))
    });
    for &i in order.iter().take(left) {
        quota[i] += 1;
    }
    quota
}

/// The position of each variant when they are sorted by (hash, id bytes): pair order's
/// tie-break as one number, so that a pair's place in the order is `(score, tie)`.
fn tie_ranks(variants: &[VariantKey]) -> Vec<u32> {
    let mut by_tie: Vec<usize> = (0..variants.len()).collect();
    by_tie.sort_unstable_by(|&a, &b| {
        variants[a]
            .hash
            .cmp(&variants[b].hash)
            .then_with(|| variants[a].id.as_bytes().cmp(variants[b].id.as_bytes()))
    });
    let mut tie = vec![0u32; variants.len()];
    for (position, &i) in by_tie.iter().enumerate() {
        tie[i] = position as u32;
    }
    tie
}

/// One variant's place in the race: its next rank and that rank's place in pair order.
#[derive(Clone, Copy)]
struct Racer {
    score: u128,
    tie: u32,
    rank: u32,
    variant: u32,
}

impl Racer {
    /// Pair order on racers (score, then tie rank), computed without branches.
    #[inline(always)]
    fn before(&self, other: &Racer) -> bool {
        (self.score < other.score) | ((self.score == other.score) & (self.tie < other.tie))
    }
}

/// A binary min-heap of racers in pair order. At most one racer per variant.
struct RaceHeap {
    racers: Vec<Racer>,
}

impl RaceHeap {
    fn new(mut racers: Vec<Racer>) -> RaceHeap {
        // A sorted array is a heap.
        racers.sort_unstable_by_key(|r| (r.score, r.tie));
        RaceHeap { racers }
    }

    /// Replaces the top with `new` (or removes it when `new` is `None`) and restores the heap.
    ///
    /// Bottom-up: the hole at the top moves down to a leaf along the smaller children (a
    /// data-independent number of steps, the child chosen without a branch), then `new` rises
    /// from there, usually by a step or two.
    #[inline]
    fn replace_top(&mut self, new: Option<Racer>) {
        let new = match new {
            Some(r) => r,
            None => match self.racers.pop() {
                Some(last) if !self.racers.is_empty() => last,
                _ => return,
            },
        };
        let len = self.racers.len();
        let racers = &mut self.racers[..];
        let mut hole = 0;
        loop {
            let left = 2 * hole + 1;
            if left + 1 < len {
                let child = left + usize::from(racers[left + 1].before(&racers[left]));
                racers[hole] = racers[child];
                hole = child;
            } else {
                if left < len {
                    racers[hole] = racers[left];
                    hole = left;
                }
                break;
            }
        }
        while hole > 0 {
            let parent = (hole - 1) / 2;
            if !new.before(&racers[parent]) {
                break;
            }
            racers[hole] = racers[parent];
            hole = parent;
        }
        racers[hole] = new;
    }
}

/// The Feistel round function tabulated for every half, per variant and round: the same
/// values as [`VariantKey::round`], looked up instead of recomputed during the build.
struct RoundTables(Vec<[[u8; 1 << HALF_BITS]; ROUNDS]>);

impl RoundTables {
    fn new(variants: &[VariantKey]) -> RoundTables {
        RoundTables(
            variants
                .iter()
                .map(|v| {
                    let mut t = [[0u8; 1 << HALF_BITS]; ROUNDS];
                    for (round, &k) in t.iter_mut().zip(&v.round_keys) {
                        for (x, out) in round.iter_mut().enumerate() {
                            *out = VariantKey::round(k, x as u32) as u8;
                        }
                    }
                    t
                })
                .collect(),
        )
    }

    /// [`VariantKey::rank_of`] through the tables.
    #[inline]
    fn rank_of(&self, variant: usize, slot: u32) -> u32 {
        let t = &self.0[variant];
        // Byte halves: a lookup by a byte into 256 entries needs no bounds check.
        let (mut l, mut r) = ((slot >> HALF_BITS) as u8, slot as u8);
        for round in t {
            (l, r) = (r, l ^ round[usize::from(r)]);
        }
        (u32::from(l) << HALF_BITS) | u32::from(r)
    }

    /// [`VariantKey::slot_at`] through the tables.
    #[inline]
    fn slot_at(&self, variant: usize, rank: u32) -> u32 {
        let t = &self.0[variant];
        let (mut l, mut r) = ((rank >> HALF_BITS) as u8, rank as u8);
        for round in t.iter().rev() {
            (l, r) = (r ^ round[usize::from(l)], l);
        }
        (u32::from(l) << HALF_BITS) | u32::from(r)
    }

    /// The slots of ranks `first .. first + LANE` of `variant`: independent lookups, computed
    /// together so that they overlap.
    #[inline]
    fn fill_lane(&self, variant: usize, first: u32, lane: &mut [u16; LANE]) {
        for (k, out) in lane.iter_mut().enumerate() {
            *out = self.slot_at(variant, first + k as u32) as u16;
        }
    }
}

/// How many upcoming slots of each variant are computed at once (divides [`STICKY_SLOTS`]).
const LANE: usize = 16;

/// The race switches to deferred acceptance once `free slots × racing variants` is at most
/// this many times [`STICKY_SLOTS`]: late in the race most heap steps find their slot taken,
/// and evaluating every remaining pair once is cheaper. Measured best among 0 (never), 1, 2, 3
/// and 4 for 2 to 4,096 variants. Only speed depends on it, never the result.
const FINISH_FACTOR: usize = 1;

/// The owner of a slot nobody has taken yet.
const FREE: u16 = u16::MAX;

/// Runs the race: the unique stable matching of slots to variants under `quota`.
///
/// Returns the owner of every slot. Pairs are taken in increasing pair order by merging one
/// stream per variant (its ranks `0, 1, 2, …` in order) in a heap; a variant leaves the race
/// when its quota is full. Once few free slots are left, most heap steps would find their slot
/// taken, and [`finish`] computes the rest of the same matching directly.
///
/// Every slot ends up owned: the quotas sum to the slot count, and a variant below quota that
/// has seen every rank would have taken every free slot.
fn race(variants: &[VariantKey], quota: &[u32]) -> Vec<u16> {
    race_until(variants, quota, FINISH_FACTOR)
}

/// [`race`], switching to [`finish`] once `free slots × racing variants ≤ factor ·
/// STICKY_SLOTS` (0: race to the end). The result does not depend on `factor`.
fn race_until(variants: &[VariantKey], quota: &[u32], factor: usize) -> Vec<u16> {
    let scores = &EXP_SCORES;
    let tables = RoundTables::new(variants);
    let tie = tie_ranks(variants);
    let mut owner = vec![FREE; STICKY_SLOTS];
    // Which slots are taken, one bit each: small enough to stay in the L1 cache.
    let mut taken = vec![0u64; STICKY_SLOTS / 64];
    let mut left: Vec<u32> = quota.to_vec();
    let mut lanes = vec![[0u16; LANE]; variants.len()];
    let racers: Vec<Racer> = (0..variants.len())
        .filter(|&i| quota[i] > 0)
        .map(|i| Racer {
            score: pair_score(scores, 0, variants[i].factor),
            tie: tie[i],
            rank: 0,
            variant: i as u32,
        })
        .collect();
    for r in &racers {
        let v = r.variant as usize;
        tables.fill_lane(v, 0, &mut lanes[v]);
    }
    let mut heap = RaceHeap::new(racers);
    let mut free_slots = STICKY_SLOTS;
    while let Some(&top) = heap.racers.first() {
        if free_slots * heap.racers.len() <= factor * STICKY_SLOTS {
            break;
        }
        let v = top.variant as usize;
        let slot = usize::from(lanes[v][top.rank as usize % LANE]);
        // Branch-free claim: whether the slot is free is a coin toss for the predictor.
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        let free = taken[word] & bit == 0;
        taken[word] |= bit;
        owner[slot] = if free {
            top.variant as u16
        } else {
            owner[slot]
        };
        left[v] -= u32::from(free);
        free_slots -= usize::from(free);
        let next = top.rank + 1;
        if left[v] == 0 || next as usize >= STICKY_SLOTS {
            heap.replace_top(None);
        } else {
            if (next as usize).is_multiple_of(LANE) {
                tables.fill_lane(v, next, &mut lanes[v]);
            }
            heap.replace_top(Some(Racer {
                score: pair_score(scores, next, variants[v].factor),
                rank: next,
                ..top
            }));
        }
    }
    let racing: Vec<u32> = heap.racers.iter().map(|r| r.variant).collect();
    finish(variants, &tables, &tie, &racing, &left, &mut owner);
    debug_assert!(owner.iter().all(|&o| o != FREE));
    owner
}

/// Completes the race's matching by slot-proposing deferred acceptance (Gale–Shapley).
///
/// When the race stops, every pair of a free slot and a racing variant comes later in pair
/// order than every pair already taken (a racing variant would have claimed a free slot it
/// passed). So the rest of the race is the stable matching of the free slots and the racing
/// variants under their remaining quotas `left`, with both sides ranking pairs by the same
/// order. That matching is unique (the pairs are totally ordered), so deferred acceptance,
/// which finds a stable matching, finds exactly what the race would have: each free slot
/// proposes to its best racing variant; a variant over quota rejects its worst proposals; a
/// rejected slot proposes to its next best.
fn finish(
    variants: &[VariantKey],
    tables: &RoundTables,
    tie: &[u32],
    racing: &[u32],
    left: &[u32],
    owner: &mut [u16],
) {
    use std::collections::BinaryHeap;

    let scores = &EXP_SCORES;
    // The place of the pair (variant, slot) in pair order.
    let key = |v: u32, slot: u32| -> (u128, u32) {
        let i = v as usize;
        let rank = tables.rank_of(i, slot);
        (pair_score(scores, rank, variants[i].factor), tie[i])
    };
    // The first racing variant after `bound` in slot's preference, with its pair's key.
    let best_after = |slot: u32, bound: Option<(u128, u32)>| -> Option<((u128, u32), u32)> {
        let mut best: Option<((u128, u32), u32)> = None;
        for &v in racing {
            let k = key(v, slot);
            if bound.is_some_and(|b| k <= b) {
                continue;
            }
            if best.is_none_or(|(bk, _)| k < bk) {
                best = Some((k, v));
            }
        }
        best
    };
    // First round: every free slot proposes to its best racing variant; a variant over quota
    // keeps its best proposals and rejects the rest (a selection, not a sort).
    let mut proposals: Vec<Vec<((u128, u32), u32)>> = variants.iter().map(|_| Vec::new()).collect();
    for (slot, &o) in owner.iter().enumerate() {
        if o == FREE
            && let Some((k, v)) = best_after(slot as u32, None)
        {
            proposals[v as usize].push((k, slot as u32));
        }
    }
    let mut queue: Vec<(u32, Option<(u128, u32)>)> = Vec::new();
    // Each variant's held proposals, worst on top: (pair key, slot).
    let mut held: Vec<BinaryHeap<((u128, u32), u32)>> = Vec::with_capacity(variants.len());
    for (v, mut p) in proposals.into_iter().enumerate() {
        let room = left[v] as usize;
        if p.len() > room {
            if room > 0 {
                p.select_nth_unstable(room - 1);
            }
            queue.extend(p.drain(room..).map(|(k, slot)| (slot, Some(k))));
        }
        held.push(BinaryHeap::from(p));
    }
    // Later rounds: a rejected slot proposes to its next best variant.
    while let Some((slot, bound)) = queue.pop() {
        // A slot always finds a variant: the racing variants' remaining quotas add up to the
        // number of free slots, so one of the variants that has not rejected it has room.
        let Some((k, v)) = best_after(slot, bound) else {
            continue;
        };
        let h = &mut held[v as usize];
        h.push((k, slot));
        if h.len() > left[v as usize] as usize
            && let Some((worst, rejected)) = h.pop()
        {
            queue.push((rejected, Some(worst)));
        }
    }
    for (v, h) in held.into_iter().enumerate() {
        for (_, slot) in h {
            owner[slot as usize] = v as u16;
        }
    }
}

/// A compiled sticky assignment for one route: key → variant in O(1), with no state.
///
/// Built by [`StickyTable::new`] from a salt and `(variant_id, weight)` pairs; indices
/// returned by its methods refer to the order of that list. Reordering the list, or changing
/// anything but the ids and weights, changes no assignment (only the indices that name them).
/// Immutable and cheap to share; costs `STICKY_SLOTS · ⌈log2 n⌉` bits rounded up to 1, 2, 4, 8
/// or 16 bits a slot (8 KiB for 2 variants, 64 KiB up to 256), except 3 variants, packed base
/// 3 in 12.8 KiB, plus about 80 bytes a variant.
#[derive(Clone, PartialEq, Eq)]
pub struct StickyTable {
    /// Slot → variant index, packed.
    slots: Slots,
    /// XXH3-64 of the salt: the seed of the key hash.
    salt_seed: u64,
    variants: Box<[VariantKey]>,
    /// How many slots each variant owns.
    slot_counts: Box<[u32]>,
}

impl fmt::Debug for StickyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StickyTable")
            .field("variants", &self.variants.len())
            .field("bits_per_slot", &self.slots.bits_per_slot())
            .field("slot_counts", &self.slot_counts)
            .finish_non_exhaustive()
    }
}

impl StickyTable {
    /// Builds the table for `variants`, a list of `(variant_id, weight)` in config order.
    ///
    /// `salt` separates routes: tables with different salts assign independently. The
    /// recommended salt is the router name, a NUL byte, and the `route_id`. Weight-0 variants
    /// are allowed and get nobody. Costs about 5 ms for 16 variants (see `docs/sticky.md`).
    ///
    /// # Errors
    ///
    /// [`StickyError::NoVariants`] for an empty list, [`StickyError::AllWeightsZero`] when the
    /// weights sum to 0, [`StickyError::TooManyVariants`] past [`MAX_STICKY_VARIANTS`], and
    /// [`StickyError::DuplicateVariantId`] when two variants share an id.
    pub fn new(salt: &[u8], variants: &[(&str, u32)]) -> Result<StickyTable, StickyError> {
        Self::build(salt, variants, |keys, quota| {
            if keys.len() <= proposals::PROPOSALS_MAX_VARIANTS {
                proposals::propose(keys, quota)
            } else {
                race(keys, quota)
            }
        })
    }

    /// Builds the same table as [`new`](Self::new) by the race alone, the first builder.
    ///
    /// Kept as the reference the faster builder is tested against (the differential test in
    /// `tests/sticky_builders.rs`) and measured beside (`benches/benches/sticky.rs`); `new`
    /// gives the identical table, faster for routes of up to 16 variants.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn new_by_race(salt: &[u8], variants: &[(&str, u32)]) -> Result<StickyTable, StickyError> {
        Self::build(salt, variants, race)
    }

    /// Validates, computes the keys and quotas, and packs the owners `assign_slots` gives.
    fn build(
        salt: &[u8],
        variants: &[(&str, u32)],
        assign_slots: impl FnOnce(&[VariantKey], &[u32]) -> Vec<u16>,
    ) -> Result<StickyTable, StickyError> {
        let n = variants.len();
        if n == 0 {
            return Err(StickyError::NoVariants);
        }
        if n > MAX_STICKY_VARIANTS {
            return Err(StickyError::TooManyVariants {
                count: n,
                max: MAX_STICKY_VARIANTS,
            });
        }
        let mut by_id: Vec<usize> = (0..n).collect();
        by_id.sort_by(|&a, &b| variants[a].0.cmp(variants[b].0).then(a.cmp(&b)));
        for pair in by_id.windows(2) {
            if let [a, b] = *pair
                && variants[a].0 == variants[b].0
            {
                return Err(StickyError::DuplicateVariantId {
                    id: variants[a].0.to_owned(),
                    first: a,
                    second: b,
                });
            }
        }
        // n ≤ 4096 and every weight < 2^32, so the sum fits in 44 bits.
        let total: u64 = variants.iter().map(|&(_, w)| u64::from(w)).sum();
        if total == 0 {
            return Err(StickyError::AllWeightsZero);
        }
        let salt_seed = xxh3_64_with_seed(salt, SALT_SEED);
        let keys: Vec<VariantKey> = variants
            .iter()
            .map(|&(id, w)| VariantKey::new(id, w, salt_seed))
            .collect();
        let quota = quotas(&keys, total);
        let owner = assign_slots(&keys, &quota);

        Ok(StickyTable {
            slots: Slots::pack(&owner, n),
            salt_seed,
            variants: keys.into_boxed_slice(),
            slot_counts: quota.into_boxed_slice(),
        })
    }

    /// The number of variants the table was built from (weight-0 ones included).
    #[inline]
    pub fn len(&self) -> usize {
        self.variants.len()
    }

    /// Always false: a table has at least one variant. Present for API symmetry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.variants.is_empty()
    }

    /// The number of slots (buckets), [`STICKY_SLOTS`].
    #[inline]
    pub fn slots(&self) -> usize {
        STICKY_SLOTS
    }

    /// The `variant_id` at `index` in the list the table was built from.
    ///
    /// # Panics
    ///
    /// When `index >= len()`.
    pub fn variant_id(&self, index: usize) -> &str {
        &self.variants[index].id
    }

    /// The weight at `index` in the list the table was built from; `None` past the end.
    pub fn weight(&self, index: usize) -> Option<u32> {
        self.variants.get(index).map(|v| v.weight)
    }

    /// How many of the [`STICKY_SLOTS`] slots variant `index` owns (0 past the end).
    ///
    /// Exactly its largest-remainder quota: `slot_count / STICKY_SLOTS` is its share of keys,
    /// within `1 / STICKY_SLOTS` of `weight / sum`.
    pub fn slot_count(&self, index: usize) -> u32 {
        self.slot_counts.get(index).copied().unwrap_or(0)
    }

    /// The key's 64-bit hash: XXH3-64 of `key`, seeded with XXH3-64 of the salt.
    #[inline]
    pub fn key_hash(&self, key: &[u8]) -> u64 {
        xxh3_64_with_seed(key, self.salt_seed)
    }

    /// The bucket of a key hash: its top [`STICKY_SLOT_BITS`] bits.
    #[inline]
    pub fn bucket_of(key_hash: u64) -> u32 {
        (key_hash >> (64 - STICKY_SLOT_BITS)) as u32
    }

    /// Assigns a sticky key. O(1) whatever the variant count; no allocation, no state.
    ///
    /// The key's bytes are used as they are (no normalization): send the user id the same way
    /// every time.
    #[inline]
    pub fn assign(&self, key: &[u8]) -> StickyAssignment {
        self.assign_hashed(self.key_hash(key))
    }

    /// Assigns from a key hash computed earlier by [`key_hash`](Self::key_hash).
    #[inline]
    pub fn assign_hashed(&self, key_hash: u64) -> StickyAssignment {
        let bucket = Self::bucket_of(key_hash);
        StickyAssignment {
            key_hash,
            bucket,
            variant: self.owner(bucket),
        }
    }

    /// The variant that owns `bucket`; `None` unless `bucket < STICKY_SLOTS`.
    pub fn variant_at(&self, bucket: u32) -> Option<usize> {
        ((bucket as usize) < STICKY_SLOTS).then(|| self.owner(bucket) as usize)
    }

    /// The owner of a bucket below [`STICKY_SLOTS`].
    #[inline]
    fn owner(&self, bucket: u32) -> u32 {
        self.slots.owner(bucket)
    }

    /// The fallback order for a sticky key: every other variant with a positive weight, each
    /// exactly once, in the key's own order of preference. Never the assigned variant.
    ///
    /// The order is the key's bucket's scores `F[rank] / weight` across the variants (the
    /// same scores the table was built from), so it is the same on every replica and in every
    /// release with the same major version, and fallback traffic spreads over the remaining
    /// variants in proportion to their weights. Allocates; meant for the failover path.
    pub fn fallbacks(&self, assignment: &StickyAssignment) -> StickyFallbacks {
        let scores = &EXP_SCORES;
        let bucket = assignment.bucket & (STICKY_SLOTS as u32 - 1);
        let mut ranked: Vec<(u128, u32)> = self
            .variants
            .iter()
            .enumerate()
            .filter(|&(i, v)| v.weight > 0 && i != assignment.variant())
            .map(|(i, v)| (pair_score(scores, v.rank_of(bucket), v.factor), i as u32))
            .collect();
        ranked.sort_unstable_by(|&(fa, a), &(fb, b)| {
            pair_order(
                &self.variants[a as usize],
                fa,
                &self.variants[b as usize],
                fb,
            )
        });
        StickyFallbacks {
            order: ranked
                .into_iter()
                .map(|(_, i)| i)
                .collect::<Vec<u32>>()
                .into_iter(),
        }
    }
}

/// The fallback variants of one sticky key, best first. See [`StickyTable::fallbacks`].
#[derive(Debug, Clone)]
pub struct StickyFallbacks {
    order: std::vec::IntoIter<u32>,
}

impl Iterator for StickyFallbacks {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        self.order.next().map(|i| i as usize)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.order.size_hint()
    }
}

impl ExactSizeIterator for StickyFallbacks {}

impl std::iter::FusedIterator for StickyFallbacks {}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(salt: &[u8], spec: &[(&str, u32)]) -> Vec<VariantKey> {
        let seed = xxh3_64_with_seed(salt, SALT_SEED);
        spec.iter()
            .map(|&(id, w)| VariantKey::new(id, w, seed))
            .collect()
    }

    #[test]
    fn feistel_is_a_permutation_and_tables_agree() {
        let k = keys(b"s", &[("a", 1)]);
        let v = &k[0];
        let tables = RoundTables::new(&k);
        let mut seen = vec![false; STICKY_SLOTS];
        for slot in 0..STICKY_SLOTS as u32 {
            let r = v.rank_of(slot);
            assert_eq!(v.slot_at(r), slot);
            assert_eq!(tables.slot_at(0, r), slot);
            assert!(!std::mem::replace(&mut seen[r as usize], true));
        }
    }

    #[test]
    fn exp_scores_are_increasing_and_bounded() {
        let f = &EXP_SCORES;
        assert_eq!(f[0], 1 << 32);
        assert!(f.windows(2).all(|w| w[0] < w[1]));
        assert!(f[STICKY_SLOTS - 1] < 1 << 52);
    }

    #[test]
    fn splitmix_reference() {
        assert_eq!(mix64(GAMMA), 0xE220_A839_7B1D_CDAF);
    }

    /// The race's output is the stable matching: no variant prefers a slot held by another
    /// variant that it ranks before its own worst slot, and every quota is met exactly.
    #[test]
    fn race_is_the_stable_matching() {
        let f = &EXP_SCORES;
        for spec in [
            &[("a", 1), ("b", 3), ("c", 0), ("d", 7)][..],
            &[("x", 5), ("y", 5), ("z", 5)][..],
            &[("only", 2)][..],
        ] {
            let k = keys(b"stable", spec);
            let total = spec.iter().map(|&(_, w)| u64::from(w)).sum();
            let quota = quotas(&k, total);
            let owner = race(&k, &quota);
            let mut count = vec![0u32; k.len()];
            for &o in &owner {
                count[o as usize] += 1;
            }
            assert_eq!(count, quota);
            // Each variant's worst (last in order) owned slot.
            let score =
                |i: usize, slot: usize| pair_score(f, k[i].rank_of(slot as u32), k[i].factor);
            let worst: Vec<Option<u128>> = (0..k.len())
                .map(|i| {
                    owner
                        .iter()
                        .enumerate()
                        .filter(|&(_, &o)| o as usize == i)
                        .map(|(s, _)| score(i, s))
                        .max()
                })
                .collect();
            for (slot, &o) in owner.iter().enumerate() {
                let o = o as usize;
                let fo = score(o, slot);
                for (i, v) in k.iter().enumerate() {
                    if i == o || quota[i] == 0 {
                        continue;
                    }
                    let fi = score(i, slot);
                    if pair_order(v, fi, &k[o], fo) == Ordering::Less {
                        // (i, slot) came first while the slot was free, so i was already
                        // full: every slot i owns must come before (i, slot).
                        let w = worst[i].unwrap_or(0);
                        assert_eq!(
                            pair_order(v, w, v, fi),
                            Ordering::Less,
                            "blocking pair: slot {slot}, variant {i}"
                        );
                    }
                }
            }
        }
    }

    /// Finishing by deferred acceptance gives the same matching as racing to the end.
    #[test]
    fn finish_changes_nothing() {
        let many: Vec<(String, u32)> = (0..40).map(|i| (format!("v{i}"), 1 + i * 7 % 13)).collect();
        let many: Vec<(&str, u32)> = many.iter().map(|(s, w)| (s.as_str(), *w)).collect();
        for spec in [
            &[("a", 1), ("b", 3), ("c", 0), ("d", 7)][..],
            &[("x", 5), ("y", 5)][..],
            &[("one", 1), ("big", 999)][..],
            &many[..],
        ] {
            let k = keys(b"finish", spec);
            let total = spec.iter().map(|&(_, w)| u64::from(w)).sum();
            let quota = quotas(&k, total);
            let full = race_until(&k, &quota, 0);
            for factor in [1, FINISH_FACTOR, 64, usize::MAX / STICKY_SLOTS] {
                assert_eq!(race_until(&k, &quota, factor), full, "factor {factor}");
            }
        }
    }

    #[test]
    fn quotas_are_largest_remainder() {
        let k = keys(b"q", &[("a", 1), ("b", 1), ("c", 1), ("z", 0)]);
        let q = quotas(&k, 3);
        assert_eq!(q.iter().sum::<u32>() as usize, STICKY_SLOTS);
        assert_eq!(q[3], 0);
        // 65536 = 3 · 21845 + 1: exactly one variant gets the extra slot.
        assert_eq!(q.iter().filter(|&&x| x == 21846).count(), 1);
    }
}

//! Where a random pick gets its 64-bit value when the request brings none.
//!
//! With the default `std` feature: a SplitMix64 generator in a thread-local `Cell`, seeded once
//! per thread from the standard library's per-thread random hash keys. No lock, no allocation,
//! no shared cache line. Without the feature: a process-wide atomic counter run through the same
//! SplitMix64 finalizer, deterministic from process start (hosts that disable `std` are expected
//! to pass their own value with `RequestContext::with_random`).

/// SplitMix64's increment (the golden ratio in 64 bits).
pub(crate) const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijection on u64 with full avalanche.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(feature = "std")]
mod imp {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};

    thread_local! {
        /// 0 means "not seeded yet"; a seeded state is never 0 (see `seed`).
        static STATE: Cell<u64> = const { Cell::new(0) };
    }

    #[cold]
    fn seed() -> u64 {
        // RandomState's keys come from the OS once per thread and differ between threads.
        RandomState::new().hash_one(0x6162_726f_7574_6500_u64) | 1
    }

    #[inline]
    pub(crate) fn next_u64() -> u64 {
        STATE.with(|s| {
            let mut x = s.get();
            if x == 0 {
                x = seed();
            }
            x = x.wrapping_add(super::GAMMA);
            if x == 0 {
                x = super::GAMMA; // keep 0 as the "unseeded" marker
            }
            s.set(x);
            super::mix64(x)
        })
    }
}

#[cfg(not(feature = "std"))]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);

    #[inline]
    pub(crate) fn next_u64() -> u64 {
        super::mix64(COUNTER.fetch_add(super::GAMMA, Ordering::Relaxed))
    }
}

/// A uniformly distributed 64-bit value for one random pick.
#[inline]
pub(crate) fn next_u64() -> u64 {
    imp::next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_differ_and_cover_high_bits() {
        let v: Vec<u64> = (0..1000).map(|_| next_u64()).collect();
        let mut sorted = v.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), v.len(), "no repeats in 1000 draws");
        let high = v.iter().filter(|&&x| x >> 63 == 1).count();
        assert!(
            (400..600).contains(&high),
            "top bit set {high} times of 1000"
        );
    }

    #[test]
    fn mix_is_splitmix() {
        // SplitMix64 reference: seed 0 → first output 0xE220A8397B1DCDAF.
        assert_eq!(mix64(GAMMA), 0xE220_A839_7B1D_CDAF);
    }
}

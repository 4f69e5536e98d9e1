//! The sticky-assignment peers abroute's `StickyTable` is compared with, shared by the
//! `sticky` bench and the `disruption` report.
//!
//! - [`GrowthBookStyle`]: GrowthBook's hash v2 (`fnv1a32(decimal(fnv1a32(seed ‖ key))) % 10000
//!   / 10000`) and a scan of contiguous `[start, end)` ranges laid out in config order.
//! - [`TensorZeroStyle`]: `sha256(salt ‖ key)`, the first 4 bytes big-endian as a fraction of
//!   `u32::MAX`, times the total weight, then a scan of the running sums in config order.
//! - [`ContiguousRanges`]: the same contiguous layout on a 64-bit hash (exact integers): the
//!   baseline of the disruption report, so that only the layout differs from abroute.
//! - [`uuid_keys`]: random 36-byte keys in UUID text form from a fixed seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// FNV-1a, 32 bits.
#[inline]
pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// GrowthBook-style assignment: hash v2 to a 4-digit fraction, then contiguous ranges.
#[derive(Debug, Clone)]
pub struct GrowthBookStyle {
    seed: Vec<u8>,
    ranges: Vec<(f64, f64)>,
}

impl GrowthBookStyle {
    /// Ranges `[start, end)` from the weights in config order (coverage 1).
    pub fn new(seed: &str, weights: &[u32]) -> GrowthBookStyle {
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        let mut start = 0.0;
        let ranges = weights
            .iter()
            .map(|&w| {
                let end = start + f64::from(w) / total;
                let r = (start, end);
                start = end;
                r
            })
            .collect();
        GrowthBookStyle {
            seed: seed.as_bytes().to_vec(),
            ranges,
        }
    }

    /// GrowthBook's hash v2: `fnv1a32(str(fnv1a32(seed + value))) % 10000 / 10000`.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> f64 {
        // seed ‖ key without allocating: FNV-1a is a running fold.
        let mut h: u32 = 0x811c_9dc5;
        for &b in self.seed.iter().chain(key) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (h % 10) as u8;
            h /= 10;
            if h == 0 {
                break;
            }
        }
        f64::from(fnv1a32(&digits[i..]) % 10_000) / 10_000.0
    }

    /// The index whose range holds the key's hash (the last one if none does).
    #[inline]
    pub fn assign(&self, key: &[u8]) -> usize {
        let n = self.hash(key);
        self.ranges
            .iter()
            .position(|&(s, e)| n >= s && n < e)
            .unwrap_or(self.ranges.len() - 1)
    }
}

/// TensorZero-style assignment: SHA-256 of salt and key, then a cumulative scan.
#[derive(Debug, Clone)]
pub struct TensorZeroStyle {
    salt: Vec<u8>,
    cumulative: Vec<f64>,
    total: f64,
}

impl TensorZeroStyle {
    /// Running sums of the weights in config order.
    pub fn new(salt: &str, weights: &[u32]) -> TensorZeroStyle {
        let mut total = 0.0;
        let cumulative = weights
            .iter()
            .map(|&w| {
                total += f64::from(w);
                total
            })
            .collect();
        TensorZeroStyle {
            salt: salt.as_bytes().to_vec(),
            cumulative,
            total,
        }
    }

    /// The index for `key`: first running sum above `uniform · total`.
    #[inline]
    pub fn assign(&self, key: &[u8]) -> usize {
        let mut hasher = Sha256::new();
        hasher.update(&self.salt);
        hasher.update(key);
        let hash = hasher.finalize();
        let truncated = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]);
        let threshold = f64::from(truncated) / f64::from(u32::MAX) * self.total;
        self.cumulative
            .iter()
            .position(|&c| threshold < c)
            .unwrap_or(self.cumulative.len() - 1)
    }
}

/// Contiguous ranges in config order on a 64-bit hash, in exact integers.
#[derive(Debug, Clone)]
pub struct ContiguousRanges {
    cumulative: Vec<u64>,
    total: u64,
}

impl ContiguousRanges {
    /// Running sums of the weights in config order.
    pub fn new(weights: &[u32]) -> ContiguousRanges {
        let mut total = 0u64;
        let cumulative = weights
            .iter()
            .map(|&w| {
                total += u64::from(w);
                total
            })
            .collect();
        ContiguousRanges { cumulative, total }
    }

    /// The index whose range of `[0, total)` holds `hash · total / 2^64`.
    #[inline]
    pub fn assign(&self, hash: u64) -> usize {
        let x = ((u128::from(hash) * u128::from(self.total)) >> 64) as u64;
        self.cumulative
            .iter()
            .position(|&c| x < c)
            .unwrap_or(self.cumulative.len() - 1)
    }
}

/// `count` random keys in UUID text form (36 bytes: 32 hex digits and 4 dashes), fixed seed.
pub fn uuid_keys(count: usize, seed: u64) -> Vec<[u8; 36]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let (a, b) = (rng.next_u64(), rng.next_u64());
            let mut key = [0u8; 36];
            let mut nibbles = (0..16)
                .map(|i| (a >> (4 * i)) & 15)
                .chain((0..16).map(|i| (b >> (4 * i)) & 15));
            for (i, c) in key.iter_mut().enumerate() {
                *c = if matches!(i, 8 | 13 | 18 | 23) {
                    b'-'
                } else {
                    HEX[nibbles.next().unwrap_or(0) as usize]
                };
            }
            key
        })
        .collect()
}

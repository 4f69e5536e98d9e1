//! The packed slot → variant array of a [`StickyTable`](super::StickyTable).
//!
//! Most variant counts take `1 << width_log2` bits a slot (1, 2, 4, 8 or 16), several slots to a
//! `u64`, little-endian. Three variants, the commonest split after two, would waste a quarter of
//! their 2 bits: they are packed base 3 instead, five slots to a byte (`3^5 = 243 ≤ 256`),
//! 13,108 bytes instead of 16,384, and a lookup decodes its byte through a 256 × 5 table of
//! digits (one division by the constant 5, which compiles to a multiply, and two loads).

use super::STICKY_SLOTS;

/// Slots per byte in the base-3 encoding.
const BASE3_PER_BYTE: usize = 5;

/// `BASE3_DIGITS[byte][k]`: the `k`-th base-3 digit (least significant first) of `byte`.
static BASE3_DIGITS: [[u8; BASE3_PER_BYTE]; 256] = base3_digits();

const fn base3_digits() -> [[u8; BASE3_PER_BYTE]; 256] {
    let mut t = [[0u8; BASE3_PER_BYTE]; 256];
    let mut b = 0;
    while b < 256 {
        let mut x = b;
        let mut k = 0;
        while k < BASE3_PER_BYTE {
            t[b][k] = (x % 3) as u8;
            x /= 3;
            k += 1;
        }
        b += 1;
    }
    t
}

/// Every slot's owner, packed.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Slots {
    /// `1 << width_log2` bits a slot, little-endian within each `u64`.
    Bits {
        packed: Box<[u64]>,
        /// log2 of the bits per slot: 0, 1, 2, 3 or 4.
        width_log2: u32,
        /// `(1 << (1 << width_log2)) − 1`.
        mask: u64,
    },
    /// Exactly three variants: five slots a byte, base 3.
    Base3(Box<[u8]>),
}

impl Slots {
    /// Packs `owner` (one entry per slot, each below `variants`).
    pub(super) fn pack(owner: &[u16], variants: usize) -> Slots {
        debug_assert_eq!(owner.len(), STICKY_SLOTS);
        if variants == 3 {
            let bytes = owner
                .chunks(BASE3_PER_BYTE)
                .map(|digits| digits.iter().rev().fold(0u8, |acc, &d| acc * 3 + d as u8))
                .collect();
            return Slots::Base3(bytes);
        }
        let width_log2 = match variants {
            0..=2 => 0,
            3..=4 => 1,
            5..=16 => 2,
            17..=256 => 3,
            _ => 4,
        };
        let width = 1usize << width_log2;
        let mut packed = vec![0u64; STICKY_SLOTS * width / 64];
        for (slot, &o) in owner.iter().enumerate() {
            let bit = slot << width_log2;
            packed[bit / 64] |= u64::from(o) << (bit % 64);
        }
        Slots::Bits {
            packed: packed.into_boxed_slice(),
            width_log2,
            mask: (1u64 << width) - 1,
        }
    }

    /// The owner of a bucket below [`STICKY_SLOTS`].
    #[inline]
    pub(super) fn owner(&self, bucket: u32) -> u32 {
        let slot = bucket as usize & (STICKY_SLOTS - 1);
        match self {
            Slots::Bits {
                packed,
                width_log2,
                mask,
            } => {
                let bit = slot << width_log2;
                // bit < STICKY_SLOTS · width, so bit / 64 < packed.len().
                let word = packed[bit >> 6];
                ((word >> (bit & 63)) & mask) as u32
            }
            Slots::Base3(bytes) => {
                // slot / 5 < ⌈STICKY_SLOTS / 5⌉ == bytes.len().
                let byte = bytes[slot / BASE3_PER_BYTE];
                u32::from(BASE3_DIGITS[usize::from(byte)][slot % BASE3_PER_BYTE])
            }
        }
    }

    /// The bits a slot costs (for `Debug`).
    pub(super) fn bits_per_slot(&self) -> f64 {
        match self {
            Slots::Bits { width_log2, .. } => f64::from(1u32 << width_log2),
            Slots::Base3(_) => 8.0 / BASE3_PER_BYTE as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every encoding gives back what it packed, for every variant count up to 17.
    #[test]
    fn packing_round_trips() {
        for variants in 1..=17usize {
            let owner: Vec<u16> = (0..STICKY_SLOTS)
                .map(|s| ((s * 7919 + s / 3) % variants) as u16)
                .collect();
            let slots = Slots::pack(&owner, variants);
            for (s, &o) in owner.iter().enumerate() {
                assert_eq!(
                    slots.owner(s as u32),
                    u32::from(o),
                    "{variants} variants, slot {s}"
                );
            }
        }
    }
}

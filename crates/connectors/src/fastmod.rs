//! Remainders by a divisor fixed at start-up, without a division instruction.
//!
//! The generator takes three remainders per event by divisors known when the source is
//! built (users, items, categories). A 64-bit division costs tens of cycles on many
//! x86 processors; [`Modulus`] computes the same remainder with three multiplies
//! (Lemire, Kaser and Kurz, "Faster Remainder by Direct Computation", 2019: with a
//! 128-bit multiplier `M = ⌈2^128 / d⌉`, the low 128 bits of `M · n`, times `d`, have
//! `n mod d` as their bits 128 and up, exactly, for every 64-bit `n` and `d > 1`).

/// `n % d` for a fixed `d`, exact for every `n` (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Modulus {
    d: u64,
    /// `⌈2^128 / d⌉` (wrapped to 0 for `d` ≤ 1, which are handled apart).
    m: u128,
}

impl Modulus {
    /// The modulus `d`; 0 gives remainders of 0 (as the generator's validated
    /// configuration never asks for).
    pub(crate) fn new(d: u64) -> Self {
        let m = if d > 1 {
            (u128::MAX / u128::from(d)).wrapping_add(1)
        } else {
            0
        };
        Self { d, m }
    }

    /// `n % d`.
    #[inline]
    pub(crate) fn rem(self, n: u64) -> u64 {
        if self.d <= 1 {
            return 0;
        }
        let low = self.m.wrapping_mul(u128::from(n));
        // The top 64 bits of the 192-bit product `low · d`.
        let d = u128::from(self.d);
        let lo = (low as u64 as u128) * d;
        let hi = (low >> 64) * d;
        ((hi + (lo >> 64)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::Modulus;

    /// Equal to `%` over divisors and numerators at the edges of the range and in
    /// between, including powers of two and their neighbours.
    #[test]
    fn remainders_equal_the_division() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut divisors = vec![
            1,
            2,
            3,
            7,
            10,
            100,
            10_000,
            1_000_000,
            u64::MAX,
            u64::MAX - 1,
        ];
        for k in 1..64 {
            divisors.extend([(1u64 << k) - 1, 1u64 << k, (1u64 << k) + 1]);
        }
        divisors.extend((0..200).map(|_| next()));
        divisors.extend((0..200).map(|_| next() >> (next() % 64)).filter(|&d| d > 0));
        for d in divisors {
            let m = Modulus::new(d);
            let mut numerators = vec![0, 1, d - 1, d, d.wrapping_add(1), u64::MAX, u64::MAX - 1];
            numerators.extend((0..500).map(|_| next()));
            numerators.extend((0..100).map(|_| next() >> (next() % 64)));
            for n in numerators {
                assert_eq!(m.rem(n), n % d, "{n} % {d}");
            }
        }
        assert_eq!(Modulus::new(0).rem(5), 0);
    }
}

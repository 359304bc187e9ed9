//! Statement shapes OceanBase's plan cache finds again.
//!
//! OceanBase caches a plan per statement shape: the text with its literals
//! taken out. The shape of a multi-row `INSERT` or of an `IN` list is its row
//! or key count, so a statement of a count planned before is cheap and one of
//! a new count is planned from scratch (on seekdb 4.3.5, planning an upsert
//! of a few hundred rows costs about as much as running it, and its plan
//! holds about 600 KB of a cache that is 2% of the tenant's memory). Ferry
//! therefore sends few counts: a count rounded to a few significant bits,
//! which keeps the counts within an eighth or a sixteenth of each other and
//! their number logarithmic.
//!
//! Two ways to reach such a count, each where it costs least:
//! - [`round_up`] and pad: the verify repeats the last key of an `IN` list (a
//!   key listed twice selects its row once, so the padding costs nothing);
//! - [`round_down`] and split ([`blocks`]): the sync cannot repeat a row (a
//!   target trigger would fire twice), so it sends a block of the rounded
//!   count and then the rest, at the price of a statement more (about 0.5 ms
//!   of seekdb's own).
//!
//! The copy's INSERTs keep their counts (1,000 rows, or fewer when 4 MB come
//! first): a statement that large costs seekdb far more to run than to plan.
//! Measured on seekdb 4.3.5, 30,000 rows of about 6 KB (44 statements of 22
//! counts, against 48 of 4 counts cut as the sync cuts), plan cache flushed
//! before each load, four alternating pairs: 198-241 against 238-299 ticks
//! of server CPU.
//!
//! Written by hand: this is arithmetic on counts, not something a library
//! offers.

/// `n` rounded down to a count of at most `bits` significant bits (`n` for
/// `n` of that many bits or fewer; 0 for 0). `bits` is at least 1.
pub(crate) fn round_down(n: usize, bits: u32) -> usize {
    match n {
        0 => 0,
        _ => {
            let shift = n.ilog2().saturating_sub(bits.max(1) - 1);
            (n >> shift) << shift
        }
    }
}

/// `n` rounded up to a count of at most `bits` significant bits (1 for 0).
/// `bits` is at least 1.
pub(crate) fn round_up(n: usize, bits: u32) -> usize {
    match n {
        0 => 1,
        _ => {
            let shift = n.ilog2().saturating_sub(bits.max(1) - 1);
            n.div_ceil(1 << shift) << shift
        }
    }
}

/// `rows` cut into blocks of at most `most` rows whose counts have at most
/// `bits` significant bits ([`round_down`]), largest first, in their order.
pub(crate) fn blocks<T>(rows: &[T], bits: u32, most: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = round_down(rest.len().min(most.max(1)), bits);
        let (block, tail) = rest.split_at(n);
        rest = tail;
        Some(block)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn significant_bits(n: usize) -> u32 {
        usize::BITS - n.leading_zeros() - n.trailing_zeros()
    }

    #[test]
    fn rounding_keeps_few_significant_bits_and_stays_close() {
        assert_eq!(round_down(0, 4), 0);
        assert_eq!(round_up(0, 3), 1);
        assert_eq!(
            [1, 15, 16, 17, 31, 450, 511, 1000].map(|n| round_down(n, 4)),
            [1, 15, 16, 16, 30, 448, 480, 960]
        );
        assert_eq!(
            [1, 3, 16, 17, 29, 33, 251, 321, 999].map(|n| round_up(n, 3)),
            [1, 3, 16, 20, 32, 40, 256, 384, 1024]
        );
        assert_eq!([3, 5, 9, 16].map(|n| round_up(n, 1)), [4, 8, 16, 16]);
        for bits in 1..=5 {
            for n in 1..=5000usize {
                let (down, up) = (round_down(n, bits), round_up(n, bits));
                assert!(significant_bits(down) <= bits, "{n} {bits} -> {down}");
                assert!(significant_bits(up) <= bits, "{n} {bits} -> {up}");
                assert!(down <= n && n <= up, "{n} {bits}: {down} {up}");
                // Within one step: a 2^(bits-1)-th of n's power of two.
                let step = (1usize << n.ilog2()) >> (bits - 1);
                assert!(n - down < step.max(1) && up - n < step.max(1), "{n} {bits}");
                if significant_bits(n) <= bits {
                    assert_eq!((down, up), (n, n));
                }
            }
        }
    }

    #[test]
    fn blocks_keep_every_row_in_order_under_the_limit() {
        let rows: Vec<usize> = (0..1234).collect();
        let b: Vec<&[usize]> = blocks(&rows, 4, 1000).collect();
        assert_eq!(
            b.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [960, 256, 18]
        );
        assert_eq!(b.concat(), rows);
        assert_eq!(blocks(&rows[..0], 4, 1000).count(), 0);
        assert_eq!(blocks(&rows[..3], 4, 0).count(), 3, "a limit of 0 means 1");
    }
}

//! Verification: prove the target holds the source's rows, find every
//! difference, and write the statements that repair it.
//!
//! # How a key range is compared
//! The ranges are the copy's chunks (`[lower, upper)` of the table's key, the
//! planner's predicate). Each database computes, over the range,
//! `COUNT(*)` and `SUM(h(row))`, where `h(row)` is a 64-bit hash of the row
//! text read as an unsigned integer, and the sum is exact (no wrap-around: a
//! DECIMAL, or two DOUBLE halves below 2^53). Both sides are asked at once. `h` is one of ([`RowHash`]):
//! * `CRC32(text) << 32 | CRC32C(text)` when both servers are MariaDB 10.8+
//!   (the faster: about 1.5x the cost of the peers' single CRC32, half of SHA1);
//! * the first 64 bits of `SHA1(text)` otherwise (MySQL and OceanBase lack CRC32C).
//!
//! The row text is a canonical, injective rendering of every non-generated column (see
//! [`canon`]): NULL is told apart from `''`, DECIMAL keeps the column's
//! scale, temporal values carry microseconds, floats are the shortest
//! round-trip text of the (widened) double, byte strings are hex, text is
//! UTF-8 with trailing spaces kept, so equal values hash equal on MariaDB,
//! MySQL and OceanBase, and different values almost never do.
//!
//! # Why a difference cannot hide (collision resistance)
//! Model `h` as a random function into `[0, 2^64)` (SHA1 truncated; the data
//! is not chosen by an adversary who can see the hash, which is the threat
//! model of a migration check, not of tamper-proofing). The row-text encoding
//! is injective, so two different rows are two different inputs.
//!
//! For the CRC pair the model holds for one changed row: CRC32 and CRC32C have
//! coprime generator polynomials, so together they are a CRC of degree 64 (by
//! the Chinese remainder theorem): a row whose text changed is missed only if
//! the error polynomial is a multiple of both, 2^-64 for a random change, and
//! never for an error burst of up to 64 bits (the typical one-value change of
//! equal length). CRCs are linear, so for changes spread over several rows the
//! exact SUM (not XOR) is what separates them: rows whose hash differences
//! cancel under XOR (the classic blind spot, e.g. values swapped between two
//! rows of equal length) still differ in their integer sum unless the carries
//! agree too, about 2^-32 for such a pair: far below the peers' 2^-32 per
//! changed row, still short of SHA1's 2^-64 for that one pattern.
//! * A range whose rows differ in any way has a non-empty multiset of rows
//!   only on one side (`A`) and only on the other (`B`). The sums agree only
//!   if `sum(h, A) = sum(h, B)` exactly over the integers. Fix every value but
//!   the hash of one row of `A ∪ B` that appears on one side only: exactly one
//!   value of that hash satisfies the equation, so the chance is at most
//!   `2^-64` per compared range, for any number of changed rows. Because the
//!   sum is exact rather than XOR or modulo, equal rows cannot cancel in
//!   pairs, and with a cryptographic (non-linear) `h`, swapping values between
//!   rows, the classic blind spot of XOR-of-CRC32 checksums, is caught too.
//! * `COUNT(*)` is compared as well, so a missing or extra row whose hash
//!   happens to be 0 is still seen.
//! * Over a table of `n` ranges the chance of missing a difference is at most
//!   `n * 2^-64` (10^9 ranges: below 10^-10).
//!
//! SHA1 rather than MD5: measured on MariaDB 10.11 here, `SHA1()` costs about
//! half of `MD5()` per row (MD5 goes through a slower library path), and its
//! first 64 bits are as good a 64-bit hash.
//!
//! # Drill-down and repair
//! A range whose digests differ is bisected on keys read from the side with
//! more rows until pieces hold at most [`locate::LEAF_ROWS`] rows, which are
//! read from both sides canonically and paired by key in Rust ([`rows`]).
//! While changes still flow, [`locate::confirm`] re-reads the candidate rows
//! around the incremental apply's progress so only lasting differences are
//! reported. [`repair`] turns differing keys into `REPLACE`/`DELETE`
//! statements from the source's current rows.

pub mod canon;
pub mod locate;
pub mod repair;
pub mod rows;
pub mod table;

pub use canon::RowHash;
pub use locate::{
    compare_keys, compare_range, confirm, digests, locate, same_key, Confirmed, KeysResult,
    RangeResult, LEAF_ROWS,
};
pub use repair::{apply_repair, repair_script, repair_statements, RepairStatement};
pub use rows::{compare_rows, json_equal, FetchedRow, Layout, RowDiff};
pub use table::{Digest, Side, VerifyTable};

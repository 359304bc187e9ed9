//! Comparing a key range of both sides, and finding the differing rows of a
//! range whose digests differ.
//!
//! Invariant: [`compare_range`] reports no difference when both sides' digests
//! agree, and otherwise exactly the rows [`compare_rows`] finds over the whole
//! range: the drill-down only narrows *where* to read rows (it bisects on keys
//! read from one side, and skips sub-ranges whose digests agree), while the
//! final pairing is done once over every row read from both sides, so a row
//! that lands in different sub-ranges on the two sides (a target collation
//! that orders keys differently) is still paired with itself.

use std::future::Future;
use std::time::Instant;

use ferry_core::model::KeyValue;
use ferry_core::position::BinlogPosition;
use ferry_core::FerryError;
use mysql_async::Conn;

use super::rows::{compare_rows, differing_columns, FetchedRow, RowDiff};
use super::table::{Digest, Side, VerifyTable};
use crate::schema::binlog_position;

/// A range with at most this many rows on either side is compared row by row.
pub const LEAF_ROWS: u64 = 256;

/// A range this small whose halves both differ is read whole instead of bisected further.
pub const DENSE_ROWS: u64 = 16 * LEAF_ROWS;

/// The result of comparing one key range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResult {
    pub source: Digest,
    pub target: Digest,
    /// The rows that differ. Empty when the digests agree, unless the table
    /// has JSON columns the digests leave out (compared as rows apart).
    pub diffs: Vec<RowDiff>,
}

impl RangeResult {
    /// Nothing differs: the digests agree and no row compared apart differs.
    /// Equal digests alone are not enough: with JSON compared apart, a row
    /// changed on the source between the digests and the row reads differs
    /// with equal digests, and a caller that confirms mismatches around the
    /// apply must confirm that one too.
    pub fn matches(&self) -> bool {
        self.source == self.target && self.diffs.is_empty()
    }
}

type Bound = Option<Vec<KeyValue>>;

/// Digests of `[lower, upper)` on both sides, queried at once.
pub async fn digests(
    t: &VerifyTable,
    src: &mut Conn,
    tgt: &mut Conn,
    lower: Option<&[KeyValue]>,
    upper: Option<&[KeyValue]>,
) -> Result<(Digest, Digest), FerryError> {
    tokio::try_join!(
        t.digest(Side::Source, src, lower, upper),
        t.digest(Side::Target, tgt, lower, upper)
    )
}

/// Compare `[lower, upper)`: digests first, then (only if they differ) the drill-down.
pub async fn compare_range(
    t: &VerifyTable,
    src: &mut Conn,
    tgt: &mut Conn,
    lower: Option<&[KeyValue]>,
    upper: Option<&[KeyValue]>,
) -> Result<RangeResult, FerryError> {
    let (s, d) = digests(t, src, tgt, lower, upper).await?;
    if s == d && !t.json_apart.is_empty() {
        // The digests leave those JSON columns out: compare the rows, JSON as JSON.
        let (src_rows, tgt_rows) = tokio::try_join!(
            t.fetch_range(Side::Source, src, lower, upper),
            t.fetch_range(Side::Target, tgt, lower, upper)
        )?;
        return Ok(RangeResult {
            source: s,
            target: d,
            diffs: compare_rows(&t.layout, &src_rows, &tgt_rows),
        });
    }
    if s == d {
        return Ok(RangeResult {
            source: s,
            target: d,
            diffs: Vec::new(),
        });
    }
    let diffs = locate(
        t,
        src,
        tgt,
        (lower.map(<[_]>::to_vec), upper.map(<[_]>::to_vec)),
        (s, d),
    )
    .await?;
    Ok(RangeResult {
        source: s,
        target: d,
        diffs,
    })
}

/// Bisect a mismatching range until its pieces have at most [`LEAF_ROWS`]
/// rows a side, read those rows from both sides, and pair them.
///
/// A piece of at most [`DENSE_ROWS`] rows whose two halves both differ is
/// read whole rather than bisected on (dense differences cost one read, not
/// a digest per row).
///
/// Terminates: each split halves the row count of the side with more rows
/// (the split key is that side's key at half its count), so the total count
/// of a piece strictly falls; a piece that cannot be split is read whole.
pub async fn locate(
    t: &VerifyTable,
    src: &mut Conn,
    tgt: &mut Conn,
    range: (Bound, Bound),
    digest: (Digest, Digest),
) -> Result<Vec<RowDiff>, FerryError> {
    let mut work = vec![Piece {
        lo: range.0,
        hi: range.1,
        src: digest.0,
        tgt: digest.1,
    }];
    let (mut src_rows, mut tgt_rows): (Vec<FetchedRow>, Vec<FetchedRow>) = (Vec::new(), Vec::new());
    while let Some(p) = work.pop() {
        if p.src == p.tgt {
            continue;
        }
        let mid = if p.small() {
            None
        } else {
            split_key(t, src, tgt, &p).await?
        };
        let halves = match &mid {
            Some(m) => Some(p.halves(t, src, tgt, m).await?),
            None => None,
        };
        match halves {
            // Differences on both sides of a small split: reading the range beats bisecting on.
            Some((a, b)) if !(a.dense(&b) && p.rows() <= DENSE_ROWS) => {
                work.push(b);
                work.push(a);
            }
            _ => {
                let (lo, hi) = (p.lo.as_deref(), p.hi.as_deref());
                let (a, b) = tokio::try_join!(
                    t.fetch_range(Side::Source, src, lo, hi),
                    t.fetch_range(Side::Target, tgt, lo, hi)
                )?;
                src_rows.extend(a);
                tgt_rows.extend(b);
            }
        }
    }
    Ok(compare_rows(&t.layout, &src_rows, &tgt_rows))
}

/// A key range being narrowed, with both sides' digests.
struct Piece {
    lo: Bound,
    hi: Bound,
    src: Digest,
    tgt: Digest,
}

impl Piece {
    fn rows(&self) -> u64 {
        self.src.rows.max(self.tgt.rows)
    }

    /// Read whole: few rows, or one side empty.
    fn small(&self) -> bool {
        self.rows() <= LEAF_ROWS || self.src.rows == 0 || self.tgt.rows == 0
    }

    fn differs(&self) -> bool {
        self.src != self.tgt
    }

    /// Both halves of a split differ.
    fn dense(&self, other: &Piece) -> bool {
        self.differs() && other.differs()
    }

    /// `[lo, mid)` and `[mid, hi)` with their digests.
    async fn halves(
        &self,
        t: &VerifyTable,
        src: &mut Conn,
        tgt: &mut Conn,
        mid: &[KeyValue],
    ) -> Result<(Piece, Piece), FerryError> {
        let (ls, lt) = digests(t, src, tgt, self.lo.as_deref(), Some(mid)).await?;
        let (rs, rt) = digests(t, src, tgt, Some(mid), self.hi.as_deref()).await?;
        Ok((
            Piece {
                lo: self.lo.clone(),
                hi: Some(mid.to_vec()),
                src: ls,
                tgt: lt,
            },
            Piece {
                lo: Some(mid.to_vec()),
                hi: self.hi.clone(),
                src: rs,
                tgt: rt,
            },
        ))
    }
}

/// The key at half the count of the side with more rows; `None` when it does
/// not move past the lower bound (the piece is then read whole).
async fn split_key(
    t: &VerifyTable,
    src: &mut Conn,
    tgt: &mut Conn,
    p: &Piece,
) -> Result<Bound, FerryError> {
    let (side, count, conn) = if p.src.rows >= p.tgt.rows {
        (Side::Source, p.src.rows, src)
    } else {
        (Side::Target, p.tgt.rows, tgt)
    };
    let mid = t
        .key_at(side, conn, p.lo.as_deref(), p.hi.as_deref(), count / 2)
        .await?;
    Ok(mid.filter(|m| Some(m) != p.lo.as_ref()))
}

/// Keys equal as values: a key read from the target may be typed differently
/// (`Int` there, `Uint` here) when the two columns' types differ.
pub fn same_key(a: &[KeyValue], b: &[KeyValue]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || key_text(x) == key_text(y))
}

fn key_text(k: &KeyValue) -> String {
    match k {
        KeyValue::Int(i) => i.to_string(),
        KeyValue::Uint(u) => u.to_string(),
        KeyValue::Text(s) | KeyValue::Bytes(s) | KeyValue::Literal(s) => s.clone(),
    }
}

/// The difference between a source row and a target row of one key, if any.
fn diff_of(
    t: &VerifyTable,
    key: Vec<KeyValue>,
    source: Option<&FetchedRow>,
    target: Option<&FetchedRow>,
) -> Option<RowDiff> {
    match (source, target) {
        (Some(_), None) => Some(RowDiff::MissingInTarget { key }),
        (None, Some(_)) => Some(RowDiff::ExtraInTarget { key }),
        (Some(s), Some(g)) => {
            let columns = differing_columns(&t.layout, s, g);
            (!columns.is_empty()).then_some(RowDiff::ValuesDiffer { key, columns })
        }
        (None, None) => None,
    }
}

/// Rows by key, for pairing the sides' rows of one key.
fn by_key(rows: Vec<FetchedRow>) -> std::collections::HashMap<Vec<String>, FetchedRow> {
    rows.into_iter()
        .map(|r| (r.key.iter().map(key_text).collect(), r))
        .collect()
}

/// Comparing the rows of a list of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeysResult {
    /// Rows found on each side.
    pub source_rows: u64,
    pub target_rows: u64,
    pub diffs: Vec<RowDiff>,
}

/// Compare the rows with these keys (a `--changed` verify of the keys the
/// sync changed): their digests on both sides at once, and only if those
/// differ (or JSON is compared apart) one read of the rows of each side.
/// While changes flow, [`confirm`] the differing keys as for a range.
pub async fn compare_keys(
    t: &VerifyTable,
    src: &mut Conn,
    tgt: &mut Conn,
    keys: &[Vec<KeyValue>],
) -> Result<KeysResult, FerryError> {
    if t.json_apart.is_empty() {
        // The digests of those rows first, as a range is compared: equal, and
        // no row needs to cross the wire.
        let (s, d) = tokio::try_join!(
            t.digest_keys(Side::Source, src, keys),
            t.digest_keys(Side::Target, tgt, keys)
        )?;
        if s == d {
            return Ok(KeysResult {
                source_rows: s.rows,
                target_rows: d.rows,
                diffs: Vec::new(),
            });
        }
    }
    let (source, target) = tokio::try_join!(
        t.fetch_keys(Side::Source, src, keys),
        t.fetch_keys(Side::Target, tgt, keys)
    )?;
    let (source_rows, target_rows) = (source.len() as u64, target.len() as u64);
    let (source, target) = (by_key(source), by_key(target));
    let diffs = keys
        .iter()
        .filter_map(|k| {
            let text: Vec<String> = k.iter().map(key_text).collect();
            diff_of(t, k.clone(), source.get(&text), target.get(&text))
        })
        .collect();
    Ok(KeysResult {
        source_rows,
        target_rows,
        diffs,
    })
}

/// The outcome of re-checking candidates: the differences that held, and the
/// rows that could not be settled before the deadline (the source kept
/// changing them, or the apply did not catch up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmed {
    pub diffs: Vec<RowDiff>,
    pub unsettled: Vec<Vec<KeyValue>>,
}

/// Re-check candidate differences while changes still flow from source to target.
///
/// Each round reads the candidates on the source, notes the source's binlog
/// position after that read, waits (`wait_applied`) until the incremental
/// apply has passed it, reads them on the target, then reads them on the
/// source again. A row the source did not change between its two reads had
/// that value all along the window in which the target's state was taken, so
/// if the target still differs the difference is real. A row the source did
/// change is tried again next round; rows still changing at `deadline` are
/// returned as unsettled, never as differences. `wait_applied` returns
/// `false` when the apply did not get there in time.
pub async fn confirm<F, Fut>(
    t: &VerifyTable,
    src: &mut Conn,
    tgt: &mut Conn,
    candidates: Vec<Vec<KeyValue>>,
    deadline: Instant,
    mut wait_applied: F,
) -> Result<Confirmed, FerryError>
where
    F: FnMut(BinlogPosition) -> Fut,
    Fut: Future<Output = Result<bool, FerryError>>,
{
    let mut pending = candidates;
    let mut out = Confirmed::default();
    while !pending.is_empty() {
        if Instant::now() >= deadline {
            out.unsettled = pending;
            break;
        }
        let before = t.fetch_keys(Side::Source, src, &pending).await?;
        let pos = binlog_position(src, "source").await?;
        if !wait_applied(pos).await? {
            out.unsettled = pending;
            break;
        }
        let target = t.fetch_keys(Side::Target, tgt, &pending).await?;
        let after = t.fetch_keys(Side::Source, src, &pending).await?;
        let mut again = Vec::new();
        for key in pending {
            let find = |rows: &[FetchedRow]| rows.iter().find(|r| same_key(&r.key, &key)).cloned();
            let (b, a, tg) = (find(&before), find(&after), find(&target));
            if b != a {
                again.push(key);
                continue;
            }
            out.diffs.extend(diff_of(t, key, a.as_ref(), tg.as_ref()));
        }
        pending = again;
    }
    Ok(out)
}

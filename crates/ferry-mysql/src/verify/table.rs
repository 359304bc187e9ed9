//! One table as verify sees it: the source table, its target table, the
//! columns compared, and the statements each side runs over a key range.
//!
//! Invariant: both sides are asked about the same key range with the same
//! range predicate (the planner's), each side renders its own columns
//! canonically (see [`super::canon`]), and only the source gets the task's row
//! filter: a target row outside the filter is an extra row.

use ferry_core::model::KeyValue;
use ferry_core::FerryError;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::canon::{
    column_expr, digest_sql, row_text_with, unmeasured_column, RowHash, DOUBLE_SUM_MAX_ROWS,
};
use super::rows::{FetchedRow, Layout};
use crate::conn::{classify, qualified, quote_ident};
use crate::planner::{key_param, key_value_from_mysql, no_key_error, range_predicate};
use crate::schema::{Column, TableInfo};
use crate::shapes;

/// Which database a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// Row count and exact sum of the 64-bit row hashes of a key range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    pub rows: u64,
    pub sum: u128,
}

/// What one side needs to render and select rows.
#[derive(Debug, Clone)]
struct SideSql {
    /// `db`.`table`, quoted.
    from: String,
    name: String,
    /// The compared columns as this side defines them, in compared order.
    columns: Vec<Column>,
    /// The key columns as this side defines them.
    key: Vec<Column>,
    filter: Option<String>,
    /// The canonical row text over `columns` (the same text column left
    /// unmeasured on both sides).
    text: String,
}

/// A source table paired with its target table.
#[derive(Debug, Clone)]
pub struct VerifyTable {
    pub source: TableInfo,
    pub target: TableInfo,
    /// Key column names (the chunks are ranges of this key).
    pub key: Vec<String>,
    pub layout: Layout,
    /// The row hash of [`VerifyTable::digest`] (SHA1 unless [`VerifyTable::with_hash`]).
    pub hash: RowHash,
    src: SideSql,
    tgt: SideSql,
    /// JSON columns the two servers print differently (MariaDB keeps the text
    /// it was given; MySQL and OceanBase print their binary JSON with spaces
    /// and sorted keys): left out of the digests, so a range whose digests
    /// agree is also compared row by row, with JSON compared as JSON.
    pub json_apart: Vec<String>,
}

/// A digest's partial sum as an integer: NULL (no row) is 0, a DOUBLE must be
/// a whole number below `2^53` (where every integer is exact), text an integer.
fn sum_part(v: &Value) -> Option<u128> {
    const EXACT: f64 = (1u64 << 53) as f64;
    let double = |f: f64| (f.fract() == 0.0 && (0.0..EXACT).contains(&f)).then_some(f as u128);
    match v {
        Value::NULL => Some(0),
        Value::Int(i) => u128::try_from(*i).ok(),
        Value::UInt(u) => Some(u128::from(*u)),
        Value::Double(f) => double(*f),
        Value::Float(f) => double(f64::from(*f)),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// [`sum_part`] of a text result: the text protocol sends a DOUBLE sum as
/// its shortest exact decimal, which may have an exponent (`9.007199254740991e15`).
fn text_sum_part(v: &Value) -> Option<u128> {
    match v {
        Value::Bytes(b) => {
            let text = std::str::from_utf8(b).ok()?.trim();
            text.parse()
                .ok()
                .or_else(|| sum_part(&Value::Double(text.parse().ok()?)))
        }
        other => sum_part(other),
    }
}

/// Consecutive integer keys at least this many long are read as one range
/// (`k BETWEEN a AND b`): the server then walks the run once instead of
/// looking each key up. Measured on MariaDB 10.11: 10,000 appended keys cost
/// 7 ms of server CPU as ranges against 24 ms as `IN` lists; the bench's
/// `--changed` verify (5,721 keys, 800 of them in hot windows and appended
/// rows) 21.3 against 23.3 ms.
const RUN_AS_RANGE: usize = 4;

/// The rows of `keys` for a single-column key whose values are all integers,
/// with the values written as SQL literals (Rust's integer formatting: nothing
/// to escape): `k IN (1, 7, ...) OR k BETWEEN 20 AND 41 OR ...`, runs of
/// [`RUN_AS_RANGE`] or more consecutive keys as ranges (the column orders as an
/// integer, so a range of consecutive keys holds exactly those keys). The
/// list is padded as [`padded`] pads, and the ranges to a power of two with
/// the last range repeated, so the statements still come in few shapes.
/// `None` for any other key list: it goes as parameters instead. A statement
/// without parameters goes as a text query ([`VerifyTable::digest_where`]).
fn int_key_list<K: AsRef<[KeyValue]>>(key: &[String], keys: &[K], most: usize) -> Option<String> {
    let [col] = key else { return None };
    let mut values = Vec::with_capacity(keys.len());
    for k in keys {
        match k.as_ref() {
            [KeyValue::Int(n)] => values.push(i128::from(*n)),
            [KeyValue::Uint(n)] => values.push(i128::from(*n)),
            _ => return None,
        }
    }
    values.sort_unstable();
    values.dedup();
    let (mut single, mut ranges) = (Vec::new(), Vec::new());
    for run in values.chunk_by(|a, b| a + 1 == *b) {
        match run {
            [first, .., last] if run.len() >= RUN_AS_RANGE => ranges.push((*first, *last)),
            _ => single.extend_from_slice(run),
        }
    }
    let c = quote_ident(col);
    let mut terms = Vec::new();
    if let Some(&last) = single.last() {
        single.resize(listed_len(single.len(), most), last);
        let list: Vec<String> = single.iter().map(i128::to_string).collect();
        terms.push(format!("{c} IN ({})", list.join(", ")));
    }
    if let Some(&last) = ranges.last() {
        ranges.resize(ranges.len().next_power_of_two(), last);
        terms.extend(
            ranges
                .iter()
                .map(|(a, b)| format!("{c} BETWEEN {a} AND {b}")),
        );
    }
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

/// How many keys a statement for `n` keys lists: up to 16 keys the next power
/// of two, past that `n` rounded up to three significant bits (16, 20, 24, 28,
/// 32, 40, ...), at most `most`; the last key is repeated to fill it (a key
/// listed twice selects its row once). An `IN` list of a new length is a new
/// shape for OceanBase's plan cache ([`shapes`]): the 20 digest statements of
/// a `--changed` run, each of its own length, cost seekdb 66-120 ms, against
/// 19-27 ms at lengths it had planned before.
fn listed_len(n: usize, most: usize) -> usize {
    let len = match n {
        0..=16 => shapes::round_up(n, 1),
        _ => shapes::round_up(n, 3),
    };
    len.min(most.max(n))
}

/// `batch` with its last key repeated up to [`listed_len`] (references: no key is copied).
fn padded(batch: &[Vec<KeyValue>], most: usize) -> Vec<&[KeyValue]> {
    let mut out: Vec<&[KeyValue]> = batch.iter().map(Vec::as_slice).collect();
    if let Some(&last) = out.last() {
        out.resize(listed_len(batch.len(), most), last);
    }
    out
}

fn not_a_sum(what: &str, v: &Value) -> FerryError {
    FerryError::Internal(format!(
        "{what}: the hash sum {v:?} is not an exact whole number"
    ))
}

/// Rows fetched by key per statement: a single-column key as one `IN` list
/// (the server looks up each value; measured on MariaDB 10.11 for 5,400 keys:
/// 1,000 per `IN` list took 20 ms of server CPU where 200 per OR list took
/// 40 ms and 1,000 per OR list 60 ms), a composite key as an OR of
/// equalities, kept short.
fn keys_per_fetch(key_columns: usize) -> usize {
    match key_columns {
        1 => 1000,
        _ => 200,
    }
}

fn find_column<'a>(t: &'a TableInfo, name: &str) -> Option<&'a Column> {
    t.column(name)
        .or_else(|| t.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
}

/// Whether MariaDB keeps this column as JSON text (`CHECK (json_valid(`c`))`).
fn mariadb_json(t: &TableInfo, col: &str) -> bool {
    t.create_sql
        .contains(&format!("json_valid({})", quote_ident(col)))
}

impl VerifyTable {
    /// Pair a source table with its target table. Generated columns are not
    /// compared (the target computes them; repair could not write them).
    pub fn new(
        source: TableInfo,
        target: TableInfo,
        source_filter: Option<String>,
    ) -> Result<VerifyTable, FerryError> {
        let key = source.key.clone().ok_or_else(|| no_key_error(&source))?;
        let mut src_cols = Vec::new();
        let mut tgt_cols = Vec::new();
        let mut json = Vec::new();
        for c in source.columns.iter().filter(|c| !c.generated) {
            let t = find_column(&target, &c.name)
                .ok_or_else(|| missing_column(&source, &target, &c.name))?;
            json.push(
                c.data_type == "json"
                    || t.data_type == "json"
                    || mariadb_json(&source, &c.name)
                    || mariadb_json(&target, &t.name),
            );
            src_cols.push(c.clone());
            tgt_cols.push(t.clone());
        }
        let key_of = |t: &TableInfo| -> Result<Vec<Column>, FerryError> {
            key.iter()
                .map(|k| {
                    find_column(t, k)
                        .cloned()
                        .ok_or_else(|| missing_column(&source, t, k))
                })
                .collect()
        };
        // A JSON column with a JSON type on one side only is rendered differently by the two servers.
        let apart: Vec<bool> = src_cols
            .iter()
            .zip(&tgt_cols)
            .zip(&json)
            .map(|((a, b), j)| *j && (a.data_type == "json") != (b.data_type == "json"))
            .collect();
        let json_apart: Vec<String> = src_cols
            .iter()
            .zip(&apart)
            .filter(|(_, a)| **a)
            .map(|(c, _)| c.name.clone())
            .collect();
        let digested = |cols: &[Column]| -> Vec<Column> {
            cols.iter()
                .zip(&apart)
                .filter(|(_, a)| !**a)
                .map(|(c, _)| c.clone())
                .collect()
        };
        let unmeasured = unmeasured_column(&digested(&src_cols).iter().collect::<Vec<_>>());
        let text =
            |cols: &[Column]| row_text_with(&digested(cols).iter().collect::<Vec<_>>(), unmeasured);
        let src = SideSql {
            text: text(&src_cols),
            from: qualified(&source.db, &source.name),
            name: source.full_name(),
            key: key_of(&source)?,
            columns: src_cols,
            filter: source_filter,
        };
        let tgt = SideSql {
            text: text(&tgt_cols),
            from: qualified(&target.db, &target.name),
            name: target.full_name(),
            key: key_of(&target)?,
            columns: tgt_cols,
            filter: None,
        };
        let layout = Layout {
            names: src.columns.iter().map(|c| c.name.clone()).collect(),
            json,
        };
        Ok(VerifyTable {
            source,
            target,
            key,
            layout,
            hash: RowHash::default(),
            src,
            tgt,
            json_apart,
        })
    }

    /// Use `hash` for the digests (both sides must be able to compute it: see
    /// [`RowHash::for_servers`]).
    pub fn with_hash(mut self, hash: RowHash) -> VerifyTable {
        self.hash = hash;
        self
    }

    fn side(&self, side: Side) -> &SideSql {
        match side {
            Side::Source => &self.src,
            Side::Target => &self.tgt,
        }
    }

    /// The target's column definitions, in compared order (for repair).
    pub fn target_columns(&self) -> &[Column] {
        &self.tgt.columns
    }

    /// The target's key column definitions.
    pub fn target_key(&self) -> &[Column] {
        &self.tgt.key
    }

    /// The source's column definitions, in compared order.
    pub fn source_columns(&self) -> &[Column] {
        &self.src.columns
    }

    /// `WHERE` text and parameters for `[lower, upper)` on `side`.
    fn range_where(
        &self,
        side: Side,
        lower: Option<&[KeyValue]>,
        upper: Option<&[KeyValue]>,
    ) -> (String, Vec<Value>) {
        let (pred, params) = range_predicate(&self.key, lower, upper);
        match &self.side(side).filter {
            Some(f) => (format!("{pred} AND ({f})"), params),
            None => (pred, params),
        }
    }

    /// The WHERE conditions (with their parameters) that select the rows of
    /// `keys` on `side`, within its row filter, one per statement's batch.
    fn key_batches<'k>(
        &self,
        side: Side,
        keys: &'k [Vec<KeyValue>],
    ) -> impl Iterator<Item = (String, Vec<Value>)> + use<'_, 'k> {
        let filter = self
            .side(side)
            .filter
            .as_ref()
            .map(|f| format!(" AND ({f})"))
            .unwrap_or_default();
        let most = keys_per_fetch(self.key.len());
        keys.chunks(most).map(move |batch| {
            let (pred, params) = match int_key_list(&self.key, batch, most) {
                Some(list) => (list, Vec::new()),
                None => key_match(&self.key, &padded(batch, most)),
            };
            (format!("({pred}){filter}"), params)
        })
    }

    fn what(&self, side: Side, doing: &str) -> String {
        format!("{}: {doing} {}", side.as_str(), self.side(side).name)
    }

    /// Row count and hash sum of `[lower, upper)` on `side`, computed by the server.
    pub async fn digest(
        &self,
        side: Side,
        conn: &mut Conn,
        lower: Option<&[KeyValue]>,
        upper: Option<&[KeyValue]>,
    ) -> Result<Digest, FerryError> {
        let digest = self.digest_with(side, conn, lower, upper, false).await?;
        if digest.rows > DOUBLE_SUM_MAX_ROWS && self.hash == RowHash::Crc64 {
            return self.digest_with(side, conn, lower, upper, true).await;
        }
        Ok(digest)
    }

    async fn digest_with(
        &self,
        side: Side,
        conn: &mut Conn,
        lower: Option<&[KeyValue]>,
        upper: Option<&[KeyValue]>,
        exact: bool,
    ) -> Result<Digest, FerryError> {
        let (where_, params) = self.range_where(side, lower, upper);
        self.digest_where(side, conn, &where_, params, exact).await
    }

    /// Row count and hash sum of the rows with these keys on `side` (within
    /// the side's filter), computed by the server in the batches
    /// [`VerifyTable::fetch_keys`] reads: a batch holds at most 1,000 rows, so
    /// the inexact sum of the CRC pair is exact.
    pub async fn digest_keys(
        &self,
        side: Side,
        conn: &mut Conn,
        keys: &[Vec<KeyValue>],
    ) -> Result<Digest, FerryError> {
        let mut total = Digest::default();
        for (where_, params) in self.key_batches(side, keys) {
            let d = self
                .digest_where(side, conn, &where_, params, false)
                .await?;
            total.rows += d.rows;
            total.sum += d.sum;
        }
        Ok(total)
    }

    async fn digest_where(
        &self,
        side: Side,
        conn: &mut Conn,
        where_: &str,
        params: Vec<Value>,
        exact: bool,
    ) -> Result<Digest, FerryError> {
        let s = self.side(side);
        let sql = digest_sql(&s.from, &s.text, where_, self.hash, exact);
        let what = self.what(side, "checksumming");
        // Without parameters (e.g. a key list of integer literals) a text query:
        // a prepared `IN` list of N markers costs a prepare per distinct N, with
        // N parameter definitions sent back and parsed (measured on a
        // `--changed` verify of 5,759 keys: a quarter of Ferry's CPU).
        let row: Option<(u64, Value, Value)> = match params.is_empty() {
            true => conn.query_first(sql).await,
            false => conn.exec_first(sql, params).await,
        }
        .map_err(|e| classify(e, &what))?;
        let Some((rows, hi, lo)) = row else {
            return Ok(Digest::default());
        };
        let part = |v: Value| text_sum_part(&v).ok_or_else(|| not_a_sum(&what, &v));
        Ok(Digest {
            rows,
            sum: (part(hi)? << 32) + part(lo)?,
        })
    }

    /// The key `offset` rows into `[lower, upper)` on `side`, in key order.
    pub async fn key_at(
        &self,
        side: Side,
        conn: &mut Conn,
        lower: Option<&[KeyValue]>,
        upper: Option<&[KeyValue]>,
        offset: u64,
    ) -> Result<Option<Vec<KeyValue>>, FerryError> {
        let s = self.side(side);
        let (where_, params) = self.range_where(side, lower, upper);
        let keys = self
            .key
            .iter()
            .map(|k| quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {keys} FROM {} WHERE {where_} ORDER BY {keys} LIMIT 1 OFFSET {offset}",
            s.from
        );
        let what = self.what(side, "splitting a key range of");
        let row: Option<Row> = conn
            .exec_first(sql, params)
            .await
            .map_err(|e| classify(e, &what))?;
        match row {
            None => Ok(None),
            Some(r) => r
                .unwrap()
                .iter()
                .zip(&s.key)
                .map(|(v, c)| key_value_from_mysql(v, c))
                .collect::<Result<_, _>>()
                .map(Some),
        }
    }

    /// `SELECT key, canonical key, canonical columns FROM side`.
    fn select_list(&self, side: Side) -> String {
        let s = self.side(side);
        let mut items: Vec<String> = s.key.iter().map(|c| quote_ident(&c.name)).collect();
        items.extend(s.key.iter().map(column_expr));
        items.extend(s.columns.iter().map(column_expr));
        format!("SELECT {} FROM {}", items.join(", "), s.from)
    }

    fn read_rows(&self, side: Side, rows: Vec<Row>) -> Result<Vec<FetchedRow>, FerryError> {
        let s = self.side(side);
        let nk = s.key.len();
        let text = |v: &Value| -> Option<Vec<u8>> {
            match v {
                Value::NULL => None,
                Value::Bytes(b) => Some(b.clone()),
                Value::Int(i) => Some(i.to_string().into_bytes()),
                Value::UInt(u) => Some(u.to_string().into_bytes()),
                other => Some(other.as_sql(true).into_bytes()),
            }
        };
        let width = 2 * nk + s.columns.len();
        rows.into_iter()
            .map(|r| {
                let vals = r.unwrap();
                if vals.len() != width {
                    return Err(FerryError::Internal(format!(
                        "{}: a row came back with {} columns, {width} expected",
                        self.what(side, "reading rows of"),
                        vals.len()
                    )));
                }
                let key = vals[..nk]
                    .iter()
                    .zip(&s.key)
                    .map(|(v, c)| key_value_from_mysql(v, c))
                    .collect::<Result<_, _>>()?;
                let key_text = vals[nk..2 * nk].iter().map(text).collect();
                let values = vals[2 * nk..].iter().map(text).collect();
                Ok(FetchedRow {
                    key,
                    key_text,
                    values,
                })
            })
            .collect()
    }

    /// Every row of `[lower, upper)` on `side`, rendered canonically.
    pub async fn fetch_range(
        &self,
        side: Side,
        conn: &mut Conn,
        lower: Option<&[KeyValue]>,
        upper: Option<&[KeyValue]>,
    ) -> Result<Vec<FetchedRow>, FerryError> {
        let (where_, params) = self.range_where(side, lower, upper);
        let sql = format!("{} WHERE {where_}", self.select_list(side));
        let what = self.what(side, "reading rows of");
        let rows: Vec<Row> = conn
            .exec(sql, params)
            .await
            .map_err(|e| classify(e, &what))?;
        self.read_rows(side, rows)
    }

    /// The rows with these keys on `side` (rows outside the source's filter are not returned there).
    pub async fn fetch_keys(
        &self,
        side: Side,
        conn: &mut Conn,
        keys: &[Vec<KeyValue>],
    ) -> Result<Vec<FetchedRow>, FerryError> {
        let what = self.what(side, "reading rows by key of");
        let rows = self
            .rows_by_key(side, conn, &self.select_list(side), keys, &what)
            .await?;
        self.read_rows(side, rows)
    }

    /// Every compared column of the source rows with these keys, as the
    /// server returns them (for repair statements).
    pub async fn source_rows_raw(
        &self,
        conn: &mut Conn,
        keys: &[Vec<KeyValue>],
    ) -> Result<Vec<(Vec<KeyValue>, Vec<Value>)>, FerryError> {
        let s = &self.src;
        let mut items: Vec<String> = s.key.iter().map(|c| quote_ident(&c.name)).collect();
        items.extend(s.columns.iter().map(|c| quote_ident(&c.name)));
        let select = format!("SELECT {} FROM {}", items.join(", "), s.from);
        let what = self.what(Side::Source, "reading rows to repair of");
        let rows = self
            .rows_by_key(Side::Source, conn, &select, keys, &what)
            .await?;
        rows.into_iter()
            .map(|r| {
                let mut key_vals = r.unwrap();
                let rest = key_vals.split_off(s.key.len().min(key_vals.len()));
                let key = key_vals
                    .iter()
                    .zip(&s.key)
                    .map(|(v, c)| key_value_from_mysql(v, c))
                    .collect::<Result<_, _>>()?;
                Ok((key, rest))
            })
            .collect()
    }

    /// `select` (a `SELECT .. FROM side`) for the rows with these keys, in
    /// batches, within the side's filter.
    async fn rows_by_key(
        &self,
        side: Side,
        conn: &mut Conn,
        select: &str,
        keys: &[Vec<KeyValue>],
        what: &str,
    ) -> Result<Vec<Row>, FerryError> {
        let mut out = Vec::new();
        for (where_, params) in self.key_batches(side, keys) {
            let sql = format!("{select} WHERE {where_}");
            let rows: Vec<Row> = conn
                .exec(sql, params)
                .await
                .map_err(|e| classify(e, what))?;
            out.extend(rows);
        }
        Ok(out)
    }
}

/// `(k1 = ? AND k2 = ?) OR (...)` for a batch of keys, with its parameters;
/// `k IN (?, ...)` for a single-column key.
fn key_match<K: AsRef<[KeyValue]>>(key: &[String], keys: &[K]) -> (String, Vec<Value>) {
    let params = keys
        .iter()
        .flat_map(|k| k.as_ref().iter().map(key_param))
        .collect();
    if let ([col], [_, ..]) = (key, keys) {
        let marks = vec!["?"; keys.len()].join(", ");
        return (format!("{} IN ({marks})", quote_ident(col)), params);
    }
    let one = key
        .iter()
        .map(|k| format!("{} = ?", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let pred = keys
        .iter()
        .map(|_| format!("({one})"))
        .collect::<Vec<_>>()
        .join(" OR ");
    (
        if pred.is_empty() {
            "1=0".to_string()
        } else {
            pred
        },
        params,
    )
}

fn missing_column(source: &TableInfo, target: &TableInfo, col: &str) -> FerryError {
    FerryError::SchemaIncompatible(format!(
        "column `{col}` of source table {} has no counterpart in target table {}, so the tables cannot be \
         compared. Add the column on the target (ALTER TABLE {} ADD COLUMN ...) or recreate the target table \
         from the source's definition.",
        source.full_name(),
        target.full_name(),
        qualified(&target.db, &target.name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_match_lists_each_key() {
        let (p, v) = key_match(
            &["a".into(), "b".into()],
            &[
                vec![KeyValue::Int(1), KeyValue::Int(2)],
                vec![KeyValue::Int(3), KeyValue::Int(4)],
            ],
        );
        assert_eq!(p, "(`a` = ? AND `b` = ?) OR (`a` = ? AND `b` = ?)");
        assert_eq!(v.len(), 4);
        assert_eq!(key_match::<Vec<KeyValue>>(&["a".into()], &[]).0, "1=0");
        let (p, v) = key_match(
            &["a".into()],
            &[vec![KeyValue::Int(1)], vec![KeyValue::Int(3)]],
        );
        assert_eq!(p, "`a` IN (?, ?)");
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn key_lists_come_in_few_lengths_padded_with_the_last_key() {
        let lens: Vec<usize> = [1, 3, 16, 17, 20, 251, 290, 320, 321, 999, 1000]
            .iter()
            .map(|&n| listed_len(n, 1000))
            .collect();
        assert_eq!(lens, [1, 4, 16, 20, 20, 256, 320, 320, 384, 1000, 1000]);
        // Never shorter than the batch nor past the limit; at most a quarter more
        // past 16 keys (a step is an eighth of the next power of two).
        for n in 1..=1000 {
            let l = listed_len(n, 1000);
            let most = if n <= 16 { 2 * n - 1 } else { n + n / 4 };
            assert!(l >= n && l <= 1000 && l <= most, "{n} -> {l}");
        }
        assert_eq!(listed_len(1200, 1000), 1200, "a longer batch is never cut");
        assert_eq!(listed_len(0, 1000), 1);
        let keys: Vec<Vec<KeyValue>> = (1..=5).map(|i| vec![KeyValue::Int(i)]).collect();
        let p = padded(&keys, 1000);
        assert_eq!(p.len(), 8);
        assert!(p[..5].iter().zip(&keys).all(|(a, b)| *a == b.as_slice()));
        assert!(p[5..].iter().all(|k| *k == keys[4].as_slice()));
        assert!(padded(&[], 1000).is_empty());
        assert_eq!(padded(&keys[..4], 1000).len(), 4);
    }

    #[test]
    fn runs_of_consecutive_integer_keys_are_read_as_ranges() {
        let ints = |v: &[i64]| -> Vec<Vec<KeyValue>> {
            v.iter().map(|&n| vec![KeyValue::Int(n)]).collect()
        };
        let id = ["id".to_string()];
        // A run of four becomes a range; three in a row stay listed; the
        // singles are padded to a listed length with the last one.
        let keys = ints(&[1, 5, 6, 7, 10, 11, 12, 13, 20]);
        assert_eq!(
            int_key_list(&id, &keys, 1000).as_deref(),
            Some("`id` IN (1, 5, 6, 7, 20, 20, 20, 20) OR `id` BETWEEN 10 AND 13")
        );
        // Unsorted, repeated (the padding of an earlier step) and negative keys;
        // ranges padded to a power of two with the last one.
        let keys = ints(&[-2, 33, 30, 31, 32, 33, -1, -4, -3, 40, 41, 42, 43]);
        assert_eq!(
            int_key_list(&id, &keys, 1000).as_deref(),
            Some(
                "`id` BETWEEN -4 AND -1 OR `id` BETWEEN 30 AND 33 OR `id` BETWEEN 40 AND 43 \
                 OR `id` BETWEEN 40 AND 43"
            )
        );
        // Unsigned keys at the top of the range do not overflow.
        let top: Vec<Vec<KeyValue>> = (0..4)
            .map(|i| vec![KeyValue::Uint(u64::MAX - 3 + i)])
            .collect();
        assert_eq!(
            int_key_list(&id, &top, 1000).as_deref(),
            Some("`id` BETWEEN 18446744073709551612 AND 18446744073709551615")
        );
    }

    #[test]
    fn integer_key_lists_are_written_as_literals_and_text_sums_read_exactly() {
        let list = int_key_list(
            &["id".into()],
            &[vec![KeyValue::Int(-3)], vec![KeyValue::Uint(u64::MAX)]],
            1000,
        );
        assert_eq!(list.as_deref(), Some("`id` IN (-3, 18446744073709551615)"));
        let mixed = [vec![KeyValue::Int(1)], vec![KeyValue::Text("x".into())]];
        assert_eq!(int_key_list(&["id".into()], &mixed, 1000), None);
        let pair = [vec![KeyValue::Int(1), KeyValue::Int(2)]];
        assert_eq!(int_key_list(&["a".into(), "b".into()], &pair, 1000), None);
        assert_eq!(
            int_key_list::<Vec<KeyValue>>(&["id".into()], &[], 1000),
            None
        );
        let text = |t: &str| text_sum_part(&Value::Bytes(t.as_bytes().to_vec()));
        assert_eq!(text("4294967295000"), Some(4294967295000));
        assert_eq!(text("9.007199254740991e15"), Some(9007199254740991));
        assert_eq!(text("1.5"), None);
        assert_eq!(text("9.007199254740992e15"), None, "2^53 may be rounded");
        assert_eq!(text_sum_part(&Value::NULL), Some(0));
    }

    #[test]
    fn sum_parts_are_exact_or_refused() {
        assert_eq!(sum_part(&Value::NULL), Some(0));
        assert_eq!(sum_part(&Value::Int(0)), Some(0));
        assert_eq!(
            sum_part(&Value::Double(4294967295.0 * 2097152.0)),
            Some(4294967295 * 2097152)
        );
        assert_eq!(
            sum_part(&Value::Double(9007199254740992.0)),
            None,
            "2^53 may be rounded"
        );
        assert_eq!(sum_part(&Value::Double(1.5)), None);
        assert_eq!(sum_part(&Value::Double(-1.0)), None);
        assert_eq!(
            sum_part(&Value::Bytes(
                b"340282366920938463463374607431768211455".to_vec()
            )),
            Some(u128::MAX)
        );
        assert_eq!(sum_part(&Value::Bytes(b"1e5".to_vec())), None);
        // DOUBLE_SUM_MAX_ROWS rows of the largest 32-bit half stay exact.
        assert!((DOUBLE_SUM_MAX_ROWS as f64) * (u32::MAX as f64) < (1u64 << 53) as f64);
    }
}

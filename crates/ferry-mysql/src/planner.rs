//! The chunk planner: splits a table into half-open key ranges `[lower, upper)`,
//! and the key binding helpers every reader of a chunk uses.
//!
//! Invariant: the chunks of a table cover its whole key space exactly once.
//! The first chunk has `lower = None`, the last `upper = None`, and each
//! chunk's `upper` is the next chunk's `lower`; a key equal to a boundary
//! belongs to the chunk that starts there. Boundaries are keys read from the
//! table's own key index, and range predicates compare with the column's own
//! collation, so the server's order (not Rust's) decides membership, and rows
//! inserted after planning still fall in exactly one chunk.

use ferry_core::model::{ChunkRecord, ChunkState, KeyValue};
use ferry_core::FerryError;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use crate::column_kind::ColumnKind;
use crate::conn::{classify, qualified, quote_ident};
use crate::schema::{Column, TableInfo};

/// A chunk should hold at most about this many bytes (wide rows get fewer rows per chunk).
/// Small enough that a table of wide rows splits into as many chunks as its
/// bytes deserve: measured on the full-copy benchmark, a 124 MB table of
/// 2.9 KB rows planned at 64 MiB made two 62 MB chunks that ran alone for the
/// last 1.4 s of a 5.6 s copy.
pub const MAX_CHUNK_BYTES: u64 = 16 * 1024 * 1024;

/// A single integer key whose span (`max - min + 1`) is at most this many
/// times the estimated row count is planned arithmetically (see
/// [`dense_int_boundaries`]) instead of by walking the index.
pub const DENSE_SPAN_FACTOR: u128 = 2;

/// WHERE fragment for the half-open key range `[lower, upper)` over `key_cols`
/// (`None` = unbounded), expanded as `(a > ? OR (a = ? AND b >= ?))` so MariaDB
/// uses the key index for a range scan, plus its bound parameters in order.
/// With both bounds `None` the fragment is `1=1`.
pub fn range_predicate(
    key_cols: &[String],
    lower: Option<&[KeyValue]>,
    upper: Option<&[KeyValue]>,
) -> (String, Vec<Value>) {
    let mut parts = Vec::new();
    let mut params = Vec::new();
    if let Some(lo) = lower {
        parts.push(bound(key_cols, lo, ">", ">=", &mut params));
    }
    if let Some(hi) = upper {
        parts.push(bound(key_cols, hi, "<", "<", &mut params));
    }
    if parts.is_empty() {
        return ("1=1".to_string(), params);
    }
    (parts.join(" AND "), params)
}

/// `(k1, .., kn) OP (v1, .., vn)` expanded column by column: `strict` compares
/// every column but the last, `last` the last one. A leading `k1 >= v1`
/// (or `<=`) conjunct gives the optimizer a plain range on the first column.
fn bound(
    cols: &[String],
    vals: &[KeyValue],
    strict: &str,
    last: &str,
    params: &mut Vec<Value>,
) -> String {
    let n = cols.len().min(vals.len());
    if n == 0 {
        return "1=1".to_string();
    }
    let q: Vec<String> = cols[..n].iter().map(|c| quote_ident(c)).collect();
    if n == 1 {
        params.push(key_param(&vals[0]));
        return format!("{} {last} ?", q[0]);
    }
    // Build from the innermost column outwards: e_i = k_i STRICT v_i OR (k_i = v_i AND e_{i+1}).
    let mut inner_params = vec![key_param(&vals[n - 1])];
    let mut expr = format!("{} {last} ?", q[n - 1]);
    for i in (0..n - 1).rev() {
        let v = key_param(&vals[i]);
        let mut p = vec![v.clone(), v];
        p.append(&mut inner_params);
        inner_params = p;
        expr = format!("({c} {strict} ? OR ({c} = ? AND {expr}))", c = q[i]);
    }
    let lead_op = if strict == ">" { ">=" } else { "<=" };
    params.push(key_param(&vals[0]));
    params.append(&mut inner_params);
    format!("({} {lead_op} ? AND {expr})", q[0])
}

/// A key value as a bound parameter that compares exactly like the stored value.
pub fn key_param(v: &KeyValue) -> Value {
    match v {
        KeyValue::Int(i) => Value::Int(*i),
        KeyValue::Uint(u) => Value::UInt(*u),
        KeyValue::Text(s) | KeyValue::Literal(s) => Value::Bytes(s.as_bytes().to_vec()),
        KeyValue::Bytes(h) => {
            Value::Bytes(hex::decode(h).unwrap_or_else(|_| h.as_bytes().to_vec()))
        }
    }
}

/// How a key column's values are typed in a [`KeyValue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    Signed,
    Unsigned,
    Text,
    Binary,
    /// DECIMAL, temporal, UUID, INET6, ...: the text form binds exactly.
    Literal,
    /// Float, BIT, ENUM, SET, JSON, spatial: comparing a bound value with the
    /// column does not follow the index order (ENUM sorts by ordinal but
    /// compares as text; FLOAT text is not exact), so the table is one chunk.
    Unordered,
}

pub fn key_class(col: &Column) -> KeyClass {
    let kind = ColumnKind::of(&col.data_type);
    match kind {
        _ if kind.orders_as_integer() => {
            if col.unsigned {
                KeyClass::Unsigned
            } else {
                KeyClass::Signed
            }
        }
        ColumnKind::Char | ColumnKind::Text => KeyClass::Text,
        ColumnKind::Binary | ColumnKind::Blob => KeyClass::Binary,
        ColumnKind::Float
        | ColumnKind::Double
        | ColumnKind::Bit
        | ColumnKind::Enum
        | ColumnKind::Set
        | ColumnKind::Json
        | ColumnKind::Spatial => KeyClass::Unordered,
        _ => KeyClass::Literal,
    }
}

/// Read a key value the server returned (text or binary protocol) into a [`KeyValue`].
pub fn key_value_from_mysql(v: &Value, col: &Column) -> Result<KeyValue, FerryError> {
    let bad = |why: &str| {
        FerryError::Internal(format!(
            "key column `{}` ({}): {why}: {v:?}",
            col.name, col.column_type
        ))
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad("value is not UTF-8 text"));
    match (key_class(col), v) {
        (_, Value::NULL) => Err(bad("a key value is NULL")),
        (KeyClass::Signed, Value::Int(i)) => Ok(KeyValue::Int(*i)),
        (KeyClass::Signed, Value::UInt(u)) => i64::try_from(*u)
            .map(KeyValue::Int)
            .map_err(|_| bad("out of range")),
        (KeyClass::Signed, Value::Bytes(b)) => text(b)?
            .trim()
            .parse()
            .map(KeyValue::Int)
            .map_err(|_| bad("not an integer")),
        (KeyClass::Unsigned, Value::UInt(u)) => Ok(KeyValue::Uint(*u)),
        (KeyClass::Unsigned, Value::Int(i)) => u64::try_from(*i)
            .map(KeyValue::Uint)
            .map_err(|_| bad("negative")),
        (KeyClass::Unsigned, Value::Bytes(b)) => text(b)?
            .trim()
            .parse()
            .map(KeyValue::Uint)
            .map_err(|_| bad("not an unsigned integer")),
        (KeyClass::Text, Value::Bytes(b)) => Ok(KeyValue::Text(text(b)?)),
        (KeyClass::Binary, Value::Bytes(b)) => Ok(KeyValue::Bytes(hex::encode(b))),
        (_, Value::Bytes(b)) => match String::from_utf8(b.clone()) {
            Ok(s) => Ok(KeyValue::Literal(s)),
            Err(_) => Ok(KeyValue::Bytes(hex::encode(b))),
        },
        (_, Value::Int(i)) => Ok(KeyValue::Literal(i.to_string())),
        (_, Value::UInt(u)) => Ok(KeyValue::Literal(u.to_string())),
        (_, Value::Float(f)) => Ok(KeyValue::Literal(format!("{f:?}"))),
        (_, Value::Double(f)) => Ok(KeyValue::Literal(format!("{f:?}"))),
        (_, Value::Date(..)) | (_, Value::Time(..)) => Ok(KeyValue::Literal(temporal_text(v, col))),
    }
}

/// The text form of a binary-protocol DATE/DATETIME/TIMESTAMP/TIME value.
fn temporal_text(v: &Value, col: &Column) -> String {
    match *v {
        Value::Date(y, mo, d, h, mi, s, us) => {
            if col.data_type == "date" {
                format!("{y:04}-{mo:02}-{d:02}")
            } else if us > 0 {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            }
        }
        Value::Time(neg, days, h, mi, s, us) => {
            let sign = if neg { "-" } else { "" };
            let hours = u64::from(days) * 24 + u64::from(h);
            if us > 0 {
                format!("{sign}{hours:02}:{mi:02}:{s:02}.{us:06}")
            } else {
                format!("{sign}{hours:02}:{mi:02}:{s:02}")
            }
        }
        _ => String::new(),
    }
}

/// The chunk id: `<table index:04>-<seq:06>`, sortable within a task.
pub fn chunk_id(table_index: usize, seq: usize) -> String {
    format!("{table_index:04}-{seq:06}")
}

/// Pure core: the chunks of a table given its sorted boundary keys (each the
/// first key of a chunk but the first). `n` boundaries give `n + 1` chunks;
/// an empty list gives one chunk covering everything. Repeated boundaries are dropped.
pub fn chunks_from_boundaries(
    db: &str,
    table: &str,
    table_index: usize,
    boundaries: Vec<Vec<KeyValue>>,
) -> Vec<ChunkRecord> {
    let mut bounds: Vec<Vec<KeyValue>> = Vec::with_capacity(boundaries.len());
    for b in boundaries {
        if bounds.last() != Some(&b) {
            bounds.push(b);
        }
    }
    let mut lowers: Vec<Option<Vec<KeyValue>>> = vec![None];
    lowers.extend(bounds.iter().cloned().map(Some));
    let mut uppers: Vec<Option<Vec<KeyValue>>> = bounds.into_iter().map(Some).collect();
    uppers.push(None);
    lowers
        .into_iter()
        .zip(uppers)
        .enumerate()
        .map(|(seq, (lower, upper))| ChunkRecord {
            chunk_id: chunk_id(table_index, seq),
            source_db: db.to_string(),
            source_table: table.to_string(),
            lower,
            upper,
            state: ChunkState::Pending,
            owner: None,
            lease_until_ms: 0,
            attempts: 0,
            rows: 0,
            bytes: 0,
            last_error: None,
        })
        .collect()
}

/// Rows per chunk: `chunk_rows`, reduced so a chunk of rows of `avg_row_bytes`
/// stays under [`MAX_CHUNK_BYTES`]; at least 1.
pub fn rows_per_chunk(chunk_rows: u64, avg_row_bytes: u64) -> u64 {
    let by_bytes = MAX_CHUNK_BYTES
        .checked_div(avg_row_bytes)
        .unwrap_or(u64::MAX);
    chunk_rows.min(by_bytes).max(1)
}

/// Plan the chunks of a table by walking its key index: each boundary is the
/// key `step` rows after the previous one
/// (`SELECT k FROM t WHERE (k) >= last ORDER BY k LIMIT 1 OFFSET step`).
/// A table without a usable key is refused; a key the server cannot range-compare
/// exactly (see [`KeyClass::Unordered`]) gives a single chunk.
pub async fn plan_chunks(
    conn: &mut Conn,
    table: &TableInfo,
    chunk_rows: u64,
    table_index: usize,
) -> Result<Vec<ChunkRecord>, FerryError> {
    let key = table.key.clone().ok_or_else(|| no_key_error(table))?;
    let cols: Vec<&Column> = key
        .iter()
        .map(|k| {
            table.column(k).ok_or_else(|| {
                FerryError::Internal(format!(
                    "key column `{k}` of {} is not among its columns",
                    table.full_name()
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if cols.iter().any(|c| key_class(c) == KeyClass::Unordered) {
        tracing::info!(table = %table.full_name(), "key type is not range-comparable; planning one chunk");
        return Ok(chunks_from_boundaries(
            &table.db,
            &table.name,
            table_index,
            Vec::new(),
        ));
    }
    let step = rows_per_chunk(chunk_rows, table.avg_row_bytes);
    let what = format!("source: planning chunks of {}", table.full_name());
    if let [col] = cols.as_slice() {
        if let Some(boundaries) = plan_dense_int(conn, table, col, step, &what).await? {
            return Ok(chunks_from_boundaries(
                &table.db,
                &table.name,
                table_index,
                boundaries,
            ));
        }
    }
    let select_list = key
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let from = qualified(&table.db, &table.name);
    let mut boundaries: Vec<Vec<KeyValue>> = Vec::new();
    loop {
        let (pred, params) = range_predicate(&key, boundaries.last().map(Vec::as_slice), None);
        let sql = format!("SELECT {select_list} FROM {from} WHERE {pred} ORDER BY {select_list} LIMIT 1 OFFSET {step}");
        let row: Option<Row> = conn
            .exec_first(sql, params)
            .await
            .map_err(|e| classify(e, &what))?;
        let Some(row) = row else { break };
        let values = row.unwrap();
        let next = values
            .iter()
            .zip(cols.iter())
            .map(|(v, c)| key_value_from_mysql(v, c))
            .collect::<Result<Vec<_>, _>>()?;
        if boundaries.last() == Some(&next) {
            return Err(FerryError::Internal(format!(
                "{what}: the key walk did not advance past {next:?}"
            )));
        }
        boundaries.push(next);
    }
    Ok(chunks_from_boundaries(
        &table.db,
        &table.name,
        table_index,
        boundaries,
    ))
}

/// Plan a single integer key whose values are dense from `MIN` and `MAX`
/// alone (two index dives instead of a walk over every key). `None` when the
/// key is not an integer, the table looks empty, or the span is sparse (then
/// the walk sizes chunks by real rows).
async fn plan_dense_int(
    conn: &mut Conn,
    table: &TableInfo,
    col: &Column,
    step: u64,
    what: &str,
) -> Result<Option<Vec<Vec<KeyValue>>>, FerryError> {
    let class = key_class(col);
    if !matches!(class, KeyClass::Signed | KeyClass::Unsigned) || table.rows_estimate == 0 {
        return Ok(None);
    }
    let c = quote_ident(&col.name);
    let sql = format!(
        "SELECT CAST(MIN({c}) AS CHAR), CAST(MAX({c}) AS CHAR) FROM {}",
        qualified(&table.db, &table.name)
    );
    let row: Option<(Option<String>, Option<String>)> =
        conn.query_first(sql).await.map_err(|e| classify(e, what))?;
    let parse = |v: Option<String>| v.and_then(|s| s.trim().parse::<i128>().ok());
    let Some((Some(min), Some(max))) = row.map(|(a, b)| (parse(a), parse(b))) else {
        return Ok(None);
    };
    let Some(bounds) = dense_int_boundaries(min, max, table.rows_estimate, step) else {
        return Ok(None);
    };
    let to_key = |b: i128| -> Option<KeyValue> {
        match class {
            KeyClass::Signed => i64::try_from(b).ok().map(KeyValue::Int),
            _ => u64::try_from(b).ok().map(KeyValue::Uint),
        }
    };
    Ok(bounds
        .into_iter()
        .map(|b| to_key(b).map(|k| vec![k]))
        .collect::<Option<Vec<_>>>())
}

/// Pure core of dense integer planning: boundaries `min + i * width` (each the
/// first key of a chunk but the first), strictly increasing and inside
/// `(min, max]`, with `width` the key distance that holds about `step_rows`
/// rows at the density `rows_estimate / (max - min + 1)`. `None` when the span
/// is more than [`DENSE_SPAN_FACTOR`] times the estimate (sparse keys: walk
/// instead) or the bounds are inverted. Correctness does not depend on the
/// estimate: the chunks cover every key whatever the real density.
pub fn dense_int_boundaries(
    min: i128,
    max: i128,
    rows_estimate: u64,
    step_rows: u64,
) -> Option<Vec<i128>> {
    if max < min || rows_estimate == 0 || step_rows == 0 {
        return None;
    }
    let span = (max - min + 1) as u128;
    if span > DENSE_SPAN_FACTOR * rows_estimate as u128 {
        return None;
    }
    let width = (span * step_rows as u128)
        .div_ceil(rows_estimate as u128)
        .max(1);
    let mut out = Vec::new();
    let mut b = min + width as i128;
    while b <= max {
        out.push(b);
        b += width as i128;
    }
    Some(out)
}

/// The error for a table that has neither a primary key nor a NOT NULL unique key.
pub fn no_key_error(table: &TableInfo) -> FerryError {
    FerryError::SchemaIncompatible(format!(
        "table {} has no primary key and no unique key whose columns are all NOT NULL, so it cannot be split \
         into chunks or kept in sync row by row. Add a primary key on the source, e.g. \
         ALTER TABLE {} ADD COLUMN ferry_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY; \
         or exclude the table in objects.exclude.",
        table.full_name(),
        qualified(&table.db, &table.name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn single_column_predicates() {
        let k = names(&["id"]);
        let lo = [KeyValue::Int(10)];
        let hi = [KeyValue::Int(20)];
        assert_eq!(range_predicate(&k, None, None), ("1=1".to_string(), vec![]));
        let (p, v) = range_predicate(&k, Some(&lo), Some(&hi));
        assert_eq!(p, "`id` >= ? AND `id` < ?");
        assert_eq!(v, vec![Value::Int(10), Value::Int(20)]);
    }

    #[test]
    fn composite_predicates_expand() {
        let k = names(&["a", "b`c"]);
        let lo = [KeyValue::Int(1), KeyValue::Text("x".into())];
        let (p, v) = range_predicate(&k, Some(&lo), None);
        assert_eq!(p, "(`a` >= ? AND (`a` > ? OR (`a` = ? AND `b``c` >= ?)))");
        assert_eq!(
            v,
            vec![
                Value::Int(1),
                Value::Int(1),
                Value::Int(1),
                Value::Bytes(b"x".to_vec())
            ]
        );
        let (p, v) = range_predicate(
            &names(&["a", "b", "c"]),
            None,
            Some(&[KeyValue::Int(1), KeyValue::Int(2), KeyValue::Int(3)]),
        );
        assert_eq!(
            p,
            "(`a` <= ? AND (`a` < ? OR (`a` = ? AND (`b` < ? OR (`b` = ? AND `c` < ?)))))"
        );
        assert_eq!(v.len(), 6);
    }

    #[test]
    fn binds_and_reads_back() {
        let col = |t: &str, unsigned: bool| Column {
            name: "k".into(),
            data_type: t.into(),
            column_type: t.into(),
            nullable: false,
            generated: false,
            charset: None,
            collation: None,
            unsigned,
        };
        assert_eq!(
            key_value_from_mysql(&Value::Int(-5), &col("int", false)).unwrap(),
            KeyValue::Int(-5)
        );
        assert_eq!(
            key_value_from_mysql(
                &Value::Bytes(b"18446744073709551615".to_vec()),
                &col("bigint", true)
            )
            .unwrap(),
            KeyValue::Uint(u64::MAX)
        );
        assert_eq!(
            key_value_from_mysql(&Value::Bytes(vec![0, 255]), &col("varbinary", false)).unwrap(),
            KeyValue::Bytes("00ff".into())
        );
        assert_eq!(
            key_param(&KeyValue::Bytes("00ff".into())),
            Value::Bytes(vec![0, 255])
        );
        assert_eq!(
            key_value_from_mysql(
                &Value::Date(2024, 1, 2, 3, 4, 5, 60),
                &col("datetime", false)
            )
            .unwrap(),
            KeyValue::Literal("2024-01-02 03:04:05.000060".into())
        );
        assert_eq!(
            key_value_from_mysql(&Value::Date(2024, 1, 2, 0, 0, 0, 0), &col("date", false))
                .unwrap(),
            KeyValue::Literal("2024-01-02".into())
        );
        assert_eq!(
            key_value_from_mysql(&Value::Time(true, 1, 2, 3, 4, 0), &col("time", false)).unwrap(),
            KeyValue::Literal("-26:03:04".into())
        );
        assert!(key_value_from_mysql(&Value::NULL, &col("int", false)).is_err());
        assert!(key_value_from_mysql(&Value::Int(-1), &col("int", true)).is_err());
    }

    #[test]
    fn boundaries_make_contiguous_chunks() {
        let b = vec![
            vec![KeyValue::Int(5)],
            vec![KeyValue::Int(5)],
            vec![KeyValue::Int(9)],
        ];
        let c = chunks_from_boundaries("d", "t", 3, b);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].chunk_id, "0003-000000");
        assert_eq!(
            (c[0].lower.clone(), c[0].upper.clone()),
            (None, Some(vec![KeyValue::Int(5)]))
        );
        assert_eq!(
            (c[2].lower.clone(), c[2].upper.clone()),
            (Some(vec![KeyValue::Int(9)]), None)
        );
        assert_eq!(chunks_from_boundaries("d", "t", 0, vec![]).len(), 1);
    }

    #[test]
    fn wide_rows_get_smaller_chunks() {
        assert_eq!(rows_per_chunk(50_000, 100), 50_000);
        assert_eq!(rows_per_chunk(50_000, 4096), 4_096);
        assert_eq!(rows_per_chunk(50_000, 0), 50_000);
        assert_eq!(rows_per_chunk(10, u64::MAX), 1);
    }
}

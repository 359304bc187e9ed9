//! SQL literals and the statements the workers run: inserts, upserts, deletes, row filters.

use super::*;
use crate::shapes;

// ------------------------------------------------------------------ SQL literals

/// Append `v` as an SQL literal for column `col` (the session has NO_BACKSLASH_ESCAPES).
pub fn push_literal(out: &mut String, v: &Value, col: &ColumnInfo) {
    match v {
        Value::NULL => out.push_str("NULL"),
        Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
        Value::UInt(u) => out.push_str(itoa::Buffer::new().format(*u)),
        // With an exponent: the server reads a double, never a DECIMAL.
        Value::Float(f) => {
            let _ = write!(out, "{:e}", float_as_double(*f));
        }
        Value::Double(d) => {
            let _ = write!(out, "{d:e}");
        }
        Value::Date(..) => {
            out.push('\'');
            push_datetime(out, v);
            out.push('\'');
        }
        Value::Time(neg, days, h, mi, s, us) => {
            let hours = u32::from(*h) + days * 24;
            let _ = write!(
                out,
                "'{}{hours:02}:{mi:02}:{s:02}.{us:06}'",
                if *neg { "-" } else { "" }
            );
        }
        Value::Bytes(b) => match (&col.literal, std::str::from_utf8(b)) {
            (LiteralKind::Text | LiteralKind::Plain, Ok(s)) => {
                // Each quote doubled; the text between quotes copied whole.
                out.push('\'');
                let mut from = 0;
                for i in memchr::memchr_iter(b'\'', s.as_bytes()) {
                    out.push_str(&s[from..=i]);
                    out.push('\'');
                    from = i + 1;
                }
                out.push_str(&s[from..]);
                out.push('\'');
            }
            _ => {
                let _ = write!(out, "X'{}'", hex::encode(b));
            }
        },
    }
}

/// A DATE or DATETIME value as the server reads it from text:
/// `YYYY-MM-DD hh:mm:ss.ffffff` (a DATE column drops the time).
fn push_datetime(out: &mut String, v: &Value) {
    if let Value::Date(y, m, d, h, mi, s, us) = *v {
        let _ = write!(out, "{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}");
    }
}

/// The double a FLOAT value is written as: the float's shortest decimal when
/// the server's double-to-float rounding gives this float back and it is
/// within FLOAT's range, else the float's exact widening. Either stores the
/// same float. OceanBase (strict) refuses FLOAT(7,3)'s largest value as its
/// exact widening, 9999.9990234375; MariaDB refuses the largest FLOAT as its
/// shortest decimal, 3.4028235e38, which rounds past the range.
pub(super) fn float_as_double(f: f32) -> f64 {
    let exact = f64::from(f);
    let short: f64 = format!("{f:e}").parse().unwrap_or(exact);
    if short.abs() <= f64::from(f32::MAX) && short as f32 == f {
        short
    } else {
        exact
    }
}

// ------------------------------------------------------------------ statements

/// Largest statement text before it is split.
pub(super) const MAX_STATEMENT: usize = 4 << 20;
pub(super) const MAX_ROWS_PER_STATEMENT: usize = 2_000;

/// `rows` cut into blocks whose row counts have at most four significant
/// bits (1 to 16, then 8 sizes per power of two: 16, 18, ..., 30, 32, 36, ...),
/// largest first, in their order, at most [`MAX_ROWS_PER_STATEMENT`] a block
/// ([`shapes::blocks`]: why OceanBase wants few counts). Unblocked, the sync's
/// counts were planned once and rarely found again (the CDC bench: 126 plans
/// for 160 upserts of 400-520 rows). Measured on seekdb (4.3.5), replaying a
/// burst of 99,404 changes (`cdc_apply`, plan cache flushed first): 310-329
/// against 386-418 ticks of server CPU; with the plan cache warm from the
/// same replay before, 291-301 against 277-283. The CDC bench into
/// OceanBase, three alternating pairs: 7.42-10.11 against 8.35-10.99 CPU-s of
/// the server, 8-11% less in each pair. Blocks of powers of two up to 256 or
/// 1,024 rows cost more than they saved: about 0.5 ms a statement.
pub(super) fn text_blocks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    shapes::blocks(rows, 4, MAX_ROWS_PER_STATEMENT)
}

pub(super) fn columns_list(t: &TableInfo) -> String {
    let names: Vec<String> = t
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| quote_ident(&c.name))
        .collect();
    names.join(",")
}

pub(super) fn push_row(out: &mut String, t: &TableInfo, row: &[Value]) {
    out.push('(');
    let mut first = true;
    for (c, v) in t.columns.iter().zip(row) {
        if c.generated {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_literal(out, v, c);
    }
    out.push(')');
}

/// A statement a worker runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// SQL text with the values as literals.
    Text(String),
    /// SQL with a placeholder per value, run as a prepared statement: the
    /// connection prepares a text once and then sends only the values.
    Prepared { sql: String, params: Vec<Value> },
}

impl Stmt {
    /// The SQL, without values (a prepared statement's placeholders).
    pub fn sql(&self) -> &str {
        match self {
            Stmt::Text(s) => s,
            Stmt::Prepared { sql, .. } => sql,
        }
    }
}

/// Most rows in one prepared insert or upsert. Parsing a multi-row upsert's
/// text (its string literals most) is about a fifth of the server's work for
/// it, and a prepared statement is parsed once per connection. Measured on
/// MariaDB 10.11: 60,000 sysbench upserts in 6 alternating runs, 2,098 ms of
/// server CPU as text against 1,702 ms prepared (2,000 rows a statement;
/// 1,957 against 1,628 ms at 256); the CDC bench's 77,888 changes replayed
/// 6 times, 1,018 against 815 ms of target CPU. The sizes are powers of two
/// from [`PREPARED_MIN_ROWS`] up to this, so a table needs at most five
/// statements per kind in a connection's statement cache ([`STATEMENT_CACHE`]).
pub(super) const PREPARED_ROWS: usize = 128;
/// Fewer rows than this go as text: a statement prepared for them would be
/// parsed as often as it is used.
pub(super) const PREPARED_MIN_ROWS: usize = 8;
/// Placeholders a statement may hold (the protocol counts them in 16 bits).
const MAX_PLACEHOLDERS: usize = 65_535;
/// Prepared statements a worker's connection keeps (see [`PREPARED_ROWS`]).
pub(super) const STATEMENT_CACHE: usize = 256;

/// About how much memory a row image holds: its bytes plus a fixed cost per
/// value. A worker's queue is bounded by it, and a prepared block's values.
pub(super) fn row_bytes(row: &[Value]) -> usize {
    const PER_VALUE: usize = std::mem::size_of::<Value>();
    row.iter()
        .map(|v| match v {
            Value::Bytes(b) => b.len() + PER_VALUE,
            _ => PER_VALUE,
        })
        .sum()
}

/// `INSERT` (or upsert) statements for rows of one table: blocks of a prepared
/// statement's sizes (see [`PREPARED_ROWS`]), the rest as text, in the rows'
/// order (a table applied in binlog order may change one row twice).
pub fn insert_statements(
    t: &TableInfo,
    target: &TargetName,
    rows: &[&[Value]],
    upsert: bool,
) -> Vec<Stmt> {
    let written = t.columns.iter().filter(|c| !c.generated).count().max(1);
    let widest = (MAX_PLACEHOLDERS / written).min(PREPARED_ROWS);
    let mut most = PREPARED_MIN_ROWS;
    while most * 2 <= widest {
        most *= 2;
    }
    if rows.len() < PREPARED_MIN_ROWS || widest < PREPARED_MIN_ROWS {
        return insert_sql(t, target, rows, upsert)
            .into_iter()
            .map(Stmt::Text)
            .collect();
    }
    // The statement's text but for its rows, once for all its blocks.
    let head = format!(
        "INSERT INTO {} ({}) VALUES ",
        qualified(&target.db, &target.table),
        columns_list(t)
    );
    let end = if upsert {
        upsert_tail(t)
    } else {
        String::new()
    };
    let mut one = String::with_capacity(written * 2 + 1);
    one.push('(');
    for i in 0..written {
        one.push_str(if i == 0 { "?" } else { ",?" });
    }
    one.push(')');
    let mut out = Vec::new();
    let mut text: Vec<&[Value]> = Vec::new();
    let mut rest = rows;
    let mut size = most;
    while size >= PREPARED_MIN_ROWS && !rest.is_empty() {
        if rest.len() < size {
            size /= 2;
            continue;
        }
        let (block, tail) = rest.split_at(size);
        rest = tail;
        if block.iter().map(|r| row_bytes(r)).sum::<usize>() > MAX_STATEMENT {
            // Large values: the text statements split by size.
            text.extend_from_slice(block);
            continue;
        }
        if !text.is_empty() {
            out.extend(
                insert_sql(t, target, &text, upsert)
                    .into_iter()
                    .map(Stmt::Text),
            );
            text.clear();
        }
        out.push(prepared_insert(t, (&head, &one, &end), block));
    }
    text.extend_from_slice(rest);
    if !text.is_empty() {
        out.extend(
            insert_sql(t, target, &text, upsert)
                .into_iter()
                .map(Stmt::Text),
        );
    }
    out
}

/// One prepared `INSERT` (or upsert) of `rows`: the statement's start, one
/// row's placeholders, and its end (the update clause or nothing).
fn prepared_insert(
    t: &TableInfo,
    (head, one, tail): (&str, &str, &str),
    rows: &[&[Value]],
) -> Stmt {
    let mut sql = String::with_capacity(head.len() + (one.len() + 1) * rows.len() + tail.len());
    sql.push_str(head);
    let mut params = Vec::with_capacity(one.len() / 2 * rows.len());
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(one);
        for (c, v) in t.columns.iter().zip(row.iter()) {
            if !c.generated {
                params.push(match v {
                    Value::Float(f) => Value::Double(float_as_double(*f)),
                    // A zero month or day goes as the text literal's string:
                    // OceanBase refuses it as a binary DATETIME ("month=0 must
                    // between 1 and 12") but converts the string as the text
                    // path's literal is converted.
                    Value::Date(_, m, d, ..) if *m == 0 || *d == 0 => {
                        let mut text = String::with_capacity(26);
                        push_datetime(&mut text, v);
                        Value::Bytes(text.into_bytes())
                    }
                    v => v.clone(),
                });
            }
        }
    }
    sql.push_str(tail);
    Stmt::Prepared { sql, params }
}

/// ` ON DUPLICATE KEY UPDATE` with every written column from the new row.
fn upsert_tail(t: &TableInfo) -> String {
    let sets: Vec<String> = t
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| format!("{0}=VALUES({0})", quote_ident(&c.name)))
        .collect();
    format!(" ON DUPLICATE KEY UPDATE {}", sets.join(","))
}

/// `INSERT` (or upsert) statements for rows of one table, values as literals.
pub fn insert_sql(
    t: &TableInfo,
    target: &TargetName,
    rows: &[&[Value]],
    upsert: bool,
) -> Vec<String> {
    let head = format!(
        "INSERT INTO {} ({}) VALUES ",
        qualified(&target.db, &target.table),
        columns_list(t)
    );
    let tail = if upsert {
        upsert_tail(t)
    } else {
        String::new()
    };
    let mut out = Vec::new();
    let mut sql = String::new();
    let mut n = 0;
    for (i, row) in rows.iter().enumerate() {
        if n == 0 {
            sql.push_str(&head);
        } else {
            sql.push(',');
        }
        let start = sql.len();
        push_row(&mut sql, t, row);
        n += 1;
        if n == 1 {
            // Room for the statement's other rows at this one's size, instead
            // of growing the text a doubling at a time.
            let more = (rows.len() - i - 1).min(MAX_ROWS_PER_STATEMENT - 1);
            let want = (sql.len() - start + 1) * more + tail.len();
            sql.reserve(want.min(MAX_STATEMENT));
        }
        if sql.len() >= MAX_STATEMENT || n >= MAX_ROWS_PER_STATEMENT {
            sql.push_str(&tail);
            out.push(std::mem::take(&mut sql));
            n = 0;
        }
    }
    if n > 0 {
        sql.push_str(&tail);
        out.push(sql);
    }
    out
}

/// `DELETE` statements for keys of one table.
pub fn delete_sql(t: &TableInfo, target: &TargetName, keys: &[&[Value]]) -> Vec<String> {
    let head = format!(
        "DELETE FROM {} WHERE ",
        qualified(&target.db, &target.table)
    );
    let key_cols: Vec<&ColumnInfo> = t.key.iter().map(|&i| &t.columns[i]).collect();
    let single = key_cols.len() == 1;
    let mut out = Vec::new();
    let mut sql = String::new();
    let mut n = 0;
    for key in keys {
        if n == 0 {
            sql.push_str(&head);
            if single {
                let _ = write!(sql, "{} IN (", quote_ident(&key_cols[0].name));
            }
        } else {
            sql.push_str(if single { "," } else { " OR " });
        }
        if single {
            push_literal(&mut sql, &key[0], key_cols[0]);
        } else {
            sql.push('(');
            for (i, (c, v)) in key_cols.iter().zip(key.iter()).enumerate() {
                if i > 0 {
                    sql.push_str(" AND ");
                }
                let _ = write!(sql, "{}=", quote_ident(&c.name));
                push_literal(&mut sql, v, c);
            }
            sql.push(')');
        }
        n += 1;
        if sql.len() >= MAX_STATEMENT || n >= MAX_ROWS_PER_STATEMENT {
            if single {
                sql.push(')');
            }
            out.push(std::mem::take(&mut sql));
            n = 0;
        }
    }
    if n > 0 {
        if single {
            sql.push(')');
        }
        out.push(sql);
    }
    out
}

/// Append `v` typed as column `col` for an expression to compare: a temporal
/// or DECIMAL value is cast to its type (a quoted literal alone would compare
/// as text), anything else is [`push_literal`].
pub(super) fn push_typed_literal(out: &mut String, v: &Value, col: &ColumnInfo) {
    use ColumnType::*;
    let cast = match col.ctype {
        _ if *v == Value::NULL => None,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Some("DATE"),
        MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_TIMESTAMP2 => Some("DATETIME(6)"),
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => Some("TIME(6)"),
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => Some("DECIMAL(65,30)"),
        _ => None,
    };
    match cast {
        Some(ty) => {
            out.push_str("CAST(");
            push_literal(out, v, col);
            let _ = write!(out, " AS {ty})");
        }
        None => push_literal(out, v, col),
    }
}

/// Name of the row number in [`filter_statements`]' derived table.
pub(super) const FILTER_ROW: &str = "`__ferry_row`";

/// Rows evaluated per [`filter_statements`] statement (fewer when they are large).
pub(super) const FILTER_ROWS: usize = 500;

/// `SELECT n FROM (SELECT n, v1 AS c1, ... UNION ALL ...) AS r WHERE (filter)`
/// statements: together they return the numbers of the `rows` (images of table
/// `t`, each with its number) that the row filter keeps. The filter is the one
/// the copy ran on the source, evaluated by the target over the row images
/// under the source's column names, so a change is judged by the same
/// condition as the copied rows. Only the columns whose names occur in the
/// filter's text are sent (a BLOB the filter does not read stays out), and a
/// statement ends at [`FILTER_ROWS`] rows or [`MAX_STATEMENT`] bytes.
pub fn filter_statements(t: &TableInfo, filter: &str, rows: &[(usize, &[Value])]) -> Vec<String> {
    let text = filter.to_lowercase();
    let used: Vec<(usize, &ColumnInfo)> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| text.contains(&c.name.to_lowercase()))
        .collect();
    let tail = format!(") AS `__ferry_images` WHERE ({filter})");
    let mut out = Vec::new();
    let mut sql = String::new();
    let mut n_rows = 0;
    for (n, row) in rows {
        if n_rows == 0 {
            let _ = write!(sql, "SELECT {FILTER_ROW} FROM (");
        } else {
            sql.push_str(" UNION ALL ");
        }
        let _ = write!(sql, "SELECT {n} AS {FILTER_ROW}");
        for (i, c) in &used {
            sql.push_str(", ");
            push_typed_literal(&mut sql, row.get(*i).unwrap_or(&Value::NULL), c);
            let _ = write!(sql, " AS {}", quote_ident(&c.name));
        }
        n_rows += 1;
        if n_rows >= FILTER_ROWS || sql.len() >= MAX_STATEMENT {
            sql.push_str(&tail);
            out.push(std::mem::take(&mut sql));
            n_rows = 0;
        }
    }
    if n_rows > 0 {
        sql.push_str(&tail);
        out.push(sql);
    }
    out
}

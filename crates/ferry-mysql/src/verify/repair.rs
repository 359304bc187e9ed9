//! Repair statements, with the source as the truth.
//!
//! Invariant: for every key given, the statements make the target's row equal
//! to the source's row as read here: `REPLACE INTO` the target with every
//! compared column as an exact literal (binary as `X'..'`, DECIMAL as its
//! text, temporal values with microseconds; see [`crate::value`]) when the
//! source has the row, `DELETE` by key when it does not. Each statement names
//! one row by its full key, so applying the statements twice changes nothing
//! the first run did not.

use ferry_core::model::KeyValue;
use ferry_core::FerryError;
use mysql_async::prelude::*;
use mysql_async::{Conn, Value};

use super::locate::same_key;
use super::table::VerifyTable;
use crate::conn::{classify, qualified, quote_ident};
use crate::copy::{target_sql_mode, RateLimiter};
use crate::planner::key_param;
use crate::schema::Column;
use crate::value::{write_sql, Kind};

/// One row's repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairStatement {
    /// `db.table` on the source.
    pub table: String,
    pub key: Vec<KeyValue>,
    pub sql: String,
}

/// Statements applied per target transaction.
const ROWS_PER_COMMIT: usize = 100;

fn literal(out: &mut Vec<u8>, v: &Value, col: &Column, what: &str) -> Result<(), FerryError> {
    write_sql(out, v, Kind::of(col)).map_err(|e| {
        FerryError::Internal(format!(
            "{what}: column `{}` ({}): {}",
            col.name, col.column_type, e.0
        ))
    })
}

fn text(out: Vec<u8>) -> Result<String, FerryError> {
    // Literals are ASCII except inside _utf8mb4'...', whose bytes came from utf8mb4 text.
    String::from_utf8(out)
        .map_err(|_| FerryError::Internal("a repair statement is not valid UTF-8".into()))
}

fn replace_sql(t: &VerifyTable, values: &[Value]) -> Result<String, FerryError> {
    let cols = t.target_columns();
    let what = format!("repair of {}", t.target.full_name());
    let names = cols
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "REPLACE INTO {} ({names}) VALUES (",
        qualified(&t.target.db, &t.target.name)
    )
    .into_bytes();
    for (i, (v, c)) in values.iter().zip(cols).enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        literal(&mut out, v, c, &what)?;
    }
    out.push(b')');
    text(out)
}

fn delete_sql(t: &VerifyTable, key: &[KeyValue]) -> Result<String, FerryError> {
    let what = format!("repair of {}", t.target.full_name());
    let mut out = format!(
        "DELETE FROM {} WHERE ",
        qualified(&t.target.db, &t.target.name)
    )
    .into_bytes();
    for (i, (k, c)) in key.iter().zip(t.target_key()).enumerate() {
        if i > 0 {
            out.extend_from_slice(b" AND ");
        }
        out.extend_from_slice(format!("{} = ", quote_ident(&c.name)).as_bytes());
        literal(&mut out, &key_param(k), c, &what)?;
    }
    text(out)
}

/// One statement per key: the source's row now, or its absence.
pub async fn repair_statements(
    t: &VerifyTable,
    src: &mut Conn,
    keys: &[Vec<KeyValue>],
) -> Result<Vec<RepairStatement>, FerryError> {
    let rows = t.source_rows_raw(src, keys).await?;
    let table = t.source.full_name();
    keys.iter()
        .map(|key| {
            let sql = match rows.iter().find(|(k, _)| same_key(k, key)) {
                Some((_, values)) => replace_sql(t, values)?,
                None => delete_sql(t, key)?,
            };
            Ok(RepairStatement {
                table: table.clone(),
                key: key.clone(),
                sql,
            })
        })
        .collect()
}

/// The target session a repair runs in (the copy's: exact values, zero dates
/// kept, foreign keys not cascading).
pub fn session_setup(allow_invalid_dates: bool) -> String {
    format!(
        "SET SESSION sql_mode = '{}', foreign_key_checks = 0, time_zone = '+00:00', NAMES utf8mb4",
        target_sql_mode(allow_invalid_dates)
    )
}

/// The repair as a SQL script an operator can read, edit and run with the
/// `mariadb`/`mysql` client against the target.
pub fn repair_script(
    task_id: &str,
    statements: &[RepairStatement],
    allow_invalid_dates: bool,
) -> String {
    let mut s = format!(
        "-- Ferry repair for task {task_id}: {} row(s); the source is the truth.\n\
         -- Run against the TARGET, e.g.: mariadb -h HOST -u USER -p < this-file.sql\n{};\n",
        statements.len(),
        session_setup(allow_invalid_dates)
    );
    for batch in statements.chunks(ROWS_PER_COMMIT) {
        s.push_str("START TRANSACTION;\n");
        for st in batch {
            s.push_str(&st.sql);
            s.push_str(";\n");
        }
        s.push_str("COMMIT;\n");
    }
    s
}

/// Apply repair statements through the target connection, at most
/// `limiter`'s rows per second, [`ROWS_PER_COMMIT`] rows per transaction.
/// Returns the rows written or deleted.
pub async fn apply_repair(
    tgt: &mut Conn,
    statements: &[RepairStatement],
    limiter: &RateLimiter,
    allow_invalid_dates: bool,
) -> Result<u64, FerryError> {
    let what = "target: applying repair statements";
    tgt.query_drop(session_setup(allow_invalid_dates))
        .await
        .map_err(|e| classify(e, what))?;
    let mut done = 0;
    for batch in statements.chunks(ROWS_PER_COMMIT) {
        tgt.query_drop("START TRANSACTION")
            .await
            .map_err(|e| classify(e, what))?;
        for st in batch {
            limiter.acquire(1, st.sql.len() as u64).await;
            let doing = format!("target: repairing a row of {} (key {:?})", st.table, st.key);
            tgt.query_drop(st.sql.as_str())
                .await
                .map_err(|e| classify(e, &doing))?;
            done += 1;
        }
        tgt.query_drop("COMMIT")
            .await
            .map_err(|e| classify(e, what))?;
    }
    Ok(done)
}

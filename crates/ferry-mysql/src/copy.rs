//! Copying one chunk (a half-open key range of one table) from the source to the target.
//!
//! Invariant: the chunk is read under one consistent snapshot of the source
//! (`START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`, one SELECT), and
//! written to the target in ONE transaction that first deletes the chunk's key
//! range on the target and then writes the rows. Nothing is committed on the
//! target unless every row was read and written, so a chunk copied twice, or
//! copied again after a crash or a killed connection mid-chunk, leaves exactly
//! the source's rows of that range as of the last successful copy's snapshot
//! (idempotent). OceanBase differs for LOAD DATA: it commits the session's
//! open transaction (the range DELETE) and loads as one transaction of its
//! own, all or nothing (measured on 4.3.5). There a failed chunk leaves its
//! range empty, never partial or mixed; the chunk stays unfinished and its
//! retry fills the range, so the end state is the same. Memory is bounded: rows stream from the source through a
//! small channel of batches (`batch_rows` rows or `batch_bytes` bytes each)
//! into the target; a chunk is never held whole.
//!
//! Target session: `sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'`
//! (plus `ALLOW_INVALID_DATES` when the source admits zero/invalid dates), so
//! an explicit 0 in an AUTO_INCREMENT column and zero dates are stored as they
//! are; `time_zone = '+00:00'` on both sides, so TIMESTAMPs move as UTC text.
//! On OceanBase the mode also holds `STRICT_ALL_TABLES` ([`CopyOptions::strict`]):
//! its LOAD DATA truncates a value that does not fit without any warning
//! outside strict mode, so only the refusal of strict mode makes it an error.
//!
//! The target transaction runs at READ COMMITTED: chunks of one table are
//! written in parallel, and at REPEATABLE READ the range DELETE takes gap
//! locks (up to the supremum on an empty table) that block and deadlock the
//! neighbouring chunks' inserts. Chunk ranges are disjoint, so record locks
//! are all the isolation a chunk needs.
//!
//! `foreign_key_checks = 0`: chunks load in any order (a child before its
//! parent), and the range DELETE must not cascade into rows other chunks
//! copied. `unique_checks` stays ON: rows of different chunks come from
//! different snapshots and can collide transiently in a secondary unique key
//! (a value moved from a row of chunk A to a row of chunk B between the two
//! copies). Rows are written with REPLACE semantics, so such a collision
//! resolves in favour of the newer snapshot and the incremental apply, which
//! is idempotent from the snapshot point to the end of the copy, restores the
//! other row; with `unique_checks = 0` InnoDB could instead admit a duplicate
//! silently. Any warning the target reports (a truncated or converted value)
//! fails the chunk: a copy is exact or it is an error.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_core::model::{ChunkRecord, KeyValue};
use ferry_core::FerryError;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};
use serde::{Deserialize, Serialize};

use crate::conn::{classify, qualified, quote_ident};
use crate::planner::{no_key_error, range_predicate};
use crate::schema::{Column, TableInfo};
use crate::value::{write_infile, write_sql, Kind, RenderError};

/// How rows are written to the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMethod {
    /// `LOAD DATA LOCAL INFILE` fed from memory (the faster; see the full-copy benchmark).
    #[default]
    LoadData,
    /// Multi-row `REPLACE INTO ... VALUES` statements with exact literals.
    Insert,
}

impl std::str::FromStr for WriteMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "load_data" | "load-data" | "loaddata" => Ok(WriteMethod::LoadData),
            "insert" => Ok(WriteMethod::Insert),
            other => Err(format!("write method \"{other}\": use load_data or insert")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// Rows per write batch (an INSERT statement, or a piece of the LOAD DATA stream).
    pub batch_rows: usize,
    /// Bytes per write batch, whichever limit comes first.
    pub batch_bytes: usize,
    pub method: WriteMethod,
    /// Add `ALLOW_INVALID_DATES` to the target's sql_mode (see [`source_allows_invalid_dates`]).
    pub allow_invalid_dates: bool,
    /// `false`: the target session skips its binary log (`sql_log_bin = 0`).
    pub target_binlog: bool,
    /// Add `STRICT_ALL_TABLES` to the target's sql_mode, so a value that does
    /// not fit is refused. Needed on OceanBase (4.3.5): outside strict mode its
    /// `LOAD DATA` stores `'note 1234'` in a VARCHAR(4) as `'note'` and reports
    /// `Warnings: 0` (its INSERT does warn, 1265), so the warning check below
    /// cannot see the loss; in strict mode it refuses with 1406. Elsewhere a
    /// non-strict session warns and the warning fails the chunk.
    pub strict: bool,
    /// LOAD DATA sends BLOB/BINARY/VARBINARY bytes as they are instead of as
    /// hex (half the bytes, no `UNHEX` on the target); only for a target known
    /// to store them exactly (see [`Kind::infile_hex`]): MariaDB.
    pub raw_binary: bool,
    /// The target is an OceanBase kernel (the task's recorded capabilities
    /// say so): its `LOAD DATA` refusals apply (see `write_method_for`).
    pub oceanbase: bool,
    /// LOAD DATA reads the stream as `CHARACTER SET binary` instead of
    /// `utf8mb4`: the server splits fields byte by byte and stores each
    /// value's bytes into its column unconverted, checked as the column's
    /// character set (a value not valid there is cut with a warning, which
    /// fails the chunk as any warning does). Ferry writes text as UTF-8, so
    /// this is exact only into a table whose text columns are all UTF-8
    /// ([`utf8_text_only`]); the caller decides per target table, on MariaDB
    /// (with `raw_binary`). The `utf8mb4` reader checks every byte for the
    /// start of a multi-byte character, which UTF-8 never needs (a tab,
    /// newline or backslash byte is never part of one). Measured on MariaDB
    /// 10.11: 8 alternating loads of 250k sysbench rows as the copy writes
    /// them, 104 against 110 ticks of the target's CPU; the full-copy bench,
    /// Ferry alone in 4 alternating pairs of 5 runs, 4.62-5.34 s against
    /// 4.87-5.74 s (faster in each pair), the target's CPU 6.5-7.3 s against
    /// 6.8-8.1 s.
    pub binary_stream: bool,
}

/// Whether every text column among `columns` (a target table's) holds UTF-8
/// ([`crate::is_utf8_charset`]: `utf8mb4`, `utf8mb3`, or ASCII, its subset):
/// then its values can be loaded from Ferry's UTF-8 stream unconverted (see
/// [`CopyOptions::binary_stream`]). A column in any other character set
/// (`latin1`, `gbk`, ...) needs the server's conversion from UTF-8: loaded
/// unconverted, latin1 would keep UTF-8's bytes as other characters, with no
/// warning.
pub fn utf8_text_only(columns: &[Column]) -> bool {
    columns.iter().all(|c| match c.charset.as_deref() {
        None | Some("binary") => true,
        Some(cs) => crate::is_utf8_charset(cs),
    })
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            batch_rows: 1000,
            batch_bytes: 4 << 20,
            method: WriteMethod::LoadData,
            allow_invalid_dates: false,
            target_binlog: true,
            strict: false,
            raw_binary: false,
            oceanbase: false,
            binary_stream: false,
        }
    }
}

/// What a chunk copy moved: rows, and bytes as written to the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyStats {
    pub rows: u64,
    pub bytes: u64,
}

/// A rows/s and bytes/s limit shared by every copy of a process; the limits
/// may change while copies run (0 = unlimited).
#[derive(Debug)]
pub struct RateLimiter {
    rows_per_s: AtomicU64,
    bytes_per_s: AtomicU64,
    next: Mutex<Instant>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(0, 0)
    }
}

impl RateLimiter {
    pub fn new(rows_per_s: u64, bytes_per_s: u64) -> Self {
        RateLimiter {
            rows_per_s: AtomicU64::new(rows_per_s),
            bytes_per_s: AtomicU64::new(bytes_per_s),
            next: Mutex::new(Instant::now()),
        }
    }

    pub fn set_limits(&self, rows_per_s: u64, bytes_per_s: u64) {
        self.rows_per_s.store(rows_per_s, Ordering::Relaxed);
        self.bytes_per_s.store(bytes_per_s, Ordering::Relaxed);
    }

    pub fn limits(&self) -> (u64, u64) {
        (
            self.rows_per_s.load(Ordering::Relaxed),
            self.bytes_per_s.load(Ordering::Relaxed),
        )
    }

    /// How long `rows` and `bytes` take at the current limits.
    fn cost(&self, rows: u64, bytes: u64) -> Duration {
        let (r, b) = self.limits();
        let secs = |n: u64, per_s: u64| {
            if per_s == 0 {
                0.0
            } else {
                n as f64 / per_s as f64
            }
        };
        Duration::from_secs_f64(secs(rows, r).max(secs(bytes, b)))
    }

    /// Wait until a batch of `rows` and `bytes` may go. Batches are admitted
    /// back to back at the limited rate; idle time earns no burst.
    pub async fn acquire(&self, rows: u64, bytes: u64) {
        let cost = self.cost(rows, bytes);
        if cost.is_zero() {
            return;
        }
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + cost;
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

/// The target session's sql_mode for a copy.
pub fn target_sql_mode(allow_invalid_dates: bool) -> &'static str {
    if allow_invalid_dates {
        "NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION,ALLOW_INVALID_DATES"
    } else {
        "NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"
    }
}

/// Whether the source's sql_mode admits zero or invalid dates, so the target must too.
pub async fn source_allows_invalid_dates(src: &mut Conn) -> Result<bool, FerryError> {
    let mode: Option<String> = src
        .query_first("SELECT @@GLOBAL.sql_mode")
        .await
        .map_err(|e| classify(e, "source: reading sql_mode"))?;
    let mode = mode.unwrap_or_default().to_ascii_uppercase();
    Ok(mode.contains("ALLOW_INVALID_DATES") || !mode.contains("NO_ZERO_DATE"))
}

/// Whether the target accepts `LOAD DATA LOCAL INFILE` (`local_infile` ON).
/// A server without the variable (or that hides it) gets INSERTs.
pub async fn local_infile_enabled(dst: &mut Conn) -> bool {
    let v: Result<Option<String>, _> = dst.query_first("SELECT @@GLOBAL.local_infile").await;
    matches!(v, Ok(Some(s)) if s == "1" || s.eq_ignore_ascii_case("ON"))
}

/// Why `LOAD DATA LOCAL INFILE` cannot be used on this target, or None when it
/// can: `local_infile` must be on, and OceanBase also asks for the FILE
/// privilege (MySQL and MariaDB do not for LOCAL), which `SHOW GRANTS` tells.
pub async fn load_data_refusal(dst: &mut Conn, oceanbase: bool) -> Option<String> {
    if !local_infile_enabled(dst).await {
        return Some("the target has local_infile off".into());
    }
    if !oceanbase {
        return None;
    }
    let grants: Vec<String> = dst.query("SHOW GRANTS").await.unwrap_or_default();
    if grants.iter().any(|g| has_file_privilege(g)) {
        return None;
    }
    Some("OceanBase allows LOAD DATA LOCAL only with the FILE privilege, which the target user lacks".into())
}

/// Whether a `SHOW GRANTS` line gives FILE (or everything) on `*.*`.
pub fn has_file_privilege(grant: &str) -> bool {
    let g = grant.to_ascii_uppercase();
    let Some((privs, rest)) = g.strip_prefix("GRANT ").and_then(|x| x.split_once(" ON ")) else {
        return false;
    };
    rest.trim_start().starts_with("*.*")
        && (privs.contains("ALL PRIVILEGES") || privs.split(',').any(|p| p.trim() == "FILE"))
}

/// `[lower, upper)` of a chunk for messages, e.g. `[(10), (20))` or `[-inf, (5, 'x'))`.
pub fn describe_range(chunk: &ChunkRecord) -> String {
    let key = |k: &Option<Vec<KeyValue>>, inf: &str| match k {
        None => inf.to_string(),
        Some(vals) => {
            let parts: Vec<String> = vals
                .iter()
                .map(|v| match v {
                    KeyValue::Int(i) => i.to_string(),
                    KeyValue::Uint(u) => u.to_string(),
                    KeyValue::Text(s) | KeyValue::Literal(s) => format!("'{s}'"),
                    KeyValue::Bytes(h) => format!("0x{h}"),
                })
                .collect();
            format!("({})", parts.join(", "))
        }
    };
    format!(
        "[{}, {})",
        key(&chunk.lower, "-inf"),
        key(&chunk.upper, "+inf")
    )
}

/// The statements of one chunk copy, built once from the table description.
struct ChunkSql {
    select: String,
    delete: String,
    params: Vec<Value>,
    kinds: Vec<Kind>,
    /// Per column: LOAD DATA carries it as hex (see [`Kind::infile_hex`]).
    hex: Vec<bool>,
    /// `LOAD DATA ...` or the `REPLACE INTO ... VALUES ` prefix of each INSERT.
    write: String,
}

impl ChunkSql {
    fn new(
        table: &TableInfo,
        target: (&str, &str),
        chunk: &ChunkRecord,
        filter: Option<&str>,
        method: WriteMethod,
        raw_binary: bool,
        binary_stream: bool,
    ) -> Result<ChunkSql, FerryError> {
        let key = table.key.as_ref().ok_or_else(|| no_key_error(table))?;
        let cols: Vec<_> = table.columns.iter().filter(|c| !c.generated).collect();
        let names: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
        let kinds: Vec<Kind> = cols.iter().map(|c| Kind::of(c)).collect();
        let hex: Vec<bool> = kinds.iter().map(|k| k.infile_hex(raw_binary)).collect();
        let (pred, params) = range_predicate(key, chunk.lower.as_deref(), chunk.upper.as_deref());
        let filtered = match filter {
            Some(f) if !f.trim().is_empty() => format!("({pred}) AND ({f})"),
            _ => pred.clone(),
        };
        let tgt = qualified(target.0, target.1);
        let write = match method {
            WriteMethod::Insert => format!("REPLACE INTO {tgt} ({}) VALUES ", names.join(", ")),
            WriteMethod::LoadData => load_data_sql(&tgt, &names, &hex, binary_stream),
        };
        Ok(ChunkSql {
            select: format!(
                "SELECT {} FROM {} WHERE {filtered}",
                names.join(", "),
                qualified(&table.db, &table.name)
            ),
            delete: format!("DELETE FROM {tgt} WHERE {pred}"),
            params,
            kinds,
            hex,
            write,
        })
    }
}

/// `LOAD DATA LOCAL INFILE` with hex-carried columns decoded by `UNHEX`.
///
/// Every line ends with one more, empty field read into `@ferry_end` and
/// thrown away: OceanBase (4.3, MySQL mode) loads an empty *last* field of a
/// line as NULL whatever the column's type, while an empty field in any other
/// position stays `''`. With the sentinel no column is ever last, so `''` and
/// `\N` keep their meaning on every target (one byte per row).
/// The stream is read as `utf8mb4`, or as `binary` (see [`CopyOptions::binary_stream`]).
fn load_data_sql(target: &str, names: &[String], hex: &[bool], binary_stream: bool) -> String {
    let mut fields = Vec::with_capacity(names.len());
    let mut sets = Vec::new();
    for (i, (name, hex)) in names.iter().zip(hex).enumerate() {
        if *hex {
            fields.push(format!("@v{i}"));
            sets.push(format!("{name} = UNHEX(@v{i})"));
        } else {
            fields.push(name.clone());
        }
    }
    let set = if sets.is_empty() {
        String::new()
    } else {
        format!(" SET {}", sets.join(", "))
    };
    fields.push(LOAD_DATA_SENTINEL.to_string());
    let charset = if binary_stream { "binary" } else { "utf8mb4" };
    format!(
        "LOAD DATA LOCAL INFILE 'ferry-chunk' REPLACE INTO TABLE {target} CHARACTER SET {charset} \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({}){set}",
        fields.join(", ")
    )
}

/// The write method for this table: `wanted`, except that OceanBase's
/// `LOAD DATA` parser refuses an identifier with a (doubled) backtick in it
/// (4.3.5: "Parse error" for `` `b``t` `` as table, database or column name,
/// where INSERT takes it), and any `LOAD DATA` into a table with an INSERT or
/// UPDATE trigger (1235), so such a table is written with INSERTs there.
async fn write_method_for(
    dst: &mut Conn,
    table: &TableInfo,
    target: (&str, &str),
    wanted: WriteMethod,
    oceanbase: bool,
) -> WriteMethod {
    if wanted != WriteMethod::LoadData || !oceanbase {
        return wanted;
    }
    let backtick = target.0.contains('`')
        || target.1.contains('`')
        || table.columns.iter().any(|c| c.name.contains('`'));
    // OceanBase 4.3.5: "if table has insert or update trigger, load data not supported" (1235).
    let triggers: Option<u64> = dst
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? \
             AND EVENT_OBJECT_TABLE = ? AND EVENT_MANIPULATION IN ('INSERT', 'UPDATE')",
            (target.0, target.1),
        )
        .await
        .ok()
        .flatten();
    if backtick || triggers.unwrap_or(0) > 0 {
        WriteMethod::Insert
    } else {
        wanted
    }
}

/// The user variable that takes each LOAD DATA line's empty last field.
const LOAD_DATA_SENTINEL: &str = "@ferry_end";

/// Copy one chunk; see the module invariant. On error the connections may be
/// mid-statement or mid-transaction: the caller must discard them (`disconnect`).
#[allow(clippy::too_many_arguments)]
pub async fn copy_chunk(
    src: &mut Conn,
    dst: &mut Conn,
    table: &TableInfo,
    target: (&str, &str),
    chunk: &ChunkRecord,
    filter: Option<&str>,
    opts: &CopyOptions,
    limiter: &RateLimiter,
) -> Result<CopyStats, FerryError> {
    let what = format!(
        "chunk {} of {} {}",
        chunk.chunk_id,
        table.full_name(),
        describe_range(chunk)
    );
    let method = write_method_for(dst, table, target, opts.method, opts.oceanbase).await;
    let opts = &CopyOptions {
        method,
        ..opts.clone()
    };
    let sql = ChunkSql::new(
        table,
        target,
        chunk,
        filter,
        opts.method,
        opts.raw_binary,
        opts.binary_stream,
    )?;
    let src_what = format!("source: reading {what}");
    let dst_what = format!(
        "target: writing {what} into {}",
        qualified(target.0, target.1)
    );
    src.query_drop(
        "SET SESSION time_zone = '+00:00', NAMES utf8mb4; \
         SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
         START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    )
    .await
    .map_err(|e| classify(e, &src_what))?;
    dst.query_drop(format!(
        "SET SESSION sql_mode = '{}{}', foreign_key_checks = 0, time_zone = '+00:00', NAMES utf8mb4{}; \
         SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION",
        if opts.strict { "STRICT_ALL_TABLES," } else { "" },
        target_sql_mode(opts.allow_invalid_dates),
        if opts.target_binlog {
            ""
        } else {
            ", sql_log_bin = 0"
        }
    ))
    .await
    .map_err(|e| classify(e, &dst_what))?;
    dst.exec_drop(sql.delete.as_str(), sql.params.clone())
        .await
        .map_err(|e| classify(e, &dst_what))?;
    let stats = stream_rows(src, dst, &sql, opts, limiter, &src_what, &dst_what)
        .await
        .map_err(|e| explain_spatial_refusal(e, &sql.kinds))?;
    dst.query_drop("COMMIT")
        .await
        .map_err(|e| classify(e, &dst_what))?;
    src.query_drop("COMMIT")
        .await
        .map_err(|e| classify(e, &src_what))?;
    Ok(stats)
}

/// Why the reading side stopped early.
enum ReadError {
    /// The source or the rendering failed: this is the chunk's error.
    Failed(FerryError),
    /// The writer hung up: its error is the chunk's error.
    WriterGone,
}

/// A batch for the writer: its bytes and how many rows they hold.
type Piece = io::Result<(Bytes, u64)>;

async fn stream_rows(
    src: &mut Conn,
    dst: &mut Conn,
    sql: &ChunkSql,
    opts: &CopyOptions,
    limiter: &RateLimiter,
    src_what: &str,
    dst_what: &str,
) -> Result<CopyStats, FerryError> {
    let (tx, rx) = mpsc::channel::<Piece>(2);
    let reader = read_rows(src, sql, opts, limiter, tx, src_what);
    let (read, written) = match opts.method {
        WriteMethod::LoadData => {
            futures::join!(reader, write_load_data(dst, &sql.write, rx, dst_what))
        }
        WriteMethod::Insert => futures::join!(reader, write_inserts(dst, rx, dst_what)),
    };
    let stats = match read {
        Ok(stats) => stats,
        Err(ReadError::Failed(e)) => return Err(e),
        Err(ReadError::WriterGone) => {
            written?;
            return Err(FerryError::Internal(format!(
                "{dst_what}: the writer stopped without an error"
            )));
        }
    };
    let rows_written = written?;
    if rows_written != stats.rows {
        return Err(FerryError::ChunkFailed(format!(
            "{dst_what}: {} rows were read but the target reports {rows_written} written",
            stats.rows
        )));
    }
    Ok(stats)
}

/// Stream the chunk's rows from the source, rendered into pieces for the writer.
async fn read_rows(
    src: &mut Conn,
    sql: &ChunkSql,
    opts: &CopyOptions,
    limiter: &RateLimiter,
    mut tx: mpsc::Sender<Piece>,
    what: &str,
) -> Result<CopyStats, ReadError> {
    let result = read_rows_inner(src, sql, opts, limiter, &mut tx, what).await;
    if let Err(ReadError::Failed(e)) = &result {
        // Make the writer fail too, so a partial chunk is never committed.
        let _ = tx
            .send(Err(io::Error::other(e.message().to_string())))
            .await;
    }
    result
}

async fn read_rows_inner(
    src: &mut Conn,
    sql: &ChunkSql,
    opts: &CopyOptions,
    limiter: &RateLimiter,
    tx: &mut mpsc::Sender<Piece>,
    what: &str,
) -> Result<CopyStats, ReadError> {
    let failed = |e: mysql_async::Error| ReadError::Failed(classify(e, what));
    let mut result = src
        .exec_iter(sql.select.as_str(), sql.params.clone())
        .await
        .map_err(failed)?;
    let mut batch = Batch::new(opts, &sql.write);
    let mut stats = CopyStats::default();
    while let Some(row) = result.next().await.map_err(failed)? {
        batch
            .push(&row, &sql.kinds, &sql.hex)
            .map_err(|e| ReadError::Failed(FerryError::Internal(format!("{what}: {}", e.0))))?;
        if batch.is_full() {
            send(batch.take(), &mut stats, limiter, tx).await?;
        }
    }
    if batch.rows > 0 {
        send(batch.take(), &mut stats, limiter, tx).await?;
    }
    Ok(stats)
}

async fn send(
    (piece, rows): (Vec<u8>, u64),
    stats: &mut CopyStats,
    limiter: &RateLimiter,
    tx: &mut mpsc::Sender<Piece>,
) -> Result<(), ReadError> {
    let bytes = piece.len() as u64;
    limiter.acquire(rows, bytes).await;
    tx.send(Ok((Bytes::from(piece), rows)))
        .await
        .map_err(|_| ReadError::WriterGone)?;
    stats.rows += rows;
    stats.bytes += bytes;
    Ok(())
}

/// Rows rendered for one write: LOAD DATA lines, or one `REPLACE INTO ... VALUES (..),(..)`.
struct Batch<'a> {
    buf: Vec<u8>,
    rows: u64,
    max_rows: u64,
    max_bytes: usize,
    method: WriteMethod,
    insert_prefix: &'a str,
}

impl<'a> Batch<'a> {
    fn new(opts: &CopyOptions, write_sql_text: &'a str) -> Batch<'a> {
        let max_bytes = opts.batch_bytes.max(1);
        Batch {
            buf: Vec::with_capacity(max_bytes.min(1 << 20) + 4096),
            rows: 0,
            max_rows: opts.batch_rows.max(1) as u64,
            max_bytes,
            method: opts.method,
            insert_prefix: write_sql_text,
        }
    }

    fn push(&mut self, row: &Row, kinds: &[Kind], hex: &[bool]) -> Result<(), RenderError> {
        let value = |i: usize| {
            row.as_ref(i)
                .ok_or_else(|| RenderError(format!("row has no column {i}")))
        };
        match self.method {
            WriteMethod::LoadData => {
                for (i, (kind, hex)) in kinds.iter().zip(hex).enumerate() {
                    if i > 0 {
                        self.buf.push(b'\t');
                    }
                    write_infile(&mut self.buf, value(i)?, *kind, *hex)?;
                }
                // The empty sentinel field (see `load_data_sql`).
                self.buf.extend_from_slice(b"\t\n");
            }
            WriteMethod::Insert => {
                self.buf.extend_from_slice(if self.rows == 0 {
                    self.insert_prefix.as_bytes()
                } else {
                    b","
                });
                self.buf.push(b'(');
                for (i, kind) in kinds.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    write_sql(&mut self.buf, value(i)?, *kind)?;
                }
                self.buf.push(b')');
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn is_full(&self) -> bool {
        self.rows >= self.max_rows || self.buf.len() >= self.max_bytes
    }

    fn take(&mut self) -> (Vec<u8>, u64) {
        let cap = self.buf.capacity();
        let rows = std::mem::take(&mut self.rows);
        (
            std::mem::replace(&mut self.buf, Vec::with_capacity(cap)),
            rows,
        )
    }
}

/// One LOAD DATA statement fed by the reader's pieces; returns the rows it loaded.
async fn write_load_data(
    dst: &mut Conn,
    load_sql: &str,
    rx: mpsc::Receiver<Piece>,
    what: &str,
) -> Result<u64, FerryError> {
    // The handler must be Sync; the Mutex makes the receiver so.
    let rx = Mutex::new(Some(rx));
    dst.set_infile_handler(async move {
        let rx = rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(match rx {
            Some(rx) => rx
                .flat_map(|piece| futures::stream::iter(split_piece(piece)))
                .boxed(),
            None => futures::stream::empty().boxed(),
        })
    });
    dst.query_drop(load_sql)
        .await
        .map_err(|e| classify(e, what))?;
    check_warnings(dst, what).await?;
    Ok(loaded_records(&dst.info()).unwrap_or_else(|| dst.affected_rows()))
}

/// The driver writes each piece of LOAD DATA input as one packet, and a packet
/// may not exceed `max_allowed_packet`: cut pieces (zero-copy) to 1 MiB.
fn split_piece(piece: Piece) -> Vec<io::Result<Bytes>> {
    const MAX: usize = 1 << 20;
    match piece {
        Ok((bytes, _rows)) => (0..bytes.len())
            .step_by(MAX)
            .map(|at| Ok(bytes.slice(at..bytes.len().min(at + MAX))))
            .collect(),
        Err(e) => vec![Err(e)],
    }
}

/// `Records: 3  Deleted: 0  Skipped: 0  Warnings: 0` -> 3.
fn loaded_records(info: &str) -> Option<u64> {
    let rest = info.split("Records:").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Run the reader's INSERT statements; returns the rows they carried.
async fn write_inserts(
    dst: &mut Conn,
    mut rx: mpsc::Receiver<Piece>,
    what: &str,
) -> Result<u64, FerryError> {
    let max_packet: Option<u64> = dst
        .query_first("SELECT @@max_allowed_packet")
        .await
        .map_err(|e| classify(e, what))?;
    let max_packet = max_packet.unwrap_or(u64::MAX);
    let mut rows = 0;
    while let Some(piece) = rx.next().await {
        let (stmt, n) = piece.map_err(|e| FerryError::Internal(format!("{what}: {e}")))?;
        if stmt.len() as u64 >= max_packet {
            return Err(FerryError::ChunkFailed(format!(
                "{what}: a row takes {} bytes as an SQL statement, more than the target's max_allowed_packet \
                 ({max_packet}). Raise it on the target (SET GLOBAL max_allowed_packet = 1073741824) or copy with \
                 LOAD DATA (enable local_infile on the target).",
                stmt.len()
            )));
        }
        dst.query_drop(stmt.as_ref())
            .await
            .map_err(|e| classify(e, what))?;
        check_warnings(dst, what).await?;
        rows += n;
    }
    Ok(rows)
}

/// OceanBase's note that a generated column was created under another
/// `sql_mode` than the session's ("System variable 'sql_mode' is different
/// from the old value solidified for 'col'"): OceanBase records ("solidifies")
/// the sql_mode at creation and evaluates the expression under it. Ferry never
/// writes a generated column (the target computes it), so this says nothing
/// about a copied value; the copy's own sql_mode differs from the schema
/// stage's session by design (`target_sql_mode`).
const OB_SOLIDIFIED_SQL_MODE: u32 = 5540;

/// A warning means a value did not land exactly: fail the chunk with the server's words.
async fn check_warnings(dst: &mut Conn, what: &str) -> Result<(), FerryError> {
    let n = dst.get_warnings();
    if n == 0 {
        return Ok(());
    }
    let shown: Vec<(String, u32, String)> = dst
        .query("SHOW WARNINGS LIMIT 64")
        .await
        .map_err(|e| classify(e, what))?;
    let about_values: Vec<String> = shown
        .iter()
        .filter(|(_, code, _)| *code != OB_SOLIDIFIED_SQL_MODE)
        .map(|(level, code, msg)| format!("{level} {code}: {msg}"))
        .collect();
    // More warnings than were shown: some may be about values.
    if about_values.is_empty() && n as usize <= shown.len() {
        return Ok(());
    }
    let text: Vec<&str> = about_values.iter().take(3).map(String::as_str).collect();
    Err(FerryError::ChunkFailed(format!(
        "{what}: the target reported {n} warning(s), so some value would not be stored exactly: {}. \
         Make the target column able to hold the source's values (type, length, character set), then retry.",
        text.join("; ")
    )))
}

/// OceanBase refuses a geometry whose SRID it has no spatial reference
/// system for (MySQL error 1416 "Cannot get geometry object" from LOAD DATA
/// or a binary literal, 3548 from `ST_GeomFromText`); OceanBase seekdb knows
/// only SRID 0. The value cannot be stored as it is, so the chunk fails, and
/// the message says why and what to do instead of the server's bare words.
fn explain_spatial_refusal(e: FerryError, kinds: &[Kind]) -> FerryError {
    let spatial = kinds.contains(&Kind::Geometry);
    match e {
        FerryError::ChunkFailed(m)
            if spatial && (m.contains("(MySQL error 1416)") || m.contains("(MySQL error 3548)")) =>
        {
            FerryError::ChunkFailed(format!(
                "{m}. The target refused a spatial value: it stores a geometry only when its SRID is one of \
                 the target's spatial reference systems (information_schema.ST_SPATIAL_REFERENCE_SYSTEMS; \
                 OceanBase seekdb has only SRID 0). Find the source's SRIDs with SELECT DISTINCT ST_SRID(col), \
                 and migrate this table to a target that defines them, or exclude the table"
            ))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::model::ChunkState;

    #[test]
    fn file_privilege_from_grants() {
        assert!(has_file_privilege(
            "GRANT SELECT, FILE, INSERT ON *.* TO 'u'"
        ));
        assert!(has_file_privilege("GRANT ALL PRIVILEGES ON *.* TO 'u'@'%'"));
        assert!(!has_file_privilege("GRANT SELECT, INSERT ON *.* TO 'u'"));
        assert!(!has_file_privilege("GRANT ALL PRIVILEGES ON `d`.* TO 'u'"));
        assert!(!has_file_privilege("GRANT SELECT ON *.* TO 'profile'"));
    }

    #[test]
    fn reads_load_data_info() {
        assert_eq!(
            loaded_records("Records: 42  Deleted: 0  Skipped: 0  Warnings: 0"),
            Some(42)
        );
        assert_eq!(loaded_records(""), None);
    }

    #[test]
    fn load_data_decodes_hex_columns() {
        let names = vec!["`a`".to_string(), "`b`".to_string()];
        let sql = load_data_sql("`d`.`t`", &names, &[false, true], false);
        assert!(
            sql.ends_with("(`a`, @v1, @ferry_end) SET `b` = UNHEX(@v1)"),
            "{sql}"
        );
        assert!(
            sql.contains("REPLACE INTO TABLE `d`.`t` CHARACTER SET utf8mb4"),
            "{sql}"
        );
        let sql = load_data_sql("`d`.`t`", &names, &[false, false], true);
        assert!(
            sql.contains("REPLACE INTO TABLE `d`.`t` CHARACTER SET binary"),
            "{sql}"
        );
    }

    #[test]
    fn only_utf8_text_is_loaded_unconverted() {
        let col = |charset: Option<&str>| Column {
            name: "c".into(),
            data_type: "varchar".into(),
            column_type: "varchar(10)".into(),
            nullable: true,
            generated: false,
            charset: charset.map(String::from),
            collation: None,
            unsigned: false,
        };
        let table =
            |charsets: &[Option<&str>]| charsets.iter().map(|c| col(*c)).collect::<Vec<_>>();
        assert!(utf8_text_only(&table(&[
            None,
            Some("utf8mb4"),
            Some("utf8mb3"),
            Some("ascii"),
            Some("binary")
        ])));
        assert!(!utf8_text_only(&table(&[Some("utf8mb4"), Some("latin1")])));
        assert!(!utf8_text_only(&table(&[Some("gbk")])));
        assert!(!utf8_text_only(&table(&[Some("ucs2")])));
    }

    #[test]
    fn ranges_are_described() {
        let c = ChunkRecord {
            chunk_id: "0000-000001".into(),
            source_db: "d".into(),
            source_table: "t".into(),
            lower: Some(vec![KeyValue::Int(10), KeyValue::Text("x".into())]),
            upper: None,
            state: ChunkState::Pending,
            owner: None,
            lease_until_ms: 0,
            attempts: 0,
            rows: 0,
            bytes: 0,
            last_error: None,
        };
        assert_eq!(describe_range(&c), "[(10, 'x'), +inf)");
    }

    #[tokio::test]
    async fn the_limiter_paces_batches() {
        let l = RateLimiter::new(1000, 0);
        let t = Instant::now();
        for _ in 0..3 {
            l.acquire(100, 10).await;
        }
        // 3 x 100 rows at 1000 rows/s: the third batch waits ~200 ms.
        assert!(
            t.elapsed() >= Duration::from_millis(190),
            "{:?}",
            t.elapsed()
        );
        l.set_limits(0, 0);
        let t = Instant::now();
        l.acquire(1_000_000, 1 << 30).await;
        assert!(t.elapsed() < Duration::from_millis(50));
    }
}

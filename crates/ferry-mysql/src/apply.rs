//! Applying binlog row changes to the target, exactly once, in parallel.
//!
//! # Invariant
//!
//! For a link (task, direction), the target holds one checkpoint row per
//! apply worker in `<meta_schema>.checkpoints`. Worker *k*'s row says: every
//! change of *k*'s partition in a source transaction that starts before
//! `(file, pos)` is applied, and none after it. The row is updated in the
//! same target transaction as the changes it covers, so a crash anywhere
//! (between statements, before COMMIT, after COMMIT but before anything else
//! learns of it) leaves data and checkpoint in agreement: a resumed run reads
//! from the lowest worker checkpoint and each worker skips the transactions
//! its own checkpoint already covers. Nothing is lost, nothing is applied twice.
//!
//! The checkpoint update is conditional on the link's epoch
//! (`... WHERE epoch <= ?`): an applier whose epoch was superseded finds no
//! row to update, rolls back, and stops with `Ferry.Fenced`.
//!
//! Partitioning: a change goes to worker `hash(table, key) % workers`, so the
//! changes to one row keep their order. Tables where that is not enough (a
//! second unique key, or a text key whose collation can make two byte strings
//! one row) go whole to one worker, in binlog order. A source transaction is
//! never split across two checkpoints: groups of whole transactions commit
//! together. DDL is a barrier: every worker commits up to the statement, the
//! statement runs, then every checkpoint moves past it.
//!
//! Before the end of the full copy (`idempotent_until`) changes are applied
//! idempotently (insert and update become upserts of the after image, delete
//! is by key); after it an insert is a plain INSERT, so a change applied twice
//! would fail loudly rather than pass unnoticed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
#[cfg(feature = "failpoints")]
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ferry_core::model::Direction;
use ferry_core::position::BinlogPosition;
use ferry_core::store::now_ms;
use ferry_core::task::Dialect;
use ferry_core::FerryError;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Value};
use tokio::sync::mpsc;

use crate::binlog::ddl::{self, DdlKind};
use crate::binlog::{
    server_id_for, BinlogEvent, BinlogReader, ColumnInfo, LiteralKind, ReaderOptions, RowChange,
    RowOp, TableFilter, TableInfo,
};
use crate::conn::{classify, qualified, quote_ident, Endpoint};
use crate::dialect::TargetContext;
use crate::dirty::{ChangeTracker, ChunkKeys, ChunkMap, MarkSink};

// ------------------------------------------------------------------ failpoints
// Named points where tests make the applier fail (FERRY_FAILPOINTS or set_failpoint). Compiled
// only with the `failpoints` feature, which every test build gets through ferry-testkit; without
// it (the release binary, the Lambda functions) `failpoint_for` is an inlined `Ok(())` and nothing
// reads the environment.

/// What a failpoint does when it fires.
#[cfg(feature = "failpoints")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    /// Return `Ferry.Transient("failpoint NAME")`, as a crash would end the call.
    Error,
    /// Panic (the task or process dies).
    Panic,
    /// Abort the whole process at once (no destructors, no COMMIT in flight finishes).
    Abort,
}

#[cfg(feature = "failpoints")]
type FailTable = HashMap<String, (FailAction, u64)>;

#[cfg(feature = "failpoints")]
fn failpoints() -> &'static Mutex<FailTable> {
    static FP: OnceLock<Mutex<FailTable>> = OnceLock::new();
    FP.get_or_init(|| {
        // FERRY_FAILPOINTS="apply.after_commit=abort@3;ddl.after_exec=error"
        let mut t = HashMap::new();
        for part in std::env::var("FERRY_FAILPOINTS")
            .unwrap_or_default()
            .split(';')
        {
            let Some((name, spec)) = part.split_once('=') else {
                continue;
            };
            let (action, at) = spec.split_once('@').unwrap_or((spec, "1"));
            let action = match action {
                "panic" => FailAction::Panic,
                "abort" => FailAction::Abort,
                _ => FailAction::Error,
            };
            t.insert(name.trim().to_string(), (action, at.parse().unwrap_or(1)));
        }
        Mutex::new(t)
    })
}

/// Arm a failpoint to fire on its `nth` hit from now (1 = the next one); `None` disarms it.
#[cfg(feature = "failpoints")]
pub fn set_failpoint(name: &str, action: Option<(FailAction, u64)>) {
    let mut t = failpoints().lock().unwrap_or_else(|p| p.into_inner());
    match action {
        Some(a) => t.insert(name.to_string(), a),
        None => t.remove(name),
    };
}

/// A failpoint of one task: fires when `NAME` or `TASK/NAME` is armed.
#[cfg(feature = "failpoints")]
pub fn failpoint_for(task_id: &str, name: &str) -> Result<(), FerryError> {
    failpoint(&format!("{task_id}/{name}"))?;
    failpoint(name)
}

/// Without the `failpoints` feature no failpoint fires.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint_for(_task_id: &str, _name: &str) -> Result<(), FerryError> {
    Ok(())
}

/// A named point where tests can make the applier fail.
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) -> Result<(), FerryError> {
    let action = {
        let mut t = failpoints().lock().unwrap_or_else(|p| p.into_inner());
        match t.get_mut(name) {
            Some((action, n)) if *n <= 1 => {
                let a = *action;
                t.remove(name);
                Some(a)
            }
            Some((_, n)) => {
                *n -= 1;
                None
            }
            None => None,
        }
    };
    match action {
        None => Ok(()),
        Some(FailAction::Error) => Err(FerryError::Transient(format!("failpoint {name}"))),
        Some(FailAction::Panic) => panic!("failpoint {name}"),
        Some(FailAction::Abort) => std::process::abort(),
    }
}

// ------------------------------------------------------------------ SQL literals

/// Append `v` as an SQL literal for column `col` (the session has NO_BACKSLASH_ESCAPES).
pub fn push_literal(out: &mut String, v: &Value, col: &ColumnInfo) {
    match v {
        Value::NULL => out.push_str("NULL"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Value::Double(d) => {
            let _ = write!(out, "{d:?}");
        }
        Value::Date(y, m, d, h, mi, s, us) => {
            let _ = write!(out, "'{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}'");
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
                out.push('\'');
                for c in s.chars() {
                    if c == '\'' {
                        out.push('\'');
                    }
                    out.push(c);
                }
                out.push('\'');
            }
            (LiteralKind::Charset(cs), _) => {
                let _ = write!(out, "CONVERT(X'{}' USING {cs})", hex::encode(b));
            }
            _ => {
                let _ = write!(out, "X'{}'", hex::encode(b));
            }
        },
    }
}

/// Where a source table lands on the target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetName {
    pub db: String,
    pub table: String,
    /// The task's row filter for the source table (a `WHERE` condition over its
    /// columns): a changed row is kept on the target only while its new image
    /// matches ([`filter_statements`]).
    pub filter: Option<String>,
}

/// Maps a source table to its target table, or `None` when it is not replicated.
pub type TableMapper = Arc<dyn Fn(&str, &str) -> Option<TargetName> + Send + Sync>;

/// How a change is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Before the end of the full copy: upserts and deletes by key.
    Idempotent,
    /// After it: inserts must not find the row.
    Strict,
}

/// One change as a worker applies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prim {
    /// Make the row exist with this image; `fresh`: the row did not exist (strict mode insert).
    Put { row: Vec<Value>, fresh: bool },
    /// Remove the row with this key (values in key order).
    Delete { key: Vec<Value> },
}

/// A change for one target table.
#[derive(Debug, Clone)]
pub struct Routed {
    pub table: Arc<TableInfo>,
    pub target: Arc<TargetName>,
    pub prim: Prim,
}

fn key_values(t: &TableInfo, row: &[Value]) -> Vec<Value> {
    t.key_of(row).into_iter().cloned().collect()
}

/// Split one row change into the primitive changes a worker applies.
pub fn prims(t: &TableInfo, op: RowOp, mode: ApplyMode) -> Vec<Prim> {
    match op {
        RowOp::Insert(row) => vec![Prim::Put {
            row,
            fresh: mode == ApplyMode::Strict,
        }],
        RowOp::Update(before, after) => {
            let old = key_values(t, &before);
            if old == key_values(t, &after) {
                vec![Prim::Put {
                    row: after,
                    fresh: false,
                }]
            } else {
                vec![
                    Prim::Delete { key: old },
                    Prim::Put {
                        row: after,
                        fresh: false,
                    },
                ]
            }
        }
        RowOp::Delete(before) => vec![Prim::Delete {
            key: key_values(t, &before),
        }],
    }
}

/// Canonical bytes of key values: equal keys, equal bytes.
fn key_bytes(key: &[&Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * key.len());
    for v in key {
        match v {
            Value::NULL => out.push(0),
            Value::Int(i) if *i >= 0 => {
                out.push(1);
                out.extend((*i as u64).to_be_bytes());
            }
            Value::Int(i) => {
                out.push(2);
                out.extend(i.to_be_bytes());
            }
            Value::UInt(u) => {
                out.push(1);
                out.extend(u.to_be_bytes());
            }
            Value::Bytes(b) => {
                out.push(3);
                out.extend((b.len() as u32).to_be_bytes());
                out.extend(b);
            }
            other => {
                out.push(4);
                out.extend(format!("{other:?}").into_bytes());
            }
        }
    }
    out
}

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The worker a change goes to: stable across runs for the same worker count.
pub fn partition(t: &TableInfo, target: &TargetName, prim: &Prim, workers: u32) -> u32 {
    let h = fnv(target.db.as_bytes(), 0xcbf2_9ce4_8422_2325);
    let mut h = fnv(target.table.as_bytes(), fnv(b".", h));
    if t.parallel_safe {
        let key: Vec<&Value> = match prim {
            Prim::Put { row, .. } => t.key_of(row),
            Prim::Delete { key } => key.iter().collect(),
        };
        h = fnv(&key_bytes(&key), h);
    }
    (h % u64::from(workers.max(1))) as u32
}

// ------------------------------------------------------------------ statements

/// Largest statement text before it is split.
const MAX_STATEMENT: usize = 4 << 20;
const MAX_ROWS_PER_STATEMENT: usize = 2_000;

fn columns_list(t: &TableInfo) -> String {
    let names: Vec<String> = t
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| quote_ident(&c.name))
        .collect();
    names.join(",")
}

fn push_row(out: &mut String, t: &TableInfo, row: &[Value]) {
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

/// `INSERT` (or upsert) statements for rows of one table.
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
        let sets: Vec<String> = t
            .columns
            .iter()
            .filter(|c| !c.generated)
            .map(|c| format!("{0}=VALUES({0})", quote_ident(&c.name)))
            .collect();
        format!(" ON DUPLICATE KEY UPDATE {}", sets.join(","))
    } else {
        String::new()
    };
    let mut out = Vec::new();
    let mut sql = String::new();
    let mut n = 0;
    for row in rows {
        if n == 0 {
            sql.push_str(&head);
        } else {
            sql.push(',');
        }
        push_row(&mut sql, t, row);
        n += 1;
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
fn push_typed_literal(out: &mut String, v: &Value, col: &ColumnInfo) {
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
const FILTER_ROW: &str = "`__ferry_row`";

/// Rows evaluated per [`filter_statements`] statement (fewer when they are large).
const FILTER_ROWS: usize = 500;

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

// ------------------------------------------------------------------ worker buffer

/// The net effect of a run of changes to one row.
#[derive(Debug, Clone)]
struct Net {
    /// Whether the row existed before the first change (`Some(false)` only for a strict insert).
    existed: bool,
    last: Prim,
}

/// Pending changes of one target table in one worker.
struct TableBuf {
    table: Arc<TableInfo>,
    target: Arc<TargetName>,
    /// Parallel-safe tables: one entry per key, merged. Others: every change in order.
    entries: Vec<Net>,
    index: HashMap<Vec<u8>, usize>,
}

impl TableBuf {
    fn push(&mut self, prim: Prim) {
        let existed = !matches!(prim, Prim::Put { fresh: true, .. });
        if self.table.parallel_safe {
            let kb = match &prim {
                Prim::Put { row, .. } => key_bytes(&self.table.key_of(row)),
                Prim::Delete { key } => key_bytes(&key.iter().collect::<Vec<_>>()),
            };
            if let Some(&i) = self.index.get(&kb) {
                self.entries[i].last = prim;
                return;
            }
            self.index.insert(kb, self.entries.len());
        }
        self.entries.push(Net {
            existed,
            last: prim,
        });
    }

    /// The entries whose net change puts a row, with that row.
    fn puts(&self) -> Vec<(usize, &[Value])> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.last {
                Prim::Put { row, .. } => Some((i, row.as_slice())),
                Prim::Delete { .. } => None,
            })
            .collect()
    }

    /// Entry `i` puts a row outside the row filter: delete its key instead (the
    /// row may be there from before the change; an insert of a row that did not
    /// exist deletes nothing).
    fn put_outside_filter(&mut self, i: usize) {
        if let Prim::Put { row, .. } = &self.entries[i].last {
            let key = key_values(&self.table, row);
            self.entries[i].last = Prim::Delete { key };
        }
    }

    /// The statements for the pending changes, in an order that keeps their effect.
    fn statements(&self) -> Vec<String> {
        let (t, target) = (&self.table, &self.target);
        let mut out = Vec::new();
        if t.parallel_safe {
            // One net change per key: deletes, then inserts, then upserts.
            let keys: Vec<&[Value]> = self
                .entries
                .iter()
                .filter(|n| n.existed)
                .filter_map(|n| match &n.last {
                    Prim::Delete { key } => Some(key.as_slice()),
                    _ => None,
                })
                .collect();
            out.extend(delete_sql(t, target, &keys));
            for fresh in [true, false] {
                let rows: Vec<&[Value]> = self
                    .entries
                    .iter()
                    .filter(|n| n.existed != fresh)
                    .filter_map(|n| match &n.last {
                        Prim::Put { row, .. } => Some(row.as_slice()),
                        _ => None,
                    })
                    .collect();
                out.extend(insert_sql(t, target, &rows, !fresh));
            }
            return out;
        }
        // In binlog order, consecutive changes of one kind in one statement.
        let mut i = 0;
        while i < self.entries.len() {
            let kind = |n: &Net| match n.last {
                Prim::Delete { .. } => 0,
                Prim::Put { fresh: true, .. } => 1,
                Prim::Put { fresh: false, .. } => 2,
            };
            let k = kind(&self.entries[i]);
            let run: Vec<&Net> = self.entries[i..]
                .iter()
                .take_while(|n| kind(n) == k)
                .collect();
            i += run.len();
            let images: Vec<&[Value]> = run
                .iter()
                .map(|n| match &n.last {
                    Prim::Delete { key } => key.as_slice(),
                    Prim::Put { row, .. } => row.as_slice(),
                })
                .collect();
            out.extend(if k == 0 {
                delete_sql(t, target, &images)
            } else {
                insert_sql(t, target, &images, k == 2)
            });
        }
        out
    }
}

#[derive(Default)]
struct Buffer {
    tables: Vec<TableBuf>,
    by_target: HashMap<Arc<TargetName>, usize>,
    len: usize,
}

impl Buffer {
    fn push(&mut self, r: Routed) {
        let i = match self.by_target.get(&r.target) {
            Some(&i) => i,
            None => {
                self.tables.push(TableBuf {
                    table: r.table.clone(),
                    target: r.target.clone(),
                    entries: Vec::new(),
                    index: HashMap::new(),
                });
                self.by_target
                    .insert(r.target.clone(), self.tables.len() - 1);
                self.tables.len() - 1
            }
        };
        // A table's description changes after DDL: flush boundaries keep images and columns together.
        self.tables[i].table = r.table;
        self.tables[i].push(r.prim);
        self.len += 1;
    }

    fn take_statements(&mut self) -> Vec<String> {
        let out = self.tables.iter().flat_map(TableBuf::statements).collect();
        *self = Buffer::default();
        out
    }
}

// ------------------------------------------------------------------ link checkpoints

/// One worker's checkpoint row on the target.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerCheckpoint {
    pub worker: u32,
    pub position: BinlogPosition,
    pub epoch: u64,
    pub applied: u64,
    pub ddl_pending: Option<String>,
    /// The incarnation of the task that wrote the row (`None`: written before rows carried one).
    pub incarnation: Option<String>,
}

/// A replication link's identity and its checkpoint table on the target.
#[derive(Debug, Clone)]
pub struct Link {
    pub meta_schema: String,
    pub task_id: String,
    pub direction: Direction,
    pub epoch: u64,
    /// The task's incarnation ([`ferry_core::model::TaskRecord::incarnation`]): a task
    /// started again under the same task_id (its state lost without `ferry release`) is
    /// another incarnation, and its rows are never taken for this one's. `None` skips
    /// the check (tools and tests that drive a link by hand).
    pub incarnation: Option<String>,
}

/// The checkpoint table's column holding the incarnation, added to tables made before it existed.
const INCARNATION_COLUMN: &str = "incarnation VARCHAR(64) NULL";

impl Link {
    /// `AND incarnation = ?` for this link's writes, or nothing without an incarnation.
    fn incarnation_cond(&self) -> String {
        match &self.incarnation {
            Some(i) => format!(" AND incarnation = {}", crate::conn::quote_str(i)),
            None => String::new(),
        }
    }

    fn foreign(&self, rows: &[WorkerCheckpoint]) -> Option<String> {
        let mine = self.incarnation.as_ref()?;
        rows.iter()
            .filter_map(|r| r.incarnation.clone())
            .find(|i| i != mine)
    }

    /// The statement that removes another incarnation's rows of this link (a fix an error names).
    pub fn delete_statement(&self, incarnation: &str) -> String {
        format!(
            "DELETE FROM {} WHERE task_id = {} AND incarnation = {};",
            self.table(),
            crate::conn::quote_str(&self.task_id),
            crate::conn::quote_str(incarnation)
        )
    }

    fn table(&self) -> String {
        qualified(&self.meta_schema, "checkpoints")
    }

    fn fenced(&self, what: &str) -> FerryError {
        FerryError::Fenced(format!(
            "the {} link of task {} was taken over by a newer applier (this one has epoch {}); {what} was rolled back and this applier stops",
            self.direction.as_str(),
            self.task_id,
            self.epoch
        ))
    }

    /// Create the meta schema and the checkpoint table if missing.
    pub async fn ensure_table(&self, conn: &mut Conn) -> Result<(), FerryError> {
        let what = format!("target: creating {}", self.table());
        for sql in [
            format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(&self.meta_schema)),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (task_id VARCHAR(64) NOT NULL, direction VARCHAR(16) NOT NULL, \
                 worker INT NOT NULL, file VARCHAR(255) NOT NULL, pos BIGINT UNSIGNED NOT NULL, gtid TEXT NULL, \
                 epoch BIGINT UNSIGNED NOT NULL, applied BIGINT UNSIGNED NOT NULL DEFAULT 0, \
                 ddl_pending VARCHAR(300) NULL, updated_at DATETIME(6) NOT NULL, {INCARNATION_COLUMN}, \
                 PRIMARY KEY (task_id, direction, worker)) ENGINE=InnoDB",
                self.table()
            ),
        ] {
            conn.query_drop(&sql).await.map_err(|e| classify(e, &what))?;
        }
        if !has_incarnation_column(conn, &self.meta_schema).await? {
            let sql = format!(
                "ALTER TABLE {} ADD COLUMN {INCARNATION_COLUMN}",
                self.table()
            );
            if let Err(e) = conn.query_drop(&sql).await {
                // Another applier added it at the same moment (duplicate column): fine.
                if !has_incarnation_column(conn, &self.meta_schema).await? {
                    return Err(classify(e, &what));
                }
            }
        }
        Ok(())
    }

    /// The link's checkpoint rows, ordered by worker.
    pub async fn read(
        &self,
        conn: &mut Conn,
        lock: bool,
    ) -> Result<Vec<WorkerCheckpoint>, FerryError> {
        let sql = format!(
            "SELECT worker, file, pos, gtid, epoch, applied, ddl_pending, incarnation FROM {} WHERE task_id = ? AND direction = ? ORDER BY worker{}",
            self.table(),
            if lock { " FOR UPDATE" } else { "" }
        );
        let rows: Vec<mysql_async::Row> = conn
            .exec(&sql, (&self.task_id, self.direction.as_str()))
            .await
            .map_err(|e| classify(e, "target: reading checkpoints"))?;
        rows.into_iter()
            .map(|mut r| {
                let bad = || {
                    FerryError::Store(format!(
                        "target: a checkpoint row of task {} in {} cannot be read",
                        self.task_id,
                        self.table()
                    ))
                };
                Ok(WorkerCheckpoint {
                    worker: r.take_opt(0).and_then(Result::ok).ok_or_else(bad)?,
                    position: BinlogPosition {
                        file: r.take_opt(1).and_then(Result::ok).ok_or_else(bad)?,
                        pos: r.take_opt(2).and_then(Result::ok).ok_or_else(bad)?,
                        gtid: r.take_opt(3).and_then(Result::ok).flatten(),
                    },
                    epoch: r.take_opt(4).and_then(Result::ok).ok_or_else(bad)?,
                    applied: r.take_opt(5).and_then(Result::ok).ok_or_else(bad)?,
                    ddl_pending: r.take_opt(6).and_then(Result::ok).flatten(),
                    incarnation: r.take_opt(7).and_then(Result::ok).flatten(),
                })
            })
            .collect()
    }

    /// Take the link for this epoch: refused (Ferry.Fenced) if a newer epoch
    /// holds it. Creates `workers` rows at `start` for a new link; an existing
    /// link keeps its worker count (partitions must not move).
    pub async fn claim(
        &self,
        conn: &mut Conn,
        workers: u32,
        start: &BinlogPosition,
    ) -> Result<Vec<WorkerCheckpoint>, FerryError> {
        self.ensure_table(conn).await?;
        let what = "target: taking the link";
        conn.query_drop("START TRANSACTION")
            .await
            .map_err(|e| classify(e, what))?;
        let result = self.claim_in_txn(conn, workers, start).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        conn.query_drop(end).await.map_err(|e| classify(e, what))?;
        result
    }

    async fn claim_in_txn(
        &self,
        conn: &mut Conn,
        workers: u32,
        start: &BinlogPosition,
    ) -> Result<Vec<WorkerCheckpoint>, FerryError> {
        let what = "target: taking the link";
        let rows = self.read(conn, true).await?;
        if let Some(newer) = rows.iter().find(|r| r.epoch > self.epoch) {
            return Err(FerryError::Fenced(format!(
                "the {} link of task {} is held by epoch {} on the target (this applier has {}); stopping",
                self.direction.as_str(),
                self.task_id,
                newer.epoch,
                self.epoch
            )));
        }
        if let Some(other) = self.foreign(&rows) {
            return Err(FerryError::Fenced(format!(
                "the {} link's checkpoint rows of task {} in {} belong to another incarnation of the task \
                 ({other}; this one is {}): the task_id was started again without `ferry release`, and those rows \
                 would make this link skip or replay changes. They hold no data: remove them with {} and resume",
                self.direction.as_str(),
                self.task_id,
                self.table(),
                self.incarnation.as_deref().unwrap_or(""),
                self.delete_statement(&other)
            )));
        }
        if rows.is_empty() {
            for w in 0..workers.max(1) {
                conn.exec_drop(
                    format!(
                        "INSERT INTO {} (task_id, direction, worker, file, pos, gtid, epoch, updated_at, incarnation) VALUES (?,?,?,?,?,?,?,NOW(6),?)",
                        self.table()
                    ),
                    (&self.task_id, self.direction.as_str(), w, &start.file, start.pos, &start.gtid, self.epoch, &self.incarnation),
                )
                .await
                .map_err(|e| classify(e, what))?;
            }
        } else if rows.len() as u32 != workers {
            tracing::warn!(
                task = %self.task_id,
                link = self.direction.as_str(),
                existing = rows.len(),
                asked = workers,
                "the link keeps its worker count: changing apply_workers takes effect on a new link"
            );
        }
        // Rows written before rows carried an incarnation are adopted by the task that holds them.
        conn.exec_drop(
            format!(
                "UPDATE {} SET epoch = ?, incarnation = COALESCE(incarnation, ?) WHERE task_id = ? AND direction = ? AND epoch <= ?",
                self.table()
            ),
            (
                self.epoch,
                &self.incarnation,
                &self.task_id,
                self.direction.as_str(),
                self.epoch,
            ),
        )
        .await
        .map_err(|e| classify(e, what))?;
        self.read(conn, false).await
    }

    /// Inside the caller's transaction: move `worker`'s checkpoint (every
    /// worker's when `None`, `expect` rows). Fenced when a newer epoch holds the link.
    async fn advance(
        &self,
        conn: &mut Conn,
        worker: Option<u32>,
        expect: u64,
        pos: &BinlogPosition,
        applied: u64,
    ) -> Result<(), FerryError> {
        let filter = worker
            .map(|w| format!(" AND worker = {w}"))
            .unwrap_or_default();
        let sql = format!(
            "UPDATE {} SET file = ?, pos = ?, gtid = ?, applied = applied + ?, ddl_pending = NULL, updated_at = NOW(6) \
             WHERE task_id = ? AND direction = ? AND epoch <= ?{filter}{}",
            self.table(),
            self.incarnation_cond()
        );
        conn.exec_drop(
            sql,
            (
                &pos.file,
                pos.pos,
                &pos.gtid,
                applied,
                &self.task_id,
                self.direction.as_str(),
                self.epoch,
            ),
        )
        .await
        .map_err(|e| classify(e, "target: writing the checkpoint"))?;
        if conn.affected_rows() < expect {
            return Err(self.fenced("the checkpoint update"));
        }
        Ok(())
    }

    /// Note (autocommit) that the DDL at `marker` is about to run, so a
    /// restart knows a "table exists" from it means "already done".
    async fn mark_ddl(&self, conn: &mut Conn, marker: &str) -> Result<(), FerryError> {
        conn.exec_drop(
            format!("UPDATE {} SET ddl_pending = ? WHERE task_id = ? AND direction = ? AND worker = 0 AND epoch <= ?{}", self.table(), self.incarnation_cond()),
            (marker, &self.task_id, self.direction.as_str(), self.epoch),
        )
        .await
        .map_err(|e| classify(e, "target: marking DDL"))?;
        if conn.affected_rows() < 1 {
            return Err(self.fenced("the DDL"));
        }
        Ok(())
    }

    /// Retire the link (switchover): its rows take `epoch` (use
    /// `CheckpointRecord::RETIRED_EPOCH`), so an applier of it that is still
    /// running or comes late finds no row its checkpoint update may move
    /// (`epoch <= ?`) and rolls back with `Ferry.Fenced`. Waits for an
    /// applier's open transaction on the row; idempotent.
    pub async fn retire(&self, conn: &mut Conn, epoch: u64) -> Result<u64, FerryError> {
        self.ensure_table(conn).await?;
        conn.exec_drop(
            format!(
                "UPDATE {} SET epoch = ?, updated_at = NOW(6) WHERE task_id = ? AND direction = ?",
                self.table()
            ),
            (epoch, &self.task_id, self.direction.as_str()),
        )
        .await
        .map_err(|e| classify(e, "target: retiring the link"))?;
        Ok(conn.affected_rows())
    }

    /// Remove the link's rows (cleanup).
    pub async fn delete(&self, conn: &mut Conn) -> Result<(), FerryError> {
        conn.exec_drop(
            format!(
                "DELETE FROM {} WHERE task_id = ? AND direction = ?",
                self.table()
            ),
            (&self.task_id, self.direction.as_str()),
        )
        .await
        .map_err(|e| classify(e, "target: removing checkpoints"))
    }
}

async fn has_incarnation_column(conn: &mut Conn, meta_schema: &str) -> Result<bool, FerryError> {
    let n: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'checkpoints' \
             AND COLUMN_NAME = 'incarnation'",
            (meta_schema,),
        )
        .await
        .map_err(|e| classify(e, "target: reading the checkpoint table's columns"))?;
    Ok(n.unwrap_or(0) > 0)
}

/// Remove every checkpoint row of `task_id` (both links) that does not belong
/// to `incarnation`: a new plan of a task calls it before its link exists, so
/// rows an earlier incarnation of the same task_id left (its state lost without
/// `ferry release`) can neither make it skip changes nor replay old ones.
/// Returns the incarnations removed with their rows' positions. Nothing to do
/// when the checkpoint table does not exist.
pub async fn clear_other_incarnations(
    conn: &mut Conn,
    meta_schema: &str,
    task_id: &str,
    incarnation: &str,
) -> Result<Vec<String>, FerryError> {
    let what = "clearing another incarnation's checkpoint rows";
    let exists: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'checkpoints'",
            (meta_schema,),
        )
        .await
        .map_err(|e| classify(e, what))?;
    if exists.unwrap_or(0) == 0 {
        return Ok(Vec::new());
    }
    let table = qualified(meta_schema, "checkpoints");
    let inc = if has_incarnation_column(conn, meta_schema).await? {
        "COALESCE(incarnation, '(none)')"
    } else {
        "'(none)'"
    };
    let rows: Vec<(String, String, String, u64)> = conn
        .exec(
            format!(
                "SELECT {inc}, direction, file, pos FROM {table} WHERE task_id = ? AND NOT ({inc} <=> ?) ORDER BY direction, worker"
            ),
            (task_id, incarnation),
        )
        .await
        .map_err(|e| classify(e, what))?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    conn.exec_drop(
        format!("DELETE FROM {table} WHERE task_id = ? AND NOT ({inc} <=> ?)"),
        (task_id, incarnation),
    )
    .await
    .map_err(|e| classify(e, what))?;
    Ok(rows
        .into_iter()
        .map(|(i, d, f, p)| format!("{i} {d} {f}:{p}"))
        .collect())
}

/// Order of two positions of one server (file index, then offset).
pub fn pos_lt(a: &BinlogPosition, b: &BinlogPosition) -> bool {
    a.compare(b) == Some(std::cmp::Ordering::Less)
}

/// Connection settings for applying: UTC, no value rewriting, found rows counted.
pub async fn apply_connection(target: &Endpoint) -> Result<Conn, FerryError> {
    let opts = OptsBuilder::from_opts(target.opts()).client_found_rows(true);
    let who = target.describe();
    let mut conn = target.connect_with(opts.into()).await?;
    for sql in [
        "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_BACKSLASH_ESCAPES,STRICT_ALL_TABLES'",
        "SET SESSION foreign_key_checks = 0",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    ] {
        conn.query_drop(sql)
            .await
            .map_err(|e| classify(e, &format!("{who}: {sql}")))?;
    }
    Ok(conn)
}

// ------------------------------------------------------------------ worker

/// Changes applied, by (target table, op).
pub type OpCounts = BTreeMap<(String, String), u64>;

enum WorkerMsg {
    Rows(Vec<Routed>),
    /// Commit everything so far with the checkpoint at `position`.
    Commit {
        group: u64,
        position: BinlogPosition,
    },
    /// Drop the open transaction (the call ends inside a source transaction).
    Rollback,
}

enum Ack {
    Committed { group: u64 },
    Failed { worker: u32, error: FerryError },
}

struct Worker {
    id: u32,
    conn: Conn,
    link: Arc<Link>,
    checkpoint: BinlogPosition,
    buf: Buffer,
    in_txn: bool,
    pending: u64,
    counts: OpCounts,
}

const FLUSH_ROWS: usize = 5_000;

impl Worker {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<WorkerMsg>,
        acks: mpsc::UnboundedSender<Ack>,
    ) -> (OpCounts, Conn) {
        while let Some(msg) = rx.recv().await {
            let result = match msg {
                WorkerMsg::Rows(rows) => self.rows(rows).await,
                WorkerMsg::Commit { group, position } => self.commit(&position).await.map(|()| {
                    let _ = acks.send(Ack::Committed { group });
                }),
                WorkerMsg::Rollback => self.rollback().await,
            };
            if let Err(error) = result {
                let _ = self.conn.query_drop("ROLLBACK").await;
                let _ = acks.send(Ack::Failed {
                    worker: self.id,
                    error,
                });
                break;
            }
        }
        if self.in_txn {
            let _ = self.conn.query_drop("ROLLBACK").await;
        }
        (self.counts, self.conn)
    }

    async fn exec(&mut self, sql: &str) -> Result<(), FerryError> {
        self.conn.query_drop(sql).await.map_err(|e| {
            let mut short: String = sql.chars().take(300).collect();
            if short.len() < sql.len() {
                short.push_str("...");
            }
            classify(e, &format!("target: applying changes ({short})"))
        })
    }

    async fn begin(&mut self) -> Result<(), FerryError> {
        if !self.in_txn {
            self.exec("START TRANSACTION").await?;
            self.in_txn = true;
        }
        Ok(())
    }

    async fn rows(&mut self, rows: Vec<Routed>) -> Result<(), FerryError> {
        for r in rows {
            let op = match &r.prim {
                Prim::Delete { .. } => "delete",
                Prim::Put { fresh: true, .. } => "insert",
                Prim::Put { fresh: false, .. } => "upsert",
            };
            *self
                .counts
                .entry((
                    format!("{}.{}", r.target.db, r.target.table),
                    op.to_string(),
                ))
                .or_default() += 1;
            self.pending += 1;
            self.buf.push(r);
        }
        if self.buf.len >= FLUSH_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), FerryError> {
        if self.buf.len == 0 {
            return Ok(());
        }
        self.begin().await?;
        self.apply_filters().await?;
        for (i, sql) in self.buf.take_statements().into_iter().enumerate() {
            if i == 1 {
                failpoint_for(&self.link.task_id, "apply.mid_batch")?;
            }
            self.exec(&sql).await?;
        }
        Ok(())
    }

    /// Judge the rows the pending changes put on filtered tables: the ones
    /// outside the row filter become deletes by key (counted as `outside filter`).
    async fn apply_filters(&mut self) -> Result<(), FerryError> {
        let Worker {
            conn, buf, counts, ..
        } = self;
        for tb in &mut buf.tables {
            let Some(filter) = tb.target.filter.clone() else {
                continue;
            };
            let what = format!(
                "target: evaluating the row filter of {}.{} ({filter}) over changed rows; \
                 fix objects.filters in the task file",
                tb.table.db, tb.table.table
            );
            let puts = tb.puts();
            let mut kept: HashSet<u64> = HashSet::new();
            for sql in filter_statements(&tb.table, &filter, &puts) {
                let rows: Vec<u64> = conn.query(sql).await.map_err(|e| classify(e, &what))?;
                kept.extend(rows);
            }
            let outside: Vec<usize> = puts
                .iter()
                .map(|(i, _)| *i)
                .filter(|i| !kept.contains(&(*i as u64)))
                .collect();
            if outside.is_empty() {
                continue;
            }
            *counts
                .entry((
                    format!("{}.{}", tb.target.db, tb.target.table),
                    "outside filter".to_string(),
                ))
                .or_default() += outside.len() as u64;
            for i in outside {
                tb.put_outside_filter(i);
            }
        }
        Ok(())
    }

    async fn commit(&mut self, position: &BinlogPosition) -> Result<(), FerryError> {
        if !pos_lt(&self.checkpoint, position) {
            // Everything up to here was skipped on resume: this worker is already past it.
            return Ok(());
        }
        self.flush().await?;
        self.begin().await?;
        self.link
            .advance(&mut self.conn, Some(self.id), 1, position, self.pending)
            .await?;
        failpoint_for(&self.link.task_id, "apply.before_commit")?;
        self.exec("COMMIT").await?;
        self.in_txn = false;
        self.pending = 0;
        self.checkpoint = position.clone();
        failpoint_for(&self.link.task_id, "apply.after_commit")?;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), FerryError> {
        self.buf = Buffer::default();
        self.pending = 0;
        if self.in_txn {
            self.exec("ROLLBACK").await?;
            self.in_txn = false;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ the pipeline

/// What one run of a link does.
#[derive(Clone)]
pub struct LinkConfig {
    pub link: Link,
    /// Apply workers for a new link (an existing link keeps its count).
    pub workers: u32,
    /// Where a new link starts (the snapshot position).
    pub start: BinlogPosition,
    /// Changes in transactions that start before this are applied idempotently;
    /// `None`: all of them (the copy has not finished).
    pub idempotent_until: Option<BinlogPosition>,
    /// Source tables to replicate and where they land.
    pub mapper: TableMapper,
    /// Stop (at a transaction boundary) at this instant.
    pub stop_at: Instant,
    /// Stop when caught up and nothing came for this long.
    pub idle: Duration,
    /// Set from outside to stop at the next transaction boundary.
    pub stop: Arc<AtomicBool>,
    /// Heartbeat row this link writes on the source and measures lag by.
    pub heartbeat_every: Option<Duration>,
    /// Key columns of tables without a primary or unique key (the task's
    /// `objects.keys`), by the tables' names on the side the link reads.
    pub declared_keys: Arc<BTreeMap<(String, String), Vec<String>>>,
    /// Commit a group after this many changes or this long.
    pub group_rows: usize,
    pub group_delay: Duration,
    /// Counters the run keeps up to date while it runs, for a caller that samples them.
    pub live: Arc<LiveLink>,
    /// The written side's dialect and capabilities: DDL from the binlog is
    /// translated for it like the schema stage's tables (None: names only).
    pub ddl_target: Option<(Dialect, TargetContext)>,
    /// Where to mark the chunks the changes touch (forward links after a
    /// plan): see [`crate::dirty`]. Marks are durable before their changes commit.
    pub dirty: Option<(Arc<ChunkMap>, Arc<dyn MarkSink>)>,
}

/// A running link's figures so far, readable from another task while it runs.
#[derive(Debug, Default)]
pub struct LiveLink {
    /// Row changes committed so far in this run.
    pub applied: AtomicU64,
    /// The last lag measured (source clock), `u64::MAX` before the first.
    pub lag_ms: AtomicU64,
}

impl LiveLink {
    pub fn new() -> LiveLink {
        LiveLink {
            applied: AtomicU64::new(0),
            lag_ms: AtomicU64::new(u64::MAX),
        }
    }

    pub fn lag_ms(&self) -> Option<u64> {
        Some(self.lag_ms.load(AtomicOrdering::Relaxed)).filter(|l| *l != u64::MAX)
    }
}

impl LinkConfig {
    pub fn new(
        link: Link,
        start: BinlogPosition,
        mapper: TableMapper,
        stop_at: Instant,
    ) -> LinkConfig {
        LinkConfig {
            link,
            workers: 4,
            start,
            idempotent_until: None,
            mapper,
            stop_at,
            idle: Duration::from_secs(5),
            stop: Arc::new(AtomicBool::new(false)),
            heartbeat_every: Some(Duration::from_millis(500)),
            declared_keys: Arc::default(),
            group_rows: 10_000,
            group_delay: Duration::from_millis(200),
            live: Arc::new(LiveLink::new()),
            ddl_target: None,
            dirty: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkReport {
    /// The lowest worker checkpoint: where the next run starts reading.
    pub position: BinlogPosition,
    /// Row changes committed in this run.
    pub applied: u64,
    /// Changes by (target table, op).
    pub counts: OpCounts,
    /// Source commit of the last applied heartbeat to its commit on the target, and its parts.
    pub lag_ms: Option<u64>,
    pub read_lag_ms: Option<u64>,
    pub apply_lag_ms: Option<u64>,
    /// Every lag measured in this run (for percentiles).
    pub lag_samples: Vec<u64>,
    /// The reader reached the end of the binlog and everything read is committed.
    pub caught_up: bool,
    pub elapsed_ms: u64,
    /// The keys this run changed per chunk it marked dirty (empty without dirty tracking).
    pub touched: Vec<ChunkKeys>,
}

/// The heartbeat table on the source.
pub async fn ensure_heartbeat(
    conn: &mut Conn,
    meta_schema: &str,
    task_id: &str,
) -> Result<(), FerryError> {
    let what = format!(
        "source: creating {}.heartbeat (the migration user needs ALL on {}.*)",
        meta_schema,
        quote_ident(meta_schema)
    );
    for sql in [
        format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(meta_schema)),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (task_id VARCHAR(64) NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL) ENGINE=InnoDB",
            qualified(meta_schema, "heartbeat")
        ),
    ] {
        conn.query_drop(&sql).await.map_err(|e| classify(e, &what))?;
    }
    beat(conn, meta_schema, task_id).await
}

/// Write the heartbeat row with the source's clock.
pub async fn beat(conn: &mut Conn, meta_schema: &str, task_id: &str) -> Result<(), FerryError> {
    conn.exec_drop(
        format!(
            "INSERT INTO {} (task_id, ts) VALUES (?, NOW(6)) ON DUPLICATE KEY UPDATE ts = NOW(6)",
            qualified(meta_schema, "heartbeat")
        ),
        (task_id,),
    )
    .await
    .map_err(|e| classify(e, "source: writing the heartbeat"))
}

fn datetime_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Date(y, m, d, h, mi, s, us) => {
            let days =
                crate::binlog::decode::days_from_civil(i64::from(*y), u32::from(*m), u32::from(*d));
            Some(
                ((days * 86_400 + i64::from(*h) * 3600 + i64::from(*mi) * 60 + i64::from(*s))
                    * 1000)
                    + i64::from(*us) / 1000,
            )
        }
        _ => None,
    }
}

/// Local clock minus the source's clock, in ms.
async fn clock_offset(conn: &mut Conn) -> Result<i64, FerryError> {
    let before = now_ms() as i64;
    let v: Option<Value> = conn
        .query_first("SELECT NOW(6)")
        .await
        .map_err(|e| classify(e, "source: SELECT NOW(6)"))?;
    let after = now_ms() as i64;
    let src = v.as_ref().and_then(|v| match v {
        Value::Bytes(b) => parse_datetime_text(b),
        other => datetime_ms(other),
    });
    Ok(src.map(|s| (before + after) / 2 - s).unwrap_or(0))
}

fn parse_datetime_text(b: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(b).ok()?;
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    let frac: u32 = s.get(20..26).and_then(|x| x.parse().ok()).unwrap_or(0);
    datetime_ms(&Value::Date(
        num(0..4)? as u16,
        num(5..7)? as u8,
        num(8..10)? as u8,
        num(11..13)? as u8,
        num(14..16)? as u8,
        num(17..19)? as u8,
        frac,
    ))
}

struct Group {
    id: u64,
    heartbeat: Option<(i64, Instant)>,
}

struct Pipeline {
    cfg: LinkConfig,
    link: Arc<Link>,
    checkpoints: Vec<BinlogPosition>,
    senders: Vec<mpsc::Sender<WorkerMsg>>,
    acks: mpsc::UnboundedReceiver<Ack>,
    /// Groups sent and not yet acknowledged by every worker.
    open: Vec<(Group, u32)>,
    next_group: u64,
    group_rows: usize,
    group_started: Option<Instant>,
    group_heartbeat: Option<(i64, Instant)>,
    /// Position up to which the current group runs (the last complete transaction's end).
    group_end: Option<BinlogPosition>,
    in_txn: bool,
    txn_mode: ApplyMode,
    /// Per worker: skip this transaction (already applied before a restart).
    txn_skip: Vec<bool>,
    offset_ms: i64,
    report: LinkReport,
    target: Endpoint,
    ddl_conn: Option<Conn>,
    ddl_pending: Option<String>,
    /// The reader reached the source's end (a server heartbeat, or our own heartbeat row read promptly).
    caught_up: bool,
    last_data: Instant,
    /// The chunks this call's changes touched (marked before they commit).
    dirty: Option<ChangeTracker>,
}

/// A heartbeat row read this soon after it was written means the reader is at the end.
const CAUGHT_UP_READ_LAG_MS: u64 = 1_000;

/// Run a link until the deadline, an idle gap or a stop request: read the
/// source's binlog from the link's checkpoint and apply it to the target.
pub async fn run_link(
    source: &Endpoint,
    target: &Endpoint,
    cfg: LinkConfig,
) -> Result<LinkReport, FerryError> {
    let started = Instant::now();
    let link = Arc::new(cfg.link.clone());
    let mut claim_conn = apply_connection(target).await?;
    let rows = link.claim(&mut claim_conn, cfg.workers, &cfg.start).await?;
    let checkpoints: Vec<BinlogPosition> = rows.iter().map(|r| r.position.clone()).collect();
    let ddl_pending = rows.first().and_then(|r| r.ddl_pending.clone());
    let start = checkpoints.iter().fold(checkpoints[0].clone(), |a, b| {
        if pos_lt(b, &a) {
            b.clone()
        } else {
            a
        }
    });

    let meta = link.meta_schema.clone();
    let mapper = cfg.mapper.clone();
    let filter: TableFilter = Arc::new(move |db: &str, t: &str| {
        (db == meta && t == "heartbeat") || mapper(db, t).is_some()
    });
    let mut opts = ReaderOptions::new(server_id_for(&link.task_id, link.epoch), filter);
    opts.declared_keys = cfg.declared_keys.clone();
    let mut src_conn = source.connect().await?;
    let offset_ms = clock_offset(&mut src_conn).await?;
    if cfg.heartbeat_every.is_some() {
        ensure_heartbeat(&mut src_conn, &link.meta_schema, &link.task_id).await?;
    }
    let reader = BinlogReader::open(source, &start, opts).await?;
    let mut worker_conns = Vec::new();
    for _ in &checkpoints {
        worker_conns.push(apply_connection(target).await?);
    }
    let heartbeat = match cfg.heartbeat_every {
        Some(every) => Some(tokio::spawn(heartbeat_loop(src_conn, link.clone(), every))),
        None => {
            drop(src_conn);
            None
        }
    };
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for ((i, cp), conn) in checkpoints.iter().enumerate().zip(worker_conns) {
        let (tx, rx) = mpsc::channel(4);
        let w = Worker {
            id: i as u32,
            conn,
            link: link.clone(),
            checkpoint: cp.clone(),
            buf: Buffer::default(),
            in_txn: false,
            pending: 0,
            counts: OpCounts::new(),
        };
        handles.push(tokio::spawn(w.run(rx, ack_tx.clone())));
        senders.push(tx);
    }
    drop(ack_tx);
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    let read_task = tokio::spawn(read_loop(reader, ev_tx));
    let mut guard = AbortOnDrop(handles.iter().map(|h| h.abort_handle()).collect());
    guard.0.push(read_task.abort_handle());
    if let Some(h) = &heartbeat {
        guard.0.push(h.abort_handle());
    }

    let mut p = Pipeline {
        link,
        checkpoints: checkpoints.clone(),
        senders,
        acks: ack_rx,
        open: Vec::new(),
        next_group: 0,
        group_rows: 0,
        group_started: None,
        group_heartbeat: None,
        group_end: None,
        in_txn: false,
        txn_mode: ApplyMode::Idempotent,
        txn_skip: vec![false; checkpoints.len()],
        offset_ms,
        report: LinkReport {
            position: start.clone(),
            applied: 0,
            counts: OpCounts::new(),
            lag_ms: None,
            read_lag_ms: None,
            apply_lag_ms: None,
            lag_samples: Vec::new(),
            caught_up: false,
            elapsed_ms: 0,
            touched: Vec::new(),
        },
        target: target.clone(),
        ddl_conn: Some(claim_conn),
        ddl_pending,
        caught_up: false,
        last_data: Instant::now(),
        dirty: cfg
            .dirty
            .clone()
            .map(|(map, sink)| ChangeTracker::new(map, sink)),
        cfg,
    };
    let result = p.run(&mut ev_rx).await;
    read_task.abort();
    if let Some(h) = heartbeat {
        h.abort();
    }
    if result.is_err() {
        for s in &p.senders {
            let _ = s.send(WorkerMsg::Rollback).await;
        }
    }
    p.senders.clear();
    let mut counts = OpCounts::new();
    for h in handles {
        if let Ok((c, conn)) = h.await {
            for (k, v) in c {
                *counts.entry(k).or_default() += v;
            }
            let _ = conn.disconnect().await;
        }
    }
    drop(guard);
    let drained = p.drain_acks();
    result?;
    drained?;
    let mut report = p.report;
    report.counts = counts;
    report.position = p.checkpoints.iter().fold(p.checkpoints[0].clone(), |a, b| {
        if pos_lt(b, &a) {
            b.clone()
        } else {
            a
        }
    });
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.touched = p
        .dirty
        .as_ref()
        .map(ChangeTracker::listed)
        .unwrap_or_default();
    if let Some(c) = p.ddl_conn.take() {
        let _ = c.disconnect().await;
    }
    Ok(report)
}

/// Aborts its tasks when dropped: a cancelled run leaves nothing behind.
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

async fn heartbeat_loop(mut conn: Conn, link: Arc<Link>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = beat(&mut conn, &link.meta_schema, &link.task_id).await {
            tracing::warn!(error = %e, "heartbeat write failed; lag is not measured until it works again");
        }
    }
}

async fn read_loop(mut reader: BinlogReader, tx: mpsc::Sender<Result<BinlogEvent, FerryError>>) {
    loop {
        let ev = reader.next().await;
        let failed = ev.is_err();
        if tx.send(ev).await.is_err() || failed {
            break;
        }
    }
    reader.close().await;
}

impl Pipeline {
    async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Result<BinlogEvent, FerryError>>,
    ) -> Result<(), FerryError> {
        let hard_stop = self.cfg.stop_at + Duration::from_secs(5);
        loop {
            self.drain_acks()?;
            let now = Instant::now();
            let stopping = now >= self.cfg.stop_at
                || self.cfg.stop.load(AtomicOrdering::Relaxed)
                || (self.caught_up && now.duration_since(self.last_data) >= self.cfg.idle);
            if stopping && !self.in_txn {
                break;
            }
            if now >= hard_stop {
                // Deep inside one huge transaction: give it back, it is applied next time.
                for s in &self.senders {
                    let _ = s.send(WorkerMsg::Rollback).await;
                }
                self.group_rows = 0;
                self.group_end = None;
                break;
            }
            let ev = match tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
                Err(_) => {
                    if !self.in_txn {
                        self.commit_group().await?;
                    }
                    continue;
                }
                Ok(None) => return Err(FerryError::Transient("the binlog reader stopped".into())),
                Ok(Some(ev)) => ev?,
            };
            match ev {
                BinlogEvent::Begin { start } => self.begin(&start),
                BinlogEvent::Rows(rows) => {
                    if self.rows(rows).await? {
                        self.last_data = Instant::now();
                        self.caught_up = false;
                    }
                }
                BinlogEvent::Commit { end, .. } => {
                    self.in_txn = false;
                    self.group_end = Some(end);
                    let due = self.group_rows >= self.cfg.group_rows
                        || self
                            .group_started
                            .is_some_and(|t| t.elapsed() >= self.cfg.group_delay);
                    if due {
                        self.commit_group().await?;
                    }
                }
                BinlogEvent::Statement {
                    schema,
                    sql,
                    start,
                    end,
                } => {
                    self.in_txn = false;
                    if self.statement(&schema, &sql, &start, &end).await? {
                        self.last_data = Instant::now();
                    }
                }
                BinlogEvent::Heartbeat { position } => {
                    self.caught_up = true;
                    if !self.in_txn
                        && self.group_end.is_none()
                        && self.checkpoints.iter().any(|cp| pos_lt(cp, &position))
                    {
                        self.group_end = Some(position);
                    }
                    self.commit_group().await?;
                }
            }
        }
        self.commit_group().await?;
        self.wait_all().await?;
        self.report.caught_up = self.caught_up && self.open.is_empty();
        Ok(())
    }

    fn begin(&mut self, start: &BinlogPosition) {
        self.in_txn = true;
        self.txn_mode = match &self.cfg.idempotent_until {
            Some(until) if !pos_lt(start, until) => ApplyMode::Strict,
            _ => ApplyMode::Idempotent,
        };
        for (skip, cp) in self.txn_skip.iter_mut().zip(&self.checkpoints) {
            *skip = pos_lt(start, cp);
        }
    }

    /// Route row changes to workers; true when some were for replicated tables.
    async fn rows(&mut self, rows: Vec<RowChange>) -> Result<bool, FerryError> {
        let workers = self.senders.len() as u32;
        let mut per: Vec<Vec<Routed>> = (0..workers).map(|_| Vec::new()).collect();
        let mut any = false;
        for r in rows {
            if r.table.db == self.link.meta_schema && r.table.table == "heartbeat" {
                self.heartbeat_row(&r);
                continue;
            }
            let Some(target) = (self.cfg.mapper)(&r.table.db, &r.table.table) else {
                continue;
            };
            let target = Arc::new(target);
            any = true;
            for prim in prims(&r.table, r.op, self.txn_mode) {
                let w = partition(&r.table, &target, &prim, workers);
                if !self.txn_skip[w as usize] {
                    if let Some(d) = self.dirty.as_mut() {
                        let key: Vec<&Value> = match &prim {
                            Prim::Put { row, .. } => r.table.key_of(row),
                            Prim::Delete { key } => key.iter().collect(),
                        };
                        d.touch(&r.table.db, &r.table.table, &key);
                    }
                    per[w as usize].push(Routed {
                        table: r.table.clone(),
                        target: target.clone(),
                        prim,
                    });
                }
            }
        }
        for (w, batch) in per.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            self.group_rows += batch.len();
            self.group_started.get_or_insert_with(Instant::now);
            self.send(w, WorkerMsg::Rows(batch)).await?;
        }
        Ok(any)
    }

    fn heartbeat_row(&mut self, r: &RowChange) {
        let row = match &r.op {
            RowOp::Insert(a) | RowOp::Update(_, a) => a,
            RowOp::Delete(_) => return,
        };
        let task = row.first().and_then(|v| match v {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        });
        if task == Some(self.link.task_id.as_str()) {
            if let Some(ts) = row.get(1).and_then(datetime_ms) {
                self.group_heartbeat = Some((ts, Instant::now()));
                self.group_started.get_or_insert_with(Instant::now);
            }
        }
    }

    async fn send(&mut self, w: usize, msg: WorkerMsg) -> Result<(), FerryError> {
        if self.senders[w].send(msg).await.is_err() {
            self.drain_acks()?;
            return Err(FerryError::Internal(format!(
                "apply worker {w} stopped without an error"
            )));
        }
        Ok(())
    }

    /// Commit every worker up to the end of the last complete transaction.
    async fn commit_group(&mut self) -> Result<(), FerryError> {
        let Some(end) = self.group_end.take() else {
            return Ok(());
        };
        if let Some(d) = self.dirty.as_mut() {
            // The marks first: a kill after the commit must find them.
            d.flush().await?;
        }
        let id = self.next_group;
        self.next_group += 1;
        for w in 0..self.senders.len() {
            self.send(
                w,
                WorkerMsg::Commit {
                    group: id,
                    position: end.clone(),
                },
            )
            .await?;
        }
        for cp in &mut self.checkpoints {
            if pos_lt(cp, &end) {
                *cp = end.clone();
            }
        }
        self.report.applied += self.group_rows as u64;
        self.cfg
            .live
            .applied
            .store(self.report.applied, AtomicOrdering::Relaxed);
        self.open.push((
            Group {
                id,
                heartbeat: self.group_heartbeat.take(),
            },
            0,
        ));
        self.group_rows = 0;
        self.group_started = None;
        Ok(())
    }

    fn drain_acks(&mut self) -> Result<(), FerryError> {
        while let Ok(ack) = self.acks.try_recv() {
            self.on_ack(ack)?;
        }
        Ok(())
    }

    fn on_ack(&mut self, ack: Ack) -> Result<(), FerryError> {
        match ack {
            Ack::Failed { worker, error } => {
                tracing::warn!(worker, error = %error, "apply worker failed");
                Err(error)
            }
            Ack::Committed { group } => {
                let workers = self.senders.len().max(1) as u32;
                if let Some(i) = self.open.iter().position(|(g, _)| g.id == group) {
                    self.open[i].1 += 1;
                    if self.open[i].1 >= workers {
                        let (g, _) = self.open.remove(i);
                        if let Some((ts, read_at)) = g.heartbeat {
                            let now_src = now_ms() as i64 - self.offset_ms;
                            let lag = (now_src - ts).max(0) as u64;
                            let apply = read_at.elapsed().as_millis() as u64;
                            self.report.lag_ms = Some(lag);
                            self.report.apply_lag_ms = Some(apply.min(lag));
                            self.report.read_lag_ms = Some(lag.saturating_sub(apply));
                            self.report.lag_samples.push(lag);
                            self.cfg.live.lag_ms.store(lag, AtomicOrdering::Relaxed);
                            if lag.saturating_sub(apply) < CAUGHT_UP_READ_LAG_MS {
                                self.caught_up = true;
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Wait until every worker acknowledged every group sent.
    async fn wait_all(&mut self) -> Result<(), FerryError> {
        while !self.open.is_empty() {
            match self.acks.recv().await {
                Some(ack) => self.on_ack(ack)?,
                None => {
                    return Err(FerryError::Internal(
                        "apply workers stopped before committing".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// A statement of its own at `start..end`: DDL on a replicated table is
    /// applied between two checkpoints; anything else only moves the position.
    async fn statement(
        &mut self,
        schema: &str,
        sql: &str,
        start: &BinlogPosition,
        end: &BinlogPosition,
    ) -> Result<bool, FerryError> {
        let parsed = ddl::parse(sql, schema).filter(|d| !d.temporary);
        let relevant = parsed.as_ref().filter(|d| {
            d.names
                .iter()
                .any(|n| (self.cfg.mapper)(&n.db, &n.table).is_some())
        });
        let Some(d) = relevant else {
            if parsed.is_none() && !sql.trim().is_empty() {
                tracing::info!(statement = %sql.chars().take(200).collect::<String>(), "not a table DDL of the replicated tables; skipped");
            }
            self.group_end = Some(end.clone());
            return Ok(false);
        };
        let already = !self.checkpoints.iter().any(|cp| pos_lt(cp, end));
        if already {
            return Ok(false);
        }
        // Barrier: everything before the statement is committed first.
        if self.checkpoints.iter().any(|cp| pos_lt(cp, start)) {
            self.group_end = Some(start.clone());
        }
        self.commit_group().await?;
        self.wait_all().await?;
        if let Some(dirty) = self.dirty.as_mut() {
            for n in &d.names {
                dirty.touch_all(&n.db, &n.table);
            }
            dirty.flush().await?;
        }
        let translated = self.translate(d, sql);
        let marker = start.to_string();
        let retry = self.ddl_pending.as_deref() == Some(marker.as_str());
        let link = self.link.clone();
        let workers = self.checkpoints.len() as u64;
        let conn = self
            .ddl_conn
            .as_mut()
            .ok_or_else(|| FerryError::Internal("no DDL connection".into()))?;
        link.mark_ddl(conn, &marker).await?;
        // The statement as the source ran it (backslash escapes and all).
        conn.query_drop("SET SESSION sql_mode = @@GLOBAL.sql_mode")
            .await
            .map_err(|e| classify(e, "target: DDL session"))?;
        failpoint_for(&link.task_id, "ddl.before_exec")?;
        if let Err(e) = conn.query_drop(&translated).await {
            let tolerated = retry && is_already_done(&e);
            if !tolerated {
                return Err(FerryError::SchemaIncompatible(format!(
                    "the {} link stops at DDL from the source at {start}: `{translated}` failed on the target: {e}. \
                     Apply an equivalent statement on the target by hand, then restart the task (it resumes after this statement), \
                     or exclude the table.",
                    link.direction.as_str()
                )));
            }
            tracing::info!(statement = %translated, error = %e, "DDL was already applied before a restart");
        }
        failpoint_for(&link.task_id, "ddl.after_exec")?;
        conn.query_drop("START TRANSACTION")
            .await
            .map_err(|e| classify(e, "target: DDL checkpoint"))?;
        link.advance(conn, None, workers, end, 0).await?;
        conn.query_drop("COMMIT")
            .await
            .map_err(|e| classify(e, "target: DDL checkpoint"))?;
        self.ddl_pending = None;
        for cp in &mut self.checkpoints {
            *cp = end.clone();
        }
        tracing::info!(statement = %translated, "applied DDL");
        Ok(true)
    }

    fn translate(&self, d: &ddl::Ddl, sql: &str) -> String {
        let mapper = self.cfg.mapper.clone();
        let map = move |db: &str, t: &str| match mapper(db, t) {
            Some(n) => (n.db, n.table),
            None => (db.to_string(), t.to_string()),
        };
        let _ = &self.target;
        let text = self.rewrite_names(d, sql, map);
        match &self.cfg.ddl_target {
            Some((dialect, ctx)) => {
                let (out, notes) = crate::dialect::translate_statement(&text, *dialect, ctx);
                for n in notes {
                    tracing::info!(statement = %out, "DDL translated for the target: {n}");
                }
                out
            }
            None => text,
        }
    }

    fn rewrite_names(
        &self,
        d: &ddl::Ddl,
        sql: &str,
        map: impl Fn(&str, &str) -> (String, String),
    ) -> String {
        match d.kind {
            DdlKind::DropTable
                if d.names
                    .iter()
                    .any(|n| (self.cfg.mapper)(&n.db, &n.table).is_none()) =>
            {
                // Drop only the replicated tables.
                let names: Vec<String> = d
                    .names
                    .iter()
                    .filter_map(|n| (self.cfg.mapper)(&n.db, &n.table))
                    .map(|n| qualified(&n.db, &n.table))
                    .collect();
                format!("DROP TABLE IF EXISTS {}", names.join(", "))
            }
            _ => d.rewrite(sql, map),
        }
    }
}

/// Server errors that mean "this DDL already ran": table exists, unknown
/// table, duplicate column or key, cannot drop a missing column or key.
fn is_already_done(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(se) if matches!(se.code, 1050 | 1051 | 1060 | 1061 | 1091 | 1146 | 1826))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::consts::ColumnType;

    fn col(name: &str, literal: LiteralKind) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            ctype: ColumnType::MYSQL_TYPE_LONG,
            unsigned: false,
            literal,
            members: vec![],
            generated: false,
            pad_to: None,
        }
    }

    fn table(parallel_safe: bool) -> TableInfo {
        TableInfo {
            db: "d".into(),
            table: "t".into(),
            columns: vec![
                col("id", LiteralKind::Plain),
                col("v", LiteralKind::Text),
                col("b", LiteralKind::Binary),
            ],
            key: vec![0],
            parallel_safe,
            names_from: crate::binlog::NamesFrom::Binlog,
        }
    }

    #[test]
    fn literals_are_exact() {
        let c = col("x", LiteralKind::Text);
        let mut s = String::new();
        push_literal(&mut s, &Value::Bytes(b"it's \\".to_vec()), &c);
        push_literal(
            &mut s,
            &Value::Bytes(vec![0xff, 0]),
            &col("b", LiteralKind::Binary),
        );
        push_literal(&mut s, &Value::Date(2024, 1, 2, 3, 4, 5, 6), &c);
        push_literal(&mut s, &Value::Time(true, 1, 2, 3, 4, 5), &c);
        push_literal(&mut s, &Value::Double(-2.25e-300), &c);
        push_literal(
            &mut s,
            &Value::Bytes(vec![0xe9]),
            &col("l", LiteralKind::Charset("latin1".into())),
        );
        assert_eq!(s, "'it''s \\'X'ff00''2024-01-02 03:04:05.000006''-26:03:04.000005'-2.25e-300CONVERT(X'e9' USING latin1)");
    }

    #[test]
    fn compaction_keeps_the_net_effect() {
        let t = Arc::new(table(true));
        let target = Arc::new(TargetName {
            db: "x".into(),
            table: "y".into(),
            filter: None,
        });
        let row = |id: i64, v: &str| vec![Value::Int(id), Value::Bytes(v.into()), Value::NULL];
        let mut b = Buffer::default();
        let mut push = |prim| {
            b.push(Routed {
                table: t.clone(),
                target: target.clone(),
                prim,
            })
        };
        push(Prim::Put {
            row: row(1, "a"),
            fresh: true,
        });
        push(Prim::Put {
            row: row(1, "b"),
            fresh: false,
        });
        push(Prim::Put {
            row: row(2, "c"),
            fresh: true,
        });
        push(Prim::Delete {
            key: vec![Value::Int(2)],
        });
        push(Prim::Delete {
            key: vec![Value::Int(3)],
        });
        push(Prim::Put {
            row: row(4, "d"),
            fresh: false,
        });
        let s = b.take_statements();
        assert_eq!(
            s,
            vec![
                "DELETE FROM `x`.`y` WHERE `id` IN (3)".to_string(),
                "INSERT INTO `x`.`y` (`id`,`v`,`b`) VALUES (1,'b',NULL)".to_string(),
                "INSERT INTO `x`.`y` (`id`,`v`,`b`) VALUES (4,'d',NULL) ON DUPLICATE KEY UPDATE `id`=VALUES(`id`),`v`=VALUES(`v`),`b`=VALUES(`b`)".to_string(),
            ]
        );
    }

    #[test]
    fn unsafe_tables_keep_binlog_order() {
        let t = Arc::new(table(false));
        let target = Arc::new(TargetName {
            db: "x".into(),
            table: "y".into(),
            filter: None,
        });
        let mut b = Buffer::default();
        b.push(Routed {
            table: t.clone(),
            target: target.clone(),
            prim: Prim::Delete {
                key: vec![Value::Int(1)],
            },
        });
        b.push(Routed {
            table: t.clone(),
            target: target.clone(),
            prim: Prim::Delete {
                key: vec![Value::Int(2)],
            },
        });
        b.push(Routed {
            table: t.clone(),
            target: target.clone(),
            prim: Prim::Put {
                row: vec![Value::Int(1), Value::NULL, Value::NULL],
                fresh: true,
            },
        });
        let s = b.take_statements();
        assert_eq!(s.len(), 2);
        assert!(
            s[0].starts_with("DELETE") && s[0].ends_with("IN (1,2)"),
            "{s:?}"
        );
        assert!(
            s[1].starts_with("INSERT") && !s[1].contains("DUPLICATE"),
            "{s:?}"
        );
    }

    #[test]
    fn filter_statements_number_the_images_under_the_source_names() {
        let mut t = table(true);
        t.columns.push(ColumnInfo {
            ctype: ColumnType::MYSQL_TYPE_DATETIME2,
            ..col("at", LiteralKind::Plain)
        });
        t.columns.push(ColumnInfo {
            ctype: ColumnType::MYSQL_TYPE_NEWDECIMAL,
            ..col("amount", LiteralKind::Plain)
        });
        let a = vec![
            Value::Int(1),
            Value::Bytes(b"x'y".to_vec()),
            Value::Bytes(vec![0; 64]),
            Value::Date(2024, 5, 6, 7, 8, 9, 10),
            Value::Bytes(b"12.50".to_vec()),
        ];
        let b = vec![
            Value::Int(2),
            Value::NULL,
            Value::NULL,
            Value::NULL,
            Value::NULL,
        ];
        // Only the columns the filter names: `b` (a BLOB here) stays out.
        assert_eq!(
            filter_statements(&t, "Amount > 10 AND `at` > '2024-01-01' OR v = 'x''y'", &[(3, &a), (7, &b)]),
            vec![
                "SELECT `__ferry_row` FROM (SELECT 3 AS `__ferry_row`, 'x''y' AS `v`, \
                 CAST('2024-05-06 07:08:09.000010' AS DATETIME(6)) AS `at`, CAST('12.50' AS DECIMAL(65,30)) AS `amount` \
                 UNION ALL SELECT 7 AS `__ferry_row`, NULL AS `v`, NULL AS `at`, NULL AS `amount`) \
                 AS `__ferry_images` WHERE (Amount > 10 AND `at` > '2024-01-01' OR v = 'x''y')"
                    .to_string()
            ]
        );
        // Split by rows, and by bytes.
        let many: Vec<(usize, &[Value])> =
            (0..FILTER_ROWS + 1).map(|i| (i, a.as_slice())).collect();
        assert_eq!(filter_statements(&t, "v <> ''", &many).len(), 2);
        let big = vec![
            Value::Int(1),
            Value::Bytes(vec![b'v'; MAX_STATEMENT / 2]),
            Value::NULL,
            Value::NULL,
            Value::NULL,
        ];
        let two: Vec<(usize, &[Value])> = (0..3).map(|i| (i, big.as_slice())).collect();
        let out = filter_statements(&t, "v <> ''", &two);
        assert_eq!(
            out.len(),
            2,
            "a statement ends once it passes {MAX_STATEMENT} bytes"
        );
        assert!(out.iter().all(|q| q.ends_with("WHERE (v <> '')")));
    }

    #[test]
    fn a_put_outside_the_filter_deletes_its_key() {
        for parallel_safe in [true, false] {
            let t = Arc::new(table(parallel_safe));
            let target = Arc::new(TargetName {
                db: "x".into(),
                table: "y".into(),
                filter: Some("v = 'in'".into()),
            });
            let mut b = Buffer::default();
            for (id, v, fresh) in [(1, "in", false), (2, "out", false), (3, "out", true)] {
                b.push(Routed {
                    table: t.clone(),
                    target: target.clone(),
                    prim: Prim::Put {
                        row: vec![Value::Int(id), Value::Bytes(v.into()), Value::NULL],
                        fresh,
                    },
                });
            }
            let tb = &mut b.tables[0];
            assert_eq!(
                tb.puts().iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                vec![0, 1, 2]
            );
            tb.put_outside_filter(1);
            tb.put_outside_filter(2);
            let s = b.take_statements();
            // Row 2 may be on the target from before: deleted. Row 3 was a fresh
            // insert: nothing to delete where the net effect is known.
            let deletes: Vec<&String> = s.iter().filter(|q| q.starts_with("DELETE")).collect();
            assert!(deletes.iter().any(|q| q.contains("(2")), "{s:?}");
            if parallel_safe {
                assert!(!deletes.iter().any(|q| q.contains('3')), "{s:?}");
            }
            let inserts: Vec<&String> = s.iter().filter(|q| q.starts_with("INSERT")).collect();
            assert_eq!(inserts.len(), 1, "{s:?}");
            assert!(inserts[0].contains("(1,'in',NULL)") && !inserts[0].contains("'out'"));
        }
    }

    #[test]
    fn failpoints_fire_on_the_nth_hit() {
        set_failpoint("unit.fp", Some((FailAction::Error, 2)));
        assert!(failpoint("unit.fp").is_ok());
        assert!(failpoint("unit.fp").is_err());
        assert!(failpoint("unit.fp").is_ok());
    }
}

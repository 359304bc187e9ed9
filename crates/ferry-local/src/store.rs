//! The SQLite task store: one file (`<state dir>/ferry.db`), one table
//! `items(pk, sk, version, data)` keyed by `(pk, sk)`.
//!
//! Invariant: every conditional write reads and writes inside one
//! `BEGIN IMMEDIATE` transaction, so its condition and its effect are atomic
//! even when several processes use the same file (WAL journal, a busy timeout
//! instead of immediate `SQLITE_BUSY`). `version` starts at 1 and grows by one
//! on every write; `query` orders by `sk` in byte order, as DynamoDB does.
//!
//! Calls never block an async worker unannounced: on a multi-threaded runtime
//! they run in place through `tokio::task::block_in_place` (the worker hands
//! its other tasks to another thread while SQLite runs), elsewhere on tokio's
//! blocking pool. In place because a call takes tens of microseconds and the
//! hop to a pool thread and back cost more: a `ferry verify --changed` of 200
//! chunks (600 store calls) spent a third of its CPU switching threads, and
//! took 132-140 ms through the pool against 99-104 ms in place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::store::{Cond, Item, ItemStore};
use ferry_core::FerryError;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use serde_json::Value;

/// The file name of the store inside the state directory.
pub const DB_FILE: &str = "ferry.db";

/// How long a write waits for another process's transaction before it reports `Ferry.Transient`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID";

/// An [`ItemStore`] in a SQLite file. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Open (and create if needed) the store in `state_dir` (`<state_dir>/ferry.db`).
    pub fn open_dir(state_dir: &Path) -> Result<SqliteStore, FerryError> {
        std::fs::create_dir_all(state_dir).map_err(|e| {
            FerryError::Store(format!(
                "cannot create the state directory {}: {e}. Pass a writable directory with --state-dir \
                 (or FERRY_STATE_DIR).",
                state_dir.display()
            ))
        })?;
        SqliteStore::open(&state_dir.join(DB_FILE))
    }

    /// Open (and create if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, FerryError> {
        let conn = Connection::open(path).map_err(|e| store_error(path, "open", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| store_error(path, "configure", e))?;
        wal(&conn).map_err(|e| store_error(path, "switch to WAL", e))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL;")
            .and_then(|_| conn.execute_batch(SCHEMA))
            .map_err(|e| store_error(path, "create the items table in", e))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every task id in the store, sorted (the console's task list).
    pub async fn task_ids(&self) -> Result<Vec<String>, FerryError> {
        self.with_conn("list the tasks of", |conn| {
            let mut stmt = conn.prepare(
                "SELECT pk FROM items WHERE sk = 'meta' AND pk LIKE 'task#%' ORDER BY pk",
            )?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|r| r.map(|pk| pk["task#".len()..].to_string()))
                .collect()
        })
        .await
    }

    /// Run `f` with the connection (see the module comment for where).
    async fn with_conn<T, F>(&self, what: &'static str, f: F) -> Result<T, FerryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.with_conn_then(what, f, Ok).await
    }

    /// [`SqliteStore::with_conn`], then `then` on what `f` read, in the same
    /// call but with the connection free again (parsing a record's JSON need
    /// not hold up the other callers of the one connection).
    async fn with_conn_then<R, T, F, G>(
        &self,
        what: &'static str,
        f: F,
        then: G,
    ) -> Result<T, FerryError>
    where
        R: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
        G: FnOnce(R) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = Arc::clone(&self.path);
        let call = move || {
            let read = {
                // A panic while the lock was held cannot leave a half-done write: SQLite rolls
                // the transaction back when it is dropped. The connection itself is still usable.
                let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                f(&mut guard)
            };
            read.and_then(then).map_err(|e| store_error(&path, what, e))
        };
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        if matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
            return tokio::task::block_in_place(call);
        }
        tokio::task::spawn_blocking(call).await.map_err(|e| {
            FerryError::Internal(format!("task store call ({what}) did not complete: {e}"))
        })?
    }
}

/// Put the file in WAL mode (it stays so): once, when the file is new.
///
/// SQLite may answer this as busy at once, without waiting out the busy
/// timeout, while another process opens the same file: in a test, a `ferry
/// run` restarted after a kill failed so while the test opened the store every
/// 20 ms to count chunks. A file already in WAL mode is not switched again
/// (switching takes the write lock), and a busy answer is tried again until
/// the busy timeout.
fn wal(conn: &Connection) -> rusqlite::Result<()> {
    // journal_mode returns a row, so it is read rather than executed.
    let mode = |sql| conn.query_row(sql, [], |r| r.get::<_, String>(0));
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let tried = mode("PRAGMA journal_mode").and_then(|m| match m.eq_ignore_ascii_case("wal") {
            true => Ok(m),
            false => mode("PRAGMA journal_mode = WAL"),
        });
        match tried {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.map(|_| ()),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked)
    )
}

/// A SQLite error as a Ferry error naming the file. Lock contention is transient.
fn store_error(path: &Path, what: &str, e: rusqlite::Error) -> FerryError {
    let busy = is_busy(&e);
    let msg = format!("task store {}: cannot {what}: {e}", path.display());
    if busy {
        FerryError::Transient(format!(
            "{msg}; another process holds the file's write lock, retry"
        ))
    } else {
        FerryError::Store(format!(
            "{msg}. Check that the file is writable and not damaged (or point --state-dir elsewhere)."
        ))
    }
}

fn parse_item(pk: String, sk: String, version: i64, data: String) -> rusqlite::Result<Item> {
    let data: Value = serde_json::from_str(&data).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Item {
        pk,
        sk,
        version: version as u64,
        data,
    })
}

/// The conditional write, inside one immediate transaction.
fn put_tx(
    conn: &mut Connection,
    pk: &str,
    sk: &str,
    data: &str,
    cond: Cond,
) -> rusqlite::Result<Option<u64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: Option<i64> = tx
        .prepare_cached("SELECT version FROM items WHERE pk = ?1 AND sk = ?2")?
        .query_row(params![pk, sk], |r| r.get(0))
        .optional()?;
    let holds = match (cond, current) {
        (Cond::Any, _) => true,
        (Cond::Absent, cur) => cur.is_none(),
        (Cond::Version(want), Some(cur)) => cur as u64 == want,
        (Cond::Version(_), None) => false,
    };
    if !holds {
        return Ok(None);
    }
    let next = current.unwrap_or(0) + 1;
    tx.prepare_cached(
        "INSERT INTO items (pk, sk, version, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (pk, sk) DO UPDATE SET version = excluded.version, data = excluded.data",
    )?
    .execute(params![pk, sk, next, data])?;
    tx.commit()?;
    Ok(Some(next as u64))
}

/// The rows of a prefix query, unparsed: `(pk, sk, version, data)`.
type RawItem = (String, String, i64, String);

fn query_prefix(conn: &mut Connection, pk: &str, prefix: &str) -> rusqlite::Result<Vec<RawItem>> {
    // `sk >= prefix` lets the primary key seek to the first match; the prefix test itself is
    // on bytes (LIKE would treat `_` and `%` as wildcards and ignore case).
    let mut stmt = conn.prepare_cached(
        "SELECT pk, sk, version, data FROM items
         WHERE pk = ?1 AND sk >= ?2 AND substr(CAST(sk AS BLOB), 1, length(CAST(?2 AS BLOB))) = CAST(?2 AS BLOB)
         ORDER BY sk",
    )?;
    let rows = stmt.query_map(params![pk, prefix], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.collect()
}

impl ItemStore for SqliteStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, FerryError> {
        let (pk, sk) = (pk.to_string(), sk.to_string());
        self.with_conn_then(
            "read an item from",
            move |c| {
                let row = c
                    .prepare_cached("SELECT version, data FROM items WHERE pk = ?1 AND sk = ?2")?
                    .query_row(params![pk, sk], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()?;
                Ok((row, pk, sk))
            },
            |(row, pk, sk)| {
                row.map(|(version, data)| parse_item(pk, sk, version, data))
                    .transpose()
            },
        )
        .await
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, FerryError> {
        let (pk, prefix) = (pk.to_string(), sk_prefix.to_string());
        self.with_conn_then(
            "query",
            move |c| query_prefix(c, &pk, &prefix),
            |rows| {
                rows.into_iter()
                    .map(|(pk, sk, version, data)| parse_item(pk, sk, version, data))
                    .collect()
            },
        )
        .await
    }

    async fn put(
        &self,
        pk: &str,
        sk: &str,
        data: &Value,
        cond: Cond,
    ) -> Result<Option<u64>, FerryError> {
        let (pk, sk, text) = (pk.to_string(), sk.to_string(), data.to_string());
        self.with_conn("write an item to", move |c| {
            put_tx(c, &pk, &sk, &text, cond)
        })
        .await
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), FerryError> {
        let (pk, sk) = (pk.to_string(), sk.to_string());
        self.with_conn("delete an item from", move |c| {
            c.execute(
                "DELETE FROM items WHERE pk = ?1 AND sk = ?2",
                params![pk, sk],
            )
            .map(|_| ())
        })
        .await
    }
}

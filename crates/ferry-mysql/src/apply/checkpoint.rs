//! Link checkpoints: the per-worker checkpoint rows on the target, committed with the data they cover.

use super::*;

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
pub(super) const INCARNATION_COLUMN: &str = "incarnation VARCHAR(64) NULL";

impl Link {
    /// `AND incarnation = ?` for this link's writes, or nothing without an incarnation.
    pub(super) fn incarnation_cond(&self) -> String {
        match &self.incarnation {
            Some(i) => format!(" AND incarnation = {}", crate::conn::quote_str(i)),
            None => String::new(),
        }
    }

    pub(super) fn foreign(&self, rows: &[WorkerCheckpoint]) -> Option<String> {
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

    pub(super) fn table(&self) -> String {
        qualified(&self.meta_schema, "checkpoints")
    }

    pub(super) fn fenced(&self, what: &str) -> FerryError {
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

    pub(super) async fn claim_in_txn(
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
    pub(super) async fn advance(
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
    pub(super) async fn mark_ddl(&self, conn: &mut Conn, marker: &str) -> Result<(), FerryError> {
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

pub(super) async fn has_incarnation_column(
    conn: &mut Conn,
    meta_schema: &str,
) -> Result<bool, FerryError> {
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
    let opts = OptsBuilder::from_opts(target.opts())
        .client_found_rows(true)
        .stmt_cache_size(STATEMENT_CACHE);
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

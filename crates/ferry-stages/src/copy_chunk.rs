//! The `copy-chunk` stage: the full copy, one leased chunk at a time.
//!
//! Invariant: a chunk is marked done only after [`ferry_mysql::copy::copy_chunk`]
//! committed its rows on the target, and only by the worker still holding its
//! lease (the store refuses a stale owner). A worker that crashes, or loses its
//! lease, leaves the chunk to be claimed again once the lease expires; copying
//! it again is harmless because a chunk copy is idempotent. A table becomes
//! `copied` (and its deferred indexes are built) only once every one of its
//! chunks is done, and `copy_finished` is recorded only when no chunk is left
//! and none failed: the source position then is past every chunk's snapshot,
//! so incremental apply is idempotent up to it.
//!
//! A chunk the target had no memory for (OceanBase's 4030) is retried after a
//! longer pause, and for a minute fewer workers claim chunks (see
//! [`MemoryBackoff`]).
//!
//! Input `{"task_id","worker"}`: claim -> copy -> finish until no chunk is
//! claimable, the deadline (minus a margin) comes, or the operator asked to
//! stop (`ferry stop`: checked before each claim, so a stop takes effect after
//! the chunks in flight); output `{"task_id","copied","rows","remaining",
//! "stop_requested"}`. Input `{"task_id","action":"summary"}`: output
//! `{"task_id","remaining","pending","running","done","failed","total","rows",
//! "stop_requested"}` (`running`: chunks another worker leases, e.g. one whose
//! Lambda died; the state machine waits for their leases rather than spin).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_core::model::{ChunkRecord, ChunkState, SnapshotPoint, TablePhase, TableRecord};
use ferry_core::samples::{Sample, Series};
use ferry_core::secret::SecretSource;
use ferry_core::store::{now_ms, ItemStore, Repo};
use ferry_core::task::{CopyWrite, TaskOptions, TaskSpec};
use ferry_core::FerryError;
use ferry_mysql::conn::classify;
use ferry_mysql::copy::{
    copy_chunk, describe_range, load_data_refusal, source_allows_invalid_dates, utf8_text_only,
    CopyOptions, CopyStats, RateLimiter, WriteMethod,
};
use ferry_mysql::schema::{binlog_position, read_source_table, TableInfo};
use mysql_async::prelude::*;
use mysql_async::{Conn, Pool};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::deadline::stop_time;
use crate::plan::{deferred_key, DeferredDdl};
use crate::{task_id, StageEnv};

/// Bytes per write batch (the row limit is the task's `batch_rows`).
const BATCH_BYTES: usize = 4 << 20;

/// One copy worker of a task: an item of the plan's `workers` (the state
/// machine's Map calls the stage once per item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyWorker {
    pub task_id: String,
    pub worker: u64,
}

/// Input of the stage: a worker's call, or the copy's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyInput {
    /// `{"task_id","worker"}`: copy chunks until none is left or the deadline.
    /// `worker` (a number or a string, default `0`) names the lease owner.
    Work { task_id: String, worker: String },
    /// `{"task_id","action":"summary"}`.
    Summary { task_id: String },
}

impl CopyInput {
    pub fn from_json(input: &Value) -> Result<Self, FerryError> {
        let task_id = task_id(input)?;
        if input.get("action").and_then(Value::as_str) == Some("summary") {
            return Ok(CopyInput::Summary { task_id });
        }
        let worker = match input.get("worker") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "0".to_string(),
        };
        Ok(CopyInput::Work { task_id, worker })
    }
}

/// Output of a worker's call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOutput {
    pub task_id: String,
    /// Chunks and rows this call copied.
    pub copied: u64,
    pub rows: u64,
    /// Chunks pending or leased (by any worker).
    pub remaining: u64,
    pub stop_requested: bool,
}

/// Output of the summary: the task's chunks by state (`running`: leased by
/// another worker, perhaps one whose Lambda died).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySummary {
    pub task_id: String,
    pub remaining: u64,
    pub pending: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub total: u64,
    pub rows: u64,
    pub stop_requested: bool,
}

/// The stage as the state machine calls it: JSON in, JSON out.
pub async fn run<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    input: Value,
    deadline: Instant,
) -> Result<Value, FerryError> {
    match CopyInput::from_json(&input)? {
        CopyInput::Summary { task_id } => crate::to_output(&summary(env, &task_id).await?),
        CopyInput::Work { task_id, worker } => {
            crate::to_output(&work(env, &task_id, &worker, deadline).await?)
        }
    }
}

/// One worker's call: claim, copy and finish chunks until none is claimable,
/// the deadline, or an operator's stop.
pub async fn work<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    task_id: &str,
    worker: &str,
    deadline: Instant,
) -> Result<CopyOutput, FerryError> {
    let owner = format!("{}#{worker}", env.worker_id);
    let mut w = Worker::start(env, task_id, owner, deadline).await?;
    let result = w.run().await;
    w.close().await;
    let (copied, rows) = result?;
    let s = env.repo.chunk_summary(task_id).await?;
    let stop = env.repo.flags(task_id).await?.stop_requested;
    Ok(CopyOutput {
        task_id: task_id.to_string(),
        copied,
        rows,
        remaining: s.pending + s.running,
        stop_requested: stop,
    })
}

/// One stage call's worker: its pools, connections, lease owner and caches.
struct Worker<'a, S, K> {
    env: &'a StageEnv<S, K>,
    task_id: String,
    owner: String,
    spec: TaskSpec,
    stop_at: Instant,
    src_pool: Pool,
    dst_pool: Pool,
    src: Option<Conn>,
    dst: Option<Conn>,
    limiter: RateLimiter,
    copy: CopyOptions,
    /// By `db.table` (source names), read once per worker.
    tables: HashMap<String, CopyTable>,
    marked_copying: HashSet<String>,
}

/// A source table as this worker copies it.
#[derive(Clone)]
struct CopyTable {
    /// The columns both sides have.
    info: TableInfo,
    /// The target table's text columns are all UTF-8: loaded from a binary
    /// stream where `raw_binary` holds (see `CopyOptions::binary_stream`).
    utf8_target: bool,
}

impl<'a, S: ItemStore, K: SecretSource> Worker<'a, S, K> {
    async fn start(
        env: &'a StageEnv<S, K>,
        task_id: &str,
        owner: String,
        deadline: Instant,
    ) -> Result<Self, FerryError> {
        let task = env.repo.task(task_id).await?;
        let (src_ep, dst_ep) = env.endpoints(&task.spec).await?;
        let mut w = Worker {
            env,
            task_id: task_id.to_string(),
            owner,
            limiter: {
                let o = &task.spec.options;
                let (rows, bytes) = worker_limits(o, o.copy_workers(None));
                RateLimiter::new(rows, bytes)
            },
            copy: CopyOptions {
                batch_bytes: BATCH_BYTES,
                target_binlog: task.spec.options.target_binlog,
                ..CopyOptions::default()
            },
            spec: task.spec,
            stop_at: stop_time(deadline),
            src_pool: src_ep.pool(2),
            dst_pool: dst_ep.pool(2),
            src: None,
            dst: None,
            tables: HashMap::new(),
            marked_copying: HashSet::new(),
        };
        let src = w.source().await?;
        w.copy.allow_invalid_dates = source_allows_invalid_dates(src).await?;
        let dst = w.target().await?;
        let caps = crate::plan::target_caps(&env.repo, task_id, dst).await?;
        let oceanbase = caps.is_oceanbase();
        // OceanBase's LOAD DATA truncates silently outside strict mode (see CopyOptions::strict).
        w.copy.strict = oceanbase;
        w.copy.oceanbase = oceanbase;
        // Binary columns as raw bytes where that is measured exact (see CopyOptions::raw_binary).
        w.copy.raw_binary = !oceanbase && caps.is_mariadb();
        let wanted = match w.spec.options.copy_write {
            CopyWrite::Auto if oceanbase => CopyWrite::Insert,
            CopyWrite::Auto => CopyWrite::LoadData,
            chosen => chosen,
        };
        let dst = w.target().await?;
        w.copy.method = match wanted {
            CopyWrite::LoadData => match load_data_refusal(dst, oceanbase).await {
                None => WriteMethod::LoadData,
                Some(why) => {
                    tracing::warn!("{why}: the copy writes with INSERT (slower; see the precheck's target.load_data)");
                    WriteMethod::Insert
                }
            },
            CopyWrite::Insert | CopyWrite::Auto => WriteMethod::Insert,
        };
        Ok(w)
    }

    async fn source(&mut self) -> Result<&mut Conn, FerryError> {
        if self.src.is_none() {
            let c = self
                .src_pool
                .get_conn()
                .await
                .map_err(|e| classify(e, "source: connecting"))?;
            self.src = Some(c);
        }
        self.src
            .as_mut()
            .ok_or_else(|| FerryError::Internal("no source connection".into()))
    }

    async fn target(&mut self) -> Result<&mut Conn, FerryError> {
        if self.dst.is_none() {
            let c = self
                .dst_pool
                .get_conn()
                .await
                .map_err(|e| classify(e, "target: connecting"))?;
            self.dst = Some(c);
        }
        self.dst
            .as_mut()
            .ok_or_else(|| FerryError::Internal("no target connection".into()))
    }

    /// Drop both connections without returning them to the pool: after a
    /// failed or abandoned copy they may be mid-statement.
    async fn discard_connections(&mut self) {
        for c in [self.src.take(), self.dst.take()].into_iter().flatten() {
            let _ = c.disconnect().await;
        }
    }

    /// Close the connections rather than hand them back to the pool, which
    /// would reset them and run the session setup again only to quit them
    /// (as the verify's slots do).
    async fn close(mut self) {
        self.discard_connections().await;
        let _ = self.src_pool.disconnect().await;
        let _ = self.dst_pool.disconnect().await;
    }

    /// Claim and copy chunks until none is left or time is up: (chunks copied, rows).
    async fn run(&mut self) -> Result<(u64, u64), FerryError> {
        let (mut copied, mut rows) = (0, 0);
        while Instant::now() < self.stop_at {
            if self.env.repo.flags(&self.task_id).await?.stop_requested {
                tracing::info!(task = %self.task_id, "stop requested: no further chunk is claimed");
                break;
            }
            let task = self.env.repo.task(&self.task_id).await?;
            let workers = copying_workers(&self.env.repo, &self.task_id, &self.owner).await?;
            self.apply_options(&task.spec, workers.live);
            let backoff = self
                .env
                .repo
                .get_record::<MemoryBackoff>(&self.task_id, BACKOFF_SK)
                .await?;
            if !may_write(backoff.as_ref(), workers.rank, now_ms()) {
                // Another worker writes alone while the target frees memory.
                let left = self.stop_at.saturating_duration_since(Instant::now());
                tokio::time::sleep(OPTIONS_EVERY.min(left)).await;
                continue;
            }
            let lease_ms = task.spec.options.lease_seconds * 1000;
            let Some(chunk) = self
                .env
                .repo
                .claim_chunk_spread(&self.task_id, &self.owner, lease_ms)
                .await?
            else {
                break;
            };
            match self.copy_one(&chunk, lease_ms).await {
                Ok(stats) => {
                    if self.finish(&chunk, stats).await? {
                        copied += 1;
                        rows += stats.rows;
                    }
                }
                Err(e) => self.failed(&chunk, e).await?,
            }
        }
        end_beat(&self.env.repo, &self.task_id, &self.owner).await;
        Ok((copied, rows))
    }

    /// Options an operator may change while the copy runs (rate limits, batch size).
    fn apply_options(&mut self, spec: &TaskSpec, workers: u32) {
        let o = &spec.options;
        let (rows, bytes) = worker_limits(o, workers);
        self.limiter.set_limits(rows, bytes);
        self.copy.batch_rows = o.batch_rows.max(1) as usize;
        self.spec.options = o.clone();
    }

    async fn table(&mut self, db: &str, name: &str) -> Result<CopyTable, FerryError> {
        let key = format!("{db}.{name}");
        if let Some(t) = self.tables.get(&key) {
            return Ok(t.clone());
        }
        let spec = self.spec.clone();
        let src = self.source().await?;
        let mut info = read_source_table(src, &spec, db, name).await?.ok_or_else(|| {
            FerryError::SchemaIncompatible(format!(
                "source table {key} no longer exists, but the task has chunks of it. Restore it, or start a new \
                 task without it."
            ))
        })?;
        // A column the source gained after the snapshot point (an ALTER while the copy ran, or
        // while Ferry was down) is not on the target yet: the sync replays the ALTER from the
        // snapshot point, then every later change of the column's values. Copy the columns both
        // sides have; the rest arrive by the binlog.
        let (tdb, ttable) = spec.target_name(db, name);
        let dst = self.target().await?;
        let mut utf8_target = false;
        if let Some(target) = ferry_mysql::schema::read_table(dst, &tdb, &ttable).await? {
            utf8_target = utf8_text_only(&target.columns);
            let before = info.columns.len();
            info.columns.retain(|c| {
                target
                    .columns
                    .iter()
                    .any(|t| t.name.eq_ignore_ascii_case(&c.name))
            });
            if info.columns.len() < before {
                tracing::info!(
                    table = %key,
                    left = before - info.columns.len(),
                    "the source has columns the target table lacks (added after the snapshot point): they arrive by the binlog"
                );
            }
        }
        let table = CopyTable { info, utf8_target };
        self.tables.insert(key, table.clone());
        Ok(table)
    }

    /// Copy a claimed chunk, renewing its lease while the copy runs.
    async fn copy_one(
        &mut self,
        chunk: &ChunkRecord,
        lease_ms: u64,
    ) -> Result<CopyStats, FerryError> {
        let CopyTable {
            info: table,
            utf8_target,
        } = self.table(&chunk.source_db, &chunk.source_table).await?;
        self.mark_copying(&chunk.table_name()).await?;
        let (tdb, ttable) = self.spec.target_name(&table.db, &table.name);
        let filter = self.spec.filter(&table.db, &table.name).map(str::to_string);
        let opts = CopyOptions {
            binary_stream: self.copy.raw_binary && utf8_target,
            ..self.copy.clone()
        };
        self.source().await?;
        self.target().await?;
        let (Some(src), Some(dst)) = (self.src.as_mut(), self.dst.as_mut()) else {
            return Err(FerryError::Internal("connections vanished".into()));
        };
        let copy = copy_chunk(
            src,
            dst,
            &table,
            (&tdb, &ttable),
            chunk,
            filter.as_deref(),
            &opts,
            &self.limiter,
        );
        let renew = renew_lease(
            &self.env.repo,
            &self.task_id,
            &chunk.chunk_id,
            &self.owner,
            lease_ms,
            &self.limiter,
        );
        tokio::select! {
            r = copy => r,
            e = renew => Err(e),
        }
    }

    async fn mark_copying(&mut self, table: &str) -> Result<(), FerryError> {
        if self.marked_copying.insert(table.to_string()) {
            self.env
                .repo
                .update_table(&self.task_id, table, |t| {
                    if t.phase == TablePhase::Planned {
                        t.phase = TablePhase::Copying;
                    }
                })
                .await?;
        }
        Ok(())
    }

    /// Mark a copied chunk done; false if the lease was lost meanwhile (another worker redoes it).
    async fn finish(&mut self, chunk: &ChunkRecord, stats: CopyStats) -> Result<bool, FerryError> {
        let done = self.env.repo.finish_chunk(
            &self.task_id,
            &chunk.chunk_id,
            &self.owner,
            stats.rows,
            stats.bytes,
        );
        match done.await {
            Ok(()) => {}
            Err(FerryError::Fenced(m)) => {
                tracing::warn!(chunk = %chunk.chunk_id, "{m}");
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        tracing::debug!(chunk = %chunk.chunk_id, rows = stats.rows, "chunk copied");
        // The console's rows/s chart; a lost sample is no reason to fail a copied chunk.
        let sample = Sample {
            at_ms: now_ms(),
            rows: stats.rows,
            lag_ms: None,
        };
        if let Err(e) = self
            .env
            .repo
            .add_sample(&self.task_id, Series::Copy, sample)
            .await
        {
            tracing::debug!(error = %e, "copy sample not recorded");
        }
        self.target().await?;
        let dst = self
            .dst
            .as_mut()
            .ok_or_else(|| FerryError::Internal("no target connection".into()))?;
        finalize_table_if_done(&self.env.repo, &self.task_id, dst, &chunk.table_name()).await?;
        Ok(true)
    }

    /// Handle a failed copy: give the chunk back (attempts counted) and decide whether to go on.
    async fn failed(&mut self, chunk: &ChunkRecord, err: FerryError) -> Result<(), FerryError> {
        self.discard_connections().await;
        if let FerryError::Fenced(m) = &err {
            tracing::warn!(chunk = %chunk.chunk_id, "{m}");
            return Ok(());
        }
        let max = self.spec.options.max_chunk_attempts;
        let rec = match self
            .env
            .repo
            .fail_chunk(
                &self.task_id,
                &chunk.chunk_id,
                &self.owner,
                err.message(),
                max,
            )
            .await
        {
            Ok(rec) => rec,
            Err(FerryError::Fenced(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if rec.state == ChunkState::Failed {
            return Err(FerryError::ChunkFailed(format!(
                "chunk {} of {} (key range {}) failed {} times; last error: {}. Fix the cause, then retry the \
                 failed chunks (ferry retry) or rerun the task.",
                chunk.chunk_id,
                chunk.table_name(),
                describe_range(chunk),
                rec.attempts,
                err.message()
            )));
        }
        if !err.is_transient() {
            return Err(err);
        }
        tracing::warn!(chunk = %chunk.chunk_id, attempt = rec.attempts, error = %err, "chunk failed; it will be retried");
        let out_of_memory = ferry_mysql::conn::waits_for_memory(&err);
        if out_of_memory {
            // A back-off not recorded only leaves every worker writing: the retry still comes.
            if let Err(e) = self.back_off().await {
                tracing::warn!(error = %e, "could not record the copy's memory back-off");
            }
        }
        let pause = retry_pause(out_of_memory, rec.attempts);
        tokio::time::sleep(pause.min(self.stop_at.saturating_duration_since(Instant::now()))).await;
        Ok(())
    }

    /// The target ran out of memory for a chunk: fewer workers write until it
    /// has had time to free some (see [`MemoryBackoff`]).
    async fn back_off(&mut self) -> Result<(), FerryError> {
        let live = copying_workers(&self.env.repo, &self.task_id, &self.owner)
            .await?
            .live;
        let now = now_ms();
        let set = self
            .env
            .repo
            .swap_record(&self.task_id, BACKOFF_SK, |cur: Option<MemoryBackoff>| {
                Some(tighten(cur.as_ref(), live, now))
            })
            .await?;
        if let Some(b) = set {
            tracing::warn!(
                task = %self.task_id,
                writers = b.writers,
                workers = live,
                seconds = BACKOFF.as_secs(),
                "the target is short of memory: {} of {live} copy worker(s) write until {} s pass with no memory error",
                b.writers,
                BACKOFF.as_secs()
            );
        }
        Ok(())
    }
}

/// How long a worker waits before its chunk's next attempt, after `attempts`
/// failed ones: 0.5, 1, 2, 4 s... after a lost connection, and eight times as
/// long (4, 8, 16, 32 s: a minute over the default five attempts) when the
/// target had no memory for the writes. OceanBase frees its MemStore by
/// freezing and dumping it on its own schedule: measured on seekdb with a
/// 256 MB MemStore, a copy of 1.05M rows in 10,000-row chunks met 4030
/// 4-30 times a run, and the short waits let a chunk use up its attempts in
/// 6 s in one run of two.
fn retry_pause(out_of_memory: bool, attempts: u32) -> Duration {
    let base_ms: u64 = if out_of_memory { 2_000 } else { 250 };
    Duration::from_millis(base_ms << attempts.min(6))
}

/// Extend a chunk's lease every third of its length; returns only when the lease is lost.
/// The rate limits of one worker: the task's limits (`options.max_rows_per_second`,
/// `max_bytes_per_second`) shared equally among the `workers` copying now
/// (see [`copying_workers`]; the workers count themselves before their first chunk).
pub fn worker_limits(o: &TaskOptions, workers: u32) -> (u64, u64) {
    let n = u64::from(workers.max(1));
    let share = |limit: u64| if limit == 0 { 0 } else { limit.div_ceil(n) };
    (share(o.max_rows_per_second), share(o.max_bytes_per_second))
}

/// Record prefix of the copying workers' beats.
const BEAT_PREFIX: &str = "copyworker#";

/// A copying worker's beat: it counts among the workers sharing the rate
/// limit until `until_ms` (three refreshes from its last beat).
#[derive(Debug, Serialize, Deserialize)]
struct CopyBeat {
    until_ms: u64,
}

/// The workers copying now, as one of them sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copying {
    /// Workers with an unexpired beat (at least the one asking).
    pub live: u32,
    /// The asking worker's place among them in key order (0 first): the
    /// first [`MemoryBackoff::writers`] write while a memory back-off lasts.
    pub rank: u32,
}

/// Beat for `owner` and count the workers copying now (their beats unexpired;
/// at least this one). A worker that crashed counts until its beat expires,
/// which only slows the others down for a few seconds.
pub async fn copying_workers<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    owner: &str,
) -> Result<Copying, FerryError> {
    let now = now_ms();
    let until_ms = now + 3 * OPTIONS_EVERY.as_millis() as u64;
    let mine = format!("{BEAT_PREFIX}{owner}");
    repo.put_record(task_id, &mine, &CopyBeat { until_ms })
        .await?;
    let beats = repo.records::<CopyBeat>(task_id, BEAT_PREFIX).await?;
    let live: Vec<&str> = beats
        .iter()
        .filter(|(_, b)| b.until_ms > now)
        .map(|(k, _)| k.as_str())
        .collect();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Copying {
        live: count(live.len()).max(1),
        rank: count(live.iter().filter(|k| **k < mine.as_str()).count()),
    })
}

/// Record of the copy's memory back-off.
pub const BACKOFF_SK: &str = "copybackoff";

/// How long fewer workers write after the target's last memory error.
const BACKOFF: Duration = Duration::from_secs(60);

/// The copy's back-off after the target ran out of memory for a chunk
/// (OceanBase's 4030/4013: its MemStore is full until it freezes and dumps
/// it, on its own schedule). Until `until_ms` only the first `writers`
/// copying workers (by [`Copying::rank`]) claim chunks; the others wait, so
/// fewer chunk transactions hold MemStore at once. Each memory error halves
/// the writers (at least one stays) and starts the back-off again; when it
/// ends every worker writes again. Measured on seekdb with a 256 MB MemStore,
/// 1.05M rows in 50,000-row chunks with 8 workers: without it 3 runs of 3
/// stopped once a chunk had used up its attempts; with it 3 of 3 finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBackoff {
    pub writers: u32,
    pub until_ms: u64,
}

/// The back-off after a memory error seen with `live` workers copying: half
/// the writers allowed now (all the live ones when no back-off is on), at
/// least one, until [`BACKOFF`] from `now`.
fn tighten(cur: Option<&MemoryBackoff>, live: u32, now: u64) -> MemoryBackoff {
    let from = match cur {
        Some(b) if b.until_ms > now => b.writers.min(live),
        _ => live,
    };
    MemoryBackoff {
        writers: (from / 2).max(1),
        until_ms: now + BACKOFF.as_millis() as u64,
    }
}

/// Whether the worker of `rank` may claim a chunk at `now`.
fn may_write(backoff: Option<&MemoryBackoff>, rank: u32, now: u64) -> bool {
    backoff.is_none_or(|b| b.until_ms <= now || rank < b.writers)
}

/// This worker copies no more: the others may take its share at once.
async fn end_beat<S: ItemStore>(repo: &Repo<S>, task_id: &str, owner: &str) {
    if let Err(e) = repo
        .delete_record(task_id, &format!("{BEAT_PREFIX}{owner}"))
        .await
    {
        tracing::warn!(error = %e, "could not remove this worker's copy beat; it expires in seconds");
    }
}

/// How often a copying worker reads the task's rate limits again.
const OPTIONS_EVERY: Duration = Duration::from_secs(2);

/// While a chunk copies: renew its lease every third of the lease, and apply a
/// changed rate limit, or a changed number of copying workers, within [`OPTIONS_EVERY`]. Returns only on an error that
/// ends the copy (the lease was taken over).
async fn renew_lease<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    chunk_id: &str,
    owner: &str,
    lease_ms: u64,
    limiter: &RateLimiter,
) -> FerryError {
    let every = Duration::from_millis((lease_ms / 3).max(1000));
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(OPTIONS_EVERY.min(every)).await;
        if let (Ok(task), Ok(workers)) = (
            repo.task(task_id).await,
            copying_workers(repo, task_id, owner).await,
        ) {
            let (rows, bytes) = worker_limits(&task.spec.options, workers.live);
            limiter.set_limits(rows, bytes);
        }
        if renewed.elapsed() < every {
            continue;
        }
        match repo.renew_lease(task_id, chunk_id, owner, lease_ms).await {
            Ok(()) => renewed = Instant::now(),
            Err(e @ FerryError::Fenced(_)) => return e,
            Err(e) => {
                tracing::warn!(chunk = %chunk_id, error = %e, "could not renew the chunk lease; will retry")
            }
        }
    }
}

/// When every chunk of `table` is done: build its deferred indexes and mark it copied.
/// Idempotent; returns whether the table is (now) copied.
async fn finalize_table_if_done<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    dst: &mut Conn,
    table: &str,
) -> Result<bool, FerryError> {
    let chunks = repo.chunks(task_id).await?;
    let mine = chunks.iter().filter(|c| c.table_name() == table);
    if !mine.clone().all(|c| c.state == ChunkState::Done) {
        return Ok(false);
    }
    let record: Option<TableRecord> = repo
        .tables(task_id)
        .await?
        .into_iter()
        .find(|t| t.source_name() == table);
    if record
        .as_ref()
        .is_some_and(|t| t.phase == TablePhase::Copied)
    {
        return Ok(true);
    }
    run_deferred(repo, task_id, dst, table).await?;
    if record.is_some() {
        let rows: u64 = chunks
            .iter()
            .filter(|c| c.table_name() == table)
            .map(|c| c.rows)
            .sum();
        let was_copied = AtomicBool::new(false);
        repo.update_table(task_id, table, |t| {
            was_copied.store(t.phase == TablePhase::Copied, Ordering::Relaxed);
            t.phase = TablePhase::Copied;
            t.rows_estimate = rows;
        })
        .await?;
        if !was_copied.load(Ordering::Relaxed) {
            tracing::info!(table, rows, "table copied");
        }
    }
    Ok(true)
}

/// The statements `plan` deferred to after the load of `table` (none if it recorded none).
async fn deferred_statements<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    table: &str,
) -> Result<Vec<String>, FerryError> {
    let rec: Option<DeferredDdl> = repo.get_record(task_id, &deferred_key(table)).await?;
    Ok(rec.map(|r| r.statements).unwrap_or_default())
}

/// Build the secondary indexes and foreign keys of a loaded table. A statement
/// that already ran (duplicate key or constraint name) is skipped, so a rerun is harmless.
async fn run_deferred<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    dst: &mut Conn,
    table: &str,
) -> Result<(), FerryError> {
    let statements = deferred_statements(repo, task_id, table).await?;
    if statements.is_empty() {
        return Ok(());
    }
    // Foreign keys may point at tables still being copied: do not check existing rows.
    let what = format!("target: building the deferred indexes of {table}");
    dst.query_drop("SET SESSION foreign_key_checks = 0")
        .await
        .map_err(|e| classify(e, &what))?;
    for sql in statements {
        let started = Instant::now();
        match dst.query_drop(sql.as_str()).await {
            Ok(()) => tracing::info!(table, secs = started.elapsed().as_secs_f64(), "{sql}"),
            // 1061 duplicate key name, 1826 duplicate foreign key constraint name: already built.
            Err(mysql_async::Error::Server(se)) if se.code == 1061 || se.code == 1826 => {
                tracing::info!(table, "already there: {sql}");
            }
            Err(e) => return Err(classify(e, &format!("{what} ({sql})"))),
        }
    }
    Ok(())
}

/// The summary action: chunk counts; at the end of the copy, finish the tables
/// and record where the source's binlog was (`copy_finished`).
pub async fn summary<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    task_id: &str,
) -> Result<CopySummary, FerryError> {
    let task = env.repo.task(task_id).await?;
    let s = env.repo.chunk_summary(task_id).await?;
    let remaining = s.pending + s.running;
    if remaining == 0 {
        let (src_ep, dst_ep) = env.endpoints(&task.spec).await?;
        let pending_tables: Vec<String> = env
            .repo
            .tables(task_id)
            .await?
            .into_iter()
            .filter(|t| t.phase != TablePhase::Copied)
            .map(|t| t.source_name())
            .collect();
        if !pending_tables.is_empty() {
            let mut dst = dst_ep.connect().await?;
            for t in &pending_tables {
                finalize_table_if_done(&env.repo, task_id, &mut dst, t).await?;
            }
            let _ = dst.disconnect().await;
        }
        if s.failed == 0 && task.copy_finished.is_none() {
            let mut src = src_ep.connect().await?;
            let position = binlog_position(&mut src, "source").await?;
            let _ = src.disconnect().await;
            let point = SnapshotPoint {
                position,
                at_ms: now_ms(),
            };
            tracing::info!(task = task_id, position = %point.position, "full copy finished");
            env.repo
                .update_task(task_id, |t| {
                    if t.copy_finished.is_none() {
                        t.copy_finished = Some(point.clone());
                    }
                })
                .await?;
        }
    }
    Ok(CopySummary {
        task_id: task_id.to_string(),
        remaining,
        pending: s.pending,
        running: s.running,
        done: s.done,
        failed: s.failed,
        total: s.total,
        rows: s.rows,
        stop_requested: env.repo.flags(task_id).await?.stop_requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_out_of_memory_is_waited_for_longer() {
        let lost = FerryError::Transient("target: connection lost".into());
        let memory = FerryError::Transient(
            "target: writing chunk 1: Over tenant memory limits (OceanBase error 4030): ...".into(),
        );
        let waits = |e: &FerryError| {
            (1..5)
                .map(|a| retry_pause(ferry_mysql::conn::waits_for_memory(e), a).as_secs_f64())
                .collect::<Vec<_>>()
        };
        assert_eq!(waits(&lost), [0.5, 1.0, 2.0, 4.0]);
        assert_eq!(waits(&memory), [4.0, 8.0, 16.0, 32.0]);
    }

    #[test]
    fn each_memory_error_halves_the_writers_for_a_minute() {
        let first = tighten(None, 4, 1_000);
        assert_eq!(
            first,
            MemoryBackoff {
                writers: 2,
                until_ms: 61_000
            }
        );
        let second = tighten(Some(&first), 4, 2_000);
        assert_eq!(
            second,
            MemoryBackoff {
                writers: 1,
                until_ms: 62_000
            }
        );
        assert_eq!(
            tighten(Some(&second), 4, 3_000).writers,
            1,
            "one always writes"
        );
        assert_eq!(tighten(None, 1, 0).writers, 1);
        assert_eq!(
            tighten(Some(&second), 2, 62_000).writers,
            1,
            "over: halved from the live workers again"
        );
        assert_eq!(
            tighten(Some(&first), 1, 2_000).writers,
            1,
            "never more than are live"
        );

        assert!(may_write(None, 3, 0), "no back-off: every worker writes");
        assert!(may_write(Some(&first), 1, 60_999), "rank 1 of 2 writers");
        assert!(!may_write(Some(&first), 2, 60_999), "rank 2 waits");
        assert!(may_write(Some(&first), 2, 61_000), "the back-off is over");
        assert!(
            may_write(Some(&second), 0, 61_000),
            "the first always writes"
        );
    }

    #[test]
    fn the_task_rate_is_shared_among_its_workers() {
        let mut o = TaskOptions {
            concurrency: 4,
            max_rows_per_second: 150,
            max_bytes_per_second: 0,
            ..TaskOptions::default()
        };
        assert_eq!(
            worker_limits(&o, 4),
            (38, 0),
            "150 / 4 rounded up; 0 stays unlimited"
        );
        assert_eq!(
            worker_limits(&o, 1),
            (150, 0),
            "the last worker copying takes it all"
        );
        assert_eq!(worker_limits(&o, 0), (150, 0));
        o.max_bytes_per_second = 1 << 20;
        o.max_rows_per_second = 3;
        assert_eq!(
            worker_limits(&o, 8),
            (1, 131_072),
            "never rounded down to 0 (unlimited)"
        );
    }

    #[allow(dead_code)]
    fn the_stage_future_is_send<S: ItemStore, K: SecretSource>(env: &StageEnv<S, K>) {
        fn is_send<T: Send>(_: T) {}
        is_send(run(env, Value::Null, Instant::now()));
    }
}

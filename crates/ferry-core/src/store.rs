//! The task store port and the repository built on it.
//!
//! Adapters implement [`ItemStore`]: a versioned key-value store with
//! conditional writes, keyed as the DynamoDB table is (`pk = task#<id>`,
//! `sk = meta | table#.. | chunk#.. | ckpt#.. | flags | diff#..`). Every
//! decision (leases, fencing, state changes) lives in [`Repo`], once, so the
//! SQLite and DynamoDB stores behave the same: copy chunks' leases in
//! `claim_chunk` .. `finish_chunk`, leases on a stage's own records (a verify
//! chunk, [`Leased`]) in `claim_lease` .. `finish_lease`.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::FerryError;
use crate::model::*;
use crate::task::TaskSpec;

/// One stored item. `version` grows by one on every write.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    pub version: u64,
    pub data: Value,
}

/// The condition of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Write whatever is there.
    Any,
    /// Write only if no item has this key.
    Absent,
    /// Write only if the item is at this version.
    Version(u64),
}

/// A stage's own record worked on under a lease (a verify chunk): one holder
/// at a time until `lease_until_ms`. Every decision on such a lease (claim,
/// extend, give back, finish) is a [`Repo`] method (`claim_lease`, ...).
pub trait Leased: Serialize + DeserializeOwned + Clone {
    fn holder(&self) -> Option<&str>;
    fn lease_until_ms(&self) -> u64;
    fn set_lease(&mut self, holder: Option<String>, until_ms: u64);
    /// A finished record is not claimed again (in its round).
    fn finished(&self) -> bool;
}

/// A lease taken by [`Repo::claim_lease`]: the record as written, and as it
/// was before (what an earlier holder may have left behind).
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed<T> {
    pub record: T,
    pub before: Option<T>,
}

/// A versioned item store with conditional writes.
pub trait ItemStore: Send + Sync + Clone + 'static {
    fn get(
        &self,
        pk: &str,
        sk: &str,
    ) -> impl Future<Output = Result<Option<Item>, FerryError>> + Send;
    /// Every item of `pk` whose `sk` starts with `sk_prefix`, ordered by `sk`.
    fn query(
        &self,
        pk: &str,
        sk_prefix: &str,
    ) -> impl Future<Output = Result<Vec<Item>, FerryError>> + Send;
    /// Write `data`; `Ok(Some(new_version))`, or `Ok(None)` when `cond` does not hold.
    fn put(
        &self,
        pk: &str,
        sk: &str,
        data: &Value,
        cond: Cond,
    ) -> impl Future<Output = Result<Option<u64>, FerryError>> + Send;
    fn delete(&self, pk: &str, sk: &str) -> impl Future<Output = Result<(), FerryError>> + Send;
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn pk(task_id: &str) -> String {
    format!("task#{task_id}")
}

const META: &str = "meta";
const FLAGS: &str = "flags";
const ALIVE: &str = "alive";

/// The fields of the task file (beyond `options`, which may change between
/// runs) that differ between `old` and `new`, one line each:
/// `objects.exclude: ["a.t"] -> ["a.t","a.u"]`.
pub fn spec_differences(old: &TaskSpec, new: &TaskSpec) -> Vec<String> {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{path}: {a} -> {b}")),
            _ => {}
        }
    }
    let as_json = |s: &TaskSpec| {
        let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.remove("options");
            m.remove("task_id");
        }
        v
    };
    let mut out = Vec::new();
    walk("", &as_json(old), &as_json(new), &mut out);
    out
}

fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, FerryError> {
    // Deserialized from the borrowed value: no copy of the record first (a
    // dirty mark holds up to 4,096 keys, read several times per verify).
    T::deserialize(&item.data).map_err(|e| {
        FerryError::Store(format!(
            "stored item {} {} cannot be read: {e}",
            item.pk, item.sk
        ))
    })
}

fn encode<T: Serialize>(v: &T) -> Result<Value, FerryError> {
    serde_json::to_value(v).map_err(|e| FerryError::Internal(format!("cannot encode record: {e}")))
}

/// How often an optimistic update is retried before it reports a conflict.
const UPDATE_TRIES: usize = 50;

/// Typed access to a task's records.
#[derive(Debug, Clone)]
pub struct Repo<S> {
    store: S,
    /// Whether a lease's holder is known to have ended: its lease is then
    /// free at once ([`Repo::with_holder_check`]); by default none is.
    holder_gone: fn(&str) -> bool,
}

impl<S: ItemStore> Repo<S> {
    pub fn new(store: S) -> Self {
        Repo {
            store,
            holder_gone: |_| false,
        }
    }

    /// Leases whose holder `gone` says has ended count as expired (the
    /// embedded runner: a local process that was killed).
    pub fn with_holder_check(self, gone: fn(&str) -> bool) -> Self {
        Repo {
            holder_gone: gone,
            ..self
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    // ---- task ----

    /// Register a task, or return the existing one if its source, target and
    /// objects are the same (a rerun resumes). Options may change between runs.
    pub async fn create_task(&self, spec: &TaskSpec) -> Result<TaskRecord, FerryError> {
        let now = now_ms();
        let rec = TaskRecord {
            task_id: spec.task_id.clone(),
            spec: spec.clone(),
            state: TaskState::NotStarted,
            stage: None,
            created_ms: now,
            updated_ms: now,
            last_error: None,
            precheck: None,
            snapshot: None,
            copy_finished: None,
            planned: false,
            attention: None,
        };
        if self
            .store
            .put(&pk(&spec.task_id), META, &encode(&rec)?, Cond::Absent)
            .await?
            .is_some()
        {
            return Ok(rec);
        }
        let existing = self.task(&spec.task_id).await?;
        let changed = spec_differences(&existing.spec, spec);
        if !changed.is_empty() {
            if existing.wrote_anything() {
                return Err(FerryError::BadTask(format!(
                    "task \"{id}\" has already written to the target (its snapshot point and tables), and this task \
                     file differs from the one it runs with:\n{}\n\
                     To go on with the task as it is, run `ferry resume {id}` (it uses the stored task file). To \
                     migrate with the new file, give it a new task_id, or end this task with `ferry release {id}` \
                     first (release removes Ferry's checkpoints, not the migrated tables or rows; a new task into \
                     the same tables then needs them empty or mapped elsewhere with objects.rename).",
                    changed.join("\n"),
                    id = spec.task_id
                )));
            }
            // Nothing written yet (at most a precheck ran): the new file replaces the old one,
            // and the old file's precheck report no longer applies.
            tracing::info!(task = %spec.task_id, changes = %changed.join("; "), "the task file changed before anything was written: using the new one");
            return self
                .update_task(&spec.task_id, |t| {
                    t.spec = spec.clone();
                    t.precheck = None;
                    t.last_error = None;
                    t.state = TaskState::NotStarted;
                })
                .await;
        }
        if existing.spec.options != spec.options {
            return self
                .update_task(&spec.task_id, |t| t.spec.options = spec.options.clone())
                .await;
        }
        Ok(existing)
    }

    pub async fn get_task(&self, task_id: &str) -> Result<Option<TaskRecord>, FerryError> {
        match self.store.get(&pk(task_id), META).await? {
            Some(item) => Ok(Some(decode(&item)?)),
            None => Ok(None),
        }
    }

    /// The task, or an error naming it when it does not exist.
    pub async fn task(&self, task_id: &str) -> Result<TaskRecord, FerryError> {
        self.get_task(task_id).await?.ok_or_else(|| {
            FerryError::BadTask(format!(
                "no task \"{task_id}\" in the task store; start it with `ferry run TASK.json` (or check --state-dir)"
            ))
        })
    }

    /// Read-modify-write the task record with optimistic concurrency.
    pub async fn update_task(
        &self,
        task_id: &str,
        f: impl Fn(&mut TaskRecord),
    ) -> Result<TaskRecord, FerryError> {
        self.update(&pk(task_id), META, |t: &mut TaskRecord| {
            f(t);
            t.updated_ms = now_ms();
            Ok(())
        })
        .await
    }

    pub async fn set_state(
        &self,
        task_id: &str,
        state: TaskState,
        stage: Option<&str>,
    ) -> Result<TaskRecord, FerryError> {
        self.update_task(task_id, |t| {
            t.state = state;
            if let Some(s) = stage {
                t.stage = Some(s.to_string());
            }
        })
        .await
    }

    /// Record an error on the task; a definite error also marks it failed.
    pub async fn record_error(
        &self,
        task_id: &str,
        stage: &str,
        err: &FerryError,
    ) -> Result<(), FerryError> {
        let info = ErrorInfo {
            name: err.name().to_string(),
            message: err.message().to_string(),
            at_ms: now_ms(),
        };
        // A fenced worker was superseded by a newer one: the task goes on without it.
        let definite =
            !err.is_transient() && !matches!(err, FerryError::Stopped(_) | FerryError::Fenced(_));
        self.update_task(task_id, |t| {
            t.last_error = Some(info.clone());
            t.stage = Some(stage.to_string());
            if definite {
                t.state = TaskState::Failed;
            }
        })
        .await
        .map(|_| ())
    }

    /// Remove every record of the task, the task record itself last (so a
    /// deletion cut short leaves a task that can be released again).
    pub async fn delete_task(&self, task_id: &str) -> Result<usize, FerryError> {
        let mut items = self.store.query(&pk(task_id), "").await?;
        items.sort_by_key(|it| it.sk == META);
        for it in &items {
            self.store.delete(&it.pk, &it.sk).await?;
        }
        Ok(items.len())
    }

    // ---- tables ----

    pub async fn put_table(&self, task_id: &str, t: &TableRecord) -> Result<(), FerryError> {
        self.store
            .put(
                &pk(task_id),
                &format!("table#{}", t.source_name()),
                &encode(t)?,
                Cond::Any,
            )
            .await?;
        Ok(())
    }

    pub async fn tables(&self, task_id: &str) -> Result<Vec<TableRecord>, FerryError> {
        self.store
            .query(&pk(task_id), "table#")
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    pub async fn update_table(
        &self,
        task_id: &str,
        source_name: &str,
        f: impl Fn(&mut TableRecord),
    ) -> Result<TableRecord, FerryError> {
        self.update(
            &pk(task_id),
            &format!("table#{source_name}"),
            |t: &mut TableRecord| {
                f(t);
                Ok(())
            },
        )
        .await
    }

    // ---- chunks ----

    /// Record chunks that are not recorded yet (a rerun of plan leaves existing ones alone).
    pub async fn put_chunks(
        &self,
        task_id: &str,
        chunks: &[ChunkRecord],
    ) -> Result<(), FerryError> {
        for c in chunks {
            self.store
                .put(
                    &pk(task_id),
                    &format!("chunk#{}", c.chunk_id),
                    &encode(c)?,
                    Cond::Absent,
                )
                .await?;
        }
        Ok(())
    }

    pub async fn chunks(&self, task_id: &str) -> Result<Vec<ChunkRecord>, FerryError> {
        self.store
            .query(&pk(task_id), "chunk#")
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    pub async fn chunk_summary(&self, task_id: &str) -> Result<ChunkSummary, FerryError> {
        let mut s = ChunkSummary::default();
        for c in self.chunks(task_id).await? {
            s.total += 1;
            s.rows += c.rows;
            s.bytes += c.bytes;
            match c.state {
                ChunkState::Pending => s.pending += 1,
                ChunkState::Running => s.running += 1,
                ChunkState::Done => s.done += 1,
                ChunkState::Failed => s.failed += 1,
            }
        }
        Ok(s)
    }

    /// Take a lease on the first chunk that is pending, or running with an
    /// expired lease. Two workers can never both win one chunk: the write is
    /// conditional on the version that was read.
    pub async fn claim_chunk(
        &self,
        task_id: &str,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Option<ChunkRecord>, FerryError> {
        self.claim_chunk_with(task_id, owner, lease_ms, false).await
    }

    /// Like [`Repo::claim_chunk`], but prefer a chunk of a table no other worker
    /// is copying (no chunk of it running under a live lease), and among those a
    /// table not started yet, so parallel workers spread over tables (a bulk load
    /// into one table is serialized by its AUTO_INCREMENT lock) and no table is
    /// left to run alone at the end. Falls back to the first claimable chunk.
    pub async fn claim_chunk_spread(
        &self,
        task_id: &str,
        owner: &str,
        lease_ms: u64,
    ) -> Result<Option<ChunkRecord>, FerryError> {
        self.claim_chunk_with(task_id, owner, lease_ms, true).await
    }

    async fn claim_chunk_with(
        &self,
        task_id: &str,
        owner: &str,
        lease_ms: u64,
        spread: bool,
    ) -> Result<Option<ChunkRecord>, FerryError> {
        let pkey = pk(task_id);
        loop {
            let now = now_ms();
            let items = self.store.query(&pkey, "chunk#").await?;
            let mut chunks = Vec::with_capacity(items.len());
            for item in &items {
                chunks.push((item, decode::<ChunkRecord>(item)?));
            }
            if spread {
                let tables_where =
                    |f: &dyn Fn(&ChunkRecord) -> bool| -> std::collections::HashSet<String> {
                        chunks
                            .iter()
                            .filter(|(_, c)| f(c))
                            .map(|(_, c)| c.table_name())
                            .collect()
                    };
                let busy =
                    tables_where(&|c| c.state == ChunkState::Running && c.lease_until_ms >= now);
                let mut pending: std::collections::HashMap<String, usize> =
                    std::collections::HashMap::new();
                for (_, c) in &chunks {
                    if c.state == ChunkState::Pending {
                        *pending.entry(c.table_name()).or_default() += 1;
                    }
                }
                // Stable: tables nobody copies first, then the table with the most chunks
                // left (longest work first, so the copy does not end with one big table
                // running alone while the other workers idle), each in key order.
                chunks.sort_by_key(|(_, c)| {
                    let t = c.table_name();
                    let left = pending.get(&t).copied().unwrap_or(0);
                    (busy.contains(&t), std::cmp::Reverse(left))
                });
            }
            let mut contended = false;
            for (item, mut c) in chunks {
                let free = c.state == ChunkState::Pending
                    || (c.state == ChunkState::Running && c.lease_until_ms < now);
                if !free {
                    continue;
                }
                c.state = ChunkState::Running;
                c.owner = Some(owner.to_string());
                c.lease_until_ms = now + lease_ms;
                c.attempts += 1;
                if self
                    .store
                    .put(&pkey, &item.sk, &encode(&c)?, Cond::Version(item.version))
                    .await?
                    .is_some()
                {
                    return Ok(Some(c));
                }
                contended = true;
                if spread {
                    // Another worker just took a chunk: which tables are busy changed, read again.
                    break;
                }
            }
            if !contended {
                return Ok(None);
            }
        }
    }

    /// Extend the lease of a chunk this owner holds.
    pub async fn renew_lease(
        &self,
        task_id: &str,
        chunk_id: &str,
        owner: &str,
        lease_ms: u64,
    ) -> Result<(), FerryError> {
        self.update_chunk(task_id, chunk_id, owner, |c| {
            c.lease_until_ms = now_ms() + lease_ms
        })
        .await
        .map(|_| ())
    }

    /// Mark a chunk done; refused (Ferry.Fenced) if the lease was lost.
    pub async fn finish_chunk(
        &self,
        task_id: &str,
        chunk_id: &str,
        owner: &str,
        rows: u64,
        bytes: u64,
    ) -> Result<(), FerryError> {
        self.update_chunk(task_id, chunk_id, owner, |c| {
            c.state = ChunkState::Done;
            c.rows = rows;
            c.bytes = bytes;
            c.owner = None;
            c.lease_until_ms = 0;
            c.last_error = None;
        })
        .await
        .map(|_| ())
    }

    /// Give a chunk back after an error: pending again while attempts remain, else failed.
    pub async fn fail_chunk(
        &self,
        task_id: &str,
        chunk_id: &str,
        owner: &str,
        error: &str,
        max_attempts: u32,
    ) -> Result<ChunkRecord, FerryError> {
        self.update_chunk(task_id, chunk_id, owner, |c| {
            c.state = if c.attempts >= max_attempts {
                ChunkState::Failed
            } else {
                ChunkState::Pending
            };
            c.owner = None;
            c.lease_until_ms = 0;
            c.last_error = Some(error.to_string());
        })
        .await
    }

    /// Put every running chunk back to pending. Only for a caller that knows no
    /// other worker runs (the embedded runner, holding the task's lock file).
    pub async fn reset_running_chunks(&self, task_id: &str) -> Result<u64, FerryError> {
        let mut n = 0;
        for c in self.chunks(task_id).await? {
            if c.state == ChunkState::Running {
                self.update(
                    &pk(task_id),
                    &format!("chunk#{}", c.chunk_id),
                    |c: &mut ChunkRecord| {
                        if c.state == ChunkState::Running {
                            c.state = ChunkState::Pending;
                            c.owner = None;
                            c.lease_until_ms = 0;
                        }
                        Ok(())
                    },
                )
                .await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Every chunk pending again with a fresh attempt budget (a re-copy of every
    /// table over the rows already copied). Only under the task's lock.
    pub async fn reset_all_chunks(&self, task_id: &str) -> Result<u64, FerryError> {
        let mut n = 0;
        for c in self.chunks(task_id).await? {
            self.update(
                &pk(task_id),
                &format!("chunk#{}", c.chunk_id),
                |c: &mut ChunkRecord| {
                    c.state = ChunkState::Pending;
                    c.owner = None;
                    c.lease_until_ms = 0;
                    c.attempts = 0;
                    c.last_error = None;
                    Ok(())
                },
            )
            .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Failed chunks become pending again with a fresh attempt budget (operator retry).
    pub async fn retry_failed_chunks(&self, task_id: &str) -> Result<u64, FerryError> {
        let mut n = 0;
        for c in self.chunks(task_id).await? {
            if c.state == ChunkState::Failed {
                self.update(
                    &pk(task_id),
                    &format!("chunk#{}", c.chunk_id),
                    |c: &mut ChunkRecord| {
                        c.state = ChunkState::Pending;
                        c.attempts = 0;
                        Ok(())
                    },
                )
                .await?;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn update_chunk(
        &self,
        task_id: &str,
        chunk_id: &str,
        owner: &str,
        f: impl Fn(&mut ChunkRecord),
    ) -> Result<ChunkRecord, FerryError> {
        self.update(&pk(task_id), &format!("chunk#{chunk_id}"), |c: &mut ChunkRecord| {
            if c.owner.as_deref() != Some(owner) || c.state != ChunkState::Running {
                return Err(FerryError::Fenced(format!(
                    "chunk {chunk_id} of {} is no longer leased to {owner} (its lease expired and another \
                     worker took it); this worker's result is discarded",
                    c.table_name()
                )));
            }
            f(c);
            Ok(())
        })
        .await
    }

    // ---- checkpoints ----

    pub async fn checkpoint(
        &self,
        task_id: &str,
        dir: Direction,
    ) -> Result<Option<CheckpointRecord>, FerryError> {
        match self
            .store
            .get(&pk(task_id), &format!("ckpt#{}", dir.as_str()))
            .await?
        {
            Some(item) => Ok(Some(decode(&item)?)),
            None => Ok(None),
        }
    }

    /// Write a checkpoint; refused (Ferry.Fenced) if a newer epoch owns the link.
    pub async fn put_checkpoint(
        &self,
        task_id: &str,
        ck: &CheckpointRecord,
    ) -> Result<(), FerryError> {
        let sk = format!("ckpt#{}", ck.direction.as_str());
        let new = ck.clone();
        let pkey = pk(task_id);
        for _ in 0..UPDATE_TRIES {
            let cur = self.store.get(&pkey, &sk).await?;
            let cond = match &cur {
                None => Cond::Absent,
                Some(item) => {
                    let old: CheckpointRecord = decode(item)?;
                    if old.is_retired() && new.epoch != old.epoch {
                        return Err(FerryError::Fenced(format!(
                            "the {} link of task {task_id} was retired at switchover; no applier may take it again",
                            ck.direction.as_str()
                        )));
                    }
                    if old.epoch > new.epoch {
                        return Err(FerryError::Fenced(format!(
                            "the {} link of task {task_id} is owned by epoch {} (this applier has {}); stopping",
                            ck.direction.as_str(),
                            old.epoch,
                            new.epoch
                        )));
                    }
                    Cond::Version(item.version)
                }
            };
            if self
                .store
                .put(&pkey, &sk, &encode(&new)?, cond)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(FerryError::Transient(format!(
            "checkpoint of task {task_id} is contended"
        )))
    }

    /// Take over a link for a new applier: its checkpoint is rewritten with an
    /// epoch one above the stored one, conditional on the version read, so two
    /// appliers starting at once never get the same epoch (the older one is then
    /// fenced by [`Repo::put_checkpoint`] and by the target's checkpoint rows).
    /// A link without a checkpoint starts at `start` with epoch 1; a retired
    /// link is refused.
    pub async fn claim_link(
        &self,
        task_id: &str,
        dir: Direction,
        start: &crate::position::BinlogPosition,
    ) -> Result<CheckpointRecord, FerryError> {
        let sk = format!("ckpt#{}", dir.as_str());
        let pkey = pk(task_id);
        for _ in 0..UPDATE_TRIES {
            let (rec, cond) = match self.store.get(&pkey, &sk).await? {
                None => {
                    let rec = CheckpointRecord {
                        direction: dir,
                        position: start.clone(),
                        epoch: 1,
                        updated_ms: now_ms(),
                        lag_ms: None,
                        applied_rows: 0,
                    };
                    (rec, Cond::Absent)
                }
                Some(item) => {
                    let mut rec: CheckpointRecord = decode(&item)?;
                    if rec.is_retired() {
                        return Err(FerryError::Fenced(format!(
                            "the {} link of task {task_id} was retired at switchover; no applier may take it again",
                            dir.as_str()
                        )));
                    }
                    rec.epoch += 1;
                    rec.updated_ms = now_ms();
                    (rec, Cond::Version(item.version))
                }
            };
            if self
                .store
                .put(&pkey, &sk, &encode(&rec)?, cond)
                .await?
                .is_some()
            {
                return Ok(rec);
            }
        }
        Err(FerryError::Transient(format!(
            "the {} link of task {task_id} is contended",
            dir.as_str()
        )))
    }

    pub async fn delete_checkpoint(&self, task_id: &str, dir: Direction) -> Result<(), FerryError> {
        self.store
            .delete(&pk(task_id), &format!("ckpt#{}", dir.as_str()))
            .await
    }

    // ---- control flags ----

    pub async fn flags(&self, task_id: &str) -> Result<ControlFlags, FerryError> {
        match self.store.get(&pk(task_id), FLAGS).await? {
            Some(item) => decode(&item),
            None => Ok(ControlFlags::default()),
        }
    }

    pub async fn update_flags(
        &self,
        task_id: &str,
        f: impl Fn(&mut ControlFlags),
    ) -> Result<ControlFlags, FerryError> {
        let pkey = pk(task_id);
        for _ in 0..UPDATE_TRIES {
            let cur = self.store.get(&pkey, FLAGS).await?;
            let (mut flags, cond) = match &cur {
                Some(item) => (decode::<ControlFlags>(item)?, Cond::Version(item.version)),
                None => (ControlFlags::default(), Cond::Absent),
            };
            f(&mut flags);
            if self
                .store
                .put(&pkey, FLAGS, &encode(&flags)?, cond)
                .await?
                .is_some()
            {
                return Ok(flags);
            }
        }
        Err(FerryError::Transient(format!(
            "control flags of task {task_id} are contended"
        )))
    }

    // ---- liveness ----

    /// Renew `worker`'s heartbeat on the task (record `alive`): it runs `stage` now.
    pub async fn beat(
        &self,
        task_id: &str,
        worker: &str,
        stage: Option<&str>,
    ) -> Result<(), FerryError> {
        let now = now_ms();
        self.swap_record(task_id, ALIVE, |old: Option<Liveness>| {
            let started_ms = old
                .as_ref()
                .filter(|o| o.worker == worker && o.ended_ms.is_none())
                .map(|o| o.started_ms)
                .unwrap_or(now);
            Some(Liveness {
                worker: worker.to_string(),
                stage: stage.map(str::to_string),
                started_ms,
                seen_ms: now,
                ended_ms: None,
            })
        })
        .await
        .map(|_| ())
    }

    /// `worker` ended cleanly (its last heartbeat says so); another worker's record is left alone.
    pub async fn end_beat(&self, task_id: &str, worker: &str) -> Result<(), FerryError> {
        let now = now_ms();
        self.swap_record(task_id, ALIVE, |old: Option<Liveness>| {
            let mut l = old.filter(|o| o.worker == worker)?;
            l.seen_ms = now;
            l.ended_ms = Some(now);
            Some(l)
        })
        .await
        .map(|_| ())
    }

    pub async fn liveness(&self, task_id: &str) -> Result<Option<Liveness>, FerryError> {
        self.get_record(task_id, ALIVE).await
    }

    // ---- diffs ----

    pub async fn put_diff(
        &self,
        task_id: &str,
        seq: u64,
        d: &DiffRecord,
    ) -> Result<(), FerryError> {
        let sk = format!("diff#{}.{}#{seq:08}", d.source_db, d.source_table);
        self.store
            .put(&pk(task_id), &sk, &encode(d)?, Cond::Any)
            .await?;
        Ok(())
    }

    pub async fn diffs(&self, task_id: &str) -> Result<Vec<DiffRecord>, FerryError> {
        self.store
            .query(&pk(task_id), "diff#")
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    pub async fn clear_diffs(&self, task_id: &str) -> Result<(), FerryError> {
        for it in self.store.query(&pk(task_id), "diff#").await? {
            self.store.delete(&it.pk, &it.sk).await?;
        }
        Ok(())
    }

    // ---- generic records (for stages that keep their own small records) ----

    pub async fn get_record<T: DeserializeOwned>(
        &self,
        task_id: &str,
        sk: &str,
    ) -> Result<Option<T>, FerryError> {
        match self.store.get(&pk(task_id), sk).await? {
            Some(item) => Ok(Some(decode(&item)?)),
            None => Ok(None),
        }
    }

    pub async fn put_record<T: Serialize>(
        &self,
        task_id: &str,
        sk: &str,
        v: &T,
    ) -> Result<(), FerryError> {
        self.store
            .put(&pk(task_id), sk, &encode(v)?, Cond::Any)
            .await
            .map(|_| ())
    }

    /// Remove one record (any kind, e.g. `chunk#0001-000003`); absent is fine.
    pub async fn delete_record(&self, task_id: &str, sk: &str) -> Result<(), FerryError> {
        self.store.delete(&pk(task_id), sk).await
    }

    /// Every record whose key starts with `sk_prefix`, with its key, in key order.
    pub async fn records<T: DeserializeOwned>(
        &self,
        task_id: &str,
        sk_prefix: &str,
    ) -> Result<Vec<(String, T)>, FerryError> {
        let items = self.store.query(&pk(task_id), sk_prefix).await?;
        items
            .iter()
            .map(|it| Ok((it.sk.clone(), decode(it)?)))
            .collect()
    }

    /// Compare-and-set a stage's own record: `f` sees the record (or `None`)
    /// and returns the new one, or `None` to leave it alone. The write is
    /// conditional on what `f` saw, so of several workers deciding at once on
    /// the same record exactly one wins (a lease claim). Returns what was written.
    pub async fn swap_record<T: Serialize + DeserializeOwned>(
        &self,
        task_id: &str,
        sk: &str,
        f: impl Fn(Option<T>) -> Option<T>,
    ) -> Result<Option<T>, FerryError> {
        let pkey = pk(task_id);
        for _ in 0..UPDATE_TRIES {
            let cur = self.store.get(&pkey, sk).await?;
            let (old, cond) = match &cur {
                Some(item) => (Some(decode::<T>(item)?), Cond::Version(item.version)),
                None => (None, Cond::Absent),
            };
            let Some(new) = f(old) else { return Ok(None) };
            if self
                .store
                .put(&pkey, sk, &encode(&new)?, cond)
                .await?
                .is_some()
            {
                return Ok(Some(new));
            }
        }
        Err(FerryError::Transient(format!(
            "record {pkey} {sk} is contended; retry"
        )))
    }

    // ---- leases on a stage's own records ----

    /// Take the lease on record `sk` for `holder`, until `lease_ms` from now,
    /// if it is free:
    /// * no record, or one of another round (`ours` false, e.g. an earlier
    ///   verify run): write `start(None)`, a fresh record;
    /// * an unfinished record of this round whose lease expired: take it over,
    ///   writing `start(Some(record))` (e.g. one more attempt);
    /// * a finished record of this round, or one under a live lease: `None`.
    ///
    /// The write is conditional on what was read, so of several workers
    /// claiming one record at once exactly one wins.
    pub async fn claim_lease<T: Leased>(
        &self,
        task_id: &str,
        sk: &str,
        holder: &str,
        lease_ms: u64,
        ours: impl Fn(&T) -> bool,
        start: impl Fn(Option<T>) -> T,
    ) -> Result<Option<Claimed<T>>, FerryError> {
        let now = now_ms();
        let live = |c: &T| c.lease_until_ms() >= now && !c.holder().is_some_and(self.holder_gone);
        let before = std::sync::Mutex::new(None);
        let written = self
            .swap_record(task_id, sk, |cur: Option<T>| {
                let mut next = match &cur {
                    Some(c) if ours(c) && (c.finished() || live(c)) => return None,
                    Some(c) if ours(c) => start(Some(c.clone())),
                    _ => start(None),
                };
                next.set_lease(Some(holder.to_string()), now + lease_ms);
                *before.lock().unwrap_or_else(|e| e.into_inner()) = cur;
                Some(next)
            })
            .await?;
        let before = before.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(written.map(|record| Claimed { record, before }))
    }

    /// Extend the lease `holder` holds on record `sk` to `lease_ms` from now;
    /// false when it no longer holds it.
    pub async fn extend_lease<T: Leased>(
        &self,
        task_id: &str,
        sk: &str,
        holder: &str,
        lease_ms: u64,
        ours: impl Fn(&T) -> bool,
    ) -> Result<bool, FerryError> {
        self.if_holder(task_id, sk, holder, ours, |c: &mut T| {
            c.set_lease(Some(holder.to_string()), now_ms() + lease_ms)
        })
        .await
    }

    /// Give back the lease `holder` holds on record `sk` (unfinished): free
    /// for anyone from `free_from_ms` on (0: at once). False when `holder`
    /// does not hold it or `ours` refuses (e.g. no attempt left).
    pub async fn give_back_lease<T: Leased>(
        &self,
        task_id: &str,
        sk: &str,
        holder: &str,
        free_from_ms: u64,
        ours: impl Fn(&T) -> bool,
    ) -> Result<bool, FerryError> {
        self.if_holder(task_id, sk, holder, ours, |c: &mut T| {
            c.set_lease(None, free_from_ms)
        })
        .await
    }

    /// Finish record `sk` with `finish` and end the lease, only if `holder`
    /// still holds it; false when the lease was lost (it expired and another
    /// worker took the record over): that worker's result stands.
    pub async fn finish_lease<T: Leased>(
        &self,
        task_id: &str,
        sk: &str,
        holder: &str,
        ours: impl Fn(&T) -> bool,
        finish: impl Fn(&mut T),
    ) -> Result<bool, FerryError> {
        self.if_holder(task_id, sk, holder, ours, |c: &mut T| {
            finish(c);
            c.set_lease(None, 0);
        })
        .await
    }

    async fn if_holder<T: Leased>(
        &self,
        task_id: &str,
        sk: &str,
        holder: &str,
        ours: impl Fn(&T) -> bool,
        change: impl Fn(&mut T),
    ) -> Result<bool, FerryError> {
        let written = self
            .swap_record(task_id, sk, |cur: Option<T>| {
                let mut c = cur.filter(|c| c.holder() == Some(holder) && ours(c))?;
                change(&mut c);
                Some(c)
            })
            .await?;
        Ok(written.is_some())
    }

    /// Remove the diffs `drop(source table, seq)` selects (a stage re-checking part of a table).
    pub async fn clear_diffs_where(
        &self,
        task_id: &str,
        drop: impl Fn(&str, u64) -> bool,
    ) -> Result<u64, FerryError> {
        let mut n = 0;
        for it in self.store.query(&pk(task_id), "diff#").await? {
            let parsed = it
                .sk
                .strip_prefix("diff#")
                .and_then(|rest| rest.rsplit_once('#'));
            if let Some((table, seq)) = parsed.and_then(|(t, s)| Some((t, s.parse::<u64>().ok()?)))
            {
                if drop(table, seq) {
                    self.store.delete(&it.pk, &it.sk).await?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    async fn update<T: Serialize + DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
        f: impl Fn(&mut T) -> Result<(), FerryError>,
    ) -> Result<T, FerryError> {
        for _ in 0..UPDATE_TRIES {
            let item = self
                .store
                .get(pk, sk)
                .await?
                .ok_or_else(|| FerryError::Store(format!("record {pk} {sk} does not exist")))?;
            let mut v: T = decode(&item)?;
            f(&mut v)?;
            if self
                .store
                .put(pk, sk, &encode(&v)?, Cond::Version(item.version))
                .await?
                .is_some()
            {
                return Ok(v);
            }
        }
        Err(FerryError::Transient(format!(
            "record {pk} {sk} is contended; retry"
        )))
    }
}

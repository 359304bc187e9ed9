//! The `incremental-apply` stage: one bounded slice of a replication link.
//!
//! Invariant: every call takes the link with a new, higher epoch
//! ([`Repo::claim_link`]), so an older call still running is fenced: its next
//! checkpoint commit on the target finds a newer epoch and rolls back, and its
//! task-store checkpoint write is refused. What the target's checkpoint rows
//! say is the truth (they commit with the data, see [`ferry_mysql::apply`]);
//! the task-store checkpoint is a copy for status and for the next call's
//! start when the target has none yet.
//!
//! Input `{"task_id","direction":"forward"|"reverse"}` (optional `"idle_ms"`);
//! `"enabled": false` in the output when the task has no `incremental` type.
//! Runs until the deadline minus a margin, an idle gap once caught up, or an
//! operator's stop; returns `{"task_id","position","lag_ms","read_lag_ms",
//! "apply_lag_ms","applied","caught_up","switch_requested","stop_requested"}`
//! and stores rows/s by table and op as the record `cdcstats#<direction>`.
//!
//! A forward call marks the chunks its changes touch (`dirty#<chunk>`, durable
//! before the changes commit) and records its epoch as closed when its link
//! run returns: see [`crate::dirty`].
//!
//! Forward starts at the snapshot position plan recorded and applies
//! idempotently up to `copy_finished`, exactly once after it. Reverse (after
//! switchover) reads the target's binlog from the checkpoint the switch stage
//! recorded and applies to the source, exactly once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::model::{CheckpointRecord, ControlFlags, Direction, TableRecord, TaskRecord};
use ferry_core::position::BinlogPosition;
use ferry_core::samples::{Sample, Series};
use ferry_core::secret::SecretSource;
use ferry_core::store::{now_ms, ItemStore, Repo};
use ferry_core::task::{Dialect, MigrationType, TaskSpec};
use ferry_core::FerryError;
use ferry_mysql::apply::{
    run_link, Link, LinkConfig, LinkReport, LiveLink, TableMapper, TargetName,
};
use ferry_mysql::dialect::TargetContext;
use ferry_mysql::dirty::ChunkMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::deadline::stop_time;
use crate::{task_id, StageEnv};

/// How often the operator's flags and the link's owner are checked during a call.
const POLL: Duration = Duration::from_secs(2);
/// Default idle gap after which a caught-up call returns.
const IDLE: Duration = Duration::from_secs(10);

/// Rows per second by table and op, as stored in `cdcstats#<direction>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CdcStats {
    pub updated_ms: u64,
    /// Length of the call the rates are measured over.
    pub window_ms: u64,
    pub applied: u64,
    pub lag_ms: Option<u64>,
    /// `table -> op -> {rows, rows_per_s}` (ops: insert, upsert, delete).
    pub tables: BTreeMap<String, BTreeMap<String, OpRate>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OpRate {
    pub rows: u64,
    pub rows_per_s: f64,
}

pub fn stats_key(dir: Direction) -> String {
    format!("cdcstats#{}", dir.as_str())
}

/// Input of the stage: `{"task_id","direction"}` (optional `"idle_ms"`).
/// Read from JSON by [`ApplyInput::from_json`] only, which keeps the stage's
/// error messages for a missing `task_id` or an unknown `direction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyInput {
    pub task_id: String,
    /// Forward unless the input says `"reverse"`.
    pub direction: Direction,
    /// Return once caught up and idle this long (default 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_ms: Option<u64>,
}

impl ApplyInput {
    pub fn new(task_id: impl Into<String>, direction: Direction) -> Self {
        ApplyInput {
            task_id: task_id.into(),
            direction,
            idle_ms: None,
        }
    }

    /// The input the state machine sends, with a clear error for a bad field.
    pub fn from_json(input: &Value) -> Result<Self, FerryError> {
        Ok(ApplyInput {
            task_id: task_id(input)?,
            direction: direction(input)?,
            idle_ms: input.get("idle_ms").and_then(Value::as_u64),
        })
    }
}

/// Output of the stage: where the link got to and what the operator asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutput {
    pub task_id: String,
    /// False when the task has no `incremental` type (nothing was applied).
    pub enabled: bool,
    /// The link's checkpoint after the call (`None`: it never ran).
    pub position: Option<BinlogPosition>,
    pub lag_ms: Option<u64>,
    pub read_lag_ms: Option<u64>,
    pub apply_lag_ms: Option<u64>,
    /// Rows applied by this call.
    pub applied: u64,
    pub caught_up: bool,
    pub switch_requested: bool,
    pub stop_requested: bool,
}

fn direction(input: &Value) -> Result<Direction, FerryError> {
    match input.get("direction").and_then(Value::as_str) {
        None | Some("forward") => Ok(Direction::Forward),
        Some("reverse") => Ok(Direction::Reverse),
        Some(other) => Err(FerryError::BadTask(format!(
            "incremental-apply input \"direction\" is \"{other}\"; use \"forward\" or \"reverse\""
        ))),
    }
}

/// Where a link starts when it has no checkpoint yet.
fn start_of(
    task: &TaskRecord,
    dir: Direction,
    existing: Option<&CheckpointRecord>,
) -> Result<BinlogPosition, FerryError> {
    if let Some(ck) = existing {
        return Ok(ck.position.clone());
    }
    match (dir, &task.snapshot) {
        (Direction::Forward, Some(s)) => Ok(s.position.clone()),
        (Direction::Forward, None) => Err(FerryError::BadTask(format!(
            "task {} has no snapshot position yet: run the plan stage first (it records where the binlog is before the copy)",
            task.task_id
        ))),
        (Direction::Reverse, _) => Err(FerryError::BadTask(format!(
            "task {} has no reverse checkpoint: the reverse link starts at switchover (`ferry switch`)",
            task.task_id
        ))),
    }
}

/// Source table -> target table for a link.
fn mapper(task: &TaskRecord, dir: Direction, tables: &[TableRecord]) -> TableMapper {
    match dir {
        Direction::Forward => {
            let spec = task.spec.clone();
            Arc::new(move |db: &str, t: &str| {
                spec.selects(db, t).then(|| {
                    let filter = spec.filter(db, t).map(String::from);
                    let (db, table) = spec.target_name(db, t);
                    TargetName { db, table, filter }
                })
            })
        }
        Direction::Reverse => {
            let back: BTreeMap<(String, String), TargetName> = tables
                .iter()
                .map(|r| {
                    (
                        (r.target_db.clone(), r.target_table.clone()),
                        TargetName {
                            db: r.source_db.clone(),
                            table: r.source_table.clone(),
                            filter: None,
                        },
                    )
                })
                .collect();
            Arc::new(move |db: &str, t: &str| back.get(&(db.to_string(), t.to_string())).cloned())
        }
    }
}

/// The task's declared keys (`objects.keys`) by the names of the tables the
/// link reads: the source's forward, the target's in reverse (where the target
/// table's unique key on them, made by the schema stage, may allow NULLs).
fn declared_keys(spec: &TaskSpec, dir: Direction) -> BTreeMap<(String, String), Vec<String>> {
    spec.objects
        .keys
        .iter()
        .filter_map(|(name, cols)| {
            let (db, table) = name.split_once('.')?;
            let read = match dir {
                Direction::Forward => (db.to_string(), table.to_string()),
                Direction::Reverse => spec.target_name(db, table),
            };
            Some((read, cols.clone()))
        })
        .collect()
}

/// The stage as the state machine calls it: JSON in, JSON out, over [`run_typed`].
pub async fn run<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    input: Value,
    deadline: Instant,
) -> Result<Value, FerryError> {
    let input = ApplyInput::from_json(&input)?;
    crate::to_output(&run_typed(env, input, deadline).await?)
}

/// One slice of the link `input.direction` of task `input.task_id`.
pub async fn run_typed<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    input: ApplyInput,
    deadline: Instant,
) -> Result<ApplyOutput, FerryError> {
    let task_id = input.task_id;
    let dir = input.direction;
    let repo = &env.repo;
    let task = repo.task(&task_id).await?;
    let flags = repo.flags(&task_id).await?;
    let existing = repo.checkpoint(&task_id, dir).await?;
    if !task.spec.has(MigrationType::Incremental) {
        return Ok(ApplyOutput {
            enabled: false,
            ..output(&task_id, None, None, &flags)
        });
    }
    if flags.stop_requested {
        let position = existing.as_ref().map(|c| c.position.clone());
        return Ok(output(&task_id, position.as_ref(), None, &flags));
    }
    let start = start_of(&task, dir, existing.as_ref())?;
    let claimed = repo.claim_link(&task_id, dir, &start).await?;
    let tables = repo.tables(&task_id).await?;
    let (source, target) = env.endpoints(&task.spec).await?;
    let (source, target) = match dir {
        Direction::Forward => (source, target),
        Direction::Reverse => (target, source),
    };
    let opts = &task.spec.options;
    let link = Link {
        meta_schema: opts.meta_schema.clone(),
        task_id: task_id.clone(),
        direction: dir,
        epoch: claimed.epoch,
        incarnation: Some(task.incarnation()),
    };
    let slice_end = Instant::now() + Duration::from_secs(opts.slice_seconds);
    let mut cfg = LinkConfig::new(
        link,
        start.clone(),
        mapper(&task, dir, &tables),
        stop_time(deadline.min(slice_end)),
    );
    cfg.workers = opts.apply_workers;
    let written = match dir {
        Direction::Forward => task.spec.target.dialect,
        Direction::Reverse => task.spec.source.dialect,
    };
    cfg.prepared = written != Dialect::Oceanbase;
    if dir == Direction::Forward {
        // DDL from the source's binlog is translated for the target like the schema stage's tables.
        // Recorded by the plan; a connection only for a task planned before capabilities were.
        let recorded = env
            .repo
            .get_record::<ferry_mysql::dialect::caps::TargetCaps>(
                &task_id,
                ferry_mysql::dialect::caps::CAPS_RECORD,
            )
            .await?;
        let caps = match recorded {
            Some(caps) => caps,
            None => {
                let mut conn = target.connect().await?;
                let caps = crate::plan::target_caps(&env.repo, &task_id, &mut conn).await;
                let _ = conn.disconnect().await;
                caps?
            }
        };
        let ctx = TargetContext {
            version: caps.rules_version(task.spec.target.dialect),
            renames: task.spec.objects.rename.clone(),
            caps: Some(caps),
        };
        cfg.ddl_target = Some((task.spec.target.dialect, ctx));
    }
    cfg.declared_keys = Arc::new(declared_keys(&task.spec, dir));
    if dir == Direction::Forward {
        // Mark the chunks the changes touch, for `verify --changed`.
        let chunks = repo.chunks(&task_id).await?;
        if !chunks.is_empty() {
            let sink = crate::dirty::StoreMarks {
                repo: repo.clone(),
                task_id: task_id.clone(),
                epoch: claimed.epoch,
            };
            cfg.dirty = Some((Arc::new(ChunkMap::new(&chunks)), Arc::new(sink)));
        }
    }
    cfg.idle = input.idle_ms.map(Duration::from_millis).unwrap_or(IDLE);
    cfg.idempotent_until = match dir {
        // Idempotent until the copy's end; without a full copy nothing says what the target holds.
        Direction::Forward => task
            .copy_finished
            .as_ref()
            .filter(|_| task.spec.has(MigrationType::Full))
            .map(|c| c.position.clone()),
        Direction::Reverse => Some(start),
    };
    let stop = cfg.stop.clone();
    let live = Arc::clone(&cfg.live);
    let report = watch(
        repo,
        &task_id,
        dir,
        claimed.epoch,
        (&stop, &live),
        run_link(&source, &target, cfg),
    )
    .await;
    if dir == Direction::Forward {
        // This call commits nothing more: its marks may list the keys it changed,
        // and a verify may clear them.
        if let Ok(r) = &report {
            crate::dirty::list_keys(repo, &task_id, claimed.epoch, &r.touched).await?;
        }
        crate::dirty::close_epoch(repo, &task_id, claimed.epoch).await?;
    }
    let report = report?;
    let flags = repo.flags(&task_id).await?;
    repo.put_checkpoint(
        &task_id,
        &CheckpointRecord {
            direction: dir,
            position: report.position.clone(),
            epoch: claimed.epoch,
            updated_ms: now_ms(),
            lag_ms: report.lag_ms,
            applied_rows: claimed.applied_rows + report.applied,
        },
    )
    .await?;
    repo.put_record(&task_id, &stats_key(dir), &stats(&report))
        .await?;
    Ok(output(
        &task_id,
        Some(&report.position),
        Some(&report),
        &flags,
    ))
}

/// Run the link while polling the operator's flags and the link's owner:
/// a stop request or a newer owner ends the run at the next transaction boundary.
/// Each poll also records a sample (rows applied since the last one, lag) for the charts.
async fn watch<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    dir: Direction,
    epoch: u64,
    (stop, live): (&Arc<AtomicBool>, &Arc<LiveLink>),
    run: impl std::future::Future<Output = Result<LinkReport, FerryError>>,
) -> Result<LinkReport, FerryError> {
    let mut run = std::pin::pin!(run);
    let mut sampled = 0u64;
    loop {
        tokio::select! {
            r = &mut run => {
                if let Ok(report) = &r {
                    let last = Sample {
                        at_ms: now_ms(),
                        rows: report.applied.saturating_sub(sampled),
                        lag_ms: report.lag_ms.or(live.lag_ms()),
                    };
                    if let Err(e) = repo.add_sample(task_id, Series::link(dir), last).await {
                        tracing::debug!(error = %e, "link sample not recorded");
                    }
                }
                return r;
            }
            _ = tokio::time::sleep(POLL) => {
                let applied = live.applied.load(Ordering::Relaxed);
                let now = Sample {
                    at_ms: now_ms(),
                    rows: applied.saturating_sub(sampled),
                    lag_ms: live.lag_ms(),
                };
                sampled = applied;
                if let Err(e) = repo.add_sample(task_id, Series::link(dir), now).await {
                    tracing::debug!(error = %e, "link sample not recorded");
                }
                let flags = repo.flags(task_id).await.unwrap_or_default();
                let owner = repo.checkpoint(task_id, dir).await.ok().flatten().map(|c| c.epoch);
                if flags.stop_requested || owner.is_some_and(|e| e != epoch) {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

fn stats(r: &LinkReport) -> CdcStats {
    let secs = (r.elapsed_ms.max(1) as f64) / 1000.0;
    let mut tables: BTreeMap<String, BTreeMap<String, OpRate>> = BTreeMap::new();
    for ((table, op), rows) in &r.counts {
        let rate = OpRate {
            rows: *rows,
            rows_per_s: (*rows as f64 / secs * 10.0).round() / 10.0,
        };
        tables
            .entry(table.clone())
            .or_default()
            .insert(op.clone(), rate);
    }
    CdcStats {
        updated_ms: now_ms(),
        window_ms: r.elapsed_ms,
        applied: r.applied,
        lag_ms: r.lag_ms,
        tables,
    }
}

fn output(
    task_id: &str,
    position: Option<&BinlogPosition>,
    r: Option<&LinkReport>,
    flags: &ControlFlags,
) -> ApplyOutput {
    ApplyOutput {
        task_id: task_id.to_string(),
        enabled: true,
        position: position.cloned(),
        lag_ms: r.and_then(|r| r.lag_ms),
        read_lag_ms: r.and_then(|r| r.read_lag_ms),
        apply_lag_ms: r.and_then(|r| r.apply_lag_ms),
        applied: r.map(|r| r.applied).unwrap_or(0),
        caught_up: r.is_some_and(|r| r.caught_up),
        switch_requested: flags.switch_requested,
        stop_requested: flags.stop_requested,
    }
}

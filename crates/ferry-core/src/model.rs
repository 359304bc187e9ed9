//! Task metadata: one logical model, kept by either store (SQLite locally,
//! DynamoDB in the cloud). Records are plain serde values; the store adds a
//! version for conditional writes.

use serde::{Deserialize, Serialize};

use crate::position::BinlogPosition;
use crate::task::TaskSpec;

/// What an operator reads in `ferry status`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    NotStarted,
    Prechecking,
    Migrating,
    Synchronizing,
    Verifying,
    AwaitingSwitch,
    Switching,
    ReverseSynchronizing,
    Stopped,
    Completed,
    Failed,
    Releasing,
    Released,
}

impl TaskState {
    /// Whether a stage is at work (or failed) in this state, so status names it;
    /// a completed, stopped or released task has none.
    pub fn has_stage(self) -> bool {
        !matches!(
            self,
            TaskState::Completed | TaskState::Stopped | TaskState::Released
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::NotStarted => "not started",
            TaskState::Prechecking => "prechecking",
            TaskState::Migrating => "migrating",
            TaskState::Synchronizing => "synchronizing",
            TaskState::Verifying => "verifying",
            TaskState::AwaitingSwitch => "awaiting switch",
            TaskState::Switching => "switching",
            TaskState::ReverseSynchronizing => "reverse synchronizing",
            TaskState::Stopped => "stopped",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Releasing => "releasing",
            TaskState::Released => "released",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorInfo {
    /// Stable `Ferry.*` name.
    pub name: String,
    pub message: String,
    pub at_ms: u64,
}

/// Where the full copy's snapshot starts in the source's binlog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotPoint {
    pub position: BinlogPosition,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRecord {
    pub task_id: String,
    pub spec: TaskSpec,
    pub state: TaskState,
    /// The stage running or last run (`grant-check`, `plan`, `copy-chunk`, ...).
    #[serde(default)]
    pub stage: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    #[serde(default)]
    pub last_error: Option<ErrorInfo>,
    #[serde(default)]
    pub precheck: Option<PrecheckReport>,
    /// Recorded by `plan` before the first row is read.
    #[serde(default)]
    pub snapshot: Option<SnapshotPoint>,
    /// Source position when the last chunk finished: idempotent apply up to here.
    #[serde(default)]
    pub copy_finished: Option<SnapshotPoint>,
    /// Whether plan finished (tables created and chunks recorded).
    #[serde(default)]
    pub planned: bool,
    /// Differences a verify found that nothing resolved yet: the switch refuses
    /// while this is set (unless forced), and `ferry status` says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<Attention>,
}

/// A verify run's differences, waiting for the operator (or a repair).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attention {
    pub differences: u64,
    #[serde(default)]
    pub unsettled: u64,
    /// The verify run that found them.
    pub run_id: String,
    pub at_ms: u64,
}

impl Attention {
    /// `attention: N differences, see the report`, with the way out.
    /// A repair is offered for differences only: an unsettled row (changing,
    /// or not yet applied by the sync, when compared) is compared again.
    pub fn message(&self, task_id: &str) -> String {
        let mut what = format!("{} difference(s)", self.differences);
        let mut ways = String::new();
        if self.differences > 0 {
            ways.push_str(&format!(
                "`ferry verify {task_id} --repair` rewrites the differences with the source as truth and verifies again; "
            ));
        }
        if self.unsettled > 0 {
            what.push_str(&format!(" and {} unsettled row(s)", self.unsettled));
            ways.push_str(&format!(
                "unsettled rows were changing, or not yet applied by the sync, when compared: with the sync \
                 running, `ferry verify {task_id} --mode recheck` compares them again; "
            ));
        }
        format!(
            "attention: {what}, see `ferry status {task_id}` and `ferry verify {task_id} --mode recheck --report FILE`; \
             {ways}the switch waits until a verify is clean (`ferry switch {task_id} --force` overrides, recorded)"
        )
    }
}

impl TaskRecord {
    /// This incarnation of the task: a task registered again under the same
    /// task_id (its records lost without `ferry release`) is another one. Its
    /// checkpoint rows on the databases carry it, so rows an earlier
    /// incarnation left are never taken for this one's. The registration time
    /// never changes for a record, and two registrations of one task_id in the
    /// same millisecond would be a single store write (the second is refused).
    pub fn incarnation(&self) -> String {
        self.created_ms.to_string()
    }

    /// Whether the task has written anything to the databases: a snapshot point
    /// is recorded before the first table is created on the target.
    pub fn wrote_anything(&self) -> bool {
        self.snapshot.is_some() || self.planned
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

/// One precheck item. A failed item is a normal result, not an exception.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckItem {
    /// Stable id of the check, e.g. `source.binlog_format`.
    pub check: String,
    /// What it is about: `source`, `target`, `shop.orders`, ...
    pub subject: String,
    pub status: CheckStatus,
    pub message: String,
    /// The exact statement or setting that fixes it.
    #[serde(default)]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PrecheckReport {
    pub ok: bool,
    pub items: Vec<CheckItem>,
}

impl PrecheckReport {
    pub fn new(items: Vec<CheckItem>) -> PrecheckReport {
        let ok = !items.iter().any(|i| i.status == CheckStatus::Fail);
        PrecheckReport { ok, items }
    }

    /// A readable multi-line rendering: failures first, each with its fix.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut items: Vec<&CheckItem> = self.items.iter().collect();
        items.sort_by_key(|i| match i.status {
            CheckStatus::Fail => 0,
            CheckStatus::Warn => 1,
            CheckStatus::Pass => 2,
        });
        for i in items {
            let tag = match i.status {
                CheckStatus::Pass => "pass",
                CheckStatus::Warn => "WARN",
                CheckStatus::Fail => "FAIL",
            };
            out.push_str(&format!(
                "[{tag}] {} ({}): {}\n",
                i.check, i.subject, i.message
            ));
            if let (Some(fix), true) = (&i.fix, i.status != CheckStatus::Pass) {
                out.push_str(&format!("       fix: {fix}\n"));
            }
        }
        out
    }
}

/// A table's phase, as a tagged enum: an error carries the reason and the fix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TablePhase {
    Planned,
    Copying,
    Copied,
    Errored { reason: String, solution: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableRecord {
    pub source_db: String,
    pub source_table: String,
    pub target_db: String,
    pub target_table: String,
    /// Columns of the key the chunks are ranges of (primary key or non-null unique key).
    pub key_columns: Vec<String>,
    pub phase: TablePhase,
    pub rows_estimate: u64,
    pub chunks_total: u64,
}

impl TableRecord {
    /// `db.table` on the source: the key of the record.
    pub fn source_name(&self) -> String {
        format!("{}.{}", self.source_db, self.source_table)
    }
}

/// One value of a chunk boundary key, typed so it binds back exactly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum KeyValue {
    Int(i64),
    Uint(u64),
    /// Character data as text.
    Text(String),
    /// Binary data, hex encoded.
    Bytes(String),
    /// DECIMAL, temporal and other values whose text form binds exactly.
    Literal(String),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChunkState {
    Pending,
    Running,
    Done,
    Failed,
}

/// A half-open primary-key range `[lower, upper)` of one table; `None` is unbounded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkRecord {
    /// Unique within the task and sortable: `<table index:04>-<seq:06>`.
    pub chunk_id: String,
    pub source_db: String,
    pub source_table: String,
    pub lower: Option<Vec<KeyValue>>,
    pub upper: Option<Vec<KeyValue>>,
    pub state: ChunkState,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub lease_until_ms: u64,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub rows: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub last_error: Option<String>,
}

impl ChunkRecord {
    pub fn table_name(&self) -> String {
        format!("{}.{}", self.source_db, self.source_table)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Source to target.
    Forward,
    /// Target back to source, after switchover.
    Reverse,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
        }
    }
}

/// Where a link's reader got to. The epoch fences out older appliers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointRecord {
    pub direction: Direction,
    pub position: BinlogPosition,
    pub epoch: u64,
    pub updated_ms: u64,
    /// Last measured lag in milliseconds, and row changes applied so far.
    #[serde(default)]
    pub lag_ms: Option<u64>,
    #[serde(default)]
    pub applied_rows: u64,
}

impl CheckpointRecord {
    /// The epoch a link holds once it is retired (the forward link at switchover): no
    /// applier can own it again, and [`crate::store::Repo::put_checkpoint`] refuses to
    /// write a live checkpoint over it.
    pub const RETIRED_EPOCH: u64 = i64::MAX as u64;

    pub fn is_retired(&self) -> bool {
        self.epoch >= Self::RETIRED_EPOCH
    }
}

/// Who works on a task, as every running stage renews it in the task store
/// (record `alive`): the operator's answer to "is anything running?".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Liveness {
    pub worker: String,
    #[serde(default)]
    pub stage: Option<String>,
    pub started_ms: u64,
    /// The last heartbeat.
    pub seen_ms: u64,
    /// Set when the worker ended cleanly (a kill leaves it unset).
    #[serde(default)]
    pub ended_ms: Option<u64>,
}

impl Liveness {
    /// Heartbeats come every [`Liveness::BEAT_MS`]; a worker not seen for this
    /// long is gone (longer than the state machine's Wait states, between which
    /// no stage runs in the cloud).
    pub const STALE_MS: u64 = 20_000;
    pub const BEAT_MS: u64 = 2_000;

    pub fn running(&self, now_ms: u64) -> bool {
        self.ended_ms.is_none() && now_ms.saturating_sub(self.seen_ms) <= Self::STALE_MS
    }
}

/// What `ferry status` says of a task's worker (text and `--json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LivenessView {
    pub running: bool,
    #[serde(default)]
    pub worker: Option<String>,
    /// The last heartbeat (or the end) of the last worker.
    #[serde(default)]
    pub seen_ms: Option<u64>,
    /// `running (worker W, seen 2 s ago)` or `not running since <time>: resume with ...`.
    pub text: String,
}

impl LivenessView {
    /// `running`: what the caller knows better than the heartbeat's age (the
    /// local lock file: no process holds it, so none runs), else `None`.
    /// `resume` is the command that continues the task.
    pub fn of(
        alive: Option<&Liveness>,
        state: TaskState,
        running: Option<bool>,
        resume: &str,
        now_ms: u64,
    ) -> LivenessView {
        let is_running = running.unwrap_or_else(|| alive.is_some_and(|a| a.running(now_ms)));
        let worker = alive.map(|a| a.worker.clone());
        let seen_ms = alive.map(|a| a.ended_ms.unwrap_or(a.seen_ms));
        let text = match (is_running, alive) {
            (true, Some(a)) => format!(
                "running (worker {}, seen {} s ago)",
                a.worker,
                now_ms.saturating_sub(a.seen_ms) / 1000
            ),
            (true, None) => "running (no heartbeat yet)".to_string(),
            (false, _) if matches!(state, TaskState::Completed | TaskState::Released) => {
                format!("not running ({})", state.as_str())
            }
            (false, Some(_)) => format!(
                "not running since {}: resume with {resume}",
                utc_text(seen_ms.unwrap_or(0))
            ),
            (false, None) => format!("not running: resume with {resume}"),
        };
        LivenessView {
            running: is_running,
            worker,
            seen_ms,
            text,
        }
    }
}

/// `2026-12-05 07:41:09 UTC` from milliseconds since the epoch.
pub fn utc_text(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Operator requests, kept apart from the task record so they never race with stage updates.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ControlFlags {
    #[serde(default)]
    pub switch_requested: bool,
    #[serde(default)]
    pub stop_requested: bool,
    /// The operator switched despite unresolved verify differences (`--force`).
    #[serde(default)]
    pub switch_force: bool,
}

#[cfg(test)]
mod attention_tests {
    use super::*;

    fn attention(differences: u64, unsettled: u64) -> String {
        let a = Attention {
            differences,
            unsettled,
            run_id: "r1".into(),
            at_ms: 0,
        };
        a.message("t")
    }

    #[test]
    fn a_repair_is_offered_for_differences_and_a_recheck_for_unsettled_rows() {
        let d = attention(3, 0);
        assert!(d.starts_with("attention: 3 difference(s), "), "{d}");
        assert!(d.contains("`ferry verify t --repair`"), "{d}");
        assert!(!d.contains("unsettled"), "{d}");
        let u = attention(0, 2);
        assert!(
            u.starts_with("attention: 0 difference(s) and 2 unsettled row(s), "),
            "{u}"
        );
        assert!(!u.contains("--repair"), "nothing to repair: {u}");
        assert!(
            u.contains("with the sync running, `ferry verify t --mode recheck`"),
            "{u}"
        );
        let both = attention(1, 1);
        assert!(
            both.contains("--repair") && both.contains("unsettled rows were"),
            "{both}"
        );
    }
}

#[cfg(test)]
mod liveness_tests {
    use super::*;

    #[test]
    fn utc_text_is_the_calendar_time() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(1_704_067_200_123), "2024-01-01 00:00:00 UTC");
        assert_eq!(utc_text(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
    }

    #[test]
    fn a_worker_is_running_until_its_heartbeat_is_stale_or_it_ended() {
        let a = Liveness {
            worker: "w1".into(),
            stage: None,
            started_ms: 1_000,
            seen_ms: 10_000,
            ended_ms: None,
        };
        let v = LivenessView::of(
            Some(&a),
            TaskState::Synchronizing,
            None,
            "`ferry resume t`",
            12_500,
        );
        assert!(v.running);
        assert_eq!(v.text, "running (worker w1, seen 2 s ago)");
        let late = 10_000 + Liveness::STALE_MS + 1;
        let v = LivenessView::of(
            Some(&a),
            TaskState::Synchronizing,
            None,
            "`ferry resume t`",
            late,
        );
        assert!(!v.running);
        assert_eq!(
            v.text,
            "not running since 1970-01-01 00:00:10 UTC: resume with `ferry resume t`"
        );
        let v = LivenessView::of(
            Some(&a),
            TaskState::Synchronizing,
            Some(false),
            "`ferry resume t`",
            12_500,
        );
        assert!(
            !v.running,
            "the lock file knows better than the heartbeat's age"
        );
        let ended = Liveness {
            ended_ms: Some(11_000),
            ..a
        };
        assert!(!ended.running(11_500));
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    MissingInTarget,
    ExtraInTarget,
    ValuesDiffer,
}

/// One difference found by verify.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiffRecord {
    pub source_db: String,
    pub source_table: String,
    pub key: Vec<KeyValue>,
    pub kind: DiffKind,
    /// For `values_differ`: column, source value, target value (as text; `NULL` for null).
    #[serde(default)]
    pub columns: Vec<(String, String, String)>,
}

/// Counts over a task's chunks.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkSummary {
    pub total: u64,
    pub pending: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub rows: u64,
    pub bytes: u64,
}

//! The `switch` stage: make the target the primary while changes flow back to
//! the source (the rollback plan).
//!
//! Input `{"task_id"}` (the switch), or `{"task_id","action":"phase"}` (which
//! link the state machine should run now: `{"task_id","phase","slices":0,"slice_budget"}`,
//! the budget being the task's `options.slice_budget`). Output of a switch:
//! `{"task_id","ready","done","gave_up","stop_requested","reverse","phase","reason"}`.
//!
//! A requested switch first waits, one readiness check per call, until the full
//! copy is done, the forward link's lag is at most `options.switch_max_lag_ms`
//! and the source had no row change to a selected table for
//! `options.switch_quiet_seconds`; a switch not ready within
//! `options.switch_timeout_seconds` gives up (the forward link goes on). Then,
//! in order, each step recorded with its outcome in the record `switch#steps`:
//!
//! 1. `final_apply`: the forward link applies up to the source's position read
//!    at this step; the source's binlog after that position is read again and
//!    must hold no change to a selected table (else the step repeats, and after
//!    three tries the switch waits again: a writer is still active).
//! 2. `final_verify` (with `options.switch_verify`): the verify stage, clean;
//!    `changed` (what the sync touched since the last clean full verify, full
//!    without one) unless `options.switch_verify_full`.
//! 3. `retire_forward`: the forward link's checkpoint rows on the target take
//!    [`CheckpointRecord::RETIRED_EPOCH`], and so does its checkpoint in the
//!    store, which from then on refuses a live one (a late forward applier is
//!    fenced, and no new epoch can revive the link).
//! 4. `record_reverse_start`: the target's binlog position, read once.
//! 5. `start_reverse` (with "reverse" in types): the reverse link's checkpoint,
//!    at that position, in the store and on the source.
//! 6. `finish`: the switch flag is cleared; the task is reverse synchronizing
//!    (or completed without "reverse").
//!
//! Invariant: every step is idempotent and recorded only after it took effect,
//! and no step is redone once recorded, so a kill anywhere and a rerun complete
//! the switch exactly once: the reverse link's start position is read once, and
//! only after the forward link was retired.
//!
//! Loop safety (why Ferry's own writes never travel back). Every forward commit
//! on the target carries the forward link's checkpoint update, conditional on
//! its epoch, in the same transaction. Step 3 retires the link in one committed
//! UPDATE of those rows *before* step 4 reads the target's position, and the
//! target's binlog is in commit order, so every forward transaction the target
//! ever commits lies before the reverse link's start: a forward applier still
//! running waits on the row lock and commits before the retirement, or finds
//! the row retired and rolls back. The reverse link therefore never reads a
//! change the forward link wrote, and the forward link (retired, never read
//! again) never reads what the reverse link writes to the source. We chose this
//! over `SET sql_log_bin = 0` (needs SUPER / BINLOG ADMIN, which a
//! least-privilege migration user does not have, and hides the applied changes
//! from the target's own replicas) and over server ids (Ferry's forward writes
//! carry the target's server id, like the application's). Not covered: a DDL
//! the forward link had begun when it was retired (a switch waits for a quiet
//! source, so none is in flight).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::model::{CheckpointRecord, ChunkSummary, Direction, TaskRecord, TaskState};
use ferry_core::position::BinlogPosition;
use ferry_core::secret::SecretSource;
use ferry_core::store::{now_ms, ItemStore, Repo};
use ferry_core::task::{MigrationType, TaskSpec};
use ferry_core::{FerryError, Stage};
use ferry_mysql::apply::{apply_connection, failpoint_for, pos_lt, Link};
use ferry_mysql::binlog::{
    current_position, server_id_for, BinlogEvent, BinlogReader, ReaderOptions,
};
use ferry_mysql::Endpoint;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::incremental_apply::ApplyInput;
use crate::verify::{Mode, VerifyInput};
use crate::{task_id, StageEnv};

/// The record of a task's switch.
pub const SWITCH_SK: &str = "switch#steps";

/// Steps of a switch, in order.
pub const STEPS: &[&str] = &[
    "ready",
    "final_apply",
    "final_verify",
    "retire_forward",
    "record_reverse_start",
    "start_reverse",
    "finish",
];

/// Tries of the final catch-up before the switch waits again for a quiet source.
const FINAL_APPLY_TRIES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchPhase {
    /// Requested; waiting until it is safe to start.
    Waiting,
    /// Started: the steps run and are completed by a rerun.
    Switching,
    /// The target is the primary.
    Done,
    /// Not ready in time (or the final verify found differences); the forward link goes on.
    GaveUp,
}

impl SwitchPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchPhase::Waiting => "waiting",
            SwitchPhase::Switching => "switching",
            SwitchPhase::Done => "done",
            SwitchPhase::GaveUp => "gave_up",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Ok,
    Skipped,
    Waiting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchStep {
    pub step: String,
    pub outcome: StepOutcome,
    pub detail: String,
    pub at_ms: u64,
}

/// Record `switch#steps`: what an operator reads to see what the switch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchRecord {
    pub phase: SwitchPhase,
    pub requested_ms: u64,
    #[serde(default)]
    pub started_ms: Option<u64>,
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// Why the switch waits (or gave up).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub checks: u64,
    #[serde(default)]
    pub final_apply_tries: u32,
    /// The source position the final catch-up applies up to.
    #[serde(default)]
    pub source_final: Option<BinlogPosition>,
    /// The forward link's epoch before it was retired.
    #[serde(default)]
    pub retired_epoch: Option<u64>,
    /// The target position where the reverse link starts.
    #[serde(default)]
    pub reverse_start: Option<BinlogPosition>,
    #[serde(default)]
    pub steps: Vec<SwitchStep>,
}

impl SwitchRecord {
    fn new() -> SwitchRecord {
        SwitchRecord {
            phase: SwitchPhase::Waiting,
            requested_ms: now_ms(),
            started_ms: None,
            finished_ms: None,
            reason: None,
            checks: 0,
            final_apply_tries: 0,
            source_final: None,
            retired_epoch: None,
            reverse_start: None,
            steps: Vec::new(),
        }
    }

    /// Whether `step` took effect (ok or skipped).
    pub fn completed(&self, step: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.step == step && s.outcome != StepOutcome::Waiting)
    }

    fn push(&mut self, step: &str, outcome: StepOutcome, detail: String) {
        self.steps.push(SwitchStep {
            step: step.to_string(),
            outcome,
            detail,
            at_ms: now_ms(),
        });
    }

    /// Note why the switch waits; a reason already noted last is not repeated.
    fn wait(&mut self, step: &str, reason: String) {
        let same = self
            .steps
            .last()
            .is_some_and(|s| s.outcome == StepOutcome::Waiting && s.detail == reason);
        if !same {
            self.push(step, StepOutcome::Waiting, reason.clone());
        }
        self.reason = Some(reason);
    }

    /// A switch is in progress once started and until done: release is refused meanwhile.
    pub fn in_progress(&self) -> bool {
        self.phase == SwitchPhase::Switching
    }
}

/// The task's switch record, if a switch was ever requested.
pub async fn record<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
) -> Result<Option<SwitchRecord>, FerryError> {
    repo.get_record(task_id, SWITCH_SK).await
}

/// Input of the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchInput {
    /// `{"task_id"}` (or `"action": "switch"`): run the switch's steps.
    Switch { task_id: String },
    /// `{"task_id","action":"phase"}`: which link runs now.
    Phase { task_id: String },
}

impl SwitchInput {
    pub fn from_json(input: &Value) -> Result<Self, FerryError> {
        let task_id = task_id(input)?;
        match input
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("switch")
        {
            "switch" => Ok(SwitchInput::Switch { task_id }),
            "phase" => Ok(SwitchInput::Phase { task_id }),
            other => Err(FerryError::BadTask(format!(
                "switch: \"action\" is \"{other}\"; use \"switch\" or \"phase\""
            ))),
        }
    }
}

/// Output of a switch call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchOutput {
    pub task_id: String,
    /// The switch started (it may still be running).
    pub ready: bool,
    pub done: bool,
    pub gave_up: bool,
    pub stop_requested: bool,
    /// The task has a reverse link after the switch.
    pub reverse: bool,
    pub phase: String,
    pub reason: Option<String>,
}

/// Output of a phase call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseOutput {
    pub task_id: String,
    /// `none`, `forward`, `switching`, `reverse` or `completed`.
    pub phase: String,
    /// The state machine's slice counter (starts at 0) and its budget
    /// before it continues as a new execution.
    pub slices: u64,
    pub slice_budget: u64,
}

/// The stage as the state machine calls it: JSON in, JSON out.
pub async fn run<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    input: Value,
    deadline: Instant,
) -> Result<Value, FerryError> {
    match SwitchInput::from_json(&input)? {
        SwitchInput::Switch { task_id } => {
            crate::to_output(&Switch::load(env, &task_id).await?.run(deadline).await?)
        }
        SwitchInput::Phase { task_id } => crate::to_output(&phase(&env.repo, &task_id).await?),
    }
}

/// Which link runs now: `none` (no incremental sync), `forward`, `switching`,
/// `reverse`, or `completed`. The state machine branches on it after the copy.
pub async fn phase<S: ItemStore>(repo: &Repo<S>, task_id: &str) -> Result<PhaseOutput, FerryError> {
    let task = repo.task(task_id).await?;
    let rec = record(repo, task_id).await?;
    let (phase, state) = match rec.map(|r| r.phase) {
        // No link follows the copy: the task is done once the copy (and its verify) is.
        _ if !task.spec.has(MigrationType::Incremental) => ("none", Some(TaskState::Completed)),
        Some(SwitchPhase::Switching) => ("switching", Some(TaskState::Switching)),
        Some(SwitchPhase::Done) if task.spec.has(MigrationType::Reverse) => {
            ("reverse", Some(TaskState::ReverseSynchronizing))
        }
        Some(SwitchPhase::Done) => ("completed", Some(TaskState::Completed)),
        _ => ("forward", Some(TaskState::Synchronizing)),
    };
    if let Some(state) = state.filter(|s| *s != task.state) {
        let stage = (phase != "none").then_some(Stage::IncrementalApply.name());
        repo.set_state(task_id, state, stage).await?;
    }
    Ok(PhaseOutput {
        task_id: task_id.to_string(),
        phase: phase.to_string(),
        slices: 0,
        slice_budget: task.spec.options.slice_budget,
    })
}

/// Whether the switch may start, or why not.
enum Readiness {
    Ready(String),
    NotReady(String),
}

struct Switch<'a, S, K> {
    env: &'a StageEnv<S, K>,
    task: TaskRecord,
    rec: SwitchRecord,
    source: Endpoint,
    target: Endpoint,
}

impl<'a, S: ItemStore, K: SecretSource> Switch<'a, S, K> {
    async fn load(env: &'a StageEnv<S, K>, id: &str) -> Result<Switch<'a, S, K>, FerryError> {
        let task = env.repo.task(id).await?;
        if !task.spec.has(MigrationType::Incremental) {
            return Err(FerryError::BadTask(format!(
                "task {id} has no \"incremental\" in its types: there is no link to switch; the target is complete after the full copy"
            )));
        }
        let rec = match record(&env.repo, id).await? {
            // A new request after one that gave up starts afresh.
            Some(r) if r.phase != SwitchPhase::GaveUp => r,
            _ => SwitchRecord::new(),
        };
        let (source, target) = env.endpoints(&task.spec).await?;
        Ok(Switch {
            env,
            task,
            rec,
            source,
            target,
        })
    }

    fn id(&self) -> &str {
        &self.task.task_id
    }

    fn spec(&self) -> &TaskSpec {
        &self.task.spec
    }

    fn reverse(&self) -> bool {
        self.spec().has(MigrationType::Reverse)
    }

    async fn save(&self) -> Result<(), FerryError> {
        self.env
            .repo
            .put_record(self.id(), SWITCH_SK, &self.rec)
            .await
    }

    /// Record a step that took effect, then give a test the chance to kill the switch there.
    async fn complete(
        &mut self,
        step: &str,
        outcome: StepOutcome,
        detail: String,
    ) -> Result<(), FerryError> {
        tracing::info!(task = %self.id(), step, detail = %detail, "switch step done");
        self.rec.push(step, outcome, detail);
        self.save().await?;
        failpoint_for(self.id(), &format!("switch.after_{step}"))
    }

    fn output(&self, ready: bool, stop_requested: bool) -> SwitchOutput {
        SwitchOutput {
            task_id: self.id().to_string(),
            ready,
            done: self.rec.phase == SwitchPhase::Done,
            gave_up: self.rec.phase == SwitchPhase::GaveUp,
            stop_requested,
            reverse: self.reverse(),
            phase: self.rec.phase.as_str().to_string(),
            reason: self.rec.reason.clone(),
        }
    }

    async fn run(mut self, deadline: Instant) -> Result<SwitchOutput, FerryError> {
        if self.rec.phase == SwitchPhase::Done {
            return Ok(self.output(true, false));
        }
        if self.rec.phase == SwitchPhase::Waiting {
            if self.env.repo.flags(self.id()).await?.stop_requested {
                return Ok(self.output(false, true));
            }
            if !self.wait_until_ready(deadline).await? {
                return Ok(self.output(false, false));
            }
        }
        if !self.final_apply(deadline).await? {
            return Ok(self.output(self.rec.phase == SwitchPhase::Switching, false));
        }
        if !self.final_verify(deadline).await? {
            return Ok(self.output(false, false));
        }
        // Anything a later step needs is checked before the forward link is
        // retired: a switch that cannot finish never starts.
        if !self.rec.completed("retire_forward") {
            if let Err(reason) = self.reverse_preflight().await {
                self.give_up(reason).await?;
                return Ok(self.output(false, false));
            }
        }
        // From here on the steps are short and never stop at the deadline: the
        // forward link is about to be retired, and only a finished switch may follow.
        self.retire_forward().await?;
        self.record_reverse_start().await?;
        self.start_reverse().await?;
        self.finish().await?;
        Ok(self.output(true, false))
    }

    // ---- step: ready ----

    async fn wait_until_ready(&mut self, deadline: Instant) -> Result<bool, FerryError> {
        self.rec.checks += 1;
        match self.readiness(deadline).await? {
            Readiness::Ready(mut detail) => {
                if let Some(a) = self.env.repo.task(self.id()).await?.attention {
                    detail.push_str(&format!(
                        "; forced (--force) despite {} unresolved verify difference(s) of run {}",
                        a.differences, a.run_id
                    ));
                }
                self.rec.phase = SwitchPhase::Switching;
                self.rec.started_ms = Some(now_ms());
                self.rec.reason = None;
                self.env
                    .repo
                    .set_state(self.id(), TaskState::Switching, Some(Stage::Switch.name()))
                    .await?;
                self.complete("ready", StepOutcome::Ok, detail).await?;
                Ok(true)
            }
            Readiness::NotReady(reason) => {
                let waited = now_ms().saturating_sub(self.rec.requested_ms) / 1000;
                let limit = self.spec().options.switch_timeout_seconds;
                if waited >= limit {
                    self.give_up(format!(
                        "the switch was not ready within options.switch_timeout_seconds = {limit} s; last reason: {reason}. \
                         The forward link goes on; request the switch again with `ferry switch {}`",
                        self.id()
                    ))
                    .await?;
                } else {
                    tracing::info!(task = %self.id(), reason = %reason, "switch waits");
                    self.rec.wait(
                        "ready",
                        format!("{reason} (waited {waited} s of {limit} s)"),
                    );
                    self.save().await?;
                    self.env
                        .repo
                        .set_state(
                            self.id(),
                            TaskState::AwaitingSwitch,
                            Some(Stage::Switch.name()),
                        )
                        .await?;
                }
                Ok(false)
            }
        }
    }

    async fn give_up(&mut self, reason: String) -> Result<(), FerryError> {
        tracing::warn!(task = %self.id(), reason = %reason, "switch gave up");
        self.rec.phase = SwitchPhase::GaveUp;
        self.rec.finished_ms = Some(now_ms());
        self.rec.wait("ready", reason);
        self.save().await?;
        self.env
            .repo
            .update_flags(self.id(), |f| f.switch_requested = false)
            .await?;
        self.env
            .repo
            .set_state(
                self.id(),
                TaskState::Synchronizing,
                Some(Stage::Switch.name()),
            )
            .await?;
        Ok(())
    }

    async fn readiness(&self, deadline: Instant) -> Result<Readiness, FerryError> {
        let id = self.id();
        let chunks: ChunkSummary = self.env.repo.chunk_summary(id).await?;
        let left = chunks.pending + chunks.running + chunks.failed;
        if !self.task.planned || left > 0 {
            return Ok(Readiness::NotReady(format!(
                "the full copy is still running ({left} of {} chunks left); the switch starts after it and the forward link caught up",
                chunks.total
            )));
        }
        let task = self.env.repo.task(id).await?;
        if let Some(attention) = &task.attention {
            if !self.env.repo.flags(id).await?.switch_force {
                return Ok(Readiness::NotReady(format!(
                    "{}; the switch refuses while a verify difference is unresolved",
                    attention.message(id)
                )));
            }
            tracing::warn!(task = %id, differences = attention.differences, "switch forced despite unresolved verify differences");
        }
        let Some(ck) = self.env.repo.checkpoint(id, Direction::Forward).await? else {
            return Ok(Readiness::NotReady(
                "the forward link has not started yet".into(),
            ));
        };
        let max = self.spec().options.switch_max_lag_ms;
        match ck.lag_ms {
            None => {
                return Ok(Readiness::NotReady(
                    "the forward link's lag is not measured yet".into(),
                ))
            }
            Some(lag) if lag > max => {
                return Ok(Readiness::NotReady(format!(
                "the forward link's lag is {lag} ms, above options.switch_max_lag_ms = {max} ms; \
                     wait for it to catch up (are the application's writers still running?)"
            )))
            }
            Some(_) => {}
        }
        let quiet = Duration::from_secs(self.spec().options.switch_quiet_seconds);
        let mut conn = self.source.connect().await?;
        let from = current_position(&mut conn, &self.source.describe()).await?;
        drop(conn);
        if let Some(write) = self.probe_writes(&from, quiet, deadline).await? {
            return Ok(Readiness::NotReady(format!(
                "the source is still being written ({write} within the last {} s); stop the application's writers on the source first",
                quiet.as_secs()
            )));
        }
        Ok(Readiness::Ready(format!(
            "forward lag {} ms (at most {max}), source quiet for {} s, full copy done ({} chunks)",
            ck.lag_ms.unwrap_or(0),
            quiet.as_secs(),
            chunks.total
        )))
    }

    /// Read the source's binlog from `from` for at least `window` and up to its
    /// end: the first row change to a selected table, if any.
    async fn probe_writes(
        &self,
        from: &BinlogPosition,
        window: Duration,
        deadline: Instant,
    ) -> Result<Option<String>, FerryError> {
        let spec = Arc::new(self.spec().clone());
        let filter = Arc::new(move |db: &str, t: &str| spec.selects(db, t));
        let mut opts =
            ReaderOptions::new(server_id_for(&format!("{}/switch", self.id()), 0), filter);
        opts.heartbeat = Duration::from_millis(500);
        let reader = BinlogReader::open(&self.source, from, opts).await?;
        let (tx, mut rx) = mpsc::channel(64);
        let reading = tokio::spawn(read_events(reader, tx));
        let result = self.watch(&mut rx, window, deadline).await;
        reading.abort();
        result
    }

    async fn watch(
        &self,
        rx: &mut mpsc::Receiver<Result<(BinlogEvent, BinlogPosition), FerryError>>,
        window: Duration,
        deadline: Instant,
    ) -> Result<Option<String>, FerryError> {
        let window_end = Instant::now() + window;
        let hard_end = deadline.max(window_end + Duration::from_secs(30));
        let mut end: Option<BinlogPosition> = None;
        loop {
            let now = Instant::now();
            if now >= hard_end {
                return Ok(Some(
                    "a backlog the probe could not read to its end in time".into(),
                ));
            }
            if now >= window_end && end.is_none() {
                let mut conn = self.source.connect().await?;
                end = Some(current_position(&mut conn, &self.source.describe()).await?);
            }
            let ev = match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                Err(_) => continue,
                Ok(None) => {
                    return Err(FerryError::Transient(
                        "the switch's binlog probe stopped".into(),
                    ))
                }
                Ok(Some(ev)) => ev?,
            };
            match ev {
                (BinlogEvent::Rows(rows), at) if !rows.is_empty() => {
                    let t = &rows[0].table;
                    return Ok(Some(format!("a change to {}.{} at {at}", t.db, t.table)));
                }
                (BinlogEvent::Heartbeat { .. }, _) if now >= window_end => return Ok(None),
                (_, at) => {
                    if end.as_ref().is_some_and(|e| !pos_lt(&at, e)) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    // ---- step: final_apply ----

    /// Apply the forward link up to the source's position; false when the
    /// deadline came first or a writer is still active.
    async fn final_apply(&mut self, deadline: Instant) -> Result<bool, FerryError> {
        if self.rec.completed("final_apply") {
            return Ok(true);
        }
        loop {
            let target = match self.rec.source_final.clone() {
                Some(p) => p,
                None => {
                    let mut conn = self.source.connect().await?;
                    let p = current_position(&mut conn, &self.source.describe()).await?;
                    self.rec.source_final = Some(p.clone());
                    self.rec.final_apply_tries += 1;
                    self.save().await?;
                    p
                }
            };
            let Some(applied) = self.apply_forward_to(&target, deadline).await? else {
                self.rec.reason = Some(format!(
                    "final catch-up: applying the forward link up to the source's {target}"
                ));
                self.save().await?;
                return Ok(false);
            };
            match self.probe_writes(&target, Duration::ZERO, deadline).await? {
                None => {
                    self.complete(
                        "final_apply",
                        StepOutcome::Ok,
                        format!("forward link applied up to {applied} (source position at the final catch-up: {target})"),
                    )
                    .await?;
                    return Ok(true);
                }
                Some(write) if self.rec.final_apply_tries < FINAL_APPLY_TRIES => {
                    tracing::warn!(task = %self.id(), write = %write, "source written during the final catch-up; once more");
                    self.rec.source_final = None;
                }
                Some(write) => {
                    self.rec.phase = SwitchPhase::Waiting;
                    self.rec.source_final = None;
                    self.rec.final_apply_tries = 0;
                    self.rec.wait(
                        "final_apply",
                        format!("the source was written during the final catch-up ({write}); stop the application's writers, the switch waits"),
                    );
                    self.save().await?;
                    self.env
                        .repo
                        .set_state(
                            self.id(),
                            TaskState::AwaitingSwitch,
                            Some(Stage::Switch.name()),
                        )
                        .await?;
                    return Ok(false);
                }
            }
        }
    }

    /// Run the forward link until its checkpoint is at or past `target`: the
    /// position it got to, or `None` when the deadline came first.
    async fn apply_forward_to(
        &self,
        target: &BinlogPosition,
        deadline: Instant,
    ) -> Result<Option<BinlogPosition>, FerryError> {
        loop {
            if let Some(ck) = self
                .env
                .repo
                .checkpoint(self.id(), Direction::Forward)
                .await?
            {
                if !pos_lt(&ck.position, target) {
                    return Ok(Some(ck.position));
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            let input = ApplyInput {
                idle_ms: Some(500),
                ..ApplyInput::new(self.id(), Direction::Forward)
            };
            // Boxed: the apply's future is large, and a switch nests it.
            Box::pin(crate::incremental_apply::run_typed(
                self.env, input, deadline,
            ))
            .await?;
        }
    }

    // ---- step: final_verify ----

    async fn final_verify(&mut self, deadline: Instant) -> Result<bool, FerryError> {
        if self.rec.completed("final_verify") {
            return Ok(true);
        }
        if !self.spec().options.switch_verify {
            self.complete(
                "final_verify",
                StepOutcome::Skipped,
                "options.switch_verify is off".into(),
            )
            .await?;
            return Ok(true);
        }
        // What the sync changed since the last clean full verify (full without one).
        let mode = match self.spec().options.switch_verify_full {
            true => Mode::Full,
            false => Mode::Changed,
        };
        let input = VerifyInput::on_demand(self.id(), mode);
        let out = Box::pin(crate::verify::run_typed(self.env, input, deadline)).await?;
        if !out.done {
            self.rec.reason = Some("final verify still running".into());
            self.save().await?;
            return Ok(false);
        }
        let differences = out.differences;
        if !out.clean {
            self.give_up(format!(
                "the final verify found {differences} difference(s) after the final catch-up; the forward link goes on. \
                 Read them with `ferry status {}`, repair, and request the switch again",
                self.id()
            ))
            .await?;
            return Ok(false);
        }
        let rows = out.rows;
        self.complete(
            "final_verify",
            StepOutcome::Ok,
            format!("clean: {rows} rows compared"),
        )
        .await?;
        Ok(true)
    }

    // ---- step: retire_forward ----

    async fn retire_forward(&mut self) -> Result<(), FerryError> {
        if self.rec.completed("retire_forward") {
            return Ok(());
        }
        let id = self.id().to_string();
        let ck = self
            .env
            .repo
            .checkpoint(&id, Direction::Forward)
            .await?
            .ok_or_else(|| {
                FerryError::Internal(format!(
                    "task {id}: the forward link has no checkpoint at the switch"
                ))
            })?;
        let epoch = *self.rec.retired_epoch.get_or_insert(ck.epoch);
        let link = Link {
            meta_schema: self.spec().options.meta_schema.clone(),
            task_id: id.clone(),
            direction: Direction::Forward,
            epoch: CheckpointRecord::RETIRED_EPOCH,
            incarnation: None,
        };
        let mut conn = apply_connection(&self.target).await?;
        let rows = link
            .retire(&mut conn, CheckpointRecord::RETIRED_EPOCH)
            .await?;
        let _ = conn.disconnect().await;
        if !ck.is_retired() {
            let retired = CheckpointRecord {
                epoch: CheckpointRecord::RETIRED_EPOCH,
                updated_ms: now_ms(),
                ..ck.clone()
            };
            self.env.repo.put_checkpoint(&id, &retired).await?;
        }
        self.complete(
            "retire_forward",
            StepOutcome::Ok,
            format!("forward link (epoch {epoch}, {rows} checkpoint row(s) on the target) retired at {}", ck.position),
        )
        .await
    }

    /// With a reverse link: the target must show a binlog position now (an
    /// OceanBase target has none without its Binlog Service). The reason to
    /// give up, naming the fix, when it does not.
    async fn reverse_preflight(&self) -> Result<(), String> {
        if !self.reverse() {
            return Ok(());
        }
        let probe = async {
            let mut conn = self.target.connect().await?;
            let pos = current_position(&mut conn, &self.target.describe()).await;
            let _ = conn.disconnect().await;
            pos
        };
        probe.await.map(|_| ()).map_err(|e| {
            format!(
                "the reverse link needs the target's binary log, and reading its position failed: {}. \
                 Nothing was retired; the forward link goes on. Fix: enable the target's binary log (OceanBase: \
                 deploy its Binlog Service and point the target secret at it), or run the task without \
                 \"reverse\" (the rollback plan is then yours), then request the switch again",
                e.message()
            )
        })
    }

    // ---- step: record_reverse_start ----

    async fn record_reverse_start(&mut self) -> Result<(), FerryError> {
        if self.rec.completed("record_reverse_start") {
            return Ok(());
        }
        if !self.reverse() {
            // No link will read the target's binlog (an OceanBase target has none).
            return self
                .complete(
                    "record_reverse_start",
                    StepOutcome::Skipped,
                    "no \"reverse\" in the task's types: no reverse link starts, so the rollback plan is the \
                     operator's (changes made on the target are not sent back to the source)"
                        .into(),
                )
                .await;
        }
        let mut conn = self.target.connect().await?;
        let pos = current_position(&mut conn, &self.target.describe()).await?;
        let _ = conn.disconnect().await;
        self.rec.reverse_start = Some(pos.clone());
        self.complete(
            "record_reverse_start",
            StepOutcome::Ok,
            format!("target binlog position {pos}"),
        )
        .await
    }

    // ---- step: start_reverse ----

    async fn start_reverse(&mut self) -> Result<(), FerryError> {
        if self.rec.completed("start_reverse") {
            return Ok(());
        }
        if !self.reverse() {
            return self
                .complete(
                    "start_reverse",
                    StepOutcome::Skipped,
                    "no \"reverse\" in the task's types".into(),
                )
                .await;
        }
        let id = self.id().to_string();
        let start = self.rec.reverse_start.clone().ok_or_else(|| {
            FerryError::Internal(format!("task {id}: no reverse start position recorded"))
        })?;
        if self
            .env
            .repo
            .checkpoint(&id, Direction::Reverse)
            .await?
            .is_none()
        {
            let ck = CheckpointRecord {
                direction: Direction::Reverse,
                position: start.clone(),
                epoch: 0,
                updated_ms: now_ms(),
                lag_ms: None,
                applied_rows: 0,
            };
            self.env.repo.put_checkpoint(&id, &ck).await?;
        }
        let link = Link {
            meta_schema: self.spec().options.meta_schema.clone(),
            task_id: id.clone(),
            direction: Direction::Reverse,
            epoch: 0,
            incarnation: None,
        };
        let mut conn = apply_connection(&self.source).await?;
        link.ensure_table(&mut conn).await?;
        if link.read(&mut conn, false).await?.is_empty() {
            link.claim(&mut conn, self.spec().options.apply_workers, &start)
                .await?;
        }
        let _ = conn.disconnect().await;
        self.complete(
            "start_reverse",
            StepOutcome::Ok,
            format!("reverse link (target -> source) starts at the target's {start}; its checkpoint is kept on the source"),
        )
        .await
    }

    // ---- step: finish ----

    async fn finish(&mut self) -> Result<(), FerryError> {
        let id = self.id().to_string();
        self.env
            .repo
            .update_flags(&id, |f| f.switch_requested = false)
            .await?;
        let state = if self.reverse() {
            TaskState::ReverseSynchronizing
        } else {
            TaskState::Completed
        };
        self.env
            .repo
            .set_state(&id, state, Some(Stage::Switch.name()))
            .await?;
        self.rec.phase = SwitchPhase::Done;
        self.rec.finished_ms = Some(now_ms());
        self.rec.reason = None;
        let took = self
            .rec
            .finished_ms
            .unwrap_or(0)
            .saturating_sub(self.rec.started_ms.unwrap_or(0));
        self.complete(
            "finish",
            StepOutcome::Ok,
            format!(
                "the target is the primary; task {} ({took} ms)",
                state.as_str()
            ),
        )
        .await
    }
}

async fn read_events(
    mut reader: BinlogReader,
    tx: mpsc::Sender<Result<(BinlogEvent, BinlogPosition), FerryError>>,
) {
    loop {
        let ev = reader.next().await.map(|e| (e, reader.position()));
        let failed = ev.is_err();
        if tx.send(ev).await.is_err() || failed {
            break;
        }
    }
    reader.close().await;
}

//! Ferry's stages. Each is one function, called in-process by the embedded
//! runner and by one Lambda per stage in the cloud. Which stages exist is
//! [`ferry_core::Stage`]; [`invoke_stage`] runs one (an exhaustive `match`).
//!
//! Each stage has typed input and output beside its `run`; the JSON the state
//! machine and the Lambda function see is made from them at this boundary
//! only (`run` parses the input with the stage's own error messages and
//! serializes the output, field names as listed):
//!
//! | stage | input | output |
//! |---|---|---|
//! | `grant-check` | the task file ([`TaskSpec`]) | [`grant_check::GrantCheckOutput`] `{"task_id","ok","failed","warned"}`; the report is in the task record |
//! | `plan` | [`plan::PlanInput`] `{"task_id"}` | [`plan::PlanOutput`] `{"task_id","tables","chunks","workers":[{"task_id","worker"}..]}` |
//! | `copy-chunk` | [`copy_chunk::CopyInput`]: `{"task_id","worker"}` | [`copy_chunk::CopyOutput`] `{"task_id","copied","rows","remaining","stop_requested"}` (works until no chunk is left or the deadline) |
//! | | `{"task_id","action":"summary"}` | [`copy_chunk::CopySummary`] `{"task_id","remaining","pending","running","done","failed","total","rows","stop_requested"}` |
//! | `incremental-apply` | [`incremental_apply::ApplyInput`] `{"task_id","direction"}` (+ `"idle_ms"`) | [`incremental_apply::ApplyOutput`] `{"task_id","enabled","position","lag_ms",..,"applied","caught_up","switch_requested","stop_requested"}` |
//! | `verify` | [`verify::VerifyInput`] `{"task_id","mode":"full"\|"sample"\|"recheck"\|"changed"}` (+ `"when"`, `"run_id"`, `"begin"`, `"repair"`, ..) | [`verify::VerifyOutput`] `{"task_id","run_id","done","tables","chunks","rows","differences","unsettled","clean",..}`; safe from several workers at once |
//! | `switch` | [`switch::SwitchInput`]: `{"task_id"}` | [`switch::SwitchOutput`] `{"task_id","ready","done","gave_up","stop_requested","reverse","phase","reason"}` |
//! | | `{"task_id","action":"phase"}` | [`switch::PhaseOutput`] `{"task_id","phase","slices","slice_budget"}` |
//! | `cleanup` | [`cleanup::CleanupInput`]: `{"task_id","action":"stop"}` | [`cleanup::StopOutput`] `{"task_id","state"}` |
//! | | `{"task_id","action":"report"}` | [`cleanup::ReportOutput`] `{"task_id","report"}` |
//! | | `{"task_id"}` (+ `"force"`) | [`cleanup::ReleaseOutput`] `{"task_id","released","already"}` (+ `"refused"` or `"records_deleted","report"`) |
//!
//! Rust callers use the typed entry points (`switch` runs the apply and the
//! verify through [`incremental_apply::run_typed`] and [`verify::run_typed`]).
//! A stage never panics on data; it returns a [`FerryError`] whose name the
//! state machine matches, and records the error on the task.

pub mod cleanup;
pub mod copy_chunk;
pub mod deadline;
pub mod dirty;
pub mod grant_check;
pub mod incremental_apply;
pub mod plan;
pub mod switch;
pub mod verify;

use std::str::FromStr;
use std::time::Instant;

use ferry_core::model::Liveness;
use ferry_core::secret::SecretSource;
use ferry_core::store::{ItemStore, Repo};
use ferry_core::task::{Dialect, TaskSpec};
use ferry_core::{FerryError, Stage};
use ferry_mysql::Endpoint;
use serde_json::Value;

/// What every stage gets: the task store, the secrets, and who is working.
pub struct StageEnv<S, K> {
    pub repo: Repo<S>,
    pub secrets: K,
    /// Unique per process or Lambda instance; owns chunk leases.
    pub worker_id: String,
}

impl<S: ItemStore, K: SecretSource> StageEnv<S, K> {
    pub fn new(store: S, secrets: K, worker_id: impl Into<String>) -> Self {
        StageEnv {
            repo: Repo::new(store),
            secrets,
            worker_id: worker_id.into(),
        }
    }

    /// Leases whose holder `gone` says has ended are free at once
    /// ([`Repo::with_holder_check`]).
    pub fn with_holder_check(self, gone: fn(&str) -> bool) -> Self {
        StageEnv {
            repo: self.repo.with_holder_check(gone),
            ..self
        }
    }

    /// Source and target endpoints of a task, with their credentials.
    pub async fn endpoints(&self, spec: &TaskSpec) -> Result<(Endpoint, Endpoint), FerryError> {
        let s = self.secrets.get(&spec.source.secret).await?;
        let t = self.secrets.get(&spec.target.secret).await?;
        Ok((
            Endpoint::new("source", &spec.source.secret, s),
            Endpoint::new("target", &spec.target.secret, t)
                .oceanbase(spec.target.dialect == Dialect::Oceanbase),
        ))
    }
}

/// The `task_id` field of a stage input, or a clear error.
pub fn task_id(input: &Value) -> Result<String, FerryError> {
    input
        .get("task_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            FerryError::BadTask(format!("stage input has no \"task_id\" string: {input}"))
        })
}

/// A stage's typed output as the JSON the state machine reads.
pub(crate) fn to_output<T: serde::Serialize>(out: &T) -> Result<Value, FerryError> {
    serde_json::to_value(out)
        .map_err(|e| FerryError::Internal(format!("a stage output does not serialize: {e}")))
}

/// Record on the task which stage runs now (what `ferry status` shows beside
/// the state), when it changed. Best effort: the task may not exist yet (the
/// first precheck) or any more (after release).
async fn note_stage<S: ItemStore, K: SecretSource>(env: &StageEnv<S, K>, id: &str, stage: &str) {
    let Ok(task) = env.repo.task(id).await else {
        return;
    };
    if task.stage.as_deref() == Some(stage) {
        return;
    }
    if let Err(e) = env
        .repo
        .update_task(id, |t| t.stage = Some(stage.to_string()))
        .await
    {
        tracing::debug!(task = %id, stage, error = %e, "could not record the running stage");
    }
}

/// Run a stage while renewing the task's heartbeat (record `alive`) every
/// [`Liveness::BEAT_MS`], so `ferry status` can tell a running task from one
/// whose worker died. A heartbeat that cannot be written is logged, never fatal.
async fn with_heartbeat<S: ItemStore, K: SecretSource, T>(
    env: &StageEnv<S, K>,
    id: &str,
    stage: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    let beat = || async {
        // A task not registered yet (the first precheck) has nothing to beat on.
        if matches!(env.repo.get_task(id).await, Ok(Some(_))) {
            if let Err(e) = env.repo.beat(id, &env.worker_id, Some(stage)).await {
                tracing::debug!(task = %id, stage, error = %e, "could not renew the heartbeat");
            }
        }
    };
    beat().await;
    let mut work = std::pin::pin!(work);
    let every = std::time::Duration::from_millis(Liveness::BEAT_MS);
    loop {
        tokio::select! {
            r = &mut work => {
                beat().await;
                return r;
            }
            _ = tokio::time::sleep(every) => beat().await,
        }
    }
}

/// Run one stage by the name a state machine Task or a Lambda function gives
/// (the JSON boundary): [`invoke_stage`] for a [`Stage`]. A name that is no
/// stage is a `Ferry.Internal` error, recorded on the task like any other.
pub async fn invoke<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    stage: &str,
    input: Value,
    deadline: Instant,
) -> Result<Value, FerryError> {
    match Stage::from_str(stage) {
        Ok(stage) => invoke_stage(env, stage, input, deadline).await,
        Err(e) => {
            if let Some(id) = input.get("task_id").and_then(Value::as_str) {
                note_stage(env, id, stage).await;
                if let Err(store_err) = env.repo.record_error(id, stage, &e).await {
                    tracing::warn!(task = %id, stage, error = %store_err, "could not record the stage's error");
                }
            }
            Err(e)
        }
    }
}

/// Run one stage. On error the task record gets the error (a definite one
/// marks the task failed) before it is returned.
pub async fn invoke_stage<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    stage: Stage,
    input: Value,
    deadline: Instant,
) -> Result<Value, FerryError> {
    let id = input
        .get("task_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(id) = &id {
        note_stage(env, id, stage.name()).await;
    }
    let work = async {
        match stage {
            Stage::GrantCheck => grant_check::run(env, input, deadline).await,
            Stage::Plan => plan::run(env, input, deadline).await,
            Stage::CopyChunk => copy_chunk::run(env, input, deadline).await,
            // Boxed: their futures are large (a switch nests the other two).
            Stage::IncrementalApply => Box::pin(incremental_apply::run(env, input, deadline)).await,
            Stage::Verify => Box::pin(verify::run(env, input, deadline)).await,
            Stage::Switch => Box::pin(switch::run(env, input, deadline)).await,
            Stage::Cleanup => cleanup::run(env, input, deadline).await,
        }
    };
    let result = match (&id, stage) {
        // Cleanup removes the task's records: no heartbeat may write them back.
        (Some(id), s) if s != Stage::Cleanup => with_heartbeat(env, id, stage.name(), work).await,
        _ => work.await,
    };
    if let (Err(e), Some(id)) = (&result, id) {
        if let Err(store_err) = env.repo.record_error(&id, stage.name(), e).await {
            tracing::warn!(task = %id, stage = stage.name(), error = %store_err, "could not record the stage's error");
        }
    }
    result
}

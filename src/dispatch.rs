//! The embedded orchestration: the state machine definition compiled into the
//! binary, with every `${...Arn}` placeholder replaced by its stage name, and a
//! [`Dispatch`] that calls the stage in-process.
//!
//! Invariant: a Task's failure reaches the state machine as the stage error's
//! stable `Ferry.*` name and message (never a Rust type name), so Retry and
//! Catch behave exactly as they do on Step Functions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_asl::{Definition, Dispatch, Event, EventHook, TaskCall, TaskFailure};
use ferry_core::FerryError;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;

use crate::context::LocalEnv;

/// `statemachine/migration.asl.json`, as built into this binary.
pub const DEFINITION: &str = include_str!("../statemachine/migration.asl.json");

/// The definition with each stage placeholder replaced by the stage's name.
pub fn definition() -> Result<Arc<Definition>, FerryError> {
    let substitutions = ferry_core::Stage::substitutions();
    Definition::from_json(DEFINITION, &substitutions)
        .map(Arc::new)
        .map_err(|e| {
            FerryError::Internal(format!(
                "the built-in state machine definition does not load: {e}"
            ))
        })
}

/// Calls `ferry_stages::invoke` for each Task, with a deadline one slice away.
pub struct StageDispatch {
    pub env: Arc<LocalEnv>,
    pub slice: Duration,
}

impl Dispatch for StageDispatch {
    /// Each call runs on its own blocking-pool thread, driven by the runtime's handle: a stage's
    /// future need not be `Send` (the Lambda runtime does not ask it to be either), and a stage
    /// that panics fails its Task with `Ferry.Internal` instead of ending the whole run.
    fn invoke(
        &self,
        call: TaskCall<'_>,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, TaskFailure>> {
        let env = Arc::clone(&self.env);
        let stage = call.resource.to_string();
        let deadline = Instant::now() + self.slice;
        async move {
            let handle = tokio::runtime::Handle::current();
            let name = stage.clone();
            let joined = tokio::task::spawn_blocking(move || {
                handle.block_on(ferry_stages::invoke(&env, &stage, input, deadline))
            })
            .await;
            match joined {
                Ok(result) => result.map_err(|e| TaskFailure::new(e.name(), e.message())),
                Err(e) => Err(TaskFailure::new(
                    FerryError::Internal(String::new()).name(),
                    format!("stage {name} did not complete: {e}; this is a bug in Ferry, please report it"),
                )),
            }
        }
        .boxed()
    }
}

/// Log the execution's progress: states at info, retries and failures at warn.
pub fn log_events() -> EventHook {
    Arc::new(|event: &Event| match event {
        Event::StateEntered { name, .. } => tracing::info!(state = %name, "entering state"),
        Event::Retrying {
            state,
            attempt,
            delay_ms,
        } => {
            tracing::warn!(state = %state, attempt, delay_ms, "retrying after a transient error")
        }
        Event::TaskFailed {
            state,
            error,
            cause,
        } => tracing::warn!(state = %state, error = %error, "{cause}"),
        Event::Caught { state, error, next } => {
            tracing::info!(state = %state, error = %error, next = %next, "error caught")
        }
        Event::MapIterationFailed {
            state,
            index,
            error,
            ..
        } => {
            tracing::warn!(state = %state, index, error = %error, "map iteration failed")
        }
        other => tracing::debug!(event = ?other, "execution event"),
    })
}

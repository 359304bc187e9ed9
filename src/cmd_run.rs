//! `ferry run TASK.json`: the whole migration, embedded.
//!
//! Invariant: the state machine runs only while this process holds the task's
//! lock, after chunks a killed run left in flight were put back to pending; the
//! task file and both secrets are checked before anything is written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_asl::{Outcome, Runner};
use ferry_core::model::TaskState;
use ferry_core::store::now_ms;
use ferry_core::FerryError;

use crate::cli::RunArgs;
use crate::context::{read_task_file, Failure, Global, LocalEnv};
use crate::dispatch::{definition, log_events, StageDispatch};
use crate::progress::Progress;

/// Stages stop taking new work 5 s before their deadline: a shorter slice would never copy.
const MIN_SLICE_SECONDS: u64 = 10;

pub async fn run(global: &Global, args: RunArgs) -> Result<u8, Failure> {
    let (spec, input) = read_task_file(&args.file.task)?;
    run_spec(global, spec, input, args.slice_seconds).await
}

/// Run (or resume: `ferry resume` passes the stored task file) a task's state machine.
pub async fn run_spec(
    global: &Global,
    spec: ferry_core::task::TaskSpec,
    input: serde_json::Value,
    slice_seconds: Option<u64>,
) -> Result<u8, Failure> {
    let definition = definition()?;
    let env = Arc::new(global.stage_env(&spec)?);
    let task_id = spec.task_id.clone();
    let (_lock, _resumed) = ferry_local::claim_task(&global.state_dir, &env.repo, &task_id).await?;
    // Registered here too (the grant-check stage does it in the cloud), so `ferry status` shows a
    // task whose first stage failed, and a task_id reused for other databases is refused at once.
    env.repo.create_task(&spec).await?;
    let slice_s = slice_seconds.unwrap_or(spec.options.slice_seconds);
    let slice = Duration::from_secs(slice_s.max(MIN_SLICE_SECONDS));
    tracing::info!(task = %task_id, worker = %env.worker_id, slice_s = slice.as_secs(), "starting");

    let started = Instant::now();
    let dispatch = Arc::new(StageDispatch {
        env: Arc::clone(&env),
        slice,
    });
    let runner = Runner::new(definition, dispatch)
        .on_event(log_events())
        .retry_time_scale(retry_time_scale());
    let progress = Progress::start(env.repo.clone(), task_id.clone());
    let outcome = runner
        .run(&format!("{task_id}-{}", now_ms()), input)
        .await
        .map_err(|e| {
            FerryError::Internal(format!("the embedded state machine refused to run: {e}"))
        });
    drop(progress);
    // The worker ends here, cleanly: `ferry status` says "not running" at once.
    if let Err(e) = env.repo.end_beat(&task_id, &env.worker_id).await {
        tracing::debug!(error = %e, "could not record the worker's end");
    }
    let outcome = outcome?;

    match outcome {
        Outcome::Succeeded { .. } => {
            if env.repo.task(&task_id).await?.state == TaskState::Stopped {
                println!("task {task_id} stopped; `ferry resume {task_id}` continues from its checkpoints");
                return Ok(0);
            }
            env.repo
                .set_state(&task_id, TaskState::Completed, None)
                .await?;
            println!("{}", summary(&env, &task_id, started.elapsed()).await?);
            Ok(0)
        }
        Outcome::Failed { error, cause, .. } => Err(failed(&env, &task_id, &error, &cause).await),
    }
}

/// One line for a finished run: tables, rows, chunks and time.
async fn summary(env: &LocalEnv, task_id: &str, elapsed: Duration) -> Result<String, FerryError> {
    let tables = env.repo.tables(task_id).await?;
    let s = env.repo.chunk_summary(task_id).await?;
    let secs = elapsed.as_secs_f64();
    Ok(format!(
        "task {task_id} completed: {} table(s), {} rows in {} chunks, {:.1} s ({:.0} rows/s)",
        tables.len(),
        s.rows,
        s.total,
        secs,
        if secs > 0.0 {
            s.rows as f64 / secs
        } else {
            0.0
        }
    ))
}

/// The execution's error, recorded on the task; a failed precheck brings its report.
async fn failed(env: &LocalEnv, task_id: &str, error: &str, cause: &str) -> Failure {
    let err = FerryError::from_name(error, cause);
    let task = env.repo.get_task(task_id).await.ok().flatten();
    if let Some(t) = &task {
        if t.state != TaskState::Failed
            || t.last_error.as_ref().map(|e| e.name.as_str()) != Some(error)
        {
            let stage = t.stage.clone().unwrap_or_else(|| "state machine".into());
            if let Err(e) = env.repo.record_error(task_id, &stage, &err).await {
                tracing::warn!(error = %e, "could not record the failure on the task");
            }
        }
    }
    let detail = match (&err, task.and_then(|t| t.precheck)) {
        (FerryError::PrecheckFailed(_), Some(report)) => Some(format!(
            "precheck report:\n{}",
            crate::cmd_status::problems(&report)
        )),
        _ => None,
    };
    Failure { error: err, detail }
}

/// `FERRY_RETRY_TIME_SCALE` (default 1): multiplies the waits of the
/// definition's Retry rules (2 s doubling, up to 10 attempts for the link),
/// so a test of an outage longer than the retry budget takes seconds. A test
/// hook: read only in builds with them ([`ferry_mysql::TEST_HOOKS`]), like the
/// failpoints, so a release binary always waits as the definition says.
fn retry_time_scale() -> f64 {
    if !ferry_mysql::TEST_HOOKS {
        return 1.0;
    }
    std::env::var("FERRY_RETRY_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0)
}

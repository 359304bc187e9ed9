//! Ferry's embedded adapters: the SQLite task store, the local secrets file and
//! the per-task lock that lets exactly one `ferry run` work on a task.
//!
//! Invariant: an embedded runner works on a task only while it holds the task's
//! lock ([`claim_task`]); holding it, chunks still marked running can only be
//! left over from a runner that died, so they are put back to pending at once
//! instead of waiting for their leases to expire, and chunks that failed get
//! another attempt budget.

pub mod lock;
pub mod secrets;
pub mod store;
pub mod worker;

use std::path::{Path, PathBuf};

use ferry_core::store::{ItemStore, Repo};
use ferry_core::FerryError;

pub use lock::TaskLock;
pub use secrets::{default_secrets_file, secret_env_var, FileSecrets};
pub use store::{SqliteStore, DB_FILE};
pub use worker::{holder_gone, worker_id};

/// The state directory when neither `--state-dir` nor `FERRY_STATE_DIR` names one.
pub const DEFAULT_STATE_DIR: &str = ".ferry";

pub fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

/// How long a runner starting waits for the task's lock before it reports
/// another runner: longer than any liveness probe holds it.
pub const RUNNER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Take the lock of `task_id`, put chunks a killed runner left running back to pending,
/// and give failed chunks a fresh attempt budget (running a task again is the operator's
/// retry). Returns the lock (hold it for the whole run) and how many chunks were reset.
pub async fn claim_task<S: ItemStore>(
    state_dir: &Path,
    repo: &Repo<S>,
    task_id: &str,
) -> Result<(TaskLock, u64), FerryError> {
    let lock = TaskLock::acquire_within(state_dir, task_id, RUNNER_PATIENCE).await?;
    let running = repo.reset_running_chunks(task_id).await?;
    if running > 0 {
        tracing::info!(
            task = task_id,
            chunks = running,
            "resuming chunks left running by an earlier run"
        );
    }
    let failed = repo.retry_failed_chunks(task_id).await?;
    if failed > 0 {
        tracing::info!(
            task = task_id,
            chunks = failed,
            "retrying chunks that failed in an earlier run"
        );
    }
    Ok((lock, running + failed))
}

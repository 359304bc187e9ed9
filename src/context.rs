//! What every command shares: the global options, reading the task file, opening
//! the local store and secrets, and how an error becomes output and an exit code.
//!
//! Invariant: nothing is written (no state directory, no store, no lock file)
//! until the task file parsed and both of its secrets were found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use ferry_core::secret::SecretSource;
use ferry_core::store::ItemStore;
use ferry_core::task::TaskSpec;
use ferry_core::FerryError;
use ferry_local::{FileSecrets, SqliteStore, DB_FILE};
use ferry_stages::StageEnv;
use serde_json::Value;

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Directory of the local task store (ferry.db) and the task lock files.
    #[arg(long, global = true, env = "FERRY_STATE_DIR", value_name = "DIR", default_value = ferry_local::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Secrets file: a JSON object mapping secret names to database secrets (mode 0600)
    /// [default: ~/.config/ferry/secrets.json]. FERRY_SECRET_<NAME> variables override it.
    #[arg(long, global = true, env = "FERRY_SECRETS", value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// More log lines: -v for INFO on a terminal (where the default is WARN beside the progress display), -vv for DEBUG.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The embedded stage environment.
pub type LocalEnv = StageEnv<SqliteStore, FileSecrets>;

/// Exit codes (documented in `ferry --help`).
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
pub const EXIT_PRECHECK: u8 = 3;

/// A command that did not succeed: the error, and what to print after it (a precheck report).
#[derive(Debug)]
pub struct Failure {
    pub error: FerryError,
    pub detail: Option<String>,
}

impl From<FerryError> for Failure {
    fn from(error: FerryError) -> Failure {
        Failure {
            error,
            detail: None,
        }
    }
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self.error {
            FerryError::BadTask(_) | FerryError::BadSecret(_) => EXIT_BAD_INPUT,
            FerryError::PrecheckFailed(_) => EXIT_PRECHECK,
            _ => EXIT_FAILED,
        }
    }
}

/// Print a failure as `error: <Ferry.Name>: <message>` plus its detail, and pick the exit code.
pub fn exit(result: Result<u8, Failure>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            crate::progress::clear_line();
            eprintln!("error: {}: {}", f.error.name(), f.error.message());
            if let Some(detail) = &f.detail {
                eprintln!("\n{}", detail.trim_end());
            }
            ExitCode::from(f.code())
        }
    }
}

/// The task file, parsed and validated, and the JSON value the state machine starts with.
pub fn read_task_file(path: &Path) -> Result<(TaskSpec, Value), FerryError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| FerryError::BadTask(format!("cannot read the task file {shown}: {e}")))?;
    let spec = TaskSpec::from_json(&text)
        .map_err(|e| FerryError::BadTask(format!("{shown}: {}", e.message())))?;
    let input = serde_json::to_value(&spec).map_err(|e| {
        FerryError::Internal(format!("cannot encode the task file {shown} again: {e}"))
    })?;
    Ok((spec, input))
}

impl Global {
    /// The secrets, after checking that both of the task's secrets can be found and parsed.
    pub fn secrets_for(&self, spec: &TaskSpec) -> Result<FileSecrets, FerryError> {
        let secrets = FileSecrets::new(self.secrets.clone());
        secrets.lookup(&spec.source.secret)?;
        secrets.lookup(&spec.target.secret)?;
        Ok(secrets)
    }

    /// Open (creating it if needed) the task store.
    pub fn open_store(&self) -> Result<SqliteStore, FerryError> {
        SqliteStore::open_dir(&self.state_dir)
    }

    /// Open the task store only if it exists (for commands that only read).
    pub fn existing_store(&self) -> Result<SqliteStore, FerryError> {
        let file = self.state_dir.join(DB_FILE);
        if !file.exists() {
            return Err(FerryError::BadTask(format!(
                "there is no task store at {}; start a task with `ferry run TASK.json` first, or pass the \
                 directory it used with --state-dir (or FERRY_STATE_DIR)",
                file.display()
            )));
        }
        SqliteStore::open(&file)
    }

    /// The stage environment for a task, with a fresh worker id.
    pub fn stage_env(&self, spec: &TaskSpec) -> Result<LocalEnv, FerryError> {
        let secrets = self.secrets_for(spec)?;
        let store = self.open_store()?;
        Ok(local_env(store, secrets))
    }
}

/// A stage environment over the local task store: a fresh worker id, and a
/// lease held by a local process that has ended is free at once.
pub fn local_env<S: ItemStore, K: SecretSource>(store: S, secrets: K) -> StageEnv<S, K> {
    StageEnv::new(store, secrets, ferry_local::worker_id())
        .with_holder_check(ferry_local::holder_gone)
}

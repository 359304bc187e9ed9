//! Command-line arguments and their help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cmd_control::{self, ControlArgs};
use crate::context::{Failure, Global};
use crate::{cmd_precheck, cmd_run, cmd_status};

/// Ferry moves a live MySQL or MariaDB database into OceanBase (MySQL mode), MySQL or MariaDB.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about,
    long_about = "Ferry moves a live MySQL or MariaDB database into OceanBase (MySQL mode), MySQL or \
MariaDB: precheck, schema, full copy (and, as they land, incremental sync, verification and switchover).\n\n\
A migration is described by a task file (JSON; see examples/). `ferry run TASK.json` runs the whole \
migration in this process, keeping its progress in a local task store (--state-dir, default ./.ferry). \
Credentials come from a secrets file readable only by you (--secrets, default \
~/.config/ferry/secrets.json, mode 0600) or from FERRY_SECRET_<NAME> environment variables; they never \
appear in output or in the task store.\n\n\
Exit codes: 0 success, 1 the migration failed, 2 a bad task file, secret or argument, 3 the precheck failed.\n\
Logging goes to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more.",
    after_help = "Start with `ferry precheck TASK.json`, then `ferry run TASK.json`; watch it from another \
shell with `ferry status TASK_ID`."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a migration in this process, from precheck to the end of the full copy.
    #[command(
        long_about = "Run a migration in this process: the same state machine \
(statemachine/migration.asl.json) that AWS Step Functions runs in the cloud, with each stage called \
in-process.\n\n\
The task file is checked first: a malformed file, an unknown field or a missing secret is refused before \
anything is written. Then the precheck runs; if an item fails, its report (with the statement that fixes \
it) is printed and nothing is created on the target. Otherwise the target schema is created, every table \
is split into primary-key chunks and the chunks are copied in parallel.\n\n\
Rerunning after a crash or Ctrl-C resumes: chunks already copied are kept, chunks that were in flight are \
copied again (a chunk copied twice leaves the same rows). Only one `ferry run` may work on a task at a \
time (a lock file in the state directory)."
    )]
    Run(RunArgs),
    /// Check connectivity, binlog settings, grants and tables, and print the report.
    #[command(
        long_about = "Run only the precheck stage and print its report: each item pass, \
warn or fail, with the exact statement or setting that fixes it. Nothing is created on the target. \
Exits 0 when no item failed, 3 otherwise."
    )]
    Precheck(TaskFileArgs),
    /// Show a task's state, stage, last error, precheck summary and copy progress.
    #[command(
        long_about = "Show a task from the local task store: state and stage, the last \
error, the precheck summary, each table with rows copied and chunks done/total, and totals. Safe to run \
while `ferry run` works on the task. --json prints the same as one JSON object (never any credential)."
    )]
    Status(StatusArgs),
    /// Switch over: the target becomes the primary, changes flow back to the source (see docs/RUNBOOK.md).
    #[command(
        long_about = "Ask the running task to switch over: once the full copy is done, the forward lag is at most \
options.switch_max_lag_ms and the source had no write for options.switch_quiet_seconds, the last changes are applied, \
the forward link is retired, and the reverse link (target -> source) starts at the target's current position. \
Each step is shown by `ferry status`. --wait N waits up to N seconds for the switch to finish."
    )]
    Switch(ControlArgs),
    /// Pause the task's links at the next stage boundary (resumable).
    Stop(ControlArgs),
    /// Clear a stop and run the task again from its checkpoints (uses the stored task file).
    Resume(ControlArgs),
    /// End the task: stop its links, remove Ferry's objects from both databases and its records; keep a report.
    #[command(
        long_about = "End the task: ask its links to stop and wait for a running `ferry run` to exit (--wait N, default \
the slice plus 30 s), remove its checkpoints, heartbeat rows and Ferry's metadata tables from both databases (a shared \
table or schema only when no other task uses it), delete its records from the task store, and keep a final report \
(<state dir>/reports/TASK_ID.json and .md). Refused while a switch is in progress. Releasing twice is harmless. \
--force leaves a database that cannot be reached as it is."
    )]
    Release(ControlArgs),
    /// Serve the web console: data sources, users, new task, tasks, lag and throughput charts, switch, release.
    #[command(
        long_about = "Serve the web console on 127.0.0.1:7878 (--listen to change it): add data sources (saved to the \
secrets file, mode 0600) and test them, see the users and grants a task needs, create a task by browsing the source's \
databases and tables, run its precheck and start it, and watch every task: steps, per-table progress, charts of lag and \
rows/s, verify results with repair, and switch, stop, resume and release buttons. A non-loopback --listen address needs \
the access token printed at start; every action is a POST with the console's CSRF token."
    )]
    Console(crate::console::ConsoleArgs),
    /// Print the CREATE USER and GRANT statements a task's users need on each side.
    Grants(TaskFileArgs),
}

#[derive(Debug, Args)]
pub struct TaskFileArgs {
    /// The task file (JSON): task_id, source, target, types, objects, options.
    #[arg(value_name = "TASK.json")]
    pub task: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub file: TaskFileArgs,
    /// Longest time one stage call may run before it returns and is called again (default: the task's
    /// options.slice_seconds). Shorter slices mean more frequent checkpoints of the state machine. At
    /// least 10: a stage stops taking new work 5 s (or a tenth of the slice) before its deadline.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(10..))]
    pub slice_seconds: Option<u64>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The task's task_id (from its task file).
    pub task_id: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Redraw every 2 s, with a small history of the forward link's lag (Ctrl-C ends).
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
}

impl Cli {
    pub async fn execute(self) -> Result<u8, Failure> {
        match self.command {
            Command::Run(args) => cmd_run::run(&self.global, args).await,
            Command::Precheck(args) => cmd_precheck::run(&self.global, args).await,
            Command::Status(args) if args.watch => {
                crate::status_watch::run(&self.global, args).await
            }
            Command::Status(args) => cmd_status::run(&self.global, args).await,
            Command::Switch(args) => cmd_control::switch(&self.global, args).await,
            Command::Stop(args) => cmd_control::stop(&self.global, args).await,
            Command::Resume(args) => cmd_control::resume(&self.global, args).await,
            Command::Release(args) => cmd_control::release(&self.global, args).await,
            Command::Console(args) => crate::console::run(&self.global, args).await,
            Command::Grants(args) => crate::console::print_grants(&self.global, args),
        }
    }
}

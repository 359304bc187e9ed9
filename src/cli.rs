//! Command-line arguments and their help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cmd_control::{self, ControlArgs};
use crate::cmd_verify::{self, VerifyArgs};
use crate::context::{Failure, Global};
use crate::{cmd_precheck, cmd_run, cmd_status};

/// Ferry moves a live MySQL or MariaDB database into OceanBase (MySQL mode), MySQL or MariaDB.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about,
    long_about = "Ferry moves a live MySQL or MariaDB database into OceanBase (MySQL mode), MySQL or \
MariaDB: precheck, schema, full copy, incremental sync, verification with repair, switchover with a reverse link, release.\n\n\
A migration is described by a task file (JSON; see examples/). `ferry run TASK.json` runs the whole \
migration in this process, keeping its progress in a local task store (--state-dir, default ./.ferry). \
Credentials come from a secrets file readable only by you (--secrets, default \
~/.config/ferry/secrets.json, mode 0600) or from FERRY_SECRET_<NAME> environment variables; they never \
appear in output or in the task store.\n\n\
Exit codes: 0 success, 1 the migration failed, 2 a bad task file, secret or argument, 3 the precheck failed.\n\
Logging goes to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more.\n\n\
On AWS (a deployment of infra/template.yaml): `ferry start TASK.json --cloud`, and status, switch, stop, resume and \
release with --cloud act on the Step Functions execution and the DynamoDB task store instead of this machine's.",
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
    /// Run a migration in this process: precheck, schema, full copy, then the sync until a switch or stop.
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
    /// Compare source and target (row counts and hashes per chunk, then the differing rows), report, repair.
    #[command(
        long_about = "Compare the task's source and target chunk by chunk (row count and a 64-bit hash per \
row computed inside each database), find every differing row, and print a per-table summary (also shown by \
`ferry status`). While incremental sync runs, a difference is reported only if it persists once the apply has \
passed the point at which the chunk was read.\n\n\
When rows differ, repair statements (the source is the truth: REPLACE INTO by key, DELETE of extra rows) are \
written to --repair-file (default <state dir>/reports/TASK_ID-repair.sql). --repair applies them to the target \
at options.repair_rows_per_second and checks those rows again. --report FILE writes the report as JSON and \
Markdown (FILE.json and FILE.md). Exit code 0 when clean, 4 when differences remain.\n\n\
--changed re-checks only the chunks the sync changed since the last clean full verify (Ferry marks them as it \
applies, durably before each commit) and the new key ranges past the last chunk; without a clean full verify it \
runs a full one and says so. A write made on the target outside Ferry is found by a full verify (--full, the \
default), not by --changed."
    )]
    Verify(VerifyArgs),
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
    Resume(ResumeArgs),
    /// End the task: stop its links, remove Ferry's objects from both databases and its records; keep a report.
    #[command(
        long_about = "End the task: ask its links to stop and wait for a running `ferry run` to exit (--wait N, default \
the slice plus 30 s), remove its checkpoints, heartbeat rows and Ferry's metadata tables from both databases (a shared \
table or schema only when no other task uses it), delete its records from the task store, and keep a final report \
(<state dir>/reports/TASK_ID.json and .md). Refused while a switch is in progress. Releasing twice is harmless. \
--force leaves a database that cannot be reached as it is."
    )]
    Release(ReleaseArgs),
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
    /// Start a migration execution on AWS Step Functions (requires --cloud; locally it is `ferry run`).
    #[command(mut_arg("cloud", |a| a.required(true)))]
    Start(StartArgs),
}

/// `--cloud` and the task table: what every command that can act on AWS takes.
#[derive(Debug, Clone, Default, Args)]
pub struct Cloud {
    /// Act on the AWS deployment of infra/template.yaml (Step Functions, the DynamoDB task store, Secrets
    /// Manager) instead of this machine's task store.
    #[arg(long)]
    pub cloud: bool,
    /// With --cloud: the DynamoDB task table (the stack's TaskTableName output).
    #[arg(long, env = "FERRY_TABLE", value_name = "TABLE")]
    pub table: Option<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The task file (JSON).
    #[arg(value_name = "TASK.json")]
    pub task: PathBuf,
    /// The migration state machine (the stack's StateMachineArn output).
    #[arg(long, env = "FERRY_STATE_MACHINE_ARN", value_name = "ARN")]
    pub state_machine_arn: String,
    #[command(flatten)]
    pub cloud: Cloud,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// With --cloud: the migration state machine (the stack's StateMachineArn output).
    #[arg(
        long,
        env = "FERRY_STATE_MACHINE_ARN",
        value_name = "ARN",
        required_if_eq("cloud", "true")
    )]
    pub state_machine_arn: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// With --cloud: where the final report (`<task>.json`, `<task>.md`) is written [default: .]
    /// (locally it goes to <state dir>/reports).
    #[arg(long, value_name = "DIR", requires = "cloud")]
    pub report_dir: Option<PathBuf>,
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
    #[arg(long, conflicts_with_all = ["json", "cloud"])]
    pub watch: bool,
    #[command(flatten)]
    pub cloud: Cloud,
}

impl Command {
    /// Whether the command acts on AWS (`--cloud`) rather than on this machine's task store.
    pub fn is_cloud(&self) -> bool {
        match self {
            Command::Start(_) => true,
            Command::Status(a) => a.cloud.cloud,
            Command::Switch(a) | Command::Stop(a) => a.cloud.cloud,
            Command::Resume(a) => a.control.cloud.cloud,
            Command::Release(a) => a.control.cloud.cloud,
            Command::Run(_)
            | Command::Precheck(_)
            | Command::Verify(_)
            | Command::Console(_)
            | Command::Grants(_) => false,
        }
    }
}

impl Cli {
    pub async fn execute(self) -> Result<u8, Failure> {
        if self.command.is_cloud() {
            return execute_cloud(self.command).await;
        }
        match self.command {
            Command::Run(args) => cmd_run::run(&self.global, args).await,
            Command::Precheck(args) => cmd_precheck::run(&self.global, args).await,
            Command::Status(args) if args.watch => {
                crate::status_watch::run(&self.global, args).await
            }
            Command::Status(args) => cmd_status::run(&self.global, args).await,
            Command::Switch(args) => cmd_control::switch(&self.global, args).await,
            Command::Stop(args) => cmd_control::stop(&self.global, args).await,
            Command::Verify(args) => cmd_verify::run(&self.global, args).await,
            Command::Resume(args) => cmd_control::resume(&self.global, args.control).await,
            Command::Release(args) => cmd_control::release(&self.global, args.control).await,
            Command::Console(args) => crate::console::run(&self.global, args).await,
            Command::Grants(args) => crate::console::print_grants(&self.global, args),
            Command::Start(_) => execute_cloud(self.command).await,
        }
    }
}

#[cfg(feature = "cloud")]
async fn execute_cloud(command: Command) -> Result<u8, Failure> {
    crate::cloud::execute(command).await
}

#[cfg(not(feature = "cloud"))]
async fn execute_cloud(_: Command) -> Result<u8, Failure> {
    Err(ferry_core::FerryError::BadTask(
        "this ferry was built without --cloud support: build it with the `cloud` feature (the default)".into(),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::*;

    /// The commands clap knows (without its own `help`).
    fn commands() -> BTreeSet<String> {
        Cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().to_string())
            .collect()
    }

    /// Every word following `ferry ` in the code block of README's "What a migration looks like".
    fn readme_commands() -> BTreeSet<String> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let section = readme
            .split_once("## What a migration looks like")
            .expect("README has a \"What a migration looks like\" section")
            .1;
        let block = section
            .split("```")
            .nth(1)
            .expect("the section opens with a code block of commands");
        let words: Vec<&str> = block.split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| w[0] == "ferry")
            .map(|w| w[1].to_string())
            .collect()
    }

    #[test]
    fn help_lists_every_command_the_readme_documents() {
        let help = Cli::command().render_long_help().to_string();
        let listed: BTreeSet<String> = help
            .split_once("Commands:")
            .expect("--help has a Commands section")
            .1
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| *name != "help")
            .map(str::to_string)
            .collect();
        let commands = commands();
        assert_eq!(
            listed, commands,
            "`ferry --help` lists every command:\n{help}"
        );
        for expected in [
            "run", "precheck", "status", "verify", "switch", "start", "release",
        ] {
            assert!(
                commands.contains(expected),
                "no `{expected}` in {commands:?}"
            );
        }
        assert_eq!(
            readme_commands(),
            commands,
            "README's \"What a migration looks like\" shows exactly the commands of `ferry --help`"
        );
    }

    #[test]
    fn cloud_options_parse_on_the_commands_that_take_them() {
        let cli = Cli::try_parse_from(["ferry", "status", "t1", "--cloud", "--table", "tasks"])
            .expect("status --cloud parses");
        assert!(cli.command.is_cloud());
        let cli = Cli::try_parse_from(["ferry", "verify", "t1", "--mode", "sample"])
            .expect("verify parses with the others");
        assert!(matches!(cli.command, Command::Verify(ref a) if a.mode == "sample"));
        assert!(!cli.command.is_cloud());
        for refused in [
            &["ferry", "start", "t.json", "--state-machine-arn", "arn"][..],
            &["ferry", "run", "t.json", "--cloud"],
            &["ferry", "status", "t1", "--cloud", "--watch"],
            &["ferry", "release", "t1", "--report-dir", "/tmp"],
            &["ferry", "resume", "t1", "--cloud", "--slice-seconds", "10"],
        ] {
            let e = Cli::try_parse_from(refused).expect_err("refused by the parser");
            assert_eq!(e.exit_code(), 2, "{refused:?}: {e}");
        }
    }
}

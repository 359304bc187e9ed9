//! `ferry <command> --cloud`: the same commands against a deployment of
//! infra/template.yaml — Step Functions runs the migration, DynamoDB keeps the
//! task, Secrets Manager the credentials.
//!
//! - `ferry start TASK.json --cloud --state-machine-arn ARN [--table T]`
//! - `ferry status TASK_ID --cloud --table T [--state-machine-arn ARN] [--json]`
//! - `ferry switch TASK_ID --cloud --table T` / `ferry stop TASK_ID --cloud --table T`
//!
//! Invariants: the task file is validated before anything is started; an
//! execution is never started for a task that already has one running; each
//! execution has a unique name; `--table`/`FERRY_TABLE` and
//! `--state-machine-arn`/`FERRY_STATE_MACHINE_ARN` are the stack's outputs
//! `TaskTableName` and `StateMachineArn`. Region and credentials come from the
//! usual AWS environment (profile, `AWS_REGION`, `AWS_ENDPOINT_URL`). Nothing
//! printed holds a secret: task files name secrets, they do not contain them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ferry_aws::{DynamoStore, ExecutionInfo, SdkConfig, StepFunctions};
use ferry_core::model::{ChunkSummary, ControlFlags, ErrorInfo, TaskRecord};
use ferry_core::store::{now_ms, Repo};
use ferry_core::FerryError;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::context::{read_task_file, Failure};

/// The task store record naming the execution `ferry start --cloud` started last.
const EXECUTION_RECORD: &str = "cloud#execution";

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    about = "Ferry on AWS: commands given --cloud act on a deployed infra/template.yaml stack."
)]
struct CloudCli {
    #[command(subcommand)]
    command: CloudCommand,
}

#[derive(Debug, Subcommand)]
enum CloudCommand {
    /// Start a migration execution on Step Functions (input: the task file).
    Start(StartArgs),
    /// Show a task from the DynamoDB task store and its Step Functions execution.
    Status(StatusArgs),
    /// Ask the running migration to switch over (the incremental stage acts on it when lag allows).
    Switch(FlagArgs),
    /// Ask the running migration to stop at its next checkpoint.
    Stop(FlagArgs),
}

#[derive(Debug, Args)]
struct Cloud {
    /// Act on the AWS deployment (required: without it the command is the local one).
    #[arg(long, required = true)]
    cloud: bool,
    /// The DynamoDB task table (the stack's TaskTableName output).
    #[arg(long, env = "FERRY_TABLE", value_name = "TABLE")]
    table: Option<String>,
}

#[derive(Debug, Args)]
struct StartArgs {
    /// The task file (JSON).
    #[arg(value_name = "TASK.json")]
    task: PathBuf,
    /// The migration state machine (the stack's StateMachineArn output).
    #[arg(long, env = "FERRY_STATE_MACHINE_ARN", value_name = "ARN")]
    state_machine_arn: String,
    #[command(flatten)]
    cloud: Cloud,
}

#[derive(Debug, Args)]
struct StatusArgs {
    task_id: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cloud: Cloud,
}

#[derive(Debug, Args)]
struct FlagArgs {
    task_id: String,
    #[command(flatten)]
    cloud: Cloud,
}

/// What `ferry start --cloud` remembers about the execution it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExecutionRecord {
    execution_arn: String,
    state_machine_arn: String,
    started_ms: u64,
}

/// Run the command if the arguments ask for `--cloud`; `None` leaves them to the local CLI.
pub fn main_if_cloud() -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if !args.iter().any(|a| a == "--cloud") {
        return None;
    }
    let cli = CloudCli::parse_from(args);
    crate::progress::init_tracing();
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(execute(cli.command)),
        Err(e) => Err(FerryError::Internal(format!("cannot start the async runtime: {e}")).into()),
    };
    Some(crate::context::exit(result))
}

async fn execute(command: CloudCommand) -> Result<u8, Failure> {
    let config = ferry_aws::load_config(None).await;
    match command {
        CloudCommand::Start(args) => start(&config, args).await,
        CloudCommand::Status(args) => status(&config, args).await,
        CloudCommand::Switch(args) => {
            set_flag(&config, args, "switch", |f| f.switch_requested = true).await
        }
        CloudCommand::Stop(args) => {
            set_flag(&config, args, "stop", |f| f.stop_requested = true).await
        }
    }
}

fn repo(config: &SdkConfig, cloud: &Cloud) -> Result<Repo<DynamoStore>, FerryError> {
    let table = cloud.table.as_deref().filter(|t| !t.is_empty()).ok_or_else(|| {
        FerryError::BadTask(
            "no task table: pass --table (or set FERRY_TABLE) to the stack's TaskTableName output".into(),
        )
    })?;
    Ok(Repo::new(DynamoStore::new(config, table)))
}

async fn start(config: &SdkConfig, args: StartArgs) -> Result<u8, Failure> {
    let (spec, input) = read_task_file(&args.task)?;
    let sfn = StepFunctions::new(config);
    let repo = match args.cloud.table {
        Some(_) => Some(repo(config, &args.cloud)?),
        None => None,
    };
    if let Some(repo) = &repo {
        refuse_if_running(repo, &sfn, &spec.task_id).await?;
    }
    let execution_arn = sfn
        .start(&args.state_machine_arn, &spec.task_id, &input)
        .await?;
    if let Some(repo) = &repo {
        let record = ExecutionRecord {
            execution_arn: execution_arn.clone(),
            state_machine_arn: args.state_machine_arn.clone(),
            started_ms: now_ms(),
        };
        repo.put_record(&spec.task_id, EXECUTION_RECORD, &record)
            .await?;
    }
    println!("started task {} on Step Functions", spec.task_id);
    println!("execution  {execution_arn}");
    println!(
        "follow it: ferry status {} --cloud --table <TaskTableName>",
        spec.task_id
    );
    Ok(0)
}

/// Two executions working one task would race for its chunks and links: refuse the second.
async fn refuse_if_running(
    repo: &Repo<DynamoStore>,
    sfn: &StepFunctions,
    task_id: &str,
) -> Result<(), FerryError> {
    let Some(last) = repo
        .get_record::<ExecutionRecord>(task_id, EXECUTION_RECORD)
        .await?
    else {
        return Ok(());
    };
    let info = sfn.describe(&last.execution_arn).await?;
    if info.is_running() {
        return Err(FerryError::BadTask(format!(
            "task {task_id} already has a running execution ({}); follow it with `ferry status {task_id} --cloud`, \
             or stop it with `ferry stop {task_id} --cloud` first",
            info.execution_arn
        )));
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct CloudStatus {
    task_id: String,
    execution: Option<ExecutionInfo>,
    state: Option<String>,
    stage: Option<String>,
    updated_ms: Option<u64>,
    last_error: Option<ErrorInfo>,
    precheck_ok: Option<bool>,
    chunks: ChunkSummary,
    flags: ControlFlags,
}

async fn status(config: &SdkConfig, args: StatusArgs) -> Result<u8, Failure> {
    let s = collect_status(config, &args.cloud, &args.task_id).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&s)
            .map_err(|e| FerryError::Internal(format!("cannot encode the status: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&s));
    }
    Ok(0)
}

async fn collect_status(
    config: &SdkConfig,
    cloud: &Cloud,
    id: &str,
) -> Result<CloudStatus, FerryError> {
    let repo = repo(config, cloud)?;
    let task: Option<TaskRecord> = repo.get_task(id).await?;
    let execution = match repo
        .get_record::<ExecutionRecord>(id, EXECUTION_RECORD)
        .await?
    {
        Some(rec) => Some(
            StepFunctions::new(config)
                .describe(&rec.execution_arn)
                .await?,
        ),
        None => None,
    };
    if task.is_none() && execution.is_none() {
        return Err(no_task(&repo, id));
    }
    Ok(CloudStatus {
        task_id: id.to_string(),
        state: task.as_ref().map(|t| t.state.as_str().to_string()),
        stage: task.as_ref().and_then(|t| t.stage.clone()),
        updated_ms: task.as_ref().map(|t| t.updated_ms),
        last_error: task.as_ref().and_then(|t| t.last_error.clone()),
        precheck_ok: task
            .as_ref()
            .and_then(|t| t.precheck.as_ref().map(|p| p.ok)),
        chunks: repo.chunk_summary(id).await?,
        flags: repo.flags(id).await?,
        execution,
    })
}

fn no_task(repo: &Repo<DynamoStore>, id: &str) -> FerryError {
    FerryError::BadTask(format!(
        "no task \"{id}\" in table {}: start it with `ferry start TASK.json --cloud`, or check --table and the region",
        repo.store().table()
    ))
}

fn render(s: &CloudStatus) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<11} {v}\n"));
    line("task", format!("{} (cloud)", s.task_id));
    match &s.execution {
        Some(e) => {
            line("execution", format!("{} {}", e.status, e.execution_arn));
            if let (Some(err), cause) = (&e.error, &e.cause) {
                line(
                    "  failed",
                    format!("{err}: {}", cause.as_deref().unwrap_or("")),
                );
            }
        }
        None => line(
            "execution",
            "none recorded (started outside `ferry start --cloud`?)".into(),
        ),
    }
    match (&s.state, &s.stage) {
        (Some(state), stage) => line(
            "state",
            format!(
                "{state}{}",
                stage
                    .as_deref()
                    .map(|st| format!(" (stage {st})"))
                    .unwrap_or_default()
            ),
        ),
        (None, _) => line(
            "state",
            "not registered yet (the precheck registers the task)".into(),
        ),
    }
    if let Some(e) = &s.last_error {
        line("last error", format!("{}: {}", e.name, e.message));
    }
    if let Some(ok) = s.precheck_ok {
        line(
            "precheck",
            if ok {
                "passed".into()
            } else {
                "FAILED (`ferry precheck TASK.json` shows the fixes)".into()
            },
        );
    }
    let c = &s.chunks;
    line(
        "chunks",
        format!(
            "{}/{} done, {} running, {} failed, {} rows copied",
            c.done, c.total, c.running, c.failed, c.rows
        ),
    );
    if s.flags.switch_requested || s.flags.stop_requested {
        line(
            "requested",
            format!(
                "switch: {}, stop: {}",
                s.flags.switch_requested, s.flags.stop_requested
            ),
        );
    }
    out
}

async fn set_flag(
    config: &SdkConfig,
    args: FlagArgs,
    what: &str,
    set: impl Fn(&mut ControlFlags),
) -> Result<u8, Failure> {
    let repo = repo(config, &args.cloud)?;
    let id = args.task_id.as_str();
    if repo.get_task(id).await?.is_none() {
        return Err(no_task(&repo, id).into());
    }
    let flags = repo.update_flags(id, set).await?;
    println!("{what} requested for task {id}: {}", json!(flags));
    Ok(0)
}

#[cfg(test)]
mod tests {
    //! Against the moto server of `scripts/testenv up` (`source <(scripts/testenv env)`).

    use ferry_core::task::TaskSpec;

    use super::*;

    async fn setup() -> (SdkConfig, Cloud, String) {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "AWS_ENDPOINT_URL is not set: run `source <(scripts/testenv env)` (moto from `scripts/testenv up`)"
        );
        let config = ferry_aws::load_config(None).await;
        let table = format!("ferry_cli_{:08x}", rand::random::<u32>());
        DynamoStore::new(&config, &table)
            .ensure_table()
            .await
            .expect("create the table");
        // A machine that waits: the execution stays RUNNING whether or not moto executes it.
        let definition =
            json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": true}}});
        let machine = StepFunctions::new(&config)
            .client()
            .create_state_machine()
            .name(format!("ferry-cli-{:08x}", rand::random::<u32>()))
            .definition(definition.to_string())
            .role_arn("arn:aws:iam::123456789012:role/ferry")
            .send()
            .await
            .expect("create a state machine")
            .state_machine_arn;
        (
            config,
            Cloud {
                cloud: true,
                table: Some(table),
            },
            machine,
        )
    }

    fn task_file(task_id: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("{task_id}.json"));
        let task = json!({"task_id": task_id, "source": {"secret": "ferry/s"}, "target": {"secret": "ferry/t"},
                          "objects": {"include": ["shop.*"]}});
        std::fs::write(&path, task.to_string()).expect("write the task file");
        path
    }

    #[tokio::test]
    async fn start_records_the_execution_and_refuses_a_second_one() {
        let (config, cloud, machine) = setup().await;
        let id = format!("cli-{:08x}", rand::random::<u32>());
        let args = |cloud: &Cloud| StartArgs {
            task: task_file(&id),
            state_machine_arn: machine.clone(),
            cloud: Cloud {
                cloud: true,
                table: cloud.table.clone(),
            },
        };
        assert_eq!(start(&config, args(&cloud)).await.expect("started"), 0);
        let s = collect_status(&config, &cloud, &id).await.expect("status");
        let execution = s.execution.expect("the execution is recorded");
        assert_eq!(execution.status, "RUNNING");
        assert!(execution.name.starts_with(&id), "{}", execution.name);
        assert_eq!(s.state, None, "not registered until the precheck runs");

        let second = start(&config, args(&cloud))
            .await
            .expect_err("a second start is refused");
        assert_eq!(second.error.name(), "Ferry.BadTask");
        assert!(
            second
                .error
                .message()
                .contains("already has a running execution"),
            "{}",
            second.error
        );
        assert!(render(&collect_status(&config, &cloud, &id).await.unwrap()).contains("RUNNING"));
    }

    #[tokio::test]
    async fn bad_task_file_is_refused_before_anything_starts() {
        let (config, cloud, machine) = setup().await;
        let path = std::env::temp_dir().join(format!("bad-{:08x}.json", rand::random::<u32>()));
        std::fs::write(&path, r#"{"task_id": "x", "source": {"secret": "s"}}"#).unwrap();
        let args = StartArgs {
            task: path,
            state_machine_arn: machine,
            cloud,
        };
        let e = start(&config, args).await.expect_err("refused");
        assert_eq!(e.error.name(), "Ferry.BadTask");
        assert_eq!(e.code(), crate::context::EXIT_BAD_INPUT);
    }

    #[tokio::test]
    async fn flags_and_status_of_a_registered_task() {
        let (config, cloud, _) = setup().await;
        let id = format!("cli-{:08x}", rand::random::<u32>());
        let unknown = collect_status(&config, &cloud, &id)
            .await
            .expect_err("no such task");
        assert!(unknown.message().contains("ferry start"), "{unknown}");
        let flag = FlagArgs {
            task_id: id.clone(),
            cloud: Cloud {
                cloud: true,
                table: cloud.table.clone(),
            },
        };
        assert!(
            set_flag(&config, flag, "switch", |f| f.switch_requested = true)
                .await
                .is_err()
        );

        let repo = repo(&config, &cloud).unwrap();
        let text = std::fs::read_to_string(task_file(&id)).unwrap();
        repo.create_task(&TaskSpec::from_json(&text).unwrap())
            .await
            .unwrap();
        let flag = FlagArgs {
            task_id: id.clone(),
            cloud: Cloud {
                cloud: true,
                table: cloud.table.clone(),
            },
        };
        set_flag(&config, flag, "switch", |f| f.switch_requested = true)
            .await
            .expect("flag set");
        let s = collect_status(&config, &cloud, &id).await.unwrap();
        assert!(s.flags.switch_requested && !s.flags.stop_requested);
        assert_eq!(s.state.as_deref(), Some("not started"));
        let shown = render(&s);
        assert!(
            shown.contains("none recorded") && shown.contains("switch: true"),
            "{shown}"
        );
    }
}

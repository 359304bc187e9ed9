//! `ferry <command> --cloud`: the same commands against a deployment of
//! infra/template.yaml — Step Functions runs the migration, DynamoDB keeps the
//! task, Secrets Manager the credentials.
//!
//! - `ferry start TASK.json --cloud --state-machine-arn ARN [--table T]`
//! - `ferry status TASK_ID --cloud --table T [--state-machine-arn ARN] [--json]`
//! - `ferry switch TASK_ID --cloud --table T` / `ferry stop TASK_ID --cloud --table T`
//! - `ferry resume TASK_ID --cloud --table T --state-machine-arn ARN [--recopy]`
//! - `ferry release TASK_ID --cloud --table T [--force] [--report-dir DIR]`
//!
//! Invariants: the task file is validated before anything is started; an
//! execution is never started, nor a task released, while the task has one
//! running; release never runs during a switch and writes the final report
//! before the task's records are deleted; each
//! execution has a unique name; `--table`/`FERRY_TABLE` and
//! `--state-machine-arn`/`FERRY_STATE_MACHINE_ARN` are the stack's outputs
//! `TaskTableName` and `StateMachineArn`. Region and credentials come from the
//! usual AWS environment (profile, `AWS_REGION`, `AWS_ENDPOINT_URL`). Nothing
//! printed holds a secret: task files name secrets, they do not contain them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_aws::{DynamoStore, ExecutionInfo, SdkConfig, SecretsManagerSource, StepFunctions};
use ferry_core::model::{ChunkSummary, ControlFlags, ErrorInfo, LivenessView, TaskRecord};
use ferry_core::store::{now_ms, Repo};
use ferry_core::task::MigrationType;
use ferry_core::{FerryError, Stage};
use ferry_stages::switch::SwitchPhase;
use ferry_stages::StageEnv;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::{Cloud, Command, StartArgs, StatusArgs};
use crate::cmd_control::ControlArgs;
use crate::context::{read_task_file, Failure};

/// The task store record naming the execution `ferry start --cloud` started last.
const EXECUTION_RECORD: &str = "cloud#execution";

/// `ferry switch|stop TASK_ID --cloud`.
#[derive(Debug)]
struct FlagArgs {
    task_id: String,
    cloud: Cloud,
}

/// `ferry resume TASK_ID --cloud --state-machine-arn ARN [--recopy]`.
#[derive(Debug)]
struct ResumeArgs {
    task_id: String,
    state_machine_arn: String,
    /// Copy every table again over the rows already on the target from a new snapshot point (the way
    /// out of Ferry.BinlogPurged); runs from this machine before the new execution starts.
    recopy: bool,
    cloud: Cloud,
}

/// `ferry release TASK_ID --cloud [--force] [--report-dir DIR]`.
#[derive(Debug)]
struct ReleaseArgs {
    task_id: String,
    force: bool,
    report_dir: PathBuf,
    cloud: Cloud,
}

/// What `ferry start --cloud` remembers about the execution it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExecutionRecord {
    execution_arn: String,
    state_machine_arn: String,
    started_ms: u64,
}

/// Run a command given `--cloud` (the parser lets only the commands below take it). Flags that only
/// mean something locally are refused by the parser (`--wait`, `--slice-seconds`, `--watch`) or here.
pub async fn execute(command: Command) -> Result<u8, Failure> {
    let config = ferry_aws::load_config(None).await;
    match command {
        Command::Start(args) => start(&config, args).await,
        Command::Status(args) => status(&config, args).await,
        Command::Switch(args) if args.force => Err(FerryError::BadTask(format!(
            "--force is not available with --cloud: ask for the switch with `ferry switch {} --cloud`, \
             and resolve the differences verify found first",
            args.task_id
        ))
        .into()),
        Command::Switch(args) => switch(&config, flag_args(args)).await,
        Command::Stop(args) => {
            set_flag(&config, flag_args(args), "stop", |f| {
                f.stop_requested = true
            })
            .await
        }
        Command::Resume(args) => {
            let Some(state_machine_arn) = args.state_machine_arn else {
                return Err(FerryError::BadTask(
                    "resume --cloud needs --state-machine-arn (or FERRY_STATE_MACHINE_ARN): the stack's \
                     StateMachineArn output"
                        .into(),
                )
                .into());
            };
            let c = args.control;
            let args = ResumeArgs {
                task_id: c.task_id,
                state_machine_arn,
                recopy: c.recopy,
                cloud: c.cloud,
            };
            resume(&config, args).await
        }
        Command::Release(args) => {
            let c = args.control;
            let args = ReleaseArgs {
                task_id: c.task_id,
                force: c.force,
                report_dir: args.report_dir.unwrap_or_else(|| PathBuf::from(".")),
                cloud: c.cloud,
            };
            release(&config, args).await
        }
        Command::Run(_)
        | Command::Precheck(_)
        | Command::Verify(_)
        | Command::Console(_)
        | Command::Grants(_) => Err(FerryError::BadTask(
            "this command has no --cloud form: run it without --cloud".into(),
        )
        .into()),
    }
}

fn flag_args(args: ControlArgs) -> FlagArgs {
    FlagArgs {
        task_id: args.task_id,
        cloud: args.cloud,
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
    let repo = match args.cloud.table {
        Some(_) => Some(repo(config, &args.cloud)?),
        None => None,
    };
    start_execution(
        config,
        repo.as_ref(),
        &args.state_machine_arn,
        &spec.task_id,
        &input,
    )
    .await?;
    Ok(0)
}

/// Start an execution (refused while the task has one running) and remember it in the task store.
async fn start_execution(
    config: &SdkConfig,
    repo: Option<&Repo<DynamoStore>>,
    state_machine_arn: &str,
    task_id: &str,
    input: &serde_json::Value,
) -> Result<(), FerryError> {
    let sfn = StepFunctions::new(config);
    if let Some(repo) = repo {
        refuse_if_running(repo, &sfn, task_id, "start another execution").await?;
    }
    let execution_arn = sfn.start(state_machine_arn, task_id, input).await?;
    if let Some(repo) = repo {
        let record = ExecutionRecord {
            execution_arn: execution_arn.clone(),
            state_machine_arn: state_machine_arn.to_string(),
            started_ms: now_ms(),
        };
        repo.put_record(task_id, EXECUTION_RECORD, &record).await?;
    }
    println!("started task {task_id} on Step Functions");
    println!("execution  {execution_arn}");
    println!("follow it: ferry status {task_id} --cloud");
    Ok(())
}

/// Two executions working one task would race for its chunks and links: refuse the second.
async fn refuse_if_running(
    repo: &Repo<DynamoStore>,
    sfn: &StepFunctions,
    task_id: &str,
    what: &str,
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
            "cannot {what}: task {task_id} already has a running execution ({}); follow it with \
             `ferry status {task_id} --cloud`, or stop it with `ferry stop {task_id} --cloud` and wait until it ends",
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
    #[serde(skip_serializing_if = "Option::is_none")]
    attention: Option<ferry_core::model::Attention>,
    precheck_ok: Option<bool>,
    chunks: ChunkSummary,
    flags: ControlFlags,
    /// Whether a stage renews the task's heartbeat: `running (worker W, seen 2 s ago)` or
    /// `not running since <time>: ...`.
    worker: Option<LivenessView>,
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
        stage: task
            .as_ref()
            .filter(|t| t.state.has_stage())
            .and_then(|t| t.stage.clone()),
        updated_ms: task.as_ref().map(|t| t.updated_ms),
        last_error: task.as_ref().and_then(|t| t.last_error.clone()),
        attention: task.as_ref().and_then(|t| t.attention.clone()),
        precheck_ok: task
            .as_ref()
            .and_then(|t| t.precheck.as_ref().map(|p| p.ok)),
        chunks: repo.chunk_summary(id).await?,
        flags: repo.flags(id).await?,
        worker: match &task {
            Some(t) => Some(LivenessView::of(
                repo.liveness(id).await?.as_ref(),
                t.state,
                None,
                &format!("`ferry resume {id} --cloud`"),
                now_ms(),
            )),
            None => None,
        },
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
    if let Some(w) = &s.worker {
        line("worker", w.text.clone());
    }
    if let Some(a) = &s.attention {
        line("ATTENTION", a.message(&s.task_id));
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

/// Ask for the switchover, unless there is no link to switch or it is done already.
async fn switch(config: &SdkConfig, args: FlagArgs) -> Result<u8, Failure> {
    let repo = repo(config, &args.cloud)?;
    let id = args.task_id.as_str();
    let task = repo.get_task(id).await?.ok_or_else(|| no_task(&repo, id))?;
    if ferry_stages::switch::record(&repo, id)
        .await?
        .is_some_and(|r| r.phase == SwitchPhase::Done)
    {
        println!(
            "task {id} has already switched: the target is the primary ({})",
            task.state.as_str()
        );
        return Ok(0);
    }
    if !task.spec.has(MigrationType::Incremental) {
        return Err(FerryError::BadTask(format!(
            "task {id} has no \"incremental\" in its types: there is no link to switch"
        ))
        .into());
    }
    set_flag(config, args, "switch", |f| f.switch_requested = true).await
}

/// A new execution from the stored task file, with the stop request cleared.
async fn resume(config: &SdkConfig, args: ResumeArgs) -> Result<u8, Failure> {
    let repo = repo(config, &args.cloud)?;
    let id = args.task_id.as_str();
    let task = repo.get_task(id).await?.ok_or_else(|| no_task(&repo, id))?;
    refuse_if_running(&repo, &StepFunctions::new(config), id, "resume").await?;
    repo.update_flags(id, |f| f.stop_requested = false).await?;
    if args.recopy {
        // No execution runs (refused above), so nothing copies or applies while the task is reset.
        let env = StageEnv::new(
            repo.store().clone(),
            SecretsManagerSource::new(config),
            release_worker(),
        );
        println!("{}", ferry_stages::plan::recopy(&env, id).await?);
    }
    let input = serde_json::to_value(&task.spec)
        .map_err(|e| FerryError::Internal(format!("cannot encode the stored task file: {e}")))?;
    start_execution(config, Some(&repo), &args.state_machine_arn, id, &input).await?;
    Ok(0)
}

/// Run the cleanup stage here, on the cloud's task store and secrets: report, then release.
async fn release(config: &SdkConfig, args: ReleaseArgs) -> Result<u8, Failure> {
    let repo = repo(config, &args.cloud)?;
    let id = args.task_id.as_str();
    if repo.get_task(id).await?.is_none() {
        println!(
            "task {id} is not in table {}: already released",
            repo.store().table()
        );
        return Ok(0);
    }
    refuse_if_running(&repo, &StepFunctions::new(config), id, "release").await?;
    let env = StageEnv::new(
        repo.store().clone(),
        SecretsManagerSource::new(config),
        release_worker(),
    );
    let far = Instant::now() + Duration::from_secs(3600);
    let report = ferry_stages::invoke_stage(
        &env,
        Stage::Cleanup,
        json!({"task_id": id, "action": "report"}),
        far,
    )
    .await?;
    crate::cmd_control::write_report_in(&args.report_dir, id, &report["report"])?;
    let input = json!({"task_id": id, "action": "release", "force": args.force});
    let out = ferry_stages::invoke_stage(&env, Stage::Cleanup, input, far).await?;
    if let Some(reason) = out.get("refused").and_then(serde_json::Value::as_str) {
        return Err(FerryError::Fenced(reason.to_string()).into());
    }
    if out.get("report").is_some() {
        crate::cmd_control::write_report_in(&args.report_dir, id, &out["report"])?;
    }
    println!(
        "task {id} released: Ferry's objects removed from both databases and its records from table {}; final \
         report in {}",
        repo.store().table(),
        args.report_dir.display()
    );
    Ok(0)
}

fn release_worker() -> String {
    format!("cli-release-{}-{}", std::process::id(), now_ms())
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
    async fn resume_starts_from_the_stored_task_file_once() {
        let (config, cloud, machine) = setup().await;
        let id = format!("cli-{:08x}", rand::random::<u32>());
        let repo = repo(&config, &cloud).unwrap();
        let text = std::fs::read_to_string(task_file(&id)).unwrap();
        repo.create_task(&TaskSpec::from_json(&text).unwrap())
            .await
            .unwrap();
        let no_link = switch(
            &config,
            FlagArgs {
                task_id: id.clone(),
                cloud: Cloud {
                    cloud: true,
                    table: cloud.table.clone(),
                },
            },
        )
        .await
        .expect_err("no incremental type, no link to switch");
        assert!(
            no_link.error.message().contains("no link to switch"),
            "{}",
            no_link.error
        );
        repo.update_flags(&id, |f| f.stop_requested = true)
            .await
            .unwrap();
        let args = || ResumeArgs {
            task_id: id.clone(),
            state_machine_arn: machine.clone(),
            recopy: false,
            cloud: Cloud {
                cloud: true,
                table: cloud.table.clone(),
            },
        };
        assert_eq!(resume(&config, args()).await.expect("resumed"), 0);
        let s = collect_status(&config, &cloud, &id).await.unwrap();
        assert!(!s.flags.stop_requested, "resume clears the stop request");
        assert_eq!(s.execution.expect("recorded").status, "RUNNING");
        let again = resume(&config, args())
            .await
            .expect_err("one execution at a time");
        assert!(
            again
                .error
                .message()
                .contains("already has a running execution"),
            "{}",
            again.error
        );

        let release_args = ReleaseArgs {
            task_id: id.clone(),
            force: false,
            report_dir: std::env::temp_dir(),
            cloud: Cloud {
                cloud: true,
                table: cloud.table.clone(),
            },
        };
        let refused = release(&config, release_args)
            .await
            .expect_err("not while it runs");
        assert!(
            refused.error.message().contains("cannot release"),
            "{}",
            refused.error
        );
    }

    /// Release runs the cleanup stage here with the cloud's store and Secrets Manager secrets.
    #[tokio::test]
    async fn release_removes_the_task_and_keeps_the_report() {
        let (config, cloud, _) = setup().await;
        let t = ferry_testkit::env();
        let id = format!("cli-{:08x}", rand::random::<u32>());
        let secrets = aws_sdk_secretsmanager_names(&config, &t, &id).await;
        let task = json!({"task_id": id, "source": {"secret": secrets.0, "dialect": "mariadb"},
                          "target": {"secret": secrets.1, "dialect": "mariadb"}, "objects": {"include": ["nodb.*"]}});
        let repo = repo(&config, &cloud).unwrap();
        repo.create_task(&TaskSpec::from_json(&task.to_string()).unwrap())
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("ferry-reports-{id}"));
        let args = || ReleaseArgs {
            task_id: id.clone(),
            force: false,
            report_dir: dir.clone(),
            cloud: Cloud {
                cloud: true,
                table: cloud.table.clone(),
            },
        };
        assert_eq!(release(&config, args()).await.expect("released"), 0);
        assert!(
            repo.get_task(&id).await.unwrap().is_none(),
            "the task's records are gone"
        );
        let report =
            std::fs::read_to_string(dir.join(format!("{id}.json"))).expect("the JSON report");
        assert!(
            report.contains(&id) && !report.contains(&t.source_password),
            "{report}"
        );
        assert!(dir.join(format!("{id}.md")).exists());
        assert_eq!(
            release(&config, args()).await.expect("twice is harmless"),
            0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Secrets for the test servers' migration users, in moto's Secrets Manager.
    async fn aws_sdk_secretsmanager_names(
        config: &SdkConfig,
        t: &ferry_testkit::TestEnv,
        id: &str,
    ) -> (String, String) {
        let client = ferry_aws::secrets::Client::new(config);
        let mut names = Vec::new();
        for (side, role) in [
            (ferry_testkit::Side::Source, "source"),
            (ferry_testkit::Side::Target, "target"),
        ] {
            let name = format!("ferry/{id}/{role}");
            let value = t.secret_json(side, false).to_string();
            client
                .create_secret()
                .name(&name)
                .secret_string(value)
                .send()
                .await
                .expect("create a secret");
            names.push(name);
        }
        (names[0].clone(), names[1].clone())
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

        // Liveness: a stage renewing its heartbeat, then one that died (a Lambda timed out, an execution aborted).
        repo.beat(&id, "lambda-copy-7", Some("copy-chunk"))
            .await
            .unwrap();
        let s = collect_status(&config, &cloud, &id).await.unwrap();
        let shown = render(&s);
        assert!(
            shown.contains("running (worker lambda-copy-7, seen 0 s ago)"),
            "{shown}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["worker"]["running"], true, "{json}");
        let stale = ferry_core::model::Liveness {
            worker: "lambda-copy-7".into(),
            stage: Some("copy-chunk".into()),
            started_ms: now_ms() - 120_000,
            seen_ms: now_ms() - 60_000,
            ended_ms: None,
        };
        repo.put_record(&id, "alive", &stale).await.unwrap();
        let s = collect_status(&config, &cloud, &id).await.unwrap();
        let shown = render(&s);
        assert!(
            shown.contains("not running since ")
                && shown.contains(&format!("resume with `ferry resume {id} --cloud`")),
            "{shown}"
        );
        assert_eq!(
            serde_json::to_value(&s).unwrap()["worker"]["running"],
            false
        );
    }
}

//! THE cloud path: the state machine of infra/template.yaml (the same
//! statemachine/migration.asl.json `ferry run` interprets) executed by moto's
//! Step Functions, each Task a Lambda invocation served by the real stage
//! handlers on DynamoDB and Secrets Manager (moto), migrating real MariaDB
//! tables into the MariaDB target and into OceanBase. The same task run
//! embedded must enter the same states and give the same results.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client as SecretsClient;
use aws_sdk_sfn::Client as SfnClient;
use ferry_asl::{Definition, Dispatch, Outcome, Runner, TaskCall, TaskFailure};
use ferry_aws::{DynamoStore, SecretsManagerSource, StepFunctions};
use ferry_core::model::ChunkSummary;
use ferry_core::store::Repo;
use ferry_stages::StageEnv;
use ferry_testkit::{
    assert_same_rows, drop_db, exec, on_both_targets, recreate_db, unique_name, Side, TestEnv,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};

use crate::common::lab::{function_arn, Lab};
use crate::common::sam::{deployed_definition, root};
use crate::common::ACCOUNT;

const TABLES: &[&str] = &["items", "events"];
const ROWS: u64 = 1500; // 1000 items + 500 events

/// Source tables with awkward values: decimals, NULLs, emoji, binary, a composite key.
async fn seed_source(t: &TestEnv, db: &str) {
    let mut src = t.admin(Side::Source).await;
    recreate_db(&mut src, db).await;
    let q = |s: &str| s.replace("{db}", db);
    exec(
        &mut src,
        &q("CREATE TABLE `{db}`.items (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL, price DECIMAL(12,2), \
            created DATETIME(3), note TEXT NULL) CHARACTER SET utf8mb4"),
    )
    .await;
    exec(
        &mut src,
        &q("CREATE TABLE `{db}`.events (k1 INT, k2 VARCHAR(10), body BLOB, PRIMARY KEY (k1, k2)) CHARACTER SET utf8mb4"),
    )
    .await;
    exec(
        &mut src,
        &q("INSERT INTO `{db}`.items WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000) \
            SELECT n, CONCAT('item-', n, IF(n % 7 = 0, ' 🚢', '')), n * 1.25, \
            TIMESTAMP('2024-01-01 00:00:00.123') + INTERVAL n MINUTE, IF(n % 3 = 0, NULL, REPEAT('x', n % 50)) FROM s"),
    )
    .await;
    exec(
        &mut src,
        &q("INSERT INTO `{db}`.events WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 500) \
            SELECT n DIV 5, CONCAT('k', n % 5), UNHEX(MD5(n)) FROM s"),
    )
    .await;
}

fn task_file(
    t: &TestEnv,
    task_id: &str,
    db: &str,
    secrets: (&str, &str),
    target_db: &str,
) -> Value {
    let mut rename = serde_json::Map::new();
    if target_db != db {
        rename.insert(db.to_string(), json!(target_db));
    }
    json!({
        "task_id": task_id,
        "source": {"secret": secrets.0, "dialect": "mariadb"},
        "target": {"secret": secrets.1, "dialect": t.target_dialect},
        "types": ["schema", "full", "verify"],
        "objects": {"include": [format!("{db}.*")], "rename": rename},
        "options": {"chunk_rows": 200, "concurrency": 3, "verify_when": "after_copy", "verify_concurrency": 2}
    })
}

pub async fn create_secrets(lab: &Lab, t: &TestEnv, prefix: &str) -> (String, String) {
    let client = SecretsClient::new(&lab.config);
    let mut names = Vec::new();
    for (side, role) in [(Side::Source, "source"), (Side::Target, "target")] {
        let name = format!("ferry/{prefix}/{role}");
        client
            .create_secret()
            .name(&name)
            .secret_string(t.secret_json(side, false).to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("create secret {name}: {e}"));
        names.push(name);
    }
    (names[0].clone(), names[1].clone())
}

/// Create the state machine in moto from the template's definition and substitutions.
pub async fn create_state_machine(lab: &Lab, name: &str) -> String {
    let definition = deployed_definition(function_arn);
    assert!(
        !definition.contains("${"),
        "a placeholder was left: {definition}"
    );
    SfnClient::new(&lab.config)
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/ferry-state-machine"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create_state_machine: {e:?}"))
        .state_machine_arn
}

/// Poll DescribeExecution until the execution ends, or fail after `timeout`.
pub async fn wait_for_end(
    sfn: &StepFunctions,
    arn: &str,
    timeout: Duration,
) -> ferry_aws::ExecutionInfo {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    loop {
        let info = sfn
            .describe(arn)
            .await
            .unwrap_or_else(|e| panic!("describe {arn}: {e}"));
        if !info.is_running() {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "execution {arn} still running after {timeout:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// The embedded orchestrator's dispatch: the stage in-process, on the same adapters.
struct InProcess {
    store: DynamoStore,
    secrets: SecretsManagerSource,
    calls: Mutex<u64>,
}

impl Dispatch for InProcess {
    fn invoke(
        &self,
        call: TaskCall<'_>,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, TaskFailure>> {
        let n = {
            let mut c = self.calls.lock().unwrap();
            *c += 1;
            *c
        };
        let env = StageEnv::new(
            self.store.clone(),
            self.secrets.clone(),
            format!("embedded-{n}"),
        );
        let stage = call.resource.to_string();
        async move {
            ferry_stages::invoke(
                &env,
                &stage,
                input,
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .map_err(|e| TaskFailure::new(e.name(), e.message()))
        }
        .boxed()
    }
}

async fn run_embedded(lab: &Lab, task: Value) -> Outcome {
    let text = std::fs::read_to_string(root().join("statemachine/migration.asl.json"))
        .expect("definition");
    let subs: HashMap<String, String> = ferry_core::Stage::substitutions();
    let definition = Arc::new(Definition::from_json(&text, &subs).expect("the definition loads"));
    let dispatch = Arc::new(InProcess {
        store: lab.store.clone(),
        secrets: lab.secrets.clone(),
        calls: Mutex::new(0),
    });
    Runner::new(definition, dispatch)
        .run(&unique_name("embedded"), task)
        .await
        .expect("the embedded run starts")
}

fn comparable(s: &ChunkSummary) -> (u64, u64, u64, u64) {
    (s.total, s.done, s.failed, s.rows)
}

on_both_targets!(
    migration_runs_on_step_functions_like_embedded,
    super::migration_runs_on_step_functions_like_embedded
);
async fn migration_runs_on_step_functions_like_embedded(t: TestEnv) {
    let db = unique_name("cloud");
    seed_source(&t, &db).await;
    let lab = Lab::start().await;
    lab.enable_execution().await;
    let secrets = create_secrets(&lab, &t, &db).await;
    let machine = create_state_machine(&lab, &unique_name("ferry-migration")).await;

    // ---- the cloud path
    let task_id = format!("{db}-cloud");
    let sfn = StepFunctions::new(&lab.config);
    let started = Instant::now();
    let execution = sfn
        .start(
            &machine,
            &task_id,
            &task_file(&t, &task_id, &db, (&secrets.0, &secrets.1), &db),
        )
        .await
        .expect("start");
    let info = wait_for_end(&sfn, &execution, Duration::from_secs(240)).await;
    let cloud_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        info.status,
        "SUCCEEDED",
        "execution failed: {:?} {:?}; invocations: {:?}",
        info.error,
        info.cause,
        lab.invocations.lock().unwrap()
    );
    let repo = Repo::new(lab.store.clone());
    let task = repo
        .task(&task_id)
        .await
        .expect("the task record is in DynamoDB");
    assert!(task.planned, "plan recorded in DynamoDB: {task:?}");
    assert!(task.snapshot.is_some(), "snapshot point recorded");
    assert_eq!(
        task.state,
        ferry_core::model::TaskState::Completed,
        "a schema+full task is completed when its execution succeeds: {task:?}"
    );
    let cloud = repo.chunk_summary(&task_id).await.unwrap();
    assert!(cloud.total >= 8, "1500 rows in chunks of 200: {cloud:?}");
    assert_eq!(
        (cloud.done, cloud.failed, cloud.rows),
        (cloud.total, 0, ROWS),
        "{cloud:?}"
    );
    let mut src = t.admin(Side::Source).await;
    let mut tgt = t.admin(Side::Target).await;
    for table in TABLES {
        assert_same_rows(&mut src, (&db, table), &mut tgt, (&db, table)).await;
    }
    let cloud_states = sfn.entered_states(&execution).await.unwrap();
    let invoked = lab.stages_invoked();
    for f in ["ferry-grant-check", "ferry-plan", "ferry-copy-chunk"] {
        assert!(
            invoked.iter().any(|i| i == f),
            "{f} was not invoked: {invoked:?}"
        );
    }
    // Verify fans out: begin, one Lambda per verify slot, the join.
    for s in [
        "VerifyAfterCopy",
        "VerifyAfterCopyFanOut",
        "VerifyAfterCopyJoin",
    ] {
        assert!(
            cloud_states.iter().any(|x| x == s),
            "{s} not entered: {cloud_states:?}"
        );
    }
    assert_eq!(
        invoked.iter().filter(|i| *i == "ferry-verify").count(),
        4,
        "begin + 2 workers + join: {invoked:?}"
    );
    let verified = repo
        .get_record::<ferry_stages::verify::VerifySummary>(
            &task_id,
            ferry_stages::verify::SUMMARY_SK,
        )
        .await
        .unwrap()
        .expect("a verify summary in DynamoDB");
    assert!(verified.clean && verified.rows == ROWS, "{verified:?}");

    // ---- the same task, embedded (another task id, into another target database)
    let embedded_db = format!("{db}_e");
    let embedded_id = format!("{db}-embedded");
    let started = Instant::now();
    let outcome = run_embedded(
        &lab,
        task_file(
            &t,
            &embedded_id,
            &db,
            (&secrets.0, &secrets.1),
            &embedded_db,
        ),
    )
    .await;
    let embedded_secs = started.elapsed().as_secs_f64();
    assert!(outcome.is_succeeded(), "embedded run: {outcome:?}");
    assert_eq!(
        outcome.entered_states(),
        cloud_states,
        "embedded and Step Functions entered different states"
    );
    let embedded = repo.chunk_summary(&embedded_id).await.unwrap();
    assert_eq!(
        comparable(&embedded),
        comparable(&cloud),
        "same chunks and rows both ways"
    );
    for table in TABLES {
        assert_same_rows(&mut src, (&db, table), &mut tgt, (&embedded_db, table)).await;
    }
    eprintln!(
        "cloud path: {} states, {} chunks, {ROWS} rows in {cloud_secs:.1} s (embedded {embedded_secs:.1} s); states: {cloud_states:?}",
        cloud_states.len(),
        cloud.total
    );

    drop_db(&mut src, &db).await;
    drop_db(&mut tgt, &db).await;
    drop_db(&mut tgt, &embedded_db).await;
}

/// A stage error reaches Step Functions as its Ferry.* name and fails the execution through the
/// definition's Catch: here a task naming a secret that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_error_fails_the_execution_by_name() {
    let lab = Lab::start().await;
    lab.enable_execution().await;
    let machine = create_state_machine(&lab, &unique_name("ferry-migration")).await;
    let task_id = unique_name("cloud-badsecret");
    let missing = format!("ferry/{task_id}/nope");
    let sfn = StepFunctions::new(&lab.config);
    let execution = sfn
        .start(
            &machine,
            &task_id,
            &task_file(
                &ferry_testkit::env(),
                &task_id,
                "nodb",
                (&missing, &missing),
                "nodb",
            ),
        )
        .await
        .unwrap();
    let info = wait_for_end(&sfn, &execution, Duration::from_secs(60)).await;
    assert_eq!(info.status, "FAILED");
    assert_eq!(info.error.as_deref(), Some("Ferry.BadSecret"), "{info:?}");
    assert!(
        info.cause.as_deref().unwrap_or_default().contains(&missing),
        "{info:?}"
    );
    let invoked = lab.invocations.lock().unwrap().clone();
    assert_eq!(
        invoked,
        [(
            "ferry-grant-check".to_string(),
            Some("Ferry.BadSecret".to_string())
        )]
    );
}

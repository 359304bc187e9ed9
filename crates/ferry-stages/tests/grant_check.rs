//! The `grant-check` stage end to end: the task file in, the report in the
//! task store, the task failed with `Ferry.PrecheckFailed` when an item
//! fails, nothing written to the target but the dropped probe, and a rerun
//! of a task that already planned its tables passes; into the MariaDB target
//! and into OceanBase.

mod common;

use ferry_core::model::{CheckStatus, TablePhase, TableRecord, TaskState};
use ferry_mysql::quote_ident;
use ferry_stages::invoke;
use ferry_testkit::{drop_db, env, on_both_targets, unique_name, Side, TestEnv};
use mysql_async::prelude::*;
use serde_json::{json, Value};

struct Fixture {
    env: common::Env,
    dir: common::StageDir,
}

impl Fixture {
    /// A fresh task store and a 0600 secrets file with `test-source` and `test-target`.
    fn new(te: &TestEnv) -> Fixture {
        let dir = common::StageDir::new(te, "ferry_grant_check");
        Fixture {
            env: dir.env("test-worker"),
            dir,
        }
    }

    async fn run(&self, task: &Value) -> Result<Value, ferry_core::FerryError> {
        invoke(&self.env, "grant-check", task.clone(), common::deadline(60)).await
    }
}

fn task(te: &TestEnv, id: &str, src: &str, tgt: &str) -> Value {
    let mut task = common::task_json(te, id, src, tgt);
    task["types"] = json!(["schema", "full", "incremental", "verify"]);
    task
}

async fn source_db(te: &TestEnv, ddl: &[&str]) -> String {
    common::fresh_db(te, Side::Source, "gc_src", ddl).await
}

/// Every table of `db` on the target with its row count.
async fn target_contents(te: &TestEnv, db: &str) -> Vec<(String, u64)> {
    let mut c = te.admin(Side::Target).await;
    let tables: Vec<String> = c
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
            (db,),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let n: Option<u64> = c
            .query_first(format!(
                "SELECT COUNT(*) FROM {}.{}",
                quote_ident(db),
                quote_ident(&t)
            ))
            .await
            .unwrap();
        out.push((t, n.unwrap_or(0)));
    }
    out
}

on_both_targets!(
    a_passing_task_is_recorded_and_nothing_but_the_probe_touches_the_target,
    super::a_passing_task_is_recorded_and_nothing_but_the_probe_touches_the_target
);
async fn a_passing_task_is_recorded_and_nothing_but_the_probe_touches_the_target(te: TestEnv) {
    let src = source_db(
        &te,
        &["CREATE TABLE {db}.orders (id INT PRIMARY KEY, v INT)"],
    )
    .await;
    let tgt = common::fresh_db(
        &te,
        Side::Target,
        "gc_tgt",
        &[
            "CREATE TABLE {db}.unrelated (id INT PRIMARY KEY)",
            "INSERT INTO {db}.unrelated VALUES (1), (2)",
        ],
    )
    .await;
    let mut t = te.admin(Side::Target).await;
    let before = target_contents(&te, &tgt).await;
    let f = Fixture::new(&te);
    let id = unique_name("gc");

    let out = f.run(&task(&te, &id, &src, &tgt)).await.unwrap();
    let rec = f.env.repo.task(&id).await.unwrap();
    let report = rec.precheck.clone().unwrap();
    assert_eq!(out["ok"], json!(true), "{}", report.render());
    assert_eq!(out["task_id"], json!(id));
    assert_eq!(out["failed"], json!(0));
    assert_eq!(
        out["warned"].as_u64(),
        Some(
            report
                .items
                .iter()
                .filter(|i| i.status == CheckStatus::Warn)
                .count() as u64
        )
    );
    assert!(report.ok);
    assert_eq!(
        (rec.state, rec.stage.as_deref()),
        (TaskState::Prechecking, Some("grant-check"))
    );
    assert!(rec.last_error.is_none());
    assert!(report
        .items
        .iter()
        .any(|i| i.check == "target.write_privileges" && i.subject == tgt));
    assert_eq!(
        target_contents(&te, &tgt).await,
        before,
        "the target changed"
    );

    // A rerun of the same task passes again.
    assert_eq!(
        f.run(&task(&te, &id, &src, &tgt)).await.unwrap()["ok"],
        json!(true)
    );

    drop_db(&mut te.admin(Side::Source).await, &src).await;
    drop_db(&mut t, &tgt).await;
}

on_both_targets!(
    a_failed_item_fails_the_task_and_a_planned_rerun_passes,
    super::a_failed_item_fails_the_task_and_a_planned_rerun_passes
);
async fn a_failed_item_fails_the_task_and_a_planned_rerun_passes(te: TestEnv) {
    let src = source_db(
        &te,
        &["CREATE TABLE {db}.orders (id INT PRIMARY KEY, v INT)"],
    )
    .await;
    let tgt = common::fresh_db(
        &te,
        Side::Target,
        "gc_tgt",
        &[
            "CREATE TABLE {db}.orders (id INT PRIMARY KEY, v INT)",
            "INSERT INTO {db}.orders VALUES (1, 1)",
        ],
    )
    .await;
    let mut t = te.admin(Side::Target).await;
    let f = Fixture::new(&te);
    let id = unique_name("gc");

    let out = f.run(&task(&te, &id, &src, &tgt)).await.unwrap();
    assert_eq!(
        (out["ok"].clone(), out["failed"].clone()),
        (json!(false), json!(1)),
        "{out}"
    );
    let rec = f.env.repo.task(&id).await.unwrap();
    assert_eq!(rec.state, TaskState::Failed);
    let err = rec.last_error.unwrap();
    assert_eq!(err.name, "Ferry.PrecheckFailed");
    assert!(
        err.message.starts_with("[FAIL] target.table_empty"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("fix: on the target, TRUNCATE TABLE"),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains("[pass]"),
        "only failed items: {}",
        err.message
    );

    // The task planned (and copied into) that table in an earlier run: the rerun passes.
    let table = TableRecord {
        source_db: src.clone(),
        source_table: "orders".into(),
        target_db: tgt.clone(),
        target_table: "orders".into(),
        key_columns: vec!["id".into()],
        phase: TablePhase::Copied,
        rows_estimate: 1,
        chunks_total: 1,
    };
    f.env.repo.put_table(&id, &table).await.unwrap();
    let out = f.run(&task(&te, &id, &src, &tgt)).await.unwrap();
    assert_eq!(out["ok"], json!(true), "{out}");
    let rec = f.env.repo.task(&id).await.unwrap();
    assert!(
        rec.last_error.is_none(),
        "a passing run clears the precheck failure"
    );
    assert_eq!(rec.state, TaskState::Prechecking);

    drop_db(&mut te.admin(Side::Source).await, &src).await;
    drop_db(&mut t, &tgt).await;
}

#[tokio::test]
async fn a_bad_task_file_or_secret_is_refused_before_anything_is_recorded() {
    let te = env();
    let f = Fixture::new(&te);
    let mut bad = task(&te, "gc-bad", "shop", "shop2");
    bad["objects"]["include"] = json!(["nodot"]);
    let e = f.run(&bad).await.unwrap_err();
    assert_eq!(e.name(), "Ferry.BadTask");
    assert!(e.message().contains("objects.include"), "{e}");

    let mut missing = task(&te, "gc-missing", "shop", "shop2");
    missing["source"]["secret"] = json!("no-such-secret");
    let e = f.run(&missing).await.unwrap_err();
    assert_eq!(e.name(), "Ferry.BadSecret");
    assert!(
        e.message().contains("\"no-such-secret\"") && e.message().contains("secrets.json"),
        "{e}"
    );
    assert!(f.env.repo.get_task("gc-missing").await.unwrap().is_none());
    assert!(f.env.repo.get_task("gc-bad").await.unwrap().is_none());
}

#[tokio::test]
async fn a_wrong_password_is_a_failed_item_not_an_error() {
    let te = env();
    let f = Fixture::new(&te);
    let secrets = f.dir.join("secrets.json");
    let mut wrong = te.secret_json(Side::Source, false);
    wrong["password"] = json!("not-the-password-123");
    let body = json!({"test-source": wrong, "test-target": te.secret_json(Side::Target, false)});
    std::fs::write(&secrets, body.to_string()).unwrap();
    let id = unique_name("gc");
    let out = f.run(&task(&te, &id, "shop", "shop2")).await.unwrap();
    assert_eq!(out["ok"], json!(false));
    let rec = f.env.repo.task(&id).await.unwrap();
    let err = rec.last_error.unwrap();
    assert!(
        err.message
            .contains("[FAIL] source.connect (source): access denied for"),
        "{}",
        err.message
    );
    let stored = serde_json::to_string(&rec.precheck).unwrap();
    assert!(!stored.contains("not-the-password-123") && !stored.contains(&te.source_password));
    assert_eq!(
        err.message.matches("source.connect").count(),
        1,
        "reported once: {}",
        err.message
    );
}

//! A task's whole lifecycle on the real servers: full copy and incremental
//! sync under a writer, verify, switch (the target becomes the primary and its
//! changes flow back to the source), stop, and release; plus the switch's
//! waits (copy running, lag high, source written), a kill after each switch
//! step with a rerun that switches exactly once, and release refused while
//! switching and harmless twice.
//!
//! Each test runs against both targets. The reverse link reads the target's
//! binary log, which OceanBase has only through its Binlog Service (seekdb has
//! none): on OceanBase the tasks run without "reverse", the switch records
//! `record_reverse_start` and `start_reverse` as skipped and completes the
//! task, and the steps that follow the target's changes back to the source
//! stay MariaDB-only. A task with "reverse" on OceanBase gives up its switch
//! before retiring the forward link, naming the Binlog Service.
//!
//! `ferry_src` needs write privileges on the source for the reverse link: the
//! fixture grants them on the test's own databases (and on its own meta
//! schema) with the admin connection, and revokes them at the end.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_asl::{Definition, Dispatch, Outcome, Runner, TaskCall, TaskFailure};
use ferry_core::model::{CheckpointRecord, Direction, TaskState};
use ferry_core::store::{now_ms, ItemStore};
use ferry_core::task::TaskSpec;
use ferry_mysql::apply::{set_failpoint, FailAction};
use ferry_mysql::{qualified, quote_ident};
use ferry_stages::invoke;
use ferry_stages::switch::{self, StepOutcome, SwitchPhase, STEPS};
use ferry_testkit::{
    drop_db, exec, on_both_targets, recreate_db, rows, unique_name, wait_until, Side, TestEnv,
};
use futures::future::BoxFuture;
use futures::FutureExt;
use mysql_async::prelude::*;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use common::Env;

struct Fixture {
    env: Arc<Env>,
    _dir: common::StageDir,
    te: TestEnv,
    task_id: String,
    src_db: String,
    tgt_db: String,
    meta: String,
}

const DEFINITION: &str = include_str!("../../../statemachine/migration.asl.json");
const USER_SRC: &str = "ferry_src";

impl Fixture {
    /// A task of `types`; "reverse" is left out on OceanBase (no binary log
    /// there without its Binlog Service), unless `keep_reverse`.
    async fn new(te: TestEnv, prefix: &str, types: &[&str], options: Value) -> Fixture {
        Fixture::with_types(te, prefix, types, options, false).await
    }

    async fn with_types(
        te: TestEnv,
        prefix: &str,
        types: &[&str],
        options: Value,
        keep_reverse: bool,
    ) -> Fixture {
        let types: Vec<&str> = types
            .iter()
            .copied()
            .filter(|t| keep_reverse || !te.is_oceanbase() || *t != "reverse")
            .collect();
        let dir = common::StageDir::new(&te, &format!("ferry_{prefix}"));
        let f = Fixture {
            env: Arc::new(dir.env("test-worker")),
            _dir: dir,
            te,
            task_id: unique_name(prefix).replace('_', "-"),
            src_db: unique_name("ferry_lc_src"),
            tgt_db: unique_name("ferry_lc_tgt"),
            meta: unique_name("ferry_lc_meta"),
        };
        let mut src = f.te.admin(Side::Source).await;
        recreate_db(&mut src, &f.src_db).await;
        exec(
            &mut src,
            &format!(
                "CREATE TABLE {} (id INT PRIMARY KEY, counter INT NOT NULL, note VARCHAR(30))",
                qualified(&f.src_db, "orders")
            ),
        )
        .await;
        let values: Vec<String> = (1..=2000).map(|i| format!("({i}, 0, 'n{i}')")).collect();
        exec(
            &mut src,
            &format!(
                "INSERT INTO {} VALUES {}",
                qualified(&f.src_db, "orders"),
                values.join(",")
            ),
        )
        .await;
        // The reverse link writes to the source; the meta schema is this test's own.
        for db in [&f.src_db, &f.meta] {
            exec(
                &mut src,
                &format!(
                    "GRANT ALL PRIVILEGES ON {}.* TO '{USER_SRC}'@'%'",
                    quote_ident(db)
                ),
            )
            .await;
        }
        let mut options = options;
        options["meta_schema"] = json!(f.meta);
        let mut task = common::task_json(&f.te, &f.task_id, &f.src_db, &f.tgt_db);
        task["types"] = json!(types);
        task["options"] = options;
        common::create_task(&f.env, &task).await;
        f
    }

    fn spec_json(&self, spec: &TaskSpec) -> Value {
        serde_json::to_value(spec).unwrap()
    }

    async fn try_stage(&self, name: &str, input: Value) -> Result<Value, ferry_core::FerryError> {
        common::try_stage(&self.env, name, input).await
    }

    async fn stage(&self, name: &str, input: Value) -> Value {
        common::stage(&self.env, name, input).await
    }

    async fn plan_and_copy(&self) {
        self.stage("plan", json!({"task_id": self.task_id})).await;
        common::copy_all(&self.env, &self.task_id).await;
    }

    /// Forward slices until one is caught up.
    async fn catch_up(&self, dir: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "the {dir} link never caught up");
            let out = self
                .stage(
                    "incremental-apply",
                    json!({"task_id": self.task_id, "direction": dir, "idle_ms": 500}),
                )
                .await;
            if out["caught_up"] == true {
                return;
            }
        }
    }

    async fn switch(&self) -> Result<Value, ferry_core::FerryError> {
        self.try_stage("switch", json!({"task_id": self.task_id}))
            .await
    }

    async fn record(&self) -> switch::SwitchRecord {
        switch::record(&self.env.repo, &self.task_id)
            .await
            .unwrap()
            .expect("a switch record")
    }

    async fn state(&self) -> TaskState {
        self.env.repo.task(&self.task_id).await.unwrap().state
    }

    async fn same_rows(&self) -> bool {
        let mut s = self.te.admin(Side::Source).await;
        let mut t = self.te.admin(Side::Target).await;
        let (a, b) = (
            rows(&mut s, &self.src_db, "orders").await,
            rows(&mut t, &self.tgt_db, "orders").await,
        );
        a.len() == b.len()
            && a.iter().zip(&b).all(|(x, y)| {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|(p, q)| ferry_testkit::same_value(p, q))
            })
    }

    async fn wait_same_rows(&self, what: &str) {
        wait_until(what, Duration::from_secs(120), || self.same_rows()).await;
        let mut s = self.te.admin(Side::Source).await;
        let mut t = self.te.admin(Side::Target).await;
        ferry_testkit::assert_same_rows(
            &mut s,
            (&self.src_db, "orders"),
            &mut t,
            (&self.tgt_db, "orders"),
        )
        .await;
    }

    /// Whether anything of Ferry's for this task is left on `side`.
    async fn ferry_objects(&self, side: Side) -> Vec<String> {
        let mut c = self.te.admin(side).await;
        c.exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (&self.meta,),
        )
        .await
        .unwrap()
    }

    async fn teardown(self) {
        let mut src = self.te.admin(Side::Source).await;
        for db in [&self.src_db, &self.meta] {
            let _ = src
                .query_drop(format!(
                    "REVOKE ALL PRIVILEGES ON {}.* FROM '{USER_SRC}'@'%'",
                    quote_ident(db)
                ))
                .await;
            drop_db(&mut src, db).await;
        }
        let mut tgt = self.te.admin(Side::Target).await;
        drop_db(&mut tgt, &self.tgt_db).await;
        drop_db(&mut tgt, &self.meta).await;
    }
}

/// Random single-row changes to `db.orders` on `side` until `stop` is set.
async fn writer(te: TestEnv, side: Side, db: String, stop: Arc<AtomicBool>, first_id: i64) -> u64 {
    let mut conn = te.admin(side).await;
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let (mut next, mut n) = (first_id, 0);
    while !stop.load(Ordering::Relaxed) {
        let id = rng.random_range(1..2000);
        next += 1;
        let sql = match rng.random_range(0..3) {
            0 => format!("INSERT INTO `{db}`.orders VALUES ({next}, 0, 'w{next}')"),
            1 => format!("UPDATE `{db}`.orders SET counter = counter + 1, note = CONCAT('u', counter) WHERE id = {id}"),
            _ => format!("DELETE FROM `{db}`.orders WHERE id = {id}"),
        };
        exec(&mut conn, &sql).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    n
}

/// `ferry release`: nothing of the task remains, and a second release is
/// harmless. `verified`: the task ran a verify, which the report shows clean.
async fn release_twice(f: &Fixture, verified: bool) {
    let repo = &f.env.repo;
    let out = f
        .stage(
            "cleanup",
            json!({"task_id": f.task_id, "action": "release"}),
        )
        .await;
    assert_eq!(out["released"], json!(true), "{out}");
    let report = &out["report"];
    assert_eq!(report["state"], json!("released"));
    assert_eq!(
        report["tables"][0]["rows_copied"].as_u64().map(|n| n > 0),
        Some(true),
        "{report}"
    );
    if verified {
        assert_eq!(report["verify"]["clean"], json!(true));
    }
    assert_eq!(report["switch"]["phase"], json!("done"));
    let md =
        ferry_stages::cleanup::render_markdown(&serde_json::from_value(report.clone()).unwrap());
    assert!(
        md.contains("retire_forward") && md.contains("| **total** |"),
        "{md}"
    );
    for side in [Side::Source, Side::Target] {
        assert!(
            f.ferry_objects(side).await.is_empty(),
            "Ferry objects left on {side:?}"
        );
    }
    assert!(
        repo.store()
            .query(&format!("task#{}", f.task_id), "")
            .await
            .unwrap()
            .is_empty(),
        "task records left in the store"
    );
    let again = f
        .stage(
            "cleanup",
            json!({"task_id": f.task_id, "action": "release"}),
        )
        .await;
    assert_eq!(
        (again["released"].clone(), again["already"].clone()),
        (json!(true), json!(true))
    );
}

/// A switch without a reverse link: no target position was read, the two
/// reverse steps are recorded as skipped (the first saying who owns the
/// rollback), no reverse checkpoint exists, and the task is completed.
async fn assert_no_reverse(f: &Fixture, rec: &switch::SwitchRecord) {
    assert!(rec.reverse_start.is_none(), "{rec:?}");
    for step in ["record_reverse_start", "start_reverse"] {
        let s = rec
            .steps
            .iter()
            .find(|s| s.step == step)
            .unwrap_or_else(|| panic!("{step} recorded: {:#?}", rec.steps));
        assert_eq!(s.outcome, StepOutcome::Skipped, "{s:?}");
    }
    assert!(
        rec.steps
            .iter()
            .any(|s| s.step == "record_reverse_start" && s.detail.contains("rollback plan")),
        "{:#?}",
        rec.steps
    );
    assert!(f
        .env
        .repo
        .checkpoint(&f.task_id, Direction::Reverse)
        .await
        .unwrap()
        .is_none());
    assert_eq!(f.state().await, TaskState::Completed);
}

struct StageDispatch(Arc<Env>);

impl Dispatch for StageDispatch {
    fn invoke(
        &self,
        call: TaskCall<'_>,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, TaskFailure>> {
        let env = self.0.clone();
        let stage = call.resource.to_string();
        let deadline = Instant::now() + Duration::from_secs(8);
        async move {
            invoke(&env, &stage, input, deadline)
                .await
                .map_err(|e| TaskFailure::new(e.name(), e.message()))
        }
        .boxed()
    }
}

fn definition() -> Arc<Definition> {
    let subs = ferry_core::Stage::substitutions();
    Arc::new(Definition::from_json(DEFINITION, &subs).unwrap())
}

on_both_targets!(
    whole_lifecycle_copy_sync_verify_switch_reverse_stop_release,
    super::whole_lifecycle
);

/// On OceanBase: without the reverse link, the switch completes the task and
/// the run ends by itself ("Done"); then release.
async fn whole_lifecycle(te: TestEnv) {
    let reverse = !te.is_oceanbase();
    let types = ["schema", "full", "incremental", "verify", "reverse"];
    let f = Fixture::new(te, "lifecycle", &types, json!({"chunk_rows": 400, "apply_workers": 2, "slice_seconds": 8, "switch_quiet_seconds": 2})).await;
    let spec = f.env.repo.task(&f.task_id).await.unwrap().spec;
    let stop_src = Arc::new(AtomicBool::new(false));
    let src_writer = tokio::spawn(writer(
        f.te.clone(),
        Side::Source,
        f.src_db.clone(),
        stop_src.clone(),
        10_000,
    ));

    let runner = Runner::new(definition(), Arc::new(StageDispatch(f.env.clone())));
    let input = f.spec_json(&spec);
    let run = tokio::spawn(async move { runner.run("lifecycle", input).await });

    let repo = &f.env.repo;
    wait_until(
        "forward sync running after the copy",
        Duration::from_secs(120),
        || async {
            repo.checkpoint(&f.task_id, Direction::Forward)
                .await
                .unwrap()
                .is_some()
        },
    )
    .await;
    assert_eq!(f.state().await, TaskState::Synchronizing);
    stop_src.store(true, Ordering::Relaxed);
    assert!(src_writer.await.unwrap() > 0);
    f.wait_same_rows("the target equals the source after the writer stopped")
        .await;

    let verified = f
        .stage("verify", json!({"task_id": f.task_id, "mode": "full"}))
        .await;
    assert_eq!(verified["clean"], json!(true), "verify: {verified}");

    // `ferry switch`.
    repo.update_flags(&f.task_id, |fl| fl.switch_requested = true)
        .await
        .unwrap();
    wait_until("the switch is done", Duration::from_secs(120), || async {
        switch::record(repo, &f.task_id)
            .await
            .unwrap()
            .is_some_and(|r| r.phase == SwitchPhase::Done)
    })
    .await;
    let after_switch = if reverse {
        TaskState::ReverseSynchronizing
    } else {
        TaskState::Completed
    };
    wait_until(
        "the task reverse-synchronizes (completes without reverse)",
        Duration::from_secs(30),
        || async { f.state().await == after_switch },
    )
    .await;
    let rec = f.record().await;
    for step in STEPS {
        let done: Vec<_> = rec
            .steps
            .iter()
            .filter(|s| s.step == *step && s.outcome != StepOutcome::Waiting)
            .collect();
        assert_eq!(done.len(), 1, "step {step} recorded once: {:#?}", rec.steps);
    }
    let fwd = repo
        .checkpoint(&f.task_id, Direction::Forward)
        .await
        .unwrap()
        .unwrap();
    assert!(fwd.is_retired(), "the forward link is retired");
    assert!(
        !repo.flags(&f.task_id).await.unwrap().switch_requested,
        "the switch flag is cleared"
    );
    if !reverse {
        assert_no_reverse(&f, &rec).await;
        let outcome = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the run ends after a switch without reverse")
            .unwrap()
            .unwrap();
        assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
        assert_eq!(outcome.entered_states().last(), Some(&"Done"));
        release_twice(&f, true).await;
        f.teardown().await;
        return;
    }

    // The application now writes to the target; the changes appear on the source.
    let stop_tgt = Arc::new(AtomicBool::new(false));
    let tgt_writer = tokio::spawn(writer(
        f.te.clone(),
        Side::Target,
        f.tgt_db.clone(),
        stop_tgt.clone(),
        50_000,
    ));
    wait_until("reverse link applies", Duration::from_secs(60), || async {
        repo.checkpoint(&f.task_id, Direction::Reverse)
            .await
            .unwrap()
            .is_some_and(|c| c.applied_rows > 0)
    })
    .await;
    stop_tgt.store(true, Ordering::Relaxed);
    assert!(tgt_writer.await.unwrap() > 0);
    f.wait_same_rows("the source equals the target after the reverse link caught up")
        .await;

    // `ferry stop`: the loop ends, the task is stopped.
    repo.update_flags(&f.task_id, |fl| fl.stop_requested = true)
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the run stops")
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(outcome.entered_states().last(), Some(&"Stopped"));
    assert_eq!(f.state().await, TaskState::Stopped);

    release_twice(&f, true).await;
    f.teardown().await;
}

on_both_targets!(
    switch_waits_while_copying_while_lag_is_high_and_while_the_source_is_written,
    super::switch_waits
);

async fn switch_waits(te: TestEnv) {
    let types = ["schema", "full", "incremental", "reverse"];
    let f = Fixture::new(
        te,
        "switch-wait",
        &types,
        json!({"chunk_rows": 400, "switch_quiet_seconds": 2}),
    )
    .await;
    f.stage("plan", json!({"task_id": f.task_id})).await;
    let out = f.switch().await.unwrap();
    assert_eq!(
        (out["ready"].clone(), out["done"].clone()),
        (json!(false), json!(false)),
        "{out}"
    );
    let reason = out["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("full copy is still running"), "{reason}");
    assert_eq!(f.state().await, TaskState::AwaitingSwitch);

    common::copy_all(&f.env, &f.task_id).await;
    let task = f.env.repo.task(&f.task_id).await.unwrap();
    let lagging = CheckpointRecord {
        direction: Direction::Forward,
        position: task.snapshot.unwrap().position,
        epoch: 1,
        updated_ms: now_ms(),
        lag_ms: Some(60_000),
        applied_rows: 0,
    };
    f.env
        .repo
        .put_checkpoint(&f.task_id, &lagging)
        .await
        .unwrap();
    let out = f.switch().await.unwrap();
    let reason = out["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("lag is 60000 ms") && reason.contains("switch_max_lag_ms = 2000"),
        "{reason}"
    );

    f.env
        .repo
        .put_checkpoint(
            &f.task_id,
            &CheckpointRecord {
                lag_ms: Some(5),
                ..lagging
            },
        )
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(
        f.te.clone(),
        Side::Source,
        f.src_db.clone(),
        stop.clone(),
        10_000,
    ));
    let out = f.switch().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    let reason = out["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("still being written") && reason.contains(&f.src_db),
        "{reason}"
    );
    let rec = f.record().await;
    assert_eq!(rec.phase, SwitchPhase::Waiting);
    assert!(!rec.completed("ready"));
    let shown = ferry_stages::cleanup::switch_markdown(Some(&rec));
    assert!(
        shown.contains("lag is 60000 ms") && shown.contains("still being written"),
        "{shown}"
    );
    f.teardown().await;
}

on_both_targets!(
    a_kill_after_each_switch_step_and_a_rerun_switch_exactly_once,
    super::kill_after_each_switch_step
);

/// On OceanBase (no reverse link) the kills after the two skipped reverse
/// steps are rerun the same way; the changes flowing back stay MariaDB-only.
async fn kill_after_each_switch_step(te: TestEnv) {
    let reverse = !te.is_oceanbase();
    let types = ["schema", "full", "incremental", "reverse"];
    let f = Fixture::new(
        te,
        "switch-kill",
        &types,
        json!({"chunk_rows": 400, "apply_workers": 2, "switch_quiet_seconds": 1}),
    )
    .await;
    f.plan_and_copy().await;
    f.catch_up("forward").await;
    f.wait_same_rows("forward caught up").await;
    f.env
        .repo
        .update_flags(&f.task_id, |fl| fl.switch_requested = true)
        .await
        .unwrap();

    for (i, step) in STEPS.iter().enumerate() {
        set_failpoint(
            &format!("{}/switch.after_{step}", f.task_id),
            Some((FailAction::Error, 1)),
        );
        let err = f
            .switch()
            .await
            .expect_err("the switch is killed after the step");
        assert!(
            err.message().contains(&format!("switch.after_{step}")),
            "{err}"
        );
        let rec = f.record().await;
        assert!(rec.completed(step), "step {step} recorded before the kill");
        assert_eq!(
            rec.steps
                .iter()
                .filter(|s| s.outcome != StepOutcome::Waiting)
                .count(),
            i + 1
        );
        if i == 1 {
            // Mid-switch: release is refused with the reason, and nothing is removed.
            let out = f
                .stage(
                    "cleanup",
                    json!({"task_id": f.task_id, "action": "release"}),
                )
                .await;
            assert_eq!(out["released"], json!(false), "{out}");
            assert!(
                out["refused"].as_str().unwrap().contains("is switching"),
                "{out}"
            );
            assert!(f.env.repo.get_task(&f.task_id).await.unwrap().is_some());
        }
    }
    let out = f.switch().await.unwrap();
    assert_eq!(out["done"], json!(true), "{out}");
    let rec = f.record().await;
    for step in STEPS {
        assert_eq!(
            rec.steps
                .iter()
                .filter(|s| s.step == *step && s.outcome != StepOutcome::Waiting)
                .count(),
            1,
            "{step}"
        );
    }
    // A late forward applier is refused.
    let late = f
        .try_stage(
            "incremental-apply",
            json!({"task_id": f.task_id, "direction": "forward"}),
        )
        .await;
    assert_eq!(late.map(|_| ()).unwrap_err().name(), "Ferry.Fenced");
    if !reverse {
        assert_no_reverse(&f, &rec).await;
        release_twice(&f, false).await;
        f.teardown().await;
        return;
    }
    let start = rec.reverse_start.clone().unwrap();
    let rev = f
        .env
        .repo
        .checkpoint(&f.task_id, Direction::Reverse)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rev.position, start,
        "the reverse link starts where the switch recorded, once"
    );

    // Changes on the target flow back exactly.
    let mut t = f.te.admin(Side::Target).await;
    exec(
        &mut t,
        &format!(
            "UPDATE {} SET note = 'from-target' WHERE id <= 10",
            qualified(&f.tgt_db, "orders")
        ),
    )
    .await;
    exec(
        &mut t,
        &format!(
            "INSERT INTO {} VALUES (99999, 7, 'new')",
            qualified(&f.tgt_db, "orders")
        ),
    )
    .await;
    f.catch_up("reverse").await;
    f.wait_same_rows("the source has the target's changes")
        .await;

    // Release, then release again.
    let out = f
        .stage(
            "cleanup",
            json!({"task_id": f.task_id, "action": "release"}),
        )
        .await;
    assert_eq!(out["released"], json!(true), "{out}");
    for side in [Side::Source, Side::Target] {
        assert!(
            f.ferry_objects(side).await.is_empty(),
            "Ferry objects left on {side:?}"
        );
    }
    let again = f
        .stage(
            "cleanup",
            json!({"task_id": f.task_id, "action": "release"}),
        )
        .await;
    assert_eq!(again["already"], json!(true));
    f.teardown().await;
}

/// OceanBase has no binary log without its Binlog Service: a switch of a task
/// with "reverse" gives up before retiring the forward link, naming the fix,
/// and the forward link goes on. Without "reverse" the same task switches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switch_with_reverse_into_oceanbase_gives_up_before_retiring_the_forward_link() {
    let te = ferry_testkit::env_for(ferry_testkit::Target::Oceanbase);
    let types = ["schema", "full", "incremental", "reverse"];
    let options = json!({"chunk_rows": 400, "switch_quiet_seconds": 1});
    let f = Fixture::with_types(te, "switch-norev", &types, options, true).await;
    f.plan_and_copy().await;
    f.catch_up("forward").await;
    f.wait_same_rows("forward caught up").await;
    let repo = &f.env.repo;
    repo.update_flags(&f.task_id, |fl| fl.switch_requested = true)
        .await
        .unwrap();
    let out = f.switch().await.unwrap();
    assert_eq!(
        (out["gave_up"].clone(), out["done"].clone()),
        (json!(true), json!(false)),
        "{out}"
    );
    let reason = out["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Binlog Service")
            && reason.contains("Nothing was retired")
            && reason.contains("without \"reverse\""),
        "{reason}"
    );
    let rec = f.record().await;
    assert_eq!(rec.phase, SwitchPhase::GaveUp);
    assert!(!rec.completed("retire_forward"), "{:#?}", rec.steps);
    let fwd = repo
        .checkpoint(&f.task_id, Direction::Forward)
        .await
        .unwrap()
        .unwrap();
    assert!(!fwd.is_retired(), "the forward link is not retired");
    assert_eq!(f.state().await, TaskState::Synchronizing);
    assert!(!repo.flags(&f.task_id).await.unwrap().switch_requested);

    // The forward link goes on.
    exec(
        &mut f.te.admin(Side::Source).await,
        &format!(
            "UPDATE {} SET note = 'after give-up' WHERE id <= 5",
            qualified(&f.src_db, "orders")
        ),
    )
    .await;
    f.catch_up("forward").await;
    f.wait_same_rows("the forward link applies after the give-up")
        .await;

    // Without "reverse", the switch completes.
    repo.update_task(&f.task_id, |t| {
        t.spec
            .types
            .retain(|x| *x != ferry_core::task::MigrationType::Reverse)
    })
    .await
    .unwrap();
    repo.update_flags(&f.task_id, |fl| fl.switch_requested = true)
        .await
        .unwrap();
    let out = f.switch().await.unwrap();
    assert_eq!(out["done"], json!(true), "{out}");
    let rec = f.record().await;
    assert_no_reverse(&f, &rec).await;
    release_twice(&f, false).await;
    f.teardown().await;
}

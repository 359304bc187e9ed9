//! Restart anything, at any moment (issue 13): a task resumes from whatever
//! happened while Ferry was down, through the real `ferry` binary.
//!
//! - killed while synchronizing, a column added and a row inserted while down:
//!   `ferry resume` (and `ferry run task.json` again) runs the resume check,
//!   not the full precheck, and the sync applies the DDL; verify is clean;
//! - `ferry status` tells a live worker from a killed one (text and --json);
//! - the binlog from the checkpoint gone: the definite error names the file
//!   and the way out, which (`ferry resume --recopy`) works;
//! - two `ferry resume` at once: one is refused;
//! - checkpoint rows of an earlier incarnation of the task_id (before and
//!   after the new snapshot point) are cleared by the new plan;
//! - a task file changed before anything was written is accepted; after, it
//!   is refused with the exact difference and what to do.

use std::process::Child;
use std::time::{Duration, Instant};

use ferry_core::model::Direction;
use ferry_testkit::{on_both_targets, unique_name, Side, TestEnv};
use mysql_async::prelude::*;
use serde_json::{json, Value};

use crate::common::{
    admin_exec, assert_tables_equal, drop_everywhere, fill_numbered, task_for, Ferry,
};

const WAIT: Duration = Duration::from_secs(180);

fn kill(child: &mut Child) {
    // std's kill is SIGKILL on Unix: the process gets no chance to release anything.
    let _ = child.kill();
    let _ = child.wait();
}

/// A source database `db` with table `t` (id, v) of `n` rows, and an incremental task file for it.
async fn setup(env: &TestEnv, prefix: &str, n: u64) -> (String, Ferry, String, std::path::PathBuf) {
    let db = unique_name(prefix);
    admin_exec(
        env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"),
            format!(
                "CREATE TABLE `{db}`.t (id BIGINT NOT NULL PRIMARY KEY, v VARCHAR(100) NOT NULL)"
            ),
        ],
    )
    .await;
    let mut c = env.admin(Side::Source).await;
    fill_numbered(&mut c, &db, "t", n).await;
    c.disconnect().await.ok();
    let ferry = Ferry::standard(env);
    let task_id = unique_name(&format!("{prefix}-task")).replace('_', "-");
    let mut spec = task_for(
        env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 500, "concurrency": 2}),
    );
    spec["types"] = json!(["schema", "full", "incremental"]);
    let file = ferry.task_file("task.json", &spec);
    (db, ferry, task_id, file)
}

/// Wait (bounded) until `sql` on the target returns a row, failing early if `child` ends.
async fn wait_for_target(env: &TestEnv, sql: &str, child: &mut Child, ferry: &Ferry, tag: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut t = env.admin(Side::Target).await;
        let got: Result<Option<mysql_async::Row>, _> = t.query_first(sql).await;
        t.disconnect().await.ok();
        if matches!(got, Ok(Some(_))) {
            return;
        }
        if let Some(status) = child.try_wait().expect("poll ferry") {
            panic!(
                "ferry ended ({status}) before the target had `{sql}`:\n{}",
                ferry.spawned_output(tag)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the target has no `{sql}` within {WAIT:?}:\n{}",
            ferry.spawned_output(tag)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the forward link runs (its checkpoint rows are on the target, so
/// the copy is done), then insert row `id` on the source and wait for the sync
/// to bring it.
async fn wait_for_sync(
    env: &TestEnv,
    db: &str,
    task_id: &str,
    id: u64,
    child: &mut Child,
    ferry: &Ferry,
    tag: &str,
) {
    wait_for_target(
        env,
        &format!("SELECT 1 FROM ferry_meta.checkpoints WHERE task_id = '{task_id}' AND direction = 'forward'"),
        child,
        ferry,
        tag,
    )
    .await;
    admin_exec(
        env,
        Side::Source,
        &[format!(
            "INSERT INTO `{db}`.t (id, v) VALUES ({id}, 'during sync')"
        )],
    )
    .await;
    wait_for_target(
        env,
        &format!("SELECT 1 FROM `{db}`.t WHERE id = {id}"),
        child,
        ferry,
        tag,
    )
    .await;
}

async fn stop_and_wait(ferry: &Ferry, task_id: &str, child: &mut Child, tag: &str) {
    ferry.run(&["stop", task_id]).await.assert_ok("ferry stop");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("poll ferry") {
            assert!(status.success(), "{status}: {}", ferry.spawned_output(tag));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ferry did not stop: {}",
            ferry.spawned_output(tag)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn precheck_checks(status: &Value) -> String {
    status["precheck"]["report"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

on_both_targets!(
    a_column_added_while_ferry_was_killed_is_synced_on_resume,
    super::a_column_added_while_ferry_was_killed_is_synced_on_resume
);

/// The sequence: run schema+full+incremental, kill -9 while the sync
/// runs, ALTER TABLE ADD COLUMN + INSERT while down, `ferry resume`: the task
/// synchronizes again with the new column and row; the same once more with
/// `ferry run task.json`; the target then equals the source and verify is
/// clean. `ferry status` says "running (worker ...)" while a worker runs and
/// "not running since ...: resume with ..." once it was killed.
async fn a_column_added_while_ferry_was_killed_is_synced_on_resume(env: TestEnv) {
    let started = Instant::now();
    let (db, ferry, id, file) = setup(&env, "rsalter", 2_000).await;

    let mut child = ferry.spawn_run(&file, "first");
    wait_for_sync(&env, &db, &id, 1000001, &mut child, &ferry, "first").await;

    // A live worker.
    let live = ferry.run(&["status", &id]).await;
    assert!(
        live.stdout.contains("running (worker local-"),
        "{}",
        live.all()
    );
    let live = ferry.status_json(&id).await;
    assert_eq!(live["worker"]["running"], true, "{live}");
    assert_eq!(live["state"], "synchronizing", "{live}");

    kill(&mut child);
    // A killed one: said at once (no process holds the task's lock).
    let dead = ferry.run(&["status", &id]).await;
    assert!(
        dead.stdout.contains("not running since ")
            && dead
                .stdout
                .contains(&format!("resume with `ferry resume {id}`")),
        "{}",
        dead.all()
    );
    let dead = ferry.status_json(&id).await;
    assert_eq!(dead["worker"]["running"], false, "{dead}");

    // While Ferry is down the application changes the schema and writes.
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("ALTER TABLE `{db}`.t ADD COLUMN c INT DEFAULT 5"),
            format!("INSERT INTO `{db}`.t (id, v, c) VALUES (1000002, 'while down', 7)"),
        ],
    )
    .await;
    let mut child = ferry.spawn(&["resume", &id, "--slice-seconds", "10"], "resumed");
    wait_for_target(
        &env,
        &format!("SELECT 1 FROM `{db}`.t WHERE id = 1000002 AND c = 7"),
        &mut child,
        &ferry,
        "resumed",
    )
    .await;
    let st = ferry.status_json(&id).await;
    assert_eq!(st["state"], "synchronizing", "{st}");
    assert_eq!(st["precheck"]["ok"], true, "{st}");
    // The resume check ran, not the full precheck's table checks.
    let report = ferry
        .repo()
        .unwrap()
        .task(&id)
        .await
        .unwrap()
        .precheck
        .expect("report");
    let checks: Vec<&str> = report.items.iter().map(|i| i.check.as_str()).collect();
    assert!(
        checks.contains(&"resume.table")
            && checks.contains(&"resume.binlog")
            && !checks.contains(&"target.columns"),
        "{checks:?}"
    );
    kill(&mut child);

    // Again, resumed by `ferry run task.json`.
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("ALTER TABLE `{db}`.t ADD COLUMN d VARCHAR(10) NOT NULL DEFAULT 'x'"),
            format!("INSERT INTO `{db}`.t (id, v, c, d) VALUES (1000003, 'down again', 8, 'y')"),
            format!("UPDATE `{db}`.t SET c = 6 WHERE id <= 10"),
        ],
    )
    .await;
    let mut child = ferry.spawn_run(&file, "rerun");
    wait_for_target(
        &env,
        &format!("SELECT 1 FROM `{db}`.t WHERE id = 1000003 AND d = 'y'"),
        &mut child,
        &ferry,
        "rerun",
    )
    .await;
    wait_for_target(
        &env,
        &format!("SELECT 1 FROM `{db}`.t WHERE id = 10 AND c = 6"),
        &mut child,
        &ferry,
        "rerun",
    )
    .await;
    let st = ferry.status_json(&id).await;
    assert_eq!(st["state"], "synchronizing", "{st}");
    stop_and_wait(&ferry, &id, &mut child, "rerun").await;

    assert_tables_equal(&env, &db, &["t"]).await;
    let verify = ferry.run(&["verify", &id]).await;
    verify.assert_ok("ferry verify after the resumes");
    eprintln!(
        "resume after ALTER while down: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    ferry
        .run(&["release", &id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

on_both_targets!(
    a_purged_binlog_names_the_file_and_recopy_is_the_way_out,
    super::a_purged_binlog_names_the_file_and_recopy_is_the_way_out
);

/// The binlog from the checkpoint is gone while Ferry is down: the resume
/// stops with `Ferry.BinlogPurged` naming the missing file and the way out;
/// `ferry resume --recopy` takes it and the task synchronizes again with the
/// target equal to the source. (The test servers are shared, so instead of a
/// PURGE BINARY LOGS the checkpoint, in the store and on the target, is moved
/// to a file of the source's sequence that no longer exists: the state a
/// purge leaves.) Two `ferry resume` at once: the second is refused.
async fn a_purged_binlog_names_the_file_and_recopy_is_the_way_out(env: TestEnv) {
    let (db, ferry, id, file) = setup(&env, "rspurge", 1_000).await;
    let mut child = ferry.spawn_run(&file, "first");
    wait_for_sync(&env, &db, &id, 1000001, &mut child, &ferry, "first").await;
    kill(&mut child);

    let repo = ferry.repo().expect("store");
    let mut ck = repo
        .checkpoint(&id, Direction::Forward)
        .await
        .unwrap()
        .expect("a forward checkpoint");
    let base = ck
        .position
        .file
        .rsplit_once('.')
        .map(|(b, _)| b.to_string())
        .unwrap();
    let gone = format!("{base}.000000");
    ck.position = ferry_core::position::BinlogPosition::new(gone.clone(), 4);
    repo.put_checkpoint(&id, &ck).await.unwrap();
    admin_exec(
        &env,
        Side::Target,
        &[format!("UPDATE ferry_meta.checkpoints SET file = '{gone}', pos = 4 WHERE task_id = '{id}' AND direction = 'forward'")],
    )
    .await;
    admin_exec(
        &env,
        Side::Source,
        &[format!(
            "INSERT INTO `{db}`.t VALUES (1000002, 'lost to the binlog')"
        )],
    )
    .await;

    let out = ferry.run(&["resume", &id, "--slice-seconds", "10"]).await;
    out.assert_failed_with(&[
        "Ferry.BinlogPurged",
        &gone,
        &format!("ferry resume {id} --recopy"),
    ]);
    assert!(
        !out.all().to_uppercase().contains("DROP TABLE"),
        "{}",
        out.all()
    );
    let st = ferry.status_json(&id).await;
    assert_eq!(st["state"], "failed", "{st}");
    assert!(precheck_checks(&st).contains("resume.binlog"), "{st}");

    let mut child = ferry.spawn(
        &["resume", &id, "--recopy", "--slice-seconds", "10"],
        "recopy",
    );
    wait_for_target(
        &env,
        &format!("SELECT 1 FROM `{db}`.t WHERE id = 1000002"),
        &mut child,
        &ferry,
        "recopy",
    )
    .await;
    // A second resume while the first runs is refused, and changes nothing.
    let second = ferry.run(&["resume", &id, "--slice-seconds", "10"]).await;
    second.assert_failed_with(&["Ferry.Fenced", "already being run"]);
    admin_exec(
        &env,
        Side::Source,
        &[format!(
            "INSERT INTO `{db}`.t VALUES (1000003, 'after the recopy')"
        )],
    )
    .await;
    wait_for_target(
        &env,
        &format!("SELECT 1 FROM `{db}`.t WHERE id = 1000003"),
        &mut child,
        &ferry,
        "recopy",
    )
    .await;
    stop_and_wait(&ferry, &id, &mut child, "recopy").await;
    assert_tables_equal(&env, &db, &["t"]).await;
    ferry
        .run(&["release", &id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

on_both_targets!(
    checkpoint_rows_of_an_earlier_incarnation_are_never_resumed_from,
    super::checkpoint_rows_of_an_earlier_incarnation_are_never_resumed_from
);

/// A task started again under the same task_id after its state directory was
/// deleted (no `ferry release`): the checkpoint rows the earlier incarnation
/// left on the target, one before the new snapshot point and one after it
/// (as after a RESET MASTER), are cleared by the new plan; the new link
/// starts at its own snapshot point, carries its own incarnation, and the
/// target ends equal to the source.
async fn checkpoint_rows_of_an_earlier_incarnation_are_never_resumed_from(env: TestEnv) {
    let (db, ferry, id, file) = setup(&env, "rsincarn", 500).await;
    let mut child = ferry.spawn_run(&file, "first");
    wait_for_sync(&env, &db, &id, 1000001, &mut child, &ferry, "first").await;
    kill(&mut child);
    let old = ferry.repo().unwrap().task(&id).await.unwrap().incarnation();

    // The earlier incarnation's rows: worker 0 before the new snapshot, worker 1 far after it.
    let mut t = env.admin(Side::Target).await;
    let (file0, _pos): (String, u64) = t
        .exec_first(
            "SELECT file, pos FROM ferry_meta.checkpoints WHERE task_id = ? AND worker = 0",
            (&id,),
        )
        .await
        .unwrap()
        .expect("the first incarnation's checkpoint row");
    let (base, idx) = file0.rsplit_once('.').unwrap();
    let later = format!("{base}.{:06}", idx.parse::<u64>().unwrap() + 1000);
    t.exec_drop(
        "INSERT INTO ferry_meta.checkpoints (task_id, direction, worker, file, pos, epoch, updated_at, incarnation) \
         VALUES (?, 'forward', 1, ?, 4, 7, NOW(6), ?) ON DUPLICATE KEY UPDATE file = VALUES(file), pos = 4",
        (&id, &later, &old),
    )
    .await
    .unwrap();
    t.disconnect().await.ok();
    // The state is lost; the target's copy goes (so the new precheck passes); the rows stay.
    std::fs::remove_dir_all(&ferry.state_dir).unwrap();
    let mut tgt = env.admin(Side::Target).await;
    ferry_testkit::drop_db(&mut tgt, &db).await;
    tgt.disconnect().await.ok();

    let mut child = ferry.spawn_run(&file, "second");
    admin_exec(
        &env,
        Side::Source,
        &[format!(
            "INSERT INTO `{db}`.t VALUES (1000002, 'second incarnation')"
        )],
    )
    .await;
    wait_for_target(
        &env,
        &format!("SELECT 1 FROM `{db}`.t WHERE id = 1000002"),
        &mut child,
        &ferry,
        "second",
    )
    .await;
    admin_exec(
        &env,
        Side::Source,
        &[format!("UPDATE `{db}`.t SET v = 'changed' WHERE id <= 20")],
    )
    .await;
    wait_for_target(
        &env,
        &format!("SELECT 1 FROM `{db}`.t WHERE id = 20 AND v = 'changed'"),
        &mut child,
        &ferry,
        "second",
    )
    .await;
    let task = ferry.repo().unwrap().task(&id).await.unwrap();
    assert_ne!(task.incarnation(), old);
    let snapshot = task.snapshot.clone().expect("snapshot").position;
    let mut t = env.admin(Side::Target).await;
    let rows: Vec<(String, u64, Option<String>)> = t
        .exec(
            "SELECT file, pos, incarnation FROM ferry_meta.checkpoints WHERE task_id = ?",
            (&id,),
        )
        .await
        .unwrap();
    t.disconnect().await.ok();
    assert!(!rows.is_empty());
    for (f, p, inc) in &rows {
        assert_eq!(
            inc.as_deref(),
            Some(task.incarnation().as_str()),
            "{rows:?}"
        );
        let at = ferry_core::position::BinlogPosition::new(f.clone(), *p);
        assert_ne!(
            at.compare(&snapshot),
            Some(std::cmp::Ordering::Less),
            "{rows:?} vs {snapshot}"
        );
        assert_ne!(f, &later, "{rows:?}");
    }
    stop_and_wait(&ferry, &id, &mut child, "second").await;
    assert_tables_equal(&env, &db, &["t"]).await;
    ferry
        .run(&["release", &id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

on_both_targets!(
    a_task_file_changes_freely_until_the_task_writes,
    super::a_task_file_changes_freely_until_the_task_writes
);

/// `ferry precheck` registers the task; the report says a table has no key; the
/// task file is fixed (the table excluded) and `ferry run` takes the new file,
/// since nothing was written. Once the task has written, a changed file is
/// refused with the exact difference and what to do.
async fn a_task_file_changes_freely_until_the_task_writes(env: TestEnv) {
    let db = unique_name("rsfile");
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"),
            format!(
                "CREATE TABLE `{db}`.t (id BIGINT NOT NULL PRIMARY KEY, v VARCHAR(100) NOT NULL)"
            ),
            format!("CREATE TABLE `{db}`.nokey (a INT, b INT)"),
            format!("INSERT INTO `{db}`.t VALUES (1, 'a'), (2, 'b')"),
        ],
    )
    .await;
    let ferry = Ferry::standard(&env);
    let id = unique_name("rsfile-task").replace('_', "-");
    let spec = task_for(&env, &id, &[format!("{db}.*")], json!({}));
    let file = ferry.task_file("task.json", &spec);
    let pre = ferry.run(&["precheck", file.to_str().unwrap()]).await;
    assert!(
        !pre.success() && pre.all().contains("nokey"),
        "{}",
        pre.all()
    );
    assert!(
        ferry.repo().unwrap().get_task(&id).await.unwrap().is_some(),
        "precheck registers the task"
    );

    let mut fixed = spec.clone();
    fixed["objects"]["exclude"] = json!([format!("{db}.nokey")]);
    let file = ferry.task_file("task.json", &fixed);
    ferry
        .migrate(&file)
        .await
        .assert_ok("ferry run with the fixed task file");
    assert_tables_equal(&env, &db, &["t"]).await;

    let mut changed = fixed.clone();
    changed["objects"]["exclude"] = json!([format!("{db}.nokey"), format!("{db}.t")]);
    let file = ferry.task_file("task.json", &changed);
    let out = ferry.migrate(&file).await;
    out.assert_failed_with(&[
        "Ferry.BadTask",
        "already written",
        &format!("objects.exclude: [\"{db}.nokey\"] -> [\"{db}.nokey\",\"{db}.t\"]"),
        &format!("ferry resume {id}"),
        &format!("ferry release {id}"),
    ]);
    ferry
        .run(&["release", &id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

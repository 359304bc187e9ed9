//! Network faults between `ferry` and its databases, through a TCP proxy of
//! the test's own (`tests/common/proxy.rs`): connections cut mid-chunk and
//! mid-batch are retried and lose nothing; a side unreachable for longer
//! than the retry budget stops the task with the named error, and `ferry
//! resume` continues once it is back. On both targets.

use std::process::Child;
use std::time::{Duration, Instant};

use ferry_testkit::{on_both_targets, unique_name, Side, TestEnv};
use serde_json::json;

use super::oceanbase::tables_equal;
use crate::common::proxy::Proxy;
use crate::common::{
    admin_exec, drop_everywhere, fill_numbered, standard_secrets, task_for, Ferry, RUN_TIMEOUT,
    SOURCE_SECRET, TARGET_SECRET,
};

/// A source table of `n` rows, and a `ferry` whose secrets go through a proxy for each side.
async fn setup(env: &TestEnv, prefix: &str, n: u64) -> (String, Ferry, Proxy, Proxy) {
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
    let src = Proxy::start(env.source_port).await;
    let tgt = Proxy::start(env.target_port).await;
    let mut secrets = standard_secrets(env);
    secrets[SOURCE_SECRET]["port"] = json!(src.port);
    secrets[TARGET_SECRET]["port"] = json!(tgt.port);
    let mut ferry = Ferry::new(&secrets);
    // The definition's retries (2 s doubling) scaled down: a long outage takes seconds.
    ferry
        .extra_env
        .push(("FERRY_RETRY_TIME_SCALE".into(), "0.01".into()));
    (db, ferry, src, tgt)
}

/// Wait (bounded) until `check` holds, failing with the run's output if it ends first.
async fn wait_while_running<F, Fut>(
    ferry: &Ferry,
    child: &mut Child,
    tag: &str,
    what: &str,
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !check().await {
        if let Some(status) = child.try_wait().expect("poll ferry") {
            panic!(
                "ferry ended ({status}) before {what}:\n{}",
                ferry.spawned_output(tag)
            );
        }
        assert!(
            Instant::now() < deadline,
            "not {what} within {RUN_TIMEOUT:?}:\n{}",
            ferry.spawned_output(tag)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_targets!(
    connections_cut_mid_chunk_and_mid_batch_lose_nothing,
    super::cut_connections
);

/// Both sides' connections cut several times during the copy (mid-chunk) and
/// during the sync while a writer runs (mid-batch), and each side gone for two
/// seconds as in a restart: the retries carry on and the target ends equal to
/// the source, verify clean.
async fn cut_connections(env: TestEnv) {
    let (db, ferry, src, tgt) = setup(&env, "netcut", 12_000).await;
    let task_id = unique_name("netcut-task").replace('_', "-");
    let mut task = task_for(
        &env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 400, "concurrency": 2, "max_rows_per_second": 6000}),
    );
    task["types"] = json!(["schema", "full", "incremental", "verify"]);
    let file = ferry.task_file("task.json", &task);
    let mut child = ferry.spawn_run(&file, "run");
    for done in [2u64, 8, 16] {
        wait_while_running(
            &ferry,
            &mut child,
            "run",
            &format!("{done} chunks done"),
            || async {
                ferry
                    .chunk_summary(&task_id)
                    .await
                    .is_some_and(|s| s.done >= done)
            },
        )
        .await;
        let cut = tgt.cut() + src.cut();
        eprintln!("cut {cut} connection(s) after {done} chunks");
    }
    wait_while_running(&ferry, &mut child, "run", "the copy finished", || {
        ferry.copy_finished(&task_id)
    })
    .await;
    let mut writer = env.admin(Side::Source).await;
    for round in 0..6u64 {
        let stmts = [
            format!("UPDATE `{db}`.t SET v = CONCAT('r{round}-', id) WHERE id % 7 = {round}"),
            format!("INSERT INTO `{db}`.t VALUES ({}, 'new')", 100_000 + round),
            format!("DELETE FROM `{db}`.t WHERE id = {}", 50 + round),
        ];
        for s in stmts {
            ferry_testkit::exec(&mut writer, &s).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let cut = tgt.cut() + if round % 2 == 0 { src.cut() } else { 0 };
        eprintln!("sync round {round}: cut {cut} connection(s)");
        // As a server restart looks from here: gone for two seconds, then back.
        let restarted = match round {
            2 => Some(&tgt),
            4 => Some(&src),
            _ => None,
        };
        if let Some(side) = restarted {
            side.down();
            tokio::time::sleep(Duration::from_secs(2)).await;
            side.up();
        }
    }
    writer.disconnect().await.ok();
    wait_while_running(
        &ferry,
        &mut child,
        "run",
        "the target equal to the source",
        || tables_equal(&env, &db, &["t"]),
    )
    .await;
    assert!(
        tgt.cuts.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the test cut no connection"
    );
    ferry
        .run(&["verify", &task_id])
        .await
        .assert_ok("ferry verify after the cuts (exit 0: clean)");
    ferry.run(&["stop", &task_id]).await.assert_ok("ferry stop");
    super::resume::wait_for_exit(&mut child, Duration::from_secs(60)).await;
    ferry
        .run(&["release", &task_id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

on_both_targets!(
    a_target_unreachable_beyond_the_retry_budget_stops_named_then_resumes,
    super::unreachable_target
);

/// The target unreachable while the sync runs, longer than the retry budget:
/// the run stops with `Ferry.Transient` naming the target and the way on;
/// once the target is back, `ferry resume` applies what was written meanwhile.
async fn unreachable_target(env: TestEnv) {
    let (db, ferry, _src, tgt) = setup(&env, "netdown", 2_000).await;
    let task_id = unique_name("netdown-task").replace('_', "-");
    let mut task = task_for(
        &env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 500}),
    );
    task["types"] = json!(["schema", "full", "incremental"]);
    let file = ferry.task_file("task.json", &task);
    let mut child = ferry.spawn_run(&file, "run");
    wait_while_running(&ferry, &mut child, "run", "the copy finished", || {
        ferry.copy_finished(&task_id)
    })
    .await;
    tgt.down();
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("UPDATE `{db}`.t SET v = 'while down' WHERE id <= 100"),
            format!("INSERT INTO `{db}`.t VALUES (5000, 'while down')"),
        ],
    )
    .await;
    let status = super::resume::wait_for_exit(&mut child, Duration::from_secs(180)).await;
    let printed = ferry.spawned_output("run");
    assert!(
        !status.success(),
        "the run stops when the retries run out:\n{printed}"
    );
    assert!(
        printed.contains("Ferry.Transient")
            && printed.contains("cannot connect")
            && printed.contains("ferry resume"),
        "the error is named, names the side and the way on:\n{printed}"
    );
    let st = ferry.status_json(&task_id).await;
    assert_eq!(st["last_error"]["name"], json!("Ferry.Transient"), "{st:#}");
    let text = ferry.run(&["status", &task_id]).await;
    assert!(
        text.stdout.contains("not running since") && text.stdout.contains("cannot connect"),
        "status says no worker runs, and why:\n{}",
        text.stdout
    );

    tgt.up();
    let mut resumed = ferry.spawn(&["resume", &task_id, "--slice-seconds", "10"], "resume");
    wait_while_running(
        &ferry,
        &mut resumed,
        "resume",
        "the target equal to the source",
        || tables_equal(&env, &db, &["t"]),
    )
    .await;
    ferry.run(&["stop", &task_id]).await.assert_ok("ferry stop");
    super::resume::wait_for_exit(&mut resumed, Duration::from_secs(60)).await;
    ferry
        .run(&["release", &task_id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

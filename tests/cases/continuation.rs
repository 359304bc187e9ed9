//! The real definition's continue-as-new path, embedded: with
//! `options.slice_budget` forced to 1, every link slice ends the execution and
//! `states:startExecution` starts the next (grant check and plan run again, as
//! on a resume). A kill right after a continuation, then `ferry resume`: the
//! sync goes on across further continuations and the target ends equal to the
//! source, verify clean. On both targets.

use std::time::{Duration, Instant};

use ferry_testkit::{on_both_targets, unique_name, Side, TestEnv};
use serde_json::json;

use super::oceanbase::tables_equal;
use super::resume::wait_for_exit;
use crate::common::{admin_exec, drop_everywhere, fill_numbered, task_for, Ferry, RUN_TIMEOUT};

const CONTINUED: &str = "state=ContinueAsNew";

/// Wait (bounded) until the spawned run `tag` has continued as new `n` times,
/// writing a row on the source every 100 ms meanwhile.
async fn wait_continued(
    ferry: &Ferry,
    env: &TestEnv,
    db: &str,
    tag: &str,
    n: usize,
    next_id: &mut u64,
) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut writer = env.admin(Side::Source).await;
    while ferry.spawned_output(tag).matches(CONTINUED).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {n} continuations within {RUN_TIMEOUT:?}:\n{}",
            ferry.spawned_output(tag)
        );
        ferry_testkit::exec(
            &mut writer,
            &format!("INSERT INTO `{db}`.t VALUES ({next_id}, 'during')"),
        )
        .await;
        *next_id += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.disconnect().await.ok();
}

on_both_targets!(
    continue_as_new_with_a_kill_across_it_loses_nothing,
    super::continue_as_new
);

async fn continue_as_new(env: TestEnv) {
    let db = unique_name("can");
    admin_exec(
        &env,
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
    fill_numbered(&mut c, &db, "t", 1_000).await;
    c.disconnect().await.ok();
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("can-task").replace('_', "-");
    let mut task = task_for(
        &env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 500, "slice_budget": 1}),
    );
    task["types"] = json!(["schema", "full", "incremental", "verify"]);
    let file = ferry.task_file("task.json", &task);
    let mut next_id = 10_000u64;

    let mut child = ferry.spawn_run(&file, "first");
    wait_continued(&ferry, &env, &db, "first", 1, &mut next_id).await;
    // Killed right after the continuation: the next execution had just begun.
    let _ = child.kill();
    let _ = child.wait();

    let mut resumed = ferry.spawn(&["resume", &task_id, "--slice-seconds", "10"], "resumed");
    wait_continued(&ferry, &env, &db, "resumed", 2, &mut next_id).await;
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !tables_equal(&env, &db, &["t"]).await {
        assert!(
            resumed.try_wait().expect("poll ferry").is_none(),
            "{}",
            ferry.spawned_output("resumed")
        );
        assert!(
            Instant::now() < deadline,
            "{}",
            ferry.spawned_output("resumed")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ferry
        .run(&["verify", &task_id])
        .await
        .assert_ok("ferry verify across continuations (exit 0: clean)");
    ferry.run(&["stop", &task_id]).await.assert_ok("ferry stop");
    wait_for_exit(&mut resumed, Duration::from_secs(60)).await;
    ferry
        .run(&["release", &task_id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

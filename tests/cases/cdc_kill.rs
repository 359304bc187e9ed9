//! Incremental sync through the real `ferry` binary, SIGKILLed at random
//! moments while a writer changes the source: every resumed run picks up from
//! its checkpoints, and once the writer stops and the link catches up the target
//! equals the source row for row. Every update increments a counter column, and
//! the applier inserts with plain INSERT after the copy window, so a change
//! applied twice either fails the run or shows in the counters.

use std::time::{Duration, Instant};

use ferry_testkit::{on_both_targets, rows, unique_name, Side, TestEnv};
use mysql_async::prelude::*;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::common::{
    admin_exec, assert_tables_equal, drop_everywhere, fill_numbered, task_for, Ferry,
};

const KILLS: usize = 20;

fn kill(child: &mut std::process::Child) {
    // std's kill is SIGKILL on Unix: the process gets no chance to release anything.
    let _ = child.kill();
    let _ = child.wait();
}

/// Inserts, counter updates (also of the key) and deletes until `stop` is set.
async fn write_until(
    env: TestEnv,
    db: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let mut c = env.admin(Side::Source).await;
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let mut next = 1_000_000u64;
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let id = rng.random_range(1..=400u64);
        let sql = match rng.random_range(0..10) {
            0..=5 => format!("UPDATE `{db}`.t SET counter = counter + 1 WHERE id = {id}"),
            6 => {
                next += 1;
                format!("INSERT INTO `{db}`.t (id, v, counter) VALUES ({next}, 'new {next}', 0)")
            }
            7 => {
                next += 1;
                format!("UPDATE `{db}`.t SET id = {next}, counter = counter + 1 WHERE id = {id}")
            }
            8 => format!("DELETE FROM `{db}`.t WHERE id = {id}"),
            _ => format!(
                "START TRANSACTION; UPDATE `{db}`.t SET counter = counter + 1 WHERE id = {id}; \
                 UPDATE `{db}`.t SET counter = counter + 1 WHERE id = {}; COMMIT",
                id + 1
            ),
        };
        c.query_drop(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    n
}

async fn same_rows(env: &TestEnv, db: &str) -> bool {
    let mut s = env.admin(Side::Source).await;
    let mut t = env.admin(Side::Target).await;
    let exists: Option<String> = t
        .exec_first(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't'",
            (db,),
        )
        .await
        .unwrap_or(None);
    exists.is_some() && rows(&mut s, db, "t").await == rows(&mut t, db, "t").await
}

on_both_targets!(
    incremental_sync_killed_at_random_moments_applies_every_change_once,
    super::incremental_sync_killed_at_random_moments_applies_every_change_once
);

async fn incremental_sync_killed_at_random_moments_applies_every_change_once(env: TestEnv) {
    let db = unique_name("cdckill");
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"),
            format!(
                "CREATE TABLE `{db}`.t (id BIGINT NOT NULL PRIMARY KEY, v VARCHAR(100) NOT NULL, \
                 counter BIGINT NOT NULL DEFAULT 0)"
            ),
        ],
    )
    .await;
    let mut c = env.admin(Side::Source).await;
    fill_numbered(&mut c, &db, "t", 400).await;
    c.disconnect().await.ok();

    let ferry = Ferry::standard(&env);
    let task_id = unique_name("cdckill").replace('_', "-");
    let mut spec = task_for(
        &env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 50, "concurrency": 2, "apply_workers": 2}),
    );
    spec["types"] = json!(["schema", "full", "incremental"]);
    let file = ferry.task_file("cdc", &spec);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn(write_until(env.clone(), db.clone(), stop.clone()));
    let mut rng = rand::rng();
    for trial in 0..KILLS {
        let mut child = ferry.spawn_run(&file, &format!("cdc{trial}"));
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2500))).await;
        if let Some(status) = child.try_wait().expect("poll ferry") {
            panic!(
                "trial {trial}: ferry run ended ({status}) while it should follow the binlog:\n{}",
                ferry.spawned_output(&format!("cdc{trial}"))
            );
        }
        kill(&mut child);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let changes = writer.await.expect("writer");
    assert!(changes > 100, "the writer made only {changes} changes");

    // The last run follows the binlog until the target has caught up.
    let mut child = ferry.spawn_run(&file, "final");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !same_rows(&env, &db).await {
        if let Some(status) = child.try_wait().expect("poll ferry") {
            panic!(
                "the final run ended ({status}):\n{}",
                ferry.spawned_output("final")
            );
        }
        assert!(
            Instant::now() < deadline,
            "the target did not catch up within 120 s:\n{}",
            ferry.spawned_output("final")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kill(&mut child);
    for trial in 0..KILLS {
        let out = ferry.spawned_output(&format!("cdc{trial}"));
        assert!(
            !out.contains("Duplicate entry"),
            "trial {trial} applied a change twice:\n{out}"
        );
    }
    assert_tables_equal(&env, &db, &["t"]).await;
    drop_everywhere(&env, &db).await;
}

//! A `ferry run` killed with SIGKILL (no chance to clean up) and run again ends
//! with exactly the source's rows: chunks it left running are resumed at once.

use std::time::{Duration, Instant};

use ferry_testkit::{on_both_targets, unique_name, Side, TestEnv};
use mysql_async::prelude::*;
use rand::Rng;
use serde_json::json;

use crate::common::{
    admin_exec, assert_tables_equal, drop_everywhere, fill_numbered, task_for, Ferry, RUN_TIMEOUT,
};

async fn source_tables(env: &TestEnv, db: &str, rows: &[(&str, u64)]) {
    let mut stmts = vec![format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4")];
    for (t, _) in rows {
        stmts.push(format!(
            "CREATE TABLE `{db}`.`{t}` (id BIGINT NOT NULL PRIMARY KEY, v VARCHAR(100) NOT NULL)"
        ));
    }
    admin_exec(env, Side::Source, &stmts).await;
    let mut c = env.admin(Side::Source).await;
    for (t, n) in rows {
        fill_numbered(&mut c, db, t, *n).await;
    }
    c.disconnect().await.ok();
}

/// `ferry run` the task file; once a chunk is copied (so after the plan's
/// binlog position) run `changes` on the source; wait for the verify after
/// catch-up, which must be clean; then `ferry stop` and wait for the exit.
async fn sync_changes_then_verify_clean(
    ferry: &Ferry,
    env: &TestEnv,
    file: &std::path::Path,
    task_id: &str,
    tag: &str,
    changes: &[String],
) {
    let mut child = ferry.spawn_run(file, tag);
    wait_for_done_chunks(ferry, &mut child, task_id, 1).await;
    admin_exec(env, Side::Source, changes).await;
    let summary = wait_for_verify_summary(ferry, &mut child, task_id, tag).await;
    assert!(summary.clean, "{summary:?}");
    ferry
        .run(&["stop", task_id])
        .await
        .assert_ok("ferry stop while following the binlog");
    wait_for_exit(&mut child, Duration::from_secs(60)).await;
}

/// `ferry release` the task, then drop its database on both servers.
async fn release_and_drop(ferry: &Ferry, env: &TestEnv, task_id: &str, db: &str) {
    ferry
        .run(&["release", task_id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(env, db).await;
}

/// Wait (bounded) for the task's verify summary while `ferry run` goes on.
async fn wait_for_verify_summary(
    ferry: &Ferry,
    child: &mut std::process::Child,
    task_id: &str,
    tag: &str,
) -> ferry_stages::verify::VerifySummary {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(repo) = ferry.repo() {
            if let Ok(Some(s)) = repo
                .get_record::<ferry_stages::verify::VerifySummary>(
                    task_id,
                    ferry_stages::verify::SUMMARY_SK,
                )
                .await
            {
                return s;
            }
        }
        if let Some(status) = child.try_wait().expect("poll ferry") {
            panic!(
                "ferry run ended ({status}) before a verify summary:\n{}",
                ferry.spawned_output(tag)
            );
        }
        assert!(Instant::now() < deadline, "no verify summary within 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait (bounded) until at least `done` chunks are done, failing if the run ends first.
pub(crate) async fn wait_for_done_chunks(
    ferry: &Ferry,
    child: &mut std::process::Child,
    task_id: &str,
    done: u64,
) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if let Some(s) = ferry.chunk_summary(task_id).await {
            if s.done >= done {
                return;
            }
        }
        if let Some(status) = child.try_wait().expect("poll ferry") {
            panic!(
                "ferry run ended ({status}) before {done} chunks were done; output:\n{}",
                ferry.spawned_output("killed")
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {done} chunks done within {RUN_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait (bounded) for a spawned ferry (a `ferry run` asked to stop, a verify) to exit.
pub(crate) async fn wait_for_exit(
    child: &mut std::process::Child,
    within: Duration,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("poll ferry") {
            return status;
        }
        if Instant::now() >= deadline {
            // Killed first: a failing test leaves no ferry behind, and its
            // runtime does not wait on a command that may run for minutes.
            kill(child);
            panic!("ferry did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kill(child: &mut std::process::Child) {
    // std's kill is SIGKILL on Unix: the process gets no chance to release anything.
    let _ = child.kill();
    let _ = child.wait();
}

on_both_targets!(
    killed_during_the_copy_then_resumed,
    super::killed_during_the_copy_then_resumed
);

async fn killed_during_the_copy_then_resumed(env: TestEnv) {
    let db = unique_name("kill");
    source_tables(&env, &db, &[("a", 20_000), ("b", 5_000)]).await;
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("kill-task").replace('_', "-");
    let options = json!({"chunk_rows": 100, "concurrency": 2, "batch_rows": 50});
    let file = ferry.task_file(
        "task.json",
        &task_for(&env, &task_id, &[format!("{db}.*")], options),
    );

    let mut child = ferry.spawn_run(&file, "killed");
    wait_for_done_chunks(&ferry, &mut child, &task_id, 5).await;
    kill(&mut child);
    let before = ferry
        .chunk_summary(&task_id)
        .await
        .expect("the killed run left a store");
    assert!(
        before.done < before.total,
        "the copy was already complete when killed: {before:?}"
    );

    let out = ferry.migrate(&file).await;
    out.assert_ok("ferry run after the kill");
    assert_tables_equal(&env, &db, &["a", "b"]).await;
    let after = ferry.chunk_summary(&task_id).await.unwrap();
    assert_eq!(
        (after.done, after.total, after.running),
        (after.total, before.total, 0),
        "{after:?}"
    );
    assert!(after.rows >= 25_000, "{after:?}");
    drop_everywhere(&env, &db).await;
}

on_both_targets!(
    ten_random_kills_each_resume_to_identical_tables,
    super::ten_random_kills_each_resume_to_identical_tables
);

/// Ten kills at random moments (during precheck, plan or copy, or after some chunks),
/// each followed by a run to the end: every time the target equals the source.
async fn ten_random_kills_each_resume_to_identical_tables(env: TestEnv) {
    let db = unique_name("kills");
    source_tables(&env, &db, &[("a", 3_000), ("b", 1_000)]).await;
    let mut rng = rand::rng();
    for trial in 0..10 {
        let ferry = Ferry::standard(&env);
        let task_id = format!("{}-{trial}", unique_name("kills").replace('_', "-"));
        let options = json!({"chunk_rows": 40, "concurrency": 3, "batch_rows": 25});
        let file = ferry.task_file(
            "task.json",
            &task_for(&env, &task_id, &[format!("{db}.*")], options),
        );
        let mut child = ferry.spawn_run(&file, "killed");
        if trial % 2 == 0 {
            // Anywhere in the first seconds: before the store exists, in precheck, in plan.
            let pause = Duration::from_millis(rng.random_range(0..1500));
            tokio::time::sleep(pause).await;
        } else {
            let done = rng.random_range(1..80);
            wait_for_done_chunks(&ferry, &mut child, &task_id, done).await;
        }
        kill(&mut child);
        let (when, mid_copy) = match ferry.chunk_summary(&task_id).await {
            None => ("before the store existed".to_string(), false),
            Some(s) if s.total == 0 => ("before the chunks were planned".to_string(), false),
            Some(s) => (
                format!(
                    "with {}/{} chunks done, {} running",
                    s.done, s.total, s.running
                ),
                s.done < s.total,
            ),
        };
        eprintln!("trial {trial}: killed {when}");
        assert!(
            trial % 2 == 0 || mid_copy,
            "trial {trial} was meant to kill mid-copy, but was killed {when}"
        );
        let out = ferry.migrate(&file).await;
        out.assert_ok(&format!(
            "trial {trial} (killed {when}): ferry run after the kill"
        ));
        assert_tables_equal(&env, &db, &["a", "b"]).await;
        // The next trial starts from an empty target.
        let mut tgt = env.admin(Side::Target).await;
        ferry_testkit::drop_db(&mut tgt, &db).await;
        tgt.disconnect().await.ok();
    }
    drop_everywhere(&env, &db).await;
}

on_both_targets!(
    stop_during_the_copy_then_resume,
    super::stop_during_the_copy_then_resume
);

/// `ferry stop` while `ferry run` copies (both the real binary, two processes on
/// one store): the run ends after the chunks in flight with the task stopped and
/// chunks left; `ferry status` says so; `ferry resume` copies the rest and the
/// tables end identical.
async fn stop_during_the_copy_then_resume(env: TestEnv) {
    let db = unique_name("stopcopy");
    source_tables(&env, &db, &[("a", 20_000)]).await;
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("stop-task").replace('_', "-");
    // Slow enough (rate limit) that the stop lands mid-copy.
    let options = json!({"chunk_rows": 100, "concurrency": 2, "max_rows_per_second": 4000});
    let file = ferry.task_file(
        "task.json",
        &task_for(&env, &task_id, &[format!("{db}.*")], options),
    );
    let mut child = ferry.spawn_run(&file, "stopped");
    wait_for_done_chunks(&ferry, &mut child, &task_id, 3).await;
    let running = ferry.run(&["status", &task_id]).await;
    assert!(
        running.stdout.contains("migrating (stage copy-chunk)"),
        "status names the running stage: {}",
        running.all()
    );
    ferry
        .run(&["stop", &task_id])
        .await
        .assert_ok("ferry stop during the copy");
    let status = wait_for_exit(&mut child, Duration::from_secs(60)).await;
    let printed = ferry.spawned_output("stopped");
    assert!(status.success(), "{status}: {printed}");
    assert!(
        printed.contains(&format!("`ferry resume {task_id}`")),
        "{printed}"
    );
    let left = ferry.chunk_summary(&task_id).await.unwrap();
    assert!(
        left.done < left.total && left.running == 0,
        "stopped mid-copy with no chunk left running: {left:?}"
    );
    let st = ferry.status_json(&task_id).await;
    assert_eq!(st["state"], "stopped", "{st}");
    let text = ferry.run(&["status", &task_id]).await;
    assert!(
        text.stdout.contains("stopped, updated") && !text.stdout.contains("(stage"),
        "a stopped task has no running stage: {}",
        text.all()
    );
    // A verify of a copy half done would call every row not yet copied a
    // difference: it refuses, says how far the copy got and what to do.
    let early = ferry.run(&["verify", &task_id]).await;
    let progress = format!("({} of {} chunk(s) copied)", left.done, left.total);
    assert!(
        early.code == Some(2)
            && early.stderr.contains("has not finished its full copy")
            && early.stderr.contains(&progress)
            && early.stderr.contains(&format!("`ferry resume {task_id}`")),
        "a verify before the copy finished: {}",
        early.all()
    );

    ferry
        .run(&["resume", &task_id])
        .await
        .assert_ok("ferry resume after the stop");
    assert_tables_equal(&env, &db, &["a"]).await;
    let after = ferry.chunk_summary(&task_id).await.unwrap();
    assert_eq!(
        (after.done, after.total),
        (left.total, left.total),
        "{after:?}"
    );
    ferry
        .run(&["verify", &task_id])
        .await
        .assert_ok("ferry verify once the copy finished");
    drop_everywhere(&env, &db).await;
}

on_both_targets!(
    verify_after_catch_up_fans_out_and_reports_clean,
    super::verify_after_catch_up_fans_out_and_reports_clean
);

/// With incremental sync and verify, `ferry run` verifies every chunk once the
/// link has caught up (begin, the fan-out of verify workers, in the embedded
/// runner), leaves a clean summary that `ferry status` shows, and goes on
/// following the binlog until `ferry stop`.
async fn verify_after_catch_up_fans_out_and_reports_clean(env: TestEnv) {
    let db = unique_name("vcatch");
    source_tables(&env, &db, &[("a", 3_000), ("b", 500)]).await;
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("vcatch-task").replace('_', "-");
    let mut spec = task_for(
        &env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 200, "concurrency": 2, "verify_concurrency": 3}),
    );
    spec["types"] = json!(["schema", "full", "incremental", "verify"]);
    let file = ferry.task_file("task.json", &spec);
    let mut child = ferry.spawn_run(&file, "vcatch");
    let summary = wait_for_verify_summary(&ferry, &mut child, &task_id, "vcatch").await;
    let chunks = ferry.chunk_summary(&task_id).await.unwrap();
    assert!(
        summary.clean && summary.mode == "full" && summary.rows == 3_500,
        "{summary:?}"
    );
    assert_eq!(summary.chunks, chunks.total, "{summary:?}");
    let status = ferry.run(&["status", &task_id]).await;
    assert!(
        status.stdout.contains("verify") && status.stdout.contains("clean"),
        "{}",
        status.all()
    );
    assert!(
        child.try_wait().expect("poll ferry").is_none(),
        "the link goes on after the verify"
    );
    ferry
        .run(&["stop", &task_id])
        .await
        .assert_ok("ferry stop while following the binlog");
    wait_for_exit(&mut child, Duration::from_secs(60)).await;
    assert_tables_equal(&env, &db, &["a", "b"]).await;
    release_and_drop(&ferry, &env, &task_id, &db).await;
}

on_both_targets!(
    a_filtered_table_syncs_and_verifies_clean,
    super::a_filtered_table_syncs_and_verifies_clean
);

/// A filtered table through the embedded run: rows leave the filter (an
/// update of the column it reads, a key change, a delete) and enter it (a key
/// change, inserts) while the copy and the sync run; the verify after catch-up
/// compares the filtered source with the target and is clean, and the target
/// holds exactly the rows the filter keeps (the unfiltered table all of them).
async fn a_filtered_table_syncs_and_verifies_clean(env: TestEnv) {
    const FILTER: &str = "id % 3 <> 0 AND v NOT LIKE 'out%'";
    let db = unique_name("vfilt");
    source_tables(&env, &db, &[("a", 2_000), ("b", 300)]).await;
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("vfilt-task").replace('_', "-");
    let mut spec = task_for(
        &env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 200, "concurrency": 2}),
    );
    spec["types"] = json!(["schema", "full", "incremental", "verify"]);
    spec["objects"]["filters"] = json!({format!("{db}.a"): FILTER});
    let file = ferry.task_file("task.json", &spec);
    sync_changes_then_verify_clean(
        &ferry,
        &env,
        &file,
        &task_id,
        "vfilt",
        &[
            format!("UPDATE `{db}`.a SET v = CONCAT('out', v) WHERE id % 5 = 0"),
            format!("UPDATE `{db}`.a SET id = id + 100000 WHERE id % 3 = 0 AND id < 600"),
            format!("UPDATE `{db}`.a SET id = id + 200000 WHERE id % 3 = 1 AND id < 300"),
            format!("DELETE FROM `{db}`.a WHERE id BETWEEN 1000 AND 1010"),
            format!("INSERT INTO `{db}`.a VALUES (300001, 'in'), (300002, 'in'), (300003, 'x')"),
            format!("UPDATE `{db}`.b SET v = 'out' WHERE id < 50"),
        ],
    )
    .await;

    let mut src = env.admin(Side::Source).await;
    let mut tgt = env.admin(Side::Target).await;
    let kept: Vec<(i64, String)> = src
        .query(format!(
            "SELECT id, v FROM `{db}`.a WHERE {FILTER} ORDER BY id"
        ))
        .await
        .unwrap();
    let total: Vec<i64> = src.query(format!("SELECT id FROM `{db}`.a")).await.unwrap();
    let copied: Vec<(i64, String)> = tgt
        .query(format!("SELECT id, v FROM `{db}`.a ORDER BY id"))
        .await
        .unwrap();
    assert!(
        kept.len() > 1_000 && kept.len() < total.len() - 500,
        "{} of {}",
        kept.len(),
        total.len()
    );
    assert!(
        kept.iter().any(|(id, _)| (100_000..100_600).contains(id)),
        "rows entered by a key change"
    );
    assert_eq!(
        copied.len(),
        kept.len(),
        "rows on the target vs rows the filter keeps"
    );
    assert!(
        copied == kept,
        "the target's rows of `a` differ from the ones the filter keeps"
    );
    drop(src);
    drop(tgt);
    assert_tables_equal(&env, &db, &["b"]).await;
    release_and_drop(&ferry, &env, &task_id, &db).await;
}

on_both_targets!(
    a_table_without_a_key_moves_by_its_declared_key,
    super::a_table_without_a_key_moves_by_its_declared_key
);

/// A table without a primary key, migrated by the key the task file declares
/// (`objects.keys`): the target gets a unique key on it, the copy chunks by it,
/// and the sync applies updates (one of them moving a row to another key),
/// deletes and inserts by it; the verify after catch-up is clean and the rows
/// are the source's.
async fn a_table_without_a_key_moves_by_its_declared_key(env: TestEnv) {
    let db = unique_name("vkeys");
    let mut stmts = vec![
        format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"),
        format!("CREATE TABLE `{db}`.log (at DATETIME NOT NULL, seq INT NOT NULL, msg VARCHAR(40), KEY (at, seq))"),
    ];
    stmts.push(format!(
        "INSERT INTO `{db}`.log SELECT '2024-01-01' + INTERVAL (seq DIV 10) MINUTE, seq % 10, CONCAT('m', seq) \
         FROM `{db}`.seq_1_to_3000"
    ));
    admin_exec(&env, Side::Source, &stmts).await;
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("vkeys-task").replace('_', "-");
    let mut spec = task_for(
        &env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 300, "concurrency": 2}),
    );
    spec["types"] = json!(["schema", "full", "incremental", "verify"]);
    spec["objects"]["keys"] = json!({format!("{db}.log"): ["at", "seq"]});
    let file = ferry.task_file("task.json", &spec);
    sync_changes_then_verify_clean(
        &ferry,
        &env,
        &file,
        &task_id,
        "vkeys",
        &[
            format!("UPDATE `{db}`.log SET msg = 'changed' WHERE seq = 3"),
            format!("UPDATE `{db}`.log SET seq = seq + 100 WHERE seq = 4 AND at < '2024-01-01 01:00:00'"),
            format!("DELETE FROM `{db}`.log WHERE seq = 5"),
            format!("INSERT INTO `{db}`.log VALUES ('2030-01-01', 1, 'new'), ('2030-01-01', 2, NULL)"),
        ],
    )
    .await;

    let mut tgt = env.admin(Side::Target).await;
    let (key,): (String,) = tgt
        .query_first(format!("SHOW CREATE TABLE `{db}`.log"))
        .await
        .unwrap()
        .map(|(_, sql): (String, String)| (sql,))
        .unwrap();
    assert!(
        // OceanBase prints the key list with a space after the comma.
        key.replace(", ", ",")
            .contains("UNIQUE KEY `ferry_declared_key` (`at`,`seq`)"),
        "{key}"
    );
    drop(tgt);
    let rows = |side| {
        let env = env.clone();
        let db = db.clone();
        async move {
            let mut c = env.admin(side).await;
            let r: Vec<(String, i64, Option<String>)> = c
                .query(format!(
                    "SELECT CAST(at AS CHAR), seq, msg FROM `{db}`.log ORDER BY at, seq"
                ))
                .await
                .unwrap();
            r
        }
    };
    let (src, copied) = (rows(Side::Source).await, rows(Side::Target).await);
    assert!(src.len() > 2_000 && src.iter().any(|r| r.1 >= 100));
    assert!(copied == src, "the target's rows differ from the source's");
    release_and_drop(&ferry, &env, &task_id, &db).await;
}

//! `ferry verify --changed`: after a clean full verify, only what the sync
//! changed is read again, and the marks saying what survive a stop/resume and
//! a kill -9 between the changes and the re-verify. After a stop the apply
//! call ended and listed the keys it changed: only those rows are compared.
//! After a kill it listed nothing: the changed chunk and the new key range
//! past the last chunk are read whole. A difference planted on the target at
//! a row no change touched is *not* found by `--changed` when it is not read
//! (proof that it is not read; it is the README's stated limit) and is found
//! by `--full`. A clean `--changed` run clears the marks it read.
//!
//! With the sync stopped, a row changed on the source since is not waited
//! for (no apply can come: each wait would last `verify_recheck_seconds`):
//! `ferry verify` answers at once that it is unsettled, not a difference, and
//! how to settle it; once the sync runs again the same verify is clean.

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_core::model::KeyValue;
use ferry_testkit::{on_both_targets, unique_name, wait_until, Side, TestEnv};
use mysql_async::prelude::*;
use serde_json::json;

use super::resume::wait_for_exit;
use crate::common::{admin_exec, drop_everywhere, fill_numbered, task_for, Ferry, RUN_TIMEOUT};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Interrupt {
    Stop,
    Kill,
}

on_both_targets!(changed_marks_survive_stop_and_resume, super::after_stop);
on_both_targets!(changed_marks_survive_kill_and_resume, super::after_kill);
on_both_targets!(
    verify_with_the_sync_stopped_answers_at_once,
    super::sync_stopped
);

async fn after_stop(env: TestEnv) {
    changed_chunks_only(env, Interrupt::Stop).await
}

async fn after_kill(env: TestEnv) {
    changed_chunks_only(env, Interrupt::Kill).await
}

async fn target_query(env: &TestEnv, sql: &str) -> Option<u64> {
    let mut c = env.admin(Side::Target).await;
    let n: Option<u64> = c.query_first(sql).await.ok().flatten();
    c.disconnect().await.ok();
    n
}

fn int_key(k: &[KeyValue]) -> i64 {
    match k.first() {
        Some(KeyValue::Int(i)) => *i,
        Some(KeyValue::Uint(u)) => *u as i64,
        other => panic!("not an integer key: {other:?}"),
    }
}

async fn changed_chunks_only(env: TestEnv, how: Interrupt) {
    let db = unique_name("vchg");
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
    fill_numbered(&mut c, &db, "t", 2_000).await;
    c.disconnect().await.ok();

    let ferry = Ferry::standard(&env);
    let id = unique_name("vchg-task").replace('_', "-");
    let mut task = task_for(
        &env,
        &id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 200, "concurrency": 2}),
    );
    task["types"] = json!(["schema", "full", "incremental"]);
    let file = ferry.task_file("task.json", &task);
    let mut child = ferry.spawn_run(&file, "run");
    let count = format!("SELECT COUNT(*) FROM `{db}`.t");
    // The rows arrive before the copy's end is recorded (by the copy stage's
    // summary, which the state machine calls once the workers are done, after
    // any deferred indexes): a verify refuses until then, so wait for both.
    wait_until("the copy finishes", RUN_TIMEOUT, || async {
        target_query(&env, &count).await == Some(2_000) && ferry.copy_finished(&id).await
    })
    .await;

    // No clean full verify yet: --changed verifies everything and says so.
    let first = ferry.run(&["verify", &id, "--changed"]).await;
    first.assert_ok("the first ferry verify --changed (a full one)");
    assert!(
        first.stdout.contains("no clean full verify yet"),
        "{}",
        first.all()
    );

    let repo = ferry.repo().expect("the task store");
    let mut chunks = repo.chunks(&id).await.unwrap();
    chunks.sort_by(|a, b| a.chunk_id.cmp(&b.chunk_id));
    assert!(chunks.len() >= 5, "{} chunks", chunks.len());
    let lower = |i: usize| int_key(chunks[i].lower.as_deref().unwrap());
    // A change through the sync in chunk 2, a planted difference beside it;
    // new rows past the last chunk's data; chunk 0 is never changed.
    let (changed, beside) = (lower(2) + 1, lower(2) + 2);
    let untouched = 5;
    assert!(untouched < lower(1));
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("UPDATE `{db}`.t SET v = 'changed' WHERE id = {changed}"),
            format!(
                "INSERT INTO `{db}`.t (id, v) VALUES {}",
                (2_001..=2_010)
                    .map(|i| format!("({i}, 'new-{i}')"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ],
    )
    .await;
    let applied = format!(
        "SELECT COUNT(*) FROM `{db}`.t WHERE (id = {changed} AND v = 'changed') OR id > 2000"
    );
    wait_until("the changes reach the target", RUN_TIMEOUT, || async {
        target_query(&env, &applied).await == Some(11)
    })
    .await;

    match how {
        Interrupt::Stop => {
            ferry.run(&["stop", &id]).await.assert_ok("ferry stop");
            wait_for_exit(&mut child, Duration::from_secs(60)).await;
        }
        Interrupt::Kill => {
            // SIGKILL: no chance to write anything more.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let marks = ferry_stages::dirty::marks(&repo, &id).await.unwrap();
    let marked: Vec<(&str, Option<i64>)> = marks
        .iter()
        .map(|m| (m.chunk_id.as_str(), m.from.as_deref().map(int_key)))
        .collect();
    let last = chunks.last().unwrap();
    assert_eq!(
        marked,
        vec![
            (chunks[2].chunk_id.as_str(), None),
            (last.chunk_id.as_str(), Some(2_001))
        ],
        "after {how:?}: the changed chunk, and the new key range past the last chunk"
    );
    let listed: Vec<Option<Vec<i64>>> = marks
        .iter()
        .map(|m| {
            m.exact()
                .map(|keys| keys.iter().map(|k| int_key(k)).collect())
        })
        .collect();
    let expect_listed = match how {
        // The apply call ended: it listed the keys it changed.
        Interrupt::Stop => vec![Some(vec![changed]), Some((2_001..=2_010).collect())],
        // Killed: no list, the marks mean the whole chunk and the tail.
        Interrupt::Kill => vec![None, None],
    };
    assert_eq!(listed, expect_listed, "after {how:?}: {marks:?}");

    // Differences made on the target behind Ferry's back.
    admin_exec(
        &env,
        Side::Target,
        &[format!(
            "UPDATE `{db}`.t SET v = 'planted' WHERE id IN ({changed}, {beside}, 2005, {untouched})"
        )],
    )
    .await;
    let mut resumed = ferry.spawn(&["resume", &id, "--slice-seconds", "10"], "resumed");
    // Verified while the sync runs: before the resumed ferry holds the task's
    // lock, `ferry verify` rightly judges a differing row against a stopped
    // sync (unsettled, with the checkpoint behind the source), and this case
    // raced it on a slower machine.
    wait_until(
        "the resumed ferry holds the task's lock",
        RUN_TIMEOUT,
        || async { ferry_local::TaskLock::is_held(&ferry.state_dir, &id).unwrap_or(false) },
    )
    .await;

    let found = ferry.run(&["verify", &id, "--changed"]).await;
    assert_eq!(found.code, Some(4), "differences found:\n{}", found.all());
    assert!(
        found.stdout.contains("changed: 2 of"),
        "two chunks re-checked:\n{}",
        found.all()
    );
    let summary = repo
        .get_record::<ferry_stages::verify::VerifySummary>(&id, ferry_stages::verify::SUMMARY_SK)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.mode, "changed", "{summary:?}");
    assert_eq!(summary.chunks, 2, "{summary:?}");
    let chunk2_rows = (lower(3) - lower(2)) as u64;
    let (rows, found_keys) = match how {
        Interrupt::Stop => (11, BTreeSet::from([changed, 2005])),
        Interrupt::Kill => (chunk2_rows + 10, BTreeSet::from([changed, beside, 2005])),
    };
    assert_eq!(
        summary.rows, rows,
        "after {how:?}: only the changed keys (stop) or chunk 2 and the 10 new rows (kill) were read: {summary:?}"
    );
    let keys: BTreeSet<i64> = repo
        .diffs(&id)
        .await
        .unwrap()
        .iter()
        .map(|d| int_key(&d.key))
        .collect();
    assert_eq!(
        keys, found_keys,
        "--changed finds what is in what it reads (the changed rows, or the changed chunk and the new range), \
         never the untouched chunk"
    );

    let full = ferry.run(&["verify", &id, "--full"]).await;
    assert_eq!(full.code, Some(4), "{}", full.all());
    let keys: BTreeSet<i64> = repo
        .diffs(&id)
        .await
        .unwrap()
        .iter()
        .map(|d| int_key(&d.key))
        .collect();
    assert_eq!(keys, BTreeSet::from([untouched, changed, beside, 2005]));

    // Repaired (while the link runs: a repair re-checks its rows around the
    // apply), the chunks found different are still marked (the full run marked
    // the untouched one too). With the link stopped (no apply call open) the
    // next --changed reads them, finds them clean and clears every mark.
    ferry
        .run(&["verify", &id, "--repair"])
        .await
        .assert_ok("ferry verify --repair");
    ferry.run(&["stop", &id]).await.assert_ok("ferry stop");
    wait_for_exit(&mut resumed, Duration::from_secs(60)).await;
    let clean = ferry.run(&["verify", &id, "--changed"]).await;
    clean.assert_ok("ferry verify --changed after the repair");
    assert!(clean.stdout.contains("changed: 3 of"), "{}", clean.all());
    let left = ferry_stages::dirty::marks(&repo, &id).await.unwrap();
    assert!(left.is_empty(), "marks left after a clean run: {left:?}");
    let nothing = ferry.run(&["verify", &id, "--changed"]).await;
    nothing.assert_ok("ferry verify --changed with nothing changed");
    assert!(
        nothing.stdout.contains("changed: 0 of"),
        "{}",
        nothing.all()
    );
    ferry
        .run(&["release", &id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

async fn sync_stopped(env: TestEnv) {
    let db = unique_name("vstop");
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
    fill_numbered(&mut c, &db, "t", 500).await;
    c.disconnect().await.ok();

    let ferry = Ferry::standard(&env);
    let id = unique_name("vstop-task").replace('_', "-");
    // Each wait for the apply may last 10 minutes: a verify that waited on
    // the stopped sync would outlast the bound below many times over.
    let mut task = task_for(
        &env,
        &id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 100, "verify_recheck_seconds": 600}),
    );
    task["types"] = json!(["schema", "full", "incremental"]);
    let file = ferry.task_file("task.json", &task);
    let mut child = ferry.spawn_run(&file, "run");
    let count = format!("SELECT COUNT(*) FROM `{db}`.t");
    // The rows arrive before the copy's end is recorded (by the copy stage's
    // summary, which the state machine calls once the workers are done, after
    // any deferred indexes): a verify refuses until then, so wait for both.
    wait_until("the copy finishes", RUN_TIMEOUT, || async {
        target_query(&env, &count).await == Some(500) && ferry.copy_finished(&id).await
    })
    .await;
    ferry.run(&["stop", &id]).await.assert_ok("ferry stop");
    wait_for_exit(&mut child, Duration::from_secs(60)).await;

    // A change the stopped sync has not applied.
    admin_exec(
        &env,
        Side::Source,
        &[format!(
            "UPDATE `{db}`.t SET v = 'while stopped' WHERE id = 7"
        )],
    )
    .await;
    // Spawned, so that a verify which waits is killed at the bound (a
    // command run to completion would hold the test for its every wait).
    let mut verify = ferry.spawn(&["verify", &id], "verify");
    let status = wait_for_exit(&mut verify, Duration::from_secs(120)).await;
    let out = ferry.spawned_output("verify");
    assert_eq!(status.code(), Some(4), "not clean:\n{out}");
    assert!(
        out.contains("1 row(s) unsettled") && out.contains(&format!("`ferry resume {id}`")),
        "says the row is unsettled and how to settle it:\n{out}"
    );
    let repo = ferry.repo().expect("the task store");
    let summary = repo
        .get_record::<ferry_stages::verify::VerifySummary>(&id, ferry_stages::verify::SUMMARY_SK)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (summary.differences, summary.unsettled),
        (0, 1),
        "an unapplied change is not a difference: {summary:?}"
    );
    assert!(repo.diffs(&id).await.unwrap().is_empty());

    // The sync runs again: it applies the change, and the verify (which now
    // waits for it when a row differs) is clean.
    let mut resumed = ferry.spawn(&["resume", &id, "--slice-seconds", "10"], "resumed");
    let applied = format!("SELECT COUNT(*) FROM `{db}`.t WHERE id = 7 AND v = 'while stopped'");
    wait_until("the change reaches the target", RUN_TIMEOUT, || async {
        target_query(&env, &applied).await == Some(1)
    })
    .await;
    ferry
        .run(&["verify", &id])
        .await
        .assert_ok("ferry verify while the sync runs");
    ferry.run(&["stop", &id]).await.assert_ok("ferry stop");
    wait_for_exit(&mut resumed, Duration::from_secs(60)).await;
    ferry
        .run(&["release", &id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

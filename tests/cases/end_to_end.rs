//! A whole embedded migration (`ferry run`) of tables covering MariaDB's column
//! types, compared row by row, column by column with the source afterwards.

use ferry_testkit::{env, exec, on_both_targets, recreate_db, unique_name, Side, TestEnv};
use serde_json::json;

use crate::common::{
    admin_exec, assert_tables_equal, drop_everywhere, fill_numbered, task, task_for, Ferry,
};

const TABLES: &[&str] = &["types", "composite", "ubig", "numbered", "empty_one"];

/// Source fixtures: every type the brief names, NULLs, extremes, a composite key, an unsigned key
/// reaching the maximum, enough rows for many chunks, and an empty table.
fn fixtures(db: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE `{db}`.types (
               id INT NOT NULL PRIMARY KEY,
               i INT NULL, u BIGINT UNSIGNED NULL, d DECIMAL(30,6) NULL,
               s VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
               dt DATETIME(6) NULL, ts TIMESTAMP(6) NULL DEFAULT NULL, j JSON NULL, b BLOB NULL,
               e ENUM('small','medium','large') NULL
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
        format!(
            "INSERT INTO `{db}`.types VALUES
             (1, -2147483648, 18446744073709551615, 123456789012345678901234.123456, 'emoji 😀🚀 and ünïcödé — 中文',
              '2024-02-29 23:59:59.999999', '2038-01-19 03:14:07.999999', '{{\"a\": [1, 2, {{\"b\": null}}], \"s\": \"😀\"}}',
              X'00FF10E2809C0A0D', 'large'),
             (2, 2147483647, 0, -0.000001, '', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', '[]', X'', 'small'),
             (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
             (4, 0, 9223372036854775808, 0, 'quote '' backslash \\\\ tab \t newline \n end', '2000-06-15 12:30:45.500000',
              '2024-01-01 00:00:00', '{{\"nested\": {{\"deep\": [true, false, 1.5e10]}}}}', REPEAT(X'AB', 70000 DIV 2), 'medium')"
        ),
        format!(
            "CREATE TABLE `{db}`.composite (
               region VARCHAR(20) NOT NULL, seq BIGINT NOT NULL, note TEXT NULL, amount DECIMAL(12,2) NOT NULL,
               PRIMARY KEY (region, seq)
             ) DEFAULT CHARSET=utf8mb4"
        ),
        format!(
            "INSERT INTO `{db}`.composite
             WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 120)
             SELECT ELT(1 + n % 4, 'eu', 'us', 'ap', 'ünï'), n * 7 - 300, IF(n % 5 = 0, NULL, CONCAT('note ', n)), n * 1.25 FROM s"
        ),
        format!("CREATE TABLE `{db}`.ubig (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, v VARCHAR(20) NOT NULL)"),
        format!(
            "INSERT INTO `{db}`.ubig VALUES (0, 'zero'), (1, 'one'), (9223372036854775807, 'i64 max'),
             (9223372036854775808, 'i64 max + 1'), (18446744073709551614, 'max - 1'), (18446744073709551615, 'max')"
        ),
        format!("CREATE TABLE `{db}`.numbered (id INT NOT NULL PRIMARY KEY, v VARCHAR(100) NOT NULL)"),
        format!("CREATE TABLE `{db}`.empty_one (id INT NOT NULL PRIMARY KEY, v INT)"),
    ]
}

on_both_targets!(
    embedded_run_copies_every_type_exactly,
    super::embedded_run_copies_every_type_exactly
);

async fn embedded_run_copies_every_type_exactly(env: TestEnv) {
    let db = unique_name("e2e");
    let mut src = env.admin(Side::Source).await;
    recreate_db(&mut src, &db).await;
    exec(&mut src, "SET SESSION max_recursive_iterations = 100000").await;
    for s in fixtures(&db) {
        exec(&mut src, &s).await;
    }
    fill_numbered(&mut src, &db, "numbered", 1000).await;
    src.disconnect().await.ok();

    let ferry = Ferry::standard(&env);
    let task_id = unique_name("e2e-task").replace('_', "-");
    let options = json!({"chunk_rows": 3, "concurrency": 4, "batch_rows": 50});
    let file = ferry.task_file(
        "task.json",
        &task_for(&env, &task_id, &[format!("{db}.*")], options),
    );
    let out = ferry.migrate(&file).await;
    out.assert_ok("ferry run");
    assert!(
        out.stdout.contains(&task_id) && out.stdout.contains("completed"),
        "{}",
        out.stdout
    );

    assert_tables_equal(&env, &db, TABLES).await;

    let status = ferry.status_json(&task_id).await;
    assert_eq!(status["state"], json!("completed"), "{status:#}");
    assert_eq!(
        status["totals"]["done"], status["totals"]["total"],
        "{status:#}"
    );
    assert_eq!(status["totals"]["failed"], json!(0), "{status:#}");
    assert_eq!(
        status["totals"]["rows"],
        json!(4 + 120 + 6 + 1000),
        "{status:#}"
    );
    assert!(
        status["totals"]["total"].as_u64().unwrap() > 300,
        "chunk_rows 3 gives many chunks: {status:#}"
    );
    assert_eq!(
        status["tables"].as_array().unwrap().len(),
        TABLES.len(),
        "{status:#}"
    );
    let text = ferry.run(&["status", &task_id]).await;
    text.assert_ok("ferry status");
    assert!(
        text.stdout.contains("completed") && text.stdout.contains(&format!("{db}.numbered")),
        "{}",
        text.stdout
    );

    // A second run of a completed task is harmless and leaves the same rows.
    ferry.migrate(&file).await.assert_ok("ferry run again");
    assert_tables_equal(&env, &db, TABLES).await;
    drop_everywhere(&env, &db).await;
}

/// The lock: a second `ferry run` of the same task, while one holds the lock, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_of_the_same_task_is_refused() {
    let env = env();
    let db = unique_name("lock");
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}`"),
            format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(100) NOT NULL)"),
        ],
    )
    .await;
    let mut src = env.admin(Side::Source).await;
    fill_numbered(&mut src, &db, "t", 200).await;
    src.disconnect().await.ok();
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("lock-task").replace('_', "-");
    std::fs::create_dir_all(&ferry.state_dir).unwrap();
    let _held = ferry_local::TaskLock::acquire(&ferry.state_dir, &task_id).unwrap();
    let file = ferry.task_file(
        "task.json",
        &task(&task_id, &[format!("{db}.*")], json!({})),
    );
    let out = ferry.migrate(&file).await;
    out.assert_failed_with(&["Ferry.Fenced", &task_id, "already being run"]);
    drop_everywhere(&env, &db).await;
}

/// On a terminal `ferry run` shows a live progress line (rows, chunks done/total, rows/s);
/// piped, it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_line_only_on_a_terminal() {
    let env = env();
    let db = unique_name("progress");
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}`"),
            format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(100) NOT NULL)"),
        ],
    )
    .await;
    let mut src = env.admin(Side::Source).await;
    fill_numbered(&mut src, &db, "t", 12_000).await;
    src.disconnect().await.ok();
    let ferry = Ferry::standard(&env);
    // Throttled so the copy lasts a few seconds: long enough for the line to be drawn.
    let options = json!({"chunk_rows": 500, "concurrency": 1, "max_rows_per_second": 4000});
    let task_id = unique_name("progress-task").replace('_', "-");
    let file = ferry.task_file("task.json", &task(&task_id, &[format!("{db}.*")], options));
    let args = ["run", file.to_str().unwrap(), "--slice-seconds", "10"];
    let out = ferry.run_in_terminal(&args).await;
    out.assert_ok("ferry run on a terminal");
    assert!(
        out.stdout.contains("copying: "),
        "no progress line:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(", chunks ") && out.stdout.contains(" done"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("rows/s"), "{}", out.stdout);
    assert!(out.stdout.contains("completed"), "{}", out.stdout);
    assert_tables_equal(&env, &db, &["t"]).await;

    let again = ferry.migrate(&file).await;
    again.assert_ok("ferry run piped");
    assert!(
        !again.stderr.contains("copying: ") && !again.stderr.contains("\x1b[2K"),
        "{}",
        again.stderr
    );
    drop_everywhere(&env, &db).await;
}

/// `ferry status` reads only: without a store it says where it looked, and creates nothing.
#[tokio::test]
async fn status_without_a_store_names_the_directory() {
    let ferry = Ferry::new(&json!({}));
    let out = ferry.run(&["status", "no-such-task"]).await;
    let dir = ferry.state_dir.display().to_string();
    out.assert_failed_with(&["no task store", &dir, "--state-dir"]);
    assert!(
        !ferry.state_dir.exists(),
        "status created the state directory"
    );
}

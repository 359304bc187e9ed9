//! The paths OceanBase changed: exact values through copy and sync with both
//! write methods, a switch without a reverse link carried to the end with
//! DDL in the stream, and the reverse link's refusal. Each body runs against
//! the MariaDB target and the OceanBase target (`on_both_targets!`), except the
//! refusal, which only OceanBase gives.

use std::time::{Duration, Instant};

use ferry_testkit::{env_for, on_both_targets, same_value, unique_name, Side, Target, TestEnv};
use serde_json::json;

use super::resume::{wait_for_done_chunks, wait_for_exit};
use crate::common::{
    admin_exec, assert_tables_equal, drop_everywhere, task_for, Ferry, RUN_TIMEOUT,
};

/// Every string and binary type, with a string first, in the middle and last.
const EXACT_DDL: &str = "CREATE TABLE `{db}`.t (
    s_first VARCHAR(20) NULL, id INT NOT NULL, ch CHAR(8) NULL, vc VARCHAR(20) NULL,
    tt TINYTEXT NULL, tx TEXT NULL, mt MEDIUMTEXT NULL, lt LONGTEXT NULL,
    bn BINARY(4) NULL, vb VARBINARY(20) NULL, tb TINYBLOB NULL, bl BLOB NULL,
    mb MEDIUMBLOB NULL, lb LONGBLOB NULL, en ENUM('', 'a', 'b') NULL, st SET('a', 'b') NULL,
    s_last VARCHAR(20) NULL, PRIMARY KEY (id)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";
/// The last column a BLOB (LOAD DATA carries it in hex), and one a TEXT.
const BLOB_LAST_DDL: &str =
    "CREATE TABLE `{db}`.b_last (id INT NOT NULL PRIMARY KEY, v VARCHAR(10) NULL, b BLOB NULL)";
const TEXT_LAST_DDL: &str =
    "CREATE TABLE `{db}`.notes (id INT NOT NULL PRIMARY KEY, notes TEXT NULL) \
    DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";
const EXACT_TABLES: &[&str] = &["t", "b_last", "notes"];

/// Rows `base+1..=base+4`: all empty, all NULL, trailing spaces, and a mix.
fn exact_rows(db: &str, base: u32) -> Vec<String> {
    let row = |id: u32, s: &str, b: &str| {
        format!(
            "({s}, {id}, {s}, {s}, {s}, {s}, {s}, {s}, {b}, {b}, {b}, {b}, {b}, {b}, {e}, {e}, {s})",
            e = if s == "NULL" { "NULL" } else { "''" }
        )
    };
    vec![
        format!(
            "INSERT INTO `{db}`.t VALUES {}, {}, {}, ('', {}, NULL, 'x', '', NULL, 'y', '', X'', NULL, X'00', X'', NULL, X'20', 'a', 'a,b', '')",
            row(base + 1, "''", "X''"),
            row(base + 2, "NULL", "NULL"),
            row(base + 3, "'a  '", "X'2020'"),
            base + 4,
        ),
        format!(
            "INSERT INTO `{db}`.b_last VALUES ({}, '', X''), ({}, NULL, NULL), ({}, 'x ', X'00'), ({}, '', NULL)",
            base + 1,
            base + 2,
            base + 3,
            base + 4
        ),
        format!(
            "INSERT INTO `{db}`.notes VALUES ({}, ''), ({}, NULL), ({}, ' '), ({}, 'n')",
            base + 1,
            base + 2,
            base + 3,
            base + 4
        ),
    ]
}

/// Whether every listed table holds the same rows on both sides (JSON as JSON).
pub(crate) async fn tables_equal(env: &TestEnv, db: &str, tables: &[&str]) -> bool {
    let mut src = env.admin(Side::Source).await;
    let mut tgt = env.admin(Side::Target).await;
    let mut same = true;
    for t in tables {
        let a = ferry_testkit::rows(&mut src, db, t).await;
        let b = ferry_testkit::try_rows(&mut tgt, db, t).await;
        same &= b.is_some_and(|b| {
            a.len() == b.len()
                && a.iter().zip(&b).all(|(x, y)| {
                    x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
                })
        });
    }
    src.disconnect().await.ok();
    tgt.disconnect().await.ok();
    same
}

/// `ferry run` with incremental sync; `changes` run on the source once a chunk
/// is copied; wait until the copy is recorded finished and the target holds
/// exactly the source's rows; `ferry verify` must say clean. The run is left
/// going for the caller.
async fn sync_until_equal(
    ferry: &Ferry,
    env: &TestEnv,
    task: &serde_json::Value,
    db: &str,
    tables: &[&str],
    changes: &[String],
) -> std::process::Child {
    let task_id = task["task_id"].as_str().unwrap().to_string();
    let file = ferry.task_file("task.json", task);
    let mut child = ferry.spawn_run(&file, "killed");
    wait_for_done_chunks(ferry, &mut child, &task_id, 1).await;
    admin_exec(env, Side::Source, changes).await;
    let deadline = Instant::now() + RUN_TIMEOUT;
    // Equal tables can come before the copy's end is recorded, and a verify refuses until then.
    while !(ferry.copy_finished(&task_id).await && tables_equal(env, db, tables).await) {
        if let Some(status) = child.try_wait().expect("poll ferry") {
            panic!(
                "ferry run ended ({status}):\n{}",
                ferry.spawned_output("killed")
            );
        }
        assert!(
            Instant::now() < deadline,
            "the target did not reach the source's rows within {RUN_TIMEOUT:?}:\n{}",
            ferry.spawned_output("killed")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let verify = ferry.run(&["verify", &task_id]).await;
    verify.assert_ok("ferry verify after catch-up (exit 0: clean)");
    child
}

on_both_targets!(
    empty_strings_nulls_and_padding_survive_copy_and_sync,
    super::exact_values
);

async fn exact_values(env: TestEnv) {
    for write in ["load_data", "insert"] {
        let db = unique_name("exact");
        let mut setup = vec![format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4")];
        setup.extend([EXACT_DDL, BLOB_LAST_DDL, TEXT_LAST_DDL].map(|d| d.replace("{db}", &db)));
        setup.extend(exact_rows(&db, 0));
        admin_exec(&env, Side::Source, &setup).await;

        let ferry = Ferry::standard(&env);
        let task_id = unique_name("exact-task").replace('_', "-");
        let mut task = task_for(
            &env,
            &task_id,
            &[format!("{db}.*")],
            json!({"chunk_rows": 2, "copy_write": write}),
        );
        task["types"] = json!(["schema", "full", "incremental", "verify"]);
        let mut changes = exact_rows(&db, 100);
        changes.extend([
            format!("UPDATE `{db}`.t SET s_last = '', s_first = NULL, lb = X'' WHERE id = 3"),
            format!("UPDATE `{db}`.notes SET notes = '' WHERE id = 4"),
            format!("UPDATE `{db}`.b_last SET b = X'' WHERE id = 3"),
        ]);
        let mut child = sync_until_equal(&ferry, &env, &task, &db, EXACT_TABLES, &changes).await;
        ferry.run(&["stop", &task_id]).await.assert_ok("ferry stop");
        wait_for_exit(&mut child, Duration::from_secs(60)).await;
        // Value by value, with the write method named on failure.
        eprintln!(
            "{} target, copy_write {write}: comparing",
            env.target_dialect
        );
        assert_tables_equal(&env, &db, EXACT_TABLES).await;
        ferry
            .run(&["release", &task_id])
            .await
            .assert_ok("ferry release");
        drop_everywhere(&env, &db).await;
    }
}

on_both_targets!(
    legacy_character_sets_survive_copy_sync_and_verify,
    super::legacy_charsets
);

/// Text in latin1, cp1251 and gbk (seekdb has none of them: the schema stage
/// makes such columns utf8mb4) after a GEOMETRY column, and a latin1 ENUM:
/// copied, changed while the link runs, verified clean, and the same
/// characters on both sides.
async fn legacy_charsets(env: TestEnv) {
    let db = unique_name("legacy");
    let rows = |base: u32| {
        format!(
            "INSERT INTO `{db}`.t VALUES ({}, POINT(1, 2), 'café', 'Привет', '中文', 'é', 'ü'), \
             ({}, NULL, '', '', '', 'x', ''), ({}, NULL, NULL, NULL, NULL, NULL, NULL)",
            base + 1,
            base + 2,
            base + 3
        )
    };
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"),
            format!(
                "CREATE TABLE `{db}`.t (id INT NOT NULL PRIMARY KEY, g POINT NULL, \
                 l VARCHAR(20) CHARACTER SET latin1 NULL, c VARCHAR(20) CHARACTER SET cp1251 NULL, \
                 k VARCHAR(20) CHARACTER SET gbk NULL, e ENUM('é', 'x') CHARACTER SET latin1 NULL, \
                 u VARCHAR(20) NULL) DEFAULT CHARSET=utf8mb4"
            ),
            rows(0),
        ],
    )
    .await;
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("legacy-task").replace('_', "-");
    let mut task = task_for(
        &env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 1}),
    );
    task["types"] = json!(["schema", "full", "incremental", "verify"]);
    let changes = [
        rows(100),
        format!(
            "UPDATE `{db}`.t SET l = CONCAT(l, 'ÿ'), c = CONCAT(c, 'ё'), k = CONCAT(k, '丂'), \
             e = IF(e = 'x', 'é', 'x') WHERE id IN (1, 102)"
        ),
        format!("DELETE FROM `{db}`.t WHERE id = 2"),
    ];
    let mut child = sync_until_equal(&ferry, &env, &task, &db, &["t"], &changes).await;
    ferry.run(&["stop", &task_id]).await.assert_ok("ferry stop");
    wait_for_exit(&mut child, Duration::from_secs(60)).await;
    assert_tables_equal(&env, &db, &["t"]).await;
    ferry
        .run(&["release", &task_id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

on_both_targets!(
    switch_without_reverse_after_ddl_in_the_stream_then_release,
    super::switch_without_reverse
);

/// utf8mb4_unicode_ci tables (which OceanBase lacks), DML and DDL while the
/// link runs (ADD COLUMN, a new table, CONVERT TO ... COLLATE), a switch
/// without "reverse" carried to the end, then release.
async fn switch_without_reverse(env: TestEnv) {
    let db = unique_name("sw");
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
            format!(
                "CREATE TABLE `{db}`.orders (id INT NOT NULL PRIMARY KEY, note VARCHAR(255) NULL, \
                 amount DECIMAL(12,2) NOT NULL, at DATETIME(6) NOT NULL, attrs JSON NULL) \
                 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
            ),
            format!(
                "INSERT INTO `{db}`.orders WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 200) \
                 SELECT n, IF(n % 3 = 0, '', CONCAT('Straße ', n)), n * 1.5, '2024-01-01 10:00:00.123456' + INTERVAL n MINUTE, \
                 IF(n % 4 = 0, NULL, '{{\"b\": 1, \"a\": [1, 2.50]}}') FROM s"
            ),
        ],
    )
    .await;
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("sw-task").replace('_', "-");
    let mut task = task_for(
        &env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 50}),
    );
    task["types"] = json!(["schema", "full", "incremental", "verify"]);
    let changes = [
        format!("UPDATE `{db}`.orders SET note = 'changed' WHERE id % 10 = 0"),
        format!("DELETE FROM `{db}`.orders WHERE id % 25 = 0"),
        format!("ALTER TABLE `{db}`.orders ADD COLUMN c INT DEFAULT 5"),
        format!(
            "INSERT INTO `{db}`.orders (id, note, amount, at, c) VALUES (1000, '', 1, NOW(6), 7)"
        ),
        format!(
            "CREATE TABLE `{db}`.late (id INT NOT NULL PRIMARY KEY, v VARCHAR(20) NULL) \
             DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
        ),
        format!("INSERT INTO `{db}`.late VALUES (1, ''), (2, NULL), (3, 'ß')"),
        format!(
            "ALTER TABLE `{db}`.late CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ),
        format!("INSERT INTO `{db}`.late VALUES (4, 'after convert')"),
    ];
    let mut child = sync_until_equal(&ferry, &env, &task, &db, &["orders", "late"], &changes).await;

    let switched = ferry.run(&["switch", &task_id, "--wait", "120"]).await;
    switched.assert_ok("ferry switch --wait 120");
    assert!(switched.stdout.contains("switched"), "{}", switched.all());
    let status = ferry.run(&["status", &task_id]).await;
    status.assert_ok("ferry status");
    assert!(
        status.stdout.contains("rollback plan is the operator's"),
        "the switch without reverse says who owns the rollback:\n{}",
        status.stdout
    );
    wait_for_exit(&mut child, Duration::from_secs(60)).await;
    assert_eq!(
        ferry.status_json(&task_id).await["state"],
        json!("completed")
    );
    assert_tables_equal(&env, &db, &["orders", "late"]).await;
    ferry
        .run(&["release", &task_id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

/// OceanBase has no binary log without its Binlog Service: a task with
/// "reverse" is refused by the precheck, which names the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_link_from_oceanbase_is_refused_with_the_fix() {
    let env = env_for(Target::Oceanbase);
    let db = unique_name("rev");
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}`"),
            format!("CREATE TABLE `{db}`.t (id INT NOT NULL PRIMARY KEY, v INT)"),
        ],
    )
    .await;
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("rev-task").replace('_', "-");
    let mut task = task_for(&env, &task_id, &[format!("{db}.*")], json!({}));
    task["types"] = json!(["schema", "full", "incremental", "reverse"]);
    let file = ferry.task_file("task.json", &task);
    let out = ferry.run(&["precheck", file.to_str().unwrap()]).await;
    assert!(!out.success(), "the precheck must fail:\n{}", out.all());
    let all = out.all();
    for needle in [
        "target.reverse_binlog",
        "Binlog Service",
        "remove \"reverse\" from types",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    drop_everywhere(&env, &db).await;
}

/// `utf8mb4_unicode_ci` becomes `utf8mb4_general_ci` on this OceanBase server,
/// under which 'ß' equals 's': a unique key holding both is found by the
/// precheck, with an example; repeated NULLs are no collision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_keys_colliding_under_the_mapped_collation_are_found() {
    let env = env_for(Target::Oceanbase);
    let db = unique_name("coll");
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
            format!(
                "CREATE TABLE `{db}`.clash (id INT NOT NULL PRIMARY KEY, name VARCHAR(20) NULL, UNIQUE KEY uk_name (name)) \
                 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
            ),
            format!("INSERT INTO `{db}`.clash VALUES (1, 'ß'), (2, 's'), (3, NULL), (4, NULL)"),
            format!(
                "CREATE TABLE `{db}`.fine (id INT NOT NULL PRIMARY KEY, email VARCHAR(40) NULL, UNIQUE KEY uk_email (email)) \
                 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
            ),
            format!("INSERT INTO `{db}`.fine VALUES (1, 'a@x'), (2, NULL), (3, NULL)"),
        ],
    )
    .await;
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("coll-task").replace('_', "-");
    let file = ferry.task_file(
        "task.json",
        &task_for(&env, &task_id, &[format!("{db}.*")], json!({})),
    );
    let out = ferry.run(&["precheck", file.to_str().unwrap()]).await;
    assert!(!out.success(), "the precheck must fail:\n{}", out.all());
    let all = out.all();
    let clash: Vec<&str> = all.lines().filter(|l| l.contains("uk_name")).collect();
    assert!(
        clash
            .iter()
            .any(|l| l.contains("FAIL") && l.contains("'ß'") && l.contains("'s'")),
        "uk_name collides ('ß' = 's'):\n{all}"
    );
    assert!(
        all.lines()
            .any(|l| l.contains("uk_email") && l.contains("[pass]")),
        "repeated NULLs in uk_email are no collision:\n{all}"
    );
    drop_everywhere(&env, &db).await;
}

on_both_targets!(
    a_verify_difference_makes_the_switch_wait_until_repaired,
    super::difference_stops_the_line
);

/// A task with 200 rows synchronizing, and two differences planted on the
/// target and found by `ferry verify` (exit 4).
async fn synchronizing_with_differences(
    env: &TestEnv,
    prefix: &str,
) -> (String, Ferry, String, std::process::Child) {
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
    crate::common::fill_numbered(&mut c, &db, "t", 200).await;
    c.disconnect().await.ok();
    let ferry = Ferry::standard(env);
    let task_id = unique_name(&format!("{prefix}-task")).replace('_', "-");
    let mut task = task_for(
        env,
        &task_id,
        &[format!("{db}.*")],
        json!({"chunk_rows": 50}),
    );
    task["types"] = json!(["schema", "full", "incremental", "verify"]);
    let child = sync_until_equal(&ferry, env, &task, &db, &["t"], &[]).await;
    admin_exec(
        env,
        Side::Target,
        &[
            format!("UPDATE `{db}`.t SET v = 'planted' WHERE id = 7"),
            format!("DELETE FROM `{db}`.t WHERE id = 8"),
        ],
    )
    .await;
    let found = ferry.run(&["verify", &task_id]).await;
    assert_eq!(
        found.code,
        Some(4),
        "verify exits 4 on differences:\n{}",
        found.all()
    );
    (db, ferry, task_id, child)
}

/// Differences found by a verify put the task in "attention": `ferry status`
/// says so, and a requested switch waits; a repair clears it, and the waiting
/// switch then goes ahead.
async fn difference_stops_the_line(env: TestEnv) {
    let (db, ferry, task_id, mut child) = synchronizing_with_differences(&env, "att").await;
    let status = ferry.run(&["status", &task_id]).await;
    assert!(
        status.stdout.contains("ATTENTION") && status.stdout.contains("attention: 2 difference(s)"),
        "{}",
        status.stdout
    );
    assert_eq!(
        ferry.status_json(&task_id).await["attention"]["differences"],
        json!(2)
    );
    let refused = ferry.run(&["switch", &task_id, "--wait", "8"]).await;
    assert!(
        !refused.success() && refused.all().contains("unresolved"),
        "the switch waits while a difference is unresolved:\n{}",
        refused.all()
    );
    ferry
        .run(&["verify", &task_id, "--repair"])
        .await
        .assert_ok("ferry verify --repair");
    let status = ferry.status_json(&task_id).await;
    assert!(
        status.get("attention").is_none(),
        "a repair clears the attention: {status:#}"
    );
    // The switch requested above was waiting for exactly this: it now goes ahead.
    let switched = ferry.run(&["switch", &task_id, "--wait", "120"]).await;
    switched.assert_ok("the waiting switch completes once the differences are repaired");
    wait_for_exit(&mut child, Duration::from_secs(60)).await;
    assert_tables_equal(&env, &db, &["t"]).await;
    ferry
        .run(&["release", &task_id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

/// `ferry switch --force` switches despite unresolved differences, and the
/// switch's steps record that it was forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forced_switch_despite_differences_is_recorded() {
    let env = env_for(Target::Mariadb);
    let (db, ferry, task_id, mut child) = synchronizing_with_differences(&env, "force").await;
    let forced = ferry
        .run(&["switch", &task_id, "--force", "--wait", "120"])
        .await;
    forced.assert_ok("ferry switch --force");
    assert!(
        forced.all().contains("forced (--force)"),
        "{}",
        forced.all()
    );
    wait_for_exit(&mut child, Duration::from_secs(60)).await;
    ferry
        .run(&["release", &task_id])
        .await
        .assert_ok("ferry release");
    drop_everywhere(&env, &db).await;
}

/// seekdb defines only SRID 0: geometries in SRID 4326 are found by the
/// precheck, not by a chunk failing mid-copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geometries_in_an_srid_the_target_lacks_are_found_by_the_precheck() {
    let env = env_for(Target::Oceanbase);
    let db = unique_name("srid");
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}`"),
            format!("CREATE TABLE `{db}`.places (id INT NOT NULL PRIMARY KEY, at POINT NULL)"),
            format!(
                "INSERT INTO `{db}`.places VALUES (1, ST_GeomFromText('POINT(1 2)', 4326)), \
                 (2, ST_GeomFromText('POINT(3 4)')), (3, NULL)"
            ),
        ],
    )
    .await;
    let ferry = Ferry::standard(&env);
    let task_id = unique_name("srid-task").replace('_', "-");
    let file = ferry.task_file(
        "task.json",
        &task_for(&env, &task_id, &[format!("{db}.*")], json!({})),
    );
    let out = ferry.run(&["precheck", file.to_str().unwrap()]).await;
    assert!(!out.success(), "{}", out.all());
    let line = out
        .all()
        .lines()
        .find(|l| l.contains("target.srid"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no target.srid item:\n{}", out.all()));
    assert!(
        line.contains("FAIL") && line.contains("SRID 4326"),
        "{line}"
    );
    drop_everywhere(&env, &db).await;
}

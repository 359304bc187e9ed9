//! Bad inputs are refused with a message that names the thing and the fix, a
//! non-zero exit, and an untouched target: no database or table is created.

use std::os::unix::fs::PermissionsExt;

use ferry_testkit::{env, unique_name, Side, TestEnv};
use serde_json::{json, Value};

use crate::common::{
    admin_exec, drop_everywhere, standard_secrets, target_has_database, task, Ferry, SOURCE_SECRET,
    TARGET_SECRET,
};

/// A source database with one good table.
async fn source_db(env: &TestEnv, prefix: &str) -> String {
    let db = unique_name(prefix);
    admin_exec(
        env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}`"),
            format!("CREATE TABLE `{db}`.good (id INT PRIMARY KEY, v VARCHAR(20))"),
            format!("INSERT INTO `{db}`.good VALUES (1, 'a'), (2, 'b')"),
        ],
    )
    .await;
    db
}

fn task_id(prefix: &str) -> String {
    unique_name(prefix).replace('_', "-")
}

/// Run `ferry run` on a task over `include`, expect failure naming each of `needles`,
/// and check that the target has no database `db`.
async fn refused(
    env: &TestEnv,
    ferry: &Ferry,
    db: &str,
    include: &[String],
    needles: &[&str],
) -> String {
    refused_task(
        env,
        ferry,
        db,
        task(&task_id("bad"), include, json!({})),
        needles,
    )
    .await
}

/// `refused` for a task file given whole.
async fn refused_task(
    env: &TestEnv,
    ferry: &Ferry,
    db: &str,
    task: Value,
    needles: &[&str],
) -> String {
    let file = ferry.task_file("task.json", &task);
    let out = ferry.migrate(&file).await;
    out.assert_failed_with(needles);
    assert!(
        !target_has_database(env, db).await,
        "a refused run created database {db} on the target\n{}",
        out.stderr
    );
    out.stderr.clone()
}

fn with_source(env: &TestEnv, source: Value) -> Ferry {
    let mut s = standard_secrets(env);
    s[SOURCE_SECRET] = source;
    Ferry::new(&s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_names_the_secret() {
    let env = env();
    let db = source_db(&env, "badpw").await;
    let mut secret = env.secret_json(Side::Source, false);
    secret["password"] = json!("definitely-not-the-password");
    let ferry = with_source(&env, secret);
    let err = refused(
        &env,
        &ferry,
        &db,
        &[format!("{db}.*")],
        &["access denied", SOURCE_SECRET, &env.source_user],
    )
    .await;
    assert!(
        !err.contains("definitely-not-the-password"),
        "the password leaked: {err}"
    );
    drop_everywhere(&env, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_names_the_host_and_the_secret() {
    let env = env();
    let db = source_db(&env, "badhost").await;
    let mut secret = env.secret_json(Side::Source, false);
    secret["host"] = json!("ferry-no-such-host.invalid");
    let ferry = with_source(&env, secret);
    refused(
        &env,
        &ferry,
        &db,
        &[format!("{db}.*")],
        &["ferry-no-such-host.invalid", SOURCE_SECRET],
    )
    .await;
    drop_everywhere(&env, &db).await;
}

/// A throwaway source user with SELECT only, for a task that follows the binlog: the precheck
/// names the missing replication privileges and the GRANT that adds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_grant_prints_the_grant_that_fixes_it() {
    let env = env();
    let db = source_db(&env, "nogrant").await;
    let user = unique_name("ferry_weak");
    let password = unique_name("pw");
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"),
            format!("GRANT SELECT ON `{db}`.* TO '{user}'@'%'"),
        ],
    )
    .await;
    let mut secret = env.secret_json(Side::Source, false);
    secret["username"] = json!(user);
    secret["password"] = json!(password);
    let ferry = with_source(&env, secret);
    let mut task = task(&task_id("grant"), &[format!("{db}.*")], json!({}));
    task["types"] = json!(["schema", "full", "incremental"]);
    let err = refused_task(
        &env,
        &ferry,
        &db,
        task,
        &["Ferry.PrecheckFailed", "GRANT", &user],
    )
    .await;
    assert!(
        err.contains("REPLICATION") || err.contains("BINLOG") || err.contains("RELOAD"),
        "{err}"
    );
    admin_exec(&env, Side::Source, &[format!("DROP USER '{user}'@'%'")]).await;
    drop_everywhere(&env, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_is_named() {
    let env = env();
    let db = source_db(&env, "notable").await;
    let ferry = Ferry::standard(&env);
    refused(
        &env,
        &ferry,
        &db,
        &[format!("{db}.good"), format!("{db}.no_such_table")],
        &["no_such_table"],
    )
    .await;
    drop_everywhere(&env, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_without_a_key_is_named_with_the_fix() {
    let env = env();
    let db = source_db(&env, "nokey").await;
    admin_exec(
        &env,
        Side::Source,
        &[format!(
            "CREATE TABLE `{db}`.keyless (a INT, b VARCHAR(10))"
        )],
    )
    .await;
    let ferry = Ferry::standard(&env);
    refused(&env, &ferry, &db, &[format!("{db}.*")], &["keyless", "key"]).await;
    drop_everywhere(&env, &db).await;
}

/// Task file problems are refused before anything is written: not even the state directory.
async fn refused_task_file(text: &str, needles: &[&str]) {
    let env = env();
    let ferry = Ferry::standard(&env);
    let file = ferry.raw_task_file("task.json", text);
    let out = ferry.migrate(&file).await;
    out.assert_failed_with(needles);
    assert_eq!(out.code, Some(2), "a bad task file exits 2\n{}", out.stderr);
    assert!(
        out.stderr.contains("task.json"),
        "the message names the file: {}",
        out.stderr
    );
    assert!(
        !ferry.state_dir.exists(),
        "a refused task file created the state directory"
    );
    let pre = ferry.run(&["precheck", file.to_str().unwrap()]).await;
    pre.assert_failed_with(needles);
}

#[tokio::test]
async fn malformed_task_file_is_refused_with_the_position() {
    refused_task_file(
        "{\"task_id\": \"x\", \"source\": ",
        &["Ferry.BadTask", "line 1"],
    )
    .await;
}

#[tokio::test]
async fn unknown_field_is_named() {
    let text = json!({
        "task_id": "t", "source": {"secret": SOURCE_SECRET}, "target": {"secret": TARGET_SECRET},
        "objects": {"include": ["a.*"]}, "options": {"chunk_rowz": 5},
    });
    refused_task_file(&text.to_string(), &["Ferry.BadTask", "chunk_rowz"]).await;
}

#[tokio::test]
async fn missing_secret_names_the_file_and_the_variable() {
    let env = env();
    let ferry = Ferry::new(&json!({TARGET_SECRET: env.secret_json(Side::Target, false)}));
    let file = ferry.task_file(
        "task.json",
        &task("missing-secret", &["a.*".to_string()], json!({})),
    );
    let out = ferry.migrate(&file).await;
    let path = ferry.secrets_file.display().to_string();
    out.assert_failed_with(&[
        "Ferry.BadSecret",
        SOURCE_SECRET,
        &path,
        "FERRY_SECRET_TEST_SOURCE",
    ]);
    assert!(
        !ferry.state_dir.exists(),
        "a missing secret created the state directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_file_readable_by_others_is_refused() {
    let env = env();
    let db = source_db(&env, "mode").await;
    let ferry = Ferry::with_secrets_mode(&standard_secrets(&env), 0o644);
    let path = ferry.secrets_file.display().to_string();
    let file = ferry.task_file(
        "task.json",
        &task(&task_id("mode"), &[format!("{db}.*")], json!({})),
    );
    let out = ferry.migrate(&file).await;
    out.assert_failed_with(&[
        "Ferry.BadSecret",
        &path,
        "0644",
        &format!("chmod 600 {path}"),
    ]);
    assert_eq!(out.code, Some(2));
    assert!(
        !ferry.state_dir.exists(),
        "a refused secrets file created the state directory"
    );
    assert!(!target_has_database(&env, &db).await);
    // After the fix the same files work (at least as far as the precheck).
    std::fs::set_permissions(&ferry.secrets_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pre = ferry.run(&["precheck", file.to_str().unwrap()]).await;
    assert!(!pre.stderr.contains("Ferry.BadSecret"), "{}", pre.stderr);
    drop_everywhere(&env, &db).await;
}

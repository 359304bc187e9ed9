//! Secrets never appear: not on stdout or stderr (even at trace level), not in
//! the task store's files, not in `ferry status --json`, not in an error;
//! into the MariaDB target and into OceanBase.

use ferry_testkit::{exec, on_both_targets, unique_name, Side, TestEnv};
use mysql_async::prelude::*;
use serde_json::json;

use crate::common::{admin_exec, drop_everywhere, task_for, Ferry, SOURCE_SECRET, TARGET_SECRET};

/// Create `user` on `side` with `password` and the grants of the test's migration user.
async fn clone_user(env: &TestEnv, side: Side, template: &str, user: &str, password: &str) {
    let mut c = env.admin(side).await;
    exec(
        &mut c,
        &format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"),
    )
    .await;
    let grants: Vec<String> = c
        .query(format!("SHOW GRANTS FOR '{template}'@'%'"))
        .await
        .expect("SHOW GRANTS");
    for g in grants {
        let head = g.split(" TO ").next().expect("a GRANT statement");
        exec(&mut c, &format!("{head} TO '{user}'@'%'")).await;
    }
    c.disconnect().await.ok();
}

fn assert_absent(haystack: &[u8], needle: &str, place: &str) {
    let found = haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes());
    assert!(!found, "the password appears in {place}");
}

on_both_targets!(
    passwords_never_appear_in_output_store_or_status,
    super::passwords_never_appear_in_output_store_or_status
);
async fn passwords_never_appear_in_output_store_or_status(env: TestEnv) {
    let db = unique_name("secret");
    let password = format!("Zq7-{}-Distinctive", unique_name("pw"));
    let (su, tu) = (unique_name("ferry_s"), unique_name("ferry_t"));
    clone_user(&env, Side::Source, &env.source_user, &su, &password).await;
    clone_user(&env, Side::Target, &env.target_user, &tu, &password).await;
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}`"),
            format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(50))"),
            format!("INSERT INTO `{db}`.t VALUES (1, 'x'), (2, 'y'), (3, NULL)"),
        ],
    )
    .await;
    let mut s = env.secret_json(Side::Source, false);
    let mut t = env.secret_json(Side::Target, false);
    s["username"] = json!(su);
    s["password"] = json!(password);
    t["username"] = json!(tu);
    t["password"] = json!(password);
    let mut ferry = Ferry::new(&json!({SOURCE_SECRET: s, TARGET_SECRET: t}));
    ferry.extra_env.push(("RUST_LOG".into(), "trace".into()));
    let task_id = unique_name("secret-task").replace('_', "-");
    let file = ferry.task_file(
        "task.json",
        &task_for(
            &env,
            &task_id,
            &[format!("{db}.*")],
            json!({"chunk_rows": 1}),
        ),
    );

    let run = ferry.migrate(&file).await;
    run.assert_ok("ferry run with the distinctive password");
    assert_absent(run.all().as_bytes(), &password, "ferry run's output");
    let pre = ferry.run(&["precheck", file.to_str().unwrap()]).await;
    assert_absent(pre.all().as_bytes(), &password, "ferry precheck's output");
    let status = ferry.run(&["status", &task_id, "--json"]).await;
    status.assert_ok("ferry status --json");
    assert_absent(status.all().as_bytes(), &password, "ferry status --json");
    let text = ferry.run(&["status", &task_id]).await;
    assert_absent(text.all().as_bytes(), &password, "ferry status");

    // A wrong (but distinctive) password must not be echoed by the error either.
    let wrong = format!("{password}-wrong");
    let mut bad = env.secret_json(Side::Source, false);
    bad["username"] = json!(su);
    bad["password"] = json!(wrong);
    let mut failing = Ferry::new(&json!({SOURCE_SECRET: bad, TARGET_SECRET: t}));
    failing.extra_env.push(("RUST_LOG".into(), "trace".into()));
    let file2 = failing.task_file(
        "task.json",
        &task_for(
            &env,
            &format!("{task_id}-bad"),
            &[format!("{db}.*")],
            json!({}),
        ),
    );
    let out = failing.migrate(&file2).await;
    assert!(!out.success(), "a wrong password must fail");
    assert_absent(out.all().as_bytes(), &password, "a failed run's output");

    for f in [&ferry, &failing] {
        for entry in std::fs::read_dir(&f.state_dir).expect("state dir") {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            assert_absent(&bytes, &password, &path.display().to_string());
        }
    }
    admin_exec(&env, Side::Source, &[format!("DROP USER '{su}'@'%'")]).await;
    admin_exec(&env, Side::Target, &[format!("DROP USER '{tu}'@'%'")]).await;
    drop_everywhere(&env, &db).await;
}

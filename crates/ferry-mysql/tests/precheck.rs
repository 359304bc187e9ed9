//! Prechecks against the real test servers (`scripts/testenv up`). Missing
//! grants are tested with throwaway users created by the admin connection and
//! dropped at the end; each failed item's fix is run and the check passes.

use std::collections::BTreeSet;

use ferry_core::model::{CheckItem, CheckStatus};
use ferry_core::secret::Redacted;
use ferry_core::task::TaskSpec;
use ferry_core::FerryError;
use ferry_mysql::precheck::{
    check_source, check_tables, check_tables_planned, check_target, merge,
};
use ferry_mysql::{qualified, quote_ident, Endpoint};
use ferry_testkit::{drop_db, env, exec, on_both_targets, recreate_db, unique_name, Side, TestEnv};
use mysql_async::prelude::*;

fn spec(include: &[&str], types: &str, rename: Option<(&str, &str)>) -> TaskSpec {
    let rename = rename
        .map(|(a, b)| format!(r#","rename":{{"{a}":"{b}"}}"#))
        .unwrap_or_default();
    let include: Vec<String> = include.iter().map(|p| format!("\"{p}\"")).collect();
    TaskSpec::from_json(&format!(
        r#"{{"task_id":"pc","source":{{"secret":"test-source"}},"target":{{"secret":"test-target","dialect":"mariadb"}},
           "types":{types},"objects":{{"include":[{}]{rename}}}}}"#,
        include.join(",")
    ))
    .unwrap()
}

fn find<'a>(items: &'a [CheckItem], check: &str, subject: &str) -> &'a CheckItem {
    items
        .iter()
        .find(|i| i.check == check && i.subject == subject)
        .unwrap_or_else(|| panic!("no item {check} ({subject}) in:\n{items:#?}"))
}

fn failed(items: &[CheckItem]) -> Vec<&CheckItem> {
    items
        .iter()
        .filter(|i| i.status == CheckStatus::Fail)
        .collect()
}

fn assert_status(items: &[CheckItem], check: &str, subject: &str, want: CheckStatus) -> CheckItem {
    let i = find(items, check, subject);
    assert_eq!(i.status, want, "{i:#?}");
    i.clone()
}

fn assert_no_secret(items: &[CheckItem], secrets: &[&str]) {
    let text = serde_json::to_string(items).unwrap();
    for s in secrets {
        assert!(
            !text.contains(s),
            "a password leaked into the items: {text}"
        );
    }
}

/// An endpoint for `user`/`password` on one side.
fn endpoint_as(te: &TestEnv, side: Side, user: &str, password: &str) -> Endpoint {
    let mut ep = te.endpoint(side, false);
    ep.secret.username = user.to_string();
    ep.secret.password = Redacted::new(password.to_string());
    ep
}

/// A throwaway user on one side with the given grants; drop it with [`drop_user`].
async fn temp_user(te: &TestEnv, side: Side, grants: &[String]) -> (String, Endpoint) {
    let user = unique_name("ferry_pc");
    let password = unique_name("pw");
    let mut admin = te.admin(side).await;
    exec(
        &mut admin,
        &format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"),
    )
    .await;
    for g in grants {
        exec(&mut admin, &format!("GRANT {g} TO '{user}'@'%'")).await;
    }
    (user.clone(), endpoint_as(te, side, &user, &password))
}

async fn drop_user(te: &TestEnv, side: Side, user: &str) {
    exec(
        &mut te.admin(side).await,
        &format!("DROP USER IF EXISTS '{user}'@'%'"),
    )
    .await;
}

async fn run_fix(te: &TestEnv, side: Side, item: &CheckItem) {
    let fix = item
        .fix
        .as_deref()
        .unwrap_or_else(|| panic!("no fix in {item:#?}"));
    exec(&mut te.admin(side).await, fix.trim_end_matches(';')).await;
}

async fn source_db(te: &TestEnv, ddl: &[&str]) -> String {
    let db = unique_name("pc_src");
    let mut c = te.admin(Side::Source).await;
    recreate_db(&mut c, &db).await;
    for sql in ddl {
        exec(&mut c, &sql.replace("{db}", &quote_ident(&db))).await;
    }
    db
}

async fn tables_of(te: &TestEnv, side: Side, db: &str) -> Vec<String> {
    te.admin(side)
        .await
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            (db,),
        )
        .await
        .unwrap()
}

async fn db_exists(te: &TestEnv, side: Side, db: &str) -> bool {
    let n: Option<String> = te
        .admin(side)
        .await
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (db,),
        )
        .await
        .unwrap();
    n.is_some()
}

const ORDERS: &str =
    "CREATE TABLE {db}.orders (id BIGINT PRIMARY KEY, note VARCHAR(20) CHARACTER SET latin1)";
const ITEMS: &str = "CREATE TABLE {db}.items (sku VARCHAR(10) NOT NULL, qty INT, UNIQUE KEY (sku))";

#[tokio::test]
async fn all_pass_with_the_migration_users_and_only_the_probe_is_written() {
    let te = env();
    let src = source_db(
        &te,
        &[ORDERS, ITEMS, "INSERT INTO {db}.orders VALUES (1, 'a')"],
    )
    .await;
    let tgt = unique_name("pc_tgt");
    let missing_tgt = unique_name("pc_tgt_missing");
    recreate_db(&mut te.admin(Side::Target).await, &tgt).await;
    let mut s = spec(
        &[&format!("{src}.*"), &format!("{src}.orders")],
        r#"["schema","full","incremental","verify"]"#,
        Some((&src, &tgt)),
    );
    s.objects
        .rename
        .insert(format!("{src}.items"), format!("{missing_tgt}.items"));
    let (sep, tep) = (
        te.endpoint(Side::Source, false),
        te.endpoint(Side::Target, false),
    );

    let (a, b, c) = tokio::join!(
        check_source(&sep, &s),
        check_target(&tep, &s),
        check_tables(&sep, &tep, &s)
    );
    let items = merge(vec![a, b, c]);

    assert!(failed(&items).is_empty(), "{items:#?}");
    for check in [
        "source.binlog_format",
        "source.binlog_row_metadata",
        "source.replication_slave",
        "source.binlog_monitor",
    ] {
        assert_status(&items, check, "source", CheckStatus::Pass);
    }
    let probed = assert_status(&items, "target.write_privileges", &tgt, CheckStatus::Pass);
    assert!(probed.message.contains("probe table"), "{probed:?}");
    let granted = assert_status(
        &items,
        "target.write_privileges",
        &missing_tgt,
        CheckStatus::Pass,
    );
    assert!(granted.message.contains("SHOW GRANTS"), "{granted:?}");
    assert_status(
        &items,
        "table.key",
        &format!("{src}.items"),
        CheckStatus::Pass,
    );
    assert_status(
        &items,
        "objects.include",
        &format!("{src}.*"),
        CheckStatus::Pass,
    );
    assert_no_secret(
        &items,
        &[&te.source_password, &te.target_password, &te.admin_password],
    );
    // Nothing stays behind on the target: the probe table is dropped, no database is created.
    assert!(tables_of(&te, Side::Target, &tgt).await.is_empty());
    assert!(!db_exists(&te, Side::Target, &missing_tgt).await);

    drop_db(&mut te.admin(Side::Source).await, &src).await;
    drop_db(&mut te.admin(Side::Target).await, &tgt).await;
}

/// One side's check with a wrong (distinctive) password for its migration
/// user: the `<role>.connect` item fails naming user, host, port and secret,
/// its fix is to update the secret, and no password is in the items.
async fn check_a_wrong_password(te: &TestEnv, side: Side) -> (Endpoint, String, Vec<CheckItem>) {
    let (role, user, password, port) = match side {
        Side::Source => (
            "source",
            &te.source_user,
            &te.source_password,
            te.source_port,
        ),
        Side::Target => (
            "target",
            &te.target_user,
            &te.target_password,
            te.target_port,
        ),
    };
    let wrong = unique_name("not-the-password");
    let ep = endpoint_as(te, side, user, &wrong);
    let s = spec(&["shop.*"], r#"["full"]"#, None);
    let items = match side {
        Side::Source => check_source(&ep, &s).await,
        Side::Target => check_target(&ep, &s).await,
    };
    let i = assert_status(&items, &format!("{role}.connect"), role, CheckStatus::Fail);
    let at = format!("access denied for {user}@{}:{port}", te.host);
    assert!(i.message.contains(&at), "{i:#?}");
    assert!(
        i.message.contains(&format!("secret \"test-{role}\"")),
        "{i:#?}"
    );
    assert_eq!(
        i.fix.as_deref(),
        Some(format!("update secret \"test-{role}\" with the user's password").as_str())
    );
    assert_no_secret(&items, &[&wrong, password]);
    (ep, wrong, items)
}

#[tokio::test]
async fn wrong_password_names_user_host_and_secret_but_not_the_password() {
    let (_, _, items) = check_a_wrong_password(&env(), Side::Source).await;
    assert_eq!(
        items.len(),
        1,
        "nothing else is checked without a connection: {items:#?}"
    );
}

on_both_targets!(
    a_wrong_target_password_names_user_host_and_secret_but_not_the_password,
    super::a_wrong_target_password_names_user_host_and_secret_but_not_the_password
);
async fn a_wrong_target_password_names_user_host_and_secret_but_not_the_password(te: TestEnv) {
    let (ep, wrong, _) = check_a_wrong_password(&te, Side::Target).await;
    // A stage's connection says the same, without the password.
    match ep.connect().await.err() {
        Some(e @ FerryError::ConnectFailed(_)) => {
            let m = e.to_string();
            assert!(
                m.contains("access denied") && m.contains("\"test-target\""),
                "{m}"
            );
            assert!(
                !m.contains(&wrong) && !m.contains(&te.target_password),
                "{m}"
            );
        }
        other => panic!("expected a ConnectFailed error, got {other:?}"),
    }
}

/// A task that says `"dialect": "oceanbase"` for a server that is not
/// OceanBase: the server refuses the OceanBase session setting (1193), and
/// the precheck and a stage's connection both name the field to fix.
#[tokio::test]
async fn an_oceanbase_dialect_for_another_server_names_the_field() {
    let te = env();
    let ep = te.endpoint(Side::Target, false).oceanbase(true);
    let items = check_target(&ep, &spec(&["shop.*"], r#"["full"]"#, None)).await;
    let i = assert_status(&items, "target.connect", "target", CheckStatus::Fail);
    assert!(i.message.contains("is not an OceanBase server"), "{i:#?}");
    assert!(
        i.fix
            .as_deref()
            .unwrap_or_default()
            .contains("\"dialect\" of the task's target"),
        "{i:#?}"
    );
    match ep.connect().await.err() {
        Some(FerryError::BadTask(m)) => assert!(m.contains("\"dialect\": \"oceanbase\""), "{m}"),
        other => panic!("expected a BadTask refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_host_names_the_host_and_the_secret_field() {
    let te = env();
    let mut ep = te.endpoint(Side::Target, false);
    ep.secret.host = "nonexistent.invalid".into();
    let items = check_target(&ep, &spec(&["shop.*"], r#"["full"]"#, None)).await;
    let i = assert_status(&items, "target.connect", "target", CheckStatus::Fail);
    assert!(
        i.message
            .starts_with("unknown host \"nonexistent.invalid\""),
        "{i:#?}"
    );
    assert!(
        i.fix
            .as_deref()
            .unwrap()
            .contains("field \"host\" of secret \"test-target\""),
        "{i:#?}"
    );
}

#[tokio::test]
async fn refused_port_says_nothing_listens() {
    let te = env();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut ep = te.endpoint(Side::Source, false);
    ep.secret.host = "127.0.0.1".into();
    ep.secret.port = port;
    let items = check_source(&ep, &spec(&["shop.*"], r#"["full"]"#, None)).await;
    let i = assert_status(&items, "source.connect", "source", CheckStatus::Fail);
    assert!(
        i.message
            .contains(&format!("connection refused by 127.0.0.1:{port}")),
        "{i:#?}"
    );
    assert!(
        i.fix.as_deref().unwrap().contains("field \"port\""),
        "{i:#?}"
    );
}

#[tokio::test]
async fn missing_select_grant_is_fixed_by_its_statement() {
    let te = env();
    let src = source_db(&te, &[ORDERS, ITEMS]).await;
    let tep = te.endpoint(Side::Target, false);
    let s = spec(&[&format!("{src}.*")], r#"["schema","full"]"#, None);

    // No privilege at all: the tables are invisible, so the pattern matches nothing.
    let (user, ep) = temp_user(&te, Side::Source, &[]).await;
    let items = check_tables(&ep, &tep, &s).await;
    let i = assert_status(
        &items,
        "objects.include",
        &format!("{src}.*"),
        CheckStatus::Fail,
    );
    assert_eq!(
        i.fix.as_deref(),
        Some(format!("GRANT SELECT ON `{src}`.* TO '{user}'@'%';").as_str())
    );
    run_fix(&te, Side::Source, &i).await;
    let items = check_tables(&ep, &tep, &s).await;
    assert_status(
        &items,
        "objects.include",
        &format!("{src}.*"),
        CheckStatus::Pass,
    );
    assert_status(
        &items,
        "source.select",
        &format!("{src}.orders"),
        CheckStatus::Pass,
    );
    drop_user(&te, Side::Source, &user).await;

    // A visible table (INSERT granted) that cannot be read.
    let orders = qualified(&src, "orders");
    let (user, ep) = temp_user(&te, Side::Source, &[format!("INSERT ON {orders}")]).await;
    let s = spec(&[&format!("{src}.orders")], r#"["schema","full"]"#, None);
    let items = check_tables(&ep, &tep, &s).await;
    let i = assert_status(
        &items,
        "source.select",
        &format!("{src}.orders"),
        CheckStatus::Fail,
    );
    assert_eq!(
        i.fix.as_deref(),
        Some(format!("GRANT SELECT ON {orders} TO '{user}'@'%';").as_str())
    );
    run_fix(&te, Side::Source, &i).await;
    assert!(failed(&check_tables(&ep, &tep, &s).await).is_empty());
    drop_user(&te, Side::Source, &user).await;

    drop_db(&mut te.admin(Side::Source).await, &src).await;
}

#[tokio::test]
async fn a_pattern_that_matches_nothing_fails() {
    let te = env();
    let src = source_db(&te, &[ORDERS]).await;
    let s = spec(
        &[&format!("{src}.nope"), &format!("{src}.orders")],
        r#"["schema","full"]"#,
        None,
    );
    let items = check_tables(
        &te.endpoint(Side::Source, false),
        &te.endpoint(Side::Target, false),
        &s,
    )
    .await;
    let i = assert_status(
        &items,
        "objects.include",
        &format!("{src}.nope"),
        CheckStatus::Fail,
    );
    assert_eq!(
        i.message,
        format!("objects.include pattern \"{src}.nope\" matches no table on the source")
    );
    assert_eq!(failed(&items).len(), 1, "{items:#?}");
    drop_db(&mut te.admin(Side::Source).await, &src).await;
}

/// A row filter must run on the source, and with incremental sync on the
/// target too, over the table's own columns: a typo fails on the source, a
/// filter that reads another table fails on the target (it has no such table
/// while the changed rows are judged), and a good one passes.
#[tokio::test]
async fn row_filters_are_tried_where_they_run() {
    let te = env();
    let src = source_db(&te, &[ORDERS, ITEMS]).await;
    let tgt = unique_name("pc_tgt_filter");
    recreate_db(&mut te.admin(Side::Target).await, &tgt).await;
    let check = |types: &str, filter: &str| {
        let mut s = spec(&[&format!("{src}.orders")], types, Some((&src, &tgt)));
        s.objects
            .filters
            .insert(format!("{src}.orders"), filter.to_string());
        let (sep, tep) = (
            te.endpoint(Side::Source, false),
            te.endpoint(Side::Target, false),
        );
        async move { check_tables(&sep, &tep, &s).await }
    };
    let subject = format!("{src}.orders");
    let full = r#"["schema","full"]"#;
    let cdc = r#"["schema","full","incremental"]"#;

    let items = check(cdc, "id > 10 AND note LIKE 'a%'").await;
    let i = assert_status(&items, "objects.filters", &subject, CheckStatus::Pass);
    assert!(
        i.message.contains("the source and the target accept"),
        "{i:#?}"
    );

    let items = check(full, "id >> 10 AND").await;
    let i = assert_status(&items, "objects.filters", &subject, CheckStatus::Fail);
    assert!(
        i.message
            .starts_with("the source rejects the row filter (id >> 10 AND)"),
        "{i:#?}"
    );
    assert_eq!(
        i.fix.as_deref(),
        Some(format!("correct the condition for \"{subject}\" in objects.filters").as_str())
    );

    let other = format!("id IN (SELECT qty FROM {})", qualified(&src, "items"));
    let items = check(full, &other).await;
    assert_status(&items, "objects.filters", &subject, CheckStatus::Pass);
    let items = check(cdc, &other).await;
    let i = assert_status(&items, "objects.filters", &subject, CheckStatus::Fail);
    assert!(
        i.message.starts_with("the target rejects the row filter"),
        "{i:#?}"
    );
    assert_eq!(failed(&items).len(), 1, "{items:#?}");

    drop_db(&mut te.admin(Side::Source).await, &src).await;
    drop_db(&mut te.admin(Side::Target).await, &tgt).await;
}

/// A table without a key, with `objects.keys`: the declared columns must
/// exist, hold no NULL and no repeated value (each found and named, then
/// fixed), an index on them is advised, a table with its own key keeps it,
/// and a target table that already exists must enforce the key.
#[tokio::test]
async fn a_declared_key_is_proven_unique_and_not_null() {
    let te = env();
    let src = source_db(
        &te,
        &[
            "CREATE TABLE {db}.log (at DATETIME NOT NULL, seq INT NULL, msg TEXT)",
            "INSERT INTO {db}.log VALUES ('2024-01-01 00:00:00', 1, 'a'), ('2024-01-01 00:00:00', 1, 'b'), \
             ('2024-01-02 00:00:00', NULL, 'c')",
            ORDERS,
        ],
    )
    .await;
    let tgt = unique_name("pc_tgt_keys");
    let mut admin_src = te.admin(Side::Source).await;
    let mut admin_tgt = te.admin(Side::Target).await;
    recreate_db(&mut admin_tgt, &tgt).await;
    let check = |keys: &[(&str, &[&str])]| {
        let mut s = spec(
            &[&format!("{src}.*")],
            r#"["schema","full","incremental"]"#,
            Some((&src, &tgt)),
        );
        for (t, cols) in keys {
            s.objects.keys.insert(
                format!("{src}.{t}"),
                cols.iter().map(|c| c.to_string()).collect(),
            );
        }
        let (sep, tep) = (
            te.endpoint(Side::Source, false),
            te.endpoint(Side::Target, false),
        );
        async move { check_tables(&sep, &tep, &s).await }
    };
    let log = format!("{src}.log");
    let q = qualified(&src, "log");

    let i = assert_status(
        &check(&[("log", &["at", "sequence"])]).await,
        "table.key",
        &log,
        CheckStatus::Fail,
    );
    assert!(
        i.message.contains("declares column(s) sequence that"),
        "{i:#?}"
    );

    let i = assert_status(
        &check(&[("log", &["at", "seq"])]).await,
        "table.key",
        &log,
        CheckStatus::Fail,
    );
    assert!(i.message.contains("holds NULL in some rows"), "{i:#?}");
    exec(
        &mut admin_src,
        &format!("UPDATE {q} SET seq = 2 WHERE seq IS NULL"),
    )
    .await;

    let i = assert_status(
        &check(&[("log", &["at", "seq"])]).await,
        "table.key",
        &log,
        CheckStatus::Fail,
    );
    assert!(
        i.message
            .contains("is not unique: (2024-01-01 00:00:00, 1) appears in 2 rows"),
        "{i:#?}"
    );
    exec(
        &mut admin_src,
        &format!("UPDATE {q} SET seq = 3 WHERE msg = 'b'"),
    )
    .await;

    let i = assert_status(
        &check(&[("log", &["at", "seq"])]).await,
        "table.key",
        &log,
        CheckStatus::Warn,
    );
    assert!(i.message.contains("no index starts with it"), "{i:#?}");
    run_fix(&te, Side::Source, &i).await;
    let items = check(&[("log", &["at", "seq"]), ("orders", &["note"])]).await;
    let i = assert_status(&items, "table.key", &log, CheckStatus::Pass);
    assert!(i.message.contains("the target gets a unique key"), "{i:#?}");
    let i = assert_status(
        &items,
        "table.key",
        &format!("{src}.orders"),
        CheckStatus::Warn,
    );
    assert!(
        i.message
            .contains("Ferry uses it, not the columns objects.keys declares"),
        "{i:#?}"
    );

    // A target table made beforehand must have the unique key itself.
    exec(
        &mut admin_tgt,
        &format!(
            "CREATE TABLE {} (at DATETIME NOT NULL, seq INT NULL, msg TEXT)",
            qualified(&tgt, "log")
        ),
    )
    .await;
    let items = check(&[("log", &["at", "seq"])]).await;
    let i = assert_status(&items, "target.declared_key", &log, CheckStatus::Fail);
    run_fix(&te, Side::Target, &i).await;
    let items = check(&[("log", &["at", "seq"])]).await;
    assert_status(&items, "target.declared_key", &log, CheckStatus::Pass);
    assert!(failed(&items).is_empty(), "{items:#?}");

    // The reverse link writes the source: it must enforce the key too.
    let mut s = spec(
        &[&log],
        r#"["schema","full","incremental","reverse"]"#,
        Some((&src, &tgt)),
    );
    s.objects
        .keys
        .insert(log.clone(), vec!["at".into(), "seq".into()]);
    let (sep, tep) = (
        te.endpoint(Side::Source, false),
        te.endpoint(Side::Target, false),
    );
    let i = assert_status(
        &check_tables(&sep, &tep, &s).await,
        "source.declared_key",
        &log,
        CheckStatus::Fail,
    );
    assert!(
        i.message.contains("the reverse link applies changes by it"),
        "{i:#?}"
    );
    run_fix(&te, Side::Source, &i).await;
    let items = check_tables(&sep, &tep, &s).await;
    assert_status(&items, "source.declared_key", &log, CheckStatus::Pass);
    assert_status(&items, "table.key", &log, CheckStatus::Pass);

    drop_db(&mut admin_src, &src).await;
    drop_db(&mut admin_tgt, &tgt).await;
}

#[tokio::test]
async fn a_table_without_a_key_fails_and_its_fix_works() {
    let te = env();
    let src = source_db(
        &te,
        &[
            "CREATE TABLE {db}.bare (a INT, b INT)",
            "CREATE TABLE {db}.nullable_unique (u INT NULL, v INT, UNIQUE KEY (u))",
        ],
    )
    .await;
    let s = spec(&[&format!("{src}.*")], r#"["schema","full"]"#, None);
    let (sep, tep) = (
        te.endpoint(Side::Source, false),
        te.endpoint(Side::Target, false),
    );
    let items = check_tables(&sep, &tep, &s).await;
    let bare = assert_status(
        &items,
        "table.key",
        &format!("{src}.bare"),
        CheckStatus::Fail,
    );
    assert!(bare.message.contains("no primary key"), "{bare:#?}");
    assert!(
        bare.fix
            .as_deref()
            .unwrap()
            .contains("INVISIBLE PRIMARY KEY"),
        "{bare:#?}"
    );
    let nu = assert_status(
        &items,
        "table.key",
        &format!("{src}.nullable_unique"),
        CheckStatus::Fail,
    );
    assert!(
        nu.fix.as_deref().unwrap().contains("ADD PRIMARY KEY (`u`)"),
        "{nu:#?}"
    );
    run_fix(&te, Side::Source, &bare).await;
    run_fix(&te, Side::Source, &nu).await;
    let items = check_tables(&sep, &tep, &s).await;
    assert!(failed(&items).is_empty(), "{items:#?}");
    drop_db(&mut te.admin(Side::Source).await, &src).await;
}

on_both_targets!(
    target_tables_must_be_empty_unless_planned_and_have_the_same_columns,
    super::target_tables_must_be_empty_unless_planned_and_have_the_same_columns
);
async fn target_tables_must_be_empty_unless_planned_and_have_the_same_columns(te: TestEnv) {
    let src = source_db(&te, &[ORDERS, ITEMS]).await;
    let tgt = unique_name("pc_tgt");
    let mut t = te.admin(Side::Target).await;
    recreate_db(&mut t, &tgt).await;
    let q = quote_ident(&tgt);
    exec(
        &mut t,
        &format!("CREATE TABLE {q}.orders (id BIGINT PRIMARY KEY, note VARCHAR(20))"),
    )
    .await;
    exec(&mut t, &format!("INSERT INTO {q}.orders VALUES (7, 'old')")).await;
    exec(
        &mut t,
        &format!("CREATE TABLE {q}.items (sku VARCHAR(10) NOT NULL PRIMARY KEY, price INT)"),
    )
    .await;
    let s = spec(
        &[&format!("{src}.*")],
        r#"["schema","full"]"#,
        Some((&src, &tgt)),
    );
    let (sep, tep) = (
        te.endpoint(Side::Source, false),
        te.endpoint(Side::Target, false),
    );

    let items = check_tables(&sep, &tep, &s).await;
    let i = assert_status(
        &items,
        "target.table_empty",
        &format!("{src}.orders"),
        CheckStatus::Fail,
    );
    assert!(
        i.fix
            .as_deref()
            .unwrap()
            .contains(&format!("TRUNCATE TABLE {q}.`orders`")),
        "{i:#?}"
    );
    assert_status(
        &items,
        "target.columns",
        &format!("{src}.orders"),
        CheckStatus::Pass,
    );
    let cols = assert_status(
        &items,
        "target.columns",
        &format!("{src}.items"),
        CheckStatus::Fail,
    );
    assert!(
        cols.message.contains("missing [\"qty\"]") && cols.message.contains("extra [\"price\"]"),
        "{cols:#?}"
    );

    // A rerun of the task that planned (and copied into) orders passes that item.
    let planned: BTreeSet<String> = [format!("{src}.orders")].into_iter().collect();
    let items = check_tables_planned(&sep, &tep, &s, &planned).await;
    assert_status(
        &items,
        "target.table_empty",
        &format!("{src}.orders"),
        CheckStatus::Pass,
    );

    drop_db(&mut te.admin(Side::Source).await, &src).await;
    drop_db(&mut t, &tgt).await;
}

#[tokio::test]
async fn missing_replication_grants_are_named_and_fixed() {
    let te = env();
    let (user, ep) = temp_user(&te, Side::Source, &["SELECT ON *.*".into()]).await;
    let s = spec(&["shop.*"], r#"["full","incremental"]"#, None);
    let items = check_source(&ep, &s).await;
    let monitor = assert_status(&items, "source.binlog_monitor", "source", CheckStatus::Fail);
    assert_eq!(
        monitor.fix.as_deref(),
        Some(format!("GRANT BINLOG MONITOR ON *.* TO '{user}'@'%';").as_str())
    );
    let slave = assert_status(
        &items,
        "source.replication_slave",
        "source",
        CheckStatus::Fail,
    );
    assert_eq!(
        slave.fix.as_deref(),
        Some(format!("GRANT REPLICATION SLAVE ON *.* TO '{user}'@'%';").as_str())
    );
    assert_status(&items, "source.reload", "source", CheckStatus::Pass);
    assert_status(
        &items,
        "source.write_privileges",
        "ferry_meta",
        CheckStatus::Fail,
    );
    run_fix(&te, Side::Source, &monitor).await;
    run_fix(&te, Side::Source, &slave).await;
    let items = check_source(&ep, &s).await;
    assert_status(&items, "source.binlog_monitor", "source", CheckStatus::Pass);
    assert_status(
        &items,
        "source.replication_slave",
        "source",
        CheckStatus::Pass,
    );
    drop_user(&te, Side::Source, &user).await;
}

on_both_targets!(
    target_write_probe_finds_a_missing_grant_and_leaves_nothing_behind,
    super::target_write_probe_finds_a_missing_grant_and_leaves_nothing_behind
);
async fn target_write_probe_finds_a_missing_grant_and_leaves_nothing_behind(te: TestEnv) {
    let tgt = unique_name("pc_tgt");
    recreate_db(&mut te.admin(Side::Target).await, &tgt).await;
    let (user, ep) = temp_user(
        &te,
        Side::Target,
        &[format!("SELECT ON {}.*", quote_ident(&tgt))],
    )
    .await;
    let s = spec(&["shop.*"], r#"["schema","full"]"#, Some(("shop", &tgt)));
    let items = check_target(&ep, &s).await;
    let i = assert_status(&items, "target.write_privileges", &tgt, CheckStatus::Fail);
    assert!(i.message.contains("lacks CREATE"), "{i:#?}");
    let want = format!("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX ON `{tgt}`.* TO '{user}'@'%';");
    assert_eq!(i.fix.as_deref(), Some(want.as_str()));
    run_fix(&te, Side::Target, &i).await;
    let items = check_target(&ep, &s).await;
    assert_status(&items, "target.write_privileges", &tgt, CheckStatus::Pass);
    assert!(
        tables_of(&te, Side::Target, &tgt).await.is_empty(),
        "the probe table was dropped"
    );
    drop_user(&te, Side::Target, &user).await;
    drop_db(&mut te.admin(Side::Target).await, &tgt).await;
}

/// `options.target_binlog: false` is tried at precheck: without BINLOG ADMIN
/// it fails with the GRANT that fixes it, and passes once granted.
#[tokio::test]
async fn skipping_the_target_binlog_needs_binlog_admin() {
    let te = env();
    let tgt = unique_name("pc_nobin");
    let (user, ep) = temp_user(
        &te,
        Side::Target,
        &[format!("ALL ON {}.*", quote_ident(&tgt))],
    )
    .await;
    let mut s = spec(&["shop.*"], r#"["schema","full"]"#, Some(("shop", &tgt)));
    let items = check_target(&ep, &s).await;
    assert!(
        items.iter().all(|i| i.check != "target.skip_binlog"),
        "not checked while target_binlog is true: {items:#?}"
    );
    s.options.target_binlog = false;
    let items = check_target(&ep, &s).await;
    let i = assert_status(
        &items,
        "target.skip_binlog",
        "sql_log_bin",
        CheckStatus::Fail,
    );
    assert!(i.message.contains("options.target_binlog"), "{i:#?}");
    assert_eq!(
        i.fix.as_deref(),
        Some(format!("GRANT BINLOG ADMIN ON *.* TO '{user}'@'%';").as_str())
    );
    run_fix(&te, Side::Target, &i).await;
    let items = check_target(&ep, &s).await;
    assert_status(
        &items,
        "target.skip_binlog",
        "sql_log_bin",
        CheckStatus::Pass,
    );
    drop_user(&te, Side::Target, &user).await;
}

#[tokio::test]
async fn reverse_is_checked_at_the_start() {
    let te = env();
    let src = source_db(&te, &[ORDERS]).await;
    let tgt = unique_name("pc_tgt");
    let s = spec(
        &[&format!("{src}.*")],
        r#"["schema","full","incremental","reverse"]"#,
        Some((&src, &tgt)),
    );
    // A source user that may only read: the reverse link could not write back.
    let (ro_user, sep) = temp_user(
        &te,
        Side::Source,
        &["SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.*".to_string()],
    )
    .await;
    let tep = te.endpoint(Side::Target, false);
    let (b, c) = tokio::join!(check_target(&tep, &s), check_tables(&sep, &tep, &s));
    for check in [
        "target.log_bin",
        "target.binlog_format",
        "target.binlog_row_image",
        "target.binlog_row_metadata",
    ] {
        assert_status(&b, check, "target", CheckStatus::Pass);
    }
    assert_status(&b, "target.replication_slave", "target", CheckStatus::Pass);
    let i = assert_status(
        &c,
        "source.reverse_write",
        &format!("{src}.orders"),
        CheckStatus::Fail,
    );
    let want = format!("GRANT INSERT, UPDATE, DELETE ON `{src}`.`orders` TO '{ro_user}'@'%';");
    assert_eq!(i.fix.as_deref(), Some(want.as_str()));
    drop_user(&te, Side::Source, &ro_user).await;
    drop_db(&mut te.admin(Side::Source).await, &src).await;
}

/// A unique key whose collation the target lacks: OceanBase (seekdb) has
/// utf8mb4_general_ci where the source has utf8mb4_unicode_ci, and under
/// general_ci 'ß' equals 's', which unicode_ci keeps apart. The precheck
/// finds the two rows before the copy would fail on them; a key whose values
/// stay distinct passes.
#[tokio::test]
async fn a_unique_key_whose_values_collide_under_the_target_collation_fails() {
    let te = env().oceanbase();
    let src = source_db(
        &te,
        &[
            "CREATE TABLE {db}.words (id INT PRIMARY KEY, w VARCHAR(10) CHARACTER SET utf8mb4 \
             COLLATE utf8mb4_unicode_ci NOT NULL, UNIQUE KEY uw (w))",
            "INSERT INTO {db}.words VALUES (1, 's'), (2, 'ß')",
            "CREATE TABLE {db}.tags (id INT PRIMARY KEY, t VARCHAR(10) CHARACTER SET utf8mb4 \
             COLLATE utf8mb4_unicode_ci NOT NULL, UNIQUE KEY ut (t))",
            "INSERT INTO {db}.tags VALUES (1, 'a'), (2, 'b')",
        ],
    )
    .await;
    let tgt = unique_name("pc_tgt");
    let s = TaskSpec::from_json(&format!(
        r#"{{"task_id":"pc","source":{{"secret":"test-source"}},"target":{{"secret":"test-target","dialect":"oceanbase"}},
           "types":["schema","full"],"objects":{{"include":["{src}.*"],"rename":{{"{src}":"{tgt}"}}}}}}"#
    ))
    .unwrap();
    let items = check_tables(
        &te.endpoint(Side::Source, false),
        &te.endpoint(Side::Target, false),
        &s,
    )
    .await;

    let collided = assert_status(
        &items,
        "target.collation",
        &format!("{src}.words"),
        CheckStatus::Fail,
    );
    assert!(
        collided.message.contains("unique key uw")
            && collided.message.contains("w -> utf8mb4_general_ci"),
        "{collided:#?}"
    );
    assert!(
        collided.fix.as_deref().is_some_and(|f| f.contains(&tgt)),
        "the fix names the target table: {collided:#?}"
    );
    let distinct = assert_status(
        &items,
        "target.collation",
        &format!("{src}.tags"),
        CheckStatus::Pass,
    );
    assert!(distinct.message.contains("unique key ut"), "{distinct:#?}");
    drop_db(&mut te.admin(Side::Source).await, &src).await;
}

/// A task that says `"dialect": "mariadb"` for an OceanBase server would
/// translate its schema and write its sync by MariaDB's rules while the copy
/// follows the server: the precheck names the field and its value. The same
/// task against the MariaDB target has no such item.
#[tokio::test]
async fn another_dialect_for_an_oceanbase_server_names_the_field() {
    let ob = env().oceanbase();
    let src = source_db(&ob, &[ORDERS]).await;
    let s = spec(&[&format!("{src}.*")], r#"["schema","full"]"#, None);
    let items = check_tables(
        &ob.endpoint(Side::Source, false),
        &ob.endpoint(Side::Target, false),
        &s,
    )
    .await;
    let wrong = assert_status(&items, "target.dialect", "target", CheckStatus::Fail);
    assert!(
        wrong.message.contains("OceanBase") && wrong.message.contains("\"dialect\" is \"mariadb\""),
        "{wrong:#?}"
    );
    assert!(
        wrong
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("\"dialect\": \"oceanbase\"")),
        "{wrong:#?}"
    );

    let maria = env();
    let items = check_tables(
        &maria.endpoint(Side::Source, false),
        &maria.endpoint(Side::Target, false),
        &s,
    )
    .await;
    assert!(
        items.iter().all(|i| i.check != "target.dialect"),
        "{items:#?}"
    );
    drop_db(&mut ob.admin(Side::Source).await, &src).await;
}

use super::*;
use std::collections::BTreeMap;

use ferry_core::model::{CheckItem, CheckStatus};
use ferry_core::task::TaskSpec;

use crate::conn::ServerInfo;

use super::grants::{granted, has_privilege, Account};
use super::server::{
    evaluate_binlog, evaluate_version, gtid_item, retention_item, BinlogNeed, BINLOG_SETTINGS,
};
use super::target::target_databases;

fn mariadb(v: (u16, u16, u16)) -> ServerInfo {
    ServerInfo {
        version: format!("{}.{}.{}-MariaDB", v.0, v.1, v.2),
        is_mariadb: true,
        number: v,
    }
}

fn mysql(v: (u16, u16, u16)) -> ServerInfo {
    ServerInfo {
        version: format!("{}.{}.{}", v.0, v.1, v.2),
        is_mariadb: false,
        number: v,
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn good() -> BTreeMap<String, String> {
    vars(&[
        ("log_bin", "ON"),
        ("binlog_format", "ROW"),
        ("binlog_row_image", "FULL"),
        ("binlog_row_metadata", "FULL"),
        ("server_id", "1"),
        ("expire_logs_days", "7"),
        ("gtid_binlog_pos", "0-1-5"),
        ("gtid_strict_mode", "OFF"),
    ])
}

fn spec(types: &str) -> TaskSpec {
    TaskSpec::from_json(&format!(
        r#"{{"task_id":"t","source":{{"secret":"s"}},"target":{{"secret":"t"}},"types":{types},
           "objects":{{"include":["shop.*"]}}}}"#
    ))
    .unwrap()
}

fn find<'a>(items: &'a [CheckItem], check: &str) -> &'a CheckItem {
    items
        .iter()
        .find(|i| i.check == check)
        .unwrap_or_else(|| panic!("no {check} in {items:#?}"))
}

#[test]
fn good_settings_pass() {
    let need = BinlogNeed::for_source(&spec(r#"["schema","full","incremental"]"#));
    let items = evaluate_binlog("source", &mariadb((10, 11, 6)), &good(), &need);
    assert!(
        items.iter().all(|i| i.status == CheckStatus::Pass),
        "{items:#?}"
    );
    assert_eq!(items.len(), BINLOG_SETTINGS.len() + 2);
}

#[test]
fn statement_format_fails_for_incremental_and_names_the_fix() {
    let mut v = good();
    v.insert("binlog_format".into(), "STATEMENT".into());
    let need = BinlogNeed::for_source(&spec(r#"["full","incremental"]"#));
    let items = evaluate_binlog("source", &mariadb((10, 11, 6)), &v, &need);
    let i = find(&items, "source.binlog_format");
    assert_eq!(i.status, CheckStatus::Fail);
    assert!(
        i.message.contains("binlog_format is STATEMENT"),
        "{}",
        i.message
    );
    assert!(i.message.contains("\"incremental\""), "{}", i.message);
    let fix = i.fix.as_deref().unwrap();
    assert!(
        fix.starts_with("SET GLOBAL binlog_format = 'ROW';"),
        "{fix}"
    );
    assert!(fix.contains("binlog_format = ROW` under [mysqld]"), "{fix}");
}

#[test]
fn settings_only_warn_for_full_only_tasks_and_say_why() {
    let v = vars(&[
        ("log_bin", "OFF"),
        ("binlog_format", "MIXED"),
        ("binlog_row_image", "MINIMAL"),
        ("server_id", "0"),
    ]);
    let need = BinlogNeed::for_source(&spec(r#"["schema","full"]"#));
    let items = evaluate_binlog("source", &mariadb((10, 11, 6)), &v, &need);
    assert!(
        items.iter().all(|i| i.status == CheckStatus::Warn),
        "{items:#?}"
    );
    let log_bin = find(&items, "source.log_bin");
    assert!(
        log_bin.message.contains("Only a warning"),
        "{}",
        log_bin.message
    );
    assert!(
        log_bin.fix.as_deref().unwrap().contains("restart"),
        "{log_bin:?}"
    );
    assert!(
        items.iter().all(|i| i.check != "source.binlog_retention"),
        "no retention advice for full-only tasks"
    );
}

#[test]
fn row_metadata_only_where_it_exists() {
    let mut v = good();
    v.insert("binlog_row_metadata".into(), "NO_LOG".into());
    let need = BinlogNeed::for_reverse();
    let items = evaluate_binlog("target", &mariadb((10, 11, 6)), &v, &need);
    let i = find(&items, "target.binlog_row_metadata");
    assert_eq!(i.status, CheckStatus::Fail);
    assert!(i
        .fix
        .as_deref()
        .unwrap()
        .starts_with("SET GLOBAL binlog_row_metadata = 'FULL';"));
    for old in [mariadb((10, 4, 30)), mysql((5, 7, 44))] {
        let items = evaluate_binlog("target", &old, &v, &need);
        assert!(
            items
                .iter()
                .all(|i| i.check != "target.binlog_row_metadata"),
            "{old:?}"
        );
    }
    let items = evaluate_binlog("target", &mysql((8, 0, 36)), &vars(&[]), &need);
    assert_eq!(
        find(&items, "target.binlog_row_metadata").status,
        CheckStatus::Fail
    );
}

#[test]
fn retention() {
    let days = |d: &str| {
        let mut v = good();
        v.insert("expire_logs_days".into(), d.into());
        retention_item("source", &v)
    };
    assert_eq!(days("7").status, CheckStatus::Pass);
    assert_eq!(days("1.000000").status, CheckStatus::Pass);
    assert_eq!(days("0.5").status, CheckStatus::Warn);
    let never = days("0");
    assert_eq!(never.status, CheckStatus::Warn);
    assert!(never.message.contains("never purged"), "{}", never.message);
    assert!(never
        .fix
        .as_deref()
        .unwrap()
        .starts_with("SET GLOBAL expire_logs_days"));
    let v = vars(&[
        ("binlog_expire_logs_seconds", "3600"),
        ("expire_logs_days", "0"),
    ]);
    let short = retention_item("source", &v);
    assert_eq!(short.status, CheckStatus::Warn);
    assert!(short
        .fix
        .as_deref()
        .unwrap()
        .starts_with("SET GLOBAL binlog_expire_logs_seconds = 604800;"));
}

#[test]
fn gtid_is_noted_not_required() {
    let i = gtid_item("source", &mysql((8, 0, 36)), &vars(&[("gtid_mode", "OFF")]));
    assert_eq!(i.status, CheckStatus::Pass);
    assert!(i.message.contains("file:pos only"));
}

#[test]
fn versions() {
    let ok = |i: ServerInfo| evaluate_version("source", &i).status;
    assert_eq!(ok(mariadb((10, 3, 0))), CheckStatus::Pass);
    assert_eq!(ok(mariadb((10, 2, 44))), CheckStatus::Warn);
    assert_eq!(ok(mysql((5, 7, 44))), CheckStatus::Pass);
    assert_eq!(ok(mysql((8, 4, 2))), CheckStatus::Pass);
    assert_eq!(ok(mysql((5, 6, 51))), CheckStatus::Warn);
    let ob = ServerInfo {
        version: "5.7.25-OceanBase_CE-v4.2.1.0".into(),
        is_mariadb: false,
        number: (5, 7, 25),
    };
    assert_eq!(ok(ob), CheckStatus::Pass);
}

#[test]
fn grants_are_read_per_database() {
    let g = vec![
        "GRANT SELECT, RELOAD, BINLOG MONITOR, REPLICATION SLAVE ON *.* TO `ferry_src`@`%` IDENTIFIED BY PASSWORD '*AB'"
            .to_string(),
        "GRANT ALL PRIVILEGES ON `ferry_meta`.* TO `ferry_src`@`%`".to_string(),
        "GRANT INSERT, UPDATE (`a`, `b`) ON `shop\\_%`.* TO `ferry_src`@`%`".to_string(),
        "GRANT SELECT ON `x`.`t` TO `ferry_src`@`%`".to_string(),
        "GRANT `some_role` TO `ferry_src`@`%`".to_string(),
    ];
    assert!(has_privilege(&g, "reload", None));
    assert!(!has_privilege(&g, "CREATE", None));
    assert!(has_privilege(&g, "CREATE", Some("ferry_meta")));
    assert!(has_privilege(&g, "UPDATE", Some("shop_eu")));
    assert!(!has_privilege(&g, "UPDATE", Some("shopx")));
    assert!(!has_privilege(&g, "DELETE", Some("x")));
    assert_eq!(
        granted(&g, Some("shop_1"))
            .into_iter()
            .collect::<Vec<_>>()
            .len(),
        6
    );
}

#[test]
fn accounts() {
    let a = Account::parse("ferry@src@10.0.%");
    assert_eq!(
        a,
        Account {
            user: "ferry@src".into(),
            host: "10.0.%".into()
        }
    );
    assert_eq!(
        a.grant("SELECT", "`shop`.*"),
        "GRANT SELECT ON `shop`.* TO 'ferry@src'@'10.0.%';"
    );
}

#[test]
fn target_databases_follow_renames() {
    let mut s = spec(r#"["schema","full"]"#);
    s.objects.include = vec!["shop.*".into(), "crm.customers".into(), "*.log".into()];
    s.objects.rename.insert("shop".into(), "shop2".into());
    s.objects
        .rename
        .insert("crm.customers".into(), "crm_new.clients".into());
    let (dbs, unknown) = target_databases(&s);
    assert_eq!(
        dbs,
        vec!["crm_new".to_string(), "ferry_meta".into(), "shop2".into()]
    );
    assert_eq!(unknown, vec!["*.log".to_string()]);
}

#[test]
fn merge_drops_repeats() {
    let a = fail("source.connect", "source", "x", "y");
    let b = pass("target.connect", "target", "ok");
    assert_eq!(
        merge(vec![vec![a.clone(), b.clone()], vec![a.clone()]]),
        vec![a, b]
    );
}

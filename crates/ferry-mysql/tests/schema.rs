//! Schema reading and translation against the real test servers: every key
//! kind, hostile identifiers, and translated DDL executed on the target.

use ferry_core::task::{Dialect, TaskSpec};
use ferry_mysql::dialect::{caps, translate_for, TargetContext, TranslateOptions};
use ferry_mysql::schema::{
    binlog_position, list_selected_tables, read_indexes, read_table, KeyKind, TableInfo,
};
use ferry_mysql::{qualified, quote_ident};
use ferry_testkit::{drop_db, env, exec, on_both_targets, recreate_db, unique_name, Side, TestEnv};
use mysql_async::Conn;

fn spec(include: &[&str], exclude: &[&str]) -> TaskSpec {
    let list = |v: &[&str]| serde_json::to_string(v).unwrap();
    TaskSpec::from_json(&format!(
        r#"{{"task_id":"s","source":{{"secret":"a"}},"target":{{"secret":"b"}},
           "objects":{{"include":{},"exclude":{}}}}}"#,
        list(include),
        list(exclude)
    ))
    .unwrap()
}

async fn source_db(prefix: &str) -> (String, Conn) {
    let mut admin = env().admin(Side::Source).await;
    let db = unique_name(prefix);
    recreate_db(&mut admin, &db).await;
    (db, admin)
}

async fn migration_source() -> Conn {
    env().endpoint(Side::Source, false).connect().await.unwrap()
}

async fn table(conn: &mut Conn, db: &str, name: &str) -> TableInfo {
    read_table(conn, db, name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{db}.{name} not found"))
}

#[tokio::test]
async fn every_key_kind_is_recognized() {
    let (db, mut admin) = source_db("schema_keys").await;
    for (name, cols) in [
        ("int_pk", "id INT PRIMARY KEY, v TEXT"),
        ("comp_pk", "a INT, b VARCHAR(10), v INT, PRIMARY KEY (b, a)"),
        ("str_pk", "code VARCHAR(64) CHARACTER SET utf8mb4 PRIMARY KEY"),
        (
            "uniq",
            "a INT NULL, b INT NOT NULL, c INT NOT NULL, UNIQUE KEY ua (a), UNIQUE KEY zz (c), UNIQUE KEY bc (b, c)",
        ),
        ("prefix_uniq", "t VARCHAR(200) NOT NULL, UNIQUE KEY p (t(10))"),
        ("no_key", "a INT, b INT, KEY (a)"),
    ] {
        exec(&mut admin, &format!("CREATE TABLE {} ({cols})", qualified(&db, name))).await;
    }
    let mut conn = migration_source().await;
    let key = |t: &TableInfo| (t.key.clone(), t.key_kind);
    let s = |v: &[&str]| Some(v.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    assert_eq!(
        key(&table(&mut conn, &db, "int_pk").await),
        (s(&["id"]), KeyKind::Primary)
    );
    assert_eq!(
        key(&table(&mut conn, &db, "comp_pk").await),
        (s(&["b", "a"]), KeyKind::Primary)
    );
    assert_eq!(
        key(&table(&mut conn, &db, "str_pk").await),
        (s(&["code"]), KeyKind::Primary)
    );
    assert_eq!(
        key(&table(&mut conn, &db, "uniq").await),
        (s(&["c"]), KeyKind::Unique),
        "fewest columns, NOT NULL"
    );
    assert_eq!(
        key(&table(&mut conn, &db, "prefix_uniq").await),
        (None, KeyKind::None),
        "a prefix key does not order rows"
    );
    assert_eq!(
        key(&table(&mut conn, &db, "no_key").await),
        (None, KeyKind::None)
    );
    assert!(read_table(&mut conn, &db, "absent")
        .await
        .unwrap()
        .is_none());

    let t = table(&mut conn, &db, "comp_pk").await;
    assert_eq!(
        t.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["a", "b", "v"]
    );
    assert!(!t.columns[1].nullable && t.columns[2].nullable);
    assert_eq!(t.engine, "InnoDB");
    assert!(
        t.create_sql.starts_with("CREATE TABLE `comp_pk`"),
        "{}",
        t.create_sql
    );
    let idx = read_indexes(&mut conn, &db, "uniq").await.unwrap();
    assert_eq!(
        idx.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        vec!["bc", "ua", "zz"]
    );
    drop_db(&mut admin, &db).await;
}

on_both_targets!(
    hostile_identifiers_and_column_details,
    super::hostile_identifiers_and_column_details
);

/// The dialects a test creates on `e`'s target, and what Ferry knows about it:
/// MariaDB runs the `mariadb` and the `mysql` translation; OceanBase its own,
/// with the capabilities probed from the live server (as the plan stage does).
async fn target_dialects(
    e: &TestEnv,
    target: &mut Conn,
) -> (Vec<Dialect>, Option<caps::TargetCaps>) {
    if e.is_oceanbase() {
        let c = caps::probe(target, "target").await.unwrap();
        (vec![Dialect::Oceanbase], Some(c))
    } else {
        (vec![Dialect::Mariadb, Dialect::Mysql], None)
    }
}

async fn hostile_identifiers_and_column_details(e: TestEnv) {
    let mut admin = e.admin(Side::Source).await;
    let db = format!("{} `q' ü", unique_name("schema host"));
    recreate_db(&mut admin, &db).await;
    let tname = "t `x' ñ \"d\"";
    exec(
        &mut admin,
        &format!(
            "CREATE TABLE {} ({} INT UNSIGNED NOT NULL, {} VARCHAR(10) CHARACTER SET latin1 COLLATE latin1_bin DEFAULT 'a,b)', \
             {} INT AS ({} * 2) VIRTUAL, {} TEXT, PRIMARY KEY ({}, {}))",
            qualified(&db, tname),
            quote_ident("a b"),
            quote_ident("c`d"),
            quote_ident("é'\"g"),
            quote_ident("a b"),
            quote_ident("ключ"),
            quote_ident("a b"),
            quote_ident("c`d"),
        ),
    )
    .await;
    exec(
        &mut admin,
        &format!("CREATE VIEW {} AS SELECT 1 AS x", qualified(&db, "v")),
    )
    .await;
    exec(
        &mut admin,
        &format!(
            "CREATE TABLE {} (id INT PRIMARY KEY)",
            qualified(&db, "skip_me")
        ),
    )
    .await;

    let mut conn = migration_source().await;
    let listed = list_selected_tables(
        &mut conn,
        &spec(&[&format!("{db}.*")], &[&format!("{db}.skip*")]),
    )
    .await
    .unwrap();
    assert_eq!(
        listed,
        vec![(db.clone(), tname.to_string())],
        "views and excluded tables are skipped"
    );
    let t = table(&mut conn, &db, tname).await;
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["a b", "c`d", "é'\"g", "ключ"]);
    assert_eq!(t.key, Some(vec!["a b".to_string(), "c`d".to_string()]));
    let (a, c, g) = (&t.columns[0], &t.columns[1], &t.columns[2]);
    assert!(a.unsigned && a.data_type == "int" && !a.nullable);
    assert_eq!(
        (c.charset.as_deref(), c.collation.as_deref()),
        (Some("latin1"), Some("latin1_bin"))
    );
    assert!(g.generated && !a.generated);
    let view = table(&mut conn, &db, "v").await;
    assert!(view.is_view && view.key.is_none());

    // The translation creates it on the target under a hostile new name, for
    // each dialect the target runs.
    let mut target = e.admin(Side::Target).await;
    let tdb = format!("{} `tgt' ü", unique_name("schema host"));
    recreate_db(&mut target, &tdb).await;
    let (dialects, probed) = target_dialects(&e, &mut target).await;
    for (i, d) in dialects.into_iter().enumerate() {
        let tt = format!("{tname} {i}");
        let ctx = TargetContext {
            version: probed.as_ref().and_then(|c| c.rules_version(d)),
            caps: probed.clone(),
            ..TargetContext::default()
        };
        let tr = translate_for(&t, d, &tdb, &tt, &TranslateOptions::default(), &ctx).unwrap();
        exec(&mut target, &tr.create_sql).await;
        let created = table(&mut target, &tdb, &tt).await;
        if d == Dialect::Oceanbase {
            // OceanBase seekdb has no latin1: `c`d` becomes utf8mb4 with
            // utf8mb4_bin (every latin1 character has a utf8mb4 one, and a
            // binary collation keeps distinct values distinct), which the
            // translation notes. Everything else is as on the source.
            assert!(
                tr.notes.iter().any(|n| n.contains("latin1")),
                "{:?}",
                tr.notes
            );
            let mut want = t.columns.clone();
            want[1].charset = Some("utf8mb4".into());
            want[1].collation = Some("utf8mb4_bin".into());
            assert_eq!(created.columns, want, "{d:?}: {}", tr.create_sql);
        } else {
            assert_eq!(created.columns, t.columns, "{d:?}: {}", tr.create_sql);
        }
        assert_eq!(created.key, t.key);
    }
    drop_db(&mut target, &tdb).await;
    drop_db(&mut admin, &db).await;
}

on_both_targets!(
    translated_tables_are_created_on_the_target,
    super::translated_tables_are_created_on_the_target
);

/// A table with most of what MariaDB can express, translated and created on the
/// target for `mariadb` and (the parts MariaDB also runs) `mysql`, or for
/// `oceanbase` on the OceanBase server; deferred indexes and foreign keys run
/// afterwards.
async fn translated_tables_are_created_on_the_target(e: TestEnv) {
    let (db, mut admin) = source_db("schema_tr").await;
    let q = |t: &str| qualified(&db, t);
    exec(
        &mut admin,
        &format!("CREATE TABLE {} (id INT PRIMARY KEY)", q("parent")),
    )
    .await;
    exec(
        &mut admin,
        &format!(
            "CREATE TABLE {} (
               id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
               u UUID NOT NULL,
               ip INET6,
               j JSON,
               g INT AS (pid * 2) VIRTUAL,
               s INT AS (pid + 1) PERSISTENT,
               txt TEXT DEFAULT 'x',
               d DATETIME(3) DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
               e ENUM('a','b') DEFAULT 'a',
               pid INT,
               name VARCHAR(100) COLLATE utf8mb4_uca1400_ai_ci,
               b BLOB COMPRESSED,
               y VARCHAR(36) DEFAULT UUID(),
               z VARCHAR(5) CHARACTER SET latin1 DEFAULT 'a\\\\b\"',
               PRIMARY KEY (id),
               UNIQUE KEY uu (u),
               KEY k1 (name(10)) COMMENT 'hi',
               FULLTEXT KEY ft (txt),
               CONSTRAINT fk FOREIGN KEY (pid) REFERENCES parent (id) ON DELETE CASCADE,
               CONSTRAINT ck CHECK (pid > 0)
             ) ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=utf8mb3 PAGE_COMPRESSED=1 COMMENT='a ''quoted'' comment'",
            q("rich")
        ),
    )
    .await;
    exec(
        &mut admin,
        &format!(
            "CREATE TABLE {} (id INT PRIMARY KEY, v INT) ENGINE=Aria",
            q("aria")
        ),
    )
    .await;
    exec(
        &mut admin,
        &format!(
            "CREATE TABLE {} (id INT NOT NULL, v INT, PRIMARY KEY (id)) PARTITION BY RANGE (id) \
             (PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN MAXVALUE)",
            q("parted")
        ),
    )
    .await;
    let mut conn = migration_source().await;
    let mut target = e.admin(Side::Target).await;
    let parent = table(&mut conn, &db, "parent").await;
    let opts = TranslateOptions {
        indexes_after_load: true,
    };
    let mut made = Vec::new();
    let (dialects, probed) = target_dialects(&e, &mut target).await;
    for d in dialects {
        // One target database per dialect: foreign key names are unique per database.
        let tdb = unique_name("schema_tr_tgt");
        recreate_db(&mut target, &tdb).await;
        made.push(tdb.clone());
        let mut renames = std::collections::BTreeMap::new();
        renames.insert(db.clone(), tdb.clone());
        let ctx = TargetContext {
            version: match &probed {
                Some(c) => c.rules_version(d),
                None => Some((10, 11, 0)),
            },
            renames,
            caps: probed.clone(),
        };
        let p = translate_for(&parent, d, &tdb, "parent", &opts, &ctx).unwrap();
        exec(&mut target, &p.create_sql).await;
        for name in ["rich", "aria", "parted"] {
            let t = table(&mut conn, &db, name).await;
            let tt = format!("{name}_{}", d.as_str());
            let tr = translate_for(&t, d, &tdb, &tt, &opts, &ctx)
                .unwrap_or_else(|p| panic!("{d:?} {name}: {p:?}"));
            exec(&mut target, &tr.create_sql).await;
            for stmt in &tr.deferred_indexes {
                exec(&mut target, stmt).await;
            }
            let created = table(&mut target, &tdb, &tt).await;
            assert_eq!(created.columns.len(), t.columns.len(), "{d:?} {name}");
            assert_eq!(created.key, t.key, "{d:?} {name}");
            assert_eq!(created.engine, "InnoDB", "{d:?} {name}");
            let want_idx: Vec<String> = read_indexes(&mut conn, &db, name)
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.name)
                .collect();
            let got_idx: Vec<String> = read_indexes(&mut target, &tdb, &tt)
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.name)
                .collect();
            assert_eq!(
                got_idx, want_idx,
                "{d:?} {name}: every index exists after the deferred statements"
            );
            if name == "rich" {
                // OceanBase prints the same table its own way
                // (`AUTO_INCREMENT = 5`, the referenced table qualified).
                let (auto_inc, fk) = if d == Dialect::Oceanbase {
                    (
                        "AUTO_INCREMENT = 5".to_string(),
                        format!(
                            "CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES {}(`id`) ON UPDATE RESTRICT ON DELETE CASCADE",
                            qualified(&tdb, "parent")
                        ),
                    )
                } else {
                    (
                        "AUTO_INCREMENT=5".to_string(),
                        "CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES `parent`".to_string(),
                    )
                };
                assert!(
                    created.create_sql.contains(&auto_inc),
                    "{}",
                    created.create_sql
                );
                assert!(created.create_sql.contains(&fk), "{}", created.create_sql);
                let j = created.column("j").unwrap();
                let name_col = created.column("name").unwrap();
                match d {
                    Dialect::Mariadb => {
                        assert_eq!(created.column("u").unwrap().data_type, "uuid");
                        assert_eq!(name_col.collation.as_deref(), Some("utf8mb4_uca1400_ai_ci"));
                    }
                    _ => {
                        assert_eq!(created.column("u").unwrap().data_type, "char");
                        assert_eq!(created.column("ip").unwrap().data_type, "varchar");
                        // OceanBase seekdb has no utf8mb4_unicode_ci: the
                        // nearest it has, noted with its comparison consequence.
                        let want = if d == Dialect::Oceanbase {
                            "utf8mb4_general_ci"
                        } else {
                            "utf8mb4_unicode_ci"
                        };
                        assert_eq!(name_col.collation.as_deref(), Some(want));
                        // OceanBase prints the expression default in parentheses.
                        assert!(
                            created.create_sql.contains("DEFAULT uuid()")
                                || (d == Dialect::Oceanbase
                                    && created.create_sql.contains("DEFAULT (uuid())")),
                            "{}",
                            created.create_sql
                        );
                        assert!(!tr.notes.is_empty());
                        if d == Dialect::Oceanbase {
                            // No default on TEXT there: dropped, and said so.
                            assert!(
                                tr.notes.iter().any(|n| n.contains("DEFAULT 'x' dropped")),
                                "{:?}",
                                tr.notes
                            );
                        }
                    }
                }
                if d == Dialect::Oceanbase {
                    assert_eq!(j.data_type, "json", "OceanBase has a JSON type");
                } else {
                    assert_eq!(
                        j.data_type, "longtext",
                        "MariaDB stores JSON as LONGTEXT either way"
                    );
                }
                assert!(
                    created.column("g").unwrap().generated
                        && created.column("s").unwrap().generated
                );
            }
            if name == "parted" {
                // OceanBase prints `partition by range(`id`)`.
                assert!(
                    created
                        .create_sql
                        .to_ascii_uppercase()
                        .contains("PARTITION BY RANGE"),
                    "{}",
                    created.create_sql
                );
            }
        }
    }
    for tdb in made {
        drop_db(&mut target, &tdb).await;
    }
    drop_db(&mut admin, &db).await;
}

#[tokio::test]
async fn binlog_position_moves_with_writes() {
    let (db, mut admin) = source_db("schema_binlog").await;
    let mut conn = migration_source().await;
    let a = binlog_position(&mut conn, "source").await.unwrap();
    assert!(a.file.contains('.') && a.pos >= 4, "{a}");
    assert!(
        a.gtid.as_deref().is_some_and(|g| g.contains('-')),
        "MariaDB gtid_binlog_pos: {a}"
    );
    exec(
        &mut admin,
        &format!("CREATE TABLE {} (id INT PRIMARY KEY)", qualified(&db, "t")),
    )
    .await;
    let b = binlog_position(&mut conn, "source").await.unwrap();
    assert_eq!(
        a.compare(&b),
        Some(std::cmp::Ordering::Less),
        "{a} then {b}"
    );
    assert_ne!(a.gtid, b.gtid);
    drop_db(&mut admin, &db).await;
}

/// A session in ANSI mode would print "names"; the definition is read with `names` and the mode restored.
#[tokio::test]
async fn show_create_is_read_without_ansi_quotes() {
    let (db, mut admin) = source_db("schema_ansi").await;
    exec(
        &mut admin,
        &format!(
            "CREATE TABLE {} (id INT PRIMARY KEY, {} INT)",
            qualified(&db, "t"),
            quote_ident("a\"b")
        ),
    )
    .await;
    let mut conn = migration_source().await;
    exec(&mut conn, "SET SESSION sql_mode = 'ANSI,STRICT_ALL_TABLES'").await;
    let t = table(&mut conn, &db, "t").await;
    assert!(
        t.create_sql.contains("`a\"b` int(11)") && t.create_sql.contains("ENGINE=InnoDB"),
        "{}",
        t.create_sql
    );
    let mode: String =
        mysql_async::prelude::Queryable::query_first(&mut conn, "SELECT @@SESSION.sql_mode")
            .await
            .unwrap()
            .unwrap();
    assert!(
        mode.contains("ANSI_QUOTES") && mode.contains("STRICT_ALL_TABLES"),
        "{mode}"
    );
    drop_db(&mut admin, &db).await;
}

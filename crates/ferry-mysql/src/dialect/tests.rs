use super::*;
use crate::schema::KeyKind;

/// A column: name, DATA_TYPE, COLUMN_TYPE, charset.
fn col(name: &str, data_type: &str, column_type: &str, charset: Option<&str>) -> Column {
    Column {
        name: name.into(),
        data_type: data_type.into(),
        column_type: column_type.into(),
        nullable: true,
        generated: false,
        charset: charset.map(str::to_string),
        collation: None,
        unsigned: column_type.contains("unsigned"),
    }
}

fn table(create_sql: &str, columns: Vec<Column>) -> TableInfo {
    let engine = create_sql
        .split("ENGINE=")
        .nth(1)
        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_else(|| "InnoDB".into());
    TableInfo {
        db: "shop".into(),
        name: "t".into(),
        columns,
        key: Some(vec!["id".into()]),
        key_kind: KeyKind::Primary,
        create_sql: create_sql.into(),
        rows_estimate: 0,
        avg_row_bytes: 0,
        engine,
        is_view: false,
    }
}

fn id() -> Column {
    col("id", "int", "int(11)", None)
}

#[test]
fn a_declared_key_becomes_a_unique_key_on_the_target() {
    let mut t = table(
        "CREATE TABLE `t` (\n  `at` datetime NOT NULL,\n  `seq` int(11) NOT NULL,\n  `msg` text\n) ENGINE=InnoDB",
        vec![
            col("at", "datetime", "datetime", None),
            col("seq", "int", "int(11)", None),
            col("msg", "text", "text", Some("utf8mb4")),
        ],
    );
    t.key = None;
    t.key_kind = KeyKind::None;
    assert!(!ok(&t, Dialect::Mariadb).create_sql.contains("UNIQUE"));
    crate::schema::declare_key(&mut t, &["at".into(), "seq".into()]);
    assert_eq!(t.key_kind, KeyKind::Declared);
    for d in [Dialect::Mariadb, Dialect::Mysql, Dialect::Oceanbase] {
        let out = ok(&t, d);
        assert!(
            out.create_sql
                .contains("UNIQUE KEY `ferry_declared_key` (`at`, `seq`)"),
            "{d:?}: {}",
            out.create_sql
        );
        assert!(
            out.notes.iter().any(|n| n.contains("objects.keys")),
            "{:?}",
            out.notes
        );
    }
    // A table with a key of its own keeps it; a column the table lacks declares nothing.
    let mut keyed = t.clone();
    keyed.key = Some(vec!["seq".into()]);
    keyed.key_kind = KeyKind::Primary;
    crate::schema::declare_key(&mut keyed, &["at".into()]);
    assert_eq!(keyed.key_kind, KeyKind::Primary);
    let mut lacking = t.clone();
    lacking.key = None;
    lacking.key_kind = KeyKind::None;
    crate::schema::declare_key(&mut lacking, &["nope".into()]);
    assert_eq!((lacking.key, lacking.key_kind), (None, KeyKind::None));
}

fn ok(t: &TableInfo, d: Dialect) -> Translated {
    translate(t, d, "shop2", "t2", &TranslateOptions::default())
        .unwrap_or_else(|p| panic!("{d:?}: {p:?}"))
}

fn ok_v(t: &TableInfo, d: Dialect, v: (u16, u16, u16)) -> Result<Translated, Vec<Problem>> {
    let env = TargetContext {
        version: Some(v),
        renames: BTreeMap::new(),
        caps: None,
    };
    translate_for(t, d, "shop2", "t2", &TranslateOptions::default(), &env)
}

fn problems(t: &TableInfo, d: Dialect) -> Vec<Problem> {
    match translate(t, d, "shop2", "t2", &TranslateOptions::default()) {
        Ok(tr) => panic!("{d:?}: expected a problem, got {}", tr.create_sql),
        Err(p) => p,
    }
}

fn has_note(t: &Translated, needle: &str) -> bool {
    t.notes.iter().any(|n| n.contains(needle))
}

const ALL: [Dialect; 3] = [Dialect::Mariadb, Dialect::Mysql, Dialect::Oceanbase];

#[test]
fn tokenizer_keeps_quoted_names_and_strings_whole() {
    let toks = tokenize("`a``,b)` 'it''s, (x' \"q\\\"\" /*!50100 PARTITION */ -- c\n x");
    let texts: Vec<&str> = toks.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            "`a``,b)`",
            "'it''s, (x'",
            "\"q\\\"\"",
            "PARTITION",
            "-- c",
            "x"
        ]
    );
    assert_eq!(toks[0].ident().unwrap(), "a`,b)");
    assert_eq!(render(&toks[..3]), "`a``,b)` 'it''s, (x' \"q\\\"\"");
}

#[test]
fn renames_table_keeps_auto_increment_and_hostile_names() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `a,b) KEY` varchar(10) DEFAULT 'x, KEY `y` (z)',\n  \
               `ü ñ` int(11) DEFAULT NULL COMMENT 'it''s',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=utf8mb4 \
               COLLATE=utf8mb4_unicode_ci COMMENT='a ''b'''";
    let t = table(
        sql,
        vec![
            id(),
            col("a,b) KEY", "varchar", "varchar(10)", Some("utf8mb4")),
            col("ü ñ", "int", "int(11)", None),
        ],
    );
    for d in ALL {
        let tr = ok(&t, d);
        assert!(
            tr.create_sql.starts_with(
                "CREATE TABLE `shop2`.`t2` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,"
            ),
            "{}",
            tr.create_sql
        );
        assert!(
            tr.create_sql
                .contains("`a,b) KEY` varchar(10) DEFAULT 'x, KEY `y` (z)'"),
            "{}",
            tr.create_sql
        );
        assert!(
            tr.create_sql
                .contains("`ü ñ` int(11) DEFAULT NULL COMMENT 'it''s'"),
            "{}",
            tr.create_sql
        );
        assert!(
            tr.create_sql.contains("AUTO_INCREMENT=42"),
            "{}",
            tr.create_sql
        );
        assert!(
            tr.create_sql.contains("COMMENT='a ''b'''"),
            "{}",
            tr.create_sql
        );
        assert!(tr.deferred_indexes.is_empty());
    }
}

#[test]
fn foreign_keys_are_deferred_with_renamed_references() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `pid` int(11) DEFAULT NULL,\n  `oid` int(11) DEFAULT NULL,\n  \
               PRIMARY KEY (`id`),\n  KEY `fk` (`pid`),\n  CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES `p` (`id`) ON DELETE CASCADE,\n  \
               CONSTRAINT `fk2` FOREIGN KEY (`oid`) REFERENCES `crm`.`o` (`id`)\n) ENGINE=InnoDB";
    let t = table(
        sql,
        vec![
            id(),
            col("pid", "int", "int(11)", None),
            col("oid", "int", "int(11)", None),
        ],
    );
    let mut renames = BTreeMap::new();
    renames.insert("shop".to_string(), "shop2".to_string());
    renames.insert("crm.o".to_string(), "crm2.orders".to_string());
    let env = TargetContext {
        version: None,
        renames,
        caps: None,
    };
    let tr = translate_for(
        &t,
        Dialect::Mysql,
        "shop2",
        "t2",
        &TranslateOptions::default(),
        &env,
    )
    .unwrap();
    assert!(!tr.create_sql.contains("FOREIGN"), "{}", tr.create_sql);
    assert!(tr.create_sql.contains("KEY `fk` (`pid`)"));
    assert_eq!(
        tr.deferred_indexes,
        vec![
            "ALTER TABLE `shop2`.`t2` ADD CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES `shop2`.`p` (`id`) ON DELETE CASCADE",
            "ALTER TABLE `shop2`.`t2` ADD CONSTRAINT `fk2` FOREIGN KEY (`oid`) REFERENCES `crm2`.`orders` (`id`)",
        ]
    );
    assert_eq!(
        tr.references,
        vec![("shop".into(), "p".into()), ("crm".into(), "o".into())]
    );
}

#[test]
fn secondary_indexes_can_wait_for_the_load() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `seq` int(11) NOT NULL AUTO_INCREMENT,\n  `a` int(11),\n  `b` text,\n  \
               PRIMARY KEY (`id`),\n  UNIQUE KEY `ua` (`a`),\n  KEY `ka` (`a`,`id`),\n  KEY `kseq` (`seq`),\n  KEY `kb` (`b`(10)) COMMENT 'x',\n  \
               FULLTEXT KEY `ft` (`b`)\n) ENGINE=InnoDB";
    let t = table(
        sql,
        vec![
            id(),
            col("seq", "int", "int(11)", None),
            col("a", "int", "int(11)", None),
            col("b", "text", "text", Some("utf8mb4")),
        ],
    );
    let opts = TranslateOptions {
        indexes_after_load: true,
    };
    let tr = translate(&t, Dialect::Mariadb, "shop2", "t2", &opts).unwrap();
    assert!(
        tr.create_sql.contains("UNIQUE KEY `ua` (`a`)"),
        "unique keys stay: {}",
        tr.create_sql
    );
    assert!(
        tr.create_sql.contains("KEY `kseq` (`seq`)"),
        "the AUTO_INCREMENT column's key stays: {}",
        tr.create_sql
    );
    assert!(
        !tr.create_sql.contains("`ka`") && !tr.create_sql.contains("FULLTEXT"),
        "{}",
        tr.create_sql
    );
    assert_eq!(
        tr.deferred_indexes,
        vec![
            "ALTER TABLE `shop2`.`t2` ADD KEY `ka` (`a`,`id`), ADD KEY `kb` (`b`(10)) COMMENT 'x'",
            "ALTER TABLE `shop2`.`t2` ADD FULLTEXT KEY `ft` (`b`)",
        ]
    );
}

/// MariaDB 10.10+ `uca1400` collations do not exist on MySQL 8 or OceanBase.
#[test]
fn mariadb_only_collations_are_mapped() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `n` varchar(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_uca1400_ai_ci DEFAULT NULL,\n  \
               `c` varchar(10) COLLATE utf8mb4_uca1400_as_cs DEFAULT NULL,\n  `k` varchar(10) COLLATE utf8mb4_nopad_bin DEFAULT NULL,\n  \
               PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_uca1400_ai_ci";
    let cols = vec![
        id(),
        col("n", "varchar", "varchar(100)", Some("utf8mb4")),
        col("c", "varchar", "varchar(10)", Some("utf8mb4")),
        col("k", "varchar", "varchar(10)", Some("utf8mb4")),
    ];
    let t = table(sql, cols);
    let my = ok(&t, Dialect::Mysql);
    assert!(
        my.create_sql
            .contains("`n` varchar(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
        "{}",
        my.create_sql
    );
    assert!(
        my.create_sql
            .contains("`c` varchar(10) COLLATE utf8mb4_0900_as_cs"),
        "{}",
        my.create_sql
    );
    assert!(
        my.create_sql
            .contains("`k` varchar(10) COLLATE utf8mb4_0900_bin"),
        "{}",
        my.create_sql
    );
    assert!(
        my.create_sql.contains("COLLATE=utf8mb4_unicode_ci"),
        "{}",
        my.create_sql
    );
    assert!(has_note(
        &my,
        "utf8mb4_uca1400_ai_ci becomes utf8mb4_unicode_ci"
    ));
    let ob = ok(&t, Dialect::Oceanbase);
    assert!(
        ob.create_sql.contains("COLLATE utf8mb4_unicode_ci"),
        "{}",
        ob.create_sql
    );
    assert!(
        ob.create_sql
            .contains("`c` varchar(10) COLLATE utf8mb4_bin"),
        "case-sensitive stays distinct: {}",
        ob.create_sql
    );
    let maria = ok(&t, Dialect::Mariadb);
    assert!(
        maria.create_sql.contains("utf8mb4_uca1400_ai_ci") && maria.notes.is_empty(),
        "{maria:?}"
    );
}

/// MySQL before 8.0.30 names utf8mb3 collations utf8_*; OceanBase treats utf8 as utf8mb4.
#[test]
fn utf8mb3_naming_per_target() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `s` varchar(5) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci,\n  \
               PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_general_ci";
    let t = table(
        sql,
        vec![id(), col("s", "varchar", "varchar(5)", Some("utf8mb3"))],
    );
    let new = ok_v(&t, Dialect::Mysql, (8, 0, 36)).unwrap();
    assert!(
        new.create_sql
            .contains("CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci"),
        "{}",
        new.create_sql
    );
    let old = ok_v(&t, Dialect::Mysql, (8, 0, 28)).unwrap();
    assert!(
        old.create_sql.contains("COLLATE utf8_general_ci")
            && old.create_sql.contains("COLLATE=utf8_general_ci"),
        "{}",
        old.create_sql
    );
    let ob = ok(&t, Dialect::Oceanbase);
    assert!(
        ob.create_sql
            .contains("CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"),
        "{}",
        ob.create_sql
    );
    assert!(
        ob.create_sql
            .contains("DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"),
        "{}",
        ob.create_sql
    );
    assert!(has_note(&ob, "synonym of utf8mb4"));
}

/// OceanBase MySQL mode character sets: utf8mb4, binary, gbk, gb18030, utf16, latin1 (4.x).
#[test]
fn oceanbase_unsupported_charsets_become_utf8mb4() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `r` varchar(5) CHARACTER SET cp1251 COLLATE cp1251_general_cs,\n  \
               `l` varchar(5) CHARACTER SET latin1 COLLATE latin1_german1_ci,\n  `g` varchar(5) CHARACTER SET gbk COLLATE gbk_chinese_ci,\n  \
               PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci";
    let cols = vec![
        id(),
        col("r", "varchar", "varchar(5)", Some("cp1251")),
        col("l", "varchar", "varchar(5)", Some("latin1")),
        col("g", "varchar", "varchar(5)", Some("gbk")),
    ];
    let ob = ok(&table(sql, cols), Dialect::Oceanbase);
    assert!(
        ob.create_sql
            .contains("`r` varchar(5) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
        "{}",
        ob.create_sql
    );
    assert!(
        ob.create_sql
            .contains("`l` varchar(5) CHARACTER SET latin1 COLLATE latin1_swedish_ci"),
        "{}",
        ob.create_sql
    );
    assert!(
        ob.create_sql
            .contains("`g` varchar(5) CHARACTER SET gbk COLLATE gbk_chinese_ci"),
        "{}",
        ob.create_sql
    );
    assert!(
        ob.create_sql
            .contains("DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci"),
        "{}",
        ob.create_sql
    );
    assert!(has_note(&ob, "cp1251 is not supported"));
}

/// A live OceanBase seekdb has only utf8mb4 and binary: a latin1 column
/// becomes utf8mb4 and its collation one of utf8mb4's (it was left
/// `latin1_swedish_ci`, and the target refused the table: Unknown collation).
#[test]
fn a_charset_the_probed_target_lacks_takes_a_collation_of_utf8mb4() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `l` varchar(5) CHARACTER SET latin1 COLLATE latin1_swedish_ci,\n  \
               `b` char(5) CHARACTER SET latin1 COLLATE latin1_bin,\n  \
               PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci";
    let cols = vec![
        id(),
        col("l", "varchar", "varchar(5)", Some("latin1")),
        col("b", "char", "char(5)", Some("latin1")),
    ];
    let seekdb = caps::TargetCaps {
        version: "5.7.25-OceanBase seekdb-v1.4.0.0".into(),
        charsets: vec!["utf8mb4".into(), "binary".into()],
        collations: vec![
            ("utf8mb4_general_ci".into(), "utf8mb4".into()),
            ("utf8mb4_bin".into(), "utf8mb4".into()),
            ("binary".into(), "binary".into()),
        ],
        ..caps::TargetCaps::default()
    };
    let env = TargetContext {
        caps: Some(seekdb),
        ..TargetContext::default()
    };
    let tr = translate_for(
        &table(sql, cols),
        Dialect::Oceanbase,
        "shop2",
        "t2",
        &TranslateOptions::default(),
        &env,
    )
    .unwrap();
    for want in [
        "`l` varchar(5) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
        "`b` char(5) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
    ] {
        assert!(tr.create_sql.contains(want), "{want}: {}", tr.create_sql);
    }
}

/// MariaDB stores JSON as LONGTEXT with CHECK (json_valid(col)); MySQL and OceanBase have a JSON type.
#[test]
fn mariadb_json_becomes_json() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `j` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL CHECK (json_valid(`j`)),\n  \
               `k` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL,\n  `n` longtext DEFAULT NULL CHECK (json_valid(`n`) and `n` <> '{}'),\n  \
               PRIMARY KEY (`id`),\n  CONSTRAINT `k` CHECK (json_valid(`k`))\n) ENGINE=InnoDB";
    let cols = vec![
        id(),
        col("j", "longtext", "longtext", Some("utf8mb4")),
        col("k", "longtext", "longtext", Some("utf8mb4")),
        col("n", "longtext", "longtext", Some("utf8mb4")),
    ];
    let t = table(sql, cols);
    for d in [Dialect::Mysql, Dialect::Oceanbase] {
        let tr = ok(&t, d);
        assert!(
            tr.create_sql.contains("`j` json DEFAULT NULL,"),
            "{}",
            tr.create_sql
        );
        assert!(
            tr.create_sql.contains("`k` json DEFAULT NULL,"),
            "{}",
            tr.create_sql
        );
        assert!(
            !tr.create_sql.contains("CONSTRAINT `k`"),
            "{}",
            tr.create_sql
        );
        assert!(
            tr.create_sql
                .contains("`n` longtext DEFAULT NULL CHECK (json_valid(`n`) and `n` <> '{}')"),
            "other checks stay text: {}",
            tr.create_sql
        );
    }
    let maria = ok(&t, Dialect::Mariadb);
    assert!(
        maria.create_sql.contains("CHECK (json_valid(`j`))")
            && maria.create_sql.contains("CONSTRAINT `k`")
    );
}

#[test]
fn mariadb_uuid_and_inet6_become_text_columns() {
    let sql = "CREATE TABLE `t` (\n  `id` uuid NOT NULL,\n  `ip` inet6 DEFAULT NULL,\n  `v4` inet4 DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
    let t = table(
        sql,
        vec![
            col("id", "uuid", "uuid", None),
            col("ip", "inet6", "inet6", None),
            col("v4", "inet4", "inet4", None),
        ],
    );
    for d in [Dialect::Mysql, Dialect::Oceanbase] {
        let tr = ok(&t, d);
        assert!(
            tr.create_sql
                .contains("`id` char(36) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"),
            "{}",
            tr.create_sql
        );
        assert!(
            tr.create_sql.contains(
                "`ip` varchar(39) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL"
            ),
            "{}",
            tr.create_sql
        );
        assert!(
            tr.create_sql.contains("`v4` varchar(15)"),
            "{}",
            tr.create_sql
        );
        assert!(has_note(&tr, "MariaDB UUID becomes"));
    }
    assert!(ok(&t, Dialect::Mariadb)
        .create_sql
        .contains("`id` uuid NOT NULL"));
}

#[test]
fn mariadb_table_and_column_options_are_dropped_with_a_note() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `b` blob /*M!100301 COMPRESSED*/ DEFAULT NULL,\n  `s` int(11) GENERATED ALWAYS AS (`id` + 1) PERSISTENT,\n  \
               PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='x' `page_compressed`='1' `PAGE_COMPRESSION_LEVEL`=3 TRANSACTIONAL=1";
    let mut s = col("s", "int", "int(11)", None);
    s.generated = true;
    let t = table(
        sql,
        vec![
            id(),
            col("b", "blob", "blob /*M!100301 COMPRESSED*/", None),
            s,
        ],
    );
    for d in [Dialect::Mysql, Dialect::Oceanbase] {
        let tr = ok(&t, d);
        assert!(
            tr.create_sql.contains("`b` blob DEFAULT NULL,"),
            "{}",
            tr.create_sql
        );
        assert!(
            tr.create_sql
                .contains("GENERATED ALWAYS AS (`id` + 1) STORED"),
            "{}",
            tr.create_sql
        );
        assert!(
            !tr.create_sql.to_ascii_lowercase().contains("page_compress"),
            "{}",
            tr.create_sql
        );
        assert!(
            !tr.create_sql.contains("TRANSACTIONAL"),
            "{}",
            tr.create_sql
        );
        assert!(
            has_note(&tr, "COMPRESSED") && has_note(&tr, "PAGE_COMPRESSED"),
            "{:?}",
            tr.notes
        );
    }
    let maria = ok(&t, Dialect::Mariadb);
    assert!(
        maria
            .create_sql
            .contains("`b` blob COMPRESSED DEFAULT NULL"),
        "{}",
        maria.create_sql
    );
    assert!(
        maria.create_sql.contains("`page_compressed`='1'")
            && maria.create_sql.contains("TRANSACTIONAL=1"),
        "{}",
        maria.create_sql
    );
}

#[test]
fn generated_columns_are_kept() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `g` int(11) GENERATED ALWAYS AS (`id` * 2) VIRTUAL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
    let mut g = col("g", "int", "int(11)", None);
    g.generated = true;
    for d in ALL {
        assert!(ok(&table(sql, vec![id(), g.clone()]), d)
            .create_sql
            .contains("`g` int(11) GENERATED ALWAYS AS (`id` * 2) VIRTUAL"));
    }
}

/// OMS "Incompatibilities of CREATE TABLE": a generated column based on other generated columns.
#[test]
fn oceanbase_refuses_a_foreign_key_under_a_backtick_name() {
    let sql = "CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `pid` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  \
               CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB";
    let mut t = table(sql, vec![id(), col("pid", "int", "int(11)", None)]);
    t.db = "a`b".into();
    let p = problems(&t, Dialect::Oceanbase);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].reason.contains("backtick") && p[0].fix.contains("objects.rename"));
    ok(&t, Dialect::Mariadb);
}

#[test]
fn oceanbase_refuses_generated_on_generated() {
    let sql =
        "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11) GENERATED ALWAYS AS (`id` * 2) VIRTUAL,\n  \
               `b` int(11) GENERATED ALWAYS AS (`a` + 1) VIRTUAL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
    let mut a = col("a", "int", "int(11)", None);
    a.generated = true;
    let mut b = col("b", "int", "int(11)", None);
    b.generated = true;
    let t = table(sql, vec![id(), a, b]);
    let p = problems(&t, Dialect::Oceanbase);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].object, "shop.t.b");
    assert!(p[0].reason.contains("`a`"));
    ok(&t, Dialect::Mysql);
}

#[test]
fn system_versioning_is_a_problem_outside_mariadb() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 WITH SYSTEM VERSIONING";
    let t = table(sql, vec![id()]);
    for d in [Dialect::Mysql, Dialect::Oceanbase] {
        let p = problems(&t, d);
        assert!(
            p[0].reason.contains("system-versioned") && p[0].fix.contains("DROP SYSTEM VERSIONING"),
            "{p:?}"
        );
    }
    assert!(ok(&t, Dialect::Mariadb)
        .create_sql
        .ends_with("WITH SYSTEM VERSIONING"));
    let explicit = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `rs` timestamp(6) GENERATED ALWAYS AS ROW START,\n  \
                    `re` timestamp(6) GENERATED ALWAYS AS ROW END,\n  PRIMARY KEY (`id`,`re`),\n  PERIOD FOR SYSTEM_TIME (`rs`, `re`)\n) ENGINE=InnoDB WITH SYSTEM VERSIONING";
    let t = table(
        explicit,
        vec![
            id(),
            col("rs", "timestamp", "timestamp(6)", None),
            col("re", "timestamp", "timestamp(6)", None),
        ],
    );
    assert!(problems(&t, Dialect::Mysql).len() >= 3);
    ok(&t, Dialect::Mariadb);
}

#[test]
fn mariadb_long_unique_is_a_problem() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `txt` text,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `lu` (`txt`) USING HASH\n) ENGINE=InnoDB";
    let t = table(sql, vec![id(), col("txt", "text", "text", Some("utf8mb4"))]);
    for d in [Dialect::Mysql, Dialect::Oceanbase] {
        let p = problems(&t, d);
        assert_eq!(p[0].object, "shop.t index `lu`");
        assert!(p[0].fix.contains("generated hash column"));
    }
    assert!(ok(&t, Dialect::Mariadb).create_sql.contains("USING HASH"));
}

/// MySQL 8 takes an expression default only in parentheses, and none bare on BLOB/TEXT.
#[test]
fn defaults_are_parenthesized_for_mysql() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL DEFAULT 0,\n  `y` varchar(36) DEFAULT uuid(),\n  `txt` text DEFAULT 'x',\n  \
               `d` datetime(3) DEFAULT current_timestamp(3) ON UPDATE current_timestamp(3),\n  `x` int(11) DEFAULT (1 + 2),\n  `n` int(11) DEFAULT -1,\n  \
               `b` text DEFAULT NULL,\n  `h` varbinary(4) DEFAULT x'00ff',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
    let cols = vec![
        id(),
        col("y", "varchar", "varchar(36)", Some("utf8mb4")),
        col("txt", "text", "text", Some("utf8mb4")),
        col("d", "datetime", "datetime(3)", None),
        col("x", "int", "int(11)", None),
        col("n", "int", "int(11)", None),
        col("b", "text", "text", Some("utf8mb4")),
        col("h", "varbinary", "varbinary(4)", None),
    ];
    let t = table(sql, cols);
    let my = ok(&t, Dialect::Mysql);
    for want in [
        "`id` int(11) NOT NULL DEFAULT 0,",
        "`y` varchar(36) DEFAULT (uuid()),",
        "`txt` text DEFAULT ('x'),",
        "`d` datetime(3) DEFAULT current_timestamp(3) ON UPDATE current_timestamp(3),",
        "`x` int(11) DEFAULT (1 + 2),",
        "`n` int(11) DEFAULT -1,",
        "`b` text DEFAULT NULL,",
        "`h` varbinary(4) DEFAULT x'00ff',",
    ] {
        assert!(
            my.create_sql.contains(want),
            "missing {want} in {}",
            my.create_sql
        );
    }
    assert!(ok(&t, Dialect::Mariadb)
        .create_sql
        .contains("DEFAULT uuid(),"));
    // OceanBase refuses any default on TEXT/BLOB/JSON/GEOMETRY (live 4.3.5:
    // "Invalid default value for 'txt'"): dropped, with a note.
    let ob = ok(&t, Dialect::Oceanbase);
    for want in [
        "`y` varchar(36) DEFAULT (uuid()),",
        "`txt` text,",
        "`b` text DEFAULT NULL,",
    ] {
        assert!(
            ob.create_sql.contains(want),
            "missing {want} in {}",
            ob.create_sql
        );
    }
    assert!(has_note(&ob, "DEFAULT 'x' dropped"), "{:?}", ob.notes);
}

#[test]
fn engines_become_innodb_or_are_refused() {
    let aria = table("CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=Aria DEFAULT CHARSET=utf8mb4 PAGE_CHECKSUM=1 ROW_FORMAT=PAGE", vec![id()]);
    for d in [Dialect::Mysql, Dialect::Mariadb] {
        let tr = ok(&aria, d);
        assert!(
            tr.create_sql
                .contains(") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"),
            "{}",
            tr.create_sql
        );
        assert!(!tr.create_sql.contains("PAGE"), "{}", tr.create_sql);
        assert!(
            has_note(&tr, "ENGINE=ARIA becomes InnoDB"),
            "{:?}",
            tr.notes
        );
    }
    let fed = table("CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=FEDERATED CONNECTION='mysql://u@h/db/t'", vec![id()]);
    for d in ALL {
        assert!(problems(&fed, d)[0].reason.contains("FEDERATED"));
    }
}

/// OceanBase has one storage engine and ignores MySQL storage options (OMS: "other table options ... ignored").
#[test]
fn oceanbase_drops_engine_and_storage_options() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11),\n  PRIMARY KEY (`id`),\n  KEY `ka` (`a`) KEY_BLOCK_SIZE=8\n) ENGINE=InnoDB AUTO_INCREMENT=7 \
               DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin ROW_FORMAT=DYNAMIC STATS_PERSISTENT=1 COMMENT='c'";
    let tr = ok(
        &table(sql, vec![id(), col("a", "int", "int(11)", None)]),
        Dialect::Oceanbase,
    );
    assert!(
        tr.create_sql.ends_with(
            ") AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='c'"
        ),
        "{}",
        tr.create_sql
    );
    assert!(
        tr.create_sql.contains("KEY `ka` (`a`)\n"),
        "{}",
        tr.create_sql
    );
    assert!(
        has_note(&tr, "ROW_FORMAT=DYNAMIC STATS_PERSISTENT=1"),
        "{:?}",
        tr.notes
    );
    let my = ok(
        &table(sql, vec![id(), col("a", "int", "int(11)", None)]),
        Dialect::Mysql,
    );
    assert!(
        my.create_sql.contains("ENGINE=InnoDB AUTO_INCREMENT=7")
            && my
                .create_sql
                .contains("ROW_FORMAT=DYNAMIC STATS_PERSISTENT=1"),
        "{}",
        my.create_sql
    );
}

/// OMS "Create partitions": LINEAR HASH / LINEAR KEY are not supported; "Limitations": 8192 partitions.
#[test]
fn oceanbase_partitioning_rules() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4\n PARTITION BY LINEAR HASH (`id`)\nPARTITIONS 8";
    let tr = ok(&table(sql, vec![id()]), Dialect::Oceanbase);
    assert!(
        tr.create_sql
            .ends_with("PARTITION BY HASH (`id`) PARTITIONS 8"),
        "{}",
        tr.create_sql
    );
    assert!(has_note(&tr, "LINEAR"));
    let range = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB\n PARTITION BY RANGE (`id`)\n\
                 (PARTITION `p0` VALUES LESS THAN (10) ENGINE = InnoDB,\n PARTITION `p1` VALUES LESS THAN MAXVALUE ENGINE = InnoDB)";
    let tr = ok(&table(range, vec![id()]), Dialect::Oceanbase);
    assert!(tr.create_sql.ends_with("PARTITION BY RANGE (`id`) (PARTITION `p0` VALUES LESS THAN (10), PARTITION `p1` VALUES LESS THAN MAXVALUE)"), "{}", tr.create_sql);
    let my = ok(&table(range, vec![id()]), Dialect::Mysql);
    assert!(
        my.create_sql
            .contains("VALUES LESS THAN (10) ENGINE = InnoDB"),
        "{}",
        my.create_sql
    );
    let many = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB\n PARTITION BY HASH (`id`)\nSUBPARTITION BY KEY (`id`) PARTITIONS 100 SUBPARTITIONS 100";
    let p = problems(&table(many, vec![id()]), Dialect::Oceanbase);
    assert!(
        p[0].reason.contains("10000 partitions") && p[0].fix.contains("max_partition_num"),
        "{p:?}"
    );
    ok(&table(many, vec![id()]), Dialect::Mysql);
}

/// Full-text indexes: OceanBase 4.3.1+; spatial: 4.1.0+.
#[test]
fn oceanbase_fulltext_and_spatial_need_recent_versions() {
    let ft = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `b` text,\n  PRIMARY KEY (`id`),\n  FULLTEXT KEY `ft` (`b`) WITH PARSER `mecab`\n) ENGINE=InnoDB";
    let t = table(ft, vec![id(), col("b", "text", "text", Some("utf8mb4"))]);
    let p = ok_v(&t, Dialect::Oceanbase, (4, 2, 1)).unwrap_err();
    assert!(p[0].reason.contains("4.3.1"), "{p:?}");
    let tr = ok_v(&t, Dialect::Oceanbase, (4, 3, 5)).unwrap();
    assert!(
        tr.create_sql.contains("FULLTEXT KEY `ft` (`b`)\n"),
        "{}",
        tr.create_sql
    );
    assert!(has_note(&tr, "parser mecab"));
    let sp = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `g` point NOT NULL,\n  PRIMARY KEY (`id`),\n  SPATIAL KEY `sg` (`g`)\n) ENGINE=InnoDB";
    let t = table(sp, vec![id(), col("g", "point", "point", None)]);
    assert_eq!(
        ok_v(&t, Dialect::Oceanbase, (4, 0, 0)).unwrap_err().len(),
        2
    );
    ok_v(&t, Dialect::Oceanbase, (4, 2, 0)).unwrap();
}

/// "Limitations": index length 16 KB.
#[test]
fn oceanbase_index_length_limit() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` varchar(3000) NOT NULL,\n  `b` varchar(2000) NOT NULL,\n  `c` varchar(3000) NOT NULL,\n  \
               PRIMARY KEY (`id`),\n  KEY `big` (`a`,`b`),\n  KEY `small` (`c`(100))\n) ENGINE=MyISAM";
    let cols = vec![
        id(),
        col("a", "varchar", "varchar(3000)", Some("utf8mb4")),
        col("b", "varchar", "varchar(2000)", Some("utf8mb4")),
        col("c", "varchar", "varchar(3000)", Some("utf8mb4")),
    ];
    let p = problems(&table(sql, cols), Dialect::Oceanbase);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].object, "shop.t index `big`");
    assert!(p[0].reason.contains("20000 bytes"), "{p:?}");
}

/// "Limitations": LONGBLOB/LONGTEXT hold at most 536,870,910 bytes.
#[test]
fn oceanbase_notes_the_lob_limit() {
    let sql =
        "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `b` longblob,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
    let tr = ok(
        &table(sql, vec![id(), col("b", "longblob", "longblob", None)]),
        Dialect::Oceanbase,
    );
    assert!(has_note(&tr, "536870910"));
}

#[test]
fn ignored_and_invisible_indexes() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` int(11),\n  `c` int(11) INVISIBLE,\n  PRIMARY KEY (`id`),\n  KEY `ig` (`a`) IGNORED\n) ENGINE=InnoDB";
    let t = table(
        sql,
        vec![
            id(),
            col("a", "int", "int(11)", None),
            col("c", "int", "int(11)", None),
        ],
    );
    assert!(ok(&t, Dialect::Mysql)
        .create_sql
        .contains("KEY `ig` (`a`) INVISIBLE"));
    assert!(ok(&t, Dialect::Mariadb)
        .create_sql
        .contains("KEY `ig` (`a`) IGNORED"));
    let ob = ok(&t, Dialect::Oceanbase);
    assert!(
        ob.create_sql.contains("KEY `ig` (`a`)\n") && ob.create_sql.contains("`c` int(11),"),
        "{}",
        ob.create_sql
    );
    assert!(has_note(&ob, "visible"));
}

#[test]
fn mysql_collations_on_mariadb() {
    let sql = "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `s` varchar(5) COLLATE utf8mb4_0900_as_cs DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) \
               ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci /*!80016 */";
    let t = table(
        sql,
        vec![id(), col("s", "varchar", "varchar(5)", Some("utf8mb4"))],
    );
    let new = ok_v(&t, Dialect::Mariadb, (10, 11, 6)).unwrap();
    assert!(
        new.create_sql.contains("COLLATE utf8mb4_uca1400_as_cs")
            && new.create_sql.contains("COLLATE=utf8mb4_uca1400_ai_ci"),
        "{}",
        new.create_sql
    );
    let old = ok_v(&t, Dialect::Mariadb, (10, 6, 0)).unwrap();
    assert!(
        old.create_sql.contains("COLLATE utf8mb4_bin")
            && old.create_sql.contains("COLLATE=utf8mb4_unicode_520_ci"),
        "{}",
        old.create_sql
    );
    assert!(ok(&t, Dialect::Oceanbase)
        .create_sql
        .contains("COLLATE=utf8mb4_unicode_ci"));
}

#[test]
fn views_and_garbage_are_problems() {
    let mut v = table("CREATE VIEW `v` AS select 1", vec![]);
    v.is_view = true;
    assert!(problems(&v, Dialect::Mysql)[0].reason.contains("view"));
    assert!(problems(&table("not sql", vec![]), Dialect::Mysql)[0]
        .reason
        .contains("parsed"));
}

#[test]
fn periods_are_mariadb_only() {
    let sql = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `s` date NOT NULL,\n  `e` date NOT NULL,\n  PERIOD FOR `p` (`s`, `e`),\n  \
               PRIMARY KEY (`id`),\n  UNIQUE KEY `u` (`id`,`p` WITHOUT OVERLAPS)\n) ENGINE=InnoDB";
    let t = table(
        sql,
        vec![
            id(),
            col("s", "date", "date", None),
            col("e", "date", "date", None),
        ],
    );
    assert_eq!(problems(&t, Dialect::Mysql).len(), 2);
    assert!(ok(&t, Dialect::Mariadb)
        .create_sql
        .contains("PERIOD FOR `p` (`s`, `e`)"));
}

#[test]
fn mysql_functional_indexes() {
    let sql =
        "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `a` varchar(10) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  \
               KEY `f` ((lower(`a`)))\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
    let t = table(
        sql,
        vec![id(), col("a", "varchar", "varchar(10)", Some("utf8mb4"))],
    );
    assert!(ok(&t, Dialect::Mysql)
        .create_sql
        .contains("KEY `f` ((lower(`a`)))"));
    assert!(problems(&t, Dialect::Mariadb)[0]
        .fix
        .contains("generated column"));
    assert!(has_note(&ok(&t, Dialect::Oceanbase), "function-based"));
}

#[test]
fn versions_from_version_strings() {
    assert_eq!(
        target_version_from("5.7.25-OceanBase_CE-v4.2.1.0", Dialect::Oceanbase),
        Some((4, 2, 1))
    );
    assert_eq!(
        target_version_from("5.7.25-OceanBase-v3.2.4.1", Dialect::Oceanbase),
        Some((3, 2, 4))
    );
    assert_eq!(
        target_version_from("10.11.6-MariaDB-log", Dialect::Mariadb),
        Some((10, 11, 6))
    );
    assert_eq!(
        target_version_from("8.0.36", Dialect::Mysql),
        Some((8, 0, 36))
    );
    assert_eq!(target_version_from("8.0.36", Dialect::Oceanbase), None);
}

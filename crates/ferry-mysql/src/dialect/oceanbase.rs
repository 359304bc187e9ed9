//! What is special about OceanBase (MySQL mode) as a target, in one place.
//!
//! The rules here cite OceanBase's documented MySQL-mode limits
//! ("Limitations", "Compatibility with MySQL", OMS "CREATE TABLE conversion
//! scope" pages, OceanBase 4.2/4.3) for what a server cannot be asked; what it
//! can be asked (version, character sets, collations, functions, `local_infile`,
//! a binary log) comes from [`super::caps`]. Behaviour measured on a live
//! OceanBase 4.3.5 kernel (seekdb) that other modules depend on:
//! - `LOAD DATA` reads an empty last field of a line as NULL: `copy.rs` ends
//!   every line with a sentinel field.
//! - `LOAD DATA` commits the open transaction and loads in its own (all or
//!   nothing), and its parser refuses an identifier holding a backtick:
//!   `copy.rs` (module invariant, `write_method_for`).
//! - `LOAD DATA` outside strict mode cuts a value that does not fit and
//!   reports no warning (INSERT warns): the copy's session is strict there
//!   (`copy.rs`, `CopyOptions::strict`).
//! - A FOREIGN KEY clause on a table of a database whose name holds a
//!   backtick is a "Parse error", however written: the translation refuses
//!   such a key, naming `objects.rename` (`ob_foreign_key_rules`).
//! - Warning 5540 (a generated column's solidified sql_mode) says nothing
//!   about a copied value: `copy.rs` ignores it. No default on TEXT/BLOB/
//!   JSON/spatial columns: [`drop_lob_default`]. Only SRID 0 on seekdb: a
//!   geometry with another fails its chunk, named (`copy.rs`).
//! - `CRC32C()` does not exist: verify's row hash is SHA1-64 on both sides
//!   (`verify/canon.rs`, `RowHash::for_servers`). Two CRC32s over the same
//!   bytes (reordered columns, a prefix) are not independent: a CRC is linear,
//!   so a one-column difference that escapes one escapes the other.
//! - JSON prints with spaces and sorted keys (`{"a": 1}`) and normalises
//!   numbers: a JSON column that is text on the source is left out of the
//!   digest and compared as JSON row by row (`verify/table.rs`).
//! - `LOAD DATA LOCAL` needs the FILE privilege (MySQL and MariaDB do not ask
//!   for it): without it the copy writes with INSERT (`copy.rs`).
//! - No binary log (`SHOW MASTER STATUS` is a syntax error): a reverse link
//!   needs OceanBase's Binlog Service; the precheck says so and the switch
//!   reads no target position without a reverse link.
//! - The session time zone defaults to `+08:00`: every Ferry session sets
//!   `+00:00` (`conn.rs`).

use super::*;

/// "Limitations": index length (and primary key length) 16 KB.
pub const MAX_INDEX_BYTES: u64 = 16 * 1024;
/// "Limitations": number of partitions in MySQL mode, default of `max_partition_num`.
pub const MAX_PARTITIONS: u64 = 8192;
/// "Limitations": LONGBLOB / LONGTEXT hold at most 536,870,910 bytes.
pub const MAX_LOB_BYTES: u64 = 536_870_910;
/// Character sets of the MySQL mode (4.x); `utf8`/`utf8mb3` are synonyms of utf8mb4.
pub const CHARSETS: &[&str] = &[
    "utf8mb4",
    "binary",
    "gbk",
    "gb18030",
    "gb18030_2022",
    "utf16",
    "latin1",
];
/// Collations of the MySQL mode (4.x).
pub const COLLATIONS: &[&str] = &[
    "utf8mb4_general_ci",
    "utf8mb4_bin",
    "utf8mb4_unicode_ci",
    "binary",
    "gbk_chinese_ci",
    "gbk_bin",
    "utf16_general_ci",
    "utf16_bin",
    "utf16_unicode_ci",
    "gb18030_chinese_ci",
    "gb18030_bin",
    "latin1_swedish_ci",
    "latin1_bin",
    "gb18030_2022_bin",
    "gb18030_2022_chinese_ci",
    "gb18030_2022_chinese_cs",
    "gb18030_2022_radical_ci",
    "gb18030_2022_radical_cs",
    "gb18030_2022_stroke_ci",
    "gb18030_2022_stroke_cs",
];
/// Full-text indexes (CHAR, VARCHAR, TEXT; local only) arrived in 4.3.1.
pub const FULLTEXT_SINCE: (u16, u16, u16) = (4, 3, 1);
/// Spatial types and SPATIAL indexes arrived in 4.1.0.
pub const SPATIAL_SINCE: (u16, u16, u16) = (4, 1, 0);

/// The collation OceanBase gets for source collation `c`: from the server's
/// own list when known (see [`super::fit_collation`]), else the documented one.
pub(super) fn ob_collation(ctx: &Ctx, c: &str) -> String {
    fit_probed(ctx, c, documented_collation(c))
}

/// The OceanBase (MySQL mode) target.
pub(super) struct Oceanbase;

impl TargetRules for Oceanbase {
    fn label(&self) -> &'static str {
        "OceanBase (MySQL mode)"
    }
    fn collation(&self, ctx: &Ctx, c: &str) -> String {
        ob_collation(ctx, c)
    }
    fn functional_key_part(&self, ctx: &mut Ctx, label: &str) {
        ctx.note(format!(
            "{label}: functional key parts need OceanBase's function-based indexes (4.x); \
             if the target refuses it, index a generated column instead"
        ));
    }
    fn invisible_index(&self, ctx: &mut Ctx, def: &mut Vec<Tok>, i: usize, label: &str) {
        def.remove(i);
        ctx.note(format!(
            "{label}: the index is created visible (OceanBase ignores INVISIBLE/IGNORED)"
        ));
    }
    /// OceanBase's full-text indexes take the ngram parser only.
    fn keeps_fulltext_parser(&self, parser: &str) -> bool {
        parser == "ngram"
    }
    fn keeps_table_option(&self, name: &str, _raw: &str, _engine_changed: bool) -> bool {
        OB_OPTIONS.contains(&name)
    }
}

fn documented_collation(c: &str) -> String {
    if COLLATIONS.contains(&c) {
        return c.to_string();
    }
    let cs = collation_charset(c);
    let cs = match cs.as_str() {
        "utf8" | "utf8mb3" => "utf8mb4".to_string(),
        other if CHARSETS.contains(&other) => other.to_string(),
        _ => "utf8mb4".to_string(),
    };
    let kind = collation_kind(c);
    if kind != "ci" {
        // Accent- or case-sensitive: the binary collation keeps every distinct value distinct.
        return if cs == "binary" {
            "binary".into()
        } else {
            format!("{cs}_bin")
        };
    }
    match cs.as_str() {
        "utf8mb4" if c.contains("unicode") || c.contains("uca") || c.contains("0900") => {
            "utf8mb4_unicode_ci".into()
        }
        "utf8mb4" => "utf8mb4_general_ci".into(),
        "gbk" => "gbk_chinese_ci".into(),
        "gb18030" => "gb18030_chinese_ci".into(),
        "gb18030_2022" => "gb18030_2022_chinese_ci".into(),
        "utf16" => "utf16_general_ci".into(),
        "latin1" => "latin1_swedish_ci".into(),
        other => format!("{other}_bin"),
    }
}

/// OceanBase refuses any default on a TEXT, BLOB, JSON or spatial column
/// (4.3.5: "Invalid default value", "can't have a default value"), literal or
/// expression, where MariaDB and MySQL 8 accept one. The default is dropped
/// with a note: every copied and replicated row carries its own value (Ferry
/// always writes every column), so no migrated data changes; what changes is
/// a row inserted after the switch without this column, which gets NULL (or
/// is refused if the column is NOT NULL). Returns where to continue.
pub(super) fn drop_lob_default(
    ctx: &mut Ctx,
    def: &mut Vec<Tok>,
    at: usize,
    obj: &str,
    data_type: &str,
) -> usize {
    let end = super::default_extent(def, at + 1).min(def.len());
    let value = render(&def[at + 1..end]);
    def.drain(at..end);
    ctx.note(format!(
        "{obj}: DEFAULT {value} dropped: OceanBase allows no default on a {} column. The migrated rows keep \
         their values; after the switch, a row inserted without this column gets NULL (or is refused when the \
         column is NOT NULL) unless the application sets it",
        data_type.to_ascii_uppercase()
    ));
    at
}

/// A backtick in any name is doubled when quoted. OceanBase (live 4.3.5)
/// answers "Parse error" to a FOREIGN KEY clause on a table of a database
/// whose name holds one, qualified or not, where the same ALTER TABLE adding
/// an index works.
pub(super) fn ob_foreign_key_rules(ctx: &mut Ctx, stmt: &str) {
    if stmt.contains("``") {
        let obj = ctx.name();
        ctx.problem(
            obj,
            format!(
                "has a foreign key whose target names hold a backtick ({stmt}), which \
                 OceanBase refuses to parse in a FOREIGN KEY clause"
            ),
            "give the target database and tables names without a backtick in the task's \
             objects.rename"
                .into(),
        );
    }
}

/// OceanBase column rules: spatial types need 4.1; LONGBLOB/LONGTEXT hold at
/// most 512 MiB; a generated column may not use another generated column.
pub(super) fn ob_column_rules(ctx: &mut Ctx, def: &[Tok], obj: &str, data_type: &str) {
    if is_spatial_type(data_type) && !ctx.at_least(SPATIAL_SINCE) {
        ctx.problem(
            obj.into(),
            format!("has spatial type {data_type}; OceanBase supports spatial types from 4.1.0 (the target is older)"),
            "upgrade the OceanBase target to 4.1 or later, or exclude the table".into(),
        );
    }
    if matches!(data_type, "longblob" | "longtext") {
        ctx.note(format!(
            "{obj}: OceanBase {} holds at most {} bytes (MySQL: 4 GiB); a larger value fails its chunk",
            data_type.to_ascii_uppercase(),
            MAX_LOB_BYTES
        ));
    }
    let name = def.first().and_then(Tok::ident).unwrap_or_default();
    if !ctx.column(&name).is_some_and(|c| c.generated) {
        return;
    }
    let generated: Vec<String> = ctx
        .table
        .columns
        .iter()
        .filter(|c| c.generated)
        .map(|c| c.name.clone())
        .collect();
    let Some(open) = find_kw(def, "AS")
        .map(|i| i + 1)
        .filter(|&i| def.get(i).is_some_and(|t| t.is_p('(')))
    else {
        return;
    };
    let end = matching(def, open);
    let other = def[open..end]
        .iter()
        .filter(|t| t.kind == Kind::Quoted)
        .filter_map(Tok::ident)
        .find(|n| generated.contains(n));
    if let Some(other) = other {
        ctx.problem(
            obj.into(),
            format!(
                "is a generated column defined on another generated column (`{other}`); OceanBase's MySQL mode \
                 does not support that (OMS: \"Define a generated column based on other generated columns\")"
            ),
            format!("rewrite the expression on the source to use the base columns of `{other}`"),
        );
    }
}

pub(super) fn ob_index_rules(ctx: &mut Ctx, def: &mut Vec<Tok>, kind: IndexKind, label: &str) {
    match kind {
        IndexKind::Fulltext if !ctx.at_least(FULLTEXT_SINCE) => ctx.problem(
            label.into(),
            "is a FULLTEXT index; OceanBase supports full-text indexes from 4.3.1 (the target is older)".into(),
            "upgrade the target to OceanBase 4.3.1 or later, or drop the FULLTEXT index on the source".into(),
        ),
        IndexKind::Fulltext => ctx.note(format!(
            "{label}: OceanBase builds FULLTEXT indexes as local indexes on CHAR/VARCHAR/TEXT only (needs 4.3.1+)"
        )),
        IndexKind::Spatial if !ctx.at_least(SPATIAL_SINCE) => ctx.problem(
            label.into(),
            "is a SPATIAL index; OceanBase supports spatial indexes from 4.1.0 (the target is older)".into(),
            "upgrade the target to OceanBase 4.1 or later, or drop the SPATIAL index on the source".into(),
        ),
        _ => {}
    }
    if let Some(i) = find_kw(def, "KEY_BLOCK_SIZE") {
        let n = if def.get(i + 1).is_some_and(|t| t.is_p('=')) {
            3
        } else {
            2
        };
        def.drain(i..(i + n).min(def.len()));
    }
    let bytes = index_bytes(ctx, def);
    if bytes > MAX_INDEX_BYTES {
        ctx.problem(
            label.into(),
            format!(
                "is up to {bytes} bytes long; OceanBase limits an index (and a primary key) to {} bytes",
                MAX_INDEX_BYTES
            ),
            "index a prefix of the long columns on the source (e.g. KEY (col(255))) or drop the index".into(),
        );
    }
}

/// Options OceanBase keeps; it manages storage itself and ignores the rest.
pub(super) const OB_OPTIONS: &[&str] = &[
    "AUTO_INCREMENT",
    "DEFAULT CHARSET",
    "DEFAULT CHARACTER SET",
    "CHARSET",
    "CHARACTER SET",
    "COLLATE",
    "DEFAULT COLLATE",
    "COMMENT",
];

#[cfg(test)]
mod tests {
    use super::super::caps::TargetCaps;
    use super::super::collation::fit_collation;
    use super::super::*;
    use crate::schema::KeyKind;

    /// What the seekdb server of the test environment reports.
    fn seekdb() -> TargetContext {
        TargetContext {
            version: Some((4, 3, 5)),
            renames: BTreeMap::new(),
            caps: Some(TargetCaps {
                version: "5.7.25-OceanBase seekdb-v1.4.0.0".into(),
                version_comment: "OceanBase 4.3.5.3 seekdb (r1.4.0.0)".into(),
                charsets: vec!["binary".into(), "utf8mb4".into()],
                collations: vec![
                    ("utf8mb4_general_ci".into(), "utf8mb4".into()),
                    ("utf8mb4_bin".into(), "utf8mb4".into()),
                    ("binary".into(), "binary".into()),
                ],
                crc32c: false,
                local_infile: true,
                binlog: false,
                cpus: Some(2),
            }),
        }
    }

    fn column(
        name: &str,
        data_type: &str,
        charset: Option<&str>,
        collation: Option<&str>,
    ) -> Column {
        Column {
            name: name.into(),
            data_type: data_type.into(),
            column_type: data_type.into(),
            nullable: true,
            generated: false,
            charset: charset.map(str::to_string),
            collation: collation.map(str::to_string),
            unsigned: false,
        }
    }

    #[test]
    fn collations_and_charsets_come_from_what_the_server_has() {
        let create = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  \
            `a` varchar(20) COLLATE utf8mb4_unicode_ci DEFAULT NULL,\n  \
            `b` varchar(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL,\n  \
            `l` varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL,\n  \
            PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";
        let t = TableInfo {
            db: "shop".into(),
            name: "t".into(),
            columns: vec![
                column("id", "int", None, None),
                column("a", "varchar", Some("utf8mb4"), Some("utf8mb4_unicode_ci")),
                column("b", "varchar", Some("utf8mb4"), Some("utf8mb4_bin")),
                column("l", "varchar", Some("latin1"), Some("latin1_swedish_ci")),
            ],
            key: Some(vec!["id".into()]),
            key_kind: KeyKind::Primary,
            create_sql: create.into(),
            rows_estimate: 0,
            avg_row_bytes: 0,
            engine: "InnoDB".into(),
            is_view: false,
        };
        let opts = TranslateOptions::default();
        let out = translate_for(&t, Dialect::Oceanbase, "shop", "t", &opts, &seekdb()).unwrap();
        let sql = out.create_sql.to_ascii_lowercase();
        assert!(!sql.contains("unicode_ci"), "{sql}");
        assert!(!sql.contains("latin1"), "{sql}");
        assert!(
            sql.contains("`a` varchar(20) collate utf8mb4_general_ci"),
            "{sql}"
        );
        assert!(sql.contains("utf8mb4_bin"), "{sql}");
        assert!(
            out.notes.iter().any(|n| n.contains("'ß' equals 's'")),
            "the comparison consequence is named: {:?}",
            out.notes
        );
        assert!(
            out.notes.iter().any(|n| n.contains("character set latin1")),
            "{:?}",
            out.notes
        );
        // Without the server's list, the documented one (which has unicode_ci) applies.
        let documented = TargetContext {
            caps: None,
            ..seekdb()
        };
        let out = translate_for(&t, Dialect::Oceanbase, "shop", "t", &opts, &documented).unwrap();
        assert!(
            out.create_sql.contains("utf8mb4_unicode_ci"),
            "{}",
            out.create_sql
        );
    }

    #[test]
    fn the_database_and_stream_ddl_are_translated_too() {
        let (cs, co, notes) = database_charset(
            Dialect::Oceanbase,
            &seekdb(),
            "shop",
            "utf8mb4",
            "utf8mb4_unicode_ci",
        );
        assert_eq!(
            (cs.as_str(), co.as_str()),
            ("utf8mb4", "utf8mb4_general_ci")
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        let (sql, notes) = translate_statement(
            "ALTER TABLE `shop`.`t` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            Dialect::Oceanbase,
            &seekdb(),
        );
        assert_eq!(
            sql,
            "ALTER TABLE `shop`.`t` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        );
        assert!(!notes.is_empty());
        let (sql, _) = translate_statement(
            "CREATE TABLE `shop`.`n` (id INT PRIMARY KEY, v VARCHAR(5) CHARACTER SET latin1 COLLATE latin1_bin) \
             DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci",
            Dialect::Oceanbase,
            &seekdb(),
        );
        assert!(
            sql.contains("CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
            "{sql}"
        );
        assert!(sql.contains("COLLATE=utf8mb4_general_ci"), "{sql}");
        // A statement the target takes as it is stays byte for byte.
        let plain = "ALTER TABLE `shop`.`t` ADD COLUMN c INT DEFAULT 5";
        assert_eq!(
            translate_statement(plain, Dialect::Oceanbase, &seekdb()).0,
            plain
        );
    }

    #[test]
    fn the_nearest_collation_never_merges_what_a_sensitive_one_keeps_apart() {
        let caps = seekdb().caps.unwrap();
        assert_eq!(
            fit_collation(&caps, "utf8mb4_unicode_ci", "utf8mb4_unicode_ci"),
            "utf8mb4_general_ci"
        );
        assert_eq!(
            fit_collation(&caps, "utf8mb4_0900_as_cs", "utf8mb4_bin"),
            "utf8mb4_bin"
        );
        assert_eq!(
            fit_collation(&caps, "utf8mb4_uca1400_as_cs", "utf8mb4_unicode_ci"),
            "utf8mb4_bin"
        );
        assert_eq!(
            fit_collation(&caps, "utf8mb4_general_ci", "utf8mb4_general_ci"),
            "utf8mb4_general_ci"
        );
    }
}

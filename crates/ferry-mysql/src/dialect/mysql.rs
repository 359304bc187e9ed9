//! What is special about a MySQL target: its collation names (utf8mb3 named
//! utf8 before 8.0.30, the 0900 family for MariaDB's UCA 14.0 and NO PAD
//! collations) and the table options InnoDB on MySQL takes.

use super::*;

/// The MySQL target.
pub(super) struct Mysql;

impl TargetRules for Mysql {
    fn label(&self) -> &'static str {
        "MySQL"
    }
    fn collation(&self, ctx: &Ctx, c: &str) -> String {
        fit_probed(ctx, c, mysql_collation(ctx, c))
    }
    /// MySQL's list, and ROW_FORMAT only in a form InnoDB has.
    fn keeps_table_option(&self, name: &str, raw: &str, _engine_changed: bool) -> bool {
        MYSQL_OPTIONS.contains(&name) && (name != "ROW_FORMAT" || innodb_row_format(raw))
    }
}

pub(super) fn mysql_collation(ctx: &Ctx, c: &str) -> String {
    let cs = collation_charset(c);
    let cs = if cs == "utf8" {
        "utf8mb3".to_string()
    } else {
        cs
    };
    // MySQL before 8.0.30 names utf8mb3 collations utf8_*.
    let cs_name = |cs: &str| -> String {
        if cs == "utf8mb3" && !ctx.at_least((8, 0, 30)) {
            "utf8".into()
        } else {
            cs.into()
        }
    };
    if c.contains("uca1400") {
        let kind = collation_kind(c);
        return match (cs.as_str(), kind) {
            ("utf8mb4", "bin") => "utf8mb4_0900_as_cs".into(),
            ("utf8mb4", "as_ci") => "utf8mb4_0900_as_ci".into(),
            (_, "bin") => format!("{}_bin", cs_name(&cs)),
            _ => format!("{}_unicode_ci", cs_name(&cs)),
        };
    }
    if c.contains("nopad") {
        return match (cs.as_str(), collation_kind(c)) {
            ("utf8mb4", "bin") => "utf8mb4_0900_bin".into(),
            (_, "bin") => format!("{}_bin", cs_name(&cs)),
            _ => format!("{}{}", cs_name(&cs), &c[cs.len()..].replace("_nopad", "")),
        };
    }
    if cs == "utf8mb3" || c.starts_with("utf8_") {
        let rest = c.split_once('_').map(|(_, r)| r).unwrap_or("general_ci");
        return format!("{}_{rest}", cs_name("utf8mb3"));
    }
    c.to_string()
}

/// Options any target keeps (the rest of MySQL's list).
pub(super) const MYSQL_OPTIONS: &[&str] = &[
    "AUTO_INCREMENT",
    "AVG_ROW_LENGTH",
    "DEFAULT CHARSET",
    "DEFAULT CHARACTER SET",
    "CHARSET",
    "CHARACTER SET",
    "CHECKSUM",
    "COLLATE",
    "DEFAULT COLLATE",
    "COMMENT",
    "COMPRESSION",
    "DELAY_KEY_WRITE",
    "ENCRYPTION",
    "KEY_BLOCK_SIZE",
    "MAX_ROWS",
    "MIN_ROWS",
    "PACK_KEYS",
    "ROW_FORMAT",
    "STATS_AUTO_RECALC",
    "STATS_PERSISTENT",
    "STATS_SAMPLE_PAGES",
];

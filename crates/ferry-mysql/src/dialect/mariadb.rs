//! What is special about a MariaDB target: it keeps every MariaDB feature
//! (system versioning, periods, sequences, IGNORED indexes, compressed
//! columns); MySQL's 0900 collations become UCA 14.0 ones (10.10+) or
//! unicode_520; MariaDB-only options are dropped only with the engine.

use super::*;

/// The MariaDB target.
pub(super) struct Mariadb;

impl TargetRules for Mariadb {
    fn label(&self) -> &'static str {
        "MariaDB"
    }
    fn keeps_mariadb_features(&self) -> bool {
        true
    }
    fn collation(&self, ctx: &Ctx, c: &str) -> String {
        fit_probed(ctx, c, mariadb_collation(ctx, c))
    }
    /// MariaDB cannot index an expression.
    fn functional_key_part(&self, ctx: &mut Ctx, label: &str) {
        ctx.problem(
            label.to_string(),
            "has a functional key part (an expression), which MariaDB cannot index".into(),
            "index a generated column instead: ADD COLUMN g <type> AS (<expr>) VIRTUAL, ADD KEY (g)".into(),
        );
    }
    fn invisible_index(&self, _ctx: &mut Ctx, def: &mut Vec<Tok>, i: usize, _label: &str) {
        def[i].text = "IGNORED".into();
    }
    /// MariaDB has no full-text parser plugins.
    fn keeps_fulltext_parser(&self, _parser: &str) -> bool {
        false
    }
    /// Everything, unless the engine changes: then MariaDB-only options and a
    /// ROW_FORMAT InnoDB lacks go with the old engine.
    fn keeps_table_option(&self, name: &str, raw: &str, engine_changed: bool) -> bool {
        !(engine_changed
            && (MARIADB_OPTIONS.contains(&name) || name == "ROW_FORMAT")
            && !innodb_row_format(raw))
    }
}

pub(super) fn mariadb_collation(ctx: &Ctx, c: &str) -> String {
    if !c.contains("_0900_") {
        return c.to_string();
    }
    let cs = collation_charset(c);
    let uca1400 = ctx.at_least((10, 10, 0));
    match collation_kind(c) {
        _ if c.ends_with("_0900_bin") => format!("{cs}_nopad_bin"),
        "bin" if uca1400 => format!("{cs}_uca1400_as_cs"),
        "bin" => format!("{cs}_bin"),
        "as_ci" if uca1400 => format!("{cs}_uca1400_as_ci"),
        _ if uca1400 => format!("{cs}_uca1400_ai_ci"),
        _ => format!("{cs}_unicode_520_ci"),
    }
}

/// MariaDB-only table options, dropped for MySQL and OceanBase targets.
pub(super) const MARIADB_OPTIONS: &[&str] = &[
    "PAGE_CHECKSUM",
    "PAGE_COMPRESSED",
    "PAGE_COMPRESSION_LEVEL",
    "TRANSACTIONAL",
    "ENCRYPTED",
    "ENCRYPTION_KEY_ID",
    "IETF_QUOTES",
    "SEQUENCE",
];

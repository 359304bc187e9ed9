//! DDL translation per target dialect: rewrites a source's `SHOW CREATE TABLE`
//! text into a `CREATE TABLE` the target accepts.
//!
//! Invariant: nothing is dropped silently. Every change that alters meaning
//! (a type, a collation, an option, an index) is either a `note` in the
//! [`Translated`] result or, when no faithful translation exists, a
//! [`Problem`] that names the object, the reason and the fix; a table with a
//! problem gets no DDL at all. Foreign keys always move to `deferred_indexes`
//! (so chunks can load in any order), and so do non-unique secondary indexes
//! when `indexes_after_load` is set.
//!
//! The text is tokenized (backquoted identifiers, strings with both escape
//! styles, versioned comments), split into column/index definitions, table
//! options and the partition clause, and each part is rewritten on tokens;
//! no regular expression ever looks inside a quoted name or string.
//!
//! Layout: `lexer` (the one SQL lexer, shared with the binlog DDL parser),
//! `create` (the model of a `CREATE TABLE` text), `columns`, `indexes`,
//! `options` and `collation` (the rewriting, common to every target), and one
//! file per target with what is special about it: `mysql`, `mariadb`,
//! `oceanbase` (each implements `TargetRules`); `caps` probes a live target.
//!
//! OceanBase rules cite OceanBase's documented MySQL-mode limits
//! ("Limitations", "Compatibility with MySQL", OMS "CREATE TABLE conversion
//! scope" pages, OceanBase 4.2/4.3); each has a unit test below.

use std::collections::BTreeMap;

use ferry_core::task::Dialect;
use serde::{Deserialize, Serialize};

use crate::column_kind::ColumnKind;
use crate::conn::{qualified, quote_ident};
use crate::schema::{Column, TableInfo};

pub mod caps;
mod collation;
mod columns;
mod create;
mod indexes;
pub(crate) mod lexer;
mod mariadb;
mod mysql;
pub mod oceanbase;
mod options;
#[cfg(test)]
mod tests;

use collation::{
    charset_clause_len, collation_charset, collation_kind, fit_probed, map_charset,
    map_charset_tokens, map_collation, mbmaxlen,
};
use columns::{default_extent, is_spatial_type, json_columns, json_valid_of, rewrite_column};
use create::{
    classify_def, parse_create, parse_options, partition_count, type_end, DefKind, IndexKind,
};
use indexes::{
    index_bytes, rewrite_check, rewrite_foreign_key, rewrite_index, starts_with_auto_inc,
};
use lexer::{find_kw, find_seq, matching, render, split_commas, tokenize, Kind, Tok};
use oceanbase::{ob_column_rules, ob_foreign_key_rules, ob_index_rules};
use options::{engine_for, innodb_row_format, rewrite_options, rewrite_partition};

/// How to translate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranslateOptions {
    /// Create non-unique secondary indexes after the load (returned in `deferred_indexes`).
    pub indexes_after_load: bool,
}

/// What is known about the target and the task beyond the options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetContext {
    /// The target's version when known (OceanBase: its own version, e.g. 4.2.1, not
    /// the MySQL version it reports; see [`target_version_from`]). Some rules depend
    /// on it; unknown means "recent".
    #[serde(default)]
    pub version: Option<(u16, u16, u16)>,
    /// The task's renames (`"db": "db2"`, `"db.t": "db2.t2"`), applied to the tables
    /// foreign keys reference.
    #[serde(default)]
    pub renames: BTreeMap<String, String>,
    /// What the live target reported ([`caps::probe`]); None: the documented rules apply.
    #[serde(default)]
    pub caps: Option<caps::TargetCaps>,
}

/// A translated table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Translated {
    pub create_sql: String,
    /// `ALTER TABLE ... ADD ...` statements to run after the last chunk is loaded:
    /// secondary indexes first, then foreign keys.
    pub deferred_indexes: Vec<String>,
    /// What was changed, for the operator.
    pub notes: Vec<String>,
    /// Source tables (db, table) this table's foreign keys reference.
    #[serde(default)]
    pub references: Vec<(String, String)>,
}

/// Something that cannot be translated: what, why, and what the operator can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub object: String,
    pub reason: String,
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} Fix: {}", self.object, self.reason, self.fix)
    }
}

/// Everything a rewrite needs to know, and what it found.
struct Ctx<'a> {
    table: &'a TableInfo,
    target: Dialect,
    env: &'a TargetContext,
    source_engine: String,
    /// The engine the target gets (upper case), or None for OceanBase (no ENGINE clause).
    target_engine: Option<String>,
    notes: Vec<String>,
    problems: Vec<Problem>,
    json_columns: Vec<String>,
}

impl<'a> Ctx<'a> {
    fn new(table: &'a TableInfo, target: Dialect, env: &'a TargetContext) -> Ctx<'a> {
        let engine = table.engine.to_ascii_uppercase();
        Ctx {
            table,
            target,
            env,
            source_engine: if engine.is_empty() {
                "INNODB".into()
            } else {
                engine
            },
            target_engine: None,
            notes: Vec::new(),
            problems: Vec::new(),
            json_columns: Vec::new(),
        }
    }
    fn name(&self) -> String {
        self.table.full_name()
    }
    fn note(&mut self, s: String) {
        if !self.notes.contains(&s) {
            self.notes.push(s);
        }
    }
    fn problem(&mut self, object: String, reason: String, fix: String) {
        self.problems.push(Problem {
            object,
            reason,
            fix,
        });
    }
    /// The rules of the target's dialect.
    fn rules(&self) -> &'static dyn TargetRules {
        rules_for(self.target)
    }
    fn mariadb_target(&self) -> bool {
        self.rules().keeps_mariadb_features()
    }
    fn ob(&self) -> bool {
        self.target == Dialect::Oceanbase
    }
    fn target_label(&self) -> &'static str {
        self.rules().label()
    }
    /// Whether the target is at least `v` (unknown: assumed recent).
    fn at_least(&self, v: (u16, u16, u16)) -> bool {
        self.env.version.is_none_or(|have| have >= v)
    }
    fn column(&self, name: &str) -> Option<&Column> {
        self.table.column(name)
    }
}

/// The rules that differ between targets, one implementation per target
/// file (`mysql.rs`, `mariadb.rs`, `oceanbase.rs`), in the spirit of
/// sqlparser's `Dialect`: a method answers one difference, and a default
/// answers for the common case. OceanBase's further limits (LOB defaults,
/// index lengths, partition counts, ...) are functions in `oceanbase.rs`
/// that the rewriting calls for an OceanBase target.
trait TargetRules: Sync {
    /// How messages name the target.
    fn label(&self) -> &'static str;
    /// MariaDB's own features (system versioning, application-time periods,
    /// sequences, IGNORED indexes, compressed columns, LONGTEXT JSON) are
    /// kept as they are, not refused or converted.
    fn keeps_mariadb_features(&self) -> bool {
        false
    }
    /// The collation the target gets for source collation `c` (lower case),
    /// fitted to what the live target has when it was probed.
    fn collation(&self, ctx: &Ctx, c: &str) -> String;
    /// A functional key part (`KEY k ((expr))`): MySQL 8 takes it as it is.
    fn functional_key_part(&self, _ctx: &mut Ctx, _label: &str) {}
    /// The invisible-index keyword at `def[i]` (MySQL `INVISIBLE`, MariaDB `IGNORED`).
    fn invisible_index(&self, _ctx: &mut Ctx, def: &mut Vec<Tok>, i: usize, _label: &str) {
        def[i].text = "INVISIBLE".into();
    }
    /// Whether a full-text index keeps its `WITH PARSER` (lower-case name).
    fn keeps_fulltext_parser(&self, _parser: &str) -> bool {
        true
    }
    /// Whether table option `name` (upper case, value `raw`) is kept;
    /// `engine_changed`: the source table was not InnoDB.
    fn keeps_table_option(&self, name: &str, raw: &str, engine_changed: bool) -> bool;
}

fn rules_for(target: Dialect) -> &'static dyn TargetRules {
    match target {
        Dialect::Mysql => &mysql::Mysql,
        Dialect::Mariadb => &mariadb::Mariadb,
        Dialect::Oceanbase => &oceanbase::Oceanbase,
    }
}

/// Name of the unique key the target gets on a declared key (`objects.keys`).
pub const DECLARED_KEY: &str = "`ferry_declared_key`";

/// Translate a table's `SHOW CREATE TABLE` for `target`, creating it as
/// `target_db`.`target_table`, for a target of unknown version without renames.
pub fn translate(
    table: &TableInfo,
    target: Dialect,
    target_db: &str,
    target_table: &str,
    opts: &TranslateOptions,
) -> Result<Translated, Vec<Problem>> {
    translate_for(
        table,
        target,
        target_db,
        target_table,
        opts,
        &TargetContext::default(),
    )
}

/// [`translate`] with the target's version and the task's renames.
pub fn translate_for(
    table: &TableInfo,
    target: Dialect,
    target_db: &str,
    target_table: &str,
    opts: &TranslateOptions,
    env: &TargetContext,
) -> Result<Translated, Vec<Problem>> {
    let name = table.full_name();
    if table.is_view {
        return Err(vec![Problem {
            object: name,
            reason: "is a view; Ferry migrates base tables".into(),
            fix: "create the view on the target after the migration, or exclude it in objects.exclude".into(),
        }]);
    }
    let Some(parsed) = parse_create(&table.create_sql) else {
        return Err(vec![Problem {
            object: name,
            reason: "its SHOW CREATE TABLE text could not be parsed".into(),
            fix: "create the table on the target by hand (types \"full\" without \"schema\"), or report this as a bug"
                .into(),
        }]);
    };
    let mut ctx = Ctx::new(table, target, env);
    ctx.target_engine = engine_for(&mut ctx);
    ctx.json_columns = json_columns(&ctx, &parsed.defs);
    let mut out = Definitions {
        target_name: qualified(target_db, target_table),
        ..Definitions::default()
    };
    for def in &parsed.defs {
        out.add(&mut ctx, def, &parsed.defs, opts);
    }
    if let (crate::schema::KeyKind::Declared, Some(key)) = (table.key_kind, &table.key) {
        out.add_declared_key(&mut ctx, key);
    }
    let options = rewrite_options(&mut ctx, parsed.options);
    let partition = rewrite_partition(&mut ctx, parsed.partition);
    if !ctx.problems.is_empty() {
        return Err(ctx.problems);
    }
    Ok(out.finish(&options, &partition, ctx.notes))
}

/// The translated definitions of a table: what goes into its `CREATE TABLE`
/// and what is added after the load.
#[derive(Default)]
struct Definitions {
    target_name: String,
    body: Vec<String>,
    /// Secondary indexes added after the load in one `ALTER TABLE`.
    deferred_keys: Vec<String>,
    /// Full-text and spatial indexes: one `ALTER TABLE` each.
    deferred_single: Vec<String>,
    deferred_fks: Vec<String>,
    references: Vec<(String, String)>,
}

impl Definitions {
    fn add(&mut self, ctx: &mut Ctx, def: &[Tok], defs: &[Vec<Tok>], opts: &TranslateOptions) {
        match classify_def(def) {
            DefKind::Column => {
                if let Some(d) = rewrite_column(ctx, def.to_vec()) {
                    self.body.push(render(&d));
                }
            }
            DefKind::ForeignKey => {
                let (d, r) = rewrite_foreign_key(ctx, def.to_vec());
                self.references.push(r);
                let stmt = format!("ALTER TABLE {} ADD {}", self.target_name, render(&d));
                if ctx.ob() {
                    ob_foreign_key_rules(ctx, &stmt);
                }
                self.deferred_fks.push(stmt);
            }
            DefKind::Check => {
                if let Some(d) = rewrite_check(ctx, def.to_vec()) {
                    self.body.push(render(&d));
                }
            }
            DefKind::Period => {
                if ctx.mariadb_target() {
                    self.body.push(render(def));
                } else {
                    let obj = ctx.name();
                    ctx.problem(
                        obj,
                        format!(
                            "uses a MariaDB application-time period ({}), which {} does not have",
                            render(def),
                            ctx.target_label()
                        ),
                        "drop the PERIOD FOR clause on the source (keep its two columns), or migrate to MariaDB".into(),
                    );
                }
            }
            DefKind::Index(kind) => {
                if let Some(d) = rewrite_index(ctx, def.to_vec(), kind) {
                    self.add_index(ctx, kind, &d, defs, opts);
                }
            }
        }
    }

    /// Into the `CREATE TABLE`, or after the load when `indexes_after_load`
    /// and the index is neither unique nor the AUTO_INCREMENT column's.
    fn add_index(
        &mut self,
        ctx: &Ctx,
        kind: IndexKind,
        d: &[Tok],
        defs: &[Vec<Tok>],
        opts: &TranslateOptions,
    ) {
        let deferrable = kind != IndexKind::Primary
            && kind != IndexKind::Unique
            && !starts_with_auto_inc(ctx, d, defs);
        if !(opts.indexes_after_load && deferrable) {
            self.body.push(render(d));
        } else if matches!(kind, IndexKind::Fulltext | IndexKind::Spatial) {
            self.deferred_single.push(format!(
                "ALTER TABLE {} ADD {}",
                self.target_name,
                render(d)
            ));
        } else {
            self.deferred_keys.push(format!("ADD {}", render(d)));
        }
    }

    /// The changes of the link are applied by the key `objects.keys`
    /// declares: the target must enforce it.
    fn add_declared_key(&mut self, ctx: &mut Ctx, key: &[String]) {
        let cols: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
        self.body
            .push(format!("UNIQUE KEY {DECLARED_KEY} ({})", cols.join(", ")));
        ctx.note(format!(
            "added UNIQUE KEY {DECLARED_KEY} ({}): the key objects.keys declares for this table",
            key.join(", ")
        ));
    }

    fn finish(self, options: &str, partition: &str, notes: Vec<String>) -> Translated {
        let target_name = &self.target_name;
        let mut create_sql = format!(
            "CREATE TABLE {target_name} (\n  {}\n)",
            self.body.join(",\n  ")
        );
        if !options.is_empty() {
            create_sql.push(' ');
            create_sql.push_str(options);
        }
        if !partition.is_empty() {
            create_sql.push('\n');
            create_sql.push_str(partition);
        }
        let mut deferred = Vec::new();
        if !self.deferred_keys.is_empty() {
            deferred.push(format!(
                "ALTER TABLE {target_name} {}",
                self.deferred_keys.join(", ")
            ));
        }
        deferred.extend(self.deferred_single);
        deferred.extend(self.deferred_fks);
        Translated {
            create_sql,
            deferred_indexes: deferred,
            notes,
            references: self.references,
        }
    }
}

/// A DDL statement from the source's binlog (CREATE/ALTER TABLE, CREATE
/// INDEX, ...), its names already mapped, made acceptable to the target the
/// way the schema stage's tables are: every character set and collation in it
/// (`CHARSET=`, `CHARACTER SET`, `COLLATE`, `CONVERT TO ...`, `_latin1'x'`
/// introducers) goes through the same mapping as `CREATE TABLE` and
/// `CREATE DATABASE`. Returns the statement and what changed.
pub fn translate_statement(
    sql: &str,
    target: Dialect,
    env: &TargetContext,
) -> (String, Vec<String>) {
    let table = placeholder_table("");
    let mut ctx = Ctx::new(&table, target, env);
    let mut toks = tokenize(sql);
    map_charset_tokens(&mut ctx, &mut toks, "statement");
    if ctx.notes.is_empty() {
        return (sql.to_string(), Vec::new());
    }
    (render(&toks), ctx.notes)
}

fn placeholder_table(db: &str) -> TableInfo {
    TableInfo {
        db: db.to_string(),
        name: String::new(),
        columns: Vec::new(),
        key: None,
        key_kind: crate::schema::KeyKind::None,
        create_sql: String::new(),
        rows_estimate: 0,
        avg_row_bytes: 0,
        engine: String::new(),
        is_view: false,
    }
}

/// A database's default character set and collation on the target, plus notes.
pub fn database_charset(
    target: Dialect,
    env: &TargetContext,
    db: &str,
    charset: &str,
    collation: &str,
) -> (String, String, Vec<String>) {
    let table = placeholder_table(db);
    let mut ctx = Ctx::new(&table, target, env);
    let obj = format!("database {db}");
    let cs = map_charset(&mut ctx, &obj, charset);
    let co = map_collation(&mut ctx, &obj, collation);
    (cs, co, ctx.notes)
}

/// OceanBase reports a MySQL version and its own: `5.7.25-OceanBase_CE-v4.2.1.0`.
/// Returns the version the dialect rules compare against.
pub fn target_version_from(version: &str, dialect: Dialect) -> Option<(u16, u16, u16)> {
    let text = match dialect {
        Dialect::Oceanbase => {
            let lc = version.to_ascii_lowercase();
            let at = lc.find("oceanbase")?;
            let rest = &version[at..];
            let v = rest.find(['v', 'V'])?;
            rest[v + 1..].to_string()
        }
        _ => version.to_string(),
    };
    let nums: Vec<u16> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    (nums.len() >= 2).then(|| (nums[0], nums[1], nums.get(2).copied().unwrap_or(0)))
}

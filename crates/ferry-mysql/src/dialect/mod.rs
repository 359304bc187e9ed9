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
pub(crate) mod lexer;
pub mod oceanbase;

use lexer::{find_kw, find_seq, matching, render, split_commas, tokenize, Kind, Tok};
use oceanbase::{ob_collation, ob_column_rules, ob_index_rules};

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

// ---------------------------------------------------------------- translation

/// The parts of a `CREATE TABLE`.
struct Parsed {
    defs: Vec<Vec<Tok>>,
    options: Vec<Tok>,
    partition: Vec<Tok>,
}

fn parse_create(sql: &str) -> Option<Parsed> {
    let toks = tokenize(sql);
    let create = toks.iter().position(|t| t.is("CREATE"))?;
    let table = toks.iter().skip(create).position(|t| t.is("TABLE"))? + create;
    let open = toks.iter().skip(table).position(|t| t.is_p('('))? + table;
    let close = matching(&toks, open);
    let defs = split_commas(&toks[open + 1..close]);
    let tail = &toks[(close + 1).min(toks.len())..];
    let split = find_kw(tail, "PARTITION").unwrap_or(tail.len());
    Some(Parsed {
        defs,
        options: tail[..split].to_vec(),
        partition: tail[split..].to_vec(),
    })
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
    fn mariadb_target(&self) -> bool {
        self.target == Dialect::Mariadb
    }
    fn ob(&self) -> bool {
        self.target == Dialect::Oceanbase
    }
    fn target_label(&self) -> &'static str {
        match self.target {
            Dialect::Mysql => "MySQL",
            Dialect::Mariadb => "MariaDB",
            Dialect::Oceanbase => "OceanBase (MySQL mode)",
        }
    }
    /// Whether the target is at least `v` (unknown: assumed recent).
    fn at_least(&self, v: (u16, u16, u16)) -> bool {
        self.env.version.is_none_or(|have| have >= v)
    }
    fn column(&self, name: &str) -> Option<&Column> {
        self.table.column(name)
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
    let target_name = qualified(target_db, target_table);

    let mut body: Vec<String> = Vec::new();
    let mut deferred_keys: Vec<String> = Vec::new();
    let mut deferred_fks: Vec<String> = Vec::new();
    let mut deferred_single: Vec<String> = Vec::new();
    let mut references = Vec::new();
    for def in &parsed.defs {
        match classify_def(def) {
            DefKind::Column => {
                if let Some(d) = rewrite_column(&mut ctx, def.clone()) {
                    body.push(render(&d));
                }
            }
            DefKind::ForeignKey => {
                let (d, r) = rewrite_foreign_key(&ctx, def.clone());
                references.push(r);
                let stmt = format!("ALTER TABLE {target_name} ADD {}", render(&d));
                // A backtick in any name is doubled when quoted. OceanBase
                // (live 4.3.5) answers "Parse error" to a FOREIGN KEY clause
                // on a table of a database whose name holds one, qualified or
                // not, where the same ALTER TABLE adding an index works.
                if ctx.ob() && stmt.contains("``") {
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
                deferred_fks.push(stmt);
            }
            DefKind::Check => {
                if let Some(d) = rewrite_check(&mut ctx, def.clone()) {
                    body.push(render(&d));
                }
            }
            DefKind::Period => {
                let obj = ctx.name();
                if !ctx.mariadb_target() {
                    ctx.problem(
                        obj,
                        format!(
                            "uses a MariaDB application-time period ({}), which {} does not have",
                            render(def),
                            ctx.target_label()
                        ),
                        "drop the PERIOD FOR clause on the source (keep its two columns), or migrate to MariaDB".into(),
                    );
                } else {
                    body.push(render(def));
                }
            }
            DefKind::Index(kind) => {
                let Some(d) = rewrite_index(&mut ctx, def.clone(), kind) else {
                    continue;
                };
                let deferrable = kind != IndexKind::Primary
                    && kind != IndexKind::Unique
                    && !starts_with_auto_inc(&ctx, &d, &parsed.defs);
                if opts.indexes_after_load && deferrable {
                    if matches!(kind, IndexKind::Fulltext | IndexKind::Spatial) {
                        deferred_single
                            .push(format!("ALTER TABLE {target_name} ADD {}", render(&d)));
                    } else {
                        deferred_keys.push(format!("ADD {}", render(&d)));
                    }
                } else {
                    body.push(render(&d));
                }
            }
        }
    }
    if let (crate::schema::KeyKind::Declared, Some(key)) = (table.key_kind, &table.key) {
        // The changes of the link are applied by this key: the target must enforce it.
        let cols: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
        body.push(format!("UNIQUE KEY {DECLARED_KEY} ({})", cols.join(", ")));
        ctx.note(format!(
            "added UNIQUE KEY {DECLARED_KEY} ({}): the key objects.keys declares for this table",
            key.join(", ")
        ));
    }
    let options = rewrite_options(&mut ctx, parsed.options);
    let partition = rewrite_partition(&mut ctx, parsed.partition);
    if !ctx.problems.is_empty() {
        return Err(ctx.problems);
    }
    let mut create_sql = format!("CREATE TABLE {target_name} (\n  {}\n)", body.join(",\n  "));
    if !options.is_empty() {
        create_sql.push(' ');
        create_sql.push_str(&options);
    }
    if !partition.is_empty() {
        create_sql.push('\n');
        create_sql.push_str(&partition);
    }
    let mut deferred = Vec::new();
    if !deferred_keys.is_empty() {
        deferred.push(format!(
            "ALTER TABLE {target_name} {}",
            deferred_keys.join(", ")
        ));
    }
    deferred.extend(deferred_single);
    deferred.extend(deferred_fks);
    Ok(Translated {
        create_sql,
        deferred_indexes: deferred,
        notes: ctx.notes,
        references,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexKind {
    Primary,
    Unique,
    Plain,
    Fulltext,
    Spatial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefKind {
    Column,
    Index(IndexKind),
    ForeignKey,
    Check,
    Period,
}

fn classify_def(def: &[Tok]) -> DefKind {
    let mut i = 0;
    if def.first().is_some_and(|t| t.is("CONSTRAINT")) {
        // CONSTRAINT [symbol] PRIMARY|UNIQUE|FOREIGN|CHECK
        i = 1;
        if def.get(1).is_some_and(|t| {
            !["PRIMARY", "UNIQUE", "FOREIGN", "CHECK"]
                .iter()
                .any(|k| t.is(k))
        }) {
            i = 2;
        }
    }
    let Some(t) = def.get(i) else {
        return DefKind::Column;
    };
    if t.kind != Kind::Word {
        return DefKind::Column;
    }
    match t.upper().as_str() {
        "PRIMARY" => DefKind::Index(IndexKind::Primary),
        "UNIQUE" => DefKind::Index(IndexKind::Unique),
        "KEY" | "INDEX" => DefKind::Index(IndexKind::Plain),
        "FULLTEXT" => DefKind::Index(IndexKind::Fulltext),
        "SPATIAL" => DefKind::Index(IndexKind::Spatial),
        "FOREIGN" => DefKind::ForeignKey,
        "CHECK" => DefKind::Check,
        "PERIOD" if def.get(i + 1).is_some_and(|t| t.is("FOR")) => DefKind::Period,
        _ => DefKind::Column,
    }
}

// ---------------------------------------------------------------- engines

fn engine_for(ctx: &mut Ctx) -> Option<String> {
    let src = ctx.source_engine.clone();
    let obj = ctx.name();
    match src.as_str() {
        "FEDERATED" | "FEDERATEDX" | "CONNECT" | "SPIDER" | "MRG_MYISAM" | "MERGE" | "SEQUENCE"
        | "OQGRAPH" => {
            ctx.problem(
                obj.clone(),
                format!("uses the {src} engine, whose rows live in other tables or servers (or are computed)"),
                "migrate the underlying tables instead and exclude this one in objects.exclude".into(),
            );
        }
        _ => {}
    }
    if ctx.ob() {
        if src != "INNODB" {
            ctx.note(format!(
                "{obj}: ENGINE={src} dropped: OceanBase has one storage engine"
            ));
        }
        return None;
    }
    if src != "INNODB" {
        ctx.note(format!(
            "{obj}: ENGINE={src} becomes InnoDB on the target (a transactional engine keeps the copy and apply exactly-once)"
        ));
    }
    Some("InnoDB".into())
}

// ---------------------------------------------------------------- columns

/// Columns stored as MariaDB JSON (LONGTEXT + CHECK (json_valid(`c`))) that become JSON.
fn json_columns(ctx: &Ctx, defs: &[Vec<Tok>]) -> Vec<String> {
    if ctx.mariadb_target() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for def in defs {
        let col = match classify_def(def) {
            DefKind::Column => {
                let Some(name) = def.first().and_then(Tok::ident) else {
                    continue;
                };
                let Some(i) = find_kw(def, "CHECK") else {
                    continue;
                };
                json_valid_of(&def[i + 1..]).filter(|c| *c == name)
            }
            DefKind::Check => find_kw(def, "CHECK").and_then(|i| json_valid_of(&def[i + 1..])),
            _ => None,
        };
        if let Some(c) = col {
            if ctx.column(&c).is_some_and(|c| c.data_type == "longtext") && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// `( json_valid ( `c` ) )` exactly: the column name.
fn json_valid_of(toks: &[Tok]) -> Option<String> {
    let t: Vec<&Tok> = toks.iter().take(6).collect();
    if t.len() == 6
        && t[0].is_p('(')
        && t[1].is("json_valid")
        && t[2].is_p('(')
        && t[3].kind == Kind::Quoted
        && t[4].is_p(')')
        && t[5].is_p(')')
    {
        return t[3].ident();
    }
    None
}

/// End (exclusive) of the data type at `def[1..]`: the type word, its (args), and
/// UNSIGNED / SIGNED / ZEROFILL.
fn type_end(def: &[Tok]) -> usize {
    let mut i = 2;
    if def.get(i).is_some_and(|t| t.is_p('(')) {
        i = matching(def, i) + 1;
    }
    // Two-word types.
    if def.get(1).is_some_and(|t| t.is("DOUBLE")) && def.get(i).is_some_and(|t| t.is("PRECISION")) {
        i += 1;
    }
    while def
        .get(i)
        .is_some_and(|t| t.is("UNSIGNED") || t.is("SIGNED") || t.is("ZEROFILL"))
    {
        i += 1;
    }
    i.min(def.len())
}

fn rewrite_column(ctx: &mut Ctx, mut def: Vec<Tok>) -> Option<Vec<Tok>> {
    let name = def.first().and_then(Tok::ident).unwrap_or_default();
    let obj = format!("{}.{}", ctx.name(), name);
    let col = ctx.column(&name).cloned();
    let data_type = col
        .as_ref()
        .map(|c| c.data_type.clone())
        .unwrap_or_else(|| {
            def.get(1)
                .map(|t| t.text.to_ascii_lowercase())
                .unwrap_or_default()
        });
    // System-versioning columns and sequences have no equivalent outside MariaDB.
    if !ctx.mariadb_target() {
        if find_seq(&def, &["AS", "ROW"]).is_some()
            || find_seq(&def, &["WITHOUT", "SYSTEM", "VERSIONING"]).is_some()
        {
            ctx.problem(
                obj.clone(),
                format!("is a system-versioning column, which {} does not have", ctx.target_label()),
                "remove system versioning on the source (ALTER TABLE ... DROP SYSTEM VERSIONING) or migrate to MariaDB"
                    .into(),
            );
        }
        if let Some(i) = find_kw(&def, "DEFAULT") {
            if def
                .get(i + 1)
                .is_some_and(|t| t.is("nextval") || t.is("next"))
            {
                ctx.problem(
                    obj.clone(),
                    format!(
                        "defaults to a MariaDB SEQUENCE value ({}), which {} does not have",
                        render(&def[i..]),
                        ctx.target_label()
                    ),
                    "use AUTO_INCREMENT on the source, or drop the default and generate the value in the application"
                        .into(),
                );
            }
        }
    }
    let end = type_end(&def);
    let new_type = mapped_type(ctx, &obj, &data_type, &name);
    if let Some(ty) = new_type {
        let mut toks = tokenize(&ty);
        if let Some(t) = toks.first_mut() {
            t.sp = true;
        }
        def.splice(1..end, toks);
    }
    let is_json = ctx.json_columns.contains(&name);
    if is_json {
        remove_charset_collate(&mut def);
        if let Some(i) = find_kw(&def, "CHECK") {
            if json_valid_of(&def[i + 1..]).is_some() {
                def.drain(i..i + 7);
            }
        }
    }
    map_charset_tokens(ctx, &mut def, &obj);
    rewrite_column_attrs(ctx, &mut def, &obj, &data_type);
    if ctx.ob() {
        ob_column_rules(ctx, &def, &obj, &data_type);
    }
    Some(def)
}

/// The target type for a MariaDB-only type, or None to keep it.
fn mapped_type(ctx: &mut Ctx, obj: &str, data_type: &str, name: &str) -> Option<String> {
    if ctx.json_columns.iter().any(|c| c == name) {
        ctx.note(format!(
            "{obj}: MariaDB JSON (LONGTEXT with CHECK json_valid) becomes the native JSON type"
        ));
        return Some("json".into());
    }
    if ctx.mariadb_target() {
        return None;
    }
    let (ty, what) = match data_type {
        "uuid" => ("char(36) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", "UUID"),
        "inet6" => (
            "varchar(39) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            "INET6",
        ),
        "inet4" => (
            "varchar(15) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            "INET4",
        ),
        _ => return None,
    };
    ctx.note(format!(
        "{obj}: MariaDB {what} becomes {ty} holding the text form ({} has no {what} type); values copy as text, \
         and ORDER BY on this column sorts as text",
        ctx.target_label()
    ));
    Some(ty.into())
}

fn remove_charset_collate(def: &mut Vec<Tok>) {
    let mut i = 0;
    while i < def.len() {
        let n = charset_clause_len(def, i);
        if n > 0 {
            def.drain(i..i + n);
        } else {
            i += 1;
        }
    }
}

/// Length of a `CHARACTER SET x` / `CHARSET x` / `COLLATE x` clause at `i` (0 if none).
fn charset_clause_len(def: &[Tok], i: usize) -> usize {
    let t = &def[i];
    let name_at = if t.is("CHARACTER") && def.get(i + 1).is_some_and(|t| t.is("SET")) {
        i + 2
    } else if t.is("CHARSET") || t.is("COLLATE") {
        i + 1
    } else {
        return 0;
    };
    let name_at = if def.get(name_at).is_some_and(|t| t.is_p('=')) {
        name_at + 1
    } else {
        name_at
    };
    if def.get(name_at).is_some_and(|t| t.kind != Kind::Punct) {
        name_at + 1 - i
    } else {
        0
    }
}

/// Map every `CHARACTER SET x`, `CHARSET x`, `COLLATE x` and `_charset'..'` in `toks`.
fn map_charset_tokens(ctx: &mut Ctx, toks: &mut [Tok], obj: &str) {
    for i in 0..toks.len() {
        let is_collate = toks[i].is("COLLATE");
        let n = charset_clause_len(toks, i);
        if n > 0 {
            let at = i + n - 1;
            let Some(old) = toks[at].ident() else {
                continue;
            };
            let new = if is_collate {
                map_collation(ctx, obj, &old)
            } else {
                map_charset(ctx, obj, &old)
            };
            if !new.eq_ignore_ascii_case(&old) {
                toks[at] = Tok {
                    kind: Kind::Word,
                    text: new,
                    sp: toks[at].sp,
                };
            }
        } else if toks[i].kind == Kind::Word
            && toks[i].text.starts_with('_')
            && toks
                .get(i + 1)
                .is_some_and(|t| t.kind == Kind::Str && !t.sp)
        {
            let cs = toks[i].text[1..].to_string();
            let new = map_charset(ctx, obj, &cs);
            if new != cs {
                toks[i].text = format!("_{new}");
            }
        }
    }
}

/// Column attributes: generated-column keywords, MariaDB-only attributes, defaults.
fn rewrite_column_attrs(ctx: &mut Ctx, def: &mut Vec<Tok>, obj: &str, data_type: &str) {
    let mut i = 2;
    while i < def.len() {
        let t = def[i].clone();
        if t.is("PERSISTENT") {
            def[i].text = "STORED".into();
        } else if t.is("COMPRESSED") && !ctx.mariadb_target() {
            let mut n = 1;
            if def.get(i + 1).is_some_and(|t| t.is_p('=')) {
                n = 3;
            }
            def.drain(i..(i + n).min(def.len()));
            ctx.note(format!(
                "{obj}: MariaDB column compression (COMPRESSED) dropped: {} stores it uncompressed",
                ctx.target_label()
            ));
            continue;
        } else if t.is("INVISIBLE") && ctx.ob() {
            def.remove(i);
            ctx.note(format!(
                "{obj}: INVISIBLE dropped; the column becomes visible to SELECT *"
            ));
            continue;
        } else if t.is("DEFAULT") && !ctx.mariadb_target() {
            i = rewrite_default(ctx, def, i, obj, data_type);
            continue;
        }
        i += 1;
    }
}

/// MySQL 8 (and OceanBase) take only literals and CURRENT_TIMESTAMP bare after
/// DEFAULT; an expression must be parenthesized, and BLOB/TEXT/JSON/GEOMETRY
/// take no literal default at all. MariaDB prints `DEFAULT uuid()` and
/// `DEFAULT 'x'` on TEXT. Returns the index after the default.
fn default_extent(def: &[Tok], start: usize) -> usize {
    let Some(first) = def.get(start) else {
        return def.len();
    };
    if first.is_p('(') {
        return matching(def, start) + 1;
    }
    let mut end = start + 1;
    if (first.is_p('-') || first.is_p('+')) && def.get(end).is_some() {
        end += 1;
    }
    if def.get(end).is_some_and(|t| t.kind == Kind::Str && !t.sp) {
        end += 1;
    }
    if first.kind == Kind::Word && def.get(end).is_some_and(|t| t.is_p('(')) {
        end = matching(def, end) + 1;
    }
    end
}

fn rewrite_default(
    ctx: &mut Ctx,
    def: &mut Vec<Tok>,
    at: usize,
    obj: &str,
    data_type: &str,
) -> usize {
    let start = at + 1;
    let Some(first) = def.get(start).cloned() else {
        return def.len();
    };
    if ctx.ob() && is_lob_type(data_type) && !first.is("NULL") {
        return oceanbase::drop_lob_default(ctx, def, at, obj, data_type);
    }
    if first.is_p('(') {
        return matching(def, start) + 1;
    }
    // The extent of the value: [sign] literal | _cs'..' | x'..' | word [ (args) ].
    let mut end = start + 1;
    if (first.is_p('-') || first.is_p('+')) && def.get(end).is_some() {
        end += 1;
    }
    if def.get(end).is_some_and(|t| t.kind == Kind::Str && !t.sp) {
        end += 1;
    }
    let is_call = first.kind == Kind::Word && def.get(end).is_some_and(|t| t.is_p('('));
    if is_call {
        end = matching(def, end) + 1;
    }
    let is_literal = !is_call
        && (first.kind == Kind::Str
            || first
                .text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
            || first.is_p('-')
            || first.is_p('+')
            || first.is("NULL")
            || first.is("TRUE")
            || first.is("FALSE")
            || (first.kind == Kind::Word
                && def
                    .get(start + 1)
                    .is_some_and(|t| t.kind == Kind::Str && !t.sp)));
    let now_fn = ["CURRENT_TIMESTAMP", "NOW", "LOCALTIME", "LOCALTIMESTAMP"]
        .iter()
        .any(|f| first.is(f));
    let lob = is_lob_type(data_type);
    let wrap = if is_literal {
        lob && !first.is("NULL")
    } else {
        !now_fn
    };
    if wrap {
        def.insert(end, Tok::punct(')', false));
        def.insert(start, Tok::punct('(', true));
        if let Some(t) = def.get_mut(start + 1) {
            t.sp = false;
        }
        ctx.note(format!(
            "{obj}: DEFAULT {} is written as an expression default, DEFAULT ({}), as {} requires",
            render(&def[start + 1..end + 1]),
            render(&def[start + 1..end + 1]),
            ctx.target_label()
        ));
        return end + 2;
    }
    end
}

fn is_lob_type(data_type: &str) -> bool {
    ColumnKind::of(data_type).is_lob()
}

fn is_spatial_type(data_type: &str) -> bool {
    ColumnKind::of(data_type) == ColumnKind::Spatial
}

// ---------------------------------------------------------------- charsets and collations

fn mbmaxlen(charset: &str) -> u64 {
    match charset.to_ascii_lowercase().as_str() {
        "latin1" | "latin2" | "latin5" | "latin7" | "ascii" | "binary" | "cp1250" | "cp1251"
        | "cp1256" | "cp1257" | "cp850" | "cp852" | "cp866" | "dec8" | "greek" | "hebrew"
        | "hp8" | "keybcs2" | "koi8r" | "koi8u" | "macce" | "macroman" | "swe7" | "tis620"
        | "armscii8" | "geostd8" => 1,
        "gbk" | "big5" | "sjis" | "cp932" | "euckr" | "gb2312" | "ucs2" => 2,
        "utf8" | "utf8mb3" | "ujis" | "eucjpms" => 3,
        _ => 4,
    }
}

/// The character set a collation belongs to.
fn collation_charset(collation: &str) -> String {
    let c = collation.to_ascii_lowercase();
    if c == "binary" {
        return c;
    }
    for cs in ["gb18030_2022", "utf8mb4", "utf8mb3", "utf16le"] {
        if c.starts_with(&format!("{cs}_")) {
            return cs.into();
        }
    }
    c.split('_').next().unwrap_or("").to_string()
}

fn map_charset(ctx: &mut Ctx, obj: &str, cs: &str) -> String {
    let lc = cs.to_ascii_lowercase();
    let probed = ctx.env.caps.as_ref().filter(|c| !c.charsets.is_empty());
    if let Some(caps) = probed {
        if caps.has_charset(&lc) {
            return if ctx.ob() { lc } else { cs.to_string() };
        }
        if !caps.has_charset("utf8mb4") {
            return cs.to_string();
        }
        let to = "utf8mb4";
        ctx.note(format!(
            "{obj}: character set {cs} is not on the target (it has {}); it becomes {to}, which holds every \
             character of {cs} (the target stores more bytes per character)",
            caps.charsets.join(", ")
        ));
        return to.into();
    }
    if !ctx.ob() {
        return cs.to_string();
    }
    if lc == "utf8" || lc == "utf8mb3" {
        ctx.note(format!("{obj}: character set {cs} becomes utf8mb4 (OceanBase treats utf8 as a synonym of utf8mb4)"));
        return "utf8mb4".into();
    }
    if oceanbase::CHARSETS.contains(&lc.as_str()) {
        return lc;
    }
    ctx.note(format!(
        "{obj}: character set {cs} is not supported by OceanBase's MySQL mode (supported: {}); it becomes utf8mb4, \
         which holds every character of {cs}",
        oceanbase::CHARSETS.join(", ")
    ));
    "utf8mb4".into()
}

/// Collation sensitivity classes, for choosing a replacement that never
/// merges values the source keeps apart (which would break unique keys).
fn collation_kind(c: &str) -> &'static str {
    if c.ends_with("_bin") || c == "binary" || c.contains("_cs") || c.ends_with("_w2") {
        "bin"
    } else if c.contains("_as_ci") {
        "as_ci"
    } else {
        "ci"
    }
}

fn map_collation(ctx: &mut Ctx, obj: &str, collation: &str) -> String {
    let c = collation.to_ascii_lowercase();
    let new = match ctx.target {
        Dialect::Mariadb => mariadb_collation(ctx, &c),
        Dialect::Mysql => mysql_collation(ctx, &c),
        Dialect::Oceanbase => ob_collation(ctx, &c),
    };
    let new = match &ctx.env.caps {
        Some(caps) if !ctx.ob() && !caps.collations.is_empty() => fit_collation(caps, &c, &new),
        _ => new,
    };
    if new != c {
        let consequence = if collation_kind(&c) == "ci" && collation_kind(&new) == "ci" {
            format!(
                ": comparisons and sorting follow {new}, so values {collation} keeps apart may compare equal \
                 (under utf8mb4_general_ci 'ß' equals 's') and a unique key over such values would refuse a row; \
                 the precheck looks for such collisions in the source data"
            )
        } else {
            String::new()
        };
        ctx.note(format!(
            "{obj}: collation {collation} becomes {new} on {} (its nearest equivalent there){consequence}",
            ctx.target_label()
        ));
    }
    new
}

/// The collation the target has that is nearest to `want` (itself chosen for
/// source collation `source`): `want` when the target has it; else, in the
/// same character set, the binary collation for a case- or accent-sensitive
/// one (it keeps every distinct value distinct), and for a case-insensitive
/// one the first of the Unicode collations, then `general_ci`, then the
/// character set's first collation.
pub(crate) fn fit_collation(caps: &caps::TargetCaps, source: &str, want: &str) -> String {
    if caps.has_collation(want) {
        return want.to_string();
    }
    let mut cs = collation_charset(want);
    let mut have = caps.collations_of(&cs);
    if have.is_empty() && caps.has_charset("utf8mb4") {
        // The target lacks the character set itself (latin1 on OceanBase
        // seekdb): `map_charset` makes the column utf8mb4, so its collation
        // must be one of utf8mb4's, or the target refuses the table.
        cs = "utf8mb4".into();
        have = caps.collations_of(&cs);
    }
    let pick = |names: &[String]| names.iter().find(|n| have.contains(&n.as_str())).cloned();
    let candidates: Vec<String> = if collation_kind(source) != "ci" {
        vec![format!("{cs}_bin"), "binary".into()]
    } else {
        [
            "unicode_ci",
            "unicode_520_ci",
            "uca1400_ai_ci",
            "0900_ai_ci",
            "general_ci",
        ]
        .iter()
        .map(|s| format!("{cs}_{s}"))
        .collect()
    };
    pick(&candidates)
        .or_else(|| have.first().map(|s| s.to_string()))
        .unwrap_or_else(|| want.to_string())
}

fn mysql_collation(ctx: &Ctx, c: &str) -> String {
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

fn mariadb_collation(ctx: &Ctx, c: &str) -> String {
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

// ---------------------------------------------------------------- indexes and constraints

/// Whether an index starts with the AUTO_INCREMENT column (which must stay indexed at creation).
fn starts_with_auto_inc(_ctx: &Ctx, index: &[Tok], defs: &[Vec<Tok>]) -> bool {
    let Some(open) = index.iter().position(|t| t.is_p('(')) else {
        return false;
    };
    let Some(first) = index.get(open + 1).and_then(Tok::ident) else {
        return false;
    };
    defs.iter().any(|d| {
        classify_def(d) == DefKind::Column
            && d.first().and_then(Tok::ident).as_deref() == Some(first.as_str())
            && find_kw(d, "AUTO_INCREMENT").is_some()
    })
}

/// The name of an index definition, for messages.
fn index_label(ctx: &Ctx, def: &[Tok]) -> String {
    let name = def
        .iter()
        .take_while(|t| !t.is_p('('))
        .filter(|t| t.kind == Kind::Quoted)
        .filter_map(Tok::ident)
        .last()
        .unwrap_or_else(|| "PRIMARY".into());
    format!("{} index `{name}`", ctx.name())
}

fn rewrite_index(ctx: &mut Ctx, mut def: Vec<Tok>, kind: IndexKind) -> Option<Vec<Tok>> {
    let label = index_label(ctx, &def);
    if !ctx.mariadb_target() {
        if def
            .windows(2)
            .any(|w| w[0].is("WITHOUT") && w[1].is("OVERLAPS"))
        {
            ctx.problem(
                label.clone(),
                format!(
                    "uses WITHOUT OVERLAPS (MariaDB application-time periods), which {} does not have",
                    ctx.target_label()
                ),
                "drop WITHOUT OVERLAPS from the key on the source, or migrate to MariaDB".into(),
            );
        }
        let hash = find_seq(&def, &["USING", "HASH"]);
        let memory = matches!(ctx.source_engine.as_str(), "MEMORY" | "HEAP");
        if let Some(h) = hash {
            if kind == IndexKind::Unique && !memory {
                ctx.problem(
                    label.clone(),
                    format!(
                        "is a MariaDB long unique key (UNIQUE ... USING HASH over BLOB/TEXT or more than 3072 bytes); \
                         {} cannot enforce uniqueness over whole BLOB/TEXT values",
                        ctx.target_label()
                    ),
                    "on the source, replace it with a unique key on a prefix, or on a stored generated hash column \
                     (e.g. ADD COLUMN h BINARY(32) AS (UNHEX(SHA2(col,256))) STORED, ADD UNIQUE (h))"
                        .into(),
                );
            } else {
                def.drain(h..h + 2);
            }
        }
    }
    // MySQL 8 functional key parts: `KEY k ((expr))`.
    let functional = def.iter().position(|t| t.is_p('(')).is_some_and(|open| {
        let close = matching(&def, open);
        split_commas(&def[open + 1..close])
            .iter()
            .any(|part| part.first().is_some_and(|t| t.is_p('(')))
    });
    if functional {
        match ctx.target {
            Dialect::Mysql => {}
            Dialect::Mariadb => ctx.problem(
                label.clone(),
                "has a functional key part (an expression), which MariaDB cannot index".into(),
                "index a generated column instead: ADD COLUMN g <type> AS (<expr>) VIRTUAL, ADD KEY (g)".into(),
            ),
            Dialect::Oceanbase => ctx.note(format!(
                "{label}: functional key parts need OceanBase's function-based indexes (4.x); \
                 if the target refuses it, index a generated column instead"
            )),
        }
    }
    // MariaDB IGNORED / MySQL INVISIBLE indexes.
    if let Some(i) = find_kw(&def, "IGNORED").or_else(|| find_kw(&def, "INVISIBLE")) {
        match ctx.target {
            Dialect::Mysql => def[i].text = "INVISIBLE".into(),
            Dialect::Mariadb => def[i].text = "IGNORED".into(),
            Dialect::Oceanbase => {
                def.remove(i);
                ctx.note(format!(
                    "{label}: the index is created visible (OceanBase ignores INVISIBLE/IGNORED)"
                ));
            }
        }
    }
    if ctx.ob() {
        ob_index_rules(ctx, &mut def, kind, &label);
    }
    if let Some(i) = find_seq(&def, &["WITH", "PARSER"]) {
        let parser = def
            .get(i + 2)
            .and_then(Tok::ident)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let keep = match ctx.target {
            Dialect::Mysql => true,
            Dialect::Mariadb => false,
            Dialect::Oceanbase => parser == "ngram",
        };
        if !keep {
            def.drain(i..(i + 3).min(def.len()));
            ctx.note(format!(
                "{label}: full-text parser {parser} is not available on {}; the default parser is used",
                ctx.target_label()
            ));
        }
    }
    map_charset_tokens(ctx, &mut def, &label);
    Some(def)
}

/// Upper bound of an index entry's length in bytes, from its key parts.
fn index_bytes(ctx: &Ctx, def: &[Tok]) -> u64 {
    let Some(open) = def.iter().position(|t| t.is_p('(')) else {
        return 0;
    };
    let close = matching(def, open);
    split_commas(&def[open + 1..close])
        .iter()
        .map(|part| {
            let Some(col) = part
                .first()
                .and_then(Tok::ident)
                .and_then(|n| ctx.column(&n))
            else {
                return 0;
            };
            let prefix = part
                .get(1)
                .filter(|t| t.is_p('('))
                .and_then(|_| part.get(2))
                .and_then(|t| t.text.parse::<u64>().ok());
            let cs = col.charset.as_deref().map(|c| {
                if ctx.ob() && c.starts_with("utf8") {
                    "utf8mb4"
                } else {
                    c
                }
            });
            match prefix {
                Some(p) => p * cs.map(mbmaxlen).unwrap_or(1),
                None => column_bytes(col, cs),
            }
        })
        .sum()
}

fn column_bytes(col: &Column, charset: Option<&str>) -> u64 {
    let len = col
        .column_type
        .split_once('(')
        .and_then(|(_, r)| r.split([')', ',']).next())
        .and_then(|n| n.trim().parse::<u64>().ok());
    match col.data_type.as_str() {
        "tinyint" | "year" => 1,
        "smallint" => 2,
        "mediumint" | "date" | "time" => 3,
        "int" | "integer" | "float" | "timestamp" => 4,
        "bigint" | "double" | "datetime" | "set" => 8,
        "enum" => 2,
        "decimal" | "numeric" => len.unwrap_or(10) / 2 + 2,
        "bit" => len.unwrap_or(1).div_ceil(8),
        "uuid" => 36 * 4,
        "inet6" => 39 * 4,
        "inet4" => 15 * 4,
        "char" | "varchar" => len.unwrap_or(255) * charset.map(mbmaxlen).unwrap_or(4),
        "binary" | "varbinary" => len.unwrap_or(255),
        _ => 3072,
    }
}

fn rewrite_check(ctx: &mut Ctx, def: Vec<Tok>) -> Option<Vec<Tok>> {
    if let Some(i) = find_kw(&def, "CHECK") {
        if json_valid_of(&def[i + 1..]).is_some_and(|c| ctx.json_columns.contains(&c)) {
            return None;
        }
    }
    let mut def = def;
    let obj = ctx.name();
    map_charset_tokens(ctx, &mut def, &obj);
    Some(def)
}

/// `[CONSTRAINT x] FOREIGN KEY (..) REFERENCES [db.]t (..) ...` with the
/// referenced table renamed as the task renames it; returns the source table referenced.
fn rewrite_foreign_key(ctx: &Ctx, mut def: Vec<Tok>) -> (Vec<Tok>, (String, String)) {
    let Some(r) = find_kw(&def, "REFERENCES") else {
        return (def, (String::new(), String::new()));
    };
    let first = def.get(r + 1).and_then(Tok::ident).unwrap_or_default();
    let qualified_ref = def.get(r + 2).is_some_and(|t| t.is_p('.'));
    let (src_db, src_table, n) = if qualified_ref {
        (
            first,
            def.get(r + 3).and_then(Tok::ident).unwrap_or_default(),
            3,
        )
    } else {
        (ctx.table.db.clone(), first, 1)
    };
    let (tdb, tt) = target_name(&ctx.env.renames, &src_db, &src_table);
    let new = vec![
        Tok::quoted(&tdb),
        Tok::punct('.', false),
        Tok {
            sp: false,
            ..Tok::quoted(&tt)
        },
    ];
    def.splice(r + 1..r + 1 + n, new);
    (def, (src_db, src_table))
}

/// Where a source table lands, after the task's renames (as `TaskSpec::target_name`).
pub fn target_name(renames: &BTreeMap<String, String>, db: &str, table: &str) -> (String, String) {
    if let Some((d, t)) = renames
        .get(&format!("{db}.{table}"))
        .and_then(|to| to.split_once('.'))
    {
        return (d.to_string(), t.to_string());
    }
    (
        renames.get(db).cloned().unwrap_or_else(|| db.to_string()),
        table.to_string(),
    )
}

// ---------------------------------------------------------------- table options and partitions

/// One table option: its name (upper case, words joined by a space) and the tokens of its value.
struct TableOption {
    /// Upper case, words joined by a space, quotes removed: for matching.
    name: String,
    /// As written: for output.
    raw_name: String,
    value: Vec<Tok>,
}

fn parse_options(toks: &[Tok]) -> Vec<TableOption> {
    let mut out = Vec::new();
    let mut i = 0;
    let multi = [
        &["DEFAULT", "CHARACTER", "SET"][..],
        &["DEFAULT", "CHARSET"],
        &["DEFAULT", "COLLATE"],
        &["CHARACTER", "SET"],
        &["WITH", "SYSTEM", "VERSIONING"],
        &["DATA", "DIRECTORY"],
        &["INDEX", "DIRECTORY"],
        &["STORAGE", "ENGINE"],
    ];
    while i < toks.len() {
        if toks[i].is_p(',') || toks[i].kind == Kind::Comment {
            i += 1;
            continue;
        }
        let words = multi
            .iter()
            .find(|seq| {
                seq.iter()
                    .enumerate()
                    .all(|(k, w)| toks.get(i + k).is_some_and(|t| t.is(w)))
            })
            .map(|seq| seq.len())
            .unwrap_or(1);
        let name: Vec<String> = toks[i..i + words]
            .iter()
            .map(|t| t.ident().unwrap_or_default().to_ascii_uppercase())
            .collect();
        let name = name.join(" ");
        let raw_name = toks[i..i + words]
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        i += words;
        if name == "WITH SYSTEM VERSIONING" {
            out.push(TableOption {
                name,
                raw_name,
                value: Vec::new(),
            });
            continue;
        }
        if toks.get(i).is_some_and(|t| t.is_p('=')) {
            i += 1;
        }
        let mut value = Vec::new();
        if let Some(v) = toks.get(i) {
            if v.is_p('(') {
                let end = matching(toks, i);
                value.extend_from_slice(&toks[i..=end]);
                i = end + 1;
            } else {
                value.push(v.clone());
                i += 1;
            }
        }
        out.push(TableOption {
            name,
            raw_name,
            value,
        });
    }
    out
}

/// MariaDB-only table options, dropped for MySQL and OceanBase targets.
const MARIADB_OPTIONS: &[&str] = &[
    "PAGE_CHECKSUM",
    "PAGE_COMPRESSED",
    "PAGE_COMPRESSION_LEVEL",
    "TRANSACTIONAL",
    "ENCRYPTED",
    "ENCRYPTION_KEY_ID",
    "IETF_QUOTES",
    "SEQUENCE",
];

/// Options OceanBase keeps; it manages storage itself and ignores the rest.
const OB_OPTIONS: &[&str] = &[
    "AUTO_INCREMENT",
    "DEFAULT CHARSET",
    "DEFAULT CHARACTER SET",
    "CHARSET",
    "CHARACTER SET",
    "COLLATE",
    "DEFAULT COLLATE",
    "COMMENT",
];

/// Options any target keeps (the rest of MySQL's list).
const MYSQL_OPTIONS: &[&str] = &[
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

fn rewrite_options(ctx: &mut Ctx, toks: Vec<Tok>) -> String {
    let obj = ctx.name();
    let mut out: Vec<String> = Vec::new();
    if let Some(engine) = &ctx.target_engine {
        out.push(format!("ENGINE={engine}"));
    }
    let engine_changed = ctx.source_engine != "INNODB";
    let mut dropped: Vec<String> = Vec::new();
    for opt in parse_options(&toks) {
        let name = opt.name.as_str();
        let mut value = opt.value.clone();
        let raw = render(&value);
        match name {
            "ENGINE" | "STORAGE ENGINE" => continue,
            "WITH SYSTEM VERSIONING" => {
                if ctx.mariadb_target() {
                    out.push(name.into());
                } else {
                    ctx.problem(
                        obj.clone(),
                        format!("is a system-versioned table (WITH SYSTEM VERSIONING), which {} does not have", ctx.target_label()),
                        format!(
                            "migrate it to MariaDB, or drop versioning on the source (ALTER TABLE {} DROP SYSTEM VERSIONING; \
                             this deletes the history rows)",
                            qualified(&ctx.table.db, &ctx.table.name)
                        ),
                    );
                }
                continue;
            }
            "SEQUENCE" if raw == "1" => {
                ctx.problem(
                    obj.clone(),
                    "is a MariaDB SEQUENCE, not a table".into(),
                    "exclude it in objects.exclude and recreate the sequence (or an AUTO_INCREMENT) on the target"
                        .into(),
                );
                continue;
            }
            "DATA DIRECTORY" | "INDEX DIRECTORY" | "UNION" | "INSERT_METHOD" | "CONNECTION"
            | "TABLESPACE" => {
                dropped.push(format!("{name}={raw}"));
                continue;
            }
            _ => {}
        }
        let keep = match ctx.target {
            Dialect::Oceanbase => OB_OPTIONS.contains(&name),
            Dialect::Mysql => {
                MYSQL_OPTIONS.contains(&name) && (name != "ROW_FORMAT" || innodb_row_format(&raw))
            }
            Dialect::Mariadb => {
                !(engine_changed
                    && (MARIADB_OPTIONS.contains(&name) || name == "ROW_FORMAT")
                    && !innodb_row_format(&raw))
            }
        };
        if !keep {
            dropped.push(format!("{name}={raw}"));
            continue;
        }
        if name.contains("CHARSET") || name.contains("CHARACTER SET") || name.contains("COLLATE") {
            let Some(v) = value.first().and_then(Tok::ident) else {
                continue;
            };
            let new = if name.contains("COLLATE") {
                map_collation(ctx, &obj, &v)
            } else {
                map_charset(ctx, &obj, &v)
            };
            value = vec![Tok::word(&new)];
        }
        let text = render(&value);
        out.push(format!("{}={}", opt.raw_name, text.trim_start()));
    }
    if !dropped.is_empty() {
        ctx.note(format!(
            "{obj}: table options dropped ({} does not take them): {}",
            ctx.target_label(),
            dropped.join(" ")
        ));
    }
    out.join(" ")
}

fn innodb_row_format(v: &str) -> bool {
    ["DEFAULT", "DYNAMIC", "COMPACT", "REDUNDANT", "COMPRESSED"]
        .iter()
        .any(|f| v.eq_ignore_ascii_case(f))
}

fn rewrite_partition(ctx: &mut Ctx, mut toks: Vec<Tok>) -> String {
    if toks.is_empty() {
        return String::new();
    }
    let obj = ctx.name();
    if find_seq(&toks, &["BY", "SYSTEM_TIME"]).is_some() && !ctx.mariadb_target() {
        ctx.problem(
            obj.clone(),
            format!(
                "is partitioned BY SYSTEM_TIME (MariaDB system versioning), which {} does not have",
                ctx.target_label()
            ),
            "remove the SYSTEM_TIME partitioning and system versioning on the source, or migrate to MariaDB".into(),
        );
    }
    // ENGINE inside partition definitions: the table's engine, or none for OceanBase.
    let mut i = 0;
    while i < toks.len() {
        let storage = toks[i].is("STORAGE") && toks.get(i + 1).is_some_and(|t| t.is("ENGINE"));
        if toks[i].is("ENGINE") || storage {
            let name_at = i + if storage { 2 } else { 1 };
            let value_at = if toks.get(name_at).is_some_and(|t| t.is_p('=')) {
                name_at + 1
            } else {
                name_at
            };
            match &ctx.target_engine {
                Some(e) => {
                    if let Some(t) = toks.get_mut(value_at) {
                        t.text = e.clone();
                        t.kind = Kind::Word;
                    }
                    i = value_at + 1;
                }
                None => {
                    toks.drain(i..(value_at + 1).min(toks.len()));
                }
            }
            continue;
        }
        if (toks[i].is("DATA") || toks[i].is("INDEX"))
            && toks.get(i + 1).is_some_and(|t| t.is("DIRECTORY"))
        {
            let value_at = if toks.get(i + 2).is_some_and(|t| t.is_p('=')) {
                i + 3
            } else {
                i + 2
            };
            ctx.note(format!(
                "{obj}: partition {} dropped (a path on the source server)",
                render(&toks[i..=value_at.min(toks.len() - 1)])
            ));
            toks.drain(i..(value_at + 1).min(toks.len()));
            continue;
        }
        i += 1;
    }
    if ctx.ob() {
        while let Some(i) = find_kw(&toks, "LINEAR") {
            toks.remove(i);
            ctx.note(format!(
                "{obj}: LINEAR HASH/KEY partitioning becomes HASH/KEY (OceanBase does not support LINEAR); rows spread differently"
            ));
        }
        let n = partition_count(&toks);
        if n > oceanbase::MAX_PARTITIONS {
            ctx.problem(
                obj.clone(),
                format!("has {n} partitions; OceanBase's MySQL mode allows {} per table by default", oceanbase::MAX_PARTITIONS),
                "raise the tenant parameter max_partition_num on the target (up to 65536), or merge partitions on the source"
                    .into(),
            );
        }
    }
    let obj2 = obj.clone();
    map_charset_tokens(ctx, &mut toks, &obj2);
    render(&toks)
}

/// Partitions times subpartitions, from `PARTITIONS n` / `SUBPARTITIONS n` or the definitions.
fn partition_count(toks: &[Tok]) -> u64 {
    let count_after = |kw: &str| -> Option<u64> {
        let i = find_kw(toks, kw)?;
        toks.get(i + 1)?.text.parse().ok()
    };
    let parts = count_after("PARTITIONS").unwrap_or_else(|| {
        let mut depth = 0i32;
        let mut n = 0;
        for t in toks {
            if t.is_p('(') {
                depth += 1;
            } else if t.is_p(')') {
                depth -= 1;
            } else if depth == 1 && t.is("PARTITION") {
                n += 1;
            }
        }
        n.max(1)
    });
    parts * count_after("SUBPARTITIONS").unwrap_or(1)
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

#[cfg(test)]
mod tests {
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
                p[0].reason.contains("system-versioned")
                    && p[0].fix.contains("DROP SYSTEM VERSIONING"),
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
}

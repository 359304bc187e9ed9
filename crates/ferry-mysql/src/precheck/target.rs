//! The target side of each selected table: the databases it receives, its
//! tables (empty or planned, same columns, translatable DDL), collation
//! collisions, SRIDs, LOAD DATA, and a reverse link's binlog on OceanBase.

use std::collections::{BTreeMap, BTreeSet};

use ferry_core::model::CheckItem;
use ferry_core::task::{Dialect, MigrationType, TaskSpec};
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::column_kind::ColumnKind;
use crate::conn::{qualified, quote_ident, Endpoint};
use crate::dialect::caps::{self, TargetCaps};
use crate::dialect::{translate_for, TargetContext, TranslateOptions};
use crate::schema::{self, TableInfo};

use super::server::{open, Server};
use super::{fail, pass, warn};

/// The databases the target receives (from literal include patterns and
/// renames, plus the meta schema), and the include patterns with a wildcard
/// database, whose target databases only the source's table list tells.
pub(super) fn target_databases(spec: &TaskSpec) -> (Vec<String>, Vec<String>) {
    let mut dbs = BTreeSet::new();
    let mut unknown = Vec::new();
    for p in &spec.objects.include {
        let Some((db, table)) = p.split_once('.') else {
            continue;
        };
        if db.contains(['*', '?']) {
            unknown.push(p.clone());
        } else if table.contains(['*', '?']) {
            dbs.insert(
                spec.objects
                    .rename
                    .get(db)
                    .cloned()
                    .unwrap_or_else(|| db.to_string()),
            );
        } else {
            dbs.insert(spec.target_name(db, table).0);
        }
    }
    for (from, to) in &spec.objects.rename {
        if let (Some((db, table)), Some((to_db, _))) = (from.split_once('.'), to.split_once('.')) {
            if spec.selects(db, table) {
                dbs.insert(to_db.to_string());
            }
        }
    }
    dbs.insert(spec.options.meta_schema.clone());
    (dbs.into_iter().collect(), unknown)
}

/// A full copy with `copy_write: load_data` needs `LOAD DATA LOCAL INFILE`;
/// without it the copy falls back to multi-row INSERT, which is only slower.
pub(super) async fn load_data_item(conn: &mut Conn, srv: &Server, oceanbase: bool) -> CheckItem {
    match crate::copy::load_data_refusal(conn, oceanbase).await {
        None => pass(
            &srv.check("load_data"),
            &srv.role,
            "LOAD DATA LOCAL INFILE is allowed: the copy uses it",
        ),
        Some(why) => warn(
            &srv.check("load_data"),
            &srv.role,
            format!("{why}: the full copy writes with multi-row INSERT instead (slower)"),
            srv.account.grant("FILE", "*.*"),
        ),
    }
}

/// A reverse link reads the target's binlog. OceanBase exposes its changes as
/// a MySQL binlog only through its Binlog Service (obbinlog, reached through
/// ODP); a server without it (`SHOW MASTER STATUS` is not supported) cannot
/// be the start of a reverse link.
pub(super) fn oceanbase_reverse_item(srv: &Server, caps: &TargetCaps) -> CheckItem {
    fail(
        &srv.check("reverse_binlog"),
        &srv.role,
        format!(
            "\"reverse\" is in types, but this OceanBase server ({}) has no binary log a reverse link can read \
             (SHOW MASTER STATUS is not supported): OceanBase offers a MySQL binlog only through its Binlog Service",
            oceanbase_name(caps)
        ),
        "deploy OceanBase's Binlog Service (obbinlog) for this tenant and point the target secret at its ODP \
         endpoint, or remove \"reverse\" from types: the switch then completes without a reverse link and the \
         rollback plan is yours",
    )
}

/// The OceanBase server as its operator knows it: `OceanBase 4.3.5.3 seekdb`.
fn oceanbase_name(caps: &TargetCaps) -> &str {
    caps.version_comment
        .split(" (")
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(&caps.version)
}

/// An OceanBase server in a task whose target `dialect` says otherwise. The
/// copy follows the probed server, but the schema's translation, the sync's
/// statements and the session's statement limit follow the declared dialect,
/// so such a task would run with a mix of both. `None` when they agree; the
/// other way round (`oceanbase` for another server) is refused at connect.
pub(super) fn dialect_item(caps: &TargetCaps, spec: &TaskSpec) -> Option<CheckItem> {
    if !caps.is_oceanbase() || spec.target.dialect == Dialect::Oceanbase {
        return None;
    }
    let declared = spec.target.dialect.as_str();
    Some(fail(
        "target.dialect",
        "target",
        format!(
            "the target is OceanBase ({}), but the task's target \"dialect\" is \"{declared}\": the schema and \
             the sync would follow {declared}'s rules, and OceanBase's 10-second statement limit would stay",
            oceanbase_name(caps),
        ),
        "set \"dialect\": \"oceanbase\" in the task's target (the task file), then `ferry run TASK.json` again",
    ))
}

/// What the table checks know about the target server.
pub(super) struct TargetSide {
    pub(super) conn: Conn,
    pub(super) srv: Server,
    pub(super) caps: TargetCaps,
}

impl TargetSide {
    pub(super) async fn open(ep: &Endpoint) -> Result<TargetSide, CheckItem> {
        let mut conn = open(ep).await?;
        let srv = Server::read(&mut conn, ep).await?;
        let caps = caps::probe(&mut conn, "target").await.unwrap_or_default();
        Ok(TargetSide { conn, srv, caps })
    }

    /// The translation context: the target's own capabilities and the task's renames.
    pub(super) fn context(&self, spec: &TaskSpec) -> TargetContext {
        TargetContext {
            version: self.caps.rules_version(spec.target.dialect),
            renames: spec.objects.rename.clone(),
            caps: (!self.caps.version.is_empty()).then(|| self.caps.clone()),
        }
    }
}

pub(super) async fn target_items(
    s: &mut Conn,
    t: &mut TargetSide,
    spec: &TaskSpec,
    planned: &BTreeSet<String>,
    info: &TableInfo,
) -> Vec<CheckItem> {
    let name = info.full_name();
    let (tdb, ttable) = spec.target_name(&info.db, &info.name);
    let existing = match schema::read_table(&mut t.conn, &tdb, &ttable).await {
        Ok(x) => x,
        Err(e) => {
            let msg = format!("cannot read target table {tdb}.{ttable}: {e}");
            let fix = t
                .srv
                .account
                .grant("SELECT", &format!("{}.*", quote_ident(&tdb)));
            return vec![fail("target.table", &name, msg, fix)];
        }
    };
    match existing {
        Some(ti) => {
            let mut items = vec![columns_item(info, &ti, planned.contains(&name)), empty_item(&mut t.conn, planned, info, &ti).await];
            if let (schema::KeyKind::Declared, Some(key)) = (info.key_kind, &info.key) {
                items.push(declared_unique_item(&mut t.conn, "target.declared_key", info, &ti, key).await);
            }
            items
        }
        None if !spec.has(MigrationType::Schema) => vec![fail(
            "target.table",
            &name,
            format!(
                "target table {tdb}.{ttable} does not exist, and the task has no \"schema\" type, so Ferry does not create it"
            ),
            format!("add \"schema\" to types, or create {} on the target", qualified(&tdb, &ttable)),
        )],
        None => {
            let ctx = t.context(spec);
            let mut items = translate_items(spec, info, &tdb, &ttable, &ctx);
            items.extend(collision_items(s, spec, &ctx, info).await);
            items.extend(srid_items(s, &mut t.conn, info).await);
            items
        }
    }
}

/// A table a link writes into must enforce a declared key itself (Ferry adds
/// the unique key only to the target tables it creates): changes are applied
/// by it, and an upsert without a unique key would add a row. `check` is
/// `target.declared_key` (the forward link writes the target) or
/// `source.declared_key` (the reverse link writes the source); `src` names the item.
pub(super) async fn declared_unique_item(
    conn: &mut Conn,
    check: &str,
    src: &TableInfo,
    written: &TableInfo,
    key: &[String],
) -> CheckItem {
    let name = src.full_name();
    let side = check.split('.').next().unwrap_or(check);
    let unique = schema::read_indexes(conn, &written.db, &written.name)
        .await
        .unwrap_or_default()
        .iter()
        .any(|ix| {
            ix.unique
                && ix.columns.len() == key.len()
                && key
                    .iter()
                    .all(|k| ix.columns.iter().any(|c| c.as_deref() == Some(k.as_str())))
        });
    if unique {
        return pass(
            check,
            &name,
            format!(
                "{side} {} has a unique key on the declared key ({})",
                written.full_name(),
                key.join(", ")
            ),
        );
    }
    let cols: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
    fail(
        check,
        &name,
        format!(
            "{side} table {} has no unique key on the declared key ({}), and the {} link applies changes by it: \
             without one an update could add a row",
            written.full_name(),
            key.join(", "),
            if side == "source" { "reverse" } else { "forward" }
        ),
        format!(
            "ALTER TABLE {} ADD UNIQUE KEY ferry_declared_key ({});",
            qualified(&written.db, &written.name),
            cols.join(", ")
        ),
    )
}

/// The target table must have the source's columns, no more and no fewer.
/// `migrated`: this task planned the table (it may hold migrated rows), so
/// the fix never suggests dropping it.
pub(super) fn columns_item(src: &TableInfo, tgt: &TableInfo, migrated: bool) -> CheckItem {
    let name = src.full_name();
    let names = |t: &TableInfo| {
        t.columns
            .iter()
            .map(|c| c.name.to_ascii_lowercase())
            .collect::<BTreeSet<_>>()
    };
    let (a, b) = (names(src), names(tgt));
    if a == b {
        return pass(
            "target.columns",
            &name,
            format!("target {} has the same columns", tgt.full_name()),
        );
    }
    let missing: Vec<&String> = a.difference(&b).collect();
    let extra: Vec<&String> = b.difference(&a).collect();
    fail(
        "target.columns",
        &name,
        format!(
            "target table {} exists with different columns: missing {missing:?}, extra {extra:?}",
            tgt.full_name()
        ),
        if migrated {
            format!(
                "on the target, ALTER TABLE {} to the source's columns (it holds migrated rows: keep it)",
                qualified(&tgt.db, &tgt.name)
            )
        } else {
            format!(
                "on the target, DROP TABLE {} if it holds nothing you need (the schema stage recreates it), \
                 or ALTER it to the source's columns, or map the table elsewhere with objects.rename",
                qualified(&tgt.db, &tgt.name)
            )
        },
    )
}

/// A target table with rows would mix them with the source's, unless this task put them there.
pub(super) async fn empty_item(
    conn: &mut Conn,
    planned: &BTreeSet<String>,
    src: &TableInfo,
    tgt: &TableInfo,
) -> CheckItem {
    let name = src.full_name();
    let q = qualified(&tgt.db, &tgt.name);
    let has_rows: Result<Option<u8>, _> =
        conn.query_first(format!("SELECT 1 FROM {q} LIMIT 1")).await;
    match has_rows {
        Ok(None) => pass("target.table_empty", &name, format!("target {} exists and is empty", tgt.full_name())),
        Ok(Some(_)) if planned.contains(&name) => pass(
            "target.table_empty",
            &name,
            format!("target {} has rows from this task's earlier run", tgt.full_name()),
        ),
        Ok(Some(_)) => fail(
            "target.table_empty",
            &name,
            format!("target table {} already has rows; copying into it would mix them with the source's", tgt.full_name()),
            format!("on the target, TRUNCATE TABLE {q}; (if its rows are not needed), or map the table elsewhere with objects.rename"),
        ),
        Err(e) => fail(
            "target.table_empty",
            &name,
            format!("cannot read target {}: {e}", tgt.full_name()),
            "grant SELECT on the target database to the target user",
        ),
    }
}

/// Geometries carry a spatial reference system id; a target that does not
/// define it (seekdb defines only SRID 0) refuses the value, which would fail
/// the chunk mid-copy. Asked of the source's rows (distinct SRIDs, at most a
/// few) against the target's `ST_SPATIAL_REFERENCE_SYSTEMS` where it has one.
pub(super) async fn srid_items(s: &mut Conn, dst: &mut Conn, info: &TableInfo) -> Vec<CheckItem> {
    let cols: Vec<&schema::Column> = info
        .columns
        .iter()
        .filter(|c| ColumnKind::of(&c.data_type) == ColumnKind::Spatial && !c.generated)
        .collect();
    if cols.is_empty() {
        return Vec::new();
    }
    let Ok(known) = dst
        .query::<u64, _>("SELECT SRS_ID FROM information_schema.ST_SPATIAL_REFERENCE_SYSTEMS")
        .await
    else {
        return Vec::new(); // MariaDB keeps no such table: any SRID is stored as given.
    };
    let name = info.full_name();
    let q = qualified(&info.db, &info.name);
    let mut items = Vec::new();
    for c in cols {
        let col = quote_ident(&c.name);
        let sql =
            format!("SELECT DISTINCT ST_SRID({col}) FROM {q} WHERE {col} IS NOT NULL LIMIT 20");
        match s.query::<Option<u64>, _>(&sql).await {
            Ok(srids) => {
                let missing: Vec<String> = srids
                    .into_iter()
                    .flatten()
                    .filter(|id| !known.contains(id))
                    .map(|id| id.to_string())
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                items.push(fail(
                    "target.srid",
                    &name,
                    format!(
                        "column {} holds geometries with SRID {}, which the target does not define (it knows {:?}): \
                         those rows would fail their chunk",
                        c.name,
                        missing.join(", "),
                        known
                    ),
                    format!(
                        "define the spatial reference system on the target, or exclude the table; the rows are \
                         SELECT ... FROM {q} WHERE ST_SRID({col}) IN ({})",
                        missing.join(", ")
                    ),
                ));
            }
            Err(e) => items.push(warn(
                "target.srid",
                &name,
                format!("could not read the SRIDs of column {}: {e}", c.name),
                "check the geometries' SRIDs against the target's spatial reference systems before the copy",
            )),
        }
    }
    items
}

/// A unique key over text columns whose collation the target maps to
/// another one (e.g. `utf8mb4_unicode_ci` to `utf8mb4_general_ci`) must not
/// hold two source rows that the new collation calls equal (`'ß'` and `'s'`):
/// the target would refuse the second. Grouped on the source under the new
/// collation; a fix never asks to alter the source's data.
pub(super) async fn collision_items(
    s: &mut Conn,
    spec: &TaskSpec,
    ctx: &TargetContext,
    info: &TableInfo,
) -> Vec<CheckItem> {
    let name = info.full_name();
    let dialect = spec.target.dialect;
    let mapped = |col: &schema::Column| -> Option<String> {
        let (cs, co) = (col.charset.as_deref()?, col.collation.as_deref()?);
        let (_, new, _) = crate::dialect::database_charset(dialect, ctx, "", cs, co);
        (!new.eq_ignore_ascii_case(co)).then_some(new)
    };
    if !info.columns.iter().any(|c| mapped(c).is_some()) {
        return Vec::new();
    }
    let keys: Vec<(String, String)> = match s
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (info.db.as_str(), info.name.as_str()),
        )
        .await
    {
        Ok(k) => k,
        Err(e) => {
            return vec![warn(
                "target.collation",
                &name,
                format!("cannot read the table's unique keys to look for collisions under the target's collations: {e}"),
                "grant SELECT on the table to the source user",
            )]
        }
    };
    let mut by_index: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, column) in keys {
        by_index.entry(index).or_default().push(column);
    }
    let mut items = Vec::new();
    for (index, cols) in by_index {
        let exprs: Vec<(String, Option<String>)> = cols
            .iter()
            .map(|c| (quote_ident(c), info.column(c).and_then(mapped)))
            .collect();
        if exprs.iter().all(|(_, m)| m.is_none()) {
            continue;
        }
        items.push(key_collision_item(s, spec, info, &index, &cols, &exprs).await);
    }
    items
}

/// Whether two rows the source keeps apart in unique key `index` are equal
/// under the collations the target gets (`exprs`: each key column quoted,
/// with its target collation where it changes).
async fn key_collision_item(
    s: &mut Conn,
    spec: &TaskSpec,
    info: &TableInfo,
    index: &str,
    cols: &[String],
    exprs: &[(String, Option<String>)],
) -> CheckItem {
    let name = info.full_name();
    let q = qualified(&info.db, &info.name);
    let group: Vec<String> = exprs
        .iter()
        .map(|(c, m)| match m {
            Some(co) => format!("{c} COLLATE {co}"),
            None => c.clone(),
        })
        .collect();
    // A unique key never compares rows with a NULL in it: leave them out.
    let not_null: Vec<String> = exprs
        .iter()
        .map(|(c, _)| format!("{c} IS NOT NULL"))
        .collect();
    let originals: Vec<String> = exprs.iter().map(|(c, _)| c.clone()).collect();
    let sql = format!(
        "SELECT GROUP_CONCAT(QUOTE(CONCAT_WS(', ', {})) SEPARATOR ' and ') FROM {q} WHERE {} \
         GROUP BY {} HAVING COUNT(*) > 1 LIMIT 1",
        originals.join(", "),
        not_null.join(" AND "),
        group.join(", ")
    );
    let mapping: Vec<String> = exprs
        .iter()
        .zip(cols)
        .filter_map(|((_, m), c)| m.as_ref().map(|co| format!("{c} -> {co}")))
        .collect();
    match s.query_first::<Option<String>, _>(&sql).await {
        Ok(None) => pass(
            "target.collation",
            &name,
            format!(
                "unique key {index}: no two rows are equal under the target's collation ({})",
                mapping.join(", ")
            ),
        ),
        Ok(Some(example)) => {
            let example = example.unwrap_or_default();
            fail(
                "target.collation",
                &name,
                format!(
                    "unique key {index}: rows the source keeps apart are equal under the target's collation ({}), \
                     e.g. {example}; the target would refuse one of them",
                    mapping.join(", "),
                ),
                format!(
                    "create {} on the target yourself with a binary collation (utf8mb4_bin) for these columns and \
                     run the task with it in place, or exclude the table",
                    qualified(&spec.target_name(&info.db, &info.name).0, &spec.target_name(&info.db, &info.name).1)
                ),
            )
        }
        Err(e) => warn(
            "target.collation",
            &name,
            format!(
                "unique key {index}: could not look for rows equal under the target's collation ({}): {e}",
                mapping.join(", ")
            ),
            "compare the key's values yourself before the copy",
        ),
    }
}

pub(super) fn translate_items(
    spec: &TaskSpec,
    info: &TableInfo,
    tdb: &str,
    ttable: &str,
    ctx: &TargetContext,
) -> Vec<CheckItem> {
    let name = info.full_name();
    let opts = TranslateOptions {
        indexes_after_load: spec.options.indexes_after_load,
    };
    match translate_for(info, spec.target.dialect, tdb, ttable, &opts, ctx) {
        Ok(t) if t.notes.is_empty() => vec![pass(
            "target.translate",
            &name,
            "the DDL translates unchanged",
        )],
        Ok(t) => vec![pass(
            "target.translate",
            &name,
            format!("the DDL translates: {}", t.notes.join("; ")),
        )],
        Err(problems) => problems
            .into_iter()
            .map(|p| {
                fail(
                    "target.translate",
                    &p.object,
                    format!("{name}: {}", p.reason),
                    p.fix,
                )
            })
            .collect(),
    }
}

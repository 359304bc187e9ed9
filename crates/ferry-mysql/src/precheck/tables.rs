//! The source side of each selected table: include patterns, readability,
//! a usable key, the filter, declared keys, and what a reverse link writes.

use std::collections::BTreeSet;

use ferry_core::model::CheckItem;
use ferry_core::task::{MigrationType, Pattern, TaskSpec};
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::conn::{qualified, quote_ident};
use crate::schema::{self, TableInfo};

use super::grants::has_privilege;
use super::server::Server;
use super::target::{declared_unique_item, target_items, TargetSide};
use super::{fail, pass, warn};

/// The selected tables, and one item per include pattern.
pub(super) async fn selection(
    conn: &mut Conn,
    spec: &TaskSpec,
    srv: &Server,
) -> Result<(Vec<(String, String)>, Vec<CheckItem>), CheckItem> {
    let listing_failed = |e: ferry_core::FerryError| {
        fail(
            "objects.include",
            "source",
            format!("cannot list the source's tables: {e}"),
            "see source.connect",
        )
    };
    let selected = schema::list_selected_tables(conn, spec)
        .await
        .map_err(listing_failed)?;
    let mut unexcluded_spec = spec.clone();
    unexcluded_spec.objects.exclude.clear();
    let unexcluded = schema::list_selected_tables(conn, &unexcluded_spec)
        .await
        .map_err(listing_failed)?;
    let items = spec
        .objects
        .include
        .iter()
        .map(|p| pattern_item(p, &selected, &unexcluded, srv))
        .collect();
    Ok((selected, items))
}

pub(super) fn pattern_item(
    pattern: &str,
    selected: &[(String, String)],
    unexcluded: &[(String, String)],
    srv: &Server,
) -> CheckItem {
    let check = "objects.include";
    let count = |tables: &[(String, String)]| {
        Pattern::parse(pattern)
            .map(|p| tables.iter().filter(|(d, t)| p.matches(d, t)).count())
            .unwrap_or(0)
    };
    let n = count(selected);
    if n > 0 {
        return pass(check, pattern, format!("matches {n} table(s)"));
    }
    if count(unexcluded) > 0 {
        return fail(
            check,
            pattern,
            format!("objects.include pattern \"{pattern}\" matches only tables that objects.exclude removes"),
            "remove the pattern from objects.include, or narrow objects.exclude",
        );
    }
    let db = pattern
        .split_once('.')
        .map(|(d, _)| d)
        .filter(|d| !d.contains(['*', '?']));
    if has_privilege(&srv.grants, "SELECT", db) {
        return fail(
            check,
            pattern,
            format!("objects.include pattern \"{pattern}\" matches no table on the source"),
            "correct the pattern in the task file, or create the table on the source",
        );
    }
    let object = db
        .map(|d| format!("{}.*", quote_ident(d)))
        .unwrap_or_else(|| "*.*".into());
    fail(
        check,
        pattern,
        format!(
            "objects.include pattern \"{pattern}\" matches no table on the source that {} can see: the table does \
             not exist, or the user has no SELECT on it",
            srv.account.grantee()
        ),
        srv.account.grant("SELECT", &object),
    )
}

pub(super) async fn check_table(
    s: &mut Conn,
    srv: &Server,
    target: Option<&mut TargetSide>,
    spec: &TaskSpec,
    planned: &BTreeSet<String>,
    db: &str,
    table: &str,
) -> Vec<CheckItem> {
    let name = format!("{db}.{table}");
    let mut items = vec![select_item(s, srv, db, table).await];
    let info = match schema::read_source_table(s, spec, db, table).await {
        Ok(Some(info)) => info,
        Ok(None) => {
            items.push(fail(
                "source.table",
                &name,
                "the table disappeared during the check",
                "run the check again",
            ));
            return items;
        }
        Err(e) => {
            items.push(fail(
                "source.table",
                &name,
                format!("cannot read the table's definition: {e}"),
                "see source.select",
            ));
            return items;
        }
    };
    items.push(key_item(s, srv, &info, spec.declared_key(db, table)).await);
    if spec.has(MigrationType::Reverse) {
        items.push(reverse_write_item(s, srv, &info).await);
        if let (schema::KeyKind::Declared, Some(key)) = (info.key_kind, &info.key) {
            items.push(declared_unique_item(s, "source.declared_key", &info, &info, key).await);
        }
    }
    let mut target = target;
    if let Some(filter) = spec.filter(db, table) {
        let on_target = match target.as_deref_mut() {
            Some(t) if spec.has(MigrationType::Incremental) => Some(&mut t.conn),
            _ => None,
        };
        items.push(filter_item(s, on_target, &info, filter).await);
    }
    if let Some(t) = target {
        items.extend(target_items(s, t, spec, planned, &info).await);
    }
    items
}

/// The table's row filter runs on the source (the copy's `WHERE`), and with
/// incremental sync on the target too, over the changed rows' images under the
/// source's column names: both must accept it.
pub(super) async fn filter_item(
    s: &mut Conn,
    target: Option<&mut Conn>,
    info: &TableInfo,
    filter: &str,
) -> CheckItem {
    let check = "objects.filters";
    let name = info.full_name();
    let fix = format!("correct the condition for \"{name}\" in objects.filters");
    let on_source = format!(
        "SELECT 1 FROM {} WHERE ({filter}) LIMIT 0",
        qualified(&info.db, &info.name)
    );
    if let Err(e) = s.query_drop(on_source).await {
        return fail(
            check,
            &name,
            format!("the source rejects the row filter ({filter}): {e}"),
            fix,
        );
    }
    let Some(t) = target else {
        return pass(
            check,
            &name,
            format!("the source accepts the row filter ({filter})"),
        );
    };
    let images: Vec<String> = info
        .columns
        .iter()
        .map(|c| format!("NULL AS {}", quote_ident(&c.name)))
        .collect();
    let on_target = format!(
        "SELECT 1 FROM (SELECT {}) AS `__ferry_images` WHERE ({filter}) LIMIT 0",
        images.join(", ")
    );
    match t.query_drop(on_target).await {
        Ok(()) => pass(
            check,
            &name,
            format!("the source and the target accept the row filter ({filter})"),
        ),
        Err(e) => fail(
            check,
            &name,
            format!(
                "the target rejects the row filter ({filter}), which incremental sync evaluates there over \
                 each changed row (only the table's own columns, no other table): {e}"
            ),
            format!("{fix}, using only the table's columns and functions both servers have"),
        ),
    }
}

/// Tries `SELECT * ... LIMIT 0`: needs SELECT on every column.
pub(super) async fn select_item(conn: &mut Conn, srv: &Server, db: &str, table: &str) -> CheckItem {
    let name = format!("{db}.{table}");
    let q = qualified(db, table);
    match conn.query_drop(format!("SELECT * FROM {q} LIMIT 0")).await {
        Ok(()) => pass("source.select", &name, "SELECT works"),
        Err(e) => fail(
            "source.select",
            &name,
            format!("{} cannot read {name}: {e}", srv.account.grantee()),
            srv.account.grant("SELECT", &q),
        ),
    }
}

/// A primary key, or a unique key over NOT NULL columns, identifies each row
/// (or the columns `objects.keys` declares, proven unique and not NULL).
pub(super) async fn key_item(
    conn: &mut Conn,
    srv: &Server,
    info: &TableInfo,
    declared: Option<&[String]>,
) -> CheckItem {
    let name = info.full_name();
    if let Some(key) = &info.key {
        let kind = match info.key_kind {
            schema::KeyKind::Primary => "primary key",
            schema::KeyKind::Declared => return declared_key_item(conn, info, key).await,
            _ => "unique key over NOT NULL columns",
        };
        if declared.is_some() {
            return warn(
                "table.key",
                &name,
                format!(
                    "{name} has a {kind} ({}): Ferry uses it, not the columns objects.keys declares",
                    key.join(", ")
                ),
                format!("remove \"{name}\" from objects.keys"),
            );
        }
        return pass("table.key", &name, format!("{kind} ({})", key.join(", ")));
    }
    if let Some(cols) = declared {
        let missing: Vec<&str> = cols
            .iter()
            .filter(|c| info.column(c).is_none())
            .map(String::as_str)
            .collect();
        return fail(
            "table.key",
            &name,
            format!(
                "objects.keys declares column(s) {} that {name} does not have",
                missing.join(", ")
            ),
            format!("correct the columns of \"{name}\" in objects.keys"),
        );
    }
    let q = qualified(&info.db, &info.name);
    let unique_cols = schema::read_indexes(conn, &info.db, &info.name)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|ix| ix.unique)
        .find_map(|ix| ix.columns.into_iter().collect::<Option<Vec<String>>>());
    let (why, fix) = match unique_cols {
        Some(cols) => {
            let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
            let why = format!(
                "; its unique key ({}) allows NULLs, so it becomes the primary key once no row holds a NULL there",
                cols.join(", ")
            );
            (
                why,
                format!("ALTER TABLE {q} ADD PRIMARY KEY ({});", list.join(", ")),
            )
        }
        None => {
            let invisible = (srv.info.is_mariadb && srv.info.number >= (10, 3, 0))
                || (!srv.info.is_mariadb && srv.info.number >= (8, 0, 23));
            let fix = format!(
                "ALTER TABLE {q} ADD COLUMN `ferry_row_id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT{} PRIMARY KEY;",
                if invisible { " INVISIBLE" } else { "" }
            );
            (String::new(), fix)
        }
    };
    fail(
        "table.key",
        &name,
        format!(
            "{name} has no primary key and no unique key over NOT NULL columns: Ferry cannot split it into chunks \
             or apply changes to it by key{why}. (Or name columns that identify a row in objects.keys.)"
        ),
        fix,
    )
}

/// A declared key identifies each row only if no row has a NULL in it and no
/// two rows share its values: both are read from the source now (a full scan
/// each), and an index starting with the key keeps the chunks' range reads short.
pub(super) async fn declared_key_item(
    conn: &mut Conn,
    info: &TableInfo,
    key: &[String],
) -> CheckItem {
    let name = info.full_name();
    let q = qualified(&info.db, &info.name);
    let cols: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
    let list = cols.join(", ");
    let fix = format!("choose columns that identify a row of {name} in objects.keys, or give the table a primary key");
    let nulls = cols
        .iter()
        .map(|c| format!("{c} IS NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let what = format!("source: checking the declared key of {name}");
    let has_null: Result<Option<u8>, _> = conn
        .query_first(format!("SELECT 1 FROM {q} WHERE {nulls} LIMIT 1"))
        .await;
    let dup: Result<Option<mysql_async::Row>, _> = conn
        .query_first(format!(
            "SELECT {list}, COUNT(*) FROM {q} GROUP BY {list} HAVING COUNT(*) > 1 LIMIT 1"
        ))
        .await;
    match (has_null, dup) {
        (Err(e), _) | (_, Err(e)) => fail("table.key", &name, format!("{what}: {e}"), fix),
        (Ok(Some(_)), _) => fail(
            "table.key",
            &name,
            format!(
                "the key objects.keys declares for {name} ({}) holds NULL in some rows",
                key.join(", ")
            ),
            fix,
        ),
        (Ok(None), Ok(Some(row))) => {
            let values: Vec<String> = (0..row.len())
                .filter_map(|i| row.as_ref(i))
                .map(|v| match v {
                    mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                    other => other.as_sql(true),
                })
                .collect();
            fail(
                "table.key",
                &name,
                format!(
                    "the key objects.keys declares for {name} ({}) is not unique: ({}) appears in {} rows",
                    key.join(", "),
                    values.iter().take(key.len()).cloned().collect::<Vec<_>>().join(", "),
                    values.get(key.len()).map(String::as_str).unwrap_or("several")
                ),
                fix,
            )
        }
        (Ok(None), Ok(None)) => {
            let indexed = schema::read_indexes(conn, &info.db, &info.name)
                .await
                .unwrap_or_default()
                .iter()
                .any(|ix| {
                    ix.columns
                        .iter()
                        .take(key.len())
                        .map(|c| c.as_deref())
                        .eq(key.iter().map(|k| Some(k.as_str())))
                });
            if indexed {
                pass(
                    "table.key",
                    &name,
                    format!("declared key ({}): unique and not NULL in every row now; the target gets a unique key on it", key.join(", ")),
                )
            } else {
                warn(
                    "table.key",
                    &name,
                    format!(
                        "declared key ({}): unique and not NULL in every row now, but no index starts with it, so \
                         every chunk of the copy and the verify scans the whole table",
                        key.join(", ")
                    ),
                    format!("ALTER TABLE {q} ADD INDEX ferry_declared_key_idx ({list});"),
                )
            }
        }
    }
}

/// After switchover the reverse link writes into the source's tables:
/// statements that match no row try INSERT, UPDATE and DELETE without changing anything.
pub(super) async fn reverse_write_item(
    conn: &mut Conn,
    srv: &Server,
    info: &TableInfo,
) -> CheckItem {
    let name = info.full_name();
    let q = qualified(&info.db, &info.name);
    let cols: Vec<String> = info
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| quote_ident(&c.name))
        .collect();
    let Some(first) = cols.first() else {
        return pass("source.reverse_write", &name, "no writable columns");
    };
    let list = cols.join(", ");
    let statements = [
        format!("INSERT INTO {q} ({list}) SELECT {list} FROM {q} WHERE 1 = 0"),
        format!("UPDATE {q} SET {first} = {first} WHERE 1 = 0"),
        format!("DELETE FROM {q} WHERE 1 = 0"),
    ];
    for sql in statements {
        if let Err(e) = conn.query_drop(&sql).await {
            return fail(
                "source.reverse_write",
                &name,
                format!(
                    "type \"reverse\" writes into {name} after switchover, but {} may not: {e}",
                    srv.account.grantee()
                ),
                srv.account.grant("INSERT, UPDATE, DELETE", &q),
            );
        }
    }
    pass(
        "source.reverse_write",
        &name,
        "INSERT, UPDATE and DELETE are allowed (tried on no rows)",
    )
}

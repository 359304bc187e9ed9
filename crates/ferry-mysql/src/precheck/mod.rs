//! Prechecks: what the `grant-check` stage verifies before anything is
//! migrated. Style of TiDB DM's checker: checks are data, not exceptions.
//!
//! Invariants:
//! - A check never returns an error and never panics. Whatever goes wrong,
//!   including not reaching a server, is a [`CheckStatus::Fail`] item with a
//!   stable check id, a message naming the thing, and the exact statement or
//!   setting that fixes it.
//! - Privileges are tried, not guessed, wherever trying writes nothing: a
//!   zero-row `SELECT` per table, statements that match no row, a moment's
//!   binlog stream, and on an existing database a probe table
//!   `__ferry_probe_<random>` that is created, written and dropped. The probe
//!   table is the only thing a precheck writes. Where trying would write more
//!   (a database that does not exist yet) the check reads `SHOW GRANTS`.
//! - No password reaches an item: messages name user, host, port and secret.
//! - The decisions over server variables and grants are pure functions
//!   ([`evaluate_version`], [`evaluate_binlog`], [`granted`]), unit-tested
//!   without a server; the async functions only gather facts and call them.
//!
//! Layout: this file assembles the reports ([`check_source`], [`check_target`],
//! [`check_tables_planned`]); `server` connects and judges versions and binlog
//! settings; `grants` reads `SHOW GRANTS` and tries write privileges; `probes`
//! tries the replication privileges; `tables` checks each selected table on the
//! source; `target` checks what the target receives; `resume` checks a rerun.

use std::collections::BTreeSet;

use ferry_core::model::{CheckItem, CheckStatus};
use ferry_core::task::{CopyWrite, MigrationType, TaskSpec};

use crate::conn::Endpoint;
use crate::dialect::caps::{self, TargetCaps};

mod grants;
mod probes;
pub mod resume;
mod server;
mod tables;
mod target;
#[cfg(test)]
mod tests;
pub use grants::{granted, has_privilege, Account};
use grants::{reload_item, skip_binlog_item, write_privileges_item, WRITE_PRIVILEGES};
use probes::replication_items;
use server::{binlog_items, close, connect_side, open, Server};
pub use server::{evaluate_binlog, evaluate_version, BinlogNeed};
use tables::{check_table, selection};
use target::{dialect_item, load_data_item, oceanbase_reverse_item, target_databases, TargetSide};

fn item(
    status: CheckStatus,
    check: &str,
    subject: &str,
    message: impl Into<String>,
    fix: Option<String>,
) -> CheckItem {
    CheckItem {
        check: check.to_string(),
        subject: subject.to_string(),
        status,
        message: message.into(),
        fix,
    }
}

fn pass(check: &str, subject: &str, message: impl Into<String>) -> CheckItem {
    item(CheckStatus::Pass, check, subject, message, None)
}

fn warn(
    check: &str,
    subject: &str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> CheckItem {
    item(CheckStatus::Warn, check, subject, message, Some(fix.into()))
}

fn fail(
    check: &str,
    subject: &str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> CheckItem {
    item(CheckStatus::Fail, check, subject, message, Some(fix.into()))
}

/// The items of several checks in order, without exact repeats (two checks
/// that cannot connect to the same server report it once).
pub fn merge(parts: Vec<Vec<CheckItem>>) -> Vec<CheckItem> {
    let mut out: Vec<CheckItem> = Vec::new();
    for i in parts.into_iter().flatten() {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Source: connection, version, binlog settings (fail when the task reads the
/// binlog, warn otherwise), and for incremental tasks the replication
/// privileges and the meta schema.
pub async fn check_source(ep: &Endpoint, spec: &TaskSpec) -> Vec<CheckItem> {
    let (mut conn, srv, mut items) = match connect_side(ep).await {
        Ok(x) => x,
        Err(items) => return items,
    };
    items.extend(binlog_items(&mut conn, &srv, &BinlogNeed::for_source(spec)).await);
    if spec.has(MigrationType::Incremental) {
        items.extend(replication_items(&mut conn, ep, &srv).await);
        items.push(reload_item(&srv));
        items.push(write_privileges_item(&mut conn, &srv, &spec.options.meta_schema).await);
    }
    close(conn).await;
    items
}

/// Target: connection, version, write privileges on every database it
/// receives, and for `reverse` its binlog settings and replication privileges.
pub async fn check_target(ep: &Endpoint, spec: &TaskSpec) -> Vec<CheckItem> {
    let (mut conn, srv, mut items) = match connect_side(ep).await {
        Ok(x) => x,
        Err(items) => return items,
    };
    let (dbs, wildcard_patterns) = target_databases(spec);
    for db in &dbs {
        items.push(write_privileges_item(&mut conn, &srv, db).await);
    }
    for p in wildcard_patterns {
        items.push(warn(
            &srv.check("write_privileges"),
            &p,
            format!(
                "pattern \"{p}\" has a wildcard database, so its target databases are not probed"
            ),
            srv.account.grant(&WRITE_PRIVILEGES.join(", "), "*.*"),
        ));
    }
    if !spec.options.target_binlog && spec.has(MigrationType::Full) {
        items.push(skip_binlog_item(&mut conn, &srv).await);
    }
    // Probed once, for the copy's write method and the reverse link's binlog.
    let caps = match spec.has(MigrationType::Full) || spec.has(MigrationType::Reverse) {
        true => caps::probe(&mut conn, "target").await.unwrap_or_default(),
        false => TargetCaps::default(),
    };
    if spec.has(MigrationType::Full) {
        // `auto` writes OceanBase with INSERTs: LOAD DATA matters only where it would be used.
        let uses_load_data = match spec.options.copy_write {
            CopyWrite::LoadData => true,
            CopyWrite::Auto => !caps.is_oceanbase(),
            CopyWrite::Insert => false,
        };
        if uses_load_data {
            items.push(load_data_item(&mut conn, &srv, caps.is_oceanbase()).await);
        }
    }
    if spec.has(MigrationType::Reverse) {
        if !caps.binlog && caps.is_oceanbase() {
            items.push(oceanbase_reverse_item(&srv, &caps));
        } else {
            items.extend(binlog_items(&mut conn, &srv, &BinlogNeed::for_reverse()).await);
            items.extend(replication_items(&mut conn, ep, &srv).await);
        }
    }
    close(conn).await;
    items
}

/// Tables, as [`check_tables_planned`] with nothing planned yet.
pub async fn check_tables(src: &Endpoint, tgt: &Endpoint, spec: &TaskSpec) -> Vec<CheckItem> {
    check_tables_planned(src, tgt, spec, &BTreeSet::new()).await
}

/// Every include pattern matches a table and the target's `dialect` fits its
/// server; each selected table is readable, has a usable key, and fits the
/// target (empty or planned by this task, same columns, known character sets,
/// translatable DDL). `planned` holds the source `db.table` names this task
/// planned in an earlier run: their target tables may hold rows (a rerun
/// resumes).
pub async fn check_tables_planned(
    src: &Endpoint,
    tgt: &Endpoint,
    spec: &TaskSpec,
    planned: &BTreeSet<String>,
) -> Vec<CheckItem> {
    let mut s = match open(src).await {
        Ok(c) => c,
        Err(i) => return vec![i],
    };
    let srv = match Server::read(&mut s, src).await {
        Ok(srv) => srv,
        Err(i) => return vec![i],
    };
    let (selected, mut items) = match selection(&mut s, spec, &srv).await {
        Ok(x) => x,
        Err(i) => return vec![i],
    };
    let mut target = match TargetSide::open(tgt).await {
        Ok(t) => {
            items.extend(dialect_item(&t.caps, spec));
            Some(t)
        }
        Err(i) => {
            items.push(i);
            None
        }
    };
    for (db, table) in &selected {
        items.extend(check_table(&mut s, &srv, target.as_mut(), spec, planned, db, table).await);
    }
    close(s).await;
    if let Some(t) = target {
        close(t.conn).await;
    }
    items
}

//! The resume check: what a task that has passed its precheck and created its
//! tables checks before it goes on (`ferry resume`, `ferry run` again, a new
//! cloud execution). The full precheck's table checks would be wrong here:
//! a target table that holds migrated rows and lacks a column the source
//! gained while Ferry was down is not a conflict but work the sync has queued.
//!
//! Invariants:
//! - Like every precheck, a check never errors: each finding is an item.
//! - The binlog from the link's checkpoint must still be on the source; if it
//!   is not, the item names the missing file and the way out (re-copy).
//! - The target's checkpoint rows must belong to this incarnation of the task
//!   and be no older than the task store's checkpoint.
//! - A table whose target columns differ from the source's passes when the
//!   source's binlog after the checkpoint holds DDL on it (the sync applies
//!   it); otherwise it fails with fixes that keep the table and its rows
//!   (an `ALTER TABLE` on the target, or a re-copy over the rows), never a
//!   `DROP TABLE`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::model::{CheckItem, CheckpointRecord, Direction, TableRecord};
use ferry_core::position::BinlogPosition;
use ferry_core::task::{MigrationType, TaskSpec};

use super::{close, fail, open, pass, warn};
use crate::apply::{pos_lt, Link, WorkerCheckpoint};
use crate::binlog::{binary_logs, current_position, BinlogEvent, BinlogReader, ReaderOptions};
use crate::conn::{qualified, quote_ident, Endpoint};
use crate::schema::{self, TableInfo};

/// How long the check may read the source's binlog looking for DDL.
const DDL_SCAN_BUDGET: Duration = Duration::from_secs(30);

/// What the task store knows of the task being resumed.
#[derive(Debug, Clone)]
pub struct ResumeFacts {
    pub incarnation: String,
    /// Recorded by plan before the copy.
    pub snapshot: Option<BinlogPosition>,
    /// The task store's forward checkpoint.
    pub checkpoint: Option<CheckpointRecord>,
    /// The tables plan created.
    pub tables: Vec<TableRecord>,
}

/// The way out when the source no longer has the changes since a checkpoint.
pub fn recopy_fix(task_id: &str) -> String {
    format!(
        "re-copy the affected tables: `ferry resume {task_id} --recopy` copies every table again over the rows \
         already on the target (nothing is dropped) from a new snapshot point, and the sync starts there; keep \
         binlogs longer (binlog_expire_logs_seconds / expire_logs_days) than Ferry may be down"
    )
}

/// The resume check's table and link items (connectivity and grants come from
/// [`super::check_source`] and [`super::check_target`]).
pub async fn check_resume(
    src: &Endpoint,
    tgt: &Endpoint,
    spec: &TaskSpec,
    facts: &ResumeFacts,
) -> Vec<CheckItem> {
    let mut s = match open(src).await {
        Ok(c) => c,
        Err(i) => return vec![i],
    };
    let mut t = match open(tgt).await {
        Ok(c) => c,
        Err(i) => {
            close(s).await;
            return vec![i];
        }
    };
    let mut items = Vec::new();
    let incremental = spec.has(MigrationType::Incremental);
    let retired = facts
        .checkpoint
        .as_ref()
        .is_some_and(CheckpointRecord::is_retired);
    let mut from: Option<BinlogPosition> = None;
    if incremental && !retired {
        let link = Link {
            meta_schema: spec.options.meta_schema.clone(),
            task_id: spec.task_id.clone(),
            direction: Direction::Forward,
            epoch: 0,
            incarnation: Some(facts.incarnation.clone()),
        };
        let rows = read_rows(&mut t, &link).await;
        let (item, start) = checkpoint_item(&link, facts, rows);
        items.push(item);
        if let Some(start) = start {
            items.push(binlog_item(&mut s, &spec.task_id, &start).await);
            from = Some(start);
        }
    }
    let explained = match &from {
        Some(start)
            if items
                .iter()
                .all(|i| i.status != ferry_core::model::CheckStatus::Fail) =>
        {
            ddl_since(src, spec, start).await
        }
        _ => Ok(BTreeSet::new()),
    };
    for rec in &facts.tables {
        items.push(table_item(&mut s, &mut t, spec, rec, &explained).await);
    }
    close(s).await;
    close(t).await;
    items
}

/// The link's rows on the target; `None` when the checkpoint table is not there.
async fn read_rows(
    t: &mut mysql_async::Conn,
    link: &Link,
) -> Result<Vec<WorkerCheckpoint>, String> {
    use mysql_async::prelude::*;
    let exists: Result<Option<u64>, _> = t
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'checkpoints'",
            (link.meta_schema.as_str(),),
        )
        .await;
    match exists {
        Ok(Some(n)) if n > 0 => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    }
    let has_column: Result<Option<u64>, _> = t
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'checkpoints' \
             AND COLUMN_NAME = 'incarnation'",
            (link.meta_schema.as_str(),),
        )
        .await;
    if !matches!(has_column, Ok(Some(n)) if n > 0) {
        // Rows written before rows carried an incarnation: read them as this task's.
        let legacy: Result<Vec<(u32, String, u64, u64)>, _> = t
            .exec(
                format!(
                    "SELECT worker, file, pos, epoch FROM {} WHERE task_id = ? AND direction = 'forward' ORDER BY worker",
                    qualified(&link.meta_schema, "checkpoints")
                ),
                (link.task_id.as_str(),),
            )
            .await;
        return legacy
            .map(|rows| {
                rows.into_iter()
                    .map(|(worker, file, pos, epoch)| WorkerCheckpoint {
                        worker,
                        position: BinlogPosition::new(file, pos),
                        epoch,
                        applied: 0,
                        ddl_pending: None,
                        incarnation: None,
                    })
                    .collect()
            })
            .map_err(|e| e.to_string());
    }
    link.read(t, false).await.map_err(|e| e.to_string())
}

/// Whether the target's checkpoint rows agree with the task store; and the
/// position the link resumes from when they do.
fn checkpoint_item(
    link: &Link,
    facts: &ResumeFacts,
    rows: Result<Vec<WorkerCheckpoint>, String>,
) -> (CheckItem, Option<BinlogPosition>) {
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return (unreadable_checkpoints(link, &e), None),
    };
    if let Some(item) = other_incarnation(link, facts, &rows) {
        return (item, None);
    }
    resume_point(link, facts, &rows)
}

/// The item `resume.checkpoint` is about.
const CHECKPOINT: (&str, &str) = ("resume.checkpoint", "target");

fn unreadable_checkpoints(link: &Link, e: &str) -> CheckItem {
    let (check, subject) = CHECKPOINT;
    fail(
        check,
        subject,
        format!("cannot read the forward link's checkpoint rows on the target: {e}"),
        format!(
            "GRANT SELECT ON {}.* to the target's migration user, and check the target is up",
            quote_ident(&link.meta_schema)
        ),
    )
}

/// A failure when checkpoint rows of the task's id belong to another
/// incarnation (the task_id used again without `ferry release`).
fn other_incarnation(
    link: &Link,
    facts: &ResumeFacts,
    rows: &[WorkerCheckpoint],
) -> Option<CheckItem> {
    let (check, subject) = CHECKPOINT;
    let id = &link.task_id;
    let other = rows
        .iter()
        .filter_map(|r| r.incarnation.as_ref())
        .find(|i| **i != facts.incarnation)?;
    Some(fail(
        check,
        subject,
        format!(
            "the forward link's checkpoint rows of task {id} on the target belong to another incarnation \
             ({other}; this task is {}): the task_id was used again without `ferry release`, and resuming \
             from those rows would skip or replay changes",
            facts.incarnation
        ),
        format!(
            "the rows hold no data: remove them on the target with {} and resume",
            link.delete_statement(other)
        ),
    ))
}

/// Where the forward link resumes: the lowest of the target's checkpoint rows,
/// unless it is behind the task store's copy, or the rows are gone although
/// the store says changes were applied; the snapshot point before the link ran.
fn resume_point(
    link: &Link,
    facts: &ResumeFacts,
    rows: &[WorkerCheckpoint],
) -> (CheckItem, Option<BinlogPosition>) {
    let (check, subject) = CHECKPOINT;
    let id = &link.task_id;
    let lowest = rows
        .iter()
        .map(|r| r.position.clone())
        .reduce(|a, b| if pos_lt(&b, &a) { b } else { a });
    let store = facts.checkpoint.as_ref();
    match (lowest, store) {
        (Some(on_target), Some(ck)) if pos_lt(&on_target, &ck.position) => (
            fail(
                check,
                subject,
                format!(
                    "the target's checkpoint of the forward link ({on_target}) is behind the task store's \
                     ({}): the target was restored from an earlier backup, or its rows were rewritten; resuming \
                     would replay changes already applied",
                    ck.position
                ),
                recopy_fix(id),
            ),
            None,
        ),
        (Some(on_target), _) => (
            pass(
                check,
                subject,
                format!(
                    "the target's checkpoint rows ({} worker(s)) resume the forward link at {on_target}",
                    rows.len()
                ),
            ),
            Some(on_target),
        ),
        (None, Some(ck)) if ck.applied_rows > 0 || Some(&ck.position) != facts.snapshot.as_ref() => (
            fail(
                check,
                subject,
                format!(
                    "the task store says the forward link applied changes up to {}, but the target has no \
                     checkpoint rows for task {id} in {}: they were removed (another task's release, a restored \
                     target), so nothing says which changes the target holds",
                    ck.position,
                    qualified(&link.meta_schema, "checkpoints")
                ),
                recopy_fix(id),
            ),
            None,
        ),
        (None, _) => match &facts.snapshot {
            Some(snap) => (
                pass(
                    check,
                    subject,
                    format!("the forward link has not started yet; it starts at the snapshot point {snap}"),
                ),
                Some(snap.clone()),
            ),
            None => (
                pass(check, subject, "no snapshot point recorded yet"),
                None,
            ),
        },
    }
}

/// The source still has the binlog file the link resumes from.
async fn binlog_item(s: &mut mysql_async::Conn, task_id: &str, from: &BinlogPosition) -> CheckItem {
    let check = "resume.binlog";
    if from.file.is_empty() {
        return pass(
            check,
            "source",
            format!("the link resumes by GTID ({from})"),
        );
    }
    match binary_logs(s, "source").await {
        Ok(logs) if logs.contains(&from.file) => pass(
            check,
            "source",
            format!("the source still has binlog file {} (resume point {from})", from.file),
        ),
        Ok(logs) => fail(
            check,
            "source",
            format!(
                "binlog file {} (the forward link's checkpoint {from}) is no longer on the source (its binlog \
                 files are {}): the changes made since then cannot be replayed",
                from.file,
                match (logs.first(), logs.last()) {
                    (Some(a), Some(b)) if a != b => format!("{a} .. {b}"),
                    (Some(a), _) => a.clone(),
                    _ => "none".to_string(),
                }
            ),
            recopy_fix(task_id),
        ),
        Err(e) => fail(
            check,
            "source",
            format!("cannot list the source's binlog files: {e}"),
            "see source.binlog_monitor",
        ),
    }
}

/// Source tables (`db.table`) that DDL in the binlog between `from` and now
/// names; `Err` with the reason when the scan could not finish.
async fn ddl_since(
    src: &Endpoint,
    spec: &TaskSpec,
    from: &BinlogPosition,
) -> Result<BTreeSet<String>, String> {
    let mut conn = src.connect().await.map_err(|e| e.to_string())?;
    let end = current_position(&mut conn, "source").await;
    let _ = conn.disconnect().await;
    let end = end.map_err(|e| e.to_string())?;
    if !pos_lt(from, &end) {
        return Ok(BTreeSet::new());
    }
    let filter: crate::binlog::TableFilter = Arc::new(|_: &str, _: &str| false);
    // A server id of its own (never an applier's): the epoch space above 2^62 is the check's.
    let id = crate::binlog::server_id_for(&spec.task_id, (1 << 62) + ferry_core::store::now_ms());
    let mut opts = ReaderOptions::new(id, filter);
    opts.heartbeat = Duration::from_millis(500);
    let mut reader = BinlogReader::open(src, from, opts)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + DDL_SCAN_BUDGET;
    let mut found = BTreeSet::new();
    let result = loop {
        if Instant::now() >= deadline {
            break Err(format!(
                "the binlog from {from} to {end} could not be read within {} s",
                DDL_SCAN_BUDGET.as_secs()
            ));
        }
        let ev = match tokio::time::timeout_at(deadline.into(), reader.next()).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(e)) => break Err(e.to_string()),
            Err(_) => continue,
        };
        let at = match ev {
            BinlogEvent::Statement {
                schema,
                sql,
                end: at,
                ..
            } => {
                if let Some(d) = crate::binlog::ddl::parse(&sql, &schema) {
                    for (db, t) in d.tables() {
                        found.insert(format!("{db}.{t}"));
                    }
                }
                at
            }
            BinlogEvent::Commit { end: at, .. } => at,
            BinlogEvent::Heartbeat { position } => position,
            _ => continue,
        };
        if !pos_lt(&at, &end) {
            break Ok(found);
        }
    };
    reader.close().await;
    result
}

/// One planned table: on both sides, and its columns the same or made so by DDL the sync has queued.
async fn table_item(
    s: &mut mysql_async::Conn,
    t: &mut mysql_async::Conn,
    spec: &TaskSpec,
    rec: &TableRecord,
    explained: &Result<BTreeSet<String>, String>,
) -> CheckItem {
    let check = "resume.table";
    let name = rec.source_name();
    let target = qualified(&rec.target_db, &rec.target_table);
    let explained_here = matches!(explained, Ok(set) if set.contains(&name));
    let src = match schema::read_source_table(s, spec, &rec.source_db, &rec.source_table).await {
        Ok(Some(i)) => Some(i),
        Ok(None) => None,
        Err(e) => {
            return fail(
                check,
                &name,
                format!("cannot read the source table: {e}"),
                "see source.select",
            )
        }
    };
    let tgt = match schema::read_table(t, &rec.target_db, &rec.target_table).await {
        Ok(i) => i,
        Err(e) => {
            return fail(
                check,
                &name,
                format!("cannot read the target table {target}: {e}"),
                "see target.connect",
            )
        }
    };
    match (src, tgt) {
        (_, _) if explained_here => pass(
            check,
            &name,
            "the source's binlog since the checkpoint holds DDL on this table: the sync applies it in order",
        ),
        (Some(a), Some(b)) => match differences(&a, &b) {
            None => pass(check, &name, format!("target {target} has the source's columns")),
            Some((missing, extra)) => {
                let why = match explained {
                    Ok(_) => "and no DDL in the source's binlog since the checkpoint explains it".to_string(),
                    Err(e) => format!("and the source's binlog since the checkpoint could not be searched for DDL ({e})"),
                };
                let msg = format!(
                    "target table {target} holds migrated rows and its columns differ from the source's: \
                     missing {missing:?}, extra {extra:?}, {why}"
                );
                let fix = format!(
                    "{}; or {}. Do not drop {target}: it holds migrated rows",
                    alter_fix(&a, &target, &missing, &extra),
                    recopy_fix(&spec.task_id)
                );
                if explained.is_err() {
                    warn(check, &name, msg, fix)
                } else {
                    fail(check, &name, msg, fix)
                }
            }
        },
        (None, None) => pass(
            check,
            &name,
            format!(
                "gone from the source and from the target ({target}): a DROP or RENAME the sync already applied"
            ),
        ),
        (None, Some(_)) => fail(
            check,
            &name,
            format!(
                "source table {name} no longer exists and no DDL in the source's binlog since the checkpoint \
                 says where it went"
            ),
            format!(
                "recreate {name} on the source, or start a new task without it (the rows already on the target \
                 in {target} stay)"
            ),
        ),
        (Some(a), None) => fail(
            check,
            &name,
            format!("target table {target} is gone, and no DDL in the source's binlog since the checkpoint removed it"),
            format!(
                "create it again on the target with the source's definition ({}), then {}",
                a.create_sql.lines().next().unwrap_or("SHOW CREATE TABLE on the source"),
                recopy_fix(&spec.task_id)
            ),
        ),
    }
}

/// Column names the target lacks and has beyond the source's; `None` when the same.
fn differences(src: &TableInfo, tgt: &TableInfo) -> Option<(Vec<String>, Vec<String>)> {
    let names = |t: &TableInfo| -> BTreeSet<String> {
        t.columns
            .iter()
            .map(|c| c.name.to_ascii_lowercase())
            .collect()
    };
    let (a, b) = (names(src), names(tgt));
    if a == b {
        return None;
    }
    Some((
        a.difference(&b).cloned().collect(),
        b.difference(&a).cloned().collect(),
    ))
}

/// The `ALTER TABLE` that gives the target the source's columns, keeping its rows.
fn alter_fix(src: &TableInfo, target: &str, missing: &[String], extra: &[String]) -> String {
    let mut parts = Vec::new();
    for m in missing {
        if let Some(c) = src.columns.iter().find(|c| c.name.eq_ignore_ascii_case(m)) {
            parts.push(format!(
                "ADD COLUMN {} {}",
                quote_ident(&c.name),
                c.column_type
            ));
        }
    }
    for e in extra {
        parts.push(format!("DROP COLUMN {}", quote_ident(e)));
    }
    format!(
        "on the target, ALTER TABLE {target} {}; (the rows stay; then `ferry verify` repairs the new columns' \
         values)",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, KeyKind};

    fn table(cols: &[&str]) -> TableInfo {
        TableInfo {
            db: "d".into(),
            name: "t".into(),
            columns: cols
                .iter()
                .map(|n| Column {
                    name: n.to_string(),
                    data_type: "int".into(),
                    column_type: "int(11)".into(),
                    nullable: true,
                    generated: false,
                    charset: None,
                    collation: None,
                    unsigned: false,
                })
                .collect(),
            key: Some(vec!["id".into()]),
            key_kind: KeyKind::Primary,
            create_sql: String::new(),
            rows_estimate: 0,
            avg_row_bytes: 0,
            engine: "InnoDB".into(),
            is_view: false,
        }
    }

    #[test]
    fn the_fix_for_different_columns_keeps_the_table() {
        let src = table(&["id", "v", "c"]);
        let tgt = table(&["id", "v", "old"]);
        let (missing, extra) = differences(&src, &tgt).expect("different");
        assert_eq!(
            (missing.clone(), extra.clone()),
            (vec!["c".to_string()], vec!["old".to_string()])
        );
        let fix = alter_fix(&src, "`d`.`t`", &missing, &extra);
        assert!(
            fix.contains("ALTER TABLE `d`.`t` ADD COLUMN `c` int(11), DROP COLUMN `old`"),
            "{fix}"
        );
        assert!(!fix.to_uppercase().contains("DROP TABLE"), "{fix}");
        assert!(!recopy_fix("x").to_uppercase().contains("DROP TABLE"));
        assert_eq!(differences(&src, &table(&["ID", "V", "C"])), None);
    }
}

//! The `plan` stage: snapshot point, target schema, chunks.
//!
//! Invariants:
//! - The source's binlog position is recorded in the task *before* any row is
//!   read (chunk boundaries are read after it), so replaying the binlog from
//!   there over the copied chunks misses no change; a rerun keeps the first
//!   recorded position (an earlier point only replays more, idempotently).
//! - Every selected table is refused up front when it has no usable key, and
//!   every schema problem of every table is reported at once, before anything
//!   is created on the target.
//! - The chunks of a table are recorded before its table record; the table
//!   record marks the table's plan complete. A rerun skips complete tables,
//!   replaces the chunks of a half-recorded one, and reuses the table list of
//!   the first run (so chunk ids never change meaning). Once `planned` is set,
//!   a rerun only reports what is recorded: it never re-creates or truncates.
//! - Row filters are applied by copy, not here.

use std::collections::BTreeMap;
use std::time::Instant;

use ferry_core::model::{Direction, SnapshotPoint, TablePhase, TableRecord, TaskRecord, TaskState};
use ferry_core::secret::SecretSource;
use ferry_core::store::{now_ms, ItemStore, Repo};
use ferry_core::task::{MigrationType, TaskSpec};
use ferry_core::{FerryError, Stage};
use ferry_mysql::dialect::caps::{self, TargetCaps, CAPS_RECORD};
use ferry_mysql::dialect::{self, Problem, TargetContext, TranslateOptions, Translated};
use ferry_mysql::planner::{no_key_error, plan_chunks};
use ferry_mysql::schema::{
    binlog_position, list_selected_tables, read_source_table, read_table, TableInfo,
};
use ferry_mysql::{classify, quote_ident};
use mysql_async::prelude::*;
use mysql_async::Conn;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::copy_chunk::CopyWorker;
use crate::{task_id, StageEnv};

/// The record holding the table list of the first plan run.
pub const TABLES_RECORD: &str = "plan#tables";

/// Key of the record with a table's deferred DDL: `deferred#<db.table>` (source name).
pub fn deferred_key(source_name: &str) -> String {
    format!("deferred#{source_name}")
}

/// What `plan` leaves for after the load of one table (read by copy-chunk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredDdl {
    pub target_db: String,
    pub target_table: String,
    /// Secondary indexes, then foreign keys; run after the table's last chunk.
    pub statements: Vec<String>,
    /// What the translation changed, for the operator.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Input of the stage: `{"task_id"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanInput {
    pub task_id: String,
}

impl PlanInput {
    pub fn from_json(input: &Value) -> Result<Self, FerryError> {
        Ok(PlanInput {
            task_id: task_id(input)?,
        })
    }
}

/// Output of the stage: what was planned, and one copy worker per slot (the
/// state machine's Map runs `copy-chunk` once per item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOutput {
    pub task_id: String,
    pub tables: u64,
    pub chunks: u64,
    pub workers: Vec<CopyWorker>,
}

/// The stage as the state machine calls it: JSON in, JSON out, over [`run_typed`].
pub async fn run<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    input: Value,
    deadline: Instant,
) -> Result<Value, FerryError> {
    let input = PlanInput::from_json(&input)?;
    crate::to_output(&run_typed(env, input, deadline).await?)
}

pub async fn run_typed<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    input: PlanInput,
    deadline: Instant,
) -> Result<PlanOutput, FerryError> {
    let id = input.task_id;
    let task = env.repo.task(&id).await?;
    if task.planned {
        let cpus = target_cpus(&env.repo, &id).await?;
        return output(&env.repo, &task, cpus).await;
    }
    let task = env
        .repo
        .set_state(&id, TaskState::Migrating, Some(Stage::Plan.name()))
        .await?;
    let spec = &task.spec;
    let (source, target) = env.endpoints(spec).await?;
    let mut src = source.connect().await?;
    if task.snapshot.is_none() && task.spec.has(MigrationType::Incremental) {
        clear_other_incarnations(&task, &source, &target).await?;
    }
    record_snapshot(&env.repo, &task, &mut src).await?;

    let tables = table_list(&env.repo, spec, &mut src).await?;
    let infos = read_tables(&mut src, spec, &tables).await?;
    if spec.has(MigrationType::Schema) {
        let mut dst = target.connect().await?;
        create_schema(&env.repo, spec, &mut src, &mut dst, &infos).await?;
    } else if spec.options.concurrency == 0 {
        // The number of copy workers follows the target's CPUs (see `output`).
        let mut dst = target.connect().await?;
        target_caps(&env.repo, &id, &mut dst).await?;
    }
    let done: Vec<String> = env
        .repo
        .tables(&id)
        .await?
        .iter()
        .map(TableRecord::source_name)
        .collect();
    for (index, info) in infos.iter().enumerate() {
        if done.contains(&info.full_name()) {
            continue;
        }
        if Instant::now() >= deadline {
            return Err(FerryError::Transient(format!(
                "plan of task {id}: the time slice ended after {index} of {} tables; the rerun continues from there",
                infos.len()
            )));
        }
        plan_table(&env.repo, spec, &mut src, info, index).await?;
    }
    let task = env.repo.update_task(&id, |t| t.planned = true).await?;
    let cpus = target_cpus(&env.repo, &id).await?;
    let out = output(&env.repo, &task, cpus).await?;
    tracing::info!(
        task = %id,
        concurrency = task.spec.options.concurrency,
        target_cpus = ?cpus,
        workers = out.workers.len(),
        "copy workers (concurrency 0 chooses 4, or the target's CPUs when fewer; at most one per chunk)"
    );
    Ok(out)
}

/// `{"task_id","tables","chunks","workers":[{"task_id","worker"}..]}` from the
/// records: one worker per chunk up to [`TaskOptions::copy_workers`] for the
/// target's CPUs as probed ([`target_cpus`]).
///
/// [`TaskOptions::copy_workers`]: ferry_core::task::TaskOptions::copy_workers
async fn output<S: ItemStore>(
    repo: &Repo<S>,
    task: &TaskRecord,
    cpus: Option<u32>,
) -> Result<PlanOutput, FerryError> {
    let tables = repo.tables(&task.task_id).await?.len() as u64;
    let chunks = repo.chunks(&task.task_id).await?.len() as u64;
    let n = u64::from(task.spec.options.copy_workers(cpus))
        .min(chunks)
        .max(1);
    let workers = (0..n)
        .map(|worker| CopyWorker {
            task_id: task.task_id.clone(),
            worker,
        })
        .collect();
    Ok(PlanOutput {
        task_id: task.task_id.clone(),
        tables,
        chunks,
        workers,
    })
}

/// A new plan (no snapshot point yet, so no link of this incarnation exists)
/// removes the checkpoint rows of every other incarnation of its task_id from
/// both databases: a task started again after its state was lost would
/// otherwise resume from them, before its snapshot point (replaying the old
/// task's changes) or, after a `RESET MASTER`, past changes it never applied.
async fn clear_other_incarnations(
    task: &TaskRecord,
    source: &ferry_mysql::Endpoint,
    target: &ferry_mysql::Endpoint,
) -> Result<(), FerryError> {
    let meta = &task.spec.options.meta_schema;
    let incarnation = task.incarnation();
    for ep in [target, source] {
        let mut conn = ep.connect().await?;
        let removed = ferry_mysql::apply::clear_other_incarnations(
            &mut conn,
            meta,
            &task.task_id,
            &incarnation,
        )
        .await?;
        let _ = conn.disconnect().await;
        if !removed.is_empty() {
            tracing::warn!(
                task = %task.task_id,
                side = %ep.role,
                incarnation = %incarnation,
                removed = %removed.join(", "),
                "removed checkpoint rows an earlier incarnation of this task_id left (it was started again without `ferry release`)"
            );
        }
    }
    Ok(())
}

/// `ferry resume TASK --recopy`: the way out when the source no longer has the
/// binlog from the link's checkpoint. Every table is copied again over the rows
/// already on the target (the copy writes with REPLACE semantics; no table is
/// dropped or truncated) from a new snapshot point recorded now, before any
/// row is read, and the forward link starts over there: its checkpoint rows on
/// the target and in the store are removed first. Refused once the task has
/// switched. Rows the source deleted while its binlog was lost stay on the
/// target until a verify with repair removes them. Call under the task's lock.
pub async fn recopy<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    id: &str,
) -> Result<String, FerryError> {
    let task = env.repo.task(id).await?;
    if let Some(ck) = env.repo.checkpoint(id, Direction::Forward).await? {
        if ck.is_retired() {
            return Err(FerryError::BadTask(format!(
                "task {id} has switched over: the target is the primary, a re-copy from the source would overwrite it"
            )));
        }
    }
    if !task.planned {
        return Err(FerryError::BadTask(format!(
            "task {id} has not created its tables yet: `ferry resume {id}` (without --recopy) copies them"
        )));
    }
    let (source, target) = env.endpoints(&task.spec).await?;
    if task.spec.has(MigrationType::Incremental) {
        let link = ferry_mysql::apply::Link {
            meta_schema: task.spec.options.meta_schema.clone(),
            task_id: id.to_string(),
            direction: Direction::Forward,
            epoch: 0,
            incarnation: Some(task.incarnation()),
        };
        let mut dst = target.connect().await?;
        link.ensure_table(&mut dst).await?;
        link.delete(&mut dst).await?;
        let _ = dst.disconnect().await;
        env.repo.delete_checkpoint(id, Direction::Forward).await?;
    }
    let mut src = source.connect().await?;
    let point = match binlog_position(&mut src, "source").await {
        Ok(position) => Some(SnapshotPoint {
            position,
            at_ms: now_ms(),
        }),
        Err(e) if !task.spec.has(MigrationType::Incremental) => {
            tracing::debug!(error = %e, "no snapshot position (not needed without incremental)");
            None
        }
        Err(e) => return Err(e),
    };
    let _ = src.disconnect().await;
    env.repo
        .update_task(id, |t| {
            t.snapshot = point.clone();
            t.copy_finished = None;
            t.state = TaskState::Migrating;
            t.last_error = None;
        })
        .await?;
    let chunks = env.repo.reset_all_chunks(id).await?;
    for t in env.repo.tables(id).await? {
        env.repo
            .update_table(id, &t.source_name(), |r| r.phase = TablePhase::Planned)
            .await?;
    }
    Ok(format!(
        "task {id}: every table is copied again ({chunks} chunks) over the rows on the target{}",
        point
            .map(|p| format!(
                ", and the sync starts at the new snapshot point {}",
                p.position
            ))
            .unwrap_or_default()
    ))
}

/// Record where the source's binlog is, before any row is read. Kept on reruns.
/// Without "incremental" a source without binary logging is fine.
async fn record_snapshot<S: ItemStore>(
    repo: &Repo<S>,
    task: &TaskRecord,
    src: &mut Conn,
) -> Result<(), FerryError> {
    if task.snapshot.is_some() {
        return Ok(());
    }
    let position = match binlog_position(src, "source").await {
        Ok(p) => p,
        Err(e) if !task.spec.has(MigrationType::Incremental) => {
            tracing::warn!(task = %task.task_id, error = %e, "no snapshot position (not needed without incremental)");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    tracing::info!(task = %task.task_id, %position, "snapshot point recorded");
    let point = SnapshotPoint {
        position,
        at_ms: now_ms(),
    };
    repo.update_task(&task.task_id, |t| {
        if t.snapshot.is_none() {
            t.snapshot = Some(point.clone());
        }
    })
    .await
    .map(|_| ())
}

/// The selected tables: those of the first run if recorded, else listed now and recorded.
async fn table_list<S: ItemStore>(
    repo: &Repo<S>,
    spec: &TaskSpec,
    src: &mut Conn,
) -> Result<Vec<(String, String)>, FerryError> {
    if let Some(list) = repo
        .get_record::<Vec<(String, String)>>(&spec.task_id, TABLES_RECORD)
        .await?
    {
        return Ok(list);
    }
    let list = list_selected_tables(src, spec).await?;
    if list.is_empty() {
        return Err(FerryError::BadTask(format!(
            "task file field \"objects.include\": {:?} (minus objects.exclude) matches no base table on the source; \
             check the database and table names (matching is case-sensitive) and that the migration user can see them",
            spec.objects.include
        )));
    }
    repo.put_record(&spec.task_id, TABLES_RECORD, &list).await?;
    Ok(list)
}

/// Read every table; refuse all tables without a usable key in one error.
async fn read_tables(
    src: &mut Conn,
    spec: &TaskSpec,
    tables: &[(String, String)],
) -> Result<Vec<TableInfo>, FerryError> {
    let mut infos = Vec::with_capacity(tables.len());
    let mut keyless = Vec::new();
    for (db, table) in tables {
        let info = read_source_table(src, spec, db, table).await?.ok_or_else(|| {
            FerryError::SchemaIncompatible(format!(
                "table {db}.{table} was selected when this task was first planned but no longer exists on the source; \
                 recreate it, or start a new task (new task_id) without it"
            ))
        })?;
        if info.key.is_none() {
            keyless.push(no_key_error(&info).message().to_string());
        }
        infos.push(info);
    }
    if !keyless.is_empty() {
        return Err(FerryError::SchemaIncompatible(keyless.join("\n")));
    }
    Ok(infos)
}

/// Create the target databases and tables (keeping a table that exists with the
/// same columns), and record each table's deferred DDL.
async fn create_schema<S: ItemStore>(
    repo: &Repo<S>,
    spec: &TaskSpec,
    src: &mut Conn,
    dst: &mut Conn,
    infos: &[TableInfo],
) -> Result<(), FerryError> {
    let dialect = spec.target.dialect;
    let caps = target_caps(repo, &spec.task_id, dst).await?;
    let ctx = TargetContext {
        version: caps.rules_version(dialect),
        renames: spec.objects.rename.clone(),
        caps: Some(caps),
    };
    let opts = TranslateOptions {
        indexes_after_load: spec.options.indexes_after_load,
    };
    let mut translated = Vec::with_capacity(infos.len());
    let mut problems: Vec<Problem> = Vec::new();
    for t in infos {
        let (tdb, tt) = spec.target_name(&t.db, &t.name);
        match dialect::translate_for(t, dialect, &tdb, &tt, &opts, &ctx) {
            Ok(tr) => translated.push((t, tdb, tt, tr)),
            Err(p) => problems.extend(p),
        }
    }
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(|p| format!("- {p}")).collect();
        return Err(FerryError::SchemaIncompatible(format!(
            "{} schema problem(s) for a {} target; nothing was created:\n{}",
            problems.len(),
            dialect.as_str(),
            lines.join("\n")
        )));
    }
    create_databases(src, dst, infos, spec, &ctx).await?;
    for (t, tdb, tt, tr) in &translated {
        create_table(dst, t, tdb, tt, tr).await?;
        for n in &tr.notes {
            tracing::info!(table = %t.full_name(), "schema: {n}");
        }
        let rec = DeferredDdl {
            target_db: tdb.clone(),
            target_table: tt.clone(),
            statements: tr.deferred_indexes.clone(),
            notes: tr.notes.clone(),
        };
        repo.put_record(&spec.task_id, &deferred_key(&t.full_name()), &rec)
            .await?;
    }
    Ok(())
}

/// The target's capabilities: probed once per task and recorded, so every
/// stage and every rerun applies the same rules.
pub async fn target_caps<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    dst: &mut Conn,
) -> Result<TargetCaps, FerryError> {
    if let Some(caps) = repo.get_record::<TargetCaps>(task_id, CAPS_RECORD).await? {
        return Ok(caps);
    }
    let caps = caps::probe(dst, "target").await?;
    tracing::info!(
        task = %task_id,
        version = %caps.version,
        collations = caps.collations.len(),
        crc32c = caps.crc32c,
        local_infile = caps.local_infile,
        binlog = caps.binlog,
        cpus = ?caps.cpus,
        "target capabilities probed"
    );
    repo.put_record(task_id, CAPS_RECORD, &caps).await?;
    Ok(caps)
}

/// The target's CPUs as the plan probed them (`None`: not probed, or the server does not say).
pub async fn target_cpus<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
) -> Result<Option<u32>, FerryError> {
    Ok(repo
        .get_record::<TargetCaps>(task_id, CAPS_RECORD)
        .await?
        .and_then(|c| c.cpus))
}

/// `CREATE DATABASE IF NOT EXISTS` for each target database, with the source database's charset.
async fn create_databases(
    src: &mut Conn,
    dst: &mut Conn,
    infos: &[TableInfo],
    spec: &TaskSpec,
    ctx: &TargetContext,
) -> Result<(), FerryError> {
    let mut dbs: BTreeMap<String, String> = BTreeMap::new();
    for t in infos {
        dbs.entry(spec.target_name(&t.db, &t.name).0)
            .or_insert_with(|| t.db.clone());
    }
    for (tdb, sdb) in dbs {
        let row: Option<(String, String)> = src
            .exec_first(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA \
                 WHERE SCHEMA_NAME = ?",
                (sdb.as_str(),),
            )
            .await
            .map_err(|e| classify(e, &format!("source: reading the character set of database {sdb}")))?;
        let (cs, co) = row.unwrap_or_else(|| ("utf8mb4".into(), "utf8mb4_general_ci".into()));
        let (cs, co, notes) = dialect::database_charset(spec.target.dialect, ctx, &sdb, &cs, &co);
        for n in notes {
            tracing::info!(database = %tdb, "schema: {n}");
        }
        let sql = format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET {cs} COLLATE {co}",
            quote_ident(&tdb)
        );
        dst.query_drop(&sql).await.map_err(|e| match classify(e, &format!("target: {sql}")) {
            FerryError::ChunkFailed(m) => FerryError::SchemaIncompatible(format!(
                "{m}\nCreate database {} on the target by hand (any character set that holds the source's \
                 characters) and rerun: an existing database is kept.",
                quote_ident(&tdb)
            )),
            other => other,
        })?;
    }
    Ok(())
}

/// Create one table, or keep it when it exists with the same columns.
async fn create_table(
    dst: &mut Conn,
    t: &TableInfo,
    tdb: &str,
    tt: &str,
    tr: &Translated,
) -> Result<(), FerryError> {
    if let Some(existing) = read_table(dst, tdb, tt).await? {
        if same_columns(t, &existing) {
            tracing::info!(table = %t.full_name(), target = %existing.full_name(), "target table exists with the same columns; kept");
            return Ok(());
        }
        return Err(FerryError::SchemaIncompatible(format!(
            "target table {tdb}.{tt} already exists with different columns than source table {}.\n\
             target has:\n{}\nFerry would create:\n{}\n\
             Drop or rename the target table (it is never altered or truncated by Ferry), or map the source table \
             elsewhere with objects.rename.",
            t.full_name(),
            existing.create_sql,
            tr.create_sql
        )));
    }
    dst.query_drop(&tr.create_sql).await.map_err(|e| {
        let err = classify(e, &format!("target: creating {tdb}.{tt}"));
        FerryError::SchemaIncompatible(format!(
            "{}\nstatement: {}\nCreate the table on the target by hand and rerun (an existing table with the same \
             columns is kept).",
            err.message(),
            tr.create_sql
        ))
    })?;
    tracing::info!(table = %t.full_name(), target = %format!("{tdb}.{tt}"), "target table created");
    Ok(())
}

/// Whether an existing target table has the source table's columns (names in
/// order, and types up to the translations `dialect` makes).
pub fn same_columns(source: &TableInfo, target: &TableInfo) -> bool {
    let family = |t: &str| -> &'static str {
        match t {
            "uuid" | "char" => "char",
            "inet6" | "inet4" | "varchar" => "varchar",
            "longtext" | "json" => "json",
            "int" | "integer" => "int",
            "decimal" | "numeric" => "decimal",
            "double" | "real" | "double precision" => "double",
            _ => "other",
        }
    };
    source.columns.len() == target.columns.len()
        && source.columns.iter().zip(&target.columns).all(|(a, b)| {
            a.name.eq_ignore_ascii_case(&b.name)
                && (a.data_type == b.data_type
                    || (family(&a.data_type) != "other"
                        && family(&a.data_type) == family(&b.data_type)))
        })
}

/// Plan one table's chunks and record them, then its table record.
async fn plan_table<S: ItemStore>(
    repo: &Repo<S>,
    spec: &TaskSpec,
    src: &mut Conn,
    info: &TableInfo,
    index: usize,
) -> Result<(), FerryError> {
    let started = Instant::now();
    let chunks = plan_chunks(src, info, spec.options.chunk_rows, index).await?;
    // A previous run may have recorded part of this table's chunks: replace them.
    for old in repo.chunks(&spec.task_id).await? {
        if old.source_db == info.db && old.source_table == info.name {
            repo.delete_record(&spec.task_id, &format!("chunk#{}", old.chunk_id))
                .await?;
        }
    }
    repo.put_chunks(&spec.task_id, &chunks).await?;
    let (target_db, target_table) = spec.target_name(&info.db, &info.name);
    let record = TableRecord {
        source_db: info.db.clone(),
        source_table: info.name.clone(),
        target_db,
        target_table,
        key_columns: info.key.clone().unwrap_or_default(),
        phase: TablePhase::Planned,
        rows_estimate: info.rows_estimate,
        chunks_total: chunks.len() as u64,
    };
    repo.put_table(&spec.task_id, &record).await?;
    tracing::info!(
        table = %info.full_name(),
        chunks = chunks.len(),
        rows_estimate = info.rows_estimate,
        secs = started.elapsed().as_secs_f64(),
        "chunks planned"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_mysql::schema::{Column, KeyKind};

    fn table(cols: &[(&str, &str)]) -> TableInfo {
        TableInfo {
            db: "d".into(),
            name: "t".into(),
            columns: cols
                .iter()
                .map(|(n, t)| Column {
                    name: n.to_string(),
                    data_type: t.to_string(),
                    column_type: t.to_string(),
                    nullable: false,
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
    fn same_columns_allows_the_translated_types() {
        let src = table(&[("id", "uuid"), ("j", "longtext"), ("ip", "inet6")]);
        assert!(same_columns(
            &src,
            &table(&[("id", "char"), ("j", "json"), ("ip", "varchar")])
        ));
        assert!(same_columns(&src, &src.clone()));
        assert!(!same_columns(
            &src,
            &table(&[("id", "char"), ("j", "json")])
        ));
        assert!(!same_columns(
            &src,
            &table(&[("id", "int"), ("j", "json"), ("ip", "varchar")])
        ));
        assert!(!same_columns(
            &table(&[("a", "date")]),
            &table(&[("a", "datetime")])
        ));
    }

    #[test]
    fn deferred_record_reads_as_copy_expects() {
        let rec = DeferredDdl {
            target_db: "d".into(),
            target_table: "t".into(),
            statements: vec!["ALTER TABLE `d`.`t` ADD KEY `k` (`a`)".into()],
            notes: vec![],
        };
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["statements"][0], "ALTER TABLE `d`.`t` ADD KEY `k` (`a`)");
        assert_eq!(deferred_key("d.t"), "deferred#d.t");
    }
}

//! The `cleanup` stage: stop a task, and release it.
//!
//! Input `{"task_id","action":"stop"|"report"|"release"}` (optional
//! `"force": true` for release: a side that cannot be reached is left as it
//! is, and the report says so).
//! * `stop`: the state machine calls it when a link's loop ends on the
//!   operator's stop flag; the task is `stopped` (resumable). Output `{"task_id","state"}`.
//! * `report`: the final report of the task as the store has it. Output `{"task_id","report"}`.
//! * `release`: stop the links, remove the task's checkpoints, heartbeat rows and
//!   Ferry's metadata objects from both databases, then every record of the task
//!   from the store. Output `{"task_id","released","already","refused","report","removed"}`.
//!
//! Invariants:
//! * Release never runs while a switch is in progress: it answers
//!   `"released": false` with the reason in `"refused"` (a normal result, so the
//!   task is not marked failed by the refusal).
//! * Release is idempotent: each step can be repeated, the task record is deleted
//!   last, so a release cut short is finished by the next, and a task that is gone
//!   is `"already": true`.
//! * Only this task's rows are deleted from Ferry's shared tables (every table of
//!   the meta schema with a `task_id` column); such a table is dropped only when
//!   no row of any task remains, and the meta schema only when it holds no table.
//!   Removing the link's checkpoint rows also fences an applier still running:
//!   its conditional checkpoint update finds no row and it rolls back.

use std::collections::BTreeMap;
use std::time::Instant;

use ferry_core::model::{
    CheckpointRecord, ChunkState, ChunkSummary, Direction, ErrorInfo, TaskRecord, TaskState,
};
use ferry_core::secret::SecretSource;
use ferry_core::store::{now_ms, ItemStore, Repo};
use ferry_core::task::{Dialect, MigrationType};
use ferry_core::{FerryError, Stage};
use ferry_mysql::{classify, qualified, quote_ident, Endpoint};
use mysql_async::prelude::*;
use mysql_async::Conn;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::switch::{self, SwitchRecord};
use crate::{task_id, StageEnv};

/// One table in the final report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportTable {
    pub source: String,
    pub target: String,
    pub rows_copied: u64,
    pub chunks: u64,
}

/// What a released task leaves behind (written as JSON and Markdown by `ferry release`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    pub task_id: String,
    /// The state when the report was made (`released` after a release).
    pub state: String,
    pub types: Vec<MigrationType>,
    pub source_secret: String,
    pub target_secret: String,
    pub target_dialect: Dialect,
    pub created_ms: u64,
    pub reported_ms: u64,
    pub tables: Vec<ReportTable>,
    pub totals: ChunkSummary,
    #[serde(default)]
    pub snapshot: Option<String>,
    pub checkpoints: Vec<CheckpointRecord>,
    /// The verify stage's last summary (`verify#summary`), as it recorded it.
    #[serde(default)]
    pub verify: Option<Value>,
    #[serde(default)]
    pub switch: Option<SwitchRecord>,
    #[serde(default)]
    pub last_error: Option<ErrorInfo>,
    /// What release removed (or could not) on each database.
    #[serde(default)]
    pub cleanup: BTreeMap<String, SideCleanup>,
}

/// What release did on one database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideCleanup {
    pub rows_deleted: u64,
    pub tables_dropped: Vec<String>,
    pub schema_dropped: bool,
    /// Tables of the meta schema that other tasks still use (kept).
    pub kept: Vec<String>,
    /// Set when the side was not cleaned (unreachable with `force`).
    #[serde(default)]
    pub skipped: Option<String>,
}

/// Input of the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupInput {
    /// `{"task_id","action":"stop"}`: mark the task stopped.
    Stop { task_id: String },
    /// `{"task_id","action":"report"}`: the final report as the store has it now.
    Report { task_id: String },
    /// `{"task_id"}` (or `"action":"release"`, optional `"force"`): remove
    /// Ferry's objects from both databases and the task's records.
    Release { task_id: String, force: bool },
}

impl CleanupInput {
    pub fn from_json(input: &Value) -> Result<Self, FerryError> {
        let task_id = task_id(input)?;
        let force = input.get("force").and_then(Value::as_bool).unwrap_or(false);
        match input
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("release")
        {
            "stop" => Ok(CleanupInput::Stop { task_id }),
            "report" => Ok(CleanupInput::Report { task_id }),
            "release" => Ok(CleanupInput::Release { task_id, force }),
            other => Err(FerryError::BadTask(format!(
                "cleanup: \"action\" is \"{other}\"; use \"stop\", \"report\" or \"release\""
            ))),
        }
    }
}

/// Output of a stop: the task's state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopOutput {
    pub task_id: String,
    pub state: String,
}

/// Output of a report call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportOutput {
    pub task_id: String,
    pub report: FinalReport,
}

/// Output of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseOutput {
    pub task_id: String,
    pub released: bool,
    /// The task was released before (no records left).
    pub already: bool,
    /// Why the release must wait (nothing was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_deleted: Option<u64>,
    /// The final report, written before the records go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<FinalReport>,
}

/// The stage as the state machine and the CLI call it: JSON in, JSON out.
pub async fn run<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    input: Value,
    _deadline: Instant,
) -> Result<Value, FerryError> {
    match CleanupInput::from_json(&input)? {
        CleanupInput::Stop { task_id } => crate::to_output(&stop(&env.repo, &task_id).await?),
        CleanupInput::Report { task_id } => {
            let report = report(&env.repo, &env.repo.task(&task_id).await?).await?;
            crate::to_output(&ReportOutput { task_id, report })
        }
        CleanupInput::Release { task_id, force } => {
            crate::to_output(&release(env, &task_id, force).await?)
        }
    }
}

async fn stop<S: ItemStore>(repo: &Repo<S>, id: &str) -> Result<StopOutput, FerryError> {
    let t = repo.set_state(id, TaskState::Stopped, None).await?;
    tracing::info!(
        task = id,
        "stopped on the operator's request; `ferry resume` continues from the checkpoints"
    );
    Ok(StopOutput {
        task_id: id.to_string(),
        state: t.state.as_str().to_string(),
    })
}

/// The task's final report as the store has it now.
pub async fn report<S: ItemStore>(
    repo: &Repo<S>,
    task: &TaskRecord,
) -> Result<FinalReport, FerryError> {
    let id = &task.task_id;
    let chunks = repo.chunks(id).await?;
    let mut per: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for c in &chunks {
        let e = per.entry(c.table_name()).or_default();
        e.1 += 1;
        if c.state == ChunkState::Done {
            e.0 += c.rows;
        }
    }
    let tables = repo
        .tables(id)
        .await?
        .iter()
        .map(|t| {
            let (rows, n) = per.get(&t.source_name()).copied().unwrap_or_default();
            ReportTable {
                source: t.source_name(),
                target: format!("{}.{}", t.target_db, t.target_table),
                rows_copied: rows,
                chunks: n,
            }
        })
        .collect();
    let mut checkpoints = Vec::new();
    for dir in [Direction::Forward, Direction::Reverse] {
        checkpoints.extend(repo.checkpoint(id, dir).await?);
    }
    Ok(FinalReport {
        task_id: id.clone(),
        state: task.state.as_str().to_string(),
        types: task.spec.types.clone(),
        source_secret: task.spec.source.secret.clone(),
        target_secret: task.spec.target.secret.clone(),
        target_dialect: task.spec.target.dialect,
        created_ms: task.created_ms,
        reported_ms: now_ms(),
        tables,
        totals: repo.chunk_summary(id).await?,
        snapshot: task.snapshot.as_ref().map(|s| s.position.to_string()),
        checkpoints,
        verify: repo.get_record(id, "verify#summary").await?,
        switch: switch::record(repo, id).await?,
        last_error: task.last_error.clone(),
        cleanup: BTreeMap::new(),
    })
}

async fn release<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    id: &str,
    force: bool,
) -> Result<ReleaseOutput, FerryError> {
    let out = |released, already| ReleaseOutput {
        task_id: id.to_string(),
        released,
        already,
        refused: None,
        records_deleted: None,
        report: None,
    };
    let Some(task) = env.repo.get_task(id).await? else {
        return Ok(out(true, true));
    };
    if let Some(reason) = refusal(&env.repo, &task).await? {
        return Ok(ReleaseOutput {
            refused: Some(reason),
            ..out(false, false)
        });
    }
    env.repo
        .update_flags(id, |f| f.stop_requested = true)
        .await?;
    let task = env
        .repo
        .set_state(id, TaskState::Releasing, Some(Stage::Cleanup.name()))
        .await?;
    let mut rep = report(&env.repo, &task).await?;
    let (source, target) = env.endpoints(&task.spec).await?;
    let meta = &task.spec.options.meta_schema;
    for ep in [&source, &target] {
        let side = match clean_side(ep, meta, id).await {
            Ok(side) => side,
            Err(e) if force => SideCleanup {
                skipped: Some(format!("not cleaned ({}): {}", e.name(), e.message())),
                ..SideCleanup::default()
            },
            Err(e) => return Err(with_hint(e, id)),
        };
        tracing::info!(task = id, side = %ep.describe(), rows = side.rows_deleted, dropped = ?side.tables_dropped, "released Ferry's objects");
        rep.cleanup.insert(role(ep), side);
    }
    let records = env.repo.delete_task(id).await?;
    rep.state = TaskState::Released.as_str().to_string();
    Ok(ReleaseOutput {
        records_deleted: Some(records as u64),
        report: Some(rep),
        ..out(true, false)
    })
}

/// Why release must wait, if it must.
async fn refusal<S: ItemStore>(
    repo: &Repo<S>,
    task: &TaskRecord,
) -> Result<Option<String>, FerryError> {
    let rec = switch::record(repo, &task.task_id).await?;
    if rec.as_ref().is_some_and(SwitchRecord::in_progress) || task.state == TaskState::Switching {
        return Ok(Some(format!(
            "task {} is switching (the forward link is being retired and the reverse link started); \
             release would leave both databases without a link. Wait until `ferry status {}` shows the switch done, then release",
            task.task_id, task.task_id
        )));
    }
    Ok(None)
}

fn role(ep: &Endpoint) -> String {
    ep.role.clone()
}

fn with_hint(e: FerryError, id: &str) -> FerryError {
    let msg = format!(
        "{} — release stopped before deleting the task's records; rerun `ferry release {id}` when the database is back, \
         or `ferry release {id} --force` to leave that database's Ferry objects in place",
        e.message()
    );
    FerryError::from_name(e.name(), msg)
}

/// Remove this task's rows from every table of the meta schema with a
/// `task_id` column; drop such tables once empty, and the schema once it holds no table.
pub async fn clean_side(ep: &Endpoint, meta: &str, id: &str) -> Result<SideCleanup, FerryError> {
    let mut conn = ep.connect().await?;
    let who = ep.describe();
    let result = clean_with(&mut conn, &who, meta, id).await;
    let _ = conn.disconnect().await;
    result
}

async fn clean_with(
    conn: &mut Conn,
    who: &str,
    meta: &str,
    id: &str,
) -> Result<SideCleanup, FerryError> {
    let mut side = SideCleanup::default();
    let err = |what: String| move |e| classify(e, &format!("{who}: {what}"));
    // SUM is NULL for a table whose columns cannot be seen (a precheck's probe table being
    // created or dropped at this moment): typed as `u64` the row would panic in the driver.
    let tables: Vec<(String, Option<u64>)> = conn
        .exec(
            "SELECT t.TABLE_NAME, SUM(c.COLUMN_NAME = 'task_id') FROM information_schema.TABLES t \
             LEFT JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME \
             WHERE t.TABLE_SCHEMA = ? GROUP BY t.TABLE_NAME ORDER BY t.TABLE_NAME",
            (meta,),
        )
        .await
        .map_err(err(format!("listing the tables of {meta}")))?;
    for (table, has_task) in &tables {
        let name = qualified(meta, table);
        if has_task.unwrap_or(0) == 0 {
            side.kept.push(table.clone());
            continue;
        }
        conn.exec_drop(format!("DELETE FROM {name} WHERE task_id = ?"), (id,))
            .await
            .map_err(err(format!("deleting the task's rows from {name}")))?;
        side.rows_deleted += conn.affected_rows();
        let others: Option<u8> = conn
            .query_first(format!("SELECT 1 FROM {name} LIMIT 1"))
            .await
            .map_err(err(format!("reading {name}")))?;
        if others.is_some() {
            side.kept.push(table.clone());
        } else {
            conn.query_drop(format!("DROP TABLE IF EXISTS {name}"))
                .await
                .map_err(err(format!("dropping {name}")))?;
            side.tables_dropped.push(table.clone());
        }
    }
    let exists: Option<String> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (meta,),
        )
        .await
        .map_err(err(format!("looking for {meta}")))?;
    if exists.is_some() && side.kept.is_empty() {
        conn.query_drop(format!("DROP DATABASE IF EXISTS {}", quote_ident(meta)))
            .await
            .map_err(err(format!("dropping the schema {meta}")))?;
        side.schema_dropped = true;
    }
    Ok(side)
}

/// The report as Markdown: tables, rows, verify summary, switch steps, cleanup.
pub fn render_markdown(r: &FinalReport) -> String {
    let mut md = format!("# Ferry task `{}`: final report\n\n", r.task_id);
    let types: Vec<String> = r
        .types
        .iter()
        .map(|t| format!("{t:?}").to_lowercase())
        .collect();
    md.push_str(&format!(
        "- state: **{}**\n- types: {}\n- source secret: `{}`; target secret: `{}` ({})\n- created: {} ms; reported: {} ms (Unix)\n",
        r.state,
        types.join(", "),
        r.source_secret,
        r.target_secret,
        r.target_dialect.as_str(),
        r.created_ms,
        r.reported_ms
    ));
    if let Some(s) = &r.snapshot {
        md.push_str(&format!("- snapshot position: `{s}`\n"));
    }
    if let Some(e) = &r.last_error {
        md.push_str(&format!("- last error: `{}`: {}\n", e.name, e.message));
    }
    md.push_str("\n## Tables\n\n| source | target | rows copied | chunks |\n|---|---|---:|---:|\n");
    for t in &r.tables {
        md.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            t.source, t.target, t.rows_copied, t.chunks
        ));
    }
    let t = &r.totals;
    md.push_str(&format!(
        "| **total** | | {} | {} ({} done, {} failed) |\n",
        t.rows, t.total, t.done, t.failed
    ));
    md.push_str("\n## Links\n\n| link | position | epoch | applied rows | lag (ms) |\n|---|---|---:|---:|---:|\n");
    for c in &r.checkpoints {
        let epoch = if c.is_retired() {
            "retired".to_string()
        } else {
            c.epoch.to_string()
        };
        let lag = c
            .lag_ms
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into());
        md.push_str(&format!(
            "| {} | `{}` | {epoch} | {} | {lag} |\n",
            c.direction.as_str(),
            c.position,
            c.applied_rows
        ));
    }
    md.push_str("\n## Verify\n\n");
    md.push_str(&verify_markdown(r.verify.as_ref()));
    md.push_str("\n## Switch\n\n");
    md.push_str(&switch_markdown(r.switch.as_ref()));
    if !r.cleanup.is_empty() {
        md.push_str("\n## Release\n\n| database | rows deleted | tables dropped | schema dropped | kept |\n|---|---:|---|---|---|\n");
        for (side, c) in &r.cleanup {
            let kept = c.skipped.clone().unwrap_or_else(|| c.kept.join(", "));
            md.push_str(&format!(
                "| {side} | {} | {} | {} | {kept} |\n",
                c.rows_deleted,
                c.tables_dropped.join(", "),
                if c.schema_dropped { "yes" } else { "no" }
            ));
        }
    }
    md
}

fn verify_markdown(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "No verify run finished.\n".into();
    };
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let clean = v.get("clean").and_then(Value::as_bool).unwrap_or(false);
    let mut md = format!(
        "{}: {} rows in {} chunks compared, {} difference(s), {} unsettled, {} repaired.\n",
        if clean {
            "**clean**"
        } else {
            "**differences found**"
        },
        n("rows"),
        n("chunks"),
        n("differences"),
        n("unsettled"),
        n("repaired")
    );
    if let Some(tables) = v.get("tables").and_then(Value::as_array) {
        md.push_str("\n| table | rows | differences | unsettled |\n|---|---:|---:|---:|\n");
        for t in tables {
            let g = |k: &str| t.get(k).and_then(Value::as_u64).unwrap_or(0);
            let name = t.get("table").and_then(Value::as_str).unwrap_or("?");
            md.push_str(&format!(
                "| `{name}` | {} | {} | {} |\n",
                g("rows"),
                g("differences"),
                g("unsettled")
            ));
        }
    }
    md
}

/// The switch's steps as a Markdown table (also used by `ferry status`).
pub fn switch_markdown(s: Option<&SwitchRecord>) -> String {
    let Some(s) = s else {
        return "No switch was requested.\n".into();
    };
    let mut md = format!("Phase: **{}**", s.phase.as_str());
    if let Some(p) = &s.reverse_start {
        md.push_str(&format!("; reverse link starts at the target's `{p}`"));
    }
    if let Some(r) = &s.reason {
        md.push_str(&format!("; {r}"));
    }
    md.push_str("\n\n| step | outcome | detail | at (ms) |\n|---|---|---|---:|\n");
    for st in &s.steps {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            st.step,
            format!("{:?}", st.outcome).to_lowercase(),
            st.detail.replace('|', "\\|"),
            st.at_ms
        ));
    }
    md
}

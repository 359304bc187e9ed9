//! `ferry status TASK_ID [--json]`: a task as the local store has it.
//!
//! Invariant: only reads the store (never creates it), and prints nothing a
//! secret could be in: the task file holds secret *names* only.

use std::collections::BTreeMap;

use ferry_core::model::{
    CheckStatus, ChunkRecord, ChunkState, ChunkSummary, ErrorInfo, LivenessView, PrecheckReport,
    TablePhase, TableRecord, TaskRecord,
};
use ferry_core::store::{now_ms, Repo};
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::context::{Failure, Global};

#[derive(Debug, Serialize)]
struct Status {
    task_id: String,
    state: String,
    stage: Option<String>,
    created_ms: u64,
    updated_ms: u64,
    last_error: Option<ErrorInfo>,
    /// Verify differences nothing resolved yet (the switch refuses while set).
    #[serde(skip_serializing_if = "Option::is_none")]
    attention: Option<ferry_core::model::Attention>,
    precheck: Option<PrecheckSummary>,
    snapshot: Option<String>,
    tables: Vec<TableStatus>,
    totals: ChunkSummary,
    /// Whether a worker runs the task now (its heartbeat, and the local lock file).
    worker: Option<LivenessView>,
    /// Links (lag), control flags and the switch's steps.
    #[serde(flatten)]
    control: Option<crate::cmd_control::LinkStatus>,
    /// The last finished verify (`ferry verify`, or the state machine's), per table.
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<ferry_stages::verify::VerifySummary>,
    /// The same (and a verify in progress) as text lines.
    #[serde(skip)]
    verify_lines: Vec<String>,
}

#[derive(Debug, Serialize)]
struct PrecheckSummary {
    ok: bool,
    pass: usize,
    warn: usize,
    fail: usize,
    /// The rendered report when an item failed or warned.
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<String>,
}

#[derive(Debug, Serialize)]
struct TableStatus {
    source: String,
    target: String,
    phase: String,
    rows_estimate: u64,
    rows_copied: u64,
    chunks_done: u64,
    chunks_total: u64,
    chunks_failed: u64,
}

pub async fn run(global: &Global, args: StatusArgs) -> Result<u8, Failure> {
    let repo = Repo::new(global.existing_store()?);
    let task = repo.task(&args.task_id).await?;
    let tables = repo.tables(&args.task_id).await?;
    let chunks = repo.chunks(&args.task_id).await?;
    let totals = repo.chunk_summary(&args.task_id).await?;
    let alive = repo.liveness(&args.task_id).await?;
    // A `ferry run` holds the task's lock while it works: no holder, nothing runs
    // (whatever the last heartbeat's age), as after a kill -9.
    let held = ferry_local::TaskLock::is_held(&global.state_dir, &args.task_id)?;
    let worker = LivenessView::of(
        alive.as_ref(),
        task.state,
        Some(held),
        &format!("`ferry resume {}`", args.task_id),
        now_ms(),
    );
    let mut status = build(task, &tables, &chunks, totals);
    status.worker = Some(worker);
    status.control = Some(crate::cmd_control::link_status(&repo, &args.task_id).await?);
    status.verify = repo
        .get_record(&args.task_id, ferry_stages::verify::SUMMARY_SK)
        .await?;
    status.verify_lines = ferry_stages::verify::summary_lines(&repo, &args.task_id).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&status).map_err(|e| {
            ferry_core::FerryError::Internal(format!("cannot encode the status: {e}"))
        })?;
        println!("{text}");
    } else {
        print!("{}", render(&status));
    }
    Ok(0)
}

fn build(
    task: TaskRecord,
    tables: &[TableRecord],
    chunks: &[ChunkRecord],
    totals: ChunkSummary,
) -> Status {
    let mut per_table: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for c in chunks {
        let e = per_table.entry(c.table_name()).or_default();
        e.1 += 1;
        match c.state {
            ChunkState::Done => {
                e.0 += c.rows;
                e.2 += 1;
            }
            ChunkState::Failed => e.3 += 1,
            _ => {}
        }
    }
    let tables = tables
        .iter()
        .map(|t| {
            let (rows, total, done, failed) =
                per_table.get(&t.source_name()).copied().unwrap_or_default();
            TableStatus {
                source: t.source_name(),
                target: format!("{}.{}", t.target_db, t.target_table),
                phase: phase_name(&t.phase),
                rows_estimate: t.rows_estimate,
                rows_copied: rows,
                chunks_done: done,
                chunks_total: total.max(t.chunks_total),
                chunks_failed: failed,
            }
        })
        .collect();
    Status {
        task_id: task.task_id,
        state: task.state.as_str().to_string(),
        stage: task.stage.filter(|_| task.state.has_stage()),
        created_ms: task.created_ms,
        updated_ms: task.updated_ms,
        last_error: task.last_error,
        attention: task.attention,
        precheck: task.precheck.as_ref().map(precheck_summary),
        snapshot: task.snapshot.map(|s| s.position.to_string()),
        tables,
        totals,
        worker: None,
        control: None,
        verify: None,
        verify_lines: Vec::new(),
    }
}

fn phase_name(p: &TablePhase) -> String {
    match p {
        TablePhase::Planned => "planned".into(),
        TablePhase::Copying => "copying".into(),
        TablePhase::Copied => "copied".into(),
        TablePhase::Errored { reason, solution } => format!("errored: {reason} (fix: {solution})"),
    }
}

fn precheck_summary(r: &PrecheckReport) -> PrecheckSummary {
    let count = |s: CheckStatus| r.items.iter().filter(|i| i.status == s).count();
    let (pass, warn, fail) = (
        count(CheckStatus::Pass),
        count(CheckStatus::Warn),
        count(CheckStatus::Fail),
    );
    let report = (warn + fail > 0).then(|| problems(r));
    PrecheckSummary {
        ok: r.ok,
        pass,
        warn,
        fail,
        report,
    }
}

/// The failed and warned items of a report, each with its fix, and how many checks passed.
pub(crate) fn problems(r: &PrecheckReport) -> String {
    let items = r
        .items
        .iter()
        .filter(|i| i.status != CheckStatus::Pass)
        .cloned()
        .collect();
    let passed = r
        .items
        .iter()
        .filter(|i| i.status == CheckStatus::Pass)
        .count();
    format!(
        "{}({passed} other checks passed)\n",
        PrecheckReport::new(items).render()
    )
}

/// A message over several lines, continued under the first line's text.
fn indented(text: &str) -> String {
    text.trim_end().replace('\n', &format!("\n{:12}", ""))
}

fn ago(ms: u64) -> String {
    let secs = now_ms().saturating_sub(ms) / 1000;
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

fn render(s: &Status) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<11} {v}\n"));
    line("task", s.task_id.clone());
    let stage = s
        .stage
        .as_deref()
        .map(|st| format!(" (stage {st})"))
        .unwrap_or_default();
    line(
        "state",
        format!("{}{stage}, updated {}", s.state, ago(s.updated_ms)),
    );
    if let Some(w) = &s.worker {
        line("worker", w.text.clone());
    }
    if let Some(a) = &s.attention {
        line("ATTENTION", a.message(&s.task_id));
    }
    if let Some(e) = &s.last_error {
        let with_report = s.precheck.as_ref().is_some_and(|p| p.report.is_some());
        let message = if e.name == "Ferry.PrecheckFailed" && with_report {
            "the precheck failed; see the report below".to_string()
        } else {
            indented(&e.message)
        };
        line(
            "last error",
            format!("{}: {message} ({})", e.name, ago(e.at_ms)),
        );
    }
    match &s.precheck {
        Some(p) => line(
            "precheck",
            format!(
                "{}: {} pass, {} warn, {} fail",
                if p.ok { "passed" } else { "FAILED" },
                p.pass,
                p.warn,
                p.fail
            ),
        ),
        None => line("precheck", "not run yet".into()),
    }
    if let Some(pos) = &s.snapshot {
        line("snapshot", pos.clone());
    }
    line("tables", s.tables.len().to_string());
    for t in &s.tables {
        let failed = if t.chunks_failed > 0 {
            format!(", {} failed", t.chunks_failed)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {} -> {}  {}  {} rows  chunks {}/{}{failed}\n",
            t.source, t.target, t.phase, t.rows_copied, t.chunks_done, t.chunks_total
        ));
    }
    let t = &s.totals;
    out.push_str(&format!(
        "{:<11} {} rows, {} bytes, chunks {}/{} done ({} pending, {} running, {} failed)\n",
        "totals", t.rows, t.bytes, t.done, t.total, t.pending, t.running, t.failed
    ));
    if let Some(c) = &s.control {
        out.push_str(&crate::cmd_control::render_links(c));
    }
    for l in &s.verify_lines {
        out.push_str(l);
        out.push('\n');
    }
    if let Some(report) = s.precheck.as_ref().and_then(|p| p.report.as_ref()) {
        out.push_str("\nprecheck report:\n");
        out.push_str(report);
    }
    out
}

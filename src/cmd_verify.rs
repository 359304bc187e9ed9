//! `ferry verify TASK_ID [--full|--changed|--mode full|sample|recheck|changed] [--repair] [--repair-file FILE] [--report FILE]`:
//! compare the task's source and target now, print the per-table summary,
//! write the repair statements for what differs, optionally apply them
//! (throttled, then checked again), and write a JSON + Markdown report.
//!
//! Invariant: the source is never written; the target only with `--repair`.
//! Safe while `ferry run` works on the task (verify takes its own per-chunk
//! leases). While it runs, a row that differs is compared again once the sync
//! has applied the source past it; while no process holds the task's lock
//! (the sync is stopped) there is nothing to wait for, so such a row is judged
//! at once against the sync's checkpoint, and one the sync has not reached is
//! reported unsettled with the way to settle it. Exit code 0 when clean, 4
//! when differences remain, else as every command (1 failed, 2 bad input).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use ferry_core::model::TaskRecord;
use ferry_core::store::{ItemStore, Repo};
use ferry_core::task::MigrationType;
use ferry_core::FerryError;
use ferry_core::Stage;
use ferry_stages::invoke_stage;
use ferry_stages::verify::{repair, summary_lines, write_report};
use serde_json::{json, Value};

use crate::context::{local_env, Failure, Global};

/// Exit code when verify found differences that remain.
pub const EXIT_DIFFERENCES: u8 = 4;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The task's task_id (from its task file).
    pub task_id: String,
    /// Which chunks: every chunk (full), a random sample (sample), or those that differed last time (recheck).
    #[arg(long, default_value = "full", value_parser = ["full", "sample", "recheck", "changed"])]
    pub mode: String,
    /// Re-check only what the sync changed since the last clean full verify (same as --mode changed).
    #[arg(long, conflicts_with_all = ["full", "mode"])]
    pub changed: bool,
    /// Read every chunk (the default; same as --mode full).
    #[arg(long, conflicts_with = "mode")]
    pub full: bool,
    /// Chunks in a sample (default: options.verify_sample_chunks, else 8).
    #[arg(long, value_name = "N")]
    pub chunks: Option<u64>,
    /// Apply the repair statements to the target, then check the repaired rows again.
    #[arg(long)]
    pub repair: bool,
    /// Where to write the repair statements.
    #[arg(long, value_name = "FILE")]
    pub repair_file: Option<PathBuf>,
    /// Write the report here (JSON and Markdown; the other file gets the other extension).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

pub async fn run(global: &Global, args: VerifyArgs) -> Result<u8, Failure> {
    // One connection to the store for the whole command (clones share it).
    let store = global.existing_store()?;
    let repo = Repo::new(store.clone());
    let task = repo.task(&args.task_id).await?;
    require_copy_finished(&repo, &task).await?;
    let spec = task.spec;
    let env = local_env(store, global.secrets_for(&spec)?);
    let mode = match (args.changed, args.full) {
        (true, _) => "changed",
        (_, true) => "full",
        _ => args.mode.as_str(),
    };
    let mut input = json!({"task_id": args.task_id, "mode": mode});
    let syncing = ferry_local::TaskLock::is_held(&global.state_dir, &args.task_id)?;
    if !syncing {
        input["apply_running"] = json!(false);
    }
    if let Some(n) = args.chunks {
        input["chunks"] = json!(n);
    }
    let far = Instant::now() + Duration::from_secs(7 * 24 * 3600);
    let out: Value = invoke_stage(&env, Stage::Verify, input, far).await?;
    let id = &args.task_id;
    if let Some(note) = out["note"].as_str() {
        println!("note: {note}");
    }
    if mode == "changed" && out["mode"] == "changed" {
        let total = env.repo.chunks(id).await?.len();
        println!(
            "changed: {} of {total} chunk(s) re-checked ({} row(s)); the rest are unchanged since the last clean full verify",
            out["chunks"], out["rows"]
        );
    }
    let differences = out["differences"].as_u64().unwrap_or(0);
    let mut unsettled_after_repair = 0;
    if differences > 0 {
        let file = match &args.repair_file {
            Some(f) => f.clone(),
            None => reports_dir(global)?.join(format!("{id}-repair.sql")),
        };
        let r = repair(&env, id, args.repair, Some(&file), syncing).await?;
        println!(
            "{} repair statement(s) written to {}",
            r.statements,
            file.display()
        );
        if args.repair {
            println!(
                "{} row(s) repaired; {} difference(s) remain",
                r.applied, r.remaining
            );
        }
        if r.unsettled > 0 {
            println!(
                "{} repaired row(s) unsettled: the source changed them again, or the sync had not \
                 applied past them, while they were checked (each wait at most {} s, \
                 options.verify_recheck_seconds); with the sync running, `ferry verify {id} --mode \
                 recheck` compares them again",
                r.unsettled, spec.options.verify_recheck_seconds
            );
        }
        unsettled_after_repair = r.unsettled;
    }
    for line in summary_lines(&env.repo, id).await? {
        println!("{line}");
    }
    if let Some(path) = &args.report {
        let limit = spec.options.verify_report_limit as usize;
        let (j, m) = write_report(&env.repo, id, path, limit).await?;
        println!("report: {} and {}", j.display(), m.display());
    }
    let unsettled = out["unsettled"].as_u64().unwrap_or(0);
    if unsettled > 0 && !syncing {
        // The stage judged the rows against this position (before the sync's
        // first checkpoint, the copy's snapshot point): name the same one.
        let at = match ferry_stages::verify::forward_position(&env.repo, id).await? {
            Some(p) => format!(" (it has applied up to {p})"),
            None => String::new(),
        };
        println!(
            "{unsettled} row(s) unsettled: they differ, and the sync of {id} is not running while \
             the source has moved past what it applied{at}, so they may be changes it has not \
             applied yet. Resume it (`ferry resume {id}`) and verify again while it runs: a row \
             that still differs once the sync has applied the source past it is a difference."
        );
    }
    let clean = env.repo.diffs(id).await?.is_empty() && unsettled + unsettled_after_repair == 0;
    Ok(if clean { 0 } else { EXIT_DIFFERENCES })
}

/// A task that copies must have finished its copy before a verify means
/// anything: until then every row not yet copied would be reported as a
/// difference (and a repair would copy it outside the copy's bookkeeping).
async fn require_copy_finished<S: ItemStore>(
    repo: &Repo<S>,
    task: &TaskRecord,
) -> Result<(), FerryError> {
    if !task.spec.has(MigrationType::Full) || task.copy_finished.is_some() {
        return Ok(());
    }
    let id = &task.task_id;
    let s = repo.chunk_summary(id).await?;
    let progress = match (s.total, s.failed) {
        (0, _) => "it has not planned its chunks yet".to_string(),
        (t, 0) => format!("{} of {t} chunk(s) copied", s.done),
        (t, f) => format!(
            "{} of {t} chunk(s) copied, {f} failed (`ferry status {id}` names them; `ferry resume {id}` copies them again)",
            s.done
        ),
    };
    Err(FerryError::BadTask(format!(
        "task {id} has not finished its full copy ({progress}): a verify now would report every \
         row not yet copied as a difference. Let the copy finish (`ferry resume {id}` if the task \
         is stopped), then verify once `ferry status {id}` shows it done"
    )))
}

fn reports_dir(global: &Global) -> Result<PathBuf, FerryError> {
    let dir = global.state_dir.join("reports");
    std::fs::create_dir_all(&dir).map_err(|e| {
        FerryError::BadTask(format!(
            "cannot create {}: {e}; pass --repair-file",
            dir.display()
        ))
    })?;
    Ok(dir)
}

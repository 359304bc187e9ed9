//! `ferry switch|stop|resume|release TASK_ID`: the operator's control of a
//! running task, and what `ferry status` shows of its links and switch.
//!
//! Invariant: switch and stop only set a control flag (the running task acts on
//! it at its next stage boundary); release deletes anything only while this
//! process holds the task's lock (no `ferry run` works on it), never while a
//! switch is in progress, and writes the final report to the state directory
//! before the task's records are deleted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use ferry_core::model::{CheckpointRecord, Direction, TaskState};
use ferry_core::store::{now_ms, ItemStore, Repo};
use ferry_core::{FerryError, Stage};
use ferry_local::TaskLock;
use ferry_stages::cleanup::{render_markdown, switch_markdown, FinalReport};
use ferry_stages::switch::{self, SwitchPhase, SwitchRecord};
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::{Failure, Global};
use ferry_core::file::write_whole;

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The task's task_id (from its task file).
    pub task_id: String,
    /// Wait up to this many seconds for the command to take effect (switch: until the switch is done
    /// or gave up; release: for a running `ferry run` to stop).
    #[arg(long, value_name = "SECONDS", conflicts_with = "cloud")]
    pub wait: Option<u64>,
    /// Release: leave a database that cannot be reached as it is (the report says so). Switch: switch
    /// even though a verify found differences nothing resolved yet (recorded in the switch's steps).
    #[arg(long)]
    pub force: bool,
    /// Resume: longest time one stage call may run (default: the task's options.slice_seconds).
    #[arg(long, value_name = "N", conflicts_with = "cloud")]
    pub slice_seconds: Option<u64>,
    /// Resume: copy every table again over the rows already on the target (nothing is dropped) from a new
    /// snapshot point, and start the sync there: the way out when the source no longer has the binlog
    /// from the checkpoint (Ferry.BinlogPurged).
    #[arg(long)]
    pub recopy: bool,
    #[command(flatten)]
    pub cloud: crate::cli::Cloud,
}

/// `ferry switch`: ask the running task to switch when it is safe.
pub async fn switch(global: &Global, args: ControlArgs) -> Result<u8, Failure> {
    let repo = Repo::new(global.existing_store()?);
    let task = repo.task(&args.task_id).await?;
    let id = &task.task_id;
    if let Some(rec) = switch::record(&repo, id).await? {
        if rec.phase == SwitchPhase::Done {
            println!(
                "task {id} has already switched: the target is the primary ({})",
                task.state.as_str()
            );
            return Ok(0);
        }
    }
    if !task.spec.has(ferry_core::task::MigrationType::Incremental) {
        return Err(FerryError::BadTask(format!(
            "task {id} has no \"incremental\" in its types: there is no link to switch"
        ))
        .into());
    }
    if let Some(attention) = &task.attention {
        if args.force {
            println!(
                "warning: task {id} has unresolved verify differences ({} difference(s)); --force switches anyway \
                 and this is recorded in the switch's steps",
                attention.differences
            );
        } else {
            println!("note: {}", attention.message(id));
        }
    }
    repo.update_flags(id, |f| {
        f.switch_requested = true;
        f.switch_force = f.switch_force || args.force;
    })
    .await?;
    println!(
        "switch requested for task {id}: it starts once the full copy is done, the forward lag is at most {} ms and the \
         source had no write for {} s; `ferry status {id}` shows each step",
        task.spec.options.switch_max_lag_ms, task.spec.options.switch_quiet_seconds
    );
    if runner_idle(global, id) {
        println!("note: no `ferry run` works on task {id} now; start it with `ferry resume {id}` to switch");
    }
    let Some(wait) = args.wait else { return Ok(0) };
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        let rec = switch::record(&repo, id).await?;
        match rec.as_ref().map(|r| r.phase) {
            Some(SwitchPhase::Done) => {
                println!("switched:\n{}", switch_markdown(rec.as_ref()));
                return Ok(0);
            }
            Some(SwitchPhase::GaveUp) => {
                let reason = rec.and_then(|r| r.reason).unwrap_or_default();
                return Err(FerryError::Stopped(format!("the switch gave up: {reason}")).into());
            }
            _ if repo.task(id).await?.state == TaskState::Failed => {
                let task = repo.task(id).await?;
                let error = task
                    .last_error
                    .map(|e| format!("{}: {}", e.name, e.message))
                    .unwrap_or_else(|| "no error recorded".into());
                return Err(FerryError::Stopped(format!(
                    "the switch of task {id} failed: {error}. `ferry status {id}` shows the steps done; fix the cause \
                     and run `ferry resume {id}`: the switch continues from its last completed step"
                ))
                .into());
            }
            _ if Instant::now() >= deadline => {
                let reason = rec
                    .and_then(|r| r.reason)
                    .unwrap_or_else(|| "not started yet".into());
                return Err(FerryError::Transient(format!(
                    "the switch of task {id} is not done after {wait} s ({reason}); it goes on, watch `ferry status {id}`"
                ))
                .into());
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// `ferry stop`: pause the task: the full copy after its chunks in flight, a link at its next stage boundary.
pub async fn stop(global: &Global, args: ControlArgs) -> Result<u8, Failure> {
    let repo = Repo::new(global.existing_store()?);
    let task = repo.task(&args.task_id).await?;
    let id = &task.task_id;
    repo.update_flags(id, |f| f.stop_requested = true).await?;
    if runner_idle(global, id) {
        repo.set_state(id, TaskState::Stopped, None).await?;
        println!(
            "task {id} stopped (no `ferry run` was working on it); `ferry resume {id}` continues"
        );
    } else {
        println!("stop requested for task {id}: a full copy stops after its chunks in flight, a link at its next stage boundary; `ferry resume {id}` continues");
    }
    Ok(0)
}

/// `ferry resume`: clear the stop flag and run the task's state machine again from its checkpoints.
pub async fn resume(global: &Global, args: ControlArgs) -> Result<u8, Failure> {
    let store = global.existing_store()?;
    let repo = Repo::new(store.clone());
    let task = repo.task(&args.task_id).await?;
    repo.update_flags(&task.task_id, |f| f.stop_requested = false)
        .await?;
    if args.recopy {
        // Under the task's lock: no `ferry run` may copy or apply while the task is reset.
        let _lock = TaskLock::acquire_within(
            &global.state_dir,
            &task.task_id,
            ferry_local::RUNNER_PATIENCE,
        )
        .await?;
        let env = crate::context::local_env(store, global.secrets_for(&task.spec)?);
        println!("{}", ferry_stages::plan::recopy(&env, &task.task_id).await?);
    }
    let input = serde_json::to_value(&task.spec)
        .map_err(|e| FerryError::Internal(format!("cannot encode the stored task file: {e}")))?;
    crate::cmd_run::run_spec(global, task.spec, input, args.slice_seconds).await
}

/// `ferry release`: end the task; the final report stays in `<state dir>/reports/`.
pub async fn release(global: &Global, args: ControlArgs) -> Result<u8, Failure> {
    let id = args.task_id.clone();
    let store = global.existing_store()?;
    let repo = Repo::new(store.clone());
    let Some(task) = repo.get_task(&id).await? else {
        let (json_path, _) = report_paths(global, &id);
        let note = if json_path.exists() {
            format!("; its report is {}", json_path.display())
        } else {
            String::new()
        };
        println!("task {id} is not in the task store: already released{note}");
        return Ok(0);
    };
    if let Some(rec) = switch::record(&repo, &id)
        .await?
        .filter(SwitchRecord::in_progress)
    {
        return Err(refused(&id, &rec).into());
    }
    repo.update_flags(&id, |f| f.stop_requested = true).await?;
    let _lock = wait_for_lock(
        global,
        &id,
        args.wait.unwrap_or(task.spec.options.slice_seconds + 30),
    )
    .await?;
    let env = crate::context::local_env(store, global.secrets_for(&task.spec)?);
    let far = Instant::now() + Duration::from_secs(3600);
    let out = ferry_stages::invoke_stage(
        &env,
        Stage::Cleanup,
        json!({"task_id": id, "action": "report"}),
        far,
    )
    .await?;
    write_report(global, &id, &out["report"])?;
    let input = json!({"task_id": id, "action": "release", "force": args.force});
    let out = ferry_stages::invoke_stage(&env, Stage::Cleanup, input, far).await?;
    if let Some(reason) = out.get("refused").and_then(Value::as_str) {
        return Err(FerryError::Fenced(reason.to_string()).into());
    }
    let (json_path, md_path) = report_paths(global, &id);
    if out.get("report").is_some() {
        write_report(global, &id, &out["report"])?;
    }
    println!(
        "task {id} released: Ferry's objects removed from both databases and its records from the task store; \
         final report {} and {}",
        json_path.display(),
        md_path.display()
    );
    Ok(0)
}

fn refused(id: &str, rec: &SwitchRecord) -> FerryError {
    let done: Vec<&str> = rec.steps.iter().map(|s| s.step.as_str()).collect();
    FerryError::Fenced(format!(
        "release refused: task {id} is switching (steps done: {}); releasing now would leave both databases without a \
         link. Wait until `ferry status {id}` shows the switch done, then release",
        done.join(", ")
    ))
}

/// True when no `ferry run` holds the task's lock (a probe: see [`TaskLock::is_held`]).
fn runner_idle(global: &Global, id: &str) -> bool {
    matches!(TaskLock::is_held(&global.state_dir, id), Ok(false))
}

async fn wait_for_lock(global: &Global, id: &str, secs: u64) -> Result<TaskLock, FerryError> {
    TaskLock::acquire_within(&global.state_dir, id, Duration::from_secs(secs))
        .await
        .map_err(|e| match e {
            FerryError::Fenced(m) => FerryError::Fenced(format!(
                "{m} It was asked to stop but has not within {secs} s; rerun `ferry release {id}` later (or with --wait)"
            )),
            e => e,
        })
}

fn report_paths(global: &Global, id: &str) -> (PathBuf, PathBuf) {
    report_files(&global.state_dir.join("reports"), id)
}

/// `<dir>/<task>.json` and `<dir>/<task>.md`.
fn report_files(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{id}.json")), dir.join(format!("{id}.md")))
}

fn write_report(global: &Global, id: &str, report: &Value) -> Result<(), FerryError> {
    write_report_in(&global.state_dir.join("reports"), id, report)
}

/// The final report as `<dir>/<task>.json` and `<dir>/<task>.md`. Each file is
/// written whole under a temporary name in `dir` and then renamed over the old
/// one: release writes the report twice (before and after the task's records go),
/// and the console, which shows the `.md` once the task has left the store, must
/// never read a file cut short between a truncate and its write.
pub(crate) fn write_report_in(dir: &Path, id: &str, report: &Value) -> Result<(), FerryError> {
    let parsed: FinalReport = serde_json::from_value(report.clone()).map_err(|e| {
        FerryError::Internal(format!("the cleanup stage's report cannot be read: {e}"))
    })?;
    let (json_path, md_path) = report_files(dir, id);
    let io = |e: std::io::Error, p: &Path| {
        FerryError::Store(format!("cannot write the report {}: {e}", p.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| FerryError::Internal(format!("cannot encode the report: {e}")))?;
    for (path, text) in [(&json_path, text), (&md_path, render_markdown(&parsed))] {
        write_whole(path, &text).map_err(|e| io(e, path))?;
    }
    Ok(())
}

// ---- what `ferry status` shows of the links and the switch ----

/// The links and switch of a task, for `ferry status` (text and --json).
#[derive(Debug, Serialize)]
pub struct LinkStatus {
    pub links: Vec<LinkLine>,
    pub switch_requested: bool,
    pub stop_requested: bool,
    pub switch: Option<SwitchRecord>,
}

#[derive(Debug, Serialize)]
pub struct LinkLine {
    pub direction: String,
    pub position: String,
    pub retired: bool,
    pub epoch: u64,
    pub lag_ms: Option<u64>,
    pub applied_rows: u64,
    pub updated_ms: u64,
}

impl From<CheckpointRecord> for LinkLine {
    fn from(c: CheckpointRecord) -> LinkLine {
        LinkLine {
            direction: c.direction.as_str().to_string(),
            position: c.position.to_string(),
            retired: c.is_retired(),
            epoch: c.epoch,
            lag_ms: c.lag_ms,
            applied_rows: c.applied_rows,
            updated_ms: c.updated_ms,
        }
    }
}

pub async fn link_status<S: ItemStore>(repo: &Repo<S>, id: &str) -> Result<LinkStatus, FerryError> {
    let mut links = Vec::new();
    for dir in [Direction::Forward, Direction::Reverse] {
        links.extend(repo.checkpoint(id, dir).await?.map(LinkLine::from));
    }
    let flags = repo.flags(id).await?;
    Ok(LinkStatus {
        links,
        switch_requested: flags.switch_requested,
        stop_requested: flags.stop_requested,
        switch: switch::record(repo, id).await?,
    })
}

/// Text lines for `ferry status`: each link with lag, the flags, and the switch's steps.
pub fn render_links(s: &LinkStatus) -> String {
    let mut out = String::new();
    for l in &s.links {
        let lag = l
            .lag_ms
            .map(|v| format!("lag {v} ms"))
            .unwrap_or_else(|| "lag not measured".into());
        let state = if l.retired {
            "retired at switchover".to_string()
        } else {
            lag
        };
        let ago = now_ms().saturating_sub(l.updated_ms) / 1000;
        out.push_str(&format!(
            "{:<11} {} at {}, {state}, {} rows applied, updated {ago} s ago\n",
            "link", l.direction, l.position, l.applied_rows
        ));
    }
    let mut asked = Vec::new();
    if s.switch_requested {
        asked.push("switch");
    }
    if s.stop_requested {
        asked.push("stop");
    }
    if !asked.is_empty() {
        out.push_str(&format!(
            "{:<11} {} requested\n",
            "control",
            asked.join(", ")
        ));
    }
    if let Some(rec) = &s.switch {
        let reason = rec
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<11} {}{reason}\n",
            "switch",
            rec.phase.as_str()
        ));
        for st in &rec.steps {
            let outcome = format!("{:?}", st.outcome).to_lowercase();
            out.push_str(&format!("  {:<21} {outcome:<8} {}\n", st.step, st.detail));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn report(n: usize) -> Value {
        json!({
            "task_id": "t1", "state": format!("released {n}"), "types": [],
            "source_secret": "src", "target_secret": "tgt", "target_dialect": "mariadb",
            "created_ms": 0, "reported_ms": n, "tables": [],
            "totals": {"total": 0, "pending": 0, "running": 0, "done": 0, "failed": 0, "rows": 0, "bytes": 0},
            "checkpoints": [],
        })
    }

    /// The console reads `<task>.md` while release rewrites it: a reader sees the
    /// old report or the new one, whole, never an empty or cut file.
    #[test]
    fn a_report_rewritten_is_never_read_cut_short() {
        let dir = tempfile::tempdir().expect("temporary directory");
        write_report_in(dir.path(), "t1", &report(0)).expect("first report");
        let md = dir.path().join("t1.md");
        let whole = std::fs::read_to_string(&md).expect("report");
        assert!(whole.contains("t1"), "{whole}");
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0u32;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let text = std::fs::read_to_string(&md).expect("the report is always there");
                    assert!(text.len() >= whole.len(), "a cut report: {text:?}");
                    reads += 1;
                }
                reads
            });
            for n in 1..300 {
                write_report_in(dir.path(), "t1", &report(n)).expect("rewrite");
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().expect("reader") > 0);
        });
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            left.len(),
            2,
            "only the two report files are left: {left:?}"
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").expect("a file as fs::write makes it");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode();
        assert_eq!(
            mode(&md),
            mode(&plain),
            "the report keeps fs::write's permissions"
        );
    }
}

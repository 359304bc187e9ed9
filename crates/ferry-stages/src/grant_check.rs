//! The `grant-check` stage (precheck). Input: the task file (the execution
//! input). Output: `{"task_id","ok","failed","warned"}`; the full report is
//! kept in the task record (`precheck`).
//!
//! Invariants:
//! - A bad task file (`Ferry.BadTask`, naming the field) or a secret that
//!   cannot be resolved (`Ferry.BadSecret`, naming the secret and where it was
//!   looked for) is refused before anything is recorded.
//! - A failed check is a normal result, not an error: the stage returns
//!   `ok: false` and marks the task failed with `Ferry.PrecheckFailed`, whose
//!   message lists the failed items and their fixes. A later run that passes
//!   clears that error.
//! - Nothing is written to the source or the target except the precheck's
//!   probe table, which it drops (see `ferry_mysql::precheck`).
//! - A rerun of the same task passes where its own earlier run left rows: the
//!   tables it planned are read from the task store.
//! - A task whose plan finished (its tables exist and may hold rows) is
//!   resuming: instead of the table checks it runs the resume check
//!   (`ferry_mysql::precheck::resume`): the binlog from the checkpoint still
//!   on the source (else `Ferry.BinlogPurged`, naming the file and the way
//!   out), the target's checkpoint rows matching the store, and each table's
//!   columns the source's or made so by DDL the sync has queued.

use std::collections::BTreeSet;
use std::time::Instant;

use ferry_core::model::{
    CheckStatus, Direction, ErrorInfo, PrecheckReport, TableRecord, TaskState,
};
use ferry_core::secret::SecretSource;
use ferry_core::store::{now_ms, ItemStore};
use ferry_core::task::TaskSpec;
use ferry_core::FerryError;
use ferry_mysql::precheck::resume::{check_resume, ResumeFacts};
use ferry_mysql::precheck::{check_source, check_tables_planned, check_target, merge};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StageEnv;

const STAGE: &str = ferry_core::Stage::GrantCheck.name();

/// Output of the stage; the report itself is in the task record (`precheck`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantCheckOutput {
    pub task_id: String,
    pub ok: bool,
    /// Checks that failed, and that warned.
    pub failed: u64,
    pub warned: u64,
}

/// The stage as the state machine calls it: the task file in, JSON out.
pub async fn run<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    input: Value,
    deadline: Instant,
) -> Result<Value, FerryError> {
    let spec = TaskSpec::from_json(&input.to_string())?;
    crate::to_output(&run_typed(env, &spec, deadline).await?)
}

/// Check the servers (and, resuming, what the task left) for the task `spec`.
pub async fn run_typed<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    spec: &TaskSpec,
    _deadline: Instant,
) -> Result<GrantCheckOutput, FerryError> {
    let (src, tgt) = env.endpoints(spec).await?;
    let id = spec.task_id.as_str();
    let task = env.repo.create_task(spec).await?;
    env.repo
        .set_state(id, TaskState::Prechecking, Some(STAGE))
        .await?;
    let recorded = env.repo.tables(id).await?;
    let report = if task.planned {
        // Resuming: the task's tables exist and may hold rows; see `ferry_mysql::precheck::resume`.
        let facts = ResumeFacts {
            incarnation: task.incarnation(),
            snapshot: task.snapshot.as_ref().map(|s| s.position.clone()),
            checkpoint: env.repo.checkpoint(id, Direction::Forward).await?,
            tables: recorded,
        };
        let (source, target, resume) = tokio::join!(
            check_source(&src, spec),
            check_target(&tgt, spec),
            check_resume(&src, &tgt, spec, &facts),
        );
        PrecheckReport::new(merge(vec![source, target, resume]))
    } else {
        let planned: BTreeSet<String> = recorded.iter().map(TableRecord::source_name).collect();
        let (source, target, tables) = tokio::join!(
            check_source(&src, spec),
            check_target(&tgt, spec),
            check_tables_planned(&src, &tgt, spec, &planned),
        );
        PrecheckReport::new(merge(vec![source, target, tables]))
    };
    record(env, id, &report).await?;
    if let Some(purged) = report
        .items
        .iter()
        .find(|i| i.check == "resume.binlog" && i.status == CheckStatus::Fail)
    {
        // Definite, with its own name: no retry brings the binlog back.
        return Err(FerryError::BinlogPurged(format!(
            "{} The way out: {}",
            purged.message,
            purged.fix.clone().unwrap_or_default()
        )));
    }
    let count = |s: CheckStatus| report.items.iter().filter(|i| i.status == s).count() as u64;
    tracing::info!(
        task = id,
        ok = report.ok,
        failed = count(CheckStatus::Fail),
        "precheck finished"
    );
    Ok(GrantCheckOutput {
        task_id: id.to_string(),
        ok: report.ok,
        failed: count(CheckStatus::Fail),
        warned: count(CheckStatus::Warn),
    })
}

/// Keep the report; a failed one marks the task failed, a passing one clears
/// the previous run's precheck failure.
async fn record<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    id: &str,
    report: &PrecheckReport,
) -> Result<(), FerryError> {
    let name = FerryError::PrecheckFailed(String::new()).name();
    let failure = (!report.ok).then(|| ErrorInfo {
        name: name.to_string(),
        message: failed_items(report).render(),
        at_ms: now_ms(),
    });
    env.repo
        .update_task(id, |t| {
            t.precheck = Some(report.clone());
            match &failure {
                Some(f) => {
                    t.state = TaskState::Failed;
                    t.last_error = Some(f.clone());
                }
                None if t.last_error.as_ref().is_some_and(|e| e.name == name) => {
                    t.last_error = None
                }
                None => {}
            }
        })
        .await
        .map(|_| ())
}

fn failed_items(report: &PrecheckReport) -> PrecheckReport {
    PrecheckReport::new(
        report
            .items
            .iter()
            .filter(|i| i.status == CheckStatus::Fail)
            .cloned()
            .collect(),
    )
}

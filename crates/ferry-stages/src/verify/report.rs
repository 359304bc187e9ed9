//! After a verify run: repair (source as truth), the report files, and the
//! lines `ferry status` shows.
//!
//! Invariant: after [`repair`] applies its statements, the differences kept
//! in the task store are exactly the repaired keys that still differ when
//! checked again (none, unless the source or target kept changing them), and
//! `verify#summary` counts them; a repaired key the check could not settle is
//! counted as unsettled there, never dropped as if repaired.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_core::model::{DiffKind, DiffRecord, KeyValue};
use ferry_core::secret::SecretSource;
use ferry_core::store::{now_ms, ItemStore, Repo};
use ferry_core::FerryError;
use ferry_mysql::copy::{source_allows_invalid_dates, RateLimiter};
use ferry_mysql::schema::{read_source_table, read_table};
use ferry_mysql::verify::{
    apply_repair, compare_rows, confirm, repair_script, repair_statements, same_key, Confirmed,
    Side, VerifyTable,
};
use mysql_async::Conn;
use serde::Serialize;
use serde_json::json;

use super::{forward_position, wait_for_checkpoint, VerifyRun, VerifySummary, RUN_SK, SUMMARY_SK};
use crate::StageEnv;

/// What [`repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairOutcome {
    /// Repair statements written (one per differing row).
    pub statements: u64,
    /// Statements applied to the target (0 unless asked to apply).
    pub applied: u64,
    /// Differences left after applying and checking again.
    pub remaining: u64,
    /// Rewritten rows the check could not settle (the source kept changing
    /// them, or the sync did not apply past them within
    /// `verify_recheck_seconds`): neither repaired nor a difference.
    pub unsettled: u64,
}

/// Write the repair statements for every recorded difference (to `file`, if
/// given) and, if `apply`, run them on the target at the task's
/// `repair_rows_per_second`, then check the repaired keys again: while the
/// sync may run (`apply_running`), around the apply as a verify does; when
/// the caller knows none runs (`ferry verify --repair` after `ferry stop`),
/// at once, since waiting for its checkpoint would last the whole
/// `verify_recheck_seconds` for nothing.
pub async fn repair<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    task_id: &str,
    apply: bool,
    file: Option<&Path>,
    apply_running: bool,
) -> Result<RepairOutcome, FerryError> {
    let task = env.repo.task(task_id).await?;
    let spec = &task.spec;
    let (src_ep, tgt_ep) = env.endpoints(spec).await?;
    let mut src = src_ep.connect().await?;
    let mut tgt = tgt_ep.connect().await?;
    let allow_invalid_dates = source_allows_invalid_dates(&mut src).await?;
    let mut by_table: BTreeMap<(String, String), Vec<(String, DiffRecord)>> = BTreeMap::new();
    for (sk, d) in env.repo.records::<DiffRecord>(task_id, "diff#").await? {
        by_table
            .entry((d.source_db.clone(), d.source_table.clone()))
            .or_default()
            .push((sk, d));
    }
    let mut tables = Vec::new();
    let mut statements = Vec::new();
    for ((db, table), diffs) in &by_table {
        let (tdb, tt) = spec.target_name(db, table);
        let s = read_source_table(&mut src, spec, db, table).await?;
        let t = read_table(&mut tgt, &tdb, &tt).await?;
        let (Some(s), Some(t)) = (s, t) else {
            return Err(FerryError::SchemaIncompatible(format!(
                "repair: table {db}.{table} or its target {tdb}.{tt} no longer exists; run `ferry verify` again"
            )));
        };
        let vt = VerifyTable::new(s, t, spec.filter(db, table).map(str::to_string))?;
        let keys: Vec<Vec<KeyValue>> = diffs.iter().map(|(_, d)| d.key.clone()).collect();
        statements.extend(repair_statements(&vt, &mut src, &keys).await?);
        tables.push((vt, diffs));
    }
    if let Some(path) = file {
        write_file(
            path,
            &repair_script(task_id, &statements, allow_invalid_dates),
        )?;
    }
    let mut out = RepairOutcome {
        statements: statements.len() as u64,
        ..RepairOutcome::default()
    };
    if !apply {
        return Ok(out);
    }
    let limiter = RateLimiter::new(spec.options.repair_rows_per_second, 0);
    out.applied = apply_repair(&mut tgt, &statements, &limiter, allow_invalid_dates).await?;
    let mut unsettled: BTreeMap<String, u64> = BTreeMap::new();
    let online = apply_running && forward_position(&env.repo, task_id).await?.is_some();
    for (vt, diffs) in &tables {
        let keys: Vec<Vec<KeyValue>> = diffs.iter().map(|(_, d)| d.key.clone()).collect();
        let checked = check_keys(
            &env.repo,
            task_id,
            vt,
            &mut src,
            &mut tgt,
            keys,
            online,
            spec.options.verify_recheck_seconds,
        )
        .await?;
        let left = checked.diffs;
        out.remaining += left.len() as u64;
        out.unsettled += checked.unsettled.len() as u64;
        unsettled.insert(vt.source.full_name(), checked.unsettled.len() as u64);
        // An unsettled row's record goes too: it is not a known difference any
        // more, and the summary counts it as unsettled (the chunk's record still
        // flags it, so `--mode recheck` compares it again).
        for (sk, d) in diffs.iter() {
            match left.iter().find(|r| same_key(r.key(), &d.key)) {
                Some(r) => {
                    env.repo
                        .put_record(
                            task_id,
                            sk,
                            &r.clone().into_record(&d.source_db, &d.source_table),
                        )
                        .await?
                }
                None => env.repo.delete_record(task_id, sk).await?,
            }
        }
    }
    let (applied, remaining) = (out.applied, out.remaining);
    if let Some(mut s) = env
        .repo
        .get_record::<VerifySummary>(task_id, SUMMARY_SK)
        .await?
    {
        let left = env.repo.diffs(task_id).await?;
        for t in &mut s.tables {
            let here = |d: &&DiffRecord| format!("{}.{}", d.source_db, d.source_table) == t.table;
            t.differences = left.iter().filter(here).count() as u64;
            t.unsettled += unsettled.get(&t.table).copied().unwrap_or(0);
        }
        s.repaired += applied;
        s.differences = remaining;
        s.unsettled += out.unsettled;
        s.clean = remaining + s.unsettled == 0;
        env.repo.put_record(task_id, SUMMARY_SK, &s).await?;
        super::record_attention(&env.repo, task_id, &s).await?;
    }
    Ok(out)
}

/// The keys that still differ, and those that could not be settled: compared
/// directly, or (while changes flow) confirmed around the apply.
#[allow(clippy::too_many_arguments)]
async fn check_keys<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    vt: &VerifyTable,
    src: &mut Conn,
    tgt: &mut Conn,
    keys: Vec<Vec<KeyValue>>,
    online: bool,
    wait_seconds: u64,
) -> Result<Confirmed, FerryError> {
    if online {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_seconds);
        return confirm(vt, src, tgt, keys, deadline, |p| async move {
            wait_for_checkpoint(repo, task_id, &p, deadline).await
        })
        .await;
    }
    let a = vt.fetch_keys(Side::Source, src, &keys).await?;
    let b = vt.fetch_keys(Side::Target, tgt, &keys).await?;
    Ok(Confirmed {
        diffs: compare_rows(&vt.layout, &a, &b),
        unsettled: Vec::new(),
    })
}

/// Written whole: a script reading the report or the repair file never
/// reads one cut short.
fn write_file(path: &Path, text: &str) -> Result<(), FerryError> {
    ferry_core::file::write_whole(path, text).map_err(|e| {
        FerryError::BadTask(format!(
            "cannot write {}: {e}; choose a writable path",
            path.display()
        ))
    })
}

/// A key for people: `(42)`, `('abc', 7)`, `(0x00ff)`.
pub fn key_text(key: &[KeyValue]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|k| match k {
            KeyValue::Int(i) => i.to_string(),
            KeyValue::Uint(u) => u.to_string(),
            KeyValue::Text(s) | KeyValue::Literal(s) => format!("'{s}'"),
            KeyValue::Bytes(h) => format!("0x{h}"),
        })
        .collect();
    format!("({})", parts.join(", "))
}

fn kind_text(k: DiffKind) -> &'static str {
    match k {
        DiffKind::MissingInTarget => "missing in target",
        DiffKind::ExtraInTarget => "extra in target",
        DiffKind::ValuesDiffer => "values differ",
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Write the last verify's report: JSON and Markdown, listing at most `limit`
/// differences (the rest are counted). `path` names one of the two; the other
/// gets the other extension. Returns (json, markdown) paths.
pub async fn write_report<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    path: &Path,
    limit: usize,
) -> Result<(PathBuf, PathBuf), FerryError> {
    let summary = repo
        .get_record::<VerifySummary>(task_id, SUMMARY_SK)
        .await?
        .ok_or_else(|| {
            FerryError::BadTask(format!(
                "task {task_id} has no finished verify yet; run `ferry verify {task_id}` first"
            ))
        })?;
    let diffs = repo.diffs(task_id).await?;
    let (json_path, md_path) = if path.extension().is_some_and(|e| e == "json") {
        (path.to_path_buf(), path.with_extension("md"))
    } else {
        (path.with_extension("json"), path.to_path_buf())
    };
    let listed: Vec<&DiffRecord> = diffs.iter().take(limit).collect();
    let more = diffs.len().saturating_sub(limit);
    let doc =
        json!({"task_id": task_id, "summary": summary, "differences": listed, "not_listed": more});
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| FerryError::Internal(format!("report: {e}")))?;
    write_file(&json_path, &text)?;
    write_file(&md_path, &markdown(task_id, &summary, &listed, more))?;
    Ok((json_path, md_path))
}

fn markdown(task_id: &str, s: &VerifySummary, diffs: &[&DiffRecord], more: usize) -> String {
    let verdict = if s.clean {
        "CLEAN".to_string()
    } else {
        format!("{} difference(s), {} unsettled", s.differences, s.unsettled)
    };
    let mut out = format!(
        "# Ferry verify report: {task_id}\n\nRun {} ({}): **{verdict}**, {} rows in {} chunks, {:.1} s; {} row(s) repaired.\n\n\
         | table | rows | chunks | differences | unsettled | seconds |\n|---|---:|---:|---:|---:|---:|\n",
        s.run_id,
        s.mode,
        s.rows,
        s.chunks,
        s.finished_ms.saturating_sub(s.started_ms) as f64 / 1000.0,
        s.repaired
    );
    for t in &s.tables {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} |\n",
            md_cell(&t.table),
            t.rows,
            t.chunks,
            t.differences,
            t.unsettled,
            t.seconds
        ));
    }
    if diffs.is_empty() {
        return out;
    }
    out.push_str("\n## Differences\n\n| table | key | kind | column | source | target |\n|---|---|---|---|---|---|\n");
    for d in diffs {
        let table = format!("{}.{}", d.source_db, d.source_table);
        let head = format!(
            "| {} | {} | {} ",
            md_cell(&table),
            md_cell(&key_text(&d.key)),
            kind_text(d.kind)
        );
        if d.columns.is_empty() {
            out.push_str(&format!("{head}| | | |\n"));
        }
        for (c, a, b) in &d.columns {
            out.push_str(&format!(
                "{head}| {} | {} | {} |\n",
                md_cell(c),
                md_cell(a),
                md_cell(b)
            ));
        }
    }
    if more > 0 {
        out.push_str(&format!("\n... and {more} more difference(s) not listed (see `ferry verify --report` limits).\n"));
    }
    out
}

/// Lines for `ferry status`: the last finished verify per table, or the run in progress.
pub async fn summary_lines<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
) -> Result<Vec<String>, FerryError> {
    let mut lines = Vec::new();
    if let Some(run) = repo.get_record::<VerifyRun>(task_id, RUN_SK).await? {
        if run.finished_ms.is_none() {
            let ago = now_ms().saturating_sub(run.started_ms) / 1000;
            lines.push(
                format!(
                    "verify: {:?} run {} in progress for {ago} s",
                    run.mode, run.run_id
                )
                .to_lowercase(),
            );
        }
    }
    let Some(s) = repo
        .get_record::<VerifySummary>(task_id, SUMMARY_SK)
        .await?
    else {
        return Ok(lines);
    };
    let verdict = if s.clean {
        "clean".to_string()
    } else {
        format!("{} difference(s), {} unsettled", s.differences, s.unsettled)
    };
    let repaired = if s.repaired > 0 {
        format!(", {} row(s) repaired", s.repaired)
    } else {
        String::new()
    };
    lines.push(format!(
        "verify ({}, run {}): {verdict}; {} rows in {} chunks, {:.1} s{repaired}",
        s.mode,
        s.run_id,
        s.rows,
        s.chunks,
        s.finished_ms.saturating_sub(s.started_ms) as f64 / 1000.0
    ));
    for t in &s.tables {
        lines.push(format!(
            "  {}: {} rows, {} chunks, {} differences{}, {:.1} s",
            t.table,
            t.rows,
            t.chunks,
            t.differences,
            if t.unsettled > 0 {
                format!(" ({} unsettled)", t.unsettled)
            } else {
                String::new()
            },
            t.seconds
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_cells_read_well() {
        assert_eq!(
            key_text(&[
                KeyValue::Int(-1),
                KeyValue::Text("a".into()),
                KeyValue::Bytes("00ff".into())
            ]),
            "(-1, 'a', 0x00ff)"
        );
        assert_eq!(md_cell("a|b\nc"), "a\\|b c");
    }

    #[test]
    fn markdown_caps_the_list() {
        let s = VerifySummary {
            run_id: "1".into(),
            mode: "full".into(),
            clean: false,
            differences: 3,
            ..Default::default()
        };
        let d = DiffRecord {
            source_db: "d".into(),
            source_table: "t".into(),
            key: vec![KeyValue::Int(1)],
            kind: DiffKind::ValuesDiffer,
            columns: vec![("c".into(), "1".into(), "2".into())],
        };
        let md = markdown("t1", &s, &[&d], 2);
        assert!(
            md.contains("| d.t | (1) | values differ | c | 1 | 2 |"),
            "{md}"
        );
        assert!(md.contains("and 2 more difference(s)"), "{md}");
    }
}

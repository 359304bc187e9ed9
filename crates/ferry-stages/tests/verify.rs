//! The `verify` stage end to end on the real servers with the SQLite task
//! store: the target is filled by the copy-chunk stage; verify is clean, finds
//! planted differences (and only those), reports them, repairs them, and is
//! clean again; several workers share one run; and while a writer changes the
//! source and a (simulated, lagging) incremental apply follows it, no false
//! difference is reported while a planted one still is.
//!
//! The online case runs twice: with the real incremental-apply stage called in
//! a loop next to the verify, and with a simulated apply (a task applying the
//! writer's statements to the target 300 ms late and advancing the forward
//! checkpoint record itself), which makes the lag certain.
//!
//! Each test runs against both targets (MariaDB and OceanBase); the target
//! table is plain DDL both take (on OceanBase `j` is binary JSON, so verify
//! compares it as JSON row by row, and the digest is SHA1-64).

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{deadline, StageDir};
use ferry_core::model::{CheckpointRecord, DiffKind, Direction, KeyValue, SnapshotPoint};
use ferry_core::store::now_ms;
use ferry_core::task::MigrationType;
use ferry_mysql::qualified;
use ferry_mysql::schema::binlog_position;
use ferry_stages::invoke;
use ferry_stages::verify::{repair, summary_lines, write_report, VerifyChunk};
use ferry_testkit::{drop_db, exec, on_both_targets, recreate_db, unique_name, Side, TestEnv};
use serde_json::{json, Value};

const CREATE: &str =
    "(id INT NOT NULL PRIMARY KEY, i INT, d DECIMAL(12,3), v VARCHAR(40), n VARCHAR(10) NULL,
  dt DATETIME(6), j JSON, b VARBINARY(32))";
const FILL: &str = "SELECT seq, CAST(seq AS SIGNED) - 500, seq / 8, CONCAT('row ', seq), IF(seq % 3 = 0, NULL, ''),
  '2024-02-03 04:05:06' + INTERVAL seq SECOND + INTERVAL seq MICROSECOND, JSON_OBJECT('s', seq), UNHEX(MD5(seq))
  FROM seq.seq_1_to_3000";
const ROWS: u64 = 3000;

struct Fixture {
    env: common::Env,
    dir: StageDir,
    te: TestEnv,
    task_id: String,
    src_db: String,
    tgt_db: String,
}

impl Fixture {
    async fn new(te: TestEnv) -> Fixture {
        let dir = StageDir::new(&te, "ferry_verify_stage");
        let f = Fixture {
            env: dir.env("w0"),
            dir,
            te,
            task_id: unique_name("verify-stage"),
            src_db: unique_name("ferry_vs_src"),
            tgt_db: unique_name("ferry_vs_tgt"),
        };
        let mut src = f.te.admin(Side::Source).await;
        let mut tgt = f.te.admin(Side::Target).await;
        recreate_db(&mut src, &f.src_db).await;
        recreate_db(&mut tgt, &f.tgt_db).await;
        exec(&mut src, &format!("CREATE TABLE {} {CREATE}", f.src("t"))).await;
        exec(&mut tgt, &format!("CREATE TABLE {} {CREATE}", f.tgt("t"))).await;
        exec(&mut src, &format!("INSERT INTO {} {FILL}", f.src("t"))).await;
        f.records().await;
        let out = invoke(
            &f.env,
            "copy-chunk",
            json!({"task_id": f.task_id, "worker": 0}),
            deadline(60),
        )
        .await
        .unwrap();
        assert_eq!(out["remaining"], 0, "{out}");
        f
    }

    fn src(&self, t: &str) -> String {
        qualified(&self.src_db, t)
    }

    fn tgt(&self, t: &str) -> String {
        qualified(&self.tgt_db, t)
    }

    async fn records(&self) {
        let mut task = common::task_json(&self.te, &self.task_id, &self.src_db, &self.tgt_db);
        task["types"] = json!(["schema", "full", "verify"]);
        task["options"] =
            json!({"chunk_rows": 700, "verify_concurrency": 2, "verify_recheck_seconds": 30});
        common::create_task(&self.env, &task).await;
        let dbs = (self.src_db.as_str(), self.tgt_db.as_str());
        let mut planned = common::planned_table(&self.te, dbs, "t", 700, 0).await;
        planned.0.rows_estimate = ROWS;
        common::put_planned(&self.env, &self.task_id, &planned).await;
    }

    /// A clean full verify, then the source's binlog position.
    async fn clean_then_position(&self) -> ferry_core::position::BinlogPosition {
        assert_eq!(self.verify("full").await["clean"], true);
        let mut src = self.te.admin(Side::Source).await;
        let now = binlog_position(&mut src, "source").await.unwrap();
        src.disconnect().await.ok();
        now
    }

    async fn verify(&self, mode: &str) -> Value {
        let input = json!({"task_id": self.task_id, "mode": mode});
        invoke(&self.env, "verify", input, deadline(120))
            .await
            .unwrap()
    }

    /// Every chunk has a done verify record, claimed once, in `run` when given.
    async fn assert_each_chunk_verified_once(&self, run: Option<&str>) {
        let recs: Vec<(String, VerifyChunk)> = self
            .env
            .repo
            .records(&self.task_id, "verifychunk#")
            .await
            .unwrap();
        let chunks = self.env.repo.chunks(&self.task_id).await.unwrap();
        assert_eq!(recs.len(), chunks.len());
        assert!(
            recs.iter()
                .all(|(_, c)| c.done && c.attempts == 1 && run.is_none_or(|r| r == c.run_id)),
            "each chunk verified once (run {run:?}): {recs:?}"
        );
    }

    async fn diff_ids(&self) -> Vec<(i64, DiffKind)> {
        let mut ids: Vec<(i64, DiffKind)> = self
            .env
            .repo
            .diffs(&self.task_id)
            .await
            .unwrap()
            .into_iter()
            .map(|d| match d.key.as_slice() {
                [KeyValue::Int(i)] => (*i, d.kind),
                other => panic!("key {other:?}"),
            })
            .collect();
        ids.sort_by_key(|x| x.0);
        ids
    }

    async fn plant(&self) {
        let mut tgt = self.te.admin(Side::Target).await;
        let t = self.tgt("t");
        for sql in [
            format!("DELETE FROM {t} WHERE id = 5"),
            format!("INSERT INTO {t} (id, i) VALUES (9000, 1)"),
            format!("UPDATE {t} SET n = NULL WHERE id = 7"),
            format!("UPDATE {t} SET dt = dt + INTERVAL 1 MICROSECOND WHERE id = 1500"),
            format!("UPDATE {t} SET v = CONCAT(v, ' ') WHERE id = 2999"),
        ] {
            exec(&mut tgt, &sql).await;
        }
    }

    async fn drop_dbs(&self) {
        common::drop_dbs(&self.te, &self.src_db, &self.tgt_db).await;
    }
}

fn planted_ids() -> Vec<(i64, DiffKind)> {
    use DiffKind::*;
    vec![
        (5, MissingInTarget),
        (7, ValuesDiffer),
        (1500, ValuesDiffer),
        (2999, ValuesDiffer),
        (9000, ExtraInTarget),
    ]
}

on_both_targets!(
    verify_finds_reports_and_repairs_every_planted_difference,
    super::finds_reports_and_repairs
);

async fn finds_reports_and_repairs(te: TestEnv) {
    let f = Fixture::new(te).await;
    let out = f.verify("full").await;
    assert_eq!(
        (
            out["clean"].as_bool(),
            out["rows"].as_u64(),
            out["done"].as_bool()
        ),
        (Some(true), Some(ROWS), Some(true)),
        "{out}"
    );

    f.plant().await;
    let out = f.verify("full").await;
    assert_eq!(out["differences"], 5, "{out}");
    assert_eq!(out["clean"], false);
    assert_eq!(f.diff_ids().await, planted_ids());

    let lines = summary_lines(&f.env.repo, &f.task_id).await.unwrap();
    assert!(lines[0].contains("5 difference(s)"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("{}.t: 3000 rows", f.src_db))),
        "{lines:?}"
    );

    let report = f.dir.join("report.md");
    let (json_path, md_path) = write_report(&f.env.repo, &f.task_id, &report, 3)
        .await
        .unwrap();
    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(md.contains("| (1500) | values differ | dt | 2024-02-03 04:30:06.001500 | 2024-02-03 04:30:06.001501 |"), "{md}");
    assert!(md.contains("and 2 more difference(s)"), "{md}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    assert_eq!(doc["not_listed"], 2);

    let sql_file = f.dir.join("repair.sql");
    let r = repair(&f.env, &f.task_id, false, Some(&sql_file), true)
        .await
        .unwrap();
    assert_eq!((r.statements, r.applied), (5, 0));
    let script = std::fs::read_to_string(&sql_file).unwrap();
    assert!(
        script.contains("REPLACE INTO") && script.contains("DELETE FROM") && script.contains("X'"),
        "{script}"
    );
    let r = repair(&f.env, &f.task_id, true, None, true).await.unwrap();
    assert_eq!((r.applied, r.remaining), (5, 0));
    assert!(f.diff_ids().await.is_empty());
    let lines = summary_lines(&f.env.repo, &f.task_id).await.unwrap();
    assert!(
        lines[0].contains("clean") && lines[0].contains("5 row(s) repaired"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("0 differences"),
        "per table too: {lines:?}"
    );

    // The chunks that differed are checked again, then a full run: both clean.
    let out = f.verify("recheck").await;
    assert_eq!(out["clean"], true, "{out}");
    assert!(out["chunks"].as_u64().unwrap() >= 2, "{out}");
    assert_eq!(f.verify("full").await["clean"], true);
    let out = f.verify("sample").await;
    assert_eq!(
        (out["clean"].as_bool(), out["done"].as_bool()),
        (Some(true), Some(true)),
        "{out}"
    );
    f.drop_dbs().await;
}

on_both_targets!(several_workers_share_one_run, super::several_workers);

async fn several_workers(te: TestEnv) {
    let f = Fixture::new(te).await;
    f.plant().await;
    let envs: Vec<_> = (1..=3)
        .map(|w| common::stage_env(&f.dir, &format!("w{w}")))
        .collect();
    let runs = envs.iter().enumerate().map(|(i, e)| {
        invoke(
            e,
            "verify",
            json!({"task_id": f.task_id, "mode": "full", "worker": i}),
            deadline(120),
        )
    });
    let outs: Vec<Value> = futures::future::try_join_all(runs).await.unwrap();
    let run_ids: std::collections::HashSet<String> =
        outs.iter().map(|o| o["run_id"].to_string()).collect();
    assert_eq!(run_ids.len(), 1, "all workers join one run: {outs:?}");
    assert!(
        outs.iter()
            .all(|o| o["done"] == true && o["differences"] == 5),
        "{outs:?}"
    );
    f.assert_each_chunk_verified_once(None).await;
    assert_eq!(f.diff_ids().await, planted_ids());
    f.drop_dbs().await;
}

on_both_targets!(
    a_verify_takes_over_at_once_the_chunks_a_killed_local_verify_held,
    super::killed_holder
);

/// A verify run whose chunks a killed local verify still holds: an
/// environment that knows local holders (the embedded runner's) takes over at
/// once the chunk whose holder's process has ended, never the one whose holder
/// runs; one without that check leaves both to their leases (300 s).
async fn killed_holder(te: TestEnv) {
    let f = Fixture::new(te).await;
    f.plant().await;
    let begun = json!({"task_id": f.task_id, "mode": "full", "begin": true});
    let begun = invoke(&f.env, "verify", begun, deadline(60)).await.unwrap();
    let run_id = begun["run_id"].as_str().unwrap().to_string();
    let mut ended = std::process::Command::new("true").spawn().unwrap();
    let dead = format!("local-{}-0000abcd#0", ended.id());
    ended.wait().unwrap();
    let alive = format!("local-{}-0000abcd#1", std::process::id());
    let chunks = f.env.repo.chunks(&f.task_id).await.unwrap();
    let (a, b) = (&chunks[0], &chunks[1]);
    let sk = |c: &ferry_core::model::ChunkRecord| format!("verifychunk#{}", c.chunk_id);
    for (chunk, owner) in [(a, &dead), (b, &alive)] {
        let start = |_: Option<VerifyChunk>| VerifyChunk {
            run_id: run_id.clone(),
            chunk_id: chunk.chunk_id.clone(),
            table: chunk.table_name(),
            done: false,
            owner: None,
            lease_until_ms: 0,
            attempts: 1,
            rows: 0,
            target_rows: 0,
            differences: 0,
            unsettled: 0,
            millis: 0,
        };
        let ours = |c: &VerifyChunk| c.run_id == run_id;
        let claimed = f
            .env
            .repo
            .claim_lease(&f.task_id, &sk(chunk), owner, 300_000, ours, start)
            .await;
        assert!(claimed.unwrap().is_some());
    }
    let join = json!({"task_id": f.task_id, "run_id": run_id});
    let state = |c: &ferry_core::model::ChunkRecord| {
        let repo = f.env.repo.clone();
        let (task, sk) = (f.task_id.clone(), sk(c));
        async move {
            let rec: VerifyChunk = repo.get_record(&task, &sk).await.unwrap().unwrap();
            (rec.done, rec.attempts)
        }
    };
    let plain = invoke(&f.env, "verify", join.clone(), deadline(6))
        .await
        .unwrap();
    assert_eq!(plain["done"], false, "{plain}");
    assert_eq!(state(a).await, (false, 1), "a lease is left to its time");
    let knowing = f.dir.env("w1").with_holder_check(ferry_local::holder_gone);
    let out = invoke(&knowing, "verify", join.clone(), deadline(6))
        .await
        .unwrap();
    assert_eq!(out["done"], false, "a living holder keeps its chunk: {out}");
    assert_eq!(
        state(a).await,
        (true, 2),
        "the ended holder's chunk is taken over"
    );
    assert_eq!(state(b).await, (false, 1));
    let ours = |c: &VerifyChunk| c.run_id == run_id;
    let given = f
        .env
        .repo
        .give_back_lease(&f.task_id, &sk(b), &alive, 0, ours)
        .await;
    assert!(given.unwrap());
    let out = invoke(&knowing, "verify", join, deadline(60))
        .await
        .unwrap();
    assert!(out["done"] == true && out["differences"] == 5, "{out}");
    f.drop_dbs().await;
}

on_both_targets!(
    verify_slots_follow_the_target_cpus,
    super::verify_slots_follow_the_target_cpus
);

/// `verify_concurrency` 0 with `concurrency` 0 (both defaults): as many slots
/// as the copy's workers for the target's CPUs, as the copy probed them (the
/// fixture's copy-chunk call): seekdb says, MariaDB does not (four).
async fn verify_slots_follow_the_target_cpus(te: TestEnv) {
    let f = Fixture::new(te).await;
    let task = f
        .env
        .repo
        .update_task(&f.task_id, |t| t.spec.options.verify_concurrency = 0)
        .await
        .unwrap();
    let cpus = ferry_stages::plan::target_cpus(&f.env.repo, &f.task_id)
        .await
        .unwrap();
    assert_eq!(cpus.is_some(), f.te.is_oceanbase(), "{cpus:?}");
    let chunks = f.env.repo.chunks(&f.task_id).await.unwrap().len();
    let begin = json!({"task_id": f.task_id, "mode": "full", "begin": true});
    let begun = invoke(&f.env, "verify", begin, deadline(60)).await.unwrap();
    let items = begun["workers"].as_array().cloned().unwrap_or_default();
    let expected = (task.spec.options.copy_workers(cpus) as usize).min(chunks);
    assert_eq!(
        items.len(),
        expected,
        "{cpus:?} CPUs, {chunks} chunks: {begun}"
    );
    f.drop_dbs().await;
}

on_both_targets!(
    begin_fans_out_to_workers_and_the_join_reports_the_same_run,
    super::begin_fans_out
);

/// The state machine's fan-out: `begin` starts the run and verifies nothing,
/// its `workers` items (run on separate stage environments, as separate
/// Lambdas would) verify every chunk once between them, and the join after the
/// Map reports that same run; a second join or worker call on the finished run
/// starts nothing new, while a fresh `begin` does.
async fn begin_fans_out(te: TestEnv) {
    let f = Fixture::new(te).await;
    f.plant().await;
    // The task verifies after catch-up (the default verify_when).
    let when =
        json!({"task_id": f.task_id, "mode": "full", "when": "after_catch_up", "begin": true});
    let begun = invoke(&f.env, "verify", when.clone(), deadline(60))
        .await
        .unwrap();
    let run_id = begun["run_id"].clone();
    assert_eq!(begun["done"], false, "{begun}");
    assert!(
        f.env
            .repo
            .records::<VerifyChunk>(&f.task_id, "verifychunk#")
            .await
            .unwrap()
            .is_empty(),
        "begin verifies nothing"
    );
    let items = begun["workers"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "verify_concurrency 2: {begun}");
    assert_eq!(
        items[1],
        json!({"task_id": f.task_id, "run_id": run_id, "worker": 1, "workers": 2, "slots": 1})
    );
    let envs: Vec<_> = (0..items.len())
        .map(|w| common::stage_env(&f.dir, &format!("fan{w}")))
        .collect();
    let calls = envs
        .iter()
        .zip(&items)
        .map(|(e, item)| invoke(e, "verify", item.clone(), deadline(120)));
    let outs: Vec<Value> = futures::future::try_join_all(calls).await.unwrap();
    assert!(
        outs.iter()
            .all(|o| o["run_id"] == run_id && o["done"] == true),
        "{outs:?}"
    );
    let join = json!({"task_id": f.task_id, "run_id": run_id});
    for _ in 0..2 {
        let out = invoke(&f.env, "verify", join.clone(), deadline(60))
            .await
            .unwrap();
        assert_eq!(out["run_id"], run_id, "{out}");
        assert_eq!(out["done"], true);
        assert_eq!(out["differences"], 5, "{out}");
        assert_eq!(out["clean"], false);
    }
    f.assert_each_chunk_verified_once(run_id.as_str()).await;
    assert_eq!(f.diff_ids().await, planted_ids());
    // A full verify after catch-up is done: that moment asks for nothing more,
    // while an on-demand begin (no "when") starts the next run.
    let quiet = invoke(&f.env, "verify", when, deadline(60)).await.unwrap();
    assert_eq!(quiet["enabled"], false, "{quiet}");
    let on_demand = json!({"task_id": f.task_id, "mode": "full", "begin": true});
    let again = invoke(&f.env, "verify", on_demand, deadline(60))
        .await
        .unwrap();
    assert_eq!(again["done"], false, "{again}");
    assert_ne!(again["run_id"], run_id, "{again}");
    f.drop_dbs().await;
}

/// Wait until the (real or simulated) apply has applied some of the writer's changes.
async fn wait_applied(f: &Fixture) {
    let start = f
        .env
        .repo
        .checkpoint(&f.task_id, Direction::Forward)
        .await
        .unwrap()
        .map(|c| c.position);
    ferry_testkit::wait_until(
        "the apply follows the writer",
        Duration::from_secs(60),
        || async {
            let now = f
                .env
                .repo
                .checkpoint(&f.task_id, Direction::Forward)
                .await
                .unwrap()
                .map(|c| c.position);
            now.is_some() && now != start
        },
    )
    .await;
}

/// A writer on the source, a lagging "apply" that follows it and moves the checkpoint.
async fn writer_and_applier(
    f: &Fixture,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<u64>, tokio::task::JoinHandle<()>) {
    let mut src = f.te.admin(Side::Source).await;
    let mut tgt = f.te.admin(Side::Target).await;
    let start = binlog_position(&mut src, "source").await.unwrap();
    f.env
        .repo
        .put_checkpoint(&f.task_id, &forward_at(start))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(
        Instant,
        String,
        ferry_core::position::BinlogPosition,
    )>();
    let (st, tt) = (f.src("t"), f.tgt("t"));
    let writer = tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let id = 100 + (n * 37) % 2800;
            let sql = format!("UPDATE {{}} SET i = i + 1, v = CONCAT('w', {n}) WHERE id = {id}");
            exec(&mut src, &sql.replace("{}", &st)).await;
            let pos = binlog_position(&mut src, "source").await.unwrap();
            tx.send((Instant::now(), sql.replace("{}", &tt), pos))
                .unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        n
    });
    let repo = common::stage_env(&f.dir, "applier").repo;
    let task = f.task_id.clone();
    let applier = tokio::spawn(async move {
        while let Some((at, sql, pos)) = rx.recv().await {
            tokio::time::sleep_until((at + Duration::from_millis(300)).into()).await;
            exec(&mut tgt, &sql).await;
            repo.put_checkpoint(&task, &forward_at(pos)).await.unwrap();
        }
    });
    (writer, applier)
}

on_both_targets!(
    online_verify_reports_no_false_difference_while_changes_flow,
    super::online_verify_simulated_apply
);

async fn online_verify_simulated_apply(te: TestEnv) {
    let f = Fixture::new(te).await;
    exec(
        &mut f.te.admin(Side::Target).await,
        &format!("UPDATE {} SET v = 'drift' WHERE id = 42", f.tgt("t")),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (writer, applier) = writer_and_applier(&f, stop.clone()).await;
    wait_applied(&f).await;
    let out = f.verify("full").await;
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await.unwrap();
    applier.await.unwrap();
    assert!(writes > 20, "the writer ran ({writes} writes)");
    let ids = f.diff_ids().await;
    let diffs = f.env.repo.diffs(&f.task_id).await.unwrap();
    assert_eq!(
        (out["differences"].as_u64(), out["unsettled"].as_u64()),
        (Some(1), Some(0)),
        "{out} {ids:?} {diffs:#?}"
    );
    assert_eq!(ids, vec![(42, DiffKind::ValuesDiffer)], "{out} {diffs:#?}");
    f.drop_dbs().await;
}

on_both_targets!(
    online_verify_confirms_a_json_only_change_in_flight,
    super::online_verify_json_only_change_in_flight
);

/// A source change the apply has not passed is never reported as a
/// difference, even when it touches only a JSON column: on OceanBase the
/// chunk digests leave JSON out (it prints differently there) and the rows
/// are compared apart, so the digests agree while a row differs. That row
/// must be confirmed around the apply like any other mismatch; here the
/// checkpoint never passes the change, so it stays unsettled.
async fn online_verify_json_only_change_in_flight(te: TestEnv) {
    let f = Fixture::new(te).await;
    let mut src = f.te.admin(Side::Source).await;
    let here = binlog_position(&mut src, "source").await.unwrap();
    let ck = CheckpointRecord {
        direction: Direction::Forward,
        position: here,
        epoch: 1,
        updated_ms: now_ms(),
        lag_ms: None,
        applied_rows: 0,
    };
    f.env.repo.put_checkpoint(&f.task_id, &ck).await.unwrap();
    let st = f.src("t");
    exec(
        &mut src,
        &format!("UPDATE {st} SET j = JSON_OBJECT('s', -7) WHERE id = 7"),
    )
    .await;
    let input = json!({"task_id": f.task_id, "mode": "full", "recheck_seconds": 1});
    let out = invoke(&f.env, "verify", input, deadline(120))
        .await
        .unwrap();
    let ids = f.diff_ids().await;
    assert_eq!(
        (out["differences"].as_u64(), out["unsettled"].as_u64()),
        (Some(0), Some(1)),
        "{out} {ids:?}"
    );
    f.drop_dbs().await;
}

/// The real incremental-apply stage, called in a loop until `stop`.
async fn apply_loop(dir: PathBuf, task_id: String, stop: Arc<AtomicBool>) -> u64 {
    let env = common::stage_env(&dir, "applier");
    let mut calls = 0;
    while !stop.load(Ordering::SeqCst) {
        let input = json!({"task_id": task_id, "direction": "forward", "idle_ms": 300});
        invoke(&env, "incremental-apply", input, deadline(10))
            .await
            .unwrap();
        calls += 1;
    }
    calls
}

on_both_targets!(
    online_verify_with_the_real_incremental_apply,
    super::online_verify_real_apply
);

async fn online_verify_real_apply(te: TestEnv) {
    let dir = StageDir::new(&te, "ferry_verify_cdc");
    let f = Fixture {
        env: dir.env("w0"),
        dir,
        te,
        task_id: unique_name("verify-cdc"),
        src_db: unique_name("ferry_vc_src"),
        tgt_db: unique_name("ferry_vc_tgt"),
    };
    let mut src = f.te.admin(Side::Source).await;
    recreate_db(&mut src, &f.src_db).await;
    drop_db(&mut f.te.admin(Side::Target).await, &f.tgt_db).await;
    exec(&mut src, &format!("CREATE TABLE {} {CREATE}", f.src("t"))).await;
    exec(&mut src, &format!("INSERT INTO {} {FILL}", f.src("t"))).await;
    let mut task = common::task_json(&f.te, &f.task_id, &f.src_db, &f.tgt_db);
    task["types"] = json!(["schema", "full", "incremental", "verify"]);
    task["options"] = json!({"chunk_rows": 700, "verify_recheck_seconds": 30});
    common::create_task(&f.env, &task).await;
    let stage = |name: &'static str, input: Value| {
        let env = &f.env;
        async move {
            invoke(env, name, input, deadline(60))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        }
    };
    stage("plan", json!({"task_id": f.task_id})).await;
    while stage("copy-chunk", json!({"task_id": f.task_id, "worker": "0"})).await["remaining"] != 0
    {
    }
    stage(
        "copy-chunk",
        json!({"task_id": f.task_id, "action": "summary"}),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let applier = tokio::spawn(apply_loop(
        f.dir.to_path_buf(),
        f.task_id.clone(),
        stop.clone(),
    ));
    let (te, st, stop_w) = (f.te.clone(), f.src("t"), stop.clone());
    let writer = tokio::spawn(async move {
        let mut conn = te.admin(Side::Source).await;
        let mut n = 0u64;
        while !stop_w.load(Ordering::SeqCst) {
            let id = 100 + (n * 37) % 2800;
            let sql = match n % 5 {
                0 => format!(
                    "INSERT INTO {st} (id, i, v) VALUES ({}, 1, 'new')",
                    10_000 + n
                ),
                1 => format!("DELETE FROM {st} WHERE id = {}", 10_000 + n - 1),
                _ => format!("UPDATE {st} SET i = i + 1, v = CONCAT('w', {n}) WHERE id = {id}"),
            };
            exec(&mut conn, &sql).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        n
    });
    // The planted difference: a row the writer never touches, changed on the target only.
    exec(
        &mut f.te.admin(Side::Target).await,
        &format!("UPDATE {} SET v = 'drift' WHERE id = 42", f.tgt("t")),
    )
    .await;
    wait_applied(&f).await;
    let out = f.verify("full").await;
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await.unwrap();
    let calls = applier.await.unwrap();
    assert!(
        writes > 20 && calls > 0,
        "writer {writes} statements, {calls} apply calls"
    );
    let ids = f.diff_ids().await;
    let diffs = f.env.repo.diffs(&f.task_id).await.unwrap();
    assert_eq!(
        (out["differences"].as_u64(), out["unsettled"].as_u64()),
        (Some(1), Some(0)),
        "{out} {ids:?} {diffs:#?}"
    );
    assert_eq!(ids, vec![(42, DiffKind::ValuesDiffer)]);
    f.drop_dbs().await;
}

on_both_targets!(
    with_no_apply_running_verify_and_repair_answer_at_once,
    super::no_apply_running
);

/// The caller says no apply runs (`"apply_running": false`, the CLI after
/// `ferry stop`): a row that differs is judged against the forward checkpoint
/// as it stands, at once: a difference when the checkpoint has passed the
/// source (nothing in flight), unsettled when it is behind; and a repair checks
/// the rows it rewrote at once. The task's `verify_recheck_seconds` is 30, so a
/// call that waited for the apply would outlast the bound.
async fn no_apply_running(te: TestEnv) {
    let bound = Duration::from_secs(20);
    let f = Fixture::new(te).await;
    let now = f.clean_then_position().await;
    f.plant().await;

    // The checkpoint past the source: nothing in flight, so differences.
    set_checkpoint(&f, &ahead_of(&now), 4).await;
    let (out, took) = verify_stopped(&f).await;
    assert_eq!(
        (out["differences"].as_u64(), out["unsettled"].as_u64()),
        (Some(5), Some(0)),
        "{out}"
    );
    assert!(took < bound, "{took:?}");
    assert_eq!(f.diff_ids().await, planted_ids());

    // Behind the source: the repair rewrites the rows and checks them at once.
    set_checkpoint(&f, &now.file, 4).await;
    let started = Instant::now();
    let r = repair(&f.env, &f.task_id, true, None, false).await.unwrap();
    assert_eq!((r.applied, r.remaining), (5, 0));
    assert!(
        started.elapsed() < bound,
        "the repair waited {:?}",
        started.elapsed()
    );
    let (out, _) = verify_stopped(&f).await;
    assert_eq!(out["clean"], true, "{out}");

    // Behind the source, rows that differ may be changes not applied yet: unsettled, at once.
    f.plant().await;
    let (out, took) = verify_stopped(&f).await;
    assert_eq!(
        (out["differences"].as_u64(), out["unsettled"].as_u64()),
        (Some(0), Some(5)),
        "{out}"
    );
    assert!(took < bound, "the verify waited {took:?}");
    assert!(f.diff_ids().await.is_empty());
    f.drop_dbs().await;
}

on_both_targets!(
    a_repair_that_cannot_settle_its_rows_says_unsettled,
    super::repair_unsettled
);

/// A repair whose check of the rewritten rows cannot see the sync pass the
/// source (its checkpoint stays behind for the whole `verify_recheck_seconds`)
/// leaves them unsettled: not differences, not repaired, and the summary, its
/// lines and the task's attention say so instead of "clean".
async fn repair_unsettled(te: TestEnv) {
    let f = Fixture::new(te).await;
    let now = f.clean_then_position().await;
    f.plant().await;
    set_checkpoint(&f, &ahead_of(&now), 4).await;
    let (out, _) = verify_stopped(&f).await;
    assert_eq!(out["differences"].as_u64(), Some(5), "{out}");

    set_checkpoint(&f, &now.file, 4).await;
    f.env
        .repo
        .update_task(&f.task_id, |t| t.spec.options.verify_recheck_seconds = 1)
        .await
        .unwrap();
    let r = repair(&f.env, &f.task_id, true, None, true).await.unwrap();
    assert_eq!((r.applied, r.remaining, r.unsettled), (5, 0, 5), "{r:?}");
    assert!(
        f.diff_ids().await.is_empty(),
        "unsettled rows are not differences"
    );
    let lines = summary_lines(&f.env.repo, &f.task_id).await.unwrap();
    assert!(
        lines[0].contains("0 difference(s), 5 unsettled") && lines[0].contains("5 row(s) repaired"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("0 differences (5 unsettled)"),
        "per table too: {lines:?}"
    );
    let task = f.env.repo.task(&f.task_id).await.unwrap();
    let attention = task
        .attention
        .expect("the unsettled rows keep the task's attention");
    assert_eq!((attention.differences, attention.unsettled), (0, 5));
    f.drop_dbs().await;
}

on_both_targets!(
    before_the_sync_s_first_checkpoint_a_change_is_unsettled,
    super::before_first_checkpoint
);

/// A task with incremental sync stopped after its copy but before the sync's
/// first checkpoint: the link starts at the copy's snapshot point, so a row
/// that differs while the source has moved past it may be a change not
/// applied yet: unsettled, not a difference (it was a difference, with a
/// repair offered, when only a checkpoint record counted).
async fn before_first_checkpoint(te: TestEnv) {
    let f = Fixture::new(te).await;
    let snapshot = f.clean_then_position().await;
    f.env
        .repo
        .update_task(&f.task_id, |t| {
            t.spec.types.push(MigrationType::Incremental);
            t.snapshot = Some(SnapshotPoint {
                position: snapshot.clone(),
                at_ms: now_ms(),
            });
            t.copy_finished = t.snapshot.clone();
        })
        .await
        .unwrap();
    f.plant().await;
    // The source moves past the snapshot point.
    let mut src = f.te.admin(Side::Source).await;
    exec(
        &mut src,
        &format!("CREATE TABLE {} (id INT PRIMARY KEY)", f.src("moved")),
    )
    .await;
    src.disconnect().await.ok();
    let (out, _) = verify_stopped(&f).await;
    assert_eq!(
        (out["differences"].as_u64(), out["unsettled"].as_u64()),
        (Some(0), Some(5)),
        "{out}"
    );
    assert!(f.diff_ids().await.is_empty());
    f.drop_dbs().await;
}

/// The forward link's checkpoint at `position`, as an apply call would write it.
fn forward_at(position: ferry_core::position::BinlogPosition) -> CheckpointRecord {
    CheckpointRecord {
        direction: Direction::Forward,
        position,
        epoch: 1,
        updated_ms: now_ms(),
        lag_ms: None,
        applied_rows: 0,
    }
}

/// A binlog file name past `now`'s (the same base, a number no server reaches here).
fn ahead_of(now: &ferry_core::position::BinlogPosition) -> String {
    let (base, _) = now.file.rsplit_once('.').expect("a numbered binlog file");
    format!("{base}.999999")
}

async fn set_checkpoint(f: &Fixture, file: &str, pos: u64) {
    let at = ferry_core::position::BinlogPosition::new(file, pos);
    f.env
        .repo
        .put_checkpoint(&f.task_id, &forward_at(at))
        .await
        .unwrap();
}

async fn verify_stopped(f: &Fixture) -> (Value, Duration) {
    let started = Instant::now();
    let input = json!({"task_id": f.task_id, "mode": "full", "apply_running": false});
    let out = invoke(&f.env, "verify", input, deadline(120))
        .await
        .unwrap();
    (out, started.elapsed())
}

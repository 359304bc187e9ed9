//! The `plan` stage end to end against the real servers, with the SQLite task
//! store: snapshot point before any row, target schema created by the
//! migration user, chunks recorded and covering every row, idempotent reruns,
//! resumption after a cut-off, and refusals that name the table and the fix.
//! Each test runs against both targets (MariaDB and OceanBase).

mod common;

use std::time::{Duration, Instant};

use ferry_core::model::{ChunkRecord, ChunkState, TablePhase, TaskState};
use ferry_core::task::TaskSpec;
use ferry_mysql::conn::OCEANBASE_QUERY_TIMEOUT_US;
use ferry_mysql::dialect::caps::{TargetCaps, CAPS_RECORD};
use ferry_mysql::planner::range_predicate;
use ferry_mysql::schema::{binlog_position, read_table};
use ferry_mysql::{qualified, quote_ident};
use ferry_stages::invoke;
use ferry_stages::plan::{deferred_key, DeferredDdl, TABLES_RECORD};
use ferry_testkit::{exec, on_both_targets, recreate_db, unique_name, Side, TestEnv};
use mysql_async::prelude::*;
use mysql_async::Conn;
use serde_json::{json, Value};

struct Fixture {
    env: common::Env,
    te: TestEnv,
    _dir: common::StageDir,
    src_db: String,
    tgt_db: String,
}

impl Fixture {
    /// A task store, a secrets file for the migration users, and a fresh source database.
    async fn new(te: &TestEnv, ddl: &[&str]) -> Fixture {
        let dir = common::StageDir::new(te, "ferry_plan");
        let src_db = unique_name("plan_src");
        let mut c = te.admin(Side::Source).await;
        recreate_db(&mut c, &src_db).await;
        exec(&mut c, &format!("USE {}", quote_ident(&src_db))).await;
        for sql in ddl {
            exec(&mut c, sql).await;
        }
        Fixture {
            env: dir.env("test-worker"),
            te: te.clone(),
            _dir: dir,
            src_db,
            // OceanBase cannot create a foreign key in a database whose name
            // holds a backtick (see the refusal test below): a space and a
            // quote there.
            tgt_db: unique_name(if te.is_oceanbase() {
                "plan tgt x'"
            } else {
                "plan tgt `x'"
            }),
        }
    }

    fn spec(&self, id: &str, extra_options: Value) -> TaskSpec {
        let mut options = json!({"chunk_rows": 300, "concurrency": 4, "indexes_after_load": true});
        if let (Some(o), Some(x)) = (options.as_object_mut(), extra_options.as_object()) {
            o.extend(x.clone());
        }
        let mut task = common::task_json(&self.te, id, &self.src_db, &self.tgt_db);
        task["types"] = json!(["schema", "full", "incremental"]);
        task["options"] = options;
        TaskSpec::from_json(&task.to_string()).unwrap()
    }

    async fn plan(&self, id: &str, slice: Duration) -> Result<Value, ferry_core::FerryError> {
        invoke(
            &self.env,
            "plan",
            json!({"task_id": id}),
            Instant::now() + slice,
        )
        .await
    }

    async fn cleanup(&self, te: &TestEnv) {
        common::drop_dbs(te, &self.src_db, &self.tgt_db).await;
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// Rows of `db.table` per chunk, counted by the server with the chunks' own predicates.
async fn rows_per_chunk(
    conn: &mut Conn,
    db: &str,
    table: &str,
    key: &[String],
    chunks: &[ChunkRecord],
) -> Vec<u64> {
    let mut out = Vec::new();
    for c in chunks
        .iter()
        .filter(|c| c.source_db == db && c.source_table == table)
    {
        let (pred, params) = range_predicate(key, c.lower.as_deref(), c.upper.as_deref());
        let n: u64 = conn
            .exec_first(
                format!("SELECT COUNT(*) FROM {} WHERE {pred}", qualified(db, table)),
                params,
            )
            .await
            .unwrap()
            .unwrap();
        out.push(n);
    }
    out
}

fn shop_ddl() -> Vec<&'static str> {
    vec![
        "CREATE TABLE parent (id INT PRIMARY KEY) ",
        "INSERT INTO parent SELECT seq FROM seq_1_to_10",
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, pid INT, note VARCHAR(20), KEY by_note (note), \
         CONSTRAINT fk_parent FOREIGN KEY (pid) REFERENCES parent (id))",
        "INSERT INTO orders SELECT seq, seq % 10 + 1, CONCAT('n', seq) FROM seq_1_to_1000",
        "CREATE TABLE items (o BIGINT NOT NULL, n INT NOT NULL, qty INT, PRIMARY KEY (o, n))",
        "INSERT INTO items SELECT seq DIV 3, seq % 3, seq FROM seq_1_to_900",
        "CREATE TABLE `odd ``name`` ü` (code VARCHAR(20) NOT NULL, UNIQUE KEY (code))",
        "INSERT INTO `odd ``name`` ü` SELECT CONCAT('c', seq) FROM seq_1_to_5",
        "CREATE VIEW v AS SELECT id FROM orders",
    ]
}

on_both_targets!(plans_schema_snapshot_and_chunks, super::plans_schema);

on_both_targets!(
    target_sessions_lift_oceanbases_statement_limit,
    super::target_sessions_lift_the_statement_limit
);

/// The stages' target sessions on OceanBase lift its 10-second statement
/// limit (`ob_query_timeout`; past it a statement fails with 4012, as a
/// 250,000-row `LOAD DATA` did), also after the pool resets a connection; on
/// MariaDB, which has no such limit, the endpoint is as before.
async fn target_sessions_lift_the_statement_limit(te: TestEnv) {
    let f = Fixture::new(&te, &[]).await;
    let spec = f.spec("obtimeout", json!({}));
    let (_, target) = f.env.endpoints(&spec).await.expect("endpoints");
    assert_eq!(target.oceanbase, te.is_oceanbase());
    let pool = target.pool(1);
    for round in 0..2 {
        // The second round gets the first's connection back, reset by the pool.
        let mut c = pool.get_conn().await.expect("connect");
        let tz: Option<String> = c
            .query_first("SELECT @@time_zone")
            .await
            .expect("time_zone");
        assert_eq!(tz.as_deref(), Some("+00:00"), "round {round}");
        if te.is_oceanbase() {
            let limit: Option<u64> =
                (c.query_first("SELECT @@ob_query_timeout").await).expect("ob_query_timeout");
            assert_eq!(limit, Some(OCEANBASE_QUERY_TIMEOUT_US), "round {round}");
        }
        drop(c);
    }
    pool.disconnect().await.ok();
    f.cleanup(&te).await;
}

async fn plans_schema(te: TestEnv) {
    let f = Fixture::new(&te, &shop_ddl()).await;
    let id = unique_name("plan-ok").replace('_', "-");
    let spec = f.spec(&id, json!({}));
    f.env.repo.create_task(&spec).await.unwrap();
    let mut src = te.endpoint(Side::Source, false).connect().await.unwrap();
    let before = binlog_position(&mut src, "source").await.unwrap();

    let out = f.plan(&id, MINUTE).await.unwrap();
    let task = f.env.repo.task(&id).await.unwrap();
    assert!(task.planned);
    assert_eq!(
        (task.state, task.stage.as_deref()),
        (TaskState::Migrating, Some("plan"))
    );
    let snap = task.snapshot.clone().expect("snapshot recorded");
    assert_ne!(
        snap.position.compare(&before),
        Some(std::cmp::Ordering::Less),
        "{} vs {before}",
        snap.position
    );

    let tables = f.env.repo.tables(&id).await.unwrap();
    let names: Vec<String> = tables.iter().map(|t| t.source_table.clone()).collect();
    assert_eq!(
        names,
        vec!["items", "odd `name` ü", "orders", "parent"],
        "base tables only, sorted"
    );
    assert!(tables
        .iter()
        .all(|t| t.phase == TablePhase::Planned && t.target_db == f.tgt_db));
    let chunks = f.env.repo.chunks(&id).await.unwrap();
    assert!(chunks.iter().all(|c| c.state == ChunkState::Pending));
    assert_eq!(out["tables"], 4);
    assert_eq!(out["chunks"], chunks.len());
    assert_eq!(
        chunks.len(),
        3 + 1 + 4 + 1,
        "items 900/300, odd 5, orders 1000/300, parent 10"
    );
    assert_eq!(out["workers"].as_array().unwrap().len(), 4);
    assert_eq!(out["workers"][3], json!({"task_id": id, "worker": 3}));
    for t in &tables {
        let rows = rows_per_chunk(
            &mut src,
            &f.src_db,
            &t.source_table,
            &t.key_columns,
            &chunks,
        )
        .await;
        assert_eq!(rows.len() as u64, t.chunks_total);
        let total: u64 = src
            .query_first(format!(
                "SELECT COUNT(*) FROM {}",
                qualified(&f.src_db, &t.source_table)
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            rows.iter().sum::<u64>(),
            total,
            "{}: {rows:?}",
            t.source_table
        );
    }

    // The target: every table, secondary index and foreign key deferred.
    let mut tgt = te.endpoint(Side::Target, false).connect().await.unwrap();
    let orders = read_table(&mut tgt, &f.tgt_db, "orders")
        .await
        .unwrap()
        .expect("orders created");
    assert!(
        !orders.create_sql.contains("by_note") && !orders.create_sql.contains("FOREIGN KEY"),
        "{}",
        orders.create_sql
    );
    let deferred: DeferredDdl = f
        .env
        .repo
        .get_record(&id, &deferred_key(&format!("{}.orders", f.src_db)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deferred.statements.len(), 2, "{deferred:?}");
    assert!(deferred.statements[0].contains("ADD KEY `by_note`"));
    assert!(
        deferred.statements[1].contains(&format!("REFERENCES {}", qualified(&f.tgt_db, "parent")))
    );
    for s in &deferred.statements {
        exec(&mut tgt, s).await;
    }
    assert!(read_table(&mut tgt, &f.tgt_db, "odd `name` ü")
        .await
        .unwrap()
        .is_some());
    assert!(
        read_table(&mut tgt, &f.tgt_db, "v")
            .await
            .unwrap()
            .is_none(),
        "views are not created"
    );

    // A rerun reports the same and touches nothing: a row written on the target stays.
    exec(
        &mut tgt,
        &format!(
            "INSERT INTO {} VALUES (1, NULL, 'kept')",
            qualified(&f.tgt_db, "orders")
        ),
    )
    .await;
    let again = f.plan(&id, MINUTE).await.unwrap();
    assert_eq!(again, out);
    assert_eq!(f.env.repo.chunks(&id).await.unwrap(), chunks);
    let kept: Option<String> = tgt
        .query_first(format!(
            "SELECT note FROM {}",
            qualified(&f.tgt_db, "orders")
        ))
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("kept"));
    assert_eq!(f.env.repo.task(&id).await.unwrap().snapshot, Some(snap));
    f.cleanup(&te).await;
}

on_both_targets!(
    copy_workers_follow_the_target_cpus,
    super::copy_workers_follow_the_target_cpus
);

/// `concurrency` 0 (the default): four copy workers, or the OceanBase
/// target's CPUs when it has fewer (read here from the server itself).
async fn copy_workers_follow_the_target_cpus(te: TestEnv) {
    let f = Fixture::new(&te, &shop_ddl()).await;
    let id = unique_name("plan-auto").replace('_', "-");
    let spec = f.spec(&id, json!({"concurrency": 0}));
    f.env.repo.create_task(&spec).await.unwrap();
    let out = f.plan(&id, MINUTE).await.unwrap();
    let caps: TargetCaps = f
        .env
        .repo
        .get_record(&id, CAPS_RECORD)
        .await
        .unwrap()
        .expect("the plan probed the target");
    let expected = if te.is_oceanbase() {
        let mut tgt = te.endpoint(Side::Target, false).connect().await.unwrap();
        let cpus: u32 = tgt
            .query_first("SELECT CAST(CPU_CAPACITY AS SIGNED) FROM oceanbase.V$OB_SERVER_STAT")
            .await
            .unwrap()
            .expect("seekdb reports its CPU capacity");
        assert_eq!(caps.cpus, Some(cpus));
        cpus.min(4)
    } else {
        assert_eq!(caps.cpus, None, "MariaDB does not say");
        4
    };
    assert_eq!(
        out["workers"].as_array().unwrap().len(),
        expected as usize,
        "{out}"
    );
    f.cleanup(&te).await;
}

on_both_targets!(
    a_cut_off_plan_resumes_and_replaces_half_recorded_chunks,
    super::a_cut_off_plan_resumes
);

async fn a_cut_off_plan_resumes(te: TestEnv) {
    let f = Fixture::new(&te, &shop_ddl()).await;
    let id = unique_name("plan-resume").replace('_', "-");
    f.env
        .repo
        .create_task(&f.spec(&id, json!({})))
        .await
        .unwrap();

    let err = f.plan(&id, Duration::ZERO).await.unwrap_err();
    assert_eq!(err.name(), "Ferry.Transient", "{err}");
    let task = f.env.repo.task(&id).await.unwrap();
    assert!(!task.planned && task.snapshot.is_some() && task.state != TaskState::Failed);
    let first_snapshot = task.snapshot.clone();
    let listed: Vec<(String, String)> = f
        .env
        .repo
        .get_record(&id, TABLES_RECORD)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed.len(), 4);

    // A table created after the first run is not picked up (the list is fixed),
    // and a stray chunk of a half-recorded table is replaced.
    exec(
        &mut te.admin(Side::Source).await,
        &format!(
            "CREATE TABLE {} (id INT PRIMARY KEY)",
            qualified(&f.src_db, "aaa_late")
        ),
    )
    .await;
    let stray = ChunkRecord {
        chunk_id: "0000-000099".into(),
        source_db: f.src_db.clone(),
        source_table: "items".into(),
        lower: None,
        upper: None,
        state: ChunkState::Pending,
        owner: None,
        lease_until_ms: 0,
        attempts: 0,
        rows: 0,
        bytes: 0,
        last_error: None,
    };
    f.env.repo.put_chunks(&id, &[stray]).await.unwrap();

    let out = f.plan(&id, MINUTE).await.unwrap();
    assert_eq!(out["tables"], 4);
    let chunks = f.env.repo.chunks(&id).await.unwrap();
    assert!(
        !chunks.iter().any(|c| c.chunk_id == "0000-000099"),
        "the stray chunk is gone"
    );
    assert_eq!(
        chunks.iter().filter(|c| c.source_table == "items").count(),
        3
    );
    assert!(chunks.iter().all(|c| c.source_table != "aaa_late"));
    assert_eq!(
        f.env.repo.task(&id).await.unwrap().snapshot,
        first_snapshot,
        "the first snapshot point is kept"
    );
    f.cleanup(&te).await;
}

on_both_targets!(
    keyless_tables_are_refused_before_anything_is_created,
    super::keyless_tables_are_refused
);

async fn keyless_tables_are_refused(te: TestEnv) {
    let f = Fixture::new(
        &te,
        &[
            "CREATE TABLE ok (id INT PRIMARY KEY)",
            "CREATE TABLE bad1 (a INT)",
            "CREATE TABLE bad2 (a INT NULL, UNIQUE KEY (a))",
        ],
    )
    .await;
    let id = unique_name("plan-nokey").replace('_', "-");
    f.env
        .repo
        .create_task(&f.spec(&id, json!({})))
        .await
        .unwrap();
    let err = f.plan(&id, MINUTE).await.unwrap_err();
    assert_eq!(err.name(), "Ferry.SchemaIncompatible");
    for t in ["bad1", "bad2"] {
        assert!(
            err.message()
                .contains(&format!("{}.{t} has no primary key", f.src_db)),
            "{err}"
        );
    }
    assert!(
        err.message().contains("ADD COLUMN ferry_id"),
        "the fix is named: {err}"
    );
    let task = f.env.repo.task(&id).await.unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.last_error.unwrap().name, "Ferry.SchemaIncompatible");
    let mut tgt = te.admin(Side::Target).await;
    let exists: Option<String> = tgt
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (f.tgt_db.as_str(),),
        )
        .await
        .unwrap();
    assert!(exists.is_none(), "nothing was created on the target");
    assert!(f.env.repo.chunks(&id).await.unwrap().is_empty());
    f.cleanup(&te).await;
}

on_both_targets!(
    an_existing_target_table_is_kept_only_with_the_same_columns,
    super::an_existing_target_table
);

async fn an_existing_target_table(te: TestEnv) {
    let f = Fixture::new(
        &te,
        &[
            "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(10))",
            "INSERT INTO a VALUES (1, 'x')",
        ],
    )
    .await;
    let mut tgt = te.admin(Side::Target).await;
    recreate_db(&mut tgt, &f.tgt_db).await;
    exec(
        &mut tgt,
        &format!(
            "CREATE TABLE {} (id INT PRIMARY KEY, other DATE)",
            qualified(&f.tgt_db, "a")
        ),
    )
    .await;
    let id = unique_name("plan-exists").replace('_', "-");
    f.env
        .repo
        .create_task(&f.spec(&id, json!({})))
        .await
        .unwrap();
    let err = f.plan(&id, MINUTE).await.unwrap_err();
    assert_eq!(err.name(), "Ferry.SchemaIncompatible");
    assert!(
        err.message().contains("`other` date") && err.message().contains("`v` varchar(10)"),
        "both definitions: {err}"
    );

    // Same columns (even with a different index): kept, with its rows.
    exec(
        &mut tgt,
        &format!("DROP TABLE {}", qualified(&f.tgt_db, "a")),
    )
    .await;
    exec(
        &mut tgt,
        &format!(
            "CREATE TABLE {} (id INT PRIMARY KEY, v VARCHAR(10), KEY (v))",
            qualified(&f.tgt_db, "a")
        ),
    )
    .await;
    exec(
        &mut tgt,
        &format!(
            "INSERT INTO {} VALUES (7, 'pre')",
            qualified(&f.tgt_db, "a")
        ),
    )
    .await;
    let id2 = unique_name("plan-exists").replace('_', "-");
    f.env
        .repo
        .create_task(&f.spec(&id2, json!({})))
        .await
        .unwrap();
    f.plan(&id2, MINUTE).await.unwrap();
    let n: Option<u64> = tgt
        .query_first(format!(
            "SELECT COUNT(*) FROM {}",
            qualified(&f.tgt_db, "a")
        ))
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    f.cleanup(&te).await;
}

/// OceanBase answers "Parse error" to a FOREIGN KEY clause on a table of a
/// database whose name holds a backtick: the plan refuses before creating
/// anything, naming the table and the fix (a target name without one).
#[tokio::test]
async fn a_foreign_key_under_a_backtick_name_is_refused_on_oceanbase() {
    let te = ferry_testkit::env_for(ferry_testkit::Target::Oceanbase);
    let mut f = Fixture::new(&te, &shop_ddl()).await;
    f.tgt_db = unique_name("plan tgt `x'");
    let id = unique_name("plan-fk-tick").replace('_', "-");
    f.env
        .repo
        .create_task(&f.spec(&id, json!({})))
        .await
        .unwrap();
    let err = f.plan(&id, MINUTE).await.unwrap_err();
    assert_eq!(err.name(), "Ferry.SchemaIncompatible", "{err}");
    let m = err.message();
    assert!(
        m.contains(&format!("{}.orders", f.src_db))
            && m.contains("backtick")
            && m.contains("objects.rename"),
        "{m}"
    );
    let mut tgt = te.admin(Side::Target).await;
    let exists: Option<String> = tgt
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (f.tgt_db.as_str(),),
        )
        .await
        .unwrap();
    assert!(exists.is_none(), "nothing was created on the target");
    f.cleanup(&te).await;
}

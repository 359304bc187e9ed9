//! The applier against the real servers: exactly once through crashes at
//! every interesting point (failpoints after the target commit, before it,
//! mid batch, mid DDL, and 20 runs cancelled at random moments), two
//! appliers on one link (one is fenced), and a model-based property test.
//!
//! No change applied twice is proven by target triggers: every applied
//! insert (AFTER INSERT) and update (BEFORE UPDATE, which an upsert fires even
//! when it changes nothing) logs `(table, id, counter)` into an audit table;
//! the source bumps `counter` on every update and never reuses an id, so a
//! repeated application shows up as a duplicate audit row. The crashes and
//! the fencing run into the MariaDB target and into OceanBase (seekdb fires
//! the same triggers: an upsert that changes nothing fires BEFORE UPDATE).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::model::Direction;
use ferry_core::position::BinlogPosition;
use ferry_mysql::apply::{
    run_link, set_failpoint, FailAction, Link, LinkConfig, LinkReport, TableMapper, TargetName,
};
use ferry_mysql::binlog::current_position;
use ferry_testkit::{
    assert_same_rows, drop_db, env, exec, on_both_targets, recreate_db, unique_name, Side, TestEnv,
};
use mysql_async::prelude::*;
use mysql_async::Conn;
use rand::{Rng, SeedableRng};

const TABLES: &[&str] = &[
    "CREATE TABLE {db}.t1 (id INT PRIMARY KEY, counter INT NOT NULL, v VARCHAR(40), amount DECIMAL(12,2), ts TIMESTAMP(3) NULL)",
    "CREATE TABLE {db}.t2 (a INT, b INT, counter INT NOT NULL, note TEXT, PRIMARY KEY (a, b))",
    "CREATE TABLE {db}.t3 (id INT PRIMARY KEY, email VARCHAR(40) NOT NULL UNIQUE, counter INT NOT NULL)",
];

fn mapper(db: &str) -> TableMapper {
    let db = db.to_string();
    Arc::new(move |d: &str, t: &str| {
        (d == db).then(|| TargetName {
            db: d.to_string(),
            table: t.to_string(),
            filter: None,
        })
    })
}

struct Fixture {
    e: TestEnv,
    db: String,
    task: String,
    start: BinlogPosition,
    src: Conn,
    tgt: Conn,
}

impl Fixture {
    async fn new(e: TestEnv, prefix: &str) -> Fixture {
        let db = unique_name(prefix);
        let mut src = e.admin(Side::Source).await;
        let mut tgt = e.admin(Side::Target).await;
        for (conn, audit) in [(&mut src, false), (&mut tgt, true)] {
            recreate_db(conn, &db).await;
            for t in TABLES {
                exec(conn, &t.replace("{db}", &format!("`{db}`"))).await;
            }
            if audit {
                // OceanBase creates a trigger only with a current database (1046 without).
                exec(conn, &format!("USE `{db}`")).await;
                exec(
                    conn,
                    &format!(
                        "CREATE TABLE `{db}`.audit (t VARCHAR(4), id VARCHAR(40), counter INT)"
                    ),
                )
                .await;
                for (t, id) in [
                    ("t1", "NEW.id"),
                    ("t2", "CONCAT(NEW.a, ':', NEW.b)"),
                    ("t3", "NEW.id"),
                ] {
                    for (when, ev) in [("AFTER", "INSERT"), ("BEFORE", "UPDATE")] {
                        exec(
                            conn,
                            &format!(
                                "CREATE TRIGGER `{db}`.{t}_{ev} {when} {ev} ON `{db}`.{t} FOR EACH ROW \
                                 INSERT INTO `{db}`.audit VALUES ('{t}', {id}, NEW.counter)"
                            ),
                        )
                        .await;
                    }
                }
            }
        }
        let start = current_position(&mut src, "source").await.unwrap();
        let task = db.replace('_', "-");
        Fixture {
            e,
            db,
            task,
            start,
            src,
            tgt,
        }
    }

    fn config(&self, epoch: u64, workers: u32, stop_in: Duration) -> LinkConfig {
        let link = Link {
            meta_schema: "ferry_meta".into(),
            task_id: self.task.clone(),
            direction: Direction::Forward,
            epoch,
            incarnation: None,
        };
        let mut cfg = LinkConfig::new(
            link,
            self.start.clone(),
            mapper(&self.db),
            Instant::now() + stop_in,
        );
        cfg.workers = workers;
        // Strict from the start: the target began empty, nothing was copied.
        cfg.idempotent_until = Some(self.start.clone());
        cfg.idle = Duration::from_millis(300);
        cfg.heartbeat_every = Some(Duration::from_millis(200));
        cfg.group_delay = Duration::from_millis(50);
        cfg.group_rows = 300;
        // As the incremental stage sets it: text statements into OceanBase.
        cfg.prepared = !self.e.is_oceanbase();
        cfg
    }

    async fn run(&self, cfg: LinkConfig) -> Result<LinkReport, ferry_core::FerryError> {
        run_link(
            &self.e.endpoint(Side::Source, false),
            &self.e.endpoint(Side::Target, false),
            cfg,
        )
        .await
    }

    /// Run until one run ends caught up; failures (failpoints) are retried with a new epoch.
    async fn catch_up(&self, epoch: &mut u64, workers: u32) -> LinkReport {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "did not catch up");
            *epoch += 1;
            match self
                .run(self.config(*epoch, workers, Duration::from_secs(30)))
                .await
            {
                Ok(r) if r.caught_up => return r,
                Ok(_) => {}
                Err(e) => assert!(e.is_transient(), "unexpected error: {e}"),
            }
        }
    }

    async fn assert_equal(&mut self) {
        for t in ["t1", "t2", "t3"] {
            assert_same_rows(&mut self.src, (&self.db, t), &mut self.tgt, (&self.db, t)).await;
        }
        let dups: Vec<(String, String, i64, i64)> = self
            .tgt
            .query(format!("SELECT t, id, counter, COUNT(*) FROM `{}`.audit GROUP BY t, id, counter HAVING COUNT(*) > 1", self.db))
            .await
            .unwrap();
        assert!(dups.is_empty(), "changes applied more than once: {dups:?}");
    }

    async fn drop(mut self) {
        drop_db(&mut self.src, &self.db).await;
        drop_db(&mut self.tgt, &self.db).await;
        let _ = self
            .tgt
            .exec_drop(
                "DELETE FROM ferry_meta.checkpoints WHERE task_id = ?",
                (&self.task,),
            )
            .await;
        let _ = self
            .src
            .exec_drop(
                "DELETE FROM ferry_meta.heartbeat WHERE task_id = ?",
                (&self.task,),
            )
            .await;
    }
}

/// A writer of random transactions: inserts with fresh ids, updates that bump
/// `counter`, key changes to fresh ids, deletes, and unique-email swaps.
struct Writer {
    next: i64,
    t1: Vec<i64>,
    t2: Vec<(i64, i64)>,
    t3: Vec<i64>,
}

impl Writer {
    fn new() -> Writer {
        Writer {
            next: 1,
            t1: Vec::new(),
            t2: Vec::new(),
            t3: Vec::new(),
        }
    }

    fn fresh(&mut self) -> i64 {
        self.next += 1;
        self.next
    }

    fn pick<T: Copy>(v: &[T], rng: &mut impl Rng) -> Option<(usize, T)> {
        if v.is_empty() {
            return None;
        }
        let i = rng.random_range(0..v.len());
        Some((i, v[i]))
    }

    fn statement(&mut self, db: &str, rng: &mut impl Rng) -> String {
        let r = rng.random_range(0..100);
        match r {
            0..=24 => {
                let id = self.fresh();
                self.t1.push(id);
                let amount = rng.random_range(-99_999..99_999) as f64 / 100.0;
                format!("INSERT INTO `{db}`.t1 (id, counter, v, amount, ts) VALUES ({id}, 0, 'v{id} ''q''', {amount:.2}, NOW(3))")
            }
            25..=44 => match Self::pick(&self.t1, rng) {
                Some((_, id)) => format!("UPDATE `{db}`.t1 SET counter = counter + 1, v = CONCAT('u', counter) WHERE id = {id}"),
                None => "DO 0".into(),
            },
            45..=49 => match Self::pick(&self.t1, rng) {
                Some((i, id)) => {
                    let new = self.fresh();
                    self.t1[i] = new;
                    format!("UPDATE `{db}`.t1 SET id = {new}, counter = counter + 1 WHERE id = {id}")
                }
                None => "DO 0".into(),
            },
            50..=57 => match Self::pick(&self.t1, rng) {
                Some((i, id)) => {
                    self.t1.swap_remove(i);
                    format!("DELETE FROM `{db}`.t1 WHERE id = {id}")
                }
                None => "DO 0".into(),
            },
            58..=69 => {
                let (a, b) = (self.fresh(), rng.random_range(0..3));
                self.t2.push((a, b));
                format!("INSERT INTO `{db}`.t2 VALUES ({a}, {b}, 0, REPEAT('n', {}))", rng.random_range(0..50))
            }
            70..=79 => match Self::pick(&self.t2, rng) {
                Some((_, (a, b))) => format!("UPDATE `{db}`.t2 SET counter = counter + 1 WHERE a = {a} AND b = {b}"),
                None => "DO 0".into(),
            },
            80..=83 => match Self::pick(&self.t2, rng) {
                Some((i, (a, b))) => {
                    self.t2.swap_remove(i);
                    format!("DELETE FROM `{db}`.t2 WHERE a = {a} AND b = {b}")
                }
                None => "DO 0".into(),
            },
            84..=91 => {
                let id = self.fresh();
                self.t3.push(id);
                format!("INSERT INTO `{db}`.t3 VALUES ({id}, 'e{id}', 0)")
            }
            92..=95 => match (Self::pick(&self.t3, rng), Self::pick(&self.t3, rng)) {
                // Swap two emails through a temporary one: order matters for the unique key.
                (Some((_, a)), Some((_, b))) if a != b => format!(
                    "SELECT email INTO @ea FROM `{db}`.t3 WHERE id = {a}; SELECT email INTO @eb FROM `{db}`.t3 WHERE id = {b}; \
                     UPDATE `{db}`.t3 SET email = CONCAT('tmp', id), counter = counter + 1 WHERE id = {a}; \
                     UPDATE `{db}`.t3 SET email = @ea, counter = counter + 1 WHERE id = {b}; \
                     UPDATE `{db}`.t3 SET email = @eb, counter = counter + 1 WHERE id = {a}"
                ),
                _ => "DO 0".into(),
            },
            _ => match Self::pick(&self.t3, rng) {
                Some((i, id)) => {
                    self.t3.swap_remove(i);
                    let new = self.fresh();
                    self.t3.push(new);
                    // Delete and re-insert the same email in one transaction.
                    format!(
                        "SELECT email INTO @e FROM `{db}`.t3 WHERE id = {id}; DELETE FROM `{db}`.t3 WHERE id = {id}; \
                         INSERT INTO `{db}`.t3 VALUES ({new}, @e, 0)"
                    )
                }
                None => "DO 0".into(),
            },
        }
    }

    async fn transactions(&mut self, conn: &mut Conn, db: &str, n: usize) {
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        for _ in 0..n {
            let k = rng.random_range(1..5);
            let mut sql = "START TRANSACTION;".to_string();
            for _ in 0..k {
                sql.push_str(&self.statement(db, &mut rng));
                sql.push(';');
            }
            sql.push_str("COMMIT");
            exec(conn, &sql).await;
        }
    }
}

on_both_targets!(
    exactly_once_through_crashes,
    super::exactly_once_through_crashes
);
/// Crashes after the target commit, before it, mid batch, and at 20 random
/// moments, while a writer runs: every resumed run ends with equal tables and
/// no change applied twice.
async fn exactly_once_through_crashes(e: TestEnv) {
    let mut f = Fixture::new(e, "cdc_crash").await;
    let e = f.e.clone();
    let db = f.db.clone();
    let writer = tokio::spawn(async move {
        let mut conn = e.admin(Side::Source).await;
        let mut w = Writer::new();
        for _ in 0..30 {
            w.transactions(&mut conn, &db, 40).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let mut epoch = 0;
    for (point, nth) in [
        ("apply.after_commit", 2),
        ("apply.before_commit", 3),
        ("apply.mid_batch", 1),
        ("apply.after_commit", 1),
    ] {
        set_failpoint(
            &format!("{}/{point}", f.task),
            Some((FailAction::Error, nth)),
        );
        epoch += 1;
        let r = f.run(f.config(epoch, 3, Duration::from_secs(20))).await;
        let err = r
            .err()
            .unwrap_or_else(|| panic!("failpoint {point} did not fire"));
        assert!(err.message().contains(point), "{err}");
        set_failpoint(&format!("{}/{point}", f.task), None);
    }
    let mut rng = rand::rng();
    for _ in 0..20 {
        epoch += 1;
        let cfg = f.config(epoch, 3, Duration::from_secs(20));
        let (src, tgt) = (
            f.e.endpoint(Side::Source, false),
            f.e.endpoint(Side::Target, false),
        );
        let run = tokio::spawn(async move { run_link(&src, &tgt, cfg).await });
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..700))).await;
        run.abort();
        let _ = run.await;
    }
    writer.await.unwrap();
    let report = f.catch_up(&mut epoch, 3).await;
    assert!(report.lag_ms.is_some(), "lag is measured: {report:?}");
    f.assert_equal().await;
    f.drop().await;
}

/// DDL on replicated tables is applied in order; a crash right after the
/// target ran it (before the checkpoint moved) does not break the resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ddl_in_order_and_through_a_crash() {
    let mut f = Fixture::new(env(), "cdc_ddl_apply").await;
    let db = f.db.clone();
    let mut w = Writer::new();
    w.transactions(&mut f.src, &db, 30).await;
    exec(
        &mut f.src,
        &format!("ALTER TABLE `{db}`.t1 ADD COLUMN extra INT NOT NULL DEFAULT 7"),
    )
    .await;
    exec(
        &mut f.src,
        &format!("INSERT INTO `{db}`.t1 (id, counter, extra) VALUES (1000000, 0, 8)"),
    )
    .await;
    exec(
        &mut f.src,
        &format!("CREATE TABLE `{db}`.t4 (id INT PRIMARY KEY, s VARCHAR(5))"),
    )
    .await;
    exec(
        &mut f.src,
        &format!("INSERT INTO `{db}`.t4 VALUES (1, 'a'), (2, 'b')"),
    )
    .await;
    exec(&mut f.src, &format!("RENAME TABLE `{db}`.t4 TO `{db}`.t5")).await;
    exec(&mut f.src, &format!("TRUNCATE TABLE `{db}`.t5")).await;
    exec(
        &mut f.src,
        &format!("INSERT INTO `{db}`.t5 VALUES (3, 'c')"),
    )
    .await;
    exec(
        &mut f.src,
        &format!("CREATE TABLE `{db}`.t6 (id INT PRIMARY KEY)"),
    )
    .await;
    exec(&mut f.src, &format!("DROP TABLE `{db}`.t6")).await;
    exec(&mut f.src, "CREATE DATABASE IF NOT EXISTS ferry_meta").await;
    w.transactions(&mut f.src, &db, 30).await;

    set_failpoint(
        &format!("{}/ddl.after_exec", f.task),
        Some((FailAction::Error, 1)),
    );
    let err = f
        .run(f.config(1, 2, Duration::from_secs(20)))
        .await
        .expect_err("the DDL failpoint fires");
    assert!(err.message().contains("ddl.after_exec"), "{err}");
    let mut epoch = 1;
    f.catch_up(&mut epoch, 2).await;
    f.assert_equal().await;
    assert_same_rows(&mut f.src, (&db, "t5"), &mut f.tgt, (&db, "t5")).await;
    let left: Vec<String> = f
        .tgt
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
            (&db,),
        )
        .await
        .unwrap();
    assert_eq!(left, vec!["audit", "t1", "t2", "t3", "t5"]);
    f.drop().await;
}

/// A DDL the target refuses stops the link with the statement and the reason.
#[tokio::test]
async fn failing_ddl_stops_the_link() {
    let mut f = Fixture::new(env(), "cdc_ddl_fail").await;
    let db = f.db.clone();
    // The target already has t7 with other columns: CREATE TABLE t7 fails there.
    exec(&mut f.tgt, &format!("CREATE TABLE `{db}`.t7 (x INT)")).await;
    exec(
        &mut f.src,
        &format!("CREATE TABLE `{db}`.t7 (id INT PRIMARY KEY)"),
    )
    .await;
    let err = f
        .run(f.config(1, 1, Duration::from_secs(20)))
        .await
        .expect_err("DDL must fail");
    assert_eq!(err.name(), "Ferry.SchemaIncompatible", "{err}");
    assert!(
        err.message().contains("CREATE TABLE") && err.message().contains("t7"),
        "{err}"
    );
    f.drop().await;
}

on_both_targets!(
    two_appliers_one_is_fenced,
    super::two_appliers_one_is_fenced
);
/// Two appliers on one link: the older is fenced, the data stays right, and
/// an applier with a superseded epoch is refused at once.
async fn two_appliers_one_is_fenced(e: TestEnv) {
    let mut f = Fixture::new(e, "cdc_fence").await;
    let e = f.e.clone();
    let db = f.db.clone();
    let writer = tokio::spawn(async move {
        let mut conn = e.admin(Side::Source).await;
        let mut w = Writer::new();
        for _ in 0..15 {
            w.transactions(&mut conn, &db, 30).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut old = f.config(1, 2, Duration::from_secs(60));
    old.idle = Duration::from_secs(60);
    let (src, tgt) = (
        f.e.endpoint(Side::Source, false),
        f.e.endpoint(Side::Target, false),
    );
    let first = tokio::spawn(async move { run_link(&src, &tgt, old).await });
    let db = f.db.clone();
    let e = f.e.clone();
    ferry_testkit::wait_until(
        "the first applier applied something",
        Duration::from_secs(30),
        || {
            let (q, e) = (format!("SELECT COUNT(*) FROM `{db}`.audit"), e.clone());
            async move {
                let mut conn = e.admin(Side::Target).await;
                conn.query_first::<i64, _>(q)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(0)
                    > 0
            }
        },
    )
    .await;
    let second = f.run(f.config(2, 2, Duration::from_secs(5))).await;
    assert!(second.is_ok(), "the newer applier works: {second:?}");
    let first = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("the old applier stops")
        .unwrap();
    let err = first.expect_err("the old applier is fenced");
    assert_eq!(err.name(), "Ferry.Fenced", "{err}");
    let again = f
        .run(f.config(1, 2, Duration::from_secs(5)))
        .await
        .expect_err("epoch 1 is refused");
    assert_eq!(again.name(), "Ferry.Fenced", "{again}");
    writer.await.unwrap();
    let mut epoch = 2;
    f.catch_up(&mut epoch, 2).await;
    f.assert_equal().await;
    f.drop().await;
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16),
        Update(u8, u16),
        Move(u8, u8),
        Delete(u8),
        Commit,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..16, any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => (0u8..16, any::<u16>()).prop_map(|(k, v)| Op::Update(k, v)),
            1 => (0u8..16, 0u8..16).prop_map(|(a, b)| Op::Move(a, b)),
            2 => (0u8..16).prop_map(Op::Delete),
            2 => Just(Op::Commit),
        ]
    }

    /// Turn ops into SQL that is valid for the model, updating the model.
    fn sql(db: &str, ops: &[Op], model: &mut BTreeMap<u8, u16>) -> Vec<String> {
        let mut out = vec!["START TRANSACTION".to_string()];
        for op in ops {
            match *op {
                Op::Insert(k, v) if !model.contains_key(&k) => {
                    model.insert(k, v);
                    out.push(format!("INSERT INTO `{db}`.m VALUES ({k}, {v})"));
                }
                Op::Update(k, v) if model.contains_key(&k) => {
                    model.insert(k, v);
                    out.push(format!("UPDATE `{db}`.m SET v = {v} WHERE k = {k}"));
                }
                Op::Move(a, b) if a != b && model.contains_key(&a) && !model.contains_key(&b) => {
                    let v = model.remove(&a).unwrap_or(0);
                    model.insert(b, v);
                    out.push(format!("UPDATE `{db}`.m SET k = {b} WHERE k = {a}"));
                }
                Op::Delete(k) if model.contains_key(&k) => {
                    model.remove(&k);
                    out.push(format!("DELETE FROM `{db}`.m WHERE k = {k}"));
                }
                Op::Commit => {
                    out.push("COMMIT".into());
                    out.push("START TRANSACTION".into());
                }
                _ => {}
            }
        }
        out.push("COMMIT".into());
        out
    }

    async fn case(ops: Vec<Op>, workers: u32) {
        let mut f = Fixture::new(env(), "cdc_model").await;
        let db = f.db.clone();
        // Created on the source only: the link replicates the CREATE TABLE.
        exec(
            &mut f.src,
            &format!("CREATE TABLE `{db}`.m (k INT PRIMARY KEY, v INT NOT NULL)"),
        )
        .await;
        let mut model = BTreeMap::new();
        for s in sql(&db, &ops, &mut model) {
            exec(&mut f.src, &s).await;
        }
        let mut epoch = 0;
        f.catch_up(&mut epoch, workers).await;
        let got: Vec<(u8, u16)> = f
            .tgt
            .query(format!("SELECT k, v FROM `{db}`.m ORDER BY k"))
            .await
            .unwrap();
        let want: Vec<(u8, u16)> = model.into_iter().collect();
        assert_eq!(got, want);
        let keys: BTreeSet<u8> = got.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys.len(), got.len());
        f.drop().await;
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn apply_matches_the_model(ops in proptest::collection::vec(op(), 1..120), workers in 1u32..4) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(case(ops, workers));
        }
    }
}

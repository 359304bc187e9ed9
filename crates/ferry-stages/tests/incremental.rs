//! The `incremental-apply` stage end to end on the real servers with the
//! SQLite task store: plan and copy-chunk run while a writer changes the
//! source, then bounded incremental calls catch up; once the writer stops every
//! row is equal. Each call takes the link with a higher epoch, stores the
//! checkpoint and rows/s by table and op, and a stop request ends calls at once.
//! Each test runs against both targets (MariaDB and OceanBase).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::model::Direction;
use ferry_mysql::qualified;
use ferry_stages::incremental_apply::{stats_key, CdcStats};
use ferry_testkit::{
    assert_same_rows, drop_db, exec, on_both_targets, recreate_db, unique_name, Side, TestEnv,
};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

struct Fixture {
    env: common::Env,
    _dir: common::StageDir,
    te: TestEnv,
    task_id: String,
    src_db: String,
    tgt_db: String,
}

const TABLES: [(&str, &str); 2] = [
    ("orders", "id INT PRIMARY KEY, counter INT NOT NULL, note VARCHAR(30), amount DECIMAL(10,2), at DATETIME(3)"),
    ("lines", "o INT, n INT, qty INT NOT NULL, PRIMARY KEY (o, n)"),
];

impl Fixture {
    async fn new(te: TestEnv) -> Fixture {
        Fixture::with_filters(te, None).await
    }

    /// With `objects.filters` (`{"db.table": condition}`, `db` being the source database).
    async fn with_filters(te: TestEnv, filters: Option<(&str, &str)>) -> Fixture {
        let dir = common::StageDir::new(&te, "ferry_cdc_stage");
        let f = Fixture {
            env: dir.env("test-worker"),
            _dir: dir,
            te,
            task_id: unique_name("cdc-stage"),
            src_db: unique_name("ferry_cdc_src"),
            tgt_db: unique_name("ferry_cdc_tgt"),
        };
        let mut src = f.te.admin(Side::Source).await;
        recreate_db(&mut src, &f.src_db).await;
        for (name, cols) in TABLES {
            exec(
                &mut src,
                &format!("CREATE TABLE {} ({cols})", qualified(&f.src_db, name)),
            )
            .await;
        }
        let rows: Vec<String> = (1..=3000)
            .map(|i| format!("({i}, 0, 'n{i}', {i}.25, NOW(3))"))
            .collect();
        exec(
            &mut src,
            &format!(
                "INSERT INTO {} VALUES {}",
                qualified(&f.src_db, "orders"),
                rows.join(",")
            ),
        )
        .await;
        let mut task = common::task_json(&f.te, &f.task_id, &f.src_db, &f.tgt_db);
        task["types"] = json!(["schema", "full", "incremental"]);
        if let Some((table, condition)) = filters {
            task["objects"]["filters"] = json!({format!("{}.{table}", f.src_db): condition});
        }
        task["options"] = json!({"chunk_rows": 500, "apply_workers": 3, "slice_seconds": 20});
        common::create_task(&f.env, &task).await;
        f
    }

    async fn apply(&self) -> Value {
        let out = common::stage(
            &self.env,
            "incremental-apply",
            json!({"task_id": self.task_id, "direction": "forward", "idle_ms": 500}),
        )
        .await;
        for k in [
            "position",
            "lag_ms",
            "read_lag_ms",
            "apply_lag_ms",
            "applied",
            "caught_up",
            "switch_requested",
            "stop_requested",
        ] {
            assert!(out.get(k).is_some(), "output lacks {k}: {out}");
        }
        out
    }
}

/// Random transactions on the source until `stop` is set.
async fn writer(te: TestEnv, db: String, stop: Arc<AtomicBool>) -> u64 {
    let mut conn = te.admin(Side::Source).await;
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    let (mut next, mut n) = (10_000, 0);
    while !stop.load(Ordering::Relaxed) {
        let id = rng.random_range(1..3000);
        next += 1;
        let sql = match rng.random_range(0..4) {
            0 => format!("INSERT INTO `{db}`.orders VALUES ({next}, 0, 'w{next}', 1.5, NOW(3))"),
            1 => format!("UPDATE `{db}`.orders SET counter = counter + 1, note = CONCAT('u', counter) WHERE id = {id}"),
            2 => format!("DELETE FROM `{db}`.orders WHERE id = {id}"),
            _ => format!(
                "START TRANSACTION; INSERT INTO `{db}`.lines VALUES ({next}, 1, 1), ({next}, 2, 2); \
                 UPDATE `{db}`.lines SET qty = qty + 1 WHERE o = {next} AND n = 1; COMMIT"
            ),
        };
        exec(&mut conn, &sql).await;
        n += 1;
    }
    n
}

on_both_targets!(
    full_copy_then_incremental_catches_up,
    super::full_copy_then_incremental
);

async fn full_copy_then_incremental(te: TestEnv) {
    let f = Fixture::new(te).await;
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(f.te.clone(), f.src_db.clone(), stop.clone()));
    common::stage(&f.env, "plan", json!({"task_id": f.task_id})).await;
    common::copy_all(&f.env, &f.task_id).await;
    let task = f.env.repo.task(&f.task_id).await.unwrap();
    assert!(task.copy_finished.is_some(), "copy_finished recorded");

    let first = f.apply().await;
    let epoch1 = f
        .env
        .repo
        .checkpoint(&f.task_id, Direction::Forward)
        .await
        .unwrap()
        .unwrap()
        .epoch;
    stop.store(true, Ordering::Relaxed);
    let writes = w.await.unwrap();
    assert!(writes > 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = loop {
        assert!(Instant::now() < deadline, "never caught up");
        let out = f.apply().await;
        if out["caught_up"] == true {
            break out;
        }
    };
    let ck = f
        .env
        .repo
        .checkpoint(&f.task_id, Direction::Forward)
        .await
        .unwrap()
        .unwrap();
    assert!(
        ck.epoch > epoch1,
        "each call takes the link with a higher epoch"
    );
    assert!(
        ck.applied_rows > 0 && last["lag_ms"].is_u64(),
        "{first} / {last}"
    );
    let stats: CdcStats = f
        .env
        .repo
        .get_record(&f.task_id, &stats_key(Direction::Forward))
        .await
        .unwrap()
        .unwrap();
    assert!(stats.window_ms > 0);

    let mut src = f.te.admin(Side::Source).await;
    let mut tgt = f.te.admin(Side::Target).await;
    for (name, _) in TABLES {
        assert_same_rows(&mut src, (&f.src_db, name), &mut tgt, (&f.tgt_db, name)).await;
    }

    // A stop request ends the next call at once.
    f.env
        .repo
        .update_flags(&f.task_id, |fl| fl.stop_requested = true)
        .await
        .unwrap();
    let t0 = Instant::now();
    let out = f.apply().await;
    assert_eq!(out["stop_requested"], true);
    assert!(t0.elapsed() < Duration::from_secs(5));
    drop_db(&mut src, &f.src_db).await;
    drop_db(&mut tgt, &f.tgt_db).await;
}

async fn rows(c: &mut mysql_async::Conn, sql: String) -> Vec<Vec<mysql_async::Value>> {
    use mysql_async::prelude::Queryable;
    let rows: Vec<mysql_async::Row> = c.query(sql).await.unwrap();
    rows.into_iter().map(|r| r.unwrap()).collect()
}

on_both_targets!(
    a_filtered_table_keeps_exactly_the_matching_rows,
    super::a_filtered_table
);

/// A filtered table under incremental sync: the writer's updates flip
/// `counter % 2`, so rows keep leaving and re-entering the filter while the
/// copy and the apply run. The target must end with exactly the source rows the
/// filter keeps (typed comparisons on DECIMAL and DATETIME included), and the
/// unfiltered table with all of them.
async fn a_filtered_table(te: TestEnv) {
    const FILTER: &str = "counter % 2 = 0 AND amount < 2000 AND at > '2000-01-01 00:00:00'";
    let f = Fixture::with_filters(te, Some(("orders", FILTER))).await;
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(f.te.clone(), f.src_db.clone(), stop.clone()));
    common::stage(&f.env, "plan", json!({"task_id": f.task_id})).await;
    common::copy_all(&f.env, &f.task_id).await;
    f.apply().await;
    stop.store(true, Ordering::Relaxed);
    assert!(w.await.unwrap() > 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while f.apply().await["caught_up"] != true {
        assert!(Instant::now() < deadline, "never caught up");
    }
    let mut src = f.te.admin(Side::Source).await;
    let mut tgt = f.te.admin(Side::Target).await;
    let kept = rows(
        &mut src,
        format!(
            "SELECT * FROM {} WHERE {FILTER} ORDER BY id",
            qualified(&f.src_db, "orders")
        ),
    )
    .await;
    let all = rows(
        &mut src,
        format!("SELECT id FROM {}", qualified(&f.src_db, "orders")),
    )
    .await;
    let copied = rows(
        &mut tgt,
        format!(
            "SELECT * FROM {} ORDER BY id",
            qualified(&f.tgt_db, "orders")
        ),
    )
    .await;
    assert!(
        !kept.is_empty() && kept.len() < all.len(),
        "the filter keeps {} of {} rows: the test needs some of each",
        kept.len(),
        all.len()
    );
    assert_eq!(
        copied.len(),
        kept.len(),
        "rows on the target vs rows the filter keeps"
    );
    assert!(
        copied == kept,
        "the target's rows differ from the ones the filter keeps"
    );
    assert_same_rows(
        &mut src,
        (&f.src_db, "lines"),
        &mut tgt,
        (&f.tgt_db, "lines"),
    )
    .await;
    drop_db(&mut src, &f.src_db).await;
    drop_db(&mut tgt, &f.tgt_db).await;
}

on_both_targets!(
    ddl_in_the_stream_is_applied_and_rows_follow,
    super::ddl_in_the_stream
);

/// DDL in the binlog goes through the schema stage's translation for the
/// target: ADD COLUMN with a default, a new `utf8mb4_unicode_ci` table (a
/// collation OceanBase lacks) and a CONVERT TO that collation; the rows
/// written around them arrive, and the link never stops.
async fn ddl_in_the_stream(te: TestEnv) {
    let f = Fixture::new(te).await;
    common::stage(&f.env, "plan", json!({"task_id": f.task_id})).await;
    common::copy_all(&f.env, &f.task_id).await;
    f.apply().await;
    let (orders, late) = (qualified(&f.src_db, "orders"), qualified(&f.src_db, "late"));
    let mut src = f.te.admin(Side::Source).await;
    for sql in [
        format!("UPDATE {orders} SET note = '' WHERE id % 10 = 0"),
        format!("ALTER TABLE {orders} ADD COLUMN c INT DEFAULT 5"),
        format!("INSERT INTO {orders} VALUES (5000, 1, 'after add', 2.5, NOW(3), 7)"),
        format!("UPDATE {orders} SET c = 9 WHERE id <= 3"),
        format!(
            "CREATE TABLE {late} (id INT NOT NULL PRIMARY KEY, v VARCHAR(20) NULL) \
             DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
        ),
        format!("INSERT INTO {late} VALUES (1, ''), (2, NULL), (3, 'ß')"),
        format!("ALTER TABLE {late} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
        format!("INSERT INTO {late} VALUES (4, 'after convert')"),
    ] {
        exec(&mut src, &sql).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while f.apply().await["caught_up"] != true {
        assert!(Instant::now() < deadline, "never caught up");
    }
    let mut tgt = f.te.admin(Side::Target).await;
    for name in ["orders", "late", "lines"] {
        assert_same_rows(&mut src, (&f.src_db, name), &mut tgt, (&f.tgt_db, name)).await;
    }
    drop_db(&mut src, &f.src_db).await;
    drop_db(&mut tgt, &f.tgt_db).await;
}

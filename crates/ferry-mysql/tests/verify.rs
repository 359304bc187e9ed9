//! Verify against the real servers: identical tables compare clean (chunked,
//! and whole), every kind of planted difference is found (and nothing else),
//! repair fixes them all, and a second verify is clean.

use std::time::{Duration, Instant};

mod copy_support;

use copy_support::{chunk, clone_table, copy, options, table_info};
use ferry_mysql::conn::server_info;
use ferry_mysql::copy::WriteMethod;

use ferry_core::model::{DiffKind, KeyValue};
use ferry_mysql::copy::RateLimiter;
use ferry_mysql::planner::plan_chunks;
use ferry_mysql::schema::{read_table, Column};
use ferry_mysql::verify::canon::{row_hash_expr, row_text_expr};
use ferry_mysql::verify::{
    apply_repair, compare_keys, compare_range, confirm, repair_script, repair_statements, Digest,
    RowDiff, RowHash, Side as VSide, VerifyTable,
};
use ferry_testkit::{drop_db, env, exec, on_both_targets, recreate_db, unique_name, Side, TestEnv};
use mysql_async::prelude::*;
use mysql_async::Conn;

const CREATE: &str = "CREATE TABLE t (
  id INT NOT NULL PRIMARY KEY,
  i INT, u BIGINT UNSIGNED, d DECIMAL(12,4), f DOUBLE, fl FLOAT,
  v VARCHAR(40), vn VARCHAR(40) NULL, lat VARCHAR(40) CHARACTER SET latin1,
  dt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), dd DATE, y YEAR,
  j JSON, e ENUM('a','b','c#d'), st SET('x','y'), b BLOB, bt BIT(10),
  g BIGINT AS (i * 2) VIRTUAL
) DEFAULT CHARSET=utf8mb4";

const FILL: &str = "INSERT INTO t (id, i, u, d, f, fl, v, vn, lat, dt, ts, tm, dd, y, j, e, st, b, bt)
  SELECT seq, CAST(seq AS SIGNED) * 7 - 3000, 18446744073709551615 - seq, seq / 7, seq / 3, seq / 9,
    CONCAT('v#', seq, IF(seq % 5 = 0, ' ', '')), IF(seq % 4 = 0, NULL, IF(seq % 4 = 1, '', CONCAT('n', seq))),
    CONCAT('l\u{e9}', seq),
    '2024-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL seq MICROSECOND,
    IF(seq % 3 = 0, NULL, '2030-05-05 05:05:05.5' + INTERVAL seq MINUTE),
    SEC_TO_TIME(CAST(seq AS SIGNED) * 97 - 5000), '2000-01-01' + INTERVAL seq DAY, 1901 + seq % 200,
    JSON_OBJECT('k', seq, 'arr', JSON_ARRAY(seq, 'x')), ELT(1 + seq % 3, 'a', 'b', 'c#d'),
    IF(seq % 2 = 0, 'x,y', 'y'), UNHEX(SHA2(seq, 256)), seq % 1024
  FROM seq_1_to_1200";

/// Differences planted on the target: (key, expected kind, expected columns).
fn planted() -> Vec<(i64, DiffKind, Vec<&'static str>, &'static str)> {
    use DiffKind::*;
    vec![
        (10, MissingInTarget, vec![], "DELETE FROM t WHERE id = 10"),
        (
            5000,
            ExtraInTarget,
            vec![],
            "INSERT INTO t (id, i) VALUES (5000, 1)",
        ),
        (
            20,
            ValuesDiffer,
            vec!["i"],
            "UPDATE t SET i = i + 1 WHERE id = 20",
        ),
        (
            30,
            ValuesDiffer,
            vec!["u"],
            "UPDATE t SET u = u - 1 WHERE id = 30",
        ),
        (
            40,
            ValuesDiffer,
            vec!["d"],
            "UPDATE t SET d = d + 0.0001 WHERE id = 40",
        ),
        (
            50,
            ValuesDiffer,
            vec!["f"],
            "UPDATE t SET f = f + 1e-12 WHERE id = 50",
        ),
        (
            55,
            ValuesDiffer,
            vec!["fl"],
            "UPDATE t SET fl = fl * 1.0000002 WHERE id = 55",
        ),
        (
            60,
            ValuesDiffer,
            vec!["v"],
            "UPDATE t SET v = 'v#60' WHERE id = 60",
        ),
        (
            64,
            ValuesDiffer,
            vec!["vn"],
            "UPDATE t SET vn = '' WHERE id = 64",
        ),
        (
            65,
            ValuesDiffer,
            vec!["vn"],
            "UPDATE t SET vn = NULL WHERE id = 65",
        ),
        (
            66,
            ValuesDiffer,
            vec!["lat"],
            "UPDATE t SET lat = 'le66' WHERE id = 66",
        ),
        (
            70,
            ValuesDiffer,
            vec!["dt"],
            "UPDATE t SET dt = dt + INTERVAL 1 MICROSECOND WHERE id = 70",
        ),
        (
            80,
            ValuesDiffer,
            vec!["ts"],
            "UPDATE t SET ts = ts + INTERVAL 1 SECOND WHERE id = 80",
        ),
        (
            85,
            ValuesDiffer,
            vec!["tm"],
            "UPDATE t SET tm = tm + INTERVAL 1 MICROSECOND WHERE id = 85",
        ),
        (
            90,
            ValuesDiffer,
            vec!["j"],
            "UPDATE t SET j = JSON_SET(j, '$.k', 91) WHERE id = 90",
        ),
        (
            100,
            ValuesDiffer,
            vec!["e"],
            "UPDATE t SET e = IF(e = 'a', 'b', 'a') WHERE id = 100",
        ),
        (
            105,
            ValuesDiffer,
            vec!["st"],
            "UPDATE t SET st = 'x' WHERE id = 105",
        ),
        (
            110,
            ValuesDiffer,
            vec!["b"],
            "UPDATE t SET b = CONCAT(LEFT(b, 31), CHAR(ASCII(RIGHT(b, 1)) ^ 1)) WHERE id = 110",
        ),
        (
            115,
            ValuesDiffer,
            vec!["bt"],
            "UPDATE t SET bt = bt ^ 512 WHERE id = 115",
        ),
        (
            1199,
            ValuesDiffer,
            vec!["i", "v"],
            "UPDATE t SET i = 0, v = 'x' WHERE id = 1199",
        ),
    ]
}

struct Fixture {
    env: TestEnv,
    oceanbase: bool,
    db: String,
    src: Conn,
    tgt: Conn,
    admin_src: Conn,
    admin_tgt: Conn,
}

impl Fixture {
    async fn new(prefix: &str) -> Fixture {
        Fixture::on(env(), prefix).await
    }

    /// Table `t` filled on the source; on the MariaDB target the same
    /// statements build its twin; on OceanBase (no sequence engine, no latin1)
    /// Ferry builds it: its translation for the live server, then one chunk
    /// copy of the whole table, as a migration would.
    async fn on(e: TestEnv, prefix: &str) -> Fixture {
        let db = unique_name(prefix);
        let mut admin_src = e.admin(Side::Source).await;
        let mut admin_tgt = e.admin(Side::Target).await;
        let both = [&mut admin_src, &mut admin_tgt];
        let n = if e.is_oceanbase() { 1 } else { 2 };
        for c in both.into_iter().take(n) {
            recreate_db(c, &db).await;
            exec(c, &format!("USE {db}")).await;
            exec(c, "SET time_zone = '+00:00'").await;
            exec(c, CREATE).await;
            exec(c, FILL).await;
        }
        if e.is_oceanbase() {
            recreate_db(&mut admin_tgt, &db).await;
            exec(&mut admin_tgt, &format!("USE {db}")).await;
            exec(&mut admin_tgt, "SET time_zone = '+00:00'").await;
            copy_whole_table(&e, &db, "t").await;
        }
        let src = e.endpoint(Side::Source, false).connect().await.unwrap();
        let tgt = e.endpoint(Side::Target, false).connect().await.unwrap();
        Fixture {
            oceanbase: e.is_oceanbase(),
            env: e.clone(),
            db,
            src,
            tgt,
            admin_src,
            admin_tgt,
        }
    }

    async fn table(&mut self, name: &str) -> VerifyTable {
        let s = read_table(&mut self.src, &self.db, name)
            .await
            .unwrap()
            .unwrap();
        let t = read_table(&mut self.tgt, &self.db, name)
            .await
            .unwrap()
            .unwrap();
        // The digest both servers compute, as the verify stage chooses it
        // (OceanBase has no CRC32C: SHA1-64 there).
        let hash = RowHash::for_servers(
            &server_info(&mut self.src, "source").await.unwrap(),
            &server_info(&mut self.tgt, "target").await.unwrap(),
        );
        VerifyTable::new(s, t, None).unwrap().with_hash(hash)
    }

    /// Verify the table chunk by chunk (the copy's chunks of `chunk_rows`).
    async fn verify(&mut self, vt: &VerifyTable, chunk_rows: u64) -> Vec<RowDiff> {
        let chunks = plan_chunks(&mut self.src, &vt.source, chunk_rows, 0)
            .await
            .unwrap();
        let mut all = Vec::new();
        for c in &chunks {
            let r = compare_range(
                vt,
                &mut self.src,
                &mut self.tgt,
                c.lower.as_deref(),
                c.upper.as_deref(),
            )
            .await
            .unwrap();
            assert_eq!(r.matches(), r.diffs.is_empty() && r.source == r.target);
            all.extend(r.diffs);
        }
        all
    }

    async fn drop(mut self) {
        drop_db(&mut self.admin_src, &self.db).await;
        drop_db(&mut self.admin_tgt, &self.db).await;
    }
}

/// `db.table` created on the target by Ferry's translation and filled by one
/// chunk copy of the whole table.
async fn copy_whole_table(e: &TestEnv, db: &str, table: &str) {
    clone_table(e, db, table, db, table).await;
    let info = table_info(e, db, table).await;
    let c = chunk(db, table, None, None);
    copy(
        e,
        &info,
        (db, table),
        &c,
        None,
        &options(WriteMethod::LoadData),
    )
    .await
    .unwrap_or_else(|err| panic!("copying {db}.{table} to the target: {err}"));
}

fn id_of(d: &RowDiff) -> i64 {
    match d.key() {
        [KeyValue::Int(i)] => *i,
        other => panic!("unexpected key {other:?}"),
    }
}

/// Plant every difference of [`planted`] on the target, and one that is not
/// a difference (the same JSON value, formatted otherwise).
async fn plant(fx: &mut Fixture) {
    exec(
        &mut fx.admin_tgt,
        "UPDATE t SET j = '{\"arr\":[95,\"x\"],   \"k\":95}' WHERE id = 95",
    )
    .await;
    for (_, _, _, sql) in planted() {
        exec(&mut fx.admin_tgt, sql).await;
    }
}

on_both_targets!(
    identical_tables_are_clean_and_every_planted_difference_is_found_and_repaired,
    super::identical_tables_are_clean_and_every_planted_difference_is_found_and_repaired
);

async fn identical_tables_are_clean_and_every_planted_difference_is_found_and_repaired(e: TestEnv) {
    let mut fx = Fixture::on(e, "vfy_all").await;
    let vt = fx.table("t").await;
    assert!(
        fx.verify(&vt, 100).await.is_empty(),
        "identical tables must compare clean"
    );
    assert!(fx.verify(&vt, 5000).await.is_empty());

    plant(&mut fx).await;
    // OceanBase has no CRC32C(): only the SHA1-64 digest runs there.
    let hashes = if fx.oceanbase {
        vec![RowHash::Sha1]
    } else {
        vec![RowHash::Sha1, RowHash::Crc64]
    };
    for (hash, chunk_rows) in hashes.into_iter().flat_map(|h| [(h, 100), (h, 5000)]) {
        let vt = vt.clone().with_hash(hash);
        let mut found = fx.verify(&vt, chunk_rows).await;
        found.sort_by_key(id_of);
        let mut want = planted();
        want.sort_by_key(|p| p.0);
        let got: Vec<(i64, DiffKind, Vec<String>)> = found
            .iter()
            .map(|d| {
                let cols = match d {
                    RowDiff::ValuesDiffer { columns, .. } => {
                        columns.iter().map(|c| c.0.clone()).collect()
                    }
                    _ => vec![],
                };
                (id_of(d), d.kind(), cols)
            })
            .collect();
        let expected: Vec<(i64, DiffKind, Vec<String>)> = want
            .iter()
            .map(|(id, k, c, _)| (*id, *k, c.iter().map(|s| s.to_string()).collect()))
            .collect();
        assert_eq!(got, expected, "{hash:?}, chunk_rows {chunk_rows}");
    }
    // The recorded values show both sides exactly.
    let found = fx.verify(&vt, 100).await;
    let show = |id: i64| {
        found.iter().find(|d| id_of(d) == id).map(|d| match d {
            RowDiff::ValuesDiffer { columns, .. } => columns[0].clone(),
            _ => panic!("{d:?}"),
        })
    };
    assert_eq!(show(60), Some(("v".into(), "v#60 ".into(), "v#60".into())));
    assert_eq!(show(64), Some(("vn".into(), "NULL".into(), "".into())));
    assert_eq!(show(65), Some(("vn".into(), "".into(), "NULL".into())));
    assert_eq!(
        show(70),
        Some((
            "dt".into(),
            "2024-01-01 00:01:10.000070".into(),
            "2024-01-01 00:01:10.000071".into()
        ))
    );

    // Repair: the script is readable SQL; applying the statements makes the verify clean.
    let keys: Vec<Vec<KeyValue>> = found.iter().map(|d| d.key().to_vec()).collect();
    let stmts = repair_statements(&vt, &mut fx.src, &keys).await.unwrap();
    let script = repair_script("t1", &stmts, false);
    assert!(script.contains("DELETE FROM"), "{script}");
    assert!(script.contains("X'"), "binary as hex: {script}");
    let limiter = RateLimiter::new(2000, 0);
    let n = apply_repair(&mut fx.tgt, &stmts, &limiter, false)
        .await
        .unwrap();
    assert_eq!(n as usize, planted().len());
    assert!(
        fx.verify(&vt, 100).await.is_empty(),
        "repair must leave no difference"
    );
    fx.drop().await;
}

on_both_targets!(
    a_keyed_compare_finds_exactly_the_planted_differences_among_its_keys,
    super::keyed_compare
);

/// `compare_keys` (what `ferry verify --changed` runs on a chunk whose keys
/// the sync listed): clean keys compare clean, digests only where the servers
/// allow, and among them every planted difference is found, nothing else.
async fn keyed_compare(e: TestEnv) {
    let mut fx = Fixture::on(e, "vfy_keys").await;
    let vt = fx.table("t").await;
    plant(&mut fx).await;
    let key = |id: i64| vec![KeyValue::Int(id)];
    // Untouched keys (9999 is on neither side): clean, and counted on both sides.
    let clean: Vec<Vec<KeyValue>> = [1, 2, 95, 300, 1150, 9999].map(key).to_vec();
    let r = compare_keys(&vt, &mut fx.src, &mut fx.tgt, &clean)
        .await
        .unwrap();
    assert!(r.diffs.is_empty(), "{:?}", r.diffs);
    assert_eq!((r.source_rows, r.target_rows), (5, 5));
    // Every planted key among them: exactly the planted differences.
    let mut keys: Vec<Vec<KeyValue>> = planted().iter().map(|p| key(p.0)).collect();
    keys.extend(clean);
    keys.sort();
    let r = compare_keys(&vt, &mut fx.src, &mut fx.tgt, &keys)
        .await
        .unwrap();
    let mut got: Vec<(i64, DiffKind)> = r.diffs.iter().map(|d| (id_of(d), d.kind())).collect();
    got.sort_by_key(|g| g.0);
    let mut want: Vec<(i64, DiffKind)> = planted().iter().map(|p| (p.0, p.1)).collect();
    want.sort_by_key(|w| w.0);
    assert_eq!(got, want);
    fx.drop().await;
}

/// The CRC64 digest carries the row text from CRC32 to CRC32C in a session
/// variable: it must equal the text hashed twice, on every row and summed.
/// (It relies on `+` reading its left operand first; with the read on the left
/// a per-row projection sees the previous row's text: this test would catch a
/// server that evaluated in the other order.)
// MariaDB only: the CRC64 digest needs CRC32C(), which OceanBase lacks (it
// verifies with SHA1-64, covered by the tests above on both targets).
#[tokio::test]
async fn crc64_digest_equals_the_row_text_hashed_twice() {
    let mut fx = Fixture::new("vfy_crc").await;
    let vt = fx.table("t").await;
    let cols: Vec<&Column> = vt.source.columns.iter().filter(|c| !c.generated).collect();
    let text = row_text_expr(&cols);
    let from = ferry_mysql::qualified(&fx.db, "t");
    let per_row = |expr: String| format!("SELECT id, CAST({expr} AS CHAR) FROM {from} ORDER BY id");
    let with_var: Vec<(i64, String)> = fx
        .src
        .query(per_row(row_hash_expr(&cols, RowHash::Crc64)))
        .await
        .unwrap();
    let twice: Vec<(i64, String)> = fx
        .src
        .query(per_row(format!("((CRC32({text}) << 32) + CRC32C({text}))")))
        .await
        .unwrap();
    assert!(with_var.len() > 100);
    assert_eq!(with_var, twice);
    // And summed, as the digest does it.
    let sum = |expr: String| format!("SELECT CAST(SUM({expr}) AS CHAR) FROM {from}");
    let a: Option<String> = fx
        .src
        .query_first(sum(row_hash_expr(&cols, RowHash::Crc64)))
        .await
        .unwrap();
    let b: Option<String> = fx
        .src
        .query_first(sum(format!("((CRC32({text}) << 32) + CRC32C({text}))")))
        .await
        .unwrap();
    assert_eq!(a, b);
    // The digest adds the two halves up in DOUBLEs, setting the variable in the
    // first SUM and reading it in the second: the same exact sum and count,
    // over the whole table and over a range.
    let vt = vt.with_hash(RowHash::Crc64);
    let whole = vt
        .digest(VSide::Source, &mut fx.src, None, None)
        .await
        .unwrap();
    assert_eq!(whole.rows, 1200);
    assert_eq!(Some(whole.sum.to_string()), b);
    let (lo, hi) = ([KeyValue::Int(100)], [KeyValue::Int(700)]);
    let part = vt
        .digest(VSide::Source, &mut fx.src, Some(&lo), Some(&hi))
        .await
        .unwrap();
    let exact: Option<String> = fx
        .src
        .query_first(format!(
            "SELECT CAST(SUM((CRC32({text}) << 32) + CRC32C({text})) AS CHAR) FROM {from} \
             WHERE id >= 100 AND id < 700"
        ))
        .await
        .unwrap();
    assert_eq!((part.rows, Some(part.sum.to_string())), (600, exact));
    fx.drop().await;
}

/// The source's and the target's digest of the row with key `id`.
async fn digests_of_id(vt: &VerifyTable, fx: &mut Fixture, id: i64) -> (Digest, Digest) {
    let (lo, hi) = ([KeyValue::Int(id)], [KeyValue::Int(id + 1)]);
    let src = vt.digest(VSide::Source, &mut fx.src, Some(&lo), Some(&hi));
    let src = src.await.unwrap();
    let tgt = vt.digest(VSide::Target, &mut fx.tgt, Some(&lo), Some(&hi));
    (src, tgt.await.unwrap())
}

on_both_targets!(
    a_separator_moved_between_char_columns_is_a_difference,
    super::a_separator_moved_between_char_columns_is_a_difference
);

/// Two CHAR columns: the wider goes without its length (measuring it would
/// scan its padding), the other carries one, so a `#` moved from one column to
/// the other is still a difference, with either hash.
async fn a_separator_moved_between_char_columns_is_a_difference(e: TestEnv) {
    let mut fx = Fixture::on(e, "vfy_char").await;
    for (c, rows) in [
        (&mut fx.admin_src, "(1, 7, 'a#b', 'c'), (2, 8, 'x', 'y')"),
        (&mut fx.admin_tgt, "(1, 7, 'a', 'b#c'), (2, 8, 'x', 'y')"),
    ] {
        exec(
            c,
            "CREATE TABLE sb (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, \
             pad CHAR(60) NOT NULL) DEFAULT CHARSET=utf8mb4",
        )
        .await;
        exec(c, &format!("INSERT INTO sb VALUES {rows}")).await;
    }
    let vt = fx.table("sb").await;
    // OceanBase has no CRC32C(): only the SHA1-64 digest runs there.
    let hashes = if fx.oceanbase {
        vec![RowHash::Sha1]
    } else {
        vec![RowHash::Crc64, RowHash::Sha1]
    };
    for hash in hashes {
        let vt = vt.clone().with_hash(hash);
        let (src1, tgt1) = digests_of_id(&vt, &mut fx, 1).await;
        assert_eq!((src1.rows, tgt1.rows), (1, 1));
        assert_ne!(src1.sum, tgt1.sum, "{hash:?}: the moved '#' went unseen");
        let (src2, tgt2) = digests_of_id(&vt, &mut fx, 2).await;
        assert_eq!(src2, tgt2, "{hash:?}: equal rows must digest equal");
    }
    fx.drop().await;
}

on_both_targets!(
    decimal_scale_change_is_a_difference,
    super::decimal_scale_change_is_a_difference
);

async fn decimal_scale_change_is_a_difference(e: TestEnv) {
    let mut fx = Fixture::on(e, "vfy_dec").await;
    exec(
        &mut fx.admin_src,
        "CREATE TABLE ds (id INT PRIMARY KEY, d DECIMAL(10,2))",
    )
    .await;
    exec(
        &mut fx.admin_tgt,
        "CREATE TABLE ds (id INT PRIMARY KEY, d DECIMAL(10,1))",
    )
    .await;
    for c in [&mut fx.admin_src, &mut fx.admin_tgt] {
        exec(c, "INSERT INTO ds VALUES (1, 1.5), (2, NULL)").await;
    }
    let vt = fx.table("ds").await;
    let r = compare_range(&vt, &mut fx.src, &mut fx.tgt, None, None)
        .await
        .unwrap();
    assert_eq!(
        r.diffs,
        vec![RowDiff::ValuesDiffer {
            key: vec![KeyValue::Int(1)],
            columns: vec![("d".into(), "1.50".into(), "1.5".into())]
        }]
    );
    fx.drop().await;
}

on_both_targets!(
    confirm_drops_differences_the_apply_catches_up_on_and_keeps_lasting_ones,
    super::confirm_drops_differences_the_apply_catches_up_on_and_keeps_lasting_ones
);

async fn confirm_drops_differences_the_apply_catches_up_on_and_keeps_lasting_ones(e: TestEnv) {
    let mut fx = Fixture::on(e, "vfy_conf").await;
    let vt = fx.table("t").await;
    // Source changed, target not yet (lag); and one lasting difference on the target.
    exec(&mut fx.admin_src, "UPDATE t SET i = -1 WHERE id IN (3, 4)").await;
    exec(&mut fx.admin_tgt, "UPDATE t SET v = 'drift' WHERE id = 7").await;
    let r = compare_range(&vt, &mut fx.src, &mut fx.tgt, None, None)
        .await
        .unwrap();
    let mut ids: Vec<i64> = r.diffs.iter().map(id_of).collect();
    ids.sort();
    assert_eq!(ids, vec![3, 4, 7]);
    // The "apply" catches up when asked to wait for a position.
    let lagging = std::sync::Arc::new(tokio::sync::Mutex::new(fx.admin_tgt));
    let waits = std::sync::atomic::AtomicUsize::new(0);
    let applier = lagging.clone();
    let keys = r.diffs.iter().map(|d| d.key().to_vec()).collect();
    let c = confirm(
        &vt,
        &mut fx.src,
        &mut fx.tgt,
        keys,
        Instant::now() + Duration::from_secs(30),
        |_pos| {
            waits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let applier = applier.clone();
            async move {
                exec(
                    &mut *applier.lock().await,
                    "UPDATE t SET i = -1 WHERE id IN (3, 4)",
                )
                .await;
                Ok(true)
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(c.diffs.iter().map(id_of).collect::<Vec<_>>(), vec![7]);
    assert!(c.unsettled.is_empty());
    assert_eq!(waits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // An apply that never gets there leaves the candidates unsettled, not reported.
    let c = confirm(
        &vt,
        &mut fx.src,
        &mut fx.tgt,
        vec![vec![KeyValue::Int(7)]],
        Instant::now() + Duration::from_secs(30),
        |_| async { Ok(false) },
    )
    .await
    .unwrap();
    assert!(c.diffs.is_empty());
    assert_eq!(c.unsettled, vec![vec![KeyValue::Int(7)]]);
    drop(applier);
    fx.admin_tgt = std::sync::Arc::try_unwrap(lagging)
        .ok()
        .unwrap()
        .into_inner();
    fx.drop().await;
}

on_both_targets!(
    composite_text_keys_are_verified_and_repaired,
    super::composite_text_keys_are_verified_and_repaired
);

async fn composite_text_keys_are_verified_and_repaired(e: TestEnv) {
    let mut fx = Fixture::on(e, "vfy_ck").await;
    let create = "CREATE TABLE ck (a INT NOT NULL, b VARCHAR(20) NOT NULL, v VARBINARY(8), \
                  PRIMARY KEY (a, b)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";
    let fill = "INSERT INTO ck SELECT seq % 7, CONCAT('k\u{e9}''', seq), UNHEX(HEX(seq)) FROM seq.seq_1_to_900";
    exec(&mut fx.admin_src, create).await;
    exec(&mut fx.admin_src, fill).await;
    if fx.oceanbase {
        // No sequence engine there: Ferry copies the table over.
        copy_whole_table(&fx.env, &fx.db, "ck").await;
    } else {
        exec(&mut fx.admin_tgt, create).await;
        exec(&mut fx.admin_tgt, fill).await;
    }
    for sql in [
        "DELETE FROM ck WHERE a = 3 AND b = 'k\u{e9}''10'",
        "INSERT INTO ck VALUES (3, 'zz\\\\x', X'00')",
        "UPDATE ck SET v = X'FF' WHERE a = 1 AND b = 'k\u{e9}''1'",
    ] {
        exec(&mut fx.admin_tgt, sql).await;
    }
    let vt = fx.table("ck").await;
    let found = fx.verify(&vt, 64).await;
    let mut kinds: Vec<(Vec<KeyValue>, DiffKind)> =
        found.iter().map(|d| (d.key().to_vec(), d.kind())).collect();
    kinds.sort_by(|x, y| x.0.cmp(&y.0));
    let key = |a: i64, b: &str| vec![KeyValue::Int(a), KeyValue::Text(b.to_string())];
    assert_eq!(
        kinds,
        vec![
            (key(1, "k\u{e9}'1"), DiffKind::ValuesDiffer),
            (key(3, "k\u{e9}'10"), DiffKind::MissingInTarget),
            (key(3, "zz\\x"), DiffKind::ExtraInTarget),
        ]
    );
    let keys: Vec<Vec<KeyValue>> = found.iter().map(|d| d.key().to_vec()).collect();
    let stmts = repair_statements(&vt, &mut fx.src, &keys).await.unwrap();
    apply_repair(&mut fx.tgt, &stmts, &RateLimiter::default(), false)
        .await
        .unwrap();
    assert!(fx.verify(&vt, 64).await.is_empty(), "{stmts:?}");
    fx.drop().await;
}

#[tokio::test]
async fn the_row_filter_applies_to_the_source_only() {
    let mut fx = Fixture::new("vfy_flt").await;
    exec(&mut fx.admin_tgt, "DELETE FROM t WHERE id % 2 = 1").await;
    let s = read_table(&mut fx.src, &fx.db, "t").await.unwrap().unwrap();
    let t = read_table(&mut fx.tgt, &fx.db, "t").await.unwrap().unwrap();
    let vt = VerifyTable::new(s, t, Some("id % 2 = 0".into())).unwrap();
    assert!(
        fx.verify(&vt, 100).await.is_empty(),
        "the target holds exactly the filtered rows"
    );
    exec(&mut fx.admin_tgt, "INSERT INTO t (id, i) VALUES (3, 3)").await;
    let found = fx.verify(&vt, 100).await;
    assert_eq!(
        found,
        vec![RowDiff::ExtraInTarget {
            key: vec![KeyValue::Int(3)]
        }]
    );
    let stmts = repair_statements(&vt, &mut fx.src, &[vec![KeyValue::Int(3)]])
        .await
        .unwrap();
    assert!(
        stmts[0].sql.starts_with("DELETE FROM"),
        "a row outside the filter is deleted: {stmts:?}"
    );
    fx.drop().await;
}

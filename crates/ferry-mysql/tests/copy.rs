//! Chunk copy against the real servers: hostile identifiers, row filters,
//! idempotence (a chunk copied twice equals once), a write killed mid-chunk
//! leaves the target range unchanged and a retry completes it, and a copy
//! racing a background writer yields, for every chunk, exactly the source's
//! contents at one commit point (its snapshot).

mod copy_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use copy_support::*;
use ferry_core::model::{ChunkRecord, KeyValue};
use ferry_core::FerryError;
use ferry_mysql::copy::{copy_chunk, CopyOptions, RateLimiter, WriteMethod};
use ferry_mysql::{qualified, quote_ident};
use ferry_testkit::{
    drop_db, env, exec, on_both_targets, recreate_db, rows, unique_name, wait_until, Side, TestEnv,
};
use mysql_async::prelude::*;
use mysql_async::{Conn, Value};

/// Create `db.table (id BIGINT PK, val BIGINT, note VARCHAR)` with ids 0, 2, .., 2(n-1) on the source
/// and the same empty table on the target.
async fn numbers_table(te: &TestEnv, src_db: &str, tgt_db: &str, table: &str, n: i64) {
    let mut src = te.admin(Side::Source).await;
    recreate_db(&mut src, src_db).await;
    let t = qualified(src_db, table);
    exec(
        &mut src,
        &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, val BIGINT NOT NULL, note VARCHAR(40))"),
    )
    .await;
    let mut id = 0;
    while id < n {
        let end = (id + 5000).min(n);
        let values: Vec<String> = (id..end)
            .map(|i| format!("({}, {i}, 'n{i}')", 2 * i))
            .collect();
        exec(
            &mut src,
            &format!("INSERT INTO {t} VALUES {}", values.join(",")),
        )
        .await;
        id = end;
    }
    let mut tgt = te.admin(Side::Target).await;
    recreate_db(&mut tgt, tgt_db).await;
    clone_table(te, src_db, table, tgt_db, table).await;
}

async fn cleanup(te: &TestEnv, src_db: &str, tgt_db: &str) {
    drop_db(&mut te.admin(Side::Source).await, src_db).await;
    drop_db(&mut te.admin(Side::Target).await, tgt_db).await;
}

on_both_targets!(
    hostile_identifiers_and_a_row_filter,
    super::hostile_identifiers_and_a_row_filter
);

async fn hostile_identifiers_and_a_row_filter(te: TestEnv) {
    let src_db = format!("{} `q' \"ü", unique_name("ferry copy"));
    let tgt_db = format!("{} ü'`", unique_name("ferry tgt"));
    let table = "tab le`x'ü \"t\"";
    let mut src = te.admin(Side::Source).await;
    let mut tgt = te.admin(Side::Target).await;
    recreate_db(&mut src, &src_db).await;
    recreate_db(&mut tgt, &tgt_db).await;
    let t = qualified(&src_db, table);
    exec(
        &mut src,
        &format!(
            "CREATE TABLE {t} ({} INT NOT NULL, {} VARCHAR(20) NOT NULL, {} BLOB, {} TEXT, PRIMARY KEY ({}, {}))",
            quote_ident("id `x"),
            quote_ident("k'ey ñ"),
            quote_ident("vál ue"),
            quote_ident("a\"b;--"),
            quote_ident("id `x"),
            quote_ident("k'ey ñ"),
        ),
    )
    .await;
    for i in 0..50 {
        exec(
            &mut src,
            &format!(
                "INSERT INTO {t} VALUES ({}, 'k{}', X'00{i:02X}', 'row {i}')",
                i / 2,
                i % 2
            ),
        )
        .await;
    }
    clone_table(&te, &src_db, table, &tgt_db, table).await;
    let info = table_info(&te, &src_db, table).await;
    assert_eq!(
        info.key.as_deref(),
        Some(&["id `x".to_string(), "k'ey ñ".to_string()][..])
    );
    let bound = |i: i64, k: &str| Some(vec![KeyValue::Int(i), KeyValue::Text(k.into())]);
    let chunks = [
        chunk(&src_db, table, None, bound(10, "k1")),
        chunk(&src_db, table, bound(10, "k1"), bound(20, "k0")),
        chunk(&src_db, table, bound(20, "k0"), None),
    ];
    let filter = format!("{} <> 'row 7'", quote_ident("a\"b;--"));
    for method in [WriteMethod::LoadData, WriteMethod::Insert] {
        let mut total = 0;
        for c in &chunks {
            let s = copy(
                &te,
                &info,
                (&tgt_db, table),
                c,
                Some(&filter),
                &options(method),
            )
            .await
            .expect("copy");
            total += s.rows;
        }
        assert_eq!(total, 49, "{method:?}: one row is filtered out");
        let a = rows(&mut src, &src_db, table).await;
        let b = rows(&mut tgt, &tgt_db, table).await;
        let expected: Vec<_> = a
            .into_iter()
            .filter(|r| r[3] != Value::Bytes(b"row 7".to_vec()))
            .collect();
        assert_eq!(expected, b, "{method:?}");
    }
    drop_db(&mut src, &src_db).await;
    drop_db(&mut tgt, &tgt_db).await;
}

on_both_targets!(
    a_chunk_copied_twice_equals_once_and_leaves_other_ranges_alone,
    super::a_chunk_copied_twice_equals_once_and_leaves_other_ranges_alone
);

async fn a_chunk_copied_twice_equals_once_and_leaves_other_ranges_alone(te: TestEnv) {
    let (src_db, tgt_db) = (
        unique_name("ferry_twice_src"),
        unique_name("ferry_twice_tgt"),
    );
    numbers_table(&te, &src_db, &tgt_db, "t", 3000).await;
    let info = table_info(&te, &src_db, "t").await;
    let mut src = te.admin(Side::Source).await;
    let mut tgt = te.admin(Side::Target).await;
    let (st, tt) = (qualified(&src_db, "t"), qualified(&tgt_db, "t"));
    // Rows outside the chunk's range on the target must survive every copy.
    exec(
        &mut tgt,
        &format!("INSERT INTO {tt} VALUES (-5, 0, 'outside'), (99999, 0, 'outside')"),
    )
    .await;
    let c = chunk(&src_db, "t", int_bound(0), int_bound(6000));
    for method in [WriteMethod::LoadData, WriteMethod::Insert] {
        let once = copy(&te, &info, (&tgt_db, "t"), &c, None, &options(method))
            .await
            .expect("copy");
        let after_once = rows(&mut tgt, &tgt_db, "t").await;
        let twice = copy(&te, &info, (&tgt_db, "t"), &c, None, &options(method))
            .await
            .expect("copy again");
        assert_eq!(once, twice);
        assert_eq!(
            after_once,
            rows(&mut tgt, &tgt_db, "t").await,
            "{method:?}: copying twice changed the target"
        );
        let count: Option<u64> = src
            .query_first(format!("SELECT COUNT(*) FROM {st}"))
            .await
            .unwrap();
        assert_eq!(Some(once.rows), count);
        // The source changes (update, delete, insert); a recopy follows it exactly.
        exec(
            &mut src,
            &format!("UPDATE {st} SET val = -val, note = NULL WHERE id < 100"),
        )
        .await;
        exec(
            &mut src,
            &format!("DELETE FROM {st} WHERE id BETWEEN 200 AND 400"),
        )
        .await;
        exec(
            &mut src,
            &format!("INSERT INTO {st} VALUES (1, 1, 'new'), (3, 3, 'new')"),
        )
        .await;
        copy(&te, &info, (&tgt_db, "t"), &c, None, &options(method))
            .await
            .expect("recopy");
        let want = text_rows(&mut src, &format!("SELECT * FROM {st} ORDER BY id")).await;
        let got = text_rows(
            &mut tgt,
            &format!("SELECT * FROM {tt} WHERE id >= 0 AND id < 6000 ORDER BY id"),
        )
        .await;
        assert_eq!(
            want, got,
            "{method:?}: the recopied range differs from the source"
        );
        let outside = text_rows(
            &mut tgt,
            &format!("SELECT id FROM {tt} WHERE id < 0 OR id >= 6000 ORDER BY id"),
        )
        .await;
        assert_eq!(
            outside,
            vec![
                vec![Value::Bytes(b"-5".to_vec())],
                vec![Value::Bytes(b"99999".to_vec())]
            ],
            "{method:?}"
        );
        exec(&mut src, &format!("DELETE FROM {st} WHERE id IN (1, 3)")).await;
    }
    cleanup(&te, &src_db, &tgt_db).await;
}

/// Whether the target's binary log, from `(file, pos)` on, has a row event for `db`.
async fn binlog_mentions(tgt: &mut Conn, from: &(String, u64), db: &str) -> bool {
    let logs: Vec<(String, u64)> = tgt
        .query("SHOW BINARY LOGS")
        .await
        .unwrap()
        .into_iter()
        .map(|r: mysql_async::Row| (r.get::<String, _>(0).unwrap(), 0))
        .collect();
    for (file, _) in logs.iter().filter(|(f, _)| f >= &from.0) {
        let pos = if *file == from.0 { from.1 } else { 4 };
        let events: Vec<mysql_async::Row> = tgt
            .query(format!("SHOW BINLOG EVENTS IN '{file}' FROM {pos}"))
            .await
            .unwrap();
        if events.iter().any(|e| {
            e.get::<String, _>("Info")
                .is_some_and(|i| i.contains(&format!("`{db}`")) || i.contains(&format!("({db}.")))
        }) {
            return true;
        }
    }
    false
}

/// `target_binlog: false` keeps the copied rows out of the target's binary
/// log (the session's `sql_log_bin = 0`); the default writes them. Either way
/// the rows arrive. MariaDB only: it reads the target's binary log, which
/// OceanBase does not have (its Binlog Service is a separate product).
#[tokio::test]
async fn the_copy_can_skip_the_target_binlog() {
    let te = env();
    let (src_db, tgt_db) = (
        unique_name("ferry_nobin_src"),
        unique_name("ferry_nobin_tgt"),
    );
    numbers_table(&te, &src_db, &tgt_db, "t", 500).await;
    let info = table_info(&te, &src_db, "t").await;
    let c = chunk(&src_db, "t", None, None);
    let mut probe = te.admin(Side::Target).await;
    for skip in [true, false] {
        let at: mysql_async::Row = probe
            .query_first("SHOW MASTER STATUS")
            .await
            .unwrap()
            .unwrap();
        let at = (
            at.get::<String, _>(0).unwrap(),
            at.get::<u64, _>(1).unwrap(),
        );
        let opts = CopyOptions {
            target_binlog: !skip,
            ..options(WriteMethod::LoadData)
        };
        // The admin may turn the binlog off (the migration user needs BINLOG ADMIN, see precheck).
        let mut src = te.endpoint(Side::Source, false).connect().await.unwrap();
        let mut dst = te.admin(Side::Target).await;
        let stats = copy_chunk(
            &mut src,
            &mut dst,
            &info,
            (&tgt_db, "t"),
            &c,
            None,
            &opts,
            &RateLimiter::default(),
        )
        .await
        .expect("copy");
        assert_eq!(stats.rows, 500);
        assert_eq!(
            binlog_mentions(&mut probe, &at, &tgt_db).await,
            !skip,
            "target_binlog = {}",
            !skip
        );
    }
    cleanup(&te, &src_db, &tgt_db).await;
}

/// The target's open transaction of connection `id`: rows it modified so far
/// (None: it has none). MariaDB: InnoDB's `INNODB_TRX`. OceanBase keeps an
/// empty `INNODB_TRX`; its transaction table holds, per participant, the
/// callback lists of the transaction's row writes (`[id, length, logged,
/// removed, ..]`, the first element naming the fields): written rows are
/// the length plus the callbacks already removed after logging.
async fn rows_modified(te: &TestEnv, admin: &mut Conn, id: u32) -> Option<u64> {
    if !te.is_oceanbase() {
        return admin
            .exec_first(
                "SELECT trx_rows_modified FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = ?",
                (id,),
            )
            .await
            .expect("INNODB_TRX");
    }
    let stats: Vec<String> = admin
        .exec(
            "SELECT callback_list_stats FROM oceanbase.__all_virtual_trans_stat WHERE session_id = ?",
            (id,),
        )
        .await
        .expect("__all_virtual_trans_stat");
    if stats.is_empty() {
        return None;
    }
    let mut rows = 0;
    for s in stats {
        let v: serde_json::Value = serde_json::from_str(&s).expect("callback_list_stats is JSON");
        for list in v.as_array().into_iter().flatten().skip(1) {
            let n = |i: usize| list.get(i).and_then(serde_json::Value::as_u64).unwrap_or(0);
            rows += n(1) + n(3);
        }
    }
    Some(rows)
}

/// Start a slow (rate-limited) copy of the whole table, wait until its target
/// transaction has written rows past the range delete, then `interrupt` it.
async fn interrupted_copy(te: TestEnv, method: WriteMethod, kill: bool) {
    let (src_db, tgt_db) = (unique_name("ferry_kill_src"), unique_name("ferry_kill_tgt"));
    numbers_table(&te, &src_db, &tgt_db, "t", 20_000).await;
    let info = table_info(&te, &src_db, "t").await;
    let mut admin = te.admin(Side::Target).await;
    let tt = qualified(&tgt_db, "t");
    // Stale rows in the range: the failed copy must leave exactly these.
    exec(
        &mut admin,
        &format!("INSERT INTO {tt} VALUES (0, 42, 'stale'), (8, 42, 'stale'), (77777, 1, 'stale')"),
    )
    .await;
    let before = rows(&mut admin, &tgt_db, "t").await;
    let c = chunk(&src_db, "t", None, None);
    let opts = CopyOptions {
        batch_rows: 200,
        ..options(method)
    };
    let limiter = Arc::new(RateLimiter::new(4000, 0));

    let mut src = te
        .endpoint(Side::Source, false)
        .connect()
        .await
        .expect("source");
    let mut dst = te
        .endpoint(Side::Target, false)
        .connect()
        .await
        .expect("target");
    let dst_id = dst.id();
    let (l, i, c2, o) = (limiter.clone(), info.clone(), c.clone(), opts.clone());
    let tdb = tgt_db.clone();
    let copying = tokio::spawn(async move {
        let r = copy_chunk(&mut src, &mut dst, &i, (&tdb, "t"), &c2, None, &o, &l).await;
        (r, dst)
    });
    // OceanBase's LOAD DATA runs as its own transaction, outside the
    // session's (see below), and shows no open transaction while it loads:
    // there the copy is mid-chunk once the LOAD DATA has run for a second
    // (about 4,000 of the 20,000 rate-limited rows streamed into it).
    let ob_load = te.is_oceanbase() && method == WriteMethod::LoadData;
    wait_until(
        "the copy has written rows on the target",
        Duration::from_secs(30),
        || {
            let te = te.clone();
            async move {
                let mut admin = te.admin(Side::Target).await;
                if ob_load {
                    let t: Option<u64> = admin
                        .exec_first(
                            "SELECT TIME FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE 'LOAD DATA%'",
                            (dst_id,),
                        )
                        .await
                        .expect("PROCESSLIST");
                    return t.is_some_and(|t| t >= 1);
                }
                rows_modified(&te, &mut admin, dst_id).await.unwrap_or(0) > 1000
            }
        },
    )
    .await;
    if kill {
        exec(&mut admin, &format!("KILL {dst_id}")).await;
        let (result, _dst) = copying.await.expect("copy task");
        let err = result.expect_err("a killed copy fails");
        assert!(
            matches!(err, FerryError::Transient(_)),
            "{method:?}: killed connection is transient: {err:?}"
        );
    } else {
        copying.abort();
        let _ = copying.await;
    }
    wait_until(
        "the interrupted transaction is rolled back",
        Duration::from_secs(30),
        || {
            let te = te.clone();
            async move {
                rows_modified(&te, &mut te.admin(Side::Target).await, dst_id)
                    .await
                    .is_none()
            }
        },
    )
    .await;
    let after = rows(&mut admin, &tgt_db, "t").await;
    if ob_load {
        // OceanBase's LOAD DATA commits the session's open transaction (the
        // chunk's range DELETE) and then loads as one transaction of its own
        // (a rolled-back or killed load leaves none of its rows; measured on
        // 4.3.5). So a load that fails leaves the chunk's range empty, never
        // partial: no copied row is wrong, the chunk stays unfinished, and its
        // retry (below) fills the range. The chunk here is the whole table.
        assert!(
            after == before || after.is_empty(),
            "{method:?}: a failed load left part of the chunk: {} rows",
            after.len()
        );
    } else {
        assert_eq!(
            before, after,
            "{method:?}: the target changed after a failed copy"
        );
    }

    limiter.set_limits(0, 0);
    let stats = copy(&te, &info, (&tgt_db, "t"), &c, None, &opts)
        .await
        .expect("the retry completes");
    assert_eq!(stats.rows, 20_000);
    let mut src = te.admin(Side::Source).await;
    ferry_testkit::assert_same_rows(&mut src, (&src_db, "t"), &mut admin, (&tgt_db, "t")).await;
    cleanup(&te, &src_db, &tgt_db).await;
}

async fn load_data_killed(te: TestEnv) {
    interrupted_copy(te, WriteMethod::LoadData, true).await;
}

async fn insert_killed(te: TestEnv) {
    interrupted_copy(te, WriteMethod::Insert, true).await;
}

async fn copy_dropped(te: TestEnv) {
    interrupted_copy(te, WriteMethod::LoadData, false).await;
}

on_both_targets!(
    a_load_data_killed_mid_chunk_leaves_the_target_unchanged,
    super::load_data_killed
);
on_both_targets!(
    an_insert_killed_mid_batch_leaves_the_target_unchanged,
    super::insert_killed
);
on_both_targets!(
    a_dropped_copy_leaves_the_target_unchanged,
    super::copy_dropped
);

/// One committed writer transaction: rows set (id -> (val, note)) and ids deleted.
#[derive(Debug, Clone, Default)]
struct Txn {
    set: Vec<(i64, i64, String)>,
    deleted: Vec<i64>,
}

type Model = BTreeMap<i64, (i64, String)>;

/// A single-threaded writer: each transaction updates two rows, inserts one
/// and deletes one, spread over the key space; committed ones are logged in order.
async fn writer(te: TestEnv, db: String, n: i64, log: Arc<Mutex<Vec<Txn>>>, stop: Arc<AtomicBool>) {
    let mut conn = te.admin(Side::Source).await;
    let t = qualified(&db, "t");
    let mut seq: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let a = (seq * 7919) % n * 2;
        let b = (seq * 104_729 + 13) % n * 2;
        let new_id = 2 * n + 2 * seq + 1;
        let gone = (seq * 15_485_863 + 5) % n * 2 + 1; // an odd id a previous transaction may have inserted
        let odd_insert = (seq * 31) % n * 2 + 1;
        let mut tx = conn
            .start_transaction(Default::default())
            .await
            .expect("begin");
        let mut txn = Txn::default();
        for id in [a, b] {
            let note = format!("u{seq}");
            tx.exec_drop(
                format!("UPDATE {t} SET val = val + 1, note = ? WHERE id = ?"),
                (&note, id),
            )
            .await
            .unwrap();
            let cur: Option<(i64, String)> = tx
                .exec_first(format!("SELECT val, note FROM {t} WHERE id = ?"), (id,))
                .await
                .unwrap();
            if let Some((v, nt)) = cur {
                txn.set.push((id, v, nt));
            }
        }
        for id in [new_id, odd_insert] {
            tx.exec_drop(
                format!("REPLACE INTO {t} VALUES (?, ?, ?)"),
                (id, seq, format!("i{seq}")),
            )
            .await
            .unwrap();
            txn.set.push((id, seq, format!("i{seq}")));
        }
        tx.exec_drop(format!("DELETE FROM {t} WHERE id = ?"), (gone,))
            .await
            .unwrap();
        txn.deleted.push(gone);
        tx.commit().await.expect("commit");
        log.lock().unwrap().push(txn);
    }
}

fn apply(model: &mut Model, txn: &Txn) {
    for (id, v, n) in &txn.set {
        model.insert(*id, (*v, n.clone()));
    }
    for id in &txn.deleted {
        model.remove(id);
    }
}

fn bound(b: &Option<Vec<KeyValue>>) -> Option<i64> {
    match b.as_deref() {
        Some([KeyValue::Int(i)]) => Some(*i),
        _ => None,
    }
}

fn lo(c: &ChunkRecord) -> i64 {
    bound(&c.lower).unwrap_or(i64::MIN)
}

fn hi(c: &ChunkRecord) -> i64 {
    bound(&c.upper).unwrap_or(i64::MAX)
}

fn in_range(id: i64, c: &ChunkRecord) -> bool {
    (lo(c)..hi(c)).contains(&id)
}

on_both_targets!(
    each_chunk_equals_the_source_at_its_snapshot_while_a_writer_runs,
    super::each_chunk_equals_the_source_at_its_snapshot_while_a_writer_runs
);

async fn each_chunk_equals_the_source_at_its_snapshot_while_a_writer_runs(te: TestEnv) {
    let (src_db, tgt_db) = (unique_name("ferry_race_src"), unique_name("ferry_race_tgt"));
    let n = 20_000;
    numbers_table(&te, &src_db, &tgt_db, "t", n).await;
    let info = table_info(&te, &src_db, "t").await;
    let initial: Model = (0..n).map(|i| (2 * i, (i, format!("n{i}")))).collect();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer(
        te.clone(),
        src_db.clone(),
        n,
        log.clone(),
        stop.clone(),
    ));
    wait_until("the writer commits", Duration::from_secs(30), || {
        let l = log.clone();
        async move { l.lock().unwrap().len() >= 20 }
    })
    .await;

    // Eight chunks, copied one after the other while the writer keeps going.
    let step = 2 * n / 8;
    let chunks: Vec<ChunkRecord> = (0..8)
        .map(|k| {
            let lo = if k == 0 { None } else { int_bound(k * step) };
            let hi = if k == 7 {
                None
            } else {
                int_bound((k + 1) * step)
            };
            chunk(&src_db, "t", lo, hi)
        })
        .collect();
    let opts = CopyOptions {
        batch_rows: 500,
        ..options(WriteMethod::LoadData)
    };
    let limiter = RateLimiter::new(20_000, 0);
    let mut src = te
        .endpoint(Side::Source, false)
        .connect()
        .await
        .expect("source");
    let mut dst = te
        .endpoint(Side::Target, false)
        .connect()
        .await
        .expect("target");
    let mut seen_before = Vec::new();
    for c in &chunks {
        seen_before.push(log.lock().unwrap().len());
        copy_chunk(
            &mut src,
            &mut dst,
            &info,
            (&tgt_db, "t"),
            c,
            None,
            &opts,
            &limiter,
        )
        .await
        .expect("copy");
    }
    stop.store(true, Ordering::Relaxed);
    w.await.expect("writer");
    let log = log.lock().unwrap().clone();
    assert!(
        log.len() > seen_before[0] + 20,
        "the writer ran during the copy ({} txns)",
        log.len()
    );

    // Each chunk must equal the model after some prefix of the writer's transactions,
    // and later chunks see later (or the same) prefixes.
    let mut tgt = te.admin(Side::Target).await;
    let target: Vec<(i64, i64, String)> = tgt
        .query(format!(
            "SELECT id, val, note FROM {} ORDER BY id",
            qualified(&tgt_db, "t")
        ))
        .await
        .unwrap();
    let mut from = 0;
    for (k, c) in chunks.iter().enumerate() {
        let got: Vec<(i64, i64, String)> = target
            .iter()
            .filter(|r| in_range(r.0, c))
            .cloned()
            .collect();
        let mut model = initial.clone();
        let mut matched = None;
        for p in 0..=log.len() {
            if p > 0 {
                apply(&mut model, &log[p - 1]);
            }
            if p < from.max(seen_before[k]) {
                continue;
            }
            let want: Vec<(i64, i64, String)> = model
                .range(lo(c)..hi(c))
                .map(|(id, (v, nt))| (*id, *v, nt.clone()))
                .collect();
            if want == got {
                matched = Some(p);
                break;
            }
        }
        let p = matched.unwrap_or_else(|| {
            panic!(
                "chunk {k} ({} rows) equals the source at no commit point from {from} on",
                got.len()
            )
        });
        eprintln!(
            "chunk {k}: {} rows, equal to the source after {p} of {} writer transactions",
            got.len(),
            log.len()
        );
        from = p;
    }
    cleanup(&te, &src_db, &tgt_db).await;
}

on_both_targets!(
    parallel_chunks_of_one_table_do_not_deadlock,
    super::parallel_chunks_of_one_table_do_not_deadlock
);

async fn parallel_chunks_of_one_table_do_not_deadlock(te: TestEnv) {
    let (src_db, tgt_db) = (unique_name("ferry_par_src"), unique_name("ferry_par_tgt"));
    numbers_table(&te, &src_db, &tgt_db, "t", 40_000).await;
    let info = table_info(&te, &src_db, "t").await;
    for method in [WriteMethod::LoadData, WriteMethod::Insert] {
        exec(
            &mut te.admin(Side::Target).await,
            &format!("TRUNCATE TABLE {}", qualified(&tgt_db, "t")),
        )
        .await;
        // Four neighbouring ranges written at once into an empty table: at REPEATABLE READ the
        // range deletes' gap locks made these deadlock (MySQL error 1213) almost every time.
        let bounds = [
            None,
            int_bound(20_000),
            int_bound(40_000),
            int_bound(60_000),
            None,
        ];
        let chunks: Vec<ChunkRecord> = (0..4)
            .map(|k| chunk(&src_db, "t", bounds[k].clone(), bounds[k + 1].clone()))
            .collect();
        let opts = CopyOptions {
            batch_rows: 500,
            ..options(method)
        };
        let copies = chunks
            .iter()
            .map(|c| copy(&te, &info, (&tgt_db, "t"), c, None, &opts));
        for r in futures::future::join_all(copies).await {
            r.unwrap_or_else(|e| panic!("{method:?}: a parallel chunk failed: {e}"));
        }
        let mut src = te.admin(Side::Source).await;
        let mut tgt = te.admin(Side::Target).await;
        ferry_testkit::assert_same_rows(&mut src, (&src_db, "t"), &mut tgt, (&tgt_db, "t")).await;
    }
    cleanup(&te, &src_db, &tgt_db).await;
}

/// The error of `sql` on `conn`, as Ferry classifies it.
async fn classified(conn: &mut Conn, sql: &str) -> FerryError {
    match conn.query_drop(sql).await {
        Ok(()) => panic!("`{sql}` succeeded; the test needs it to fail"),
        Err(e) => ferry_mysql::conn::classify(e, "target: test"),
    }
}

/// OceanBase's errors that leave the data as it was are retried (`Transient`,
/// which the state machine's Retry matches), with the reason and the fix; the
/// same code from MariaDB, a window-specification error there, is not. Real
/// errors from both servers: a statement past its session's timeout and a
/// transaction past its own (both OceanBase error 4012).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oceanbase_errors_that_change_nothing_are_retried() {
    let te = env().oceanbase();
    let db = unique_name("oberr");
    let mut ob = te.admin(Side::Target).await;
    recreate_db(&mut ob, &db).await;
    exec(
        &mut ob,
        &format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)"),
    )
    .await;

    exec(&mut ob, "SET ob_query_timeout = 200000").await;
    let e = classified(&mut ob, "SELECT SLEEP(2)").await;
    assert_eq!(e.name(), "Ferry.Transient", "{e}");
    assert!(e.message().contains("(OceanBase error 4012)"), "{e}");
    assert!(e.message().contains("timed out"), "{e}");
    assert!(e.message().contains("ob_trx_timeout"), "{e}");

    exec(
        &mut ob,
        "SET ob_query_timeout = 10000000, ob_trx_timeout = 1000000",
    )
    .await;
    exec(&mut ob, "BEGIN").await;
    exec(&mut ob, &format!("INSERT INTO `{db}`.t VALUES (1)")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let e = classified(&mut ob, &format!("INSERT INTO `{db}`.t VALUES (2)")).await;
    assert_eq!(e.name(), "Ferry.Transient", "{e}");
    assert!(e.message().contains("Transaction timeout"), "{e}");
    let _ = ob.query_drop("ROLLBACK").await;
    // The transaction left nothing behind: running it again is safe.
    let mut fresh = te.admin(Side::Target).await;
    let n: Option<u64> = fresh
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.t"))
        .await
        .expect("count");
    assert_eq!(n, Some(0));
    drop_db(&mut fresh, &db).await;

    let mut maria = env().admin(Side::Target).await;
    let e = classified(
        &mut maria,
        "SELECT ROW_NUMBER() OVER (w ORDER BY a) FROM (SELECT 1 AS a) t WINDOW w AS (ORDER BY a)",
    )
    .await;
    assert!(e.message().contains("(MySQL error 4012)"), "{e}");
    assert_ne!(e.name(), "Ferry.Transient", "{e}");
}

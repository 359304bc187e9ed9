//! The binlog reader against the real source server: every column type the
//! full copy supports decodes to what a SELECT returns, for inserts, updates
//! and deletes; purged positions are named; idle streams send heartbeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::position::BinlogPosition;
use ferry_mysql::binlog::{
    current_position, server_id_for, BinlogEvent, BinlogReader, Decode, ReaderOptions, RowOp,
    TableInfo,
};
use ferry_testkit::{drop_db, env, exec, recreate_db, unique_name, Side};
use mysql_async::prelude::*;
use mysql_async::Value;

const TABLE: &str = "CREATE TABLE {db}.all_types (
    id INT PRIMARY KEY,
    tiny TINYINT, utiny TINYINT UNSIGNED, med MEDIUMINT UNSIGNED, ubig BIGINT UNSIGNED, big BIGINT,
    dec1 DECIMAL(30,8), f FLOAT, d DOUBLE,
    dt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, dte DATE, tm TIME(3), yr YEAR,
    e ENUM('a','b','c'), s SET('x','y','z'), b BIT(10),
    bl BLOB, txt TEXT, vc VARCHAR(50), ch CHAR(4), bin BINARY(4), js JSON,
    lat VARCHAR(10) CHARACTER SET latin1,
    cyr VARCHAR(10) CHARACTER SET cp1251, gb VARCHAR(10) CHARACTER SET gbk,
    sj VARCHAR(10) CHARACTER SET sjis, u16 VARCHAR(10) CHARACTER SET utf16,
    le ENUM('é', 'x') CHARACTER SET latin1, ls SET('ü', 'ä') CHARACTER SET latin1,
    ge ENUM('中', '文') CHARACTER SET gbk
) ENGINE=InnoDB";

// The text columns as this utf8mb4 session reads them: the decoder turns latin1's
// bytes into UTF-8 itself, the reader has the source convert the other character sets.
const COLUMNS: &str = "id, tiny, utiny, med, ubig, big, dec1, f, d, dt, ts, dte, tm, yr, e, s, b+0, bl, txt, vc, ch, bin, js, lat, \
    cyr, gb, sj, u16, le, ls, ge";

fn as_int(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(*i as i128),
        Value::UInt(u) => Some(*u as i128),
        _ => None,
    }
}

/// Values equal as the server means them (Int and UInt of one number are one value;
/// a YEAR read as text equals its number).
fn same(a: &Value, b: &Value) -> bool {
    let text_int = |v: &Value| match v {
        Value::Bytes(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse::<i128>().ok()),
        _ => None,
    };
    match (as_int(a), as_int(b)) {
        (Some(x), Some(y)) => x == y,
        (Some(x), None) => text_int(b) == Some(x),
        (None, Some(y)) => text_int(a) == Some(y),
        (None, None) => a == b,
    }
}

fn assert_row(what: &str, got: &[Value], want: &[Value]) {
    assert_eq!(got.len(), want.len(), "{what}: column count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            same(g, w),
            "{what}: column {i}: binlog gave {g:?}, SELECT gives {w:?}"
        );
    }
}

async fn select(conn: &mut mysql_async::Conn, db: &str) -> Vec<Vec<Value>> {
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            format!("SELECT {COLUMNS} FROM `{db}`.all_types ORDER BY id"),
            (),
        )
        .await
        .unwrap();
    rows.into_iter().map(|r| r.unwrap()).collect()
}

async fn reader_for(db: &str, start: &BinlogPosition) -> BinlogReader {
    let e = env();
    let want = db.to_string();
    let filter = Arc::new(move |d: &str, _t: &str| d == want);
    let opts = ReaderOptions::new(server_id_for(db, 1), filter);
    BinlogReader::open(&e.endpoint(Side::Source, false), start, opts)
        .await
        .unwrap()
}

/// Read until `n` row changes arrived and their transaction committed; the
/// changes and the table description of the last.
async fn read_changes(reader: &mut BinlogReader, n: usize) -> (Vec<RowOp>, Arc<TableInfo>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    let mut table = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out with {} of {n} changes",
            out.len()
        );
        match reader.next().await.unwrap() {
            BinlogEvent::Rows(rows) => {
                table = rows.last().map(|r| r.table.clone());
                out.extend(rows.into_iter().map(|r| r.op));
            }
            BinlogEvent::Commit { .. } if out.len() >= n => {
                return (out, table.expect("a rows event"))
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn decodes_every_type_like_select() {
    let e = env();
    let db = unique_name("cdc_types");
    let mut admin = e.admin(Side::Source).await;
    recreate_db(&mut admin, &db).await;
    exec(&mut admin, &TABLE.replace("{db}", &format!("`{db}`"))).await;
    let start = current_position(&mut admin, "source").await.unwrap();
    let ins = format!(
        "INSERT INTO `{db}`.all_types VALUES
        (1, -128, 255, 16777215, 18446744073709551615, -9223372036854775808, -12345678901234567890.12345678,
         1.5, -2.25e-300, '2024-02-29 23:59:59.999999', '2038-01-19 03:14:07.5', '1000-01-01', '-838:59:59.000', 1901,
         'c', 'x,z', b'1010101010', x'00ff10', 'hé ✓ 😀', 'vc''q\\\\', 'ab', x'0102', '{{\"k\": [1, 2.5, null]}}', 'caf\u{e9}',
         'Привет', '中文字', 'ｶﾀｶﾅ漢字', 'ab€', 'é', 'ü,ä', '文'),
        (2, 0, 0, 0, 0, 0, 0, 0, 0, '1970-01-01 00:00:00', '1970-01-01 00:00:01', '9999-12-31', '00:00:00', 2155,
         'a', '', b'0', '', '', '', '', x'00000000', '[]', '', 'ascii', 'ascii', 'ascii', 'ab', 'x', '', '中'),
        (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    );
    exec(&mut admin, &ins).await;
    let mut src = e.endpoint(Side::Source, false).connect().await.unwrap();
    let after_insert = select(&mut src, &db).await;
    exec(&mut admin, &format!("UPDATE `{db}`.all_types SET e = 'b', s = 'y', ubig = ubig - 1, ts = '2001-02-03 04:05:06', js = '{{}}', gb = CONCAT(gb, '国') WHERE id IN (1, 3)")).await;
    let after_update = select(&mut src, &db).await;
    exec(
        &mut admin,
        &format!("DELETE FROM `{db}`.all_types WHERE id = 2"),
    )
    .await;

    let mut reader = reader_for(&db, &start).await;
    let (ops, table) = read_changes(&mut reader, 6).await;
    assert_eq!(ops.len(), 6, "{ops:?}");
    // Each text column's bytes decoded the way its character set is: by Ferry
    // (latin1; cp1251 from the source's byte table), or by the source (the rest).
    let decode = |name: &str| {
        let c = table.columns.iter().find(|c| c.name == name).expect(name);
        match &c.decode_from {
            None => "none",
            Some(Decode::Encoding(_)) => "encoding",
            Some(Decode::Table(_)) => "table",
            Some(Decode::Source { .. }) => "source",
        }
    };
    let kinds: Vec<&str> = ["vc", "lat", "cyr", "gb", "sj", "u16"].map(decode).to_vec();
    assert_eq!(
        kinds,
        ["none", "encoding", "table", "source", "source", "source"]
    );
    // The BIT column is compared as a number (`b+0`); decoded it is UInt already.
    for (i, op) in ops.iter().enumerate() {
        match (i, op) {
            (0..=2, RowOp::Insert(a)) => assert_row(&format!("insert {i}"), a, &after_insert[i]),
            (3 | 4, RowOp::Update(b, a)) => {
                let idx = if i == 3 { 0 } else { 2 };
                assert_row(&format!("update {i} before"), b, &after_insert[idx]);
                assert_row(&format!("update {i} after"), a, &after_update[idx]);
            }
            (5, RowOp::Delete(b)) => assert_row("delete", b, &after_update[1]),
            other => panic!("unexpected change {other:?}"),
        }
    }
    let pos = reader.position();
    assert!(
        !pos.file.is_empty() && pos.pos > start.pos,
        "{pos} after {start}"
    );
    assert!(pos.gtid.is_some(), "MariaDB GTID state is tracked: {pos}");
    reader.close().await;
    drop_db(&mut admin, &db).await;
}

/// Text the source converts (gbk) is converted for every event the stream
/// already holds at once; while those events are handed out, the reader's
/// position never passes the end of the last transaction handed out (the
/// switch's write probe reads it after each event).
#[tokio::test]
async fn events_read_ahead_for_a_conversion_keep_the_position_behind() {
    let e = env();
    let db = unique_name("cdc_ahead");
    let mut admin = e.admin(Side::Source).await;
    recreate_db(&mut admin, &db).await;
    exec(
        &mut admin,
        &format!(
            "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, g VARCHAR(20) CHARACTER SET gbk) ENGINE=InnoDB"
        ),
    )
    .await;
    let start = current_position(&mut admin, "source").await.unwrap();
    let n = 50;
    let inserts: Vec<String> = (1..=n)
        .map(|i| format!("INSERT INTO `{db}`.t VALUES ({i}, '中文{i}')"))
        .collect();
    exec(&mut admin, &inserts.join("; ")).await;

    let mut reader = reader_for(&db, &start).await;
    let key = |p: &BinlogPosition| (p.file.clone(), p.pos);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut rows, mut commits) = (0, 0);
    while commits < n {
        assert!(
            Instant::now() < deadline,
            "timed out after {commits} commits"
        );
        match reader.next().await.unwrap() {
            BinlogEvent::Rows(changes) => {
                for c in changes {
                    rows += 1;
                    let RowOp::Insert(r) = c.op else {
                        panic!("an insert: {:?}", c.op)
                    };
                    let want = format!("中文{}", as_int(&r[0]).unwrap());
                    assert_eq!(r[1], Value::Bytes(want.into_bytes()));
                }
            }
            BinlogEvent::Commit { end, .. } => {
                commits += 1;
                let at = reader.position();
                assert!(
                    key(&at) <= key(&end),
                    "after the commit ending at {end} the reader says {at}"
                );
            }
            _ => {}
        }
    }
    assert_eq!(rows, n);
    reader.close().await;
    drop_db(&mut admin, &db).await;
}

#[tokio::test]
async fn names_come_from_the_binlog_and_ddl_is_a_statement() {
    let e = env();
    let db = unique_name("cdc_ddl");
    let mut admin = e.admin(Side::Source).await;
    recreate_db(&mut admin, &db).await;
    let start = current_position(&mut admin, "source").await.unwrap();
    exec(
        &mut admin,
        &format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT)"),
    )
    .await;
    exec(&mut admin, &format!("INSERT INTO `{db}`.t VALUES (1, 10)")).await;
    exec(
        &mut admin,
        &format!("ALTER TABLE `{db}`.t ADD COLUMN w VARCHAR(5) DEFAULT 'q'"),
    )
    .await;
    exec(
        &mut admin,
        &format!("INSERT INTO `{db}`.t (id, v) VALUES (2, 20)"),
    )
    .await;

    let mut reader = reader_for(&db, &start).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        assert!(Instant::now() < deadline, "saw only {seen:?}");
        match reader.next().await.unwrap() {
            BinlogEvent::Statement { sql, schema, .. } if sql.contains(&db) || schema == db => seen
                .push(format!(
                    "ddl:{}",
                    sql.split_whitespace().next().unwrap_or("")
                )),
            BinlogEvent::Rows(rows) => {
                for r in rows {
                    let names: Vec<&str> =
                        r.table.columns.iter().map(|c| c.name.as_str()).collect();
                    seen.push(format!("rows:{}", names.join(",")));
                    assert_eq!(r.table.key, vec![0]);
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        seen,
        vec!["ddl:CREATE", "rows:id,v", "ddl:ALTER", "rows:id,v,w"]
    );
    reader.close().await;
    drop_db(&mut admin, &db).await;
}

/// Row images that lack columns (a session with `binlog_row_image=MINIMAL`)
/// cannot be applied by row image: the reader says so and how to fix it,
/// instead of applying wrong values.
#[tokio::test]
async fn a_partial_row_image_is_refused_with_the_setting_to_fix() {
    let e = env();
    let db = unique_name("cdc_minimal");
    let mut admin = e.admin(Side::Source).await;
    recreate_db(&mut admin, &db).await;
    exec(
        &mut admin,
        &format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, a INT, b VARCHAR(10))"),
    )
    .await;
    exec(
        &mut admin,
        &format!("INSERT INTO `{db}`.t VALUES (1, 1, 'x')"),
    )
    .await;
    let start = current_position(&mut admin, "source").await.unwrap();
    exec(&mut admin, "SET SESSION binlog_row_image = 'MINIMAL'").await;
    exec(
        &mut admin,
        &format!("UPDATE `{db}`.t SET a = 2 WHERE id = 1"),
    )
    .await;
    let mut reader = reader_for(&db, &start).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        assert!(Instant::now() < deadline, "no error for the partial image");
        match reader.next().await {
            Err(e) => break e,
            Ok(BinlogEvent::Rows(rows)) => panic!("a partial image was decoded: {rows:?}"),
            Ok(_) => {}
        }
    };
    assert_eq!(err.name(), "Ferry.SchemaIncompatible", "{err}");
    assert!(err.message().contains("binlog_row_image=FULL"), "{err}");
    drop_db(&mut admin, &db).await;
}

#[tokio::test]
async fn a_purged_file_is_named() {
    let e = env();
    let start = BinlogPosition::new("mysql-bin.999999", 4);
    let filter = Arc::new(|_: &str, _: &str| true);
    let opts = ReaderOptions::new(server_id_for("purged", 1), filter);
    let err = match BinlogReader::open(&e.endpoint(Side::Source, false), &start, opts).await {
        Ok(_) => panic!("a missing binlog file must be refused"),
        Err(err) => err,
    };
    assert_eq!(err.name(), "Ferry.BinlogPurged", "{err}");
    assert!(
        err.message().contains("mysql-bin.999999") && err.message().contains("--recopy"),
        "{err}"
    );
}

#[tokio::test]
async fn idle_stream_sends_heartbeats_and_gtid_positioning_works() {
    let e = env();
    let mut admin = e.admin(Side::Source).await;
    let mut start = current_position(&mut admin, "source").await.unwrap();
    let filter = Arc::new(|_: &str, _: &str| false);
    let mut opts = ReaderOptions::new(server_id_for("heartbeat", 7), filter);
    opts.heartbeat = Duration::from_millis(200);
    // Position by GTID only: the reader learns the file from the server.
    start.file.clear();
    let mut reader = BinlogReader::open(&e.endpoint(Side::Source, false), &start, opts)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no heartbeat");
        if let BinlogEvent::Heartbeat { position } = reader.next().await.unwrap() {
            assert!(
                position.file.starts_with("mysql-bin.")
                    && position.file.len() == "mysql-bin.000001".len(),
                "{position}"
            );
            break;
        }
    }
    reader.close().await;
}

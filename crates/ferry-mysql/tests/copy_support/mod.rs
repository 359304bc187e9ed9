//! Helpers shared by the chunk-copy tests (`tests/copy.rs`, `tests/types.rs`).
#![allow(dead_code)]

use ferry_core::model::{ChunkRecord, ChunkState, KeyValue};
use ferry_core::task::Dialect;
use ferry_core::FerryError;
use ferry_mysql::copy::{copy_chunk, CopyOptions, CopyStats, RateLimiter, WriteMethod};
use ferry_mysql::dialect::{caps, translate_for, TargetContext, TranslateOptions, Translated};
use ferry_mysql::schema::{read_table, TableInfo};
use ferry_mysql::{qualified, quote_ident};
use ferry_testkit::{exec, same_value, Side, TestEnv};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

/// A chunk of `db.table` over `[lower, upper)`.
pub fn chunk(
    db: &str,
    table: &str,
    lower: Option<Vec<KeyValue>>,
    upper: Option<Vec<KeyValue>>,
) -> ChunkRecord {
    ChunkRecord {
        chunk_id: "0000-000000".into(),
        source_db: db.into(),
        source_table: table.into(),
        lower,
        upper,
        state: ChunkState::Running,
        owner: Some("test".into()),
        lease_until_ms: 0,
        attempts: 1,
        rows: 0,
        bytes: 0,
        last_error: None,
    }
}

pub fn int_bound(i: i64) -> Option<Vec<KeyValue>> {
    Some(vec![KeyValue::Int(i)])
}

/// Create `tgt_db.tgt_table` on the target like `src_db.table` on the source:
/// on the MariaDB target exactly (its `SHOW CREATE TABLE`), on OceanBase
/// through Ferry's own translation for the live server ([`translate_table`]),
/// as the schema stage would create it.
pub async fn clone_table(env: &TestEnv, src_db: &str, table: &str, tgt_db: &str, tgt_table: &str) {
    if env.is_oceanbase() {
        let tr = translate_table(env, src_db, table, tgt_db, tgt_table).await;
        let mut tgt = env.admin(Side::Target).await;
        exec(&mut tgt, &tr.create_sql).await;
        for sql in &tr.deferred_indexes {
            exec(&mut tgt, sql).await;
        }
        return;
    }
    let mut src = env.admin(Side::Source).await;
    let row: Row = src
        .query_first(format!("SHOW CREATE TABLE {}", qualified(src_db, table)))
        .await
        .expect("show create")
        .expect("table exists");
    let create: String = row.get(1).expect("create text");
    let create = create.replacen(&quote_ident(table), &qualified(tgt_db, tgt_table), 1);
    let mut tgt = env.admin(Side::Target).await;
    exec(&mut tgt, &create).await;
}

/// Ferry's translation of `src_db.table` for the test's target, with the
/// capabilities probed from the live target server (as the plan stage does).
pub async fn translate_table(
    env: &TestEnv,
    src_db: &str,
    table: &str,
    tgt_db: &str,
    tgt_table: &str,
) -> Translated {
    let info = table_info(env, src_db, table).await;
    let mut tgt = env.admin(Side::Target).await;
    let caps = caps::probe(&mut tgt, "target").await.expect("probe target");
    let dialect = if env.is_oceanbase() {
        Dialect::Oceanbase
    } else {
        Dialect::Mariadb
    };
    let ctx = TargetContext {
        version: caps.rules_version(dialect),
        caps: Some(caps),
        ..TargetContext::default()
    };
    translate_for(
        &info,
        dialect,
        tgt_db,
        tgt_table,
        &TranslateOptions::default(),
        &ctx,
    )
    .unwrap_or_else(|p| panic!("translating {src_db}.{table}: {p:?}"))
}

pub async fn table_info(env: &TestEnv, db: &str, table: &str) -> TableInfo {
    let mut src = env
        .endpoint(Side::Source, false)
        .connect()
        .await
        .expect("source connection");
    read_table(&mut src, db, table)
        .await
        .expect("read table")
        .expect("table exists")
}

pub fn options(method: WriteMethod) -> CopyOptions {
    CopyOptions {
        method,
        allow_invalid_dates: true,
        ..CopyOptions::default()
    }
}

/// Copy one chunk over fresh migration-user connections.
pub async fn copy(
    env: &TestEnv,
    table: &TableInfo,
    target: (&str, &str),
    chunk: &ChunkRecord,
    filter: Option<&str>,
    opts: &CopyOptions,
) -> Result<CopyStats, FerryError> {
    let mut src = env.endpoint(Side::Source, false).connect().await?;
    let mut dst = env.endpoint(Side::Target, false).connect().await?;
    // As the copy stage does from the task's recorded capabilities.
    let opts = &CopyOptions {
        oceanbase: env.is_oceanbase(),
        ..opts.clone()
    };
    let copied = copy_chunk(
        &mut src,
        &mut dst,
        table,
        target,
        chunk,
        filter,
        opts,
        &RateLimiter::default(),
    )
    .await;
    // Close both connections before the caller goes on: a chunk that failed
    // mid-read leaves its source snapshot transaction open, and a dropped
    // connection is only closed in the background, so the test's next DDL
    // (DROP DATABASE) could wait on that transaction's metadata lock.
    for conn in [src, dst] {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn.disconnect()).await;
    }
    copied
}

/// Every row through the binary protocol (exact FLOAT/DOUBLE), ordered by `order`.
pub async fn binary_rows(conn: &mut Conn, db: &str, table: &str, order: &str) -> Vec<Vec<Value>> {
    let sql = format!("SELECT * FROM {} ORDER BY {order}", qualified(db, table));
    let rows: Vec<Row> = conn
        .exec(sql.as_str(), ())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|r| r.unwrap()).collect()
}

/// Rows of an arbitrary query over the text protocol.
pub async fn text_rows(conn: &mut Conn, sql: &str) -> Vec<Vec<Value>> {
    let rows: Vec<Row> = conn
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|r| r.unwrap()).collect()
}

/// Assert equal row lists, naming the first differing row and column.
pub fn assert_rows_eq(what: &str, a: &[Vec<Value>], b: &[Vec<Value>], columns: &[String]) {
    rows_match(what, a, b, columns, |u, v| u == v)
}

/// [`assert_rows_eq`] for the test's target: byte for byte on MariaDB; on
/// OceanBase a JSON document compares as JSON ([`ferry_testkit::same_value`]),
/// since OceanBase stores JSON binary and prints it its own way (`{"a": 1}`,
/// `-3e-7` as `-0.0000003`): the same document, not a lost value.
pub fn assert_rows_match(
    env: &TestEnv,
    what: &str,
    a: &[Vec<Value>],
    b: &[Vec<Value>],
    columns: &[String],
) {
    if env.is_oceanbase() {
        rows_match(what, a, b, columns, same_value)
    } else {
        assert_rows_eq(what, a, b, columns)
    }
}

fn rows_match(
    what: &str,
    a: &[Vec<Value>],
    b: &[Vec<Value>],
    columns: &[String],
    same: impl Fn(&Value, &Value) -> bool,
) {
    assert_eq!(a.len(), b.len(), "{what}: row counts differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        for (j, (u, v)) in x.iter().zip(y).enumerate() {
            let name = columns.get(j).map(String::as_str).unwrap_or("?");
            assert!(
                same(u, v),
                "{what}: row {i} column {name} differs: source {} target {}",
                show(u),
                show(v)
            );
        }
        assert_eq!(
            x.len(),
            y.len(),
            "{what}: row {i} has a different number of columns"
        );
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Bytes(b) if b.len() > 64 => format!("{} bytes starting {:?}", b.len(), &b[..32]),
        other => format!("{other:?}"),
    }
}

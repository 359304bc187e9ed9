//! The chunk planner: a property test of the range predicates evaluated in
//! Rust (every key in exactly one chunk, chunks ordered and contiguous), and
//! plans of real tables on the test source checked by the server itself.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use ferry_core::model::{ChunkRecord, KeyValue};
use ferry_mysql::planner::{
    chunks_from_boundaries, dense_int_boundaries, key_param, plan_chunks, range_predicate,
    MAX_CHUNK_BYTES,
};
use ferry_mysql::qualified;
use ferry_mysql::schema::{read_table, TableInfo};
use ferry_testkit::{drop_db, env, exec, recreate_db, unique_name, Side};
use mysql_async::prelude::*;
use mysql_async::{Conn, Value};
use proptest::prelude::*;

// ---------------------------------------------------------------- a tiny evaluator of the predicates

/// Evaluates the fragments `range_predicate` writes: `(`, `)`, AND, OR,
/// `` `col` OP ? `` and `1=1`, over one row's key values.
struct Eval<'a> {
    toks: Vec<String>,
    pos: usize,
    params: &'a [Value],
    next_param: usize,
    cols: &'a [String],
    row: &'a [Value],
}

fn lex(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let c: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            ' ' => i += 1,
            '(' | ')' | '?' => {
                out.push(c[i].to_string());
                i += 1;
            }
            '`' => {
                let mut j = i + 1;
                let mut name = String::new();
                while j < c.len() {
                    if c[j] == '`' && c.get(j + 1) == Some(&'`') {
                        name.push('`');
                        j += 2;
                    } else if c[j] == '`' {
                        break;
                    } else {
                        name.push(c[j]);
                        j += 1;
                    }
                }
                out.push(format!("`{name}"));
                i = j + 1;
            }
            '<' | '>' | '=' => {
                let mut op = c[i].to_string();
                if c.get(i + 1) == Some(&'=') {
                    op.push('=');
                    i += 1;
                }
                out.push(op);
                i += 1;
            }
            _ => {
                let start = i;
                while i < c.len() && !" ()?`<>=".contains(c[i]) {
                    i += 1;
                }
                out.push(c[start..i].iter().collect());
            }
        }
    }
    out
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::UInt(x), Value::UInt(y)) => x.cmp(y),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        _ => panic!("cannot compare {a:?} with {b:?}"),
    }
}

impl Eval<'_> {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(String::as_str)
    }
    fn take(&mut self) -> String {
        self.pos += 1;
        self.toks[self.pos - 1].clone()
    }
    fn expr(&mut self) -> bool {
        let mut v = self.term();
        while self.peek() == Some("OR") {
            self.take();
            let r = self.term();
            v = v || r;
        }
        v
    }
    fn term(&mut self) -> bool {
        let mut v = self.factor();
        while self.peek() == Some("AND") {
            self.take();
            let r = self.factor();
            v = v && r;
        }
        v
    }
    fn factor(&mut self) -> bool {
        let t = self.take();
        if t == "(" {
            let v = self.expr();
            assert_eq!(self.take(), ")");
            return v;
        }
        if t == "1" {
            assert_eq!(
                (self.take(), self.take()),
                ("=".to_string(), "1".to_string())
            );
            return true;
        }
        let col = t
            .strip_prefix('`')
            .unwrap_or_else(|| panic!("column expected, got {t}"));
        let i = self
            .cols
            .iter()
            .position(|c| c == col)
            .unwrap_or_else(|| panic!("unknown column {col}"));
        let op = self.take();
        assert_eq!(self.take(), "?");
        let param = &self.params[self.next_param];
        self.next_param += 1;
        let o = cmp_values(&self.row[i], param);
        match op.as_str() {
            ">" => o == Ordering::Greater,
            ">=" => o != Ordering::Less,
            "=" => o == Ordering::Equal,
            "<" => o == Ordering::Less,
            "<=" => o != Ordering::Greater,
            _ => panic!("operator {op}"),
        }
    }
}

fn holds(cols: &[String], chunk: &ChunkRecord, key: &[KeyValue]) -> bool {
    let (sql, params) = range_predicate(cols, chunk.lower.as_deref(), chunk.upper.as_deref());
    let row: Vec<Value> = key.iter().map(key_param).collect();
    let mut e = Eval {
        toks: lex(&sql),
        pos: 0,
        params: &params,
        next_param: 0,
        cols,
        row: &row,
    };
    let v = e.expr();
    assert_eq!(e.pos, e.toks.len(), "trailing tokens in {sql}");
    assert_eq!(e.next_param, params.len(), "unused parameters in {sql}");
    v
}

/// What `plan_chunks` does on the server: every `step`-th key starts a chunk.
fn walk(sorted: &[Vec<KeyValue>], step: usize) -> Vec<Vec<KeyValue>> {
    sorted.iter().skip(step).step_by(step).cloned().collect()
}

fn check_cover(
    cols: &[String],
    keys: &BTreeSet<Vec<KeyValue>>,
    chunks: &[ChunkRecord],
) -> Result<(), TestCaseError> {
    prop_assert!(chunks.first().is_some_and(|c| c.lower.is_none()));
    prop_assert!(chunks.last().is_some_and(|c| c.upper.is_none()));
    for w in chunks.windows(2) {
        prop_assert_eq!(&w[0].upper, &w[1].lower, "chunks are contiguous");
        prop_assert!(w[0].chunk_id < w[1].chunk_id, "chunk ids sort in key order");
    }
    let mut last_chunk = 0;
    for k in keys {
        let hits: Vec<usize> = (0..chunks.len())
            .filter(|&i| holds(cols, &chunks[i], k))
            .collect();
        prop_assert_eq!(hits.len(), 1, "key {:?} is in chunks {:?}", k, hits);
        prop_assert!(hits[0] >= last_chunk, "chunks are ordered like the keys");
        last_chunk = hits[0];
    }
    Ok(())
}

fn ints(v: &[i64]) -> Vec<KeyValue> {
    v.iter().map(|i| KeyValue::Int(*i)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn int_keys_fall_in_exactly_one_chunk(keys in prop::collection::btree_set(any::<i64>(), 0..200), step in 1usize..40) {
        let keys: BTreeSet<Vec<KeyValue>> = keys.iter().map(|k| ints(&[*k])).collect();
        let sorted: Vec<_> = keys.iter().cloned().collect();
        let chunks = chunks_from_boundaries("d", "t", 7, walk(&sorted, step));
        check_cover(&["id".to_string()], &keys, &chunks)?;
    }

    /// Dense integer planning: boundaries strictly inside the key span, in
    /// order, spaced so each chunk holds about `step` rows at the estimated
    /// density, and sparse spans refused (the walk plans those).
    #[test]
    fn dense_int_boundaries_split_the_span(
        min in -1_000_000i128..1_000_000,
        span in 1i128..200_000,
        rows in 1u64..300_000,
        step in 1u64..50_000,
    ) {
        let max = min + span - 1;
        match dense_int_boundaries(min, max, rows, step) {
            None => prop_assert!(span as u128 > 2 * rows as u128),
            Some(b) => {
                prop_assert!(span as u128 <= 2 * rows as u128);
                prop_assert!(b.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(b.iter().all(|&x| x > min && x <= max));
                let width = (span as u128 * step as u128).div_ceil(rows as u128).max(1) as i128;
                prop_assert_eq!(b.len() as i128, (span - 1) / width);
                let keys: BTreeSet<Vec<KeyValue>> = (0..span.min(300))
                    .map(|i| ints(&[(min + i * span / span.min(300)) as i64]))
                    .collect();
                let bounds = b.iter().map(|&x| ints(&[x as i64])).collect();
                check_cover(&["id".to_string()], &keys, &chunks_from_boundaries("d", "t", 0, bounds))?;
            }
        }
    }

    #[test]
    fn composite_keys_fall_in_exactly_one_chunk(
        keys in prop::collection::btree_set((-3i64..4, "[a-z]{0,3}"), 0..150),
        step in 1usize..30,
    ) {
        let keys: BTreeSet<Vec<KeyValue>> = keys.into_iter().map(|(a, b)| vec![KeyValue::Int(a), KeyValue::Text(b)]).collect();
        let sorted: Vec<_> = keys.iter().cloned().collect();
        let chunks = chunks_from_boundaries("d", "t", 0, walk(&sorted, step));
        check_cover(&["a".to_string(), "b`x".to_string()], &keys, &chunks)?;
    }

    #[test]
    fn string_keys_fall_in_exactly_one_chunk(keys in prop::collection::btree_set("[a-z0-9]{0,6}", 0..150), step in 1usize..30) {
        let keys: BTreeSet<Vec<KeyValue>> = keys.into_iter().map(|s| vec![KeyValue::Text(s)]).collect();
        let sorted: Vec<_> = keys.iter().cloned().collect();
        let chunks = chunks_from_boundaries("d", "t", 0, walk(&sorted, step));
        check_cover(&["k".to_string()], &keys, &chunks)?;
    }

    /// Boundaries need not be keys (rows come and go after planning).
    #[test]
    fn any_sorted_boundaries_cover_three_column_keys(
        keys in prop::collection::btree_set((0i64..3, 0i64..3, 0i64..5), 0..60),
        bounds in prop::collection::btree_set((0i64..3, 0i64..3, 0i64..5), 0..10),
    ) {
        let keys: BTreeSet<Vec<KeyValue>> = keys.into_iter().map(|(a, b, c)| ints(&[a, b, c])).collect();
        let bounds: Vec<Vec<KeyValue>> = bounds.into_iter().map(|(a, b, c)| ints(&[a, b, c])).collect();
        let chunks = chunks_from_boundaries("d", "t", 0, bounds);
        check_cover(&["a".to_string(), "b".to_string(), "c".to_string()], &keys, &chunks)?;
    }
}

// ---------------------------------------------------------------- real tables

/// Every row of `table` is in exactly one chunk, by the server's own comparison:
/// `SUM over chunks of (predicate)` is 1 for every row. Returns the rows per chunk.
async fn assert_exact_cover(conn: &mut Conn, t: &TableInfo, chunks: &[ChunkRecord]) -> Vec<u64> {
    let key = t.key.clone().unwrap();
    let from = qualified(&t.db, &t.name);
    let mut per_chunk = Vec::new();
    let mut sum_parts = Vec::new();
    let mut all_params = Vec::new();
    for c in chunks {
        let (pred, params) = range_predicate(&key, c.lower.as_deref(), c.upper.as_deref());
        let n: u64 = conn
            .exec_first(
                format!("SELECT COUNT(*) FROM {from} WHERE {pred}"),
                params.clone(),
            )
            .await
            .unwrap()
            .unwrap();
        per_chunk.push(n);
        sum_parts.push(format!("({pred})"));
        all_params.extend(params);
    }
    let total: u64 = conn
        .query_first(format!("SELECT COUNT(*) FROM {from}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        per_chunk.iter().sum::<u64>(),
        total,
        "{}: rows per chunk {per_chunk:?}",
        t.full_name()
    );
    let not_once: u64 = conn
        .exec_first(
            format!(
                "SELECT COUNT(*) FROM {from} WHERE {} <> 1",
                sum_parts.join(" + ")
            ),
            all_params,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        not_once,
        0,
        "{}: rows not in exactly one chunk",
        t.full_name()
    );
    per_chunk
}

async fn setup(prefix: &str) -> (String, Conn) {
    let e = env();
    let mut admin = e.admin(Side::Source).await;
    let db = unique_name(prefix);
    recreate_db(&mut admin, &db).await;
    // The SEQUENCE engine's seq_1_to_N tables live in the current database.
    exec(
        &mut admin,
        &format!("USE {}", ferry_mysql::quote_ident(&db)),
    )
    .await;
    (db, admin)
}

/// The source as the migration user sees it.
async fn migration_conn() -> Conn {
    env().endpoint(Side::Source, false).connect().await.unwrap()
}

#[tokio::test]
async fn ten_thousand_int_rows_in_chunks_of_700() {
    let (db, mut admin) = setup("plan_int").await;
    exec(
        &mut admin,
        &format!(
            "CREATE TABLE {} (id BIGINT PRIMARY KEY, v VARCHAR(20))",
            qualified(&db, "t")
        ),
    )
    .await;
    // Gaps and negative keys: id = 3*seq - 15000.
    exec(
        &mut admin,
        &format!("INSERT INTO {} SELECT 3 * seq - 15000, CONCAT('v', seq) FROM (SELECT CAST(seq AS SIGNED) AS seq FROM seq_1_to_10000) s", qualified(&db, "t")),
    )
    .await;
    let mut conn = migration_conn().await;
    let t = read_table(&mut conn, &db, "t").await.unwrap().unwrap();
    let chunks = plan_chunks(&mut conn, &t, 700, 3).await.unwrap();
    assert_eq!(chunks.len(), 15, "10000 rows / 700 = 14 full chunks + 1");
    assert_eq!(chunks[0].chunk_id, "0003-000000");
    assert_eq!(chunks[0].upper, Some(vec![KeyValue::Int(3 * 701 - 15000)]));
    let rows = assert_exact_cover(&mut conn, &t, &chunks).await;
    assert!(
        rows[..14].iter().all(|&n| n == 700) && rows[14] == 200,
        "{rows:?}"
    );

    // Rows written after planning still fall in exactly one chunk.
    exec(
        &mut admin,
        &format!(
            "INSERT INTO {} VALUES (-99999, 'low'), (99999, 'high'), (1, 'gap')",
            qualified(&db, "t")
        ),
    )
    .await;
    assert_exact_cover(&mut conn, &t, &chunks).await;
    drop_db(&mut admin, &db).await;
}

/// A dense integer key is planned from MIN and MAX (no walk): the chunks still
/// cover every row exactly once, and their sizes follow the density.
#[tokio::test]
async fn dense_int_keys_are_planned_from_min_and_max() {
    let (db, mut admin) = setup("plan_dense").await;
    let q = qualified(&db, "t");
    exec(
        &mut admin,
        &format!("CREATE TABLE {q} (id INT UNSIGNED PRIMARY KEY, v INT)"),
    )
    .await;
    // 20,000 rows over ids 1..=24,000 (every sixth id missing): dense.
    exec(
        &mut admin,
        &format!("INSERT INTO {q} SELECT seq, seq FROM seq_1_to_24000 WHERE seq % 6 <> 0"),
    )
    .await;
    let mut conn = migration_conn().await;
    let mut t = read_table(&mut conn, &db, "t").await.unwrap().unwrap();
    t.rows_estimate = 20_000; // InnoDB's estimate is approximate; fix it for exact sizes
    let chunks = plan_chunks(&mut conn, &t, 2_000, 0).await.unwrap();
    // width = 24,000 * 2,000 / 20,000 = 2,400 ids: boundaries 2401, 4801, ..., 21601.
    assert_eq!(chunks.len(), 10, "{chunks:?}");
    assert_eq!(chunks[1].lower, Some(vec![KeyValue::Uint(2401)]));
    let rows = assert_exact_cover(&mut conn, &t, &chunks).await;
    assert!(rows.iter().all(|&n| n == 2_000), "{rows:?}");
    // An estimate far off makes chunks of another size, never a missed row.
    t.rows_estimate = 200_000;
    let chunks = plan_chunks(&mut conn, &t, 2_000, 0).await.unwrap();
    assert_eq!(chunks.len(), 100);
    assert_eq!(
        assert_exact_cover(&mut conn, &t, &chunks)
            .await
            .iter()
            .sum::<u64>(),
        20_000
    );
    drop_db(&mut admin, &db).await;
}

#[tokio::test]
async fn every_key_kind_is_covered_exactly_once() {
    let (db, mut admin) = setup("plan_kinds").await;
    let tables = [
        (
            "comp",
            "a INT NOT NULL, b VARCHAR(20) NOT NULL, PRIMARY KEY (a, b)",
            "seq % 7, CONCAT('k', seq)",
        ),
        (
            "ci_text",
            "k VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci PRIMARY KEY",
            "CONCAT(IF(seq % 2, 'Ab', 'aC'), IF(seq % 3, 'é', 'Z'), seq)",
        ),
        ("bin", "k VARBINARY(16) PRIMARY KEY", "UNHEX(MD5(seq))"),
        (
            "dt",
            "k DATETIME(6) PRIMARY KEY",
            "'2024-01-01' + INTERVAL seq * 1234567 MICROSECOND",
        ),
        ("dec", "k DECIMAL(20,6) PRIMARY KEY", "seq / 7 - 100"),
        (
            "ubig",
            "k BIGINT UNSIGNED PRIMARY KEY",
            "18446744073709551615 - CAST(seq AS UNSIGNED) * 1000",
        ),
        (
            "uniq",
            "x INT NULL, k INT NOT NULL, UNIQUE KEY (x), UNIQUE KEY (k)",
            // Sparse (span 3x the rows), so the index walk plans it, not the dense shortcut.
            "seq, -3 * seq",
        ),
        (
            "tm",
            "k TIME(3) PRIMARY KEY",
            "SEC_TO_TIME(seq * 37 - 20000)",
        ),
    ];
    let mut conn = migration_conn().await;
    for (name, cols, values) in tables {
        let q = qualified(&db, name);
        exec(&mut admin, &format!("CREATE TABLE {q} ({cols})")).await;
        exec(
            &mut admin,
            &format!("INSERT INTO {q} SELECT {values} FROM (SELECT CAST(seq AS SIGNED) AS seq FROM seq_1_to_3000) s"),
        )
        .await;
        let t = read_table(&mut conn, &db, name).await.unwrap().unwrap();
        let chunks = plan_chunks(&mut conn, &t, 250, 0)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(chunks.len(), 12, "{name}: 3000 rows in chunks of 250");
        let rows = assert_exact_cover(&mut conn, &t, &chunks).await;
        assert!(rows.iter().all(|&n| n == 250), "{name}: {rows:?}");
    }
    drop_db(&mut admin, &db).await;
}

#[tokio::test]
async fn wide_rows_and_unordered_keys() {
    let (db, mut admin) = setup("plan_wide").await;
    let q = qualified(&db, "t");
    exec(
        &mut admin,
        &format!("CREATE TABLE {q} (id INT PRIMARY KEY)"),
    )
    .await;
    exec(
        &mut admin,
        // Sparse keys: the walk plans by real rows.
        &format!("INSERT INTO {q} SELECT 3 * seq FROM seq_1_to_1000"),
    )
    .await;
    let mut conn = migration_conn().await;
    let mut t = read_table(&mut conn, &db, "t").await.unwrap().unwrap();
    t.avg_row_bytes = MAX_CHUNK_BYTES / 100;
    let chunks = plan_chunks(&mut conn, &t, 700, 0).await.unwrap();
    assert_eq!(
        chunks.len(),
        10,
        "rows of 1/100 of the chunk byte budget: 100 rows per chunk"
    );
    assert_exact_cover(&mut conn, &t, &chunks).await;

    let e = qualified(&db, "e");
    exec(
        &mut admin,
        &format!("CREATE TABLE {e} (k ENUM('b','a','c') PRIMARY KEY)"),
    )
    .await;
    exec(
        &mut admin,
        &format!("INSERT INTO {e} VALUES ('a'), ('b'), ('c')"),
    )
    .await;
    let t = read_table(&mut conn, &db, "e").await.unwrap().unwrap();
    let chunks = plan_chunks(&mut conn, &t, 1, 0).await.unwrap();
    assert_eq!(
        chunks.len(),
        1,
        "ENUM compares as text but sorts by ordinal: one chunk"
    );
    assert_exact_cover(&mut conn, &t, &chunks).await;

    let empty = qualified(&db, "empty");
    exec(
        &mut admin,
        &format!("CREATE TABLE {empty} (id INT PRIMARY KEY)"),
    )
    .await;
    let t = read_table(&mut conn, &db, "empty").await.unwrap().unwrap();
    assert_eq!(plan_chunks(&mut conn, &t, 10, 0).await.unwrap().len(), 1);

    let nokey = qualified(&db, "nokey");
    exec(&mut admin, &format!("CREATE TABLE {nokey} (a INT)")).await;
    let t = read_table(&mut conn, &db, "nokey").await.unwrap().unwrap();
    let err = plan_chunks(&mut conn, &t, 10, 0).await.unwrap_err();
    assert_eq!(err.name(), "Ferry.SchemaIncompatible");
    assert!(
        err.message().contains("ADD COLUMN") && err.message().contains("nokey"),
        "{err}"
    );
    drop_db(&mut admin, &db).await;
}

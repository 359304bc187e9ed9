//! Test helpers: the servers `scripts/testenv up` started, read from the
//! environment (`source <(scripts/testenv env)`). A test that cannot find them
//! fails with instructions; it never skips.

pub mod store_conformance;

use std::future::Future;
use std::time::{Duration, Instant};

use ferry_core::secret::{DbSecret, Redacted};
use ferry_mysql::{qualified, quote_ident, Endpoint};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

/// The test servers and users.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub host: String,
    pub source_port: u16,
    pub target_port: u16,
    pub admin_user: String,
    pub admin_password: String,
    pub source_user: String,
    pub source_password: String,
    pub target_user: String,
    pub target_password: String,
    pub moto_port: Option<u16>,
    /// The OceanBase (seekdb) server `scripts/testenv up` starts; its users are
    /// the admin and target users, with the same passwords.
    pub ob_port: u16,
    /// The target the tests write to: `mariadb` (the MariaDB target) or
    /// `oceanbase` (the OceanBase server), as a task file's `target.dialect`.
    pub target_dialect: &'static str,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "environment variable {name} is not set: the tests need the databases started by \
             `scripts/testenv up`; run the suite with ./scripts/test, or `source <(scripts/testenv env)` first"
        )
    })
}

fn port(name: &str) -> u16 {
    var(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a port number"))
}

/// The test environment. Panics with instructions when it is missing.
pub fn env() -> TestEnv {
    TestEnv {
        host: std::env::var("FERRY_TEST_SOURCE_HOST").unwrap_or_else(|_| "127.0.0.1".into()),
        source_port: port("FERRY_TEST_SOURCE_PORT"),
        target_port: port("FERRY_TEST_TARGET_PORT"),
        admin_user: var("FERRY_TEST_ADMIN_USER"),
        admin_password: var("FERRY_TEST_ADMIN_PASSWORD"),
        source_user: var("FERRY_TEST_SOURCE_USER"),
        source_password: var("FERRY_TEST_SOURCE_PASSWORD"),
        target_user: var("FERRY_TEST_TARGET_USER"),
        target_password: var("FERRY_TEST_TARGET_PASSWORD"),
        moto_port: std::env::var("FERRY_TEST_MOTO_PORT")
            .ok()
            .and_then(|p| p.parse().ok()),
        ob_port: port("FERRY_TEST_OB_PORT"),
        target_dialect: "mariadb",
    }
}

/// The two targets every end-to-end path runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Mariadb,
    Oceanbase,
}

/// The test environment with `target` as the target side.
pub fn env_for(target: Target) -> TestEnv {
    let e = env();
    match target {
        Target::Mariadb => e,
        Target::Oceanbase => e.oceanbase(),
    }
}

/// Longest an end-to-end test may run ([`within_deadline`]); the environment
/// variable `FERRY_TEST_DEADLINE_SECS` overrides it.
pub const TEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(480);

/// Run a test body under [`TEST_DEADLINE`]: a test that hangs (a lock wait, a
/// server that stopped answering) fails, naming itself, instead of holding the
/// whole test binary (and CI) until an outer timeout kills it without showing
/// why the other tests of the binary failed.
pub async fn within_deadline<F: std::future::Future<Output = ()>>(name: &str, body: F) {
    let limit = std::env::var("FERRY_TEST_DEADLINE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(TEST_DEADLINE, std::time::Duration::from_secs);
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!(
            "{name} did not finish within {} s (FERRY_TEST_DEADLINE_SECS)",
            limit.as_secs()
        );
    }
}

/// Two tests from one async body taking the [`TestEnv`]: `<name>::mariadb`
/// against the MariaDB target and `<name>::oceanbase` against the OceanBase one,
/// each under [`TEST_DEADLINE`].
#[macro_export]
macro_rules! on_both_targets {
    ($name:ident, $body:path) => {
        mod $name {
            // The body's future is boxed: a whole migration's state machine is
            // too deep for the test thread's stack in a debug build.
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn mariadb() {
                $crate::within_deadline(
                    concat!(stringify!($name), "::mariadb"),
                    Box::pin($body($crate::env_for($crate::Target::Mariadb))),
                )
                .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn oceanbase() {
                $crate::within_deadline(
                    concat!(stringify!($name), "::oceanbase"),
                    Box::pin($body($crate::env_for($crate::Target::Oceanbase))),
                )
                .await
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl TestEnv {
    /// This environment with the OceanBase server as the target.
    pub fn oceanbase(&self) -> TestEnv {
        TestEnv {
            target_port: self.ob_port,
            target_dialect: "oceanbase",
            ..self.clone()
        }
    }

    pub fn is_oceanbase(&self) -> bool {
        self.target_dialect == "oceanbase"
    }

    pub fn port(&self, side: Side) -> u16 {
        match side {
            Side::Source => self.source_port,
            Side::Target => self.target_port,
        }
    }

    /// A secret for one side: the least-privilege migration user, or the admin.
    pub fn secret(&self, side: Side, admin: bool) -> DbSecret {
        let (user, pw) = match (side, admin) {
            (_, true) => (&self.admin_user, &self.admin_password),
            (Side::Source, false) => (&self.source_user, &self.source_password),
            (Side::Target, false) => (&self.target_user, &self.target_password),
        };
        DbSecret {
            engine: "mariadb".into(),
            host: self.host.clone(),
            port: self.port(side),
            username: user.clone(),
            password: Redacted::new(pw.clone()),
            dbname: None,
            tls: None,
        }
    }

    /// The secret as the JSON a secrets file or Secrets Manager holds.
    pub fn secret_json(&self, side: Side, admin: bool) -> serde_json::Value {
        let s = self.secret(side, admin);
        serde_json::json!({
            "engine": "mariadb", "host": s.host, "port": s.port,
            "username": s.username, "password": s.password.expose(),
        })
    }

    pub fn endpoint(&self, side: Side, admin: bool) -> Endpoint {
        let role = match side {
            Side::Source => "source",
            Side::Target => "target",
        };
        Endpoint::new(role, &format!("test-{role}"), self.secret(side, admin))
            .oceanbase(side == Side::Target && self.is_oceanbase())
    }

    /// An admin connection to one side, for test setup and assertions.
    pub async fn admin(&self, side: Side) -> Conn {
        self.endpoint(side, true)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("admin connection: {e}"))
    }
}

/// A fresh name for a test database: `<prefix>_<random>`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

/// Run statements, panicking with the statement on error.
pub async fn exec(conn: &mut Conn, sql: &str) {
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// (Re)create a database.
pub async fn recreate_db(conn: &mut Conn, db: &str) {
    exec(
        conn,
        &format!("DROP DATABASE IF EXISTS {}", quote_ident(db)),
    )
    .await;
    exec(
        conn,
        &format!("CREATE DATABASE {} CHARACTER SET utf8mb4", quote_ident(db)),
    )
    .await;
}

pub async fn drop_db(conn: &mut Conn, db: &str) {
    exec(
        conn,
        &format!("DROP DATABASE IF EXISTS {}", quote_ident(db)),
    )
    .await;
}

/// Poll `check` until it returns true, failing after `timeout` with `what`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Every row of a table, every column, ordered by the primary key (or all columns).
pub async fn rows(conn: &mut Conn, db: &str, table: &str) -> Vec<Vec<Value>> {
    let key: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (db, table),
        )
        .await
        .unwrap_or_else(|e| panic!("reading key of {db}.{table}: {e}"));
    let order = if key.is_empty() {
        "1".to_string()
    } else {
        key.iter()
            .map(|k| quote_ident(k))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!("SELECT * FROM {} ORDER BY {order}", qualified(db, table));
    let rows: Vec<Row> = conn
        .query(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|r| r.unwrap()).collect()
}

/// [`rows`], or None when the table does not exist (yet).
pub async fn try_rows(conn: &mut Conn, db: &str, table: &str) -> Option<Vec<Vec<Value>>> {
    let n: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .unwrap_or_else(|e| panic!("looking for {db}.{table}: {e}"));
    if n.unwrap_or(0) == 0 {
        return None;
    }
    Some(rows(conn, db, table).await)
}

/// Assert two tables hold the same rows, every column compared, with a useful message.
pub async fn assert_same_rows(
    src: &mut Conn,
    src_table: (&str, &str),
    tgt: &mut Conn,
    tgt_table: (&str, &str),
) {
    let a = rows(src, src_table.0, src_table.1).await;
    let b = rows(tgt, tgt_table.0, tgt_table.1).await;
    assert_eq!(
        a.len(),
        b.len(),
        "row count differs: source {}.{} has {}, target {}.{} has {}",
        src_table.0,
        src_table.1,
        a.len(),
        tgt_table.0,
        tgt_table.1,
        b.len()
    );
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        let same = x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q));
        assert!(
            same,
            "row {i} of {}.{} differs from the target's:\nsource {x:?}\ntarget {y:?}",
            src_table.0, src_table.1
        );
    }
}

/// Equal values; JSON documents (objects and arrays) compare as JSON, since
/// OceanBase and MySQL print a document their own way (`{"a": 1}`, sorted
/// keys, `1.5e10` as `15000000000`) where MariaDB keeps the text it was given.
pub fn same_value(p: &Value, q: &Value) -> bool {
    if p == q {
        return true;
    }
    let (Value::Bytes(a), Value::Bytes(b)) = (p, q) else {
        return false;
    };
    // Only documents: a scalar column's text is never compared as JSON.
    let doc = |s: &[u8]| {
        std::str::from_utf8(s).is_ok_and(|t| {
            let t = t.trim_start();
            t.starts_with('{') || t.starts_with('[')
        })
    };
    // The product's JSON equality (what verify counts as the same value).
    doc(a) && doc(b) && ferry_mysql::verify::json_equal(a, b)
}

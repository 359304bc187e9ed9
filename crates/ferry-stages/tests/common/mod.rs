//! Setup shared by the stage integration tests: a temporary directory with a
//! 0600 secrets file for the migration users (`test-source`, `test-target`)
//! and a SQLite task store, removed when dropped; task files that migrate one
//! source database into one renamed target database; and stage calls with a
//! deadline. Each test binary uses a subset, hence `allow(dead_code)`.
#![allow(dead_code)]

use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_core::model::{ChunkRecord, TablePhase, TableRecord};
use ferry_core::task::TaskSpec;
use ferry_core::FerryError;
use ferry_local::{FileSecrets, SqliteStore};
use ferry_mysql::planner::plan_chunks;
use ferry_mysql::quote_ident;
use ferry_mysql::schema::read_table;
use ferry_stages::{invoke, StageEnv};
use ferry_testkit::{drop_db, exec, recreate_db, unique_name, Side, TestEnv};
use serde_json::{json, Value};

pub type Env = StageEnv<SqliteStore, FileSecrets>;

/// A fresh directory holding `secrets.json` and the task store (`state/`).
pub struct StageDir {
    path: PathBuf,
}

impl StageDir {
    /// A new directory named after `prefix` with the migration users' secrets.
    pub fn new(te: &TestEnv, prefix: &str) -> StageDir {
        let path = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&path).unwrap();
        let secrets = path.join("secrets.json");
        let body = json!({
            "test-source": te.secret_json(Side::Source, false),
            "test-target": te.secret_json(Side::Target, false),
        });
        std::fs::write(&secrets, body.to_string()).unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        StageDir { path }
    }

    /// A stage environment over this directory's store and secrets.
    pub fn env(&self, worker: &str) -> Env {
        stage_env(&self.path, worker)
    }
}

impl Deref for StageDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for StageDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A stage environment over the store and secrets of a [`StageDir`] at `dir`.
pub fn stage_env(dir: &Path, worker: &str) -> Env {
    let store = SqliteStore::open_dir(&dir.join("state")).unwrap();
    StageEnv::new(
        store,
        FileSecrets::new(Some(dir.join("secrets.json"))),
        worker,
    )
}

/// `secs` seconds from now.
pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// A task file migrating `src_db` into `tgt_db` on the test's target (its
/// dialect from `te`: MariaDB or OceanBase); the caller adds `types` and
/// `options` when it needs them.
pub fn task_json(te: &TestEnv, task_id: &str, src_db: &str, tgt_db: &str) -> Value {
    json!({
        "task_id": task_id,
        "source": {"secret": "test-source"},
        "target": {"secret": "test-target", "dialect": te.target_dialect},
        "objects": {"include": [format!("{src_db}.*")], "rename": {src_db: tgt_db}},
    })
}

/// Creates the task described by `task` in the store of `env`.
pub async fn create_task(env: &Env, task: &Value) -> TaskSpec {
    let spec = TaskSpec::from_json(&task.to_string()).unwrap();
    env.repo.create_task(&spec).await.unwrap();
    spec
}

/// Calls stage `name` with a 30 s deadline.
pub async fn try_stage(env: &Env, name: &str, input: Value) -> Result<Value, FerryError> {
    invoke(env, name, input, deadline(30)).await
}

/// Calls stage `name` with a 30 s deadline; panics naming the stage on error.
pub async fn stage(env: &Env, name: &str, input: Value) -> Value {
    try_stage(env, name, input)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Copy-chunk calls until no chunk remains, then the copy summary.
pub async fn copy_all(env: &Env, task_id: &str) {
    loop {
        let out = stage(
            env,
            "copy-chunk",
            json!({"task_id": task_id, "worker": "0"}),
        )
        .await;
        if out["remaining"] == 0 {
            break;
        }
    }
    stage(
        env,
        "copy-chunk",
        json!({"task_id": task_id, "action": "summary"}),
    )
    .await;
}

/// Drops the test's source and target databases.
pub async fn drop_dbs(te: &TestEnv, src_db: &str, tgt_db: &str) {
    drop_db(&mut te.admin(Side::Source).await, src_db).await;
    drop_db(&mut te.admin(Side::Target).await, tgt_db).await;
}

/// A fresh database named after `prefix` on `side`, with the statements of
/// `ddl` run in order (`{db}` in them stands for its quoted name).
pub async fn fresh_db(te: &TestEnv, side: Side, prefix: &str, ddl: &[&str]) -> String {
    let db = unique_name(prefix);
    let mut c = te.admin(side).await;
    recreate_db(&mut c, &db).await;
    for sql in ddl {
        exec(&mut c, &sql.replace("{db}", &quote_ident(&db))).await;
    }
    db
}

/// The records `plan` leaves for `src_db.table` copied to `tgt_db.table`: the
/// table (phase `Planned`, the server's key and row estimate) and its chunks
/// of `chunk_rows`, numbered as the task's table `ordinal`.
pub async fn planned_table(
    te: &TestEnv,
    (src_db, tgt_db): (&str, &str),
    table: &str,
    chunk_rows: u64,
    ordinal: usize,
) -> (TableRecord, Vec<ChunkRecord>) {
    let mut src = te.endpoint(Side::Source, false).connect().await.unwrap();
    let info = read_table(&mut src, src_db, table).await.unwrap().unwrap();
    let chunks = plan_chunks(&mut src, &info, chunk_rows, ordinal)
        .await
        .unwrap();
    let record = TableRecord {
        source_db: src_db.to_string(),
        source_table: table.to_string(),
        target_db: tgt_db.to_string(),
        target_table: table.to_string(),
        key_columns: info.key.clone().unwrap(),
        phase: TablePhase::Planned,
        rows_estimate: info.rows_estimate,
        chunks_total: chunks.len() as u64,
    };
    (record, chunks)
}

/// Stores a table record and its chunks for `task_id`.
pub async fn put_planned(
    env: &Env,
    task_id: &str,
    (table, chunks): &(TableRecord, Vec<ChunkRecord>),
) {
    env.repo.put_table(task_id, table).await.unwrap();
    env.repo.put_chunks(task_id, chunks).await.unwrap();
}

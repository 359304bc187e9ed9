//! Helpers for the root integration tests: a `ferry` binary with its own state
//! directory and secrets file, task files, source fixtures and target checks.
//!
//! Every test gets fresh database names (`unique_name`) and a fresh state
//! directory, so tests run in parallel; the state directory is created by
//! `ferry` itself, so a test can check that a refused run wrote nothing.

#![allow(dead_code)]

pub mod proxy;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry_core::model::ChunkSummary;
use ferry_core::store::Repo;
use ferry_local::SqliteStore;
use ferry_testkit::{exec, Side, TestEnv};
use mysql_async::prelude::*;
use mysql_async::Conn;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The secret names the tests' task files use.
pub const SOURCE_SECRET: &str = "test-source";
pub const TARGET_SECRET: &str = "test-target";

/// What one `ferry` invocation printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panic with everything printed unless the command succeeded.
    pub fn assert_ok(&self, what: &str) -> &Output {
        assert!(
            self.success(),
            "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panic unless the command failed and stderr contains every one of `needles`.
    pub fn assert_failed_with(&self, needles: &[&str]) -> &Output {
        assert!(
            !self.success() && self.code.is_some(),
            "expected a failure, got {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        for n in needles {
            assert!(
                self.stderr.to_lowercase().contains(&n.to_lowercase()),
                "stderr does not mention {n:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout,
                self.stderr
            );
        }
        self
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// One `ferry` setup: a state directory (not created yet), a secrets file, a place for task files.
pub struct Ferry {
    pub dir: TempDir,
    pub state_dir: PathBuf,
    pub secrets_file: PathBuf,
    pub extra_env: Vec<(String, String)>,
}

impl Ferry {
    /// A setup whose secrets file (mode 0600) holds `secrets` (name -> secret JSON).
    pub fn new(secrets: &Value) -> Ferry {
        Ferry::with_secrets_mode(secrets, 0o600)
    }

    pub fn with_secrets_mode(secrets: &Value, mode: u32) -> Ferry {
        let dir = tempfile::tempdir().expect("temp dir");
        let secrets_file = dir.path().join("secrets.json");
        std::fs::write(
            &secrets_file,
            serde_json::to_string_pretty(secrets).unwrap(),
        )
        .unwrap();
        std::fs::set_permissions(&secrets_file, std::fs::Permissions::from_mode(mode)).unwrap();
        let state_dir = dir.path().join("state");
        Ferry {
            dir,
            state_dir,
            secrets_file,
            extra_env: Vec::new(),
        }
    }

    /// The usual secrets: the least-privilege migration users of both test servers.
    pub fn standard(env: &TestEnv) -> Ferry {
        Ferry::new(&standard_secrets(env))
    }

    /// Write a task file and return its path.
    pub fn task_file(&self, name: &str, task: &Value) -> PathBuf {
        self.raw_task_file(name, &serde_json::to_string_pretty(task).unwrap())
    }

    pub fn raw_task_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `program` with this setup's state directory, secrets file and environment.
    fn configured(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("FERRY_STATE_DIR", &self.state_dir)
            .env("FERRY_SECRETS", &self.secrets_file)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("FERRY_SECRET_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.configured(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(args);
        cmd
    }

    /// Run `ferry args...` to completion (on the blocking pool).
    pub async fn run(&self, args: &[&str]) -> Output {
        collect(self.command(args)).await
    }

    /// `ferry args...` with a pseudo-terminal as stdout and stderr (util-linux `script`);
    /// everything printed ends up in `stdout`.
    pub async fn run_in_terminal(&self, args: &[&str]) -> Output {
        let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_ferry"))
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let mut cmd = self.configured("script");
        cmd.args(["-qefc", &quoted.join(" "), "/dev/null"]);
        collect(cmd).await
    }

    /// `ferry run TASK` to completion, with 10 s slices (the shortest allowed) so the state machine loops.
    pub async fn migrate(&self, task: &Path) -> Output {
        self.run(&["run", task.to_str().unwrap(), "--slice-seconds", "10"])
            .await
    }

    /// Start `ferry run TASK` in the background, output into files in the temp dir.
    pub fn spawn_run(&self, task: &Path, tag: &str) -> Child {
        let out = std::fs::File::create(self.dir.path().join(format!("{tag}.stdout"))).unwrap();
        let err = std::fs::File::create(self.dir.path().join(format!("{tag}.stderr"))).unwrap();
        self.command(&["run", task.to_str().unwrap(), "--slice-seconds", "10"])
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the ferry binary")
    }

    /// Start `ferry args...` in the background, output into files `<tag>.stdout|stderr` in the temp dir.
    pub fn spawn(&self, args: &[&str], tag: &str) -> Child {
        let out = std::fs::File::create(self.dir.path().join(format!("{tag}.stdout"))).unwrap();
        let err = std::fs::File::create(self.dir.path().join(format!("{tag}.stderr"))).unwrap();
        self.command(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the ferry binary")
    }

    pub fn spawned_output(&self, tag: &str) -> String {
        let mut s = String::new();
        for ext in ["stdout", "stderr"] {
            if let Ok(mut f) = std::fs::File::open(self.dir.path().join(format!("{tag}.{ext}"))) {
                let _ = f.read_to_string(&mut s);
            }
        }
        s
    }

    pub fn db_file(&self) -> PathBuf {
        self.state_dir.join(ferry_local::DB_FILE)
    }

    /// The task store, opened beside the running `ferry` (as a second process would).
    pub fn repo(&self) -> Option<Repo<SqliteStore>> {
        if !self.db_file().exists() {
            return None;
        }
        SqliteStore::open(&self.db_file()).ok().map(Repo::new)
    }

    pub async fn chunk_summary(&self, task_id: &str) -> Option<ChunkSummary> {
        self.repo()?.chunk_summary(task_id).await.ok()
    }

    /// Whether the task has recorded the end of its full copy (a verify refuses before it).
    pub async fn copy_finished(&self, task_id: &str) -> bool {
        match self.repo() {
            Some(repo) => repo
                .get_task(task_id)
                .await
                .ok()
                .flatten()
                .is_some_and(|t| t.copy_finished.is_some()),
            None => false,
        }
    }

    /// `ferry status TASK_ID --json`, parsed.
    pub async fn status_json(&self, task_id: &str) -> Value {
        let out = self.run(&["status", task_id, "--json"]).await;
        out.assert_ok("ferry status --json");
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON: {e}\n{}", out.stdout))
    }
}

/// Run a command to completion on the blocking pool and keep what it printed.
async fn collect(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        let out = cmd.output().expect("start the command");
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("command runner thread")
}

pub fn standard_secrets(env: &TestEnv) -> Value {
    json!({
        SOURCE_SECRET: env.secret_json(Side::Source, false),
        TARGET_SECRET: env.secret_json(Side::Target, false),
    })
}

/// A task file copying `include` patterns (schema + full) to a MariaDB target.
pub fn task(task_id: &str, include: &[String], options: Value) -> Value {
    json!({
        "task_id": task_id,
        "source": {"secret": SOURCE_SECRET, "dialect": "mariadb"},
        "target": {"secret": TARGET_SECRET, "dialect": "mariadb"},
        "types": ["schema", "full"],
        "objects": {"include": include},
        "options": options,
    })
}

/// [`task`] for the target of `env` (MariaDB or OceanBase).
pub fn task_for(env: &TestEnv, task_id: &str, include: &[String], options: Value) -> Value {
    let mut t = task(task_id, include, options);
    t["target"]["dialect"] = json!(env.target_dialect);
    t
}

/// Run each statement on `side`'s admin connection.
pub async fn admin_exec(env: &TestEnv, side: Side, statements: &[String]) {
    let mut c = env.admin(side).await;
    for s in statements {
        exec(&mut c, s).await;
    }
    c.disconnect().await.ok();
}

/// Whether a database exists on the target.
pub async fn target_has_database(env: &TestEnv, db: &str) -> bool {
    let mut c = env.admin(Side::Target).await;
    let n: Option<u64> = c
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (db,),
        )
        .await
        .expect("query the target's schemata");
    c.disconnect().await.ok();
    n.unwrap_or(0) > 0
}

/// Fill `db.table` (columns `id` and `v`) with rows 1..=n in one statement.
pub async fn fill_numbered(c: &mut Conn, db: &str, table: &str, n: u64) {
    exec(c, "SET SESSION max_recursive_iterations = 10000000").await;
    exec(
        c,
        &format!(
            "INSERT INTO `{db}`.`{table}` (id, v) WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n}) \
             SELECT n, CONCAT('row-', n, '-', REPEAT('x', n % 50)) FROM s"
        ),
    )
    .await;
}

/// Compare every listed table of `db` between source and target, every column of every row.
pub async fn assert_tables_equal(env: &TestEnv, db: &str, tables: &[&str]) {
    let mut src = env.admin(Side::Source).await;
    let mut tgt = env.admin(Side::Target).await;
    for t in tables {
        ferry_testkit::assert_same_rows(&mut src, (db, t), &mut tgt, (db, t)).await;
    }
    src.disconnect().await.ok();
    tgt.disconnect().await.ok();
}

/// Drop `db` on both servers.
pub async fn drop_everywhere(env: &TestEnv, db: &str) {
    for side in [Side::Source, Side::Target] {
        let mut c = env.admin(side).await;
        ferry_testkit::drop_db(&mut c, db).await;
        c.disconnect().await.ok();
    }
}

/// A bound on how long a whole small migration may take in these tests.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

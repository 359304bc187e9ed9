//! Each `functions/<stage>` bootstrap binary, run as Lambda runs it: a test
//! double of the Lambda Runtime API hands it events
//! (`GET /2018-06-01/runtime/invocation/next`) and records what it posts back
//! (`.../{id}/response` or `.../{id}/error`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ferry_core::model::{ChunkRecord, ChunkState, KeyValue};
use ferry_core::store::{now_ms, Repo};
use ferry_core::task::TaskSpec;
use ferry_testkit::unique_name;
use futures::FutureExt;
use hyper::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::common::http::{self, Req, Resp, Server};
use crate::common::sam::root;
use crate::common::{aws_config, fresh_store, moto_endpoint, REGION};

/// What a function posted for one invocation.
#[derive(Debug)]
struct Posted {
    request_id: String,
    /// `response`, `error` or `init-error`.
    kind: String,
    body: Value,
}

struct FakeRuntime {
    events: Mutex<VecDeque<(String, Value)>>,
    posted: mpsc::UnboundedSender<Posted>,
}

impl FakeRuntime {
    async fn handle(&self, req: Req) -> Resp {
        let path = req.uri().path().to_string();
        if path == "/2018-06-01/runtime/invocation/next" {
            let next = self.events.lock().unwrap().pop_front();
            let Some((id, event)) = next else {
                // No more events: park the function as Lambda would freeze it.
                return futures::future::pending().await;
            };
            let deadline = (now_ms() + 60_000).to_string();
            let arn = format!("arn:aws:lambda:{REGION}:123456789012:function:ferry-test");
            return http::response(
                StatusCode::OK,
                &[
                    ("content-type", "application/json"),
                    ("lambda-runtime-aws-request-id", &id),
                    ("lambda-runtime-deadline-ms", &deadline),
                    ("lambda-runtime-invoked-function-arn", &arn),
                    (
                        "lambda-runtime-trace-id",
                        "Root=1-00000000-000000000000000000000000",
                    ),
                ],
                event.to_string(),
            );
        }
        let body: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        let parts: Vec<&str> = path
            .trim_start_matches("/2018-06-01/runtime/")
            .split('/')
            .collect();
        let (request_id, kind) = match parts.as_slice() {
            ["invocation", id, kind] => (id.to_string(), kind.to_string()),
            ["init", "error"] => (String::new(), "init-error".to_string()),
            _ => return http::response(StatusCode::NOT_FOUND, &[], "unknown runtime API path"),
        };
        let _ = self.posted.send(Posted {
            request_id,
            kind,
            body,
        });
        http::response(StatusCode::ACCEPTED, &[], "{}")
    }
}

/// The bootstrap binaries, built once per test run next to this test binary.
fn bootstrap(stage: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // <target>/debug/deps/main-<hash> -> <target>/debug
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target/<profile>")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // Drop what cargo set for this test process (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...): build
        // scripts rerun when they change, so the nested build would redo what a shell build did.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            let set_by_cargo = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
                "CARGO_RUSTC_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
                || k == "CARGO_TARGET_TMPDIR"
                || k == "OUT_DIR";
            if set_by_cargo {
                cmd.env_remove(&key);
            }
        }
        // The targets of the suite's own command (`cargo test --workspace --lib --bins --tests`,
        // see scripts/test): its dependencies are then built with the same features, so only the
        // functions' binaries compile here (6 s). Building just `-p ferry-fn-*` resolved other
        // features (no dev-dependencies) and rebuilt 77 crates, over a minute of the suite.
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(root().join("Cargo.toml"))
            .args(["--locked", "--workspace", "--lib", "--bins", "--tests"])
            .env("CARGO_TARGET_DIR", &target_dir);
        let status = cmd.status().expect("run cargo build for the functions");
        assert!(status.success(), "building the functions/ binaries failed");
        profile_dir
    });
    dir.join(format!("ferry-fn-{stage}"))
}

/// A running function process, killed on drop.
struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `stage`'s bootstrap against a fake Runtime API serving `events`; return what it posted
/// (one per event) and its stdout.
async fn drive(stage: &str, table: Option<&str>, events: Vec<Value>) -> (Vec<Posted>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap().to_string();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let n = events.len();
    let runtime = Arc::new(FakeRuntime {
        events: Mutex::new(
            events
                .into_iter()
                .enumerate()
                .map(|(i, e)| (format!("req-{i}"), e))
                .collect(),
        ),
        posted: tx,
    });
    let _server: Server = http::serve(
        listener,
        Arc::new(move |req| {
            let r = Arc::clone(&runtime);
            async move { r.handle(req).await }.boxed()
        }),
    );
    let stdout = std::env::temp_dir().join(unique_name("ferry-fn-stdout"));
    let mut cmd = Command::new(bootstrap(stage));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("ferry-{stage}"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]0123456789abcdef",
        )
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_ENDPOINT_URL", moto_endpoint())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap());
    if let Some(t) = table {
        cmd.env("FERRY_TABLE", t);
    }
    let function = Function(cmd.spawn().expect("start the bootstrap"));
    let mut posted = Vec::new();
    while posted.len() < n {
        let p = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{stage}: no answer within 60 s; got {posted:?}"))
            .expect("the fake runtime is alive");
        posted.push(p);
    }
    drop(function);
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    let _ = std::fs::remove_file(&stdout);
    (posted, out)
}

/// Without its table a function still answers every invocation, with a `Ferry.*` error that
/// names the fix — never a Rust type name, never a crash at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_answers_errors_with_ferry_names() {
    for stage in ferry_core::Stage::ALL.map(|s| s.name()) {
        let (posted, _) = drive(
            stage,
            None,
            vec![json!({"task_id": "t"}), json!({"task_id": "t2"})],
        )
        .await;
        for (i, p) in posted.iter().enumerate() {
            assert_eq!(
                (p.request_id.as_str(), p.kind.as_str()),
                (format!("req-{i}").as_str(), "error"),
                "{stage}: {p:?}"
            );
            assert_eq!(p.body["errorType"], "Ferry.Store", "{stage}: {p:?}");
            let msg = p.body["errorMessage"].as_str().unwrap_or_default();
            assert!(msg.contains("FERRY_TABLE"), "{stage}: {msg}");
        }
    }
}

/// The copy-chunk function reads a task's chunks from DynamoDB (moto) and answers the summary
/// call, emitting its metrics as an EMF line; a call for an unknown task fails by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_chunk_function_serves_a_summary_from_dynamodb() {
    let config = aws_config(&moto_endpoint()).await;
    let store = fresh_store(&config).await;
    let repo = Repo::new(store.clone());
    let task_id = unique_name("rt");
    let spec = TaskSpec::from_json(
        &json!({"task_id": task_id, "source": {"secret": "s"}, "target": {"secret": "t"},
                "objects": {"include": ["shop.*"]}})
        .to_string(),
    )
    .unwrap();
    repo.create_task(&spec).await.unwrap();
    let chunk = |i: i64, state| ChunkRecord {
        chunk_id: format!("0000-{i:06}"),
        source_db: "shop".into(),
        source_table: "orders".into(),
        lower: Some(vec![KeyValue::Int(i * 100)]),
        upper: Some(vec![KeyValue::Int((i + 1) * 100)]),
        state,
        owner: None,
        lease_until_ms: 0,
        attempts: 0,
        rows: if state == ChunkState::Done { 100 } else { 0 },
        bytes: 0,
        last_error: None,
    };
    repo.put_chunks(
        &task_id,
        &[
            chunk(0, ChunkState::Done),
            chunk(1, ChunkState::Pending),
            chunk(2, ChunkState::Pending),
        ],
    )
    .await
    .unwrap();

    let events = vec![
        json!({"task_id": task_id, "action": "summary"}),
        json!({"task_id": "no-such-task", "action": "summary"}),
    ];
    let (posted, stdout) = drive("copy-chunk", Some(store.table()), events).await;
    assert_eq!(posted[0].kind, "response", "{:?}", posted[0]);
    let out = &posted[0].body;
    assert_eq!(
        (
            out["remaining"].as_u64(),
            out["done"].as_u64(),
            out["total"].as_u64()
        ),
        (Some(2), Some(1), Some(3)),
        "{out}"
    );
    assert_eq!(out["rows"], 100);
    assert_eq!(posted[1].kind, "error", "{:?}", posted[1]);
    let name = posted[1].body["errorType"].as_str().unwrap_or_default();
    assert!(
        name.starts_with("Ferry."),
        "error type {name} must be a Ferry.* name"
    );
    let emf: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("_aws").is_some())
        .unwrap_or_else(|| panic!("no EMF line on stdout: {stdout}"));
    assert_eq!(emf["ChunksRemaining"], 2);
    assert_eq!(emf["TaskId"], task_id.as_str());
    assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Ferry");
}

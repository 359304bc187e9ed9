//! The cloud lab: a private moto server whose Step Functions *execute* state
//! machines, and in front of it a harness that serves the Lambda Invoke API by
//! calling the real stage handlers (`ferry_stages::invoke` with DynamoStore and
//! SecretsManagerSource on that moto) and forwards every other request to moto.
//!
//! moto sends a Lambda task to `http://localhost:$MOTO_PORT`, so its
//! `MOTO_PORT` is the harness's port, not its own: that is why the lab starts
//! its own moto_server (the shared one of `scripts/testenv` keeps its
//! defaults). Both stop when the lab is dropped, also when a test panics.
//!
//! It is the testenv's `scripts/moto_server_atomic.py` (one request at a
//! time), not bare `moto_server`: bare moto writes a new item of an
//! `UpdateItem` first as its keys alone, and a copy worker counting the
//! others' beats read one with no `version` and failed the run (about one
//! run in five, on both targets); its conditional writes are not atomic
//! either. Step Functions call the Lambdas from their own thread, outside
//! any request, so the lock holds no invocation up.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use ferry_aws::{DynamoStore, SecretsManagerSource};
use ferry_core::FerryError;
use ferry_stages::StageEnv;
use futures::FutureExt;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::http::{self, Req, Resp, Server};
use super::{aws_config, fresh_store, ACCOUNT, REGION};

/// How long one stage call may run in the lab (the Lambda timeout stand-in).
const STAGE_BUDGET: Duration = Duration::from_secs(60);

/// A moto_server child process, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("the lab's moto_server log: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("address").port()
}

impl Moto {
    /// Start moto_server on a free port, sending Lambda invocations to `lambda_port`.
    pub async fn start(lambda_port: u16) -> Moto {
        let client = http::client();
        for _ in 0..3 {
            let port = free_port();
            let log = std::env::temp_dir().join(format!("ferry-lab-moto-{port}.log"));
            let file = std::fs::File::create(&log).expect("moto log file");
            let child = Command::new("python3")
                .arg(super::sam::root().join("scripts/moto_server_atomic.py"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_PORT", lambda_port.to_string())
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("log handle"))
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run scripts/moto_server_atomic.py ({e}): install moto with `scripts/testenv install` (pip moto[server])")
                });
            let mut moto = Moto {
                child,
                port,
                log: log.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut pause = Duration::from_millis(50);
            while Instant::now() < deadline {
                if http::get_status(&client, &format!("http://127.0.0.1:{port}/moto-api/")).await
                    == Some(StatusCode::OK)
                {
                    return moto;
                }
                if moto.child.try_wait().ok().flatten().is_some() {
                    break; // lost the port to someone else: try another
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            eprintln!(
                "moto_server on port {port} did not come up; log: {}",
                log.display()
            );
        }
        panic!("moto_server did not start in three tries");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Every Lambda invocation the harness served: (function name, Ferry error name if it failed).
pub type Invocations = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// moto, the Invoke API harness in front of it, and the task table.
pub struct Lab {
    pub config: SdkConfig,
    pub store: DynamoStore,
    pub secrets: SecretsManagerSource,
    pub invocations: Invocations,
    pub moto_url: String,
    pub harness_url: String,
    _server: Server,
    _moto: Moto,
}

/// The function ARN the lab's state machines use for a stage.
pub fn function_arn(stage: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:ferry-{stage}")
}

impl Lab {
    pub async fn start() -> Lab {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("harness port");
        let harness_port = listener.local_addr().expect("address").port();
        let moto = Moto::start(harness_port).await;
        let config = aws_config(&moto.url()).await;
        let store = fresh_store(&config).await;
        let secrets = SecretsManagerSource::new(&config).with_ttl(Duration::from_secs(5));
        let invocations = Arc::new(Mutex::new(Vec::new()));
        let harness = Harness {
            store: store.clone(),
            secrets: secrets.clone(),
            moto_authority: format!("127.0.0.1:{}", moto.port),
            client: http::client(),
            invocations: Arc::clone(&invocations),
            next_worker: Arc::new(Mutex::new(0)),
        };
        let harness = Arc::new(harness);
        let server = http::serve(
            listener,
            Arc::new(move |req: Req| {
                let h = Arc::clone(&harness);
                async move { h.handle(req).await }.boxed()
            }),
        );
        Lab {
            config,
            store,
            secrets,
            invocations,
            moto_url: moto.url(),
            harness_url: format!("http://127.0.0.1:{harness_port}"),
            _server: server,
            _moto: moto,
        }
    }

    /// Let moto's Step Functions execute state machines created after this.
    pub async fn enable_execution(&self) {
        let (status, body) = http::post_json(
            &http::client(),
            &format!("{}/moto-api/config", self.moto_url),
            &json!({"stepfunctions": {"execute_state_machine": true}}),
        )
        .await;
        assert!(status.is_success(), "moto config: {status} {body}");
    }

    pub fn stages_invoked(&self) -> Vec<String> {
        self.invocations
            .lock()
            .unwrap()
            .iter()
            .map(|(f, _)| f.clone())
            .collect()
    }
}

struct Harness {
    store: DynamoStore,
    secrets: SecretsManagerSource,
    moto_authority: String,
    client: http::HttpClient,
    invocations: Invocations,
    next_worker: Arc<Mutex<u64>>,
}

impl Harness {
    async fn handle(&self, req: Req) -> Resp {
        match invoked_function(&req) {
            Some(function) => self.invoke(&function, req.body()).await,
            None => http::forward(&self.client, &self.moto_authority, req).await,
        }
    }

    /// One Lambda invocation: a fresh "instance" (worker id) per call, as concurrent Lambdas would have.
    async fn invoke(&self, function: &str, body: &[u8]) -> Resp {
        let worker = {
            let mut n = self.next_worker.lock().unwrap();
            *n += 1;
            format!("lab-lambda-{n}")
        };
        let env = StageEnv::new(self.store.clone(), self.secrets.clone(), worker);
        let input: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body).unwrap_or(json!({}))
        };
        let result = match function.strip_prefix("ferry-") {
            Some(stage) => {
                ferry_stages::invoke(&env, stage, input, Instant::now() + STAGE_BUDGET).await
            }
            None => Err(FerryError::Internal(format!(
                "no Ferry function named {function}"
            ))),
        };
        let error = result.as_ref().err().map(|e| e.name().to_string());
        self.invocations
            .lock()
            .unwrap()
            .push((function.to_string(), error));
        match result {
            Ok(out) => http::response(
                StatusCode::OK,
                &[("content-type", "application/json")],
                out.to_string(),
            ),
            Err(e) => http::response(
                StatusCode::OK,
                &[
                    ("content-type", "application/json"),
                    ("x-amz-function-error", "Unhandled"),
                ],
                json!({"errorType": e.name(), "errorMessage": e.message()}).to_string(),
            ),
        }
    }
}

/// `POST /2015-03-31/functions/{name or ARN}/invocations` -> the function's name.
fn invoked_function(req: &Req) -> Option<String> {
    if req.method() != Method::POST {
        return None;
    }
    let rest = req.uri().path().strip_prefix("/2015-03-31/functions/")?;
    let name = percent_decode(rest.strip_suffix("/invocations")?);
    let name = match name.strip_prefix("arn:") {
        Some(_) => name.split(':').nth(6)?.to_string(),
        None => name.split(':').next()?.to_string(),
    };
    Some(name)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn function_names_from_invoke_paths() {
    let req = |path: &str| {
        hyper::Request::post(path)
            .body(hyper::body::Bytes::new())
            .unwrap()
    };
    let arn = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aferry-plan/invocations";
    assert_eq!(invoked_function(&req(arn)).as_deref(), Some("ferry-plan"));
    assert_eq!(
        invoked_function(&req("/2015-03-31/functions/ferry-copy-chunk/invocations")).as_deref(),
        Some("ferry-copy-chunk")
    );
    assert_eq!(invoked_function(&req("/")), None);
}

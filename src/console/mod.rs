//! `ferry console`: the web console (axum, maud templates, plotters SVG charts).
//!
//! Pages: data sources, prepare users, new task, tasks, task page (see
//! `pages`). Actions run through the same code as the command line: a task
//! is started, resumed, verified or released by running this binary's own
//! `run`/`resume`/`verify`/`release` commands as child processes (so the task
//! lock, the reports and the exit paths are the CLI's), switch and stop set
//! the same control flags as `ferry switch`/`ferry stop`.
//!
//! Safe by default (invariants):
//! - it listens on 127.0.0.1 unless `--listen` says otherwise; any other
//!   address requires a random access token, printed at start, given once as
//!   `?token=` and then kept in an HttpOnly, SameSite=Strict cookie;
//! - every request that changes something is a POST carrying the console's
//!   CSRF token (a random value embedded in its forms); a POST without it is
//!   refused with 403 before any handler runs;
//! - passwords go from the add-source form into the secrets file (mode 0600)
//!   and nowhere else; pages show secret names, hosts and users only.
//!
//! `--cloud` is not served yet: the console reads the local task store and
//! secrets file. TODO(console-cloud): a `Backend` over `Repo<DynamoStore>`,
//! Secrets Manager and Step Functions, reusing src/cloud.rs's start/release.

pub mod chart;
pub mod grants;
mod pages;
pub mod sources;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Args;
use ferry_core::FerryError;
use ferry_local::{FileSecrets, SqliteStore};
use rand::Rng;

use crate::context::{Failure, Global};

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Address to listen on. Anything but a loopback address requires the access token printed at start.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// Print the address of this task's page at start.
    #[arg(long, value_name = "TASK_ID")]
    pub task: Option<String>,
}

/// What every handler shares.
pub struct Console {
    pub state_dir: PathBuf,
    pub secrets_path: Option<PathBuf>,
    pub secrets: FileSecrets,
    pub store: SqliteStore,
    pub csrf: String,
    pub token: Option<String>,
}

pub type Shared = Arc<Console>;

fn random_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compare without stopping at the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub async fn run(global: &Global, args: ConsoleArgs) -> Result<u8, Failure> {
    let store = global.open_store()?;
    let token = (!args.listen.ip().is_loopback()).then(random_token);
    let console = Arc::new(Console {
        state_dir: global.state_dir.clone(),
        secrets_path: global.secrets.clone(),
        secrets: FileSecrets::new(global.secrets.clone()),
        store,
        csrf: random_token(),
        token: token.clone(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            FerryError::BadTask(format!(
                "cannot listen on {}: {e}; pass another address with --listen",
                args.listen
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| FerryError::Internal(format!("no local address: {e}")))?;
    let path = args
        .task
        .as_ref()
        .map(|t| format!("/tasks/{t}"))
        .unwrap_or_else(|| "/tasks".into());
    match &token {
        Some(t) => println!(
            "ferry console listening on http://{addr}{path}?token={t}\n\
             (this address is not loopback: the token is required; keep it private)"
        ),
        None => println!("ferry console listening on http://{addr}{path}"),
    }
    let app = pages::router()
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&console),
            guard,
        ))
        .with_state(console);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| FerryError::Internal(format!("the console server stopped: {e}")))?;
    Ok(0)
}

const TOKEN_COOKIE: &str = "ferry_console_token";

fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The access token (non-loopback addresses) and the CSRF token of every POST.
async fn guard(State(c): State<Shared>, req: Request, next: Next) -> Response {
    let mut set_cookie = None;
    if let Some(token) = &c.token {
        let given = query_param(&req, "token");
        let ok_cookie = cookie(&req, TOKEN_COOKIE).is_some_and(|v| same(&v, token));
        let ok_query = given.as_deref().is_some_and(|v| same(v, token));
        if !ok_cookie && !ok_query {
            return (
                StatusCode::UNAUTHORIZED,
                "this console needs the access token it printed at start: open the address it printed \
                 (with ?token=...)",
            )
                .into_response();
        }
        if ok_query && !ok_cookie {
            set_cookie = Some(format!(
                "{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
            ));
        }
    }
    let req = if req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
        };
        let csrf = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        if !csrf.is_some_and(|v| same(&v, &c.csrf)) {
            tracing::warn!(path = %parts.uri.path(), "POST refused: missing or wrong CSRF token");
            return (
                StatusCode::FORBIDDEN,
                "refused: this action needs the console's CSRF token (submit it from a console page)",
            )
                .into_response();
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        req
    };
    let mut resp = next.run(req).await;
    if let Some(v) = set_cookie.and_then(|v| v.parse().ok()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

impl Console {
    /// Run this binary with `args` (plus the console's state directory and secrets file) in the
    /// background, its output in `<state dir>/console/<log>.log`. The child is waited for on a
    /// thread, so it never lingers as a zombie.
    pub fn spawn_ferry(&self, args: &[&str], log: &str) -> Result<PathBuf, FerryError> {
        let exe = std::env::current_exe()
            .map_err(|e| FerryError::Internal(format!("cannot find the ferry binary: {e}")))?;
        let dir = self.state_dir.join("console");
        std::fs::create_dir_all(&dir)
            .map_err(|e| FerryError::Store(format!("cannot create {}: {e}", dir.display())))?;
        let log_path = dir.join(format!("{log}.log"));
        let out = std::fs::File::create(&log_path)
            .map_err(|e| FerryError::Store(format!("cannot create {}: {e}", log_path.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| FerryError::Store(format!("cannot open the log: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(s) = &self.secrets_path {
            cmd.arg("--secrets").arg(s);
        }
        let mut child = cmd.spawn().map_err(|e| {
            FerryError::Internal(format!("cannot start ferry {}: {e}", args.join(" ")))
        })?;
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(log_path)
    }

    /// Where the console keeps the task files it wrote.
    pub fn task_file(&self, id: &str) -> PathBuf {
        self.state_dir
            .join("console")
            .join("tasks")
            .join(format!("{id}.json"))
    }
}

/// `ferry grants TASK.json`: the statements for the users the task's secrets name
/// (`ferry` when a secret cannot be read).
pub fn print_grants(global: &Global, args: crate::cli::TaskFileArgs) -> Result<u8, Failure> {
    let (spec, _) = crate::context::read_task_file(&args.task)?;
    let secrets = FileSecrets::new(global.secrets.clone());
    let user = |name: &str| {
        secrets
            .lookup(name)
            .map(|s| s.username)
            .unwrap_or_else(|_| "ferry".into())
    };
    let sides = grants::grants(
        &spec,
        &user(&spec.source.secret),
        &user(&spec.target.secret),
    );
    print!("{}", grants::render(&sides));
    Ok(0)
}

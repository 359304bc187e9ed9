//! The console's pages and actions (maud templates, rendered on the server).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use ferry_core::model::{CheckItem, CheckStatus, ChunkState, Direction, TaskRecord, TaskState};
use ferry_core::samples::{lag_points, rows_per_second, Series};
use ferry_core::store::{now_ms, Repo};
use ferry_core::task::{MigrationType, TaskSpec};
use ferry_core::{FerryError, Stage};
use ferry_local::SqliteStore;
use ferry_stages::switch::{self, SwitchPhase};
use ferry_stages::verify::{VerifySummary, SUMMARY_SK};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::{json, Value};

use super::{chart, grants, sources, Shared};

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/tasks") }))
        .route("/tasks", get(tasks))
        .route("/tasks/{id}", get(task_page))
        .route("/tasks/{id}/{action}", post(task_action))
        .route("/sources", get(sources_page).post(add_source))
        .route("/sources/{name}/test", post(test_source))
        .route("/grants", get(grants_page))
        .route("/new", get(new_task))
        .route("/new/objects", get(new_objects))
        .route("/new/file", post(new_file))
        .route("/taskfiles/{id}", get(task_file_page))
        .route("/taskfiles/{id}/download", get(download))
        .route("/taskfiles/{id}/precheck", post(precheck))
        .route("/taskfiles/{id}/start", post(start))
}

type Page = Result<Response, Response>;

/// An error page: the error's stable name and message (which never hold a password).
fn error_page(c: &Shared, status: StatusCode, e: &FerryError) -> Response {
    (
        status,
        layout(
            c,
            "Error",
            html! {
                div.error { strong { (e.name()) } ": " (e.message()) }
                p { a href="javascript:history.back()" { "back" } }
            },
        ),
    )
        .into_response()
}

fn fail(c: &Shared) -> impl Fn(FerryError) -> Response + '_ {
    move |e| {
        let status = match e {
            FerryError::BadTask(_) | FerryError::BadSecret(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error_page(c, status, &e)
    }
}

const CSS: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;color:#1d2733;background:#f5f7fa}
nav{background:#1f3b57;padding:10px 20px}nav a{color:#fff;margin-right:18px;text-decoration:none;font-weight:600}
main{padding:16px 24px;max-width:1200px}
table{border-collapse:collapse;background:#fff;margin:8px 0}td,th{border:1px solid #d8dee6;padding:4px 8px;text-align:left;font-size:14px}
th{background:#eef2f6}.muted{color:#6b7785}.error{background:#fde8e8;border:1px solid #e0a0a0;padding:8px;margin:8px 0}
.msg{background:#e8f4fd;border:1px solid #9cc8ea;padding:8px;margin:8px 0}
.steps{display:flex;gap:4px;margin:12px 0}.step{padding:6px 12px;background:#e3e8ee;border-radius:3px;font-size:13px}
.step.done{background:#c9e7cf}.step.current{background:#1f6fb2;color:#fff;font-weight:700}.step.off{opacity:.4}
.pass{color:#237a3b}.warn{color:#a86a00}.fail{color:#b3261e;font-weight:700}
.bar{display:inline-block;width:160px;height:10px;background:#e3e8ee;vertical-align:middle}.bar>span{display:block;height:10px;background:#1f6fb2}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #d8dee6}
form.inline{display:inline}button{margin:2px 4px 2px 0}pre{background:#fff;border:1px solid #d8dee6;padding:8px;overflow:auto}
label{display:block;margin:6px 0}textarea{width:520px;height:60px}
"#;

fn layout(c: &Shared, title: &str, body: Markup) -> Markup {
    let _ = c;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Ferry console" }
                style { (PreEscaped(CSS)) }
            }
            body {
                nav {
                    a href="/tasks" { "Tasks" }
                    a href="/sources" { "Data sources" }
                    a href="/grants" { "Prepare users" }
                    a href="/new" { "New task" }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn csrf(c: &Shared) -> Markup {
    html! { input type="hidden" name="csrf" value=(c.csrf); }
}

/// A POST button with the CSRF token, asking for confirmation first when `confirm` is given.
fn action(c: &Shared, url: &str, label: &str, confirm: Option<&str>, id: &str) -> Markup {
    let onsubmit = confirm.map(|q| format!("return confirm({});", json!(q)));
    html! {
        form.inline method="post" action=(url) onsubmit=[onsubmit] {
            (csrf(c))
            button type="submit" id=(id) { (label) }
        }
    }
}

/// Form fields, repeated names kept (checkboxes).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(body: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }
    fn get(&self, k: &str) -> String {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
    fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn ago(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn repo(c: &Shared) -> Repo<SqliteStore> {
    Repo::new(c.store.clone())
}

/// Whether a `ferry run` (or resume, release) holds the task's lock now
/// ([`ferry_local::TaskLock::is_held`]: a probe that holds it for an instant).
/// TODO(liveness): use the store's heartbeat once the liveness work lands; the lock
/// only says something on this machine.
fn runner_active(c: &Shared, id: &str) -> bool {
    matches!(ferry_local::TaskLock::is_held(&c.state_dir, id), Ok(true))
}

fn liveness(c: &Shared, t: &TaskRecord) -> String {
    let who = if runner_active(c, &t.task_id) {
        "running here"
    } else {
        "no runner"
    };
    format!("{who}, updated {}", ago(t.updated_ms))
}

// ------------------------------------------------------------------ tasks

async fn tasks(State(c): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Page {
    let repo = repo(&c);
    let ids = c.store.task_ids().await.map_err(fail(&c))?;
    let mut rows = Vec::new();
    for id in ids {
        let Some(t) = repo.get_task(&id).await.map_err(fail(&c))? else {
            continue;
        };
        let s = repo.chunk_summary(&id).await.map_err(fail(&c))?;
        let lag = repo
            .checkpoint(&id, Direction::Forward)
            .await
            .map_err(fail(&c))?
            .filter(|ck| !ck.is_retired())
            .and_then(|ck| ck.lag_ms);
        rows.push((t, s, lag));
    }
    let reports = released_reports(&c);
    Ok(layout(
        &c,
        "Tasks",
        html! {
            @if let Some(m) = q.get("msg") { div.msg { (m) } }
            @if rows.is_empty() { p.muted { "No task yet: " a href="/new" { "create one" } "." } }
            @else {
                table #tasks {
                    tr { th { "task" } th { "state" } th { "stage" } th { "liveness" } th { "rows copied" } th { "lag" } th { "last error" } }
                    @for (t, s, lag) in &rows {
                        tr {
                            td { a href={"/tasks/" (t.task_id)} { (t.task_id) } }
                            td.state { (t.state.as_str()) }
                            td { (t.stage.clone().unwrap_or_default()) }
                            td { (liveness(&c, t)) }
                            td { (s.rows) }
                            td { @if let Some(l) = lag { (l) " ms" } @else { span.muted { "—" } } }
                            td { @if let Some(e) = &t.last_error { span.fail { (e.name) } ": " (e.message) } }
                        }
                    }
                }
            }
            @if !reports.is_empty() {
                h2 { "Released" }
                ul { @for r in &reports { li { a href={"/tasks/" (r)} { (r) } } } }
            }
        },
    )
    .into_response())
}

fn released_reports(c: &Shared) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(c.state_dir.join("reports"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".md").map(str::to_string))
                .filter(|n| !n.ends_with("-repair"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

const STEPS: [(&str, Option<MigrationType>); 7] = [
    ("precheck", None),
    ("schema", Some(MigrationType::Schema)),
    ("full copy", Some(MigrationType::Full)),
    ("incremental", Some(MigrationType::Incremental)),
    ("verify", Some(MigrationType::Verify)),
    ("switch", Some(MigrationType::Incremental)),
    ("reverse", Some(MigrationType::Reverse)),
];

/// Which step the task is at (index into `STEPS`).
fn current_step(t: &TaskRecord, switched: bool) -> usize {
    if t.state == TaskState::ReverseSynchronizing {
        return 6;
    }
    if t.state == TaskState::Switching || (switched && t.state != TaskState::Completed) {
        return 5;
    }
    let Some(stage) = t.stage.as_deref() else {
        return 0;
    };
    match Stage::from_name(stage) {
        Some(Stage::GrantCheck) => 0,
        Some(Stage::Plan) => 1,
        Some(Stage::CopyChunk) => 2,
        Some(Stage::IncrementalApply) => 3,
        Some(Stage::Verify) => 4,
        Some(Stage::Switch) => 5,
        Some(Stage::Cleanup) | None => 3,
    }
}

fn steps_bar(t: &TaskRecord, switched: bool) -> Markup {
    let cur = current_step(t, switched);
    html! {
        div.steps #steps {
            @for (i, (name, ty)) in STEPS.iter().enumerate() {
                @let on = ty.is_none_or(|ty| t.spec.has(ty));
                @let class = if !on { "step off" } else if i == cur { "step current" } else if i < cur { "step done" } else { "step" };
                span class=(class) data-current=[(i == cur).then_some("true")] { (name) }
            }
        }
    }
}

fn check_items(items: &[CheckItem]) -> Markup {
    html! {
        table.checks {
            tr { th { "check" } th { "on" } th { "result" } th { "message" } th { "fix" } }
            @for i in items {
                @let (class, tag) = match i.status { CheckStatus::Pass => ("pass", "pass"), CheckStatus::Warn => ("warn", "warn"), CheckStatus::Fail => ("fail", "FAIL") };
                tr {
                    td { (i.check) } td { (i.subject) } td class=(class) { (tag) } td { (i.message) }
                    td { @if i.status != CheckStatus::Pass { @if let Some(f) = &i.fix { code { (f) } } } }
                }
            }
        }
    }
}

async fn task_page(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Page {
    let repo = repo(&c);
    let Some(t) = repo.get_task(&id).await.map_err(fail(&c))? else {
        return Ok(released_page(&c, &id, &q));
    };
    let links = crate::cmd_control::link_status(&repo, &id)
        .await
        .map_err(fail(&c))?;
    let chunks = repo.chunks(&id).await.map_err(fail(&c))?;
    let tables = repo.tables(&id).await.map_err(fail(&c))?;
    let mut per_table: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for ch in &chunks {
        let e = per_table.entry(ch.table_name()).or_default();
        e.1 += 1;
        if ch.state == ChunkState::Done {
            e.0 += 1;
            e.2 += ch.rows;
        }
    }
    let mut charts = Vec::new();
    for series in Series::ALL {
        let samples = repo.samples(&id, series).await.map_err(fail(&c))?;
        if samples.is_empty() {
            continue;
        }
        let name = series.as_str();
        if series != Series::Copy {
            let lag: Vec<(u64, f64)> = lag_points(&samples)
                .into_iter()
                .map(|(t, l)| (t, l as f64))
                .collect();
            charts.push((
                format!("chart-lag-{name}"),
                chart::line_svg(&format!("{name} link: lag (source clock)"), "ms", &lag),
            ));
        }
        let span = samples.last().map(|s| s.at_ms).unwrap_or(0)
            - samples.first().map(|s| s.at_ms).unwrap_or(0);
        let bucket = (span / 60).max(2_000);
        charts.push((
            format!("chart-rate-{name}"),
            chart::line_svg(
                &format!("{name}: rows/s"),
                "rows/s",
                &rows_per_second(&samples, bucket),
            ),
        ));
    }
    let verify: Option<VerifySummary> = repo.get_record(&id, SUMMARY_SK).await.map_err(fail(&c))?;
    let diffs = repo.diffs(&id).await.map_err(fail(&c))?;
    let sw = links.switch.clone();
    let switched = sw.as_ref().is_some_and(|r| r.phase == SwitchPhase::Done);
    let opts = &t.spec.options;
    let forward = links.links.iter().find(|l| l.direction == "forward");
    let lag_ok = forward
        .and_then(|l| l.lag_ms)
        .map(|l| l <= opts.switch_max_lag_ms);
    let copy_done = t.copy_finished.is_some();
    let live = q.get("live").map(String::as_str) != Some("0")
        && !matches!(t.state, TaskState::Completed | TaskState::Released);
    let base = format!("/tasks/{id}");
    let body = html! {
        @if live { meta http-equiv="refresh" content="3"; }
        @if let Some(m) = q.get("msg") { div.msg #msg { (m) } }
        p {
            "state " strong #state { (t.state.as_str()) }
            @if let Some(s) = &t.stage { " · stage " strong #stage { (s) } }
            " · " span #liveness { (liveness(&c, &t)) }
            " · " a href={(base) "?live=" (if live { "0" } else { "1" })} { @if live { "pause refresh" } @else { "refresh every 3 s" } }
        }
        (steps_bar(&t, switched))
        @if let Some(e) = &t.last_error { div.error #last-error { strong { (e.name) } ": " (e.message) " (" (ago(e.at_ms)) ")" } }
        h2 { "Tables" }
        table #tables {
            tr { th { "source" } th { "target" } th { "progress" } th { "chunks" } th { "rows copied" } th { "rows (estimate)" } }
            @for tb in &tables {
                @let (done, total, rows) = per_table.get(&tb.source_name()).copied().unwrap_or_default();
                @let pct = (done * 100).checked_div(total).unwrap_or(0);
                tr {
                    td { (tb.source_name()) } td { (tb.target_db) "." (tb.target_table) }
                    td { span.bar { span style={"width:" (pct) "%"} {} } " " (pct) "%" }
                    td { (done) "/" (total) } td { (rows) } td { (tb.rows_estimate) }
                }
            }
        }
        h2 { "Links" }
        @if links.links.is_empty() { p.muted { "no link yet (the incremental stage starts after the full copy)" } }
        @else {
            table #links {
                tr { th { "link" } th { "position" } th { "lag" } th { "rows applied" } th { "updated" } }
                @for l in &links.links {
                    tr {
                        td { (l.direction) } td { code { (l.position) } }
                        td { @if l.retired { "retired at switchover" } @else if let Some(v) = l.lag_ms { (v) " ms" } @else { "not measured" } }
                        td { (l.applied_rows) } td { (ago(l.updated_ms)) }
                    }
                }
            }
        }
        div.charts {
            @for (cid, svg) in &charts { div.chart id=(cid) { (PreEscaped(svg)) } }
        }
        h2 { "Verify" }
        @match &verify {
            None => p.muted { "not verified yet" },
            Some(v) => {
                p #verify { (v.mode) " verify: " (v.rows) " rows in " (v.chunks) " chunks, "
                    strong { (v.differences) " difference(s)" } ", " (v.unsettled) " unsettled"
                    @if v.repaired > 0 { ", " (v.repaired) " repaired" }
                    " · " (if v.clean { "clean" } else { "NOT clean" }) " (" (ago(v.finished_ms)) ")" }
            }
        }
        @if !diffs.is_empty() {
            table #diffs {
                tr { th { "table" } th { "key" } th { "difference" } th { "columns (source / target)" } }
                @for d in diffs.iter().take(50) {
                    tr {
                        td { (d.source_db) "." (d.source_table) }
                        td { (format!("{:?}", d.key)) }
                        td { (format!("{:?}", d.kind).to_lowercase()) }
                        td { @for (col, s, tv) in &d.columns { (col) ": " (s) " / " (tv) br; } }
                    }
                }
            }
        }
        (action(&c, &format!("{base}/verify"), "Verify now", None, "verify"))
        @if !diffs.is_empty() || verify.as_ref().is_some_and(|v| !v.clean) {
            (action(&c, &format!("{base}/repair"), "Repair the differences", Some("Write the source's rows over the differing target rows?"), "repair"))
        }
        @if t.spec.has(MigrationType::Incremental) {
            h2 { "Switch" }
            table #readiness {
                tr { th { "check" } th { "now" } }
                tr { td { "full copy done" } td class=(if copy_done { "pass" } else { "warn" }) { (if copy_done { "yes" } else { "not yet" }) } }
                tr { td { "forward lag ≤ " (opts.switch_max_lag_ms) " ms" }
                     td class=(match lag_ok { Some(true) => "pass", _ => "warn" }) { (match forward.and_then(|l| l.lag_ms) { Some(l) => format!("{l} ms"), None => "not measured".into() }) } }
                tr { td { "source quiet for " (opts.switch_quiet_seconds) " s" } td.muted { "checked by the switch stage when asked" } }
                tr { td { "verify clean" } td class=(if verify.as_ref().is_some_and(|v| v.clean) { "pass" } else { "warn" }) {
                    (match &verify { Some(v) if v.clean => "clean", Some(_) => "differences", None => "not verified" }) } }
            }
            @if let Some(r) = &sw {
                p #switch-phase { "switch: " strong { (r.phase.as_str()) } @if let Some(reason) = &r.reason { " — " (reason) } }
                ul { @for st in &r.steps { li { (st.step) ": " (st.detail) } } }
            }
            @if links.switch_requested && !switched { p.msg { "switch requested: it happens once the checks above pass" } }
        }
        h2 { "Actions" }
        @if t.spec.has(MigrationType::Incremental) && !switched {
            (action(&c, &format!("{base}/switch"), "Switch", Some("Switch over? The target becomes the primary once lag and a quiet source allow it."), "switch"))
        }
        (action(&c, &format!("{base}/stop"), "Stop", Some("Stop the task at its next stage boundary?"), "stop"))
        (action(&c, &format!("{base}/resume"), "Resume", Some("Resume the task from its checkpoints?"), "resume"))
        (action(&c, &format!("{base}/release"), "Release", Some("Release the task? Its links stop and Ferry's objects and records are removed; the final report is kept."), "release"))
        @if let Some(p) = &t.precheck {
            h2 { "Precheck" }
            (check_items(&p.items))
        }
    };
    Ok(layout(&c, &format!("Task {id}"), body).into_response())
}

/// A task no longer in the store: its final report, if it was released.
fn released_page(c: &Shared, id: &str, q: &BTreeMap<String, String>) -> Response {
    let md = c.state_dir.join("reports").join(format!("{id}.md"));
    match std::fs::read_to_string(&md) {
        Ok(text) => layout(
            c,
            &format!("Task {id}"),
            html! {
                @if let Some(m) = q.get("msg") { div.msg #msg { (m) } }
                p { "state " strong #state { "released" } }
                h2 { "Final report" }
                pre #final-report { (text) }
            },
        )
        .into_response(),
        Err(_) => error_page(
            c,
            StatusCode::NOT_FOUND,
            &FerryError::BadTask(format!(
                "no task \"{id}\" in the task store and no report of it in {}",
                md.display()
            )),
        ),
    }
}

async fn task_action(State(c): State<Shared>, Path((id, act)): Path<(String, String)>) -> Page {
    let repo = repo(&c);
    let task = repo.task(&id).await.map_err(fail(&c))?;
    let msg = match act.as_str() {
        "switch" => {
            if !task.spec.has(MigrationType::Incremental) {
                return Err(fail(&c)(FerryError::BadTask(format!(
                    "task {id} has no \"incremental\" in its types: there is no link to switch"
                ))));
            }
            repo.update_flags(&id, |f| f.switch_requested = true)
                .await
                .map_err(fail(&c))?;
            if runner_active(&c, &id) {
                "switch requested: it starts once the full copy is done, lag is low and the source is quiet".to_string()
            } else {
                "switch requested, but no runner works on the task: press Resume to switch"
                    .to_string()
            }
        }
        "stop" => {
            repo.update_flags(&id, |f| f.stop_requested = true)
                .await
                .map_err(fail(&c))?;
            if runner_active(&c, &id) {
                "stop requested: the task stops at its next stage boundary".into()
            } else {
                repo.set_state(&id, TaskState::Stopped, None)
                    .await
                    .map_err(fail(&c))?;
                "task stopped".into()
            }
        }
        "resume" => {
            if runner_active(&c, &id) {
                "the task is already running here".to_string()
            } else {
                c.spawn_ferry(&["resume", &id], &format!("{id}-resume"))
                    .map_err(fail(&c))?;
                "resumed from its checkpoints".into()
            }
        }
        "verify" | "repair" => {
            let mut args = vec!["verify", id.as_str()];
            if act == "repair" {
                args.extend(["--mode", "recheck", "--repair"]);
            }
            c.spawn_ferry(&args, &format!("{id}-{act}"))
                .map_err(fail(&c))?;
            format!("{act} started; the result appears under Verify")
        }
        "release" => {
            if let Some(rec) = switch::record(&repo, &id)
                .await
                .map_err(fail(&c))?
                .filter(|r| r.in_progress())
            {
                return Err(fail(&c)(FerryError::Fenced(format!(
                    "release refused: task {id} is switching ({}); wait until the switch is done",
                    rec.phase.as_str()
                ))));
            }
            c.spawn_ferry(&["release", &id], &format!("{id}-release"))
                .map_err(fail(&c))?;
            "release started: the links stop, then Ferry's objects and records are removed".into()
        }
        other => {
            return Err(error_page(
                &c,
                StatusCode::NOT_FOUND,
                &FerryError::BadTask(format!("no action \"{other}\"")),
            ))
        }
    };
    Ok(see_other(&format!("/tasks/{id}?msg={}", enc(&msg))))
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn see_other(url: &str) -> Response {
    Redirect::to(url).into_response()
}

// ------------------------------------------------------------------ data sources

async fn sources_page(State(c): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Page {
    let list = sources::list(&c.secrets).map_err(fail(&c))?;
    Ok(layout(
        &c,
        "Data sources",
        html! {
            @if let Some(m) = q.get("msg") { div.msg #msg { (m) } }
            p.muted { "From the secrets file " code { (c.secrets.file().display()) } " (mode 0600). Passwords are never shown." }
            table #sources {
                tr { th { "name" } th { "engine" } th { "host" } th { "port" } th { "user" } th { "TLS" } th { "test" } }
                @for s in &list {
                    tr {
                        td { (s.name) }
                        @if let Some(p) = &s.problem { td colspan="5" { span.fail { (p) } } }
                        @else { td { (s.engine) } td { (s.host) } td { (s.port) } td { (s.user) } td { (s.tls) } }
                        td {
                            form.inline method="post" action={"/sources/" (s.name) "/test"} {
                                (csrf(&c))
                                // An OceanBase server is a task's target (only a reverse link would read it).
                                select name="role" id={"role-" (s.name)} {
                                    option value="source" { "as source" }
                                    option value="target" selected[s.engine == "oceanbase"] { "as target" }
                                }
                                button type="submit" id={"test-" (s.name)} { "Test" }
                            }
                        }
                    }
                }
            }
            h2 { "Add a data source" }
            form #add-source method="post" action="/sources" {
                (csrf(&c))
                label { "name " input name="name" required; }
                label { "engine " select name="engine" { option value="mariadb" { "mariadb" } option value="mysql" { "mysql" } option value="oceanbase" { "oceanbase" } } }
                label { "host " input name="host" required; }
                label { "port " input name="port" value="3306" required; }
                label { "user " input name="user" required; }
                label { "password " input name="password" type="password" autocomplete="new-password"; }
                label { "TLS " select name="tls" { option value="disabled" { "disabled" } option value="required" { "required" } option value="skip-verify" { "skip-verify (tests only)" } } }
                button type="submit" id="add-source-submit" { "Save" }
            }
        },
    )
    .into_response())
}

async fn add_source(State(c): State<Shared>, body: Bytes) -> Page {
    let f = Fields::parse(&body);
    let new = sources::NewSource {
        name: f.get("name"),
        engine: f.get("engine"),
        host: f.get("host"),
        port: f.get("port"),
        user: f.get("user"),
        password: f.get("password"),
        tls: f.get("tls"),
    };
    sources::add(&c.secrets, &new).map_err(fail(&c))?;
    tracing::info!(source = %new.name.trim(), "data source saved to the secrets file");
    Ok(see_other(&format!(
        "/sources?msg={}",
        enc(&format!("data source {} saved", new.name.trim()))
    )))
}

async fn test_source(State(c): State<Shared>, Path(name): Path<String>, body: Bytes) -> Page {
    let f = Fields::parse(&body);
    let role = if f.get("role") == "target" {
        "target"
    } else {
        "source"
    };
    let items = sources::test(&c.secrets, &name, role)
        .await
        .map_err(fail(&c))?;
    let failed = items.iter().any(|i| i.status == CheckStatus::Fail);
    Ok(layout(
        &c,
        &format!("Test of {name} as {role}"),
        html! {
            p #test-result class=(if failed { "fail" } else { "pass" }) {
                (if failed { "some checks failed: run the fixes below" } else { "every check passed" })
            }
            (check_items(&items))
            p { a href="/sources" { "back to data sources" } }
        },
    )
    .into_response())
}

// ------------------------------------------------------------------ prepare users

async fn grants_page(State(c): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Page {
    let list = sources::list(&c.secrets).map_err(fail(&c))?;
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let user_of = |name: &str, default: &str| {
        list.iter()
            .find(|s| s.name == name)
            .map(|s| s.user.clone())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    let shown = if q.contains_key("source") {
        let spec = draft_spec(&q_fields(&q)).map_err(fail(&c))?;
        Some(grants::grants(
            &spec,
            &user_of(&get("source"), "ferry"),
            &user_of(&get("target"), "ferry"),
        ))
    } else {
        None
    };
    Ok(layout(
        &c,
        "Prepare users",
        html! {
            p.muted { "The exact statements for a migration user on each side (also: " code { "ferry grants TASK.json" } ")." }
            form method="get" action="/grants" {
                (choose_endpoints(&list, &q))
                label { "databases or tables (db.* or db.table, comma separated) " input name="include" value=(get("include")); }
                button type="submit" { "Show statements" }
            }
            @if let Some(sides) = shown {
                @for s in &sides {
                    h2 { "On the " (s.role) " (user " (s.user) ")" }
                    @for n in &s.notes { p.muted { (n) } }
                    pre.grants { @for st in &s.statements { (st) "\n" } }
                }
            }
        },
    )
    .into_response())
}

fn q_fields(q: &BTreeMap<String, String>) -> Fields {
    Fields(q.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn choose_endpoints(list: &[sources::SourceView], q: &BTreeMap<String, String>) -> Markup {
    let sel = |k: &str| q.get(k).cloned().unwrap_or_default();
    let types = q
        .get("types")
        .cloned()
        .unwrap_or_else(|| "schema,full,incremental".into());
    html! {
        label { "source " select name="source" id="source" { @for s in list { option value=(s.name) selected[sel("source") == s.name] { (s.name) } } } }
        label { "target " select name="target" id="target" { @for s in list { option value=(s.name) selected[sel("target") == s.name] { (s.name) } } } }
        label { "target dialect " select name="dialect" id="dialect" {
            @for d in ["oceanbase", "mysql", "mariadb"] { option value=(d) selected[sel("dialect") == d] { (d) } } } }
        label { "migration types (comma separated: schema, full, incremental, verify, reverse) "
            input name="types" id="types" value=(types); }
    }
}

/// A task spec from the form's fields (task_id, source, target, dialect, types, include...).
fn draft_spec(f: &Fields) -> Result<TaskSpec, FerryError> {
    let list = |s: String| -> Vec<String> {
        s.split([',', '\n'])
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    let pairs = |s: String, sep: char| -> Vec<(String, String)> {
        s.lines()
            .filter_map(|l| l.split_once(sep))
            .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
            .filter(|(a, _)| !a.is_empty())
            .collect()
    };
    let mut include = f.all("table");
    include.extend(list(f.get("include")));
    if include.is_empty() {
        include.push("*.*".into());
    }
    let source_dialect = if f.get("source_dialect").is_empty() {
        "mysql".to_string()
    } else {
        f.get("source_dialect")
    };
    let mut options = serde_json::Map::new();
    for (k, v) in [
        ("chunk_rows", f.get("chunk_rows")),
        ("concurrency", f.get("concurrency")),
        ("slice_seconds", f.get("slice_seconds")),
        ("switch_quiet_seconds", f.get("switch_quiet_seconds")),
    ] {
        if let Ok(n) = v.trim().parse::<u64>() {
            options.insert(k.into(), json!(n));
        }
    }
    let keys: BTreeMap<String, Vec<String>> = pairs(f.get("keys"), ':')
        .into_iter()
        .map(|(t, cols)| (t, list(cols)))
        .collect();
    let task_id = if f.get("task_id").trim().is_empty() {
        "draft".to_string()
    } else {
        f.get("task_id").trim().to_string()
    };
    let spec = json!({
        "task_id": task_id,
        "source": {"secret": f.get("source"), "dialect": source_dialect},
        "target": {"secret": f.get("target"), "dialect": f.get("dialect")},
        "types": list(f.get("types")),
        "objects": {
            "include": include,
            "exclude": list(f.get("exclude")),
            "rename": pairs(f.get("rename"), '=').into_iter().collect::<BTreeMap<_, _>>(),
            "filters": pairs(f.get("filters"), ':').into_iter().collect::<BTreeMap<_, _>>(),
            "keys": keys,
        },
        "options": options,
    });
    TaskSpec::from_json(&spec.to_string())
}

// ------------------------------------------------------------------ new task

async fn new_task(State(c): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Page {
    let list = sources::list(&c.secrets).map_err(fail(&c))?;
    Ok(layout(
        &c,
        "New task",
        html! {
            @if list.is_empty() { div.msg { "Add the source and the target first: " a href="/sources" { "data sources" } } }
            form #new-task method="get" action="/new/objects" {
                label { "task id " input name="task_id" id="task_id" required value=(q.get("task_id").cloned().unwrap_or_default()); }
                (choose_endpoints(&list, &q))
                label { "source dialect " select name="source_dialect" { option value="mariadb" { "mariadb" } option value="mysql" { "mysql" } } }
                button type="submit" id="choose-objects" { "Choose databases and tables" }
            }
        },
    )
    .into_response())
}

async fn new_objects(State(c): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Page {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let dbs = sources::browse(&c.secrets, &get("source"), "ferry_meta")
        .await
        .map_err(fail(&c))?;
    Ok(layout(
        &c,
        "New task: objects",
        html! {
            p { "Task " strong { (get("task_id")) } ": " (get("source")) " → " (get("target")) " (" (get("dialect")) "), types " (get("types")) }
            form #objects method="post" action="/new/file" {
                (csrf(&c))
                @for k in ["task_id", "source", "target", "dialect", "types", "source_dialect"] {
                    input type="hidden" name=(k) value=(get(k));
                }
                h2 { "Databases and tables on " (get("source")) " (live)" }
                @for (db, tables) in &dbs {
                    fieldset {
                        legend { label { input type="checkbox" name="table" value={(db) ".*"} id={"db-" (db)}; " " strong { (db) } " (all tables, and tables created later)" } }
                        @for t in tables {
                            label { input type="checkbox" name="table" value={(db) "." (t)}; " " (t) }
                        }
                    }
                }
                h2 { "Refine" }
                label { "exclude (db.table patterns, one per line)" br; textarea name="exclude" {} }
                label { "rename (one per line: db=new_db or db.table=new_db.new_table)" br; textarea name="rename" {} }
                label { "row filters (one per line: db.table: SQL condition)" br; textarea name="filters" {} }
                label { "keys for tables without one (one per line: db.table: col1, col2)" br; textarea name="keys" {} }
                h2 { "Options" }
                label { "rows per chunk " input name="chunk_rows" value="50000"; }
                label { "chunks copied at once " input name="concurrency" placeholder="auto"; }
                label { "slice seconds " input name="slice_seconds" value="60"; }
                label { "switch: source quiet for (s) " input name="switch_quiet_seconds" value="2"; }
                button type="submit" id="make-task-file" { "Make the task file" }
            }
        },
    )
    .into_response())
}

async fn new_file(State(c): State<Shared>, body: Bytes) -> Page {
    let f = Fields::parse(&body);
    let spec = draft_spec(&f).map_err(fail(&c))?;
    let text = serde_json::to_string_pretty(&spec)
        .map_err(|e| fail(&c)(FerryError::Internal(format!("cannot encode the task: {e}"))))?;
    let path = c.task_file(&spec.task_id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            fail(&c)(FerryError::Store(format!(
                "cannot create {}: {e}",
                dir.display()
            )))
        })?;
    }
    // Whole: `ferry run` may be reading it.
    ferry_core::file::write_whole(&path, &text).map_err(|e| {
        fail(&c)(FerryError::Store(format!(
            "cannot write {}: {e}",
            path.display()
        )))
    })?;
    Ok(see_other(&format!("/taskfiles/{}", spec.task_id)))
}

fn read_task_file(c: &Shared, id: &str) -> Result<(TaskSpec, String), FerryError> {
    let path = c.task_file(id);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        FerryError::BadTask(format!(
            "no task file for \"{id}\" at {} ({e}): make it under New task",
            path.display()
        ))
    })?;
    Ok((TaskSpec::from_json(&text)?, text))
}

async fn task_file_page(State(c): State<Shared>, Path(id): Path<String>) -> Page {
    let (spec, text) = read_task_file(&c, &id).map_err(fail(&c))?;
    let grants_url = format!(
        "/grants?source={}&target={}&dialect={}&types={}&include={}",
        enc(&spec.source.secret),
        enc(&spec.target.secret),
        spec.target.dialect.as_str(),
        enc(&spec
            .types
            .iter()
            .map(|t| format!("{t:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(",")),
        enc(&spec.objects.include.join(",")),
    );
    Ok(layout(
        &c,
        &format!("Task file {id}"),
        html! {
            pre #task-json { (text) }
            p {
                a href={"/taskfiles/" (id) "/download"} id="download" { "Download " (id) ".json" }
                " · " a href=(grants_url) { "users and grants it needs" }
                " · file: " code { (c.task_file(&id).display()) }
            }
            (action(&c, &format!("/taskfiles/{id}/precheck"), "Run the precheck", None, "run-precheck"))
            (action(&c, &format!("/taskfiles/{id}/start"), "Start the task", Some("Start the migration now?"), "start-task"))
        },
    )
    .into_response())
}

async fn download(State(c): State<Shared>, Path(id): Path<String>) -> Page {
    let (_, text) = read_task_file(&c, &id).map_err(fail(&c))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.json\""),
            ),
        ],
        text,
    )
        .into_response())
}

async fn precheck(State(c): State<Shared>, Path(id): Path<String>) -> Page {
    let (spec, _) = read_task_file(&c, &id).map_err(fail(&c))?;
    let input: Value = serde_json::to_value(&spec)
        .map_err(|e| fail(&c)(FerryError::Internal(format!("cannot encode the task: {e}"))))?;
    let env = crate::context::local_env(c.store.clone(), c.secrets.clone());
    let deadline = Instant::now() + Duration::from_secs(spec.options.slice_seconds.max(30));
    let out =
        ferry_stages::invoke_stage(&env, ferry_core::Stage::GrantCheck, input, deadline).await;
    let report = repo(&c)
        .get_task(&id)
        .await
        .map_err(fail(&c))?
        .and_then(|t| t.precheck);
    let ok = out
        .as_ref()
        .ok()
        .and_then(|o| o.get("ok"))
        .and_then(Value::as_bool);
    Ok(layout(
        &c,
        &format!("Precheck of {id}"),
        html! {
            @if let Err(e) = &out { div.error { strong { (e.name()) } ": " (e.message()) } }
            p #precheck-result class=(if ok == Some(true) { "pass" } else { "fail" }) {
                (match ok { Some(true) => "precheck passed", Some(false) => "precheck FAILED: fix the items marked FAIL and run it again", None => "precheck did not finish" })
            }
            @if let Some(r) = &report { (check_items(&r.items)) }
            (action(&c, &format!("/taskfiles/{id}/start"), "Start the task", Some("Start the migration now?"), "start-task"))
            " " a href={"/taskfiles/" (id)} { "back to the task file" }
        },
    )
    .into_response())
}

async fn start(State(c): State<Shared>, Path(id): Path<String>) -> Page {
    let (spec, _) = read_task_file(&c, &id).map_err(fail(&c))?;
    if runner_active(&c, &spec.task_id) {
        return Ok(see_other(&format!("/tasks/{id}?msg=already+running")));
    }
    let file = c.task_file(&id);
    let file = file.to_string_lossy();
    c.spawn_ferry(&["run", &file], &format!("{id}-run"))
        .map_err(fail(&c))?;
    // The run registers the task within moments; wait for it so the task page exists.
    let repo = repo(&c);
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        if repo.get_task(&id).await.ok().flatten().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(see_other(&format!(
        "/tasks/{id}?msg={}",
        enc("task started")
    )))
}

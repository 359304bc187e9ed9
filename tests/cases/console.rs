//! The web console in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`) driven over WebDriver (fantoccini). A person's path
//! through it: add the two data sources and test them, create a task from the
//! form against the real servers, start it, watch it copy and catch up while a
//! writer changes the source, see the lag chart drawn with points, press
//! switch and release, and find the target equal to the source; once into the
//! MariaDB target and once into OceanBase. Screenshots of each page go to
//! `target/console-screenshots/<target>-*.png` for a person to look at.
//!
//! Also: a POST without the console's CSRF token is refused.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use ferry_testkit::{on_both_targets, unique_name, Side, TestEnv};
use mysql_async::prelude::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{admin_exec, assert_tables_equal, drop_everywhere, fill_numbered, Ferry};

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ferry console` on a free loopback port; returns the process and its base URL.
fn start_console(ferry: &Ferry) -> (Killed, String) {
    let mut child = ferry
        .command(&["console", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferry console");
    let out = child.stdout.take().expect("console stdout");
    let child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("ferry console printed its address within 30 s");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in: {line}"))
        .to_string();
    let base = url.trim_end_matches("/tasks").to_string();
    (child, base)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// chromedriver and a headless Chromium session, both with a deadline.
async fn browser(profile: &std::path::Path) -> (Killed, Client) {
    // Both rustls providers are linked (ring and aws-lc-rs): pick one for the WebDriver client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = free_port();
    let driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start chromedriver (apt-get install chromium-driver; scripts/lib.sh installs it)",
            ),
    );
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,1700",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    }))
    .expect("capabilities");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ClientBuilder::rustls()
            .expect("rustls client")
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session within 60 s: {e}"),
        }
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn shot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    path
}

async fn fill(c: &Client, name: &str, value: &str) {
    let el = c
        .find(Locator::Css(&format!("[name='{name}']")))
        .await
        .unwrap_or_else(|e| panic!("field {name}: {e}"));
    el.clear().await.ok();
    el.send_keys(value).await.expect("type");
}

async fn select(c: &Client, name: &str, value: &str) {
    c.find(Locator::Css(&format!("select[name='{name}']")))
        .await
        .unwrap_or_else(|e| panic!("select {name}: {e}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("select {name}={value}: {e}"));
}

async fn click(c: &Client, id: &str) {
    // The page a previous click loads may still be on its way.
    let deadline = Instant::now() + Duration::from_secs(30);
    let el = loop {
        match c.find(Locator::Id(id)).await {
            Ok(el) => break el,
            Err(e) if Instant::now() >= deadline => panic!("button #{id}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    el.click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

/// Click a button that asks for confirmation, and confirm.
async fn click_confirmed(c: &Client, id: &str) {
    click(c, id).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.accept_alert().await.is_err() {
        assert!(Instant::now() < deadline, "no confirmation asked for #{id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of `css` once it contains `needle` (pages load after a click), within 30 s.
async fn text_with(c: &Client, css: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = text(c, css).await;
        if t.contains(needle) || Instant::now() >= deadline {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn add_source(c: &Client, base: &str, env: &TestEnv, name: &str, side: Side) {
    let s = env.secret(side, false);
    let engine = match side {
        Side::Source => "mariadb",
        Side::Target => env.target_dialect,
    };
    c.goto(&format!("{base}/sources"))
        .await
        .expect("sources page");
    fill(c, "name", name).await;
    select(c, "engine", engine).await;
    fill(c, "host", &s.host).await;
    fill(c, "port", &s.port.to_string()).await;
    fill(c, "user", &s.username).await;
    fill(c, "password", s.password.expose()).await;
    click(c, "add-source-submit").await;
    let msg = text_with(c, "#msg", "saved").await;
    assert!(
        msg.contains(&format!("data source {name} saved")),
        "{msg}\n{}",
        c.source().await.unwrap_or_default()
    );
}

/// Inserts and updates on the source until `stop`.
async fn writer(env: TestEnv, db: String, stop: Arc<AtomicBool>) -> u64 {
    let mut c = env.admin(Side::Source).await;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let sql = if n % 3 == 0 {
            format!(
                "UPDATE `{db}`.t SET v = CONCAT('upd-', {n}) WHERE id = {}",
                n % 400 + 1
            )
        } else {
            format!(
                "INSERT INTO `{db}`.t (id, v) VALUES ({}, 'new-{n}')",
                100_000 + n
            )
        };
        c.query_drop(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.disconnect().await.ok();
    n
}

/// What the console's child processes (`ferry run`, `release`, ...) printed.
fn child_logs(ferry: &Ferry) -> String {
    let mut out = String::new();
    if let Ok(dir) = std::fs::read_dir(ferry.state_dir.join("console")) {
        for e in dir.flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                out.push_str(&format!("--- {}\n{text}\n", e.path().display()));
            }
        }
    }
    out
}

async fn wait_for<F, Fut>(b: &Client, ferry: &Ferry, what: &str, secs: u64, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok().await {
        if Instant::now() >= deadline {
            let path = shot(b, "timeout").await;
            panic!(
                "{what}: not within {secs} s (screenshot {}):\n{}\n{}",
                path.display(),
                text(b, "main").await,
                child_logs(ferry)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

on_both_targets!(
    a_migration_from_the_console_in_a_real_browser,
    super::a_migration_from_the_console_in_a_real_browser
);
async fn a_migration_from_the_console_in_a_real_browser(env: TestEnv) {
    // The two targets' runs go side by side: their screenshots are told apart by the target.
    let t = env.target_dialect;
    let db = unique_name("console");
    admin_exec(
        &env,
        Side::Source,
        &[
            format!("CREATE DATABASE `{db}` CHARACTER SET utf8mb4"),
            format!(
                "CREATE TABLE `{db}`.t (id BIGINT NOT NULL PRIMARY KEY, v VARCHAR(100) NOT NULL)"
            ),
        ],
    )
    .await;
    let mut c = env.admin(Side::Source).await;
    fill_numbered(&mut c, &db, "t", 2_000).await;
    c.disconnect().await.ok();

    let ferry = Ferry::new(&json!({}));
    let (_console, base) = start_console(&ferry);
    let profile = tempfile::tempdir().expect("profile dir");
    let (_driver, b) = browser(profile.path()).await;

    // Data sources: added through the form, listed without their passwords.
    add_source(&b, &base, &env, "src", Side::Source).await;
    add_source(&b, &base, &env, "dst", Side::Target).await;
    let page = b.source().await.expect("page source");
    let pw = env.secret(Side::Source, false).password.expose().clone();
    assert!(!page.contains(&pw), "a password reached the page");
    assert!(page.contains(&env.secret(Side::Source, false).username));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&ferry.secrets_file)
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the secrets file is not 0600");
    shot(&b, &format!("{t}-1-data-sources")).await;

    // Test: the connectivity and privilege items of the precheck, for each side.
    for (name, what) in [("src", "source"), ("dst", "target")] {
        b.goto(&format!("{base}/sources")).await.unwrap();
        let role = b
            .find(Locator::Css(&format!("#role-{name}")))
            .await
            .unwrap_or_else(|e| panic!("role of {name}: {e}"));
        let chosen = role
            .find(Locator::Css("option:checked"))
            .await
            .expect("a chosen role")
            .attr("value")
            .await
            .expect("its value");
        // An OceanBase data source is offered as a target first.
        let offered = if env.is_oceanbase() && what == "target" {
            "target"
        } else {
            "source"
        };
        assert_eq!(chosen.as_deref(), Some(offered), "role offered for {name}");
        role.select_by_value(what).await.expect("choose the role");
        click(&b, &format!("test-{name}")).await;
        let result = text_with(&b, "#test-result", "every check passed").await;
        assert!(
            result.contains("every check passed"),
            "the {what}'s test: {result}\n{}",
            b.source().await.unwrap()
        );
        shot(&b, &format!("{t}-2-{what}-test")).await;
    }

    // New task: choose the sides, browse the source live, pick the database.
    let task_id = unique_name("console").replace('_', "-");
    b.goto(&format!("{base}/new")).await.unwrap();
    fill(&b, "task_id", &task_id).await;
    select(&b, "source", "src").await;
    select(&b, "target", "dst").await;
    select(&b, "dialect", t).await;
    select(&b, "source_dialect", "mariadb").await;
    fill(&b, "types", "schema,full,incremental").await;
    shot(&b, &format!("{t}-3-new-task")).await;
    click(&b, "choose-objects").await;
    click(&b, &format!("db-{db}")).await;
    fill(&b, "chunk_rows", "200").await;
    fill(&b, "concurrency", "2").await;
    fill(&b, "slice_seconds", "10").await;
    shot(&b, &format!("{t}-4-objects")).await;
    click(&b, "make-task-file").await;
    let json_text = text_with(&b, "#task-json", &db).await;
    assert!(json_text.contains(&format!("{db}.*")), "{json_text}");
    shot(&b, &format!("{t}-5-task-file")).await;
    click(&b, "run-precheck").await;
    let pre = text_with(&b, "#precheck-result", "passed").await;
    assert!(
        pre.contains("precheck passed"),
        "{pre}\n{}",
        b.source().await.unwrap()
    );
    shot(&b, &format!("{t}-6-precheck")).await;

    // Start, with a writer changing the source.
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(env.clone(), db.clone(), stop.clone()));
    click_confirmed(&b, "start-task").await;
    let page_url = format!("{base}/tasks/{task_id}?live=0");

    // It copies and catches up: the forward link's lag chart gets points.
    wait_for(
        &b,
        &ferry,
        "the lag chart drawn with points",
        180,
        || async {
            b.goto(&page_url).await.ok();
            let points = b
                .find_all(Locator::Css("#chart-lag-forward circle"))
                .await
                .map(|v| v.len())
                .unwrap_or(0);
            points >= 3
        },
    )
    .await;
    let steps = text(&b, "#steps .current").await;
    assert_eq!(steps, "incremental", "the steps bar marks the current step");
    let shot_path = shot(&b, &format!("{t}-7-task-page")).await;
    // The README's picture (into OceanBase, as the demo): refreshed on request only, so a
    // test run leaves the tree as it was.
    if env.is_oceanbase() && std::env::var_os("FERRY_UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(
            &shot_path,
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console-task.png"),
        )
        .expect("copy the task page screenshot into docs/");
    }
    b.goto(&format!("{base}/tasks")).await.unwrap();
    let list = text(&b, "#tasks").await;
    assert!(
        list.contains(&task_id) && list.contains("synchronizing"),
        "{list}"
    );
    shot(&b, &format!("{t}-8-tasks")).await;

    // Quiet source, then switch.
    stop.store(true, Ordering::Relaxed);
    let writes = writing.await.expect("writer");
    assert!(writes > 20, "the writer made only {writes} changes");
    b.goto(&page_url).await.unwrap();
    click_confirmed(&b, "switch").await;
    wait_for(&b, &ferry, "the switch to finish", 180, || async {
        b.goto(&page_url).await.ok();
        text(&b, "#switch-phase").await.contains("done")
    })
    .await;
    shot(&b, &format!("{t}-9-switched")).await;
    assert_tables_equal(&env, &db, &["t"]).await;

    // Release: the final report replaces the task page.
    click_confirmed(&b, "release").await;
    wait_for(&b, &ferry, "the release to finish", 120, || async {
        b.goto(&page_url).await.ok();
        text(&b, "#state").await == "released"
    })
    .await;
    let report = text_with(&b, "#final-report", &task_id).await;
    assert!(report.contains(&task_id), "{report}");
    shot(&b, &format!("{t}-10-released")).await;
    b.close().await.ok();
    drop_everywhere(&env, &db).await;
}

/// Raw HTTP, so nothing adds a token the console did not hand out.
async fn http(base: &str, request: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok();
    out
}

#[tokio::test]
async fn an_action_without_the_csrf_token_is_refused() {
    let ferry = Ferry::new(&json!({}));
    let (_console, base) = start_console(&ferry);
    let host = base.trim_start_matches("http://");
    let post = |body: &str| {
        format!(
            "POST /sources HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let form = "name=evil&engine=mysql&host=h&port=3306&user=u&password=p";
    for body in [form.to_string(), format!("{form}&csrf=guessed")] {
        let resp = http(&base, &post(&body)).await;
        assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
        assert!(resp.contains("CSRF"), "{resp}");
    }
    let text = std::fs::read_to_string(&ferry.secrets_file).unwrap();
    assert!(
        !text.contains("evil"),
        "a refused POST wrote the secrets file: {text}"
    );
    // The page itself is served, and its forms carry the token.
    let page = http(
        &base,
        &format!("GET /sources HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("name=\"csrf\""), "{page}");
}

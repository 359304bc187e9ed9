//! `statemachine/migration.asl.json`: it loads in the embedded interpreter, every
//! error a stage can emit is handled by name, and the precheck and full-copy part
//! of the flow does what statemachine/README.md says. The flow tests run the real
//! interpreter with a scripted dispatch (a pure test of the definition's logic, no
//! database); states added after the copy by later stages are not scripted, so
//! these tests only look at the history up to the end of the copy.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use ferry_asl::{Definition, Dispatch, Outcome, Runner, TaskCall, TaskFailure, START_EXECUTION};
use ferry_core::{FerryError, Stage};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};

const TEXT: &str = include_str!("../../statemachine/migration.asl.json");

fn substitutions() -> HashMap<String, String> {
    Stage::substitutions()
}

fn definition() -> Arc<Definition> {
    let def = Definition::from_json(TEXT, &substitutions());
    Arc::new(def.unwrap_or_else(|e| panic!("definition does not load: {e}")))
}

fn raw() -> Value {
    serde_json::from_str(TEXT).expect("the definition is JSON")
}

/// A state of the definition: its name, its JSON, and whether it is at the top level.
struct StateDef {
    name: String,
    json: Value,
    top: bool,
}

fn collect(machine: &Value, top: bool, out: &mut Vec<StateDef>) {
    for (name, s) in machine["States"].as_object().expect("States") {
        out.push(StateDef {
            name: name.clone(),
            json: s.clone(),
            top,
        });
        if let Some(p) = s.get("ItemProcessor").or_else(|| s.get("Iterator")) {
            collect(p, false, out);
        }
    }
}

fn all_states() -> Vec<StateDef> {
    let mut out = Vec::new();
    collect(&raw(), true, &mut out);
    out
}

/// A Task whose resource is a Ferry stage (not a service integration such as startExecution).
fn is_stage_task(s: &Value) -> bool {
    s["Type"] == "Task" && s["Resource"].as_str().is_some_and(|r| r.starts_with("${"))
}

fn error_lists(list: Option<&Value>) -> Vec<Vec<String>> {
    let Some(list) = list.and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|r| {
            let names = r["ErrorEquals"].as_array().expect("ErrorEquals");
            names
                .iter()
                .map(|e| e.as_str().expect("an error name").to_string())
                .collect()
        })
        .collect()
}

#[test]
fn loads_with_every_placeholder_a_stage() {
    let def = definition();
    let known: BTreeSet<String> = Stage::ALL.iter().map(|s| s.placeholder()).collect();
    let placeholders = Definition::placeholders(TEXT);
    let unknown: Vec<&String> = placeholders.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "placeholders that are no ferry_core::Stage: {unknown:?}"
    );
    let stages: BTreeSet<String> = Stage::ALL.iter().map(|s| s.name().to_string()).collect();
    for r in def.resources() {
        assert!(
            stages.contains(&r) || r == START_EXECUTION,
            "resource {r} is neither a stage nor continue-as-new"
        );
    }
    // Every stage is some Task's resource: a stage no Task invokes is dead code.
    for s in Stage::ALL {
        assert!(def.resources().contains(s.name()), "stage {s} is not used");
    }
}

/// Every name in `FerryError::ALL_NAMES` is caught *by name* on every top-level stage Task and
/// Map (States.ALL does not count), and `Ferry.Transient` is retried by name on every stage Task.
#[test]
fn every_ferry_error_is_handled_by_name() {
    let names: BTreeSet<String> = FerryError::ALL_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let handled = definition().handled_errors();
    let nowhere: Vec<&String> = names.difference(&handled).collect();
    assert!(
        nowhere.is_empty(),
        "handled nowhere in the definition: {nowhere:?}"
    );
    let mut checked = 0;
    for StateDef { name, json: s, top } in all_states() {
        let is_map = s["Type"] == "Map";
        if !is_stage_task(&s) && !is_map {
            continue;
        }
        checked += 1;
        if !is_map {
            check_transient_retry(&name, &s);
        }
        if top {
            check_catches(&name, &s, &names);
        }
    }
    assert!(
        checked >= 5,
        "expected at least GrantCheck, Plan, FullCopy, CopyChunk, CopySummary; got {checked}"
    );
}

fn check_transient_retry(name: &str, s: &Value) {
    let retry = s["Retry"]
        .as_array()
        .unwrap_or_else(|| panic!("Task {name} has no Retry"));
    let transient = retry
        .iter()
        .find(|r| {
            r["ErrorEquals"]
                .as_array()
                .is_some_and(|l| l.contains(&json!("Ferry.Transient")))
        })
        .unwrap_or_else(|| panic!("Task {name} does not retry Ferry.Transient by name"));
    let num = |f: &str| {
        transient[f]
            .as_f64()
            .unwrap_or_else(|| panic!("Task {name}: Retry {f} missing"))
    };
    assert!(
        num("IntervalSeconds") >= 1.0 && num("BackoffRate") >= 1.0 && num("MaxAttempts") >= 3.0,
        "Task {name}: Ferry.Transient must be retried with a back-off, at least 3 times: {transient}"
    );
    for list in error_lists(s.get("Retry")) {
        assert!(
            !list.contains(&"States.ALL".to_string()),
            "Task {name} retries States.ALL: definite errors must stop"
        );
    }
}

fn check_catches(name: &str, s: &Value, names: &BTreeSet<String>) {
    let caught: BTreeSet<String> = error_lists(s.get("Catch")).into_iter().flatten().collect();
    let missing: Vec<&String> = names.difference(&caught).collect();
    assert!(
        missing.is_empty(),
        "{name} does not catch {missing:?} by name"
    );
    let top = raw();
    for c in s["Catch"].as_array().expect("Catch") {
        assert_eq!(
            c["ResultPath"],
            json!("$.error"),
            "{name}: a Catch keeps the error at $.error"
        );
        let next = c["Next"].as_str().expect("Catch Next");
        let target = &top["States"][next];
        if target["Type"] == "Fail" {
            let paths = (&target["ErrorPath"], &target["CausePath"]);
            assert_eq!(
                paths,
                (&json!("$.error.Error"), &json!("$.error.Cause")),
                "{name} -> {next}"
            );
        }
    }
}

/// A dispatch that answers each stage from a script, and records the calls.
#[derive(Default)]
struct Script {
    answers: Mutex<HashMap<String, VecDeque<Result<Value, TaskFailure>>>>,
    calls: Mutex<Vec<(String, Value)>>,
}

impl Script {
    fn answer(self, key: &str, list: Vec<Result<Value, TaskFailure>>) -> Script {
        self.answers
            .lock()
            .unwrap()
            .insert(key.to_string(), list.into());
        self
    }

    fn calls(&self, key: &str) -> Vec<Value> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// `copy-chunk` with `"action":"summary"` is scripted apart from the workers' calls.
fn key(resource: &str, input: &Value) -> String {
    match input.get("action").and_then(Value::as_str) {
        Some(a) => format!("{resource}:{a}"),
        None => resource.to_string(),
    }
}

impl Dispatch for Script {
    fn invoke(
        &self,
        call: TaskCall<'_>,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, TaskFailure>> {
        let k = key(call.resource, &input);
        self.calls.lock().unwrap().push((k.clone(), input.clone()));
        let next = self
            .answers
            .lock()
            .unwrap()
            .get_mut(&k)
            .and_then(VecDeque::pop_front);
        let answer = next.unwrap_or_else(|| match k.as_str() {
            "copy-chunk" => Ok(json!({"task_id": "t1", "copied": 1, "rows": 10, "remaining": 0})),
            other => Err(TaskFailure::new(
                "Test.Unscripted",
                format!("no answer scripted for {other}"),
            )),
        });
        async move { answer }.boxed()
    }
}

fn task_input() -> Value {
    json!({"task_id": "t1", "source": {"secret": "s"}, "target": {"secret": "t"}, "objects": {"include": ["a.*"]}})
}

fn precheck(ok: bool, failed: u64) -> Value {
    json!({"task_id": "t1", "ok": ok, "failed": failed, "warned": 1})
}

fn plan_out(workers: usize) -> Value {
    let w: Vec<Value> = (0..workers)
        .map(|i| json!({"task_id": "t1", "worker": i}))
        .collect();
    json!({"task_id": "t1", "tables": 2, "chunks": 9, "workers": w})
}

fn summary(remaining: u64) -> Value {
    json!({"task_id": "t1", "remaining": remaining, "pending": remaining, "running": 0, "done": 9 - remaining,
           "failed": 0, "total": 9, "rows": 90, "stop_requested": false})
}

async fn run(script: Script) -> (Outcome, Arc<Script>) {
    let script = Arc::new(script);
    let runner = Runner::new(definition(), script.clone()).retry_time_scale(0.0);
    let outcome = runner
        .run("test-exec", task_input())
        .await
        .expect("the runner accepts the definition");
    (outcome, script)
}

/// The states entered, with the ones before GrantCheck (set-up states others may add) dropped.
fn entered_from_grant_check(outcome: &Outcome) -> Vec<String> {
    let all = outcome.entered_states();
    let start = all
        .iter()
        .position(|s| *s == "GrantCheck")
        .expect("GrantCheck was entered");
    all[start..].iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn copies_until_no_chunk_remains() {
    let s = Script::default()
        .answer("grant-check", vec![Ok(precheck(true, 0))])
        .answer("plan", vec![Ok(plan_out(3))])
        .answer("copy-chunk:summary", vec![Ok(summary(4)), Ok(summary(0))]);
    let (outcome, script) = run(s).await;
    let entered = entered_from_grant_check(&outcome);
    let copy: Vec<&str> = entered
        .iter()
        .map(String::as_str)
        .filter(|s| *s != "CopyChunk")
        .take(8)
        .collect();
    assert_eq!(
        copy,
        [
            "GrantCheck",
            "PrecheckPassed",
            "Plan",
            "FullCopy",
            "CopySummary",
            "CopyFinished",
            "FullCopy",
            "CopySummary"
        ],
        "{entered:?}"
    );
    let last_finished = entered
        .iter()
        .rposition(|s| s == "CopyFinished")
        .expect("CopyFinished");
    assert_eq!(
        entered.iter().filter(|s| *s == "CopyFinished").count(),
        2,
        "{entered:?}"
    );
    assert_ne!(
        entered.get(last_finished + 1).map(String::as_str),
        Some("FullCopy"),
        "copy loop must end"
    );
    assert_eq!(
        script.calls("grant-check"),
        vec![task_input()],
        "grant-check gets the task file"
    );
    assert_eq!(script.calls("plan"), vec![json!({"task_id": "t1"})]);
    let workers = script.calls("copy-chunk");
    assert_eq!(workers.len(), 6, "3 workers per FullCopy, twice");
    assert!(workers.contains(&json!({"task_id": "t1", "worker": 2})));
    let summaries = script.calls("copy-chunk:summary");
    assert_eq!(
        summaries,
        vec![json!({"task_id": "t1", "action": "summary"}); 2]
    );
}

#[tokio::test]
async fn failed_precheck_stops_before_plan() {
    let s = Script::default().answer("grant-check", vec![Ok(precheck(false, 2))]);
    let (outcome, script) = run(s).await;
    let Outcome::Failed { error, cause, .. } = &outcome else {
        panic!("expected failure: {outcome:?}")
    };
    assert_eq!(error, "Ferry.PrecheckFailed");
    assert!(
        cause.contains("t1") && cause.contains("2 failed"),
        "{cause}"
    );
    assert_eq!(
        entered_from_grant_check(&outcome),
        ["GrantCheck", "PrecheckPassed", "PrecheckFailed"]
    );
    assert!(script.calls("plan").is_empty());
}

#[tokio::test]
async fn transient_errors_are_retried_then_a_definite_error_keeps_its_name_and_message() {
    let transient = || Err(TaskFailure::new("Ferry.Transient", "lost connection"));
    let chunk_failed = Err(TaskFailure::new(
        "Ferry.ChunkFailed",
        "chunk 0001 of a.b: boom",
    ));
    let s = Script::default()
        .answer(
            "grant-check",
            vec![transient(), transient(), Ok(precheck(true, 0))],
        )
        .answer("plan", vec![Ok(plan_out(1))])
        .answer("copy-chunk", vec![transient(), chunk_failed]);
    let (outcome, script) = run(s).await;
    let Outcome::Failed { error, cause, .. } = &outcome else {
        panic!("expected failure: {outcome:?}")
    };
    assert_eq!(
        (error.as_str(), cause.as_str()),
        ("Ferry.ChunkFailed", "chunk 0001 of a.b: boom")
    );
    assert_eq!(script.calls("grant-check").len(), 3);
    assert_eq!(script.calls("copy-chunk").len(), 2);
    assert!(
        script.calls("copy-chunk:summary").is_empty(),
        "a failed copy does not go on to the summary"
    );
}

#[tokio::test]
async fn a_transient_error_that_persists_fails_the_execution_with_it() {
    let still_down = (0..50)
        .map(|_| Err(TaskFailure::new("Ferry.Transient", "still down")))
        .collect();
    let (outcome, script) = run(Script::default().answer("grant-check", still_down)).await;
    let Outcome::Failed { error, cause, .. } = &outcome else {
        panic!("expected failure: {outcome:?}")
    };
    assert_eq!(
        (error.as_str(), cause.as_str()),
        ("Ferry.Transient", "still down")
    );
    let retries = raw()["States"]["GrantCheck"]["Retry"][0]["MaxAttempts"]
        .as_u64()
        .unwrap();
    assert_eq!(
        script.calls("grant-check").len() as u64,
        1 + retries,
        "one attempt, then each retry"
    );
    assert!(script.calls("plan").is_empty());
}

/// Chunks that used up their attempts stop the task with `Ferry.ChunkFailed` instead of
/// letting it go on as if the copy were complete.
#[tokio::test]
async fn failed_chunks_stop_the_task_after_the_copy() {
    let mut failed = summary(0);
    failed["failed"] = json!(2);
    let s = Script::default()
        .answer("grant-check", vec![Ok(precheck(true, 0))])
        .answer("plan", vec![Ok(plan_out(2))])
        .answer("copy-chunk:summary", vec![Ok(failed)]);
    let (outcome, _) = run(s).await;
    let Outcome::Failed { error, cause, .. } = &outcome else {
        panic!("expected failure: {outcome:?}")
    };
    assert_eq!(error, "Ferry.ChunkFailed");
    assert!(
        cause.contains("2 chunk(s)") && cause.contains("t1"),
        "{cause}"
    );
    let entered = entered_from_grant_check(&outcome);
    assert_eq!(
        entered.last().map(String::as_str),
        Some("CopyFailed"),
        "{entered:?}"
    );
}

/// `ferry stop` during the copy: the summary says so and the task is marked
/// stopped (after the copy's workers returned), not copied further.
#[tokio::test]
async fn a_stop_during_the_copy_marks_the_task_stopped() {
    let mut stopped = summary(4);
    stopped["stop_requested"] = json!(true);
    let s = Script::default()
        .answer("grant-check", vec![Ok(precheck(true, 0))])
        .answer("plan", vec![Ok(plan_out(2))])
        .answer("copy-chunk:summary", vec![Ok(stopped)])
        .answer(
            "cleanup:stop",
            vec![Ok(json!({"task_id": "t1", "state": "stopped"}))],
        );
    let (outcome, script) = run(s).await;
    assert!(outcome.is_succeeded(), "{outcome:?}");
    let entered = entered_from_grant_check(&outcome);
    let tail: Vec<&str> = entered.iter().rev().take(4).map(String::as_str).collect();
    assert_eq!(
        tail,
        ["Stopped", "MarkStopped", "CopyFinished", "CopySummary"],
        "{entered:?}"
    );
    assert_eq!(
        script.calls("copy-chunk").len(),
        2,
        "one FullCopy round only"
    );
    assert_eq!(
        script.calls("cleanup:stop"),
        vec![json!({"task_id": "t1", "action": "stop"})]
    );
}

/// Chunks left that only another worker leases (a Lambda that died mid-chunk):
/// the copy waits for the lease instead of looping FullCopy at once.
#[tokio::test]
async fn chunks_leased_elsewhere_are_waited_for() {
    let mut leased = summary(2);
    leased["pending"] = json!(0);
    leased["running"] = json!(2);
    let s = Script::default()
        .answer("grant-check", vec![Ok(precheck(true, 0))])
        .answer("plan", vec![Ok(plan_out(1))])
        .answer("copy-chunk:summary", vec![Ok(leased), Ok(summary(0))]);
    let (outcome, _) = run(s).await;
    let entered = entered_from_grant_check(&outcome);
    let copy: Vec<&str> = entered
        .iter()
        .map(String::as_str)
        .filter(|s| *s != "CopyChunk")
        .skip(3)
        .take(6)
        .collect();
    assert_eq!(
        copy,
        [
            "FullCopy",
            "CopySummary",
            "CopyFinished",
            "CopyWait",
            "FullCopy",
            "CopySummary"
        ],
        "{entered:?}"
    );
}

//! Retry, Catch and timeouts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_asl::{Event, Runner, TaskFailure};
use futures::FutureExt;
use serde_json::{json, Value};

use crate::common::{failing, failure, load, output, retry_delays, run, Fake};

fn task_with(retry: Value, catch: Value) -> Value {
    json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "Retry": retry, "Catch": catch, "Next": "Done"},
        "Done": {"Type": "Pass", "Next": "Handler"},
        "Handler": {"Type": "Pass", "End": true}
    }})
}

#[tokio::test]
async fn max_attempts_is_honoured_with_exponential_backoff() {
    let fake = failing("Ferry.Transient");
    let outcome = run(task_with(json!([{"ErrorEquals": ["Ferry.Transient"], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 1.5}]), json!([])), &fake, json!({})).await;
    assert_eq!(failure(&outcome).0, "Ferry.Transient");
    let retries: Vec<u32> = fake.calls().iter().map(|c| c.retry_count).collect();
    assert_eq!(retries, vec![0, 1, 2, 3]);
    assert_eq!(retry_delays(&outcome), vec![2000, 3000, 4500]);
}

#[tokio::test]
async fn retry_defaults_and_max_delay() {
    let fake = failing("E");
    let outcome = run(
        task_with(json!([{"ErrorEquals": ["E"]}]), json!([])),
        &fake,
        json!({}),
    )
    .await;
    assert_eq!(fake.calls().len(), 4);
    assert_eq!(retry_delays(&outcome), vec![1000, 2000, 4000]);

    let fake = failing("E");
    let outcome = run(
        task_with(
            json!([{"ErrorEquals": ["E"], "BackoffRate": 10, "MaxDelaySeconds": 5}]),
            json!([]),
        ),
        &fake,
        json!({}),
    )
    .await;
    assert_eq!(retry_delays(&outcome), vec![1000, 5000, 5000]);
}

#[tokio::test]
async fn max_attempts_zero_never_retries() {
    let fake = failing("E");
    run(
        task_with(json!([{"ErrorEquals": ["E"], "MaxAttempts": 0}]), json!([])),
        &fake,
        json!({}),
    )
    .await;
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn first_matching_retrier_decides_and_counters_are_separate() {
    // The first retrier matches and has no attempts left: the catch-all is not consulted.
    let fake = failing("A");
    run(task_with(json!([{"ErrorEquals": ["A"], "MaxAttempts": 0}, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}]), json!([])), &fake, json!({})).await;
    assert_eq!(fake.calls().len(), 1);

    // Errors alternate A, B, A, B...: each retrier allows one retry of its own error.
    let n = Arc::new(AtomicU32::new(0));
    let fake = Fake::new(move |_| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        Err(TaskFailure::new(if i % 2 == 0 { "A" } else { "B" }, ""))
    });
    let outcome = run(task_with(json!([{"ErrorEquals": ["A"], "MaxAttempts": 1}, {"ErrorEquals": ["B"], "MaxAttempts": 1}]), json!([])), &fake, json!({})).await;
    assert_eq!(fake.calls().len(), 3); // A, B retried once each; the second A is out of attempts.
    assert_eq!(failure(&outcome).0, "A");
    assert_eq!(retry_delays(&outcome), vec![1000, 1000]);
}

#[tokio::test]
async fn retry_then_success_sees_retry_count_in_context() {
    let fake = Fake::new(|c| {
        if c.retry_count < 2 {
            Err(TaskFailure::new("E", ""))
        } else {
            Ok(c.input.clone())
        }
    });
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r",
        "Parameters": {"try.$": "$$.State.RetryCount"},
        "Retry": [{"ErrorEquals": ["States.TaskFailed"]}], "End": true}}});
    let outcome = run(def, &fake, json!({})).await;
    assert_eq!(output(&outcome), &json!({"try": 2}));
    let tries: Vec<Value> = fake
        .calls()
        .iter()
        .map(|c| c.input["try"].clone())
        .collect();
    assert_eq!(tries, vec![json!(0), json!(1), json!(2)]);
}

#[tokio::test]
async fn empty_error_name_is_task_failed() {
    let fake = failing("");
    let outcome = run(task_with(json!([]), json!([])), &fake, json!({})).await;
    assert_eq!(failure(&outcome).0, "States.TaskFailed");
}

#[tokio::test]
async fn retry_delay_is_really_slept_when_scaled() {
    let fake = Fake::new(|c| {
        if c.retry_count == 0 {
            Err(TaskFailure::new("E", ""))
        } else {
            Ok(json!(1))
        }
    });
    let runner = Runner::new(
        load(task_with(
            json!([{"ErrorEquals": ["E"], "IntervalSeconds": 2}]),
            json!([]),
        )),
        fake,
    )
    .retry_time_scale(0.01);
    let start = Instant::now();
    assert!(runner.run("e", json!({})).await.unwrap().is_succeeded());
    assert!(
        start.elapsed() >= Duration::from_millis(20),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn catch_applies_result_path_to_raw_input() {
    let fake = failing("Ferry.BinlogPurged");
    let outcome = run(
        task_with(
            json!([{"ErrorEquals": ["Ferry.Transient"]}]),
            json!([{"ErrorEquals": ["Ferry.Other"], "Next": "Done"}, {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handler"}]),
        ),
        &fake,
        json!({"task": 7}),
    )
    .await;
    assert_eq!(
        output(&outcome),
        &json!({"task": 7, "error": {"Error": "Ferry.BinlogPurged", "Cause": "it broke"}})
    );
    assert_eq!(outcome.entered_states(), vec!["T", "Handler"]);
    assert!(outcome.history().contains(&Event::Caught {
        state: "T".into(),
        error: "Ferry.BinlogPurged".into(),
        next: "Handler".into()
    }));
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn catch_after_retries_are_spent_and_default_result_path_replaces() {
    let fake = failing("E");
    let outcome = run(
        task_with(
            json!([{"ErrorEquals": ["E"], "MaxAttempts": 2}]),
            json!([{"ErrorEquals": ["E"], "Next": "Handler"}]),
        ),
        &fake,
        json!({"x": 1}),
    )
    .await;
    assert_eq!(fake.calls().len(), 3);
    assert_eq!(
        output(&outcome),
        &json!({"Error": "E", "Cause": "it broke"})
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_is_states_timeout_and_not_task_failed() {
    let fake = Fake::asynchronous(|_| {
        async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(json!("late"))
        }
        .boxed()
    });
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "TimeoutSeconds": 5,
              "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 3}, {"ErrorEquals": ["States.Timeout"], "MaxAttempts": 1}],
              "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Done"}], "End": true},
        "Done": {"Type": "Succeed"}
    }});
    let outcome = Runner::new(load(def), fake.clone())
        .retry_time_scale(0.0)
        .run("e", json!({}))
        .await
        .unwrap();
    assert_eq!(failure(&outcome).0, "States.Timeout");
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn timeout_seconds_path_and_execution_timeout() {
    let slow = || {
        Fake::asynchronous(|_| {
            async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(json!(1))
            }
            .boxed()
        })
    };
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "TimeoutSecondsPath": "$.t", "End": true}}});
    let outcome = Runner::new(load(def), slow())
        .run("e", json!({"t": 1}))
        .await
        .unwrap();
    assert_eq!(failure(&outcome).0, "States.Timeout");

    let def = json!({"TimeoutSeconds": 2, "StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "End": true}}});
    let outcome = Runner::new(load(def), slow())
        .run("e", json!({}))
        .await
        .unwrap();
    assert_eq!(failure(&outcome).0, "States.Timeout");
    assert!(matches!(
        outcome.history().last(),
        Some(Event::ExecutionFailed { .. })
    ));
}

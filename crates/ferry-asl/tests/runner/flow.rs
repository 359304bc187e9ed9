//! Choice, Wait, Pass, Succeed and Fail.

use std::time::Duration;

use ferry_asl::Runner;
use serde_json::{json, Value};

use crate::common::{failure, load, output, run, Fake};

fn choice_machine() -> Value {
    json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"Variable": "$.lag", "NumericLessThanEquals": 5, "Next": "Switch"},
            {"And": [
                {"Variable": "$.mode", "IsPresent": true},
                {"Variable": "$.mode", "StringEquals": "stop"}
            ], "Next": "Stop"},
            {"Not": {"Variable": "$.retry", "BooleanEquals": false}, "Next": "Retry"}
        ], "Default": "Wait"},
        "Switch": {"Type": "Pass", "Result": "switch", "End": true},
        "Stop": {"Type": "Pass", "Result": "stop", "End": true},
        "Retry": {"Type": "Pass", "Result": "retry", "End": true},
        "Wait": {"Type": "Pass", "Result": "wait", "End": true}
    }})
}

#[tokio::test]
async fn choice_picks_first_matching_rule_or_default() {
    let fake = Fake::echo();
    for (input, expected) in [
        (json!({"lag": 3, "retry": false}), "switch"),
        (json!({"lag": 30, "mode": "stop", "retry": false}), "stop"),
        (json!({"lag": 30, "retry": true}), "retry"),
        (json!({"lag": 30, "retry": false}), "wait"),
    ] {
        let outcome = run(choice_machine(), &fake, input.clone()).await;
        assert_eq!(output(&outcome), &json!(expected), "{input}");
        assert_eq!(outcome.entered_states()[0], "C");
    }
}

#[tokio::test]
async fn choice_without_match_or_default_fails() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "D"}]},
        "D": {"Type": "Succeed"}
    }});
    let outcome = run(def, &Fake::echo(), json!({"n": 2})).await;
    assert_eq!(failure(&outcome).0, "States.NoChoiceMatched");
}

#[tokio::test]
async fn choice_on_missing_variable_is_runtime_error() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "D"}], "Default": "D"},
        "D": {"Type": "Succeed"}
    }});
    let outcome = run(def, &Fake::echo(), json!({})).await;
    assert_eq!(failure(&outcome).0, "States.Runtime");
}

#[tokio::test]
async fn choice_applies_input_and_output_path() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "InputPath": "$.in", "OutputPath": "$.x",
              "Choices": [{"Variable": "$.x", "StringMatches": "chunk-*", "Next": "D"}]},
        "D": {"Type": "Succeed"}
    }});
    let outcome = run(def, &Fake::echo(), json!({"in": {"x": "chunk-7"}})).await;
    assert_eq!(output(&outcome), &json!("chunk-7"));
}

#[tokio::test(start_paused = true)]
async fn wait_seconds_and_seconds_path_sleep_scaled() {
    let def = json!({"StartAt": "W1", "States": {
        "W1": {"Type": "Wait", "Seconds": 10, "Next": "W2"},
        "W2": {"Type": "Wait", "SecondsPath": "$.delay", "End": true}
    }});
    let runner = Runner::new(load(def.clone()), Fake::echo());
    let start = tokio::time::Instant::now();
    let outcome = runner.run("e", json!({"delay": 5})).await.unwrap();
    assert_eq!(output(&outcome), &json!({"delay": 5}));
    assert!(
        start.elapsed() >= Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );

    let scaled = Runner::new(load(def), Fake::echo()).retry_time_scale(0.1);
    let start = tokio::time::Instant::now();
    scaled.run("e", json!({"delay": 5})).await.unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_timestamp_in_the_past_does_not_wait_and_path_works() {
    let def = json!({"StartAt": "W1", "States": {
        "W1": {"Type": "Wait", "Timestamp": "2001-01-01T00:00:00Z", "Next": "W2"},
        "W2": {"Type": "Wait", "TimestampPath": "$.at", "End": true}
    }});
    let runner = Runner::new(load(def), Fake::echo());
    let start = tokio::time::Instant::now();
    runner
        .run("e", json!({"at": "2002-02-02T00:00:00.5+01:00"}))
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));

    let bad = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "TimestampPath": "$.at", "End": true}}});
    let outcome = run(bad, &Fake::echo(), json!({"at": "tomorrow"})).await;
    assert_eq!(failure(&outcome).0, "States.Runtime");
}

#[tokio::test]
async fn pass_result_parameters_and_paths() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": {"k": 1}, "ResultPath": "$.fixed", "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"copy.$": "$.fixed.k", "name.$": "$$.State.Name"}, "ResultPath": "$.made", "Next": "C"},
        "C": {"Type": "Pass", "OutputPath": "$.made"  , "End": true}
    }});
    let outcome = run(def, &Fake::echo(), json!({"orig": true})).await;
    assert_eq!(output(&outcome), &json!({"copy": 1, "name": "B"}));
    assert_eq!(outcome.entered_states(), vec!["A", "B", "C"]);
}

#[tokio::test]
async fn pass_without_result_passes_input() {
    let def =
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$.x", "End": true}}});
    let outcome = run(def, &Fake::echo(), json!({"x": [1]})).await;
    assert_eq!(output(&outcome), &json!([1]));
}

#[tokio::test]
async fn fail_with_literals_and_paths() {
    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Ferry.GrantMissing", "Cause": "grant REPLICATION SLAVE"}}});
    let outcome = run(def, &Fake::echo(), json!({})).await;
    assert_eq!(
        failure(&outcome),
        ("Ferry.GrantMissing", "grant REPLICATION SLAVE")
    );

    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.e",
        "CausePath": "States.Format('stage {} failed', $.stage)"}}});
    let outcome = run(def, &Fake::echo(), json!({"e": "Ferry.X", "stage": "plan"})).await;
    assert_eq!(failure(&outcome), ("Ferry.X", "stage plan failed"));
    assert!(!outcome
        .history()
        .iter()
        .any(|e| matches!(e, ferry_asl::Event::StateExited { .. })));
}

#[tokio::test]
async fn succeed_applies_paths() {
    let def = json!({"StartAt": "S", "States": {"S": {"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}}});
    let outcome = run(def, &Fake::echo(), json!({"a": {"b": 2}})).await;
    assert_eq!(output(&outcome), &json!(2));
    assert!(outcome.is_succeeded());
}

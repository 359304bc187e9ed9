//! The `$$` context object, events and the run future.

use std::sync::{Arc, Mutex};

use ferry_asl::{Event, Runner};
use serde_json::json;

use crate::common::{load, output, Fake};

#[tokio::test]
async fn context_object_fields() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {
        "id.$": "$$.Execution.Id", "name.$": "$$.Execution.Name", "input.$": "$$.Execution.Input",
        "start.$": "$$.Execution.StartTime", "sm.$": "$$.StateMachine.Id", "smName.$": "$$.StateMachine.Name",
        "state.$": "$$.State.Name", "entered.$": "$$.State.EnteredTime", "retries.$": "$$.State.RetryCount"
    }, "End": true}}});
    let runner = Runner::new(load(def), Fake::echo()).state_machine_arn(
        "arn:aws:states:eu-west-1:123456789012:stateMachine:ferry-migration".to_string(),
    );
    let outcome = runner.run("task-42", json!({"task": "t"})).await.unwrap();
    let out = output(&outcome);
    assert_eq!(
        out["id"],
        json!("arn:aws:states:eu-west-1:123456789012:execution:ferry-migration:task-42")
    );
    assert_eq!(out["name"], json!("task-42"));
    assert_eq!(out["input"], json!({"task": "t"}));
    assert_eq!(
        out["sm"],
        json!("arn:aws:states:eu-west-1:123456789012:stateMachine:ferry-migration")
    );
    assert_eq!(out["smName"], json!("ferry-migration"));
    assert_eq!(out["state"], json!("P"));
    assert_eq!(out["retries"], json!(0));
    for key in ["start", "entered"] {
        let s = out[key].as_str().unwrap();
        assert!(
            s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T',
            "{key}: {s}"
        );
    }
}

#[tokio::test]
async fn default_arn_and_missing_context_path() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"sm.$": "$$.StateMachine.Id", "x.$": "$$.Map.Item.Index"}, "End": true}}});
    let outcome = Runner::new(load(def), Fake::echo())
        .run("e", json!({}))
        .await
        .unwrap();
    match outcome {
        ferry_asl::Outcome::Failed { error, cause, .. } => {
            assert_eq!(error, "States.Runtime");
            assert!(
                cause.contains("$$.Map.Item.Index") && cause.contains("context object"),
                "{cause}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ferry_asl::DEFAULT_STATE_MACHINE_ARN,
        "arn:aws:states:local:000000000000:stateMachine:ferry"
    );
}

#[tokio::test]
async fn task_call_carries_names() {
    let fake = Fake::echo();
    let def = json!({"StartAt": "Copy", "States": {"Copy": {"Type": "Task", "Resource": "arn:aws:lambda:x:1:function:copy", "End": true}}});
    Runner::new(load(def), fake.clone())
        .run("run-9", json!({}))
        .await
        .unwrap();
    let call = &fake.calls()[0];
    assert_eq!(
        (
            call.resource.as_str(),
            call.state.as_str(),
            call.execution.as_str(),
            call.retry_count
        ),
        ("arn:aws:lambda:x:1:function:copy", "Copy", "run-9", 0)
    );
}

#[tokio::test]
async fn hook_sees_every_event_and_events_serialize() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Succeed"}}});
    let runner = Runner::new(load(def), Fake::echo()).on_event(Arc::new(move |e: &Event| {
        sink.lock().unwrap().push(e.clone())
    }));
    let outcome = runner.run("e", json!({})).await.unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), outcome.history());
    assert_eq!(
        outcome.history(),
        &[
            Event::ExecutionStarted { name: "e".into() },
            Event::StateEntered {
                name: "A".into(),
                execution: "e".into()
            },
            Event::StateExited {
                name: "A".into(),
                execution: "e".into()
            },
            Event::StateEntered {
                name: "B".into(),
                execution: "e".into()
            },
            Event::StateExited {
                name: "B".into(),
                execution: "e".into()
            },
            Event::ExecutionSucceeded { name: "e".into() },
        ]
    );
    let v = serde_json::to_value(&outcome.history()[1]).unwrap();
    assert_eq!(
        v,
        json!({"type": "StateEntered", "name": "A", "execution": "e"})
    );
    let back: Event = serde_json::from_value(v).unwrap();
    assert_eq!(back, outcome.history()[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_future_is_send() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map",
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "End": true}}}, "End": true}}});
    let runner = Runner::new(load(def), Fake::echo());
    let handle = tokio::spawn(async move { runner.run("e", json!([1, 2])).await });
    assert_eq!(output(&handle.await.unwrap().unwrap()), &json!([1, 2]));
}

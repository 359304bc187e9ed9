//! `arn:aws:states:::states:startExecution`: continue-as-new.

use ferry_asl::{AslError, Event, Outcome, Runner, DEFAULT_STATE_MACHINE_ARN};
use serde_json::{json, Value};

use crate::common::{failure, load, output, runner, Fake};

fn looping(limit: i64, name: Value) -> Value {
    json!({"StartAt": "Apply", "States": {
        "Apply": {"Type": "Task", "Resource": "apply", "ResultPath": null, "Next": "More?"},
        "More?": {"Type": "Choice", "Choices": [{"Variable": "$.round", "NumericLessThan": limit, "Next": "ContinueAsNew"}], "Default": "Done"},
        "ContinueAsNew": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
            "Parameters": {
                "StateMachineArn.$": "$$.StateMachine.Id",
                "Input": {"round.$": "States.MathAdd($.round, 1)", "task.$": "$.task",
                          "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id"},
                "Name": name
            },
            "ResultPath": "$.started", "Next": "Handoff"},
        "Handoff": {"Type": "Succeed"},
        "Done": {"Type": "Pass", "Result": "finished", "ResultPath": "$.status", "End": true}
    }})
}

#[tokio::test]
async fn chain_runs_queued_executions_in_order() {
    let fake = Fake::new(|_| Ok(json!({})));
    let def = looping(
        3,
        json!({"n.$": "States.Format('task-{}-round-{}', $.task, $.round)"})["n.$"].clone(),
    );
    // Name built by an intrinsic needs the ".$" key.
    let mut def = def;
    let params = def["States"]["ContinueAsNew"]["Parameters"]
        .as_object_mut()
        .unwrap();
    params.remove("Name");
    params.insert(
        "Name.$".into(),
        json!("States.Format('task-{}-round-{}', $.task, $.round)"),
    );
    let outcome = runner(def, &fake)
        .run("first", json!({"round": 0, "task": "t"}))
        .await
        .unwrap();

    let out = output(&outcome);
    assert_eq!(out["round"], json!(3));
    assert_eq!(out["status"], json!("finished"));
    assert!(out["AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"]
        .as_str()
        .unwrap()
        .ends_with(":execution:ferry:task-t-round-1"));

    let started: Vec<&str> = outcome
        .history()
        .iter()
        .filter_map(|e| match e {
            Event::ExecutionStarted { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        vec![
            "first",
            "task-t-round-0",
            "task-t-round-1",
            "task-t-round-2"
        ]
    );
    let executions: Vec<String> = fake.calls().iter().map(|c| c.execution.clone()).collect();
    assert_eq!(
        executions,
        vec![
            "first",
            "task-t-round-0",
            "task-t-round-1",
            "task-t-round-2"
        ]
    );
    assert_eq!(
        outcome
            .entered_states()
            .iter()
            .filter(|s| **s == "Apply")
            .count(),
        4
    );
}

#[tokio::test]
async fn start_execution_answers_at_once() {
    let fake = Fake::new(|_| Ok(json!({})));
    let outcome = runner(looping(1, json!("second")), &fake)
        .run("first", json!({"round": 0, "task": "t"}))
        .await
        .unwrap();
    // The history of the first execution shows the handoff result before the second starts.
    let queued = outcome
        .history()
        .iter()
        .position(|e| matches!(e, Event::ExecutionQueued { .. }))
        .unwrap();
    let second = outcome
        .history()
        .iter()
        .position(|e| {
            *e == Event::ExecutionStarted {
                name: "second".into(),
            }
        })
        .unwrap();
    let first_done = outcome
        .history()
        .iter()
        .position(|e| {
            *e == Event::ExecutionSucceeded {
                name: "first".into(),
            }
        })
        .unwrap();
    assert!(queued < first_done && first_done < second);
    assert!(outcome.is_succeeded());
}

#[tokio::test]
async fn the_outcome_is_the_last_executions() {
    // The second round fails: the run fails even though the first execution succeeded.
    let fake = Fake::new(|c| {
        if c.execution == "second" {
            Err(ferry_asl::TaskFailure::new("Ferry.BinlogPurged", "gone"))
        } else {
            Ok(json!({}))
        }
    });
    let outcome = runner(looping(5, json!("second")), &fake)
        .run("first", json!({"round": 0, "task": "t"}))
        .await
        .unwrap();
    assert_eq!(failure(&outcome).0, "Ferry.BinlogPurged");
    assert!(outcome.history().contains(&Event::ExecutionSucceeded {
        name: "first".into()
    }));
}

#[tokio::test]
async fn another_state_machine_is_refused() {
    let mut def = looping(3, json!("x"));
    def["States"]["ContinueAsNew"]["Parameters"]["StateMachineArn.$"] = json!("$.other");
    let err = runner(def, &Fake::echo())
        .run("first", json!({"round": 0, "task": "t", "other": "arn:aws:states:us-east-1:1:stateMachine:else"}))
        .await
        .unwrap_err();
    assert!(matches!(err, AslError::Refused { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("ContinueAsNew")
            && msg.contains("StateMachineArn")
            && msg.contains(DEFAULT_STATE_MACHINE_ARN),
        "{msg}"
    );
}

#[tokio::test]
async fn the_chain_is_bounded() {
    let fake = Fake::new(|_| Ok(json!({})));
    let def = looping(i64::MAX, json!(null));
    let err = Runner::new(load(def), fake)
        .retry_time_scale(0.0)
        .max_executions(5)
        .run("first", json!({"round": 0, "task": "t"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AslError::ChainLimit { limit: 5, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn reusing_an_execution_name_fails_like_step_functions() {
    let fake = Fake::new(|_| Ok(json!({})));
    let outcome: Outcome = runner(looping(5, json!("same")), &fake)
        .run("first", json!({"round": 0, "task": "t"}))
        .await
        .unwrap();
    assert_eq!(
        failure(&outcome).0,
        "StepFunctions.ExecutionAlreadyExistsException"
    );
}

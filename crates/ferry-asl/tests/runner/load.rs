//! Load-time validation and refusals.

use std::collections::HashMap;

use ferry_asl::{AslError, Definition};
use serde_json::{json, Value};

use crate::common::load_err;

fn one(state: Value) -> Value {
    json!({"StartAt": "S", "States": {"S": state}})
}

#[test]
fn unsupported_state_type() {
    let e = load_err(one(
        json!({"Type": "Parallel", "Branches": [], "End": true}),
    ));
    assert!(e.starts_with("state \"S\": field \"Type\" is \"Parallel\", which is not supported by Ferry's embedded runner (supported: Task"), "{e}");
}

#[test]
fn unknown_and_unsupported_fields() {
    let e = load_err(one(json!({"Type": "Pass", "Nxt": "S", "End": true})));
    assert!(e.starts_with("state \"S\": field \"Nxt\" is not supported by Ferry's embedded runner (supported on a Pass state: "), "{e}");
    let e = load_err(
        json!({"StartAt": "FullCopy", "States": {"FullCopy": {"Type": "Map", "ToleratedFailurePercentage": 5,
        "ItemProcessor": {"StartAt": "C", "States": {"C": {"Type": "Succeed"}}}, "End": true}}}),
    );
    assert!(e.starts_with("state \"FullCopy\": field \"ToleratedFailurePercentage\" is not supported by Ferry's embedded runner (supported"), "{e}");
    let e = load_err(one(
        json!({"Type": "Task", "Resource": "r", "HeartbeatSeconds": 5, "End": true}),
    ));
    assert!(e.contains("\"HeartbeatSeconds\""), "{e}");
    let e = load_err(json!({"StartAt": "S", "Foo": 1, "States": {"S": {"Type": "Succeed"}}}));
    assert!(e.starts_with("state machine: field \"Foo\""), "{e}");
}

#[test]
fn distributed_map_is_refused() {
    let e = load_err(one(
        json!({"Type": "Map", "ItemReader": {"Resource": "arn:aws:states:::s3:getObject"},
        "ItemProcessor": {"StartAt": "C", "States": {"C": {"Type": "Succeed"}}}, "End": true}),
    ));
    assert!(e.contains("\"ItemReader\" is not supported"), "{e}");
    let e = load_err(one(json!({"Type": "Map",
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "C", "States": {"C": {"Type": "Succeed"}}}, "End": true})));
    assert!(
        e.contains("ItemProcessor.ProcessorConfig.ExecutionType"),
        "{e}"
    );
    let e = load_err(one(json!({"Type": "Map",
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "C", "States": {"C": {"Type": "Succeed"}}}, "End": true})));
    assert!(
        e.contains("ItemProcessor.ProcessorConfig.Mode") && e.contains("INLINE"),
        "{e}"
    );
}

#[test]
fn jsonata_is_refused() {
    let e = load_err(
        json!({"QueryLanguage": "JSONata", "StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
    );
    assert!(e.contains("QueryLanguage") && e.contains("JSONPath"), "{e}");
    let e = load_err(one(
        json!({"Type": "Pass", "QueryLanguage": "JSONata", "End": true}),
    ));
    assert!(e.starts_with("state \"S\": field \"QueryLanguage\""), "{e}");
    let e = load_err(one(
        json!({"Type": "Task", "Resource": "r", "Arguments": {}, "End": true}),
    ));
    assert!(e.contains("\"Arguments\""), "{e}");
}

#[test]
fn transitions_are_checked() {
    let e = load_err(json!({"StartAt": "Nope", "States": {"S": {"Type": "Succeed"}}}));
    assert!(e.contains("StartAt") && e.contains("Nope"), "{e}");
    let e = load_err(one(json!({"Type": "Pass", "Next": "Missing"})));
    assert_eq!(
        e,
        "state \"S\": field \"Next\" names \"Missing\", which is not a state"
    );
    let e = load_err(one(json!({"Type": "Pass"})));
    assert!(e.contains("exactly one"), "{e}");
    let e = load_err(one(json!({"Type": "Pass", "Next": "S", "End": true})));
    assert!(e.contains("exactly one"), "{e}");
    let e = load_err(
        json!({"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": "r", "End": true,
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Gone"}]}}}),
    );
    assert!(e.contains("Catch[0].Next") && e.contains("Gone"), "{e}");
    let e = load_err(
        json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "S"}], "Default": "Gone"}, "S": {"Type": "Succeed"}}}),
    );
    assert!(e.contains("\"Default\"") && e.contains("Gone"), "{e}");
    let e = load_err(
        json!({"StartAt": "S", "States": {"S": {"Type": "Succeed"}, "Orphan": {"Type": "Succeed"}}}),
    );
    assert!(e.contains("Orphan") && e.contains("not reachable"), "{e}");
    let e = load_err(one(json!({"Type": "Succeed", "Next": "S"})));
    assert!(e.contains("\"Next\" is not supported"), "{e}");
}

#[test]
fn map_processor_is_its_own_scope_and_names_are_unique() {
    let e = load_err(json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemProcessor": {"StartAt": "In", "States": {"In": {"Type": "Pass", "Next": "After"}}}, "Next": "After"},
        "After": {"Type": "Succeed"}
    }}));
    assert!(
        e.contains("state \"In\"") && e.contains("in this ItemProcessor"),
        "{e}"
    );
    let e = load_err(json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemProcessor": {"StartAt": "M", "States": {"M": {"Type": "Succeed"}}}, "End": true}
    }}));
    assert!(e.contains("unique"), "{e}");
}

#[test]
fn retry_and_catch_are_checked() {
    let e = load_err(one(json!({"Type": "Task", "Resource": "r", "End": true,
        "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["E"]}]})));
    assert!(
        e.contains("Retry[0].ErrorEquals") && e.contains("States.ALL"),
        "{e}"
    );
    let e = load_err(one(
        json!({"Type": "Task", "Resource": "r", "End": true, "Retry": [{"ErrorEquals": ["E"], "BackoffRate": 0.5}]}),
    ));
    assert!(e.contains("Retry[0].BackoffRate"), "{e}");
    let e = load_err(one(
        json!({"Type": "Task", "Resource": "r", "End": true, "Retry": [{"ErrorEquals": ["E"], "MaxAttempts": -1}]}),
    ));
    assert!(e.contains("Retry[0].MaxAttempts"), "{e}");
    let e = load_err(one(
        json!({"Type": "Task", "Resource": "r", "End": true, "Retry": [{"ErrorEquals": []}]}),
    ));
    assert!(e.contains("Retry[0].ErrorEquals"), "{e}");
    let e = load_err(one(
        json!({"Type": "Task", "Resource": "r", "End": true, "Catch": [{"ErrorEquals": ["E"], "Next": "S", "Bogus": 1}]}),
    ));
    assert!(e.contains("Catch[0].Bogus"), "{e}");
}

#[test]
fn paths_and_templates_are_checked() {
    let e = load_err(one(
        json!({"Type": "Pass", "InputPath": "$.items[*]", "End": true}),
    ));
    assert!(e.contains("\"InputPath\"") && e.contains("wildcard"), "{e}");
    let e = load_err(one(
        json!({"Type": "Pass", "Parameters": {"a": {"b.$": "$..x"}}, "End": true}),
    ));
    assert!(
        e.contains("\"Parameters.a.b.$\"") && e.contains("recursive"),
        "{e}"
    );
    let e = load_err(one(
        json!({"Type": "Pass", "ResultPath": "$$.x", "End": true}),
    ));
    assert!(e.contains("\"ResultPath\""), "{e}");
    let e = load_err(one(
        json!({"Type": "Pass", "Parameters": {"x.$": 5}, "End": true}),
    ));
    assert!(e.contains("\"Parameters.x.$\""), "{e}");
}

#[test]
fn unknown_intrinsic_is_refused() {
    let e = load_err(one(
        json!({"Type": "Pass", "Parameters": {"h.$": "States.Hash($.a, 'SHA-256')"}, "End": true}),
    ));
    assert!(e.starts_with("state \"S\": field \"Parameters.h.$\" uses intrinsic function \"States.Hash\", which is not supported"), "{e}");
}

#[test]
fn choice_rules_are_checked() {
    let e = load_err(
        json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "StringContains": "x", "Next": "S"}]}, "S": {"Type": "Succeed"}}}),
    );
    assert!(
        e.starts_with("state \"C\": field \"Choices[0].StringContains\""),
        "{e}"
    );
}

#[test]
fn resources_are_checked() {
    let e = load_err(one(
        json!({"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
        "Parameters": {"StateMachineArn": "x"}, "End": true}),
    ));
    assert!(e.contains("\"Resource\"") && e.contains(".sync"), "{e}");
    let e = load_err(one(
        json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "End": true}),
    ));
    assert!(e.contains("waitForTaskToken"), "{e}");
    let e = load_err(one(
        json!({"Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
        "Parameters": {"StateMachineArn": "x", "Inputs": {}}, "End": true}),
    ));
    assert!(e.contains("Parameters.Inputs"), "{e}");
    let e = load_err(one(json!({"Type": "Task", "End": true})));
    assert!(e.contains("\"Resource\" is missing"), "{e}");
}

#[test]
fn wait_and_fail_fields_are_checked() {
    let e = load_err(one(
        json!({"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": true}),
    ));
    assert!(e.contains("cannot be combined"), "{e}");
    let e = load_err(one(json!({"Type": "Wait", "End": true})));
    assert!(e.contains("\"Seconds\" is missing"), "{e}");
    let e = load_err(one(
        json!({"Type": "Wait", "Timestamp": "soon", "End": true}),
    ));
    assert!(e.contains("\"Timestamp\""), "{e}");
    let e = load_err(one(
        json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}),
    ));
    assert!(
        e.contains("\"Error\" cannot be used together with \"ErrorPath\""),
        "{e}"
    );
}

#[test]
fn placeholders_are_listed_substituted_and_required() {
    let text = r#"{"StartAt": "Copy", "States": {"Copy": {"Type": "Task", "Resource": "${CopyChunkFunctionArn}", "Next": "Plan"},
        "Plan": {"Type": "Task", "Resource": "${PlanFunctionArn}", "End": true}}}"#;
    let names: Vec<String> = Definition::placeholders(text).into_iter().collect();
    assert_eq!(names, vec!["CopyChunkFunctionArn", "PlanFunctionArn"]);

    let subs = HashMap::from([
        (
            "CopyChunkFunctionArn".to_string(),
            "ferry:copy-chunk".to_string(),
        ),
        ("PlanFunctionArn".to_string(), "ferry:plan".to_string()),
        ("Unused".to_string(), "x".to_string()),
    ]);
    let def = Definition::from_json(text, &subs).unwrap();
    assert_eq!(
        def.resources().into_iter().collect::<Vec<_>>(),
        vec!["ferry:copy-chunk", "ferry:plan"]
    );
    assert_eq!(def.start_at(), "Copy");

    let partial = HashMap::from([("PlanFunctionArn".to_string(), "p".to_string())]);
    let err = Definition::from_json(text, &partial).unwrap_err();
    assert_eq!(
        err,
        AslError::MissingSubstitution {
            names: vec!["CopyChunkFunctionArn".into()]
        }
    );
    assert!(err.to_string().contains("${CopyChunkFunctionArn}"), "{err}");
}

#[test]
fn invalid_json_is_an_error() {
    let err = Definition::from_json("{\"StartAt\": ", &HashMap::new()).unwrap_err();
    assert!(matches!(err, AslError::Json { .. }));
}

#[test]
fn introspection_lists_states_and_handled_errors() {
    let def = Definition::from_json(
        &json!({"StartAt": "M", "States": {
            "M": {"Type": "Map", "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r",
                "Retry": [{"ErrorEquals": ["Ferry.Transient"]}], "End": true}}},
                "Catch": [{"ErrorEquals": ["Ferry.ChunkFailed", "States.ALL"], "Next": "F"}], "Next": "F"},
            "F": {"Type": "Fail", "Error": "X"}
        }})
        .to_string(),
        &HashMap::new(),
    );
    // States.ALL must be alone in its ErrorEquals.
    assert!(def.is_err());
    let def = Definition::from_json(
        &json!({"StartAt": "M", "States": {
            "M": {"Type": "Map", "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r",
                "Retry": [{"ErrorEquals": ["Ferry.Transient"]}], "End": true}}},
                "Catch": [{"ErrorEquals": ["Ferry.ChunkFailed"], "Next": "F"}], "Next": "F"},
            "F": {"Type": "Fail", "Error": "X"}
        }})
        .to_string(),
        &HashMap::new(),
    )
    .unwrap();
    assert_eq!(
        def.state_names().into_iter().collect::<Vec<_>>(),
        vec!["F", "M", "T"]
    );
    assert_eq!(
        def.handled_errors().into_iter().collect::<Vec<_>>(),
        vec!["Ferry.ChunkFailed", "Ferry.Transient"]
    );
}

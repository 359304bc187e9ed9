//! Input and output processing, in the official order.

use serde_json::json;

use crate::common::{failure, output, run, Fake};

#[tokio::test]
async fn processing_runs_in_the_official_order() {
    let fake = Fake::new(|c| {
        let x = c.input["x"].as_i64().unwrap();
        Ok(json!({"sum": x + 1, "noise": "dropped by ResultSelector"}))
    });
    let def = json!({
        "StartAt": "T",
        "States": {"T": {
            "Type": "Task", "Resource": "r",
            "InputPath": "$.in",
            "Parameters": {"x.$": "$.v", "const": "c"},
            "ResultSelector": {"s.$": "$.sum"},
            "ResultPath": "$.out.res",
            "OutputPath": "$.out",
            "End": true
        }}
    });
    let outcome = run(
        def,
        &fake,
        json!({"in": {"v": 5}, "out": {"kept": true}, "other": 1}),
    )
    .await;
    // Parameters saw the InputPath-filtered input; ResultPath merged into the *raw* input.
    assert_eq!(fake.calls()[0].input, json!({"x": 5, "const": "c"}));
    assert_eq!(output(&outcome), &json!({"kept": true, "res": {"s": 6}}));
}

#[tokio::test]
async fn result_path_null_discards_and_dollar_replaces() {
    let fake = Fake::new(|_| Ok(json!("result")));
    let def = |rp: serde_json::Value| json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "ResultPath": rp, "End": true}}});
    let input = json!({"a": 1});
    assert_eq!(
        output(&run(def(json!(null)), &fake, input.clone()).await),
        &input
    );
    assert_eq!(
        output(&run(def(json!("$")), &fake, input.clone()).await),
        &json!("result")
    );
    assert_eq!(
        output(&run(def(json!("$.x.y")), &fake, input).await),
        &json!({"a": 1, "x": {"y": "result"}})
    );
}

#[tokio::test]
async fn null_input_and_output_paths_give_empty_objects() {
    let fake = Fake::echo();
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "InputPath": null, "ResultPath": "$.r", "Next": "S"},
        "S": {"Type": "Succeed", "OutputPath": null}
    }});
    let outcome = run(def, &fake, json!({"a": 1})).await;
    assert_eq!(fake.calls()[0].input, json!({}));
    assert_eq!(output(&outcome), &json!({}));
}

#[tokio::test]
async fn bad_path_is_a_runtime_error_that_catch_does_not_see() {
    let fake = Fake::echo();
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "Parameters": {"x.$": "$.missing"},
              "Retry": [{"ErrorEquals": ["States.ALL"]}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
        "Caught": {"Type": "Succeed"}
    }});
    let outcome = run(def, &fake, json!({})).await;
    let (error, cause) = failure(&outcome);
    assert_eq!(error, "States.Runtime");
    assert!(
        cause.contains("\"T\"") && cause.contains("$.missing"),
        "{cause}"
    );
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn missing_input_path_fails_with_state_name() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "InputPath": "$.nope", "End": true}}});
    let outcome = run(def, &Fake::echo(), json!({})).await;
    let (error, cause) = failure(&outcome);
    assert_eq!(error, "States.Runtime");
    assert!(
        cause.contains("\"P\"") && cause.contains("InputPath"),
        "{cause}"
    );
}

#[tokio::test]
async fn result_path_into_a_non_object_is_a_runtime_error() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 1, "ResultPath": "$.a.b", "End": true}}});
    let outcome = run(def, &Fake::echo(), json!({"a": 5})).await;
    assert_eq!(failure(&outcome).0, "States.Runtime");
}

#[tokio::test]
async fn intrinsics_in_parameters() {
    let fake = Fake::echo();
    let def = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "r",
        "Parameters": {
            "msg.$": "States.Format('table {} chunk {}', $.table, $.chunk)",
            "parsed.$": "States.StringToJson($.raw)",
            "text.$": "States.JsonToString($.obj)",
            "list.$": "States.Array($.chunk, 'x', States.MathAdd($.chunk, 10))",
            "next.$": "States.MathAdd($.chunk, 1)",
            "count.$": "States.ArrayLength($.items)",
            "id.$": "States.UUID()"
        },
        "End": true
    }}});
    let outcome = run(def, &fake, json!({"table": "t1", "chunk": 4, "raw": "{\"k\":[1]}", "obj": {"a": 1}, "items": [1, 2, 3]})).await;
    let out = output(&outcome);
    assert_eq!(out["msg"], json!("table t1 chunk 4"));
    assert_eq!(out["parsed"], json!({"k": [1]}));
    assert_eq!(out["text"], json!("{\"a\":1}"));
    assert_eq!(out["list"], json!([4, "x", 14]));
    assert_eq!(out["next"], json!(5));
    assert_eq!(out["count"], json!(3));
    assert_eq!(out["id"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn failing_intrinsic_is_a_runtime_error() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"x.$": "States.StringToJson($.s)"}, "End": true}}});
    let outcome = run(def, &Fake::echo(), json!({"s": "{not json"})).await;
    let (error, cause) = failure(&outcome);
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("States.StringToJson"), "{cause}");
}

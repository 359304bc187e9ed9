//! Map: order, concurrency bound, selectors, failure, Retry/Catch on the Map.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_asl::{Event, TaskFailure};
use futures::FutureExt;
use serde_json::{json, Value};

use crate::common::{failure, output, run, Fake};

fn map_machine(max_concurrency: u64) -> Value {
    json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.chunks", "MaxConcurrency": max_concurrency,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Copy", "States": {
            "Copy": {"Type": "Task", "Resource": "copy", "End": true}
        }},
        "ResultPath": "$.copied", "End": true
    }}})
}

/// A fake that sleeps a little (longer for earlier items) and records how many run at once.
fn measuring(in_flight: Arc<AtomicUsize>, peak: Arc<AtomicUsize>) -> Arc<Fake> {
    Fake::asynchronous(move |call| {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let n = call.input.as_u64().unwrap();
            tokio::time::sleep(Duration::from_millis(20 - n % 20)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(json!(n * 10))
        }
        .boxed()
    })
}

#[tokio::test]
async fn results_keep_item_order_and_concurrency_is_bounded() {
    let items: Vec<u64> = (0..20).collect();
    let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let fake = measuring(in_flight, peak.clone());
    let outcome = run(map_machine(3), &fake, json!({"chunks": items})).await;
    let expected: Vec<u64> = (0..20).map(|n| n * 10).collect();
    assert_eq!(output(&outcome)["copied"], json!(expected));
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert_eq!(fake.calls().len(), 20);
}

#[tokio::test]
async fn zero_max_concurrency_is_unbounded() {
    let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let fake = measuring(in_flight, peak.clone());
    run(
        map_machine(0),
        &fake,
        json!({"chunks": (0..10).collect::<Vec<u64>>()}),
    )
    .await;
    assert_eq!(peak.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn empty_items_give_empty_results() {
    let outcome = run(map_machine(2), &Fake::echo(), json!({"chunks": []})).await;
    assert_eq!(output(&outcome)["copied"], json!([]));
}

#[tokio::test]
async fn item_selector_sees_state_input_and_map_item_context() {
    let fake = Fake::echo();
    let def = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "InputPath": "$.task", "ItemsPath": "$.tables",
        "ItemSelector": {"table.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index", "task.$": "$.id"},
        "ItemProcessor": {"StartAt": "Copy", "States": {"Copy": {"Type": "Task", "Resource": "copy", "End": true}}},
        "ResultSelector": {"n.$": "States.ArrayLength($)", "all.$": "$"},
        "ResultPath": "$.result", "OutputPath": "$.result", "End": true
    }}});
    let outcome = run(
        def,
        &fake,
        json!({"task": {"id": "t1", "tables": ["a", "b"]}}),
    )
    .await;
    assert_eq!(
        output(&outcome),
        &json!({"n": 2, "all": [{"table": "a", "index": 0, "task": "t1"}, {"table": "b", "index": 1, "task": "t1"}]})
    );
}

#[tokio::test]
async fn legacy_iterator_and_parameters() {
    let def = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "Parameters": {"v.$": "$$.Map.Item.Value"},
        "Iterator": {"StartAt": "P", "States": {"P": {"Type": "Pass", "OutputPath": "$.v", "End": true}}},
        "End": true
    }}});
    let outcome = run(def, &Fake::echo(), json!([1, 2, 3])).await;
    assert_eq!(output(&outcome), &json!([1, 2, 3]));
}

#[tokio::test]
async fn iteration_failure_fails_the_map_and_stops_the_rest() {
    let fake = Fake::new(|c| {
        if c.input == json!(2) {
            Err(TaskFailure::new("Ferry.ChunkFailed", "chunk 2"))
        } else {
            Ok(c.input.clone())
        }
    });
    let outcome = run(map_machine(1), &fake, json!({"chunks": [0, 1, 2, 3, 4, 5]})).await;
    assert_eq!(failure(&outcome), ("Ferry.ChunkFailed", "chunk 2"));
    assert_eq!(
        fake.calls().len(),
        3,
        "items after the failure were not started"
    );
    assert!(outcome
        .history()
        .iter()
        .any(|e| matches!(e, Event::MapIterationFailed { index: 2, .. })));
}

#[tokio::test]
async fn iteration_failure_cancels_in_flight_iterations() {
    let finished = Arc::new(AtomicUsize::new(0));
    let done = finished.clone();
    let fake = Fake::asynchronous(move |c| {
        let done = done.clone();
        async move {
            if c.input == json!(0) {
                return Err(TaskFailure::new("Boom", ""));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            done.fetch_add(1, Ordering::SeqCst);
            Ok(json!(1))
        }
        .boxed()
    });
    let outcome = run(map_machine(0), &fake, json!({"chunks": [0, 1, 2, 3]})).await;
    assert_eq!(failure(&outcome).0, "Boom");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(finished.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn retry_and_catch_on_the_map_itself() {
    let fake = Fake::new(|c| {
        if c.input == json!(1) && c.retry_count == 0 {
            Err(TaskFailure::new("Flaky", ""))
        } else {
            Ok(c.input.clone())
        }
    });
    // The Map retries as a whole: iteration tasks restart with retry_count 0, so item 1 fails again.
    let def = json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "MaxConcurrency": 1, "ItemsPath": "$.items",
              "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "End": true}}},
              "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 2}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Recover"}],
              "End": true},
        "Recover": {"Type": "Pass", "End": true}
    }});
    let outcome = run(def, &fake, json!({"items": [0, 1]})).await;
    assert_eq!(fake.calls().len(), 6);
    assert_eq!(output(&outcome)["err"]["Error"], json!("Flaky"));
    assert_eq!(
        outcome
            .entered_states()
            .iter()
            .filter(|s| **s == "M")
            .count(),
        1
    );
    assert_eq!(
        outcome.entered_states().last(),
        Some(&"Recover"),
        "{:#?}",
        outcome.history()
    );
}

#[tokio::test]
async fn fail_state_inside_an_iteration_is_catchable_on_the_map() {
    let def = json!({"StartAt": "M", "States": {
        "M": {"Type": "Map",
              "ItemProcessor": {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Ferry.Bad", "Cause": "no key"}}},
              "Catch": [{"ErrorEquals": ["Ferry.Bad"], "Next": "Recover"}], "End": true},
        "Recover": {"Type": "Succeed"}
    }});
    let outcome = run(def, &Fake::echo(), json!([1])).await;
    assert_eq!(
        output(&outcome),
        &json!({"Error": "Ferry.Bad", "Cause": "no key"})
    );
}

#[tokio::test]
async fn items_path_must_be_an_array() {
    let outcome = run(
        map_machine(1),
        &Fake::echo(),
        json!({"chunks": {"not": "array"}}),
    )
    .await;
    assert_eq!(failure(&outcome).0, "States.Runtime");
}

#[tokio::test]
async fn max_concurrency_path() {
    let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let fake = measuring(in_flight, peak.clone());
    let def = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.chunks", "MaxConcurrencyPath": "$.parallel",
        "ItemProcessor": {"StartAt": "Copy", "States": {"Copy": {"Type": "Task", "Resource": "copy", "End": true}}},
        "End": true
    }}});
    run(
        def,
        &fake,
        json!({"chunks": (0..8).collect::<Vec<u64>>(), "parallel": 2}),
    )
    .await;
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

//! CloudWatch Embedded Metric Format: one JSON line on stdout per stage call
//! that CloudWatch Logs turns into metrics (namespace `Ferry`), without an API
//! call from the function. The SAM template's lag alarm reads `LagSeconds`.
//!
//! Invariant: metrics come only from a stage's *output* (never re-measured
//! here), each with dimension sets `[Stage]` (what alarms use) and
//! `[Stage, TaskId]` (per-task graphs).

use ferry_core::Stage;
use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "Ferry";

/// One metric taken from a stage's output.
pub struct MetricSource {
    pub stage: Stage,
    /// The output must have this field too (tells a copy worker's output from a summary's).
    pub when: &'static str,
    pub field: &'static str,
    pub metric: &'static str,
    pub unit: &'static str,
    /// Multiplies the output's value (milliseconds to seconds: 0.001).
    pub scale: f64,
}

const fn m(
    stage: Stage,
    when: &'static str,
    field: &'static str,
    metric: &'static str,
    unit: &'static str,
) -> MetricSource {
    MetricSource {
        stage,
        when,
        field,
        metric,
        unit,
        scale: 1.0,
    }
}

/// Every metric. A field missing from an output is skipped.
pub const METRICS: &[MetricSource] = &[
    // A copy worker's output `{"copied","rows","remaining"}`: rows copied by this call.
    m(Stage::CopyChunk, "copied", "rows", "RowsCopied", "Count"),
    // The copy summary `{"remaining","done","failed","total","rows"}`.
    m(
        Stage::CopyChunk,
        "total",
        "remaining",
        "ChunksRemaining",
        "Count",
    ),
    m(Stage::CopyChunk, "total", "failed", "ChunksFailed", "Count"),
    // An incremental slice `{"applied","lag_ms",...}` of the forward or reverse link.
    m(
        Stage::IncrementalApply,
        "applied",
        "applied",
        "RowsApplied",
        "Count",
    ),
    MetricSource {
        scale: 0.001,
        ..m(
            Stage::IncrementalApply,
            "lag_ms",
            "lag_ms",
            "LagSeconds",
            "Seconds",
        )
    },
    // A verify call `{"differences",...}` (the `ferry verify` stage).
    m(
        Stage::Verify,
        "differences",
        "differences",
        "VerifyDifferences",
        "Count",
    ),
];

/// The EMF line for a stage's output, or `None` when it carries no metric.
pub fn metrics_line(stage: &str, output: &Value, timestamp_ms: u64) -> Option<String> {
    let mut doc = Map::new();
    let mut defs = Vec::new();
    for m in METRICS
        .iter()
        .filter(|m| m.stage.name() == stage && output.get(m.when).is_some())
    {
        if let Some(v) = output.get(m.field).and_then(Value::as_f64) {
            let v = if m.scale == 1.0 {
                output[m.field].clone()
            } else {
                json!(v * m.scale)
            };
            doc.insert(m.metric.to_string(), v);
            defs.push(json!({"Name": m.metric, "Unit": m.unit}));
        }
    }
    if defs.is_empty() {
        return None;
    }
    let task = output
        .get("task_id")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    doc.insert("Stage".into(), json!(stage));
    doc.insert("TaskId".into(), json!(task));
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Stage"], ["Stage", "TaskId"]],
                "Metrics": defs,
            }],
        }),
    );
    Some(Value::Object(doc).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_output_becomes_rows_copied() {
        let line = metrics_line(
            "copy-chunk",
            &json!({"task_id":"t1","copied":2,"rows":1500,"remaining":3}),
            7,
        )
        .expect("a metric line");
        let v: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["RowsCopied"], 1500);
        assert_eq!(
            v.get("ChunksRemaining"),
            None,
            "a worker's remaining is not the summary's"
        );
        assert_eq!(v["TaskId"], "t1");
        assert_eq!(v["_aws"]["Timestamp"], 7);
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "Ferry");
        assert_eq!(m["Metrics"][0]["Name"], "RowsCopied");
        assert_eq!(m["Dimensions"][0][0], "Stage");
    }

    #[test]
    fn summary_is_not_rows_copied() {
        let out = json!({"task_id":"t","remaining":2,"done":5,"failed":0,"total":7,"rows":9000});
        let v: Value = serde_json::from_str(&metrics_line("copy-chunk", &out, 1).expect("a line"))
            .expect("JSON");
        assert_eq!(v["ChunksRemaining"], 2);
        assert_eq!(v["ChunksFailed"], 0);
        assert_eq!(
            v.get("RowsCopied"),
            None,
            "a summary's rows are a total, not this call's"
        );
    }

    #[test]
    fn no_metric_no_line() {
        assert_eq!(
            metrics_line("plan", &json!({"task_id":"t","chunks":4}), 1),
            None
        );
        assert_eq!(
            metrics_line("copy-chunk", &json!({"task_id":"t","rows":"x"}), 1),
            None
        );
    }

    #[test]
    fn unknown_lag_is_no_metric() {
        let out = json!({"task_id":"t","applied":0,"lag_ms":null});
        let v: Value =
            serde_json::from_str(&metrics_line("incremental-apply", &out, 1).expect("a line"))
                .expect("JSON");
        assert_eq!(v.get("LagSeconds"), None);
        assert_eq!(v["RowsApplied"], 0);
    }

    #[test]
    fn lag_is_in_seconds() {
        let line = metrics_line(
            "incremental-apply",
            &json!({"task_id":"t","applied":5,"lag_ms":1500,"caught_up":true}),
            1,
        )
        .expect("a metric line");
        let v: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["LagSeconds"], 1.5);
        assert_eq!(v["RowsApplied"], 5);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"],
            "Seconds"
        );
    }
}

//! The verify stage's input and output as types, for Rust callers (the switch's
//! final verify); the state machine and the Lambda function send and read the
//! same fields as JSON (see the module comment of [`super`]).
//!
//! [`run_typed`] goes through the JSON stage ([`super::run`]), whose body reads
//! its input field by field: one parser of the input, shared by both callers,
//! and the JSON the state machine sees stays exactly what it was.

use std::time::Instant;

use ferry_core::secret::SecretSource;
use ferry_core::store::ItemStore;
use ferry_core::task::VerifyWhen;
use ferry_core::FerryError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Mode;
use crate::StageEnv;

/// What a verify call is asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyInput {
    pub task_id: String,
    /// Which chunks (default `full`); ignored when `run_id` names the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The state machine's moment: the run due then, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<VerifyWhen>,
    /// Join (or report) this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Start or join the run and answer with one worker item per slot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub begin: bool,
    /// A sample's size in chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u64>,
    /// Repair what the run found and check it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
    /// Bound on each wait for the apply to pass a position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recheck_seconds: Option<u64>,
    /// `Some(false)`: no apply runs during this call (nothing to wait for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_running: Option<bool>,
    /// A fan-out worker: its number, how many there are, and its slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u64>,
}

impl VerifyInput {
    /// An on-demand run of `mode`.
    pub fn on_demand(task_id: impl Into<String>, mode: Mode) -> Self {
        VerifyInput {
            task_id: task_id.into(),
            mode: Some(mode),
            ..VerifyInput::default()
        }
    }
}

fn yes() -> bool {
    true
}

/// What a verify call answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutput {
    pub task_id: String,
    /// False when no run was due (the state machine's moment asked for none).
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub mode: Option<Mode>,
    /// False when the deadline came first: call again, the run goes on.
    pub done: bool,
    #[serde(default)]
    pub tables: u64,
    #[serde(default)]
    pub chunks: u64,
    #[serde(default)]
    pub rows: u64,
    #[serde(default)]
    pub differences: u64,
    #[serde(default)]
    pub unsettled: u64,
    #[serde(default)]
    pub repaired: u64,
    pub clean: bool,
    /// Why the run is not what was asked (`changed` without a clean full run).
    #[serde(default)]
    pub note: Option<String>,
    /// With `begin`: one call per verify slot.
    #[serde(default)]
    pub workers: Option<Vec<VerifyInput>>,
}

/// A verify call with typed input and output.
pub async fn run_typed<S: ItemStore, K: SecretSource>(
    env: &StageEnv<S, K>,
    input: VerifyInput,
    deadline: Instant,
) -> Result<VerifyOutput, FerryError> {
    let out = super::run(env, crate::to_output(&input)?, deadline).await?;
    from_output(out)
}

fn from_output(out: Value) -> Result<VerifyOutput, FerryError> {
    serde_json::from_value(out.clone()).map_err(|e| {
        FerryError::Internal(format!(
            "the verify stage answered what its output type does not read ({e}): {out}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn input_writes_only_what_is_set() {
        let i = VerifyInput::on_demand("t1", Mode::Changed);
        assert_eq!(
            crate::to_output(&i).unwrap(),
            json!({"task_id": "t1", "mode": "changed"})
        );
        let item = json!({"task_id": "t", "run_id": "9", "worker": 1, "workers": 2, "slots": 1,
                          "recheck_seconds": 5});
        let parsed: VerifyInput = serde_json::from_value(item.clone()).unwrap();
        assert_eq!(crate::to_output(&parsed).unwrap(), item);
    }

    #[test]
    fn every_output_shape_reads() {
        let off =
            from_output(json!({"task_id": "t", "enabled": false, "done": true, "clean": true}))
                .unwrap();
        assert!(!off.enabled && off.done && off.clean && off.run_id.is_none());
        let run = from_output(json!({
            "task_id": "t", "run_id": "1", "mode": "full", "done": true, "tables": 2,
            "chunks": 3, "rows": 40, "differences": 1, "unsettled": 0, "repaired": 0,
            "clean": false, "note": null,
            "workers": [{"task_id": "t", "run_id": "1", "worker": 0, "workers": 1, "slots": 1}],
        }))
        .unwrap();
        assert!(run.enabled);
        assert_eq!(
            (run.rows, run.differences, run.mode),
            (40, 1, Some(Mode::Full))
        );
        assert_eq!(run.workers.map(|w| w.len()), Some(1));
        let e = from_output(json!({"task_id": "t"})).unwrap_err();
        assert_eq!(e.name(), "Ferry.Internal");
    }
}

//! The stages: the one list of what a state machine Task can invoke.
//!
//! Everything else that names stages is derived from [`Stage`] or checked
//! against it: the dispatcher in `ferry-stages` matches on it (exhaustively),
//! the embedded state machine substitutes each `${<Stage>FunctionArn}`
//! placeholder with [`Stage::name`], each `functions/<name>` Lambda crate and
//! each SAM function (`Metadata.FerryStage`) is checked against
//! [`Stage::ALL`] by tests, and so is every Task `Resource` of
//! `statemachine/migration.asl.json`.
//!
//! A stage's name is what the state machine and the Lambda function see (the
//! resource a Task resolves to locally, the `ferry-fn-<name>` package, the
//! `stage` field of the task record); the enum is what Rust code matches on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::FerryError;

/// One stage of a migration, as a state machine Task invokes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Precheck: versions, binlog settings, grants, tables (input: the task file).
    GrantCheck,
    /// Register the task, create the schema, split tables into chunks.
    Plan,
    /// The full copy, one leased chunk at a time (and the copy's summary).
    CopyChunk,
    /// One bounded slice of a replication link (forward or reverse).
    IncrementalApply,
    /// The switchover, and which link runs now (`"action": "phase"`).
    Switch,
    /// Stop a task (`"action": "stop"`) or release its records.
    Cleanup,
    /// Compare source and target chunk by chunk.
    Verify,
}

impl Stage {
    /// Every stage, in the order a migration first reaches it.
    pub const ALL: [Stage; 7] = [
        Stage::GrantCheck,
        Stage::Plan,
        Stage::CopyChunk,
        Stage::IncrementalApply,
        Stage::Verify,
        Stage::Switch,
        Stage::Cleanup,
    ];

    /// The name the state machine and the Lambda function use (`copy-chunk`).
    pub const fn name(self) -> &'static str {
        match self {
            Stage::GrantCheck => "grant-check",
            Stage::Plan => "plan",
            Stage::CopyChunk => "copy-chunk",
            Stage::IncrementalApply => "incremental-apply",
            Stage::Switch => "switch",
            Stage::Cleanup => "cleanup",
            Stage::Verify => "verify",
        }
    }

    /// The stage of a name, if Ferry has it.
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The `${...}` placeholder the state machine definition uses for the
    /// stage's function ARN: the name in UpperCamelCase + `FunctionArn`
    /// (`copy-chunk` -> `CopyChunkFunctionArn`).
    pub fn placeholder(self) -> String {
        let mut out = String::new();
        for word in self.name().split('-') {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
        out.push_str("FunctionArn");
        out
    }

    /// The Cargo package of the stage's Lambda function (`functions/<name>`),
    /// which `cargo lambda` names its output after.
    pub fn function_package(self) -> String {
        format!("ferry-fn-{}", self.name())
    }

    /// Placeholder -> stage name, for every stage: the substitutions that turn
    /// the definition's function ARNs into stage names for the embedded runner.
    pub fn substitutions() -> std::collections::HashMap<String, String> {
        Stage::ALL
            .into_iter()
            .map(|s| (s.placeholder(), s.name().to_string()))
            .collect()
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stage {
    type Err = FerryError;

    fn from_str(s: &str) -> Result<Stage, FerryError> {
        Stage::from_name(s).ok_or_else(|| FerryError::Internal(format!("no stage named \"{s}\"")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails to compile when a variant is added without a place here, and
    /// fails when `ALL` lacks it.
    fn position(s: Stage) -> usize {
        match s {
            Stage::GrantCheck => 0,
            Stage::Plan => 1,
            Stage::CopyChunk => 2,
            Stage::IncrementalApply => 3,
            Stage::Verify => 4,
            Stage::Switch => 5,
            Stage::Cleanup => 6,
        }
    }

    #[test]
    fn all_lists_every_stage_once() {
        for (i, s) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(position(s), i, "{s} out of place in Stage::ALL");
        }
    }

    #[test]
    fn names_round_trip_through_text_and_serde() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_name(s.name()), Some(s));
            assert_eq!(s.to_string().parse::<Stage>().unwrap(), s);
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, serde_json::Value::String(s.name().to_string()));
            assert_eq!(serde_json::from_value::<Stage>(json).unwrap(), s);
        }
        let e = "no-such-stage".parse::<Stage>().unwrap_err();
        assert_eq!(e.name(), "Ferry.Internal");
        assert!(e.message().contains("no-such-stage"), "{e}");
    }

    #[test]
    fn placeholders_are_the_template_names() {
        assert_eq!(Stage::GrantCheck.placeholder(), "GrantCheckFunctionArn");
        assert_eq!(
            Stage::IncrementalApply.placeholder(),
            "IncrementalApplyFunctionArn"
        );
        assert_eq!(Stage::Plan.placeholder(), "PlanFunctionArn");
        assert_eq!(Stage::CopyChunk.function_package(), "ferry-fn-copy-chunk");
        assert_eq!(Stage::substitutions().len(), Stage::ALL.len());
    }
}

//! Ferry's core: the task file, task metadata, binlog positions, errors and
//! the ports (traits) that the store and secrets adapters implement. No AWS
//! SDK and no database driver here.

pub mod error;
pub mod model;
pub mod position;
pub mod samples;
pub mod secret;
pub mod store;
pub mod task;

pub use error::{FerryError, Result};

/// The stages, by the name a state machine Task resource resolves to, with the
/// `${...}` placeholder the definition uses for the stage's function ARN.
pub const STAGES: &[(&str, &str)] = &[
    ("grant-check", "GrantCheckFunctionArn"),
    ("plan", "PlanFunctionArn"),
    ("copy-chunk", "CopyChunkFunctionArn"),
    ("incremental-apply", "IncrementalApplyFunctionArn"),
    ("switch", "SwitchFunctionArn"),
    ("cleanup", "CleanupFunctionArn"),
    ("verify", "VerifyFunctionArn"),
];

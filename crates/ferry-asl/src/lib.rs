//! Ferry's embedded Amazon States Language interpreter.
//!
//! Ferry runs `statemachine/migration.asl.json` on AWS Step Functions and, by default,
//! in-process. This crate is the in-process side: [`Definition::from_json`] loads and validates
//! the definition (refusing every construct it does not implement, with the state and field),
//! and [`Runner`] executes it, calling a [`Dispatch`] for each Task.
//!
//! Implemented: Task, Choice, Map (inline), Wait, Pass, Succeed, Fail; Retry and Catch;
//! InputPath, Parameters / ItemSelector, ResultSelector, ResultPath and OutputPath in the
//! official order; the `$$` context object; the intrinsics States.Format, StringToJson,
//! JsonToString, Array, MathAdd, ArrayLength and UUID; and `states:startExecution` of the
//! same state machine (continue-as-new). It is not a general Step Functions emulator.

mod choice;
mod clock;
mod definition;
mod event;
mod intrinsic;
mod path;
mod runner;

pub use definition::{Definition, START_EXECUTION};
pub use event::{Event, Outcome};
pub use runner::{
    Dispatch, EventHook, Runner, TaskCall, TaskFailure, DEFAULT_MAX_EXECUTIONS,
    DEFAULT_STATE_MACHINE_ARN,
};

/// A definition that cannot be loaded, or a run the embedded runner refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AslError {
    #[error("the state machine definition is not valid JSON: {message}")]
    Json { message: String },
    #[error(
        "the state machine definition uses placeholder(s) with no substitution: {}",
        names.iter().map(|n| format!("${{{n}}}")).collect::<Vec<_>>().join(", ")
    )]
    MissingSubstitution { names: Vec<String> },
    /// A load-time refusal; `location` is `state "Name"` or `state machine`.
    #[error("{location}: field \"{field}\" {message}")]
    Invalid {
        location: String,
        field: String,
        message: String,
    },
    /// A run-time refusal (e.g. starting a state machine other than this one).
    #[error("execution \"{execution}\": state \"{state}\": field \"{field}\" {message}")]
    Refused {
        execution: String,
        state: String,
        field: String,
        message: String,
    },
    #[error(
        "execution \"{execution}\": the chain of executions started by states:startExecution exceeded {limit}; \
         check the condition that continues as new, or raise Runner::max_executions"
    )]
    ChainLimit { execution: String, limit: usize },
}

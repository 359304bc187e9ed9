//! What a run reports: its events (history) and its outcome.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One step of an execution's history. The sequence of `StateEntered` names is what tests
/// compare between an embedded run and a Step Functions run of the same definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// An execution began (the first, or one queued by `states:startExecution`).
    ExecutionStarted {
        name: String,
    },
    /// A state started another execution of this state machine (continue-as-new); it runs after
    /// the current one ends.
    ExecutionQueued {
        name: String,
        state: String,
    },
    ExecutionSucceeded {
        name: String,
    },
    ExecutionFailed {
        name: String,
        error: String,
        cause: String,
    },
    StateEntered {
        name: String,
        execution: String,
    },
    /// A state completed and handed its output on (not emitted for a failing state).
    StateExited {
        name: String,
        execution: String,
    },
    /// A task (or the startExecution integration) failed or timed out.
    TaskFailed {
        state: String,
        error: String,
        cause: String,
    },
    /// A retrier matched; `attempt` is the retry number (1 for the first retry) and `delay_ms`
    /// the delay the definition asks for, before `retry_time_scale`.
    Retrying {
        state: String,
        attempt: u32,
        delay_ms: u64,
    },
    /// A catcher matched and the execution goes on at `next`.
    Caught {
        state: String,
        error: String,
        next: String,
    },
    MapIterationStarted {
        state: String,
        index: usize,
    },
    MapIterationFailed {
        state: String,
        index: usize,
        error: String,
        cause: String,
    },
}

/// How a run ended: the outcome of the last execution in the chain, with the history of all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum Outcome {
    Succeeded {
        output: Value,
        history: Vec<Event>,
    },
    Failed {
        error: String,
        cause: String,
        history: Vec<Event>,
    },
}

impl Outcome {
    pub fn history(&self) -> &[Event] {
        match self {
            Outcome::Succeeded { history, .. } | Outcome::Failed { history, .. } => history,
        }
    }

    pub fn is_succeeded(&self) -> bool {
        matches!(self, Outcome::Succeeded { .. })
    }

    /// The names of the states entered, in order, across the chain.
    pub fn entered_states(&self) -> Vec<&str> {
        self.history()
            .iter()
            .filter_map(|e| match e {
                Event::StateEntered { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }
}

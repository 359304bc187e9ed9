//! The Step Functions calls the CLI makes: start a migration execution,
//! describe it, read the states it entered, stop it.
//!
//! Invariant: every execution gets a unique name (`<task>-<time>-<nonce>`,
//! within Step Functions' 80 characters of `[A-Za-z0-9_-]`), because two
//! unnamed starts with the same input collide and a name cannot be reused for
//! 90 days.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::HistoryEventType;
use aws_sdk_sfn::Client;
use ferry_core::FerryError;
use serde::Serialize;
use serde_json::Value;

use crate::aws_error::classify;

/// Step Functions' limit on execution names.
const MAX_NAME: usize = 80;

/// What `DescribeExecution` says about one execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionInfo {
    pub execution_arn: String,
    pub name: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`, `PENDING_REDRIVE`.
    pub status: String,
    pub start_ms: Option<i64>,
    pub stop_ms: Option<i64>,
    pub output: Option<Value>,
    /// The failing error's name (`Ferry.*` when a stage failed) and its cause.
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl ExecutionInfo {
    pub fn is_running(&self) -> bool {
        self.status == "RUNNING"
    }
}

/// A unique execution name for a task: `<task>-<utc ms>-<nonce>`.
pub fn execution_name(task_id: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let suffix = format!(
        "-{}-{:06x}",
        now.as_millis(),
        (now.subsec_nanos() ^ std::process::id()) & 0xff_ffff
    );
    let mut base: String = task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    base.truncate(MAX_NAME - suffix.len());
    if base.is_empty() {
        base.push_str("ferry");
    }
    base + &suffix
}

/// Step Functions client for migration executions.
#[derive(Debug, Clone)]
pub struct StepFunctions {
    client: Client,
}

impl StepFunctions {
    pub fn new(config: &SdkConfig) -> Self {
        StepFunctions {
            client: Client::new(config),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Start an execution of `state_machine_arn` with `input` (the task file);
    /// returns the execution ARN.
    pub async fn start(
        &self,
        state_machine_arn: &str,
        task_id: &str,
        input: &Value,
    ) -> Result<String, FerryError> {
        let name = execution_name(task_id);
        let out = self
            .client
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(&name)
            .input(input.to_string())
            .send()
            .await
            .map_err(|e| error(&format!("start an execution of {state_machine_arn}"), e))?;
        Ok(out.execution_arn)
    }

    pub async fn describe(&self, execution_arn: &str) -> Result<ExecutionInfo, FerryError> {
        let out = self
            .client
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|e| error(&format!("describe execution {execution_arn}"), e))?;
        Ok(ExecutionInfo {
            execution_arn: out.execution_arn().to_string(),
            name: out.name().unwrap_or_default().to_string(),
            status: out.status().as_str().to_string(),
            start_ms: out.start_date().to_millis().ok(),
            stop_ms: out.stop_date().and_then(|d| d.to_millis().ok()),
            output: out.output().and_then(|o| serde_json::from_str(o).ok()),
            error: out.error().map(str::to_string),
            cause: out.cause().map(str::to_string),
        })
    }

    /// The names of the states the execution entered, in history order.
    pub async fn entered_states(&self, execution_arn: &str) -> Result<Vec<String>, FerryError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_execution_history()
                .execution_arn(execution_arn)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| error(&format!("read the history of {execution_arn}"), e))?;
            for ev in out.events() {
                let entered = matches!(
                    ev.r#type(),
                    HistoryEventType::TaskStateEntered
                        | HistoryEventType::ChoiceStateEntered
                        | HistoryEventType::MapStateEntered
                        | HistoryEventType::PassStateEntered
                        | HistoryEventType::WaitStateEntered
                        | HistoryEventType::SucceedStateEntered
                        | HistoryEventType::FailStateEntered
                        | HistoryEventType::ParallelStateEntered
                );
                if let (true, Some(d)) = (entered, ev.state_entered_event_details()) {
                    names.push(d.name().to_string());
                }
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(names)
    }

    /// Stop a running execution (the stages' own stop flag is the graceful way).
    pub async fn stop(&self, execution_arn: &str, cause: &str) -> Result<(), FerryError> {
        self.client
            .stop_execution()
            .execution_arn(execution_arn)
            .error("Ferry.Stopped")
            .cause(cause)
            .send()
            .await
            .map_err(|e| error(&format!("stop execution {execution_arn}"), e))?;
        Ok(())
    }
}

fn error<E>(action: &str, err: SdkError<E>) -> FerryError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let f = classify(&err);
    if f.transient {
        return FerryError::Transient(format!("Step Functions: cannot {action} now: {}", f.text));
    }
    let hint = match f.code.as_deref() {
        Some("StateMachineDoesNotExist") => {
            ". Pass the stack's StateMachineArn output (--state-machine-arn or FERRY_STATE_MACHINE_ARN)"
        }
        Some("ExecutionDoesNotExist") => ". The execution may be older than 90 days or in another region",
        Some("AccessDeniedException") => ". Grant states:StartExecution/DescribeExecution on the state machine",
        Some("InvalidExecutionInput") => ". The task file must be a JSON object under 256 KB",
        _ => "",
    };
    FerryError::Store(format!("Step Functions: cannot {action}: {}{hint}", f.text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_names_are_valid_and_unique() {
        let long = "shop.to/ob ".repeat(20);
        let name = execution_name(&long);
        assert!(name.len() <= MAX_NAME, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}"
        );
        assert!(name.starts_with("shop_to_ob_"), "{name}");
        assert!(execution_name("").starts_with("ferry-"));
        assert_ne!(
            execution_name("t"),
            execution_name("t"),
            "the time and a nonce make each name new"
        );
    }
}

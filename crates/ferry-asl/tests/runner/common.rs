//! A fake Dispatch and helpers shared by the runner tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_asl::{Definition, Dispatch, Event, Outcome, Runner, TaskCall, TaskFailure};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;

/// A task call as the fake saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub resource: String,
    pub state: String,
    pub execution: String,
    pub retry_count: u32,
    pub input: Value,
}

type Handler = dyn Fn(Call) -> BoxFuture<'static, Result<Value, TaskFailure>> + Send + Sync;

pub struct Fake {
    handler: Box<Handler>,
    calls: Mutex<Vec<Call>>,
}

impl Fake {
    /// A fake whose handler returns a future (for tasks that take time).
    pub fn asynchronous(
        f: impl Fn(Call) -> BoxFuture<'static, Result<Value, TaskFailure>> + Send + Sync + 'static,
    ) -> Arc<Fake> {
        Arc::new(Fake {
            handler: Box::new(f),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// A fake that answers at once.
    pub fn new(
        f: impl Fn(&Call) -> Result<Value, TaskFailure> + Send + Sync + 'static,
    ) -> Arc<Fake> {
        Fake::asynchronous(move |call| {
            let r = f(&call);
            async move { r }.boxed()
        })
    }

    /// A fake that returns its input.
    pub fn echo() -> Arc<Fake> {
        Fake::new(|c| Ok(c.input.clone()))
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Dispatch for Fake {
    fn invoke(
        &self,
        call: TaskCall<'_>,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, TaskFailure>> {
        let call = Call {
            resource: call.resource.to_string(),
            state: call.state_name.to_string(),
            execution: call.execution_name.to_string(),
            retry_count: call.retry_count,
            input,
        };
        self.calls.lock().unwrap().push(call.clone());
        (self.handler)(call)
    }
}

pub fn load(definition: Value) -> Arc<Definition> {
    Arc::new(Definition::from_json(&definition.to_string(), &HashMap::new()).unwrap())
}

pub fn load_err(definition: Value) -> String {
    Definition::from_json(&definition.to_string(), &HashMap::new())
        .unwrap_err()
        .to_string()
}

pub fn runner(definition: Value, fake: &Arc<Fake>) -> Runner {
    Runner::new(load(definition), fake.clone()).retry_time_scale(0.0)
}

/// Runs with delays scaled to zero.
pub async fn run(definition: Value, fake: &Arc<Fake>, input: Value) -> Outcome {
    runner(definition, fake).run("exec-1", input).await.unwrap()
}

pub fn output(outcome: &Outcome) -> &Value {
    match outcome {
        Outcome::Succeeded { output, .. } => output,
        Outcome::Failed { error, cause, .. } => panic!("execution failed: {error}: {cause}"),
    }
}

pub fn failure(outcome: &Outcome) -> (&str, &str) {
    match outcome {
        Outcome::Failed { error, cause, .. } => (error, cause),
        Outcome::Succeeded { output, .. } => panic!("execution succeeded with {output}"),
    }
}

pub fn retry_delays(outcome: &Outcome) -> Vec<u64> {
    outcome
        .history()
        .iter()
        .filter_map(|e| match e {
            Event::Retrying { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .collect()
}

pub fn failing(error: &'static str) -> Arc<Fake> {
    Fake::new(move |_| Err(TaskFailure::new(error, "it broke")))
}

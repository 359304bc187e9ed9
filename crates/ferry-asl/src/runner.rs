//! Executing a [`Definition`]: the state loop, input/output processing, Retry/Catch, Map
//! fan-out and the continue-as-new chain.
//!
//! Data flow in a state, in the official order: raw input -> InputPath -> Parameters (or
//! ItemSelector per Map item) -> task -> ResultSelector -> ResultPath (merged into the *raw*
//! input) -> OutputPath. A Catch applies its own ResultPath to the raw input.
//!
//! States.Runtime errors (a path that does not resolve, a type that cannot be used) are never
//! retried or caught, as in Step Functions: they fail the execution.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::{json, Value};

use crate::choice;
use crate::clock;
use crate::definition::{
    Amount, Branch, Catcher, Definition, Kind, Machine, MapState, Retrier, State, Task, WaitFor,
};
use crate::event::{Event, Outcome};
use crate::path::{ContextSource, Path, Root, Scope, Template};
use crate::{AslError, START_EXECUTION};

pub const DEFAULT_STATE_MACHINE_ARN: &str = "arn:aws:states:local:000000000000:stateMachine:ferry";
pub const DEFAULT_MAX_EXECUTIONS: usize = 10_000;

/// A failed task, like a Lambda function's `errorType` / `errorMessage`. `error` is the name
/// Retry and Catch match; an empty name becomes `States.TaskFailed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
}

impl TaskFailure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> TaskFailure {
        TaskFailure {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

/// What a Task state asks of its [`Dispatch`].
#[derive(Debug, Clone, Copy)]
pub struct TaskCall<'a> {
    pub resource: &'a str,
    pub state_name: &'a str,
    pub execution_name: &'a str,
    /// 0 on the first attempt, then the number of retries so far (`$$.State.RetryCount`).
    pub retry_count: u32,
}

/// Runs the work behind a Task's `Resource` (in Ferry: calls the stage function in-process).
pub trait Dispatch: Send + Sync + 'static {
    fn invoke(
        &self,
        call: TaskCall<'_>,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, TaskFailure>>;
}

/// Called with every event as it happens.
pub type EventHook = Arc<dyn Fn(&Event) + Send + Sync>;

/// Executes a definition. Cheap to clone; one runner can run many executions concurrently.
#[derive(Clone)]
pub struct Runner {
    definition: Arc<Definition>,
    dispatch: Arc<dyn Dispatch>,
    state_machine_arn: String,
    time_scale: f64,
    on_event: Option<EventHook>,
    max_executions: usize,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("state_machine_arn", &self.state_machine_arn)
            .field("time_scale", &self.time_scale)
            .field("max_executions", &self.max_executions)
            .finish_non_exhaustive()
    }
}

impl Runner {
    pub fn new(definition: Arc<Definition>, dispatch: Arc<dyn Dispatch>) -> Runner {
        Runner {
            definition,
            dispatch,
            state_machine_arn: DEFAULT_STATE_MACHINE_ARN.to_string(),
            time_scale: 1.0,
            on_event: None,
            max_executions: DEFAULT_MAX_EXECUTIONS,
        }
    }

    /// The ARN this runner answers to: `$$.StateMachine.Id`, and the only `StateMachineArn`
    /// that `states:startExecution` may name.
    pub fn state_machine_arn(mut self, arn: impl Into<String>) -> Runner {
        self.state_machine_arn = arn.into();
        self
    }

    /// Multiplies every Retry and Wait delay (0.0 makes them immediate). Task and execution
    /// timeouts are not scaled.
    pub fn retry_time_scale(mut self, scale: f64) -> Runner {
        self.time_scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            0.0
        };
        self
    }

    pub fn on_event(mut self, hook: EventHook) -> Runner {
        self.on_event = Some(hook);
        self
    }

    /// The most executions one `run` may chain through `states:startExecution`.
    pub fn max_executions(mut self, limit: usize) -> Runner {
        self.max_executions = limit.max(1);
        self
    }

    /// The ARN of an execution of this state machine.
    pub fn execution_arn(&self, execution_name: &str) -> String {
        match self.state_machine_arn.split_once(":stateMachine:") {
            Some((head, machine)) => format!("{head}:execution:{machine}:{execution_name}"),
            None => format!("{}:{execution_name}", self.state_machine_arn),
        }
    }

    fn state_machine_name(&self) -> &str {
        self.state_machine_arn
            .rsplit(':')
            .next()
            .unwrap_or(&self.state_machine_arn)
    }

    /// Runs an execution, then every execution it (transitively) started with
    /// `states:startExecution`, in order. The outcome is the last execution's; the history is
    /// all of them, each opening with `ExecutionStarted`.
    pub async fn run(&self, execution_name: &str, input: Value) -> Result<Outcome, AslError> {
        let shared = Arc::new(Shared::default());
        lock(&shared.names).insert(execution_name.to_string());
        let mut current = Queued {
            name: execution_name.to_string(),
            input,
        };
        let mut count = 1usize;
        loop {
            let name = current.name.clone();
            let result = self.run_one(&shared, current).await?;
            let next = lock(&shared.queue).pop_front();
            match next {
                Some(q) => {
                    count += 1;
                    if count > self.max_executions {
                        return Err(AslError::ChainLimit {
                            execution: name,
                            limit: self.max_executions,
                        });
                    }
                    current = q;
                }
                None => {
                    let history = std::mem::take(&mut *lock(&shared.history));
                    return Ok(match result {
                        Ok(output) => Outcome::Succeeded { output, history },
                        Err(f) => Outcome::Failed {
                            error: f.error,
                            cause: f.cause,
                            history,
                        },
                    });
                }
            }
        }
    }

    async fn run_one(
        &self,
        shared: &Arc<Shared>,
        queued: Queued,
    ) -> Result<Result<Value, Failure>, AslError> {
        let exec = Exec {
            id: self.execution_arn(&queued.name),
            name: queued.name,
            input: queued.input.clone(),
            start_time: clock::now_rfc3339(),
            state_machine_id: self.state_machine_arn.clone(),
            state_machine_name: self.state_machine_name().to_string(),
            hook: self.on_event.clone(),
            shared: Arc::clone(shared),
        };
        exec.emit(Event::ExecutionStarted {
            name: exec.name.clone(),
        });
        let body = self.run_machine(&exec, &self.definition.machine, queued.input);
        let result = match self.definition.timeout_seconds {
            Some(secs) => match tokio::time::timeout(duration(secs), body).await {
                Ok(r) => r,
                Err(_) => Err(Stop::fail(
                    "States.Timeout",
                    format!("the execution timed out after {secs} seconds"),
                )),
            },
            None => body.await,
        };
        match result {
            Ok(output) => {
                exec.emit(Event::ExecutionSucceeded {
                    name: exec.name.clone(),
                });
                Ok(Ok(output))
            }
            Err(Stop::Fail(f)) => {
                exec.emit(Event::ExecutionFailed {
                    name: exec.name.clone(),
                    error: f.error.clone(),
                    cause: f.cause.clone(),
                });
                Ok(Err(f))
            }
            Err(Stop::Refused(e)) => Err(e),
        }
    }

    /// Runs a machine (the top level or one Map iteration) from StartAt to its end.
    fn run_machine<'a>(
        &'a self,
        exec: &'a Exec,
        machine: &'a Machine,
        input: Value,
    ) -> BoxFuture<'a, Result<Value, Stop>> {
        async move {
            let mut name = machine.start_at.as_str();
            let mut input = input;
            loop {
                let state = machine
                    .states
                    .get(name)
                    .ok_or_else(|| Stop::runtime(name, "the state does not exist".to_string()))?;
                exec.emit(Event::StateEntered {
                    name: state.name.clone(),
                    execution: exec.name.clone(),
                });
                let entered = clock::now_rfc3339();
                let step = self.run_state(exec, state, &entered, input).await?;
                exec.emit(Event::StateExited {
                    name: state.name.clone(),
                    execution: exec.name.clone(),
                });
                match step {
                    Step::Next(next, output) => {
                        name = next;
                        input = output;
                    }
                    Step::End(output) => return Ok(output),
                }
            }
        }
        .boxed()
    }

    async fn run_state<'a>(
        &'a self,
        exec: &'a Exec,
        state: &'a State,
        entered: &str,
        raw: Value,
    ) -> Result<Step<'a>, Stop> {
        let ctx = StateCtx {
            exec,
            state: &state.name,
            entered,
            retry_count: 0,
            item: None,
        };
        match &state.kind {
            Kind::Task(task) => self.run_task(exec, state, task, entered, raw).await,
            Kind::Map(map) => self.run_map(exec, state, map, entered, raw).await,
            Kind::Pass { result } => {
                let effective = input_path(state, &raw, &ctx)?;
                let result = match (result, &state.io.parameters) {
                    (Some(r), _) => r.clone(),
                    (None, Some(t)) => eval_template(t, &effective, &ctx, "Parameters")?,
                    (None, None) => effective,
                };
                let merged = state
                    .io
                    .result_path
                    .apply(raw, result)
                    .map_err(|c| Stop::runtime(&state.name, c))?;
                Ok(advance(state, output_path(state, merged, &ctx)?))
            }
            Kind::Choice { choices, default } => {
                choose(state, choices, default.as_deref(), &raw, &ctx)
            }
            Kind::Wait(wait) => {
                let effective = input_path(state, &raw, &ctx)?;
                let seconds = wait_seconds(state, wait, &effective, &ctx)?;
                self.sleep(seconds).await;
                Ok(advance(state, output_path(state, effective, &ctx)?))
            }
            Kind::Succeed => {
                let effective = input_path(state, &raw, &ctx)?;
                Ok(Step::End(output_path(state, effective, &ctx)?))
            }
            Kind::Fail { error, cause } => {
                let text = |t: &Option<Template>, field: &str| -> Result<String, Stop> {
                    match t {
                        None => Ok(String::new()),
                        Some(t) => match eval_template(t, &raw, &ctx, field)? {
                            Value::String(s) => Ok(s),
                            other => Err(Stop::runtime(
                                &state.name,
                                format!("{field} must resolve to a string, not {other}"),
                            )),
                        },
                    }
                };
                Err(Stop::fail(
                    text(error, "ErrorPath")?,
                    text(cause, "CausePath")?,
                ))
            }
        }
    }

    async fn run_task<'a>(
        &'a self,
        exec: &'a Exec,
        state: &'a State,
        task: &'a Task,
        entered: &str,
        raw: Value,
    ) -> Result<Step<'a>, Stop> {
        let ctx = StateCtx {
            exec,
            state: &state.name,
            entered,
            retry_count: 0,
            item: None,
        };
        let effective = input_path(state, &raw, &ctx)?;
        let timeout = match &task.timeout {
            None => None,
            Some(Amount::Fixed(s)) => Some(*s),
            Some(Amount::Path(p)) => Some(positive_number(
                state,
                p,
                &effective,
                &ctx,
                "TimeoutSecondsPath",
            )?),
        };
        let effective = &effective;
        let attempt = |retry_count: u32| async move {
            let ctx = StateCtx {
                exec,
                state: &state.name,
                entered,
                retry_count,
                item: None,
            };
            // Parameters are evaluated per attempt so `$$.State.RetryCount` is current.
            let params = match &state.io.parameters {
                Some(t) => eval_template(t, effective, &ctx, "Parameters")?,
                None => effective.clone(),
            };
            self.invoke(exec, state, task, params, retry_count, timeout)
                .await
        };
        let result = self
            .with_retry(exec, &state.name, &task.retry, attempt)
            .await;
        finish(exec, state, &ctx, raw, result, &task.catch)
    }

    async fn invoke(
        &self,
        exec: &Exec,
        state: &State,
        task: &Task,
        params: Value,
        retry_count: u32,
        timeout: Option<f64>,
    ) -> Result<Value, Stop> {
        if task.resource == START_EXECUTION {
            return self.start_execution(exec, state, params);
        }
        let call = TaskCall {
            resource: &task.resource,
            state_name: &state.name,
            execution_name: &exec.name,
            retry_count,
        };
        let pending = self.dispatch.invoke(call, params);
        let outcome = match timeout {
            Some(secs) => match tokio::time::timeout(duration(secs), pending).await {
                Ok(r) => r,
                Err(_) => Err(TaskFailure::new(
                    "States.Timeout",
                    format!("the task did not finish within {secs} seconds"),
                )),
            },
            None => pending.await,
        };
        outcome.map_err(|f| {
            let error = if f.error.is_empty() {
                "States.TaskFailed".to_string()
            } else {
                f.error
            };
            exec.emit(Event::TaskFailed {
                state: state.name.clone(),
                error: error.clone(),
                cause: f.cause.clone(),
            });
            Stop::fail(error, f.cause)
        })
    }

    /// `arn:aws:states:::states:startExecution` of this same state machine: queue the new
    /// execution to run after the current one, and answer like Step Functions at once.
    fn start_execution(&self, exec: &Exec, state: &State, params: Value) -> Result<Value, Stop> {
        let refuse = |field: &str, message: String| {
            Stop::Refused(AslError::Refused {
                execution: exec.name.clone(),
                state: state.name.clone(),
                field: format!("Parameters.{field}"),
                message,
            })
        };
        let task_failure = |error: &str, cause: String| {
            exec.emit(Event::TaskFailed {
                state: state.name.clone(),
                error: error.to_string(),
                cause: cause.clone(),
            });
            Stop::fail(error, cause)
        };
        let Value::Object(params) = params else {
            return Err(refuse("", "must resolve to an object".into()));
        };
        let arn = match params.get("StateMachineArn") {
            Some(Value::String(s)) => s.as_str(),
            _ => {
                return Err(refuse(
                    "StateMachineArn",
                    "is missing or not a string".into(),
                ))
            }
        };
        if arn != self.state_machine_arn {
            return Err(refuse(
                "StateMachineArn",
                format!(
                    "is \"{arn}\", but the embedded runner can only start its own state machine \"{}\"",
                    self.state_machine_arn
                ),
            ));
        }
        let input = match params.get("Input") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
                task_failure(
                    "StepFunctions.InvalidExecutionInputException",
                    format!("Input is not valid JSON: {e}"),
                )
            })?,
            Some(v) => v.clone(),
        };
        let name = match params.get("Name") {
            None | Some(Value::Null) => clock::uuid_v4(),
            Some(Value::String(s)) if valid_execution_name(s) => s.clone(),
            Some(other) => {
                return Err(task_failure(
                    "StepFunctions.InvalidNameException",
                    format!("{other} is not a valid execution name (1-80 characters, no whitespace, brackets, wildcards or control characters)"),
                ))
            }
        };
        if !lock(&exec.shared.names).insert(name.clone()) {
            return Err(task_failure(
                "StepFunctions.ExecutionAlreadyExistsException",
                format!("an execution named \"{name}\" already ran in this chain"),
            ));
        }
        lock(&exec.shared.queue).push_back(Queued {
            name: name.clone(),
            input,
        });
        exec.emit(Event::ExecutionQueued {
            name: name.clone(),
            state: state.name.clone(),
        });
        Ok(json!({ "ExecutionArn": self.execution_arn(&name), "StartDate": clock::now_rfc3339() }))
    }

    async fn run_map<'a>(
        &'a self,
        exec: &'a Exec,
        state: &'a State,
        map: &'a MapState,
        entered: &str,
        raw: Value,
    ) -> Result<Step<'a>, Stop> {
        let ctx = StateCtx {
            exec,
            state: &state.name,
            entered,
            retry_count: 0,
            item: None,
        };
        let effective = input_path(state, &raw, &ctx)?;
        let items = match resolve(state, &map.items_path, &effective, &ctx, "ItemsPath")? {
            Value::Array(items) => items,
            other => {
                return Err(Stop::runtime(
                    &state.name,
                    format!(
                        "ItemsPath \"{}\" must resolve to an array, not {other}",
                        map.items_path.text
                    ),
                ))
            }
        };
        let limit = match &map.max_concurrency {
            Amount::Fixed(n) => *n as usize,
            Amount::Path(p) => {
                match resolve(state, p, &effective, &ctx, "MaxConcurrencyPath")?.as_u64() {
                    Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                    None => {
                        return Err(Stop::runtime(
                            &state.name,
                            "MaxConcurrencyPath must resolve to a non-negative integer".into(),
                        ))
                    }
                }
            }
        };
        let (effective_ref, items_ref) = (&effective, &items);
        let attempt = move |retry_count: u32| {
            self.map_iterations(
                exec,
                state,
                map,
                entered,
                retry_count,
                effective_ref,
                items_ref,
                limit,
            )
        };
        let result = self
            .with_retry(exec, &state.name, &map.retry, attempt)
            .await;
        finish(exec, state, &ctx, raw, result, &map.catch)
    }

    /// Runs every item through the item processor, at most `limit` at a time (0: no bound).
    /// Results keep item order; the first failure fails the Map and drops the iterations still
    /// running.
    #[allow(clippy::too_many_arguments)]
    async fn map_iterations(
        &self,
        exec: &Exec,
        state: &State,
        map: &MapState,
        entered: &str,
        retry_count: u32,
        effective: &Value,
        items: &[Value],
        limit: usize,
    ) -> Result<Value, Stop> {
        let mut inputs = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            inputs.push(match &map.item_selector {
                Some(t) => {
                    let ctx = StateCtx {
                        exec,
                        state: &state.name,
                        entered,
                        retry_count,
                        item: Some((index, item)),
                    };
                    eval_template(t, effective, &ctx, "ItemSelector")?
                }
                None => item.clone(),
            });
        }
        let width = if limit == 0 {
            inputs.len().max(1)
        } else {
            limit
        };
        let mut results = vec![Value::Null; inputs.len()];
        let mut running = futures::stream::iter(inputs.into_iter().enumerate())
            .map(|(index, input)| async move {
                exec.emit(Event::MapIterationStarted {
                    state: state.name.clone(),
                    index,
                });
                (index, self.run_machine(exec, &map.processor, input).await)
            })
            .buffer_unordered(width);
        while let Some((index, result)) = running.next().await {
            match result {
                Ok(v) => {
                    if let Some(slot) = results.get_mut(index) {
                        *slot = v;
                    }
                }
                Err(Stop::Fail(f)) => {
                    exec.emit(Event::MapIterationFailed {
                        state: state.name.clone(),
                        index,
                        error: f.error.clone(),
                        cause: f.cause.clone(),
                    });
                    return Err(Stop::Fail(f));
                }
                Err(refused) => return Err(refused),
            }
        }
        Ok(Value::Array(results))
    }

    /// Runs `attempt` until it succeeds, a failure matches no retrier, or the matching
    /// retrier's MaxAttempts is spent. Each retrier counts its own attempts; the first
    /// retrier whose ErrorEquals matches decides.
    async fn with_retry<F, Fut>(
        &self,
        exec: &Exec,
        state: &str,
        retriers: &[Retrier],
        mut attempt: F,
    ) -> Result<Value, Stop>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<Value, Stop>>,
    {
        let mut used = vec![0u32; retriers.len()];
        let mut retry_count = 0u32;
        loop {
            let failure = match attempt(retry_count).await {
                Err(Stop::Fail(f)) if !f.runtime => f,
                other => return other,
            };
            let Some((i, retrier)) = retriers
                .iter()
                .enumerate()
                .find(|(_, r)| r.matches(&failure.error))
            else {
                return Err(Stop::Fail(failure));
            };
            let Some(count) = used.get_mut(i) else {
                return Err(Stop::Fail(failure));
            };
            if *count >= retrier.max_attempts {
                return Err(Stop::Fail(failure));
            }
            let mut delay = retrier.interval_seconds
                * retrier
                    .backoff_rate
                    .powi(i32::try_from(*count).unwrap_or(i32::MAX));
            if let Some(max) = retrier.max_delay_seconds {
                delay = delay.min(max);
            }
            if retrier.full_jitter {
                delay *= clock::random_u64() as f64 / u64::MAX as f64;
            }
            *count += 1;
            retry_count = retry_count.saturating_add(1);
            exec.emit(Event::Retrying {
                state: state.to_string(),
                attempt: retry_count,
                delay_ms: (delay * 1000.0).round() as u64,
            });
            self.sleep(delay).await;
        }
    }

    async fn sleep(&self, seconds: f64) {
        let scaled = seconds * self.time_scale;
        if scaled > 0.0 {
            tokio::time::sleep(duration(scaled)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// A failure on its way up; `runtime` failures (States.Runtime) skip Retry and Catch.
#[derive(Debug)]
struct Failure {
    error: String,
    cause: String,
    runtime: bool,
}

#[derive(Debug)]
enum Stop {
    Fail(Failure),
    Refused(AslError),
}

impl Stop {
    fn fail(error: impl Into<String>, cause: impl Into<String>) -> Stop {
        Stop::Fail(Failure {
            error: error.into(),
            cause: cause.into(),
            runtime: false,
        })
    }

    fn runtime(state: &str, cause: String) -> Stop {
        Stop::Fail(Failure {
            error: "States.Runtime".into(),
            cause: format!("An error occurred while executing the state \"{state}\": {cause}"),
            runtime: true,
        })
    }
}

enum Step<'a> {
    Next(&'a str, Value),
    End(Value),
}

fn advance(state: &State, output: Value) -> Step<'_> {
    match &state.next {
        Some(n) => Step::Next(n, output),
        None => Step::End(output),
    }
}

struct Queued {
    name: String,
    input: Value,
}

/// What the executions of one `run` share.
#[derive(Default)]
struct Shared {
    history: Mutex<Vec<Event>>,
    queue: Mutex<VecDeque<Queued>>,
    names: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One execution in progress.
struct Exec {
    name: String,
    id: String,
    input: Value,
    start_time: String,
    state_machine_id: String,
    state_machine_name: String,
    hook: Option<EventHook>,
    shared: Arc<Shared>,
}

impl Exec {
    fn emit(&self, event: Event) {
        tracing::debug!(execution = %self.name, ?event, "asl event");
        if let Some(hook) = &self.hook {
            hook(&event);
        }
        lock(&self.shared.history).push(event);
    }
}

/// Where a path or template is evaluated: builds `$$` on demand.
struct StateCtx<'a> {
    exec: &'a Exec,
    state: &'a str,
    entered: &'a str,
    retry_count: u32,
    item: Option<(usize, &'a Value)>,
}

impl ContextSource for StateCtx<'_> {
    fn context(&self) -> Value {
        let mut ctx = json!({
            "Execution": {
                "Id": self.exec.id,
                "Name": self.exec.name,
                "Input": self.exec.input,
                "StartTime": self.exec.start_time,
                "RedriveCount": 0,
            },
            "StateMachine": { "Id": self.exec.state_machine_id, "Name": self.exec.state_machine_name },
            "State": { "Name": self.state, "EnteredTime": self.entered, "RetryCount": self.retry_count },
        });
        if let (Some((index, value)), Value::Object(map)) = (self.item, &mut ctx) {
            map.insert(
                "Map".into(),
                json!({ "Item": { "Index": index, "Value": value } }),
            );
        }
        ctx
    }
}

fn eval_template(
    t: &Template,
    input: &Value,
    ctx: &StateCtx<'_>,
    field: &str,
) -> Result<Value, Stop> {
    t.eval(&Scope::new(input, ctx), field)
        .map_err(|cause| Stop::runtime(ctx.state, cause))
}

fn resolve(
    state: &State,
    path: &Path,
    input: &Value,
    ctx: &StateCtx<'_>,
    field: &str,
) -> Result<Value, Stop> {
    Scope::new(input, ctx)
        .require(path, field)
        .cloned()
        .map_err(|cause| Stop::runtime(&state.name, cause))
}

fn is_identity(path: &Path) -> bool {
    path.root == Root::Input && path.segs.is_empty()
}

fn input_path(state: &State, raw: &Value, ctx: &StateCtx<'_>) -> Result<Value, Stop> {
    match &state.io.input_path {
        None => Ok(json!({})),
        Some(p) if is_identity(p) => Ok(raw.clone()),
        Some(p) => resolve(state, p, raw, ctx, "InputPath"),
    }
}

fn output_path(state: &State, value: Value, ctx: &StateCtx<'_>) -> Result<Value, Stop> {
    match &state.io.output_path {
        None => Ok(json!({})),
        Some(p) if is_identity(p) => Ok(value),
        Some(p) => resolve(state, p, &value, ctx, "OutputPath"),
    }
}

/// After a Task or Map: ResultSelector, ResultPath, OutputPath on success; on a failure, the
/// first matching catcher's ResultPath applied to the raw input.
fn finish<'a>(
    exec: &Exec,
    state: &'a State,
    ctx: &StateCtx<'_>,
    raw: Value,
    result: Result<Value, Stop>,
    catchers: &'a [Catcher],
) -> Result<Step<'a>, Stop> {
    match result {
        Ok(result) => {
            let selected = match &state.io.result_selector {
                Some(t) => eval_template(t, &result, ctx, "ResultSelector")?,
                None => result,
            };
            let merged = state
                .io
                .result_path
                .apply(raw, selected)
                .map_err(|c| Stop::runtime(&state.name, c))?;
            Ok(advance(state, output_path(state, merged, ctx)?))
        }
        Err(Stop::Fail(f)) if !f.runtime => {
            let Some(catcher) = catchers.iter().find(|c| c.matches(&f.error)) else {
                return Err(Stop::Fail(f));
            };
            exec.emit(Event::Caught {
                state: state.name.clone(),
                error: f.error.clone(),
                next: catcher.next.clone(),
            });
            let error_output = json!({ "Error": f.error, "Cause": f.cause });
            let output = catcher
                .result_path
                .apply(raw, error_output)
                .map_err(|c| Stop::runtime(&state.name, c))?;
            Ok(Step::Next(&catcher.next, output))
        }
        Err(other) => Err(other),
    }
}

fn choose<'a>(
    state: &'a State,
    choices: &'a [Branch],
    default: Option<&'a str>,
    raw: &Value,
    ctx: &StateCtx<'_>,
) -> Result<Step<'a>, Stop> {
    let effective = input_path(state, raw, ctx)?;
    let mut target = None;
    {
        let scope = Scope::new(&effective, ctx);
        for branch in choices {
            if choice::eval(&branch.rule, &scope).map_err(|c| Stop::runtime(&state.name, c))? {
                target = Some(branch.next.as_str());
                break;
            }
        }
    }
    let Some(target) = target.or(default) else {
        return Err(Stop::fail(
            "States.NoChoiceMatched",
            format!(
                "no Choices rule of state \"{}\" matched its input, and it has no Default",
                state.name
            ),
        ));
    };
    Ok(Step::Next(target, output_path(state, effective, ctx)?))
}

fn wait_seconds(
    state: &State,
    wait: &WaitFor,
    input: &Value,
    ctx: &StateCtx<'_>,
) -> Result<f64, Stop> {
    let until = |nanos: i128| ((nanos - clock::now_nanos()) as f64 / 1e9).max(0.0);
    match wait {
        WaitFor::Seconds(Amount::Fixed(s)) => Ok(*s),
        WaitFor::Seconds(Amount::Path(p)) => {
            match resolve(state, p, input, ctx, "SecondsPath")?.as_f64() {
                Some(s) if s >= 0.0 => Ok(s),
                _ => Err(Stop::runtime(
                    &state.name,
                    format!(
                        "SecondsPath \"{}\" must resolve to a non-negative number",
                        p.text
                    ),
                )),
            }
        }
        WaitFor::Timestamp(nanos) => Ok(until(*nanos)),
        WaitFor::TimestampPath(p) => match resolve(state, p, input, ctx, "TimestampPath")?
            .as_str()
            .and_then(clock::parse_rfc3339)
        {
            Some(nanos) => Ok(until(nanos)),
            None => Err(Stop::runtime(
                &state.name,
                format!(
                    "TimestampPath \"{}\" must resolve to an RFC 3339 timestamp",
                    p.text
                ),
            )),
        },
    }
}

fn positive_number(
    state: &State,
    path: &Path,
    input: &Value,
    ctx: &StateCtx<'_>,
    field: &str,
) -> Result<f64, Stop> {
    match resolve(state, path, input, ctx, field)?.as_f64() {
        Some(n) if n > 0.0 => Ok(n),
        _ => Err(Stop::runtime(
            &state.name,
            format!(
                "{field} \"{}\" must resolve to a positive number",
                path.text
            ),
        )),
    }
}

fn duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)
}

/// Step Functions execution names: 1-80 characters, none of whitespace, brackets, wildcards,
/// punctuation it reserves, or control characters.
fn valid_execution_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 80
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c))
}

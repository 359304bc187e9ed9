//! The state machine model, parsed from JSON and validated at load.
//!
//! Parsing is by hand over `serde_json::Value` rather than serde derive so that every refusal
//! names the state and the field, and says what is supported instead. A `Definition` that
//! loaded is well formed: every transition target exists, every state is reachable, every
//! non-terminal state has exactly one of `Next` / `End`, every path and template compiled.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use crate::choice::{self, Rule};
use crate::path::{Path, ResultPath, Template};
use crate::AslError;

/// The Step Functions "continue as new" integration the embedded runner implements itself.
pub const START_EXECUTION: &str = "arn:aws:states:::states:startExecution";

const STATE_TYPES: &str = "Task, Pass, Choice, Wait, Succeed, Fail, Map";
const TOP_FIELDS: &[&str] = &[
    "Comment",
    "StartAt",
    "States",
    "TimeoutSeconds",
    "Version",
    "QueryLanguage",
];
const PROCESSOR_FIELDS: &[&str] = &["Comment", "StartAt", "States", "ProcessorConfig"];
const ITERATOR_FIELDS: &[&str] = &["Comment", "StartAt", "States"];
const TASK_FIELDS: &[&str] = &[
    "Type",
    "Comment",
    "QueryLanguage",
    "Resource",
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "Retry",
    "Catch",
    "TimeoutSeconds",
    "TimeoutSecondsPath",
];
const PASS_FIELDS: &[&str] = &[
    "Type",
    "Comment",
    "QueryLanguage",
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "Parameters",
    "Result",
    "ResultPath",
];
const CHOICE_FIELDS: &[&str] = &[
    "Type",
    "Comment",
    "QueryLanguage",
    "InputPath",
    "OutputPath",
    "Choices",
    "Default",
];
const WAIT_FIELDS: &[&str] = &[
    "Type",
    "Comment",
    "QueryLanguage",
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "Seconds",
    "SecondsPath",
    "Timestamp",
    "TimestampPath",
];
const SUCCEED_FIELDS: &[&str] = &[
    "Type",
    "Comment",
    "QueryLanguage",
    "InputPath",
    "OutputPath",
];
const FAIL_FIELDS: &[&str] = &[
    "Type",
    "Comment",
    "QueryLanguage",
    "Error",
    "ErrorPath",
    "Cause",
    "CausePath",
];
const MAP_FIELDS: &[&str] = &[
    "Type",
    "Comment",
    "QueryLanguage",
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "ItemsPath",
    "ItemSelector",
    "Parameters",
    "ItemProcessor",
    "Iterator",
    "MaxConcurrency",
    "MaxConcurrencyPath",
    "ResultSelector",
    "ResultPath",
    "Retry",
    "Catch",
];
const RETRY_FIELDS: &[&str] = &[
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
];
const CATCH_FIELDS: &[&str] = &["ErrorEquals", "Next", "ResultPath", "Comment"];

/// A parsed and validated state machine.
#[derive(Debug, Clone)]
pub struct Definition {
    pub(crate) machine: Machine,
    pub(crate) timeout_seconds: Option<f64>,
}

/// A set of states with a start: the top level, or a Map's item processor.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub start_at: String,
    pub states: HashMap<String, State>,
}

#[derive(Debug, Clone)]
pub(crate) struct State {
    pub name: String,
    pub io: Io,
    pub kind: Kind,
    /// `Next` for Task, Pass, Wait and Map; `None` means `End: true` (or a terminal type).
    pub next: Option<String>,
}

/// Input and output processing fields. Absent paths default to `$`; `None` means JSON null.
#[derive(Debug, Clone)]
pub(crate) struct Io {
    pub input_path: Option<Path>,
    pub output_path: Option<Path>,
    pub result_path: ResultPath,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
}

#[derive(Debug, Clone)]
pub(crate) enum Amount {
    Fixed(f64),
    Path(Path),
}

#[derive(Debug, Clone)]
pub(crate) enum WaitFor {
    Seconds(Amount),
    /// Nanoseconds since the epoch.
    Timestamp(i128),
    TimestampPath(Path),
}

#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub rule: Rule,
    pub next: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Retrier {
    pub errors: Vec<String>,
    pub interval_seconds: f64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
    pub full_jitter: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Catcher {
    pub errors: Vec<String>,
    pub next: String,
    pub result_path: ResultPath,
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub resource: String,
    pub timeout: Option<Amount>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

#[derive(Debug, Clone)]
pub(crate) struct MapState {
    pub items_path: Path,
    pub item_selector: Option<Template>,
    pub processor: Machine,
    /// 0 means unbounded.
    pub max_concurrency: Amount,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Task(Task),
    Pass {
        result: Option<Value>,
    },
    Choice {
        choices: Vec<Branch>,
        default: Option<String>,
    },
    Wait(WaitFor),
    Succeed,
    Fail {
        error: Option<Template>,
        cause: Option<Template>,
    },
    Map(Box<MapState>),
}

impl Retrier {
    pub(crate) fn matches(&self, error: &str) -> bool {
        error_matches(&self.errors, error)
    }
}

impl Catcher {
    pub(crate) fn matches(&self, error: &str) -> bool {
        error_matches(&self.errors, error)
    }
}

/// `States.ALL` matches any error, `States.TaskFailed` any error but `States.Timeout`;
/// other names match exactly. (States.Runtime is never retried or caught; the runner does not
/// ask.)
fn error_matches(names: &[String], error: &str) -> bool {
    names.iter().any(|n| match n.as_str() {
        "States.ALL" => true,
        "States.TaskFailed" => error != "States.Timeout",
        n => n == error,
    })
}

impl Definition {
    /// Substitutes `${Name}` placeholders, then parses and validates the definition.
    pub fn from_json(
        text: &str,
        substitutions: &HashMap<String, String>,
    ) -> Result<Definition, AslError> {
        let missing: Vec<String> = Definition::placeholders(text)
            .into_iter()
            .filter(|n| !substitutions.contains_key(n))
            .collect();
        if !missing.is_empty() {
            return Err(AslError::MissingSubstitution { names: missing });
        }
        let text = substitute(text, substitutions);
        let value: Value = serde_json::from_str(&text).map_err(|e| AslError::Json {
            message: e.to_string(),
        })?;
        Definition::from_value(&value)
    }

    /// Parses and validates an already substituted definition.
    pub fn from_value(value: &Value) -> Result<Definition, AslError> {
        let top = Fields::new("state machine".into(), value, "")?;
        top.only(TOP_FIELDS, "a state machine")?;
        top.query_language()?;
        let timeout_seconds = top.positive_number("TimeoutSeconds")?;
        let mut names = HashSet::new();
        let machine = parse_machine(&top, "", &mut names)?;
        Ok(Definition {
            machine,
            timeout_seconds,
        })
    }

    /// The names of the `${...}` placeholders used in a raw definition.
    pub fn placeholders(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        scan_placeholders(text, |name| {
            out.insert(name.to_string());
        });
        out
    }

    /// The name of the first state.
    pub fn start_at(&self) -> &str {
        &self.machine.start_at
    }

    /// Every state name, including those inside Map item processors.
    pub fn state_names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.machine.visit(&mut |s| {
            out.insert(s.name.clone());
        });
        out
    }

    /// Every Task `Resource`.
    pub fn resources(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.machine.visit(&mut |s| {
            if let Kind::Task(t) = &s.kind {
                out.insert(t.resource.clone());
            }
        });
        out
    }

    /// Every error name listed in a Retry or Catch `ErrorEquals` (to check that the errors the
    /// stages emit are handled).
    pub fn handled_errors(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.machine.visit(&mut |s| {
            let (retry, catch) = match &s.kind {
                Kind::Task(t) => (&t.retry, &t.catch),
                Kind::Map(m) => (&m.retry, &m.catch),
                _ => return,
            };
            for e in retry
                .iter()
                .flat_map(|r| &r.errors)
                .chain(catch.iter().flat_map(|c| &c.errors))
            {
                out.insert(e.clone());
            }
        });
        out
    }
}

impl Machine {
    fn visit(&self, f: &mut dyn FnMut(&State)) {
        let mut names: Vec<&String> = self.states.keys().collect();
        names.sort();
        for name in names {
            if let Some(s) = self.states.get(name) {
                f(s);
                if let Kind::Map(m) = &s.kind {
                    m.processor.visit(f);
                }
            }
        }
    }
}

/// Calls `found` for each `${Name}` in `text` (names of letters, digits, `_`, `-`, `.`, `:`).
fn scan_placeholders(text: &str, mut found: impl FnMut(&str)) {
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(end) if end > 0 && after[..end].chars().all(is_placeholder_char) => {
                found(&after[..end]);
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
}

fn is_placeholder_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

/// Replaces each placeholder with its value, escaped for use inside a JSON string.
fn substitute(text: &str, substitutions: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(end) if end > 0 && after[..end].chars().all(is_placeholder_char) => {
                match substitutions.get(&after[..end]) {
                    Some(v) => {
                        let quoted = Value::String(v.clone()).to_string();
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    }
                    None => out.push_str(&rest[i..i + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// An object being parsed, with where it is for error messages.
struct Fields<'a> {
    location: String,
    /// Prefix for field names, e.g. "Retry[0]." or "ItemProcessor.".
    prefix: String,
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(location: String, value: &'a Value, prefix: &str) -> Result<Fields<'a>, AslError> {
        match value {
            Value::Object(obj) => Ok(Fields {
                location,
                prefix: prefix.to_string(),
                obj,
            }),
            _ => Err(AslError::Invalid {
                location,
                field: prefix.trim_end_matches('.').to_string(),
                message: "must be a JSON object".into(),
            }),
        }
    }

    fn child(&self, value: &'a Value, field: &str) -> Result<Fields<'a>, AslError> {
        Fields::new(
            self.location.clone(),
            value,
            &format!("{}{field}.", self.prefix),
        )
    }

    fn err(&self, field: &str, message: impl Into<String>) -> AslError {
        AslError::Invalid {
            location: self.location.clone(),
            field: format!("{}{field}", self.prefix),
            message: message.into(),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key)
    }

    fn has(&self, key: &str) -> bool {
        self.obj.contains_key(key)
    }

    /// Refuses any field not in `allowed`.
    fn only(&self, allowed: &[&str], what: &str) -> Result<(), AslError> {
        for key in self.obj.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(self.err(
                    key,
                    format!(
                        "is not supported by Ferry's embedded runner (supported on {what}: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn query_language(&self) -> Result<(), AslError> {
        match self.get("QueryLanguage") {
            None => Ok(()),
            Some(Value::String(s)) if s == "JSONPath" => Ok(()),
            Some(other) => Err(self.err(
                "QueryLanguage",
                format!("is {other}, which is not supported by Ferry's embedded runner (supported: \"JSONPath\")"),
            )),
        }
    }

    fn exclusive(&self, a: &str, b: &str) -> Result<(), AslError> {
        if self.has(a) && self.has(b) {
            return Err(self.err(a, format!("cannot be used together with \"{b}\"")));
        }
        Ok(())
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, AslError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    fn required_string(&self, key: &str) -> Result<&'a str, AslError> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.err(key, "must not be empty")),
            None => Err(self.err(key, "is missing")),
        }
    }

    /// A path field that defaults to `$`; JSON null gives `None`.
    fn path_or_null(&self, key: &str) -> Result<Option<Path>, AslError> {
        match self.get(key) {
            None => Ok(Some(Path {
                root: crate::path::Root::Input,
                segs: Vec::new(),
                text: "$".into(),
            })),
            Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Path::parse(s).map(Some).map_err(|m| self.err(key, m)),
            Some(_) => Err(self.err(key, "must be a path string or null")),
        }
    }

    fn path(&self, key: &str) -> Result<Option<Path>, AslError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => Path::parse(s).map(Some).map_err(|m| self.err(key, m)),
        }
    }

    fn template(&self, key: &str) -> Result<Option<Template>, AslError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Template::compile(v, &format!("{}{key}", self.prefix))
                .map(Some)
                .map_err(|i| AslError::Invalid {
                    location: self.location.clone(),
                    field: i.field,
                    message: i.message,
                }),
        }
    }

    fn result_path(&self, key: &str) -> Result<ResultPath, AslError> {
        ResultPath::parse(self.get(key)).map_err(|m| self.err(key, m))
    }

    fn positive_number(&self, key: &str) -> Result<Option<f64>, AslError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f > 0.0 => Ok(Some(f)),
                _ => Err(self.err(key, "must be a positive number")),
            },
            Some(_) => Err(self.err(key, "must be a number")),
        }
    }

    fn non_negative_int(&self, key: &str) -> Result<Option<u64>, AslError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.err(key, "must be a non-negative integer")),
            Some(_) => Err(self.err(key, "must be a non-negative integer")),
        }
    }

    /// `Next` / `End` on a state that transitions: exactly one of them.
    fn transition(&self) -> Result<Option<String>, AslError> {
        let end = match self.get("End") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(self.err("End", "must be true or false")),
        };
        match (self.string("Next")?, end) {
            (Some(_), true) => Err(self.err(
                "Next",
                "cannot be used together with \"End\": true (exactly one is required)",
            )),
            (Some(n), false) => Ok(Some(n.to_string())),
            (None, true) => Ok(None),
            (None, false) => Err(self.err(
                "Next",
                "is missing (exactly one of \"Next\" or \"End\": true is required)",
            )),
        }
    }

    fn retriers(&self) -> Result<Vec<Retrier>, AslError> {
        let Some(v) = self.get("Retry") else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = v else {
            return Err(self.err("Retry", "must be an array"));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let f = self.child(item, &format!("Retry[{i}]"))?;
            f.only(RETRY_FIELDS, "a retrier")?;
            let errors = f.error_equals(i + 1 == items.len())?;
            let interval_seconds = match f.get("IntervalSeconds") {
                None => 1.0,
                Some(_) => f.positive_number("IntervalSeconds")?.unwrap_or(1.0),
            };
            let max_attempts = match f.non_negative_int("MaxAttempts")? {
                None => 3,
                Some(n) => u32::try_from(n).map_err(|_| f.err("MaxAttempts", "is too large"))?,
            };
            let backoff_rate = match f.get("BackoffRate") {
                None => 2.0,
                Some(Value::Number(n)) => match n.as_f64() {
                    Some(r) if r >= 1.0 => r,
                    _ => {
                        return Err(f.err(
                            "BackoffRate",
                            "must be a number greater than or equal to 1.0",
                        ))
                    }
                },
                Some(_) => return Err(f.err("BackoffRate", "must be a number")),
            };
            let max_delay_seconds = f.positive_number("MaxDelaySeconds")?;
            let full_jitter = match f.string("JitterStrategy")? {
                None | Some("NONE") => false,
                Some("FULL") => true,
                Some(other) => {
                    return Err(f.err(
                        "JitterStrategy",
                        format!("is \"{other}\" (supported: FULL, NONE)"),
                    ))
                }
            };
            out.push(Retrier {
                errors,
                interval_seconds,
                max_attempts,
                backoff_rate,
                max_delay_seconds,
                full_jitter,
            });
        }
        Ok(out)
    }

    fn catchers(&self) -> Result<Vec<Catcher>, AslError> {
        let Some(v) = self.get("Catch") else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = v else {
            return Err(self.err("Catch", "must be an array"));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let f = self.child(item, &format!("Catch[{i}]"))?;
            f.only(CATCH_FIELDS, "a catcher")?;
            let errors = f.error_equals(i + 1 == items.len())?;
            let next = f.required_string("Next")?.to_string();
            let result_path = f.result_path("ResultPath")?;
            out.push(Catcher {
                errors,
                next,
                result_path,
            })
        }
        Ok(out)
    }

    fn error_equals(&self, last: bool) -> Result<Vec<String>, AslError> {
        let Some(Value::Array(items)) = self.get("ErrorEquals") else {
            return Err(self.err("ErrorEquals", "is missing or not an array of error names"));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::String(s) if !s.is_empty() => out.push(s.clone()),
                _ => return Err(self.err("ErrorEquals", "must contain only non-empty strings")),
            }
        }
        if out.is_empty() {
            return Err(self.err("ErrorEquals", "must not be empty"));
        }
        if out.iter().any(|e| e == "States.ALL") && (out.len() > 1 || !last) {
            return Err(self.err(
                "ErrorEquals",
                "may use \"States.ALL\" only alone and in the last entry",
            ));
        }
        if out.iter().any(|e| e == "States.Runtime") {
            return Err(self.err(
                "ErrorEquals",
                "names States.Runtime, which Step Functions never retries or catches",
            ));
        }
        Ok(out)
    }
}

fn parse_machine(
    f: &Fields<'_>,
    prefix: &str,
    names: &mut HashSet<String>,
) -> Result<Machine, AslError> {
    let start_at = f.required_string("StartAt")?.to_string();
    let Some(Value::Object(states_obj)) = f.get("States") else {
        return Err(f.err("States", "is missing or not an object"));
    };
    if states_obj.is_empty() {
        return Err(f.err("States", "must not be empty"));
    }
    let mut states = HashMap::with_capacity(states_obj.len());
    for (name, value) in states_obj {
        if !names.insert(name.clone()) {
            return Err(AslError::Invalid {
                location: format!("state \"{name}\""),
                field: "States".into(),
                message: "has a name used by another state; state names must be unique in the whole state machine".into(),
            });
        }
        states.insert(name.clone(), parse_state(name, value, names)?);
    }
    if !states.contains_key(&start_at) {
        return Err(f.err(
            "StartAt",
            format!(
                "names \"{start_at}\", which is not a state{}",
                scope_hint(prefix)
            ),
        ));
    }
    let machine = Machine { start_at, states };
    // Every target exists in this machine.
    let mut ordered: Vec<&State> = machine.states.values().collect();
    ordered.sort_by(|a, b| a.name.cmp(&b.name));
    for state in &ordered {
        for (field, target) in targets(state) {
            if !machine.states.contains_key(target) {
                return Err(AslError::Invalid {
                    location: format!("state \"{}\"", state.name),
                    field,
                    message: format!(
                        "names \"{target}\", which is not a state{}",
                        scope_hint(prefix)
                    ),
                });
            }
        }
    }
    // Every state is reachable from StartAt.
    let mut seen: HashSet<&str> = HashSet::new();
    let mut todo = vec![machine.start_at.as_str()];
    while let Some(name) = todo.pop() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(s) = machine.states.get(name) {
            todo.extend(targets(s).into_iter().map(|(_, t)| t));
        }
    }
    if let Some(lost) = ordered.iter().find(|s| !seen.contains(s.name.as_str())) {
        return Err(AslError::Invalid {
            location: format!("state \"{}\"", lost.name),
            field: "Type".into(),
            message: format!(
                "belongs to a state that is not reachable from StartAt \"{}\"",
                machine.start_at
            ),
        });
    }
    Ok(machine)
}

fn scope_hint(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!(" in this {}", prefix.trim_end_matches('.'))
    }
}

/// (field, target state) for each transition out of a state.
fn targets(state: &State) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    if let Some(n) = &state.next {
        out.push(("Next".to_string(), n.as_str()));
    }
    let catch = match &state.kind {
        Kind::Choice { choices, default } => {
            for (i, b) in choices.iter().enumerate() {
                out.push((format!("Choices[{i}].Next"), b.next.as_str()));
            }
            if let Some(d) = default {
                out.push(("Default".to_string(), d.as_str()));
            }
            None
        }
        Kind::Task(t) => Some(&t.catch),
        Kind::Map(m) => Some(&m.catch),
        _ => None,
    };
    for (i, c) in catch.into_iter().flatten().enumerate() {
        out.push((format!("Catch[{i}].Next"), c.next.as_str()));
    }
    out
}

fn parse_state(name: &str, value: &Value, names: &mut HashSet<String>) -> Result<State, AslError> {
    let f = Fields::new(format!("state \"{name}\""), value, "")?;
    let ty = f.required_string("Type")?;
    let allowed = match ty {
        "Task" => TASK_FIELDS,
        "Pass" => PASS_FIELDS,
        "Choice" => CHOICE_FIELDS,
        "Wait" => WAIT_FIELDS,
        "Succeed" => SUCCEED_FIELDS,
        "Fail" => FAIL_FIELDS,
        "Map" => MAP_FIELDS,
        other => {
            return Err(f.err(
                "Type",
                format!("is \"{other}\", which is not supported by Ferry's embedded runner (supported: {STATE_TYPES})"),
            ))
        }
    };
    f.query_language()?;
    f.only(allowed, &format!("a {ty} state"))?;
    let io = Io {
        input_path: f.path_or_null("InputPath")?,
        output_path: f.path_or_null("OutputPath")?,
        result_path: f.result_path("ResultPath")?,
        parameters: f.template("Parameters")?,
        result_selector: f.template("ResultSelector")?,
    };
    let (kind, next) = match ty {
        "Task" => (Kind::Task(parse_task(&f)?), f.transition()?),
        "Pass" => (
            Kind::Pass {
                result: f.get("Result").cloned(),
            },
            f.transition()?,
        ),
        "Choice" => (parse_choice(&f)?, None),
        "Wait" => (Kind::Wait(parse_wait(&f)?), f.transition()?),
        "Succeed" => (Kind::Succeed, None),
        "Fail" => (parse_fail(&f)?, None),
        _ => (Kind::Map(Box::new(parse_map(&f, names)?)), f.transition()?),
    };
    Ok(State {
        name: name.to_string(),
        io,
        kind,
        next,
    })
}

fn parse_task(f: &Fields<'_>) -> Result<Task, AslError> {
    let resource = f.required_string("Resource")?.to_string();
    if resource.starts_with(START_EXECUTION) && resource != START_EXECUTION {
        return Err(f.err(
            "Resource",
            format!("is \"{resource}\"; Ferry's embedded runner supports only \"{START_EXECUTION}\" (start and continue, no .sync or callback)"),
        ));
    }
    if resource.ends_with(".waitForTaskToken") {
        return Err(f.err("Resource", format!("is \"{resource}\"; callback (.waitForTaskToken) tasks are not supported by Ferry's embedded runner")));
    }
    if resource == START_EXECUTION {
        check_start_execution_parameters(f)?;
    }
    f.exclusive("TimeoutSeconds", "TimeoutSecondsPath")?;
    let timeout = match (
        f.positive_number("TimeoutSeconds")?,
        f.path("TimeoutSecondsPath")?,
    ) {
        (Some(s), _) => Some(Amount::Fixed(s)),
        (None, Some(p)) => Some(Amount::Path(p)),
        (None, None) => None,
    };
    Ok(Task {
        resource,
        timeout,
        retry: f.retriers()?,
        catch: f.catchers()?,
    })
}

/// The continue-as-new integration takes only these parameters, and needs the target.
fn check_start_execution_parameters(f: &Fields<'_>) -> Result<(), AslError> {
    const KEYS: &[&str] = &["StateMachineArn", "Input", "Name", "TraceHeader"];
    let Some(Value::Object(params)) = f.get("Parameters") else {
        return Err(f.err(
            "Parameters",
            format!("is missing or not an object ({START_EXECUTION} needs StateMachineArn)"),
        ));
    };
    let mut has_arn = false;
    for key in params.keys() {
        let bare = key.strip_suffix(".$").unwrap_or(key);
        if !KEYS.contains(&bare) {
            return Err(f.err(
                &format!("Parameters.{key}"),
                format!(
                    "is not a parameter of {START_EXECUTION} (supported: {})",
                    KEYS.join(", ")
                ),
            ));
        }
        has_arn |= bare == "StateMachineArn";
    }
    if !has_arn {
        return Err(f.err("Parameters.StateMachineArn", "is missing"));
    }
    Ok(())
}

fn parse_choice(f: &Fields<'_>) -> Result<Kind, AslError> {
    let Some(Value::Array(items)) = f.get("Choices") else {
        return Err(f.err("Choices", "is missing or not an array"));
    };
    if items.is_empty() {
        return Err(f.err("Choices", "must not be empty"));
    }
    let mut choices = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (rule, next) =
            choice::parse_rule(item, &format!("Choices[{i}]"), true).map_err(|issue| {
                AslError::Invalid {
                    location: f.location.clone(),
                    field: issue.field,
                    message: issue.message,
                }
            })?;
        let Some(next) = next else {
            return Err(f.err(&format!("Choices[{i}].Next"), "is missing"));
        };
        choices.push(Branch { rule, next });
    }
    let default = f.string("Default")?.map(str::to_string);
    Ok(Kind::Choice { choices, default })
}

fn parse_wait(f: &Fields<'_>) -> Result<WaitFor, AslError> {
    let present: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
        .into_iter()
        .filter(|k| f.has(k))
        .collect();
    match present.as_slice() {
        ["Seconds"] => match f.get("Seconds").and_then(Value::as_f64) {
            Some(s) if s >= 0.0 => Ok(WaitFor::Seconds(Amount::Fixed(s))),
            _ => Err(f.err("Seconds", "must be a non-negative number")),
        },
        ["SecondsPath"] => Ok(WaitFor::Seconds(Amount::Path(
            f.path("SecondsPath")?
                .ok_or_else(|| f.err("SecondsPath", "is missing"))?,
        ))),
        ["Timestamp"] => {
            let s = f.required_string("Timestamp")?;
            crate::clock::parse_rfc3339(s)
                .map(WaitFor::Timestamp)
                .ok_or_else(|| {
                    f.err(
                        "Timestamp",
                        format!("is \"{s}\", which is not an RFC 3339 timestamp"),
                    )
                })
        }
        ["TimestampPath"] => Ok(WaitFor::TimestampPath(
            f.path("TimestampPath")?
                .ok_or_else(|| f.err("TimestampPath", "is missing"))?,
        )),
        [] => Err(f.err(
            "Seconds",
            "is missing (a Wait state needs one of Seconds, SecondsPath, Timestamp, TimestampPath)",
        )),
        [first, ..] => Err(f.err(
            first,
            "cannot be combined with another of Seconds, SecondsPath, Timestamp, TimestampPath",
        )),
    }
}

fn parse_fail(f: &Fields<'_>) -> Result<Kind, AslError> {
    let part = |lit: &str, path: &str| -> Result<Option<Template>, AslError> {
        f.exclusive(lit, path)?;
        if let Some(s) = f.string(lit)? {
            return Ok(Some(Template::Literal(Value::String(s.to_string()))));
        }
        match f.string(path)? {
            Some(expr) => Template::compile_expression(expr)
                .map(Some)
                .map_err(|m| f.err(path, m)),
            None => Ok(None),
        }
    };
    Ok(Kind::Fail {
        error: part("Error", "ErrorPath")?,
        cause: part("Cause", "CausePath")?,
    })
}

fn parse_map(f: &Fields<'_>, names: &mut HashSet<String>) -> Result<MapState, AslError> {
    f.exclusive("ItemSelector", "Parameters")?;
    f.exclusive("ItemProcessor", "Iterator")?;
    f.exclusive("MaxConcurrency", "MaxConcurrencyPath")?;
    let items_path = match f.path("ItemsPath")? {
        Some(p) => p,
        None => Path {
            root: crate::path::Root::Input,
            segs: Vec::new(),
            text: "$".into(),
        },
    };
    let item_selector = match f.template("ItemSelector")? {
        Some(t) => Some(t),
        None => f.template("Parameters")?,
    };
    let (key, allowed) = if f.has("Iterator") {
        ("Iterator", ITERATOR_FIELDS)
    } else {
        ("ItemProcessor", PROCESSOR_FIELDS)
    };
    let Some(proc_value) = f.get(key) else {
        return Err(f.err("ItemProcessor", "is missing"));
    };
    let proc = f.child(proc_value, key)?;
    proc.only(allowed, &format!("a Map {key}"))?;
    if let Some(cfg) = proc.get("ProcessorConfig") {
        let c = proc.child(cfg, "ProcessorConfig")?;
        c.only(&["Mode"], "a ProcessorConfig")?;
        match c.string("Mode")? {
            None | Some("INLINE") => {}
            Some(other) => {
                return Err(c.err("Mode", format!("is \"{other}\", which is not supported by Ferry's embedded runner (supported: INLINE)")))
            }
        }
    }
    let processor = parse_machine(&proc, &format!("{key}."), names)?;
    let max_concurrency = match (
        f.non_negative_int("MaxConcurrency")?,
        f.path("MaxConcurrencyPath")?,
    ) {
        (Some(n), _) => Amount::Fixed(n as f64),
        (None, Some(p)) => Amount::Path(p),
        (None, None) => Amount::Fixed(0.0),
    };
    Ok(MapState {
        items_path,
        item_selector,
        processor,
        max_concurrency,
        retry: f.retriers()?,
        catch: f.catchers()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_found_and_substituted() {
        let text =
            r#"{"a": "${One}", "b": "x${Two_2}y", "c": "$notone", "d": "${}", "e": "${bad name}"}"#;
        let names: Vec<String> = Definition::placeholders(text).into_iter().collect();
        assert_eq!(names, vec!["One".to_string(), "Two_2".to_string()]);
        let subs = HashMap::from([
            ("One".to_string(), "q\"uote".to_string()),
            ("Two_2".to_string(), "2".to_string()),
        ]);
        let out: Value = serde_json::from_str(&substitute(text, &subs)).unwrap();
        assert_eq!(out["a"], json!("q\"uote"));
        assert_eq!(out["b"], json!("x2y"));
        assert_eq!(out["d"], json!("${}"));
    }

    #[test]
    fn error_matching_rules() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(error_matches(&names(&["States.ALL"]), "Anything"));
        assert!(error_matches(
            &names(&["States.TaskFailed"]),
            "Ferry.Transient"
        ));
        assert!(!error_matches(
            &names(&["States.TaskFailed"]),
            "States.Timeout"
        ));
        assert!(error_matches(
            &names(&["A", "States.Timeout"]),
            "States.Timeout"
        ));
        assert!(!error_matches(&names(&["A"]), "B"));
    }
}

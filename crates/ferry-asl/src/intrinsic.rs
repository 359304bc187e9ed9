//! Intrinsic functions (`States.Format(...)` and friends) used as values of `.$` keys.
//!
//! Supported: States.Format, States.StringToJson, States.JsonToString, States.Array,
//! States.MathAdd, States.ArrayLength, States.UUID. Any other function is refused at load.

use serde_json::{Number, Value};

use crate::clock;
use crate::path::{Path, Scope};

pub(crate) const SUPPORTED: &str =
    "States.Format, States.StringToJson, States.JsonToString, States.Array, States.MathAdd, States.ArrayLength, States.UUID";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Format,
    StringToJson,
    JsonToString,
    Array,
    MathAdd,
    ArrayLength,
    Uuid,
}

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "States.Format" => Func::Format,
            "States.StringToJson" => Func::StringToJson,
            "States.JsonToString" => Func::JsonToString,
            "States.Array" => Func::Array,
            "States.MathAdd" => Func::MathAdd,
            "States.ArrayLength" => Func::ArrayLength,
            "States.UUID" => Func::Uuid,
            _ => return None,
        })
    }

    /// (minimum, maximum) argument count.
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Format => (1, usize::MAX),
            Func::StringToJson | Func::JsonToString | Func::ArrayLength => (1, 1),
            Func::Array => (0, usize::MAX),
            Func::MathAdd => (2, 2),
            Func::Uuid => (0, 0),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// A string literal, kept with its escapes (`\'`, `\{`, `\}`, `\\`) so States.Format can
    /// tell an escaped brace from a placeholder.
    Str(String),
    Num(Number),
    Bool(bool),
    Null,
    Path(Path),
    Call(Box<Intrinsic>),
}

#[derive(Debug, Clone)]
pub(crate) struct Intrinsic {
    func: Func,
    args: Vec<Arg>,
    text: String,
}

impl Intrinsic {
    /// Parses a call. The error is a sentence fragment following `field "X" `.
    pub(crate) fn parse(text: &str) -> Result<Intrinsic, String> {
        let mut p = Parser { text, pos: 0 };
        let call = p.call()?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(format!(
                "has intrinsic \"{text}\" with unexpected text after the closing parenthesis"
            ));
        }
        Ok(call)
    }

    /// Evaluates the call; the error is a States.Runtime cause.
    pub(crate) fn eval(&self, scope: &Scope<'_>) -> Result<Value, String> {
        let fail = |why: String| format!("the intrinsic function \"{}\" failed: {why}", self.text);
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(match a {
                Arg::Str(raw) => ArgValue::Str(raw),
                Arg::Num(n) => ArgValue::Value(Value::Number(n.clone())),
                Arg::Bool(b) => ArgValue::Value(Value::Bool(*b)),
                Arg::Null => ArgValue::Value(Value::Null),
                Arg::Path(p) => {
                    ArgValue::Value(scope.resolve(p).cloned().ok_or_else(|| {
                        fail(format!("the path \"{}\" could not be found", p.text))
                    })?)
                }
                Arg::Call(c) => ArgValue::Value(c.eval(scope)?),
            });
        }
        // The parser checked the arity; a missing argument reads as null.
        let arg = |i: usize| args.get(i).map_or(Value::Null, ArgValue::to_value);
        match self.func {
            Func::Format => format_call(&args).map_err(fail),
            Func::StringToJson => match arg(0) {
                Value::String(s) => serde_json::from_str(&s)
                    .map_err(|e| fail(format!("the argument is not valid JSON: {e}"))),
                other => Err(fail(format!(
                    "the argument must be a string, not {}",
                    kind(&other)
                ))),
            },
            Func::JsonToString => Ok(Value::String(arg(0).to_string())),
            Func::Array => Ok(Value::Array(args.iter().map(ArgValue::to_value).collect())),
            Func::MathAdd => {
                let (a, b) = (arg(0), arg(1));
                match (a.as_i64(), b.as_i64()) {
                    (Some(x), Some(y)) => x
                        .checked_add(y)
                        .map(Value::from)
                        .ok_or_else(|| fail("the sum overflows".into())),
                    _ => match (a.as_f64(), b.as_f64()) {
                        (Some(x), Some(y)) => Number::from_f64(x + y)
                            .map(Value::Number)
                            .ok_or_else(|| fail("the sum is not a finite number".into())),
                        _ => Err(fail("both arguments must be numbers".into())),
                    },
                }
            }
            Func::ArrayLength => match arg(0) {
                Value::Array(items) => Ok(Value::from(items.len())),
                other => Err(fail(format!(
                    "the argument must be an array, not {}",
                    kind(&other)
                ))),
            },
            Func::Uuid => Ok(Value::String(clock::uuid_v4())),
        }
    }
}

enum ArgValue<'a> {
    Str(&'a str),
    Value(Value),
}

impl ArgValue<'_> {
    fn to_value(&self) -> Value {
        match self {
            ArgValue::Str(raw) => Value::String(unescape(raw)),
            ArgValue::Value(v) => v.clone(),
        }
    }
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn format_call(args: &[ArgValue<'_>]) -> Result<Value, String> {
    // A literal template keeps its escapes; a template from a path has none.
    let Some((first, rest)) = args.split_first() else {
        return Err("States.Format needs a template".into());
    };
    let (template, escapes) = match first {
        ArgValue::Str(raw) => (raw.to_string(), true),
        ArgValue::Value(Value::String(s)) => (s.clone(), false),
        ArgValue::Value(other) => {
            return Err(format!(
                "the template must be a string, not {}",
                kind(other)
            ))
        }
    };
    let mut values = rest.iter();
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if escapes => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                let Some(v) = values.next() else {
                    return Err("the template has more {} placeholders than arguments".into());
                };
                match v.to_value() {
                    Value::String(s) => out.push_str(&s),
                    v @ (Value::Number(_) | Value::Bool(_) | Value::Null) => out.push_str(&v.to_string()),
                    other => return Err(format!("a States.Format argument must be a string, number, boolean or null, not {}", kind(&other))),
                }
            }
            c => out.push(c),
        }
    }
    if values.next().is_some() {
        return Err("the template has fewer {} placeholders than arguments".into());
    }
    Ok(Value::String(out))
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    fn err(&self, what: &str) -> String {
        format!(
            "has intrinsic \"{}\" which is malformed: {what} at offset {}",
            self.text, self.pos
        )
    }

    fn call(&mut self) -> Result<Intrinsic, String> {
        self.skip_ws();
        let start = self.pos;
        let name_len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .unwrap_or(self.rest().len());
        let name = self.rest()[..name_len].to_string();
        self.pos += name_len;
        let Some(func) = Func::from_name(&name) else {
            return Err(format!(
                "uses intrinsic function \"{name}\", which is not supported by Ferry's embedded runner (supported: {SUPPORTED})"
            ));
        };
        self.skip_ws();
        if !self.rest().starts_with('(') {
            return Err(self.err("expected \"(\""));
        }
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.rest().starts_with(')') {
            self.pos += 1;
        } else {
            loop {
                args.push(self.arg()?);
                self.skip_ws();
                match self.rest().chars().next() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.err("expected \",\" or \")\"")),
                }
            }
        }
        let (min, max) = func.arity();
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(format!(
                "calls \"{name}\" with {} argument(s); it takes {expected}",
                args.len()
            ));
        }
        Ok(Intrinsic {
            func,
            args,
            text: self.text[start..self.pos].to_string(),
        })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.skip_ws();
        let rest = self.rest();
        if let Some(body) = rest.strip_prefix('\'') {
            let mut escaped = false;
            for (i, c) in body.char_indices() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '\'' {
                    let raw = body[..i].to_string();
                    self.pos += 1 + i + 1;
                    return Ok(Arg::Str(raw));
                }
            }
            return Err(self.err("unterminated string literal"));
        }
        if rest.starts_with("States.") {
            return Ok(Arg::Call(Box::new(self.call()?)));
        }
        // A path, number, boolean or null runs to the next top-level "," or ")".
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[') => depth += 1,
                (None, ']') => depth = depth.saturating_sub(1),
                (None, ',' | ')') if depth == 0 => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let token = rest[..end].trim();
        let arg = if token.starts_with('$') {
            Arg::Path(Path::parse(token)?)
        } else if token == "true" {
            Arg::Bool(true)
        } else if token == "false" {
            Arg::Bool(false)
        } else if token == "null" {
            Arg::Null
        } else if let Ok(Value::Number(n)) = serde_json::from_str::<Value>(token) {
            Arg::Num(n)
        } else {
            return Err(self.err(&format!("unexpected argument \"{token}\"")));
        };
        self.pos += end;
        Ok(arg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::ContextSource;
    use serde_json::json;

    struct Ctx;
    impl ContextSource for Ctx {
        fn context(&self) -> Value {
            json!({"Execution": {"Name": "run-7"}})
        }
    }

    fn eval(text: &str, input: Value) -> Result<Value, String> {
        Intrinsic::parse(text)
            .unwrap()
            .eval(&Scope::new(&input, &Ctx))
    }

    #[test]
    fn format_substitutes_and_honours_escapes() {
        let v = eval(
            r"States.Format('chunk {} of {} \{lit\} it\'s {}', $.a, $.b, $$.Execution.Name)",
            json!({"a": 3, "b": "t"}),
        );
        assert_eq!(v.unwrap(), json!("chunk 3 of t {lit} it's run-7"));
        assert!(eval("States.Format('{} {}', 1)", json!({})).is_err());
        assert!(eval("States.Format('{}', $.o)", json!({"o": {}})).is_err());
    }

    #[test]
    fn json_string_round_trip_and_nesting() {
        let v = eval(
            "States.StringToJson(States.JsonToString($.o))",
            json!({"o": {"k": [1, 2]}}),
        )
        .unwrap();
        assert_eq!(v, json!({"k": [1, 2]}));
        assert_eq!(
            eval("States.JsonToString($.o)", json!({"o": {"k": 1}})).unwrap(),
            json!("{\"k\":1}")
        );
        assert!(eval("States.StringToJson('not json')", json!({})).is_err());
    }

    #[test]
    fn array_math_length_uuid() {
        assert_eq!(
            eval("States.Array(1, 'two', $.x, true, null)", json!({"x": [3]})).unwrap(),
            json!([1, "two", [3], true, null])
        );
        assert_eq!(
            eval("States.MathAdd($.n, -1)", json!({"n": 5})).unwrap(),
            json!(4)
        );
        assert_eq!(
            eval("States.ArrayLength($.a)", json!({"a": [1, 2, 3]})).unwrap(),
            json!(3)
        );
        assert!(eval("States.ArrayLength($.a)", json!({"a": 1})).is_err());
        assert_eq!(
            eval("States.UUID()", json!({}))
                .unwrap()
                .as_str()
                .unwrap()
                .len(),
            36
        );
        assert_eq!(eval("States.Array()", json!({})).unwrap(), json!([]));
    }

    #[test]
    fn refuses_unknown_functions_and_bad_arity() {
        let e = Intrinsic::parse("States.Hash($.a, 'SHA-1')").unwrap_err();
        assert!(
            e.contains("States.Hash") && e.contains("not supported"),
            "{e}"
        );
        assert!(Intrinsic::parse("States.MathAdd(1)")
            .unwrap_err()
            .contains("takes 2"));
        assert!(Intrinsic::parse("States.UUID(1)").is_err());
        assert!(Intrinsic::parse("States.Format('x'").is_err());
        assert!(Intrinsic::parse("States.Array(1) x").is_err());
        assert!(Intrinsic::parse("States.Array(bogus)").is_err());
    }
}

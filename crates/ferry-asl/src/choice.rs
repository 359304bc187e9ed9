//! Choice rules: parsing (with load-time checks) and evaluation.
//!
//! Semantics follow Step Functions: a comparison whose `Variable` does not exist is a
//! States.Runtime error (use `IsPresent` to test for it first); a value of the wrong type
//! simply does not match.

use std::cmp::Ordering;

use serde_json::Value;

use crate::clock;
use crate::path::{Path, Scope};

#[derive(Debug, Clone)]
pub(crate) enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Test { variable: Path, test: Test },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Literal(Value),
    Path(Path),
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    Compare {
        kind: Kind,
        op: Op,
        operand: Operand,
    },
    Matches(String),
    IsPresent(bool),
    IsNull(bool),
    IsNumeric(bool),
    IsString(bool),
    IsBoolean(bool),
    IsTimestamp(bool),
}

pub(crate) const OPERATORS: &str = "StringEquals, StringLessThan, StringGreaterThan, StringLessThanEquals, \
StringGreaterThanEquals, StringMatches, NumericEquals, NumericLessThan, NumericGreaterThan, \
NumericLessThanEquals, NumericGreaterThanEquals, BooleanEquals, TimestampEquals, TimestampLessThan, \
TimestampGreaterThan, TimestampLessThanEquals, TimestampGreaterThanEquals (each also with a Path suffix), \
IsPresent, IsNull, IsNumeric, IsString, IsBoolean, IsTimestamp, And, Or, Not";

/// A problem in a rule found at load time: the field within the rule, and what is wrong.
#[derive(Debug)]
pub(crate) struct RuleIssue {
    pub field: String,
    pub message: String,
}

fn issue(field: impl Into<String>, message: impl Into<String>) -> RuleIssue {
    RuleIssue {
        field: field.into(),
        message: message.into(),
    }
}

fn comparison(op_name: &str) -> Option<(Kind, Op, bool)> {
    let (name, by_path) = match op_name.strip_suffix("Path") {
        Some(n) => (n, true),
        None => (op_name, false),
    };
    let (kind, op) = if let Some(o) = name.strip_prefix("String") {
        (Kind::String, o)
    } else if let Some(o) = name.strip_prefix("Numeric") {
        (Kind::Numeric, o)
    } else if let Some(o) = name.strip_prefix("Boolean") {
        (Kind::Boolean, o)
    } else if let Some(o) = name.strip_prefix("Timestamp") {
        (Kind::Timestamp, o)
    } else {
        return None;
    };
    let op = match op {
        "Equals" => Op::Eq,
        "LessThan" => Op::Lt,
        "GreaterThan" => Op::Gt,
        "LessThanEquals" => Op::Le,
        "GreaterThanEquals" => Op::Ge,
        _ => return None,
    };
    if kind == Kind::Boolean && op != Op::Eq {
        return None;
    }
    Some((kind, op, by_path))
}

/// Parses one rule found at `field` (e.g. `Choices[2]`). A top-level rule must have `Next`
/// (returned); a nested one (inside And/Or/Not) must not.
pub(crate) fn parse_rule(
    value: &Value,
    field: &str,
    top_level: bool,
) -> Result<(Rule, Option<String>), RuleIssue> {
    let Value::Object(obj) = value else {
        return Err(issue(field, "must be an object"));
    };
    let next = match obj.get("Next") {
        Some(Value::String(n)) if top_level => Some(n.clone()),
        Some(_) if top_level => return Err(issue(format!("{field}.Next"), "must be a string")),
        Some(_) => {
            return Err(issue(
                format!("{field}.Next"),
                "is not allowed inside And/Or/Not",
            ))
        }
        None if top_level => {
            return Err(issue(
                format!("{field}.Next"),
                "is missing (every Choices rule needs Next)",
            ))
        }
        None => None,
    };
    let mut operators: Vec<(&String, &Value)> = Vec::new();
    let mut variable = None;
    for (k, v) in obj {
        match k.as_str() {
            "Next" | "Comment" => {}
            "Variable" => variable = Some(v),
            _ => operators.push((k, v)),
        }
    }
    let [(op_name, operand)] = operators.as_slice() else {
        if operators.is_empty() {
            return Err(issue(
                field,
                format!("has no comparison operator (supported: {OPERATORS})"),
            ));
        }
        let names: Vec<&str> = operators.iter().map(|(k, _)| k.as_str()).collect();
        return Err(issue(
            field,
            format!(
                "has several operators ({}); exactly one is allowed",
                names.join(", ")
            ),
        ));
    };
    let op_field = format!("{field}.{op_name}");
    let rule = match op_name.as_str() {
        "And" | "Or" => {
            if variable.is_some() {
                return Err(issue(
                    format!("{field}.Variable"),
                    format!("is not allowed with {op_name}"),
                ));
            }
            let Value::Array(items) = operand else {
                return Err(issue(op_field, "must be an array of rules"));
            };
            if items.is_empty() {
                return Err(issue(op_field, "must not be empty"));
            }
            let mut rules = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                rules.push(parse_rule(item, &format!("{op_field}[{i}]"), false)?.0);
            }
            if op_name.as_str() == "And" {
                Rule::And(rules)
            } else {
                Rule::Or(rules)
            }
        }
        "Not" => {
            if variable.is_some() {
                return Err(issue(
                    format!("{field}.Variable"),
                    "is not allowed with Not",
                ));
            }
            Rule::Not(Box::new(parse_rule(operand, &op_field, false)?.0))
        }
        _ => {
            let variable = match variable {
                Some(Value::String(s)) => {
                    Path::parse(s).map_err(|m| issue(format!("{field}.Variable"), m))?
                }
                Some(_) => return Err(issue(format!("{field}.Variable"), "must be a path string")),
                None => {
                    return Err(issue(
                        format!("{field}.Variable"),
                        format!("is missing (required with {op_name})"),
                    ))
                }
            };
            let test = parse_test(op_name, operand, &op_field)?;
            Rule::Test { variable, test }
        }
    };
    Ok((rule, next))
}

fn parse_test(op_name: &str, operand: &Value, op_field: &str) -> Result<Test, RuleIssue> {
    let flag = |make: fn(bool) -> Test| match operand {
        Value::Bool(b) => Ok(make(*b)),
        _ => Err(issue(op_field, "must be true or false")),
    };
    match op_name {
        "IsPresent" => return flag(Test::IsPresent),
        "IsNull" => return flag(Test::IsNull),
        "IsNumeric" => return flag(Test::IsNumeric),
        "IsString" => return flag(Test::IsString),
        "IsBoolean" => return flag(Test::IsBoolean),
        "IsTimestamp" => return flag(Test::IsTimestamp),
        "StringMatches" => {
            return match operand {
                Value::String(p) => Ok(Test::Matches(p.clone())),
                _ => Err(issue(op_field, "must be a string pattern")),
            }
        }
        _ => {}
    }
    let Some((kind, op, by_path)) = comparison(op_name) else {
        return Err(issue(
            op_field,
            format!("is not a comparison operator supported by Ferry's embedded runner (supported: {OPERATORS})"),
        ));
    };
    let operand = if by_path {
        match operand {
            Value::String(s) => Operand::Path(Path::parse(s).map_err(|m| issue(op_field, m))?),
            _ => return Err(issue(op_field, "must be a path string")),
        }
    } else {
        let ok = match kind {
            Kind::String => operand.is_string(),
            Kind::Numeric => operand.is_number(),
            Kind::Boolean => operand.is_boolean(),
            Kind::Timestamp => operand.as_str().and_then(clock::parse_rfc3339).is_some(),
        };
        if !ok {
            let want = match kind {
                Kind::String => "a string",
                Kind::Numeric => "a number",
                Kind::Boolean => "true or false",
                Kind::Timestamp => "an RFC 3339 timestamp string",
            };
            return Err(issue(op_field, format!("must be {want}")));
        }
        Operand::Literal(operand.clone())
    };
    Ok(Test::Compare { kind, op, operand })
}

/// Evaluates a rule. The error is a States.Runtime cause.
pub(crate) fn eval(rule: &Rule, scope: &Scope<'_>) -> Result<bool, String> {
    match rule {
        Rule::And(rules) => {
            for r in rules {
                if !eval(r, scope)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Rule::Or(rules) => {
            for r in rules {
                if eval(r, scope)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Rule::Not(r) => Ok(!eval(r, scope)?),
        Rule::Test { variable, test } => {
            let value = scope.resolve(variable);
            if let Test::IsPresent(want) = test {
                return Ok(value.is_some() == *want);
            }
            let Some(value) = value else {
                return Err(format!(
                    "invalid path \"{}\": the choice state's condition path references an invalid value",
                    variable.text
                ));
            };
            Ok(match test {
                Test::IsPresent(_) => true,
                Test::IsNull(w) => value.is_null() == *w,
                Test::IsNumeric(w) => value.is_number() == *w,
                Test::IsString(w) => value.is_string() == *w,
                Test::IsBoolean(w) => value.is_boolean() == *w,
                Test::IsTimestamp(w) => {
                    value.as_str().and_then(clock::parse_rfc3339).is_some() == *w
                }
                Test::Matches(pattern) => {
                    value.as_str().is_some_and(|s| wildcard_match(pattern, s))
                }
                Test::Compare { kind, op, operand } => {
                    let other = match operand {
                        Operand::Literal(v) => v,
                        Operand::Path(p) => scope.resolve(p).ok_or_else(|| {
                            format!("invalid path \"{}\": the choice state's comparison path references an invalid value", p.text)
                        })?,
                    };
                    compare(*kind, value, other).is_some_and(|ord| match op {
                        Op::Eq => ord == Ordering::Equal,
                        Op::Lt => ord == Ordering::Less,
                        Op::Gt => ord == Ordering::Greater,
                        Op::Le => ord != Ordering::Greater,
                        Op::Ge => ord != Ordering::Less,
                    })
                }
            })
        }
    }
}

/// Orders two values as `kind`; `None` if either is not of that kind.
fn compare(kind: Kind, a: &Value, b: &Value) -> Option<Ordering> {
    match kind {
        Kind::String => Some(a.as_str()?.cmp(b.as_str()?)),
        Kind::Numeric => a.as_f64()?.partial_cmp(&b.as_f64()?),
        Kind::Boolean => Some(a.as_bool()?.cmp(&b.as_bool()?)),
        Kind::Timestamp => {
            Some(clock::parse_rfc3339(a.as_str()?)?.cmp(&clock::parse_rfc3339(b.as_str()?)?))
        }
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are literal.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    enum Tok {
        Star,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => toks.push(Tok::Char(it.next().unwrap_or('\\'))),
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Char(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with backtracking to the last star.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Char(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| matches!(t, Tok::Star))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::ContextSource;
    use serde_json::{json, Map};

    /// Parses a top-level rule from its JSON (adding `Next`), to keep tests short.
    fn rule(v: Value) -> Rule {
        let mut m: Map<String, Value> = v.as_object().unwrap().clone();
        m.insert("Next".into(), Value::String("X".into()));
        parse_rule(&Value::Object(m), "Choices[0]", true).unwrap().0
    }

    struct Ctx;
    impl ContextSource for Ctx {
        fn context(&self) -> Value {
            json!({"Execution": {"Name": "e"}})
        }
    }

    fn check(r: Value, input: &Value) -> bool {
        eval(&rule(r), &Scope::new(input, &Ctx)).unwrap()
    }

    #[test]
    fn wildcard_matching() {
        assert!(wildcard_match("*.log", "a.log"));
        assert!(wildcard_match("log-*-done", "log-1-2-done"));
        assert!(!wildcard_match("log-*-done", "log-1-2-don"));
        assert!(wildcard_match(r"a\*b", "a*b"));
        assert!(!wildcard_match(r"a\*b", "axb"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a**", "abc"));
    }

    #[test]
    fn comparisons_literal_and_path() {
        let input = json!({"s": "b", "t": "c", "n": 5, "m": 5.0, "b": true, "ts": "2024-01-01T00:00:00Z", "ts2": "2024-01-01T01:00:00+01:00"});
        assert!(check(
            json!({"Variable": "$.s", "StringEquals": "b"}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.s", "StringLessThan": "c"}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.s", "StringLessThanPath": "$.t"}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.s", "StringGreaterThanEquals": "b"}),
            &input
        ));
        assert!(!check(
            json!({"Variable": "$.s", "StringEqualsPath": "$.t"}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.s", "StringMatches": "*"}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.n", "NumericEquals": 5}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.n", "NumericEqualsPath": "$.m"}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.n", "NumericLessThan": 5.5}),
            &input
        ));
        assert!(!check(
            json!({"Variable": "$.n", "NumericGreaterThan": 5}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.n", "NumericGreaterThanEquals": 5}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.n", "NumericLessThanEquals": 5}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.n", "NumericGreaterThanPath": "$.zero"}),
            &json!({"n": 1, "zero": 0})
        ));
        assert!(check(
            json!({"Variable": "$.b", "BooleanEquals": true}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.b", "BooleanEqualsPath": "$.b"}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.ts", "TimestampEqualsPath": "$.ts2"}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.ts", "TimestampLessThan": "2024-01-01T00:00:01Z"}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$$.Execution.Name", "StringEquals": "e"}),
            &input
        ));
    }

    #[test]
    fn type_mismatch_is_false_not_error() {
        let input = json!({"s": "5"});
        assert!(!check(
            json!({"Variable": "$.s", "NumericEquals": 5}),
            &input
        ));
        assert!(!check(
            json!({"Variable": "$.s", "BooleanEquals": true}),
            &input
        ));
    }

    #[test]
    fn type_tests_and_presence() {
        let input = json!({"n": 1, "s": "x", "b": false, "z": null, "ts": "2024-01-01T00:00:00Z"});
        assert!(check(json!({"Variable": "$.n", "IsNumeric": true}), &input));
        assert!(check(
            json!({"Variable": "$.s", "IsNumeric": false}),
            &input
        ));
        assert!(check(json!({"Variable": "$.s", "IsString": true}), &input));
        assert!(check(json!({"Variable": "$.b", "IsBoolean": true}), &input));
        assert!(check(json!({"Variable": "$.z", "IsNull": true}), &input));
        assert!(check(
            json!({"Variable": "$.ts", "IsTimestamp": true}),
            &input
        ));
        assert!(check(
            json!({"Variable": "$.nope", "IsPresent": false}),
            &input
        ));
        assert!(check(json!({"Variable": "$.n", "IsPresent": true}), &input));
    }

    #[test]
    fn missing_variable_is_runtime_error() {
        let r = rule(json!({"Variable": "$.nope", "StringEquals": "x"}));
        assert!(eval(&r, &Scope::new(&json!({}), &Ctx)).is_err());
    }

    #[test]
    fn boolean_combinators() {
        let input = json!({"n": 3});
        let gt1 = json!({"Variable": "$.n", "NumericGreaterThan": 1});
        let gt5 = json!({"Variable": "$.n", "NumericGreaterThan": 5});
        assert!(check(json!({"And": [gt1, {"Not": gt5}]}), &input));
        assert!(!check(json!({"And": [gt1, gt5]}), &input));
        assert!(check(json!({"Or": [gt5, gt1]}), &input));
        assert!(!check(json!({"Or": [gt5]}), &input));
        // And short-circuits before a missing variable is evaluated.
        assert!(check(
            json!({"Or": [{"Variable": "$.x", "IsPresent": false}, {"Variable": "$.x", "StringEquals": "a"}]}),
            &input
        ));
    }

    #[test]
    fn load_time_refusals() {
        let bad = [
            json!({"Variable": "$.a", "StringEquals": 1, "Next": "X"}),
            json!({"Variable": "$.a", "NumericEquals": "1", "Next": "X"}),
            json!({"Variable": "$.a", "StringContains": "x", "Next": "X"}),
            json!({"Variable": "$.a", "StringEquals": "x"}),
            json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1, "Next": "X"}),
            json!({"And": [{"Variable": "$.a", "IsNull": true, "Next": "X"}], "Next": "X"}),
            json!({"StringEquals": "x", "Next": "X"}),
            json!({"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "X"}),
            json!({"Variable": "$.a", "BooleanLessThan": true, "Next": "X"}),
        ];
        for b in bad {
            assert!(parse_rule(&b, "Choices[0]", true).is_err(), "{b}");
        }
    }
}

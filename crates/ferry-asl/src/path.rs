//! The JSONPath subset, payload templates (`Parameters`, `ItemSelector`, `ResultSelector`)
//! and `ResultPath` merging.
//!
//! Supported paths: `$`, `$.a.b`, `$['a']`, `$["a"]`, `$.a[0]`, and the same rooted at the
//! context object (`$$.Execution.Name`). Every path names at most one node; wildcards, filters,
//! slices, unions and recursive descent are refused when the definition is loaded.

use std::cell::OnceCell;

use serde_json::{Map, Value};

use crate::intrinsic::Intrinsic;

/// What a path is evaluated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    /// `$`: the state's (effective) input.
    Input,
    /// `$$`: the context object.
    Context,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    pub root: Root,
    pub segs: Vec<Seg>,
    pub text: String,
}

impl Path {
    /// Parses a path. The error is a sentence fragment that follows `field "X" `.
    pub(crate) fn parse(text: &str) -> Result<Path, String> {
        let (root, rest) = if let Some(r) = text.strip_prefix("$$") {
            (Root::Context, r)
        } else if let Some(r) = text.strip_prefix('$') {
            (Root::Input, r)
        } else {
            return Err(format!(
                "has \"{text}\", which is not a path (a path starts with \"$\")"
            ));
        };
        let refuse = |what: &str| {
            Err(format!(
                "has path \"{text}\" which uses {what}; Ferry's embedded runner supports only \
                 paths to a single node ($, $.a.b, $['a'], $.a[0])"
            ))
        };
        let chars: Vec<char> = rest.chars().collect();
        let mut segs = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    if chars.get(i + 1) == Some(&'.') {
                        return refuse("recursive descent (..)");
                    }
                    i += 1;
                    let start = i;
                    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                        i += 1;
                    }
                    let name: String = chars[start..i].iter().collect();
                    if name.is_empty() {
                        return Err(format!("has path \"{text}\" with an empty field name"));
                    }
                    if name.contains(['*', '?', '@']) {
                        return refuse("a wildcard or filter");
                    }
                    segs.push(Seg::Field(name));
                }
                '[' => {
                    i += 1;
                    match chars.get(i) {
                        Some(&q) if q == '\'' || q == '"' => {
                            i += 1;
                            let start = i;
                            while i < chars.len() && chars[i] != q {
                                i += 1;
                            }
                            if chars.get(i) != Some(&q) || chars.get(i + 1) != Some(&']') {
                                return Err(format!("has path \"{text}\" with an unterminated bracket"));
                            }
                            segs.push(Seg::Field(chars[start..i].iter().collect()));
                            i += 2;
                        }
                        _ => {
                            let start = i;
                            while i < chars.len() && chars[i] != ']' {
                                i += 1;
                            }
                            if i >= chars.len() {
                                return Err(format!("has path \"{text}\" with an unterminated bracket"));
                            }
                            let inner: String = chars[start..i].iter().collect();
                            let inner = inner.trim();
                            i += 1;
                            if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
                                match inner.parse::<usize>() {
                                    Ok(n) => segs.push(Seg::Index(n)),
                                    Err(_) => return Err(format!("has path \"{text}\" with an index that is too large")),
                                }
                            } else if inner == "*" {
                                return refuse("a wildcard ([*])");
                            } else if inner.starts_with('?') {
                                return refuse("a filter ([?...])");
                            } else if inner.contains(':') {
                                return refuse("a slice ([a:b])");
                            } else if inner.contains(',') {
                                return refuse("a union ([a,b])");
                            } else if inner.starts_with('-') {
                                return refuse("a negative index");
                            } else {
                                return Err(format!("has path \"{text}\" with an invalid bracket \"[{inner}]\""));
                            }
                        }
                    }
                }
                c => {
                    return Err(format!(
                        "has path \"{text}\" with an unexpected character '{c}' (expected \".\" or \"[\")"
                    ))
                }
            }
        }
        Ok(Path {
            root,
            segs,
            text: text.to_string(),
        })
    }

    /// Parses a path that must address the state input (`$...`, not `$$...`).
    pub(crate) fn parse_input_only(text: &str) -> Result<Path, String> {
        let p = Path::parse(text)?;
        if p.root == Root::Context {
            return Err(format!(
                "has path \"{text}\"; the context object ($$) cannot be used here"
            ));
        }
        Ok(p)
    }
}

/// The node at `segs` below `value`, if any.
pub(crate) fn get<'v>(value: &'v Value, segs: &[Seg]) -> Option<&'v Value> {
    let mut cur = value;
    for seg in segs {
        cur = match (seg, cur) {
            (Seg::Field(name), Value::Object(map)) => map.get(name)?,
            (Seg::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Something that can produce the context object (`$$`) on demand.
pub(crate) trait ContextSource {
    fn context(&self) -> Value;
}

/// The data a path or template is evaluated against: the input, and the context object built
/// only if some path asks for it.
pub(crate) struct Scope<'a> {
    input: &'a Value,
    source: &'a dyn ContextSource,
    context: OnceCell<Value>,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(input: &'a Value, source: &'a dyn ContextSource) -> Scope<'a> {
        Scope {
            input,
            source,
            context: OnceCell::new(),
        }
    }

    /// Resolves a path; `None` if the node does not exist.
    pub(crate) fn resolve(&self, path: &Path) -> Option<&Value> {
        match path.root {
            Root::Input => get(self.input, &path.segs),
            Root::Context => get(
                self.context.get_or_init(|| self.source.context()),
                &path.segs,
            ),
        }
    }

    /// Resolves a path, or explains (as a States.Runtime cause) that it does not exist.
    pub(crate) fn require(&self, path: &Path, field: &str) -> Result<&Value, String> {
        self.resolve(path).ok_or_else(|| {
            let what = if path.root == Root::Context { "the context object" } else { "the input" };
            format!("the JSONPath \"{}\" specified for the field \"{field}\" could not be found in {what}", path.text)
        })
    }
}

/// A compiled payload template: literal JSON where keys ending in `.$` take a path or an
/// intrinsic function call.
#[derive(Debug, Clone)]
pub(crate) enum Template {
    Literal(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    Path(Path),
    Call(Intrinsic),
}

/// A problem in a template found at load time: the dotted field it is in, and what is wrong.
#[derive(Debug)]
pub(crate) struct TemplateIssue {
    pub field: String,
    pub message: String,
}

impl Template {
    /// Compiles the template found in `field` (e.g. "Parameters").
    pub(crate) fn compile(value: &Value, field: &str) -> Result<Template, TemplateIssue> {
        match value {
            Value::Object(map) => {
                let mut out = Vec::with_capacity(map.len());
                for (key, v) in map {
                    let sub = format!("{field}.{key}");
                    if let Some(name) = key.strip_suffix(".$") {
                        let Value::String(expr) = v else {
                            return Err(TemplateIssue {
                                field: sub,
                                message: "must be a string holding a path or an intrinsic function"
                                    .into(),
                            });
                        };
                        let t = Template::compile_expression(expr).map_err(|message| {
                            TemplateIssue {
                                field: sub,
                                message,
                            }
                        })?;
                        out.push((name.to_string(), t));
                    } else {
                        out.push((key.clone(), Template::compile(v, &sub)?));
                    }
                }
                Ok(Template::Object(out))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    out.push(Template::compile(v, &format!("{field}[{i}]"))?);
                }
                Ok(Template::Array(out))
            }
            other => Ok(Template::Literal(other.clone())),
        }
    }

    /// Compiles the value of a `.$` key: a path or an intrinsic function call.
    pub(crate) fn compile_expression(expr: &str) -> Result<Template, String> {
        let trimmed = expr.trim();
        if trimmed.starts_with('$') {
            Path::parse(trimmed).map(Template::Path)
        } else if trimmed.starts_with("States.") {
            Intrinsic::parse(trimmed).map(Template::Call)
        } else {
            Err(format!(
                "has \"{expr}\", which is neither a path (starting with \"$\") nor an intrinsic function (starting with \"States.\")"
            ))
        }
    }

    /// Evaluates the template; the error is a States.Runtime cause.
    pub(crate) fn eval(&self, scope: &Scope<'_>, field: &str) -> Result<Value, String> {
        match self {
            Template::Literal(v) => Ok(v.clone()),
            Template::Object(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, t) in entries {
                    map.insert(k.clone(), t.eval(scope, field)?);
                }
                Ok(Value::Object(map))
            }
            Template::Array(items) => items
                .iter()
                .map(|t| t.eval(scope, field))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Template::Path(p) => scope.require(p, field).cloned(),
            Template::Call(call) => call.eval(scope),
        }
    }
}

/// `ResultPath`: where a state's result goes in its raw input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResultPath {
    /// `null`: discard the result, output the input.
    Discard,
    /// `$` (no segments) replaces the input; otherwise the result is set at the path,
    /// creating intermediate objects.
    At(Vec<Seg>),
}

impl ResultPath {
    pub(crate) fn parse(value: Option<&Value>) -> Result<ResultPath, String> {
        match value {
            None => Ok(ResultPath::At(Vec::new())),
            Some(Value::Null) => Ok(ResultPath::Discard),
            Some(Value::String(s)) => {
                let p = Path::parse_input_only(s)?;
                if p.segs.iter().any(|s| matches!(s, Seg::Index(_))) {
                    return Err(format!(
                        "has path \"{s}\"; Ferry's embedded runner supports only object fields in a ResultPath (e.g. \"$.a.b\")"
                    ));
                }
                Ok(ResultPath::At(p.segs))
            }
            Some(_) => Err("must be a path string or null".into()),
        }
    }

    /// Combines `result` with the state's raw `input`. The error is a States.Runtime cause.
    pub(crate) fn apply(&self, input: Value, result: Value) -> Result<Value, String> {
        let segs = match self {
            ResultPath::Discard => return Ok(input),
            ResultPath::At(segs) if segs.is_empty() => return Ok(result),
            ResultPath::At(segs) => segs,
        };
        let mut root = input;
        let mut cur = &mut root;
        for (i, seg) in segs.iter().enumerate() {
            let Seg::Field(name) = seg else {
                return Err("ResultPath may only name object fields".into());
            };
            let Value::Object(map) = cur else {
                return Err(format!(
                    "unable to apply ResultPath: the value at depth {i} is not an object, so field \"{name}\" cannot be set"
                ));
            };
            if i + 1 == segs.len() {
                map.insert(name.clone(), result);
                return Ok(root);
            }
            cur = map
                .entry(name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct NoContext;
    impl ContextSource for NoContext {
        fn context(&self) -> Value {
            json!({"Execution": {"Name": "exec-1"}})
        }
    }

    #[test]
    fn parses_supported_paths() {
        let p = Path::parse("$.a['b c'][2].d").unwrap();
        assert_eq!(p.root, Root::Input);
        assert_eq!(
            p.segs,
            vec![
                Seg::Field("a".into()),
                Seg::Field("b c".into()),
                Seg::Index(2),
                Seg::Field("d".into())
            ]
        );
        assert_eq!(Path::parse("$").unwrap().segs, vec![]);
        assert_eq!(
            Path::parse("$$.Execution.Name").unwrap().root,
            Root::Context
        );
        assert_eq!(
            Path::parse("$[\"x\"]").unwrap().segs,
            vec![Seg::Field("x".into())]
        );
    }

    #[test]
    fn refuses_multi_node_paths() {
        for bad in [
            "$..a",
            "$.a[*]",
            "$.a[?(@.x)]",
            "$.a[0:2]",
            "$.a[0,1]",
            "$.*",
            "$.a[-1]",
            "a.b",
            "$a",
            "$.a[",
            "$.a.",
            "$['a'",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_resolve_paths_and_keep_literals() {
        let t = Template::compile(
            &json!({"lit": 1, "from.$": "$.a[1]", "ctx.$": "$$.Execution.Name", "nested": {"x.$": "$.b"}, "arr": [{"y.$": "$.b"}]}),
            "Parameters",
        )
        .unwrap();
        let input = json!({"a": [10, 20], "b": "bee"});
        let out = t
            .eval(&Scope::new(&input, &NoContext), "Parameters")
            .unwrap();
        assert_eq!(
            out,
            json!({"lit": 1, "from": 20, "ctx": "exec-1", "nested": {"x": "bee"}, "arr": [{"y": "bee"}]})
        );
    }

    #[test]
    fn template_missing_path_is_an_error() {
        let t = Template::compile(&json!({"x.$": "$.missing"}), "Parameters").unwrap();
        let err = t
            .eval(&Scope::new(&json!({}), &NoContext), "Parameters")
            .unwrap_err();
        assert!(err.contains("$.missing"), "{err}");
    }

    #[test]
    fn template_refuses_non_path_expression() {
        let e = Template::compile(&json!({"a": {"x.$": "hello"}}), "Parameters").unwrap_err();
        assert_eq!(e.field, "Parameters.a.x.$");
    }

    #[test]
    fn result_path_merges_replaces_and_discards() {
        let input = json!({"keep": 1, "a": {"old": true}});
        let rp = ResultPath::parse(Some(&json!("$.a.b.c"))).unwrap();
        assert_eq!(
            rp.apply(input.clone(), json!(5)).unwrap(),
            json!({"keep": 1, "a": {"old": true, "b": {"c": 5}}})
        );
        assert_eq!(
            ResultPath::parse(None)
                .unwrap()
                .apply(input.clone(), json!(5))
                .unwrap(),
            json!(5)
        );
        assert_eq!(
            ResultPath::parse(Some(&Value::Null))
                .unwrap()
                .apply(input.clone(), json!(5))
                .unwrap(),
            input
        );
        assert!(ResultPath::parse(Some(&json!("$.keep.x")))
            .unwrap()
            .apply(input, json!(5))
            .is_err());
        assert!(ResultPath::parse(Some(&json!("$$.x"))).is_err());
        assert!(ResultPath::parse(Some(&json!("$.a[0]"))).is_err());
    }
}

//! Reading infra/template.yaml: resources, intrinsic functions (short `!Ref`
//! and long `{"Ref": ..}` forms) and the state machine definition with its
//! DefinitionSubstitutions applied, as the template would deploy it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn template() -> Value {
    let path = root().join("infra/template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("infra/template.yaml is not YAML: {e}"))
}

pub fn map<'a>(v: &'a Value, key: &str) -> &'a serde_yaml::Mapping {
    v.get(key)
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("template: no mapping \"{key}\""))
}

pub fn resources(t: &Value) -> BTreeMap<String, &Value> {
    map(t, "Resources")
        .iter()
        .map(|(k, v)| (k.as_str().expect("resource name").to_string(), v))
        .collect()
}

pub fn of_type<'a>(t: &'a Value, ty: &str) -> BTreeMap<String, &'a Value> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(ty))
        .collect()
}

/// `${Name}` placeholders of a definition or a !Sub string (`${!Literal}` excluded).
pub fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('}') else { break };
        if !rest.starts_with('!') {
            out.insert(rest[..end].to_string());
        }
        rest = &rest[end + 1..];
    }
    out
}

/// The tag name (`Ref`, `GetAtt`, ...) of a short-form intrinsic, or of a long-form one.
pub fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_string(),
            &t.value,
        )),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next()?;
            let k = k.as_str()?;
            let name = if k == "Ref" {
                "Ref"
            } else {
                k.strip_prefix("Fn::")?
            };
            Some((name.to_string(), inner))
        }
        _ => None,
    }
}

/// The resource an intrinsic's target names (`X` of `X.Arn`).
pub fn target_of(name: &str) -> String {
    name.split('.').next().unwrap_or(name).to_string()
}

/// Every (kind, target) referenced anywhere under `v`: kind is `Ref`, `GetAtt`, `Sub` or `Condition`.
pub fn references(v: &Value, out: &mut Vec<(String, String)>) {
    if let Some((tag, inner)) = intrinsic(v) {
        match tag.as_str() {
            "Ref" => out.push((
                "Ref".into(),
                inner.as_str().expect("!Ref of a name").to_string(),
            )),
            "GetAtt" => {
                let target = match inner {
                    Value::String(s) => target_of(s),
                    Value::Sequence(seq) => {
                        seq[0].as_str().expect("!GetAtt [Name, Attr]").to_string()
                    }
                    other => panic!("!GetAtt of {other:?}"),
                };
                out.push(("GetAtt".into(), target));
            }
            "Sub" => {
                let (text, vars) = match inner {
                    Value::String(s) => (s.as_str(), None),
                    Value::Sequence(seq) => {
                        (seq[0].as_str().expect("!Sub [text, vars]"), seq.get(1))
                    }
                    other => panic!("!Sub of {other:?}"),
                };
                let local: BTreeSet<String> = vars
                    .and_then(Value::as_mapping)
                    .map(|m| {
                        m.keys()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                for p in placeholders(text) {
                    if !local.contains(&p) {
                        out.push(("Sub".into(), target_of(&p)));
                    }
                }
                if let Some(vars) = vars {
                    references(vars, out);
                }
                return;
            }
            "If" => {
                let seq = inner.as_sequence().expect("!If [Condition, a, b]");
                out.push((
                    "Condition".into(),
                    seq[0].as_str().expect("condition name").to_string(),
                ));
                for x in &seq[1..] {
                    references(x, out);
                }
                return;
            }
            _ => {}
        }
        references(inner, out);
        return;
    }
    match v {
        Value::Mapping(m) => {
            for (k, x) in m {
                if k.as_str() == Some("Condition") {
                    if let Some(c) = x.as_str() {
                        out.push(("Condition".into(), c.to_string()));
                    }
                }
                references(x, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

/// The definition the template deploys, with each DefinitionSubstitution
/// (`!GetAtt <Function>.Arn`) replaced by `arn_of_stage(<the function's FerryStage>)`.
pub fn deployed_definition(arn_of_stage: impl Fn(&str) -> String) -> String {
    let t = template();
    let machines = of_type(&t, "AWS::Serverless::StateMachine");
    let props = machines
        .values()
        .next()
        .expect("a state machine")
        .get("Properties")
        .expect("Properties");
    let uri = props
        .get("DefinitionUri")
        .and_then(Value::as_str)
        .expect("DefinitionUri");
    let mut text =
        std::fs::read_to_string(root().join("infra").join(uri)).expect("the definition file");
    let functions = of_type(&t, "AWS::Serverless::Function");
    for (name, value) in map(props, "DefinitionSubstitutions") {
        let mut refs = Vec::new();
        references(value, &mut refs);
        let function = &refs.first().expect("a reference").1;
        let stage = functions[function]
            .get("Metadata")
            .and_then(|m| m.get("FerryStage"))
            .and_then(Value::as_str)
            .expect("Metadata.FerryStage");
        text = text.replace(
            &format!("${{{}}}", name.as_str().expect("name")),
            &arn_of_stage(stage),
        );
    }
    text
}

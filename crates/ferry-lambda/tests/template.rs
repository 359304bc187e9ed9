//! Cross-checks of infra/template.yaml against the state machine definition,
//! the stage table and the functions/ crates — what `cfn-lint` cannot see
//! inside SAM resources: every `${...}` of the definition has a
//! DefinitionSubstitution, each names a function resource of the right stage,
//! each stage has a function and a `functions/<stage>` crate whose binary the
//! function's CodeUri points at, and every !Ref / !GetAtt / !Sub / !If target
//! exists.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use crate::common::sam::*;

#[test]
fn every_reference_in_the_template_exists() {
    let t = template();
    let resources: BTreeSet<String> = resources(&t).into_keys().collect();
    let parameters: BTreeSet<String> = map(&t, "Parameters")
        .keys()
        .map(|k| k.as_str().expect("name").to_string())
        .collect();
    let conditions: BTreeSet<String> = map(&t, "Conditions")
        .keys()
        .map(|k| k.as_str().expect("name").to_string())
        .collect();
    let mut refs = Vec::new();
    for section in ["Globals", "Resources", "Outputs", "Conditions"] {
        references(t.get(section).expect("section"), &mut refs);
    }
    assert!(
        refs.len() > 20,
        "the walk found too few references: {refs:?}"
    );
    let mut dangling = Vec::new();
    for (kind, target) in &refs {
        let ok = match kind.as_str() {
            "Condition" => conditions.contains(target),
            "GetAtt" => resources.contains(target),
            _ => {
                resources.contains(target)
                    || parameters.contains(target)
                    || target.starts_with("AWS::")
            }
        };
        if !ok {
            dangling.push(format!("{kind} {target}"));
        }
    }
    assert!(
        dangling.is_empty(),
        "infra/template.yaml references what does not exist: {dangling:?}"
    );
}

#[test]
fn state_machine_substitutions_match_definition_stages_and_functions() {
    let t = template();
    let machines = of_type(&t, "AWS::Serverless::StateMachine");
    assert_eq!(machines.len(), 1, "one state machine");
    let props = machines
        .values()
        .next()
        .unwrap()
        .get("Properties")
        .expect("Properties");
    let uri = props
        .get("DefinitionUri")
        .and_then(Value::as_str)
        .expect("DefinitionUri (a file path)");
    let definition_path = root().join("infra").join(uri);
    let definition = std::fs::read_to_string(&definition_path)
        .unwrap_or_else(|e| panic!("DefinitionUri {uri} -> {}: {e}", definition_path.display()));
    let wanted = placeholders(&definition);

    let subs = map(props, "DefinitionSubstitutions");
    let given: BTreeSet<String> = subs
        .keys()
        .map(|k| k.as_str().expect("name").to_string())
        .collect();
    assert_eq!(
        given, wanted,
        "DefinitionSubstitutions must be exactly the definition's ${{...}} placeholders"
    );

    let functions = of_type(&t, "AWS::Serverless::Function");
    let stage_of_placeholder: BTreeMap<String, &str> = ferry_core::Stage::ALL
        .iter()
        .map(|s| (s.placeholder(), s.name()))
        .collect();
    for (name, value) in subs {
        let name = name.as_str().unwrap();
        let mut refs = Vec::new();
        references(value, &mut refs);
        let [(kind, function)] = refs.as_slice() else {
            panic!("substitution {name}: one reference, got {refs:?}")
        };
        assert!(
            kind == "GetAtt" || kind == "Ref",
            "substitution {name}: !GetAtt Function.Arn"
        );
        let resource = functions
            .get(function)
            .unwrap_or_else(|| panic!("{name} names {function}, not a function"));
        let stage = resource
            .get("Metadata")
            .and_then(|m| m.get("FerryStage"))
            .and_then(Value::as_str);
        let expected = stage_of_placeholder.get(name).copied();
        assert_eq!(
            stage, expected,
            "{name} -> {function}: its Metadata.FerryStage must be the stage of {name}"
        );
    }
}

#[test]
fn every_stage_has_a_function_and_a_crate() {
    let t = template();
    let functions = of_type(&t, "AWS::Serverless::Function");
    let mut by_stage = BTreeMap::new();
    for (name, f) in &functions {
        let stage = f
            .get("Metadata")
            .and_then(|m| m.get("FerryStage"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{name}: Metadata.FerryStage names its stage"));
        let code = f
            .get("Properties")
            .and_then(|p| p.get("CodeUri"))
            .and_then(Value::as_str);
        assert_eq!(
            code,
            Some(format!("../target/lambda/ferry-fn-{stage}/").as_str()),
            "{name}: CodeUri must be cargo lambda's output for ferry-fn-{stage}"
        );
        by_stage.insert(stage.to_string(), name.clone());
    }
    let stages: BTreeSet<String> = ferry_core::Stage::ALL
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    assert_eq!(
        by_stage.keys().cloned().collect::<BTreeSet<_>>(),
        stages,
        "one function per ferry_core::Stage"
    );

    let mut crates = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("functions")).expect("functions/") {
        let dir = entry.expect("entry").path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{}/Cargo.toml: {e}", dir.display()));
        let stage = dir.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            manifest.contains(&format!("name = \"ferry-fn-{stage}\"")),
            "functions/{stage}: package must be named ferry-fn-{stage} (cargo lambda names the output after it)"
        );
        let main = std::fs::read_to_string(dir.join("src/main.rs")).expect("src/main.rs");
        assert!(
            main.contains(&format!("run_stage(\"{stage}\")")),
            "functions/{stage} must run stage {stage}"
        );
        crates.insert(stage);
    }
    assert_eq!(
        crates, stages,
        "one functions/<stage> crate per ferry_core::Stage"
    );
}

#[test]
fn the_walk_sees_short_and_long_forms() {
    let doc: Value = serde_yaml::from_str(
        "a: !Ref P\nb: {\"Fn::GetAtt\": [R, Arn]}\nc: !Sub \"x-${AWS::Region}-${R.Arn}-${!Lit}\"\nd: !If [C, !Ref Q, 1]",
    )
    .unwrap();
    let mut refs = Vec::new();
    references(&doc, &mut refs);
    let got: Vec<String> = refs.iter().map(|(k, t)| format!("{k} {t}")).collect();
    assert_eq!(
        got,
        [
            "Ref P",
            "GetAtt R",
            "Sub AWS::Region",
            "Sub R",
            "Condition C",
            "Ref Q"
        ]
    );
}

/// Every metric the CloudWatch dashboard shows is one a function emits: namespace `Ferry` with the
/// stage that emits it (crates/ferry-aws/src/emf.rs), or Step Functions' own ExecutionsFailed.
#[test]
fn the_dashboard_shows_only_metrics_the_functions_emit() {
    let t = template();
    let dashboards = of_type(&t, "AWS::CloudWatch::Dashboard");
    let dash = dashboards
        .get("MigrationDashboard")
        .expect("a MigrationDashboard resource");
    let body = dash
        .get("Properties")
        .and_then(|p| p.get("DashboardBody"))
        .expect("DashboardBody");
    let text = match intrinsic(body) {
        Some((tag, v)) if tag == "Sub" => v.as_str().expect("!Sub string").to_string(),
        _ => panic!("DashboardBody should be a !Sub string"),
    };
    for p in placeholders(&text) {
        assert!(
            ["AWS::Region", "MigrationStateMachine"].contains(&p.as_str()),
            "unexpected placeholder ${{{p}}} in the dashboard"
        );
    }
    let json_text = text
        .replace("${AWS::Region}", "us-east-1")
        .replace("${MigrationStateMachine}", "arn:sm");
    let body: serde_json::Value =
        serde_json::from_str(&json_text).expect("the dashboard body is JSON");
    let mut shown = BTreeSet::new();
    for w in body["widgets"].as_array().expect("widgets") {
        for m in w["properties"]["metrics"].as_array().into_iter().flatten() {
            let parts: Vec<&str> = m
                .as_array()
                .expect("metric array")
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect();
            if parts.is_empty() {
                continue; // a math expression
            }
            shown.insert(parts[1].to_string());
            match parts[0] {
                "Ferry" => {
                    let source = ferry_aws::emf::METRICS
                        .iter()
                        .find(|s| s.metric == parts[1])
                        .unwrap_or_else(|| {
                            panic!(
                                "the dashboard shows Ferry/{} that no function emits",
                                parts[1]
                            )
                        });
                    assert_eq!(
                        parts.get(2..4),
                        Some(&["Stage", source.stage.name()][..]),
                        "Ferry/{} is emitted with dimension Stage={}",
                        parts[1],
                        source.stage
                    );
                }
                "AWS/States" => assert_eq!(parts[1], "ExecutionsFailed"),
                other => panic!("the dashboard shows a metric of namespace {other}"),
            }
        }
    }
    for wanted in [
        "LagSeconds",
        "RowsCopied",
        "RowsApplied",
        "ChunksRemaining",
        "VerifyDifferences",
        "ExecutionsFailed",
    ] {
        assert!(
            shown.contains(wanted),
            "the dashboard does not show {wanted}"
        );
    }
}

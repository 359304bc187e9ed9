//! Row-by-row comparison in Rust of rows rendered canonically by each side:
//! the last step of a drill-down.
//!
//! Invariant: a row is paired by its key's canonical text (never by position
//! or by Rust's ordering), so a row reported missing has no row with an equal
//! key on the target, one reported extra none on the source, and a row
//! reported as differing names each column whose canonical texts differ (JSON
//! columns compared as parsed JSON, so formatting alone is not a difference).

use std::collections::HashMap;

use ferry_core::model::{DiffKind, DiffRecord, KeyValue};

/// One row as a side returned it: its key (typed, to bind it again), its
/// key's canonical text, and the canonical text of each compared column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRow {
    pub key: Vec<KeyValue>,
    pub key_text: Vec<Option<Vec<u8>>>,
    pub values: Vec<Option<Vec<u8>>>,
}

/// One difference between the sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowDiff {
    MissingInTarget {
        key: Vec<KeyValue>,
    },
    ExtraInTarget {
        key: Vec<KeyValue>,
    },
    /// `(column, source text, target text)` for each differing column.
    ValuesDiffer {
        key: Vec<KeyValue>,
        columns: Vec<(String, String, String)>,
    },
}

impl RowDiff {
    pub fn key(&self) -> &[KeyValue] {
        match self {
            RowDiff::MissingInTarget { key }
            | RowDiff::ExtraInTarget { key }
            | RowDiff::ValuesDiffer { key, .. } => key,
        }
    }

    pub fn kind(&self) -> DiffKind {
        match self {
            RowDiff::MissingInTarget { .. } => DiffKind::MissingInTarget,
            RowDiff::ExtraInTarget { .. } => DiffKind::ExtraInTarget,
            RowDiff::ValuesDiffer { .. } => DiffKind::ValuesDiffer,
        }
    }

    pub fn into_record(self, source_db: &str, source_table: &str) -> DiffRecord {
        let kind = self.kind();
        let (key, columns) = match self {
            RowDiff::MissingInTarget { key } | RowDiff::ExtraInTarget { key } => (key, Vec::new()),
            RowDiff::ValuesDiffer { key, columns } => (key, columns),
        };
        DiffRecord {
            source_db: source_db.to_string(),
            source_table: source_table.to_string(),
            key,
            kind,
            columns,
        }
    }
}

/// The column layout both sides' rows follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub names: Vec<String>,
    /// Per column: compare as JSON documents.
    pub json: Vec<bool>,
}

/// At most this many characters of a value are kept in a difference record.
pub const SHOWN_CHARS: usize = 200;

/// A canonical value for people: `NULL`, or its text, cut after [`SHOWN_CHARS`].
pub fn shown(v: &Option<Vec<u8>>) -> String {
    match v {
        None => "NULL".to_string(),
        Some(b) => {
            let text = String::from_utf8_lossy(b);
            let n = text.chars().count();
            if n <= SHOWN_CHARS {
                text.into_owned()
            } else {
                let head: String = text.chars().take(SHOWN_CHARS).collect();
                format!("{head}... ({n} characters)")
            }
        }
    }
}

/// Two JSON texts equal as JSON documents (formatting, key order and number
/// spelling aside); texts that do not parse are compared as bytes.
pub fn json_equal(a: &[u8], b: &[u8]) -> bool {
    match (
        serde_json::from_slice::<serde_json::Value>(a),
        serde_json::from_slice::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => same_json(&x, &y),
        _ => a == b,
    }
}

/// JSON equality with numbers compared by value: servers print a number their
/// own way (`1.5e10` on MariaDB's text, `15000000000` from a JSON type).
fn same_json(x: &serde_json::Value, y: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (x, y) {
        (J::Number(a), J::Number(b)) => a == b || a.as_f64() == b.as_f64(),
        (J::Array(a), J::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(p, q)| same_json(p, q))
        }
        (J::Object(a), J::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => x == y,
    }
}

/// The columns whose values differ, as `(name, source, target)`.
pub fn differing_columns(
    layout: &Layout,
    src: &FetchedRow,
    tgt: &FetchedRow,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (i, name) in layout.names.iter().enumerate() {
        let (a, b) = (
            src.values.get(i).cloned().flatten(),
            tgt.values.get(i).cloned().flatten(),
        );
        let same = match (&a, &b) {
            (Some(x), Some(y)) if layout.json.get(i).copied().unwrap_or(false) => json_equal(x, y),
            _ => a == b,
        };
        if !same {
            out.push((name.clone(), shown(&a), shown(&b)));
        }
    }
    out
}

/// Every difference between the rows of the same key range on both sides.
/// The result is ordered: missing and differing rows in source order, then extras in target order.
pub fn compare_rows(layout: &Layout, src: &[FetchedRow], tgt: &[FetchedRow]) -> Vec<RowDiff> {
    let by_key: HashMap<&Vec<Option<Vec<u8>>>, &FetchedRow> =
        tgt.iter().map(|r| (&r.key_text, r)).collect();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in src {
        match by_key.get(&s.key_text) {
            None => out.push(RowDiff::MissingInTarget { key: s.key.clone() }),
            Some(t) => {
                seen.insert(&s.key_text);
                let columns = differing_columns(layout, s, t);
                if !columns.is_empty() {
                    out.push(RowDiff::ValuesDiffer {
                        key: s.key.clone(),
                        columns,
                    });
                }
            }
        }
    }
    out.extend(
        tgt.iter()
            .filter(|t| !seen.contains(&t.key_text))
            .map(|t| RowDiff::ExtraInTarget { key: t.key.clone() }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, vals: &[Option<&str>]) -> FetchedRow {
        FetchedRow {
            key: vec![KeyValue::Int(id)],
            key_text: vec![Some(id.to_string().into_bytes())],
            values: vals
                .iter()
                .map(|v| v.map(|s| s.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn layout() -> Layout {
        Layout {
            names: vec!["s".into(), "j".into()],
            json: vec![false, true],
        }
    }

    #[test]
    fn finds_each_kind_and_only_those() {
        let src = vec![
            row(1, &[Some("a"), None]),
            row(2, &[Some("b "), None]),
            row(3, &[None, None]),
        ];
        let tgt = vec![
            row(2, &[Some("b"), None]),
            row(3, &[Some(""), None]),
            row(4, &[Some("x"), None]),
        ];
        let d = compare_rows(&layout(), &src, &tgt);
        assert_eq!(
            d,
            vec![
                RowDiff::MissingInTarget {
                    key: vec![KeyValue::Int(1)]
                },
                RowDiff::ValuesDiffer {
                    key: vec![KeyValue::Int(2)],
                    columns: vec![("s".into(), "b ".into(), "b".into())]
                },
                RowDiff::ValuesDiffer {
                    key: vec![KeyValue::Int(3)],
                    columns: vec![("s".into(), "NULL".into(), "".into())]
                },
                RowDiff::ExtraInTarget {
                    key: vec![KeyValue::Int(4)]
                },
            ]
        );
    }

    #[test]
    fn json_formatting_is_not_a_difference_but_values_are() {
        let src = vec![row(1, &[Some("a"), Some(r#"{"a":1,"b":[1,2]}"#)])];
        let same = vec![row(1, &[Some("a"), Some(r#"{"b": [1, 2], "a": 1}"#)])];
        assert!(compare_rows(&layout(), &src, &same).is_empty());
        let other = vec![row(1, &[Some("a"), Some(r#"{"b": [1, 3], "a": 1}"#)])];
        assert_eq!(compare_rows(&layout(), &src, &other).len(), 1);
    }

    #[test]
    fn long_values_are_cut_for_people() {
        let long = Some(vec![b'x'; 500]);
        let s = shown(&long);
        assert!(s.ends_with("... (500 characters)"), "{s}");
        assert_eq!(shown(&None), "NULL");
    }
}

//! The model of a `CREATE TABLE` text: its definitions split at top-level
//! commas, each classified (column, index, foreign key, check, period), its
//! table options and its partition clause. Parsing only; the rewriting lives
//! in `columns`, `indexes` and `options`, the per-target rules in `mysql`,
//! `mariadb` and `oceanbase`.

use super::*;

/// The parts of a `CREATE TABLE`.
pub(super) struct Parsed {
    pub(super) defs: Vec<Vec<Tok>>,
    pub(super) options: Vec<Tok>,
    pub(super) partition: Vec<Tok>,
}

pub(super) fn parse_create(sql: &str) -> Option<Parsed> {
    let toks = tokenize(sql);
    let create = toks.iter().position(|t| t.is("CREATE"))?;
    let table = toks.iter().skip(create).position(|t| t.is("TABLE"))? + create;
    let open = toks.iter().skip(table).position(|t| t.is_p('('))? + table;
    let close = matching(&toks, open);
    let defs = split_commas(&toks[open + 1..close]);
    let tail = &toks[(close + 1).min(toks.len())..];
    let split = find_kw(tail, "PARTITION").unwrap_or(tail.len());
    Some(Parsed {
        defs,
        options: tail[..split].to_vec(),
        partition: tail[split..].to_vec(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IndexKind {
    Primary,
    Unique,
    Plain,
    Fulltext,
    Spatial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DefKind {
    Column,
    Index(IndexKind),
    ForeignKey,
    Check,
    Period,
}

pub(super) fn classify_def(def: &[Tok]) -> DefKind {
    let mut i = 0;
    if def.first().is_some_and(|t| t.is("CONSTRAINT")) {
        // CONSTRAINT [symbol] PRIMARY|UNIQUE|FOREIGN|CHECK
        i = 1;
        if def.get(1).is_some_and(|t| {
            !["PRIMARY", "UNIQUE", "FOREIGN", "CHECK"]
                .iter()
                .any(|k| t.is(k))
        }) {
            i = 2;
        }
    }
    let Some(t) = def.get(i) else {
        return DefKind::Column;
    };
    if t.kind != Kind::Word {
        return DefKind::Column;
    }
    match t.upper().as_str() {
        "PRIMARY" => DefKind::Index(IndexKind::Primary),
        "UNIQUE" => DefKind::Index(IndexKind::Unique),
        "KEY" | "INDEX" => DefKind::Index(IndexKind::Plain),
        "FULLTEXT" => DefKind::Index(IndexKind::Fulltext),
        "SPATIAL" => DefKind::Index(IndexKind::Spatial),
        "FOREIGN" => DefKind::ForeignKey,
        "CHECK" => DefKind::Check,
        "PERIOD" if def.get(i + 1).is_some_and(|t| t.is("FOR")) => DefKind::Period,
        _ => DefKind::Column,
    }
}

/// End (exclusive) of the data type at `def[1..]`: the type word, its (args), and
/// UNSIGNED / SIGNED / ZEROFILL.
pub(super) fn type_end(def: &[Tok]) -> usize {
    let mut i = 2;
    if def.get(i).is_some_and(|t| t.is_p('(')) {
        i = matching(def, i) + 1;
    }
    // Two-word types.
    if def.get(1).is_some_and(|t| t.is("DOUBLE")) && def.get(i).is_some_and(|t| t.is("PRECISION")) {
        i += 1;
    }
    while def
        .get(i)
        .is_some_and(|t| t.is("UNSIGNED") || t.is("SIGNED") || t.is("ZEROFILL"))
    {
        i += 1;
    }
    i.min(def.len())
}

/// One table option: its name (upper case, words joined by a space) and the tokens of its value.
pub(super) struct TableOption {
    /// Upper case, words joined by a space, quotes removed: for matching.
    pub(super) name: String,
    /// As written: for output.
    pub(super) raw_name: String,
    pub(super) value: Vec<Tok>,
}

pub(super) fn parse_options(toks: &[Tok]) -> Vec<TableOption> {
    let mut out = Vec::new();
    let mut i = 0;
    let multi = [
        &["DEFAULT", "CHARACTER", "SET"][..],
        &["DEFAULT", "CHARSET"],
        &["DEFAULT", "COLLATE"],
        &["CHARACTER", "SET"],
        &["WITH", "SYSTEM", "VERSIONING"],
        &["DATA", "DIRECTORY"],
        &["INDEX", "DIRECTORY"],
        &["STORAGE", "ENGINE"],
    ];
    while i < toks.len() {
        if toks[i].is_p(',') || toks[i].kind == Kind::Comment {
            i += 1;
            continue;
        }
        let words = multi
            .iter()
            .find(|seq| {
                seq.iter()
                    .enumerate()
                    .all(|(k, w)| toks.get(i + k).is_some_and(|t| t.is(w)))
            })
            .map(|seq| seq.len())
            .unwrap_or(1);
        let name: Vec<String> = toks[i..i + words]
            .iter()
            .map(|t| t.ident().unwrap_or_default().to_ascii_uppercase())
            .collect();
        let name = name.join(" ");
        let raw_name = toks[i..i + words]
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        i += words;
        if name == "WITH SYSTEM VERSIONING" {
            out.push(TableOption {
                name,
                raw_name,
                value: Vec::new(),
            });
            continue;
        }
        if toks.get(i).is_some_and(|t| t.is_p('=')) {
            i += 1;
        }
        let mut value = Vec::new();
        if let Some(v) = toks.get(i) {
            if v.is_p('(') {
                let end = matching(toks, i);
                value.extend_from_slice(&toks[i..=end]);
                i = end + 1;
            } else {
                value.push(v.clone());
                i += 1;
            }
        }
        out.push(TableOption {
            name,
            raw_name,
            value,
        });
    }
    out
}

/// Partitions times subpartitions, from `PARTITIONS n` / `SUBPARTITIONS n` or the definitions.
pub(super) fn partition_count(toks: &[Tok]) -> u64 {
    let count_after = |kw: &str| -> Option<u64> {
        let i = find_kw(toks, kw)?;
        toks.get(i + 1)?.text.parse().ok()
    };
    let parts = count_after("PARTITIONS").unwrap_or_else(|| {
        let mut depth = 0i32;
        let mut n = 0;
        for t in toks {
            if t.is_p('(') {
                depth += 1;
            } else if t.is_p(')') {
                depth -= 1;
            } else if depth == 1 && t.is("PARTITION") {
                n += 1;
            }
        }
        n.max(1)
    });
    parts * count_after("SUBPARTITIONS").unwrap_or(1)
}

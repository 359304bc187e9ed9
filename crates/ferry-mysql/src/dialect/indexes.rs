//! Indexes and constraints: keys, functional key parts, invisible indexes,
//! full-text parsers, key lengths, CHECK constraints and foreign keys.

use super::*;
use ferry_core::task::renamed;

/// Whether an index starts with the AUTO_INCREMENT column (which must stay indexed at creation).
pub(super) fn starts_with_auto_inc(_ctx: &Ctx, index: &[Tok], defs: &[Vec<Tok>]) -> bool {
    let Some(open) = index.iter().position(|t| t.is_p('(')) else {
        return false;
    };
    let Some(first) = index.get(open + 1).and_then(Tok::ident) else {
        return false;
    };
    defs.iter().any(|d| {
        classify_def(d) == DefKind::Column
            && d.first().and_then(Tok::ident).as_deref() == Some(first.as_str())
            && find_kw(d, "AUTO_INCREMENT").is_some()
    })
}

/// The name of an index definition, for messages.
pub(super) fn index_label(ctx: &Ctx, def: &[Tok]) -> String {
    let name = def
        .iter()
        .take_while(|t| !t.is_p('('))
        .filter(|t| t.kind == Kind::Quoted)
        .filter_map(Tok::ident)
        .last()
        .unwrap_or_else(|| "PRIMARY".into());
    format!("{} index `{name}`", ctx.name())
}

pub(super) fn rewrite_index(ctx: &mut Ctx, mut def: Vec<Tok>, kind: IndexKind) -> Option<Vec<Tok>> {
    let label = index_label(ctx, &def);
    if !ctx.mariadb_target() {
        if def
            .windows(2)
            .any(|w| w[0].is("WITHOUT") && w[1].is("OVERLAPS"))
        {
            ctx.problem(
                label.clone(),
                format!(
                    "uses WITHOUT OVERLAPS (MariaDB application-time periods), which {} does not have",
                    ctx.target_label()
                ),
                "drop WITHOUT OVERLAPS from the key on the source, or migrate to MariaDB".into(),
            );
        }
        let hash = find_seq(&def, &["USING", "HASH"]);
        let memory = matches!(ctx.source_engine.as_str(), "MEMORY" | "HEAP");
        if let Some(h) = hash {
            if kind == IndexKind::Unique && !memory {
                ctx.problem(
                    label.clone(),
                    format!(
                        "is a MariaDB long unique key (UNIQUE ... USING HASH over BLOB/TEXT or more than 3072 bytes); \
                         {} cannot enforce uniqueness over whole BLOB/TEXT values",
                        ctx.target_label()
                    ),
                    "on the source, replace it with a unique key on a prefix, or on a stored generated hash column \
                     (e.g. ADD COLUMN h BINARY(32) AS (UNHEX(SHA2(col,256))) STORED, ADD UNIQUE (h))"
                        .into(),
                );
            } else {
                def.drain(h..h + 2);
            }
        }
    }
    // MySQL 8 functional key parts: `KEY k ((expr))`.
    let functional = def.iter().position(|t| t.is_p('(')).is_some_and(|open| {
        let close = matching(&def, open);
        split_commas(&def[open + 1..close])
            .iter()
            .any(|part| part.first().is_some_and(|t| t.is_p('(')))
    });
    let rules = ctx.rules();
    if functional {
        rules.functional_key_part(ctx, &label);
    }
    // MariaDB IGNORED / MySQL INVISIBLE indexes.
    if let Some(i) = find_kw(&def, "IGNORED").or_else(|| find_kw(&def, "INVISIBLE")) {
        rules.invisible_index(ctx, &mut def, i, &label);
    }
    if ctx.ob() {
        ob_index_rules(ctx, &mut def, kind, &label);
    }
    if let Some(i) = find_seq(&def, &["WITH", "PARSER"]) {
        let parser = def
            .get(i + 2)
            .and_then(Tok::ident)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !rules.keeps_fulltext_parser(&parser) {
            def.drain(i..(i + 3).min(def.len()));
            ctx.note(format!(
                "{label}: full-text parser {parser} is not available on {}; the default parser is used",
                ctx.target_label()
            ));
        }
    }
    map_charset_tokens(ctx, &mut def, &label);
    Some(def)
}

/// Upper bound of an index entry's length in bytes, from its key parts.
pub(super) fn index_bytes(ctx: &Ctx, def: &[Tok]) -> u64 {
    let Some(open) = def.iter().position(|t| t.is_p('(')) else {
        return 0;
    };
    let close = matching(def, open);
    split_commas(&def[open + 1..close])
        .iter()
        .map(|part| {
            let Some(col) = part
                .first()
                .and_then(Tok::ident)
                .and_then(|n| ctx.column(&n))
            else {
                return 0;
            };
            let prefix = part
                .get(1)
                .filter(|t| t.is_p('('))
                .and_then(|_| part.get(2))
                .and_then(|t| t.text.parse::<u64>().ok());
            let cs = col.charset.as_deref().map(|c| {
                if ctx.ob() && c.starts_with("utf8") {
                    "utf8mb4"
                } else {
                    c
                }
            });
            match prefix {
                Some(p) => p * cs.map(mbmaxlen).unwrap_or(1),
                None => column_bytes(col, cs),
            }
        })
        .sum()
}

pub(super) fn column_bytes(col: &Column, charset: Option<&str>) -> u64 {
    let len = col
        .column_type
        .split_once('(')
        .and_then(|(_, r)| r.split([')', ',']).next())
        .and_then(|n| n.trim().parse::<u64>().ok());
    match col.data_type.as_str() {
        "tinyint" | "year" => 1,
        "smallint" => 2,
        "mediumint" | "date" | "time" => 3,
        "int" | "integer" | "float" | "timestamp" => 4,
        "bigint" | "double" | "datetime" | "set" => 8,
        "enum" => 2,
        "decimal" | "numeric" => len.unwrap_or(10) / 2 + 2,
        "bit" => len.unwrap_or(1).div_ceil(8),
        "uuid" => 36 * 4,
        "inet6" => 39 * 4,
        "inet4" => 15 * 4,
        "char" | "varchar" => len.unwrap_or(255) * charset.map(mbmaxlen).unwrap_or(4),
        "binary" | "varbinary" => len.unwrap_or(255),
        _ => 3072,
    }
}

pub(super) fn rewrite_check(ctx: &mut Ctx, def: Vec<Tok>) -> Option<Vec<Tok>> {
    if let Some(i) = find_kw(&def, "CHECK") {
        if json_valid_of(&def[i + 1..]).is_some_and(|c| ctx.json_columns.contains(&c)) {
            return None;
        }
    }
    let mut def = def;
    let obj = ctx.name();
    map_charset_tokens(ctx, &mut def, &obj);
    Some(def)
}

/// `[CONSTRAINT x] FOREIGN KEY (..) REFERENCES [db.]t (..) ...` with the
/// referenced table renamed as the task renames it; returns the source table referenced.
pub(super) fn rewrite_foreign_key(ctx: &Ctx, mut def: Vec<Tok>) -> (Vec<Tok>, (String, String)) {
    let Some(r) = find_kw(&def, "REFERENCES") else {
        return (def, (String::new(), String::new()));
    };
    let first = def.get(r + 1).and_then(Tok::ident).unwrap_or_default();
    let qualified_ref = def.get(r + 2).is_some_and(|t| t.is_p('.'));
    let (src_db, src_table, n) = if qualified_ref {
        (
            first,
            def.get(r + 3).and_then(Tok::ident).unwrap_or_default(),
            3,
        )
    } else {
        (ctx.table.db.clone(), first, 1)
    };
    let (tdb, tt) = renamed(&ctx.env.renames, &src_db, &src_table);
    let new = vec![
        Tok::quoted(&tdb),
        Tok::punct('.', false),
        Tok {
            sp: false,
            ..Tok::quoted(&tt)
        },
    ];
    def.splice(r + 1..r + 1 + n, new);
    (def, (src_db, src_table))
}

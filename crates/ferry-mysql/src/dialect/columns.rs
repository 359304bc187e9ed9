//! Column definitions: MariaDB-only types and attributes, JSON columns,
//! defaults in the form the target takes.

use super::*;

/// Columns stored as MariaDB JSON (LONGTEXT + CHECK (json_valid(`c`))) that become JSON.
pub(super) fn json_columns(ctx: &Ctx, defs: &[Vec<Tok>]) -> Vec<String> {
    if ctx.mariadb_target() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for def in defs {
        let col = match classify_def(def) {
            DefKind::Column => {
                let Some(name) = def.first().and_then(Tok::ident) else {
                    continue;
                };
                let Some(i) = find_kw(def, "CHECK") else {
                    continue;
                };
                json_valid_of(&def[i + 1..]).filter(|c| *c == name)
            }
            DefKind::Check => find_kw(def, "CHECK").and_then(|i| json_valid_of(&def[i + 1..])),
            _ => None,
        };
        if let Some(c) = col {
            if ctx.column(&c).is_some_and(|c| c.data_type == "longtext") && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// `( json_valid ( `c` ) )` exactly: the column name.
pub(super) fn json_valid_of(toks: &[Tok]) -> Option<String> {
    let t: Vec<&Tok> = toks.iter().take(6).collect();
    if t.len() == 6
        && t[0].is_p('(')
        && t[1].is("json_valid")
        && t[2].is_p('(')
        && t[3].kind == Kind::Quoted
        && t[4].is_p(')')
        && t[5].is_p(')')
    {
        return t[3].ident();
    }
    None
}

pub(super) fn rewrite_column(ctx: &mut Ctx, mut def: Vec<Tok>) -> Option<Vec<Tok>> {
    let name = def.first().and_then(Tok::ident).unwrap_or_default();
    let obj = format!("{}.{}", ctx.name(), name);
    let col = ctx.column(&name).cloned();
    let data_type = col
        .as_ref()
        .map(|c| c.data_type.clone())
        .unwrap_or_else(|| {
            def.get(1)
                .map(|t| t.text.to_ascii_lowercase())
                .unwrap_or_default()
        });
    // System-versioning columns and sequences have no equivalent outside MariaDB.
    if !ctx.mariadb_target() {
        if find_seq(&def, &["AS", "ROW"]).is_some()
            || find_seq(&def, &["WITHOUT", "SYSTEM", "VERSIONING"]).is_some()
        {
            ctx.problem(
                obj.clone(),
                format!("is a system-versioning column, which {} does not have", ctx.target_label()),
                "remove system versioning on the source (ALTER TABLE ... DROP SYSTEM VERSIONING) or migrate to MariaDB"
                    .into(),
            );
        }
        if let Some(i) = find_kw(&def, "DEFAULT") {
            if def
                .get(i + 1)
                .is_some_and(|t| t.is("nextval") || t.is("next"))
            {
                ctx.problem(
                    obj.clone(),
                    format!(
                        "defaults to a MariaDB SEQUENCE value ({}), which {} does not have",
                        render(&def[i..]),
                        ctx.target_label()
                    ),
                    "use AUTO_INCREMENT on the source, or drop the default and generate the value in the application"
                        .into(),
                );
            }
        }
    }
    let end = type_end(&def);
    let new_type = mapped_type(ctx, &obj, &data_type, &name);
    if let Some(ty) = new_type {
        let mut toks = tokenize(&ty);
        if let Some(t) = toks.first_mut() {
            t.sp = true;
        }
        def.splice(1..end, toks);
    }
    let is_json = ctx.json_columns.contains(&name);
    if is_json {
        remove_charset_collate(&mut def);
        if let Some(i) = find_kw(&def, "CHECK") {
            if json_valid_of(&def[i + 1..]).is_some() {
                def.drain(i..i + 7);
            }
        }
    }
    map_charset_tokens(ctx, &mut def, &obj);
    rewrite_column_attrs(ctx, &mut def, &obj, &data_type);
    if ctx.ob() {
        ob_column_rules(ctx, &def, &obj, &data_type);
    }
    Some(def)
}

/// The target type for a MariaDB-only type, or None to keep it.
pub(super) fn mapped_type(ctx: &mut Ctx, obj: &str, data_type: &str, name: &str) -> Option<String> {
    if ctx.json_columns.iter().any(|c| c == name) {
        ctx.note(format!(
            "{obj}: MariaDB JSON (LONGTEXT with CHECK json_valid) becomes the native JSON type"
        ));
        return Some("json".into());
    }
    if ctx.mariadb_target() {
        return None;
    }
    let (ty, what) = match data_type {
        "uuid" => ("char(36) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", "UUID"),
        "inet6" => (
            "varchar(39) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            "INET6",
        ),
        "inet4" => (
            "varchar(15) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            "INET4",
        ),
        _ => return None,
    };
    ctx.note(format!(
        "{obj}: MariaDB {what} becomes {ty} holding the text form ({} has no {what} type); values copy as text, \
         and ORDER BY on this column sorts as text",
        ctx.target_label()
    ));
    Some(ty.into())
}

pub(super) fn remove_charset_collate(def: &mut Vec<Tok>) {
    let mut i = 0;
    while i < def.len() {
        let n = charset_clause_len(def, i);
        if n > 0 {
            def.drain(i..i + n);
        } else {
            i += 1;
        }
    }
}

/// Column attributes: generated-column keywords, MariaDB-only attributes, defaults.
pub(super) fn rewrite_column_attrs(ctx: &mut Ctx, def: &mut Vec<Tok>, obj: &str, data_type: &str) {
    let mut i = 2;
    while i < def.len() {
        let t = def[i].clone();
        if t.is("PERSISTENT") {
            def[i].text = "STORED".into();
        } else if t.is("COMPRESSED") && !ctx.mariadb_target() {
            let mut n = 1;
            if def.get(i + 1).is_some_and(|t| t.is_p('=')) {
                n = 3;
            }
            def.drain(i..(i + n).min(def.len()));
            ctx.note(format!(
                "{obj}: MariaDB column compression (COMPRESSED) dropped: {} stores it uncompressed",
                ctx.target_label()
            ));
            continue;
        } else if t.is("INVISIBLE") && ctx.ob() {
            def.remove(i);
            ctx.note(format!(
                "{obj}: INVISIBLE dropped; the column becomes visible to SELECT *"
            ));
            continue;
        } else if t.is("DEFAULT") && !ctx.mariadb_target() {
            i = rewrite_default(ctx, def, i, obj, data_type);
            continue;
        }
        i += 1;
    }
}

/// MySQL 8 (and OceanBase) take only literals and CURRENT_TIMESTAMP bare after
/// DEFAULT; an expression must be parenthesized, and BLOB/TEXT/JSON/GEOMETRY
/// take no literal default at all. MariaDB prints `DEFAULT uuid()` and
/// `DEFAULT 'x'` on TEXT. Returns the index after the default.
pub(super) fn default_extent(def: &[Tok], start: usize) -> usize {
    match def.get(start) {
        None => def.len(),
        Some(first) if first.is_p('(') => matching(def, start) + 1,
        Some(_) => value_extent(def, start).0,
    }
}

/// The end of an unparenthesized default value at `start` (`[sign] literal |
/// _cs'..' | x'..' | word [ (args) ]`), and whether it is a call.
fn value_extent(def: &[Tok], start: usize) -> (usize, bool) {
    let first = &def[start];
    let mut end = start + 1;
    if (first.is_p('-') || first.is_p('+')) && def.get(end).is_some() {
        end += 1;
    }
    if def.get(end).is_some_and(|t| t.kind == Kind::Str && !t.sp) {
        end += 1;
    }
    let is_call = first.kind == Kind::Word && def.get(end).is_some_and(|t| t.is_p('('));
    if is_call {
        end = matching(def, end) + 1;
    }
    (end, is_call)
}

pub(super) fn rewrite_default(
    ctx: &mut Ctx,
    def: &mut Vec<Tok>,
    at: usize,
    obj: &str,
    data_type: &str,
) -> usize {
    let start = at + 1;
    let Some(first) = def.get(start).cloned() else {
        return def.len();
    };
    if ctx.ob() && is_lob_type(data_type) && !first.is("NULL") {
        return oceanbase::drop_lob_default(ctx, def, at, obj, data_type);
    }
    if first.is_p('(') {
        return matching(def, start) + 1;
    }
    let (end, is_call) = value_extent(def, start);
    let is_literal = !is_call
        && (first.kind == Kind::Str
            || first
                .text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
            || first.is_p('-')
            || first.is_p('+')
            || first.is("NULL")
            || first.is("TRUE")
            || first.is("FALSE")
            || (first.kind == Kind::Word
                && def
                    .get(start + 1)
                    .is_some_and(|t| t.kind == Kind::Str && !t.sp)));
    let now_fn = ["CURRENT_TIMESTAMP", "NOW", "LOCALTIME", "LOCALTIMESTAMP"]
        .iter()
        .any(|f| first.is(f));
    let lob = is_lob_type(data_type);
    let wrap = if is_literal {
        lob && !first.is("NULL")
    } else {
        !now_fn
    };
    if wrap {
        def.insert(end, Tok::punct(')', false));
        def.insert(start, Tok::punct('(', true));
        if let Some(t) = def.get_mut(start + 1) {
            t.sp = false;
        }
        ctx.note(format!(
            "{obj}: DEFAULT {} is written as an expression default, DEFAULT ({}), as {} requires",
            render(&def[start + 1..end + 1]),
            render(&def[start + 1..end + 1]),
            ctx.target_label()
        ));
        return end + 2;
    }
    end
}

pub(super) fn is_lob_type(data_type: &str) -> bool {
    ColumnKind::of(data_type).is_lob()
}

pub(super) fn is_spatial_type(data_type: &str) -> bool {
    ColumnKind::of(data_type) == ColumnKind::Spatial
}

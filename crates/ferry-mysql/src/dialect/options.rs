//! Table options, the engine, and the partition clause.

use super::*;

pub(super) fn engine_for(ctx: &mut Ctx) -> Option<String> {
    let src = ctx.source_engine.clone();
    let obj = ctx.name();
    match src.as_str() {
        "FEDERATED" | "FEDERATEDX" | "CONNECT" | "SPIDER" | "MRG_MYISAM" | "MERGE" | "SEQUENCE"
        | "OQGRAPH" => {
            ctx.problem(
                obj.clone(),
                format!("uses the {src} engine, whose rows live in other tables or servers (or are computed)"),
                "migrate the underlying tables instead and exclude this one in objects.exclude".into(),
            );
        }
        _ => {}
    }
    if ctx.ob() {
        if src != "INNODB" {
            ctx.note(format!(
                "{obj}: ENGINE={src} dropped: OceanBase has one storage engine"
            ));
        }
        return None;
    }
    if src != "INNODB" {
        ctx.note(format!(
            "{obj}: ENGINE={src} becomes InnoDB on the target (a transactional engine keeps the copy and apply exactly-once)"
        ));
    }
    Some("InnoDB".into())
}

pub(super) fn rewrite_options(ctx: &mut Ctx, toks: Vec<Tok>) -> String {
    let obj = ctx.name();
    let mut out: Vec<String> = Vec::new();
    if let Some(engine) = &ctx.target_engine {
        out.push(format!("ENGINE={engine}"));
    }
    let engine_changed = ctx.source_engine != "INNODB";
    let mut dropped: Vec<String> = Vec::new();
    for opt in parse_options(&toks) {
        let name = opt.name.as_str();
        let mut value = opt.value.clone();
        let raw = render(&value);
        match name {
            "ENGINE" | "STORAGE ENGINE" => continue,
            "WITH SYSTEM VERSIONING" => {
                if ctx.mariadb_target() {
                    out.push(name.into());
                } else {
                    ctx.problem(
                        obj.clone(),
                        format!("is a system-versioned table (WITH SYSTEM VERSIONING), which {} does not have", ctx.target_label()),
                        format!(
                            "migrate it to MariaDB, or drop versioning on the source (ALTER TABLE {} DROP SYSTEM VERSIONING; \
                             this deletes the history rows)",
                            qualified(&ctx.table.db, &ctx.table.name)
                        ),
                    );
                }
                continue;
            }
            "SEQUENCE" if raw == "1" => {
                ctx.problem(
                    obj.clone(),
                    "is a MariaDB SEQUENCE, not a table".into(),
                    "exclude it in objects.exclude and recreate the sequence (or an AUTO_INCREMENT) on the target"
                        .into(),
                );
                continue;
            }
            "DATA DIRECTORY" | "INDEX DIRECTORY" | "UNION" | "INSERT_METHOD" | "CONNECTION"
            | "TABLESPACE" => {
                dropped.push(format!("{name}={raw}"));
                continue;
            }
            _ => {}
        }
        let keep = ctx.rules().keeps_table_option(name, &raw, engine_changed);
        if !keep {
            dropped.push(format!("{name}={raw}"));
            continue;
        }
        if name.contains("CHARSET") || name.contains("CHARACTER SET") || name.contains("COLLATE") {
            let Some(v) = value.first().and_then(Tok::ident) else {
                continue;
            };
            let new = if name.contains("COLLATE") {
                map_collation(ctx, &obj, &v)
            } else {
                map_charset(ctx, &obj, &v)
            };
            value = vec![Tok::word(&new)];
        }
        let text = render(&value);
        out.push(format!("{}={}", opt.raw_name, text.trim_start()));
    }
    if !dropped.is_empty() {
        ctx.note(format!(
            "{obj}: table options dropped ({} does not take them): {}",
            ctx.target_label(),
            dropped.join(" ")
        ));
    }
    out.join(" ")
}

pub(super) fn innodb_row_format(v: &str) -> bool {
    ["DEFAULT", "DYNAMIC", "COMPACT", "REDUNDANT", "COMPRESSED"]
        .iter()
        .any(|f| v.eq_ignore_ascii_case(f))
}

pub(super) fn rewrite_partition(ctx: &mut Ctx, mut toks: Vec<Tok>) -> String {
    if toks.is_empty() {
        return String::new();
    }
    let obj = ctx.name();
    if find_seq(&toks, &["BY", "SYSTEM_TIME"]).is_some() && !ctx.mariadb_target() {
        ctx.problem(
            obj.clone(),
            format!(
                "is partitioned BY SYSTEM_TIME (MariaDB system versioning), which {} does not have",
                ctx.target_label()
            ),
            "remove the SYSTEM_TIME partitioning and system versioning on the source, or migrate to MariaDB".into(),
        );
    }
    // ENGINE inside partition definitions: the table's engine, or none for OceanBase.
    let mut i = 0;
    while i < toks.len() {
        let storage = toks[i].is("STORAGE") && toks.get(i + 1).is_some_and(|t| t.is("ENGINE"));
        if toks[i].is("ENGINE") || storage {
            let name_at = i + if storage { 2 } else { 1 };
            let value_at = if toks.get(name_at).is_some_and(|t| t.is_p('=')) {
                name_at + 1
            } else {
                name_at
            };
            match &ctx.target_engine {
                Some(e) => {
                    if let Some(t) = toks.get_mut(value_at) {
                        t.text = e.clone();
                        t.kind = Kind::Word;
                    }
                    i = value_at + 1;
                }
                None => {
                    toks.drain(i..(value_at + 1).min(toks.len()));
                }
            }
            continue;
        }
        if (toks[i].is("DATA") || toks[i].is("INDEX"))
            && toks.get(i + 1).is_some_and(|t| t.is("DIRECTORY"))
        {
            let value_at = if toks.get(i + 2).is_some_and(|t| t.is_p('=')) {
                i + 3
            } else {
                i + 2
            };
            ctx.note(format!(
                "{obj}: partition {} dropped (a path on the source server)",
                render(&toks[i..=value_at.min(toks.len() - 1)])
            ));
            toks.drain(i..(value_at + 1).min(toks.len()));
            continue;
        }
        i += 1;
    }
    if ctx.ob() {
        while let Some(i) = find_kw(&toks, "LINEAR") {
            toks.remove(i);
            ctx.note(format!(
                "{obj}: LINEAR HASH/KEY partitioning becomes HASH/KEY (OceanBase does not support LINEAR); rows spread differently"
            ));
        }
        let n = partition_count(&toks);
        if n > oceanbase::MAX_PARTITIONS {
            ctx.problem(
                obj.clone(),
                format!("has {n} partitions; OceanBase's MySQL mode allows {} per table by default", oceanbase::MAX_PARTITIONS),
                "raise the tenant parameter max_partition_num on the target (up to 65536), or merge partitions on the source"
                    .into(),
            );
        }
    }
    let obj2 = obj.clone();
    map_charset_tokens(ctx, &mut toks, &obj2);
    render(&toks)
}

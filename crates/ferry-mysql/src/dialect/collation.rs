//! Character sets and collations: the per-target collation rules
//! (`mysql`, `mariadb`, `oceanbase`) applied to every `CHARACTER SET`,
//! `COLLATE` and `_charset'..'` in a definition, fitted to what the live
//! target has when it was probed.

use super::*;

/// Length of a `CHARACTER SET x` / `CHARSET x` / `COLLATE x` clause at `i` (0 if none).
pub(super) fn charset_clause_len(def: &[Tok], i: usize) -> usize {
    let t = &def[i];
    let name_at = if t.is("CHARACTER") && def.get(i + 1).is_some_and(|t| t.is("SET")) {
        i + 2
    } else if t.is("CHARSET") || t.is("COLLATE") {
        i + 1
    } else {
        return 0;
    };
    let name_at = if def.get(name_at).is_some_and(|t| t.is_p('=')) {
        name_at + 1
    } else {
        name_at
    };
    if def.get(name_at).is_some_and(|t| t.kind != Kind::Punct) {
        name_at + 1 - i
    } else {
        0
    }
}

/// Map every `CHARACTER SET x`, `CHARSET x`, `COLLATE x` and `_charset'..'` in `toks`.
pub(super) fn map_charset_tokens(ctx: &mut Ctx, toks: &mut [Tok], obj: &str) {
    for i in 0..toks.len() {
        let is_collate = toks[i].is("COLLATE");
        let n = charset_clause_len(toks, i);
        if n > 0 {
            let at = i + n - 1;
            let Some(old) = toks[at].ident() else {
                continue;
            };
            let new = if is_collate {
                map_collation(ctx, obj, &old)
            } else {
                map_charset(ctx, obj, &old)
            };
            if !new.eq_ignore_ascii_case(&old) {
                toks[at] = Tok {
                    kind: Kind::Word,
                    text: new,
                    sp: toks[at].sp,
                };
            }
        } else if toks[i].kind == Kind::Word
            && toks[i].text.starts_with('_')
            && toks
                .get(i + 1)
                .is_some_and(|t| t.kind == Kind::Str && !t.sp)
        {
            let cs = toks[i].text[1..].to_string();
            let new = map_charset(ctx, obj, &cs);
            if new != cs {
                toks[i].text = format!("_{new}");
            }
        }
    }
}

pub(super) fn mbmaxlen(charset: &str) -> u64 {
    match charset.to_ascii_lowercase().as_str() {
        "latin1" | "latin2" | "latin5" | "latin7" | "ascii" | "binary" | "cp1250" | "cp1251"
        | "cp1256" | "cp1257" | "cp850" | "cp852" | "cp866" | "dec8" | "greek" | "hebrew"
        | "hp8" | "keybcs2" | "koi8r" | "koi8u" | "macce" | "macroman" | "swe7" | "tis620"
        | "armscii8" | "geostd8" => 1,
        "gbk" | "big5" | "sjis" | "cp932" | "euckr" | "gb2312" | "ucs2" => 2,
        "utf8" | "utf8mb3" | "ujis" | "eucjpms" => 3,
        _ => 4,
    }
}

/// The character set a collation belongs to.
pub(super) fn collation_charset(collation: &str) -> String {
    let c = collation.to_ascii_lowercase();
    if c == "binary" {
        return c;
    }
    for cs in ["gb18030_2022", "utf8mb4", "utf8mb3", "utf16le"] {
        if c.starts_with(&format!("{cs}_")) {
            return cs.into();
        }
    }
    c.split('_').next().unwrap_or("").to_string()
}

pub(super) fn map_charset(ctx: &mut Ctx, obj: &str, cs: &str) -> String {
    let lc = cs.to_ascii_lowercase();
    let probed = ctx.env.caps.as_ref().filter(|c| !c.charsets.is_empty());
    if let Some(caps) = probed {
        if caps.has_charset(&lc) {
            return if ctx.ob() { lc } else { cs.to_string() };
        }
        if !caps.has_charset("utf8mb4") {
            return cs.to_string();
        }
        let to = "utf8mb4";
        ctx.note(format!(
            "{obj}: character set {cs} is not on the target (it has {}); it becomes {to}, which holds every \
             character of {cs} (the target stores more bytes per character)",
            caps.charsets.join(", ")
        ));
        return to.into();
    }
    if !ctx.ob() {
        return cs.to_string();
    }
    if lc == "utf8" || lc == "utf8mb3" {
        ctx.note(format!("{obj}: character set {cs} becomes utf8mb4 (OceanBase treats utf8 as a synonym of utf8mb4)"));
        return "utf8mb4".into();
    }
    if oceanbase::CHARSETS.contains(&lc.as_str()) {
        return lc;
    }
    ctx.note(format!(
        "{obj}: character set {cs} is not supported by OceanBase's MySQL mode (supported: {}); it becomes utf8mb4, \
         which holds every character of {cs}",
        oceanbase::CHARSETS.join(", ")
    ));
    "utf8mb4".into()
}

/// Collation sensitivity classes, for choosing a replacement that never
/// merges values the source keeps apart (which would break unique keys).
pub(super) fn collation_kind(c: &str) -> &'static str {
    if c.ends_with("_bin") || c == "binary" || c.contains("_cs") || c.ends_with("_w2") {
        "bin"
    } else if c.contains("_as_ci") {
        "as_ci"
    } else {
        "ci"
    }
}

pub(super) fn map_collation(ctx: &mut Ctx, obj: &str, collation: &str) -> String {
    let c = collation.to_ascii_lowercase();
    let new = ctx.rules().collation(ctx, &c);
    if new != c {
        let consequence = if collation_kind(&c) == "ci" && collation_kind(&new) == "ci" {
            format!(
                ": comparisons and sorting follow {new}, so values {collation} keeps apart may compare equal \
                 (under utf8mb4_general_ci 'ß' equals 's') and a unique key over such values would refuse a row; \
                 the precheck looks for such collisions in the source data"
            )
        } else {
            String::new()
        };
        ctx.note(format!(
            "{obj}: collation {collation} becomes {new} on {} (its nearest equivalent there){consequence}",
            ctx.target_label()
        ));
    }
    new
}

/// [`fit_collation`] on the probed target's collations; `want` when the
/// target was not probed.
pub(super) fn fit_probed(ctx: &Ctx, source: &str, want: String) -> String {
    match &ctx.env.caps {
        Some(caps) if !caps.collations.is_empty() => fit_collation(caps, source, &want),
        _ => want,
    }
}

/// The collation the target has that is nearest to `want` (itself chosen for
/// source collation `source`): `want` when the target has it; else, in the
/// same character set, the binary collation for a case- or accent-sensitive
/// one (it keeps every distinct value distinct), and for a case-insensitive
/// one the first of the Unicode collations, then `general_ci`, then the
/// character set's first collation.
pub(crate) fn fit_collation(caps: &caps::TargetCaps, source: &str, want: &str) -> String {
    if caps.has_collation(want) {
        return want.to_string();
    }
    let mut cs = collation_charset(want);
    let mut have = caps.collations_of(&cs);
    if have.is_empty() && caps.has_charset("utf8mb4") {
        // The target lacks the character set itself (latin1 on OceanBase
        // seekdb): `map_charset` makes the column utf8mb4, so its collation
        // must be one of utf8mb4's, or the target refuses the table.
        cs = "utf8mb4".into();
        have = caps.collations_of(&cs);
    }
    let pick = |names: &[String]| names.iter().find(|n| have.contains(&n.as_str())).cloned();
    let candidates: Vec<String> = if collation_kind(source) != "ci" {
        vec![format!("{cs}_bin"), "binary".into()]
    } else {
        [
            "unicode_ci",
            "unicode_520_ci",
            "uca1400_ai_ci",
            "0900_ai_ci",
            "general_ci",
        ]
        .iter()
        .map(|s| format!("{cs}_{s}"))
        .collect()
    };
    pick(&candidates)
        .or_else(|| have.first().map(|s| s.to_string()))
        .unwrap_or_else(|| want.to_string())
}

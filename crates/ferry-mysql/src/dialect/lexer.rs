//! The one SQL lexer: MySQL-family statement text as lexemes with byte
//! spans, and the token stream the DDL translation rewrites.
//!
//! Two users: [`super`] (the `CREATE TABLE` translation, which rewrites on
//! [`Tok`]s and renders them again) and [`crate::binlog::ddl`] (which finds
//! table names in binlog DDL and rewrites only their byte spans, so the rest
//! of a statement stays byte for byte). Both need what a general SQL parser
//! does not give: exact byte spans of every token and comments kept apart,
//! including MySQL's versioned comments (`/*!50100 ..*/`, `/*M!100301 ..*/`),
//! whose body the translation reads as SQL and the binlog reader skips.
//!
//! Lexing follows the server's rules: `# ..` and `-- ..` (dash dash space)
//! comments to the end of the line, `/* .. */` comments, backquoted
//! identifiers with doubled backquotes, strings in `'..'` or `".."` with both
//! escape styles (backslash and doubled quote), and words of ASCII letters,
//! digits, `_`, `$` and any non-ASCII character (as unquoted identifiers may
//! hold). Anything else is one punctuation character.

use crate::conn::quote_ident;

/// What a lexeme is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Keyword, bare identifier or number.
    Word,
    /// `quoted identifier`, text with the backquotes.
    Quoted,
    /// 'string' or "string", text with the quotes.
    Str,
    Punct,
    Comment,
}

/// One lexeme: its kind and its byte span in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lexeme {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The lexemes of `sql`, whitespace left out. Every byte outside whitespace
/// belongs to exactly one lexeme; an unterminated quote or comment runs to
/// the end of the text.
pub(crate) fn lex(sql: &str) -> Vec<Lexeme> {
    let b = sql.as_bytes();
    let n = b.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let kind = if c == b'`' || c == b'\'' || c == b'"' {
            i += 1;
            while i < n {
                if c != b'`' && b[i] == b'\\' {
                    i += 2;
                } else if b[i] == c {
                    if b.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                } else {
                    i += 1;
                }
            }
            if c == b'`' {
                Kind::Quoted
            } else {
                Kind::Str
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < n && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            Kind::Comment
        } else if c == b'#'
            || (c == b'-'
                && b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()))
        {
            while i < n && b[i] != b'\n' {
                i += 1;
            }
            Kind::Comment
        } else if is_word_byte(c) {
            while i < n && is_word_byte(b[i]) {
                i += 1;
            }
            Kind::Word
        } else {
            // One character (a multi-byte one cannot start here: those are word bytes).
            i += 1;
            Kind::Punct
        };
        i = i.min(n);
        out.push(Lexeme {
            kind,
            start,
            end: i,
        });
    }
    out
}

/// The SQL inside a versioned comment (`/*!50100 x */`, `/*M!100301 x */`:
/// `x`), or None for a plain comment.
pub(crate) fn versioned_body(comment: &str) -> Option<&str> {
    let body = comment.strip_prefix("/*")?;
    let body = match body.strip_suffix("*/") {
        Some(b) if comment.len() >= 4 => b,
        _ => body,
    };
    let v = body.strip_prefix('!').or_else(|| body.strip_prefix("M!"))?;
    Some(v.trim_start_matches(|ch: char| ch.is_ascii_digit()))
}

/// The name a backquoted identifier holds (doubled backquotes undone).
pub(crate) fn unquote_ident(q: &str) -> String {
    let inner = q.strip_prefix('`').unwrap_or(q);
    let inner = inner.strip_suffix('`').unwrap_or(inner);
    inner.replace("``", "`")
}

// ---------------------------------------------------------------- tokens for rewriting

/// A token of a statement being rewritten: its text, and whether whitespace
/// precedes it when rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tok {
    pub kind: Kind,
    pub text: String,
    /// Whitespace before it in the output.
    pub sp: bool,
}

impl Tok {
    pub(crate) fn word(s: &str) -> Tok {
        Tok {
            kind: Kind::Word,
            text: s.to_string(),
            sp: true,
        }
    }
    pub(crate) fn quoted(name: &str) -> Tok {
        Tok {
            kind: Kind::Quoted,
            text: quote_ident(name),
            sp: true,
        }
    }
    pub(crate) fn punct(c: char, sp: bool) -> Tok {
        Tok {
            kind: Kind::Punct,
            text: c.to_string(),
            sp,
        }
    }
    pub(crate) fn is(&self, kw: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(kw)
    }
    pub(crate) fn is_p(&self, c: char) -> bool {
        self.kind == Kind::Punct && self.text.len() == c.len_utf8() && self.text.starts_with(c)
    }
    /// The identifier a Word or Quoted token names.
    pub(crate) fn ident(&self) -> Option<String> {
        match self.kind {
            Kind::Word => Some(self.text.clone()),
            Kind::Quoted => Some(unquote_ident(&self.text)),
            _ => None,
        }
    }
    pub(crate) fn upper(&self) -> String {
        self.text.to_ascii_uppercase()
    }
}

/// The tokens of `sql` for rewriting, versioned comments read as SQL.
pub(crate) fn tokenize(sql: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    tokenize_into(sql, &mut out, false);
    out
}

pub(crate) fn tokenize_into(sql: &str, out: &mut Vec<Tok>, mut sp: bool) {
    let mut prev_end = 0;
    for l in lex(sql) {
        sp |= l.start > prev_end;
        prev_end = l.end;
        let text = &sql[l.start..l.end];
        if l.kind == Kind::Comment {
            // Versioned comments (/*!50100 ..*/, /*M!100301 ..*/) hold DDL: keep their body.
            if let Some(body) = versioned_body(text) {
                tokenize_into(body, out, sp);
                sp = false;
                continue;
            }
        }
        out.push(Tok {
            kind: l.kind,
            text: text.to_string(),
            sp,
        });
        sp = false;
    }
}

pub(crate) fn render(toks: &[Tok]) -> String {
    let mut s = String::new();
    for (i, t) in toks.iter().enumerate() {
        if i > 0 && t.sp {
            s.push(' ');
        }
        s.push_str(&t.text);
    }
    s
}

/// Index of the `)` matching the `(` at `open`, or the end.
pub(crate) fn matching(toks: &[Tok], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        if t.is_p('(') {
            depth += 1;
        } else if t.is_p(')') {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return i;
            }
        }
    }
    toks.len().saturating_sub(1)
}

/// Split on commas at depth 0.
pub(crate) fn split_commas(toks: &[Tok]) -> Vec<Vec<Tok>> {
    let mut parts = vec![Vec::new()];
    let mut depth = 0i32;
    for t in toks {
        if t.is_p('(') {
            depth += 1;
        } else if t.is_p(')') {
            depth -= 1;
        } else if depth == 0 && t.is_p(',') {
            parts.push(Vec::new());
            continue;
        }
        if let Some(p) = parts.last_mut() {
            p.push(t.clone());
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

pub(crate) fn find_kw(toks: &[Tok], kw: &str) -> Option<usize> {
    toks.iter().position(|t| t.is(kw))
}

/// Position of the first token of `seq` (words) at depth 0.
pub(crate) fn find_seq(toks: &[Tok], seq: &[&str]) -> Option<usize> {
    let mut depth = 0i32;
    for i in 0..toks.len() {
        if toks[i].is_p('(') {
            depth += 1;
        } else if toks[i].is_p(')') {
            depth -= 1;
        }
        if depth == 0
            && seq
                .iter()
                .enumerate()
                .all(|(k, w)| toks.get(i + k).is_some_and(|t| t.is(w)))
        {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Kind, &str)> {
        lex(sql)
            .into_iter()
            .map(|l| (l.kind, &sql[l.start..l.end]))
            .collect()
    }

    #[test]
    fn spans_cover_every_token_byte_for_byte() {
        let sql = "ALTER TABLE `d``b`.t_é # x\n ADD c INT DEFAULT 'a\\'b' -- y\n/*!50100 z */";
        assert_eq!(
            kinds(sql),
            vec![
                (Kind::Word, "ALTER"),
                (Kind::Word, "TABLE"),
                (Kind::Quoted, "`d``b`"),
                (Kind::Punct, "."),
                (Kind::Word, "t_é"),
                (Kind::Comment, "# x"),
                (Kind::Word, "ADD"),
                (Kind::Word, "c"),
                (Kind::Word, "INT"),
                (Kind::Word, "DEFAULT"),
                (Kind::Str, "'a\\'b'"),
                (Kind::Comment, "-- y"),
                (Kind::Comment, "/*!50100 z */"),
            ]
        );
        assert_eq!(unquote_ident("`d``b`"), "d`b");
        assert_eq!(versioned_body("/*!50100 z */"), Some(" z "));
        assert_eq!(versioned_body("/*M!100301 z"), Some(" z"));
        assert_eq!(versioned_body("/* z */"), None);
    }

    #[test]
    fn unterminated_quotes_and_comments_run_to_the_end() {
        assert_eq!(kinds("a 'b"), vec![(Kind::Word, "a"), (Kind::Str, "'b")]);
        assert_eq!(kinds("/* x"), vec![(Kind::Comment, "/* x")]);
        assert_eq!(kinds("`a"), vec![(Kind::Quoted, "`a")]);
        assert_eq!(unquote_ident("`a"), "a");
    }

    #[test]
    fn rendering_keeps_the_spacing_and_reads_versioned_comments() {
        let toks = tokenize("KEY k (a) /*!50100 COMMENT 'x' */");
        assert_eq!(render(&toks), "KEY k (a) COMMENT 'x'");
    }
}

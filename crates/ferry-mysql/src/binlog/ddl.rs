//! Recognising table DDL in binlog query events, and renaming its tables.
//!
//! Invariant: [`parse`] returns `Some` only for CREATE/ALTER/DROP/TRUNCATE/
//! RENAME TABLE and CREATE/DROP INDEX, with every table the statement names
//! (qualified with the event's default database); [`Ddl::rewrite`] changes
//! those names and nothing else in the text (comments, strings and the rest
//! of the statement stay byte for byte).

use crate::dialect::lexer::{lex, unquote_ident, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdlKind {
    CreateTable,
    AlterTable,
    DropTable,
    TruncateTable,
    RenameTable,
    CreateIndex,
    DropIndex,
}

/// A table name in the statement: `db`.`table` and where it is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRef {
    pub db: String,
    pub table: String,
    pub span: (usize, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ddl {
    pub kind: DdlKind,
    pub temporary: bool,
    pub if_exists: bool,
    /// For RENAME: pairs (from, to) flattened in order; otherwise the tables named.
    pub names: Vec<NameRef>,
}

impl Ddl {
    pub fn tables(&self) -> Vec<(String, String)> {
        self.names
            .iter()
            .map(|n| (n.db.clone(), n.table.clone()))
            .collect()
    }

    /// The statement with every table name replaced by `map(db, table)` (fully qualified).
    pub fn rewrite(&self, sql: &str, map: impl Fn(&str, &str) -> (String, String)) -> String {
        let mut out = String::with_capacity(sql.len() + 32);
        let mut at = 0;
        let mut names: Vec<&NameRef> = self.names.iter().collect();
        names.sort_by_key(|n| n.span.0);
        for n in names {
            out.push_str(&sql[at..n.span.0]);
            let (db, table) = map(&n.db, &n.table);
            out.push_str(&crate::conn::qualified(&db, &table));
            at = n.span.1;
        }
        out.push_str(&sql[at..]);
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Ident(String),
    Str,
    Sym(char),
}

/// The statement's tokens with their byte spans, from the one SQL lexer
/// ([`crate::dialect::lexer`]); comments, versioned ones included, are skipped.
fn tokenize(sql: &str) -> Vec<(Tok, usize, usize)> {
    lex(sql)
        .into_iter()
        .filter_map(|l| {
            let text = &sql[l.start..l.end];
            let tok = match l.kind {
                Kind::Comment => return None,
                Kind::Word => Tok::Word(text.to_string()),
                Kind::Quoted => Tok::Ident(unquote_ident(text)),
                Kind::Str => Tok::Str,
                Kind::Punct => Tok::Sym(text.chars().next()?),
            };
            Some((tok, l.start, l.end))
        })
        .collect()
}

/// The first `n` words of a statement, upper-cased, comments skipped.
pub fn first_words(sql: &str, n: usize) -> Vec<String> {
    tokenize(sql)
        .into_iter()
        .take(n)
        .filter_map(|(t, _, _)| match t {
            Tok::Word(w) => Some(w.to_ascii_uppercase()),
            _ => None,
        })
        .collect()
}

struct Parser<'a> {
    toks: Vec<(Tok, usize, usize)>,
    i: usize,
    default_db: &'a str,
}

impl Parser<'_> {
    fn word(&self, off: usize) -> Option<String> {
        match self.toks.get(self.i + off) {
            Some((Tok::Word(w), _, _)) => Some(w.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn eat(&mut self, w: &str) -> bool {
        if self.word(0).as_deref() == Some(w) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_all(&mut self, ws: &[&str]) -> bool {
        if ws
            .iter()
            .enumerate()
            .all(|(k, w)| self.word(k).as_deref() == Some(*w))
        {
            self.i += ws.len();
            true
        } else {
            false
        }
    }

    fn sym(&mut self, c: char) -> bool {
        if matches!(self.toks.get(self.i), Some((Tok::Sym(s), _, _)) if *s == c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Option<(String, usize, usize)> {
        let (t, s, e) = self.toks.get(self.i)?.clone();
        let name = match t {
            Tok::Word(w) => w,
            Tok::Ident(w) => w,
            _ => return None,
        };
        self.i += 1;
        Some((name, s, e))
    }

    fn name(&mut self) -> Option<NameRef> {
        let (first, s, e) = self.ident()?;
        if self.sym('.') {
            let (second, _, e2) = self.ident()?;
            return Some(NameRef {
                db: first,
                table: second,
                span: (s, e2),
            });
        }
        Some(NameRef {
            db: self.default_db.to_string(),
            table: first,
            span: (s, e),
        })
    }
}

/// Recognise a table DDL statement; `default_db` is the event's schema.
pub fn parse(sql: &str, default_db: &str) -> Option<Ddl> {
    let mut p = Parser {
        toks: tokenize(sql),
        i: 0,
        default_db,
    };
    if p.eat("CREATE") {
        p.create()
    } else if p.eat("ALTER") {
        p.alter()
    } else if p.eat("DROP") {
        p.drop()
    } else if p.eat("TRUNCATE") {
        p.eat("TABLE");
        let mut ddl = Ddl::new(DdlKind::TruncateTable);
        ddl.names.push(p.name()?);
        Some(ddl)
    } else if p.eat("RENAME") {
        p.rename()
    } else {
        None
    }
}

impl Ddl {
    fn new(kind: DdlKind) -> Ddl {
        Ddl {
            kind,
            temporary: false,
            if_exists: false,
            names: Vec::new(),
        }
    }
}

/// One method per statement, each called after its first word.
impl Parser<'_> {
    /// CREATE [OR REPLACE] [UNIQUE|FULLTEXT|SPATIAL] INDEX, or CREATE [TEMPORARY] TABLE (LIKE).
    fn create(&mut self) -> Option<Ddl> {
        self.eat_all(&["OR", "REPLACE"]);
        if self.eat("UNIQUE")
            || self.eat("FULLTEXT")
            || self.eat("SPATIAL")
            || self.word(0).as_deref() == Some("INDEX")
        {
            self.eat("INDEX");
            let mut ddl = Ddl::new(DdlKind::CreateIndex);
            ddl.if_exists = self.eat_all(&["IF", "NOT", "EXISTS"]);
            self.ident()?;
            while !self.eat("ON") {
                self.ident()?;
            }
            ddl.names.push(self.name()?);
            return Some(ddl);
        }
        let mut ddl = Ddl::new(DdlKind::CreateTable);
        ddl.temporary = self.eat("TEMPORARY");
        if !self.eat("TABLE") {
            return None;
        }
        ddl.if_exists = self.eat_all(&["IF", "NOT", "EXISTS"]);
        ddl.names.push(self.name()?);
        let paren = self.sym('(');
        if self.eat("LIKE") {
            ddl.names.push(self.name()?);
        } else if paren {
            self.i -= 1;
        }
        Some(ddl)
    }

    /// ALTER [ONLINE] [IGNORE] TABLE t ..., with any RENAME [TO|AS] u in it.
    fn alter(&mut self) -> Option<Ddl> {
        self.eat("ONLINE");
        self.eat("IGNORE");
        if !self.eat("TABLE") {
            return None;
        }
        let mut ddl = Ddl::new(DdlKind::AlterTable);
        ddl.if_exists = self.eat_all(&["IF", "EXISTS"]);
        ddl.names.push(self.name()?);
        while self.i < self.toks.len() {
            if self.eat("RENAME") {
                let other = matches!(self.word(0).as_deref(), Some("COLUMN" | "INDEX" | "KEY"));
                if !other {
                    let _ = self.eat("TO") || self.eat("AS");
                    ddl.names.push(self.name()?);
                }
            } else {
                self.i += 1;
            }
        }
        Some(ddl)
    }

    /// DROP INDEX i ON t, or DROP [TEMPORARY] TABLE [IF EXISTS] t, u, ...
    fn drop(&mut self) -> Option<Ddl> {
        if self.eat("INDEX") {
            let mut ddl = Ddl::new(DdlKind::DropIndex);
            ddl.if_exists = self.eat_all(&["IF", "EXISTS"]);
            self.ident()?;
            if !self.eat("ON") {
                return None;
            }
            ddl.names.push(self.name()?);
            return Some(ddl);
        }
        let mut ddl = Ddl::new(DdlKind::DropTable);
        ddl.temporary = self.eat("TEMPORARY");
        if !self.eat("TABLE") {
            return None;
        }
        ddl.if_exists = self.eat_all(&["IF", "EXISTS"]);
        loop {
            ddl.names.push(self.name()?);
            if !self.sym(',') {
                break;
            }
        }
        Some(ddl)
    }

    /// RENAME TABLE[S] [IF EXISTS] a TO b, c TO d, ...: the names in pairs.
    fn rename(&mut self) -> Option<Ddl> {
        if !(self.eat("TABLE") || self.eat("TABLES")) {
            return None;
        }
        let mut ddl = Ddl::new(DdlKind::RenameTable);
        self.eat_all(&["IF", "EXISTS"]);
        loop {
            ddl.names.push(self.name()?);
            if !self.eat("TO") {
                return None;
            }
            ddl.names.push(self.name()?);
            if !self.sym(',') {
                break;
            }
        }
        Some(ddl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<(String, String)> {
        parse(sql, "d").map(|d| d.tables()).unwrap_or_default()
    }

    #[test]
    fn recognises_table_ddl() {
        assert_eq!(
            names("CREATE TABLE `t` (id int)"),
            vec![("d".into(), "t".into())]
        );
        assert_eq!(
            names("create table if not exists x.`t``q` like y"),
            vec![("x".into(), "t`q".into()), ("d".into(), "y".into())]
        );
        assert_eq!(
            names("DROP TABLE `a`,b.c /* generated by server */"),
            vec![("d".into(), "a".into()), ("b".into(), "c".into())]
        );
        assert_eq!(
            names("ALTER TABLE a ADD COLUMN b INT, RENAME TO z"),
            vec![("d".into(), "a".into()), ("d".into(), "z".into())]
        );
        assert_eq!(
            names("ALTER TABLE a RENAME COLUMN b TO c"),
            vec![("d".into(), "a".into())]
        );
        assert_eq!(names("RENAME TABLE a TO b, x.c TO x.e").len(), 4);
        assert_eq!(names("TRUNCATE a"), vec![("d".into(), "a".into())]);
        assert_eq!(
            names("CREATE UNIQUE INDEX i ON t (a)"),
            vec![("d".into(), "t".into())]
        );
        assert_eq!(names("DROP INDEX i ON t"), vec![("d".into(), "t".into())]);
        assert!(parse("CREATE DATABASE x", "d").is_none());
        assert!(parse("GRANT ALL ON *.* TO x", "d").is_none());
        assert_eq!(first_words("/* c */ begin", 2), vec!["BEGIN"]);
    }

    #[test]
    fn rewrites_only_names() {
        let sql = "ALTER TABLE `t` ADD COLUMN `t` VARCHAR(5) DEFAULT 't' -- t";
        let d = parse(sql, "src").unwrap();
        let out = d.rewrite(sql, |db, t| (format!("{db}_new"), t.to_string()));
        assert_eq!(
            out,
            "ALTER TABLE `src_new`.`t` ADD COLUMN `t` VARCHAR(5) DEFAULT 't' -- t"
        );
    }
}

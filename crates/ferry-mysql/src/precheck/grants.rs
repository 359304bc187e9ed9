//! Grants: reading `SHOW GRANTS` lines (pure, unit-tested) and trying the
//! privileges Ferry needs where trying writes nothing but a probe table.

use std::collections::BTreeSet;

use ferry_core::model::CheckItem;
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::conn::{qualified, quote_ident, quote_str};

use super::probes::random_u64;
use super::server::Server;
use super::{fail, pass};

/// The account a server matched a login to, as `CURRENT_USER()` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub host: String,
}

impl Account {
    /// Parse `user@host` (the host part is after the last `@`).
    pub fn parse(current_user: &str) -> Account {
        match current_user.rsplit_once('@') {
            Some((u, h)) => Account {
                user: u.to_string(),
                host: h.to_string(),
            },
            None => Account {
                user: current_user.to_string(),
                host: "%".to_string(),
            },
        }
    }

    /// `'user'@'host'`, as a GRANT statement names the account.
    pub fn grantee(&self) -> String {
        format!("{}@{}", quote_str(&self.user), quote_str(&self.host))
    }

    /// `GRANT <privileges> ON <object> TO 'user'@'host';`
    pub fn grant(&self, privileges: &str, object: &str) -> String {
        format!("GRANT {privileges} ON {object} TO {};", self.grantee())
    }
}

/// Privileges that `SHOW GRANTS` lines give on `db` (`None`: on the whole
/// server), upper case, `ALL PRIVILEGES` as `ALL`. Reads `ON *.*` and
/// ``ON `db`.*`` grants (database names with `%`/`_` wildcards match as in
/// MySQL); table, column, proxy and role grants are not counted.
pub fn granted(grants: &[String], db: Option<&str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in grants {
        let Some((privs, object)) = split_grant(line) else {
            continue;
        };
        let applies = match (object.as_str(), db) {
            ("*.*", _) => true,
            (obj, Some(db)) => grant_db(obj).is_some_and(|pattern| like(&pattern, db)),
            _ => false,
        };
        if applies {
            out.extend(privs);
        }
    }
    out
}

/// Whether `grants` give `privilege` on `db` (`None`: on the whole server).
pub fn has_privilege(grants: &[String], privilege: &str, db: Option<&str>) -> bool {
    let set = granted(grants, db);
    set.contains("ALL") || set.contains(&privilege.to_ascii_uppercase())
}

/// `GRANT a, b (col), c ON obj TO ...` -> ([a, b, c], obj).
pub(super) fn split_grant(line: &str) -> Option<(Vec<String>, String)> {
    let rest = line.strip_prefix("GRANT ")?;
    let (privs, after) = rest.split_once(" ON ")?;
    let object = after.split(" TO ").next()?.trim().to_string();
    let mut names = Vec::new();
    let (mut depth, mut cur) = (0usize, String::new());
    for c in privs.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => names.push(std::mem::take(&mut cur)),
            _ if depth == 0 => cur.push(c),
            _ => {}
        }
    }
    names.push(cur);
    let names = names
        .into_iter()
        .map(|n| n.trim().to_ascii_uppercase())
        .filter(|n| !n.is_empty())
        .map(|n| {
            if n == "ALL PRIVILEGES" {
                "ALL".to_string()
            } else {
                n
            }
        })
        .collect();
    Some((names, object))
}

/// The database pattern of a `` `db`.* `` grant object.
pub(super) fn grant_db(object: &str) -> Option<String> {
    let quoted = object.strip_suffix(".*")?;
    let inner = quoted.strip_prefix('`')?.strip_suffix('`')?;
    Some(inner.replace("``", "`"))
}

/// SQL `LIKE` matching as grant database names use it: `%`, `_`, `\` escapes.
pub(super) fn like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|i| go(&p[1..], &t[i..])),
            Some('_') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&p[2..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

/// RELOAD is optional: noted, never a warning. Ferry reads each chunk under
/// `START TRANSACTION WITH CONSISTENT SNAPSHOT` and never runs `FLUSH TABLES`.
pub(super) fn reload_item(srv: &Server) -> CheckItem {
    let note = match has_privilege(&srv.grants, "RELOAD", None) {
        true => "RELOAD is granted (optional)",
        false => "RELOAD is not granted; it is optional: Ferry never runs FLUSH TABLES",
    };
    pass(&srv.check("reload"), &srv.role, note)
}

/// The privileges Ferry needs on a database it writes to, granted by one statement.
pub(super) const WRITE_PRIVILEGES: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX",
];

/// The probe: the privilege each statement needs, and the statement (`{t}` is the probe table).
pub(super) const PROBE_STEPS: &[(&str, &str)] = &[
    (
        "CREATE",
        "CREATE TABLE IF NOT EXISTS {t} (id INT NOT NULL PRIMARY KEY, v INT)",
    ),
    ("INSERT", "INSERT INTO {t} (id, v) VALUES (1, 1)"),
    ("UPDATE", "UPDATE {t} SET v = 2 WHERE id = 1"),
    ("SELECT", "SELECT v FROM {t} WHERE id = 1"),
    ("DELETE", "DELETE FROM {t} WHERE id = 1"),
    (
        "ALTER, INDEX",
        "ALTER TABLE {t} ADD INDEX ferry_probe_v (v)",
    ),
];

/// `options.target_binlog: false`: the copy's sessions must be allowed to
/// turn their binary log off. Tried, not parsed from the grants.
pub(super) async fn skip_binlog_item(conn: &mut Conn, srv: &Server) -> CheckItem {
    let check = srv.check("skip_binlog");
    let privilege = if srv.info.is_mariadb {
        "BINLOG ADMIN"
    } else {
        "SYSTEM_VARIABLES_ADMIN"
    };
    match conn.query_drop("SET SESSION sql_log_bin = 0").await {
        Ok(()) => {
            let _ = conn.query_drop("SET SESSION sql_log_bin = 1").await;
            pass(
                &check,
                "sql_log_bin",
                "options.target_binlog is false and the session may turn its binary log off",
            )
        }
        Err(e) => fail(
            &check,
            "sql_log_bin",
            format!(
                "options.target_binlog is false but {} may not turn its binary log off ({}); \
                 grant {privilege}, or set options.target_binlog to true",
                srv.account.grantee(),
                e
            ),
            srv.account.grant(privilege, "*.*"),
        ),
    }
}

/// Tries every write Ferry makes in `db`: on an existing database with a probe
/// table that is dropped again; on a missing one from `SHOW GRANTS`.
pub(super) async fn write_privileges_item(conn: &mut Conn, srv: &Server, db: &str) -> CheckItem {
    let check = srv.check("write_privileges");
    let fix = srv.account.grant(
        &WRITE_PRIVILEGES.join(", "),
        &format!("{}.*", quote_ident(db)),
    );
    let exists: Result<Option<String>, _> = conn
        .exec_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (db,),
        )
        .await;
    if !matches!(exists, Ok(Some(_))) {
        let missing: Vec<&str> = WRITE_PRIVILEGES
            .iter()
            .copied()
            .filter(|p| !has_privilege(&srv.grants, p, Some(db)))
            .collect();
        return if missing.is_empty() {
            pass(
                &check,
                db,
                format!(
                    "`{db}` does not exist yet; SHOW GRANTS gives {} on it",
                    WRITE_PRIVILEGES.join(", ")
                ),
            )
        } else {
            let msg = format!(
                "`{db}` does not exist yet and SHOW GRANTS gives {} no {} on it",
                srv.account.grantee(),
                missing.join(", ")
            );
            fail(&check, db, msg, fix)
        };
    }
    let table = qualified(db, &format!("__ferry_probe_{:08x}", random_u64() as u32));
    let outcome = run_probe(conn, &table).await;
    let created = !matches!(outcome, Err(("CREATE", _)));
    let dropped = match created {
        true => {
            conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
                .await
        }
        false => Ok(()),
    };
    match (outcome, dropped) {
        (Ok(()), Ok(())) => pass(
            &check,
            db,
            "created, wrote, altered and dropped a probe table",
        ),
        (Err((privilege, e)), Ok(())) => fail(
            &check,
            db,
            format!(
                "{} lacks {privilege} in `{db}` ({e}); Ferry needs {} there",
                srv.account.grantee(),
                WRITE_PRIVILEGES.join(", ")
            ),
            fix,
        ),
        (_, Err(e)) => fail(
            &check,
            db,
            format!(
                "the probe table {table} could not be dropped ({e}); Ferry needs DROP in `{db}`"
            ),
            format!("{fix} and then: DROP TABLE {table};"),
        ),
    }
}

pub(super) async fn run_probe(
    conn: &mut Conn,
    table: &str,
) -> Result<(), (&'static str, mysql_async::Error)> {
    for (privilege, sql) in PROBE_STEPS {
        conn.query_drop(sql.replace("{t}", table))
            .await
            .map_err(|e| (*privilege, e))?;
    }
    Ok(())
}

//! Prechecks: what the `grant-check` stage verifies before anything is
//! migrated. Style of TiDB DM's checker: checks are data, not exceptions.
//!
//! Invariants:
//! - A check never returns an error and never panics. Whatever goes wrong,
//!   including not reaching a server, is a [`CheckStatus::Fail`] item with a
//!   stable check id, a message naming the thing, and the exact statement or
//!   setting that fixes it.
//! - Privileges are tried, not guessed, wherever trying writes nothing: a
//!   zero-row `SELECT` per table, statements that match no row, a moment's
//!   binlog stream, and on an existing database a probe table
//!   `__ferry_probe_<random>` that is created, written and dropped. The probe
//!   table is the only thing a precheck writes. Where trying would write more
//!   (a database that does not exist yet) the check reads `SHOW GRANTS`.
//! - No password reaches an item: messages name user, host, port and secret.
//! - The decisions over server variables and grants are pure functions
//!   ([`evaluate_version`], [`evaluate_binlog`], [`granted`]), unit-tested
//!   without a server; the async functions only gather facts and call them.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::model::{CheckItem, CheckStatus};
use ferry_core::task::{CopyWrite, MigrationType, Pattern, TaskSpec};
use futures::StreamExt;
use mysql_async::prelude::*;
use mysql_async::{BinlogStreamRequest, Conn};

use crate::conn::{qualified, quote_ident, quote_str, server_info, Endpoint, ServerInfo};
use crate::dialect::caps::{self, TargetCaps};
use crate::dialect::{translate_for, TargetContext, TranslateOptions};
use crate::schema::{self, TableInfo};

pub mod resume;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ items

fn item(
    status: CheckStatus,
    check: &str,
    subject: &str,
    message: impl Into<String>,
    fix: Option<String>,
) -> CheckItem {
    CheckItem {
        check: check.to_string(),
        subject: subject.to_string(),
        status,
        message: message.into(),
        fix,
    }
}

fn pass(check: &str, subject: &str, message: impl Into<String>) -> CheckItem {
    item(CheckStatus::Pass, check, subject, message, None)
}

fn warn(
    check: &str,
    subject: &str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> CheckItem {
    item(CheckStatus::Warn, check, subject, message, Some(fix.into()))
}

fn fail(
    check: &str,
    subject: &str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> CheckItem {
    item(CheckStatus::Fail, check, subject, message, Some(fix.into()))
}

/// The items of several checks in order, without exact repeats (two checks
/// that cannot connect to the same server report it once).
pub fn merge(parts: Vec<Vec<CheckItem>>) -> Vec<CheckItem> {
    let mut out: Vec<CheckItem> = Vec::new();
    for i in parts.into_iter().flatten() {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

// ------------------------------------------------------------------ accounts and grants

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
fn split_grant(line: &str) -> Option<(Vec<String>, String)> {
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
fn grant_db(object: &str) -> Option<String> {
    let quoted = object.strip_suffix(".*")?;
    let inner = quoted.strip_prefix('`')?.strip_suffix('`')?;
    Some(inner.replace("``", "`"))
}

/// SQL `LIKE` matching as grant database names use it: `%`, `_`, `\` escapes.
fn like(pattern: &str, text: &str) -> bool {
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

// ------------------------------------------------------------------ connecting

/// Open a connection, or the `<role>.connect` item saying why not.
async fn open(ep: &Endpoint) -> Result<Conn, CheckItem> {
    let s = &ep.secret;
    let check = format!("{}.connect", ep.role);
    let secret = &ep.secret_name;
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::lookup_host((s.host.as_str(), s.port)),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(fail(
                &check,
                &ep.role,
                format!(
                    "unknown host \"{}\" (field \"host\" of secret \"{secret}\"): {e}",
                    s.host
                ),
                format!(
                    "update field \"host\" of secret \"{secret}\" to the {}'s host name or address",
                    ep.role
                ),
            ))
        }
        Err(_) => return Err(no_answer(ep, &check)),
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(ep.opts())).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(connect_failure(ep, &check, e)),
        Err(_) => Err(no_answer(ep, &check)),
    }
}

fn no_answer(ep: &Endpoint, check: &str) -> CheckItem {
    let s = &ep.secret;
    fail(
        check,
        &ep.role,
        format!("no answer from {}:{} within {} s", s.host, s.port, CONNECT_TIMEOUT.as_secs()),
        format!(
            "check host and port in secret \"{}\" and that the {} accepts connections from this machine \
             (firewall, security group, bind-address)",
            ep.secret_name, ep.role
        ),
    )
}

/// Why a connection failed, by error code and I/O error kind (never by text).
fn connect_failure(ep: &Endpoint, check: &str, e: mysql_async::Error) -> CheckItem {
    use mysql_async::{Error, IoError};
    let s = &ep.secret;
    let (role, secret) = (&ep.role, &ep.secret_name);
    let at = format!("{}@{}:{}", s.username, s.host, s.port);
    match &e {
        Error::Server(se) if se.code == 1045 => fail(
            check,
            role,
            format!(
                "access denied for {at}; the password in secret \"{secret}\" is wrong, or the user may not \
                 log in from this machine (MySQL error 1045)"
            ),
            format!("update secret \"{secret}\" with the user's password"),
        ),
        Error::Server(se) if se.code == 1130 => fail(
            check,
            role,
            format!("the {role} does not let {} log in from this machine (MySQL error 1130)", s.username),
            format!(
                "on the {role}, create the account for this machine's address: CREATE USER '{}'@'<this address>' \
                 IDENTIFIED BY '<password>'; then grant it Ferry's privileges",
                s.username
            ),
        ),
        Error::Server(se) if se.code == 1044 || se.code == 1049 => fail(
            check,
            role,
            format!("{at}: {} (MySQL error {}): the database in field \"dbname\" of secret \"{secret}\"", se.message, se.code),
            format!("correct or remove field \"dbname\" of secret \"{secret}\""),
        ),
        Error::Io(IoError::Io(io)) if io.kind() == std::io::ErrorKind::ConnectionRefused => fail(
            check,
            role,
            format!("connection refused by {}:{} (secret \"{secret}\"): no server listens on that port", s.host, s.port),
            format!("update field \"port\" of secret \"{secret}\", or start the {role} database"),
        ),
        _ => fail(
            check,
            role,
            format!("cannot connect as {at} (secret \"{secret}\"): {e}"),
            format!(
                "check host, port and TLS settings of secret \"{secret}\", and that the {role} is running and \
                 reachable from here"
            ),
        ),
    }
}

async fn close(conn: Conn) {
    if let Err(e) = conn.disconnect().await {
        tracing::debug!(error = %e, "closing a precheck connection");
    }
}

/// What the checks of one side know about its server and account.
struct Server {
    role: String,
    info: ServerInfo,
    account: Account,
    grants: Vec<String>,
}

impl Server {
    async fn read(conn: &mut Conn, ep: &Endpoint) -> Result<Server, CheckItem> {
        let info = server_info(conn, &ep.describe()).await.map_err(|e| {
            fail(
                &format!("{}.version", ep.role),
                &ep.role,
                format!("cannot read the server version: {e}"),
                "check that the server speaks the MySQL protocol",
            )
        })?;
        let current: Option<String> = conn
            .query_first("SELECT CURRENT_USER()")
            .await
            .unwrap_or(None);
        let account = match current {
            Some(c) => Account::parse(&c),
            None => Account {
                user: ep.secret.username.clone(),
                host: "%".into(),
            },
        };
        let grants: Vec<String> = conn.query("SHOW GRANTS").await.unwrap_or_default();
        Ok(Server {
            role: ep.role.clone(),
            info,
            account,
            grants,
        })
    }

    fn check(&self, name: &str) -> String {
        format!("{}.{name}", self.role)
    }

    /// MariaDB 10.5 renamed REPLICATION CLIENT to BINLOG MONITOR.
    fn monitor_privilege(&self) -> &'static str {
        if self.info.is_mariadb && self.info.number >= (10, 5, 0) {
            "BINLOG MONITOR"
        } else {
            "REPLICATION CLIENT"
        }
    }
}

/// Connect and read the server; `Err` holds the items to return instead.
async fn connect_side(ep: &Endpoint) -> Result<(Conn, Server, Vec<CheckItem>), Vec<CheckItem>> {
    let mut conn = open(ep).await.map_err(|i| vec![i])?;
    let s = &ep.secret;
    let mut items = vec![pass(
        &format!("{}.connect", ep.role),
        &ep.role,
        format!("connected to {}:{} as {}", s.host, s.port, s.username),
    )];
    match Server::read(&mut conn, ep).await {
        Ok(srv) => {
            items.push(evaluate_version(&srv.role, &srv.info));
            Ok((conn, srv, items))
        }
        Err(i) => {
            items.push(i);
            close(conn).await;
            Err(items)
        }
    }
}

// ------------------------------------------------------------------ pure decisions

/// Supported: MySQL 5.7 and 8.x, MariaDB 10.3+, OceanBase (MySQL mode).
pub fn evaluate_version(role: &str, info: &ServerInfo) -> CheckItem {
    let check = format!("{role}.version");
    let v = &info.version;
    let (major, minor, _) = info.number;
    let supported = if v.to_ascii_lowercase().contains("oceanbase") {
        true
    } else if info.is_mariadb {
        info.number >= (10, 3, 0)
    } else {
        major == 8 || (major, minor) == (5, 7)
    };
    if supported {
        pass(&check, role, format!("server version {v}"))
    } else {
        warn(
            &check,
            role,
            format!("server version {v} is not one Ferry is tested with (MySQL 5.7/8.x, MariaDB 10.3+, OceanBase)"),
            "upgrade the server, or run a trial migration first and compare with `ferry verify`",
        )
    }
}

/// Whether binlog settings must hold (`Fail` when not) or are advice (`Warn`), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogNeed {
    pub required: bool,
    pub reason: String,
}

impl BinlogNeed {
    /// The source's binlog is needed by types `incremental` and `verify`.
    pub fn for_source(spec: &TaskSpec) -> BinlogNeed {
        let readers: Vec<&str> = [MigrationType::Incremental, MigrationType::Verify]
            .into_iter()
            .filter(|t| spec.has(*t))
            .map(type_name)
            .collect();
        if readers.is_empty() {
            let types: Vec<&str> = spec.types.iter().copied().map(type_name).collect();
            BinlogNeed {
                required: false,
                reason: format!(
                    "Only a warning: this task's types ({}) do not read the source's binlog; with \"incremental\" it would fail.",
                    types.join(", ")
                ),
            }
        } else {
            BinlogNeed {
                required: true,
                reason: format!(
                    "The task's type \"{}\" reads the source's binlog.",
                    readers.join("\", \"")
                ),
            }
        }
    }

    /// After switchover the reverse link reads the target's binlog.
    pub fn for_reverse() -> BinlogNeed {
        BinlogNeed {
            required: true,
            reason: "Type \"reverse\" reads the target's binlog after switchover; it is checked now, not at switch time."
                .into(),
        }
    }

    fn status(&self) -> CheckStatus {
        if self.required {
            CheckStatus::Fail
        } else {
            CheckStatus::Warn
        }
    }
}

fn type_name(t: MigrationType) -> &'static str {
    match t {
        MigrationType::Schema => "schema",
        MigrationType::Full => "full",
        MigrationType::Incremental => "incremental",
        MigrationType::Verify => "verify",
        MigrationType::Reverse => "reverse",
    }
}

/// One server setting that reading the binlog depends on.
struct Setting {
    var: &'static str,
    /// The acceptable value, for messages.
    want: &'static str,
    ok: fn(&str) -> bool,
    applies: fn(&ServerInfo) -> bool,
    /// Changes it at run time; `None` when only a restart does.
    set_global: Option<&'static str>,
    /// The my.cnf line (under `[mysqld]`).
    cnf: &'static str,
    why: &'static str,
}

fn is_on(v: &str) -> bool {
    v.eq_ignore_ascii_case("ON") || v == "1"
}
fn is_row(v: &str) -> bool {
    v.eq_ignore_ascii_case("ROW")
}
fn is_full(v: &str) -> bool {
    v.eq_ignore_ascii_case("FULL")
}
fn is_nonzero(v: &str) -> bool {
    v.trim().parse::<u64>().is_ok_and(|n| n != 0)
}
fn always(_: &ServerInfo) -> bool {
    true
}
/// `binlog_row_metadata` exists on MariaDB 10.5+ and MySQL 8.0.1+.
fn has_row_metadata(i: &ServerInfo) -> bool {
    if i.is_mariadb {
        i.number >= (10, 5, 0)
    } else {
        i.number >= (8, 0, 1)
    }
}

const BINLOG_SETTINGS: &[Setting] = &[
    Setting {
        var: "log_bin",
        want: "ON",
        ok: is_on,
        applies: always,
        set_global: None,
        cnf: "log_bin = mysql-bin",
        why: "row changes are read from the binary log",
    },
    Setting {
        var: "binlog_format",
        want: "ROW",
        ok: is_row,
        applies: always,
        set_global: Some("SET GLOBAL binlog_format = 'ROW';"),
        cnf: "binlog_format = ROW",
        why: "only ROW events carry the changed rows",
    },
    Setting {
        var: "binlog_row_image",
        want: "FULL",
        ok: is_full,
        applies: always,
        set_global: Some("SET GLOBAL binlog_row_image = 'FULL';"),
        cnf: "binlog_row_image = FULL",
        why: "updates and deletes must carry every column to be applied by key",
    },
    Setting {
        var: "binlog_row_metadata",
        want: "FULL",
        ok: is_full,
        applies: has_row_metadata,
        set_global: Some("SET GLOBAL binlog_row_metadata = 'FULL';"),
        cnf: "binlog_row_metadata = FULL",
        why: "without it row events carry no column names or signedness (BIGINT UNSIGNED max decodes as -1)",
    },
    Setting {
        var: "server_id",
        want: "a nonzero number",
        ok: is_nonzero,
        applies: always,
        set_global: Some("SET GLOBAL server_id = 1;"),
        cnf: "server_id = 1",
        why: "a server with server_id 0 refuses binlog readers",
    },
];

/// The variables [`evaluate_binlog`] reads.
const BINLOG_VARIABLES: &[&str] = &[
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "server_id",
    "expire_logs_days",
    "binlog_expire_logs_seconds",
    "gtid_mode",
    "gtid_binlog_pos",
    "gtid_strict_mode",
];

fn setting_fix(s: &Setting) -> String {
    match s.set_global {
        Some(set) => format!(
            "{set} and add `{}` under [mysqld] in my.cnf so it survives a restart (sessions already open keep the old value)",
            s.cnf
        ),
        None => format!("add `{}` under [mysqld] in my.cnf and restart the server", s.cnf),
    }
}

fn evaluate_setting(
    role: &str,
    s: &Setting,
    info: &ServerInfo,
    vars: &BTreeMap<String, String>,
    need: &BinlogNeed,
) -> Option<CheckItem> {
    if !(s.applies)(info) {
        return None;
    }
    let check = format!("{role}.{}", s.var);
    let (var, want, why) = (s.var, s.want, s.why);
    let problem = match vars.get(var) {
        Some(v) if (s.ok)(v) => return Some(pass(&check, role, format!("{var} = {v}"))),
        Some(v) => format!("{var} is {v}; it must be {want} because {why}."),
        None => format!("{var} cannot be read on this server; it must be {want} because {why}."),
    };
    Some(item(
        need.status(),
        &check,
        role,
        format!("{problem} {}", need.reason),
        Some(setting_fix(s)),
    ))
}

/// Seconds binlogs are kept: `None` when they are never purged.
fn retention_seconds(vars: &BTreeMap<String, String>) -> Option<f64> {
    let num = |k: &str| {
        vars.get(k)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|n| *n > 0.0)
    };
    num("binlog_expire_logs_seconds").or_else(|| num("expire_logs_days").map(|d| d * 86_400.0))
}

fn retention_item(role: &str, vars: &BTreeMap<String, String>) -> CheckItem {
    let check = format!("{role}.binlog_retention");
    let fix = if vars.contains_key("binlog_expire_logs_seconds") {
        "SET GLOBAL binlog_expire_logs_seconds = 604800; and add `binlog_expire_logs_seconds = 604800` under [mysqld] in my.cnf"
    } else {
        "SET GLOBAL expire_logs_days = 7; and add `expire_logs_days = 7` under [mysqld] in my.cnf"
    };
    match retention_seconds(vars) {
        None => warn(
            &check,
            role,
            "binlogs are never purged (expire_logs_days and binlog_expire_logs_seconds are 0): the disk can fill up \
             during a long migration",
            fix,
        ),
        Some(s) if s < 86_400.0 => warn(
            &check,
            role,
            format!(
                "binlogs are kept only {:.1} hours: if the full copy and catch-up take longer, the recorded position \
                 is purged and the task must start over",
                s / 3600.0
            ),
            fix,
        ),
        Some(s) => pass(&check, role, format!("binlogs are kept {:.1} days", s / 86_400.0)),
    }
}

fn gtid_item(role: &str, info: &ServerInfo, vars: &BTreeMap<String, String>) -> CheckItem {
    let check = format!("{role}.gtid");
    let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
    if info.is_mariadb {
        pass(
            &check,
            role,
            format!(
                "MariaDB GTIDs are always on (gtid_binlog_pos = \"{}\", gtid_strict_mode = {}); positions are recorded \
                 as file:pos and GTID",
                get("gtid_binlog_pos"),
                get("gtid_strict_mode")
            ),
        )
    } else if is_on(get("gtid_mode")) {
        pass(
            &check,
            role,
            "gtid_mode = ON; positions are recorded as file:pos and GTID set",
        )
    } else {
        pass(
            &check,
            role,
            format!(
                "gtid_mode = {}; positions are file:pos only, so a failover of the {role} to a replica loses the position",
                get("gtid_mode")
            ),
        )
    }
}

/// Binlog settings, and when they are required, retention and GTID mode.
pub fn evaluate_binlog(
    role: &str,
    info: &ServerInfo,
    vars: &BTreeMap<String, String>,
    need: &BinlogNeed,
) -> Vec<CheckItem> {
    let mut items: Vec<CheckItem> = BINLOG_SETTINGS
        .iter()
        .filter_map(|s| evaluate_setting(role, s, info, vars, need))
        .collect();
    if need.required {
        items.push(retention_item(role, vars));
        items.push(gtid_item(role, info, vars));
    }
    items
}

// ------------------------------------------------------------------ server checks

async fn read_variables(conn: &mut Conn) -> Result<BTreeMap<String, String>, mysql_async::Error> {
    let names: Vec<String> = BINLOG_VARIABLES.iter().map(|v| quote_str(v)).collect();
    let sql = format!(
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ({})",
        names.join(", ")
    );
    let rows: Vec<(String, String)> = conn.query(sql).await?;
    Ok(rows
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect())
}

async fn binlog_items(conn: &mut Conn, srv: &Server, need: &BinlogNeed) -> Vec<CheckItem> {
    match read_variables(conn).await {
        Ok(vars) => evaluate_binlog(&srv.role, &srv.info, &vars, need),
        Err(e) => vec![item(
            need.status(),
            &srv.check("variables"),
            &srv.role,
            format!("cannot read the binlog settings: {e}"),
            Some("check that the user may run SHOW GLOBAL VARIABLES".into()),
        )],
    }
}

/// `SHOW MASTER STATUS` (MySQL 8.4+: `SHOW BINARY LOG STATUS`): tries the
/// monitor privilege and returns the current binlog file and position.
async fn monitor_probe(conn: &mut Conn, srv: &Server) -> (CheckItem, Option<(String, u64)>) {
    let stmt = if !srv.info.is_mariadb && srv.info.number >= (8, 4, 0) {
        "SHOW BINARY LOG STATUS"
    } else {
        "SHOW MASTER STATUS"
    };
    let check = srv.check("binlog_monitor");
    let privilege = srv.monitor_privilege();
    match conn.query_first::<mysql_async::Row, _>(stmt).await {
        Ok(Some(row)) => {
            let file: Option<String> = row.get_opt(0).and_then(|r| r.ok());
            let pos: Option<u64> = row.get_opt(1).and_then(|r| r.ok());
            let at = file.clone().zip(pos);
            let shown = at
                .as_ref()
                .map(|(f, p)| format!("{f}:{p}"))
                .unwrap_or_default();
            (
                pass(&check, &srv.role, format!("{stmt} works (at {shown})")),
                at,
            )
        }
        Ok(None) => (
            pass(
                &check,
                &srv.role,
                format!("{stmt} works (binary logging is off: see log_bin)"),
            ),
            None,
        ),
        Err(e) => {
            let fix = srv.account.grant(privilege, "*.*");
            let msg =
                format!("{stmt} was refused: {e}. Reading the binlog position needs {privilege}");
            (fail(&check, &srv.role, msg, fix), None)
        }
    }
}

/// A unique-enough replica server id for a probe stream, far from real servers' ids.
fn probe_server_id() -> u32 {
    0x4000_0000 | (random_u64() as u32 & 0x3FFF_FFFF)
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Open a real binlog stream for a moment (non-blocking, one event) and close it.
async fn replication_probe(ep: &Endpoint, srv: &Server, at: Option<(String, u64)>) -> CheckItem {
    let check = srv.check("replication_slave");
    let conn = match open(ep).await {
        Ok(c) => c,
        Err(i) => return i,
    };
    let (file, pos) = at.unwrap_or_default();
    let request = BinlogStreamRequest::new(probe_server_id())
        .with_non_blocking()
        .with_filename(file.as_bytes())
        .with_pos(pos.max(4));
    let attempt = async {
        let mut stream = conn.get_binlog_stream(request).await?;
        let first = stream.next().await.transpose();
        let closed = stream.close().await;
        first.and(closed)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(())) => pass(
            &check,
            &srv.role,
            "a binlog stream opened and closed (REPLICATION SLAVE works)",
        ),
        Ok(Err(mysql_async::Error::Server(se))) if se.code == 1227 || se.code == 1045 => fail(
            &check,
            &srv.role,
            format!(
                "reading the binlog was refused (MySQL error {}): it needs REPLICATION SLAVE",
                se.code
            ),
            srv.account.grant("REPLICATION SLAVE", "*.*"),
        ),
        Ok(Err(e)) => fail(
            &check,
            &srv.role,
            format!("a binlog stream could not be opened: {e}"),
            format!(
                "see {} and {}; the user needs REPLICATION SLAVE",
                srv.check("log_bin"),
                srv.check("server_id")
            ),
        ),
        Err(_) => fail(
            &check,
            &srv.role,
            format!(
                "a binlog stream gave no event within {} s",
                PROBE_TIMEOUT.as_secs()
            ),
            "check the server's load and that binary logging works",
        ),
    }
}

async fn replication_items(conn: &mut Conn, ep: &Endpoint, srv: &Server) -> Vec<CheckItem> {
    let (monitor, at) = monitor_probe(conn, srv).await;
    vec![monitor, replication_probe(ep, srv, at).await]
}

/// RELOAD is optional: noted, never a warning. Ferry reads each chunk under
/// `START TRANSACTION WITH CONSISTENT SNAPSHOT` and never runs `FLUSH TABLES`.
fn reload_item(srv: &Server) -> CheckItem {
    let note = match has_privilege(&srv.grants, "RELOAD", None) {
        true => "RELOAD is granted (optional)",
        false => "RELOAD is not granted; it is optional: Ferry never runs FLUSH TABLES",
    };
    pass(&srv.check("reload"), &srv.role, note)
}

/// The privileges Ferry needs on a database it writes to, granted by one statement.
const WRITE_PRIVILEGES: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX",
];

/// The probe: the privilege each statement needs, and the statement (`{t}` is the probe table).
const PROBE_STEPS: &[(&str, &str)] = &[
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

/// Tries every write Ferry makes in `db`: on an existing database with a probe
/// table that is dropped again; on a missing one from `SHOW GRANTS`.
/// `options.target_binlog: false`: the copy's sessions must be allowed to
/// turn their binary log off. Tried, not parsed from the grants.
async fn skip_binlog_item(conn: &mut Conn, srv: &Server) -> CheckItem {
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

async fn write_privileges_item(conn: &mut Conn, srv: &Server, db: &str) -> CheckItem {
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

async fn run_probe(conn: &mut Conn, table: &str) -> Result<(), (&'static str, mysql_async::Error)> {
    for (privilege, sql) in PROBE_STEPS {
        conn.query_drop(sql.replace("{t}", table))
            .await
            .map_err(|e| (*privilege, e))?;
    }
    Ok(())
}

/// The databases the target receives (from literal include patterns and
/// renames, plus the meta schema), and the include patterns with a wildcard
/// database, whose target databases only the source's table list tells.
fn target_databases(spec: &TaskSpec) -> (Vec<String>, Vec<String>) {
    let mut dbs = BTreeSet::new();
    let mut unknown = Vec::new();
    for p in &spec.objects.include {
        let Some((db, table)) = p.split_once('.') else {
            continue;
        };
        if db.contains(['*', '?']) {
            unknown.push(p.clone());
        } else if table.contains(['*', '?']) {
            dbs.insert(
                spec.objects
                    .rename
                    .get(db)
                    .cloned()
                    .unwrap_or_else(|| db.to_string()),
            );
        } else {
            dbs.insert(spec.target_name(db, table).0);
        }
    }
    for (from, to) in &spec.objects.rename {
        if let (Some((db, table)), Some((to_db, _))) = (from.split_once('.'), to.split_once('.')) {
            if spec.selects(db, table) {
                dbs.insert(to_db.to_string());
            }
        }
    }
    dbs.insert(spec.options.meta_schema.clone());
    (dbs.into_iter().collect(), unknown)
}

/// Source: connection, version, binlog settings (fail when the task reads the
/// binlog, warn otherwise), and for incremental tasks the replication
/// privileges and the meta schema.
pub async fn check_source(ep: &Endpoint, spec: &TaskSpec) -> Vec<CheckItem> {
    let (mut conn, srv, mut items) = match connect_side(ep).await {
        Ok(x) => x,
        Err(items) => return items,
    };
    items.extend(binlog_items(&mut conn, &srv, &BinlogNeed::for_source(spec)).await);
    if spec.has(MigrationType::Incremental) {
        items.extend(replication_items(&mut conn, ep, &srv).await);
        items.push(reload_item(&srv));
        items.push(write_privileges_item(&mut conn, &srv, &spec.options.meta_schema).await);
    }
    close(conn).await;
    items
}

/// Target: connection, version, write privileges on every database it
/// receives, and for `reverse` its binlog settings and replication privileges.
pub async fn check_target(ep: &Endpoint, spec: &TaskSpec) -> Vec<CheckItem> {
    let (mut conn, srv, mut items) = match connect_side(ep).await {
        Ok(x) => x,
        Err(items) => return items,
    };
    let (dbs, wildcard_patterns) = target_databases(spec);
    for db in &dbs {
        items.push(write_privileges_item(&mut conn, &srv, db).await);
    }
    for p in wildcard_patterns {
        items.push(warn(
            &srv.check("write_privileges"),
            &p,
            format!(
                "pattern \"{p}\" has a wildcard database, so its target databases are not probed"
            ),
            srv.account.grant(&WRITE_PRIVILEGES.join(", "), "*.*"),
        ));
    }
    if !spec.options.target_binlog && spec.has(MigrationType::Full) {
        items.push(skip_binlog_item(&mut conn, &srv).await);
    }
    if spec.has(MigrationType::Full) && spec.options.copy_write == CopyWrite::LoadData {
        items.push(match crate::copy::load_data_refusal(&mut conn).await {
            None => pass(
                &srv.check("load_data"),
                &srv.role,
                "LOAD DATA LOCAL INFILE is allowed: the copy uses it",
            ),
            Some(why) => warn(
                &srv.check("load_data"),
                &srv.role,
                format!("{why}: the full copy writes with multi-row INSERT instead (slower)"),
                srv.account.grant("FILE", "*.*"),
            ),
        });
    }
    if spec.has(MigrationType::Reverse) {
        let caps = caps::probe(&mut conn, "target").await.unwrap_or_default();
        if !caps.binlog && caps.is_oceanbase() {
            items.push(oceanbase_reverse_item(&srv, &caps));
        } else {
            items.extend(binlog_items(&mut conn, &srv, &BinlogNeed::for_reverse()).await);
            items.extend(replication_items(&mut conn, ep, &srv).await);
        }
    }
    close(conn).await;
    items
}

/// A reverse link reads the target's binlog. OceanBase exposes its changes as
/// a MySQL binlog only through its Binlog Service (obbinlog, reached through
/// ODP); a server without it (`SHOW MASTER STATUS` is not supported) cannot
/// be the start of a reverse link.
fn oceanbase_reverse_item(srv: &Server, caps: &TargetCaps) -> CheckItem {
    fail(
        &srv.check("reverse_binlog"),
        &srv.role,
        format!(
            "\"reverse\" is in types, but this OceanBase server ({}) has no binary log a reverse link can read \
             (SHOW MASTER STATUS is not supported): OceanBase offers a MySQL binlog only through its Binlog Service",
            caps.version_comment.split(" (").next().unwrap_or(&caps.version)
        ),
        "deploy OceanBase's Binlog Service (obbinlog) for this tenant and point the target secret at its ODP \
         endpoint, or remove \"reverse\" from types: the switch then completes without a reverse link and the \
         rollback plan is yours",
    )
}

// ------------------------------------------------------------------ tables

/// What the table checks know about the target server.
struct TargetSide {
    conn: Conn,
    srv: Server,
    caps: TargetCaps,
}

impl TargetSide {
    async fn open(ep: &Endpoint) -> Result<TargetSide, CheckItem> {
        let mut conn = open(ep).await?;
        let srv = Server::read(&mut conn, ep).await?;
        let caps = caps::probe(&mut conn, "target").await.unwrap_or_default();
        Ok(TargetSide { conn, srv, caps })
    }

    /// The translation context: the target's own capabilities and the task's renames.
    fn context(&self, spec: &TaskSpec) -> TargetContext {
        TargetContext {
            version: self.caps.rules_version(spec.target.dialect),
            renames: spec.objects.rename.clone(),
            caps: (!self.caps.version.is_empty()).then(|| self.caps.clone()),
        }
    }
}

/// Tables, as [`check_tables_planned`] with nothing planned yet.
pub async fn check_tables(src: &Endpoint, tgt: &Endpoint, spec: &TaskSpec) -> Vec<CheckItem> {
    check_tables_planned(src, tgt, spec, &BTreeSet::new()).await
}

/// Every include pattern matches a table; each selected table is readable,
/// has a usable key, and fits the target (empty or planned by this task, same
/// columns, known character sets, translatable DDL). `planned` holds the
/// source `db.table` names this task planned in an earlier run: their target
/// tables may hold rows (a rerun resumes).
pub async fn check_tables_planned(
    src: &Endpoint,
    tgt: &Endpoint,
    spec: &TaskSpec,
    planned: &BTreeSet<String>,
) -> Vec<CheckItem> {
    let mut s = match open(src).await {
        Ok(c) => c,
        Err(i) => return vec![i],
    };
    let srv = match Server::read(&mut s, src).await {
        Ok(srv) => srv,
        Err(i) => return vec![i],
    };
    let (selected, mut items) = match selection(&mut s, spec, &srv).await {
        Ok(x) => x,
        Err(i) => return vec![i],
    };
    let mut target = match TargetSide::open(tgt).await {
        Ok(t) => Some(t),
        Err(i) => {
            items.push(i);
            None
        }
    };
    for (db, table) in &selected {
        items.extend(check_table(&mut s, &srv, target.as_mut(), spec, planned, db, table).await);
    }
    close(s).await;
    if let Some(t) = target {
        close(t.conn).await;
    }
    items
}

/// The selected tables, and one item per include pattern.
async fn selection(
    conn: &mut Conn,
    spec: &TaskSpec,
    srv: &Server,
) -> Result<(Vec<(String, String)>, Vec<CheckItem>), CheckItem> {
    let listing_failed = |e: ferry_core::FerryError| {
        fail(
            "objects.include",
            "source",
            format!("cannot list the source's tables: {e}"),
            "see source.connect",
        )
    };
    let selected = schema::list_selected_tables(conn, spec)
        .await
        .map_err(listing_failed)?;
    let mut unexcluded_spec = spec.clone();
    unexcluded_spec.objects.exclude.clear();
    let unexcluded = schema::list_selected_tables(conn, &unexcluded_spec)
        .await
        .map_err(listing_failed)?;
    let items = spec
        .objects
        .include
        .iter()
        .map(|p| pattern_item(p, &selected, &unexcluded, srv))
        .collect();
    Ok((selected, items))
}

fn pattern_item(
    pattern: &str,
    selected: &[(String, String)],
    unexcluded: &[(String, String)],
    srv: &Server,
) -> CheckItem {
    let check = "objects.include";
    let count = |tables: &[(String, String)]| {
        Pattern::parse(pattern)
            .map(|p| tables.iter().filter(|(d, t)| p.matches(d, t)).count())
            .unwrap_or(0)
    };
    let n = count(selected);
    if n > 0 {
        return pass(check, pattern, format!("matches {n} table(s)"));
    }
    if count(unexcluded) > 0 {
        return fail(
            check,
            pattern,
            format!("objects.include pattern \"{pattern}\" matches only tables that objects.exclude removes"),
            "remove the pattern from objects.include, or narrow objects.exclude",
        );
    }
    let db = pattern
        .split_once('.')
        .map(|(d, _)| d)
        .filter(|d| !d.contains(['*', '?']));
    if has_privilege(&srv.grants, "SELECT", db) {
        return fail(
            check,
            pattern,
            format!("objects.include pattern \"{pattern}\" matches no table on the source"),
            "correct the pattern in the task file, or create the table on the source",
        );
    }
    let object = db
        .map(|d| format!("{}.*", quote_ident(d)))
        .unwrap_or_else(|| "*.*".into());
    fail(
        check,
        pattern,
        format!(
            "objects.include pattern \"{pattern}\" matches no table on the source that {} can see: the table does \
             not exist, or the user has no SELECT on it",
            srv.account.grantee()
        ),
        srv.account.grant("SELECT", &object),
    )
}

async fn check_table(
    s: &mut Conn,
    srv: &Server,
    target: Option<&mut TargetSide>,
    spec: &TaskSpec,
    planned: &BTreeSet<String>,
    db: &str,
    table: &str,
) -> Vec<CheckItem> {
    let name = format!("{db}.{table}");
    let mut items = vec![select_item(s, srv, db, table).await];
    let info = match schema::read_source_table(s, spec, db, table).await {
        Ok(Some(info)) => info,
        Ok(None) => {
            items.push(fail(
                "source.table",
                &name,
                "the table disappeared during the check",
                "run the check again",
            ));
            return items;
        }
        Err(e) => {
            items.push(fail(
                "source.table",
                &name,
                format!("cannot read the table's definition: {e}"),
                "see source.select",
            ));
            return items;
        }
    };
    items.push(key_item(s, srv, &info, spec.declared_key(db, table)).await);
    if spec.has(MigrationType::Reverse) {
        items.push(reverse_write_item(s, srv, &info).await);
        if let (schema::KeyKind::Declared, Some(key)) = (info.key_kind, &info.key) {
            items.push(declared_unique_item(s, "source.declared_key", &info, &info, key).await);
        }
    }
    let mut target = target;
    if let Some(filter) = spec.filter(db, table) {
        let on_target = match target.as_deref_mut() {
            Some(t) if spec.has(MigrationType::Incremental) => Some(&mut t.conn),
            _ => None,
        };
        items.push(filter_item(s, on_target, &info, filter).await);
    }
    if let Some(t) = target {
        items.extend(target_items(s, t, spec, planned, &info).await);
    }
    items
}

/// The table's row filter runs on the source (the copy's `WHERE`), and with
/// incremental sync on the target too, over the changed rows' images under the
/// source's column names: both must accept it.
async fn filter_item(
    s: &mut Conn,
    target: Option<&mut Conn>,
    info: &TableInfo,
    filter: &str,
) -> CheckItem {
    let check = "objects.filters";
    let name = info.full_name();
    let fix = format!("correct the condition for \"{name}\" in objects.filters");
    let on_source = format!(
        "SELECT 1 FROM {} WHERE ({filter}) LIMIT 0",
        qualified(&info.db, &info.name)
    );
    if let Err(e) = s.query_drop(on_source).await {
        return fail(
            check,
            &name,
            format!("the source rejects the row filter ({filter}): {e}"),
            fix,
        );
    }
    let Some(t) = target else {
        return pass(
            check,
            &name,
            format!("the source accepts the row filter ({filter})"),
        );
    };
    let images: Vec<String> = info
        .columns
        .iter()
        .map(|c| format!("NULL AS {}", quote_ident(&c.name)))
        .collect();
    let on_target = format!(
        "SELECT 1 FROM (SELECT {}) AS `__ferry_images` WHERE ({filter}) LIMIT 0",
        images.join(", ")
    );
    match t.query_drop(on_target).await {
        Ok(()) => pass(
            check,
            &name,
            format!("the source and the target accept the row filter ({filter})"),
        ),
        Err(e) => fail(
            check,
            &name,
            format!(
                "the target rejects the row filter ({filter}), which incremental sync evaluates there over \
                 each changed row (only the table's own columns, no other table): {e}"
            ),
            format!("{fix}, using only the table's columns and functions both servers have"),
        ),
    }
}

/// Tries `SELECT * ... LIMIT 0`: needs SELECT on every column.
async fn select_item(conn: &mut Conn, srv: &Server, db: &str, table: &str) -> CheckItem {
    let name = format!("{db}.{table}");
    let q = qualified(db, table);
    match conn.query_drop(format!("SELECT * FROM {q} LIMIT 0")).await {
        Ok(()) => pass("source.select", &name, "SELECT works"),
        Err(e) => fail(
            "source.select",
            &name,
            format!("{} cannot read {name}: {e}", srv.account.grantee()),
            srv.account.grant("SELECT", &q),
        ),
    }
}

/// A primary key, or a unique key over NOT NULL columns, identifies each row
/// (or the columns `objects.keys` declares, proven unique and not NULL).
async fn key_item(
    conn: &mut Conn,
    srv: &Server,
    info: &TableInfo,
    declared: Option<&[String]>,
) -> CheckItem {
    let name = info.full_name();
    if let Some(key) = &info.key {
        let kind = match info.key_kind {
            schema::KeyKind::Primary => "primary key",
            schema::KeyKind::Declared => return declared_key_item(conn, info, key).await,
            _ => "unique key over NOT NULL columns",
        };
        if declared.is_some() {
            return warn(
                "table.key",
                &name,
                format!(
                    "{name} has a {kind} ({}): Ferry uses it, not the columns objects.keys declares",
                    key.join(", ")
                ),
                format!("remove \"{name}\" from objects.keys"),
            );
        }
        return pass("table.key", &name, format!("{kind} ({})", key.join(", ")));
    }
    if let Some(cols) = declared {
        let missing: Vec<&str> = cols
            .iter()
            .filter(|c| info.column(c).is_none())
            .map(String::as_str)
            .collect();
        return fail(
            "table.key",
            &name,
            format!(
                "objects.keys declares column(s) {} that {name} does not have",
                missing.join(", ")
            ),
            format!("correct the columns of \"{name}\" in objects.keys"),
        );
    }
    let q = qualified(&info.db, &info.name);
    let unique_cols = schema::read_indexes(conn, &info.db, &info.name)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|ix| ix.unique)
        .find_map(|ix| ix.columns.into_iter().collect::<Option<Vec<String>>>());
    let (why, fix) = match unique_cols {
        Some(cols) => {
            let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
            let why = format!(
                "; its unique key ({}) allows NULLs, so it becomes the primary key once no row holds a NULL there",
                cols.join(", ")
            );
            (
                why,
                format!("ALTER TABLE {q} ADD PRIMARY KEY ({});", list.join(", ")),
            )
        }
        None => {
            let invisible = (srv.info.is_mariadb && srv.info.number >= (10, 3, 0))
                || (!srv.info.is_mariadb && srv.info.number >= (8, 0, 23));
            let fix = format!(
                "ALTER TABLE {q} ADD COLUMN `ferry_row_id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT{} PRIMARY KEY;",
                if invisible { " INVISIBLE" } else { "" }
            );
            (String::new(), fix)
        }
    };
    fail(
        "table.key",
        &name,
        format!(
            "{name} has no primary key and no unique key over NOT NULL columns: Ferry cannot split it into chunks \
             or apply changes to it by key{why}. (Or name columns that identify a row in objects.keys.)"
        ),
        fix,
    )
}

/// A declared key identifies each row only if no row has a NULL in it and no
/// two rows share its values: both are read from the source now (a full scan
/// each), and an index starting with the key keeps the chunks' range reads short.
async fn declared_key_item(conn: &mut Conn, info: &TableInfo, key: &[String]) -> CheckItem {
    let name = info.full_name();
    let q = qualified(&info.db, &info.name);
    let cols: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
    let list = cols.join(", ");
    let fix = format!("choose columns that identify a row of {name} in objects.keys, or give the table a primary key");
    let nulls = cols
        .iter()
        .map(|c| format!("{c} IS NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let what = format!("source: checking the declared key of {name}");
    let has_null: Result<Option<u8>, _> = conn
        .query_first(format!("SELECT 1 FROM {q} WHERE {nulls} LIMIT 1"))
        .await;
    let dup: Result<Option<mysql_async::Row>, _> = conn
        .query_first(format!(
            "SELECT {list}, COUNT(*) FROM {q} GROUP BY {list} HAVING COUNT(*) > 1 LIMIT 1"
        ))
        .await;
    match (has_null, dup) {
        (Err(e), _) | (_, Err(e)) => fail("table.key", &name, format!("{what}: {e}"), fix),
        (Ok(Some(_)), _) => fail(
            "table.key",
            &name,
            format!(
                "the key objects.keys declares for {name} ({}) holds NULL in some rows",
                key.join(", ")
            ),
            fix,
        ),
        (Ok(None), Ok(Some(row))) => {
            let values: Vec<String> = (0..row.len())
                .filter_map(|i| row.as_ref(i))
                .map(|v| match v {
                    mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                    other => other.as_sql(true),
                })
                .collect();
            fail(
                "table.key",
                &name,
                format!(
                    "the key objects.keys declares for {name} ({}) is not unique: ({}) appears in {} rows",
                    key.join(", "),
                    values.iter().take(key.len()).cloned().collect::<Vec<_>>().join(", "),
                    values.get(key.len()).map(String::as_str).unwrap_or("several")
                ),
                fix,
            )
        }
        (Ok(None), Ok(None)) => {
            let indexed = schema::read_indexes(conn, &info.db, &info.name)
                .await
                .unwrap_or_default()
                .iter()
                .any(|ix| {
                    ix.columns
                        .iter()
                        .take(key.len())
                        .map(|c| c.as_deref())
                        .eq(key.iter().map(|k| Some(k.as_str())))
                });
            if indexed {
                pass(
                    "table.key",
                    &name,
                    format!("declared key ({}): unique and not NULL in every row now; the target gets a unique key on it", key.join(", ")),
                )
            } else {
                warn(
                    "table.key",
                    &name,
                    format!(
                        "declared key ({}): unique and not NULL in every row now, but no index starts with it, so \
                         every chunk of the copy and the verify scans the whole table",
                        key.join(", ")
                    ),
                    format!("ALTER TABLE {q} ADD INDEX ferry_declared_key_idx ({list});"),
                )
            }
        }
    }
}

/// After switchover the reverse link writes into the source's tables:
/// statements that match no row try INSERT, UPDATE and DELETE without changing anything.
async fn reverse_write_item(conn: &mut Conn, srv: &Server, info: &TableInfo) -> CheckItem {
    let name = info.full_name();
    let q = qualified(&info.db, &info.name);
    let cols: Vec<String> = info
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| quote_ident(&c.name))
        .collect();
    let Some(first) = cols.first() else {
        return pass("source.reverse_write", &name, "no writable columns");
    };
    let list = cols.join(", ");
    let statements = [
        format!("INSERT INTO {q} ({list}) SELECT {list} FROM {q} WHERE 1 = 0"),
        format!("UPDATE {q} SET {first} = {first} WHERE 1 = 0"),
        format!("DELETE FROM {q} WHERE 1 = 0"),
    ];
    for sql in statements {
        if let Err(e) = conn.query_drop(&sql).await {
            return fail(
                "source.reverse_write",
                &name,
                format!(
                    "type \"reverse\" writes into {name} after switchover, but {} may not: {e}",
                    srv.account.grantee()
                ),
                srv.account.grant("INSERT, UPDATE, DELETE", &q),
            );
        }
    }
    pass(
        "source.reverse_write",
        &name,
        "INSERT, UPDATE and DELETE are allowed (tried on no rows)",
    )
}

async fn target_items(
    s: &mut Conn,
    t: &mut TargetSide,
    spec: &TaskSpec,
    planned: &BTreeSet<String>,
    info: &TableInfo,
) -> Vec<CheckItem> {
    let name = info.full_name();
    let (tdb, ttable) = spec.target_name(&info.db, &info.name);
    let existing = match schema::read_table(&mut t.conn, &tdb, &ttable).await {
        Ok(x) => x,
        Err(e) => {
            let msg = format!("cannot read target table {tdb}.{ttable}: {e}");
            let fix = t
                .srv
                .account
                .grant("SELECT", &format!("{}.*", quote_ident(&tdb)));
            return vec![fail("target.table", &name, msg, fix)];
        }
    };
    match existing {
        Some(ti) => {
            let mut items = vec![columns_item(info, &ti, planned.contains(&name)), empty_item(&mut t.conn, planned, info, &ti).await];
            if let (schema::KeyKind::Declared, Some(key)) = (info.key_kind, &info.key) {
                items.push(declared_unique_item(&mut t.conn, "target.declared_key", info, &ti, key).await);
            }
            items
        }
        None if !spec.has(MigrationType::Schema) => vec![fail(
            "target.table",
            &name,
            format!(
                "target table {tdb}.{ttable} does not exist, and the task has no \"schema\" type, so Ferry does not create it"
            ),
            format!("add \"schema\" to types, or create {} on the target", qualified(&tdb, &ttable)),
        )],
        None => {
            let ctx = t.context(spec);
            let mut items = translate_items(spec, info, &tdb, &ttable, &ctx);
            items.extend(collision_items(s, spec, &ctx, info).await);
            items.extend(srid_items(s, &mut t.conn, info).await);
            items
        }
    }
}

/// A table a link writes into must enforce a declared key itself (Ferry adds
/// the unique key only to the target tables it creates): changes are applied
/// by it, and an upsert without a unique key would add a row. `check` is
/// `target.declared_key` (the forward link writes the target) or
/// `source.declared_key` (the reverse link writes the source); `src` names the item.
async fn declared_unique_item(
    conn: &mut Conn,
    check: &str,
    src: &TableInfo,
    written: &TableInfo,
    key: &[String],
) -> CheckItem {
    let name = src.full_name();
    let side = check.split('.').next().unwrap_or(check);
    let unique = schema::read_indexes(conn, &written.db, &written.name)
        .await
        .unwrap_or_default()
        .iter()
        .any(|ix| {
            ix.unique
                && ix.columns.len() == key.len()
                && key
                    .iter()
                    .all(|k| ix.columns.iter().any(|c| c.as_deref() == Some(k.as_str())))
        });
    if unique {
        return pass(
            check,
            &name,
            format!(
                "{side} {} has a unique key on the declared key ({})",
                written.full_name(),
                key.join(", ")
            ),
        );
    }
    let cols: Vec<String> = key.iter().map(|c| quote_ident(c)).collect();
    fail(
        check,
        &name,
        format!(
            "{side} table {} has no unique key on the declared key ({}), and the {} link applies changes by it: \
             without one an update could add a row",
            written.full_name(),
            key.join(", "),
            if side == "source" { "reverse" } else { "forward" }
        ),
        format!(
            "ALTER TABLE {} ADD UNIQUE KEY ferry_declared_key ({});",
            qualified(&written.db, &written.name),
            cols.join(", ")
        ),
    )
}

/// The target table must have the source's columns, no more and no fewer.
/// `migrated`: this task planned the table (it may hold migrated rows), so
/// the fix never suggests dropping it.
fn columns_item(src: &TableInfo, tgt: &TableInfo, migrated: bool) -> CheckItem {
    let name = src.full_name();
    let names = |t: &TableInfo| {
        t.columns
            .iter()
            .map(|c| c.name.to_ascii_lowercase())
            .collect::<BTreeSet<_>>()
    };
    let (a, b) = (names(src), names(tgt));
    if a == b {
        return pass(
            "target.columns",
            &name,
            format!("target {} has the same columns", tgt.full_name()),
        );
    }
    let missing: Vec<&String> = a.difference(&b).collect();
    let extra: Vec<&String> = b.difference(&a).collect();
    fail(
        "target.columns",
        &name,
        format!(
            "target table {} exists with different columns: missing {missing:?}, extra {extra:?}",
            tgt.full_name()
        ),
        if migrated {
            format!(
                "on the target, ALTER TABLE {} to the source's columns (it holds migrated rows: keep it)",
                qualified(&tgt.db, &tgt.name)
            )
        } else {
            format!(
                "on the target, DROP TABLE {} if it holds nothing you need (the schema stage recreates it), \
                 or ALTER it to the source's columns, or map the table elsewhere with objects.rename",
                qualified(&tgt.db, &tgt.name)
            )
        },
    )
}

/// A target table with rows would mix them with the source's, unless this task put them there.
async fn empty_item(
    conn: &mut Conn,
    planned: &BTreeSet<String>,
    src: &TableInfo,
    tgt: &TableInfo,
) -> CheckItem {
    let name = src.full_name();
    let q = qualified(&tgt.db, &tgt.name);
    let has_rows: Result<Option<u8>, _> =
        conn.query_first(format!("SELECT 1 FROM {q} LIMIT 1")).await;
    match has_rows {
        Ok(None) => pass("target.table_empty", &name, format!("target {} exists and is empty", tgt.full_name())),
        Ok(Some(_)) if planned.contains(&name) => pass(
            "target.table_empty",
            &name,
            format!("target {} has rows from this task's earlier run", tgt.full_name()),
        ),
        Ok(Some(_)) => fail(
            "target.table_empty",
            &name,
            format!("target table {} already has rows; copying into it would mix them with the source's", tgt.full_name()),
            format!("on the target, TRUNCATE TABLE {q}; (if its rows are not needed), or map the table elsewhere with objects.rename"),
        ),
        Err(e) => fail(
            "target.table_empty",
            &name,
            format!("cannot read target {}: {e}", tgt.full_name()),
            "grant SELECT on the target database to the target user",
        ),
    }
}

/// Geometries carry a spatial reference system id; a target that does not
/// define it (seekdb defines only SRID 0) refuses the value, which would fail
/// the chunk mid-copy. Asked of the source's rows (distinct SRIDs, at most a
/// few) against the target's `ST_SPATIAL_REFERENCE_SYSTEMS` where it has one.
async fn srid_items(s: &mut Conn, dst: &mut Conn, info: &TableInfo) -> Vec<CheckItem> {
    const SPATIAL: &[&str] = &[
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
        "geomcollection",
    ];
    let cols: Vec<&schema::Column> = info
        .columns
        .iter()
        .filter(|c| SPATIAL.contains(&c.data_type.as_str()) && !c.generated)
        .collect();
    if cols.is_empty() {
        return Vec::new();
    }
    let Ok(known) = dst
        .query::<u64, _>("SELECT SRS_ID FROM information_schema.ST_SPATIAL_REFERENCE_SYSTEMS")
        .await
    else {
        return Vec::new(); // MariaDB keeps no such table: any SRID is stored as given.
    };
    let name = info.full_name();
    let q = qualified(&info.db, &info.name);
    let mut items = Vec::new();
    for c in cols {
        let col = quote_ident(&c.name);
        let sql =
            format!("SELECT DISTINCT ST_SRID({col}) FROM {q} WHERE {col} IS NOT NULL LIMIT 20");
        match s.query::<Option<u64>, _>(&sql).await {
            Ok(srids) => {
                let missing: Vec<String> = srids
                    .into_iter()
                    .flatten()
                    .filter(|id| !known.contains(id))
                    .map(|id| id.to_string())
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                items.push(fail(
                    "target.srid",
                    &name,
                    format!(
                        "column {} holds geometries with SRID {}, which the target does not define (it knows {:?}): \
                         those rows would fail their chunk",
                        c.name,
                        missing.join(", "),
                        known
                    ),
                    format!(
                        "define the spatial reference system on the target, or exclude the table; the rows are \
                         SELECT ... FROM {q} WHERE ST_SRID({col}) IN ({})",
                        missing.join(", ")
                    ),
                ));
            }
            Err(e) => items.push(warn(
                "target.srid",
                &name,
                format!("could not read the SRIDs of column {}: {e}", c.name),
                "check the geometries' SRIDs against the target's spatial reference systems before the copy",
            )),
        }
    }
    items
}

/// A unique key over text columns whose collation the target maps to
/// another one (e.g. `utf8mb4_unicode_ci` to `utf8mb4_general_ci`) must not
/// hold two source rows that the new collation calls equal (`'ß'` and `'s'`):
/// the target would refuse the second. Grouped on the source under the new
/// collation; a fix never asks to alter the source's data.
async fn collision_items(
    s: &mut Conn,
    spec: &TaskSpec,
    ctx: &TargetContext,
    info: &TableInfo,
) -> Vec<CheckItem> {
    let name = info.full_name();
    let dialect = spec.target.dialect;
    let mapped = |col: &schema::Column| -> Option<String> {
        let (cs, co) = (col.charset.as_deref()?, col.collation.as_deref()?);
        let (_, new, _) = crate::dialect::database_charset(dialect, ctx, "", cs, co);
        (!new.eq_ignore_ascii_case(co)).then_some(new)
    };
    if !info.columns.iter().any(|c| mapped(c).is_some()) {
        return Vec::new();
    }
    let keys: Vec<(String, String)> = match s
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (info.db.as_str(), info.name.as_str()),
        )
        .await
    {
        Ok(k) => k,
        Err(e) => {
            return vec![warn(
                "target.collation",
                &name,
                format!("cannot read the table's unique keys to look for collisions under the target's collations: {e}"),
                "grant SELECT on the table to the source user",
            )]
        }
    };
    let mut by_index: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, column) in keys {
        by_index.entry(index).or_default().push(column);
    }
    let q = qualified(&info.db, &info.name);
    let mut items = Vec::new();
    for (index, cols) in by_index {
        let exprs: Vec<(String, Option<String>)> = cols
            .iter()
            .map(|c| (quote_ident(c), info.column(c).and_then(mapped)))
            .collect();
        if exprs.iter().all(|(_, m)| m.is_none()) {
            continue;
        }
        let group: Vec<String> = exprs
            .iter()
            .map(|(c, m)| match m {
                Some(co) => format!("{c} COLLATE {co}"),
                None => c.clone(),
            })
            .collect();
        // A unique key never compares rows with a NULL in it: leave them out.
        let not_null: Vec<String> = exprs
            .iter()
            .map(|(c, _)| format!("{c} IS NOT NULL"))
            .collect();
        let originals: Vec<String> = exprs.iter().map(|(c, _)| c.clone()).collect();
        let sql = format!(
            "SELECT GROUP_CONCAT(QUOTE(CONCAT_WS(', ', {})) SEPARATOR ' and ') FROM {q} WHERE {} \
             GROUP BY {} HAVING COUNT(*) > 1 LIMIT 1",
            originals.join(", "),
            not_null.join(" AND "),
            group.join(", ")
        );
        let mapping: Vec<String> = exprs
            .iter()
            .zip(&cols)
            .filter_map(|((_, m), c)| m.as_ref().map(|co| format!("{c} -> {co}")))
            .collect();
        match s.query_first::<Option<String>, _>(&sql).await {
            Ok(None) => items.push(pass(
                "target.collation",
                &name,
                format!(
                    "unique key {index}: no two rows are equal under the target's collation ({})",
                    mapping.join(", ")
                ),
            )),
            Ok(Some(example)) => {
                let example = example.unwrap_or_default();
                items.push(fail(
                    "target.collation",
                    &name,
                    format!(
                        "unique key {index}: rows the source keeps apart are equal under the target's collation ({}), \
                         e.g. {example}; the target would refuse one of them",
                        mapping.join(", "),
                    ),
                    format!(
                        "create {} on the target yourself with a binary collation (utf8mb4_bin) for these columns and \
                         run the task with it in place, or exclude the table",
                        qualified(&spec.target_name(&info.db, &info.name).0, &spec.target_name(&info.db, &info.name).1)
                    ),
                ));
            }
            Err(e) => items.push(warn(
                "target.collation",
                &name,
                format!(
                    "unique key {index}: could not look for rows equal under the target's collation ({}): {e}",
                    mapping.join(", ")
                ),
                "compare the key's values yourself before the copy",
            )),
        }
    }
    items
}

fn translate_items(
    spec: &TaskSpec,
    info: &TableInfo,
    tdb: &str,
    ttable: &str,
    ctx: &TargetContext,
) -> Vec<CheckItem> {
    let name = info.full_name();
    let opts = TranslateOptions {
        indexes_after_load: spec.options.indexes_after_load,
    };
    match translate_for(info, spec.target.dialect, tdb, ttable, &opts, ctx) {
        Ok(t) if t.notes.is_empty() => vec![pass(
            "target.translate",
            &name,
            "the DDL translates unchanged",
        )],
        Ok(t) => vec![pass(
            "target.translate",
            &name,
            format!("the DDL translates: {}", t.notes.join("; ")),
        )],
        Err(problems) => problems
            .into_iter()
            .map(|p| {
                fail(
                    "target.translate",
                    &p.object,
                    format!("{name}: {}", p.reason),
                    p.fix,
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mariadb(v: (u16, u16, u16)) -> ServerInfo {
        ServerInfo {
            version: format!("{}.{}.{}-MariaDB", v.0, v.1, v.2),
            is_mariadb: true,
            number: v,
        }
    }

    fn mysql(v: (u16, u16, u16)) -> ServerInfo {
        ServerInfo {
            version: format!("{}.{}.{}", v.0, v.1, v.2),
            is_mariadb: false,
            number: v,
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn good() -> BTreeMap<String, String> {
        vars(&[
            ("log_bin", "ON"),
            ("binlog_format", "ROW"),
            ("binlog_row_image", "FULL"),
            ("binlog_row_metadata", "FULL"),
            ("server_id", "1"),
            ("expire_logs_days", "7"),
            ("gtid_binlog_pos", "0-1-5"),
            ("gtid_strict_mode", "OFF"),
        ])
    }

    fn spec(types: &str) -> TaskSpec {
        TaskSpec::from_json(&format!(
            r#"{{"task_id":"t","source":{{"secret":"s"}},"target":{{"secret":"t"}},"types":{types},
               "objects":{{"include":["shop.*"]}}}}"#
        ))
        .unwrap()
    }

    fn find<'a>(items: &'a [CheckItem], check: &str) -> &'a CheckItem {
        items
            .iter()
            .find(|i| i.check == check)
            .unwrap_or_else(|| panic!("no {check} in {items:#?}"))
    }

    #[test]
    fn good_settings_pass() {
        let need = BinlogNeed::for_source(&spec(r#"["schema","full","incremental"]"#));
        let items = evaluate_binlog("source", &mariadb((10, 11, 6)), &good(), &need);
        assert!(
            items.iter().all(|i| i.status == CheckStatus::Pass),
            "{items:#?}"
        );
        assert_eq!(items.len(), BINLOG_SETTINGS.len() + 2);
    }

    #[test]
    fn statement_format_fails_for_incremental_and_names_the_fix() {
        let mut v = good();
        v.insert("binlog_format".into(), "STATEMENT".into());
        let need = BinlogNeed::for_source(&spec(r#"["full","incremental"]"#));
        let items = evaluate_binlog("source", &mariadb((10, 11, 6)), &v, &need);
        let i = find(&items, "source.binlog_format");
        assert_eq!(i.status, CheckStatus::Fail);
        assert!(
            i.message.contains("binlog_format is STATEMENT"),
            "{}",
            i.message
        );
        assert!(i.message.contains("\"incremental\""), "{}", i.message);
        let fix = i.fix.as_deref().unwrap();
        assert!(
            fix.starts_with("SET GLOBAL binlog_format = 'ROW';"),
            "{fix}"
        );
        assert!(fix.contains("binlog_format = ROW` under [mysqld]"), "{fix}");
    }

    #[test]
    fn settings_only_warn_for_full_only_tasks_and_say_why() {
        let v = vars(&[
            ("log_bin", "OFF"),
            ("binlog_format", "MIXED"),
            ("binlog_row_image", "MINIMAL"),
            ("server_id", "0"),
        ]);
        let need = BinlogNeed::for_source(&spec(r#"["schema","full"]"#));
        let items = evaluate_binlog("source", &mariadb((10, 11, 6)), &v, &need);
        assert!(
            items.iter().all(|i| i.status == CheckStatus::Warn),
            "{items:#?}"
        );
        let log_bin = find(&items, "source.log_bin");
        assert!(
            log_bin.message.contains("Only a warning"),
            "{}",
            log_bin.message
        );
        assert!(
            log_bin.fix.as_deref().unwrap().contains("restart"),
            "{log_bin:?}"
        );
        assert!(
            items.iter().all(|i| i.check != "source.binlog_retention"),
            "no retention advice for full-only tasks"
        );
    }

    #[test]
    fn row_metadata_only_where_it_exists() {
        let mut v = good();
        v.insert("binlog_row_metadata".into(), "NO_LOG".into());
        let need = BinlogNeed::for_reverse();
        let items = evaluate_binlog("target", &mariadb((10, 11, 6)), &v, &need);
        let i = find(&items, "target.binlog_row_metadata");
        assert_eq!(i.status, CheckStatus::Fail);
        assert!(i
            .fix
            .as_deref()
            .unwrap()
            .starts_with("SET GLOBAL binlog_row_metadata = 'FULL';"));
        for old in [mariadb((10, 4, 30)), mysql((5, 7, 44))] {
            let items = evaluate_binlog("target", &old, &v, &need);
            assert!(
                items
                    .iter()
                    .all(|i| i.check != "target.binlog_row_metadata"),
                "{old:?}"
            );
        }
        let items = evaluate_binlog("target", &mysql((8, 0, 36)), &vars(&[]), &need);
        assert_eq!(
            find(&items, "target.binlog_row_metadata").status,
            CheckStatus::Fail
        );
    }

    #[test]
    fn retention() {
        let days = |d: &str| {
            let mut v = good();
            v.insert("expire_logs_days".into(), d.into());
            retention_item("source", &v)
        };
        assert_eq!(days("7").status, CheckStatus::Pass);
        assert_eq!(days("1.000000").status, CheckStatus::Pass);
        assert_eq!(days("0.5").status, CheckStatus::Warn);
        let never = days("0");
        assert_eq!(never.status, CheckStatus::Warn);
        assert!(never.message.contains("never purged"), "{}", never.message);
        assert!(never
            .fix
            .as_deref()
            .unwrap()
            .starts_with("SET GLOBAL expire_logs_days"));
        let v = vars(&[
            ("binlog_expire_logs_seconds", "3600"),
            ("expire_logs_days", "0"),
        ]);
        let short = retention_item("source", &v);
        assert_eq!(short.status, CheckStatus::Warn);
        assert!(short
            .fix
            .as_deref()
            .unwrap()
            .starts_with("SET GLOBAL binlog_expire_logs_seconds = 604800;"));
    }

    #[test]
    fn gtid_is_noted_not_required() {
        let i = gtid_item("source", &mysql((8, 0, 36)), &vars(&[("gtid_mode", "OFF")]));
        assert_eq!(i.status, CheckStatus::Pass);
        assert!(i.message.contains("file:pos only"));
    }

    #[test]
    fn versions() {
        let ok = |i: ServerInfo| evaluate_version("source", &i).status;
        assert_eq!(ok(mariadb((10, 3, 0))), CheckStatus::Pass);
        assert_eq!(ok(mariadb((10, 2, 44))), CheckStatus::Warn);
        assert_eq!(ok(mysql((5, 7, 44))), CheckStatus::Pass);
        assert_eq!(ok(mysql((8, 4, 2))), CheckStatus::Pass);
        assert_eq!(ok(mysql((5, 6, 51))), CheckStatus::Warn);
        let ob = ServerInfo {
            version: "5.7.25-OceanBase_CE-v4.2.1.0".into(),
            is_mariadb: false,
            number: (5, 7, 25),
        };
        assert_eq!(ok(ob), CheckStatus::Pass);
    }

    #[test]
    fn grants_are_read_per_database() {
        let g = vec![
            "GRANT SELECT, RELOAD, BINLOG MONITOR, REPLICATION SLAVE ON *.* TO `ferry_src`@`%` IDENTIFIED BY PASSWORD '*AB'"
                .to_string(),
            "GRANT ALL PRIVILEGES ON `ferry_meta`.* TO `ferry_src`@`%`".to_string(),
            "GRANT INSERT, UPDATE (`a`, `b`) ON `shop\\_%`.* TO `ferry_src`@`%`".to_string(),
            "GRANT SELECT ON `x`.`t` TO `ferry_src`@`%`".to_string(),
            "GRANT `some_role` TO `ferry_src`@`%`".to_string(),
        ];
        assert!(has_privilege(&g, "reload", None));
        assert!(!has_privilege(&g, "CREATE", None));
        assert!(has_privilege(&g, "CREATE", Some("ferry_meta")));
        assert!(has_privilege(&g, "UPDATE", Some("shop_eu")));
        assert!(!has_privilege(&g, "UPDATE", Some("shopx")));
        assert!(!has_privilege(&g, "DELETE", Some("x")));
        assert_eq!(
            granted(&g, Some("shop_1"))
                .into_iter()
                .collect::<Vec<_>>()
                .len(),
            6
        );
    }

    #[test]
    fn accounts() {
        let a = Account::parse("ferry@src@10.0.%");
        assert_eq!(
            a,
            Account {
                user: "ferry@src".into(),
                host: "10.0.%".into()
            }
        );
        assert_eq!(
            a.grant("SELECT", "`shop`.*"),
            "GRANT SELECT ON `shop`.* TO 'ferry@src'@'10.0.%';"
        );
    }

    #[test]
    fn target_databases_follow_renames() {
        let mut s = spec(r#"["schema","full"]"#);
        s.objects.include = vec!["shop.*".into(), "crm.customers".into(), "*.log".into()];
        s.objects.rename.insert("shop".into(), "shop2".into());
        s.objects
            .rename
            .insert("crm.customers".into(), "crm_new.clients".into());
        let (dbs, unknown) = target_databases(&s);
        assert_eq!(
            dbs,
            vec!["crm_new".to_string(), "ferry_meta".into(), "shop2".into()]
        );
        assert_eq!(unknown, vec!["*.log".to_string()]);
    }

    #[test]
    fn merge_drops_repeats() {
        let a = fail("source.connect", "source", "x", "y");
        let b = pass("target.connect", "target", "ok");
        assert_eq!(
            merge(vec![vec![a.clone(), b.clone()], vec![a.clone()]]),
            vec![a, b]
        );
    }
}

//! The server of one side: connecting (every failure an item naming the
//! secret field to fix), its version, and its binlog settings.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_core::model::{CheckItem, CheckStatus};
use ferry_core::task::{MigrationType, TaskSpec};
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::conn::{quote_str, server_info, Endpoint, ServerInfo};

use super::grants::Account;
use super::{fail, item, pass, warn};

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Open a connection, or the `<role>.connect` item saying why not.
pub(super) async fn open(ep: &Endpoint) -> Result<Conn, CheckItem> {
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

pub(super) fn no_answer(ep: &Endpoint, check: &str) -> CheckItem {
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
pub(super) fn connect_failure(ep: &Endpoint, check: &str, e: mysql_async::Error) -> CheckItem {
    use mysql_async::{Error, IoError};
    let s = &ep.secret;
    let (role, secret) = (&ep.role, &ep.secret_name);
    let at = format!("{}@{}:{}", s.username, s.host, s.port);
    if let Some((why, fix)) = ep.not_oceanbase(&e) {
        return fail(check, role, why, fix);
    }
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

pub(super) async fn close(conn: Conn) {
    if let Err(e) = conn.disconnect().await {
        tracing::debug!(error = %e, "closing a precheck connection");
    }
}

/// What the checks of one side know about its server and account.
pub(super) struct Server {
    pub(super) role: String,
    pub(super) info: ServerInfo,
    pub(super) account: Account,
    pub(super) grants: Vec<String>,
}

impl Server {
    pub(super) async fn read(conn: &mut Conn, ep: &Endpoint) -> Result<Server, CheckItem> {
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

    pub(super) fn check(&self, name: &str) -> String {
        format!("{}.{name}", self.role)
    }

    /// MariaDB 10.5 renamed REPLICATION CLIENT to BINLOG MONITOR.
    pub(super) fn monitor_privilege(&self) -> &'static str {
        if self.info.is_mariadb && self.info.number >= (10, 5, 0) {
            "BINLOG MONITOR"
        } else {
            "REPLICATION CLIENT"
        }
    }
}

/// Connect and read the server; `Err` holds the items to return instead.
pub(super) async fn connect_side(
    ep: &Endpoint,
) -> Result<(Conn, Server, Vec<CheckItem>), Vec<CheckItem>> {
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

    pub(super) fn status(&self) -> CheckStatus {
        if self.required {
            CheckStatus::Fail
        } else {
            CheckStatus::Warn
        }
    }
}

pub(super) fn type_name(t: MigrationType) -> &'static str {
    match t {
        MigrationType::Schema => "schema",
        MigrationType::Full => "full",
        MigrationType::Incremental => "incremental",
        MigrationType::Verify => "verify",
        MigrationType::Reverse => "reverse",
    }
}

/// One server setting that reading the binlog depends on.
pub(super) struct Setting {
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

pub(super) fn is_on(v: &str) -> bool {
    v.eq_ignore_ascii_case("ON") || v == "1"
}

pub(super) fn is_row(v: &str) -> bool {
    v.eq_ignore_ascii_case("ROW")
}

pub(super) fn is_full(v: &str) -> bool {
    v.eq_ignore_ascii_case("FULL")
}

pub(super) fn is_nonzero(v: &str) -> bool {
    v.trim().parse::<u64>().is_ok_and(|n| n != 0)
}

pub(super) fn always(_: &ServerInfo) -> bool {
    true
}

/// `binlog_row_metadata` exists on MariaDB 10.5+ and MySQL 8.0.1+.
pub(super) fn has_row_metadata(i: &ServerInfo) -> bool {
    if i.is_mariadb {
        i.number >= (10, 5, 0)
    } else {
        i.number >= (8, 0, 1)
    }
}

pub(super) const BINLOG_SETTINGS: &[Setting] = &[
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
pub(super) const BINLOG_VARIABLES: &[&str] = &[
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

pub(super) fn setting_fix(s: &Setting) -> String {
    match s.set_global {
        Some(set) => format!(
            "{set} and add `{}` under [mysqld] in my.cnf so it survives a restart (sessions already open keep the old value)",
            s.cnf
        ),
        None => format!("add `{}` under [mysqld] in my.cnf and restart the server", s.cnf),
    }
}

pub(super) fn evaluate_setting(
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
pub(super) fn retention_seconds(vars: &BTreeMap<String, String>) -> Option<f64> {
    let num = |k: &str| {
        vars.get(k)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|n| *n > 0.0)
    };
    num("binlog_expire_logs_seconds").or_else(|| num("expire_logs_days").map(|d| d * 86_400.0))
}

pub(super) fn retention_item(role: &str, vars: &BTreeMap<String, String>) -> CheckItem {
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

pub(super) fn gtid_item(
    role: &str,
    info: &ServerInfo,
    vars: &BTreeMap<String, String>,
) -> CheckItem {
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

pub(super) async fn read_variables(
    conn: &mut Conn,
) -> Result<BTreeMap<String, String>, mysql_async::Error> {
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

pub(super) async fn binlog_items(
    conn: &mut Conn,
    srv: &Server,
    need: &BinlogNeed,
) -> Vec<CheckItem> {
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

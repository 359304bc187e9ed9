//! Connections to MySQL-protocol servers, and the one place where driver and
//! server errors become [`FerryError`]s: by error code, never by substring.

use std::time::Duration;

use ferry_core::secret::{DbSecret, TlsMode};
use ferry_core::FerryError;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts};

/// One side of a migration: which role it plays, the secret's name (for
/// messages) and the credentials.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `source` or `target`: used in every message.
    pub role: String,
    /// The secret's name, so a message can say which secret to fix.
    pub secret_name: String,
    pub secret: DbSecret,
    /// The server is an OceanBase kernel (the task's `dialect` says so): its
    /// sessions lift OceanBase's statement limit ([`OCEANBASE_QUERY_TIMEOUT_US`]).
    pub oceanbase: bool,
}

/// `ob_query_timeout` of Ferry's sessions on OceanBase, in microseconds: one
/// day. OceanBase ends any statement after 10 s by default (error 4012,
/// `Timeout`), where MySQL and MariaDB set no limit. A copy's `LOAD DATA` of
/// a chunk, or a verify's digest of a large chunk, can take longer on a busy
/// or slow server: measured on seekdb 4.3.5 on a 2-core machine, a
/// 250,000-row `LOAD DATA` ran into it, and a checksum of 4M rows took 5 s.
/// Ferry bounds its work by its own leases and deadlines instead.
pub const OCEANBASE_QUERY_TIMEOUT_US: u64 = 86_400_000_000;

impl Endpoint {
    pub fn new(role: &str, secret_name: &str, secret: DbSecret) -> Endpoint {
        Endpoint {
            role: role.to_string(),
            secret_name: secret_name.to_string(),
            secret,
            oceanbase: false,
        }
    }

    /// This endpoint with [`Endpoint::oceanbase`] set to `yes`.
    pub fn oceanbase(self, yes: bool) -> Endpoint {
        Endpoint {
            oceanbase: yes,
            ..self
        }
    }

    /// `source (ferry@db:3306)`: safe to print, never the password.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.role, self.secret.describe())
    }

    pub fn opts(&self) -> Opts {
        let s = &self.secret;
        let mut b = OptsBuilder::default()
            .ip_or_hostname(s.host.clone())
            .tcp_port(s.port)
            .user(Some(s.username.clone()))
            .pass(Some(s.password.expose().clone()))
            .prefer_socket(false)
            .conn_ttl(Some(Duration::from_secs(600)))
            .wait_timeout(Some(28_800))
            // `setup`, not `init`: a pool resets a returned connection (COM_RESET_CONNECTION),
            // which clears session settings; setup commands run again after each reset.
            // TIMESTAMP values are read and written in UTC, so no value shifts between servers.
            // One statement, one round trip per connection (MariaDB, MySQL and OceanBase take
            // NAMES in a SET list, as the copy's own session setup does).
            .setup(vec![self.session_setup()]);
        if let Some(tls) = &s.tls {
            match tls.mode {
                TlsMode::Disabled => {}
                TlsMode::Required => {
                    let mut ssl = SslOpts::default();
                    if let Some(ca) = &tls.ca {
                        ssl = ssl.with_root_certs(vec![std::path::PathBuf::from(ca).into()]);
                    }
                    b = b.ssl_opts(Some(ssl));
                }
                TlsMode::SkipVerify => {
                    b = b.ssl_opts(Some(
                        SslOpts::default()
                            .with_danger_accept_invalid_certs(true)
                            .with_danger_skip_domain_validation(true),
                    ));
                }
            }
        }
        Opts::from(b)
    }

    /// Open one connection. Errors name the endpoint and the fix.
    pub async fn connect(&self) -> Result<Conn, FerryError> {
        self.connect_with(self.opts()).await
    }

    /// Open one connection with `opts` built from [`Endpoint::opts`] (extra
    /// session flags); errors as [`Endpoint::connect`].
    pub async fn connect_with(&self, opts: Opts) -> Result<Conn, FerryError> {
        let fut = Conn::new(opts);
        match tokio::time::timeout(Duration::from_secs(20), fut).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.connect_error(e)),
            Err(_) => Err(FerryError::Transient(format!(
                "{}: no answer within 20 s. Check that the host and port in secret \"{}\" are right and that \
                 the database accepts connections from this machine (firewall, security group, bind-address).",
                self.describe(),
                self.secret_name
            ))),
        }
    }

    /// A pool of up to `max` connections for parallel work.
    pub fn pool(&self, max: usize) -> Pool {
        let constraints = PoolConstraints::new(0, max.max(1)).unwrap_or_default();
        let opts = OptsBuilder::from_opts(self.opts())
            .pool_opts(PoolOpts::default().with_constraints(constraints));
        Pool::new(opts)
    }

    /// The statement every new (or reset) session runs first.
    fn session_setup(&self) -> String {
        let mut sql = String::from("SET NAMES utf8mb4, time_zone = '+00:00'");
        if self.oceanbase {
            sql.push_str(&format!(
                ", ob_query_timeout = {OCEANBASE_QUERY_TIMEOUT_US}"
            ));
        }
        sql
    }

    /// Why an endpoint marked [`Endpoint::oceanbase`] was refused its
    /// OceanBase session setting (1193, unknown variable), and the fix: the
    /// server is not OceanBase, and the task's `dialect` says it is. `None`
    /// otherwise.
    pub fn not_oceanbase(&self, e: &mysql_async::Error) -> Option<(String, String)> {
        match e {
            mysql_async::Error::Server(se) if self.oceanbase && se.code == 1193 => Some((
                format!(
                    "{} is not an OceanBase server (it does not know ob_query_timeout, MySQL error 1193), but \
                     the task's {} says \"dialect\": \"oceanbase\"",
                    self.describe(),
                    self.role
                ),
                format!(
                    "set \"dialect\" of the task's {} to \"mysql\" or \"mariadb\"",
                    self.role
                ),
            )),
            _ => None,
        }
    }

    fn connect_error(&self, e: mysql_async::Error) -> FerryError {
        let who = self.describe();
        let secret = &self.secret_name;
        if let Some((why, fix)) = self.not_oceanbase(&e) {
            return FerryError::BadTask(format!(
                "{why}. Fix: {fix} in the task file, then `ferry run TASK.json` again."
            ));
        }
        match &e {
            mysql_async::Error::Server(se) if se.code == 1045 => FerryError::ConnectFailed(format!(
                "{who}: access denied (MySQL error 1045: {}). The username or password in secret \"{secret}\" \
                 is wrong, or the user may not connect from this host; fix the secret or run \
                 CREATE USER / ALTER USER ... IDENTIFIED BY ... on the {}.",
                se.message, self.role
            )),
            mysql_async::Error::Server(se) if se.code == 1044 || se.code == 1049 => FerryError::ConnectFailed(format!(
                "{who}: {} (MySQL error {}). Check field \"dbname\" of secret \"{secret}\" and the user's grants.",
                se.message, se.code
            )),
            // Transient: a server restarting or a network blip is retried by the state machine;
            // a side still unreachable when the retries run out stops the task with this message
            // (the precheck reports a wrong host or port at once, as a failed item).
            mysql_async::Error::Io(io) => {
                let text = io.to_string();
                FerryError::Transient(format!(
                    "{who}: cannot connect: {text}. Check host and port in secret \"{secret}\" and that the \
                     server is running and reachable from here; once it is, `ferry resume` continues the task."
                ))
            }
            _ => classify(e, &who),
        }
    }
}

/// Map a driver or server error to a Ferry error. `what` says what was being
/// done (e.g. "target: writing chunk 0001-000003 of shop.orders").
pub fn classify(e: mysql_async::Error, what: &str) -> FerryError {
    use mysql_async::Error as E;
    match e {
        E::Server(se) => {
            if let Some(why) = oceanbase_retryable(se.code, &se.message) {
                return FerryError::Transient(format!(
                    "{what}: {} (OceanBase error {}): {why}",
                    se.message, se.code
                ));
            }
            let msg = format!("{what}: {} (MySQL error {})", se.message, se.code);
            match se.code {
                // lock wait timeout, deadlock, too many connections, server shutdown,
                // connection killed, query interrupted, read-only during failover
                // (OceanBase: 5066 "Session interrupted", its KILL QUERY/1317)
                1205 | 1213 | 1040 | 1053 | 1927 | 1317 | 1290 | 2006 | 2013 | 1158 | 1159 | 1160 | 1161
                | 5066 => {
                    FerryError::Transient(msg)
                }
                1045 => FerryError::ConnectFailed(msg),
                1044 | 1142 | 1143 | 1227 | 1370 | 1410 => FerryError::MissingGrant(format!(
                    "{msg}. The migration user lacks a privilege; see `ferry precheck` for the GRANT to run."
                )),
                1236 => FerryError::BinlogPurged(msg),
                _ => FerryError::ChunkFailed(msg),
            }
        }
        E::Io(io) => FerryError::Transient(format!("{what}: connection lost: {io}")),
        E::Driver(d) => FerryError::Transient(format!("{what}: {d}")),
        E::Url(u) => FerryError::BadSecret(format!("{what}: {u}")),
        E::Other(o) => FerryError::Internal(format!("{what}: {o}")),
    }
}

/// OceanBase's errors (MySQL mode) that end a statement or a transaction and
/// leave the data as it was before it, so the same work can run again: a
/// tenant short of memory for writes (its MemStore fills faster than it
/// freezes and dumps, the commonest error of a bulk load into OceanBase), a
/// leader that moved, a transaction rolled back or timed out, a row lock
/// conflict, SQL throttling. The reason to print, or `None` for any other
/// error. Codes and wording from OceanBase's `src/share/ob_errno.def`: the
/// 4xxx codes are MariaDB's too (its 4012 is a window-specification error),
/// so those count only with OceanBase's own words; MariaDB has no 6xxx code.
/// Every write Ferry makes is safe to repeat (the copy's `REPLACE`, the sync's
/// checkpoint in the same target transaction), so a retry loses nothing and
/// applies nothing twice.
fn oceanbase_retryable(code: u16, message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    Some(match code {
        c if OCEANBASE_MEMORY_CODES.contains(&c) && m.contains("memory") => {
            "the OceanBase tenant is short of memory for writes (its MemStore fills faster than it \
             freezes and dumps). Ferry waits, lets fewer copy workers write for a minute, and \
             retries; if it keeps failing, lower `chunk_rows` (the rows of one copy transaction) or \
             `concurrency` in the task's options, or give the tenant more memory, then `ferry resume`"
        }
        4012 if m.contains("timeout") || m.contains("unknown") || m.starts_with("rpc") => {
            "OceanBase timed out the statement or its transaction, or cannot tell its outcome yet. \
             Ferry retries (a repeated write changes nothing); if it keeps failing, raise the tenant's \
             `ob_trx_timeout`, or lower `chunk_rows` (the rows of one copy transaction) in the task's \
             options, then `ferry resume`"
        }
        4038 if m.contains("master") => "a leader moved in the OceanBase cluster; Ferry retries",
        4023 if m == "try again" => "OceanBase asked to try again; Ferry retries",
        4039 if m.contains("throttle") => "OceanBase's SQL throttling ended the statement; Ferry retries",
        6002 => "OceanBase rolled the transaction back; Ferry runs it again",
        6005 => "a row lock conflict on OceanBase; Ferry retries",
        _ => return None,
    })
}

/// Whether `e` is OceanBase saying it has no memory for more writes (4030,
/// 4013, as [`classify`] words them). Memory comes back when the server
/// freezes and dumps its MemStore, seconds to a minute later, so a retry of
/// such an error waits longer than one after a lost connection.
pub fn waits_for_memory(e: &FerryError) -> bool {
    matches!(e, FerryError::Transient(m)
        if OCEANBASE_MEMORY_CODES.iter().any(|c| m.contains(&format!("(OceanBase error {c})"))))
}

/// OceanBase's "no memory for more writes": `OB_TENANT_OUT_OF_MEM` (4030) and
/// `OB_ALLOCATE_MEMORY_FAILED` (4013), one list for [`classify`] and
/// [`waits_for_memory`].
const OCEANBASE_MEMORY_CODES: [u16; 2] = [4030, 4013];

/// Quote an identifier with backticks, doubling any backtick inside.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `db`.`table`, quoted.
pub fn qualified(db: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(db), quote_ident(table))
}

/// A SQL string literal for a value that is not user data (names, settings).
/// Row data always travels as bound parameters.
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Server flavour and version, read once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: String,
    pub is_mariadb: bool,
    /// (major, minor, patch)
    pub number: (u16, u16, u16),
}

/// Whether a `VERSION()` string is a MariaDB server's (`10.11.14-MariaDB-log`).
pub fn is_mariadb_version(version: &str) -> bool {
    version.to_ascii_lowercase().contains("mariadb")
}

pub async fn server_info(conn: &mut Conn, what: &str) -> Result<ServerInfo, FerryError> {
    let v: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| classify(e, what))?;
    let version = v.unwrap_or_default();
    let is_mariadb = is_mariadb_version(&version);
    let nums: Vec<u16> = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    let number = (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
        nums.get(2).copied().unwrap_or(0),
    );
    Ok(ServerInfo {
        version,
        is_mariadb,
        number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wording decides for the codes MariaDB shares (a pure test of the
    /// rule; `oceanbase_errors_that_change_nothing_are_retried` in
    /// `tests/copy.rs` gets real errors from both servers).
    #[test]
    fn oceanbase_codes_count_only_with_oceanbase_wording() {
        let ob = [
            (4030, "Over tenant memory limits"),
            // seekdb 4.3.5's words, met in a copy with its MemStore cut to 256 MB
            (4030, "Server runtime memory limit exceeded"),
            (4013, "No memory or reach tenant memory limit"),
            (4012, "Timeout, query has reached the maximum query timeout: 1000(us), maybe you can adjust the session variable ob_query_timeout or query_timeout hint, and try again."),
            (4012, "Transaction result is unknown"),
            (4038, "The observer or zone is not the master"),
            (4023, "Try again"),
            (4039, "Request has killed by sql throttle"),
            (6002, "Transaction rollbacked"),
            (6005, "Try lock row conflict"),
        ];
        for (code, m) in ob {
            assert!(oceanbase_retryable(code, m).is_some(), "{code} {m}");
        }
        let mariadb = [
            (4012, "Referenced window specification 'w' already contains order list"),
            (4013, "Referenced window specification 'w' cannot contain window frame"),
            (4023, "This window function may not have a window frame"),
            (4030, "Only one DEFAULT partition allowed"),
            (4038, "Syntax error in JSON text in argument 1 to function 'json_extract' at position 2"),
            (4039, "Incorrect escaping in JSON text in argument 1 to function 'json_extract' at position 2"),
            (1062, "Duplicate entry '1' for key 'PRIMARY'"),
        ];
        for (code, m) in mariadb {
            assert_eq!(oceanbase_retryable(code, m), None, "{code} {m}");
        }
    }

    #[test]
    fn a_memory_error_is_known_by_its_classified_words() {
        let server = |code: u16, message: &str| {
            classify(
                mysql_async::Error::Server(mysql_async::ServerError {
                    code,
                    message: message.into(),
                    state: "HY000".into(),
                }),
                "target: writing chunk 1",
            )
        };
        assert!(waits_for_memory(&server(
            4030,
            "Server runtime memory limit exceeded"
        )));
        assert!(waits_for_memory(&server(
            4013,
            "No memory or reach tenant memory limit"
        )));
        assert!(!waits_for_memory(&server(6002, "Transaction rollbacked")));
        assert!(!waits_for_memory(&server(
            4030,
            "Only one DEFAULT partition allowed"
        )));
        assert!(!waits_for_memory(&FerryError::Transient(
            "connection lost".into()
        )));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(qualified("my db", "t"), "`my db`.`t`");
        assert_eq!(quote_str("it's\\"), "'it''s\\\\'");
    }
}

//! Replication probes: the monitor privilege through `SHOW MASTER STATUS`,
//! and a moment's binlog stream under a random server id.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::model::CheckItem;
use futures::StreamExt;
use mysql_async::prelude::*;
use mysql_async::{BinlogStreamRequest, Conn};

use crate::conn::Endpoint;

use super::server::{open, Server};
use super::{fail, pass};

pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// `SHOW MASTER STATUS` (MySQL 8.4+: `SHOW BINARY LOG STATUS`): tries the
/// monitor privilege and returns the current binlog file and position.
pub(super) async fn monitor_probe(
    conn: &mut Conn,
    srv: &Server,
) -> (CheckItem, Option<(String, u64)>) {
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
pub(super) fn probe_server_id() -> u32 {
    0x4000_0000 | (random_u64() as u32 & 0x3FFF_FFFF)
}

pub(super) fn random_u64() -> u64 {
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
pub(super) async fn replication_probe(
    ep: &Endpoint,
    srv: &Server,
    at: Option<(String, u64)>,
) -> CheckItem {
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

pub(super) async fn replication_items(
    conn: &mut Conn,
    ep: &Endpoint,
    srv: &Server,
) -> Vec<CheckItem> {
    let (monitor, at) = monitor_probe(conn, srv).await;
    vec![monitor, replication_probe(ep, srv, at).await]
}

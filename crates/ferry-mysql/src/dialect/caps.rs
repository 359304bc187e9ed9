//! What a target server can do, read from the live server once per task.
//!
//! The dialect rules ask these facts instead of a fixed table wherever the
//! server can tell: its kernel version, the character sets and collations it
//! has, whether it computes `CRC32C()` (verify's digest), whether it accepts
//! `LOAD DATA LOCAL` (copy's write path), whether it exposes a binary log
//! a reverse link could read, and how many CPUs an OceanBase tenant has (the
//! copy's default number of writers). What no server reports (OceanBase's documented
//! size limits) stays in the per-target rules (`oceanbase.rs`).
//!
//! Invariant: a probe that cannot run leaves the fact unknown (`None` or
//! empty), and the rules then fall back to the documented behaviour; a probe
//! never fails the task on its own.

use ferry_core::task::Dialect;
use ferry_core::FerryError;
use mysql_async::prelude::*;
use mysql_async::Conn;
use serde::{Deserialize, Serialize};

use crate::conn::classify;

/// The name of the task record holding the target's capabilities.
pub const CAPS_RECORD: &str = "caps#target";

/// Facts about one server, as it reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCaps {
    /// `VERSION()`: `10.11.14-MariaDB`, `5.7.25-OceanBase seekdb-v1.4.0.0`.
    pub version: String,
    /// `@@version_comment`: OceanBase puts its kernel version here
    /// (`OceanBase 4.3.5.3 seekdb (r1.4.0.0)`).
    #[serde(default)]
    pub version_comment: String,
    /// Character sets (lower case); empty when they could not be read.
    #[serde(default)]
    pub charsets: Vec<String>,
    /// Collations (lower case) with their character set; empty when unknown.
    #[serde(default)]
    pub collations: Vec<(String, String)>,
    /// `CRC32C()` exists.
    #[serde(default)]
    pub crc32c: bool,
    /// `@@local_infile` is on.
    #[serde(default)]
    pub local_infile: bool,
    /// `SHOW MASTER STATUS` (or `SHOW BINARY LOG STATUS`) answers with a position.
    #[serde(default)]
    pub binlog: bool,
    /// CPUs the server gives this tenant: OceanBase's unit `MAX_CPU`
    /// (`GV$OB_UNITS`, rounded up), or seekdb's `CPU_CAPACITY`
    /// (`V$OB_SERVER_STAT`); `None` where the server does not say (MySQL, MariaDB).
    #[serde(default)]
    pub cpus: Option<u32>,
}

impl TargetCaps {
    /// Whether the server is an OceanBase kernel.
    pub fn is_oceanbase(&self) -> bool {
        is_oceanbase_version(&self.version, &self.version_comment)
    }

    /// Whether the server is MariaDB (its `VERSION()` says so).
    pub fn is_mariadb(&self) -> bool {
        crate::conn::is_mariadb_version(&self.version)
    }

    /// The version the dialect rules compare against: OceanBase's kernel
    /// version (from the comment, else from `VERSION()`), or the server's own.
    pub fn rules_version(&self, dialect: Dialect) -> Option<(u16, u16, u16)> {
        if dialect == Dialect::Oceanbase {
            if let Some(v) = oceanbase_kernel(&self.version_comment) {
                return Some(v);
            }
        }
        super::target_version_from(&self.version, dialect)
    }

    pub fn has_charset(&self, cs: &str) -> bool {
        self.charsets.iter().any(|c| c.eq_ignore_ascii_case(cs))
    }

    pub fn has_collation(&self, co: &str) -> bool {
        self.collations
            .iter()
            .any(|(c, _)| c.eq_ignore_ascii_case(co))
    }

    /// The collations of one character set.
    pub fn collations_of(&self, cs: &str) -> Vec<&str> {
        self.collations
            .iter()
            .filter(|(_, c)| c.eq_ignore_ascii_case(cs))
            .map(|(co, _)| co.as_str())
            .collect()
    }
}

/// `OceanBase 4.3.5.3 seekdb (r1.4.0.0)` -> (4, 3, 5); `OceanBase_CE 4.2.1.0` too.
pub fn oceanbase_kernel(comment: &str) -> Option<(u16, u16, u16)> {
    let lc = comment.to_ascii_lowercase();
    let at = lc.find("oceanbase")?;
    let rest = &comment[at + "oceanbase".len()..];
    let word = rest
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let nums: Vec<u16> = word
        .split('.')
        .map_while(|s| s.parse().ok())
        .take(3)
        .collect();
    (nums.len() >= 2).then(|| (nums[0], nums[1], nums.get(2).copied().unwrap_or(0)))
}

/// Read the target's capabilities. Only losing the connection is an error.
pub async fn probe(conn: &mut Conn, role: &str) -> Result<TargetCaps, FerryError> {
    let version: Option<(String, String)> = conn
        .query_first("SELECT VERSION(), @@version_comment")
        .await
        .map_err(|e| classify(e, &format!("{role}: reading its version")))?;
    let (version, version_comment) = version.unwrap_or_default();
    let charsets: Vec<String> = conn
        .query("SELECT CHARACTER_SET_NAME FROM information_schema.CHARACTER_SETS")
        .await
        .unwrap_or_default();
    // MariaDB 11 lists its uca1400 collation families with no character set.
    let collations: Vec<(String, Option<String>)> = conn
        .query("SELECT COLLATION_NAME, CHARACTER_SET_NAME FROM information_schema.COLLATIONS")
        .await
        .unwrap_or_default();
    let crc32c = conn.query_drop("SELECT CRC32C('ferry')").await.is_ok();
    let local_infile = conn
        .query_first::<String, _>("SELECT @@local_infile")
        .await
        .ok()
        .flatten()
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("on"));
    let mut binlog = false;
    for sql in ["SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"] {
        if let Ok(rows) = conn.query::<mysql_async::Row, _>(sql).await {
            binlog = !rows.is_empty();
            break;
        }
    }
    let cpus = if is_oceanbase_version(&version, &version_comment) {
        oceanbase_cpus(conn).await
    } else {
        None
    };
    Ok(TargetCaps {
        version,
        version_comment,
        charsets: charsets
            .into_iter()
            .map(|c| c.to_ascii_lowercase())
            .collect(),
        collations: collations
            .into_iter()
            .filter_map(|(co, cs)| Some((co.to_ascii_lowercase(), cs?.to_ascii_lowercase())))
            .collect(),
        crc32c,
        local_infile,
        binlog,
        cpus,
    })
}

/// Whether `VERSION()` or `@@version_comment` names an OceanBase kernel.
fn is_oceanbase_version(version: &str, comment: &str) -> bool {
    let has = |s: &str| s.to_ascii_lowercase().contains("oceanbase");
    has(version) || has(comment)
}

/// The tenant's CPUs: a cluster's user tenant sees its own units in
/// `GV$OB_UNITS` (`MAX_CPU` may be fractional); seekdb has no units and
/// reports the server's capacity in `V$OB_SERVER_STAT`. Unknown when neither answers.
async fn oceanbase_cpus(conn: &mut Conn) -> Option<u32> {
    for sql in [
        "SELECT CAST(MAX(MAX_CPU) AS CHAR) FROM oceanbase.GV$OB_UNITS",
        "SELECT CAST(MAX(CPU_CAPACITY) AS CHAR) FROM oceanbase.V$OB_SERVER_STAT",
    ] {
        if let Ok(Some(Some(text))) = conn.query_first::<Option<String>, _>(sql).await {
            if let Some(n) = cpu_count(&text) {
                return Some(n);
            }
        }
    }
    None
}

/// `"2"`, `"1.5"` -> 2, 2; nothing below 1, nothing that is not a number.
fn cpu_count(text: &str) -> Option<u32> {
    let v: f64 = text.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then(|| v.ceil().min(f64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_oceanbase_kernel_version() {
        assert_eq!(
            oceanbase_kernel("OceanBase 4.3.5.3 seekdb (r1.4.0.0) (Built 1-d0cb Sep  8 2026)"),
            Some((4, 3, 5))
        );
        assert_eq!(
            oceanbase_kernel("OceanBase_CE 4.2.1.0 (r1)"),
            Some((4, 2, 1))
        );
        assert_eq!(oceanbase_kernel("mariadb.org binary distribution"), None);
        let caps = TargetCaps {
            version: "5.7.25-OceanBase seekdb-v1.4.0.0".into(),
            version_comment: "OceanBase 4.3.5.3 seekdb (r1.4.0.0)".into(),
            ..TargetCaps::default()
        };
        assert!(caps.is_oceanbase());
        // The kernel, not the product's own version (seekdb 1.4).
        assert_eq!(caps.rules_version(Dialect::Oceanbase), Some((4, 3, 5)));
    }

    #[test]
    fn cpu_counts_round_up() {
        assert_eq!(cpu_count("2"), Some(2));
        assert_eq!(cpu_count("1.5"), Some(2));
        assert_eq!(cpu_count(" 16.0 "), Some(16));
        assert_eq!(cpu_count("0"), None);
        assert_eq!(cpu_count("-1"), None);
        assert_eq!(cpu_count("NaN"), None);
        assert_eq!(cpu_count("many"), None);
    }

    #[test]
    fn collations_by_charset() {
        let caps = TargetCaps {
            collations: vec![
                ("utf8mb4_general_ci".into(), "utf8mb4".into()),
                ("utf8mb4_bin".into(), "utf8mb4".into()),
                ("binary".into(), "binary".into()),
            ],
            charsets: vec!["utf8mb4".into(), "binary".into()],
            ..TargetCaps::default()
        };
        assert_eq!(
            caps.collations_of("utf8mb4"),
            vec!["utf8mb4_general_ci", "utf8mb4_bin"]
        );
        assert!(caps.has_collation("UTF8MB4_BIN"));
        assert!(!caps.has_charset("latin1"));
    }
}

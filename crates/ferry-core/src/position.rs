//! Binlog positions: `file:pos` plus the GTID state when the server has one
//! (MariaDB `domain-server-seq[,..]`, MySQL `uuid:1-5[,..]`).

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct BinlogPosition {
    pub file: String,
    pub pos: u64,
    /// GTID state at this position, as the server prints it (`@@gtid_binlog_pos`, `Executed_Gtid_Set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

impl BinlogPosition {
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        BinlogPosition {
            file: file.into(),
            pos,
            gtid: None,
        }
    }

    /// The numeric suffix of `mysql-bin.000042`.
    pub fn file_index(&self) -> Option<u64> {
        self.file.rsplit('.').next()?.parse().ok()
    }

    /// Order by file then offset. Files of one server share a base name whose
    /// suffix grows; positions of different base names do not compare.
    /// (The apply compares a transaction's start with every worker's
    /// checkpoint, so this allocates nothing, and when both are in the same
    /// file it reads that file name's number once and splits no other name.)
    pub fn compare(&self, other: &BinlogPosition) -> Option<Ordering> {
        fn base(f: &str) -> Option<&str> {
            f.rsplit_once('.').map(|(b, _)| b)
        }
        let same_file = self.file == other.file;
        if !same_file && base(&self.file) != base(&other.file) {
            return None;
        }
        let index = self.file_index()?;
        let other_index = match same_file {
            true => index,
            false => other.file_index()?,
        };
        Some((index, self.pos).cmp(&(other_index, other.pos)))
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if let Some(g) = &self.gtid {
            if !g.is_empty() {
                write!(f, " (gtid {g})")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_within_one_server() {
        let a = BinlogPosition::new("bin.000009", 900);
        let b = BinlogPosition::new("bin.000010", 4);
        assert_eq!(a.compare(&b), Some(Ordering::Less));
        assert_eq!(b.compare(&a), Some(Ordering::Greater));
        assert_eq!(a.compare(&BinlogPosition::new("other.000001", 4)), None);
        // One file: the offsets decide (the apply's common case).
        let c = BinlogPosition::new("bin.000009", 1_200);
        assert_eq!(a.compare(&c), Some(Ordering::Less));
        assert_eq!(c.compare(&a), Some(Ordering::Greater));
        assert_eq!(a.compare(&a.clone()), Some(Ordering::Equal));
        // A name without a numbered suffix orders nothing, even against itself.
        let odd = BinlogPosition::new("binlog", 4);
        assert_eq!(odd.compare(&odd.clone()), None);
        assert_eq!(a.compare(&odd), None);
        assert_eq!(a.to_string(), "bin.000009:900");
    }
}

//! Ferry's error type. Every variant has a stable name (`Ferry.*`) that
//! `statemachine/migration.asl.json` matches in Retry/Catch; the Rust type
//! name never reaches the state machine.
//!
//! Two kinds, as in the design: *transient* errors (I/O, a lost connection, a
//! lock wait, a store conflict) are retried by the state machine; every other
//! error is *definite* and stops the task with a message that names the thing
//! and the fix.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", content = "message")]
pub enum FerryError {
    /// The task file is malformed or names something that cannot work.
    #[error("{0}")]
    BadTask(String),
    /// A secret is missing, malformed, or its file is readable by others.
    #[error("{0}")]
    BadSecret(String),
    /// A database cannot be reached or refuses the credentials.
    #[error("{0}")]
    ConnectFailed(String),
    /// The migration user lacks a privilege it needs (names the GRANT that fixes it).
    #[error("{0}")]
    MissingGrant(String),
    /// The precheck report has at least one failed item.
    #[error("{0}")]
    PrecheckFailed(String),
    /// A table's schema cannot be created or written on the target.
    #[error("{0}")]
    SchemaIncompatible(String),
    /// A chunk failed more often than allowed; names table, range and the server's message.
    #[error("{0}")]
    ChunkFailed(String),
    /// The binlog position to resume from is no longer on the source.
    #[error("{0}")]
    BinlogPurged(String),
    /// Another worker owns the lease or a newer epoch owns the link.
    #[error("{0}")]
    Fenced(String),
    /// The operator asked to stop; not a failure of the data.
    #[error("{0}")]
    Stopped(String),
    /// Worth retrying: I/O, a lost connection, a lock wait, a deadlock, a store conflict.
    #[error("{0}")]
    Transient(String),
    /// The task store failed in a way a retry will not fix.
    #[error("{0}")]
    Store(String),
    /// A bug in Ferry.
    #[error("{0}")]
    Internal(String),
}

impl FerryError {
    /// Every name [`FerryError::name`] can return: the state machine must handle each.
    pub const ALL_NAMES: &'static [&'static str] = &[
        "Ferry.BadTask",
        "Ferry.BadSecret",
        "Ferry.ConnectFailed",
        "Ferry.MissingGrant",
        "Ferry.PrecheckFailed",
        "Ferry.SchemaIncompatible",
        "Ferry.ChunkFailed",
        "Ferry.BinlogPurged",
        "Ferry.Fenced",
        "Ferry.Stopped",
        "Ferry.Transient",
        "Ferry.Store",
        "Ferry.Internal",
    ];

    /// The stable name the state machine's Retry/Catch match.
    pub fn name(&self) -> &'static str {
        match self {
            FerryError::BadTask(_) => "Ferry.BadTask",
            FerryError::BadSecret(_) => "Ferry.BadSecret",
            FerryError::ConnectFailed(_) => "Ferry.ConnectFailed",
            FerryError::MissingGrant(_) => "Ferry.MissingGrant",
            FerryError::PrecheckFailed(_) => "Ferry.PrecheckFailed",
            FerryError::SchemaIncompatible(_) => "Ferry.SchemaIncompatible",
            FerryError::ChunkFailed(_) => "Ferry.ChunkFailed",
            FerryError::BinlogPurged(_) => "Ferry.BinlogPurged",
            FerryError::Fenced(_) => "Ferry.Fenced",
            FerryError::Stopped(_) => "Ferry.Stopped",
            FerryError::Transient(_) => "Ferry.Transient",
            FerryError::Store(_) => "Ferry.Store",
            FerryError::Internal(_) => "Ferry.Internal",
        }
    }

    /// Rebuild an error from the name and message a state machine reported.
    pub fn from_name(name: &str, message: impl Into<String>) -> FerryError {
        let m = message.into();
        match name {
            "Ferry.BadTask" => FerryError::BadTask(m),
            "Ferry.BadSecret" => FerryError::BadSecret(m),
            "Ferry.ConnectFailed" => FerryError::ConnectFailed(m),
            "Ferry.MissingGrant" => FerryError::MissingGrant(m),
            "Ferry.PrecheckFailed" => FerryError::PrecheckFailed(m),
            "Ferry.SchemaIncompatible" => FerryError::SchemaIncompatible(m),
            "Ferry.ChunkFailed" => FerryError::ChunkFailed(m),
            "Ferry.BinlogPurged" => FerryError::BinlogPurged(m),
            "Ferry.Fenced" => FerryError::Fenced(m),
            "Ferry.Stopped" => FerryError::Stopped(m),
            "Ferry.Transient" => FerryError::Transient(m),
            "Ferry.Store" => FerryError::Store(m),
            "Ferry.Internal" => FerryError::Internal(m),
            _ => FerryError::Internal(format!("{name}: {m}")),
        }
    }

    /// The message without the name.
    pub fn message(&self) -> &str {
        match self {
            FerryError::BadTask(m)
            | FerryError::BadSecret(m)
            | FerryError::ConnectFailed(m)
            | FerryError::MissingGrant(m)
            | FerryError::PrecheckFailed(m)
            | FerryError::SchemaIncompatible(m)
            | FerryError::ChunkFailed(m)
            | FerryError::BinlogPurged(m)
            | FerryError::Fenced(m)
            | FerryError::Stopped(m)
            | FerryError::Transient(m)
            | FerryError::Store(m)
            | FerryError::Internal(m) => m,
        }
    }

    /// Transient errors are retried; everything else stops the task.
    pub fn is_transient(&self) -> bool {
        matches!(self, FerryError::Transient(_))
    }
}

pub type Result<T, E = FerryError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in FerryError::ALL_NAMES {
            let e = FerryError::from_name(name, "m");
            assert_eq!(e.name(), *name);
            assert_eq!(e.message(), "m");
        }
    }
}

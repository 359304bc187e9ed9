//! DDL translation per target dialect (being written: the types are final).

use ferry_core::task::Dialect;
use serde::{Deserialize, Serialize};

use crate::schema::TableInfo;

/// How to translate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranslateOptions {
    /// Create secondary indexes after the load (returned in `deferred_indexes`).
    pub indexes_after_load: bool,
}

/// A translated table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Translated {
    pub create_sql: String,
    /// `ALTER TABLE ... ADD ...` statements to run after the last chunk is loaded.
    pub deferred_indexes: Vec<String>,
    /// What was changed, for the operator.
    pub notes: Vec<String>,
}

/// Something that cannot be translated: what, why, and what the operator can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub object: String,
    pub reason: String,
    pub fix: String,
}

pub fn translate(
    table: &TableInfo,
    _target: Dialect,
    _target_db: &str,
    _target_table: &str,
    _opts: &TranslateOptions,
) -> Result<Translated, Vec<Problem>> {
    Err(vec![Problem {
        object: table.full_name(),
        reason: "DDL translation is not built yet".into(),
        fix: "wait for the dialect module".into(),
    }])
}

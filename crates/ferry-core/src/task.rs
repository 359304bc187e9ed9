//! The task file: what to migrate, from where, to where, and how.
//!
//! ```json
//! {
//!   "task_id": "shop-to-ob",
//!   "source": {"secret": "shop-source"},
//!   "target": {"secret": "shop-target", "dialect": "oceanbase"},
//!   "types": ["schema", "full", "incremental", "verify", "reverse"],
//!   "objects": {
//!     "include": ["shop.*", "crm.customers"],
//!     "exclude": ["shop.tmp_*"],
//!     "rename": {"shop": "shop_new", "crm.customers": "crm_new.clients"},
//!     "filters": {"shop.orders": "created_at >= '2024-01-01'"},
//!     "keys": {"shop.audit_log": ["logged_at", "seq"]}
//!   },
//!   "options": {"chunk_rows": 50000, "concurrency": 4}
//! }
//! ```
//! Parsing refuses unknown fields; every error names the field and the fix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::FerryError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub task_id: String,
    pub source: Endpoint,
    pub target: Endpoint,
    #[serde(default = "default_types")]
    pub types: Vec<MigrationType>,
    pub objects: ObjectSelection,
    #[serde(default)]
    pub options: TaskOptions,
}

fn default_types() -> Vec<MigrationType> {
    vec![MigrationType::Schema, MigrationType::Full]
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Name (or ARN) of the secret holding the credentials.
    pub secret: String,
    /// SQL dialect of this side. For the source only `mysql` and `mariadb` make sense.
    #[serde(default)]
    pub dialect: Dialect,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    #[default]
    Mysql,
    Mariadb,
    Oceanbase,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Mysql => "mysql",
            Dialect::Mariadb => "mariadb",
            Dialect::Oceanbase => "oceanbase",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum MigrationType {
    /// Create the target tables from the source's DDL.
    Schema,
    /// Copy every selected row.
    Full,
    /// Follow the source's binlog after the full copy.
    Incremental,
    /// Compare source and target.
    Verify,
    /// After switchover, replicate target changes back to the source.
    Reverse,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ObjectSelection {
    /// `db.table` patterns; `*` matches any run of characters, `?` one character.
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `"db": "new_db"` renames a database; `"db.table": "new_db.new_table"` one table.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// `"db.table": "<SQL condition>"`: copy only matching rows.
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
    /// `"db.table": ["col", ...]`: the columns that identify a row of a table
    /// without a primary key or a unique key over NOT NULL columns (the
    /// precheck proves them unique and not NULL; the target gets a unique key
    /// on them). Ignored for a table that has a key of its own.
    #[serde(default)]
    pub keys: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TaskOptions {
    /// Target rows per chunk of the full copy.
    pub chunk_rows: u64,
    /// Chunks copied at once; 0 (the default) chooses: [`DEFAULT_CONCURRENCY`],
    /// or fewer when the target reports fewer CPUs (see [`TaskOptions::copy_workers`]).
    pub concurrency: u32,
    /// Rows per INSERT statement.
    pub batch_rows: u32,
    /// Full-copy rate limit in rows per second for the whole task, shared
    /// equally among the workers copying at the moment (0 = none). Changeable
    /// while the copy runs: applied within seconds.
    pub max_rows_per_second: u64,
    /// Full-copy rate limit in bytes per second, like `max_rows_per_second` (0 = none).
    pub max_bytes_per_second: u64,
    /// Build secondary indexes after the load instead of with the table.
    pub indexes_after_load: bool,
    /// Parallel workers applying binlog changes.
    pub apply_workers: u32,
    /// How long one stage call may run before it returns (embedded runs; Lambda uses its deadline).
    pub slice_seconds: u64,
    /// Link slices one execution runs before it continues as a new execution
    /// (Step Functions keeps at most 25,000 history events; a slice adds about 10).
    pub slice_budget: u64,
    /// How long a chunk lease lasts before another worker may take the chunk over.
    pub lease_seconds: u64,
    /// Attempts per chunk before the task stops.
    pub max_chunk_attempts: u32,
    /// Schema on each side for Ferry's checkpoints and heartbeat.
    pub meta_schema: String,
    /// When the state machine runs verify (with "verify" in types).
    pub verify_when: VerifyWhen,
    /// Chunks verified at once (0 = `concurrency`, or what it chooses when 0).
    pub verify_concurrency: u32,
    /// Continuous sampling while incremental sync runs: chunks per sample (0 = off).
    pub verify_sample_chunks: u32,
    /// How long verify waits for the incremental apply to pass a re-check point.
    pub verify_recheck_seconds: u64,
    /// Repair rate limit in rows per second (0 = none).
    pub repair_rows_per_second: u64,
    /// Differences listed one by one in a verify report; the rest are counted.
    pub verify_report_limit: u64,
    /// The switch waits until the forward link's lag is at most this (ms).
    pub switch_max_lag_ms: u64,
    /// The switch waits until the source had no row change to a selected table for this long.
    pub switch_quiet_seconds: u64,
    /// A requested switch that is not ready within this long gives up (the forward link goes on).
    pub switch_timeout_seconds: u64,
    /// Run the verify stage after the final catch-up, before the forward link is retired.
    pub switch_verify: bool,
    /// The switch's verify reads every chunk. By default (`false`) it re-checks
    /// only what the sync changed since the last clean full verify (a full one
    /// when there is none): a write made on the target outside Ferry is found
    /// only by a full verify.
    pub switch_verify_full: bool,
    /// How the full copy writes rows to the target.
    pub copy_write: CopyWrite,
    /// Write the full copy's rows to the target's binary log. `false` skips it
    /// for the copy's sessions (`SET SESSION sql_log_bin = 0`, needs BINLOG ADMIN
    /// on MariaDB, SUPER / SYSTEM_VARIABLES_ADMIN on MySQL), as myloader does by
    /// default: the copy is faster, but a replica (or CDC reader) of the target
    /// never sees the copied rows. Keep `true` if anything replicates from the target.
    pub target_binlog: bool,
}

/// How the full copy writes rows to the target.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CopyWrite {
    /// The faster for the target, as measured (1.05M rows, `scripts/bench/full-copy`):
    /// `load_data` into MySQL and MariaDB; `insert` into OceanBase, whose LOAD DATA
    /// costs its server more CPU than multi-row statements (14.6 s against 10.8 s).
    #[default]
    Auto,
    /// `LOAD DATA LOCAL INFILE` streamed from memory. A target with
    /// `local_infile` off (or OceanBase without FILE) gets `insert` instead.
    LoadData,
    /// Multi-row `REPLACE INTO ... VALUES` statements.
    Insert,
}

/// When the state machine runs the `verify` stage; `ferry verify TASK_ID` works at any time.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VerifyWhen {
    /// Once the full copy is done (no incremental sync, or before it starts).
    AfterCopy,
    /// Once incremental sync has caught up (lag near zero).
    #[default]
    AfterCatchUp,
    /// Only when asked (`ferry verify TASK_ID`).
    OnDemand,
}

/// Chunks copied at once when `options.concurrency` is 0 and the target does not
/// report fewer CPUs: the figure the full-copy benchmark measured best into MariaDB.
pub const DEFAULT_CONCURRENCY: u32 = 4;

impl TaskOptions {
    /// Copy workers for a target that reports `target_cpus` (OceanBase does;
    /// MySQL and MariaDB do not): `concurrency` when set, else
    /// [`DEFAULT_CONCURRENCY`] capped at the target's CPUs. More writers than
    /// the target has CPUs cost OceanBase CPU without adding throughput
    /// (measured in `scripts/bench/full-copy --target oceanbase`: 4 writers
    /// into a 2-CPU seekdb took 8.3-9.3 s and 12.9-15.2 CPU-s, 2 took 7.2-7.6 s
    /// and 10.0-10.7 CPU-s).
    pub fn copy_workers(&self, target_cpus: Option<u32>) -> u32 {
        match self.concurrency {
            0 => DEFAULT_CONCURRENCY
                .min(target_cpus.unwrap_or(u32::MAX))
                .max(1),
            n => n,
        }
    }
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            chunk_rows: 50_000,
            concurrency: 0,
            batch_rows: 1_000,
            max_rows_per_second: 0,
            max_bytes_per_second: 0,
            indexes_after_load: false,
            apply_workers: 4,
            slice_seconds: 60,
            slice_budget: 500,
            lease_seconds: 300,
            max_chunk_attempts: 5,
            meta_schema: "ferry_meta".to_string(),
            verify_when: VerifyWhen::AfterCatchUp,
            verify_concurrency: 0,
            verify_sample_chunks: 0,
            verify_recheck_seconds: 300,
            repair_rows_per_second: 1_000,
            verify_report_limit: 1_000,
            switch_max_lag_ms: 2_000,
            switch_quiet_seconds: 3,
            switch_timeout_seconds: 1_800,
            switch_verify: false,
            switch_verify_full: false,
            copy_write: CopyWrite::Auto,
            target_binlog: true,
        }
    }
}

impl TaskSpec {
    /// Parse and validate a task file. The error names the field and how to fix it.
    pub fn from_json(text: &str) -> Result<TaskSpec, FerryError> {
        let spec: TaskSpec = serde_json::from_str(text).map_err(|e| {
            FerryError::BadTask(format!(
                "the task file is not valid: {e}. See examples/demo-task.json and the task file \
                 schema in README.md (fields: task_id, source, target, types, objects, options)."
            ))
        })?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<(), FerryError> {
        let bad = |field: &str, why: String| {
            Err(FerryError::BadTask(format!(
                "task file field \"{field}\": {why}"
            )))
        };
        let id = &self.task_id;
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(
                "task_id",
                format!("\"{id}\" must be 1 to 64 characters of letters, digits, '-' and '_'"),
            );
        }
        if self.source.secret.trim().is_empty() {
            return bad(
                "source.secret",
                "is empty; name the secret holding the source's credentials".into(),
            );
        }
        if self.target.secret.trim().is_empty() {
            return bad(
                "target.secret",
                "is empty; name the secret holding the target's credentials".into(),
            );
        }
        if self.source.dialect == Dialect::Oceanbase {
            return bad(
                "source.dialect",
                "\"oceanbase\" is not supported as a source; use \"mysql\" or \"mariadb\"".into(),
            );
        }
        if self.types.is_empty() {
            return bad(
                "types",
                "is empty; list at least one of schema, full, incremental, verify, reverse".into(),
            );
        }
        if self.types.contains(&MigrationType::Reverse)
            && !self.types.contains(&MigrationType::Incremental)
        {
            return bad(
                "types",
                "\"reverse\" needs \"incremental\" (the reverse link starts at switchover)".into(),
            );
        }
        if self.objects.include.is_empty() {
            return bad(
                "objects.include",
                "is empty; list tables as \"db.table\", e.g. \"shop.*\"".into(),
            );
        }
        for (i, p) in self
            .objects
            .include
            .iter()
            .chain(self.objects.exclude.iter())
            .enumerate()
        {
            let field = if i < self.objects.include.len() {
                "objects.include"
            } else {
                "objects.exclude"
            };
            if Pattern::parse(p).is_none() {
                return bad(field, format!("\"{p}\" is not a \"db.table\" pattern (use * for any name, e.g. \"shop.*\")"));
            }
        }
        for (from, to) in &self.objects.rename {
            let ok = match (from.split_once('.'), to.split_once('.')) {
                (None, None) => !from.is_empty() && !to.is_empty(),
                (Some((a, b)), Some((c, d))) => ![a, b, c, d].iter().any(|s| s.is_empty()),
                _ => false,
            };
            if !ok || from.contains('*') || to.contains('*') {
                return bad(
                    "objects.rename",
                    format!("\"{from}\": \"{to}\" must map a database to a database (\"shop\": \"shop2\") or a table to a table (\"shop.a\": \"shop2.b\"), without wildcards"),
                );
            }
        }
        for key in self.objects.filters.keys() {
            if key.split_once('.').is_none() || key.contains('*') {
                return bad(
                    "objects.filters",
                    format!("key \"{key}\" must name one table as \"db.table\""),
                );
            }
        }
        for (table, cols) in &self.objects.keys {
            if table.split_once('.').is_none() || table.contains('*') {
                return bad(
                    "objects.keys",
                    format!("key \"{table}\" must name one table as \"db.table\""),
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            if cols.is_empty() || cols.iter().any(|c| c.is_empty() || !seen.insert(c)) {
                return bad(
                    "objects.keys",
                    format!(
                        "\"{table}\" must list the columns that identify a row, each once: \
                         [\"col1\", \"col2\"]"
                    ),
                );
            }
        }
        if !self.objects.filters.is_empty() && self.has(MigrationType::Reverse) {
            return bad(
                "objects.filters",
                "a filtered task moves only the rows its filters keep, and \"reverse\" is for switching the \
                 application over to the target, which would then lack every other row. Remove \
                 objects.filters, or the \"reverse\" type"
                    .into(),
            );
        }
        let o = &self.options;
        if o.chunk_rows == 0 {
            return bad(
                "options.chunk_rows",
                "must be at least 1 (50000 is a good start)".into(),
            );
        }
        if o.concurrency > 64 {
            return bad(
                "options.concurrency",
                format!(
                    "{} must be from 1 to 64 (or 0 to let Ferry choose)",
                    o.concurrency
                ),
            );
        }
        if o.batch_rows == 0 {
            return bad(
                "options.batch_rows",
                "must be at least 1 (1000 is a good start)".into(),
            );
        }
        if o.apply_workers == 0 || o.apply_workers > 64 {
            return bad(
                "options.apply_workers",
                format!("{} must be from 1 to 64", o.apply_workers),
            );
        }
        if o.slice_seconds == 0 {
            return bad("options.slice_seconds", "must be at least 1".into());
        }
        if o.slice_budget == 0 || o.slice_budget > 2_000 {
            return bad(
                "options.slice_budget",
                format!(
                    "{} must be from 1 to 2000 (each slice adds about 10 events to an execution's history, \
                     which Step Functions caps at 25,000)",
                    o.slice_budget
                ),
            );
        }
        if o.lease_seconds < 5 {
            return bad("options.lease_seconds", "must be at least 5".into());
        }
        if o.max_chunk_attempts == 0 {
            return bad("options.max_chunk_attempts", "must be at least 1".into());
        }
        if o.switch_quiet_seconds == 0 || o.switch_quiet_seconds > 600 {
            return bad(
                "options.switch_quiet_seconds",
                format!("{} must be from 1 to 600", o.switch_quiet_seconds),
            );
        }
        if o.meta_schema.is_empty()
            || !o
                .meta_schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return bad(
                "options.meta_schema",
                "must be letters, digits and '_'".into(),
            );
        }
        Ok(())
    }

    pub fn has(&self, t: MigrationType) -> bool {
        self.types.contains(&t)
    }

    /// Whether `db.table` on the source is selected.
    pub fn selects(&self, db: &str, table: &str) -> bool {
        let m = |p: &String| Pattern::parse(p).is_some_and(|p| p.matches(db, table));
        self.objects.include.iter().any(m) && !self.objects.exclude.iter().any(m)
    }

    /// The databases the include patterns can match, or `None` if a pattern has a wildcard database.
    pub fn literal_databases(&self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for p in &self.objects.include {
            let (db, _) = p.split_once('.')?;
            if db.contains(['*', '?']) {
                return None;
            }
            if !out.iter().any(|d| d == db) {
                out.push(db.to_string());
            }
        }
        Some(out)
    }

    /// Where a source table lands on the target, after renames.
    pub fn target_name(&self, db: &str, table: &str) -> (String, String) {
        renamed(&self.objects.rename, db, table)
    }

    /// The declared key columns of a source table (`objects.keys`), if any.
    pub fn declared_key(&self, db: &str, table: &str) -> Option<&[String]> {
        self.objects
            .keys
            .get(&format!("{db}.{table}"))
            .map(Vec::as_slice)
    }

    /// Row filter for a source table, if any.
    pub fn filter(&self, db: &str, table: &str) -> Option<&str> {
        self.objects
            .filters
            .get(&format!("{db}.{table}"))
            .map(String::as_str)
    }
}

/// A `db.table` pattern with `*` and `?` wildcards. Matching is exact on case,
/// as MySQL is on Linux for table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    db: String,
    table: String,
}

impl Pattern {
    pub fn parse(p: &str) -> Option<Pattern> {
        let (db, table) = p.split_once('.')?;
        if db.is_empty() || table.is_empty() || table.contains('.') {
            return None;
        }
        Some(Pattern {
            db: db.to_string(),
            table: table.to_string(),
        })
    }

    pub fn matches(&self, db: &str, table: &str) -> bool {
        glob(&self.db, db) && glob(&self.table, table)
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Where source table `db.table` lands under `renames` (`objects.rename`: a
/// `db.table -> db.table` entry wins over a `db -> db` one). The one rule, used
/// by [`TaskSpec::target_name`] and by the DDL translation's references.
pub fn renamed(renames: &BTreeMap<String, String>, db: &str, table: &str) -> (String, String) {
    if let Some((d, t)) = renames
        .get(&format!("{db}.{table}"))
        .and_then(|to| to.split_once('.'))
    {
        return (d.to_string(), t.to_string());
    }
    (
        renames.get(db).cloned().unwrap_or_else(|| db.to_string()),
        table.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> Result<TaskSpec, FerryError> {
        TaskSpec::from_json(&format!(
            r#"{{"task_id":"t1","source":{{"secret":"s"}},"target":{{"secret":"t","dialect":"oceanbase"}},
               "objects":{{"include":["shop.*","crm.cust?"],"exclude":["shop.tmp_*"]}}{extra}}}"#
        ))
    }

    #[test]
    fn selection_and_renames() {
        let mut s = spec("").unwrap();
        assert!(s.selects("shop", "orders"));
        assert!(!s.selects("shop", "tmp_x"));
        assert!(s.selects("crm", "custs"));
        assert!(!s.selects("crm", "customers"));
        s.objects.rename.insert("shop".into(), "shop2".into());
        s.objects.rename.insert("shop.a".into(), "x.b".into());
        assert_eq!(
            s.target_name("shop", "orders"),
            ("shop2".into(), "orders".into())
        );
        assert_eq!(s.target_name("shop", "a"), ("x".into(), "b".into()));
        assert_eq!(
            s.literal_databases(),
            Some(vec!["shop".to_string(), "crm".to_string()])
        );
    }

    #[test]
    fn row_filters_go_with_incremental_sync_but_not_with_reverse() {
        let filters = r#","objects":{"include":["shop.*"],"filters":{"shop.orders":"id > 5"}}"#;
        let with = |types: &str| {
            TaskSpec::from_json(&format!(
                r#"{{"task_id":"t1","source":{{"secret":"s"}},"target":{{"secret":"t"}},"types":{types}{filters}}}"#
            ))
        };
        for ok in [
            r#"["schema","full"]"#,
            r#"["schema","full","incremental","verify"]"#,
        ] {
            let spec = with(ok).unwrap();
            assert_eq!(spec.filter("shop", "orders"), Some("id > 5"));
        }
        let e = with(r#"["schema","full","incremental","reverse"]"#).unwrap_err();
        assert_eq!(e.name(), "Ferry.BadTask");
        assert!(e.message().contains("objects.filters"), "{e}");
        assert!(e.message().contains("\"reverse\""), "{e}");
    }

    #[test]
    fn declared_keys_name_a_table_and_distinct_columns() {
        let with = |keys: &str| {
            TaskSpec::from_json(&format!(
                r#"{{"task_id":"t1","source":{{"secret":"s"}},"target":{{"secret":"t"}},"objects":{{"include":["shop.*"],"keys":{keys}}}}}"#
            ))
        };
        let spec = with(r#"{"shop.log":["at","seq"]}"#).unwrap();
        assert_eq!(
            spec.declared_key("shop", "log"),
            Some(&["at".to_string(), "seq".to_string()][..])
        );
        assert_eq!(spec.declared_key("shop", "other"), None);
        for bad in [
            r#"{"log":["at"]}"#,
            r#"{"shop.*":["at"]}"#,
            r#"{"shop.log":[]}"#,
            r#"{"shop.log":["at","at"]}"#,
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.message().contains("objects.keys"), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_field_is_named() {
        let e = spec(r#","optionz":{}"#).unwrap_err();
        assert_eq!(e.name(), "Ferry.BadTask");
        assert!(e.message().contains("optionz"), "{e}");
        let e = spec(r#","options":{"chunk_rowz":5}"#).unwrap_err();
        assert!(e.message().contains("chunk_rowz"), "{e}");
    }

    #[test]
    fn copy_workers_follow_the_option_or_the_target_cpus() {
        let mut o = TaskOptions::default();
        assert_eq!(o.concurrency, 0);
        assert_eq!(o.copy_workers(None), DEFAULT_CONCURRENCY);
        assert_eq!(o.copy_workers(Some(2)), 2);
        assert_eq!(o.copy_workers(Some(0)), 1);
        assert_eq!(o.copy_workers(Some(64)), DEFAULT_CONCURRENCY);
        o.concurrency = 8;
        assert_eq!(
            o.copy_workers(Some(2)),
            8,
            "a value the operator set is kept"
        );
        assert!(spec(r#","options":{"concurrency":0}"#).is_ok());
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = spec(r#","options":{"concurrency":65}"#).unwrap_err();
        assert!(e.message().contains("options.concurrency"), "{e}");
        let e = TaskSpec::from_json(
            r#"{"task_id":"bad id","source":{"secret":"s"},"target":{"secret":"t"},"objects":{"include":["a.b"]}}"#,
        )
        .unwrap_err();
        assert!(e.message().contains("task_id"), "{e}");
        let e = TaskSpec::from_json(
            r#"{"task_id":"x","source":{"secret":"s"},"target":{"secret":"t"},"objects":{"include":["nodot"]}}"#,
        )
        .unwrap_err();
        assert!(e.message().contains("objects.include"), "{e}");
    }

    #[test]
    fn glob_cases() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(!glob("a*c", "abbbd"));
        assert!(glob("a?c", "abc"));
        assert!(glob("*_log", "x_log"));
    }
}

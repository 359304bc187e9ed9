//! Ferry's adapters for MySQL-protocol servers (MySQL, MariaDB, OceanBase in
//! MySQL mode): connections and error mapping, prechecks, schema reading and
//! translation, chunk planning and copy, binlog reading and apply, verify.

pub mod apply;
pub mod binlog;
pub mod column_kind;
pub mod conn;

/// Whether this build carries the test hooks (failpoints, retry-time scaling):
/// the `failpoints` feature, which only test builds turn on.
pub const TEST_HOOKS: bool = cfg!(feature = "failpoints");
pub mod copy;
pub mod dialect;
pub mod dirty;
pub mod planner;
pub mod precheck;
pub mod schema;
pub(crate) mod shapes;
pub mod value;
pub mod verify;

/// A map on a hot path of the sync (a lookup per change): foldhash, randomly
/// seeded per map, instead of SipHash.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set of [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Whether text in character set `cs` is UTF-8 already (ASCII is): read and
/// written as it is, by verify's canonical text and the binlog decoder alike.
pub(crate) fn is_utf8_charset(cs: &str) -> bool {
    matches!(cs, "utf8mb4" | "utf8mb3" | "utf8" | "ascii")
}

pub use conn::{classify, qualified, quote_ident, quote_str, Endpoint};

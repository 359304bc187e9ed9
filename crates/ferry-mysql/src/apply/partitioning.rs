//! Routing changes: where a table lands, what a change becomes, and which worker applies it.

use super::*;

/// Where a source table lands on the target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetName {
    pub db: String,
    pub table: String,
    /// The task's row filter for the source table (a `WHERE` condition over its
    /// columns): a changed row is kept on the target only while its new image
    /// matches ([`filter_statements`]).
    pub filter: Option<String>,
}

/// Maps a source table to its target table, or `None` when it is not replicated.
pub type TableMapper = Arc<dyn Fn(&str, &str) -> Option<TargetName> + Send + Sync>;

/// How a change is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Before the end of the full copy: upserts and deletes by key.
    Idempotent,
    /// After it: inserts must not find the row.
    Strict,
}

/// One change as a worker applies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prim {
    /// Make the row exist with this image; `fresh`: the row did not exist (strict mode insert).
    Put { row: Vec<Value>, fresh: bool },
    /// Remove the row with this key (values in key order).
    Delete { key: Vec<Value> },
}

impl Prim {
    /// The change's kind, as a worker groups its statements and counts its
    /// changes: 0 a delete, 1 an insert of a row that did not exist, 2 an upsert.
    pub(super) fn kind(&self) -> usize {
        match self {
            Prim::Delete { .. } => 0,
            Prim::Put { fresh: true, .. } => 1,
            Prim::Put { fresh: false, .. } => 2,
        }
    }
}

/// A change for one target table.
#[derive(Debug, Clone)]
pub struct Routed {
    pub table: Arc<TableInfo>,
    pub target: Arc<TargetName>,
    pub prim: Prim,
}

pub(super) fn key_values(t: &TableInfo, row: &[Value]) -> Vec<Value> {
    t.key_iter(row).cloned().collect()
}

/// Split one row change into the primitive changes a worker applies: one, or
/// a delete and a put for an update that moves its key. The keys are compared
/// in place, so an update that keeps its key copies no key values.
pub fn prims(t: &TableInfo, op: RowOp, mode: ApplyMode) -> impl Iterator<Item = Prim> {
    let (delete, last) = match op {
        RowOp::Insert(row) => (
            None,
            Prim::Put {
                row,
                fresh: mode == ApplyMode::Strict,
            },
        ),
        RowOp::Update(before, after) => {
            let moved = !t.key_iter(&before).eq(t.key_iter(&after));
            let delete = moved.then(|| Prim::Delete {
                key: key_values(t, &before),
            });
            (
                delete,
                Prim::Put {
                    row: after,
                    fresh: false,
                },
            )
        }
        RowOp::Delete(before) => (
            None,
            Prim::Delete {
                key: key_values(t, &before),
            },
        ),
    };
    delete.into_iter().chain(Some(last))
}

/// Feed the canonical bytes of key values to `sink`, piece by piece: equal
/// keys, equal bytes. The one encoding behind [`key_bytes`] and [`fnv_key`].
fn write_key<'a>(key: impl IntoIterator<Item = &'a Value>, sink: &mut impl FnMut(&[u8])) {
    for v in key {
        match v {
            Value::NULL => sink(&[0]),
            Value::Int(i) if *i >= 0 => {
                sink(&[1]);
                sink(&(*i as u64).to_be_bytes());
            }
            Value::Int(i) => {
                sink(&[2]);
                sink(&i.to_be_bytes());
            }
            Value::UInt(u) => {
                sink(&[1]);
                sink(&u.to_be_bytes());
            }
            Value::Bytes(b) => {
                sink(&[3]);
                sink(&(b.len() as u32).to_be_bytes());
                sink(b);
            }
            other => {
                sink(&[4]);
                sink(format!("{other:?}").as_bytes());
            }
        }
    }
}

/// Canonical bytes of key values: equal keys, equal bytes.
pub(super) fn key_bytes<'a>(key: impl IntoIterator<Item = &'a Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    write_key(key, &mut |b| out.extend_from_slice(b));
    out
}

pub(super) fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// [`fnv`] over [`key_bytes`] of `key`, without building the bytes (it runs
/// for every row the sync routes).
pub(super) fn fnv_key<'a>(key: impl IntoIterator<Item = &'a Value>, h: u64) -> u64 {
    let mut h = h;
    write_key(key, &mut |b| h = fnv(b, h));
    h
}

/// The worker a change goes to: stable across runs for the same worker count
/// (each worker's checkpoint says which changes it applied).
pub fn partition(t: &TableInfo, target: &TargetName, prim: &Prim, workers: u32) -> u32 {
    let h = fnv(target.db.as_bytes(), 0xcbf2_9ce4_8422_2325);
    let mut h = fnv(target.table.as_bytes(), fnv(b".", h));
    if t.parallel_safe {
        h = match prim {
            Prim::Put { row, .. } => fnv_key(t.key_iter(row), h),
            Prim::Delete { key } => fnv_key(key, h),
        };
    }
    (h % u64::from(workers.max(1))) as u32
}

//! Dirty marks in the task store: which chunks the forward link changed since
//! they were last verified clean, so `ferry verify --changed` re-checks only
//! those (see [`ferry_mysql::dirty`] for how the apply writes them).
//!
//! Records: `dirty#<chunk id>` ([`DirtyMark`]) and `linkclosed#forward`
//! ([`ClosedEpoch`], the highest epoch of an apply call that has returned).
//!
//! Invariant (no lost mark): the apply writes a chunk's mark, with its call's
//! epoch, before the first commit of a change to it in that call, and writes it
//! only once per call. A verify may therefore clear a mark (after comparing its
//! chunk clean) only if the call that wrote it could not commit anything after
//! the comparison began: its epoch is at most the closed epoch the verify read
//! before comparing (a call whose `run_link` returned, or one fenced by a later
//! call that returned). Marks of a call still running stay: they are checked
//! again next time. A mark is cleared by a tombstone (`dirty: false`), so the
//! clear and a concurrent re-mark are both conditional writes on one record.
//!
//! Key lists (a refinement): a mark also records the epochs of the calls that
//! wrote it and have not yet listed the keys they changed (`unlisted`). A call
//! that ends without error lists its keys ([`list_keys`]); once no epoch is
//! unlisted and the lists fit, the mark is *exact*: a `--changed` verify may
//! compare only those rows, and clears the mark only if it compared every key
//! the mark holds when it clears. A call killed before its end never lists,
//! so its marks keep meaning the whole chunk.

use std::future::Future;
use std::pin::Pin;

use ferry_core::model::{Direction, KeyValue};
use ferry_core::store::{now_ms, ItemStore, Repo};
use ferry_core::FerryError;
use ferry_mysql::dirty::{ChunkKeys, ChunkMark, MarkSink, MAX_KEYS_PER_CHUNK};
use serde::{Deserialize, Serialize};

pub const MARK_PREFIX: &str = "dirty#";
const CLOSED_SK: &str = "linkclosed#forward";

/// One chunk changed since it was last verified clean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirtyMark {
    pub chunk_id: String,
    /// `db.table` on the source.
    pub table: String,
    /// Only the open last chunk's keys from here on are dirty; `None`: the whole chunk.
    #[serde(default)]
    pub from: Option<Vec<KeyValue>>,
    /// The link epoch of the apply call that wrote it last (0: a verify found differences).
    pub epoch: u64,
    pub marked_ms: u64,
    /// False once a verify cleared it (a tombstone).
    pub dirty: bool,
    /// Epochs of apply calls that marked the chunk and have not listed their keys.
    #[serde(default)]
    pub unlisted: Vec<u64>,
    /// The keys the listed calls changed, in key order; `None`: not a list
    /// (too many, a whole-chunk change, a difference a verify found, or a mark
    /// written before keys were listed). Stored packed ([`packed_keys`]).
    #[serde(default, with = "packed_keys")]
    pub keys: Option<Vec<Vec<KeyValue>>>,
}

impl DirtyMark {
    /// The rows to re-check are exactly [`DirtyMark::keys`].
    pub fn exact(&self) -> Option<&[Vec<KeyValue>]> {
        match (&self.keys, self.unlisted.is_empty()) {
            (Some(k), true) => Some(k),
            _ => None,
        }
    }
}

/// How a mark's key list is stored: a list of single integer keys (the
/// common case) as one string, `"i:1,5,-3"` (`"u:"` for unsigned), any other
/// list as its [`KeyValue`] array (`[[{"int":1}],..]`, as marks were written
/// before; both are read). A mark holds up to 4,096 keys and every verify
/// reads every mark: parsed as one JSON object per key, they were a quarter
/// of a `--changed` verify's CPU.
mod packed_keys {
    use std::fmt::Write;

    use ferry_core::model::KeyValue;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Keys = Option<Vec<Vec<KeyValue>>>;

    pub fn pack(keys: &[Vec<KeyValue>]) -> Option<String> {
        let tag = match keys.first().map(Vec::as_slice) {
            Some([KeyValue::Int(_)]) => "i:",
            Some([KeyValue::Uint(_)]) => "u:",
            _ => return None,
        };
        let mut out = String::with_capacity(keys.len() * 8 + 2);
        out.push_str(tag);
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let written = match (tag, k.as_slice()) {
                ("i:", [KeyValue::Int(n)]) => write!(out, "{n}"),
                ("u:", [KeyValue::Uint(n)]) => write!(out, "{n}"),
                _ => return None,
            };
            written.ok()?;
        }
        Some(out)
    }

    pub fn unpack(text: &str) -> Option<Vec<Vec<KeyValue>>> {
        let (tag, list) = text.split_at_checked(2)?;
        let one = |v: &str| -> Option<KeyValue> {
            match tag {
                "i:" => v.parse().ok().map(KeyValue::Int),
                "u:" => v.parse().ok().map(KeyValue::Uint),
                _ => None,
            }
        };
        list.split(',').map(|v| one(v).map(|k| vec![k])).collect()
    }

    pub fn serialize<S: Serializer>(keys: &Keys, s: S) -> Result<S::Ok, S::Error> {
        match keys.as_deref().and_then(pack) {
            Some(text) => s.serialize_str(&text),
            None => keys.serialize(s),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Packed(String),
        Listed(Keys),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
        match Stored::deserialize(d)? {
            Stored::Packed(text) => unpack(&text)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("not a packed key list: {text:.40}"))),
            Stored::Listed(keys) => Ok(keys),
        }
    }
}

/// What a verify compared clean in a chunk.
#[derive(Debug, Clone, Copy)]
pub enum Verified<'a> {
    /// Its rows from this key on (`None`: all of them).
    Range(Option<&'a [KeyValue]>),
    /// The rows with these keys.
    Keys(&'a [Vec<KeyValue>]),
}

/// The highest epoch of a forward apply call that has returned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClosedEpoch {
    pub epoch: u64,
}

fn mark_sk(chunk_id: &str) -> String {
    format!("{MARK_PREFIX}{chunk_id}")
}

fn int(k: &KeyValue) -> Option<i128> {
    match k {
        KeyValue::Int(i) => Some(i128::from(*i)),
        KeyValue::Uint(u) => Some(i128::from(*u)),
        _ => None,
    }
}

/// `a <= b` for integer keys; `None` when they cannot be compared exactly.
fn key_le(a: &[KeyValue], b: &[KeyValue]) -> Option<bool> {
    if a.len() != b.len() {
        return None;
    }
    let a: Vec<i128> = a.iter().map(int).collect::<Option<_>>()?;
    let b: Vec<i128> = b.iter().map(int).collect::<Option<_>>()?;
    Some(a <= b)
}

/// The union of two dirty ranges of one chunk (`None` = the whole chunk).
fn union(a: Option<Vec<KeyValue>>, b: Option<Vec<KeyValue>>) -> Option<Vec<KeyValue>> {
    match (a, b) {
        (Some(a), Some(b)) => match key_le(&a, &b)? {
            true => Some(a),
            false => Some(b),
        },
        _ => None,
    }
}

/// Whether a verify of `verified` (from that key on; `None` = whole chunk) covers `dirty`.
fn covers(verified: Option<&[KeyValue]>, dirty: Option<&[KeyValue]>) -> bool {
    match (verified, dirty) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(v), Some(d)) => key_le(v, d) == Some(true),
    }
}

/// Mark (or widen) a chunk's mark: by an apply call of `epoch` (its keys
/// listed later), or with `epoch` 0 by a verify that found differences (the
/// whole chunk, no list).
async fn put_mark<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    chunk_id: &str,
    table: &str,
    from: Option<Vec<KeyValue>>,
    epoch: u64,
) -> Result<(), FerryError> {
    let by_apply = epoch > 0;
    repo.swap_record(task_id, &mark_sk(chunk_id), |cur: Option<DirtyMark>| {
        let new = match cur {
            Some(c) if c.dirty => {
                let mut m = DirtyMark {
                    from: union(c.from.clone(), from.clone()),
                    epoch: c.epoch.max(epoch),
                    ..c.clone()
                };
                if by_apply && !m.unlisted.contains(&epoch) {
                    m.unlisted.push(epoch);
                }
                if !by_apply {
                    m.keys = None;
                }
                if m == c {
                    return None;
                }
                DirtyMark {
                    marked_ms: now_ms(),
                    ..m
                }
            }
            _ => DirtyMark {
                chunk_id: chunk_id.to_string(),
                table: table.to_string(),
                from: from.clone(),
                epoch,
                marked_ms: now_ms(),
                dirty: true,
                unlisted: if by_apply { vec![epoch] } else { Vec::new() },
                keys: by_apply.then(Vec::new),
            },
        };
        Some(new)
    })
    .await
    .map(|_| ())
}

/// An apply call of `epoch` ended without error: store the keys it changed
/// with the marks it wrote (see the module comment).
pub async fn list_keys<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    epoch: u64,
    listed: &[ChunkKeys],
) -> Result<(), FerryError> {
    for l in listed {
        repo.swap_record(task_id, &mark_sk(&l.chunk_id), |cur: Option<DirtyMark>| {
            let mut m = cur.filter(|c| c.dirty && c.unlisted.contains(&epoch))?;
            m.unlisted.retain(|e| *e != epoch);
            m.keys = match (m.keys.take(), &l.keys) {
                (Some(mut have), Some(add)) => {
                    have.extend(add.iter().cloned());
                    have.sort();
                    have.dedup();
                    (have.len() <= MAX_KEYS_PER_CHUNK).then_some(have)
                }
                _ => None,
            };
            Some(m)
        })
        .await?;
    }
    Ok(())
}

/// The apply's sink: marks of one call (one link epoch) into the task store.
pub struct StoreMarks<S> {
    pub repo: Repo<S>,
    pub task_id: String,
    pub epoch: u64,
}

impl<S: ItemStore> MarkSink for StoreMarks<S> {
    fn write<'a>(
        &'a self,
        marks: Vec<ChunkMark>,
    ) -> Pin<Box<dyn Future<Output = Result<(), FerryError>> + Send + 'a>> {
        Box::pin(async move {
            for m in marks {
                put_mark(
                    &self.repo,
                    &self.task_id,
                    &m.chunk_id,
                    &m.table,
                    m.from,
                    self.epoch,
                )
                .await?;
            }
            Ok(())
        })
    }
}

/// An apply call of `epoch` returned: it commits nothing more.
pub async fn close_epoch<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    epoch: u64,
) -> Result<(), FerryError> {
    repo.swap_record(task_id, CLOSED_SK, |cur: Option<ClosedEpoch>| {
        (cur.as_ref().map(|c| c.epoch).unwrap_or(0) < epoch).then_some(ClosedEpoch { epoch })
    })
    .await
    .map(|_| ())
}

/// Marks written by calls up to this epoch may be cleared now: the highest
/// closed epoch, or every epoch once the forward link is retired or absent.
pub async fn clearable_epoch<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
) -> Result<u64, FerryError> {
    let ck = repo.checkpoint(task_id, Direction::Forward).await?;
    if ck.as_ref().is_none_or(|c| c.is_retired()) {
        return Ok(u64::MAX);
    }
    Ok(repo
        .get_record::<ClosedEpoch>(task_id, CLOSED_SK)
        .await?
        .map(|c| c.epoch)
        .unwrap_or(0))
}

/// One chunk's mark, while it is dirty.
pub async fn mark<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    chunk_id: &str,
) -> Result<Option<DirtyMark>, FerryError> {
    Ok(repo
        .get_record::<DirtyMark>(task_id, &mark_sk(chunk_id))
        .await?
        .filter(|m| m.dirty))
}

/// The dirty marks of a task, in chunk order.
pub async fn marks<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
) -> Result<Vec<DirtyMark>, FerryError> {
    let recs: Vec<(String, DirtyMark)> = repo.records(task_id, MARK_PREFIX).await?;
    let mut v: Vec<DirtyMark> = recs
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m.dirty)
        .collect();
    v.sort_by(|a, b| a.chunk_id.cmp(&b.chunk_id));
    Ok(v)
}

/// A verify found differences (or rows still changing) in a chunk: keep it
/// dirty until a verify finds it clean.
pub async fn mark_unclean<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    chunk_id: &str,
    table: &str,
) -> Result<(), FerryError> {
    put_mark(repo, task_id, chunk_id, table, None, 0).await
}

/// Whether comparing `verified` clean covers everything the mark holds now.
fn covers_mark(verified: Verified<'_>, mark: &DirtyMark) -> bool {
    match verified {
        Verified::Range(from) => covers(from, mark.from.as_deref()),
        Verified::Keys(keys) => mark
            .exact()
            .is_some_and(|want| want.iter().all(|k| keys.binary_search(k).is_ok())),
    }
}

/// A verify compared `verified` of a chunk clean: clear its mark if the
/// change that set it is surely behind the comparison.
pub async fn clear_if_covered<S: ItemStore>(
    repo: &Repo<S>,
    task_id: &str,
    chunk_id: &str,
    verified: Verified<'_>,
    clearable: u64,
) -> Result<bool, FerryError> {
    let cleared = repo
        .swap_record(task_id, &mark_sk(chunk_id), |cur: Option<DirtyMark>| {
            cur.filter(|c| c.dirty && c.epoch <= clearable && covers_mark(verified, c))
                .map(|c| DirtyMark {
                    dirty: false,
                    marked_ms: now_ms(),
                    // A tombstone keeps no key list: the next mark starts afresh
                    // (put_mark), and every verify reads every mark.
                    unlisted: Vec::new(),
                    keys: None,
                    ..c
                })
        })
        .await?;
    Ok(cleared.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_pack_into_one_string_and_read_back_in_either_form() {
        let mark = |keys: Option<Vec<Vec<KeyValue>>>| DirtyMark {
            chunk_id: "0000-000001".into(),
            table: "db.t".into(),
            from: None,
            epoch: 3,
            marked_ms: 1,
            dirty: true,
            unlisted: Vec::new(),
            keys,
        };
        let ints = mark(Some(vec![
            vec![KeyValue::Int(-3)],
            vec![KeyValue::Int(5)],
            vec![KeyValue::Int(i64::MAX)],
        ]));
        let json = serde_json::to_value(&ints).unwrap();
        assert_eq!(
            json["keys"],
            serde_json::json!("i:-3,5,9223372036854775807")
        );
        assert_eq!(serde_json::from_value::<DirtyMark>(json).unwrap(), ints);
        let uints = mark(Some(vec![vec![KeyValue::Uint(u64::MAX)]]));
        let json = serde_json::to_value(&uints).unwrap();
        assert_eq!(json["keys"], serde_json::json!("u:18446744073709551615"));
        assert_eq!(serde_json::from_value::<DirtyMark>(json).unwrap(), uints);
        // Anything else keeps the array form; an empty list, none and the
        // array form written before packing read back as they were.
        for keys in [
            Some(vec![vec![KeyValue::Int(1)], vec![KeyValue::Uint(2)]]),
            Some(vec![vec![KeyValue::Int(1), KeyValue::Int(2)]]),
            Some(vec![vec![KeyValue::Text("a,b".into())]]),
            Some(Vec::new()),
            None,
        ] {
            let m = mark(keys);
            let json = serde_json::to_value(&m).unwrap();
            assert!(!json["keys"].is_string(), "{json}");
            assert_eq!(serde_json::from_value::<DirtyMark>(json).unwrap(), m);
        }
        let old = serde_json::json!({"chunk_id": "c", "table": "db.t", "epoch": 1, "marked_ms": 1,
            "dirty": true, "keys": [[{"int": 7}], [{"int": 9}]]});
        let m: DirtyMark = serde_json::from_value(old).unwrap();
        assert_eq!(
            m.keys,
            Some(vec![vec![KeyValue::Int(7)], vec![KeyValue::Int(9)]])
        );
        let missing = serde_json::json!({"chunk_id": "c", "table": "db.t", "epoch": 1,
            "marked_ms": 1, "dirty": true});
        assert_eq!(
            serde_json::from_value::<DirtyMark>(missing).unwrap().keys,
            None
        );
        let bad = serde_json::json!({"chunk_id": "c", "table": "db.t", "epoch": 1,
            "marked_ms": 1, "dirty": true, "keys": "i:1,x"});
        assert!(serde_json::from_value::<DirtyMark>(bad).is_err());
    }

    #[test]
    fn tail_ranges_widen_and_a_verify_covers_only_what_it_read() {
        let k = |i: i64| Some(vec![KeyValue::Int(i)]);
        assert_eq!(union(k(5), k(3)), k(3));
        assert_eq!(union(k(5), None), None);
        assert_eq!(
            union(k(5), Some(vec![KeyValue::Uint(7)])),
            k(5),
            "numeric across signedness"
        );
        assert_eq!(union(k(5), Some(vec![KeyValue::Text("a".into())])), None);
        assert!(covers(None, k(1).as_deref()));
        assert!(covers(k(1).as_deref(), k(1).as_deref()));
        assert!(!covers(k(2).as_deref(), k(1).as_deref()));
        assert!(!covers(k(2).as_deref(), None));
    }
}

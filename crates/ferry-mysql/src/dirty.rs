//! Which chunks a link's changes touched: the dirty marks a `--changed`
//! re-verify reads instead of every row.
//!
//! # Invariant
//!
//! A change is committed on the target only after the mark of the chunk it
//! falls in is durable in the task store: [`ChangeTracker::touch`] notes the
//! chunk in memory while the change is routed, and the pipeline calls
//! [`ChangeTracker::flush`] (which awaits the store) before it sends the
//! commit of the group holding it. So a stop, a kill or a crash anywhere
//! leaves a mark for every committed change (a mark for a change that then
//! rolled back is harmless: it only costs a re-check).
//!
//! Each mark carries the link epoch of the apply call (slice) that wrote it,
//! and a call writes a chunk's mark once (memory holds what it wrote), so the
//! hot path costs a hash lookup and a binary search per row and a store write
//! per chunk per call. A verify may clear a mark only when the call that wrote
//! it can commit nothing any more (see `ferry_stages::verify`): a call that
//! wrote a mark early and touches the chunk again later writes nothing more.
//!
//! Mapping a key to a chunk compares it with the chunk boundaries the plan
//! recorded. That is exact for integer keys (one column or several), which
//! Rust compares as the server does. For a key with a text, binary, decimal or
//! temporal column Rust cannot promise the server's order (collations, PAD
//! SPACE, text forms), so a change to such a table marks every chunk of it:
//! more to re-check, never a missed change. Hand-written because no library
//! maps binlog row keys to a plan's chunks.
//!
//! The last chunk of a table is open (`upper = None`); rows inserted past the
//! plan's last boundary land there. Its mark carries `from`, the lowest key
//! touched, so the re-verify reads `[from, ∞)` (the new key range) rather
//! than the whole chunk.
//!
//! Changes spread over a table touch every chunk, so chunk marks alone make a
//! re-verify read everything. The tracker therefore also keeps, per chunk, the
//! keys the call changed (up to [`MAX_KEYS_PER_CHUNK`]); when the call ends
//! without error (it commits nothing more) they are handed over in
//! [`ChangeTracker::listed`] and the stage stores them with the mark, so a
//! re-verify compares only those rows. Listing is a refinement, never the
//! guarantee: a call killed before its end lists nothing and its marks keep
//! meaning "the whole chunk".

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ferry_core::model::{ChunkRecord, KeyValue};
use ferry_core::FerryError;
use mysql_async::Value;

use crate::{FastMap, FastSet};

/// One chunk to mark dirty.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkMark {
    pub chunk_id: String,
    /// `db.table` on the source.
    pub table: String,
    /// The lowest key touched when only the open last chunk's tail is dirty;
    /// `None`: the whole chunk.
    pub from: Option<Vec<KeyValue>>,
}

/// The keys one apply call changed in a chunk it marked.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkKeys {
    pub chunk_id: String,
    /// `db.table` on the source.
    pub table: String,
    /// Every key changed, each once, in key order; `None`: too many to list,
    /// or the whole chunk was touched (a DDL, a key that cannot be placed).
    pub keys: Option<Vec<Vec<KeyValue>>>,
}

/// More keys than this changed in one chunk by one call: re-read the chunk.
pub const MAX_KEYS_PER_CHUNK: usize = 4_096;

/// More keys than this noted by one call: it lists none (memory stays bounded;
/// its marks mean whole chunks).
pub const MAX_KEYS_PER_CALL: usize = 262_144;

/// Where marks go (the task store). Each call must be durable when it returns.
pub trait MarkSink: Send + Sync {
    fn write<'a>(
        &'a self,
        marks: Vec<ChunkMark>,
    ) -> Pin<Box<dyn Future<Output = Result<(), FerryError>> + Send + 'a>>;
}

/// A key as integers, for exact comparison with the boundaries.
type IntKey = Vec<i128>;

fn int_of_value(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        _ => None,
    }
}

fn int_of_key(k: &KeyValue) -> Option<i128> {
    match k {
        KeyValue::Int(i) => Some(i128::from(*i)),
        KeyValue::Uint(u) => Some(i128::from(*u)),
        _ => None,
    }
}

/// An integer key column back as a [`KeyValue`] (signed when it fits).
fn key_of_int(i: i128) -> KeyValue {
    match i64::try_from(i) {
        Ok(i) => KeyValue::Int(i),
        Err(_) => u64::try_from(i)
            .map(KeyValue::Uint)
            .unwrap_or(KeyValue::Int(0)),
    }
}

fn key_value(v: &Value) -> Option<KeyValue> {
    match v {
        Value::Int(i) => Some(KeyValue::Int(*i)),
        Value::UInt(u) => Some(KeyValue::Uint(*u)),
        _ => None,
    }
}

/// One table's chunks, in key order.
#[derive(Debug)]
struct TableChunks {
    name: String,
    ids: Vec<String>,
    /// `lowers[i]` is chunk `i + 1`'s lower bound (chunk 0 starts unbounded);
    /// `None` when a boundary is not all integers: then every change marks every chunk.
    lowers: Option<Vec<IntKey>>,
    /// The key's arity (0 when the table is one chunk).
    arity: usize,
}

impl TableChunks {
    /// The chunk index of a key, or `None` when it cannot be placed exactly.
    fn locate<'v>(&self, mut key: impl Iterator<Item = &'v Value>) -> Option<usize> {
        let lowers = self.lowers.as_ref()?;
        if lowers.is_empty() {
            return Some(0);
        }
        if self.arity == 1 {
            // The common case, without allocating.
            let (Some(one), None) = (key.next(), key.next()) else {
                return None;
            };
            let k = int_of_value(one)?;
            return Some(lowers.partition_point(|lo| lo[0] <= k));
        }
        let k: IntKey = key.map(int_of_value).collect::<Option<_>>()?;
        if k.len() != self.arity {
            return None;
        }
        Some(lowers.partition_point(|lo| *lo <= k))
    }
}

/// The plan's chunks by source table, for placing keys.
#[derive(Debug, Default)]
pub struct ChunkMap {
    tables: Vec<TableChunks>,
    /// db -> table -> index in `tables` (looked up by `&str`, no allocation per row).
    index: FastMap<String, FastMap<String, usize>>,
}

impl ChunkMap {
    /// From the plan's chunk records (any order).
    pub fn new(chunks: &[ChunkRecord]) -> ChunkMap {
        let mut by: HashMap<(String, String), Vec<&ChunkRecord>> = HashMap::new();
        for c in chunks {
            by.entry((c.source_db.clone(), c.source_table.clone()))
                .or_default()
                .push(c);
        }
        let mut index: FastMap<String, FastMap<String, usize>> = FastMap::default();
        let tables = by
            .into_iter()
            .enumerate()
            .map(|(n, (k, mut cs))| {
                index.entry(k.0.clone()).or_default().insert(k.1.clone(), n);
                cs.sort_by(|a, b| a.chunk_id.cmp(&b.chunk_id));
                let bounds: Vec<&Vec<KeyValue>> =
                    cs.iter().skip(1).filter_map(|c| c.lower.as_ref()).collect();
                let arity = bounds.first().map(|b| b.len()).unwrap_or(0);
                let ints: Option<Vec<IntKey>> = (bounds.len() + 1 == cs.len())
                    .then(|| {
                        bounds
                            .iter()
                            .map(|b| {
                                (b.len() == arity)
                                    .then(|| b.iter().map(int_of_key).collect::<Option<IntKey>>())
                                    .flatten()
                            })
                            .collect::<Option<Vec<IntKey>>>()
                    })
                    .flatten();
                let t = TableChunks {
                    name: format!("{}.{}", k.0, k.1),
                    ids: cs.iter().map(|c| c.chunk_id.clone()).collect(),
                    lowers: ints,
                    arity,
                };
                t
            })
            .collect();
        ChunkMap { tables, index }
    }

    fn find(&self, db: &str, table: &str) -> Option<usize> {
        self.index.get(db)?.get(table).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// What this call wrote for a chunk: the whole chunk, or its tail from a key.
#[derive(Debug, Clone, PartialEq)]
enum Written {
    Whole,
    From(IntKey),
}

/// Notes the chunks a link's changes touch and writes their marks before the
/// changes commit. One per apply call.
pub struct ChangeTracker {
    map: Arc<ChunkMap>,
    sink: Arc<dyn MarkSink>,
    /// Per table (as in the map), chunk index -> what is durable (or pending) in this call.
    written: Vec<FastMap<usize, Written>>,
    /// Per table, chunk index -> the keys changed in it (`None`: too many, or the whole chunk).
    keys: Vec<FastMap<usize, Option<FastSet<IntKey>>>>,
    /// Keys noted in all; past [`MAX_KEYS_PER_CALL`] the call lists none.
    noted: usize,
    /// Reused to build each key for [`ChangeTracker::note_key`].
    scratch: IntKey,
    pending: Vec<ChunkMark>,
}

impl std::fmt::Debug for ChangeTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeTracker")
            .field("tables", &self.map.tables.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl ChangeTracker {
    pub fn new(map: Arc<ChunkMap>, sink: Arc<dyn MarkSink>) -> ChangeTracker {
        ChangeTracker {
            written: map.tables.iter().map(|_| FastMap::default()).collect(),
            keys: map.tables.iter().map(|_| FastMap::default()).collect(),
            noted: 0,
            scratch: Vec::new(),
            map,
            sink,
            pending: Vec::new(),
        }
    }

    /// Note a change to the row with this key of source table `db.table`.
    /// The key's values are read in place: a row's key columns, or a delete's key.
    pub fn touch<'v, K>(&mut self, db: &str, table: &str, key: K)
    where
        K: IntoIterator<Item = &'v Value>,
        K::IntoIter: Clone,
    {
        // The common case (a chunk already written) allocates nothing.
        let key = key.into_iter();
        let Some(n) = self.map.find(db, table) else {
            return;
        };
        let t = &self.map.tables[n];
        let Some(i) = t.locate(key.clone()) else {
            self.touch_all(db, table);
            return;
        };
        if self.noted <= MAX_KEYS_PER_CALL {
            self.noted += Self::note_key(&mut self.keys[n], &mut self.scratch, i, key.clone());
        }
        let last = i + 1 == t.ids.len();
        let tail: Option<IntKey> = match last && t.lowers.as_ref().is_some_and(|l| !l.is_empty()) {
            true => key.clone().map(int_of_value).collect(),
            false => None,
        };
        let seen = &mut self.written[n];
        let want = match (&tail, seen.get(&i)) {
            (_, Some(Written::Whole)) => return,
            (Some(k), Some(Written::From(f))) if f <= k => return,
            (Some(k), _) => Written::From(k.clone()),
            (None, _) => Written::Whole,
        };
        let from = match &want {
            Written::From(_) => key.map(key_value).collect(),
            Written::Whole => None,
        };
        seen.insert(i, want);
        self.pending.push(ChunkMark {
            chunk_id: t.ids[i].clone(),
            table: t.name.clone(),
            from,
        });
    }

    /// Add `key` to chunk `i`'s listed keys, or give the list up past the cap.
    /// Returns how many keys were added (0 or 1).
    fn note_key<'v>(
        keys: &mut FastMap<usize, Option<FastSet<IntKey>>>,
        scratch: &mut IntKey,
        i: usize,
        key: impl Iterator<Item = &'v Value>,
    ) -> usize {
        let entry = keys.entry(i).or_insert_with(|| Some(FastSet::default()));
        let Some(set) = entry else {
            return 0;
        };
        // The key is built in a reused buffer: a key seen before (the common
        // case under hot rows) costs a lookup, no allocation.
        scratch.clear();
        for v in key {
            match int_of_value(v) {
                Some(k) => scratch.push(k),
                None => {
                    *entry = None;
                    return 0;
                }
            }
        }
        if set.contains(scratch.as_slice()) {
            return 0;
        }
        if set.len() < MAX_KEYS_PER_CHUNK {
            set.insert(scratch.clone());
            1
        } else {
            *entry = None;
            0
        }
    }

    /// The keys this call changed, per chunk it marked (see [`ChunkKeys`]).
    /// Only for a call that ended without error: it commits nothing more.
    pub fn listed(&self) -> Vec<ChunkKeys> {
        let too_many = self.noted > MAX_KEYS_PER_CALL;
        let mut out = Vec::new();
        for (n, t) in self.map.tables.iter().enumerate() {
            for &i in self.written[n].keys() {
                let keys = self.keys[n].get(&i).filter(|_| !too_many);
                let keys = keys.cloned().flatten().map(|set| {
                    let mut v: Vec<IntKey> = set.into_iter().collect();
                    v.sort();
                    v.into_iter()
                        .map(|k| k.into_iter().map(key_of_int).collect())
                        .collect()
                });
                out.push(ChunkKeys {
                    chunk_id: t.ids[i].clone(),
                    table: t.name.clone(),
                    keys,
                });
            }
        }
        out.sort_by(|a, b| a.chunk_id.cmp(&b.chunk_id));
        out
    }

    /// Note a change to a table as a whole (a DDL, or a key that cannot be placed).
    pub fn touch_all(&mut self, db: &str, table: &str) {
        let Some(n) = self.map.find(db, table) else {
            return;
        };
        let t = &self.map.tables[n];
        for i in 0..t.ids.len() {
            self.keys[n].insert(i, None);
        }
        let seen = &mut self.written[n];
        for (i, id) in t.ids.iter().enumerate() {
            if seen.get(&i) != Some(&Written::Whole) {
                seen.insert(i, Written::Whole);
                self.pending.push(ChunkMark {
                    chunk_id: id.clone(),
                    table: t.name.clone(),
                    from: None,
                });
            }
        }
    }

    /// Marks noted and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Make every noted mark durable. Call before committing the changes noted.
    pub async fn flush(&mut self) -> Result<(), FerryError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let marks = std::mem::take(&mut self.pending);
        self.sink.write(marks).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::model::ChunkState;
    use std::sync::Mutex;

    fn chunk(seq: usize, lower: Option<i64>, upper: Option<i64>) -> ChunkRecord {
        ChunkRecord {
            chunk_id: format!("0000-{seq:06}"),
            source_db: "d".into(),
            source_table: "t".into(),
            lower: lower.map(|l| vec![KeyValue::Int(l)]),
            upper: upper.map(|u| vec![KeyValue::Int(u)]),
            state: ChunkState::Done,
            owner: None,
            lease_until_ms: 0,
            attempts: 0,
            rows: 0,
            bytes: 0,
            last_error: None,
        }
    }

    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<ChunkMark>>>);

    impl MarkSink for Memory {
        fn write<'a>(
            &'a self,
            marks: Vec<ChunkMark>,
        ) -> Pin<Box<dyn Future<Output = Result<(), FerryError>> + Send + 'a>> {
            Box::pin(async move {
                self.0.lock().unwrap().extend(marks);
                Ok(())
            })
        }
    }

    fn plan() -> Vec<ChunkRecord> {
        // [.., 100) [100, 200) [200, ..)
        vec![
            chunk(2, Some(200), None),
            chunk(0, None, Some(100)),
            chunk(1, Some(100), Some(200)),
        ]
    }

    fn ids(marks: &[ChunkMark]) -> Vec<(String, Option<Vec<KeyValue>>)> {
        marks
            .iter()
            .map(|m| (m.chunk_id.clone(), m.from.clone()))
            .collect()
    }

    #[tokio::test]
    async fn keys_land_in_their_chunk_once_per_call_and_the_tail_keeps_its_lowest_key() {
        let mem = Memory::default();
        let mut t = ChangeTracker::new(Arc::new(ChunkMap::new(&plan())), Arc::new(mem.clone()));
        for k in [5i64, 99, 100, 150, 199] {
            t.touch("d", "t", [&Value::Int(k)]);
        }
        t.touch("d", "other", [&Value::Int(1)]);
        assert_eq!(t.pending(), 2);
        t.flush().await.unwrap();
        t.touch("d", "t", [&Value::Int(7)]);
        assert_eq!(t.pending(), 0, "a chunk is written once per call");
        t.touch("d", "t", [&Value::UInt(300)]);
        t.touch("d", "t", [&Value::Int(400)]);
        t.touch("d", "t", [&Value::Int(250)]);
        t.flush().await.unwrap();
        let got = ids(&mem.0.lock().unwrap());
        assert_eq!(
            got,
            vec![
                ("0000-000000".into(), None),
                ("0000-000001".into(), None),
                ("0000-000002".into(), Some(vec![KeyValue::Uint(300)])),
                ("0000-000002".into(), Some(vec![KeyValue::Int(250)])),
            ]
        );
    }

    #[test]
    fn a_call_lists_the_keys_it_changed_per_chunk_until_there_are_too_many() {
        let mut t = ChangeTracker::new(
            Arc::new(ChunkMap::new(&plan())),
            Arc::new(Memory::default()),
        );
        for k in [150i64, 5, 150, 120] {
            t.touch("d", "t", [&Value::Int(k)]);
        }
        t.touch("d", "t", [&Value::UInt(300)]);
        let ints = |v: &[i64]| Some(v.iter().map(|i| vec![KeyValue::Int(*i)]).collect());
        let listed: Vec<(String, Option<Vec<Vec<KeyValue>>>)> = t
            .listed()
            .into_iter()
            .map(|c| (c.chunk_id, c.keys))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("0000-000000".into(), ints(&[5])),
                ("0000-000001".into(), ints(&[120, 150])),
                ("0000-000002".into(), ints(&[300])),
            ],
            "each key once, in order, unsigned as signed when it fits"
        );
        for k in 0..=MAX_KEYS_PER_CHUNK as i64 {
            t.touch("d", "t", [&Value::Int(1_000 + k)]);
        }
        t.touch("d", "t", [&Value::Int(6)]);
        let keys: Vec<Option<usize>> = t
            .listed()
            .into_iter()
            .map(|c| c.keys.map(|k| k.len()))
            .collect();
        assert_eq!(
            keys,
            vec![Some(2), Some(2), None],
            "the tail gave its list up"
        );
        t.touch_all("d", "t");
        assert!(
            t.listed().iter().all(|c| c.keys.is_none()),
            "a DDL: whole chunks"
        );
    }

    #[tokio::test]
    async fn a_key_that_cannot_be_placed_marks_the_whole_table() {
        let mem = Memory::default();
        let mut t = ChangeTracker::new(Arc::new(ChunkMap::new(&plan())), Arc::new(mem.clone()));
        t.touch("d", "t", [&Value::Bytes(b"x".to_vec())]);
        t.touch("d", "t", [&Value::Int(1), &Value::Int(2)]);
        t.flush().await.unwrap();
        let got = ids(&mem.0.lock().unwrap());
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(|(_, from)| from.is_none()));
        // Text boundaries: never compared in Rust.
        let mut text = plan();
        text[0].lower = Some(vec![KeyValue::Text("m".into())]);
        let mem = Memory::default();
        let mut t = ChangeTracker::new(Arc::new(ChunkMap::new(&text)), Arc::new(mem.clone()));
        t.touch("d", "t", [&Value::Int(1)]);
        t.flush().await.unwrap();
        assert_eq!(mem.0.lock().unwrap().len(), 3);
    }

    #[test]
    fn placing_a_key_costs_well_under_the_apply_of_a_row() {
        // 1,000 chunks, 1M touches of keys the call has already written: the
        // steady state of the apply. An apply costs ~30 µs per row here.
        let plan: Vec<ChunkRecord> = (0..1000)
            .map(|i| {
                chunk(
                    i,
                    (i > 0).then_some(i as i64 * 1000),
                    (i < 999).then_some((i as i64 + 1) * 1000),
                )
            })
            .collect();
        let mut t = ChangeTracker::new(Arc::new(ChunkMap::new(&plan)), Arc::new(Memory::default()));
        let n = 1_000_000u64;
        let started = std::time::Instant::now();
        for i in 0..n {
            let k = Value::Int(((i * 7919) % 998_000) as i64);
            t.touch("d", "t", [&k]);
        }
        let per_row = started.elapsed().as_nanos() as f64 / n as f64;
        eprintln!("dirty mark: {per_row:.0} ns per row");
        assert!(per_row < 5_000.0, "{per_row} ns per row");
        assert_eq!(t.pending(), 998);
    }
}

//! An apply worker: its buffer of net row changes and the transaction that commits them with its checkpoint (`Worker::commit`).

use super::*;

// ------------------------------------------------------------------ worker buffer

/// The net effect of a run of changes to one row.
#[derive(Debug, Clone)]
pub(super) struct Net {
    /// Whether the row existed before the first change (`Some(false)` only for a strict insert).
    pub(super) existed: bool,
    pub(super) last: Prim,
}

/// Pending changes of one target table in one worker.
pub(super) struct TableBuf {
    pub(super) table: Arc<TableInfo>,
    pub(super) target: Arc<TargetName>,
    /// Parallel-safe tables: one entry per key, merged. Others: every change in order.
    pub(super) entries: Vec<Net>,
    pub(super) index: FastMap<Vec<u8>, usize>,
}

impl TableBuf {
    pub(super) fn push(&mut self, prim: Prim) {
        let existed = !matches!(prim, Prim::Put { fresh: true, .. });
        if self.table.parallel_safe {
            let kb = match &prim {
                Prim::Put { row, .. } => key_bytes(self.table.key_iter(row)),
                Prim::Delete { key } => key_bytes(key),
            };
            if let Some(&i) = self.index.get(&kb) {
                self.entries[i].last = prim;
                return;
            }
            self.index.insert(kb, self.entries.len());
        }
        self.entries.push(Net {
            existed,
            last: prim,
        });
    }

    /// The entries whose net change puts a row, with that row.
    pub(super) fn puts(&self) -> Vec<(usize, &[Value])> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.last {
                Prim::Put { row, .. } => Some((i, row.as_slice())),
                Prim::Delete { .. } => None,
            })
            .collect()
    }

    /// Entry `i` puts a row outside the row filter: delete its key instead (the
    /// row may be there from before the change; an insert of a row that did not
    /// exist deletes nothing).
    pub(super) fn put_outside_filter(&mut self, i: usize) {
        if let Prim::Put { row, .. } = &self.entries[i].last {
            let key = key_values(&self.table, row);
            self.entries[i].last = Prim::Delete { key };
        }
    }

    /// The statements for the pending changes, in an order that keeps their
    /// effect: with `prepared`, rows in prepared blocks ([`insert_statements`]);
    /// without, text statements in blocks of few row counts ([`text_blocks`]).
    pub(super) fn statements(&self, prepared: bool) -> Vec<Stmt> {
        let (t, target) = (&self.table, &self.target);
        let inserts = |rows: &[&[Value]], upsert: bool| match prepared {
            true => insert_statements(t, target, rows, upsert),
            false => text_blocks(rows)
                .flat_map(|block| insert_sql(t, target, block, upsert))
                .map(Stmt::Text)
                .collect(),
        };
        let deletes = |keys: &[&[Value]]| -> Vec<Stmt> {
            let text = |keys| delete_sql(t, target, keys).into_iter().map(Stmt::Text);
            match prepared {
                true => text(keys).collect(),
                false => text_blocks(keys).flat_map(text).collect(),
            }
        };
        let mut out = Vec::new();
        if t.parallel_safe {
            // One net change per key: deletes, then inserts, then upserts.
            let keys: Vec<&[Value]> = self
                .entries
                .iter()
                .filter(|n| n.existed)
                .filter_map(|n| match &n.last {
                    Prim::Delete { key } => Some(key.as_slice()),
                    _ => None,
                })
                .collect();
            out.extend(deletes(&keys));
            for fresh in [true, false] {
                let rows: Vec<&[Value]> = self
                    .entries
                    .iter()
                    .filter(|n| n.existed != fresh)
                    .filter_map(|n| match &n.last {
                        Prim::Put { row, .. } => Some(row.as_slice()),
                        _ => None,
                    })
                    .collect();
                out.extend(inserts(&rows, !fresh));
            }
            return out;
        }
        // In binlog order, consecutive changes of one kind in one statement.
        let mut i = 0;
        while i < self.entries.len() {
            let kind = |n: &Net| n.last.kind();
            let k = kind(&self.entries[i]);
            let run: Vec<&Net> = self.entries[i..]
                .iter()
                .take_while(|n| kind(n) == k)
                .collect();
            i += run.len();
            let images: Vec<&[Value]> = run
                .iter()
                .map(|n| match &n.last {
                    Prim::Delete { key } => key.as_slice(),
                    Prim::Put { row, .. } => row.as_slice(),
                })
                .collect();
            out.extend(if k == 0 {
                deletes(&images)
            } else {
                inserts(&images, k == 2)
            });
        }
        out
    }
}

/// One slot per target table, found by the table's name, with a shortcut for
/// runs of one table: the pipeline hands one `Arc` per table description, so
/// a run of a table's changes finds its slot by pointer, without hashing names.
pub(super) struct Slots<T> {
    pub(super) items: Vec<T>,
    by_target: FastMap<Arc<TargetName>, usize>,
    /// The table the last change went to.
    last: Option<(Arc<TargetName>, usize)>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            items: Vec::new(),
            by_target: FastMap::default(),
            last: None,
        }
    }
}

impl<T> Slots<T> {
    /// The index of `target`'s slot in `items`, made by `new` when it has none.
    pub(super) fn index(&mut self, target: &Arc<TargetName>, new: impl FnOnce() -> T) -> usize {
        if let Some((t, i)) = &self.last {
            if Arc::ptr_eq(t, target) {
                return *i;
            }
        }
        let i = match self.by_target.get(target) {
            Some(&i) => i,
            None => {
                self.items.push(new());
                self.by_target.insert(target.clone(), self.items.len() - 1);
                self.items.len() - 1
            }
        };
        self.last = Some((target.clone(), i));
        i
    }
}

#[derive(Default)]
pub(super) struct Buffer {
    pub(super) tables: Slots<TableBuf>,
    pub(super) len: usize,
}

impl Buffer {
    pub(super) fn push(&mut self, r: Routed) {
        let i = self.tables.index(&r.target, || TableBuf {
            table: r.table.clone(),
            target: r.target.clone(),
            entries: Vec::new(),
            index: FastMap::default(),
        });
        let tb = &mut self.tables.items[i];
        // A table's description changes after DDL: flush boundaries keep images and columns together.
        tb.table = r.table;
        tb.push(r.prim);
        self.len += 1;
    }

    /// Every table's statements (`prepared`: see [`LinkConfig::prepared`]).
    pub(super) fn take_statements(&mut self, prepared: bool) -> Vec<Stmt> {
        let out = self
            .tables
            .items
            .iter()
            .flat_map(|tb| tb.statements(prepared))
            .collect();
        *self = Buffer::default();
        out
    }
}

// ------------------------------------------------------------------ worker

/// Changes applied, by (target table, op).
pub type OpCounts = BTreeMap<(String, String), u64>;

/// The names of the kinds of change a worker counts, by [`Prim::kind`].
const OPS: [&str; 3] = ["delete", "insert", "upsert"];

/// A worker's count of the changes it queued, per target table and kind, in
/// the same [`Slots`] as its buffer (an [`OpCounts`] entry per change built
/// two `String`s and compared names); named once, when the worker ends.
#[derive(Default)]
pub(super) struct Tally(Slots<(Arc<TargetName>, [u64; 3])>);

impl Tally {
    fn add(&mut self, target: &Arc<TargetName>, prim: &Prim) {
        let i = self.0.index(target, || (target.clone(), [0; 3]));
        self.0.items[i].1[prim.kind()] += 1;
    }

    /// Add the tally to `counts`, by `db.table` and op name.
    fn add_to(self, counts: &mut OpCounts) {
        for (t, ops) in self.0.items {
            let table = format!("{}.{}", t.db, t.table);
            for (op, n) in OPS.iter().zip(ops).filter(|(_, n)| *n > 0) {
                *counts.entry((table.clone(), op.to_string())).or_default() += n;
            }
        }
    }
}

pub(super) enum WorkerMsg {
    Rows(Vec<Routed>),
    /// Commit everything so far with the checkpoint at `position`.
    Commit {
        group: u64,
        position: BinlogPosition,
    },
    /// Drop the open transaction (the call ends inside a source transaction).
    Rollback,
}

impl WorkerMsg {
    /// About how much memory the message holds while it waits in a queue:
    /// the row images' bytes plus a fixed cost per value and per message.
    fn weight(&self) -> usize {
        match self {
            WorkerMsg::Rows(rows) => rows
                .iter()
                .map(|r| match &r.prim {
                    Prim::Put { row: v, .. } | Prim::Delete { key: v } => row_bytes(v),
                })
                .sum::<usize>()
                .saturating_add(64),
            WorkerMsg::Commit { .. } | WorkerMsg::Rollback => 64,
        }
    }
}

/// How much a worker's queue may hold (by [`WorkerMsg::weight`]). The reader
/// goes on reading the next group's changes while the workers apply and commit
/// the last one, up to this much per worker: with a queue of 4 messages the
/// two took turns, and a replay of the small CDC bench's binlog took 1.61 s
/// against 1.28 s (a group gives each worker thousands of changes). Bounded by
/// size, not by count, so a queue of wide rows stays small too; one message
/// larger than this still goes, alone.
///
/// Hand-written over tokio's channel and semaphore: a bounded channel counts
/// messages, and a message may hold one change or hundreds of large ones.
pub(super) const QUEUE_BYTES: usize = 8 << 20;

/// The pipeline's end of a worker's queue.
pub(super) struct QueueTx {
    tx: mpsc::UnboundedSender<(WorkerMsg, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
}

/// The worker's end. Dropping it (the worker stopped, failed or panicked)
/// closes the queue, so a pipeline waiting for room learns of it at once.
pub(super) struct QueueRx {
    rx: mpsc::UnboundedReceiver<(WorkerMsg, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
}

pub(super) fn queue() -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(QUEUE_BYTES));
    (
        QueueTx {
            tx,
            room: room.clone(),
        },
        QueueRx { rx, room },
    )
}

/// The worker has stopped: its queue takes nothing more.
#[derive(Debug)]
pub(super) struct QueueClosed;

impl QueueTx {
    /// Queue `msg`, waiting while the worker's queue is full.
    pub(super) async fn send(&self, msg: WorkerMsg) -> Result<(), QueueClosed> {
        let weight = msg.weight().min(QUEUE_BYTES) as u32;
        let room = self.room.clone().acquire_many_owned(weight).await;
        let room = room.map_err(|_| QueueClosed)?;
        self.tx.send((msg, room)).map_err(|_| QueueClosed)
    }
}

impl QueueRx {
    /// The next message, with its share of the queue's room (given back when dropped).
    pub(super) async fn recv(&mut self) -> Option<(WorkerMsg, OwnedSemaphorePermit)> {
        self.rx.recv().await
    }
}

impl Drop for QueueRx {
    fn drop(&mut self) {
        self.room.close();
    }
}

pub(super) enum Ack {
    Committed { group: u64 },
    Failed { worker: u32, error: FerryError },
}

pub(super) struct Worker {
    pub(super) id: u32,
    pub(super) conn: Conn,
    pub(super) link: Arc<Link>,
    pub(super) checkpoint: BinlogPosition,
    pub(super) buf: Buffer,
    pub(super) in_txn: bool,
    pub(super) pending: u64,
    /// Changes a row filter turned into deletes, by table (counted per flush).
    pub(super) counts: OpCounts,
    pub(super) tally: Tally,
    /// See [`LinkConfig::prepared`].
    pub(super) prepared: bool,
}

pub(super) const FLUSH_ROWS: usize = 5_000;

/// The pipeline sends a worker its changes this many at a time (and all it
/// has before a commit or a wait): a message per rows event woke the worker
/// for each change, and the thread switches cost more than the work.
pub(super) const SEND_ROWS: usize = 256;

impl Worker {
    pub(super) async fn run(
        mut self,
        mut rx: QueueRx,
        acks: mpsc::UnboundedSender<Ack>,
    ) -> (OpCounts, Conn) {
        while let Some((msg, _room)) = rx.recv().await {
            let result = match msg {
                WorkerMsg::Rows(rows) => self.rows(rows).await,
                WorkerMsg::Commit { group, position } => self.commit(&position).await.map(|()| {
                    let _ = acks.send(Ack::Committed { group });
                }),
                WorkerMsg::Rollback => self.rollback().await,
            };
            if let Err(error) = result {
                let _ = self.conn.query_drop("ROLLBACK").await;
                let _ = acks.send(Ack::Failed {
                    worker: self.id,
                    error,
                });
                break;
            }
        }
        if self.in_txn {
            let _ = self.conn.query_drop("ROLLBACK").await;
        }
        let mut counts = self.counts;
        self.tally.add_to(&mut counts);
        (counts, self.conn)
    }

    pub(super) async fn exec(&mut self, sql: &str) -> Result<(), FerryError> {
        self.conn
            .query_drop(sql)
            .await
            .map_err(|e| applying(e, sql))
    }

    pub(super) async fn begin(&mut self) -> Result<(), FerryError> {
        if !self.in_txn {
            self.exec("START TRANSACTION").await?;
            self.in_txn = true;
        }
        Ok(())
    }

    pub(super) async fn rows(&mut self, rows: Vec<Routed>) -> Result<(), FerryError> {
        for r in rows {
            self.tally.add(&r.target, &r.prim);
            self.pending += 1;
            self.buf.push(r);
        }
        if self.buf.len >= FLUSH_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    pub(super) async fn flush(&mut self) -> Result<(), FerryError> {
        if self.buf.len == 0 {
            return Ok(());
        }
        self.begin().await?;
        self.apply_filters().await?;
        for (i, stmt) in self
            .buf
            .take_statements(self.prepared)
            .into_iter()
            .enumerate()
        {
            if i == 1 {
                failpoint_for(&self.link.task_id, "apply.mid_batch")?;
            }
            match stmt {
                Stmt::Text(sql) => self.exec(&sql).await?,
                Stmt::Prepared { sql, params } => {
                    let done = self.conn.exec_drop(sql.as_str(), params).await;
                    done.map_err(|e| applying(e, &sql))?
                }
            }
        }
        Ok(())
    }

    /// Judge the rows the pending changes put on filtered tables: the ones
    /// outside the row filter become deletes by key (counted as `outside filter`).
    pub(super) async fn apply_filters(&mut self) -> Result<(), FerryError> {
        let Worker {
            conn, buf, counts, ..
        } = self;
        for tb in &mut buf.tables.items {
            let Some(filter) = tb.target.filter.clone() else {
                continue;
            };
            let what = format!(
                "target: evaluating the row filter of {}.{} ({filter}) over changed rows; \
                 fix objects.filters in the task file",
                tb.table.db, tb.table.table
            );
            let puts = tb.puts();
            let mut kept: HashSet<u64> = HashSet::new();
            for sql in filter_statements(&tb.table, &filter, &puts) {
                let rows: Vec<u64> = conn.query(sql).await.map_err(|e| classify(e, &what))?;
                kept.extend(rows);
            }
            let outside: Vec<usize> = puts
                .iter()
                .map(|(i, _)| *i)
                .filter(|i| !kept.contains(&(*i as u64)))
                .collect();
            if outside.is_empty() {
                continue;
            }
            *counts
                .entry((
                    format!("{}.{}", tb.target.db, tb.target.table),
                    "outside filter".to_string(),
                ))
                .or_default() += outside.len() as u64;
            for i in outside {
                tb.put_outside_filter(i);
            }
        }
        Ok(())
    }

    pub(super) async fn commit(&mut self, position: &BinlogPosition) -> Result<(), FerryError> {
        if !pos_lt(&self.checkpoint, position) {
            // Everything up to here was skipped on resume: this worker is already past it.
            return Ok(());
        }
        self.flush().await?;
        self.begin().await?;
        self.link
            .advance(&mut self.conn, Some(self.id), 1, position, self.pending)
            .await?;
        failpoint_for(&self.link.task_id, "apply.before_commit")?;
        self.exec("COMMIT").await?;
        self.in_txn = false;
        self.pending = 0;
        self.checkpoint = position.clone();
        failpoint_for(&self.link.task_id, "apply.after_commit")?;
        Ok(())
    }

    pub(super) async fn rollback(&mut self) -> Result<(), FerryError> {
        self.buf = Buffer::default();
        self.pending = 0;
        if self.in_txn {
            self.exec("ROLLBACK").await?;
            self.in_txn = false;
        }
        Ok(())
    }
}

/// A statement's failure, with the start of its text (a prepared statement's
/// placeholders, not its values).
fn applying(e: mysql_async::Error, sql: &str) -> FerryError {
    let mut short: String = sql.chars().take(300).collect();
    if short.len() < sql.len() {
        short.push_str("...");
    }
    classify(e, &format!("target: applying changes ({short})"))
}

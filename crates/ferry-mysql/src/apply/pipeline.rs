//! The pipeline of a link run: read the binlog, route changes to workers, commit groups of whole transactions (`Pipeline::commit_group`), DDL as a barrier.

use super::*;

// ------------------------------------------------------------------ the pipeline

/// What one run of a link does.
#[derive(Clone)]
pub struct LinkConfig {
    pub link: Link,
    /// Apply workers for a new link (an existing link keeps its count).
    pub workers: u32,
    /// Where a new link starts (the snapshot position).
    pub start: BinlogPosition,
    /// Changes in transactions that start before this are applied idempotently;
    /// `None`: all of them (the copy has not finished).
    pub idempotent_until: Option<BinlogPosition>,
    /// Source tables to replicate and where they land.
    pub mapper: TableMapper,
    /// Stop (at a transaction boundary) at this instant.
    pub stop_at: Instant,
    /// Stop when caught up and nothing came for this long.
    pub idle: Duration,
    /// Set from outside to stop at the next transaction boundary.
    pub stop: Arc<AtomicBool>,
    /// Heartbeat row this link writes on the source and measures lag by.
    pub heartbeat_every: Option<Duration>,
    /// Key columns of tables without a primary or unique key (the task's
    /// `objects.keys`), by the tables' names on the side the link reads.
    pub declared_keys: Arc<BTreeMap<(String, String), Vec<String>>>,
    /// Commit a group after this many changes or this long.
    pub group_rows: usize,
    pub group_delay: Duration,
    /// Counters the run keeps up to date while it runs, for a caller that samples them.
    pub live: Arc<LiveLink>,
    /// The written side's dialect and capabilities: DDL from the binlog is
    /// translated for it like the schema stage's tables (None: names only).
    pub ddl_target: Option<(Dialect, TargetContext)>,
    /// Whether a worker sends 8 or more rows of a table as prepared statements
    /// (see [`PREPARED_ROWS`]): on MariaDB they cost the server less, on
    /// OceanBase, whose plan cache already takes the literals out of a text
    /// statement, they did not (a lab of 20,000 upserts into seekdb, 6
    /// alternating runs: 1,043 ms of server CPU prepared against 992 as text).
    /// Without them, rows go as text in blocks of few row counts
    /// ([`text_blocks`]), so OceanBase's plan cache finds each shape again.
    pub prepared: bool,
    /// Where to mark the chunks the changes touch (forward links after a
    /// plan): see [`crate::dirty`]. Marks are durable before their changes commit.
    pub dirty: Option<(Arc<ChunkMap>, Arc<dyn MarkSink>)>,
}

/// A running link's figures so far, readable from another task while it runs.
#[derive(Debug, Default)]
pub struct LiveLink {
    /// Row changes committed so far in this run.
    pub applied: AtomicU64,
    /// The last lag measured (source clock), `u64::MAX` before the first.
    pub lag_ms: AtomicU64,
}

impl LiveLink {
    pub fn new() -> LiveLink {
        LiveLink {
            applied: AtomicU64::new(0),
            lag_ms: AtomicU64::new(u64::MAX),
        }
    }

    pub fn lag_ms(&self) -> Option<u64> {
        Some(self.lag_ms.load(AtomicOrdering::Relaxed)).filter(|l| *l != u64::MAX)
    }
}

impl LinkConfig {
    pub fn new(
        link: Link,
        start: BinlogPosition,
        mapper: TableMapper,
        stop_at: Instant,
    ) -> LinkConfig {
        LinkConfig {
            link,
            workers: 4,
            start,
            idempotent_until: None,
            mapper,
            stop_at,
            idle: Duration::from_secs(5),
            stop: Arc::new(AtomicBool::new(false)),
            heartbeat_every: Some(Duration::from_millis(500)),
            declared_keys: Arc::default(),
            group_rows: 10_000,
            group_delay: Duration::from_millis(200),
            live: Arc::new(LiveLink::new()),
            ddl_target: None,
            prepared: true,
            dirty: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkReport {
    /// The lowest worker checkpoint: where the next run starts reading.
    pub position: BinlogPosition,
    /// Row changes committed in this run.
    pub applied: u64,
    /// Changes by (target table, op).
    pub counts: OpCounts,
    /// Source commit of the last applied heartbeat to its commit on the target, and its parts.
    pub lag_ms: Option<u64>,
    pub read_lag_ms: Option<u64>,
    pub apply_lag_ms: Option<u64>,
    /// Every lag measured in this run (for percentiles).
    pub lag_samples: Vec<u64>,
    /// The reader reached the end of the binlog and everything read is committed.
    pub caught_up: bool,
    pub elapsed_ms: u64,
    /// From the start of the run to the commit of its last changes (0: none):
    /// the reader may finish reading well before the workers finish applying.
    pub applied_ms: u64,
    /// The keys this run changed per chunk it marked dirty (empty without dirty tracking).
    pub touched: Vec<ChunkKeys>,
}

/// The heartbeat table on the source.
pub async fn ensure_heartbeat(
    conn: &mut Conn,
    meta_schema: &str,
    task_id: &str,
) -> Result<(), FerryError> {
    let what = format!(
        "source: creating {}.heartbeat (the migration user needs ALL on {}.*)",
        meta_schema,
        quote_ident(meta_schema)
    );
    for sql in [
        format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(meta_schema)),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (task_id VARCHAR(64) NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL) ENGINE=InnoDB",
            qualified(meta_schema, "heartbeat")
        ),
    ] {
        conn.query_drop(&sql).await.map_err(|e| classify(e, &what))?;
    }
    beat(conn, meta_schema, task_id).await
}

/// Write the heartbeat row with the source's clock.
pub async fn beat(conn: &mut Conn, meta_schema: &str, task_id: &str) -> Result<(), FerryError> {
    conn.exec_drop(
        format!(
            "INSERT INTO {} (task_id, ts) VALUES (?, NOW(6)) ON DUPLICATE KEY UPDATE ts = NOW(6)",
            qualified(meta_schema, "heartbeat")
        ),
        (task_id,),
    )
    .await
    .map_err(|e| classify(e, "source: writing the heartbeat"))
}

pub(super) fn datetime_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Date(y, m, d, h, mi, s, us) => {
            let days =
                crate::binlog::decode::days_from_civil(i64::from(*y), u32::from(*m), u32::from(*d));
            Some(
                ((days * 86_400 + i64::from(*h) * 3600 + i64::from(*mi) * 60 + i64::from(*s))
                    * 1000)
                    + i64::from(*us) / 1000,
            )
        }
        _ => None,
    }
}

/// Local clock minus the source's clock, in ms.
pub(super) async fn clock_offset(conn: &mut Conn) -> Result<i64, FerryError> {
    let before = now_ms() as i64;
    let v: Option<Value> = conn
        .query_first("SELECT NOW(6)")
        .await
        .map_err(|e| classify(e, "source: SELECT NOW(6)"))?;
    let after = now_ms() as i64;
    let src = v.as_ref().and_then(|v| match v {
        Value::Bytes(b) => parse_datetime_text(b),
        other => datetime_ms(other),
    });
    Ok(src.map(|s| (before + after) / 2 - s).unwrap_or(0))
}

pub(super) fn parse_datetime_text(b: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(b).ok()?;
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    let frac: u32 = s.get(20..26).and_then(|x| x.parse().ok()).unwrap_or(0);
    datetime_ms(&Value::Date(
        num(0..4)? as u16,
        num(5..7)? as u8,
        num(8..10)? as u8,
        num(11..13)? as u8,
        num(14..16)? as u8,
        num(17..19)? as u8,
        frac,
    ))
}

pub(super) struct Group {
    pub(super) id: u64,
    /// Row changes in the group.
    pub(super) rows: usize,
    pub(super) heartbeat: Option<(i64, Instant)>,
}

pub(super) struct Pipeline {
    pub(super) cfg: LinkConfig,
    pub(super) link: Arc<Link>,
    pub(super) checkpoints: Vec<BinlogPosition>,
    pub(super) senders: Vec<QueueTx>,
    /// Per worker: changes routed and not yet sent (see [`SEND_ROWS`]).
    pub(super) unsent: Vec<Vec<Routed>>,
    pub(super) acks: mpsc::UnboundedReceiver<Ack>,
    /// Groups sent and not yet acknowledged by every worker.
    pub(super) open: Vec<(Group, u32)>,
    pub(super) next_group: u64,
    pub(super) group_rows: usize,
    pub(super) group_started: Option<Instant>,
    /// When the run started.
    pub(super) started: Instant,
    pub(super) group_heartbeat: Option<(i64, Instant)>,
    /// Position up to which the current group runs (the last complete transaction's end).
    pub(super) group_end: Option<BinlogPosition>,
    pub(super) in_txn: bool,
    pub(super) txn_mode: ApplyMode,
    /// Per worker: skip this transaction (already applied before a restart).
    pub(super) txn_skip: Vec<bool>,
    pub(super) offset_ms: i64,
    pub(super) report: LinkReport,
    pub(super) target: Endpoint,
    pub(super) ddl_conn: Option<Conn>,
    pub(super) ddl_pending: Option<String>,
    /// The reader reached the source's end (a server heartbeat, or our own heartbeat row read promptly).
    pub(super) caught_up: bool,
    pub(super) last_data: Instant,
    /// The chunks this call's changes touched (marked before they commit).
    pub(super) dirty: Option<ChangeTracker>,
    /// Where each table description's rows land, by the description's address
    /// (the entry holds it, so the address is not reused): the mapper builds
    /// new names on every call, and every row of a table shares one answer.
    pub(super) targets: FastMap<usize, (Arc<TableInfo>, Option<Arc<TargetName>>)>,
}

/// A heartbeat row read this soon after it was written means the reader is at the end.
pub(super) const CAUGHT_UP_READ_LAG_MS: u64 = 1_000;

/// Run a link until the deadline, an idle gap or a stop request: read the
/// source's binlog from the link's checkpoint and apply it to the target.
pub async fn run_link(
    source: &Endpoint,
    target: &Endpoint,
    cfg: LinkConfig,
) -> Result<LinkReport, FerryError> {
    let started = Instant::now();
    let link = Arc::new(cfg.link.clone());
    let mut claim_conn = apply_connection(target).await?;
    let rows = link.claim(&mut claim_conn, cfg.workers, &cfg.start).await?;
    let checkpoints: Vec<BinlogPosition> = rows.iter().map(|r| r.position.clone()).collect();
    let ddl_pending = rows.first().and_then(|r| r.ddl_pending.clone());
    let start = checkpoints.iter().fold(checkpoints[0].clone(), |a, b| {
        if pos_lt(b, &a) {
            b.clone()
        } else {
            a
        }
    });

    let meta = link.meta_schema.clone();
    let mapper = cfg.mapper.clone();
    let filter: TableFilter = Arc::new(move |db: &str, t: &str| {
        (db == meta && t == "heartbeat") || mapper(db, t).is_some()
    });
    let mut opts = ReaderOptions::new(server_id_for(&link.task_id, link.epoch), filter);
    opts.declared_keys = cfg.declared_keys.clone();
    let mut src_conn = source.connect().await?;
    let offset_ms = clock_offset(&mut src_conn).await?;
    if cfg.heartbeat_every.is_some() {
        ensure_heartbeat(&mut src_conn, &link.meta_schema, &link.task_id).await?;
    }
    let reader = BinlogReader::open(source, &start, opts).await?;
    let mut worker_conns = Vec::new();
    for _ in &checkpoints {
        worker_conns.push(apply_connection(target).await?);
    }
    let heartbeat = match cfg.heartbeat_every {
        Some(every) => Some(tokio::spawn(heartbeat_loop(src_conn, link.clone(), every))),
        None => {
            drop(src_conn);
            None
        }
    };
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for ((i, cp), conn) in checkpoints.iter().enumerate().zip(worker_conns) {
        let (tx, rx) = queue();
        let w = Worker {
            id: i as u32,
            conn,
            link: link.clone(),
            checkpoint: cp.clone(),
            buf: Buffer::default(),
            in_txn: false,
            pending: 0,
            counts: OpCounts::new(),
            tally: Tally::default(),
            prepared: cfg.prepared,
        };
        handles.push(tokio::spawn(w.run(rx, ack_tx.clone())));
        senders.push(tx);
    }
    drop(ack_tx);
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    let read_task = tokio::spawn(read_loop(reader, ev_tx));
    let mut guard = AbortOnDrop(handles.iter().map(|h| h.abort_handle()).collect());
    guard.0.push(read_task.abort_handle());
    if let Some(h) = &heartbeat {
        guard.0.push(h.abort_handle());
    }

    let mut p = Pipeline {
        link,
        checkpoints: checkpoints.clone(),
        unsent: senders.iter().map(|_| Vec::new()).collect(),
        senders,
        acks: ack_rx,
        open: Vec::new(),
        next_group: 0,
        group_rows: 0,
        group_started: None,
        started,
        group_heartbeat: None,
        group_end: None,
        in_txn: false,
        txn_mode: ApplyMode::Idempotent,
        txn_skip: vec![false; checkpoints.len()],
        offset_ms,
        report: LinkReport {
            position: start.clone(),
            applied: 0,
            counts: OpCounts::new(),
            lag_ms: None,
            read_lag_ms: None,
            apply_lag_ms: None,
            lag_samples: Vec::new(),
            caught_up: false,
            elapsed_ms: 0,
            applied_ms: 0,
            touched: Vec::new(),
        },
        target: target.clone(),
        ddl_conn: Some(claim_conn),
        ddl_pending,
        caught_up: false,
        last_data: Instant::now(),
        dirty: cfg
            .dirty
            .clone()
            .map(|(map, sink)| ChangeTracker::new(map, sink)),
        targets: FastMap::default(),
        cfg,
    };
    let result = p.run(&mut ev_rx).await;
    read_task.abort();
    if let Some(h) = heartbeat {
        h.abort();
    }
    if result.is_err() {
        for s in &p.senders {
            let _ = s.send(WorkerMsg::Rollback).await;
        }
    }
    p.senders.clear();
    let mut counts = OpCounts::new();
    for h in handles {
        if let Ok((c, conn)) = h.await {
            for (k, v) in c {
                *counts.entry(k).or_default() += v;
            }
            let _ = conn.disconnect().await;
        }
    }
    drop(guard);
    let drained = p.drain_acks();
    result?;
    drained?;
    let mut report = p.report;
    report.counts = counts;
    report.position = p.checkpoints.iter().fold(p.checkpoints[0].clone(), |a, b| {
        if pos_lt(b, &a) {
            b.clone()
        } else {
            a
        }
    });
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report.touched = p
        .dirty
        .as_ref()
        .map(ChangeTracker::listed)
        .unwrap_or_default();
    if let Some(c) = p.ddl_conn.take() {
        let _ = c.disconnect().await;
    }
    Ok(report)
}

/// Aborts its tasks when dropped: a cancelled run leaves nothing behind.
pub(super) struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

pub(super) async fn heartbeat_loop(mut conn: Conn, link: Arc<Link>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = beat(&mut conn, &link.meta_schema, &link.task_id).await {
            tracing::warn!(error = %e, "heartbeat write failed; lag is not measured until it works again");
        }
    }
}

pub(super) async fn read_loop(
    mut reader: BinlogReader,
    tx: mpsc::Sender<Result<BinlogEvent, FerryError>>,
) {
    loop {
        let ev = reader.next().await;
        let failed = ev.is_err();
        if tx.send(ev).await.is_err() || failed {
            break;
        }
    }
    reader.close().await;
}

impl Pipeline {
    pub(super) async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Result<BinlogEvent, FerryError>>,
    ) -> Result<(), FerryError> {
        let hard_stop = self.cfg.stop_at + Duration::from_secs(5);
        loop {
            self.drain_acks()?;
            let now = Instant::now();
            let stopping = now >= self.cfg.stop_at
                || self.cfg.stop.load(AtomicOrdering::Relaxed)
                || (self.caught_up && now.duration_since(self.last_data) >= self.cfg.idle);
            if stopping && !self.in_txn {
                break;
            }
            if now >= hard_stop {
                // Deep inside one huge transaction: give it back, it is applied next time.
                // (Changes not sent yet are all in it: the last commit sent every one before it.)
                self.unsent.iter_mut().for_each(Vec::clear);
                for s in &self.senders {
                    let _ = s.send(WorkerMsg::Rollback).await;
                }
                self.group_rows = 0;
                self.group_end = None;
                break;
            }
            // An event already queued is taken without arming a timer (most
            // are, while the sync catches up); only an empty queue waits.
            let ev = match futures::FutureExt::now_or_never(rx.recv()) {
                Some(ev) => Ok(ev),
                None => {
                    // The workers get what was read before the pipeline waits.
                    self.send_unsent(1).await?;
                    tokio::time::timeout(Duration::from_millis(50), rx.recv()).await
                }
            };
            let ev = match ev {
                Err(_) => {
                    if !self.in_txn {
                        self.commit_group().await?;
                    }
                    continue;
                }
                Ok(None) => return Err(FerryError::Transient("the binlog reader stopped".into())),
                Ok(Some(ev)) => ev?,
            };
            match ev {
                BinlogEvent::Begin { start } => self.begin(&start),
                BinlogEvent::Rows(rows) => {
                    if self.rows(rows).await? {
                        self.last_data = Instant::now();
                        self.caught_up = false;
                    }
                }
                BinlogEvent::Commit { end, .. } => {
                    self.in_txn = false;
                    self.group_end = Some(end);
                    let due = self.group_rows >= self.cfg.group_rows
                        || self
                            .group_started
                            .is_some_and(|t| t.elapsed() >= self.cfg.group_delay);
                    if due {
                        self.commit_group().await?;
                    }
                }
                BinlogEvent::Statement {
                    schema,
                    sql,
                    start,
                    end,
                } => {
                    self.in_txn = false;
                    if self.statement(&schema, &sql, &start, &end).await? {
                        self.last_data = Instant::now();
                    }
                }
                BinlogEvent::Heartbeat { position } => {
                    self.caught_up = true;
                    if !self.in_txn
                        && self.group_end.is_none()
                        && self.checkpoints.iter().any(|cp| pos_lt(cp, &position))
                    {
                        self.group_end = Some(position);
                    }
                    self.commit_group().await?;
                }
            }
        }
        self.commit_group().await?;
        self.wait_all().await?;
        self.report.caught_up = self.caught_up && self.open.is_empty();
        Ok(())
    }

    pub(super) fn begin(&mut self, start: &BinlogPosition) {
        self.in_txn = true;
        self.txn_mode = match &self.cfg.idempotent_until {
            Some(until) if !pos_lt(start, until) => ApplyMode::Strict,
            _ => ApplyMode::Idempotent,
        };
        for (skip, cp) in self.txn_skip.iter_mut().zip(&self.checkpoints) {
            *skip = pos_lt(start, cp);
        }
    }

    /// Route row changes to workers; true when some were for replicated tables.
    pub(super) async fn rows(&mut self, rows: Vec<RowChange>) -> Result<bool, FerryError> {
        let workers = self.senders.len() as u32;
        let mut any = false;
        let mut routed = 0;
        for r in rows {
            if r.table.db == self.link.meta_schema && r.table.table == "heartbeat" {
                self.heartbeat_row(&r);
                continue;
            }
            let Some(target) = self.target_of(&r.table) else {
                continue;
            };
            any = true;
            for prim in prims(&r.table, r.op, self.txn_mode) {
                let w = partition(&r.table, &target, &prim, workers);
                if !self.txn_skip[w as usize] {
                    if let Some(d) = self.dirty.as_mut() {
                        let (db, table) = (&r.table.db, &r.table.table);
                        match &prim {
                            Prim::Put { row, .. } => d.touch(db, table, r.table.key_iter(row)),
                            Prim::Delete { key } => d.touch(db, table, key),
                        }
                    }
                    self.unsent[w as usize].push(Routed {
                        table: r.table.clone(),
                        target: target.clone(),
                        prim,
                    });
                    routed += 1;
                }
            }
        }
        if routed > 0 {
            self.group_rows += routed;
            self.group_started.get_or_insert_with(Instant::now);
        }
        self.send_unsent(SEND_ROWS).await?;
        Ok(any)
    }

    /// Send each worker that has at least `at_least` changes routed to it and
    /// not yet sent: [`SEND_ROWS`] as they are routed; 1 (all of them) before
    /// a commit and before the pipeline waits for the reader.
    pub(super) async fn send_unsent(&mut self, at_least: usize) -> Result<(), FerryError> {
        for w in 0..self.unsent.len() {
            if self.unsent[w].len() >= at_least.max(1) {
                let batch = std::mem::take(&mut self.unsent[w]);
                self.send(w, WorkerMsg::Rows(batch)).await?;
            }
        }
        Ok(())
    }

    /// Where `t`'s rows land (`None`: not replicated), asked of the mapper once per description.
    pub(super) fn target_of(&mut self, t: &Arc<TableInfo>) -> Option<Arc<TargetName>> {
        let at = Arc::as_ptr(t) as usize;
        if let Some((_, target)) = self.targets.get(&at) {
            return target.clone();
        }
        if self.targets.len() >= 4_096 {
            // Descriptions replaced by DDL pile up only in a long run of schema changes.
            self.targets.clear();
        }
        let target = (self.cfg.mapper)(&t.db, &t.table).map(Arc::new);
        self.targets.insert(at, (t.clone(), target.clone()));
        target
    }

    pub(super) fn heartbeat_row(&mut self, r: &RowChange) {
        let row = match &r.op {
            RowOp::Insert(a) | RowOp::Update(_, a) => a,
            RowOp::Delete(_) => return,
        };
        let task = row.first().and_then(|v| match v {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        });
        if task == Some(self.link.task_id.as_str()) {
            if let Some(ts) = row.get(1).and_then(datetime_ms) {
                self.group_heartbeat = Some((ts, Instant::now()));
                self.group_started.get_or_insert_with(Instant::now);
            }
        }
    }

    pub(super) async fn send(&mut self, w: usize, msg: WorkerMsg) -> Result<(), FerryError> {
        if self.senders[w].send(msg).await.is_err() {
            self.drain_acks()?;
            return Err(FerryError::Internal(format!(
                "apply worker {w} stopped without an error"
            )));
        }
        Ok(())
    }

    /// Commit every worker up to the end of the last complete transaction.
    pub(super) async fn commit_group(&mut self) -> Result<(), FerryError> {
        self.send_unsent(1).await?;
        let Some(end) = self.group_end.take() else {
            return Ok(());
        };
        if let Some(d) = self.dirty.as_mut() {
            // The marks first: a kill after the commit must find them.
            d.flush().await?;
        }
        let id = self.next_group;
        self.next_group += 1;
        for w in 0..self.senders.len() {
            self.send(
                w,
                WorkerMsg::Commit {
                    group: id,
                    position: end.clone(),
                },
            )
            .await?;
        }
        for cp in &mut self.checkpoints {
            if pos_lt(cp, &end) {
                *cp = end.clone();
            }
        }
        self.report.applied += self.group_rows as u64;
        self.cfg
            .live
            .applied
            .store(self.report.applied, AtomicOrdering::Relaxed);
        self.open.push((
            Group {
                id,
                rows: self.group_rows,
                heartbeat: self.group_heartbeat.take(),
            },
            0,
        ));
        self.group_rows = 0;
        self.group_started = None;
        Ok(())
    }

    pub(super) fn drain_acks(&mut self) -> Result<(), FerryError> {
        while let Ok(ack) = self.acks.try_recv() {
            self.on_ack(ack)?;
        }
        Ok(())
    }

    pub(super) fn on_ack(&mut self, ack: Ack) -> Result<(), FerryError> {
        match ack {
            Ack::Failed { worker, error } => {
                tracing::warn!(worker, error = %error, "apply worker failed");
                Err(error)
            }
            Ack::Committed { group } => {
                let workers = self.senders.len().max(1) as u32;
                if let Some(i) = self.open.iter().position(|(g, _)| g.id == group) {
                    self.open[i].1 += 1;
                    if self.open[i].1 >= workers {
                        let (g, _) = self.open.remove(i);
                        if g.rows > 0 {
                            self.report.applied_ms = self.started.elapsed().as_millis() as u64;
                        }
                        if let Some((ts, read_at)) = g.heartbeat {
                            let now_src = now_ms() as i64 - self.offset_ms;
                            let lag = (now_src - ts).max(0) as u64;
                            let apply = read_at.elapsed().as_millis() as u64;
                            self.report.lag_ms = Some(lag);
                            self.report.apply_lag_ms = Some(apply.min(lag));
                            self.report.read_lag_ms = Some(lag.saturating_sub(apply));
                            self.report.lag_samples.push(lag);
                            self.cfg.live.lag_ms.store(lag, AtomicOrdering::Relaxed);
                            if lag.saturating_sub(apply) < CAUGHT_UP_READ_LAG_MS {
                                self.caught_up = true;
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Wait until every worker acknowledged every group sent.
    pub(super) async fn wait_all(&mut self) -> Result<(), FerryError> {
        while !self.open.is_empty() {
            match self.acks.recv().await {
                Some(ack) => self.on_ack(ack)?,
                None => {
                    return Err(FerryError::Internal(
                        "apply workers stopped before committing".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// A statement of its own at `start..end`: DDL on a replicated table is
    /// applied between two checkpoints; anything else only moves the position.
    pub(super) async fn statement(
        &mut self,
        schema: &str,
        sql: &str,
        start: &BinlogPosition,
        end: &BinlogPosition,
    ) -> Result<bool, FerryError> {
        let parsed = ddl::parse(sql, schema).filter(|d| !d.temporary);
        let relevant = parsed.as_ref().filter(|d| {
            d.names
                .iter()
                .any(|n| (self.cfg.mapper)(&n.db, &n.table).is_some())
        });
        let Some(d) = relevant else {
            if parsed.is_none() && !sql.trim().is_empty() {
                tracing::info!(statement = %sql.chars().take(200).collect::<String>(), "not a table DDL of the replicated tables; skipped");
            }
            self.group_end = Some(end.clone());
            return Ok(false);
        };
        let already = !self.checkpoints.iter().any(|cp| pos_lt(cp, end));
        if already {
            return Ok(false);
        }
        // Barrier: everything before the statement is committed first.
        if self.checkpoints.iter().any(|cp| pos_lt(cp, start)) {
            self.group_end = Some(start.clone());
        }
        self.commit_group().await?;
        self.wait_all().await?;
        if let Some(dirty) = self.dirty.as_mut() {
            for n in &d.names {
                dirty.touch_all(&n.db, &n.table);
            }
            dirty.flush().await?;
        }
        let translated = self.translate(d, sql);
        let marker = start.to_string();
        let retry = self.ddl_pending.as_deref() == Some(marker.as_str());
        let link = self.link.clone();
        let workers = self.checkpoints.len() as u64;
        let conn = self
            .ddl_conn
            .as_mut()
            .ok_or_else(|| FerryError::Internal("no DDL connection".into()))?;
        link.mark_ddl(conn, &marker).await?;
        // The statement as the source ran it (backslash escapes and all).
        conn.query_drop("SET SESSION sql_mode = @@GLOBAL.sql_mode")
            .await
            .map_err(|e| classify(e, "target: DDL session"))?;
        failpoint_for(&link.task_id, "ddl.before_exec")?;
        if let Err(e) = conn.query_drop(&translated).await {
            let tolerated = retry && is_already_done(&e);
            if !tolerated {
                return Err(FerryError::SchemaIncompatible(format!(
                    "the {} link stops at DDL from the source at {start}: `{translated}` failed on the target: {e}. \
                     Apply an equivalent statement on the target by hand, then restart the task (it resumes after this statement), \
                     or exclude the table.",
                    link.direction.as_str()
                )));
            }
            tracing::info!(statement = %translated, error = %e, "DDL was already applied before a restart");
        }
        failpoint_for(&link.task_id, "ddl.after_exec")?;
        conn.query_drop("START TRANSACTION")
            .await
            .map_err(|e| classify(e, "target: DDL checkpoint"))?;
        link.advance(conn, None, workers, end, 0).await?;
        conn.query_drop("COMMIT")
            .await
            .map_err(|e| classify(e, "target: DDL checkpoint"))?;
        self.ddl_pending = None;
        for cp in &mut self.checkpoints {
            *cp = end.clone();
        }
        tracing::info!(statement = %translated, "applied DDL");
        Ok(true)
    }

    pub(super) fn translate(&self, d: &ddl::Ddl, sql: &str) -> String {
        let mapper = self.cfg.mapper.clone();
        let map = move |db: &str, t: &str| match mapper(db, t) {
            Some(n) => (n.db, n.table),
            None => (db.to_string(), t.to_string()),
        };
        let _ = &self.target;
        let text = self.rewrite_names(d, sql, map);
        match &self.cfg.ddl_target {
            Some((dialect, ctx)) => {
                let (out, notes) = crate::dialect::translate_statement(&text, *dialect, ctx);
                for n in notes {
                    tracing::info!(statement = %out, "DDL translated for the target: {n}");
                }
                out
            }
            None => text,
        }
    }

    pub(super) fn rewrite_names(
        &self,
        d: &ddl::Ddl,
        sql: &str,
        map: impl Fn(&str, &str) -> (String, String),
    ) -> String {
        match d.kind {
            DdlKind::DropTable
                if d.names
                    .iter()
                    .any(|n| (self.cfg.mapper)(&n.db, &n.table).is_none()) =>
            {
                // Drop only the replicated tables.
                let names: Vec<String> = d
                    .names
                    .iter()
                    .filter_map(|n| (self.cfg.mapper)(&n.db, &n.table))
                    .map(|n| qualified(&n.db, &n.table))
                    .collect();
                format!("DROP TABLE IF EXISTS {}", names.join(", "))
            }
            _ => d.rewrite(sql, map),
        }
    }
}

/// Server errors that mean "this DDL already ran": table exists, unknown
/// table, duplicate column or key, cannot drop a missing column or key.
pub(super) fn is_already_done(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(se) if matches!(se.code, 1050 | 1051 | 1060 | 1061 | 1091 | 1146 | 1826))
}

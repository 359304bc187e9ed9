//! Reading a source's binlog as a replica does, for MariaDB and MySQL.
//!
//! Invariant: the reader hands out, in binlog order, every row change of
//! the tables its filter selects, bracketed by [`BinlogEvent::Begin`] and
//! [`BinlogEvent::Commit`]; a `Commit` (or a [`BinlogEvent::Statement`])
//! carries the position right after the transaction, which is the only kind
//! of position a checkpoint may hold (a transaction is never split). A
//! position that is no longer on the source is [`FerryError::BinlogPurged`],
//! never a silent skip.
//!
//! Flavour notes (see FIELD-NOTES): MariaDB sends V1 rows events (23-25),
//! MySQL 8 V2 (30-32); MariaDB GTID events (162) are parsed here by hand;
//! without `@mariadb_slave_capability=4` MariaDB substitutes `BEGIN` and
//! `# Dummy event` query events, which are skipped, never applied; the first
//! (fake) rotate's file name is the one asked for.

pub mod ddl;
pub mod decode;
#[cfg(test)]
mod v2_tests;

use std::collections::{BTreeMap, VecDeque};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::position::BinlogPosition;
use ferry_core::FerryError;
use futures::StreamExt;
use mysql_async::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql_async::prelude::*;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Sid, Value};

use crate::conn::{classify, quote_str, server_info, Endpoint};
use crate::FastMap;
use decode::{convert, table_info, SchemaCache};
pub use decode::{ColumnInfo, Decode, LiteralKind, NamesFrom, TableInfo};

/// One row change, full images in column order.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOp {
    Insert(Vec<Value>),
    Update(Vec<Value>, Vec<Value>),
    Delete(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub table: Arc<TableInfo>,
    pub op: RowOp,
}

/// What the reader hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum BinlogEvent {
    /// A transaction starts at `start` (the position of its first event).
    Begin { start: BinlogPosition },
    /// Row changes of selected tables (one rows event).
    Rows(Vec<RowChange>),
    /// The transaction ends; `end` is where the next one starts. `when` is the source's commit time (s).
    Commit { end: BinlogPosition, when: u32 },
    /// A statement of its own (DDL and the like), with the default database it ran in.
    Statement {
        schema: String,
        sql: String,
        start: BinlogPosition,
        end: BinlogPosition,
    },
    /// Nothing new for a while: the server's heartbeat; `position` is where the reader is.
    Heartbeat { position: BinlogPosition },
}

/// Which tables the reader decodes; the others are skipped unread.
pub type TableFilter = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct ReaderOptions {
    /// Unique among the source's replicas (see [`server_id_for`]).
    pub server_id: u32,
    /// How often an idle server sends a heartbeat.
    pub heartbeat: Duration,
    /// No event (not even a heartbeat) for this long: the connection is dead.
    pub read_timeout: Duration,
    pub filter: TableFilter,
    /// Key columns for tables without a primary or unique key (the task's
    /// `objects.keys`), by (db, table).
    pub declared_keys: Arc<BTreeMap<(String, String), Vec<String>>>,
}

impl ReaderOptions {
    pub fn new(server_id: u32, filter: TableFilter) -> ReaderOptions {
        ReaderOptions {
            server_id,
            heartbeat: Duration::from_secs(1),
            read_timeout: Duration::from_secs(30),
            filter,
            declared_keys: Arc::default(),
        }
    }
}

/// A replica server id for one reader of one link: stable for (task, epoch),
/// never 0, 1 or 2 (the test servers' own ids), below 2^31.
pub fn server_id_for(task_id: &str, epoch: u64) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in task_id.bytes().chain(epoch.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    1_000 + (h % 2_000_000_000) as u32
}

/// GTID state as the reader advances: MariaDB `domain-server-seq` per domain,
/// or MySQL's last `uuid:gno` (not a full executed set).
#[derive(Debug, Clone, Default)]
struct GtidState {
    mariadb: BTreeMap<u32, (u32, u64)>,
    mysql_last: Option<String>,
}

impl GtidState {
    fn parse(s: Option<&str>, is_mariadb: bool) -> GtidState {
        let mut g = GtidState::default();
        let Some(s) = s else { return g };
        if !is_mariadb {
            g.mysql_last = Some(s.to_string()).filter(|s| !s.is_empty());
            return g;
        }
        for part in s.split(',') {
            let f: Vec<&str> = part.trim().split('-').collect();
            if let [d, srv, n] = f[..] {
                if let (Ok(d), Ok(srv), Ok(n)) = (d.parse(), srv.parse(), n.parse()) {
                    g.mariadb.insert(d, (srv, n));
                }
            }
        }
        g
    }

    /// `domain-server-seq` per domain, comma-separated. (Rendered for every
    /// transaction's start and end: into one string, without formatting.)
    fn render(&self) -> Option<String> {
        if !self.mariadb.is_empty() {
            let mut out = String::with_capacity(32 * self.mariadb.len());
            for (i, (d, (s, n))) in self.mariadb.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(itoa::Buffer::new().format(*d));
                out.push('-');
                out.push_str(itoa::Buffer::new().format(*s));
                out.push('-');
                out.push_str(itoa::Buffer::new().format(*n));
            }
            return Some(out);
        }
        self.mysql_last.clone()
    }
}

/// MariaDB's GTID event (type 162): 8 bytes sequence number, 4 bytes domain, 1 byte flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariadbGtid {
    pub seq: u64,
    pub domain: u32,
    pub flags: u8,
}

impl MariadbGtid {
    /// The group is one statement without BEGIN/COMMIT (DDL).
    pub const FL_STANDALONE: u8 = 1;

    pub fn parse(data: &[u8]) -> Option<MariadbGtid> {
        let seq = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
        let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
        Some(MariadbGtid {
            seq,
            domain,
            flags: *data.get(12)?,
        })
    }
}

const QUERY_EVENT: u8 = 2;
const ROTATE_EVENT: u8 = 4;
const XID_EVENT: u8 = 16;
const TABLE_MAP_EVENT: u8 = 19;
const HEARTBEAT_EVENT: u8 = 27;
const MYSQL_GTID_EVENT: u8 = 33;
const MYSQL_ANONYMOUS_GTID_EVENT: u8 = 34;
const PARTIAL_UPDATE_ROWS_EVENT: u8 = 39;
/// MySQL 8's `binlog_transaction_compression=ON` wraps a transaction in one of these.
const TRANSACTION_PAYLOAD_EVENT: u8 = 40;
const MYSQL_GTID_TAGGED_EVENT: u8 = 42;
const MARIADB_GTID_EVENT: u8 = 162;
const MARIADB_QUERY_COMPRESSED: u8 = 165;
const ROWS_EVENTS: [u8; 6] = [23, 24, 25, 30, 31, 32];
const ARTIFICIAL: u16 = 0x20;

/// A binlog reader positioned at a transaction boundary: a replica
/// connection to the source feeding a [`Decoder`].
pub struct BinlogReader {
    stream: BinlogStream,
    meta: Conn,
    opts: ReaderOptions,
    is_mariadb: bool,
    asked_file: Option<String>,
    dec: Decoder,
    /// Events at the front of the decoder's queue whose values the source has
    /// already converted (see [`BinlogReader::convert_ahead`]).
    converted: usize,
    /// While those are handed out: the position before the read-ahead.
    held: Option<BinlogPosition>,
    /// What the stream gave during a read-ahead after its last event (an
    /// error or its end), kept for the next read.
    stashed: Option<Option<Result<Event, mysql_async::Error>>>,
}

/// Most binlog events, and bytes of them, read ahead to convert their values
/// in one query (see [`BinlogReader::convert_ahead`]).
const CONVERT_AHEAD_EVENTS: usize = 1024;
const CONVERT_AHEAD_BYTES: usize = 8 << 20;

impl BinlogReader {
    /// Connect to `source` and start reading at `start` (a transaction
    /// boundary). An empty `start.file` with a GTID starts from that GTID
    /// state (MariaDB `d-s-n[,..]`, MySQL `uuid:1-5[,..]`).
    pub async fn open(
        source: &Endpoint,
        start: &BinlogPosition,
        opts: ReaderOptions,
    ) -> Result<BinlogReader, FerryError> {
        let who = source.describe();
        let mut meta = source.connect().await?;
        let info = server_info(&mut meta, &who).await?;
        let schemas = SchemaCache::new(&mut meta, info.is_mariadb).await?;
        let by_gtid = start.file.is_empty();
        if !by_gtid {
            check_not_purged(&mut meta, &who, start).await?;
        }
        let mut conn = source.connect().await?;
        let mut setup = vec![format!(
            "SET @master_heartbeat_period = {}",
            opts.heartbeat.as_nanos().max(1_000_000)
        )];
        if info.is_mariadb {
            setup.push("SET @mariadb_slave_capability = 4".to_string());
            if by_gtid {
                let g = start.gtid.clone().unwrap_or_default();
                setup.push(format!("SET @slave_connect_state = {}", quote_str(&g)));
                setup.push("SET @slave_gtid_strict_mode = 0".to_string());
                setup.push("SET @slave_gtid_ignore_duplicates = 0".to_string());
            }
        }
        for sql in &setup {
            conn.query_drop(sql)
                .await
                .map_err(|e| classify(e, &format!("{who}: {sql}")))?;
        }
        let mut req = BinlogStreamRequest::new(opts.server_id);
        if !by_gtid {
            req = req.with_filename(start.file.as_bytes()).with_pos(start.pos);
        } else if !info.is_mariadb {
            let mut sids = Vec::new();
            for part in start
                .gtid
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter(|p| !p.trim().is_empty())
            {
                sids.push(Sid::from_str(part.trim()).map_err(|e| {
                    FerryError::BadTask(format!("{who}: GTID set \"{part}\" cannot be read: {e}"))
                })?);
            }
            req = req.with_gtid().with_gtid_set(sids);
        }
        let stream = conn
            .get_binlog_stream(req)
            .await
            .map_err(|e| purged_or(e, &who, start))?;
        let mut start = start.clone();
        if by_gtid {
            start.pos = 4;
        }
        let dec = Decoder::new(who, &start, info.is_mariadb, schemas, &opts);
        Ok(BinlogReader {
            stream,
            meta,
            opts,
            is_mariadb: info.is_mariadb,
            asked_file: Some(start.file.clone()).filter(|f| !f.is_empty()),
            dec,
            converted: 0,
            held: None,
            stashed: None,
        })
    }

    /// Where the reader is: after the last event read; while events read
    /// ahead are handed out, before the read-ahead (never past an event not
    /// yet handed out).
    pub fn position(&self) -> BinlogPosition {
        match &self.held {
            Some(p) => p.clone(),
            None => self.dec.position(),
        }
    }

    pub fn is_mariadb(&self) -> bool {
        self.is_mariadb
    }

    /// The next event. Waits for the source; fails with `Ferry.Transient` when
    /// not even a heartbeat arrived within the read timeout.
    pub async fn next(&mut self) -> Result<BinlogEvent, FerryError> {
        loop {
            if self.converted == 0 && self.dec.queue.front().is_some_and(by_source) {
                self.convert_ahead().await?;
            }
            if let Some(e) = self.dec.queue.pop_front() {
                self.converted = self.converted.saturating_sub(1);
                if self.converted == 0 {
                    self.held = None;
                }
                return Ok(e);
            }
            // An event already buffered is taken without arming the read
            // timeout's timer (the stream keeps its read state across polls).
            let ready = match self.stashed.take() {
                Some(ev) => Some(ev),
                None => futures::FutureExt::now_or_never(self.stream.next()),
            };
            let ev = match ready {
                Some(ev) => Ok(ev),
                None => tokio::time::timeout(self.opts.read_timeout, self.stream.next()).await,
            };
            let ev = match ev {
                Err(_) => {
                    return Err(FerryError::Transient(format!(
                    "{}: no binlog event or heartbeat for {:?}; the connection is presumed dead",
                    self.dec.source, self.opts.read_timeout
                )))
                }
                Ok(None) => {
                    return Err(FerryError::Transient(format!(
                        "{}: the binlog stream ended",
                        self.dec.source
                    )))
                }
                Ok(Some(Err(e))) => return Err(purged_or(e, &self.dec.source, &self.position())),
                Ok(Some(Ok(ev))) => ev,
            };
            self.handle(ev).await?;
        }
    }

    /// The front event has values the source converts ([`Decode::Source`]):
    /// decode the events the stream already holds too (without waiting, up
    /// to [`CONVERT_AHEAD_EVENTS`]), then convert all of them in one query
    /// rather than one per rows event. Measured with the engine (`cdc_apply`,
    /// 4 workers) on 20,000 single-row updates of a 10,000-row table with two
    /// Chinese text columns, 3 rounds each: utf8mb4 0.38-0.61 s until applied;
    /// gbk with a query per rows event 1.43-2.11 s, read ahead 1.02-1.11 s, and
    /// each distinct value converted once 0.84-0.85 s.
    async fn convert_ahead(&mut self) -> Result<(), FerryError> {
        self.held = Some(self.dec.position());
        let mut bytes = 0;
        for _ in 0..CONVERT_AHEAD_EVENTS {
            if bytes >= CONVERT_AHEAD_BYTES {
                break;
            }
            match futures::FutureExt::now_or_never(self.stream.next()) {
                Some(Some(Ok(ev))) => {
                    bytes += ev.header().event_size() as usize;
                    self.handle(ev).await?;
                }
                Some(other) => {
                    self.stashed = Some(other);
                    break;
                }
                None => break,
            }
        }
        decode_by_source(&mut self.meta, &self.dec.source, self.dec.queue.iter_mut()).await?;
        self.converted = self.dec.queue.len();
        Ok(())
    }

    /// Close the stream (the source forgets this replica).
    pub async fn close(self) {
        let _ = self.stream.close().await;
        let _ = self.meta.disconnect().await;
    }

    /// The two things the decoder cannot do alone: a rotate (the first, fake
    /// one may need the server's list of binlog files) and loading a table's
    /// facts from `information_schema` before its table map is decoded.
    async fn handle(&mut self, ev: Event) -> Result<(), FerryError> {
        match ev.header().event_type_raw() {
            ROTATE_EVENT => {
                self.dec.verify_checksum(&ev)?;
                return self.on_rotate(&ev).await;
            }
            TABLE_MAP_EVENT => {
                if let Some((db, table)) = self.dec.facts_needed(&ev) {
                    self.dec.schemas.facts(&mut self.meta, &db, &table).await?;
                }
            }
            _ => {}
        }
        let stream = &self.stream;
        self.dec.handle(&ev, |id| stream.get_tme(id))
    }

    async fn on_rotate(&mut self, ev: &Event) -> Result<(), FerryError> {
        let h = ev.header();
        let artificial = h.flags_raw() & ARTIFICIAL != 0 || h.log_pos() == 0;
        let Ok(Some(EventData::RotateEvent(r))) = ev.read_data() else {
            return Ok(());
        };
        let name = r.name().into_owned();
        if artificial {
            // The first (fake) rotate's name may carry 4 checksum bytes: prefer the name asked for.
            self.dec.file = match self.asked_file.take() {
                Some(asked) => asked,
                None => self.clean_file_name(&name).await?,
            };
            if r.position() > 4 {
                self.dec.pos = r.position();
            }
        } else {
            self.asked_file = None;
            self.dec.file = name;
            self.dec.pos = r.position();
        }
        Ok(())
    }

    /// A fake rotate's name with its trailing checksum bytes removed: the
    /// longest binlog file name of the server that starts it.
    async fn clean_file_name(&mut self, raw: &str) -> Result<String, FerryError> {
        let logs = binary_logs(&mut self.meta, &self.dec.source).await?;
        Ok(logs
            .into_iter()
            .filter(|f| raw.starts_with(f.as_str()))
            .max_by_key(String::len)
            .unwrap_or_else(|| raw.to_string()))
    }
}

/// Whether `e` changes a table with [`Decode::Source`] columns.
fn by_source(e: &BinlogEvent) -> bool {
    match e {
        BinlogEvent::Rows(changes) => changes.first().is_some_and(|c| {
            c.table
                .columns
                .iter()
                .any(|c| matches!(c.decode_from, Some(Decode::Source { .. })))
        }),
        _ => false,
    }
}

/// Most values (or hex digits) in one conversion query of [`decode_by_source`].
const CONVERT_VALUES: usize = 1_000;
const CONVERT_HEX: usize = 4 << 20;

/// Text values of [`Decode::Source`] columns (character sets Ferry does not
/// decode itself) turned into UTF-8 by the source server, on the reader's
/// metadata connection (a utf8mb4 session): the conversion the copy's SELECT
/// makes, in as few queries as the values allow.
async fn decode_by_source<'e>(
    meta: &mut Conn,
    who: &str,
    events: impl Iterator<Item = &'e mut BinlogEvent>,
) -> Result<(), FerryError> {
    let mut pending: Vec<(&mut Value, &str, &str, &TableInfo)> = Vec::new();
    let changes = events.filter(|e| by_source(e)).flat_map(|e| match e {
        BinlogEvent::Rows(changes) => changes.iter_mut(),
        _ => [].iter_mut(),
    });
    for RowChange { table: t, op } in changes {
        let (a, b) = match op {
            RowOp::Insert(r) | RowOp::Delete(r) => (r, None),
            RowOp::Update(x, y) => (x, Some(y)),
        };
        for image in std::iter::once(a).chain(b) {
            for (v, c) in image.iter_mut().zip(&t.columns) {
                let Some(Decode::Source {
                    charset,
                    ascii_safe,
                }) = &c.decode_from
                else {
                    continue;
                };
                if matches!(v, Value::Bytes(b) if !(*ascii_safe && b.is_ascii())) {
                    pending.push((v, charset.as_str(), c.name.as_str(), t));
                }
            }
        }
    }
    // Each distinct value once: an update's images repeat every unchanged column.
    let mut distinct: FastMap<(&str, Vec<u8>), usize> = FastMap::default();
    let mut slots = Vec::with_capacity(pending.len());
    for (v, cs, col, t) in pending {
        let Value::Bytes(b) = std::mem::replace(v, Value::NULL) else {
            unreachable!("only byte values are pending")
        };
        let next = distinct.len();
        let i = *distinct.entry((cs, b)).or_insert(next);
        slots.push((v, i, cs, col, t));
    }
    let mut order: Vec<(&str, &[u8])> = vec![("", &[]); distinct.len()];
    for ((cs, b), &i) in &distinct {
        order[i] = (cs, b);
    }
    let mut text: Vec<Option<Vec<u8>>> = Vec::with_capacity(order.len());
    let mut rest = order.as_slice();
    while !rest.is_empty() {
        let mut sql = String::from("SELECT ");
        let mut n = 0;
        while n < rest.len().min(CONVERT_VALUES) && (n == 0 || sql.len() < CONVERT_HEX) {
            let (cs, b) = rest[n];
            if !decode::sql_charset(cs) {
                return Err(FerryError::SchemaIncompatible(format!(
                    "{who}: character set name {cs:?} cannot be written in SQL"
                )));
            }
            if n > 0 {
                sql.push(',');
            }
            decode::push_convert(&mut sql, b, cs);
            n += 1;
        }
        let ctx = || format!("{who}: converting {n} text value(s) to UTF-8");
        let row: mysql_async::Row = meta
            .query_first(&sql)
            .await
            .map_err(|e| classify(e, &ctx()))?
            .ok_or_else(|| FerryError::Transient(format!("{}: no row", ctx())))?;
        text.extend((0..n).map(|i| match row.get_opt::<Option<Vec<u8>>, _>(i) {
            Some(Ok(t)) => t,
            _ => None,
        }));
        rest = &rest[n..];
    }
    for (v, i, cs, col, t) in slots {
        let Some(Some(utf8)) = text.get(i) else {
            // The server gives NULL for bytes it cannot read in `cs`, and for a
            // result past its max_allowed_packet.
            return Err(FerryError::SchemaIncompatible(format!(
                "binlog rows of {}: column {col}: the source could not convert a value of {} \
                 bytes from {cs} to utf8mb4 (CONVERT returned NULL). Either the value is not \
                 valid {cs} (find the row with SELECT ... WHERE CONVERT({col} USING utf8mb4) \
                 IS NULL and correct it) or its text exceeds the source's max_allowed_packet \
                 (raise it: SET GLOBAL max_allowed_packet = ...)",
                t.name(),
                order[i].1.len()
            )));
        };
        *v = Value::Bytes(utf8.clone());
    }
    Ok(())
}

/// The part of the reader that needs no connection: binlog events in
/// (already parsed by mysql_common), Ferry's [`BinlogEvent`]s out, given the
/// facts of each table (loaded into `schemas` beforehand, see
/// [`Decoder::facts_needed`]). It tracks the position and the GTID state and
/// verifies each event's CRC32, which mysql_common strips but does not check.
pub struct Decoder {
    source: String,
    file: String,
    /// End of the last event read (the next event's start).
    pos: u64,
    gtid: GtidState,
    /// Inside a transaction (after a GTID or BEGIN, before its end).
    in_txn: bool,
    standalone: bool,
    txn_start: Option<BinlogPosition>,
    tables: FastMap<u64, Option<Arc<TableInfo>>>,
    schemas: SchemaCache,
    filter: TableFilter,
    declared_keys: Arc<BTreeMap<(String, String), Vec<String>>>,
    queue: VecDeque<BinlogEvent>,
    warned_names: bool,
}

impl Decoder {
    /// A decoder for the stream of `source` (a name for messages) starting at `start`.
    pub fn new(
        source: String,
        start: &BinlogPosition,
        is_mariadb: bool,
        schemas: SchemaCache,
        opts: &ReaderOptions,
    ) -> Decoder {
        Decoder {
            source,
            file: start.file.clone(),
            pos: start.pos,
            gtid: GtidState::parse(start.gtid.as_deref(), is_mariadb),
            in_txn: false,
            standalone: false,
            txn_start: None,
            tables: FastMap::default(),
            schemas,
            filter: opts.filter.clone(),
            declared_keys: opts.declared_keys.clone(),
            queue: VecDeque::new(),
            warned_names: false,
        }
    }

    /// Where the decoder is: after the last event taken.
    pub fn position(&self) -> BinlogPosition {
        self.at(self.pos)
    }

    /// The next event handed out, if any.
    pub fn pop(&mut self) -> Option<BinlogEvent> {
        self.queue.pop_front()
    }

    /// The position `pos` in the current file, with the GTID state as it stands.
    fn at(&self, pos: u64) -> BinlogPosition {
        BinlogPosition {
            file: self.file.clone(),
            pos,
            gtid: self.gtid.render(),
        }
    }

    fn here(&self) -> BinlogPosition {
        self.position()
    }

    /// The table (db, name) whose facts must be in `schemas` before
    /// [`Decoder::handle`] takes this table map event; `None` when there is
    /// nothing to load (another event, a table the filter skips, a table
    /// already described or already loaded).
    pub fn facts_needed(&self, ev: &Event) -> Option<(String, String)> {
        let Ok(Some(EventData::TableMapEvent(tme))) = ev.read_data() else {
            return None;
        };
        let (db, table) = (tme.database_name(), tme.table_name());
        if self.known(&tme)
            || !(self.filter)(&db, &table)
            || self.schemas.cached(&db, &table).is_some()
        {
            return None;
        }
        Some((db.into_owned(), table.into_owned()))
    }

    /// An event whose CRC32 does not match its bytes is an error, never read.
    pub fn verify_checksum(&self, ev: &Event) -> Result<(), FerryError> {
        use mysql_common::binlog::consts::BinlogChecksumAlg;
        let (Some(stored), Ok(Some(alg))) = (ev.checksum(), ev.footer().get_checksum_alg()) else {
            return Ok(());
        };
        if alg != BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32 {
            return Ok(());
        }
        let (stored, computed) = (u32::from_le_bytes(stored), ev.calc_checksum(alg));
        if stored == computed {
            return Ok(());
        }
        let h = ev.header();
        Err(FerryError::Transient(format!(
            "{}: the binlog event of type {} ending at {}:{} fails its CRC32 check (stored {stored:08x}, \
             computed {computed:08x}): it was damaged on the way or on the source's disk. A retry reads it \
             again; if it fails again, the source's binlog file is damaged at that position.",
            self.source,
            h.event_type_raw(),
            self.file,
            h.log_pos()
        )))
    }

    /// Take one event (not a rotate: see [`BinlogReader`]); `tme_of` finds
    /// the table map a rows event refers to (the parser keeps them).
    pub fn handle<'t>(
        &mut self,
        ev: &Event,
        tme_of: impl Fn(u64) -> Option<&'t TableMapEvent<'static>>,
    ) -> Result<(), FerryError> {
        self.verify_checksum(ev)?;
        let h = ev.header();
        let kind = h.event_type_raw();
        let log_pos = u64::from(h.log_pos());
        let artificial = h.flags_raw() & ARTIFICIAL != 0 || log_pos == 0;
        // Where this event starts, built only where it is used: it carries the
        // GTID state rendered as text, and most events (table maps, rows inside
        // a transaction, commits) never need it.
        let start_pos = log_pos.saturating_sub(u64::from(h.event_size()));
        if kind == ROTATE_EVENT {
            return Ok(());
        }
        if !artificial && kind != HEARTBEAT_EVENT {
            self.pos = log_pos;
        }
        match kind {
            HEARTBEAT_EVENT if !self.in_txn => {
                self.queue.push_back(BinlogEvent::Heartbeat { position: self.here() });
            }
            MARIADB_GTID_EVENT => {
                let start = self.at(start_pos);
                let g = MariadbGtid::parse(ev.data()).ok_or_else(|| {
                    FerryError::Internal(format!("{}: a MariaDB GTID event at {start} is too short", self.source))
                })?;
                self.gtid.mariadb.insert(g.domain, (h.server_id(), g.seq));
                self.begin(start, g.flags & MariadbGtid::FL_STANDALONE != 0);
            }
            MYSQL_GTID_EVENT | MYSQL_GTID_TAGGED_EVENT => {
                let start = self.at(start_pos);
                if let Ok(Some(EventData::GtidEvent(g))) = ev.read_data() {
                    self.gtid.mysql_last = Some(format!("{}:{}", uuid_text(&g.sid()), g.gno()));
                }
                // Standalone until a BEGIN says otherwise (MySQL logs DDL right after its GTID).
                self.begin(start, true);
            }
            MYSQL_ANONYMOUS_GTID_EVENT => self.begin(self.at(start_pos), true),
            QUERY_EVENT => self.on_query(ev, self.at(start_pos))?,
            XID_EVENT => self.commit(h.timestamp()),
            TABLE_MAP_EVENT => self.on_table_map(ev)?,
            k if ROWS_EVENTS.contains(&k) => self.on_rows(ev, start_pos, tme_of)?,
            PARTIAL_UPDATE_ROWS_EVENT => {
                return Err(FerryError::SchemaIncompatible(format!(
                    "{}: partial JSON updates in the binlog are not supported; set binlog_row_value_options='' on the source",
                    self.source
                )))
            }
            TRANSACTION_PAYLOAD_EVENT => {
                // Skipping it would lose the transaction's row changes without a word.
                return Err(FerryError::SchemaIncompatible(format!(
                    "{}: a compressed transaction (binlog_transaction_compression=ON) at {}, which Ferry cannot \
                     read; set binlog_transaction_compression=OFF on the source and re-copy the tables changed since",
                    self.source,
                    self.at(start_pos)
                )))
            }
            k if (MARIADB_QUERY_COMPRESSED..=171).contains(&k) => {
                return Err(FerryError::SchemaIncompatible(format!(
                    "{}: the binlog is compressed (log_bin_compress=ON), which Ferry cannot read; set log_bin_compress=OFF on the source",
                    self.source
                )))
            }
            _ => {}
        }
        Ok(())
    }

    fn begin(&mut self, start: BinlogPosition, standalone: bool) {
        self.in_txn = true;
        self.standalone = standalone;
        self.txn_start = Some(start.clone());
        self.queue.push_back(BinlogEvent::Begin { start });
    }

    fn commit(&mut self, when: u32) {
        if self.in_txn {
            self.in_txn = false;
            self.txn_start = None;
            self.queue.push_back(BinlogEvent::Commit {
                end: self.here(),
                when,
            });
        }
    }
    fn on_query(&mut self, ev: &Event, start: BinlogPosition) -> Result<(), FerryError> {
        let Ok(Some(EventData::QueryEvent(q))) = ev.read_data() else {
            return Ok(());
        };
        let sql = q.query().into_owned();
        let word = ddl::first_words(&sql, 2);
        match word.first().map(String::as_str) {
            Some("BEGIN") => {
                if !self.in_txn {
                    self.begin(start, false);
                }
                self.standalone = false;
                return Ok(());
            }
            Some("COMMIT") => {
                self.commit(ev.header().timestamp());
                return Ok(());
            }
            Some("ROLLBACK") if word.get(1).map(String::as_str) != Some("TO") => {
                self.commit(ev.header().timestamp());
                return Ok(());
            }
            _ => {}
        }
        if sql.trim_start().starts_with('#') || (self.in_txn && !self.standalone) {
            // Substitute events (`# Dummy event`), SAVEPOINT and the like inside a transaction.
            return Ok(());
        }
        let group_start = self.txn_start.take().unwrap_or(start.clone());
        if !self.in_txn {
            self.queue.push_back(BinlogEvent::Begin {
                start: group_start.clone(),
            });
        }
        self.in_txn = false;
        self.standalone = false;
        let schema = q.schema().into_owned();
        for (db, table) in ddl::parse(&sql, &schema)
            .map(|d| d.tables())
            .unwrap_or_default()
        {
            self.schemas.forget(&db, &table);
            self.tables
                .retain(|_, t| t.as_ref().is_none_or(|t| !(t.db == db && t.table == table)));
        }
        self.queue.push_back(BinlogEvent::Statement {
            schema,
            sql,
            start: group_start,
            end: self.here(),
        });
        Ok(())
    }

    /// The table map describes a table already described the same way.
    /// (Asked for every rows event's table map: the names are compared as
    /// bytes, without converting them to text; a name that is not UTF-8 is
    /// never known, and is described again, the slow but correct path.)
    fn known(&self, tme: &TableMapEvent<'_>) -> bool {
        match self.tables.get(&tme.table_id()) {
            Some(Some(t)) => {
                t.db.as_bytes() == tme.database_name_raw()
                    && t.table.as_bytes() == tme.table_name_raw()
                    && t.columns.len() as u64 == tme.columns_count()
            }
            _ => false,
        }
    }

    fn on_table_map(&mut self, ev: &Event) -> Result<(), FerryError> {
        let Ok(Some(EventData::TableMapEvent(tme))) = ev.read_data() else {
            return Ok(());
        };
        if self.known(&tme) {
            return Ok(());
        }
        let id = tme.table_id();
        let (db, table) = (
            tme.database_name().into_owned(),
            tme.table_name().into_owned(),
        );
        if !(self.filter)(&db, &table) {
            self.tables.insert(id, None);
            return Ok(());
        }
        let Some(facts) = self.schemas.cached(&db, &table) else {
            return Err(FerryError::Internal(format!(
                "{}: the columns of {db}.{table} were not read before its table map",
                self.source
            )));
        };
        let declared = self.declared_keys.get(&(db.clone(), table.clone()));
        let info = table_info(&tme, &facts, &self.schemas, declared.map(Vec::as_slice))?;
        if info.names_from == NamesFrom::InformationSchema && !self.warned_names {
            self.warned_names = true;
            tracing::warn!(
                source = %self.source,
                table = %info.name(),
                "the source does not log column names (binlog_row_metadata is not FULL): names are taken from \
                 information_schema, which is wrong for events older than a later ALTER TABLE"
            );
        }
        self.tables.insert(id, Some(Arc::new(info)));
        Ok(())
    }

    fn on_rows<'t>(
        &mut self,
        ev: &Event,
        start_pos: u64,
        tme_of: impl Fn(u64) -> Option<&'t TableMapEvent<'static>>,
    ) -> Result<(), FerryError> {
        let Ok(Some(EventData::RowsEvent(rows))) = ev.read_data() else {
            return Err(FerryError::Internal(format!(
                "{}: unreadable rows event at {}",
                self.source,
                self.at(start_pos)
            )));
        };
        let Some(Some(table)) = self.tables.get(&rows.table_id()).cloned() else {
            return Ok(());
        };
        if !self.in_txn {
            self.begin(self.at(start_pos), false);
        }
        let Some(tme) = tme_of(rows.table_id()) else {
            return Err(FerryError::Internal(format!(
                "{}: rows event at {} without its table map",
                self.source,
                self.at(start_pos)
            )));
        };
        let mut out = Vec::new();
        let images = if matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)) {
            // MySQL's partial JSON updates: mysql_common's own row reader.
            rows_via_mysql_common(&rows, tme, &table)
        } else {
            decode_images(&rows, tme, &table)
        };
        let images = images.map_err(|e| {
            FerryError::SchemaIncompatible(format!(
                "{}: rows of {} at {} cannot be decoded: {e}",
                self.source,
                table.name(),
                self.at(start_pos)
            ))
        })?;
        for (before, after) in images {
            let op = match (before, after) {
                (None, Some(a)) => RowOp::Insert(a),
                (Some(b), Some(a)) => RowOp::Update(b, a),
                (Some(b), None) => RowOp::Delete(b),
                (None, None) => continue,
            };
            out.push(RowChange {
                table: table.clone(),
                op,
            });
        }
        if !out.is_empty() {
            self.queue.push_back(BinlogEvent::Rows(out));
        }
        Ok(())
    }
}

/// A row's before and after images, each one value per column of the table.
type Images = Vec<(Option<Vec<Value>>, Option<Vec<Value>>)>;

/// Why an image cannot be read: the source logs partial images, or the bytes
/// do not parse.
#[derive(Debug)]
enum ImageError {
    Partial(usize, usize),
    Parse(std::io::Error),
    Convert(FerryError),
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageError::Partial(have, of) => write!(
                f,
                "the images carry {have} of {of} columns: the source must log full row images; set \
                 binlog_row_image=FULL"
            ),
            ImageError::Parse(e) => write!(f, "{e}"),
            ImageError::Convert(e) => write!(f, "{e}"),
        }
    }
}

/// Decode every row of a rows event straight from its bytes: the column
/// types, metadata and signedness are taken from the table map once per
/// event, and each value is parsed by mysql_common's `BinlogValue`. (Its own
/// row reader builds a full `Column`, names and all, for every value of every
/// row and reads the table map's optional metadata again per row: in a
/// profile of the CDC bench, most of Ferry's allocations.)
fn decode_images(
    rows: &RowsEventData<'_>,
    tme: &TableMapEvent<'_>,
    t: &TableInfo,
) -> Result<Images, ImageError> {
    use mysql_common::io::ParseBuf;

    let n = t.columns.len();
    let declared = rows.num_columns() as usize;
    if declared != n {
        return Err(ImageError::Partial(declared, n));
    }
    let mut kinds = Vec::with_capacity(n);
    for (i, col) in t.columns.iter().enumerate() {
        let ty = tme.get_column_type(i).ok().flatten().ok_or_else(|| {
            ImageError::Parse(std::io::Error::other(format!("no type for column {i}")))
        })?;
        kinds.push((ty, tme.get_column_metadata(i).unwrap_or(&[]), col.unsigned));
    }
    // Each image must carry every column (`binlog_row_image=FULL`).
    let full = |bits: Option<(usize, usize)>| -> Result<bool, ImageError> {
        match bits {
            None => Ok(false),
            Some((have, len)) if have == n && len >= n => Ok(true),
            Some((have, _)) => Err(ImageError::Partial(have, n)),
        }
    };
    let has_before = full(
        rows.columns_before_image()
            .map(|b| (b.count_ones(), b.len())),
    )?;
    let has_after = full(
        rows.columns_after_image()
            .map(|b| (b.count_ones(), b.len())),
    )?;
    let mut buf = ParseBuf(rows.rows_data());
    let mut out = Vec::new();
    while !buf.is_empty() {
        let before = if has_before {
            Some(read_image(&mut buf, &kinds, t)?)
        } else {
            None
        };
        let after = if has_after {
            Some(read_image(&mut buf, &kinds, t)?)
        } else {
            None
        };
        out.push((before, after));
    }
    Ok(out)
}

/// One full row image: the NULL bitmap, then each non-NULL value as its
/// column's type, metadata and signedness (`kinds`) say.
fn read_image<'d>(
    buf: &mut mysql_common::io::ParseBuf<'d>,
    kinds: &[(mysql_async::consts::ColumnType, &'d [u8], bool)],
    t: &TableInfo,
) -> Result<Vec<Value>, ImageError> {
    use mysql_common::binlog::value::BinlogValue;
    let n = kinds.len();
    let nulls: &[u8] = buf.parse(n.div_ceil(8)).map_err(ImageError::Parse)?;
    let mut out = Vec::with_capacity(n);
    for (i, (col, (ty, meta, unsigned))) in t.columns.iter().zip(kinds).enumerate() {
        let v = if nulls[i / 8] & (1 << (i % 8)) != 0 {
            BinlogValue::Value(Value::NULL)
        } else {
            buf.parse::<BinlogValue<'_>>((*ty, *meta, *unsigned, false))
                .map_err(ImageError::Parse)?
        };
        out.push(convert(t, col, v).map_err(ImageError::Convert)?);
    }
    Ok(out)
}

/// mysql_common's own row reader (kept for MySQL's partial JSON updates).
fn rows_via_mysql_common(
    rows: &RowsEventData<'_>,
    tme: &TableMapEvent<'_>,
    t: &TableInfo,
) -> Result<Images, ImageError> {
    let mut out = Vec::new();
    for row in rows.rows(tme) {
        let (before, after) = row.map_err(ImageError::Parse)?;
        let before = before.map(|r| image(t, r)).transpose()?;
        let after = after.map(|r| image(t, r)).transpose()?;
        out.push((before, after));
    }
    Ok(out)
}

fn image(
    t: &TableInfo,
    mut row: mysql_async::binlog::row::BinlogRow,
) -> Result<Vec<Value>, ImageError> {
    if row.len() != t.columns.len() {
        return Err(ImageError::Partial(row.len(), t.columns.len()));
    }
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in t.columns.iter().enumerate() {
        let v = row.take(i).ok_or_else(|| {
            ImageError::Convert(FerryError::Internal(format!(
                "{}: column {} missing",
                t.name(),
                col.name
            )))
        })?;
        out.push(convert(t, col, v).map_err(ImageError::Convert)?);
    }
    Ok(out)
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The binlog files the source still has.
pub async fn binary_logs(conn: &mut Conn, who: &str) -> Result<Vec<String>, FerryError> {
    let rows: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| classify(e, &format!("{who}: SHOW BINARY LOGS")))?;
    Ok(rows
        .into_iter()
        .filter_map(|mut r| r.take::<String, _>(0))
        .collect())
}

/// The source's current binlog position (`SHOW MASTER STATUS`, or
/// `SHOW BINARY LOG STATUS` on MySQL 8.4+), with its GTID state.
pub async fn current_position(conn: &mut Conn, who: &str) -> Result<BinlogPosition, FerryError> {
    let info = server_info(conn, who).await?;
    let status = if !info.is_mariadb && info.number >= (8, 4, 0) {
        "SHOW BINARY LOG STATUS"
    } else {
        "SHOW MASTER STATUS"
    };
    let row: Option<mysql_async::Row> = conn
        .query_first(status)
        .await
        .map_err(|e| classify(e, &format!("{who}: {status}")))?;
    let Some(mut row) = row else {
        return Err(FerryError::PrecheckFailed(format!(
            "{who}: binary logging is off; start the server with log_bin"
        )));
    };
    let file: String = row.take(0).unwrap_or_default();
    let pos: u64 = row.take(1).unwrap_or_default();
    let gtid: Option<String> = if info.is_mariadb {
        conn.query_first("SELECT @@gtid_binlog_pos")
            .await
            .map_err(|e| classify(e, who))?
    } else {
        row.take::<Option<String>, _>(4).flatten()
    };
    Ok(BinlogPosition {
        file,
        pos,
        gtid: gtid.filter(|g| !g.is_empty()),
    })
}

async fn check_not_purged(
    conn: &mut Conn,
    who: &str,
    start: &BinlogPosition,
) -> Result<(), FerryError> {
    let logs = binary_logs(conn, who).await?;
    if logs.contains(&start.file) {
        return Ok(());
    }
    Err(purged(
        who,
        start,
        &format!("the source's binlog files are {}", summarize(&logs)),
    ))
}

fn summarize(logs: &[String]) -> String {
    match (logs.first(), logs.last()) {
        (Some(a), Some(b)) if a != b => format!("{a} .. {b}"),
        (Some(a), _) => a.clone(),
        _ => "none".to_string(),
    }
}

fn purged(who: &str, at: &BinlogPosition, detail: &str) -> FerryError {
    FerryError::BinlogPurged(format!(
        "{who}: binlog file {} (position {at}) is no longer on the source ({detail}). The changes since then are \
         lost to replication. The way out: re-copy the affected tables with `ferry resume TASK_ID --recopy` (every \
         table copied again over the rows already on the target, nothing dropped, and the sync restarted from a new \
         snapshot point), and keep binlogs longer (binlog_expire_logs_seconds / expire_logs_days) than Ferry may \
         be down or lag.",
        if at.file.is_empty() { "for this GTID state" } else { at.file.as_str() }
    ))
}

fn purged_or(e: mysql_async::Error, who: &str, at: &BinlogPosition) -> FerryError {
    if let mysql_async::Error::Server(se) = &e {
        if se.code == 1236 {
            return purged(who, at, &format!("MySQL error 1236: {}", se.message));
        }
    }
    classify(e, &format!("{who}: reading the binlog"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_avoid_the_test_servers() {
        let a = server_id_for("t1", 1);
        assert!((1_000..2_000_001_000).contains(&a));
        assert_ne!(a, server_id_for("t1", 2));
        assert_eq!(a, server_id_for("t1", 1));
    }

    #[test]
    fn mariadb_gtid_parses() {
        let mut d = 790u64.to_le_bytes().to_vec();
        d.extend(3u32.to_le_bytes());
        d.push(1);
        assert_eq!(
            MariadbGtid::parse(&d),
            Some(MariadbGtid {
                seq: 790,
                domain: 3,
                flags: 1
            })
        );
        assert_eq!(MariadbGtid::parse(&d[..12]), None);
    }

    #[test]
    fn gtid_state_round_trips() {
        let g = GtidState::parse(Some("0-1-790,2-5-3"), true);
        assert_eq!(g.render().as_deref(), Some("0-1-790,2-5-3"));
    }
}

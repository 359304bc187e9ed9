//! Table descriptions and value decoding for binlog row events.
//!
//! Invariant: a decoded row holds, for every column of the table in ordinal
//! order, the value a `SELECT` on the source returns for it, in a form that
//! binds back exactly: TIMESTAMP as a UTC date-time (sessions run in UTC),
//! ENUM and SET as their text, BIT as an unsigned integer, DECIMAL as exact
//! text, JSON as text, YEAR as an integer, unsigned integers never negative,
//! signed ones with their sign, text in any character set as UTF-8 (as a
//! utf8mb4 session reads it: latin1 and the other one-byte character sets
//! decoded here, the others by the source server, see [`Decode`]). Column names come from the table map's optional metadata
//! (`binlog_row_metadata=FULL`) when the server logs it, otherwise from
//! `information_schema` (then a warning says so, because a later ALTER can
//! make those names wrong for older events).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferry_core::FerryError;
use mysql_async::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::jsonb;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{Conn, Value};

use crate::conn::classify;

/// How a column's value is written as an SQL literal on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiteralKind {
    /// Numbers and temporal values: rendered from the value itself.
    Plain,
    /// UTF-8 (or ASCII) text: a quoted string.
    Text,
    /// Binary data (BLOB, BINARY, GEOMETRY): a hex literal.
    Binary,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    /// The real type from the table map (ENUM/SET resolved).
    pub ctype: ColumnType,
    pub unsigned: bool,
    pub literal: LiteralKind,
    /// ENUM or SET members, in definition order.
    pub members: Vec<String>,
    /// A generated column: never written on the target.
    pub generated: bool,
    /// BINARY(n): the binlog drops trailing zero bytes, a SELECT has all n.
    pub pad_to: Option<usize>,
    /// Text in a character set other than UTF-8 and ASCII: the binlog's
    /// bytes become UTF-8, as a SELECT over a utf8mb4 session returns them,
    /// and the column is [`LiteralKind::Text`].
    pub decode_from: Option<Decode>,
}

/// How a text column's binlog bytes become UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub enum Decode {
    /// By Ferry, as the bytes are decoded: latin1, which is windows-1252.
    Encoding(&'static encoding_rs::Encoding),
    /// By Ferry, byte by byte, from the source's own table (the other
    /// character sets of one byte per character: cp1251, latin2, koi8r, ...).
    Table(Arc<ByteTable>),
    /// By the source server (character sets of more than one byte per
    /// character: gbk, sjis, utf16, ...), `CONVERT(X'..' USING cs)` over a utf8mb4
    /// session, asked by the reader before it hands the rows out (see
    /// [`super::BinlogReader::next`]): exact for every character set the
    /// source has (the copy's SELECT converts the same way), at one round
    /// trip per rows event. `convert` leaves these values as the binlog's
    /// bytes. A target may lack the character set (OceanBase seekdb has only
    /// utf8mb4 and binary), so its literal cannot be written there.
    Source {
        charset: String,
        /// ASCII bytes read as ASCII (all but the UTF-16/32, UCS-2 and swe7
        /// character sets): such values need no conversion.
        ascii_safe: bool,
    },
}

/// Where the column names of a table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamesFrom {
    Binlog,
    InformationSchema,
}

/// One source table as its row events describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub db: String,
    pub table: String,
    pub columns: Vec<ColumnInfo>,
    /// Ordinals of the key columns (primary key, else a unique key over NOT NULL columns).
    pub key: Vec<usize>,
    /// Whether changes to different rows may be applied by different workers
    /// and merged per key: no other unique key, and no key column whose
    /// collation could make two different byte strings the same row.
    pub parallel_safe: bool,
    pub names_from: NamesFrom,
}

impl TableInfo {
    pub fn name(&self) -> String {
        format!("{}.{}", self.db, self.table)
    }

    /// The key's values in `row`, in key order.
    pub fn key_iter<'s, 'a: 's>(
        &'s self,
        row: &'a [Value],
    ) -> impl Iterator<Item = &'a Value> + Clone + 's {
        self.key.iter().filter_map(|&i| row.get(i))
    }
}

/// What `information_schema` says about one table.
#[derive(Debug, Clone, Default)]
pub struct SchemaFacts {
    pub columns: Vec<SchemaColumn>,
    /// Unique indexes (PRIMARY first), each a list of column names; `bool` = all NOT NULL.
    pub unique_keys: Vec<(String, Vec<String>, bool)>,
}

#[derive(Debug, Clone, Default)]
pub struct SchemaColumn {
    pub name: String,
    pub data_type: String,
    pub column_type: String,
    pub charset: Option<String>,
    pub generated: bool,
}

/// Reads [`SchemaFacts`] and character sets from the source, cached per table.
pub struct SchemaCache {
    facts: HashMap<(String, String), Arc<SchemaFacts>>,
    charsets: HashMap<u16, String>,
    /// The server's table maps list a character set for GEOMETRY columns
    /// (MariaDB; see [`has_charset_entry`]).
    geometry_charsets: bool,
    /// Character sets already looked at for a [`ByteTable`] (read when a
    /// table first uses one, not at start-up: most sources have none).
    examined: HashSet<String>,
    /// The one-byte ones' bytes as the source converts them.
    byte_tables: HashMap<String, Arc<ByteTable>>,
}

impl SchemaCache {
    pub async fn new(conn: &mut Conn, is_mariadb: bool) -> Result<SchemaCache, FerryError> {
        let rows: Vec<(u16, String)> = conn
            .query("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL")
            .await
            .map_err(|e| classify(e, "source: reading collations"))?;
        Ok(SchemaCache {
            facts: HashMap::new(),
            charsets: rows.into_iter().collect(),
            geometry_charsets: is_mariadb,
            examined: HashSet::new(),
            byte_tables: HashMap::new(),
        })
    }

    /// A cache that knows these character sets (collation id -> name) and
    /// tables, for decoding a MySQL-format binlog without a source.
    pub fn with(
        charsets: HashMap<u16, String>,
        facts: impl IntoIterator<Item = ((String, String), SchemaFacts)>,
    ) -> SchemaCache {
        SchemaCache {
            facts: facts.into_iter().map(|(k, f)| (k, Arc::new(f))).collect(),
            charsets,
            geometry_charsets: false,
            examined: HashSet::new(),
            byte_tables: HashMap::new(),
        }
    }

    /// The facts of a table, if already read.
    pub fn cached(&self, db: &str, table: &str) -> Option<Arc<SchemaFacts>> {
        self.facts
            .get(&(db.to_string(), table.to_string()))
            .cloned()
    }

    /// Forget a table (after DDL on it).
    pub fn forget(&mut self, db: &str, table: &str) {
        self.facts.remove(&(db.to_string(), table.to_string()));
    }

    pub async fn facts(
        &mut self,
        conn: &mut Conn,
        db: &str,
        table: &str,
    ) -> Result<Arc<SchemaFacts>, FerryError> {
        let k = (db.to_string(), table.to_string());
        if let Some(f) = self.facts.get(&k) {
            return Ok(f.clone());
        }
        let f = Arc::new(read_facts(conn, db, table).await?);
        for cs in f.columns.iter().filter_map(|c| c.charset.as_deref()) {
            if crate::is_utf8_charset(cs)
                || matches!(cs, "latin1" | "binary")
                || !self.examined.insert(cs.to_string())
            {
                continue;
            }
            if let Some(t) = ByteTable::read(conn, cs).await? {
                self.byte_tables.insert(cs.to_string(), Arc::new(t));
            }
        }
        self.facts.insert(k, f.clone());
        Ok(f)
    }

    fn charset(&self, id: u16) -> Option<&str> {
        self.charsets.get(&id).map(String::as_str)
    }
}

/// Whether `cs` is a character set name that can be written into SQL as it is.
pub(super) fn sql_charset(cs: &str) -> bool {
    !cs.is_empty() && cs.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Append `CONVERT(X'..' USING cs)`: the server's reading of `bytes` in `cs`
/// (which [`sql_charset`] has accepted), as text of the session's character set.
pub(super) fn push_convert(sql: &mut String, bytes: &[u8], cs: &str) {
    sql.push_str("CONVERT(X'");
    sql.push_str(&hex::encode(bytes));
    sql.push_str("' USING ");
    sql.push_str(cs);
    sql.push(')');
}

/// A character set of one byte per character, as the source converts each
/// of its 256 bytes to UTF-8 (`CONVERT(X'..' USING cs)` over a utf8mb4
/// session; a byte the set leaves undefined reads as the server makes it, as
/// in the copy). Such a set has no state between bytes, so a string converts
/// byte by byte: Ferry decodes it exactly without asking the source per
/// value (20,000 single-row updates of a cp1251 table, 3 rounds: 0.39-0.52 s
/// until applied, against 0.54-0.63 s converted by the source). No library
/// has MySQL's own tables for cp1251, latin2, koi8r and the rest; these come
/// from the server they must match.
#[derive(Clone, PartialEq)]
pub struct ByteTable {
    utf8: Vec<String>,
    /// Bytes below 0x80 read as ASCII.
    ascii: bool,
}

impl std::fmt::Debug for ByteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByteTable {{ ascii: {} }}", self.ascii)
    }
}

impl ByteTable {
    /// The table of `cs`; `None` when it has characters of more than one
    /// byte, or the source gives no text for a byte.
    async fn read(conn: &mut Conn, cs: &str) -> Result<Option<ByteTable>, FerryError> {
        if !sql_charset(cs) {
            return Ok(None);
        }
        let what = || format!("source: reading character set {cs}");
        let maxlen: Option<u32> = conn
            .exec_first(
                "SELECT MAXLEN FROM information_schema.CHARACTER_SETS WHERE CHARACTER_SET_NAME = ?",
                (cs,),
            )
            .await
            .map_err(|e| classify(e, &what()))?;
        if maxlen != Some(1) {
            return Ok(None);
        }
        let mut sql = String::from("SELECT ");
        for b in 0..=255u8 {
            if b > 0 {
                sql.push(',');
            }
            push_convert(&mut sql, &[b], cs);
        }
        let row: Option<mysql_async::Row> = conn
            .query_first(sql)
            .await
            .map_err(|e| classify(e, &what()))?;
        let Some(row) = row else { return Ok(None) };
        let mut utf8 = Vec::with_capacity(256);
        for i in 0..256 {
            match row.get_opt::<Option<Vec<u8>>, _>(i) {
                Some(Ok(Some(b))) => match String::from_utf8(b) {
                    Ok(s) => utf8.push(s),
                    Err(_) => return Ok(None),
                },
                _ => return Ok(None),
            }
        }
        let ascii = (0..0x80u8).all(|b| utf8[b as usize].as_bytes() == [b]);
        Ok(Some(ByteTable { utf8, ascii }))
    }

    /// `bytes` in this character set, as UTF-8 bytes.
    fn decode(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for &b in bytes {
            out.push_str(&self.utf8[b as usize]);
        }
        out.into_bytes()
    }
}

async fn read_facts(conn: &mut Conn, db: &str, table: &str) -> Result<SchemaFacts, FerryError> {
    let what = format!("source: reading the columns of {db}.{table}");
    let cols: Vec<(String, String, String, Option<String>, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, EXTRA FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(|e| classify(e, &what))?;
    let columns = cols
        .into_iter()
        .map(
            |(name, data_type, column_type, charset, extra)| SchemaColumn {
                name,
                data_type: data_type.to_ascii_lowercase(),
                column_type,
                charset,
                generated: extra.to_ascii_uppercase().contains("GENERATED"),
            },
        )
        .collect::<Vec<_>>();
    let idx: Vec<(String, String, String)> = conn
        .exec(
            "SELECT s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE FROM information_schema.STATISTICS s \
             JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME \
             AND c.COLUMN_NAME = s.COLUMN_NAME \
             WHERE s.TABLE_SCHEMA = ? AND s.TABLE_NAME = ? AND s.NON_UNIQUE = 0 \
             ORDER BY s.INDEX_NAME = 'PRIMARY' DESC, s.INDEX_NAME, s.SEQ_IN_INDEX",
            (db, table),
        )
        .await
        .map_err(|e| classify(e, &what))?;
    let mut unique_keys: Vec<(String, Vec<String>, bool)> = Vec::new();
    for (index, column, nullable) in idx {
        let not_null = nullable.eq_ignore_ascii_case("NO");
        match unique_keys.last_mut() {
            Some((name, cols, nn)) if *name == index => {
                cols.push(column);
                *nn &= not_null;
            }
            _ => unique_keys.push((index, vec![column], not_null)),
        }
    }
    Ok(SchemaFacts {
        columns,
        unique_keys,
    })
}

/// Optional metadata of a table map, collected into owned values.
#[derive(Default)]
struct BinlogMeta {
    names: Vec<String>,
    unsigned: Vec<bool>,
    /// ENUM and SET members as logged, in the column's character set.
    enums: Vec<Vec<Vec<u8>>>,
    sets: Vec<Vec<Vec<u8>>>,
    charsets: Vec<u16>,
    /// Collation ids of the ENUM and SET columns, in order.
    enum_set_charsets: Vec<u16>,
    primary_key: Vec<usize>,
}

fn read_meta(tme: &TableMapEvent<'_>, geometry: bool) -> Result<BinlogMeta, std::io::Error> {
    let mut m = BinlogMeta::default();
    for field in tme.iter_optional_meta() {
        match field? {
            OptionalMetadataField::EnumStrValue(v) => {
                for e in v.iter_values() {
                    m.enums
                        .push(e?.values().iter().map(|s| s.value_raw().to_vec()).collect());
                }
            }
            OptionalMetadataField::SetStrValue(v) => {
                for e in v.iter_values() {
                    m.sets
                        .push(e?.values().iter().map(|s| s.value_raw().to_vec()).collect());
                }
            }
            _ => {}
        }
    }
    let ex = OptionalMetaExtractor::new(tme.iter_optional_meta())?;
    m.unsigned = ex.iter_signedness().collect();
    for name in ex.iter_column_name() {
        m.names.push(name?.name().into_owned());
    }
    let n_char = (0..tme.columns_count() as usize)
        .filter(
            |&i| matches!(tme.get_column_type(i), Ok(Some(t)) if has_charset_entry(t, geometry)),
        )
        .count();
    for cs in ex.iter_charset().take(n_char) {
        m.charsets.push(cs?);
    }
    let n_enum_set = (0..tme.columns_count() as usize)
        .filter(|&i| matches!(tme.get_column_type(i), Ok(Some(t)) if t.is_enum_or_set_type()))
        .count();
    // Infinite when the metadata gives one default: taken per column.
    for cs in ex.iter_enum_and_set_charset().take(n_enum_set) {
        m.enum_set_charsets.push(cs?);
    }
    for pk in ex.iter_primary_key() {
        m.primary_key.push(pk? as usize);
    }
    Ok(m)
}

/// MySQL's and MariaDB's latin1 is windows-1252, the five bytes it leaves
/// undefined mapped to the C1 controls, as WHATWG's windows-1252 does.
const LATIN1: &encoding_rs::Encoding = encoding_rs::WINDOWS_1252;

/// Whether ASCII bytes read as ASCII in character set `cs` (all but the
/// UTF-16/32, UCS-2 and swe7 ones).
fn ascii_compatible(cs: &str) -> bool {
    !matches!(cs, "ucs2" | "utf16" | "utf16le" | "utf32" | "swe7")
}

/// An ENUM's or SET's members as UTF-8 (the text a SELECT returns): as the
/// table map logged them, in the column's character set, when Ferry can
/// decode them (UTF-8, latin1, ASCII text in any character set that keeps
/// ASCII); else as `information_schema` has them now, which a utf8mb4
/// session reads as UTF-8. (Read as UTF-8 whatever their character set, a
/// latin1 ENUM('é') gave U+FFFD for its member.)
fn enum_members(
    logged: Option<&Vec<Vec<u8>>>,
    charset: Option<&str>,
    fact: Option<&SchemaColumn>,
) -> Vec<String> {
    let from_facts = || {
        fact.map(|f| parse_members(&f.column_type))
            .unwrap_or_default()
    };
    let Some(raw) = logged else {
        return from_facts();
    };
    let utf8 = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
    match charset {
        None => raw.iter().map(utf8).collect(),
        Some(cs) if crate::is_utf8_charset(cs) => raw.iter().map(utf8).collect(),
        Some("latin1") => raw
            .iter()
            .map(|b| LATIN1.decode_without_bom_handling(b).0.into_owned())
            .collect(),
        Some(cs) if ascii_compatible(cs) && raw.iter().all(|b| b.is_ascii()) => {
            raw.iter().map(utf8).collect()
        }
        Some(_) => from_facts(),
    }
}

/// Whether the table map's character set metadata has an entry for a column of
/// this type. MariaDB counts GEOMETRY (`is_character_type` in its
/// log_event.cc: "base class is blob for geom type"); MySQL does not, nor does
/// mysql_common's `is_character_type`. Counted MySQL's way on MariaDB, every
/// text column after a GEOMETRY took the character set of the one before it
/// (UTF-8 would be decoded as latin1).
fn has_charset_entry(t: ColumnType, geometry: bool) -> bool {
    t.is_character_type() || (geometry && t == ColumnType::MYSQL_TYPE_GEOMETRY)
}

fn literal_for(ctype: ColumnType, charset: Option<&str>) -> LiteralKind {
    use ColumnType::*;
    match ctype {
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB => match charset {
            Some("binary") | None => LiteralKind::Binary,
            // Text in another character set is decoded to UTF-8 (see `Decode`).
            Some(_) => LiteralKind::Text,
        },
        MYSQL_TYPE_GEOMETRY | MYSQL_TYPE_VECTOR => LiteralKind::Binary,
        MYSQL_TYPE_ENUM | MYSQL_TYPE_SET | MYSQL_TYPE_JSON => LiteralKind::Text,
        _ => LiteralKind::Plain,
    }
}

fn bad_table(db: &str, table: &str, why: &str) -> FerryError {
    FerryError::SchemaIncompatible(format!("binlog rows of {db}.{table}: {why}"))
}

/// Build the description of a table from its table map event and what the
/// source's `information_schema` says about it now.
pub fn table_info(
    tme: &TableMapEvent<'_>,
    facts: &SchemaFacts,
    cache: &SchemaCache,
    declared: Option<&[String]>,
) -> Result<TableInfo, FerryError> {
    let db = tme.database_name().into_owned();
    let table = tme.table_name().into_owned();
    let n = tme.columns_count() as usize;
    let meta = read_meta(tme, cache.geometry_charsets)
        .map_err(|e| bad_table(&db, &table, &format!("unreadable table map metadata: {e}")))?;
    let names_from = if meta.names.len() == n {
        NamesFrom::Binlog
    } else {
        NamesFrom::InformationSchema
    };
    if names_from == NamesFrom::InformationSchema && facts.columns.len() != n {
        return Err(bad_table(
            &db,
            &table,
            &format!(
                "the binlog has {n} columns but the table has {} now, and the source does not log column names. \
                 Set binlog_row_metadata=FULL on the source and start the task again from a new full copy.",
                facts.columns.len()
            ),
        ));
    }
    let columns = read_columns(tme, &meta, facts, cache, names_from).map_err(|i| {
        bad_table(
            &db,
            &table,
            &format!("column {i} has a type Ferry cannot read"),
        )
    })?;
    let Some((key, key_index)) = row_key(&meta, facts, &columns, declared) else {
        return Err(bad_table(
            &db,
            &table,
            "the table has no primary key and no unique key over NOT NULL columns, so its changes cannot be \
             applied by key. Add a primary key on the source (ALTER TABLE ... ADD PRIMARY KEY ...), or declare \
             the columns that identify a row in objects.keys.",
        ));
    };
    let other_unique = facts
        .unique_keys
        .iter()
        .any(|(index, _, _)| Some(index.as_str()) != key_index);
    let text_key = key.iter().any(|&i| columns[i].literal == LiteralKind::Text);
    Ok(TableInfo {
        db,
        table,
        columns,
        key,
        parallel_safe: !other_unique && !text_key,
        names_from,
    })
}

/// The columns of a table map, named from the binlog or (without
/// `binlog_row_metadata=FULL`) by position from `information_schema`, each
/// attribute from the binlog's metadata where it has it, else from the facts.
/// `Err(i)`: column `i` has a type Ferry cannot read.
fn read_columns(
    tme: &TableMapEvent<'_>,
    meta: &BinlogMeta,
    facts: &SchemaFacts,
    cache: &SchemaCache,
    names_from: NamesFrom,
) -> Result<Vec<ColumnInfo>, usize> {
    // The metadata lists hold one entry per column of their kind, in order.
    let (mut numeric, mut character, mut enums, mut sets) = (0, 0, 0, 0);
    let mut enum_set = 0;
    let n = tme.columns_count() as usize;
    let mut columns = Vec::with_capacity(n);
    for i in 0..n {
        let Ok(Some(ctype)) = tme.get_column_type(i) else {
            return Err(i);
        };
        let name = match names_from {
            NamesFrom::Binlog => meta.names[i].clone(),
            NamesFrom::InformationSchema => facts.columns[i].name.clone(),
        };
        let fact = facts.columns.iter().find(|c| c.name == name);
        let mut unsigned = false;
        if ctype.is_numeric_type() {
            unsigned = match meta.unsigned.get(numeric) {
                Some(u) => *u,
                None => {
                    fact.is_some_and(|f| f.column_type.to_ascii_lowercase().contains("unsigned"))
                }
            };
            numeric += 1;
        }
        let mut charset: Option<String> = None;
        if has_charset_entry(ctype, cache.geometry_charsets) {
            charset = match meta.charsets.get(character) {
                Some(id) => cache.charset(*id).map(str::to_string),
                None => fact.and_then(|f| f.charset.clone()),
            };
            character += 1;
        }
        let mut members = Vec::new();
        if ctype.is_enum_or_set_type() {
            let cs = match meta.enum_set_charsets.get(enum_set) {
                Some(id) => cache.charset(*id).map(str::to_string),
                None => fact.and_then(|f| f.charset.clone()),
            };
            enum_set += 1;
            let logged = if ctype == ColumnType::MYSQL_TYPE_ENUM {
                enums += 1;
                meta.enums.get(enums - 1)
            } else {
                sets += 1;
                meta.sets.get(sets - 1)
            };
            members = enum_members(logged, cs.as_deref(), fact);
        }
        // MariaDB logs JSON as LONGTEXT: a text column.
        let literal = literal_for(ctype, charset.as_deref());
        let decode_from = match (&literal, charset) {
            (LiteralKind::Text, Some(cs)) => match cs.as_str() {
                cs if crate::is_utf8_charset(cs) => None,
                "latin1" => Some(Decode::Encoding(LATIN1)),
                _ => match cache.byte_tables.get(&cs) {
                    Some(t) => Some(Decode::Table(t.clone())),
                    None => Some(Decode::Source {
                        ascii_safe: ascii_compatible(&cs),
                        charset: cs,
                    }),
                },
            },
            _ => None,
        };
        let pad_to = match (ctype, &literal) {
            (ColumnType::MYSQL_TYPE_STRING, LiteralKind::Binary) => {
                tme.get_column_metadata(i).and_then(string_length)
            }
            _ => None,
        };
        columns.push(ColumnInfo {
            name,
            ctype,
            unsigned,
            literal,
            members,
            generated: fact.is_some_and(|f| f.generated),
            pad_to,
            decode_from,
        });
    }
    Ok(columns)
}

/// The key changes are applied by, as column ordinals, with the index it
/// is (None for a declared key): the primary key the binlog logs, else the
/// first unique key over NOT NULL columns, else the task file's declared key
/// (`objects.keys`). None: the table has none of them.
fn row_key<'f>(
    meta: &BinlogMeta,
    facts: &'f SchemaFacts,
    columns: &[ColumnInfo],
    declared: Option<&[String]>,
) -> Option<(Vec<usize>, Option<&'f str>)> {
    let ordinal = |name: &str| columns.iter().position(|c| c.name == name);
    let all = |cols: &[String]| -> Option<Vec<usize>> {
        let found: Vec<usize> = cols.iter().filter_map(|c| ordinal(c)).collect();
        (found.len() == cols.len()).then_some(found)
    };
    if !meta.primary_key.is_empty() {
        return Some((meta.primary_key.clone(), Some("PRIMARY")));
    }
    if let Some((index, cols, _)) = facts.unique_keys.iter().find(|(_, _, not_null)| *not_null) {
        if let Some(key) = all(cols).filter(|k| !k.is_empty()) {
            return Some((key, Some(index)));
        }
    }
    let key = all(declared?)?;
    (!key.is_empty()).then_some((key, None))
}

/// The declared byte length of a CHAR/BINARY column from its table map metadata.
fn string_length(meta: &[u8]) -> Option<usize> {
    let (b0, b1) = (usize::from(*meta.first()?), usize::from(*meta.get(1)?));
    Some(if b0 & 0x30 != 0x30 {
        b1 | (((b0 & 0x30) ^ 0x30) << 4)
    } else {
        b1
    })
}

/// `enum('a','b''c')` -> `["a", "b'c"]`.
pub fn parse_members(column_type: &str) -> Vec<String> {
    let Some(start) = column_type.find('(') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = column_type[start + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    s.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                }
                c => s.push(c),
            }
        }
        out.push(s);
    }
    out
}

fn decode_err(t: &TableInfo, col: &ColumnInfo, why: &str) -> FerryError {
    FerryError::SchemaIncompatible(format!(
        "binlog rows of {}: column {}: {why}",
        t.name(),
        col.name
    ))
}

/// Turn one binlog value into the value a SELECT returns (see the module invariant).
pub fn convert(t: &TableInfo, col: &ColumnInfo, v: BinlogValue<'_>) -> Result<Value, FerryError> {
    use ColumnType::*;
    let v = match v {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => return jsonb_text(j).map_err(|e| decode_err(t, col, &e)),
        BinlogValue::JsonDiff(_) => return Err(decode_err(
            t,
            col,
            "partial JSON updates are not supported; set binlog_row_value_options='' on the source",
        )),
    };
    if v == Value::NULL {
        return Ok(v);
    }
    match (&col.decode_from, &v) {
        (Some(Decode::Encoding(enc)), Value::Bytes(b)) => {
            // ASCII is already UTF-8: the bytes stay, without a copy.
            if b.is_ascii() {
                return Ok(v);
            }
            let text = enc.decode_without_bom_handling(b).0;
            return Ok(Value::Bytes(text.into_owned().into_bytes()));
        }
        (Some(Decode::Table(t)), Value::Bytes(b)) => {
            if t.ascii && b.is_ascii() {
                return Ok(v);
            }
            return Ok(Value::Bytes(t.decode(b)));
        }
        // The reader has the source convert them.
        (Some(Decode::Source { .. }), Value::Bytes(_)) => return Ok(v),
        _ => {}
    }
    Ok(match (col.ctype, v) {
        (
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_INT24 | MYSQL_TYPE_LONG
            | MYSQL_TYPE_LONGLONG,
            Value::Int(i),
        ) if col.unsigned && i < 0 => {
            let bits = match col.ctype {
                MYSQL_TYPE_TINY => 8,
                MYSQL_TYPE_SHORT => 16,
                MYSQL_TYPE_INT24 => 24,
                MYSQL_TYPE_LONG => 32,
                _ => 64,
            };
            let mask = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            Value::UInt(i as u64 & mask)
        }
        // mysql_common 0.37 reads a signed MEDIUMINT's 3 bytes without their
        // sign: -1 arrives as 16777215, which the target refuses as out of range.
        (MYSQL_TYPE_INT24, Value::Int(i)) if !col.unsigned && i >= 0x80_0000 => {
            Value::Int(i - 0x100_0000)
        }
        (MYSQL_TYPE_TIMESTAMP2, Value::Bytes(b)) => {
            timestamp_text(&b).ok_or_else(|| decode_err(t, col, "bad TIMESTAMP"))?
        }
        (MYSQL_TYPE_TIMESTAMP, Value::Int(secs)) => utc_datetime(secs, 0),
        (MYSQL_TYPE_YEAR, Value::Bytes(b)) => {
            let y: i64 = std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1900);
            Value::Int(if y == 1900 { 0 } else { y })
        }
        (MYSQL_TYPE_ENUM, Value::Int(i)) => match i {
            0 => Value::Bytes(Vec::new()),
            i => match col.members.get(i as usize - 1) {
                Some(m) => Value::Bytes(m.clone().into_bytes()),
                None => {
                    return Err(decode_err(
                        t,
                        col,
                        &format!("ENUM index {i} is not a member"),
                    ))
                }
            },
        },
        (MYSQL_TYPE_SET, Value::Bytes(bits)) => {
            let mut names = Vec::new();
            for (i, m) in col.members.iter().enumerate() {
                if bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0) {
                    names.push(m.as_str());
                }
            }
            Value::Bytes(names.join(",").into_bytes())
        }
        (MYSQL_TYPE_STRING, Value::Bytes(mut b)) if col.pad_to.is_some_and(|n| b.len() < n) => {
            b.resize(col.pad_to.unwrap_or(0), 0);
            Value::Bytes(b)
        }
        (MYSQL_TYPE_BIT, Value::Bytes(b)) => {
            Value::UInt(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
        }
        (_, v) => v,
    })
}

fn jsonb_text(j: jsonb::Value<'_>) -> Result<Value, String> {
    let json: serde_json::Value = j
        .try_into()
        .map_err(|e| format!("bad binary JSON: {e:?}"))?;
    Ok(Value::Bytes(json.to_string().into_bytes()))
}

/// `"1704067200.123000"` (seconds since the epoch, UTC) -> a UTC date-time.
fn timestamp_text(b: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(b).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let secs: i64 = secs.parse().ok()?;
    let mut micros: u32 = frac.parse().ok()?;
    for _ in frac.len()..6 {
        micros *= 10;
    }
    Some(utc_datetime(secs, micros))
}

/// Seconds since the epoch -> `Value::Date` in UTC; 0 is the zero TIMESTAMP.
pub fn utc_datetime(secs: i64, micros: u32) -> Value {
    if secs == 0 && micros == 0 {
        return Value::Date(0, 0, 0, 0, 0, 0, 0);
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Value::Date(
        y as u16,
        m as u8,
        d as u8,
        (rem / 3600) as u8,
        (rem % 3600 / 60) as u8,
        (rem % 60) as u8,
        micros,
    )
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) -> days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse() {
        assert_eq!(
            parse_members("enum('a','b''c','d,e')"),
            vec!["a", "b'c", "d,e"]
        );
        assert_eq!(parse_members("set('x')"), vec!["x"]);
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(
            timestamp_text(b"1704067200.123"),
            Some(Value::Date(2024, 1, 1, 0, 0, 0, 123_000))
        );
        assert_eq!(
            timestamp_text(b"86399"),
            Some(Value::Date(1970, 1, 1, 23, 59, 59, 0))
        );
        assert_eq!(timestamp_text(b"0"), Some(Value::Date(0, 0, 0, 0, 0, 0, 0)));
        for days in [-1000, 0, 1, 59, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}

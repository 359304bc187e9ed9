//! The canonical rendering of a column and of a row, as SQL each database
//! evaluates itself, and the per-row hash built on it.
//!
//! Invariant: for two columns holding equal values (on MariaDB, MySQL or
//! OceanBase, in any character set), [`column_expr`] yields byte-equal text,
//! and different values yield different text; NULL stays SQL NULL. The row
//! text of [`row_text_expr`] is an injective encoding of the tuple of column
//! texts (NULLs included), so two rows hash equal only when every column
//! renders equal (or the hash collides).

use serde::{Deserialize, Serialize};

use crate::column_kind::ColumnKind;
use crate::conn::{quote_ident, ServerInfo};
use crate::schema::Column;

/// How a column's value becomes canonical text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    /// The server's own text is already canonical: integers, YEAR, DECIMAL
    /// (exact, with the column's scale), DOUBLE (shortest round-trip text), DATE.
    Plain,
    /// FLOAT widened to DOUBLE (exact), then the DOUBLE text.
    Float,
    /// DATETIME and TIMESTAMP (read in UTC): `YYYY-MM-DD HH:MM:SS.ffffff`, zero dates included.
    DateTime,
    /// TIME: `[-]H..H:MM:SS.ffffff`.
    Time,
    /// BIT as its unsigned number.
    Bit,
    /// Byte strings and spatial values as upper-case hex.
    Hex,
    /// Character data (CHAR, VARCHAR, TEXT, ENUM, SET, JSON, UUID, INET6, ...)
    /// as UTF-8; trailing spaces of VARCHAR kept. `convert` when the column's
    /// character set is not UTF-8 or ASCII.
    Text { convert: bool },
}

pub fn canon_of(col: &Column) -> Canon {
    let charset = col.charset.as_deref().map(str::to_ascii_lowercase);
    match ColumnKind::of(&col.data_type) {
        ColumnKind::Integer
        | ColumnKind::Year
        | ColumnKind::Decimal
        | ColumnKind::Double
        | ColumnKind::Date => Canon::Plain,
        ColumnKind::Float => Canon::Float,
        ColumnKind::DateTime | ColumnKind::Timestamp => Canon::DateTime,
        ColumnKind::Time => Canon::Time,
        ColumnKind::Bit => Canon::Bit,
        ColumnKind::Binary | ColumnKind::Blob | ColumnKind::Spatial => Canon::Hex,
        _ if charset.as_deref() == Some("binary") => Canon::Hex,
        _ => Canon::Text {
            convert: charset.is_some_and(|c| !crate::is_utf8_charset(&c)),
        },
    }
}

/// The SQL expression giving `col`'s canonical text (NULL for NULL).
pub fn column_expr(col: &Column) -> String {
    let c = quote_ident(&col.name);
    match canon_of(col) {
        Canon::Plain => c,
        Canon::Float => format!("({c} + 0e0)"),
        Canon::DateTime => format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')"),
        Canon::Time => format!("TIME_FORMAT({c}, '%H:%i:%s.%f')"),
        Canon::Bit => format!("({c} + 0)"),
        Canon::Hex => format!("HEX({c})"),
        Canon::Text { convert: false } => c,
        Canon::Text { convert: true } => format!("CONVERT({c} USING utf8mb4)"),
    }
}

/// Whether the column's text can contain the separator, so the row text
/// carries its length.
fn needs_length(col: &Column) -> bool {
    matches!(canon_of(col), Canon::Text { .. })
}

/// Separator of the row text. No number, date, hex or bit text contains it;
/// text columns carry their length, so a `#` inside them cannot shift a boundary.
const SEP: &str = "'#'";

/// What `LENGTH` of a text column costs the server, in rank order: a column
/// converted to UTF-8 is converted again, a CHAR is read back through its
/// padding (MariaDB scans the trailing spaces of the full `CHAR(n)` byte
/// width, byte by byte: 13% of a digest's CPU in a `perf` profile), anything
/// else is a stored length.
fn length_cost(col: &Column) -> (bool, u64) {
    let convert = matches!(canon_of(col), Canon::Text { convert: true });
    let width = if col.data_type == "char" {
        col.column_type
            .split(['(', ')'])
            .nth(1)
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(1)
    } else {
        0
    };
    (convert, width)
}

/// The text column whose length the row text leaves out (one may be: see
/// [`row_text_with`]): the one whose length costs the most, the last of equals.
/// The caller picks it on one side and uses the same position on both, so both
/// render the same text.
pub fn unmeasured_column(cols: &[&Column]) -> Option<usize> {
    cols.iter()
        .enumerate()
        .filter(|(_, c)| needs_length(c))
        .max_by_key(|(i, c)| (length_cost(c), *i))
        .map(|(i, _)| i)
}

/// [`row_text_with`] leaving out the length [`unmeasured_column`] picks.
pub fn row_text_expr(cols: &[&Column]) -> String {
    row_text_with(cols, unmeasured_column(cols))
}

/// The row's canonical text:
/// `CONCAT_WS('#', e1, .., en, LENGTH(text col)..., nullmap)`.
///
/// `CONCAT_WS` skips NULLs, so the trailing `nullmap` (one `0`/`1` per nullable
/// column) tells which columns are absent. Every text column but the one at
/// `unmeasured` carries its byte length (of the UTF-8 canonical text, so equal
/// on every server); non-text elements never contain `#`. The string reads
/// back one way only, so the encoding is injective: the tail (nullmap, then
/// the lengths) has a known number of `#`-free elements; the elements before
/// the unmeasured one are read from the left, the ones after it from the right
/// (each ends at a `#`, or after its known length), and the unmeasured one is
/// what lies between. (`LENGTH`, not `CHAR_LENGTH`: measured, counting
/// characters costs a third more per row.)
pub fn row_text_with(cols: &[&Column], unmeasured: Option<usize>) -> String {
    let mut parts: Vec<String> = cols.iter().map(|c| column_expr(c)).collect();
    parts.extend(
        cols.iter()
            .enumerate()
            .filter(|(i, c)| needs_length(c) && Some(*i) != unmeasured)
            .map(|(_, c)| format!("LENGTH({})", column_expr(c))),
    );
    let nullable: Vec<String> = cols
        .iter()
        .filter(|c| c.nullable)
        .map(|c| format!("ISNULL({})", quote_ident(&c.name)))
        .collect();
    if !nullable.is_empty() {
        parts.push(format!("CONCAT({})", nullable.join(", ")));
    }
    format!("CONCAT_WS({SEP}, {})", parts.join(", "))
}

/// The 64-bit row hash both sides compute (the same on both, or the digests
/// could never agree).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowHash {
    /// The first 64 bits of SHA1 over the row text: every MySQL-family server has it.
    #[default]
    Sha1,
    /// `CRC32(text) << 32 | CRC32C(text)`: two CRCs with different (coprime)
    /// polynomials, i.e. a 64-bit CRC. Both are hardware-accelerated, and the row
    /// text is built once (a session variable carries it to the second CRC), so it
    /// costs a little more than the 32-bit CRC of the peers and about half of SHA1
    /// (measured on MariaDB 10.11, 250,000 sysbench rows: the peers' XOR of CRC32
    /// 58-60 ms, this digest 90 ms, SHA1-64 161 ms). CRC32C() exists on MariaDB 10.8 and later only.
    Crc64,
}

impl RowHash {
    /// The fastest hash both servers compute alike: CRC64 when both are MariaDB
    /// 10.8 or later, SHA1 otherwise.
    pub fn for_servers(source: &ServerInfo, target: &ServerInfo) -> RowHash {
        let crc32c = |s: &ServerInfo| s.is_mariadb && s.number >= (10, 8, 0);
        if crc32c(source) && crc32c(target) {
            RowHash::Crc64
        } else {
            RowHash::Sha1
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RowHash::Sha1 => "sha1-64",
            RowHash::Crc64 => "crc32+crc32c",
        }
    }
}

/// The row's 64-bit hash as an unsigned integer.
pub fn row_hash_expr(cols: &[&Column], hash: RowHash) -> String {
    hash_of_text(&row_text_expr(cols), hash)
}

/// The 64-bit hash of the row text `text` as an unsigned integer.
pub fn hash_of_text(text: &str, hash: RowHash) -> String {
    match hash {
        RowHash::Sha1 => format!("CAST(CONV(LEFT(SHA1({text}), 16), 16, 10) AS UNSIGNED)"),
        // `+` reads its left operand first, so the variable is set before CRC32C reads it
        // (MariaDB's Item_func_plus; the verify tests compare with the text hashed twice).
        RowHash::Crc64 => format!("((CRC32(@ferry_row := {text}) << 32) + CRC32C(@ferry_row))"),
    }
}

/// Ranges of at most this many rows may be summed in DOUBLEs ([`digest_sql`]):
/// `2^21` sums of 32-bit values stay below `2^53`, where every integer is exact.
pub const DOUBLE_SUM_MAX_ROWS: u64 = 1 << 21;

/// `SELECT COUNT(*), hi, lo` over `from` and `where_`, `text` being the row
/// text ([`row_text_with`]): the digest of a key range. The exact sum of the
/// row hashes is `hi * 2^32 + lo`.
///
/// With the CRC pair and `exact == false`, `hi` and `lo` are the sums of the
/// CRC32 and the CRC32C halves, each added up in a DOUBLE: exact as long as
/// the range has at most [`DOUBLE_SUM_MAX_ROWS`] rows (the caller asks again
/// with `exact` past that), and cheaper than the DECIMAL arithmetic SQL uses
/// for a SUM of integers (measured: 6% of the digest). The variable set in the
/// first SUM is read in the second: MariaDB evaluates a query's aggregates in
/// select-list order (the verify tests compare with the text hashed twice).
/// Otherwise `hi` is 0 and `lo` the exact (DECIMAL) sum, as text.
pub fn digest_sql(from: &str, text: &str, where_: &str, hash: RowHash, exact: bool) -> String {
    match hash {
        RowHash::Crc64 if !exact => format!(
            "SELECT COUNT(*), SUM(CRC32(@ferry_row := {text}) + 0e0), \
             SUM(CRC32C(@ferry_row) + 0e0) FROM {from} WHERE {where_}"
        ),
        _ => format!(
            "SELECT COUNT(*), 0, CAST(COALESCE(SUM({}), 0) AS CHAR) FROM {from} WHERE {where_}",
            hash_of_text(text, hash)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, data_type: &str, nullable: bool, charset: Option<&str>) -> Column {
        Column {
            name: name.into(),
            data_type: data_type.into(),
            column_type: data_type.into(),
            nullable,
            generated: false,
            charset: charset.map(String::from),
            collation: None,
            unsigned: false,
        }
    }

    #[test]
    fn crc64_only_when_both_servers_have_crc32c() {
        let srv = |version: &str, is_mariadb: bool, number: (u16, u16, u16)| ServerInfo {
            version: version.into(),
            is_mariadb,
            number,
        };
        let maria = srv("10.11.19-MariaDB", true, (10, 11, 19));
        let maria_old = srv("10.6.20-MariaDB", true, (10, 6, 20));
        let mysql = srv("8.0.40", false, (8, 0, 40));
        assert_eq!(RowHash::for_servers(&maria, &maria), RowHash::Crc64);
        assert_eq!(RowHash::for_servers(&maria, &maria_old), RowHash::Sha1);
        assert_eq!(RowHash::for_servers(&mysql, &maria), RowHash::Sha1);
        assert_eq!(RowHash::for_servers(&maria, &mysql), RowHash::Sha1);
        let cols = [col("id", "int", false, None)];
        let cols: Vec<&Column> = cols.iter().collect();
        assert!(row_hash_expr(&cols, RowHash::Sha1).contains("SHA1(CONCAT_WS('#', `id`))"));
        assert_eq!(
            row_hash_expr(&cols, RowHash::Crc64),
            "((CRC32(@ferry_row := CONCAT_WS('#', `id`)) << 32) + CRC32C(@ferry_row))"
        );
    }

    #[test]
    fn each_type_has_its_rendering() {
        assert_eq!(column_expr(&col("a", "decimal", false, None)), "`a`");
        assert_eq!(column_expr(&col("a", "float", false, None)), "(`a` + 0e0)");
        assert_eq!(
            column_expr(&col("a", "timestamp", false, None)),
            "DATE_FORMAT(`a`, '%Y-%m-%d %H:%i:%s.%f')"
        );
        assert_eq!(
            column_expr(&col("a", "time", false, None)),
            "TIME_FORMAT(`a`, '%H:%i:%s.%f')"
        );
        assert_eq!(column_expr(&col("a", "blob", false, None)), "HEX(`a`)");
        assert_eq!(
            column_expr(&col("a", "varchar", false, Some("binary"))),
            "HEX(`a`)"
        );
        assert_eq!(column_expr(&col("a", "point", false, None)), "HEX(`a`)");
        assert_eq!(
            column_expr(&col("a", "varchar", false, Some("latin1"))),
            "CONVERT(`a` USING utf8mb4)"
        );
        assert_eq!(
            column_expr(&col("a", "enum", false, Some("utf8mb4"))),
            "`a`"
        );
        assert_eq!(column_expr(&col("a", "bit", false, None)), "(`a` + 0)");
    }

    #[test]
    fn row_text_marks_nulls_and_text_lengths() {
        let id = col("id", "int", false, None);
        let s = col("s", "varchar", true, Some("utf8mb4"));
        let l = col("l", "text", false, Some("latin1"));
        let d = col("d", "datetime", true, None);
        assert_eq!(
            row_text_expr(&[&id, &s, &l, &d]),
            "CONCAT_WS('#', `id`, `s`, CONVERT(`l` USING utf8mb4), DATE_FORMAT(`d`, '%Y-%m-%d %H:%i:%s.%f'), \
             LENGTH(`s`), CONCAT(ISNULL(`s`), ISNULL(`d`)))"
        );
        assert_eq!(
            row_text_expr(&[&id, &l]),
            "CONCAT_WS('#', `id`, CONVERT(`l` USING utf8mb4))"
        );
        // The converted column is the costly one to measure again: `s` carries the length.
        assert_eq!(
            row_text_expr(&[&l, &s]),
            "CONCAT_WS('#', CONVERT(`l` USING utf8mb4), `s`, LENGTH(`s`), CONCAT(ISNULL(`s`)))"
        );
    }

    #[test]
    fn the_widest_char_column_goes_unmeasured() {
        let char_col = |name: &str, n: u32| Column {
            column_type: format!("char({n})"),
            ..col(name, "char", false, Some("utf8mb4"))
        };
        let id = col("id", "int", false, None);
        let c = char_col("c", 120);
        let pad = char_col("pad", 60);
        let v = col("v", "varchar", false, Some("utf8mb4"));
        assert_eq!(unmeasured_column(&[&id, &c, &pad]), Some(1));
        assert_eq!(
            row_text_expr(&[&id, &c, &pad]),
            "CONCAT_WS('#', `id`, `c`, `pad`, LENGTH(`pad`))"
        );
        assert_eq!(unmeasured_column(&[&c, &v, &pad]), Some(0));
        // Equal costs: the last one, as before.
        assert_eq!(unmeasured_column(&[&v, &id, &v]), Some(2));
        assert_eq!(unmeasured_column(&[&id]), None);
        // The position is the caller's: the target renders the source's choice.
        assert_eq!(
            row_text_with(&[&id, &c, &pad], Some(2)),
            "CONCAT_WS('#', `id`, `c`, `pad`, LENGTH(`c`))"
        );
    }

    #[test]
    fn digest_sums_in_doubles_only_for_the_crc_pair() {
        let fast = digest_sql("`t`", "T", "1", RowHash::Crc64, false);
        assert_eq!(
            fast,
            "SELECT COUNT(*), SUM(CRC32(@ferry_row := T) + 0e0), SUM(CRC32C(@ferry_row) + 0e0) \
             FROM `t` WHERE 1"
        );
        let exact = digest_sql("`t`", "T", "1", RowHash::Crc64, true);
        assert!(exact.starts_with("SELECT COUNT(*), 0, CAST(COALESCE(SUM(((CRC32(@ferry_row := T)"));
        let sha = digest_sql("`t`", "T", "1", RowHash::Sha1, false);
        assert!(sha.contains("SUM(CAST(CONV(LEFT(SHA1(T), 16), 16, 10) AS UNSIGNED))"));
    }
}

//! Rendering row values for the write path: SQL literals for `INSERT`, and
//! fields for `LOAD DATA LOCAL INFILE`.
//!
//! Invariant: a value the source returned for a column (binary protocol, or
//! text protocol), rendered here and written into a column of the same type by
//! a session set up as [`crate::copy`] sets it up (`SET NAMES utf8mb4`,
//! `time_zone = '+00:00'`, a non-strict `sql_mode` without
//! `NO_BACKSLASH_ESCAPES`), stores exactly the same value. In particular:
//!
//! * FLOAT is written as the shortest text of its exact `f64` widening, so the
//!   server's string -> double -> float conversion is exact (no double rounding);
//!   DOUBLE as its shortest round-trip text with an exponent.
//! * DECIMAL travels as the server's exact text; temporal values as text with
//!   microseconds when they have any; zero dates stay zero dates; YEAR as four
//!   digits (a bare `0` would load as 2000).
//! * Binary strings, BIT and spatial values (internal format: SRID + WKB) go as
//!   hex: `X'..'` in SQL, hex text plus `SET col = UNHEX(@v)` in LOAD DATA.
//! * Character data goes as escaped `_utf8mb4` text; the server converts it to
//!   the column's character set (latin1, ...), which is lossless because it came
//!   from a column of that character set.
//! * NULL is `NULL` in SQL and `\N` in LOAD DATA.

use std::io::Write as _;

use mysql_async::Value;

use crate::column_kind::ColumnKind;
use crate::schema::Column;

/// How a column's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any integer type.
    Integer,
    Float,
    Double,
    Decimal,
    Year,
    Date,
    /// DATETIME and TIMESTAMP.
    DateTime,
    Time,
    Bit,
    /// Character data (CHAR, VARCHAR, TEXT, ENUM, SET, JSON, INET6, UUID, ...).
    Text,
    /// Byte strings: BINARY, VARBINARY, BLOB, and character types with the binary charset.
    Binary,
    /// Spatial types, in the server's internal format (4-byte SRID + WKB).
    Geometry,
}

impl Kind {
    pub fn of(col: &Column) -> Kind {
        match ColumnKind::of(&col.data_type) {
            ColumnKind::Integer => Kind::Integer,
            ColumnKind::Float => Kind::Float,
            ColumnKind::Double => Kind::Double,
            ColumnKind::Decimal => Kind::Decimal,
            ColumnKind::Year => Kind::Year,
            ColumnKind::Date => Kind::Date,
            ColumnKind::DateTime | ColumnKind::Timestamp => Kind::DateTime,
            ColumnKind::Time => Kind::Time,
            ColumnKind::Bit => Kind::Bit,
            ColumnKind::Binary | ColumnKind::Blob => Kind::Binary,
            ColumnKind::Spatial => Kind::Geometry,
            _ if col
                .charset
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("binary")) =>
            {
                Kind::Binary
            }
            _ => Kind::Text,
        }
    }

    /// Whether LOAD DATA carries this kind as hex text, decoded by `SET col = UNHEX(@v)`.
    /// `raw_binary`: BLOB/BINARY/VARBINARY bytes travel as they are (escaped),
    /// which MariaDB stores exactly whatever the file's character set (a
    /// binary column converts nothing; measured on 10.11 with every byte value,
    /// lone and truncated UTF-8 lead bytes before a tab). OceanBase changes
    /// bytes that are not valid UTF-8, so it (and any server not measured)
    /// gets hex. BIT and geometries always travel as hex.
    pub fn infile_hex(self, raw_binary: bool) -> bool {
        match self {
            Kind::Binary => !raw_binary,
            Kind::Bit | Kind::Geometry => true,
            _ => false,
        }
    }
}

/// A value the renderer cannot write for its column kind (a bug or a driver surprise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

fn mismatch(v: &Value, kind: Kind) -> RenderError {
    let shown = match v {
        Value::Bytes(b) => format!("{} bytes", b.len()),
        other => format!("{other:?}"),
    };
    RenderError(format!(
        "a {kind:?} column returned an unexpected value ({shown})"
    ))
}

/// Append `v` as a SQL literal.
pub fn write_sql(out: &mut Vec<u8>, v: &Value, kind: Kind) -> Result<(), RenderError> {
    match (v, kind) {
        (Value::NULL, _) => out.extend_from_slice(b"NULL"),
        (Value::Bytes(b), Kind::Binary | Kind::Bit | Kind::Geometry) => {
            out.extend_from_slice(b"X'");
            push_hex(out, b);
            out.push(b'\'');
        }
        (Value::Bytes(b), Kind::Text) => push_sql_string(out, b),
        (Value::Bytes(b), Kind::Date | Kind::DateTime | Kind::Time) => push_sql_string(out, b),
        (Value::Bytes(b), _) if is_numeric_text(b) => out.extend_from_slice(b),
        (Value::Bytes(b), _) => push_sql_string(out, b),
        (
            Value::Date(..) | Value::Time(..),
            Kind::Date | Kind::DateTime | Kind::Time | Kind::Text,
        ) => {
            out.push(b'\'');
            push_temporal(out, v, kind);
            out.push(b'\'');
        }
        _ => push_number(out, v, kind)?,
    }
    Ok(())
}

/// Append `v` as one LOAD DATA field (`FIELDS TERMINATED BY '\t' ESCAPED BY '\\'`).
/// `hex` (see [`Kind::infile_hex`]): the field is hex text.
pub fn write_infile(
    out: &mut Vec<u8>,
    v: &Value,
    kind: Kind,
    hex: bool,
) -> Result<(), RenderError> {
    match (v, kind) {
        (Value::NULL, _) => out.extend_from_slice(b"\\N"),
        (Value::Bytes(b), _) if hex => push_hex(out, b),
        (Value::Bytes(b), _) => push_infile_escaped(out, b),
        (
            Value::Date(..) | Value::Time(..),
            Kind::Date | Kind::DateTime | Kind::Time | Kind::Text,
        ) => push_temporal(out, v, kind),
        (Value::Int(_) | Value::UInt(_), Kind::Bit) => {
            // A number for a BIT column: its big-endian bytes, decoded by UNHEX.
            let n = match *v {
                Value::Int(i) => i as u64,
                Value::UInt(u) => u,
                _ => 0,
            };
            push_hex(out, &n.to_be_bytes());
        }
        _ => push_number(out, v, kind)?,
    }
    Ok(())
}

/// Integers, floats and YEAR, as unquoted text (the same in SQL and LOAD DATA).
fn push_number(out: &mut Vec<u8>, v: &Value, kind: Kind) -> Result<(), RenderError> {
    if matches!(
        kind,
        Kind::Date | Kind::DateTime | Kind::Time | Kind::Geometry
    ) {
        return Err(mismatch(v, kind));
    }
    // Writing into a Vec<u8> cannot fail.
    let _ = match (v, kind) {
        (Value::Int(i), Kind::Year) => write!(out, "{i:04}"),
        (Value::UInt(u), Kind::Year) => write!(out, "{u:04}"),
        (Value::Int(i), _) => write!(out, "{i}"),
        (Value::UInt(u), _) => write!(out, "{u}"),
        // Widening is exact; the f64's shortest text parses back to exactly it.
        (Value::Float(f), _) => write!(out, "{:e}", f64::from(*f)),
        (Value::Double(d), _) => write!(out, "{d:e}"),
        _ => return Err(mismatch(v, kind)),
    };
    Ok(())
}

/// DATE, DATETIME/TIMESTAMP and TIME values of the binary protocol as the server's text form.
fn push_temporal(out: &mut Vec<u8>, v: &Value, kind: Kind) {
    let _ = match *v {
        Value::Date(y, mo, d, ..) if kind == Kind::Date => write!(out, "{y:04}-{mo:02}-{d:02}"),
        Value::Date(y, mo, d, h, mi, s, us) => {
            let _ = write!(out, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            push_micros(out, us)
        }
        Value::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let sign = if neg { "-" } else { "" };
            let _ = write!(out, "{sign}{hours:02}:{mi:02}:{s:02}");
            push_micros(out, us)
        }
        _ => Ok(()),
    };
}

fn push_micros(out: &mut Vec<u8>, us: u32) -> std::io::Result<()> {
    if us > 0 {
        write!(out, ".{us:06}")
    } else {
        Ok(())
    }
}

/// Text the server sent for a numeric column (DECIMAL, or any number over the text protocol).
fn is_numeric_text(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter().any(u8::is_ascii_digit)
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut Vec<u8>, b: &[u8]) {
    let at = out.len();
    out.resize(at + b.len() * 2, 0);
    for (pair, &c) in out[at..].chunks_exact_mut(2).zip(b) {
        pair[0] = HEX[usize::from(c >> 4)];
        pair[1] = HEX[usize::from(c & 0x0f)];
    }
}

/// `_utf8mb4'...'` with the escapes of the default sql_mode (no NO_BACKSLASH_ESCAPES).
fn push_sql_string(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() + 11);
    out.extend_from_slice(b"_utf8mb4'");
    push_escaped(out, b, |c| match c {
        b'\\' => Some(b"\\\\"),
        b'\'' => Some(b"\\'"),
        0 => Some(b"\\0"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        0x1a => Some(b"\\Z"),
        _ => None,
    });
    out.push(b'\'');
}

/// The LOAD DATA escape of `c`, for the bytes that need one.
fn infile_escape(c: u8) -> Option<&'static [u8; 2]> {
    match c {
        b'\\' => Some(b"\\\\"),
        b'\t' => Some(b"\\t"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        0 => Some(b"\\0"),
        _ => None,
    }
}

/// A LOAD DATA field: backslash, tab, newline, carriage return and NUL escaped.
/// The bytes to escape are found with `memchr` (vectorised: most text has none,
/// and a byte-by-byte scan was 18% of the copy's CPU); each of the two searches
/// resumes only after the byte it found, so the work stays linear.
fn push_infile_escaped(out: &mut Vec<u8>, b: &[u8]) {
    let find_a = |from: usize| memchr::memchr3(b'\\', b'\t', b'\n', &b[from..]).map(|i| i + from);
    let find_b = |from: usize| memchr::memchr2(b'\r', 0, &b[from..]).map(|i| i + from);
    let (mut a, mut c) = (find_a(0), find_b(0));
    let mut start = 0;
    out.reserve(b.len());
    while let Some(i) = match (a, c) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    } {
        out.extend_from_slice(&b[start..i]);
        if let Some(rep) = infile_escape(b[i]) {
            out.extend_from_slice(rep);
        }
        start = i + 1;
        if a == Some(i) {
            a = find_a(start);
        }
        if c == Some(i) {
            c = find_b(start);
        }
    }
    out.extend_from_slice(&b[start..]);
}

/// Copy `b`, replacing each byte `esc` maps; runs of plain bytes are copied at once.
fn push_escaped(out: &mut Vec<u8>, b: &[u8], esc: impl Fn(u8) -> Option<&'static [u8; 2]>) {
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if let Some(rep) = esc(c) {
            out.extend_from_slice(&b[start..i]);
            out.extend_from_slice(rep);
            start = i + 1;
        }
    }
    out.extend_from_slice(&b[start..]);
}

#[cfg(test)]
mod tests {

    proptest::proptest! {
        /// The memchr-driven escape equals escaping byte by byte, on any bytes
        /// (biased towards the ones that need escaping).
        #[test]
        fn infile_escaping_equals_the_byte_loop(
            b in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just(b'\\'), proptest::prelude::Just(b'\t'),
                proptest::prelude::Just(b'\n'), proptest::prelude::Just(b'\r'),
                proptest::prelude::Just(0u8), proptest::prelude::any::<u8>(),
            ], 0..300)
        ) {
            let mut fast = Vec::new();
            push_infile_escaped(&mut fast, &b);
            let mut slow = Vec::new();
            push_escaped(&mut slow, &b, infile_escape);
            proptest::prop_assert_eq!(fast, slow);
        }

        #[test]
        fn hex_is_upper_case_pairs(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            let mut out = b"x".to_vec();
            push_hex(&mut out, &b);
            let want = hex::encode_upper(&b);
            proptest::prop_assert_eq!(&out[1..], want.as_bytes());
        }
    }
    use super::*;

    fn sql(v: Value, k: Kind) -> String {
        let mut out = Vec::new();
        write_sql(&mut out, &v, k).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn infile(v: Value, k: Kind) -> String {
        let mut out = Vec::new();
        write_infile(&mut out, &v, k, k.infile_hex(false)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_at_their_limits() {
        assert_eq!(
            sql(Value::Int(i64::MIN), Kind::Integer),
            "-9223372036854775808"
        );
        assert_eq!(
            sql(Value::UInt(u64::MAX), Kind::Integer),
            "18446744073709551615"
        );
        assert_eq!(sql(Value::Double(0.1), Kind::Double), "1e-1");
        assert_eq!(
            sql(Value::Double(-1.7976931348623157e308), Kind::Double),
            "-1.7976931348623157e308"
        );
        assert_eq!(sql(Value::Float(0.1), Kind::Float), "1.0000000149011612e-1");
        assert_eq!(sql(Value::Int(0), Kind::Year), "0000");
        assert_eq!(infile(Value::Int(2155), Kind::Year), "2155");
        let dec = "-99999999999999999999999999999999999.999999999999999999999999999999";
        assert_eq!(sql(Value::Bytes(dec.into()), Kind::Decimal), dec);
    }

    #[test]
    fn floats_round_trip_through_their_text() {
        for f in [
            f32::MIN_POSITIVE,
            f32::MAX,
            -3.4028235e38,
            1.2345678,
            16777217.0,
            1e-45,
        ] {
            let text = sql(Value::Float(f), Kind::Float);
            assert_eq!(text.parse::<f64>().unwrap() as f32, f, "{text}");
        }
        for d in [
            f64::MIN_POSITIVE,
            f64::MAX,
            5e-324,
            0.30000000000000004,
            1e300,
        ] {
            assert_eq!(
                sql(Value::Double(d), Kind::Double).parse::<f64>().unwrap(),
                d
            );
        }
    }

    #[test]
    fn temporal_text() {
        assert_eq!(
            sql(Value::Date(2024, 2, 29, 0, 0, 0, 0), Kind::Date),
            "'2024-02-29'"
        );
        assert_eq!(
            sql(Value::Date(0, 0, 0, 0, 0, 0, 0), Kind::DateTime),
            "'0000-00-00 00:00:00'"
        );
        assert_eq!(
            infile(Value::Date(2038, 1, 19, 3, 14, 7, 999_999), Kind::DateTime),
            "2038-01-19 03:14:07.999999"
        );
        assert_eq!(
            infile(Value::Time(true, 34, 22, 59, 59, 10), Kind::Time),
            "-838:59:59.000010"
        );
        assert_eq!(
            sql(Value::Time(false, 0, 1, 2, 3, 0), Kind::Time),
            "'01:02:03'"
        );
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            sql(Value::Bytes(b"it's a \\ \0\n".to_vec()), Kind::Text),
            "_utf8mb4'it\\'s a \\\\ \\0\\n'"
        );
        assert_eq!(
            infile(Value::Bytes(b"a\tb\nc\\N\r".to_vec()), Kind::Text),
            "a\\tb\\nc\\\\N\\r"
        );
        assert_eq!(infile(Value::NULL, Kind::Text), "\\N");
        assert_eq!(sql(Value::NULL, Kind::Binary), "NULL");
        assert_eq!(sql("😀é".into(), Kind::Text), "_utf8mb4'😀é'");
    }

    #[test]
    fn bytes_go_as_hex() {
        assert_eq!(
            sql(Value::Bytes(vec![0, 0xff, 0x27]), Kind::Binary),
            "X'00FF27'"
        );
        assert_eq!(sql(Value::Bytes(vec![]), Kind::Binary), "X''");
        assert_eq!(
            infile(Value::Bytes(vec![0x5c, 0x09]), Kind::Geometry),
            "5C09"
        );
        assert_eq!(infile(Value::UInt(5), Kind::Bit), "0000000000000005");
    }

    #[test]
    fn text_protocol_numbers_pass_through_and_anything_else_is_quoted() {
        assert_eq!(
            sql(Value::Bytes(b"-12.50".to_vec()), Kind::Decimal),
            "-12.50"
        );
        assert_eq!(
            sql(Value::Bytes(b"1;DROP".to_vec()), Kind::Integer),
            "_utf8mb4'1;DROP'"
        );
        assert_eq!(
            sql(Value::Bytes(b"2024-01-01".to_vec()), Kind::Date),
            "_utf8mb4'2024-01-01'"
        );
    }

    #[test]
    fn a_float_for_a_date_is_refused() {
        assert!(write_sql(&mut Vec::new(), &Value::Double(1.0), Kind::Date).is_err());
    }
}

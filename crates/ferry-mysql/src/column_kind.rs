//! One classification of MySQL-family column types, shared by every part that
//! decides by a column's type: the planner (how a key value orders and binds),
//! the value renderer (how a value is written), verify's canonical text, and
//! the dialect translation (LOB defaults, spatial support, row sizes).
//!
//! Each user maps a [`ColumnKind`] to its own decision, but none keeps its own
//! list of type names: before, four lists disagreed (the planner had no
//! `geomcollection`, so MySQL 8's name for GEOMETRYCOLLECTION was keyed as a
//! literal while the writer treated it as spatial).
//!
//! Two decisions, written down once:
//! - **YEAR is its own kind.** It is stored as one byte and orders, compares
//!   and binds like an unsigned integer, so the planner keys it as an integer
//!   and verify compares its plain text; but it is written as four digits,
//!   because a bare `0` in an `INSERT` or `LOAD DATA` loads as 2000, not 0000.
//!   Callers that want "any integer" ask [`ColumnKind::orders_as_integer`].
//! - **GEOMCOLLECTION is GEOMETRYCOLLECTION.** MySQL 8 reports the type as
//!   `geomcollection` in `information_schema.COLUMNS.DATA_TYPE`, MariaDB and
//!   MySQL 5.7 as `geometrycollection`; both are [`ColumnKind::Spatial`].

/// What kind of values a column holds, from its `DATA_TYPE` (lower case, as
/// `information_schema` and [`crate::schema`] give it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// TINYINT, SMALLINT, MEDIUMINT, INT, BIGINT (and the SERIAL alias).
    Integer,
    /// YEAR: an unsigned integer 0 or 1901..2155, written as four digits.
    Year,
    Float,
    /// DOUBLE, REAL, DOUBLE PRECISION.
    Double,
    /// DECIMAL, NUMERIC, DEC, FIXED: exact text.
    Decimal,
    Date,
    DateTime,
    Timestamp,
    Time,
    Bit,
    Enum,
    Set,
    Json,
    /// CHAR, VARCHAR.
    Char,
    /// TINYTEXT, TEXT, MEDIUMTEXT, LONGTEXT.
    Text,
    /// BINARY, VARBINARY.
    Binary,
    /// TINYBLOB, BLOB, MEDIUMBLOB, LONGBLOB.
    Blob,
    /// GEOMETRY and its subtypes, in the server's internal format (SRID + WKB).
    Spatial,
    /// Anything else (MariaDB's UUID, INET4, INET6, ...): character-like text.
    Other,
}

/// Every type name [`ColumnKind::of`] knows, with its kind (the unit tests
/// check each user of the classification against this table).
pub const TYPE_NAMES: &[(&str, ColumnKind)] = &[
    ("tinyint", ColumnKind::Integer),
    ("smallint", ColumnKind::Integer),
    ("mediumint", ColumnKind::Integer),
    ("int", ColumnKind::Integer),
    ("integer", ColumnKind::Integer),
    ("bigint", ColumnKind::Integer),
    ("serial", ColumnKind::Integer),
    ("year", ColumnKind::Year),
    ("float", ColumnKind::Float),
    ("double", ColumnKind::Double),
    ("real", ColumnKind::Double),
    ("double precision", ColumnKind::Double),
    ("decimal", ColumnKind::Decimal),
    ("numeric", ColumnKind::Decimal),
    ("dec", ColumnKind::Decimal),
    ("fixed", ColumnKind::Decimal),
    ("date", ColumnKind::Date),
    ("datetime", ColumnKind::DateTime),
    ("timestamp", ColumnKind::Timestamp),
    ("time", ColumnKind::Time),
    ("bit", ColumnKind::Bit),
    ("enum", ColumnKind::Enum),
    ("set", ColumnKind::Set),
    ("json", ColumnKind::Json),
    ("char", ColumnKind::Char),
    ("varchar", ColumnKind::Char),
    ("tinytext", ColumnKind::Text),
    ("text", ColumnKind::Text),
    ("mediumtext", ColumnKind::Text),
    ("longtext", ColumnKind::Text),
    ("binary", ColumnKind::Binary),
    ("varbinary", ColumnKind::Binary),
    ("tinyblob", ColumnKind::Blob),
    ("blob", ColumnKind::Blob),
    ("mediumblob", ColumnKind::Blob),
    ("longblob", ColumnKind::Blob),
    ("geometry", ColumnKind::Spatial),
    ("point", ColumnKind::Spatial),
    ("linestring", ColumnKind::Spatial),
    ("polygon", ColumnKind::Spatial),
    ("multipoint", ColumnKind::Spatial),
    ("multilinestring", ColumnKind::Spatial),
    ("multipolygon", ColumnKind::Spatial),
    ("geometrycollection", ColumnKind::Spatial),
    ("geomcollection", ColumnKind::Spatial),
];

impl ColumnKind {
    /// The kind of a `DATA_TYPE` name (lower case); unknown names are [`ColumnKind::Other`].
    pub fn of(data_type: &str) -> ColumnKind {
        TYPE_NAMES
            .iter()
            .find(|(name, _)| *name == data_type)
            .map_or(ColumnKind::Other, |(_, kind)| *kind)
    }

    /// Integers and YEAR: values order, compare and bind as integers.
    pub fn orders_as_integer(self) -> bool {
        matches!(self, ColumnKind::Integer | ColumnKind::Year)
    }

    /// Byte strings by type (a character type with the binary character set
    /// holds bytes too: the caller checks the charset).
    pub fn is_bytes(self) -> bool {
        matches!(self, ColumnKind::Binary | ColumnKind::Blob)
    }

    /// TEXT, BLOB, JSON and spatial types: stored off-row, and their DEFAULT
    /// must be an expression on MySQL 8.
    pub fn is_lob(self) -> bool {
        matches!(
            self,
            ColumnKind::Text | ColumnKind::Blob | ColumnKind::Json | ColumnKind::Spatial
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::{key_class, KeyClass};
    use crate::schema::Column;
    use crate::value::Kind;
    use crate::verify::canon::{canon_of, Canon};

    #[test]
    fn every_name_maps_to_its_listed_kind_and_unknown_names_are_other() {
        for (name, kind) in TYPE_NAMES {
            assert_eq!(ColumnKind::of(name), *kind, "{name}");
        }
        assert_eq!(ColumnKind::of("uuid"), ColumnKind::Other);
        assert_eq!(ColumnKind::of("inet6"), ColumnKind::Other);
        assert_eq!(
            ColumnKind::of("YEAR"),
            ColumnKind::Other,
            "names are lower case"
        );
    }

    /// What each user decides for a kind: the value writer, the planner's key
    /// class, verify's canonical text, and the dialect's LOB rule. Every type
    /// name of a kind must get the same treatment from every user (an
    /// exhaustive match: a new kind is decided here for all of them at once).
    fn decided(kind: ColumnKind) -> (Kind, KeyClass, Canon, bool) {
        use ColumnKind as C;
        let text = Canon::Text { convert: false };
        match kind {
            C::Integer => (Kind::Integer, KeyClass::Signed, Canon::Plain, false),
            C::Year => (Kind::Year, KeyClass::Signed, Canon::Plain, false),
            C::Float => (Kind::Float, KeyClass::Unordered, Canon::Float, false),
            C::Double => (Kind::Double, KeyClass::Unordered, Canon::Plain, false),
            C::Decimal => (Kind::Decimal, KeyClass::Literal, Canon::Plain, false),
            C::Date => (Kind::Date, KeyClass::Literal, Canon::Plain, false),
            C::DateTime | C::Timestamp => {
                (Kind::DateTime, KeyClass::Literal, Canon::DateTime, false)
            }
            C::Time => (Kind::Time, KeyClass::Literal, Canon::Time, false),
            C::Bit => (Kind::Bit, KeyClass::Unordered, Canon::Bit, false),
            C::Enum | C::Set => (Kind::Text, KeyClass::Unordered, text, false),
            C::Json => (Kind::Text, KeyClass::Unordered, text, true),
            C::Char => (Kind::Text, KeyClass::Text, text, false),
            C::Text => (Kind::Text, KeyClass::Text, text, true),
            C::Binary => (Kind::Binary, KeyClass::Binary, Canon::Hex, false),
            C::Blob => (Kind::Binary, KeyClass::Binary, Canon::Hex, true),
            C::Spatial => (Kind::Geometry, KeyClass::Unordered, Canon::Hex, true),
            C::Other => (Kind::Text, KeyClass::Literal, text, false),
        }
    }

    fn column(data_type: &str) -> Column {
        Column {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: data_type.into(),
            nullable: false,
            generated: false,
            charset: None,
            collation: None,
            unsigned: false,
        }
    }

    #[test]
    fn every_type_name_is_treated_alike_by_every_user() {
        let names = TYPE_NAMES
            .iter()
            .copied()
            .chain([("uuid", ColumnKind::Other)]);
        for (name, kind) in names {
            let col = column(name);
            let seen = (
                Kind::of(&col),
                key_class(&col),
                canon_of(&col),
                ColumnKind::of(name).is_lob(),
            );
            assert_eq!(seen, decided(kind), "{name} ({kind:?})");
        }
    }

    #[test]
    fn year_orders_as_an_integer_and_geomcollection_is_spatial() {
        assert!(ColumnKind::of("year").orders_as_integer());
        assert_eq!(ColumnKind::of("geomcollection"), ColumnKind::Spatial);
        assert_eq!(
            ColumnKind::of("geomcollection"),
            ColumnKind::of("geometrycollection")
        );
    }
}

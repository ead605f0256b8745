//! `TABLE_MAP_EVENT`: which table a table id means for the row events that
//! follow, with each column's binlog type and type metadata, and — when the
//! server logs `binlog_row_metadata=FULL` (MySQL 8.0.1+, MariaDB 10.5+) —
//! column names and signedness, which dbsync uses to check its schema history.

use super::binlog::{kind, DecodeError, FormatDescription, Reader};

/// Binlog column type codes (`enum_field_types`).
pub mod col {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const TYPED_ARRAY: u8 = 20;
    pub const VECTOR: u8 = 242;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

/// One column as the table map describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapColumn {
    /// The binlog type; for `STRING` columns the real type (`STRING`,
    /// `ENUM` or `SET`) decoded from the metadata.
    pub ty: u8,
    /// Type metadata: `STRING`/`ENUM`/`SET` length, `VARCHAR` max length,
    /// `BLOB`/`JSON`/`GEOMETRY` length bytes, `FLOAT`/`DOUBLE` size,
    /// `NEWDECIMAL` precision, `BIT` bytes, temporal fractional digits.
    pub meta: u16,
    /// `NEWDECIMAL` scale, `BIT` leftover bits.
    pub meta2: u8,
}

/// A decoded table map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMap {
    pub table_id: u64,
    pub db: String,
    pub table: String,
    pub columns: Vec<MapColumn>,
    /// Per column: `Some(unsigned)` for numeric columns, when logged.
    pub unsigned: Option<Vec<Option<bool>>>,
    /// Column names, when logged.
    pub names: Option<Vec<String>>,
}

fn is_numeric(ty: u8) -> bool {
    matches!(
        ty,
        col::TINY
            | col::SHORT
            | col::INT24
            | col::LONG
            | col::LONGLONG
            | col::NEWDECIMAL
            | col::FLOAT
            | col::DOUBLE
            | col::DECIMAL
    )
}

impl TableMap {
    /// Parses a table map body (checksum removed).
    pub fn parse(body: &[u8], fde: &FormatDescription) -> Result<TableMap, DecodeError> {
        let mut r = Reader::new(body, "table map event");
        let post = fde.post_header_len(kind::TABLE_MAP, 8);
        let table_id = r.uint(if post == 6 { 4 } else { 6 })?;
        r.skip(2)?; // flags
        if post > 8 {
            r.skip(post - 8)?;
        }
        let db_len = usize::from(r.u8()?);
        let db = utf8(r.take(db_len)?, "database name")?;
        r.skip(1)?;
        let t_len = usize::from(r.u8()?);
        let table = utf8(r.take(t_len)?, "table name")?;
        r.skip(1)?;
        let n = r.lenenc_len()?;
        let types = r.take(n)?;
        let meta_len = r.lenenc_len()?;
        let mut m = Reader::new(r.take(meta_len)?, "table map metadata");
        let mut columns = Vec::with_capacity(n);
        for &t in types {
            let (ty, meta, meta2) = match t {
                col::FLOAT | col::DOUBLE | col::BLOB | col::JSON | col::GEOMETRY | col::VECTOR => {
                    (t, u16::from(m.u8()?), 0)
                }
                col::TIMESTAMP2 | col::DATETIME2 | col::TIME2 => (t, u16::from(m.u8()?), 0),
                col::VARCHAR | col::VAR_STRING => (t, m.u16()?, 0),
                col::NEWDECIMAL => {
                    let p = m.u8()?;
                    let s = m.u8()?;
                    (t, u16::from(p), s)
                }
                col::BIT => {
                    let bits = m.u8()?;
                    let bytes = m.u8()?;
                    (t, u16::from(bytes), bits)
                }
                col::STRING | col::ENUM | col::SET => {
                    let b0 = m.u8()?;
                    let b1 = m.u8()?;
                    if b0 & 0x30 != 0x30 {
                        // A CHAR longer than 255 bytes: two length bits hide in b0.
                        let len = u16::from(b1) | (u16::from((b0 & 0x30) ^ 0x30) << 4);
                        (b0 | 0x30, len, 0)
                    } else {
                        (b0, u16::from(b1), 0)
                    }
                }
                col::TYPED_ARRAY => {
                    return Err(DecodeError(format!(
                        "table map of {db}.{table}: typed array columns (multi-valued indexes) are not supported"
                    )))
                }
                col::DECIMAL
                | col::TINY
                | col::SHORT
                | col::LONG
                | col::NULL
                | col::TIMESTAMP
                | col::LONGLONG
                | col::INT24
                | col::DATE
                | col::TIME
                | col::DATETIME
                | col::YEAR
                | col::NEWDATE => (t, 0, 0),
                // Never written to a binlog as such, but harmless: no metadata.
                col::TINY_BLOB | col::MEDIUM_BLOB | col::LONG_BLOB => (t, 0, 0),
                other => {
                    return Err(DecodeError(format!(
                        "table map of {db}.{table}: unknown column type {other}"
                    )))
                }
            };
            columns.push(MapColumn { ty, meta, meta2 });
        }
        r.skip(n.div_ceil(8))?; // null bitmap
        let mut map = TableMap {
            table_id,
            db,
            table,
            columns,
            unsigned: None,
            names: None,
        };
        // Optional metadata (binlog_row_metadata): type, length, value.
        while r.remaining() > 0 {
            let field = r.u8()?;
            let len = r.lenenc_len()?;
            let v = r.take(len)?;
            match field {
                1 => map.unsigned = Some(signedness(&map.columns, v)),
                4 => {
                    let mut vr = Reader::new(v, "column names");
                    let mut names = Vec::with_capacity(n);
                    while vr.remaining() > 0 {
                        let l = vr.lenenc_len()?;
                        names.push(utf8(vr.take(l)?, "column name")?);
                    }
                    map.names = Some(names);
                }
                _ => {}
            }
        }
        Ok(map)
    }
}

fn signedness(columns: &[MapColumn], bits: &[u8]) -> Vec<Option<bool>> {
    let mut i = 0usize;
    columns
        .iter()
        .map(|c| {
            if is_numeric(c.ty) {
                let bit = bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0);
                i += 1;
                Some(bit)
            } else {
                None
            }
        })
        .collect()
}

fn utf8(b: &[u8], what: &str) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec())
        .map_err(|_| DecodeError(format!("table map: {what} is not UTF-8")))
}

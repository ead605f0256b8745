//! MySQL/MariaDB column types: parsed from `information_schema.COLUMNS.COLUMN_TYPE`
//! (or a DDL statement's type text), rendered back canonically as the
//! `native_type` a MySQL-family sink can use verbatim, and mapped to the
//! engine's [`DataType`].
//!
//! | MySQL / MariaDB | engine | value |
//! |---|---|---|
//! | `tinyint`, `tinyint unsigned`, `smallint`, `year` | `Int16` | |
//! | `smallint unsigned`, `mediumint [unsigned]`, `int` | `Int32` | |
//! | `int unsigned`, `bigint` | `Int64` | |
//! | `bigint unsigned` | `Decimal{20,0}` | decimal text |
//! | `decimal(p,s)` | `Decimal{p,s}` | exact text, `s` fraction digits |
//! | `float` / `double` | `Float32` / `Float64` | |
//! | `bit(1)` / `bit(n)` | `Bool` / `Bytes` | `ceil(n/8)` bytes, big-endian |
//! | `date` / `datetime(n)` / `timestamp(n)` | `Date` / `Timestamp{n}` / `TimestampTz{n}` (UTC) | zero dates: see `zero_dates` |
//! | `time(n)` | `Interval` | micros only (negative and > 24 h kept) |
//! | `char(n)` / `varchar(n)` / `*text` | `Char{n}` / `Text{n}` / `Text` | any supported charset → UTF-8 |
//! | `binary`, `varbinary`, `*blob`, geometry | `Bytes` | |
//! | `enum(..)`, `set(..)` | `Text` | the member names (`a,b` for sets) |
//! | `json` (MySQL binary, MariaDB text) | `Json` | JSON text |

use engine::DataType;
use serde::{Deserialize, Serialize};

/// A character set of a string column, as far as the binlog decoder cares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Charset {
    Utf8mb4,
    Utf8mb3,
    /// MySQL's `latin1` (Windows-1252 with the five undefined bytes mapped to C1 controls).
    Latin1,
    Ascii,
    Binary,
    Ucs2,
    Utf16,
    Utf16le,
    Utf32,
    /// A charset dbsync cannot decode from binlog bytes (the name).
    Other(String),
}

impl Charset {
    /// From a charset name (`utf8mb4`, `utf8`, ...).
    pub fn from_name(name: &str) -> Charset {
        match name.to_ascii_lowercase().as_str() {
            "utf8mb4" => Charset::Utf8mb4,
            "utf8" | "utf8mb3" => Charset::Utf8mb3,
            "latin1" => Charset::Latin1,
            "ascii" => Charset::Ascii,
            "binary" => Charset::Binary,
            "ucs2" => Charset::Ucs2,
            "utf16" => Charset::Utf16,
            "utf16le" => Charset::Utf16le,
            "utf32" => Charset::Utf32,
            other => Charset::Other(other.to_string()),
        }
    }

    /// The charset a collation belongs to (`utf8mb4_bin` → utf8mb4).
    pub fn from_collation(collation: &str) -> Charset {
        let c = collation.to_ascii_lowercase();
        if c == "binary" {
            return Charset::Binary;
        }
        for (prefix, cs) in [
            ("utf8mb4_", Charset::Utf8mb4),
            ("utf8mb3_", Charset::Utf8mb3),
            ("utf8_", Charset::Utf8mb3),
            ("latin1_", Charset::Latin1),
            ("ascii_", Charset::Ascii),
            ("ucs2_", Charset::Ucs2),
            ("utf16le_", Charset::Utf16le),
            ("utf16_", Charset::Utf16),
            ("utf32_", Charset::Utf32),
        ] {
            if c.starts_with(prefix) {
                return cs;
            }
        }
        Charset::Other(c.split('_').next().unwrap_or("").to_string())
    }

    /// The `binary` charset (bytes, not text).
    pub fn is_binary(&self) -> bool {
        *self == Charset::Binary
    }
}

/// The size class of a `TEXT`/`BLOB` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LobSize {
    Tiny,
    Normal,
    Medium,
    Long,
}

/// One column type, with what the binlog decoder needs (signedness,
/// fractional digits, charset, enum members).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ColType {
    /// `tinyint` (1 byte), `smallint` (2), `mediumint` (3), `int` (4), `bigint` (8).
    Int {
        bytes: u8,
        unsigned: bool,
        #[serde(default)]
        zerofill: bool,
    },
    Decimal {
        precision: u32,
        scale: u32,
        #[serde(default)]
        unsigned: bool,
    },
    Float {
        #[serde(default)]
        unsigned: bool,
    },
    Double {
        #[serde(default)]
        unsigned: bool,
    },
    Bit {
        bits: u32,
    },
    Year,
    Date,
    Time {
        fsp: u32,
    },
    DateTime {
        fsp: u32,
    },
    Timestamp {
        fsp: u32,
    },
    /// `char(n)`, or `binary(n)` with the binary charset.
    Char {
        len: u32,
        charset: Charset,
    },
    /// `varchar(n)`, or `varbinary(n)`.
    VarChar {
        len: u32,
        charset: Charset,
    },
    /// `*text`, or `*blob`.
    Lob {
        size: LobSize,
        charset: Charset,
    },
    Enum {
        values: Vec<String>,
        charset: Charset,
    },
    Set {
        values: Vec<String>,
        charset: Charset,
    },
    /// MySQL's native `JSON`, or MariaDB's `JSON` alias (`longtext` with a
    /// `json_valid` check).
    Json,
    /// `geometry`, `point`, ... (the name).
    Geometry {
        name: String,
    },
}

/// A type text that could not be understood (the text is a type, never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError(pub String);

impl std::fmt::Display for TypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const GEOMETRY_TYPES: &[&str] = &[
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
];

/// Splits `name(args) words...` into the lowercase name, the raw text inside
/// the outermost parentheses, and the lowercase words after them.
fn split_type(text: &str) -> Result<(String, Option<String>, Vec<String>), TypeError> {
    let t = text.trim();
    let bad = || TypeError(format!("cannot parse column type {t:?}"));
    let name_end = t
        .find(|c: char| c == '(' || c.is_whitespace())
        .unwrap_or(t.len());
    let mut name = t[..name_end].to_ascii_lowercase();
    let mut rest = t[name_end..].trim_start();
    // Two-word names.
    for (first, second) in [
        ("double", "precision"),
        ("long", "varbinary"),
        ("long", "varchar"),
        ("character", "varying"),
        ("national", "char"),
        ("national", "varchar"),
        ("national", "character"),
    ] {
        if name == first {
            let lower = rest.to_ascii_lowercase();
            if lower.starts_with(second)
                && lower[second.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| c == '(' || c.is_whitespace())
            {
                name = format!("{first} {second}");
                rest = rest[second.len()..].trim_start();
            }
        }
    }
    let mut args = None;
    if rest.starts_with('(') {
        // Find the matching parenthesis, skipping quoted strings.
        let bytes = rest.as_bytes();
        let mut depth = 0usize;
        let mut i = 0;
        let mut end = None;
        while i < bytes.len() {
            match bytes[i] {
                b'\'' | b'"' => {
                    let q = bytes[i];
                    i += 1;
                    while i < bytes.len() {
                        if bytes[i] == q {
                            if i + 1 < bytes.len() && bytes[i + 1] == q {
                                i += 2;
                                continue;
                            }
                            break;
                        }
                        if bytes[i] == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                b'(' => depth += 1,
                b')' => {
                    depth = depth.checked_sub(1).ok_or_else(bad)?;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let end = end.ok_or_else(bad)?;
        args = Some(rest[1..end].to_string());
        rest = &rest[end + 1..];
    }
    let words = rest
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c| c == '\'' || c == '"' || c == '`')
                .to_ascii_lowercase()
        })
        .collect();
    Ok((name, args, words))
}

/// Parses `'a','b''c'` (quoted, comma-separated) into the member names.
fn parse_members(args: &str) -> Result<Vec<String>, TypeError> {
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(q) = chars.next() else { break };
        if q != '\'' && q != '"' {
            return Err(TypeError("enum/set members must be quoted strings".into()));
        }
        let mut s = String::new();
        loop {
            match chars.next() {
                None => return Err(TypeError("unterminated enum/set member".into())),
                Some(c) if c == q => {
                    if chars.peek() == Some(&q) {
                        chars.next();
                        s.push(q);
                    } else {
                        break;
                    }
                }
                Some('\\') => match chars.next() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('0') => s.push('\0'),
                    Some(c) => s.push(c),
                    None => return Err(TypeError("unterminated enum/set member".into())),
                },
                Some(c) => s.push(c),
            }
        }
        out.push(s);
    }
    Ok(out)
}

fn nums(args: Option<&str>) -> Result<Vec<u32>, TypeError> {
    match args {
        None => Ok(Vec::new()),
        Some(a) => a
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u32>()
                    .map_err(|_| TypeError(format!("bad type argument {:?}", p.trim())))
            })
            .collect(),
    }
}

/// The charset named by `CHARACTER SET x` / `CHARSET x` / `COLLATE x` in
/// `words`, or `default`; `binary` as a word after `char(n)` means a binary
/// collation of the default charset, not the binary charset.
fn charset_of(words: &[String], default: &Charset) -> Charset {
    let mut cs = None;
    let mut i = 0;
    while i < words.len() {
        match words[i].as_str() {
            "charset" => {
                if let Some(n) = words.get(i + 1) {
                    cs = Some(Charset::from_name(n));
                }
                i += 1;
            }
            "character" if words.get(i + 1).map(String::as_str) == Some("set") => {
                if let Some(n) = words.get(i + 2) {
                    cs = Some(Charset::from_name(n));
                }
                i += 2;
            }
            "collate" => {
                if cs.is_none() {
                    if let Some(n) = words.get(i + 1) {
                        cs = Some(Charset::from_collation(n));
                    }
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    cs.unwrap_or_else(|| default.clone())
}

impl ColType {
    /// Parses a type as `COLUMN_TYPE` (or a DDL statement) spells it.
    /// `charset` is the column's charset when known, else the default for
    /// string types without an explicit one. `json` marks a MariaDB JSON
    /// column (`longtext` with a `json_valid` check).
    pub fn parse(text: &str, charset: &Charset, json: bool) -> Result<ColType, TypeError> {
        let (name, args, words) = split_type(text)?;
        let unsigned = words.iter().any(|w| w == "unsigned");
        let zerofill = words.iter().any(|w| w == "zerofill");
        let n = nums(if matches!(name.as_str(), "enum" | "set") {
            None
        } else {
            args.as_deref()
        })?;
        let first = |d: u32| n.first().copied().unwrap_or(d);
        let cs = charset_of(&words, charset);
        let int = |bytes| ColType::Int {
            bytes,
            unsigned: unsigned || zerofill,
            zerofill,
        };
        let bad = || TypeError(format!("unsupported column type {name:?}"));
        Ok(match name.as_str() {
            "tinyint" | "int1" => int(1),
            "bool" | "boolean" => ColType::Int {
                bytes: 1,
                unsigned: false,
                zerofill: false,
            },
            "smallint" | "int2" => int(2),
            "mediumint" | "int3" | "middleint" => int(3),
            "int" | "integer" | "int4" => int(4),
            "bigint" | "int8" => int(8),
            "serial" => ColType::Int {
                bytes: 8,
                unsigned: true,
                zerofill: false,
            },
            "decimal" | "dec" | "numeric" | "fixed" | "number" => ColType::Decimal {
                precision: first(10),
                scale: n.get(1).copied().unwrap_or(0),
                unsigned: unsigned || zerofill,
            },
            "float" | "float4" => match n.as_slice() {
                [p] if *p > 24 => ColType::Double { unsigned },
                _ => ColType::Float { unsigned },
            },
            "double" | "double precision" | "real" | "float8" => ColType::Double { unsigned },
            "bit" => ColType::Bit { bits: first(1) },
            "year" => ColType::Year,
            "date" => ColType::Date,
            "time" => ColType::Time { fsp: first(0) },
            "datetime" => ColType::DateTime { fsp: first(0) },
            "timestamp" => ColType::Timestamp { fsp: first(0) },
            "char" | "character" | "national char" | "national character" | "nchar" => {
                let cs = if name.contains('n') && !words.iter().any(|w| w == "charset") {
                    Charset::Utf8mb3
                } else {
                    cs
                };
                ColType::Char {
                    len: first(1),
                    charset: cs,
                }
            }
            "binary" => ColType::Char {
                len: first(1),
                charset: Charset::Binary,
            },
            "varchar" | "character varying" | "national varchar" | "nvarchar" | "varchar2" => {
                ColType::VarChar {
                    len: n
                        .first()
                        .copied()
                        .ok_or_else(|| TypeError("varchar needs a length".into()))?,
                    charset: if name.starts_with('n') {
                        Charset::Utf8mb3
                    } else {
                        cs
                    },
                }
            }
            "varbinary" => ColType::VarChar {
                len: n
                    .first()
                    .copied()
                    .ok_or_else(|| TypeError("varbinary needs a length".into()))?,
                charset: Charset::Binary,
            },
            "tinytext" => ColType::Lob {
                size: LobSize::Tiny,
                charset: cs,
            },
            "text" => ColType::Lob {
                size: text_size(n.first().copied()),
                charset: cs,
            },
            "mediumtext" | "long varchar" | "long" => ColType::Lob {
                size: LobSize::Medium,
                charset: cs,
            },
            "longtext" if json => ColType::Json,
            "longtext" => ColType::Lob {
                size: LobSize::Long,
                charset: cs,
            },
            "tinyblob" => ColType::Lob {
                size: LobSize::Tiny,
                charset: Charset::Binary,
            },
            "blob" => ColType::Lob {
                size: text_size(n.first().copied()),
                charset: Charset::Binary,
            },
            "mediumblob" | "long varbinary" => ColType::Lob {
                size: LobSize::Medium,
                charset: Charset::Binary,
            },
            "longblob" => ColType::Lob {
                size: LobSize::Long,
                charset: Charset::Binary,
            },
            "enum" => ColType::Enum {
                values: parse_members(args.as_deref().unwrap_or(""))?,
                charset: cs,
            },
            "set" => ColType::Set {
                values: parse_members(args.as_deref().unwrap_or(""))?,
                charset: cs,
            },
            "json" => ColType::Json,
            g if GEOMETRY_TYPES.contains(&g) => ColType::Geometry {
                name: g.to_string(),
            },
            _ => return Err(bad()),
        })
    }

    /// The type as a MySQL-family sink should create it (`COLUMN_TYPE`
    /// spelling, without integer display widths).
    pub fn native(&self) -> String {
        let sign = |u: bool| if u { " unsigned" } else { "" };
        match self {
            ColType::Int {
                bytes,
                unsigned,
                zerofill,
            } => {
                let base = match bytes {
                    1 => "tinyint",
                    2 => "smallint",
                    3 => "mediumint",
                    4 => "int",
                    _ => "bigint",
                };
                format!(
                    "{base}{}{}",
                    sign(*unsigned),
                    if *zerofill { " zerofill" } else { "" }
                )
            }
            ColType::Decimal {
                precision,
                scale,
                unsigned,
            } => format!("decimal({precision},{scale}){}", sign(*unsigned)),
            ColType::Float { unsigned } => format!("float{}", sign(*unsigned)),
            ColType::Double { unsigned } => format!("double{}", sign(*unsigned)),
            ColType::Bit { bits } => format!("bit({bits})"),
            ColType::Year => "year".into(),
            ColType::Date => "date".into(),
            ColType::Time { fsp } => with_fsp("time", *fsp),
            ColType::DateTime { fsp } => with_fsp("datetime", *fsp),
            ColType::Timestamp { fsp } => with_fsp("timestamp", *fsp),
            ColType::Char { len, charset } if charset.is_binary() => format!("binary({len})"),
            ColType::Char { len, .. } => format!("char({len})"),
            ColType::VarChar { len, charset } if charset.is_binary() => {
                format!("varbinary({len})")
            }
            ColType::VarChar { len, .. } => format!("varchar({len})"),
            ColType::Lob { size, charset } => {
                let prefix = match size {
                    LobSize::Tiny => "tiny",
                    LobSize::Normal => "",
                    LobSize::Medium => "medium",
                    LobSize::Long => "long",
                };
                format!(
                    "{prefix}{}",
                    if charset.is_binary() { "blob" } else { "text" }
                )
            }
            ColType::Enum { values, .. } => format!("enum({})", members(values)),
            ColType::Set { values, .. } => format!("set({})", members(values)),
            ColType::Json => "json".into(),
            ColType::Geometry { name } => name.clone(),
        }
    }

    /// MySQL's implicit default of a `NOT NULL` column declared without one
    /// (what existing rows get when such a column is added), as default text:
    /// `0` for numbers, the empty string for text and binary strings and
    /// `SET`, the first member of an `ENUM`. `None` for the others (temporal
    /// types' zero values, `BIT`, `JSON`, spatial types).
    pub fn implicit_default(&self) -> Option<String> {
        match self {
            ColType::Int { .. }
            | ColType::Decimal { .. }
            | ColType::Float { .. }
            | ColType::Double { .. } => Some("0".into()),
            // `binary(n)` pads with zero bytes.
            ColType::Char { charset, .. } if charset.is_binary() => None,
            ColType::Char { .. } | ColType::VarChar { .. } | ColType::Lob { .. } => {
                Some(String::new())
            }
            ColType::Set { .. } => Some(String::new()),
            ColType::Enum { values, .. } => values.first().cloned(),
            _ => None,
        }
    }

    /// The engine type (see the module table).
    pub fn data_type(&self) -> DataType {
        match self {
            ColType::Int {
                bytes, unsigned, ..
            } => match (bytes, unsigned) {
                (1, _) | (2, false) => DataType::Int16,
                (2, true) | (3, _) | (4, false) => DataType::Int32,
                (4, true) | (8, false) => DataType::Int64,
                _ => DataType::Decimal {
                    precision: Some(20),
                    scale: Some(0),
                },
            },
            ColType::Decimal {
                precision, scale, ..
            } => DataType::Decimal {
                precision: Some(*precision),
                scale: Some(*scale),
            },
            ColType::Float { .. } => DataType::Float32,
            ColType::Double { .. } => DataType::Float64,
            ColType::Bit { bits: 1 } => DataType::Bool,
            ColType::Bit { .. } => DataType::Bytes,
            ColType::Year => DataType::Int16,
            ColType::Date => DataType::Date,
            ColType::Time { .. } => DataType::Interval,
            ColType::DateTime { fsp } => DataType::Timestamp {
                precision: Some(*fsp),
            },
            ColType::Timestamp { fsp } => DataType::TimestampTz {
                precision: Some(*fsp),
            },
            ColType::Char { charset, .. }
            | ColType::VarChar { charset, .. }
            | ColType::Lob { charset, .. }
                if charset.is_binary() =>
            {
                DataType::Bytes
            }
            ColType::Char { len, .. } => DataType::Char { len: Some(*len) },
            ColType::VarChar { len, .. } => DataType::Text {
                max_len: Some(*len),
            },
            ColType::Lob { .. } | ColType::Enum { .. } | ColType::Set { .. } => {
                DataType::Text { max_len: None }
            }
            ColType::Json => DataType::Json,
            ColType::Geometry { .. } => DataType::Bytes,
        }
    }

    /// The charset of a string column (`None` for other types).
    pub fn charset(&self) -> Option<&Charset> {
        match self {
            ColType::Char { charset, .. }
            | ColType::VarChar { charset, .. }
            | ColType::Lob { charset, .. }
            | ColType::Enum { charset, .. }
            | ColType::Set { charset, .. } => Some(charset),
            _ => None,
        }
    }

    /// Replaces the charset of a textual string column (`CONVERT TO CHARACTER SET`).
    pub fn with_charset(&self, cs: &Charset) -> ColType {
        let mut t = self.clone();
        match &mut t {
            ColType::Char { charset, .. }
            | ColType::VarChar { charset, .. }
            | ColType::Lob { charset, .. }
                if !charset.is_binary() =>
            {
                *charset = cs.clone()
            }
            ColType::Enum { charset, .. } | ColType::Set { charset, .. } => *charset = cs.clone(),
            _ => {}
        }
        t
    }
}

fn text_size(n: Option<u32>) -> LobSize {
    match n {
        Some(n) if n < 256 => LobSize::Tiny,
        Some(n) if n >= 1 << 24 => LobSize::Long,
        Some(n) if n >= 1 << 16 => LobSize::Medium,
        _ => LobSize::Normal,
    }
}

fn with_fsp(base: &str, fsp: u32) -> String {
    if fsp == 0 {
        base.to_string()
    } else {
        format!("{base}({fsp})")
    }
}

fn members(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
#[path = "types_tests.rs"]
mod tests;

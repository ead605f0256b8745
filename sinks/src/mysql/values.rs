//! Values for MySQL: what a target column of each kind receives for every
//! [`engine::Value`], as a bound parameter (binary protocol) or as a field of
//! `LOAD DATA` text. One conversion ([`to_param`]) serves both, so the two
//! write paths store the same thing.
//!
//! Values MySQL cannot hold exactly are refused with a reason (never the value
//! itself): `NaN`/`Infinity` decimals and floats, decimals with more digits than
//! the target column, PostgreSQL-only values such as `infinity` dates
//! ([`Value::Other`]) outside text columns, dates beyond year 9999.

use std::borrow::Cow;

use chrono::{Datelike, NaiveDateTime, Timelike};
use engine::{pgtext, Dialect, Value};
use mysql_async::Value as MyValue;

/// What kind of value a target column takes, from `information_schema.COLUMNS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    /// `tinyint` .. `bigint` (`tinyint(1)` is MySQL's boolean).
    Int,
    /// `decimal(p,s)`.
    Decimal {
        /// Total digits.
        precision: u32,
        /// Digits after the point.
        scale: u32,
    },
    /// `float`.
    Float,
    /// `double`.
    Double,
    /// `bit(n)`: written as an unsigned integer.
    Bit,
    /// `year`.
    Year,
    /// `date`.
    Date,
    /// `time(n)`: may be negative and beyond 24 hours.
    Time,
    /// `datetime(n)`.
    DateTime,
    /// `timestamp(n)`: stored in UTC (the session time zone is `+00:00`).
    Timestamp,
    /// `char`, `varchar`, the `text` types, `enum`, `set` (MariaDB's JSON is a `longtext`).
    Text,
    /// `binary(n)`, `varbinary(n)`, the `blob` types; `len` is the fixed or maximum length.
    Binary {
        /// `CHARACTER_MAXIMUM_LENGTH` (bytes).
        len: Option<u64>,
    },
    /// MySQL's native `json`.
    Json,
    /// MariaDB's `uuid` (text in, text out).
    Uuid,
    /// Anything else (spatial types, `inet6`, ...): receives the value's text or bytes.
    Other,
}

impl ColKind {
    /// Classifies a column from `DATA_TYPE`, precision and scale, and maximum length.
    pub fn from_catalog(
        data_type: &str,
        precision: Option<u64>,
        scale: Option<u64>,
        max_len: Option<u64>,
    ) -> Self {
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => ColKind::Int,
            "decimal" | "numeric" => ColKind::Decimal {
                precision: precision.unwrap_or(65).min(65) as u32,
                scale: scale.unwrap_or(0).min(30) as u32,
            },
            "float" => ColKind::Float,
            "double" | "real" => ColKind::Double,
            "bit" => ColKind::Bit,
            "year" => ColKind::Year,
            "date" => ColKind::Date,
            "time" => ColKind::Time,
            "datetime" => ColKind::DateTime,
            "timestamp" => ColKind::Timestamp,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" => ColKind::Text,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                ColKind::Binary { len: max_len }
            }
            "json" => ColKind::Json,
            "uuid" => ColKind::Uuid,
            _ => ColKind::Other,
        }
    }

    fn is_textual(self) -> bool {
        matches!(self, ColKind::Text | ColKind::Other | ColKind::Uuid)
    }
}

/// Why a value cannot be written (never contains the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

fn refuse(what: &str, kind: ColKind) -> Refused {
    Refused(format!(
        "a {what} value cannot be stored in a MySQL {} column: change the target column type",
        kind_name(kind)
    ))
}

fn kind_name(kind: ColKind) -> &'static str {
    match kind {
        ColKind::Int => "integer",
        ColKind::Decimal { .. } => "DECIMAL",
        ColKind::Float => "FLOAT",
        ColKind::Double => "DOUBLE",
        ColKind::Bit => "BIT",
        ColKind::Year => "YEAR",
        ColKind::Date => "DATE",
        ColKind::Time => "TIME",
        ColKind::DateTime => "DATETIME",
        ColKind::Timestamp => "TIMESTAMP",
        ColKind::Text => "text",
        ColKind::Binary { .. } => "binary",
        ColKind::Json => "JSON",
        ColKind::Uuid => "UUID",
        ColKind::Other => "non-standard",
    }
}

/// A value ready to be sent: borrowed bytes where possible.
#[derive(Clone, PartialEq)]
pub enum Param<'a> {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    Bytes(Cow<'a, [u8]>),
    /// year, month, day, hour, minute, second, microsecond.
    DateTime(u16, u8, u8, u8, u8, u8, u32),
    /// A date only (written without a time part).
    Date(u16, u8, u8),
    /// negative, days, hours, minutes, seconds, microseconds.
    Time(bool, u32, u8, u8, u8, u32),
}

impl std::fmt::Debug for Param<'_> {
    /// Hides the value (row data must not reach logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if matches!(self, Param::Null) {
            "NULL"
        } else {
            "<value>"
        })
    }
}

impl Param<'_> {
    /// The driver value (binary protocol).
    pub fn to_mysql(&self) -> MyValue {
        match self {
            Param::Null => MyValue::NULL,
            Param::Int(i) => MyValue::Int(*i),
            Param::UInt(u) => MyValue::UInt(*u),
            Param::Float(f) => MyValue::Float(*f),
            Param::Double(f) => MyValue::Double(*f),
            Param::Bytes(b) => MyValue::Bytes(b.to_vec()),
            Param::DateTime(y, mo, d, h, mi, s, us) => MyValue::Date(*y, *mo, *d, *h, *mi, *s, *us),
            Param::Date(y, mo, d) => MyValue::Date(*y, *mo, *d, 0, 0, 0, 0),
            Param::Time(neg, d, h, mi, s, us) => MyValue::Time(*neg, *d, *h, *mi, *s, *us),
        }
    }

    /// Appends the value as one field of `LOAD DATA` text (tab-separated,
    /// backslash escapes, `\N` for NULL).
    pub fn write_load_field(&self, out: &mut Vec<u8>) {
        match self {
            Param::Null => out.extend_from_slice(b"\\N"),
            Param::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Param::UInt(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
            // The float's exact value as a double: parsed back to the same float.
            Param::Float(f) => push_f64(f64::from(*f), out),
            Param::Double(f) => push_f64(*f, out),
            Param::Bytes(b) => escape_load(b, out),
            Param::DateTime(y, mo, d, h, mi, s, us) => {
                push_date(*y, *mo, *d, out);
                out.push(b' ');
                push_hms(u32::from(*h), *mi, *s, *us, out);
            }
            Param::Date(y, mo, d) => push_date(*y, *mo, *d, out),
            Param::Time(neg, d, h, mi, s, us) => {
                if *neg {
                    out.push(b'-');
                }
                push_hms(d * 24 + u32::from(*h), *mi, *s, *us, out);
            }
        }
    }
}

fn push_f64(f: f64, out: &mut Vec<u8>) {
    out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
}

fn push_num(out: &mut Vec<u8>, v: u32, width: usize) {
    let mut buf = itoa::Buffer::new();
    let s = buf.format(v);
    for _ in s.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(s.as_bytes());
}

fn push_date(y: u16, mo: u8, d: u8, out: &mut Vec<u8>) {
    push_num(out, u32::from(y), 4);
    out.push(b'-');
    push_num(out, u32::from(mo), 2);
    out.push(b'-');
    push_num(out, u32::from(d), 2);
}

fn push_hms(h: u32, mi: u8, s: u8, us: u32, out: &mut Vec<u8>) {
    push_num(out, h, 2);
    out.push(b':');
    push_num(out, u32::from(mi), 2);
    out.push(b':');
    push_num(out, u32::from(s), 2);
    if us > 0 {
        out.push(b'.');
        push_num(out, us, 6);
    }
}

/// Escapes a field for `LOAD DATA ... FIELDS TERMINATED BY X'09' ESCAPED BY
/// X'5c' LINES TERMINATED BY X'0a'`.
pub fn escape_load(b: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc = match c {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            0 => b'0',
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.push(b'\\');
        out.push(esc);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

/// The text form of a value (PostgreSQL's text format: what dbsync writes into
/// text columns for non-text values, and what a PostgreSQL target parses back).
fn text_of(v: &Value) -> String {
    let mut s = String::new();
    match v {
        Value::Float32(f) if f.is_nan() => s.push_str("NaN"),
        Value::Float64(f) if f.is_nan() => s.push_str("NaN"),
        Value::Array(_) => push_json(v, &mut s),
        _ => pgtext::render(v, &mut s),
    }
    s
}

fn owned<'a>(s: String) -> Param<'a> {
    Param::Bytes(Cow::Owned(s.into_bytes()))
}

fn borrowed(s: &str) -> Param<'_> {
    Param::Bytes(Cow::Borrowed(s.as_bytes()))
}

/// MySQL's `DATE`/`DATETIME` years: 0000-9999.
fn ymd(d: chrono::NaiveDate) -> Result<(u16, u8, u8), Refused> {
    let y = d.year();
    if !(0..=9999).contains(&y) {
        return Err(Refused(
            "a date outside MySQL's range (years 0000-9999) cannot be stored: map the column to \
             a text column"
                .into(),
        ));
    }
    Ok((y as u16, d.month() as u8, d.day() as u8))
}

fn micros(nanos: u32) -> u32 {
    // A leap second (nanos >= 1e9) keeps the last microsecond of the second.
    (nanos / 1000).min(999_999)
}

fn datetime(ts: &NaiveDateTime) -> Result<Param<'static>, Refused> {
    let (y, mo, d) = ymd(ts.date())?;
    Ok(Param::DateTime(
        y,
        mo,
        d,
        ts.hour() as u8,
        ts.minute() as u8,
        ts.second() as u8,
        micros(ts.nanosecond()),
    ))
}

/// A signed duration as MySQL `TIME` parts; `None` when it has months (which
/// have no fixed length).
fn interval_time(iv: &engine::Interval) -> Option<Param<'static>> {
    if iv.months != 0 {
        return None;
    }
    let total = i128::from(iv.days) * 86_400_000_000 + i128::from(iv.micros);
    let neg = total < 0;
    let abs = total.unsigned_abs();
    // MariaDB's TIME range; MySQL's ends at 838:59:59.000000 and refuses the rest.
    if abs > 838 * 3_600_000_000 + 59 * 60_000_000 + 59_999_999 {
        return None;
    }
    let us = (abs % 1_000_000) as u32;
    let secs = (abs / 1_000_000) as u32;
    let days = secs / 86_400;
    let rest = secs % 86_400;
    Some(Param::Time(
        neg,
        days,
        (rest / 3600) as u8,
        (rest / 60 % 60) as u8,
        (rest % 60) as u8,
        us,
    ))
}

/// Splits canonical decimal text into (integer digits, fraction digits without
/// trailing zeros); `None` for anything else (`NaN`, exponents).
fn decimal_digits(s: &str) -> Option<(usize, usize)> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int_digits = int.trim_start_matches('0').len();
    let frac_digits = frac.trim_end_matches('0').len();
    Some((int_digits, frac_digits))
}

/// Converts `v` for a target column of kind `kind`. `dialect` is the source
/// schema's: values of a MySQL source that dbsync does not model
/// ([`Value::Other`], e.g. zero dates) go back into MySQL as their text.
pub fn to_param<'a>(v: &'a Value, kind: ColKind, dialect: Dialect) -> Result<Param<'a>, Refused> {
    use ColKind as K;
    Ok(match v {
        Value::Null => Param::Null,
        Value::Unchanged => {
            return Err(Refused(
                "an unchanged-value marker cannot be written (a bug upstream of the sink)".into(),
            ))
        }
        Value::Bool(b) => match kind {
            K::Int | K::Decimal { .. } | K::Float | K::Double | K::Bit | K::Year => {
                Param::Int(i64::from(*b))
            }
            K::Json => borrowed(if *b { "true" } else { "false" }),
            K::Text | K::Other => borrowed(if *b { "1" } else { "0" }),
            _ => return Err(refuse("boolean", kind)),
        },
        Value::Int16(i) => int_param(i64::from(*i), kind)?,
        Value::Int32(i) => int_param(i64::from(*i), kind)?,
        Value::Int64(i) => int_param(*i, kind)?,
        Value::Float32(f) => {
            if !f.is_finite() {
                return non_finite(v, kind);
            }
            match kind {
                K::Float => Param::Float(*f),
                K::Double => Param::Double(f64::from(*f)),
                K::Int | K::Decimal { .. } | K::Text | K::Json | K::Other => {
                    owned(ryu::Buffer::new().format_finite(*f).to_string())
                }
                _ => return Err(refuse("float", kind)),
            }
        }
        Value::Float64(f) => {
            if !f.is_finite() {
                return non_finite(v, kind);
            }
            match kind {
                K::Float => Param::Float(*f as f32),
                K::Double => Param::Double(*f),
                K::Int | K::Decimal { .. } | K::Text | K::Json | K::Other => {
                    owned(ryu::Buffer::new().format_finite(*f).to_string())
                }
                _ => return Err(refuse("double", kind)),
            }
        }
        Value::Decimal(s) => {
            let Some((int_digits, frac_digits)) = decimal_digits(s) else {
                if kind.is_textual() {
                    return Ok(borrowed(s));
                }
                return Err(Refused(format!(
                    "a not-a-number or infinite decimal cannot be stored in a MySQL {} column \
                     (only text columns can hold it)",
                    kind_name(kind)
                )));
            };
            if let K::Decimal { precision, scale } = kind {
                let max_int = precision.saturating_sub(scale) as usize;
                if int_digits > max_int || frac_digits > scale as usize {
                    return Err(Refused(format!(
                        "a decimal with {int_digits} integer and {frac_digits} fraction digits \
                         does not fit DECIMAL({precision},{scale}) exactly: widen the target column"
                    )));
                }
            }
            match kind {
                K::Date | K::Time | K::DateTime | K::Timestamp => {
                    return Err(refuse("decimal", kind))
                }
                _ => borrowed(s),
            }
        }
        Value::Text(s) => borrowed(s),
        Value::Json(s) => match kind {
            K::Json | K::Text | K::Binary { .. } | K::Other => borrowed(s),
            _ => return Err(refuse("JSON", kind)),
        },
        Value::Bytes(b) => match kind {
            K::Bit => {
                if b.len() > 8 {
                    return Err(Refused(
                        "more than 64 bits cannot be stored in a MySQL BIT column: use a \
                         binary column"
                            .into(),
                    ));
                }
                Param::UInt(b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
            }
            K::Binary { .. } | K::Text | K::Other | K::Json => {
                Param::Bytes(Cow::Borrowed(b.as_slice()))
            }
            _ => return Err(refuse("binary", kind)),
        },
        Value::Date(d) => match kind {
            K::Date => {
                let (y, mo, d) = ymd(*d)?;
                Param::Date(y, mo, d)
            }
            K::DateTime | K::Timestamp => {
                let (y, mo, d) = ymd(*d)?;
                Param::DateTime(y, mo, d, 0, 0, 0, 0)
            }
            K::Json => owned(json_string(&text_of(v))),
            K::Text | K::Other => owned(text_of(v)),
            _ => return Err(refuse("date", kind)),
        },
        Value::Time(t) => match kind {
            K::Time => Param::Time(
                false,
                0,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
                micros(t.nanosecond()),
            ),
            K::Json => owned(json_string(&text_of(v))),
            K::Text | K::Other => owned(text_of(v)),
            _ => return Err(refuse("time", kind)),
        },
        Value::Timestamp(ts) => temporal(ts, v, kind)?,
        Value::TimestampTz(ts) => temporal(&ts.naive_utc(), v, kind)?,
        Value::Interval(iv) => match kind {
            K::Time => interval_time(iv).ok_or_else(|| {
                Refused(
                    "an interval with months or beyond ±838:59:59 does not fit a MySQL TIME \
                     column: use a text column"
                        .into(),
                )
            })?,
            K::Json => owned(json_string(&text_of(v))),
            K::Text | K::Other => owned(text_of(v)),
            _ => return Err(refuse("interval", kind)),
        },
        Value::Uuid(u) => match kind {
            K::Binary { .. } => Param::Bytes(Cow::Borrowed(u.as_slice())),
            K::Json => owned(json_string(&text_of(v))),
            K::Text | K::Uuid | K::Other => owned(text_of(v)),
            _ => return Err(refuse("uuid", kind)),
        },
        Value::Array(_) => match kind {
            K::Json | K::Text | K::Binary { .. } | K::Other => {
                let mut s = String::new();
                push_json(v, &mut s);
                owned(s)
            }
            _ => return Err(refuse("array", kind)),
        },
        Value::Other(s) => {
            if dialect == Dialect::MySql || kind.is_textual() {
                borrowed(s)
            } else {
                return Err(Refused(format!(
                    "the source value has no MySQL {} equivalent (a PostgreSQL-only value: an \
                     infinite or BC date or timestamp, or a type dbsync does not model): \
                     map the column to a text column",
                    kind_name(kind)
                )));
            }
        }
    })
}

fn int_param(i: i64, kind: ColKind) -> Result<Param<'static>, Refused> {
    use ColKind as K;
    Ok(match kind {
        K::Int | K::Decimal { .. } | K::Float | K::Double | K::Year => Param::Int(i),
        K::Bit => Param::UInt(u64::try_from(i).map_err(|_| {
            Refused("a negative number cannot be stored as BIT: use an integer column".into())
        })?),
        K::Text | K::Json | K::Other | K::Binary { .. } => {
            owned(itoa::Buffer::new().format(i).to_string())
        }
        _ => return Err(refuse("integer", kind)),
    })
}

fn non_finite<'a>(v: &Value, kind: ColKind) -> Result<Param<'a>, Refused> {
    if matches!(kind, ColKind::Text | ColKind::Other) {
        return Ok(owned(text_of(v)));
    }
    Err(Refused(format!(
        "not-a-number and infinite floats cannot be stored in a MySQL {} column \
         (only text columns can hold them)",
        kind_name(kind)
    )))
}

fn temporal<'a>(ts: &NaiveDateTime, v: &Value, kind: ColKind) -> Result<Param<'a>, Refused> {
    use ColKind as K;
    Ok(match kind {
        K::DateTime | K::Timestamp | K::Date => datetime(ts)?,
        K::Json => owned(json_string(&text_of(v))),
        K::Text | K::Other => owned(text_of(v)),
        _ => return Err(refuse("timestamp", kind)),
    })
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_str(s, &mut out);
    out
}

fn push_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether `s` is a JSON number.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Appends `v` as JSON: arrays become JSON arrays, numbers numbers, JSON
/// values themselves, everything else a string of its PostgreSQL text form
/// (`NaN` and infinities as strings, which JSON has no numbers for).
pub fn push_json(v: &Value, out: &mut String) {
    match v {
        Value::Null | Value::Unchanged => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => pgtext::render(v, out),
        Value::Float32(f) if f.is_finite() => {
            out.push_str(ryu::Buffer::new().format_finite(*f));
        }
        Value::Float64(f) if f.is_finite() => {
            out.push_str(ryu::Buffer::new().format_finite(*f));
        }
        Value::Decimal(s) if is_json_number(s) => out.push_str(s),
        Value::Json(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json(item, out);
            }
            out.push(']');
        }
        Value::Text(s) | Value::Other(s) | Value::Decimal(s) => push_json_str(s, out),
        _ => push_json_str(&text_of(v), out),
    }
}

#[cfg(test)]
#[path = "values_tests.rs"]
mod tests;

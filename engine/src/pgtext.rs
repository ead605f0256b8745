//! The PostgreSQL text representation of values: parsing what pgoutput and
//! `COPY ... TO STDOUT` send, rendering what `COPY ... FROM STDIN` and SQL
//! literals accept. A format, not a driver: shared by the PostgreSQL source
//! and the PostgreSQL sink.
//!
//! Sessions that produce or consume this text must use the settings in
//! [`SESSION_SETTINGS`] (ISO dates, UTC, ISO 8601 intervals, hex bytea,
//! round-trippable floats).
//!
//! Values PostgreSQL can hold but `chrono` cannot (`infinity` dates,
//! timestamps and intervals, BC dates, years beyond chrono's range, the time `24:00:00`)
//! parse to [`Value::Other`] holding the original text, so they still travel
//! PostgreSQL to PostgreSQL exactly. So does an array literal with explicit
//! bounds (`[0:1]={1,2}`).
//!
//! What [`render`] writes is accepted by PostgreSQL's input functions under
//! any session settings: timestamps with time zone carry an explicit `+00`,
//! dates are ISO `YYYY-MM-DD` (with ` BC` for years before 1), intervals are
//! ISO 8601 with designators, `bytea` is hex.
//!
//! Parsing is hand-written (no regex, no format strings): it runs on every
//! value of every replicated row.

mod array;
mod copy;
mod datetime;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_compound;

use crate::value::{DataType, Value};

/// Session settings both ends use, as `-c name=value` startup options.
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "iso_8601"),
    ("timezone", "UTC"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
];

/// A value's text could not be parsed as its column type. Never contains the
/// value itself (row values must not reach logs).
#[derive(Debug, thiserror::Error)]
#[error("cannot parse a {type_name} value: {reason}")]
pub struct ParseError {
    /// What was being parsed: a type (`date`, `int4`-like names) or `COPY line`.
    pub type_name: String,
    /// Why it failed, without the value.
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(type_name: &str, reason: impl Into<String>) -> Self {
        Self {
            type_name: type_name.to_string(),
            reason: reason.into(),
        }
    }
}

/// Parses the text form of one non-NULL value of type `dt`.
///
/// The text is what PostgreSQL outputs under [`SESSION_SETTINGS`]; see the
/// module documentation for which values become [`Value::Other`].
pub fn parse(dt: &DataType, text: &str) -> Result<Value, ParseError> {
    match dt {
        DataType::Bool => parse_bool(text),
        DataType::Int16 => parse_int::<i16>(text, "int16").map(Value::Int16),
        DataType::Int32 => parse_int::<i32>(text, "int32").map(Value::Int32),
        DataType::Int64 => parse_int::<i64>(text, "int64").map(Value::Int64),
        DataType::Float32 => parse_float::<f32>(text, "float32").map(Value::Float32),
        DataType::Float64 => parse_float::<f64>(text, "float64").map(Value::Float64),
        DataType::Decimal { .. } => {
            if is_decimal(text) {
                Ok(Value::Decimal(text.to_owned()))
            } else {
                Err(ParseError::new("decimal", "not a decimal number"))
            }
        }
        DataType::Text { .. } | DataType::Char { .. } => Ok(Value::Text(text.to_owned())),
        DataType::Bytes => parse_bytea(text).map(Value::Bytes),
        DataType::Date => datetime::parse_date(text),
        DataType::Time { .. } => datetime::parse_time(text),
        DataType::Timestamp { .. } => datetime::parse_timestamp(text),
        DataType::TimestampTz { .. } => datetime::parse_timestamptz(text),
        DataType::Interval => match text {
            // PostgreSQL 17's infinite intervals.
            "infinity" | "-infinity" => Ok(Value::Other(text.to_owned())),
            _ => datetime::parse_interval(text).map(Value::Interval),
        },
        DataType::Uuid => parse_uuid(text).map(Value::Uuid),
        DataType::Json | DataType::Jsonb => Ok(Value::Json(text.to_owned())),
        DataType::Array(elem) => array::parse_array(elem, text),
        DataType::Other { .. } => Ok(Value::Other(text.to_owned())),
    }
}

/// Appends the text input form of `v` (no COPY escaping).
///
/// `Null` and `Unchanged` must not be passed (callers handle them: a NULL has
/// no text form, an unchanged column is not written). In debug builds they
/// panic; in release builds nothing is written.
pub fn render(v: &Value, out: &mut String) {
    render_to(v, out);
}

/// Appends `v` as one field of `COPY ... FROM STDIN` text format: rendered,
/// then backslash, tab, newline and carriage return escaped; `Null` is `\N`.
///
/// `Unchanged` must not be passed (debug builds panic; release builds write
/// nothing).
pub fn render_copy(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"\\N"),
        // These render to ASCII without backslash, tab, CR or newline:
        // written straight into `out`.
        Value::Bool(_)
        | Value::Int16(_)
        | Value::Int32(_)
        | Value::Int64(_)
        | Value::Float32(_)
        | Value::Float64(_)
        | Value::Date(_)
        | Value::Time(_)
        | Value::Timestamp(_)
        | Value::TimestampTz(_)
        | Value::Interval(_)
        | Value::Uuid(_) => render_to(v, out),
        _ => render_to(v, &mut copy::CopyEscape(out)),
    }
}

/// Splits one line of `COPY ... TO STDOUT` text format (without its trailing
/// newline) into fields: `None` for `\N`, otherwise the unescaped text.
///
/// `fields` is cleared first. Escapes `\\`, `\t`, `\n`, `\r`, `\b`, `\f`,
/// `\v`, octal `\NNN` and hex `\xNN` are decoded; a backslash before any other
/// character stands for that character. A field that is not UTF-8 after
/// unescaping is an error.
pub fn split_copy_line(line: &[u8], fields: &mut Vec<Option<String>>) -> Result<(), ParseError> {
    copy::split_line(line, fields)
}

/// Where rendered text goes: a `String`, a raw byte buffer, or a COPY-escaping
/// byte buffer. Renderers are written once against this.
pub(crate) trait Out {
    fn put_str(&mut self, s: &str);
    /// `b` must be ASCII.
    fn put_ascii(&mut self, b: u8);
}

impl Out for String {
    #[inline]
    fn put_str(&mut self, s: &str) {
        self.push_str(s);
    }
    #[inline]
    fn put_ascii(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        self.push(b as char);
    }
}

impl Out for Vec<u8> {
    #[inline]
    fn put_str(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }
    #[inline]
    fn put_ascii(&mut self, b: u8) {
        self.push(b);
    }
}

pub(crate) fn render_to<O: Out>(v: &Value, out: &mut O) {
    match v {
        Value::Null | Value::Unchanged => {
            debug_assert!(false, "pgtext: {} has no text form", v.kind());
        }
        Value::Bool(b) => out.put_ascii(if *b { b't' } else { b'f' }),
        Value::Int16(i) => out.put_str(itoa::Buffer::new().format(*i)),
        Value::Int32(i) => out.put_str(itoa::Buffer::new().format(*i)),
        Value::Int64(i) => out.put_str(itoa::Buffer::new().format(*i)),
        Value::Float32(f) => render_float(*f, out),
        Value::Float64(f) => render_float(*f, out),
        Value::Decimal(s) | Value::Text(s) | Value::Json(s) | Value::Other(s) => out.put_str(s),
        Value::Bytes(b) => render_bytea(b, out),
        Value::Date(d) => datetime::render_date(*d, out),
        Value::Time(t) => datetime::render_time(*t, out),
        Value::Timestamp(ts) => datetime::render_timestamp(*ts, out),
        Value::TimestampTz(ts) => datetime::render_timestamptz(*ts, out),
        Value::Interval(iv) => datetime::render_interval(*iv, out),
        Value::Uuid(u) => render_uuid(u, out),
        Value::Array(items) => array::render_array(items, out),
    }
}

fn parse_bool(text: &str) -> Result<Value, ParseError> {
    match text {
        "t" => Ok(Value::Bool(true)),
        "f" => Ok(Value::Bool(false)),
        _ => {
            // What boolin accepts besides the output form.
            let t = text.trim();
            const TRUE: &[&str] = &["t", "true", "y", "yes", "on", "1"];
            const FALSE: &[&str] = &["f", "false", "n", "no", "off", "0"];
            if TRUE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
                Ok(Value::Bool(true))
            } else if FALSE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
                Ok(Value::Bool(false))
            } else {
                Err(ParseError::new("bool", "not a boolean"))
            }
        }
    }
}

fn parse_int<T: std::str::FromStr<Err = std::num::ParseIntError>>(
    text: &str,
    type_name: &str,
) -> Result<T, ParseError> {
    text.parse::<T>().map_err(|e| {
        use std::num::IntErrorKind;
        let reason = match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "out of range",
            IntErrorKind::Empty => "empty",
            _ => "not an integer",
        };
        ParseError::new(type_name, reason)
    })
}

fn parse_float<T: std::str::FromStr>(text: &str, type_name: &str) -> Result<T, ParseError> {
    // Rust's float parsing reads PostgreSQL's output exactly (shortest
    // round-trip digits, `NaN`, `Infinity`, `-Infinity`, case-insensitive).
    text.parse::<T>()
        .map_err(|_| ParseError::new(type_name, "not a floating-point number"))
}

trait Float: Copy {
    fn is_nan(self) -> bool;
    fn is_infinite(self) -> bool;
    fn is_sign_negative(self) -> bool;
    fn shortest(self, buf: &mut ryu::Buffer) -> &str;
}

impl Float for f32 {
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn is_infinite(self) -> bool {
        f32::is_infinite(self)
    }
    fn is_sign_negative(self) -> bool {
        f32::is_sign_negative(self)
    }
    fn shortest(self, buf: &mut ryu::Buffer) -> &str {
        buf.format_finite(self)
    }
}

impl Float for f64 {
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn is_infinite(self) -> bool {
        f64::is_infinite(self)
    }
    fn is_sign_negative(self) -> bool {
        f64::is_sign_negative(self)
    }
    fn shortest(self, buf: &mut ryu::Buffer) -> &str {
        buf.format_finite(self)
    }
}

fn render_float<F: Float, O: Out>(f: F, out: &mut O) {
    if f.is_nan() {
        out.put_str("NaN");
    } else if f.is_infinite() {
        out.put_str(if f.is_sign_negative() {
            "-Infinity"
        } else {
            "Infinity"
        });
    } else {
        // Shortest digits that read back to the same value (`1e-300`, `0.1`, `-0.0`).
        out.put_str(f.shortest(&mut ryu::Buffer::new()));
    }
}

/// True for what `numeric_in` accepts and `numeric_out` produces: an optional
/// sign, digits with an optional decimal point (at least one digit), an
/// optional exponent; or `NaN`, `Infinity`, `-Infinity` (any case, `inf` too).
fn is_decimal(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    let mut signed = false;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
        signed = true;
    }
    let rest = &text[i..];
    if rest.eq_ignore_ascii_case("infinity") || rest.eq_ignore_ascii_case("inf") {
        return true;
    }
    if !signed && rest.eq_ignore_ascii_case("nan") {
        return true;
    }
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

#[inline]
pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `bytea` in hex format (`\x0a1b`, whitespace allowed between byte pairs) or,
/// for robustness, the legacy escape format (`\\` and `\ooo`).
fn parse_bytea(text: &str) -> Result<Vec<u8>, ParseError> {
    let b = text.as_bytes();
    if let Some(hex) = b.strip_prefix(b"\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut i = 0;
        while i < hex.len() {
            let c = hex[i];
            if c.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let hi = hex_val(c);
            let lo = hex.get(i + 1).copied().and_then(hex_val);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(ParseError::new("bytea", "invalid hexadecimal digits")),
            }
            i += 2;
        }
        return Ok(out);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4).filter(|d| {
                matches!(d[0], b'0'..=b'3') && d[1..].iter().all(|c| matches!(c, b'0'..=b'7'))
            });
            let Some(d) = oct else {
                return Err(ParseError::new("bytea", "invalid escape sequence"));
            };
            out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

fn render_bytea<O: Out>(bytes: &[u8], out: &mut O) {
    out.put_str("\\x");
    let mut buf = [0u8; 256];
    for chunk in bytes.chunks(buf.len() / 2) {
        for (i, &byte) in chunk.iter().enumerate() {
            buf[2 * i] = HEX[usize::from(byte >> 4)];
            buf[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        out.put_str(ascii_str(&buf[..chunk.len() * 2]));
    }
}

/// A buffer this module filled with ASCII, as `&str`.
fn ascii_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("renderers write ASCII")
}

/// A UUID: canonical `8-4-4-4-12` hex, or 32 hex digits, optionally in braces.
fn parse_uuid(text: &str) -> Result<[u8; 16], ParseError> {
    let mut b = text.as_bytes();
    if let Some(inner) = b.strip_prefix(b"{").and_then(|r| r.strip_suffix(b"}")) {
        b = inner;
    }
    let hyphens = match b.len() {
        36 => true,
        32 => false,
        _ => return Err(ParseError::new("uuid", "wrong length")),
    };
    let mut out = [0u8; 16];
    let mut i = 0;
    for (n, byte) in out.iter_mut().enumerate() {
        if hyphens && matches!(n, 4 | 6 | 8 | 10) {
            if b[i] != b'-' {
                return Err(ParseError::new("uuid", "misplaced hyphen"));
            }
            i += 1;
        }
        match (hex_val(b[i]), hex_val(b[i + 1])) {
            (Some(h), Some(l)) => *byte = h << 4 | l,
            _ => return Err(ParseError::new("uuid", "invalid hexadecimal digits")),
        }
        i += 2;
    }
    Ok(out)
}

fn render_uuid<O: Out>(u: &[u8; 16], out: &mut O) {
    let mut buf = [0u8; 36];
    let mut i = 0;
    for (n, &byte) in u.iter().enumerate() {
        if matches!(n, 4 | 6 | 8 | 10) {
            buf[i] = b'-';
            i += 1;
        }
        buf[i] = HEX[usize::from(byte >> 4)];
        buf[i + 1] = HEX[usize::from(byte & 0xf)];
        i += 2;
    }
    out.put_str(ascii_str(&buf));
}

//! MySQL values → engine [`Value`]s, exactly, on both paths: binlog row
//! images (`decode_cell`) and the binary protocol the snapshot reads with
//! (`from_protocol`). Both produce the same value for the same cell; the
//! snapshot-vs-stream tests hold them to it.
//!
//! Choices (see `types.rs` for the type table):
//! - `bigint unsigned` is decimal text (beyond `i64`); `bit(1)` is a bool,
//!   `bit(n)` big-endian bytes; `year` an `Int16`; `enum`/`set` their names.
//! - `time` is an [`Interval`] of microseconds (negative and above 24 h kept),
//!   so it round-trips MySQL→MySQL and maps to PostgreSQL `interval`.
//! - `timestamp` is UTC; `datetime` naive.
//! - Zero or partly zero dates (and dates `chrono` cannot hold, such as
//!   `2024-02-30` under `ALLOW_INVALID_DATES`) become NULL or their MySQL text,
//!   per `zero_dates`.
//! - Strings are decoded from their column charset into UTF-8 (the snapshot
//!   asks the server for utf8mb4).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use engine::config::ZeroDates;
use engine::{Interval, Value};

use super::binlog::{DecodeError, Reader};
use super::tablemap::{col, MapColumn};
use super::types::{Charset, ColType};

fn err<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

/// Bytes of a NEWDECIMAL digit group of 0..=9 digits.
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
const POW10: [u32; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Size in bytes of a binary NEWDECIMAL(precision, scale).
pub fn decimal_size(precision: u32, scale: u32) -> usize {
    let intg = precision.saturating_sub(scale) as usize;
    let s = scale as usize;
    (intg / 9) * 4 + DIG2BYTES[intg % 9] + (s / 9) * 4 + DIG2BYTES[s % 9]
}

/// Decodes a binary NEWDECIMAL into its exact text (`-12.50`).
pub fn decode_decimal(
    r: &mut Reader<'_>,
    precision: u32,
    scale: u32,
) -> Result<String, DecodeError> {
    if precision == 0 || precision > 65 || scale > 30 || scale > precision {
        return err(format!(
            "invalid decimal({precision},{scale}) in the binlog"
        ));
    }
    let size = decimal_size(precision, scale);
    let raw = r.take(size)?;
    let mut buf = [0u8; 40];
    buf[..size].copy_from_slice(raw);
    let negative = buf[0] & 0x80 == 0;
    buf[0] ^= 0x80;
    if negative {
        for b in &mut buf[..size] {
            *b = !*b;
        }
    }
    let intg = (precision - scale) as usize;
    let mut pos = 0usize;
    let mut group = |digits: usize| -> Result<u32, DecodeError> {
        let n = if digits == 9 { 4 } else { DIG2BYTES[digits] };
        let v = buf[pos..pos + n]
            .iter()
            .fold(0u32, |acc, &x| (acc << 8) | u32::from(x));
        pos += n;
        if v >= POW10[digits] {
            return err("corrupt decimal digits in the binlog");
        }
        Ok(v)
    };
    let mut out = String::with_capacity(precision as usize + 3);
    let mut int_digits = String::with_capacity(intg + 1);
    if intg % 9 > 0 {
        let v = group(intg % 9)?;
        int_digits.push_str(&v.to_string());
    }
    for _ in 0..intg / 9 {
        let v = group(9)?;
        if int_digits.is_empty() {
            int_digits.push_str(&v.to_string());
        } else {
            int_digits.push_str(&format!("{v:09}"));
        }
    }
    let trimmed = int_digits.trim_start_matches('0');
    let int_part = if trimmed.is_empty() { "0" } else { trimmed };
    let mut frac = String::with_capacity(scale as usize);
    for _ in 0..scale / 9 {
        frac.push_str(&format!("{:09}", group(9)?));
    }
    let fx = (scale % 9) as usize;
    if fx > 0 {
        let v = group(fx)?;
        frac.push_str(&format!("{v:0fx$}"));
    }
    let zero = int_part == "0" && frac.bytes().all(|b| b == b'0');
    if negative && !zero {
        out.push('-');
    }
    out.push_str(int_part);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

/// Options of value conversion.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValueOpts {
    pub zero_dates: ZeroDates,
}

/// The broken-down parts of a temporal value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

impl Parts {
    fn text(&self, with_time: bool, fsp: u32) -> String {
        let mut s = format!("{:04}-{:02}-{:02}", self.year, self.month, self.day);
        if with_time {
            s.push_str(&format!(
                " {:02}:{:02}:{:02}",
                self.hour, self.minute, self.second
            ));
            if fsp > 0 {
                let f = format!("{:06}", self.micros);
                s.push('.');
                s.push_str(&f[..fsp.min(6) as usize]);
            }
        }
        s
    }

    fn date(&self) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(self.year as i32, self.month, self.day)
    }

    fn datetime(&self) -> Option<NaiveDateTime> {
        let t = NaiveTime::from_hms_micro_opt(self.hour, self.minute, self.second, self.micros)?;
        Some(self.date()?.and_time(t))
    }
}

/// A date or date-time from its parts, or the zero-date policy when `chrono`
/// cannot hold it.
pub fn temporal(ct: &ColType, p: Parts, opts: &ValueOpts) -> Value {
    let (value, with_time, fsp) = match ct {
        ColType::Date => (p.date().map(Value::Date), false, 0),
        ColType::DateTime { fsp } => (p.datetime().map(Value::Timestamp), true, *fsp),
        ColType::Timestamp { fsp } => (
            p.datetime().map(|d| Value::TimestampTz(d.and_utc())),
            true,
            *fsp,
        ),
        _ => (None, true, 6),
    };
    match value {
        Some(v) if p.year > 0 && p.month > 0 && p.day > 0 => v,
        _ => match opts.zero_dates {
            ZeroDates::Null => Value::Null,
            ZeroDates::Text => Value::Other(p.text(with_time, fsp)),
        },
    }
}

/// A `time` value as an interval.
pub fn time_value(negative: bool, hours: u64, minute: u32, second: u32, micros: u32) -> Value {
    let us = ((hours * 3600 + u64::from(minute) * 60 + u64::from(second)) * 1_000_000
        + u64::from(micros)) as i64;
    Value::Interval(Interval {
        months: 0,
        days: 0,
        micros: if negative { -us } else { us },
    })
}

/// MySQL `latin1` bytes 0x80..=0x9F (Windows-1252, with the five undefined
/// positions mapped to the C1 controls of the same code).
const LATIN1_80: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

/// Decodes string bytes of a column charset into UTF-8.
pub fn decode_text(b: &[u8], cs: &Charset) -> Result<String, String> {
    match cs {
        Charset::Utf8mb4 | Charset::Utf8mb3 | Charset::Binary => {
            String::from_utf8(b.to_vec()).map_err(|_| "text is not valid UTF-8".to_string())
        }
        Charset::Ascii => {
            if b.is_ascii() {
                // ASCII is UTF-8.
                String::from_utf8(b.to_vec()).map_err(|_| "text is not ASCII".to_string())
            } else {
                Err("text is not ASCII".into())
            }
        }
        Charset::Latin1 => Ok(b
            .iter()
            .map(|&c| match c {
                0x80..=0x9f => LATIN1_80[usize::from(c - 0x80)],
                c => char::from(c),
            })
            .collect()),
        Charset::Ucs2 | Charset::Utf16 | Charset::Utf16le => {
            if b.len() % 2 != 0 {
                return Err("UTF-16 text has an odd length".into());
            }
            let units = b.chunks_exact(2).map(|c| {
                if *cs == Charset::Utf16le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            });
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| "text is not valid UTF-16".to_string())
        }
        Charset::Utf32 => {
            if b.len() % 4 != 0 {
                return Err("UTF-32 text has a bad length".into());
            }
            b.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or_else(|| "text is not valid UTF-32".to_string())
        }
        Charset::Other(name) => Err(format!("charset {name} cannot be decoded")),
    }
}

fn text_or_bytes(b: &[u8], ct: &ColType) -> Result<Value, DecodeError> {
    match ct.charset() {
        Some(cs) if !cs.is_binary() => decode_text(b, cs).map(Value::Text).map_err(DecodeError),
        _ if *ct == ColType::Json => String::from_utf8(b.to_vec())
            .map(Value::Json)
            .map_err(|_| DecodeError("JSON text is not UTF-8".into())),
        _ => Ok(Value::Bytes(b.to_vec())),
    }
}

fn int_value(v: i64, u: u64, ct: &ColType) -> Value {
    match ct {
        ColType::Int {
            bytes, unsigned, ..
        } => match (bytes, unsigned) {
            (1, false) | (2, false) => Value::Int16(v as i16),
            (1, true) => Value::Int16(u as i16),
            (2, true) | (3, _) => Value::Int32(if *unsigned { u as i32 } else { v as i32 }),
            (4, false) => Value::Int32(v as i32),
            (4, true) => Value::Int64(u as i64),
            (_, false) => Value::Int64(v),
            (_, true) => Value::Decimal(u.to_string()),
        },
        ColType::Year => Value::Int16(v as i16),
        _ => Value::Int64(v),
    }
}

/// Whether a binlog column type can carry values of the schema's column type.
pub fn compatible(m: &MapColumn, ct: &ColType) -> bool {
    match ct {
        ColType::Int { bytes, .. } => matches!(
            (m.ty, bytes),
            (col::TINY, 1)
                | (col::SHORT, 2)
                | (col::INT24, 3)
                | (col::LONG, 4)
                | (col::LONGLONG, 8)
        ),
        ColType::Decimal {
            precision, scale, ..
        } => {
            m.ty == col::NEWDECIMAL
                && u32::from(m.meta) == *precision
                && u32::from(m.meta2) == *scale
        }
        ColType::Float { .. } => m.ty == col::FLOAT,
        ColType::Double { .. } => m.ty == col::DOUBLE,
        ColType::Bit { bits } => {
            m.ty == col::BIT && u32::from(m.meta) * 8 + u32::from(m.meta2) == *bits
        }
        ColType::Year => m.ty == col::YEAR,
        ColType::Date => matches!(m.ty, col::DATE | col::NEWDATE),
        ColType::Time { fsp } => {
            m.ty == col::TIME2 && u32::from(m.meta) == *fsp || m.ty == col::TIME && *fsp == 0
        }
        ColType::DateTime { fsp } => {
            m.ty == col::DATETIME2 && u32::from(m.meta) == *fsp
                || m.ty == col::DATETIME && *fsp == 0
        }
        ColType::Timestamp { fsp } => {
            m.ty == col::TIMESTAMP2 && u32::from(m.meta) == *fsp
                || m.ty == col::TIMESTAMP && *fsp == 0
        }
        ColType::Char { .. } => m.ty == col::STRING,
        ColType::VarChar { .. } => matches!(m.ty, col::VARCHAR | col::VAR_STRING),
        ColType::Lob { .. } => m.ty == col::BLOB,
        ColType::Enum { .. } => m.ty == col::ENUM,
        ColType::Set { .. } => m.ty == col::SET,
        ColType::Json => matches!(m.ty, col::JSON | col::BLOB),
        ColType::Geometry { .. } => m.ty == col::GEOMETRY,
    }
}

/// Decodes one non-NULL cell of a row image. `m` is the table map's
/// description of the column, `ct` the schema's.
pub fn decode_cell(
    r: &mut Reader<'_>,
    m: &MapColumn,
    ct: &ColType,
    opts: &ValueOpts,
) -> Result<Value, DecodeError> {
    Ok(match m.ty {
        col::TINY => {
            let b = r.u8()?;
            int_value(i64::from(b as i8), u64::from(b), ct)
        }
        col::SHORT => {
            let u = r.u16()?;
            int_value(i64::from(u as i16), u64::from(u), ct)
        }
        col::INT24 => {
            let u = r.uint(3)? as u32;
            let s = ((u << 8) as i32) >> 8;
            int_value(i64::from(s), u64::from(u), ct)
        }
        col::LONG => {
            let u = r.u32()?;
            int_value(i64::from(u as i32), u64::from(u), ct)
        }
        col::LONGLONG => {
            let u = r.u64()?;
            int_value(u as i64, u, ct)
        }
        col::YEAR => {
            let b = r.u8()?;
            Value::Int16(if b == 0 { 0 } else { 1900 + i16::from(b) })
        }
        col::FLOAT => Value::Float32(f32::from_bits(r.u32()?)),
        col::DOUBLE => Value::Float64(f64::from_bits(r.u64()?)),
        col::NEWDECIMAL => {
            Value::Decimal(decode_decimal(r, u32::from(m.meta), u32::from(m.meta2))?)
        }
        col::BIT => {
            let len = usize::from(m.meta) + usize::from(m.meta2 > 0);
            let b = r.take(len)?;
            if matches!(ct, ColType::Bit { bits: 1 }) {
                Value::Bool(b.iter().any(|&x| x != 0))
            } else {
                Value::Bytes(b.to_vec())
            }
        }
        col::DATE | col::NEWDATE => {
            let v = r.uint(3)? as u32;
            let p = Parts {
                day: v & 31,
                month: (v >> 5) & 15,
                year: v >> 9,
                ..Parts::default()
            };
            temporal(ct, p, opts)
        }
        col::TIME => {
            let v = r.uint(3)? as u32;
            let s = ((v << 8) as i32) >> 8;
            let a = s.unsigned_abs();
            time_value(s < 0, u64::from(a / 10000), (a / 100) % 100, a % 100, 0)
        }
        col::TIME2 => decode_time2(r, u32::from(m.meta))?,
        col::DATETIME => {
            let v = r.u64()?;
            let (d, t) = (v / 1_000_000, v % 1_000_000);
            let p = Parts {
                year: (d / 10000) as u32,
                month: ((d / 100) % 100) as u32,
                day: (d % 100) as u32,
                hour: (t / 10000) as u32,
                minute: ((t / 100) % 100) as u32,
                second: (t % 100) as u32,
                micros: 0,
            };
            temporal(ct, p, opts)
        }
        col::DATETIME2 => {
            let fsp = u32::from(m.meta);
            let b = r.take(5)?;
            let v = b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
            let int = v.wrapping_sub(0x80_0000_0000);
            let micros = read_frac(r, fsp)?;
            let ymd = int >> 17;
            let ym = ymd >> 5;
            let hms = int & 0x1_ffff;
            let p = Parts {
                year: (ym / 13) as u32,
                month: (ym % 13) as u32,
                day: (ymd & 31) as u32,
                hour: (hms >> 12) as u32,
                minute: ((hms >> 6) & 63) as u32,
                second: (hms & 63) as u32,
                micros,
            };
            temporal(ct, p, opts)
        }
        col::TIMESTAMP => timestamp(i64::from(r.u32()?), 0, ct, opts),
        col::TIMESTAMP2 => {
            let b = r.take(4)?;
            let secs = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let micros = read_frac(r, u32::from(m.meta))?;
            timestamp(i64::from(secs), micros, ct, opts)
        }
        col::VARCHAR | col::VAR_STRING => {
            let len = if m.meta < 256 {
                usize::from(r.u8()?)
            } else {
                usize::from(r.u16()?)
            };
            text_or_bytes(r.take(len)?, ct)?
        }
        col::STRING => {
            let len = if m.meta < 256 {
                usize::from(r.u8()?)
            } else {
                usize::from(r.u16()?)
            };
            let b = r.take(len)?;
            match ct {
                // BINARY(n) reads back padded with zero bytes; the binlog trims them.
                ColType::Char { len: n, charset }
                    if charset.is_binary() && b.len() < *n as usize =>
                {
                    let mut v = b.to_vec();
                    v.resize(*n as usize, 0);
                    Value::Bytes(v)
                }
                _ => text_or_bytes(b, ct)?,
            }
        }
        col::ENUM => {
            let idx = r.uint(usize::from(m.meta).clamp(1, 2))? as usize;
            let ColType::Enum { values, .. } = ct else {
                return err("enum value for a column that is not an enum");
            };
            Value::Text(if idx == 0 {
                String::new()
            } else {
                values.get(idx - 1).cloned().ok_or_else(|| {
                    DecodeError(format!(
                        "enum index {idx} beyond the {} members",
                        values.len()
                    ))
                })?
            })
        }
        col::SET => {
            let n = usize::from(m.meta).clamp(1, 8);
            let bits = r.uint(n)?;
            let ColType::Set { values, .. } = ct else {
                return err("set value for a column that is not a set");
            };
            let mut s = String::new();
            for (i, v) in values.iter().enumerate().take(64) {
                if bits & (1u64 << i) != 0 {
                    if !s.is_empty() {
                        s.push(',');
                    }
                    s.push_str(v);
                }
            }
            if values.len() < 64 && bits >> values.len() != 0 {
                return err("set value has bits beyond its members");
            }
            Value::Text(s)
        }
        col::BLOB | col::GEOMETRY => {
            let n = usize::from(m.meta);
            if !(1..=4).contains(&n) {
                return err(format!("blob length size {n} is invalid"));
            }
            let len = r.uint(n)? as usize;
            text_or_bytes(r.take(len)?, ct)?
        }
        col::JSON => {
            let n = usize::from(m.meta);
            if !(1..=4).contains(&n) {
                return err(format!("json length size {n} is invalid"));
            }
            let len = r.uint(n)? as usize;
            Value::Json(super::json::to_text(r.take(len)?)?)
        }
        other => return err(format!("cannot decode binlog column type {other}")),
    })
}

fn read_frac(r: &mut Reader<'_>, fsp: u32) -> Result<u32, DecodeError> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => u32::from(r.u8()?) * 10_000,
        3 | 4 => u32::from(u16::from_be_bytes([r.u8()?, r.u8()?])) * 100,
        5 | 6 => {
            let b = r.take(3)?;
            (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
        }
        _ => return err(format!("fractional seconds precision {fsp} is invalid")),
    })
}

fn decode_time2(r: &mut Reader<'_>, fsp: u32) -> Result<Value, DecodeError> {
    const INT_OFS: i64 = 0x80_0000;
    let be = |b: &[u8]| b.iter().fold(0i64, |acc, &x| (acc << 8) | i64::from(x));
    let packed: i64 = match fsp {
        0 => (be(r.take(3)?) - INT_OFS) << 24,
        1 | 2 => {
            let mut int = be(r.take(3)?) - INT_OFS;
            let mut frac = i64::from(r.u8()?);
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x100;
            }
            (int << 24) + frac * 10_000
        }
        3 | 4 => {
            let mut int = be(r.take(3)?) - INT_OFS;
            let mut frac = be(r.take(2)?);
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x10000;
            }
            (int << 24) + frac * 100
        }
        5 | 6 => be(r.take(6)?) - 0x8000_0000_0000,
        _ => return err(format!("time precision {fsp} is invalid")),
    };
    let negative = packed < 0;
    let p = packed.unsigned_abs();
    let hms = p >> 24;
    let micros = (p % (1 << 24)) as u32;
    if micros >= 1_000_000 {
        return err("corrupt time fraction in the binlog");
    }
    Ok(time_value(
        negative,
        (hms >> 12) % (1 << 10),
        ((hms >> 6) % 64) as u32,
        (hms % 64) as u32,
        micros,
    ))
}

fn timestamp(secs: i64, micros: u32, ct: &ColType, opts: &ValueOpts) -> Value {
    if secs == 0 && micros == 0 {
        return temporal(ct, Parts::default(), opts);
    }
    match DateTime::from_timestamp(secs, micros * 1000) {
        Some(t) => Value::TimestampTz(t),
        None => temporal(ct, Parts::default(), opts),
    }
}

/// Converts a value read with the binary protocol (snapshot) into the
/// engine value the binlog path produces for the same cell.
pub fn from_protocol(
    v: mysql_async::Value,
    ct: &ColType,
    opts: &ValueOpts,
) -> Result<Value, String> {
    use mysql_async::Value as M;
    Ok(match v {
        M::NULL => Value::Null,
        M::Int(i) => match ct {
            ColType::Year => Value::Int16(i as i16),
            ColType::Int {
                unsigned: true,
                bytes: 8,
                ..
            } => Value::Decimal((i as u64).to_string()),
            _ => int_value(i, i as u64, ct),
        },
        M::UInt(u) => match ct {
            ColType::Year => Value::Int16(u as i16),
            _ => int_value(u as i64, u, ct),
        },
        M::Float(f) => match ct {
            ColType::Double { .. } => Value::Float64(f64::from(f)),
            _ => Value::Float32(f),
        },
        M::Double(d) => match ct {
            ColType::Float { .. } => Value::Float32(d as f32),
            _ => Value::Float64(d),
        },
        M::Date(year, month, day, hour, minute, second, micros) => temporal(
            ct,
            Parts {
                year: u32::from(year),
                month: u32::from(month),
                day: u32::from(day),
                hour: u32::from(hour),
                minute: u32::from(minute),
                second: u32::from(second),
                micros,
            },
            opts,
        ),
        M::Time(neg, days, hours, minutes, seconds, micros) => time_value(
            neg,
            u64::from(days) * 24 + u64::from(hours),
            u32::from(minutes),
            u32::from(seconds),
            micros,
        ),
        M::Bytes(b) => match ct {
            ColType::Decimal { .. }
            | ColType::Int {
                unsigned: true,
                bytes: 8,
                ..
            } => Value::Decimal(
                String::from_utf8(b).map_err(|_| "decimal text is not UTF-8".to_string())?,
            ),
            ColType::Bit { bits: 1 } => Value::Bool(b.iter().any(|&x| x != 0)),
            ColType::Json => {
                Value::Json(String::from_utf8(b).map_err(|_| "JSON text is not UTF-8".to_string())?)
            }
            ColType::Enum { .. } | ColType::Set { .. } => {
                Value::Text(String::from_utf8(b).map_err(|_| "text is not UTF-8".to_string())?)
            }
            _ => match ct.charset() {
                // The session asked for utf8mb4 results.
                Some(cs) if !cs.is_binary() => {
                    Value::Text(String::from_utf8(b).map_err(|_| "text is not UTF-8".to_string())?)
                }
                _ => Value::Bytes(b),
            },
        },
    })
}

#[cfg(test)]
#[path = "values_tests.rs"]
mod tests;

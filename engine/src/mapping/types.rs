//! Type names in mappings (`source_type`, `target_type`, `CAST`) and the
//! exact conversion of values between types: a value is converted when the
//! target type represents it exactly, and rejected otherwise (digits lost,
//! out of range, too long, a time of day dropped). Floating-point targets are
//! the exception: they take the nearest float, as any SQL cast does, but
//! integers must be exact and overflow is rejected.
//!
//! Errors name types and reasons, never the value.

use chrono::{NaiveTime, Timelike};

use super::dec::Dec;
use crate::pgtext;
use crate::value::{DataType, Value};

/// Parses a portable type name (case-insensitive): `boolean`, `smallint`,
/// `integer`/`int`, `bigint`, `real`, `double precision`, `numeric(p,s)`/
/// `decimal(p,s)`, `varchar(n)`, `text`, `char(n)`, `bytea`/`blob`, `date`,
/// `time(p)`, `timestamp(p)`/`datetime(p)`, `timestamptz(p)`, `interval`,
/// `uuid`, `json`, `jsonb`, and any of them followed by `[]`.
pub fn parse_type_name(name: &str) -> Result<DataType, String> {
    let lower = name.trim().to_ascii_lowercase();
    if let Some(elem) = lower.strip_suffix("[]") {
        return Ok(DataType::Array(Box::new(parse_type_name(elem)?)));
    }
    let (base, args) = match lower.find('(') {
        Some(i) => {
            let close = lower
                .rfind(')')
                .filter(|&c| c > i)
                .ok_or_else(|| format!("type {name:?} has an unclosed '('"))?;
            let rest = lower[close + 1..].trim();
            let base = format!("{} {rest}", lower[..i].trim());
            let args: Result<Vec<u32>, _> = lower[i + 1..close]
                .split(',')
                .map(|a| a.trim().parse::<u32>())
                .collect();
            let args = args.map_err(|_| format!("type {name:?}: modifiers must be numbers"))?;
            (base, args)
        }
        None => (lower.clone(), Vec::new()),
    };
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    let one = |what: &str| -> Result<Option<u32>, String> {
        match args.as_slice() {
            [] => Ok(None),
            [n] => Ok(Some(*n)),
            _ => Err(format!("type {name:?} takes one {what}")),
        }
    };
    let none = || -> Result<(), String> {
        if args.is_empty() {
            Ok(())
        } else {
            Err(format!("type {name:?} takes no modifiers"))
        }
    };
    let t = match base.as_str() {
        "bool" | "boolean" => none().map(|_| DataType::Bool)?,
        "smallint" | "int2" | "int16" | "tinyint" => none().map(|_| DataType::Int16)?,
        "int" | "integer" | "int4" | "int32" | "mediumint" => none().map(|_| DataType::Int32)?,
        "bigint" | "int8" | "int64" => none().map(|_| DataType::Int64)?,
        "real" | "float4" | "float32" | "float" => none().map(|_| DataType::Float32)?,
        "double" | "double precision" | "float8" | "float64" => {
            none().map(|_| DataType::Float64)?
        }
        "numeric" | "decimal" => match args.as_slice() {
            [] => DataType::Decimal {
                precision: None,
                scale: None,
            },
            [p] => DataType::Decimal {
                precision: Some(*p),
                scale: Some(0),
            },
            [p, s] if s <= p && *p > 0 => DataType::Decimal {
                precision: Some(*p),
                scale: Some(*s),
            },
            _ => return Err(format!("type {name:?}: want numeric(precision[, scale ≤ precision])")),
        },
        "varchar" | "character varying" | "nvarchar" => DataType::Text {
            max_len: one("length")?,
        },
        "text" | "string" | "longtext" | "mediumtext" | "clob" => {
            none().map(|_| DataType::Text { max_len: None })?
        }
        "char" | "character" | "bpchar" | "nchar" => DataType::Char {
            len: one("length")?.or(Some(1)),
        },
        "bytea" | "blob" | "bytes" | "binary" | "varbinary" | "longblob" => {
            DataType::Bytes
        }
        "date" => none().map(|_| DataType::Date)?,
        "time" | "time without time zone" => DataType::Time {
            precision: one("precision")?,
        },
        "timestamp" | "timestamp without time zone" | "datetime" => DataType::Timestamp {
            precision: one("precision")?,
        },
        "timestamptz" | "timestamp with time zone" => DataType::TimestampTz {
            precision: one("precision")?,
        },
        "interval" => none().map(|_| DataType::Interval)?,
        "uuid" => none().map(|_| DataType::Uuid)?,
        "json" => none().map(|_| DataType::Json)?,
        "jsonb" => none().map(|_| DataType::Jsonb)?,
        _ => {
            return Err(format!(
                "unknown type {name:?}: use boolean, smallint, integer, bigint, real, double precision, \
                 numeric(p,s), varchar(n), text, char(n), bytea, date, time, timestamp, timestamptz, \
                 interval, uuid, json or jsonb (with [] for arrays)"
            ))
        }
    };
    Ok(t)
}

/// Whether two types are the same kind (modifiers ignored): what a
/// `source_type` check compares.
pub fn same_kind(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::Array(x), DataType::Array(y)) => same_kind(x, y),
        (
            DataType::Text { .. } | DataType::Char { .. },
            DataType::Text { .. } | DataType::Char { .. },
        ) => true,
        (DataType::Json | DataType::Jsonb, DataType::Json | DataType::Jsonb) => true,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// A human name of a type for messages.
pub fn type_label(t: &DataType) -> String {
    match t {
        DataType::Bool => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal {
            precision: Some(p),
            scale,
        } => format!("numeric({p},{})", scale.unwrap_or(0)),
        DataType::Decimal { .. } => "numeric".into(),
        DataType::Text { max_len: Some(n) } => format!("varchar({n})"),
        DataType::Text { .. } => "text".into(),
        DataType::Char { len } => format!("char({})", len.unwrap_or(1)),
        DataType::Bytes => "bytea".into(),
        DataType::Date => "date".into(),
        DataType::Time { .. } => "time".into(),
        DataType::Timestamp { .. } => "timestamp".into(),
        DataType::TimestampTz { .. } => "timestamptz".into(),
        DataType::Interval => "interval".into(),
        DataType::Uuid => "uuid".into(),
        DataType::Json => "json".into(),
        DataType::Jsonb => "jsonb".into(),
        DataType::Array(e) => format!("{}[]", type_label(e)),
        DataType::Other { name } => name.clone(),
    }
}

/// Why a value could not be converted (never the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvError(pub String);

impl std::fmt::Display for ConvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(from: &Value, to: &DataType, why: &str) -> Result<T, ConvError> {
    Err(ConvError(format!(
        "a {} value cannot be represented as {}: {why}",
        from.kind(),
        type_label(to)
    )))
}

/// The text form of a non-null value (PostgreSQL's text format: ISO dates,
/// `\x` hex bytes, canonical decimals).
pub fn text_of(v: &Value) -> String {
    match v {
        Value::Text(s) | Value::Decimal(s) | Value::Json(s) | Value::Other(s) => s.clone(),
        Value::Null | Value::Unchanged => String::new(),
        _ => {
            let mut s = String::new();
            pgtext::render(v, &mut s);
            s
        }
    }
}

const F64_EXACT_INT: i64 = 1 << 53;
const F32_EXACT_INT: i64 = 1 << 24;

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int16(i) => Some(*i as i64),
        Value::Int32(i) => Some(*i as i64),
        Value::Int64(i) => Some(*i),
        _ => None,
    }
}

/// Converts `v` to `to`, exactly or with an error; `Null` and `Unchanged` pass.
pub fn convert(v: Value, to: &DataType) -> Result<Value, ConvError> {
    if matches!(v, Value::Null | Value::Unchanged) {
        return Ok(v);
    }
    match to {
        DataType::Bool => to_bool(v, to),
        DataType::Int16 => {
            to_int(&v, to, i16::MIN as i64, i16::MAX as i64).map(|i| Value::Int16(i as i16))
        }
        DataType::Int32 => {
            to_int(&v, to, i32::MIN as i64, i32::MAX as i64).map(|i| Value::Int32(i as i32))
        }
        DataType::Int64 => to_int(&v, to, i64::MIN, i64::MAX).map(Value::Int64),
        DataType::Float32 => {
            if let Some(i) = int_of(&v) {
                if i.abs() > F32_EXACT_INT {
                    return err(&v, to, "the integer has more digits than a real holds");
                }
            }
            let f = to_f64(&v, to)?;
            let g = f as f32;
            if f.is_finite() && !g.is_finite() {
                return err(&v, to, "out of range");
            }
            Ok(Value::Float32(g))
        }
        DataType::Float64 => {
            if let Some(i) = int_of(&v) {
                if i.abs() > F64_EXACT_INT {
                    return err(&v, to, "the integer has more digits than a double holds");
                }
            }
            to_f64(&v, to).map(Value::Float64)
        }
        DataType::Decimal { precision, scale } => to_decimal(v, to, *precision, *scale),
        DataType::Text { max_len } => {
            let s = match v {
                Value::Text(s) => s,
                other => text_of(&other),
            };
            if let Some(n) = max_len {
                if s.chars().count() > *n as usize {
                    return Err(ConvError(format!("text longer than {n} characters")));
                }
            }
            Ok(Value::Text(s))
        }
        DataType::Char { len } => {
            let s = match v {
                Value::Text(s) => s,
                other => text_of(&other),
            };
            let n = len.unwrap_or(1) as usize;
            if s.trim_end_matches(' ').chars().count() > n {
                return Err(ConvError(format!("text longer than {n} characters")));
            }
            Ok(Value::Text(s))
        }
        DataType::Bytes => match v {
            Value::Bytes(b) => Ok(Value::Bytes(b)),
            Value::Text(s) => Ok(Value::Bytes(s.into_bytes())),
            Value::Uuid(u) => Ok(Value::Bytes(u.to_vec())),
            other => err(&other, to, "only text, uuid and bytes convert to bytes"),
        },
        DataType::Date => match v {
            Value::Date(d) => Ok(Value::Date(d)),
            Value::Timestamp(t) if t.time() == NaiveTime::MIN => Ok(Value::Date(t.date())),
            Value::TimestampTz(t) if t.time() == NaiveTime::MIN => Ok(Value::Date(t.date_naive())),
            Value::Timestamp(_) | Value::TimestampTz(_) => err(
                &v,
                to,
                "it has a time of day (use DATE_FORMAT or a script to drop it)",
            ),
            other => from_text(other, to),
        },
        DataType::Time { precision } => match v {
            Value::Time(t) => check_micros(Value::Time(t), t.nanosecond() / 1000, *precision, to),
            other => from_text(other, to),
        },
        DataType::Timestamp { precision } => match v {
            Value::Timestamp(t) => {
                check_micros(Value::Timestamp(t), t.nanosecond() / 1000, *precision, to)
            }
            Value::TimestampTz(t) => check_micros(
                Value::Timestamp(t.naive_utc()),
                t.nanosecond() / 1000,
                *precision,
                to,
            ),
            Value::Date(d) => Ok(Value::Timestamp(d.and_time(NaiveTime::MIN))),
            Value::Text(s) if is_bare_date(&s) => match pgtext::parse(&DataType::Date, s.trim()) {
                Ok(Value::Date(d)) => Ok(Value::Timestamp(d.and_time(NaiveTime::MIN))),
                _ => Err(ConvError(format!("text is not a valid {}", type_label(to)))),
            },
            other => from_text(other, to),
        },
        DataType::TimestampTz { precision } => match v {
            Value::TimestampTz(t) => {
                check_micros(Value::TimestampTz(t), t.nanosecond() / 1000, *precision, to)
            }
            Value::Timestamp(t) => check_micros(
                Value::TimestampTz(t.and_utc()),
                t.nanosecond() / 1000,
                *precision,
                to,
            ),
            Value::Date(d) => Ok(Value::TimestampTz(d.and_time(NaiveTime::MIN).and_utc())),
            Value::Text(s) => match pgtext::parse(to, s.trim()) {
                Ok(v) => Ok(v),
                // No offset (or a bare date): read as UTC.
                Err(_) => match convert(
                    Value::Text(s),
                    &DataType::Timestamp {
                        precision: *precision,
                    },
                ) {
                    Ok(Value::Timestamp(t)) => Ok(Value::TimestampTz(t.and_utc())),
                    _ => Err(ConvError(format!("text is not a valid {}", type_label(to)))),
                },
            },
            other => from_text(other, to),
        },
        DataType::Interval => match v {
            Value::Interval(i) => Ok(Value::Interval(i)),
            other => from_text(other, to),
        },
        DataType::Uuid => match v {
            Value::Uuid(u) => Ok(Value::Uuid(u)),
            Value::Bytes(b) if b.len() == 16 => {
                let mut u = [0u8; 16];
                u.copy_from_slice(&b);
                Ok(Value::Uuid(u))
            }
            other => from_text(other, to),
        },
        DataType::Json | DataType::Jsonb => match v {
            Value::Json(s) => Ok(Value::Json(s)),
            Value::Text(s) => {
                if serde_json::from_str::<serde::de::IgnoredAny>(&s).is_err() {
                    return Err(ConvError(format!("text is not valid {}", type_label(to))));
                }
                Ok(Value::Json(s))
            }
            Value::Bool(_)
            | Value::Int16(_)
            | Value::Int32(_)
            | Value::Int64(_)
            | Value::Decimal(_) => Ok(Value::Json(text_of(&v))),
            Value::Float32(_) | Value::Float64(_) => {
                let t = text_of(&v);
                if t.parse::<f64>().is_ok_and(f64::is_finite) {
                    Ok(Value::Json(t))
                } else {
                    err(&v, to, "JSON has no NaN or infinity")
                }
            }
            other => Ok(Value::Json(
                serde_json::Value::String(text_of(&other)).to_string(),
            )),
        },
        DataType::Array(elem) => match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::Array(_) if !matches!(**elem, DataType::Array(_)) => convert(i, to),
                    _ => convert(i, elem),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => from_text(other, to),
        },
        DataType::Other { .. } => Ok(match v {
            Value::Other(s) => Value::Other(s),
            other => Value::Other(text_of(&other)),
        }),
    }
}

/// `YYYY-MM-DD` alone.
fn is_bare_date(s: &str) -> bool {
    let b = s.trim().as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-'
}

fn check_micros(
    v: Value,
    micros: u32,
    precision: Option<u32>,
    to: &DataType,
) -> Result<Value, ConvError> {
    if let Some(p) = precision.filter(|&p| p < 6) {
        if micros % 10u32.pow(6 - p) != 0 {
            return err(
                &v,
                to,
                "it has more fractional second digits than the type keeps",
            );
        }
    }
    Ok(v)
}

/// Parses the value's text form as `to`.
fn from_text(v: Value, to: &DataType) -> Result<Value, ConvError> {
    let text = match &v {
        Value::Text(s) | Value::Other(s) => s.trim().to_string(),
        Value::Json(_) | Value::Bytes(_) | Value::Bool(_) | Value::Array(_) => {
            return err(&v, to, "no conversion between these types");
        }
        other => text_of(other),
    };
    let parsed = pgtext::parse(to, &text).map_err(|_| {
        ConvError(format!(
            "{} text is not a valid {}",
            v.kind(),
            type_label(to)
        ))
    })?;
    // Check the target's modifiers on the parsed value.
    match parsed {
        Value::Other(_) => Ok(parsed),
        p => convert(p, to),
    }
}

fn to_bool(v: Value, to: &DataType) -> Result<Value, ConvError> {
    match &v {
        Value::Bool(b) => Ok(Value::Bool(*b)),
        _ => match int_of(&v) {
            Some(0) => Ok(Value::Bool(false)),
            Some(1) => Ok(Value::Bool(true)),
            Some(_) => err(&v, to, "only 0 and 1 are booleans"),
            None => match &v {
                Value::Text(s) => {
                    pgtext::parse(to, s).map_err(|_| ConvError("text is not a boolean".into()))
                }
                _ => err(&v, to, "no conversion between these types"),
            },
        },
    }
}

fn to_int(v: &Value, to: &DataType, min: i64, max: i64) -> Result<i64, ConvError> {
    let i = match v {
        Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => int_of(v),
        Value::Bool(b) => Some(*b as i64),
        Value::Decimal(s) | Value::Text(s) => {
            let d = Dec::parse(s)
                .ok_or_else(|| ConvError(format!("{} is not a number in range", v.kind())))?;
            if !d.is_integer() {
                return err(v, to, "it has a fractional part");
            }
            d.to_i64()
        }
        Value::Float32(f) => float_int(*f as f64),
        Value::Float64(f) => float_int(*f),
        _ => return err(v, to, "no conversion between these types"),
    };
    match i {
        Some(i) if (min..=max).contains(&i) => Ok(i),
        Some(_) | None if matches!(v, Value::Float32(_) | Value::Float64(_)) => {
            err(v, to, "not an integer in range")
        }
        _ => err(v, to, "out of range"),
    }
}

fn float_int(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
}

fn to_f64(v: &Value, to: &DataType) -> Result<f64, ConvError> {
    let f = match v {
        Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => int_of(v).unwrap_or(0) as f64,
        Value::Float32(f) => *f as f64,
        Value::Float64(f) => *f,
        Value::Decimal(s) | Value::Text(s) => match s.trim() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            t => {
                let f: f64 = t
                    .parse()
                    .map_err(|_| ConvError(format!("{} is not a number", v.kind())))?;
                if !f.is_finite() {
                    return err(v, to, "out of range");
                }
                f
            }
        },
        _ => return err(v, to, "no conversion between these types"),
    };
    Ok(f)
}

/// Fits decimal text into `numeric(p,s)`: fractional digits beyond `s` must
/// be zeros; integer digits at most `p - s`.
fn to_decimal(v: Value, to: &DataType, p: Option<u32>, s: Option<u32>) -> Result<Value, ConvError> {
    let d = match &v {
        Value::Decimal(t) | Value::Text(t) => match t.trim() {
            special @ ("NaN" | "Infinity" | "-Infinity") => {
                if p.is_some() && special != "NaN" {
                    return err(&v, to, "a bounded numeric holds no infinity");
                }
                return Ok(Value::Decimal(special.to_string()));
            }
            t => match Dec::parse(t) {
                Some(d) => d,
                None => return check_big_decimal(t, &v, to, p, s),
            },
        },
        Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => Dec::int(int_of(&v).unwrap_or(0)),
        Value::Float32(f) => {
            Dec::from_f64(*f as f64).ok_or_else(|| ConvError("NaN or infinite float".into()))?
        }
        Value::Float64(f) => {
            Dec::from_f64(*f).ok_or_else(|| ConvError("NaN or infinite float".into()))?
        }
        Value::Bool(_) => return err(&v, to, "no conversion between these types"),
        _ => return from_text(v, to),
    };
    let d = match s {
        Some(s) if d.s > s => {
            let r = d.round(s);
            if r.checked_sub(d).is_none_or(|x| x.m != 0) {
                return err(&v, to, &format!("it has more than {s} decimal places"));
            }
            r
        }
        _ => d,
    };
    if let Some(p) = p {
        if d.int_digits() > p.saturating_sub(s.unwrap_or(0)) {
            return err(&v, to, "too many digits before the decimal point");
        }
    }
    Ok(Value::Decimal(d.to_text()))
}

/// Checks a decimal beyond 38 digits by its text.
fn check_big_decimal(
    t: &str,
    v: &Value,
    to: &DataType,
    p: Option<u32>,
    s: Option<u32>,
) -> Result<Value, ConvError> {
    let body = t.trim_start_matches(['-', '+']);
    if body.is_empty()
        || !body.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        || body.matches('.').count() > 1
    {
        return Err(ConvError(format!("{} is not a decimal number", v.kind())));
    }
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let frac_digits = frac.trim_end_matches('0').len() as u32;
    if let Some(s) = s {
        if frac_digits > s {
            return err(v, to, &format!("it has more than {s} decimal places"));
        }
    }
    if let Some(p) = p {
        if int.trim_start_matches('0').len() as u32 > p.saturating_sub(s.unwrap_or(0)) {
            return err(v, to, "too many digits before the decimal point");
        }
    }
    Ok(Value::Decimal(t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn num(p: u32, s: u32) -> DataType {
        DataType::Decimal {
            precision: Some(p),
            scale: Some(s),
        }
    }

    #[test]
    fn type_names() {
        assert_eq!(parse_type_name("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(parse_type_name("numeric(10, 2)").unwrap(), num(10, 2));
        assert_eq!(
            parse_type_name("character varying(20)").unwrap(),
            DataType::Text { max_len: Some(20) }
        );
        assert_eq!(
            parse_type_name("timestamp(3) with time zone").unwrap(),
            DataType::TimestampTz { precision: Some(3) }
        );
        assert_eq!(
            parse_type_name("int[]").unwrap(),
            DataType::Array(Box::new(DataType::Int32))
        );
        for bad in ["money", "numeric(2,5)", "varchar(x)", "int(3"] {
            assert!(parse_type_name(bad).is_err(), "{bad}");
        }
        assert!(parse_type_name("money")
            .unwrap_err()
            .contains("unknown type"));
    }

    #[test]
    fn integers_convert_exactly_or_not_at_all() {
        assert_eq!(
            convert(Value::Int64(7), &DataType::Int16),
            Ok(Value::Int16(7))
        );
        assert!(convert(Value::Int64(70_000), &DataType::Int16)
            .unwrap_err()
            .0
            .contains("out of range"));
        assert_eq!(
            convert(Value::Decimal("12.000".into()), &DataType::Int32),
            Ok(Value::Int32(12))
        );
        assert!(convert(Value::Decimal("12.5".into()), &DataType::Int32)
            .unwrap_err()
            .0
            .contains("fractional"));
        assert_eq!(
            convert(Value::Text(" 42 ".into()), &DataType::Int64),
            Ok(Value::Int64(42))
        );
        assert!(convert(Value::Text("4x".into()), &DataType::Int64).is_err());
        assert!(convert(Value::Float64(1.5), &DataType::Int64).is_err());
        assert_eq!(
            convert(Value::Float64(3.0), &DataType::Int64),
            Ok(Value::Int64(3))
        );
        assert!(convert(Value::Int64(1 << 60), &DataType::Float64).is_err());
        assert_eq!(
            convert(Value::Int32(5), &DataType::Float64),
            Ok(Value::Float64(5.0))
        );
    }

    #[test]
    fn decimals_keep_every_digit_or_fail() {
        assert_eq!(
            convert(Value::Decimal("12.30".into()), &num(5, 1)),
            Ok(Value::Decimal("12.3".into()))
        );
        let e = convert(Value::Decimal("12.34".into()), &num(5, 1)).unwrap_err();
        assert!(e.0.contains("more than 1 decimal places"), "{e}");
        assert!(!e.0.contains("12.34"), "the value leaked: {e}");
        assert!(convert(Value::Decimal("12345.6".into()), &num(5, 1)).is_err());
        assert_eq!(
            convert(Value::Int32(99), &num(4, 2)),
            Ok(Value::Decimal("99".into()))
        );
        assert_eq!(
            convert(Value::Float64(0.1), &num(4, 2)),
            Ok(Value::Decimal("0.1".into()))
        );
        let big = format!("{}.5", "9".repeat(40));
        assert!(convert(Value::Decimal(big.clone()), &num(60, 0)).is_err());
        assert!(convert(Value::Decimal(big), &num(60, 1)).is_ok());
    }

    #[test]
    fn text_and_times() {
        assert!(convert(
            Value::Text("abcdef".into()),
            &DataType::Text { max_len: Some(5) }
        )
        .is_err());
        assert_eq!(
            convert(Value::Int32(5), &DataType::Text { max_len: None }),
            Ok(Value::Text("5".into()))
        );
        let d = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        let midnight = Value::Timestamp(d.and_hms_opt(0, 0, 0).unwrap());
        assert_eq!(convert(midnight, &DataType::Date), Ok(Value::Date(d)));
        let noon = Value::Timestamp(d.and_hms_opt(12, 0, 0).unwrap());
        assert!(convert(noon, &DataType::Date)
            .unwrap_err()
            .0
            .contains("time of day"));
        assert_eq!(
            convert(Value::Text("2024-02-29".into()), &DataType::Date),
            Ok(Value::Date(d))
        );
        let tz = convert(
            Value::Text("2024-02-29 10:00:00".into()),
            &DataType::TimestampTz { precision: None },
        )
        .unwrap();
        assert_eq!(
            tz,
            Value::TimestampTz(d.and_hms_opt(10, 0, 0).unwrap().and_utc())
        );
        let micro = Value::Timestamp(d.and_hms_micro_opt(1, 2, 3, 123_456).unwrap());
        assert!(convert(micro.clone(), &DataType::Timestamp { precision: Some(3) }).is_err());
        assert!(convert(micro, &DataType::Timestamp { precision: Some(6) }).is_ok());
        assert!(convert(Value::Text("{\"a\":1}".into()), &DataType::Jsonb).is_ok());
        assert!(convert(Value::Text("{nope".into()), &DataType::Jsonb).is_err());
        assert_eq!(
            convert(Value::Text("yes".into()), &DataType::Bool),
            Ok(Value::Bool(true))
        );
        assert_eq!(convert(Value::Null, &DataType::Int16), Ok(Value::Null));
        assert_eq!(
            convert(
                Value::Array(vec![Value::Int64(1), Value::Null]),
                &DataType::Array(Box::new(DataType::Int16))
            ),
            Ok(Value::Array(vec![Value::Int16(1), Value::Null]))
        );
    }
}

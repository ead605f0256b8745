//! Applying bound rules to rows.

use std::fmt::Write as _;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use sha2::{Digest, Sha256};

use super::{BoundRule, Op};
use crate::mapping::dec::Dec;
use crate::mapping::types::{convert, text_of};
use crate::value::{DataType, Value};

/// The masked text (see the module documentation).
pub fn mask(s: &str, pattern: &[char], mask_char: char, from_end: bool) -> String {
    if from_end {
        let mut rev = Vec::with_capacity(s.len());
        mask_into(s.chars().rev(), pattern.iter().rev(), mask_char, &mut |c| {
            rev.push(c)
        });
        rev.iter().rev().collect()
    } else {
        let mut out = String::with_capacity(s.len() + 4);
        mask_into(s.chars(), pattern.iter(), mask_char, &mut |c| out.push(c));
        out
    }
}

fn mask_into<'p>(
    value: impl Iterator<Item = char>,
    mut pat: impl Iterator<Item = &'p char>,
    mask_char: char,
    out: &mut impl FnMut(char),
) {
    let mut value = value.peekable();
    while let Some(&c) = value.peek() {
        match pat.next() {
            Some('#') => out(c),
            Some('*') | None => out(mask_char),
            Some(&lit) => {
                out(lit);
                if lit != c {
                    // An inserted literal: the value's character is still to place.
                    continue;
                }
            }
        }
        value.next();
    }
}

fn substring(s: &mut String, start: usize, len: Option<usize>) {
    let begin = s.char_indices().nth(start).map_or(s.len(), |(i, _)| i);
    let rest = &s[begin..];
    let end = match len {
        Some(l) => rest.char_indices().nth(l).map_or(rest.len(), |(i, _)| i),
        None => rest.len(),
    };
    if begin == 0 {
        s.truncate(end);
    } else {
        *s = rest[..end].to_string();
    }
}

fn format_date(v: &Value, format: &str, input: Option<&str>) -> Result<String, String> {
    let mut out = String::new();
    let res = match v {
        Value::Date(d) => write!(out, "{}", d.and_time(NaiveTime::MIN).format(format)),
        Value::Timestamp(t) => write!(out, "{}", t.format(format)),
        Value::TimestampTz(t) => write!(out, "{}", t.format(format)),
        Value::Text(s) => {
            let ts = match input {
                Some(i) => NaiveDateTime::parse_from_str(s, i)
                    .or_else(|_| {
                        NaiveDate::parse_from_str(s, i).map(|d| d.and_time(NaiveTime::MIN))
                    })
                    .map_err(|_| "the text does not match input_format".to_string())?,
                None => match convert(
                    Value::Text(s.clone()),
                    &DataType::Timestamp { precision: None },
                ) {
                    Ok(Value::Timestamp(t)) => t,
                    _ => {
                        return Err(
                            "the text is not an ISO date or timestamp (set input_format)".into(),
                        )
                    }
                },
            };
            write!(out, "{}", ts.format(format))
        }
        Value::Other(_) => {
            return Err("the date is outside the supported range (infinity or BC)".into())
        }
        other => return Err(format!("a {} value is not a date", other.kind())),
    };
    res.map_err(|_| {
        "the format asks for a field the value does not have (e.g. a time zone)".to_string()
    })?;
    Ok(out)
}

impl BoundRule {
    /// Applies the rule to `row` in place; errors name the rule and column.
    pub fn apply(&self, row: &mut [Value]) -> Result<(), String> {
        let Some(v) = row.get(self.col) else {
            return Err(format!("internal: row has no column {}", self.column));
        };
        if matches!(v, Value::Unchanged) {
            return Ok(());
        }
        let fail = |why: String| format!("transform rule on column {}: {why}", self.column);
        match &self.op {
            Op::Constant(c) => row[self.col] = c.clone(),
            Op::DefaultIfNull(c) => {
                if v.is_null() {
                    row[self.col] = c.clone();
                }
            }
            Op::Concat { cols, sep } => {
                if cols
                    .iter()
                    .any(|&i| matches!(row.get(i), Some(Value::Unchanged)))
                {
                    row[self.col] = Value::Unchanged;
                    return Ok(());
                }
                let mut out: Option<String> = None;
                for &i in cols {
                    let x = &row[i];
                    if x.is_null() {
                        continue;
                    }
                    let s = match &mut out {
                        Some(s) => {
                            s.push_str(sep);
                            s
                        }
                        None => out.insert(String::new()),
                    };
                    match x {
                        Value::Text(t) => s.push_str(t),
                        other => s.push_str(&text_of(other)),
                    }
                }
                row[self.col] = out.map_or(Value::Null, Value::Text);
            }
            _ if v.is_null() => {}
            Op::Mask {
                pattern,
                mask: m,
                from_end,
            } => {
                let masked = match v {
                    Value::Text(s) => mask(s, pattern, *m, *from_end),
                    other => mask(&text_of(other), pattern, *m, *from_end),
                };
                row[self.col] = Value::Text(masked);
            }
            Op::Hash { salt } => {
                let mut h = Sha256::new();
                h.update(salt);
                match v {
                    Value::Bytes(b) => h.update(b),
                    Value::Text(s) => h.update(s.as_bytes()),
                    other => h.update(text_of(other).as_bytes()),
                }
                row[self.col] = Value::Text(hex_lower(&h.finalize()));
            }
            Op::Multiply { factor, .. } if matches!(v, Value::Decimal(_)) => {
                let Value::Decimal(s) = &mut row[self.col] else {
                    return Ok(());
                };
                match Dec::parse(s) {
                    Some(d) => {
                        let p = d.checked_mul(*factor).ok_or_else(|| {
                            fail("MULTIPLY result has more than 38 significant digits".into())
                        })?;
                        s.clear();
                        p.write(s);
                    }
                    None => {
                        let special = match s.as_str() {
                            "NaN" => "NaN",
                            "Infinity" | "-Infinity" if factor.m == 0 => "NaN",
                            "Infinity" | "-Infinity" if s.starts_with('-') != (factor.m < 0) => {
                                "-Infinity"
                            }
                            "Infinity" | "-Infinity" => "Infinity",
                            _ => {
                                return Err(fail(
                                    "MULTIPLY takes decimals of at most 38 significant digits"
                                        .into(),
                                ))
                            }
                        };
                        *s = special.to_string();
                    }
                }
            }
            Op::Multiply {
                factor,
                factor_f,
                int,
            } => {
                let out = match v {
                    Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => {
                        let i = match v {
                            Value::Int16(i) => *i as i64,
                            Value::Int32(i) => *i as i64,
                            Value::Int64(i) => *i,
                            _ => 0,
                        };
                        let p = Dec::int(i)
                            .checked_mul(*factor)
                            .ok_or_else(|| fail("MULTIPLY overflowed".into()))?;
                        if *int {
                            Value::Int64(
                                p.to_i64()
                                    .ok_or_else(|| fail("MULTIPLY overflowed bigint".into()))?,
                            )
                        } else {
                            Value::Decimal(p.to_text())
                        }
                    }
                    Value::Float32(f) => Value::Float64(*f as f64 * factor_f),
                    Value::Float64(f) => Value::Float64(f * factor_f),
                    other => {
                        return Err(fail(format!(
                            "MULTIPLY cannot take a {} value",
                            other.kind()
                        )))
                    }
                };
                row[self.col] = out;
            }
            Op::Round { scale } => {
                let out = match v {
                    Value::Decimal(s) => match Dec::parse(s) {
                        Some(d) => Value::Decimal(d.round(*scale).to_text()),
                        None if s.contains(['N', 'I']) => return Ok(()),
                        None => {
                            return Err(fail(
                                "ROUND takes decimals of at most 38 significant digits".into(),
                            ))
                        }
                    },
                    Value::Float64(f) => Value::Float64(round_f64(*f, *scale)),
                    Value::Float32(f) => Value::Float32(round_f64(*f as f64, *scale) as f32),
                    _ => return Ok(()),
                };
                row[self.col] = out;
            }
            Op::DateFormat { format, input } => {
                let s = format_date(v, format, input.as_deref()).map_err(fail)?;
                row[self.col] = Value::Text(s);
            }
            text_op => {
                let Value::Text(s) = &mut row[self.col] else {
                    return Err(fail(format!(
                        "expected text, got a {} value",
                        row[self.col].kind()
                    )));
                };
                match text_op {
                    Op::Upper if s.is_ascii() => s.make_ascii_uppercase(),
                    Op::Upper => *s = s.to_uppercase(),
                    Op::Lower if s.is_ascii() => s.make_ascii_lowercase(),
                    Op::Lower => *s = s.to_lowercase(),
                    Op::Trim => {
                        let t = s.trim();
                        if t.len() != s.len() {
                            *s = t.to_string();
                        }
                    }
                    Op::Substring { start, len } => substring(s, *start, *len),
                    Op::ReplaceLit { from, to } if s.contains(from.as_str()) => {
                        *s = s.replace(from.as_str(), to);
                    }
                    Op::ReplaceRe { re, to } => {
                        if let std::borrow::Cow::Owned(o) = re.replace_all(s, to.as_str()) {
                            *s = o;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn round_f64(f: f64, scale: u32) -> f64 {
    let p = 10f64.powi(scale as i32);
    (f * p).round() / p
}

fn hex_lower(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

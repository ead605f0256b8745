//! `transform_rules`: per-column value transforms.
//!
//! A rule is compiled once from its parameters ([`RuleSpec::compile`]:
//! unknown or ill-typed parameters are errors), bound to the table's schema
//! ([`RuleSpec::bind`]: the column must exist and have a type the rule can
//! take; the rule may change the column's type), and applied per row in
//! place ([`BoundRule::apply`]). NULL stays NULL except for `CONSTANT` and
//! `DEFAULT_IF_NULL`; a column the source did not send stays unsent.
//!
//! - `MASK` `pattern`: `*` hides a character (written as `mask_char`,
//!   default `*`), `#` keeps it, any other pattern character is written as
//!   is and consumes the value's character only when it is the same one (so
//!   `***-****-####` masks `138-1234-5678` and `13812345678` alike).
//!   Characters beyond the pattern are hidden. `align = "end"` lines the
//!   pattern up with the end of the value (`####` keeps the last four).
//! - `MULTIPLY` `factor`: integers stay integers when the factor is one
//!   (overflow is an error), otherwise the result is an exact decimal;
//!   decimals are multiplied exactly; floats as floats.
//! - `HASH`: lowercase hex SHA-256 of `salt` (or the environment variable
//!   `salt_env`) followed by the value's text (raw bytes for `bytea`).
//! - `TRUNCATE` `length`, `SUBSTRING` `start` (1-based) and `length`:
//!   characters, not bytes.
//! - `REPLACE`: `from`/`to` literally, or `pattern` (a regular expression)
//!   and `to` (`$1` refers to groups).
//! - `CONSTANT` / `DEFAULT_IF_NULL` `value`: converted to the column type once.
//! - `DATE_FORMAT` `format` (strftime, e.g. `%Y-%m`); text columns are read
//!   with `input_format` (or as ISO dates/timestamps).
//! - `CONCAT` `columns`, `separator`: the text of the columns joined, NULLs
//!   skipped (NULL when all are NULL), into `column`.
//! - `ROUND` `scale` (default 0): half away from zero.

use std::fmt::{self, Write as _};

use chrono::format::{Item, StrftimeItems};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use regex::Regex;
use sha2::{Digest, Sha256};

use super::dec::Dec;
use super::expr::Column;
use super::types::{convert, text_of, type_label};
use crate::config::{Literal, Params, TransformRule, TransformType};
use crate::value::{DataType, Value};

/// A rule compiled from its parameters, before the schema is known.
pub struct RuleSpec {
    column: String,
    kind: Kind,
}

enum Kind {
    Mask {
        pattern: Vec<char>,
        mask: char,
        from_end: bool,
    },
    Multiply {
        factor: Dec,
        factor_f: f64,
    },
    Hash {
        salt: Vec<u8>,
    },
    Truncate {
        len: usize,
    },
    Upper,
    Lower,
    Trim,
    ReplaceLit {
        from: String,
        to: String,
    },
    ReplaceRe {
        re: Regex,
        to: String,
    },
    Constant(Literal),
    DefaultIfNull(Literal),
    DateFormat {
        format: String,
        input: Option<String>,
    },
    Concat {
        columns: Vec<String>,
        sep: String,
    },
    Round {
        scale: u32,
    },
    Substring {
        start: usize,
        len: Option<usize>,
    },
}

impl fmt::Debug for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parameters may hold secrets (a salt): show the column only.
        write!(f, "RuleSpec({})", self.column)
    }
}

/// Reads a rule's parameters, rejecting unknown ones.
struct P<'a> {
    what: String,
    params: &'a Params,
}

impl<'a> P<'a> {
    fn new(what: String, params: &'a Params, allowed: &[&str]) -> Result<Self, String> {
        if let Some(k) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            let takes = if allowed.is_empty() {
                "takes no parameters".to_string()
            } else {
                format!("takes {}", allowed.join(", "))
            };
            return Err(format!("{what}: unknown parameter {k:?} (it {takes})"));
        }
        Ok(Self { what, params })
    }

    fn str(&self, key: &str) -> Result<Option<String>, String> {
        match self.params.get(key) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{}: parameter {key} must be a string", self.what)),
        }
    }

    fn req_str(&self, key: &str) -> Result<String, String> {
        self.str(key)?
            .ok_or_else(|| format!("{}: parameter {key} is required", self.what))
    }

    fn uint(&self, key: &str) -> Result<Option<u64>, String> {
        match self.params.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                format!("{}: parameter {key} must be a whole number ≥ 0", self.what)
            }),
        }
    }

    /// A scalar as text (string, number or boolean).
    fn literal(&self, key: &str) -> Result<Literal, String> {
        match self.params.get(key) {
            Some(serde_json::Value::String(s)) => Ok(Literal(s.clone())),
            Some(serde_json::Value::Bool(b)) => Ok(Literal(b.to_string())),
            Some(serde_json::Value::Number(n)) => Ok(Literal(match n.as_f64() {
                Some(f) if !n.is_i64() && !n.is_u64() => {
                    ryu::Buffer::new().format_finite(f).to_string()
                }
                _ => n.to_string(),
            })),
            Some(_) => Err(format!(
                "{}: parameter {key} must be a string, number or boolean",
                self.what
            )),
            None => Err(format!("{}: parameter {key} is required", self.what)),
        }
    }
}

fn check_format(fmt: &str, what: &str, key: &str) -> Result<(), String> {
    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "{what}: parameter {key} is not a valid strftime format"
        ));
    }
    Ok(())
}

impl RuleSpec {
    /// Compiles a rule; errors name the rule, the column and the parameter.
    pub fn compile(rule: &TransformRule) -> Result<Self, String> {
        if rule.column.trim().is_empty() {
            return Err("a transform rule has an empty column".into());
        }
        let name = serde_json::to_value(rule.transform_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let what = format!("transform rule {name} on column {}", rule.column);
        let ps = &rule.params;
        use TransformType as T;
        let kind = match rule.transform_type {
            T::Mask => {
                let p = P::new(what, ps, &["pattern", "mask_char", "align"])?;
                let pattern: Vec<char> = p.req_str("pattern")?.chars().collect();
                if pattern.is_empty() {
                    return Err(format!("{}: parameter pattern is empty", p.what));
                }
                let mask = match p.str("mask_char")? {
                    None => '*',
                    Some(m) if m.chars().count() == 1 => m.chars().next().unwrap_or('*'),
                    Some(_) => return Err(format!("{}: mask_char must be one character", p.what)),
                };
                let from_end = match p.str("align")?.as_deref() {
                    None | Some("start") => false,
                    Some("end") => true,
                    Some(_) => {
                        return Err(format!("{}: align must be \"start\" or \"end\"", p.what))
                    }
                };
                Kind::Mask {
                    pattern,
                    mask,
                    from_end,
                }
            }
            T::Multiply => {
                let p = P::new(what, ps, &["factor"])?;
                let text = p.literal("factor")?.0;
                let factor = Dec::parse(&text)
                    .ok_or_else(|| format!("{}: factor must be a number", p.what))?;
                Kind::Multiply {
                    factor,
                    factor_f: factor.to_f64(),
                }
            }
            T::Hash => {
                let p = P::new(what, ps, &["algorithm", "salt", "salt_env"])?;
                match p
                    .str("algorithm")?
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("sha256") | Some("sha-256") => {}
                    Some(_) => return Err(format!("{}: algorithm must be sha256", p.what)),
                }
                let salt = match (p.str("salt")?, p.str("salt_env")?) {
                    (Some(_), Some(_)) => {
                        return Err(format!("{}: give salt or salt_env, not both", p.what))
                    }
                    (Some(s), None) => s.into_bytes(),
                    (None, Some(var)) => std::env::var(&var)
                        .map_err(|_| {
                            format!(
                                "{}: environment variable {var} (salt_env) is not set",
                                p.what
                            )
                        })?
                        .into_bytes(),
                    (None, None) => Vec::new(),
                };
                Kind::Hash { salt }
            }
            T::Truncate => {
                let p = P::new(what, ps, &["length"])?;
                let len = p
                    .uint("length")?
                    .ok_or_else(|| format!("{}: parameter length is required", p.what))?;
                Kind::Truncate { len: len as usize }
            }
            T::Upper => P::new(what, ps, &[]).map(|_| Kind::Upper)?,
            T::Lower => P::new(what, ps, &[]).map(|_| Kind::Lower)?,
            T::Trim => P::new(what, ps, &[]).map(|_| Kind::Trim)?,
            T::Replace => {
                let p = P::new(what, ps, &["from", "to", "pattern"])?;
                let to = p.str("to")?.unwrap_or_default();
                match (p.str("from")?, p.str("pattern")?) {
                    (Some(from), None) if !from.is_empty() => Kind::ReplaceLit { from, to },
                    (None, Some(re)) => Kind::ReplaceRe {
                        re: Regex::new(&re).map_err(|e| {
                            format!("{}: pattern is not a valid regular expression: {e}", p.what)
                        })?,
                        to,
                    },
                    _ => {
                        return Err(format!(
                            "{}: give a non-empty from (literal) or pattern (regex), not both",
                            p.what
                        ))
                    }
                }
            }
            T::Constant => {
                let p = P::new(what, ps, &["value"])?;
                Kind::Constant(p.literal("value")?)
            }
            T::DefaultIfNull => {
                let p = P::new(what, ps, &["value"])?;
                Kind::DefaultIfNull(p.literal("value")?)
            }
            T::DateFormat => {
                let p = P::new(what, ps, &["format", "input_format"])?;
                let format = p.req_str("format")?;
                check_format(&format, &p.what, "format")?;
                let input = p.str("input_format")?;
                if let Some(i) = &input {
                    check_format(i, &p.what, "input_format")?;
                }
                Kind::DateFormat { format, input }
            }
            T::Concat => {
                let p = P::new(what, ps, &["columns", "separator"])?;
                let columns: Vec<String> = match p.params.get("columns") {
                    Some(serde_json::Value::Array(a)) if !a.is_empty() => a
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<_>>()
                        .ok_or_else(|| format!("{}: columns must be column names", p.what))?,
                    _ => {
                        return Err(format!(
                            "{}: parameter columns (a non-empty list) is required",
                            p.what
                        ))
                    }
                };
                Kind::Concat {
                    columns,
                    sep: p.str("separator")?.unwrap_or_default(),
                }
            }
            T::Round => {
                let p = P::new(what, ps, &["scale"])?;
                let scale = p.uint("scale")?.unwrap_or(0);
                if scale > 30 {
                    return Err(format!("{}: scale must be at most 30", p.what));
                }
                Kind::Round {
                    scale: scale as u32,
                }
            }
            T::Substring => {
                let p = P::new(what, ps, &["start", "length"])?;
                let start = p.uint("start")?.unwrap_or(1);
                if start == 0 {
                    return Err(format!("{}: start counts from 1", p.what));
                }
                Kind::Substring {
                    start: start as usize - 1,
                    len: p.uint("length")?.map(|l| l as usize),
                }
            }
        };
        Ok(Self {
            column: rule.column.clone(),
            kind,
        })
    }

    /// The column the rule writes.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Binds the rule to the working record, updating the column's type.
    pub fn bind(&self, cols: &mut [Column]) -> Result<BoundRule, String> {
        let find = |name: &str| {
            cols.iter().position(|c| c.name == name).ok_or_else(|| {
                format!(
                    "transform rule on {}: the source has no column {name}",
                    self.column
                )
            })
        };
        let col = find(&self.column)?;
        let ty = cols[col].ty.clone();
        let is_text = matches!(ty, DataType::Text { .. } | DataType::Char { .. });
        let needs_text = |rule: &str| -> Result<(), String> {
            if is_text {
                Ok(())
            } else {
                Err(format!(
                    "transform rule {rule} needs a text column; {} is {}",
                    self.column,
                    type_label(&ty)
                ))
            }
        };
        let text_any = DataType::Text { max_len: None };
        let (op, out) = match &self.kind {
            Kind::Mask {
                pattern,
                mask,
                from_end,
            } => (
                Op::Mask {
                    pattern: pattern.clone(),
                    mask: *mask,
                    from_end: *from_end,
                },
                text_any,
            ),
            Kind::Hash { salt } => (Op::Hash { salt: salt.clone() }, text_any),
            Kind::Multiply { factor, factor_f } => {
                let out = match &ty {
                    DataType::Int16 | DataType::Int32 | DataType::Int64 if factor.is_integer() => {
                        DataType::Int64
                    }
                    DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::Decimal { .. } => DataType::Decimal {
                        precision: None,
                        scale: None,
                    },
                    DataType::Float32 | DataType::Float64 => DataType::Float64,
                    other => {
                        return Err(format!(
                            "transform rule MULTIPLY needs a numeric column; {} is {}",
                            self.column,
                            type_label(other)
                        ))
                    }
                };
                (
                    Op::Multiply {
                        factor: *factor,
                        factor_f: *factor_f,
                        int: out == DataType::Int64,
                    },
                    out,
                )
            }
            Kind::Truncate { len } => {
                needs_text("TRUNCATE")?;
                (
                    Op::Substring {
                        start: 0,
                        len: Some(*len),
                    },
                    ty.clone(),
                )
            }
            Kind::Substring { start, len } => {
                needs_text("SUBSTRING")?;
                (
                    Op::Substring {
                        start: *start,
                        len: *len,
                    },
                    ty.clone(),
                )
            }
            Kind::Upper => needs_text("UPPER").map(|_| (Op::Upper, ty.clone()))?,
            Kind::Lower => needs_text("LOWER").map(|_| (Op::Lower, ty.clone()))?,
            Kind::Trim => needs_text("TRIM").map(|_| (Op::Trim, ty.clone()))?,
            Kind::ReplaceLit { from, to } => {
                needs_text("REPLACE")?;
                (
                    Op::ReplaceLit {
                        from: from.clone(),
                        to: to.clone(),
                    },
                    text_any,
                )
            }
            Kind::ReplaceRe { re, to } => {
                needs_text("REPLACE")?;
                (
                    Op::ReplaceRe {
                        re: re.clone(),
                        to: to.clone(),
                    },
                    text_any,
                )
            }
            Kind::Constant(l) | Kind::DefaultIfNull(l) => {
                let v = convert(Value::Text(l.0.clone()), &ty).map_err(|e| {
                    format!(
                        "transform rule on {}: its value does not fit the column: {e}",
                        self.column
                    )
                })?;
                let op = if matches!(self.kind, Kind::Constant(_)) {
                    Op::Constant(v)
                } else {
                    Op::DefaultIfNull(v)
                };
                (op, ty.clone())
            }
            Kind::DateFormat { format, input } => {
                if !(is_text
                    || matches!(
                        ty,
                        DataType::Date | DataType::Timestamp { .. } | DataType::TimestampTz { .. }
                    ))
                {
                    return Err(format!(
                        "transform rule DATE_FORMAT needs a date, timestamp or text column; {} is {}",
                        self.column,
                        type_label(&ty)
                    ));
                }
                (
                    Op::DateFormat {
                        format: format.clone(),
                        input: input.clone(),
                    },
                    text_any,
                )
            }
            Kind::Concat { columns, sep } => {
                let idx = columns
                    .iter()
                    .map(|c| find(c))
                    .collect::<Result<Vec<_>, _>>()?;
                (
                    Op::Concat {
                        cols: idx,
                        sep: sep.clone(),
                    },
                    text_any,
                )
            }
            Kind::Round { scale } => {
                let out = match &ty {
                    DataType::Decimal {
                        precision: Some(p),
                        scale: Some(s),
                    } => DataType::Decimal {
                        precision: Some(p - s + scale),
                        scale: Some(*scale),
                    },
                    DataType::Decimal { .. } => DataType::Decimal {
                        precision: None,
                        scale: None,
                    },
                    DataType::Float32
                    | DataType::Float64
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64 => ty.clone(),
                    other => {
                        return Err(format!(
                            "transform rule ROUND needs a numeric column; {} is {}",
                            self.column,
                            type_label(other)
                        ))
                    }
                };
                (Op::Round { scale: *scale }, out)
            }
        };
        cols[col].ty = out;
        Ok(BoundRule {
            col,
            column: self.column.clone(),
            op,
        })
    }
}

/// A rule bound to column indexes.
pub struct BoundRule {
    col: usize,
    column: String,
    op: Op,
}

enum Op {
    Mask {
        pattern: Vec<char>,
        mask: char,
        from_end: bool,
    },
    Multiply {
        factor: Dec,
        factor_f: f64,
        int: bool,
    },
    Hash {
        salt: Vec<u8>,
    },
    Substring {
        start: usize,
        len: Option<usize>,
    },
    Upper,
    Lower,
    Trim,
    ReplaceLit {
        from: String,
        to: String,
    },
    ReplaceRe {
        re: Regex,
        to: String,
    },
    Constant(Value),
    DefaultIfNull(Value),
    DateFormat {
        format: String,
        input: Option<String>,
    },
    Concat {
        cols: Vec<usize>,
        sep: String,
    },
    Round {
        scale: u32,
    },
}

/// The masked text (see the module documentation).
pub fn mask(s: &str, pattern: &[char], mask_char: char, from_end: bool) -> String {
    if from_end {
        let mut rev = Vec::with_capacity(s.len());
        mask_into(s.chars().rev(), pattern.iter().rev(), mask_char, &mut rev);
        rev.iter().rev().collect()
    } else {
        let mut out = String::with_capacity(s.len() + 4);
        mask_into(s.chars(), pattern.iter(), mask_char, &mut out);
        out
    }
}

fn mask_into<'p>(
    value: impl Iterator<Item = char>,
    mut pat: impl Iterator<Item = &'p char>,
    mask_char: char,
    out: &mut impl Extend<char>,
) {
    let mut value = value.peekable();
    while let Some(&c) = value.peek() {
        let put = match pat.next() {
            Some('#') => c,
            Some('*') | None => mask_char,
            Some(&lit) => {
                out.extend([lit]);
                if lit != c {
                    // An inserted literal: the value's character is still to place.
                    continue;
                }
                value.next();
                continue;
            }
        };
        out.extend([put]);
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
                        let p = d.mul(*factor).ok_or_else(|| {
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
                            .mul(*factor)
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
                    Op::ReplaceLit { from, to } => {
                        if s.contains(from.as_str()) {
                            *s = s.replace(from.as_str(), to);
                        }
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

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

use std::fmt;

use chrono::format::{Item, StrftimeItems};
use regex::Regex;

use super::dec::Dec;
use super::expr::Column;
use super::types::{convert, type_label};
use crate::config::{Literal, Params, TransformRule, TransformType};
use crate::value::{DataType, Value};

mod apply;

pub use apply::mask;

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
                        precision: Some(p.saturating_sub(*s) + scale),
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

pub(super) enum Op {
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

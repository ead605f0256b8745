//! Evaluation of bound expressions over one row.
//!
//! SQL three-valued logic, plus a fourth state: a column the source did not
//! send (`Value::Unchanged`) is *unknown*, which propagates like NULL but is
//! reported apart, so that callers can decide conservatively. Errors (a
//! division by zero, an overflow, a text that is not a number) name the
//! problem, never the value.

use std::borrow::Cow;
use std::cmp::Ordering;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::{like::LikePattern, parse::number, ArOp, CmpOp, Expr, Func, Lit};
use crate::mapping::dec::{cmp_decimal_text, Dec, MAX_SCALE};
use crate::mapping::types::{convert, text_of};
use crate::pgtext;
use crate::value::{DataType, Value};

/// An evaluation error (never contains row values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail<T>(m: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(m.into()))
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    /// A column the source did not send.
    Unknown,
    Bool(bool),
    Int(i64),
    Dec(Dec),
    /// A decimal beyond 38 digits (comparisons only).
    Big(Cow<'a, str>),
    Float(f64),
    Str(Cow<'a, str>),
    Date(NaiveDate),
    Time(NaiveTime),
    /// Timestamps; with a time zone they are in UTC.
    Ts(NaiveDateTime),
    /// A value only `IS NULL` can test (bytes, intervals, arrays).
    Opaque(&'static str),
}

/// Row access for evaluation.
pub trait Cols {
    /// The value of column `i` (NULL when out of range).
    fn col(&self, i: usize) -> &Value;
}

static NULL: Value = Value::Null;

impl Cols for [Value] {
    fn col(&self, i: usize) -> &Value {
        self.get(i).unwrap_or(&NULL)
    }
}

/// The new image of an update whose unsent columns are read from the old
/// image (unchanged means equal).
pub struct WithFallback<'r> {
    /// The new image.
    pub row: &'r [Value],
    /// The old image, when the source sent one.
    pub before: Option<&'r [Value]>,
}

impl Cols for WithFallback<'_> {
    fn col(&self, i: usize) -> &Value {
        match self.row.get(i) {
            Some(Value::Unchanged) => match self.before.and_then(|b| b.get(i)) {
                Some(v) => v,
                None => &Value::Unchanged,
            },
            Some(v) => v,
            None => &NULL,
        }
    }
}

/// The outcome of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    /// False or NULL.
    False,
    /// Depends on a column the source did not send.
    Unknown,
}

/// Evaluates a condition.
pub fn truth<C: Cols + ?Sized>(e: &Expr, row: &C) -> Result<Truth, EvalError> {
    Ok(match eval(e, row)? {
        Val::Bool(true) => Truth::True,
        Val::Bool(false) | Val::Null => Truth::False,
        Val::Unknown => Truth::Unknown,
        _ => return fail("the condition did not yield a boolean"),
    })
}

/// Borrows a column value.
pub fn of_value(v: &Value) -> Val<'_> {
    match v {
        Value::Null => Val::Null,
        Value::Unchanged => Val::Unknown,
        Value::Bool(b) => Val::Bool(*b),
        Value::Int16(i) => Val::Int(*i as i64),
        Value::Int32(i) => Val::Int(*i as i64),
        Value::Int64(i) => Val::Int(*i),
        Value::Float32(f) => Val::Float(*f as f64),
        Value::Float64(f) => Val::Float(*f),
        Value::Decimal(s) => match Dec::parse(s) {
            Some(d) => Val::Dec(d),
            None => match s.as_str() {
                "NaN" => Val::Float(f64::NAN),
                "Infinity" => Val::Float(f64::INFINITY),
                "-Infinity" => Val::Float(f64::NEG_INFINITY),
                _ => Val::Big(Cow::Borrowed(s)),
            },
        },
        Value::Text(s) | Value::Json(s) | Value::Other(s) => Val::Str(Cow::Borrowed(s)),
        Value::Uuid(_) => Val::Str(Cow::Owned(text_of(v))),
        Value::Date(d) => Val::Date(*d),
        Value::Time(t) => Val::Time(*t),
        Value::Timestamp(t) => Val::Ts(*t),
        Value::TimestampTz(t) => Val::Ts(t.naive_utc()),
        Value::Bytes(_) | Value::Interval(_) | Value::Array(_) => Val::Opaque(v.kind()),
    }
}

fn owned(v: Value) -> Val<'static> {
    match v {
        Value::Decimal(s) if Dec::parse(&s).is_none() && !s.contains(['N', 'I']) => {
            Val::Big(Cow::Owned(s))
        }
        Value::Text(s) | Value::Json(s) | Value::Other(s) => Val::Str(Cow::Owned(s)),
        other => match of_value(&other) {
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Big(s) => Val::Big(Cow::Owned(s.into_owned())),
            Val::Null => Val::Null,
            Val::Unknown => Val::Unknown,
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Int(i),
            Val::Dec(d) => Val::Dec(d),
            Val::Float(f) => Val::Float(f),
            Val::Date(d) => Val::Date(d),
            Val::Time(t) => Val::Time(t),
            Val::Ts(t) => Val::Ts(t),
            Val::Opaque(k) => Val::Opaque(k),
        },
    }
}

/// A result as a column value of its natural type.
pub fn to_value(v: Val<'_>) -> Result<Value, EvalError> {
    Ok(match v {
        Val::Null => Value::Null,
        Val::Unknown => Value::Unchanged,
        Val::Bool(b) => Value::Bool(b),
        Val::Int(i) => Value::Int64(i),
        Val::Dec(d) => Value::Decimal(d.to_text()),
        Val::Big(s) => Value::Decimal(s.into_owned()),
        Val::Float(f) => Value::Float64(f),
        Val::Str(s) => Value::Text(s.into_owned()),
        Val::Date(d) => Value::Date(d),
        Val::Time(t) => Value::Time(t),
        Val::Ts(t) => Value::Timestamp(t),
        Val::Opaque(k) => return fail(format!("a {k} value cannot be produced by an expression")),
    })
}

fn lit(l: &Lit) -> Val<'_> {
    match l {
        Lit::Null => Val::Null,
        Lit::Bool(b) => Val::Bool(*b),
        Lit::Int(i) => Val::Int(*i),
        Lit::Dec(d) => Val::Dec(*d),
        Lit::Float(f) => Val::Float(*f),
        Lit::Str(s) => Val::Str(Cow::Borrowed(s)),
        Lit::Date(d) => Val::Date(*d),
        Lit::Time(t) => Val::Time(*t),
        Lit::Ts(t) => Val::Ts(*t),
        Lit::TsTz(t) => Val::Ts(t.naive_utc()),
    }
}

/// Three-valued logic with the unknown state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tv {
    T,
    F,
    N,
    U,
}

fn tv(v: &Val) -> Result<Tv, EvalError> {
    Ok(match v {
        Val::Bool(true) => Tv::T,
        Val::Bool(false) => Tv::F,
        Val::Null => Tv::N,
        Val::Unknown => Tv::U,
        _ => return fail("a boolean operator was given a non-boolean value"),
    })
}

fn of_tv(t: Tv) -> Val<'static> {
    match t {
        Tv::T => Val::Bool(true),
        Tv::F => Val::Bool(false),
        Tv::N => Val::Null,
        Tv::U => Val::Unknown,
    }
}

fn not(t: Tv) -> Tv {
    match t {
        Tv::T => Tv::F,
        Tv::F => Tv::T,
        x => x,
    }
}

fn and(a: Tv, b: Tv) -> Tv {
    match (a, b) {
        (Tv::F, _) | (_, Tv::F) => Tv::F,
        (Tv::U, _) | (_, Tv::U) => Tv::U,
        (Tv::N, _) | (_, Tv::N) => Tv::N,
        _ => Tv::T,
    }
}

fn or(a: Tv, b: Tv) -> Tv {
    not(and(not(a), not(b)))
}

/// NULL/unknown short-cut for operators: `Some(result)` when an operand is missing.
fn missing(a: &Val, b: &Val) -> Option<Val<'static>> {
    match (a, b) {
        (Val::Unknown, _) | (_, Val::Unknown) => Some(Val::Unknown),
        (Val::Null, _) | (_, Val::Null) => Some(Val::Null),
        _ => None,
    }
}

/// Evaluates `e` over `row`.
pub fn eval<'a, C: Cols + ?Sized>(e: &'a Expr, row: &'a C) -> Result<Val<'a>, EvalError> {
    Ok(match e {
        Expr::Col { idx, .. } => of_value(row.col(*idx)),
        Expr::Lit(l) => lit(l),
        Expr::Param { name, .. } => return fail(format!("script parameter {name} was not bound")),
        Expr::Not(x) => of_tv(not(tv(&eval(x, row)?)?)),
        Expr::And(xs) => {
            let mut acc = Tv::T;
            for x in xs {
                acc = and(acc, tv(&eval(x, row)?)?);
                if acc == Tv::F {
                    break;
                }
            }
            of_tv(acc)
        }
        Expr::Or(xs) => {
            let mut acc = Tv::F;
            for x in xs {
                acc = or(acc, tv(&eval(x, row)?)?);
                if acc == Tv::T {
                    break;
                }
            }
            of_tv(acc)
        }
        Expr::Cmp { op, l, r, .. } => {
            // The common `column <op> literal` without building values.
            let fast = match (&**l, &**r) {
                (Expr::Col { idx, .. }, Expr::Lit(x)) => cmp_value_lit(row.col(*idx), x),
                (Expr::Lit(x), Expr::Col { idx, .. }) => {
                    cmp_value_lit(row.col(*idx), x).map(Ordering::reverse)
                }
                _ => None,
            };
            let o = match fast {
                Some(o) => o,
                None => {
                    let (a, b) = (eval(l, row)?, eval(r, row)?);
                    if let Some(m) = missing(&a, &b) {
                        return Ok(m);
                    }
                    compare(&a, &b)?
                }
            };
            Val::Bool(match op {
                CmpOp::Eq => o == Ordering::Equal,
                CmpOp::Ne => o != Ordering::Equal,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Ge => o != Ordering::Less,
            })
        }
        Expr::IsNull { e, negated } => match eval(e, row)? {
            Val::Unknown => Val::Unknown,
            Val::Null => Val::Bool(!negated),
            _ => Val::Bool(*negated),
        },
        Expr::IsBool { e, value, negated } => match tv(&eval(e, row)?)? {
            Tv::U => Val::Unknown,
            t => Val::Bool((t == if *value { Tv::T } else { Tv::F }) != *negated),
        },
        Expr::In {
            e, list, negated, ..
        } => {
            let a = eval(e, row)?;
            let mut acc = Tv::F;
            for x in list {
                let b = eval(x, row)?;
                let t = match missing(&a, &b) {
                    Some(m) => tv(&m)?,
                    None if compare(&a, &b)? == Ordering::Equal => Tv::T,
                    None => Tv::F,
                };
                acc = or(acc, t);
                if acc == Tv::T {
                    break;
                }
            }
            of_tv(if *negated { not(acc) } else { acc })
        }
        Expr::Between {
            e, lo, hi, negated, ..
        } => {
            let a = eval(e, row)?;
            let (l, h) = (eval(lo, row)?, eval(hi, row)?);
            let ge = match missing(&a, &l) {
                Some(m) => tv(&m)?,
                None if compare(&a, &l)? != Ordering::Less => Tv::T,
                None => Tv::F,
            };
            let le = match missing(&a, &h) {
                Some(m) => tv(&m)?,
                None if compare(&a, &h)? != Ordering::Greater => Tv::T,
                None => Tv::F,
            };
            let t = and(ge, le);
            of_tv(if *negated { not(t) } else { t })
        }
        Expr::Like {
            e,
            pat,
            compiled,
            escape,
            ci,
            negated,
            ..
        } => {
            let a = eval(e, row)?;
            let p = eval(pat, row)?;
            if let Some(m) = missing(&a, &p) {
                return Ok(m);
            }
            let text = text(&a)?;
            let hit = match compiled {
                Some(c) => c.matches(&text),
                None => LikePattern::compile(&self::text(&p)?, *escape, *ci)
                    .map_err(EvalError)?
                    .matches(&text),
            };
            Val::Bool(hit != *negated)
        }
        Expr::Arith { op, l, r, .. } => {
            let (a, b) = (eval(l, row)?, eval(r, row)?);
            if let Some(m) = missing(&a, &b) {
                return Ok(m);
            }
            arith(*op, &a, &b)?
        }
        Expr::Concat { l, r } => {
            let (a, b) = (eval(l, row)?, eval(r, row)?);
            if let Some(m) = missing(&a, &b) {
                return Ok(m);
            }
            let mut s = text(&a)?.into_owned();
            s.push_str(&text(&b)?);
            Val::Str(Cow::Owned(s))
        }
        Expr::Neg(x, _) => match eval(x, row)? {
            Val::Null => Val::Null,
            Val::Unknown => Val::Unknown,
            v => arith(ArOp::Sub, &Val::Int(0), &v)?,
        },
        Expr::Func { f, args, .. } => func(*f, args, row)?,
        Expr::Cast { e, to, .. } => match eval(e, row)? {
            Val::Null => Val::Null,
            Val::Unknown => Val::Unknown,
            v => cast(v, to)?,
        },
    })
}

/// Orders a present column value against a literal of a matching kind;
/// `None` for anything else (NULL, unsent, other kinds: the general path).
fn cmp_value_lit(v: &Value, l: &Lit) -> Option<Ordering> {
    let int = |i: i64| match l {
        Lit::Int(j) => Some(i.cmp(j)),
        Lit::Dec(d) => Some(Dec::int(i).cmp(d)),
        _ => None,
    };
    match (v, l) {
        (Value::Text(s), Lit::Str(t)) => Some(s.as_bytes().cmp(t.as_bytes())),
        (Value::Int64(i), _) => int(*i),
        (Value::Int32(i), _) => int(*i as i64),
        (Value::Int16(i), _) => int(*i as i64),
        (Value::Decimal(s), Lit::Int(j)) => Dec::parse(s).map(|d| d.cmp(&Dec::int(*j))),
        (Value::Decimal(s), Lit::Dec(d)) => Dec::parse(s).map(|x| x.cmp(d)),
        (Value::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        (Value::Date(a), Lit::Date(b)) => Some(a.cmp(b)),
        (Value::TimestampTz(a), Lit::TsTz(b)) => Some(a.cmp(b)),
        (Value::Timestamp(a), Lit::Ts(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn cast(v: Val<'_>, to: &DataType) -> Result<Val<'static>, EvalError> {
    let value = to_value(v)?;
    let converted = convert(value, to).map_err(|e| EvalError(format!("CAST: {e}")))?;
    Ok(owned(converted))
}

fn func<'a, C: Cols + ?Sized>(f: Func, args: &'a [Expr], row: &'a C) -> Result<Val<'a>, EvalError> {
    if f == Func::Coalesce {
        for a in args {
            match eval(a, row)? {
                Val::Null => continue,
                v => return Ok(v),
            }
        }
        return Ok(Val::Null);
    }
    let Some(arg) = args.first() else {
        return fail(format!("{} needs an argument", f.name()));
    };
    let v = eval(arg, row)?;
    if matches!(v, Val::Null | Val::Unknown) {
        return Ok(v);
    }
    Ok(match f {
        Func::Lower => Val::Str(Cow::Owned(text(&v)?.to_lowercase())),
        Func::Upper => Val::Str(Cow::Owned(text(&v)?.to_uppercase())),
        Func::Length => Val::Int(text(&v)?.chars().count() as i64),
        Func::Abs => match num(&v)? {
            Num::I(i) => i.checked_abs().map_or_else(
                || Val::Dec(Dec::int(i).checked_mul(Dec::int(-1)).unwrap_or(Dec::int(0))),
                Val::Int,
            ),
            Num::D(d) => Val::Dec(Dec {
                m: d.m.abs(),
                s: d.s,
            }),
            Num::F(x) => Val::Float(x.abs()),
            Num::Big(s) => Val::Big(Cow::Owned(s.trim_start_matches('-').to_string())),
        },
        Func::Coalesce => v,
    })
}

/// The text form of a value (for `||`, `LIKE`, `LOWER`...).
pub fn text<'v>(v: &'v Val<'_>) -> Result<Cow<'v, str>, EvalError> {
    Ok(match v {
        Val::Str(s) => Cow::Borrowed(s.as_ref()),
        Val::Big(s) => Cow::Borrowed(s.as_ref()),
        Val::Int(i) => Cow::Owned(itoa::Buffer::new().format(*i).to_string()),
        Val::Dec(d) => Cow::Owned(d.to_text()),
        Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Val::Float(f) => Cow::Owned(text_of(&Value::Float64(*f))),
        Val::Date(d) => Cow::Owned(text_of(&Value::Date(*d))),
        Val::Time(t) => Cow::Owned(text_of(&Value::Time(*t))),
        Val::Ts(t) => Cow::Owned(text_of(&Value::Timestamp(*t))),
        Val::Null | Val::Unknown => Cow::Borrowed(""),
        Val::Opaque(k) => return fail(format!("a {k} value has no text form here")),
    })
}

enum Num<'a> {
    I(i64),
    D(Dec),
    F(f64),
    Big(&'a str),
}

fn num<'v>(v: &'v Val<'_>) -> Result<Num<'v>, EvalError> {
    Ok(match v {
        Val::Int(i) => Num::I(*i),
        Val::Dec(d) => Num::D(*d),
        Val::Float(f) => Num::F(*f),
        Val::Big(s) => Num::Big(s),
        Val::Str(s) => match number(s.trim()) {
            Some(Lit::Int(i)) => Num::I(i),
            Some(Lit::Dec(d)) => Num::D(d),
            Some(Lit::Float(f)) => Num::F(f),
            _ => return fail("a text value is not a number"),
        },
        other => return fail(format!("a {} value is not a number", kind(other))),
    })
}

fn kind(v: &Val) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Unknown => "unsent",
        Val::Bool(_) => "boolean",
        Val::Int(_) | Val::Dec(_) | Val::Big(_) | Val::Float(_) => "number",
        Val::Str(_) => "text",
        Val::Date(_) => "date",
        Val::Time(_) => "time",
        Val::Ts(_) => "timestamp",
        Val::Opaque(k) => k,
    }
}

fn fcmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn dec_of(n: &Num) -> Option<Dec> {
    match n {
        Num::I(i) => Some(Dec::int(*i)),
        Num::D(d) => Some(*d),
        _ => None,
    }
}

fn f64_of(n: &Num) -> f64 {
    match n {
        Num::I(i) => *i as f64,
        Num::D(d) => d.to_f64(),
        Num::F(f) => *f,
        Num::Big(s) => s.parse().unwrap_or(f64::NAN),
    }
}

fn cmp_num(a: &Num, b: &Num) -> Ordering {
    match (a, b) {
        (Num::I(x), Num::I(y)) => x.cmp(y),
        (Num::F(_), _) | (_, Num::F(_)) => fcmp(f64_of(a), f64_of(b)),
        (Num::Big(x), Num::Big(y)) => cmp_decimal_text(x, y).unwrap_or(Ordering::Equal),
        (Num::Big(x), other) => {
            cmp_decimal_text(x, &dec_of(other).map(Dec::to_text).unwrap_or_default())
                .unwrap_or(Ordering::Equal)
        }
        (other, Num::Big(y)) => {
            cmp_decimal_text(&dec_of(other).map(Dec::to_text).unwrap_or_default(), y)
                .unwrap_or(Ordering::Equal)
        }
        _ => dec_of(a).cmp(&dec_of(b)),
    }
}

fn is_num(v: &Val) -> bool {
    matches!(v, Val::Int(_) | Val::Dec(_) | Val::Float(_) | Val::Big(_))
}

/// Reads a text as the type of `like` (a literal-free comparison).
fn coerce<'v>(s: &str, like: &Val) -> Result<Val<'v>, EvalError> {
    let dt = match like {
        Val::Bool(_) => DataType::Bool,
        Val::Date(_) => DataType::Date,
        Val::Time(_) => DataType::Time { precision: None },
        Val::Ts(_) => DataType::TimestampTz { precision: None },
        _ if is_num(like) => {
            return match number(s.trim()) {
                Some(Lit::Int(i)) => Ok(Val::Int(i)),
                Some(Lit::Dec(d)) => Ok(Val::Dec(d)),
                Some(Lit::Float(f)) => Ok(Val::Float(f)),
                _ => fail("a text value is not a number"),
            }
        }
        _ => return fail(format!("cannot compare text with {}", kind(like))),
    };
    let v = match &dt {
        DataType::TimestampTz { .. } => convert(Value::Text(s.to_string()), &dt).ok(),
        _ => pgtext::parse(&dt, s.trim()).ok(),
    };
    match v {
        Some(v) if !matches!(v, Value::Other(_)) => Ok(owned(v)),
        _ => fail(format!("a text value is not a valid {}", kind(like))),
    }
}

/// Orders two present values.
pub fn compare(a: &Val, b: &Val) -> Result<Ordering, EvalError> {
    Ok(match (a, b) {
        (Val::Str(x), Val::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (x, y) if is_num(x) && is_num(y) => cmp_num(&num(x)?, &num(y)?),
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Val::Date(x), Val::Date(y)) => x.cmp(y),
        (Val::Ts(x), Val::Ts(y)) => x.cmp(y),
        (Val::Date(x), Val::Ts(y)) => x.and_time(NaiveTime::MIN).cmp(y),
        (Val::Ts(x), Val::Date(y)) => x.cmp(&y.and_time(NaiveTime::MIN)),
        (Val::Time(x), Val::Time(y)) => x.cmp(y),
        (Val::Str(s), other) => compare(&coerce(s, other)?, other)?,
        (other, Val::Str(s)) => compare(other, &coerce(s, other)?)?,
        (x, y) => return fail(format!("cannot compare {} with {}", kind(x), kind(y))),
    })
}

fn arith(op: ArOp, a: &Val, b: &Val) -> Result<Val<'static>, EvalError> {
    let (x, y) = (num(a)?, num(b)?);
    if matches!(x, Num::Big(_)) || matches!(y, Num::Big(_)) {
        return fail("a decimal with more than 38 digits cannot be used in arithmetic");
    }
    if let (Num::I(i), Num::I(j)) = (&x, &y) {
        let r = match op {
            ArOp::Add => i.checked_add(*j),
            ArOp::Sub => i.checked_sub(*j),
            ArOp::Mul => i.checked_mul(*j),
            ArOp::Div | ArOp::Mod if *j == 0 => return fail("division by zero"),
            ArOp::Div => i.checked_div(*j),
            ArOp::Mod => i.checked_rem(*j),
        };
        if let Some(r) = r {
            return Ok(Val::Int(r));
        }
    }
    if matches!(x, Num::F(_)) || matches!(y, Num::F(_)) {
        let (p, q) = (f64_of(&x), f64_of(&y));
        let r = match op {
            ArOp::Add => p + q,
            ArOp::Sub => p - q,
            ArOp::Mul => p * q,
            ArOp::Div | ArOp::Mod if q == 0.0 => return fail("division by zero"),
            ArOp::Div => p / q,
            ArOp::Mod => p % q,
        };
        if !r.is_finite() && p.is_finite() && q.is_finite() {
            return fail("floating-point result out of range");
        }
        return Ok(Val::Float(r));
    }
    let (p, q) = (
        dec_of(&x).unwrap_or(Dec::int(0)),
        dec_of(&y).unwrap_or(Dec::int(0)),
    );
    let r = match op {
        ArOp::Add => p.checked_add(q),
        ArOp::Sub => p.checked_sub(q),
        ArOp::Mul => p.checked_mul(q),
        ArOp::Div | ArOp::Mod if q.m == 0 => return fail("division by zero"),
        ArOp::Div => {
            if let (Some(i), Some(j)) = (
                p.to_i64().filter(|_| p.s == 0),
                q.to_i64().filter(|_| q.s == 0),
            ) {
                // Integer division of integers that overflowed i64 (MIN / -1).
                return Dec::int(i)
                    .checked_div(Dec::int(j), 0)
                    .map(Val::Dec)
                    .ok_or_else(|| EvalError("numeric overflow".into()));
            }
            let scale = p.s.max(q.s).clamp(16, MAX_SCALE);
            match p.checked_div(q, scale) {
                Some(d) => Some(d.normalize()),
                None => return Ok(Val::Float(p.to_f64() / q.to_f64())),
            }
        }
        ArOp::Mod => p.checked_rem(q),
    };
    r.map(Val::Dec)
        .ok_or_else(|| EvalError("numeric overflow (more than 38 digits)".into()))
}

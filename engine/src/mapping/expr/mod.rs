//! SQL expressions of row filters and SQL scripts.
//!
//! Text is parsed with `sqlparser` (never interpolated into SQL) into a small
//! AST, checked for what can be checked without the table's schema (syntax,
//! operators, functions, literal types: errors carry their line and column),
//! then *bound* to a schema: column names become indexes, literals next to a
//! column take the column's type, and types are checked again. Evaluation
//! ([`eval`]) then only does index work and comparisons.
//!
//! Supported: comparisons (`= <> != < <= > >=`), `AND OR NOT`, `IN (...)`,
//! `BETWEEN`, `LIKE`/`ILIKE` (with `ESCAPE`), `IS [NOT] NULL`, `IS [NOT]
//! TRUE/FALSE`, `+ - * / %`, `||`, unary minus, `CAST(x AS type)` and
//! `x::type`, string, number, boolean, `NULL`, `DATE '…'`, `TIME '…'` and
//! `TIMESTAMP '…'` literals, and the functions `LOWER`, `UPPER`, `COALESCE`,
//! `LENGTH` (`CHAR_LENGTH`) and `ABS`.

mod bind;
pub mod eval;
pub mod like;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

pub use bind::{bind, bind_params, Binding, Column};
pub use eval::{eval, truth, Cols, Truth, Val, WithFallback};
pub use parse::{parse_condition, parse_script, SqlScriptAst};

use super::dec::Dec;
use crate::value::DataType;

/// A place in the expression text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// From 1.
    pub line: u64,
    /// From 1.
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Dec(Dec),
    Float(f64),
    Str(String),
    Date(NaiveDate),
    Time(NaiveTime),
    Ts(NaiveDateTime),
    TsTz(DateTime<Utc>),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// Functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Lower,
    Upper,
    Coalesce,
    Length,
    Abs,
}

impl Func {
    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            Func::Lower => "LOWER",
            Func::Upper => "UPPER",
            Func::Coalesce => "COALESCE",
            Func::Length => "LENGTH",
            Func::Abs => "ABS",
        }
    }
}

/// An expression node.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A column: `idx` is set by [`bind`] (`usize::MAX` before).
    Col {
        name: String,
        quoted: bool,
        idx: usize,
        pos: Pos,
    },
    Lit(Lit),
    /// `:name` in a SQL script, replaced by the script parameter's value.
    Param {
        name: String,
        pos: Pos,
    },
    Not(Box<Expr>),
    /// `a AND b AND ...` (a chain is one node).
    And(Vec<Expr>),
    /// `a OR b OR ...`.
    Or(Vec<Expr>),
    Cmp {
        op: CmpOp,
        l: Box<Expr>,
        r: Box<Expr>,
        pos: Pos,
    },
    IsNull {
        e: Box<Expr>,
        negated: bool,
    },
    IsBool {
        e: Box<Expr>,
        value: bool,
        negated: bool,
    },
    In {
        e: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
        pos: Pos,
    },
    Between {
        e: Box<Expr>,
        lo: Box<Expr>,
        hi: Box<Expr>,
        negated: bool,
        pos: Pos,
    },
    Like {
        e: Box<Expr>,
        pat: Box<Expr>,
        /// The pattern compiled once when it is a constant.
        compiled: Option<Arc<like::LikePattern>>,
        escape: Option<char>,
        ci: bool,
        negated: bool,
        pos: Pos,
    },
    Arith {
        op: ArOp,
        l: Box<Expr>,
        r: Box<Expr>,
        pos: Pos,
    },
    Concat {
        l: Box<Expr>,
        r: Box<Expr>,
    },
    Neg(Box<Expr>, Pos),
    Func {
        f: Func,
        args: Vec<Expr>,
        pos: Pos,
    },
    Cast {
        e: Box<Expr>,
        to: DataType,
        pos: Pos,
    },
}

/// Static type classes used for checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Not known yet (an unbound column, a parameter).
    Any,
    Null,
    Bool,
    Num,
    Text,
    Date,
    Time,
    Ts,
    /// Bytes, intervals, arrays: only `IS [NOT] NULL` applies.
    Opaque,
}

impl Ty {
    /// The class of a column type.
    pub fn of(t: &DataType) -> Ty {
        match t {
            DataType::Bool => Ty::Bool,
            DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal { .. } => Ty::Num,
            DataType::Text { .. }
            | DataType::Char { .. }
            | DataType::Json
            | DataType::Jsonb
            | DataType::Uuid
            | DataType::Other { .. } => Ty::Text,
            DataType::Date => Ty::Date,
            DataType::Time { .. } => Ty::Time,
            DataType::Timestamp { .. } | DataType::TimestampTz { .. } => Ty::Ts,
            DataType::Bytes | DataType::Interval | DataType::Array(_) => Ty::Opaque,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Any => "any",
            Ty::Null => "null",
            Ty::Bool => "boolean",
            Ty::Num => "number",
            Ty::Text => "text",
            Ty::Date => "date",
            Ty::Time => "time",
            Ty::Ts => "timestamp",
            Ty::Opaque => "bytes/interval/array",
        }
    }
}

impl Lit {
    fn ty(&self) -> Ty {
        match self {
            Lit::Null => Ty::Null,
            Lit::Bool(_) => Ty::Bool,
            Lit::Int(_) | Lit::Dec(_) | Lit::Float(_) => Ty::Num,
            Lit::Str(_) => Ty::Text,
            Lit::Date(_) => Ty::Date,
            Lit::Time(_) => Ty::Time,
            Lit::Ts(_) | Lit::TsTz(_) => Ty::Ts,
        }
    }
}

impl Expr {
    /// Every column name the expression reads, once each.
    pub fn columns(&self, out: &mut Vec<String>) {
        self.walk(&mut |e| {
            if let Expr::Col { name, .. } = e {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        });
    }

    /// Bound column indexes the expression reads.
    pub fn column_indexes(&self, out: &mut Vec<usize>) {
        self.walk(&mut |e| {
            if let Expr::Col { idx, .. } = e {
                if !out.contains(idx) {
                    out.push(*idx);
                }
            }
        });
    }

    fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Col { .. } | Expr::Lit(_) | Expr::Param { .. } => {}
            Expr::Not(e) | Expr::Neg(e, _) => e.walk(f),
            Expr::IsNull { e, .. } | Expr::IsBool { e, .. } | Expr::Cast { e, .. } => e.walk(f),
            Expr::And(xs) | Expr::Or(xs) => xs.iter().for_each(|x| x.walk(f)),
            Expr::Cmp { l, r, .. } | Expr::Arith { l, r, .. } | Expr::Concat { l, r } => {
                l.walk(f);
                r.walk(f);
            }
            Expr::In { e, list, .. } => {
                e.walk(f);
                list.iter().for_each(|x| x.walk(f));
            }
            Expr::Between { e, lo, hi, .. } => {
                e.walk(f);
                lo.walk(f);
                hi.walk(f);
            }
            Expr::Like { e, pat, .. } => {
                e.walk(f);
                pat.walk(f);
            }
            Expr::Func { args, .. } => args.iter().for_each(|x| x.walk(f)),
        }
    }
}

/// Whether two classes can be compared. A text *literal* next to a typed
/// value is read as that type when bound; a text column is not.
fn comparable(a: Ty, b: Ty, a_lit_str: bool, b_lit_str: bool) -> bool {
    use Ty::*;
    match (a, b) {
        (Any, _) | (_, Any) | (Null, _) | (_, Null) => true,
        (Opaque, _) | (_, Opaque) => false,
        (x, y) if x == y => true,
        (Date, Ts) | (Ts, Date) => true,
        (Text, _) if a_lit_str => true,
        (_, Text) if b_lit_str => true,
        _ => false,
    }
}

fn is_str_lit(e: &Expr) -> bool {
    matches!(e, Expr::Lit(Lit::Str(_)))
}

/// Checks types; `col_ty` gives a bound column's class. Returns the
/// expression's class.
pub fn check(e: &Expr, col_ty: &dyn Fn(usize) -> Ty) -> Result<Ty, String> {
    let boolish = |t: Ty, what: &str, pos: Option<Pos>| -> Result<(), String> {
        if matches!(t, Ty::Bool | Ty::Any | Ty::Null) {
            Ok(())
        } else {
            Err(match pos {
                Some(p) => format!("{what} needs a boolean, not {} (at {p})", t.name()),
                None => format!("{what} needs a boolean, not {}", t.name()),
            })
        }
    };
    Ok(match e {
        Expr::Col { idx, .. } if *idx == usize::MAX => Ty::Any,
        Expr::Col { idx, .. } => col_ty(*idx),
        Expr::Lit(l) => l.ty(),
        Expr::Param { .. } => Ty::Any,
        Expr::Not(x) => {
            boolish(check(x, col_ty)?, "NOT", None)?;
            Ty::Bool
        }
        Expr::And(xs) | Expr::Or(xs) => {
            for x in xs {
                boolish(check(x, col_ty)?, "AND/OR", None)?;
            }
            Ty::Bool
        }
        Expr::Cmp { l, r, pos, .. } => {
            let (a, b) = (check(l, col_ty)?, check(r, col_ty)?);
            if !comparable(a, b, is_str_lit(l), is_str_lit(r)) {
                return Err(format!(
                    "cannot compare {} with {} (at {pos})",
                    a.name(),
                    b.name()
                ));
            }
            Ty::Bool
        }
        Expr::IsNull { e, .. } => {
            check(e, col_ty)?;
            Ty::Bool
        }
        Expr::IsBool { e, .. } => {
            boolish(check(e, col_ty)?, "IS TRUE/FALSE", None)?;
            Ty::Bool
        }
        Expr::In { e, list, pos, .. } => {
            let a = check(e, col_ty)?;
            for x in list {
                let b = check(x, col_ty)?;
                if !comparable(a, b, is_str_lit(e), is_str_lit(x)) {
                    return Err(format!(
                        "IN compares {} with {} (at {pos})",
                        a.name(),
                        b.name()
                    ));
                }
            }
            Ty::Bool
        }
        Expr::Between { e, lo, hi, pos, .. } => {
            let a = check(e, col_ty)?;
            for x in [lo, hi] {
                let b = check(x, col_ty)?;
                if !comparable(a, b, is_str_lit(e), is_str_lit(x)) {
                    return Err(format!(
                        "BETWEEN compares {} with {} (at {pos})",
                        a.name(),
                        b.name()
                    ));
                }
            }
            Ty::Bool
        }
        Expr::Like { e, pat, pos, .. } => {
            for x in [e, pat] {
                let t = check(x, col_ty)?;
                if !matches!(t, Ty::Text | Ty::Any | Ty::Null) {
                    return Err(format!("LIKE needs text, not {} (at {pos})", t.name()));
                }
            }
            Ty::Bool
        }
        Expr::Arith { l, r, pos, .. } => {
            for x in [l, r] {
                let t = check(x, col_ty)?;
                if !matches!(t, Ty::Num | Ty::Any | Ty::Null) {
                    return Err(format!(
                        "arithmetic needs numbers, not {} (at {pos})",
                        t.name()
                    ));
                }
            }
            Ty::Num
        }
        Expr::Concat { l, r } => {
            check(l, col_ty)?;
            check(r, col_ty)?;
            Ty::Text
        }
        Expr::Neg(x, pos) => {
            let t = check(x, col_ty)?;
            if !matches!(t, Ty::Num | Ty::Any | Ty::Null) {
                return Err(format!(
                    "unary minus needs a number, not {} (at {pos})",
                    t.name()
                ));
            }
            Ty::Num
        }
        Expr::Func { f, args, pos } => {
            let tys: Vec<Ty> = args
                .iter()
                .map(|a| check(a, col_ty))
                .collect::<Result<_, _>>()?;
            let one = |want: &[Ty]| -> Result<(), String> {
                if tys.len() != 1 {
                    return Err(format!("{} takes one argument (at {pos})", f.name()));
                }
                if !(want.contains(&tys[0]) || matches!(tys[0], Ty::Any | Ty::Null)) {
                    return Err(format!(
                        "{} cannot take {} (at {pos})",
                        f.name(),
                        tys[0].name()
                    ));
                }
                Ok(())
            };
            match f {
                Func::Lower | Func::Upper => {
                    one(&[Ty::Text])?;
                    Ty::Text
                }
                Func::Length => {
                    one(&[Ty::Text])?;
                    Ty::Num
                }
                Func::Abs => {
                    one(&[Ty::Num])?;
                    Ty::Num
                }
                Func::Coalesce => {
                    if tys.is_empty() {
                        return Err(format!("COALESCE needs arguments (at {pos})"));
                    }
                    let mut out = Ty::Null;
                    for (t, a) in tys.iter().zip(args) {
                        if !comparable(out, *t, false, is_str_lit(a)) {
                            return Err(format!(
                                "COALESCE mixes {} and {} (at {pos})",
                                out.name(),
                                t.name()
                            ));
                        }
                        if out == Ty::Null || out == Ty::Any {
                            out = *t;
                        }
                    }
                    out
                }
            }
        }
        Expr::Cast { e, to, .. } => {
            check(e, col_ty)?;
            Ty::of(to)
        }
    })
}

/// Checks that a whole condition is boolean.
pub fn check_condition(e: &Expr, col_ty: &dyn Fn(usize) -> Ty) -> Result<(), String> {
    let t = check(e, col_ty)?;
    if matches!(t, Ty::Bool | Ty::Any | Ty::Null) {
        Ok(())
    } else {
        Err(format!("the condition is {}, not boolean", t.name()))
    }
}

//! From text to [`Expr`] with `sqlparser`.

use std::sync::Arc;

use sqlparser::ast::{
    self, BinaryOperator, CastKind, FunctionArg, FunctionArgExpr, FunctionArguments, Spanned,
    UnaryOperator, Value as SqlValue,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Span, Token};

use super::{like, ArOp, CmpOp, Expr, Func, Lit, Pos};
use crate::mapping::dec::Dec;
use crate::mapping::types::parse_type_name;
use crate::pgtext;
use crate::value::{DataType, Value};

/// Deepest nesting the parser accepts.
const PARSER_DEPTH: usize = 100;
/// Deepest expression tree accepted (`AND`/`OR` chains are flattened, so
/// this is real nesting): guards the stack of the binder and evaluator.
const MAX_DEPTH: usize = 100;

fn pos_of(span: Span) -> Pos {
    Pos {
        line: span.start.line,
        column: span.start.column,
    }
}

fn parser_error(e: ParserError) -> String {
    match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "the expression is nested too deeply".into(),
    }
}

/// Adds where the text ends to "found: EOF" errors (sqlparser gives no place).
fn at_end(text: &str) -> impl Fn(String) -> String + '_ {
    move |m| {
        if !m.ends_with("found: EOF") {
            return m;
        }
        let line = text.lines().count().max(1);
        let last = text.rsplit('\n').next().unwrap_or("");
        format!(
            "{m} at the end (line {line}, column {})",
            last.chars().count() + 1
        )
    }
}

fn parser_for(text: &str) -> Result<Parser<'static>, String> {
    static DIALECT: GenericDialect = GenericDialect {};
    Parser::new(&DIALECT)
        .with_recursion_limit(PARSER_DEPTH)
        .try_with_sql(text)
        .map_err(parser_error)
}

fn expect_end(p: &mut Parser) -> Result<(), String> {
    let t = p.peek_token();
    if t.token == Token::EOF {
        Ok(())
    } else {
        Err(format!("unexpected `{}` at {}", t.token, pos_of(t.span)))
    }
}

/// Parses a boolean condition (a row filter).
pub fn parse_condition(text: &str) -> Result<Expr, String> {
    if text.trim().is_empty() {
        return Err("the condition is empty".into());
    }
    let mut p = parser_for(text)?;
    let e = p.parse_expr().map_err(parser_error).map_err(at_end(text))?;
    expect_end(&mut p)?;
    convert(&e, 0)
}

/// A SQL script: assignments and a keep-condition.
#[derive(Debug, Clone)]
pub struct SqlScriptAst {
    /// `(column, expression, position of the column)`.
    pub assignments: Vec<(String, Expr, Pos)>,
    /// The record is kept only when this is true.
    pub keep: Option<Expr>,
}

/// Parses `SET col = expr, ... [WHERE cond]`, `WHERE cond`, or a bare
/// condition.
pub fn parse_script(text: &str) -> Result<SqlScriptAst, String> {
    parse_script_inner(text).map_err(at_end(text))
}

fn parse_script_inner(text: &str) -> Result<SqlScriptAst, String> {
    if text.trim().is_empty() {
        return Err("the script is empty".into());
    }
    let mut p = parser_for(text)?;
    let mut assignments = Vec::new();
    let mut keep = None;
    if p.parse_keyword(Keyword::SET) {
        let list = p
            .parse_comma_separated(|p| {
                let id = p.parse_identifier()?;
                p.expect_token(&Token::Eq)?;
                let e = p.parse_expr()?;
                Ok((id, e))
            })
            .map_err(parser_error)?;
        for (id, e) in list {
            let pos = pos_of(id.span);
            if assignments.iter().any(|(n, _, _)| *n == id.value) {
                return Err(format!("column {} is assigned twice (at {pos})", id.value));
            }
            assignments.push((id.value, convert(&e, 0)?, pos));
        }
        if p.parse_keyword(Keyword::WHERE) {
            keep = Some(convert(&p.parse_expr().map_err(parser_error)?, 0)?);
        }
    } else {
        // `WHERE cond` or a bare `cond`: only a keep-condition.
        let _ = p.parse_keyword(Keyword::WHERE);
        keep = Some(convert(&p.parse_expr().map_err(parser_error)?, 0)?);
    }
    expect_end(&mut p)?;
    Ok(SqlScriptAst { assignments, keep })
}

fn unsupported(what: &str, span: Span) -> String {
    format!(
        "{what} is not supported in mapping expressions (at {})",
        pos_of(span)
    )
}

fn b(e: Expr) -> Box<Expr> {
    Box::new(e)
}

/// Converts a `sqlparser` expression.
fn convert(e: &ast::Expr, depth: usize) -> Result<Expr, String> {
    if depth > MAX_DEPTH {
        return Err("the expression is nested too deeply".into());
    }
    use ast::Expr as E;
    if let E::BinaryOp {
        op: op @ (BinaryOperator::And | BinaryOperator::Or),
        ..
    } = e
    {
        return flatten(e, op, depth + 1);
    }
    let d = depth + 1;
    let pos = pos_of(e.span());
    Ok(match e {
        E::Identifier(id) => Expr::Col {
            name: id.value.clone(),
            quoted: id.quote_style.is_some(),
            idx: usize::MAX,
            pos,
        },
        E::CompoundIdentifier(ids) => {
            return Err(format!(
                "qualified name {} at {pos}: write the bare column name",
                ids.iter()
                    .map(|i| i.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".")
            ))
        }
        E::Nested(x) => convert(x, d)?,
        E::Value(v) => value(&v.value, v.span)?,
        E::TypedString(ts) => {
            let text = match &ts.value.value {
                SqlValue::SingleQuotedString(s) => s.clone(),
                _ => return Err(unsupported("this typed literal", e.span())),
            };
            let dt = sql_type(&ts.data_type, e.span())?;
            typed_literal(&dt, &text, pos)?
        }
        E::UnaryOp { op, expr } => match op {
            UnaryOperator::Not => Expr::Not(b(convert(expr, d)?)),
            UnaryOperator::Minus => match convert(expr, d)? {
                Expr::Lit(Lit::Int(i)) => Expr::Lit(Lit::Int(-i)),
                Expr::Lit(Lit::Dec(x)) => Expr::Lit(Lit::Dec(Dec { m: -x.m, s: x.s })),
                Expr::Lit(Lit::Float(f)) => Expr::Lit(Lit::Float(-f)),
                other => Expr::Neg(b(other), pos),
            },
            UnaryOperator::Plus => convert(expr, d)?,
            _ => return Err(unsupported(&format!("operator {op}"), e.span())),
        },
        E::BinaryOp { left, op, right } => {
            enum Kind {
                Cmp(CmpOp),
                Ar(ArOp),
                Concat,
            }
            let kind = match op {
                BinaryOperator::Eq => Kind::Cmp(CmpOp::Eq),
                BinaryOperator::NotEq => Kind::Cmp(CmpOp::Ne),
                BinaryOperator::Lt => Kind::Cmp(CmpOp::Lt),
                BinaryOperator::LtEq => Kind::Cmp(CmpOp::Le),
                BinaryOperator::Gt => Kind::Cmp(CmpOp::Gt),
                BinaryOperator::GtEq => Kind::Cmp(CmpOp::Ge),
                BinaryOperator::Plus => Kind::Ar(ArOp::Add),
                BinaryOperator::Minus => Kind::Ar(ArOp::Sub),
                BinaryOperator::Multiply => Kind::Ar(ArOp::Mul),
                BinaryOperator::Divide => Kind::Ar(ArOp::Div),
                BinaryOperator::Modulo => Kind::Ar(ArOp::Mod),
                BinaryOperator::StringConcat => Kind::Concat,
                other => return Err(unsupported(&format!("operator {other}"), e.span())),
            };
            let (l, r) = (b(convert(left, d)?), b(convert(right, d)?));
            match kind {
                Kind::Cmp(op) => Expr::Cmp { op, l, r, pos },
                Kind::Ar(op) => Expr::Arith { op, l, r, pos },
                Kind::Concat => Expr::Concat { l, r },
            }
        }
        E::IsNull(x) => Expr::IsNull {
            e: b(convert(x, d)?),
            negated: false,
        },
        E::IsNotNull(x) => Expr::IsNull {
            e: b(convert(x, d)?),
            negated: true,
        },
        E::IsTrue(x) | E::IsNotTrue(x) | E::IsFalse(x) | E::IsNotFalse(x) => Expr::IsBool {
            e: b(convert(x, d)?),
            value: matches!(e, E::IsTrue(_) | E::IsNotTrue(_)),
            negated: matches!(e, E::IsNotTrue(_) | E::IsNotFalse(_)),
        },
        E::InList {
            expr,
            list,
            negated,
        } => Expr::In {
            e: b(convert(expr, d)?),
            list: list
                .iter()
                .map(|x| convert(x, d))
                .collect::<Result<_, _>>()?,
            negated: *negated,
            pos,
        },
        E::Between {
            expr,
            negated,
            low,
            high,
        } => Expr::Between {
            e: b(convert(expr, d)?),
            lo: b(convert(low, d)?),
            hi: b(convert(high, d)?),
            negated: *negated,
            pos,
        },
        E::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char,
        }
        | E::ILike {
            negated,
            any: false,
            expr,
            pattern,
            escape_char,
        } => {
            let ci = matches!(e, E::ILike { .. });
            let escape = match escape_char {
                None => Some('\\'),
                Some(SqlValue::SingleQuotedString(s)) if s.is_empty() => None,
                Some(SqlValue::SingleQuotedString(s)) if s.chars().count() == 1 => s.chars().next(),
                Some(_) => return Err(format!("ESCAPE takes one character (at {pos})")),
            };
            let pat = convert(pattern, d)?;
            let compiled = match &pat {
                Expr::Lit(Lit::Str(s)) => Some(Arc::new(
                    like::LikePattern::compile(s, escape, ci)
                        .map_err(|m| format!("{m} (at {pos})"))?,
                )),
                _ => None,
            };
            Expr::Like {
                e: b(convert(expr, d)?),
                pat: b(pat),
                compiled,
                escape,
                ci,
                negated: *negated,
                pos,
            }
        }
        E::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            format: None,
        } => Expr::Cast {
            e: b(convert(expr, d)?),
            to: sql_type(data_type, e.span())?,
            pos,
        },
        E::Function(f) => function(f, pos, d)?,
        _ => return Err(unsupported("this kind of expression", e.span())),
    })
}

/// A chain of one of `AND`/`OR` as one n-ary node, walked without
/// recursing along the chain (a filter may list hundreds of conditions).
fn flatten(e: &ast::Expr, op: &BinaryOperator, depth: usize) -> Result<Expr, String> {
    use ast::Expr as E;
    let mut parts = Vec::new();
    let mut stack = vec![e];
    while let Some(x) = stack.pop() {
        match x {
            E::BinaryOp { left, op: o, right } if o == op => {
                stack.push(right);
                stack.push(left);
            }
            E::Nested(inner) if matches!(&**inner, E::BinaryOp { op: o, .. } if o == op) => {
                stack.push(inner);
            }
            other => parts.push(convert(other, depth)?),
        }
    }
    Ok(if *op == BinaryOperator::And {
        Expr::And(parts)
    } else {
        Expr::Or(parts)
    })
}

fn function(f: &ast::Function, pos: Pos, d: usize) -> Result<Expr, String> {
    let name = f.name.to_string().to_ascii_uppercase();
    let func = match name.as_str() {
        "LOWER" => Func::Lower,
        "UPPER" => Func::Upper,
        "COALESCE" => Func::Coalesce,
        "LENGTH" | "CHAR_LENGTH" | "CHARACTER_LENGTH" => Func::Length,
        "ABS" => Func::Abs,
        _ => {
            return Err(format!(
                "unknown function {name} at {pos}: use LOWER, UPPER, COALESCE, LENGTH or ABS"
            ))
        }
    };
    let plain = f.filter.is_none()
        && f.over.is_none()
        && f.null_treatment.is_none()
        && f.within_group.is_empty()
        && matches!(f.parameters, FunctionArguments::None);
    let FunctionArguments::List(list) = &f.args else {
        return Err(format!("{name} needs an argument list (at {pos})"));
    };
    if !plain || list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return Err(format!("{name} takes plain arguments only (at {pos})"));
    }
    let mut args = Vec::with_capacity(list.args.len());
    for a in &list.args {
        match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => args.push(convert(x, d)?),
            _ => return Err(format!("{name} takes plain arguments only (at {pos})")),
        }
    }
    Ok(Expr::Func { f: func, args, pos })
}

fn sql_type(t: &ast::DataType, span: Span) -> Result<DataType, String> {
    parse_type_name(&t.to_string()).map_err(|m| format!("{m} (at {})", pos_of(span)))
}

/// A literal of a given type (`DATE '...'`, a string next to a date column).
pub(super) fn typed_literal(dt: &DataType, text: &str, pos: Pos) -> Result<Expr, String> {
    let bad = || {
        format!(
            "the literal at {pos} is not a valid {}",
            crate::mapping::types::type_label(dt)
        )
    };
    let v = match dt {
        DataType::TimestampTz { .. } => {
            crate::mapping::types::convert(Value::Text(text.into()), dt).map_err(|_| bad())?
        }
        _ => pgtext::parse(dt, text.trim()).map_err(|_| bad())?,
    };
    Ok(Expr::Lit(match v {
        Value::Date(d) => Lit::Date(d),
        Value::Time(t) => Lit::Time(t),
        Value::Timestamp(t) => Lit::Ts(t),
        Value::TimestampTz(t) => Lit::TsTz(t),
        Value::Bool(x) => Lit::Bool(x),
        Value::Int16(i) => Lit::Int(i as i64),
        Value::Int32(i) => Lit::Int(i as i64),
        Value::Int64(i) => Lit::Int(i),
        Value::Float32(f) => Lit::Float(f as f64),
        Value::Float64(f) => Lit::Float(f),
        Value::Decimal(s) => Lit::Dec(Dec::parse(&s).ok_or_else(bad)?),
        Value::Text(s) | Value::Json(s) => Lit::Str(s),
        _ => return Err(bad()),
    }))
}

/// A number literal: integer, exact decimal, or float (exponent form beyond 38 digits).
pub(super) fn number(text: &str) -> Option<Lit> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Lit::Int(i));
    }
    if let Some(d) = Dec::parse(text) {
        return Some(Lit::Dec(d));
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Lit::Float)
}

fn value(v: &SqlValue, span: Span) -> Result<Expr, String> {
    Ok(match v {
        SqlValue::Number(n, _) => {
            Expr::Lit(number(n).ok_or_else(|| format!("number out of range at {}", pos_of(span)))?)
        }
        SqlValue::SingleQuotedString(s)
        | SqlValue::EscapedStringLiteral(s)
        | SqlValue::NationalStringLiteral(s) => Expr::Lit(Lit::Str(s.clone())),
        SqlValue::Boolean(x) => Expr::Lit(Lit::Bool(*x)),
        SqlValue::Null => Expr::Lit(Lit::Null),
        SqlValue::Placeholder(p) if p.len() > 1 && (p.starts_with(':') || p.starts_with('$')) => {
            Expr::Param {
                name: p[1..].to_string(),
                pos: pos_of(span),
            }
        }
        SqlValue::DoubleQuotedString(s) => {
            // Some dialects read "x" as a string; SQL reads it as a column.
            Expr::Col {
                name: s.clone(),
                quoted: true,
                idx: usize::MAX,
                pos: pos_of(span),
            }
        }
        _ => return Err(unsupported("this literal", span)),
    })
}

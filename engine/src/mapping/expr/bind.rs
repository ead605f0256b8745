//! Binding an expression to a schema: column names become indexes, a text
//! literal compared with a typed column becomes a literal of that type
//! (parsed once, not per row), script parameters become literals, and types
//! are checked.

use super::parse::{number, typed_literal};
use super::{check, Expr, Lit, Pos, Ty};
use crate::config::Params;
use crate::value::DataType;

/// A column of the record an expression reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The name expressions and scripts use.
    pub name: String,
    /// Its type at this point of the row's path.
    pub ty: DataType,
}

/// What [`bind`] binds to.
pub struct Binding<'a> {
    /// The record's columns, in row order.
    pub columns: &'a [Column],
}

impl Binding<'_> {
    /// The index of a column: exact name first; an unquoted name also
    /// matches one column case-insensitively.
    pub fn index(&self, name: &str, quoted: bool, pos: Pos) -> Result<usize, String> {
        if let Some(i) = self.columns.iter().position(|c| c.name == name) {
            return Ok(i);
        }
        if !quoted {
            let mut hits = self
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name.eq_ignore_ascii_case(name));
            if let (Some((i, _)), None) = (hits.next(), hits.next()) {
                return Ok(i);
            }
        }
        Err(format!("unknown column {name} at {pos}"))
    }
}

/// Rebuilds `e` bottom-up, passing each rebuilt node through `g`.
pub(super) fn map_post(
    e: &Expr,
    g: &mut dyn FnMut(Expr) -> Result<Expr, String>,
) -> Result<Expr, String> {
    let mut m = |x: &Expr| map_post(x, g).map(Box::new);
    let rebuilt = match e {
        Expr::Col { .. } | Expr::Lit(_) | Expr::Param { .. } => e.clone(),
        Expr::Not(x) => Expr::Not(m(x)?),
        Expr::Neg(x, p) => Expr::Neg(m(x)?, *p),
        Expr::And(xs) => Expr::And(
            xs.iter()
                .map(|x| map_post(x, g))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(xs) => Expr::Or(
            xs.iter()
                .map(|x| map_post(x, g))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Cmp { op, l, r, pos } => Expr::Cmp {
            op: *op,
            l: m(l)?,
            r: m(r)?,
            pos: *pos,
        },
        Expr::IsNull { e, negated } => Expr::IsNull {
            e: m(e)?,
            negated: *negated,
        },
        Expr::IsBool { e, value, negated } => Expr::IsBool {
            e: m(e)?,
            value: *value,
            negated: *negated,
        },
        Expr::In {
            e,
            list,
            negated,
            pos,
        } => Expr::In {
            e: m(e)?,
            list: list
                .iter()
                .map(|x| map_post(x, g))
                .collect::<Result<_, _>>()?,
            negated: *negated,
            pos: *pos,
        },
        Expr::Between {
            e,
            lo,
            hi,
            negated,
            pos,
        } => Expr::Between {
            e: m(e)?,
            lo: m(lo)?,
            hi: m(hi)?,
            negated: *negated,
            pos: *pos,
        },
        Expr::Like {
            e,
            pat,
            compiled,
            escape,
            ci,
            negated,
            pos,
        } => Expr::Like {
            e: m(e)?,
            pat: m(pat)?,
            compiled: compiled.clone(),
            escape: *escape,
            ci: *ci,
            negated: *negated,
            pos: *pos,
        },
        Expr::Arith { op, l, r, pos } => Expr::Arith {
            op: *op,
            l: m(l)?,
            r: m(r)?,
            pos: *pos,
        },
        Expr::Concat { l, r } => Expr::Concat { l: m(l)?, r: m(r)? },
        Expr::Func { f, args, pos } => Expr::Func {
            f: *f,
            args: args
                .iter()
                .map(|x| map_post(x, g))
                .collect::<Result<_, _>>()?,
            pos: *pos,
        },
        Expr::Cast { e, to, pos } => Expr::Cast {
            e: m(e)?,
            to: to.clone(),
            pos: *pos,
        },
    };
    g(rebuilt)
}

/// Replaces `:name` parameters by the values of `params`.
pub fn bind_params(e: &Expr, params: &Params) -> Result<Expr, String> {
    map_post(e, &mut |x| match x {
        Expr::Param { name, pos } => {
            let v = params
                .get(&name)
                .ok_or_else(|| format!("unknown script parameter :{name} at {pos}"))?;
            Ok(Expr::Lit(match v {
                serde_json::Value::Null => Lit::Null,
                serde_json::Value::Bool(b) => Lit::Bool(b.to_owned()),
                serde_json::Value::String(s) => Lit::Str(s.clone()),
                serde_json::Value::Number(n) => number(&n.to_string())
                    .ok_or_else(|| format!("script parameter :{name} is out of range"))?,
                _ => {
                    return Err(format!(
                        "script parameter :{name} must be a string, number or boolean"
                    ))
                }
            }))
        }
        other => Ok(other),
    })
}

fn column_type(e: &Expr, cols: &[Column]) -> Option<DataType> {
    match e {
        Expr::Col { idx, .. } => cols.get(*idx).map(|c| c.ty.clone()),
        _ => None,
    }
}

/// A text literal compared with a typed column, read as the column's type.
fn coerce(typed: &Expr, other: Expr, cols: &[Column], pos: Pos) -> Result<Expr, String> {
    let (Some(dt), Expr::Lit(Lit::Str(s))) = (column_type(typed, cols), &other) else {
        return Ok(other);
    };
    match Ty::of(&dt) {
        Ty::Text | Ty::Opaque | Ty::Any | Ty::Null => Ok(other),
        Ty::Num => match number(s.trim()) {
            Some(Lit::Int(i)) => Ok(Expr::Lit(Lit::Int(i))),
            Some(Lit::Dec(d)) => Ok(Expr::Lit(Lit::Dec(d))),
            Some(Lit::Float(f)) => Ok(Expr::Lit(Lit::Float(f))),
            _ => Err(format!(
                "the text literal compared at {pos} is not a number"
            )),
        },
        Ty::Ts => typed_literal(&DataType::TimestampTz { precision: None }, s, pos),
        _ => typed_literal(&dt, s, pos),
    }
    .map_err(|_| {
        format!(
            "the text literal compared at {pos} is not a valid {}",
            crate::mapping::types::type_label(&dt)
        )
    })
}

/// Binds `e` to `columns` and checks its types; `condition` requires a boolean.
pub fn bind(e: &Expr, columns: &[Column], condition: bool) -> Result<Expr, String> {
    let b = Binding { columns };
    let bound = map_post(e, &mut |x| {
        Ok(match x {
            Expr::Col {
                name, quoted, pos, ..
            } => Expr::Col {
                idx: b.index(&name, quoted, pos)?,
                name,
                quoted,
                pos,
            },
            Expr::Cmp { op, l, r, pos } => {
                let r2 = coerce(&l, *r, columns, pos)?;
                let l2 = coerce(&r2, *l, columns, pos)?;
                Expr::Cmp {
                    op,
                    l: Box::new(l2),
                    r: Box::new(r2),
                    pos,
                }
            }
            Expr::In {
                e,
                list,
                negated,
                pos,
            } => Expr::In {
                list: list
                    .into_iter()
                    .map(|x| coerce(&e, x, columns, pos))
                    .collect::<Result<_, _>>()?,
                e,
                negated,
                pos,
            },
            Expr::Between {
                e,
                lo,
                hi,
                negated,
                pos,
            } => Expr::Between {
                lo: Box::new(coerce(&e, *lo, columns, pos)?),
                hi: Box::new(coerce(&e, *hi, columns, pos)?),
                e,
                negated,
                pos,
            },
            other => other,
        })
    })?;
    let ty = |i: usize| columns.get(i).map_or(Ty::Any, |c| Ty::of(&c.ty));
    if condition {
        super::check_condition(&bound, &ty)?;
    } else {
        check(&bound, &ty)?;
    }
    Ok(bound)
}

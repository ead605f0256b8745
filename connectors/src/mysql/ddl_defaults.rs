//! Column `DEFAULT`s in DDL: which are constants dbsync can give a target
//! column (so that rows existing when the column is added get the value the
//! source gave them), and which are not.

use sqlparser::ast;

use super::NewColumn;
use crate::mysql::schema::ColumnDef;
use crate::mysql::types::ColType;

/// A column's declared `DEFAULT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultSpec {
    /// A constant, as text (`5`, `-1.5`, `abc`, `2024-01-01`; `TRUE` is `1`).
    Literal(String),
    /// Anything else (`CURRENT_TIMESTAMP`, `(expr)`, `UUID()`): its value in
    /// existing rows cannot be known from the binlog.
    Expression(String),
}

/// The constant of a `DEFAULT` expression, if it is one.
pub(super) fn default_spec(e: &ast::Expr) -> Option<DefaultSpec> {
    use ast::Value as V;
    let lit = |s: String| Some(DefaultSpec::Literal(s));
    match e {
        ast::Expr::Value(v) => match &v.value {
            V::Null => None,
            V::Number(n, _) => lit(n.to_string()),
            V::SingleQuotedString(t) | V::DoubleQuotedString(t) => lit(t.clone()),
            V::Boolean(b) => lit(if *b { "1" } else { "0" }.into()),
            _ => Some(DefaultSpec::Expression(e.to_string())),
        },
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => match default_spec(expr) {
            Some(DefaultSpec::Literal(n)) if n.chars().all(|c| c.is_ascii_digit() || c == '.') => {
                lit(format!("-{n}"))
            }
            _ => Some(DefaultSpec::Expression(e.to_string())),
        },
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Plus,
            expr,
        } => default_spec(expr),
        ast::Expr::Nested(inner) => default_spec(inner),
        _ => Some(DefaultSpec::Expression(e.to_string())),
    }
}

impl NewColumn {
    /// Why rows that exist when this column is added cannot get the value
    /// the source gave them, if they cannot: an expression default
    /// (`CURRENT_TIMESTAMP`, `(expr)`) is evaluated at the `ALTER`, which the
    /// binlog does not record; a `TIMESTAMP` literal is read in the session
    /// time zone of the `ALTER`.
    pub fn unreproducible_default(&self, def: &ColumnDef) -> Option<String> {
        match &self.default {
            Some(DefaultSpec::Expression(e)) => Some(format!(
                "column {} is added with DEFAULT {e}, whose value in the rows that already exist \
                 is not in the binlog",
                self.name
            )),
            Some(DefaultSpec::Literal(_)) if matches!(def.ty, ColType::Timestamp { .. }) => {
                Some(format!(
                    "TIMESTAMP column {} is added with a literal DEFAULT, which the source reads \
                     in the session time zone of the ALTER (not in the binlog)",
                    self.name
                ))
            }
            _ => None,
        }
    }
}

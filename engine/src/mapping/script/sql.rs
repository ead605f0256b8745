//! SQL scripts: assignments and a keep-condition over the record, evaluated
//! with the row-filter evaluator.

use super::Outcome;
use crate::config::Params;
use crate::mapping::expr::{self, bind, bind_params, truth, Column, Expr, SqlScriptAst, Truth};
use crate::mapping::types::convert;
use crate::value::{DataType, Value};

/// A parsed SQL script with its parameters substituted.
pub struct SqlScript {
    ast: SqlScriptAst,
}

impl SqlScript {
    /// Parses the script and substitutes its `:name` parameters.
    pub fn compile(content: &str, params: &Params) -> Result<Self, String> {
        let mut ast = expr::parse_script(content)?;
        for (_, e, _) in &mut ast.assignments {
            *e = bind_params(e, params)?;
            expr::check(e, &|_| expr::Ty::Any)?;
        }
        if let Some(k) = &mut ast.keep {
            *k = bind_params(k, params)?;
            expr::check_condition(k, &|_| expr::Ty::Any)?;
        }
        Ok(Self { ast })
    }

    /// Binds column names to the record's columns.
    pub fn bind(&self, cols: &[Column]) -> Result<BoundSql, String> {
        let mut assignments = Vec::with_capacity(self.ast.assignments.len());
        for (name, e, pos) in &self.ast.assignments {
            let idx = expr::Binding { columns: cols }.index(name, false, *pos)?;
            let bound = bind(e, cols, false)?;
            assignments.push((idx, name.clone(), bound, cols[idx].ty.clone()));
        }
        let keep = match &self.ast.keep {
            Some(k) => Some(bind(k, cols, true)?),
            None => None,
        };
        Ok(BoundSql { assignments, keep })
    }
}

/// A SQL script bound to a record's columns.
pub struct BoundSql {
    /// (column index, column name, expression, column type)
    assignments: Vec<(usize, String, Expr, DataType)>,
    keep: Option<Expr>,
}

impl BoundSql {
    /// Assigns (all right-hand sides first), then tests the keep-condition.
    pub fn run(&self, row: &mut [Value]) -> Result<Outcome, String> {
        if !self.assignments.is_empty() {
            let mut values = Vec::with_capacity(self.assignments.len());
            for (_, name, e, ty) in &self.assignments {
                let v = expr::eval(e, &*row).map_err(|e| e.0)?;
                let v = expr::eval::to_value(v).map_err(|e| e.0)?;
                let v = convert(v, ty).map_err(|e| format!("assigning column {name}: {e}"))?;
                values.push(v);
            }
            for ((idx, _, _, _), v) in self.assignments.iter().zip(values) {
                row[*idx] = v;
            }
        }
        match &self.keep {
            None => Ok(Outcome::Keep),
            Some(k) => match truth(k, &*row).map_err(|e| e.0)? {
                Truth::True | Truth::Unknown => Ok(Outcome::Keep),
                Truth::False => Ok(Outcome::Drop),
            },
        }
    }
}

//! Row images of `WRITE`/`UPDATE`/`DELETE_ROWS` events, decoded with a
//! [`Plan`]: the table map's column descriptions checked against the tracked
//! schema once per table map, so that a binlog that does not match the
//! schema history stops the task instead of being decoded wrongly.

use std::sync::Arc;

use engine::{Row, TableSchema, Value};

use super::binlog::{DecodeError, Reader, RowsEvent, RowsKind};
use super::schema::TableDef;
use super::tablemap::{MapColumn, TableMap};
use super::types::ColType;
use super::values::{compatible, decode_cell, ValueOpts};

/// How to decode the rows of one table map.
#[derive(Debug)]
pub struct Plan {
    pub table: Arc<TableSchema>,
    pub columns: Vec<(MapColumn, ColType)>,
    pub opts: ValueOpts,
}

impl Plan {
    /// Checks the table map against the schema: same column count, binlog
    /// types that can carry the schema's types, and — when the server logs
    /// them — the same names and signedness. The error names the first
    /// difference.
    pub fn new(
        map: &TableMap,
        def: &TableDef,
        table: Arc<TableSchema>,
        opts: ValueOpts,
    ) -> Result<Plan, String> {
        let id = &table.id;
        if map.columns.len() != def.columns.len() {
            return Err(format!(
                "the binlog has {} columns for {id}, the tracked schema {}",
                map.columns.len(),
                def.columns.len()
            ));
        }
        for (i, (m, c)) in map.columns.iter().zip(&def.columns).enumerate() {
            if !compatible(m, &c.ty) {
                return Err(format!(
                    "column {} of {id} is {} in the tracked schema but binlog type {} (metadata {}/{}) in the binlog",
                    c.name,
                    c.ty.native(),
                    m.ty,
                    m.meta,
                    m.meta2
                ));
            }
            if let Some(names) = &map.names {
                if names
                    .get(i)
                    .is_some_and(|n| !n.eq_ignore_ascii_case(&c.name))
                {
                    return Err(format!(
                        "column {} of {id} is named {} in the binlog",
                        c.name, names[i]
                    ));
                }
            }
            if let (Some(flags), ColType::Int { unsigned, .. }) = (&map.unsigned, &c.ty) {
                if flags
                    .get(i)
                    .copied()
                    .flatten()
                    .is_some_and(|u| u != *unsigned)
                {
                    return Err(format!(
                        "column {} of {id} differs in signedness between the binlog and the tracked schema",
                        c.name
                    ));
                }
            }
        }
        if table.key.is_empty() {
            return Err(format!("{id} has no primary key"));
        }
        Ok(Plan {
            columns: map
                .columns
                .iter()
                .copied()
                .zip(def.columns.iter().map(|c| c.ty.clone()))
                .collect(),
            table,
            opts,
        })
    }
}

/// One decoded row change.
#[derive(Debug, Clone, PartialEq)]
pub enum RowChange {
    Insert(Row),
    Update { before: Row, after: Row },
    Delete(Row),
}

/// Iterates over the row changes of one rows event.
pub struct RowIter<'a> {
    plan: &'a Plan,
    r: Reader<'a>,
    kind: RowsKind,
    present: &'a [u8],
    present_after: &'a [u8],
    /// Columns present in each image (the width of its null bitmap).
    count: usize,
    count_after: usize,
}

impl<'a> RowIter<'a> {
    /// The row changes of `ev`, decoded with `plan` (its table map's).
    pub fn new(ev: &'a RowsEvent<'a>, plan: &'a Plan) -> Result<Self, DecodeError> {
        if ev.column_count != plan.columns.len() {
            return Err(DecodeError(format!(
                "rows event for {} has {} columns, its table map {}",
                plan.table.id,
                ev.column_count,
                plan.columns.len()
            )));
        }
        let present: &[u8] = &ev.present;
        let present_after = ev.present_after.as_deref().unwrap_or(present);
        let n = plan.columns.len();
        let count = (0..n).filter(|&i| bit(present, i)).count();
        let count_after = (0..n).filter(|&i| bit(present_after, i)).count();
        Ok(Self {
            plan,
            r: Reader::new(&ev.rows, "row image"),
            kind: ev.kind,
            present,
            present_after,
            count,
            count_after,
        })
    }

    fn image(&mut self, present: &[u8], count: usize, after: bool) -> Result<Row, DecodeError> {
        let n = self.plan.columns.len();
        let nulls = self.r.take(count.div_ceil(8))?;
        let mut row = Vec::with_capacity(n);
        let mut k = 0usize;
        for (i, (m, ct)) in self.plan.columns.iter().enumerate() {
            if !bit(present, i) {
                // Not logged (binlog_row_image is not FULL).
                if self.kind == RowsKind::Write || (!after && self.plan.table.key.contains(&i)) {
                    return Err(DecodeError(format!(
                        "{}: column {} is missing from a row image; set binlog_row_image=FULL",
                        self.plan.table.id, self.plan.table.columns[i].name
                    )));
                }
                row.push(Value::Unchanged);
                continue;
            }
            let is_null = bit(nulls, k);
            k += 1;
            if is_null {
                row.push(Value::Null);
                continue;
            }
            let v = decode_cell(&mut self.r, m, ct, &self.plan.opts).map_err(|e| {
                DecodeError(format!(
                    "{} column {}: {e}",
                    self.plan.table.id, self.plan.table.columns[i].name
                ))
            })?;
            row.push(v);
        }
        Ok(row)
    }

    fn next_change(&mut self) -> Result<RowChange, DecodeError> {
        let (present, count) = (self.present, self.count);
        let (present_after, count_after) = (self.present_after, self.count_after);
        Ok(match self.kind {
            RowsKind::Write => RowChange::Insert(self.image(present, count, true)?),
            RowsKind::Delete => RowChange::Delete(self.image(present, count, false)?),
            RowsKind::Update => {
                let before = self.image(present, count, false)?;
                let after = self.image(present_after, count_after, true)?;
                RowChange::Update { before, after }
            }
        })
    }
}

impl Iterator for RowIter<'_> {
    type Item = Result<RowChange, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.remaining() == 0 {
            return None;
        }
        let r = self.next_change();
        if r.is_err() {
            // Stop after the first error.
            self.r.rest();
        }
        Some(r)
    }
}

fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

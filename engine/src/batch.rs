//! Coalescing of row changes into per-table sets, so a sink can write them
//! set-wise.
//!
//! Inside one target transaction only the final state of each key matters:
//! insert → update → delete of one key is a delete; two updates are the last
//! one. The [`Coalescer`] keeps at most one pending operation per (table, key)
//! and hands out [`TableChanges`] whose keys are disjoint, so their order of
//! application does not matter. Partial updates (rows with `Unchanged`
//! columns) cannot always be merged; when a later change touches a key that a
//! pending partial update involves, the coalescer asks to be flushed first
//! (`push` hands the change back), which keeps the order of those changes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::contracts::{PartialUpdate, TableChanges};
use crate::mapping::ConflictPolicy;
use crate::schema::{TableId, TableSchema};
use crate::value::{row_size, Row, Value};

enum Op {
    Upsert(Row),
    Delete(Row),
    Partial(PartialUpdate),
    /// Superseded (kept so indexes stay valid).
    Gone,
}

struct TableBuf {
    schema: Arc<TableSchema>,
    index: HashMap<Box<[u8]>, usize>,
    ops: Vec<Op>,
    /// Old keys of pending partial updates that moved their row to a new key.
    moved_from: HashMap<Box<[u8]>, ()>,
    likely_new: bool,
    policy: ConflictPolicy,
    /// Row changes and approximate bytes pending for this table.
    rows: usize,
    bytes: usize,
}

impl TableBuf {
    fn new(schema: Arc<TableSchema>, policy: ConflictPolicy) -> Self {
        Self {
            schema,
            index: HashMap::new(),
            ops: Vec::new(),
            moved_from: HashMap::new(),
            likely_new: true,
            policy,
            rows: 0,
            bytes: 0,
        }
    }

    fn into_changes(self) -> TableChanges {
        let mut ch = TableChanges {
            table: self.schema,
            deletes: Vec::new(),
            partial_updates: Vec::new(),
            upserts: Vec::with_capacity(self.ops.len()),
            likely_new: self.likely_new,
            policy: self.policy,
            snapshot: false,
        };
        for op in self.ops {
            match op {
                Op::Upsert(r) => ch.upserts.push(r),
                Op::Delete(k) => ch.deletes.push(k),
                Op::Partial(p) => ch.partial_updates.push(p),
                Op::Gone => {}
            }
        }
        ch
    }
}

/// A change as the coalescer sees it.
pub enum RowChange<'a> {
    Insert(Row),
    Update { before: Option<&'a Row>, after: Row },
    Delete(&'a Row),
}

#[derive(Default)]
pub struct Coalescer {
    tables: HashMap<TableId, TableBuf>,
    order: Vec<TableId>,
    rows: usize,
    bytes: usize,
}

/// Appends an unambiguous binary encoding of the key columns of `row`.
pub fn encode_key(row: &[Value], key: &[usize], out: &mut Vec<u8>) {
    for &i in key {
        encode_value(&row[i], out);
    }
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    fn bytes(tag: u8, b: &[u8], out: &mut Vec<u8>) {
        out.push(tag);
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }
    match v {
        Value::Null => out.push(0),
        Value::Unchanged => out.push(1),
        Value::Bool(b) => out.extend_from_slice(&[2, *b as u8]),
        // Integers of different widths that are equal must encode equal:
        // a key column has one type, but be safe across schema changes.
        Value::Int16(i) => bytes(3, &(*i as i64).to_le_bytes(), out),
        Value::Int32(i) => bytes(3, &(*i as i64).to_le_bytes(), out),
        Value::Int64(i) => bytes(3, &i.to_le_bytes(), out),
        Value::Float32(f) => bytes(4, &(*f as f64).to_bits().to_le_bytes(), out),
        Value::Float64(f) => bytes(4, &f.to_bits().to_le_bytes(), out),
        Value::Decimal(s) => bytes(5, s.as_bytes(), out),
        Value::Text(s) => bytes(6, s.as_bytes(), out),
        Value::Bytes(b) => bytes(7, b, out),
        Value::Date(d) => bytes(8, d.to_string().as_bytes(), out),
        Value::Time(t) => bytes(9, t.to_string().as_bytes(), out),
        Value::Timestamp(t) => bytes(10, &t.and_utc().timestamp_micros().to_le_bytes(), out),
        Value::TimestampTz(t) => bytes(11, &t.timestamp_micros().to_le_bytes(), out),
        Value::Interval(i) => {
            out.push(12);
            out.extend_from_slice(&i.months.to_le_bytes());
            out.extend_from_slice(&i.days.to_le_bytes());
            out.extend_from_slice(&i.micros.to_le_bytes());
        }
        Value::Uuid(u) => bytes(13, u, out),
        Value::Json(s) => bytes(14, s.as_bytes(), out),
        Value::Other(s) => bytes(15, s.as_bytes(), out),
        Value::Array(items) => {
            out.push(16);
            out.extend_from_slice(&(items.len() as u32).to_le_bytes());
            for it in items {
                encode_value(it, out);
            }
        }
    }
}

fn key_values(row: &[Value], key: &[usize]) -> Row {
    key.iter().map(|&i| row[i].clone()).collect()
}

fn has_unchanged(row: &[Value]) -> bool {
    row.iter().any(|v| matches!(v, Value::Unchanged))
}

impl Coalescer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Row changes pending.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Approximate bytes pending.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Row changes pending for one target table.
    pub fn table_rows(&self, table: &TableId) -> usize {
        self.tables.get(table).map_or(0, |b| b.rows)
    }

    /// Offers one change of `table` (the target schema) under the default
    /// policy ([`ConflictPolicy::Upsert`]); see [`Coalescer::push_with`].
    pub fn push<'a>(
        &mut self,
        table: &Arc<TableSchema>,
        change: RowChange<'a>,
    ) -> Result<(), RowChange<'a>> {
        self.push_with(table, ConflictPolicy::Upsert, change)
    }

    /// Offers one change of `table` (the target schema), written under
    /// `policy`. When a pending change must reach the sink first (an
    /// unmergeable partial update, another schema or policy of the table),
    /// the change is handed back (`Err`): flush, then push it again.
    pub fn push_with<'a>(
        &mut self,
        table: &Arc<TableSchema>,
        policy: ConflictPolicy,
        change: RowChange<'a>,
    ) -> Result<(), RowChange<'a>> {
        if let Some(b) = self.tables.get(&table.id) {
            if (!Arc::ptr_eq(&b.schema, table) && b.schema.as_ref() != table.as_ref())
                || b.policy != policy
            {
                return Err(change);
            }
        }
        let key = &table.key;
        // Keys of the change: (key it lands on, key it comes from).
        let mut new_key = Vec::new();
        let mut old_key = Vec::new();
        match &change {
            RowChange::Insert(row) => encode_key(row, key, &mut new_key),
            RowChange::Delete(before) => encode_key(before, key, &mut new_key),
            RowChange::Update { before, after } => {
                encode_key(after, key, &mut new_key);
                if let Some(b) = before {
                    encode_key(b, key, &mut old_key);
                }
            }
        }
        if old_key.is_empty() {
            old_key.clone_from(&new_key);
        }
        if let Some(b) = self.tables.get(&table.id) {
            if touches_partial(b, &new_key) || touches_partial(b, &old_key) {
                return Err(change);
            }
        }
        if !self.tables.contains_key(&table.id) {
            self.order.push(table.id.clone());
            self.tables
                .insert(table.id.clone(), TableBuf::new(table.clone(), policy));
        }
        let buf = self.tables.get_mut(&table.id).expect("inserted above");
        let (mut rows, mut bytes) = (1usize, 0usize);
        match change {
            RowChange::Insert(row) => {
                bytes += row_size(&row);
                set_op(buf, &new_key, Op::Upsert(row));
            }
            RowChange::Delete(before) => {
                buf.likely_new = false;
                let kv = key_values(before, key);
                bytes += row_size(&kv);
                set_op(buf, &new_key, Op::Delete(kv));
            }
            RowChange::Update { before, mut after } => {
                buf.likely_new = false;
                if has_unchanged(&after) {
                    // Fill unchanged columns from a full row we already hold
                    // for the old key, or from a full before image.
                    let held = buf
                        .index
                        .get(old_key.as_slice())
                        .and_then(|&i| match &buf.ops[i] {
                            Op::Upsert(r) => Some(r),
                            _ => None,
                        });
                    let source = held.or(before.filter(|b| !has_unchanged(b)));
                    if let Some(src) = source {
                        for (v, s) in after.iter_mut().zip(src.iter()) {
                            if matches!(v, Value::Unchanged) {
                                *v = s.clone();
                            }
                        }
                    }
                }
                let moved = old_key != new_key;
                if has_unchanged(&after) {
                    let old_kv = match before {
                        Some(b) => key_values(b, key),
                        None => key_values(&after, key),
                    };
                    bytes += row_size(&after);
                    if moved {
                        // The UPDATE moves the target row; nothing else may
                        // touch the old key before it is applied.
                        remove_op(buf, &old_key);
                        buf.moved_from.insert(old_key.into_boxed_slice(), ());
                    }
                    set_op(
                        buf,
                        &new_key,
                        Op::Partial(PartialUpdate {
                            old_key: old_kv,
                            row: after,
                        }),
                    );
                } else {
                    if moved {
                        let old_kv = before.map(|b| key_values(b, key)).unwrap_or_default();
                        bytes += row_size(&old_kv);
                        set_op(buf, &old_key, Op::Delete(old_kv));
                        rows += 1;
                    }
                    bytes += row_size(&after);
                    set_op(buf, &new_key, Op::Upsert(after));
                }
            }
        }
        buf.rows += rows;
        buf.bytes += bytes;
        self.rows += rows;
        self.bytes += bytes;
        Ok(())
    }

    /// Takes what is pending for one table (`None` when nothing is).
    pub fn drain_table(&mut self, table: &TableId) -> Option<TableChanges> {
        let buf = self.tables.remove(table)?;
        self.order.retain(|t| t != table);
        self.rows -= buf.rows;
        self.bytes -= buf.bytes;
        let ch = buf.into_changes();
        (!ch.is_empty()).then_some(ch)
    }

    /// Takes everything pending, one [`TableChanges`] per table in first-seen order.
    pub fn drain(&mut self) -> Vec<TableChanges> {
        let mut out = Vec::with_capacity(self.order.len());
        for id in self.order.drain(..) {
            let Some(buf) = self.tables.remove(&id) else {
                continue;
            };
            let ch = buf.into_changes();
            if !ch.is_empty() {
                out.push(ch);
            }
        }
        self.rows = 0;
        self.bytes = 0;
        out
    }
}

fn touches_partial(buf: &TableBuf, key: &[u8]) -> bool {
    buf.moved_from.contains_key(key)
        || buf
            .index
            .get(key)
            .is_some_and(|&i| matches!(buf.ops[i], Op::Partial(_)))
}

fn set_op(buf: &mut TableBuf, key: &[u8], op: Op) {
    match buf.index.get(key) {
        Some(&i) => buf.ops[i] = op,
        None => {
            buf.index.insert(key.into(), buf.ops.len());
            buf.ops.push(op);
        }
    }
}

fn remove_op(buf: &mut TableBuf, key: &[u8]) {
    if let Some(i) = buf.index.remove(key) {
        buf.ops[i] = Op::Gone;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnSchema, Dialect};
    use crate::value::DataType;

    fn schema() -> Arc<TableSchema> {
        let col = |n: &str, t| ColumnSchema {
            name: n.into(),
            data_type: t,
            nullable: true,
            native_type: String::new(),
            default: None,
        };
        Arc::new(TableSchema {
            id: TableId::new("public", "t"),
            columns: vec![
                col("id", DataType::Int64),
                col("a", DataType::Text { max_len: None }),
                col("big", DataType::Text { max_len: None }),
            ],
            key: vec![0],
            dialect: Dialect::Postgres,
        })
    }

    fn row(id: i64, a: &str, big: Value) -> Row {
        vec![Value::Int64(id), Value::Text(a.into()), big]
    }

    #[test]
    fn insert_update_delete_of_one_key_is_one_delete() {
        let s = schema();
        let mut c = Coalescer::new();
        let r1 = row(1, "x", Value::Null);
        assert!(c.push(&s, RowChange::Insert(r1.clone())).is_ok());
        assert!(c
            .push(
                &s,
                RowChange::Update {
                    before: None,
                    after: row(1, "y", Value::Null)
                }
            )
            .is_ok());
        assert!(c.push(&s, RowChange::Delete(&r1)).is_ok());
        let out = c.drain();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].deletes, vec![vec![Value::Int64(1)]]);
        assert!(out[0].upserts.is_empty());
        assert!(!out[0].likely_new);
        assert!(c.is_empty());
    }

    #[test]
    fn last_update_wins_and_inserts_are_likely_new() {
        let s = schema();
        let mut c = Coalescer::new();
        for i in 0..3 {
            c.push(&s, RowChange::Insert(row(i, "a", Value::Null))).ok();
        }
        let out = c.drain();
        assert!(out[0].likely_new);
        assert_eq!(out[0].upserts.len(), 3);
        c.push(
            &s,
            RowChange::Update {
                before: None,
                after: row(2, "b", Value::Null),
            },
        )
        .ok();
        c.push(
            &s,
            RowChange::Update {
                before: None,
                after: row(2, "c", Value::Null),
            },
        )
        .ok();
        let out = c.drain();
        assert_eq!(out[0].upserts, vec![row(2, "c", Value::Null)]);
    }

    #[test]
    fn key_change_becomes_delete_old_and_upsert_new() {
        let s = schema();
        let mut c = Coalescer::new();
        let before = row(1, "a", Value::Null);
        c.push(
            &s,
            RowChange::Update {
                before: Some(&before),
                after: row(2, "a", Value::Null),
            },
        )
        .ok();
        let out = c.drain();
        assert_eq!(out[0].deletes, vec![vec![Value::Int64(1)]]);
        assert_eq!(out[0].upserts, vec![row(2, "a", Value::Null)]);
    }

    #[test]
    fn unchanged_columns_are_filled_from_a_held_row() {
        let s = schema();
        let mut c = Coalescer::new();
        c.push(
            &s,
            RowChange::Insert(row(1, "a", Value::Text("huge".into()))),
        )
        .ok();
        c.push(
            &s,
            RowChange::Update {
                before: None,
                after: row(1, "b", Value::Unchanged),
            },
        )
        .ok();
        let out = c.drain();
        assert_eq!(
            out[0].upserts,
            vec![row(1, "b", Value::Text("huge".into()))]
        );
        assert!(out[0].partial_updates.is_empty());
    }

    #[test]
    fn unmergeable_unchanged_columns_make_a_partial_update_and_order_is_kept() {
        let s = schema();
        let mut c = Coalescer::new();
        c.push(
            &s,
            RowChange::Update {
                before: None,
                after: row(1, "b", Value::Unchanged),
            },
        )
        .ok();
        // A later change of the same key must not be merged past the partial update.
        let gone = row(1, "b", Value::Null);
        assert!(c.push(&s, RowChange::Delete(&gone)).is_err());
        let out = c.drain();
        assert_eq!(out[0].partial_updates.len(), 1);
        assert_eq!(out[0].partial_updates[0].old_key, vec![Value::Int64(1)]);
        assert!(c.push(&s, RowChange::Delete(&gone)).is_ok());
    }

    #[test]
    fn partial_update_that_moves_a_key_guards_the_old_key() {
        let s = schema();
        let mut c = Coalescer::new();
        let before = row(1, "a", Value::Unchanged);
        c.push(
            &s,
            RowChange::Update {
                before: Some(&before),
                after: row(5, "a", Value::Unchanged),
            },
        )
        .ok();
        assert!(c
            .push(&s, RowChange::Insert(row(1, "new", Value::Null)))
            .is_err());
        let out = c.drain();
        assert_eq!(out[0].partial_updates[0].old_key, vec![Value::Int64(1)]);
        assert!(out[0].deletes.is_empty());
    }

    #[test]
    fn keys_of_different_int_widths_coalesce() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        encode_key(&[Value::Int32(7)], &[0], &mut a);
        encode_key(&[Value::Int64(7)], &[0], &mut b);
        assert_eq!(a, b);
        let mut c1 = Vec::new();
        let mut c2 = Vec::new();
        encode_key(
            &[Value::Text("ab".into()), Value::Text("c".into())],
            &[0, 1],
            &mut c1,
        );
        encode_key(
            &[Value::Text("a".into()), Value::Text("bc".into())],
            &[0, 1],
            &mut c2,
        );
        assert_ne!(c1, c2);
    }
}

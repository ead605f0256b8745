//! A mapping compiled against one source schema ([`MappedTable`]), and
//! applied to row changes.
//!
//! The path of a row: row filter (over the source columns as sent) →
//! `BEFORE_TRANSFORM` scripts → transform rules → `AFTER_TRANSFORM` scripts
//! → projection (column filter, renames, retypes, defaults, nullability) →
//! `BEFORE_WRITE` scripts → the batch. `AFTER_WRITE` scripts see the rows
//! once the sink took them.
//!
//! Updates need both images: an update whose new image leaves the filter
//! (or is dropped by a script) deletes the target row; one whose old image
//! was outside inserts it. When the old image lacks a column the filter
//! reads (a key-only old image), the row is assumed to have been inside, so
//! a move-out still deletes (deleting an absent row is a no-op). Columns of
//! the new image the source did not send (PostgreSQL TOAST) are read from the
//! old image when it has them, else the filter's answer is unknown and the
//! row is treated as inside (the change becomes a partial update, which only
//! touches a row that is already there).

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::compile::CompiledMapping;
use super::expr::{self, Column, Expr, Truth, WithFallback};
use super::policy::ConflictPolicy;
use super::script::{self, BoundScript, Flow};
use super::transform::BoundRule;
use super::types::{convert, same_kind, type_label};
use crate::config::TriggerPhase;
use crate::error::Error;
use crate::schema::{ColumnSchema, TableSchema};
use crate::value::{DataType, Row, Value};

/// A row change after mapping, ready for the batch.
#[derive(Debug, Clone, PartialEq)]
pub enum MappedChange {
    /// Nothing to write (filtered out, dropped, or skipped).
    Skip,
    Insert(Row),
    /// `before` is the old target row when its key is known.
    Update {
        before: Option<Row>,
        after: Row,
    },
    /// A target-shaped row whose key columns are set.
    Delete(Row),
}

/// One source table's mapping, compiled against its schema.
pub struct MappedTable {
    /// The target table's schema (renamed, retyped, filtered columns; mapped key).
    pub target: Arc<TableSchema>,
    /// What the sink does with this table's rows.
    pub policy: ConflictPolicy,
    /// The most rows of this table in one write.
    pub batch_size: Option<usize>,
    /// The longest this table's rows wait in an open batch.
    pub batch_timeout: Option<Duration>,
    pub(crate) mapping: Option<Arc<CompiledMapping>>,
    source: Arc<TableSchema>,
    plan: Option<Plan>,
}

impl std::fmt::Debug for MappedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedTable")
            .field("source", &self.source.id)
            .field("target", &self.target.id)
            .field("policy", &self.policy)
            .field("identity", &self.plan.is_none())
            .finish()
    }
}

struct ProjCol {
    src: usize,
    name: String,
    conv: Option<DataType>,
    default: Option<Value>,
    not_null: bool,
}

struct Plan {
    filter: Option<Expr>,
    before_transform: Vec<BoundScript>,
    rules: Vec<BoundRule>,
    after_transform: Vec<BoundScript>,
    cols: Vec<ProjCol>,
    /// The projection keeps a prefix of the columns as they are.
    prefix: bool,
    before_write: Vec<BoundScript>,
    after_write: Vec<BoundScript>,
    has_scripts: bool,
}

enum Image {
    Row(Row),
    Dropped,
    Skipped,
}

fn has_unchanged(row: &[Value]) -> bool {
    row.iter().any(|v| matches!(v, Value::Unchanged))
}

impl MappedTable {
    /// Rows of `source` going unchanged to `target_id`'s table (no mapping,
    /// or a mapping that only routes).
    pub fn identity(source: &Arc<TableSchema>, mapping: Option<Arc<CompiledMapping>>) -> Self {
        let target_id = match &mapping {
            Some(m) => m.target.resolve(&source.id),
            None => source.id.clone(),
        };
        let target = if target_id == source.id {
            source.clone()
        } else {
            let mut s = TableSchema::clone(source);
            s.id = target_id;
            Arc::new(s)
        };
        Self {
            target,
            policy: mapping
                .as_ref()
                .map_or(ConflictPolicy::Upsert, |m| m.policy),
            batch_size: mapping.as_ref().and_then(|m| m.batch_size),
            batch_timeout: mapping.as_ref().and_then(|m| m.batch_timeout),
            mapping,
            source: source.clone(),
            plan: None,
        }
    }

    /// Compiles `m` against `source`; errors name the mapping and table.
    pub fn build(m: &Arc<CompiledMapping>, source: &Arc<TableSchema>) -> Result<Self, Error> {
        let mut me = Self::identity(source, Some(m.clone()));
        if m.is_identity() {
            return Ok(me);
        }
        let (target, plan) = build_plan(m, source).map_err(|e| {
            Error::Pipeline(format!("mapping {} for table {}: {e}", m.name, source.id))
        })?;
        me.target = Arc::new(target);
        me.plan = Some(plan);
        Ok(me)
    }

    /// Counts `rows` row changes handed to the batch (synced once committed:
    /// [`super::TableRouter::committed`]).
    pub fn note_synced(&self, rows: u64) {
        if let Some(m) = &self.mapping {
            m.stats.note(rows);
        }
    }

    /// Whether several source tables share this target table.
    pub fn shares_target(&self) -> bool {
        self.mapping.as_ref().is_some_and(|m| m.many_to_one)
    }

    /// Whether a source `TRUNCATE` empties the target: not when the policy
    /// keeps rows (`INSERT_ONLY`, `UPDATE_ONLY`), nor when other source tables
    /// share the target (logged).
    pub fn applies_truncate(&self) -> bool {
        if !self.policy.applies_deletes() {
            return false;
        }
        if self.shares_target() {
            warn!(source = %self.source.id, target = %self.target.id,
                "truncate not applied: other source tables share the target table");
            return false;
        }
        true
    }

    fn err(&self, what: impl std::fmt::Display) -> Error {
        let name = self.mapping.as_ref().map_or("", |m| m.name.as_str());
        Error::Pipeline(format!(
            "mapping {name} for table {}: {what}",
            self.source.id
        ))
    }

    fn check_len(&self, row: &[Value]) -> Result<(), Error> {
        if row.len() != self.source.columns.len() {
            return Err(self.err(format!(
                "a row has {} values for {} columns (a source bug)",
                row.len(),
                self.source.columns.len()
            )));
        }
        Ok(())
    }

    fn truth<C: expr::Cols + ?Sized>(&self, f: &Expr, row: &C) -> Result<Truth, Error> {
        expr::truth(f, row).map_err(|e| self.err(format!("row_filter_condition: {e}")))
    }

    fn key_known(&self, row: &[Value]) -> bool {
        self.target
            .key
            .iter()
            .all(|&i| row.get(i).is_some_and(|v| !matches!(v, Value::Unchanged)))
    }

    /// An insert (or a snapshot row).
    pub fn map_insert(&self, row: Row) -> Result<MappedChange, Error> {
        let Some(p) = &self.plan else {
            return Ok(MappedChange::Insert(row));
        };
        self.check_len(&row)?;
        if let Some(f) = &p.filter {
            if self.truth(f, &row[..])? == Truth::False {
                return Ok(MappedChange::Skip);
            }
        }
        Ok(match self.full(p, row)? {
            Image::Row(r) => MappedChange::Insert(r),
            Image::Dropped | Image::Skipped => MappedChange::Skip,
        })
    }

    /// Snapshot rows: the mapped rows that remain.
    pub fn map_rows(&self, rows: Vec<Row>) -> Result<Vec<Row>, Error> {
        if self.plan.is_none() {
            return Ok(rows);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let MappedChange::Insert(r) = self.map_insert(r)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// An update; see the module documentation for move-in and move-out.
    pub fn map_update(&self, before: Option<Row>, after: Row) -> Result<MappedChange, Error> {
        let Some(p) = &self.plan else {
            return Ok(MappedChange::Update { before, after });
        };
        self.check_len(&after)?;
        if let Some(b) = &before {
            self.check_len(b)?;
        }
        let (mut was_in, is_in) = match &p.filter {
            None => (true, true),
            Some(f) => {
                let was = match &before {
                    Some(b) => self.truth(f, &b[..])? != Truth::False,
                    None => true,
                };
                let now = WithFallback {
                    row: &after,
                    before: before.as_deref(),
                };
                (was, self.truth(f, &now)? != Truth::False)
            }
        };
        if !was_in && !is_in {
            return Ok(MappedChange::Skip);
        }
        let old = match before {
            Some(b) if was_in && !has_unchanged(&b) => match self.full(p, b)? {
                Image::Row(r) => Some(r),
                Image::Dropped => {
                    was_in = false;
                    None
                }
                Image::Skipped => return Ok(MappedChange::Skip),
            },
            Some(b) if was_in => Some(self.partial(p, b)?),
            _ => None,
        };
        let old = old.filter(|o| self.key_known(o));
        if !is_in {
            return self.delete_of(p, old, after);
        }
        // The key to delete if a script drops the new image.
        let fallback_key = if p.has_scripts && was_in && old.is_none() {
            Some(self.partial(p, after.clone())?)
        } else {
            None
        };
        Ok(match self.full(p, after)? {
            Image::Skipped => MappedChange::Skip,
            Image::Dropped if !was_in => MappedChange::Skip,
            Image::Dropped => match old.or(fallback_key) {
                Some(k) if self.key_known(&k) => MappedChange::Delete(k),
                _ => {
                    return Err(
                        self.err("a script dropped an updated row whose target key is unknown")
                    )
                }
            },
            Image::Row(new) if !was_in && !has_unchanged(&new) => MappedChange::Insert(new),
            Image::Row(new) => MappedChange::Update {
                before: if was_in { old } else { None },
                after: new,
            },
        })
    }

    /// The delete of a row that left the mapping.
    fn delete_of(&self, p: &Plan, old: Option<Row>, after: Row) -> Result<MappedChange, Error> {
        let row = match old {
            Some(o) => o,
            None => self.partial(p, after)?,
        };
        if !self.key_known(&row) {
            return Err(self.missing_key());
        }
        Ok(MappedChange::Delete(row))
    }

    fn missing_key(&self) -> Error {
        self.err(format!(
            "the change does not carry every column of the target key ({}): primary_key_mapping \
             uses columns outside the source key, which need full old images (PostgreSQL: \
             ALTER TABLE {} REPLICA IDENTITY FULL)",
            self.target.key_names().collect::<Vec<_>>().join(", "),
            self.source.id
        ))
    }

    /// A delete.
    pub fn map_delete(&self, before: Row) -> Result<MappedChange, Error> {
        let Some(p) = &self.plan else {
            return Ok(MappedChange::Delete(before));
        };
        self.check_len(&before)?;
        if let Some(f) = &p.filter {
            if self.truth(f, &before[..])? == Truth::False {
                return Ok(MappedChange::Skip);
            }
        }
        let row = if has_unchanged(&before) {
            self.partial(p, before)?
        } else {
            match self.full(p, before)? {
                Image::Row(r) => r,
                Image::Dropped | Image::Skipped => return Ok(MappedChange::Skip),
            }
        };
        if !self.key_known(&row) {
            return Err(self.missing_key());
        }
        Ok(MappedChange::Delete(row))
    }

    /// Runs the `AFTER_WRITE` scripts over rows the sink accepted.
    pub fn after_write<'r>(&self, rows: impl IntoIterator<Item = &'r Row>) -> Result<(), Error> {
        let Some(p) = self.plan.as_ref().filter(|p| !p.after_write.is_empty()) else {
            return Ok(());
        };
        for r in rows {
            script::observe(&p.after_write, r)?;
        }
        Ok(())
    }

    /// Whether [`MappedTable::after_write`] has anything to run.
    pub fn has_after_write(&self) -> bool {
        self.plan
            .as_ref()
            .is_some_and(|p| !p.after_write.is_empty())
    }

    fn stage(&self, scripts: &[BoundScript], row: &mut Row) -> Result<Flow, Error> {
        if scripts.is_empty() {
            return Ok(Flow::Keep);
        }
        script::run_stage(scripts, row)
    }

    /// Everything: scripts, rules, projection.
    fn full(&self, p: &Plan, mut row: Row) -> Result<Image, Error> {
        match self.stage(&p.before_transform, &mut row)? {
            Flow::Keep => {}
            Flow::Dropped => return Ok(Image::Dropped),
            Flow::Skipped => return Ok(Image::Skipped),
        }
        for r in &p.rules {
            r.apply(&mut row).map_err(|e| self.err(e))?;
        }
        match self.stage(&p.after_transform, &mut row)? {
            Flow::Keep => {}
            Flow::Dropped => return Ok(Image::Dropped),
            Flow::Skipped => return Ok(Image::Skipped),
        }
        let mut out = self.project(p, row)?;
        Ok(match self.stage(&p.before_write, &mut out)? {
            Flow::Keep => Image::Row(out),
            Flow::Dropped => Image::Dropped,
            Flow::Skipped => Image::Skipped,
        })
    }

    /// Rules and projection only (an image missing columns: scripts are
    /// not run on it).
    fn partial(&self, p: &Plan, mut row: Row) -> Result<Row, Error> {
        for r in &p.rules {
            r.apply(&mut row).map_err(|e| self.err(e))?;
        }
        self.project(p, row)
    }

    fn project(&self, p: &Plan, mut row: Row) -> Result<Row, Error> {
        if p.prefix {
            row.truncate(p.cols.len());
            return Ok(row);
        }
        let mut out = Vec::with_capacity(p.cols.len());
        for c in &p.cols {
            let mut v = std::mem::replace(&mut row[c.src], Value::Null);
            if let Some(t) = &c.conv {
                v = convert(v, t).map_err(|e| self.err(format!("column {}: {e}", c.name)))?;
            }
            if v.is_null() {
                if let Some(d) = &c.default {
                    v = d.clone();
                } else if c.not_null {
                    return Err(self.err(format!(
                        "column {} is NULL but column_mappings says nullable = false (give it a default_value)",
                        c.name
                    )));
                }
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// The target schema and the row plan of `m` for `src`.
fn build_plan(
    m: &Arc<CompiledMapping>,
    src: &Arc<TableSchema>,
) -> Result<(TableSchema, Plan), String> {
    let col_index = |name: &str| src.columns.iter().position(|c| c.name == name);
    for name in m
        .column_filter
        .iter()
        .chain(m.columns.iter().map(|c| &c.source))
    {
        if col_index(name).is_none() {
            return Err(format!("the source has no column {name}"));
        }
    }
    let mut work: Vec<Column> = src
        .columns
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            ty: c.data_type.clone(),
        })
        .collect();
    let filter = match &m.filter {
        Some(f) => {
            Some(expr::bind(f, &work, true).map_err(|e| format!("row_filter_condition: {e}"))?)
        }
        None => None,
    };
    let bind_phase = |phase: TriggerPhase, cols: &[Column]| -> Result<Vec<BoundScript>, String> {
        m.scripts
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| s.bind(cols))
            .collect()
    };
    let before_transform = bind_phase(TriggerPhase::BeforeTransform, &work)?;
    let rules = m
        .rules
        .iter()
        .map(|r| r.bind(&mut work))
        .collect::<Result<Vec<_>, _>>()?;
    let after_transform = bind_phase(TriggerPhase::AfterTransform, &work)?;

    // Projection.
    let key_rename = |s: &str| -> Option<&String> {
        let (sc, tc) = m.key.as_ref()?;
        sc.iter().position(|x| x == s).map(|i| &tc[i])
    };
    let mut cols = Vec::new();
    let mut columns = Vec::new();
    for (i, sc) in src.columns.iter().enumerate() {
        if !m.column_filter.is_empty() && !m.column_filter.contains(&sc.name) {
            continue;
        }
        let spec = m.columns.iter().find(|c| c.source == sc.name);
        if let Some(st) = spec.and_then(|s| s.source_type.as_ref()) {
            if !same_kind(st, &sc.data_type) {
                return Err(format!(
                    "column_mappings says {} is {}, but the source column is {}",
                    sc.name,
                    type_label(st),
                    type_label(&sc.data_type)
                ));
            }
        }
        let name = spec
            .and_then(|s| s.target.clone())
            .or_else(|| key_rename(&sc.name).cloned())
            .unwrap_or_else(|| sc.name.clone());
        let working = work[i].ty.clone();
        let target_ty = spec
            .and_then(|s| s.target_type.clone())
            .unwrap_or_else(|| working.clone());
        let conv = (target_ty != working).then(|| target_ty.clone());
        let default = match spec.and_then(|s| s.default.as_ref()) {
            Some(d) => Some(
                convert(Value::Text(d.0.clone()), &target_ty)
                    .map_err(|e| format!("column {name}: default_value does not fit: {e}"))?,
            ),
            None => None,
        };
        let nullable = spec.and_then(|s| s.nullable).unwrap_or(sc.nullable);
        let retyped = target_ty != sc.data_type;
        columns.push(ColumnSchema {
            name: name.clone(),
            data_type: target_ty,
            nullable,
            native_type: if retyped {
                String::new()
            } else {
                sc.native_type.clone()
            },
            // A retyped column's default text may not parse as the new type.
            default: if retyped { None } else { sc.default.clone() },
        });
        cols.push(ProjCol {
            src: i,
            name,
            conv,
            default,
            // Only an explicit `nullable = false` is checked: a source column
            // that is NOT NULL never delivers NULL.
            not_null: spec.and_then(|s| s.nullable) == Some(false),
        });
    }
    if cols.is_empty() {
        return Err("column_filter keeps no column".into());
    }
    let mut seen = std::collections::HashSet::new();
    for c in &columns {
        if !seen.insert(c.name.as_str()) {
            return Err(format!("two target columns are named {}", c.name));
        }
    }
    let key = match &m.key {
        Some((_, tc)) => tc
            .iter()
            .map(|t| {
                columns
                    .iter()
                    .position(|c| &c.name == t)
                    .ok_or_else(|| format!("primary_key_mapping: the target has no column {t}"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => src
            .key
            .iter()
            .map(|&k| {
                cols.iter().position(|c| c.src == k).ok_or_else(|| {
                    format!(
                        "column_filter leaves out key column {}: keep it, or set primary_key_mapping",
                        src.columns[k].name
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if key.iter().any(|&k| !src.key.contains(&cols[k].src)) {
        warn!(table = %src.id, mapping = %m.name,
            "primary_key_mapping uses columns outside the source key: deletes and key changes need full old images (PostgreSQL REPLICA IDENTITY FULL)");
    }
    let target = TableSchema {
        id: m.target.resolve(&src.id),
        columns,
        key,
        dialect: src.dialect,
    };
    let tcols: Vec<Column> = target
        .columns
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            ty: c.data_type.clone(),
        })
        .collect();
    let before_write = bind_phase(TriggerPhase::BeforeWrite, &tcols)?;
    let after_write = bind_phase(TriggerPhase::AfterWrite, &tcols)?;
    let prefix = cols
        .iter()
        .enumerate()
        .all(|(i, c)| c.src == i && c.conv.is_none() && c.default.is_none() && !c.not_null);
    let plan = Plan {
        filter,
        has_scripts: !m.scripts.is_empty(),
        before_transform,
        rules,
        after_transform,
        cols,
        prefix,
        before_write,
        after_write,
    };
    Ok((target, plan))
}

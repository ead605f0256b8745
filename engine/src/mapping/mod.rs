//! Table mappings: which source tables are replicated, to which target
//! table, and what happens to their rows on the way (everything a
//! `table_mappings` row and its `transform_scripts` say).
//!
//! Each [`MappingConfig`] is compiled once ([`CompiledMapping`]: patterns,
//! filter AST, rule parameters, scripts); when a source table's schema
//! arrives the mapping is compiled against it into a [`MappedTable`] (column
//! index maps, the bound filter, bound rules and scripts, the target
//! schema), cached per source schema `Arc`. Per row only index work remains.
//! Snapshot rows and streamed changes go through the same functions.
//!
//! **Routing.** With no mappings every table goes to the same-named target.
//! Otherwise a table is routed by the most specific mapping that takes it:
//! an exact name beats a pattern; among patterns, the first in the file
//! whose `exclude` list does not name the table. When that mapping has
//! `is_enabled = false` the table is not replicated.

mod compile;
pub mod dec;
pub mod expr;
mod plan;
mod policy;
pub mod script;
mod select;
pub mod transform;
pub mod types;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rows;

use std::collections::HashMap;
use std::sync::Arc;

pub use compile::{CompiledMapping, MappingStatsSnapshot};
pub use plan::{MappedChange, MappedTable};
pub use policy::{ConflictPolicy, UpsertMode};
pub use script::ScriptStatsSnapshot;
pub use select::{is_pattern, TablePattern, TargetName};

use crate::config::MappingConfig;
use crate::contracts::TableChanges;
use crate::error::Error;
use crate::schema::{TableId, TableSchema};

/// Which source tables a task replicates, for sources that must list them
/// (publications, binlog filters). Built from the mappings' names and
/// patterns only (cheap, no scripts compiled).
#[derive(Debug, Clone)]
pub struct TableSelection {
    entries: Arc<[SelEntry]>,
}

#[derive(Debug)]
struct SelEntry {
    source: TablePattern,
    excludes: Vec<TablePattern>,
    enabled: bool,
}

/// The index of the mapping that routes `id` (see the module documentation).
fn pick<T>(
    items: &[T],
    id: &TableId,
    exact: impl Fn(&T) -> Option<TableId>,
    takes: impl Fn(&T) -> bool,
) -> Option<usize> {
    items
        .iter()
        .position(|m| exact(m).as_ref() == Some(id))
        .or_else(|| items.iter().position(|m| exact(m).is_none() && takes(m)))
}

impl TableSelection {
    /// Parses the mappings' source names, patterns and exclude lists.
    pub fn new(mappings: &[MappingConfig]) -> Result<Self, Error> {
        let entries = mappings
            .iter()
            .map(|m| {
                let bad = |e: String| Error::Config(format!("mapping {}: {e}", m.source));
                Ok(SelEntry {
                    source: TablePattern::parse(&m.source, "public").map_err(bad)?,
                    excludes: m
                        .exclude
                        .iter()
                        .map(|e| TablePattern::parse(e, "public").map_err(bad))
                        .collect::<Result<_, _>>()?,
                    enabled: m.is_enabled,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self {
            entries: entries.into(),
        })
    }

    /// No mappings: every table the source offers.
    pub fn is_all(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tables, when every mapping names one table (no patterns): the
    /// enabled ones, sorted. `None` when patterns need the source's catalog
    /// (use [`TableSelection::select`]) or when there are no mappings.
    pub fn exact_tables(&self) -> Option<Vec<TableId>> {
        if self.is_all() {
            return None;
        }
        let mut out = Vec::new();
        for e in self.entries.iter() {
            let id = e.source.exact()?;
            if e.enabled {
                out.push(id);
            }
        }
        out.sort();
        out.dedup();
        Some(out)
    }

    /// Whether source table `id` is replicated.
    pub fn matches(&self, id: &TableId) -> bool {
        if self.is_all() {
            return true;
        }
        pick(
            &self.entries,
            id,
            |e| e.source.exact(),
            |e| e.source.matches(id) && !e.excludes.iter().any(|x| x.matches(id)),
        )
        .is_some_and(|i| self.entries[i].enabled)
    }

    /// The replicated tables among `available` (a source's catalog), sorted.
    pub fn select(&self, available: impl IntoIterator<Item = TableId>) -> Vec<TableId> {
        let mut out: Vec<TableId> = available.into_iter().filter(|t| self.matches(t)).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Routes source tables to [`MappedTable`]s. With no mappings every table
/// the source sends goes to the same-named target table.
pub struct TableRouter {
    mappings: Vec<Arc<CompiledMapping>>,
    /// A compile error of [`TableRouter::new`], reported by `route`.
    error: Option<String>,
    /// Cache keyed by the source schema's address; the source `Arc` is held
    /// so the address cannot be reused.
    mapped: HashMap<usize, (Arc<TableSchema>, Option<Arc<MappedTable>>)>,
    /// Mapped tables with `AFTER_WRITE` scripts, by target table.
    after_write: HashMap<TableId, Vec<Arc<MappedTable>>>,
}

impl TableRouter {
    /// Compiles the mappings. A mapping that does not compile (which
    /// `TaskConfig::validate` rejects first) makes every `route` fail with its error.
    pub fn new(mappings: &[MappingConfig]) -> Self {
        Self::try_new(mappings).unwrap_or_else(|e| {
            let mut r = Self::default();
            r.error = Some(e.to_string());
            r
        })
    }

    /// Compiles the mappings or says why one does not compile.
    pub fn try_new(mappings: &[MappingConfig]) -> Result<Self, Error> {
        let mappings = mappings
            .iter()
            .map(|m| {
                CompiledMapping::compile(m)
                    .map(Arc::new)
                    .map_err(Error::Config)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut r = Self::default();
        r.mappings = mappings;
        Ok(r)
    }

    /// The source tables to replicate, when every mapping names one table
    /// (`None` with no mappings, or with patterns: see [`TableSelection`]).
    pub fn source_tables(&self) -> Option<Vec<TableId>> {
        if self.mappings.is_empty() {
            return None;
        }
        let mut v = Vec::new();
        for m in &self.mappings {
            let id = m.exact()?;
            if m.enabled {
                v.push(id);
            }
        }
        v.sort();
        Some(v)
    }

    /// The mapping of rows of `source`, or `None` when the table is not replicated.
    pub fn route(&mut self, source: &Arc<TableSchema>) -> Result<Option<Arc<MappedTable>>, Error> {
        if let Some(e) = &self.error {
            return Err(Error::Config(e.clone()));
        }
        let addr = Arc::as_ptr(source) as usize;
        if let Some((_, mapped)) = self.mapped.get(&addr) {
            return Ok(mapped.clone());
        }
        let mapped = if self.mappings.is_empty() {
            Some(Arc::new(MappedTable::identity(source, None)))
        } else {
            let id = &source.id;
            match pick(&self.mappings, id, |m| m.exact(), |m| m.takes(id)) {
                Some(i) if self.mappings[i].enabled => {
                    Some(Arc::new(MappedTable::build(&self.mappings[i], source)?))
                }
                _ => None,
            }
        };
        if let Some(m) = mapped.as_ref().filter(|m| m.has_after_write()) {
            let list = self.after_write.entry(m.target.id.clone()).or_default();
            // A newer schema of the same source table replaces the older one.
            list.retain(|x| !same_mapping(x, m));
            list.push(m.clone());
        }
        if self.mapped.len() > 10_000 {
            self.mapped.clear();
        }
        self.mapped.insert(addr, (source.clone(), mapped.clone()));
        Ok(mapped)
    }

    /// Runs the `AFTER_WRITE` scripts of the mappings writing `changes.table`
    /// over the rows the sink just accepted (upserts and partial updates).
    pub fn after_write(&self, changes: &TableChanges) -> Result<(), Error> {
        let Some(list) = self.after_write.get(&changes.table.id) else {
            return Ok(());
        };
        for m in list {
            m.after_write(
                changes
                    .upserts
                    .iter()
                    .chain(changes.partial_updates.iter().map(|p| &p.row)),
            )?;
        }
        Ok(())
    }

    /// The target committed: the rows noted since the last commit are synced.
    pub fn committed(&self) {
        let now = chrono::Utc::now().timestamp_micros();
        for m in &self.mappings {
            m.stats.committed(now);
        }
    }

    /// Statistics of every enabled script (execution count, average time).
    pub fn script_stats(&self) -> Vec<ScriptStatsSnapshot> {
        self.stats_handle().scripts()
    }

    /// A handle that reads the mappings' and scripts' statistics while the
    /// router is in use by a pipeline (for the admin API or the metadata mirror).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.mappings.clone().into())
    }
}

/// Reads mapping and script statistics from anywhere (see
/// [`TableRouter::stats_handle`]).
#[derive(Clone)]
pub struct StatsHandle(Arc<[Arc<CompiledMapping>]>);

impl StatsHandle {
    /// Every mapping's `total_rows_synced` and `last_sync_time` now.
    pub fn mappings(&self) -> Vec<MappingStatsSnapshot> {
        self.0
            .iter()
            .map(|m| m.stats.snapshot(&m.name, m.mapping_id.as_deref()))
            .collect()
    }

    /// The statistics of every enabled script now.
    pub fn scripts(&self) -> Vec<ScriptStatsSnapshot> {
        self.0
            .iter()
            .flat_map(|m| m.scripts.iter().map(|s| s.snapshot()))
            .collect()
    }
}

impl Default for TableRouter {
    /// No mappings: every table to the same-named target.
    fn default() -> Self {
        Self {
            mappings: Vec::new(),
            error: None,
            mapped: HashMap::new(),
            after_write: HashMap::new(),
        }
    }
}

fn same_mapping(a: &MappedTable, b: &MappedTable) -> bool {
    match (&a.mapping, &b.mapping) {
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

impl Drop for TableRouter {
    fn drop(&mut self) {
        for m in self.stats_handle().mappings() {
            if m.total_rows_synced > 0 {
                tracing::info!(mapping = %m.mapping, total_rows_synced = m.total_rows_synced, "mapping statistics");
            }
        }
        for s in self
            .script_stats()
            .into_iter()
            .filter(|s| s.execution_count > 0)
        {
            tracing::info!(
                mapping = %s.mapping,
                script = %s.script_name,
                executions = s.execution_count,
                average_ms = s.average_execution_time_ms,
                errors = s.errors,
                dropped = s.records_dropped,
                skipped = s.records_skipped,
                "transform script statistics"
            );
        }
    }
}

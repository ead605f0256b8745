//! A [`MappingConfig`] checked and compiled once, before any schema is known.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::expr::{self, Expr};
use super::policy::ConflictPolicy;
use super::script::Script;
use super::select::{TablePattern, TargetName};
use super::transform::RuleSpec;
use super::types::{convert, parse_type_name};
use crate::config::{Literal, MappingConfig};
use crate::value::{DataType, Value};

/// One `column_mappings` entry, checked.
#[derive(Debug, Clone)]
pub(crate) struct ColumnSpec {
    pub source: String,
    pub target: Option<String>,
    pub source_type: Option<DataType>,
    pub target_type: Option<DataType>,
    pub nullable: Option<bool>,
    pub default: Option<Literal>,
}

/// Everything a mapping says, parsed and checked.
pub struct CompiledMapping {
    /// The source as written (names the mapping in messages).
    pub name: String,
    /// `table_mappings.mapping_id`, for mappings from the metadata database.
    pub mapping_id: Option<String>,
    /// `is_enabled`.
    pub enabled: bool,
    pub(crate) source: TablePattern,
    pub(crate) excludes: Vec<TablePattern>,
    pub(crate) target: TargetName,
    pub(crate) column_filter: Vec<String>,
    pub(crate) columns: Vec<ColumnSpec>,
    /// `(source_columns, target_columns)`.
    pub(crate) key: Option<(Vec<String>, Vec<String>)>,
    pub(crate) filter: Option<Expr>,
    pub(crate) rules: Vec<RuleSpec>,
    /// Enabled scripts by (phase, execution_order, file order).
    pub(crate) scripts: Vec<Arc<Script>>,
    /// `conflict_resolution`.
    pub policy: ConflictPolicy,
    /// The most rows of one table per write.
    pub batch_size: Option<usize>,
    /// The longest the mapping's rows wait for a commit.
    pub batch_timeout: Option<Duration>,
    /// Several source tables can land in one target table.
    pub many_to_one: bool,
    /// `total_rows_synced` and `last_sync_time`.
    pub(crate) stats: MappingStats,
}

/// Row counts of one mapping: pending until the target commits.
#[derive(Debug, Default)]
pub(crate) struct MappingStats {
    pending: AtomicU64,
    synced: AtomicU64,
    last_sync_us: AtomicI64,
}

impl MappingStats {
    pub(crate) fn note(&self, rows: u64) {
        self.pending.fetch_add(rows, Ordering::Relaxed);
    }

    /// The target committed: pending rows are synced.
    pub(crate) fn committed(&self, now_us: i64) {
        let n = self.pending.swap(0, Ordering::Relaxed);
        if n > 0 {
            self.synced.fetch_add(n, Ordering::Relaxed);
            self.last_sync_us.store(now_us, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, mapping: &str, mapping_id: Option<&str>) -> MappingStatsSnapshot {
        let last = self.last_sync_us.load(Ordering::Relaxed);
        MappingStatsSnapshot {
            mapping: mapping.to_string(),
            mapping_id: mapping_id.map(str::to_string),
            total_rows_synced: self.synced.load(Ordering::Relaxed),
            last_sync_time: (last != 0)
                .then(|| chrono::DateTime::from_timestamp_micros(last))
                .flatten(),
        }
    }
}

/// A mapping's row statistics (`table_mappings.total_rows_synced`,
/// `last_sync_time`): row changes written and committed through it.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingStatsSnapshot {
    /// The mapping's source, as written.
    pub mapping: String,
    /// `table_mappings.mapping_id`, when the mapping has one.
    pub mapping_id: Option<String>,
    /// Row changes committed in the target (snapshot rows included).
    pub total_rows_synced: u64,
    /// When rows of this mapping were last committed.
    pub last_sync_time: Option<chrono::DateTime<chrono::Utc>>,
}

fn no_dups<'a>(names: impl IntoIterator<Item = &'a String>, what: &str) -> Result<(), String> {
    let mut seen = HashSet::new();
    for n in names {
        if n.trim().is_empty() {
            return Err(format!("{what} has an empty column name"));
        }
        if !seen.insert(n.as_str()) {
            return Err(format!("{what} names column {n} twice"));
        }
    }
    Ok(())
}

impl CompiledMapping {
    /// Checks and compiles; errors start with `mapping <source>:`.
    pub fn compile(cfg: &MappingConfig) -> Result<Self, String> {
        let shown = cfg.source.replace("\0both", "");
        Self::compile_inner(cfg).map_err(|e| format!("mapping {shown}: {e}"))
    }

    fn compile_inner(cfg: &MappingConfig) -> Result<Self, String> {
        if cfg.source.contains("\0both") {
            return Err(
                "give either `source` or `source_schema` + `source_table`, not both".into(),
            );
        }
        if cfg.source.trim().is_empty() {
            return Err("a mapping needs `source` (or `source_schema` and `source_table`)".into());
        }
        if cfg.source.ends_with('.') {
            return Err("`source_table` is missing".into());
        }
        if cfg.target.as_deref().is_some_and(|t| t.contains("\0both")) {
            return Err(
                "give either `target` or `target_schema` + `target_table`, not both".into(),
            );
        }
        let source = TablePattern::parse(&cfg.source, "public")?;
        let excludes = cfg
            .exclude
            .iter()
            .map(|e| TablePattern::parse(e, "public").map_err(|m| format!("exclude: {m}")))
            .collect::<Result<Vec<_>, _>>()?;
        let target = TargetName::parse(cfg.target.as_deref(), &source)?;
        let many_to_one = target.many_to_one(&source);

        no_dups(&cfg.column_filter, "column_filter")?;
        no_dups(
            cfg.column_mappings.iter().map(|c| &c.source_column),
            "column_mappings",
        )?;
        let kept =
            |c: &str| cfg.column_filter.is_empty() || cfg.column_filter.iter().any(|f| f == c);
        let mut columns = Vec::with_capacity(cfg.column_mappings.len());
        for c in &cfg.column_mappings {
            let what = format!("column_mappings for {}", c.source_column);
            if !kept(&c.source_column) {
                return Err(format!("{what}: column_filter leaves this column out"));
            }
            if c.target_column
                .as_deref()
                .is_some_and(|t| t.trim().is_empty())
            {
                return Err(format!("{what}: target_column is empty"));
            }
            let ty = |t: &Option<String>, field: &str| -> Result<Option<DataType>, String> {
                t.as_deref()
                    .map(|t| parse_type_name(t).map_err(|m| format!("{what}: {field}: {m}")))
                    .transpose()
            };
            let target_type = ty(&c.target_type, "target_type")?;
            if let (Some(d), Some(t)) = (&c.default_value, &target_type) {
                convert(Value::Text(d.0.clone()), t)
                    .map_err(|e| format!("{what}: default_value does not fit target_type: {e}"))?;
            }
            columns.push(ColumnSpec {
                source: c.source_column.clone(),
                target: c.target_column.clone(),
                source_type: ty(&c.source_type, "source_type")?,
                target_type,
                nullable: c.nullable,
                default: c.default_value.clone(),
            });
        }
        no_dups(
            columns.iter().filter_map(|c| c.target.as_ref()),
            "column_mappings target_column",
        )?;
        let key = match &cfg.primary_key_mapping {
            None => None,
            Some(k) => {
                if k.source_columns.is_empty() || k.source_columns.len() != k.target_columns.len() {
                    return Err(
                        "primary_key_mapping needs as many target_columns as source_columns (at least one)".into(),
                    );
                }
                no_dups(&k.source_columns, "primary_key_mapping source_columns")?;
                no_dups(&k.target_columns, "primary_key_mapping target_columns")?;
                for (s, t) in k.source_columns.iter().zip(&k.target_columns) {
                    if !kept(s) {
                        return Err(format!(
                            "primary_key_mapping uses {s}, which column_filter leaves out"
                        ));
                    }
                    if let Some(r) = columns
                        .iter()
                        .find(|c| &c.source == s)
                        .and_then(|c| c.target.as_ref())
                    {
                        if r != t {
                            return Err(format!(
                                "primary_key_mapping maps {s} to {t}, but column_mappings renames it {r}"
                            ));
                        }
                    }
                }
                Some((k.source_columns.clone(), k.target_columns.clone()))
            }
        };
        let filter = match cfg.row_filter_condition.as_deref() {
            None => None,
            Some(text) => {
                let e = expr::parse_condition(text)
                    .map_err(|m| format!("row_filter_condition: {m}"))?;
                expr::check_condition(&e, &|_| expr::Ty::Any)
                    .map_err(|m| format!("row_filter_condition: {m}"))?;
                Some(e)
            }
        };
        let rules = cfg
            .transform_rules
            .iter()
            .map(RuleSpec::compile)
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = HashSet::new();
        let mut scripts = Vec::new();
        for (i, s) in cfg.scripts.iter().enumerate() {
            if !names.insert(s.script_name.as_str()) {
                return Err(format!("two scripts are named {:?}", s.script_name));
            }
            // Disabled scripts are still checked, so that enabling one cannot fail later.
            let compiled = Script::compile(s, &cfg.source)?;
            if s.is_enabled {
                scripts.push((s.trigger_phase, s.execution_order, i, Arc::new(compiled)));
            }
        }
        scripts.sort_by_key(|(phase, order, i, _)| (*phase, *order, *i));
        if cfg.batch_size == Some(0) {
            return Err("batch_size must be greater than 0".into());
        }
        if cfg.batch_timeout_ms == Some(0) {
            return Err("batch_timeout_ms must be greater than 0".into());
        }
        Ok(Self {
            name: cfg.source.clone(),
            mapping_id: cfg.mapping_id.clone(),
            enabled: cfg.is_enabled,
            source,
            excludes,
            target,
            column_filter: cfg.column_filter.clone(),
            columns,
            key,
            filter,
            rules,
            scripts: scripts.into_iter().map(|(_, _, _, s)| s).collect(),
            policy: cfg.conflict_resolution,
            batch_size: cfg.batch_size,
            batch_timeout: cfg.batch_timeout_ms.map(Duration::from_millis),
            many_to_one,
            stats: MappingStats::default(),
        })
    }

    /// Whether the mapping takes source table `id` (pattern and excludes).
    pub fn takes(&self, id: &crate::schema::TableId) -> bool {
        self.source.matches(id) && !self.excludes.iter().any(|e| e.matches(id))
    }

    /// The one source table, when `source` is not a pattern.
    pub fn exact(&self) -> Option<crate::schema::TableId> {
        self.source.exact()
    }

    /// Whether rows pass unchanged (only the table name may change).
    pub fn is_identity(&self) -> bool {
        self.filter.is_none()
            && self.rules.is_empty()
            && self.scripts.is_empty()
            && self.column_filter.is_empty()
            && self.columns.is_empty()
            && self.key.is_none()
    }
}

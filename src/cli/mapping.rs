//! `dbsync mapping create|list|show|update|delete` (mappings of one task).
//! A mapping is named by its source table as `list` shows it
//! (`schema.table`), or by its id.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use metastore::meta::model::{self, Mapping, Script};
use metastore::meta::ops::mapping::{self, MappingPatch, MappingSpec};
use serde_json::json;

use super::input;
use super::output::{self, fields, Table};
use super::{CmdResult, Ctx, Failure};

#[derive(Args)]
pub struct TaskScope {
    /// The tenant's code.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The task's code.
    #[arg(long)]
    task: String,
}

#[derive(Subcommand)]
pub enum Action {
    /// Add a mapping to a task (--source, or --file mapping.json with its scripts).
    Create {
        #[command(flatten)]
        scope: TaskScope,
        #[command(flatten)]
        fields: Fields,
        /// The whole mapping as JSON (table_mappings field names, optionally
        /// with "transform_scripts").
        #[arg(long, value_name = "FILE", conflicts_with = "source")]
        file: Option<PathBuf>,
    },
    /// List the task's mappings.
    List {
        #[command(flatten)]
        scope: TaskScope,
    },
    /// Show a mapping with its scripts.
    Show {
        #[command(flatten)]
        scope: TaskScope,
        /// Source table (schema.table) or id.
        mapping: String,
    },
    /// Change a mapping's fields (only those given).
    Update {
        #[command(flatten)]
        scope: TaskScope,
        /// Source table (schema.table) or id.
        mapping: String,
        #[command(flatten)]
        fields: Fields,
        /// The changes as JSON (table_mappings field names).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Soft-delete a mapping and its scripts.
    Delete {
        #[command(flatten)]
        scope: TaskScope,
        /// Source table (schema.table) or id.
        mapping: String,
    },
}

#[derive(Args)]
pub struct Fields {
    /// The source table, schema.table (a part may be a pattern such as orders_*).
    #[arg(long, value_name = "SCHEMA.TABLE")]
    source: Option<String>,
    /// The target table (default: the source's name).
    #[arg(long, value_name = "SCHEMA.TABLE")]
    target: Option<String>,
    /// JSON array of {"source_column", "target_column", "source_type", "target_type", "nullable", "default_value"}.
    #[arg(long, value_name = "JSON")]
    column_mappings: Option<String>,
    /// {"source_columns": [...], "target_columns": [...]}; null removes it.
    #[arg(long, value_name = "JSON")]
    primary_key_mapping: Option<String>,
    /// A SQL boolean expression over source columns ("" removes it).
    #[arg(long, value_name = "SQL")]
    row_filter: Option<String>,
    /// The columns to sync: a,b,c or a JSON array (empty: all).
    #[arg(long, value_name = "COLUMNS")]
    column_filter: Option<String>,
    /// JSON array of {"column", "transform_type", "params"}.
    #[arg(long, value_name = "JSON")]
    transform_rules: Option<String>,
    /// UPSERT, INSERT_ONLY, UPDATE_ONLY or IGNORE.
    #[arg(long, value_name = "POLICY")]
    conflict_resolution: Option<String>,
    #[arg(long)]
    batch_size: Option<i32>,
    #[arg(long)]
    batch_timeout_ms: Option<i32>,
    /// true or false.
    #[arg(long, value_name = "BOOL")]
    enabled: Option<bool>,
}

/// `schema.table` → (Some(schema), table); `table` → (None, table).
fn split_name(name: &str) -> (Option<String>, String) {
    match name.trim().split_once('.') {
        Some((s, t)) => (Some(s.to_string()), t.to_string()),
        None => (None, name.trim().to_string()),
    }
}

impl Fields {
    fn patch(self) -> Result<MappingPatch, Failure> {
        let json = |flag: &str, v: Option<String>| -> Result<_, Failure> {
            Ok(v.map(|v| input::json_arg(flag, &v).map(|j| j.0))
                .transpose()?)
        };
        // An empty schema clears it (a bare table name has none).
        let (source_schema, source_table) = match self.source.as_deref().map(split_name) {
            Some((s, t)) => (Some(s.unwrap_or_default()), Some(t)),
            None => (None, None),
        };
        let (target_schema, target_table) = match self.target.as_deref().map(split_name) {
            Some((s, t)) => (Some(s.unwrap_or_default()), Some(t)),
            None => (None, None),
        };
        Ok(MappingPatch {
            source_schema,
            source_table,
            target_schema,
            target_table,
            column_mappings: json("--column-mappings", self.column_mappings)?,
            primary_key_mapping: json("--primary-key-mapping", self.primary_key_mapping)?,
            row_filter_condition: self.row_filter,
            column_filter: self
                .column_filter
                .map(|v| input::list_arg("--column-filter", &v))
                .transpose()?,
            transform_rules: json("--transform-rules", self.transform_rules)?,
            conflict_resolution: self.conflict_resolution,
            batch_size: self.batch_size,
            batch_timeout_ms: self.batch_timeout_ms,
            is_enabled: self.enabled,
        })
    }

    fn spec(self) -> Result<MappingSpec, Failure> {
        let source = self.source.clone().ok_or_else(|| {
            Failure::from("give --source schema.table (or --file mapping.json)".to_string())
        })?;
        let (source_schema, source_table) = split_name(&source);
        let target = self.target.as_deref().map(split_name);
        let p = self.patch()?;
        Ok(MappingSpec {
            source_schema,
            source_table,
            target_schema: target.as_ref().and_then(|t| t.0.clone()),
            target_table: target.map(|t| t.1),
            column_mappings: p.column_mappings,
            primary_key_mapping: p.primary_key_mapping.filter(|v| !v.is_null()),
            row_filter_condition: p.row_filter_condition,
            column_filter: p.column_filter,
            transform_rules: p.transform_rules,
            conflict_resolution: p.conflict_resolution,
            batch_size: p.batch_size,
            batch_timeout_ms: p.batch_timeout_ms,
            is_enabled: p.is_enabled,
            transform_scripts: Vec::new(),
        })
    }
}

pub async fn run(ctx: &Ctx, action: Action) -> CmdResult {
    let mut conn = ctx.conn().await?;
    let c = &mut *conn;
    match action {
        Action::Create {
            scope,
            fields,
            file,
        } => {
            let spec = match file {
                Some(f) => input::file_arg::<MappingSpec>(&f)?,
                None => fields.spec()?,
            };
            let (m, s) =
                mapping::create(c, ctx.actor()?, &scope.tenant, &scope.task, &spec).await?;
            show(
                ctx,
                &m,
                &s,
                &format!(
                    "created mapping {} → {} in task {}",
                    m.source_table_fqn, m.target_table_fqn, scope.task
                ),
            );
        }
        Action::List { scope } => {
            let tenant = model::tenant_by_code(&*c, &scope.tenant).await?;
            let task = model::task_by_code(&*c, tenant.tenant_id, &scope.task).await?;
            let maps = model::mappings(&*c, task.task_id).await?;
            let mut scripts = Vec::with_capacity(maps.len());
            for m in &maps {
                scripts.push(model::scripts(&*c, m.mapping_id).await?.len());
            }
            if ctx.json {
                output::json(&maps);
                return Ok(());
            }
            let mut table = Table::new(&[
                "SOURCE",
                "TARGET",
                "ENABLED",
                "CONFLICT",
                "BATCH",
                "ROW FILTER",
                "COLUMNS",
                "RULES",
                "SCRIPTS",
                "ROWS",
                "ID",
            ]);
            for (m, n) in maps.iter().zip(scripts) {
                table.row(vec![
                    m.source_table_fqn.clone(),
                    m.target_table_fqn.clone(),
                    m.is_enabled.to_string(),
                    m.conflict_resolution.clone(),
                    m.batch_size.to_string(),
                    m.row_filter_condition
                        .as_deref()
                        .map_or_else(|| "-".into(), |f| output::short(f, 40)),
                    match output::count(&m.column_filter) {
                        0 => "all".into(),
                        n => n.to_string(),
                    },
                    output::count(&m.transform_rules).to_string(),
                    n.to_string(),
                    m.total_rows_synced.to_string(),
                    m.mapping_id.to_string(),
                ]);
            }
            table.print();
        }
        Action::Show {
            scope,
            mapping: sel,
        } => {
            let tenant = model::tenant_by_code(&*c, &scope.tenant).await?;
            let task = model::task_by_code(&*c, tenant.tenant_id, &scope.task).await?;
            let m = mapping::find(&*c, &task, &sel, false).await?;
            let s = model::scripts(&*c, m.mapping_id).await?;
            show(ctx, &m, &s, "");
        }
        Action::Update {
            scope,
            mapping: sel,
            fields,
            file,
        } => {
            let patch = match file {
                Some(f) => input::file_arg::<MappingPatch>(&f)?,
                None => fields.patch()?,
            };
            let (before, after) =
                mapping::update(c, ctx.actor()?, &scope.tenant, &scope.task, &sel, &patch).await?;
            let s = model::scripts(&*c, after.mapping_id).await?;
            let changed = super::tenant::changed_fields(&before, &after);
            show(
                ctx,
                &after,
                &s,
                &format!("updated mapping {}: {changed}", after.source_table_fqn),
            );
        }
        Action::Delete {
            scope,
            mapping: sel,
        } => {
            let m = mapping::delete(c, ctx.actor()?, &scope.tenant, &scope.task, &sel).await?;
            if ctx.json {
                output::json(&json!({"deleted": m}));
            } else {
                output::emit(&format!(
                    "deleted mapping {} of task {} (with its scripts)\n",
                    m.source_table_fqn, scope.task
                ));
            }
        }
    }
    Ok(())
}

fn show(ctx: &Ctx, m: &Mapping, scripts: &[Script], headline: &str) {
    if ctx.json {
        output::json(&json!({"mapping": m, "scripts": scripts}));
        return;
    }
    let mut text = String::new();
    if !headline.is_empty() {
        text.push_str(headline);
        text.push('\n');
    }
    text.push_str(&fields(&[
        ("source", m.source_table_fqn.clone()),
        ("target", m.target_table_fqn.clone()),
        ("id", m.mapping_id.to_string()),
        ("enabled", m.is_enabled.to_string()),
        ("conflict_resolution", m.conflict_resolution.clone()),
        ("row_filter_condition", output::opt(&m.row_filter_condition)),
        ("column_filter", output::compact(&m.column_filter)),
        ("column_mappings", output::compact(&m.column_mappings)),
        (
            "primary_key_mapping",
            m.primary_key_mapping
                .as_ref()
                .map_or_else(|| "-".into(), output::compact),
        ),
        ("transform_rules", output::compact(&m.transform_rules)),
        ("batch_size", m.batch_size.to_string()),
        ("batch_timeout_ms", m.batch_timeout_ms.to_string()),
        ("rows synced", m.total_rows_synced.to_string()),
        ("last sync", output::opt_time(&m.last_sync_time)),
        (
            "created",
            format!("{} by {}", output::time(&m.created_at), m.created_by),
        ),
        (
            "updated",
            format!("{} by {}", output::time(&m.updated_at), m.updated_by),
        ),
    ]));
    text.push_str(&format!(
        "\nScripts\n{}",
        super::script::table(scripts).render()
    ));
    output::emit(&text);
}

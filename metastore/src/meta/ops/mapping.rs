//! Table mappings of a task: create (with scripts), update, soft delete.
//!
//! Every mapping is checked as the daemon will load it: converted into
//! `engine::config::MappingConfig` with its scripts and validated (row
//! filter parsed, transform rules and their parameters checked, scripts
//! compiled), so a mistake fails here and not in the daemon.

use engine::config::MappingConfig;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio_postgres::{Client, GenericClient};
use uuid::Uuid;

use super::audit::{self, AuditEvent, Operation};
use super::script::{self, ScriptSpec};
use super::validate::{self as v, CONFLICT_RESOLUTIONS};
use super::{as_uuid, begin, commit, lock_task, lock_tenant, Actor};
use crate::meta::error::{MetaError, MetaResult};
use crate::meta::model::{Mapping, Script, Task, Tenant, MAPPING_COLUMNS, SCRIPT_COLUMNS};

/// A new mapping (`--file mapping.json`, flags, or inside a task file).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    #[serde(default)]
    pub source_schema: Option<String>,
    pub source_table: String,
    #[serde(default)]
    pub target_schema: Option<String>,
    /// Default: the source table (and its schema).
    #[serde(default)]
    pub target_table: Option<String>,
    #[serde(default)]
    pub column_mappings: Option<Json>,
    #[serde(default)]
    pub primary_key_mapping: Option<Json>,
    #[serde(default)]
    pub row_filter_condition: Option<String>,
    #[serde(default)]
    pub column_filter: Option<Json>,
    #[serde(default)]
    pub transform_rules: Option<Json>,
    #[serde(default)]
    pub conflict_resolution: Option<String>,
    #[serde(default)]
    pub batch_size: Option<i32>,
    #[serde(default)]
    pub batch_timeout_ms: Option<i32>,
    #[serde(default)]
    pub is_enabled: Option<bool>,
    #[serde(default, alias = "scripts")]
    pub transform_scripts: Vec<ScriptSpec>,
}

/// Changes to a mapping; `None` leaves a field as it is. An empty text
/// clears `row_filter_condition` or a schema; `primary_key_mapping: null`
/// removes the key mapping.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingPatch {
    #[serde(default)]
    pub source_schema: Option<String>,
    #[serde(default)]
    pub source_table: Option<String>,
    #[serde(default)]
    pub target_schema: Option<String>,
    #[serde(default)]
    pub target_table: Option<String>,
    #[serde(default)]
    pub column_mappings: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    pub primary_key_mapping: Option<Json>,
    #[serde(default)]
    pub row_filter_condition: Option<String>,
    #[serde(default)]
    pub column_filter: Option<Json>,
    #[serde(default)]
    pub transform_rules: Option<Json>,
    #[serde(default)]
    pub conflict_resolution: Option<String>,
    #[serde(default)]
    pub batch_size: Option<i32>,
    #[serde(default)]
    pub batch_timeout_ms: Option<i32>,
    #[serde(default)]
    pub is_enabled: Option<bool>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}

impl MappingPatch {
    pub fn is_empty(&self) -> bool {
        self.source_schema.is_none()
            && self.source_table.is_none()
            && self.target_schema.is_none()
            && self.target_table.is_none()
            && self.column_mappings.is_none()
            && self.primary_key_mapping.is_none()
            && self.row_filter_condition.is_none()
            && self.column_filter.is_none()
            && self.transform_rules.is_none()
            && self.conflict_resolution.is_none()
            && self.batch_size.is_none()
            && self.batch_timeout_ms.is_none()
            && self.is_enabled.is_none()
    }
}

fn fqn(schema: Option<&str>, table: &str) -> String {
    match schema {
        Some(s) => format!("{s}.{table}"),
        None => table.to_string(),
    }
}

/// The mapping (with its scripts) as the daemon reads it.
pub fn engine_config(m: &Mapping, scripts: &[Script]) -> MetaResult<MappingConfig> {
    let value = json!({
        "mapping_id": m.mapping_id.to_string(),
        "source_schema": m.source_schema,
        "source_table": m.source_table,
        "target_schema": m.target_schema,
        "target_table": m.target_table,
        "column_mappings": m.column_mappings,
        "primary_key_mapping": m.primary_key_mapping,
        "row_filter_condition": m.row_filter_condition,
        "column_filter": m.column_filter,
        "transform_rules": m.transform_rules,
        "conflict_resolution": m.conflict_resolution,
        "batch_size": m.batch_size,
        "batch_timeout_ms": m.batch_timeout_ms,
        "is_enabled": m.is_enabled,
        "transform_scripts": scripts.iter().map(script::engine_json).collect::<Vec<_>>(),
    });
    serde_json::from_value(value).map_err(|e| {
        MetaError::Invalid(format!(
            "mapping {}: {e}",
            fqn(m.source_schema.as_deref(), &m.source_table)
        ))
    })
}

/// Checks every field of `m` and validates it with its scripts as the
/// daemon would.
pub(crate) fn check(m: &mut Mapping, scripts: &[Script]) -> MetaResult<()> {
    m.source_schema = v::opt_text("source_schema", m.source_schema.as_deref(), 128)?;
    m.source_table = v::text("source_table", &m.source_table, 128)?;
    m.target_schema = v::opt_text("target_schema", m.target_schema.as_deref(), 128)?;
    m.target_table = v::text("target_table", &m.target_table, 128)?;
    m.source_table_fqn = fqn(m.source_schema.as_deref(), &m.source_table);
    m.target_table_fqn = fqn(m.target_schema.as_deref(), &m.target_table);
    v::array("column_mappings", &m.column_mappings)?;
    v::array("column_filter", &m.column_filter)?;
    v::array("transform_rules", &m.transform_rules)?;
    if m.primary_key_mapping.as_ref().is_some_and(Json::is_null) {
        m.primary_key_mapping = None;
    }
    if let Some(pk) = &m.primary_key_mapping {
        v::object("primary_key_mapping", pk)?;
    }
    m.row_filter_condition = v::opt_text(
        "row_filter_condition",
        m.row_filter_condition.as_deref(),
        10_000,
    )?;
    m.conflict_resolution = v::choice(
        "conflict_resolution",
        &m.conflict_resolution,
        CONFLICT_RESOLUTIONS,
    )?;
    v::int_range("batch_size", m.batch_size, 1, 1_000_000)?;
    v::int_range("batch_timeout_ms", m.batch_timeout_ms, 1, 3_600_000)?;
    engine_config(m, scripts)?
        .validate()
        .map_err(|e| MetaError::Invalid(format!("invalid mapping: {e}")))
}

/// Refuses a second live mapping of the same source table in a task.
async fn check_unique(c: &impl GenericClient, m: &Mapping) -> MetaResult<()> {
    let dup = c
        .query_opt(
            "SELECT 1 FROM table_mappings WHERE task_id = $1 AND deleted_at IS NULL \
             AND mapping_id <> $2 AND coalesce(source_schema, '') = coalesce($3, '') \
             AND source_table = $4",
            &[&m.task_id, &m.mapping_id, &m.source_schema, &m.source_table],
        )
        .await
        .map_err(|e| MetaError::query("read mappings", e))?;
    match dup {
        None => Ok(()),
        Some(_) => Err(MetaError::Conflict(format!(
            "source table {} is already mapped in this task (change that mapping with `dbsync mapping update`)",
            m.source_table_fqn
        ))),
    }
}

/// Inserts a mapping and its scripts into `task`, each with its audit row.
pub(crate) async fn insert(
    c: &impl GenericClient,
    actor: &Actor,
    tenant: &Tenant,
    task: &Task,
    spec: &MappingSpec,
) -> MetaResult<(Mapping, Vec<Script>)> {
    let now = chrono::Utc::now();
    let mut m = Mapping {
        mapping_id: Uuid::nil(),
        task_id: task.task_id,
        source_schema: spec.source_schema.clone(),
        source_table: spec.source_table.clone(),
        source_table_fqn: String::new(),
        target_schema: match &spec.target_table {
            Some(_) => spec.target_schema.clone(),
            None => spec.target_schema.clone().or(spec.source_schema.clone()),
        },
        target_table: spec
            .target_table
            .clone()
            .unwrap_or_else(|| spec.source_table.clone()),
        target_table_fqn: String::new(),
        column_mappings: spec.column_mappings.clone().unwrap_or_else(|| json!([])),
        primary_key_mapping: spec.primary_key_mapping.clone(),
        row_filter_condition: spec.row_filter_condition.clone(),
        column_filter: spec.column_filter.clone().unwrap_or_else(|| json!([])),
        transform_rules: spec.transform_rules.clone().unwrap_or_else(|| json!([])),
        conflict_resolution: spec
            .conflict_resolution
            .clone()
            .unwrap_or_else(|| "UPSERT".into()),
        batch_size: spec.batch_size.unwrap_or(1000),
        batch_timeout_ms: spec.batch_timeout_ms.unwrap_or(5000),
        is_enabled: spec.is_enabled.unwrap_or(true),
        total_rows_synced: 0,
        last_sync_time: None,
        created_at: now,
        created_by: actor.operator().into(),
        updated_at: now,
        updated_by: actor.operator().into(),
    };
    let mut scripts = Vec::with_capacity(spec.transform_scripts.len());
    for s in &spec.transform_scripts {
        let s = script::from_spec(s, Uuid::nil(), actor)?;
        script::check_name_free(&scripts, &s.script_name, Uuid::nil())?;
        scripts.push(s);
    }
    check(&mut m, &scripts)?;
    check_unique(c, &m).await?;
    let row = c
        .query_one(
            &format!(
                "INSERT INTO table_mappings (task_id, source_schema, source_table, target_schema, \
                 target_table, column_mappings, primary_key_mapping, row_filter_condition, \
                 column_filter, transform_rules, conflict_resolution, batch_size, \
                 batch_timeout_ms, is_enabled, created_by, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
                 RETURNING {MAPPING_COLUMNS}"
            ),
            &[
                &m.task_id,
                &m.source_schema,
                &m.source_table,
                &m.target_schema,
                &m.target_table,
                &m.column_mappings,
                &m.primary_key_mapping,
                &m.row_filter_condition,
                &m.column_filter,
                &m.transform_rules,
                &m.conflict_resolution,
                &m.batch_size,
                &m.batch_timeout_ms,
                &m.is_enabled,
                &actor.operator(),
            ],
        )
        .await
        .map_err(|e| MetaError::query("create the mapping", e))?;
    let created = Mapping::from_row(&row);
    let event = AuditEvent::new(
        Operation::CreateMapping,
        Some(tenant.tenant_id),
        Some(created.mapping_id),
        None::<&Mapping>,
        Some(&created),
    );
    audit::record(c, actor, &event, None).await?;
    let mut stored = Vec::with_capacity(scripts.len());
    for mut s in scripts {
        s.mapping_id = created.mapping_id;
        stored.push(script::insert_row(c, actor, tenant, &s).await?);
    }
    Ok((created, stored))
}

/// The live mapping of `task` named by its id or its source table
/// (`schema.table` as `dbsync mapping list` shows it), locked when `lock`.
pub async fn find(
    c: &impl GenericClient,
    task: &Task,
    selector: &str,
    lock: bool,
) -> MetaResult<Mapping> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    c.query_opt(
        &format!(
            "SELECT {MAPPING_COLUMNS} FROM table_mappings WHERE task_id = $1 \
             AND deleted_at IS NULL AND (mapping_id = $2 OR source_table_fqn = $3){lock}"
        ),
        &[&task.task_id, &as_uuid(selector), &selector.trim()],
    )
    .await
    .map_err(|e| MetaError::query("read a mapping", e))?
    .map(|r| Mapping::from_row(&r))
    .ok_or_else(|| {
        MetaError::NotFound(format!(
            "mapping {selector:?} (by source table or id) of task {:?}",
            task.task_code
        ))
    })
}

/// The live scripts of a mapping, locked, in execution order.
pub(crate) async fn lock_scripts(
    c: &impl GenericClient,
    mapping_id: Uuid,
) -> MetaResult<Vec<Script>> {
    let rows = c
        .query(
            &format!(
                "SELECT {SCRIPT_COLUMNS} FROM transform_scripts WHERE mapping_id = $1 \
                 AND deleted_at IS NULL ORDER BY execution_order, script_name FOR UPDATE"
            ),
            &[&mapping_id],
        )
        .await
        .map_err(|e| MetaError::query("read scripts", e))?;
    Ok(rows.iter().map(Script::from_row).collect())
}

/// Creates a mapping (with the scripts in `spec`) in a task.
pub async fn create(
    c: &mut Client,
    actor: &Actor,
    tenant_code: &str,
    task_code: &str,
    spec: &MappingSpec,
) -> MetaResult<(Mapping, Vec<Script>)> {
    let tx = begin(c, "create a mapping").await?;
    let tenant = lock_tenant(&tx, tenant_code).await?;
    let task = lock_task(&tx, &tenant, task_code).await?;
    let out = insert(&tx, actor, &tenant, &task, spec).await?;
    commit(tx, "create a mapping").await?;
    Ok(out)
}

/// Applies `patch` to a mapping; returns the row before and after.
pub async fn update(
    c: &mut Client,
    actor: &Actor,
    tenant_code: &str,
    task_code: &str,
    selector: &str,
    patch: &MappingPatch,
) -> MetaResult<(Mapping, Mapping)> {
    if patch.is_empty() {
        return Err(MetaError::Invalid(
            "nothing to change: give at least one field to update".into(),
        ));
    }
    let tx = begin(c, "update a mapping").await?;
    let tenant = lock_tenant(&tx, tenant_code).await?;
    let task = lock_task(&tx, &tenant, task_code).await?;
    let before = find(&tx, &task, selector, true).await?;
    let scripts = lock_scripts(&tx, before.mapping_id).await?;
    let mut m = before.clone();
    let text = |dst: &mut Option<String>, src: &Option<String>| {
        if let Some(s) = src {
            *dst = Some(s.clone());
        }
    };
    text(&mut m.source_schema, &patch.source_schema);
    text(&mut m.target_schema, &patch.target_schema);
    text(&mut m.row_filter_condition, &patch.row_filter_condition);
    if let Some(x) = &patch.source_table {
        m.source_table = x.clone();
    }
    if let Some(x) = &patch.target_table {
        m.target_table = x.clone();
    }
    let json_field = |dst: &mut Json, src: &Option<Json>| {
        if let Some(x) = src {
            *dst = x.clone();
        }
    };
    json_field(&mut m.column_mappings, &patch.column_mappings);
    json_field(&mut m.column_filter, &patch.column_filter);
    json_field(&mut m.transform_rules, &patch.transform_rules);
    if let Some(x) = &patch.primary_key_mapping {
        m.primary_key_mapping = Some(x.clone());
    }
    if let Some(x) = &patch.conflict_resolution {
        m.conflict_resolution = x.clone();
    }
    m.batch_size = patch.batch_size.unwrap_or(m.batch_size);
    m.batch_timeout_ms = patch.batch_timeout_ms.unwrap_or(m.batch_timeout_ms);
    m.is_enabled = patch.is_enabled.unwrap_or(m.is_enabled);
    check(&mut m, &scripts)?;
    check_unique(&tx, &m).await?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE table_mappings SET source_schema = $2, source_table = $3, \
                 target_schema = $4, target_table = $5, column_mappings = $6, \
                 primary_key_mapping = $7, row_filter_condition = $8, column_filter = $9, \
                 transform_rules = $10, conflict_resolution = $11, batch_size = $12, \
                 batch_timeout_ms = $13, is_enabled = $14, updated_by = $15, updated_at = now() \
                 WHERE mapping_id = $1 AND deleted_at IS NULL RETURNING {MAPPING_COLUMNS}"
            ),
            &[
                &m.mapping_id,
                &m.source_schema,
                &m.source_table,
                &m.target_schema,
                &m.target_table,
                &m.column_mappings,
                &m.primary_key_mapping,
                &m.row_filter_condition,
                &m.column_filter,
                &m.transform_rules,
                &m.conflict_resolution,
                &m.batch_size,
                &m.batch_timeout_ms,
                &m.is_enabled,
                &actor.operator(),
            ],
        )
        .await
        .map_err(|e| MetaError::query("update the mapping", e))?;
    let after = Mapping::from_row(&row);
    let event = AuditEvent::new(
        Operation::UpdateMapping,
        Some(tenant.tenant_id),
        Some(after.mapping_id),
        Some(&before),
        Some(&after),
    );
    audit::record(&tx, actor, &event, None).await?;
    commit(tx, "update a mapping").await?;
    Ok((before, after))
}

/// Soft-deletes a mapping and its scripts.
pub async fn delete(
    c: &mut Client,
    actor: &Actor,
    tenant_code: &str,
    task_code: &str,
    selector: &str,
) -> MetaResult<Mapping> {
    let tx = begin(c, "delete a mapping").await?;
    let tenant = lock_tenant(&tx, tenant_code).await?;
    let task = lock_task(&tx, &tenant, task_code).await?;
    let m = find(&tx, &task, selector, true).await?;
    let scripts = tx
        .query(
            "UPDATE transform_scripts SET deleted_at = now(), updated_at = now(), updated_by = $2 \
             WHERE mapping_id = $1 AND deleted_at IS NULL RETURNING script_name",
            &[&m.mapping_id, &actor.operator()],
        )
        .await
        .map_err(|e| MetaError::query("delete the mapping's scripts", e))?;
    tx.execute(
        "UPDATE table_mappings SET deleted_at = now(), updated_at = now(), updated_by = $2 \
         WHERE mapping_id = $1 AND deleted_at IS NULL",
        &[&m.mapping_id, &actor.operator()],
    )
    .await
    .map_err(|e| MetaError::query("delete the mapping", e))?;
    let mut event = AuditEvent::new(
        Operation::DeleteMapping,
        Some(tenant.tenant_id),
        Some(m.mapping_id),
        Some(&m),
        None::<&Mapping>,
    );
    let names: Vec<String> = scripts.iter().map(|r| r.get(0)).collect();
    event.details["cascaded_scripts"] = json!(names);
    audit::record(&tx, actor, &event, None).await?;
    commit(tx, "delete a mapping").await?;
    Ok(m)
}

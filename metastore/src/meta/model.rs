//! Rows of the metadata database as Rust types, and the read queries the
//! daemon and the CLI share. Every query filters `deleted_at IS NULL`.
//! Connection configs keep their encrypted passwords; `Serialize` (CLI
//! output, audit) redacts them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::error::{MetaError, MetaResult};

fn redacted<S: serde::Serializer>(v: &Json, s: S) -> Result<S::Ok, S::Error> {
    crate::secrets::redact_connection_config(v).serialize(s)
}

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub tenant_id: Uuid,
    pub tenant_name: String,
    pub tenant_code: String,
    pub description: Option<String>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    pub max_connectors: i32,
    pub max_tasks_per_connector: i32,
    pub max_throughput_tps: i32,
    pub status: String,
    pub config: Json,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

pub const TENANT_COLUMNS: &str = "tenant_id, tenant_name, tenant_code, description, contact_name, \
    contact_email, contact_phone, max_connectors, max_tasks_per_connector, max_throughput_tps, \
    status, config, created_at, created_by, updated_at, updated_by";

impl Tenant {
    pub fn from_row(r: &Row) -> Self {
        Self {
            tenant_id: r.get(0),
            tenant_name: r.get(1),
            tenant_code: r.get(2),
            description: r.get(3),
            contact_name: r.get(4),
            contact_email: r.get(5),
            contact_phone: r.get(6),
            max_connectors: r.get(7),
            max_tasks_per_connector: r.get(8),
            max_throughput_tps: r.get(9),
            status: r.get(10),
            config: r.get(11),
            created_at: r.get(12),
            created_by: r.get(13),
            updated_at: r.get(14),
            updated_by: r.get(15),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub task_id: Uuid,
    pub tenant_id: Uuid,
    pub task_name: String,
    pub task_code: String,
    pub description: Option<String>,
    pub source_db_type: String,
    pub target_db_type: String,
    #[serde(serialize_with = "redacted")]
    pub source_connection_config: Json,
    #[serde(serialize_with = "redacted")]
    pub target_connection_config: Json,
    pub connector_name: Option<String>,
    pub connector_config: Json,
    pub sync_mode: String,
    pub status: String,
    pub health_status: String,
    pub last_error: Option<String>,
    pub error_count: i32,
    pub total_records_synced: i64,
    pub last_sync_time: Option<DateTime<Utc>>,
    pub alert_config: Json,
    pub schedule_config: Option<Json>,
    pub offset_epoch: i32,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

pub const TASK_COLUMNS: &str = "task_id, tenant_id, task_name, task_code, description, \
    source_db_type, target_db_type, source_connection_config, target_connection_config, \
    connector_name, connector_config, sync_mode, status, health_status, last_error, error_count, \
    total_records_synced, last_sync_time, alert_config, schedule_config, offset_epoch, created_at, \
    created_by, updated_at, updated_by";

impl Task {
    pub fn from_row(r: &Row) -> Self {
        Self {
            task_id: r.get(0),
            tenant_id: r.get(1),
            task_name: r.get(2),
            task_code: r.get(3),
            description: r.get(4),
            source_db_type: r.get(5),
            target_db_type: r.get(6),
            source_connection_config: r.get(7),
            target_connection_config: r.get(8),
            connector_name: r.get(9),
            connector_config: r.get(10),
            sync_mode: r.get(11),
            status: r.get(12),
            health_status: r.get(13),
            last_error: r.get(14),
            error_count: r.get(15),
            total_records_synced: r.get(16),
            last_sync_time: r.get(17),
            alert_config: r.get(18),
            schedule_config: r.get(19),
            offset_epoch: r.get(20),
            created_at: r.get(21),
            created_by: r.get(22),
            updated_at: r.get(23),
            updated_by: r.get(24),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Mapping {
    pub mapping_id: Uuid,
    pub task_id: Uuid,
    pub source_schema: Option<String>,
    pub source_table: String,
    pub source_table_fqn: String,
    pub target_schema: Option<String>,
    pub target_table: String,
    pub target_table_fqn: String,
    pub column_mappings: Json,
    pub primary_key_mapping: Option<Json>,
    pub row_filter_condition: Option<String>,
    pub column_filter: Json,
    pub transform_rules: Json,
    pub conflict_resolution: String,
    pub batch_size: i32,
    pub batch_timeout_ms: i32,
    pub is_enabled: bool,
    pub total_rows_synced: i64,
    pub last_sync_time: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

pub const MAPPING_COLUMNS: &str = "mapping_id, task_id, source_schema, source_table, \
    source_table_fqn, target_schema, target_table, target_table_fqn, column_mappings, \
    primary_key_mapping, row_filter_condition, column_filter, transform_rules, \
    conflict_resolution, batch_size, batch_timeout_ms, is_enabled, total_rows_synced, \
    last_sync_time, created_at, created_by, updated_at, updated_by";

impl Mapping {
    pub fn from_row(r: &Row) -> Self {
        Self {
            mapping_id: r.get(0),
            task_id: r.get(1),
            source_schema: r.get(2),
            source_table: r.get(3),
            source_table_fqn: r.get(4),
            target_schema: r.get(5),
            target_table: r.get(6),
            target_table_fqn: r.get(7),
            column_mappings: r.get(8),
            primary_key_mapping: r.get(9),
            row_filter_condition: r.get(10),
            column_filter: r.get(11),
            transform_rules: r.get(12),
            conflict_resolution: r.get(13),
            batch_size: r.get(14),
            batch_timeout_ms: r.get(15),
            is_enabled: r.get(16),
            total_rows_synced: r.get(17),
            last_sync_time: r.get(18),
            created_at: r.get(19),
            created_by: r.get(20),
            updated_at: r.get(21),
            updated_by: r.get(22),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Script {
    pub script_id: Uuid,
    pub mapping_id: Uuid,
    pub script_name: String,
    pub script_type: String,
    pub trigger_phase: String,
    pub script_content: String,
    pub execution_order: i32,
    pub script_params: Json,
    pub is_enabled: bool,
    pub error_handling: String,
    pub timeout_ms: i32,
    pub execution_count: i64,
    pub last_execution_time: Option<DateTime<Utc>>,
    pub average_execution_time_ms: f64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

pub const SCRIPT_COLUMNS: &str = "script_id, mapping_id, script_name, script_type, \
    trigger_phase, script_content, execution_order, script_params, is_enabled, error_handling, \
    timeout_ms, execution_count, last_execution_time, average_execution_time_ms, created_at, \
    created_by, updated_at, updated_by";

impl Script {
    pub fn from_row(r: &Row) -> Self {
        Self {
            script_id: r.get(0),
            mapping_id: r.get(1),
            script_name: r.get(2),
            script_type: r.get(3),
            trigger_phase: r.get(4),
            script_content: r.get(5),
            execution_order: r.get(6),
            script_params: r.get(7),
            is_enabled: r.get(8),
            error_handling: r.get(9),
            timeout_ms: r.get(10),
            execution_count: r.get(11),
            last_execution_time: r.get(12),
            average_execution_time_ms: r.get(13),
            created_at: r.get(14),
            created_by: r.get(15),
            updated_at: r.get(16),
            updated_by: r.get(17),
        }
    }
}

/// A task with everything needed to run it.
#[derive(Debug, Clone)]
pub struct TaskBundle {
    pub tenant: Tenant,
    pub task: Task,
    /// Live mappings with their live scripts (ordered by execution_order).
    pub mappings: Vec<(Mapping, Vec<Script>)>,
}

pub async fn tenants(c: &impl GenericClient) -> MetaResult<Vec<Tenant>> {
    let rows = c
        .query(
            &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE deleted_at IS NULL ORDER BY tenant_code"),
            &[],
        )
        .await
        .map_err(|e| MetaError::query("list tenants", e))?;
    Ok(rows.iter().map(Tenant::from_row).collect())
}

pub async fn tenant_by_code(c: &impl GenericClient, code: &str) -> MetaResult<Tenant> {
    c.query_opt(
        &format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE tenant_code = $1 AND deleted_at IS NULL"
        ),
        &[&code],
    )
    .await
    .map_err(|e| MetaError::query("read a tenant", e))?
    .map(|r| Tenant::from_row(&r))
    .ok_or_else(|| MetaError::NotFound(format!("tenant {code:?}")))
}

/// Tasks, optionally of one tenant.
pub async fn tasks(c: &impl GenericClient, tenant_id: Option<Uuid>) -> MetaResult<Vec<Task>> {
    let rows = c
        .query(
            &format!(
                "SELECT {TASK_COLUMNS} FROM sync_tasks WHERE deleted_at IS NULL \
                 AND ($1::uuid IS NULL OR tenant_id = $1) ORDER BY tenant_id, task_code"
            ),
            &[&tenant_id],
        )
        .await
        .map_err(|e| MetaError::query("list tasks", e))?;
    Ok(rows.iter().map(Task::from_row).collect())
}

pub async fn task_by_code(c: &impl GenericClient, tenant_id: Uuid, code: &str) -> MetaResult<Task> {
    c.query_opt(
        &format!(
            "SELECT {TASK_COLUMNS} FROM sync_tasks \
             WHERE tenant_id = $1 AND task_code = $2 AND deleted_at IS NULL"
        ),
        &[&tenant_id, &code],
    )
    .await
    .map_err(|e| MetaError::query("read a task", e))?
    .map(|r| Task::from_row(&r))
    .ok_or_else(|| MetaError::NotFound(format!("task {code:?}")))
}

pub async fn mappings(c: &impl GenericClient, task_id: Uuid) -> MetaResult<Vec<Mapping>> {
    let rows = c
        .query(
            &format!(
                "SELECT {MAPPING_COLUMNS} FROM table_mappings WHERE task_id = $1 \
                 AND deleted_at IS NULL ORDER BY source_table_fqn"
            ),
            &[&task_id],
        )
        .await
        .map_err(|e| MetaError::query("list mappings", e))?;
    Ok(rows.iter().map(Mapping::from_row).collect())
}

pub async fn scripts(c: &impl GenericClient, mapping_id: Uuid) -> MetaResult<Vec<Script>> {
    let rows = c
        .query(
            &format!(
                "SELECT {SCRIPT_COLUMNS} FROM transform_scripts WHERE mapping_id = $1 \
                 AND deleted_at IS NULL ORDER BY execution_order, script_name"
            ),
            &[&mapping_id],
        )
        .await
        .map_err(|e| MetaError::query("list scripts", e))?;
    Ok(rows.iter().map(Script::from_row).collect())
}

/// Every live task with its tenant, mappings and scripts, read in one
/// repeatable-read snapshot so that a concurrent edit is seen whole or not at all.
pub async fn bundles(c: &mut tokio_postgres::Client) -> MetaResult<Vec<TaskBundle>> {
    let tx = c
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| MetaError::query("begin reading tasks", e))?;
    let tenants = tenants(&tx).await?;
    let tasks = tasks(&tx, None).await?;
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        let Some(tenant) = tenants
            .iter()
            .find(|t| t.tenant_id == task.tenant_id)
            .cloned()
        else {
            continue; // the tenant is soft-deleted: its tasks do not run
        };
        let mut maps = Vec::new();
        for m in mappings(&tx, task.task_id).await? {
            let s = scripts(&tx, m.mapping_id).await?;
            maps.push((m, s));
        }
        out.push(TaskBundle {
            tenant,
            task,
            mappings: maps,
        });
    }
    tx.commit()
        .await
        .map_err(|e| MetaError::query("finish reading tasks", e))?;
    Ok(out)
}

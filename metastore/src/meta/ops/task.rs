//! Sync tasks: create (with their mappings and scripts, within the tenant's
//! `max_connectors` quota), update, soft delete.
//!
//! Passwords in connection configs are sealed with the secret key before
//! they are stored ([`super::validate::connection_config`]); without a key a
//! password is refused. Rows and audit records show them as `***`.

use engine::config::Secret;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio_postgres::{Client, GenericClient};

use super::audit::{self, AuditEvent, Operation};
use super::mapping::{self, MappingSpec};
use super::validate::{self as v, DB_TYPES, SYNC_MODES};
use super::{begin, commit, lock_task, lock_tenant, refuse, Actor};
use crate::meta::error::{MetaError, MetaResult};
use crate::meta::model::{Mapping, Script, Task, Tenant, TASK_COLUMNS};
use crate::secrets::SecretKey;

/// A new task (`--file task.json`, or command-line flags), optionally with
/// its mappings and their scripts. No `Debug`: a connection config may hold a
/// plain-text password until it is sealed.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub task_code: String,
    pub task_name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub source_db_type: String,
    pub target_db_type: String,
    pub source_connection_config: Json,
    pub target_connection_config: Json,
    #[serde(default)]
    pub connector_name: Option<String>,
    #[serde(default)]
    pub connector_config: Option<Json>,
    #[serde(default)]
    pub sync_mode: Option<String>,
    #[serde(default)]
    pub alert_config: Option<Json>,
    #[serde(default)]
    pub schedule_config: Option<Json>,
    #[serde(default, alias = "table_mappings")]
    pub mappings: Vec<MappingSpec>,
    /// A password for the source connection config (from an environment
    /// variable or standard input, never a file or the command line).
    #[serde(skip)]
    pub source_password: Option<Secret>,
    #[serde(skip)]
    pub target_password: Option<Secret>,
}

/// Changes to a task; `None` leaves a field as it is. An empty description
/// or connector name clears it; `schedule_config: null` removes the schedule.
/// A connection config without `"password"` keeps the stored one.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    #[serde(default)]
    pub task_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub source_db_type: Option<String>,
    #[serde(default)]
    pub target_db_type: Option<String>,
    #[serde(default)]
    pub source_connection_config: Option<Json>,
    #[serde(default)]
    pub target_connection_config: Option<Json>,
    #[serde(default)]
    pub connector_name: Option<String>,
    #[serde(default)]
    pub connector_config: Option<Json>,
    #[serde(default)]
    pub sync_mode: Option<String>,
    #[serde(default)]
    pub alert_config: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    pub schedule_config: Option<Json>,
    #[serde(skip)]
    pub source_password: Option<Secret>,
    #[serde(skip)]
    pub target_password: Option<Secret>,
}

/// `Some(Json::Null)` for an explicit `null` (absent stays `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}

impl TaskPatch {
    pub fn is_empty(&self) -> bool {
        self.task_name.is_none()
            && self.description.is_none()
            && self.source_db_type.is_none()
            && self.target_db_type.is_none()
            && self.source_connection_config.is_none()
            && self.target_connection_config.is_none()
            && self.connector_name.is_none()
            && self.connector_config.is_none()
            && self.sync_mode.is_none()
            && self.alert_config.is_none()
            && self.schedule_config.is_none()
            && self.source_password.is_none()
            && self.target_password.is_none()
    }
}

/// The config to store: `new` (or the stored one), with `password` set when
/// given, sealed with `key`.
fn connection(
    field: &str,
    new: Option<&Json>,
    password: Option<&Secret>,
    previous: Option<&Json>,
    key: Option<&SecretKey>,
) -> MetaResult<Json> {
    let mut cfg = new.or(previous).cloned().unwrap_or_else(|| json!({}));
    if let (Some(pw), Some(map)) = (password, cfg.as_object_mut()) {
        map.insert("password".into(), Json::String(pw.expose().to_string()));
    }
    v::connection_config(field, cfg, previous, key)
}

/// `alert_config`: an object; the known thresholds must make sense.
fn check_alert_config(cfg: &Json) -> MetaResult<()> {
    v::object("alert_config", cfg)?;
    let bad = |m: &str| Err(MetaError::Invalid(format!("alert_config.{m}")));
    if let Some(x) = cfg.get("lag_threshold") {
        if !x.as_f64().is_some_and(|n| n >= 0.0) {
            return bad("lag_threshold must be a number >= 0");
        }
    }
    if let Some(x) = cfg.get("error_rate_threshold") {
        if !x.as_f64().is_some_and(|n| (0.0..=1.0).contains(&n)) {
            return bad("error_rate_threshold must be a number between 0 and 1 (0.01 = 1%)");
        }
    }
    if let Some(x) = cfg.get("alert_emails") {
        let ok = x.as_array().is_some_and(|a| {
            a.iter()
                .all(|e| e.as_str().is_some_and(|s| s.contains('@')))
        });
        if !ok {
            return bad("alert_emails must be an array of email addresses");
        }
    }
    Ok(())
}

/// Checks every field of `t`; returns the schedule's time zone to look up.
fn check(t: &mut Task) -> MetaResult<Option<String>> {
    t.task_name = v::text("task_name", &t.task_name, 200)?;
    t.description = v::opt_text("description", t.description.as_deref(), 10_000)?;
    t.source_db_type = v::choice("source_db_type", &t.source_db_type, DB_TYPES)?;
    t.target_db_type = v::choice("target_db_type", &t.target_db_type, DB_TYPES)?;
    t.sync_mode = v::choice("sync_mode", &t.sync_mode, SYNC_MODES)?;
    t.connector_name = v::opt_text("connector_name", t.connector_name.as_deref(), 200)?;
    v::object("connector_config", &t.connector_config)?;
    check_alert_config(&t.alert_config)?;
    if t.schedule_config.as_ref().is_some_and(Json::is_null) {
        t.schedule_config = None;
    }
    match &t.schedule_config {
        Some(s) => v::schedule(&t.sync_mode, s),
        None => Ok(None),
    }
}

/// Refuses a second live task with the same code or connector name.
async fn check_unique(c: &impl GenericClient, t: &Task) -> MetaResult<()> {
    let row = c
        .query_opt(
            "SELECT task_code, connector_name = $3 FROM sync_tasks WHERE deleted_at IS NULL \
             AND task_id <> $4 AND ((tenant_id = $1 AND task_code = $2) OR connector_name = $3) \
             LIMIT 1",
            &[&t.tenant_id, &t.task_code, &t.connector_name, &t.task_id],
        )
        .await
        .map_err(|e| MetaError::query("read tasks", e))?;
    match row {
        None => Ok(()),
        Some(r) if r.get::<_, Option<bool>>(1) == Some(true) => Err(MetaError::Conflict(format!(
            "connector_name {:?} is already used by task {:?}: choose another",
            t.connector_name.as_deref().unwrap_or(""),
            r.get::<_, String>(0)
        ))),
        Some(_) => Err(MetaError::Conflict(format!(
            "task {:?} already exists in this tenant (change it with `dbsync task update`)",
            t.task_code
        ))),
    }
}

/// Creates a task with its mappings and scripts in one transaction, each
/// with its audit row. Refused (and audited as FAILED) when the tenant
/// already has `max_connectors` live tasks.
pub async fn create(
    c: &mut Client,
    actor: &Actor,
    tenant_code: &str,
    spec: &TaskSpec,
    key: Option<&SecretKey>,
) -> MetaResult<(Task, Vec<(Mapping, Vec<Script>)>)> {
    let code = v::code("task_code", &spec.task_code, 100)?;
    let now = chrono::Utc::now();
    let mut t = Task {
        task_id: uuid::Uuid::nil(),
        tenant_id: uuid::Uuid::nil(),
        task_name: spec.task_name.clone(),
        task_code: code,
        description: spec.description.clone(),
        source_db_type: spec.source_db_type.clone(),
        target_db_type: spec.target_db_type.clone(),
        source_connection_config: connection(
            "source_connection_config",
            Some(&spec.source_connection_config),
            spec.source_password.as_ref(),
            None,
            key,
        )?,
        target_connection_config: connection(
            "target_connection_config",
            Some(&spec.target_connection_config),
            spec.target_password.as_ref(),
            None,
            key,
        )?,
        connector_name: spec.connector_name.clone(),
        connector_config: spec.connector_config.clone().unwrap_or_else(|| json!({})),
        sync_mode: spec
            .sync_mode
            .clone()
            .unwrap_or_else(|| "FULL_INCREMENTAL".into()),
        status: "CREATED".into(),
        health_status: "UNKNOWN".into(),
        last_error: None,
        error_count: 0,
        total_records_synced: 0,
        last_sync_time: None,
        alert_config: spec.alert_config.clone().unwrap_or_else(|| json!({})),
        schedule_config: spec.schedule_config.clone(),
        offset_epoch: 0,
        created_at: now,
        created_by: actor.operator().into(),
        updated_at: now,
        updated_by: actor.operator().into(),
    };
    let tz = check(&mut t)?;
    let tx = begin(c, "create a task").await?;
    let tenant = lock_tenant(&tx, tenant_code).await?;
    t.tenant_id = tenant.tenant_id;
    check_unique(&tx, &t).await?;
    if let Some(tz) = &tz {
        v::check_timezone(&tx, tz).await?;
    }
    let live: i64 = tx
        .query_one(
            "SELECT count(*) FROM sync_tasks WHERE tenant_id = $1 AND deleted_at IS NULL",
            &[&tenant.tenant_id],
        )
        .await
        .map_err(|e| MetaError::query("count the tenant's tasks", e))?
        .get(0);
    if live >= i64::from(tenant.max_connectors) {
        let mut event = AuditEvent::new(
            Operation::CreateTask,
            Some(tenant.tenant_id),
            None,
            None::<&Task>,
            Some(&t),
        );
        event.details["refused"] =
            json!({"live_tasks": live, "max_connectors": tenant.max_connectors});
        let err = MetaError::Quota(format!(
            "tenant {:?} already has {live} live task(s), its max_connectors is {}: delete a task \
             or raise the quota with `dbsync tenant update {} --max-connectors <n>`",
            tenant.tenant_code, tenant.max_connectors, tenant.tenant_code
        ));
        return Err(refuse(tx, actor, event, err).await);
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO sync_tasks (tenant_id, task_name, task_code, description, \
                 source_db_type, target_db_type, source_connection_config, \
                 target_connection_config, connector_name, connector_config, sync_mode, \
                 alert_config, schedule_config, created_by, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) \
                 RETURNING {TASK_COLUMNS}"
            ),
            &[
                &t.tenant_id,
                &t.task_name,
                &t.task_code,
                &t.description,
                &t.source_db_type,
                &t.target_db_type,
                &t.source_connection_config,
                &t.target_connection_config,
                &t.connector_name,
                &t.connector_config,
                &t.sync_mode,
                &t.alert_config,
                &t.schedule_config,
                &actor.operator(),
            ],
        )
        .await
        .map_err(|e| MetaError::query("create the task", e))?;
    let created = Task::from_row(&row);
    let event = AuditEvent::new(
        Operation::CreateTask,
        Some(tenant.tenant_id),
        Some(created.task_id),
        None::<&Task>,
        Some(&created),
    );
    audit::record(&tx, actor, &event, None).await?;
    let mut maps = Vec::with_capacity(spec.mappings.len());
    for m in &spec.mappings {
        maps.push(mapping::insert(&tx, actor, &tenant, &created, m).await?);
    }
    commit(tx, "create a task").await?;
    Ok((created, maps))
}

/// Applies `patch` to a task; returns the row before and after.
pub async fn update(
    c: &mut Client,
    actor: &Actor,
    tenant_code: &str,
    task_code: &str,
    patch: &TaskPatch,
    key: Option<&SecretKey>,
) -> MetaResult<(Task, Task)> {
    if patch.is_empty() {
        return Err(MetaError::Invalid(
            "nothing to change: give at least one field to update".into(),
        ));
    }
    let tx = begin(c, "update a task").await?;
    let tenant = lock_tenant(&tx, tenant_code).await?;
    let before = lock_task(&tx, &tenant, task_code).await?;
    let mut t = before.clone();
    if let Some(x) = &patch.task_name {
        t.task_name = x.clone();
    }
    if let Some(x) = &patch.description {
        t.description = Some(x.clone());
    }
    if let Some(x) = &patch.source_db_type {
        t.source_db_type = x.clone();
    }
    if let Some(x) = &patch.target_db_type {
        t.target_db_type = x.clone();
    }
    if let Some(x) = &patch.connector_name {
        t.connector_name = Some(x.clone());
    }
    if let Some(x) = &patch.connector_config {
        t.connector_config = x.clone();
    }
    if let Some(x) = &patch.sync_mode {
        t.sync_mode = x.clone();
    }
    if let Some(x) = &patch.alert_config {
        t.alert_config = x.clone();
    }
    if let Some(x) = &patch.schedule_config {
        t.schedule_config = Some(x.clone());
    }
    if patch.source_connection_config.is_some() || patch.source_password.is_some() {
        t.source_connection_config = connection(
            "source_connection_config",
            patch.source_connection_config.as_ref(),
            patch.source_password.as_ref(),
            Some(&before.source_connection_config),
            key,
        )?;
    }
    if patch.target_connection_config.is_some() || patch.target_password.is_some() {
        t.target_connection_config = connection(
            "target_connection_config",
            patch.target_connection_config.as_ref(),
            patch.target_password.as_ref(),
            Some(&before.target_connection_config),
            key,
        )?;
    }
    let tz = check(&mut t)?;
    check_unique(&tx, &t).await?;
    if let Some(tz) = &tz {
        v::check_timezone(&tx, tz).await?;
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE sync_tasks SET task_name = $2, description = $3, source_db_type = $4, \
                 target_db_type = $5, source_connection_config = $6, \
                 target_connection_config = $7, connector_name = $8, connector_config = $9, \
                 sync_mode = $10, alert_config = $11, schedule_config = $12, updated_by = $13, \
                 updated_at = now() WHERE task_id = $1 AND deleted_at IS NULL \
                 RETURNING {TASK_COLUMNS}"
            ),
            &[
                &t.task_id,
                &t.task_name,
                &t.description,
                &t.source_db_type,
                &t.target_db_type,
                &t.source_connection_config,
                &t.target_connection_config,
                &t.connector_name,
                &t.connector_config,
                &t.sync_mode,
                &t.alert_config,
                &t.schedule_config,
                &actor.operator(),
            ],
        )
        .await
        .map_err(|e| MetaError::query("update the task", e))?;
    let after = Task::from_row(&row);
    let mut event = AuditEvent::new(
        Operation::UpdateTask,
        Some(tenant.tenant_id),
        Some(after.task_id),
        Some(&before),
        Some(&after),
    );
    for (field, b, a) in [
        (
            "source_connection_config",
            &before.source_connection_config,
            &after.source_connection_config,
        ),
        (
            "target_connection_config",
            &before.target_connection_config,
            &after.target_connection_config,
        ),
    ] {
        if b.get("password") != a.get("password") {
            audit::mark_credential_changed(&mut event.details, field);
        }
    }
    audit::record(&tx, actor, &event, None).await?;
    commit(tx, "update a task").await?;
    Ok((before, after))
}

/// Soft-deletes a task with its live mappings and scripts (no audit row);
/// returns the mappings' source tables.
pub(crate) async fn soft_delete_rows(
    c: &impl GenericClient,
    actor: &Actor,
    task: &Task,
) -> MetaResult<Vec<String>> {
    let q = |e| MetaError::query("delete the task's rows", e);
    c.execute(
        "UPDATE transform_scripts SET deleted_at = now(), updated_at = now(), updated_by = $2 \
         WHERE deleted_at IS NULL AND mapping_id IN \
         (SELECT mapping_id FROM table_mappings WHERE task_id = $1 AND deleted_at IS NULL)",
        &[&task.task_id, &actor.operator()],
    )
    .await
    .map_err(q)?;
    let rows = c
        .query(
            "UPDATE table_mappings SET deleted_at = now(), updated_at = now(), updated_by = $2 \
             WHERE task_id = $1 AND deleted_at IS NULL RETURNING source_table_fqn",
            &[&task.task_id, &actor.operator()],
        )
        .await
        .map_err(q)?;
    c.execute(
        "UPDATE sync_tasks SET deleted_at = now(), updated_at = now(), updated_by = $2 \
         WHERE task_id = $1 AND deleted_at IS NULL",
        &[&task.task_id, &actor.operator()],
    )
    .await
    .map_err(q)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Soft-deletes a task (refused while it is RUNNING: stop it first).
pub async fn delete(
    c: &mut Client,
    actor: &Actor,
    tenant_code: &str,
    task_code: &str,
) -> MetaResult<Task> {
    let tx = begin(c, "delete a task").await?;
    let tenant: Tenant = lock_tenant(&tx, tenant_code).await?;
    let task = lock_task(&tx, &tenant, task_code).await?;
    let mut event = AuditEvent::new(
        Operation::DeleteTask,
        Some(tenant.tenant_id),
        Some(task.task_id),
        Some(&task),
        None::<&Task>,
    );
    if task.status == "RUNNING" {
        let err = MetaError::Conflict(format!(
            "task {task_code:?} is RUNNING: stop it first (`dbsync task stop {task_code} --tenant {tenant_code}`)"
        ));
        return Err(refuse(tx, actor, event, err).await);
    }
    let mappings = soft_delete_rows(&tx, actor, &task).await?;
    event.details["cascaded_mappings"] = json!(mappings);
    audit::record(&tx, actor, &event, None).await?;
    commit(tx, "delete a task").await?;
    Ok(task)
}

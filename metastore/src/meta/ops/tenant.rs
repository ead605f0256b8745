//! Tenants: create, update, soft delete (refused while the tenant has live
//! tasks unless cascading to them).

use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio_postgres::{Client, GenericClient};

use super::audit::{self, AuditEvent, Operation};
use super::validate::{self as v, TENANT_STATUSES};
use super::{begin, commit, lock_tenant, refuse, Actor};
use crate::meta::error::{MetaError, MetaResult};
use crate::meta::model::{Task, Tenant, TASK_COLUMNS, TENANT_COLUMNS};

/// Defaults of the schema (`tenants` quotas).
pub const DEFAULT_MAX_CONNECTORS: i32 = 10;
pub const DEFAULT_MAX_TASKS_PER_CONNECTOR: i32 = 8;
pub const DEFAULT_MAX_THROUGHPUT_TPS: i32 = 10_000;

/// A new tenant (`--file tenant.json` or command-line flags).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub tenant_code: String,
    pub tenant_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub contact_name: Option<String>,
    #[serde(default)]
    pub contact_email: Option<String>,
    #[serde(default)]
    pub contact_phone: Option<String>,
    #[serde(default)]
    pub max_connectors: Option<i32>,
    #[serde(default)]
    pub max_tasks_per_connector: Option<i32>,
    #[serde(default)]
    pub max_throughput_tps: Option<i32>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub config: Option<Json>,
}

/// Changes to a tenant; `None` leaves a field as it is, an empty text clears
/// an optional one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    #[serde(default)]
    pub tenant_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub contact_name: Option<String>,
    #[serde(default)]
    pub contact_email: Option<String>,
    #[serde(default)]
    pub contact_phone: Option<String>,
    #[serde(default)]
    pub max_connectors: Option<i32>,
    #[serde(default)]
    pub max_tasks_per_connector: Option<i32>,
    #[serde(default)]
    pub max_throughput_tps: Option<i32>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub config: Option<Json>,
}

impl TenantPatch {
    pub fn is_empty(&self) -> bool {
        self.tenant_name.is_none()
            && self.description.is_none()
            && self.contact_name.is_none()
            && self.contact_email.is_none()
            && self.contact_phone.is_none()
            && self.max_connectors.is_none()
            && self.max_tasks_per_connector.is_none()
            && self.max_throughput_tps.is_none()
            && self.status.is_none()
            && self.config.is_none()
    }
}

/// Checks every field of `t` (after defaults or a patch were applied).
fn check(t: &mut Tenant) -> MetaResult<()> {
    t.tenant_name = v::text("tenant_name", &t.tenant_name, 100)?;
    t.description = v::opt_text("description", t.description.as_deref(), 10_000)?;
    t.contact_name = v::opt_text("contact_name", t.contact_name.as_deref(), 100)?;
    t.contact_email = v::opt_text("contact_email", t.contact_email.as_deref(), 200)?;
    if let Some(e) = &t.contact_email {
        if !e.contains('@') || e.contains(char::is_whitespace) {
            return Err(MetaError::Invalid(format!(
                "contact_email {e:?} is not an email address"
            )));
        }
    }
    t.contact_phone = v::opt_text("contact_phone", t.contact_phone.as_deref(), 50)?;
    v::int_range("max_connectors", t.max_connectors, 0, 100_000)?;
    v::int_range(
        "max_tasks_per_connector",
        t.max_tasks_per_connector,
        1,
        10_000,
    )?;
    v::int_range("max_throughput_tps", t.max_throughput_tps, 1, i32::MAX)?;
    t.status = v::choice("status", &t.status, TENANT_STATUSES)?;
    v::object("config", &t.config)
}

pub async fn create(c: &mut Client, actor: &Actor, spec: &TenantSpec) -> MetaResult<Tenant> {
    let code = v::code("tenant_code", &spec.tenant_code, 50)?;
    let now = chrono::Utc::now();
    let mut t = Tenant {
        tenant_id: uuid::Uuid::nil(),
        tenant_name: spec.tenant_name.clone(),
        tenant_code: code.clone(),
        description: spec.description.clone(),
        contact_name: spec.contact_name.clone(),
        contact_email: spec.contact_email.clone(),
        contact_phone: spec.contact_phone.clone(),
        max_connectors: spec.max_connectors.unwrap_or(DEFAULT_MAX_CONNECTORS),
        max_tasks_per_connector: spec
            .max_tasks_per_connector
            .unwrap_or(DEFAULT_MAX_TASKS_PER_CONNECTOR),
        max_throughput_tps: spec
            .max_throughput_tps
            .unwrap_or(DEFAULT_MAX_THROUGHPUT_TPS),
        status: spec.status.clone().unwrap_or_else(|| "ACTIVE".into()),
        config: spec.config.clone().unwrap_or_else(|| json!({})),
        created_at: now,
        created_by: actor.operator().into(),
        updated_at: now,
        updated_by: actor.operator().into(),
    };
    check(&mut t)?;
    let tx = begin(c, "create a tenant").await?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM tenants WHERE tenant_code = $1 AND deleted_at IS NULL",
            &[&code],
        )
        .await
        .map_err(|e| MetaError::query("read tenants", e))?;
    if exists.is_some() {
        return Err(MetaError::Conflict(format!(
            "tenant {code:?} already exists (change it with `dbsync tenant update {code}`)"
        )));
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO tenants (tenant_code, tenant_name, description, contact_name, \
                 contact_email, contact_phone, max_connectors, max_tasks_per_connector, \
                 max_throughput_tps, status, config, created_by, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
                 RETURNING {TENANT_COLUMNS}"
            ),
            &[
                &t.tenant_code,
                &t.tenant_name,
                &t.description,
                &t.contact_name,
                &t.contact_email,
                &t.contact_phone,
                &t.max_connectors,
                &t.max_tasks_per_connector,
                &t.max_throughput_tps,
                &t.status,
                &t.config,
                &actor.operator(),
            ],
        )
        .await
        .map_err(|e| MetaError::query("create the tenant", e))?;
    let created = Tenant::from_row(&row);
    let event = AuditEvent::new(
        Operation::CreateTenant,
        Some(created.tenant_id),
        Some(created.tenant_id),
        None::<&Tenant>,
        Some(&created),
    );
    audit::record(&tx, actor, &event, None).await?;
    commit(tx, "create a tenant").await?;
    Ok(created)
}

pub async fn update(
    c: &mut Client,
    actor: &Actor,
    code: &str,
    patch: &TenantPatch,
) -> MetaResult<(Tenant, Tenant)> {
    if patch.is_empty() {
        return Err(MetaError::Invalid(
            "nothing to change: give at least one field to update".into(),
        ));
    }
    let tx = begin(c, "update a tenant").await?;
    let before = lock_tenant(&tx, code).await?;
    let mut t = before.clone();
    let set = |dst: &mut Option<String>, src: &Option<String>| {
        if let Some(s) = src {
            *dst = Some(s.clone());
        }
    };
    if let Some(n) = &patch.tenant_name {
        t.tenant_name = n.clone();
    }
    set(&mut t.description, &patch.description);
    set(&mut t.contact_name, &patch.contact_name);
    set(&mut t.contact_email, &patch.contact_email);
    set(&mut t.contact_phone, &patch.contact_phone);
    t.max_connectors = patch.max_connectors.unwrap_or(t.max_connectors);
    t.max_tasks_per_connector = patch
        .max_tasks_per_connector
        .unwrap_or(t.max_tasks_per_connector);
    t.max_throughput_tps = patch.max_throughput_tps.unwrap_or(t.max_throughput_tps);
    if let Some(s) = &patch.status {
        t.status = s.clone();
    }
    if let Some(cfg) = &patch.config {
        t.config = cfg.clone();
    }
    check(&mut t)?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE tenants SET tenant_name = $2, description = $3, contact_name = $4, \
                 contact_email = $5, contact_phone = $6, max_connectors = $7, \
                 max_tasks_per_connector = $8, max_throughput_tps = $9, status = $10, \
                 config = $11, updated_by = $12, updated_at = now() \
                 WHERE tenant_id = $1 AND deleted_at IS NULL RETURNING {TENANT_COLUMNS}"
            ),
            &[
                &t.tenant_id,
                &t.tenant_name,
                &t.description,
                &t.contact_name,
                &t.contact_email,
                &t.contact_phone,
                &t.max_connectors,
                &t.max_tasks_per_connector,
                &t.max_throughput_tps,
                &t.status,
                &t.config,
                &actor.operator(),
            ],
        )
        .await
        .map_err(|e| MetaError::query("update the tenant", e))?;
    let after = Tenant::from_row(&row);
    let event = AuditEvent::new(
        Operation::UpdateTenant,
        Some(after.tenant_id),
        Some(after.tenant_id),
        Some(&before),
        Some(&after),
    );
    audit::record(&tx, actor, &event, None).await?;
    commit(tx, "update a tenant").await?;
    Ok((before, after))
}

/// Live tasks of a tenant, locked.
async fn live_tasks(c: &impl GenericClient, tenant: &Tenant) -> MetaResult<Vec<Task>> {
    let rows = c
        .query(
            &format!(
                "SELECT {TASK_COLUMNS} FROM sync_tasks WHERE tenant_id = $1 \
                 AND deleted_at IS NULL ORDER BY task_code FOR UPDATE"
            ),
            &[&tenant.tenant_id],
        )
        .await
        .map_err(|e| MetaError::query("read the tenant's tasks", e))?;
    Ok(rows.iter().map(Task::from_row).collect())
}

/// Soft-deletes a tenant. With live tasks it is refused unless `cascade`,
/// which soft-deletes the tasks (with their mappings and scripts) too, each
/// with its own `DELETE_TASK` audit row. Returns the tenant and the tasks
/// deleted with it.
pub async fn delete(
    c: &mut Client,
    actor: &Actor,
    code: &str,
    cascade: bool,
) -> MetaResult<(Tenant, Vec<Task>)> {
    let tx = begin(c, "delete a tenant").await?;
    let tenant = lock_tenant(&tx, code).await?;
    let tasks = live_tasks(&tx, &tenant).await?;
    let mut event = AuditEvent::new(
        Operation::DeleteTenant,
        Some(tenant.tenant_id),
        Some(tenant.tenant_id),
        Some(&tenant),
        None::<&Tenant>,
    );
    if !tasks.is_empty() && !cascade {
        let codes: Vec<&str> = tasks.iter().map(|t| t.task_code.as_str()).collect();
        let err = MetaError::Conflict(format!(
            "tenant {code:?} still has {} live task(s) ({}): delete them first, or pass --cascade \
             to delete them with the tenant",
            tasks.len(),
            codes.join(", ")
        ));
        return Err(refuse(tx, actor, event, err).await);
    }
    for task in &tasks {
        super::task::soft_delete_rows(&tx, actor, task).await?;
        let e = AuditEvent::new(
            Operation::DeleteTask,
            Some(tenant.tenant_id),
            Some(task.task_id),
            Some(task),
            None::<&Task>,
        );
        audit::record(&tx, actor, &e, None).await?;
    }
    tx.execute(
        "UPDATE tenants SET deleted_at = now(), updated_at = now(), updated_by = $2 \
         WHERE tenant_id = $1 AND deleted_at IS NULL",
        &[&tenant.tenant_id, &actor.operator()],
    )
    .await
    .map_err(|e| MetaError::query("delete the tenant", e))?;
    let deleted: Vec<&str> = tasks.iter().map(|t| t.task_code.as_str()).collect();
    event.details["cascaded_tasks"] = json!(deleted);
    audit::record(&tx, actor, &event, None).await?;
    commit(tx, "delete a tenant").await?;
    Ok((tenant, tasks))
}

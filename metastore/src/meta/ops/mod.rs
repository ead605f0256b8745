//! Write operations on the metadata database, as the operator CLI performs
//! them: tenants, tasks, mappings, scripts, task status changes, offset
//! resets and alert handling.
//!
//! Every change runs in one transaction together with its `audit_logs` row
//! (`before`, `after` and `changes`, with passwords redacted), so a change is
//! never visible without its audit record. An operation refused because of
//! the state it found (a quota, an illegal status change) commits a `FAILED`
//! audit row with the reason instead, and changes nothing else. Input errors
//! found before the database is read (a bad field) are not audited.
//!
//! Rows are located among live rows only (`deleted_at IS NULL`) and locked
//! (`FOR UPDATE`) before they are checked, so two operators acting at once
//! are serialized. Every statement is parameterized.

pub mod alert;
pub mod audit;
pub mod fleet;
pub mod lifecycle;
pub mod mapping;
pub mod script;
pub mod task;
pub mod tenant;
pub mod validate;

#[cfg(test)]
mod tests;

use tokio_postgres::{Client, GenericClient, Transaction};
use uuid::Uuid;

use super::error::{MetaError, MetaResult};
use super::model::{Task, Tenant, TASK_COLUMNS, TENANT_COLUMNS};

pub use audit::{AuditEvent, Operation};

/// Who performs an operation: recorded as `created_by`/`updated_by` and in
/// the audit row (`operator`, `user_agent`).
#[derive(Debug, Clone)]
pub struct Actor {
    operator: String,
    user_agent: String,
}

impl Actor {
    /// `operator` is a person's or a service's name (1 to 100 characters);
    /// `user_agent` names the client, e.g. `dbsync-cli/0.1.0`.
    pub fn new(operator: &str, user_agent: &str) -> MetaResult<Self> {
        let operator = operator.trim();
        if operator.is_empty() || operator.chars().count() > 100 {
            return Err(MetaError::Invalid(
                "the operator name must be 1 to 100 characters (set --operator)".into(),
            ));
        }
        let user_agent: String = user_agent.chars().take(300).collect();
        Ok(Self {
            operator: operator.to_string(),
            user_agent,
        })
    }

    pub fn operator(&self) -> &str {
        &self.operator
    }

    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }
}

pub(crate) async fn begin<'a>(c: &'a mut Client, what: &str) -> MetaResult<Transaction<'a>> {
    c.transaction()
        .await
        .map_err(|e| MetaError::query(format!("begin: {what}"), e))
}

pub(crate) async fn commit(tx: Transaction<'_>, what: &str) -> MetaResult<()> {
    tx.commit()
        .await
        .map_err(|e| MetaError::query(format!("commit: {what}"), e))
}

/// Records a refused operation as a `FAILED` audit row, commits that row
/// and returns the refusal. Call it only before `tx` has changed anything
/// (it commits whatever `tx` holds).
pub(crate) async fn refuse(
    tx: Transaction<'_>,
    actor: &Actor,
    event: AuditEvent,
    err: MetaError,
) -> MetaError {
    let message = err.to_string();
    let recorded = match audit::record(&tx, actor, &event, Some(&message)).await {
        Ok(()) => commit(tx, "record a refused operation").await,
        Err(e) => Err(e),
    };
    match recorded {
        Ok(()) => err,
        Err(audit_err) => MetaError::Invalid(format!(
            "{message} (the refusal could not be written to audit_logs: {audit_err})"
        )),
    }
}

/// The live tenant with `code`, locked against concurrent changes.
pub(crate) async fn lock_tenant(c: &impl GenericClient, code: &str) -> MetaResult<Tenant> {
    c.query_opt(
        &format!(
            "SELECT {TENANT_COLUMNS} FROM tenants \
             WHERE tenant_code = $1 AND deleted_at IS NULL FOR UPDATE"
        ),
        &[&code],
    )
    .await
    .map_err(|e| MetaError::query("read a tenant", e))?
    .map(|r| Tenant::from_row(&r))
    .ok_or_else(|| tenant_not_found(code))
}

pub(crate) fn tenant_not_found(code: &str) -> MetaError {
    MetaError::NotFound(format!("tenant {code:?}"))
}

/// The live task `code` of a tenant, locked against concurrent changes.
pub(crate) async fn lock_task(
    c: &impl GenericClient,
    tenant: &Tenant,
    code: &str,
) -> MetaResult<Task> {
    c.query_opt(
        &format!(
            "SELECT {TASK_COLUMNS} FROM sync_tasks \
             WHERE tenant_id = $1 AND task_code = $2 AND deleted_at IS NULL FOR UPDATE"
        ),
        &[&tenant.tenant_id, &code],
    )
    .await
    .map_err(|e| MetaError::query("read a task", e))?
    .map(|r| Task::from_row(&r))
    .ok_or_else(|| task_not_found(&tenant.tenant_code, code))
}

pub(crate) fn task_not_found(tenant_code: &str, code: &str) -> MetaError {
    MetaError::NotFound(format!("task {code:?} in tenant {tenant_code:?}"))
}

/// A row locator given on the command line: a UUID, or a name.
pub(crate) fn as_uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s.trim()).ok()
}

//! Alerts (`alert_records`) as operators see and handle them: list,
//! acknowledge (OPEN → ACKNOWLEDGED), resolve (OPEN or ACKNOWLEDGED →
//! RESOLVED, with a note). Alerts of soft-deleted tasks or tenants are
//! hidden.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;
use tokio_postgres::{Client, GenericClient, Row};
use uuid::Uuid;

use super::audit::{self, AuditEvent, Operation};
use super::{begin, commit, refuse, Actor};
use crate::meta::error::{MetaError, MetaResult};

/// An alert with the code of its task and tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub alert_id: Uuid,
    pub task_id: Option<Uuid>,
    pub task_code: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub tenant_code: Option<String>,
    pub alert_type: String,
    pub alert_level: String,
    pub alert_title: String,
    pub alert_message: Option<String>,
    pub alert_details: Json,
    pub status: String,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
    pub triggered_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT a.alert_id, a.task_id, t.task_code, n.tenant_id, n.tenant_code, \
    a.alert_type, a.alert_level, a.alert_title, a.alert_message, a.alert_details, a.status, \
    a.acknowledged_at, a.acknowledged_by, a.resolved_at, a.resolved_by, a.resolution_note, \
    a.triggered_at \
    FROM alert_records a \
    LEFT JOIN sync_tasks t ON t.task_id = a.task_id \
    LEFT JOIN tenants n ON n.tenant_id = t.tenant_id \
    WHERE (a.task_id IS NULL OR (t.deleted_at IS NULL AND n.deleted_at IS NULL))";

impl Alert {
    fn from_row(r: &Row) -> Self {
        Self {
            alert_id: r.get(0),
            task_id: r.get(1),
            task_code: r.get(2),
            tenant_id: r.get(3),
            tenant_code: r.get(4),
            alert_type: r.get(5),
            alert_level: r.get(6),
            alert_title: r.get(7),
            alert_message: r.get(8),
            alert_details: r.get(9),
            status: r.get(10),
            acknowledged_at: r.get(11),
            acknowledged_by: r.get(12),
            resolved_at: r.get(13),
            resolved_by: r.get(14),
            resolution_note: r.get(15),
            triggered_at: r.get(16),
        }
    }
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// OPEN, ACKNOWLEDGED, RESOLVED or IGNORED.
    pub status: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub task_id: Option<Uuid>,
    /// At most this many, newest first.
    pub limit: i64,
}

pub async fn list(c: &impl GenericClient, f: &AlertFilter) -> MetaResult<Vec<Alert>> {
    let rows = c
        .query(
            &format!(
                "{SELECT} AND ($1::text IS NULL OR a.status = $1) \
                 AND ($2::uuid IS NULL OR n.tenant_id = $2) \
                 AND ($3::uuid IS NULL OR a.task_id = $3) \
                 ORDER BY a.triggered_at DESC, a.alert_id LIMIT $4"
            ),
            &[&f.status, &f.tenant_id, &f.task_id, &f.limit.max(1)],
        )
        .await
        .map_err(|e| MetaError::query("list alerts", e))?;
    Ok(rows.iter().map(Alert::from_row).collect())
}

pub async fn get(c: &impl GenericClient, alert_id: Uuid, lock: bool) -> MetaResult<Alert> {
    let lock = if lock { " FOR UPDATE OF a" } else { "" };
    c.query_opt(&format!("{SELECT} AND a.alert_id = $1{lock}"), &[&alert_id])
        .await
        .map_err(|e| MetaError::query("read an alert", e))?
        .map(|r| Alert::from_row(&r))
        .ok_or_else(|| MetaError::NotFound(format!("alert {alert_id}")))
}

/// Acknowledges an OPEN alert.
pub async fn acknowledge(
    c: &mut Client,
    actor: &Actor,
    alert_id: Uuid,
) -> MetaResult<(Alert, Alert)> {
    change(c, actor, alert_id, Operation::AckAlert, None).await
}

/// Resolves an OPEN or ACKNOWLEDGED alert, with an optional note.
pub async fn resolve(
    c: &mut Client,
    actor: &Actor,
    alert_id: Uuid,
    note: Option<&str>,
) -> MetaResult<(Alert, Alert)> {
    change(c, actor, alert_id, Operation::ResolveAlert, note).await
}

async fn change(
    c: &mut Client,
    actor: &Actor,
    alert_id: Uuid,
    op: Operation,
    note: Option<&str>,
) -> MetaResult<(Alert, Alert)> {
    let note = super::validate::opt_text("resolution_note", note, 10_000)?;
    let tx = begin(c, "change an alert").await?;
    let before = get(&tx, alert_id, true).await?;
    let event = |after: Option<&Alert>| {
        AuditEvent::new(op, before.tenant_id, Some(alert_id), Some(&before), after)
    };
    let refusal = match (op, before.status.as_str()) {
        (Operation::AckAlert, "OPEN") | (Operation::ResolveAlert, "OPEN" | "ACKNOWLEDGED") => None,
        (Operation::AckAlert, "ACKNOWLEDGED") => Some(format!(
            "alert {alert_id} is already ACKNOWLEDGED (by {})",
            before.acknowledged_by.as_deref().unwrap_or("?")
        )),
        (_, status) => Some(format!(
            "alert {alert_id} is {status}: only {} alerts can be {}",
            if op == Operation::AckAlert {
                "OPEN"
            } else {
                "OPEN or ACKNOWLEDGED"
            },
            if op == Operation::AckAlert {
                "acknowledged"
            } else {
                "resolved"
            }
        )),
    };
    if let Some(m) = refusal {
        return Err(refuse(tx, actor, event(None), MetaError::Conflict(m)).await);
    }
    let sql = if op == Operation::AckAlert {
        "UPDATE alert_records SET status = 'ACKNOWLEDGED', acknowledged_at = now(), \
         acknowledged_by = $2, updated_at = now(), updated_by = $2 WHERE alert_id = $1"
    } else {
        "UPDATE alert_records SET status = 'RESOLVED', resolved_at = now(), resolved_by = $2, \
         resolution_note = $3, updated_at = now(), updated_by = $2 WHERE alert_id = $1"
    };
    let operator = actor.operator();
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = if op == Operation::AckAlert {
        vec![&alert_id, &operator]
    } else {
        vec![&alert_id, &operator, &note]
    };
    tx.execute(sql, &params)
        .await
        .map_err(|e| MetaError::query("change the alert", e))?;
    let after = get(&tx, alert_id, false).await?;
    audit::record(&tx, actor, &event(Some(&after)), None).await?;
    commit(tx, "change an alert").await?;
    Ok((before, after))
}

//! `audit_logs`: one row per change (or refused change), written in the
//! change's own transaction, and the query behind `dbsync audit list`.
//!
//! `operation_details` holds `before` and `after` (the rows as JSON, `null`
//! for a create or a delete) and `changes` (`{field: {"from", "to"}}` for the
//! fields that differ). Every password-like field is replaced by `***` at any
//! depth before the row is written; a replaced password shows as
//! `"credential_changed": true` in its field's change, never as a value.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value as Json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::Actor;
use crate::meta::error::{MetaError, MetaResult};
use crate::secrets::redact_connection_config;

/// What was done; stored as `operation_type`, and decides `resource_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateTenant,
    UpdateTenant,
    DeleteTenant,
    CreateTask,
    UpdateTask,
    DeleteTask,
    StartTask,
    PauseTask,
    ResumeTask,
    StopTask,
    ResetOffset,
    CreateMapping,
    UpdateMapping,
    DeleteMapping,
    CreateScript,
    UpdateScript,
    DeleteScript,
    AckAlert,
    ResolveAlert,
    /// The daemon recorded a definite failure.
    FailTask,
    /// The daemon finished a FULL_ONLY copy.
    CompleteTask,
    /// The daemon started a scheduled re-run.
    ScheduledRun,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        use Operation::*;
        match self {
            CreateTenant => "CREATE_TENANT",
            UpdateTenant => "UPDATE_TENANT",
            DeleteTenant => "DELETE_TENANT",
            CreateTask => "CREATE_TASK",
            UpdateTask => "UPDATE_TASK",
            DeleteTask => "DELETE_TASK",
            StartTask => "START_TASK",
            PauseTask => "PAUSE_TASK",
            ResumeTask => "RESUME_TASK",
            StopTask => "STOP_TASK",
            ResetOffset => "RESET_OFFSET",
            CreateMapping => "CREATE_MAPPING",
            UpdateMapping => "UPDATE_MAPPING",
            DeleteMapping => "DELETE_MAPPING",
            CreateScript => "CREATE_SCRIPT",
            UpdateScript => "UPDATE_SCRIPT",
            DeleteScript => "DELETE_SCRIPT",
            AckAlert => "ACK_ALERT",
            ResolveAlert => "RESOLVE_ALERT",
            FailTask => "FAIL_TASK",
            CompleteTask => "COMPLETE_TASK",
            ScheduledRun => "SCHEDULED_RUN",
        }
    }

    pub fn resource_type(self) -> &'static str {
        use Operation::*;
        match self {
            CreateTenant | UpdateTenant | DeleteTenant => "TENANT",
            CreateTask | UpdateTask | DeleteTask | StartTask | PauseTask | ResumeTask
            | StopTask | FailTask | CompleteTask | ScheduledRun => "TASK",
            ResetOffset => "OFFSET",
            CreateMapping | UpdateMapping | DeleteMapping => "MAPPING",
            CreateScript | UpdateScript | DeleteScript => "SCRIPT",
            AckAlert | ResolveAlert => "ALERT",
        }
    }
}

/// One audit row to write.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub operation: Operation,
    pub tenant_id: Option<Uuid>,
    pub resource_id: Option<Uuid>,
    /// `{before, after, changes}` (see [`details`]).
    pub details: Json,
}

impl AuditEvent {
    /// An event whose details are computed from the row before and after.
    pub fn new(
        operation: Operation,
        tenant_id: Option<Uuid>,
        resource_id: Option<Uuid>,
        before: Option<&impl Serialize>,
        after: Option<&impl Serialize>,
    ) -> Self {
        Self {
            operation,
            tenant_id,
            resource_id,
            details: details(before, after),
        }
    }
}

/// Writes one audit row: `SUCCESS` without `failure`, else `FAILED` with it
/// as `error_message`. `operator_ip` is the client address the database sees
/// (NULL over a Unix socket); `operated_at` is the clock time, so the rows of
/// one transaction keep their order.
pub async fn record(
    c: &impl GenericClient,
    actor: &Actor,
    event: &AuditEvent,
    failure: Option<&str>,
) -> MetaResult<()> {
    let status = if failure.is_some() {
        "FAILED"
    } else {
        "SUCCESS"
    };
    let details = redact_connection_config(&event.details);
    c.execute(
        "INSERT INTO audit_logs (tenant_id, operation_type, resource_type, resource_id, \
         operation_details, status, error_message, operator, operator_ip, user_agent, \
         operated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, host(inet_client_addr()), $9, clock_timestamp())",
        &[
            &event.tenant_id,
            &event.operation.as_str(),
            &event.operation.resource_type(),
            &event.resource_id,
            &details,
            &status,
            &failure,
            &actor.operator(),
            &actor.user_agent(),
        ],
    )
    .await
    .map_err(|e| MetaError::query("write the audit row", e))?;
    Ok(())
}

/// Fields that change on every write and say nothing about the change.
const NOT_CHANGES: &[&str] = &["updated_at", "updated_by"];

/// `{before, after, changes}` of a row, redacted.
pub fn details(before: Option<&impl Serialize>, after: Option<&impl Serialize>) -> Json {
    // The rows serialize infallibly (structs and JSON values only).
    let before = before.map_or(Json::Null, |b| {
        serde_json::to_value(b).unwrap_or(Json::Null)
    });
    let after = after.map_or(Json::Null, |a| {
        serde_json::to_value(a).unwrap_or(Json::Null)
    });
    let changes = changes(&before, &after);
    redact_connection_config(&json!({"before": before, "after": after, "changes": changes}))
}

/// The fields of two JSON objects that differ, as `{field: {from, to}}`
/// (empty unless both are objects).
pub fn changes(before: &Json, after: &Json) -> Json {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else {
        return Json::Object(Map::new());
    };
    let mut out = Map::new();
    for (k, av) in a {
        if NOT_CHANGES.contains(&k.as_str()) {
            continue;
        }
        let bv = b.get(k).unwrap_or(&Json::Null);
        if bv != av {
            out.insert(k.clone(), json!({"from": bv, "to": av}));
        }
    }
    for (k, bv) in b {
        if !a.contains_key(k) && !NOT_CHANGES.contains(&k.as_str()) {
            out.insert(k.clone(), json!({"from": bv, "to": Json::Null}));
        }
    }
    Json::Object(out)
}

/// Marks `field`'s change as a replaced credential (the values themselves
/// are redacted and may look equal).
pub fn mark_credential_changed(details: &mut Json, field: &str) {
    let from = details["before"].get(field).cloned().unwrap_or(Json::Null);
    let to = details["after"].get(field).cloned().unwrap_or(Json::Null);
    let Some(changes) = details.get_mut("changes").and_then(Json::as_object_mut) else {
        return;
    };
    let entry = changes
        .entry(field.to_string())
        .or_insert_with(|| json!({"from": from, "to": to}));
    if let Some(obj) = entry.as_object_mut() {
        obj.insert("credential_changed".into(), Json::Bool(true));
    }
}

/// A row of `audit_logs`, with the tenant's code.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLog {
    pub log_id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub tenant_code: Option<String>,
    pub operation_type: String,
    pub resource_type: String,
    pub resource_id: Option<Uuid>,
    pub operation_details: Json,
    pub status: String,
    pub error_message: Option<String>,
    pub operator: String,
    pub operator_ip: Option<String>,
    pub user_agent: Option<String>,
    pub operated_at: DateTime<Utc>,
}

/// Which audit rows to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub resource_id: Option<Uuid>,
    pub operation_type: Option<String>,
    /// At most this many rows, newest first.
    pub limit: i64,
}

/// Audit rows, newest first. (`audit_logs` has no soft delete; a deleted
/// tenant's code is still shown for its rows.)
pub async fn list(c: &impl GenericClient, f: &AuditFilter) -> MetaResult<Vec<AuditLog>> {
    let rows = c
        .query(
            "SELECT a.log_id, a.tenant_id, t.tenant_code, a.operation_type, a.resource_type, \
             a.resource_id, a.operation_details, a.status, a.error_message, a.operator, \
             a.operator_ip, a.user_agent, a.operated_at \
             FROM audit_logs a LEFT JOIN tenants t ON t.tenant_id = a.tenant_id \
             WHERE ($1::uuid IS NULL OR a.tenant_id = $1) \
               AND ($2::timestamptz IS NULL OR a.operated_at >= $2) \
               AND ($3::uuid IS NULL OR a.resource_id = $3) \
               AND ($4::text IS NULL OR a.operation_type = $4) \
             ORDER BY a.operated_at DESC, a.log_id LIMIT $5",
            &[
                &f.tenant_id,
                &f.since,
                &f.resource_id,
                &f.operation_type,
                &f.limit.max(1),
            ],
        )
        .await
        .map_err(|e| MetaError::query("list audit rows", e))?;
    Ok(rows
        .iter()
        .map(|r| AuditLog {
            log_id: r.get(0),
            tenant_id: r.get(1),
            tenant_code: r.get(2),
            operation_type: r.get(3),
            resource_type: r.get(4),
            resource_id: r.get(5),
            operation_details: r.get(6),
            status: r.get(7),
            error_message: r.get(8),
            operator: r.get(9),
            operator_ip: r.get(10),
            user_agent: r.get(11),
            operated_at: r.get(12),
        })
        .collect())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn details_list_changed_fields_and_redact_passwords() {
        let before = json!({"a": 1, "b": "x", "updated_at": "t1",
            "conn": {"host": "h", "password": "enc:v1:AAAA"}});
        let after = json!({"a": 2, "b": "x", "updated_at": "t2",
            "conn": {"host": "h2", "password": "hunter2"}});
        let d = details(Some(&before), Some(&after));
        let text = d.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("enc:v1"),
            "{text}"
        );
        assert_eq!(d["changes"]["a"], json!({"from": 1, "to": 2}));
        assert!(d["changes"].get("b").is_none() && d["changes"].get("updated_at").is_none());
        assert_eq!(d["changes"]["conn"]["to"]["host"], "h2");
        assert_eq!(d["before"]["conn"]["password"], "***");
        let created = details(None::<&Json>, Some(&after));
        assert_eq!(created["before"], Json::Null);
        assert_eq!(created["changes"], json!({}));
    }

    #[test]
    fn a_replaced_credential_is_flagged_without_a_value() {
        let v = json!({"conn": {"host": "h", "password": "p1"}});
        let w = json!({"conn": {"host": "h", "password": "p2"}});
        let mut d = details(Some(&v), Some(&w));
        mark_credential_changed(&mut d, "conn");
        assert_eq!(d["changes"]["conn"]["credential_changed"], true);
        assert!(!d.to_string().contains("p1") && !d.to_string().contains("p2"));
    }

    #[test]
    fn every_operation_has_an_allowed_resource_type() {
        use Operation::*;
        for op in [
            CreateTenant,
            UpdateTenant,
            DeleteTenant,
            CreateTask,
            UpdateTask,
            DeleteTask,
            StartTask,
            PauseTask,
            ResumeTask,
            StopTask,
            ResetOffset,
            CreateMapping,
            UpdateMapping,
            DeleteMapping,
            CreateScript,
            UpdateScript,
            DeleteScript,
            AckAlert,
            ResolveAlert,
            FailTask,
            CompleteTask,
            ScheduledRun,
        ] {
            assert!(["TASK", "MAPPING", "SCRIPT", "TENANT", "ALERT", "OFFSET"]
                .contains(&op.resource_type()));
            assert!(op.as_str().contains('_'));
        }
    }
}

//! What the daemon records about the tasks it runs: status changes it makes
//! itself (FAILED, COMPLETED, scheduled re-runs) and errors.
//!
//! Every update is conditional on the status the daemon saw, so an
//! operator's concurrent change (pause, stop) is never overwritten.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::error::{MetaError, MetaResult};
use super::ops::audit::{self, AuditEvent, Operation};
use super::ops::Actor;

/// Who the daemon's changes are recorded as.
pub const DAEMON_OPERATOR: &str = "dbsync-daemon";

/// Adds `n` errors and the last error message.
pub async fn record_errors(
    c: &impl GenericClient,
    task_id: Uuid,
    n: i32,
    last_error: &str,
) -> MetaResult<()> {
    c.execute(
        "UPDATE sync_tasks SET error_count = error_count + $2, last_error = $3
          WHERE task_id = $1 AND deleted_at IS NULL",
        &[&task_id, &n, &last_error],
    )
    .await
    .map_err(|e| MetaError::query("record a task error", e))?;
    Ok(())
}

/// Moves a RUNNING task to FAILED or COMPLETED (or any `to`), with an
/// audit row; false when the task was no longer RUNNING.
pub async fn finish(
    c: &mut tokio_postgres::Client,
    task_id: Uuid,
    to: &str,
    last_error: Option<&str>,
) -> MetaResult<bool> {
    let tx = c
        .transaction()
        .await
        .map_err(|e| MetaError::query("begin a task status change", e))?;
    let row = tx
        .query_opt(
            "UPDATE sync_tasks SET status = $2, last_error = COALESCE($3, last_error),
                    updated_at = now(), updated_by = $4
              WHERE task_id = $1 AND status = 'RUNNING' AND deleted_at IS NULL
             RETURNING tenant_id",
            &[&task_id, &to, &last_error, &DAEMON_OPERATOR],
        )
        .await
        .map_err(|e| MetaError::query("change a task status", e))?;
    let Some(row) = row else {
        return Ok(false);
    };
    let tenant: Uuid = row.get(0);
    let operation = match to {
        "FAILED" => Operation::FailTask,
        "COMPLETED" => Operation::CompleteTask,
        _ => Operation::UpdateTask,
    };
    let mut details = serde_json::json!({
        "before": {"status": "RUNNING"},
        "after": {"status": to},
        "changes": ["status"],
    });
    if let Some(e) = last_error {
        details["last_error"] = serde_json::json!(e);
    }
    audit_daemon_change(&tx, operation, tenant, task_id, details).await?;
    tx.commit()
        .await
        .map_err(|e| MetaError::query("commit a task status change", e))?;
    Ok(true)
}

/// A scheduled re-run of a COMPLETED FULL_ONLY task: a fresh copy (new
/// offset epoch) and status RUNNING, done by exactly one daemon (the update
/// is conditional on the completion time the daemon saw).
pub async fn start_scheduled_run(
    c: &mut tokio_postgres::Client,
    task_id: Uuid,
    seen_updated_at: DateTime<Utc>,
    fire_time: DateTime<Utc>,
) -> MetaResult<bool> {
    let tx = c
        .transaction()
        .await
        .map_err(|e| MetaError::query("begin a scheduled run", e))?;
    let row = tx
        .query_opt(
            "UPDATE sync_tasks SET status = 'RUNNING', offset_epoch = offset_epoch + 1,
                    last_error = NULL, updated_at = now(), updated_by = $3
              WHERE task_id = $1 AND status = 'COMPLETED' AND updated_at = $2
                AND deleted_at IS NULL
             RETURNING tenant_id, offset_epoch",
            &[&task_id, &seen_updated_at, &DAEMON_OPERATOR],
        )
        .await
        .map_err(|e| MetaError::query("start a scheduled run", e))?;
    let Some(row) = row else {
        return Ok(false);
    };
    let tenant: Uuid = row.get(0);
    let epoch: i32 = row.get(1);
    tx.execute("DELETE FROM sync_offsets WHERE task_id = $1", &[&task_id])
        .await
        .map_err(|e| MetaError::query("clear offsets for a scheduled run", e))?;
    let details = serde_json::json!({
        "before": {"status": "COMPLETED"},
        "after": {"status": "RUNNING", "offset_epoch": epoch},
        "changes": ["status", "offset_epoch"],
        "schedule_fire_time": fire_time,
    });
    audit_daemon_change(&tx, Operation::ScheduledRun, tenant, task_id, details).await?;
    tx.commit()
        .await
        .map_err(|e| MetaError::query("commit a scheduled run", e))?;
    Ok(true)
}

/// The audit row of a change the daemon made itself.
async fn audit_daemon_change(
    c: &impl GenericClient,
    operation: Operation,
    tenant: Uuid,
    task_id: Uuid,
    details: serde_json::Value,
) -> MetaResult<()> {
    let actor = Actor::new(
        DAEMON_OPERATOR,
        concat!("dbsync/", env!("CARGO_PKG_VERSION")),
    )?;
    let event = AuditEvent {
        operation,
        tenant_id: Some(tenant),
        resource_id: Some(task_id),
        details,
    };
    audit::record(c, &actor, &event, None).await
}

/// Adds rows synced through a mapping since the last call.
pub async fn add_mapping_stats(
    c: &impl GenericClient,
    mapping_id: Uuid,
    rows: i64,
    last_sync: Option<DateTime<Utc>>,
) -> MetaResult<()> {
    c.execute(
        "UPDATE table_mappings SET total_rows_synced = total_rows_synced + $2,
                last_sync_time = GREATEST(last_sync_time, $3)
          WHERE mapping_id = $1 AND deleted_at IS NULL",
        &[&mapping_id, &rows, &last_sync],
    )
    .await
    .map_err(|e| MetaError::query("record mapping statistics", e))?;
    Ok(())
}

/// Adds `runs` executions taking `total_ms` in all to a script's statistics
/// (the average is kept over every run).
pub async fn add_script_stats(
    c: &impl GenericClient,
    script_id: Uuid,
    runs: i64,
    total_ms: f64,
    last_run: Option<DateTime<Utc>>,
) -> MetaResult<()> {
    c.execute(
        "UPDATE transform_scripts SET
                average_execution_time_ms = (average_execution_time_ms * execution_count + $3)
                                            / NULLIF(execution_count + $2, 0),
                execution_count = execution_count + $2,
                last_execution_time = GREATEST(last_execution_time, $4)
          WHERE script_id = $1 AND deleted_at IS NULL",
        &[&script_id, &runs, &total_ms, &last_run],
    )
    .await
    .map_err(|e| MetaError::query("record script statistics", e))?;
    Ok(())
}

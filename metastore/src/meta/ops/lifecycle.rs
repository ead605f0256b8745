//! Task status changes asked by operators (the daemons follow them) and the
//! offset reset.
//!
//! | command | from | to |
//! |---|---|---|
//! | start  | CREATED, STOPPED, FAILED, COMPLETED, PAUSED | RUNNING (clears `last_error`) |
//! | pause  | RUNNING | PAUSED |
//! | resume | PAUSED | RUNNING |
//! | stop   | any but STOPPED | STOPPED |
//!
//! Anything else is refused with the current status named, and audited as
//! FAILED. Starting or resuming a task of a tenant that is not ACTIVE is
//! refused too.

use serde_json::{json, Value as Json};
use tokio_postgres::Client;

use super::audit::{self, AuditEvent, Operation};
use super::{begin, commit, lock_task, lock_tenant, refuse, Actor};
use crate::meta::error::{MetaError, MetaResult};
use crate::meta::model::{Task, TASK_COLUMNS};

/// A status change an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Start,
    Pause,
    Resume,
    Stop,
}

impl Transition {
    pub fn operation(self) -> Operation {
        match self {
            Transition::Start => Operation::StartTask,
            Transition::Pause => Operation::PauseTask,
            Transition::Resume => Operation::ResumeTask,
            Transition::Stop => Operation::StopTask,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Transition::Start => "start",
            Transition::Pause => "pause",
            Transition::Resume => "resume",
            Transition::Stop => "stop",
        }
    }

    /// The statuses it applies to, and the one it sets.
    pub fn rule(self) -> (&'static [&'static str], &'static str) {
        match self {
            Transition::Start => (
                &["CREATED", "STOPPED", "FAILED", "COMPLETED", "PAUSED"],
                "RUNNING",
            ),
            Transition::Pause => (&["RUNNING"], "PAUSED"),
            Transition::Resume => (&["PAUSED"], "RUNNING"),
            Transition::Stop => (
                &["CREATED", "RUNNING", "PAUSED", "FAILED", "COMPLETED"],
                "STOPPED",
            ),
        }
    }

    /// The new status from `current`, or why not (naming `current`).
    pub fn apply(self, current: &str) -> Result<&'static str, String> {
        let (from, to) = self.rule();
        if from.contains(&current) {
            return Ok(to);
        }
        if current == to {
            return Err(format!(
                "cannot {} the task: it is already {current}",
                self.verb()
            ));
        }
        let hint = match self {
            Transition::Pause => "only a RUNNING task can be paused".into(),
            Transition::Resume => {
                "only a PAUSED task can be resumed; use `dbsync task start`".into()
            }
            _ => format!("allowed from {}", from.join(", ")),
        };
        Err(format!(
            "cannot {} the task: its status is {current} ({hint})",
            self.verb()
        ))
    }
}

/// Changes a task's status; returns the row before and after.
pub async fn transition(
    c: &mut Client,
    actor: &Actor,
    tenant_code: &str,
    task_code: &str,
    t: Transition,
) -> MetaResult<(Task, Task)> {
    let tx = begin(c, "change a task's status").await?;
    let tenant = lock_tenant(&tx, tenant_code).await?;
    let before = lock_task(&tx, &tenant, task_code).await?;
    let event = |after: Option<&Task>| {
        AuditEvent::new(
            t.operation(),
            Some(tenant.tenant_id),
            Some(before.task_id),
            Some(&before),
            after,
        )
    };
    let to = match t.apply(&before.status) {
        Ok(to) => to,
        Err(m) => {
            let err = MetaError::Conflict(format!("task {task_code:?}: {m}"));
            return Err(refuse(tx, actor, event(None), err).await);
        }
    };
    if to == "RUNNING" && tenant.status != "ACTIVE" {
        let err = MetaError::Conflict(format!(
            "cannot {} task {task_code:?}: tenant {tenant_code:?} is {} (activate it first: \
             `dbsync tenant update {tenant_code} --status ACTIVE`)",
            t.verb(),
            tenant.status
        ));
        return Err(refuse(tx, actor, event(None), err).await);
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE sync_tasks SET status = $2, \
                 last_error = CASE WHEN $3 THEN NULL ELSE last_error END, \
                 updated_by = $4, updated_at = now() \
                 WHERE task_id = $1 AND deleted_at IS NULL RETURNING {TASK_COLUMNS}"
            ),
            &[
                &before.task_id,
                &to,
                &(t == Transition::Start),
                &actor.operator(),
            ],
        )
        .await
        .map_err(|e| MetaError::query("change the task's status", e))?;
    let after = Task::from_row(&row);
    audit::record(&tx, actor, &event(Some(&after)), None).await?;
    commit(tx, "change a task's status").await?;
    Ok((before, after))
}

/// What `reset-offset` did.
#[derive(Debug, Clone)]
pub struct OffsetReset {
    pub task: Task,
    pub offsets_deleted: u64,
    pub old_epoch: i32,
    pub new_epoch: i32,
}

/// Forgets where a task's source reader got to: deletes its `sync_offsets`
/// rows and increments `offset_epoch` (daemons key local checkpoints by it,
/// so every host starts over), in one transaction. Refused while the task
/// is RUNNING.
pub async fn reset_offset(
    c: &mut Client,
    actor: &Actor,
    tenant_code: &str,
    task_code: &str,
) -> MetaResult<OffsetReset> {
    let tx = begin(c, "reset a task's offsets").await?;
    let tenant = lock_tenant(&tx, tenant_code).await?;
    let task = lock_task(&tx, &tenant, task_code).await?;
    let offsets = tx
        .query(
            "SELECT json_build_object('source_partition', source_partition, \
             'source_offset', source_offset, 'snapshot_offset', snapshot_offset, \
             'last_updated', last_updated) FROM sync_offsets WHERE task_id = $1 \
             ORDER BY last_updated",
            &[&task.task_id],
        )
        .await
        .map_err(|e| MetaError::query("read the task's offsets", e))?;
    let offsets: Vec<Json> = offsets.iter().map(|r| r.get(0)).collect();
    let before = json!({"task_code": task.task_code, "status": task.status,
        "offset_epoch": task.offset_epoch, "offsets": offsets});
    let mut event = AuditEvent::new(
        Operation::ResetOffset,
        Some(tenant.tenant_id),
        Some(task.task_id),
        Some(&before),
        None::<&Json>,
    );
    if task.status == "RUNNING" {
        let err = MetaError::Conflict(format!(
            "task {task_code:?} is RUNNING: stop it first (`dbsync task stop {task_code} --tenant {tenant_code}`), \
             then reset its offset"
        ));
        return Err(refuse(tx, actor, event, err).await);
    }
    let deleted = tx
        .execute(
            "DELETE FROM sync_offsets WHERE task_id = $1",
            &[&task.task_id],
        )
        .await
        .map_err(|e| MetaError::query("delete the task's offsets", e))?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE sync_tasks SET offset_epoch = offset_epoch + 1, updated_by = $2, \
                 updated_at = now() WHERE task_id = $1 AND deleted_at IS NULL \
                 RETURNING {TASK_COLUMNS}"
            ),
            &[&task.task_id, &actor.operator()],
        )
        .await
        .map_err(|e| MetaError::query("advance the task's offset epoch", e))?;
    let after_task = Task::from_row(&row);
    let after = json!({"task_code": after_task.task_code, "status": after_task.status,
        "offset_epoch": after_task.offset_epoch, "offsets": []});
    event = AuditEvent::new(
        Operation::ResetOffset,
        Some(tenant.tenant_id),
        Some(task.task_id),
        Some(&before),
        Some(&after),
    );
    audit::record(&tx, actor, &event, None).await?;
    commit(tx, "reset a task's offsets").await?;
    Ok(OffsetReset {
        old_epoch: task.offset_epoch,
        new_epoch: after_task.offset_epoch,
        offsets_deleted: deleted,
        task: after_task,
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_transition_table() {
        use Transition::*;
        for s in ["CREATED", "STOPPED", "FAILED", "COMPLETED", "PAUSED"] {
            assert_eq!(Start.apply(s), Ok("RUNNING"), "{s}");
        }
        assert_eq!(Pause.apply("RUNNING"), Ok("PAUSED"));
        assert_eq!(Resume.apply("PAUSED"), Ok("RUNNING"));
        for s in ["CREATED", "RUNNING", "PAUSED", "FAILED", "COMPLETED"] {
            assert_eq!(Stop.apply(s), Ok("STOPPED"), "{s}");
        }
        let e = Start.apply("RUNNING").unwrap_err();
        assert!(
            e.contains("already RUNNING") && !e.contains("status is"),
            "{e}"
        );
        let e = Pause.apply("STOPPED").unwrap_err();
        assert!(
            e.contains("status is STOPPED") && e.contains("RUNNING"),
            "{e}"
        );
        let e = Resume.apply("CREATED").unwrap_err();
        assert!(e.contains("task start"), "{e}");
        assert!(Stop
            .apply("STOPPED")
            .unwrap_err()
            .contains("already STOPPED"));
    }
}

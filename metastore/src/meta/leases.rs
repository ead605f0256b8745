//! Task leases: which daemon runs which task.
//!
//! A lease lasts until `expires_at` on the database's clock. A daemon takes a
//! task's lease only when it is free or expired (or already its own), and
//! every acquisition increments `epoch`, the fencing token. The holder renews
//! all its leases in one statement every third of the TTL; a renewal that
//! finds its row gone, taken (another epoch) or expired has lost the lease.
//!
//! The holder also keeps a local deadline: the monotonic instant at which it
//! *sent* the last successful renewal, plus the TTL, minus a safety margin.
//! Past that deadline it must not commit to the target (see
//! `engine::TaskGuard::may_commit`), even when the database cannot be reached,
//! because another daemon may then take the task. Offset writes carry the
//! epoch and are refused in SQL when it is not the current lease's.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::error::{MetaError, MetaResult};

/// A held lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub task_id: Uuid,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
}

/// Takes the lease of a task when it is free, expired, or held by `owner`
/// (a restarted daemon with a fixed node id); `None` when another live
/// daemon holds it.
pub async fn acquire(
    c: &impl GenericClient,
    task_id: Uuid,
    owner: &str,
    ttl_secs: u64,
) -> MetaResult<Option<Lease>> {
    let ttl = ttl_secs as f64;
    let row = c
        .query_opt(
            "INSERT INTO task_leases AS l (task_id, owner, epoch, expires_at)
             VALUES ($1, $2, 1, now() + make_interval(secs => $3))
             ON CONFLICT (task_id) DO UPDATE
                SET owner = EXCLUDED.owner, epoch = l.epoch + 1, acquired_at = now(),
                    renewed_at = now(), expires_at = EXCLUDED.expires_at
              WHERE l.expires_at < now() OR l.owner = EXCLUDED.owner
             RETURNING epoch, expires_at",
            &[&task_id, &owner, &ttl],
        )
        .await
        .map_err(|e| MetaError::query("acquire a task lease", e))?;
    Ok(row.map(|r| Lease {
        task_id,
        epoch: r.get(0),
        expires_at: r.get(1),
    }))
}

/// Renews every unexpired lease of `owner`; returns the leases still held.
/// A lease of `held` missing from the result was lost.
pub async fn renew_all(
    c: &impl GenericClient,
    owner: &str,
    ttl_secs: u64,
) -> MetaResult<Vec<Lease>> {
    let ttl = ttl_secs as f64;
    let rows = c
        .query(
            "UPDATE task_leases SET renewed_at = now(), expires_at = now() + make_interval(secs => $2)
              WHERE owner = $1 AND expires_at > now()
             RETURNING task_id, epoch, expires_at",
            &[&owner, &ttl],
        )
        .await
        .map_err(|e| MetaError::query("renew task leases", e))?;
    Ok(rows
        .iter()
        .map(|r| Lease {
            task_id: r.get(0),
            epoch: r.get(1),
            expires_at: r.get(2),
        })
        .collect())
}

/// Gives a lease up (the task stopped here); another daemon may take it at
/// once. The row stays (expired) so that epochs keep increasing.
pub async fn release(c: &impl GenericClient, lease: &Lease, owner: &str) -> MetaResult<()> {
    c.execute(
        "UPDATE task_leases SET expires_at = now() - interval '1 second'
          WHERE task_id = $1 AND owner = $2 AND epoch = $3",
        &[&lease.task_id, &owner, &lease.epoch],
    )
    .await
    .map_err(|e| MetaError::query("release a task lease", e))?;
    Ok(())
}

/// The owner of each task's unexpired lease.
pub async fn owners(c: &impl GenericClient) -> MetaResult<Vec<(Uuid, String, i64)>> {
    let rows = c
        .query(
            "SELECT task_id, owner, epoch FROM task_leases WHERE expires_at > now()",
            &[],
        )
        .await
        .map_err(|e| MetaError::query("read task leases", e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Records that this daemon is alive (`daemon_nodes`).
pub async fn heartbeat(
    c: &impl GenericClient,
    node_id: &str,
    hostname: &str,
    version: &str,
) -> MetaResult<()> {
    c.execute(
        "INSERT INTO daemon_nodes (node_id, hostname, version) VALUES ($1, $2, $3)
         ON CONFLICT (node_id) DO UPDATE SET last_seen = now(), hostname = EXCLUDED.hostname,
             version = EXCLUDED.version",
        &[&node_id, &hostname, &version],
    )
    .await
    .map_err(|e| MetaError::query("record the daemon heartbeat", e))?;
    Ok(())
}

//! What `dbsync metastore status` reports: the schema version against this
//! binary's, pending migrations, the daemons sharing the database
//! (`daemon_nodes`) and which daemon holds which task (`task_leases`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};
use uuid::Uuid;

use crate::meta::error::{MetaError, MetaResult};
use crate::meta::migrate::{current_version, MIGRATIONS, SCHEMA_VERSION};

#[derive(Debug, Clone, Serialize)]
pub struct DaemonNode {
    pub node_id: String,
    pub hostname: Option<String>,
    pub version: Option<String>,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Seconds since `last_seen`, by the database clock.
    pub seen_secs_ago: i64,
}

/// A task lease, with the task it is for.
#[derive(Debug, Clone, Serialize)]
pub struct Lease {
    pub task_id: Uuid,
    pub tenant_code: String,
    pub task_code: String,
    pub owner: String,
    pub epoch: i64,
    pub acquired_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Past `expires_at` by the database clock: another daemon may take it.
    pub expired: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PendingMigration {
    pub version: i32,
    pub name: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetaStatus {
    pub schema_version: i32,
    pub expected_version: i32,
    pub pending_migrations: Vec<PendingMigration>,
    pub daemons: Vec<DaemonNode>,
    pub leases: Vec<Lease>,
}

pub async fn daemons(c: &impl GenericClient) -> MetaResult<Vec<DaemonNode>> {
    let rows = c
        .query(
            "SELECT node_id, hostname, version, started_at, last_seen, \
             floor(extract(epoch FROM now() - last_seen))::bigint \
             FROM daemon_nodes ORDER BY node_id",
            &[],
        )
        .await
        .map_err(|e| MetaError::query("list daemons", e))?;
    Ok(rows
        .iter()
        .map(|r| DaemonNode {
            node_id: r.get(0),
            hostname: r.get(1),
            version: r.get(2),
            started_at: r.get(3),
            last_seen: r.get(4),
            seen_secs_ago: r.get(5),
        })
        .collect())
}

/// Leases of live tasks.
pub async fn leases(c: &impl GenericClient) -> MetaResult<Vec<Lease>> {
    let rows = c
        .query(
            "SELECT l.task_id, n.tenant_code, t.task_code, l.owner, l.epoch, l.acquired_at, \
             l.renewed_at, l.expires_at, l.expires_at <= now() \
             FROM task_leases l JOIN sync_tasks t ON t.task_id = l.task_id \
             JOIN tenants n ON n.tenant_id = t.tenant_id \
             WHERE t.deleted_at IS NULL AND n.deleted_at IS NULL \
             ORDER BY n.tenant_code, t.task_code",
            &[],
        )
        .await
        .map_err(|e| MetaError::query("list task leases", e))?;
    Ok(rows
        .iter()
        .map(|r| Lease {
            task_id: r.get(0),
            tenant_code: r.get(1),
            task_code: r.get(2),
            owner: r.get(3),
            epoch: r.get(4),
            acquired_at: r.get(5),
            renewed_at: r.get(6),
            expires_at: r.get(7),
            expired: r.get(8),
        })
        .collect())
}

/// Schema version, pending migrations, daemons and leases (the last two
/// only once the schema exists).
pub async fn status(c: &Client) -> MetaResult<MetaStatus> {
    let version = current_version(c).await?;
    let pending = MIGRATIONS
        .iter()
        .filter(|m| m.version > version)
        .map(|m| PendingMigration {
            version: m.version,
            name: m.name,
        })
        .collect();
    let (daemons, leases) = if version >= 1 {
        (daemons(c).await?, leases(c).await?)
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(MetaStatus {
        schema_version: version,
        expected_version: SCHEMA_VERSION,
        pending_migrations: pending,
        daemons,
        leases,
    })
}

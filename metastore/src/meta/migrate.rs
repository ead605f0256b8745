//! Versioned schema migrations, embedded in the binary.
//!
//! `dbsync_schema_history` records each applied migration with a checksum of
//! its SQL. [`migrate`] applies the missing ones in order, each in its own
//! transaction, under an advisory lock (two daemons migrating at once is
//! safe). [`check_schema`] is what the daemon runs at start-up: it refuses to
//! run against a database that is not exactly at [`SCHEMA_VERSION`].

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, GenericClient};

use super::error::{MetaError, MetaResult};

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Never edit a released one: add a new one.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("migrations/0001_init.sql"),
}];

/// The schema version this binary runs against.
pub const SCHEMA_VERSION: i32 = 1;

/// Advisory lock key serializing migrations ("dbsync" in ASCII).
const MIGRATION_LOCK: i64 = 0x0000_6462_7379_6e63;

const HISTORY_DDL: &str = "CREATE TABLE IF NOT EXISTS dbsync_schema_history (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT current_user
)";

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// What the database holds: `(version, name, checksum)` per applied migration.
async fn applied(client: &impl GenericClient) -> MetaResult<Option<Vec<(i32, String, String)>>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('dbsync_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| MetaError::query("read the schema version", e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT version, name, checksum FROM dbsync_schema_history ORDER BY version",
            &[],
        )
        .await
        .map_err(|e| MetaError::query("read the schema version", e))?;
    Ok(Some(
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
    ))
}

/// Checks that every applied migration is one of ours, unchanged.
fn verify_history(history: &[(i32, String, String)]) -> MetaResult<()> {
    for (version, name, sum) in history {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => {
                return Err(MetaError::Schema(format!(
                    "the database is at schema version {} but this dbsync knows only up to {SCHEMA_VERSION}: \
                     upgrade dbsync on this host (another daemon or a newer CLI migrated it)",
                    history.last().map_or(*version, |h| h.0)
                )))
            }
            Some(m) if checksum(m.sql) != *sum => {
                return Err(MetaError::Schema(format!(
                    "migration {version} ({name}) in the database differs from the one in this binary \
                     (checksum mismatch): the schema was changed by hand or by a different build; \
                     restore it or contact the maintainers"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The schema version recorded in the database (0 when never migrated).
pub async fn current_version(client: &Client) -> MetaResult<i32> {
    Ok(applied(client)
        .await?
        .and_then(|h| h.last().map(|l| l.0))
        .unwrap_or(0))
}

/// Refuses to run unless the database is exactly at [`SCHEMA_VERSION`].
pub async fn check_schema(client: &Client) -> MetaResult<()> {
    let Some(history) = applied(client).await? else {
        return Err(MetaError::Schema(format!(
            "the metadata database has no dbsync schema: run `dbsync metastore migrate --config <file>` \
             (or set [metastore] auto_migrate = true) to create schema version {SCHEMA_VERSION}"
        )));
    };
    verify_history(&history)?;
    let version = history.last().map_or(0, |h| h.0);
    if version < SCHEMA_VERSION {
        return Err(MetaError::Schema(format!(
            "the metadata database is at schema version {version}, this dbsync needs {SCHEMA_VERSION}: \
             run `dbsync metastore migrate --config <file>` (or set [metastore] auto_migrate = true)"
        )));
    }
    Ok(())
}

/// Applies the missing migrations; returns the versions applied.
pub async fn migrate(client: &mut Client) -> MetaResult<Vec<i32>> {
    client
        .batch_execute(HISTORY_DDL)
        .await
        .map_err(|e| MetaError::query("create dbsync_schema_history", e))?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| MetaError::query("begin the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| MetaError::query("take the migration lock", e))?;
    let history = applied(&tx).await?.unwrap_or_default();
    verify_history(&history)?;
    let current = history.last().map_or(0, |h| h.0);
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql).await.map_err(|e| {
            MetaError::query(format!("apply migration {} ({})", m.version, m.name), e)
        })?;
        tx.execute(
            "INSERT INTO dbsync_schema_history (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await
        .map_err(|e| MetaError::query("record the migration", e))?;
        done.push(m.version);
    }
    tx.commit()
        .await
        .map_err(|e| MetaError::query("commit the migration", e))?;
    if !done.is_empty() {
        super::maintenance::ensure_metric_partitions(client, chrono::Utc::now(), 3).await?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_end_at_the_schema_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
        }
        assert_eq!(MIGRATIONS.last().unwrap().version, SCHEMA_VERSION);
    }

    #[test]
    fn unknown_or_edited_migrations_are_refused() {
        let newer = vec![(SCHEMA_VERSION + 1, "future".to_string(), "x".to_string())];
        let err = verify_history(&newer).unwrap_err().to_string();
        assert!(err.contains("upgrade dbsync"), "{err}");
        let edited = vec![(1, "init".to_string(), "0".repeat(64))];
        let err = verify_history(&edited).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        let ok = vec![(1, "init".to_string(), checksum(MIGRATIONS[0].sql))];
        verify_history(&ok).unwrap();
    }
}

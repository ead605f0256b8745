//! Prerequisite checks of a PostgreSQL source, each with the fix an operator
//! has to make. Used by `dbsync check` and before a task starts.

use engine::TableId;
use tokio_postgres::Client;

use super::catalog::{self, CatalogTable};
use super::error::PgSourceError;

pub use engine::CheckOutcome;

fn q(e: tokio_postgres::Error, what: &str) -> PgSourceError {
    PgSourceError::query(what, e)
}

/// `wal_level` must be `logical`.
pub async fn ensure_wal_level_logical(client: &Client) -> Result<String, PgSourceError> {
    let level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(|e| q(e, "SHOW wal_level"))?
        .get(0);
    if level != "logical" {
        return Err(PgSourceError::Prerequisite(format!(
            "wal_level is '{level}', logical replication needs 'logical': run \
             ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL"
        )));
    }
    Ok("wal_level = logical".into())
}

/// The connecting role needs the REPLICATION attribute (or superuser).
pub async fn ensure_replication_privilege(client: &Client) -> Result<String, PgSourceError> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| q(e, "reading the role's attributes"))?;
    let (user, ok): (String, bool) = (row.get(0), row.get(1));
    if !ok {
        return Err(PgSourceError::Prerequisite(format!(
            "role {user} lacks the REPLICATION attribute: run ALTER ROLE \"{user}\" WITH REPLICATION; \
             and allow it in pg_hba.conf (host replication {user} ...)"
        )));
    }
    Ok(format!("role {user} may replicate"))
}

/// A free replication slot (unless ours exists) and a free WAL sender.
pub async fn ensure_free_slots(client: &Client, slot: &str) -> Result<String, PgSourceError> {
    let row = client
        .query_one(
            "SELECT current_setting('max_replication_slots')::int,
                    (SELECT count(*) FROM pg_replication_slots)::int,
                    EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
                    current_setting('max_wal_senders')::int,
                    (SELECT count(*) FROM pg_stat_replication)::int",
            &[&slot],
        )
        .await
        .map_err(|e| q(e, "counting replication slots"))?;
    let (max_slots, used, ours, max_senders, senders): (i32, i32, bool, i32, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    if !ours && used >= max_slots {
        return Err(PgSourceError::Prerequisite(format!(
            "all {max_slots} replication slots are in use: drop an unused one \
             (SELECT pg_drop_replication_slot('name')) or raise max_replication_slots and restart"
        )));
    }
    if senders >= max_senders {
        return Err(PgSourceError::Prerequisite(format!(
            "all {max_senders} WAL senders are busy: raise max_wal_senders and restart"
        )));
    }
    Ok(format!(
        "slots {used}/{max_slots} used{}, wal senders {senders}/{max_senders}",
        if ours { " (ours exists)" } else { "" }
    ))
}

/// An existing slot must be a pgoutput slot of this database that still has its WAL.
pub async fn ensure_slot_usable(client: &Client, slot: &str) -> Result<String, PgSourceError> {
    let db: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(|e| q(e, "current_database()"))?
        .get(0);
    match catalog::slot(client, slot).await? {
        None => Ok(format!("slot {slot} will be created")),
        Some(s) => {
            if s.plugin.as_deref() != Some("pgoutput") {
                return Err(PgSourceError::Prerequisite(format!(
                    "slot {slot} exists but is not a pgoutput logical slot: drop it or choose another slot name"
                )));
            }
            if s.database.as_deref() != Some(db.as_str()) {
                return Err(PgSourceError::Prerequisite(format!(
                    "slot {slot} belongs to database {:?}, not {db}: choose another slot name",
                    s.database.unwrap_or_default()
                )));
            }
            if s.wal_status.as_deref() == Some("lost") {
                return Err(PgSourceError::Resync(format!(
                    "slot {slot} has lost WAL it needed (max_slot_wal_keep_size?): \
                     the task must be re-synced: dbsync offsets reset --task ... and drop the slot"
                )));
            }
            Ok(format!("slot {slot} exists (pgoutput, {db})"))
        }
    }
}

/// Each table exists, is readable, and has a key the stream can identify rows by.
pub async fn ensure_tables_replicable(
    client: &Client,
    tables: &[TableId],
) -> Result<Vec<CatalogTable>, PgSourceError> {
    let mut out = Vec::with_capacity(tables.len());
    let mut problems = Vec::new();
    for id in tables {
        match catalog::load_table(client, id).await? {
            None => problems.push(format!("table {id} does not exist in the source")),
            Some(t) => {
                let readable: bool = client
                    .query_one("SELECT has_table_privilege($1::oid, 'SELECT')", &[&t.oid])
                    .await
                    .map_err(|e| q(e, "has_table_privilege"))?
                    .get(0);
                if !readable {
                    problems.push(format!(
                        "no SELECT privilege on {id}: GRANT SELECT ON {id} TO <dbsync user>"
                    ));
                }
                if !t.has_key {
                    problems.push(format!(
                        "table {id} has no primary key: add one (ALTER TABLE {id} ADD PRIMARY KEY (...)) or \
                         set ALTER TABLE {id} REPLICA IDENTITY USING INDEX <unique index on NOT NULL columns>"
                    ));
                } else if t.replica_identity == 'n' {
                    problems.push(format!(
                        "table {id} has REPLICA IDENTITY NOTHING, so deletes and updates carry no key: \
                         run ALTER TABLE {id} REPLICA IDENTITY DEFAULT"
                    ));
                }
                out.push(t);
            }
        }
    }
    if !problems.is_empty() {
        return Err(PgSourceError::Prerequisite(problems.join("; ")));
    }
    Ok(out)
}

/// Runs every check; never stops at the first failure.
pub async fn run_all(client: &Client, slot: &str, tables: &[TableId]) -> Vec<CheckOutcome> {
    fn outcome(name: &'static str, r: Result<String, PgSourceError>) -> CheckOutcome {
        CheckOutcome {
            name,
            result: r.map_err(|e| e.to_string()),
        }
    }
    vec![
        outcome(
            "ensure_wal_level_logical",
            ensure_wal_level_logical(client).await,
        ),
        outcome(
            "ensure_replication_privilege",
            ensure_replication_privilege(client).await,
        ),
        outcome("ensure_free_slots", ensure_free_slots(client, slot).await),
        outcome("ensure_slot_usable", ensure_slot_usable(client, slot).await),
        outcome(
            "ensure_tables_replicable",
            ensure_tables_replicable(client, tables)
                .await
                .map(|t| format!("{} table(s) have keys and are readable", t.len())),
        ),
    ]
}

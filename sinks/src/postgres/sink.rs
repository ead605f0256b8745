//! [`PostgresSink`]: the connection, the transaction and the per-table cache.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use engine::config::{password_from_env, PostgresTargetConfig};
use engine::pgtext::SESSION_SETTINGS;
use engine::{Sink, TableChanges, TableId, TableSchema};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};
use tracing::{debug, info, warn};

use super::apply::{self, Ctx, TableState};
use super::ddl::{self, TablePlan};
use super::error::{PgFailure, PgSinkError};
use super::sql::{qualified, quote_ident, quote_literal, TableSql};
use super::PgSinkOptions;

/// Writes changes into a PostgreSQL database over one connection.
///
/// See [`engine::Sink`] for the contract. Everything between `begin` and
/// `commit` is one target transaction; commits are synchronous
/// (`synchronous_commit = on`).
pub struct PostgresSink {
    client: Client,
    create_tables: bool,
    opts: PgSinkOptions,
    tables: HashMap<TableId, TableState>,
    /// Numbers the session's staging tables.
    next_stage: u64,
    /// Number of the current (or last) transaction.
    txn: u64,
    in_txn: bool,
    /// `begin` was called but `BEGIN` not sent yet: it goes out with the
    /// first statement of the transaction (saving a round trip).
    begin_pending: bool,
    /// A statement failed in the open transaction: it can only be rolled back.
    failed: bool,
}

/// The `sslmode` of a URL or key/value connection string, if any.
fn ssl_mode_of(url: &str) -> Option<&str> {
    let start = url.find("sslmode=")? + "sslmode=".len();
    let rest = &url[start..];
    let end = rest.find(['&', ' ']).unwrap_or(rest.len());
    Some(&rest[..end])
}

impl PostgresSink {
    /// Connects with the default [`PgSinkOptions`].
    ///
    /// The URL is resolved with [`engine::config::ConnUrl::resolve`]; the
    /// password comes from `cfg.password_env` when set. Only plain
    /// connections are supported (`sslmode` `disable` or `prefer`). The
    /// session gets [`SESSION_SETTINGS`] and `synchronous_commit = on`.
    pub async fn connect(cfg: &PostgresTargetConfig) -> engine::Result<Self> {
        Self::connect_with(cfg, PgSinkOptions::default()).await
    }

    /// Connects with explicit tuning options.
    pub async fn connect_with(
        cfg: &PostgresTargetConfig,
        opts: PgSinkOptions,
    ) -> engine::Result<Self> {
        let shown = cfg.url.redacted();
        let url = cfg.url.resolve()?;
        if let Some(mode) = ssl_mode_of(url.expose()) {
            if mode != "disable" && mode != "prefer" {
                return Err(PgSinkError::Config(format!(
                    "target url {shown}: sslmode={mode} is not supported yet (TLS to the target \
                     is not implemented): use sslmode=disable or sslmode=prefer"
                ))
                .into());
            }
        }
        let mut pg: tokio_postgres::Config = url.expose().parse().map_err(|e| {
            PgSinkError::Config(format!(
                "target url {shown} is not a valid connection string: {e}"
            ))
        })?;
        if pg.get_ssl_mode() == SslMode::Require {
            return Err(PgSinkError::Config(format!(
                "target url {shown}: TLS is not supported yet: use sslmode=disable or sslmode=prefer"
            ))
            .into());
        }
        if let Some(var) = &cfg.password_env {
            let password = password_from_env(var)?;
            pg.password(password.expose());
        }
        if pg.get_application_name().is_none() {
            pg.application_name("dbsync");
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(std::time::Duration::from_secs(30));
        }
        let connect_err = |e: &tokio_postgres::Error| PgSinkError::Connect {
            target: shown.clone(),
            failure: PgFailure::from_driver(e),
        };
        let (client, connection) = pg.connect(NoTls).await.map_err(|e| connect_err(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                warn!(error = %e, "target connection ended with an error");
            }
        });
        let mut settings = String::new();
        for (name, value) in SESSION_SETTINGS {
            let _ = write!(settings, "SET {name} = {}; ", quote_literal(value));
        }
        // Durable commits whatever the server default; room for staging tables.
        settings.push_str("SET synchronous_commit = on; SET temp_buffers = '64MB'");
        client
            .batch_execute(&settings)
            .await
            .map_err(|e| connect_err(&e))?;
        info!(target = %shown, "connected to the target");
        Ok(Self {
            client,
            create_tables: cfg.create_tables,
            opts,
            tables: HashMap::new(),
            next_stage: 1,
            txn: 0,
            in_txn: false,
            begin_pending: false,
            failed: false,
        })
    }

    /// Creates or checks the target table and prepares its state.
    async fn ensure(&mut self, schema: &Arc<TableSchema>) -> Result<(), PgSinkError> {
        if let Some(st) = self.tables.get(&schema.id) {
            if Arc::ptr_eq(&st.schema, schema) || st.schema.as_ref() == schema.as_ref() {
                return Ok(());
            }
        }
        self.send_begin().await?;
        let id = &schema.id;
        if schema.key.is_empty() || schema.key.iter().any(|&i| i >= schema.columns.len()) {
            return Err(PgSinkError::Schema(format!(
                "source table for {id} has no usable key: give it a primary key \
                 (or a replica identity index)"
            )));
        }
        let mut changed = false;
        let target = match ddl::read_target(&self.client, id).await? {
            Some(t) => t,
            None if !self.create_tables => {
                return Err(PgSinkError::Schema(format!(
                    "target table {id} does not exist: create it, or set create_tables = true"
                )));
            }
            None => {
                let mut sql = String::new();
                if !ddl::schema_exists(&self.client, id).await? {
                    sql = format!("CREATE SCHEMA IF NOT EXISTS {}; ", quote_ident(&id.schema));
                }
                sql.push_str(&ddl::create_table_sql(schema));
                self.client
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| PgSinkError::statement(id, "creating the table", &e))?;
                info!(table = %id, columns = schema.columns.len(), "created target table");
                changed = true;
                ddl::read_target(&self.client, id).await?.ok_or_else(|| {
                    PgSinkError::Schema(format!("target table {id} vanished right after creation"))
                })?
            }
        };
        let TablePlan { missing, key_types } = ddl::plan_existing(schema, &target)?;
        let widen = match self.tables.get(id) {
            Some(old) => ddl::plan_widen(&old.schema, schema, &target)?,
            None => Vec::new(),
        };
        if !widen.is_empty() {
            let sql = ddl::widen_columns_sql(schema, &widen);
            self.client
                .batch_execute(&sql)
                .await
                .map_err(|e| PgSinkError::statement(id, "widening columns", &e))?;
            let names: Vec<&str> = widen
                .iter()
                .map(|&i| schema.columns[i].name.as_str())
                .collect();
            info!(table = %id, columns = ?names, "widened columns of target table");
            changed = true;
        }
        if !missing.is_empty() {
            let sql = ddl::add_columns_sql(schema, &missing);
            self.client
                .batch_execute(&sql)
                .await
                .map_err(|e| PgSinkError::statement(id, "adding columns", &e))?;
            let names: Vec<&str> = missing
                .iter()
                .map(|&i| schema.columns[i].name.as_str())
                .collect();
            info!(table = %id, columns = ?names, "added columns to target table");
            changed = true;
        }
        let mut ddl_in = (changed && self.in_txn).then_some(self.txn);
        if let Some(old) = self.tables.remove(id) {
            // A table created earlier in this transaction still goes with it.
            ddl_in = ddl_in.or(old.ddl_in);
            self.drop_stages(&old).await;
        }
        let sql = TableSql::new(schema, self.next_stage, key_types.as_deref());
        self.next_stage += 1;
        self.tables
            .insert(id.clone(), TableState::new(schema.clone(), sql, ddl_in));
        debug!(table = %id, "target table ready");
        Ok(())
    }

    /// Drops the staging tables of a replaced table state (best effort).
    async fn drop_stages(&self, old: &TableState) {
        let mut names = Vec::new();
        if old.stage.created_in.is_some() {
            names.push(old.sql.stage.as_str());
        }
        if old.key_stage.created_in.is_some() {
            names.push(old.sql.key_stage.as_str());
        }
        if names.is_empty() {
            return;
        }
        let sql = format!("DROP TABLE IF EXISTS {}", names.join(", "));
        if let Err(e) = self.client.batch_execute(&sql).await {
            debug!(table = %old.schema.id, error = %e, "dropping old staging tables failed");
        }
    }

    /// Sends a pending `BEGIN` on its own.
    async fn send_begin(&mut self) -> Result<(), PgSinkError> {
        if std::mem::take(&mut self.begin_pending) {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| PgSinkError::transaction("begin", &e))?;
        }
        Ok(())
    }

    fn require_txn(&self, what: &str) -> Result<(), PgSinkError> {
        if !self.in_txn {
            return Err(PgSinkError::Config(format!(
                "internal: {what} called outside a target transaction (begin was not called)"
            )));
        }
        Ok(())
    }

    async fn apply_inner(&mut self, changes: &TableChanges) -> Result<(), PgSinkError> {
        self.require_txn("apply")?;
        if changes.is_empty() {
            return Ok(());
        }
        self.ensure(&changes.table).await?;
        let begin = std::mem::take(&mut self.begin_pending);
        let Self {
            client,
            opts,
            tables,
            txn,
            ..
        } = self;
        let Some(st) = tables.get_mut(&changes.table.id) else {
            return Err(PgSinkError::Schema(format!(
                "internal: no state for target table {}",
                changes.table.id
            )));
        };
        let cx = Ctx {
            client,
            opts,
            txn: *txn,
        };
        if !begin {
            return apply::apply(&cx, st, changes).await;
        }
        // BEGIN and the first statements travel together; the server runs
        // them in order. (BEGIN only fails when the connection does, and then
        // so does everything behind it.)
        let (begun, applied) = tokio::join!(
            client.batch_execute("BEGIN"),
            apply::apply(&cx, st, changes)
        );
        begun.map_err(|e| PgSinkError::transaction("begin", &e))?;
        applied
    }

    async fn truncate_inner(&mut self, table: &TableId) -> Result<(), PgSinkError> {
        self.require_txn("truncate")?;
        let mut sql = String::new();
        if std::mem::take(&mut self.begin_pending) {
            sql.push_str("BEGIN; ");
        }
        sql.push_str("TRUNCATE ");
        sql.push_str(&qualified(table));
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| PgSinkError::statement(table, "truncate", &e))
    }

    /// Renames target table `from` to `to` inside the open transaction (see
    /// [`Sink::rename_table`]).
    async fn rename_inner(&mut self, from: &TableId, to: &TableId) -> Result<(), PgSinkError> {
        self.require_txn("rename_table")?;
        self.send_begin().await?;
        if let Some(old) = self.tables.remove(from) {
            self.drop_stages(&old).await;
        }
        if let Some(old) = self.tables.remove(to) {
            self.drop_stages(&old).await;
        }
        if ddl::read_target(&self.client, from).await?.is_none() {
            // Renamed by an earlier attempt, or never created.
            return Ok(());
        }
        if ddl::read_target(&self.client, to).await?.is_some() {
            return Err(PgSinkError::Schema(format!(
                "the source table was renamed, but target table {from} cannot be renamed to {to}: \
                 {to} exists already. Drop or rename one of them, then restart the task"
            )));
        }
        let mut sql = String::new();
        if from.schema != to.schema {
            if !ddl::schema_exists(&self.client, to).await? {
                let _ = write!(
                    sql,
                    "CREATE SCHEMA IF NOT EXISTS {}; ",
                    quote_ident(&to.schema)
                );
            }
            let _ = write!(
                sql,
                "ALTER TABLE {} SET SCHEMA {}; ",
                qualified(from),
                quote_ident(&to.schema)
            );
        }
        if from.name != to.name {
            let moved = TableId::new(to.schema.clone(), from.name.clone());
            let _ = write!(
                sql,
                "ALTER TABLE {} RENAME TO {}",
                qualified(&moved),
                quote_ident(&to.name)
            );
        }
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| PgSinkError::statement(from, "renaming the table", &e))?;
        info!(from = %from, to = %to, "renamed target table");
        Ok(())
    }

    /// Records that the open transaction can no longer commit.
    fn track<T>(&mut self, r: Result<T, PgSinkError>) -> engine::Result<T> {
        if r.is_err() && self.in_txn {
            self.failed = true;
        }
        r.map_err(Into::into)
    }

    /// Forgets what the rolled-back transaction created.
    fn forget_txn(&mut self) {
        let txn = self.txn;
        self.tables.retain(|_, st| st.ddl_in != Some(txn));
        for st in self.tables.values_mut() {
            for stage in [&mut st.stage, &mut st.key_stage] {
                if stage.created_in == Some(txn) {
                    stage.created_in = None;
                }
                stage.dirty = false;
            }
        }
    }
}

impl Sink for PostgresSink {
    async fn ensure_table(&mut self, table: &Arc<TableSchema>) -> engine::Result<()> {
        let r = self.ensure(table).await;
        self.track(r)
    }

    async fn begin(&mut self) -> engine::Result<()> {
        if self.in_txn {
            return Err(PgSinkError::Config(
                "internal: begin called while a target transaction is open".into(),
            )
            .into());
        }
        self.txn += 1;
        self.in_txn = true;
        self.begin_pending = true;
        self.failed = false;
        Ok(())
    }

    async fn apply(&mut self, changes: &TableChanges) -> engine::Result<()> {
        let r = self.apply_inner(changes).await;
        self.track(r)
    }

    async fn truncate(&mut self, table: &TableId) -> engine::Result<()> {
        let r = self.truncate_inner(table).await;
        self.track(r)
    }

    async fn commit(&mut self) -> engine::Result<()> {
        if !self.in_txn {
            return Err(PgSinkError::Config(
                "internal: commit called without an open target transaction".into(),
            )
            .into());
        }
        if self.failed {
            return Err(PgSinkError::Config(
                "internal: commit called after a failed statement; the target transaction \
                 must be rolled back"
                    .into(),
            )
            .into());
        }
        self.in_txn = false;
        if std::mem::take(&mut self.begin_pending) {
            // Nothing was sent: nothing to commit.
            return Ok(());
        }
        let r = self.client.batch_execute("COMMIT").await;
        match r {
            Ok(()) => {
                for st in self.tables.values_mut() {
                    st.stage.dirty = false;
                    st.key_stage.dirty = false;
                }
                Ok(())
            }
            Err(e) => {
                // The outcome is unknown (the connection may have dropped
                // after the server committed): the pipeline replays from the
                // last checkpoint, which is idempotent.
                self.forget_txn();
                Err(PgSinkError::transaction("commit", &e).into())
            }
        }
    }

    async fn rename_table(&mut self, from: &TableId, to: &TableId) -> engine::Result<()> {
        let r = self.rename_inner(from, to).await;
        self.track(r)
    }

    async fn rollback(&mut self) -> engine::Result<()> {
        let was_open = self.in_txn;
        self.in_txn = false;
        self.failed = false;
        if was_open {
            self.forget_txn();
        }
        if std::mem::take(&mut self.begin_pending) {
            return Ok(());
        }
        self.client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| PgSinkError::transaction("rollback", &e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_mode_is_found_in_urls_and_key_value_strings() {
        assert_eq!(
            ssl_mode_of("postgres://h/db?sslmode=require&x=1"),
            Some("require")
        );
        assert_eq!(
            ssl_mode_of("host=h sslmode=verify-full user=u"),
            Some("verify-full")
        );
        assert_eq!(ssl_mode_of("postgres://h/db"), None);
    }
}

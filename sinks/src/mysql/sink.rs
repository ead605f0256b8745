//! [`MysqlSink`]: the connections, the transaction and the per-table cache.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use engine::config::{password_from_env, MysqlTargetConfig};
use engine::{Sink, TableChanges, TableId, TableSchema};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tracing::{debug, info};

use super::apply::{self, Ctx, TableState};
use super::ddl;
use super::error::{MyFailure, MysqlSinkError};
use super::sql::{qualified, ServerInfo, TableSql};
use super::values::ColKind;
use super::{MysqlSinkOptions, SQL_MODE};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long DDL waits for another session's metadata lock before failing
/// (transiently) instead of hanging.
const DDL_LOCK_WAIT_SECS: u32 = 60;

/// Writes changes into a MySQL or MariaDB database.
///
/// See [`engine::Sink`] for the contract and the [module
/// documentation](super) for the session settings and why DDL uses a
/// second connection. Everything between `begin` and `commit` is one target
/// transaction on the data connection.
pub struct MysqlSink {
    conn: Conn,
    /// The DDL connection, opened when first needed.
    ddl: Option<Conn>,
    /// Options to open the DDL connection with (holds the password: never printed).
    conn_opts: Opts,
    /// The target URL with the password masked.
    shown: String,
    server: ServerInfo,
    create_tables: bool,
    opts: MysqlSinkOptions,
    tables: HashMap<TableId, TableState>,
    /// Numbers the session's staging tables.
    next_stage: u64,
    in_txn: bool,
    /// `START TRANSACTION` was sent for the open transaction.
    started: bool,
    /// A statement failed in the open transaction: it can only be rolled back.
    failed: bool,
    /// Tables the open transaction has written to (it holds their metadata locks).
    touched: HashSet<TableId>,
}

/// Builds the driver options: `mariadb://` is accepted for `mysql://`, and
/// `password_env` overrides a password in the URL.
fn driver_opts(cfg: &MysqlTargetConfig, shown: &str) -> engine::Result<Opts> {
    let url = cfg.url.resolve()?;
    let text = url.expose();
    let text = match text.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => text.to_string(),
    };
    let parsed = Opts::from_url(&text).map_err(|e| {
        MysqlSinkError::Config(format!(
            "target url {shown} is not a valid MySQL connection url: {}",
            MyFailure::from_driver(&mysql_async::Error::Url(e))
        ))
    })?;
    let mut b = OptsBuilder::from_opts(parsed)
        .stmt_cache_size(256)
        .tcp_nodelay(true);
    if let Some(var) = &cfg.password_env {
        b = b.pass(Some(password_from_env(var)?.expose().to_string()));
    }
    Ok(b.into())
}

/// Opens a connection and prepares its session.
async fn open(opts: &Opts, shown: &str) -> Result<Conn, MysqlSinkError> {
    let err = |failure: MyFailure| MysqlSinkError::Connect {
        target: shown.to_string(),
        failure,
    };
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts.clone())).await {
        Ok(r) => r.map_err(|e| err(MyFailure::from_driver(&e)))?,
        Err(_) => {
            return Err(err(MyFailure {
                code: None,
                class: engine::ErrorClass::Transient,
                text: format!(
                    "no answer within {} s (transient: dbsync retries)",
                    CONNECT_TIMEOUT.as_secs()
                ),
            }))
        }
    };
    conn.query_drop(format!(
        "SET NAMES utf8mb4, time_zone = '+00:00', sql_mode = '{SQL_MODE}'"
    ))
    .await
    .map_err(|e| err(MyFailure::from_driver(&e)))?;
    // A session variable on current servers; on old ones (read-only there)
    // explicit NULL/NOT NULL in the DDL keeps timestamps from auto-updating.
    if let Err(e) = conn
        .query_drop("SET SESSION explicit_defaults_for_timestamp = ON")
        .await
    {
        debug!(error = %MyFailure::from_driver(&e), "explicit_defaults_for_timestamp is not settable");
    }
    Ok(conn)
}

impl MysqlSink {
    /// Connects with the default [`MysqlSinkOptions`].
    ///
    /// The URL is resolved with [`engine::config::ConnUrl::resolve`]; the
    /// password comes from `cfg.password_env` when set. Only plain
    /// connections are supported (no TLS).
    pub async fn connect(cfg: &MysqlTargetConfig) -> engine::Result<Self> {
        Self::connect_with(cfg, MysqlSinkOptions::default()).await
    }

    /// Connects with explicit tuning options.
    pub async fn connect_with(
        cfg: &MysqlTargetConfig,
        opts: MysqlSinkOptions,
    ) -> engine::Result<Self> {
        let shown = cfg.url.redacted();
        let conn_opts = driver_opts(cfg, &shown)?;
        let mut conn = open(&conn_opts, &shown).await?;
        let (version_text, local_infile): (String, Option<i64>) = conn
            .query_first("SELECT VERSION(), @@GLOBAL.local_infile")
            .await
            .map_err(|e| MysqlSinkError::Connect {
                target: shown.clone(),
                failure: MyFailure::from_driver(&e),
            })?
            .unwrap_or_default();
        let server = ServerInfo {
            mariadb: version_text.contains("MariaDB"),
            version: conn.server_version(),
            local_infile: local_infile == Some(1),
        };
        info!(target = %shown, version = %version_text, "connected to the target");
        Ok(Self {
            conn,
            ddl: None,
            conn_opts,
            shown,
            server,
            create_tables: cfg.create_tables,
            opts,
            tables: HashMap::new(),
            next_stage: 1,
            in_txn: false,
            started: false,
            failed: false,
            touched: HashSet::new(),
        })
    }

    /// What the sink found out about the server.
    pub fn server_info(&self) -> &ServerInfo {
        &self.server
    }

    /// The server's id of the data connection (what `KILL` takes).
    pub fn connection_id(&self) -> u32 {
        self.conn.id()
    }

    /// The DDL connection (opened on first use, autocommit).
    async fn ddl_conn(&mut self) -> Result<&mut Conn, MysqlSinkError> {
        if self.ddl.is_none() {
            let mut c = open(&self.conn_opts, &self.shown).await?;
            c.query_drop(format!(
                "SET SESSION lock_wait_timeout = {DDL_LOCK_WAIT_SECS}"
            ))
            .await
            .map_err(|e| MysqlSinkError::Connect {
                target: self.shown.clone(),
                failure: MyFailure::from_driver(&e),
            })?;
            self.ddl = Some(c);
        }
        self.ddl
            .as_mut()
            .ok_or_else(|| MysqlSinkError::Config("internal: no DDL connection".into()))
    }

    /// Runs DDL on the DDL connection; a broken connection is dropped so the
    /// next call opens a new one.
    async fn run_ddl(
        &mut self,
        id: &TableId,
        action: &'static str,
        sql: &str,
    ) -> Result<(), MysqlSinkError> {
        let r = self.ddl_conn().await?.query_drop(sql).await;
        r.map_err(|e| {
            if e.is_fatal() {
                self.ddl = None;
            }
            MysqlSinkError::statement(id, action, &e)
        })
    }

    async fn read_target(
        &mut self,
        id: &TableId,
    ) -> Result<Option<ddl::TargetTable>, MysqlSinkError> {
        let r = ddl::read_target(self.ddl_conn().await?, id).await;
        if r.is_err() {
            self.ddl = None;
        }
        r
    }

    /// Creates or checks the target table and prepares its state.
    async fn ensure(&mut self, schema: &Arc<TableSchema>) -> Result<(), MysqlSinkError> {
        if let Some(st) = self.tables.get(&schema.id) {
            if Arc::ptr_eq(&st.schema, schema) || st.schema.as_ref() == schema.as_ref() {
                return Ok(());
            }
        }
        let id = &schema.id;
        if schema.key.is_empty() || schema.key.iter().any(|&i| i >= schema.columns.len()) {
            return Err(MysqlSinkError::Schema(format!(
                "source table for {id} has no usable key: give it a primary key \
                 (or a replica identity index)"
            )));
        }
        let types = ddl::column_types(schema, self.server.key_collation());
        let target = match self.read_target(id).await? {
            Some(t) => t,
            None if !self.create_tables => {
                return Err(MysqlSinkError::Schema(format!(
                    "target table {id} does not exist: create it, or set create_tables = true"
                )));
            }
            None => {
                let exists = ddl::database_exists(self.ddl_conn().await?, id).await?;
                if !exists {
                    self.run_ddl(
                        id,
                        "creating the database",
                        &ddl::create_database_sql(&id.schema),
                    )
                    .await?;
                    info!(database = %id.schema, "created target database");
                }
                self.run_ddl(
                    id,
                    "creating the table",
                    &ddl::create_table_sql(schema, &types),
                )
                .await?;
                info!(table = %id, columns = schema.columns.len(), "created target table");
                self.read_target(id).await?.ok_or_else(|| {
                    MysqlSinkError::Schema(format!(
                        "target table {id} vanished right after creation"
                    ))
                })?
            }
        };
        let missing = ddl::plan_existing(schema, &target)?;
        let target = if missing.is_empty() {
            target
        } else {
            let names: Vec<&str> = missing
                .iter()
                .map(|&i| schema.columns[i].name.as_str())
                .collect();
            // The open transaction holds a metadata lock on a table it wrote
            // to: the ALTER would wait for it. Roll back, alter, and let the
            // pipeline replay the transaction.
            let blocked = self.started && self.touched.contains(id);
            if blocked {
                self.started = false;
                self.failed = true;
                self.touched.clear();
                self.conn
                    .query_drop("ROLLBACK")
                    .await
                    .map_err(|e| MysqlSinkError::transaction("rollback", &e))?;
            }
            let sql = ddl::add_columns_sql(schema, &missing, &types);
            self.run_ddl(id, "adding columns", &sql).await?;
            info!(table = %id, columns = ?names, "added columns to target table");
            if blocked {
                self.tables.remove(id);
                return Err(MysqlSinkError::SchemaChanged(format!(
                    "target table {id} needed new columns ({}) after the open transaction had \
                     written to it; MySQL cannot alter a table inside a transaction, so the \
                     transaction was rolled back and is retried with the columns in place",
                    names.join(", ")
                )));
            }
            self.read_target(id).await?.ok_or_else(|| {
                MysqlSinkError::Schema(format!("target table {id} vanished while adding columns"))
            })?
        };
        let kinds: Vec<ColKind> = schema
            .columns
            .iter()
            .map(|c| target.column(&c.name).map_or(ColKind::Other, |t| t.kind))
            .collect();
        let bits: Vec<bool> = kinds.iter().map(|k| *k == ColKind::Bit).collect();
        let sql = TableSql::new(schema, &self.server, self.next_stage, &bits);
        self.next_stage += 1;
        if let Some(old) = self.tables.remove(id) {
            if old.stage_exists {
                // Best effort: a stale stage only costs memory.
                if let Err(e) = self.conn.query_drop(&old.sql.drop_stage).await {
                    debug!(table = %id, error = %MyFailure::from_driver(&e), "dropping an old staging table failed");
                }
            }
        }
        self.tables.insert(
            id.clone(),
            TableState {
                schema: schema.clone(),
                sql,
                kinds,
                stage_exists: false,
            },
        );
        debug!(table = %id, "target table ready");
        Ok(())
    }

    fn require_txn(&self, what: &str) -> Result<(), MysqlSinkError> {
        if !self.in_txn {
            return Err(MysqlSinkError::Config(format!(
                "internal: {what} called outside a target transaction (begin was not called)"
            )));
        }
        if self.failed {
            return Err(MysqlSinkError::Config(format!(
                "internal: {what} called after a failed statement; the target transaction \
                 must be rolled back"
            )));
        }
        Ok(())
    }

    /// Sends `START TRANSACTION` before the transaction's first write.
    async fn start(&mut self) -> Result<(), MysqlSinkError> {
        if !self.started {
            self.conn
                .query_drop("START TRANSACTION")
                .await
                .map_err(|e| MysqlSinkError::transaction("begin", &e))?;
            self.started = true;
        }
        Ok(())
    }

    async fn apply_inner(&mut self, changes: &TableChanges) -> Result<(), MysqlSinkError> {
        self.require_txn("apply")?;
        if changes.is_empty() {
            return Ok(());
        }
        self.ensure(&changes.table).await?;
        self.start().await?;
        self.touched.insert(changes.table.id.clone());
        let Self {
            conn,
            opts,
            server,
            tables,
            ..
        } = self;
        let Some(st) = tables.get_mut(&changes.table.id) else {
            return Err(MysqlSinkError::Schema(format!(
                "internal: no state for target table {}",
                changes.table.id
            )));
        };
        let mut cx = Ctx { conn, opts, server };
        apply::apply(&mut cx, st, changes).await
    }

    async fn truncate_inner(&mut self, table: &TableId) -> Result<(), MysqlSinkError> {
        self.require_txn("truncate")?;
        self.start().await?;
        self.touched.insert(table.clone());
        // TRUNCATE TABLE commits implicitly: a DELETE keeps the transaction.
        self.conn
            .query_drop(format!("DELETE FROM {}", qualified(table)))
            .await
            .map_err(|e| MysqlSinkError::statement(table, "truncate", &e))
    }

    /// Records that the open transaction can no longer commit.
    fn track<T>(&mut self, r: Result<T, MysqlSinkError>) -> engine::Result<T> {
        if r.is_err() && self.in_txn {
            self.failed = true;
        }
        r.map_err(Into::into)
    }
}

impl Sink for MysqlSink {
    async fn ensure_table(&mut self, table: &Arc<TableSchema>) -> engine::Result<()> {
        let r = self.ensure(table).await;
        self.track(r)
    }

    async fn begin(&mut self) -> engine::Result<()> {
        if self.in_txn {
            return Err(MysqlSinkError::Config(
                "internal: begin called while a target transaction is open".into(),
            )
            .into());
        }
        self.in_txn = true;
        self.started = false;
        self.failed = false;
        self.touched.clear();
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
            return Err(MysqlSinkError::Config(
                "internal: commit called without an open target transaction".into(),
            )
            .into());
        }
        if self.failed {
            return Err(MysqlSinkError::Config(
                "internal: commit called after a failed statement; the target transaction \
                 must be rolled back"
                    .into(),
            )
            .into());
        }
        self.in_txn = false;
        self.touched.clear();
        if !std::mem::take(&mut self.started) {
            // Nothing was written: nothing to commit.
            return Ok(());
        }
        // When COMMIT fails the outcome is unknown (the connection may have
        // dropped after the server committed): the pipeline replays from the
        // last checkpoint, which is idempotent.
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| MysqlSinkError::transaction("commit", &e).into())
    }

    async fn rollback(&mut self) -> engine::Result<()> {
        self.in_txn = false;
        self.failed = false;
        self.touched.clear();
        if !std::mem::take(&mut self.started) {
            return Ok(());
        }
        self.conn
            .query_drop("ROLLBACK")
            .await
            .map_err(|e| MysqlSinkError::transaction("rollback", &e).into())
    }
}

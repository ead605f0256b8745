//! [`MysqlSink`]: the connections, the transaction and the per-table cache.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use engine::config::{password_from_env, MysqlTargetConfig};
use engine::{Sink, TableChanges, TableId, TableSchema};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tracing::{debug, info};

use super::apply::{self, job, query_job, Ctx, TableState};
use super::ddl;
use super::error::{MyFailure, MysqlSinkError};
use super::sql::{qualified, ServerInfo, TableSql};
use super::values::ColKind;
use super::writer::{Job, Writer};
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
/// transaction on the data connection, whose statements run on a writer task
/// (see `writer.rs`): a statement's error may surface at a later `apply` or
/// at `commit`, which waits for every statement.
pub struct MysqlSink {
    w: Writer,
    /// The server's id of the data connection.
    conn_id: u32,
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
    /// Further connections for rows of the initial copy
    /// ([`TableChanges::snapshot`]), opened on first use; each runs its own
    /// transaction (`true`: started), committed before the main one.
    extra: Vec<(Writer, bool)>,
    /// Which connection takes the next snapshot batch (0: the main one).
    next_writer: usize,
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
        let conn_id = conn.id();
        Ok(Self {
            w: Writer::start(conn),
            conn_id,
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
            extra: Vec::new(),
            next_writer: 0,
        })
    }

    /// What the sink found out about the server.
    pub fn server_info(&self) -> &ServerInfo {
        &self.server
    }

    /// The server's id of the data connection (what `KILL` takes).
    pub fn connection_id(&self) -> u32 {
        self.conn_id
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
        let widen = match self.tables.get(id) {
            Some(old) => ddl::plan_widen(&old.schema, schema, &target, &types)?,
            None => Vec::new(),
        };
        let target = if missing.is_empty() && widen.is_empty() {
            target
        } else {
            let names: Vec<&str> = missing
                .iter()
                .chain(&widen)
                .map(|&i| schema.columns[i].name.as_str())
                .collect();
            // The open transaction holds a metadata lock on a table it wrote
            // to: the ALTER would wait for it. Roll back, alter, and let the
            // pipeline replay the transaction.
            let open = self.started || self.extra.iter().any(|(_, started)| *started);
            let blocked = open && self.touched.contains(id);
            if blocked {
                self.started = false;
                self.failed = true;
                self.touched.clear();
                self.w
                    .reset(transaction_job("ROLLBACK", "rollback"))
                    .await?;
                self.reset_extra().await?;
            }
            let sql = ddl::alter_sql(schema, &missing, &widen, &types);
            self.run_ddl(id, "altering the table", &sql).await?;
            info!(table = %id, columns = ?names, added = missing.len(), widened = widen.len(), "altered target table");
            if blocked {
                self.tables.remove(id);
                return Err(MysqlSinkError::SchemaChanged(format!(
                    "target table {id} needed new or wider columns ({}) after the open \
                     transaction had written to it; MySQL cannot alter a table inside a \
                     transaction, so the transaction was rolled back and is retried with the \
                     columns in place",
                    names.join(", ")
                )));
            }
            self.read_target(id).await?.ok_or_else(|| {
                MysqlSinkError::Schema(format!("target table {id} vanished while being altered"))
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
                let (sql, table) = (old.sql.drop_stage.clone(), id.clone());
                self.w
                    .submit(job(move |conn| {
                        Box::pin(async move {
                            if let Err(e) = conn.query_drop(sql).await {
                                debug!(table = %table, error = %MyFailure::from_driver(&e), "dropping an old staging table failed");
                            }
                            Ok(())
                        })
                    }))
                    .await?;
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

    /// Queues `START TRANSACTION` before the transaction's first write.
    async fn start(&mut self) -> Result<(), MysqlSinkError> {
        if !self.started {
            self.w
                .submit(transaction_job("START TRANSACTION", "begin"))
                .await?;
            self.started = true;
        }
        Ok(())
    }

    async fn apply_inner(&mut self, changes: &TableChanges) -> Result<(), MysqlSinkError> {
        self.require_txn("apply")?;
        if self.w.failed() {
            // An earlier statement of this transaction failed: report it now.
            self.w.sync().await?;
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.ensure(&changes.table).await?;
        self.touched.insert(changes.table.id.clone());
        let k = self.snapshot_writer(changes).await?;
        if k == 0 {
            self.start().await?;
        }
        let Self {
            w,
            extra,
            opts,
            server,
            tables,
            ..
        } = self;
        let w = match k.checked_sub(1).and_then(|i| extra.get_mut(i)) {
            Some((x, _)) => x,
            None => w,
        };
        let Some(st) = tables.get_mut(&changes.table.id) else {
            return Err(MysqlSinkError::Schema(format!(
                "internal: no state for target table {}",
                changes.table.id
            )));
        };
        let mut cx = Ctx { w, opts, server };
        apply::apply(&mut cx, st, changes).await
    }

    /// The connection for `changes`: rows of the initial copy go round-robin
    /// over the main connection and [`MysqlSinkOptions::snapshot_connections`]
    /// − 1 more (on 2 cores the target server then executes two inserts at a
    /// time while dbsync encodes the next); everything else, and any batch
    /// that needs a staging table (session-bound), takes the main one (0).
    /// Starts the chosen extra connection's transaction.
    async fn snapshot_writer(&mut self, changes: &TableChanges) -> Result<usize, MysqlSinkError> {
        let extra = self.opts.snapshot_connections.saturating_sub(1);
        let plain = changes.snapshot
            && changes.deletes.is_empty()
            && changes.partial_updates.is_empty()
            && !matches!(
                changes.policy.upsert_mode(),
                engine::mapping::UpsertMode::UpdateIfPresent
            )
            && !self.opts.use_load(
                changes.upserts.len(),
                changes.likely_new,
                self.server.local_infile,
            );
        if !plain || extra == 0 {
            return Ok(0);
        }
        let k = self.next_writer % (extra + 1);
        self.next_writer = self.next_writer.wrapping_add(1);
        if k == 0 {
            return Ok(0);
        }
        while self.extra.len() < k {
            let conn = open(&self.conn_opts, &self.shown).await?;
            self.extra.push((Writer::start(conn), false));
        }
        let (w, started) = &mut self.extra[k - 1];
        if w.failed() {
            w.sync().await?;
        }
        if !*started {
            w.submit(transaction_job("START TRANSACTION", "begin"))
                .await?;
            *started = true;
        }
        Ok(k)
    }

    /// Rolls back the extra connections' transactions (clearing failures).
    async fn reset_extra(&mut self) -> Result<(), MysqlSinkError> {
        let mut first = Ok(());
        for (w, started) in &mut self.extra {
            let job = if std::mem::take(started) {
                transaction_job("ROLLBACK", "rollback")
            } else {
                job(|_| Box::pin(async { Ok(()) }))
            };
            let r = w.reset(job).await;
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Commits the extra connections' transactions (before the main one).
    async fn commit_extra(&mut self) -> Result<(), MysqlSinkError> {
        for i in 0..self.extra.len() {
            let (w, started) = &mut self.extra[i];
            if !std::mem::take(started) {
                continue;
            }
            if let Err(e) = w.call(transaction_job("COMMIT", "commit")).await {
                let _ = self.reset_extra().await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn truncate_inner(&mut self, table: &TableId) -> Result<(), MysqlSinkError> {
        self.require_txn("truncate")?;
        self.start().await?;
        self.touched.insert(table.clone());
        // TRUNCATE TABLE commits implicitly: a DELETE keeps the transaction.
        let schema = self
            .tables
            .get(table)
            .map(|st| st.schema.clone())
            .unwrap_or_else(|| {
                Arc::new(TableSchema {
                    id: table.clone(),
                    columns: Vec::new(),
                    key: Vec::new(),
                    dialect: engine::Dialect::MySql,
                })
            });
        let sql = format!("DELETE FROM {}", qualified(table));
        self.w
            .submit(query_job(schema, "truncate", sql, false))
            .await
    }

    /// Renames target table `from` to `to` (see [`Sink::rename_table`]), on
    /// the DDL connection: the pipeline calls it at the start of a fresh
    /// transaction, so the data connection holds no lock on either table.
    /// `RENAME TABLE` across databases works alike on MySQL 8 and MariaDB
    /// (both commit implicitly; MySQL 8's is atomic DDL, MariaDB's is
    /// crash-safe from 10.6).
    async fn rename_inner(&mut self, from: &TableId, to: &TableId) -> Result<(), MysqlSinkError> {
        self.require_txn("rename_table")?;
        if self.started && (self.touched.contains(from) || self.touched.contains(to)) {
            return Err(MysqlSinkError::Config(format!(
                "internal: rename of {from} requested after the open transaction wrote to it"
            )));
        }
        self.tables.remove(from);
        self.tables.remove(to);
        if self.read_target(from).await?.is_none() {
            // Renamed by an earlier attempt, or never created.
            return Ok(());
        }
        if self.read_target(to).await?.is_some() {
            return Err(MysqlSinkError::Schema(format!(
                "the source table was renamed, but target table {from} cannot be renamed to {to}: \
                 {to} exists already. Drop or rename one of them, then restart the task"
            )));
        }
        if !ddl::database_exists(self.ddl_conn().await?, to).await? {
            self.run_ddl(
                to,
                "creating the database",
                &ddl::create_database_sql(&to.schema),
            )
            .await?;
        }
        let sql = format!("RENAME TABLE {} TO {}", qualified(from), qualified(to));
        self.run_ddl(from, "renaming the table", &sql).await?;
        info!(from = %from, to = %to, "renamed target table");
        Ok(())
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
        if let Err(e) = self.commit_extra().await {
            if std::mem::take(&mut self.started) {
                let _ = self.w.reset(transaction_job("ROLLBACK", "rollback")).await;
            }
            return Err(e.into());
        }
        if !std::mem::take(&mut self.started) {
            // Nothing was written: nothing to commit.
            return Ok(());
        }
        // When COMMIT fails the outcome is unknown (the connection may have
        // dropped after the server committed): the pipeline replays from the
        // last checkpoint, which is idempotent. COMMIT runs only when every
        // statement before it succeeded (the writer skips jobs after a failure).
        let r = self.w.call(transaction_job("COMMIT", "commit")).await;
        if r.is_err() {
            // Clear the writer's failure for the next transaction (best effort).
            let _ = self.w.reset(transaction_job("ROLLBACK", "rollback")).await;
        }
        r.map_err(Into::into)
    }

    async fn rename_table(&mut self, from: &TableId, to: &TableId) -> engine::Result<()> {
        let r = self.rename_inner(from, to).await;
        self.track(r)
    }

    async fn rollback(&mut self) -> engine::Result<()> {
        self.in_txn = false;
        self.failed = false;
        self.touched.clear();
        let job = if std::mem::take(&mut self.started) {
            transaction_job("ROLLBACK", "rollback")
        } else {
            // Nothing was started; still clear a failure queued before.
            job(|_| Box::pin(async { Ok(()) }))
        };
        let extra = self.reset_extra().await;
        self.w.reset(job).await?;
        extra.map_err(Into::into)
    }
}

/// `START TRANSACTION`, `COMMIT` or `ROLLBACK` as a writer job.
fn transaction_job(sql: &'static str, action: &'static str) -> Job {
    job(move |conn| {
        Box::pin(async move {
            conn.query_drop(sql)
                .await
                .map_err(|e| MysqlSinkError::transaction(action, &e))
        })
    })
}

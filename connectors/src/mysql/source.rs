//! The MySQL/MariaDB source: a consistent snapshot handed over to the binlog
//! with no gap and no duplicate, then the binlog stream (`stream.rs`).
//!
//! - **First run (snapshotting).** A consistent-snapshot transaction gives
//!   the binlog position S it sees (`snapshot.rs`). S and the catalog at S
//!   (the schema history's first base) are stored before any row is sent;
//!   tables are copied in key order, chunk by chunk; `SnapshotDone` carries S
//!   and the stream starts there. A copy interrupted by a crash resumes
//!   after the last durable key from a newer snapshot; the stream still
//!   starts at the stored S, replaying every change since over the copied
//!   rows (upserts and deletes by key are idempotent), so the target converges.
//! - **Restart.** The stream resumes at the checkpoint's position (by GTID
//!   when `use_gtid`), with the catalog of that position from the schema
//!   history. Before that, the position must still be in the server's
//!   binlogs; when it is not, the task stops: a re-snapshot is needed.
//! - **INCREMENTAL_ONLY** starts at the server's current position, recorded
//!   at once with a heartbeat.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use engine::config::{MysqlSourceConfig, SourceConfig, SyncMode, TaskConfig};
use engine::event::{Heartbeat, SnapshotDone};
use engine::mapping::TableSelection;
use engine::metrics::{ConnectionRole, SourcePhase};
use engine::position::BinlogPosition;
use engine::{ChangeEvent, Checkpoint, Offset, Source, SourceContext, SourcePosition, TableId};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tracing::{info, warn};

use super::catalog;
use super::checks::{self, CheckOutcome};
use super::client::{self, Flavor, ServerInfo};
use super::error::MysqlSourceError;
use super::gtid::GtidState;
use super::schema::{Catalog, Schemas};
use super::schema_history::History;
use super::snapshot::{self, TableCopier};
use super::stream::{self, Selection, StreamSettings, Streamer};
use super::values::ValueOpts;

/// Source-state key of the snapshot's consistent point (JSON position).
const SNAPSHOT_POINT_KEY: &str = "snapshot/point";

/// A MySQL/MariaDB binlog source for one task.
pub struct MysqlSource {
    cfg: MysqlSourceConfig,
    server_id: u32,
    mode: SyncMode,
    selection: TableSelection,
}

impl MysqlSource {
    /// The source of `task` (whose source must be `type = "mysql"`); connects nothing yet.
    pub fn new(task: &TaskConfig) -> engine::Result<Self> {
        let SourceConfig::Mysql(cfg) = &task.source else {
            return Err(engine::Error::Config(format!(
                "task {:?}: not a MySQL source",
                task.name
            )));
        };
        Ok(Self {
            server_id: cfg.effective_server_id(&task.name),
            cfg: cfg.clone(),
            mode: task.sync_mode,
            selection: TableSelection::new(&task.mapping)?,
        })
    }

    fn value_opts(&self) -> ValueOpts {
        ValueOpts {
            zero_dates: self.cfg.zero_dates,
        }
    }

    /// Which databases are tracked and which tables replicated.
    async fn scope(&self, conn: &mut Conn) -> Result<Selection, MysqlSourceError> {
        let dbs: BTreeSet<String> = if self.selection.is_all() {
            if self.cfg.databases.is_empty() {
                self.cfg.url_database().into_iter().collect()
            } else {
                self.cfg.databases.iter().cloned().collect()
            }
        } else {
            let mut dbs: BTreeSet<String> = self
                .selection
                .exact_tables()
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.schema)
                .collect();
            let rows: Vec<(String, String)> = conn
                .query("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'")
                .await
                .map_err(|e| MysqlSourceError::query("listing tables", e))?;
            for (db, t) in rows {
                if !catalog::SYSTEM_DATABASES.contains(&db.to_ascii_lowercase().as_str())
                    && self.selection.matches(&TableId::new(db.clone(), t))
                {
                    dbs.insert(db);
                }
            }
            dbs
        };
        let sel = self.selection.clone();
        Ok(Selection {
            dbs,
            matches: Box::new(move |id| sel.matches(id)),
        })
    }

    /// The replicated tables: those of the catalog the selection takes,
    /// plus mapped tables that do not exist (so that checks name them).
    fn watched(
        &self,
        scope: &Selection,
        catalog: &Catalog,
        problems: &std::collections::BTreeMap<TableId, String>,
    ) -> Vec<TableId> {
        use super::schema_history::Scope;
        let mut out: BTreeSet<TableId> = catalog
            .tables
            .keys()
            .chain(problems.keys())
            .filter(|t| scope.watched(t))
            .cloned()
            .collect();
        out.extend(self.selection.exact_tables().unwrap_or_default());
        out.into_iter().collect()
    }

    /// Runs every prerequisite check (for `dbsync check`); never changes anything.
    pub async fn check(&self) -> Vec<CheckOutcome> {
        let conn = match client::opts(&self.cfg) {
            Ok(o) => client::connect(&o).await,
            Err(e) => Err(e),
        };
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                return vec![CheckOutcome {
                    name: "ensure_source_reachable",
                    result: Err(e.to_string()),
                }]
            }
        };
        let info = match client::server_info(&mut conn).await {
            Ok(i) => i,
            Err(e) => {
                return vec![CheckOutcome {
                    name: "ensure_source_reachable",
                    result: Err(e.to_string()),
                }]
            }
        };
        let mut out = vec![CheckOutcome {
            name: "ensure_source_reachable",
            result: Ok(format!(
                "connected to {} ({})",
                self.cfg.url.redacted(),
                info.version
            )),
        }];
        out.extend(checks::run_server_checks(&mut conn, &info, self.server_id).await);
        let tables = async {
            let scope = self.scope(&mut conn).await?;
            let dbs: Vec<String> = scope.dbs.iter().cloned().collect();
            let (cat, problems) = catalog::load(&mut conn, &dbs, info.flavor).await?;
            let watched = self.watched(&scope, &cat, &problems);
            checks::ensure_tables_replicable(&mut conn, &cat, &watched, &problems).await
        }
        .await;
        out.push(CheckOutcome {
            name: "ensure_tables_replicable",
            result: tables.map_err(|e| e.to_string()),
        });
        out
    }

    async fn run_inner(self, ctx: &mut SourceContext) -> Result<(), MysqlSourceError> {
        let opts = client::opts(&self.cfg)?;
        let mut conn = client::connect(&opts).await?;
        let _conn_open = ctx.events.reporter().connection(ConnectionRole::Source);
        let info = client::server_info(&mut conn).await?;
        checks::ensure_log_bin(&mut conn).await?;
        checks::ensure_binlog_format_row(&mut conn).await?;
        checks::ensure_binlog_row_image_full(&mut conn).await?;
        checks::ensure_server_id(&info, self.server_id)?;
        if let Err(e) = checks::ensure_binlog_retention(&mut conn).await {
            warn!(error = %e, "binlog retention is short");
        }
        let scope = self.scope(&mut conn).await?;
        let dbs: Vec<String> = scope.dbs.iter().cloned().collect();
        let (cat, problems) = catalog::load(&mut conn, &dbs, info.flavor).await?;
        let watched = self.watched(&scope, &cat, &problems);
        checks::ensure_tables_replicable(&mut conn, &cat, &watched, &problems).await?;

        let cp = ctx.checkpoint.clone().unwrap_or_else(Checkpoint::empty);
        let history = History::new(ctx.store.clone(), &ctx.task);
        let needs_snapshot = self.mode.snapshots() && !cp.snapshot.completed;

        if self.mode == SyncMode::FullOnly {
            if needs_snapshot {
                let point = self.copy(ctx, &opts, &info, &dbs, &watched, &cp).await?.0;
                emit_done(ctx, point).await?;
            }
            return Ok(());
        }

        let (start, start_catalog) = if needs_snapshot {
            let stored = load_point(ctx).await?;
            if stored.is_some() {
                info!("resuming an interrupted snapshot");
            }
            let (pos, snap_catalog) = match &stored {
                Some(p) => {
                    let (_, c) = self.copy(ctx, &opts, &info, &dbs, &watched, &cp).await?;
                    (p.clone(), c)
                }
                None => {
                    // Record the point and the catalog there before any row is sent.
                    let mut snap = client::connect(&opts).await?;
                    let pos = snapshot::begin(&mut snap, info.flavor).await?;
                    let (c, _) = catalog::load(&mut snap, &dbs, info.flavor).await?;
                    history.put_base(&pos, &c).await?;
                    store_point(ctx, &pos).await?;
                    self.copy_in(ctx, &mut snap, &c, &watched, &cp).await?;
                    snapshot::commit(&mut snap).await?;
                    (pos, c)
                }
            };
            emit_done(ctx, pos.clone()).await?;
            let c = match stored {
                Some(_) => history.load(&pos).await?.ok_or_else(history_gone)?,
                None => snap_catalog,
            };
            (pos, c)
        } else {
            match cp.stream.as_ref().map(|o| &o.commit) {
                Some(SourcePosition::Mysql(p)) => {
                    let c = history.load(p).await?.ok_or_else(history_gone)?;
                    (p.clone(), c)
                }
                Some(other) => {
                    return Err(MysqlSourceError::Resync(format!(
                        "the checkpoint holds a position of another source kind ({other}): reset the task's \
                         offsets (dbsync offsets reset --task <name>)"
                    )))
                }
                None => {
                    let p = catalog::current_position(&mut conn, info.flavor).await?;
                    history.put_base(&p, &cat).await?;
                    push(ctx, ChangeEvent::Heartbeat(Heartbeat { resume: Offset::new(SourcePosition::Mysql(p.clone()), 0) }))
                        .await?;
                    (p, cat)
                }
            }
        };

        ensure_position_available(&mut conn, &start).await?;
        let gtid = match (info.flavor, start.gtid_set.as_deref()) {
            (Flavor::MariaDb, Some(g)) => {
                GtidState::parse_maria(g).map_err(MysqlSourceError::Decode)?
            }
            (Flavor::MariaDb, None) => match catalog::maria_gtid_at(&mut conn, &start).await? {
                Some(g) => GtidState::parse_maria(&g).map_err(MysqlSourceError::Decode)?,
                None => GtidState::None,
            },
            (Flavor::MySql, Some(g)) => {
                GtidState::parse_mysql(g).map_err(MysqlSourceError::Decode)?
            }
            (Flavor::MySql, None) => GtidState::None,
        };
        let mut start = start;
        if start.gtid_set.is_none() {
            start.gtid_set = gtid.text().map(Into::into);
        }
        if self.cfg.use_gtid && start.gtid_set.is_none() {
            return Err(MysqlSourceError::Prerequisite(
                "use_gtid = true but the server reports no GTIDs: enable gtid_mode (MySQL) or set use_gtid = false".into(),
            ));
        }
        let settings = StreamSettings {
            server_id: self.server_id,
            heartbeat: Duration::from_secs(self.cfg.heartbeat_interval_secs),
            use_gtid: self.cfg.use_gtid,
            flavor: info.flavor,
            opts: self.value_opts(),
        };
        let stream = stream::open(&opts, &settings, &start).await?;
        let _repl_open = ctx
            .events
            .reporter()
            .connection(ConnectionRole::SourceReplication);
        info!(file = %start.file, position = start.pos, gtid = start.gtid_set.as_deref().unwrap_or(""), "streaming changes");
        ctx.events.reporter().phase(SourcePhase::Streaming);
        let mut streamer = Streamer::new(
            ctx,
            settings,
            Schemas::new(start_catalog),
            scope,
            history,
            gtid,
            start,
            Some(conn),
        );
        streamer.run(stream).await
    }

    /// Copies the watched tables in a new consistent snapshot; returns its
    /// position and the catalog read in it.
    async fn copy(
        &self,
        ctx: &mut SourceContext,
        opts: &Opts,
        info: &ServerInfo,
        dbs: &[String],
        watched: &[TableId],
        cp: &Checkpoint,
    ) -> Result<(BinlogPosition, Catalog), MysqlSourceError> {
        let mut snap = client::connect(opts).await?;
        let pos = snapshot::begin(&mut snap, info.flavor).await?;
        let (c, _) = catalog::load(&mut snap, dbs, info.flavor).await?;
        self.copy_in(ctx, &mut snap, &c, watched, cp).await?;
        snapshot::commit(&mut snap).await?;
        Ok((pos, c))
    }

    async fn copy_in(
        &self,
        ctx: &mut SourceContext,
        snap: &mut Conn,
        c: &Catalog,
        watched: &[TableId],
        cp: &Checkpoint,
    ) -> Result<(), MysqlSourceError> {
        let reporter = ctx.events.reporter().clone();
        reporter.phase(SourcePhase::Snapshotting);
        reporter.snapshot_tables(watched.len());
        for id in watched {
            let def = c.tables.get(id).cloned().ok_or_else(|| {
                MysqlSourceError::Prerequisite(format!("table {id} does not exist in the source"))
            })?;
            let progress = cp
                .snapshot
                .tables
                .get(&id.to_string())
                .cloned()
                .unwrap_or_default();
            if progress.done {
                continue;
            }
            let est: Option<(Option<u64>,)> = snap
                .exec_first(
                    "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    (id.schema.as_str(), id.name.as_str()),
                )
                .await
                .unwrap_or(None);
            if let Some((Some(n),)) = est {
                reporter.snapshot_estimated_rows(&id.to_string(), n);
            }
            TableCopier {
                conn: snap,
                table: Arc::new(def.to_schema(id)),
                def,
                chunk_rows: self.cfg.snapshot_chunk_rows,
                progress,
                opts: self.value_opts(),
            }
            .run(&mut ctx.events, &ctx.shutdown)
            .await?;
        }
        Ok(())
    }
}

impl Source for MysqlSource {
    async fn run(self, mut ctx: SourceContext) -> engine::Result<()> {
        match self.run_inner(&mut ctx).await {
            Ok(()) | Err(MysqlSourceError::Stopped) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn history_gone() -> MysqlSourceError {
    MysqlSourceError::Resync(
        "the schema history for this task's position is missing (was the data directory replaced?): \
         re-sync the task (dbsync offsets reset --task <name>)"
            .into(),
    )
}

/// The resume position must still be in the server's binlogs.
async fn ensure_position_available(
    conn: &mut Conn,
    p: &BinlogPosition,
) -> Result<(), MysqlSourceError> {
    let logs = catalog::binary_logs(conn).await?;
    match logs.iter().find(|(name, _)| name.as_str() == &*p.file) {
        Some((_, size)) if p.pos <= *size => Ok(()),
        Some((_, size)) => Err(MysqlSourceError::Resync(format!(
            "this task's position {}:{} is beyond the end of that binlog ({size} bytes) — the server's binlogs \
             were reset or belong to another server: re-snapshot needed (dbsync offsets reset --task <name>)",
            p.file, p.pos
        ))),
        None => Err(MysqlSourceError::Resync(format!(
            "binlog {} holding this task's position {}:{} has been purged from the server (oldest is {}); the \
             changes since are lost at the source: re-snapshot needed — re-sync the task (dbsync offsets reset \
             --task <name>) and keep binlogs longer (binlog_expire_logs_seconds)",
            p.file,
            p.file,
            p.pos,
            logs.first().map_or("none", |(n, _)| n.as_str())
        ))),
    }
}

async fn load_point(ctx: &SourceContext) -> Result<Option<BinlogPosition>, MysqlSourceError> {
    let store = ctx.store.clone();
    let task = ctx.task.clone();
    let v = tokio::task::spawn_blocking(move || store.source_state(&task, SNAPSHOT_POINT_KEY))
        .await
        .map_err(|e| MysqlSourceError::Store(e.to_string()))?
        .map_err(|e| MysqlSourceError::Store(e.to_string()))?;
    match v.into_iter().find(|(k, _)| k == SNAPSHOT_POINT_KEY) {
        Some((_, bytes)) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            MysqlSourceError::Store(format!("stored snapshot point is unreadable: {e}"))
        }),
        None => Ok(None),
    }
}

async fn store_point(ctx: &SourceContext, p: &BinlogPosition) -> Result<(), MysqlSourceError> {
    let store = ctx.store.clone();
    let task = ctx.task.clone();
    let bytes = serde_json::to_vec(p).map_err(|e| MysqlSourceError::Store(e.to_string()))?;
    tokio::task::spawn_blocking(move || store.put_source_state(&task, SNAPSHOT_POINT_KEY, &bytes))
        .await
        .map_err(|e| MysqlSourceError::Store(e.to_string()))?
        .map_err(|e| MysqlSourceError::Store(e.to_string()))
}

async fn push(ctx: &mut SourceContext, ev: ChangeEvent) -> Result<(), MysqlSourceError> {
    tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => Err(MysqlSourceError::Stopped),
        r = ctx.events.push(ev) => r.map_err(|_| MysqlSourceError::Stopped),
    }
}

async fn emit_done(ctx: &mut SourceContext, point: BinlogPosition) -> Result<(), MysqlSourceError> {
    push(
        ctx,
        ChangeEvent::SnapshotDone(SnapshotDone {
            consistent_point: Offset::new(SourcePosition::Mysql(point), 0),
        }),
    )
    .await?;
    tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => Err(MysqlSourceError::Stopped),
        r = ctx.events.flush() => r.map_err(|_| MysqlSourceError::Stopped),
    }
}

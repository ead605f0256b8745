//! The PostgreSQL source: a consistent snapshot handed over to logical
//! replication (pgoutput) with no gap.
//!
//! Subtleties, decided here once:
//! - **Positions.** Every event of a transaction carries the LSN of its commit
//!   record (`Begin.final_lsn`) and its ordinal; the transaction's resume
//!   offset is the *end* LSN of the commit record. Restarting replication at
//!   a resume LSN makes the server skip every transaction whose commit record
//!   starts before it, and the pipeline drops anything older as well.
//! - **Feedback.** Standby status reports `write` = what was received and
//!   `flush`/`apply` = what the pipeline has durably checkpointed (`acked`),
//!   never more, so the slot keeps every change not yet in the target. It is
//!   sent every second when the acknowledged LSN moved, every
//!   `status_interval_secs` regardless, and whenever the server asks.
//! - **Idle.** A keepalive outside a transaction means nothing before its
//!   `wal_end` is pending for us; it becomes a `Heartbeat`, so the checkpoint
//!   and the slot advance while the published tables are idle. While idle the
//!   status update asks for a reply, so this happens every status interval.
//! - **Backpressure.** While the pipeline queue is full the source stops
//!   reading the socket (the server then stops sending) but keeps sending
//!   status updates so the server does not time the connection out.
//! - **The slot** is created with an exported snapshot on the first run of a
//!   snapshotting task; the copy reads that snapshot, and the stream starts at
//!   the slot's consistent point. A slot found without a checkpoint (a run
//!   killed between its first target commit and its first checkpoint, or an
//!   offsets reset) is kept: the copy starts again and the stream replays
//!   everything since the slot's confirmed point over it, so rows deleted in
//!   between cannot survive in the target. A slot that is gone, or that has
//!   confirmed more than the checkpoint holds, means changes cannot be
//!   replayed: the task stops and asks for a re-sync.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::config::{PostgresSourceConfig, SourceConfig, SyncMode, TaskConfig};
use engine::event::{
    Begin, Commit, Delete, Heartbeat, Insert, Relation, SnapshotDone, Truncate, Update,
};
use engine::mapping::TableSelection;
use engine::metrics::{ConnectionRole, SourcePhase};
use engine::pgtext::{parse, SESSION_SETTINGS};
use engine::{
    ChangeEvent, Checkpoint, Lsn, Offset, Row, Source, SourceContext, TableId, TableSchema, Value,
};
use tokio_postgres::Client;
use tracing::{info, warn};

use super::catalog::{self, CatalogTable};
use super::checks::{self, CheckOutcome};
use super::client::{connect, pg_config};
use super::error::PgSourceError;
use super::lag;
use super::pgoutput::{self, PgOutput, RelationBody, TupleValue};
use super::replication::{
    pg_epoch_us_to_utc, ReplicationConnection, ReplicationMessage, ReplicationStream,
};
use super::snapshot::{self, TableCopier};

/// A PostgreSQL logical replication source for one task.
pub struct PostgresSource {
    cfg: PostgresSourceConfig,
    slot: String,
    publication: String,
    mode: SyncMode,
    /// Mapped source tables; `None` = every table of the publication.
    tables: Option<Vec<TableId>>,
    /// Set when mappings name tables by pattern: matched against the catalog.
    patterns: Option<TableSelection>,
}

impl PostgresSource {
    pub fn new(task: &TaskConfig) -> engine::Result<Self> {
        let SourceConfig::Postgresql(cfg) = &task.source else {
            return Err(engine::Error::Config(format!(
                "task {:?}: not a PostgreSQL source",
                task.name
            )));
        };
        let selection = TableSelection::new(&task.mapping)?;
        let tables = selection.exact_tables();
        let patterns = (!selection.is_all() && tables.is_none()).then_some(selection);
        Ok(Self {
            cfg: cfg.clone(),
            slot: task.slot_name(),
            publication: task.publication_name(),
            mode: task.sync_mode,
            tables,
            patterns,
        })
    }

    /// The tables this task replicates (creating the publication when allowed).
    async fn resolve_tables(
        &self,
        client: &Client,
        create: bool,
    ) -> Result<Vec<TableId>, PgSourceError> {
        let tables = match &self.patterns {
            Some(sel) => {
                let matched = sel.select(all_user_tables(client).await?);
                if matched.is_empty() {
                    return Err(PgSourceError::Prerequisite(
                        "no source table matches the [[task.mapping]] patterns".into(),
                    ));
                }
                Some(matched)
            }
            None => self.tables.clone(),
        };
        catalog::ensure_publication(client, &self.publication, tables.as_deref(), create).await?;
        let published = catalog::publication_tables(client, &self.publication).await?;
        match &tables {
            None => Ok(published),
            Some(wanted) => {
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|t| !published.contains(t))
                    .map(|t| t.to_string())
                    .collect();
                if !missing.is_empty() {
                    return Err(PgSourceError::Prerequisite(format!(
                        "publication {} does not include {}: run ALTER PUBLICATION \"{}\" ADD TABLE {}",
                        self.publication,
                        missing.join(", "),
                        self.publication,
                        missing.join(", ")
                    )));
                }
                Ok(wanted.clone())
            }
        }
    }

    /// Runs every prerequisite check (for `dbsync check`); never creates anything.
    pub async fn check(&self) -> Vec<CheckOutcome> {
        let client = match pg_config(&self.cfg) {
            Ok(pc) => connect(&pc).await,
            Err(e) => Err(e),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                return vec![CheckOutcome {
                    name: "ensure_source_reachable",
                    result: Err(e.to_string()),
                }]
            }
        };
        let mut out = vec![CheckOutcome {
            name: "ensure_source_reachable",
            result: Ok(format!("connected to {}", self.cfg.url.redacted())),
        }];
        let tables = match catalog::publication(&client, &self.publication).await {
            Ok(Some(_)) => match self.resolve_tables(&client, false).await {
                Ok(t) => {
                    out.push(CheckOutcome {
                        name: "ensure_publication",
                        result: Ok(format!(
                            "publication {} covers {} table(s)",
                            self.publication,
                            t.len()
                        )),
                    });
                    t
                }
                Err(e) => {
                    out.push(CheckOutcome {
                        name: "ensure_publication",
                        result: Err(e.to_string()),
                    });
                    self.tables.clone().unwrap_or_default()
                }
            },
            Ok(None) if self.cfg.create_publication => {
                out.push(CheckOutcome {
                    name: "ensure_publication",
                    result: Ok(format!("publication {} will be created", self.publication)),
                });
                match &self.tables {
                    Some(t) => t.clone(),
                    None => all_user_tables(&client).await.unwrap_or_default(),
                }
            }
            Ok(None) => {
                out.push(CheckOutcome {
                    name: "ensure_publication",
                    result: Err(format!(
                        "publication {} does not exist and create_publication = false: create it on the source",
                        self.publication
                    )),
                });
                self.tables.clone().unwrap_or_default()
            }
            Err(e) => {
                out.push(CheckOutcome {
                    name: "ensure_publication",
                    result: Err(e.to_string()),
                });
                Vec::new()
            }
        };
        out.extend(checks::run_all(&client, &self.slot, &tables).await);
        out
    }

    async fn run_inner(self, ctx: &mut SourceContext) -> Result<(), PgSourceError> {
        let pc = pg_config(&self.cfg)?;
        let client = connect(&pc).await?;
        let _client_open = ctx.events.reporter().connection(ConnectionRole::Source);
        checks::ensure_wal_level_logical(&client).await?;
        checks::ensure_replication_privilege(&client).await?;
        let tables = self
            .resolve_tables(&client, self.cfg.create_publication)
            .await?;
        let catalog_tables = checks::ensure_tables_replicable(&client, &tables).await?;
        checks::ensure_slot_usable(&client, &self.slot).await?;
        let cp = ctx.checkpoint.clone().unwrap_or_else(Checkpoint::empty);
        let slot = catalog::slot(&client, &self.slot).await?;
        let needs_snapshot = self.mode.snapshots() && !cp.snapshot.completed;
        let fresh = cp.stream.is_none() && cp.snapshot.tables.is_empty();

        if self.mode == SyncMode::FullOnly {
            if needs_snapshot {
                // No stream follows, so no slot: one repeatable-read snapshot.
                let point = catalog::current_lsn(&client).await?;
                self.copy_tables(&client, &catalog_tables, &cp, None, ctx)
                    .await?;
                self.emit_done(ctx, point).await?;
            }
            return Ok(());
        }

        let mut repl = ReplicationConnection::connect(&pc, SESSION_SETTINGS).await?;
        let _repl_open = ctx
            .events
            .reporter()
            .connection(ConnectionRole::SourceReplication);
        let start = if needs_snapshot {
            // A slot without a checkpoint means an earlier run may have
            // committed rows before it could checkpoint them: keep the slot
            // and resume, so every change since its consistent point is
            // replayed over the copy (dropping it would lose deletes).
            let point = if fresh && slot.is_none() {
                let info = repl.create_slot(&self.slot, true).await?;
                info!(slot = %self.slot, consistent_point = %info.consistent_point, "created replication slot");
                self.copy_tables(
                    &client,
                    &catalog_tables,
                    &cp,
                    info.snapshot_name.as_deref(),
                    ctx,
                )
                .await?;
                info.consistent_point
            } else {
                let s = slot.as_ref().ok_or_else(|| slot_gone(&self.slot))?;
                let point = s.confirmed_flush.ok_or_else(|| slot_gone(&self.slot))?;
                info!(slot = %self.slot, "resuming an interrupted snapshot from the slot's consistent point");
                self.copy_tables(&client, &catalog_tables, &cp, None, ctx)
                    .await?;
                point
            };
            self.emit_done(ctx, point).await?;
            point
        } else {
            match (cp.stream.as_ref().and_then(Offset::pg_lsn), slot) {
                (Some(_), None) => return Err(slot_gone(&self.slot)),
                (None, None) => {
                    let info = repl.create_slot(&self.slot, false).await?;
                    info!(slot = %self.slot, consistent_point = %info.consistent_point, "created replication slot");
                    // Record where the stream starts, so a restart resumes here.
                    push(
                        ctx,
                        ChangeEvent::Heartbeat(Heartbeat {
                            resume: Offset::postgres(info.consistent_point, 0),
                        }),
                    )
                    .await?;
                    info.consistent_point
                }
                (None, Some(s)) => s.confirmed_flush.unwrap_or_default(),
                (Some(resume), Some(s)) => {
                    if let Some(confirmed) = s.confirmed_flush {
                        if confirmed > resume {
                            return Err(PgSourceError::Resync(format!(
                                "replication slot {} has confirmed {confirmed}, beyond this task's checkpoint {resume}: \
                                 the changes in between cannot be replayed (was the data directory restored?). \
                                 Re-sync the task: dbsync offsets reset --task <name>",
                                self.slot
                            )));
                        }
                    }
                    resume
                }
            }
        };
        let stream = repl
            .start_replication(&self.slot, start, &self.publication)
            .await?;
        ctx.events.reporter().phase(SourcePhase::Streaming);
        info!(slot = %self.slot, start = %start, "streaming changes");
        let catalog_by_oid = catalog_tables.into_iter().map(|t| (t.oid, t)).collect();
        let mut streamer = Streamer {
            ctx,
            stream,
            client,
            catalog: catalog_by_oid,
            relations: HashMap::new(),
            txn: None,
            last_received: start,
            last_resume: start,
            last_sent_flush: Lsn(0),
            last_status: Instant::now(),
            status_interval: Duration::from_secs(self.cfg.status_interval_secs),
            slot: self.slot.clone(),
            next_lag_poll: Instant::now(),
            messages_since_poll: 0,
        };
        streamer.run().await
    }

    async fn copy_tables(
        &self,
        client: &Client,
        tables: &[CatalogTable],
        cp: &Checkpoint,
        snapshot_name: Option<&str>,
        ctx: &mut SourceContext,
    ) -> Result<(), PgSourceError> {
        let reporter = ctx.events.reporter().clone();
        reporter.phase(SourcePhase::Snapshotting);
        reporter.snapshot_tables(tables.len());
        // Estimates come first: a failing query must not abort the snapshot transaction.
        let mut todo = Vec::with_capacity(tables.len());
        for t in tables {
            let progress = cp
                .snapshot
                .tables
                .get(&t.schema.id.to_string())
                .cloned()
                .unwrap_or_default();
            if progress.done {
                continue;
            }
            let estimated = snapshot::estimate_rows(client, t.oid, &t.schema.id).await;
            if let Some(n) = estimated {
                reporter.snapshot_estimated_rows(&t.schema.id.to_string(), n);
            }
            todo.push((t, progress, estimated));
        }
        snapshot::begin(client, snapshot_name).await?;
        for (t, progress, estimated_rows) in todo {
            TableCopier {
                client,
                table: t.schema.clone(),
                chunk_rows: self.cfg.snapshot_chunk_rows,
                progress,
                estimated_rows,
            }
            .run(&mut ctx.events, &ctx.shutdown)
            .await?;
        }
        snapshot::commit(client).await
    }

    async fn emit_done(&self, ctx: &mut SourceContext, point: Lsn) -> Result<(), PgSourceError> {
        push(
            ctx,
            ChangeEvent::SnapshotDone(SnapshotDone {
                consistent_point: Offset::postgres(point, 0),
            }),
        )
        .await?;
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => Err(PgSourceError::Stopped),
            r = ctx.events.flush() => r.map_err(|_| PgSourceError::Stopped),
        }
    }
}

impl Source for PostgresSource {
    async fn run(self, mut ctx: SourceContext) -> engine::Result<()> {
        match self.run_inner(&mut ctx).await {
            Ok(()) | Err(PgSourceError::Stopped) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

async fn all_user_tables(client: &Client) -> Result<Vec<TableId>, PgSourceError> {
    let rows = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_tables
              WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| PgSourceError::query("listing tables", e))?;
    Ok(rows
        .iter()
        .map(|r| TableId::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

fn slot_gone(slot: &str) -> PgSourceError {
    PgSourceError::Resync(format!(
        "replication slot {slot} no longer exists, so changes since the last checkpoint are lost at the source: \
         re-sync the task (dbsync offsets reset --task <name>) to copy the tables again"
    ))
}

async fn push(ctx: &mut SourceContext, ev: ChangeEvent) -> Result<(), PgSourceError> {
    tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => Err(PgSourceError::Stopped),
        r = ctx.events.push(ev) => r.map_err(|_| PgSourceError::Stopped),
    }
}

struct Txn {
    final_lsn: Lsn,
    ordinal: u64,
}

/// The streaming phase.
struct Streamer<'a> {
    ctx: &'a mut SourceContext,
    stream: ReplicationStream,
    client: Client,
    catalog: HashMap<u32, CatalogTable>,
    relations: HashMap<u32, Arc<TableSchema>>,
    txn: Option<Txn>,
    last_received: Lsn,
    /// The highest resume LSN emitted (commit end or heartbeat).
    last_resume: Lsn,
    last_sent_flush: Lsn,
    last_status: Instant,
    status_interval: Duration,
    slot: String,
    /// When to next read the slot's lag (metrics).
    next_lag_poll: Instant,
    /// Messages since the last look at `next_lag_poll`.
    messages_since_poll: u32,
}

impl Streamer<'_> {
    async fn run(&mut self) -> Result<(), PgSourceError> {
        let result = self.stream_until_stopped().await;
        if matches!(result, Err(PgSourceError::Stopped)) {
            self.finish().await;
        }
        result
    }

    /// On a requested stop: close the queue, wait (bounded) for the pipeline
    /// to publish its last acknowledgement, and report it to the server, so
    /// the slot releases WAL now rather than on the next start.
    async fn finish(&mut self) {
        self.ctx.events.close();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Ok(Ok(())) = tokio::time::timeout_at(deadline, self.ctx.acked.changed()).await {}
        if let Err(e) = self.send_status(false).await {
            warn!(error = %e, "could not send the final standby status");
        }
    }

    async fn stream_until_stopped(&mut self) -> Result<(), PgSourceError> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.ctx.events.has_pending() && !self.stream.has_buffered_message() {
                self.flush_events().await?;
            }
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => return Err(PgSourceError::Stopped),
                msg = self.stream.next() => match msg? {
                    None => {
                        return Err(PgSourceError::Connect("the server ended the replication stream".into()))
                    }
                    Some(ReplicationMessage::XLogData { wal_end, data, .. }) => {
                        self.last_received = self.last_received.max(wal_end);
                        let msg = pgoutput::decode(data).map_err(|e| PgSourceError::Decode(e.to_string()))?;
                        self.handle(msg).await?;
                        self.messages_since_poll += 1;
                        if self.messages_since_poll >= lag::CHECK_EVERY_MESSAGES {
                            // A steady stream starves the tick below (biased select).
                            self.messages_since_poll = 0;
                            self.maybe_poll_lag().await;
                            // Acknowledge durable progress under sustained load too.
                            if self.last_status.elapsed() >= Duration::from_secs(1) {
                                self.maybe_send_status().await?;
                            }
                        }
                    }
                    Some(ReplicationMessage::Keepalive { wal_end, reply_requested, .. }) => {
                        self.last_received = self.last_received.max(wal_end);
                        if self.txn.is_none() && wal_end > self.last_resume {
                            self.last_resume = wal_end;
                            self.emit(ChangeEvent::Heartbeat(Heartbeat { resume: Offset::postgres(wal_end, 0) }))
                                .await?;
                        }
                        if reply_requested {
                            self.send_status(false).await?;
                        }
                    }
                },
                _ = tick.tick() => {
                    self.maybe_send_status().await?;
                    self.maybe_poll_lag().await;
                }
            }
        }
    }

    /// Every [`lag::POLL_EVERY`], reports how far the slot is behind the server.
    async fn maybe_poll_lag(&mut self) {
        if Instant::now() < self.next_lag_poll {
            return;
        }
        self.next_lag_poll = Instant::now() + lag::POLL_EVERY;
        lag::report_slot_lag(&self.client, &self.slot, self.ctx.events.reporter()).await;
    }

    fn acked(&self) -> Lsn {
        self.ctx
            .acked
            .borrow()
            .as_ref()
            .and_then(Offset::pg_lsn)
            .unwrap_or_default()
    }

    async fn maybe_send_status(&mut self) -> Result<(), PgSourceError> {
        let due = self.last_status.elapsed() >= self.status_interval;
        if due || self.acked() > self.last_sent_flush {
            // Ask for a keepalive when idle, so a heartbeat can advance the slot.
            let idle = self.txn.is_none() && !self.ctx.events.has_pending();
            self.send_status(due && idle).await?;
        }
        Ok(())
    }

    async fn send_status(&mut self, reply: bool) -> Result<(), PgSourceError> {
        let flush = self.acked();
        self.stream
            .send_status(self.last_received, flush, flush, reply)
            .await?;
        self.last_sent_flush = flush;
        self.last_status = Instant::now();
        Ok(())
    }

    /// Sends every buffered event, keeping the connection alive while waiting.
    async fn flush_events(&mut self) -> Result<(), PgSourceError> {
        while self.ctx.events.has_pending() {
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => return Err(PgSourceError::Stopped),
                r = self.ctx.events.flush() => r.map_err(|_| PgSourceError::Stopped)?,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    self.maybe_send_status().await?;
                    self.maybe_poll_lag().await;
                }
            }
        }
        Ok(())
    }

    async fn emit(&mut self, ev: ChangeEvent) -> Result<(), PgSourceError> {
        if self.ctx.events.is_full() {
            self.flush_events().await?;
        }
        self.ctx
            .events
            .push(ev)
            .await
            .map_err(|_| PgSourceError::Stopped)
    }

    fn next_offset(&mut self, what: &str) -> Result<Offset, PgSourceError> {
        let txn = self
            .txn
            .as_mut()
            .ok_or_else(|| PgSourceError::Decode(format!("{what} outside a transaction")))?;
        txn.ordinal += 1;
        Ok(Offset::postgres(txn.final_lsn, txn.ordinal))
    }

    fn table(&self, rel: u32) -> Result<Arc<TableSchema>, PgSourceError> {
        self.relations.get(&rel).cloned().ok_or_else(|| {
            PgSourceError::Decode(format!(
                "change for relation oid {rel} before its Relation message"
            ))
        })
    }

    async fn handle(&mut self, msg: PgOutput) -> Result<(), PgSourceError> {
        match msg {
            PgOutput::Begin {
                final_lsn,
                commit_time_us,
                xid,
            } => {
                self.txn = Some(Txn {
                    final_lsn,
                    ordinal: 0,
                });
                self.emit(ChangeEvent::Begin(Begin {
                    offset: Offset::postgres(final_lsn, 0),
                    commit_time: Some(pg_epoch_us_to_utc(commit_time_us)),
                    xid: Some(xid as u64),
                }))
                .await?;
            }
            PgOutput::Commit {
                end_lsn,
                commit_time_us,
                ..
            } => {
                let offset = self.next_offset("Commit")?;
                self.txn = None;
                self.last_resume = self.last_resume.max(end_lsn);
                self.emit(ChangeEvent::Commit(Commit {
                    offset,
                    resume: Offset::postgres(end_lsn, 0),
                    commit_time: Some(pg_epoch_us_to_utc(commit_time_us)),
                }))
                .await?;
            }
            PgOutput::Relation(body) => {
                let oid = body.oid;
                let table = self.relation_schema(body).await?;
                self.relations.insert(oid, table.clone());
                let offset = self.next_offset("Relation")?;
                self.emit(ChangeEvent::Relation(Relation { offset, table }))
                    .await?;
            }
            PgOutput::Insert { rel, new } => {
                let table = self.table(rel)?;
                let row = decode_tuple(&table, &new, false)?;
                let offset = self.next_offset("Insert")?;
                self.emit(ChangeEvent::Insert(Insert { offset, table, row }))
                    .await?;
            }
            PgOutput::Update {
                rel,
                old,
                key_only_old,
                new,
            } => {
                let table = self.table(rel)?;
                let before = old
                    .map(|o| decode_tuple(&table, &o, key_only_old))
                    .transpose()?;
                let after = decode_tuple(&table, &new, false)?;
                let offset = self.next_offset("Update")?;
                self.emit(ChangeEvent::Update(Update {
                    offset,
                    table,
                    before,
                    after,
                }))
                .await?;
            }
            PgOutput::Delete {
                rel,
                old,
                key_only_old,
            } => {
                let table = self.table(rel)?;
                let before = decode_tuple(&table, &old, key_only_old)?;
                let offset = self.next_offset("Delete")?;
                self.emit(ChangeEvent::Delete(Delete {
                    offset,
                    table,
                    before,
                }))
                .await?;
            }
            PgOutput::Truncate { rels, .. } => {
                let tables = rels
                    .iter()
                    .map(|r| self.table(*r))
                    .collect::<Result<Vec<_>, _>>()?;
                let offset = self.next_offset("Truncate")?;
                self.emit(ChangeEvent::Truncate(Truncate { offset, tables }))
                    .await?;
            }
            PgOutput::Origin { .. } | PgOutput::Type { .. } | PgOutput::Message { .. } => {}
        }
        Ok(())
    }

    /// The schema of a relation the stream announced: the catalog's (with
    /// nullability, exact types and the primary key) when it matches the
    /// stream's columns, else built from the message itself.
    async fn relation_schema(
        &mut self,
        body: RelationBody,
    ) -> Result<Arc<TableSchema>, PgSourceError> {
        let id = TableId::new(body.namespace.clone(), body.name.clone());
        if let Some(t) = self
            .catalog
            .get(&body.oid)
            .filter(|t| matches_relation(t, &body))
        {
            return Ok(t.schema.clone());
        }
        if let Some(t) = catalog::load_table(&self.client, &id).await? {
            if matches_relation(&t, &body) {
                let schema = t.schema.clone();
                self.catalog.insert(body.oid, t);
                return Ok(schema);
            }
        }
        // The table changed again since; describe it from the message.
        let mut columns = Vec::with_capacity(body.columns.len());
        let mut key = Vec::new();
        for (i, c) in body.columns.iter().enumerate() {
            let (formatted, elem) =
                catalog::describe_type(&self.client, c.type_oid, c.type_mod).await?;
            if c.key {
                key.push(i);
            }
            columns.push(engine::ColumnSchema {
                name: c.name.clone(),
                data_type: super::types::data_type(c.type_oid, c.type_mod, elem, &formatted),
                nullable: true,
                native_type: formatted,
                default: None,
            });
        }
        Ok(Arc::new(TableSchema {
            id,
            columns,
            key,
            dialect: engine::Dialect::Postgres,
        }))
    }
}

fn matches_relation(t: &CatalogTable, body: &RelationBody) -> bool {
    t.schema.columns.len() == body.columns.len()
        && t.schema
            .columns
            .iter()
            .zip(&t.columns)
            .zip(&body.columns)
            .all(|((sc, cc), bc)| {
                sc.name == bc.name && cc.type_oid == bc.type_oid && cc.type_mod == bc.type_mod
            })
}

/// Decodes a pgoutput tuple into a row. In a key-only old tuple the non-key
/// columns were not sent: they become `Unchanged`.
fn decode_tuple(
    table: &TableSchema,
    tuple: &[TupleValue],
    key_only: bool,
) -> Result<Row, PgSourceError> {
    if tuple.len() != table.columns.len() {
        return Err(PgSourceError::Decode(format!(
            "{}: tuple has {} columns, the relation {}",
            table.id,
            tuple.len(),
            table.columns.len()
        )));
    }
    let mut row = Vec::with_capacity(tuple.len());
    for (i, (col, v)) in table.columns.iter().zip(tuple).enumerate() {
        if key_only && !table.key.contains(&i) {
            row.push(Value::Unchanged);
            continue;
        }
        row.push(match v {
            TupleValue::Null => Value::Null,
            TupleValue::UnchangedToast => Value::Unchanged,
            TupleValue::Text(b) => {
                let text = std::str::from_utf8(b).map_err(|_| {
                    PgSourceError::Decode(format!(
                        "{} column {}: text is not UTF-8",
                        table.id, col.name
                    ))
                })?;
                parse(&col.data_type, text).map_err(|e| {
                    PgSourceError::Decode(format!("{} column {}: {e}", table.id, col.name))
                })?
            }
            TupleValue::Binary(_) => {
                return Err(PgSourceError::Decode(format!(
                    "{} column {}: binary tuple data was not requested",
                    table.id, col.name
                )))
            }
        });
    }
    Ok(row)
}

//! The pipeline: one task's source → bounded queue → applier → sink, with
//! checkpoints written only after the sink committed.
//!
//! ```text
//!  Source::run ──chunks of events──▶ [bounded mpsc] ──▶ Applier ──▶ Sink
//!       ▲                                                  │
//!       └────────── acked resume offset (watch) ◀── CheckpointStore::save
//! ```
//!
//! The applier groups whole source transactions into one target transaction
//! until `batch_size` rows or `batch_bytes` are buffered, the queue runs dry,
//! or `batch_timeout` passes. A source transaction larger than the batch is
//! written to the sink in pieces inside one target transaction and committed
//! once, at its source commit, so memory stays bounded and the transaction is
//! never half-visible. After `Sink::commit` returns, the checkpoint (resume
//! offset of the last whole transaction, snapshot progress) is saved — in the
//! background while the next batch is applied, one save at a time, in order —
//! and published to the source once durable, which may then acknowledge it
//! to its server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::batch::{Coalescer, RowChange};
use crate::config::{TaskConfig, DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_EVENTS};
use crate::contracts::{
    CheckpointStore, EventSender, Sink, Source, SourceContext, TableChanges, TaskGuard,
};
use crate::error::{Error, Result};
use crate::event::ChangeEvent;
use crate::mapping::{MappedChange, MappedTable, TableRouter};
use crate::metrics::{
    AppliedCounts, CommitRecord, LatencyHistogram, LiveStatus, Op, SourceReporter, TaskMetrics,
    TimedSink,
};
use crate::position::{Checkpoint, Offset, TableSnapshotProgress};
use crate::schema::{TableId, TableSchema};

/// Bounds of one task's pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub batch_size: usize,
    pub batch_bytes: usize,
    pub batch_timeout: Duration,
    pub queue_chunks: usize,
    pub chunk_events: usize,
    pub chunk_bytes: usize,
    /// Rate limit and commit fencing (fleet mode); `None` for TOML tasks.
    pub guard: Option<Arc<dyn TaskGuard>>,
}

impl From<&TaskConfig> for PipelineOptions {
    fn from(t: &TaskConfig) -> Self {
        Self {
            batch_size: t.batch_size,
            batch_bytes: t.batch_bytes,
            batch_timeout: Duration::from_millis(t.batch_timeout_ms),
            queue_chunks: t.queue_chunks,
            chunk_events: DEFAULT_CHUNK_EVENTS,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            guard: None,
        }
    }
}

/// Live counters of one task, read by the CLI progress output and metrics.
#[derive(Debug, Default)]
pub struct TaskStats {
    pub rows_applied: AtomicU64,
    pub snapshot_rows: AtomicU64,
    pub transactions: AtomicU64,
    pub target_commits: AtomicU64,
    /// Source commit time (µs since epoch) of the last transaction committed in the target.
    pub last_source_commit_us: AtomicI64,
    /// When the last target commit happened (µs since epoch).
    pub last_target_commit_us: AtomicI64,
    /// Phase, lag and source-reported state (admin API, health).
    pub live: Arc<LiveStatus>,
    /// End-to-end latency per committed batch (the daemon's monitoring windows).
    pub latency: LatencyHistogram,
}

/// How a pipeline run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Shut down on request, everything received and complete is durable.
    Stopped,
    /// The source finished (FULL_ONLY snapshot done).
    Completed,
}

/// Runs one task until shutdown, completion or error.
#[allow(clippy::too_many_arguments)]
pub async fn run_pipeline<S: Source, K: Sink>(
    task: &str,
    source: S,
    sink: K,
    store: Arc<dyn CheckpointStore>,
    router: TableRouter,
    opts: PipelineOptions,
    stats: Arc<TaskStats>,
    shutdown: CancellationToken,
) -> Result<RunOutcome> {
    let checkpoint = {
        let store = store.clone();
        let task = task.to_string();
        tokio::task::spawn_blocking(move || store.load(&task))
            .await
            .map_err(|e| Error::Pipeline(format!("checkpoint load panicked: {e}")))??
    };
    stats.live.reset_phase();
    let metrics = TaskMetrics::new(task);
    metrics.queue(0, opts.queue_chunks);
    if let Some(cp) = &checkpoint {
        record_snapshot_progress(&metrics, cp);
    }
    let (tx, rx) = mpsc::channel(opts.queue_chunks.max(1));
    let (ack_tx, ack_rx) = watch::channel(checkpoint.as_ref().and_then(|c| c.stream.clone()));
    let source_stop = shutdown.child_token();
    let ctx = SourceContext {
        task: task.to_string(),
        store: store.clone(),
        checkpoint: checkpoint.clone(),
        events: EventSender::new(tx, opts.chunk_events, opts.chunk_bytes)
            .with_reporter(SourceReporter::new(task, stats.live.clone())),
        acked: ack_rx,
        shutdown: source_stop.clone(),
    };
    let mut source_handle = tokio::spawn(source.run(ctx).instrument(tracing::Span::current()));

    let mut applier = Applier {
        task: task.to_string(),
        sink: TimedSink::new(sink),
        metrics,
        store,
        router,
        opts,
        stats,
        cp: checkpoint.unwrap_or_else(Checkpoint::empty),
        pending: Pending::default(),
        in_target_txn: false,
        in_source_txn: false,
        txn_rows: 0,
        batch_started: None,
        coalescer: Coalescer::new(),
        ensured: HashMap::new(),
        ack: ack_tx,
        last_commit_time: None,
        inflight: None,
    };
    let applied = applier.run(rx, &source_stop).await;
    // Dropping the applier closes `acked`: a stopping source then knows the
    // last acknowledgement has been published and can report it.
    drop(applier);
    // Whatever happened, the source must stop before we return.
    source_stop.cancel();
    let source_result = match (
        &applied,
        tokio::time::timeout(Duration::from_secs(10), &mut source_handle).await,
    ) {
        (_, Ok(Ok(r))) => r,
        (_, Ok(Err(join))) => Err(Error::Pipeline(format!("source task panicked: {join}"))),
        (_, Err(_)) => {
            source_handle.abort();
            Err(Error::Pipeline(
                "source did not stop within 10 s of being asked to".into(),
            ))
        }
    };
    let completed = applied?;
    source_result?;
    Ok(if completed && !shutdown.is_cancelled() {
        RunOutcome::Completed
    } else {
        RunOutcome::Stopped
    })
}

#[derive(Default)]
struct Pending {
    stream: Option<Offset>,
    snapshot: Vec<(String, TableSnapshotProgress)>,
    snapshot_done: Option<Offset>,
    rows: u64,
    snapshot_rows: u64,
    transactions: u64,
    source_commit_us: Option<i64>,
    /// Row changes per target table and op (metrics).
    applied: AppliedCounts,
    /// The shortest `batch_timeout_ms` of the mappings with rows in the batch.
    batch_timeout: Option<Duration>,
}

struct Applier<K: Sink> {
    task: String,
    sink: TimedSink<K>,
    metrics: TaskMetrics,
    store: Arc<dyn CheckpointStore>,
    router: TableRouter,
    opts: PipelineOptions,
    stats: Arc<TaskStats>,
    /// The last durable checkpoint.
    cp: Checkpoint,
    /// What the open target transaction will make durable.
    pending: Pending,
    in_target_txn: bool,
    in_source_txn: bool,
    /// Row changes in the open target transaction (written or buffered).
    txn_rows: usize,
    batch_started: Option<Instant>,
    coalescer: Coalescer,
    /// Target schema last passed to `ensure_table`, per target table.
    ensured: HashMap<TableId, Arc<TableSchema>>,
    ack: watch::Sender<Option<Offset>>,
    last_commit_time: Option<chrono::DateTime<Utc>>,
    /// The checkpoint being written after its target commit: the next batch
    /// is applied meanwhile; it is published once durable (see [`Applier::settle`]).
    inflight: Option<tokio::task::JoinHandle<Result<Checkpoint>>>,
}

impl<K: Sink> Applier<K> {
    /// Returns whether the source said it was complete (channel closed after SnapshotDone
    /// without a stream) — i.e. the source ended by itself.
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Vec<ChangeEvent>>,
        source_stop: &CancellationToken,
    ) -> Result<bool> {
        let result = self.run_inner(&mut rx, source_stop).await;
        // The last checkpoint write must end (and be published) before the
        // acknowledgement channel closes.
        let result = match (result, self.settle().await) {
            (Ok(done), Ok(())) => Ok(done),
            (Ok(_), Err(e)) => Err(e),
            (Err(e), settled) => {
                if let Err(s) = settled {
                    warn!(task = %self.task, error = %s, "writing the last checkpoint failed");
                }
                Err(e)
            }
        };
        if result.is_err() && self.in_target_txn {
            if let Err(e) = self.sink.rollback().await {
                warn!(task = %self.task, error = %e, "rollback after failure failed");
            }
            self.in_target_txn = false;
        }
        result
    }

    async fn run_inner(
        &mut self,
        rx: &mut mpsc::Receiver<Vec<ChangeEvent>>,
        source_stop: &CancellationToken,
    ) -> Result<bool> {
        loop {
            let deadline = self
                .batch_started
                .filter(|_| self.in_target_txn && !self.in_source_txn)
                .map(|s| tokio::time::Instant::from_std(s + self.batch_timeout()));
            let saving = self.inflight.is_some();
            let chunk = tokio::select! {
                biased;
                chunk = rx.recv() => chunk,
                _ = sleep_until_opt(deadline) => {
                    self.commit().await?;
                    continue;
                }
                // Idle while a checkpoint is being written: publish it as soon
                // as it is durable, not only when the next event comes.
                saved = join_saving(&mut self.inflight), if saving => {
                    self.inflight = None;
                    self.publish(saved)?;
                    continue;
                }
            };
            let Some(chunk) = chunk else {
                // The source ended (shutdown, completion or error).
                if self.in_target_txn {
                    if self.in_source_txn {
                        // An incomplete source transaction is never committed;
                        // it is replayed from the checkpoint next time.
                        debug!(task = %self.task, "rolling back an incomplete source transaction on stop");
                        self.coalescer.drain();
                        self.sink.rollback().await?;
                        self.in_target_txn = false;
                    } else {
                        self.commit().await?;
                    }
                }
                return Ok(!source_stop.is_cancelled());
            };
            let heartbeat = matches!(chunk.last(), Some(ChangeEvent::Heartbeat(_)));
            for event in chunk {
                self.handle(event).await?;
            }
            self.metrics.queue(rx.len(), self.opts.queue_chunks);
            if heartbeat && !self.in_target_txn {
                // Nothing pending at the source: caught up.
                self.metrics.caught_up();
                self.stats.live.set_lag(Duration::ZERO);
            }
            if self.in_target_txn && !self.in_source_txn && self.should_commit(rx.is_empty()) {
                self.commit().await?;
            }
        }
    }

    fn should_commit(&self, queue_empty: bool) -> bool {
        queue_empty
            || self.txn_rows >= self.opts.batch_size
            || self.coalescer.bytes() >= self.opts.batch_bytes
            || self
                .batch_started
                .is_some_and(|s| s.elapsed() >= self.batch_timeout())
    }

    /// The task's `batch_timeout`, shortened by the mappings in the batch.
    fn batch_timeout(&self) -> Duration {
        let t = self.opts.batch_timeout;
        self.pending.batch_timeout.map_or(t, |m| m.min(t))
    }

    fn already_applied(&self, offset: &Offset) -> bool {
        matches!(&self.cp.stream, Some(r) if offset < r)
    }

    async fn ensure_begun(&mut self) -> Result<()> {
        if !self.in_target_txn {
            self.sink.begin().await?;
            self.in_target_txn = true;
            self.txn_rows = 0;
            self.batch_started = Some(Instant::now());
        }
        Ok(())
    }

    async fn ensure_table(&mut self, target: &Arc<TableSchema>) -> Result<()> {
        let known = self
            .ensured
            .get(&target.id)
            .is_some_and(|s| Arc::ptr_eq(s, target) || s.as_ref() == target.as_ref());
        if !known {
            self.flush().await?;
            self.ensure_begun().await?;
            self.sink.ensure_table(target).await?;
            self.ensured.insert(target.id.clone(), target.clone());
        }
        Ok(())
    }

    async fn handle(&mut self, event: ChangeEvent) -> Result<()> {
        if let Some(off) = event.offset() {
            if self.already_applied(off) {
                return Ok(());
            }
        }
        match event {
            ChangeEvent::Begin(b) => {
                self.in_source_txn = true;
                if let Some(t) = b.commit_time {
                    self.pending.source_commit_us = Some(t.timestamp_micros());
                }
                self.ensure_begun().await?;
            }
            ChangeEvent::Insert(e) => {
                if let Some(m) = self.router.route(&e.table)? {
                    self.ensure_table(&m.target).await?;
                    let change = m.map_insert(e.row)?;
                    self.push_mapped(&m, change).await?;
                }
            }
            ChangeEvent::Update(e) => {
                if let Some(m) = self.router.route(&e.table)? {
                    self.ensure_table(&m.target).await?;
                    let change = m.map_update(e.before, e.after)?;
                    self.push_mapped(&m, change).await?;
                }
            }
            ChangeEvent::Delete(e) => {
                if let Some(m) = self.router.route(&e.table)? {
                    self.ensure_table(&m.target).await?;
                    let change = m.map_delete(e.before)?;
                    self.push_mapped(&m, change).await?;
                }
            }
            ChangeEvent::Truncate(e) => {
                self.flush().await?;
                self.ensure_begun().await?;
                for table in &e.tables {
                    let mapped = self.router.route(table)?;
                    if let Some(t) = mapped
                        .filter(|m| m.applies_truncate())
                        .map(|m| m.target.clone())
                    {
                        self.ensure_table(&t).await?;
                        self.sink.truncate(&t.id).await?;
                        self.pending.applied.add(&t, Op::Truncate, 1);
                    }
                }
            }
            ChangeEvent::Relation(r) => {
                if let Some(m) = self.router.route(&r.table)? {
                    self.ensure_table(&m.target).await?;
                }
            }
            ChangeEvent::Rename(r) => self.rename(&r.from, &r.to).await?,
            ChangeEvent::Commit(c) => {
                self.in_source_txn = false;
                self.pending.stream = Some(c.resume);
                self.pending.transactions += 1;
                if let Some(t) = c.commit_time {
                    self.pending.source_commit_us = Some(t.timestamp_micros());
                    self.last_commit_time = Some(t);
                }
            }
            ChangeEvent::Heartbeat(h) => {
                if self.in_source_txn {
                    return Err(Error::Pipeline(
                        "source sent a heartbeat inside a transaction".into(),
                    ));
                }
                if self.in_target_txn {
                    self.pending.stream = Some(h.resume);
                } else if self.cp.stream.as_ref().is_none_or(|r| &h.resume > r) {
                    let mut next = self.cp.clone();
                    next.stream = Some(h.resume);
                    self.save(next).await?;
                }
            }
            ChangeEvent::SnapshotChunk(c) => {
                let key = c.table.id.to_string();
                let rows = c.rows.len() as u64;
                if let Some(m) = self.router.route(&c.table)? {
                    self.ensure_table(&m.target).await?;
                    self.flush().await?;
                    self.ensure_begun().await?;
                    // The same mapping as streamed rows; at most the
                    // mapping's batch_size rows per write.
                    let mut mapped = m.map_rows(c.rows)?;
                    while !mapped.is_empty() {
                        let rest =
                            mapped.split_off(mapped.len().min(m.batch_size.unwrap_or(usize::MAX)));
                        let changes = TableChanges {
                            table: m.target.clone(),
                            deletes: Vec::new(),
                            partial_updates: Vec::new(),
                            upserts: std::mem::replace(&mut mapped, rest),
                            likely_new: true,
                            policy: m.policy,
                            snapshot: true,
                        };
                        self.write(&changes).await?;
                        m.note_synced(changes.upserts.len() as u64);
                        self.txn_rows += changes.upserts.len();
                        let n = changes.upserts.len() as u64;
                        self.pending.applied.add(&changes.table, Op::Snapshot, n);
                    }
                } else {
                    self.ensure_begun().await?;
                }
                self.pending.snapshot_rows += rows;
                self.pending.snapshot.push((key, c.progress));
            }
            ChangeEvent::SnapshotDone(d) => {
                self.ensure_begun().await?;
                self.pending.snapshot_done = Some(d.consistent_point);
                self.commit().await?;
            }
        }
        Ok(())
    }

    /// A source table was renamed: its target table follows, when both names
    /// map to different target tables. Everything before the rename's source
    /// transaction is committed first (a MySQL target commits DDL implicitly
    /// and must not hold locks on the table), and the rename runs at the start
    /// of a fresh target transaction; replayed after a crash, it finds the
    /// table already renamed and does nothing.
    async fn rename(&mut self, from: &Arc<TableSchema>, to: &Arc<TableSchema>) -> Result<()> {
        let old = self.router.route(from)?.map(|m| m.target.id.clone());
        let new = self.router.route(to)?.map(|m| m.target.id.clone());
        match (old, new) {
            (Some(old), Some(new)) if old != new => {
                self.commit().await?;
                self.ensure_begun().await?;
                info!(task = %self.task, from = %old, to = %new, "renaming target table");
                self.sink.rename_table(&old, &new).await?;
                self.ensured.remove(&old);
                self.ensured.remove(&new);
            }
            (Some(old), None) => {
                warn!(task = %self.task, table = %old, "source table renamed out of the task's mappings; its target table is kept as it is");
            }
            _ => {}
        }
        Ok(())
    }

    /// Buffers a mapped change (nothing for a skipped one).
    async fn push_mapped(&mut self, m: &MappedTable, change: MappedChange) -> Result<()> {
        match change {
            MappedChange::Skip => Ok(()),
            MappedChange::Insert(row) => self.push(m, RowChange::Insert(row)).await,
            MappedChange::Update { before, after } => {
                let before = before.as_ref();
                self.push(m, RowChange::Update { before, after }).await
            }
            MappedChange::Delete(row) => self.push(m, RowChange::Delete(&row)).await,
        }
    }

    async fn push(&mut self, m: &MappedTable, change: RowChange<'_>) -> Result<()> {
        let (table, policy) = (&m.target, m.policy);
        self.pending.applied.add(table, op_of(&change), 1);
        m.note_synced(1);
        if let Some(t) = m.batch_timeout {
            self.pending.batch_timeout = Some(self.pending.batch_timeout.map_or(t, |p| p.min(t)));
        }
        if let Err(change) = self.coalescer.push_with(table, policy, change) {
            self.flush().await?;
            if self.coalescer.push_with(table, policy, change).is_err() {
                return Err(Error::Pipeline(
                    "internal: a change was refused by an empty batch".into(),
                ));
            }
        }
        self.txn_rows += 1;
        self.pending.rows += 1;
        if self.coalescer.rows() >= self.opts.batch_size
            || self.coalescer.bytes() >= self.opts.batch_bytes
        {
            self.flush().await?;
        } else if m
            .batch_size
            .is_some_and(|n| self.coalescer.table_rows(&table.id) >= n)
        {
            // The mapping's own limit: the most rows of this table per write.
            if let Some(changes) = self.coalescer.drain_table(&table.id) {
                self.ensure_begun().await?;
                self.write(&changes).await?;
            }
        }
        Ok(())
    }

    /// Writes the coalesced changes to the sink (inside the open target transaction).
    async fn flush(&mut self) -> Result<()> {
        if self.coalescer.is_empty() {
            return Ok(());
        }
        self.ensure_begun().await?;
        for changes in self.coalescer.drain() {
            self.write(&changes).await?;
        }
        Ok(())
    }

    /// Writes one table's changes (after the rate limit, when there is one).
    async fn write(&mut self, changes: &TableChanges) -> Result<()> {
        if let Some(guard) = &self.opts.guard {
            let rows =
                changes.deletes.len() + changes.partial_updates.len() + changes.upserts.len();
            guard.throttle(rows as u64).await;
        }
        self.sink.apply(changes).await?;
        self.router.after_write(changes)
    }

    async fn commit(&mut self) -> Result<()> {
        if !self.in_target_txn {
            return Ok(());
        }
        self.flush().await?;
        if let Some(guard) = &self.opts.guard {
            // Fencing: never commit once this daemon may have lost the task.
            guard.may_commit()?;
        }
        self.sink.commit().await?;
        self.in_target_txn = false;
        self.batch_started = None;
        let p = std::mem::take(&mut self.pending);
        let heartbeat_only = p.stream.is_some() && p.transactions == 0;
        let mut next = self.cp.clone();
        if let Some(s) = p.stream {
            next.stream = Some(s);
        }
        let moved: Vec<(String, u64)> = p
            .snapshot
            .iter()
            .map(|(t, s)| (t.clone(), s.rows_copied))
            .collect();
        for (table, progress) in p.snapshot {
            next.snapshot.tables.insert(table, progress);
        }
        if let Some(cp) = p.snapshot_done {
            next.snapshot.completed = true;
            next.snapshot.consistent_point = Some(cp.clone());
            if next.stream.as_ref().is_none_or(|s| &cp > s) {
                next.stream = Some(cp);
            }
            info!(task = %self.task, "snapshot complete");
        }
        // The target has committed: write the checkpoint while the next
        // batch is applied (published once durable).
        self.save_behind(next).await?;
        self.router.committed();
        self.record_commit(
            &p.applied,
            p.transactions,
            p.source_commit_us,
            heartbeat_only,
        );
        if !moved.is_empty() {
            record_snapshot_moved(&self.metrics, &moved, &self.cp);
        }
        let s = &self.stats;
        s.rows_applied.fetch_add(p.rows, Ordering::Relaxed);
        s.snapshot_rows
            .fetch_add(p.snapshot_rows, Ordering::Relaxed);
        s.transactions.fetch_add(p.transactions, Ordering::Relaxed);
        s.target_commits.fetch_add(1, Ordering::Relaxed);
        if let Some(us) = p.source_commit_us {
            s.last_source_commit_us.store(us, Ordering::Relaxed);
            s.latency
                .record_between_us(us, Utc::now().timestamp_micros());
        }
        s.last_target_commit_us
            .store(Utc::now().timestamp_micros(), Ordering::Relaxed);
        Ok(())
    }

    /// Metrics of a committed target transaction (per batch, never per row).
    fn record_commit(
        &mut self,
        applied: &AppliedCounts,
        transactions: u64,
        source_commit_us: Option<i64>,
        heartbeat_only: bool,
    ) {
        let lag = match source_commit_us {
            Some(us) => {
                let behind = Utc::now().timestamp_micros().saturating_sub(us).max(0);
                Some(Duration::from_micros(behind as u64))
            }
            // Only a heartbeat: nothing was pending at the source.
            None if heartbeat_only => {
                self.metrics.caught_up();
                self.stats.live.set_lag(Duration::ZERO);
                None
            }
            None => None,
        };
        if let Some(lag) = lag {
            self.stats.live.set_lag(lag);
        }
        self.metrics.record_commit(&CommitRecord {
            rows: self.txn_rows,
            transactions,
            sink_time: self.sink.take_busy(),
            lag,
            applied,
        });
    }

    /// Saves a checkpoint and waits until it is durable and published.
    async fn save(&mut self, next: Checkpoint) -> Result<()> {
        self.save_behind(next).await?;
        self.settle().await
    }

    /// Starts saving `next` (only ever called once the target holds what it
    /// covers) after the previous save ended, so saves stay in order; `cp`
    /// moves on at once, the acknowledgement only in [`Applier::settle`].
    async fn save_behind(&mut self, mut next: Checkpoint) -> Result<()> {
        self.settle().await?;
        next.updated_at = Utc::now();
        self.cp = next.clone();
        let store = self.store.clone();
        let task = self.task.clone();
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            store.save(&task, &next).map(|()| next)
        }));
        Ok(())
    }

    /// Waits for the checkpoint being written; publishes it once on disk.
    async fn settle(&mut self) -> Result<()> {
        let Some(h) = self.inflight.take() else {
            return Ok(());
        };
        self.publish(h.await)
    }

    /// Publishes a finished checkpoint write (an error ends the run).
    fn publish(
        &mut self,
        saved: std::result::Result<Result<Checkpoint>, tokio::task::JoinError>,
    ) -> Result<()> {
        let saved =
            saved.map_err(|e| Error::Pipeline(format!("checkpoint save panicked: {e}")))??;
        self.stats
            .live
            .set_last_checkpoint_us(saved.updated_at.timestamp_micros());
        // Publish only after the checkpoint is on disk.
        self.ack.send_replace(saved.stream);
        Ok(())
    }
}

/// Sets the snapshot gauges of every table from a durable checkpoint.
fn record_snapshot_progress(metrics: &TaskMetrics, cp: &Checkpoint) {
    let all: Vec<(String, u64)> = cp
        .snapshot
        .tables
        .iter()
        .map(|(t, p)| (t.clone(), p.rows_copied))
        .collect();
    record_snapshot_moved(metrics, &all, cp);
}

/// Sets the gauges of the tables whose copy moved (`cp` is durable), and the table counts.
fn record_snapshot_moved(metrics: &TaskMetrics, moved: &[(String, u64)], cp: &Checkpoint) {
    for (table, rows) in moved {
        metrics.snapshot_copied(table, *rows);
    }
    let done = cp.snapshot.tables.values().filter(|p| p.done).count();
    if !cp.snapshot.tables.is_empty() {
        metrics.snapshot_done_tables(done);
    }
    if cp.snapshot.completed {
        // A run after the copy: the source does not report the total.
        metrics.snapshot_tables(cp.snapshot.tables.len());
    }
}

fn op_of(change: &RowChange<'_>) -> Op {
    match change {
        RowChange::Insert(_) => Op::Insert,
        RowChange::Update { .. } => Op::Update,
        RowChange::Delete(_) => Op::Delete,
    }
}

/// The result of the checkpoint being written (pending when there is none).
/// The caller clears the handle once this returns.
async fn join_saving(
    inflight: &mut Option<tokio::task::JoinHandle<Result<Checkpoint>>>,
) -> std::result::Result<Result<Checkpoint>, tokio::task::JoinError> {
    match inflight {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

//! The contracts between the pipeline and the outside world: [`Source`],
//! [`Sink`] and [`CheckpointStore`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::event::ChangeEvent;
use crate::mapping::ConflictPolicy;
use crate::metrics::{ReadCounts, SourceReporter};
use crate::position::{Checkpoint, Offset};
use crate::schema::{TableId, TableSchema};
use crate::value::Row;

/// A producer of the normalized change stream.
///
/// # Contract
/// - **Order.** Events are pushed in source commit order; inside a
///   transaction in the source's own order, every event carrying an
///   [`Offset`] greater than the one before it. A transaction is always
///   `Begin`, its changes, `Commit`; transactions never interleave.
/// - **Start.** `run` starts from `ctx.checkpoint`: it resumes the snapshot
///   where its per-table progress says, and the stream at `checkpoint.stream`
///   (never later). Events ordered before `checkpoint.stream` may be sent
///   again (the pipeline drops them); none after it may be missed.
/// - **Acknowledgement.** `ctx.acked` carries the resume offset the pipeline
///   has made durable (target committed, checkpoint written). Only that may be
///   reported to the source server as flushed (e.g. PostgreSQL standby status
///   `flush`), so that the server keeps everything not yet durable.
/// - **Idle.** While the source log has nothing for the task, the source
///   sends a [`ChangeEvent::Heartbeat`] now and then so that the checkpoint, and
///   with it the server-side retention, can advance.
/// - **Backpressure.** [`EventSender::push`] waits when the pipeline is behind;
///   the source then stops reading its server (never buffers without bound).
///   It must keep the server connection alive meanwhile.
/// - **Stop.** When `ctx.shutdown` is cancelled, `run` returns `Ok(())`
///   promptly; an event half-pushed is simply not sent.
/// - **Errors.** Returned errors are classified ([`Error::class`]); the daemon
///   restarts transient failures from the last checkpoint.
pub trait Source: Send + 'static {
    fn run(self, ctx: SourceContext) -> impl Future<Output = Result<()>> + Send;
}

/// What a running [`Source`] is given.
pub struct SourceContext {
    pub task: String,
    /// Durable side state of the source (e.g. a binlog source's schema
    /// history), kept next to the checkpoints: see
    /// [`CheckpointStore::put_source_state`].
    pub store: Arc<dyn CheckpointStore>,
    /// The last durable checkpoint (`None` on the first run).
    pub checkpoint: Option<Checkpoint>,
    pub events: EventSender,
    pub acked: watch::Receiver<Option<Offset>>,
    pub shutdown: CancellationToken,
}

/// Changes to one target table, coalesced per key: every key appears at most
/// once across `deletes`, `partial_updates` and `upserts`.
#[derive(Debug)]
pub struct TableChanges {
    /// The target table's schema (after mapping).
    pub table: Arc<TableSchema>,
    /// Key values (in `table.key` order) of rows to delete.
    pub deletes: Vec<Row>,
    /// Rows whose `Value::Unchanged` columns must keep their target value.
    pub partial_updates: Vec<PartialUpdate>,
    /// Full rows to insert or overwrite.
    pub upserts: Vec<Row>,
    /// Every upsert came from an insert or a snapshot: the keys are probably
    /// new in the target (a sink may try a plain bulk insert first).
    pub likely_new: bool,
    /// What the sink does with rows that exist or not (the mapping's
    /// `conflict_resolution`): see [`ConflictPolicy`] for each change kind.
    pub policy: ConflictPolicy,
    /// Rows of the initial copy (only upserts, keys disjoint from every other
    /// change in the target transaction). They carry no transactional
    /// constraint between them, so a sink may write them over several
    /// connections, each committed at `commit` (a failure leaves some of them
    /// visible, which is harmless: the copy resumes from its last checkpoint
    /// and upserts are idempotent).
    pub snapshot: bool,
}

impl TableChanges {
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.partial_updates.is_empty() && self.upserts.is_empty()
    }

    pub fn len(&self) -> usize {
        self.deletes.len() + self.partial_updates.len() + self.upserts.len()
    }
}

/// An update that did not carry every column.
#[derive(Debug, Clone)]
pub struct PartialUpdate {
    /// Key values (in key order) identifying the target row before the update.
    pub old_key: Row,
    /// The new row; `Value::Unchanged` columns are left as they are.
    pub row: Row,
}

/// A writer into one target database.
///
/// # Contract
/// - **Transactions.** The pipeline calls `begin`, then any number of
///   `ensure_table`, `apply` and `truncate`, then `commit` (or `rollback`).
///   Nothing written between `begin` and `commit` may be visible in the target
///   before `commit`, so a source transaction is never half-visible.
/// - **Durability.** When `commit` returns `Ok`, everything applied since
///   `begin` is durable in the target. Only then does the pipeline checkpoint.
/// - **Order.** Calls are applied in the order made. Inside one
///   [`TableChanges`] the sink applies `deletes`, then `partial_updates`, then
///   `upserts` (their keys are disjoint).
/// - **Policy.** Each [`TableChanges`] carries a [`ConflictPolicy`]: which of
///   its deletes, partial updates and upserts are written, and how (the table
///   in the rustdoc of [`ConflictPolicy`]).
/// - **Idempotence.** Applying the same changes again leaves the same target
///   state (upserts keyed on the table key; deletes of absent rows are no-ops):
///   after a crash the pipeline replays from the last checkpoint.
/// - **Retries.** After an error the pipeline calls `rollback` (best effort)
///   and either retries the whole target transaction or stops, depending on
///   [`Error::class`]. A sink never retries a statement by itself inside a
///   transaction.
/// - **Schema.** `ensure_table` is called before the first rows of a table
///   and whenever its source schema changes; it creates the target table when
///   missing, adds new columns (with the source's constant default, which
///   existing rows get) and widens columns whose source type was widened
///   (anything else fails with a message saying what to change).
/// - **Renames.** `rename_table` is called, at the start of a fresh target
///   transaction, when a source table is renamed: the target table `from`
///   becomes `to`. A target that no longer has `from` (an earlier attempt
///   renamed it) does nothing; one that has both fails with a definite error.
pub trait Sink: Send + 'static {
    fn ensure_table(&mut self, table: &Arc<TableSchema>)
        -> impl Future<Output = Result<()>> + Send;
    fn begin(&mut self) -> impl Future<Output = Result<()>> + Send;
    fn apply(&mut self, changes: &TableChanges) -> impl Future<Output = Result<()>> + Send;
    fn truncate(&mut self, table: &TableId) -> impl Future<Output = Result<()>> + Send;
    fn commit(&mut self) -> impl Future<Output = Result<()>> + Send;
    fn rollback(&mut self) -> impl Future<Output = Result<()>> + Send;
    /// Renames target table `from` to `to` (see **Renames** above). Targets
    /// that cannot rename tables refuse with a definite error.
    fn rename_table(
        &mut self,
        from: &TableId,
        to: &TableId,
    ) -> impl Future<Output = Result<()>> + Send {
        let msg = format!(
            "source table renamed: this target cannot rename table {from} to {to}; rename it \
             yourself, then restart the task"
        );
        async move {
            Err(Error::Sink {
                class: crate::ErrorClass::Definite,
                message: msg,
            })
        }
    }
}

/// Durable storage of [`Checkpoint`]s, one per task.
///
/// # Contract
/// - `save` returns only when the checkpoint is on disk (synced write).
/// - A checkpoint never moves backward: `save` with a stream offset lower than
///   the stored one fails with an error and leaves the stored one in place.
/// - `load` returns the last successfully saved checkpoint.
/// - `reset` forgets a task's checkpoint and its source state (operators
///   only: it means a re-sync).
/// - Source state is a small key/value space per task for what a source must
///   remember beside its position (a binlog source's schema history, keyed by
///   position so that old events decode with the schema of their time).
///   `put_source_state` is synced like `save`.
pub trait CheckpointStore: Send + Sync + 'static {
    fn load(&self, task: &str) -> Result<Option<Checkpoint>>;
    fn save(&self, task: &str, checkpoint: &Checkpoint) -> Result<()>;
    fn reset(&self, task: &str) -> Result<()>;
    fn put_source_state(&self, task: &str, key: &str, value: &[u8]) -> Result<()>;
    fn delete_source_state(&self, task: &str, key: &str) -> Result<()>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn source_state(&self, task: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;
}

/// The outcome of one named prerequisite check (`ensure_*`), as `dbsync check` prints it.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub name: &'static str,
    /// `Ok(detail)` or `Err(problem and how to fix it)`.
    pub result: std::result::Result<String, String>,
}

/// Checks that `next` does not move the stream offset of `prev` backward.
/// Stores call this before writing.
pub fn check_monotonic(prev: Option<&Checkpoint>, next: &Checkpoint) -> Result<()> {
    if let (Some(prev), Some(new)) = (prev.and_then(|p| p.stream.as_ref()), next.stream.as_ref()) {
        match new.partial_cmp(prev) {
            Some(std::cmp::Ordering::Less) => {
                return Err(Error::Checkpoint(format!(
                    "refusing to move the checkpoint backward from {prev} to {new}"
                )))
            }
            None => {
                return Err(Error::Checkpoint(format!(
                    "checkpoint {new} is not comparable with the stored {prev} (different source); \
                     reset the task's offsets if the source really changed"
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The sending half of the bounded event queue between a source and the
/// pipeline. Events are grouped into chunks (fewer wake-ups); a chunk is sent
/// when full or on [`EventSender::flush`].
pub struct EventSender {
    tx: mpsc::Sender<Vec<ChangeEvent>>,
    buf: Vec<ChangeEvent>,
    buf_bytes: usize,
    chunk_events: usize,
    chunk_bytes: usize,
    blocked: Duration,
    /// What `buf` holds (metrics and phase, recorded per chunk).
    counts: ReadCounts,
    reporter: SourceReporter,
}

impl EventSender {
    pub fn new(
        tx: mpsc::Sender<Vec<ChangeEvent>>,
        chunk_events: usize,
        chunk_bytes: usize,
    ) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(chunk_events),
            buf_bytes: 0,
            chunk_events: chunk_events.max(1),
            chunk_bytes: chunk_bytes.max(1),
            blocked: Duration::ZERO,
            counts: ReadCounts::default(),
            reporter: SourceReporter::default(),
        }
    }

    /// Records what is sent (and the time spent waiting) through `reporter`.
    pub fn with_reporter(mut self, reporter: SourceReporter) -> Self {
        self.reporter = reporter;
        self
    }

    /// The task's reporter, for a source's own metrics (phase, lag in source
    /// units, snapshot estimates, open connections).
    pub fn reporter(&self) -> &SourceReporter {
        &self.reporter
    }

    /// Adds an event; sends the chunk when it is full (waiting for room).
    /// Cancel-safe: if the future is dropped, no event is lost or duplicated.
    pub async fn push(&mut self, event: ChangeEvent) -> Result<()> {
        if self.buf.len() >= self.chunk_events || self.buf_bytes >= self.chunk_bytes {
            self.flush().await?;
        }
        self.buf_bytes += event.approx_size();
        self.counts.add_event(&event);
        self.buf.push(event);
        Ok(())
    }

    /// True when a chunk is full and the next `push` would wait for room.
    pub fn is_full(&self) -> bool {
        self.buf.len() >= self.chunk_events || self.buf_bytes >= self.chunk_bytes
    }

    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Sends the buffered events, waiting for room in the queue.
    /// Cancel-safe: the buffer stays intact if the future is dropped.
    pub async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let stopped = || Error::Pipeline("the pipeline stopped receiving events".into());
        let permit = match self.tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                // Backpressure: the applier is behind.
                let start = Instant::now();
                let permit = self.tx.reserve().await.map_err(|_| stopped())?;
                let waited = start.elapsed();
                self.blocked += waited;
                self.reporter.backpressure(waited);
                permit
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Err(stopped()),
        };
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk_events));
        self.reporter.chunk_sent(&self.counts, self.buf_bytes);
        self.counts = ReadCounts::default();
        self.buf_bytes = 0;
        permit.send(chunk);
        Ok(())
    }

    /// Closes the queue: unsent events are dropped (they are replayed from
    /// the checkpoint next time) and the pipeline sees the end of the stream,
    /// so it commits what is complete and drops its acknowledgement sender.
    /// A source stopping on request calls this, then waits for
    /// `SourceContext::acked` to close, to report the final position.
    pub fn close(&mut self) {
        self.buf.clear();
        self.buf_bytes = 0;
        let (closed, _) = mpsc::channel(1);
        self.tx = closed;
    }

    /// Total time spent waiting for room (backpressure).
    pub fn blocked_time(&self) -> Duration {
        self.blocked
    }
}

/// A boxed future, for the object-safe [`TaskGuard`].
pub type GuardFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// What a fleet daemon adds around a task's data path: a rate limit shared by
/// the tenant's tasks, and fencing of target commits by the task's lease.
///
/// - [`TaskGuard::throttle`] is awaited before every write of `rows` row
///   changes to the target (per batch, never per row); it only delays.
/// - [`TaskGuard::may_commit`] is called right before every target commit;
///   an error aborts the commit (the target transaction is rolled back, the
///   checkpoint does not move) and ends the run with that error. A daemon
///   whose lease on the task may have expired must return an error here, so
///   that it never writes once another daemon may own the task.
pub trait TaskGuard: Send + Sync + std::fmt::Debug + 'static {
    fn throttle(&self, rows: u64) -> GuardFuture<'_>;
    fn may_commit(&self) -> Result<()>;
}

//! A task's live status, and the handle its source reports through.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use super::{
    set_task_gauge, Op, ReadCounts, BACKPRESSURE_WAIT, CHANGES_READ, LABEL_OP, LABEL_ROLE,
    LABEL_TABLE, LABEL_TASK, OPEN_CONNECTIONS, READ_BYTES, SLOT_RETAINED_WAL,
    SNAPSHOT_ESTIMATED_ROWS, SNAPSHOT_TABLES, SOURCE_LAG_BYTES,
};

/// Where a source is in its run, as far as the pipeline can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum SourcePhase {
    /// Connecting, checking prerequisites, nothing sent yet.
    Starting = 0,
    /// Sending the initial copy.
    Snapshotting = 1,
    /// Following the change stream.
    Streaming = 2,
}

/// A task's live status beyond counters: what its source reports about
/// itself, and the applier's lag and last checkpoint. Shared with the daemon
/// (admin API, health).
#[derive(Debug)]
pub struct LiveStatus {
    phase: AtomicU8,
    /// End-to-end lag of the last target commit in µs; `-1` = not measured yet.
    lag_us: AtomicI64,
    /// When the last checkpoint was written (µs since the epoch); 0 = never in this process.
    last_checkpoint_us: AtomicI64,
    /// `-1` = not measured yet.
    lag_bytes: AtomicI64,
    /// `-1` = not measured yet (or not applicable).
    retained_wal_bytes: AtomicI64,
    snapshot_tables: AtomicU64,
    /// Bytes of row data the source has read (estimated per chunk).
    read_bytes: AtomicU64,
    /// Microseconds the source waited for room in the queue.
    backpressure_us: AtomicU64,
}

impl Default for LiveStatus {
    fn default() -> Self {
        Self {
            phase: AtomicU8::new(SourcePhase::Starting as u8),
            lag_us: AtomicI64::new(-1),
            last_checkpoint_us: AtomicI64::new(0),
            lag_bytes: AtomicI64::new(-1),
            retained_wal_bytes: AtomicI64::new(-1),
            snapshot_tables: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            backpressure_us: AtomicU64::new(0),
        }
    }
}

impl LiveStatus {
    /// Bytes of row data read by the source so far (monotonic).
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes.load(Ordering::Relaxed)
    }

    /// Microseconds the source spent blocked on a full queue so far (monotonic).
    pub fn backpressure_us(&self) -> u64 {
        self.backpressure_us.load(Ordering::Relaxed)
    }

    /// Adds waiting time of the source on a full queue.
    pub fn add_backpressure(&self, waited: Duration) {
        self.backpressure_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    /// The source's phase in the current run.
    pub fn phase(&self) -> SourcePhase {
        match self.phase.load(Ordering::Relaxed) {
            0 => SourcePhase::Starting,
            1 => SourcePhase::Snapshotting,
            _ => SourcePhase::Streaming,
        }
    }

    /// Back to `Starting` (a new run of the task begins).
    pub fn reset_phase(&self) {
        self.phase
            .store(SourcePhase::Starting as u8, Ordering::Relaxed);
    }

    /// Moves the phase forward (never back within a run).
    pub fn advance(&self, phase: SourcePhase) {
        self.phase.fetch_max(phase as u8, Ordering::Relaxed);
    }

    /// [`SOURCE_LAG_BYTES`], when measured.
    pub fn lag_bytes(&self) -> Option<u64> {
        u64::try_from(self.lag_bytes.load(Ordering::Relaxed)).ok()
    }

    /// [`SLOT_RETAINED_WAL`], when measured.
    pub fn retained_wal_bytes(&self) -> Option<u64> {
        u64::try_from(self.retained_wal_bytes.load(Ordering::Relaxed)).ok()
    }

    /// Tables of the initial copy (0 = unknown or none).
    pub fn snapshot_tables(&self) -> u64 {
        self.snapshot_tables.load(Ordering::Relaxed)
    }

    /// End-to-end lag of the last target commit (0 when caught up), when measured.
    pub fn lag(&self) -> Option<Duration> {
        u64::try_from(self.lag_us.load(Ordering::Relaxed))
            .ok()
            .map(Duration::from_micros)
    }

    /// Records the end-to-end lag of a target commit.
    pub fn set_lag(&self, lag: Duration) {
        let us = i64::try_from(lag.as_micros()).unwrap_or(i64::MAX);
        self.lag_us.store(us, Ordering::Relaxed);
    }

    /// When the last checkpoint was written (µs since the epoch), if any in this process.
    pub fn last_checkpoint_us(&self) -> Option<i64> {
        Some(self.last_checkpoint_us.load(Ordering::Relaxed)).filter(|us| *us > 0)
    }

    /// Records when a checkpoint was written (µs since the epoch).
    pub fn set_last_checkpoint_us(&self, us: i64) {
        self.last_checkpoint_us.store(us, Ordering::Relaxed);
    }
}

/// A source's handle for reporting its phase, its lag in source units, its
/// snapshot estimates and its connections. Obtained from
/// [`EventSender::reporter`](crate::EventSender::reporter); a default
/// reporter (no task) records nothing.
#[derive(Clone, Default)]
pub struct SourceReporter {
    inner: Option<Arc<ReporterInner>>,
}

struct ReporterInner {
    task: Arc<str>,
    status: Arc<LiveStatus>,
    read: [Counter; 5],
    read_bytes: Counter,
    backpressure: Histogram,
}

impl SourceReporter {
    /// A reporter recording under `task`, publishing into `status`.
    pub fn new(task: &str, status: Arc<LiveStatus>) -> Self {
        let t = || task.to_string();
        Self {
            inner: Some(Arc::new(ReporterInner {
                task: Arc::from(task),
                status,
                read: Op::ALL
                    .map(|op| counter!(CHANGES_READ, LABEL_TASK => t(), LABEL_OP => op.as_str())),
                read_bytes: counter!(READ_BYTES, LABEL_TASK => t()),
                backpressure: histogram!(BACKPRESSURE_WAIT, LABEL_TASK => t()),
            })),
        }
    }

    /// The source moved to `phase` (e.g. streaming started).
    pub fn phase(&self, phase: SourcePhase) {
        if let Some(i) = &self.inner {
            i.status.advance(phase);
        }
    }

    /// [`SOURCE_LAG_BYTES`]: how far the task's durable position is behind the server.
    pub fn source_lag_bytes(&self, bytes: u64) {
        if let Some(i) = &self.inner {
            i.status
                .lag_bytes
                .store(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
            set_task_gauge(SOURCE_LAG_BYTES, &i.task, bytes as f64);
        }
    }

    /// [`SLOT_RETAINED_WAL`]: WAL the task's replication slot retains.
    pub fn slot_retained_wal_bytes(&self, bytes: u64) {
        if let Some(i) = &self.inner {
            i.status
                .retained_wal_bytes
                .store(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
            set_task_gauge(SLOT_RETAINED_WAL, &i.task, bytes as f64);
        }
    }

    /// [`SNAPSHOT_TABLES`]: the initial copy covers `tables` tables.
    pub fn snapshot_tables(&self, tables: usize) {
        if let Some(i) = &self.inner {
            i.status
                .snapshot_tables
                .store(tables as u64, Ordering::Relaxed);
            set_task_gauge(SNAPSHOT_TABLES, &i.task, tables as f64);
        }
    }

    /// [`SNAPSHOT_ESTIMATED_ROWS`] of a source table, at the start of its copy.
    pub fn snapshot_estimated_rows(&self, source_table: &str, rows: u64) {
        if let Some(i) = &self.inner {
            gauge!(SNAPSHOT_ESTIMATED_ROWS, LABEL_TASK => i.task.to_string(),
                LABEL_TABLE => source_table.to_string())
            .set(rows as f64);
        }
    }

    /// Counts an open connection of `role` until the guard is dropped.
    pub fn connection(&self, role: ConnectionRole) -> ConnectionGuard {
        match &self.inner {
            Some(i) => ConnectionGuard::open(&i.task, role),
            None => ConnectionGuard { gauge: None },
        }
    }

    /// A chunk of events was handed to the pipeline.
    pub(crate) fn chunk_sent(&self, counts: &ReadCounts, bytes: usize) {
        if let Some(i) = &self.inner {
            for (h, n) in i.read.iter().zip(counts.ops.0) {
                if n > 0 {
                    h.increment(n);
                }
            }
            i.read_bytes.increment(bytes as u64);
            i.status
                .read_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
            if let Some(p) = counts.phase() {
                i.status.advance(p);
            }
        }
    }

    /// The source waited `waited` for room in the queue.
    pub(crate) fn backpressure(&self, waited: Duration) {
        if let Some(i) = &self.inner {
            i.backpressure.record(waited.as_secs_f64());
            i.status.add_backpressure(waited);
        }
    }
}

/// The `role` label of [`OPEN_CONNECTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRole {
    /// A regular session on the source (catalog queries, snapshot).
    Source,
    /// A replication (streaming) session on the source.
    SourceReplication,
    /// A session on the target.
    Target,
}

impl ConnectionRole {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionRole::Source => "source",
            ConnectionRole::SourceReplication => "source_replication",
            ConnectionRole::Target => "target",
        }
    }
}

/// Counts one open connection in [`OPEN_CONNECTIONS`] while alive.
pub struct ConnectionGuard {
    gauge: Option<Gauge>,
}

impl ConnectionGuard {
    /// Counts a connection of `task` with `role` until dropped.
    pub fn open(task: &str, role: ConnectionRole) -> Self {
        let g =
            gauge!(OPEN_CONNECTIONS, LABEL_TASK => task.to_string(), LABEL_ROLE => role.as_str());
        g.increment(1.0);
        Self { gauge: Some(g) }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(g) = &self.gauge {
            g.decrement(1.0);
        }
    }
}

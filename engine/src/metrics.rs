//! Metric names and the small typed helpers that record them.
//!
//! Every metric dbsync exports is named here, once, as
//! `dbsync_<what>_<unit>[_total]`. Labels are low-cardinality enums only:
//! `task`, `table` (a table name, `schema.name`), `op` ([`Op`]), plus `kind`
//! on [`ERRORS`] ([`error_kind`]) and `role` on [`OPEN_CONNECTIONS`]
//! ([`ConnectionRole`]). Never a row value, a key, a position or a secret.
//!
//! Recording goes through the [`metrics`] facade: without an installed
//! recorder (e.g. `dbsync check`, unit tests) every call is a no-op. The
//! pipeline records per chunk and per target transaction, never per row
//! (per-row work is limited to incrementing a local array).
//!
//! Who records what:
//! - [`EventSender`](crate::EventSender) (the source side of the queue):
//!   [`CHANGES_READ`], [`READ_BYTES`], [`BACKPRESSURE_WAIT`], via the task's
//!   [`SourceReporter`].
//! - the applier: [`CHANGES_APPLIED`], [`TRANSACTIONS_APPLIED`],
//!   [`BATCH_ROWS`], [`APPLY_DURATION`], [`LAG`], [`END_TO_END_LATENCY`],
//!   [`QUEUE_DEPTH`], [`QUEUE_CAPACITY`], [`SNAPSHOT_COPIED_ROWS`],
//!   [`SNAPSHOT_DONE_TABLES`].
//! - sources, through [`SourceReporter`]: [`SOURCE_LAG_BYTES`],
//!   [`SLOT_RETAINED_WAL`], [`SNAPSHOT_ESTIMATED_ROWS`], [`SNAPSHOT_TABLES`],
//!   [`OPEN_CONNECTIONS`].
//! - the daemon: [`ERRORS`], [`TASK_STATE`], [`TASK_HEALTH`],
//!   [`CHECKPOINT_AGE`], [`LAST_CHECKPOINT`], [`ROCKSDB_SIZE`],
//!   [`PROCESS_CPU`], [`PROCESS_RESIDENT_MEMORY`], and [`OPEN_CONNECTIONS`]
//!   for targets.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Unit};

use crate::error::{Error, ErrorClass};
use crate::event::ChangeEvent;
use crate::schema::{TableId, TableSchema};

/// Row changes the source handed to the pipeline, by `op` (`task`, `op`).
pub const CHANGES_READ: &str = "dbsync_changes_read_total";
/// Row changes committed in the target, by target `table` and `op` (`task`, `table`, `op`).
pub const CHANGES_APPLIED: &str = "dbsync_changes_applied_total";
/// Approximate bytes of change events the source handed to the pipeline (`task`).
pub const READ_BYTES: &str = "dbsync_read_bytes_total";
/// Source transactions committed in the target (`task`).
pub const TRANSACTIONS_APPLIED: &str = "dbsync_transactions_applied_total";
/// Histogram: row changes per target transaction (`task`).
pub const BATCH_ROWS: &str = "dbsync_batch_rows";
/// Histogram: seconds spent in sink calls per target transaction, commit included (`task`).
pub const APPLY_DURATION: &str = "dbsync_apply_duration_seconds";
/// Gauge: seconds from the source commit of the last transaction to its
/// target commit; 0 once the source reported nothing pending (`task`).
pub const LAG: &str = "dbsync_lag_seconds";
/// Histogram: source commit → target commit, per target transaction (`task`).
pub const END_TO_END_LATENCY: &str = "dbsync_end_to_end_latency_seconds";
/// Gauge: how far the source's acknowledged position is behind the source
/// server, in the source's own units (`task`). PostgreSQL: WAL bytes between
/// `pg_current_wal_lsn()` and the slot's `confirmed_flush_lsn`. MySQL/MariaDB:
/// binlog bytes between the server's current position (`SHOW MASTER STATUS`)
/// and the last position the task has made durable.
pub const SOURCE_LAG_BYTES: &str = "dbsync_source_lag_bytes";
/// Gauge: WAL the replication slot keeps on the source server
/// (`pg_current_wal_lsn() - restart_lsn`), PostgreSQL only (`task`).
pub const SLOT_RETAINED_WAL: &str = "dbsync_slot_retained_wal_bytes";
/// Gauge: chunks waiting in the source → applier queue (`task`).
pub const QUEUE_DEPTH: &str = "dbsync_queue_depth_chunks";
/// Gauge: capacity of the source → applier queue (`task`).
pub const QUEUE_CAPACITY: &str = "dbsync_queue_capacity_chunks";
/// Histogram: seconds the source waited for room in a full queue, per wait
/// (`task`); `rate(.._sum)` is the fraction of time blocked.
pub const BACKPRESSURE_WAIT: &str = "dbsync_backpressure_wait_seconds";
/// Gauge: rows of a table's initial copy that are durable in the target
/// (`task`, `table` = source table).
pub const SNAPSHOT_COPIED_ROWS: &str = "dbsync_snapshot_copied_rows";
/// Gauge: estimated rows of a table at the start of its copy (`task`, `table` = source table).
pub const SNAPSHOT_ESTIMATED_ROWS: &str = "dbsync_snapshot_estimated_rows";
/// Gauge: tables the initial copy covers (`task`).
pub const SNAPSHOT_TABLES: &str = "dbsync_snapshot_tables";
/// Gauge: tables whose copy is complete and durable (`task`).
pub const SNAPSHOT_DONE_TABLES: &str = "dbsync_snapshot_done_tables";
/// Gauge: seconds since the task last wrote a checkpoint (`task`), computed at scrape time.
pub const CHECKPOINT_AGE: &str = "dbsync_checkpoint_age_seconds";
/// Gauge: Unix time of the task's last checkpoint write (`task`).
pub const LAST_CHECKPOINT: &str = "dbsync_last_checkpoint_timestamp_seconds";
/// Task failures, by `kind` ([`error_kind`]) (`task`, `kind`).
pub const ERRORS: &str = "dbsync_errors_total";
/// Gauge: the task's state as a number, see [`TaskStateCode`] (`task`).
pub const TASK_STATE: &str = "dbsync_task_state";
/// Gauge: the task's health as a number, see [`HealthCode`] (`task`).
pub const TASK_HEALTH: &str = "dbsync_task_health";
/// Gauge: bytes on disk of the RocksDB checkpoint store.
pub const ROCKSDB_SIZE: &str = "dbsync_rocksdb_size_bytes";
/// Gauge: database connections the task holds open, by `role` (`task`, `role`).
pub const OPEN_CONNECTIONS: &str = "dbsync_open_connections";
/// Gauge (cumulative): CPU seconds (user + system) used by the process.
pub const PROCESS_CPU: &str = "dbsync_process_cpu_seconds_total";
/// Gauge: resident memory of the process in bytes.
pub const PROCESS_RESIDENT_MEMORY: &str = "dbsync_process_resident_memory_bytes";

/// Label: the task name.
pub const LABEL_TASK: &str = "task";
/// Label: a table, `schema.name` (target table when applied, source table for snapshot progress).
pub const LABEL_TABLE: &str = "table";
/// Label: the kind of change, see [`Op`].
pub const LABEL_OP: &str = "op";
/// Label of [`ERRORS`]: see [`ERROR_KINDS`].
pub const LABEL_KIND: &str = "kind";
/// Label of [`OPEN_CONNECTIONS`]: see [`ConnectionRole`].
pub const LABEL_ROLE: &str = "role";

/// Bucket bounds of the latency histograms (seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];
/// Bucket bounds of the apply-duration and backpressure histograms (seconds).
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Bucket bounds of the batch-size histogram (rows).
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0,
    50000.0, 100000.0,
];

/// Every histogram with its buckets, for configuring an exporter.
pub const HISTOGRAMS: &[(&str, &[f64])] = &[
    (BATCH_ROWS, BATCH_BUCKETS),
    (APPLY_DURATION, DURATION_BUCKETS),
    (END_TO_END_LATENCY, LATENCY_BUCKETS),
    (BACKPRESSURE_WAIT, DURATION_BUCKETS),
];

/// Registers units and help texts with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CHANGES_READ,
        Unit::Count,
        "Row changes read from the source, by op"
    );
    describe_counter!(
        CHANGES_APPLIED,
        Unit::Count,
        "Row changes committed in the target, by target table and op"
    );
    describe_counter!(
        READ_BYTES,
        Unit::Bytes,
        "Approximate bytes of change events read from the source"
    );
    describe_counter!(
        TRANSACTIONS_APPLIED,
        Unit::Count,
        "Source transactions committed in the target"
    );
    describe_histogram!(
        BATCH_ROWS,
        Unit::Count,
        "Row changes per target transaction"
    );
    describe_histogram!(
        APPLY_DURATION,
        Unit::Seconds,
        "Time in sink calls per target transaction"
    );
    describe_gauge!(
        LAG,
        Unit::Seconds,
        "Source commit to target commit of the last transaction"
    );
    describe_histogram!(
        END_TO_END_LATENCY,
        Unit::Seconds,
        "Source commit to target commit per target transaction"
    );
    describe_gauge!(
        SOURCE_LAG_BYTES,
        Unit::Bytes,
        "Source log bytes not yet acknowledged by the task"
    );
    describe_gauge!(
        SLOT_RETAINED_WAL,
        Unit::Bytes,
        "WAL retained on the source by the task's replication slot"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Chunks waiting in the source to applier queue"
    );
    describe_gauge!(
        QUEUE_CAPACITY,
        Unit::Count,
        "Capacity of the source to applier queue in chunks"
    );
    describe_histogram!(
        BACKPRESSURE_WAIT,
        Unit::Seconds,
        "Time the source waited for room in the queue"
    );
    describe_gauge!(
        SNAPSHOT_COPIED_ROWS,
        Unit::Count,
        "Rows of the initial copy durable in the target, by source table"
    );
    describe_gauge!(
        SNAPSHOT_ESTIMATED_ROWS,
        Unit::Count,
        "Estimated rows of a table at the start of its copy"
    );
    describe_gauge!(
        SNAPSHOT_TABLES,
        Unit::Count,
        "Tables the initial copy covers"
    );
    describe_gauge!(
        SNAPSHOT_DONE_TABLES,
        Unit::Count,
        "Tables whose initial copy is complete"
    );
    describe_gauge!(
        CHECKPOINT_AGE,
        Unit::Seconds,
        "Seconds since the task's last checkpoint"
    );
    describe_gauge!(
        LAST_CHECKPOINT,
        Unit::Seconds,
        "Unix time of the task's last checkpoint"
    );
    describe_counter!(ERRORS, Unit::Count, "Task failures by kind");
    describe_gauge!(
        TASK_STATE,
        "Task state: 0 starting, 1 snapshotting, 2 streaming, 3 retrying, 4 failed, 5 stopped, 6 completed"
    );
    describe_gauge!(
        TASK_HEALTH,
        "Task health: 0 unknown, 1 healthy, 2 degraded, 3 unhealthy"
    );
    describe_gauge!(
        ROCKSDB_SIZE,
        Unit::Bytes,
        "Size on disk of the checkpoint store"
    );
    describe_gauge!(
        OPEN_CONNECTIONS,
        Unit::Count,
        "Database connections held open, by role"
    );
    describe_gauge!(PROCESS_CPU, Unit::Seconds, "CPU time used by the process");
    describe_gauge!(
        PROCESS_RESIDENT_MEMORY,
        Unit::Bytes,
        "Resident memory of the process"
    );
}

/// Numeric values of [`TASK_STATE`] (stable: dashboards and alerts use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TaskStateCode {
    Starting = 0,
    Snapshotting = 1,
    Streaming = 2,
    Retrying = 3,
    Failed = 4,
    Stopped = 5,
    Completed = 6,
}

/// Numeric values of [`TASK_HEALTH`] (stable: dashboards and alerts use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HealthCode {
    Unknown = 0,
    Healthy = 1,
    Degraded = 2,
    Unhealthy = 3,
}

/// The kind of a change, as the `op` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert = 0,
    Update = 1,
    Delete = 2,
    Truncate = 3,
    Snapshot = 4,
}

impl Op {
    /// Every op, in label-array order.
    pub const ALL: [Op; 5] = [
        Op::Insert,
        Op::Update,
        Op::Delete,
        Op::Truncate,
        Op::Snapshot,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
            Op::Snapshot => "snapshot",
        }
    }
}

/// Every value of the `kind` label of [`ERRORS`].
pub const ERROR_KINDS: [&str; 7] = [
    "source_transient",
    "source_definite",
    "target_transient",
    "target_definite",
    "checkpoint",
    "config",
    "pipeline",
];

/// The `kind` label of an error: where it happened and, for sources and
/// targets, whether it is retried.
pub fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Source { class, .. } => match class {
            ErrorClass::Transient => "source_transient",
            ErrorClass::Definite => "source_definite",
        },
        Error::Sink { class, .. } => match class {
            ErrorClass::Transient => "target_transient",
            ErrorClass::Definite => "target_definite",
        },
        Error::Checkpoint(_) => "checkpoint",
        Error::Config(_) => "config",
        Error::Pipeline(_) => "pipeline",
    }
}

/// Makes every error-kind series of a task exist at 0, so that `rate()` and
/// `increase()` see the first failure.
pub fn register_errors(task: &str) {
    for kind in ERROR_KINDS {
        counter!(ERRORS, LABEL_TASK => task.to_string(), LABEL_KIND => kind).increment(0);
    }
}

/// Counts one failure of a task.
pub fn record_error(task: &str, e: &Error) {
    counter!(ERRORS, LABEL_TASK => task.to_string(), LABEL_KIND => error_kind(e)).increment(1);
}

/// Sets a per-task gauge.
pub fn set_task_gauge(name: &'static str, task: &str, value: f64) {
    gauge!(name, LABEL_TASK => task.to_string()).set(value);
}

/// Sets a process-wide gauge.
pub fn set_gauge(name: &'static str, value: f64) {
    gauge!(name).set(value);
}

/// Per-op counts of a batch of events, added to the counters in one go.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpCounts(pub [u64; 5]);

impl OpCounts {
    /// Counts `n` changes of `op`.
    #[inline]
    pub fn add(&mut self, op: Op, n: u64) {
        self.0[op as usize] += n;
    }

    /// No change counted.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }
}

/// What a chunk of events from a source holds: row changes per op, and
/// other stream events (begin, commit, relation, heartbeat). One `match` per
/// event.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadCounts {
    pub ops: OpCounts,
    pub other: u64,
}

impl ReadCounts {
    /// Counts an event (and the rows of a snapshot chunk).
    #[inline]
    pub fn add_event(&mut self, event: &ChangeEvent) {
        let ops = &mut self.ops.0;
        match event {
            ChangeEvent::Insert(_) => ops[Op::Insert as usize] += 1,
            ChangeEvent::Update(_) => ops[Op::Update as usize] += 1,
            ChangeEvent::Delete(_) => ops[Op::Delete as usize] += 1,
            ChangeEvent::Truncate(_) => ops[Op::Truncate as usize] += 1,
            ChangeEvent::SnapshotChunk(c) => ops[Op::Snapshot as usize] += c.rows.len() as u64,
            ChangeEvent::SnapshotDone(_) => {}
            _ => self.other += 1,
        }
    }

    /// The furthest phase the events show: any stream event means streaming.
    pub fn phase(&self) -> Option<SourcePhase> {
        let ops = &self.ops.0;
        if self.other > 0 || ops[..Op::Snapshot as usize].iter().any(|n| *n > 0) {
            Some(SourcePhase::Streaming)
        } else if ops[Op::Snapshot as usize] > 0 {
            Some(SourcePhase::Snapshotting)
        } else {
            None
        }
    }
}

/// Row changes of an open target transaction per target table and op.
/// Tables are found by pointer first (the router hands out the same `Arc`
/// for every row of a table), so counting a row costs a comparison and an add.
#[derive(Debug, Default)]
pub struct AppliedCounts {
    tables: Vec<(Arc<TableSchema>, OpCounts)>,
    last: usize,
}

impl AppliedCounts {
    /// Counts `n` changes of `op` to the target `table`.
    #[inline]
    pub fn add(&mut self, table: &Arc<TableSchema>, op: Op, n: u64) {
        if let Some((t, c)) = self.tables.get_mut(self.last) {
            if Arc::ptr_eq(t, table) {
                c.add(op, n);
                return;
            }
        }
        self.add_other_table(table, op, n);
    }

    #[cold]
    fn add_other_table(&mut self, table: &Arc<TableSchema>, op: Op, n: u64) {
        let i = match self
            .tables
            .iter()
            .position(|(t, _)| Arc::ptr_eq(t, table) || t.id == table.id)
        {
            Some(i) => i,
            None => {
                self.tables.push((table.clone(), OpCounts::default()));
                self.tables.len() - 1
            }
        };
        self.last = i;
        self.tables[i].1.add(op, n);
    }

    /// The counts, per target table.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<TableSchema>, &OpCounts)> {
        self.tables.iter().map(|(t, c)| (t, c))
    }
}

/// One task's metric handles (label values resolved once).
pub struct TaskMetrics {
    task: Arc<str>,
    transactions: Counter,
    batch_rows: Histogram,
    apply_duration: Histogram,
    latency: Histogram,
    queue_depth: Gauge,
    queue_capacity: Gauge,
    /// Created on the first measurement (no made-up 0 before it).
    lag: Option<Gauge>,
    /// `CHANGES_APPLIED` handles per target table, in op order.
    applied: std::collections::HashMap<TableId, [Counter; 5]>,
}

impl TaskMetrics {
    /// Registers the task's applier-side series.
    pub fn new(task: &str) -> Self {
        let t = || task.to_string();
        Self {
            task: Arc::from(task),
            transactions: counter!(TRANSACTIONS_APPLIED, LABEL_TASK => t()),
            batch_rows: histogram!(BATCH_ROWS, LABEL_TASK => t()),
            apply_duration: histogram!(APPLY_DURATION, LABEL_TASK => t()),
            latency: histogram!(END_TO_END_LATENCY, LABEL_TASK => t()),
            queue_depth: gauge!(QUEUE_DEPTH, LABEL_TASK => t()),
            queue_capacity: gauge!(QUEUE_CAPACITY, LABEL_TASK => t()),
            lag: None,
            applied: std::collections::HashMap::new(),
        }
    }

    /// The task name.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// Records one committed target transaction.
    pub fn record_commit(&mut self, commit: &CommitRecord<'_>) {
        self.batch_rows.record(commit.rows as f64);
        self.apply_duration.record(commit.sink_time.as_secs_f64());
        if commit.transactions > 0 {
            self.transactions.increment(commit.transactions);
        }
        for (table, counts) in commit.applied.iter() {
            if counts.is_empty() {
                continue;
            }
            let handles = self.applied.entry(table.id.clone()).or_insert_with(|| {
                let name = table.id.to_string();
                Op::ALL.map(|op| {
                    counter!(CHANGES_APPLIED, LABEL_TASK => self.task.to_string(),
                        LABEL_TABLE => name.clone(), LABEL_OP => op.as_str())
                })
            });
            for (h, n) in handles.iter().zip(counts.0) {
                if n > 0 {
                    h.increment(n);
                }
            }
        }
        if let Some(lag) = commit.lag {
            let secs = lag.as_secs_f64();
            self.latency.record(secs);
            self.set_lag(secs);
        }
    }

    /// The source reported nothing pending: the task is caught up.
    pub fn caught_up(&mut self) {
        self.set_lag(0.0);
    }

    fn set_lag(&mut self, secs: f64) {
        let task = &self.task;
        self.lag
            .get_or_insert_with(|| gauge!(LAG, LABEL_TASK => task.to_string()))
            .set(secs);
    }

    /// Sets the queue depth and capacity gauges.
    pub fn queue(&self, depth: usize, capacity: usize) {
        self.queue_depth.set(depth as f64);
        self.queue_capacity.set(capacity as f64);
    }

    /// Sets the durable row count of a table's copy.
    pub fn snapshot_copied(&self, source_table: &str, rows: u64) {
        gauge!(SNAPSHOT_COPIED_ROWS, LABEL_TASK => self.task.to_string(),
            LABEL_TABLE => source_table.to_string())
        .set(rows as f64);
    }

    /// Sets the number of tables whose copy is durable.
    pub fn snapshot_done_tables(&self, done: usize) {
        set_task_gauge(SNAPSHOT_DONE_TABLES, &self.task, done as f64);
    }

    /// Sets the number of tables of the initial copy.
    pub fn snapshot_tables(&self, tables: usize) {
        set_task_gauge(SNAPSHOT_TABLES, &self.task, tables as f64);
    }
}

/// What one target transaction did, for [`TaskMetrics::record_commit`].
pub struct CommitRecord<'a> {
    /// Row changes (and snapshot rows) in the transaction.
    pub rows: usize,
    /// Source transactions it completed.
    pub transactions: u64,
    /// Time spent in sink calls for it.
    pub sink_time: Duration,
    /// Source commit → target commit of its last source transaction.
    pub lag: Option<Duration>,
    pub applied: &'a AppliedCounts,
}

mod latency;
mod live;
mod timed;

pub use latency::{LatencyHistogram, LatencySummary};
pub use live::{ConnectionGuard, ConnectionRole, LiveStatus, SourcePhase, SourceReporter};
pub use timed::TimedSink;

#[cfg(test)]
mod tests;

//! The monitoring loop of a daemon in fleet mode: every [`PERIOD`], for each
//! task of the registry that comes from the metadata database, it
//!
//! 1. closes the task's window (counter deltas, latency histogram taken and
//!    reset, lag, process CPU and memory: [`window`]) and queues its six
//!    `sync_metrics` 1MIN rows;
//! 2. derives the task's health and its alert conditions from the task's
//!    `alert_config` ([`alerts`]);
//! 3. writes, in this order: the queued rows, `health_status` /
//!    `total_records_synced` / `last_sync_time` where they changed, the
//!    alerts to open or resolve, and the 5MIN / 15MIN / 1HOUR / 1DAY
//!    roll-ups of the windows that closed;
//! 4. once an hour, if no other daemon is at it (`pg_try_advisory_lock`),
//!    creates the metrics partitions [`PARTITIONS_AHEAD`] months ahead and
//!    applies retention (metrics 3 months, audit 1 year).
//!
//! The loop only reads the pipeline's atomics: it never waits for
//! replication and replication never waits for it. When the metadata
//! database is unreachable it logs a warning, keeps the windows in memory
//! (at most [`MAX_PENDING_WINDOWS`] per task, the oldest dropped first) and
//! the record deltas, and writes them at the next tick that reaches the
//! database. Every write is idempotent or guarded, so a retry never
//! duplicates a row or an alert.

pub mod alerts;
pub mod window;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metastore::meta::monitoring::{
    self as mon, AlertType, HealthStatus, MetricRow, TaskStatusUpdate, TimeWindow,
};
use metastore::meta::{MetaDb, MetaError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::registry::{Registry, TaskEntry};
use alerts::{AlertTracker, Check, Decision, Observed, Thresholds};
use window::{Baseline, ProcessSampler};

/// How often windows close and rows are written.
pub const PERIOD: Duration = Duration::from_secs(60);
/// How often housekeeping runs (partitions ahead, retention).
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);
/// Monthly `sync_metrics` partitions kept ready beyond the current month.
pub const PARTITIONS_AHEAD: u32 = 3;
/// Windows kept per task while the database is unreachable (2 hours of 1MIN rows).
pub const MAX_PENDING_WINDOWS: usize = 120;
/// How far back roll-ups catch up after a long outage.
const MAX_CATCH_UP: chrono::TimeDelta = chrono::TimeDelta::days(2);
/// The last write when the daemon stops.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Timing of the loop (tests shorten it).
#[derive(Debug, Clone)]
pub struct Options {
    pub period: Duration,
    pub housekeeping_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            period: PERIOD,
            housekeeping_every: HOUSEKEEPING_EVERY,
        }
    }
}

/// Runs the monitoring loop until `stop`, then writes the last partial
/// window (for at most a few seconds).
// Started by the fleet controller; allowed until that call lands.
pub async fn run(db: MetaDb, registry: Arc<Registry>, stop: CancellationToken) {
    run_with(db, registry, stop, Options::default()).await
}

/// [`run`] with explicit timing.
pub async fn run_with(db: MetaDb, registry: Arc<Registry>, stop: CancellationToken, opts: Options) {
    let period = opts.period.max(Duration::from_millis(100));
    let mut m = Monitor::new();
    let mut last_housekeeping: Option<Instant> = None;
    let mut mapping_stats = mapping_stats::MappingStatsSync::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(until_next_boundary(Utc::now(), period)) => {}
        }
        let now = Utc::now();
        m.sample(&registry, now, window_start(now, period));
        tokio::select! {
            _ = stop.cancelled() => break,
            r = tokio::time::timeout(period, m.flush(&db, now)) => {
                if r.is_err() {
                    warn!(timeout_secs = period.as_secs_f64(), "metadata database writes timed out: retrying next window");
                }
            }
        }
        if let Err(e) = mapping_stats.flush(&db, &registry).await {
            warn!(error = %e, "cannot write mapping and script statistics; retrying next window");
        }
        if last_housekeeping.is_none_or(|t| t.elapsed() >= opts.housekeeping_every) {
            tokio::select! {
                _ = stop.cancelled() => break,
                done = housekeeping(&db, now, period) => {
                    if done {
                        last_housekeeping = Some(Instant::now());
                    }
                }
            }
        }
    }
    // The partial window in progress, under its own start.
    let now = Utc::now();
    m.sample(&registry, now, window_start(now, period) + period);
    if tokio::time::timeout(FINAL_FLUSH, m.flush(&db, Utc::now()))
        .await
        .is_err()
    {
        warn!("could not write the last monitoring window before stopping");
    }
    if let Ok(Err(e)) = tokio::time::timeout(FINAL_FLUSH, mapping_stats.flush(&db, &registry)).await
    {
        warn!(error = %e, "could not write mapping statistics before stopping");
    }
}

/// Time until the next multiple of `period` since the epoch (windows are
/// aligned on wall-clock minutes).
fn until_next_boundary(now: DateTime<Utc>, period: Duration) -> Duration {
    let p = period.as_micros().max(1) as i64;
    let us = now.timestamp_micros();
    let next = (us.div_euclid(p) + 1) * p;
    Duration::from_micros((next - us) as u64)
}

/// The start of the window that ends at the boundary at or before `now`.
fn window_start(now: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    let p = period.as_micros().max(1) as i64;
    let end = now.timestamp_micros().div_euclid(p) * p;
    DateTime::<Utc>::from_timestamp_micros(end - p).unwrap_or(now)
}

/// The windows of `level` to roll up at `now`, given where the last
/// successful roll-up ended: `None` when no window closed since.
fn rollup_range(
    level: TimeWindow,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let until = level.start_of(now);
    let len = chrono::TimeDelta::seconds(level.seconds());
    match last {
        Some(l) if l >= until => None,
        // From the last end (windows before it are done), or on start-up the
        // last two windows (the previous daemon may have missed one).
        last => Some((
            last.unwrap_or(until - len * 2).max(until - MAX_CATCH_UP),
            until,
        )),
    }
}

/// One housekeeping run; returns whether it is done for this hour (run here
/// or by another daemon).
async fn housekeeping(db: &MetaDb, now: DateTime<Utc>, limit: Duration) -> bool {
    match tokio::time::timeout(limit, mon::housekeeping(db, now, PARTITIONS_AHEAD)).await {
        Ok(Ok(Some(r))) => {
            info!(
                partitions_created = ?r.partitions_created,
                partitions_dropped = ?r.retention.dropped_partitions,
                audit_rows_deleted = r.retention.audit_rows_deleted,
                "metadata database housekeeping done"
            );
            true
        }
        Ok(Ok(None)) => {
            debug!("metadata database housekeeping: another daemon holds the lock");
            true
        }
        Ok(Err(err)) => {
            warn!(error = %err, "metadata database housekeeping failed: retrying next window");
            false
        }
        Err(_) => {
            warn!("metadata database housekeeping timed out: retrying next window");
            false
        }
    }
}

/// What the loop keeps about one task.
struct TaskMon {
    name: String,
    entry: Arc<TaskEntry>,
    /// Still in the registry at the last window.
    present: bool,
    baseline: Baseline,
    thresholds: Thresholds,
    /// 1MIN rows not yet written, oldest first.
    pending_rows: Vec<MetricRow>,
    /// Records not yet added to `total_records_synced`.
    pending_records: u64,
    health: HealthStatus,
    health_written: Option<HealthStatus>,
    last_sync: Option<DateTime<Utc>>,
    last_sync_written: Option<DateTime<Utc>>,
    tracker: AlertTracker,
    /// The last window's alert conditions (judged once per window).
    checks: Vec<Check>,
    observed: Observed,
}

impl TaskMon {
    fn new(entry: &Arc<TaskEntry>, config: &serde_json::Value) -> Self {
        Self {
            name: entry.name.clone(),
            entry: entry.clone(),
            present: true,
            baseline: Baseline::default(),
            thresholds: thresholds_of(&entry.name, config),
            pending_rows: Vec::new(),
            pending_records: 0,
            health: HealthStatus::Unknown,
            health_written: None,
            last_sync: None,
            last_sync_written: None,
            tracker: AlertTracker::default(),
            checks: Vec::new(),
            observed: Observed::default(),
        }
    }

    fn has_pending(&self) -> bool {
        !self.pending_rows.is_empty()
            || self.pending_records > 0
            || self.health_written != Some(self.health)
            || self.last_sync != self.last_sync_written
    }

    fn status_update(&self, task_id: Uuid) -> Option<TaskStatusUpdate> {
        self.has_status_change().then(|| TaskStatusUpdate {
            task_id,
            health: self.health,
            records_delta: i64::try_from(self.pending_records).unwrap_or(i64::MAX),
            last_sync_time: self.last_sync,
        })
    }

    fn has_status_change(&self) -> bool {
        self.pending_records > 0
            || self.health_written != Some(self.health)
            || self.last_sync != self.last_sync_written
    }
}

fn thresholds_of(task: &str, config: &serde_json::Value) -> Thresholds {
    let (t, ignored) = Thresholds::from_config(config);
    for problem in ignored {
        warn!(task = %task, problem = %problem, "alert_config: value ignored, the default applies");
    }
    t
}

struct Monitor {
    tasks: HashMap<Uuid, TaskMon>,
    process: ProcessSampler,
    last_sample: Instant,
    /// Per roll-up level, where the last successful roll-up ended.
    rolled_up: HashMap<TimeWindow, DateTime<Utc>>,
    /// The last tick could not reach the database.
    db_down: bool,
}

impl Monitor {
    fn new() -> Self {
        Self {
            tasks: HashMap::new(),
            process: ProcessSampler::new(),
            last_sample: Instant::now(),
            rolled_up: HashMap::new(),
            db_down: false,
        }
    }

    /// Closes every fleet task's window at `now`, recorded under `start`
    /// (no I/O but `/proc/self`).
    fn sample(&mut self, registry: &Registry, now: DateTime<Utc>, start: DateTime<Utc>) {
        let elapsed = self.last_sample.elapsed();
        self.last_sample = Instant::now();
        let process = self.process.sample();
        let mut seen = HashSet::new();
        for entry in registry.tasks() {
            let Some(meta) = &entry.meta else {
                continue;
            };
            seen.insert(meta.task_id);
            let tm = self
                .tasks
                .entry(meta.task_id)
                .or_insert_with(|| TaskMon::new(&entry, &meta.alert_config));
            if !Arc::ptr_eq(&tm.entry, &entry) {
                // A new entry (restarted or reconfigured task): fresh counters.
                tm.entry = entry.clone();
                tm.name = entry.name.clone();
                tm.baseline = Baseline::default();
                tm.thresholds = thresholds_of(&entry.name, &meta.alert_config);
            }
            tm.present = true;
            let w = window::sample_task(&entry, &mut tm.baseline, elapsed, now, process.rss_bytes);
            tm.pending_rows
                .extend(window::metric_rows(meta.task_id, start, &w, &process));
            let excess = tm
                .pending_rows
                .len()
                .saturating_sub(MAX_PENDING_WINDOWS * 6);
            if excess > 0 {
                tm.pending_rows.drain(..excess);
                warn!(task = %tm.name, "metadata database unreachable for too long: oldest metrics windows dropped");
            }
            tm.pending_records += w.observed.records;
            tm.health = alerts::health(w.run, &w.observed, &tm.thresholds);
            tm.last_sync = tm.last_sync.max(w.last_sync);
            tm.checks = alerts::checks(w.run, &w.observed, &tm.thresholds);
            tm.observed = w.observed;
        }
        for (id, tm) in &mut self.tasks {
            if !seen.contains(id) {
                tm.present = false;
                tm.checks.clear();
            }
        }
    }

    /// Judges every present task's alerts once for this window; `active` is
    /// the database's view of open alerts, when it could be read.
    fn evaluate(
        &mut self,
        now: DateTime<Utc>,
        active: Option<&[(Uuid, AlertType)]>,
    ) -> Vec<(Uuid, Decision)> {
        let mut out = Vec::new();
        for (id, tm) in self.tasks.iter_mut().filter(|(_, t)| t.present) {
            if let Some(active) = active {
                let kinds: Vec<AlertType> = active
                    .iter()
                    .filter(|(t, _)| t == id)
                    .map(|(_, k)| *k)
                    .collect();
                tm.tracker.sync(&kinds, now);
            }
            let decisions = tm.tracker.evaluate(now, &tm.checks, &tm.thresholds);
            out.extend(decisions.into_iter().map(|d| (*id, d)));
        }
        out
    }

    fn pending_windows(&self) -> usize {
        self.tasks
            .values()
            .map(|t| t.pending_rows.len() / 6)
            .max()
            .unwrap_or(0)
    }

    /// Logs a failed step; returns whether to stop this tick (the database
    /// is unreachable: the next steps would fail too).
    fn failed(&mut self, what: &str, err: &MetaError) -> bool {
        let pending_windows = self.pending_windows();
        if err.is_transient() {
            self.db_down = true;
            warn!(error = %err, pending_windows, "metadata database unavailable while {what}: kept in memory, retrying next window");
            true
        } else {
            warn!(error = %err, "metadata database refused {what}: retrying next window");
            false
        }
    }

    /// Writes what the windows produced. Never returns an error: failures
    /// are logged and retried at the next window.
    async fn flush(&mut self, db: &MetaDb, now: DateTime<Utc>) {
        let ids: Vec<Uuid> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.present)
            .map(|(id, _)| *id)
            .collect();
        let mut conn = match db.get().await {
            Ok(c) => c,
            Err(err) => {
                self.evaluate(now, None);
                self.failed("connecting", &err);
                return;
            }
        };
        let decisions = match mon::active_alerts(&*conn, &ids).await {
            Ok(active) => self.evaluate(now, Some(&active)),
            Err(err) => {
                self.evaluate(now, None);
                if self.failed("reading active alerts", &err) {
                    return;
                }
                Vec::new()
            }
        };

        let rows: Vec<MetricRow> = self
            .tasks
            .values()
            .flat_map(|t| t.pending_rows.iter().cloned())
            .collect();
        match mon::insert_metrics(&mut conn, TimeWindow::OneMin, &rows).await {
            Ok(_) => self.tasks.values_mut().for_each(|t| t.pending_rows.clear()),
            Err(err) if self.failed("writing metrics rows", &err) => return,
            Err(_) => {}
        }

        let updates: Vec<TaskStatusUpdate> = self
            .tasks
            .iter()
            .filter_map(|(id, t)| t.status_update(*id))
            .collect();
        match mon::update_task_status(&*conn, &updates).await {
            Ok(_) => {
                for u in &updates {
                    if let Some(t) = self.tasks.get_mut(&u.task_id) {
                        t.pending_records = t
                            .pending_records
                            .saturating_sub(u.records_delta.max(0) as u64);
                        t.health_written = Some(u.health);
                        t.last_sync_written = u.last_sync_time;
                    }
                }
            }
            Err(err) if self.failed("updating task health", &err) => return,
            Err(_) => {}
        }

        for (task_id, decision) in decisions {
            let Some(tm) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            let kind = decision.kind();
            let result = match &decision {
                Decision::Open { check, held } => {
                    let alert = alerts::new_alert(task_id, &tm.name, check, *held, &tm.observed);
                    mon::open_alert(&*conn, &alert).await.map(|id| {
                        if id.is_some() {
                            warn!(task = %tm.name, alert = kind.as_str(), level = kind.level(), "alert opened: {}", alert.title);
                        }
                        tm.tracker.opened(kind, now);
                    })
                }
                Decision::Resolve { check, clear_for } => {
                    let note = alerts::resolution_note(check, *clear_for);
                    mon::resolve_alert(&*conn, task_id, kind, &note)
                        .await
                        .map(|_| {
                            info!(task = %tm.name, alert = kind.as_str(), "alert resolved");
                            tm.tracker.resolved(kind);
                        })
                }
            };
            if let Err(err) = result {
                if self.failed("writing an alert", &err) {
                    return;
                }
            }
        }

        for level in TimeWindow::ROLLUPS {
            let Some((from, until)) = rollup_range(level, self.rolled_up.get(&level).copied(), now)
            else {
                continue;
            };
            match mon::roll_up(&mut conn, &ids, level, from, until).await {
                Ok(_) => {
                    self.rolled_up.insert(level, until);
                }
                Err(err) if self.failed("rolling metrics up", &err) => return,
                Err(_) => {}
            }
        }

        self.tasks.retain(|_, t| t.present || t.has_pending());
        if std::mem::take(&mut self.db_down) {
            info!("metadata database reachable again: monitoring rows written");
        }
    }
}

#[cfg(test)]
mod tests;

mod mapping_stats;

//! The live state of every task: updated by the supervisor (`daemon.rs`) and
//! the pipeline (through [`TaskStats`]), read by the admin endpoint and the
//! metrics exported at scrape time.
//!
//! States: `starting`, `snapshotting`, `streaming` (a run is in progress; the
//! phase comes from the pipeline), `retrying` (a transient failure, waiting
//! for the backoff), `failed` (stopped, needs an operator), `stopped` (on
//! request), `completed` (a `FULL_ONLY` copy finished).
//!
//! Health, from the state, the lag and recent errors:
//! - `UNHEALTHY`: failed or retrying; or lag ≥ [`UNHEALTHY_LAG`]; or streaming
//!   with unacknowledged source changes and no checkpoint for [`STALL_AFTER`].
//! - `DEGRADED`: lag ≥ [`DEGRADED_LAG`], or an error in the last [`RECENT_ERROR`].
//! - `HEALTHY`: snapshotting, streaming or completed otherwise.
//! - `UNKNOWN`: starting or stopped.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
#[cfg(test)]
use engine::config::Config;
use engine::config::SyncMode;
use engine::metrics::{self as m, HealthCode, SourcePhase, TaskStateCode};
use engine::pipeline::TaskStats;
use engine::Checkpoint;
use serde::Serialize;

/// Lag from which a task is `DEGRADED`.
pub const DEGRADED_LAG: Duration = Duration::from_secs(30);
/// Lag from which a task is `UNHEALTHY`.
pub const UNHEALTHY_LAG: Duration = Duration::from_secs(300);
/// How long an error keeps a recovered task `DEGRADED`.
pub const RECENT_ERROR: Duration = Duration::from_secs(300);
/// No checkpoint for this long while the source has unacknowledged changes: stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(300);

/// A task's state, as reported by `/api/tasks` and [`m::TASK_STATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Starting,
    Snapshotting,
    Streaming,
    Retrying,
    Failed,
    Stopped,
    Completed,
}

impl TaskState {
    /// The value of `dbsync_task_state`.
    pub fn code(self) -> TaskStateCode {
        match self {
            TaskState::Starting => TaskStateCode::Starting,
            TaskState::Snapshotting => TaskStateCode::Snapshotting,
            TaskState::Streaming => TaskStateCode::Streaming,
            TaskState::Retrying => TaskStateCode::Retrying,
            TaskState::Failed => TaskStateCode::Failed,
            TaskState::Stopped => TaskStateCode::Stopped,
            TaskState::Completed => TaskStateCode::Completed,
        }
    }

    /// Running, or ended on purpose (`/ready`).
    pub fn is_ready(self) -> bool {
        matches!(
            self,
            TaskState::Snapshotting
                | TaskState::Streaming
                | TaskState::Completed
                | TaskState::Stopped
        )
    }
}

/// A task's health, as reported by `/api/tasks` and [`m::TASK_HEALTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
    Unknown,
}

impl Health {
    /// The value of `dbsync_task_health`.
    pub fn code(self) -> HealthCode {
        match self {
            Health::Healthy => HealthCode::Healthy,
            Health::Degraded => HealthCode::Degraded,
            Health::Unhealthy => HealthCode::Unhealthy,
            Health::Unknown => HealthCode::Unknown,
        }
    }
}

/// What the supervisor is doing with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Running,
    Retrying,
    Failed,
    Stopped,
    Completed,
}

/// The last failure of a task. Error messages name tables and columns, never values.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub message: String,
    /// [`m::error_kind`].
    pub kind: &'static str,
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
struct Status {
    run: Run,
    since: DateTime<Utc>,
    /// Runs started (1 = no restart yet).
    attempts: u64,
    last_error: Option<LastError>,
}

/// Where a task comes from in the metadata database (fleet mode).
#[derive(Debug, Clone)]
pub struct TaskMeta {
    pub task_id: uuid::Uuid,
    /// `sync_tasks.alert_config` (thresholds for health and alerts).
    pub alert_config: serde_json::Value,
}

/// One task's entry.
pub struct TaskEntry {
    pub name: String,
    sync_mode: SyncMode,
    pub stats: Arc<TaskStats>,
    /// Set for tasks loaded from the metadata database.
    pub meta: Option<TaskMeta>,
    /// Errors seen since the entry was added (transient ones included).
    pub errors_total: std::sync::atomic::AtomicU64,
    /// The mapping and script statistics of the current run.
    mapping_stats: Mutex<Option<engine::mapping::StatsHandle>>,
    status: Mutex<Status>,
}

/// Every task's entry. TOML tasks are added at startup; fleet tasks come and
/// go as the metadata database says.
pub struct Registry {
    tasks: std::sync::RwLock<Vec<Arc<TaskEntry>>>,
}

impl Registry {
    /// No task yet.
    pub fn empty() -> Self {
        Self {
            tasks: std::sync::RwLock::new(Vec::new()),
        }
    }

    /// One entry per configured TOML task, all `starting`.
    #[cfg(test)]
    pub fn new(config: &Config) -> Self {
        let r = Self {
            tasks: std::sync::RwLock::new(Vec::new()),
        };
        for t in &config.tasks {
            r.add(&t.name, t.sync_mode, None);
        }
        r
    }

    /// Adds (or replaces) the entry of a task, `starting`, and returns it.
    pub fn add(&self, name: &str, sync_mode: SyncMode, meta: Option<TaskMeta>) -> Arc<TaskEntry> {
        let entry = Arc::new(TaskEntry {
            name: name.to_string(),
            sync_mode,
            stats: Arc::new(TaskStats::default()),
            meta,
            errors_total: std::sync::atomic::AtomicU64::new(0),
            mapping_stats: Mutex::new(None),
            status: Mutex::new(Status {
                run: Run::Running,
                since: Utc::now(),
                attempts: 0,
                last_error: None,
            }),
        });
        let mut tasks = self.tasks.write().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| t.name != name);
        tasks.push(entry.clone());
        entry
    }

    /// Removes a task's entry (it no longer runs here).
    pub fn remove(&self, name: &str) {
        let mut tasks = self.tasks.write().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| t.name != name);
    }

    /// Every task, in the order they were added.
    pub fn tasks(&self) -> Vec<Arc<TaskEntry>> {
        self.tasks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<Arc<TaskEntry>> {
        self.tasks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }
}

impl TaskEntry {
    fn status(&self) -> MutexGuard<'_, Status> {
        // A panic while holding the lock cannot leave `Status` inconsistent.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, run: Run) {
        let mut s = self.status();
        if s.run != run {
            s.run = run;
            s.since = Utc::now();
        }
    }

    /// A run begins.
    pub fn starting(&self) {
        self.stats.live.reset_phase();
        let mut s = self.status();
        s.attempts += 1;
        s.run = Run::Running;
        s.since = Utc::now();
    }

    /// A run failed; counts it in [`m::ERRORS`] and keeps it as the last error.
    pub fn error(&self, e: &engine::Error) {
        m::record_error(&self.name, e);
        self.errors_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.status().last_error = Some(LastError {
            message: e.to_string(),
            kind: m::error_kind(e),
            at: Utc::now(),
        });
    }

    /// A run started with these mappings (their statistics count from zero).
    pub fn set_mapping_stats(&self, h: engine::mapping::StatsHandle) {
        *self.mapping_stats.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    /// The mapping and script statistics of the current run, if one started.
    pub fn mapping_stats(&self) -> Option<engine::mapping::StatsHandle> {
        self.mapping_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The message of the last error, if any.
    pub fn last_error_message(&self) -> Option<String> {
        self.status().last_error.as_ref().map(|e| e.message.clone())
    }

    /// Waiting to retry after a transient failure.
    pub fn retrying(&self) {
        self.set(Run::Retrying);
    }

    /// Stopped on a definite failure.
    pub fn failed(&self) {
        self.set(Run::Failed);
    }

    /// Stopped on request.
    pub fn stopped(&self) {
        self.set(Run::Stopped);
    }

    /// Ended by itself (a `FULL_ONLY` copy finished).
    pub fn completed(&self) {
        self.set(Run::Completed);
    }

    /// The task's state now.
    pub fn state(&self) -> TaskState {
        let run = self.status().run;
        match run {
            Run::Running => match self.stats.live.phase() {
                SourcePhase::Starting => TaskState::Starting,
                SourcePhase::Snapshotting => TaskState::Snapshotting,
                SourcePhase::Streaming => TaskState::Streaming,
            },
            Run::Retrying => TaskState::Retrying,
            Run::Failed => TaskState::Failed,
            Run::Stopped => TaskState::Stopped,
            Run::Completed => TaskState::Completed,
        }
    }

    /// Seconds since the last checkpoint written by this process.
    pub fn checkpoint_age(&self, now: DateTime<Utc>) -> Option<Duration> {
        let us = self.stats.live.last_checkpoint_us()?;
        let age = now.timestamp_micros().saturating_sub(us).max(0);
        Some(Duration::from_micros(age as u64))
    }

    /// The task's health now (see the module doc).
    pub fn health(&self, state: TaskState, now: DateTime<Utc>) -> Health {
        let live = &self.stats.live;
        let recent_error = self
            .status()
            .last_error
            .as_ref()
            .is_some_and(|e| (now - e.at).to_std().unwrap_or_default() < RECENT_ERROR);
        match state {
            TaskState::Failed | TaskState::Retrying => Health::Unhealthy,
            TaskState::Starting | TaskState::Stopped => Health::Unknown,
            TaskState::Snapshotting | TaskState::Streaming | TaskState::Completed => {
                let lag = if state == TaskState::Completed {
                    Duration::ZERO
                } else {
                    live.lag().unwrap_or_default()
                };
                let stalled = state == TaskState::Streaming
                    && live.lag_bytes().is_some_and(|b| b > 0)
                    && self.checkpoint_age(now).is_some_and(|a| a >= STALL_AFTER);
                if lag >= UNHEALTHY_LAG || stalled {
                    Health::Unhealthy
                } else if lag >= DEGRADED_LAG || recent_error {
                    Health::Degraded
                } else {
                    Health::Healthy
                }
            }
        }
    }

    /// Everything `/api/tasks` shows about the task; `checkpoint` is the
    /// stored one (positions, snapshot progress).
    pub fn view(&self, checkpoint: Option<&Checkpoint>, now: DateTime<Utc>) -> TaskView {
        use std::sync::atomic::Ordering::Relaxed;
        let state = self.state();
        let health = self.health(state, now);
        let (since, attempts, last_error) = {
            let s = self.status();
            (s.since, s.attempts, s.last_error.clone())
        };
        let live = &self.stats.live;
        let stats = &self.stats;
        TaskView {
            name: self.name.clone(),
            state,
            health,
            state_since: since,
            sync_mode: match self.sync_mode {
                SyncMode::FullOnly => "FULL_ONLY",
                SyncMode::IncrementalOnly => "INCREMENTAL_ONLY",
                SyncMode::FullIncremental => "FULL_INCREMENTAL",
            },
            restarts: attempts.saturating_sub(1),
            lag: LagView {
                seconds: live.lag().map(|d| d.as_secs_f64()),
                source_bytes: live.lag_bytes(),
                slot_retained_wal_bytes: live.retained_wal_bytes(),
                checkpoint_age_seconds: self.checkpoint_age(now).map(|d| d.as_secs_f64()),
            },
            position: checkpoint.map(|cp| PositionView {
                stream: cp.stream.as_ref().map(|o| o.to_string()),
                updated_at: cp.updated_at,
                snapshot_completed: cp.snapshot.completed,
                snapshot_tables: cp.snapshot.tables.len(),
                snapshot_tables_done: cp.snapshot.tables.values().filter(|p| p.done).count(),
                snapshot_rows_copied: cp.snapshot.tables.values().map(|p| p.rows_copied).sum(),
            }),
            totals: TotalsView {
                changes_applied: stats.rows_applied.load(Relaxed),
                snapshot_rows: stats.snapshot_rows.load(Relaxed),
                transactions: stats.transactions.load(Relaxed),
                target_commits: stats.target_commits.load(Relaxed),
            },
            last_error,
        }
    }
}

/// `/api/tasks` entry.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub name: String,
    pub state: TaskState,
    pub health: Health,
    pub state_since: DateTime<Utc>,
    pub sync_mode: &'static str,
    /// Runs restarted after a failure since the daemon started.
    pub restarts: u64,
    pub lag: LagView,
    /// The stored checkpoint (`null` before the first one).
    pub position: Option<PositionView>,
    /// Since the daemon started.
    pub totals: TotalsView,
    pub last_error: Option<LastError>,
}

#[derive(Debug, Serialize)]
pub struct LagView {
    /// Source commit → target commit of the last transaction (0 when caught up).
    pub seconds: Option<f64>,
    /// Source log bytes not yet acknowledged ([`m::SOURCE_LAG_BYTES`]).
    pub source_bytes: Option<u64>,
    /// WAL the replication slot retains (PostgreSQL).
    pub slot_retained_wal_bytes: Option<u64>,
    pub checkpoint_age_seconds: Option<f64>,
}

/// Positions only: never key values (the snapshot's last keys stay out).
#[derive(Debug, Serialize)]
pub struct PositionView {
    /// Resume offset of the stream, e.g. `lsn 0/1A2B3C4 #0`.
    pub stream: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub snapshot_completed: bool,
    pub snapshot_tables: usize,
    pub snapshot_tables_done: usize,
    pub snapshot_rows_copied: u64,
}

#[derive(Debug, Serialize)]
pub struct TotalsView {
    pub changes_applied: u64,
    pub snapshot_rows: u64,
    pub transactions: u64,
    pub target_commits: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let cfg = Config::parse(
            "[[task]]\nname = \"a\"\n[task.source]\ntype = \"postgresql\"\nurl = \"postgres://u@h/db\"\n\
             [task.target]\ntype = \"postgresql\"\nurl = \"postgres://u@h/db2\"\n",
        )
        .unwrap();
        Registry::new(&cfg)
    }

    #[test]
    fn states_follow_the_supervisor_and_the_pipeline_phase() {
        let r = registry();
        let t = r.task("a").unwrap();
        let now = Utc::now();
        t.starting();
        assert_eq!(t.state(), TaskState::Starting);
        assert_eq!(t.health(t.state(), now), Health::Unknown);
        t.stats.live.advance(SourcePhase::Snapshotting);
        assert_eq!(t.state(), TaskState::Snapshotting);
        assert!(t.state().is_ready());
        t.stats.live.advance(SourcePhase::Streaming);
        assert_eq!(t.state(), TaskState::Streaming);
        assert_eq!(t.health(TaskState::Streaming, now), Health::Healthy);
        t.error(&engine::Error::source_transient("connection reset"));
        t.retrying();
        assert_eq!(t.state(), TaskState::Retrying);
        assert!(!t.state().is_ready());
        assert_eq!(t.health(t.state(), now), Health::Unhealthy);
        // A new run starts from the beginning, and a recent error keeps it DEGRADED.
        t.starting();
        assert_eq!(t.state(), TaskState::Starting);
        t.stats.live.advance(SourcePhase::Streaming);
        assert_eq!(t.health(t.state(), Utc::now()), Health::Degraded);
        let later = Utc::now() + chrono::Duration::seconds(RECENT_ERROR.as_secs() as i64 + 1);
        assert_eq!(t.health(t.state(), later), Health::Healthy);
        t.failed();
        assert_eq!(t.state(), TaskState::Failed);
        assert_eq!(t.health(t.state(), later), Health::Unhealthy);
        let v = t.view(None, later);
        assert_eq!(v.restarts, 1);
        assert_eq!(v.last_error.unwrap().kind, "source_transient");
    }

    #[test]
    fn lag_and_stalls_drive_health() {
        let r = registry();
        let t = r.task("a").unwrap();
        t.starting();
        t.stats.live.advance(SourcePhase::Streaming);
        let now = Utc::now();
        t.stats.live.set_lag(DEGRADED_LAG);
        assert_eq!(t.health(t.state(), now), Health::Degraded);
        t.stats.live.set_lag(UNHEALTHY_LAG);
        assert_eq!(t.health(t.state(), now), Health::Unhealthy);
        t.stats.live.set_lag(Duration::ZERO);
        assert_eq!(t.health(t.state(), now), Health::Healthy);
        // Changes waiting at the source, and no checkpoint for too long.
        let old = now - chrono::Duration::seconds(STALL_AFTER.as_secs() as i64 + 1);
        t.stats.live.set_last_checkpoint_us(old.timestamp_micros());
        engine::metrics::SourceReporter::new("a", t.stats.live.clone()).source_lag_bytes(10);
        assert_eq!(t.health(t.state(), now), Health::Unhealthy);
        engine::metrics::SourceReporter::new("a", t.stats.live.clone()).source_lag_bytes(0);
        assert_eq!(t.health(t.state(), now), Health::Healthy);
    }

    #[test]
    fn completed_and_stopped_tasks_are_ready() {
        let r = registry();
        let t = r.task("a").unwrap();
        t.starting();
        assert!(!t.state().is_ready());
        t.completed();
        assert!(t.state().is_ready());
        assert_eq!(t.health(t.state(), Utc::now()), Health::Healthy);
        t.stopped();
        assert!(t.state().is_ready());
        let json = serde_json::to_value(t.view(None, Utc::now())).unwrap();
        assert_eq!(json["state"], "stopped");
        assert_eq!(json["health"], "UNKNOWN");
    }
}

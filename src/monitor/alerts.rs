//! Thresholds from a task's `alert_config`, the health they give, and the
//! alert state machine: a pure function of time and observed values that
//! says when to open and when to resolve each alert.
//!
//! `alert_config` keys (all optional; a value of the wrong type is ignored
//! with a warning and the default applies):
//!
//! | key | unit | default | used for |
//! |---|---|---|---|
//! | `lag_threshold` | source log bytes behind the server (`consumer_lag`) | 100000000 | HIGH_LAG, health |
//! | `lag_threshold_ms` | ms, source commit → target commit | 30000 | HIGH_LAG, health |
//! | `error_rate_threshold` | errors / (errors + records) in a window | 0.01 | HIGH_ERROR_RATE, health |
//! | `latency_threshold_ms` | ms, p99 end-to-end latency of a window | 30000 | HIGH_LATENCY |
//! | `memory_threshold_mb` | MiB resident memory of the daemon process | none (off) | RESOURCE_EXHAUSTED |
//! | `alert_for_secs` | s a condition must hold before its alert opens | 60 | every alert but CONNECTOR_FAILED (immediate) |
//! | `resolve_after_secs` | s a condition must be clear before its alert is resolved | `alert_for_secs` | every alert |
//!
//! RESOURCE_EXHAUSTED also opens when the source was blocked by backpressure
//! (waiting for room in the queue) for at least [`BLOCKED_FRACTION`] of the
//! window.
//!
//! Health: `UNKNOWN` while a task starts or is stopped; `UNHEALTHY` when it
//! failed or is retrying, when a lag exceeds [`HEAVY_FACTOR`] × its
//! threshold, or when the error rate exceeds its threshold; `DEGRADED` when a
//! lag exceeds its threshold or the window had any error; `HEALTHY` otherwise.

use std::time::Duration;

use chrono::{DateTime, Utc};
use metastore::meta::monitoring::{AlertType, HealthStatus, NewAlert};
use serde_json::{json, Value as Json};
use uuid::Uuid;

/// Default `lag_threshold` (source bytes).
pub const DEFAULT_LAG_BYTES: u64 = 100_000_000;
/// Default `lag_threshold_ms`.
pub const DEFAULT_LAG_MS: u64 = 30_000;
/// Default `error_rate_threshold`.
pub const DEFAULT_ERROR_RATE: f64 = 0.01;
/// Default `latency_threshold_ms` (p99).
pub const DEFAULT_LATENCY_MS: u64 = 30_000;
/// Default `alert_for_secs`.
pub const DEFAULT_ALERT_FOR: Duration = Duration::from_secs(60);
/// A lag this many times its threshold makes a task `UNHEALTHY`.
pub const HEAVY_FACTOR: u64 = 10;
/// Share of a window the source spent blocked by backpressure that counts as exhausted.
pub const BLOCKED_FRACTION: f64 = 0.95;

/// A task's thresholds (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub lag_bytes: u64,
    pub lag_ms: u64,
    pub error_rate: f64,
    pub latency_ms: u64,
    pub memory_bytes: Option<u64>,
    pub alert_for: Duration,
    pub resolve_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            lag_bytes: DEFAULT_LAG_BYTES,
            lag_ms: DEFAULT_LAG_MS,
            error_rate: DEFAULT_ERROR_RATE,
            latency_ms: DEFAULT_LATENCY_MS,
            memory_bytes: None,
            alert_for: DEFAULT_ALERT_FOR,
            resolve_after: DEFAULT_ALERT_FOR,
        }
    }
}

impl Thresholds {
    /// Reads `alert_config`; returns the thresholds and the keys that were
    /// ignored (wrong type or range), to be logged.
    pub fn from_config(config: &Json) -> (Self, Vec<String>) {
        let mut t = Thresholds::default();
        let mut bad = Vec::new();
        let mut uint = |key: &str| -> Option<u64> {
            let v = config.get(key)?;
            match v.as_u64() {
                Some(n) => Some(n),
                None => {
                    bad.push(format!("{key} must be a non-negative integer"));
                    None
                }
            }
        };
        if let Some(n) = uint("lag_threshold") {
            t.lag_bytes = n;
        }
        if let Some(n) = uint("lag_threshold_ms") {
            t.lag_ms = n;
        }
        if let Some(n) = uint("latency_threshold_ms") {
            t.latency_ms = n;
        }
        t.memory_bytes = uint("memory_threshold_mb").map(|mb| mb.saturating_mul(1 << 20));
        if let Some(n) = uint("alert_for_secs") {
            t.alert_for = Duration::from_secs(n);
        }
        t.resolve_after = uint("resolve_after_secs").map_or(t.alert_for, Duration::from_secs);
        if let Some(v) = config.get("error_rate_threshold") {
            match v.as_f64().filter(|r| (0.0..=1.0).contains(r)) {
                Some(r) => t.error_rate = r,
                None => bad.push("error_rate_threshold must be a number from 0 to 1".into()),
            }
        }
        (t, bad)
    }
}

/// What the daemon knows about a task at the end of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Starting,
    /// Snapshotting or streaming.
    Running,
    Retrying,
    Failed,
    Stopped,
    Completed,
}

/// The figures of one window that health and alerts are judged on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    pub lag_bytes: Option<u64>,
    pub lag_ms: Option<u64>,
    pub errors: u64,
    pub records: u64,
    /// p99 end-to-end latency (ms); `None` when nothing was committed.
    pub p99_ms: Option<f64>,
    pub rss_bytes: Option<u64>,
    /// Share of the window the source waited for room in the queue.
    pub blocked: f64,
    /// The kind of the last error (`engine::metrics::error_kind`), never its text.
    pub error_kind: Option<&'static str>,
}

impl Observed {
    /// errors / (errors + records); 0 for an empty window.
    pub fn error_rate(&self) -> f64 {
        let total = self.errors + self.records;
        if total == 0 {
            0.0
        } else {
            self.errors as f64 / total as f64
        }
    }
}

/// The task's health (see the module doc).
pub fn health(run: Run, o: &Observed, t: &Thresholds) -> HealthStatus {
    match run {
        Run::Starting | Run::Stopped => return HealthStatus::Unknown,
        Run::Failed | Run::Retrying => return HealthStatus::Unhealthy,
        Run::Running | Run::Completed => {}
    }
    let over = |v: Option<u64>, limit: u64, factor: u64| {
        v.is_some_and(|v| v > limit.saturating_mul(factor))
    };
    let lagging = run == Run::Running;
    let heavy_lag = lagging
        && (over(o.lag_bytes, t.lag_bytes, HEAVY_FACTOR) || over(o.lag_ms, t.lag_ms, HEAVY_FACTOR));
    let some_lag = lagging && (over(o.lag_bytes, t.lag_bytes, 1) || over(o.lag_ms, t.lag_ms, 1));
    if heavy_lag || (o.errors > 0 && o.error_rate() > t.error_rate) {
        HealthStatus::Unhealthy
    } else if some_lag || o.errors > 0 {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    }
}

/// One alert condition as observed in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub kind: AlertType,
    /// `None`: cannot be judged now (e.g. lag while the task is stopped):
    /// the alert keeps its state.
    pub breached: Option<bool>,
    /// What was measured, e.g. `consumer_lag_bytes`.
    pub metric: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub unit: &'static str,
}

/// The conditions of every alert type for one window.
pub fn checks(run: Run, o: &Observed, t: &Thresholds) -> Vec<Check> {
    let running = run == Run::Running;
    let mut out = Vec::with_capacity(AlertType::ALL.len());
    // Lag: bytes first, time when the bytes are fine.
    let bytes_over = o.lag_bytes.is_some_and(|b| b > t.lag_bytes);
    let ms_over = o.lag_ms.is_some_and(|m| m > t.lag_ms);
    let (metric, value, threshold, unit) = if bytes_over || (!ms_over && o.lag_bytes.is_some()) {
        let v = o.lag_bytes.unwrap_or(0);
        ("consumer_lag", v as f64, t.lag_bytes as f64, "bytes")
    } else {
        let v = o.lag_ms.unwrap_or(0);
        ("time_lag", v as f64, t.lag_ms as f64, "ms")
    };
    out.push(Check {
        kind: AlertType::HighLag,
        breached: match run {
            Run::Running => Some(bytes_over || ms_over),
            Run::Completed => Some(false),
            _ => None,
        },
        metric,
        value,
        threshold,
        unit,
    });
    out.push(Check {
        kind: AlertType::HighErrorRate,
        breached: Some(o.errors > 0 && o.error_rate() > t.error_rate),
        metric: "error_rate",
        value: o.error_rate(),
        threshold: t.error_rate,
        unit: "ratio",
    });
    out.push(Check {
        kind: AlertType::ConnectorFailed,
        breached: Some(run == Run::Failed),
        metric: "task_failed",
        value: if run == Run::Failed { 1.0 } else { 0.0 },
        threshold: 0.0,
        unit: "boolean",
    });
    out.push(Check {
        kind: AlertType::HighLatency,
        breached: (running || run == Run::Completed)
            .then(|| o.p99_ms.is_some_and(|p| p > t.latency_ms as f64)),
        metric: "p99_latency",
        value: o.p99_ms.unwrap_or(0.0),
        threshold: t.latency_ms as f64,
        unit: "ms",
    });
    let memory_over = matches!((o.rss_bytes, t.memory_bytes), (Some(r), Some(l)) if r > l);
    let blocked = running && o.blocked >= BLOCKED_FRACTION;
    let (metric, value, threshold, unit) = if memory_over || !blocked {
        let limit = t.memory_bytes.map_or(0.0, |l| l as f64);
        (
            "process_rss",
            o.rss_bytes.unwrap_or(0) as f64,
            limit,
            "bytes",
        )
    } else {
        ("backpressure_blocked", o.blocked, BLOCKED_FRACTION, "ratio")
    };
    out.push(Check {
        kind: AlertType::ResourceExhausted,
        breached: Some(memory_over || blocked),
        metric,
        value,
        threshold,
        unit,
    });
    out
}

/// Where one alert type stands for one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Clear,
    /// Breached since `since`, not yet long enough.
    Pending {
        since: DateTime<Utc>,
    },
    /// Open in the database; clear since `clear_since`, if it is.
    Open {
        since: DateTime<Utc>,
        clear_since: Option<DateTime<Utc>>,
    },
    /// Closed by an operator while the condition held: not reopened until it clears.
    Dismissed,
}

/// A change to make in the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Open { check: Check, held: Duration },
    Resolve { check: Check, clear_for: Duration },
}

impl Decision {
    pub fn kind(&self) -> AlertType {
        match self {
            Decision::Open { check, .. } | Decision::Resolve { check, .. } => check.kind,
        }
    }
}

/// The alert state machine of one task. [`AlertTracker::evaluate`] returns
/// decisions without acting on them; the caller confirms each one it could
/// write ([`AlertTracker::opened`], [`AlertTracker::resolved`]), so a
/// decision that could not be written is made again at the next window.
#[derive(Debug, Clone)]
pub struct AlertTracker {
    phases: [Phase; 5],
}

impl Default for AlertTracker {
    fn default() -> Self {
        Self {
            phases: [Phase::Clear; 5],
        }
    }
}

fn slot(kind: AlertType) -> usize {
    AlertType::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

fn since(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or_default()
}

impl AlertTracker {
    /// Aligns with the database: `active` are the types with an OPEN or
    /// ACKNOWLEDGED alert for this task. One found active is tracked as open
    /// (e.g. opened by the task's previous daemon); one tracked as open but
    /// no longer active was closed by an operator.
    pub fn sync(&mut self, active: &[AlertType], now: DateTime<Utc>) {
        for kind in AlertType::ALL {
            let p = &mut self.phases[slot(kind)];
            let is_active = active.contains(&kind);
            match *p {
                Phase::Open { .. } if !is_active => *p = Phase::Dismissed,
                Phase::Open { .. } => {}
                _ if is_active => {
                    *p = Phase::Open {
                        since: now,
                        clear_since: None,
                    }
                }
                _ => {}
            }
        }
    }

    /// Judges one window's checks at `now`.
    pub fn evaluate(
        &mut self,
        now: DateTime<Utc>,
        checks: &[Check],
        t: &Thresholds,
    ) -> Vec<Decision> {
        let mut out = Vec::new();
        for c in checks {
            let Some(breached) = c.breached else {
                continue;
            };
            let hold = if c.kind == AlertType::ConnectorFailed {
                Duration::ZERO
            } else {
                t.alert_for
            };
            let p = &mut self.phases[slot(c.kind)];
            match (*p, breached) {
                (Phase::Clear, true) => {
                    *p = Phase::Pending { since: now };
                    if hold.is_zero() {
                        out.push(Decision::Open {
                            check: c.clone(),
                            held: Duration::ZERO,
                        });
                    }
                }
                (Phase::Pending { since: s }, true) => {
                    let held = since(now, s);
                    if held >= hold {
                        out.push(Decision::Open {
                            check: c.clone(),
                            held,
                        });
                    }
                }
                (Phase::Pending { .. } | Phase::Dismissed, false) => *p = Phase::Clear,
                (Phase::Open { since: s, .. }, true) => {
                    *p = Phase::Open {
                        since: s,
                        clear_since: None,
                    }
                }
                (
                    Phase::Open {
                        since: s,
                        clear_since,
                    },
                    false,
                ) => {
                    let clear = clear_since.unwrap_or(now);
                    *p = Phase::Open {
                        since: s,
                        clear_since: Some(clear),
                    };
                    let clear_for = since(now, clear);
                    if clear_for >= t.resolve_after {
                        out.push(Decision::Resolve {
                            check: c.clone(),
                            clear_for,
                        });
                    }
                }
                (Phase::Clear, false) | (Phase::Dismissed, true) => {}
            }
        }
        out
    }

    /// The alert of `kind` is open in the database (written, or found open).
    pub fn opened(&mut self, kind: AlertType, now: DateTime<Utc>) {
        self.phases[slot(kind)] = Phase::Open {
            since: now,
            clear_since: None,
        };
    }

    /// The alert of `kind` is no longer active in the database.
    pub fn resolved(&mut self, kind: AlertType) {
        self.phases[slot(kind)] = Phase::Clear;
    }

    /// Whether the alert of `kind` is tracked as open.
    #[cfg(test)]
    pub fn is_open(&self, kind: AlertType) -> bool {
        matches!(self.phases[slot(kind)], Phase::Open { .. })
    }
}

fn show(v: f64, unit: &str) -> String {
    match unit {
        "ratio" => format!("{v:.4}"),
        _ if v.fract() == 0.0 => format!("{v:.0} {unit}"),
        _ => format!("{v:.1} {unit}"),
    }
}

/// The row of an alert to open: readable title and message, and details
/// with the current value, the threshold and how long it held. Names the
/// task and the error kind only (no error text, no configuration).
pub fn new_alert(
    task_id: Uuid,
    task: &str,
    check: &Check,
    held: Duration,
    o: &Observed,
) -> NewAlert {
    let (value, threshold) = (
        show(check.value, check.unit),
        show(check.threshold, check.unit),
    );
    let held_s = held.as_secs();
    let (title, message) = match check.kind {
        AlertType::HighLag => (
            format!("High replication lag on task {task}"),
            format!(
                "Task {task} is {value} behind the source ({}; threshold {threshold}) for {held_s} s.",
                check.metric
            ),
        ),
        AlertType::HighErrorRate => (
            format!("High error rate on task {task}"),
            format!(
                "Task {task} failed {} time(s) for {} record(s) synced: error rate {value} \
                 (threshold {threshold}) for {held_s} s.",
                o.errors, o.records
            ),
        ),
        AlertType::ConnectorFailed => (
            format!("Task {task} failed"),
            format!(
                "Task {task} stopped on a {} error and needs an operator \
                 (see sync_tasks.last_error).",
                o.error_kind.unwrap_or("unknown")
            ),
        ),
        AlertType::HighLatency => (
            format!("High end-to-end latency on task {task}"),
            format!(
                "Task {task}: p99 source-to-target latency {value} (threshold {threshold}) \
                 for {held_s} s."
            ),
        ),
        AlertType::ResourceExhausted => (
            format!("Resources exhausted on task {task}"),
            if check.metric == "backpressure_blocked" {
                format!(
                    "Task {task}: the source waited for the target {value} of the time \
                     (threshold {threshold}) for {held_s} s."
                )
            } else {
                format!(
                    "The daemon running task {task} uses {value} of memory \
                     (threshold {threshold}) for {held_s} s."
                )
            },
        ),
    };
    let mut details = json!({
        "metric": check.metric,
        "current_value": check.value,
        "threshold": check.threshold,
        "unit": check.unit,
        "duration_seconds": held_s,
    });
    if let (AlertType::ConnectorFailed, Some(kind)) = (check.kind, o.error_kind) {
        details["error_kind"] = json!(kind);
    }
    NewAlert {
        task_id,
        alert_type: check.kind,
        title,
        message,
        details,
    }
}

/// The resolution note of an alert whose condition cleared.
pub fn resolution_note(check: &Check, clear_for: Duration) -> String {
    format!(
        "Cleared for {} s: {} {} (threshold {}). Resolved by dbsync.",
        clear_for.as_secs(),
        check.metric,
        show(check.value, check.unit),
        show(check.threshold, check.unit)
    )
}

#[cfg(test)]
mod tests;

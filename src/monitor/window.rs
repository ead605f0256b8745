//! One monitoring window of one task: the deltas of its live counters since
//! the last window, its latency histogram (taken and reset), its lag, and
//! the process-wide CPU and memory; turned into `sync_metrics` rows.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use engine::metrics::LatencySummary;
use metastore::meta::monitoring::{MetricRow, MetricType};
use serde_json::{json, Value as Json};
use uuid::Uuid;

use super::alerts::{Observed, Run};
use crate::observe;
use crate::registry::{TaskEntry, TaskState};

/// Counter values at the end of the last window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Baseline {
    records: u64,
    errors: u64,
    backpressure_us: u64,
    read_bytes: u64,
}

/// A counter's increase; a counter below its baseline was reset (a new run
/// of the entry), so all of it is new.
fn delta(now: u64, before: u64) -> u64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

/// What one task did in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub run: Run,
    pub observed: Observed,
    pub latency: LatencySummary,
    /// How long the window lasted (rates are per second of it).
    pub elapsed: Duration,
    /// The last target commit, if any.
    pub last_sync: Option<DateTime<Utc>>,
    /// Bytes of row data the source read in the window (estimated per chunk).
    pub read_bytes: u64,
}

pub fn run_of(state: TaskState) -> Run {
    match state {
        TaskState::Starting => Run::Starting,
        TaskState::Snapshotting | TaskState::Streaming => Run::Running,
        TaskState::Retrying => Run::Retrying,
        TaskState::Failed => Run::Failed,
        TaskState::Stopped => Run::Stopped,
        TaskState::Completed => Run::Completed,
    }
}

/// Reads a task's counters, moves `baseline` to them and takes its latency
/// histogram. Reads atomics only: never waits for the pipeline.
pub fn sample_task(
    entry: &TaskEntry,
    baseline: &mut Baseline,
    elapsed: Duration,
    now: DateTime<Utc>,
    rss_bytes: Option<u64>,
) -> Window {
    let s = &entry.stats;
    let view = entry.view(None, now);
    let current = Baseline {
        records: s.rows_applied.load(Relaxed) + s.snapshot_rows.load(Relaxed),
        errors: entry.errors_total.load(Relaxed),
        backpressure_us: s.live.backpressure_us(),
        read_bytes: s.live.read_bytes(),
    };
    let records = delta(current.records, baseline.records);
    let errors = delta(current.errors, baseline.errors);
    let blocked_us = delta(current.backpressure_us, baseline.backpressure_us);
    let bytes = delta(current.read_bytes, baseline.read_bytes);
    *baseline = current;
    let latency = s.latency.take();
    let last_commit_us = s.last_target_commit_us.load(Relaxed);
    let last_sync = (last_commit_us > 0)
        .then(|| DateTime::<Utc>::from_timestamp_micros(last_commit_us))
        .flatten();
    let window_us = elapsed.as_micros().max(1) as f64;
    Window {
        run: run_of(view.state),
        observed: Observed {
            lag_bytes: s.live.lag_bytes(),
            lag_ms: s.live.lag().map(|d| d.as_millis() as u64),
            errors,
            records,
            p99_ms: (latency.count > 0).then(|| ms(latency.p99)),
            rss_bytes,
            blocked: (blocked_us as f64 / window_us).min(1.0),
            error_kind: view.last_error.map(|e| e.kind),
        },
        latency,
        elapsed,
        last_sync,
        read_bytes: bytes,
    }
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Process-wide figures, the same for every task of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    /// CPU time used over wall time, in percent (100 = one core).
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<u64>,
}

/// Turns the process's cumulative CPU seconds into a percentage per window.
#[derive(Debug)]
pub struct ProcessSampler {
    last: Option<(f64, Instant)>,
}

impl ProcessSampler {
    /// Starts measuring now.
    pub fn new() -> Self {
        Self {
            last: observe::process_cpu_seconds().map(|cpu| (cpu, Instant::now())),
        }
    }

    /// CPU since the last call and the current resident memory (reads
    /// `/proc/self`; `None` where it does not exist).
    pub fn sample(&mut self) -> Process {
        let now = Instant::now();
        let cpu = observe::process_cpu_seconds();
        let cpu_percent = match (cpu, self.last) {
            (Some(c), Some((c0, t0))) => {
                let wall = now.duration_since(t0).as_secs_f64();
                (wall > 0.0).then(|| ((c - c0).max(0.0) / wall * 1000.0).round() / 10.0)
            }
            _ => None,
        };
        self.last = cpu.map(|c| (c, now));
        Process {
            cpu_percent,
            rss_bytes: observe::resident_memory_bytes().map(|b| b as u64),
        }
    }
}

/// The six 1MIN rows of a window that started at `recorded_at`.
pub fn metric_rows(
    task_id: Uuid,
    recorded_at: DateTime<Utc>,
    w: &Window,
    p: &Process,
) -> Vec<MetricRow> {
    let o = &w.observed;
    let secs = w.elapsed.as_secs_f64().max(1e-3);
    let l = &w.latency;
    let latency = |d: Duration| -> Json {
        if l.count == 0 {
            Json::Null
        } else {
            json!(ms(d))
        }
    };
    let values = [
        (
            MetricType::Throughput,
            json!({
                "records_per_second": (o.records as f64 / secs * 1000.0).round() / 1000.0,
                // Bytes of row data read by the source (its per-chunk estimate).
                "bytes_per_second": (w.read_bytes as f64 / secs).round(),
                "records": o.records,
                "window_seconds": (secs * 1000.0).round() / 1000.0,
            }),
        ),
        (
            MetricType::Latency,
            json!({
                "p50": latency(l.p50),
                "p95": latency(l.p95),
                "p99": latency(l.p99),
                "max": latency(l.max),
                "samples": l.count,
            }),
        ),
        (
            MetricType::Lag,
            json!({ "consumer_lag": o.lag_bytes, "time_lag_ms": o.lag_ms }),
        ),
        (
            MetricType::ErrorRate,
            json!({ "errors": o.errors, "records": o.records, "rate": o.error_rate() }),
        ),
        (
            MetricType::Cpu,
            json!({ "percent": p.cpu_percent, "scope": "process" }),
        ),
        (
            MetricType::Memory,
            json!({ "rss_bytes": p.rss_bytes, "scope": "process" }),
        ),
    ];
    values
        .into_iter()
        .map(|(metric_type, value)| MetricRow {
            task_id,
            metric_type,
            value,
            recorded_at,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use engine::config::SyncMode;
    use engine::metrics::{SourcePhase, SourceReporter};

    #[test]
    fn counters_give_deltas_and_resets_count_from_zero() {
        assert_eq!(delta(150, 100), 50);
        assert_eq!(delta(30, 100), 30);
        let r = Registry::empty();
        let e = r.add("t", SyncMode::FullIncremental, None);
        e.starting();
        e.stats.live.advance(SourcePhase::Streaming);
        e.stats.rows_applied.fetch_add(90, Relaxed);
        e.stats.snapshot_rows.fetch_add(30, Relaxed);
        e.stats.latency.record(Duration::from_millis(40));
        e.stats.latency.record(Duration::from_millis(80));
        e.stats.live.add_backpressure(Duration::from_secs(30));
        e.stats
            .last_target_commit_us
            .store(1_700_000_000_000_000, Relaxed);
        SourceReporter::new("t", e.stats.live.clone()).source_lag_bytes(4096);
        e.error(&engine::Error::source_transient("connection reset"));
        let mut base = Baseline::default();
        let now = Utc::now();
        let w = sample_task(&e, &mut base, Duration::from_secs(60), now, Some(1 << 20));
        assert_eq!(w.run, Run::Running);
        assert_eq!(w.observed.records, 120);
        assert_eq!(w.observed.errors, 1);
        assert_eq!(w.observed.error_kind, Some("source_transient"));
        assert_eq!(w.observed.lag_bytes, Some(4096));
        assert_eq!(w.observed.blocked, 0.5);
        assert_eq!(w.latency.count, 2);
        assert!(w
            .observed
            .p99_ms
            .is_some_and(|p| (80.0..=85.0).contains(&p)));
        assert_eq!(
            w.last_sync,
            DateTime::<Utc>::from_timestamp_micros(1_700_000_000_000_000)
        );
        // The next window sees only what happened since.
        e.stats.rows_applied.fetch_add(10, Relaxed);
        let w = sample_task(&e, &mut base, Duration::from_secs(60), now, None);
        assert_eq!((w.observed.records, w.observed.errors), (10, 0));
        assert_eq!(w.latency.count, 0, "the histogram was reset");
        assert_eq!(w.observed.p99_ms, None);
        assert_eq!(w.observed.blocked, 0.0);
    }

    #[test]
    fn rows_have_the_documented_shapes() {
        let w = Window {
            run: Run::Running,
            observed: Observed {
                lag_bytes: Some(10),
                lag_ms: None,
                errors: 1,
                records: 599,
                p99_ms: Some(12.5),
                ..Observed::default()
            },
            latency: LatencySummary {
                count: 3,
                p50: Duration::from_micros(1500),
                p95: Duration::from_millis(12),
                p99: Duration::from_micros(12_500),
                max: Duration::from_millis(13),
                mean: Duration::from_millis(5),
            },
            elapsed: Duration::from_secs(60),
            last_sync: None,
            read_bytes: 60_000,
        };
        let p = Process {
            cpu_percent: Some(12.5),
            rss_bytes: Some(4096),
        };
        let at = Utc::now();
        let rows = metric_rows(Uuid::nil(), at, &w, &p);
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|r| r.recorded_at == at));
        let v = |t: MetricType| {
            rows.iter()
                .find(|r| r.metric_type == t)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(
            v(MetricType::Throughput),
            json!({"records_per_second": 9.983, "bytes_per_second": 1000.0, "records": 599,
                   "window_seconds": 60.0})
        );
        assert_eq!(
            v(MetricType::Latency),
            json!({"p50": 1.5, "p95": 12.0, "p99": 12.5, "max": 13.0, "samples": 3})
        );
        assert_eq!(
            v(MetricType::Lag),
            json!({"consumer_lag": 10, "time_lag_ms": null})
        );
        assert_eq!(
            v(MetricType::ErrorRate),
            json!({"errors": 1, "records": 599, "rate": 1.0 / 600.0})
        );
        assert_eq!(
            v(MetricType::Cpu),
            json!({"percent": 12.5, "scope": "process"})
        );
        assert_eq!(
            v(MetricType::Memory),
            json!({"rss_bytes": 4096, "scope": "process"})
        );
        // No commit in the window: no latency figures.
        let idle = Window {
            latency: LatencySummary::default(),
            ..w
        };
        let rows = metric_rows(Uuid::nil(), at, &idle, &p);
        assert_eq!(rows[1].value["p99"], Json::Null);
        assert_eq!(rows[1].value["samples"], json!(0));
    }

    #[test]
    fn process_cpu_and_memory_are_read_on_linux() {
        let mut s = ProcessSampler::new();
        // Burn a little CPU so the figure is positive.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let p = s.sample();
        if cfg!(target_os = "linux") {
            assert!(p.rss_bytes.is_some_and(|b| b > 0));
            assert!(p.cpu_percent.is_some_and(|c| c >= 0.0));
        }
    }
}

//! Runs one task: retries transient failures from its checkpoint with
//! backoff, stops on request, and reports its state to the [`TaskEntry`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::config::TaskConfig;
use engine::mapping::TableRouter;
use engine::metrics::{ConnectionGuard, ConnectionRole};
use engine::pipeline::{run_pipeline, PipelineOptions, RunOutcome, TaskStats};
use engine::{CheckpointStore, TaskGuard};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::dispatch::{AnySink, AnySource};
use crate::registry::TaskEntry;

const MAX_BACKOFF: Duration = Duration::from_secs(60);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How one task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    Completed,
    Stopped,
    /// A definite error: an operator must act. Carries the message.
    Failed(String),
}

/// Runs `task` until it completes, fails definitely, or `stop` is cancelled.
pub async fn supervise(
    task: TaskConfig,
    store: Arc<dyn CheckpointStore>,
    entry: Arc<TaskEntry>,
    guard: Option<Arc<dyn TaskGuard>>,
    stop: CancellationToken,
) -> TaskEnd {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        entry.starting();
        let result = run_once(&task, store.clone(), &entry, guard.clone(), stop.clone()).await;
        match result {
            Ok(RunOutcome::Completed) => {
                entry.completed();
                info!("task completed");
                return TaskEnd::Completed;
            }
            Ok(RunOutcome::Stopped) => {
                entry.stopped();
                info!("task stopped");
                return TaskEnd::Stopped;
            }
            Err(e) if e.is_transient() && !stop.is_cancelled() => {
                entry.error(&e);
                entry.retrying();
                if started.elapsed() > MAX_BACKOFF {
                    backoff = Duration::from_secs(1);
                }
                warn!(error = %e, retry_in_secs = backoff.as_secs(), "task failed, will retry from its checkpoint");
                tokio::select! {
                    _ = stop.cancelled() => {
                        entry.stopped();
                        return TaskEnd::Stopped;
                    }
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                entry.error(&e);
                if stop.is_cancelled() {
                    entry.stopped();
                    warn!(error = %e, "task ended with an error while stopping");
                    return TaskEnd::Stopped;
                }
                entry.failed();
                error!(error = %e, "task failed and needs an operator");
                return TaskEnd::Failed(e.to_string());
            }
        }
    }
}

async fn run_once(
    task: &TaskConfig,
    store: Arc<dyn CheckpointStore>,
    entry: &TaskEntry,
    guard: Option<Arc<dyn TaskGuard>>,
    stop: CancellationToken,
) -> engine::Result<RunOutcome> {
    let source = AnySource::for_task(task)?;
    let sink = AnySink::connect(task).await?;
    // The sink holds one connection for the run (counted in dbsync_open_connections).
    let _target_open = ConnectionGuard::open(&task.name, ConnectionRole::Target);
    let mut opts = PipelineOptions::from(task);
    opts.guard = guard;
    let router = TableRouter::new(&task.mapping);
    entry.set_mapping_stats(router.stats_handle());
    run_pipeline(
        &task.name,
        source,
        sink,
        store,
        router,
        opts,
        entry.stats.clone(),
        stop,
    )
    .await
}

/// Logs rows/s, totals and lag every few seconds while rows move.
pub async fn report_progress(task: String, stats: Arc<TaskStats>, stop: CancellationToken) {
    let mut last_rows = 0u64;
    let mut last_snap = 0u64;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PROGRESS_EVERY) => {}
        }
        let rows = stats.rows_applied.load(Ordering::Relaxed);
        let snap = stats.snapshot_rows.load(Ordering::Relaxed);
        if rows == last_rows && snap == last_snap {
            continue;
        }
        let secs = last.elapsed().as_secs_f64().max(1e-3);
        let src_us = stats.last_source_commit_us.load(Ordering::Relaxed);
        let lag_ms = if src_us > 0 {
            (chrono::Utc::now().timestamp_micros() - src_us).max(0) / 1000
        } else {
            0
        };
        info!(
            task = %task,
            snapshot_rows = snap,
            snapshot_rows_per_sec = ((snap - last_snap) as f64 / secs) as u64,
            changes = rows,
            changes_per_sec = ((rows - last_rows) as f64 / secs) as u64,
            transactions = stats.transactions.load(Ordering::Relaxed),
            lag_ms,
            "progress"
        );
        last_rows = rows;
        last_snap = snap;
        last = Instant::now();
    }
}

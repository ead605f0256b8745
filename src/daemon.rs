//! `dbsync run`: supervises every task's pipeline, retries transient failures
//! with backoff, reports progress, and drains on SIGTERM/SIGINT. Task states
//! go to the [`Registry`], which the admin endpoint serves.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::config::{Config, TaskConfig};
use engine::mapping::TableRouter;
use engine::metrics::{self as m, ConnectionGuard, ConnectionRole};
use engine::pipeline::{run_pipeline, PipelineOptions, RunOutcome, TaskStats};
use engine::CheckpointStore;
use metastore::RocksCheckpointStore;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::admin::{AdminServer, AdminState};
use crate::dispatch::{AnySink, AnySource};
use crate::observe;
use crate::registry::{Registry, TaskEntry};

const MAX_BACKOFF: Duration = Duration::from_secs(60);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How one task ended.
#[derive(Debug, PartialEq, Eq)]
enum TaskEnd {
    Completed,
    Stopped,
    Failed,
}

pub async fn run(config: Config) -> ExitCode {
    let dir = config.daemon.data_dir.join("checkpoints");
    let store: Arc<dyn CheckpointStore> = match RocksCheckpointStore::open(&dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            error!(error = %e, "cannot open the checkpoint store");
            return ExitCode::FAILURE;
        }
    };
    let registry = Arc::new(Registry::new(&config));
    let admin = match start_admin(&config, &dir, registry.clone(), store.clone()).await {
        Ok(a) => a,
        Err(e) => {
            error!(error = %e, "cannot start the admin endpoint");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    info!(tasks = config.tasks.len(), data_dir = %config.daemon.data_dir.display(), "dbsync started");

    let mut handles = Vec::new();
    for task in config.tasks.clone() {
        let Some(entry) = registry.task(&task.name) else {
            continue;
        };
        m::register_errors(&task.name);
        let span = tracing::info_span!("task", task = %task.name);
        let progress = tokio::spawn(
            report_progress(task.name.clone(), entry.stats.clone(), shutdown.clone())
                .instrument(span.clone()),
        );
        let h =
            tokio::spawn(supervise(task, store.clone(), entry, shutdown.clone()).instrument(span));
        handles.push((h, progress));
    }
    // systemd (Type=notify): ready once the admin endpoint is up and the tasks run.
    let notifier = crate::sdnotify::Notifier::from_env();
    let _watchdog = notifier.as_ref().and_then(|n| {
        n.ready(&format!("running {} task(s)", handles.len()));
        n.stopping_on(shutdown.clone());
        n.start_runtime_watchdog()
    });
    let mut failed = false;
    for (h, progress) in handles {
        let end = h.await.unwrap_or(TaskEnd::Failed);
        progress.abort();
        failed |= end == TaskEnd::Failed;
    }
    if let Some((server, upkeep_stop)) = admin {
        upkeep_stop.cancel();
        server.stop().await;
    }
    info!("dbsync stopped");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received, draining"),
                _ = tokio::signal::ctrl_c() => info!("SIGINT received, draining"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        shutdown.cancel();
    });
}

/// Starts the admin endpoint and the metrics recorder when enabled; returns
/// the server and the token stopping the recorder's upkeep.
async fn start_admin(
    config: &Config,
    rocks_dir: &std::path::Path,
    registry: Arc<Registry>,
    store: Arc<dyn CheckpointStore>,
) -> Result<Option<(AdminServer, CancellationToken)>, String> {
    let admin = &config.daemon.admin;
    if !admin.enabled {
        info!("admin endpoint disabled ([daemon.admin] enabled = false): no metrics");
        return Ok(None);
    }
    let token = admin.bearer_token().map_err(|e| e.to_string())?;
    let prometheus = observe::install_recorder()?;
    let upkeep_stop = CancellationToken::new();
    tokio::spawn(observe::upkeep(prometheus.clone(), upkeep_stop.clone()));
    let state = AdminState {
        registry,
        prometheus,
        token,
        store,
        rocks_dir: rocks_dir.to_path_buf(),
    };
    let server = AdminServer::start(admin.listen, state)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", admin.listen))?;
    Ok(Some((server, upkeep_stop)))
}

async fn supervise(
    task: TaskConfig,
    store: Arc<dyn CheckpointStore>,
    entry: Arc<TaskEntry>,
    shutdown: CancellationToken,
) -> TaskEnd {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        entry.starting();
        let result = run_once(&task, store.clone(), entry.stats.clone(), shutdown.clone()).await;
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
            Err(e) if e.is_transient() && !shutdown.is_cancelled() => {
                entry.error(&e);
                entry.retrying();
                if started.elapsed() > MAX_BACKOFF {
                    backoff = Duration::from_secs(1);
                }
                warn!(error = %e, retry_in_secs = backoff.as_secs(), "task failed, will retry from its checkpoint");
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        entry.stopped();
                        return TaskEnd::Stopped;
                    }
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                entry.error(&e);
                if shutdown.is_cancelled() {
                    entry.stopped();
                    warn!(error = %e, "task ended with an error while stopping");
                    return TaskEnd::Stopped;
                }
                entry.failed();
                error!(error = %e, "task failed and needs an operator");
                return TaskEnd::Failed;
            }
        }
    }
}

async fn run_once(
    task: &TaskConfig,
    store: Arc<dyn CheckpointStore>,
    stats: Arc<TaskStats>,
    shutdown: CancellationToken,
) -> engine::Result<RunOutcome> {
    let source = AnySource::for_task(task)?;
    let sink = AnySink::connect(task).await?;
    // The sink holds one connection for the run (counted in dbsync_open_connections).
    let _target_open = ConnectionGuard::open(&task.name, ConnectionRole::Target);
    run_pipeline(
        &task.name,
        source,
        sink,
        store,
        TableRouter::new(&task.mapping),
        PipelineOptions::from(task),
        stats,
        shutdown,
    )
    .await
}

/// Logs rows/s, totals and lag every few seconds while rows move.
async fn report_progress(task: String, stats: Arc<TaskStats>, shutdown: CancellationToken) {
    let mut last_rows = 0u64;
    let mut last_snap = 0u64;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
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

//! `dbsync run`: the daemon. Runs the TOML `[[task]]`s (reloaded on SIGHUP)
//! and, with a `[metastore]`, the tasks of the metadata database
//! ([`crate::fleet`]); serves the admin endpoint; tells systemd when it is
//! ready, stopping or reloading, and pings its watchdog; drains on
//! SIGTERM/SIGINT (in-flight batches commit and checkpoint).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use engine::config::{Config, TaskConfig};
use engine::metrics as m;
use engine::CheckpointStore;
use metastore::RocksCheckpointStore;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::admin::{AdminServer, AdminState};
use crate::observe;
use crate::registry::Registry;
use crate::sdnotify::Notifier;
use crate::supervise::{report_progress, supervise, TaskEnd};

pub async fn run(config: Config, config_path: PathBuf) -> ExitCode {
    let dir = config.daemon.data_dir.join("checkpoints");
    let store: Arc<dyn CheckpointStore> = match RocksCheckpointStore::open(&dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            error!(error = %e, "cannot open the checkpoint store");
            return ExitCode::FAILURE;
        }
    };
    let registry = Arc::new(Registry::empty());
    let admin = match start_admin(&config, &dir, registry.clone(), store.clone()).await {
        Ok(a) => a,
        Err(e) => {
            error!(error = %e, "cannot start the admin endpoint");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let (reload_tx, mut reload_rx) = mpsc::channel(1);
    spawn_signal_handler(shutdown.clone(), reload_tx);
    let notifier = Notifier::from_env();
    let _watchdog = notifier.as_ref().and_then(|n| n.start_runtime_watchdog());

    let mut toml = TomlTasks::new(store.clone(), registry.clone(), shutdown.clone());
    toml.reconcile(&config, task_sections(&config_path).unwrap_or_default())
        .await;
    let fleet = match &config.metastore {
        Some(meta) => {
            match crate::fleet::start(meta, store.clone(), registry.clone(), shutdown.clone()).await
            {
                Ok(h) => Some(h),
                Err(e) => {
                    error!(error = %e, "cannot run with the metadata database");
                    shutdown.cancel();
                    toml.wait_all().await;
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    info!(
        toml_tasks = config.tasks.len(),
        metastore = config.metastore.is_some(),
        data_dir = %config.daemon.data_dir.display(),
        "dbsync started"
    );
    let status = |toml: &TomlTasks| {
        format!(
            "running {} TOML task(s){}",
            toml.len(),
            if fleet.is_some() {
                " and the metadata database's"
            } else {
                ""
            }
        )
    };
    if let Some(n) = &notifier {
        n.ready(&status(&toml));
    }
    let mut current = config;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = reload_rx.recv() => {
                if let Some(n) = &notifier {
                    n.reloading();
                }
                current = reload(&config_path, current, &mut toml).await;
                if let Some(n) = &notifier {
                    n.ready(&status(&toml));
                }
            }
            _ = toml.all_ended(), if fleet.is_none() => break,
        }
    }
    if let Some(n) = &notifier {
        n.stopping();
    }
    shutdown.cancel();
    let mut failed = toml.wait_all().await;
    if let Some(h) = fleet {
        failed |= h.await.unwrap_or(true);
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

/// SIGHUP: re-reads the file; starts added tasks, restarts changed ones,
/// stops removed ones. A bad file keeps the running configuration.
async fn reload(path: &Path, current: Config, toml: &mut TomlTasks) -> Config {
    info!(path = %path.display(), "SIGHUP: reloading the configuration");
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "reload failed: keeping the running configuration");
            return current;
        }
    };
    let sections = match task_sections(path) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "reload failed: keeping the running configuration");
            return current;
        }
    };
    if format!("{:?}", new.daemon) != format!("{:?}", current.daemon)
        || format!("{:?}", new.metastore) != format!("{:?}", current.metastore)
    {
        warn!("[daemon] and [metastore] changes take effect at the next restart");
    }
    toml.reconcile(&new, sections).await;
    new
}

/// Each `[[task]]`'s TOML, by name: a reload restarts a task whose section changed.
fn task_sections(path: &Path) -> Result<HashMap<String, toml::Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: toml::Value = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashMap::new();
    if let Some(tasks) = doc.get("task").and_then(|t| t.as_array()) {
        for t in tasks {
            if let Some(name) = t.get("name").and_then(|n| n.as_str()) {
                out.insert(name.to_string(), t.clone());
            }
        }
    }
    Ok(out)
}

struct Running {
    section: Option<toml::Value>,
    stop: CancellationToken,
    handle: JoinHandle<TaskEnd>,
}

/// The TOML tasks and their supervisors.
struct TomlTasks {
    store: Arc<dyn CheckpointStore>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    running: HashMap<String, Running>,
    failed: bool,
}

impl TomlTasks {
    fn new(
        store: Arc<dyn CheckpointStore>,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            registry,
            shutdown,
            running: HashMap::new(),
            failed: false,
        }
    }

    fn len(&self) -> usize {
        self.running.len()
    }

    async fn reconcile(&mut self, config: &Config, sections: HashMap<String, toml::Value>) {
        let wanted: HashMap<&str, &TaskConfig> =
            config.tasks.iter().map(|t| (t.name.as_str(), t)).collect();
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let changed = match wanted.get(name.as_str()) {
                None => true,
                Some(_) => self.running[&name].section.as_ref() != sections.get(&name),
            };
            if changed {
                if let Some(r) = self.running.remove(&name) {
                    info!(task = %name, "configuration changed: stopping the task");
                    r.stop.cancel();
                    // The task drains and checkpoints; wait so that a restarted
                    // task never runs beside its old self.
                    let _ = r.handle.await;
                    self.registry.remove(&name);
                }
            }
        }
        for task in &config.tasks {
            if self.running.contains_key(&task.name) {
                continue;
            }
            let section = sections.get(&task.name).cloned();
            self.start(task.clone(), section);
        }
    }

    fn start(&mut self, task: TaskConfig, section: Option<toml::Value>) {
        let entry = self.registry.add(&task.name, task.sync_mode, None);
        m::register_errors(&task.name);
        let stop = self.shutdown.child_token();
        let span = tracing::info_span!("task", task = %task.name);
        let progress = tokio::spawn(
            report_progress(task.name.clone(), entry.stats.clone(), stop.clone())
                .instrument(span.clone()),
        );
        let name = task.name.clone();
        let store = self.store.clone();
        let stop2 = stop.clone();
        let handle = tokio::spawn(
            async move {
                let end = supervise(task, store, entry, None, stop2).await;
                progress.abort();
                end
            }
            .instrument(span),
        );
        self.running.insert(
            name,
            Running {
                section,
                stop,
                handle,
            },
        );
    }

    /// Resolves once every task has ended (never while there is none yet… or
    /// when there are none at all: then at once).
    async fn all_ended(&self) {
        loop {
            if self.running.values().all(|r| r.handle.is_finished()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for every task; true when one failed.
    async fn wait_all(&mut self) -> bool {
        for (_, r) in self.running.drain() {
            if let Ok(TaskEnd::Failed(_)) | Err(_) = r.handle.await {
                self.failed = true;
            }
        }
        self.failed
    }
}

fn spawn_signal_handler(shutdown: CancellationToken, reload: mpsc::Sender<()>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (mut term, mut hup) = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(t), Ok(h)) => (t, h),
                (Err(e), _) | (_, Err(e)) => {
                    warn!(error = %e, "cannot listen for SIGTERM/SIGHUP");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = term.recv() => { info!("SIGTERM received, draining"); break; }
                    _ = tokio::signal::ctrl_c() => { info!("SIGINT received, draining"); break; }
                    _ = hup.recv() => { let _ = reload.try_send(()); }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = reload;
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

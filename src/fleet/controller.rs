//! The fleet controller (see the module doc of [`crate::fleet`]).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use engine::config::{MetastoreConfig, SourceConfig};
use engine::metrics as m;
use engine::{CheckpointStore, TaskGuard};
use metastore::meta::leases::{self, Lease};
use metastore::meta::model::{self, TaskBundle};
use metastore::meta::{runstate, MetaDb, MetaError};
use metastore::secrets::SecretKey;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};
use uuid::Uuid;

use super::convert::{requested_workers, task_name, to_task_config};
use super::guard::{LeaseGuard, TenantLimiter};
use super::mirror::{restore_if_missing, run_writer, MirrorQueue, MirrorTarget, MirroredStore};
use super::{listen, schedule};
use crate::registry::{Registry, TaskMeta};
use crate::supervise::{report_progress, supervise, TaskEnd};

/// The guard of each lease this daemon holds: task → (lease epoch, guard).
type Guards = Arc<Mutex<HashMap<Uuid, (i64, Arc<LeaseGuard>)>>>;

/// What the daemon needs to run fleet tasks.
struct Ctx {
    db: MetaDb,
    cfg: MetastoreConfig,
    node_id: String,
    key: Option<Arc<SecretKey>>,
    rocks: Arc<dyn CheckpointStore>,
    registry: Arc<Registry>,
    /// Guards of the leases this daemon holds, by task.
    guards: Guards,
}

struct Running {
    name: String,
    fingerprint: u64,
    lease: Lease,
    guard: Arc<LeaseGuard>,
    stop: CancellationToken,
    handle: JoinHandle<TaskEnd>,
    /// Errors already added to `sync_tasks.error_count`.
    errors_reported: u64,
}

/// Checks the metadata database and starts the controller; an error means
/// the daemon must not run (wrong schema, bad key file).
pub async fn start(
    cfg: &MetastoreConfig,
    rocks: Arc<dyn CheckpointStore>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<bool>, String> {
    let db = MetaDb::new(cfg).map_err(|e| e.to_string())?;
    let key = match &cfg.secret_key_file {
        Some(p) => Some(Arc::new(SecretKey::load(p).map_err(|e| e.to_string())?)),
        None => None,
    };
    ensure_schema(&db, cfg, &shutdown).await?;
    let node_id = cfg.node_id.clone().unwrap_or_else(default_node_id);
    info!(node_id = %node_id, lease_ttl_secs = cfg.lease_ttl_secs, "fleet mode: tasks come from the metadata database");
    let ctx = Arc::new(Ctx {
        db,
        cfg: cfg.clone(),
        node_id,
        key,
        rocks,
        registry,
        guards: Arc::new(Mutex::new(HashMap::new())),
    });
    // Health, sync_metrics rows, alerts and retention of the tasks running here.
    tokio::spawn(crate::monitor::run(
        ctx.db.clone(),
        ctx.registry.clone(),
        shutdown.clone(),
    ));
    Ok(tokio::spawn(run(ctx, shutdown)))
}

/// Refuses a schema of another version; waits (with backoff) while the
/// database is unreachable.
async fn ensure_schema(
    db: &MetaDb,
    cfg: &MetastoreConfig,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            let mut conn = db.get().await?;
            if cfg.auto_migrate {
                let applied = metastore::meta::migrate(&mut conn).await?;
                if !applied.is_empty() {
                    info!(versions = ?applied, "metadata database migrated");
                }
            }
            metastore::meta::check_schema(&conn).await
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => {
                warn!(error = %e, retry_in_secs = backoff.as_secs(), "metadata database not reachable yet");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err("stopped before the metadata database was reachable".into()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn default_node_id() -> String {
    let host = Some(hostname())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The controller loop; returns true when it ended on a fatal error.
async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) -> bool {
    let (wake_tx, mut wake_rx) = mpsc::channel(1);
    let listener = tokio::spawn(listen::run(ctx.db.clone(), wake_tx, shutdown.clone()));
    let ttl = Duration::from_secs(ctx.cfg.lease_ttl_secs);
    let renewer = tokio::spawn(renew_loop(ctx.clone(), shutdown.clone()));
    let mut poll = tokio::time::interval(Duration::from_secs(ctx.cfg.poll_interval_secs));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Finished tasks and lost leases are noticed at least this often.
    let mut tick = tokio::time::interval((ttl / 3).max(Duration::from_millis(500)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running: HashMap<Uuid, Running> = HashMap::new();
    let mut limiters: HashMap<Uuid, Arc<TenantLimiter>> = HashMap::new();
    loop {
        let mut reread = false;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = wake_rx.recv() => reread = true,
            _ = poll.tick() => reread = true,
            _ = tick.tick() => {}
        }
        reap(&ctx, &mut running).await;
        report_errors(&ctx, &mut running).await;
        if reread || running.values().any(|r| r.guard.is_lost()) {
            if let Err(e) = reconcile(&ctx, &mut running, &mut limiters, &shutdown).await {
                warn!(error = %e, "cannot read the tasks from the metadata database; retrying");
            }
        }
    }
    // Drain: every task was cancelled with `shutdown`.
    for (_, mut r) in running.drain() {
        let _ = (&mut r.handle).await;
        release(&ctx, &r).await;
    }
    listener.abort();
    renewer.abort();
    false
}

/// Renews this daemon's leases every third of the TTL and extends (or
/// revokes) the guards; records the daemon's heartbeat.
async fn renew_loop(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let ttl = Duration::from_secs(ctx.cfg.lease_ttl_secs);
    // Commits stop a third of the TTL before the database could give the task away.
    let valid_for = ttl - ttl / 3;
    let host = hostname();
    let mut every = tokio::time::interval((ttl / 3).max(Duration::from_millis(500)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let sent = Instant::now();
        let result = async {
            let conn = ctx.db.get().await?;
            leases::heartbeat(&*conn, &ctx.node_id, &host, env!("CARGO_PKG_VERSION")).await?;
            leases::renew_all(&*conn, &ctx.node_id, ctx.cfg.lease_ttl_secs).await
        }
        .await;
        match result {
            Ok(held) => {
                let guards = ctx.guards.lock().unwrap_or_else(|p| p.into_inner());
                for (task_id, (epoch, guard)) in guards.iter() {
                    match held.iter().find(|l| l.task_id == *task_id) {
                        Some(l) if l.epoch == *epoch => guard.extend(sent, valid_for),
                        _ => {
                            if !guard.is_lost() {
                                warn!(task_id = %task_id, "lease lost: stopping the task here");
                            }
                            guard.lose();
                        }
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot renew task leases; tasks stop committing when they expire")
            }
        }
    }
}

/// A stable hash of everything that requires a restart when it changes.
fn fingerprint(b: &TaskBundle) -> u64 {
    let mut h = DefaultHasher::new();
    let t = &b.task;
    json!([
        t.source_db_type,
        t.target_db_type,
        t.source_connection_config,
        t.target_connection_config,
        t.connector_config,
        t.sync_mode,
        t.offset_epoch,
        b.tenant.tenant_code,
        t.task_code,
    ])
    .to_string()
    .hash(&mut h);
    for (m, scripts) in &b.mappings {
        serde_json::to_string(m).unwrap_or_default().hash(&mut h);
        for s in scripts {
            serde_json::to_string(s).unwrap_or_default().hash(&mut h);
        }
    }
    h.finish()
}

/// Why a task must not run, when the tenant's quota forbids it.
fn quota_refusal(b: &TaskBundle, rank_in_tenant: usize) -> Option<String> {
    let t = &b.tenant;
    if rank_in_tenant >= t.max_connectors.max(0) as usize {
        return Some(format!(
            "tenant {} quota: max_connectors = {} running tasks reached; raise the quota or stop another task",
            t.tenant_code, t.max_connectors
        ));
    }
    let workers = requested_workers(b);
    if workers > t.max_tasks_per_connector as i64 {
        return Some(format!(
            "tenant {} quota: connector_config.workers = {workers} exceeds max_tasks_per_connector = {}",
            t.tenant_code, t.max_tasks_per_connector
        ));
    }
    None
}

async fn reconcile(
    ctx: &Arc<Ctx>,
    running: &mut HashMap<Uuid, Running>,
    limiters: &mut HashMap<Uuid, Arc<TenantLimiter>>,
    shutdown: &CancellationToken,
) -> Result<(), MetaError> {
    let bundles = {
        let mut conn = ctx.db.get().await?;
        model::bundles(&mut conn).await?
    };
    // Which tasks should run anywhere, with quota ranks by age per tenant.
    let mut wanted: HashMap<Uuid, &TaskBundle> = HashMap::new();
    let mut per_tenant: HashMap<Uuid, Vec<&TaskBundle>> = HashMap::new();
    for b in &bundles {
        if b.task.status == "RUNNING" && b.tenant.status == "ACTIVE" {
            per_tenant.entry(b.tenant.tenant_id).or_default().push(b);
        }
        limiters
            .entry(b.tenant.tenant_id)
            .or_insert_with(|| {
                Arc::new(TenantLimiter::new(b.tenant.max_throughput_tps.max(1) as u64))
            })
            .set_rate(b.tenant.max_throughput_tps.max(1) as u64);
    }
    let mut refused = Vec::new();
    for list in per_tenant.values_mut() {
        list.sort_by_key(|b| (b.task.created_at, b.task.task_id));
        for (rank, b) in list.iter().enumerate() {
            match quota_refusal(b, rank) {
                Some(why) => refused.push((b.task.task_id, why)),
                None => {
                    wanted.insert(b.task.task_id, *b);
                }
            }
        }
    }
    // Stop what must not run here any more (or changed, or lost its lease).
    let ids: Vec<Uuid> = running.keys().copied().collect();
    for id in ids {
        let r = &running[&id];
        let reason = match wanted.get(&id) {
            None => Some("no longer RUNNING in the metadata database (paused, stopped, deleted, quota or tenant status)"),
            Some(b) if fingerprint(b) != r.fingerprint => Some("configuration changed: restarting"),
            Some(_) if r.guard.is_lost() => Some("lease lost"),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            let mut r = running.remove(&id).expect("present");
            info!(task = %r.name, reason, "stopping the task here");
            r.stop.cancel();
            let _ = (&mut r.handle).await;
            if !r.guard.is_lost() {
                release(ctx, &r).await;
            }
            forget(ctx, &r);
        }
    }
    {
        let mut conn = ctx.db.get().await?;
        for (task_id, why) in refused {
            if runstate::finish(&mut conn, task_id, "FAILED", Some(&why)).await? {
                warn!(task_id = %task_id, reason = %why, "task refused by its tenant's quota");
            }
        }
        schedule_reruns(&mut conn, &bundles).await;
    }
    // Start what should run and is free.
    for (id, b) in wanted {
        if running.contains_key(&id) {
            continue;
        }
        let limiter = limiters[&b.tenant.tenant_id].clone();
        match try_start(ctx, b, limiter, shutdown).await {
            Ok(Some(r)) => {
                running.insert(id, r);
            }
            Ok(None) => {}
            Err(e) => warn!(task = %task_name(b), error = %e, "cannot start the task; will retry"),
        }
    }
    Ok(())
}

/// Re-runs COMPLETED FULL_ONLY tasks whose schedule fired since they completed.
async fn schedule_reruns(conn: &mut tokio_postgres::Client, bundles: &[TaskBundle]) {
    let now = Utc::now();
    for b in bundles {
        let t = &b.task;
        if t.status != "COMPLETED" || t.sync_mode != "FULL_ONLY" || b.tenant.status != "ACTIVE" {
            continue;
        }
        match schedule::next_run(t.schedule_config.as_ref(), t.updated_at) {
            Ok(Some(fire)) if fire <= now => {
                match runstate::start_scheduled_run(conn, t.task_id, t.updated_at, fire).await {
                    Ok(true) => {
                        info!(task = %task_name(b), %fire, "scheduled run: copying the tables again")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        warn!(task = %task_name(b), error = %e, "cannot start a scheduled run")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => warn!(task = %task_name(b), error = %e, "bad schedule_config"),
        }
    }
}

async fn try_start(
    ctx: &Arc<Ctx>,
    b: &TaskBundle,
    limiter: Arc<TenantLimiter>,
    shutdown: &CancellationToken,
) -> Result<Option<Running>, String> {
    let name = task_name(b);
    let task_id = b.task.task_id;
    let config = match to_task_config(b, ctx.key.as_deref()) {
        Ok(c) => c,
        Err(why) => {
            // A definite configuration error: the operator must fix the task.
            let mut conn = ctx.db.get().await.map_err(|e| e.to_string())?;
            if runstate::finish(&mut conn, task_id, "FAILED", Some(&why))
                .await
                .map_err(|e| e.to_string())?
            {
                error!(task = %name, error = %why, "task configuration is invalid");
            }
            return Ok(None);
        }
    };
    let ttl = ctx.cfg.lease_ttl_secs;
    let sent = Instant::now();
    let lease = {
        let conn = ctx.db.get().await.map_err(|e| e.to_string())?;
        match leases::acquire(&*conn, task_id, &ctx.node_id, ttl)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(l) => l,
            None => return Ok(None), // another daemon runs it
        }
    };
    let guard = Arc::new(LeaseGuard::new(&name, limiter));
    let ttl_d = Duration::from_secs(ttl);
    guard.extend(sent, ttl_d - ttl_d / 3);
    ctx.guards
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(task_id, (lease.epoch, guard.clone()));
    let state_key = format!("{task_id}@{}", b.task.offset_epoch);
    match restore_if_missing(
        &ctx.rocks,
        &state_key,
        &ctx.db,
        task_id,
        b.task.offset_epoch,
    )
    .await
    {
        Ok(true) => info!(task = %name, "no local checkpoint: resuming from the mirrored offset"),
        Ok(false) => {}
        Err(e) => {
            ctx.guards
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&task_id);
            if let Ok(conn) = ctx.db.get().await {
                let _ = leases::release(&*conn, &lease, &ctx.node_id).await;
            }
            return Err(format!("cannot restore the mirrored checkpoint: {e}"));
        }
    }
    let (partition, server_id) = source_partition(&config.source, &config);
    let queue = Arc::new(MirrorQueue::default());
    let store: Arc<dyn CheckpointStore> = Arc::new(MirroredStore::new(
        ctx.rocks.clone(),
        state_key,
        queue.clone(),
    ));
    let meta = TaskMeta {
        task_id,
        alert_config: b.task.alert_config.clone(),
    };
    let entry = ctx.registry.add(&name, config.sync_mode, Some(meta));
    m::register_errors(&name);
    let stop = shutdown.child_token();
    let span = tracing::info_span!("task", task = %name);
    let writer_stop = CancellationToken::new();
    let writer = tokio::spawn(run_writer(
        queue,
        MirrorTarget {
            db: ctx.db.clone(),
            task_id,
            offset_epoch: b.task.offset_epoch,
            owner: ctx.node_id.clone(),
            lease_epoch: lease.epoch,
            source_partition: partition,
            server_id,
        },
        guard.clone(),
        writer_stop.clone(),
    ));
    let progress = tokio::spawn(
        report_progress(name.clone(), entry.stats.clone(), stop.clone()).instrument(span.clone()),
    );
    let dyn_guard: Arc<dyn TaskGuard> = guard.clone();
    let stop2 = stop.clone();
    let handle = tokio::spawn(
        async move {
            let end = supervise(config, store, entry, Some(dyn_guard), stop2).await;
            progress.abort();
            // The last checkpoint reaches the mirror before the lease goes.
            writer_stop.cancel();
            let _ = writer.await;
            end
        }
        .instrument(span),
    );
    info!(task = %name, epoch = lease.epoch, "task lease acquired: running the task here");
    Ok(Some(Running {
        name,
        fingerprint: fingerprint(b),
        lease,
        guard,
        stop,
        handle,
        errors_reported: 0,
    }))
}

/// `sync_offsets.source_partition`: where the task reads from.
fn source_partition(
    source: &SourceConfig,
    task: &engine::config::TaskConfig,
) -> (serde_json::Value, Option<u32>) {
    match source {
        SourceConfig::Postgresql(_) => (
            json!({"source": "postgresql", "slot": task.slot_name()}),
            None,
        ),
        SourceConfig::Mysql(c) => {
            let id = c.effective_server_id(&task.name);
            (
                json!({"source": "mysql", "database": c.databases}),
                Some(id),
            )
        }
    }
}

/// Records how finished tasks ended and lets their leases go.
async fn reap(ctx: &Arc<Ctx>, running: &mut HashMap<Uuid, Running>) {
    let done: Vec<Uuid> = running
        .iter()
        .filter(|(_, r)| r.handle.is_finished())
        .map(|(id, _)| *id)
        .collect();
    for id in done {
        let Some(mut r) = running.remove(&id) else {
            continue;
        };
        let end = (&mut r.handle)
            .await
            .unwrap_or_else(|e| TaskEnd::Failed(format!("task panicked: {e}")));
        let status = match &end {
            _ if r.guard.is_lost() => None,
            TaskEnd::Completed => Some(("COMPLETED", None)),
            // A run ended by the fence is not the task's failure: it moves on.
            _ if r.guard.refused_a_commit() => None,
            TaskEnd::Failed(msg) => Some(("FAILED", Some(msg.clone()))),
            _ => None,
        };
        if let Some((to, msg)) = status {
            match ctx.db.get().await {
                Ok(mut conn) => {
                    if let Err(e) = runstate::finish(&mut conn, id, to, msg.as_deref()).await {
                        warn!(task = %r.name, error = %e, "cannot record how the task ended");
                    } else {
                        info!(task = %r.name, status = to, "task ended");
                    }
                }
                Err(e) => warn!(task = %r.name, error = %e, "cannot record how the task ended"),
            }
        }
        if !r.guard.is_lost() {
            release(ctx, &r).await;
        }
        forget(ctx, &r);
    }
}

/// Adds the errors seen since the last report to `sync_tasks.error_count`.
async fn report_errors(ctx: &Arc<Ctx>, running: &mut HashMap<Uuid, Running>) {
    let mut updates = Vec::new();
    for (id, r) in running.iter_mut() {
        let Some(entry) = ctx.registry.task(&r.name) else {
            continue;
        };
        let total = entry.errors_total.load(Ordering::Relaxed);
        if total > r.errors_reported {
            let msg = entry.last_error_message().unwrap_or_default();
            updates.push((*id, (total - r.errors_reported) as i32, msg));
            r.errors_reported = total;
        }
    }
    if updates.is_empty() {
        return;
    }
    match ctx.db.get().await {
        Ok(conn) => {
            for (id, n, msg) in updates {
                if let Err(e) = runstate::record_errors(&*conn, id, n, &msg).await {
                    warn!(error = %e, "cannot record task errors");
                }
            }
        }
        Err(e) => warn!(error = %e, "cannot record task errors"),
    }
}

async fn release(ctx: &Arc<Ctx>, r: &Running) {
    match ctx.db.get().await {
        Ok(conn) => {
            if let Err(e) = leases::release(&*conn, &r.lease, &ctx.node_id).await {
                warn!(task = %r.name, error = %e, "cannot release the task lease (it expires by itself)");
            }
        }
        Err(e) => {
            warn!(task = %r.name, error = %e, "cannot release the task lease (it expires by itself)")
        }
    }
}

fn forget(ctx: &Arc<Ctx>, r: &Running) {
    ctx.guards
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&r.lease.task_id);
    ctx.registry.remove(&r.name);
}

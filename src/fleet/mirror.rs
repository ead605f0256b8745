//! The checkpoint store of a fleet task: RocksDB first (under the task's
//! `task_id@offset_epoch` key), then mirrored to `sync_offsets` and
//! `sync_source_state` by a background writer.
//!
//! The pipeline's `save` returns once RocksDB has synced; the mirror follows
//! with the latest checkpoint (older ones are skipped) and, before it, every
//! source-state change made since the previous mirror write, in order. A
//! mirror write refused because the lease is gone marks the task's guard
//! lost, which stops its commits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::{Checkpoint, CheckpointStore};
use metastore::meta::offsets::{self, OffsetWrite, StateOp, WriteOutcome};
use metastore::meta::MetaDb;
use serde_json::Value as Json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use super::guard::LeaseGuard;

#[derive(Default)]
struct Pending {
    ops: Vec<StateOp>,
    checkpoint: Option<Checkpoint>,
}

/// Work waiting for the mirror writer.
#[derive(Default)]
pub struct MirrorQueue {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl MirrorQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn push_op(&self, op: StateOp) {
        self.lock().ops.push(op);
        self.wake.notify_one();
    }
    fn push_checkpoint(&self, cp: &Checkpoint) {
        self.lock().checkpoint = Some(cp.clone());
        self.wake.notify_one();
    }
    fn take(&self) -> Pending {
        std::mem::take(&mut *self.lock())
    }
    fn put_back(&self, mut p: Pending) {
        let mut cur = self.lock();
        p.ops.append(&mut cur.ops);
        cur.ops = p.ops;
        if cur.checkpoint.is_none() {
            cur.checkpoint = p.checkpoint;
        }
    }
    fn is_empty(&self) -> bool {
        let p = self.lock();
        p.ops.is_empty() && p.checkpoint.is_none()
    }
}

/// The [`CheckpointStore`] handed to a fleet task's pipeline.
pub struct MirroredStore {
    inner: Arc<dyn CheckpointStore>,
    key: String,
    queue: Arc<MirrorQueue>,
}

impl MirroredStore {
    pub fn new(inner: Arc<dyn CheckpointStore>, key: String, queue: Arc<MirrorQueue>) -> Self {
        Self { inner, key, queue }
    }
}

impl CheckpointStore for MirroredStore {
    fn load(&self, _task: &str) -> engine::Result<Option<Checkpoint>> {
        self.inner.load(&self.key)
    }
    fn save(&self, _task: &str, checkpoint: &Checkpoint) -> engine::Result<()> {
        self.inner.save(&self.key, checkpoint)?;
        self.queue.push_checkpoint(checkpoint);
        Ok(())
    }
    fn reset(&self, _task: &str) -> engine::Result<()> {
        self.inner.reset(&self.key)
    }
    fn put_source_state(&self, _task: &str, key: &str, value: &[u8]) -> engine::Result<()> {
        self.inner.put_source_state(&self.key, key, value)?;
        self.queue
            .push_op(StateOp::Put(key.to_string(), value.to_vec()));
        Ok(())
    }
    fn delete_source_state(&self, _task: &str, key: &str) -> engine::Result<()> {
        self.inner.delete_source_state(&self.key, key)?;
        self.queue.push_op(StateOp::Delete(key.to_string()));
        Ok(())
    }
    fn source_state(&self, _task: &str, prefix: &str) -> engine::Result<Vec<(String, Vec<u8>)>> {
        self.inner.source_state(&self.key, prefix)
    }
}

/// Who writes the mirror, and where.
#[derive(Clone)]
pub struct MirrorTarget {
    pub db: MetaDb,
    pub task_id: Uuid,
    pub offset_epoch: i32,
    pub owner: String,
    pub lease_epoch: i64,
    pub source_partition: Json,
    pub server_id: Option<u32>,
}

/// Writes queued mirror work until `stop`, then once more (final flush, with
/// a few retries). Never blocks replication: failures are logged and retried.
pub async fn run_writer(
    queue: Arc<MirrorQueue>,
    target: MirrorTarget,
    guard: Arc<LeaseGuard>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = queue.wake.notified() => {}
        }
        match write_pending(&queue, &target, &guard).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot mirror the checkpoint to the metadata database");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                queue.wake.notify_one();
            }
        }
    }
    for _ in 0..3 {
        if queue.is_empty() || guard.is_lost() {
            return;
        }
        if let Err(e) = write_pending(&queue, &target, &guard).await {
            warn!(error = %e, "final mirror write failed");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

async fn write_pending(
    queue: &MirrorQueue,
    t: &MirrorTarget,
    guard: &LeaseGuard,
) -> Result<(), metastore::meta::MetaError> {
    let pending = queue.take();
    if pending.ops.is_empty() && pending.checkpoint.is_none() {
        return Ok(());
    }
    let result = async {
        let mut conn = t.db.get().await?;
        if !pending.ops.is_empty() {
            let ok = offsets::write_source_state(
                &mut conn,
                t.task_id,
                t.offset_epoch,
                &t.owner,
                t.lease_epoch,
                &pending.ops,
            )
            .await?;
            if !ok {
                return Ok(WriteOutcome::Fenced);
            }
        }
        if let Some(cp) = &pending.checkpoint {
            return offsets::write(
                &*conn,
                &OffsetWrite {
                    task_id: t.task_id,
                    owner: &t.owner,
                    epoch: t.lease_epoch,
                    offset_epoch: t.offset_epoch,
                    source_partition: &t.source_partition,
                    checkpoint: cp,
                    server_id: t.server_id,
                },
            )
            .await;
        }
        Ok(WriteOutcome::Written)
    }
    .await;
    match result {
        Ok(WriteOutcome::Fenced) => {
            warn!(task_id = %t.task_id, "the task's lease is gone: its offsets are no longer mirrored from here");
            guard.lose();
            Ok(())
        }
        Ok(outcome) => {
            debug!(?outcome, "checkpoint mirrored");
            Ok(())
        }
        Err(e) => {
            queue.put_back(pending);
            Err(e)
        }
    }
}

/// Before a task starts on a host whose RocksDB has no checkpoint for it,
/// copies the mirrored one (and the source state) into RocksDB. Returns
/// whether something was restored.
pub async fn restore_if_missing(
    store: &Arc<dyn CheckpointStore>,
    key: &str,
    db: &MetaDb,
    task_id: Uuid,
    offset_epoch: i32,
) -> Result<bool, String> {
    let local = {
        let (store, key) = (store.clone(), key.to_string());
        tokio::task::spawn_blocking(move || store.load(&key))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    if local.is_some() {
        return Ok(false);
    }
    let conn = db.get().await.map_err(|e| e.to_string())?;
    let Some(cp) = offsets::load(&*conn, task_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(false);
    };
    let state = offsets::load_source_state(&*conn, task_id, offset_epoch)
        .await
        .map_err(|e| e.to_string())?;
    drop(conn);
    let (store, key) = (store.clone(), key.to_string());
    tokio::task::spawn_blocking(move || -> engine::Result<()> {
        for (k, v) in &state {
            store.put_source_state(&key, k, v)?;
        }
        store.save(&key, &cp)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(true)
}

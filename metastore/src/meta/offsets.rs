//! The `sync_offsets` mirror of RocksDB checkpoints.
//!
//! The daemon writes its RocksDB checkpoint first; the mirror follows (latest
//! wins) and is what a task resumes from on a host without the RocksDB
//! (`checkpoint` column). Writes are:
//! - **monotonic**: `position_key` is an order-preserving byte encoding of the
//!   stream offset (commit position, ordinal); the upsert never replaces a
//!   larger key (bytea compares bytewise);
//! - **fenced**: they carry the writer's lease epoch and happen only while
//!   that exact lease is current, so a daemon that lost a task cannot move its
//!   offset.
//!
//! `source_offset` and `snapshot_offset` hold the spec's readable forms
//! (MySQL `file`/`pos`/`row`/`gtid_set`, PostgreSQL `lsn`/`ordinal`).

use engine::position::{Checkpoint, Offset, SourcePosition};
use serde_json::{json, Value as Json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::error::{MetaError, MetaResult};

/// Order-preserving bytes of an offset: a kind tag, then big-endian numbers.
/// `None` for a binlog file name without a numeric suffix.
pub fn position_key(o: &Offset) -> Option<Vec<u8>> {
    let mut k = Vec::with_capacity(25);
    match &o.commit {
        SourcePosition::Postgres { lsn } => {
            k.push(1);
            k.extend_from_slice(&lsn.0.to_be_bytes());
        }
        SourcePosition::Mysql(p) => {
            k.push(2);
            k.extend_from_slice(&p.file_seq()?.to_be_bytes());
            k.extend_from_slice(&p.pos.to_be_bytes());
        }
    }
    k.extend_from_slice(&o.ordinal.to_be_bytes());
    Some(k)
}

/// The spec's readable `source_offset`.
pub fn source_offset_json(o: Option<&Offset>, server_id: Option<u32>) -> Json {
    match o {
        None => json!({}),
        Some(o) => match &o.commit {
            SourcePosition::Postgres { lsn } => json!({
                "lsn": lsn.to_string(),
                "lsn_num": lsn.0,
                "ordinal": o.ordinal,
            }),
            SourcePosition::Mysql(p) => {
                let mut v = json!({
                    "file": p.file.as_ref(),
                    "pos": p.pos,
                    "row": o.ordinal,
                });
                if let Some(id) = server_id {
                    v["server_id"] = json!(id);
                }
                if let Some(g) = &p.gtid_set {
                    v["gtid_set"] = json!(g.as_ref());
                }
                v
            }
        },
    }
}

/// The spec's `snapshot_offset`: completion flags plus per-table chunk progress.
pub fn snapshot_offset_json(cp: &Checkpoint) -> Json {
    let tables: serde_json::Map<String, Json> = cp
        .snapshot
        .tables
        .iter()
        .map(|(t, p)| {
            (
                t.clone(),
                json!({"rows_copied": p.rows_copied, "done": p.done, "has_last_key": p.last_key.is_some()}),
            )
        })
        .collect();
    json!({
        "snapshot_completed": cp.snapshot.completed,
        "last_snapshot_record": cp.snapshot.completed,
        "tables": tables,
    })
}

/// One mirror write.
#[derive(Debug, Clone)]
pub struct OffsetWrite<'a> {
    pub task_id: Uuid,
    pub owner: &'a str,
    pub epoch: i64,
    /// The task's `offset_epoch` the checkpoint belongs to (a reset makes it stale).
    pub offset_epoch: i32,
    pub source_partition: &'a Json,
    pub checkpoint: &'a Checkpoint,
    pub server_id: Option<u32>,
}

/// What a mirror write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The stored offset is ahead (or equal with a newer epoch): left alone.
    NotNewer,
    /// This daemon no longer holds the lease, or the offset was reset since.
    Fenced,
}

/// Upserts the checkpoint into `sync_offsets`, monotonic and fenced.
pub async fn write(c: &impl GenericClient, w: &OffsetWrite<'_>) -> MetaResult<WriteOutcome> {
    let cp = w.checkpoint;
    let key = cp.stream.as_ref().and_then(position_key);
    let source_offset = source_offset_json(cp.stream.as_ref(), w.server_id);
    let snapshot = snapshot_offset_json(cp);
    let whole = serde_json::to_value(cp)
        .map_err(|e| MetaError::Invalid(format!("cannot encode a checkpoint: {e}")))?;
    let n = c
        .execute(
            "INSERT INTO sync_offsets AS o (task_id, source_partition, source_offset, snapshot_offset,
                                            position_key, checkpoint, written_epoch, last_updated)
             SELECT $1, $2, $3, $4, $5, $6, $7, now()
              WHERE EXISTS (SELECT 1 FROM task_leases l WHERE l.task_id = $1 AND l.owner = $8
                                AND l.epoch = $7 AND l.expires_at > now())
                AND EXISTS (SELECT 1 FROM sync_tasks t WHERE t.task_id = $1 AND t.offset_epoch = $9)
             ON CONFLICT (task_id, source_partition) DO UPDATE
                SET source_offset = EXCLUDED.source_offset, snapshot_offset = EXCLUDED.snapshot_offset,
                    position_key = EXCLUDED.position_key, checkpoint = EXCLUDED.checkpoint,
                    written_epoch = EXCLUDED.written_epoch, last_updated = now()
              WHERE o.written_epoch <= EXCLUDED.written_epoch
                AND (o.position_key IS NULL
                     OR (EXCLUDED.position_key IS NOT NULL AND o.position_key <= EXCLUDED.position_key))",
            &[
                &w.task_id,
                w.source_partition,
                &source_offset,
                &snapshot,
                &key,
                &whole,
                &w.epoch,
                &w.owner,
                &w.offset_epoch,
            ],
        )
        .await
        .map_err(|e| MetaError::query("mirror the checkpoint to sync_offsets", e))?;
    if n == 1 {
        return Ok(WriteOutcome::Written);
    }
    let held = c
        .query_opt(
            "SELECT 1 FROM task_leases WHERE task_id = $1 AND owner = $2 AND epoch = $3 AND expires_at > now()",
            &[&w.task_id, &w.owner, &w.epoch],
        )
        .await
        .map_err(|e| MetaError::query("check a task lease", e))?;
    Ok(if held.is_some() {
        WriteOutcome::NotNewer
    } else {
        WriteOutcome::Fenced
    })
}

/// The most advanced mirrored checkpoint of a task (resume on a new host).
pub async fn load(c: &impl GenericClient, task_id: Uuid) -> MetaResult<Option<Checkpoint>> {
    let row = c
        .query_opt(
            "SELECT checkpoint FROM sync_offsets WHERE task_id = $1 AND checkpoint IS NOT NULL
              ORDER BY position_key DESC NULLS LAST, last_updated DESC LIMIT 1",
            &[&task_id],
        )
        .await
        .map_err(|e| MetaError::query("read the mirrored offset", e))?;
    match row {
        None => Ok(None),
        Some(r) => {
            let v: Json = r.get(0);
            serde_json::from_value(v).map(Some).map_err(|e| {
                MetaError::Invalid(format!(
                    "sync_offsets.checkpoint of task {task_id} cannot be read ({e}): \
                     reset the task's offset (`dbsync task reset-offset`) to start over"
                ))
            })
        }
    }
}

/// A change to a task's mirrored source state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOp {
    Put(String, Vec<u8>),
    Delete(String),
}

/// Applies source-state changes, fenced like offsets; false when fenced.
pub async fn write_source_state(
    c: &mut tokio_postgres::Client,
    task_id: Uuid,
    offset_epoch: i32,
    owner: &str,
    lease_epoch: i64,
    ops: &[StateOp],
) -> MetaResult<bool> {
    let tx = c
        .transaction()
        .await
        .map_err(|e| MetaError::query("begin a source-state write", e))?;
    let held = tx
        .query_opt(
            "SELECT 1 FROM task_leases WHERE task_id = $1 AND owner = $2 AND epoch = $3
               AND expires_at > now() FOR SHARE",
            &[&task_id, &owner, &lease_epoch],
        )
        .await
        .map_err(|e| MetaError::query("check a task lease", e))?;
    if held.is_none() {
        return Ok(false);
    }
    for op in ops {
        match op {
            StateOp::Put(k, v) => tx
                .execute(
                    "INSERT INTO sync_source_state (task_id, offset_epoch, state_key, state_value)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (task_id, offset_epoch, state_key)
                     DO UPDATE SET state_value = EXCLUDED.state_value, updated_at = now()",
                    &[&task_id, &offset_epoch, k, v],
                )
                .await,
            StateOp::Delete(k) => tx
                .execute(
                    "DELETE FROM sync_source_state WHERE task_id = $1 AND offset_epoch = $2 AND state_key = $3",
                    &[&task_id, &offset_epoch, k],
                )
                .await,
        }
        .map_err(|e| MetaError::query("mirror source state", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| MetaError::query("commit a source-state write", e))?;
    Ok(true)
}

/// A task's mirrored source state, in key order.
pub async fn load_source_state(
    c: &impl GenericClient,
    task_id: Uuid,
    offset_epoch: i32,
) -> MetaResult<Vec<(String, Vec<u8>)>> {
    let rows = c
        .query(
            "SELECT state_key, state_value FROM sync_source_state
              WHERE task_id = $1 AND offset_epoch = $2 ORDER BY state_key",
            &[&task_id, &offset_epoch],
        )
        .await
        .map_err(|e| MetaError::query("read mirrored source state", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::position::BinlogPosition;
    use engine::Lsn;

    fn my(file: &str, pos: u64, ord: u64) -> Offset {
        Offset::new(
            SourcePosition::Mysql(BinlogPosition {
                file: file.into(),
                pos,
                gtid_set: None,
            }),
            ord,
        )
    }

    #[test]
    fn position_keys_sort_like_offsets() {
        let pg = [
            Offset::postgres(Lsn(5), 9),
            Offset::postgres(Lsn(6), 0),
            Offset::postgres(Lsn(6), 1),
            Offset::postgres(Lsn(1 << 40), 0),
        ];
        for w in pg.windows(2) {
            assert!(position_key(&w[0]) < position_key(&w[1]));
        }
        let m = [
            my("bin.000009", 900, 3),
            my("bin.000010", 4, 0),
            my("bin.000010", 4, 1),
            my("bin.000010", 300, 0),
        ];
        for w in m.windows(2) {
            assert!(position_key(&w[0]) < position_key(&w[1]));
        }
        assert_eq!(position_key(&my("nosuffix", 4, 0)), None);
    }

    #[test]
    fn readable_offsets_follow_the_spec() {
        let v = source_offset_json(Some(&my("mysql-bin.000003", 154, 1)), Some(223344));
        assert_eq!(v["file"], "mysql-bin.000003");
        assert_eq!(v["pos"], 154);
        assert_eq!(v["row"], 1);
        assert_eq!(v["server_id"], 223344);
        let v = source_offset_json(Some(&Offset::postgres(Lsn(0x16B3748), 2)), None);
        assert_eq!(v["lsn"], "0/16B3748");
        assert_eq!(v["ordinal"], 2);
    }
}

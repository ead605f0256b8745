//! RocksDB checkpoint store.
//!
//! One column family, `checkpoints`, keyed `task/<name>`. A value is one
//! format-version byte followed by the checkpoint as JSON; readers refuse an
//! unknown version instead of guessing. Every write is synced (`fsync`)
//! before `save` returns, and `save` refuses to move a stream offset backward
//! (see [`engine::CheckpointStore`]). RocksDB's own lock file keeps a second
//! daemon from opening the same data directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use engine::{check_monotonic, Checkpoint, CheckpointStore};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};

const CF_CHECKPOINTS: &str = "checkpoints";
/// Per-task source state, keyed `<task>\0<key>`.
const CF_SOURCE_STATE: &str = "source_state";
/// On-disk format of checkpoint values. Bump it, and keep reading the old
/// one, when `Checkpoint`'s serialized form changes incompatibly.
pub const FORMAT_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the checkpoint store in {dir}: {reason}")]
    Open { dir: PathBuf, reason: String },
    #[error("checkpoint store I/O failed: {0}")]
    Io(String),
    #[error("checkpoint of task {task} is unreadable: {reason}")]
    Corrupt { task: String, reason: String },
}

impl From<StoreError> for engine::Error {
    fn from(e: StoreError) -> Self {
        engine::Error::Checkpoint(e.to_string())
    }
}

pub struct RocksCheckpointStore {
    db: DB,
    dir: PathBuf,
    /// Serializes read-check-write in `save`.
    write_lock: Mutex<()>,
}

fn key(task: &str) -> Vec<u8> {
    format!("task/{task}").into_bytes()
}

fn state_key(task: &str, key: &str) -> Vec<u8> {
    let mut k = task.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Encodes a checkpoint as stored on disk.
pub fn encode(cp: &Checkpoint) -> Vec<u8> {
    let mut v = vec![FORMAT_VERSION];
    serde_json::to_writer(&mut v, cp).expect("checkpoints serialize");
    v
}

/// Decodes a stored checkpoint value.
pub fn decode(task: &str, bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        task: task.to_string(),
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT_VERSION, json)) => {
            serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!(
            "format version {v} is not known to this dbsync (it reads version {FORMAT_VERSION}); \
             run the dbsync version that wrote it, or reset the task's offsets"
        ))),
        None => Err(corrupt("empty value".into())),
    }
}

impl RocksCheckpointStore {
    /// Opens (creating when missing) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            dir: dir.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            open_err(format!(
                "{e}; check that data_dir exists and is writable by the service user"
            ))
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(3);
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_CHECKPOINTS, Options::default()),
            ColumnFamilyDescriptor::new(CF_SOURCE_STATE, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| {
            let msg = e.to_string();
            if msg.contains("LOCK") || msg.contains("lock") {
                open_err(format!(
                    "{msg}; another dbsync process is probably using this data_dir"
                ))
            } else {
                open_err(msg)
            }
        })?;
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
            write_lock: Mutex::new(()),
        })
    }

    /// Opens an existing store read-only (works while a daemon holds it).
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let opts = Options::default();
        let cfs = DB::list_cf(&opts, dir).unwrap_or_else(|_| vec![CF_CHECKPOINTS.to_string()]);
        let db =
            DB::open_cf_for_read_only(&opts, dir, cfs, false).map_err(|e| StoreError::Open {
                dir: dir.to_path_buf(),
                reason: format!("{e}; is data_dir right, and has dbsync run there yet?"),
            })?;
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
            write_lock: Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cf(&self) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(CF_CHECKPOINTS)
            .expect("column family created at open")
    }

    fn state_cf(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(CF_SOURCE_STATE).ok_or_else(|| {
            StoreError::Io("the store was opened without its source_state column family".into())
        })
    }

    fn get(&self, task: &str) -> Result<Option<Checkpoint>, StoreError> {
        match self
            .db
            .get_cf(self.cf(), key(task))
            .map_err(|e| StoreError::Io(e.to_string()))?
        {
            Some(bytes) => decode(task, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// All stored checkpoints, by task name.
    pub fn list(&self) -> Result<Vec<(String, Checkpoint)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(), rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(|e| StoreError::Io(e.to_string()))?;
            let Some(task) = std::str::from_utf8(&k)
                .ok()
                .and_then(|k| k.strip_prefix("task/"))
            else {
                continue;
            };
            out.push((task.to_string(), decode(task, &v)?));
        }
        Ok(out)
    }

    fn synced() -> WriteOptions {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        wo
    }
}

impl CheckpointStore for RocksCheckpointStore {
    fn load(&self, task: &str) -> engine::Result<Option<Checkpoint>> {
        Ok(self.get(task)?)
    }

    fn save(&self, task: &str, checkpoint: &Checkpoint) -> engine::Result<()> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let prev = self.get(task)?;
        check_monotonic(prev.as_ref(), checkpoint)?;
        self.db
            .put_cf_opt(self.cf(), key(task), encode(checkpoint), &Self::synced())
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(())
    }

    fn reset(&self, task: &str) -> engine::Result<()> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_cf(self.cf(), key(task));
        for (k, _) in self.source_state(task, "")? {
            batch.delete_cf(self.state_cf()?, state_key(task, &k));
        }
        self.db
            .write_opt(batch, &Self::synced())
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(())
    }

    fn put_source_state(&self, task: &str, key: &str, value: &[u8]) -> engine::Result<()> {
        self.db
            .put_cf_opt(
                self.state_cf()?,
                state_key(task, key),
                value,
                &Self::synced(),
            )
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(())
    }

    fn delete_source_state(&self, task: &str, key: &str) -> engine::Result<()> {
        self.db
            .delete_cf_opt(self.state_cf()?, state_key(task, key), &Self::synced())
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(())
    }

    fn source_state(&self, task: &str, prefix: &str) -> engine::Result<Vec<(String, Vec<u8>)>> {
        let start = state_key(task, prefix);
        let task_prefix = state_key(task, "");
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.state_cf()?,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(|e| StoreError::Io(e.to_string()))?;
            if !k.starts_with(&start) {
                break;
            }
            let name = String::from_utf8_lossy(&k[task_prefix.len()..]).into_owned();
            out.push((name, v.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Lsn, Offset};

    fn cp(lsn: u64) -> Checkpoint {
        let mut c = Checkpoint::empty();
        c.stream = Some(Offset::postgres(Lsn(lsn), 0));
        c.updated_at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        c
    }

    #[test]
    fn saves_loads_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksCheckpointStore::open(dir.path()).unwrap();
            assert_eq!(s.load("a").unwrap(), None);
            s.save("a", &cp(10)).unwrap();
            s.save("b", &cp(5)).unwrap();
            assert_eq!(s.load("a").unwrap(), Some(cp(10)));
        }
        let s = RocksCheckpointStore::open(dir.path()).unwrap();
        assert_eq!(s.load("a").unwrap(), Some(cp(10)));
        let names: Vec<_> = s.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["a", "b"]);
    }

    #[test]
    fn never_moves_backward() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksCheckpointStore::open(dir.path()).unwrap();
        s.save("t", &cp(100)).unwrap();
        let err = s.save("t", &cp(99)).unwrap_err().to_string();
        assert!(err.contains("backward"), "{err}");
        assert_eq!(s.load("t").unwrap(), Some(cp(100)));
        s.save("t", &cp(100)).unwrap();
        s.save("t", &cp(101)).unwrap();
        s.reset("t").unwrap();
        assert_eq!(s.load("t").unwrap(), None);
        s.save("t", &cp(1)).unwrap();
    }

    #[test]
    fn source_state_is_per_task_ordered_and_reset_with_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksCheckpointStore::open(dir.path()).unwrap();
        s.put_source_state("a", "schema/0002", b"two").unwrap();
        s.put_source_state("a", "schema/0001", b"one").unwrap();
        s.put_source_state("a", "other", b"x").unwrap();
        s.put_source_state("ab", "schema/0001", b"not a").unwrap();
        let got = s.source_state("a", "schema/").unwrap();
        assert_eq!(
            got,
            vec![
                ("schema/0001".to_string(), b"one".to_vec()),
                ("schema/0002".to_string(), b"two".to_vec())
            ]
        );
        s.delete_source_state("a", "schema/0001").unwrap();
        assert_eq!(s.source_state("a", "schema/").unwrap().len(), 1);
        s.save("a", &cp(1)).unwrap();
        s.reset("a").unwrap();
        assert!(s.source_state("a", "").unwrap().is_empty());
        assert_eq!(s.source_state("ab", "").unwrap().len(), 1);
    }

    #[test]
    fn second_open_of_the_same_dir_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _s = RocksCheckpointStore::open(dir.path()).unwrap();
        let err = RocksCheckpointStore::open(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another dbsync"), "{err}");
    }

    /// The bytes of format version 1 are frozen: a checkpoint written by this
    /// version must stay readable by later ones.
    #[test]
    fn format_version_1_golden_bytes() {
        let golden = b"\x01{\"stream\":{\"commit\":{\"source\":\"postgres\",\"lsn\":\"0/64\"},\"ordinal\":0},\"snapshot\":{\"completed\":true,\"consistent_point\":null,\"tables\":{\"public.t\":{\"last_key\":[\"42\"],\"rows_copied\":42,\"done\":true}}},\"source_state\":{\"slot\":\"s\"},\"updated_at\":\"2023-11-14T22:13:20Z\"}";
        let c = decode("t", golden).unwrap();
        assert_eq!(c.stream, Some(Offset::postgres(Lsn(100), 0)));
        assert!(c.snapshot.completed);
        assert_eq!(
            c.snapshot.tables["public.t"].last_key,
            Some(vec!["42".to_string()])
        );
        assert_eq!(encode(&c), golden.to_vec());
        let err = decode("t", b"\x09{}").unwrap_err().to_string();
        assert!(err.contains("format version 9"), "{err}");
    }
}

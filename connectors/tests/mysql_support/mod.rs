//! Test support for the MySQL/MariaDB source: a private MariaDB, an
//! in-memory checkpoint store, and a miniature pipeline that applies the
//! source's events to in-memory tables exactly as the contract says
//! (whole transactions at their commit, checkpoint = resume offset, events
//! before the checkpoint dropped).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connectors::mysql::MysqlSource;
use engine::config::Config;
use engine::{
    ChangeEvent, Checkpoint, CheckpointStore, EventSender, Offset, Row, Source, SourceContext,
    TableId, Value,
};
use testkit::{MariaDbOptions, MariaDbServer};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(60);

/// An in-memory [`CheckpointStore`].
#[derive(Default)]
pub struct MemStore {
    cps: Mutex<HashMap<String, Checkpoint>>,
    state: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl CheckpointStore for MemStore {
    fn load(&self, task: &str) -> engine::Result<Option<Checkpoint>> {
        Ok(self.cps.lock().unwrap().get(task).cloned())
    }
    fn save(&self, task: &str, cp: &Checkpoint) -> engine::Result<()> {
        let prev = self.load(task)?;
        engine::check_monotonic(prev.as_ref(), cp)?;
        self.cps.lock().unwrap().insert(task.into(), cp.clone());
        Ok(())
    }
    fn reset(&self, task: &str) -> engine::Result<()> {
        self.cps.lock().unwrap().remove(task);
        let p = format!("{task}\0");
        self.state.lock().unwrap().retain(|k, _| !k.starts_with(&p));
        Ok(())
    }
    fn put_source_state(&self, task: &str, key: &str, value: &[u8]) -> engine::Result<()> {
        self.state
            .lock()
            .unwrap()
            .insert(format!("{task}\0{key}"), value.to_vec());
        Ok(())
    }
    fn delete_source_state(&self, task: &str, key: &str) -> engine::Result<()> {
        self.state.lock().unwrap().remove(&format!("{task}\0{key}"));
        Ok(())
    }
    fn source_state(&self, task: &str, prefix: &str) -> engine::Result<Vec<(String, Vec<u8>)>> {
        let p = format!("{task}\0{prefix}");
        Ok(self
            .state
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(&p))
            .map(|(k, v)| (k[task.len() + 1..].to_string(), v.clone()))
            .collect())
    }
}

/// Starts a private MariaDB with a `shop` database.
pub fn mariadb(extra: &[&str]) -> MariaDbServer {
    let db = MariaDbServer::start(MariaDbOptions {
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    });
    db.create_database("shop");
    db
}

/// A task config: `source_extra` lines go into `[task.source]`.
pub fn task_config(
    db: &MariaDbServer,
    mode: &str,
    source_extra: &str,
    mappings: &[&str],
) -> engine::config::TaskConfig {
    let mut text = format!(
        "[[task]]\nname = \"t1\"\nsync_mode = \"{mode}\"\n[task.source]\ntype = \"mariadb\"\nurl = \"{}\"\n\
         heartbeat_interval_secs = 1\nsnapshot_chunk_rows = 1000\n{source_extra}\n\
         [task.target]\ntype = \"postgresql\"\nurl = \"postgres://nobody@127.0.0.1:1/none\"\n",
        db.url("shop")
    );
    for m in mappings {
        text.push_str(&format!("[[task.mapping]]\nsource = \"{m}\"\n"));
    }
    Config::parse(&text).unwrap().tasks.remove(0)
}

/// Key text of a row (the key columns' debug form).
fn key_of(schema: &engine::TableSchema, row: &Row) -> String {
    format!(
        "{:?}",
        schema.key.iter().map(|&i| &row[i]).collect::<Vec<_>>()
    )
}

/// The in-memory target and checkpoint of one task.
#[derive(Default)]
pub struct Target {
    /// Table → key text → (column names, row).
    pub tables: BTreeMap<TableId, BTreeMap<String, (Vec<String>, Row)>>,
    pub checkpoint: Option<Checkpoint>,
    pub relations: Vec<Arc<engine::TableSchema>>,
    pub truncates: usize,
    pub heartbeats: usize,
    pub commits: usize,
    /// While set, stream positions are applied but not checkpointed (as if
    /// the target never acknowledged them).
    pub frozen: bool,
}

impl Target {
    pub fn rows(&self, table: &str) -> Vec<Row> {
        let id = TableId::parse(table, "shop");
        self.tables
            .get(&id)
            .map(|t| t.values().map(|(_, r)| r.clone()).collect())
            .unwrap_or_default()
    }

    /// Rows as `column=value` maps (so that column order changes compare).
    pub fn named_rows(&self, table: &str) -> Vec<BTreeMap<String, Value>> {
        let id = TableId::parse(table, "shop");
        self.tables
            .get(&id)
            .map(|t| {
                t.values()
                    .map(|(cols, r)| cols.iter().cloned().zip(r.iter().cloned()).collect())
                    .collect()
            })
            .unwrap_or_default()
    }
}

enum Pending {
    Upsert(Arc<engine::TableSchema>, Row),
    Delete(Arc<engine::TableSchema>, Row),
    Truncate(Vec<Arc<engine::TableSchema>>),
    Rename(engine::TableId, engine::TableId),
}

/// A running source and the task applying its events.
pub struct Running {
    pub target: Arc<Mutex<Target>>,
    /// The source's error, once it failed.
    pub failure: Arc<Mutex<Option<String>>>,
    pub shutdown: CancellationToken,
    pub source: tokio::task::JoinHandle<engine::Result<()>>,
    pub applier: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts the source of `task` with the store's checkpoint.
    pub fn start(task: &engine::config::TaskConfig, store: Arc<MemStore>) -> Running {
        Self::start_with(task, store, 16)
    }

    pub fn start_with(
        task: &engine::config::TaskConfig,
        store: Arc<MemStore>,
        queue: usize,
    ) -> Running {
        Self::resume(task, store, queue, Arc::new(Mutex::new(Target::default())))
    }

    /// Starts again after [`Running::kill`], onto the same target tables.
    pub fn restart(
        task: &engine::config::TaskConfig,
        store: Arc<MemStore>,
        target: Arc<Mutex<Target>>,
    ) -> Running {
        Self::resume(task, store, 16, target)
    }

    fn resume(
        task: &engine::config::TaskConfig,
        store: Arc<MemStore>,
        queue: usize,
        target: Arc<Mutex<Target>>,
    ) -> Running {
        let checkpoint = store.load("t1").unwrap();
        let (tx, rx) = mpsc::channel(queue);
        let (ack_tx, ack_rx) = watch::channel(checkpoint.as_ref().and_then(|c| c.stream.clone()));
        let shutdown = CancellationToken::new();
        let ctx = SourceContext {
            task: "t1".into(),
            store: store.clone(),
            checkpoint: checkpoint.clone(),
            events: EventSender::new(tx, 1024, 4 << 20),
            acked: ack_rx,
            shutdown: shutdown.clone(),
        };
        let source = MysqlSource::new(task).unwrap();
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = failure.clone();
        let source = tokio::spawn(async move {
            let r = source.run(ctx).await;
            if let Err(e) = &r {
                *slot.lock().unwrap() = Some(e.to_string());
            }
            r
        });
        {
            let mut t = target.lock().unwrap();
            t.checkpoint = checkpoint;
            t.frozen = false;
        }
        let applier = tokio::spawn(apply(rx, target.clone(), store, ack_tx));
        Running {
            target,
            failure,
            shutdown,
            source,
            applier,
        }
    }

    /// Stops like a crash: no drain; uncommitted events are lost.
    pub async fn kill(self) -> Arc<Mutex<Target>> {
        self.shutdown.cancel();
        self.applier.abort();
        let _ = self.applier.await;
        let _ = tokio::time::timeout(WAIT, self.source).await;
        self.target
    }

    /// Waits until `f` holds for the target (panics after [`WAIT`]).
    pub async fn wait_for(&self, what: &str, f: impl Fn(&Target) -> bool) {
        let start = Instant::now();
        loop {
            if f(&self.target.lock().unwrap()) {
                return;
            }
            if self.source.is_finished() {
                let err = self.failure.lock().unwrap().clone();
                panic!("source ended while waiting for {what}: {err:?}");
            }
            assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The source's error, once it stopped by itself.
    pub async fn error(self) -> String {
        match tokio::time::timeout(WAIT, self.source).await {
            Ok(Ok(Err(e))) => e.to_string(),
            other => panic!("source did not fail: {other:?}"),
        }
    }
}

fn already(cp: &Option<Checkpoint>, off: &Offset) -> bool {
    matches!(cp.as_ref().and_then(|c| c.stream.as_ref()), Some(r) if off < r)
}

async fn apply(
    mut rx: mpsc::Receiver<Vec<ChangeEvent>>,
    target: Arc<Mutex<Target>>,
    store: Arc<MemStore>,
    ack: watch::Sender<Option<Offset>>,
) {
    let mut pending: Vec<Pending> = Vec::new();
    while let Some(chunk) = rx.recv().await {
        for ev in chunk {
            let mut t = target.lock().unwrap();
            if let Some(off) = ev.offset() {
                if already(&t.checkpoint, off) {
                    continue;
                }
            }
            match ev {
                ChangeEvent::Begin(_) => pending.clear(),
                ChangeEvent::Insert(e) => pending.push(Pending::Upsert(e.table, e.row)),
                ChangeEvent::Update(e) => {
                    if let Some(b) = e.before {
                        pending.push(Pending::Delete(e.table.clone(), b));
                    }
                    pending.push(Pending::Upsert(e.table, e.after));
                }
                ChangeEvent::Delete(e) => pending.push(Pending::Delete(e.table, e.before)),
                ChangeEvent::Truncate(e) => pending.push(Pending::Truncate(e.tables)),
                ChangeEvent::Relation(r) => t.relations.push(r.table),
                ChangeEvent::Rename(r) => {
                    pending.push(Pending::Rename(r.from.id.clone(), r.to.id.clone()))
                }
                ChangeEvent::Commit(c) => {
                    for p in pending.drain(..) {
                        match p {
                            Pending::Upsert(s, row) => {
                                let k = key_of(&s, &row);
                                let cols = s.columns.iter().map(|c| c.name.clone()).collect();
                                t.tables
                                    .entry(s.id.clone())
                                    .or_default()
                                    .insert(k, (cols, row));
                            }
                            Pending::Delete(s, row) => {
                                let k = key_of(&s, &row);
                                t.tables.entry(s.id.clone()).or_default().remove(&k);
                            }
                            Pending::Truncate(ts) => {
                                t.truncates += 1;
                                for s in ts {
                                    t.tables.entry(s.id.clone()).or_default().clear();
                                }
                            }
                            Pending::Rename(from, to) => {
                                if let Some(rows) = t.tables.remove(&from) {
                                    t.tables.insert(to, rows);
                                }
                            }
                        }
                    }
                    t.commits += 1;
                    save(&mut t, &store, &ack, |cp| {
                        cp.stream = Some(c.resume.clone())
                    });
                }
                ChangeEvent::Heartbeat(h) => {
                    t.heartbeats += 1;
                    if t.checkpoint
                        .as_ref()
                        .and_then(|c| c.stream.as_ref())
                        .is_none_or(|r| &h.resume > r)
                    {
                        save(&mut t, &store, &ack, |cp| {
                            cp.stream = Some(h.resume.clone())
                        });
                    }
                }
                ChangeEvent::SnapshotChunk(c) => {
                    let cols: Vec<String> =
                        c.table.columns.iter().map(|c| c.name.clone()).collect();
                    for row in c.rows {
                        let k = key_of(&c.table, &row);
                        t.tables
                            .entry(c.table.id.clone())
                            .or_default()
                            .insert(k, (cols.clone(), row));
                    }
                    let key = c.table.id.to_string();
                    save(&mut t, &store, &ack, |cp| {
                        cp.snapshot.tables.insert(key.clone(), c.progress.clone());
                    });
                }
                ChangeEvent::SnapshotDone(d) => save(&mut t, &store, &ack, |cp| {
                    cp.snapshot.completed = true;
                    cp.snapshot.consistent_point = Some(d.consistent_point.clone());
                    if cp.stream.as_ref().is_none_or(|s| &d.consistent_point > s) {
                        cp.stream = Some(d.consistent_point.clone());
                    }
                }),
            }
        }
    }
}

fn save(
    t: &mut Target,
    store: &MemStore,
    ack: &watch::Sender<Option<Offset>>,
    f: impl FnOnce(&mut Checkpoint),
) {
    if t.frozen {
        return;
    }
    let mut cp = t.checkpoint.clone().unwrap_or_else(Checkpoint::empty);
    f(&mut cp);
    store.save("t1", &cp).expect("checkpoint moved backward");
    ack.send_replace(cp.stream.clone());
    t.checkpoint = Some(cp);
}

//! Mappings inside the pipeline, with a scripted source and a recording sink:
//! snapshot rows and streamed changes mapped alike, filter move-out deletes,
//! per-mapping `batch_size` (rows per write) and `batch_timeout_ms`, the
//! policy reaching the sink, truncates kept from shared or kept-row targets,
//! `AFTER_WRITE` scripts, and a `THROW_EXCEPTION` script failing the task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::config::MappingConfig;
use engine::event::{Begin, Commit, Delete, Insert, SnapshotChunk, SnapshotDone, Truncate, Update};
use engine::mapping::{StatsHandle, TableRouter};
use engine::pipeline::{run_pipeline, PipelineOptions, RunOutcome, TaskStats};
use engine::{
    ChangeEvent, Checkpoint, CheckpointStore, ColumnSchema, ConflictPolicy, DataType, Dialect, Lsn,
    Offset, Row, Sink, Source, SourceContext, TableChanges, TableId, TableSchema,
    TableSnapshotProgress, Value,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Begin,
    Apply {
        table: String,
        upserts: Vec<Row>,
        deletes: Vec<Row>,
        policy: ConflictPolicy,
    },
    Truncate(String),
    Commit,
    Rollback,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Call>>>);

impl Log {
    fn push(&self, c: Call) {
        self.0.lock().unwrap().push(c);
    }
    fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }
    fn applies(&self) -> Vec<(String, Vec<Row>, Vec<Row>, ConflictPolicy)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Apply {
                    table,
                    upserts,
                    deletes,
                    policy,
                } => Some((table, upserts, deletes, policy)),
                _ => None,
            })
            .collect()
    }
    fn count(&self, want: &Call) -> usize {
        self.calls().iter().filter(|c| *c == want).count()
    }
}

struct RecordingSink {
    log: Log,
    apply_delay: Duration,
}

impl Sink for RecordingSink {
    async fn ensure_table(&mut self, _t: &Arc<TableSchema>) -> engine::Result<()> {
        Ok(())
    }
    async fn begin(&mut self) -> engine::Result<()> {
        self.log.push(Call::Begin);
        Ok(())
    }
    async fn apply(&mut self, ch: &TableChanges) -> engine::Result<()> {
        tokio::time::sleep(self.apply_delay).await;
        self.log.push(Call::Apply {
            table: ch.table.id.to_string(),
            upserts: ch.upserts.clone(),
            deletes: ch.deletes.clone(),
            policy: ch.policy,
        });
        Ok(())
    }
    async fn truncate(&mut self, t: &TableId) -> engine::Result<()> {
        self.log.push(Call::Truncate(t.to_string()));
        Ok(())
    }
    async fn commit(&mut self) -> engine::Result<()> {
        self.log.push(Call::Commit);
        Ok(())
    }
    async fn rollback(&mut self) -> engine::Result<()> {
        self.log.push(Call::Rollback);
        Ok(())
    }
}

/// Sends its chunks (each flushed on its own), then ends.
struct ScriptedSource(Vec<Vec<ChangeEvent>>);

impl Source for ScriptedSource {
    async fn run(self, mut ctx: SourceContext) -> engine::Result<()> {
        for chunk in self.0 {
            for e in chunk {
                ctx.events.push(e).await?;
            }
            ctx.events.flush().await?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct MemStore(Mutex<HashMap<String, Checkpoint>>);

impl CheckpointStore for MemStore {
    fn load(&self, task: &str) -> engine::Result<Option<Checkpoint>> {
        Ok(self.0.lock().unwrap().get(task).cloned())
    }
    fn save(&self, task: &str, cp: &Checkpoint) -> engine::Result<()> {
        self.0.lock().unwrap().insert(task.into(), cp.clone());
        Ok(())
    }
    fn reset(&self, task: &str) -> engine::Result<()> {
        self.0.lock().unwrap().remove(task);
        Ok(())
    }
    fn put_source_state(&self, _: &str, _: &str, _: &[u8]) -> engine::Result<()> {
        Ok(())
    }
    fn delete_source_state(&self, _: &str, _: &str) -> engine::Result<()> {
        Ok(())
    }
    fn source_state(&self, _: &str, _: &str) -> engine::Result<Vec<(String, Vec<u8>)>> {
        Ok(Vec::new())
    }
}

fn schema(name: &str) -> Arc<TableSchema> {
    let col = |n: &str, t: DataType| ColumnSchema {
        name: n.into(),
        data_type: t,
        nullable: true,
        native_type: String::new(),
        default: None,
    };
    Arc::new(TableSchema {
        id: TableId::new("public", name),
        columns: vec![
            col("id", DataType::Int64),
            col("status", DataType::Text { max_len: None }),
        ],
        key: vec![0],
        dialect: Dialect::Postgres,
    })
}

fn row(id: i64, status: &str) -> Row {
    vec![Value::Int64(id), Value::Text(status.into())]
}

/// Builds transactions with increasing offsets.
struct Events {
    lsn: u64,
}

impl Events {
    fn off(&mut self) -> Offset {
        self.lsn += 1;
        Offset::postgres(Lsn(self.lsn * 10), 0)
    }
    fn txn(&mut self, changes: Vec<ChangeEvent>) -> Vec<ChangeEvent> {
        let mut out = vec![ChangeEvent::Begin(Begin {
            offset: self.off(),
            commit_time: None,
            xid: None,
        })];
        out.extend(changes);
        let offset = self.off();
        out.push(ChangeEvent::Commit(Commit {
            resume: Offset::postgres(Lsn(self.lsn * 10 + 5), 0),
            offset,
            commit_time: None,
        }));
        out
    }
    fn insert(&mut self, t: &Arc<TableSchema>, r: Row) -> ChangeEvent {
        ChangeEvent::Insert(Insert {
            offset: self.off(),
            table: t.clone(),
            row: r,
        })
    }
    fn update(&mut self, t: &Arc<TableSchema>, before: Row, after: Row) -> ChangeEvent {
        ChangeEvent::Update(Update {
            offset: self.off(),
            table: t.clone(),
            before: Some(before),
            after,
        })
    }
    fn delete(&mut self, t: &Arc<TableSchema>, before: Row) -> ChangeEvent {
        ChangeEvent::Delete(Delete {
            offset: self.off(),
            table: t.clone(),
            before,
        })
    }
}

fn mappings(text: &str) -> Vec<MappingConfig> {
    #[derive(serde::Deserialize)]
    struct M {
        mapping: Vec<MappingConfig>,
    }
    toml::from_str::<M>(text).unwrap().mapping
}

async fn run(
    maps: &[MappingConfig],
    chunks: Vec<Vec<ChangeEvent>>,
    opts: PipelineOptions,
    apply_delay: Duration,
) -> (engine::Result<RunOutcome>, Log) {
    let (res, log, _) = run_with_stats(maps, chunks, opts, apply_delay).await;
    (res, log)
}

async fn run_with_stats(
    maps: &[MappingConfig],
    chunks: Vec<Vec<ChangeEvent>>,
    opts: PipelineOptions,
    apply_delay: Duration,
) -> (engine::Result<RunOutcome>, Log, StatsHandle) {
    let log = Log::default();
    let router = TableRouter::try_new(maps).unwrap();
    let stats = router.stats_handle();
    let sink = RecordingSink {
        log: log.clone(),
        apply_delay,
    };
    let result = run_pipeline(
        "t",
        ScriptedSource(chunks),
        sink,
        Arc::new(MemStore::default()),
        router,
        opts,
        Arc::new(TaskStats::default()),
        CancellationToken::new(),
    )
    .await;
    (result, log, stats)
}

fn opts() -> PipelineOptions {
    PipelineOptions {
        batch_size: 10_000,
        batch_bytes: 1 << 30,
        batch_timeout: Duration::from_secs(60),
        queue_chunks: 64,
        chunk_events: 1024,
        chunk_bytes: 1 << 20,
        guard: None,
    }
}

#[tokio::test]
async fn snapshot_and_stream_are_mapped_alike_and_split_by_the_mappings_batch_size() {
    let t = schema("accounts");
    let maps = mappings(
        r#"
[[mapping]]
source = "public.accounts"
target = "crm.accounts"
row_filter_condition = "status = 'ACTIVE'"
transform_rules = [{ column = "status", transform_type = "LOWER" }]
conflict_resolution = "IGNORE"
batch_size = 3
"#,
    );
    let mut ev = Events { lsn: 0 };
    let snap: Vec<Row> = (1..=8)
        .map(|i| row(i, if i % 4 == 0 { "CLOSED" } else { "ACTIVE" }))
        .collect();
    let chunks = vec![
        vec![ChangeEvent::SnapshotChunk(SnapshotChunk {
            table: t.clone(),
            rows: snap,
            progress: TableSnapshotProgress::default(),
        })],
        vec![ChangeEvent::SnapshotDone(SnapshotDone {
            consistent_point: Offset::postgres(Lsn(1), 0),
        })],
        {
            let changes = vec![
                ev.insert(&t, row(20, "ACTIVE")),
                ev.insert(&t, row(21, "CLOSED")),
                ev.update(&t, row(1, "ACTIVE"), row(1, "CLOSED")),
                ev.update(&t, row(4, "CLOSED"), row(4, "ACTIVE")),
                ev.delete(&t, row(4, "ACTIVE")),
                ev.delete(&t, row(8, "CLOSED")),
            ];
            ev.txn(changes)
        },
    ];
    let (res, log, stats) = run_with_stats(&maps, chunks, opts(), Duration::ZERO).await;
    assert_eq!(res.unwrap(), RunOutcome::Completed);
    // 6 snapshot rows, then 4 changes written (21 and 8 filtered out).
    let m = &stats.mappings()[0];
    assert_eq!(m.total_rows_synced, 10);
    assert!(m.last_sync_time.is_some());
    let applies = log.applies();
    assert!(applies.iter().all(|(t, u, d, p)| t == "crm.accounts"
        && u.len() + d.len() <= 3
        && *p == ConflictPolicy::Ignore));
    // Snapshot: 6 of 8 rows pass the filter, written 3 per write, lowercased.
    let snapshot_rows: Vec<Row> = applies[..2].iter().flat_map(|a| a.1.clone()).collect();
    assert_eq!(snapshot_rows.len(), 6);
    assert_eq!(snapshot_rows[0], row(1, "active"));
    // Stream: insert 20; 21 filtered; 1 moved out (delete); 4 moved in (an
    // insert, in the first write of 3 rows) then deleted (the next write);
    // 8 was never in (nothing).
    let upserts: Vec<Row> = applies[2..].iter().flat_map(|a| a.1.clone()).collect();
    let deletes: Vec<Row> = applies[2..].iter().flat_map(|a| a.2.clone()).collect();
    assert_eq!(upserts, vec![row(20, "active"), row(4, "active")]);
    let mut del_ids: Vec<_> = deletes.iter().map(|r| r[0].clone()).collect();
    del_ids.sort_by_key(|v| format!("{v:?}"));
    assert_eq!(del_ids, vec![Value::Int64(1), Value::Int64(4)]);
}

#[tokio::test]
async fn a_mappings_batch_timeout_commits_sooner_under_backlog() {
    let t = schema("t");
    let mk = |timeout: &str| {
        mappings(&format!(
            "[[mapping]]\nsource = \"public.t\"\nbatch_size = 1\n{timeout}"
        ))
    };
    let chunks = |ev: &mut Events| -> Vec<Vec<ChangeEvent>> {
        (0..10)
            .map(|i| {
                let c = vec![ev.insert(&t, row(i, "x"))];
                ev.txn(c)
            })
            .collect()
    };
    let delay = Duration::from_millis(30);
    let (res, slow) = run(&mk(""), chunks(&mut Events { lsn: 0 }), opts(), delay).await;
    res.unwrap();
    let (res, fast) = run(
        &mk("batch_timeout_ms = 40"),
        chunks(&mut Events { lsn: 0 }),
        opts(),
        delay,
    )
    .await;
    res.unwrap();
    let (a, b) = (slow.count(&Call::Commit), fast.count(&Call::Commit));
    assert!(
        a <= 2,
        "without a mapping timeout the backlog is one batch: {a} commits"
    );
    assert!(
        b >= 4,
        "a 40 ms mapping timeout commits every couple of writes: {b} commits"
    );
    // batch_size = 1: one row per write.
    assert_eq!(fast.applies().len(), 10);
}

#[tokio::test]
async fn truncates_are_kept_from_shared_and_kept_row_targets() {
    let maps = mappings(
        r#"
[[mapping]]
source = "public.shard_*"
target = "public.all_shards"
[[mapping]]
source = "public.archive"
conflict_resolution = "INSERT_ONLY"
[[mapping]]
source = "public.plain"
"#,
    );
    let (s1, a, p) = (schema("shard_1"), schema("archive"), schema("plain"));
    let mut ev = Events { lsn: 0 };
    let tr = ChangeEvent::Truncate(Truncate {
        offset: ev.off(),
        tables: vec![s1, a, p],
    });
    let chunks = vec![ev.txn(vec![tr])];
    let (res, log) = run(&maps, chunks, opts(), Duration::ZERO).await;
    res.unwrap();
    let truncs: Vec<_> = log
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Truncate(_)))
        .collect();
    assert_eq!(truncs, vec![Call::Truncate("public.plain".into())]);
}

#[tokio::test]
async fn failing_scripts_stop_the_task_and_roll_back() {
    let maps = mappings(
        r#"
[[mapping]]
source = "public.t"
[[mapping.script]]
script_name = "guard"
script_type = "JAVASCRIPT"
trigger_phase = "AFTER_WRITE"
script_content = "function transform(r) { if (r.status === 'bad') throw new TypeError('bad row'); return r; }"
"#,
    );
    let t = schema("t");
    let mut ev = Events { lsn: 0 };
    let c = vec![ev.insert(&t, row(1, "ok")), ev.insert(&t, row(2, "bad"))];
    let (res, log) = run(&maps, vec![ev.txn(c)], opts(), Duration::ZERO).await;
    let e = res.unwrap_err().to_string();
    assert!(
        e.contains("transform script \"guard\" of mapping public.t failed"),
        "{e}"
    );
    assert_eq!(log.count(&Call::Commit), 0);
    assert_eq!(log.count(&Call::Rollback), 1);
}

/// Allows `commits` target commits, then refuses (a lost lease); counts throttled rows.
#[derive(Debug)]
struct CountingGuard {
    commits: Mutex<usize>,
    throttled: Mutex<u64>,
}

impl engine::TaskGuard for CountingGuard {
    fn throttle(&self, rows: u64) -> engine::GuardFuture<'_> {
        *self.throttled.lock().unwrap() += rows;
        Box::pin(async {})
    }
    fn may_commit(&self) -> engine::Result<()> {
        let mut left = self.commits.lock().unwrap();
        if *left == 0 {
            return Err(engine::Error::Pipeline("lease lost".into()));
        }
        *left -= 1;
        Ok(())
    }
}

#[tokio::test]
async fn a_guard_throttles_every_write_and_fences_commits() {
    let t = schema("t");
    let mut ev = Events { lsn: 0 };
    let first = {
        let c = vec![ev.insert(&t, row(1, "a")), ev.insert(&t, row(2, "b"))];
        ev.txn(c)
    };
    let first_resume = match first.last() {
        Some(ChangeEvent::Commit(c)) => c.resume.clone(),
        _ => unreachable!(),
    };
    let second = {
        let c = vec![ev.insert(&t, row(3, "c"))];
        ev.txn(c)
    };
    let guard = Arc::new(CountingGuard {
        commits: Mutex::new(1),
        throttled: Mutex::new(0),
    });
    let mut o = opts();
    o.batch_timeout = Duration::ZERO;
    o.guard = Some(guard.clone());
    let log = Log::default();
    let store = Arc::new(MemStore::default());
    let sink = RecordingSink {
        log: log.clone(),
        apply_delay: Duration::from_millis(20),
    };
    let err = run_pipeline(
        "t",
        ScriptedSource(vec![first, second]),
        sink,
        store.clone(),
        TableRouter::try_new(&mappings("[[mapping]]\nsource = \"public.t\"")).unwrap(),
        o,
        Arc::new(TaskStats::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("lease lost"), "{err}");
    // The first transaction committed and checkpointed; the second was rolled back
    // and the checkpoint stayed at the first.
    assert_eq!(log.count(&Call::Commit), 1, "{:?}", log.calls());
    assert_eq!(log.count(&Call::Rollback), 1, "{:?}", log.calls());
    let cp = store.load("t").unwrap().unwrap();
    assert_eq!(cp.stream, Some(first_resume));
    assert_eq!(*guard.throttled.lock().unwrap(), 3);
}

/// Sends its events, then waits (sending nothing more) for their acknowledgement.
struct AckWaitingSource(Vec<ChangeEvent>, Arc<Mutex<Option<Offset>>>);

impl Source for AckWaitingSource {
    async fn run(self, mut ctx: SourceContext) -> engine::Result<()> {
        for e in self.0 {
            ctx.events.push(e).await?;
        }
        ctx.events.flush().await?;
        let acked = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Some(o) = ctx.acked.borrow().clone() {
                    return Some(o);
                }
                if ctx.acked.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten();
        *self.1.lock().unwrap() = acked;
        Ok(())
    }
}

#[tokio::test]
async fn a_commit_is_acknowledged_without_waiting_for_more_events() {
    let t = schema("t");
    let mut ev = Events { lsn: 0 };
    let txn = {
        let c = vec![ev.insert(&t, row(1, "a"))];
        ev.txn(c)
    };
    let resume = match txn.last() {
        Some(ChangeEvent::Commit(c)) => c.resume.clone(),
        _ => unreachable!(),
    };
    let seen = Arc::new(Mutex::new(None));
    let mut o = opts();
    o.batch_timeout = Duration::ZERO;
    let sink = RecordingSink {
        log: Log::default(),
        apply_delay: Duration::ZERO,
    };
    run_pipeline(
        "t",
        AckWaitingSource(txn, seen.clone()),
        sink,
        Arc::new(MemStore::default()),
        TableRouter::try_new(&mappings("[[mapping]]\nsource = \"public.t\"")).unwrap(),
        o,
        Arc::new(TaskStats::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        Some(resume),
        "the source never saw its acknowledgement while idle"
    );
}

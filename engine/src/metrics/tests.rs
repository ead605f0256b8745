use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use tokio::sync::mpsc;

use super::*;
use crate::contracts::EventSender;
use crate::event::{Heartbeat, Insert, SnapshotChunk};
use crate::position::{Lsn, Offset, TableSnapshotProgress};
use crate::schema::{ColumnSchema, Dialect, TableId};
use crate::value::{DataType, Value};

const ALL_NAMES: &[&str] = &[
    CHANGES_READ,
    CHANGES_APPLIED,
    READ_BYTES,
    TRANSACTIONS_APPLIED,
    BATCH_ROWS,
    APPLY_DURATION,
    LAG,
    END_TO_END_LATENCY,
    SOURCE_LAG_BYTES,
    SLOT_RETAINED_WAL,
    QUEUE_DEPTH,
    QUEUE_CAPACITY,
    BACKPRESSURE_WAIT,
    SNAPSHOT_COPIED_ROWS,
    SNAPSHOT_ESTIMATED_ROWS,
    SNAPSHOT_TABLES,
    SNAPSHOT_DONE_TABLES,
    CHECKPOINT_AGE,
    LAST_CHECKPOINT,
    ERRORS,
    TASK_STATE,
    TASK_HEALTH,
    ROCKSDB_SIZE,
    OPEN_CONNECTIONS,
    PROCESS_CPU,
    PROCESS_RESIDENT_MEMORY,
];

fn recorder() -> PrometheusRecorder {
    let mut b = PrometheusBuilder::new();
    for (name, buckets) in HISTOGRAMS {
        b = b
            .set_buckets_for_metric(Matcher::Full((*name).to_string()), buckets)
            .unwrap();
    }
    b.build_recorder()
}

fn table(name: &str) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id: TableId::new("public", name),
        columns: vec![ColumnSchema {
            name: "id".into(),
            data_type: DataType::Int32,
            nullable: false,
            native_type: "integer".into(),
            default: None,
        }],
        key: vec![0],
        dialect: Dialect::Postgres,
    })
}

/// The value of the first rendered line starting with `series` (name and labels as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn names_follow_the_convention() {
    let mut seen = std::collections::HashSet::new();
    for name in ALL_NAMES {
        assert!(seen.insert(*name), "{name} is defined twice");
        assert!(name.starts_with("dbsync_"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
        let counter = [
            CHANGES_READ,
            CHANGES_APPLIED,
            READ_BYTES,
            TRANSACTIONS_APPLIED,
            ERRORS,
        ]
        .contains(name);
        assert_eq!(
            counter,
            name.ends_with("_total") && *name != PROCESS_CPU,
            "{name}"
        );
    }
    for (name, buckets) in HISTOGRAMS {
        assert!(ALL_NAMES.contains(name));
        assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{name} buckets");
    }
}

#[test]
fn error_kinds_are_bounded_and_cover_every_error() {
    let errors = [
        Error::source_transient("x"),
        Error::source_definite("x"),
        Error::sink_transient("x"),
        Error::sink_definite("x"),
        Error::Checkpoint("x".into()),
        Error::Config("x".into()),
        Error::Pipeline("x".into()),
    ];
    let kinds: std::collections::HashSet<_> = errors.iter().map(error_kind).collect();
    assert_eq!(kinds.len(), ERROR_KINDS.len());
    assert!(kinds.iter().all(|k| ERROR_KINDS.contains(k)));
}

#[test]
fn applied_counts_group_by_table_and_op() {
    let orders = table("orders");
    let orders_again = table("orders"); // same id, other Arc
    let items = table("items");
    let mut c = AppliedCounts::default();
    c.add(&orders, Op::Insert, 1);
    c.add(&orders, Op::Insert, 1);
    c.add(&items, Op::Delete, 1);
    c.add(&orders_again, Op::Update, 2);
    c.add(&items, Op::Snapshot, 10);
    let got: Vec<(String, [u64; 5])> = c.iter().map(|(t, n)| (t.id.to_string(), n.0)).collect();
    assert_eq!(
        got,
        vec![
            ("public.orders".to_string(), [2, 2, 0, 0, 0]),
            ("public.items".to_string(), [0, 0, 1, 0, 10]),
        ]
    );
}

#[test]
fn a_commit_renders_counters_histograms_and_lag() {
    let rec = recorder();
    let orders = table("orders");
    let _open = metrics::with_local_recorder(&rec, || {
        let mut m = TaskMetrics::new("t1");
        let mut applied = AppliedCounts::default();
        applied.add(&orders, Op::Insert, 3);
        applied.add(&orders, Op::Delete, 1);
        m.record_commit(&CommitRecord {
            rows: 4,
            transactions: 2,
            sink_time: Duration::from_millis(3),
            lag: Some(Duration::from_millis(1500)),
            applied: &applied,
        });
        m.queue(3, 16);
        m.snapshot_copied("public.orders", 1000);
        m.snapshot_done_tables(1);
        register_errors("t1");
        record_error("t1", &Error::source_transient("reset"));
        let open = ConnectionGuard::open("t1", ConnectionRole::Target);
        drop(ConnectionGuard::open("t1", ConnectionRole::Target));
        open
    });
    let text = rec.handle().render();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        v(r#"dbsync_changes_applied_total{task="t1",table="public.orders",op="insert"}"#),
        3.0
    );
    assert_eq!(
        v(r#"dbsync_changes_applied_total{task="t1",table="public.orders",op="delete"}"#),
        1.0
    );
    assert_eq!(v(r#"dbsync_transactions_applied_total{task="t1"}"#), 2.0);
    assert_eq!(v(r#"dbsync_batch_rows_bucket{task="t1",le="5"}"#), 1.0);
    assert_eq!(v(r#"dbsync_batch_rows_bucket{task="t1",le="2"}"#), 0.0);
    assert_eq!(v(r#"dbsync_apply_duration_seconds_count{task="t1"}"#), 1.0);
    assert_eq!(
        v(r#"dbsync_end_to_end_latency_seconds_bucket{task="t1",le="2.5"}"#),
        1.0
    );
    assert_eq!(v(r#"dbsync_lag_seconds{task="t1"}"#), 1.5);
    assert_eq!(v(r#"dbsync_queue_depth_chunks{task="t1"}"#), 3.0);
    assert_eq!(v(r#"dbsync_queue_capacity_chunks{task="t1"}"#), 16.0);
    assert_eq!(
        v(r#"dbsync_snapshot_copied_rows{task="t1",table="public.orders"}"#),
        1000.0
    );
    assert_eq!(v(r#"dbsync_snapshot_done_tables{task="t1"}"#), 1.0);
    assert_eq!(
        v(r#"dbsync_errors_total{task="t1",kind="source_transient"}"#),
        1.0
    );
    assert_eq!(
        v(r#"dbsync_errors_total{task="t1",kind="target_definite"}"#),
        0.0
    );
    assert_eq!(
        v(r#"dbsync_open_connections{task="t1",role="target"}"#),
        1.0
    );
    // No row values, keys or positions in labels: only the known label names.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(labels) = line.split_once('{').map(|(_, l)| l) {
            for pair in labels.split("\",") {
                let name = pair.split('=').next().unwrap().trim_start_matches(',');
                assert!(
                    [
                        LABEL_TASK,
                        LABEL_TABLE,
                        LABEL_OP,
                        LABEL_KIND,
                        LABEL_ROLE,
                        "le"
                    ]
                    .contains(&name),
                    "unexpected label {name} in {line}"
                );
            }
        }
    }
}

fn insert(t: &Arc<TableSchema>, id: i32) -> ChangeEvent {
    ChangeEvent::Insert(Insert {
        offset: Offset::postgres(Lsn(100), id as u64),
        table: t.clone(),
        row: vec![Value::Int32(id)],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_sender_counts_reads_per_chunk_and_measures_backpressure() {
    let rec = recorder();
    let live = Arc::new(LiveStatus::default());
    let reporter = metrics::with_local_recorder(&rec, || SourceReporter::new("t1", live.clone()));
    let (tx, mut rx) = mpsc::channel(1);
    let mut events = EventSender::new(tx, 3, 1 << 20).with_reporter(reporter);
    let orders = table("orders");
    assert_eq!(live.phase(), SourcePhase::Starting);
    events
        .push(ChangeEvent::SnapshotChunk(SnapshotChunk {
            table: orders.clone(),
            rows: vec![vec![Value::Int32(1)], vec![Value::Int32(2)]],
            progress: TableSnapshotProgress::default(),
        }))
        .await
        .unwrap();
    events.flush().await.unwrap(); // fills the queue (capacity 1)
    assert_eq!(live.phase(), SourcePhase::Snapshotting);
    events.push(insert(&orders, 1)).await.unwrap();
    events.push(insert(&orders, 2)).await.unwrap();
    let receiver = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut n = 0;
        while let Some(chunk) = rx.recv().await {
            n += chunk.len();
        }
        n
    });
    events.flush().await.unwrap(); // waits for the receiver: backpressure
    assert!(events.blocked_time() >= Duration::from_millis(100));
    assert_eq!(live.phase(), SourcePhase::Streaming);
    events
        .push(ChangeEvent::Heartbeat(Heartbeat {
            resume: Offset::postgres(Lsn(200), 0),
        }))
        .await
        .unwrap();
    events.flush().await.unwrap();
    drop(events);
    assert_eq!(receiver.await.unwrap(), 4);
    let text = rec.handle().render();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        v(r#"dbsync_changes_read_total{task="t1",op="snapshot"}"#),
        2.0
    );
    assert_eq!(
        v(r#"dbsync_changes_read_total{task="t1",op="insert"}"#),
        2.0
    );
    assert_eq!(
        v(r#"dbsync_changes_read_total{task="t1",op="delete"}"#),
        0.0
    );
    assert!(v(r#"dbsync_read_bytes_total{task="t1"}"#) > 0.0);
    // At least the wait for the slow receiver (the next flush may wait briefly too).
    assert!(v(r#"dbsync_backpressure_wait_seconds_count{task="t1"}"#) >= 1.0);
    assert!(v(r#"dbsync_backpressure_wait_seconds_sum{task="t1"}"#) >= 0.1);
}

#[test]
fn source_reports_reach_the_live_status_and_the_gauges() {
    let rec = recorder();
    let live = Arc::new(LiveStatus::default());
    assert_eq!(live.lag_bytes(), None);
    assert_eq!(live.lag(), None);
    metrics::with_local_recorder(&rec, || {
        let r = SourceReporter::new("t1", live.clone());
        r.source_lag_bytes(4096);
        r.slot_retained_wal_bytes(8192);
        r.snapshot_tables(3);
        r.snapshot_estimated_rows("public.orders", 30_000);
        r.phase(SourcePhase::Streaming);
        r.phase(SourcePhase::Snapshotting); // never backward within a run
        let _c = r.connection(ConnectionRole::SourceReplication);
        // The no-op reporter records nothing and does not panic.
        let quiet = SourceReporter::default();
        quiet.source_lag_bytes(1);
        let _q = quiet.connection(ConnectionRole::Source);
    });
    assert_eq!(live.lag_bytes(), Some(4096));
    assert_eq!(live.retained_wal_bytes(), Some(8192));
    assert_eq!(live.snapshot_tables(), 3);
    assert_eq!(live.phase(), SourcePhase::Streaming);
    let text = rec.handle().render();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(v(r#"dbsync_source_lag_bytes{task="t1"}"#), 4096.0);
    assert_eq!(v(r#"dbsync_slot_retained_wal_bytes{task="t1"}"#), 8192.0);
    assert_eq!(v(r#"dbsync_snapshot_tables{task="t1"}"#), 3.0);
    assert_eq!(
        v(r#"dbsync_snapshot_estimated_rows{task="t1",table="public.orders"}"#),
        30000.0
    );
    assert_eq!(
        v(r#"dbsync_open_connections{task="t1",role="source_replication"}"#),
        0.0
    );
    assert!(!text.contains(r#"role="source""#), "{text}");
    // Registered histograms render before their first observation (dashboards read them).
    assert_eq!(
        v(r#"dbsync_backpressure_wait_seconds_count{task="t1"}"#),
        0.0
    );
}

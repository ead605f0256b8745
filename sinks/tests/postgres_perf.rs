//! Throughput of the PostgreSQL sink's apply strategies against a private
//! server. Prints rows/s (run with `--release -- --nocapture` for the
//! figures); asserts only that every strategy leaves the right rows.

mod common;

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use common::*;
use engine::{DataType, Row, Sink, TableChanges, TableSchema, Value};
use sinks::postgres::{DeleteStrategy, PgSinkOptions, PostgresSink, UpsertStrategy};

/// 100k rows for the figures; fewer in debug builds, which only check correctness.
const ROWS: i64 = if cfg!(debug_assertions) {
    20_000
} else {
    100_000
};
const BATCH: usize = 10_000;

fn bench_table(name: &str) -> Arc<TableSchema> {
    table(
        "public",
        name,
        vec![
            int8("id"),
            col("qty", DataType::Int32, "integer", true),
            col("note", DataType::Text { max_len: None }, "text", true),
            col(
                "price",
                DataType::Decimal {
                    precision: Some(12),
                    scale: Some(2),
                },
                "numeric(12,2)",
                true,
            ),
            col(
                "at",
                DataType::TimestampTz { precision: None },
                "timestamp with time zone",
                true,
            ),
        ],
        &[0],
    )
}

fn row(id: i64, version: i32) -> Row {
    vec![
        Value::Int64(id),
        Value::Int32(version),
        Value::Text(format!("order {id} of customer {} (v{version})", id % 977)),
        Value::Decimal(format!("{}.{:02}", id % 10_000, id % 100)),
        Value::TimestampTz(Utc.timestamp_opt(1_700_000_000 + id, 0).unwrap()),
    ]
}

/// Applies `total` rows in batches of `batch` rows, `per_txn` batches per
/// transaction; returns rows/s.
async fn run(
    s: &mut PostgresSink,
    t: &Arc<TableSchema>,
    batch: usize,
    per_txn: usize,
    total: i64,
    make: impl Fn(&[i64]) -> TableChanges,
) -> f64 {
    let ids: Vec<i64> = (1..=total).collect();
    let batches: Vec<TableChanges> = ids.chunks(batch).map(&make).collect();
    let start = Instant::now();
    for txn in batches.chunks(per_txn) {
        s.begin().await.unwrap();
        for ch in txn {
            s.apply(ch).await.unwrap();
        }
        s.commit().await.unwrap();
    }
    let _ = t;
    total as f64 / start.elapsed().as_secs_f64()
}

async fn sum_qty(c: &tokio_postgres::Client, name: &str) -> (i64, i64) {
    let r = rows(
        c,
        &format!("SELECT count(*), coalesce(sum(qty), 0) FROM {name}"),
    )
    .await;
    (
        r[0][0].as_ref().unwrap().parse().unwrap(),
        r[0][1].as_ref().unwrap().parse().unwrap(),
    )
}

fn opts(upsert: UpsertStrategy, delete: DeleteStrategy) -> PgSinkOptions {
    PgSinkOptions {
        upsert,
        delete,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_strategy_figures() {
    let pg = server().await;
    let c = client(&pg).await;
    let mut report = Vec::new();
    let k = ROWS / 1000;
    let cases = [
        ("copy", UpsertStrategy::Copy, DeleteStrategy::Unnest),
        (
            "insert-values",
            UpsertStrategy::InsertValues,
            DeleteStrategy::CopyStage,
        ),
    ];
    for (name, upsert, delete) in cases {
        let t = bench_table(&name.replace('-', "_"));
        let tn = t.id.name.clone();
        let mut s = sink_with(&pg, opts(upsert, delete)).await;
        s.begin().await.unwrap();
        s.ensure_table(&t).await.unwrap();
        s.commit().await.unwrap();

        let tt = t.clone();
        let r = run(&mut s, &t, BATCH, 10, ROWS, |ids| {
            upserts(&tt, ids.iter().map(|&i| row(i, 1)).collect(), true)
        })
        .await;
        assert_eq!(sum_qty(&c, &tn).await, (ROWS, ROWS));
        report.push(format!(
            "{name:>14} upsert {k}k new keys (likely_new): {r:>9.0} rows/s"
        ));

        let r = run(&mut s, &t, BATCH, 10, ROWS, |ids| {
            upserts(&tt, ids.iter().map(|&i| row(i, 2)).collect(), false)
        })
        .await;
        assert_eq!(sum_qty(&c, &tn).await, (ROWS, 2 * ROWS));
        report.push(format!(
            "{name:>14} upsert {k}k conflicting keys:    {r:>9.0} rows/s"
        ));

        let r = run(&mut s, &t, BATCH, 10, ROWS, |ids| {
            deletes(&tt, ids.iter().map(|&i| vec![Value::Int64(i)]).collect())
        })
        .await;
        assert_eq!(sum_qty(&c, &tn).await, (0, 0));
        let dname = format!("{delete:?}");
        report.push(format!(
            "{dname:>14} delete {k}k keys:                {r:>9.0} rows/s"
        ));

        // New keys through the staging merge (likely_new = false).
        let r = run(&mut s, &t, BATCH, 10, ROWS, |ids| {
            upserts(&tt, ids.iter().map(|&i| row(i, 3)).collect(), false)
        })
        .await;
        assert_eq!(sum_qty(&c, &tn).await, (ROWS, 3 * ROWS));
        report.push(format!(
            "{name:>14} upsert {k}k new keys (merge):    {r:>9.0} rows/s"
        ));

        let (n, _) = sum_qty(&c, &tn).await;
        assert_eq!(n, ROWS);
        c.batch_execute(&format!("DROP TABLE {tn}")).await.unwrap();
    }
    // The default (Auto) choice on the same workloads.
    let t = bench_table("auto");
    let tt = t.clone();
    let mut s = sink(&pg).await;
    for batch in [10usize, 1000, BATCH] {
        let r = run(&mut s, &t, batch, 1, (batch as i64 * 50).min(ROWS), |ids| {
            upserts(&tt, ids.iter().map(|&i| row(i, 5)).collect(), false)
        })
        .await;
        report.push(format!(
            "{:>14} upsert batches of {batch:>5} rows, 1 per txn: {r:>9.0} rows/s",
            "auto"
        ));
    }
    assert_eq!(sum_qty(&c, "auto").await, (ROWS, 5 * ROWS));
    println!(
        "\napply strategy figures ({} build):",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for line in report {
        println!("  {line}");
    }
}

/// Batch size against strategy, one batch per transaction: new keys
/// (`likely_new`), then the same keys again (all conflicting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_figures() {
    let pg = server().await;
    let c = client(&pg).await;
    let mut report = Vec::new();
    for batch in [1usize, 10, 100, 300, 1000, 3000, 10_000] {
        let total = (batch as i64 * 100).clamp(1000, ROWS / 2);
        let mut line = format!("batch {batch:>5}:");
        for (name, upsert) in [
            ("copy", UpsertStrategy::Copy),
            ("values", UpsertStrategy::InsertValues),
            ("auto", UpsertStrategy::Auto),
        ] {
            let t = bench_table(&format!("m_{name}_{batch}"));
            let tt = t.clone();
            let mut s = sink_with(&pg, opts(upsert, DeleteStrategy::Unnest)).await;
            let new = run(&mut s, &t, batch, 1, total, |ids| {
                upserts(&tt, ids.iter().map(|&i| row(i, 1)).collect(), true)
            })
            .await;
            let upd = run(&mut s, &t, batch, 1, total, |ids| {
                upserts(&tt, ids.iter().map(|&i| row(i, 2)).collect(), false)
            })
            .await;
            assert_eq!(sum_qty(&c, &t.id.name).await, (total, 2 * total));
            line.push_str(&format!("  {name} new {new:>7.0} upd {upd:>7.0}"));
        }
        for (name, delete) in [
            ("unnest", DeleteStrategy::Unnest),
            ("stage", DeleteStrategy::CopyStage),
        ] {
            let t = bench_table(&format!("d_{name}_{batch}"));
            let tt = t.clone();
            let mut s = sink_with(&pg, opts(UpsertStrategy::Auto, delete)).await;
            run(&mut s, &t, 10_000, 1, total, |ids| {
                upserts(&tt, ids.iter().map(|&i| row(i, 1)).collect(), true)
            })
            .await;
            let del = run(&mut s, &t, batch, 1, total, |ids| {
                deletes(&tt, ids.iter().map(|&i| vec![Value::Int64(i)]).collect())
            })
            .await;
            assert_eq!(sum_qty(&c, &t.id.name).await, (0, 0));
            line.push_str(&format!("  del-{name} {del:>7.0}"));
        }
        report.push(line);
    }
    println!(
        "\nrows/s by batch size, one batch per transaction ({} build):",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for line in report {
        println!("  {line}");
    }
}

//! Measures the MySQL sink's upsert strategies against a private MariaDB:
//! 100k new keys and 100k all-conflicting updates, in batches of 10000, 5000,
//! 1000 and 100 rows (20k rows for 100), for `INSERT ... ON DUPLICATE KEY UPDATE` with bound
//! parameters and for `LOAD DATA LOCAL INFILE` (direct, or stage + merge).
//! Prints rows/s and CPU microseconds per row (this process plus mariadbd,
//! from `/proc`; steadier than wall time on a busy machine) — run with
//! `--nocapture`; asserts only correctness.

mod mysql_support;

use std::time::Instant;

use chrono::{TimeZone, Utc};
use engine::{DataType, Row, Sink, Value};
use mysql_support::*;
use sinks::mysql::{MysqlSinkOptions, UpsertStrategy};

const ROWS: i64 = 100_000;

/// CPU time (user + system) of a process in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesized command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn server_pid(db: &testkit::MariaDbServer) -> String {
    std::fs::read_to_string(db.data_dir().join("mysqld.pid"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// One measurement: rows/s and CPU µs/row, for new keys and for conflicts.
#[derive(Clone, Copy, Default)]
struct Figures {
    rate: [f64; 2],
    cpu_us: [f64; 2],
}

fn row(id: i64, round: i64) -> Row {
    vec![
        Value::Int64(id),
        Value::Text(format!("name {id} round {round}")),
        Value::Decimal(format!("{}.{:02}", id % 100_000, (id + round) % 100)),
        Value::TimestampTz(
            Utc.timestamp_micros(1_700_000_000_000_000 + id * 1000 + round)
                .unwrap(),
        ),
    ]
}

async fn run(
    db: &testkit::MariaDbServer,
    name: &str,
    upsert: UpsertStrategy,
    batch: usize,
    total: i64,
) -> Figures {
    let t = table(
        name,
        vec![
            int8("id"),
            col(
                "name",
                DataType::Text { max_len: Some(64) },
                "varchar(64)",
                true,
            ),
            col(
                "price",
                DataType::Decimal {
                    precision: Some(10),
                    scale: Some(2),
                },
                "numeric(10,2)",
                true,
            ),
            col(
                "ts",
                DataType::TimestampTz { precision: Some(6) },
                "timestamp(6) with time zone",
                true,
            ),
        ],
        &[0],
    );
    let mut sink = sink_with(
        db,
        MysqlSinkOptions {
            upsert,
            ..Default::default()
        },
    )
    .await;
    let mut fig = Figures::default();
    let server = server_pid(db);
    for (round, likely_new) in [(0, true), (1, false)] {
        let all: Vec<Row> = (0..total).map(|id| row(id, round)).collect();
        let batches: Vec<_> = all
            .chunks(batch)
            .map(|chunk| upserts(&t, chunk.to_vec(), likely_new))
            .collect();
        sink.begin().await.unwrap();
        sink.ensure_table(&t).await.unwrap();
        let start = Instant::now();
        let cpu = cpu_ticks("self") + cpu_ticks(&server);
        for changes in &batches {
            sink.apply(changes).await.unwrap();
        }
        sink.commit().await.unwrap();
        let r = round as usize;
        fig.rate[r] = total as f64 / start.elapsed().as_secs_f64();
        let ticks = cpu_ticks("self") + cpu_ticks(&server) - cpu;
        fig.cpu_us[r] = ticks as f64 * 10_000.0 / total as f64;
    }
    // Correctness: every row holds the second round's values.
    let mut c = client(db).await;
    let bad = scalar(
        &mut c,
        &format!(
            "SELECT count(*) FROM target.{name} WHERE name <> concat('name ', id, ' round 1') \
             OR ts <> TIMESTAMP'1970-01-01 00:00:00' \
             + INTERVAL (1700000000000000 + id * 1000 + 1) MICROSECOND"
        ),
    )
    .await;
    assert_eq!(bad.as_deref(), Some("0"), "{name}");
    assert_eq!(
        count(&mut c, &format!("target.{name}")).await,
        total,
        "{name}"
    );
    let sum = scalar(
        &mut c,
        &format!("SELECT sum(price * 100) FROM target.{name}"),
    )
    .await
    .unwrap();
    let want: i64 = (0..total)
        .map(|id| (id % 100_000) * 100 + (id + 1) % 100)
        .sum();
    assert_eq!(sum.split('.').next().unwrap(), want.to_string(), "{name}");
    fig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_strategies_measured() {
    let db = server();
    // DBSYNC_PERF_REPS repeats each measurement more often on a busy machine
    // (default: 3 in release builds, where figures mean something; 1 otherwise).
    let reps: usize = std::env::var("DBSYNC_PERF_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 1 } else { 3 })
        .max(1);
    let mut report = format!(
        "\nMySQL sink upserts into MariaDB (rows/s, best of {reps}; new keys / all-conflicting updates)\n"
    );
    for batch in [10_000usize, 5_000, 1_000, 100] {
        let total = if batch == 100 { ROWS / 5 } else { ROWS };
        let strategies = [
            ("insert_values", UpsertStrategy::InsertValues),
            ("load_data", UpsertStrategy::LoadData),
            ("auto", UpsertStrategy::Auto),
        ];
        let mut best = [Figures {
            rate: [0.0; 2],
            cpu_us: [f64::MAX; 2],
        }; 3];
        // Interleaved repetitions: a busy machine slows every strategy alike.
        for rep in 0..reps {
            for (i, (label, upsert)) in strategies.iter().enumerate() {
                let name = format!("perf_{label}_{batch}_{rep}");
                let f = run(&db, &name, *upsert, batch, total).await;
                for r in 0..2 {
                    best[i].rate[r] = best[i].rate[r].max(f.rate[r]);
                    best[i].cpu_us[r] = best[i].cpu_us[r].min(f.cpu_us[r]);
                }
            }
        }
        for ((label, _), f) in strategies.iter().zip(best) {
            report.push_str(&format!(
                "  batch {batch:>5} {label:<13} {total:>6} rows: new {:>7.0}/s {:>5.1} µs cpu/row   \
                 conflicting {:>7.0}/s {:>5.1} µs cpu/row\n",
                f.rate[0], f.cpu_us[0], f.rate[1], f.cpu_us[1]
            ));
        }
    }
    eprintln!("{report}");
}

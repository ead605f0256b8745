//! End-to-end cost of a mapping: the `dbsync` binary replicating the same
//! backlog with an identity mapping and with a typical one (5 renames, a row
//! filter that keeps every row, 3 transform rules), between two private
//! PostgreSQL servers.
//!
//! Two measurements per mapping: the initial copy (`FULL_ONLY`, timed until
//! the process ends) and the stream (`INCREMENTAL_ONLY`: slots are created
//! first, the backlog is written while dbsync is stopped, then each task is
//! timed until its target holds every row). Each is taken `DBSYNC_MAPPING_BENCH_RUNS`
//! times (default 3), alternating, and the best is kept.
//!
//! `cargo bench --bench mapping`; `DBSYNC_MAPPING_BENCH_ROWS` sets the rows
//! (default 500000).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use testkit::{PgOptions, PgServer};
use tokio_postgres::Client;

const DDL: &str = "CREATE TABLE public.customers (id bigint PRIMARY KEY, name text, email text, \
    phone text, price numeric(10,2), status text, qty int, created_at timestamptz)";
const ROW: &str = "g, 'customer ' || g, 'user' || g || '@example.com', \
    '138-' || lpad((g % 10000)::text, 4, '0') || '-' || lpad((g * 7 % 10000)::text, 4, '0'), \
    (g % 100000) / 100.0, CASE WHEN g % 10 = 0 THEN 'NEW' ELSE 'ACTIVE' END, (g % 50)::int, \
    timestamptz '2024-01-01' + g * interval '1 second'";

const IDENTITY: &str = "[[task.mapping]]\nsource = \"public.customers\"\n";
const TYPICAL: &str = r#"[[task.mapping]]
source = "public.customers"
column_mappings = [
  { source_column = "name", target_column = "full_name" },
  { source_column = "email", target_column = "mail" },
  { source_column = "phone", target_column = "tel" },
  { source_column = "price", target_column = "amount" },
  { source_column = "qty", target_column = "quantity" },
]
row_filter_condition = "status IN ('ACTIVE', 'NEW') AND price >= 0"
transform_rules = [
  { column = "phone", transform_type = "MASK", params = { pattern = "***-****-####" } },
  { column = "price", transform_type = "MULTIPLY", params = { factor = 1.1 } },
  { column = "name", transform_type = "UPPER" },
]
"#;

type R<T> = Result<T, String>;

fn config(dir: &Path, task: &str, mode: &str, src: &str, dst: &str, mapping: &str) -> R<PathBuf> {
    let text = format!(
        "[daemon]\ndata_dir = \"{}\"\n[daemon.admin]\nenabled = false\n\n[[task]]\nname = \"{task}\"\n\
         sync_mode = \"{mode}\"\n[task.source]\ntype = \"postgresql\"\nurl = \"{src}\"\n\
         status_interval_secs = 1\n[task.target]\ntype = \"postgresql\"\nurl = \"{dst}\"\n\n{mapping}",
        dir.join(format!("data-{task}")).display()
    );
    let path = dir.join(format!("{task}.toml"));
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

fn spawn(cfg: &Path, log: &Path) -> R<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    Command::new(env!("CARGO_BIN_EXE_dbsync"))
        .args(["run", "--config"])
        .arg(cfg)
        .env("DBSYNC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawning dbsync: {e}"))
}

fn stop(mut child: Child) -> R<()> {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    Ok(())
}

/// CPU seconds (user + system) a process used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, in clock ticks of 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

async fn count(c: &Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

async fn wait_for(c: &Client, table: &str, rows: i64, log: &Path) -> R<()> {
    let start = Instant::now();
    while count(c, table).await != rows {
        if start.elapsed() > Duration::from_secs(1800) {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{table} never reached {rows} rows:\n{log}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

struct Run {
    name: &'static str,
    mapping: &'static str,
    db: &'static str,
}

async fn bench(rows: i64, runs: usize) -> R<Vec<(String, f64, f64)>> {
    let src = PgServer::start(PgOptions::default());
    let dst = PgServer::start(PgOptions {
        logical: false,
        ..Default::default()
    });
    src.create_database("shop").await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let s = src.connect("shop").await;
    s.batch_execute(DDL).await.map_err(|e| e.to_string())?;
    s.batch_execute(&format!(
        "INSERT INTO customers SELECT {ROW} FROM generate_series(1, {rows}) g"
    ))
    .await
    .map_err(|e| e.to_string())?;
    let cases = [
        Run {
            name: "identity",
            mapping: IDENTITY,
            db: "t_identity",
        },
        Run {
            name: "typical",
            mapping: TYPICAL,
            db: "t_mapped",
        },
    ];
    let mut best_copy = [f64::MAX; 2];
    let mut best_stream = [f64::MAX; 2];
    let mut best_cpu = [f64::MAX; 2];
    // Stream slots (one task per mapping and run) exist before the backlog is written.
    for run in 0..runs {
        for (i, c) in cases.iter().enumerate() {
            let db = format!("{}_s{run}", c.db);
            dst.create_database(&db).await;
            let task = format!("stream{i}r{run}");
            let cfg = config(
                dir.path(),
                &task,
                "INCREMENTAL_ONLY",
                &src.url("shop"),
                &dst.url(&db),
                c.mapping,
            )?;
            let log = dir.path().join(format!("{task}.log"));
            let child = spawn(&cfg, &log)?;
            let start = Instant::now();
            while !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("streaming changes")
            {
                if start.elapsed() > Duration::from_secs(120) {
                    return Err(format!("{task} never started streaming"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            stop(child)?;
        }
    }
    // The backlog: `rows` more rows, 1000 per transaction.
    s.batch_execute(&format!(
        "DO $$ BEGIN FOR t IN 0..{} LOOP
           INSERT INTO customers SELECT {ROW}
             FROM generate_series({rows} + t * 1000 + 1, {rows} + t * 1000 + 1000) g;
           COMMIT; END LOOP; END $$",
        rows / 1000 - 1,
    ))
    .await
    .map_err(|e| e.to_string())?;
    for run in 0..runs {
        for (i, c) in cases.iter().enumerate() {
            // Initial copy.
            let db = format!("{}_{run}", c.db);
            dst.create_database(&db).await;
            let task = format!("copy{i}r{run}");
            let cfg = config(
                dir.path(),
                &task,
                "FULL_ONLY",
                &src.url("shop"),
                &dst.url(&db),
                c.mapping,
            )?;
            let started = Instant::now();
            let mut child = spawn(&cfg, &dir.path().join(format!("{task}.log")))?;
            let status = child.wait().map_err(|e| e.to_string())?;
            let secs = started.elapsed().as_secs_f64();
            if !status.success() {
                return Err(format!("{} copy ({task}) failed: {status}", c.name));
            }
            let d = dst.connect(&db).await;
            let copied = count(&d, "customers").await;
            if copied != 2 * rows {
                return Err(format!("{task} copied {copied} rows, not {}", 2 * rows));
            }
            best_copy[i] = best_copy[i].min(secs);
        }
    }
    for run in 0..runs {
        for (i, c) in cases.iter().enumerate() {
            let task = format!("stream{i}r{run}");
            let d = dst.connect(&format!("{}_s{run}", c.db)).await;
            let cfg = dir.path().join(format!("{task}.toml"));
            let log = dir.path().join(format!("{task}.log"));
            let started = Instant::now();
            let child = spawn(&cfg, &log)?;
            wait_for(&d, "customers", rows, &log).await?;
            best_stream[i] = best_stream[i].min(started.elapsed().as_secs_f64());
            best_cpu[i] = best_cpu[i].min(cpu_secs(child.id()));
            stop(child)?;
        }
    }
    let n = 2.0 * rows as f64;
    let out = vec![
        (
            "initial copy".to_string(),
            n / best_copy[0],
            n / best_copy[1],
        ),
        (
            "stream".to_string(),
            rows as f64 / best_stream[0],
            rows as f64 / best_stream[1],
        ),
        (
            "stream, rows per dbsync CPU second".to_string(),
            rows as f64 / best_cpu[0],
            rows as f64 / best_cpu[1],
        ),
    ];
    Ok(out)
}

fn main() -> ExitCode {
    let rows: i64 = std::env::var("DBSYNC_MAPPING_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000)
        .max(1000)
        / 1000
        * 1000;
    let runs: usize = std::env::var("DBSYNC_MAPPING_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(bench(rows, runs)) {
        Ok(results) => {
            println!("| path | identity rows/s | typical mapping rows/s | slowdown |");
            println!("|---|---|---|---|");
            for (what, id, mapped) in results {
                println!(
                    "| {what} | {:.0} | {:.0} | {:.1}% |",
                    id,
                    mapped,
                    (1.0 - mapped / id) * 100.0
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mapping bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

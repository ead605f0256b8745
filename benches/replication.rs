//! Replication throughput: dbsync against PostgreSQL's native logical
//! replication, on the same backlogs, in the same run.
//!
//! A source server (`wal_level=logical`) and a target server are started with
//! testkit. Every workload is generated on the source while all consumers are
//! stopped; then each consumer in turn (native subscription first, then
//! dbsync) is started and timed until its own target database reflects the
//! whole backlog, and stopped again. Each consumer reads its own slot, so all
//! of them consume the same WAL. After each measurement the target's row
//! digest must equal the source's.
//!
//! `DBSYNC_BENCH_SCALE` (default 1.0) scales the row counts,
//! `DBSYNC_BENCH_OUT` names a file that receives the markdown table too, and
//! `DBSYNC_BENCH_TUNED_BATCH` adds a second dbsync run with that `batch_size`.
//! See docs/BENCHMARKS.md.

use std::fmt::{Display, Write as _};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use testkit::{PgOptions, PgServer};
use tokio_postgres::Client;

type R<T> = Result<T, String>;

const SRC_DB: &str = "bench";
const NATIVE_DB: &str = "native_t";
const PUBLICATION: &str = "bench_pub";
const SUBSCRIPTION: &str = "bench_sub";
const TABLE_DDL: &str = "CREATE TABLE public.t (id bigint PRIMARY KEY, name varchar(100), \
                         price numeric(10,2), ts timestamp(6))";
/// The column values of row `g` (the generated rows are deterministic).
const ROW_EXPR: &str = "g, 'name-' || g, (g % 100000) / 100.0, \
                        timestamp '2024-01-01' + g * interval '1.234567 second'";
const TXN_ROWS: i64 = 1000;
const POLL: Duration = Duration::from_millis(25);
const TIMEOUT: Duration = Duration::from_secs(1800);
/// `/proc/PID/stat` times are in clock ticks of 1/100 s on Linux.
const CLK_TCK: f64 = 100.0;
const SNAPSHOT_DONE: &str = "snapshot complete";

trait Ctx<T> {
    fn ctx(self, what: impl Display) -> R<T>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: impl Display) -> R<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

async fn query_bool(c: &Client, sql: &str) -> R<bool> {
    let row = c.query_one(sql, &[]).await.ctx(sql)?;
    Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
}

async fn query_i64(c: &Client, sql: &str) -> R<i64> {
    let row = c.query_one(sql, &[]).await.ctx(sql)?;
    Ok(row.get::<_, Option<i64>>(0).unwrap_or(0))
}

/// Row count and an order-independent digest of `t`'s text form (no row values leave the server).
async fn digest(c: &Client) -> R<(i64, String)> {
    let sql =
        "SELECT count(*), coalesce(md5(string_agg(x::text, E'\\n' ORDER BY id)), '') FROM t x";
    let row = c.query_one(sql, &[]).await.ctx("digest of t")?;
    Ok((row.get(0), row.get(1)))
}

/// Row counts of each workload, scaled.
struct Sizes {
    initial: i64,
    inserts: i64,
    updates: i64,
    deletes: i64,
    singles: i64,
}

impl Sizes {
    fn new(scale: f64) -> Self {
        // Multiples of whole 1000-row transactions, at least one.
        let txns = |n: f64| ((n * scale / TXN_ROWS as f64).round() as i64).max(1) * TXN_ROWS;
        let updates = txns(200_000.0);
        let deletes = txns(100_000.0);
        Self {
            // Updates and deletes touch rows of the initial copy.
            initial: txns(1_000_000.0).max(updates + deletes),
            inserts: txns(500_000.0),
            updates,
            deletes,
            singles: ((20_000.0 * scale).round() as i64).max(10),
        }
    }
}

/// One backlog: generated on the source, then consumed by every consumer.
struct Workload {
    name: String,
    rows: i64,
    /// Run on the source (all consumers stopped) before the measurements.
    generate: String,
    /// A cheap check polled on a target; `None` for the initial copy, whose
    /// completion signal is the consumer's own (subscription state, log line).
    sentinel: Option<String>,
    /// The full check, run once the sentinel passes: the clock stops only
    /// when both pass.
    verify: String,
}

fn workloads(s: &Sizes) -> Vec<Workload> {
    let batches = |n: i64| n / TXN_ROWS - 1;
    let ins_lo = s.initial;
    let ins_hi = ins_lo + s.inserts;
    let after_deletes = ins_hi - s.deletes;
    let single_lo = ins_hi;
    let single_hi = single_lo + s.singles;
    let total = after_deletes + s.singles;
    vec![
        Workload {
            name: "initial copy".into(),
            rows: s.initial,
            generate: format!(
                "INSERT INTO t SELECT {ROW_EXPR} FROM generate_series(1, {}) g",
                s.initial
            ),
            sentinel: None,
            verify: format!("SELECT count(*) = {} FROM t", s.initial),
        },
        Workload {
            name: format!("inserts, {TXN_ROWS}-row txns"),
            rows: s.inserts,
            generate: format!(
                "DO $$ BEGIN FOR b IN 0..{} LOOP \
                 INSERT INTO t SELECT {ROW_EXPR} FROM generate_series({ins_lo} + b * {TXN_ROWS} + 1, {ins_lo} + (b + 1) * {TXN_ROWS}) g; \
                 COMMIT; END LOOP; END $$",
                batches(s.inserts)
            ),
            sentinel: Some(format!("SELECT EXISTS (SELECT 1 FROM t WHERE id = {ins_hi})")),
            verify: format!("SELECT count(*) = {ins_hi} FROM t"),
        },
        Workload {
            name: format!("updates, {TXN_ROWS}-row txns"),
            rows: s.updates,
            generate: format!(
                "DO $$ BEGIN FOR b IN 0..{} LOOP \
                 UPDATE t SET name = 'upd-' || id, price = price + 1, ts = ts + interval '1 microsecond' \
                 WHERE id BETWEEN b * {TXN_ROWS} + 1 AND (b + 1) * {TXN_ROWS}; \
                 COMMIT; END LOOP; END $$",
                batches(s.updates)
            ),
            sentinel: Some(format!(
                "SELECT name LIKE 'upd-%' FROM t WHERE id = {}",
                s.updates
            )),
            verify: format!(
                "SELECT count(*) = {0} FROM t WHERE id BETWEEN 1 AND {0} AND name LIKE 'upd-%'",
                s.updates
            ),
        },
        Workload {
            name: format!("deletes, {TXN_ROWS}-row txns"),
            rows: s.deletes,
            generate: format!(
                "DO $$ BEGIN FOR b IN 0..{} LOOP \
                 DELETE FROM t WHERE id BETWEEN {u} + b * {TXN_ROWS} + 1 AND {u} + (b + 1) * {TXN_ROWS}; \
                 COMMIT; END LOOP; END $$",
                batches(s.deletes),
                u = s.updates
            ),
            sentinel: Some(format!(
                "SELECT NOT EXISTS (SELECT 1 FROM t WHERE id = {})",
                s.updates + s.deletes
            )),
            verify: format!("SELECT count(*) = {after_deletes} FROM t"),
        },
        Workload {
            name: "single-row insert txns".into(),
            rows: s.singles,
            generate: format!(
                "DO $$ BEGIN FOR i IN 1..{} LOOP \
                 INSERT INTO t SELECT {ROW_EXPR} FROM (SELECT {single_lo}::bigint + i AS g) s; \
                 COMMIT; END LOOP; END $$",
                s.singles
            ),
            sentinel: Some(format!(
                "SELECT EXISTS (SELECT 1 FROM t WHERE id = {single_hi})"
            )),
            verify: format!("SELECT count(*) = {total} FROM t"),
        },
    ]
}

/// Peak RSS and CPU time of a running process, from `/proc`.
#[derive(Clone, Copy)]
struct Usage {
    peak_rss_mib: f64,
    cpu_secs: f64,
}

fn proc_usage(pid: u32) -> R<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ctx(format_args!("reading /proc/{pid}/status"))?;
    let hwm_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no VmHWM in /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ctx(format_args!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| format!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> R<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("unexpected /proc/{pid}/stat"))
    };
    Ok(Usage {
        peak_rss_mib: hwm_kib / 1024.0,
        cpu_secs: (tick(11)? + tick(12)?) / CLK_TCK,
    })
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    last_lines(&std::fs::read_to_string(path).unwrap_or_default(), n)
}

/// PostgreSQL's own logical replication: one subscription in [`NATIVE_DB`].
struct Native {
    /// Connected to [`NATIVE_DB`] on the target.
    client: Client,
    source_conn: String,
    created: bool,
    /// When the apply worker was last (re)started.
    last_start: Option<Instant>,
    /// The target's `wal_retrieve_retry_interval`.
    retry_interval: Duration,
}

impl Native {
    /// PostgreSQL 15's launcher starts apply workers at most once per
    /// `wal_retrieve_retry_interval` (one timestamp for all subscriptions),
    /// and when woken earlier it sleeps a whole interval again. A worker
    /// restarted sooner after its previous start would wait up to 5 s before
    /// doing anything, which is an artifact of this benchmark's disable/enable
    /// cycle, not catch-up speed: let that interval pass before the clock starts.
    async fn wait_for_launcher(&self) {
        if let Some(last) = self.last_start {
            let ready = last + self.retry_interval + Duration::from_millis(500);
            tokio::time::sleep(ready.saturating_duration_since(Instant::now())).await;
        }
    }

    async fn start(&mut self) -> R<()> {
        let sql = if self.created {
            format!("ALTER SUBSCRIPTION {SUBSCRIPTION} ENABLE")
        } else {
            format!(
                "CREATE SUBSCRIPTION {SUBSCRIPTION} CONNECTION '{}' PUBLICATION {PUBLICATION} \
                 WITH (copy_data = true)",
                self.source_conn
            )
        };
        self.client
            .batch_execute(&sql)
            .await
            .ctx("starting the native subscription")?;
        self.created = true;
        self.last_start = Some(Instant::now());
        Ok(())
    }

    /// Disables the subscription and waits until its workers are gone and the slot is free.
    async fn stop(&mut self, src: &Client) -> R<()> {
        self.client
            .batch_execute(&format!("ALTER SUBSCRIPTION {SUBSCRIPTION} DISABLE"))
            .await
            .ctx("disabling the native subscription")?;
        let workers = format!(
            "SELECT count(*) FROM pg_stat_subscription WHERE subname = '{SUBSCRIPTION}' AND pid IS NOT NULL"
        );
        let slot_busy = format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{SUBSCRIPTION}' AND active"
        );
        let start = Instant::now();
        while query_i64(&self.client, &workers).await? > 0 || query_i64(src, &slot_busy).await? > 0
        {
            if start.elapsed() > Duration::from_secs(60) {
                return Err("the native apply worker did not stop within 60 s".into());
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Initial copy done: every relation of the subscription is `r` (ready).
    async fn copy_done(&self) -> R<bool> {
        query_bool(
            &self.client,
            &format!(
                "SELECT count(*) > 0 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel \
                 WHERE srsubid = (SELECT oid FROM pg_subscription WHERE subname = '{SUBSCRIPTION}')"
            ),
        )
        .await
    }
}

/// One dbsync configuration, run as a child process.
struct Dbsync {
    label: String,
    db: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Length of the log when the current process started.
    log_offset: u64,
}

impl Dbsync {
    fn new(b: &Setup, label: &str, task: &str, db: &str, extra: &str) -> R<Self> {
        let dir = b.dir.path().join(task);
        std::fs::create_dir_all(&dir).ctx("creating the dbsync directory")?;
        let quote = |s: String| toml::Value::String(s).to_string();
        let text = format!(
            "[daemon]\ndata_dir = {}\n\n[[task]]\nname = \"{task}\"\nsync_mode = \"FULL_INCREMENTAL\"\n{extra}\n\
             [task.source]\ntype = \"postgresql\"\nurl = {}\n\n\
             [task.target]\ntype = \"postgresql\"\nurl = {}\n\n\
             [[task.mapping]]\nsource = \"public.t\"\n",
            quote(dir.join("data").display().to_string()),
            quote(b.src.url(SRC_DB)),
            quote(b.dst.url(db)),
        );
        let config = dir.join("dbsync.toml");
        std::fs::write(&config, text).ctx("writing the dbsync config")?;
        Ok(Self {
            label: label.into(),
            db: db.into(),
            config,
            log: dir.join("dbsync.log"),
            child: None,
            log_offset: 0,
        })
    }

    fn start(&mut self) -> R<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .ctx("opening the dbsync log")?;
        self.log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let child = Command::new(env!("CARGO_BIN_EXE_dbsync"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("DBSYNC_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .ctx("spawning dbsync")?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> R<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| format!("{} is not running", self.label))
    }

    /// An error when the process has exited.
    fn check_alive(&mut self) -> R<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait().ctx("waiting for dbsync")? {
                self.child = None;
                return Err(format!("{} exited unexpectedly ({status})", self.label));
            }
        }
        Ok(())
    }

    /// The log written by the current process.
    fn current_log(&self) -> R<String> {
        let mut f = std::fs::File::open(&self.log).ctx("opening the dbsync log")?;
        f.seek(SeekFrom::Start(self.log_offset))
            .ctx("reading the dbsync log")?;
        let mut text = String::new();
        f.read_to_string(&mut text).ctx("reading the dbsync log")?;
        Ok(text)
    }

    /// SIGTERM, then waits for a clean exit.
    async fn stop(&mut self) -> R<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .ctx("sending SIGTERM to dbsync")?;
        if !status.success() {
            return Err(format!("kill -TERM {} failed", child.id()));
        }
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().ctx("waiting for dbsync")? {
                if st.success() {
                    return Ok(());
                }
                return Err(format!("{} exited with {st} after SIGTERM", self.label));
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not exit within 60 s of SIGTERM",
                    self.label
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Dbsync {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

enum Consumer {
    Native(Native),
    Dbsync(Dbsync),
}

impl Consumer {
    fn label(&self) -> &str {
        match self {
            Consumer::Native(_) => "native",
            Consumer::Dbsync(d) => &d.label,
        }
    }

    fn db(&self) -> &str {
        match self {
            Consumer::Native(_) => NATIVE_DB,
            Consumer::Dbsync(d) => &d.db,
        }
    }
}

/// The servers and the temp dir holding the dbsync configs and logs.
struct Setup {
    src: PgServer,
    dst: PgServer,
    dir: tempfile::TempDir,
}

/// One timed run of one consumer on one workload.
struct Sample {
    secs: f64,
    usage: Option<Usage>,
}

impl Sample {
    fn rows_per_sec(&self, rows: i64) -> f64 {
        rows as f64 / self.secs.max(1e-9)
    }
}

/// Starts `c`, waits until its target reflects the whole workload, stops it.
/// The clock starts immediately before the consumer is (re)started.
async fn measure(b: &Setup, src: &Client, c: &mut Consumer, w: &Workload) -> R<Sample> {
    let target = b.dst.connect(c.db()).await;
    // Same starting conditions for every consumer: no dead tuples, fresh
    // statistics, no checkpoint due.
    if query_bool(&target, "SELECT to_regclass('public.t') IS NOT NULL").await? {
        target
            .batch_execute("VACUUM ANALYZE t")
            .await
            .ctx("VACUUM on the target")?;
    }
    target
        .batch_execute("CHECKPOINT")
        .await
        .ctx("CHECKPOINT on the target")?;
    src.batch_execute("CHECKPOINT")
        .await
        .ctx("CHECKPOINT on the source")?;
    if let Consumer::Native(n) = c {
        n.wait_for_launcher().await;
    }

    let t0 = Instant::now();
    match c {
        Consumer::Native(n) => n.start().await?,
        Consumer::Dbsync(d) => d.start()?,
    }
    let done_at = loop {
        let at = t0.elapsed();
        let sentinel = match (c as &mut Consumer, &w.sentinel) {
            (Consumer::Dbsync(d), s) => {
                d.check_alive()?;
                match s {
                    Some(sql) => query_bool(&target, sql).await?,
                    None => d.current_log()?.contains(SNAPSHOT_DONE),
                }
            }
            (Consumer::Native(_), Some(sql)) => query_bool(&target, sql).await?,
            (Consumer::Native(n), None) => n.copy_done().await?,
        };
        if sentinel && query_bool(&target, &w.verify).await? {
            break at;
        }
        if at > TIMEOUT {
            return Err(format!(
                "{}: {} not caught up within {TIMEOUT:?}",
                c.label(),
                w.name
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    let usage = match c {
        Consumer::Native(n) => {
            n.stop(src).await?;
            None
        }
        Consumer::Dbsync(d) => {
            let usage = proc_usage(d.pid()?)?;
            d.stop().await?;
            Some(usage)
        }
    };
    Ok(Sample {
        secs: done_at.as_secs_f64(),
        usage,
    })
}

/// `1234567.8` → `1,234,568`.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

struct Row {
    workload: String,
    rows: i64,
    native: Sample,
    dbsync: Vec<(String, Sample)>,
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| Workload | Rows | native s | native rows/s | dbsync s | dbsync rows/s | dbsync/native | dbsync peak RSS MiB | dbsync CPU s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        for (i, (label, s)) in r.dbsync.iter().enumerate() {
            let (name, rows, ns, nr) = if i == 0 {
                (
                    r.workload.clone(),
                    thousands(r.rows as f64),
                    format!("{:.2}", r.native.secs),
                    thousands(r.native.rows_per_sec(r.rows)),
                )
            } else {
                (format!("↳ {label}"), String::new(), "".into(), "".into())
            };
            let ratio = s.rows_per_sec(r.rows) / r.native.rows_per_sec(r.rows);
            let (rss, cpu) = s.usage.map_or(("?".into(), "?".into()), |u| {
                (
                    format!("{:.0}", u.peak_rss_mib),
                    format!("{:.2}", u.cpu_secs),
                )
            });
            let _ = writeln!(
                out,
                "| {name} | {rows} | {ns} | {nr} | {:.2} | {} | {ratio:.2}× | {rss} | {cpu} |",
                s.secs,
                thousands(s.rows_per_sec(r.rows)),
            );
        }
    }
    out
}

/// Replication slots and how far each is behind the source's WAL (diagnostic).
async fn slot_report(src: &Client) -> R<String> {
    let rows = src
        .query(
            "SELECT slot_name::text, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint \
             FROM pg_replication_slots ORDER BY 1",
            &[],
        )
        .await
        .ctx("reading pg_replication_slots")?;
    Ok(rows
        .iter()
        .map(|r| format!("{} {} B behind", r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect::<Vec<_>>()
        .join(", "))
}

async fn run_all(b: &Setup, consumers: &mut [Consumer], header: &str) -> R<String> {
    let scale = env_scale()?;
    let src = b.src.connect(SRC_DB).await;
    let mut rows = Vec::new();
    for w in workloads(&Sizes::new(scale)) {
        eprintln!("[{}] generating {} rows on the source", w.name, w.rows);
        let t = Instant::now();
        src.batch_execute(&w.generate)
            .await
            .ctx(format_args!("generating {}", w.name))?;
        // Hint bits set and statistics fresh before anyone reads the table.
        src.batch_execute("VACUUM ANALYZE t")
            .await
            .ctx("VACUUM on the source")?;
        eprintln!(
            "[{}] generated in {:.1} s",
            w.name,
            t.elapsed().as_secs_f64()
        );
        let expected = digest(&src).await?;
        let mut native = None;
        let mut dbsync = Vec::new();
        for c in consumers.iter_mut() {
            let s = measure(b, &src, c, &w).await?;
            eprintln!(
                "[{}] {}: {:.2} s, {} rows/s{}",
                w.name,
                c.label(),
                s.secs,
                thousands(s.rows_per_sec(w.rows)),
                s.usage.map_or(String::new(), |u| format!(
                    ", peak RSS {:.0} MiB, CPU {:.2} s",
                    u.peak_rss_mib, u.cpu_secs
                )),
            );
            let got = digest(&b.dst.connect(c.db()).await).await?;
            if got != expected {
                return Err(format!(
                    "{}: after {} the target differs from the source: (rows, md5) {got:?} vs {expected:?}",
                    c.label(),
                    w.name
                ));
            }
            match c {
                Consumer::Native(_) => native = Some(s),
                Consumer::Dbsync(d) => dbsync.push((d.label.clone(), s)),
            }
        }
        eprintln!(
            "[{}] digests match; slots: {}",
            w.name,
            slot_report(&src).await?
        );
        rows.push(Row {
            workload: w.name,
            rows: w.rows,
            native: native.ok_or("no native measurement")?,
            dbsync,
        });
    }
    Ok(format!("{header}\n{}", table(&rows)))
}

fn env_scale() -> R<f64> {
    match std::env::var("DBSYNC_BENCH_SCALE") {
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
            _ => Err(format!(
                "DBSYNC_BENCH_SCALE must be a positive number, not {v:?}"
            )),
        },
        Err(_) => Ok(1.0),
    }
}

async fn run() -> R<String> {
    let scale = env_scale()?;
    let tuned = match std::env::var("DBSYNC_BENCH_TUNED_BATCH") {
        Ok(v) => Some(
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("DBSYNC_BENCH_TUNED_BATCH must be a positive integer, not {v:?}")
                })?,
        ),
        Err(_) => None,
    };
    println!("dbsync replication benchmark, scale {scale}");
    let setup = Setup {
        src: PgServer::start(PgOptions {
            logical: true,
            durable: true,
            ..Default::default()
        }),
        dst: PgServer::start(PgOptions {
            logical: false,
            durable: true,
            ..Default::default()
        }),
        dir: tempfile::Builder::new()
            .prefix("dbsync-bench-")
            .tempdir()
            .ctx("creating a temp dir")?,
    };
    setup.src.create_database(SRC_DB).await;
    setup.dst.create_database(NATIVE_DB).await;
    let src = setup.src.connect(SRC_DB).await;
    src.batch_execute(&format!(
        "{TABLE_DDL}; CREATE PUBLICATION {PUBLICATION} FOR TABLE t"
    ))
    .await
    .ctx("creating the source table")?;
    let native_client = setup.dst.connect(NATIVE_DB).await;
    native_client
        .batch_execute(TABLE_DDL)
        .await
        .ctx("creating the native target table")?;

    let retry_ms = query_i64(
        &native_client,
        "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_retrieve_retry_interval'",
    )
    .await?;
    let mut consumers = vec![Consumer::Native(Native {
        client: native_client,
        source_conn: setup.src.conn_str(SRC_DB),
        created: false,
        last_start: None,
        retry_interval: Duration::from_millis(retry_ms.max(0) as u64),
    })];
    setup.dst.create_database("dbsync_t").await;
    consumers.push(Consumer::Dbsync(Dbsync::new(
        &setup,
        "dbsync (defaults)",
        "bench",
        "dbsync_t",
        "",
    )?));
    if let Some(n) = tuned {
        setup.dst.create_database("dbsync_tuned_t").await;
        consumers.push(Consumer::Dbsync(Dbsync::new(
            &setup,
            &format!("dbsync batch_size={n}"),
            "bench_tuned",
            "dbsync_tuned_t",
            &format!("batch_size = {n}"),
        )?));
    }

    let version: String = src
        .query_one("SHOW server_version", &[])
        .await
        .ctx("SHOW server_version")?
        .get(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let header = format!(
        "Run {} UTC, scale {scale}, {cores} cores, PostgreSQL {version} (durable: fsync on, \
         synchronous_commit on), backlog catch-up, dbsync default batch settings",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
    );
    let result = run_all(&setup, &mut consumers, &header).await;
    if result.is_err() {
        for c in &consumers {
            if let Consumer::Dbsync(d) = c {
                eprintln!(
                    "--- {} log (last 60 lines) ---\n{}",
                    d.label,
                    tail(&d.log, 60)
                );
            }
        }
        eprintln!(
            "--- source server log (last 30 lines) ---\n{}",
            last_lines(&setup.src.log(), 30)
        );
        eprintln!(
            "--- target server log (last 30 lines) ---\n{}",
            last_lines(&setup.dst.log(), 30)
        );
    }
    // Stop the children before the servers go away.
    drop(consumers);
    result
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(table) => {
            println!("\n{table}");
            if let Ok(path) = std::env::var("DBSYNC_BENCH_OUT") {
                if let Err(e) = std::fs::write(&path, &table) {
                    eprintln!("cannot write {path}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

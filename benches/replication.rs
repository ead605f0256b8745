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
//! `DBSYNC_BENCH_TUNED_BATCH` adds a second dbsync run with that `batch_size`,
//! `DBSYNC_BENCH_LOG_DIR` keeps the dbsync logs there.
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
/// How long a caught-up consumer may take to release its slot (see [`settle`]).
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// `/proc/PID/stat` times are in clock ticks of 1/100 s on Linux.
const CLK_TCK: f64 = 100.0;
const SNAPSHOT_DONE: &str = "snapshot complete";
/// Native initial copy done: every relation of the subscription is `r` (ready).
const NATIVE_COPY_DONE: &str =
    "SELECT count(*) > 0 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel \
     WHERE srsubid = (SELECT oid FROM pg_subscription WHERE subname = 'bench_sub')";

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

/// A `DO` block running `body` for `var` in `0..=last`, committing each time.
fn txn_loop(var: &str, last: i64, body: &str) -> String {
    format!("DO $$ BEGIN FOR {var} IN 0..{last} LOOP {body}; COMMIT; END LOOP; END $$")
}

/// The five workloads with their row counts scaled; ids: initial copy
/// `1..=I`, inserts after it, updates `1..=U`, deletes `U+1..=U+D`,
/// single-row inserts after the inserts.
fn workloads(scale: f64) -> Vec<Workload> {
    // Whole 1000-row transactions, at least one.
    let txns = |n: f64| ((n * scale / TXN_ROWS as f64).round() as i64).max(1) * TXN_ROWS;
    let (updates, deletes) = (txns(200_000.0), txns(100_000.0));
    let initial = txns(1_000_000.0).max(updates + deletes);
    let inserts = txns(500_000.0);
    let singles = ((20_000.0 * scale).round() as i64).max(10);
    let batches = |n: i64| n / TXN_ROWS - 1;
    let ins_lo = initial;
    let ins_hi = ins_lo + inserts;
    let after_deletes = ins_hi - deletes;
    let single_lo = ins_hi;
    let single_hi = single_lo + singles;
    let total = after_deletes + singles;
    vec![
        Workload {
            name: "initial copy".into(),
            rows: initial,
            generate: format!("INSERT INTO t SELECT {ROW_EXPR} FROM generate_series(1, {initial}) g"),
            sentinel: None,
            verify: format!("SELECT count(*) = {initial} FROM t"),
        },
        Workload {
            name: format!("inserts, {TXN_ROWS}-row txns"),
            rows: inserts,
            generate: txn_loop("b", batches(inserts), &format!(
                "INSERT INTO t SELECT {ROW_EXPR} FROM \
                 generate_series({ins_lo} + b * {TXN_ROWS} + 1, {ins_lo} + (b + 1) * {TXN_ROWS}) g"
            )),
            sentinel: Some(format!("SELECT EXISTS (SELECT 1 FROM t WHERE id = {ins_hi})")),
            verify: format!("SELECT count(*) = {ins_hi} FROM t"),
        },
        Workload {
            name: format!("updates, {TXN_ROWS}-row txns"),
            rows: updates,
            generate: txn_loop("b", batches(updates), &format!(
                "UPDATE t SET name = 'upd-' || id, price = price + 1, ts = ts + interval '1 microsecond' \
                 WHERE id BETWEEN b * {TXN_ROWS} + 1 AND (b + 1) * {TXN_ROWS}"
            )),
            sentinel: Some(format!("SELECT name LIKE 'upd-%' FROM t WHERE id = {updates}")),
            verify: format!(
                "SELECT count(*) = {updates} FROM t WHERE id BETWEEN 1 AND {updates} AND name LIKE 'upd-%'"
            ),
        },
        Workload {
            name: format!("deletes, {TXN_ROWS}-row txns"),
            rows: deletes,
            generate: txn_loop("b", batches(deletes), &format!(
                "DELETE FROM t WHERE id BETWEEN {updates} + b * {TXN_ROWS} + 1 \
                 AND {updates} + (b + 1) * {TXN_ROWS}"
            )),
            sentinel: Some(format!(
                "SELECT NOT EXISTS (SELECT 1 FROM t WHERE id = {})",
                updates + deletes
            )),
            verify: format!("SELECT count(*) = {after_deletes} FROM t"),
        },
        Workload {
            name: "single-row insert txns".into(),
            rows: singles,
            generate: txn_loop("i", singles - 1, &format!(
                "INSERT INTO t SELECT {ROW_EXPR} FROM (SELECT {single_lo}::bigint + 1 + i AS g) s"
            )),
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
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{f}"))
            .ctx(format_args!("reading /proc/{pid}/{f}"))
    };
    let (status, stat) = (read("status")?, read("stat")?);
    let bad = || format!("unexpected contents of /proc/{pid}");
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(bad)?;
    // After the parenthesised command name come fields 3 (state) onwards;
    // utime and stime are fields 14 and 15.
    let times: Vec<f64> = stat[stat.rfind(')').ok_or_else(bad)? + 1..]
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    if times.len() != 2 {
        return Err(bad());
    }
    Ok(Usage {
        peak_rss_mib: hwm_kib / 1024.0,
        cpu_secs: (times[0] + times[1]) / CLK_TCK,
    })
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
}

/// One dbsync configuration, run as a child process.
struct Dbsync {
    label: String,
    task: String,
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
            "[daemon]\ndata_dir = {}\n\n[daemon.admin]\nlisten = \"127.0.0.1:0\"\n\n[[task]]\nname = \"{task}\"\nsync_mode = \"FULL_INCREMENTAL\"\n{extra}\n\
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
            task: task.into(),
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
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while sent.as_ref().is_ok_and(|s| s.success()) && start.elapsed() < Duration::from_secs(60)
        {
            if let Some(st) = child.try_wait().ctx("waiting for dbsync")? {
                if st.success() {
                    return Ok(());
                }
                return Err(format!("{} exited with {st} after SIGTERM", self.label));
            }
            tokio::time::sleep(POLL).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "{} did not exit within 60 s of SIGTERM ({sent:?})",
            self.label
        ))
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

    /// The replication slot it reads (dbsync's default `dbsync_<task>`).
    fn slot(&self) -> String {
        match self {
            Consumer::Native(_) => SUBSCRIPTION.into(),
            Consumer::Dbsync(d) => format!("dbsync_{}", d.task),
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
    /// How long the consumer took to release its slot after catch-up.
    settled: Duration,
    /// Wall-clock start of the measurement (to match it with other load).
    wall: chrono::DateTime<chrono::Utc>,
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
    let has_t = query_bool(&target, "SELECT to_regclass('public.t') IS NOT NULL").await?;
    let steps = [
        (&target, "VACUUM ANALYZE t"),
        (&target, "CHECKPOINT"),
        (src, "CHECKPOINT"),
    ];
    for (client, sql) in steps.into_iter().skip(usize::from(!has_t)) {
        client.batch_execute(sql).await.ctx(sql)?;
    }
    if let Consumer::Native(n) = c {
        n.wait_for_launcher().await;
    }

    let (t0, wall) = (Instant::now(), chrono::Utc::now());
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
            (Consumer::Native(n), None) => query_bool(&n.client, NATIVE_COPY_DONE).await?,
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
        Consumer::Native(_) => None,
        Consumer::Dbsync(d) => Some(proc_usage(d.child.as_ref().map_or(0, Child::id))?),
    };
    let settled = settle(src, &c.slot()).await?;
    match c {
        Consumer::Native(n) => n.stop(src).await?,
        Consumer::Dbsync(d) => d.stop().await?,
    }
    Ok(Sample {
        secs: done_at.as_secs_f64(),
        usage,
        settled,
        wall,
    })
}

/// Off the clock, after catch-up: keeps the consumer running until its slot
/// has confirmed the source's current WAL position and moved `restart_lsn`
/// past it, so that the next workload's measurement decodes only that
/// workload's WAL. The server moves `restart_lsn` only to a point recorded
/// while decoding a running-transactions record that the client has since
/// confirmed; dbsync confirms at most once a second (and not on shutdown),
/// so without this a restart would decode the previous backlog again.
/// A CHECKPOINT every 2 s writes such records. Returns the time it took
/// (capped at [`SETTLE_MAX`], with a warning).
async fn settle(src: &Client, slot: &str) -> R<Duration> {
    let sql = "SELECT pg_current_wal_lsn()::text";
    let lsn: String = src.query_one(sql, &[]).await.ctx(sql)?.get(0);
    let check = format!(
        "SELECT confirmed_flush_lsn >= '{lsn}'::pg_lsn AND restart_lsn >= '{lsn}'::pg_lsn \
         FROM pg_replication_slots WHERE slot_name = '{slot}'"
    );
    let start = Instant::now();
    let mut checkpoint = start;
    while !query_bool(src, &check).await? {
        if start.elapsed() > SETTLE_MAX {
            eprintln!("warning: slot {slot} did not pass {lsn} within {SETTLE_MAX:?}");
            break;
        }
        if checkpoint.elapsed() >= Duration::from_secs(2) {
            src.batch_execute("CHECKPOINT").await.ctx("CHECKPOINT")?;
            checkpoint = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(start.elapsed())
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
            let u = s.usage.unwrap_or(Usage {
                peak_rss_mib: f64::NAN,
                cpu_secs: f64::NAN,
            });
            let _ = writeln!(
                out,
                "| {name} | {rows} | {ns} | {nr} | {:.2} | {} | {ratio:.2}× | {:.0} | {:.2} |",
                s.secs,
                thousands(s.rows_per_sec(r.rows)),
                u.peak_rss_mib,
                u.cpu_secs,
            );
        }
    }
    out
}

async fn run_all(b: &Setup, consumers: &mut [Consumer], header: &str) -> R<String> {
    let scale = env_scale()?;
    let src = b.src.connect(SRC_DB).await;
    let mut rows = Vec::new();
    for w in workloads(scale) {
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
                "[{}] {}: {:.2} s from {}, {} rows/s, slot settled in {:.1} s{}",
                w.name,
                c.label(),
                s.secs,
                s.wall.format("%H:%M:%S%.3f"),
                thousands(s.rows_per_sec(w.rows)),
                s.settled.as_secs_f64(),
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
        eprintln!("[{}] digests match", w.name);
        rows.push(Row {
            workload: w.name,
            rows: w.rows,
            native: native.ok_or("no native measurement")?,
            dbsync,
        });
    }
    Ok(format!("{header}\n{}", table(&rows)))
}

/// A positive number from the environment, `None` when unset.
fn env_num<T: std::str::FromStr + PartialOrd + Default>(name: &str) -> R<Option<T>> {
    match std::env::var(name) {
        Ok(v) => match v.trim().parse::<T>() {
            Ok(n) if n > T::default() => Ok(Some(n)),
            _ => Err(format!("{name} must be a positive number, not {v:?}")),
        },
        Err(_) => Ok(None),
    }
}

fn env_scale() -> R<f64> {
    Ok(env_num::<f64>("DBSYNC_BENCH_SCALE")?.unwrap_or(1.0))
}

async fn run() -> R<String> {
    let scale = env_scale()?;
    let tuned = env_num::<usize>("DBSYNC_BENCH_TUNED_BATCH")?;
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
    let dbsyncs = || {
        consumers.iter().filter_map(|c| match c {
            Consumer::Dbsync(d) => Some(d),
            Consumer::Native(_) => None,
        })
    };
    if result.is_err() {
        let mut logs: Vec<(String, String)> = dbsyncs()
            .map(|d| {
                (
                    d.label.clone(),
                    std::fs::read_to_string(&d.log).unwrap_or_default(),
                )
            })
            .collect();
        logs.push(("source server".into(), setup.src.log()));
        logs.push(("target server".into(), setup.dst.log()));
        for (what, text) in logs {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!("--- {what} log (last 60 lines) ---\n{tail}");
        }
    }
    if let Ok(dir) = std::env::var("DBSYNC_BENCH_LOG_DIR") {
        // Kept for analysis (progress lines with rows/s, batch sizes, errors).
        for d in dbsyncs() {
            let to = Path::new(&dir).join(format!("{}.log", d.task));
            if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::copy(&d.log, &to)) {
                eprintln!("cannot keep the {} log in {dir}: {e}", d.label);
            }
        }
    }
    // Stop the children before the servers go away.
    drop(consumers);
    result
}

fn main() -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let table = match rt.block_on(run()) {
        Ok(table) => table,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("\n{table}");
    if let Ok(path) = std::env::var("DBSYNC_BENCH_OUT") {
        if let Err(e) = std::fs::write(&path, &table) {
            eprintln!("cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

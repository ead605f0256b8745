//! MariaDB source throughput: dbsync (MariaDB → MariaDB and MariaDB →
//! PostgreSQL) against MariaDB's own replication into a second MariaDB, on
//! the same backlogs, in the same run; plus the binlog decoder alone.
//!
//! testkit starts a source MariaDB (ROW binlog), a second MariaDB that is
//! both the native replica (`CHANGE MASTER TO`, one applier thread, database
//! `bench`) and dbsync's MariaDB target (database `dbsync_t`), and a
//! PostgreSQL target (database `dbsync_t`). Every workload is generated on
//! the source while all consumers are stopped; then each consumer in turn is
//! started and timed until a marker row written after the workload reached
//! its target, and stopped again. Afterwards the target's digest must equal
//! the source's. The decoder figure reads the binlog of workloads 2–5 through
//! dbsync's replica connection and decodes every row into engine values,
//! with no pipeline behind it.
//!
//! `DBSYNC_BENCH_SCALE` (default 1.0) scales the row counts;
//! `DBSYNC_BENCH_OUT` names a file that receives the markdown table too.
//! See docs/BENCHMARKS.md ("MariaDB").

use std::fmt::{Display, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use engine::position::BinlogPosition;
use mysql_async::prelude::Queryable;
use testkit::{MariaDbOptions, MariaDbServer, PgOptions, PgServer};

type R<T> = Result<T, String>;

const POLL: Duration = Duration::from_millis(25);
const TIMEOUT: Duration = Duration::from_secs(1800);
const TABLE: &str = "CREATE TABLE bench.t (id BIGINT PRIMARY KEY, name VARCHAR(100), price DECIMAL(10,2), ts DATETIME(6))";
/// The values of row `seq` (deterministic).
const ROW: &str = "seq, CONCAT('name-', seq), (seq % 100000) / 100, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq * 1234567 MICROSECOND";

trait Ctx<T> {
    fn ctx(self, what: impl Display) -> R<T>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: impl Display) -> R<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

struct Workload {
    name: String,
    rows: i64,
    /// Statements run on the source (the backlog).
    sql: Vec<String>,
}

/// `n` statements of `per` rows each, for ids starting at `first`.
fn batches(first: i64, n: i64, per: i64, f: impl Fn(i64, i64) -> String) -> Vec<String> {
    (0..n)
        .map(|i| f(first + i * per, first + (i + 1) * per - 1))
        .collect()
}

fn workloads(scale: f64) -> Vec<Workload> {
    let k = |n: f64| ((n * scale) as i64).max(1);
    let (copy, ins, upd, del, single) = (k(1000.0), k(500.0), k(200.0), k(100.0), k(20_000.0));
    let base = 10_000_000;
    vec![
        Workload {
            name: format!("initial copy, {} rows", copy * 1000),
            rows: copy * 1000,
            sql: batches(1, copy, 1000, |a, b| {
                format!("INSERT INTO bench.t SELECT {ROW} FROM bench.seq_{a}_to_{b}")
            }),
        },
        Workload {
            name: format!("{} inserts, 1000-row transactions", ins * 1000),
            rows: ins * 1000,
            sql: batches(base, ins, 1000, |a, b| {
                format!("INSERT INTO bench.t SELECT {ROW} FROM bench.seq_{a}_to_{b}")
            }),
        },
        Workload {
            name: format!("{} updates, 1000-row transactions", upd * 1000),
            rows: upd * 1000,
            sql: batches(base, upd, 1000, |a, b| {
                format!(
                    "UPDATE bench.t SET name = CONCAT(name, '-u'), price = price + 1, ts = ts + INTERVAL 1 SECOND \
                     WHERE id BETWEEN {a} AND {b}"
                )
            }),
        },
        Workload {
            name: format!("{} deletes, 1000-row transactions", del * 1000),
            rows: del * 1000,
            sql: batches(1, del, 1000, |a, b| {
                format!("DELETE FROM bench.t WHERE id BETWEEN {a} AND {b}")
            }),
        },
        Workload {
            name: format!("{single} single-row transactions"),
            rows: single,
            sql: batches(2 * base, single, 1, |a, _| {
                format!("INSERT INTO bench.t SELECT {ROW} FROM bench.seq_{a}_to_{a}")
            }),
        },
    ]
}

/// Peak RSS (MiB) and CPU seconds of a process, from `/proc`.
fn proc_usage(pid: u32) -> R<(f64, f64)> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).ctx("reading /proc status")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ctx("reading /proc stat")?;
    let hwm: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("no VmHWM")?;
    let times: Vec<f64> = stat[stat.rfind(')').ok_or("bad stat")? + 1..]
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Ok((hwm / 1024.0, times.iter().sum::<f64>() / 100.0))
}

struct Servers {
    src: MariaDbServer,
    replica: MariaDbServer,
    pg: PgServer,
    dir: tempfile::TempDir,
}

async fn conn(db: &MariaDbServer, name: &str) -> R<mysql_async::Conn> {
    mysql_async::Conn::from_url(db.url(name))
        .await
        .ctx(format_args!(
            "connecting to MariaDB database {name} on port {}",
            db.port()
        ))
}

async fn query_opt_string(c: &mut mysql_async::Conn, sql: &str) -> R<Option<String>> {
    let v: Option<Option<String>> = c.query_first(sql).await.ctx(sql)?;
    Ok(v.flatten())
}

/// A dbsync task writing into one target.
struct Dbsync {
    label: &'static str,
    config: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Dbsync {
    fn new(s: &Servers, label: &'static str, server_id: u32) -> R<Self> {
        let dir = s.dir.path().join(label);
        std::fs::create_dir_all(&dir).ctx("creating the task directory")?;
        let (ty, url, target) = if label.contains("Postgre") {
            ("postgresql", s.pg.url("dbsync_t"), "public.t")
        } else {
            ("mariadb", s.replica.url("dbsync_t"), "dbsync_t.t")
        };
        let text = format!(
            "[daemon]\ndata_dir = \"{}\"\n[daemon.admin]\nlisten = \"127.0.0.1:0\"\n\n[[task]]\nname = \"bench\"\n\
             [task.source]\ntype = \"mariadb\"\nurl = \"{}\"\nserver_id = {server_id}\n\n\
             [task.target]\ntype = \"{ty}\"\nurl = \"{url}\"\n\n[[task.mapping]]\nsource = \"bench.t\"\ntarget = \"{target}\"\n",
            dir.join("data").display(),
            s.src.url("bench"),
        );
        let config = dir.join("dbsync.toml");
        std::fs::write(&config, text).ctx("writing the config")?;
        Ok(Self {
            label,
            config,
            child: None,
            log: dir.join("dbsync.log"),
        })
    }

    fn start(&mut self) -> R<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .ctx("opening the log")?;
        let child = Command::new(env!("CARGO_BIN_EXE_dbsync"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("DBSYNC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .ctx("spawning dbsync")?;
        self.child = Some(child);
        Ok(())
    }

    fn stop(&mut self) -> R<()> {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status()
                .ctx("kill")?;
            c.wait().ctx("waiting for dbsync")?;
        }
        Ok(())
    }

    fn check_alive(&mut self) -> R<()> {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                return Err(format!(
                    "{} exited ({st}):\n{}",
                    self.label,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        Ok(())
    }
}

/// The marker written after each workload: consumers are caught up when
/// their target shows it.
fn marker(n: usize) -> String {
    format!("marker-{n}")
}

/// The marker row has the largest key, so that the initial copy (in key
/// order) delivers it last.
const MARKER_ID: i64 = 9_000_000_000_000_000_000;
const MARKER_SQL: &str = "SELECT name FROM t WHERE id = 9000000000000000000";

/// The marker a target shows (`None` while its table does not exist yet).
async fn target_marker(s: &Servers, which: &str) -> R<Option<String>> {
    let maria = |db: &'static str| async move {
        match conn(&s.replica, db).await {
            Ok(mut c) => Ok(query_opt_string(&mut c, MARKER_SQL).await.ok().flatten()),
            Err(_) => Ok(None),
        }
    };
    match which {
        "native" => maria("bench").await,
        "pg" => {
            let c = s.pg.connect("dbsync_t").await;
            Ok(c.query_opt(MARKER_SQL, &[])
                .await
                .ok()
                .flatten()
                .and_then(|r| r.get(0)))
        }
        _ => maria("dbsync_t").await,
    }
}

/// Row count and an order-independent digest of `t` in one database.
async fn digest(s: &Servers, which: &str) -> R<String> {
    let my = "SELECT CONCAT(COUNT(*), ' ', COALESCE(SUM(CAST(CONV(SUBSTR(MD5(CONCAT_WS('|', id, name, price, \
              DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'))), 1, 8), 16, 10) AS UNSIGNED)), 0)) FROM t";
    let pg = "SELECT count(*)::text || ' ' || coalesce(sum(('x' || substr(md5(concat_ws('|', id, name, price::text, \
              to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'))), 1, 8))::bit(32)::bigint), 0)::text FROM t";
    let v = match which {
        "src" => query_opt_string(&mut conn(&s.src, "bench").await?, my).await?,
        "native" => query_opt_string(&mut conn(&s.replica, "bench").await?, my).await?,
        "pg" => Some(
            s.pg.connect("dbsync_t")
                .await
                .query_one(pg, &[])
                .await
                .ctx("pg digest")?
                .get(0),
        ),
        _ => query_opt_string(&mut conn(&s.replica, "dbsync_t").await?, my).await?,
    };
    Ok(v.unwrap_or_default())
}

#[derive(Default, Clone)]
struct Sample {
    secs: f64,
    rss_mib: Option<f64>,
    cpu_secs: Option<f64>,
    /// CPU seconds the second MariaDB (native replica and dbsync's MariaDB
    /// target) spent while this consumer caught up.
    replica_cpu: f64,
}

/// CPU seconds (user + system) of a process so far, from `/proc`.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (n(11) + n(12)) as f64 / 100.0
}

fn replica_pid(s: &Servers) -> String {
    std::fs::read_to_string(s.replica.data_dir().join("mysqld.pid"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Times one consumer until its target shows marker `n`.
async fn measure(s: &Servers, which: &str, d: Option<&mut Dbsync>, n: usize) -> R<Sample> {
    let want = marker(n);
    let pid = replica_pid(s);
    let cpu0 = cpu_secs(&pid);
    let t0 = Instant::now();
    let mut d = d;
    match d.as_deref_mut() {
        None => conn(&s.replica, "mysql")
            .await?
            .query_drop("START SLAVE")
            .await
            .ctx("START SLAVE")?,
        Some(d) => d.start()?,
    }
    let secs = loop {
        if let Some(d) = d.as_deref_mut() {
            d.check_alive()?;
        }
        if target_marker(s, which).await?.as_deref() == Some(want.as_str()) {
            break t0.elapsed().as_secs_f64();
        }
        if t0.elapsed() > TIMEOUT {
            return Err(format!("{which}: not caught up within {TIMEOUT:?}"));
        }
        tokio::time::sleep(POLL).await;
    };
    let mut sample = Sample {
        secs,
        replica_cpu: cpu_secs(&pid) - cpu0,
        ..Default::default()
    };
    match d {
        None => conn(&s.replica, "mysql")
            .await?
            .query_drop("STOP SLAVE")
            .await
            .ctx("STOP SLAVE")?,
        Some(d) => {
            if let Some(c) = &d.child {
                let (rss, cpu) = proc_usage(c.id())?;
                sample.rss_mib = Some(rss);
                sample.cpu_secs = Some(cpu);
            }
            d.stop()?;
        }
    }
    Ok(sample)
}

async fn position(s: &Servers) -> R<BinlogPosition> {
    let mut c = conn(&s.src, "mysql").await?;
    let mut row: mysql_async::Row = c
        .query_first("SHOW MASTER STATUS")
        .await
        .ctx("SHOW MASTER STATUS")?
        .ok_or("no binlog position")?;
    let file: String = row.take(0).ok_or("no binlog file")?;
    let pos: u64 = row
        .take::<String, _>(1)
        .and_then(|p| p.parse().ok())
        .ok_or("no binlog position")?;
    Ok(BinlogPosition {
        file: file.into(),
        pos,
        gtid_set: None,
    })
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn run() -> R<String> {
    let scale: f64 = std::env::var("DBSYNC_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let src = MariaDbServer::start(MariaDbOptions::default());
    let replica = MariaDbServer::start(MariaDbOptions {
        binlog: false,
        ..Default::default()
    });
    let pg = PgServer::start(PgOptions {
        logical: false,
        durable: true,
        ..Default::default()
    });
    pg.create_database("dbsync_t").await;
    replica.create_database("dbsync_t");
    let s = Servers {
        src,
        replica,
        pg,
        dir: tempfile::tempdir().ctx("temp dir")?,
    };
    // The native replica starts at the source's current position.
    let start = position(&s).await?;
    s.replica.exec(&format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', MASTER_PASSWORD='', \
         MASTER_LOG_FILE='{}', MASTER_LOG_POS={}, MASTER_USE_GTID=no",
        s.src.port(),
        start.file,
        start.pos
    ));
    s.src.exec(&format!(
        "CREATE DATABASE bench CHARACTER SET utf8mb4; {TABLE}"
    ));
    let mut maria = Dbsync::new(&s, "dbsync → MariaDB", 7001)?;
    let mut pgd = Dbsync::new(&s, "dbsync → PostgreSQL", 7002)?;
    let mut table = String::from(
        "| workload | rows | native replication rows/s | dbsync → MariaDB rows/s (× native) | dbsync → PostgreSQL rows/s | dbsync peak RSS MiB (MariaDB / PostgreSQL) | dbsync CPU s (MariaDB / PostgreSQL) | target mariadbd CPU µs/row (native / dbsync) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut decode_from = None;
    let mut src_conn = conn(&s.src, "bench").await?;
    for (i, w) in workloads(scale).iter().enumerate() {
        eprintln!("generating: {}", w.name);
        let g0 = Instant::now();
        if i == 1 {
            decode_from = Some(position(&s).await?);
        }
        for chunk in w.sql.chunks(200) {
            src_conn
                .query_drop(chunk.join(";"))
                .await
                .ctx("generating the workload")?;
        }
        src_conn
            .query_drop(format!(
                "REPLACE INTO bench.t VALUES ({MARKER_ID}, '{}', 0, '2024-01-01')",
                marker(i)
            ))
            .await
            .ctx("writing the marker")?;
        eprintln!("  generated in {:.1} s", g0.elapsed().as_secs_f64());
        let native = measure(&s, "native", None, i).await?;
        eprintln!("  native: {:.2} s", native.secs);
        let dm = measure(&s, "maria", Some(&mut maria), i).await?;
        eprintln!("  {}: {:.2} s", maria.label, dm.secs);
        let dp = measure(&s, "pg", Some(&mut pgd), i).await?;
        eprintln!("  {}: {:.2} s", pgd.label, dp.secs);
        let want = digest(&s, "src").await?;
        for which in ["native", "maria", "pg"] {
            let got = digest(&s, which).await?;
            if got != want {
                return Err(format!(
                    "{which}: digest {got} differs from the source's {want} after {}",
                    w.name
                ));
            }
        }
        let rate = |x: &Sample| w.rows as f64 / x.secs;
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} ({:.2}×) | {} | {:.0} / {:.0} | {:.2} / {:.2} | {:.2} / {:.2} |",
            w.name,
            thousands(w.rows as f64),
            thousands(rate(&native)),
            thousands(rate(&dm)),
            rate(&dm) / rate(&native),
            thousands(rate(&dp)),
            dm.rss_mib.unwrap_or(0.0),
            dp.rss_mib.unwrap_or(0.0),
            dm.cpu_secs.unwrap_or(0.0),
            dp.cpu_secs.unwrap_or(0.0),
            native.replica_cpu * 1e6 / w.rows as f64,
            dm.replica_cpu * 1e6 / w.rows as f64,
        );
    }
    // The decoder alone, over workloads 2–5.
    let from = decode_from.ok_or("no decode start")?;
    let to = position(&s).await?;
    let cfg = engine::config::Config::parse(&format!(
        "[[task]]\nname = \"r\"\n[task.source]\ntype = \"mariadb\"\nurl = \"{}\"\n\
         [task.target]\ntype = \"postgresql\"\nurl = \"postgres://x@127.0.0.1/x\"\n",
        s.src.url("bench")
    ))
    .map_err(|e| e.to_string())?;
    let engine::config::SourceConfig::Mysql(mcfg) = &cfg.tasks[0].source else {
        return Err("not a mysql config".into());
    };
    let stats = connectors::mysql::reader::decode_range(mcfg, 7003, &from, &to)
        .await
        .map_err(|e| e.to_string())?;
    let _ = writeln!(
        table,
        "\nBinlog decoder alone (workloads 2–5: {} row changes, {} events, {:.1} MiB): **{} rows/s** ({:.2} s).",
        thousands(stats.rows as f64),
        thousands(stats.events as f64),
        stats.bytes as f64 / 1048576.0,
        thousands(stats.rows as f64 / stats.elapsed.as_secs_f64()),
        stats.elapsed.as_secs_f64()
    );
    Ok(table)
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(table) => {
            println!("{table}");
            if let Ok(path) = std::env::var("DBSYNC_BENCH_OUT") {
                if let Err(e) = std::fs::write(&path, &table) {
                    eprintln!("cannot write {path}: {e}");
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

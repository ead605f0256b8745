//! End-to-end: the real `dbsync` binary from a private MariaDB (binlog
//! source) into a private PostgreSQL and into a second private MariaDB:
//! snapshot and stream under concurrent writes, kill -9 mid-stream and
//! mid-snapshot, DDL mid-stream, a million-row transaction in bounded memory,
//! binlog rotation, a purged position, idle heartbeats, and every type.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testkit::{MariaDbOptions, MariaDbServer, PgOptions, PgServer};

use crate::harness::Daemon;
use crate::T;

mod ddl;
mod types;

/// Where a test replicates to.
pub enum Dst {
    Pg(PgServer),
    Maria(MariaDbServer),
}

pub struct MyEnv {
    pub src: Arc<MariaDbServer>,
    pub dst: Dst,
    pub dir: tempfile::TempDir,
}

impl MyEnv {
    pub fn new(to_pg: bool, src_extra: &[&str]) -> Self {
        let src = MariaDbServer::start(MariaDbOptions {
            extra: src_extra.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        });
        src.create_database("shop");
        let dst = if to_pg {
            Dst::Pg(PgServer::start(PgOptions {
                logical: false,
                ..Default::default()
            }))
        } else {
            let d = MariaDbServer::start(MariaDbOptions {
                binlog: false,
                ..Default::default()
            });
            d.create_database("reporting");
            Dst::Maria(d)
        };
        Self {
            src: Arc::new(src),
            dst,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn ready(&self) {
        if let Dst::Pg(pg) = &self.dst {
            pg.create_database("reporting").await;
        }
    }

    /// The target name of source table `shop.<t>`.
    pub fn target(&self, t: &str) -> String {
        match self.dst {
            Dst::Pg(_) => format!("public.{t}"),
            Dst::Maria(_) => format!("reporting.{t}"),
        }
    }

    /// One task; `tables` are mapped `shop.<t>` → target (empty: the whole
    /// `shop` database into same-named tables of the target's `shop` schema).
    pub fn write_config(
        &self,
        mode: &str,
        extra_task: &str,
        source_extra: &str,
        tables: &[&str],
    ) -> PathBuf {
        let (ty, url) = match &self.dst {
            Dst::Pg(pg) => ("postgresql", pg.url("reporting")),
            Dst::Maria(m) => ("mariadb", m.url("reporting")),
        };
        let mut text = format!(
            "[daemon]\ndata_dir = \"{}\"\n[daemon.admin]\nlisten = \"127.0.0.1:0\"\n\n[[task]]\nname = \"t1\"\nsync_mode = \"{mode}\"\n{extra_task}\n\
             [task.source]\ntype = \"mariadb\"\nurl = \"{}\"\nheartbeat_interval_secs = 1\nsnapshot_chunk_rows = 1000\n\
             {source_extra}\n\n[task.target]\ntype = \"{ty}\"\nurl = \"{url}\"\n",
            self.dir.path().join("data").display(),
            self.src.url("shop"),
        );
        for t in tables {
            text.push_str(&format!(
                "\n[[task.mapping]]\nsource = \"shop.{t}\"\ntarget = \"{}\"\n",
                self.target(t)
            ));
        }
        let path = self.dir.path().join("dbsync.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn spawn(&self, config: &PathBuf) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("dbsync.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dbsync"))
            .args(["run", "--config"])
            .arg(config)
            .env("DBSYNC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning dbsync");
        Daemon { child }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dbsync.log")).unwrap_or_default()
    }

    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < timeout,
                "log never said {needle:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stored stream position (`dbsync offsets show --json`).
    pub fn stored_position(&self, config: &PathBuf) -> Option<(String, u64)> {
        let out = Command::new(env!("CARGO_BIN_EXE_dbsync"))
            .args(["offsets", "show", "--json", "--config"])
            .arg(config)
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let c = &v["t1"]["stream"]["commit"];
        Some((c["file"].as_str()?.to_string(), c["pos"].as_u64()?))
    }

    /// Row count and digest of a query's rows in the source (`cols` is a
    /// `concat_ws` argument list, `key` the order).
    pub fn src_digest(&self, table: &str, cols: &str, key: &str) -> String {
        maria_digest(&self.src, &format!("shop.{table}"), cols, key)
    }

    pub async fn dst_digest(&self, table: &str, cols: &str, key: &str) -> Option<String> {
        match &self.dst {
            Dst::Pg(pg) => {
                let c = pg.connect("reporting").await;
                let exists: bool = c
                    .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                    .await
                    .ok()?
                    .get(0);
                if !exists {
                    return None;
                }
                let row = c
                    .query_one(
                        &format!(
                            "SELECT count(*)::text || ' ' || coalesce(sum(('x' || substr(md5(concat_ws('|', {cols})), 1, 8))::bit(32)::bigint), 0)::text FROM {table}"
                        ),
                        &[],
                    )
                    .await
                    .ok()?;
                Some(row.get(0))
            }
            Dst::Maria(m) => {
                let sql = digest_sql(table, cols, key);
                let out = Command::new("mariadb")
                    .arg("--no-defaults")
                    .arg(format!("--socket={}", m.socket().display()))
                    .args(["-uroot", "--batch", "--skip-column-names", "-e", &sql])
                    .output()
                    .ok()?;
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            }
        }
    }
}

/// Row count and an order-independent sum of per-row MD5 prefixes (the
/// PostgreSQL side computes the same).
fn digest_sql(table: &str, cols: &str, _key: &str) -> String {
    format!(
        "SELECT CONCAT(COUNT(*), ' ', COALESCE(SUM(CAST(CONV(SUBSTR(MD5(CONCAT_WS('|', {cols})), 1, 8), 16, 10) AS UNSIGNED)), 0)) FROM {table}"
    )
}

fn maria_digest(db: &MariaDbServer, table: &str, cols: &str, key: &str) -> String {
    db.exec(&digest_sql(table, cols, key)).trim().to_string()
}

pub const ORDERS: &str = "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, name VARCHAR(60), price DECIMAL(10,2), qty INT)";
pub const ORDER_COLS: &str =
    "id, COALESCE(name, 'NULL'), COALESCE(price, 'NULL'), COALESCE(qty, 'NULL')";
pub const ORDER_COLS_PG: &str =
    "id, COALESCE(name, 'NULL'), COALESCE(price::text, 'NULL'), COALESCE(qty::text, 'NULL')";

impl MyEnv {
    pub fn order_cols(&self) -> &'static str {
        match self.dst {
            Dst::Pg(_) => ORDER_COLS_PG,
            Dst::Maria(_) => ORDER_COLS,
        }
    }

    pub async fn wait_orders(&self) {
        let start = Instant::now();
        loop {
            let s = self.src_digest("orders", ORDER_COLS, "id");
            let d = self
                .dst_digest(&self.target("orders"), self.order_cols(), "id")
                .await;
            if d.as_deref() == Some(s.as_str()) {
                return;
            }
            assert!(
                start.elapsed() < T,
                "orders did not converge: source {s:?} target {d:?}\n--- dbsync log ---\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `txns` transactions of `per_txn` inserts plus an update and a delete of
/// older rows, ten transactions per client call.
pub async fn maria_writer(db: Arc<MariaDbServer>, start_id: i64, txns: i64, per_txn: i64) {
    tokio::task::spawn_blocking(move || {
        let mut id = start_id;
        let mut sql = String::new();
        for t in 0..txns {
            sql.push_str("BEGIN;");
            for _ in 0..per_txn {
                sql.push_str(&format!(
                    "INSERT INTO shop.orders VALUES ({id}, 'n{id}', {}.{:02}, {});",
                    id % 1000,
                    id % 100,
                    id % 7
                ));
                id += 1;
            }
            sql.push_str(&format!(
                "UPDATE shop.orders SET qty = qty + 1, name = CONCAT(name, 'u') WHERE id % 97 = {};",
                t % 97
            ));
            sql.push_str(&format!("DELETE FROM shop.orders WHERE id % 211 = {};", t % 211));
            sql.push_str("COMMIT;");
            if t % 10 == 9 || t == txns - 1 {
                db.exec(&sql);
                sql.clear();
            }
        }
    })
    .await
    .unwrap();
}

pub fn seed_orders(db: &MariaDbServer, n: i64) {
    db.exec(&format!(
        "INSERT INTO shop.orders SELECT seq, CONCAT(REPEAT('n', 20), seq), seq % 1000, seq % 7 FROM shop.seq_1_to_{n}"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_pg_snapshot_hands_over_to_the_binlog_under_concurrent_writes() {
    let env = MyEnv::new(true, &[]);
    env.ready().await;
    env.src.exec(ORDERS);
    seed_orders(&env.src, 30_000);
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &["orders"]);
    let w = tokio::spawn(maria_writer(env.src.clone(), 1_000_000, 300, 20));
    let d = env.spawn(&cfg);
    w.await.unwrap();
    env.wait_orders().await;
    maria_writer(env.src.clone(), 2_000_000, 20, 5).await;
    env.wait_orders().await;
    assert_eq!(
        d.terminate(),
        Some(0),
        "clean exit on SIGTERM:\n{}",
        env.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_pg_kill9_mid_snapshot_and_mid_stream_then_restart() {
    let env = MyEnv::new(true, &[]);
    env.ready().await;
    env.src.exec(ORDERS);
    seed_orders(&env.src, 200_000);
    let cfg = env.write_config("FULL_INCREMENTAL", "batch_size = 1000", "", &["orders"]);
    let d = env.spawn(&cfg);
    // Kill in the middle of the copy.
    let start = Instant::now();
    loop {
        let copied = env
            .dst_digest("public.orders", "id", "id")
            .await
            .and_then(|s| s.split(' ').next().and_then(|n| n.parse::<u64>().ok()))
            .unwrap_or(0);
        if copied >= 5000 {
            assert!(
                copied < 200_000,
                "the snapshot finished before it could be interrupted"
            );
            break;
        }
        assert!(
            start.elapsed() < T,
            "snapshot never started:\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.kill9();
    maria_writer(env.src.clone(), 500_000, 50, 10).await;
    let mut d = env.spawn(&cfg);
    env.wait_log("resuming an interrupted snapshot", T).await;
    env.wait_log("streaming changes", T).await;
    // Kill three times while the source keeps writing.
    let w = tokio::spawn(maria_writer(env.src.clone(), 3_000_000, 400, 50));
    for round in 0..3u64 {
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        d.kill9();
        d = env.spawn(&cfg);
    }
    w.await.unwrap();
    env.wait_orders().await;
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_pg_follows_ddl_mid_stream() {
    let env = MyEnv::new(true, &[]);
    env.ready().await;
    env.src.exec(
        "CREATE TABLE shop.items (id INT PRIMARY KEY, a VARCHAR(10), b INT, c INT); \
         INSERT INTO shop.items VALUES (1, 'x', 1, 1), (2, 'y', 2, 2);",
    );
    // No mapping: every table of `shop` goes to the target's `shop` schema.
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &[]);
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    env.wait_same_pg(
        "items",
        "id, COALESCE(a, 'NULL'), COALESCE(b::text, 'NULL')",
    )
    .await;
    // ADD COLUMN (positioned), DROP COLUMN, MODIFY COLUMN (the binlog encoding
    // of b and a changes: 4 → 8 bytes, 1 → 2 length bytes), rows around each.
    env.src.exec(
        "ALTER TABLE shop.items ADD COLUMN d VARCHAR(5) AFTER a; INSERT INTO shop.items VALUES (3, 'z', 'dd', 3, 3); \
         ALTER TABLE shop.items DROP COLUMN c; INSERT INTO shop.items VALUES (4, 'w', 'ee', 4); \
         ALTER TABLE shop.items MODIFY COLUMN b BIGINT, MODIFY COLUMN a VARCHAR(300); \
         INSERT INTO shop.items VALUES (5, 'v', 'ff', 5); UPDATE shop.items SET d = 'up', b = b + 10 WHERE id <= 2;",
    );
    let items = "id, COALESCE(a, 'NULL'), COALESCE(d, 'NULL'), COALESCE(b::text, 'NULL')";
    env.wait_same_pg("items", items).await;
    // CREATE, RENAME, TRUNCATE, DROP TABLE.
    env.src.exec(
        "CREATE TABLE shop.fresh (id INT PRIMARY KEY, v TEXT); INSERT INTO shop.fresh VALUES (1, 'a'), (2, 'b'); \
         RENAME TABLE shop.fresh TO shop.renamed; INSERT INTO shop.renamed VALUES (3, 'c'); \
         CREATE TABLE shop.gone (id INT PRIMARY KEY); INSERT INTO shop.gone VALUES (1); DROP TABLE shop.gone; \
         TRUNCATE TABLE shop.items; INSERT INTO shop.items VALUES (10, 'after', 'tr', 1);",
    );
    env.wait_same_pg("items", items).await;
    let Dst::Pg(pg) = &env.dst else {
        unreachable!()
    };
    let c = pg.connect("reporting").await;
    let start = Instant::now();
    loop {
        let got: Option<String> = c
            .query_one(
                "SELECT string_agg(id || v, ',' ORDER BY id) FROM shop.renamed",
                &[],
            )
            .await
            .ok()
            .and_then(|r| r.get(0));
        if got.as_deref() == Some("1a,2b,3c") {
            break;
        }
        assert!(start.elapsed() < T, "renamed table: {got:?}\n{}", env.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The target table followed the rename, with the rows written before it.
    let old: bool = c
        .query_one("SELECT to_regclass('shop.fresh') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(old, "the old name's target table should be gone");
    // A restart resumes with the schema history (no re-read of old DDL).
    assert_eq!(d.terminate(), Some(0));
    env.src.exec(
        "INSERT INTO shop.items VALUES (11, 'later', 'x', 2); ALTER TABLE shop.items ADD COLUMN e INT; \
         INSERT INTO shop.items (id, a) VALUES (12, 'e')",
    );
    let d = env.spawn(&cfg);
    env.wait_same_pg("items", "id, COALESCE(a, 'NULL'), COALESCE(d, 'NULL'), COALESCE(b::text, 'NULL'), COALESCE(e::text, 'NULL')")
        .await;
    drop(d);
}

impl MyEnv {
    /// Convergence of `shop.<table>` with `shop.<table>` in PostgreSQL, where
    /// `cols` are PostgreSQL expressions (the source side uses the same
    /// column names without casts).
    pub async fn wait_same_pg(&self, table: &str, pg_cols: &str) {
        let src_cols = pg_cols.replace("::text", "");
        let start = Instant::now();
        loop {
            let s = self.src_digest(table, &src_cols, "id");
            let d = self
                .dst_digest(&format!("shop.{table}"), pg_cols, "id")
                .await;
            if d.as_deref() == Some(s.as_str()) {
                return;
            }
            assert!(
                start.elapsed() < T,
                "{table} did not converge: source {s:?} target {d:?}\n--- dbsync log ---\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_pg_million_row_transaction_in_bounded_memory() {
    let env = MyEnv::new(true, &[]);
    env.ready().await;
    env.src
        .exec("CREATE TABLE shop.big (id INT PRIMARY KEY, v VARCHAR(32))");
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &["big"]);
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    env.src
        .exec("INSERT INTO shop.big SELECT seq, MD5(seq) FROM shop.seq_1_to_1000000");
    let Dst::Pg(pg) = &env.dst else {
        unreachable!()
    };
    let c = pg.connect("reporting").await;
    let start = Instant::now();
    loop {
        let n: i64 = c
            .query_one("SELECT count(*) FROM public.big", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        assert!(
            n == 0 || n == 1_000_000,
            "transaction half-visible in the target: {n} rows"
        );
        if n == 1_000_000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "not replicated:\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.wait_same_pg_in("public.big", "big", "id, v").await;
    let peak_mib = d.peak_rss_kib() / 1024;
    eprintln!("dbsync peak RSS for a 1M-row MariaDB transaction: {peak_mib} MiB");
    assert!(
        peak_mib < 256,
        "peak RSS {peak_mib} MiB is not bounded under 256 MiB"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_pg_follows_binlog_rotation_mid_stream() {
    // Small binlog files: the writer's transactions cross many of them.
    let env = MyEnv::new(true, &["max-binlog-size=65536"]);
    env.ready().await;
    env.src.exec(ORDERS);
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &["orders"]);
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    let w = tokio::spawn(maria_writer(env.src.clone(), 1, 200, 20));
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.src.exec("FLUSH LOGS");
    }
    w.await.unwrap();
    env.wait_orders().await;
    let files = env.src.exec("SHOW BINARY LOGS");
    assert!(
        files.lines().count() > 5,
        "expected many binlog files:\n{files}"
    );
    // A restart resumes in a later file.
    assert_eq!(d.terminate(), Some(0));
    env.src.exec("FLUSH LOGS");
    maria_writer(env.src.clone(), 100_000, 20, 5).await;
    let d = env.spawn(&cfg);
    env.wait_orders().await;
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_purged_position_stops_with_a_resnapshot_error() {
    let env = MyEnv::new(true, &[]);
    env.ready().await;
    env.src.exec(ORDERS);
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &["orders"]);
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    maria_writer(env.src.clone(), 1, 5, 5).await;
    env.wait_orders().await;
    assert_eq!(d.terminate(), Some(0));
    // While dbsync is down, the binlogs it needs are purged.
    maria_writer(env.src.clone(), 1000, 5, 5).await;
    env.src.exec("FLUSH LOGS; FLUSH LOGS");
    let last = env.src.exec("SHOW MASTER STATUS");
    let current = last.split('\t').next().unwrap().to_string();
    // MariaDB keeps a file until its binlog checkpoint passed: retry.
    let start = Instant::now();
    while env
        .src
        .exec("SHOW BINARY LOGS")
        .contains("mysql-bin.000001")
    {
        env.src
            .exec(&format!("FLUSH LOGS; PURGE BINARY LOGS TO '{current}'"));
        assert!(start.elapsed() < T, "binlogs never purged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = env.spawn(&cfg);
    env.wait_log("re-snapshot needed", T).await;
    assert_eq!(
        d.wait_exit(T),
        Some(1),
        "a definite error ends the daemon:\n{}",
        env.log()
    );
    let log = env.log();
    assert!(
        log.contains("re-snapshot needed") && log.contains("purged"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_heartbeats_advance_the_stored_position_while_idle() {
    let env = MyEnv::new(true, &[]);
    env.ready().await;
    env.src.exec(ORDERS);
    env.src
        .exec("CREATE TABLE shop.unrelated (id INT PRIMARY KEY, v TEXT)");
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &["orders"]);
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    // The binlog moves on, but nothing for the replicated table.
    env.src.exec(
        "INSERT INTO shop.unrelated SELECT seq, MD5(seq) FROM shop.seq_1_to_20000; FLUSH LOGS",
    );
    env.src.exec("INSERT INTO shop.unrelated VALUES (0, 'x')");
    let status = env.src.exec("SHOW MASTER STATUS");
    let mut f = status.trim().split('\t');
    let (file, pos): (String, u64) = (f.next().unwrap().into(), f.next().unwrap().parse().unwrap());
    let start = Instant::now();
    loop {
        if let Some((sf, sp)) = env.stored_position(&cfg) {
            if sf == file && sp >= pos {
                break;
            }
        }
        assert!(
            start.elapsed() < T,
            "stored position never reached {file}:{pos} ({:?}):\n{}",
            env.stored_position(&cfg),
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(d);
}

impl MyEnv {
    /// Convergence of source `shop.<src_table>` with target table `dst`
    /// (plain column list valid in both dialects).
    pub async fn wait_same_pg_in(&self, dst: &str, src_table: &str, cols: &str) {
        let start = Instant::now();
        loop {
            let s = self.src_digest(src_table, cols, "id");
            let d = self.dst_digest(dst, cols, "id").await;
            if d.as_deref() == Some(s.as_str()) {
                return;
            }
            assert!(
                start.elapsed() < T,
                "{dst} did not converge: {s:?} vs {d:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_maria_snapshot_stream_and_kill9() {
    let env = MyEnv::new(false, &[]);
    env.src.exec(ORDERS);
    seed_orders(&env.src, 50_000);
    let cfg = env.write_config("FULL_INCREMENTAL", "batch_size = 1000", "", &["orders"]);
    let w = tokio::spawn(maria_writer(env.src.clone(), 1_000_000, 200, 20));
    let mut d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    for round in 0..2u64 {
        tokio::time::sleep(Duration::from_millis(500 + 400 * round)).await;
        d.kill9();
        d = env.spawn(&cfg);
    }
    w.await.unwrap();
    env.wait_orders().await;
    maria_writer(env.src.clone(), 2_000_000, 20, 5).await;
    env.wait_orders().await;
    assert_eq!(d.terminate(), Some(0), "clean exit:\n{}", env.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_check_names_each_prerequisite_and_its_fix() {
    let env = MyEnv::new(true, &["binlog-format=MIXED", "binlog-row-image=MINIMAL"]);
    env.ready().await;
    env.src.exec(ORDERS);
    env.src.exec("CREATE TABLE shop.nokey (v INT)");
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &["orders", "nokey"]);
    let check = |cfg: &PathBuf| {
        Command::new(env!("CARGO_BIN_EXE_dbsync"))
            .args(["check", "--config"])
            .arg(cfg)
            .output()
            .unwrap()
    };
    let out = check(&cfg);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    for needle in [
        "ok   ensure_source_reachable",
        "ok   ensure_log_bin",
        "FAIL ensure_binlog_format_row",
        "SET GLOBAL binlog_format = 'ROW'",
        "FAIL ensure_binlog_row_image_full",
        "FAIL ensure_tables_replicable",
        "shop.nokey has no primary key",
        "ok   ensure_replication_privileges",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // Fixed at the source: the same check passes.
    env.src.exec("SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'FULL'; ALTER TABLE shop.nokey ADD PRIMARY KEY (v)");
    let out = check(&cfg);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
}

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
        if got.as_deref() == Some("3c") {
            break;
        }
        assert!(start.elapsed() < T, "renamed table: {got:?}\n{}", env.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Rows written before the rename stay in the old name's target table.
    let old: String = c
        .query_one(
            "SELECT string_agg(id || v, ',' ORDER BY id) FROM shop.fresh",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(old, "1a,2b");
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

const MY_TYPES: &str = "CREATE TABLE shop.types_t (
 id INT PRIMARY KEY,
 c_tiny TINYINT, c_utiny TINYINT UNSIGNED, c_small SMALLINT, c_usmall SMALLINT UNSIGNED,
 c_med MEDIUMINT, c_umed MEDIUMINT UNSIGNED, c_int INT, c_uint INT UNSIGNED, c_big BIGINT, c_ubig BIGINT UNSIGNED,
 c_dec DECIMAL(65,30), c_dec2 DECIMAL(10,2), c_float FLOAT, c_double DOUBLE,
 c_bit1 BIT(1), c_bit BIT(12), c_bool BOOL,
 c_char CHAR(5), c_varchar VARCHAR(20), c_text TEXT, c_latin1 VARCHAR(20) CHARACTER SET latin1,
 c_utf16 VARCHAR(10) CHARACTER SET utf16,
 c_binary BINARY(4), c_varbinary VARBINARY(10), c_blob BLOB,
 c_date DATE, c_time TIME, c_time6 TIME(6), c_dt DATETIME, c_dt6 DATETIME(6),
 c_ts TIMESTAMP NULL DEFAULT NULL, c_ts6 TIMESTAMP(6) NULL DEFAULT NULL,
 c_year YEAR, c_enum ENUM('a','b','it''s'), c_set SET('x','y','z'), c_json JSON)";

fn my_type_rows(base: i32) -> String {
    format!(
        "SET NAMES utf8mb4; INSERT INTO shop.types_t VALUES
 ({a}, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808,
  18446744073709551615, 12345678901234567890123456789012345.123456789012345678901234567891, -12345678.99,
  3.40282e38, 1.7976931348623157e308, b'1', b'101010101010', 1,
  'ab', 'varchar ü 😀', 'tab\\there\\nnew ''q'' \\\\', 'café €', 'ütf16 😀',
  x'00ff', x'000102', x'deadbeef',
  '2024-02-29', '-838:59:59', '838:59:59.999999', '1000-01-01 00:00:00', '9999-12-31 23:59:59.999999',
  '1970-01-01 00:00:01', '2038-01-19 03:14:07.999999',
  2155, 'it''s', 'x,z', '{{\"b\": 1, \"a\": [1, 2.5, null, true]}}'),
 ({b}, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.5, -2.5e-300, b'0', b'0', 0,
  '', '', '', '', '', x'', x'', x'', '0001-01-01', '-00:00:01', '00:00:00', '2000-01-01 00:00:00',
  '2000-02-29 12:00:00.000001', '2000-01-01 00:00:00', '1999-12-31 23:59:59.5', 1901, 'a', '', '[]'),
 ({c}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        a = base,
        b = base + 1,
        c = base + 2
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_pg_every_type_arrives_the_same_by_snapshot_and_stream() {
    let env = MyEnv::new(true, &[]);
    env.ready().await;
    env.src.exec(MY_TYPES);
    env.src.exec(&my_type_rows(1));
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &["types_t"]);
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    env.src.exec(&my_type_rows(101));
    let Dst::Pg(pg) = &env.dst else {
        unreachable!()
    };
    let c = pg.connect("reporting").await;
    let start = Instant::now();
    while c
        .query_one("SELECT count(*) FROM public.types_t", &[])
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
        < 6
    {
        assert!(start.elapsed() < T, "types not replicated:\n{}", env.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (a, b) in [(1, 101), (2, 102), (3, 103)] {
        let same: bool = c
            .query_one(
                "SELECT (SELECT (x.*)::text FROM public.types_t x WHERE id = $1) IS NOT DISTINCT FROM
                        replace((SELECT (x.*)::text FROM public.types_t x WHERE id = $2), '(' || $2::text || ',', '(' || $1::text || ',')",
                &[&a, &b],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            same,
            "row {a} (snapshot) and row {b} (binlog) differ in PostgreSQL"
        );
    }
    // The documented mapping.
    let ty = |col: &'static str| {
        let c = &c;
        async move {
            c.query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.types_t'::regclass AND attname = $1",
                &[&col],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
        }
    };
    assert_eq!(ty("c_ubig").await, "numeric(20,0)");
    assert_eq!(ty("c_uint").await, "bigint");
    assert_eq!(ty("c_utiny").await, "smallint");
    assert_eq!(ty("c_dec").await, "numeric(65,30)");
    assert_eq!(ty("c_time6").await, "interval");
    assert_eq!(ty("c_dt6").await, "timestamp(6) without time zone");
    assert_eq!(ty("c_ts").await, "timestamp(0) with time zone");
    assert_eq!(ty("c_json").await, "json");
    assert_eq!(ty("c_bit1").await, "boolean");
    assert_eq!(ty("c_enum").await, "text");
    let row: String = c
        .query_one(
            "SELECT concat_ws('|', c_ubig, c_time, c_ts6, c_enum, c_set, encode(c_binary, 'hex'), c_latin1) FROM public.types_t WHERE id = 101",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        row,
        "18446744073709551615|-838:59:59|2038-01-19 03:14:07.999999+00|it's|x,z|00ff0000|café €"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_maria_every_type_round_trips_exactly() {
    let env = MyEnv::new(false, &[]);
    env.src.exec(MY_TYPES);
    env.src.exec(&my_type_rows(1));
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &["types_t"]);
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    env.src.exec(&my_type_rows(101));
    env.src.exec("UPDATE shop.types_t SET c_varchar = 'updated', c_time = '-12:00:00' WHERE id = 102; DELETE FROM shop.types_t WHERE id = 103");
    let Dst::Maria(m) = &env.dst else {
        unreachable!()
    };
    let q = |db: &str| format!("SET NAMES utf8mb4; SELECT * FROM {db}.types_t ORDER BY id");
    let start = Instant::now();
    loop {
        let s = env.src.exec(&q("shop"));
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", m.socket().display()))
            .args([
                "-uroot",
                "--batch",
                "--skip-column-names",
                "-e",
                &q("reporting"),
            ])
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        if s == t {
            break;
        }
        assert!(
            start.elapsed() < T,
            "types differ:\nsource:\n{s}\ntarget:\n{t}\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Exact column types.
    let cols = |sock: &std::path::Path, db: &str| {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", sock.display()))
            .args([
                "-uroot",
                "--batch",
                "--skip-column-names",
                "-e",
                &format!(
                    "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 'types_t' ORDER BY ORDINAL_POSITION"
                ),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let src_types = cols(&env.src.socket(), "shop").replace("tinyint(1)", "tinyint(4)");
    let dst_types = cols(&m.socket(), "reporting").replace("tinyint(1)", "tinyint(4)");
    assert_eq!(src_types, dst_types);
    drop(d);
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

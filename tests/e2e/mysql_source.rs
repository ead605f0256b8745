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
            "[daemon]\ndata_dir = \"{}\"\n\n[[task]]\nname = \"t1\"\nsync_mode = \"{mode}\"\n{extra_task}\n\
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
                            "SELECT count(*)::text || ' ' || coalesce(md5(string_agg(concat_ws('|', {cols}), E'\\n' ORDER BY {key})), '') FROM {table}"
                        ),
                        &[],
                    )
                    .await
                    .ok()?;
                Some(row.get(0))
            }
            Dst::Maria(m) => {
                let sql = digest_sql(&format!("reporting.{table}"), cols, key);
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

    /// Waits until `table` has the same rows (as `cols`) in source and target.
    pub async fn wait_same(&self, table: &str, cols: &str, key: &str) {
        let start = Instant::now();
        loop {
            let s = self.src_digest(table, cols, key);
            let d = self.dst_digest(table, cols, key).await;
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

fn digest_sql(table: &str, cols: &str, key: &str) -> String {
    format!(
        "SET SESSION group_concat_max_len = 1073741824; \
         SELECT CONCAT(COUNT(*), ' ', COALESCE(MD5(GROUP_CONCAT(CONCAT_WS('|', {cols}) ORDER BY {key} SEPARATOR '\\n')), '')) FROM {table}"
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

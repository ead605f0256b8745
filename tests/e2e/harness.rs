//! Test environment: a source and a target PostgreSQL, a dbsync config, the
//! dbsync binary as a child process, and convergence checks.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{PgOptions, PgServer};
use tokio_postgres::Client;

pub struct Env {
    pub src: PgServer,
    pub dst: PgServer,
    pub dir: tempfile::TempDir,
    pub task: String,
}

impl Env {
    /// Two fresh servers with a `shop` database on the source and `reporting` on the target.
    pub async fn new() -> Self {
        let src = PgServer::start(PgOptions::default());
        let dst = PgServer::start(PgOptions {
            logical: false,
            ..Default::default()
        });
        src.create_database("shop").await;
        dst.create_database("reporting").await;
        Self {
            src,
            dst,
            dir: tempfile::tempdir().unwrap(),
            task: "t1".into(),
        }
    }

    pub async fn source(&self) -> Client {
        self.src.connect("shop").await
    }

    pub async fn target(&self) -> Client {
        self.dst.connect("reporting").await
    }

    /// Writes a config for one task; `extra_task` lines go into `[[task]]`,
    /// `mappings` are `[[task.mapping]]` source names.
    pub fn write_config(&self, mode: &str, extra_task: &str, mappings: &[&str]) -> PathBuf {
        self.write_config_with_daemon(mode, "", extra_task, mappings)
    }

    /// Like [`Env::write_config`], with `daemon_extra` lines in `[daemon]`.
    /// The admin endpoint listens on a free loopback port (tests run in
    /// parallel) unless `daemon_extra` has its own `[daemon.admin]` section.
    pub fn write_config_with_daemon(
        &self,
        mode: &str,
        daemon_extra: &str,
        extra_task: &str,
        mappings: &[&str],
    ) -> PathBuf {
        let admin = if daemon_extra.contains("[daemon.admin]") {
            ""
        } else {
            "[daemon.admin]\nlisten = \"127.0.0.1:0\"\n"
        };
        let mut text = format!(
            "[daemon]\ndata_dir = \"{}\"\n{daemon_extra}\n{admin}\n[[task]]\nname = \"{}\"\nsync_mode = \"{mode}\"\n{extra_task}\n\
             [task.source]\ntype = \"postgresql\"\nurl = \"{}\"\nstatus_interval_secs = 1\nsnapshot_chunk_rows = 1000\n\n\
             [task.target]\ntype = \"postgresql\"\nurl = \"{}\"\n",
            self.dir.path().join("data").display(),
            self.task,
            self.src.url("shop"),
            self.dst.url("reporting"),
        );
        for m in mappings {
            text.push_str(&format!("\n[[task.mapping]]\nsource = \"{m}\"\n"));
        }
        let path = self.dir.path().join("dbsync.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dbsync.log")
    }

    /// Starts `dbsync run`; its log goes to `dbsync.log` (appended across restarts).
    pub fn spawn(&self, config: &PathBuf) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
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
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no drain, no cleanup.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if start.elapsed() > Duration::from_secs(30) {
                self.child.kill().ok();
                panic!("dbsync did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if start.elapsed() > timeout {
                self.child.kill().ok();
                panic!("dbsync did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident set size in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Row count and an order-independent digest of a table's text form.
pub async fn digest(c: &Client, table: &str, key: &str) -> (i64, String) {
    let row = c
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(x::text, E'\\n' ORDER BY {key})), '') FROM {table} x"
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("digest of {table}: {e}"));
    (row.get(0), row.get(1))
}

/// Waits until `table` exists in the database of `c` (dbsync creates target
/// tables when their first rows arrive, which may be after a test starts
/// reading them). Polls with a deadline; panics with the dbsync log after it.
pub async fn wait_table(env: &Env, c: &Client, table: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let exists: bool = c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .unwrap_or_else(|e| panic!("looking up {table}: {e}"))
            .get(0);
        if exists {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "{table} was not created within {timeout:?}\n--- dbsync log ---\n{}",
                env.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `table` has the same rows in source and target.
pub async fn wait_converged(env: &Env, table: &str, key: &str, timeout: Duration) {
    let src = env.source().await;
    let dst = env.target().await;
    let start = Instant::now();
    let mut last = None;
    loop {
        let s = digest(&src, table, key).await;
        let exists: bool = dst
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .unwrap()
            .get(0);
        if exists {
            let d = digest(&dst, table, key).await;
            if s == d {
                return;
            }
            last = Some((s, d));
        }
        if start.elapsed() > timeout {
            panic!(
                "{table} did not converge within {timeout:?}: source/target = {last:?}\n--- dbsync log ---\n{}",
                env.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the dbsync log contains `needle`.
pub async fn wait_log(env: &Env, needle: &str, timeout: Duration) {
    let start = Instant::now();
    while !env.log().contains(needle) {
        if start.elapsed() > timeout {
            panic!("log never said {needle:?}:\n{}", env.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PostgreSQL source (`shop`) and a MariaDB target: the `mysql_pairs` tests.
pub struct MariaEnv {
    pub src: PgServer,
    pub dst: testkit::MariaDbServer,
    pub dir: tempfile::TempDir,
    pub task: String,
}

impl MariaEnv {
    /// A fresh PostgreSQL source with a `shop` database and a MariaDB target
    /// (no binlog) with a `reporting` database.
    pub async fn new() -> Self {
        let src = PgServer::start(PgOptions::default());
        let dst = testkit::MariaDbServer::start(testkit::MariaDbOptions {
            binlog: false,
            ..Default::default()
        });
        src.create_database("shop").await;
        dst.create_database("reporting");
        Self {
            src,
            dst,
            dir: tempfile::tempdir().unwrap(),
            task: "t1".into(),
        }
    }

    pub async fn source(&self) -> Client {
        self.src.connect("shop").await
    }

    /// Writes a config for one task into the MariaDB target; `mappings` are
    /// (source, target) table names.
    pub fn write_config(&self, mode: &str, extra_task: &str, mappings: &[(&str, &str)]) -> PathBuf {
        let mut text = format!(
            "[daemon]\ndata_dir = \"{}\"\n[daemon.admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [[task]]\nname = \"{}\"\nsync_mode = \"{mode}\"\n{extra_task}\n\
             [task.source]\ntype = \"postgresql\"\nurl = \"{}\"\nstatus_interval_secs = 1\nsnapshot_chunk_rows = 1000\n\n\
             [task.target]\ntype = \"mariadb\"\nurl = \"{}\"\n",
            self.dir.path().join("data").display(),
            self.task,
            self.src.url("shop"),
            self.dst.url("reporting"),
        );
        for (s, t) in mappings {
            text.push_str(&format!(
                "\n[[task.mapping]]\nsource = \"{s}\"\ntarget = \"{t}\"\n"
            ));
        }
        let path = self.dir.path().join("dbsync.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts `dbsync run`; its log goes to `dbsync.log` (appended across restarts).
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

    /// Waits until the dbsync log contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            if start.elapsed() > timeout {
                panic!("log never said {needle:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs SQL on the target with the `mariadb` client (tab-separated output,
    /// `NULL` for nulls); `None` when it fails (e.g. the table is not there yet).
    pub fn target_query(&self, sql: &str) -> Option<String> {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.dst.socket().display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

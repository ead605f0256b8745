//! Private database server instances for tests, benchmarks and the quickstart.
//!
//! [`PgServer::start`] runs `initdb` into a fresh temporary directory and
//! starts `postgres` on a free loopback port with `wal_level=logical`, so tests
//! never depend on the machine's own services. As root (CI), the server runs as
//! the `postgres` user (PostgreSQL refuses root) on a directory it owns.
//! Missing server binaries are a loud failure with the install hint.
//! [`MariaDbServer`] does the same for MariaDB.

pub mod mariadb;
mod standby;

pub use mariadb::{MariaDbOptions, MariaDbServer};
pub use standby::PgStandby;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How clients authenticate over TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgAuth {
    Trust,
    /// `method` is `scram-sha-256` or `md5`; the superuser `postgres` gets `password`.
    Password {
        method: String,
        password: String,
    },
}

#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `wal_level=logical` (sources) or `replica`.
    pub logical: bool,
    /// Durable commits (`fsync`, `synchronous_commit`); off makes tests faster.
    pub durable: bool,
    pub auth: PgAuth,
    /// Extra `postgresql.conf` lines.
    pub extra_conf: Vec<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            logical: true,
            durable: false,
            auth: PgAuth::Trust,
            extra_conf: Vec::new(),
        }
    }
}

/// A running private PostgreSQL server; stopped (immediate mode) and deleted on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    as_postgres: bool,
    password: Option<String>,
}

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. \
Install them with `apt-get install postgresql` (Debian/Ubuntu), or point DBSYNC_PG_BINDIR at the \
directory holding initdb.";

pub(crate) fn is_root() -> bool {
    // The effective uid, without unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|s| s.trim() == "0")
}

/// Finds the directory holding `initdb`.
pub fn pg_bindir() -> Result<PathBuf, String> {
    if let Ok(d) = std::env::var("DBSYNC_PG_BINDIR") {
        let p = PathBuf::from(d);
        if p.join("initdb").exists() {
            return Ok(p);
        }
        return Err(format!("DBSYNC_PG_BINDIR has no initdb. {INSTALL_HINT}"));
    }
    // Debian installs versioned server binaries; take the newest.
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((v, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Ok(bin);
        }
    }
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if p.join("initdb").exists() {
            return Ok(p);
        }
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir);
        if p.join("initdb").exists() && p.join("pg_ctl").exists() {
            return Ok(p.to_path_buf());
        }
    }
    Err(INSTALL_HINT.to_string())
}

/// A free TCP port on 127.0.0.1 (best effort: another process may take it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

impl PgServer {
    /// Starts a server; panics with a clear message when it cannot.
    pub fn start(opts: PgOptions) -> Self {
        match Self::try_start(&opts) {
            Ok(s) => s,
            Err(first) => {
                // A port race with a parallel test is the usual cause: try once more.
                Self::try_start(&opts).unwrap_or_else(|e| {
                    panic!(
                        "cannot start a private PostgreSQL server: {e}\n(first attempt: {first})"
                    )
                })
            }
        }
    }

    pub fn try_start(opts: &PgOptions) -> Result<Self, String> {
        let bindir = pg_bindir()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("dbsync-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let data = dir.path().join("data");
        let port = free_port();
        let mut server = Self {
            dir,
            bindir,
            port,
            as_postgres,
            password: None,
        };
        if as_postgres {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(server.dir.path()),
                "chown of the data directory to postgres",
            )?;
        }
        let mut initdb = server.cmd("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "-A",
            "trust",
        ]);
        if let PgAuth::Password { method, password } = &opts.auth {
            let pwfile = server.dir.path().join("pw");
            std::fs::write(&pwfile, password).map_err(|e| e.to_string())?;
            if as_postgres {
                run(
                    Command::new("chown")
                        .args(["postgres:postgres"])
                        .arg(&pwfile),
                    "chown pwfile",
                )?;
            }
            initdb
                .arg(format!("--auth-host={method}"))
                .arg("--auth-local=trust")
                .arg(format!("--pwfile={}", pwfile.display()));
            server.password = Some(password.clone());
        }
        run(&mut initdb, "initdb")?;
        let mut conf = vec![
            format!("port = {port}"),
            "listen_addresses = '127.0.0.1'".to_string(),
            format!(
                "unix_socket_directories = '{}'",
                server.dir.path().display()
            ),
            format!(
                "wal_level = {}",
                if opts.logical { "logical" } else { "replica" }
            ),
            "max_replication_slots = 20".into(),
            "max_wal_senders = 20".into(),
            "max_connections = 100".into(),
            "shared_buffers = 128MB".into(),
            "log_min_messages = warning".into(),
            "wal_sender_timeout = 60s".into(),
        ];
        if !opts.durable {
            conf.extend([
                "fsync = off".into(),
                "synchronous_commit = off".into(),
                "full_page_writes = off".into(),
            ]);
        }
        conf.extend(opts.extra_conf.iter().cloned());
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).map_err(|e| e.to_string())?;
        text.push_str("\n# dbsync testkit\n");
        text.push_str(&conf.join("\n"));
        text.push('\n');
        std::fs::write(&conf_path, text).map_err(|e| e.to_string())?;
        server.pg_ctl_start()?;
        Ok(server)
    }

    fn cmd(&self, bin: &str) -> Command {
        let path = self.bindir.join(bin);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let log = self.dir.path().join("server.log");
        run(
            self.cmd("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        )
        .map_err(|e| {
            format!(
                "{e}\nserver log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        Ok(())
    }

    /// Stops the server (`fast` mode) and starts it again on the same port and data.
    pub fn restart(&self) {
        self.stop_mode("fast");
        self.pg_ctl_start()
            .expect("restarting the private PostgreSQL server");
    }

    fn stop_mode(&self, mode: &str) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "stop"])
            .output();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's `bin` directory (for `psql`, `pg_recvlogical`, ...).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// `postgres://postgres[:password]@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        match &self.password {
            Some(p) => format!("postgres://postgres:{p}@127.0.0.1:{}/{db}", self.port),
            None => format!("postgres://postgres@127.0.0.1:{}/{db}", self.port),
        }
    }

    /// A libpq-style key/value connection string.
    pub fn conn_str(&self, db: &str) -> String {
        let mut s = format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        );
        if let Some(p) = &self.password {
            s.push_str(&format!(" password={p}"));
        }
        s
    }

    /// Connects with tokio-postgres; the connection task runs on the current runtime.
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.conn_str(db), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connecting to private PostgreSQL on port {}: {e}",
                    self.port
                )
            });
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Creates a database (owned by `postgres`).
    pub async fn create_database(&self, name: &str) {
        let c = self.connect("postgres").await;
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    }

    /// Waits until the server accepts connections (after a restart, say).
    pub async fn wait_ready(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            if tokio_postgres::connect(&self.conn_str("postgres"), tokio_postgres::NoTls)
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "private PostgreSQL did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop_mode("immediate");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_a_logical_server_and_accepts_queries() {
        let pg = PgServer::start(PgOptions::default());
        let c = pg.connect("postgres").await;
        let row = c.query_one("SHOW wal_level", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "logical");
        pg.create_database("x").await;
        let c2 = pg.connect("x").await;
        c2.batch_execute("CREATE TABLE t(id int primary key)")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn password_auth_works_over_tcp() {
        let pg = PgServer::start(PgOptions {
            auth: PgAuth::Password {
                method: "scram-sha-256".into(),
                password: "pw-1".into(),
            },
            ..Default::default()
        });
        let c = pg.connect("postgres").await;
        c.simple_query("SELECT 1").await.unwrap();
        let bad = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres password=wrong",
            pg.port()
        );
        assert!(tokio_postgres::connect(&bad, tokio_postgres::NoTls)
            .await
            .is_err());
    }
}

//! Private MariaDB servers: `mariadb-install-db` into a temporary directory
//! and `mariadbd` on a free loopback port, with a ROW binlog
//! (`binlog_format=ROW`, `binlog_row_image=FULL`) and a unique `server_id`.
//! As root the server runs as the `mysql` user. `root` may connect over TCP
//! with an empty password.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{free_port, is_root, run};

const INSTALL_HINT: &str = "MariaDB server binaries (mariadb-install-db, mariadbd) were not found. \
Install them with `apt-get install mariadb-server` (Debian/Ubuntu), or point DBSYNC_MARIADB_BINDIR at \
the directory holding mariadbd.";

static NEXT_SERVER_ID: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone)]
pub struct MariaDbOptions {
    /// Write a binlog (sources need one).
    pub binlog: bool,
    /// `server_id`; 0 picks a unique one.
    pub server_id: u32,
    /// Extra server options as `name=value` (without the leading `--`).
    pub extra: Vec<String>,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        Self {
            binlog: true,
            server_id: 0,
            extra: Vec::new(),
        }
    }
}

/// A running private MariaDB server; killed and deleted on drop.
pub struct MariaDbServer {
    dir: tempfile::TempDir,
    port: u16,
    server_id: u32,
    child: Option<Child>,
    mariadbd: PathBuf,
    args: Vec<String>,
    client: PathBuf,
}

fn find(names: &[&str], dirs: &[PathBuf]) -> Option<PathBuf> {
    for d in dirs {
        for n in names {
            let p = d.join(n);
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(d) = std::env::var("DBSYNC_MARIADB_BINDIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from));
    dirs.extend(
        std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .map(PathBuf::from),
    );
    dirs
}

impl MariaDbServer {
    /// Starts a server; panics with a clear message when it cannot.
    pub fn start(opts: MariaDbOptions) -> Self {
        match Self::try_start(&opts) {
            Ok(s) => s,
            Err(first) => Self::try_start(&opts).unwrap_or_else(|e| {
                panic!("cannot start a private MariaDB server: {e}\n(first attempt: {first})")
            }),
        }
    }

    pub fn try_start(opts: &MariaDbOptions) -> Result<Self, String> {
        let dirs = search_dirs();
        let install =
            find(&["mariadb-install-db", "mysql_install_db"], &dirs).ok_or(INSTALL_HINT)?;
        let mariadbd = find(&["mariadbd", "mysqld"], &dirs).ok_or(INSTALL_HINT)?;
        let client = find(&["mariadb", "mysql"], &dirs).ok_or(INSTALL_HINT)?;
        let dir = tempfile::Builder::new()
            .prefix("dbsync-mariadb-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let data = dir.path().join("data");
        let binlog_dir = dir.path().join("binlog");
        std::fs::create_dir_all(&binlog_dir).map_err(|e| e.to_string())?;
        // A private temporary directory: internal temporary tables of
        // servers running side by side never meet in /tmp.
        std::fs::create_dir_all(dir.path().join("tmp")).map_err(|e| e.to_string())?;
        let root = is_root();
        if root {
            run(
                Command::new("chown")
                    .args(["-R", "mysql:mysql"])
                    .arg(dir.path()),
                "chown of the data directory to mysql",
            )?;
        }
        let mut cmd = Command::new(&install);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if root {
            cmd.arg("--user=mysql");
        }
        run(&mut cmd, "mariadb-install-db")?;
        let port = free_port();
        let server_id = if opts.server_id != 0 {
            opts.server_id
        } else {
            100 + std::process::id() % 10_000 * 10 + NEXT_SERVER_ID.fetch_add(1, Ordering::Relaxed)
        };
        let mut args = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", data.display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--socket={}", dir.path().join("mysqld.sock").display()),
            format!("--pid-file={}", dir.path().join("mysqld.pid").display()),
            format!("--log-error={}", dir.path().join("error.log").display()),
            format!("--server-id={server_id}"),
            "--skip-name-resolve".into(),
            format!("--tmpdir={}", dir.path().join("tmp").display()),
            "--innodb-buffer-pool-size=128M".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
            "--max-connections=200".into(),
            "--character-set-server=utf8mb4".into(),
            "--collation-server=utf8mb4_general_ci".into(),
        ];
        if opts.binlog {
            args.extend([
                format!("--log-bin={}", binlog_dir.join("mysql-bin").display()),
                "--binlog-format=ROW".into(),
                "--binlog-row-image=FULL".into(),
            ]);
        }
        if root {
            args.push("--user=mysql".into());
        }
        args.extend(opts.extra.iter().map(|e| format!("--{e}")));
        let mut server = Self {
            dir,
            port,
            server_id,
            child: None,
            mariadbd,
            args,
            client,
        };
        server.spawn()?;
        // root@localhost has an empty password; allow it from 127.0.0.1 too.
        server.exec_socket(
            "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY ''; \
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION; FLUSH PRIVILEGES;",
        )?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(&self.mariadbd)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run mariadbd: {e}"))?;
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if self.exec_socket("SELECT 1").is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("mariadbd exited ({st}):\n{}", self.log()));
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("mariadbd did not become ready:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn exec_socket(&self, sql: &str) -> Result<String, String> {
        let out = run(
            Command::new(&self.client)
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket().display()))
                .args(["-uroot", "--batch", "--skip-column-names", "-e", sql]),
            "mariadb client",
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs SQL as root with the `mariadb` client; returns its tab-separated output.
    pub fn exec(&self, sql: &str) -> String {
        self.exec_socket(sql)
            .unwrap_or_else(|e| panic!("SQL on private MariaDB failed: {e}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    /// `mysql://root@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database (utf8mb4).
    pub fn create_database(&self, name: &str) {
        self.exec(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"));
    }

    /// The server's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Directory of the binlog files.
    pub fn binlog_dir(&self) -> PathBuf {
        self.dir.path().join("binlog")
    }

    /// Stops the server (SIGTERM, clean) and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("restarting the private MariaDB server");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_a_row_binlog_and_accepts_tcp_root() {
        let db = MariaDbServer::start(MariaDbOptions::default());
        let out = db.exec("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id");
        let fields: Vec<&str> = out.trim().split('\t').collect();
        assert_eq!(fields[..3], ["1", "ROW", "FULL"], "{out}");
        assert_eq!(fields[3], db.server_id().to_string());
        db.create_database("shop");
        let tcp = Command::new(&db.client)
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{}", db.port()),
                "-uroot",
                "shop",
                "-e",
                "SELECT 1",
            ])
            .output()
            .unwrap();
        assert!(
            tcp.status.success(),
            "{}",
            String::from_utf8_lossy(&tcp.stderr)
        );
    }

    #[test]
    fn two_servers_get_different_server_ids() {
        let a = MariaDbServer::start(MariaDbOptions::default());
        let b = MariaDbServer::start(MariaDbOptions {
            binlog: false,
            ..Default::default()
        });
        assert_ne!(a.server_id(), b.server_id());
    }
}

//! A fleet test environment: one private PostgreSQL holding the metadata
//! database (`meta`), a source (`shop`) and a target (`reporting`); a key
//! file; daemons configured with `[metastore]` only.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use metastore::secrets::SecretKey;
use testkit::{PgAuth, PgOptions, PgServer};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::harness::Daemon;

pub const PASSWORD: &str = "fleet-S3cret$pw";

pub struct FleetEnv {
    pub pg: PgServer,
    pub dir: tempfile::TempDir,
    pub key: SecretKey,
}

impl FleetEnv {
    pub async fn new() -> Self {
        let env = Self::unmigrated().await;
        let mut meta = env.meta().await;
        metastore::meta::migrate(&mut meta).await.unwrap();
        env
    }

    /// The databases and the key file, with no schema in `meta` yet.
    pub async fn unmigrated() -> Self {
        let pg = PgServer::start(PgOptions {
            auth: PgAuth::Password {
                method: "scram-sha-256".into(),
                password: PASSWORD.into(),
            },
            ..Default::default()
        });
        for db in ["meta", "shop", "reporting"] {
            pg.create_database(db).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate();
        key.write_new(&dir.path().join("secret.key")).unwrap();
        Self { pg, dir, key }
    }

    pub async fn meta(&self) -> Client {
        self.pg.connect("meta").await
    }
    pub async fn source(&self) -> Client {
        self.pg.connect("shop").await
    }
    pub async fn target(&self) -> Client {
        self.pg.connect("reporting").await
    }

    /// The connection config JSON of a database of the test server, with the
    /// password encrypted as the CLI stores it.
    pub fn conn(&self, db: &str) -> serde_json::Value {
        serde_json::json!({
            "host": "127.0.0.1", "port": self.pg.port(), "database": db,
            "username": "postgres", "password": self.key.encrypt(PASSWORD), "ssl": false,
        })
    }

    /// Inserts a RUNNING PostgreSQL → PostgreSQL task of `tenant` mapping
    /// `public.<table>` for each table; returns its id.
    pub async fn add_task(
        &self,
        tenant: &str,
        code: &str,
        mode: &str,
        tables: &[&str],
        connector: serde_json::Value,
    ) -> Uuid {
        let meta = self.meta().await;
        let tenant_id: Uuid = meta
            .query_one(
                "SELECT tenant_id FROM tenants WHERE tenant_code = $1",
                &[&tenant],
            )
            .await
            .unwrap()
            .get(0);
        let task_id: Uuid = meta
            .query_one(
                "INSERT INTO sync_tasks (tenant_id, task_name, task_code, source_db_type, target_db_type,
                     source_connection_config, target_connection_config, connector_config, sync_mode, status)
                 VALUES ($1, $2, $2, 'POSTGRESQL', 'POSTGRESQL', $3, $4, $5, $6, 'RUNNING') RETURNING task_id",
                &[&tenant_id, &code, &self.conn("shop"), &self.conn("reporting"), &connector, &mode],
            )
            .await
            .unwrap()
            .get(0);
        for t in tables {
            meta.execute(
                "INSERT INTO table_mappings (task_id, source_schema, source_table, target_schema, target_table)
                 VALUES ($1, 'public', $2, 'public', $2)",
                &[&task_id, t],
            )
            .await
            .unwrap();
        }
        task_id
    }

    pub async fn add_tenant(&self, code: &str, max_connectors: i32, tps: i32) {
        self.meta()
            .await
            .execute(
                "INSERT INTO tenants (tenant_name, tenant_code, max_connectors, max_throughput_tps) VALUES ($1, $1, $2, $3)",
                &[&code, &max_connectors, &tps],
            )
            .await
            .unwrap();
    }

    /// A config with `[metastore]` only (no TOML tasks) for daemon `node`.
    pub fn config(&self, node: &str) -> PathBuf {
        let text = format!(
            "[daemon]\ndata_dir = \"{data}\"\n[daemon.admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [metastore]\nurl = \"postgres://postgres@127.0.0.1:{port}/meta\"\npassword_env = \"DBSYNC_TEST_META_PW\"\n\
             secret_key_file = \"{key}\"\nnode_id = \"{node}\"\nlease_ttl_secs = 6\npoll_interval_secs = 2\n",
            data = self.dir.path().join(format!("data-{node}")).display(),
            port = self.pg.port(),
            key = self.dir.path().join("secret.key").display(),
        );
        let path = self.dir.path().join(format!("{node}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn log_path(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}.log"))
    }

    pub fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }

    pub fn spawn(&self, node: &str) -> Daemon {
        let cfg = self.config(node);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(node))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dbsync"))
            .args(["run", "--config"])
            .arg(&cfg)
            .env("DBSYNC_LOG", "info")
            .env("DBSYNC_TEST_META_PW", PASSWORD)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning dbsync");
        Daemon { child }
    }

    /// Sets a task's status (as `dbsync task pause|resume|stop` does).
    pub async fn set_status(&self, task_id: Uuid, status: &str) {
        self.meta()
            .await
            .execute(
                "UPDATE sync_tasks SET status = $2 WHERE task_id = $1",
                &[&task_id, &status],
            )
            .await
            .unwrap();
    }

    pub async fn task_field<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &self,
        task_id: Uuid,
        column: &str,
    ) -> T {
        self.meta()
            .await
            .query_one(
                &format!("SELECT {column} FROM sync_tasks WHERE task_id = $1"),
                &[&task_id],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The node holding the task's unexpired lease.
    pub async fn owner(&self, task_id: Uuid) -> Option<String> {
        self.meta()
            .await
            .query_opt(
                "SELECT owner FROM task_leases WHERE task_id = $1 AND expires_at > now()",
                &[&task_id],
            )
            .await
            .unwrap()
            .map(|r| r.get(0))
    }

    /// Every log line of every daemon.
    pub fn all_logs(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }
}

/// Polls `check` until it returns Some, or panics with `what` and the logs.
pub async fn wait_for<T, F, Fut>(env: &FleetEnv, what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!(
                "{what}: not within {timeout:?}\n--- logs ---\n{}",
                env.all_logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Row count and digest of `table` in a database.
pub async fn table_digest(c: &Client, table: &str) -> Option<(i64, String)> {
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .unwrap()
        .get(0);
    if !exists {
        return None;
    }
    Some(crate::harness::digest(c, table, "id").await)
}

/// Waits until source and target hold the same rows of `table`.
pub async fn wait_same(env: &FleetEnv, table: &str, timeout: Duration) {
    let (src, dst) = (env.source().await, env.target().await);
    wait_for(env, &format!("{table} converged"), timeout, || async {
        let s = table_digest(&src, table).await;
        let d = table_digest(&dst, table).await;
        (s.is_some() && s == d).then_some(())
    })
    .await
}

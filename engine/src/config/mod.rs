//! Configuration types (TOML), validation and secret handling.
//!
//! Secrets never reach logs: connection URLs are kept in [`ConnUrl`], whose
//! `Debug`/`Display` hide the password, and resolved secrets in [`Secret`].
//! `${NAME}` in a URL is replaced by the environment variable `NAME` when the
//! connection is opened, never in the parsed file (so parse errors cannot echo
//! a secret).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

mod admin;
mod mapping;
mod metastore;
mod mysql;
mod postgres;
mod secret;

pub use admin::{AdminConfig, DEFAULT_ADMIN_LISTEN};
pub use mapping::{
    ColumnMapping, ErrorHandling, Literal, MappingConfig, Params, PrimaryKeyMapping, ScriptConfig,
    ScriptType, TransformRule, TransformType, TriggerPhase,
};
pub use metastore::{MetastoreConfig, PoolConfig};
pub use mysql::{MysqlSourceConfig, MysqlTargetConfig, ZeroDates, DERIVED_SERVER_ID_BASE};
pub use postgres::{PostgresSourceConfig, PostgresTargetConfig};
pub use secret::{interpolate, password_from_env, redact_url, ConnUrl, Secret};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// The metadata database; when set, tasks also come from its `sync_tasks`.
    #[serde(default)]
    pub metastore: Option<MetastoreConfig>,
    #[serde(default, rename = "task")]
    pub tasks: Vec<TaskConfig>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Where the RocksDB checkpoint store lives.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Seconds to wait for in-flight batches on shutdown.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_secs: u64,
    /// The HTTP admin endpoint (`[daemon.admin]`).
    #[serde(default)]
    pub admin: AdminConfig,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            log_format: LogFormat::Text,
            drain_timeout_secs: default_drain_timeout(),
            admin: AdminConfig::default(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/dbsync")
}
fn default_drain_timeout() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncMode {
    /// Copy the tables, then stop (task COMPLETED).
    FullOnly,
    /// Stream changes from now (or from the stored offset); no copy.
    IncrementalOnly,
    /// Copy the tables, then stream from the copy's consistent point.
    FullIncremental,
}

impl SyncMode {
    pub fn snapshots(self) -> bool {
        matches!(self, SyncMode::FullOnly | SyncMode::FullIncremental)
    }
    pub fn streams(self) -> bool {
        matches!(self, SyncMode::IncrementalOnly | SyncMode::FullIncremental)
    }
}

/// Defaults of the pipeline's bounds.
pub const DEFAULT_BATCH_SIZE: usize = 10_000;
pub const DEFAULT_BATCH_BYTES: usize = 32 * 1024 * 1024;
pub const DEFAULT_BATCH_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_QUEUE_CHUNKS: usize = 16;
pub const DEFAULT_CHUNK_EVENTS: usize = 1_024;
pub const DEFAULT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub name: String,
    #[serde(default = "default_sync_mode")]
    pub sync_mode: SyncMode,
    /// The most row changes in one target transaction (a larger source
    /// transaction is written in pieces of this size and committed once).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The most bytes of row data buffered before writing to the target.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// The longest complete transactions wait to be grouped with later ones.
    #[serde(default = "default_batch_timeout_ms")]
    pub batch_timeout_ms: u64,
    /// Capacity of the source → pipeline queue, in chunks of events.
    #[serde(default = "default_queue_chunks")]
    pub queue_chunks: usize,
    pub source: SourceConfig,
    pub target: TargetConfig,
    #[serde(default)]
    pub mapping: Vec<MappingConfig>,
}

fn default_sync_mode() -> SyncMode {
    SyncMode::FullIncremental
}
fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}
fn default_batch_bytes() -> usize {
    DEFAULT_BATCH_BYTES
}
fn default_batch_timeout_ms() -> u64 {
    DEFAULT_BATCH_TIMEOUT_MS
}
fn default_queue_chunks() -> usize {
    DEFAULT_QUEUE_CHUNKS
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    Postgresql(PostgresSourceConfig),
    /// A MySQL or MariaDB binlog (`type = "mysql"` or `"mariadb"`).
    #[serde(alias = "mariadb")]
    Mysql(MysqlSourceConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum TargetConfig {
    Postgresql(PostgresTargetConfig),
    /// A MySQL or MariaDB database (`type = "mysql"` or `"mariadb"`).
    #[serde(alias = "mariadb")]
    Mysql(MysqlTargetConfig),
}

impl TaskConfig {
    pub fn slot_name(&self) -> String {
        match &self.source {
            SourceConfig::Postgresql(c) => c
                .slot
                .clone()
                .unwrap_or_else(|| format!("dbsync_{}", sanitize_ident(&self.name))),
            // Binlog sources have no slot; the name is only informative.
            SourceConfig::Mysql(_) => format!("dbsync_{}", sanitize_ident(&self.name)),
        }
    }

    pub fn publication_name(&self) -> String {
        match &self.source {
            SourceConfig::Postgresql(c) => c
                .publication
                .clone()
                .unwrap_or_else(|| format!("dbsync_{}", sanitize_ident(&self.name))),
            SourceConfig::Mysql(_) => format!("dbsync_{}", sanitize_ident(&self.name)),
        }
    }

    /// Checks the task's settings (not the environment).
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Error::Config(format!("task {:?}: {msg}", self.name));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(bad(
                "task names may use only letters, digits, '_', '-' and '.'".into(),
            ));
        }
        if self.batch_size == 0 || self.batch_bytes == 0 || self.queue_chunks == 0 {
            return Err(bad(
                "batch_size, batch_bytes and queue_chunks must be greater than 0".into(),
            ));
        }
        match &self.source {
            SourceConfig::Postgresql(c) => c
                .validate(&self.slot_name(), &self.publication_name())
                .map_err(bad)?,
            SourceConfig::Mysql(c) => {
                let mapped: Vec<&str> = self.mapping.iter().map(|m| m.source.as_str()).collect();
                c.validate(&mapped).map_err(bad)?
            }
        }
        match &self.target {
            TargetConfig::Postgresql(c) => c.validate().map_err(bad)?,
            TargetConfig::Mysql(c) => c.validate().map_err(bad)?,
        }
        let mut seen = HashSet::new();
        for m in &self.mapping {
            m.validate().map_err(bad)?;
            if !seen.insert(m.source_id()) {
                return Err(bad(format!("source table {} is mapped twice", m.source)));
            }
        }
        if !self.mapping.is_empty() && self.mapping.iter().all(|m| !m.is_enabled) {
            return Err(bad(
                "every [[task.mapping]] has is_enabled = false: the task would replicate nothing"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Lowercases and replaces anything outside `[a-z0-9_]` with `_`.
pub fn sanitize_ident(s: &str) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Config {
    /// Parses TOML and validates it.
    pub fn parse(text: &str) -> Result<Self> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Self::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn validate(&self) -> Result<()> {
        if self.tasks.is_empty() && self.metastore.is_none() {
            return Err(Error::Config(
                "no [[task]] defined and no [metastore]: add a task, or point [metastore] url at the metadata database"
                    .into(),
            ));
        }
        if let Some(m) = &self.metastore {
            m.validate()?;
        }
        self.daemon.admin.validate()?;
        let mut names = HashSet::new();
        for t in &self.tasks {
            t.validate()?;
            if !names.insert(t.name.as_str()) {
                return Err(Error::Config(format!(
                    "task name {:?} is used twice",
                    t.name
                )));
            }
        }
        Ok(())
    }

    pub fn task(&self, name: &str) -> Option<&TaskConfig> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TableId;

    const MINIMAL: &str = r#"
[daemon]
data_dir = "/tmp/x"
[[task]]
name = "orders"
sync_mode = "FULL_INCREMENTAL"
[task.source]
type = "postgresql"
url = "postgres://user@127.0.0.1:5432/shop"
[task.target]
type = "postgresql"
url = "postgres://user@127.0.0.1:5433/reporting"
[[task.mapping]]
source = "public.orders"
target = "public.orders"
"#;

    #[test]
    fn minimal_config_parses() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.tasks.len(), 1);
        let t = &c.tasks[0];
        assert_eq!(t.sync_mode, SyncMode::FullIncremental);
        assert_eq!(t.slot_name(), "dbsync_orders");
        assert_eq!(t.mapping[0].target_id(), TableId::new("public", "orders"));
        assert_eq!(t.batch_size, DEFAULT_BATCH_SIZE);
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let text = MINIMAL.replace("sync_mode", "sync_mod");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("sync_mod"), "{err}");
    }

    #[test]
    fn bad_sync_mode_names_the_choices() {
        let text = MINIMAL.replace("FULL_INCREMENTAL", "SOMETIMES");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("FULL_ONLY"), "{err}");
    }

    #[test]
    fn invalid_task_name_and_zero_batch_are_rejected() {
        let err = Config::parse(&MINIMAL.replace("\"orders\"\nsync", "\"or ders\"\nsync"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("task names"), "{err}");
        let err = Config::parse(&MINIMAL.replace("sync_mode =", "batch_size = 0\nsync_mode ="))
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_size"), "{err}");
    }

    #[test]
    fn empty_config_is_rejected() {
        let err = Config::parse("").unwrap_err().to_string();
        assert!(
            err.contains("no [[task]]") && err.contains("[metastore]"),
            "{err}"
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db:5432/x?sslmode=require"),
            "postgres://bob:***@db:5432/x?sslmode=require"
        );
        assert_eq!(redact_url("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(
            redact_url("host=a password=hunter2 user=b"),
            "host=a password=*** user=b"
        );
        assert_eq!(
            redact_url("postgres://db/x?password=hunter2&a=b"),
            "postgres://db/x?password=***&a=b"
        );
        let u = ConnUrl::new("postgres://bob:s3cret@db/x");
        assert!(!format!("{u:?} {u}").contains("s3cret"));
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "***");
    }

    #[test]
    fn interpolation_reads_variables_and_names_missing_ones() {
        let got = interpolate("postgres://u:${PW}@h/db", |n| {
            (n == "PW").then(|| "p".into())
        })
        .unwrap();
        assert_eq!(got, "postgres://u:p@h/db");
        let err = interpolate("postgres://u:${NOPE}@h/db", |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("NOPE") && err.contains("not set"), "{err}");
        assert!(interpolate("x${A", |_| None).is_err());
    }
}

//! Configuration types (TOML), validation and secret handling.
//!
//! Secrets never reach logs: connection URLs are kept in [`ConnUrl`], whose
//! `Debug`/`Display` hide the password, and resolved secrets in [`Secret`].
//! `${NAME}` in a URL is replaced by the environment variable `NAME` when the
//! connection is opened, never in the parsed file (so parse errors cannot echo
//! a secret).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::schema::TableId;

/// A secret string: `Debug` and `Display` print `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself: pass it to a driver, never to a log or an error.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A connection URL as written in the config (`${NAME}` references unresolved).
/// Printing it masks any password in the user-info part.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ConnUrl(String);

impl ConnUrl {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// Resolves `${NAME}` references from the environment. The result is a
    /// secret (it may now contain a password).
    pub fn resolve(&self) -> Result<Secret> {
        interpolate(&self.0, |name| std::env::var(name).ok()).map(Secret)
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Masks the password of `scheme://user:password@host/...` and of
/// `password=...` key/value pairs.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "***");
            }
        }
    }
    // key=value forms, also inside a query string
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("password=") {
        result.push_str(&rest[..i + "password=".len()]);
        rest = &rest[i + "password=".len()..];
        let end = rest.find([' ', '&']).unwrap_or(rest.len());
        result.push_str("***");
        rest = &rest[end..];
    }
    result.push_str(rest);
    result
}

/// Replaces `${NAME}` with `lookup(NAME)`; a missing variable is an error
/// naming it (never its value).
pub fn interpolate(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            Error::Config("unterminated ${...} reference in a connection URL".into())
        })?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Config(format!(
                "invalid environment variable name {name:?} in a connection URL"
            )));
        }
        let value = lookup(name).ok_or_else(|| {
            Error::Config(format!(
                "environment variable {name} is not set (referenced as ${{{name}}} in a connection URL)"
            ))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads the environment variable holding a password.
pub fn password_from_env(var: &str) -> Result<Secret> {
    std::env::var(var).map(Secret).map_err(|_| {
        Error::Config(format!(
            "environment variable {var} (password_env) is not set"
        ))
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: DaemonConfig,
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
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            log_format: LogFormat::Text,
            drain_timeout_secs: default_drain_timeout(),
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum TargetConfig {
    Postgresql(PostgresTargetConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// `postgres://user@host:port/db`; `${NAME}` is read from the environment.
    pub url: ConnUrl,
    /// Environment variable holding the password (instead of putting it in the URL).
    pub password_env: Option<String>,
    /// Logical replication slot; default `dbsync_<task>`.
    pub slot: Option<String>,
    /// Publication; default `dbsync_<task>`.
    pub publication: Option<String>,
    /// Create the publication when it does not exist (for the mapped tables,
    /// or all tables when there is no mapping).
    #[serde(default = "yes")]
    pub create_publication: bool,
    /// Rows per snapshot chunk (the unit of resume).
    #[serde(default = "default_snapshot_chunk_rows")]
    pub snapshot_chunk_rows: usize,
    /// Seconds between standby status updates sent to the server.
    #[serde(default = "default_status_interval")]
    pub status_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTargetConfig {
    pub url: ConnUrl,
    pub password_env: Option<String>,
    /// Create missing target tables from the source schema.
    #[serde(default = "yes")]
    pub create_tables: bool,
}

fn yes() -> bool {
    true
}
fn default_snapshot_chunk_rows() -> usize {
    50_000
}
fn default_status_interval() -> u64 {
    10
}

/// Routes one source table to one target table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// `schema.table` in the source.
    pub source: String,
    /// `schema.table` in the target (default: same as `source`).
    pub target: Option<String>,
}

impl MappingConfig {
    pub fn source_id(&self) -> TableId {
        TableId::parse(&self.source, "public")
    }
    pub fn target_id(&self) -> TableId {
        TableId::parse(self.target.as_deref().unwrap_or(&self.source), "public")
    }
}

impl TaskConfig {
    pub fn slot_name(&self) -> String {
        match &self.source {
            SourceConfig::Postgresql(c) => c
                .slot
                .clone()
                .unwrap_or_else(|| format!("dbsync_{}", sanitize_ident(&self.name))),
        }
    }

    pub fn publication_name(&self) -> String {
        match &self.source {
            SourceConfig::Postgresql(c) => c
                .publication
                .clone()
                .unwrap_or_else(|| format!("dbsync_{}", sanitize_ident(&self.name))),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |msg: String| Error::Config(format!("task {:?}: {msg}", self.name));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(
                "task names may use only letters, digits, '_' and '-'".into()
            ));
        }
        if self.batch_size == 0 || self.batch_bytes == 0 || self.queue_chunks == 0 {
            return Err(bad(
                "batch_size, batch_bytes and queue_chunks must be greater than 0".into(),
            ));
        }
        match &self.source {
            SourceConfig::Postgresql(c) => {
                for (what, name) in [
                    ("slot", self.slot_name()),
                    ("publication", self.publication_name()),
                ] {
                    if name.is_empty()
                        || name.len() > 63
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    {
                        return Err(bad(format!(
                            "{what} name {name:?} must be 1-63 characters of a-z, 0-9 and '_'"
                        )));
                    }
                }
                if c.snapshot_chunk_rows == 0 {
                    return Err(bad("snapshot_chunk_rows must be greater than 0".into()));
                }
                if c.status_interval_secs == 0 {
                    return Err(bad("status_interval_secs must be greater than 0".into()));
                }
                check_url(&c.url, "source")?;
            }
        }
        match &self.target {
            TargetConfig::Postgresql(c) => check_url(&c.url, "target")?,
        }
        let mut seen = HashSet::new();
        for m in &self.mapping {
            if m.source.trim().is_empty() {
                return Err(bad("a [[task.mapping]] has an empty `source`".into()));
            }
            if !seen.insert(m.source_id()) {
                return Err(bad(format!("source table {} is mapped twice", m.source)));
            }
        }
        Ok(())
    }
}

fn check_url(url: &ConnUrl, what: &str) -> Result<()> {
    let s = &url.0;
    if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
        return Err(Error::Config(format!(
            "{what} url {} must start with postgres:// or postgresql://",
            url.redacted()
        )));
    }
    Ok(())
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
        if self.tasks.is_empty() {
            return Err(Error::Config(
                "no [[task]] defined: add at least one task".into(),
            ));
        }
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
        assert!(err.contains("no [[task]]"), "{err}");
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

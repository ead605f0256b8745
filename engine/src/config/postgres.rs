//! PostgreSQL source and target settings.

use serde::Deserialize;

use super::secret::ConnUrl;

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

impl PostgresSourceConfig {
    /// Checks the settings; `slot` and `publication` are the effective names.
    pub(crate) fn validate(&self, slot: &str, publication: &str) -> Result<(), String> {
        for (what, name) in [("slot", slot), ("publication", publication)] {
            if name.is_empty()
                || name.len() > 63
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(format!(
                    "{what} name {name:?} must be 1-63 characters of a-z, 0-9 and '_'"
                ));
            }
        }
        if self.snapshot_chunk_rows == 0 {
            return Err("snapshot_chunk_rows must be greater than 0".into());
        }
        if self.status_interval_secs == 0 {
            return Err("status_interval_secs must be greater than 0".into());
        }
        self.url.check_scheme(&["postgres", "postgresql"], "source")
    }
}

impl PostgresTargetConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.url.check_scheme(&["postgres", "postgresql"], "target")
    }
}

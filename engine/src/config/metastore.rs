//! `[metastore]`: the metadata PostgreSQL database (tenants, tasks, mappings,
//! offsets mirror, metrics, alerts, audit). Absent: the daemon runs from the
//! TOML `[[task]]`s alone.

use std::path::PathBuf;

use serde::Deserialize;

use super::secret::{password_from_env, ConnUrl, Secret};
use crate::error::{Error, Result};

/// Settings of the metadata database connection and of this daemon's part in
/// the fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetastoreConfig {
    /// A libpq URL or key/value string. Several hosts with
    /// `target_session_attrs=read-write` (`postgres://u@a:5432,b:5432/db?target_session_attrs=read-write`
    /// or `host=a,b port=5432,5432 … target_session_attrs=read-write`) follow a
    /// failover to the standby without a restart.
    pub url: ConnUrl,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The key file (32 random bytes, base64) that decrypts the passwords
    /// stored in `sync_tasks.*_connection_config`. Must be readable only by
    /// the service user. See `dbsync secret keygen`.
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// This daemon's name in task leases (default: the host name and process id).
    #[serde(default)]
    pub node_id: Option<String>,
    /// How long a task lease lasts without renewal; a dead daemon's tasks move
    /// to another one after at most this long plus `poll_interval_secs`.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_secs: u64,
    /// Safety-net re-read of the tasks, beside LISTEN/NOTIFY.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u64,
    /// Apply pending migrations at start-up instead of refusing to run.
    #[serde(default)]
    pub auto_migrate: bool,
    /// Connection pool settings.
    #[serde(default)]
    pub pool: PoolConfig,
}

/// Connection pool settings of the metadata database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_min_connections")]
    pub min_connections: u32,
    /// How long a caller waits for a free connection.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// An idle connection is closed after this long (and replaced while fewer
    /// than `min_connections` are open).
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Every connection is replaced after this long (follows DNS/failover changes).
    #[serde(default = "default_max_lifetime_secs")]
    pub max_lifetime_secs: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            min_connections: default_min_connections(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
            idle_timeout_secs: default_idle_timeout_secs(),
            max_lifetime_secs: default_max_lifetime_secs(),
        }
    }
}

fn default_lease_ttl() -> u64 {
    15
}
fn default_poll_interval() -> u64 {
    10
}
fn default_max_connections() -> u32 {
    10
}
fn default_min_connections() -> u32 {
    1
}
fn default_acquire_timeout_ms() -> u64 {
    5_000
}
fn default_idle_timeout_secs() -> u64 {
    600
}
fn default_max_lifetime_secs() -> u64 {
    1_800
}

impl MetastoreConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("[metastore] {m}")));
        if self.url.0.trim().is_empty() {
            return bad("url is empty: set the metadata database URL");
        }
        if self.lease_ttl_secs < 3 {
            return bad("lease_ttl_secs must be at least 3");
        }
        if self.poll_interval_secs == 0 {
            return bad("poll_interval_secs must be greater than 0");
        }
        let p = &self.pool;
        if p.max_connections < 2 {
            return bad("pool.max_connections must be at least 2 (one is held for LISTEN)");
        }
        if p.min_connections > p.max_connections {
            return bad("pool.min_connections is larger than pool.max_connections");
        }
        if p.acquire_timeout_ms == 0 {
            return bad("pool.acquire_timeout_ms must be greater than 0");
        }
        if let Some(id) = &self.node_id {
            if id.trim().is_empty() || id.len() > 200 {
                return bad("node_id must be 1 to 200 characters");
            }
        }
        Ok(())
    }

    /// The connection string with `${VAR}` resolved.
    pub fn resolved_url(&self) -> Result<Secret> {
        self.url.resolve()
    }

    /// The password from `password_env`, when set.
    pub fn password(&self) -> Result<Option<Secret>> {
        self.password_env
            .as_deref()
            .map(password_from_env)
            .transpose()
    }
}

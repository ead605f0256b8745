//! The metadata database connection pool (bb8 over tokio-postgres).
//!
//! The URL may name several hosts with `target_session_attrs=read-write`:
//! every new connection tries them in order and keeps the first writable one,
//! so after the primary fails over to its standby, connections broken by the
//! failover are dropped and their replacements find the new primary, with no
//! restart. `max_lifetime` also recycles connections that outlive a switch.

use std::str::FromStr;
use std::time::Duration;

use bb8::{Pool, PooledConnection, RunError};
use bb8_postgres::PostgresConnectionManager;
use engine::config::{MetastoreConfig, PoolConfig, Secret};
use tokio_postgres::NoTls;

use super::error::{MetaError, MetaResult};

type Manager = PostgresConnectionManager<NoTls>;
/// A connection checked out of the pool; derefs to a `tokio_postgres::Client`.
pub type MetaConn<'a> = PooledConnection<'a, Manager>;

/// The metadata database: a pool of connections plus the settings to open a
/// dedicated one (LISTEN).
#[derive(Clone)]
pub struct MetaDb {
    pool: Pool<Manager>,
    pg: tokio_postgres::Config,
}

impl std::fmt::Debug for MetaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password, but say nothing anyway.
        f.write_str("MetaDb")
    }
}

/// Parses a libpq URL or key/value string (several hosts allowed) and applies
/// the password from the environment when given.
pub fn pg_config(url: &Secret, password: Option<&Secret>) -> MetaResult<tokio_postgres::Config> {
    let mut cfg = tokio_postgres::Config::from_str(url.expose()).map_err(|e| {
        // The parser's message names the bad part, not the value.
        MetaError::Invalid(format!(
            "[metastore] url is not a valid PostgreSQL connection string: {e}"
        ))
    })?;
    if let Some(pw) = password {
        cfg.password(pw.expose());
    }
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(5));
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("dbsync");
    }
    cfg.keepalives_idle(Duration::from_secs(30));
    Ok(cfg)
}

impl MetaDb {
    /// Builds the pool without connecting (connections open on demand; the
    /// first [`MetaDb::get`] reports an unreachable database).
    pub fn new(config: &MetastoreConfig) -> MetaResult<Self> {
        let url = config
            .resolved_url()
            .map_err(|e| MetaError::Invalid(e.to_string()))?;
        let password = config
            .password()
            .map_err(|e| MetaError::Invalid(e.to_string()))?;
        let pg = pg_config(&url, password.as_ref())?;
        Ok(Self::with_pg_config(pg, &config.pool))
    }

    pub fn with_pg_config(pg: tokio_postgres::Config, settings: &PoolConfig) -> Self {
        let manager = PostgresConnectionManager::new(pg.clone(), NoTls);
        let pool = Pool::builder()
            .max_size(settings.max_connections)
            .min_idle(Some(settings.min_connections))
            .connection_timeout(Duration::from_millis(settings.acquire_timeout_ms))
            .idle_timeout(Some(Duration::from_secs(settings.idle_timeout_secs.max(1))))
            .max_lifetime(Some(Duration::from_secs(settings.max_lifetime_secs.max(1))))
            .test_on_check_out(true)
            .retry_connection(false)
            .build_unchecked(manager);
        Self { pool, pg }
    }

    /// A pooled connection, or a transient error when none can be had in
    /// the acquire timeout.
    pub async fn get(&self) -> MetaResult<MetaConn<'_>> {
        self.pool.get().await.map_err(|e| match e {
            RunError::User(e) => MetaError::Unavailable(describe_connect_error(&e)),
            RunError::TimedOut => MetaError::Unavailable(
                "no connection within the acquire timeout ([metastore.pool] acquire_timeout_ms); \
                 is the database reachable and max_connections large enough?"
                    .into(),
            ),
        })
    }

    /// A dedicated connection outside the pool (for LISTEN). The returned
    /// connection future must be polled (it carries notifications).
    pub async fn connect_dedicated(
        &self,
    ) -> MetaResult<(
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    )> {
        self.pg
            .connect(NoTls)
            .await
            .map_err(|e| MetaError::Unavailable(describe_connect_error(&e)))
    }

    /// Pool occupancy (for metrics and tests): (open connections, idle ones).
    pub fn state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }
}

fn describe_connect_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                m.push_str(&format!(": {s}"));
                src = s.source();
            }
            m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_host_urls_parse_in_both_forms() {
        let c = pg_config(
            &Secret::new("postgres://u@a:5432,b:5433/meta?target_session_attrs=read-write"),
            None,
        )
        .unwrap();
        assert_eq!(c.get_hosts().len(), 2);
        assert_eq!(c.get_ports(), &[5432, 5433]);
        assert_eq!(
            c.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        let c = pg_config(
            &Secret::new("host=a,b port=1,2 dbname=m user=u target_session_attrs=read-write"),
            Some(&Secret::new("pw")),
        )
        .unwrap();
        assert_eq!(c.get_hosts().len(), 2);
        assert_eq!(c.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn bad_url_error_does_not_echo_the_password() {
        let err = pg_config(&Secret::new("postgres://u:hunter2@a:notaport/x"), None)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("[metastore] url"), "{err}");
    }
}

//! The metadata database connection pool (bb8 over tokio-postgres).
//!
//! The URL may name several hosts with `target_session_attrs=read-write`:
//! every new connection tries them in order and keeps the first writable one,
//! so after the primary fails over to its standby, connections broken by the
//! failover are dropped (checked on every checkout) and their replacements
//! find the new primary, with no restart. `max_lifetime` also recycles
//! connections that outlive a switch. `metastore/tests/failover.rs` proves
//! this against a real primary and a promoted streaming standby.
//!
//! bb8 settings that matter for that:
//! - A waiting checkout always has a connection attempt under way. bb8 0.9
//!   starts one for a waiter only when the waiter arrives (or is woken), and
//!   a failed attempt wakes nobody: the waiter then sleeps out its whole
//!   timeout with nothing trying (measured: a promoted standby found up to
//!   `acquire_timeout_ms` late). So bb8's own checkout timeout is a short
//!   slice of `acquire_timeout_ms` (`attempt_slice`) and [`MetaDb::get`]
//!   asks again slice after slice until `acquire_timeout_ms` is spent; with
//!   `retry_connection(true)` each attempt retries with backoff within its
//!   slice. With retries off, bb8 makes one attempt and still does not hand
//!   its error to the waiter.
//! - The errors of those attempts go to an error sink that keeps the last
//!   one: bb8 0.9 reports a failed checkout only as a timeout, and the
//!   caller's message names the real cause (refused, not writable, ...).
//! - The reaper runs at least as often as `idle_timeout_secs` and
//!   `max_lifetime_secs` (bb8 defaults to every 30 s), so idle connections
//!   close about when configured (bb8 closes every connection idle that long
//!   and opens new ones up to `min_connections`).

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bb8::{ErrorSink, Pool, PooledConnection, RunError};
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
    last_error: LastError,
    acquire_timeout: Duration,
    max_connections: u32,
}

/// bb8's checkout timeout: a quarter of the acquire timeout, 100 ms to 1 s.
fn attempt_slice(acquire_timeout: Duration) -> Duration {
    (acquire_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(1))
        .min(acquire_timeout)
}

/// The pool's error sink: keeps the last failure of a connection attempt
/// (or of a checkout test) with its time, for the message of a checkout that
/// times out.
#[derive(Debug, Clone, Default)]
struct LastError(Arc<Mutex<Option<(Instant, String)>>>);

impl LastError {
    /// The last error recorded at or after `since`.
    fn since(&self, since: Instant) -> Option<String> {
        let last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, m)| m.clone())
    }
}

impl ErrorSink<tokio_postgres::Error> for LastError {
    fn sink(&self, error: tokio_postgres::Error) {
        let message = describe_connect_error(&error);
        tracing::debug!(error = %message, "metadata database connection attempt failed");
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), message));
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(self.clone())
    }
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
        let last_error = LastError::default();
        let idle_timeout = Duration::from_secs(settings.idle_timeout_secs.max(1));
        let max_lifetime = Duration::from_secs(settings.max_lifetime_secs.max(1));
        // bb8 checks idle timeouts and lifetimes every `reaper_rate` (30 s by
        // default): often enough that neither overstays by more than itself.
        let reaper_rate = idle_timeout.min(max_lifetime).min(Duration::from_secs(30));
        let acquire_timeout = Duration::from_millis(settings.acquire_timeout_ms.max(1));
        let pool = Pool::builder()
            .max_size(settings.max_connections)
            .min_idle(Some(settings.min_connections))
            // One slice of a checkout; `get` spends the whole acquire timeout.
            .connection_timeout(attempt_slice(acquire_timeout))
            .idle_timeout(Some(idle_timeout))
            .max_lifetime(Some(max_lifetime))
            .reaper_rate(reaper_rate)
            .test_on_check_out(true)
            // See the module documentation: retries within the acquire
            // timeout are what find a promoted standby promptly.
            .retry_connection(true)
            .error_sink(Box::new(last_error.clone()))
            .build_unchecked(manager);
        Self {
            pool,
            pg,
            last_error,
            acquire_timeout,
            max_connections: settings.max_connections,
        }
    }

    /// A pooled connection, or a transient error when none can be had in
    /// the acquire timeout. Asks bb8 slice after slice so that a connection
    /// attempt is under way for as long as the caller waits (see the module
    /// documentation).
    pub async fn get(&self) -> MetaResult<MetaConn<'_>> {
        let started = Instant::now();
        let deadline = started + self.acquire_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.pool.get()).await {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(RunError::User(e))) => {
                    return Err(MetaError::Unavailable(describe_connect_error(&e)))
                }
                Ok(Err(RunError::TimedOut)) if Instant::now() < deadline => continue,
                Ok(Err(RunError::TimedOut)) | Err(_) => return Err(self.timed_out(started)),
            }
        }
    }

    fn timed_out(&self, started: Instant) -> MetaError {
        let ms = self.acquire_timeout.as_millis();
        MetaError::Unavailable(match self.last_error.since(started) {
            Some(cause) => format!(
                "no connection within the acquire timeout ([metastore.pool] \
                 acquire_timeout_ms = {ms}); last connection error: {cause}"
            ),
            None => format!(
                "no free connection within the acquire timeout ([metastore.pool] \
                 acquire_timeout_ms = {ms}): all {} connections ([metastore.pool] \
                 max_connections) are in use, or the database is slow to accept one",
                self.max_connections
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
    fn checkout_slices_are_a_quarter_of_the_acquire_timeout_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(attempt_slice(ms(5_000)), ms(1_000));
        assert_eq!(attempt_slice(ms(60_000)), ms(1_000));
        assert_eq!(attempt_slice(ms(2_000)), ms(500));
        assert_eq!(attempt_slice(ms(200)), ms(100));
        assert_eq!(attempt_slice(ms(50)), ms(50));
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

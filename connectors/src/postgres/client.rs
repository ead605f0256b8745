//! Opening source connections: URL and password resolution, session settings.

use std::str::FromStr;

use engine::config::{password_from_env, PostgresSourceConfig};
use engine::pgtext::SESSION_SETTINGS;
use tokio_postgres::{Client, Config, NoTls};
use tracing::debug;

use super::error::PgSourceError;

/// Builds the driver configuration from the task's source settings, with the
/// password from `password_env` when set. Errors name the setting, never the secret.
pub fn pg_config(cfg: &PostgresSourceConfig) -> Result<Config, PgSourceError> {
    let url = cfg
        .url
        .resolve()
        .map_err(|e| PgSourceError::Config(e.to_string()))?;
    let mut pc = Config::from_str(url.expose()).map_err(|e| {
        PgSourceError::Config(format!(
            "source url {} is not valid: {e}",
            cfg.url.redacted()
        ))
    })?;
    if let Some(var) = &cfg.password_env {
        let pw = password_from_env(var).map_err(|e| PgSourceError::Config(e.to_string()))?;
        pc.password(pw.expose());
    }
    if pc.get_application_name().is_none() {
        pc.application_name("dbsync");
    }
    match pc.get_ssl_mode() {
        tokio_postgres::config::SslMode::Disable | tokio_postgres::config::SslMode::Prefer => {}
        _ => {
            return Err(PgSourceError::Config(
                "sslmode=require is not supported yet: use sslmode=disable or prefer on a trusted network".into(),
            ))
        }
    }
    Ok(pc)
}

/// Connects a regular (non-replication) session with dbsync's session settings.
pub async fn connect(pc: &Config) -> Result<Client, PgSourceError> {
    let (client, conn) = pc
        .connect(NoTls)
        .await
        .map_err(|e| PgSourceError::Connect(super::error::describe_pg(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "source connection closed");
        }
    });
    let mut set = String::from("SET standard_conforming_strings = on;");
    for (k, v) in SESSION_SETTINGS {
        set.push_str(&format!("SET {k} = '{v}';"));
    }
    client
        .batch_execute(&set)
        .await
        .map_err(|e| PgSourceError::query("applying session settings", e))?;
    Ok(client)
}

/// Quotes an identifier for SQL (`"a""b"`).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a string literal (standard_conforming_strings on).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}

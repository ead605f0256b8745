//! Opening source connections: URL and password resolution, session
//! settings, server flavor, and small query helpers.

use engine::config::{password_from_env, MysqlSourceConfig};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row};

use super::error::MysqlSourceError;

/// Which server family is on the other end (their binlogs differ in GTIDs,
/// snapshot support and a few event types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// What the source server says about itself.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub flavor: Flavor,
    /// `VERSION()`.
    pub version: String,
    /// The server's own `server_id`.
    pub server_id: u32,
}

/// Session settings of every non-replication connection: UTF-8 results,
/// UTC for `TIMESTAMP` values, and long write timeouts so that a reader that
/// waits for the pipeline is not cut off mid-result.
pub const SESSION_SETUP: &[&str] = &[
    "SET NAMES utf8mb4",
    "SET time_zone = '+00:00'",
    "SET SESSION net_write_timeout = 3600",
    "SET SESSION net_read_timeout = 3600",
];

/// Builds the driver options from the task's source settings, with the
/// password from `password_env` when set. Errors name the setting, never the secret.
pub fn opts(cfg: &MysqlSourceConfig) -> Result<Opts, MysqlSourceError> {
    let url = cfg
        .url
        .resolve()
        .map_err(|e| MysqlSourceError::Config(e.to_string()))?;
    let text = url.expose();
    let text = match text.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => text.to_string(),
    };
    let parsed = Opts::from_url(&text).map_err(|_| {
        MysqlSourceError::Config(format!(
            "source url {} is not a valid mysql:// URL",
            cfg.url.redacted()
        ))
    })?;
    let mut b = OptsBuilder::from_opts(parsed)
        .prefer_socket(false)
        .stmt_cache_size(16);
    if let Some(var) = &cfg.password_env {
        let pw = password_from_env(var).map_err(|e| MysqlSourceError::Config(e.to_string()))?;
        b = b.pass(Some(pw.expose().to_string()));
    }
    Ok(b.into())
}

/// Connects a regular session with dbsync's session settings.
pub async fn connect(opts: &Opts) -> Result<Conn, MysqlSourceError> {
    let mut conn = Conn::new(opts.clone())
        .await
        .map_err(|e| MysqlSourceError::Connect(super::error::describe(&e)))?;
    for s in SESSION_SETUP {
        conn.query_drop(*s)
            .await
            .map_err(|e| MysqlSourceError::query("applying session settings", e))?;
    }
    Ok(conn)
}

/// Reads the server's flavor, version and server id.
pub async fn server_info(conn: &mut Conn) -> Result<ServerInfo, MysqlSourceError> {
    let row: Option<(String, u32)> = conn
        .query_first("SELECT VERSION(), @@server_id")
        .await
        .map_err(|e| MysqlSourceError::query("reading the server version", e))?;
    let (version, server_id) = row.unwrap_or_default();
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    Ok(ServerInfo {
        flavor,
        version,
        server_id,
    })
}

/// One global or session variable as text (`None` when the server has no such variable).
pub async fn variable(conn: &mut Conn, name: &str) -> Result<Option<String>, MysqlSourceError> {
    let rows: Vec<Row> = conn
        .exec("SHOW VARIABLES WHERE Variable_name = ?", (name,))
        .await
        .map_err(|e| MysqlSourceError::query(format!("reading variable {name}"), e))?;
    Ok(rows.into_iter().next().and_then(|mut r| text_at(&mut r, 1)))
}

/// The text of column `i` of a row (NULL and non-UTF-8 → `None`).
pub fn text_at(row: &mut Row, i: usize) -> Option<String> {
    match row.take::<mysql_async::Value, usize>(i)? {
        mysql_async::Value::Bytes(b) => String::from_utf8(b).ok(),
        mysql_async::Value::Int(v) => Some(v.to_string()),
        mysql_async::Value::UInt(v) => Some(v.to_string()),
        mysql_async::Value::NULL => None,
        other => Some(other.as_sql(true)),
    }
}

/// Quotes an identifier for SQL (`` `a``b` ``).
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// `` `db`.`table` ``.
pub fn qualified(id: &engine::TableId) -> String {
    format!("{}.{}", quote_ident(&id.schema), quote_ident(&id.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::config::ConnUrl;

    fn cfg(url: &str) -> MysqlSourceConfig {
        MysqlSourceConfig {
            url: ConnUrl::new(url),
            password_env: None,
            server_id: None,
            databases: Vec::new(),
            snapshot_chunk_rows: 10,
            heartbeat_interval_secs: 1,
            use_gtid: false,
            zero_dates: Default::default(),
        }
    }

    #[test]
    fn urls_of_both_schemes_parse_and_errors_hide_the_password() {
        let o = opts(&cfg("mariadb://u:pw@127.0.0.1:3307/shop")).unwrap();
        assert_eq!(o.tcp_port(), 3307);
        assert_eq!(o.db_name(), Some("shop"));
        let err = opts(&cfg("mysql://u:s3cret@[bad/shop"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(qualified(&engine::TableId::new("s", "t")), "`s`.`t`");
    }
}

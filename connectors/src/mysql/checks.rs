//! Prerequisite checks of a MySQL/MariaDB source, each with the fix an
//! operator has to make. Used by `dbsync check` and before a task starts.

use engine::TableId;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::client::{qualified, variable, Flavor, ServerInfo};
use super::error::MysqlSourceError;
use super::schema::Catalog;
use super::types::Charset;

pub use engine::CheckOutcome;

/// The shortest binlog retention accepted (0 = never expire is fine too).
pub const MIN_RETENTION_SECS: u64 = 24 * 3600;

fn prereq<T>(msg: String) -> Result<T, MysqlSourceError> {
    Err(MysqlSourceError::Prerequisite(msg))
}

/// `log_bin` must be on.
pub async fn ensure_log_bin(conn: &mut Conn) -> Result<String, MysqlSourceError> {
    match variable(conn, "log_bin").await?.as_deref() {
        Some("ON") | Some("1") => Ok("log_bin = ON".into()),
        other => prereq(format!(
            "log_bin is {}: start the server with log_bin (e.g. log_bin = mysql-bin in my.cnf) and restart it",
            other.unwrap_or("unset")
        )),
    }
}

/// `binlog_format` must be ROW (globally).
pub async fn ensure_binlog_format_row(conn: &mut Conn) -> Result<String, MysqlSourceError> {
    let v: Option<String> = conn
        .query_first("SELECT @@GLOBAL.binlog_format")
        .await
        .map_err(|e| MysqlSourceError::query("reading binlog_format", e))?;
    match v.as_deref() {
        Some(f) if f.eq_ignore_ascii_case("ROW") => Ok("binlog_format = ROW".into()),
        other => prereq(format!(
            "binlog_format is {}, dbsync needs ROW: run SET GLOBAL binlog_format = 'ROW' and set \
             binlog_format = ROW in my.cnf (sessions opened before keep their format)",
            other.unwrap_or("unset")
        )),
    }
}

/// `binlog_row_image` must be FULL (every column in every row image).
pub async fn ensure_binlog_row_image_full(conn: &mut Conn) -> Result<String, MysqlSourceError> {
    let v: Option<String> = conn
        .query_first("SELECT @@GLOBAL.binlog_row_image")
        .await
        .map_err(|e| MysqlSourceError::query("reading binlog_row_image", e))?;
    match v.as_deref() {
        Some(f) if f.eq_ignore_ascii_case("FULL") => Ok("binlog_row_image = FULL".into()),
        other => prereq(format!(
            "binlog_row_image is {}, dbsync needs FULL: run SET GLOBAL binlog_row_image = 'FULL' and set it in my.cnf",
            other.unwrap_or("unset")
        )),
    }
}

/// MySQL 8's partial JSON updates leave values out of row images.
pub async fn ensure_no_partial_json(conn: &mut Conn) -> Result<String, MysqlSourceError> {
    match variable(conn, "binlog_row_value_options").await?.as_deref() {
        Some(v) if v.to_ascii_uppercase().contains("PARTIAL_JSON") => prereq(
            "binlog_row_value_options = PARTIAL_JSON leaves JSON values out of the binlog: \
             run SET GLOBAL binlog_row_value_options = ''"
                .into(),
        ),
        _ => Ok("full JSON values in row images".into()),
    }
}

/// `binlog_row_metadata = FULL` lets dbsync check column names and
/// signedness against its schema history; MINIMAL works too.
pub async fn check_binlog_row_metadata(conn: &mut Conn) -> Result<String, MysqlSourceError> {
    Ok(match variable(conn, "binlog_row_metadata").await? {
        Some(v) if v.eq_ignore_ascii_case("FULL") => "binlog_row_metadata = FULL (names and signedness are cross-checked)".into(),
        Some(v) => format!(
            "binlog_row_metadata = {v}: works; FULL also lets dbsync cross-check column names \
             (SET GLOBAL binlog_row_metadata = 'FULL')"
        ),
        None => "binlog_row_metadata not available on this server: column names come from the schema history".into(),
    })
}

/// Binlogs must be kept long enough to survive an outage of dbsync.
pub async fn ensure_binlog_retention(conn: &mut Conn) -> Result<String, MysqlSourceError> {
    let secs = match variable(conn, "binlog_expire_logs_seconds").await? {
        Some(s) => s.parse::<u64>().unwrap_or(0),
        None => 0,
    };
    let days = variable(conn, "expire_logs_days")
        .await?
        .and_then(|d| d.parse::<f64>().ok())
        .unwrap_or(0.0);
    let effective = if secs > 0 {
        secs
    } else {
        (days * 86_400.0) as u64
    };
    if effective == 0 {
        return Ok("binlogs never expire".into());
    }
    if effective < MIN_RETENTION_SECS {
        return prereq(format!(
            "binlogs expire after {effective} s, too soon to survive a dbsync outage: keep them at least a day \
             (SET GLOBAL binlog_expire_logs_seconds = 604800, or expire_logs_days = 7)"
        ));
    }
    Ok(format!("binlogs kept {} h", effective / 3600))
}

/// The connecting user's grants must allow reading the binlog and the tables.
pub async fn ensure_replication_privileges(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<String, MysqlSourceError> {
    let grants: Vec<String> = conn
        .query("SHOW GRANTS FOR CURRENT_USER()")
        .await
        .map_err(|e| MysqlSourceError::query("SHOW GRANTS", e))?;
    let all = grants.join("\n").to_ascii_uppercase();
    let global = |p: &str| {
        all.lines()
            .any(|g| g.contains(" ON *.* ") && (g.contains("ALL PRIVILEGES") || g.contains(p)))
    };
    let mut missing = Vec::new();
    if !global("REPLICATION SLAVE") && !global("REPLICATION REPLICA") {
        missing.push("REPLICATION SLAVE");
    }
    let monitor = match flavor {
        Flavor::MariaDb => {
            global("BINLOG MONITOR") || global("REPLICATION CLIENT") || global("SUPER")
        }
        Flavor::MySql => global("REPLICATION CLIENT"),
    };
    if !monitor {
        missing.push(if flavor == Flavor::MariaDb {
            "BINLOG MONITOR"
        } else {
            "REPLICATION CLIENT"
        });
    }
    if flavor == Flavor::MySql && !global("RELOAD") {
        missing.push(
            "RELOAD (for the brief FLUSH TABLES WITH READ LOCK that fixes the snapshot position)",
        );
    }
    if missing.is_empty() {
        Ok("replication privileges granted".into())
    } else {
        prereq(format!(
            "the user lacks {}: GRANT {} ON *.* TO <dbsync user>",
            missing.join(", "),
            missing
                .iter()
                .map(|m| m.split(" (").next().unwrap_or(m))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// dbsync's replica id must differ from the server's own.
pub fn ensure_server_id(info: &ServerInfo, ours: u32) -> Result<String, MysqlSourceError> {
    if info.server_id == ours {
        return prereq(format!(
            "server_id {ours} is the source server's own: set [task.source] server_id to a number no server or \
             replica of this source uses"
        ));
    }
    Ok(format!(
        "replica server_id {ours} (source is {})",
        info.server_id
    ))
}

/// Each watched table exists, has a key, is readable, and only uses
/// charsets the binlog decoder knows.
pub async fn ensure_tables_replicable(
    conn: &mut Conn,
    catalog: &Catalog,
    watched: &[TableId],
    problems: &std::collections::BTreeMap<TableId, String>,
) -> Result<String, MysqlSourceError> {
    let mut errs = Vec::new();
    for id in watched {
        if let Some(p) = problems.get(id) {
            errs.push(format!("{id}: {p}"));
            continue;
        }
        let Some(def) = catalog.tables.get(id) else {
            errs.push(format!("table {id} does not exist in the source"));
            continue;
        };
        if def.key.is_empty() {
            errs.push(format!(
                "table {id} has no primary key (or unique index on NOT NULL columns): add one \
                 (ALTER TABLE {} ADD PRIMARY KEY (...))",
                qualified(id)
            ));
        }
        for c in &def.columns {
            if let Some(Charset::Other(cs)) = c.ty.charset() {
                errs.push(format!(
                    "column {} of {id} uses charset {cs}, which dbsync cannot decode from the binlog: \
                     convert it (ALTER TABLE ... MODIFY {} ... CHARACTER SET utf8mb4)",
                    c.name, c.name
                ));
            }
        }
        if let Err(e) = conn
            .query_drop(format!("SELECT 1 FROM {} LIMIT 0", qualified(id)))
            .await
        {
            errs.push(format!(
                "cannot read {id} ({}): GRANT SELECT ON {} TO <dbsync user>",
                super::error::describe(&e),
                qualified(id)
            ));
        }
    }
    if errs.is_empty() {
        Ok(format!(
            "{} table(s) have keys and are readable",
            watched.len()
        ))
    } else {
        prereq(errs.join("; "))
    }
}

/// Runs the server-level checks; never stops at the first failure.
pub async fn run_server_checks(
    conn: &mut Conn,
    info: &ServerInfo,
    server_id: u32,
) -> Vec<CheckOutcome> {
    fn outcome(name: &'static str, r: Result<String, MysqlSourceError>) -> CheckOutcome {
        CheckOutcome {
            name,
            result: r.map_err(|e| e.to_string()),
        }
    }
    vec![
        outcome("ensure_log_bin", ensure_log_bin(conn).await),
        outcome(
            "ensure_binlog_format_row",
            ensure_binlog_format_row(conn).await,
        ),
        outcome(
            "ensure_binlog_row_image_full",
            ensure_binlog_row_image_full(conn).await,
        ),
        outcome("ensure_no_partial_json", ensure_no_partial_json(conn).await),
        outcome(
            "check_binlog_row_metadata",
            check_binlog_row_metadata(conn).await,
        ),
        outcome(
            "ensure_binlog_retention",
            ensure_binlog_retention(conn).await,
        ),
        outcome(
            "ensure_replication_privileges",
            ensure_replication_privileges(conn, info.flavor).await,
        ),
        outcome("ensure_server_id", ensure_server_id(info, server_id)),
    ]
}

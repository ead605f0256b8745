//! From metadata-database rows to the engine's [`TaskConfig`].
//!
//! A task row becomes the same structure a TOML `[[task]]` deserializes
//! into, so the same `deny_unknown_fields` and `validate()` apply:
//! - `source_connection_config` / `target_connection_config`: `host`, `port`,
//!   `database`, `username`, `password` (encrypted, decrypted here in memory
//!   only), `ssl` (refused: TLS is not supported yet), `options` (extra
//!   source/target settings, e.g. `create_tables`).
//! - `connector_config`: the source reader's settings (`slot`, `publication`,
//!   `server_id`, `databases`, `snapshot_chunk_rows`, …) plus the pipeline's
//!   (`batch_size`, `batch_bytes`, `batch_timeout_ms`, `queue_chunks`) and
//!   `workers` (checked against the tenant's `max_tasks_per_connector`).
//! - mappings and scripts keep the spec's field names, which are the TOML ones.

use engine::config::TaskConfig;
use metastore::meta::model::TaskBundle;
use metastore::meta::ops::mapping::engine_config;
use metastore::secrets::{open_password, SecretKey};
use serde_json::{json, Map, Value as Json};

/// Pipeline settings taken from `connector_config` to the task level.
const PIPELINE_KEYS: &[&str] = &[
    "batch_size",
    "batch_bytes",
    "batch_timeout_ms",
    "queue_chunks",
];
/// Settings of `connector_config` dbsync reads itself.
const FLEET_KEYS: &[&str] = &["workers"];

/// The engine's name of a database task: `<tenant_code>.<task_code>`.
pub fn task_name(bundle: &TaskBundle) -> String {
    format!("{}.{}", bundle.tenant.tenant_code, bundle.task.task_code)
}

/// Worker count a task asks for (`connector_config.workers`, default 1).
pub fn requested_workers(bundle: &TaskBundle) -> i64 {
    bundle
        .task
        .connector_config
        .get("workers")
        .and_then(Json::as_i64)
        .unwrap_or(1)
}

/// Builds and validates the engine task. Errors name the task and the field,
/// never a secret.
pub fn to_task_config(bundle: &TaskBundle, key: Option<&SecretKey>) -> Result<TaskConfig, String> {
    let t = &bundle.task;
    let name = task_name(bundle);
    let fail = |m: String| format!("task {name}: {m}");
    let mut task = Map::new();
    task.insert("name".into(), json!(name));
    task.insert("sync_mode".into(), json!(t.sync_mode));
    let mut source = Map::new();
    source.insert(
        "type".into(),
        json!(db_type(&t.source_db_type).map_err(fail)?),
    );
    source.insert(
        "url".into(),
        json!(url(&t.source_db_type, &t.source_connection_config, key)
            .map_err(|m| fail(format!("source_connection_config: {m}")))?),
    );
    if let Some(obj) = t.connector_config.as_object() {
        for (k, v) in obj {
            if PIPELINE_KEYS.contains(&k.as_str()) {
                task.insert(k.clone(), v.clone());
            } else if !FLEET_KEYS.contains(&k.as_str()) {
                source.insert(k.clone(), v.clone());
            }
        }
    } else if !t.connector_config.is_null() {
        return Err(fail("connector_config must be a JSON object".into()));
    }
    merge_options(&mut source, &t.source_connection_config)
        .map_err(|m| fail(format!("source_connection_config: {m}")))?;
    task.insert("source".into(), Json::Object(source));
    let mut target = Map::new();
    target.insert(
        "type".into(),
        json!(db_type(&t.target_db_type).map_err(fail)?),
    );
    target.insert(
        "url".into(),
        json!(url(&t.target_db_type, &t.target_connection_config, key)
            .map_err(|m| fail(format!("target_connection_config: {m}")))?),
    );
    merge_options(&mut target, &t.target_connection_config)
        .map_err(|m| fail(format!("target_connection_config: {m}")))?;
    task.insert("target".into(), Json::Object(target));
    let mut config: TaskConfig =
        serde_json::from_value(Json::Object(task)).map_err(|e| fail(e.to_string()))?;
    // Mappings are read exactly as the CLI validated them.
    config.mapping = bundle
        .mappings
        .iter()
        .map(|(m, scripts)| engine_config(m, scripts).map_err(|e| fail(e.to_string())))
        .collect::<Result<_, _>>()?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn db_type(t: &str) -> Result<&'static str, String> {
    match t {
        "POSTGRESQL" => Ok("postgresql"),
        "MYSQL" => Ok("mysql"),
        "ORACLE" | "SQLSERVER" => Err(format!(
            "{t} is not supported by this dbsync yet (supported: POSTGRESQL, MYSQL)"
        )),
        other => Err(format!("unknown database type {other:?}")),
    }
}

/// `options` of a connection config go to the source/target settings.
fn merge_options(into: &mut Map<String, Json>, conn: &Json) -> Result<(), String> {
    match conn.get("options") {
        None | Some(Json::Null) => Ok(()),
        Some(Json::Object(o)) => {
            for (k, v) in o {
                into.insert(k.clone(), v.clone());
            }
            Ok(())
        }
        Some(_) => Err("options must be a JSON object".into()),
    }
}

/// Characters kept as they are in a URL's user info and path.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes everything but unreserved characters (this also keeps a
/// `$` in a password from being read as a `${VAR}` reference).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The connection URL (with the decrypted password in memory only).
fn url(db_type: &str, conn: &Json, key: Option<&SecretKey>) -> Result<String, String> {
    if !conn.is_object() {
        return Err("must be a JSON object with host, port, database, username".into());
    }
    let text = |k: &str| conn.get(k).and_then(Json::as_str).map(str::to_string);
    if conn
        .get("ssl")
        .is_some_and(|v| v.as_bool() == Some(true) || v.is_object())
    {
        return Err(
            "ssl is not supported yet by dbsync: set \"ssl\": false and use a private network"
                .into(),
        );
    }
    let host = text("host").ok_or("host is missing")?;
    let scheme = if db_type == "MYSQL" {
        "mysql"
    } else {
        "postgres"
    };
    let default_port = if db_type == "MYSQL" { 3306 } else { 5432 };
    let port = match conn.get("port") {
        None | Some(Json::Null) => default_port,
        Some(p) => p
            .as_u64()
            .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
            .filter(|p| *p > 0 && *p < 65536)
            .ok_or("port must be a number from 1 to 65535")?,
    };
    let user = text("username").ok_or("username is missing")?;
    let database = text("database").unwrap_or_default();
    let password = open_password(key, conn).map_err(|e| e.to_string())?;
    let userinfo = match password {
        Some(p) => format!("{}:{}", enc(&user), enc(p.expose())),
        None => enc(&user),
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(format!(
        "{scheme}://{userinfo}@{host}:{port}/{}",
        enc(&database)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_percent_encoded_so_dollar_signs_stay_literal() {
        assert_eq!(enc("p$a:ss@w/rd"), "p%24a%3Ass%40w%2Frd");
        let conn = json!({"host": "db1", "port": 5433, "database": "shop", "username": "rep"});
        assert_eq!(
            url("POSTGRESQL", &conn, None).unwrap(),
            "postgres://rep@db1:5433/shop"
        );
        let conn = json!({"host": "::1", "username": "u", "database": "d"});
        assert_eq!(url("MYSQL", &conn, None).unwrap(), "mysql://u@[::1]:3306/d");
    }

    #[test]
    fn ssl_and_plaintext_passwords_are_refused_clearly() {
        let conn = json!({"host": "h", "username": "u", "ssl": true});
        assert!(url("POSTGRESQL", &conn, None).unwrap_err().contains("ssl"));
        let conn = json!({"host": "h", "username": "u", "password": "hunter2"});
        let err = url("POSTGRESQL", &conn, None).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("dbsync secret encrypt"), "{err}");
    }

    #[test]
    fn encrypted_passwords_are_decrypted_into_the_url() {
        let key = SecretKey::generate();
        let conn = json!({"host": "h", "username": "u", "database": "d", "password": key.encrypt("s3$cret")});
        assert_eq!(
            url("POSTGRESQL", &conn, Some(&key)).unwrap(),
            "postgres://u:s3%24cret@h:5432/d"
        );
    }
}

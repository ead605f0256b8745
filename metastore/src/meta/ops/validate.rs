//! Input checks shared by the write operations: enumerations, codes, JSON
//! shapes, connection configs (passwords sealed, never stored in plain text)
//! and schedules. Messages name the field and the accepted values, never a
//! password.

use std::str::FromStr;

use serde_json::Value as Json;
use tokio_postgres::GenericClient;

use crate::meta::error::{MetaError, MetaResult};
use crate::secrets::{is_encrypted, seal_connection_config, SecretKey};

pub const DB_TYPES: &[&str] = &["MYSQL", "POSTGRESQL", "ORACLE", "SQLSERVER"];
/// The database types the daemon has a connector for.
pub const RUNNABLE_DB_TYPES: &[&str] = &["MYSQL", "POSTGRESQL"];
pub const SYNC_MODES: &[&str] = &["FULL_ONLY", "INCREMENTAL_ONLY", "FULL_INCREMENTAL"];
pub const TENANT_STATUSES: &[&str] = &["ACTIVE", "SUSPENDED", "INACTIVE"];
pub const CONFLICT_RESOLUTIONS: &[&str] = &["UPSERT", "INSERT_ONLY", "UPDATE_ONLY", "IGNORE"];
pub const SCRIPT_TYPES: &[&str] = &["JAVASCRIPT", "SQL", "GROOVY", "PYTHON"];
/// The script types the daemon can run.
pub const RUNNABLE_SCRIPT_TYPES: &[&str] = &["JAVASCRIPT", "SQL"];
pub const TRIGGER_PHASES: &[&str] = &[
    "BEFORE_TRANSFORM",
    "AFTER_TRANSFORM",
    "BEFORE_WRITE",
    "AFTER_WRITE",
];
pub const ERROR_HANDLINGS: &[&str] = &["LOG_AND_CONTINUE", "THROW_EXCEPTION", "SKIP_RECORD"];
pub const ALERT_STATUSES: &[&str] = &["OPEN", "ACKNOWLEDGED", "RESOLVED", "IGNORED"];

fn invalid(m: String) -> MetaError {
    MetaError::Invalid(m)
}

/// One of `allowed` (case-insensitive, returned in upper case).
pub fn choice(field: &str, value: &str, allowed: &[&str]) -> MetaResult<String> {
    let v = value.trim().to_ascii_uppercase();
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(invalid(format!(
            "{field} {value:?} is not one of {}",
            allowed.join(", ")
        )))
    }
}

/// A code (tenant_code, task_code): 1 to `max` letters, digits, `_` or `-`.
pub fn code(field: &str, value: &str, max: usize) -> MetaResult<String> {
    let v = value.trim();
    if v.is_empty()
        || v.len() > max
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(format!(
            "{field} {v:?} must be 1 to {max} letters, digits, '_' or '-'"
        )));
    }
    Ok(v.to_string())
}

/// Required text of at most `max` characters (trimmed).
pub fn text(field: &str, value: &str, max: usize) -> MetaResult<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    if v.chars().count() > max {
        return Err(invalid(format!("{field} is longer than {max} characters")));
    }
    Ok(v.to_string())
}

/// Optional text of at most `max` characters; empty means none.
pub fn opt_text(field: &str, value: Option<&str>, max: usize) -> MetaResult<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => text(field, v, max).map(Some),
    }
}

pub fn object(field: &str, value: &Json) -> MetaResult<()> {
    if value.is_object() {
        Ok(())
    } else {
        Err(invalid(format!("{field} must be a JSON object ({{...}})")))
    }
}

pub fn array(field: &str, value: &Json) -> MetaResult<()> {
    if value.is_array() {
        Ok(())
    } else {
        Err(invalid(format!("{field} must be a JSON array ([...])")))
    }
}

/// A whole number in `min..=max`.
pub fn int_range(field: &str, value: i32, min: i32, max: i32) -> MetaResult<i32> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(format!(
            "{field} must be between {min} and {max} (got {value})"
        )))
    }
}

/// Prepares a connection config for storage.
///
/// * `"password"` absent: the `previous` config's stored password is kept
///   (so changing the host does not drop it); `null` or `""`: no password.
/// * A plain-text password is encrypted with `key`; without a key it is
///   refused (never stored in plain text).
/// * An already encrypted `enc:v…:` value is kept; when a key is configured
///   it must decrypt with it.
pub fn connection_config(
    field: &str,
    mut cfg: Json,
    previous: Option<&Json>,
    key: Option<&SecretKey>,
) -> MetaResult<Json> {
    let Some(map) = cfg.as_object_mut() else {
        return Err(invalid(format!(
            "{field} must be a JSON object such as {{\"host\": \"db1\", \"port\": 5432, \"database\": \"shop\", \"username\": \"repl\"}}"
        )));
    };
    match map.get("port") {
        None | Some(Json::Null) => {}
        Some(Json::Number(n)) if n.as_u64().is_some_and(|p| (1..=65535).contains(&p)) => {}
        Some(_) => {
            return Err(invalid(format!(
                "{field}.port must be a number between 1 and 65535"
            )))
        }
    }
    for k in ["host", "database", "username"] {
        if map.get(k).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return Err(invalid(format!("{field}.{k} must be a string")));
        }
    }
    match map.get("password") {
        None => {
            if let Some(old) = previous
                .and_then(|p| p.get("password"))
                .filter(|p| !p.is_null())
            {
                map.insert("password".into(), old.clone());
            }
            return Ok(cfg);
        }
        Some(Json::Null) => {
            map.remove("password");
            return Ok(cfg);
        }
        Some(Json::String(s)) if s.is_empty() => {
            map.remove("password");
            return Ok(cfg);
        }
        Some(Json::String(s)) if is_encrypted(s) => {
            if let Some(key) = key {
                key.decrypt(s).map_err(|e| {
                    invalid(format!(
                        "{field}.password is encrypted but does not decrypt with [metastore] secret_key_file: {e}"
                    ))
                })?;
            }
            return Ok(cfg);
        }
        Some(Json::String(_)) => {}
        Some(_) => return Err(invalid(format!("{field}.password must be a string"))),
    }
    let Some(key) = key else {
        return Err(invalid(format!(
            "{field} has a password but no [metastore] secret_key_file is configured: \
             refusing to store a password in plain text; create a key with \
             `dbsync secret keygen --out <path>` and set secret_key_file (every daemon needs the same file)"
        )));
    };
    seal_connection_config(key, &mut cfg).map_err(|e| invalid(format!("{field}: {e}")))?;
    Ok(cfg)
}

/// Whether a stored connection config has a password.
pub fn has_password(cfg: &Json) -> bool {
    cfg.get("password")
        .and_then(Json::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// Checks `schedule_config` (`{"cron": "0 0 * * *", "timezone": "UTC"}`):
/// only FULL_ONLY tasks run on a schedule; the cron expression must parse
/// (5 fields, or 6 with seconds). Returns the time zone to check against
/// the database's list ([`check_timezone`]).
pub fn schedule(sync_mode: &str, schedule: &Json) -> MetaResult<Option<String>> {
    object("schedule_config", schedule)?;
    if sync_mode != "FULL_ONLY" {
        return Err(invalid(format!(
            "schedule_config applies to FULL_ONLY tasks only (this task is {sync_mode}): \
             set sync_mode FULL_ONLY or remove the schedule"
        )));
    }
    let cron = match schedule.get("cron") {
        Some(Json::String(c)) => c,
        None | Some(Json::Null) => return Err(invalid(
            "schedule_config needs \"cron\", e.g. {\"cron\": \"0 0 * * *\", \"timezone\": \"UTC\"}"
                .into(),
        )),
        Some(_) => return Err(invalid("schedule_config.cron must be a string".into())),
    };
    croner::Cron::from_str(cron).map_err(|e| {
        invalid(format!(
            "schedule_config.cron {cron:?} is not a valid cron expression: {e} \
             (expected minute hour day-of-month month day-of-week, e.g. \"0 0 * * *\")"
        ))
    })?;
    match schedule.get("timezone") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(tz)) => Ok(Some(tz.clone())),
        Some(_) => Err(invalid(
            "schedule_config.timezone must be a string such as \"UTC\" or \"Europe/Paris\"".into(),
        )),
    }
}

/// Checks a time zone name against the database's `pg_timezone_names`.
pub async fn check_timezone(c: &impl GenericClient, tz: &str) -> MetaResult<()> {
    let known: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)",
            &[&tz],
        )
        .await
        .map_err(|e| MetaError::query("check the time zone", e))?
        .get(0);
    if known {
        Ok(())
    } else {
        Err(invalid(format!(
            "schedule_config.timezone {tz:?} is not a known time zone (use an IANA name such as \"UTC\" or \"Europe/Paris\")"
        )))
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use serde_json::json;

    #[test]
    fn choices_and_codes() {
        assert_eq!(choice("t", "mysql", DB_TYPES).unwrap(), "MYSQL");
        let e = choice("sync_mode", "SOMETIMES", SYNC_MODES)
            .unwrap_err()
            .to_string();
        assert!(e.contains("FULL_ONLY") && e.contains("SOMETIMES"), "{e}");
        assert_eq!(code("c", " a-b_1 ", 10).unwrap(), "a-b_1");
        assert!(code("c", "a b", 10).is_err() && code("c", "", 10).is_err());
        assert!(code("c", "abcdefghijk", 10).is_err());
        assert!(text("n", "  ", 5).is_err() && opt_text("n", Some(""), 5).unwrap().is_none());
    }

    #[test]
    fn passwords_are_sealed_kept_or_refused() {
        let key = SecretKey::generate();
        let cfg = json!({"host": "h", "port": 3306, "password": "hunter2"});
        let sealed = connection_config("src", cfg.clone(), None, Some(&key)).unwrap();
        let stored = sealed["password"].as_str().unwrap();
        assert!(is_encrypted(stored) && !sealed.to_string().contains("hunter2"));
        let e = connection_config("src", cfg, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("secret_key_file") && !e.contains("hunter2"),
            "{e}"
        );
        // Absent: kept from before; null: removed.
        let kept = connection_config("src", json!({"host": "h2"}), Some(&sealed), None).unwrap();
        assert_eq!(kept["password"], sealed["password"]);
        let cleared = connection_config(
            "src",
            json!({"host": "h2", "password": null}),
            Some(&sealed),
            None,
        )
        .unwrap();
        assert!(!has_password(&cleared) && cleared.get("password").is_none());
        // Encrypted with another key: refused when a key is configured.
        let other = SecretKey::generate().encrypt("x");
        let e = connection_config("src", json!({"password": other}), None, Some(&key))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not decrypt"), "{e}");
        let e = connection_config("src", json!({"port": 0}), None, None).unwrap_err();
        assert!(e.to_string().contains("port"));
        assert!(connection_config("src", json!([1]), None, None).is_err());
    }

    #[test]
    fn schedules_are_checked() {
        let ok = json!({"cron": "0 0 * * *", "timezone": "UTC"});
        assert_eq!(schedule("FULL_ONLY", &ok).unwrap().as_deref(), Some("UTC"));
        let e = schedule("FULL_INCREMENTAL", &ok).unwrap_err().to_string();
        assert!(e.contains("FULL_ONLY"), "{e}");
        let e = schedule("FULL_ONLY", &json!({"cron": "61 * * * *"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid cron expression"), "{e}");
        assert!(schedule("FULL_ONLY", &json!({"cron": "every day"})).is_err());
        assert!(schedule("FULL_ONLY", &json!({"timezone": "UTC"})).is_err());
        assert!(schedule("FULL_ONLY", &json!({"cron": "*/5 * * * *"}))
            .unwrap()
            .is_none());
    }
}

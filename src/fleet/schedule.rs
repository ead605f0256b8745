//! `schedule_config` (`{"cron": "0 0 * * *", "timezone": "UTC"}`): when a
//! COMPLETED FULL_ONLY task runs again.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::Value as Json;

/// The first fire time strictly after `after`; `None` without a cron.
/// Time zones: `UTC` (the default) or a fixed offset such as `+08:00`.
pub fn next_run(
    schedule: Option<&Json>,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    let Some(s) = schedule else { return Ok(None) };
    let Some(expr) = s.get("cron").and_then(Json::as_str) else {
        return Ok(None);
    };
    let cron = croner::Cron::from_str(expr).map_err(|e| {
        format!("schedule_config.cron {expr:?} is not a valid cron expression: {e}")
    })?;
    let tz = s.get("timezone").and_then(Json::as_str).unwrap_or("UTC");
    let offset = if tz.eq_ignore_ascii_case("UTC") || tz == "Z" {
        FixedOffset::east_opt(0).ok_or("offset")?
    } else {
        FixedOffset::from_str(tz).map_err(|_| {
            format!(
                "schedule_config.timezone {tz:?}: use \"UTC\" or a fixed offset such as \"+08:00\""
            )
        })?
    };
    let local = after.with_timezone(&offset);
    let next = cron
        .find_next_occurrence(&local, false)
        .map_err(|e| format!("schedule_config.cron {expr:?} has no next run: {e}"))?;
    Ok(Some(next.with_timezone(&Utc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_midnight_in_utc_and_in_an_offset() {
        let s = json!({"cron": "0 0 * * *", "timezone": "UTC"});
        assert_eq!(
            next_run(Some(&s), at("2026-11-22T05:00:00Z")).unwrap(),
            Some(at("2026-11-23T00:00:00Z"))
        );
        let s = json!({"cron": "0 0 * * *", "timezone": "+08:00"});
        assert_eq!(
            next_run(Some(&s), at("2026-11-22T05:00:00Z")).unwrap(),
            Some(at("2026-11-22T16:00:00Z"))
        );
        assert_eq!(next_run(None, Utc::now()).unwrap(), None);
        assert!(next_run(Some(&json!({"cron": "bogus"})), Utc::now()).is_err());
        assert!(next_run(
            Some(&json!({"cron": "* * * * *", "timezone": "Mars/Base"})),
            Utc::now()
        )
        .is_err());
    }
}

//! Input of the operator commands: JSON given inline or as `@file.json`,
//! script bodies, whole-resource files (`--file`), passwords (from an
//! environment variable or standard input, never from the command line),
//! the operator's name and `--since` times.

use std::io::{self, IsTerminal, Read};
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use engine::config::Secret;
use metastore::secrets::is_encrypted;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use zeroize::Zeroizing;

/// The most bytes read from a file or standard input.
const MAX_INPUT: u64 = 16 * 1024 * 1024;

fn read_file(path: &Path, what: &str) -> Result<String, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_INPUT + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_INPUT {
        return Err(format!(
            "{what}: {} is larger than {MAX_INPUT} bytes",
            path.display()
        ));
    }
    Ok(text)
}

/// Text given inline or as `@path`.
pub fn text_arg(flag: &str, value: &str) -> Result<String, String> {
    match value.strip_prefix('@') {
        Some(path) => read_file(Path::new(path), flag),
        None => Ok(value.to_string()),
    }
}

/// JSON given inline or as `@path`; the bool says whether it came from a file.
pub fn json_arg(flag: &str, value: &str) -> Result<(Json, bool), String> {
    let from_file = value.starts_with('@');
    let text = text_arg(flag, value)?;
    // serde_json's messages give a position, never the input itself.
    let json = serde_json::from_str(&text)
        .map_err(|e| format!("{flag}: not valid JSON ({e}); give inline JSON or @file.json"))?;
    Ok((json, from_file))
}

/// A connection config argument. A plain-text password typed on the command
/// line (visible in `ps` and shell history) is refused.
pub fn connection_arg(flag: &str, value: &str, side: &str) -> Result<Json, String> {
    let (json, from_file) = json_arg(flag, value)?;
    let plain = json
        .get("password")
        .and_then(Json::as_str)
        .is_some_and(|p| !p.is_empty() && !is_encrypted(p));
    if plain && !from_file {
        return Err(format!(
            "{flag}: do not put a password on the command line (ps and shell history show it): \
             use --{side}-password-env VAR or --{side}-password-stdin, or give the config as @file.json"
        ));
    }
    Ok(json)
}

/// A whole resource from `--file` (JSON), with unknown fields named.
pub fn file_arg<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = read_file(path, "--file")?;
    serde_json::from_str(&text).map_err(|e| format!("--file {}: {e}", path.display()))
}

/// A list given as JSON (`["a","b"]`, `@file.json`) or as `a,b,c`.
pub fn list_arg(flag: &str, value: &str) -> Result<Json, String> {
    let v = value.trim();
    if v.starts_with('[') || v.starts_with('@') {
        return json_arg(flag, v).map(|(j, _)| j);
    }
    Ok(Json::Array(
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Json::String(s.into()))
            .collect(),
    ))
}

/// A password from the environment variable `var`.
pub fn password_env(var: &str) -> Result<Secret, String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
        Ok(_) => Err(format!("environment variable {var} is empty")),
        Err(_) => Err(format!(
            "environment variable {var} is not set (it should hold the password)"
        )),
    }
}

/// A password from standard input: all of it less one trailing newline; a
/// terminal is prompted with its echo turned off.
pub fn password_stdin(what: &str) -> Result<Secret, String> {
    let stdin = io::stdin();
    let mut text = Zeroizing::new(String::new());
    if stdin.is_terminal() {
        read_hidden(&stdin, what, &mut text)?;
    } else {
        stdin
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the {what} from standard input: {e}"))?;
    }
    let pw = text.strip_suffix('\n').unwrap_or(&text);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    if pw.is_empty() {
        return Err(format!(
            "no {what} on standard input: pipe it in, e.g. `printf '%s' \"$PW\" | dbsync task create … --source-password-stdin`"
        ));
    }
    if pw.contains('\n') {
        return Err(format!(
            "standard input holds several lines: give exactly one {what}"
        ));
    }
    Ok(Secret::new(pw))
}

fn read_hidden(stdin: &io::Stdin, what: &str, into: &mut String) -> Result<(), String> {
    use io::BufRead;
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    eprint!("{what} (not echoed): ");
    let saved = tcgetattr(stdin).map_err(|e| format!("cannot read the terminal settings: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(stdin, OptionalActions::Flush, &quiet)
        .map_err(|e| format!("cannot turn off the terminal's echo: {e}"))?;
    let read = stdin.lock().read_line(into);
    let restored = tcsetattr(stdin, OptionalActions::Flush, &saved);
    eprintln!();
    read.map_err(|e| format!("cannot read the {what}: {e}"))?;
    restored.map_err(|e| format!("cannot restore the terminal's echo: {e}"))?;
    Ok(())
}

/// `--operator`, else $SUDO_USER (the person behind sudo), $USER, $LOGNAME.
pub fn operator(given: Option<&str>) -> Result<String, String> {
    if let Some(o) = given {
        return Ok(o.to_string());
    }
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .ok_or_else(|| {
            "cannot tell who is acting: pass --operator <name> (recorded in the audit log)".into()
        })
}

/// `--since`: an RFC 3339 time, a date (`2024-06-01`, midnight UTC), or an
/// age (`30m`, `12h`, `7d`).
pub fn since(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    let bad = || {
        format!(
            "--since {v:?}: expected an RFC 3339 time (2024-06-01T12:00:00Z), a date (2024-06-01) \
             or an age such as 30m, 12h, 7d"
        )
    };
    let (num, unit) = v.split_at(v.len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => None,
    }
    .filter(|_| n >= 0)
    .ok_or_else(bad)?;
    now.checked_sub_signed(age).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_args_inline_and_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(&p, r#"{"host": "h", "password": "hunter2"}"#).unwrap();
        let arg = format!("@{}", p.display());
        let cfg = connection_arg("--source-config", &arg, "source").unwrap();
        assert_eq!(cfg["password"], "hunter2");
        let e =
            connection_arg("--source-config", r#"{"password": "hunter2"}"#, "source").unwrap_err();
        assert!(
            e.contains("--source-password-env") && !e.contains("hunter2"),
            "{e}"
        );
        let e = json_arg("--x", r#"{"password": "hunter2""#).unwrap_err();
        assert!(
            e.contains("not valid JSON") && !e.contains("hunter2"),
            "{e}"
        );
        assert_eq!(
            list_arg("--c", "a, b,").unwrap(),
            serde_json::json!(["a", "b"])
        );
        assert_eq!(
            list_arg("--c", r#"["x"]"#).unwrap(),
            serde_json::json!(["x"])
        );
    }

    #[test]
    fn since_takes_times_dates_and_ages() {
        let now = DateTime::parse_from_rfc3339("2024-06-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            since("2h", now).unwrap().to_rfc3339(),
            "2024-06-10T10:00:00+00:00"
        );
        assert_eq!(
            since("7d", now).unwrap().to_rfc3339(),
            "2024-06-03T12:00:00+00:00"
        );
        assert_eq!(
            since("2024-06-01", now).unwrap().to_rfc3339(),
            "2024-06-01T00:00:00+00:00"
        );
        assert!(since("2024-06-01T01:02:03+02:00", now).is_ok());
        assert!(since("yesterday", now).is_err() && since("-3d", now).is_err());
    }
}

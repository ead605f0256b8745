//! Secrets and connection URLs: redacted in `Debug`/`Display`, resolved from
//! the environment only when a connection is opened.

use std::fmt;

use serde::Deserialize;

use crate::error::{Error, Result};

/// A secret string: `Debug` and `Display` print `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself: pass it to a driver, never to a log or an error.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A connection URL as written in the config (`${NAME}` references unresolved).
/// Printing it masks any password in the user-info part.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ConnUrl(pub(crate) String);

impl ConnUrl {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// Resolves `${NAME}` references from the environment. The result is a
    /// secret (it may now contain a password).
    pub fn resolve(&self) -> Result<Secret> {
        interpolate(&self.0, |name| std::env::var(name).ok()).map(Secret)
    }

    /// Checks that the URL starts with one of `schemes` (`postgres` → `postgres://`).
    pub fn check_scheme(&self, schemes: &[&str], what: &str) -> std::result::Result<(), String> {
        if schemes
            .iter()
            .any(|s| self.0.starts_with(&format!("{s}://")))
        {
            return Ok(());
        }
        let expected: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        Err(format!(
            "{what} url {} must start with {}",
            self.redacted(),
            expected.join(" or ")
        ))
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Masks the password of `scheme://user:password@host/...` and of
/// `password=...` key/value pairs.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "***");
            }
        }
    }
    // key=value forms, also inside a query string
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("password=") {
        result.push_str(&rest[..i + "password=".len()]);
        rest = &rest[i + "password=".len()..];
        let end = rest.find([' ', '&']).unwrap_or(rest.len());
        result.push_str("***");
        rest = &rest[end..];
    }
    result.push_str(rest);
    result
}

/// Replaces `${NAME}` with `lookup(NAME)`; a missing variable is an error
/// naming it (never its value).
pub fn interpolate(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            Error::Config("unterminated ${...} reference in a connection URL".into())
        })?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Config(format!(
                "invalid environment variable name {name:?} in a connection URL"
            )));
        }
        let value = lookup(name).ok_or_else(|| {
            Error::Config(format!(
                "environment variable {name} is not set (referenced as ${{{name}}} in a connection URL)"
            ))
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads the environment variable holding a password.
pub fn password_from_env(var: &str) -> Result<Secret> {
    std::env::var(var).map(Secret).map_err(|_| {
        Error::Config(format!(
            "environment variable {var} (password_env) is not set"
        ))
    })
}

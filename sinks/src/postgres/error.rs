//! Errors of the PostgreSQL sink and their classification.
//!
//! Server errors are reduced to what is safe to show: SQLSTATE, the message
//! (with quoted text removed where PostgreSQL puts values in it) and the
//! names of the column or constraint involved. `DETAIL` and `CONTEXT`, which
//! carry row values, are never kept; neither are passwords.

use std::fmt;

use engine::{ErrorClass, TableId};
use tokio_postgres::error::SqlState;

/// A failed call to the target server, reduced to safe facts.
#[derive(Debug, Clone)]
pub struct PgFailure {
    /// The SQLSTATE, when the server reported the error.
    pub code: Option<SqlState>,
    /// Whether retrying can help.
    pub class: ErrorClass,
    /// Human-readable description without row values.
    pub text: String,
}

impl PgFailure {
    /// Classifies and describes a driver error.
    pub fn from_driver(e: &tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => {
                let code = db.code().clone();
                let class = class_of_sqlstate(code.code());
                let mut text = if message_may_hold_values(code.code()) {
                    redact_quoted(db.message())
                } else {
                    db.message().to_string()
                };
                text.push_str(" (SQLSTATE ");
                text.push_str(code.code());
                if let Some(c) = db.column().or_else(|| db.where_().and_then(copy_column)) {
                    text.push_str(", column ");
                    text.push_str(c);
                }
                if let Some(c) = db.constraint() {
                    text.push_str(", constraint ");
                    text.push_str(c);
                }
                text.push(')');
                if let Some(advice) = advice(code.code()) {
                    text.push_str(": ");
                    text.push_str(advice);
                }
                Self {
                    code: Some(code),
                    class,
                    text,
                }
            }
            None => {
                let class = class_of_driver_error(e);
                let mut text = e.to_string();
                // The causes of transport and authentication errors are
                // system messages (never row data or secrets); other causes
                // (configuration parsing) may quote the input, so skip them.
                let io_cause = std::error::Error::source(e)
                    .filter(|s| s.downcast_ref::<std::io::Error>().is_some())
                    .map(|s| s.to_string());
                if let Some(cause) = io_cause {
                    text.push_str(": ");
                    text.push_str(&cause);
                } else if text == "authentication error" {
                    if let Some(cause) = std::error::Error::source(e) {
                        text.push_str(": ");
                        text.push_str(&cause.to_string());
                    }
                }
                if class == ErrorClass::Transient {
                    text.push_str(" (transient: dbsync retries)");
                }
                Self {
                    code: None,
                    class,
                    text,
                }
            }
        }
    }
}

impl fmt::Display for PgFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Transient for connection (08), serialization/deadlock (40), insufficient
/// resources (53) and operator intervention (57) classes; definite otherwise.
pub fn class_of_sqlstate(code: &str) -> ErrorClass {
    match code.get(..2) {
        Some("08" | "40" | "53" | "57") => ErrorClass::Transient,
        _ => ErrorClass::Definite,
    }
}

fn class_of_driver_error(e: &tokio_postgres::Error) -> ErrorClass {
    if e.is_closed()
        || std::error::Error::source(e)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
    {
        return ErrorClass::Transient;
    }
    match e.to_string().as_str() {
        "timeout waiting for server"
        | "unexpected message from server"
        | "error communicating with the server"
        | "error connecting to server" => ErrorClass::Transient,
        _ => ErrorClass::Definite,
    }
}

/// Classes whose messages are known to name objects only (values go into
/// `DETAIL`); other messages may quote an offending value.
fn message_may_hold_values(code: &str) -> bool {
    !matches!(
        code.get(..2),
        Some("08" | "0A" | "23" | "25" | "28" | "3D" | "3F" | "40" | "42" | "53" | "55" | "57")
    )
}

/// Replaces the text between double quotes with `…`.
pub fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…");
            }
            if inside {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push('"');
    }
    out
}

/// The column name from a COPY error context (`COPY t, line 3, column c: "…"`),
/// without the value.
fn copy_column(context: &str) -> Option<&str> {
    let line = context.lines().next()?;
    if !line.starts_with("COPY ") {
        return None;
    }
    let start = line.find(", column ")? + ", column ".len();
    let rest = &line[start..];
    let end = rest.find(": \"").unwrap_or(rest.len());
    Some(&rest[..end])
}

fn advice(code: &str) -> Option<&'static str> {
    Some(match code {
        "22001" => "widen the target column type, or fix the source data",
        "22003" => "widen the target column type",
        "23502" => "make the target column nullable or give it a default",
        "23505" => {
            "the target table has a unique constraint the source data does not satisfy: \
             drop it or make it match the source key"
        }
        "23503" => "foreign keys in the target cannot be checked row by row: drop or defer them",
        "23514" => "the target table has a check constraint the source data does not satisfy",
        "42501" => {
            "grant the target user INSERT, UPDATE, DELETE and TRUNCATE on the table \
             (and CREATE on the schema when dbsync creates tables)"
        }
        "42P01" => "the target table is missing: create it, or set create_tables = true",
        "42703" => "the target table lacks a column: add it, or let dbsync add it",
        _ => return None,
    })
}

/// An error of the PostgreSQL sink.
#[derive(Debug, thiserror::Error)]
pub enum PgSinkError {
    /// The target configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// Connecting to the target (or preparing the session) failed.
    #[error("cannot connect to the target {target}: {failure}")]
    Connect {
        /// The target URL, password masked.
        target: String,
        /// What went wrong.
        failure: PgFailure,
    },
    /// A statement on a target table failed.
    #[error("{action} on target table {table} failed: {failure}")]
    Statement {
        /// The target table.
        table: TableId,
        /// What the sink was doing.
        action: &'static str,
        /// What went wrong.
        failure: PgFailure,
    },
    /// `BEGIN`, `COMMIT` or `ROLLBACK` failed.
    #[error("{action} of the target transaction failed: {failure}")]
    Transaction {
        /// `begin`, `commit` or `rollback`.
        action: &'static str,
        /// What went wrong.
        failure: PgFailure,
    },
    /// The target table does not fit the source schema; the message says how to fix it.
    #[error("{0}")]
    Schema(String),
    /// A row the sink must not write (a bug upstream of the sink).
    #[error("cannot write to target table {table}: {message}")]
    InvalidRow {
        /// The target table.
        table: TableId,
        /// What is wrong with the row (never its values).
        message: String,
    },
}

impl PgSinkError {
    /// Whether retrying can help.
    pub fn class(&self) -> ErrorClass {
        match self {
            PgSinkError::Connect { failure, .. }
            | PgSinkError::Statement { failure, .. }
            | PgSinkError::Transaction { failure, .. } => failure.class,
            PgSinkError::Config(_) | PgSinkError::Schema(_) | PgSinkError::InvalidRow { .. } => {
                ErrorClass::Definite
            }
        }
    }

    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            PgSinkError::Connect { failure, .. }
            | PgSinkError::Statement { failure, .. }
            | PgSinkError::Transaction { failure, .. } => failure.code.as_ref(),
            _ => None,
        }
    }

    pub(crate) fn statement(
        table: &TableId,
        action: &'static str,
        e: &tokio_postgres::Error,
    ) -> Self {
        PgSinkError::Statement {
            table: table.clone(),
            action,
            failure: PgFailure::from_driver(e),
        }
    }

    pub(crate) fn transaction(action: &'static str, e: &tokio_postgres::Error) -> Self {
        PgSinkError::Transaction {
            action,
            failure: PgFailure::from_driver(e),
        }
    }
}

impl From<PgSinkError> for engine::Error {
    fn from(e: PgSinkError) -> Self {
        engine::Error::Sink {
            class: e.class(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_classes() {
        for code in [
            "08006", "08P01", "40001", "40P01", "53100", "53300", "57P01", "57014",
        ] {
            assert_eq!(class_of_sqlstate(code), ErrorClass::Transient, "{code}");
        }
        for code in [
            "22001", "22P02", "23505", "23502", "42P01", "42501", "42601", "XX000", "28P01",
            "3D000",
        ] {
            assert_eq!(class_of_sqlstate(code), ErrorClass::Definite, "{code}");
        }
    }

    #[test]
    fn quoted_values_are_redacted() {
        assert_eq!(
            redact_quoted("invalid input syntax for type integer: \"abc\""),
            "invalid input syntax for type integer: \"…\""
        );
        assert_eq!(
            redact_quoted("value \"123456789012\" is out of range for type integer"),
            "value \"…\" is out of range for type integer"
        );
        assert_eq!(redact_quoted("no quotes"), "no quotes");
        assert_eq!(redact_quoted("dangling \"secret"), "dangling \"…\"");
        assert!(message_may_hold_values("22P02"));
        assert!(!message_may_hold_values("23505"));
    }

    #[test]
    fn copy_context_gives_the_column_only() {
        assert_eq!(
            copy_column("COPY t, line 3, column code: \"toolong\""),
            Some("code")
        );
        assert_eq!(copy_column("COPY t, line 3"), None);
        assert_eq!(copy_column("SQL statement \"x\""), None);
    }

    #[test]
    fn conversion_keeps_the_class() {
        let e: engine::Error = PgSinkError::Schema("target table a.b: bad".into()).into();
        assert_eq!(e.class(), ErrorClass::Definite);
        assert!(e.to_string().contains("a.b"));
        let e: engine::Error = PgSinkError::Transaction {
            action: "commit",
            failure: PgFailure {
                code: None,
                class: ErrorClass::Transient,
                text: "connection closed".into(),
            },
        }
        .into();
        assert!(e.is_transient());
    }
}

//! Errors of the PostgreSQL source, and their classification.

use engine::ErrorClass;

use super::replication::ReplError;

#[derive(Debug, thiserror::Error)]
pub enum PgSourceError {
    #[error("invalid source connection settings: {0}")]
    Config(String),
    #[error("cannot connect to the source: {0}")]
    Connect(String),
    #[error("{what}: {message}")]
    Query {
        what: String,
        message: String,
        class: ErrorClass,
    },
    #[error("replication connection: {0}")]
    Repl(#[from] ReplError),
    #[error("prerequisite not met: {0}")]
    Prerequisite(String),
    #[error("cannot decode the change stream: {0}")]
    Decode(String),
    #[error("{0}")]
    Resync(String),
    /// Shutdown was requested (not a failure: `run` returns `Ok`).
    #[error("stopped on request")]
    Stopped,
}

impl PgSourceError {
    /// The one place that decides whether a source failure is retried.
    pub fn class(&self) -> ErrorClass {
        match self {
            PgSourceError::Connect(_) | PgSourceError::Stopped => ErrorClass::Transient,
            PgSourceError::Query { class, .. } => *class,
            PgSourceError::Repl(e) => e.class(),
            PgSourceError::Config(_)
            | PgSourceError::Prerequisite(_)
            | PgSourceError::Decode(_)
            | PgSourceError::Resync(_) => ErrorClass::Definite,
        }
    }

    /// Wraps a tokio-postgres error of a named step.
    pub fn query(what: impl Into<String>, e: tokio_postgres::Error) -> Self {
        PgSourceError::Query {
            what: what.into(),
            class: classify_pg(&e),
            message: describe_pg(&e),
        }
    }
}

impl From<PgSourceError> for engine::Error {
    fn from(e: PgSourceError) -> Self {
        engine::Error::Source {
            class: e.class(),
            message: e.to_string(),
        }
    }
}

/// Transient: connection-level failures and SQLSTATE classes 08 (connection),
/// 40 (serialization, deadlock), 53 (resources), 57 (shutdown, cancel), 58 (system).
pub fn classify_pg(e: &tokio_postgres::Error) -> ErrorClass {
    match e.code() {
        Some(code) => {
            let c = code.code();
            if ["08", "40", "53", "57", "58"]
                .iter()
                .any(|p| c.starts_with(p))
            {
                ErrorClass::Transient
            } else {
                ErrorClass::Definite
            }
        }
        None => ErrorClass::Transient,
    }
}

/// The server's message (with SQLSTATE, detail and hint), or the client error.
/// PostgreSQL error details can quote row values (e.g. `Key (id)=(42)`), so
/// the detail is left out.
pub fn describe_pg(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(h) = db.hint() {
                s.push_str("; hint: ");
                s.push_str(h);
            }
            s
        }
        None => e.to_string(),
    }
}

//! Errors of the metadata database, classified transient (retry with backoff)
//! or definite (an operator must act). Messages name what failed and how to
//! fix it; they never carry secrets or row values.

use engine::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database cannot be reached or the pool has no free connection.
    #[error("metadata database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("metadata database: {what}: {message}")]
    Query {
        what: String,
        message: String,
        transient: bool,
    },
    /// The schema version does not match this binary.
    #[error("metadata database schema: {0}")]
    Schema(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness or state conflict the operator must resolve.
    #[error("{0}")]
    Conflict(String),
    /// Invalid input (a bad field in a command or a row).
    #[error("{0}")]
    Invalid(String),
    /// A tenant quota refuses the operation.
    #[error("quota: {0}")]
    Quota(String),
    /// This daemon no longer holds the task's lease: it must stop writing.
    #[error("lease of task {0} lost to another daemon: stopping it here")]
    Fenced(String),
}

pub type MetaResult<T> = std::result::Result<T, MetaError>;

impl MetaError {
    pub fn class(&self) -> ErrorClass {
        match self {
            MetaError::Unavailable(_) => ErrorClass::Transient,
            MetaError::Query { transient, .. } if *transient => ErrorClass::Transient,
            _ => ErrorClass::Definite,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// Wraps a driver error with what was being done.
    pub fn query(what: impl Into<String>, err: tokio_postgres::Error) -> Self {
        let transient = is_transient_pg(&err);
        let message = match err.as_db_error() {
            Some(db) => {
                let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
                if let Some(detail) = db.detail() {
                    // Details of unique violations echo key values: keep only the constraint.
                    if db.code() != &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
                        m.push_str(&format!("; {detail}"));
                    }
                }
                m
            }
            None => err.to_string(),
        };
        if !transient {
            if let Some(db) = err.as_db_error() {
                if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
                    return MetaError::Conflict(format!(
                        "{}: already exists ({})",
                        what.into(),
                        db.constraint().unwrap_or("unique constraint")
                    ));
                }
            }
        }
        MetaError::Query {
            what: what.into(),
            message,
            transient,
        }
    }
}

/// Connection loss, a read-only standby (after a failover), serialization
/// failures and shutdowns are transient; the rest is definite.
fn is_transient_pg(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    match err.code() {
        None => true, // I/O, closed connection, timeouts
        Some(code) => {
            let c = code.code();
            c.starts_with("08") // connection exception
                || c.starts_with("57P") // operator intervention (shutdown)
                || c.starts_with("53") // insufficient resources
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::READ_ONLY_SQL_TRANSACTION
                || *code == SqlState::LOCK_NOT_AVAILABLE
        }
    }
}

impl From<MetaError> for engine::Error {
    fn from(e: MetaError) -> Self {
        match e.class() {
            ErrorClass::Transient => engine::Error::source_transient(e.to_string()),
            ErrorClass::Definite => engine::Error::Config(e.to_string()),
        }
    }
}

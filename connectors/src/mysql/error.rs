//! Errors of the MySQL/MariaDB source, and their classification.

use engine::ErrorClass;

/// A failure of the binlog source. Messages name tables, columns, positions
/// and settings, never row values or secrets.
#[derive(Debug, thiserror::Error)]
pub enum MysqlSourceError {
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
    #[error("prerequisite not met: {0}")]
    Prerequisite(String),
    #[error("cannot decode the binlog: {0}")]
    Decode(String),
    /// A schema change the source cannot follow safely.
    #[error("cannot follow a schema change: {0}")]
    Schema(String),
    /// The stored position cannot be resumed from: the tables must be copied again.
    #[error("{0}")]
    Resync(String),
    /// The connection to the server broke (the task is retried).
    #[error("binlog connection lost: {0}")]
    Lost(String),
    /// The checkpoint store failed.
    #[error("{0}")]
    Store(String),
    /// Shutdown was requested (not a failure: `run` returns `Ok`).
    #[error("stopped on request")]
    Stopped,
}

impl MysqlSourceError {
    /// The one place that decides whether a source failure is retried.
    pub fn class(&self) -> ErrorClass {
        match self {
            MysqlSourceError::Connect(_)
            | MysqlSourceError::Lost(_)
            | MysqlSourceError::Stopped => ErrorClass::Transient,
            MysqlSourceError::Query { class, .. } => *class,
            MysqlSourceError::Config(_)
            | MysqlSourceError::Prerequisite(_)
            | MysqlSourceError::Decode(_)
            | MysqlSourceError::Schema(_)
            | MysqlSourceError::Resync(_)
            | MysqlSourceError::Store(_) => ErrorClass::Definite,
        }
    }

    /// Wraps a driver error of a named step.
    pub fn query(what: impl Into<String>, e: mysql_async::Error) -> Self {
        MysqlSourceError::Query {
            what: what.into(),
            class: classify(&e),
            message: describe(&e),
        }
    }
}

impl From<MysqlSourceError> for engine::Error {
    fn from(e: MysqlSourceError) -> Self {
        engine::Error::Source {
            class: e.class(),
            message: e.to_string(),
        }
    }
}

/// Server error codes worth a retry: lock wait timeout (1205), deadlock
/// (1213), too many connections (1040), server shutdown (1053), query
/// interrupted (1317), lost connection variants (2006, 2013), table
/// definition changed under a consistent snapshot (1412), out of
/// resources (1041), and read-only / replica switching (1290, 1836).
const TRANSIENT_CODES: &[u16] = &[
    1040, 1041, 1053, 1205, 1213, 1290, 1317, 1412, 1836, 2006, 2013,
];

/// Connection-level failures and the server codes above are transient.
pub fn classify(e: &mysql_async::Error) -> ErrorClass {
    match e {
        // Codes below 1000 are the server's own file-system errors (a
        // temporary file that could not be created or removed, a full disk):
        // worth a retry.
        mysql_async::Error::Server(s) if s.code >= 1000 && !TRANSIENT_CODES.contains(&s.code) => {
            ErrorClass::Definite
        }
        mysql_async::Error::Url(_) => ErrorClass::Definite,
        _ => ErrorClass::Transient,
    }
}

/// The server's code, SQLSTATE and message, or the driver error. Driver
/// value-conversion errors are summarized without their value.
pub fn describe(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => {
            format!("{} (error {}, SQLSTATE {})", s.message, s.code, s.state)
        }
        mysql_async::Error::Driver(mysql_async::DriverError::FromValue { .. })
        | mysql_async::Error::Driver(mysql_async::DriverError::FromRow { .. }) => {
            "unexpected value type in a server reply".into()
        }
        other => other.to_string(),
    }
}

/// The server error code, if `e` is a server error.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

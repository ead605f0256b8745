//! Errors of the MySQL sink and their classification.
//!
//! Server messages are reduced to what is safe to show: MySQL quotes the
//! offending value in some messages (`Duplicate entry '…' for key`,
//! `Incorrect integer value: '…' for column`), so those are rebuilt from the
//! error code and the column or key name only; any other message that is not
//! known to name objects only has its quoted parts masked. Passwords never
//! appear (connection errors show the URL with the password masked).

use std::fmt;

use engine::{ErrorClass, TableId};

/// Server error codes that are worth retrying: the connection or the server
/// went away, a deadlock or lock wait timeout, too many connections, the
/// server is read-only (fail-over) or short of memory or disk.
const TRANSIENT_CODES: &[u16] = &[
    1021, // disk full
    1037, // out of memory
    1040, // too many connections
    1041, // out of memory
    1053, // server shutdown in progress
    1114, // table is full
    1158, 1159, 1160, 1161, // network read/write errors and timeouts
    1180, 1181, // got an error during COMMIT / ROLLBACK
    1203, // max_user_connections
    1205, // lock wait timeout
    1213, // deadlock
    1290, // --read-only (a primary being demoted)
    1317, // query interrupted
    1614, // XA deadlock
    1637, // too many active concurrent transactions
    1836, // read-only mode
    1927, // MariaDB: connection was killed
    2006, // server has gone away (client-side code)
    2013, // lost connection during query (client-side code)
    3024, // MySQL: max_execution_time exceeded
    4031, // MariaDB: disconnected for inactivity
];

/// Codes whose messages quote the offending value; their text is rebuilt.
const VALUE_CODES: &[(u16, &str)] = &[
    (1062, "duplicate entry"),
    (1292, "incorrect date, time or number value"),
    (1366, "incorrect value"),
    (1367, "illegal value"),
    (1411, "incorrect value for a function"),
    (1586, "duplicate entry"),
    (3140, "invalid JSON text"),
];

/// Codes whose messages name objects only (no row values).
const SAFE_CODES: &[u16] = &[
    1040, 1044, 1045, 1048, 1049, 1052, 1053, 1054, 1060, 1061, 1064, 1071, 1091, 1114, 1118, 1142,
    1143, 1146, 1148, 1153, 1170, 1205, 1213, 1227, 1264, 1265, 1290, 1301, 1364, 1406, 1451, 1452,
    1836, 1927, 3819, 3948, 4025,
];

/// Whether retrying can help with server error `code`.
pub fn class_of_code(code: u16) -> ErrorClass {
    if TRANSIENT_CODES.contains(&code) {
        ErrorClass::Transient
    } else {
        ErrorClass::Definite
    }
}

fn advice(code: u16) -> Option<&'static str> {
    Some(match code {
        1264 => "widen the target column type, or fix the source data",
        1406 => "widen the target column (a longer VARCHAR or a TEXT type), or fix the source data",
        1265 | 1292 | 1366 | 1367 => {
            "the target column type does not accept the source value exactly: change the \
             target column type, or map the column to another one"
        }
        1048 => "make the target column nullable",
        1364 => "give the target column a default or make it nullable",
        1062 | 1586 => {
            "the target table has a unique index the source data does not satisfy: drop it \
             or make it match the source key"
        }
        1044 | 1142 | 1143 | 1227 => {
            "grant the target user SELECT, INSERT, UPDATE and DELETE on the tables (and CREATE, \
             ALTER, CREATE TEMPORARY TABLES when dbsync creates or extends tables)"
        }
        1045 => "check the user and the password (password_env) of the target url",
        1049 => "create the database, or set create_tables = true",
        1054 => "the target table lacks a column: add it, or let dbsync add it",
        1146 => "the target table is missing: create it, or set create_tables = true",
        1071 => "the key is too long for an index (3072 bytes): shorten the key columns",
        1118 => "the row is too wide: use TEXT types for the widest columns",
        1153 | 1301 => "raise max_allowed_packet on the target server",
        1148 | 3948 => "enable local_infile on the target server",
        1451 | 1452 => "foreign keys in the target cannot be checked row by row: drop them",
        3140 | 3819 | 4025 => {
            "the target table has a check the source data does not satisfy (MariaDB JSON \
             columns check that the text is valid JSON)"
        }
        _ => return None,
    })
}

/// The identifier after `marker` (`for column 'c'`, ``for column `db`.`t`.`c` ``,
/// `for key 'PRIMARY'`): the last part of a quoted, dotted name.
fn name_after<'a>(msg: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &msg[msg.rfind(marker)? + marker.len()..];
    let mut last = None;
    let mut rest = rest;
    loop {
        let quote = rest.chars().next()?;
        if quote != '`' && quote != '\'' {
            return last;
        }
        let end = rest[1..].find(quote)? + 1;
        last = Some(&rest[1..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('.') {
            Some(r) => rest = r,
            None => return last,
        }
    }
}

/// Masks every `'…'` part of a message.
pub fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '\'' {
            if !inside {
                out.push_str("'…");
            } else {
                out.push('\'');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push('\'');
    }
    out
}

/// A safe description of server error `code` with message `message`.
pub fn describe_server_error(code: u16, message: &str) -> String {
    let mut text = if let Some((_, what)) = VALUE_CODES.iter().find(|(c, _)| *c == code) {
        let mut t = (*what).to_string();
        if let Some(col) = name_after(message, "for column ") {
            t.push_str(" for column ");
            t.push_str(col);
        } else if let Some(key) = name_after(message, "for key ") {
            t.push_str(" for key ");
            t.push_str(key);
        }
        t
    } else if SAFE_CODES.contains(&code) {
        message.to_string()
    } else {
        redact_quoted(message)
    };
    text.push_str(" (MySQL error ");
    text.push_str(itoa::Buffer::new().format(code));
    text.push(')');
    if let Some(a) = advice(code) {
        text.push_str(": ");
        text.push_str(a);
    }
    text
}

/// A failed call to the target server, reduced to safe facts.
#[derive(Debug, Clone)]
pub struct MyFailure {
    /// The server error code, when the server reported the error.
    pub code: Option<u16>,
    /// Whether retrying can help.
    pub class: ErrorClass,
    /// Human-readable description without row values or secrets.
    pub text: String,
}

impl MyFailure {
    /// Classifies and describes a driver error.
    pub fn from_driver(e: &mysql_async::Error) -> Self {
        use mysql_async::{DriverError as D, Error as E, UrlError as U};
        let transient = |text: String| Self {
            code: None,
            class: ErrorClass::Transient,
            text: format!("{text} (transient: dbsync retries)"),
        };
        let definite = |text: String| Self {
            code: None,
            class: ErrorClass::Definite,
            text,
        };
        match e {
            E::Server(s) => Self {
                code: Some(s.code),
                class: class_of_code(s.code),
                text: describe_server_error(s.code, &s.message),
            },
            E::Io(io) => transient(format!("connection error: {io}")),
            E::Driver(d) => match d {
                D::ConnectionClosed
                | D::PacketOutOfOrder
                | D::UnexpectedPacket { .. }
                | D::PoolDisconnected => transient(format!("connection error: {d}")),
                D::ReadOnlyTransNotSupported
                | D::CantParseServerVersion { .. }
                | D::UnknownAuthPlugin { .. }
                | D::MysqlOldPasswordDisabled
                | D::CleartextPluginDisabled
                | D::NoClientSslFlagFromServer => definite(format!("{d}")),
                D::PacketTooLarge => definite(
                    "a packet is larger than max_allowed_packet: raise max_allowed_packet on \
                     the target server"
                        .into(),
                ),
                // Other driver errors can describe parameters; keep the kind only.
                _ => definite("the MySQL driver refused a request (an internal error)".into()),
            },
            E::Url(u) => definite(match u {
                U::InvalidParamValue { param, .. } => {
                    format!("invalid value for the connection url parameter {param}")
                }
                U::UnknownParameter { param } => {
                    format!("unknown connection url parameter {param}")
                }
                U::UnsupportedScheme { scheme } => format!("unsupported url scheme {scheme}"),
                U::FeatureRequired { param, feature } => {
                    format!("url parameter {param} needs the driver feature {feature}")
                }
                _ => "invalid connection url".into(),
            }),
            E::Other(_) => definite("the MySQL driver failed (an internal error)".into()),
        }
    }
}

impl fmt::Display for MyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An error of the MySQL sink.
#[derive(Debug, thiserror::Error)]
pub enum MysqlSinkError {
    /// The target configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// Connecting to the target (or preparing the session) failed.
    #[error("cannot connect to the target {target}: {failure}")]
    Connect {
        /// The target URL, password masked.
        target: String,
        /// What went wrong.
        failure: MyFailure,
    },
    /// A statement on a target table failed.
    #[error("{action} on target table {table} failed: {failure}")]
    Statement {
        /// The target table.
        table: TableId,
        /// What the sink was doing.
        action: &'static str,
        /// What went wrong.
        failure: MyFailure,
    },
    /// `START TRANSACTION`, `COMMIT` or `ROLLBACK` failed.
    #[error("{action} of the target transaction failed: {failure}")]
    Transaction {
        /// `begin`, `commit` or `rollback`.
        action: &'static str,
        /// What went wrong.
        failure: MyFailure,
    },
    /// The target table does not fit the source schema; the message says how to fix it.
    #[error("{0}")]
    Schema(String),
    /// The target table was changed (columns added) after the open transaction
    /// had written to it: MySQL commits implicitly on DDL, so the transaction
    /// was rolled back instead and is retried (transient).
    #[error("{0}")]
    SchemaChanged(String),
    /// A value the target column cannot hold exactly.
    #[error("cannot write column {column} of target table {table}: {reason}")]
    InvalidValue {
        /// The target table.
        table: TableId,
        /// The column.
        column: String,
        /// Why (never the value).
        reason: String,
    },
    /// A row the sink must not write (a bug upstream of the sink).
    #[error("cannot write to target table {table}: {message}")]
    InvalidRow {
        /// The target table.
        table: TableId,
        /// What is wrong with the row (never its values).
        message: String,
    },
}

impl MysqlSinkError {
    /// Whether retrying can help: lost connections, deadlocks (1213), lock
    /// wait timeouts (1205), a server shutting down (1053), too many
    /// connections (1040) and the like are transient; data, syntax,
    /// privilege and schema errors are definite.
    pub fn class(&self) -> ErrorClass {
        match self {
            MysqlSinkError::Connect { failure, .. }
            | MysqlSinkError::Statement { failure, .. }
            | MysqlSinkError::Transaction { failure, .. } => failure.class,
            MysqlSinkError::SchemaChanged(_) => ErrorClass::Transient,
            MysqlSinkError::Config(_)
            | MysqlSinkError::Schema(_)
            | MysqlSinkError::InvalidValue { .. }
            | MysqlSinkError::InvalidRow { .. } => ErrorClass::Definite,
        }
    }

    /// The server error code, if the server reported one.
    pub fn code(&self) -> Option<u16> {
        match self {
            MysqlSinkError::Connect { failure, .. }
            | MysqlSinkError::Statement { failure, .. }
            | MysqlSinkError::Transaction { failure, .. } => failure.code,
            _ => None,
        }
    }

    pub(crate) fn statement(table: &TableId, action: &'static str, e: &mysql_async::Error) -> Self {
        MysqlSinkError::Statement {
            table: table.clone(),
            action,
            failure: MyFailure::from_driver(e),
        }
    }

    pub(crate) fn transaction(action: &'static str, e: &mysql_async::Error) -> Self {
        MysqlSinkError::Transaction {
            action,
            failure: MyFailure::from_driver(e),
        }
    }
}

impl From<MysqlSinkError> for engine::Error {
    fn from(e: MysqlSinkError) -> Self {
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
    fn codes_are_classified() {
        for code in [1213, 1205, 1053, 1040, 2006, 2013, 1927, 1290] {
            assert_eq!(class_of_code(code), ErrorClass::Transient, "{code}");
        }
        for code in [1264, 1366, 1406, 1292, 1062, 1064, 1142, 1054, 1146, 1045] {
            assert_eq!(class_of_code(code), ErrorClass::Definite, "{code}");
        }
    }

    #[test]
    fn values_never_survive_in_messages() {
        let cases = [
            (
                1062,
                "Duplicate entry 's3cret-42' for key 'PRIMARY'",
                "for key PRIMARY",
            ),
            (
                1366,
                "Incorrect integer value: 's3cret' for column `db`.`t`.`qty` at row 1",
                "for column qty",
            ),
            (
                1292,
                "Incorrect datetime value: 's3cret' for column 'ts' at row 3",
                "for column ts",
            ),
            (
                3140,
                "Invalid JSON text: \"Invalid value.\" at position 0 in value for column 't.j'.",
                "invalid JSON text",
            ),
            (
                1105,
                "Unknown error near 's3cret'",
                "Unknown error near '…'",
            ),
        ];
        for (code, msg, expect) in cases {
            let d = describe_server_error(code, msg);
            assert!(!d.contains("s3cret"), "{d}");
            assert!(d.contains(expect), "{d}");
            assert!(d.contains(&format!("MySQL error {code}")), "{d}");
        }
        let d = describe_server_error(1406, "Data too long for column 'name' at row 1");
        assert!(d.starts_with("Data too long for column 'name'"), "{d}");
        assert!(d.contains("widen"), "{d}");
    }

    #[test]
    fn names_after_markers() {
        assert_eq!(
            name_after("x for column `a`.`b`.`c` at", "for column "),
            Some("c")
        );
        assert_eq!(
            name_after("x for column 'c' at row 1", "for column "),
            Some("c")
        );
        assert_eq!(name_after("for key 'PRIMARY'", "for key "), Some("PRIMARY"));
        assert_eq!(name_after("for key PRIMARY", "for key "), None);
        assert_eq!(redact_quoted("a 'b' c 'd"), "a '…' c '…'");
    }

    #[test]
    fn conversion_keeps_the_class() {
        let e: engine::Error = MysqlSinkError::SchemaChanged("x".into()).into();
        assert!(e.is_transient());
        let e: engine::Error = MysqlSinkError::InvalidValue {
            table: TableId::new("d", "t"),
            column: "c".into(),
            reason: "r".into(),
        }
        .into();
        assert!(!e.is_transient());
        assert!(e.to_string().contains("column c of target table d.t"));
    }
}

//! Engine errors and their classification.
//!
//! Every crate has its own `thiserror` error type and converts into [`Error`]
//! with a [`ErrorClass`]: *transient* errors (a dropped connection, a
//! deadlock, a server restarting) are retried with backoff by the daemon;
//! *definite* errors (bad configuration, missing prerequisite, a row the
//! target rejects) stop the task with the message, which says what to fix.

use std::fmt;

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry with backoff; progress resumes from the last checkpoint.
    Transient,
    /// Stop the task; an operator has to act (the message says how).
    Definite,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Definite => "definite",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("source: {message}")]
    Source { class: ErrorClass, message: String },
    #[error("target: {message}")]
    Sink { class: ErrorClass, message: String },
    #[error("checkpoint store: {0}")]
    Checkpoint(String),
    #[error("pipeline: {0}")]
    Pipeline(String),
}

impl Error {
    pub fn source_transient(message: impl Into<String>) -> Self {
        Error::Source {
            class: ErrorClass::Transient,
            message: message.into(),
        }
    }

    pub fn source_definite(message: impl Into<String>) -> Self {
        Error::Source {
            class: ErrorClass::Definite,
            message: message.into(),
        }
    }

    pub fn sink_transient(message: impl Into<String>) -> Self {
        Error::Sink {
            class: ErrorClass::Transient,
            message: message.into(),
        }
    }

    pub fn sink_definite(message: impl Into<String>) -> Self {
        Error::Sink {
            class: ErrorClass::Definite,
            message: message.into(),
        }
    }

    /// The one place that decides whether an error is retried.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Source { class, .. } | Error::Sink { class, .. } => *class,
            // A checkpoint store that fails to write is a local disk problem:
            // retrying would hide it, so stop the task.
            Error::Config(_) | Error::Checkpoint(_) | Error::Pipeline(_) => ErrorClass::Definite,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

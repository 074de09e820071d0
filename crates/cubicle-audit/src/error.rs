//! The audit crate's errors. Verification findings are not errors: they are
//! the [`crate::VerifyReport`] a successful verify returns.

use std::path::PathBuf;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing a log file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record given to `append` cannot be written (an `Other` record that is
    /// not a JSON object with its own `kind`, for instance).
    #[error("cannot write this audit record: {0}")]
    BadRecord(String),
    /// The log folder holds files Cubicle cannot continue from.
    #[error("{}: {message}", file.display())]
    Corrupt {
        /// The file concerned.
        file: PathBuf,
        /// What is wrong, in words.
        message: String,
    },
    /// Sending records to an OpenTelemetry collector failed.
    #[error("sending audit records to {endpoint} failed: {message}")]
    Export {
        /// The collector's URL.
        endpoint: String,
        /// What went wrong (the HTTP status or the connection error).
        message: String,
    },
}

impl AuditError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |source| AuditError::Io { path, source }
    }
}

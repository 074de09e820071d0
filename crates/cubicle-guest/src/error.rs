//! The guest's failure type for one request, and how operating-system errors
//! map onto the protocol's stable [`ErrorCode`]s.

use std::io;
use std::path::Path;

use cubicle_protocol::guest::{ErrorCode, OpResult};

/// A request failed with a protocol error code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    /// Failure category.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

impl OpError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Maps an I/O error on `path` to its protocol code.
    pub fn io(path: &Path, err: &io::Error) -> Self {
        let code = code_of(err);
        let what = match code {
            ErrorCode::NotFound => "no such file or directory".to_owned(),
            ErrorCode::PermissionDenied => "permission denied".to_owned(),
            ErrorCode::IsDirectory => "is a directory".to_owned(),
            ErrorCode::NotDirectory => "not a directory".to_owned(),
            ErrorCode::AlreadyExists => "already exists".to_owned(),
            _ => err.to_string(),
        };
        Self::new(code, format!("{}: {what}", path.display()))
    }

    /// The failure as a response payload.
    pub fn into_result(self) -> OpResult {
        OpResult::Failed {
            code: self.code,
            message: self.message,
        }
    }
}

/// The protocol code for an I/O error.
pub fn code_of(err: &io::Error) -> ErrorCode {
    match err.kind() {
        io::ErrorKind::NotFound => ErrorCode::NotFound,
        io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        io::ErrorKind::IsADirectory => ErrorCode::IsDirectory,
        io::ErrorKind::NotADirectory => ErrorCode::NotDirectory,
        io::ErrorKind::AlreadyExists => ErrorCode::AlreadyExists,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidFilename => ErrorCode::InvalidInput,
        _ => match err.raw_os_error() {
            Some(libc::EROFS) => ErrorCode::ReadOnly,
            Some(libc::ELOOP) => ErrorCode::InvalidInput,
            _ => ErrorCode::Io,
        },
    }
}

//! Errors of the eval harness: a suite that cannot be loaded, a task that
//! cannot be started, a report that cannot be read or written.

use std::path::PathBuf;

/// Everything that can stop an eval run or report from being produced.
///
/// A task whose *outputs* are wrong is not an error: it is a failed grade in
/// the report. These are the failures of the harness itself.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A `task.toml` is malformed or names something that does not exist.
    #[error("task {path}: {message}")]
    Task {
        /// The task's folder or file.
        path: PathBuf,
        /// What is wrong, and how to fix it.
        message: String,
    },
    /// A transcript to replay could not be loaded.
    #[error("transcript {path}: {message}")]
    Transcript {
        /// The transcript.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The computer for a task could not be started.
    #[error("could not start a cubicle for task {task}: {message}")]
    Computer {
        /// The task id.
        task: String,
        /// What the backend said.
        message: String,
    },
    /// The model could not be set up for a live run.
    #[error("model: {0}")]
    Model(String),
    /// A report could not be parsed or serialised.
    #[error("report {path}: {message}")]
    Report {
        /// The report.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl EvalError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

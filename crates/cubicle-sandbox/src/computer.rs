//! The `Computer` trait: the one contract between the agent and wherever its
//! commands run.

use async_trait::async_trait;
use cubicle_protocol::events::GrantInfo;
use cubicle_protocol::guest::{
    DirEntry, ErrorCode, ExecRequest, ExecResult, FileStat, GrepMatch, GrepRequest, OutputStream,
};
use tokio::sync::mpsc;

use crate::guest_client::GuestClient;

/// What a front end and the model need to know about a computer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputerInfo {
    /// Backend name: `host`, `jail`, `vm`, `remote`.
    pub backend: String,
    /// Whether the backend isolates commands from the host. Only `host` says no.
    pub isolated: bool,
    /// Path of the session's scratch directory inside the computer.
    pub workspace: String,
    /// Host path of the scratch directory.
    pub workspace_host: String,
    /// The granted folders, with their paths inside the computer.
    pub grants: Vec<GrantInfo>,
}

/// Capacity, in chunks, for a channel taking a command's live output: a
/// receiver that falls this far behind holds the command up instead of
/// letting its output pile up in memory.
pub const LIVE_OUTPUT_CHUNKS: usize = 16;

/// A chunk of live command output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Which stream.
    pub stream: OutputStream,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A finished command with its collected output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Everything written to stdout (up to the request's output cap).
    pub stdout: Vec<u8>,
    /// Everything written to stderr (up to the request's output cap).
    pub stderr: Vec<u8>,
    /// How it ended.
    pub result: ExecResult,
}

/// Errors of the sandbox layer.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The guest refused or failed a request.
    #[error("{message}")]
    Guest {
        /// Failure category.
        code: ErrorCode,
        /// Detail from the guest.
        message: String,
    },
    /// The guest went away (crashed, killed, or the session stopped).
    #[error("the cubicle stopped unexpectedly: {0}")]
    Disconnected(String),
    /// The guest sent something that breaks the protocol.
    #[error("protocol error from the cubicle: {0}")]
    Protocol(String),
    /// The computer could not be started.
    #[error("could not start the cubicle: {0}")]
    Start(String),
    /// A configuration problem the person must fix (a missing grant, say).
    #[error("{0}")]
    Config(String),
    /// A host-side I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SandboxError {
    /// The guest's error code, when the guest produced the error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SandboxError::Guest { code, .. } => Some(*code),
            SandboxError::Disconnected(_)
            | SandboxError::Protocol(_)
            | SandboxError::Start(_)
            | SandboxError::Config(_)
            | SandboxError::Io(_) => None,
        }
    }
}

/// A cubicle: an isolated computer (or, for `host`, a confined view of this
/// one) running `cubicle-guest`.
///
/// Backends implement [`Computer::info`], [`Computer::guest`] and
/// [`Computer::stop`]; every operation goes through the guest and is shared.
/// Dropping a future returned by [`Computer::exec`] kills the command.
#[async_trait]
pub trait Computer: Send + Sync {
    /// Describes the computer.
    fn info(&self) -> &ComputerInfo;

    /// The connection to the guest.
    fn guest(&self) -> &GuestClient;

    /// Host process id of the computer's outermost process (the guest, the
    /// jail launcher, the VM monitor), for measuring and diagnostics.
    fn host_pid(&self) -> Option<u32> {
        None
    }

    /// Stops the computer: kills every command, ends the guest, and frees the
    /// backend's resources. Idempotent.
    async fn stop(&self) -> Result<(), SandboxError>;

    /// Runs a command to completion, streaming its output to `live` as it
    /// arrives and also collecting it.
    async fn exec(
        &self,
        req: ExecRequest,
        live: Option<mpsc::Sender<OutputChunk>>,
    ) -> Result<ExecOutput, SandboxError> {
        self.guest().exec(req, live).await
    }

    /// Reads up to `limit` bytes at `offset`; returns the bytes and the file size.
    async fn read_file(
        &self,
        path: &str,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<(Vec<u8>, u64), SandboxError> {
        self.guest().read_file(path, offset, limit).await
    }

    /// Replaces a file atomically, creating parent directories.
    async fn write_file(&self, path: &str, data: Vec<u8>) -> Result<(), SandboxError> {
        self.guest().write_file(path, data).await
    }

    /// Metadata of a path.
    async fn stat(&self, path: &str) -> Result<FileStat, SandboxError> {
        self.guest().stat(path).await
    }

    /// Entries of a directory, sorted by name.
    async fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, SandboxError> {
        self.guest().list_dir(path).await
    }

    /// Paths under `root` matching `pattern`, newest first, and whether the
    /// list was cut at `limit`.
    async fn glob(
        &self,
        root: &str,
        pattern: &str,
        limit: u32,
    ) -> Result<(Vec<String>, bool), SandboxError> {
        self.guest().glob(root, pattern, limit).await
    }

    /// Matching lines, and whether the list was cut at the request's limit.
    async fn grep(&self, req: GrepRequest) -> Result<(Vec<GrepMatch>, bool), SandboxError> {
        self.guest().grep(req).await
    }
}

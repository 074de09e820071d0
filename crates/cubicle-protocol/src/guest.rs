//! The host⇄guest protocol: how the `cubicle` process drives `cubicle-guest`
//! inside a cubicle, over whatever byte stream the backend has (pipes for
//! `host`, a socketpair for `jail`, virtio-serial for `vm`).
//!
//! # Framing
//!
//! Each frame is a 4-byte big-endian length followed by that many bytes of
//! UTF-8 JSON: a [`HostFrame`] from host to guest, a [`GuestFrame`] back. A
//! frame longer than [`MAX_FRAME_LEN`] is a protocol error; the reader drops
//! the connection rather than allocate it. Binary payloads travel as base64
//! ([`crate::bytes::Bytes`]) in chunks of at most [`DATA_CHUNK`] bytes.
//!
//! # Conversation
//!
//! 1. The host sends [`HostFrame::Hello`] with the versions it speaks and the
//!    guest's configuration; the guest answers [`GuestFrame::Hello`] with the
//!    version it chose, or an [`GuestFrame::Error`] with
//!    [`ErrorCode::UnsupportedVersion`] and exits.
//! 2. The host sends [`HostFrame::Request`]s, each with a fresh `id`. Requests
//!    run concurrently; the guest answers each with exactly one
//!    [`GuestFrame::Response`] carrying the same `id`. An `exec` request may be
//!    preceded by any number of [`GuestFrame::Output`] frames with its `id`.
//! 3. A frame the guest cannot parse gets [`GuestFrame::Error`] (with the
//!    request id when one could be read) and the guest carries on.
//!
//! # Tunnels and flow control
//!
//! A process in the cubicle that connects to the guest's egress listener
//! becomes a tunnel: [`GuestFrame::TunnelOpen`], then `TunnelData` both ways.
//! A side whose end stops sending (a half-close) says `TunnelEof`, and the
//! other side half-closes its end in turn, so that an answer still comes
//! back after a request is finished. `TunnelClose` ends the tunnel: a side
//! sends it once both directions are done, or at once on an error.
//!
//! Each direction of a tunnel has a window of [`TUNNEL_WINDOW`] bytes: a
//! side sends no more `TunnelData` payload than the other side has yet to
//! acknowledge with a `TunnelAck`, and a receiver acknowledges bytes once it
//! has passed them on (to the in-cubicle socket, or to the host's egress
//! proxy). So a reader that stops reading stalls its own tunnel, and only
//! that one: the shared channel keeps moving, and neither side ever holds
//! more than a window per tunnel. The host enforces its side: a guest that
//! overruns the window has the tunnel closed. (Version 1 had neither windows
//! nor half-closes.)
//!
//! # Command output and flow control
//!
//! A running command's output is flow-controlled the same way, counted in
//! frames: the guest has at most [`OUTPUT_WINDOW`] `Output` frames of one
//! `exec` request (both streams together, each at most [`DATA_CHUNK`]
//! bytes) unacknowledged, and the host acknowledges them with
//! [`HostFrame::OutputAck`] once it has passed them on (to its caller's
//! live stream, or into the collected result). While the window is closed
//! the output waits in the command's pipe, which gathers it, so it arrives
//! in fewer, larger frames when the host is slow; once the pipe is full the
//! command blocks on it, as it would writing to a slow terminal. So a caller that stops reading a command's live output stalls
//! that command and nothing else, and the host holds at most a window of it.
//! A guest that overruns the window fails the request and has its command
//! killed. A host that stops waiting for a command says
//! [`HostFrame::OutputStop`], after which the guest reads and drops its
//! output instead of waiting for room. (Version 2 had no output window.)
//!
//! The guest trusts the host; the host treats every guest frame as untrusted
//! input, since everything inside the cubicle may be hostile.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bytes::Bytes;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 3;

/// Largest frame either side accepts, in bytes of JSON.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// Largest binary chunk put in one frame (before base64).
pub const DATA_CHUNK: usize = 64 * 1024;

/// Bytes of tunnel payload one side may send before the other acknowledges
/// them; see the module's "Tunnels and flow control".
pub const TUNNEL_WINDOW: u64 = 512 * 1024;

/// `Output` frames of one `exec` request the guest may send before the host
/// acknowledges them; see the module's "Command output and flow control".
pub const OUTPUT_WINDOW: u64 = 32;

/// Largest file payload of one `read_file` or `write_file` request.
pub const MAX_FILE_CHUNK: u64 = 8 * 1024 * 1024;

/// Frames the host sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostFrame {
    /// First frame of a connection.
    Hello {
        /// Lowest protocol version the host accepts.
        min_version: u32,
        /// Highest protocol version the host speaks.
        max_version: u32,
        /// How the guest should behave for this session.
        config: GuestConfig,
    },
    /// Asks the guest to do something.
    Request {
        /// Host-chosen id, unique per connection, echoed in replies.
        id: u64,
        /// What to do.
        op: Op,
    },
    /// Bytes for a tunnel the guest opened.
    TunnelData {
        /// Tunnel id from [`GuestFrame::TunnelOpen`].
        tunnel: u64,
        /// Payload.
        data: Bytes,
    },
    /// The host passed on this many more bytes of a tunnel's guest data,
    /// which reopens the guest's window by as much.
    TunnelAck {
        /// Tunnel id.
        tunnel: u64,
        /// Bytes passed on since the last acknowledgement.
        bytes: u64,
    },
    /// The tunnel's upstream will send nothing more (it half-closed); the
    /// guest half-closes the in-cubicle connection in turn.
    TunnelEof {
        /// Tunnel id.
        tunnel: u64,
    },
    /// The host passed on this many more `Output` frames of a running
    /// `exec` request, which reopens the guest's output window by as many.
    OutputAck {
        /// The `exec` request's id.
        id: u64,
        /// Frames passed on since the last acknowledgement.
        frames: u64,
    },
    /// The host wants no more output of a running `exec` request (its
    /// caller went away): the guest reads and drops it from now on.
    OutputStop {
        /// The `exec` request's id.
        id: u64,
    },
    /// The host closed (or refused) a tunnel.
    TunnelClose {
        /// Tunnel id.
        tunnel: u64,
        /// Why, when refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// Frames the guest sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GuestFrame {
    /// Answer to [`HostFrame::Hello`].
    Hello {
        /// Version chosen for this connection.
        version: u32,
        /// `cubicle-guest` build version.
        guest_version: String,
        /// Process id of the guest in its own PID namespace.
        pid: u32,
        /// Optional features this guest supports (e.g. `"tunnel"`).
        capabilities: Vec<String>,
    },
    /// Final answer to a request.
    Response {
        /// The request's id.
        id: u64,
        /// Outcome.
        result: OpResult,
    },
    /// Output of a running `exec` request, within the request's output
    /// window ([`OUTPUT_WINDOW`]).
    Output {
        /// The `exec` request's id.
        id: u64,
        /// Which stream.
        stream: OutputStream,
        /// Bytes, at most [`DATA_CHUNK`].
        data: Bytes,
    },
    /// A protocol-level error, or the failure of a request.
    Error {
        /// The request it concerns, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// What kind of failure.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// A process in the cubicle connected to the guest's egress listener.
    TunnelOpen {
        /// Guest-chosen id, unique per connection.
        tunnel: u64,
    },
    /// Bytes from a tunnel's in-cubicle side.
    TunnelData {
        /// Tunnel id.
        tunnel: u64,
        /// Payload.
        data: Bytes,
    },
    /// The guest wrote this many more bytes of a tunnel's host data to the
    /// in-cubicle socket, which reopens the host's window by as much.
    TunnelAck {
        /// Tunnel id.
        tunnel: u64,
        /// Bytes written since the last acknowledgement.
        bytes: u64,
    },
    /// The in-cubicle side will send nothing more (it half-closed); the host
    /// half-closes the upstream connection in turn.
    TunnelEof {
        /// Tunnel id.
        tunnel: u64,
    },
    /// The in-cubicle side closed the tunnel.
    TunnelClose {
        /// Tunnel id.
        tunnel: u64,
    },
}

/// Session settings the host hands the guest in its hello.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestConfig {
    /// The session's scratch directory, as seen by the guest; the default cwd.
    pub workspace: String,
    /// When non-empty, file operations are confined to these directories
    /// (after resolving symlinks). Used by backends without a mount
    /// namespace of their own; empty means the guest sees only its grants.
    #[serde(default)]
    pub roots: Vec<Root>,
    /// Environment every command starts with (nothing else is inherited).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Address inside the cubicle on which the guest accepts connections and
    /// tunnels them to the host's egress proxy, e.g. `127.0.0.1:3128`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_listen: Option<String>,
}

/// A directory file operations may touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Absolute path, as the guest sees it.
    pub path: String,
    /// Whether writes, creates and removals are allowed under it.
    pub writable: bool,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Run a command; output streams as [`GuestFrame::Output`].
    Exec(ExecRequest),
    /// Feed the stdin of a running command started with [`Stdin::Pipe`].
    WriteStdin {
        /// Id of the `exec` request.
        exec_id: u64,
        /// Bytes to write.
        data: Bytes,
        /// Close stdin after writing.
        #[serde(default)]
        eof: bool,
    },
    /// Send a signal to a running command's whole process group.
    Signal {
        /// Id of the `exec` request.
        exec_id: u64,
        /// Signal number, e.g. 15 or 9.
        signal: i32,
    },
    /// Read (part of) a file.
    ReadFile {
        /// Absolute path.
        path: String,
        /// Byte offset to start at.
        #[serde(default)]
        offset: u64,
        /// Most bytes to return; capped at [`MAX_FILE_CHUNK`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u64>,
    },
    /// Write a file: atomically (temporary file, then rename) unless appending.
    WriteFile {
        /// Absolute path.
        path: String,
        /// Contents, at most [`MAX_FILE_CHUNK`].
        data: Bytes,
        /// Append instead of replacing.
        #[serde(default)]
        append: bool,
        /// Create missing parent directories.
        #[serde(default)]
        create_parents: bool,
        /// Permission bits for a new file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
    /// Metadata of a path.
    Stat {
        /// Absolute path.
        path: String,
    },
    /// Entries of a directory, sorted by name.
    ListDir {
        /// Absolute path.
        path: String,
    },
    /// Create a directory (and its parents).
    MakeDir {
        /// Absolute path.
        path: String,
    },
    /// Remove a file, or a directory with `recursive`.
    Remove {
        /// Absolute path.
        path: String,
        /// Remove a directory and everything under it.
        #[serde(default)]
        recursive: bool,
    },
    /// Paths under `root` matching a glob, newest first.
    Glob {
        /// Directory to search.
        root: String,
        /// Glob such as `**/*.csv`, relative to `root`.
        pattern: String,
        /// Most paths to return.
        limit: u32,
    },
    /// Lines matching a regular expression in files under `path`.
    Grep(GrepRequest),
    /// Liveness check; answered with [`OpResult::Pong`].
    Ping,
    /// Kill every running command and exit after answering.
    Shutdown,
}

/// A command to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Program and arguments, or a shell command line.
    pub command: Command,
    /// Working directory; the workspace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Variables added to the session's base environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What the command reads on stdin.
    #[serde(default)]
    pub stdin: Stdin,
    /// Kill the command after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Stop forwarding output after this many bytes (the command keeps
    /// running; the response says output was truncated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
}

impl ExecRequest {
    /// A shell command line with default settings.
    pub fn shell(line: impl Into<String>) -> Self {
        Self::new(Command::Shell(line.into()))
    }

    /// A program and its arguments with default settings.
    pub fn argv<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(Command::Argv(argv.into_iter().map(Into::into).collect()))
    }

    fn new(command: Command) -> Self {
        Self {
            command,
            cwd: None,
            env: BTreeMap::new(),
            stdin: Stdin::Null,
            timeout_ms: None,
            max_output_bytes: None,
        }
    }
}

/// How a command is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Executed directly; the first element is looked up on `PATH`.
    Argv(Vec<String>),
    /// Run by `/bin/sh -c`.
    Shell(String),
}

/// A command's standard input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Stdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// These bytes, then end of file.
    Bytes(Bytes),
    /// Kept open and fed by [`Op::WriteStdin`].
    Pipe,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A search for lines matching a regular expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrepRequest {
    /// Regular expression (Rust `regex` syntax).
    pub pattern: String,
    /// File or directory to search.
    pub path: String,
    /// Only files whose path relative to `path` matches this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// Match case-insensitively.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Most matching lines to return.
    pub limit: u32,
}

/// Outcome of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpResult {
    /// The request succeeded with nothing to report.
    Done,
    /// A command ended.
    Exit(ExecResult),
    /// Bytes of a file.
    FileData {
        /// The bytes read.
        data: Bytes,
        /// The file's full size.
        size: u64,
    },
    /// Metadata.
    Stat {
        /// The path's metadata.
        stat: FileStat,
    },
    /// Directory entries.
    Entries {
        /// Entries, sorted by name.
        entries: Vec<DirEntry>,
    },
    /// Paths found by `glob`.
    Paths {
        /// Absolute paths.
        paths: Vec<String>,
        /// More matched than `limit`.
        truncated: bool,
    },
    /// Lines found by `grep`.
    Matches {
        /// Matching lines.
        matches: Vec<GrepMatch>,
        /// More matched than `limit`.
        truncated: bool,
    },
    /// Answer to [`Op::Ping`].
    Pong,
    /// The request failed.
    Failed {
        /// What kind of failure.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// How a command ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecResult {
    /// Exit code, when the process exited.
    pub code: Option<i32>,
    /// Signal number, when the process was killed by one.
    pub signal: Option<i32>,
    /// Killed because it ran past its timeout.
    pub timed_out: bool,
    /// Output beyond `max_output_bytes` was dropped.
    pub output_truncated: bool,
    /// Wall-clock run time in milliseconds.
    pub duration_ms: u64,
    /// CPU time in user mode, milliseconds.
    pub user_ms: u64,
    /// CPU time in kernel mode, milliseconds.
    pub system_ms: u64,
    /// Peak resident set size of the command, KiB.
    pub max_rss_kib: u64,
}

impl ExecResult {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Kind of a file-system entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (not followed).
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// Metadata of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileStat {
    /// Entry kind (symlinks are followed).
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, milliseconds since the Unix epoch.
    pub modified_ms: i64,
    /// Whether the guest may write it.
    pub writable: bool,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    /// File name.
    pub name: String,
    /// Entry kind (symlinks are not followed).
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// One line found by `grep`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrepMatch {
    /// Absolute path of the file.
    pub path: String,
    /// 1-based line number.
    pub line_number: u64,
    /// The line, without its newline, cut to 500 characters.
    pub line: String,
}

/// Failure categories, stable across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON of a known shape.
    BadFrame,
    /// The frame exceeded [`MAX_FRAME_LEN`].
    FrameTooLarge,
    /// No common protocol version.
    UnsupportedVersion,
    /// A request arrived before the hello, or a second hello.
    OutOfOrder,
    /// The request's id is already in use.
    DuplicateId,
    /// An argument was invalid.
    InvalidInput,
    /// The path does not exist.
    NotFound,
    /// The path is outside the session's folders.
    OutsideRoots,
    /// The path is in a read-only folder.
    ReadOnly,
    /// The operating system refused.
    PermissionDenied,
    /// Expected a file, found a directory.
    IsDirectory,
    /// Expected a directory, found something else.
    NotDirectory,
    /// The target exists.
    AlreadyExists,
    /// The exec id names no running command.
    NoSuchProcess,
    /// The command could not be started.
    SpawnFailed,
    /// Any other I/O failure.
    Io,
    /// A bug or an unexpected state in the guest.
    Internal,
    /// A code this version does not know.
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn request_frame_shape() {
        let frame = HostFrame::Request {
            id: 7,
            op: Op::Exec(ExecRequest::argv(["true"])),
        };
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            json!({"type": "request", "id": 7, "op": {
                "op": "exec", "command": {"argv": ["true"]}, "env": {}, "stdin": "null"
            }})
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let bad =
            json!({"type": "request", "id": 1, "op": {"op": "stat", "path": "/", "extra": 1}});
        assert!(serde_json::from_value::<HostFrame>(bad).is_err());
    }

    #[test]
    fn unknown_error_codes_parse() {
        let code: ErrorCode = serde_json::from_str("\"new_code\"").unwrap();
        assert_eq!(code, ErrorCode::Unknown);
        assert_eq!(ErrorCode::OutsideRoots.to_string(), "outside_roots");
    }

    /// The frozen wire schema: a change here is a protocol change and needs a
    /// version bump (or a strictly additive, optional field).
    #[test]
    fn schema_snapshot() {
        let host = schemars::schema_for!(HostFrame);
        let guest = schemars::schema_for!(GuestFrame);
        insta::assert_json_snapshot!("host_frame_schema", host);
        insta::assert_json_snapshot!("guest_frame_schema", guest);
    }
}

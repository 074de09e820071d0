//! How the server gets sessions started: the front end that owns policy,
//! audit, egress and backends implements [`SessionStarter`]; the server only
//! asks it for a running [`SessionHandle`] and looks after it from then on.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use cubicle_agent::SessionHandle;
use cubicle_protocol::conversation::Usage;
use cubicle_protocol::events::TurnEndReason;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// A folder the person grants to a new session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    /// Path of the folder on the host.
    pub path: String,
    /// Whether the agent may change it (read-only when false).
    #[serde(default)]
    pub writable: bool,
}

/// What `POST /api/sessions` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The outcome the person wants, in their words; the server sends it as
    /// the session's first message once the session is registered.
    pub task: String,
    /// Folders the cubicle may see.
    #[serde(default)]
    pub grants: Vec<GrantRequest>,
    /// Backend name (`auto`, `jail`, `vm`, `host`, …); `None` means the default.
    #[serde(default)]
    pub backend: Option<String>,
    /// Model, `provider:model` or just `model`; `None` means the configured one.
    #[serde(default)]
    pub model: Option<String>,
}

/// How a session ended, handed to [`StartedSession::on_end`].
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEnd {
    /// Tokens the whole session used (zero if its task failed).
    pub usage: Usage,
    /// Why the last turn ended, if any turn ran.
    pub reason: Option<TurnEndReason>,
}

/// Turns what the person typed into the message the session receives: the
/// CLI expands plugins' slash commands (`/plugin:command ARGS`) here. An
/// error is shown to the person and nothing is sent.
pub type PrepareMessage = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// Clean-up to run once a session has ended (stop the computer, audit the end).
pub type OnEnd = Box<dyn FnOnce(SessionEnd) -> BoxFuture<'static, ()> + Send>;

/// A session the starter has started.
pub struct StartedSession {
    /// Session id; its transcript is `Store::transcript_path(id)`.
    pub id: String,
    /// The running session.
    pub handle: SessionHandle,
    /// The session's scratch folder on the host (outputs are listed from here).
    pub workspace: PathBuf,
    /// Run after the session's event stream ends and its task finishes.
    pub on_end: Option<OnEnd>,
    /// Applied to every message the person sends, the task included;
    /// `None` sends messages as typed.
    pub prepare: Option<PrepareMessage>,
}

impl std::fmt::Debug for StartedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedSession")
            .field("id", &self.id)
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

/// Starts sessions for the server. The CLI implements it with the same code
/// `cubicle run` uses, so a session started from the browser gets the same
/// policy, audit log, egress proxy and backend as one started in a terminal.
#[async_trait]
pub trait SessionStarter: Send + Sync {
    /// Starts a session and returns it without sending it any message. The
    /// error is shown to the person as is, so it should say what to change.
    async fn start(&self, req: StartRequest) -> Result<StartedSession, String>;

    /// Brings a past session back to life from its transcript (the same
    /// work as `cubicle resume`): its history, grants and backend, with the
    /// policy in force now. Returns it without sending it any message.
    async fn resume(&self, id: &str) -> Result<StartedSession, String> {
        Err(format!(
            "this front end cannot resume sessions (session {id})"
        ))
    }
}

//! Plugins at work in a session: hook commands and MCP stdio servers run
//! *inside* the cubicle through its guest, never on the host, and the hooks
//! are offered to the agent loop as its [`SessionHooks`].
//!
//! - [`CubicleHookExecutor`] runs a hook command with `sh -c` in the cubicle,
//!   its stdin the event JSON, its timeout enforced by the guest.
//! - [`PluginHooks`] turns the agent's [`HookPoint`]s into Claude Code hook
//!   inputs, runs them with a [`HookRunner`], and turns the combined
//!   [`HookOutcome`] into the agent's [`HookVerdict`].
//! - [`connect_stdio`] starts an MCP server in the cubicle with its stdin a
//!   guest pipe and its stdout streamed back, and completes the MCP
//!   handshake over that pair of byte streams.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cubicle_agent::{HookPermission, HookPoint, HookVerdict, SessionHooks};
use cubicle_protocol::guest::{ExecRequest, OutputStream, Stdin};
use cubicle_sandbox::{Computer, LIVE_OUTPUT_CHUNKS, OutputChunk};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use crate::hooks::{
    HookCommand, HookEvent, HookExecutor, HookInput, HookOutcome, HookProcess, HookRunner,
    MAX_HOOK_OUTPUT_BYTES, PermissionDecision,
};
use crate::mcp::{McpError, McpServerConfig, McpTransport, RmcpClient};

/// Runs hook commands inside the cubicle.
pub struct CubicleHookExecutor {
    computer: Arc<dyn Computer>,
    cwd: Option<String>,
}

impl CubicleHookExecutor {
    /// Runs hooks in `computer`, in `cwd` (the workspace when `None`).
    pub fn new(computer: Arc<dyn Computer>, cwd: Option<String>) -> Self {
        Self { computer, cwd }
    }
}

#[async_trait]
impl HookExecutor for CubicleHookExecutor {
    async fn run(&self, hook: &HookCommand, stdin: &[u8]) -> std::io::Result<HookProcess> {
        let mut req = ExecRequest::shell(hook.command.clone());
        req.cwd = self.cwd.clone();
        req.env = hook.env.iter().cloned().collect();
        if let Some(cwd) = &self.cwd {
            req.env.insert("CLAUDE_PROJECT_DIR".into(), cwd.clone());
        }
        req.stdin = Stdin::Bytes(stdin.to_vec().into());
        req.timeout_ms = Some(u64::try_from(hook.timeout.as_millis()).unwrap_or(u64::MAX));
        req.max_output_bytes = Some(MAX_HOOK_OUTPUT_BYTES as u64);
        let out = self
            .computer
            .exec(req, None)
            .await
            .map_err(std::io::Error::other)?;
        Ok(HookProcess {
            exit_code: if out.result.timed_out {
                None
            } else {
                out.result.code
            },
            stdout: out.stdout,
            stderr: out.stderr,
            timed_out: out.result.timed_out,
        })
    }
}

/// Plugins' hooks as the agent loop's [`SessionHooks`].
pub struct PluginHooks {
    runner: HookRunner,
    session_id: String,
    transcript_path: String,
    cwd: String,
}

impl std::fmt::Debug for PluginHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHooks")
            .field("runner", &self.runner)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl PluginHooks {
    /// Hooks of session `session_id` run by `runner`; hooks are told the
    /// transcript's path and the working folder `cwd` (as the hook sees it).
    pub fn new(runner: HookRunner, session_id: &str, transcript_path: &str, cwd: &str) -> Self {
        Self {
            runner,
            session_id: session_id.to_owned(),
            transcript_path: transcript_path.to_owned(),
            cwd: cwd.to_owned(),
        }
    }

    /// The Claude Code hook input for `point`.
    pub fn input(&self, point: &HookPoint<'_>) -> HookInput {
        let base =
            |event| HookInput::new(event, &self.session_id, &self.transcript_path, &self.cwd);
        match *point {
            HookPoint::SessionStart { source } => {
                base(HookEvent::SessionStart).with("source", json!(source))
            }
            HookPoint::UserPromptSubmit { prompt } => {
                base(HookEvent::UserPromptSubmit).with("prompt", json!(prompt))
            }
            HookPoint::PreToolUse {
                tool,
                input,
                call_id,
            } => base(HookEvent::PreToolUse)
                .with("tool_name", json!(tool))
                .with("tool_input", input.clone())
                .with("tool_use_id", json!(call_id)),
            HookPoint::PostToolUse {
                tool,
                input,
                call_id,
                response,
                is_error,
            } => base(HookEvent::PostToolUse)
                .with("tool_name", json!(tool))
                .with("tool_input", input.clone())
                .with("tool_use_id", json!(call_id))
                .with(
                    "tool_response",
                    json!({"output": response, "is_error": is_error}),
                ),
            HookPoint::Stop { stop_hook_active } => {
                base(HookEvent::Stop).with("stop_hook_active", json!(stop_hook_active))
            }
            HookPoint::SubagentStop { stop_hook_active } => {
                base(HookEvent::SubagentStop).with("stop_hook_active", json!(stop_hook_active))
            }
            HookPoint::PreCompact { trigger } => base(HookEvent::PreCompact)
                .with("trigger", json!(trigger))
                .with("custom_instructions", json!("")),
            HookPoint::SessionEnd { reason } => {
                base(HookEvent::SessionEnd).with("reason", json!(reason))
            }
        }
    }
}

#[async_trait]
impl SessionHooks for PluginHooks {
    async fn run(&self, _agent: Option<&str>, point: HookPoint<'_>) -> HookVerdict {
        verdict(self.runner.run(&self.input(&point)).await)
    }
}

/// The agent's view of what the hooks decided.
pub fn verdict(outcome: HookOutcome) -> HookVerdict {
    HookVerdict {
        blocked: outcome.blocked,
        permission: outcome.permission.map(|p| match p {
            PermissionDecision::Allow => HookPermission::Allow,
            PermissionDecision::Ask => HookPermission::Ask,
            PermissionDecision::Deny => HookPermission::Deny,
        }),
        updated_input: outcome.updated_input,
        additional_context: outcome.additional_context,
        messages: outcome.system_messages,
        errors: outcome.errors,
        stop: outcome.stop,
    }
}

/// How much of an MCP server's stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// Starts the stdio MCP server `config` inside `computer` and completes the
/// handshake. Its stdin is a guest pipe, its stdout streamed back; both live
/// as long as the returned client (or the cubicle).
pub async fn connect_stdio(
    computer: Arc<dyn Computer>,
    config: &McpServerConfig,
) -> Result<RmcpClient, McpError> {
    let McpTransport::Stdio {
        command,
        args,
        env,
        cwd,
    } = &config.transport
    else {
        return Err(McpError::Connect {
            server: config.name.clone(),
            message: "only stdio servers can be started inside the cubicle".into(),
        });
    };
    let mut req = ExecRequest::argv(std::iter::once(command.clone()).chain(args.iter().cloned()));
    req.cwd = cwd.clone();
    req.env = env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<BTreeMap<_, _>>();
    req.stdin = Stdin::Pipe;
    // The server speaks for the whole session: its output must never be cut.
    req.max_output_bytes = Some(u64::MAX);
    let handle = computer
        .guest()
        .start_exec(req)
        .map_err(|e| McpError::Connect {
            server: config.name.clone(),
            message: e.to_string(),
        })?;
    let exec_id = handle.id();
    let stderr = Arc::new(Mutex::new(Vec::new()));

    // Server stdout → `from_server`; its stderr → the tail kept for errors.
    let (mut to_client, from_server) = tokio::io::duplex(64 * 1024);
    let (live_tx, mut live_rx) = mpsc::channel::<OutputChunk>(LIVE_OUTPUT_CHUNKS);
    let name = config.name.clone();
    tokio::spawn(async move {
        if let Err(e) = handle.stream(live_tx).await {
            tracing::debug!("MCP server `{name}` ended: {e}");
        }
    });
    let tail = Arc::clone(&stderr);
    tokio::spawn(async move {
        while let Some(chunk) = live_rx.recv().await {
            match chunk.stream {
                OutputStream::Stdout => {
                    if to_client.write_all(&chunk.data).await.is_err() {
                        break;
                    }
                }
                OutputStream::Stderr => {
                    let mut t = tail
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    t.extend_from_slice(&chunk.data);
                    let excess = t.len().saturating_sub(STDERR_TAIL_BYTES);
                    t.drain(..excess);
                }
            }
        }
        // Dropping `to_client` is the end of the server's stdout.
    });

    // `to_server` → the server's stdin pipe, closed when the client goes.
    let (to_server, mut from_client) = tokio::io::duplex(64 * 1024);
    let guest = Arc::clone(&computer);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = guest.guest().write_stdin(exec_id, Vec::new(), true).await;
                    break;
                }
                Ok(n) => {
                    if guest
                        .guest()
                        .write_stdin(exec_id, buf[..n].to_vec(), false)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    RmcpClient::connect_io_with_stderr(&config.name, from_server, to_server, stderr).await
}

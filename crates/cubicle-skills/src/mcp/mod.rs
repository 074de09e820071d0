//! MCP: servers that give the model more tools.
//!
//! The rest of Cubicle sees only [`McpClient`] (list tools, call one) and
//! [`McpTool`], which turns one server tool into a Cubicle tool named
//! `mcp__SERVER__TOOL`, so it goes through the same permission rules as any
//! other. The official SDK (`rmcp`) sits behind [`RmcpClient`] only: it has
//! had three major versions in a year, and the pin and the adapter keep that
//! churn in this one file.
//!
//! Where a stdio server runs is the caller's choice: [`RmcpClient::connect_io`]
//! takes any pair of byte streams, which is how a session carries the stdio
//! of a server started *inside* the cubicle over the guest protocol;
//! [`RmcpClient::connect_command`] starts a local process (the guest itself,
//! and tests). A streamable-HTTP server is reached from the host through the
//! session's egress proxy ([`http::connect_http`]).

pub mod config;
pub mod http;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cubicle_protocol::conversation::{ImageSource, ToolResultContent, ToolSpec};
use cubicle_tools::{Tool, ToolContext, ToolOutput};
use serde_json::Value;

pub use config::{McpServerConfig, McpTransport, parse_servers, valid_server_name};
pub use http::{connect_http, expand_env};

/// Longest a tool call may take before it is abandoned.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest a server may take to start and answer `initialize`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of a server's stderr kept for error messages.
const STDERR_TAIL_BYTES: usize = 4096;

/// Why talking to an MCP server failed.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The server could not be started or did not complete the handshake.
    #[error("MCP server `{server}` did not start: {message}")]
    Connect {
        /// The server.
        server: String,
        /// What went wrong (with the end of its stderr, if any).
        message: String,
    },
    /// A request failed.
    #[error("MCP server `{server}`: {message}")]
    Request {
        /// The server.
        server: String,
        /// What went wrong.
        message: String,
    },
    /// A request took too long.
    #[error("MCP server `{server}` did not answer within {} s", .after.as_secs())]
    Timeout {
        /// The server.
        server: String,
        /// How long was waited.
        after: Duration,
    },
}

/// A tool a server offers.
#[derive(Debug, Clone, PartialEq)]
pub struct McpToolInfo {
    /// Its name on the server.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub input_schema: Value,
}

/// What a tool call returned.
#[derive(Debug, Clone, PartialEq)]
pub struct McpCallResult {
    /// Text and images for the model.
    pub content: Vec<ToolResultContent>,
    /// Whether the tool reported failure.
    pub is_error: bool,
}

/// A connection to one MCP server.
#[async_trait]
pub trait McpClient: Send + Sync {
    /// The server's configured name.
    fn server_name(&self) -> &str;
    /// The tools it offers.
    async fn list_tools(&self) -> Result<Vec<McpToolInfo>, McpError>;
    /// Calls tool `name` with `arguments` (a JSON object, or null).
    async fn call_tool(&self, name: &str, arguments: Value) -> Result<McpCallResult, McpError>;
    /// Ends the session and stops the server.
    async fn close(&self);
}

type Running = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// An [`McpClient`] over the official Rust SDK.
pub struct RmcpClient {
    name: String,
    peer: rmcp::Peer<rmcp::RoleClient>,
    running: tokio::sync::Mutex<Option<Running>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    call_timeout: Duration,
}

impl std::fmt::Debug for RmcpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RmcpClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RmcpClient {
    /// Starts `command` on this machine and completes the MCP handshake over
    /// its stdio. Its stderr is kept (the end of it) for error messages.
    pub async fn connect_command(
        name: &str,
        command: tokio::process::Command,
    ) -> Result<Self, McpError> {
        let connect_err = |message: String| McpError::Connect {
            server: name.to_owned(),
            message,
        };
        let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(command)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| connect_err(e.to_string()))?;
        let tail = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut stderr) = stderr {
            let tail = Arc::clone(&tail);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let mut buf = [0u8; 1024];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut t = tail
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    t.extend_from_slice(&buf[..n]);
                    let excess = t.len().saturating_sub(STDERR_TAIL_BYTES);
                    t.drain(..excess);
                }
            });
        }
        Self::serve(name, transport, tail).await
    }

    /// Completes the MCP handshake over an already-connected byte stream,
    /// e.g. the stdio of a server started inside the cubicle.
    pub async fn connect_io<R, W>(name: &str, read: R, write: W) -> Result<Self, McpError>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        Self::serve(name, (read, write), Arc::new(Mutex::new(Vec::new()))).await
    }

    /// Like [`RmcpClient::connect_io`], with the end of the server's stderr
    /// collected elsewhere into `stderr` (at most the last few KiB), so that
    /// errors can quote it.
    pub async fn connect_io_with_stderr<R, W>(
        name: &str,
        read: R,
        write: W,
        stderr: Arc<Mutex<Vec<u8>>>,
    ) -> Result<Self, McpError>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        Self::serve(name, (read, write), stderr).await
    }

    async fn serve<T, E, A>(
        name: &str,
        transport: T,
        stderr: Arc<Mutex<Vec<u8>>>,
    ) -> Result<Self, McpError>
    where
        T: rmcp::transport::IntoTransport<rmcp::RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        use rmcp::ServiceExt as _;
        let handshake = tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, ().serve(transport)).await;
        let running = match handshake {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(McpError::Connect {
                    server: name.to_owned(),
                    message: with_tail(e.to_string(), &stderr),
                });
            }
            Err(_) => {
                return Err(McpError::Connect {
                    server: name.to_owned(),
                    message: with_tail(
                        format!(
                            "no answer to `initialize` within {} s",
                            DEFAULT_CONNECT_TIMEOUT.as_secs()
                        ),
                        &stderr,
                    ),
                });
            }
        };
        Ok(Self {
            name: name.to_owned(),
            peer: running.peer().clone(),
            running: tokio::sync::Mutex::new(Some(running)),
            stderr,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        })
    }

    /// Sets how long a tool call may take.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    fn request_err(&self, e: impl std::fmt::Display) -> McpError {
        McpError::Request {
            server: self.name.clone(),
            message: with_tail(e.to_string(), &self.stderr),
        }
    }
}

fn with_tail(message: String, stderr: &Mutex<Vec<u8>>) -> String {
    let tail = stderr
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let tail = String::from_utf8_lossy(&tail);
    let tail = tail.trim();
    if tail.is_empty() {
        message
    } else {
        format!("{message}; its stderr ends: {tail}")
    }
}

#[async_trait]
impl McpClient for RmcpClient {
    fn server_name(&self) -> &str {
        &self.name
    }

    async fn list_tools(&self) -> Result<Vec<McpToolInfo>, McpError> {
        let tools = tokio::time::timeout(self.call_timeout, self.peer.list_all_tools())
            .await
            .map_err(|_| McpError::Timeout {
                server: self.name.clone(),
                after: self.call_timeout,
            })?
            .map_err(|e| self.request_err(e))?;
        Ok(tools
            .into_iter()
            .map(|t| McpToolInfo {
                name: t.name.into_owned(),
                description: t.description.map(|d| d.into_owned()).unwrap_or_default(),
                input_schema: Value::Object((*t.input_schema).clone()),
            })
            .collect())
    }

    async fn call_tool(&self, name: &str, arguments: Value) -> Result<McpCallResult, McpError> {
        let mut params = rmcp::model::CallToolRequestParams::new(name.to_owned());
        match arguments {
            Value::Object(map) => params = params.with_arguments(map),
            Value::Null => {}
            other => {
                return Err(McpError::Request {
                    server: self.name.clone(),
                    message: format!("tool arguments must be a JSON object, not {other}"),
                });
            }
        }
        let result = tokio::time::timeout(self.call_timeout, self.peer.call_tool(params))
            .await
            .map_err(|_| McpError::Timeout {
                server: self.name.clone(),
                after: self.call_timeout,
            })?
            .map_err(|e| self.request_err(e))?;
        let mut content: Vec<ToolResultContent> = result
            .content
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .map(|c| content_block(&c))
            .collect();
        if content.is_empty()
            && let Some(structured) = &result.structured_content
        {
            content.push(ToolResultContent::text(structured.to_string()));
        }
        Ok(McpCallResult {
            content,
            is_error: result.is_error.unwrap_or(false),
        })
    }

    async fn close(&self) {
        if let Some(running) = self.running.lock().await.take() {
            let _ = running.cancel().await;
        }
    }
}

/// One MCP content block as a tool-result block: text and images as they
/// are, anything else (audio, resources) as its JSON so nothing is lost.
fn content_block(c: &Value) -> ToolResultContent {
    let field = |k: &str| c.get(k).and_then(Value::as_str);
    match field("type") {
        Some("text") => ToolResultContent::text(field("text").unwrap_or("")),
        Some("image") => match (field("data"), field("mimeType")) {
            (Some(data), Some(mime)) => ToolResultContent::Image {
                source: ImageSource {
                    media_type: mime.to_owned(),
                    data: data.to_owned(),
                },
            },
            _ => ToolResultContent::text(c.to_string()),
        },
        _ => ToolResultContent::text(c.to_string()),
    }
}

/// The name a server tool has in Cubicle: `mcp__SERVER__TOOL`, with any
/// character the model APIs refuse replaced by `_`, at most 64 characters.
pub fn tool_name(server: &str, tool: &str) -> String {
    api_tool_name(&format!("mcp__{server}__{tool}"))
}

/// `raw` as a name the model APIs take for a tool: characters outside
/// `[A-Za-z0-9_-]` replaced by `_`, at most 64 characters.
pub(crate) fn api_tool_name(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// One server tool as a Cubicle [`Tool`].
pub struct McpTool {
    client: Arc<dyn McpClient>,
    info: McpToolInfo,
    name: String,
}

impl std::fmt::Debug for McpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTool").field("name", &self.name).finish()
    }
}

impl McpTool {
    /// The tool `info` of the server behind `client`.
    pub fn new(client: Arc<dyn McpClient>, info: McpToolInfo) -> Self {
        let name = tool_name(client.server_name(), &info.name);
        Self { client, info, name }
    }

    /// The tool's description on its server.
    pub fn info(&self) -> &McpToolInfo {
        &self.info
    }

    /// Calls the tool and turns the answer into a tool output.
    pub async fn invoke(&self, input: Value) -> ToolOutput {
        match self.client.call_tool(&self.info.name, input).await {
            Ok(r) => ToolOutput {
                content: r.content,
                is_error: r.is_error,
                files_written: Vec::new(),
            },
            Err(e) => ToolOutput::error(e.to_string()),
        }
    }
}

/// Every tool of the server behind `client`, as Cubicle tools.
pub async fn mcp_tools(client: Arc<dyn McpClient>) -> Result<Vec<McpTool>, McpError> {
    let infos = client.list_tools().await?;
    Ok(infos
        .into_iter()
        .map(|info| McpTool::new(Arc::clone(&client), info))
        .collect())
}

#[async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn spec(&self) -> ToolSpec {
        let schema = match &self.info.input_schema {
            Value::Object(_) => self.info.input_schema.clone(),
            _ => serde_json::json!({"type": "object"}),
        };
        ToolSpec {
            name: self.name.to_owned(),
            description: format!(
                "{} (from MCP server `{}`)",
                self.info.description.trim(),
                self.client.server_name()
            ),
            input_schema: schema,
        }
    }

    fn summary(&self, input: &Value) -> String {
        let args = input.to_string();
        let args: String = args.chars().take(80).collect();
        format!("{} {args}", self.name)
    }

    async fn call(&self, input: Value, _ctx: &ToolContext) -> ToolOutput {
        self.invoke(input).await
    }
}

//! Model clients behind one trait, [`ModelClient`]: the agent loop neither
//! knows nor cares which provider answers.
//!
//! - `anthropic`: the Messages API with SSE streaming, prompt caching and
//!   retries.
//! - `openai`: OpenAI-compatible chat completions (llama.cpp, Ollama, vLLM).
//! - `replay`: plays the model's side of a recorded transcript.
//! - `scripted`: canned answers for tests.
//! - `provider`: picks one of them from the command line and the environment.
//!
//! The two HTTP clients share their retry rules (`retry`): transient failures
//! (rate limits, overload, 5xx, dropped connections) are retried with backoff,
//! everything else is returned at once as a typed [`ModelError`].

pub mod anthropic;
mod http;
pub mod openai;
pub mod provider;
pub mod replay;
mod retry;
pub mod scripted;
mod sse;

pub use anthropic::{AnthropicClient, AnthropicConfig};
pub use openai::{OpenAiClient, OpenAiConfig};
pub use provider::{ProviderSpec, resolve};
pub use replay::ReplayModel;
pub use retry::RetryPolicy;
pub use scripted::{ScriptedModel, Step};

use async_trait::async_trait;
use cubicle_protocol::conversation::{Message, StopReason, ToolSpec, Usage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One model call.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    /// The system prompt.
    pub system: String,
    /// The conversation; starts with a user message, alternates roles.
    /// Shared, so that the agent hands over its history without copying it.
    pub messages: std::sync::Arc<Vec<Message>>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Which agent is calling: `None` for the main agent, else a sub-agent id.
    /// Real providers ignore it; replay uses it to pick the recorded stream.
    pub agent: Option<String>,
}

/// Something streamed while a model call is in flight, for live display.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelDelta {
    /// Text the model is writing.
    Text(String),
    /// Reasoning the model is writing.
    Thinking(String),
    /// The model started a tool call.
    ToolUseStart {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
    },
    /// The client is waiting before a retry. Deltas that follow belong to the
    /// new attempt, which starts its answer from the beginning.
    Retrying {
        /// Attempt about to be made, from 2.
        attempt: u32,
        /// Wait before it.
        wait: std::time::Duration,
        /// Why the previous attempt failed.
        reason: String,
    },
}

/// Sender for live deltas.
pub type DeltaTx = mpsc::UnboundedSender<ModelDelta>;

/// A complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelResponse {
    /// The assistant message, blocks in order.
    pub message: Message,
    /// Why the model stopped.
    pub stop_reason: StopReason,
    /// Tokens used by this call.
    pub usage: Usage,
}

/// Why a model call failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The call was cancelled (Ctrl-C, stop).
    #[error("cancelled")]
    Cancelled,
    /// Missing or rejected credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The provider rejected the request (400, 404, 413, 422).
    #[error("the model provider rejected the request: {0}")]
    InvalidRequest(String),
    /// The prompt is larger than the model's context window.
    #[error("the conversation is too long for the model: {0}")]
    ContextTooLong(String),
    /// Still rate-limited or overloaded after every retry.
    #[error("the model provider is busy (gave up after {attempts} attempts): {message}")]
    Busy {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// A server error after every retry.
    #[error("the model provider failed (HTTP {status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The connection failed or dropped.
    #[error("could not reach the model provider: {0}")]
    Network(String),
    /// The response stream was malformed or ended early.
    #[error("the model's response was malformed: {0}")]
    Stream(String),
    /// A replay or scripted model has nothing more to say.
    #[error("{0}")]
    Exhausted(String),
    /// The client is misconfigured.
    #[error("{0}")]
    Config(String),
    /// No provider was named and none could be found in the environment.
    #[error(
        "no model provider is configured: set ANTHROPIC_API_KEY, or use --provider openai --base-url URL for a local server (llama.cpp, Ollama, vLLM)"
    )]
    NoProvider,
}

/// A model provider.
#[async_trait]
pub trait ModelClient: Send + Sync {
    /// Provider name: `anthropic`, `openai`, `replay`, `scripted`.
    fn provider(&self) -> &str;

    /// Model name as the provider knows it.
    fn model(&self) -> &str;

    /// Context window in tokens, for compaction.
    fn context_window(&self) -> u64;

    /// Makes one call, streaming deltas to `deltas` and returning the whole
    /// answer. Retries transient failures itself; returns
    /// [`ModelError::Cancelled`] promptly once `cancel` fires.
    async fn complete(
        &self,
        req: &ModelRequest,
        deltas: Option<&DeltaTx>,
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, ModelError>;
}

/// Tool arguments from their streamed JSON. Arguments that do not parse are
/// kept as the raw string, so the agent can show the model what it wrote.
pub(crate) fn parse_tool_input(json: &str, start_input: &serde_json::Value) -> serde_json::Value {
    if json.trim().is_empty() {
        return match start_input {
            serde_json::Value::Object(_) => start_input.clone(),
            _ => serde_json::json!({}),
        };
    }
    serde_json::from_str(json).unwrap_or_else(|_| serde_json::Value::String(json.to_owned()))
}

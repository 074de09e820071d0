//! The Anthropic Messages API (`POST /v1/messages`) with SSE streaming, prompt
//! caching and retries: a thin client of our own over reqwest, so that every
//! byte on the wire is ours to test.
//!
//! Prompt caching: the system prompt, the tool list and the conversation up to
//! the newest user message each end in a `cache_control` breakpoint (three of
//! the four the API allows), so every call of an agent turn re-reads what the
//! call before it wrote.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use cubicle_protocol::conversation::{
    ContentBlock, ImageSource, Message, Role, StopReason, ToolResultContent, Usage,
};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::http::{http_client, secret_header};
use crate::retry::{
    Failure, RetryPolicy, Transient, TransientKind, classify_stream_error, with_retries,
};
use crate::sse::SseStream;
use crate::{
    DeltaTx, ModelClient, ModelDelta, ModelError, ModelRequest, ModelResponse, parse_tool_input,
};

/// Where the API lives unless `ANTHROPIC_BASE_URL` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The `anthropic-version` header value.
pub const API_VERSION: &str = "2023-06-01";

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";

/// The model a Claude Code alias names (`model: haiku` in a plugin's agent
/// or command definition); `None` when `name` is not an alias.
pub fn alias(name: &str) -> Option<&'static str> {
    match name {
        "sonnet" => Some(DEFAULT_MODEL),
        "opus" => Some("claude-opus-4-1"),
        "haiku" => Some("claude-haiku-4-5"),
        _ => None,
    }
}

/// Context window of current Claude models. The 1M-token window is a beta
/// that costs more per token; it is not turned on behind the user's back.
pub const CONTEXT_WINDOW: u64 = 200_000;

/// How to reach the Anthropic API.
#[derive(Clone)]
pub struct AnthropicConfig {
    /// Model id, e.g. `claude-sonnet-4-5`.
    pub model: String,
    /// API key, sent as `x-api-key`.
    pub api_key: Option<String>,
    /// OAuth or gateway token, sent as `Authorization: Bearer`.
    pub auth_token: Option<String>,
    /// API root without `/v1`, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Longest the connection may stay silent before the attempt is abandoned
    /// (and retried); the API sends pings, so silence means trouble.
    pub timeout: Duration,
}

impl std::fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log line.
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("AnthropicConfig")
            .field("model", &self.model)
            .field("api_key", &redact(&self.api_key))
            .field("auth_token", &redact(&self.auth_token))
            .field("base_url", &self.base_url)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AnthropicConfig {
    /// Defaults for `model`, without credentials.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            api_key: None,
            auth_token: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(300),
        }
    }

    /// Defaults for `model` with `ANTHROPIC_API_KEY`, `ANTHROPIC_AUTH_TOKEN`
    /// and `ANTHROPIC_BASE_URL` looked up through `env`, as the official SDKs
    /// read them.
    pub fn from_env(model: impl Into<String>, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::new(model);
        config.api_key = var("ANTHROPIC_API_KEY");
        config.auth_token = var("ANTHROPIC_AUTH_TOKEN");
        if let Some(base) = var("ANTHROPIC_BASE_URL") {
            config.base_url = base;
        }
        config
    }
}

/// A client of the Anthropic Messages API.
#[derive(Debug)]
pub struct AnthropicClient {
    config: AnthropicConfig,
    url: String,
    http: reqwest::Client,
}

impl AnthropicClient {
    /// A client for `config`; fails if it has no credentials or a bad URL.
    pub fn new(config: AnthropicConfig) -> Result<Self, ModelError> {
        if config.api_key.is_none() && config.auth_token.is_none() {
            return Err(ModelError::Config(
                "no Anthropic credentials: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)".into(),
            ));
        }
        let base = config.base_url.trim().trim_end_matches('/');
        let url = format!("{base}/v1/messages");
        reqwest::Url::parse(&url).map_err(|e| {
            ModelError::Config(format!("the Anthropic base URL `{base}` is not a URL: {e}"))
        })?;
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        if let Some(key) = &config.api_key {
            headers.insert("x-api-key", secret_header("ANTHROPIC_API_KEY", key)?);
        }
        if let Some(token) = &config.auth_token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                secret_header("ANTHROPIC_AUTH_TOKEN", &format!("Bearer {token}"))?,
            );
        }
        let http = http_client(headers, config.timeout)?;
        Ok(Self { config, url, http })
    }

    /// A client for `model` configured from the process environment.
    pub fn from_env(model: impl Into<String>) -> Result<Self, ModelError> {
        Self::from_env_with(model, &|name| std::env::var(name).ok())
    }

    /// A client for `model` configured from `env`, a stand-in for the process
    /// environment.
    pub fn from_env_with(
        model: impl Into<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ModelError> {
        Self::new(AnthropicConfig::from_env(model, env))
    }

    /// The configuration in use.
    pub fn config(&self) -> &AnthropicConfig {
        &self.config
    }

    /// The JSON body sent for `req`.
    pub fn request_body(&self, req: &ModelRequest) -> Value {
        let mut body = json!({
            "model": self.config.model,
            "max_tokens": req.max_tokens,
            "stream": true,
            "messages": messages_json(&req.messages),
        });
        if !req.system.is_empty() {
            body["system"] = json!([{
                "type": "text",
                "text": req.system,
                "cache_control": {"type": "ephemeral"},
            }]);
        }
        if !req.tools.is_empty() {
            let mut tools: Vec<Value> = req
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "description": t.description,
                        "input_schema": t.input_schema,
                    })
                })
                .collect();
            if let Some(last) = tools.last_mut() {
                last["cache_control"] = json!({"type": "ephemeral"});
            }
            body["tools"] = Value::Array(tools);
        }
        body
    }

    async fn attempt(
        &self,
        body: &Value,
        deltas: Option<&DeltaTx>,
    ) -> Result<ModelResponse, Failure> {
        let mut events = SseStream::post(&self.http, &self.url, body).await?;
        let mut assembler = Assembler::default();
        while let Some(event) = events.next().await? {
            let parsed: StreamEvent = serde_json::from_str(&event.data).map_err(|e| {
                ModelError::Stream(format!("invalid JSON in a `{}` event: {e}", event.event))
            })?;
            if assembler.apply(parsed, deltas)? {
                return Ok(assembler.finish());
            }
        }
        Err(Failure::Transient(Transient::new(
            TransientKind::Network,
            "the response stream ended before message_stop",
        )))
    }
}

#[async_trait]
impl ModelClient for AnthropicClient {
    fn provider(&self) -> &str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    fn context_window(&self) -> u64 {
        CONTEXT_WINDOW
    }

    async fn complete(
        &self,
        req: &ModelRequest,
        deltas: Option<&DeltaTx>,
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, ModelError> {
        let body = self.request_body(req);
        with_retries(&self.config.retry, deltas, cancel, || {
            self.attempt(&body, deltas)
        })
        .await
    }
}

fn messages_json(messages: &[Message]) -> Vec<Value> {
    let mut out: Vec<Value> = messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            let only_block = m.content.len() == 1;
            let content: Vec<Value> = m
                .content
                .iter()
                // The API rejects empty text blocks, which a model turn
                // that went straight to a tool call can leave behind.
                .filter(|b| {
                    only_block || !matches!(b, ContentBlock::Text { text } if text.is_empty())
                })
                .map(block_json)
                .collect();
            json!({"role": role, "content": content})
        })
        .collect();
    let last_user = messages.iter().rposition(|m| m.role == Role::User);
    if let Some(block) = last_user
        .and_then(|i| out.get_mut(i))
        .and_then(|m| m["content"].as_array_mut())
        .and_then(|c| c.last_mut())
    {
        block["cache_control"] = json!({"type": "ephemeral"});
    }
    out
}

fn block_json(block: &ContentBlock) -> Value {
    match block {
        ContentBlock::Text { text } => json!({"type": "text", "text": text}),
        ContentBlock::Image { source } => image_json(source),
        ContentBlock::ToolUse { id, name, input } => {
            // Arguments that were not a JSON object (kept raw so the agent
            // could tell the model) would get the whole request rejected.
            let input = if input.is_object() {
                input.clone()
            } else {
                json!({})
            };
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let content: Vec<Value> = content
                .iter()
                .map(|c| match c {
                    ToolResultContent::Text { text } => json!({"type": "text", "text": text}),
                    ToolResultContent::Image { source } => image_json(source),
                })
                .collect();
            let mut v =
                json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content});
            if *is_error {
                v["is_error"] = Value::Bool(true);
            }
            v
        }
        ContentBlock::Thinking {
            thinking,
            signature,
        } => json!({"type": "thinking", "thinking": thinking, "signature": signature}),
        ContentBlock::RedactedThinking { data } => {
            json!({"type": "redacted_thinking", "data": data})
        }
    }
}

fn image_json(source: &ImageSource) -> Value {
    json!({
        "type": "image",
        "source": {"type": "base64", "media_type": source.media_type, "data": source.data},
    })
}

/// One SSE event of the Messages stream, from its `type` field.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: WireError,
    },
    /// Event types added after this client was written are to be ignored.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Overwrites the fields this event carries; later events are cumulative.
    fn apply_to(&self, usage: &mut Usage) {
        let set = |field: &mut u64, value: Option<u64>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut usage.input_tokens, self.input_tokens);
        set(&mut usage.output_tokens, self.output_tokens);
        set(
            &mut usage.cache_creation_input_tokens,
            self.cache_creation_input_tokens,
        );
        set(
            &mut usage.cache_read_input_tokens,
            self.cache_read_input_tokens,
        );
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    /// Server tools' blocks and future types: skipped, with their deltas.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    /// `citations_delta` and future types.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<StopReason>,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: String,
}

/// A content block being streamed.
#[derive(Debug)]
enum Partial {
    Text(String),
    Thinking {
        thinking: String,
        signature: String,
    },
    Redacted(String),
    ToolUse {
        id: String,
        name: String,
        start_input: Value,
        json: String,
        input: Option<Value>,
    },
}

/// Builds the answer from the stream's events.
#[derive(Debug, Default)]
struct Assembler {
    blocks: BTreeMap<usize, Partial>,
    usage: Usage,
    stop_reason: Option<StopReason>,
}

impl Assembler {
    /// Applies one event; `true` once the message is complete.
    fn apply(&mut self, event: StreamEvent, deltas: Option<&DeltaTx>) -> Result<bool, Failure> {
        let send = |delta: ModelDelta| {
            if let Some(tx) = deltas {
                let _ = tx.send(delta);
            }
        };
        match event {
            StreamEvent::MessageStart { message } => {
                tracing::debug!(model = %message.model, "message started");
                if let Some(usage) = message.usage {
                    usage.apply_to(&mut self.usage);
                }
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let partial = match content_block {
                    StartBlock::Text { text } => {
                        if !text.is_empty() {
                            send(ModelDelta::Text(text.clone()));
                        }
                        Partial::Text(text)
                    }
                    StartBlock::ToolUse { id, name, input } => {
                        send(ModelDelta::ToolUseStart {
                            id: id.clone(),
                            name: name.clone(),
                        });
                        Partial::ToolUse {
                            id,
                            name,
                            start_input: input,
                            json: String::new(),
                            input: None,
                        }
                    }
                    StartBlock::Thinking {
                        thinking,
                        signature,
                    } => {
                        if !thinking.is_empty() {
                            send(ModelDelta::Thinking(thinking.clone()));
                        }
                        Partial::Thinking {
                            thinking,
                            signature,
                        }
                    }
                    StartBlock::RedactedThinking { data } => Partial::Redacted(data),
                    StartBlock::Unknown => {
                        tracing::debug!(index, "skipping a content block of an unknown type");
                        return Ok(false);
                    }
                };
                self.blocks.insert(index, partial);
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let Some(block) = self.blocks.get_mut(&index) else {
                    // A delta of a skipped block.
                    return Ok(false);
                };
                match (block, delta) {
                    (Partial::Text(text), BlockDelta::TextDelta { text: more }) => {
                        text.push_str(&more);
                        send(ModelDelta::Text(more));
                    }
                    (
                        Partial::ToolUse { json, .. },
                        BlockDelta::InputJsonDelta { partial_json },
                    ) => {
                        json.push_str(&partial_json);
                    }
                    (
                        Partial::Thinking { thinking, .. },
                        BlockDelta::ThinkingDelta { thinking: more },
                    ) => {
                        thinking.push_str(&more);
                        send(ModelDelta::Thinking(more));
                    }
                    (
                        Partial::Thinking { signature, .. },
                        BlockDelta::SignatureDelta { signature: more },
                    ) => {
                        signature.push_str(&more);
                    }
                    (block, delta) => {
                        tracing::debug!(
                            index,
                            ?delta,
                            ?block,
                            "ignoring a delta that does not fit its block"
                        );
                    }
                }
            }
            StreamEvent::ContentBlockStop { index } => {
                if let Some(Partial::ToolUse {
                    start_input,
                    json,
                    input,
                    ..
                }) = self.blocks.get_mut(&index)
                {
                    *input = Some(parse_tool_input(json, start_input));
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(usage) = usage {
                    usage.apply_to(&mut self.usage);
                }
            }
            StreamEvent::MessageStop => return Ok(true),
            StreamEvent::Ping | StreamEvent::Unknown => {}
            StreamEvent::Error { error } => {
                return Err(classify_stream_error(
                    error.kind.as_deref(),
                    None,
                    error.message,
                ));
            }
        }
        Ok(false)
    }

    fn finish(self) -> ModelResponse {
        let mut content = Vec::with_capacity(self.blocks.len());
        for partial in self.blocks.into_values() {
            content.push(match partial {
                Partial::Text(text) if text.is_empty() => continue,
                Partial::Text(text) => ContentBlock::Text { text },
                Partial::Thinking {
                    thinking,
                    signature,
                } => ContentBlock::Thinking {
                    thinking,
                    signature,
                },
                Partial::Redacted(data) => ContentBlock::RedactedThinking { data },
                Partial::ToolUse {
                    id,
                    name,
                    start_input,
                    json,
                    input,
                } => ContentBlock::ToolUse {
                    id,
                    name,
                    input: input.unwrap_or_else(|| parse_tool_input(&json, &start_input)),
                },
            });
        }
        let message = Message {
            role: Role::Assistant,
            content,
        };
        let stop_reason = self.stop_reason.unwrap_or_else(|| {
            if message.tool_uses().next().is_some() {
                StopReason::ToolUse
            } else {
                StopReason::EndTurn
            }
        });
        ModelResponse {
            message,
            stop_reason,
            usage: self.usage,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cubicle_protocol::conversation::ToolSpec;
    use pretty_assertions::assert_eq;

    fn client() -> AnthropicClient {
        let mut config = AnthropicConfig::new("claude-test");
        config.api_key = Some("sk-test".into());
        AnthropicClient::new(config).unwrap()
    }

    #[test]
    fn empty_system_and_tools_are_omitted() {
        let req = ModelRequest {
            system: String::new(),
            messages: vec![Message::user_text("hi")].into(),
            tools: vec![],
            max_tokens: 100,
            agent: None,
        };
        assert_eq!(
            client().request_body(&req),
            json!({
                "model": "claude-test",
                "max_tokens": 100,
                "stream": true,
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
                ]}],
            })
        );
    }

    #[test]
    fn raw_tool_arguments_are_sent_back_as_an_empty_object() {
        let req = ModelRequest {
            system: "s".into(),
            messages: vec![
                Message::user_text("go"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentBlock::Text {
                            text: String::new(),
                        },
                        ContentBlock::ToolUse {
                            id: "t1".into(),
                            name: "bash".into(),
                            input: Value::String("{\"command\": ".into()),
                        },
                    ],
                },
            ]
            .into(),
            tools: vec![ToolSpec {
                name: "bash".into(),
                description: "run".into(),
                input_schema: json!({"type": "object"}),
            }],
            max_tokens: 10,
            agent: None,
        };
        let body = client().request_body(&req);
        assert_eq!(
            body["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "bash", "input": {}}
            ]})
        );
    }

    #[test]
    fn tool_input_parsing() {
        assert_eq!(parse_tool_input("", &json!({})), json!({}));
        assert_eq!(parse_tool_input("  ", &json!({"a": 1})), json!({"a": 1}));
        assert_eq!(parse_tool_input("{\"a\":1}", &json!({})), json!({"a": 1}));
        assert_eq!(parse_tool_input("{\"a\":", &json!({})), json!("{\"a\":"));
    }

    #[test]
    fn missing_credentials_are_a_config_error() {
        let err = AnthropicClient::from_env_with("m", &|_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no Anthropic credentials: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", client());
        assert!(!text.contains("sk-test"), "{text}");
    }

    #[test]
    fn deltas_for_unknown_or_mismatched_blocks_are_ignored() {
        let mut a = Assembler::default();
        let events = [
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"x"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"ok"}}"#,
            r#"{"type":"brand_new_event","whatever":[1,2]}"#,
        ];
        for e in events {
            assert!(!a.apply(serde_json::from_str(e).unwrap(), None).unwrap());
        }
        let done = a.apply(
            serde_json::from_str(r#"{"type":"message_stop"}"#).unwrap(),
            None,
        );
        assert!(done.unwrap());
        assert_eq!(a.finish().message, Message::assistant_text("ok"));
    }
}

//! OpenAI-compatible chat completions (`POST {base}/chat/completions`) with
//! streaming and tools, as served by llama.cpp's server, Ollama and vLLM.
//!
//! A thin client of our own rather than a typed SDK: local servers bend the
//! format (`"finish_reason":""` on every chunk, `reasoning_content` beside
//! `content`, tool calls without an `index`), and a lenient reader copes with
//! all of them.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use cubicle_protocol::conversation::{
    ContentBlock, ImageSource, Message, Role, StopReason, ToolResultContent, Usage,
};
use reqwest::header::HeaderMap;
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

/// Context window assumed for a local model unless configured; llama.cpp's
/// and Ollama's own defaults are often smaller, so this errs large.
pub const DEFAULT_CONTEXT_WINDOW: u64 = 32_768;

/// How to reach an OpenAI-compatible server.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// API root including the version, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name; llama.cpp ignores it, Ollama and vLLM need it.
    pub model: String,
    /// Sent as `Authorization: Bearer` when set.
    pub api_key: Option<String>,
    /// The model's context window in tokens.
    pub context_window: u64,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Longest the connection may stay silent before the attempt is
    /// abandoned; long, because a local server on a CPU can take minutes to
    /// read a prompt before it sends a byte.
    pub timeout: Duration,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("context_window", &self.context_window)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OpenAiConfig {
    /// Defaults for `model` served at `base_url`, without an API key.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            context_window: DEFAULT_CONTEXT_WINDOW,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// A client of an OpenAI-compatible chat completions endpoint.
#[derive(Debug)]
pub struct OpenAiClient {
    config: OpenAiConfig,
    url: String,
    http: reqwest::Client,
}

impl OpenAiClient {
    /// A client for `config`; fails on a bad URL or API key.
    pub fn new(config: OpenAiConfig) -> Result<Self, ModelError> {
        let base = config.base_url.trim().trim_end_matches('/');
        let url = format!("{base}/chat/completions");
        reqwest::Url::parse(&url)
            .map_err(|e| ModelError::Config(format!("the base URL `{base}` is not a URL: {e}")))?;
        let mut headers = HeaderMap::new();
        if let Some(key) = config.api_key.as_ref().filter(|k| !k.trim().is_empty()) {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                secret_header("the API key", &format!("Bearer {}", key.trim()))?,
            );
        }
        let http = http_client(headers, config.timeout)?;
        Ok(Self { config, url, http })
    }

    /// The configuration in use.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The JSON body sent for `req`.
    pub fn request_body(&self, req: &ModelRequest) -> Value {
        let mut body = json!({
            "model": self.config.model,
            "messages": messages_json(&req.system, &req.messages),
            "max_tokens": req.max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if !req.tools.is_empty() {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.input_schema,
                        },
                    })
                })
                .collect();
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
            let data = event.data.trim();
            if data == "[DONE]" {
                return Ok(assembler.finish());
            }
            let chunk: Chunk = serde_json::from_str(data)
                .map_err(|e| ModelError::Stream(format!("invalid JSON in a stream chunk: {e}")))?;
            assembler.apply(chunk, deltas)?;
        }
        // Some servers close without `[DONE]`; a finish reason says the
        // answer was complete all the same.
        if assembler.finish_reason.is_some() {
            return Ok(assembler.finish());
        }
        Err(Failure::Transient(Transient::new(
            TransientKind::Network,
            "the response stream ended before the answer was complete",
        )))
    }
}

#[async_trait]
impl ModelClient for OpenAiClient {
    fn provider(&self) -> &str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.config.model
    }

    fn context_window(&self) -> u64 {
        self.config.context_window
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

fn messages_json(system: &str, messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    if !system.is_empty() {
        out.push(json!({"role": "system", "content": system}));
    }
    for message in messages {
        match message.role {
            Role::User => push_user(message, &mut out),
            Role::Assistant => out.push(assistant_json(message)),
        }
    }
    out
}

/// A user message becomes one `tool` message per tool result (they must
/// directly follow the assistant's calls), then a user message with the rest.
fn push_user(message: &Message, out: &mut Vec<Value>) {
    // Tool messages carry text only; images a tool returned ride along in
    // the user message that follows.
    let mut images = Vec::new();
    let mut parts = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::Text { text } => parts.push(json!({"type": "text", "text": text})),
            ContentBlock::Image { source } => parts.push(image_part(source)),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let mut texts = Vec::new();
                let mut image_count = 0;
                for c in content {
                    match c {
                        ToolResultContent::Text { text } => texts.push(text.as_str()),
                        ToolResultContent::Image { source } => {
                            images.push(image_part(source));
                            image_count += 1;
                        }
                    }
                }
                let mut text = texts.join("\n");
                if image_count > 0 {
                    text.push_str(&format!(
                        "\n[{image_count} image(s) attached in the next message]"
                    ));
                }
                if *is_error {
                    text = format!("Error: {text}");
                }
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": text}));
            }
            ContentBlock::ToolUse { .. }
            | ContentBlock::Thinking { .. }
            | ContentBlock::RedactedThinking { .. } => {}
        }
    }
    images.extend(parts);
    if images.is_empty() {
        return;
    }
    // Plain strings are what every server accepts; parts only when needed.
    let content = if images.iter().all(|p| p["type"] == "text") {
        let texts: Vec<&str> = images.iter().filter_map(|p| p["text"].as_str()).collect();
        Value::String(texts.join("\n\n"))
    } else {
        Value::Array(images)
    };
    out.push(json!({"role": "user", "content": content}));
}

fn assistant_json(message: &Message) -> Value {
    let text = message.text();
    let calls: Vec<Value> = message
        .tool_uses()
        .map(|call| {
            // Arguments that did not parse were kept raw: send back what the
            // model wrote.
            let arguments = match call.input {
                Value::String(raw) => raw.clone(),
                other => other.to_string(),
            };
            json!({
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": arguments},
            })
        })
        .collect();
    if calls.is_empty() {
        return json!({"role": "assistant", "content": text});
    }
    let content = if text.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    json!({"role": "assistant", "content": content, "tool_calls": calls})
}

fn image_part(source: &ImageSource) -> Value {
    json!({
        "type": "image_url",
        "image_url": {"url": format!("data:{};base64,{}", source.media_type, source.data)},
    })
}

/// One streamed chunk; every field optional because servers differ.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<ChoiceDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ChoiceDelta {
    #[serde(default)]
    content: Option<String>,
    /// llama.cpp and vLLM.
    #[serde(default)]
    reasoning_content: Option<String>,
    /// Ollama and OpenRouter.
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    /// A string fragment normally; some servers send a whole object.
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Builds the answer from the stream's chunks.
#[derive(Debug, Default)]
struct Assembler {
    text: String,
    calls: BTreeMap<usize, PartialCall>,
    finish_reason: Option<String>,
    usage: Usage,
}

impl Assembler {
    fn apply(&mut self, chunk: Chunk, deltas: Option<&DeltaTx>) -> Result<(), Failure> {
        let send = |delta: ModelDelta| {
            if let Some(tx) = deltas {
                let _ = tx.send(delta);
            }
        };
        if let Some(error) = chunk.error {
            return Err(stream_error(&error));
        }
        if let Some(usage) = chunk.usage {
            let cached = usage
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0);
            self.usage = Usage {
                input_tokens: usage.prompt_tokens.saturating_sub(cached),
                output_tokens: usage.completion_tokens,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: cached,
            };
        }
        // We never ask for more than one choice.
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(());
        };
        let delta = choice.delta.unwrap_or_default();
        if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
            self.text.push_str(&text);
            send(ModelDelta::Text(text));
        }
        if let Some(thinking) = delta
            .reasoning_content
            .or(delta.reasoning)
            .filter(|t| !t.is_empty())
        {
            send(ModelDelta::Thinking(thinking));
        }
        for call in delta.tool_calls.unwrap_or_default() {
            let index = match call.index {
                Some(i) => i,
                // Without an index, a new id starts a new call and anything
                // else continues the latest one.
                None => match (&call.id, self.calls.last_key_value()) {
                    (Some(id), Some((&last, c))) if !id.is_empty() && *id != c.id => last + 1,
                    (_, Some((&last, _))) => last,
                    (_, None) => 0,
                },
            };
            let partial = self.calls.entry(index).or_default();
            if let Some(id) = call.id.filter(|id| !id.is_empty())
                && partial.id.is_empty()
            {
                partial.id = id;
            }
            let Some(function) = call.function else {
                continue;
            };
            if let Some(name) = function.name.filter(|n| !n.is_empty())
                && partial.name.is_empty()
            {
                partial.name = name;
                if partial.id.is_empty() {
                    // Some local servers send no id; results must still pair up.
                    partial.id = format!("call_{}", fastrand_id());
                }
                send(ModelDelta::ToolUseStart {
                    id: partial.id.clone(),
                    name: partial.name.clone(),
                });
            }
            match function.arguments {
                Some(Value::String(fragment)) => partial.arguments.push_str(&fragment),
                Some(Value::Null) | None => {}
                Some(whole) => partial.arguments.push_str(&whole.to_string()),
            }
        }
        // llama.cpp sends `"finish_reason": ""` on chunks that do not finish.
        if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
            self.finish_reason = Some(reason);
        }
        Ok(())
    }

    fn finish(self) -> ModelResponse {
        let mut content = Vec::with_capacity(self.calls.len() + 1);
        if !self.text.is_empty() {
            content.push(ContentBlock::Text { text: self.text });
        }
        let has_calls = !self.calls.is_empty();
        for call in self.calls.into_values() {
            let id = if call.id.is_empty() {
                format!("call_{}", fastrand_id())
            } else {
                call.id
            };
            content.push(ContentBlock::ToolUse {
                id,
                name: call.name,
                input: parse_tool_input(&call.arguments, &Value::Null),
            });
        }
        let stop_reason = match self.finish_reason.as_deref() {
            // Some servers say "stop" after tool calls; the calls decide.
            None | Some("stop") if has_calls => StopReason::ToolUse,
            None | Some("stop") => StopReason::EndTurn,
            Some("tool_calls" | "function_call") => StopReason::ToolUse,
            Some("length") => StopReason::MaxTokens,
            Some("content_filter") => StopReason::Refusal,
            Some(other) => StopReason::Other(other.to_owned()),
        };
        ModelResponse {
            message: Message {
                role: Role::Assistant,
                content,
            },
            stop_reason,
            usage: self.usage,
        }
    }
}

/// An error a server reported inside the stream, e.g. llama.cpp's
/// `{"error":{"code":500,"message":"...","type":"server_error"}}`.
fn stream_error(error: &Value) -> Failure {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())
        .map_or_else(|| error.to_string(), str::to_owned);
    let kind = error.get("type").and_then(Value::as_str);
    let status = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    classify_stream_error(kind, status, message)
}

fn fastrand_id() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(24)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    fn apply_all(chunks: &[&str]) -> ModelResponse {
        let mut a = Assembler::default();
        for c in chunks {
            a.apply(serde_json::from_str(c).unwrap(), None).unwrap();
        }
        a.finish()
    }

    #[test]
    fn calls_without_index_are_told_apart_by_id() {
        let r = apply_all(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"read","arguments":{"path":"x"}}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"b","function":{"name":"read","arguments":"{\"path\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"\"y\"}"}}]},"finish_reason":"stop"}]}"#,
        ]);
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(
            r.message.content,
            vec![
                ContentBlock::ToolUse {
                    id: "a".into(),
                    name: "read".into(),
                    input: json!({"path": "x"})
                },
                ContentBlock::ToolUse {
                    id: "b".into(),
                    name: "read".into(),
                    input: json!({"path": "y"})
                },
            ]
        );
    }

    #[test]
    fn a_call_without_an_id_gets_one() {
        let r = apply_all(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"ls","arguments":""}}]},"finish_reason":null}]}"#,
        ]);
        let call = r.message.tool_uses().next().unwrap();
        assert!(
            call.id.starts_with("call_") && call.id.len() > 10,
            "{}",
            call.id
        );
        assert_eq!(call.input, &json!({}));
    }

    #[test]
    fn finish_reasons_map_to_stop_reasons() {
        let stop = |reason: &str| {
            apply_all(&[&format!(
                r#"{{"choices":[{{"delta":{{"content":"x"}},"finish_reason":"{reason}"}}]}}"#
            )])
            .stop_reason
        };
        assert_eq!(stop("stop"), StopReason::EndTurn);
        assert_eq!(stop("length"), StopReason::MaxTokens);
        assert_eq!(stop("tool_calls"), StopReason::ToolUse);
        assert_eq!(stop("content_filter"), StopReason::Refusal);
        assert_eq!(stop("weird"), StopReason::Other("weird".into()));
        assert_eq!(stop(""), StopReason::EndTurn);
    }

    #[test]
    fn request_maps_tool_results_and_images() {
        let client = OpenAiClient::new(OpenAiConfig::new("http://127.0.0.1:1/v1/", "m")).unwrap();
        assert_eq!(client.url, "http://127.0.0.1:1/v1/chat/completions");
        let png = ImageSource {
            media_type: "image/png".into(),
            data: "iVBORw0K".into(),
        };
        let req = ModelRequest {
            system: String::new(),
            messages: vec![
                Message::user_text("look"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentBlock::Thinking {
                            thinking: "hm".into(),
                            signature: String::new(),
                        },
                        ContentBlock::ToolUse {
                            id: "c1".into(),
                            name: "shot".into(),
                            input: json!({}),
                        },
                        ContentBlock::ToolUse {
                            id: "c2".into(),
                            name: "bash".into(),
                            input: json!("{bad"),
                        },
                    ],
                },
                Message {
                    role: Role::User,
                    content: vec![
                        ContentBlock::ToolResult {
                            tool_use_id: "c1".into(),
                            content: vec![
                                ToolResultContent::text("here"),
                                ToolResultContent::Image {
                                    source: png.clone(),
                                },
                            ],
                            is_error: false,
                        },
                        ContentBlock::ToolResult {
                            tool_use_id: "c2".into(),
                            content: vec![ToolResultContent::text("invalid JSON")],
                            is_error: true,
                        },
                        ContentBlock::Text {
                            text: "and?".into(),
                        },
                    ],
                },
            ]
            .into(),
            tools: vec![],
            max_tokens: 50,
            agent: None,
        };
        let body = client.request_body(&req);
        assert_eq!(body.get("tools"), None);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "look"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "shot", "arguments": "{}"}},
                    {"id": "c2", "type": "function", "function": {"name": "bash", "arguments": "{bad"}},
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "here\n[1 image(s) attached in the next message]"},
                {"role": "tool", "tool_call_id": "c2", "content": "Error: invalid JSON"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "text", "text": "and?"},
                ]},
            ])
        );
    }
}

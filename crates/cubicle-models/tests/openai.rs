//! The OpenAI-compatible client against a local server speaking the chat
//! completions stream the way llama.cpp, vLLM and Ollama do: `data:` chunks,
//! `"finish_reason":""`, tool-call arguments split across chunks, a usage
//! chunk with no choices, `data: [DONE]`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use cubicle_models::openai::{OpenAiClient, OpenAiConfig};
use cubicle_models::provider::{ProviderSpec, resolve};
use cubicle_models::{ModelClient, ModelDelta, ModelError, ModelRequest, ModelResponse};
use cubicle_protocol::conversation::{ContentBlock, Message, Role, StopReason, ToolSpec, Usage};
use pretty_assertions::assert_eq;
use serde_json::json;
use support::{Framing, Part, Reply, TestServer, delta_channel, drain, fast_retries, fixture};
use tokio_util::sync::CancellationToken;

fn client(server: &TestServer) -> OpenAiClient {
    let mut config = OpenAiConfig::new(format!("{}/v1", server.url), "qwen2.5-7b-instruct");
    config.retry = fast_retries();
    OpenAiClient::new(config).unwrap()
}

fn request() -> ModelRequest {
    ModelRequest {
        system: "You are Cubicle.".into(),
        messages: vec![Message::user_text("Where is the report?")].into(),
        tools: vec![ToolSpec {
            name: "read_file".into(),
            description: "Read a file.".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }],
        max_tokens: 512,
        agent: None,
    }
}

async fn complete(
    client: &OpenAiClient,
    req: &ModelRequest,
) -> (Result<ModelResponse, ModelError>, Vec<ModelDelta>) {
    let (tx, mut rx) = delta_channel();
    let result = client
        .complete(req, Some(&tx), &CancellationToken::new())
        .await;
    (result, drain(&mut rx))
}

#[tokio::test]
async fn text_streams_and_usage_counts_cached_tokens() {
    let server = TestServer::start(vec![Reply::sse(fixture("openai_text.sse"))]).await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    assert_eq!(
        result.unwrap(),
        ModelResponse {
            message: Message::assistant_text("The report is ready: /mnt/expenses/report.xlsx."),
            stop_reason: StopReason::EndTurn,
            usage: Usage {
                input_tokens: 304,
                output_tokens: 12,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 1536,
            },
        }
    );
    assert_eq!(
        deltas,
        vec![
            ModelDelta::Text("The report".into()),
            ModelDelta::Text(" is ready: /mnt/expenses/report.xlsx".into()),
            ModelDelta::Text(".".into()),
        ]
    );
}

#[tokio::test]
async fn request_body_and_headers_follow_chat_completions() {
    let server = TestServer::start(vec![Reply::sse(fixture("openai_text.sse"))]).await;
    let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-local".to_owned());
    let spec = ProviderSpec {
        provider: Some("openai".into()),
        model: Some("qwen2.5-coder:7b".into()),
        base_url: Some(format!("{}/v1/", server.url)),
        ..Default::default()
    };
    let model = resolve(&spec, &env).unwrap();
    assert_eq!(
        (model.provider(), model.model(), model.context_window()),
        ("openai", "qwen2.5-coder:7b", 32_768)
    );
    let mut req = request();
    std::sync::Arc::make_mut(&mut req.messages).push(Message {
        role: Role::Assistant,
        content: vec![
            ContentBlock::Text {
                text: "Checking.".into(),
            },
            ContentBlock::ToolUse {
                id: "call_1".into(),
                name: "read_file".into(),
                input: json!({"path": "/mnt/a.txt"}),
            },
        ],
    });
    std::sync::Arc::make_mut(&mut req.messages).push(Message {
        role: Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: "call_1".into(),
            content: vec![
                cubicle_protocol::conversation::ToolResultContent::text("line 1"),
                cubicle_protocol::conversation::ToolResultContent::text("line 2"),
            ],
            is_error: false,
        }],
    });
    model
        .complete(&req, None, &CancellationToken::new())
        .await
        .unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        sent.headers.get("authorization").map(String::as_str),
        Some("Bearer sk-local")
    );
    assert_eq!(
        sent.body,
        json!({
            "model": "qwen2.5-coder:7b",
            "max_tokens": 512,
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "You are Cubicle."},
                {"role": "user", "content": "Where is the report?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"/mnt/a.txt\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "line 1\nline 2"},
            ],
            "tools": [{"type": "function", "function": {
                "name": "read_file",
                "description": "Read a file.",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
            }}],
        })
    );
}

#[tokio::test]
async fn tool_calls_are_assembled_across_chunks() {
    let server = TestServer::start(vec![Reply::sse(fixture("openai_tool_calls.sse"))]).await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    assert_eq!(
        result.unwrap(),
        ModelResponse {
            message: Message {
                role: Role::Assistant,
                content: vec![
                    ContentBlock::Text {
                        text: "Let me look.".into()
                    },
                    ContentBlock::ToolUse {
                        id: "call_5d8f2a1b".into(),
                        name: "read_file".into(),
                        input: json!({"path": "/mnt/expenses/notes.txt"}),
                    },
                    ContentBlock::ToolUse {
                        id: "call_9c4e7b30".into(),
                        name: "list_dir".into(),
                        input: json!({"path": "/workspace"}),
                    },
                ],
            },
            stop_reason: StopReason::ToolUse,
            usage: Usage {
                input_tokens: 912,
                output_tokens: 46,
                ..Usage::default()
            },
        }
    );
    assert_eq!(
        deltas,
        vec![
            ModelDelta::Text("Let me look.".into()),
            ModelDelta::ToolUseStart {
                id: "call_5d8f2a1b".into(),
                name: "read_file".into()
            },
            ModelDelta::ToolUseStart {
                id: "call_9c4e7b30".into(),
                name: "list_dir".into()
            },
        ]
    );
}

#[tokio::test]
async fn reasoning_content_streams_as_thinking_but_stays_out_of_the_message() {
    let server = TestServer::start(vec![Reply::sse(fixture("openai_reasoning.sse"))]).await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    assert_eq!(
        result.unwrap(),
        ModelResponse {
            message: Message::assistant_text("Hello"),
            stop_reason: StopReason::MaxTokens,
            usage: Usage {
                input_tokens: 20,
                output_tokens: 9,
                ..Usage::default()
            },
        }
    );
    assert_eq!(
        deltas,
        vec![
            ModelDelta::Thinking("The user wants a".into()),
            ModelDelta::Thinking(" one-word greeting.".into()),
            ModelDelta::Text("Hello".into()),
        ]
    );
}

#[tokio::test]
async fn tool_calls_without_a_finish_reason_mean_tool_use() {
    let stream = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_x\",\"type\":\"function\",\"function\":{\"name\":\"bash\",\"arguments\":\"{\\\"command\\\":\"}}]},\"finish_reason\":\"\"}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\" \\\"ls\\\"}\"}}]},\"finish_reason\":\"\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let server = TestServer::start(vec![Reply::sse(stream)]).await;
    let (result, _) = complete(&client(&server), &request()).await;
    let response = result.unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        response.message.content,
        vec![ContentBlock::ToolUse {
            id: "call_x".into(),
            name: "bash".into(),
            input: json!({"command": "ls"}),
        }]
    );
}

#[tokio::test]
async fn a_stream_closed_after_the_finish_reason_is_complete() {
    // Some servers close the connection instead of sending `[DONE]`.
    let text = fixture("openai_text.sse");
    let without_done = text.replace("data: [DONE]\n\n", "");
    let server = TestServer::start(vec![Reply::sse(without_done).framing(Framing::Close)]).await;
    let (result, _) = complete(&client(&server), &request()).await;
    assert_eq!(result.unwrap().usage.cache_read_input_tokens, 1536);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_stream_cut_before_the_end_is_retried() {
    let text = fixture("openai_text.sse");
    let cut_at = text.find(" is ready").unwrap();
    let server = TestServer::start(vec![
        Reply::sse_parts(vec![
            Part::Bytes(text.as_bytes()[..cut_at].to_vec()),
            Part::Cut,
        ])
        .framing(Framing::Close),
        Reply::sse(text),
    ])
    .await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    assert_eq!(
        result.unwrap().message.text(),
        "The report is ready: /mnt/expenses/report.xlsx."
    );
    assert_eq!(server.requests().len(), 2);
    assert!(
        deltas.iter().any(
            |d| matches!(d, ModelDelta::Retrying { attempt: 2, reason, .. }
            if reason == "the response stream ended before the answer was complete")
        ),
        "{deltas:?}"
    );
}

#[tokio::test]
async fn a_loading_model_is_retried() {
    let server = TestServer::start(vec![
        Reply::json(
            503,
            r#"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#,
        ),
        Reply::sse(fixture("openai_text.sse")),
    ])
    .await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(
        matches!(&deltas[0], ModelDelta::Retrying { attempt: 2, reason, .. } if reason == "HTTP 503: Loading model"),
        "{deltas:?}"
    );
}

#[tokio::test]
async fn an_error_chunk_mid_stream_is_classified() {
    let server = TestServer::start(vec![
        Reply::sse(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
             data: {\"error\":{\"code\":500,\"message\":\"llama_decode failed\",\"type\":\"server_error\"}}\n\n",
        ),
        Reply::sse(
            "data: {\"error\":{\"code\":400,\"message\":\"the request exceeds the available context size, try increasing it\",\"type\":\"exceed_context_size_error\"}}\n\n",
        ),
    ])
    .await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    assert!(
        matches!(&result, Err(ModelError::ContextTooLong(m)) if m.starts_with("the request exceeds the available context size")),
        "{result:?}"
    );
    assert!(
        matches!(&deltas[1], ModelDelta::Retrying { reason, .. } if reason == "HTTP 500: llama_decode failed"),
        "{deltas:?}"
    );
}

#[tokio::test]
async fn error_statuses_become_typed_errors() {
    let server = TestServer::start(vec![
        Reply::json(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-local. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        ),
        Reply::json(
            400,
            r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":40321,"n_ctx":32768}}"#,
        ),
        Reply::json(404, r#"{"error":"model \"llama9\" not found, try pulling it first"}"#),
    ])
    .await;
    let client = client(&server);
    let (auth, _) = complete(&client, &request()).await;
    assert!(
        matches!(&auth, Err(ModelError::Auth(m)) if m.starts_with("Incorrect API key provided")),
        "{auth:?}"
    );
    let (too_long, _) = complete(&client, &request()).await;
    assert!(
        matches!(too_long, Err(ModelError::ContextTooLong(_))),
        "{too_long:?}"
    );
    let (missing, _) = complete(&client, &request()).await;
    assert!(
        matches!(&missing, Err(ModelError::InvalidRequest(m)) if m == "model \"llama9\" not found, try pulling it first (HTTP 404)"),
        "{missing:?}"
    );
    assert_eq!(server.requests().len(), 3, "none of these is retried");
}

#[tokio::test]
async fn a_malformed_chunk_is_a_stream_error() {
    let server = TestServer::start(vec![
        Reply::sse(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}\n\ndata: [DONE]\n\n",
        ),
        Reply::sse(fixture("openai_text.sse")),
    ])
    .await;
    let (result, _) = complete(&client(&server), &request()).await;
    assert!(matches!(result, Err(ModelError::Stream(_))), "{result:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn cancelling_during_a_slow_stream_returns_promptly() {
    let text = fixture("openai_text.sse");
    let pause_at = text.find("data: {\"id\":\"chatcmpl-9ZbQ2rXk\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,\"model\":\"qwen2.5-7b-instruct\",\"system_fingerprint\":\"b4120-3ee6382d\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" is").unwrap();
    let server = TestServer::start(vec![Reply::sse_parts(vec![
        Part::Bytes(text.as_bytes()[..pause_at].to_vec()),
        Part::Sleep(Duration::from_secs(600)),
        Part::Bytes(text.as_bytes()[pause_at..].to_vec()),
    ])])
    .await;
    let client = client(&server);
    let req = request();
    let cancel = CancellationToken::new();
    let (tx, mut rx) = delta_channel();
    let canceller = cancel.clone();
    let watch = async move {
        let first = rx.recv().await;
        canceller.cancel();
        first
    };
    let (result, first) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(client.complete(&req, Some(&tx), &cancel), watch)
    })
    .await
    .expect("cancellation should end the call promptly");
    assert_eq!(first, Some(ModelDelta::Text("The report".into())));
    assert!(matches!(result, Err(ModelError::Cancelled)), "{result:?}");
}

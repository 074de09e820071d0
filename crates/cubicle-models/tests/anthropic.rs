//! The Anthropic client against a local server speaking the Messages API's
//! wire format byte for byte: SSE streams recorded in `tests/fixtures/`,
//! error statuses with their JSON bodies, `retry-after`, cut connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use cubicle_models::anthropic::{AnthropicClient, AnthropicConfig};
use cubicle_models::provider::{ProviderSpec, resolve};
use cubicle_models::{ModelClient, ModelDelta, ModelError, ModelRequest, ModelResponse};
use cubicle_protocol::conversation::{
    ContentBlock, ImageSource, Message, Role, StopReason, ToolResultContent, ToolSpec, Usage,
};
use pretty_assertions::assert_eq;
use serde_json::json;
use support::{
    Framing, Part, Reply, TestServer, delta_channel, drain, fast_retries, fixture, text_of,
};
use tokio_util::sync::CancellationToken;

fn client(server: &TestServer) -> AnthropicClient {
    let mut config = AnthropicConfig::new("claude-sonnet-4-5");
    config.api_key = Some("sk-ant-test-key".into());
    config.base_url = server.url.clone();
    config.retry = fast_retries();
    AnthropicClient::new(config).unwrap()
}

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "bash".into(),
            description: "Run a shell command in the cubicle.".into(),
            input_schema: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
        },
        ToolSpec {
            name: "read_file".into(),
            description: "Read a file.".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        },
    ]
}

fn request() -> ModelRequest {
    ModelRequest {
        system: "You are Cubicle.".into(),
        messages: vec![Message::user_text("Summarise the receipts.")].into(),
        tools: tools(),
        max_tokens: 1024,
        agent: None,
    }
}

async fn complete(
    client: &AnthropicClient,
    req: &ModelRequest,
) -> (Result<ModelResponse, ModelError>, Vec<ModelDelta>) {
    let (tx, mut rx) = delta_channel();
    let result = client
        .complete(req, Some(&tx), &CancellationToken::new())
        .await;
    (result, drain(&mut rx))
}

#[tokio::test]
async fn text_streams_in_order_and_the_message_is_assembled() {
    let server = TestServer::start(vec![Reply::sse(fixture("anthropic_text.sse"))]).await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    let text = "Hello! I read the receipts in /mnt/expenses — 12 of them, totalling €418.20.";
    assert_eq!(
        result.unwrap(),
        ModelResponse {
            message: Message::assistant_text(text),
            stop_reason: StopReason::EndTurn,
            usage: Usage {
                input_tokens: 25,
                output_tokens: 15,
                cache_creation_input_tokens: 1204,
                cache_read_input_tokens: 3310,
            },
        }
    );
    assert_eq!(
        deltas,
        vec![
            ModelDelta::Text("Hello".into()),
            ModelDelta::Text("! I read the receipts in".into()),
            ModelDelta::Text(" /mnt/expenses — 12 of them, totalling €418.20.".into()),
        ]
    );
}

#[tokio::test]
async fn request_body_and_headers_have_the_documented_shape() {
    let server = TestServer::start(vec![Reply::sse(fixture("anthropic_text.sse"))]).await;
    let png = ImageSource {
        media_type: "image/png".into(),
        data: "iVBORw0KGgo=".into(),
    };
    let req = ModelRequest {
        messages: vec![
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::Text {
                        text: "What is in this receipt?".into(),
                    },
                    ContentBlock::Image {
                        source: png.clone(),
                    },
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentBlock::Text {
                        text: "Let me look.".into(),
                    },
                    ContentBlock::ToolUse {
                        id: "toolu_1".into(),
                        name: "bash".into(),
                        input: json!({"command": "ls /mnt/expenses"}),
                    },
                    ContentBlock::ToolUse {
                        id: "toolu_2".into(),
                        name: "read_file".into(),
                        input: json!({"path": "/mnt/expenses/missing.pdf"}),
                    },
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::ToolResult {
                        tool_use_id: "toolu_1".into(),
                        content: vec![
                            ToolResultContent::text("a.pdf\nb.png"),
                            ToolResultContent::Image {
                                source: png.clone(),
                            },
                        ],
                        is_error: false,
                    },
                    ContentBlock::ToolResult {
                        tool_use_id: "toolu_2".into(),
                        content: vec![ToolResultContent::text("no such file")],
                        is_error: true,
                    },
                ],
            },
        ]
        .into(),
        ..request()
    };
    client(&server)
        .complete(&req, None, &CancellationToken::new())
        .await
        .unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(
        sent.headers.get("x-api-key").map(String::as_str),
        Some("sk-ant-test-key")
    );
    assert_eq!(
        sent.headers.get("anthropic-version").map(String::as_str),
        Some("2023-06-01")
    );
    assert_eq!(
        sent.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(sent.headers.get("authorization"), None);
    let image = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}});
    let mut cached_result = json!({
        "type": "tool_result",
        "tool_use_id": "toolu_2",
        "content": [{"type": "text", "text": "no such file"}],
        "is_error": true,
    });
    cached_result["cache_control"] = json!({"type": "ephemeral"});
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "stream": true,
            "system": [{"type": "text", "text": "You are Cubicle.", "cache_control": {"type": "ephemeral"}}],
            "tools": [
                {
                    "name": "bash",
                    "description": "Run a shell command in the cubicle.",
                    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
                },
                {
                    "name": "read_file",
                    "description": "Read a file.",
                    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
                    "cache_control": {"type": "ephemeral"},
                },
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this receipt?"},
                    image,
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls /mnt/expenses"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "read_file", "input": {"path": "/mnt/expenses/missing.pdf"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                        {"type": "text", "text": "a.pdf\nb.png"},
                        image,
                    ]},
                    cached_result,
                ]},
            ],
        })
    );
    let breakpoints = sent.body.to_string().matches("cache_control").count();
    assert_eq!(breakpoints, 3, "at most 4 breakpoints are allowed");
}

#[tokio::test]
async fn environment_base_url_and_auth_token_are_honoured() {
    let server = TestServer::start(vec![
        Reply::sse(fixture("anthropic_text.sse")),
        Reply::sse(fixture("anthropic_text.sse")),
    ])
    .await;
    let base = format!("{}/", server.url);
    let env = |name: &str| match name {
        "ANTHROPIC_AUTH_TOKEN" => Some("oauth-token-123".to_owned()),
        "ANTHROPIC_BASE_URL" => Some(base.clone()),
        _ => None,
    };
    let direct = AnthropicClient::from_env_with("claude-opus-4-1", &env).unwrap();
    direct
        .complete(&request(), None, &CancellationToken::new())
        .await
        .unwrap();

    // The same environment through provider resolution, as the CLI does it.
    let resolved = resolve(&ProviderSpec::default(), &env).unwrap();
    assert_eq!(
        (resolved.provider(), resolved.model()),
        ("anthropic", "claude-sonnet-4-5")
    );
    resolved
        .complete(&request(), None, &CancellationToken::new())
        .await
        .unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for (sent, model) in requests
        .iter()
        .zip(["claude-opus-4-1", "claude-sonnet-4-5"])
    {
        assert_eq!(sent.path, "/v1/messages");
        assert_eq!(
            sent.headers.get("authorization").map(String::as_str),
            Some("Bearer oauth-token-123")
        );
        assert_eq!(sent.headers.get("x-api-key"), None);
        assert_eq!(sent.body["model"], model);
    }
}

#[tokio::test]
async fn tool_use_input_is_assembled_from_fragments() {
    let server = TestServer::start(vec![Reply::sse(fixture("anthropic_tool_use.sse"))]).await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    assert_eq!(
        result.unwrap(),
        ModelResponse {
            message: Message {
                role: Role::Assistant,
                content: vec![
                    ContentBlock::Text {
                        text: "Okay, let's check the weather for San Francisco, CA:".into()
                    },
                    ContentBlock::ToolUse {
                        id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                        name: "get_weather".into(),
                        input: json!({"location": "San Francisco, CA", "unit": "fahrenheit"}),
                    },
                    ContentBlock::ToolUse {
                        id: "toolu_01Gq2vTyxNyRmPJh8Wbt7cTZ".into(),
                        name: "get_time".into(),
                        input: json!({}),
                    },
                ],
            },
            stop_reason: StopReason::ToolUse,
            usage: Usage {
                input_tokens: 472,
                output_tokens: 89,
                ..Usage::default()
            },
        }
    );
    assert_eq!(
        deltas,
        vec![
            ModelDelta::Text("Okay".into()),
            ModelDelta::Text(", let's check the weather for San Francisco, CA:".into()),
            ModelDelta::ToolUseStart {
                id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                name: "get_weather".into()
            },
            ModelDelta::ToolUseStart {
                id: "toolu_01Gq2vTyxNyRmPJh8Wbt7cTZ".into(),
                name: "get_time".into()
            },
        ]
    );
}

#[tokio::test]
async fn invalid_tool_json_is_kept_as_the_raw_string() {
    let server =
        TestServer::start(vec![Reply::sse(fixture("anthropic_invalid_tool_json.sse"))]).await;
    let response = client(&server)
        .complete(&request(), None, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(response.stop_reason, StopReason::MaxTokens);
    assert_eq!(
        response.message.content,
        vec![ContentBlock::ToolUse {
            id: "toolu_01BadJsonA1b2C3d4E5f6G7h".into(),
            name: "bash".into(),
            input: json!("{\"command\": \"ls -la /mnt/expenses"),
        }]
    );
}

#[tokio::test]
async fn thinking_and_its_signature_go_back_unchanged() {
    let server = TestServer::start(vec![
        Reply::sse(fixture("anthropic_thinking.sse")),
        Reply::sse(fixture("anthropic_text.sse")),
    ])
    .await;
    let client = client(&server);
    let (result, deltas) = complete(&client, &request()).await;
    let response = result.unwrap();
    let thinking = "I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n1071 = 2 × 462 + 147\n462 = 3 × 147 + 21\n147 = 7 × 21 + 0\n\nSo GCD(1071, 462) = 21";
    let signature = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds7hT1qjEiHTp4Zr+GhAlWqhZoPKESJPXtUxhMSkHIjBaxSGFlMPbsFl1tfwb+0FDRIbIEZs=";
    let redacted = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB9URj2pLmN3kF8/dW5hR7xJ0aP3oOU2rY8r";
    assert_eq!(
        response.message.content,
        vec![
            ContentBlock::Thinking {
                thinking: thinking.into(),
                signature: signature.into()
            },
            ContentBlock::RedactedThinking {
                data: redacted.into()
            },
            ContentBlock::Text {
                text: "The greatest common divisor of 1071 and 462 is **21**.".into()
            },
        ]
    );
    assert_eq!(response.usage.output_tokens, 103);
    assert_eq!(
        deltas,
        vec![
            ModelDelta::Thinking(
                "I need to find the GCD of 1071 and 462 using the Euclidean algorithm.\n\n1071 = 2 × 462 + 147".into()
            ),
            ModelDelta::Thinking("\n462 = 3 × 147 + 21\n147 = 7 × 21 + 0\n\nSo GCD(1071, 462) = 21".into()),
            ModelDelta::Text("The greatest common divisor of 1071 and 462 is **21**.".into()),
        ]
    );

    let mut next = request();
    std::sync::Arc::make_mut(&mut next.messages).push(response.message);
    std::sync::Arc::make_mut(&mut next.messages).push(Message::user_text("Thanks."));
    client
        .complete(&next, None, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        server.requests()[1].body["messages"][1],
        json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": thinking, "signature": signature},
            {"type": "redacted_thinking", "data": redacted},
            {"type": "text", "text": "The greatest common divisor of 1071 and 462 is **21**."},
        ]})
    );
}

#[tokio::test]
async fn rate_limit_with_retry_after_zero_is_retried() {
    let server = TestServer::start(vec![
        Reply::json(
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
        )
        .header("retry-after", "0"),
        Reply::sse(fixture("anthropic_text.sse")),
    ])
    .await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    assert_eq!(result.unwrap().stop_reason, StopReason::EndTurn);
    assert_eq!(server.requests().len(), 2);
    assert_eq!(
        deltas[0],
        ModelDelta::Retrying {
            attempt: 2,
            wait: Duration::ZERO,
            reason: "the provider is busy: Number of request tokens has exceeded your per-minute rate limit".into(),
        }
    );
    assert_eq!(
        text_of(&deltas[1..]),
        "Hello! I read the receipts in /mnt/expenses — 12 of them, totalling €418.20."
    );
}

#[tokio::test]
async fn overload_that_outlasts_the_retries_is_busy() {
    let overloaded = Reply::json(
        529,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    let server = TestServer::start(vec![overloaded; 5]).await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    match result {
        Err(ModelError::Busy { attempts, message }) => {
            assert_eq!((attempts, message.as_str()), (5, "Overloaded"));
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 5);
    let attempts: Vec<u32> = deltas
        .iter()
        .map(|d| match d {
            ModelDelta::Retrying { attempt, .. } => *attempt,
            other => panic!("unexpected delta {other:?}"),
        })
        .collect();
    assert_eq!(attempts, vec![2, 3, 4, 5]);
}

#[tokio::test]
async fn server_errors_that_outlast_the_retries_are_server_errors() {
    let failing = Reply::json(
        500,
        r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
    );
    let server = TestServer::start(vec![failing; 5]).await;
    let (result, _) = complete(&client(&server), &request()).await;
    match result {
        Err(ModelError::Server { status, message }) => {
            assert_eq!((status, message.as_str()), (500, "Internal server error"));
        }
        other => panic!("expected Server, got {other:?}"),
    }
}

#[tokio::test]
async fn overloaded_error_event_mid_stream_is_retried() {
    let server = TestServer::start(vec![
        Reply::sse(fixture("anthropic_overloaded.sse")),
        Reply::sse(fixture("anthropic_text.sse")),
    ])
    .await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    assert_eq!(
        result.unwrap().message.text(),
        "Hello! I read the receipts in /mnt/expenses — 12 of them, totalling €418.20."
    );
    assert_eq!(server.requests().len(), 2);
    assert_eq!(deltas[0], ModelDelta::Text("Partial answer".into()));
    assert!(
        matches!(&deltas[1], ModelDelta::Retrying { attempt: 2, reason, .. } if reason == "the provider is busy: Overloaded"),
        "{:?}",
        deltas[1]
    );
}

#[tokio::test]
async fn a_stream_cut_mid_event_is_retried() {
    let text = fixture("anthropic_text.sse");
    // Part-way through the second text delta's JSON.
    let cut_at = text.find("! I read").unwrap();
    let prefix = text.as_bytes()[..cut_at].to_vec();
    let server = TestServer::start(vec![
        // A chunked body that never finishes: the transport reports an error.
        Reply::sse_parts(vec![Part::Bytes(prefix.clone()), Part::Cut]),
        // A close-delimited body that ends "cleanly" but before message_stop.
        Reply::sse_parts(vec![Part::Bytes(prefix), Part::Cut]).framing(Framing::Close),
        Reply::sse(text),
    ])
    .await;
    let (result, deltas) = complete(&client(&server), &request()).await;
    assert_eq!(result.unwrap().usage.output_tokens, 15);
    assert_eq!(server.requests().len(), 3);
    let reasons: Vec<&str> = deltas
        .iter()
        .filter_map(|d| match d {
            ModelDelta::Retrying { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{deltas:?}");
    assert!(
        reasons[0].starts_with("the connection dropped mid-response"),
        "{}",
        reasons[0]
    );
    assert_eq!(reasons[1], "the response stream ended before message_stop");
}

#[tokio::test]
async fn malformed_event_data_is_a_stream_error_and_not_retried() {
    let server = TestServer::start(vec![
        Reply::sse(fixture("anthropic_malformed.sse")),
        Reply::sse(fixture("anthropic_text.sse")),
    ])
    .await;
    let (result, _) = complete(&client(&server), &request()).await;
    match result {
        Err(ModelError::Stream(message)) => {
            assert!(
                message.starts_with("invalid JSON in a `content_block_delta` event"),
                "{message}"
            );
        }
        other => panic!("expected Stream, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_json_body_instead_of_a_stream_is_a_stream_error() {
    let server =
        TestServer::start(vec![Reply::json(200, r#"{"id":"msg_1","type":"message"}"#)]).await;
    let (result, _) = complete(&client(&server), &request()).await;
    assert!(
        matches!(&result, Err(ModelError::Stream(m)) if m.starts_with("expected an event stream but got `application/json`")),
        "{result:?}"
    );
}

#[tokio::test]
async fn unauthorized_is_an_auth_error_with_the_servers_message() {
    let server = TestServer::start(vec![Reply::json(
        401,
        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#,
    )])
    .await;
    let (result, _) = complete(&client(&server), &request()).await;
    assert!(
        matches!(&result, Err(ModelError::Auth(m)) if m == "invalid x-api-key"),
        "{result:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn prompt_too_long_is_context_too_long() {
    let server = TestServer::start(vec![Reply::json(
        400,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215733 tokens > 200000 maximum"}}"#,
    )])
    .await;
    let (result, _) = complete(&client(&server), &request()).await;
    assert!(
        matches!(&result, Err(ModelError::ContextTooLong(m)) if m == "prompt is too long: 215733 tokens > 200000 maximum"),
        "{result:?}"
    );
}

#[tokio::test]
async fn other_bad_requests_are_invalid_requests() {
    let server = TestServer::start(vec![Reply::json(
        400,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages: roles must alternate between \"user\" and \"assistant\""}}"#,
    )])
    .await;
    let (result, _) = complete(&client(&server), &request()).await;
    assert!(
        matches!(&result, Err(ModelError::InvalidRequest(m)) if m == "messages: roles must alternate between \"user\" and \"assistant\" (HTTP 400)"),
        "{result:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn cancelling_during_a_slow_stream_returns_promptly() {
    let text = fixture("anthropic_text.sse");
    let pause_at = text.find("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"! I").unwrap();
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
        while let Some(delta) = rx.recv().await {
            if matches!(delta, ModelDelta::Text(_)) {
                canceller.cancel();
                return delta;
            }
        }
        panic!("the stream ended without text");
    };
    // The timeout is a guard against hanging, not a measurement.
    let (result, first) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(client.complete(&req, Some(&tx), &cancel), watch)
    })
    .await
    .expect("cancellation should end the call promptly");
    assert_eq!(first, ModelDelta::Text("Hello".into()));
    assert!(matches!(result, Err(ModelError::Cancelled)), "{result:?}");
}

#[tokio::test]
async fn cancelling_during_a_retry_wait_returns_promptly() {
    let server = TestServer::start(vec![
        Reply::json(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .header("retry-after", "50"),
    ])
    .await;
    let client = client(&server);
    let req = request();
    let cancel = CancellationToken::new();
    let (tx, mut rx) = delta_channel();
    let canceller = cancel.clone();
    let watch = async move {
        let delta = rx.recv().await;
        canceller.cancel();
        delta
    };
    let (result, first) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(client.complete(&req, Some(&tx), &cancel), watch)
    })
    .await
    .expect("cancellation should end the wait promptly");
    assert!(
        matches!(first, Some(ModelDelta::Retrying { attempt: 2, wait, .. }) if wait == Duration::from_secs(50)),
        "{first:?}"
    );
    assert!(matches!(result, Err(ModelError::Cancelled)), "{result:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_network_error_after_retries() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = AnthropicConfig::new("claude-sonnet-4-5");
    config.api_key = Some("k".into());
    config.base_url = format!("http://127.0.0.1:{port}");
    config.retry = fast_retries();
    config.retry.max_retries = 1;
    let client = AnthropicClient::new(config).unwrap();
    let (result, deltas) = complete(&client, &request()).await;
    assert!(matches!(result, Err(ModelError::Network(_))), "{result:?}");
    assert_eq!(deltas.len(), 1, "one retry announced: {deltas:?}");
}

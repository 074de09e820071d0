//! The replay model plays a recorded transcript's model turns back, in
//! order, per agent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;

use cubicle_models::provider::{ProviderSpec, resolve};
use cubicle_models::{ModelClient, ModelDelta, ModelError, ModelRequest, ReplayModel};
use cubicle_protocol::conversation::{ContentBlock, Message, StopReason, Usage};
use cubicle_protocol::transcript::{Entry, Record};
use pretty_assertions::assert_eq;
use serde_json::json;
use support::{delta_channel, drain, fixture};
use tokio_util::sync::CancellationToken;

fn ask(agent: Option<&str>) -> ModelRequest {
    ModelRequest {
        system: String::new(),
        messages: vec![Message::user_text("go")].into(),
        tools: vec![],
        max_tokens: 100,
        agent: agent.map(str::to_owned),
    }
}

fn fixture_path() -> std::path::PathBuf {
    [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "replay_session.jsonl",
    ]
    .iter()
    .collect()
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[tokio::test]
async fn plays_each_agents_turns_in_order() {
    let model = ReplayModel::open(fixture_path()).unwrap();
    assert_eq!(
        (model.provider(), model.model()),
        ("replay", "anthropic:claude-sonnet-4-5")
    );
    assert!(model.warnings().is_empty());
    let cancel = CancellationToken::new();
    let (tx, mut rx) = delta_channel();

    let first = model
        .complete(&ask(None), Some(&tx), &cancel)
        .await
        .unwrap();
    assert_eq!(first.stop_reason, StopReason::ToolUse);
    assert_eq!(
        first.usage,
        Usage {
            input_tokens: 12,
            output_tokens: 41,
            cache_creation_input_tokens: 2048,
            cache_read_input_tokens: 0
        }
    );
    assert_eq!(
        first.message.content[2],
        ContentBlock::ToolUse {
            id: "toolu_01".into(),
            name: "bash".into(),
            input: json!({"command": "ls /mnt/Expenses"})
        }
    );
    assert_eq!(
        drain(&mut rx),
        vec![
            ModelDelta::Thinking("List the folder first.".into()),
            ModelDelta::Text("I'll list the receipts.".into()),
            ModelDelta::ToolUseStart {
                id: "toolu_01".into(),
                name: "bash".into()
            },
        ]
    );

    let sub = model
        .complete(&ask(Some("reader-1")), Some(&tx), &cancel)
        .await
        .unwrap();
    assert_eq!(
        sub.message,
        Message::assistant_text("Both are taxi receipts: €18.50 and €23.50.")
    );
    assert_eq!(
        drain(&mut rx),
        vec![ModelDelta::Text(
            "Both are taxi receipts: €18.50 and €23.50.".into()
        )]
    );

    let last = model.complete(&ask(None), None, &cancel).await.unwrap();
    assert_eq!(
        last.message,
        Message::assistant_text("Two taxi receipts, €42.00 in total.")
    );
    assert_eq!(last.usage.cache_read_input_tokens, 2048);

    let main_done = model.complete(&ask(None), None, &cancel).await.unwrap_err();
    assert!(
        matches!(&main_done, ModelError::Exhausted(_)),
        "{main_done:?}"
    );
    assert_eq!(
        main_done.to_string(),
        "the recording has no more model turns for the main agent"
    );
    let sub_done = model
        .complete(&ask(Some("reader-1")), None, &cancel)
        .await
        .unwrap_err();
    assert_eq!(
        sub_done.to_string(),
        "the recording has no more model turns for sub-agent reader-1"
    );
}

#[tokio::test]
async fn a_torn_last_line_is_skipped_with_a_warning() {
    let text = format!(
        "{}{}",
        fixture("replay_session.jsonl"),
        r#"{"seq":9,"ts":"2026-11-27T10:00:09Z","type":"model_resp"#
    );
    let file = write_temp(&text);
    let model = ReplayModel::open(file.path()).unwrap();
    assert_eq!(model.warnings().len(), 1);
    assert!(
        model.warnings()[0].starts_with("skipped the torn last line 10:"),
        "{:?}",
        model.warnings()
    );
    assert_eq!(model.remaining(None), 2);
    assert_eq!(model.remaining(Some("reader-1")), 1);
}

#[test]
fn a_bad_line_elsewhere_is_an_error_naming_it() {
    let mut lines: Vec<String> = fixture("replay_session.jsonl")
        .lines()
        .map(str::to_owned)
        .collect();
    lines[2] = "{not json".into();
    let file = write_temp(&lines.join("\n"));
    let err = ReplayModel::open(file.path()).unwrap_err();
    assert!(matches!(err, ModelError::Config(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("is not valid: line 3:"), "{message}");
}

#[test]
fn a_missing_or_headerless_file_is_an_error() {
    let err = ReplayModel::open("/nonexistent/transcript.jsonl").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read the transcript /nonexistent/transcript.jsonl"),
        "{err}"
    );
    let file = write_temp("{\"seq\":1,\"ts\":\"t\",\"type\":\"interrupted\",\"reason\":\"x\"}\n");
    let err = ReplayModel::open(file.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("line 1 is not a transcript header"),
        "{err}"
    );
}

#[tokio::test]
async fn entries_can_be_given_directly() {
    let entry = |seq, agent: Option<&str>, text: &str| Entry {
        seq,
        ts: "2026-11-27T10:00:00Z".into(),
        agent: agent.map(str::to_owned),
        record: Record::ModelResponse {
            message: Message::assistant_text(text),
            usage: Usage::default(),
            stop_reason: StopReason::EndTurn,
            model: "openai:qwen".into(),
            duration_ms: 1,
        },
    };
    let model = ReplayModel::from_entries(
        "openai:qwen",
        vec![
            entry(1, None, "one"),
            entry(2, Some("a"), "sub"),
            entry(3, None, "two"),
        ],
    );
    let cancel = CancellationToken::new();
    let mut texts = Vec::new();
    for agent in [None, Some("a"), None] {
        texts.push(
            model
                .complete(&ask(agent), None, &cancel)
                .await
                .unwrap()
                .message
                .text(),
        );
    }
    assert_eq!(texts, vec!["one", "sub", "two"]);
}

#[tokio::test]
async fn a_cancelled_call_returns_cancelled() {
    let model = ReplayModel::open(fixture_path()).unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = model.complete(&ask(None), None, &cancel).await.unwrap_err();
    assert!(matches!(err, ModelError::Cancelled), "{err:?}");
    assert_eq!(
        model.remaining(None),
        2,
        "a cancelled call consumes nothing"
    );
}

#[tokio::test]
async fn the_replay_provider_is_resolved_from_a_path() {
    let spec = ProviderSpec {
        replay: Some(fixture_path()),
        ..Default::default()
    };
    let model = resolve(&spec, &|_| None).unwrap();
    assert_eq!(
        (model.provider(), model.model()),
        ("replay", "anthropic:claude-sonnet-4-5")
    );
    let first = model
        .complete(&ask(None), None, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(first.message.text(), "I'll list the receipts.");
}

//! The scripted model: steps, functions, hanging until cancelled, and the
//! requests it saw.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use cubicle_models::scripted::SCRIPTED_USAGE;
use cubicle_models::{ModelClient, ModelDelta, ModelError, ModelRequest, ScriptedModel, Step};
use cubicle_protocol::conversation::{ContentBlock, Message, Role, StopReason, Usage};
use pretty_assertions::assert_eq;
use serde_json::json;
use support::{delta_channel, drain};
use tokio_util::sync::CancellationToken;

fn ask(text: &str) -> ModelRequest {
    ModelRequest {
        system: "sys".into(),
        messages: vec![Message::user_text(text)].into(),
        tools: vec![],
        max_tokens: 100,
        agent: None,
    }
}

#[tokio::test]
async fn steps_play_in_order_and_requests_are_recorded() {
    let model = ScriptedModel::new([
        Step::Respond(ScriptedModel::tool_use_response(
            "t1",
            "bash",
            json!({"command": "ls"}),
        )),
        Step::Fail(ModelError::Busy {
            attempts: 5,
            message: "Overloaded".into(),
        }),
        Step::with(|req| {
            Ok(ScriptedModel::text_response(format!(
                "you said {}",
                req.messages[0].text()
            )))
        }),
    ]);
    let cancel = CancellationToken::new();
    let (tx, mut rx) = delta_channel();

    let first = model
        .complete(&ask("one"), Some(&tx), &cancel)
        .await
        .unwrap();
    assert_eq!(
        first.message,
        Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: "t1".into(),
                name: "bash".into(),
                input: json!({"command": "ls"})
            }],
        }
    );
    assert_eq!(
        (first.stop_reason, first.usage),
        (StopReason::ToolUse, SCRIPTED_USAGE)
    );
    assert_eq!(
        drain(&mut rx),
        vec![ModelDelta::ToolUseStart {
            id: "t1".into(),
            name: "bash".into()
        }]
    );

    let second = model
        .complete(&ask("two"), Some(&tx), &cancel)
        .await
        .unwrap_err();
    assert!(
        matches!(second, ModelError::Busy { attempts: 5, .. }),
        "{second:?}"
    );

    let third = model
        .complete(&ask("three"), Some(&tx), &cancel)
        .await
        .unwrap();
    assert_eq!(third.message, Message::assistant_text("you said three"));
    assert_eq!(
        drain(&mut rx),
        vec![ModelDelta::Text("you said three".into())]
    );

    let fourth = model
        .complete(&ask("four"), None, &cancel)
        .await
        .unwrap_err();
    assert_eq!(fourth.to_string(), "the script has no step for call 4");

    let seen: Vec<String> = model
        .requests()
        .iter()
        .map(|r| r.messages[0].text())
        .collect();
    assert_eq!(seen, vec!["one", "two", "three", "four"]);
    assert_eq!(model.calls(), 4);
}

#[tokio::test]
async fn from_fn_scripts_are_unbounded_and_see_the_call_index() {
    let model = ScriptedModel::from_fn(|req: &ModelRequest, i| {
        if i % 2 == 0 {
            Ok(ScriptedModel::text_response(format!(
                "{i}:{}",
                req.messages[0].text()
            )))
        } else {
            Err(ModelError::Network("flaky".into()))
        }
    })
    .with_model("bench-model")
    .with_context_window(8_000);
    assert_eq!(
        (model.provider(), model.model(), model.context_window()),
        ("scripted", "bench-model", 8_000)
    );
    let cancel = CancellationToken::new();
    let mut outcomes = Vec::new();
    for i in 0..6 {
        outcomes.push(
            match model.complete(&ask(&format!("q{i}")), None, &cancel).await {
                Ok(r) => r.message.text(),
                Err(e) => e.to_string(),
            },
        );
    }
    assert_eq!(
        outcomes,
        vec![
            "0:q0",
            "could not reach the model provider: flaky",
            "2:q2",
            "could not reach the model provider: flaky",
            "4:q4",
            "could not reach the model provider: flaky",
        ]
    );
}

#[tokio::test]
async fn hang_waits_until_cancelled() {
    let model = ScriptedModel::new([Step::Hang]);
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    let req = ask("wait");
    let (result, ()) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(model.complete(&req, None, &cancel), async move {
            // Let the call reach its wait first.
            tokio::time::sleep(Duration::from_millis(20)).await;
            canceller.cancel();
        })
    })
    .await
    .expect("a hanging step should end once cancelled");
    assert!(matches!(result, Err(ModelError::Cancelled)), "{result:?}");
    assert_eq!(model.requests(), vec![req]);
}

#[tokio::test]
async fn multi_tool_responses_and_custom_usage() {
    let usage = Usage {
        input_tokens: 7,
        output_tokens: 3,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 100,
    };
    let response = ScriptedModel::tool_uses_response(
        "Two things at once.",
        [
            ("a", "read_file", json!({"path": "/mnt/x"})),
            ("b", "bash", json!({"command": "pwd"})),
        ],
    )
    .with_usage(usage);
    let model = ScriptedModel::from_responses([response.clone()]);
    let (tx, mut rx) = delta_channel();
    let got = model
        .complete(&ask("go"), Some(&tx), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(got, response);
    assert_eq!(got.usage, usage);
    assert_eq!(
        drain(&mut rx),
        vec![
            ModelDelta::Text("Two things at once.".into()),
            ModelDelta::ToolUseStart {
                id: "a".into(),
                name: "read_file".into()
            },
            ModelDelta::ToolUseStart {
                id: "b".into(),
                name: "bash".into()
            },
        ]
    );
}

#[tokio::test]
async fn scripts_can_be_lists_of_results_with_a_hang_marker() {
    let model = ScriptedModel::new(vec![
        Ok(ScriptedModel::hang_marker()),
        Ok(ScriptedModel::text_response("after")),
        Err(ModelError::Auth("revoked".into())),
    ]);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let hung = model
        .complete(&ask("one"), None, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(hung, ModelError::Cancelled), "{hung:?}");
    let live = CancellationToken::new();
    let after = model.complete(&ask("two"), None, &live).await.unwrap();
    assert_eq!(after.message.text(), "after");
    let err = model
        .complete(&ask("three"), None, &live)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "authentication failed: revoked");
}

//! Session hooks at every point of the agent loop: a scripted model, a real
//! `host` cubicle, and a fake [`SessionHooks`] whose verdicts each test
//! chooses. Each test asserts on what the model was sent, what ran, what the
//! front end saw and what the transcript holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cubicle_agent::{
    HookPermission, HookPoint, HookVerdict, SessionConfig, SessionHandle, SessionHooks,
    SessionParams, Transcript, TranscriptWriter,
};
use cubicle_models::scripted::ScriptedModel;
use cubicle_protocol::conversation::{ContentBlock, Message, ToolResultContent, Usage};
use cubicle_protocol::events::{Event, EventMsg, Op, TurnEndReason};
use cubicle_protocol::transcript::{Header, Record, TRANSCRIPT_FORMAT, TRANSCRIPT_VERSION};
use cubicle_sandbox::Computer;
use cubicle_sandbox::host::{HostComputer, HostConfig};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

type Decide = dyn Fn(&str, &HookPoint<'_>) -> HookVerdict + Send + Sync;

/// Hooks that log each point they are called at (`Event` or
/// `Event:tool`) and answer with `decide`.
struct FakeHooks {
    seen: Mutex<Vec<String>>,
    decide: Box<Decide>,
}

impl std::fmt::Debug for FakeHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeHooks")
    }
}

impl FakeHooks {
    fn new(
        decide: impl Fn(&str, &HookPoint<'_>) -> HookVerdict + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            seen: Mutex::default(),
            decide: Box::new(decide),
        })
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn key(point: &HookPoint<'_>) -> String {
    match point {
        HookPoint::SessionStart { source } => format!("SessionStart:{source}"),
        HookPoint::UserPromptSubmit { .. } => "UserPromptSubmit".into(),
        HookPoint::PreToolUse { tool, .. } => format!("PreToolUse:{tool}"),
        HookPoint::PostToolUse { tool, .. } => format!("PostToolUse:{tool}"),
        HookPoint::Stop { stop_hook_active } => format!("Stop:{stop_hook_active}"),
        HookPoint::SubagentStop { .. } => "SubagentStop".into(),
        HookPoint::PreCompact { trigger } => format!("PreCompact:{trigger}"),
        HookPoint::SessionEnd { .. } => "SessionEnd".into(),
    }
}

#[async_trait]
impl SessionHooks for FakeHooks {
    async fn run(&self, _agent: Option<&str>, point: HookPoint<'_>) -> HookVerdict {
        let k = key(&point);
        self.seen.lock().unwrap().push(k.clone());
        (self.decide)(&k, &point)
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    transcript: PathBuf,
    computer: Arc<dyn Computer>,
    handle: SessionHandle,
}

async fn start(model: Arc<ScriptedModel>, hooks: Arc<FakeHooks>, interactive: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let transcript = dir.path().join("t.jsonl");
    let header = Header {
        format: TRANSCRIPT_FORMAT.into(),
        version: TRANSCRIPT_VERSION,
        session_id: "test".into(),
        created_at: "2026-11-27T00:00:00Z".into(),
        cubicle_version: "test".into(),
        task: Some("test".into()),
        model: "scripted:test".into(),
        backend: "host".into(),
        grants: vec![],
        workspace: workspace.display().to_string(),
        label: None,
    };
    let writer = Arc::new(TranscriptWriter::create(&transcript, &header).unwrap());
    let guest = cubicle_sandbox::locate::GuestProgram::locate()
        .expect("cubicle-guest is not built: run `cargo build -p cubicle-guest`");
    let computer: Arc<dyn Computer> = Arc::new(
        HostComputer::start(HostConfig {
            grants: vec![],
            workspace: workspace.clone(),
            guest,
            env: BTreeMap::new(),
            egress: None,
            egress_listen: None,
        })
        .await
        .unwrap(),
    );
    let handle = cubicle_agent::spawn(SessionParams {
        id: "test".into(),
        model,
        computer: computer.clone(),
        transcript: writer,
        tools: cubicle_tools::computer_tools(),
        gate: Arc::new(cubicle_agent::AllowAll),
        config: SessionConfig {
            interactive,
            hooks: Some(hooks),
            ..SessionConfig::default()
        },
        history: Vec::new(),
        audit: None,
    });
    Harness {
        _dir: dir,
        workspace,
        transcript,
        computer,
        handle,
    }
}

impl Harness {
    async fn turn(&mut self, text: &str) -> (Vec<EventMsg>, TurnEndReason) {
        self.handle
            .ops
            .send(Op::UserMessage { text: text.into() })
            .unwrap();
        let mut events = Vec::new();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(60), self.handle.events.recv())
                .await
                .expect("the turn did not end within 60 s")
                .expect("the session ended early");
            if let Event::TurnEnded { reason, .. } = &ev.event {
                let reason = reason.clone();
                events.push(ev);
                return (events, reason);
            }
            events.push(ev);
        }
    }

    fn records(&self) -> Vec<Record> {
        Transcript::load(&self.transcript)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.record)
            .collect()
    }

    async fn shutdown(mut self) {
        let _ = self.handle.ops.send(Op::Shutdown);
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_secs(10), self.handle.events.recv()).await
        {}
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle.done).await;
        self.computer.stop().await.unwrap();
    }
}

/// The tool results in the model's latest request, by call id.
fn results_seen(model: &ScriptedModel) -> BTreeMap<String, (String, bool)> {
    let reqs = model.requests();
    let mut out = BTreeMap::new();
    for m in reqs.last().expect("no request").messages.iter() {
        for b in &m.content {
            if let ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } = b
            {
                let text = content
                    .iter()
                    .map(|c| match c {
                        ToolResultContent::Text { text } => text.clone(),
                        ToolResultContent::Image { .. } => "[image]".into(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                out.insert(tool_use_id.clone(), (text, *is_error));
            }
        }
    }
    out
}

fn bash_then_done(command: &str) -> Arc<ScriptedModel> {
    Arc::new(ScriptedModel::from_responses([
        ScriptedModel::tool_use_response("c1", "bash", json!({ "command": command })),
        ScriptedModel::text_response("done"),
    ]))
}

fn notices(events: &[EventMsg]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Notice { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn session_start_and_prompt_context_go_to_the_model_and_every_point_runs() {
    let model = bash_then_done("echo hi");
    let hooks = FakeHooks::new(|k, _| HookVerdict {
        additional_context: match k {
            "SessionStart:startup" => vec!["the repo uses tabs".into()],
            "UserPromptSubmit" => vec!["today is a holiday".into()],
            _ => vec![],
        },
        ..HookVerdict::default()
    });
    let mut h = start(model.clone(), hooks.clone(), true).await;
    let (_, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    let first = &model.requests()[0].messages[0];
    let texts: Vec<String> = first
        .content
        .iter()
        .map(|b| match b {
            ContentBlock::Text { text } => text.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            "go".to_owned(),
            "<hook-context>\nthe repo uses tabs\n</hook-context>".to_owned(),
            "<hook-context>\ntoday is a holiday\n</hook-context>".to_owned(),
        ]
    );
    // The context is recorded, so a resumed session has it too.
    let recorded = h.records().into_iter().find_map(|r| match r {
        Record::UserMessage { message } => Some(message),
        _ => None,
    });
    assert_eq!(recorded.map(|m| m.content.len()), Some(3));
    let hooks_seen = hooks.clone();
    h.shutdown().await;
    assert_eq!(
        hooks_seen.seen(),
        vec![
            "SessionStart:startup",
            "UserPromptSubmit",
            "PreToolUse:bash",
            "PostToolUse:bash",
            "Stop:false",
            "SessionEnd",
        ]
    );
}

#[tokio::test]
async fn a_blocked_prompt_never_reaches_the_model() {
    let model = Arc::new(ScriptedModel::from_responses([
        ScriptedModel::text_response("should not be called"),
    ]));
    let hooks = FakeHooks::new(|k, _| HookVerdict {
        blocked: (k == "UserPromptSubmit").then(|| "no secrets in prompts".to_owned()),
        ..HookVerdict::default()
    });
    let mut h = start(model.clone(), hooks, true).await;
    let (_, reason) = h.turn("my password is hunter2").await;
    assert_eq!(
        reason,
        TurnEndReason::Error {
            message: "a hook blocked the prompt: no secrets in prompts".into()
        }
    );
    assert_eq!(model.calls(), 0);
    assert!(
        !h.records()
            .iter()
            .any(|r| matches!(r, Record::UserMessage { .. })),
        "a blocked prompt is not recorded as sent"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn pre_tool_use_block_becomes_an_error_result_and_the_tool_does_not_run() {
    let model = bash_then_done("echo x > made.txt");
    let hooks = FakeHooks::new(|k, _| HookVerdict {
        blocked: (k == "PreToolUse:bash").then(|| "no writes today".to_owned()),
        ..HookVerdict::default()
    });
    let mut h = start(model.clone(), hooks.clone(), true).await;
    let (_, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert_eq!(
        results_seen(&model)["c1"],
        ("blocked by a hook: no writes today".to_owned(), true)
    );
    assert!(!h.workspace.join("made.txt").exists());
    assert!(h.records().iter().any(|r| matches!(
        r,
        Record::Decision { allowed: false, reason, .. } if reason.contains("no writes today")
    )));
    assert!(!hooks.seen().contains(&"PostToolUse:bash".to_owned()));
    h.shutdown().await;
}

#[tokio::test]
async fn pre_tool_use_updated_input_replaces_the_arguments() {
    let model = bash_then_done("echo original");
    let hooks = FakeHooks::new(|k, point| HookVerdict {
        updated_input: match (k, point) {
            ("PreToolUse:bash", HookPoint::PreToolUse { input, .. }) => {
                assert_eq!(input["command"], "echo original");
                Some(json!({"command": "echo rewritten"}))
            }
            _ => None,
        },
        ..HookVerdict::default()
    });
    let mut h = start(model.clone(), hooks, true).await;
    h.turn("go").await;
    let (text, is_error) = &results_seen(&model)["c1"];
    assert!(!is_error, "{text}");
    assert!(text.contains("rewritten"), "{text}");
    assert!(!text.contains("original"), "{text}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_hook_deny_wins_over_the_gate_and_ask_needs_the_person() {
    let model = Arc::new(ScriptedModel::from_responses([
        ScriptedModel::tool_uses_response(
            "",
            [
                ("d", "bash", json!({"command": "echo deny > d.txt"})),
                ("a", "bash", json!({"command": "echo ask > a.txt"})),
            ],
        ),
        ScriptedModel::text_response("done"),
    ]));
    let hooks = FakeHooks::new(|_, point| HookVerdict {
        permission: match point {
            HookPoint::PreToolUse { call_id: "d", .. } => Some(HookPermission::Deny),
            HookPoint::PreToolUse { call_id: "a", .. } => Some(HookPermission::Ask),
            _ => None,
        },
        ..HookVerdict::default()
    });
    // Nobody can answer: an ask becomes a refusal, so both calls fail.
    let mut h = start(model.clone(), hooks, false).await;
    h.turn("go").await;
    let seen = results_seen(&model);
    assert_eq!(
        seen["d"],
        ("blocked by a hook: denied by a hook".to_owned(), true)
    );
    assert!(seen["a"].1);
    assert!(
        seen["a"].0.contains("needs the person's approval"),
        "{}",
        seen["a"].0
    );
    assert!(!h.workspace.join("d.txt").exists());
    assert!(!h.workspace.join("a.txt").exists());
    h.shutdown().await;
}

#[tokio::test]
async fn post_tool_use_context_is_added_to_the_result() {
    let model = bash_then_done("echo ran");
    let hooks = FakeHooks::new(|_, point| HookVerdict {
        additional_context: match point {
            HookPoint::PostToolUse {
                response, is_error, ..
            } => {
                assert!(response.contains("ran"));
                assert!(!is_error);
                vec!["lint: 2 warnings".into()]
            }
            _ => vec![],
        },
        ..HookVerdict::default()
    });
    let mut h = start(model.clone(), hooks, true).await;
    h.turn("go").await;
    let (text, _) = &results_seen(&model)["c1"];
    assert!(text.contains("ran"), "{text}");
    assert!(
        text.ends_with("Context from a hook: lint: 2 warnings"),
        "{text}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_stop_block_goes_on_once_with_the_reason() {
    let model = Arc::new(ScriptedModel::from_responses([
        ScriptedModel::text_response("first answer"),
        ScriptedModel::text_response("after the tests"),
    ]));
    let hooks = FakeHooks::new(|k, _| HookVerdict {
        blocked: (k == "Stop:false").then(|| "run the tests first".to_owned()),
        ..HookVerdict::default()
    });
    let mut h = start(model.clone(), hooks.clone(), true).await;
    let (_, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert_eq!(model.calls(), 2);
    let last: Vec<Message> = model.requests()[1].messages.to_vec();
    assert_eq!(
        last.last().unwrap().text(),
        "A hook stopped you from ending here: run the tests first"
    );
    assert_eq!(
        hooks
            .seen()
            .into_iter()
            .filter(|k| k.starts_with("Stop"))
            .collect::<Vec<_>>(),
        vec!["Stop:false", "Stop:true"]
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_stop_hook_that_always_blocks_cannot_loop_forever() {
    let model = Arc::new(ScriptedModel::from_fn(|_, i| {
        Ok(ScriptedModel::text_response(format!("answer {i}")))
    }));
    let hooks = FakeHooks::new(|k, _| HookVerdict {
        blocked: k.starts_with("Stop").then(|| "again".to_owned()),
        ..HookVerdict::default()
    });
    let mut h = start(model.clone(), hooks, true).await;
    let (events, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert_eq!(model.calls(), 4, "the first answer and three continuations");
    assert!(
        notices(&events)
            .iter()
            .any(|n| n.contains("stops anyway after going on 3 times"))
    );
    h.shutdown().await;
}

#[tokio::test]
async fn hook_errors_and_messages_are_shown_and_errors_recorded() {
    let model = bash_then_done("echo hi");
    let hooks = FakeHooks::new(|k, _| match k {
        "PreToolUse:bash" => HookVerdict {
            errors: vec!["hook `fmt.sh` (plugin fmt) failed with exit code 1".into()],
            messages: vec!["formatting is on".into()],
            ..HookVerdict::default()
        },
        _ => HookVerdict::default(),
    });
    let mut h = start(model.clone(), hooks, true).await;
    let (events, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    let shown = notices(&events);
    assert!(shown.contains(&"formatting is on".to_owned()), "{shown:?}");
    assert!(
        shown.contains(&"hook `fmt.sh` (plugin fmt) failed with exit code 1".to_owned()),
        "{shown:?}"
    );
    // A failing hook does not stop the call.
    assert!(!results_seen(&model)["c1"].1);
    assert!(h.records().iter().any(|r| matches!(
        r,
        Record::Error { message } if message == "hook: hook `fmt.sh` (plugin fmt) failed with exit code 1"
    )));
    h.shutdown().await;
}

#[tokio::test]
async fn pre_compact_runs_and_its_context_goes_into_the_summary_request() {
    let model = Arc::new(
        ScriptedModel::from_fn(|req, i| {
            let last = req.messages.last().unwrap().text();
            Ok(if last.contains("Summarise this conversation") {
                ScriptedModel::text_response("SUMMARY")
            } else if i == 0 {
                let mut r =
                    ScriptedModel::tool_use_response("w", "bash", json!({"command": "echo hi"}));
                r.usage = Usage {
                    input_tokens: 9_000,
                    output_tokens: 10,
                    ..Usage::default()
                };
                r
            } else {
                ScriptedModel::text_response("finished")
            })
        })
        .with_context_window(10_000),
    );
    let hooks = FakeHooks::new(|k, _| HookVerdict {
        additional_context: match k {
            "PreCompact:auto" => vec!["keep the file names".into()],
            _ => vec![],
        },
        ..HookVerdict::default()
    });
    let mut h = start(model.clone(), hooks.clone(), true).await;
    let (_, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert!(hooks.seen().contains(&"PreCompact:auto".to_owned()));
    let summary_request = model
        .requests()
        .into_iter()
        .find(|r| {
            r.messages
                .last()
                .is_some_and(|m| m.text().contains("Summarise this conversation"))
        })
        .expect("no compaction request");
    let instruction: Value = json!(summary_request.messages.last().unwrap().text());
    assert!(
        instruction
            .as_str()
            .unwrap()
            .ends_with("keep the file names"),
        "{instruction}"
    );
    h.shutdown().await;
}

/// The transcript's `Interrupted` reasons.
fn interruptions(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Interrupted { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn continue_false_before_a_tool_stops_the_turn_and_the_tool_does_not_run() {
    let model = Arc::new(ScriptedModel::from_responses([
        ScriptedModel::tool_use_response("c1", "bash", json!({ "command": "touch made.txt" })),
        ScriptedModel::text_response("should not be called"),
        ScriptedModel::text_response("second turn"),
    ]));
    let hooks = FakeHooks::new(|k, _| HookVerdict {
        stop: (k == "PreToolUse:bash").then(|| "the build is red".to_owned()),
        // A stop wins over an allow.
        permission: Some(HookPermission::Allow),
        ..HookVerdict::default()
    });
    let mut h = start(model.clone(), hooks.clone(), true).await;
    let (events, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert_eq!(model.calls(), 1, "the model is not called after the stop");
    assert!(!h.workspace.join("made.txt").exists());
    assert!(
        notices(&events).contains(&"a hook stopped the agent: the build is red".to_owned()),
        "{:?}",
        notices(&events)
    );
    let records = h.records();
    assert_eq!(
        interruptions(&records),
        vec!["stopped by a hook: the build is red".to_owned()]
    );
    assert!(records.iter().any(|r| matches!(
        r,
        Record::ToolResult { call_id, is_error: true, content, .. }
            if call_id == "c1" && format!("{content:?}").contains("stopped by a hook")
    )));
    assert!(!hooks.seen().contains(&"PostToolUse:bash".to_owned()));
    // The stop ends that turn only: the person can go on.
    let (_, reason) = h.turn("again").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert_eq!(model.calls(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn continue_false_on_the_prompt_or_at_session_start_never_reaches_the_model() {
    for point in ["UserPromptSubmit", "SessionStart:startup"] {
        let model = Arc::new(ScriptedModel::from_responses([
            ScriptedModel::text_response("should not be called"),
        ]));
        let hooks = FakeHooks::new(move |k, _| HookVerdict {
            stop: (k == point).then(|| "outside office hours".to_owned()),
            ..HookVerdict::default()
        });
        let mut h = start(model.clone(), hooks, true).await;
        let (_, reason) = h.turn("go").await;
        assert_eq!(reason, TurnEndReason::Done, "{point}");
        assert_eq!(model.calls(), 0, "{point}");
        assert_eq!(
            interruptions(&h.records()),
            vec!["stopped by a hook: outside office hours".to_owned()],
            "{point}"
        );
        h.shutdown().await;
    }
}

#[tokio::test]
async fn continue_false_after_a_tool_ends_the_turn_with_its_result_kept() {
    let model = bash_then_done("echo ran > ran.txt");
    let hooks = FakeHooks::new(|k, _| HookVerdict {
        stop: (k == "PostToolUse:bash").then(|| "enough for today".to_owned()),
        ..HookVerdict::default()
    });
    let mut h = start(model.clone(), hooks.clone(), true).await;
    let (_, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert_eq!(model.calls(), 1);
    assert!(h.workspace.join("ran.txt").exists());
    assert_eq!(
        interruptions(&h.records()),
        vec!["stopped by a hook: enough for today".to_owned()]
    );
    assert!(!hooks.seen().iter().any(|k| k.starts_with("Stop")));
    h.shutdown().await;
}

//! The agent loop end to end: a scripted model driving real tools in a real
//! `host` cubicle (the `cubicle-guest` binary over pipes), with the transcript
//! on disk. Each test asserts on what the model was sent, what the front end
//! saw, and what the transcript holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cubicle_agent::{
    GateDecision, PermissionGate, SessionConfig, SessionHandle, SessionParams, Transcript,
    TranscriptWriter,
};
use cubicle_models::scripted::ScriptedModel;
use cubicle_models::{ModelError, ModelResponse};
use cubicle_protocol::conversation::{
    ContentBlock, Message, Role, StopReason, ToolResultContent, Usage,
};
use cubicle_protocol::events::{Answer, ApprovalDecision, Event, EventMsg, Op, TurnEndReason};
use cubicle_protocol::transcript::{Header, Record, TRANSCRIPT_FORMAT, TRANSCRIPT_VERSION};
use cubicle_sandbox::Computer;
use cubicle_sandbox::host::{HostComputer, HostConfig};
use serde_json::{Value, json};

struct Harness {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    transcript: PathBuf,
    computer: Arc<dyn Computer>,
    handle: SessionHandle,
}

async fn computer(workspace: PathBuf) -> Arc<dyn Computer> {
    let guest = cubicle_sandbox::locate::GuestProgram::locate()
        .expect("cubicle-guest is not built: run `cargo build -p cubicle-guest`");
    Arc::new(
        HostComputer::start(HostConfig {
            grants: vec![],
            workspace,
            guest,
            env: BTreeMap::new(),
            egress: None,
            egress_listen: None,
        })
        .await
        .unwrap(),
    )
}

fn header(workspace: &std::path::Path) -> Header {
    Header {
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
    }
}

async fn start_with(
    model: Arc<ScriptedModel>,
    config: SessionConfig,
    gate: Arc<dyn PermissionGate>,
    history: Vec<Message>,
) -> Harness {
    start_full(model, config, gate, history, None).await
}

async fn start_full(
    model: Arc<ScriptedModel>,
    config: SessionConfig,
    gate: Arc<dyn PermissionGate>,
    history: Vec<Message>,
    audit: Option<Arc<cubicle_audit::AuditLog>>,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let transcript = dir.path().join("t.jsonl");
    let writer = Arc::new(TranscriptWriter::create(&transcript, &header(&workspace)).unwrap());
    let computer = computer(workspace.clone()).await;
    let handle = cubicle_agent::spawn(SessionParams {
        id: "test".into(),
        model,
        computer: computer.clone(),
        transcript: writer,
        tools: cubicle_tools::computer_tools(),
        gate,
        config,
        history,
        audit,
    });
    Harness {
        _dir: dir,
        workspace,
        transcript,
        computer,
        handle,
    }
}

async fn start(model: Arc<ScriptedModel>) -> Harness {
    start_with(
        model,
        SessionConfig::default(),
        Arc::new(cubicle_agent::AllowAll),
        vec![],
    )
    .await
}

impl Harness {
    /// Sends a message and collects events until the turn ends.
    async fn turn(&mut self, text: &str) -> (Vec<EventMsg>, TurnEndReason) {
        self.handle
            .ops
            .send(Op::UserMessage { text: text.into() })
            .unwrap();
        self.until_turn_end().await
    }

    async fn until_turn_end(&mut self) -> (Vec<EventMsg>, TurnEndReason) {
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

    async fn shutdown(self) {
        let _ = self.handle.ops.send(Op::Shutdown);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle.done).await;
        self.computer.stop().await.unwrap();
    }
}

fn tool(id: &str, name: &str, input: Value) -> ContentBlock {
    ContentBlock::ToolUse {
        id: id.into(),
        name: name.into(),
        input,
    }
}

fn response(blocks: Vec<ContentBlock>) -> ModelResponse {
    let stop = if blocks
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolUse { .. }))
    {
        StopReason::ToolUse
    } else {
        StopReason::EndTurn
    };
    ModelResponse {
        message: Message {
            role: Role::Assistant,
            content: blocks,
        },
        stop_reason: stop,
        usage: Usage {
            input_tokens: 100,
            output_tokens: 10,
            ..Usage::default()
        },
    }
}

/// The tool results the model was sent in its latest request, by call id.
fn results_seen(model: &ScriptedModel) -> BTreeMap<String, (String, bool)> {
    let reqs = model.requests();
    let last = reqs.last().expect("no request");
    let mut out = BTreeMap::new();
    for m in last.messages.iter() {
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

#[tokio::test]
async fn tools_run_and_results_go_back_to_the_model_and_the_transcript() {
    let model = Arc::new(ScriptedModel::new(vec![
        Ok(response(vec![
            ContentBlock::Text {
                text: "Writing.".into(),
            },
            tool(
                "w",
                "write",
                json!({"path": "notes.txt", "content": "alpha\nbeta\n"}),
            ),
        ])),
        Ok(response(vec![tool(
            "e",
            "edit",
            json!({"path": "notes.txt", "old_string": "beta", "new_string": "gamma"}),
        )])),
        Ok(response(vec![
            tool("r", "read", json!({"path": "notes.txt"})),
            tool("b", "bash", json!({"command": "wc -l < notes.txt"})),
        ])),
        Ok(response(vec![ContentBlock::Text {
            text: "Done.".into(),
        }])),
    ]));
    let mut h = start(model.clone()).await;
    let (events, reason) = h.turn("make notes").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("notes.txt")).unwrap(),
        "alpha\ngamma\n"
    );
    let seen = results_seen(&model);
    assert_eq!(
        seen["r"],
        ("     1\talpha\n     2\tgamma\n".to_owned(), false)
    );
    assert_eq!(seen["b"], ("2".to_owned(), false));
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, Event::TextDelta { text } if text == "Done."))
    );
    let started: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::ToolCallStarted { summary, .. } => Some(summary.clone()),
            _ => None,
        })
        .collect();
    assert!(
        started.contains(&"$ wc -l < notes.txt".to_owned()),
        "{started:?}"
    );

    // The transcript rebuilds exactly the conversation the model last saw.
    let t = Transcript::load(&h.transcript).unwrap();
    let mut expected = (*model.requests().last().unwrap().messages).clone();
    expected.push(
        response(vec![ContentBlock::Text {
            text: "Done.".into(),
        }])
        .message,
    );
    assert_eq!(t.history(), expected);
    let decisions = h
        .records()
        .iter()
        .filter(|r| matches!(r, Record::Decision { allowed: true, .. }))
        .count();
    assert_eq!(decisions, 4);
    h.shutdown().await;
}

#[tokio::test]
async fn independent_calls_run_concurrently() {
    // Each command waits for the other's file: run one after the other, the
    // first would time out.
    let a = "touch a.flag; for i in $(seq 1 400); do [ -f b.flag ] && exit 0; sleep 0.025; done; exit 1";
    let b = "touch b.flag; for i in $(seq 1 400); do [ -f a.flag ] && exit 0; sleep 0.025; done; exit 1";
    let model = Arc::new(ScriptedModel::new(vec![
        Ok(response(vec![
            tool("a", "bash", json!({"command": a})),
            tool("b", "bash", json!({"command": b})),
        ])),
        Ok(response(vec![ContentBlock::Text { text: "ok".into() }])),
    ]));
    let mut h = start(model.clone()).await;
    let (_, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    let seen = results_seen(&model);
    assert!(!seen["a"].1, "a failed: {:?}", seen["a"]);
    assert!(!seen["b"].1, "b failed: {:?}", seen["b"]);
    h.shutdown().await;
}

#[tokio::test]
async fn bad_calls_become_tool_errors_and_the_loop_goes_on() {
    let model = Arc::new(ScriptedModel::new(vec![
        Ok(response(vec![
            tool("json", "bash", Value::String("{\"command\": \"ls".into())),
            tool("unknown", "teleport", json!({})),
            tool("missing", "edit", json!({"path": "x"})),
            tool("fails", "bash", json!({"command": "echo oops >&2; exit 3"})),
            tool("nofile", "read", json!({"path": "/definitely/not/here"})),
        ])),
        Ok(response(vec![ContentBlock::Text {
            text: "recovered".into(),
        }])),
    ]));
    let mut h = start(model.clone()).await;
    let (_, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    let seen = results_seen(&model);
    assert!(seen.values().all(|(_, err)| *err), "{seen:?}");
    assert!(
        seen["json"].0.contains("not a JSON object"),
        "{:?}",
        seen["json"]
    );
    assert!(seen["unknown"].0.contains("no tool named `teleport`"));
    assert!(seen["unknown"].0.contains("bash, read"));
    assert!(seen["missing"].0.contains("missing field `old_string`"));
    assert!(seen["fails"].0.contains("oops"));
    assert!(seen["fails"].0.contains("[exit code 3]"));
    h.shutdown().await;
}

#[tokio::test]
async fn huge_output_is_truncated_with_a_note() {
    let model = Arc::new(ScriptedModel::new(vec![
        Ok(response(vec![tool(
            "big",
            "bash",
            json!({"command": "yes 'a line of output' | head -c 6000000"}),
        )])),
        Ok(response(vec![ContentBlock::Text { text: "ok".into() }])),
    ]));
    let mut h = start(model.clone()).await;
    h.turn("go").await;
    let (text, _) = &results_seen(&model)["big"];
    assert!(
        text.len() < 45_000,
        "{} bytes reached the model",
        text.len()
    );
    assert!(text.contains("characters omitted"));
    assert!(text.contains("output beyond 4 MiB was dropped"));
    h.shutdown().await;
}

#[tokio::test]
async fn a_model_error_ends_the_turn_but_not_the_session() {
    let model = Arc::new(ScriptedModel::new(vec![
        Err(ModelError::Server {
            status: 500,
            message: "boom".into(),
        }),
        Ok(response(vec![ContentBlock::Text {
            text: "back".into(),
        }])),
    ]));
    let mut h = start(model.clone()).await;
    let (_, reason) = h.turn("first").await;
    assert!(matches!(&reason, TurnEndReason::Error { message } if message.contains("boom")));
    let (_, reason) = h.turn("second").await;
    assert_eq!(reason, TurnEndReason::Done);
    // Both user messages reached the model, merged into one user turn.
    let last = model.requests().last().unwrap().messages.clone();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].text(), "firstsecond");
    assert!(
        h.records()
            .iter()
            .any(|r| matches!(r, Record::Error { .. }))
    );
    h.shutdown().await;
}

#[tokio::test]
async fn questions_block_until_answered() {
    let model = Arc::new(ScriptedModel::new(vec![
        Ok(response(vec![tool(
            "q",
            "ask_user",
            json!({"questions": [{
                "question": "Which currency?", "header": "Currency",
                "options": [{"label": "EUR", "description": "Euro"}, {"label": "USD", "description": "Dollar"}],
                "multiSelect": false
            }]}),
        )])),
        Ok(response(vec![ContentBlock::Text {
            text: "EUR it is".into(),
        }])),
    ]));
    let mut h = start(model.clone()).await;
    h.handle
        .ops
        .send(Op::UserMessage { text: "go".into() })
        .unwrap();
    let id = loop {
        let ev = h.handle.events.recv().await.unwrap();
        if let Event::Question { id, questions } = ev.event {
            assert_eq!(questions[0].options[1].label, "USD");
            break id;
        }
    };
    h.handle
        .ops
        .send(Op::Answer {
            id,
            answers: vec![Answer {
                selected: vec!["EUR".into()],
                text: None,
            }],
        })
        .unwrap();
    let (_, reason) = h.until_turn_end().await;
    assert_eq!(reason, TurnEndReason::Done);
    assert!(
        results_seen(&model)["q"]
            .0
            .contains("Which currency? (Currency): EUR")
    );
    let records = h.records();
    assert!(records.iter().any(|r| matches!(r, Record::Question { .. })));
    assert!(records.iter().any(|r| matches!(r, Record::Answer { .. })));
    h.shutdown().await;
}

#[tokio::test]
async fn without_input_questions_fail_with_a_clear_message() {
    let model = Arc::new(ScriptedModel::new(vec![
        Ok(response(vec![tool(
            "q",
            "ask_user",
            json!({"questions": [{"question": "Which?", "header": "Pick", "options": []}]}),
        )])),
        Ok(response(vec![ContentBlock::Text {
            text: "assumed".into(),
        }])),
    ]));
    let config = SessionConfig {
        interactive: false,
        ..SessionConfig::default()
    };
    let mut h = start_with(
        model.clone(),
        config,
        Arc::new(cubicle_agent::AllowAll),
        vec![],
    )
    .await;
    let (events, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    let (text, is_error) = &results_seen(&model)["q"];
    assert!(is_error);
    assert!(text.contains("nobody can answer"));
    assert!(events.iter().any(
        |e| matches!(&e.event, Event::Notice { message, .. } if message.contains("--no-input"))
    ));
    h.shutdown().await;
}

#[tokio::test]
async fn interrupt_kills_the_running_command_and_the_session_goes_on() {
    let model = Arc::new(ScriptedModel::new(vec![
        Ok(response(vec![tool(
            "slow",
            "bash",
            json!({"command": "echo $$ > pid; sleep 60"}),
        )])),
        Ok(response(vec![ContentBlock::Text {
            text: "after".into(),
        }])),
    ]));
    let mut h = start(model.clone()).await;
    h.handle
        .ops
        .send(Op::UserMessage { text: "go".into() })
        .unwrap();
    // Wait until the command is running.
    let pid_file = h.workspace.join("pid");
    for _ in 0..200 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    h.handle.ops.send(Op::Interrupt).unwrap();
    let (_, reason) = h.until_turn_end().await;
    assert_eq!(reason, TurnEndReason::Interrupted);
    // The shell is gone (give the kill a moment to land).
    let mut alive = true;
    for _ in 0..100 {
        alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive, "the interrupted command is still running");
    let records = h.records();
    assert!(
        records
            .iter()
            .any(|r| matches!(r, Record::Interrupted { .. }))
    );
    assert!(records.iter().any(
        |r| matches!(r, Record::ToolResult { call_id, is_error: true, .. } if call_id == "slow")
    ));
    // The next message works and the model sees the interrupted call's result.
    let (_, reason) = h.turn("carry on").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert!(results_seen(&model)["slow"].0.contains("interrupted"));
    h.shutdown().await;
}

#[tokio::test]
async fn interrupt_during_the_model_call() {
    let model = Arc::new(ScriptedModel::new(vec![
        Ok(ScriptedModel::hang_marker()),
        Ok(response(vec![ContentBlock::Text {
            text: "after".into(),
        }])),
    ]));
    let mut h = start(model.clone()).await;
    h.handle
        .ops
        .send(Op::UserMessage { text: "go".into() })
        .unwrap();
    loop {
        let ev = h.handle.events.recv().await.unwrap();
        if matches!(ev.event, Event::TurnStarted { .. }) {
            break;
        }
    }
    h.handle.ops.send(Op::Interrupt).unwrap();
    let (_, reason) = h.until_turn_end().await;
    assert_eq!(reason, TurnEndReason::Interrupted);
    let (_, reason) = h.turn("again").await;
    assert_eq!(reason, TurnEndReason::Done);
    h.shutdown().await;
}

#[tokio::test]
async fn the_turn_budget_stops_an_endless_loop() {
    let model = Arc::new(ScriptedModel::from_fn(|_, i| {
        Ok(ScriptedModel::tool_use_response(
            format!("c{i}"),
            "bash",
            json!({"command": "true"}),
        ))
    }));
    let config = SessionConfig {
        max_turns: 3,
        ..SessionConfig::default()
    };
    let mut h = start_with(
        model.clone(),
        config,
        Arc::new(cubicle_agent::AllowAll),
        vec![],
    )
    .await;
    let (_, reason) = h.turn("loop").await;
    assert!(
        matches!(&reason, TurnEndReason::Budget { detail } if detail.contains("3 model calls")),
        "{reason:?}"
    );
    assert_eq!(model.requests().len(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn sub_agents_get_their_own_context_and_are_recorded() {
    let model = Arc::new(ScriptedModel::from_fn(|req, _| {
        Ok(match (req.agent.as_deref(), req.messages.len()) {
            (None, 1) => ScriptedModel::tool_use_response(
                "t",
                "task",
                json!({"description": "count files", "prompt": "Count the files in the workspace.", "tools": ["bash"]}),
            ),
            (Some("task-1"), 1) => {
                ScriptedModel::tool_use_response("s", "bash", json!({"command": "echo 42"}))
            }
            (Some("task-1"), _) => ScriptedModel::text_response("There are 42."),
            (None, _) => ScriptedModel::text_response("The sub-agent says 42."),
            (Some(other), _) => panic!("unexpected agent {other}"),
        })
    }));
    let mut h = start(model.clone()).await;
    let (events, reason) = h.turn("how many?").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert_eq!(
        results_seen(&model)["t"],
        ("There are 42.".to_owned(), false)
    );
    // The sub-agent saw only its brief and only the tools it was given.
    let sub_req = model
        .requests()
        .into_iter()
        .find(|r| r.agent.as_deref() == Some("task-1"))
        .unwrap();
    assert_eq!(
        sub_req.messages[0].text(),
        "Count the files in the workspace."
    );
    let names: Vec<_> = sub_req.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["bash"]);
    assert!(events.iter().any(|e| e.agent.as_deref() == Some("task-1")));
    let t = Transcript::load(&h.transcript).unwrap();
    assert!(
        t.entries
            .iter()
            .any(|e| e.agent.as_deref() == Some("task-1"))
    );
    h.shutdown().await;
}

/// A delegate (the browser sub-agent's shape): the main agent sees it as a
/// tool; the sub-agent gets the delegate's own system prompt and only its
/// tools, and the main agent only its report.
#[tokio::test]
async fn delegates_run_with_their_own_prompt_and_tools() {
    let model = Arc::new(ScriptedModel::from_fn(|req, _| {
        Ok(match (req.agent.as_deref(), req.messages.len()) {
            (None, 1) => ScriptedModel::tool_use_response(
                "d",
                "reader",
                json!({"description": "read the note", "prompt": "What does note.txt say?"}),
            ),
            (Some("reader-1"), 1) => ScriptedModel::tool_use_response(
                "r",
                "read",
                json!({"path": "/workspace/note.txt"}),
            ),
            (Some("reader-1"), _) => ScriptedModel::text_response("It says: hello."),
            (None, _) => ScriptedModel::text_response("The note says hello."),
            (Some(other), _) => panic!("unexpected agent {other}"),
        })
    }));
    let read: Arc<dyn cubicle_tools::Tool> = Arc::new(cubicle_tools::read::Read);
    let config = SessionConfig {
        delegates: vec![cubicle_agent::Delegate {
            name: "reader".into(),
            description: "Hand reading work to a reader.".into(),
            system_prompt: "You are a reader.".into(),
            tools: vec![read],
            model: None,
        }],
        ..SessionConfig::default()
    };
    let mut h = start_with(
        model.clone(),
        config,
        Arc::new(cubicle_agent::AllowAll),
        vec![],
    )
    .await;
    std::fs::write(h.workspace.join("note.txt"), "hello\n").unwrap();
    let (events, reason) = h.turn("read it").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert_eq!(
        results_seen(&model)["d"],
        ("It says: hello.".to_owned(), false)
    );
    let requests = model.requests();
    let main = requests.iter().find(|r| r.agent.is_none()).unwrap();
    let reader = main.tools.iter().find(|t| t.name == "reader").unwrap();
    assert_eq!(reader.description, "Hand reading work to a reader.");
    let sub = requests
        .iter()
        .find(|r| r.agent.as_deref() == Some("reader-1"))
        .unwrap();
    assert_eq!(sub.system, "You are a reader.");
    assert_eq!(sub.messages[0].text(), "What does note.txt say?");
    let names: Vec<_> = sub.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["read"]);
    assert!(events.iter().any(|e| matches!(&e.event,
        cubicle_protocol::events::Event::ToolCallStarted { summary, .. }
            if summary == "reader sub-agent: read the note")));
    let t = Transcript::load(&h.transcript).unwrap();
    assert!(
        t.entries
            .iter()
            .any(|e| e.agent.as_deref() == Some("reader-1"))
    );
    h.shutdown().await;
}

/// A delegate with a model of its own (a plugin agent's `model: haiku`):
/// the sub-agent's requests go to that model, the main agent's to the
/// session's.
#[tokio::test]
async fn a_delegate_with_its_own_model_talks_to_it() {
    let session_model = Arc::new(ScriptedModel::from_fn(|req, _| {
        Ok(match (req.agent.as_deref(), req.messages.len()) {
            (None, 1) => ScriptedModel::tool_use_response(
                "d",
                "summariser",
                json!({"description": "summarise", "prompt": "Summarise: a, b, c."}),
            ),
            (None, _) => ScriptedModel::text_response("Done."),
            (Some(other), _) => panic!("the session's model ran the sub-agent {other}"),
        })
    }));
    let own_model = Arc::new(ScriptedModel::from_fn(|req, _| {
        assert_eq!(req.agent.as_deref(), Some("summariser-1"));
        Ok(ScriptedModel::text_response("a to c."))
    }));
    let config = SessionConfig {
        delegates: vec![cubicle_agent::Delegate {
            name: "summariser".into(),
            description: "Summarises.".into(),
            system_prompt: "You summarise.".into(),
            tools: vec![],
            model: Some(own_model.clone()),
        }],
        ..SessionConfig::default()
    };
    let mut h = start_with(
        session_model.clone(),
        config,
        Arc::new(cubicle_agent::AllowAll),
        vec![],
    )
    .await;
    let (_, reason) = h.turn("summarise it").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert_eq!(
        results_seen(&session_model)["d"],
        ("a to c.".to_owned(), false)
    );
    assert_eq!(own_model.requests().len(), 1);
    assert!(session_model.requests().iter().all(|r| r.agent.is_none()));
    h.shutdown().await;
}

struct AskForBash;
impl PermissionGate for AskForBash {
    fn check(&self, tool: &str, _input: &Value) -> GateDecision {
        if tool == "bash" {
            GateDecision::Ask {
                reason: "commands need approval (test rule)".into(),
            }
        } else {
            GateDecision::Allow {
                reason: "default".into(),
            }
        }
    }
}

#[tokio::test]
async fn approvals_once_for_the_session_and_denied() {
    let model = Arc::new(ScriptedModel::new(vec![
        Ok(response(vec![tool(
            "1",
            "bash",
            json!({"command": "echo one"}),
        )])),
        Ok(response(vec![tool(
            "2",
            "bash",
            json!({"command": "echo two"}),
        )])),
        Ok(response(vec![tool(
            "3",
            "bash",
            json!({"command": "echo three"}),
        )])),
        Ok(response(vec![ContentBlock::Text {
            text: "done".into(),
        }])),
        Ok(response(vec![tool(
            "4",
            "bash",
            json!({"command": "echo four"}),
        )])),
        Ok(response(vec![ContentBlock::Text {
            text: "done".into(),
        }])),
    ]));
    let mut h = start_with(
        model.clone(),
        SessionConfig::default(),
        Arc::new(AskForBash),
        vec![],
    )
    .await;
    h.handle
        .ops
        .send(Op::UserMessage { text: "go".into() })
        .unwrap();
    let mut asked = 0;
    let decisions = [ApprovalDecision::AllowOnce, ApprovalDecision::AllowSession];
    loop {
        let ev = h.handle.events.recv().await.unwrap();
        match ev.event {
            Event::ApprovalRequest {
                id,
                reason,
                summary,
                ..
            } => {
                assert!(reason.contains("test rule"));
                assert!(summary.starts_with("$ echo"));
                h.handle
                    .ops
                    .send(Op::Approve {
                        id,
                        decision: decisions[asked],
                    })
                    .unwrap();
                asked += 1;
            }
            Event::TurnEnded { .. } => break,
            _ => {}
        }
    }
    // Once, then for the session: the third call did not ask.
    assert_eq!(asked, 2);
    let seen = results_seen(&model);
    assert_eq!(seen["3"], ("three".to_owned(), false));
    h.shutdown().await;

    // A denial reaches the model as an error it can act on.
    let mut h = start_with(
        Arc::new(ScriptedModel::new(vec![
            Ok(response(vec![tool(
                "4",
                "bash",
                json!({"command": "echo four"}),
            )])),
            Ok(response(vec![ContentBlock::Text { text: "ok".into() }])),
        ])),
        SessionConfig::default(),
        Arc::new(AskForBash),
        vec![],
    )
    .await;
    h.handle
        .ops
        .send(Op::UserMessage { text: "go".into() })
        .unwrap();
    loop {
        let ev = h.handle.events.recv().await.unwrap();
        match ev.event {
            Event::ApprovalRequest { id, .. } => h
                .handle
                .ops
                .send(Op::Approve {
                    id,
                    decision: ApprovalDecision::Deny,
                })
                .unwrap(),
            Event::TurnEnded { .. } => break,
            _ => {}
        }
    }
    let records = h.records();
    assert!(records.iter().any(|r| matches!(r, Record::Decision { allowed: false, reason, .. } if reason.contains("denied by the person"))));
    h.shutdown().await;
}

#[tokio::test]
async fn resume_continues_from_a_transcript_cut_mid_tool_call() {
    // First process: the model asks for two calls; only one result is
    // recorded before the "crash".
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let path = dir.path().join("t.jsonl");
    let w = TranscriptWriter::create(&path, &header(&workspace)).unwrap();
    w.append(
        None,
        Record::UserMessage {
            message: Message::user_text("go"),
        },
    )
    .unwrap();
    w.append(
        None,
        Record::ModelResponse {
            message: response(vec![
                tool("a", "bash", json!({"command": "echo a"})),
                tool("b", "bash", json!({"command": "echo b"})),
            ])
            .message,
            usage: Usage::default(),
            stop_reason: StopReason::ToolUse,
            model: "scripted:test".into(),
            duration_ms: 1,
        },
    )
    .unwrap();
    w.append(
        None,
        Record::ToolResult {
            call_id: "a".into(),
            tool: "bash".into(),
            content: vec![ToolResultContent::text("a")],
            is_error: false,
            duration_ms: 1,
        },
    )
    .unwrap();
    drop(w);

    // Second process: resume with Op::Continue.
    let t = Transcript::load(&path).unwrap();
    let history = t.history();
    assert_eq!(history.last().unwrap().role, Role::User);
    let model = Arc::new(ScriptedModel::new(vec![Ok(response(vec![
        ContentBlock::Text {
            text: "resumed".into(),
        },
    ]))]));
    let writer = Arc::new(TranscriptWriter::append_to(&path, t.last_seq()).unwrap());
    let computer = computer(workspace).await;
    let mut handle = cubicle_agent::spawn(SessionParams {
        id: "test".into(),
        model: model.clone(),
        computer: computer.clone(),
        transcript: writer,
        tools: cubicle_tools::computer_tools(),
        gate: Arc::new(cubicle_agent::AllowAll),
        config: SessionConfig::default(),
        history,
        audit: None,
    });
    handle.ops.send(Op::Continue).unwrap();
    loop {
        let ev = handle.events.recv().await.unwrap();
        if let Event::TurnEnded { reason, .. } = ev.event {
            assert_eq!(reason, TurnEndReason::Done);
            break;
        }
    }
    let seen = results_seen(&model);
    assert_eq!(seen["a"], ("a".to_owned(), false));
    assert!(
        seen["b"].1 && seen["b"].0.contains("interrupted"),
        "{:?}",
        seen["b"]
    );
    let t = Transcript::load(&path).unwrap();
    let seqs: Vec<u64> = t.entries.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence broken: {seqs:?}"
    );
    let _ = handle.ops.send(Op::Shutdown);
    computer.stop().await.unwrap();
}

#[tokio::test]
async fn compaction_near_the_window_is_recorded_and_resumable() {
    let model = Arc::new(
        ScriptedModel::from_fn(|req, i| {
            let big = Usage {
                input_tokens: 9_000,
                output_tokens: 10,
                ..Usage::default()
            };
            let last = req.messages.last().unwrap().text();
            Ok(if last.contains("Summarise this conversation") {
                ScriptedModel::text_response("SUMMARY: wrote a.txt")
            } else if i == 0 {
                let mut r = ScriptedModel::tool_use_response(
                    "w",
                    "bash",
                    json!({"command": "echo hi > a.txt"}),
                );
                r.usage = big;
                r
            } else {
                ScriptedModel::text_response("finished")
            })
        })
        .with_context_window(10_000),
    );
    let mut h = start(model.clone()).await;
    let (events, reason) = h.turn("go").await;
    assert_eq!(reason, TurnEndReason::Done);
    assert!(
        events
            .iter()
            .any(|e| matches!(e.event, Event::Compacted { .. }))
    );
    let last = model.requests().last().unwrap().messages.clone();
    assert_eq!(last.len(), 1);
    assert!(last[0].text().contains("SUMMARY: wrote a.txt"));
    let t = Transcript::load(&h.transcript).unwrap();
    assert!(
        t.entries
            .iter()
            .any(|e| matches!(e.record, Record::Compaction { .. }))
    );
    let history = t.history();
    assert!(history[0].text().contains("SUMMARY"));
    h.shutdown().await;
}

#[tokio::test]
async fn policy_decisions_model_calls_and_written_files_reach_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(
        cubicle_audit::AuditLog::open(dir.path(), cubicle_audit::AuditOptions::default()).unwrap(),
    );
    let policy = cubicle_policy::Policy::from_sources(&[cubicle_policy::SettingsSource {
        layer: cubicle_policy::Layer::User,
        file: Some("settings.toml".into()),
        text: "[permissions]\ndeny = [\"Bash(curl *)\"]\n".into(),
    }])
    .unwrap();
    let model = Arc::new(ScriptedModel::new(vec![
        Ok(response(vec![
            tool("w", "write", json!({"path": "out.txt", "content": "hello"})),
            tool("c", "bash", json!({"command": "curl http://example.org"})),
        ])),
        Ok(response(vec![ContentBlock::Text { text: "ok".into() }])),
    ]));
    let mut h = start_full(
        model.clone(),
        SessionConfig::default(),
        Arc::new(cubicle_agent::PolicyGate(Arc::new(policy))),
        vec![],
        Some(audit.clone()),
    )
    .await;
    h.turn("go").await;
    let seen = results_seen(&model);
    assert!(seen["c"].1);
    assert!(
        seen["c"].0.contains("not allowed by policy"),
        "{:?}",
        seen["c"]
    );
    assert!(seen["c"].0.contains("Bash(curl *)"), "{:?}", seen["c"]);
    h.shutdown().await;

    let records = cubicle_audit::tail(dir.path(), 100).unwrap();
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.name()).collect();
    assert_eq!(
        kinds,
        vec![
            "model_call",
            "tool_call",
            "tool_call",
            "file_written",
            "model_call"
        ]
    );
    let written = records.iter().find_map(|r| match &r.kind {
        cubicle_audit::RecordKind::FileWritten { path, size, sha256 } => {
            Some((path.clone(), *size, sha256.clone()))
        }
        _ => None,
    });
    assert_eq!(
        written,
        Some((
            "out.txt".to_owned(),
            5,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".to_owned()
        ))
    );
    assert!(records.iter().any(|r| matches!(&r.kind,
        cubicle_audit::RecordKind::ToolCall { tool, decision: cubicle_audit::ToolDecision::Denied, .. } if tool == "bash")));
    let report = cubicle_audit::verify(dir.path(), None).unwrap();
    assert!(report.first_bad.is_none(), "{report:?}");
    assert_eq!(report.records, 5);
}

//! Shared by the server's integration tests: a session starter that runs a
//! scripted model in a `host` cubicle, a server fixture with an HTTP client,
//! and event-stream helpers.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cubicle_agent::{GateDecision, PermissionGate, SessionParams, Store, TranscriptWriter};
use cubicle_models::ModelResponse;
use cubicle_models::scripted::ScriptedModel;
use cubicle_protocol::conversation::{ContentBlock, Message, Role, StopReason, Usage};
use cubicle_protocol::transcript::{Header, TRANSCRIPT_FORMAT, TRANSCRIPT_VERSION};
use cubicle_sandbox::Computer;
use cubicle_sandbox::host::{HostComputer, HostConfig};
use cubicle_server::{Server, SessionStarter, StartRequest, StartedSession};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Asks before every command; allows everything else.
pub struct AskForBash;

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

/// Starts sessions the way the CLI would, minus policy and audit: a `host`
/// cubicle, a transcript in the store, and the script below as the model.
pub struct TestStarter {
    pub store: Store,
}

pub fn tool(id: &str, name: &str, input: Value) -> ContentBlock {
    ContentBlock::ToolUse {
        id: id.into(),
        name: name.into(),
        input,
    }
}

pub fn response(blocks: Vec<ContentBlock>) -> ModelResponse {
    let uses_tool = blocks
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolUse { .. }));
    ModelResponse {
        message: Message {
            role: Role::Assistant,
            content: blocks,
        },
        stop_reason: if uses_tool {
            StopReason::ToolUse
        } else {
            StopReason::EndTurn
        },
        usage: Usage {
            input_tokens: 100,
            output_tokens: 10,
            ..Usage::default()
        },
    }
}

pub fn script() -> Vec<Result<ModelResponse, cubicle_models::ModelError>> {
    vec![
        Ok(response(vec![
            ContentBlock::Text {
                text: "I'll plan first.".into(),
            },
            tool(
                "p1",
                "todo_write",
                json!({"todos": [
                    {"content": "Ask the currency", "status": "in_progress", "activeForm": "Asking the currency"},
                    {"content": "Write the report", "status": "pending"}
                ]}),
            ),
        ])),
        Ok(response(vec![tool(
            "q1",
            "ask_user",
            json!({"questions": [{
                "question": "Which currency?", "header": "Currency",
                "options": [{"label": "EUR", "description": "Euro"}, {"label": "USD", "description": "Dollar"}],
                "multiSelect": false
            }]}),
        )])),
        Ok(response(vec![tool(
            "b1",
            "bash",
            json!({"command": "echo approved > approved.txt"}),
        )])),
        Ok(response(vec![
            tool(
                "w1",
                "write",
                json!({"path": "report.md", "content": "# Report\nTotal: 12 EUR\n"}),
            ),
            tool(
                "p2",
                "todo_write",
                json!({"todos": [
                    {"content": "Ask the currency", "status": "completed"},
                    {"content": "Write the report", "status": "completed"}
                ]}),
            ),
        ])),
        Ok(response(vec![ContentBlock::Text {
            text: "Done: report.md".into(),
        }])),
    ]
}

/// A `host` cubicle on `workspace` running `model` on a session with `history`.
async fn launch(
    id: String,
    workspace: std::path::PathBuf,
    writer: TranscriptWriter,
    history: Vec<Message>,
    model: ScriptedModel,
) -> Result<StartedSession, String> {
    let guest = cubicle_sandbox::locate::GuestProgram::locate()
        .map_err(|e| format!("{e} (run `cargo build -p cubicle-guest --bins`)"))?;
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
        .map_err(|e| e.to_string())?,
    );
    let handle = cubicle_agent::spawn(SessionParams {
        id: id.clone(),
        model: Arc::new(model),
        computer: computer.clone(),
        transcript: Arc::new(writer),
        tools: cubicle_tools::computer_tools(),
        gate: Arc::new(AskForBash),
        config: cubicle_agent::SessionConfig::default(),
        history,
        audit: None,
    });
    Ok(StartedSession {
        id,
        handle,
        workspace,
        on_end: Some(Box::new(move |_end| {
            Box::pin(async move {
                let _ = computer.stop().await;
            })
        })),
        prepare: Some(Arc::new(prepare_message)),
    })
}

/// The test front end's one slash command, `/shout TEXT`, sends TEXT in
/// capitals; any other `/word` is unknown, as a plugin command would be.
pub fn prepare_message(typed: &str) -> Result<String, String> {
    match typed.strip_prefix('/') {
        None => Ok(typed.to_owned()),
        Some(rest) => match rest.split_once(' ') {
            Some(("shout", text)) => Ok(text.to_uppercase()),
            _ => Err(format!("there is no command /{rest}")),
        },
    }
}

/// What the model says when a session is resumed.
pub const RESUMED_TEXT: &str = "Resumed: the report is in report.md.";

#[async_trait]
impl SessionStarter for TestStarter {
    async fn start(&self, req: StartRequest) -> Result<StartedSession, String> {
        if req.backend.as_deref().is_some_and(|b| b != "host") {
            return Err(format!(
                "backend {:?} is not available in tests",
                req.backend
            ));
        }
        let id = Store::new_session_id();
        let workspace = self.store.workspace_path(&id);
        std::fs::create_dir_all(&workspace).map_err(|e| e.to_string())?;
        let header = Header {
            format: TRANSCRIPT_FORMAT.into(),
            version: TRANSCRIPT_VERSION,
            session_id: id.clone(),
            created_at: cubicle_agent::transcript::now_rfc3339(),
            cubicle_version: "test".into(),
            task: Some(req.task.clone()),
            model: "scripted:test".into(),
            backend: "host".into(),
            grants: vec![],
            workspace: workspace.display().to_string(),
            label: None,
        };
        let writer = TranscriptWriter::create(&self.store.transcript_path(&id), &header)
            .map_err(|e| e.to_string())?;
        launch(id, workspace, writer, vec![], ScriptedModel::new(script())).await
    }

    async fn resume(&self, id: &str) -> Result<StartedSession, String> {
        let path = self.store.transcript_path(id);
        let t = cubicle_agent::Transcript::load(&path).map_err(|e| e.to_string())?;
        let writer = TranscriptWriter::append_to(&path, t.last_seq()).map_err(|e| e.to_string())?;
        let model = ScriptedModel::new(vec![Ok(response(vec![ContentBlock::Text {
            text: RESUMED_TEXT.into(),
        }]))]);
        launch(
            id.to_owned(),
            std::path::PathBuf::from(&t.header.workspace),
            writer,
            t.history(),
            model,
        )
        .await
    }
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub store: Store,
    pub server: Server,
    pub http: reqwest::Client,
}

pub async fn serve() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join("cubicle"));
    let starter = Arc::new(TestStarter {
        store: store.clone(),
    });
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Server::bind(addr, starter, store.clone()).await.unwrap();
    Fixture {
        _dir: dir,
        store,
        server,
        http: reqwest::Client::new(),
    }
}

/// A server with an audit log (in `_dir/audit`) and a network listener for
/// paired devices on 127.0.0.1, over TLS.
pub async fn serve_remote() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join("cubicle"));
    let starter = Arc::new(TestStarter {
        store: store.clone(),
    });
    let audit = cubicle_audit::AuditLog::open(
        dir.path().join("audit"),
        cubicle_audit::AuditOptions::default(),
    )
    .unwrap();
    let server = Server::start(cubicle_server::ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        starter,
        store: store.clone(),
        data_dir: dir.path().join("data"),
        audit: Some(Arc::new(audit)),
        remote: Some(cubicle_server::RemoteConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
        }),
        policy: Some(cubicle_server::PolicyReport {
            settings: vec![cubicle_server::PolicySetting {
                key: "sandbox.allowed_backends".into(),
                value: "[\"jail\", \"vm\"]".into(),
                origin: "managed (/etc/cubicle/managed.toml:2)".into(),
            }],
            notices: vec![],
            digest: "d1".into(),
        }),
        audit_key: None,
        skills: Some(cubicle_skills::SkillRoots {
            managed: vec![],
            user: vec![dir.path().join("skills")],
            projects: vec![],
            plugins: vec![],
        }),
        prefs_dir: Some(dir.path().join("preferences")),
        plugins: Some(cubicle_server::PluginAccess {
            store: cubicle_skills::plugin_store::PluginStore::new(dir.path().join("plugins")),
            // Stands in for a policy whose `marketplaces.block` names one folder.
            gate: Arc::new(|id: &str| {
                if id.contains("blocked-market") {
                    Err("blocked by marketplaces.block (managed)".into())
                } else {
                    Ok(())
                }
            }),
        }),
        settings: Some(Arc::new(MemorySettings::default())),
    })
    .await
    .unwrap();
    Fixture {
        _dir: dir,
        store,
        server,
        http: reqwest::Client::new(),
    }
}

/// A settings store in memory: what the CLI's file-and-secret-store one
/// does, minus the files. The key is kept but never handed back.
#[derive(Default)]
pub struct MemorySettings {
    state: std::sync::Mutex<(cubicle_server::ModelSettings, Option<String>)>,
}

impl cubicle_server::SettingsStore for MemorySettings {
    fn load(&self) -> Result<cubicle_server::ModelSettings, cubicle_server::SettingsError> {
        let state = self.state.lock().unwrap();
        let mut s = state.0.clone();
        s.api_key_stored = state.1.is_some();
        s.providers = vec!["anthropic".into(), "openai".into()];
        s.location = "memory".into();
        Ok(s)
    }

    fn save(
        &self,
        u: cubicle_server::SettingsUpdate,
    ) -> Result<cubicle_server::ModelSettings, cubicle_server::SettingsError> {
        if !["", "anthropic", "openai"].contains(&u.provider.as_str()) {
            return Err(cubicle_server::SettingsError::Invalid(format!(
                "unknown provider `{}`",
                u.provider
            )));
        }
        {
            let mut state = self.state.lock().unwrap();
            let some = |v: String| (!v.is_empty()).then_some(v);
            state.0.provider = some(u.provider);
            state.0.model = some(u.model);
            state.0.base_url = some(u.base_url);
            if let Some(k) = u.api_key.filter(|k| !k.is_empty()) {
                state.1 = Some(k);
            } else if u.clear_api_key {
                state.1 = None;
            }
        }
        self.load()
    }
}

impl Fixture {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.addr().port())
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base()))
            .bearer_auth(self.server.token())
    }

    pub fn post(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base()))
            .bearer_auth(self.server.token())
            .json(&body)
    }

    pub fn ws_url(&self, id: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/api/sessions/{id}/events",
            self.server.addr().port()
        )
    }

    /// Connects the way the web UI does: the token as a subprotocol.
    pub async fn ws(&self, id: &str) -> Ws {
        let mut req = self.ws_url(id).into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            format!("cubicle.v1, cubicle.token.{}", self.server.token())
                .parse()
                .unwrap(),
        );
        let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(
            resp.headers()["sec-websocket-protocol"].to_str().unwrap(),
            "cubicle.v1"
        );
        ws
    }

    pub async fn op(&self, id: &str, op: Value) -> reqwest::StatusCode {
        self.post(&format!("/api/sessions/{id}/ops"), op)
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// The next event, or `None` when the server closed the stream.
pub async fn next_event(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("no event within 60 s")?;
        match msg.unwrap() {
            WsMessage::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
            WsMessage::Close(_) => return None,
            _ => {}
        }
    }
}

pub async fn until_turn_end(ws: &mut Ws) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let ev = next_event(ws)
            .await
            .expect("stream closed before the turn ended");
        let end = ev["type"] == "turn_ended";
        out.push(ev);
        if end {
            return out;
        }
    }
}

/// A finished session on disk whose workspace holds a file, a symlink to a
/// secret outside it, and a symlinked folder.
pub fn past_session(store: &Store, outside: &Path) -> String {
    let id = "20260101-000000-past".to_owned();
    let ws = store.workspace_path(&id);
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("out.csv"), "a,b\n").unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), ws.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(outside, ws.join("outside")).unwrap();
    let header = Header {
        format: TRANSCRIPT_FORMAT.into(),
        version: TRANSCRIPT_VERSION,
        session_id: id.clone(),
        created_at: "2026-01-01T00:00:00Z".into(),
        cubicle_version: "test".into(),
        task: Some("old".into()),
        model: "scripted:test".into(),
        backend: "host".into(),
        grants: vec![],
        workspace: ws.display().to_string(),
        label: None,
    };
    TranscriptWriter::create(&store.transcript_path(&id), &header).unwrap();
    id
}

/// A marketplace folder offering one plugin with one skill.
pub fn marketplace(root: &std::path::Path, name: &str) -> std::path::PathBuf {
    let market = root.join(name);
    let write = |rel: &str, text: &str| {
        let p = market.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        ".claude-plugin/marketplace.json",
        &json!({
            "name": name,
            "description": "Tools for the finance team",
            "owner": { "name": "Acme" },
            "plugins": [{
                "name": "invoices",
                "source": "./invoices",
                "description": "Reads and files invoices",
                "version": "1.2.0",
            }],
        })
        .to_string(),
    );
    write(
        "invoices/.claude-plugin/plugin.json",
        r#"{"name": "invoices", "version": "1.2.0"}"#,
    );
    write(
        "invoices/skills/file-invoice/SKILL.md",
        &cubicle_skills::scaffold("file-invoice", Some("Files an invoice.")),
    );
    market
}

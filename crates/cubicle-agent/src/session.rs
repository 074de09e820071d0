//! A running session: the task that owns the main agent, and the router that
//! carries the front ends' [`Op`]s to it.
//!
//! Front ends hold a [`SessionHandle`]: they send ops (a message, an answer,
//! an approval, an interrupt) and read [`EventMsg`]s. Answers and approvals
//! are delivered to the tool call waiting for them while the turn runs;
//! messages sent during a turn wait for the next one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cubicle_models::ModelClient;
use cubicle_protocol::conversation::{Message, Usage};
use cubicle_protocol::events::{
    Answer, ApprovalDecision, Event, EventMsg, NoticeLevel, Op, TurnEndReason,
};
use cubicle_protocol::transcript::Record;
use cubicle_sandbox::Computer;
use cubicle_tools::Tool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::gate::PermissionGate;
use crate::hooks::{HookPoint, HookVerdict, SessionHooks};
use crate::runner::Agent;
use crate::transcript::TranscriptWriter;

/// Limits and knobs of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Most model calls in the whole session, sub-agents included.
    pub max_turns: u32,
    /// Most tokens (input + output, all calls) before the session stops.
    pub max_total_tokens: Option<u64>,
    /// Longest the session may run.
    pub max_wall: Option<Duration>,
    /// `max_tokens` of each model call.
    pub max_output_tokens: u32,
    /// Compact when the prompt reaches this fraction of the context window.
    pub compact_at: f64,
    /// Most model calls of one sub-agent.
    pub subagent_max_turns: u32,
    /// Whether someone can answer questions and approvals.
    pub interactive: bool,
    /// Today's date for the system prompt (`YYYY-MM-DD`).
    pub today: String,
    /// Replaces the built-in system prompt.
    pub system_prompt: Option<String>,
    /// Appended to the system prompt, e.g. the skill catalog.
    pub prompt_appendix: Option<String>,
    /// Specialised sub-agents the main agent can hand work to by name.
    pub delegates: Vec<Delegate>,
    /// Hooks run at the session's moments (plugins' command hooks).
    pub hooks: Option<Arc<dyn SessionHooks>>,
}

/// A specialised sub-agent the main agent hands work to by calling it as a
/// tool (e.g. `browser`): it gets a fresh context, its own system prompt and
/// only its own tools, runs to completion and returns its report as the
/// tool's result. Its events and records carry its own agent id, so the
/// transcript holds both sides.
#[derive(Clone)]
pub struct Delegate {
    /// The tool name the main agent calls, e.g. `browser`.
    pub name: String,
    /// What the main agent is told the delegate is for.
    pub description: String,
    /// The delegate's system prompt.
    pub system_prompt: String,
    /// Its tools, and nothing else.
    pub tools: Vec<Arc<dyn Tool>>,
    /// The model that runs it; `None` runs it on the session's model.
    pub model: Option<Arc<dyn ModelClient>>,
}

impl std::fmt::Debug for Delegate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delegate")
            .field("name", &self.name)
            .field(
                "tools",
                &self.tools.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .field(
                "model",
                &self
                    .model
                    .as_ref()
                    .map(|m| format!("{}:{}", m.provider(), m.model())),
            )
            .finish_non_exhaustive()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_turns: 200,
            max_total_tokens: None,
            max_wall: None,
            max_output_tokens: 16_000,
            compact_at: 0.8,
            subagent_max_turns: 50,
            interactive: true,
            today: crate::transcript::now_rfc3339()
                .get(..10)
                .unwrap_or_default()
                .to_owned(),
            system_prompt: None,
            prompt_appendix: None,
            delegates: Vec::new(),
            hooks: None,
        }
    }
}

/// Everything a session needs to start.
pub struct SessionParams {
    /// Session id.
    pub id: String,
    /// The model.
    pub model: Arc<dyn ModelClient>,
    /// The cubicle.
    pub computer: Arc<dyn Computer>,
    /// Where the session is recorded.
    pub transcript: Arc<TranscriptWriter>,
    /// The tools that run over the computer (session tools are added).
    pub tools: Vec<Arc<dyn Tool>>,
    /// The permission gate.
    pub gate: Arc<dyn PermissionGate>,
    /// Limits and knobs.
    pub config: SessionConfig,
    /// Conversation so far, when resuming.
    pub history: Vec<Message>,
    /// The tamper-evident audit log, when one is kept.
    pub audit: Option<Arc<cubicle_audit::AuditLog>>,
}

/// A front end's handle on a running session.
pub struct SessionHandle {
    /// Send ops here.
    pub ops: mpsc::UnboundedSender<Op>,
    /// Events arrive here; the stream ends after [`Event::SessionEnded`].
    pub events: mpsc::UnboundedReceiver<EventMsg>,
    /// Finishes when the session ends, with its total usage.
    pub done: JoinHandle<Usage>,
}

/// State shared by the main agent, its sub-agents, and the op router.
pub(crate) struct Shared {
    pub id: String,
    pub model: Arc<dyn ModelClient>,
    pub computer: Arc<dyn Computer>,
    pub transcript: Arc<TranscriptWriter>,
    pub gate: Arc<dyn PermissionGate>,
    pub config: SessionConfig,
    audit: Option<Arc<cubicle_audit::AuditLog>>,
    events: mpsc::UnboundedSender<EventMsg>,
    questions: Mutex<HashMap<String, oneshot::Sender<Vec<Answer>>>>,
    approvals: Mutex<HashMap<String, oneshot::Sender<ApprovalDecision>>>,
    turn_cancel: Mutex<Option<CancellationToken>>,
    /// Why a hook asked to stop (`"continue": false`), until the main
    /// agent's turn ends on it.
    hook_stop: Mutex<Option<String>>,
    pub session_allows: Mutex<HashSet<String>>,
    /// Serialises questions and approvals so a person sees one at a time.
    pub ask_lock: tokio::sync::Mutex<()>,
    pub path_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub usage: Mutex<Usage>,
    pub turns: AtomicU32,
    pub subagents: AtomicU32,
    pub asks: AtomicU32,
    pub started: Instant,
}

impl Shared {
    /// Sends an event to the front ends; a front end that went away is not an error.
    pub fn emit(&self, agent: Option<&str>, event: Event) {
        let _ = self.events.send(EventMsg {
            agent: agent.map(str::to_owned),
            event,
        });
    }

    /// Records an entry; a failure to record is reported, not fatal, so the
    /// person still sees the work (the error names the transcript).
    pub fn record(&self, agent: Option<&str>, record: Record) {
        if let Err(e) = self.transcript.append(agent, record) {
            tracing::error!("transcript write failed: {e}");
            self.emit(
                agent,
                Event::Notice {
                    level: NoticeLevel::Error,
                    message: format!("could not record to the transcript: {e}"),
                },
            );
        }
    }

    /// Appends to the audit log, if one is kept. A failed append is shown
    /// to the person: the record must not silently have a gap.
    pub fn audit(&self, kind: cubicle_audit::RecordKind) {
        if let Some(log) = &self.audit
            && let Err(e) = log.append(Some(&self.id), kind)
        {
            tracing::error!("audit append failed: {e}");
            self.emit(
                None,
                Event::Notice {
                    level: NoticeLevel::Error,
                    message: format!("could not write to the audit log: {e}"),
                },
            );
        }
    }

    /// Runs the session's hooks for `point`, if it has any. What they tell
    /// the person is shown; their failures are shown and recorded, and never
    /// stop the session.
    pub async fn hooks(&self, agent: Option<&str>, point: HookPoint<'_>) -> HookVerdict {
        let Some(hooks) = &self.config.hooks else {
            return HookVerdict::default();
        };
        let verdict = hooks.run(agent, point).await;
        for m in &verdict.messages {
            self.emit(
                agent,
                Event::Notice {
                    level: NoticeLevel::Info,
                    message: m.clone(),
                },
            );
        }
        for e in &verdict.errors {
            tracing::warn!("hook: {e}");
            self.record(
                agent,
                Record::Error {
                    message: format!("hook: {e}"),
                },
            );
            self.emit(
                agent,
                Event::Notice {
                    level: NoticeLevel::Warning,
                    message: e.clone(),
                },
            );
        }
        if let Some(why) = &verdict.stop {
            self.emit(
                agent,
                Event::Notice {
                    level: NoticeLevel::Warning,
                    message: format!("a hook stopped the agent: {why}"),
                },
            );
            lock(&self.hook_stop).get_or_insert_with(|| why.clone());
        }
        verdict
    }

    /// Whether a hook has asked to stop and the main agent has not yet
    /// ended its turn on it.
    pub fn stop_requested(&self) -> Option<String> {
        lock(&self.hook_stop).clone()
    }

    /// Takes a hook's request to stop: the main agent ends its turn on it.
    pub fn take_stop(&self) -> Option<String> {
        lock(&self.hook_stop).take()
    }

    /// Registers a pending question and returns where its answer arrives.
    pub fn wait_answer(&self, id: &str) -> oneshot::Receiver<Vec<Answer>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.questions).insert(id.to_owned(), tx);
        rx
    }

    /// Registers a pending approval and returns where the decision arrives.
    pub fn wait_approval(&self, id: &str) -> oneshot::Receiver<ApprovalDecision> {
        let (tx, rx) = oneshot::channel();
        lock(&self.approvals).insert(id.to_owned(), tx);
        rx
    }

    /// A fresh id for a question or approval.
    pub fn next_ask_id(&self) -> String {
        format!("ask-{}", self.asks.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Total usage so far.
    pub fn usage(&self) -> Usage {
        *lock(&self.usage)
    }

    /// The lock serialising changes to one path.
    pub fn path_lock(&self, path: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.path_locks)
            .entry(path.to_owned())
            .or_default()
            .clone()
    }
}

/// Locks a std mutex, recovering from poisoning (the data are plain maps
/// and counters that a panicking holder cannot leave half-updated).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts a session. It waits for [`Op::UserMessage`]s and runs a turn for
/// each; [`Op::Shutdown`] (or dropping the ops sender) ends it.
pub fn spawn(params: SessionParams) -> SessionHandle {
    let (ops_tx, ops_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (user_tx, user_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        id: params.id,
        model: params.model,
        computer: params.computer,
        transcript: params.transcript,
        gate: params.gate,
        config: params.config,
        audit: params.audit,
        events: events_tx,
        questions: Mutex::default(),
        approvals: Mutex::default(),
        turn_cancel: Mutex::default(),
        hook_stop: Mutex::default(),
        session_allows: Mutex::default(),
        ask_lock: tokio::sync::Mutex::new(()),
        path_locks: Mutex::default(),
        usage: Mutex::default(),
        turns: AtomicU32::new(0),
        subagents: AtomicU32::new(0),
        asks: AtomicU32::new(0),
        started: Instant::now(),
    });
    tokio::spawn(route_ops(shared.clone(), ops_rx, user_tx));
    let agent = Agent::main(shared.clone(), params.tools, params.history);
    let done = tokio::spawn(run_session(shared, agent, user_rx));
    SessionHandle {
        ops: ops_tx,
        events: events_rx,
        done,
    }
}

async fn run_session(
    shared: Arc<Shared>,
    mut agent: Agent,
    mut user_rx: mpsc::UnboundedReceiver<Option<String>>,
) -> Usage {
    let info = shared.computer.info().clone();
    shared.emit(
        None,
        Event::SessionStarted {
            session_id: shared.id.clone(),
            model: format!("{}:{}", shared.model.provider(), shared.model.model()),
            backend: info.backend.clone(),
            isolated: info.isolated,
            grants: info.grants.clone(),
        },
    );
    let source = if agent.has_history() {
        "resume"
    } else {
        "startup"
    };
    let start = shared.hooks(None, HookPoint::SessionStart { source }).await;
    agent.add_context(start.additional_context);
    while let Some(text) = user_rx.recv().await {
        let cancel = CancellationToken::new();
        *lock(&shared.turn_cancel) = Some(cancel.clone());
        let reason = agent.run_turn(text, &cancel).await;
        *lock(&shared.turn_cancel) = None;
        // A stop asked for in a turn that ended otherwise does not carry
        // over to the next one.
        shared.take_stop();
        shared.emit(
            None,
            Event::TurnEnded {
                reason,
                usage: shared.usage(),
            },
        );
    }
    shared
        .hooks(None, HookPoint::SessionEnd { reason: "other" })
        .await;
    shared.emit(None, Event::SessionEnded);
    shared.usage()
}

async fn route_ops(
    shared: Arc<Shared>,
    mut ops: mpsc::UnboundedReceiver<Op>,
    user_tx: mpsc::UnboundedSender<Option<String>>,
) {
    while let Some(op) = ops.recv().await {
        match op {
            Op::UserMessage { text } => {
                let _ = user_tx.send(Some(text));
            }
            Op::Continue => {
                let _ = user_tx.send(None);
            }
            Op::Answer { id, answers } => match lock(&shared.questions).remove(&id) {
                Some(tx) => {
                    let _ = tx.send(answers);
                }
                None => tracing::warn!("answer for unknown question {id}"),
            },
            Op::Approve { id, decision } => match lock(&shared.approvals).remove(&id) {
                Some(tx) => {
                    let _ = tx.send(decision);
                }
                None => tracing::warn!("decision for unknown approval {id}"),
            },
            Op::Interrupt => {
                if let Some(c) = lock(&shared.turn_cancel).as_ref() {
                    c.cancel();
                }
            }
            Op::Shutdown => {
                if let Some(c) = lock(&shared.turn_cancel).as_ref() {
                    c.cancel();
                }
                break;
            }
        }
    }
    // Dropping `user_tx` ends the session once the current turn is over.
}

/// Why a turn ended, for callers that only need to know whether it succeeded.
pub fn turn_succeeded(reason: &TurnEndReason) -> bool {
    matches!(reason, TurnEndReason::Done)
}

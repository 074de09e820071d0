//! The agent loop: call the model, run the tools it asks for (concurrently),
//! feed the results back, until the model ends its turn or a budget, an error
//! or the person stops it. The same loop runs sub-agents.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cubicle_models::{ModelClient, ModelDelta, ModelError, ModelRequest, ModelResponse};
use cubicle_protocol::conversation::{ContentBlock, Message, StopReason, ToolSpec};
use cubicle_protocol::events::{Event, NoticeLevel, TurnEndReason};
use cubicle_protocol::transcript::Record;
use cubicle_tools::output::truncate_middle;
use cubicle_tools::session::{ask_user_spec, delegate_spec, task_spec, todo_write_spec};
use cubicle_tools::{Tool, ToolContext, ToolOutput};
use futures::future::join_all;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hooks::{HookPermission, HookPoint};
use crate::prompt;
use crate::session::{Delegate, Shared, lock};
use crate::transcript::{compaction_message, push_user};

/// Hard cap on the text of one tool result, whatever the tool (a safety net
/// under each tool's own, tighter limit).
const MAX_TOOL_RESULT_CHARS: usize = 40_000;

/// Most times Stop hooks may make one turn go on, so that a hook that
/// always blocks cannot keep the agent running forever.
const MAX_STOP_CONTINUATIONS: u32 = 3;

/// Which session-level tools an agent has.
#[derive(Debug, Clone, Copy)]
struct SessionTools {
    todo: bool,
    ask: bool,
    task: bool,
}

/// The specs of `tools` plus the session tools and delegates an agent has.
fn build_specs(
    tools: &[Arc<dyn Tool>],
    session: SessionTools,
    delegates: &[Delegate],
) -> Vec<ToolSpec> {
    let mut specs: Vec<ToolSpec> = tools.iter().map(|t| t.spec()).collect();
    if session.task {
        specs.extend(
            delegates
                .iter()
                .map(|d| delegate_spec(&d.name, &d.description)),
        );
    }
    if session.todo {
        specs.push(todo_write_spec());
    }
    if session.ask {
        specs.push(ask_user_spec());
    }
    if session.task {
        specs.push(task_spec());
    }
    specs
}

/// One agent: the main one, or a sub-agent started by `task`.
pub(crate) struct Agent {
    id: Option<String>,
    shared: Arc<Shared>,
    /// The model this agent talks to: the session's, or a delegate's own.
    model: Arc<dyn ModelClient>,
    tools: Vec<Arc<dyn Tool>>,
    session_tools: SessionTools,
    /// Tool specs, built once: generating JSON Schemas per call is not free.
    specs: Vec<ToolSpec>,
    /// Shared with the in-flight model request; copied only if a request
    /// still holds it when the history changes.
    history: Arc<Vec<Message>>,
    system: String,
    max_turns: Option<u32>,
    turns: u32,
    /// Prompt size of the last call, for deciding when to compact.
    last_prompt_tokens: u64,
    /// Hook context waiting to go out with the next user message.
    pending_context: Vec<String>,
    /// How often Stop hooks made this turn go on.
    stop_continuations: u32,
}

impl Agent {
    /// The session's main agent.
    pub fn main(shared: Arc<Shared>, tools: Vec<Arc<dyn Tool>>, history: Vec<Message>) -> Self {
        let info = shared.computer.info();
        let mut system = shared.config.system_prompt.clone().unwrap_or_else(|| {
            prompt::system_prompt(info, &shared.config.today, shared.config.interactive)
        });
        if let Some(extra) = shared.config.prompt_appendix.as_deref() {
            system.push_str("\n\n");
            system.push_str(extra);
        }
        let session_tools = SessionTools {
            todo: true,
            ask: true,
            task: true,
        };
        Self {
            id: None,
            model: shared.model.clone(),
            specs: build_specs(&tools, session_tools, &shared.config.delegates),
            tools,
            session_tools,
            history: Arc::new(history),
            system,
            max_turns: None,
            turns: 0,
            last_prompt_tokens: 0,
            pending_context: Vec::new(),
            stop_continuations: 0,
            shared,
        }
    }

    fn sub(
        shared: Arc<Shared>,
        id: String,
        model: Option<Arc<dyn ModelClient>>,
        tools: Vec<Arc<dyn Tool>>,
        system: String,
    ) -> Self {
        let max_turns = Some(shared.config.subagent_max_turns);
        let session_tools = SessionTools {
            todo: false,
            ask: false,
            task: false,
        };
        Self {
            id: Some(id),
            model: model.unwrap_or_else(|| shared.model.clone()),
            specs: build_specs(&tools, session_tools, &[]),
            tools,
            session_tools,
            history: Arc::default(),
            system,
            max_turns,
            turns: 0,
            last_prompt_tokens: 0,
            pending_context: Vec::new(),
            stop_continuations: 0,
            shared,
        }
    }

    /// Whether the conversation has anything in it (a resumed session).
    pub fn has_history(&self) -> bool {
        !self.history.is_empty()
    }

    /// Keeps hook context to send with the next user message.
    pub fn add_context(&mut self, context: Vec<String>) {
        self.pending_context.extend(context);
    }

    fn agent(&self) -> Option<&str> {
        self.id.as_deref()
    }

    fn emit(&self, event: Event) {
        self.shared.emit(self.agent(), event);
    }

    fn record(&self, record: Record) {
        self.shared.record(self.agent(), record);
    }

    fn specs(&self) -> Vec<ToolSpec> {
        self.specs.clone()
    }

    /// Runs one turn: adds `user_text` (if any) and loops until the model is done.
    pub async fn run_turn(
        &mut self,
        user_text: Option<String>,
        cancel: &CancellationToken,
    ) -> TurnEndReason {
        self.stop_continuations = 0;
        // A SessionStart hook may already have asked to stop.
        if let Some(end) = self.hook_stopped() {
            return end;
        }
        if let Some(text) = user_text {
            if self.id.is_none() {
                let verdict = self
                    .shared
                    .hooks(None, HookPoint::UserPromptSubmit { prompt: &text })
                    .await;
                if let Some(end) = self.hook_stopped() {
                    return end;
                }
                if let Some(reason) = verdict.blocked {
                    return self.fail(format!("a hook blocked the prompt: {reason}"));
                }
                self.pending_context.extend(verdict.additional_context);
            }
            let mut message = Message::user_text(text);
            message
                .content
                .extend(self.pending_context.drain(..).map(hook_context_block));
            self.record(Record::UserMessage {
                message: message.clone(),
            });
            push_user(Arc::make_mut(&mut self.history), message.content);
        }
        let deadline = self.shared.config.max_wall.map(|w| self.shared.started + w);
        loop {
            if let Some(reason) = self.budget_exhausted() {
                self.record(Record::Error {
                    message: reason.clone(),
                });
                return TurnEndReason::Budget { detail: reason };
            }
            if cancel.is_cancelled() {
                return self.interrupted("interrupted by the person");
            }
            if let Some(end) = self.hook_stopped() {
                return end;
            }
            if self.needs_compaction() {
                self.compact(cancel).await;
            }
            let step = async {
                let response = match self.call_model(cancel).await {
                    Ok(r) => r,
                    Err(end) => return Some(end),
                };
                self.after_response(response, cancel).await
            };
            let outcome = match deadline {
                Some(d) => {
                    let timed_out = tokio::select! {
                        o = step => Ok(o),
                        () = tokio::time::sleep_until(d.into()) => Err(()),
                    };
                    match timed_out {
                        Ok(o) => o,
                        Err(()) => {
                            cancel.cancel();
                            let detail = "the session's time limit was reached".to_owned();
                            self.close_open_calls("stopped: the session's time limit was reached");
                            self.record(Record::Error {
                                message: detail.clone(),
                            });
                            Some(TurnEndReason::Budget { detail })
                        }
                    }
                }
                None => step.await,
            };
            if let Some(end) = outcome {
                return end;
            }
        }
    }

    fn budget_exhausted(&self) -> Option<String> {
        let cfg = &self.shared.config;
        if self.shared.turns.load(Ordering::Relaxed) >= cfg.max_turns {
            return Some(format!(
                "the session's limit of {} model calls was reached",
                cfg.max_turns
            ));
        }
        if let Some(max) = self.max_turns
            && self.turns >= max
        {
            return Some(format!(
                "this sub-agent's limit of {max} model calls was reached"
            ));
        }
        if let Some(max) = cfg.max_total_tokens {
            let u = self.shared.usage();
            if u.total_input() + u.output_tokens >= max {
                return Some(format!("the session's limit of {max} tokens was reached"));
            }
        }
        if let Some(w) = cfg.max_wall
            && self.shared.started.elapsed() >= w
        {
            return Some("the session's time limit was reached".to_owned());
        }
        None
    }

    fn needs_compaction(&self) -> bool {
        let window = self.model.context_window();
        window > 0
            && self.history.len() > 2
            && self.last_prompt_tokens as f64 >= self.shared.config.compact_at * window as f64
    }

    /// Calls the model, streaming deltas to the front ends. On failure the
    /// error is recorded and the turn's end reason returned.
    async fn call_model(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, TurnEndReason> {
        let mut compacted_for_length = false;
        loop {
            let turn = self.shared.turns.fetch_add(1, Ordering::Relaxed) + 1;
            self.turns += 1;
            self.emit(Event::TurnStarted { turn });
            let req = ModelRequest {
                system: self.system.clone(),
                messages: self.history.clone(),
                tools: self.specs(),
                max_tokens: self.shared.config.max_output_tokens,
                agent: self.id.clone(),
            };
            let started = Instant::now();
            let result = self.complete_streaming(&req, cancel).await;
            match result {
                Ok(resp) => {
                    let model = format!("{}:{}", self.model.provider(), self.model.model());
                    self.record(Record::ModelResponse {
                        message: resp.message.clone(),
                        usage: resp.usage,
                        stop_reason: resp.stop_reason.clone(),
                        model,
                        duration_ms: started.elapsed().as_millis() as u64,
                    });
                    lock(&self.shared.usage).add(&resp.usage);
                    self.shared.audit(cubicle_audit::RecordKind::ModelCall {
                        provider: self.model.provider().to_owned(),
                        model: self.model.model().to_owned(),
                        input_tokens: resp.usage.input_tokens,
                        output_tokens: resp.usage.output_tokens,
                        cache_read: resp.usage.cache_read_input_tokens,
                        cache_write: resp.usage.cache_creation_input_tokens,
                    });
                    self.last_prompt_tokens = resp.usage.total_input() + resp.usage.output_tokens;
                    return Ok(resp);
                }
                Err(ModelError::Cancelled) => {
                    return Err(self.interrupted("interrupted by the person"));
                }
                Err(ModelError::ContextTooLong(msg)) if !compacted_for_length => {
                    compacted_for_length = true;
                    self.emit(Event::Notice {
                        level: NoticeLevel::Warning,
                        message: format!("the conversation is too long ({msg}); compacting it"),
                    });
                    if !self.compact(cancel).await {
                        return Err(self.fail(format!(
                            "the conversation is too long for the model and could not be compacted: {msg}"
                        )));
                    }
                }
                Err(e) => return Err(self.fail(e.to_string())),
            }
        }
    }

    async fn complete_streaming(
        &self,
        req: &ModelRequest,
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, ModelError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let shared = self.shared.clone();
        let agent = self.id.clone();
        let forward = tokio::spawn(async move {
            while let Some(delta) = rx.recv().await {
                let event = match delta {
                    ModelDelta::Text(text) => Event::TextDelta { text },
                    ModelDelta::Thinking(text) => Event::ThinkingDelta { text },
                    ModelDelta::ToolUseStart { .. } => continue,
                    ModelDelta::Retrying {
                        attempt,
                        wait,
                        reason,
                    } => Event::Notice {
                        level: NoticeLevel::Warning,
                        message: format!(
                            "{reason}; retrying in {:.1} s (attempt {attempt})",
                            wait.as_secs_f64()
                        ),
                    },
                };
                shared.emit(agent.as_deref(), event);
            }
        });
        let result = self.model.complete(req, Some(&tx), cancel).await;
        drop(tx);
        let _ = forward.await;
        result
    }

    fn fail(&self, message: String) -> TurnEndReason {
        self.record(Record::Error {
            message: message.clone(),
        });
        self.emit(Event::Notice {
            level: NoticeLevel::Error,
            message: message.clone(),
        });
        TurnEndReason::Error { message }
    }

    /// Ends the turn if a hook asked to stop (`"continue": false`). The
    /// main agent consumes the request, records it and ends its turn as
    /// done (the stop is the hook's decision, not a failure); a sub-agent
    /// ends with an error so that its caller reaches the check too.
    fn hook_stopped(&mut self) -> Option<TurnEndReason> {
        let why = match self.id {
            None => self.shared.take_stop()?,
            Some(_) => self.shared.stop_requested()?,
        };
        let reason = format!("stopped by a hook: {why}");
        self.close_open_calls(&reason);
        self.record(Record::Interrupted {
            reason: reason.clone(),
        });
        Some(match self.id {
            None => TurnEndReason::Done,
            Some(_) => TurnEndReason::Error { message: reason },
        })
    }

    fn interrupted(&mut self, reason: &str) -> TurnEndReason {
        self.close_open_calls("interrupted by the person before this call finished");
        self.record(Record::Interrupted {
            reason: reason.to_owned(),
        });
        TurnEndReason::Interrupted
    }

    /// Gives every tool call of the last response that has no result an
    /// error result, so the history stays valid to send.
    fn close_open_calls(&mut self, why: &str) {
        let Some(last) = self.history.last() else {
            return;
        };
        if last.role != cubicle_protocol::conversation::Role::Assistant {
            return;
        }
        let calls: Vec<(String, String)> = last
            .tool_uses()
            .map(|u| (u.id.to_owned(), u.name.to_owned()))
            .collect();
        if calls.is_empty() {
            return;
        }
        let mut blocks = Vec::new();
        for (id, tool) in calls {
            let out = ToolOutput::error(why);
            self.record(Record::ToolResult {
                call_id: id.clone(),
                tool,
                content: out.content.clone(),
                is_error: true,
                duration_ms: 0,
            });
            blocks.push(ContentBlock::ToolResult {
                tool_use_id: id,
                content: out.content,
                is_error: true,
            });
        }
        push_user(Arc::make_mut(&mut self.history), blocks);
    }

    /// Handles a response: ends the turn, or runs its tool calls and returns
    /// `None` to go on.
    async fn after_response(
        &mut self,
        resp: ModelResponse,
        cancel: &CancellationToken,
    ) -> Option<TurnEndReason> {
        self.emit(Event::AssistantMessage {
            message: resp.message.clone(),
            usage: resp.usage,
        });
        let calls: Vec<(String, String, Value)> = resp
            .message
            .tool_uses()
            .map(|u| (u.id.to_owned(), u.name.to_owned(), u.input.clone()))
            .collect();
        Arc::make_mut(&mut self.history).push(resp.message);
        if calls.is_empty() {
            match resp.stop_reason {
                StopReason::PauseTurn => return None,
                StopReason::MaxTokens => {
                    self.emit(Event::Notice {
                        level: NoticeLevel::Warning,
                        message: "the model's answer was cut off at its output limit".into(),
                    });
                }
                _ => {}
            }
            let go_on = self.stop_hooks().await;
            return if go_on {
                None
            } else {
                Some(self.hook_stopped().unwrap_or(TurnEndReason::Done))
            };
        }
        let results: Arc<Mutex<HashMap<String, ToolOutput>>> = Arc::default();
        let this = &*self;
        let run_all = join_all(calls.iter().map(|(id, name, input)| {
            let results = results.clone();
            async move {
                let out = this.run_call(id, name, input, cancel).await;
                lock(&results).insert(id.clone(), out);
            }
        }));
        tokio::select! {
            _ = run_all => {}
            () = cancel.cancelled() => {}
        }
        let mut done = std::mem::take(&mut *lock(&results));
        let mut blocks = Vec::with_capacity(calls.len());
        for (id, name, _) in &calls {
            let out = match done.remove(id) {
                Some(out) => out,
                None => {
                    let out =
                        ToolOutput::error("interrupted by the person before this call finished");
                    self.record(Record::ToolResult {
                        call_id: id.clone(),
                        tool: name.clone(),
                        content: out.content.clone(),
                        is_error: true,
                        duration_ms: 0,
                    });
                    out
                }
            };
            blocks.push(ContentBlock::ToolResult {
                tool_use_id: id.clone(),
                content: out.content,
                is_error: out.is_error,
            });
        }
        push_user(Arc::make_mut(&mut self.history), blocks);
        if cancel.is_cancelled() {
            self.record(Record::Interrupted {
                reason: "interrupted by the person".into(),
            });
            return Some(TurnEndReason::Interrupted);
        }
        None
    }

    /// Runs the Stop (or SubagentStop) hooks as the agent is about to end its
    /// turn; returns whether one blocked, in which case its reason has gone
    /// to the model as a user message and the loop goes on.
    async fn stop_hooks(&mut self) -> bool {
        let stop_hook_active = self.stop_continuations > 0;
        let point = match self.id {
            None => HookPoint::Stop { stop_hook_active },
            Some(_) => HookPoint::SubagentStop { stop_hook_active },
        };
        let verdict = self.shared.hooks(self.agent(), point).await;
        if verdict.stop.is_some() {
            return false;
        }
        let Some(reason) = verdict.blocked else {
            return false;
        };
        if self.stop_continuations >= MAX_STOP_CONTINUATIONS {
            self.emit(Event::Notice {
                level: NoticeLevel::Warning,
                message: format!(
                    "a hook blocked stopping again ({reason}); the agent stops anyway after going on {MAX_STOP_CONTINUATIONS} times"
                ),
            });
            return false;
        }
        self.stop_continuations += 1;
        self.emit(Event::Notice {
            level: NoticeLevel::Info,
            message: format!("a hook asked the agent to go on: {reason}"),
        });
        let message = Message::user_text(format!("A hook stopped you from ending here: {reason}"));
        self.record(Record::UserMessage {
            message: message.clone(),
        });
        push_user(Arc::make_mut(&mut self.history), message.content);
        true
    }

    /// Runs one tool call through the gate and records its result.
    async fn run_call(
        &self,
        id: &str,
        name: &str,
        input: &Value,
        cancel: &CancellationToken,
    ) -> ToolOutput {
        let started = Instant::now();
        let tool = self.tools.iter().find(|t| t.name() == name).cloned();
        let summary = match (&tool, self.delegate(name)) {
            (Some(t), _) => t.summary(input),
            (None, Some(d)) => format!(
                "{} sub-agent: {}",
                d.name,
                input
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("task")
            ),
            (None, None) => session_tool_summary(name, input),
        };
        self.emit(Event::ToolCallStarted {
            call_id: id.to_owned(),
            name: name.to_owned(),
            input: input.clone(),
            summary: summary.clone(),
        });
        let out = self.dispatch(id, name, input, tool, &summary, cancel).await;
        let out = cap_output(out);
        for f in &out.files_written {
            self.shared.audit(cubicle_audit::RecordKind::FileWritten {
                path: f.path.clone(),
                size: f.size,
                sha256: f.sha256.clone(),
            });
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        self.record(Record::ToolResult {
            call_id: id.to_owned(),
            tool: name.to_owned(),
            content: out.content.clone(),
            is_error: out.is_error,
            duration_ms,
        });
        self.emit(Event::ToolCallFinished {
            call_id: id.to_owned(),
            is_error: out.is_error,
            output: out.text_summary(),
            duration_ms,
        });
        out
    }

    async fn dispatch(
        &self,
        id: &str,
        name: &str,
        input: &Value,
        tool: Option<Arc<dyn Tool>>,
        summary: &str,
        cancel: &CancellationToken,
    ) -> ToolOutput {
        let delegate = self.delegate(name);
        let known = tool.is_some()
            || delegate.is_some()
            || (self.session_tools.todo && name == "todo_write")
            || (self.session_tools.ask && name == "ask_user")
            || (self.session_tools.task && name == "task");
        if !known {
            let names: Vec<String> = self.specs().into_iter().map(|s| s.name).collect();
            return ToolOutput::error(format!(
                "there is no tool named `{name}`; the tools are: {}",
                names.join(", ")
            ));
        }
        if !input.is_object() {
            let raw = match input {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return ToolOutput::error(format!(
                "invalid arguments for `{name}`: they are not a JSON object (got: {}). Call the tool again with valid JSON arguments.",
                cubicle_tools::output::clip(&raw, 300)
            ));
        }
        let pre = self
            .shared
            .hooks(
                self.agent(),
                HookPoint::PreToolUse {
                    tool: name,
                    input,
                    call_id: id,
                },
            )
            .await;
        if let Some(why) = &pre.stop {
            let reason = format!("stopped by a hook: {why}");
            self.record(Record::Decision {
                call_id: id.to_owned(),
                tool: name.to_owned(),
                allowed: false,
                reason: reason.clone(),
            });
            return ToolOutput::error(reason);
        }
        let blocked = pre.blocked.clone().or_else(|| {
            (pre.permission == Some(HookPermission::Deny)).then(|| "denied by a hook".to_owned())
        });
        if let Some(reason) = blocked {
            self.record(Record::Decision {
                call_id: id.to_owned(),
                tool: name.to_owned(),
                allowed: false,
                reason: format!("blocked by a hook: {reason}"),
            });
            return ToolOutput::error(format!("blocked by a hook: {reason}"));
        }
        let input = match &pre.updated_input {
            Some(changed) if changed.is_object() => changed,
            Some(_) | None => input,
        };
        if let Err(denied) = crate::approval::check(
            &self.shared,
            self.agent(),
            id,
            name,
            input,
            summary,
            pre.permission,
        )
        .await
        {
            return denied;
        }
        let mut out = match name {
            "todo_write" if self.session_tools.todo => crate::builtin::todo_write(self, input),
            "ask_user" if self.session_tools.ask => {
                crate::builtin::ask_user(&self.shared, self.agent(), input, cancel).await
            }
            "task" if self.session_tools.task => self.run_task(input, cancel).await,
            _ if delegate.is_some() => match delegate {
                Some(d) => self.run_delegate(d, input, cancel).await,
                None => ToolOutput::error(format!("there is no tool named `{name}`")),
            },
            _ => match tool {
                Some(tool) => self.run_tool(tool, id, input, cancel).await,
                None => ToolOutput::error(format!("there is no tool named `{name}`")),
            },
        };
        let post = self
            .shared
            .hooks(
                self.agent(),
                HookPoint::PostToolUse {
                    tool: name,
                    input,
                    call_id: id,
                    response: &out.text_summary(),
                    is_error: out.is_error,
                },
            )
            .await;
        out.content.extend(
            post.blocked
                .into_iter()
                .chain(post.additional_context)
                .map(|text| {
                    cubicle_protocol::conversation::ToolResultContent::text(format!(
                        "Context from a hook: {text}"
                    ))
                }),
        );
        out
    }

    async fn run_tool(
        &self,
        tool: Arc<dyn Tool>,
        id: &str,
        input: &Value,
        cancel: &CancellationToken,
    ) -> ToolOutput {
        let path_lock = tool.writes_path(input).map(|p| self.shared.path_lock(&p));
        let _guard = match &path_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let (live_tx, mut live_rx) =
            mpsc::channel::<cubicle_sandbox::OutputChunk>(cubicle_sandbox::LIVE_OUTPUT_CHUNKS);
        let shared = self.shared.clone();
        let agent = self.id.clone();
        let call_id = id.to_owned();
        let forward = tokio::spawn(async move {
            while let Some(chunk) = live_rx.recv().await {
                shared.emit(
                    agent.as_deref(),
                    Event::ToolOutput {
                        call_id: call_id.clone(),
                        stream: chunk.stream,
                        text: String::from_utf8_lossy(&chunk.data).into_owned(),
                    },
                );
            }
        });
        let ctx = ToolContext {
            computer: self.shared.computer.clone(),
            call_id: id.to_owned(),
            live: Some(live_tx),
        };
        let out = tokio::select! {
            out = tool.call(input.clone(), &ctx) => out,
            () = cancel.cancelled() => ToolOutput::error("interrupted by the person before this call finished"),
        };
        drop(ctx);
        let _ = forward.await;
        out
    }

    /// The `task` tool: runs a sub-agent to completion in the same cubicle.
    async fn run_task(&self, input: &Value, cancel: &CancellationToken) -> ToolOutput {
        let args: cubicle_tools::session::TaskInput =
            match cubicle_tools::parse_input("task", input) {
                Ok(a) => a,
                Err(e) => return e,
            };
        let tools: Vec<Arc<dyn Tool>> = match &args.tools {
            None => self.tools.clone(),
            Some(names) => {
                let mut picked = Vec::new();
                for n in names {
                    match self.tools.iter().find(|t| t.name() == n) {
                        Some(t) => picked.push(t.clone()),
                        None => {
                            let have: Vec<&str> = self.tools.iter().map(|t| t.name()).collect();
                            return ToolOutput::error(format!(
                                "a sub-agent cannot have the tool `{n}`; choose from: {}",
                                have.join(", ")
                            ));
                        }
                    }
                }
                picked
            }
        };
        let system = prompt::subagent_prompt(self.shared.computer.info());
        self.run_subagent("task", None, tools, system, args.prompt, cancel)
            .await
    }

    /// The delegate `d` (one of the session's [`Delegate`]s) called as a
    /// tool: runs it to completion with only its own tools.
    async fn run_delegate(
        &self,
        d: &Delegate,
        input: &Value,
        cancel: &CancellationToken,
    ) -> ToolOutput {
        let args: cubicle_tools::session::DelegateInput =
            match cubicle_tools::parse_input(&d.name, input) {
                Ok(a) => a,
                Err(e) => return e,
            };
        self.run_subagent(
            &d.name,
            d.model.clone(),
            d.tools.clone(),
            d.system_prompt.clone(),
            args.prompt,
            cancel,
        )
        .await
    }

    /// The main agent's delegate called `name`, if it has one.
    fn delegate(&self, name: &str) -> Option<&Delegate> {
        if !self.session_tools.task {
            return None;
        }
        self.shared.config.delegates.iter().find(|d| d.name == name)
    }

    /// Runs a sub-agent (`kind`: `task` or a delegate's name) to completion
    /// in the same cubicle and turns its last words into a tool result.
    async fn run_subagent(
        &self,
        kind: &str,
        model: Option<Arc<dyn ModelClient>>,
        tools: Vec<Arc<dyn Tool>>,
        system: String,
        prompt: String,
        cancel: &CancellationToken,
    ) -> ToolOutput {
        let n = self.shared.subagents.fetch_add(1, Ordering::Relaxed) + 1;
        let sub_id = format!("{kind}-{n}");
        let mut sub = Agent::sub(self.shared.clone(), sub_id.clone(), model, tools, system);
        let reason = Box::pin(sub.run_turn(Some(prompt), cancel)).await;
        let report = sub
            .history
            .iter()
            .rev()
            .find(|m| m.role == cubicle_protocol::conversation::Role::Assistant)
            .map(Message::text)
            .unwrap_or_default();
        match reason {
            TurnEndReason::Done if !report.trim().is_empty() => ToolOutput::text(report),
            TurnEndReason::Done => ToolOutput::text(format!(
                "the sub-agent ({sub_id}) finished without a report"
            )),
            TurnEndReason::Interrupted => {
                ToolOutput::error(format!("the sub-agent ({sub_id}) was interrupted"))
            }
            TurnEndReason::Budget { detail } | TurnEndReason::Error { message: detail } => {
                ToolOutput::error(format!(
                    "the sub-agent ({sub_id}) stopped: {detail}. Its last words: {}",
                    if report.is_empty() { "(none)" } else { &report }
                ))
            }
        }
    }

    /// Replaces the conversation with a model-written summary. Returns whether
    /// it did.
    async fn compact(&mut self, cancel: &CancellationToken) -> bool {
        let tokens_before = self.last_prompt_tokens;
        let pre = self
            .shared
            .hooks(self.agent(), HookPoint::PreCompact { trigger: "auto" })
            .await;
        let mut instruction = COMPACT_INSTRUCTION.to_owned();
        for extra in pre.additional_context {
            instruction.push_str("\n\n");
            instruction.push_str(&extra);
        }
        self.emit(Event::Notice {
            level: NoticeLevel::Info,
            message: "the conversation is near the model's context limit; summarising it".into(),
        });
        let mut messages = (*self.history).clone();
        push_user(
            &mut messages,
            vec![ContentBlock::Text { text: instruction }],
        );
        let req = ModelRequest {
            system: self.system.clone(),
            messages: Arc::new(messages),
            tools: self.specs(),
            max_tokens: 8_000,
            agent: self.id.clone(),
        };
        match self.model.complete(&req, None, cancel).await {
            Ok(resp) => {
                lock(&self.shared.usage).add(&resp.usage);
                let summary = resp.message.text();
                if summary.trim().is_empty() {
                    return false;
                }
                self.record(Record::Compaction {
                    summary: summary.clone(),
                    tokens_before,
                });
                self.history = Arc::new(vec![compaction_message(&summary)]);
                self.last_prompt_tokens = 0;
                self.emit(Event::Compacted { tokens_before });
                true
            }
            Err(e) => {
                self.emit(Event::Notice {
                    level: NoticeLevel::Warning,
                    message: format!("could not summarise the conversation: {e}"),
                });
                false
            }
        }
    }

    /// Records a plan update.
    pub(crate) fn publish_plan(&self, todos: Vec<cubicle_protocol::events::Todo>) {
        self.record(Record::Plan {
            todos: todos.clone(),
        });
        self.emit(Event::Plan { todos });
    }
}

const COMPACT_INSTRUCTION: &str = "Summarise this conversation so that you can continue the task \
from the summary alone. Include: the person's request and every preference or answer they gave; \
what has been done so far; the paths of files read and written, and what each holds; decisions \
made and why; what remains to be done, in order. Reply with the summary only, no tool calls.";

fn session_tool_summary(name: &str, input: &Value) -> String {
    match name {
        "todo_write" => "Update the plan".to_owned(),
        "ask_user" => "Ask the person".to_owned(),
        "task" => format!(
            "Sub-agent: {}",
            input
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("task")
        ),
        other => other.to_owned(),
    }
}

/// Hook context as a block of a user message, marked so the model can tell
/// it from what the person wrote.
fn hook_context_block(text: String) -> ContentBlock {
    ContentBlock::Text {
        text: format!("<hook-context>\n{text}\n</hook-context>"),
    }
}

fn cap_output(mut out: ToolOutput) -> ToolOutput {
    for c in &mut out.content {
        if let cubicle_protocol::conversation::ToolResultContent::Text { text } = c
            && text.chars().count() > MAX_TOOL_RESULT_CHARS
        {
            *text = truncate_middle(text, MAX_TOOL_RESULT_CHARS);
        }
    }
    out
}

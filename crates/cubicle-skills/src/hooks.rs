//! Command hooks in Claude Code's format and with its contract, so the hooks
//! that plugins ship work unmodified.
//!
//! Configuration (`hooks/hooks.json`, a plugin manifest's `hooks`, or a
//! settings file): for each event, matcher groups, each with commands:
//!
//! ```json
//! {"hooks": {"PreToolUse": [{"matcher": "Write|Edit",
//!   "hooks": [{"type": "command", "command": "${CLAUDE_PLUGIN_ROOT}/fmt.sh", "timeout": 30}]}]}}
//! ```
//!
//! The contract, step by step, as [`HookRunner::run`] applies it:
//!
//! 1. The hooks whose event matches and whose matcher (a regular expression
//!    over the tool name, or the session start source, or the compaction
//!    trigger; empty or `*` for all) matches are selected.
//! 2. Each runs through a [`HookExecutor`] with the event as JSON on stdin
//!    (`session_id`, `transcript_path`, `cwd`, `hook_event_name`, and the
//!    event's own fields such as `tool_name` and `tool_input`) and a timeout
//!    (60 s unless the hook says otherwise). The executor decides *where*:
//!    Cubicle runs hooks inside the cubicle, never on the host.
//! 3. Exit 0: stdout that is a JSON object is read for `continue`,
//!    `stopReason`, `systemMessage`, `decision`/`reason`, and
//!    `hookSpecificOutput` (`permissionDecision`, `updatedInput`,
//!    `additionalContext`); other stdout becomes context for
//!    `UserPromptSubmit` and `SessionStart` and is otherwise ignored.
//! 4. Exit 2: the action is blocked with stderr as the reason, for the
//!    events that can be blocked; for the others it is reported.
//! 5. Any other exit, a timeout, a failure to start or stdout that starts
//!    like JSON but is not: reported as an error, never blocking; the rest
//!    keeps working.
//! 6. Results of several hooks combine: any block blocks, deny beats ask
//!    beats allow, contexts are all kept, the last `updatedInput` wins.
//! 7. `"continue": false` (with `stopReason`) wins over everything: the
//!    agent loop does not take the action at hand and ends its turn, tells
//!    the person why and records it (see `cubicle_agent::HookVerdict::stop`).
//!    `suppressOutput` needs nothing: a hook's stdout is never shown to the
//!    person, only given to the model where the contract says so.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

/// The default timeout of a hook command, as in Claude Code.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of a hook's stdout or stderr that are kept.
pub const MAX_HOOK_OUTPUT_BYTES: usize = 1024 * 1024;

/// The moments a hook can run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookEvent {
    /// A session starts or resumes (matcher: `startup`, `resume`, `clear`, `compact`).
    SessionStart,
    /// The person submitted a prompt; may block it or add context.
    UserPromptSubmit,
    /// A tool is about to run (matcher: tool name); may block, allow or change it.
    PreToolUse,
    /// A tool has run (matcher: tool name); may give the model feedback.
    PostToolUse,
    /// The agent is about to stop; may make it continue.
    Stop,
    /// A sub-agent is about to stop; may make it continue.
    SubagentStop,
    /// The context is about to be compacted (matcher: `manual`, `auto`).
    PreCompact,
    /// The session ends.
    SessionEnd,
    /// A notification is shown to the person.
    Notification,
}

impl HookEvent {
    /// Every event, in the order above.
    pub const ALL: [HookEvent; 9] = [
        HookEvent::SessionStart,
        HookEvent::UserPromptSubmit,
        HookEvent::PreToolUse,
        HookEvent::PostToolUse,
        HookEvent::Stop,
        HookEvent::SubagentStop,
        HookEvent::PreCompact,
        HookEvent::SessionEnd,
        HookEvent::Notification,
    ];

    /// The name used in configuration and in `hook_event_name`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::SessionStart => "SessionStart",
            HookEvent::UserPromptSubmit => "UserPromptSubmit",
            HookEvent::PreToolUse => "PreToolUse",
            HookEvent::PostToolUse => "PostToolUse",
            HookEvent::Stop => "Stop",
            HookEvent::SubagentStop => "SubagentStop",
            HookEvent::PreCompact => "PreCompact",
            HookEvent::SessionEnd => "SessionEnd",
            HookEvent::Notification => "Notification",
        }
    }

    /// The event called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Whether exit code 2 blocks something for this event.
    pub fn can_block(self) -> bool {
        match self {
            HookEvent::UserPromptSubmit
            | HookEvent::PreToolUse
            | HookEvent::PostToolUse
            | HookEvent::Stop
            | HookEvent::SubagentStop => true,
            HookEvent::SessionStart
            | HookEvent::PreCompact
            | HookEvent::SessionEnd
            | HookEvent::Notification => false,
        }
    }

    /// The input field a matcher is tested against, if the event has one.
    fn matcher_field(self) -> Option<&'static str> {
        match self {
            HookEvent::PreToolUse | HookEvent::PostToolUse => Some("tool_name"),
            HookEvent::SessionStart => Some("source"),
            HookEvent::PreCompact => Some("trigger"),
            HookEvent::UserPromptSubmit
            | HookEvent::Stop
            | HookEvent::SubagentStop
            | HookEvent::SessionEnd
            | HookEvent::Notification => None,
        }
    }
}

/// One configured hook command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    /// The shell command (plugin paths already expanded).
    pub command: String,
    /// How long it may run.
    pub timeout: Duration,
    /// Extra environment, e.g. `CLAUDE_PLUGIN_ROOT`.
    pub env: Vec<(String, String)>,
    /// Where it was configured, for messages (`plugin fmt`, a file path).
    pub origin: String,
}

#[derive(Debug, Clone)]
struct Entry {
    event: HookEvent,
    matcher: Option<regex::Regex>,
    command: HookCommand,
}

/// A set of configured hooks.
#[derive(Debug, Clone, Default)]
pub struct HookSet {
    entries: Vec<Entry>,
}

impl HookSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads hooks from a `hooks.json` value (`{"hooks": {...}}`) or the
    /// bare event map. `expand` rewrites each command (plugin root
    /// variables); `env` is given to each; problems are pushed to
    /// `warnings` and the rest is kept.
    pub fn from_json(
        value: &Value,
        origin: &str,
        expand: &dyn Fn(&str) -> String,
        env: &[(String, String)],
        warnings: &mut Vec<String>,
    ) -> Self {
        let mut set = Self::new();
        let events = match value.get("hooks") {
            Some(Value::Object(map)) => map,
            Some(_) => {
                warnings.push(format!("{origin}: `hooks` should be an object of events"));
                return set;
            }
            None => match value {
                Value::Object(map) => map,
                _ => {
                    warnings.push(format!("{origin}: hooks should be a JSON object"));
                    return set;
                }
            },
        };
        for (name, groups) in events {
            let Some(event) = HookEvent::parse(name) else {
                warnings.push(format!("{origin}: unknown hook event `{name}`; ignored"));
                continue;
            };
            let Some(groups) = groups.as_array() else {
                warnings.push(format!("{origin}: `{name}` should be a list; ignored"));
                continue;
            };
            for group in groups {
                let matcher = match group.get("matcher") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(m)) if m.is_empty() || m == "*" => None,
                    Some(Value::String(m)) => {
                        match regex::RegexBuilder::new(&format!("^(?:{m})$"))
                            .size_limit(1 << 20)
                            .build()
                        {
                            Ok(r) => Some(r),
                            Err(e) => {
                                warnings.push(format!(
                                    "{origin}: `{name}` matcher `{m}` is not a valid pattern ({e}); its hooks are ignored"
                                ));
                                continue;
                            }
                        }
                    }
                    Some(_) => {
                        warnings.push(format!(
                            "{origin}: `{name}` matcher should be a string; its hooks are ignored"
                        ));
                        continue;
                    }
                };
                let Some(hooks) = group.get("hooks").and_then(Value::as_array) else {
                    warnings.push(format!("{origin}: `{name}` group has no `hooks` list"));
                    continue;
                };
                for hook in hooks {
                    match hook.get("type").and_then(Value::as_str) {
                        Some("command") => {}
                        Some(other) => {
                            warnings.push(format!(
                                "{origin}: `{name}` hook type `{other}` is not supported; only `command` hooks run"
                            ));
                            continue;
                        }
                        None => {
                            warnings
                                .push(format!("{origin}: `{name}` hook has no `type`; ignored"));
                            continue;
                        }
                    }
                    let Some(command) = hook.get("command").and_then(Value::as_str) else {
                        warnings.push(format!(
                            "{origin}: `{name}` command hook has no `command`; ignored"
                        ));
                        continue;
                    };
                    let timeout = match hook.get("timeout") {
                        None | Some(Value::Null) => DEFAULT_HOOK_TIMEOUT,
                        Some(t) => match t.as_f64().filter(|t| *t > 0.0 && *t <= 3600.0) {
                            Some(t) => Duration::from_secs_f64(t),
                            None => {
                                warnings.push(format!(
                                    "{origin}: `{name}` timeout should be seconds between 0 and 3600; using {}",
                                    DEFAULT_HOOK_TIMEOUT.as_secs()
                                ));
                                DEFAULT_HOOK_TIMEOUT
                            }
                        },
                    };
                    set.entries.push(Entry {
                        event,
                        matcher: matcher.clone(),
                        command: HookCommand {
                            command: expand(command),
                            timeout,
                            env: env.to_vec(),
                            origin: origin.to_owned(),
                        },
                    });
                }
            }
        }
        set
    }

    /// Adds `other`'s hooks after these.
    pub fn extend(&mut self, other: HookSet) {
        self.entries.extend(other.entries);
    }

    /// How many hook commands are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The events that have at least one hook, each with its count.
    pub fn summary(&self) -> Vec<(HookEvent, usize)> {
        let mut out: Vec<(HookEvent, usize)> = Vec::new();
        for e in &self.entries {
            match out.iter_mut().find(|(ev, _)| *ev == e.event) {
                Some((_, n)) => *n += 1,
                None => out.push((e.event, 1)),
            }
        }
        out.sort();
        out
    }

    /// The commands for `input`'s event whose matcher matches it.
    pub fn matching(&self, input: &HookInput) -> Vec<&HookCommand> {
        let target = input
            .event
            .matcher_field()
            .and_then(|f| input.fields.get(f))
            .and_then(Value::as_str)
            .unwrap_or("");
        self.entries
            .iter()
            .filter(|e| e.event == input.event)
            .filter(|e| match &e.matcher {
                Some(m) => input.event.matcher_field().is_none() || m.is_match(target),
                None => true,
            })
            .map(|e| &e.command)
            .collect()
    }
}

/// What a hook is told: the session's common fields and the event's own.
#[derive(Debug, Clone, PartialEq)]
pub struct HookInput {
    /// The event.
    pub event: HookEvent,
    /// `session_id`, `transcript_path`, `cwd` and the event's fields
    /// (`tool_name`, `tool_input`, `tool_response`, `prompt`, `source`, …).
    pub fields: Map<String, Value>,
}

impl HookInput {
    /// An input for `event` in session `session_id`, whose transcript is at
    /// `transcript_path` and working folder is `cwd` (paths as the hook sees
    /// them, inside the cubicle).
    pub fn new(event: HookEvent, session_id: &str, transcript_path: &str, cwd: &str) -> Self {
        let mut fields = Map::new();
        fields.insert("session_id".into(), json!(session_id));
        fields.insert("transcript_path".into(), json!(transcript_path));
        fields.insert("cwd".into(), json!(cwd));
        fields.insert("hook_event_name".into(), json!(event.as_str()));
        Self { event, fields }
    }

    /// Adds an event field, e.g. `("tool_name", json!("Bash"))`.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.fields.insert(key.to_owned(), value);
        self
    }

    /// The JSON written to the hook's stdin.
    pub fn to_json(&self) -> Value {
        Value::Object(self.fields.clone())
    }
}

/// How a hook process ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HookProcess {
    /// Its exit code; `None` when killed by a signal or the timeout.
    pub exit_code: Option<i32>,
    /// Its stdout (at most [`MAX_HOOK_OUTPUT_BYTES`]).
    pub stdout: Vec<u8>,
    /// Its stderr (at most [`MAX_HOOK_OUTPUT_BYTES`]).
    pub stderr: Vec<u8>,
    /// Whether it was killed for running too long.
    pub timed_out: bool,
}

/// Runs a hook command somewhere: inside the cubicle in a session, or
/// directly where the process itself is already confined (the guest).
#[async_trait]
pub trait HookExecutor: Send + Sync {
    /// Runs `hook.command` with `stdin`, its env and its timeout.
    async fn run(&self, hook: &HookCommand, stdin: &[u8]) -> std::io::Result<HookProcess>;
}

/// Runs hooks with `sh -c` on the machine this process runs on, in its own
/// process group, killed with all its children at the timeout. Inside the
/// cubicle this is what the guest uses; on the host it is for tests only.
#[derive(Debug, Clone, Default)]
pub struct ShellExecutor {
    /// The working folder; the process's own when `None`.
    pub cwd: Option<PathBuf>,
}

#[async_trait]
impl HookExecutor for ShellExecutor {
    async fn run(&self, hook: &HookCommand, stdin: &[u8]) -> std::io::Result<HookProcess> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&hook.command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
            cmd.env("CLAUDE_PROJECT_DIR", cwd);
        }
        for (k, v) in &hook.env {
            cmd.env(k, v);
        }
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let mut child_in = child.stdin.take();
        let mut child_out = child.stdout.take();
        let mut child_err = child.stderr.take();
        let input = stdin.to_vec();
        let write = async move {
            if let Some(w) = child_in.as_mut() {
                // A hook that ignores its stdin closes the pipe early: fine.
                let _ = w.write_all(&input).await;
            }
            drop(child_in);
        };
        let read = |pipe: Option<tokio::process::ChildStdout>| async move {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p
                    .take(MAX_HOOK_OUTPUT_BYTES as u64)
                    .read_to_end(&mut buf)
                    .await;
            }
            buf
        };
        let read_err = |pipe: Option<tokio::process::ChildStderr>| async move {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p
                    .take(MAX_HOOK_OUTPUT_BYTES as u64)
                    .read_to_end(&mut buf)
                    .await;
            }
            buf
        };
        let all = async {
            let ((), stdout, stderr, status) = tokio::join!(
                write,
                read(child_out.take()),
                read_err(child_err.take()),
                child.wait()
            );
            (stdout, stderr, status)
        };
        match tokio::time::timeout(hook.timeout, all).await {
            Ok((stdout, stderr, status)) => Ok(HookProcess {
                exit_code: status?.code(),
                stdout,
                stderr,
                timed_out: false,
            }),
            Err(_) => {
                #[cfg(unix)]
                if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                    // The whole group: a hook's own children go too.
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill().await;
                Ok(HookProcess {
                    exit_code: None,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    timed_out: true,
                })
            }
        }
    }
}

/// A hook's verdict on a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PermissionDecision {
    /// Run it without asking.
    Allow,
    /// Ask the person.
    Ask,
    /// Do not run it.
    Deny,
}

/// What the hooks for one event decided, combined.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookOutcome {
    /// The action is blocked, with the reason for the model (or person).
    pub blocked: Option<String>,
    /// A verdict on the tool call (`PreToolUse`), the strictest given.
    pub permission: Option<PermissionDecision>,
    /// Replacement tool input (`PreToolUse`).
    pub updated_input: Option<Value>,
    /// Text to add to the model's context.
    pub additional_context: Vec<String>,
    /// The session should stop (`"continue": false`), with the reason.
    pub stop: Option<String>,
    /// Messages to show the person.
    pub system_messages: Vec<String>,
    /// Hooks that failed without blocking: shown to the person.
    pub errors: Vec<String>,
}

/// Runs the configured hooks for events.
#[derive(Clone)]
pub struct HookRunner {
    hooks: Arc<HookSet>,
    executor: Arc<dyn HookExecutor>,
}

impl std::fmt::Debug for HookRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookRunner")
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

impl HookRunner {
    /// A runner of `hooks` through `executor`.
    pub fn new(hooks: HookSet, executor: Arc<dyn HookExecutor>) -> Self {
        Self {
            hooks: Arc::new(hooks),
            executor,
        }
    }

    /// Runs every matching hook for `input` (concurrently) and combines
    /// what they decided.
    pub async fn run(&self, input: &HookInput) -> HookOutcome {
        let commands = self.hooks.matching(input);
        let stdin = serde_json::to_vec(&input.to_json()).unwrap_or_default();
        let runs = commands.iter().map(|hook| {
            let stdin = &stdin;
            async move { (*hook, self.executor.run(hook, stdin).await) }
        });
        let results = futures::future::join_all(runs).await;
        let mut outcome = HookOutcome::default();
        for (hook, result) in results {
            apply(&mut outcome, input.event, hook, result);
        }
        outcome
    }
}

fn apply(
    outcome: &mut HookOutcome,
    event: HookEvent,
    hook: &HookCommand,
    result: std::io::Result<HookProcess>,
) {
    let who = format!("hook `{}` ({})", short(&hook.command), hook.origin);
    let proc = match result {
        Ok(p) => p,
        Err(e) => {
            outcome.errors.push(format!("{who} could not start: {e}"));
            return;
        }
    };
    if proc.timed_out {
        outcome.errors.push(format!(
            "{who} did not finish within {} s and was stopped",
            hook.timeout.as_secs_f64()
        ));
        return;
    }
    let stdout = String::from_utf8_lossy(&proc.stdout);
    let stderr = String::from_utf8_lossy(&proc.stderr).trim().to_owned();
    match proc.exit_code {
        Some(0) => {}
        Some(2) => {
            let reason = if stderr.is_empty() {
                format!("blocked by {who}")
            } else {
                stderr
            };
            if event.can_block() {
                add_block(outcome, reason);
            } else {
                outcome.errors.push(format!("{who}: {reason}"));
            }
            return;
        }
        Some(code) => {
            outcome.errors.push(if stderr.is_empty() {
                format!("{who} failed with exit code {code}")
            } else {
                format!("{who} failed with exit code {code}: {stderr}")
            });
            return;
        }
        None => {
            outcome.errors.push(format!("{who} was killed by a signal"));
            return;
        }
    }
    let trimmed = stdout.trim();
    if trimmed.starts_with('{') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(json)) => apply_json(outcome, event, &who, &json),
            Ok(_) | Err(_) => outcome.errors.push(format!(
                "{who} printed output that is not valid JSON; ignored"
            )),
        }
    } else if !trimmed.is_empty()
        && matches!(event, HookEvent::UserPromptSubmit | HookEvent::SessionStart)
    {
        outcome.additional_context.push(trimmed.to_owned());
    }
}

fn apply_json(outcome: &mut HookOutcome, event: HookEvent, who: &str, json: &Map<String, Value>) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    if json.get("continue").and_then(Value::as_bool) == Some(false) {
        outcome.stop =
            Some(text(json.get("stopReason")).unwrap_or_else(|| format!("stopped by {who}")));
    }
    if let Some(m) = text(json.get("systemMessage")) {
        outcome.system_messages.push(m);
    }
    let reason = text(json.get("reason"));
    match json.get("decision").and_then(Value::as_str) {
        Some("block") if event.can_block() => {
            add_block(
                outcome,
                reason
                    .clone()
                    .unwrap_or_else(|| format!("blocked by {who}")),
            );
        }
        // The older PreToolUse spelling of allow / deny.
        Some("approve") if event == HookEvent::PreToolUse => {
            set_permission(outcome, PermissionDecision::Allow);
        }
        _ => {}
    }
    let Some(Value::Object(specific)) = json.get("hookSpecificOutput") else {
        return;
    };
    if let Some(d) = specific.get("permissionDecision").and_then(Value::as_str)
        && event == HookEvent::PreToolUse
    {
        let why = text(specific.get("permissionDecisionReason"));
        match d {
            "allow" => set_permission(outcome, PermissionDecision::Allow),
            "ask" => set_permission(outcome, PermissionDecision::Ask),
            "deny" => {
                set_permission(outcome, PermissionDecision::Deny);
                add_block(outcome, why.unwrap_or_else(|| format!("denied by {who}")));
            }
            other => outcome.errors.push(format!(
                "{who}: unknown permissionDecision `{other}`; ignored"
            )),
        }
    }
    if let Some(input) = specific.get("updatedInput")
        && event == HookEvent::PreToolUse
    {
        if input.is_object() {
            outcome.updated_input = Some(input.clone());
        } else {
            outcome
                .errors
                .push(format!("{who}: updatedInput should be an object; ignored"));
        }
    }
    if let Some(ctx) = text(specific.get("additionalContext")) {
        outcome.additional_context.push(ctx);
    }
}

fn add_block(outcome: &mut HookOutcome, reason: String) {
    outcome.blocked = Some(match outcome.blocked.take() {
        Some(prev) => format!("{prev}\n{reason}"),
        None => reason,
    });
}

fn set_permission(outcome: &mut HookOutcome, d: PermissionDecision) {
    outcome.permission = Some(outcome.permission.map_or(d, |p| p.max(d)));
}

fn short(command: &str) -> String {
    let one: String = command.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 60 {
        format!("{}…", one.chars().take(59).collect::<String>())
    } else {
        one
    }
}

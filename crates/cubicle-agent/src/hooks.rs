//! Points in the agent loop where outside code may look and act: a session
//! starting, a prompt, each tool call before and after, the agent stopping,
//! compaction, the session ending. Plugins' command hooks plug in here
//! through an adapter (the agent knows nothing of plugins); see
//! [`SessionHooks`]. A [`HookVerdict`] may block the action at hand, or stop
//! the turn altogether ([`HookVerdict::stop`], Claude Code's
//! `"continue": false`), which the transcript records as an interruption
//! "stopped by a hook: REASON".

use async_trait::async_trait;
use serde_json::Value;

/// The moment a hook runs at, with what the hook is told about it.
#[derive(Debug, Clone, Copy)]
pub enum HookPoint<'a> {
    /// The session starts (`startup`) or resumes (`resume`).
    SessionStart {
        /// `startup` or `resume`.
        source: &'a str,
    },
    /// The person sent a prompt; a block drops it.
    UserPromptSubmit {
        /// What they wrote.
        prompt: &'a str,
    },
    /// A tool call is about to be checked by the gate and run.
    PreToolUse {
        /// The tool's name.
        tool: &'a str,
        /// The model's arguments.
        input: &'a Value,
        /// The call's id.
        call_id: &'a str,
    },
    /// A tool call has run.
    PostToolUse {
        /// The tool's name.
        tool: &'a str,
        /// The arguments it ran with.
        input: &'a Value,
        /// The call's id.
        call_id: &'a str,
        /// Its result's text.
        response: &'a str,
        /// Whether the result is an error.
        is_error: bool,
    },
    /// The main agent is about to end its turn; a block makes it go on.
    Stop {
        /// Whether it already went on because of a Stop block this turn.
        stop_hook_active: bool,
    },
    /// A sub-agent is about to finish; a block makes it go on.
    SubagentStop {
        /// Whether it already went on because of a block.
        stop_hook_active: bool,
    },
    /// The conversation is about to be summarised.
    PreCompact {
        /// `auto` (near the context limit) or `manual`.
        trigger: &'a str,
    },
    /// The session ends.
    SessionEnd {
        /// Why, e.g. `other`.
        reason: &'a str,
    },
}

/// What hooks say about a tool call's permission. When both the hooks and
/// the gate have a say, the stricter wins: a plugin may tighten the
/// person's policy, never loosen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookPermission {
    /// No objection.
    Allow,
    /// Ask the person first.
    Ask,
    /// Refuse the call.
    Deny,
}

/// What the hooks at one point decided, combined.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookVerdict {
    /// Block the action (the prompt, the tool call, the stop) for this reason.
    pub blocked: Option<String>,
    /// A say on the tool call's permission (`PreToolUse`).
    pub permission: Option<HookPermission>,
    /// Arguments to run the tool call with instead (`PreToolUse`).
    pub updated_input: Option<Value>,
    /// Text to add to what the model sees.
    pub additional_context: Vec<String>,
    /// Messages to show the person.
    pub messages: Vec<String>,
    /// Hooks that failed without deciding anything: shown and recorded.
    pub errors: Vec<String>,
    /// Stop the turn for this reason (Claude Code's `"continue": false`
    /// with its `stopReason`): the action at hand does not happen, the
    /// person is told, the transcript records it, and the turn ends. It
    /// wins over every other decision; the person may send a new message.
    pub stop: Option<String>,
}

/// Runs the hooks configured for a session. Implementations decide where
/// hook commands run (inside the cubicle) and how their output is read;
/// they must not fail: a broken hook is an entry in
/// [`HookVerdict::errors`].
#[async_trait]
pub trait SessionHooks: Send + Sync + std::fmt::Debug {
    /// Runs the hooks for `point` on behalf of `agent` (`None` for the main
    /// agent, else the sub-agent's id).
    async fn run(&self, agent: Option<&str>, point: HookPoint<'_>) -> HookVerdict;
}

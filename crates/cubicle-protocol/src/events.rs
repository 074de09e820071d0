//! What a running session tells its front ends, and what front ends may ask of
//! it. The CLI, the web UI and a paired phone all speak exactly this: a stream
//! of [`EventMsg`]s out, a queue of [`Op`]s in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conversation::{Message, Usage};
use crate::guest::OutputStream;

/// An event, tagged with the agent that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventMsg {
    /// `None` for the session's main agent, else the sub-agent's id (`task-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Something that happened in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The session is ready.
    SessionStarted {
        /// Session id (also the transcript's name).
        session_id: String,
        /// Provider and model, e.g. `anthropic:claude-sonnet-4-5`.
        model: String,
        /// Backend name (`jail`, `vm`, `host`, …).
        backend: String,
        /// Whether the backend isolates the agent from the host.
        isolated: bool,
        /// Folders the cubicle can see.
        grants: Vec<GrantInfo>,
    },
    /// A model call began.
    TurnStarted {
        /// 1-based model-call count in this session.
        turn: u32,
    },
    /// Streamed model text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// Streamed model reasoning.
    ThinkingDelta {
        /// The new text.
        text: String,
    },
    /// The model's complete message for this call.
    AssistantMessage {
        /// The message.
        message: Message,
        /// Tokens of this call.
        usage: Usage,
    },
    /// A tool call is about to run.
    ToolCallStarted {
        /// The model's call id.
        call_id: String,
        /// Tool name.
        name: String,
        /// Arguments as given.
        input: Value,
        /// One line a person can read, e.g. `$ python3 totals.py`.
        summary: String,
    },
    /// Live output of a running tool (commands).
    ToolOutput {
        /// The call id.
        call_id: String,
        /// Which stream.
        stream: OutputStream,
        /// Text (lossy UTF-8).
        text: String,
    },
    /// A tool call finished.
    ToolCallFinished {
        /// The call id.
        call_id: String,
        /// Whether it failed.
        is_error: bool,
        /// The text the model gets back (images elided).
        output: String,
        /// Run time.
        duration_ms: u64,
    },
    /// The agent's plan changed.
    Plan {
        /// The whole plan, in order.
        todos: Vec<Todo>,
    },
    /// The agent asks the person; the turn waits for [`Op::Answer`].
    Question {
        /// Id to answer with.
        id: String,
        /// One to four questions.
        questions: Vec<Question>,
    },
    /// A tool call needs the person's approval; the turn waits for [`Op::Approve`].
    ApprovalRequest {
        /// Id to answer with.
        id: String,
        /// Tool name.
        tool: String,
        /// What the call would do, in words.
        summary: String,
        /// The rule or reason that made it ask.
        reason: String,
    },
    /// Something the person should know: a retry, a compaction, a warning.
    Notice {
        /// Severity.
        level: NoticeLevel,
        /// One readable line.
        message: String,
    },
    /// The conversation was summarised to fit the context window.
    Compacted {
        /// Prompt size before, in tokens.
        tokens_before: u64,
    },
    /// The turn is over; the session waits for input or ends.
    TurnEnded {
        /// Why it ended.
        reason: TurnEndReason,
        /// Tokens used by the whole session so far.
        usage: Usage,
    },
    /// The session ended; no more events follow.
    SessionEnded,
}

/// A folder the cubicle can see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GrantInfo {
    /// Path on the host.
    pub host_path: String,
    /// Path inside the cubicle.
    pub path: String,
    /// Whether the agent may change it.
    pub writable: bool,
}

/// How serious a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeLevel {
    /// For information.
    Info,
    /// Something went wrong but the session goes on.
    Warning,
    /// Something failed.
    Error,
}

/// Why a turn ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TurnEndReason {
    /// The model finished.
    Done,
    /// The person interrupted it.
    Interrupted,
    /// A budget ran out.
    Budget {
        /// Which budget, in words.
        detail: String,
    },
    /// The turn failed.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// One item of the agent's plan (the shape of Claude Code's TodoWrite).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Todo {
    /// What is to be done, imperative ("Total each category").
    pub content: String,
    /// Where it stands.
    pub status: TodoStatus,
    /// Present-continuous form shown while in progress ("Totalling categories").
    #[serde(
        default,
        rename = "activeForm",
        skip_serializing_if = "Option::is_none"
    )]
    pub active_form: Option<String>,
}

/// State of a plan item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TodoStatus {
    /// Not started.
    Pending,
    /// Being worked on.
    InProgress,
    /// Done.
    Completed,
}

/// A question for the person (the shape of Claude Code's AskUserQuestion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Question {
    /// The full question.
    pub question: String,
    /// A short label, at most 12 characters ("Currency").
    pub header: String,
    /// Two to four choices; the person may also write their own answer.
    pub options: Vec<QuestionOption>,
    /// Whether several options may be chosen.
    #[serde(default, rename = "multiSelect")]
    pub multi_select: bool,
}

/// One offered answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QuestionOption {
    /// The choice, a few words.
    pub label: String,
    /// What choosing it means.
    #[serde(default)]
    pub description: String,
}

/// The person's answer to one question.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Answer {
    /// Labels of the chosen options.
    #[serde(default)]
    pub selected: Vec<String>,
    /// Their own words, when they wrote some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A person's decision on an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    /// Allow this one call.
    AllowOnce,
    /// Allow calls like it for the rest of the session.
    AllowSession,
    /// Refuse.
    Deny,
}

/// What a front end asks of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// A new message from the person; starts a turn if none is running.
    UserMessage {
        /// The text.
        text: String,
    },
    /// Answers to a [`Event::Question`], one per question, in order.
    Answer {
        /// The question event's id.
        id: String,
        /// The answers.
        answers: Vec<Answer>,
    },
    /// A decision on an [`Event::ApprovalRequest`].
    Approve {
        /// The request's id.
        id: String,
        /// The decision.
        decision: ApprovalDecision,
    },
    /// Run a turn without a new message: continue unfinished work after a
    /// resume.
    Continue,
    /// Stop the running turn; the session stays open.
    Interrupt,
    /// End the session.
    Shutdown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn event_envelope_flattens() {
        let msg = EventMsg {
            agent: Some("task-1".into()),
            event: Event::TextDelta { text: "hi".into() },
        };
        let v = serde_json::to_value(&msg).unwrap();
        assert_eq!(
            v,
            json!({"agent": "task-1", "type": "text_delta", "text": "hi"})
        );
        assert_eq!(serde_json::from_value::<EventMsg>(v).unwrap(), msg);
    }

    #[test]
    fn question_uses_claude_code_field_names() {
        let q: Question = serde_json::from_value(json!({
            "question": "Which currency?", "header": "Currency",
            "options": [{"label": "EUR", "description": "Euro"}, {"label": "USD"}],
            "multiSelect": false
        }))
        .unwrap();
        assert_eq!(q.options[1].description, "");
    }
}

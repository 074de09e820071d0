//! The transcript: one append-only JSONL file per session, the source of truth
//! for resume, the web UI's history and eval replay.
//!
//! The first line is a [`Header`]; every later line is an [`Entry`]. Lines are
//! written whole and fsynced one at a time, so a session killed at any point
//! leaves at worst one torn last line, which readers skip with a warning.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conversation::{Message, StopReason, ToolResultContent, Usage};
use crate::events::{Answer, ApprovalDecision, GrantInfo, Question, Todo};

/// Value of [`Header::format`].
pub const TRANSCRIPT_FORMAT: &str = "cubicle-transcript";

/// Version of the transcript format this build writes.
pub const TRANSCRIPT_VERSION: u32 = 1;

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Line {
    /// The first line.
    Header(Header),
    /// Every other line.
    Entry(Entry),
}

/// The first line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Header {
    /// Always [`TRANSCRIPT_FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Session id.
    pub session_id: String,
    /// When the session was created, RFC 3339.
    pub created_at: String,
    /// Version of the `cubicle` that created it.
    pub cubicle_version: String,
    /// What the person asked for, when started with a task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// `provider:model`.
    pub model: String,
    /// Backend name.
    pub backend: String,
    /// Folders granted.
    pub grants: Vec<GrantInfo>,
    /// Host path of the session's scratch directory.
    pub workspace: String,
    /// `reference` for a hand-written solution, absent for a real session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One event of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Entry {
    /// 1-based position; strictly increasing.
    pub seq: u64,
    /// When it happened, RFC 3339.
    pub ts: String,
    /// `None` for the main agent, else the sub-agent's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub record: Record,
}

/// What a transcript entry records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A message from the person (the task, a chat message, a sub-agent's brief).
    UserMessage {
        /// The message.
        message: Message,
    },
    /// One model call's complete answer.
    ModelResponse {
        /// The assistant message.
        message: Message,
        /// Tokens of the call.
        usage: Usage,
        /// Why the model stopped.
        stop_reason: StopReason,
        /// `provider:model` that answered.
        model: String,
        /// Time from request to last byte.
        duration_ms: u64,
    },
    /// The permission gate's decision on a tool call.
    Decision {
        /// The call id.
        call_id: String,
        /// Tool name.
        tool: String,
        /// Allowed or not.
        allowed: bool,
        /// Why (the rule, the person's answer, the default).
        reason: String,
    },
    /// The person's answer to an approval request.
    Approval {
        /// The call id.
        call_id: String,
        /// What they decided.
        decision: ApprovalDecision,
    },
    /// A tool call's result, as the model receives it.
    ToolResult {
        /// The call id.
        call_id: String,
        /// Tool name.
        tool: String,
        /// The content sent back.
        content: Vec<ToolResultContent>,
        /// Whether it failed.
        is_error: bool,
        /// Run time.
        duration_ms: u64,
    },
    /// The plan changed.
    Plan {
        /// The whole plan.
        todos: Vec<Todo>,
    },
    /// The agent asked the person.
    Question {
        /// Question id.
        id: String,
        /// The questions.
        questions: Vec<Question>,
    },
    /// The person answered.
    Answer {
        /// Question id.
        id: String,
        /// One answer per question.
        answers: Vec<Answer>,
    },
    /// The conversation so far was replaced by a summary.
    Compaction {
        /// The summary that now opens the conversation.
        summary: String,
        /// Prompt size before, in tokens.
        tokens_before: u64,
    },
    /// A turn was interrupted; calls without results got error results.
    Interrupted {
        /// Why.
        reason: String,
    },
    /// A turn failed.
    Error {
        /// What went wrong.
        message: String,
    },
    /// The session was resumed by a new process.
    Resumed {
        /// `provider:model` used from here on.
        model: String,
    },
    /// Anything a newer writer records that this version does not know.
    #[serde(untagged)]
    Unknown(Value),
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn entry_round_trips_flat() {
        let e = Entry {
            seq: 3,
            ts: "2026-11-27T10:00:00Z".into(),
            agent: None,
            record: Record::Interrupted {
                reason: "Ctrl-C".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"seq": 3, "ts": "2026-11-27T10:00:00Z", "type": "interrupted", "reason": "Ctrl-C"})
        );
        assert_eq!(serde_json::from_value::<Line>(v).unwrap(), Line::Entry(e));
    }

    #[test]
    fn unknown_records_are_kept_not_rejected() {
        let v = json!({"seq": 1, "ts": "t", "type": "from_the_future", "x": 1});
        let Line::Entry(e) = serde_json::from_value::<Line>(v).unwrap() else {
            panic!("expected an entry")
        };
        assert!(matches!(e.record, Record::Unknown(_)));
    }

    #[test]
    fn transcript_schema_snapshot() {
        insta::assert_json_snapshot!("transcript_line_schema", schemars::schema_for!(Line));
    }
}

//! Argument types and specs of the session-level tools — `todo_write`,
//! `ask_user` and `task` — whose behaviour lives in the agent loop because
//! they talk to the person or start a sub-agent.

use cubicle_protocol::conversation::ToolSpec;
use cubicle_protocol::events::{Question, Todo};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::spec_for;

/// Arguments of `todo_write`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TodoWriteInput {
    /// The whole plan, replacing the previous one. Exactly one item should be
    /// `in_progress` while working.
    pub todos: Vec<Todo>,
}

/// Spec of `todo_write`.
pub fn todo_write_spec() -> ToolSpec {
    spec_for::<TodoWriteInput>(
        "todo_write",
        "Write down or update your plan as a checklist the person can watch. Use it for any task \
with three or more steps: list the steps first, mark one `in_progress` while you work on it, and \
mark it `completed` as soon as it is done. Each call replaces the whole list.",
    )
}

/// Arguments of `ask_user`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AskUserInput {
    /// One to four questions, asked together.
    pub questions: Vec<Question>,
}

/// Spec of `ask_user`.
pub fn ask_user_spec() -> ToolSpec {
    spec_for::<AskUserInput>(
        "ask_user",
        "Ask the person a question and wait for the answer. Use it when the task is ambiguous in \
a way that matters (which folder, which format, which of two readings), before spending long on \
the wrong thing — not for things you can find out yourself. Give each question a short header \
(at most 12 characters) and two to four options with a label and a one-line description; the \
person may also answer in their own words. Set multiSelect when several options may apply.",
    )
}

/// Arguments of `task`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskInput {
    /// Three to five words naming the sub-task, shown to the person.
    pub description: String,
    /// Complete instructions for the sub-agent, which sees nothing of this
    /// conversation: say what to do, where the files are, and what to report.
    pub prompt: String,
    /// Names of the tools the sub-agent may use (default: bash, read, write,
    /// edit, glob, grep).
    #[serde(default)]
    pub tools: Option<Vec<String>>,
}

/// Arguments of a delegate sub-agent (e.g. `browser`): like [`TaskInput`]
/// without the tool choice, which the delegate fixes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct DelegateInput {
    /// Three to five words naming the sub-task, shown to the person.
    pub description: String,
    /// Complete instructions for the sub-agent, which sees nothing of this
    /// conversation: say what to do, where, and what to report.
    pub prompt: String,
}

/// Spec of a delegate sub-agent named `name`, described by `description`.
pub fn delegate_spec(name: &str, description: &str) -> ToolSpec {
    spec_for::<DelegateInput>(name, description)
}

/// Spec of `task`.
pub fn task_spec() -> ToolSpec {
    spec_for::<TaskInput>(
        "task",
        "Hand a self-contained sub-task to a sub-agent with a fresh context that works in the same \
cubicle and reports back in text. Good for work that would fill your context (reading many \
documents, searching widely) or that runs independently of the rest. Several task calls in one \
message run at the same time. The sub-agent cannot ask the person questions.",
    )
}

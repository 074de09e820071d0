//! The session-level tools: `todo_write` (the plan) and `ask_user` (a
//! question that blocks the turn until answered). `task` lives with the loop
//! in `runner`, since it runs one.

use cubicle_protocol::events::{Answer, Event, NoticeLevel, TodoStatus};
use cubicle_protocol::transcript::Record;
use cubicle_tools::session::{AskUserInput, TodoWriteInput};
use cubicle_tools::{ToolOutput, parse_input};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::runner::Agent;
use crate::session::Shared;

/// `todo_write`: replaces the plan and shows it to the person.
pub(crate) fn todo_write(agent: &Agent, input: &Value) -> ToolOutput {
    let args: TodoWriteInput = match parse_input("todo_write", input) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if let Some(empty) = args.todos.iter().position(|t| t.content.trim().is_empty()) {
        return ToolOutput::error(format!("plan item {} has no content", empty + 1));
    }
    let done = args
        .todos
        .iter()
        .filter(|t| t.status == TodoStatus::Completed)
        .count();
    let total = args.todos.len();
    agent.publish_plan(args.todos);
    ToolOutput::text(format!(
        "Plan updated ({done} of {total} done). Keep it current as you work."
    ))
}

/// `ask_user`: shows the questions and waits for the answers.
pub(crate) async fn ask_user(
    shared: &Shared,
    agent: Option<&str>,
    input: &Value,
    cancel: &CancellationToken,
) -> ToolOutput {
    let args: AskUserInput = match parse_input("ask_user", input) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if args.questions.is_empty() || args.questions.len() > 4 {
        return ToolOutput::error("ask between one and four questions at a time");
    }
    if let Some(q) = args.questions.iter().find(|q| q.question.trim().is_empty()) {
        return ToolOutput::error(format!("the question with header `{}` is empty", q.header));
    }
    if !shared.config.interactive {
        let asked: Vec<&str> = args.questions.iter().map(|q| q.question.as_str()).collect();
        shared.emit(
            agent,
            Event::Notice {
                level: NoticeLevel::Warning,
                message: format!(
                    "the agent asked a question, but this session runs without input (--no-input): {}",
                    asked.join(" / ")
                ),
            },
        );
        return ToolOutput::error(
            "nobody can answer questions in this session (it runs without input). Choose the most reasonable reading, say which you chose in your final answer, and carry on.",
        );
    }
    let _one_at_a_time = shared.ask_lock.lock().await;
    let id = shared.next_ask_id();
    let rx = shared.wait_answer(&id);
    shared.record(
        agent,
        Record::Question {
            id: id.clone(),
            questions: args.questions.clone(),
        },
    );
    shared.emit(
        agent,
        Event::Question {
            id: id.clone(),
            questions: args.questions.clone(),
        },
    );
    let answers = tokio::select! {
        a = rx => match a {
            Ok(a) => a,
            Err(_) => return ToolOutput::error("the question was withdrawn: nobody is there to answer it"),
        },
        () = cancel.cancelled() => return ToolOutput::error("interrupted by the person before answering"),
    };
    shared.record(
        agent,
        Record::Answer {
            id,
            answers: answers.clone(),
        },
    );
    ToolOutput::text(format_answers(&args.questions, &answers))
}

/// Renders answers for the model, one question per paragraph.
pub fn format_answers(
    questions: &[cubicle_protocol::events::Question],
    answers: &[Answer],
) -> String {
    let mut out = String::from("The person answered:\n");
    for (i, q) in questions.iter().enumerate() {
        let a = answers.get(i).cloned().unwrap_or_default();
        let mut parts: Vec<String> = a.selected.clone();
        if let Some(t) = a.text.as_deref().filter(|t| !t.trim().is_empty()) {
            parts.push(format!("\"{t}\""));
        }
        let answer = if parts.is_empty() {
            "(no answer)".to_owned()
        } else {
            parts.join(", ")
        };
        out.push_str(&format!("- {} ({}): {answer}\n", q.question, q.header));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cubicle_protocol::events::{Question, QuestionOption};

    #[test]
    fn answers_read_naturally() {
        let q = Question {
            question: "Which currency?".into(),
            header: "Currency".into(),
            options: vec![QuestionOption {
                label: "EUR".into(),
                description: String::new(),
            }],
            multi_select: false,
        };
        let a = Answer {
            selected: vec!["EUR".into()],
            text: Some("but show USD too".into()),
        };
        assert_eq!(
            format_answers(&[q.clone(), q], &[a]),
            "The person answered:\n- Which currency? (Currency): EUR, \"but show USD too\"\n- Which currency? (Currency): (no answer)\n"
        );
    }
}

//! Turning session events into terminal output a person can follow: model
//! text as it streams, each tool call on one line with a few lines of its
//! output, the plan as a checklist, notices on stderr.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use cubicle_protocol::events::{Event, EventMsg, NoticeLevel, Todo, TodoStatus, TurnEndReason};

/// Lines of live output shown per tool call before eliding the rest.
const LIVE_LINES: usize = 8;

/// Prints events as text (or JSON lines).
pub struct Renderer {
    json: bool,
    color: bool,
    mid_line: bool,
    live_lines: HashMap<String, usize>,
}

impl Renderer {
    /// A renderer for this terminal.
    pub fn new(json: bool) -> Self {
        let color =
            !json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Self {
            json,
            color,
            mid_line: false,
            live_lines: HashMap::new(),
        }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    fn line(&mut self, s: &str) {
        let mut out = std::io::stdout().lock();
        if self.mid_line {
            let _ = writeln!(out);
            self.mid_line = false;
        }
        let _ = writeln!(out, "{s}");
    }

    /// Renders one event.
    pub fn event(&mut self, msg: &EventMsg) {
        if self.json {
            if let Ok(s) = serde_json::to_string(msg) {
                println!("{s}");
            }
            return;
        }
        let prefix = msg
            .agent
            .as_deref()
            .map(|a| self.paint("2", &format!("[{a}] ")))
            .unwrap_or_default();
        match &msg.event {
            Event::SessionStarted {
                session_id,
                model,
                backend,
                isolated,
                grants,
            } => {
                let iso = if *isolated {
                    backend.clone()
                } else {
                    format!("{backend} — NOT isolated")
                };
                self.line(&self.paint("2", &format!("session {session_id} · {model} · {iso}")));
                for g in grants {
                    let mode = if g.writable { "rw" } else { "ro" };
                    self.line(
                        &self.paint("2", &format!("  {} → {} ({mode})", g.host_path, g.path)),
                    );
                }
                if !isolated {
                    eprintln!(
                        "cubicle: warning: the `{backend}` backend does not isolate commands from this computer"
                    );
                }
            }
            Event::TurnStarted { .. } | Event::AssistantMessage { .. } => {}
            Event::TextDelta { text } => {
                let mut out = std::io::stdout().lock();
                if !self.mid_line && !prefix.is_empty() {
                    let _ = write!(out, "{prefix}");
                }
                let _ = write!(out, "{text}");
                let _ = out.flush();
                self.mid_line = !text.ends_with('\n');
            }
            Event::ThinkingDelta { .. } => {}
            Event::ToolCallStarted {
                call_id, summary, ..
            } => {
                self.live_lines.insert(call_id.clone(), 0);
                let s = format!("{prefix}{} {summary}", self.paint("36", "▸"));
                self.line(&s);
            }
            Event::ToolOutput { call_id, text, .. } => {
                let shown = self.live_lines.entry(call_id.clone()).or_insert(0);
                let mut lines = Vec::new();
                for l in text.lines() {
                    if *shown < LIVE_LINES {
                        lines.push(format!("  │ {l}"));
                    } else if *shown == LIVE_LINES {
                        lines.push("  │ …".to_owned());
                    }
                    *shown += 1;
                }
                for l in lines {
                    let s = self.paint("2", &l);
                    self.line(&s);
                }
            }
            Event::ToolCallFinished {
                call_id,
                is_error,
                output,
                ..
            } => {
                self.live_lines.remove(call_id);
                if *is_error {
                    let first = output.lines().next().unwrap_or("failed");
                    let s = format!("{prefix}  {} {first}", self.paint("31", "✗"));
                    self.line(&s);
                }
            }
            Event::Plan { todos } => {
                let s = format_plan(todos);
                let s = self.paint("33", &s);
                self.line(&s);
            }
            Event::Question { .. } | Event::ApprovalRequest { .. } => {
                // The interaction layer prompts for these.
            }
            Event::Notice { level, message } => {
                if self.mid_line {
                    println!();
                    self.mid_line = false;
                }
                let tag = match level {
                    NoticeLevel::Info => "note",
                    NoticeLevel::Warning => "warning",
                    NoticeLevel::Error => "error",
                };
                eprintln!("cubicle: {tag}: {message}");
            }
            Event::Compacted { tokens_before } => {
                let s = self.paint(
                    "2",
                    &format!("(conversation summarised at {tokens_before} tokens)"),
                );
                self.line(&s);
            }
            Event::TurnEnded { reason, usage } => {
                let tail = match reason {
                    TurnEndReason::Done => String::new(),
                    TurnEndReason::Interrupted => " — interrupted".to_owned(),
                    TurnEndReason::Budget { detail } => format!(" — stopped: {detail}"),
                    TurnEndReason::Error { message } => format!(" — failed: {message}"),
                };
                let s = self.paint(
                    "2",
                    &format!(
                        "({} tokens in, {} out{tail})",
                        usage.total_input(),
                        usage.output_tokens
                    ),
                );
                self.line(&s);
            }
            Event::SessionEnded => {
                if self.mid_line {
                    println!();
                    self.mid_line = false;
                }
            }
        }
    }
}

/// The plan as a checklist.
pub fn format_plan(todos: &[Todo]) -> String {
    let mut s = String::from("Plan:");
    for t in todos {
        let (mark, text) = match t.status {
            TodoStatus::Pending => ("☐", t.content.as_str()),
            TodoStatus::InProgress => ("◐", t.active_form.as_deref().unwrap_or(&t.content)),
            TodoStatus::Completed => ("☑", t.content.as_str()),
        };
        s.push_str(&format!("\n  {mark} {text}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn plan_is_a_checklist() {
        let todos = vec![
            Todo {
                content: "Read receipts".into(),
                status: TodoStatus::Completed,
                active_form: None,
            },
            Todo {
                content: "Total categories".into(),
                status: TodoStatus::InProgress,
                active_form: Some("Totalling categories".into()),
            },
            Todo {
                content: "Write XLSX".into(),
                status: TodoStatus::Pending,
                active_form: None,
            },
        ];
        assert_eq!(
            format_plan(&todos),
            "Plan:\n  ☑ Read receipts\n  ◐ Totalling categories\n  ☐ Write XLSX"
        );
    }
}

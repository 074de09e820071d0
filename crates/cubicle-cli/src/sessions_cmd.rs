//! `cubicle sessions list|show`.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use anyhow::Result;
use cubicle_agent::{Store, Transcript};
use cubicle_protocol::conversation::{ContentBlock, ToolResultContent};
use cubicle_protocol::transcript::{Entry, Record};
use cubicle_tools::output::clip;

use crate::cli::SessionsCommand;
use crate::render::format_plan;

/// Runs a `sessions` subcommand.
pub fn run(cmd: SessionsCommand) -> Result<ExitCode> {
    let store = Store::from_env(|k| std::env::var(k).ok())?;
    match cmd {
        SessionsCommand::List { json } => {
            let (sessions, warnings) = store.list()?;
            for w in warnings {
                eprintln!("cubicle: warning: skipped an unreadable transcript: {w}");
            }
            if sessions.is_empty() && !json {
                println!("No sessions yet. Start one with: cubicle run \"TASK\" --grant DIR");
            }
            for s in sessions {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": s.id, "created_at": s.created_at, "updated_at": s.updated_at,
                            "task": s.task, "model": s.model, "backend": s.backend, "turns": s.turns
                        })
                    );
                } else {
                    println!(
                        "{}  {:>3} turns  {:<10} {}",
                        s.id,
                        s.turns,
                        s.backend,
                        clip(&s.task, 70)
                    );
                }
            }
        }
        SessionsCommand::Show { id, json } => {
            let id = store.resolve(&id)?;
            let path = store.transcript_path(&id);
            if json {
                print!("{}", std::fs::read_to_string(&path)?);
                return Ok(ExitCode::SUCCESS);
            }
            let t = Transcript::load(&path)?;
            for w in &t.warnings {
                eprintln!("cubicle: warning: {w}");
            }
            print!("{}", render_transcript(&t));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A transcript as a person reads it.
pub fn render_transcript(t: &Transcript) -> String {
    let h = &t.header;
    let mut out = format!(
        "Session {}\n  created {} · {} · backend {}\n  workspace {}\n",
        h.session_id, h.created_at, h.model, h.backend, h.workspace
    );
    if let Some(label) = &h.label {
        out.push_str(&format!("  label: {label}\n"));
    }
    for g in &h.grants {
        let mode = if g.writable { "rw" } else { "ro" };
        out.push_str(&format!("  grant {} → {} ({mode})\n", g.host_path, g.path));
    }
    for e in &t.entries {
        out.push_str(&render_entry(e));
    }
    out
}

fn render_entry(e: &Entry) -> String {
    let who = e
        .agent
        .as_deref()
        .map(|a| format!("[{a}] "))
        .unwrap_or_default();
    match &e.record {
        Record::UserMessage { message } => format!("\n{who}» {}\n", message.text()),
        Record::ModelResponse { message, usage, .. } => {
            let mut s = String::new();
            for b in &message.content {
                match b {
                    ContentBlock::Text { text } if !text.trim().is_empty() => {
                        s.push_str(&format!("\n{who}{}\n", text.trim_end()));
                    }
                    ContentBlock::ToolUse { name, input, .. } => {
                        let detail = input
                            .get("command")
                            .or_else(|| input.get("path"))
                            .or_else(|| input.get("pattern"))
                            .and_then(|v| v.as_str())
                            .unwrap_or("");
                        s.push_str(&format!("{who}▸ {name} {}\n", clip(detail, 120)));
                    }
                    _ => {}
                }
            }
            s.push_str(&format!(
                "{who}  ({} tokens in, {} out)\n",
                usage.total_input(),
                usage.output_tokens
            ));
            s
        }
        Record::ToolResult {
            content, is_error, ..
        } => {
            let text: String = content
                .iter()
                .map(|c| match c {
                    ToolResultContent::Text { text } => text.clone(),
                    ToolResultContent::Image { source } => format!("[image {}]", source.media_type),
                })
                .collect::<Vec<_>>()
                .join(" ");
            let first = text.lines().next().unwrap_or("");
            let mark = if *is_error { "✗" } else { "✓" };
            format!("{who}  {mark} {}\n", clip(first, 120))
        }
        Record::Decision {
            tool,
            allowed,
            reason,
            ..
        } if !allowed => format!("{who}  ⊘ {tool} denied: {reason}\n"),
        Record::Decision { .. } => String::new(),
        Record::Approval { decision, .. } => format!("{who}  person decided: {decision:?}\n"),
        Record::Plan { todos } => format!("{who}{}\n", format_plan(todos)),
        Record::Question { questions, .. } => questions
            .iter()
            .map(|q| format!("{who}? {} — {}\n", q.header, q.question))
            .collect(),
        Record::Answer { answers, .. } => answers
            .iter()
            .map(|a| {
                let mut parts = a.selected.clone();
                parts.extend(a.text.clone());
                format!("{who}  → {}\n", parts.join(", "))
            })
            .collect(),
        Record::Compaction { tokens_before, .. } => {
            format!("{who}(conversation summarised at {tokens_before} tokens)\n")
        }
        Record::Interrupted { reason } => format!("{who}(interrupted: {reason})\n"),
        Record::Error { message } => format!("{who}(error: {message})\n"),
        Record::Resumed { model } => format!("\n(resumed with {model})\n"),
        Record::Unknown(_) => String::new(),
    }
}

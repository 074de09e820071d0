//! Reading the person's input: chat messages, answers to questions, and
//! approval decisions, from stdin (a terminal or a pipe).

#![allow(clippy::print_stdout)]

use std::io::{BufRead, Write};

use cubicle_protocol::events::{Answer, ApprovalDecision, Question};
use tokio::sync::mpsc;

/// Lines from stdin, read on a thread of their own so the session keeps
/// running (and Ctrl-C keeps working) while nobody types.
pub struct Input {
    rx: mpsc::UnboundedReceiver<String>,
}

impl Input {
    /// Starts reading stdin.
    pub fn stdin() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Self { rx }
    }

    /// The next line, or `None` at end of input.
    pub async fn line(&mut self, prompt: &str) -> Option<String> {
        print!("{prompt}");
        let _ = std::io::stdout().flush();
        self.rx.recv().await
    }
}

/// Shows questions and reads one answer per question.
pub async fn ask(input: &mut Input, questions: &[Question]) -> Option<Vec<Answer>> {
    let mut answers = Vec::new();
    for q in questions {
        println!("\n? {} — {}", q.header, q.question);
        for (i, o) in q.options.iter().enumerate() {
            if o.description.is_empty() {
                println!("  {}. {}", i + 1, o.label);
            } else {
                println!("  {}. {} — {}", i + 1, o.label, o.description);
            }
        }
        let hint = if q.multi_select {
            "numbers separated by commas, or your own answer"
        } else {
            "a number, or your own answer"
        };
        println!("  ({hint})");
        let line = input.line("> ").await?;
        answers.push(parse_answer(q, &line));
    }
    Some(answers)
}

/// Reads `1`, `1,3` (multi-select) or free text.
pub fn parse_answer(q: &Question, line: &str) -> Answer {
    let picks: Option<Vec<String>> = line
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| q.options.get(i))
                .map(|o| o.label.clone())
        })
        .collect();
    match picks {
        Some(p) if !p.is_empty() && (q.multi_select || p.len() == 1) => Answer {
            selected: p,
            text: None,
        },
        _ => Answer {
            selected: Vec::new(),
            text: Some(line.trim().to_owned()),
        },
    }
}

/// Shows an approval request and reads the decision (deny on end of input).
pub async fn approve(input: &mut Input, summary: &str, reason: &str) -> ApprovalDecision {
    println!("\n! Approval needed: {summary}");
    println!("  why: {reason}");
    loop {
        let Some(line) = input
            .line("  [o] allow once  [s] allow for this session  [d] deny > ")
            .await
        else {
            return ApprovalDecision::Deny;
        };
        match line.trim().to_ascii_lowercase().as_str() {
            "o" | "once" | "y" | "yes" => return ApprovalDecision::AllowOnce,
            "s" | "session" => return ApprovalDecision::AllowSession,
            "d" | "deny" | "n" | "no" => return ApprovalDecision::Deny,
            _ => println!("  please type o, s or d"),
        }
    }
}

/// A message for the session: what the person typed, or what the slash
/// command they typed expands to.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The text the session receives.
    pub text: String,
    /// The command it came from, if any (`greet:hello`).
    pub command: Option<String>,
    /// The command's `allowed-tools`.
    pub allowed_tools: Vec<String>,
}

/// Expands `typed` when it is a slash command (`/plugin:command ARGS`,
/// `/command ARGS` when unambiguous, `/skill ARGS`); `//text` sends
/// `/text` as typed. An unknown command is an error naming close matches.
pub fn prepare(
    commands: &cubicle_skills::CommandIndex,
    typed: &str,
) -> Result<Prompt, cubicle_skills::SlashError> {
    Ok(match commands.expand(typed)? {
        Some(e) => {
            if let Some(m) = e.model.as_deref().filter(|m| *m != "inherit") {
                eprintln!(
                    "cubicle: /{} asks for the model `{m}`; the session's model answers it",
                    e.command
                );
            }
            Prompt {
                text: e.prompt,
                command: Some(e.command),
                allowed_tools: e.allowed_tools,
            }
        }
        None => Prompt {
            text: cubicle_skills::commands::unescape_slash(typed).to_owned(),
            command: None,
            allowed_tools: Vec::new(),
        },
    })
}

/// Whether a command's `allowed-tools` answers an approval request for
/// `tool` without asking: an entry naming the whole tool (`Bash`, `bash`,
/// `mcp__server`, `mcp__server__tool`). Entries with a specifier
/// (`Bash(git add:*)`) need the call's arguments, which an approval request
/// does not carry, so those calls are asked about as usual. Denials never
/// reach this point: the policy refuses them first.
pub fn pre_approved(allowed_tools: &[String], tool: &str) -> bool {
    allowed_tools.iter().any(|entry| {
        let entry = entry.trim();
        if entry.contains('(') {
            return false;
        }
        entry == tool
            || cubicle_policy::rule::cubicle_tool_name(entry) == Some(tool)
            || (entry.starts_with("mcp__")
                && entry.matches("__").count() == 1
                && tool.starts_with(&format!("{entry}__")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cubicle_protocol::events::QuestionOption;

    #[test]
    fn allowed_tools_answer_only_whole_tool_entries() {
        let allowed: Vec<String> = ["Read", "Bash(git add:*)", "mcp__notes", "grep"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert!(pre_approved(&allowed, "read"));
        assert!(pre_approved(&allowed, "grep"));
        assert!(pre_approved(&allowed, "mcp__notes__search"));
        assert!(
            !pre_approved(&allowed, "bash"),
            "a specifier needs the call"
        );
        assert!(!pre_approved(&allowed, "mcp__notesx__search"));
        assert!(!pre_approved(&allowed, "write"));
        assert!(!pre_approved(&[], "read"));
    }

    #[test]
    fn ordinary_text_and_escaped_slashes_pass_through() {
        let idx = cubicle_skills::CommandIndex::new(None);
        assert_eq!(prepare(&idx, "hello").unwrap().text, "hello");
        assert_eq!(
            prepare(&idx, "/mnt/x is empty").unwrap().text,
            "/mnt/x is empty"
        );
        assert_eq!(prepare(&idx, "//nope here").unwrap().text, "/nope here");
        assert!(
            prepare(&idx, "/nope")
                .unwrap_err()
                .to_string()
                .starts_with("there is no command /nope")
        );
    }

    fn q(multi: bool) -> Question {
        Question {
            question: "Which?".into(),
            header: "Pick".into(),
            options: ["A", "B", "C"]
                .iter()
                .map(|l| QuestionOption {
                    label: (*l).into(),
                    description: String::new(),
                })
                .collect(),
            multi_select: multi,
        }
    }

    #[test]
    fn numbers_pick_options_and_anything_else_is_text() {
        assert_eq!(parse_answer(&q(false), " 2 ").selected, vec!["B"]);
        assert_eq!(parse_answer(&q(true), "1, 3").selected, vec!["A", "C"]);
        let a = parse_answer(&q(false), "1,3");
        assert_eq!(a.text.as_deref(), Some("1,3"));
        let a = parse_answer(&q(false), "neither, use D");
        assert_eq!(a.text.as_deref(), Some("neither, use D"));
        assert_eq!(parse_answer(&q(false), "9").text.as_deref(), Some("9"));
    }
}

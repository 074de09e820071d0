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

#[cfg(test)]
mod tests {
    use super::*;
    use cubicle_protocol::events::QuestionOption;

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

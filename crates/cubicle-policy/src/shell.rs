//! Splits a shell command line into the simple commands it runs, so that
//! `Bash(git *)` cannot be stretched to cover `git status && rm -rf /mnt/x`.
//!
//! This is not a shell parser, and it need not be one: it only has to find
//! every place where a second command could start. It splits on `&&`, `||`,
//! `;`, `|`, `&`, newlines, backticks, `$(`, `<(`, `>(` and parentheses
//! outside quotes, and on `` ` `` and `$(` inside double quotes too, because
//! the shell runs those there. Single-quoted text and backslash-escaped
//! characters never split. When the quoting does not close, the result says
//! so, and allow rules then refuse to match.

/// The simple commands found in one command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitCommand {
    /// Each simple command, trimmed, with runs of unquoted whitespace made one space.
    pub parts: Vec<String>,
    /// False when a quote was left open, so the split may be wrong.
    pub complete: bool,
}

/// Splits `command` into the simple commands it would run.
pub fn split_command(command: &str) -> SplitCommand {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = command.chars().peekable();
    let mut single = false;
    let mut double = false;
    // Whether the last character pushed was an unquoted space, so that runs
    // of whitespace become one space and `git  status` matches `git status`.
    let mut last_space = false;

    fn flush(current: &mut String, parts: &mut Vec<String>) {
        let trimmed = current.trim();
        if !trimmed.is_empty() {
            parts.push(trimmed.to_string());
        }
        current.clear();
    }

    while let Some(c) = chars.next() {
        if single {
            current.push(c);
            if c == '\'' {
                single = false;
            }
            last_space = false;
            continue;
        }
        if double {
            match c {
                '"' => {
                    double = false;
                    current.push(c);
                }
                '\\' => {
                    current.push(c);
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                }
                '`' => flush(&mut current, &mut parts),
                '$' if chars.peek() == Some(&'(') => {
                    chars.next();
                    flush(&mut current, &mut parts);
                }
                ')' => {
                    // Closes a `$(` opened inside the quotes; a literal `)`
                    // in a quoted argument splits harmlessly too.
                    flush(&mut current, &mut parts);
                }
                _ => current.push(c),
            }
            last_space = false;
            continue;
        }
        match c {
            '\'' => {
                single = true;
                current.push(c);
                last_space = false;
            }
            '"' => {
                double = true;
                current.push(c);
                last_space = false;
            }
            '\\' => {
                current.push(c);
                match chars.next() {
                    // A backslash-newline joins lines: no new command starts.
                    Some('\n') => {
                        current.pop();
                        if !last_space {
                            current.push(' ');
                            last_space = true;
                        }
                        continue;
                    }
                    Some(next) => current.push(next),
                    None => {}
                }
                last_space = false;
            }
            '&' | '|' | ';' | '\n' | '\r' | '`' | '(' | ')' => {
                flush(&mut current, &mut parts);
                last_space = false;
            }
            '$' | '<' | '>' if chars.peek() == Some(&'(') => {
                chars.next();
                flush(&mut current, &mut parts);
                last_space = false;
            }
            c if c.is_whitespace() => {
                if !last_space {
                    current.push(' ');
                    last_space = true;
                }
            }
            c => {
                current.push(c);
                last_space = false;
            }
        }
    }
    flush(&mut current, &mut parts);
    SplitCommand {
        parts,
        complete: !single && !double,
    }
}

/// Words that run the rest of the line as a command, skipped when deny and ask
/// rules look for the command actually run (`sudo rm -rf x` runs `rm`).
const WRAPPERS: &[&str] = &[
    "builtin", "command", "doas", "env", "exec", "nice", "nohup", "sudo", "time", "timeout",
    "xargs",
];

/// The command with leading `NAME=value` assignments and wrapper words removed.
///
/// Used only to make deny and ask rules harder to sidestep; allow rules match
/// the command as written, so `LD_PRELOAD=x git status` is not allowed by
/// `Bash(git *)`.
pub fn strip_prefixes(part: &str) -> &str {
    let mut rest = part;
    loop {
        let word_end = rest.find(' ').unwrap_or(rest.len());
        let word = &rest[..word_end];
        let is_assignment = word
            .split_once('=')
            .is_some_and(|(name, _)| is_variable_name(name));
        let is_wrapper = WRAPPERS.contains(&word);
        // A wrapper's own options (`timeout 5 rm`, `nice -n 5 rm`) are
        // skipped too: a word after a wrapper that starts with `-` or a digit.
        let is_option = word.starts_with('-') || word.starts_with(|c: char| c.is_ascii_digit());
        if (is_assignment || is_wrapper || (is_option && rest.len() != part.len()))
            && word_end < rest.len()
        {
            rest = rest[word_end..].trim_start();
        } else {
            return rest;
        }
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pretty_assertions::assert_eq;

    fn parts(command: &str) -> Vec<String> {
        split_command(command).parts
    }

    #[test]
    fn a_simple_command_is_one_part() {
        assert_eq!(parts("git status"), vec!["git status"]);
        assert_eq!(parts("  git   status  "), vec!["git status"]);
        assert_eq!(parts(""), Vec::<String>::new());
    }

    #[test]
    fn every_operator_splits() {
        for op in ["&&", "||", ";", "|", "&", "\n", "|&", ";;"] {
            assert_eq!(
                parts(&format!("git status {op} rm -rf /mnt/x")),
                vec!["git status", "rm -rf /mnt/x"],
                "operator {op:?}"
            );
        }
    }

    #[test]
    fn substitutions_split() {
        assert_eq!(parts("echo $(rm -rf x)"), vec!["echo", "rm -rf x"]);
        assert_eq!(parts("echo `rm -rf x`"), vec!["echo", "rm -rf x"]);
        assert_eq!(
            parts("diff <(cat a) >(tee b)"),
            vec!["diff", "cat a", "tee b"]
        );
        assert_eq!(parts("(cd /mnt && rm x)"), vec!["cd /mnt", "rm x"]);
    }

    #[test]
    fn quoted_operators_do_not_split() {
        assert_eq!(
            parts("git commit -m 'fix && rm -rf x; done'"),
            vec!["git commit -m 'fix && rm -rf x; done'"]
        );
        assert_eq!(
            parts(r#"git commit -m "a | b ; c""#),
            vec![r#"git commit -m "a | b ; c""#]
        );
        assert_eq!(parts(r"echo a \&\& rm x"), vec![r"echo a \&\& rm x"]);
    }

    #[test]
    fn substitutions_inside_double_quotes_split() {
        assert_eq!(
            parts(r#"git commit -m "$(rm -rf /mnt/x)""#),
            vec![r#"git commit -m ""#, "rm -rf /mnt/x", "\""]
        );
        assert_eq!(parts(r#"echo "`id`""#), vec!["echo \"", "id", "\""]);
        // Single quotes keep everything literal.
        assert_eq!(parts("echo '$(id)'"), vec!["echo '$(id)'"]);
    }

    #[test]
    fn an_open_quote_marks_the_split_incomplete() {
        let split = split_command("git commit -m 'oops && rm -rf x");
        assert!(!split.complete);
        assert!(split_command("echo \"a").complete.eq(&false));
        assert!(split_command("echo 'a' \"b\"").complete);
    }

    #[test]
    fn backslash_newline_joins_lines() {
        assert_eq!(parts("git \\\n  status"), vec!["git status"]);
    }

    #[test]
    fn prefixes_are_stripped_for_deny_matching() {
        assert_eq!(strip_prefixes("sudo rm -rf x"), "rm -rf x");
        assert_eq!(strip_prefixes("FOO=1 BAR=2 rm x"), "rm x");
        assert_eq!(strip_prefixes("env -i FOO=1 rm x"), "rm x");
        assert_eq!(strip_prefixes("timeout 5 nice -n 10 rm x"), "rm x");
        assert_eq!(strip_prefixes("git status"), "git status");
        assert_eq!(strip_prefixes("-rf"), "-rf");
        assert_eq!(strip_prefixes("sudo"), "sudo");
    }
}

//! Permission rules in Claude Code's `Tool` / `Tool(specifier)` form, parsed
//! into a typed [`Rule`] and matched against Cubicle's tool calls.
//!
//! | rule | matches Cubicle tool | by |
//! |---|---|---|
//! | `Bash`, `Bash(git *)`, `Bash(git:*)`, `Bash(npm test)` | `bash` | its `command`, one simple command at a time |
//! | `Read`, `Read(/mnt/contracts/**)` | `read`, `glob`, `grep` | `path` (searches: the folder searched) |
//! | `Edit`, `Edit(/mnt/**/*.xlsx)` | `edit`, `write` | `path` — Edit rules cover every file-changing tool |
//! | `Write`, `Write(*.docx)` | `write` | `path` |
//! | `Glob(...)`, `Grep(...)` | `glob` / `grep` only | the folder searched |
//! | `WebFetch`, `WebFetch(domain:*.example.com)` | `web_fetch`, `browser_navigate` | the host of `url` |
//! | `Task`, `TodoWrite`, `AskUserQuestion` | `task`, `todo_write`, `ask_user` | name only |
//! | `mcp__server__tool`, `mcp__server`, `mcp__server__*` | that MCP tool / every tool of the server | name only |
//! | `browser_*`, `todo_write`, … (Cubicle's lowercase names, `*` allowed) | those tools | name only |
//!
//! A Bash specifier is a command: `git *` (or the legacy `git:*`) matches
//! `git` and `git` followed by anything; without a trailing `*` it must match
//! the whole command; `*` elsewhere matches any text. A command line holding
//! several commands (`&&`, `||`, `;`, `|`, `&`, newlines, `` ` ``, `$(`) is
//! allowed by an allow rule only if every command matches it, and is caught by
//! a deny or ask rule if any command matches it (also after leading
//! `NAME=value` assignments and wrappers such as `sudo` or `env` are removed).
//!
//! The principle throughout: when Cubicle cannot tell what a call touches (no
//! path, an unparsable URL, an unclosed quote), deny and ask rules match and
//! allow rules do not.
//!
//! Bash deny rules are a guard rail, not a wall: a determined command can
//! always be spelt differently (`find -delete`, `python -c`). The cubicle is
//! the wall.

use std::fmt;

use crate::call::{Call, Target};
use crate::domain::DomainPattern;
use crate::path::PathPattern;
use crate::shell::{split_command, strip_prefixes};

/// What a matching rule (or the default) decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Effect {
    /// The call runs.
    Allow,
    /// The person is asked first.
    Ask,
    /// The call is refused.
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "allow",
            Effect::Ask => "ask",
            Effect::Deny => "deny",
        })
    }
}

/// Why a rule's text is not a valid rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid rule: {message}")]
pub struct RuleError {
    /// The rule as written.
    pub text: String,
    /// What is wrong with it.
    pub message: String,
}

/// One parsed permission rule.
#[derive(Debug, Clone)]
pub struct Rule {
    text: String,
    kind: RuleKind,
}

#[derive(Debug, Clone)]
enum RuleKind {
    /// `Bash` or `Bash(spec)`.
    Bash(CommandPattern),
    /// `Read`/`Edit`/`Write`/`Glob`/`Grep`, with an optional path pattern.
    Path {
        family: PathFamily,
        pattern: Option<Box<PathPattern>>,
    },
    /// `WebFetch` or `WebFetch(domain:...)`.
    Fetch(Option<DomainPattern>),
    /// A tool matched by name only (`Task`, `mcp__s__t`, `browser_*`).
    Name(NamePattern),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathFamily {
    Read,
    Edit,
    Write,
    Glob,
    Grep,
}

impl PathFamily {
    fn covers(self, tool: &str) -> bool {
        match self {
            PathFamily::Read => matches!(tool, "read" | "glob" | "grep"),
            PathFamily::Edit => matches!(tool, "edit" | "write"),
            PathFamily::Write => tool == "write",
            PathFamily::Glob => tool == "glob",
            PathFamily::Grep => tool == "grep",
        }
    }
}

/// Claude Code's tool names and the Cubicle tool each stands for, where the
/// rule names a single tool by name.
const NAME_ONLY_TOOLS: &[(&str, &str)] = &[
    ("Task", "task"),
    ("TodoWrite", "todo_write"),
    ("AskUserQuestion", "ask_user"),
];

/// The Cubicle tool name for one of Claude Code's tool names, if it has one.
pub fn cubicle_tool_name(claude_name: &str) -> Option<&'static str> {
    match claude_name {
        "Bash" => Some("bash"),
        "Read" => Some("read"),
        "Edit" => Some("edit"),
        "Write" => Some("write"),
        "Glob" => Some("glob"),
        "Grep" => Some("grep"),
        "WebFetch" => Some("web_fetch"),
        other => NAME_ONLY_TOOLS
            .iter()
            .find(|(claude, _)| *claude == other)
            .map(|(_, cubicle)| *cubicle),
    }
}

impl Rule {
    /// Parses a rule such as `Bash(git *)` or `Read(/mnt/contracts/**)`.
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        let err = |message: String| RuleError {
            text: text.to_string(),
            message,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(err("the rule is empty".into()));
        }
        let (name, spec) = match trimmed.find('(') {
            Some(open) => match trimmed[open + 1..].strip_suffix(')') {
                Some(inner) => (&trimmed[..open], Some(inner)),
                None => return Err(err("missing \")\"".into())),
            },
            None if trimmed.contains(')') => return Err(err("missing \"(\"".into())),
            None => (trimmed, None),
        };
        if name.is_empty() {
            return Err(err("no tool name before \"(\"".into()));
        }
        if spec.is_some_and(|s| s.trim().is_empty()) {
            return Err(err(format!(
                "empty parentheses: write {name} alone to match every call"
            )));
        }
        let kind = match name {
            "Bash" => RuleKind::Bash(match spec {
                None => CommandPattern::Any,
                Some(spec) => CommandPattern::parse(spec).map_err(err)?,
            }),
            "Read" | "Edit" | "Write" | "Glob" | "Grep" => {
                let family = match name {
                    "Read" => PathFamily::Read,
                    "Edit" => PathFamily::Edit,
                    "Write" => PathFamily::Write,
                    "Glob" => PathFamily::Glob,
                    _ => PathFamily::Grep,
                };
                let pattern = match spec {
                    None => None,
                    Some(spec) => Some(Box::new(PathPattern::parse(spec.trim()).map_err(err)?)),
                };
                RuleKind::Path { family, pattern }
            }
            "WebFetch" => RuleKind::Fetch(match spec {
                None => None,
                Some(spec) => match spec.trim().strip_prefix("domain:") {
                    Some(domain) => Some(DomainPattern::parse(domain).map_err(err)?),
                    None => {
                        return Err(err("write the site as WebFetch(domain:example.com)".into()));
                    }
                },
            }),
            _ => {
                if spec.is_some() {
                    return Err(err(format!(
                        "only Bash, Read, Edit, Write, Glob, Grep and WebFetch take a \
                         specifier; write {name} alone"
                    )));
                }
                RuleKind::Name(NamePattern::parse(name).map_err(err)?)
            }
        };
        Ok(Rule {
            text: trimmed.to_string(),
            kind,
        })
    }

    /// The rule as written (trimmed).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this rule, used with `effect`, applies to `call`.
    ///
    /// Allow rules must match everything the call does; deny and ask rules
    /// match when anything it does matches.
    pub(crate) fn matches(&self, call: &Call<'_>, effect: Effect) -> bool {
        let strict = effect == Effect::Allow;
        match &self.kind {
            RuleKind::Name(pattern) => pattern.matches(call.tool),
            RuleKind::Bash(pattern) => {
                if call.tool != "bash" {
                    return false;
                }
                let Target::Command { raw, split } = &call.target else {
                    return false;
                };
                if matches!(pattern, CommandPattern::Any) {
                    return true;
                }
                if strict {
                    split.complete
                        && !split.parts.is_empty()
                        && split.parts.iter().all(|part| pattern.matches(part))
                } else {
                    split
                        .parts
                        .iter()
                        .any(|part| pattern.matches(part) || pattern.matches(strip_prefixes(part)))
                        // An unclosed quote may hide where commands start:
                        // look at the whole line as well.
                        || (!split.complete && pattern.matches(raw.trim()))
                }
            }
            RuleKind::Path { family, pattern } => {
                if !family.covers(call.tool) {
                    return false;
                }
                let Some(pattern) = pattern else {
                    return true;
                };
                match &call.target {
                    Target::File { path: Some(path) } => pattern.matches(path),
                    Target::File { path: None } => !strict,
                    Target::Search { root } => {
                        if strict {
                            pattern.matches(root)
                        } else {
                            pattern.reached_from(root)
                        }
                    }
                    Target::Command { .. } | Target::Fetch { .. } | Target::Other => false,
                }
            }
            RuleKind::Fetch(domain) => {
                if !matches!(call.tool, "web_fetch" | "browser_navigate") {
                    return false;
                }
                let Some(domain) = domain else {
                    return true;
                };
                match &call.target {
                    Target::Fetch {
                        host: Some(host), ..
                    } => domain.matches(host),
                    Target::Fetch { host: None, .. } => !strict,
                    Target::Command { .. }
                    | Target::File { .. }
                    | Target::Search { .. }
                    | Target::Other => false,
                }
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The command part of a Bash rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CommandPattern {
    /// `Bash` or `Bash(*)`.
    Any,
    /// `Bash(npm test)`: the whole command.
    Exact(String),
    /// `Bash(git *)` or `Bash(git:*)`: `git` alone or followed by a space and anything.
    Prefix(String),
    /// `Bash(git * --force)`: `*` matches any text; the pieces between them are literal.
    Wildcard(Vec<String>),
}

impl CommandPattern {
    fn parse(spec: &str) -> Result<Self, String> {
        let split = split_command(spec);
        if !split.complete {
            return Err("a quote is not closed".into());
        }
        let mut parts = split.parts;
        if parts.len() != 1 {
            return Err(
                "a rule matches one command at a time: write one rule per command \
                 (no &&, ||, ;, |, or $(...))"
                    .into(),
            );
        }
        let spec = parts.remove(0);
        if spec == "*" {
            return Ok(CommandPattern::Any);
        }
        if let Some(prefix) = spec.strip_suffix(":*").or_else(|| spec.strip_suffix(" *")) {
            let prefix = prefix.trim_end();
            if !prefix.is_empty() && !prefix.contains('*') {
                return Ok(CommandPattern::Prefix(prefix.to_string()));
            }
        }
        if spec.contains('*') {
            return Ok(CommandPattern::Wildcard(
                spec.split('*').map(str::to_string).collect(),
            ));
        }
        Ok(CommandPattern::Exact(spec))
    }

    fn matches(&self, command: &str) -> bool {
        match self {
            CommandPattern::Any => true,
            CommandPattern::Exact(exact) => command == exact,
            CommandPattern::Prefix(prefix) => {
                command == prefix
                    || (command.starts_with(prefix.as_str())
                        && command.as_bytes().get(prefix.len()) == Some(&b' '))
            }
            CommandPattern::Wildcard(pieces) => wildcard_match(pieces, command),
        }
    }
}

/// Matches `text` against literal `pieces` separated by `*` wildcards.
fn wildcard_match(pieces: &[String], text: &str) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return text.is_empty();
    };
    let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        // No `*` at all: the text must be exactly the first piece.
        return remaining.is_empty();
    };
    for piece in middle {
        match remaining.find(piece.as_str()) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    remaining.ends_with(last.as_str())
}

/// A tool name with optional `*` wildcards, for rules that match by name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NamePattern {
    pieces: Vec<String>,
}

impl NamePattern {
    fn parse(name: &str) -> Result<Self, String> {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*'))
        {
            return Err(format!("{name:?} is not a tool name"));
        }
        let pattern = if let Some(cubicle) = cubicle_tool_name(name) {
            cubicle.to_string()
        } else if let Some(rest) = name.strip_prefix("mcp__") {
            let (server, tool) = match rest.split_once("__") {
                Some((server, tool)) => (server, Some(tool)),
                None => (rest, None),
            };
            if server.is_empty() || tool == Some("") {
                return Err("write mcp__server, mcp__server__tool or mcp__server__*".into());
            }
            match tool {
                Some(tool) => format!("mcp__{server}__{tool}"),
                // `mcp__server` means every tool of that server.
                None => format!("mcp__{server}__*"),
            }
        } else if name.starts_with(|c: char| c.is_ascii_uppercase()) {
            return Err(format!(
                "unknown tool {name:?}: use Bash, Read, Edit, Write, Glob, Grep, WebFetch, \
                 Task, TodoWrite, AskUserQuestion, mcp__server__tool or a Cubicle tool name \
                 such as browser_navigate"
            ));
        } else {
            name.to_string()
        };
        Ok(NamePattern {
            pieces: pattern.split('*').map(str::to_string).collect(),
        })
    }

    fn matches(&self, tool: &str) -> bool {
        wildcard_match(&self.pieces, tool)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::{Value, json};

    fn rule(text: &str) -> Rule {
        Rule::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn hits(rule_text: &str, effect: Effect, tool: &str, input: Value) -> bool {
        rule(rule_text).matches(&Call::analyse(tool, &input), effect)
    }

    fn allows(rule_text: &str, tool: &str, input: Value) -> bool {
        hits(rule_text, Effect::Allow, tool, input)
    }

    fn denies(rule_text: &str, tool: &str, input: Value) -> bool {
        hits(rule_text, Effect::Deny, tool, input)
    }

    fn bash(command: &str) -> Value {
        json!({ "command": command })
    }

    fn path(p: &str) -> Value {
        json!({ "path": p })
    }

    #[test]
    fn good_rules_parse() {
        for text in [
            "Bash",
            "Bash(git *)",
            "Bash(git:*)",
            "Bash(npm run test)",
            "Bash(*)",
            "Bash(git * --force)",
            "Read",
            "Read(/mnt/contracts/**)",
            "Edit(/mnt/**/*.xlsx)",
            "Write(*.docx)",
            "Glob(/mnt)",
            "Grep(/mnt/**)",
            "WebFetch",
            "WebFetch(domain:*.example.com)",
            "WebFetch(domain:example.com)",
            "Task",
            "TodoWrite",
            "AskUserQuestion",
            "mcp__github",
            "mcp__github__create_issue",
            "mcp__github__*",
            "browser_*",
            "todo_write",
            "  Bash(ls)  ",
        ] {
            assert!(Rule::parse(text).is_ok(), "{text:?} should parse");
        }
        assert_eq!(rule("  Bash(ls)  ").text(), "Bash(ls)");
    }

    #[test]
    fn bad_rules_say_why() {
        let cases = [
            ("Bash(git *", "missing \")\""),
            ("Bash git *)", "missing \"(\""),
            ("", "empty"),
            ("(ls)", "no tool name"),
            ("Bash()", "empty parentheses"),
            ("Bsh(ls)", "take a specifier"),
            ("Bsh", "unknown tool \"Bsh\""),
            ("Task(x)", "write Task alone"),
            ("Read(~/x)", "~"),
            ("Read(/mnt/[x)", "not a valid path pattern"),
            ("WebFetch(example.com)", "domain:example.com"),
            ("WebFetch(domain:https://x.com)", "without https://"),
            ("Bash(git status && rm x)", "one command at a time"),
            ("Bash(echo 'x)", "quote is not closed"),
            ("mcp__", "mcp__server"),
            ("mcp__srv__", "mcp__server"),
            ("tool name!", "not a tool name"),
        ];
        for (text, want) in cases {
            let e = Rule::parse(text).expect_err(text);
            assert!(
                e.to_string().contains(want),
                "{text:?}: {e} should contain {want:?}"
            );
        }
        assert_eq!(
            Rule::parse("Bash(git *").unwrap_err().to_string(),
            r#""Bash(git *" is not a valid rule: missing ")""#
        );
    }

    #[test]
    fn bash_prefix_rules_respect_word_boundaries() {
        assert!(allows("Bash(git *)", "bash", bash("git status")));
        assert!(allows("Bash(git *)", "bash", bash("git")));
        assert!(allows("Bash(git *)", "bash", bash("  git   log  ")));
        assert!(!allows("Bash(git *)", "bash", bash("gitk")));
        assert!(allows("Bash(git:*)", "bash", bash("git push")));
        assert!(!allows("Bash(git:*)", "bash", bash("github")));
        assert!(allows("Bash(ls*)", "bash", bash("lsof")));
    }

    #[test]
    fn bash_exact_and_wildcard_rules() {
        assert!(allows("Bash(npm test)", "bash", bash("npm test")));
        assert!(!allows("Bash(npm test)", "bash", bash("npm test --x")));
        assert!(allows(
            "Bash(git * --force)",
            "bash",
            bash("git push --force")
        ));
        assert!(!allows("Bash(git * --force)", "bash", bash("git push")));
        assert!(allows("Bash(*)", "bash", bash("anything && at all")));
        assert!(allows("Bash", "bash", bash("x; y")));
        assert!(!allows("Bash", "read", path("/x")));
    }

    #[test]
    fn allow_needs_every_subcommand_deny_needs_any() {
        let cmd = bash("git status && rm -rf /mnt/x");
        assert!(!allows("Bash(git *)", "bash", cmd.clone()));
        assert!(denies("Bash(rm *)", "bash", cmd.clone()));
        assert!(denies("Bash(git *)", "bash", cmd));
        assert!(allows(
            "Bash(git *)",
            "bash",
            bash("git add . && git commit -m 'x; y'")
        ));
        assert!(!allows("Bash(git *)", "bash", bash("git log | sh")));
        assert!(!allows("Bash(git *)", "bash", bash("git log $(rm x)")));
        assert!(!allows(
            "Bash(git *)",
            "bash",
            bash("git commit -m \"$(rm x)\"")
        ));
        assert!(!allows("Bash(git *)", "bash", bash("git log `rm x`")));
        assert!(!allows("Bash(git *)", "bash", bash("git log\nrm x")));
        assert!(denies("Bash(rm *)", "bash", bash("echo `rm -rf x`")));
        assert!(denies("Bash(rm *)", "bash", bash("ls; rm x")));
    }

    #[test]
    fn deny_sees_through_wrappers_and_assignments_allow_does_not() {
        assert!(denies("Bash(rm *)", "bash", bash("sudo rm -rf /")));
        assert!(denies("Bash(rm *)", "bash", bash("FOO=1 rm x")));
        assert!(!allows(
            "Bash(git *)",
            "bash",
            bash("LD_PRELOAD=/x.so git status")
        ));
    }

    #[test]
    fn unclosed_quotes_match_deny_but_not_allow() {
        assert!(!allows("Bash(git *)", "bash", bash("git commit -m 'x")));
        assert!(denies("Bash(git *)", "bash", bash("git commit -m 'x")));
        assert!(denies("Bash(rm *)", "bash", bash("rm 'x")));
        assert!(!allows("Bash(git *)", "bash", bash("")));
        assert!(!allows("Bash(git *)", "bash", json!({})));
    }

    #[test]
    fn read_rules_cover_read_glob_and_grep() {
        assert!(allows("Read(/mnt/c/**)", "read", path("/mnt/c/a.pdf")));
        assert!(allows(
            "Read(/mnt/c/**)",
            "glob",
            json!({"pattern": "*", "path": "/mnt/c"})
        ));
        assert!(allows(
            "Read(/mnt/c/**)",
            "grep",
            json!({"pattern": "x", "path": "/mnt/c/d"})
        ));
        assert!(!allows("Read(/mnt/c/**)", "edit", path("/mnt/c/a.pdf")));
        assert!(!allows("Read(/mnt/c/**)", "bash", bash("cat /mnt/c/a")));
        assert!(allows("Read", "grep", json!({"pattern": "x"})));
        // Grep without a path searches the workspace.
        assert!(allows(
            "Read(/workspace/**)",
            "grep",
            json!({"pattern": "x"})
        ));
    }

    #[test]
    fn searches_above_a_denied_folder_are_denied() {
        let grep_mnt = json!({"pattern": "x", "path": "/mnt"});
        assert!(denies("Read(/mnt/secret/**)", "grep", grep_mnt.clone()));
        assert!(!allows("Read(/mnt/secret/**)", "grep", grep_mnt));
        assert!(denies(
            "Read(/mnt/secret/**)",
            "glob",
            json!({"pattern": "../mnt/secret/*"})
        ));
        assert!(!denies(
            "Read(/mnt/secret/**)",
            "grep",
            json!({"pattern": "x", "path": "/mnt/other"})
        ));
    }

    #[test]
    fn traversal_is_normalised_before_matching() {
        assert!(denies(
            "Read(/mnt/secret/**)",
            "read",
            path("/mnt/x/../secret/a")
        ));
        assert!(denies(
            "Read(/mnt/secret/**)",
            "read",
            path("../mnt/secret/a")
        ));
        assert!(denies(
            "Read(/mnt/secret/**)",
            "read",
            path("/mnt//secret/./a")
        ));
        assert!(!denies(
            "Read(/mnt/secret/**)",
            "read",
            path("/mnt/secret-not/a")
        ));
    }

    #[test]
    fn edit_rules_cover_edit_and_write_but_write_rules_only_write() {
        assert!(allows(
            "Edit(/mnt/**/*.xlsx)",
            "edit",
            path("/mnt/R/q.xlsx")
        ));
        assert!(allows(
            "Edit(/mnt/**/*.xlsx)",
            "write",
            path("/mnt/R/q.xlsx")
        ));
        assert!(!allows(
            "Edit(/mnt/**/*.xlsx)",
            "read",
            path("/mnt/R/q.xlsx")
        ));
        assert!(allows("Write(*.docx)", "write", path("/mnt/R/a.docx")));
        assert!(!allows("Write(*.docx)", "edit", path("/mnt/R/a.docx")));
        assert!(allows(
            "Glob(/mnt/**)",
            "glob",
            json!({"pattern": "*", "path": "/mnt/a"})
        ));
        assert!(!allows(
            "Glob(/mnt/**)",
            "grep",
            json!({"pattern": "*", "path": "/mnt/a"})
        ));
        assert!(allows("Grep", "grep", json!({"pattern": "*"})));
    }

    #[test]
    fn calls_without_a_path_match_deny_not_allow() {
        assert!(denies("Edit(/mnt/**)", "edit", json!({})));
        assert!(!allows("Edit(/mnt/**)", "edit", json!({})));
        assert!(allows("Edit", "edit", json!({})));
    }

    #[test]
    fn webfetch_rules_match_by_host() {
        let url = |u: &str| json!({ "url": u });
        assert!(allows(
            "WebFetch(domain:*.example.com)",
            "web_fetch",
            url("https://a.example.com/x")
        ));
        assert!(!allows(
            "WebFetch(domain:*.example.com)",
            "web_fetch",
            url("https://example.com/x")
        ));
        assert!(allows(
            "WebFetch(domain:example.com)",
            "browser_navigate",
            url("http://example.com")
        ));
        assert!(!allows(
            "WebFetch(domain:example.com)",
            "browser_click",
            url("http://example.com")
        ));
        assert!(!allows(
            "WebFetch(domain:example.com)",
            "web_fetch",
            url("not a url")
        ));
        assert!(denies(
            "WebFetch(domain:example.com)",
            "web_fetch",
            url("not a url")
        ));
        assert!(allows("WebFetch", "web_fetch", url("whatever")));
        assert!(!allows("WebFetch", "bash", bash("curl x")));
    }

    #[test]
    fn name_rules_match_tools_by_name() {
        assert!(allows("Task", "task", json!({})));
        assert!(allows("TodoWrite", "todo_write", json!({})));
        assert!(allows("AskUserQuestion", "ask_user", json!({})));
        assert!(allows(
            "mcp__github__create_issue",
            "mcp__github__create_issue",
            json!({})
        ));
        assert!(!allows(
            "mcp__github__create_issue",
            "mcp__github__delete_repo",
            json!({})
        ));
        assert!(allows("mcp__github", "mcp__github__delete_repo", json!({})));
        assert!(!allows("mcp__github", "mcp__githubx__a", json!({})));
        assert!(!allows("mcp__github", "mcp__github", json!({})));
        assert!(allows("mcp__github__*", "mcp__github__x", json!({})));
        assert!(allows(
            "mcp__my_srv__do_it",
            "mcp__my_srv__do_it",
            json!({})
        ));
        assert!(allows("browser_*", "browser_click", json!({})));
        assert!(!allows("browser_*", "bash", json!({})));
        assert!(allows("bash", "bash", bash("rm -rf /")));
    }

    #[test]
    fn wildcard_matching_edge_cases() {
        let p = |s: &str| s.split('*').map(str::to_string).collect::<Vec<_>>();
        assert!(wildcard_match(&p("a*b*c"), "aXbYc"));
        assert!(wildcard_match(&p("a*b*c"), "abc"));
        assert!(!wildcard_match(&p("a*b*c"), "acb"));
        assert!(wildcard_match(&p("*"), ""));
        assert!(wildcard_match(&p("abc"), "abc"));
        assert!(!wildcard_match(&p("abc"), "abcd"));
        assert!(!wildcard_match(&p("ab*ba"), "aba"));
        assert!(!wildcard_match(&[], "x"));
    }

    #[test]
    fn claude_names_map_to_cubicle_tools() {
        assert_eq!(cubicle_tool_name("WebFetch"), Some("web_fetch"));
        assert_eq!(cubicle_tool_name("TodoWrite"), Some("todo_write"));
        assert_eq!(cubicle_tool_name("Nope"), None);
    }
}

//! A tool call as the rules see it: the tool's name plus the one argument a
//! rule can name (the command, the path, the host), worked out once per call
//! so that matching fifty rules stays cheap.

use serde_json::{Value, json};

use crate::domain::host_of_url;
use crate::path::{WORKSPACE, normalize};
use crate::shell::{SplitCommand, split_command};

/// What a call touches, for the rules that look inside calls.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// `bash`: the command line, split into simple commands.
    Command { raw: String, split: SplitCommand },
    /// `read`, `edit`, `write`: the normalised path (`None`: no usable `path`).
    File { path: Option<String> },
    /// `glob`, `grep`: the normalised folder the search starts from.
    Search { root: String },
    /// `web_fetch`, `browser_navigate`: the URL's host (`None`: no usable URL).
    Fetch { url: String, host: Option<String> },
    /// Any other tool: only its name matters.
    Other,
}

/// One analysed call.
#[derive(Debug, Clone)]
pub(crate) struct Call<'a> {
    pub tool: &'a str,
    pub target: Target,
}

impl<'a> Call<'a> {
    /// Reads the argument that rules care about from a call's JSON input.
    pub fn analyse(tool: &'a str, input: &Value) -> Self {
        let str_arg = |name: &str| input.get(name).and_then(Value::as_str);
        let target = match tool {
            "bash" => {
                let raw = str_arg("command").unwrap_or("").to_string();
                let split = split_command(&raw);
                Target::Command { raw, split }
            }
            "read" | "edit" | "write" => Target::File {
                path: str_arg("path").map(normalize),
            },
            "glob" | "grep" => {
                let base = normalize(str_arg("path").unwrap_or(WORKSPACE));
                // A glob pattern can itself climb out (`../mnt/x/*`) or be
                // absolute; the search then starts where its fixed part says.
                let root = match (tool, str_arg("pattern")) {
                    ("glob", Some(pattern)) => {
                        let fixed = literal_dir(pattern);
                        if fixed.starts_with('/') {
                            normalize(&fixed)
                        } else if fixed.is_empty() {
                            base
                        } else {
                            normalize(&format!("{base}/{fixed}"))
                        }
                    }
                    _ => base,
                };
                Target::Search { root }
            }
            "web_fetch" | "browser_navigate" => {
                let url = str_arg("url").unwrap_or("").to_string();
                let host = host_of_url(&url);
                Target::Fetch { url, host }
            }
            _ => Target::Other,
        };
        Call { tool, target }
    }

    /// What the call does, in words for the person: "run the command `ls`".
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Command { raw, .. } => format!("run the command `{}`", shorten(raw, 80)),
            Target::File { path } => {
                let path = path.as_deref().unwrap_or("a file");
                if self.tool == "read" {
                    format!("read {path}")
                } else {
                    format!("change {path}")
                }
            }
            Target::Search { root } => format!("search the files in {root}"),
            Target::Fetch { url, host } => match host {
                Some(host) => format!("open {host}"),
                None => format!("open {:?}", shorten(url, 60)),
            },
            Target::Other => format!("use the tool {}", self.tool),
        }
    }
}

/// The leading segments of a glob pattern that hold no wildcard.
fn literal_dir(pattern: &str) -> String {
    let mut fixed: Vec<&str> = Vec::new();
    let segments: Vec<&str> = pattern.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        // The last segment names files, not the folder searched.
        if i + 1 == segments.len() || segment.contains(['*', '?', '[', '{']) {
            break;
        }
        fixed.push(segment);
    }
    let joined = fixed.join("/");
    if pattern.starts_with('/') && joined.is_empty() {
        "/".into()
    } else {
        joined
    }
}

/// Cuts `text` to at most `max` characters, marking the cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// Turns a call written in rule syntax (`Bash(rm -rf /mnt/x)`) into a tool
/// name and input, for `cubicle policy check`.
pub fn parse_call(text: &str) -> Result<(String, Value), String> {
    let text = text.trim();
    let (name, arg) = match text.find('(') {
        Some(open) => {
            let Some(inner) = text[open + 1..].strip_suffix(')') else {
                return Err("missing \")\" at the end".into());
            };
            (&text[..open], Some(inner))
        }
        None => (text, None),
    };
    if name.is_empty() {
        return Err("no tool name before \"(\"".into());
    }
    let need = |what: &str| -> Result<&str, String> {
        match arg {
            Some(a) if !a.trim().is_empty() => Ok(a),
            _ => Err(format!("{name}(...) needs {what} inside the parentheses")),
        }
    };
    let call = match name {
        "Bash" => ("bash".into(), json!({ "command": need("a command")? })),
        "Read" => ("read".into(), json!({ "path": need("a path")? })),
        "Edit" => ("edit".into(), json!({ "path": need("a path")? })),
        "Write" => ("write".into(), json!({ "path": need("a path")? })),
        "Glob" => (
            "glob".into(),
            json!({ "pattern": "**/*", "path": need("a folder")? }),
        ),
        "Grep" => (
            "grep".into(),
            json!({ "pattern": ".", "path": need("a folder")? }),
        ),
        "WebFetch" => {
            let a = need("a URL or domain:NAME")?.trim();
            let url = match a.strip_prefix("domain:") {
                Some(domain) => format!("https://{domain}/"),
                None => a.to_string(),
            };
            ("web_fetch".into(), json!({ "url": url }))
        }
        _ => {
            if arg.is_some() {
                return Err(format!(
                    "only Bash, Read, Edit, Write, Glob, Grep and WebFetch take an argument; \
                     write {name} alone"
                ));
            }
            let tool = crate::rule::cubicle_tool_name(name).unwrap_or(name);
            if !tool
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!("{name:?} is not a tool name"));
            }
            (tool.to_string(), json!({}))
        }
    };
    Ok(call)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pretty_assertions::assert_eq;

    fn root(tool: &str, input: Value) -> String {
        match Call::analyse(tool, &input).target {
            Target::Search { root } => root,
            other => panic!("not a search: {other:?}"),
        }
    }

    #[test]
    fn search_roots_follow_path_and_pattern() {
        assert_eq!(root("grep", json!({"pattern": "x"})), "/workspace");
        assert_eq!(
            root("grep", json!({"pattern": "x", "path": "/mnt/a/../b"})),
            "/mnt/b"
        );
        assert_eq!(
            root("glob", json!({"pattern": "**/*.pdf", "path": "/mnt"})),
            "/mnt"
        );
        assert_eq!(
            root("glob", json!({"pattern": "../mnt/secret/*.pdf"})),
            "/mnt/secret"
        );
        assert_eq!(
            root("glob", json!({"pattern": "/mnt/x/**/*.pdf"})),
            "/mnt/x"
        );
        assert_eq!(root("glob", json!({"pattern": "/*"})), "/");
    }

    #[test]
    fn files_are_normalised() {
        match Call::analyse("read", &json!({"path": "/mnt/x/../secret/a"})).target {
            Target::File { path } => assert_eq!(path.as_deref(), Some("/mnt/secret/a")),
            other => panic!("{other:?}"),
        }
        match Call::analyse("edit", &json!({"path": 7})).target {
            Target::File { path } => assert_eq!(path, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn calls_in_rule_syntax_are_parsed() {
        let cases = [
            (
                "Bash(rm -rf /mnt/x)",
                ("bash", json!({"command": "rm -rf /mnt/x"})),
            ),
            ("Bash(echo (a))", ("bash", json!({"command": "echo (a)"}))),
            ("Read(/mnt/a)", ("read", json!({"path": "/mnt/a"}))),
            ("Edit(/mnt/a)", ("edit", json!({"path": "/mnt/a"}))),
            ("Write(/mnt/a)", ("write", json!({"path": "/mnt/a"}))),
            (
                "Glob(/mnt)",
                ("glob", json!({"pattern": "**/*", "path": "/mnt"})),
            ),
            (
                "Grep(/mnt)",
                ("grep", json!({"pattern": ".", "path": "/mnt"})),
            ),
            (
                "WebFetch(domain:example.com)",
                ("web_fetch", json!({"url": "https://example.com/"})),
            ),
            (
                "WebFetch(https://a.b/c)",
                ("web_fetch", json!({"url": "https://a.b/c"})),
            ),
            ("Task", ("task", json!({}))),
            ("TodoWrite", ("todo_write", json!({}))),
            (
                "mcp__github__create_issue",
                ("mcp__github__create_issue", json!({})),
            ),
            ("browser_click", ("browser_click", json!({}))),
        ];
        for (text, (tool, input)) in cases {
            assert_eq!(
                parse_call(text).unwrap(),
                (tool.to_string(), input),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_calls_say_why() {
        assert!(parse_call("Bash(rm").unwrap_err().contains("missing"));
        assert!(
            parse_call("Bash()")
                .unwrap_err()
                .contains("needs a command")
        );
        assert!(parse_call("(x)").unwrap_err().contains("no tool name"));
        assert!(
            parse_call("Task(x)")
                .unwrap_err()
                .contains("write Task alone")
        );
        assert!(parse_call("a b").unwrap_err().contains("not a tool name"));
    }

    #[test]
    fn descriptions_are_plain_words() {
        let d = |tool: &str, input: Value| Call::analyse(tool, &input).describe();
        assert_eq!(
            d("bash", json!({"command": "ls -l"})),
            "run the command `ls -l`"
        );
        assert_eq!(d("read", json!({"path": "a.txt"})), "read /workspace/a.txt");
        assert_eq!(d("write", json!({"path": "/mnt/R/a"})), "change /mnt/R/a");
        assert_eq!(
            d("web_fetch", json!({"url": "https://x.org/a"})),
            "open x.org"
        );
        assert_eq!(d("task", json!({})), "use the tool task");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}

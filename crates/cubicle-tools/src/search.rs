//! `glob` and `grep`: finding files and lines without a shell round trip per
//! directory; both run inside the guest.

use async_trait::async_trait;
use cubicle_protocol::conversation::ToolSpec;
use cubicle_protocol::guest::GrepRequest;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::output::{MAX_RESULT_CHARS, truncate_middle};
use crate::{Tool, ToolContext, ToolOutput, parse_input, sandbox_error, spec_for};

const GLOB_LIMIT: u32 = 500;
const GREP_LIMIT: u32 = 500;

/// Arguments of `glob`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GlobInput {
    /// Glob pattern such as `**/*.pdf` or `receipts/*.jpg`.
    pub pattern: String,
    /// Folder to search in (default: the workspace).
    #[serde(default)]
    pub path: Option<String>,
}

/// The `glob` tool.
pub struct Glob;

const GLOB_DESCRIPTION: &str = "Find files by name pattern (`**/*.csv`, `2024-*/*.pdf`) under a \
folder, newest first. Returns at most 500 paths.";

#[async_trait]
impl Tool for Glob {
    fn name(&self) -> &'static str {
        "glob"
    }

    fn spec(&self) -> ToolSpec {
        spec_for::<GlobInput>(self.name(), GLOB_DESCRIPTION)
    }

    fn summary(&self, input: &Value) -> String {
        let pattern = input.get("pattern").and_then(Value::as_str).unwrap_or("?");
        match input.get("path").and_then(Value::as_str) {
            Some(p) => format!("Glob {pattern} in {p}"),
            None => format!("Glob {pattern}"),
        }
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let args: GlobInput = match parse_input(self.name(), &input) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let (root, pattern) = split_root(args.path, &args.pattern, ctx);
        match ctx.computer.glob(&root, &pattern, GLOB_LIMIT).await {
            Ok((paths, truncated)) if paths.is_empty() && !truncated => {
                ToolOutput::text(format!("No files match {pattern} under {root}"))
            }
            Ok((paths, truncated)) => {
                let mut text = paths.join("\n");
                if truncated {
                    text.push_str(&format!(
                        "\n[only the newest {GLOB_LIMIT} matches are shown; narrow the pattern]"
                    ));
                }
                ToolOutput::text(truncate_middle(&text, MAX_RESULT_CHARS))
            }
            Err(e) => sandbox_error(&format!("searching {root}"), &e),
        }
    }
}

/// An absolute pattern like `/mnt/x/**/*.pdf` searches from its literal
/// prefix; a relative one from `path` or the workspace.
fn split_root(path: Option<String>, pattern: &str, ctx: &ToolContext) -> (String, String) {
    if let Some(path) = path {
        return (path, pattern.to_owned());
    }
    if pattern.starts_with('/') {
        let parts: Vec<&str> = pattern.split('/').collect();
        let literal = parts
            .iter()
            .take_while(|p| !p.contains(['*', '?', '[', '{']))
            .count();
        if literal < parts.len() {
            let root = parts[..literal].join("/");
            let rest = parts[literal..].join("/");
            return (if root.is_empty() { "/".into() } else { root }, rest);
        }
    }
    (ctx.computer.info().workspace.clone(), pattern.to_owned())
}

/// Arguments of `grep`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GrepInput {
    /// Regular expression (Rust regex syntax) to search for.
    pub pattern: String,
    /// File or folder to search (default: the workspace).
    #[serde(default)]
    pub path: Option<String>,
    /// Only search files matching this glob, e.g. `*.md`.
    #[serde(default)]
    pub glob: Option<String>,
    /// Ignore case.
    #[serde(default)]
    pub case_insensitive: bool,
    /// `content` (matching lines, the default), `files_with_matches` or `count`.
    #[serde(default)]
    pub output_mode: Option<GrepMode>,
}

/// How `grep` reports matches.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GrepMode {
    /// `path:line:text` for each matching line.
    Content,
    /// Each file with a match, once.
    FilesWithMatches,
    /// Matching lines per file.
    Count,
}

/// The `grep` tool.
pub struct Grep;

const GREP_DESCRIPTION: &str = "Search file contents with a regular expression. Binary files are \
skipped. Returns `path:line:text` lines (at most 500), or with output_mode the matching files or \
counts per file.";

#[async_trait]
impl Tool for Grep {
    fn name(&self) -> &'static str {
        "grep"
    }

    fn spec(&self) -> ToolSpec {
        spec_for::<GrepInput>(self.name(), GREP_DESCRIPTION)
    }

    fn summary(&self, input: &Value) -> String {
        let pattern = input.get("pattern").and_then(Value::as_str).unwrap_or("?");
        match input.get("path").and_then(Value::as_str) {
            Some(p) => format!("Grep /{pattern}/ in {p}"),
            None => format!("Grep /{pattern}/"),
        }
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let args: GrepInput = match parse_input(self.name(), &input) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let path = args
            .path
            .unwrap_or_else(|| ctx.computer.info().workspace.clone());
        let req = GrepRequest {
            pattern: args.pattern.clone(),
            path: path.clone(),
            glob: args.glob,
            case_insensitive: args.case_insensitive,
            limit: GREP_LIMIT,
        };
        let (matches, truncated) = match ctx.computer.grep(req).await {
            Ok(r) => r,
            Err(e) => return sandbox_error(&format!("searching {path}"), &e),
        };
        if matches.is_empty() {
            return ToolOutput::text(format!("No matches for /{}/ under {path}", args.pattern));
        }
        let mut text = match args.output_mode.unwrap_or(GrepMode::Content) {
            GrepMode::Content => matches
                .iter()
                .map(|m| format!("{}:{}:{}", m.path, m.line_number, m.line))
                .collect::<Vec<_>>()
                .join("\n"),
            GrepMode::FilesWithMatches => {
                let mut files: Vec<&str> = matches.iter().map(|m| m.path.as_str()).collect();
                files.dedup();
                files.join("\n")
            }
            GrepMode::Count => {
                let mut counts: Vec<(&str, usize)> = Vec::new();
                for m in &matches {
                    match counts.last_mut() {
                        Some((p, n)) if *p == m.path => *n += 1,
                        _ => counts.push((&m.path, 1)),
                    }
                }
                counts
                    .iter()
                    .map(|(p, n)| format!("{p}:{n}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        if truncated {
            text.push_str(&format!(
                "\n[stopped after {GREP_LIMIT} matching lines; narrow the search]"
            ));
        }
        ToolOutput::text(truncate_middle(&text, MAX_RESULT_CHARS))
    }
}

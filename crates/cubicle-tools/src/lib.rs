//! The built-in tools the model sees, implemented over the
//! [`Computer`](cubicle_sandbox::Computer) trait so that they behave the same
//! on every backend: `bash`, `read`, `write`, `edit`, `glob` and `grep`.
//!
//! Each tool declares its argument schema with `schemars`, parses the model's
//! arguments leniently (unknown fields ignored, clear errors for missing or
//! mistyped ones) and returns text the model can act on, errors included.
//! The session-level tools (`todo_write`, `ask_user`, `task`) need the agent
//! loop and live in `cubicle-agent`; their argument types live here so that
//! every tool schema is in one place.

pub mod bash;
pub mod edit;
pub mod files;
pub mod output;
pub mod read;
pub mod search;
pub mod session;

use std::sync::Arc;

use async_trait::async_trait;
use cubicle_protocol::conversation::{ToolResultContent, ToolSpec};
use cubicle_sandbox::{Computer, OutputChunk, SandboxError};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

/// What a tool call gets to work with.
pub struct ToolContext {
    /// The cubicle the call runs in.
    pub computer: Arc<dyn Computer>,
    /// The model's id for the call.
    pub call_id: String,
    /// Where live output (of commands) goes, when a front end watches.
    pub live: Option<mpsc::Sender<OutputChunk>>,
}

/// What a tool call returns to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// Content blocks for the `tool_result`.
    pub content: Vec<ToolResultContent>,
    /// Whether the call failed.
    pub is_error: bool,
    /// Files the call wrote, for the audit log.
    pub files_written: Vec<FileWritten>,
}

/// A file a tool call wrote, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWritten {
    /// Path inside the cubicle.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the new contents.
    pub sha256: String,
}

impl FileWritten {
    /// Describes `data` written to `path`.
    pub fn new(path: &str, data: &[u8]) -> Self {
        use sha2::Digest as _;
        Self {
            path: path.to_owned(),
            size: data.len() as u64,
            sha256: sha2::Sha256::digest(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }
}

impl ToolOutput {
    /// A successful text result.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: vec![ToolResultContent::text(text)],
            is_error: false,
            files_written: Vec::new(),
        }
    }

    /// A failed call, explained in text the model can act on.
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            content: vec![ToolResultContent::text(text)],
            is_error: true,
            files_written: Vec::new(),
        }
    }

    /// The text blocks joined, images noted by a placeholder.
    pub fn text_summary(&self) -> String {
        let mut out = String::new();
        for c in &self.content {
            if !out.is_empty() {
                out.push('\n');
            }
            match c {
                ToolResultContent::Text { text } => out.push_str(text),
                ToolResultContent::Image { source } => {
                    out.push_str(&format!("[image: {}]", source.media_type));
                }
            }
        }
        out
    }
}

/// A tool the model can call.
#[async_trait]
pub trait Tool: Send + Sync {
    /// The name the model calls it by.
    fn name(&self) -> &str;

    /// Name, description and argument schema for the model.
    fn spec(&self) -> ToolSpec;

    /// One line a person can read, e.g. `$ ls -la` or `Edit report.md`.
    fn summary(&self, input: &Value) -> String;

    /// The path this call changes, if any: calls that change the same path
    /// run one after another, everything else runs concurrently.
    fn writes_path(&self, _input: &Value) -> Option<String> {
        None
    }

    /// Runs the call. Failures the model can act on are `is_error` outputs,
    /// never panics.
    async fn call(&self, input: Value, ctx: &ToolContext) -> ToolOutput;
}

/// Builds a [`ToolSpec`] from an argument type's JSON Schema.
pub fn spec_for<T: schemars::JsonSchema>(name: &str, description: &str) -> ToolSpec {
    let mut schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null);
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
    }
    ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        input_schema: schema,
    }
}

/// Parses a tool's arguments, turning serde's complaint into a message that
/// tells the model what to fix.
pub fn parse_input<T: DeserializeOwned>(tool: &str, input: &Value) -> Result<T, ToolOutput> {
    if !input.is_object() {
        let shown = match input {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Err(ToolOutput::error(format!(
            "invalid arguments for `{tool}`: expected a JSON object matching the tool's schema, got: {}",
            output::clip(&shown, 500)
        )));
    }
    serde_json::from_value(input.clone()).map_err(|e| {
        ToolOutput::error(format!(
            "invalid arguments for `{tool}`: {e}. Check the tool's schema and call it again."
        ))
    })
}

/// Turns a sandbox failure into a tool error the model can act on.
pub fn sandbox_error(action: &str, err: &SandboxError) -> ToolOutput {
    ToolOutput::error(format!("{action} failed: {err}"))
}

/// The standard built-in tools that run over the computer.
pub fn computer_tools() -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(bash::Bash),
        Arc::new(read::Read),
        Arc::new(files::Write),
        Arc::new(edit::Edit),
        Arc::new(search::Glob),
        Arc::new(search::Grep),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Args {
        /// The path.
        path: String,
    }

    #[test]
    fn spec_has_object_schema_without_noise() {
        let spec = spec_for::<Args>("x", "does x");
        assert_eq!(spec.input_schema["type"], "object");
        assert!(spec.input_schema.get("$schema").is_none());
        assert_eq!(spec.input_schema["required"], json!(["path"]));
    }

    #[test]
    fn bad_input_is_explained() {
        let err = parse_input::<Args>("read", &json!({"pth": 1}))
            .err()
            .unwrap();
        assert!(err.is_error);
        assert!(
            err.text_summary().contains("missing field `path`"),
            "{err:?}"
        );
        let err = parse_input::<Args>("read", &json!("{not json"))
            .err()
            .unwrap();
        assert!(err.text_summary().contains("expected a JSON object"));
    }
}

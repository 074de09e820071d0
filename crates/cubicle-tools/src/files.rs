//! `write`: creates or replaces a file.

use async_trait::async_trait;
use cubicle_protocol::conversation::ToolSpec;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::{Tool, ToolContext, ToolOutput, parse_input, sandbox_error, spec_for};

/// Arguments of `write`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteInput {
    /// Absolute path of the file (or relative to the workspace).
    pub path: String,
    /// The complete new contents.
    pub content: String,
}

/// The `write` tool.
pub struct Write;

const DESCRIPTION: &str = "Create a file, or replace one completely, with the given text. Missing \
parent folders are created. The write is atomic: readers see the old or the new file, never half. \
To change part of an existing file, prefer edit. Only the workspace and folders granted read-write \
can be written.";

#[async_trait]
impl Tool for Write {
    fn name(&self) -> &'static str {
        "write"
    }

    fn spec(&self) -> ToolSpec {
        spec_for::<WriteInput>(self.name(), DESCRIPTION)
    }

    fn summary(&self, input: &Value) -> String {
        format!("Write {}", path_of(input))
    }

    fn writes_path(&self, input: &Value) -> Option<String> {
        Some(path_of(input).to_owned())
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let args: WriteInput = match parse_input(self.name(), &input) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let existed = ctx.computer.stat(&args.path).await.is_ok();
        let len = args.content.len();
        let written = crate::FileWritten::new(&args.path, args.content.as_bytes());
        match ctx
            .computer
            .write_file(&args.path, args.content.into_bytes())
            .await
        {
            Ok(()) => {
                let mut out = ToolOutput::text(format!(
                    "{} {} ({len} bytes)",
                    if existed { "Replaced" } else { "Created" },
                    args.path
                ));
                out.files_written.push(written);
                out
            }
            Err(e) => sandbox_error(&format!("writing {}", args.path), &e),
        }
    }
}

/// The `path` argument, or `?`.
pub(crate) fn path_of(input: &Value) -> &str {
    input.get("path").and_then(Value::as_str).unwrap_or("?")
}

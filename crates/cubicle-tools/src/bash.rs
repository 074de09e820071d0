//! `bash`: runs a shell command inside the cubicle.

use async_trait::async_trait;
use cubicle_protocol::conversation::ToolSpec;
use cubicle_protocol::guest::{Command, ExecRequest};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::output::{MAX_RESULT_CHARS, clip, truncate_middle};
use crate::{Tool, ToolContext, ToolOutput, parse_input, sandbox_error, spec_for};

/// Default command timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;
/// Longest timeout the model may ask for.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Output kept from one command before the rest is dropped (the command runs on).
const CAPTURE_BYTES: u64 = 4 * 1024 * 1024;

/// Arguments of `bash`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BashInput {
    /// The command line, run by `bash -c` in the session's workspace.
    pub command: String,
    /// Milliseconds before the command is killed (default 120000, at most 600000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Five to ten words saying what the command does, shown to the person.
    #[serde(default)]
    pub description: Option<String>,
}

/// The `bash` tool.
pub struct Bash;

const DESCRIPTION: &str = "Run a shell command inside the cubicle (an isolated Linux computer). \
Each call starts a fresh `bash -c` in the session's workspace; use absolute paths or `cd dir && …`. \
The granted folders and the workspace are the only files visible. Python 3 and common command-line \
tools are available. Output beyond 30000 characters is cut in the middle: redirect large output to a \
file and inspect it. Prefer the read, write, edit, glob and grep tools for files.";

#[async_trait]
impl Tool for Bash {
    fn name(&self) -> &'static str {
        "bash"
    }

    fn spec(&self) -> ToolSpec {
        spec_for::<BashInput>(self.name(), DESCRIPTION)
    }

    fn summary(&self, input: &Value) -> String {
        let cmd = input.get("command").and_then(Value::as_str).unwrap_or("?");
        format!("$ {}", clip(cmd.lines().next().unwrap_or(""), 200))
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let args: BashInput = match parse_input(self.name(), &input) {
            Ok(a) => a,
            Err(e) => return e,
        };
        if args.command.trim().is_empty() {
            return ToolOutput::error("the command is empty");
        }
        let timeout = args
            .timeout_ms
            .unwrap_or(DEFAULT_TIMEOUT_MS)
            .clamp(1, MAX_TIMEOUT_MS);
        let mut req = ExecRequest::shell(String::new());
        req.command = Command::Argv(vec!["bash".into(), "-c".into(), args.command]);
        req.timeout_ms = Some(timeout);
        req.max_output_bytes = Some(CAPTURE_BYTES);
        let out = match ctx.computer.exec(req, ctx.live.clone()).await {
            Ok(out) => out,
            Err(e) => return sandbox_error("running the command", &e),
        };
        let r = &out.result;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.is_empty() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("[stderr]\n");
            text.push_str(&stderr);
        }
        let mut text = truncate_middle(text.trim_end(), MAX_RESULT_CHARS);
        let mut notes = Vec::new();
        if r.output_truncated {
            notes.push(format!(
                "output beyond {} MiB was dropped",
                CAPTURE_BYTES / (1024 * 1024)
            ));
        }
        if r.timed_out {
            notes.push(format!(
                "timed out after {} s; the command was killed",
                timeout / 1000
            ));
        }
        match (r.code, r.signal) {
            (Some(0), _) => {}
            (Some(code), _) => notes.push(format!("exit code {code}")),
            (None, Some(sig)) if !r.timed_out => notes.push(format!("killed by signal {sig}")),
            _ => {}
        }
        for n in &notes {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("[{n}]"));
        }
        if text.is_empty() {
            text = "(no output)".to_owned();
        }
        ToolOutput {
            content: vec![cubicle_protocol::conversation::ToolResultContent::text(
                text,
            )],
            is_error: !r.success(),
            files_written: Vec::new(),
        }
    }
}

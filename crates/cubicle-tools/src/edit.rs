//! `edit`: replaces an exact string in a file.

use async_trait::async_trait;
use cubicle_protocol::conversation::ToolSpec;
use cubicle_protocol::guest::MAX_FILE_CHUNK;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::files::path_of;
use crate::read::binary_kind;
use crate::{Tool, ToolContext, ToolOutput, parse_input, sandbox_error, spec_for};

/// Arguments of `edit`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EditInput {
    /// Absolute path of the file (or relative to the workspace).
    pub path: String,
    /// The exact text to replace, including whitespace and indentation.
    pub old_string: String,
    /// The text to put in its place.
    pub new_string: String,
    /// Replace every occurrence instead of requiring exactly one.
    #[serde(default)]
    pub replace_all: bool,
}

/// The `edit` tool.
pub struct Edit;

const DESCRIPTION: &str = "Replace an exact string in a text file. `old_string` must occur exactly \
once (include enough surrounding lines to make it unique) unless `replace_all` is true. Read the \
file first so the text matches exactly, whitespace included.";

/// The result of applying an edit to a text.
#[derive(Debug, PartialEq, Eq)]
pub enum EditOutcome {
    /// The new text and how many occurrences were replaced.
    Replaced(String, usize),
    /// `old_string` does not occur.
    NotFound,
    /// `old_string` occurs this many times and `replace_all` was not set.
    NotUnique(usize),
}

/// Applies an exact-string edit.
pub fn apply_edit(text: &str, old: &str, new: &str, replace_all: bool) -> EditOutcome {
    let count = text.matches(old).count();
    match count {
        0 => EditOutcome::NotFound,
        1 => EditOutcome::Replaced(text.replacen(old, new, 1), 1),
        n if replace_all => EditOutcome::Replaced(text.replace(old, new), n),
        n => EditOutcome::NotUnique(n),
    }
}

#[async_trait]
impl Tool for Edit {
    fn name(&self) -> &'static str {
        "edit"
    }

    fn spec(&self) -> ToolSpec {
        spec_for::<EditInput>(self.name(), DESCRIPTION)
    }

    fn summary(&self, input: &Value) -> String {
        format!("Edit {}", path_of(input))
    }

    fn writes_path(&self, input: &Value) -> Option<String> {
        Some(path_of(input).to_owned())
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let args: EditInput = match parse_input(self.name(), &input) {
            Ok(a) => a,
            Err(e) => return e,
        };
        if args.old_string.is_empty() {
            return ToolOutput::error(
                "old_string is empty; to create a file or replace all of it, use write",
            );
        }
        if args.old_string == args.new_string {
            return ToolOutput::error("old_string and new_string are the same; nothing to do");
        }
        let (data, size) = match ctx
            .computer
            .read_file(&args.path, 0, Some(MAX_FILE_CHUNK))
            .await
        {
            Ok(r) => r,
            Err(e) => return sandbox_error(&format!("reading {}", args.path), &e),
        };
        if size > data.len() as u64 {
            return ToolOutput::error(format!(
                "{} is too large to edit here ({size} bytes); change it with a command instead",
                args.path
            ));
        }
        if let Some(kind) = binary_kind(&data) {
            return ToolOutput::error(format!(
                "cannot edit {}: it is a binary file ({kind})",
                args.path
            ));
        }
        let text = String::from_utf8_lossy(&data);
        match apply_edit(&text, &args.old_string, &args.new_string, args.replace_all) {
            EditOutcome::NotFound => ToolOutput::error(format!(
                "old_string was not found in {}. Read the file again and copy the text exactly, whitespace included.",
                args.path
            )),
            EditOutcome::NotUnique(n) => ToolOutput::error(format!(
                "old_string occurs {n} times in {}; include more surrounding text to make it unique, or set replace_all to true",
                args.path
            )),
            EditOutcome::Replaced(new_text, n) => {
                let written = crate::FileWritten::new(&args.path, new_text.as_bytes());
                match ctx
                    .computer
                    .write_file(&args.path, new_text.into_bytes())
                    .await
                {
                    Ok(()) => {
                        let mut out = ToolOutput::text(format!(
                            "Edited {}: replaced {n} occurrence{}",
                            args.path,
                            if n == 1 { "" } else { "s" }
                        ));
                        out.files_written.push(written);
                        out
                    }
                    Err(e) => sandbox_error(&format!("writing {}", args.path), &e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn replaces_a_unique_string() {
        assert_eq!(
            apply_edit("a b c", "b", "B", false),
            EditOutcome::Replaced("a B c".into(), 1)
        );
    }

    #[test]
    fn refuses_ambiguous_and_missing_strings() {
        assert_eq!(
            apply_edit("x x", "x", "y", false),
            EditOutcome::NotUnique(2)
        );
        assert_eq!(apply_edit("x x", "z", "y", false), EditOutcome::NotFound);
        assert_eq!(
            apply_edit("x x", "x", "y", true),
            EditOutcome::Replaced("y y".into(), 2)
        );
    }
}

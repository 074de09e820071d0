//! `read`: shows a text file with line numbers, or an image to the model.

use async_trait::async_trait;
use base64::Engine as _;
use cubicle_protocol::conversation::{ImageSource, ToolResultContent, ToolSpec};
use cubicle_protocol::guest::{FileKind, MAX_FILE_CHUNK};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::output::MAX_RESULT_CHARS;
use crate::{Tool, ToolContext, ToolOutput, parse_input, sandbox_error, spec_for};

/// Lines shown when no limit is given.
pub const DEFAULT_LINES: usize = 2000;
/// Longest line shown before it is cut.
const MAX_LINE_CHARS: usize = 2000;
/// Largest image sent to the model.
const MAX_IMAGE_BYTES: u64 = 5 * 1024 * 1024;

/// Arguments of `read`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadInput {
    /// Absolute path of the file (or relative to the workspace).
    pub path: String,
    /// First line to show, 1-based (default 1).
    #[serde(default)]
    pub offset: Option<usize>,
    /// Most lines to show (default 2000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The `read` tool.
pub struct Read;

const DESCRIPTION: &str = "Read a text file, shown with line numbers (`cat -n` style). Reads up to \
2000 lines from `offset`; use offset and limit for long files. PNG, JPEG, GIF and WebP images are \
shown to you as images. Binary files (PDF, XLSX, DOCX, …) are refused: convert them with a command \
first (e.g. `pdftotext`, or Python with openpyxl).";

#[async_trait]
impl Tool for Read {
    fn name(&self) -> &'static str {
        "read"
    }

    fn spec(&self) -> ToolSpec {
        spec_for::<ReadInput>(self.name(), DESCRIPTION)
    }

    fn summary(&self, input: &Value) -> String {
        format!(
            "Read {}",
            input.get("path").and_then(Value::as_str).unwrap_or("?")
        )
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> ToolOutput {
        let args: ReadInput = match parse_input(self.name(), &input) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let stat = match ctx.computer.stat(&args.path).await {
            Ok(s) => s,
            Err(e) => return sandbox_error(&format!("reading {}", args.path), &e),
        };
        if stat.kind == FileKind::Dir {
            return ToolOutput::error(format!(
                "{} is a directory; use glob (or `ls` with bash) to see what is in it",
                args.path
            ));
        }
        if let Some(media_type) = image_type(&args.path) {
            return read_image(ctx, &args.path, media_type, stat.size).await;
        }
        let (data, size) = match ctx
            .computer
            .read_file(&args.path, 0, Some(MAX_FILE_CHUNK))
            .await
        {
            Ok(r) => r,
            Err(e) => return sandbox_error(&format!("reading {}", args.path), &e),
        };
        if let Some(kind) = binary_kind(&data) {
            return ToolOutput::error(format!(
                "cannot show {}: it is a binary file ({kind}, {size} bytes). Convert it with a command first{}",
                args.path,
                conversion_hint(kind)
            ));
        }
        let text = String::from_utf8_lossy(&data);
        if text.is_empty() {
            return ToolOutput::text(format!("({} is empty)", args.path));
        }
        ToolOutput::text(number_lines(
            &text,
            args.offset.unwrap_or(1),
            args.limit.unwrap_or(DEFAULT_LINES),
            size > data.len() as u64,
        ))
    }
}

/// Renders lines `offset..offset+limit` with 1-based numbers, cutting long
/// lines and the whole at [`MAX_RESULT_CHARS`], and says what was left out.
pub fn number_lines(text: &str, offset: usize, limit: usize, file_cut: bool) -> String {
    let offset = offset.max(1);
    let total = text.lines().count();
    let mut out = String::new();
    let mut last = offset.saturating_sub(1);
    for (i, line) in text.lines().enumerate().skip(offset - 1).take(limit) {
        let line = match line.char_indices().nth(MAX_LINE_CHARS) {
            Some((cut, _)) => format!("{}… [line cut]", &line[..cut]),
            None => line.to_owned(),
        };
        let entry = format!("{:>6}\t{}\n", i + 1, line);
        if out.len() + entry.len() > MAX_RESULT_CHARS {
            break;
        }
        out.push_str(&entry);
        last = i + 1;
    }
    if offset > total {
        return format!("[the file has {total} lines; offset {offset} is past the end]");
    }
    if last < total || file_cut {
        out.push_str(&format!(
            "[showing lines {offset}-{last} of {}{}; call read again with offset={} to continue]",
            total,
            if file_cut {
                "+ (file larger than 8 MiB)"
            } else {
                ""
            },
            last + 1
        ));
    }
    out
}

fn image_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

async fn read_image(ctx: &ToolContext, path: &str, media_type: &str, size: u64) -> ToolOutput {
    if size > MAX_IMAGE_BYTES {
        return ToolOutput::error(format!(
            "{path} is too large to show ({size} bytes, at most {MAX_IMAGE_BYTES}); make a smaller copy first"
        ));
    }
    match ctx.computer.read_file(path, 0, Some(MAX_IMAGE_BYTES)).await {
        Ok((data, _)) => ToolOutput {
            content: vec![
                ToolResultContent::Image {
                    source: ImageSource {
                        media_type: media_type.to_owned(),
                        data: base64::engine::general_purpose::STANDARD.encode(&data),
                    },
                },
                ToolResultContent::text(format!("{path} ({size} bytes)")),
            ],
            is_error: false,
            files_written: Vec::new(),
        },
        Err(e) => sandbox_error(&format!("reading {path}"), &e),
    }
}

/// Names the kind of a binary file, or `None` for text.
pub fn binary_kind(data: &[u8]) -> Option<&'static str> {
    let magic: &[(&[u8], &str)] = &[
        (b"%PDF", "PDF"),
        (b"PK\x03\x04", "ZIP archive or Office document"),
        (b"\x89PNG", "PNG image"),
        (b"\xff\xd8\xff", "JPEG image"),
        (b"\x7fELF", "executable"),
        (b"\xd0\xcf\x11\xe0", "legacy Office document"),
        (b"\x1f\x8b", "gzip archive"),
    ];
    for (m, name) in magic {
        if data.starts_with(m) {
            return Some(name);
        }
    }
    let head = &data[..data.len().min(8192)];
    if head.contains(&0) {
        return Some("binary data");
    }
    // Cut inside a multi-byte character at the end of a chunk is still text.
    match std::str::from_utf8(head) {
        Ok(_) => None,
        Err(e) if e.error_len().is_none() => None,
        Err(_) => Some("not UTF-8 text"),
    }
}

fn conversion_hint(kind: &str) -> &'static str {
    match kind {
        "PDF" => ", e.g. `pdftotext file.pdf -` with bash.",
        "ZIP archive or Office document" => {
            ", e.g. Python with openpyxl for XLSX or python-docx for DOCX."
        }
        _ => ".",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn numbers_lines_like_cat_n() {
        assert_eq!(
            number_lines("a\nb\n", 1, 10, false),
            "     1\ta\n     2\tb\n"
        );
    }

    #[test]
    fn says_how_to_continue() {
        let text: String = (1..=10).map(|i| format!("l{i}\n")).collect();
        let out = number_lines(&text, 3, 2, false);
        assert_eq!(
            out,
            "     3\tl3\n     4\tl4\n[showing lines 3-4 of 10; call read again with offset=5 to continue]"
        );
        assert_eq!(
            number_lines(&text, 20, 2, false),
            "[the file has 10 lines; offset 20 is past the end]"
        );
    }

    #[test]
    fn recognises_binary() {
        assert_eq!(binary_kind(b"%PDF-1.7 ..."), Some("PDF"));
        assert_eq!(binary_kind(b"hello\0world"), Some("binary data"));
        assert_eq!(binary_kind(b"\xff\xfe\xfa plain"), Some("not UTF-8 text"));
        assert_eq!(binary_kind("héllo".as_bytes()), None);
        // A chunk ending mid-character is still text.
        assert_eq!(binary_kind(&"é".as_bytes()[..1]), None);
    }
}

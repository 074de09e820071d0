//! Previews of output files for the web UI, by extension: CSV and XLSX as
//! tables, Markdown as HTML with every raw HTML block escaped and every link
//! that is not `http(s):` or `mailto:` dropped, images and PDFs by their type
//! (the page shows the bytes it downloads), plain text as text. Everything
//! here reads files the agent wrote, so each preview has a size and shape
//! budget, and nothing it returns can run in the page.

use std::path::Path;

use pulldown_cmark::{Event, Options, Parser, Tag};
use serde::Serialize;

/// Largest file previewed.
const MAX_BYTES: u64 = 20 * 1024 * 1024;
/// Rows and columns a table preview shows.
const MAX_ROWS: usize = 200;
const MAX_COLS: usize = 50;
/// Characters of text shown.
const MAX_TEXT: usize = 64 * 1024;

/// What the page shows for a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Preview {
    /// Rows of cells; `truncated` when the file has more than is shown.
    Table {
        rows: Vec<Vec<String>>,
        truncated: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        sheet: Option<String>,
    },
    /// Markdown rendered to safe HTML.
    Markdown { html: String },
    /// An image or a PDF: the page fetches the bytes and shows them as `mime`.
    Media { mime: &'static str },
    /// Plain text (the start of it).
    Text { text: String, truncated: bool },
    /// Nothing to preview: download it.
    None { reason: String },
}

fn extension(name: &str) -> String {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The preview of a file called `name` whose bytes are `bytes`. `open_path`
/// is a path that opens the very same file (for the XLSX reader).
pub(crate) fn preview(name: &str, bytes: &[u8], open_path: &Path) -> Preview {
    if bytes.len() as u64 > MAX_BYTES {
        return Preview::None {
            reason: "too large to preview".into(),
        };
    }
    match extension(name).as_str() {
        "csv" => table_from_csv(&String::from_utf8_lossy(bytes)),
        "tsv" => table_from_delimited(&String::from_utf8_lossy(bytes), '\t'),
        "xlsx" => match cubicle_eval::xlsx::read_sheet(open_path, None) {
            Ok(sheet) => table_from_sheet(sheet),
            Err(e) => Preview::None {
                reason: format!("cannot read the workbook: {e}"),
            },
        },
        "md" | "markdown" => Preview::Markdown {
            html: markdown_html(&String::from_utf8_lossy(bytes)),
        },
        "png" => Preview::Media { mime: "image/png" },
        "jpg" | "jpeg" => Preview::Media { mime: "image/jpeg" },
        "gif" => Preview::Media { mime: "image/gif" },
        "webp" => Preview::Media { mime: "image/webp" },
        "pdf" => Preview::Media {
            mime: "application/pdf",
        },
        "txt" | "json" | "log" | "py" | "js" | "sh" | "toml" | "yaml" | "yml" | "xml" | "html"
        | "css" => {
            let text = String::from_utf8_lossy(bytes);
            let truncated = text.chars().count() > MAX_TEXT;
            Preview::Text {
                text: text.chars().take(MAX_TEXT).collect(),
                truncated,
            }
        }
        _ => Preview::None {
            reason: "no preview for this kind of file".into(),
        },
    }
}

fn table_from_csv(text: &str) -> Preview {
    table_from_delimited(text, ',')
}

/// RFC 4180 fields: quotes around a field, `""` for a quote inside one.
fn table_from_delimited(text: &str, sep: char) -> Preview {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    let mut truncated = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            c if c == sep => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                if rows.len() >= MAX_ROWS {
                    truncated = chars.peek().is_some();
                    break;
                }
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    for r in &mut rows {
        if r.len() > MAX_COLS {
            r.truncate(MAX_COLS);
            truncated = true;
        }
    }
    Preview::Table {
        rows,
        truncated,
        sheet: None,
    }
}

/// `B12` → (row 11, column 1).
fn cell_position(reference: &str) -> Option<(usize, usize)> {
    let split = reference.find(|c: char| c.is_ascii_digit())?;
    let (letters, digits) = reference.split_at(split);
    let mut col = 0usize;
    for b in letters.bytes() {
        if !b.is_ascii_uppercase() {
            return None;
        }
        col = col
            .checked_mul(26)?
            .checked_add(usize::from(b - b'A') + 1)?;
    }
    let row: usize = digits.parse().ok()?;
    Some((row.checked_sub(1)?, col.checked_sub(1)?))
}

fn table_from_sheet(sheet: cubicle_eval::xlsx::Sheet) -> Preview {
    use cubicle_eval::xlsx::CellValue;
    let mut truncated = false;
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (reference, cell) in sheet.cells {
        let Some((r, c)) = cell_position(&reference) else {
            continue;
        };
        if r >= MAX_ROWS || c >= MAX_COLS {
            truncated = true;
            continue;
        }
        if rows.len() <= r {
            rows.resize(r + 1, Vec::new());
        }
        let row = &mut rows[r];
        if row.len() <= c {
            row.resize(c + 1, String::new());
        }
        row[c] = match cell.value {
            CellValue::Number(n) => n.to_string(),
            CellValue::Text(t) => t,
            CellValue::Bool(b) => if b { "TRUE" } else { "FALSE" }.to_owned(),
            CellValue::Empty => cell.formula.map(|f| format!("={f}")).unwrap_or_default(),
        };
    }
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    for row in &mut rows {
        row.resize(width, String::new());
    }
    Preview::Table {
        rows,
        truncated,
        sheet: Some(sheet.name),
    }
}

/// Markdown to HTML that cannot run anything: raw HTML is shown as text,
/// and a link or image whose target is not `http(s):`, `mailto:` or
/// relative-without-scheme loses its target.
fn markdown_html(text: &str) -> String {
    let safe_url = |url: &str| {
        let lower = url.trim().to_ascii_lowercase();
        let scheme = lower.split_once(':').map(|(s, _)| s);
        match scheme {
            None => true,
            Some(s) if s.contains('/') || s.contains('#') || s.contains('?') => true,
            Some(s) => matches!(s, "http" | "https" | "mailto"),
        }
    };
    let parser = Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(
        |event| match event {
            Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) if !safe_url(&dest_url) => Event::Start(Tag::Link {
                link_type,
                dest_url: "".into(),
                title,
                id,
            }),
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) if !safe_url(&dest_url) => Event::Start(Tag::Image {
                link_type,
                dest_url: "".into(),
                title,
                id,
            }),
            other => other,
        },
    );
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, parser);
    html
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pretty_assertions::assert_eq;

    fn rows(p: Preview) -> Vec<Vec<String>> {
        match p {
            Preview::Table { rows, .. } => rows,
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn csv_fields_follow_rfc_4180() {
        let t = rows(table_from_csv(
            "name,amount\r\n\"Taxi, airport\",12.50\n\"He said \"\"hi\"\"\",3\n",
        ));
        assert_eq!(
            t,
            vec![
                vec!["name", "amount"],
                vec!["Taxi, airport", "12.50"],
                vec!["He said \"hi\"", "3"],
            ]
        );
    }

    #[test]
    fn markdown_cannot_carry_script() {
        let html = markdown_html(
            "# Report\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) [ok](https://example.com) <img src=x onerror=alert(1)>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        );
        assert!(html.contains("<h1>Report</h1>"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("href=\"https://example.com\""), "{html}");
        assert!(html.contains("<table>"), "{html}");
    }

    #[test]
    fn cell_references_map_to_positions() {
        assert_eq!(cell_position("A1"), Some((0, 0)));
        assert_eq!(cell_position("B12"), Some((11, 1)));
        assert_eq!(cell_position("AA3"), Some((2, 26)));
        assert_eq!(cell_position("a1"), None);
        assert_eq!(cell_position("A0"), None);
    }

    #[test]
    fn kinds_follow_the_extension() {
        let p = Path::new("/nonexistent");
        assert_eq!(
            preview("chart.PNG", b"x", p),
            Preview::Media { mime: "image/png" }
        );
        assert_eq!(
            preview("r.pdf", b"x", p),
            Preview::Media {
                mime: "application/pdf"
            }
        );
        assert!(matches!(
            preview("logo.svg", b"<svg/>", p),
            Preview::None { .. }
        ));
        assert!(matches!(
            preview("book.xlsx", b"not a zip", p),
            Preview::None { .. }
        ));
    }
}

//! Reading the text of a DOCX document: `word/document.xml` from the zip,
//! each paragraph's runs joined (Word splits a sentence into runs wherever
//! formatting or editing history changes), one line per paragraph.

use std::path::Path;

/// The document's text: one line per paragraph, tabs and breaks kept.
pub fn read_text(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a DOCX (zip) file: {e}"))?;
    let xml = crate::zipped::entry(&mut zip, "word/document.xml", "DOCX document")?;
    Ok(text_of_document(&xml))
}

/// The text of a `word/document.xml`.
pub fn text_of_document(xml: &str) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        let Some(gt) = rest[lt..].find('>') else {
            break;
        };
        let tag = &rest[lt + 1..lt + gt];
        rest = &rest[lt + gt + 1..];
        let name = tag
            .trim_end_matches('/')
            .split([' ', '\t', '\n', '\r'])
            .next()
            .unwrap_or_default();
        match name {
            "w:t" if !tag.ends_with('/') => {
                let end = rest.find("</w:t>").unwrap_or(rest.len());
                out.push_str(&unescape(&rest[..end]));
                rest = &rest[end..];
            }
            "w:tab" => out.push('\t'),
            "w:br" | "w:cr" => out.push('\n'),
            "/w:p" => out.push('\n'),
            _ => {}
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(semi) = after.find(';').filter(|&n| n <= 10) else {
            out.push('&');
            rest = after;
            continue;
        };
        let entity = &after[..semi];
        let ch = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io::Write;

    #[test]
    fn runs_join_within_a_paragraph_and_paragraphs_are_lines() {
        let xml = r#"<?xml version="1.0"?><w:document xmlns:w="x"><w:body>
            <w:p><w:r><w:rPr><w:b/></w:rPr><w:t>Clause 4 — Liab</w:t></w:r><w:r><w:t xml:space="preserve">ility cap: EUR 100,000 &amp; </w:t></w:r><w:r><w:t>more</w:t></w:r></w:p>
            <w:p><w:r><w:t>Second</w:t><w:tab/><w:t>line</w:t></w:r></w:p><w:p/></w:body></w:document>"#;
        let text = text_of_document(xml);
        assert_eq!(
            text,
            "Clause 4 — Liability cap: EUR 100,000 & more\nSecond\tline\n"
        );
    }

    #[test]
    fn reads_a_docx_and_rejects_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.docx");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("word/document.xml", opts).unwrap();
        zip.write_all(b"<w:document><w:body><w:p><w:r><w:t>Hel</w:t></w:r><w:r><w:t>lo &#233;</w:t></w:r></w:p></w:body></w:document>").unwrap();
        zip.finish().unwrap();
        assert_eq!(read_text(&path).unwrap(), "Hello é\n");
        let text = dir.path().join("b.docx");
        std::fs::write(&text, "not a zip").unwrap();
        assert!(read_text(&text).unwrap_err().contains("not a DOCX"));
    }
}

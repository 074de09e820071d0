//! Text from simple PDFs, with no C dependency: every content stream
//! (uncompressed or `FlateDecode`, inflated with `flate2`'s pure-Rust
//! backend) is scanned for its text operators (`Tj`, `TJ`, `'`, `"`), and
//! the strings are decoded as single-byte text (the standard 14 fonts and
//! WinAnsi). Enough for PDFs written by reporting libraries and by hand;
//! fonts with custom encodings (CID/Identity-H) and object streams are out
//! of scope, and such a PDF grades as lacking the text.

use std::io::Read;
use std::path::Path;

/// The text of the PDF at `path`.
pub fn read_text(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    extract_text(&bytes)
}

/// The text of a PDF, one line per text line it shows.
pub fn extract_text(pdf: &[u8]) -> Result<String, String> {
    if !pdf.starts_with(b"%PDF-") {
        return Err("not a PDF (no %PDF- header)".into());
    }
    let mut out = String::new();
    let mut pos = 0;
    while let Some(at) = find(&pdf[pos..], b"stream") {
        let start_kw = pos + at;
        pos = start_kw + b"stream".len();
        // `endstream` also contains `stream`; a stream keyword follows `>>`.
        if start_kw >= 3 && &pdf[start_kw - 3..start_kw] == b"end" {
            continue;
        }
        let dict_start = rfind(&pdf[..start_kw], b"obj").map_or(0, |i| i + 3);
        let dict = String::from_utf8_lossy(&pdf[dict_start..start_kw]).into_owned();
        let mut data_start = pos;
        if pdf.get(data_start) == Some(&b'\r') {
            data_start += 1;
        }
        if pdf.get(data_start) == Some(&b'\n') {
            data_start += 1;
        }
        let length = direct_length(&dict)
            .filter(|&n| data_start + n <= pdf.len())
            .filter(|&n| find(&pdf[data_start + n..], b"endstream").is_some_and(|i| i <= 4));
        let data_end = match length {
            Some(n) => data_start + n,
            None => match find(&pdf[data_start..], b"endstream") {
                Some(i) => data_start + i,
                None => break,
            },
        };
        pos = data_end;
        if [
            "/XRef",
            "/ObjStm",
            "/Image",
            "/Length1",
            "/Length2",
            "/Metadata",
        ]
        .iter()
        .any(|k| dict.contains(k))
        {
            continue;
        }
        let raw = &pdf[data_start..data_end];
        let data = if dict.contains("/FlateDecode") {
            let mut inflated = Vec::new();
            let mut z = flate2::read::ZlibDecoder::new(raw);
            if z.read_to_end(&mut inflated).is_err() {
                continue;
            }
            inflated
        } else if dict.contains("/Filter") {
            continue;
        } else {
            raw.to_vec()
        };
        content_text(&data, &mut out);
    }
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// `/Length 123` when it is a number rather than a reference (`12 0 R`).
fn direct_length(dict: &str) -> Option<usize> {
    let after = &dict[dict.find("/Length")? + "/Length".len()..];
    let mut words = after.split_whitespace();
    let n: usize = words.next()?.trim_end_matches(">>").parse().ok()?;
    match (words.next(), words.next()) {
        (Some(_), Some(r)) if r.starts_with('R') => None,
        _ => Some(n),
    }
}

enum Operand {
    Str(Vec<u8>),
    Num(f64),
    ArrayStart,
    Other,
}

/// Appends the text a content stream shows to `out`.
fn content_text(data: &[u8], out: &mut String) {
    let mut ops: Vec<Operand> = Vec::new();
    let mut i = 0;
    let mut line = String::new();
    let flush = |line: &mut String, out: &mut String| {
        if !line.trim().is_empty() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        line.clear();
    };
    while i < data.len() {
        let c = data[i];
        match c {
            b'%' => {
                while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
            }
            b'(' => {
                let (s, next) = literal_string(data, i + 1);
                ops.push(Operand::Str(s));
                i = next;
                continue;
            }
            b'<' if data.get(i + 1) == Some(&b'<') => {
                ops.push(Operand::Other);
                i += 2;
                continue;
            }
            b'<' => {
                let end = data[i..]
                    .iter()
                    .position(|&b| b == b'>')
                    .map_or(data.len(), |p| i + p);
                ops.push(Operand::Str(hex_string(&data[i + 1..end])));
                i = end + 1;
                continue;
            }
            b'[' => ops.push(Operand::ArrayStart),
            b']' | b'>' | b'{' | b'}' => {}
            b'/' => {
                i += 1;
                while i < data.len() && !is_delim(data[i]) {
                    i += 1;
                }
                ops.push(Operand::Other);
                continue;
            }
            c if c.is_ascii_whitespace() => {}
            _ => {
                let start = i;
                while i < data.len() && !is_delim(data[i]) {
                    i += 1;
                }
                if i == start {
                    i += 1;
                    continue;
                }
                let word = &data[start..i];
                if let Ok(n) = std::str::from_utf8(word).unwrap_or("x").parse::<f64>() {
                    ops.push(Operand::Num(n));
                    continue;
                }
                match word {
                    b"Tj" => {
                        if let Some(Operand::Str(s)) = ops.last() {
                            line.push_str(&decode(s));
                        }
                    }
                    b"'" | b"\"" => {
                        flush(&mut line, out);
                        if let Some(Operand::Str(s)) = ops.last() {
                            line.push_str(&decode(s));
                        }
                    }
                    b"TJ" => {
                        let from = ops
                            .iter()
                            .rposition(|o| matches!(o, Operand::ArrayStart))
                            .map_or(0, |p| p + 1);
                        for o in &ops[from..] {
                            match o {
                                Operand::Str(s) => line.push_str(&decode(s)),
                                Operand::Num(n) if *n < -200.0 => line.push(' '),
                                _ => {}
                            }
                        }
                    }
                    b"Td" | b"TD" => {
                        let dy = match ops.as_slice() {
                            [.., Operand::Num(_), Operand::Num(dy)] => *dy,
                            _ => 1.0,
                        };
                        if dy.abs() > f64::EPSILON {
                            flush(&mut line, out);
                        } else if !line.ends_with(' ') && !line.is_empty() {
                            line.push(' ');
                        }
                    }
                    b"T*" | b"Tm" | b"ET" => flush(&mut line, out),
                    _ => {}
                }
                ops.clear();
                continue;
            }
        }
        i += 1;
    }
    flush(&mut line, out);
}

fn is_delim(b: u8) -> bool {
    b.is_ascii_whitespace() || b"()<>[]{}/%".contains(&b)
}

/// A `( … )` string starting after its `(`; returns the bytes and the index
/// after the closing `)`.
fn literal_string(data: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut depth = 0;
    while i < data.len() {
        let c = data[i];
        match c {
            b'\\' => {
                i += 1;
                let Some(&e) = data.get(i) else { break };
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'\r' => {
                        if data.get(i + 1) == Some(&b'\n') {
                            i += 1;
                        }
                    }
                    b'\n' => {}
                    b'0'..=b'7' => {
                        let mut v: u32 = 0;
                        let mut n = 0;
                        while n < 3 && i < data.len() && (b'0'..=b'7').contains(&data[i]) {
                            v = v * 8 + u32::from(data[i] - b'0');
                            i += 1;
                            n += 1;
                        }
                        out.push((v & 0xff) as u8);
                        continue;
                    }
                    other => out.push(other),
                }
            }
            b'(' => {
                depth += 1;
                out.push(c);
            }
            b')' if depth == 0 => return (out, i + 1),
            b')' => {
                depth -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
        i += 1;
    }
    (out, i)
}

fn hex_string(hex: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = hex
        .iter()
        .filter_map(|&b| (b as char).to_digit(16).map(|d| d as u8))
        .collect();
    digits
        .chunks(2)
        .map(|p| (p[0] << 4) | p.get(1).copied().unwrap_or(0))
        .collect()
}

/// Single-byte text: Latin-1, with WinAnsi's typographic quotes and dashes.
fn decode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80 => '€',
            0x91 => '‘',
            0x92 => '’',
            0x93 => '“',
            0x94 => '”',
            0x96 => '–',
            0x97 => '—',
            b => char::from(b),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io::Write;

    /// A one-page PDF whose content stream is `content`, Flate-compressed or not.
    fn pdf(content: &[u8], compress: bool) -> Vec<u8> {
        let (data, filter) = if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(content).unwrap();
            (z.finish().unwrap(), " /Filter /FlateDecode")
        } else {
            (content.to_vec(), "")
        };
        let mut out = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n3 0 obj << /Type /Page /Parent 2 0 R /Contents 4 0 R >> endobj\n".to_vec();
        out.extend_from_slice(
            format!("4 0 obj << /Length {}{filter} >>\nstream\n", data.len()).as_bytes(),
        );
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\nendstream\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF\n");
        out
    }

    const CONTENT: &[u8] = b"BT /F1 12 Tf 72 720 Td (Invoice INV-7 \\(final\\)) Tj 0 -16 Td [(Total: EUR 1,2)-20(40.50)] TJ T* <44756520323032362D31322D3031> Tj (tail) ' ET";

    #[test]
    fn extracts_text_from_plain_and_flate_streams() {
        for compress in [false, true] {
            let text = extract_text(&pdf(CONTENT, compress)).unwrap();
            assert_eq!(
                text, "Invoice INV-7 (final)\nTotal: EUR 1,240.50\nDue 2026-12-01\ntail\n",
                "compress={compress}"
            );
        }
    }

    #[test]
    fn a_wide_kern_is_a_space_and_octal_escapes_decode() {
        let text = extract_text(&pdf(b"BT [(Net)-500(30)] TJ (caf\\351) Tj ET", true)).unwrap();
        assert_eq!(text, "Net 30café\n");
    }

    #[test]
    fn rejects_what_is_not_a_pdf() {
        assert!(extract_text(b"hello").is_err());
        // A PDF whose stream is garbage is a PDF without text, not a crash.
        let text = extract_text(b"%PDF-1.4\n1 0 obj << /Length 5 /Filter /FlateDecode >>\nstream\nxxxxx\nendstream endobj").unwrap();
        assert_eq!(text, "");
    }
}

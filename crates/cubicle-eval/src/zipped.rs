//! Reading one XML part of an Office file (a zip) with a bound on its
//! unpacked size: the graders open files the agent wrote, and a zip bomb
//! must not take the harness's memory.

use std::io::Read;

/// The most an entry may unpack to; Office parts of real documents are far
/// smaller.
pub const MAX_ENTRY_BYTES: u64 = 64 * 1024 * 1024;

/// The text of `name` in `zip`; `kind` names the format in errors
/// ("XLSX workbook", "DOCX document").
pub fn entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    kind: &str,
) -> Result<String, String> {
    let f = zip
        .by_name(name)
        .map_err(|_| format!("not a {kind}: no {name}"))?;
    let mut s = String::new();
    f.take(MAX_ENTRY_BYTES + 1)
        .read_to_string(&mut s)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if s.len() as u64 > MAX_ENTRY_BYTES {
        return Err(format!(
            "{name} unpacks to more than {} MiB; not read (a zip bomb?)",
            MAX_ENTRY_BYTES / (1024 * 1024)
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::Write;

    fn zip_with(name: &str, bytes: usize) -> zip::ZipArchive<std::io::Cursor<Vec<u8>>> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        let chunk = vec![b'a'; 1024 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        zip::ZipArchive::new(w.finish().unwrap()).unwrap()
    }

    #[test]
    fn a_part_is_read_and_a_bomb_is_refused() {
        let mut small = zip_with("word/document.xml", 10);
        assert_eq!(
            entry(&mut small, "word/document.xml", "DOCX document").unwrap(),
            "aaaaaaaaaa"
        );
        assert_eq!(
            entry(&mut small, "xl/workbook.xml", "XLSX workbook").unwrap_err(),
            "not a XLSX workbook: no xl/workbook.xml"
        );
        let mut bomb = zip_with("word/document.xml", 65 * 1024 * 1024);
        let err = entry(&mut bomb, "word/document.xml", "DOCX document").unwrap_err();
        assert!(err.contains("more than 64 MiB"), "{err}");
    }
}

//! The log's files on disk: `audit-000001.jsonl`, `audit-000002.jsonl`, …,
//! numbered from 1 in the order they were written, and how their lines are
//! read.

use std::path::{Path, PathBuf};

use crate::error::AuditError;

/// The file name of log file number `n`.
pub fn file_name(n: u32) -> String {
    format!("audit-{n:06}.jsonl")
}

/// The number in a log file's name, if it is one.
pub fn file_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// The log files in `dir`, sorted by number; an absent folder has none.
pub fn list(dir: &Path) -> Result<Vec<(u32, PathBuf)>, AuditError> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io(dir)(e)),
    };
    let mut files = Vec::new();
    for entry in read {
        let entry = entry.map_err(AuditError::io(dir))?;
        if let Some(n) = entry.file_name().to_str().and_then(file_number) {
            files.push((n, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// One line of a file, with the byte range it occupies.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    /// 1-based line number.
    pub number: usize,
    /// The bytes, without the newline.
    pub bytes: &'a [u8],
    /// Whether a newline ended it (false only for a last line cut short).
    pub terminated: bool,
}

/// Splits file content into lines.
pub fn lines(content: &[u8]) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut number = 1;
    while start < content.len() {
        match content[start..].iter().position(|b| *b == b'\n') {
            Some(len) => {
                out.push(Line {
                    number,
                    bytes: &content[start..start + len],
                    terminated: true,
                });
                start += len + 1;
            }
            None => {
                out.push(Line {
                    number,
                    bytes: &content[start..],
                    terminated: false,
                });
                start = content.len();
            }
        }
        number += 1;
    }
    out
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, AuditError> {
    std::fs::read(path).map_err(AuditError::io(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn names_and_numbers() {
        assert_eq!(file_name(1), "audit-000001.jsonl");
        assert_eq!(file_name(1234567), "audit-1234567.jsonl");
        assert_eq!(file_number("audit-000042.jsonl"), Some(42));
        assert_eq!(file_number("audit-1234567.jsonl"), Some(1234567));
        assert_eq!(file_number("audit-42.jsonl"), None);
        assert_eq!(file_number("audit-000000.jsonl"), None);
        assert_eq!(file_number("audit-00004x.jsonl"), None);
        assert_eq!(file_number("other.jsonl"), None);
    }

    #[test]
    fn lines_keep_a_torn_tail() {
        let split: Vec<(usize, &[u8], bool)> = lines(b"a\nbb\ncc")
            .iter()
            .map(|l| (l.number, l.bytes, l.terminated))
            .collect();
        assert_eq!(
            split,
            vec![
                (1, &b"a"[..], true),
                (2, &b"bb"[..], true),
                (3, &b"cc"[..], false)
            ]
        );
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"\n").len(), 1);
    }

    #[test]
    fn listing_sorts_by_number_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "audit-000010.jsonl",
            "audit-000002.jsonl",
            "notes.txt",
            "audit-x.jsonl",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let numbers: Vec<u32> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(numbers, vec![2, 10]);
        assert!(list(&dir.path().join("absent")).unwrap().is_empty());
    }
}

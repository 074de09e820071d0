//! `cubicle audit verify`: walks every file of the log in order and checks
//! that each record is intact (its seal), in its place (its `seq`) and
//! linked to the one before (its `prev`), then names the first one that is
//! not, with a sentence saying what was done to the log.
//!
//! What no hash chain can show by itself: records cut from the very end at a
//! line boundary, or a whole newest file removed. Compare
//! [`VerifyReport::last`] against a copy kept elsewhere (the session's
//! transcript records it) to catch those.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::chain::{GENESIS, check, sha256_hex, split_sealed};
use crate::error::AuditError;
use crate::files::{self, Line, file_name};
use crate::record::{Record, RecordKind, parse_line};

/// What is wrong with the first bad record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// Its content changed after it was written.
    Edited,
    /// Records or a whole file before it are missing.
    Deleted,
    /// It (or a record before it) was added by someone other than the writer.
    Inserted,
    /// It is out of order.
    Reordered,
    /// The log ends in the middle of a line.
    Truncated,
    /// The line is not an audit record at all.
    BadJson,
    /// Its MAC does not match the key given (wrong key, or forged with no key).
    BadMac,
}

/// The first record that fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The file it is in (for a missing file: the missing file's path).
    pub file: PathBuf,
    /// Its 1-based line (0 for a missing file).
    pub line: usize,
    /// Its seq, when the line could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
    /// One sentence for the person.
    pub message: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A line damaged by a crash and vouched for by the `torn_tail` record after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornLine {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line.
    pub line: usize,
    /// Bytes in the damaged stretch, not counting newlines.
    pub bytes: u64,
}

/// The outcome of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Records checked and found good (up to the first bad one).
    pub records: u64,
    /// Log files found.
    pub files: usize,
    /// The first bad record; `None` when the whole log is intact.
    pub first_bad: Option<BadRecord>,
    /// Lines damaged by crashes and properly recorded (not tampering).
    pub torn: Vec<TornLine>,
    /// Seq and hash of the last good record, to compare against a copy kept elsewhere.
    pub last: Option<(u64, String)>,
}

impl VerifyReport {
    /// Whether no bad record was found.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Verifies the log in `dir`, with the HMAC key it was written with, if any.
pub fn verify(dir: impl AsRef<Path>, key: Option<&[u8]>) -> Result<VerifyReport, AuditError> {
    let dir = dir.as_ref();
    let listed = files::list(dir)?;
    let mut report = VerifyReport {
        files: listed.len(),
        ..VerifyReport::default()
    };

    // Every seq present anywhere, to tell "moved" from "deleted".
    let mut present = HashSet::new();
    for (_, path) in &listed {
        let content = files::read(path)?;
        for line in files::lines(&content) {
            if let Ok(record) = parse_line(line.bytes) {
                present.insert(record.seq);
            }
        }
    }

    let mut walk = Walk {
        key,
        expected_seq: 1,
        expected_prev: GENESIS.to_string(),
        previous: None,
    };
    for (index, (number, path)) in listed.iter().enumerate() {
        let expected_number = listed.get(index.wrapping_sub(1)).map_or(1, |(n, _)| n + 1);
        if *number != expected_number {
            let missing = dir.join(file_name(expected_number));
            report.first_bad = Some(BadRecord {
                message: format!(
                    "{} is missing: a whole file of the log was deleted (the next file is {}).",
                    missing.display(),
                    file_name(*number)
                ),
                file: missing,
                line: 0,
                seq: None,
                problem: Problem::Deleted,
            });
            return Ok(report);
        }
        let content = files::read(path)?;
        let lines = files::lines(&content);
        let is_last_file = index + 1 == listed.len();
        if let Some(bad) = walk.file(path, &lines, is_last_file, &present, &mut report) {
            report.first_bad = Some(bad);
            return Ok(report);
        }
    }
    Ok(report)
}

/// The verifier's position in the chain.
struct Walk<'k> {
    key: Option<&'k [u8]>,
    expected_seq: u64,
    expected_prev: String,
    /// Where the last good record was, to blame it when the next one's link fails.
    previous: Option<(PathBuf, usize, u64)>,
}

impl Walk<'_> {
    fn file(
        &mut self,
        path: &Path,
        lines: &[Line<'_>],
        is_last_file: bool,
        present: &HashSet<u64>,
        report: &mut VerifyReport,
    ) -> Option<BadRecord> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let where_ = |line: &Line<'_>| format!("line {} of {}", line.number, path.display());
        let bad = |line: &Line<'_>, seq: Option<u64>, problem: Problem, message: String| {
            Some(BadRecord {
                file: path.to_path_buf(),
                line: line.number,
                seq,
                problem,
                message,
            })
        };
        let mut i = 0;
        while i < lines.len() {
            let line = &lines[i];
            let record = match read_sealed(line.bytes) {
                Ok(record) => record,
                Err(why) => {
                    if let Some((j, torn)) = self.torn_vouched(&name, path, lines, i) {
                        report.torn.push(torn);
                        i = j;
                        continue;
                    }
                    if !line.terminated && is_last_file && i + 1 == lines.len() {
                        return bad(
                            line,
                            None,
                            Problem::Truncated,
                            format!(
                                "The log ends in the middle of a record at {}: it was cut short.",
                                where_(line)
                            ),
                        );
                    }
                    return bad(
                        line,
                        None,
                        Problem::BadJson,
                        format!(
                            "{} is not an audit record ({why}).",
                            capitalise(&where_(line))
                        ),
                    );
                }
            };
            let seq = record.seq;
            if seq != self.expected_seq {
                let expected = self.expected_seq;
                let (problem, message) = if seq > expected && present.contains(&expected) {
                    (
                        Problem::Reordered,
                        format!(
                            "Record {seq} at {} comes where record {expected} should: records \
                             were moved out of order.",
                            where_(line)
                        ),
                    )
                } else if seq > expected {
                    let missing = if seq == expected + 1 {
                        format!("record {expected} is")
                    } else {
                        format!("records {expected} to {} are", seq - 1)
                    };
                    (
                        Problem::Deleted,
                        format!(
                            "Before record {seq} at {}, {missing} missing: records were deleted.",
                            where_(line)
                        ),
                    )
                } else {
                    (
                        Problem::Inserted,
                        format!(
                            "Record {seq} at {} repeats a number already used: a record was \
                             inserted before it.",
                            where_(line)
                        ),
                    )
                };
                return bad(line, Some(seq), problem, message);
            }
            if !check(line.bytes, self.key) {
                let (problem, message) = if self.inserted_here(lines, i) {
                    (
                        Problem::Inserted,
                        format!(
                            "Record {seq} at {} was not written by Cubicle: the records around \
                             it link to each other, so it was inserted.",
                            where_(line)
                        ),
                    )
                } else if self.key.is_some() && check(line.bytes, None) {
                    (
                        Problem::BadMac,
                        format!(
                            "Record {seq} at {} is sealed without the key: someone who does not \
                             hold the key wrote or rewrote it.",
                            where_(line)
                        ),
                    )
                } else if self.key.is_some() && report.records == 0 {
                    (
                        Problem::BadMac,
                        format!(
                            "Record {seq} at {} does not match the key: the key is wrong, or \
                             the record was changed.",
                            where_(line)
                        ),
                    )
                } else {
                    (
                        Problem::Edited,
                        format!(
                            "Record {seq} at {} was changed after it was written (its seal does \
                             not match its content).",
                            where_(line)
                        ),
                    )
                };
                return bad(line, Some(seq), problem, message);
            }
            if record.prev != self.expected_prev {
                // This record is intact, so the one it points back to is not
                // the one it was written after: that one was rewritten.
                let (file, line_no, prev_seq) =
                    self.previous
                        .clone()
                        .unwrap_or((path.to_path_buf(), line.number, seq));
                return Some(BadRecord {
                    message: format!(
                        "Record {prev_seq} at line {line_no} of {} was replaced: the record \
                         after it was written after a different one.",
                        file.display()
                    ),
                    file,
                    line: line_no,
                    seq: Some(prev_seq),
                    problem: Problem::Edited,
                });
            }
            report.records += 1;
            report.last = Some((seq, record.hash.clone()));
            self.expected_seq = seq + 1;
            self.expected_prev = sha256_hex(line.bytes);
            self.previous = Some((path.to_path_buf(), line.number, seq));
            i += 1;
        }
        None
    }

    /// Whether line `i` sits between two records that link to each other.
    fn inserted_here(&self, lines: &[Line<'_>], i: usize) -> bool {
        lines
            .get(i + 1)
            .and_then(|next| read_sealed(next.bytes).ok())
            .is_some_and(|next| next.seq == self.expected_seq && next.prev == self.expected_prev)
    }

    /// If the damaged line `i` is vouched for by a `torn_tail` record right
    /// after the damaged stretch, the index of that record and a note.
    fn torn_vouched(
        &self,
        name: &str,
        path: &Path,
        lines: &[Line<'_>],
        i: usize,
    ) -> Option<(usize, TornLine)> {
        let j = (i + 1..lines.len()).find(|j| read_sealed(lines[*j].bytes).is_ok())?;
        let record = read_sealed(lines[j].bytes).ok()?;
        let bytes: u64 = lines[i..j].iter().map(|l| l.bytes.len() as u64).sum();
        let vouches = matches!(
            &record.kind,
            RecordKind::TornTail { file, line, bytes: b }
                if file == name && *line == lines[i].number as u64 && *b == bytes
        );
        let genuine = record.seq == self.expected_seq
            && record.prev == self.expected_prev
            && check(lines[j].bytes, self.key);
        (vouches && genuine).then(|| {
            (
                j,
                TornLine {
                    file: path.to_path_buf(),
                    line: lines[i].number,
                    bytes,
                },
            )
        })
    }
}

/// Parses a line that also has the hash field where Cubicle puts it.
fn read_sealed(bytes: &[u8]) -> Result<Record, String> {
    let record = parse_line(bytes)?;
    if split_sealed(bytes).is_none() {
        return Err("its hash is not the last field".into());
    }
    Ok(record)
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

//! Helpers shared by the audit integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};

use cubicle_audit::{AuditLog, AuditOptions, RecordKind, ToolDecision};

/// A tool-call record whose summary names `n`, so a test can find it.
pub fn tool_call(n: u64) -> RecordKind {
    RecordKind::ToolCall {
        tool: "bash".into(),
        summary: format!("command {n}"),
        decision: ToolDecision::Allowed,
        reason: "inside the cubicle".into(),
        rule: None,
    }
}

/// Options with a small rotation size and an optional key.
pub fn options(max_file_bytes: u64, key: Option<&[u8]>) -> AuditOptions {
    AuditOptions {
        max_file_bytes,
        key: key.map(<[u8]>::to_vec),
    }
}

/// Writes `n` tool-call records into a fresh log.
pub fn write_log(dir: &Path, n: u64, opts: AuditOptions) -> AuditLog {
    let log = AuditLog::open(dir, opts).unwrap();
    for i in 1..=n {
        log.append(Some("s-1"), tool_call(i)).unwrap();
    }
    log
}

/// The log's files, in order.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    cubicle_audit::files::list(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// The lines of a file (without newlines).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Writes lines back, each ended with a newline.
pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

//! Writing and reading transcripts, and rebuilding a conversation from one.
//!
//! Every entry is one JSON line, written with a single `write` and followed by
//! `fdatasync`, so a session killed at any instant loses at most the line
//! being written; the reader skips such a torn last line and says so.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cubicle_protocol::conversation::{ContentBlock, Message, Role, ToolResultContent};
use cubicle_protocol::transcript::{
    Entry, Header, Line, Record, TRANSCRIPT_FORMAT, TRANSCRIPT_VERSION,
};

/// Errors reading or writing a transcript.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The transcript.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not a transcript this version can read.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The transcript.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Appends entries to a transcript, one fsynced line at a time.
#[derive(Debug)]
pub struct TranscriptWriter {
    path: PathBuf,
    inner: Mutex<WriterState>,
}

#[derive(Debug)]
struct WriterState {
    file: File,
    seq: u64,
}

impl TranscriptWriter {
    /// Creates a new transcript and writes its header. Fails if it exists.
    pub fn create(path: &Path, header: &Header) -> Result<Self, TranscriptError> {
        let io = |source| TranscriptError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        let writer = Self {
            path: path.to_owned(),
            inner: Mutex::new(WriterState { file, seq: 0 }),
        };
        writer
            .write_line(&serde_json::to_value(Line::Header(header.clone())).unwrap_or_default())?;
        Ok(writer)
    }

    /// Opens an existing transcript to continue it after `last_seq`.
    pub fn append_to(path: &Path, last_seq: u64) -> Result<Self, TranscriptError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| TranscriptError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            inner: Mutex::new(WriterState {
                file,
                seq: last_seq,
            }),
        })
    }

    /// The transcript's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and returns its sequence number.
    pub fn append(&self, agent: Option<&str>, record: Record) -> Result<u64, TranscriptError> {
        let mut state = self.lock();
        state.seq += 1;
        let entry = Entry {
            seq: state.seq,
            ts: now_rfc3339(),
            agent: agent.map(str::to_owned),
            record,
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| TranscriptError::Invalid {
            path: self.path.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        line.push(b'\n');
        let res = state
            .file
            .write_all(&line)
            .and_then(|()| state.file.sync_data());
        if let Err(source) = res {
            state.seq -= 1;
            return Err(TranscriptError::Io {
                path: self.path.clone(),
                source,
            });
        }
        Ok(state.seq)
    }

    fn write_line(&self, value: &serde_json::Value) -> Result<(), TranscriptError> {
        let mut state = self.lock();
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        state
            .file
            .write_all(&line)
            .and_then(|()| state.file.sync_data())
            .map_err(|source| TranscriptError::Io {
                path: self.path.clone(),
                source,
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        // A panic while holding the lock cannot leave a half-written line
        // (each line is one write), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A transcript read back from disk.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// The header line.
    pub header: Header,
    /// Every entry, in order.
    pub entries: Vec<Entry>,
    /// Problems that did not stop the read (a torn last line).
    pub warnings: Vec<String>,
}

impl Transcript {
    /// Reads a transcript file.
    pub fn load(path: &Path) -> Result<Self, TranscriptError> {
        let file = File::open(path).map_err(|source| TranscriptError::Io {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |line: usize, message: String| TranscriptError::Invalid {
            path: path.to_owned(),
            line,
            message,
        };
        let lines: Vec<String> = BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(|source| TranscriptError::Io {
                path: path.to_owned(),
                source,
            })?;
        let mut header = None;
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        let last = lines.len();
        for (i, text) in lines.iter().enumerate() {
            let n = i + 1;
            if text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(text) {
                Ok(Line::Header(h)) if header.is_none() => {
                    if h.format != TRANSCRIPT_FORMAT {
                        return Err(invalid(
                            n,
                            format!("not a Cubicle transcript ({})", h.format),
                        ));
                    }
                    if h.version > TRANSCRIPT_VERSION {
                        return Err(invalid(
                            n,
                            format!(
                                "written by a newer Cubicle (format version {}); upgrade to read it",
                                h.version
                            ),
                        ));
                    }
                    header = Some(h);
                }
                Ok(Line::Header(_)) => return Err(invalid(n, "a second header line".into())),
                Ok(Line::Entry(_)) if header.is_none() => {
                    return Err(invalid(n, "entries before the header line".into()));
                }
                Ok(Line::Entry(e)) => entries.push(e),
                Err(e) if n == last => {
                    warnings.push(format!(
                        "{}:{n}: skipped a torn last line (the session was stopped mid-write): {e}",
                        path.display()
                    ));
                }
                Err(e) => return Err(invalid(n, e.to_string())),
            }
        }
        let header = header.ok_or_else(|| invalid(1, "the file is empty".into()))?;
        Ok(Self {
            header,
            entries,
            warnings,
        })
    }

    /// Sequence number of the last entry.
    pub fn last_seq(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.seq)
    }

    /// The main agent's conversation as the model should see it next.
    pub fn history(&self) -> Vec<Message> {
        rebuild_history(&self.entries, None)
    }
}

/// Rebuilds one agent's conversation from transcript entries: user messages,
/// model responses, and tool results grouped back into the user message that
/// follows each response, in the order the calls were made. Calls with no
/// recorded result (the session died while they ran) get an error result, so
/// the conversation is valid to send again.
pub fn rebuild_history(entries: &[Entry], agent: Option<&str>) -> Vec<Message> {
    let mut history: Vec<Message> = Vec::new();
    let mut pending_calls: Vec<String> = Vec::new();
    let mut results: HashMap<String, (Vec<ToolResultContent>, bool)> = HashMap::new();

    fn flush(
        history: &mut Vec<Message>,
        calls: &mut Vec<String>,
        results: &mut HashMap<String, (Vec<ToolResultContent>, bool)>,
    ) {
        if calls.is_empty() {
            return;
        }
        let blocks = calls
            .drain(..)
            .map(|id| {
                let (content, is_error) = results.remove(&id).unwrap_or_else(|| {
                    (
                        vec![ToolResultContent::text(
                            "interrupted: the session stopped before this call finished; run it again if it is still needed",
                        )],
                        true,
                    )
                });
                ContentBlock::ToolResult {
                    tool_use_id: id,
                    content,
                    is_error,
                }
            })
            .collect();
        push_user(history, blocks);
        results.clear();
    }

    for e in entries.iter().filter(|e| e.agent.as_deref() == agent) {
        match &e.record {
            Record::UserMessage { message } => {
                flush(&mut history, &mut pending_calls, &mut results);
                push_user(&mut history, message.content.clone());
            }
            Record::ModelResponse { message, .. } => {
                flush(&mut history, &mut pending_calls, &mut results);
                pending_calls = message.tool_uses().map(|u| u.id.to_owned()).collect();
                history.push(message.clone());
            }
            Record::ToolResult {
                call_id,
                content,
                is_error,
                ..
            } => {
                results.insert(call_id.clone(), (content.clone(), *is_error));
            }
            Record::Compaction { summary, .. } => {
                pending_calls.clear();
                results.clear();
                history = vec![compaction_message(summary)];
            }
            Record::Decision { .. }
            | Record::Approval { .. }
            | Record::Plan { .. }
            | Record::Question { .. }
            | Record::Answer { .. }
            | Record::Interrupted { .. }
            | Record::Error { .. }
            | Record::Resumed { .. }
            | Record::Unknown(_) => {}
        }
    }
    flush(&mut history, &mut pending_calls, &mut results);
    history
}

/// Appends user content, merging with a trailing user message so roles keep
/// alternating.
pub fn push_user(history: &mut Vec<Message>, blocks: Vec<ContentBlock>) {
    match history.last_mut() {
        Some(last) if last.role == Role::User => last.content.extend(blocks),
        _ => history.push(Message {
            role: Role::User,
            content: blocks,
        }),
    }
}

/// The message that opens a conversation after compaction.
pub fn compaction_message(summary: &str) -> Message {
    Message::user_text(format!(
        "This session is being continued from an earlier conversation that ran out of context. \
It is summarised below; the files you created are still in place.\n\n<summary>\n{summary}\n</summary>\n\n\
Continue the task from where it was left, without asking the person to repeat anything."
    ))
}

/// The current time as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cubicle_protocol::conversation::{StopReason, Usage};
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn header() -> Header {
        Header {
            format: TRANSCRIPT_FORMAT.into(),
            version: TRANSCRIPT_VERSION,
            session_id: "s1".into(),
            created_at: now_rfc3339(),
            cubicle_version: "test".into(),
            task: Some("t".into()),
            model: "scripted:test".into(),
            backend: "host".into(),
            grants: vec![],
            workspace: "/w".into(),
            label: None,
        }
    }

    fn response(blocks: Vec<ContentBlock>) -> Record {
        Record::ModelResponse {
            message: Message {
                role: Role::Assistant,
                content: blocks,
            },
            usage: Usage::default(),
            stop_reason: StopReason::ToolUse,
            model: "m".into(),
            duration_ms: 1,
        }
    }

    fn tool_use(id: &str) -> ContentBlock {
        ContentBlock::ToolUse {
            id: id.into(),
            name: "bash".into(),
            input: json!({"command": "true"}),
        }
    }

    fn result(id: &str, text: &str) -> Record {
        Record::ToolResult {
            call_id: id.into(),
            tool: "bash".into(),
            content: vec![ToolResultContent::text(text)],
            is_error: false,
            duration_ms: 1,
        }
    }

    #[test]
    fn writes_and_reads_back_and_rebuilds_in_call_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let w = TranscriptWriter::create(&path, &header()).unwrap();
        w.append(
            None,
            Record::UserMessage {
                message: Message::user_text("go"),
            },
        )
        .unwrap();
        w.append(None, response(vec![tool_use("a"), tool_use("b")]))
            .unwrap();
        // Results finish out of order.
        w.append(None, result("b", "B")).unwrap();
        w.append(None, result("a", "A")).unwrap();
        w.append(
            Some("task-1"),
            Record::UserMessage {
                message: Message::user_text("sub"),
            },
        )
        .unwrap();
        let t = Transcript::load(&path).unwrap();
        assert_eq!(t.last_seq(), 5);
        let h = t.history();
        assert_eq!(h.len(), 3);
        let ids: Vec<_> = h[2]
            .content
            .iter()
            .map(|b| match b {
                ContentBlock::ToolResult { tool_use_id, .. } => tool_use_id.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(ids, vec!["a", "b"]);
        assert_eq!(rebuild_history(&t.entries, Some("task-1")).len(), 1);
    }

    #[test]
    fn missing_results_become_interruption_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let w = TranscriptWriter::create(&path, &header()).unwrap();
        w.append(
            None,
            Record::UserMessage {
                message: Message::user_text("go"),
            },
        )
        .unwrap();
        w.append(None, response(vec![tool_use("a"), tool_use("b")]))
            .unwrap();
        w.append(None, result("a", "A")).unwrap();
        let h = Transcript::load(&path).unwrap().history();
        let ContentBlock::ToolResult {
            is_error, content, ..
        } = &h[2].content[1]
        else {
            panic!("expected a tool result");
        };
        assert!(is_error);
        assert!(format!("{content:?}").contains("interrupted"));
    }

    #[test]
    fn torn_last_line_is_skipped_with_a_warning_but_a_torn_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let w = TranscriptWriter::create(&path, &header()).unwrap();
        w.append(
            None,
            Record::UserMessage {
                message: Message::user_text("go"),
            },
        )
        .unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"ts\":\"x\",\"type\":\"user_mes")
            .unwrap();
        let t = Transcript::load(&path).unwrap();
        assert_eq!(t.entries.len(), 1);
        assert_eq!(t.warnings.len(), 1);
        f.write_all(b"\n{\"seq\":3}\n").unwrap();
        let err = Transcript::load(&path).unwrap_err().to_string();
        assert!(err.contains(":3:"), "{err}");
    }

    #[test]
    fn compaction_replaces_history() {
        let entries = vec![
            Entry {
                seq: 1,
                ts: String::new(),
                agent: None,
                record: Record::UserMessage {
                    message: Message::user_text("go"),
                },
            },
            Entry {
                seq: 2,
                ts: String::new(),
                agent: None,
                record: Record::Compaction {
                    summary: "did X".into(),
                    tokens_before: 10,
                },
            },
        ];
        let h = rebuild_history(&entries, None);
        assert_eq!(h.len(), 1);
        assert!(h[0].text().contains("did X"));
    }

    #[test]
    fn user_messages_merge_to_keep_roles_alternating() {
        let mut h = vec![Message::user_text("a")];
        push_user(&mut h, vec![ContentBlock::Text { text: "b".into() }]);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].content.len(), 2);
    }
}

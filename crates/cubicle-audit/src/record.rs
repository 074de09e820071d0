//! The audit record: its common fields, the kinds of event it describes, and
//! how it is written as one JSON line and read back.
//!
//! A line looks like this (one line in the file):
//!
//! ```json
//! {"seq":7,"ts":"2025-03-01T10:00:00.123456789Z","session":"s-1",
//!  "kind":"tool_call","tool":"bash","summary":"git status","decision":"allowed",
//!  "reason":"…","rule":"Bash(git *)",
//!  "prev":"<sha256 of line 6>","hash":"<seal of this line without hash>"}
//! ```
//!
//! `seq` counts from 1 across every file of the log; `ts` is RFC 3339 in
//! UTC; `session` is `null` outside a session; the kind's own fields follow
//! `kind`; `prev` and `hash` are explained in [`crate::chain`]. Readers
//! ignore fields they do not know, and a kind they do not know is kept as
//! [`RecordKind::Other`], so older readers can read newer logs.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One audit record as read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in the log, from 1, across all files.
    pub seq: u64,
    /// When it was written (RFC 3339, UTC).
    pub ts: String,
    /// The session it belongs to, if any.
    pub session: Option<String>,
    /// What happened.
    pub kind: RecordKind,
    /// SHA-256 of the previous line.
    pub prev: String,
    /// This line's seal (SHA-256 or HMAC-SHA256).
    pub hash: String,
}

/// A folder a session was granted, as recorded at its start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Path inside the cubicle, e.g. `/mnt/Reports`.
    pub path: String,
    /// Path on the host.
    pub host_path: String,
    /// Whether the agent may change it.
    pub writable: bool,
}

/// Token counts of a session or a model call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the provider's cache.
    pub cache_read: u64,
    /// Input tokens written to the provider's cache.
    pub cache_write: u64,
}

/// The permission gate's decision on a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolDecision {
    /// It ran without asking.
    Allowed,
    /// The person was asked (their answer is an [`RecordKind::Approval`]).
    Asked,
    /// It was refused.
    Denied,
}

/// A person's answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalChoice {
    /// This one call.
    AllowOnce,
    /// Calls like it for the rest of the session.
    AllowSession,
    /// Refused.
    Deny,
}

/// One settings source of a loaded policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySource {
    /// `managed`, `command line`, `project` or `user`.
    pub layer: String,
    /// The file, when there is one.
    pub file: Option<String>,
    /// Hex SHA-256 of its content.
    pub sha256: String,
}

/// What a record says happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordKind {
    /// A session began (its id is the record's `session`).
    SessionStart {
        /// The person's task, as they gave it.
        task: String,
        /// `provider:model` the session uses.
        model: String,
        /// The backend (`jail`, `vm`, `remote`, `host`).
        backend: String,
        /// The folders granted.
        grants: Vec<Grant>,
    },
    /// A session ended (its id is the record's `session`).
    SessionEnd {
        /// Why: `completed`, `interrupted`, `error: …`.
        reason: String,
        /// Tokens used over the whole session.
        usage: Usage,
    },
    /// One call to a model API (never the prompt text).
    ModelCall {
        /// Provider, e.g. `anthropic`.
        provider: String,
        /// Model, e.g. `claude-sonnet-4`.
        model: String,
        /// Input tokens.
        input_tokens: u64,
        /// Output tokens.
        output_tokens: u64,
        /// Input tokens read from cache.
        cache_read: u64,
        /// Input tokens written to cache.
        cache_write: u64,
    },
    /// A tool call and the permission decision on it.
    ToolCall {
        /// Tool name, e.g. `bash`.
        tool: String,
        /// A short summary of the call (the command, the path).
        summary: String,
        /// What the gate decided.
        decision: ToolDecision,
        /// Why, in the words shown to the person.
        reason: String,
        /// The rule that decided, if one did.
        rule: Option<String>,
    },
    /// A file was written in a granted folder or the workspace.
    FileWritten {
        /// Path inside the cubicle.
        path: String,
        /// Size in bytes.
        size: u64,
        /// Hex SHA-256 of the content written.
        sha256: String,
    },
    /// A request through the egress proxy.
    NetworkRequest {
        /// Host asked for.
        host: String,
        /// Port asked for.
        port: u16,
        /// Whether it was let through.
        allowed: bool,
        /// The rule that decided, if one did.
        rule: Option<String>,
        /// Why, in words.
        reason: String,
        /// Bytes sent upstream.
        bytes_up: u64,
        /// Bytes received from upstream.
        bytes_down: u64,
    },
    /// A policy was loaded (at session start or on reload).
    PolicyLoaded {
        /// The settings sources, lowest precedence first.
        sources: Vec<PolicySource>,
        /// The policy's digest over its sources.
        digest: String,
    },
    /// A setting was changed through Cubicle (CLI or UI).
    PolicyChanged {
        /// The dotted key.
        key: String,
        /// The value before, if any.
        old: Option<String>,
        /// The value after, if any.
        new: Option<String>,
        /// Who changed it.
        by: String,
    },
    /// A person's answer to an approval request.
    Approval {
        /// Tool name.
        tool: String,
        /// What they decided.
        decision: ApprovalChoice,
        /// Who answered (`cli`, a paired device's name).
        by: String,
    },
    /// Written by [`crate::AuditLog::open`] after it found a line cut short
    /// by a crash: the damaged bytes stay in place, and this record names them.
    TornTail {
        /// File name of the damaged line, e.g. `audit-000003.jsonl`.
        file: String,
        /// 1-based line number of the damaged line.
        line: u64,
        /// How many bytes the damaged stretch holds, not counting newlines.
        bytes: u64,
    },
    /// A kind this version does not know: kept whole, for forward
    /// compatibility. Must be a JSON object with a string `kind`.
    #[serde(untagged)]
    Other(Value),
}

impl RecordKind {
    /// The `kind` tag, e.g. `tool_call`.
    pub fn name(&self) -> &str {
        match self {
            RecordKind::SessionStart { .. } => "session_start",
            RecordKind::SessionEnd { .. } => "session_end",
            RecordKind::ModelCall { .. } => "model_call",
            RecordKind::ToolCall { .. } => "tool_call",
            RecordKind::FileWritten { .. } => "file_written",
            RecordKind::NetworkRequest { .. } => "network_request",
            RecordKind::PolicyLoaded { .. } => "policy_loaded",
            RecordKind::PolicyChanged { .. } => "policy_changed",
            RecordKind::Approval { .. } => "approval",
            RecordKind::TornTail { .. } => "torn_tail",
            RecordKind::Other(value) => value.get("kind").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

/// Fields every record has; a kind may not use these names.
const COMMON: &[&str] = &["seq", "ts", "session", "prev", "hash"];

/// Writes the unsigned JSON of a record (everything but `hash`).
pub(crate) fn unsigned_json(
    seq: u64,
    ts: &str,
    session: Option<&str>,
    kind: &RecordKind,
    prev: &str,
) -> Result<String, String> {
    let kind_json = serde_json::to_string(kind).map_err(|e| e.to_string())?;
    if let RecordKind::Other(value) = kind {
        let Some(object) = value.as_object() else {
            return Err("an Other record must be a JSON object".into());
        };
        let name = object.get("kind").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            return Err("an Other record needs a string \"kind\"".into());
        }
        if let Some(common) = COMMON.iter().find(|c| object.contains_key(**c)) {
            return Err(format!("an Other record may not have the field {common:?}"));
        }
        // A known kind in disguise would be read back as that kind.
        let known = serde_json::from_value::<RecordKind>(value.clone())
            .is_ok_and(|k| !matches!(k, RecordKind::Other(_)));
        if known {
            return Err(format!("{name:?} is a known kind: use its variant"));
        }
    }
    let inner = kind_json
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or("a record kind must serialise to a JSON object")?;
    let ts = serde_json::to_string(ts).map_err(|e| e.to_string())?;
    let session = serde_json::to_string(&session).map_err(|e| e.to_string())?;
    let sep = if inner.is_empty() { "" } else { "," };
    Ok(format!(
        "{{\"seq\":{seq},\"ts\":{ts},\"session\":{session}{sep}{inner},\"prev\":\"{prev}\"}}"
    ))
}

/// Reads a line back into a record, or says why it is not one.
pub(crate) fn parse_line(line: &[u8]) -> Result<Record, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut map) = value else {
        return Err("not a JSON object".into());
    };
    let seq = map
        .remove("seq")
        .and_then(|v| v.as_u64())
        .ok_or("no seq number")?;
    let mut text = |name: &str| -> Result<String, String> {
        match map.remove(name) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(format!("no {name}")),
        }
    };
    let ts = text("ts")?;
    let prev = text("prev")?;
    let hash = text("hash")?;
    let session = match map.remove("session") {
        Some(Value::String(s)) => Some(s),
        Some(Value::Null) | None => None,
        Some(_) => return Err("session is not a string".into()),
    };
    let kind_value = Value::Object(Map::from_iter(map));
    if kind_value.get("kind").and_then(Value::as_str).is_none() {
        return Err("no kind".into());
    }
    let kind: RecordKind =
        serde_json::from_value(kind_value).map_err(|e| format!("bad fields: {e}"))?;
    Ok(Record {
        seq,
        ts,
        session,
        kind,
        prev,
        hash,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::chain::{GENESIS, sealed_line};
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn tool_call() -> RecordKind {
        RecordKind::ToolCall {
            tool: "bash".into(),
            summary: "git status".into(),
            decision: ToolDecision::Allowed,
            reason: "allowed by Bash(git *)".into(),
            rule: Some("Bash(git *)".into()),
        }
    }

    #[test]
    fn a_line_has_a_fixed_field_order() {
        let unsigned = unsigned_json(
            7,
            "2025-03-01T10:00:00Z",
            Some("s-1"),
            &tool_call(),
            GENESIS,
        )
        .unwrap();
        assert_eq!(
            unsigned,
            format!(
                "{{\"seq\":7,\"ts\":\"2025-03-01T10:00:00Z\",\"session\":\"s-1\",\"kind\":\"tool_call\",\
                 \"tool\":\"bash\",\"summary\":\"git status\",\"decision\":\"allowed\",\
                 \"reason\":\"allowed by Bash(git *)\",\"rule\":\"Bash(git *)\",\"prev\":\"{GENESIS}\"}}"
            )
        );
    }

    #[test]
    fn every_kind_round_trips() {
        let kinds = vec![
            RecordKind::SessionStart {
                task: "expense report".into(),
                model: "anthropic:claude".into(),
                backend: "jail".into(),
                grants: vec![Grant {
                    path: "/mnt/Expenses".into(),
                    host_path: "/home/u/Expenses".into(),
                    writable: false,
                }],
            },
            RecordKind::SessionEnd {
                reason: "completed".into(),
                usage: Usage {
                    input_tokens: 1,
                    output_tokens: 2,
                    cache_read: 3,
                    cache_write: 4,
                },
            },
            RecordKind::ModelCall {
                provider: "anthropic".into(),
                model: "claude".into(),
                input_tokens: 10,
                output_tokens: 20,
                cache_read: 0,
                cache_write: 5,
            },
            tool_call(),
            RecordKind::FileWritten {
                path: "/mnt/R/a.xlsx".into(),
                size: 1234,
                sha256: "ab".repeat(32),
            },
            RecordKind::NetworkRequest {
                host: "api.github.com".into(),
                port: 443,
                allowed: false,
                rule: None,
                reason: "no rule".into(),
                bytes_up: 0,
                bytes_down: 0,
            },
            RecordKind::PolicyLoaded {
                sources: vec![PolicySource {
                    layer: "managed".into(),
                    file: Some("/etc/cubicle/managed.toml".into()),
                    sha256: "00".repeat(32),
                }],
                digest: "11".repeat(32),
            },
            RecordKind::PolicyChanged {
                key: "network.allow".into(),
                old: None,
                new: Some("[\"x.org\"]".into()),
                by: "cli".into(),
            },
            RecordKind::Approval {
                tool: "edit".into(),
                decision: ApprovalChoice::AllowSession,
                by: "cli".into(),
            },
            RecordKind::TornTail {
                file: "audit-000001.jsonl".into(),
                line: 3,
                bytes: 40,
            },
            RecordKind::Other(json!({"kind": "paired_action", "device": "phone", "n": 1})),
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let seq = i as u64 + 1;
            let unsigned =
                unsigned_json(seq, "2025-03-01T10:00:00Z", None, &kind, GENESIS).unwrap();
            let line = sealed_line(&unsigned, None);
            let record = parse_line(line.as_bytes()).unwrap();
            assert_eq!(record.kind, kind, "{line}");
            assert_eq!(record.seq, seq);
            assert_eq!(record.session, None);
            assert_eq!(record.prev, GENESIS);
            assert_eq!(
                record.kind.name(),
                serde_json::from_str::<Value>(&line).unwrap()["kind"]
            );
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_kinds_kept() {
        let line = format!(
            "{{\"seq\":1,\"ts\":\"t\",\"session\":null,\"kind\":\"file_written\",\"path\":\"/a\",\
             \"size\":1,\"sha256\":\"x\",\"added_later\":true,\"prev\":\"{GENESIS}\",\"hash\":\"h\"}}"
        );
        assert!(matches!(
            parse_line(line.as_bytes()).unwrap().kind,
            RecordKind::FileWritten { .. }
        ));
    }

    #[test]
    fn bad_other_records_are_refused() {
        let bad =
            |v: Value| unsigned_json(1, "t", None, &RecordKind::Other(v), GENESIS).unwrap_err();
        assert!(bad(json!([1])).contains("object"));
        assert!(bad(json!({"x": 1})).contains("kind"));
        assert!(bad(json!({"kind": "x", "seq": 1})).contains("seq"));
        assert!(
            bad(json!({"kind": "approval", "tool": "t", "decision": "deny", "by": "b"}))
                .contains("known kind")
        );
    }

    #[test]
    fn malformed_lines_say_why() {
        assert!(
            parse_line(b"{\"seq\":1")
                .unwrap_err()
                .starts_with("not JSON")
        );
        assert_eq!(parse_line(b"[1]").unwrap_err(), "not a JSON object");
        assert_eq!(parse_line(b"{}").unwrap_err(), "no seq number");
        assert_eq!(
            parse_line(b"{\"seq\":1,\"ts\":\"t\",\"prev\":\"p\",\"hash\":\"h\"}").unwrap_err(),
            "no kind"
        );
    }
}

//! `cubicle audit export --format otlp`: records as an OpenTelemetry logs
//! payload (OTLP/HTTP, JSON encoding), and sending it to a collector.
//!
//! Each record becomes one log record: `timeUnixNano` from `ts`, severity
//! WARN for refusals and crash damage and INFO otherwise, a short body
//! (`tool_call bash: denied`), and attributes `cubicle.seq`, `cubicle.kind`,
//! `cubicle.session`, `cubicle.hash`, `cubicle.prev` plus one
//! `cubicle.<field>` per field of the kind (nested values as JSON text).
//! 64-bit integers are strings, as the protobuf JSON mapping requires.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::AuditError;
use crate::record::{Record, RecordKind, ToolDecision};

/// OTLP severity numbers used here.
const SEVERITY_INFO: u8 = 9;
const SEVERITY_WARN: u8 = 13;

/// Builds an OTLP/HTTP JSON logs payload holding `records`.
pub fn export_otlp(records: &[Record]) -> Value {
    let log_records: Vec<Value> = records.iter().map(log_record).collect();
    json!({
        "resourceLogs": [{
            "resource": {
                "attributes": [string_attr("service.name", "cubicle")]
            },
            "scopeLogs": [{
                "scope": { "name": "cubicle-audit", "version": env!("CARGO_PKG_VERSION") },
                "logRecords": log_records
            }]
        }]
    })
}

/// POSTs a payload from [`export_otlp`] to a collector's logs endpoint
/// (e.g. `http://localhost:4318/v1/logs`).
pub async fn send_otlp(endpoint: &str, payload: &Value) -> Result<(), AuditError> {
    let error = |message: String| AuditError::Export {
        endpoint: endpoint.to_string(),
        message,
    };
    let response = reqwest::Client::new()
        .post(endpoint)
        .json(payload)
        .send()
        .await
        .map_err(|e| error(e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(error(format!(
            "the collector answered {status}: {}",
            body.trim()
        )))
    }
}

fn log_record(record: &Record) -> Value {
    let nanos = OffsetDateTime::parse(&record.ts, &Rfc3339)
        .map(|t| t.unix_timestamp_nanos())
        .unwrap_or(0);
    let (severity, body) = summary(&record.kind);
    let mut attributes = vec![
        json!({"key": "cubicle.seq", "value": {"intValue": record.seq.to_string()}}),
        string_attr("cubicle.kind", record.kind.name()),
        string_attr("cubicle.hash", &record.hash),
        string_attr("cubicle.prev", &record.prev),
    ];
    if let Some(session) = &record.session {
        attributes.push(string_attr("cubicle.session", session));
    }
    if let Ok(Value::Object(fields)) = serde_json::to_value(&record.kind) {
        for (name, value) in fields {
            if name == "kind" {
                continue;
            }
            if let Some(value) = any_value(&value) {
                attributes.push(json!({"key": format!("cubicle.{name}"), "value": value}));
            }
        }
    }
    json!({
        "timeUnixNano": nanos.to_string(),
        "observedTimeUnixNano": nanos.to_string(),
        "severityNumber": severity,
        "severityText": if severity == SEVERITY_WARN { "WARN" } else { "INFO" },
        "body": {"stringValue": body},
        "attributes": attributes
    })
}

/// Severity and a one-line body for a record.
fn summary(kind: &RecordKind) -> (u8, String) {
    match kind {
        RecordKind::ToolCall { tool, decision, .. } => {
            let (severity, word) = match decision {
                ToolDecision::Allowed => (SEVERITY_INFO, "allowed"),
                ToolDecision::Asked => (SEVERITY_INFO, "asked"),
                ToolDecision::Denied => (SEVERITY_WARN, "denied"),
            };
            (severity, format!("tool_call {tool}: {word}"))
        }
        RecordKind::NetworkRequest {
            host,
            port,
            allowed,
            ..
        } => {
            let severity = if *allowed {
                SEVERITY_INFO
            } else {
                SEVERITY_WARN
            };
            let word = if *allowed { "allowed" } else { "denied" };
            (severity, format!("network_request {host}:{port}: {word}"))
        }
        RecordKind::TornTail { file, line, .. } => (
            SEVERITY_WARN,
            format!("torn_tail: line {line} of {file} was cut short by a crash"),
        ),
        other => (SEVERITY_INFO, other.name().to_string()),
    }
}

fn string_attr(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// An OTLP `AnyValue` for a JSON value; `None` for null.
fn any_value(value: &Value) -> Option<Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        Value::String(s) => json!({"stringValue": s}),
        Value::Array(_) | Value::Object(_) => json!({"stringValue": value.to_string()}),
    })
}

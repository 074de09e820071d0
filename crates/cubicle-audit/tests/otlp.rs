//! OpenTelemetry export: the payload's shape, and delivery to a collector
//! stand-in listening on 127.0.0.1 that captures the POST.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::write_log;
use cubicle_audit::{
    AuditError, AuditOptions, Record, RecordKind, ToolDecision, export_otlp, send_otlp, tail,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn record(kind: RecordKind) -> Record {
    Record {
        seq: 7,
        ts: "2025-03-01T10:00:00.5Z".into(),
        session: Some("s-1".into()),
        kind,
        prev: "p".into(),
        hash: "h".into(),
    }
}

#[test]
fn the_payload_follows_the_otlp_logs_json_shape() {
    let payload = export_otlp(&[record(RecordKind::ToolCall {
        tool: "bash".into(),
        summary: "rm -rf /mnt/x".into(),
        decision: ToolDecision::Denied,
        reason: "blocked".into(),
        rule: None,
    })]);
    assert_eq!(
        payload,
        json!({
            "resourceLogs": [{
                "resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": "cubicle"}}
                ]},
                "scopeLogs": [{
                    "scope": {"name": "cubicle-audit", "version": env!("CARGO_PKG_VERSION")},
                    "logRecords": [{
                        "timeUnixNano": "1740823200500000000",
                        "observedTimeUnixNano": "1740823200500000000",
                        "severityNumber": 13,
                        "severityText": "WARN",
                        "body": {"stringValue": "tool_call bash: denied"},
                        "attributes": [
                            {"key": "cubicle.seq", "value": {"intValue": "7"}},
                            {"key": "cubicle.kind", "value": {"stringValue": "tool_call"}},
                            {"key": "cubicle.hash", "value": {"stringValue": "h"}},
                            {"key": "cubicle.prev", "value": {"stringValue": "p"}},
                            {"key": "cubicle.session", "value": {"stringValue": "s-1"}},
                            {"key": "cubicle.decision", "value": {"stringValue": "denied"}},
                            {"key": "cubicle.reason", "value": {"stringValue": "blocked"}},
                            {"key": "cubicle.summary", "value": {"stringValue": "rm -rf /mnt/x"}},
                            {"key": "cubicle.tool", "value": {"stringValue": "bash"}}
                        ]
                    }]
                }]
            }]
        })
    );
}

#[test]
fn values_map_to_otlp_any_values() {
    let payload = export_otlp(&[record(RecordKind::NetworkRequest {
        host: "api.github.com".into(),
        port: 443,
        allowed: true,
        rule: Some("network.allow = \"api.github.com\"".into()),
        reason: "allowed".into(),
        bytes_up: 10,
        bytes_down: 20,
    })]);
    let log = &payload["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(log["severityText"], "INFO");
    assert_eq!(
        log["body"]["stringValue"],
        "network_request api.github.com:443: allowed"
    );
    let attr = |key: &str| -> Value {
        log["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(attr("cubicle.allowed"), json!({"boolValue": true}));
    assert_eq!(attr("cubicle.port"), json!({"intValue": "443"}));
    assert_eq!(attr("cubicle.bytes_down"), json!({"intValue": "20"}));
    let grants = export_otlp(&[record(RecordKind::SessionStart {
        task: "t".into(),
        model: "m".into(),
        backend: "jail".into(),
        grants: vec![],
    })]);
    let log = &grants["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert!(
        log["attributes"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "cubicle.grants", "value": {"stringValue": "[]"}}))
    );
}

/// Accepts one HTTP request, answers with `status`, and returns the request.
async fn one_request(listener: TcpListener, status: &'static str) -> (String, Vec<u8>) {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body_start) = loop {
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the headers ended");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&buf[..at]).into_owned(), at + 4);
        }
    };
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap();
    while buf.len() < body_start + length {
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope");
    socket.write_all(reply.as_bytes()).await.unwrap();
    socket.shutdown().await.unwrap();
    (head, buf[body_start..body_start + length].to_vec())
}

#[tokio::test]
async fn send_otlp_posts_the_payload_to_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3, AuditOptions::default());
    let payload = export_otlp(&tail(dir.path(), 10).unwrap());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/logs", listener.local_addr().unwrap());
    let server = tokio::spawn(one_request(listener, "200 OK"));
    tokio::time::timeout(Duration::from_secs(20), send_otlp(&endpoint, &payload))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = server.await.unwrap();
    assert!(head.starts_with("POST /v1/logs HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let received: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(received, payload);
    assert_eq!(
        received["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn a_collector_error_is_reported_with_its_status() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/logs", listener.local_addr().unwrap());
    let server = tokio::spawn(one_request(listener, "503 Service Unavailable"));
    let err = send_otlp(&endpoint, &export_otlp(&[])).await.unwrap_err();
    server.await.unwrap();
    assert!(matches!(err, AuditError::Export { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "sending audit records to {endpoint} failed: the collector answered 503 Service \
             Unavailable: nope"
        )
    );
}

#[tokio::test]
async fn an_unreachable_collector_is_an_error() {
    // Bind then drop, so the port is (almost certainly) closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = send_otlp(&format!("http://127.0.0.1:{port}/v1/logs"), &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, AuditError::Export { .. }), "{err}");
}

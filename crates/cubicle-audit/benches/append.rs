//! Audit append rate with `fdatasync`, next to its peer in the same run: the
//! same number of bytes written and `fdatasync`ed raw, without JSON, hashing
//! or locking — the floor the disk sets. Reports both rates and the ratio.
//!
//! `cargo bench -p cubicle-audit --bench append` runs it in full; under
//! `cargo test` (no `--bench` argument) it runs a few appends as a smoke test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::Write;
use std::time::Instant;

use cubicle_audit::{AuditLog, AuditOptions, RecordKind, ToolDecision};

fn kind(i: u64) -> RecordKind {
    RecordKind::ToolCall {
        tool: "bash".into(),
        summary: format!("python3 make_report.py --input /mnt/Reports/q{i}.xlsx"),
        decision: ToolDecision::Allowed,
        reason: "Allowed: it happens inside the cubicle.".into(),
        rule: Some("Bash(python3 *)".into()),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: u64 = if full { 2000 } else { 5 };

    let mut rates = Vec::new();
    for key in [None, Some(b"bench-key".to_vec())] {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(
            dir.path(),
            AuditOptions {
                key: key.clone(),
                ..AuditOptions::default()
            },
        )
        .unwrap();
        let start = Instant::now();
        for i in 0..n {
            log.append(Some("bench"), kind(i)).unwrap();
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        let size = std::fs::metadata(dir.path().join("audit-000001.jsonl"))
            .unwrap()
            .len();
        rates.push((key.is_some(), rate, size / n));
    }

    // The peer: raw lines of the same size, each written and fdatasynced.
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("raw")).unwrap();
    let line = vec![b'x'; usize::try_from(rates[0].2).unwrap_or(300)];
    let start = Instant::now();
    for _ in 0..n {
        file.write_all(&line).unwrap();
        file.sync_data().unwrap();
    }
    let raw = n as f64 / start.elapsed().as_secs_f64();

    for (keyed, rate, bytes) in rates {
        println!(
            "audit append ({}, {bytes} B/record): {rate:.0}/s with fdatasync; raw write+fdatasync \
             {raw:.0}/s; ratio {:.2}",
            if keyed { "HMAC-SHA256" } else { "SHA-256" },
            rate / raw
        );
    }
}

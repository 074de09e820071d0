//! Writing and reading the audit log: round trip, the chain across reopen
//! and rotation, crash recovery, concurrent appends, tail, follow, export.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{log_files, options, read_lines, tool_call, write_log};
use cubicle_audit::chain::{GENESIS, sha256_hex};
use cubicle_audit::{
    AuditLog, AuditOptions, Grant, Record, RecordKind, Recovery, Usage, export_jsonl, follow, tail,
    verify,
};
use pretty_assertions::assert_eq;
use serde_json::json;

#[test]
fn records_round_trip_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let start = RecordKind::SessionStart {
        task: "turn receipts into a report".into(),
        model: "anthropic:claude-sonnet-4".into(),
        backend: "jail".into(),
        grants: vec![Grant {
            path: "/mnt/Expenses".into(),
            host_path: "/home/u/Expenses".into(),
            writable: false,
        }],
    };
    let first = log.append(Some("s-1"), start.clone()).unwrap();
    let end = RecordKind::SessionEnd {
        reason: "completed".into(),
        usage: Usage {
            input_tokens: 100,
            output_tokens: 50,
            cache_read: 0,
            cache_write: 0,
        },
    };
    let second = log.append(Some("s-1"), end.clone()).unwrap();
    let third = log
        .append(
            None,
            RecordKind::Other(json!({"kind": "paired_action", "device": "phone"})),
        )
        .unwrap();
    assert_eq!((first.seq, second.seq, third.seq), (1, 2, 3));
    assert_eq!(first.prev, GENESIS);

    let files = log_files(dir.path());
    assert_eq!(files, vec![dir.path().join("audit-000001.jsonl")]);
    let lines = read_lines(&files[0]);
    assert_eq!(lines.len(), 3);
    assert_eq!(second.prev, sha256_hex(lines[0].as_bytes()));
    assert_eq!(third.prev, sha256_hex(lines[1].as_bytes()));

    let back: Vec<Record> = tail(dir.path(), 10).unwrap();
    assert_eq!(back, vec![first, second, third]);
    assert_eq!(back[0].kind, start);
    assert_eq!(back[1].kind, end);
    assert_eq!(back[0].session.as_deref(), Some("s-1"));
    assert_eq!(back[2].session, None);

    let report = verify(dir.path(), None).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 3);
    assert_eq!(report.last, Some((3, back[2].hash.clone())));
}

#[test]
fn bad_other_records_are_refused_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    let err = log.append(None, RecordKind::Other(json!("x"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot write this audit record: an Other record must be a JSON object"
    );
    assert_eq!(log.next_seq(), 1);
    assert_eq!(read_lines(&log_files(dir.path())[0]).len(), 0);
}

#[test]
fn the_chain_continues_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    drop(write_log(dir.path(), 3, AuditOptions::default()));
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    assert_eq!(log.next_seq(), 4);
    assert_eq!(log.recoveries(), vec![]);
    let fourth = log.append(None, tool_call(4)).unwrap();
    let lines = read_lines(&log_files(dir.path())[0]);
    assert_eq!(fourth.prev, sha256_hex(lines[2].as_bytes()));
    let report = verify(dir.path(), None).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 4);
}

#[test]
fn rotation_keeps_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), 20, options(1000, Some(b"key")));
    let files = log_files(dir.path());
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size <= 1000, "{} is {size} bytes", file.display());
    }
    // The first record of each file points at the last line of the one before.
    for pair in files.windows(2) {
        let last = read_lines(&pair[0]).pop().unwrap();
        let first = read_lines(&pair[1]).remove(0);
        let record: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(record["prev"], sha256_hex(last.as_bytes()));
    }
    drop(log);
    // Reopening continues in the newest file.
    let log = AuditLog::open(dir.path(), options(1000, Some(b"key"))).unwrap();
    assert_eq!(log.next_seq(), 21);
    log.append(None, tool_call(21)).unwrap();
    let report = verify(dir.path(), Some(b"key")).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 21);
    assert_eq!(report.files, log_files(dir.path()).len());
    assert_eq!(
        tail(dir.path(), 3)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        vec![19, 20, 21]
    );
}

#[test]
fn a_record_larger_than_the_limit_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), options(100, None)).unwrap();
    log.append(None, tool_call(1)).unwrap();
    log.append(None, tool_call(2)).unwrap();
    assert_eq!(log_files(dir.path()).len(), 2);
    assert!(verify(dir.path(), None).unwrap().is_ok());
}

#[test]
fn a_torn_last_line_is_recorded_and_the_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    drop(write_log(dir.path(), 3, AuditOptions::default()));
    let file = log_files(dir.path())[0].clone();
    // A crash in the middle of writing record 4.
    let mut content = std::fs::read(&file).unwrap();
    let torn = b"{\"seq\":4,\"ts\":\"2025-01-01T00:00:00Z\",\"sess";
    content.extend_from_slice(torn);
    std::fs::write(&file, &content).unwrap();

    let before = verify(dir.path(), None).unwrap();
    assert_eq!(
        before.first_bad.as_ref().map(|b| (b.line, b.problem)),
        Some((4, cubicle_audit::Problem::Truncated))
    );

    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    assert_eq!(
        log.recoveries(),
        vec![Recovery {
            file: file.clone(),
            line: 4,
            bytes: torn.len() as u64,
        }]
    );
    let next = log.append(None, tool_call(5)).unwrap();
    assert_eq!(next.seq, 5);
    // Nothing before was rewritten: the damaged bytes are still there.
    assert!(std::fs::read(&file).unwrap().starts_with(&content));
    let records = tail(dir.path(), 2).unwrap();
    assert_eq!(
        records[0].kind,
        RecordKind::TornTail {
            file: "audit-000001.jsonl".into(),
            line: 4,
            bytes: torn.len() as u64,
        }
    );
    let report = verify(dir.path(), None).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 5);
    assert_eq!(report.torn.len(), 1);
    assert_eq!(report.torn[0].line, 4);
    // Reopening again finds nothing new to recover.
    drop(log);
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    assert_eq!(log.recoveries(), vec![]);
}

#[test]
fn a_complete_last_line_without_newline_is_kept_as_is() {
    let dir = tempfile::tempdir().unwrap();
    drop(write_log(dir.path(), 2, AuditOptions::default()));
    let file = log_files(dir.path())[0].clone();
    let mut content = std::fs::read(&file).unwrap();
    content.pop();
    std::fs::write(&file, &content).unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    assert_eq!(log.recoveries(), vec![]);
    assert_eq!(log.append(None, tool_call(3)).unwrap().seq, 3);
    assert!(verify(dir.path(), None).unwrap().is_ok());
}

#[test]
fn an_empty_newest_file_continues_from_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    drop(write_log(dir.path(), 2, AuditOptions::default()));
    std::fs::write(dir.path().join("audit-000002.jsonl"), "").unwrap();
    let log = AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
    assert_eq!(log.append(None, tool_call(3)).unwrap().seq, 3);
    assert_eq!(read_lines(&dir.path().join("audit-000002.jsonl")).len(), 1);
    assert!(verify(dir.path(), None).unwrap().is_ok());
}

#[test]
fn concurrent_appends_keep_a_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), options(4096, Some(b"k"))).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..25 {
                    log.append(Some(&format!("s-{t}")), tool_call(t * 100 + i))
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let report = verify(dir.path(), Some(b"k")).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 200);
    assert!(report.files > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_from_async_tasks_keep_a_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(dir.path(), AuditOptions::default()).unwrap());
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let log = Arc::clone(&log);
            tokio::task::spawn_blocking(move || {
                for i in 0..10 {
                    log.append(None, tool_call(t * 100 + i)).unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let report = verify(dir.path(), None).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 160);
}

#[test]
fn tail_reads_across_files_and_handles_edges() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(tail(dir.path(), 5).unwrap(), vec![]);
    write_log(dir.path(), 12, options(600, None));
    let seqs = |n| {
        tail(dir.path(), n)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(0), Vec::<u64>::new());
    assert_eq!(seqs(4), vec![9, 10, 11, 12]);
    assert_eq!(seqs(100), (1..=12).collect::<Vec<_>>());
}

#[test]
fn export_jsonl_copies_every_line_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 7, options(700, None));
    let mut out = Vec::new();
    assert_eq!(export_jsonl(dir.path(), &mut out).unwrap(), 7);
    let mut expected = Vec::new();
    for file in log_files(dir.path()) {
        expected.extend(std::fs::read(file).unwrap());
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

#[test]
fn follow_yields_new_records_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), 2, options(500, None));
    let mut follower = follow(dir.path()).unwrap();
    assert_eq!(follower.poll().unwrap(), vec![]);
    for i in 3..=9 {
        log.append(None, tool_call(i)).unwrap();
    }
    let seqs: Vec<u64> = follower.poll().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (3..=9).collect::<Vec<_>>());
    assert_eq!(follower.poll().unwrap(), vec![]);

    // The blocking iterator waits for a record written by another thread.
    let writer = {
        let dir = dir.path().to_path_buf();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let log = AuditLog::open(&dir, options(500, None)).unwrap();
            log.append(None, tool_call(10)).unwrap();
            log.append(None, tool_call(11)).unwrap();
        })
    };
    drop(log);
    let mut follower = follower.with_interval(Duration::from_millis(10));
    let next: Vec<u64> = (&mut follower).take(2).map(|r| r.unwrap().seq).collect();
    assert_eq!(next, vec![10, 11]);
    writer.join().unwrap();
}

#[tokio::test]
async fn follow_next_async_waits_for_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(write_log(dir.path(), 1, AuditOptions::default()));
    let mut follower = follow(dir.path())
        .unwrap()
        .with_interval(Duration::from_millis(10));
    let writer = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            log.append(None, tool_call(2)).unwrap();
        })
    };
    let record = tokio::time::timeout(Duration::from_secs(10), follower.next_async())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.seq, 2);
    writer.await.unwrap();
}

#[test]
fn options_never_print_the_key() {
    let opts = options(10, Some(b"secret-key"));
    assert_eq!(
        format!("{opts:?}"),
        "AuditOptions { max_file_bytes: 10, key: Some(\"<set>\") }"
    );
}

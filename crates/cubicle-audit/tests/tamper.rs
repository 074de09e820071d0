//! Attacks on the audit log: each changes the files the way an attacker (or
//! an accident) would, and `verify` must find it and name the first bad
//! record with the right problem.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{log_files, options, read_lines, write_lines, write_log};
use cubicle_audit::chain::{sealed_line, sha256_hex};
use cubicle_audit::{AuditOptions, BadRecord, Problem, verify};
use pretty_assertions::assert_eq;

const KEY: &[u8] = b"audit-key-from-the-keyring";

/// The first bad record's (file name, line, seq, problem).
fn first_bad(dir: &Path, key: Option<&[u8]>) -> (String, usize, Option<u64>, Problem) {
    let report = verify(dir, key).unwrap();
    let bad: BadRecord = report
        .first_bad
        .clone()
        .unwrap_or_else(|| panic!("no bad record: {report:?}"));
    (
        bad.file.file_name().unwrap().to_string_lossy().into_owned(),
        bad.line,
        bad.seq,
        bad.problem,
    )
}

fn message(dir: &Path, key: Option<&[u8]>) -> String {
    verify(dir, key).unwrap().first_bad.unwrap().message
}

fn single_file_log(n: u64, key: Option<&[u8]>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), n, options(1 << 20, key));
    let file = log_files(dir.path())[0].clone();
    (dir, file)
}

#[test]
fn an_intact_log_verifies() {
    for key in [None, Some(KEY)] {
        let (dir, _) = single_file_log(10, key);
        let report = verify(dir.path(), key).unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.records, report.files), (10, 1));
    }
    let empty = tempfile::tempdir().unwrap();
    let report = verify(empty.path(), None).unwrap();
    assert!(report.is_ok());
    assert_eq!((report.records, report.files, report.last), (0, 0, None));
}

#[test]
fn an_edited_field_is_found() {
    for key in [None, Some(KEY)] {
        let (dir, file) = single_file_log(10, key);
        let mut lines = read_lines(&file);
        lines[4] = lines[4].replace("command 5", "command X");
        write_lines(&file, &lines);
        assert_eq!(
            first_bad(dir.path(), key),
            ("audit-000001.jsonl".into(), 5, Some(5), Problem::Edited)
        );
        assert_eq!(
            message(dir.path(), key),
            format!(
                "Record 5 at line 5 of {} was changed after it was written (its seal does not \
                 match its content).",
                file.display()
            )
        );
    }
}

#[test]
fn an_edit_with_a_recomputed_hash_is_found_without_a_key() {
    let (dir, file) = single_file_log(10, None);
    let mut lines = read_lines(&file);
    // The attacker re-seals record 5 after editing it (possible without a key).
    let unsigned = lines[4]
        .replace("command 5", "command X")
        .split(",\"hash\":")
        .next()
        .unwrap()
        .to_string()
        + "}";
    lines[4] = sealed_line(&unsigned, None);
    write_lines(&file, &lines);
    // Record 6 still points at the original: record 5 is blamed.
    assert_eq!(
        first_bad(dir.path(), None),
        ("audit-000001.jsonl".into(), 5, Some(5), Problem::Edited)
    );
}

#[test]
fn a_record_resealed_without_the_key_is_found() {
    let (dir, file) = single_file_log(10, Some(KEY));
    let mut lines = read_lines(&file);
    let unsigned = lines[4]
        .replace("command 5", "command X")
        .split(",\"hash\":")
        .next()
        .unwrap()
        .to_string()
        + "}";
    lines[4] = sealed_line(&unsigned, None);
    write_lines(&file, &lines);
    assert_eq!(
        first_bad(dir.path(), Some(KEY)),
        ("audit-000001.jsonl".into(), 5, Some(5), Problem::BadMac)
    );
}

#[test]
fn a_deleted_line_is_found() {
    for key in [None, Some(KEY)] {
        let (dir, file) = single_file_log(10, key);
        let mut lines = read_lines(&file);
        lines.remove(3);
        write_lines(&file, &lines);
        assert_eq!(
            first_bad(dir.path(), key),
            ("audit-000001.jsonl".into(), 4, Some(5), Problem::Deleted)
        );
        assert_eq!(
            message(dir.path(), key),
            format!(
                "Before record 5 at line 4 of {}, record 4 is missing: records were deleted.",
                file.display()
            )
        );
    }
    let (dir, file) = single_file_log(10, None);
    let mut lines = read_lines(&file);
    lines.drain(2..5);
    write_lines(&file, &lines);
    assert!(message(dir.path(), None).contains("records 3 to 5 are missing"));
}

/// A forged record that continues the chain correctly (all an attacker
/// without the key can compute), inserted after line `after`.
fn forge_after(lines: &mut Vec<String>, after: usize) {
    let prev = sha256_hex(lines[after - 1].as_bytes());
    let seq = after + 1;
    let unsigned = format!(
        "{{\"seq\":{seq},\"ts\":\"2025-01-01T00:00:00Z\",\"session\":null,\"kind\":\"tool_call\",\
         \"tool\":\"bash\",\"summary\":\"forged\",\"decision\":\"allowed\",\"reason\":\"x\",\
         \"rule\":null,\"prev\":\"{prev}\"}}"
    );
    lines.insert(after, sealed_line(&unsigned, None));
}

#[test]
fn an_inserted_forged_line_is_found() {
    // Without a key the forgery itself verifies; the original record it
    // displaced is where the log breaks.
    let (dir, file) = single_file_log(10, None);
    let mut lines = read_lines(&file);
    forge_after(&mut lines, 3);
    write_lines(&file, &lines);
    assert_eq!(
        first_bad(dir.path(), None),
        ("audit-000001.jsonl".into(), 5, Some(4), Problem::Inserted)
    );

    // With a key the forgery is the first bad record.
    let (dir, file) = single_file_log(10, Some(KEY));
    let mut lines = read_lines(&file);
    forge_after(&mut lines, 3);
    write_lines(&file, &lines);
    assert_eq!(
        first_bad(dir.path(), Some(KEY)),
        ("audit-000001.jsonl".into(), 4, Some(4), Problem::Inserted)
    );
    assert_eq!(
        message(dir.path(), Some(KEY)),
        format!(
            "Record 4 at line 4 of {} was not written by Cubicle: the records around it link to \
             each other, so it was inserted.",
            file.display()
        )
    );
}

#[test]
fn a_garbage_line_is_found() {
    let (dir, file) = single_file_log(5, None);
    let mut lines = read_lines(&file);
    lines.insert(2, "hello".into());
    write_lines(&file, &lines);
    assert_eq!(
        first_bad(dir.path(), None),
        ("audit-000001.jsonl".into(), 3, None, Problem::BadJson)
    );
}

#[test]
fn swapped_lines_are_found() {
    for key in [None, Some(KEY)] {
        let (dir, file) = single_file_log(10, key);
        let mut lines = read_lines(&file);
        lines.swap(5, 6);
        write_lines(&file, &lines);
        assert_eq!(
            first_bad(dir.path(), key),
            ("audit-000001.jsonl".into(), 6, Some(7), Problem::Reordered)
        );
        assert_eq!(
            message(dir.path(), key),
            format!(
                "Record 7 at line 6 of {} comes where record 6 should: records were moved out \
                 of order.",
                file.display()
            )
        );
    }
}

#[test]
fn a_file_cut_mid_line_is_found() {
    let (dir, file) = single_file_log(10, None);
    let content = std::fs::read(&file).unwrap();
    std::fs::write(&file, &content[..content.len() - 40]).unwrap();
    assert_eq!(
        first_bad(dir.path(), None),
        ("audit-000001.jsonl".into(), 10, None, Problem::Truncated)
    );
    assert_eq!(
        message(dir.path(), None),
        format!(
            "The log ends in the middle of a record at line 10 of {}: it was cut short.",
            file.display()
        )
    );
}

#[test]
fn a_torn_line_in_the_middle_without_its_note_is_tampering() {
    let (dir, file) = single_file_log(5, None);
    let mut lines = read_lines(&file);
    lines[2].truncate(30);
    write_lines(&file, &lines);
    assert_eq!(
        first_bad(dir.path(), None),
        ("audit-000001.jsonl".into(), 3, None, Problem::BadJson)
    );
}

fn rotated_log(key: Option<&[u8]>) -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 30, options(1200, key));
    let files = log_files(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    (dir, files)
}

#[test]
fn a_deleted_middle_file_is_found() {
    let (dir, files) = rotated_log(Some(KEY));
    std::fs::remove_file(&files[1]).unwrap();
    assert_eq!(
        first_bad(dir.path(), Some(KEY)),
        ("audit-000002.jsonl".into(), 0, None, Problem::Deleted)
    );
    assert_eq!(
        message(dir.path(), Some(KEY)),
        format!(
            "{} is missing: a whole file of the log was deleted (the next file is \
             audit-000003.jsonl).",
            files[1].display()
        )
    );
}

#[test]
fn a_deleted_middle_file_with_the_rest_renumbered_is_found() {
    let (dir, files) = rotated_log(None);
    std::fs::remove_file(&files[1]).unwrap();
    for pair in files[1..].windows(2) {
        std::fs::rename(&pair[1], &pair[0]).unwrap();
    }
    let (file, line, _, problem) = first_bad(dir.path(), None);
    assert_eq!(
        (file.as_str(), line, problem),
        ("audit-000002.jsonl", 1, Problem::Deleted)
    );
}

#[test]
fn a_deleted_first_file_is_found() {
    let (dir, files) = rotated_log(None);
    std::fs::remove_file(&files[0]).unwrap();
    assert_eq!(
        first_bad(dir.path(), None),
        ("audit-000001.jsonl".into(), 0, None, Problem::Deleted)
    );
}

#[test]
fn swapped_files_are_found() {
    let (dir, files) = rotated_log(None);
    let tmp = dir.path().join("swap");
    std::fs::rename(&files[1], &tmp).unwrap();
    std::fs::rename(&files[2], &files[1]).unwrap();
    std::fs::rename(&tmp, &files[2]).unwrap();
    let (file, line, _, problem) = first_bad(dir.path(), None);
    assert_eq!(
        (file.as_str(), line, problem),
        ("audit-000002.jsonl", 1, Problem::Reordered)
    );
}

#[test]
fn the_wrong_key_is_found_at_the_first_record() {
    let (dir, file) = single_file_log(5, Some(KEY));
    assert_eq!(
        first_bad(dir.path(), Some(b"not the key")),
        ("audit-000001.jsonl".into(), 1, Some(1), Problem::BadMac)
    );
    assert_eq!(
        message(dir.path(), Some(b"not the key")),
        format!(
            "Record 1 at line 1 of {} does not match the key: the key is wrong, or the record \
             was changed.",
            file.display()
        )
    );
    // A log written without a key checked with one: every record is unkeyed.
    let (dir, _) = single_file_log(5, None);
    assert_eq!(first_bad(dir.path(), Some(KEY)).3, Problem::BadMac);
    // And a keyed log checked without the key fails too.
    let (dir, _) = single_file_log(5, Some(KEY));
    assert_eq!(first_bad(dir.path(), None).3, Problem::Edited);
}

#[test]
fn a_forged_torn_tail_note_does_not_excuse_damage_with_a_key() {
    let (dir, file) = single_file_log(4, Some(KEY));
    let mut lines = read_lines(&file);
    // Damage line 3, then forge the note an honest recovery would write —
    // sealed without the key, since the attacker lacks it.
    let damaged = lines[2][..20].to_string();
    let prev = sha256_hex(lines[1].as_bytes());
    let note = format!(
        "{{\"seq\":3,\"ts\":\"2025-01-01T00:00:00Z\",\"session\":null,\"kind\":\"torn_tail\",\
         \"file\":\"audit-000001.jsonl\",\"line\":3,\"bytes\":20,\"prev\":\"{prev}\"}}"
    );
    lines.truncate(2);
    lines.push(damaged);
    lines.push(sealed_line(&note, None));
    write_lines(&file, &lines);
    assert_eq!(
        first_bad(dir.path(), Some(KEY)),
        ("audit-000001.jsonl".into(), 3, None, Problem::BadJson)
    );
    // The same note sealed with the key is exactly what recovery writes.
    lines[3] = sealed_line(&note, Some(KEY));
    write_lines(&file, &lines);
    let report = verify(dir.path(), Some(KEY)).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.torn.len(), 1);
}

#[test]
fn reopening_a_tampered_log_does_not_hide_the_tampering() {
    let (dir, file) = single_file_log(6, None);
    let mut lines = read_lines(&file);
    lines.remove(2);
    write_lines(&file, &lines);
    drop(write_log(dir.path(), 2, AuditOptions::default()));
    assert_eq!(first_bad(dir.path(), None).3, Problem::Deleted);
}

#[test]
fn odd_file_contents_are_reported_not_panicked_on() {
    let cases: Vec<&[u8]> = vec![
        b"\n",
        b"\n\n\n",
        b"\xff\xfe\n",
        b"{}\n",
        b"{\"seq\":0,\"ts\":\"t\",\"session\":null,\"kind\":\"x\",\"prev\":\"p\",\"hash\":\"h\"}\n",
        b"{\"seq\":18446744073709551615,\"ts\":\"t\",\"kind\":\"x\",\"prev\":\"p\",\"hash\":\"h\"}\n",
        b"[1,2,3]\n",
        b"null",
    ];
    for content in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("audit-000001.jsonl"), content).unwrap();
        let report = verify(dir.path(), None).unwrap();
        assert!(!report.is_ok(), "{content:?} verified");
        // Opening such a log continues after a torn-tail note instead of failing.
        let log = cubicle_audit::AuditLog::open(dir.path(), AuditOptions::default()).unwrap();
        log.append(None, common::tool_call(1)).unwrap();
        assert!(cubicle_audit::tail(dir.path(), 5).unwrap().len() >= 2);
    }
}

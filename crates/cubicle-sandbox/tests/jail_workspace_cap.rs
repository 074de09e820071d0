//! The workspace cap: a command filling `/workspace` is stopped and told
//! why, and the session recovers once files are deleted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jail_common;

use cubicle_protocol::guest::ExecRequest;
use cubicle_sandbox::jail::JailComputer;
use cubicle_sandbox::{Computer, ExecOutput};

const CAP: u64 = 8 << 20;
/// Overshoot allowed: what a writer can add between two measurements,
/// with plenty of room for a busy machine.
const OVERSHOOT: u64 = 64 << 20;

async fn run(jail: &JailComputer, line: &str, timeout_ms: u64) -> ExecOutput {
    let mut req = ExecRequest::shell(line);
    req.timeout_ms = Some(timeout_ms);
    jail.exec(req, None).await.unwrap()
}

/// Allocated bytes under `dir`, as the host sees them.
fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        total += meta.blocks() * 512;
    }
    total
}

#[tokio::test]
async fn a_command_filling_the_workspace_is_stopped_and_told_why() {
    require_jail!();
    let dir = tempfile::tempdir().unwrap();
    let mut config = jail_common::config(dir.path(), vec![]);
    config.limits.workspace_bytes = Some(CAP);
    let jail = JailComputer::start(config).await.unwrap();

    let out = run(
        &jail,
        "i=0; while true; do head -c 1048576 /dev/zero > /workspace/f$i; i=$((i+1)); sleep 0.05; \
         done",
        60_000,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.result.timed_out, "ran to its timeout: {out:?}");
    assert_eq!(out.result.signal, Some(9), "{out:?}");
    assert!(
        stderr.contains("cubicle: the workspace is over its 8 MiB cap (")
            && stderr.contains("the command was stopped — delete files to continue"),
        "{stderr}"
    );
    let used = disk_usage(dir.path());
    eprintln!("workspace after the cap stopped the writer: {used} bytes ({stderr:?})");
    assert!(used < CAP + OVERSHOOT, "{used}");

    // Still over: commands run, with the warning.
    let out = run(&jail, "echo still", 20_000).await;
    assert_eq!(out.stdout, b"still\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("over its 8 MiB cap"),
        "{out:?}"
    );

    // Deleting files frees the session.
    let out = run(&jail, "rm /workspace/f*", 20_000).await;
    assert_eq!(out.result.code, Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let out = run(&jail, "echo ok", 20_000).await;
    assert_eq!(out.stdout, b"ok\n");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(out.result.code, Some(0));
    jail.stop().await.unwrap();
}

#[tokio::test]
async fn sparse_files_count_for_their_blocks_only() {
    require_jail!();
    let dir = tempfile::tempdir().unwrap();
    let mut config = jail_common::config(dir.path(), vec![]);
    config.limits.workspace_bytes = Some(CAP);
    let jail = JailComputer::start(config).await.unwrap();
    // 32 MiB apparent, nothing allocated: under the cap.
    let out = run(
        &jail,
        "truncate -s 32M /workspace/sparse && sleep 1 && echo ok",
        20_000,
    )
    .await;
    assert_eq!(out.stdout, b"ok\n", "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    jail.stop().await.unwrap();
}

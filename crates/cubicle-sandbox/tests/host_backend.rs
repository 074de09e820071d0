//! The `host` backend against the real `cubicle-guest` (see `common.rs` for
//! how the binary gets built).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Setup, read_pid, wait_dead};
use cubicle_protocol::guest::{ErrorCode, ExecRequest, FileKind, GrepRequest, OutputStream};
use cubicle_sandbox::guest_client::{AsyncReadWrite, EgressConnector};
use cubicle_sandbox::{Computer, OutputChunk, SandboxError};
use pretty_assertions::assert_eq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

fn code(err: &SandboxError) -> Option<ErrorCode> {
    err.code()
}

#[tokio::test]
async fn info_describes_an_unisolated_host() {
    let s = Setup::new();
    let grant = s.grant("docs", false);
    let c = s.start(vec![grant.clone()]).await;
    let info = c.info();
    let ws = s.base.join("workspace").display().to_string();
    assert_eq!(
        (
            info.backend.as_str(),
            info.isolated,
            &info.workspace,
            &info.workspace_host
        ),
        ("host", false, &ws, &ws)
    );
    let docs = grant.host_path.display().to_string();
    assert_eq!(
        info.grants,
        vec![cubicle_protocol::events::GrantInfo {
            host_path: docs.clone(),
            path: docs,
            writable: false
        }]
    );
    assert!(c.guest().ping().await.is_ok());
    c.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_live_reader_gets_all_the_output_in_order() {
    let s = Setup::new();
    let c = s.start(vec![]).await;
    // Room for one chunk, and a reader that dawdles over each: the command
    // waits for it, and nothing is lost or reordered.
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(1);
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            all.extend(chunk.data);
        }
        all
    });
    let out = c
        .exec(ExecRequest::shell("seq 1 200000"), Some(tx))
        .await
        .unwrap();
    let live = reader.await.unwrap();
    let want: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(out.result.code, Some(0));
    assert!(live == want.as_bytes(), "live output differs");
    assert!(out.stdout == live, "collected output differs");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn exec_streams_live_chunks_in_order() {
    let s = Setup::new();
    let c = s.start(vec![]).await;
    let (tx, mut rx) = mpsc::channel(64);
    let out = c
        .exec(
            ExecRequest::shell(
                "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done; exit 7",
            ),
            Some(tx),
        )
        .await
        .unwrap();
    assert_eq!(out.result.code, Some(7));
    assert_eq!(
        String::from_utf8(out.stdout.clone()).unwrap(),
        "out1\nout2\nout3\n"
    );
    assert_eq!(
        String::from_utf8(out.stderr.clone()).unwrap(),
        "err1\nerr2\nerr3\n"
    );
    let mut live_out = Vec::new();
    let mut chunks = 0;
    while let Ok(OutputChunk { stream, data }) = rx.try_recv() {
        chunks += 1;
        if stream == OutputStream::Stdout {
            live_out.extend(data);
        }
    }
    assert_eq!(live_out, out.stdout);
    assert!(chunks >= 2, "output arrived in {chunks} chunk(s)");
    // The workspace is the default working directory.
    let out = c.exec(ExecRequest::argv(["pwd"]), None).await.unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        s.base.join("workspace").display().to_string()
    );
    c.stop().await.unwrap();
}

#[tokio::test]
async fn timeout_and_output_cap() {
    let s = Setup::new();
    let c = s.start(vec![]).await;
    let mut req = ExecRequest::argv(["sleep", "30"]);
    req.timeout_ms = Some(300);
    let out = c.exec(req, None).await.unwrap();
    assert!(out.result.timed_out);
    assert_eq!(out.result.signal, Some(9));
    let mut req = ExecRequest::shell("head -c 100000 /dev/zero");
    req.max_output_bytes = Some(10);
    let out = c.exec(req, None).await.unwrap();
    assert_eq!((out.stdout.len(), out.result.output_truncated), (10, true));
    let err = c
        .exec(ExecRequest::argv(["no-such-command-here"]), None)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::SpawnFailed));
    assert_eq!(err.to_string(), "command not found: no-such-command-here");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn dropping_an_exec_future_kills_the_command() {
    let s = Setup::new();
    let c = s.start(vec![]).await;
    let pidfile = s.base.join("workspace/pid");
    let req = ExecRequest::shell(format!("sleep 100 & echo $! > {}; wait", pidfile.display()));
    let mut fut = Box::pin(c.exec(req, None));
    let pid = tokio::select! {
        r = &mut fut => panic!("command ended early: {r:?}"),
        pid = read_pid(&pidfile) => pid,
    };
    assert!(!common::is_dead(pid));
    drop(fut);
    assert!(
        wait_dead(pid).await,
        "the cancelled command's child {pid} survived"
    );
    // The connection is still healthy afterwards.
    let out = c.exec(ExecRequest::shell("echo ok"), None).await.unwrap();
    assert_eq!(out.stdout, b"ok\n");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn twenty_concurrent_execs() {
    let s = Setup::new();
    let c = Arc::new(s.start(vec![]).await);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let c = c.clone();
        set.spawn(async move {
            let out = c
                .exec(ExecRequest::shell(format!("sleep 0.2; echo {i}")), None)
                .await
                .unwrap();
            (i, String::from_utf8(out.stdout).unwrap())
        });
    }
    let mut results = set.join_all().await;
    results.sort();
    let expected: Vec<_> = (0..20).map(|i| (i, format!("{i}\n"))).collect();
    assert_eq!(results, expected);
    c.stop().await.unwrap();
}

#[tokio::test]
async fn files_through_the_computer_trait() {
    let s = Setup::new();
    let c = s.start(vec![]).await;
    let ws = s.base.join("workspace");
    c.write_file("notes/a.txt", b"alpha\nTODO one\n".to_vec())
        .await
        .unwrap();
    c.write_file(
        &ws.join("notes/b.md").display().to_string(),
        b"todo two\n".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(
        c.read_file("notes/a.txt", 6, Some(4)).await.unwrap(),
        (b"TODO".to_vec(), 15)
    );
    let st = c.stat("notes").await.unwrap();
    assert_eq!((st.kind, st.writable), (FileKind::Dir, true));
    let names: Vec<_> = c
        .list_dir("notes")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["a.txt", "b.md"]);
    let (paths, truncated) = c
        .glob(&ws.display().to_string(), "**/*.txt", 10)
        .await
        .unwrap();
    assert_eq!(
        (paths, truncated),
        (vec![ws.join("notes/a.txt").display().to_string()], false)
    );
    let (matches, truncated) = c
        .grep(GrepRequest {
            pattern: "todo".to_owned(),
            path: "notes".to_owned(),
            glob: None,
            case_insensitive: true,
            limit: 10,
        })
        .await
        .unwrap();
    let lines: Vec<_> = matches
        .iter()
        .map(|m| (m.line_number, m.line.as_str()))
        .collect();
    assert_eq!(
        (lines, truncated),
        (vec![(2, "TODO one"), (1, "todo two")], false)
    );

    // Larger than one request: split into a write and appends.
    let big: Vec<u8> = (0..9 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    c.write_file("big.bin", big.clone()).await.unwrap();
    assert_eq!(std::fs::read(ws.join("big.bin")).unwrap(), big);
    let (head, size) = c.read_file("big.bin", 0, None).await.unwrap();
    assert_eq!(
        (head.len() as u64, size),
        (8 * 1024 * 1024, big.len() as u64)
    );

    c.guest().make_dir("x/y").await.unwrap();
    c.guest().remove("x", true).await.unwrap();
    let err = c.stat("x").await.unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::NotFound));
    c.stop().await.unwrap();
}

#[tokio::test]
async fn confinement_gives_clear_errors() {
    let s = Setup::new();
    let ro = s.grant("ro", false);
    let rw = s.grant("rw", true);
    let outside = s.folder("outside");
    std::fs::write(outside.join("secret.txt"), "s").unwrap();
    std::fs::write(ro.host_path.join("doc.txt"), "d").unwrap();
    std::os::unix::fs::symlink(&outside, rw.host_path.join("escape")).unwrap();
    let c = s.start(vec![ro.clone(), rw.clone()]).await;

    let err = c
        .read_file("../outside/secret.txt", 0, None)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::OutsideRoots));
    assert_eq!(
        err.to_string(),
        "../outside/secret.txt is outside the folders this session may use"
    );
    let via_link = rw.host_path.join("escape/secret.txt").display().to_string();
    let err = c.read_file(&via_link, 0, None).await.unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::OutsideRoots));
    let err = c
        .write_file(
            &rw.host_path.join("escape/new.txt").display().to_string(),
            b"x".to_vec(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::OutsideRoots));
    assert!(!outside.join("new.txt").exists());

    let doc = ro.host_path.join("doc.txt").display().to_string();
    assert_eq!(c.read_file(&doc, 0, None).await.unwrap().0, b"d");
    let err = c.write_file(&doc, b"changed".to_vec()).await.unwrap_err();
    assert_eq!(code(&err), Some(ErrorCode::ReadOnly));
    assert_eq!(err.to_string(), format!("{doc} is in a read-only folder"));
    assert!(!c.stat(&doc).await.unwrap().writable);
    c.write_file(
        &rw.host_path.join("ok.txt").display().to_string(),
        b"ok".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(rw.host_path.join("ok.txt")).unwrap(), b"ok");
    c.stop().await.unwrap();
}

#[tokio::test]
async fn guest_killed_externally_fails_calls_cleanly() {
    let s = Setup::new();
    let c = s.start(vec![]).await;
    let pidfile = s.base.join("workspace/pid");
    let req = ExecRequest::shell(format!("echo $$ > {}; exec sleep 30", pidfile.display()));
    let mut fut = Box::pin(c.exec(req, None));
    let cmd_pid = tokio::select! {
        r = &mut fut => panic!("ended early: {r:?}"),
        pid = read_pid(&pidfile) => pid,
    };
    let guest_pid = c.guest_pid().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-9", &guest_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let err = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, SandboxError::Disconnected(_)), "{err:?}");
    assert!(!c.guest().is_connected());
    let err = c.stat(".").await.unwrap_err();
    assert!(matches!(err, SandboxError::Disconnected(_)), "{err:?}");
    c.stop().await.unwrap();
    // A SIGKILLed guest cannot clean up after itself; do it here.
    let _ = std::process::Command::new("kill")
        .args(["-9", &cmd_pid.to_string()])
        .status();
}

#[tokio::test]
async fn stop_leaves_no_guest_behind_and_is_idempotent() {
    let s = Setup::new();
    let c = s.start(vec![]).await;
    let pidfile = s.base.join("workspace/pid");
    let guest_pid = c.guest_pid().unwrap();
    let mut fut = Box::pin(c.exec(
        ExecRequest::shell(format!("echo $$ > {}; exec sleep 100", pidfile.display())),
        None,
    ));
    let cmd_pid = tokio::select! {
        r = &mut fut => panic!("ended early: {r:?}"),
        pid = read_pid(&pidfile) => pid,
    };
    c.stop().await.unwrap();
    assert!(wait_dead(guest_pid).await);
    assert!(wait_dead(cmd_pid).await);
    c.stop().await.unwrap();
    drop(fut);
    let err = c.exec(ExecRequest::shell("true"), None).await.unwrap_err();
    assert!(matches!(err, SandboxError::Disconnected(_)), "{err:?}");
}

#[tokio::test]
async fn dropping_the_computer_ends_guest_and_commands() {
    let s = Setup::new();
    let c = s.start(vec![]).await;
    let guest_pid = c.guest_pid().unwrap();
    let pidfile = s.base.join("workspace/pid");
    c.write_file("x", vec![]).await.unwrap();
    let handle = c
        .guest()
        .start_exec(ExecRequest::shell(format!(
            "echo $$ > {}; exec sleep 100",
            pidfile.display()
        )))
        .unwrap();
    let cmd_pid = read_pid(&pidfile).await;
    std::mem::forget(handle);
    drop(c);
    assert!(wait_dead(guest_pid).await);
    assert!(wait_dead(cmd_pid).await);
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn tunnels_are_refused_without_a_connector() {
    let s = Setup::new();
    let port = free_port();
    let c = s.start_with_egress(format!("127.0.0.1:{port}"), None).await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let _ = conn.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    c.stop().await.unwrap();
}

/// Connects every tunnel to a fixed local address.
struct Loopback(std::net::SocketAddr);

#[async_trait]
impl EgressConnector for Loopback {
    async fn connect(&self) -> std::io::Result<Box<dyn AsyncReadWrite + Send + Unpin>> {
        Ok(Box::new(tokio::net::TcpStream::connect(self.0).await?))
    }
}

#[tokio::test]
async fn tunnels_are_relayed_to_the_connector() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let s = Setup::new();
    let port = free_port();
    let c = s
        .start_with_egress(
            format!("127.0.0.1:{port}"),
            Some(Arc::new(Loopback(echo_addr))),
        )
        .await;
    // Two tunnels at once, each echoed back on its own.
    let mut a = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut b = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    a.write_all(b"hello a").await.unwrap();
    b.write_all(b"hello b").await.unwrap();
    let mut buf = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(10), a.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello a");
    tokio::time::timeout(Duration::from_secs(10), b.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello b");
    c.stop().await.unwrap();
}

//! Drives the real `cubicle-guest` binary over its stdin and stdout with raw
//! frames, the way every backend does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cubicle_guest::wire;
use cubicle_protocol::guest::{
    Command, DATA_CHUNK, ErrorCode, ExecRequest, ExecResult, GrepRequest, GuestConfig, GuestFrame,
    HostFrame, MAX_FRAME_LEN, OUTPUT_WINDOW, Op, OpResult, OutputStream, PROTOCOL_VERSION, Root,
    Stdin, TUNNEL_WINDOW,
};
use pretty_assertions::assert_eq;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};

const WAIT: Duration = Duration::from_secs(20);

struct Guest {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl Guest {
    fn spawn() -> Self {
        Self::spawn_with_env(&[])
    }

    fn spawn_with_env(env: &[(&str, &str)]) -> Self {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cubicle-guest"));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    async fn send(&mut self, frame: &HostFrame) {
        wire::write_frame(&mut self.stdin, frame).await.unwrap();
    }

    async fn send_json(&mut self, value: serde_json::Value) {
        wire::write_frame(&mut self.stdin, &value).await.unwrap();
    }

    async fn send_raw(&mut self, body: &[u8]) {
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(body);
        self.stdin.write_all(&buf).await.unwrap();
    }

    async fn recv(&mut self) -> GuestFrame {
        let raw = tokio::time::timeout(WAIT, wire::read_raw_frame(&mut self.stdout))
            .await
            .expect("guest answered in time")
            .unwrap()
            .expect("guest still connected");
        wire::parse_guest_frame(&raw).unwrap()
    }

    async fn hello(&mut self, config: GuestConfig) -> GuestFrame {
        self.send(&HostFrame::Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            config,
        })
        .await;
        self.recv().await
    }

    async fn start(config: GuestConfig) -> Self {
        let mut g = Self::spawn();
        let hello = g.hello(config).await;
        assert!(matches!(hello, GuestFrame::Hello { .. }), "{hello:?}");
        g
    }

    /// Sends a request and returns its result plus any output frames for it.
    async fn call(&mut self, id: u64, op: Op) -> (OpResult, Vec<(OutputStream, Vec<u8>)>) {
        self.send(&HostFrame::Request { id, op }).await;
        self.wait_for(id).await
    }

    async fn wait_for(&mut self, id: u64) -> (OpResult, Vec<(OutputStream, Vec<u8>)>) {
        let mut output = Vec::new();
        loop {
            match self.recv().await {
                GuestFrame::Output {
                    id: i,
                    stream,
                    data,
                } if i == id => {
                    output.push((stream, data.into_vec()));
                    // Passed on, as a host does.
                    self.send(&HostFrame::OutputAck { id, frames: 1 }).await;
                }
                GuestFrame::Response { id: i, result } if i == id => return (result, output),
                GuestFrame::Error {
                    id: Some(i),
                    code,
                    message,
                } if i == id => return (OpResult::Failed { code, message }, output),
                other => panic!("unexpected frame while waiting for {id}: {other:?}"),
            }
        }
    }

    async fn exec(&mut self, id: u64, req: ExecRequest) -> (ExecResult, Vec<u8>, Vec<u8>) {
        let (result, output) = self.call(id, Op::Exec(req)).await;
        let OpResult::Exit(exit) = result else {
            panic!("exec failed: {result:?}");
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        for (stream, data) in output {
            match stream {
                OutputStream::Stdout => out.extend(data),
                OutputStream::Stderr => err.extend(data),
            }
        }
        (exit, out, err)
    }

    async fn ping(&mut self, id: u64) {
        assert_eq!(self.call(id, Op::Ping).await.0, OpResult::Pong);
    }
}

fn config(ws: &Path) -> GuestConfig {
    GuestConfig {
        workspace: ws.display().to_string(),
        env: BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]),
        ..GuestConfig::default()
    }
}

fn failed_code(result: &OpResult) -> ErrorCode {
    match result {
        OpResult::Failed { code, .. } => *code,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap();
    (dir, path)
}

#[tokio::test]
async fn handshake_reports_version_and_capabilities() {
    let (_d, ws) = tempdir();
    let mut g = Guest::spawn();
    match g.hello(config(&ws)).await {
        GuestFrame::Hello {
            version,
            capabilities,
            pid,
            ..
        } => {
            assert_eq!(version, PROTOCOL_VERSION);
            assert_eq!(capabilities, vec!["tunnel".to_owned()]);
            assert_eq!(pid, g.child.id().unwrap());
        }
        other => panic!("{other:?}"),
    }
    g.ping(1).await;
}

#[tokio::test]
async fn version_mismatch_is_refused_and_guest_exits() {
    let mut g = Guest::spawn();
    g.send(&HostFrame::Hello {
        min_version: PROTOCOL_VERSION + 1,
        max_version: PROTOCOL_VERSION + 5,
        config: GuestConfig::default(),
    })
    .await;
    let frame = g.recv().await;
    assert!(
        matches!(
            frame,
            GuestFrame::Error {
                id: None,
                code: ErrorCode::UnsupportedVersion,
                ..
            }
        ),
        "{frame:?}"
    );
    let status = tokio::time::timeout(WAIT, g.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn request_before_hello_is_out_of_order() {
    let (_d, ws) = tempdir();
    let mut g = Guest::spawn();
    let (result, _) = g.call(9, Op::Ping).await;
    assert_eq!(failed_code(&result), ErrorCode::OutOfOrder);
    assert!(matches!(
        g.hello(config(&ws)).await,
        GuestFrame::Hello { .. }
    ));
    g.ping(9).await;
}

#[tokio::test]
async fn garbage_and_unknown_ops_are_bad_frames() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    g.send_raw(b"{not json").await;
    match g.recv().await {
        GuestFrame::Error { id, code, .. } => assert_eq!((id, code), (None, ErrorCode::BadFrame)),
        other => panic!("{other:?}"),
    }
    g.ping(1).await;
    g.send_json(json!({"type": "request", "id": 42, "op": {"op": "format_disk"}}))
        .await;
    match g.recv().await {
        GuestFrame::Error { id, code, .. } => {
            assert_eq!((id, code), (Some(42), ErrorCode::BadFrame));
        }
        other => panic!("{other:?}"),
    }
    g.ping(2).await;
}

#[tokio::test]
async fn oversize_frame_is_skipped_and_guest_stays_alive() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    let len = MAX_FRAME_LEN + 1;
    let mut stdin = g.stdin;
    // Write on another task: the pipe fills up long before 16 MiB are sent.
    let writer = tokio::spawn(async move {
        stdin.write_all(&len.to_be_bytes()).await.unwrap();
        let chunk = vec![b' '; 1 << 20];
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            stdin.write_all(&chunk[..n]).await.unwrap();
            left -= n;
        }
        stdin
    });
    g.stdin = {
        let frame = tokio::time::timeout(WAIT, wire::read_frame::<GuestFrame, _>(&mut g.stdout))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                frame,
                GuestFrame::Error {
                    id: None,
                    code: ErrorCode::FrameTooLarge,
                    ..
                }
            ),
            "{frame:?}"
        );
        writer.await.unwrap()
    };
    g.ping(1).await;
}

#[tokio::test]
async fn duplicate_in_flight_id_is_refused() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    g.send(&HostFrame::Request {
        id: 1,
        op: Op::Exec(ExecRequest::shell("sleep 0.5")),
    })
    .await;
    g.send(&HostFrame::Request {
        id: 1,
        op: Op::Ping,
    })
    .await;
    match g.recv().await {
        GuestFrame::Error { id, code, .. } => {
            assert_eq!((id, code), (Some(1), ErrorCode::DuplicateId));
        }
        other => panic!("{other:?}"),
    }
    let (result, _) = g.wait_for(1).await;
    assert!(
        matches!(result, OpResult::Exit(ref r) if r.success()),
        "{result:?}"
    );
}

#[tokio::test]
async fn exec_streams_output_in_order_with_exit_code() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    let (exit, out, err) = g
        .exec(
            1,
            ExecRequest::shell("echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three; exit 3"),
        )
        .await;
    assert_eq!(String::from_utf8(out).unwrap(), "one\nthree\n");
    assert_eq!(String::from_utf8(err).unwrap(), "two\n");
    assert_eq!(
        (exit.code, exit.signal, exit.timed_out),
        (Some(3), None, false)
    );

    let (exit, out, _) = g.exec(2, ExecRequest::argv(["pwd"])).await;
    assert!(exit.success());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{}\n", ws.display())
    );

    // Large output arrives whole, in chunks no bigger than DATA_CHUNK.
    let (result, output) = g
        .call(3, Op::Exec(ExecRequest::shell("head -c 300000 /dev/zero")))
        .await;
    assert!(matches!(result, OpResult::Exit(ref r) if r.success()));
    assert!(
        output
            .iter()
            .all(|(_, d)| d.len() <= cubicle_protocol::guest::DATA_CHUNK)
    );
    assert_eq!(output.iter().map(|(_, d)| d.len()).sum::<usize>(), 300_000);
}

#[tokio::test]
async fn exec_reports_usage_and_spawn_failures() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    let (exit, _, _) = g
        .exec(
            1,
            ExecRequest::shell("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"),
        )
        .await;
    assert!(exit.success());
    assert!(exit.max_rss_kib > 0, "{exit:?}");
    let (result, _) = g
        .call(2, Op::Exec(ExecRequest::argv(["no-such-program-xyz"])))
        .await;
    assert_eq!(
        result,
        OpResult::Failed {
            code: ErrorCode::SpawnFailed,
            message: "command not found: no-such-program-xyz".to_owned()
        }
    );
    let mut req = ExecRequest::argv(["true"]);
    req.cwd = Some("/no/such/dir".to_owned());
    let (result, _) = g.call(3, Op::Exec(req)).await;
    assert_eq!(failed_code(&result), ErrorCode::NotFound);
}

#[tokio::test]
async fn signal_reaches_the_command() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    g.send(&HostFrame::Request {
        id: 5,
        op: Op::Exec(ExecRequest::argv(["sleep", "100"])),
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    g.send(&HostFrame::Request {
        id: 6,
        op: Op::Signal {
            exec_id: 5,
            signal: 15,
        },
    })
    .await;
    let mut results = BTreeMap::new();
    while results.len() < 2 {
        match g.recv().await {
            GuestFrame::Response { id, result } => {
                results.insert(id, result);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(results[&6], OpResult::Done);
    let OpResult::Exit(exit) = &results[&5] else {
        panic!("{results:?}");
    };
    assert_eq!((exit.code, exit.signal), (None, Some(15)));
    let (result, _) = g
        .call(
            7,
            Op::Signal {
                exec_id: 5,
                signal: 9,
            },
        )
        .await;
    assert_eq!(failed_code(&result), ErrorCode::NoSuchProcess);
}

/// Whether a process is gone (or a zombie waiting for its reaper).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_dead(pid: u32) -> bool {
    for _ in 0..100 {
        if is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    let mut req = ExecRequest::shell("sleep 100 & echo $!; sleep 100");
    req.timeout_ms = Some(500);
    let (exit, out, _) = g.exec(1, req).await;
    assert!(exit.timed_out, "{exit:?}");
    assert_eq!(exit.signal, Some(9));
    let grandchild: u32 = String::from_utf8(out).unwrap().trim().parse().unwrap();
    assert!(
        wait_dead(grandchild).await,
        "background sleep {grandchild} survived"
    );
}

#[tokio::test]
async fn leftover_background_jobs_do_not_hang_the_command() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    let (exit, out, _) = g.exec(1, ExecRequest::shell("sleep 100 & echo $!")).await;
    assert!(exit.success());
    let pid: u32 = String::from_utf8(out).unwrap().trim().parse().unwrap();
    assert!(wait_dead(pid).await);
}

#[tokio::test]
async fn stdin_pipe_and_bytes() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    let mut req = ExecRequest::argv(["cat"]);
    req.stdin = Stdin::Pipe;
    g.send(&HostFrame::Request {
        id: 10,
        op: Op::Exec(req),
    })
    .await;
    let mut stdout = Vec::new();
    for (id, data, eof) in [(11, "hello ", false), (12, "world", true)] {
        g.send(&HostFrame::Request {
            id,
            op: Op::WriteStdin {
                exec_id: 10,
                data: data.into(),
                eof,
            },
        })
        .await;
        loop {
            match g.recv().await {
                GuestFrame::Output { id: 10, data, .. } => stdout.extend(data.into_vec()),
                GuestFrame::Response { id: i, result } if i == id => {
                    assert_eq!(result, OpResult::Done);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let (result, output) = g.wait_for(10).await;
    assert!(
        matches!(result, OpResult::Exit(ref r) if r.success()),
        "{result:?}"
    );
    stdout.extend(output.into_iter().flat_map(|(_, d)| d));
    assert_eq!(String::from_utf8(stdout).unwrap(), "hello world");

    let mut req = ExecRequest::argv(["wc", "-c"]);
    req.stdin = Stdin::Bytes("12345".into());
    let (_, out, _) = g.exec(13, req).await;
    assert_eq!(String::from_utf8(out).unwrap().trim(), "5");
}

#[tokio::test]
async fn max_output_bytes_truncates_but_lets_the_command_finish() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    let mut req = ExecRequest::shell("head -c 200000 /dev/zero; echo done >&2; exit 4");
    req.max_output_bytes = Some(1000);
    let (exit, out, err) = g.exec(1, req).await;
    assert_eq!(out.len() + err.len(), 1000);
    assert!(exit.output_truncated);
    assert_eq!(exit.code, Some(4));
}

#[tokio::test]
async fn environment_is_only_what_the_host_gives() {
    let (_d, ws) = tempdir();
    let mut g = Guest::spawn_with_env(&[("GUEST_SECRET", "leaked")]);
    let mut cfg = config(&ws);
    cfg.env.insert("BASE".to_owned(), "1".to_owned());
    assert!(matches!(g.hello(cfg).await, GuestFrame::Hello { .. }));
    let mut req = ExecRequest::argv(["env"]);
    req.env.insert("EXTRA".to_owned(), "2".to_owned());
    let (_, out, _) = g.exec(1, req).await;
    let mut lines: Vec<_> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(lines, vec!["BASE=1", "EXTRA=2", "PATH=/usr/bin:/bin"]);
}

#[tokio::test]
async fn programs_on_path_keep_their_name_and_execvp_rules() {
    let (_d, ws) = tempdir();
    let bin = ws.join("bin");
    std::fs::create_dir(&bin).unwrap();
    // No `#!` line: execvp runs it with /bin/sh, and so must the guest.
    std::fs::write(bin.join("bare-script"), "echo bare ran\n").unwrap();
    std::fs::set_permissions(
        bin.join("bare-script"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let mut g = Guest::start(config(&ws)).await;
    // Found on PATH: argv[0] is the name as given, not the resolved path.
    let (exit, out, _) = g
        .exec(1, ExecRequest::argv(["cat", "/proc/self/cmdline"]))
        .await;
    assert_eq!(exit.code, Some(0));
    assert_eq!(out, b"cat\0/proc/self/cmdline\0");
    let mut req = ExecRequest::argv(["bare-script"]);
    req.env.insert(
        "PATH".to_owned(),
        format!("{}:/usr/bin:/bin", bin.display()),
    );
    let (exit, out, err) = g.exec(2, req).await;
    assert_eq!(exit.code, Some(0), "{}", String::from_utf8_lossy(&err));
    assert_eq!(String::from_utf8_lossy(&out).trim(), "bare ran");
}

#[tokio::test]
async fn children_do_not_inherit_the_protocol_channel() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    // fd 0 is /dev/null, 1 and 2 are the output pipes, and nothing else is open.
    let (_, out, _) = g
        .exec(
            1,
            ExecRequest::shell("ls /proc/self/fd | sort -n | tr '\\n' ' '"),
        )
        .await;
    let fds = String::from_utf8(out).unwrap();
    // `ls` sees its own directory handle (3) too.
    assert_eq!(fds.trim(), "0 1 2 3");
}

fn confined(base: &Path) -> GuestConfig {
    let ws = base.join("ws");
    let ro = base.join("ro");
    for d in [&ws, &ro, &base.join("outside")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(base.join("outside/secret"), "s").unwrap();
    std::fs::write(ro.join("doc.txt"), "read me").unwrap();
    let mut cfg = config(&ws);
    cfg.roots = vec![
        Root {
            path: ws.display().to_string(),
            writable: true,
        },
        Root {
            path: ro.display().to_string(),
            writable: false,
        },
    ];
    cfg
}

#[tokio::test]
async fn confinement_refuses_escapes_and_read_only_writes() {
    let (_d, base) = tempdir();
    let mut g = Guest::start(confined(&base)).await;
    let read = |path: &str| Op::ReadFile {
        path: path.to_owned(),
        offset: 0,
        limit: None,
    };
    let (r, _) = g.call(1, read("../outside/secret")).await;
    assert_eq!(
        r,
        OpResult::Failed {
            code: ErrorCode::OutsideRoots,
            message: "../outside/secret is outside the folders this session may use".to_owned()
        }
    );
    let abs = base.join("outside/secret").display().to_string();
    assert_eq!(
        failed_code(&g.call(2, read(&abs)).await.0),
        ErrorCode::OutsideRoots
    );

    std::os::unix::fs::symlink(base.join("outside"), base.join("ws/link")).unwrap();
    assert_eq!(
        failed_code(&g.call(3, read("link/secret")).await.0),
        ErrorCode::OutsideRoots
    );
    let write = |path: &str| Op::WriteFile {
        path: path.to_owned(),
        data: "x".into(),
        append: false,
        create_parents: true,
        mode: None,
    };
    assert_eq!(
        failed_code(&g.call(4, write("link/new")).await.0),
        ErrorCode::OutsideRoots
    );
    assert!(!base.join("outside/new").exists());

    let ro_doc = base.join("ro/doc.txt").display().to_string();
    let (r, _) = g.call(5, read(&ro_doc)).await;
    assert!(matches!(r, OpResult::FileData { .. }), "{r:?}");
    assert_eq!(
        failed_code(&g.call(6, write(&ro_doc)).await.0),
        ErrorCode::ReadOnly
    );
    let rm = Op::Remove {
        path: ro_doc.clone(),
        recursive: false,
    };
    assert_eq!(failed_code(&g.call(7, rm).await.0), ErrorCode::ReadOnly);
    assert_eq!(std::fs::read_to_string(&ro_doc).unwrap(), "read me");

    // Removing the link removes the link, not the folder it points to.
    let rm = Op::Remove {
        path: "link".to_owned(),
        recursive: true,
    };
    assert_eq!(g.call(8, rm).await.0, OpResult::Done);
    assert!(base.join("outside/secret").exists());

    let mut req = ExecRequest::argv(["true"]);
    req.cwd = Some(base.join("outside").display().to_string());
    assert_eq!(
        failed_code(&g.call(9, Op::Exec(req)).await.0),
        ErrorCode::OutsideRoots
    );
    assert_eq!(
        failed_code(
            &g.call(
                10,
                Op::MakeDir {
                    path: "../made".to_owned()
                }
            )
            .await
            .0
        ),
        ErrorCode::OutsideRoots
    );
}

#[tokio::test]
async fn files_read_write_stat_list_remove() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    let script = ws.join("run.sh");
    std::fs::write(&script, "old").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
    let write = |path: &str, data: &str, append: bool, mode: Option<u32>| Op::WriteFile {
        path: path.to_owned(),
        data: data.into(),
        append,
        create_parents: true,
        mode,
    };
    assert_eq!(
        g.call(1, write("run.sh", "new contents", false, None))
            .await
            .0,
        OpResult::Done
    );
    assert_eq!(std::fs::read_to_string(&script).unwrap(), "new contents");
    let mode = std::fs::metadata(&script).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750);
    assert_eq!(
        g.call(2, write("run.sh", "!", true, None)).await.0,
        OpResult::Done
    );
    assert_eq!(
        g.call(3, write("deep/er/new.txt", "n", false, Some(0o600)))
            .await
            .0,
        OpResult::Done
    );
    let mode = std::fs::metadata(ws.join("deep/er/new.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let (r, _) = g
        .call(
            4,
            Op::ReadFile {
                path: "run.sh".to_owned(),
                offset: 4,
                limit: Some(8),
            },
        )
        .await;
    assert_eq!(
        r,
        OpResult::FileData {
            data: "contents".into(),
            size: 13
        }
    );
    let (r, _) = g
        .call(
            5,
            Op::Stat {
                path: "run.sh".to_owned(),
            },
        )
        .await;
    match r {
        OpResult::Stat { stat: s } => assert_eq!((s.size, s.mode, s.writable), (13, 0o750, true)),
        other => panic!("{other:?}"),
    }
    let (r, _) = g
        .call(
            6,
            Op::ListDir {
                path: ".".to_owned(),
            },
        )
        .await;
    match r {
        OpResult::Entries { entries } => {
            let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names, vec!["deep", "run.sh"]);
        }
        other => panic!("{other:?}"),
    }
    let (r, _) = g
        .call(
            7,
            Op::ReadFile {
                path: "deep".to_owned(),
                offset: 0,
                limit: None,
            },
        )
        .await;
    assert_eq!(failed_code(&r), ErrorCode::IsDirectory);
    let (r, _) = g
        .call(
            8,
            Op::Stat {
                path: "missing".to_owned(),
            },
        )
        .await;
    assert_eq!(failed_code(&r), ErrorCode::NotFound);
    let (r, _) = g
        .call(
            9,
            Op::Remove {
                path: "deep".to_owned(),
                recursive: false,
            },
        )
        .await;
    assert_eq!(failed_code(&r), ErrorCode::Io);
    let (r, _) = g
        .call(
            10,
            Op::Remove {
                path: "deep".to_owned(),
                recursive: true,
            },
        )
        .await;
    assert_eq!(r, OpResult::Done);
    assert_eq!(
        g.call(
            11,
            Op::MakeDir {
                path: "a/b/c".to_owned()
            }
        )
        .await
        .0,
        OpResult::Done
    );
    assert!(ws.join("a/b/c").is_dir());
    // No temporary files are left behind by atomic writes.
    let names: Vec<_> = std::fs::read_dir(&ws)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains("cubicle")), "{names:?}");
}

#[tokio::test]
async fn glob_is_newest_first_and_grep_finds_lines() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    for (i, name) in [
        "old.txt",
        "sub/mid.txt",
        "sub/new.txt",
        ".git/x.txt",
        "a.csv",
    ]
    .iter()
    .enumerate()
    {
        let p = ws.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("line one\nTODO item {i}\nend\n")).unwrap();
        let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + i as u64);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    std::fs::write(ws.join("bin.dat"), b"TODO\0binary").unwrap();
    let glob = |pattern: &str, limit| Op::Glob {
        root: ws.display().to_string(),
        pattern: pattern.to_owned(),
        limit,
    };
    let p = |n: &str| ws.join(n).display().to_string();
    assert_eq!(
        g.call(1, glob("**/*.txt", 10)).await.0,
        OpResult::Paths {
            paths: vec![p("sub/new.txt"), p("sub/mid.txt"), p("old.txt")],
            truncated: false
        }
    );
    assert_eq!(
        g.call(2, glob("*.txt", 10)).await.0,
        OpResult::Paths {
            paths: vec![p("old.txt")],
            truncated: false
        }
    );
    assert_eq!(
        g.call(3, glob("**/*.txt", 1)).await.0,
        OpResult::Paths {
            paths: vec![p("sub/new.txt")],
            truncated: true
        }
    );
    let grep = |pattern: &str, glob: Option<&str>, ci: bool, limit| {
        Op::Grep(GrepRequest {
            pattern: pattern.to_owned(),
            path: ".".to_owned(),
            glob: glob.map(str::to_owned),
            case_insensitive: ci,
            limit,
        })
    };
    let (r, _) = g.call(4, grep("todo", Some("**/*.txt"), true, 10)).await;
    let OpResult::Matches { matches, truncated } = r else {
        panic!("{r:?}");
    };
    assert!(!truncated);
    let found: Vec<_> = matches
        .iter()
        .map(|m| (m.path.clone(), m.line_number, m.line.clone()))
        .collect();
    assert_eq!(
        found,
        vec![
            (p("old.txt"), 2, "TODO item 0".to_owned()),
            (p("sub/mid.txt"), 2, "TODO item 1".to_owned()),
            (p("sub/new.txt"), 2, "TODO item 2".to_owned()),
        ]
    );
    let (r, _) = g.call(5, grep("todo", None, false, 10)).await;
    assert_eq!(
        r,
        OpResult::Matches {
            matches: vec![],
            truncated: false
        }
    );
    let (r, _) = g.call(6, grep("TODO", None, false, 2)).await;
    let OpResult::Matches { matches, truncated } = r else {
        panic!("{r:?}");
    };
    assert_eq!((matches.len(), truncated), (2, true));
    assert!(matches.iter().all(|m| !m.path.contains("bin.dat")));
    let (r, _) = g.call(7, grep("(", None, false, 2)).await;
    assert_eq!(failed_code(&r), ErrorCode::InvalidInput);
}

#[tokio::test]
async fn shutdown_kills_commands_and_exits_cleanly() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    let pidfile = ws.join("pid");
    g.send(&HostFrame::Request {
        id: 1,
        op: Op::Exec(ExecRequest {
            command: Command::Shell(format!("echo $$ > {}; exec sleep 100", pidfile.display())),
            ..ExecRequest::shell("")
        }),
    })
    .await;
    let pid = loop {
        if let Ok(s) = std::fs::read_to_string(&pidfile)
            && let Ok(pid) = s.trim().parse::<u32>()
        {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    g.send(&HostFrame::Request {
        id: 2,
        op: Op::Shutdown,
    })
    .await;
    loop {
        match g.recv().await {
            GuestFrame::Response { id: 2, result } => {
                assert_eq!(result, OpResult::Done);
                break;
            }
            GuestFrame::Response { id: 1, .. } => {}
            other => panic!("{other:?}"),
        }
    }
    let status = tokio::time::timeout(WAIT, g.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(wait_dead(pid).await);
}

#[tokio::test]
async fn host_hang_up_kills_commands() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    let pidfile = ws.join("pid");
    g.send(&HostFrame::Request {
        id: 1,
        op: Op::Exec(ExecRequest::shell(format!(
            "sleep 100 & echo $! > {}; wait",
            pidfile.display()
        ))),
    })
    .await;
    let pid = loop {
        if let Ok(s) = std::fs::read_to_string(&pidfile)
            && let Ok(pid) = s.trim().parse::<u32>()
        {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(g.stdin);
    let status = tokio::time::timeout(WAIT, g.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(wait_dead(pid).await);
}

#[tokio::test]
async fn egress_connections_become_tunnels() {
    let (_d, ws) = tempdir();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config(&ws);
    cfg.egress_listen = Some(format!("127.0.0.1:{port}"));
    let mut g = Guest::start(cfg).await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tunnel = match g.recv().await {
        GuestFrame::TunnelOpen { tunnel } => tunnel,
        other => panic!("{other:?}"),
    };
    conn.write_all(b"ping").await.unwrap();
    match g.recv().await {
        GuestFrame::TunnelData { tunnel: t, data } => {
            assert_eq!((t, data.into_vec()), (tunnel, b"ping".to_vec()));
        }
        other => panic!("{other:?}"),
    }
    g.send(&HostFrame::TunnelData {
        tunnel,
        data: "pong".into(),
    })
    .await;
    let mut buf = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut conn, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf, b"pong");
    g.send(&HostFrame::TunnelClose {
        tunnel,
        reason: Some("done".to_owned()),
    })
    .await;
    let mut rest = Vec::new();
    let n = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut rest),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(n, 0);
}

/// Opens an egress tunnel into a fresh guest: the guest, the in-cubicle
/// connection and the tunnel's id.
async fn open_tunnel(ws: &Path) -> (Guest, tokio::net::TcpStream, u64) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = config(ws);
    cfg.egress_listen = Some(format!("127.0.0.1:{port}"));
    let mut g = Guest::start(cfg).await;
    let conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tunnel = match g.recv().await {
        GuestFrame::TunnelOpen { tunnel } => tunnel,
        other => panic!("{other:?}"),
    };
    (g, conn, tunnel)
}

/// Receives tunnel data until `want` bytes have come; panics on more.
async fn receive_tunnel_bytes(g: &mut Guest, tunnel: u64, want: u64) {
    let mut got = 0;
    while got < want {
        match g.recv().await {
            GuestFrame::TunnelData { tunnel: t, data } if t == tunnel => {
                got += data.into_vec().len() as u64;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, want, "the guest sent past the window");
}

#[tokio::test]
async fn a_tunnel_sends_no_more_than_its_window_until_the_host_acknowledges() {
    let (_d, ws) = tempdir();
    let (mut g, conn, tunnel) = open_tunnel(&ws).await;
    // The cubicle side writes three windows' worth; the host acknowledges
    // nothing at first.
    let total = 3 * TUNNEL_WINDOW;
    let (mut conn_rd, mut conn_wr) = conn.into_split();
    let writer = tokio::spawn(async move {
        conn_wr.write_all(&vec![7u8; total as usize]).await.unwrap();
        conn_wr
    });
    receive_tunnel_bytes(&mut g, tunnel, TUNNEL_WINDOW).await;
    // The window is full: nothing more comes while it stays unacknowledged,
    // however long the host waits (here, a while).
    let more = tokio::time::timeout(
        Duration::from_millis(300),
        wire::read_raw_frame(&mut g.stdout),
    )
    .await;
    assert!(more.is_err(), "a frame came with the window full: {more:?}");
    // Acknowledging part of it lets exactly that much more through.
    g.send(&HostFrame::TunnelAck {
        tunnel,
        bytes: TUNNEL_WINDOW / 2,
    })
    .await;
    receive_tunnel_bytes(&mut g, tunnel, TUNNEL_WINDOW / 2).await;
    // Acknowledging more than is out opens the window by no more than a
    // window: the rest comes in two more rounds.
    g.send(&HostFrame::TunnelAck {
        tunnel,
        bytes: 10 * TUNNEL_WINDOW,
    })
    .await;
    receive_tunnel_bytes(&mut g, tunnel, TUNNEL_WINDOW).await;
    g.send(&HostFrame::TunnelAck {
        tunnel,
        bytes: TUNNEL_WINDOW,
    })
    .await;
    receive_tunnel_bytes(&mut g, tunnel, TUNNEL_WINDOW / 2).await;
    let _conn_wr = writer.await.unwrap();

    // The other way: the guest acknowledges host bytes once it has written
    // them to the in-cubicle socket.
    g.send(&HostFrame::TunnelData {
        tunnel,
        data: "pong".into(),
    })
    .await;
    let mut buf = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut conn_rd, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf, b"pong");
    match g.recv().await {
        GuestFrame::TunnelAck { tunnel: t, bytes } => assert_eq!((t, bytes), (tunnel, 4)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_half_closed_tunnel_still_carries_the_answer() {
    let (_d, ws) = tempdir();
    let (mut g, conn, tunnel) = open_tunnel(&ws).await;
    let (mut conn_rd, mut conn_wr) = conn.into_split();
    // The in-cubicle client sends its request and half-closes, as `nc -N`
    // or an upload that ends with a shutdown does.
    conn_wr.write_all(b"request").await.unwrap();
    conn_wr.shutdown().await.unwrap();
    match g.recv().await {
        GuestFrame::TunnelData { tunnel: t, data } => {
            assert_eq!((t, data.into_vec()), (tunnel, b"request".to_vec()));
        }
        other => panic!("{other:?}"),
    }
    match g.recv().await {
        GuestFrame::TunnelEof { tunnel: t } => assert_eq!(t, tunnel),
        other => panic!("{other:?}"),
    }
    // The answer still reaches the client, then the upstream's own end.
    g.send(&HostFrame::TunnelData {
        tunnel,
        data: "answer".into(),
    })
    .await;
    g.send(&HostFrame::TunnelEof { tunnel }).await;
    let mut answer = Vec::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut conn_rd, &mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(answer, b"answer");
    // Both ways done: the guest ends the tunnel.
    match g.recv().await {
        GuestFrame::TunnelAck { tunnel: t, bytes } => assert_eq!((t, bytes), (tunnel, 6)),
        other => panic!("{other:?}"),
    }
    match g.recv().await {
        GuestFrame::TunnelClose { tunnel: t } => assert_eq!(t, tunnel),
        other => panic!("{other:?}"),
    }
}

/// Receives `frames` output frames of request `id` and returns their bytes;
/// panics on any other frame.
async fn receive_output(g: &mut Guest, id: u64, frames: u64) -> u64 {
    let mut bytes = 0;
    for _ in 0..frames {
        match g.recv().await {
            GuestFrame::Output { id: i, data, .. } if i == id => {
                bytes += data.into_vec().len() as u64;
            }
            other => panic!("{other:?}"),
        }
    }
    bytes
}

/// Asserts that the guest sends nothing for a while (its window is full).
async fn nothing_comes(g: &mut Guest) {
    let more = tokio::time::timeout(
        Duration::from_millis(300),
        wire::read_raw_frame(&mut g.stdout),
    )
    .await;
    assert!(more.is_err(), "a frame came with the window full: {more:?}");
}

#[tokio::test]
async fn command_output_stops_at_its_window_until_the_host_acknowledges() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    // More than the two windows this test lets through, even when every
    // frame is a full chunk.
    let total = 4 * OUTPUT_WINDOW * DATA_CHUNK as u64;
    g.send(&HostFrame::Request {
        id: 1,
        op: Op::Exec(ExecRequest::shell(format!("head -c {total} /dev/zero"))),
    })
    .await;
    let mut got = receive_output(&mut g, 1, OUTPUT_WINDOW).await;
    nothing_comes(&mut g).await;
    // Acknowledging more than is out opens the window by one window only.
    g.send(&HostFrame::OutputAck {
        id: 1,
        frames: 100 * OUTPUT_WINDOW,
    })
    .await;
    got += receive_output(&mut g, 1, OUTPUT_WINDOW).await;
    nothing_comes(&mut g).await;
    // Then as a host does, to the end: everything arrives, in order.
    g.send(&HostFrame::OutputAck {
        id: 1,
        frames: OUTPUT_WINDOW,
    })
    .await;
    let (result, output) = g.wait_for(1).await;
    let OpResult::Exit(exit) = result else {
        panic!("{result:?}");
    };
    assert_eq!(exit.code, Some(0));
    assert!(!exit.output_truncated);
    got += output.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
    assert_eq!(got, total);
}

#[tokio::test]
async fn output_written_while_the_window_is_closed_comes_in_larger_frames() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    // Two thousand one-byte writes, then a mark that they are all done.
    let script = "i=0; while [ $i -lt 2000 ]; do printf x; i=$((i+1)); done; : > done";
    g.send(&HostFrame::Request {
        id: 1,
        op: Op::Exec(ExecRequest::shell(script)),
    })
    .await;
    // The host acknowledges nothing until the command has written
    // everything.
    let deadline = std::time::Instant::now() + WAIT;
    while !ws.join("done").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the script never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Meanwhile the guest sent at most a window; how much of it depends on
    // how the pipe gathered the writes, and the window may not have filled.
    let mut got = 0;
    let mut ended = None;
    for _ in 0..OUTPUT_WINDOW {
        match g.recv().await {
            GuestFrame::Output { id: 1, data, .. } => got += data.into_vec().len() as u64,
            GuestFrame::Response { id: 1, result } => {
                ended = Some(result);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let (result, output) = match ended {
        Some(result) => (result, Vec::new()),
        None => {
            g.send(&HostFrame::OutputAck {
                id: 1,
                frames: OUTPUT_WINDOW,
            })
            .await;
            g.wait_for(1).await
        }
    };
    assert!(matches!(result, OpResult::Exit(_)), "{result:?}");
    got += output.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
    assert_eq!(got, 2000);
    // What waited for the window was read into one chunk, not kept as
    // two thousand frames.
    assert!(
        output.len() as u64 <= OUTPUT_WINDOW,
        "{} frames after the window reopened",
        output.len()
    );
}

#[tokio::test]
async fn output_the_host_stops_is_dropped_and_the_command_finishes() {
    let (_d, ws) = tempdir();
    let mut g = Guest::start(config(&ws)).await;
    g.send(&HostFrame::Request {
        id: 1,
        op: Op::Exec(ExecRequest::shell(
            "head -c 8388608 /dev/zero; echo end >&2",
        )),
    })
    .await;
    receive_output(&mut g, 1, OUTPUT_WINDOW).await;
    nothing_comes(&mut g).await;
    // No acknowledgement ever comes; the host says it wants no more.
    g.send(&HostFrame::OutputStop { id: 1 }).await;
    match g.recv().await {
        GuestFrame::Response {
            id: 1,
            result: OpResult::Exit(exit),
        } => assert_eq!(exit.code, Some(0)),
        other => panic!("{other:?}"),
    }
    g.ping(2).await;
}

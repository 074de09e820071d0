//! The jail backend doing its ordinary job: commands run, the environment
//! is the session's, grants and the workspace behave as granted, several
//! jails coexist, and ending a jail — by `stop` or by the guest dying —
//! leaves nothing behind and is reported clearly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jail_common;

use cubicle_protocol::guest::ExecRequest;
use cubicle_sandbox::jail::JailComputer;
use cubicle_sandbox::{Computer, Grant, SandboxError};
use pretty_assertions::assert_eq;

async fn sh(jail: &dyn Computer, line: &str) -> (String, Option<i32>) {
    let mut req = ExecRequest::shell(line);
    req.timeout_ms = Some(20_000);
    let out = jail.exec(req, None).await.unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        out.result.code,
    )
}

#[tokio::test]
async fn runs_commands_with_a_scrubbed_environment() {
    require_jail!();
    let dir = tempfile::tempdir().unwrap();
    let jail = jail_common::start(dir.path(), vec![]).await;
    let info = jail.info();
    assert_eq!((info.backend.as_str(), info.isolated), ("jail", true));
    assert_eq!(info.workspace, "/workspace");
    assert!(
        jail.guest().info().pid <= 2,
        "guest pid {}",
        jail.guest().info().pid
    );

    assert_eq!(
        sh(&jail, "echo hello").await,
        ("hello\n".to_owned(), Some(0))
    );
    assert_eq!(sh(&jail, "hostname").await.0, "cubicle\n");
    assert_eq!(sh(&jail, "pwd").await.0, "/workspace\n");
    let (env, _) = sh(&jail, "env | sort").await;
    let keys: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert_eq!(
        keys,
        [
            "HOME",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "LANG",
            "NO_PROXY",
            "PATH",
            "PWD",
            "TMPDIR",
            "http_proxy",
            "https_proxy",
            "no_proxy"
        ]
    );
    assert!(env.contains("HTTP_PROXY=http://127.0.0.1:3128\n"), "{env}");
    // Loopback is up: a server and a client inside can talk.
    let (out, _) = sh(
        &jail,
        "python3 -c \"import socket\ns=socket.socket();s.bind(('127.0.0.1',0));s.listen()\nc=socket.create_connection(s.getsockname());print('loopback ok')\"",
    )
    .await;
    assert_eq!(out, "loopback ok\n");
    // The egress listener is there, but the host refuses the tunnel.
    let (out, _) = sh(
        &jail,
        "curl -sS -m 5 -o /dev/null -w '%{http_code}' http://example.com/ 2>&1; echo \" exit=$?\"",
    )
    .await;
    assert!(!out.starts_with("200"), "{out}");
    assert!(
        !out.ends_with(" exit=0\n"),
        "curl through the proxy must fail: {out}"
    );
    jail.stop().await.unwrap();
}

#[tokio::test]
async fn grants_and_workspace_behave_as_granted() {
    require_jail!();
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    let rw = dir.path().join("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("in.txt"), "read me\n").unwrap();
    let grants = vec![
        Grant {
            host_path: ro.clone(),
            name: "ro".into(),
            writable: false,
        },
        Grant {
            host_path: rw.clone(),
            name: "rw".into(),
            writable: true,
        },
    ];
    let ws = dir.path().join("ws");
    let jail = jail_common::start(&ws, grants).await;
    let paths: Vec<_> = jail
        .info()
        .grants
        .iter()
        .map(|g| (g.path.as_str(), g.writable))
        .collect();
    assert_eq!(paths, [("/mnt/ro", false), ("/mnt/rw", true)]);

    assert_eq!(sh(&jail, "cat /mnt/ro/in.txt").await.0, "read me\n");
    let (out, code) = sh(&jail, "echo x > /mnt/ro/in.txt").await;
    assert_ne!(code, Some(0));
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(
        std::fs::read_to_string(ro.join("in.txt")).unwrap(),
        "read me\n"
    );

    assert_eq!(
        sh(&jail, "echo made > /mnt/rw/out.txt && echo ok").await.0,
        "ok\n"
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("out.txt")).unwrap(),
        "made\n"
    );
    assert_eq!(
        sh(&jail, "echo ws > /workspace/w.txt && echo ok").await.0,
        "ok\n"
    );
    assert_eq!(std::fs::read_to_string(ws.join("w.txt")).unwrap(), "ws\n");
    jail.write_file("/workspace/op.txt", b"via op".to_vec())
        .await
        .unwrap();
    assert_eq!(std::fs::read(ws.join("op.txt")).unwrap(), b"via op");
    assert!(
        jail.write_file("/mnt/ro/op.txt", b"no".to_vec())
            .await
            .is_err()
    );
    jail.stop().await.unwrap();
}

#[tokio::test]
async fn several_jails_run_at_once() {
    require_jail!();
    let dir = tempfile::tempdir().unwrap();
    let starts = (0..3).map(|i| {
        let ws = dir.path().join(format!("ws{i}"));
        async move { jail_common::start(&ws, vec![]).await }
    });
    let jails = futures_join_all(starts).await;
    for (i, jail) in jails.iter().enumerate() {
        assert_eq!(
            sh(jail, &format!("echo {i} > /workspace/n; cat /workspace/n"))
                .await
                .0,
            format!("{i}\n")
        );
    }
    for jail in &jails {
        jail.stop().await.unwrap();
    }
}

async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.collect();
    let mut out = Vec::new();
    for f in handles {
        out.push(f.await);
    }
    out
}

/// Pids of host processes whose PID namespace is `ns`.
fn processes_in_pidns(ns: &std::path::Path) -> Vec<String> {
    let Ok(target) = std::fs::read_link(ns) else {
        return vec![];
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| std::fs::read_link(e.path().join("ns/pid")).ok().as_ref() == Some(&target))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn stop_leaves_no_process_behind() {
    require_jail!();
    let dir = tempfile::tempdir().unwrap();
    let jail = jail_common::start(dir.path(), vec![]).await;
    // A background process that would outlive its command if it could.
    sh(
        &jail,
        "setsid sleep 600 >/dev/null 2>&1 < /dev/null & sleep 0.5; echo started",
    )
    .await;
    let pid = jail.pid1();
    let ns_link = std::path::PathBuf::from(format!("/proc/{pid}/ns/pid_for_children"));
    let ns = std::fs::read_link(&ns_link).unwrap();
    let before = processes_in_pidns(&ns_link).len();
    assert!(before >= 2, "the guest (PID 1) and the sleep: {before}");
    jail.stop().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "PID 1 ({pid}) still there"
    );
    // No process anywhere is still in the jail's PID namespace.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| std::fs::read_link(e.path().join("ns/pid")).ok().as_ref() == Some(&ns))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

/// Set in the copy of this test binary that `the_jail_dies_with_its_host`
/// starts and kills.
const KILLED_HOST_ENV: &str = "CUBICLE_TEST_KILLED_HOST";

/// Not a test on its own: in the copy started by
/// `the_jail_dies_with_its_host`, starts a jail, prints its PID 1 and waits
/// to be killed.
#[tokio::test]
async fn killed_host_helper() {
    if std::env::var_os(KILLED_HOST_ENV).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let jail = jail_common::start(dir.path(), vec![]).await;
    // A forked copy keeps every descriptor of ours open, the pipes to the
    // guest included, so the guest never sees its host hang up: only the
    // parent-death signal can end the jail.
    // SAFETY: the child only calls `pause` and `_exit`, which are
    // async-signal-safe.
    let holder = unsafe { libc::fork() };
    if holder == 0 {
        loop {
            // SAFETY: as above.
            unsafe { libc::pause() };
        }
    }
    // The parent test reads this line.
    #[allow(clippy::print_stdout)]
    {
        println!("PID1 {} HOLDER {holder}", jail.pid1());
    }
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
}

#[tokio::test]
async fn the_jail_dies_with_its_host() {
    require_jail!();
    use std::io::BufRead as _;
    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "killed_host_helper", "--nocapture"])
        .env(KILLED_HOST_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let line = std::io::BufReader::new(host.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("PID1 "))
        .expect("the helper never printed its jail's PID 1");
    let words: Vec<&str> = line.split_whitespace().collect();
    let (pid1, holder) = (words[1], words[3].parse::<libc::pid_t>().unwrap());
    let ns_link = std::path::PathBuf::from(format!("/proc/{pid1}/ns/pid"));
    let ns = std::fs::read_link(&ns_link).unwrap();
    assert!(!processes_in_pidns(&ns_link).is_empty());
    host.kill().unwrap();
    host.wait().unwrap();
    // PID 1 gets SIGKILL when its parent dies, and the kernel then kills
    // the whole namespace. Nothing in it may still run.
    let alive = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| std::fs::read_link(e.path().join("ns/pid")).ok().as_ref() == Some(&ns))
            .filter(|e| {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // A zombie waits for a reaper; it runs nothing.
                !stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
            .count()
    };
    for _ in 0..60 {
        if alive() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let left = alive();
    // SAFETY: kill has no memory-safety preconditions; `holder` is the
    // helper's forked child, which nothing else reaps.
    unsafe { libc::kill(holder, libc::SIGKILL) };
    assert_eq!(left, 0, "the jail outlived its host");
}

#[tokio::test]
async fn the_guest_dying_is_a_clear_disconnect() {
    require_jail!();
    let dir = tempfile::tempdir().unwrap();
    let jail = jail_common::start(dir.path(), vec![]).await;
    // The guest is PID 1, which ignores signals from inside the jail; from
    // the host (an ancestor PID namespace) SIGKILL still reaches it.
    let guest = libc::pid_t::try_from(jail.pid1()).unwrap();
    let kill_guest = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(guest, libc::SIGKILL) }, 0);
    };
    let mut req = ExecRequest::shell("sleep 5");
    req.timeout_ms = Some(10_000);
    let (first, ()) = tokio::join!(jail.exec(req, None), kill_guest);
    assert!(
        matches!(first, Err(SandboxError::Disconnected(_))),
        "{first:?}"
    );
    let next = jail.exec(ExecRequest::shell("true"), None).await;
    assert!(
        matches!(next, Err(SandboxError::Disconnected(_))),
        "{next:?}"
    );
    jail.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_grant_is_a_clear_error() {
    require_jail!();
    let dir = tempfile::tempdir().unwrap();
    let grant = Grant {
        host_path: dir.path().join("nope"),
        name: "nope".into(),
        writable: false,
    };
    let err = JailComputer::start(jail_common::config(dir.path(), vec![grant]))
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("no such folder"), "{err}");
}

#[tokio::test]
async fn a_setup_failure_is_reported_as_start() {
    require_jail!();
    let dir = tempfile::tempdir().unwrap();
    let mut config = jail_common::config(dir.path(), vec![]);
    config.rootfs = Some(dir.path().join("no-such-rootfs"));
    let err = JailComputer::start(config).await.unwrap_err();
    assert!(matches!(err, SandboxError::Start(_)), "{err:?}");
    assert!(
        err.to_string().contains("cannot read the image rootfs"),
        "{err}"
    );
}

#[tokio::test]
async fn skill_and_plugin_folders_are_read_only_at_their_paths() {
    require_jail!();
    let dir = tempfile::tempdir().unwrap();
    let mk = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("SKILL.md"), format!("{name}\n")).unwrap();
        d
    };
    let mut config = jail_common::config(&dir.path().join("ws"), vec![]);
    config.skills = vec![
        ("pdf".into(), mk("pdf")),
        ("tools/report".into(), mk("report")),
    ];
    config.plugins = vec![("tools".into(), mk("tools-root"))];
    let jail = JailComputer::start(config).await.unwrap();
    let (out, code) = sh(
        &jail,
        "cat /mnt/.skills/pdf/SKILL.md /mnt/.skills/tools/report/SKILL.md /mnt/.plugins/tools/SKILL.md; \
         touch /mnt/.skills/tools/report/x 2>/dev/null || echo read-only",
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, "pdf\nreport\ntools-root\nread-only\n");
    jail.stop().await.unwrap();

    let mut config = jail_common::config(&dir.path().join("ws2"), vec![]);
    config.skills = vec![("../../etc".into(), mk("evil"))];
    let err = JailComputer::start(config).await.unwrap_err().to_string();
    assert!(err.contains("bad skill or plugin folder"), "{err}");
}

//! `cubicle sandbox exec` on the jail backend, which runs as a one-shot jail
//! (no guest, no protocol): the escape suite's shell attacks through it, how
//! it reports a command's end, and what it leaves behind — nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cubicle_sandbox::jail::escape_suite::{self, Attack, Backend, Category, Fixtures};
use cubicle_sandbox::jail::{Limits, probe};

fn jail_usable() -> bool {
    let usable = probe::jail_usable(&probe::probe());
    if !usable {
        eprintln!("skipped: this kernel cannot run the jail (see `cubicle doctor`)");
    }
    usable
}

fn cubicle() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cubicle"));
    cmd.env_remove("CUBICLE_LOG");
    cmd
}

fn exec(args: &[&str]) -> (Output, String, String) {
    let out = cubicle()
        .args(["sandbox", "exec", "--backend", "jail"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn the_one_shot_jail_contains_every_shell_attack() {
    if !jail_usable() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let mut fixtures = Fixtures::create(base.path(), &Limits::default()).unwrap();
    let grants: Vec<String> = fixtures
        .grants()
        .iter()
        .map(|g| {
            let mode = if g.writable { "rw" } else { "ro" };
            format!("{}:{mode}", g.host_path.display())
        })
        .collect();
    let (planned, _) = escape_suite::plan(Backend::Jail);
    let mut ran = 0;
    let mut failures = Vec::new();
    for p in planned.iter().map(|p| p.probe) {
        // Floods are judged by the guest's output cap, which a one-shot jail
        // has no use for: it streams everything to the caller.
        let Attack::Shell(script) = p.attack else {
            continue;
        };
        let mut cmd = cubicle();
        cmd.args(["sandbox", "exec", "--backend", "jail"]);
        for g in &grants {
            cmd.args(["--grant", g]);
        }
        let script = format!(
            "for t in {}; do command -v $t >/dev/null || {{ echo \"missing: $t\"; exit 0; }}; done\n{}",
            p.requires.join(" "),
            fixtures.fill(script)
        );
        let out = cmd
            .args(["--timeout", &format!("{}ms", p.timeout_ms)])
            .args(["--", "/bin/sh", "-c", &script])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = stdout.lines().find(|l| l.starts_with("missing: ")) {
            eprintln!("{}: skipped, {line} inside", p.name);
            continue;
        }
        ran += 1;
        if p.name == "egress-proxy-refuses" {
            // A one-shot jail has no guest, so no egress listener: the
            // connection itself is refused, which contains it further.
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !stderr.contains("ConnectionRefusedError") {
                failures.push(format!("{}: {stdout:?} {stderr:?}", p.name));
            }
            continue;
        }
        let secret = fixtures.vars()["{SECRET}"].clone();
        let contained = !stdout.contains("ESCAPED")
            && !stdout.contains(&secret)
            && (stdout.contains("CONTAINED")
                || (p.category == Category::Resources && out.status.code() == Some(124)));
        if !contained {
            failures.push(format!(
                "{}: {:?} stdout {:?} stderr {:?}",
                p.name,
                out.status,
                stdout.chars().take(300).collect::<String>(),
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "not contained:\n{}",
        failures.join("\n")
    );
    assert!(ran >= 40, "only {ran} attacks ran");
    let problems = fixtures.verify_host_untouched();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn a_command_ends_as_a_shell_would_say() {
    if !jail_usable() {
        return;
    }
    let (out, _, _) = exec(&["--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let (out, _, _) = exec(&["--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(137));
    let (out, _, stderr) = exec(&["--", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr.contains("`no-such-program` was not found"),
        "{stderr}"
    );
    let (out, _, stderr) = exec(&["--", "/etc"]);
    assert_eq!(out.status.code(), Some(126), "{stderr}");
    assert!(stderr.contains("cannot run `/etc`"), "{stderr}");
    // A script without `#!` runs with /bin/sh, as execvp runs it.
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let script = scripts.join("plain-script");
    std::fs::write(&script, "echo \"sh ran $1\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let grant = format!("{}:ro", scripts.display());
    let (out, stdout, stderr) = exec(&["--grant", &grant, "--", "/mnt/scripts/plain-script", "it"]);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "sh ran it\n");
    let (out, _, stderr) = exec(&["--cwd", "/no/such/dir", "--", "true"]);
    assert_eq!(out.status.code(), Some(126));
    assert!(stderr.contains("/no/such/dir"), "{stderr}");
    let (out, _, stderr) = exec(&["--timeout", "1s", "--", "sleep", "60"]);
    assert_eq!(out.status.code(), Some(124));
    assert!(stderr.contains("timed out"), "{stderr}");
    // A grant that does not exist is refused before anything starts.
    let (out, _, stderr) = exec(&["--grant", "/no/such/folder", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("/no/such/folder"), "{stderr}");
}

#[test]
fn output_streams_apart_and_nothing_of_the_host_leaks_in() {
    if !jail_usable() {
        return;
    }
    // 5 MB through the pipes, stdout and stderr kept apart.
    let (out, stdout, stderr) = exec(&[
        "--",
        "sh",
        "-c",
        "head -c 5000000 /dev/zero | tr '\\0' a; echo; echo oops >&2",
    ]);
    assert!(out.status.success());
    assert_eq!(stdout.len(), 5_000_001);
    assert!(stdout.bytes().take(5_000_000).all(|b| b == b'a'));
    assert_eq!(stderr, "oops\n");
    // stdin is /dev/null, whatever the caller's is; the environment is the
    // session's; a descriptor the caller left open does not get in.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 7</dev/null; echo data | ANTHROPIC_API_KEY=sk-secret {} sandbox exec --backend jail -- sh -c 'cat; env; ls /proc/self/fd'",
            env!("CARGO_BIN_EXE_cubicle")
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(!stdout.contains("data"), "{stdout}");
    assert!(!stdout.contains("sk-secret"), "{stdout}");
    assert!(stdout.contains("HOME=/workspace"), "{stdout}");
    let fds: Vec<&str> = stdout
        .lines()
        .filter(|l| l.chars().all(|c| c.is_ascii_digit()))
        .collect();
    // 0, 1, 2 and the directory `ls` reads.
    assert_eq!(fds, ["0", "1", "2", "3"], "{stdout}");
}

#[test]
fn a_reader_that_goes_away_stops_the_writer() {
    if !jail_usable() {
        return;
    }
    let mut child = cubicle()
        .args(["sandbox", "exec", "--backend", "jail", "--", "yes"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(first_line(&mut child), "y\n");
    // The reader is dropped: `yes` must end by SIGPIPE, not run forever.
    let status = wait_for(&mut child, Duration::from_secs(60));
    assert!(status.is_some(), "the command kept running");
}

#[test]
fn nothing_is_left_behind_even_when_the_host_is_killed() {
    if !jail_usable() {
        return;
    }
    let marker = format!("{}.{}", std::process::id(), 4242);
    // The killed host's scratch folder stays behind; it goes with this.
    let killed_tmp = tempfile::tempdir().unwrap();
    let mut child = start_sleeper(&marker, killed_tmp.path());
    let killed = child.id();
    assert!(processes_with(&marker) > 0, "the command is not running");
    let orphaned: Vec<_> = session_cgroups(killed)
        .into_iter()
        .filter(|d| d.exists())
        .collect();
    // SIGKILL: no cleanup runs in the host; PID 1's parent-death signal
    // takes the jail down.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with(&marker) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(processes_with(&marker), 0, "the jail outlived its host");
    // A normal run removes its scratch workspace and its cgroup.
    let tmp = tempfile::tempdir().unwrap();
    let child = cubicle()
        .env("TMPDIR", tmp.path())
        .args(["sandbox", "exec", "--backend", "jail", "--", "true"])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        scratch_left(tmp.path()),
        0,
        "the scratch workspace was left behind"
    );
    for dir in session_cgroups(pid) {
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
    // The killed host could not remove its cgroups (where it could make
    // them: root, cgroup v1); the next start swept them.
    for dir in orphaned {
        assert!(!dir.exists(), "{} was not swept", dir.display());
    }
}

#[test]
fn a_host_asked_to_stop_ends_the_jail_and_cleans_up() {
    if !jail_usable() {
        return;
    }
    for (signal, name) in [(15, "TERM"), (2, "INT")] {
        let marker = format!("{}.{signal}", std::process::id());
        let tmp = tempfile::tempdir().unwrap();
        let mut child = start_sleeper(&marker, tmp.path());
        let pid = child.id();
        let sent = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = wait_for(&mut child, Duration::from_secs(60)).expect("the host kept running");
        assert_eq!(status.code(), Some(128 + signal), "SIG{name}: {status:?}");
        assert_eq!(
            processes_with(&marker),
            0,
            "SIG{name}: the jail outlived its host"
        );
        assert_eq!(
            scratch_left(tmp.path()),
            0,
            "SIG{name}: the scratch workspace was left behind"
        );
        for dir in session_cgroups(pid) {
            assert!(
                !dir.exists(),
                "SIG{name}: {} was left behind",
                dir.display()
            );
        }
    }
}

/// Starts `sleep MARKER` in a one-shot jail, its scratch folder in `tmp`,
/// and returns once it runs.
fn start_sleeper(marker: &str, tmp: &Path) -> Child {
    let mut child = cubicle()
        .env("TMPDIR", tmp)
        .args(["sandbox", "exec", "--backend", "jail", "--", "sh", "-c"])
        .arg(format!("echo up; exec sleep {marker}"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(first_line(&mut child), "up\n");
    child
}

/// The first line `child` prints; its stdout is closed after.
fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

/// How many scratch workspaces are left in `tmp`, the temporary folder of
/// the `cubicle` processes a test started. (A folder of its own: matching
/// on the host's pid in the shared one finds an earlier, killed host's
/// folder once pids wrap, which they do here at 32768.)
fn scratch_left(tmp: &Path) -> usize {
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("cubicle-exec-"))
        .count()
}

/// The session cgroups the `cubicle` process `host` makes for its jail
/// (where it can: root, cgroup v1).
fn session_cgroups(host: u32) -> [std::path::PathBuf; 2] {
    ["pids", "memory"].map(|controller| {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("cubicle")
            .join(format!("s{host}-0"))
    })
}

/// How many processes have `marker` in their command line.
fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .count()
}

fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

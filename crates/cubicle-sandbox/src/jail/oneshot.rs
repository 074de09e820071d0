//! A one-shot jail: one command in a fresh cubicle, then the cubicle ends.
//! This is what `cubicle sandbox exec` runs, where a session's guest and
//! its protocol would only add a process, a handshake and a relay.
//!
//! The jail is built by the same code as a session's (steps 3–8 in
//! [`super`], unchanged: the private root, limits, privileges, landlock,
//! seccomp). Only the start and step 9 differ:
//!
//! - **No launcher.** [`run`] is called from `main` before any runtime or
//!   thread exists. It creates the session cgroup itself (step 0), then
//!   `clone`s PID 1 straight into the new namespaces (step 1), so no
//!   launcher process is started, executed or reaped, and no hand-off is
//!   needed: PID 1 is this process's child from the start. PID 1 asks for
//!   `SIGKILL` when this process dies and checks it has not already (a
//!   pipe only this process holds open), maps the ids, joins the cgroup
//!   and only then enters a cgroup namespace of its own (step 2), so that
//!   the namespace is rooted at the session cgroup as in a session.
//! - **No guest.** PID 1 starts the command with `posix_spawn` (which,
//!   unlike `fork`, copies none of the host process's page tables) and
//!   reaps every process that ends until the command has; then it exits
//!   with the command's status
//!   (128 + N for a command killed by signal N), and the kernel kills what
//!   is left in the jail. The command gets the session's base environment
//!   ([`super::computer::base_env`] plus the caller's additions), its working
//!   directory (`/workspace` unless told), `/dev/null` as stdin, and pipes
//!   as stdout and stderr, which this process copies to its own: a host
//!   terminal never reaches the jail. Every other descriptor is closed when
//!   the command starts.
//! - **No network at all.** With no guest there is no egress listener on
//!   `127.0.0.1:3128`: a connection to it is refused, as every tunnel is
//!   refused by a session started without an egress proxy.
//!
//! This process enforces the timeout and the workspace cap (step 10,
//! measured every [`CAP_INTERVAL`]) by killing PID 1, which takes every
//! process of the jail with it; it dies with this process too (PID 1's
//! parent-death signal). `SIGINT`, `SIGTERM` and `SIGHUP` are read from a
//! `signalfd` while the jail runs: one of them kills the jail, and [`run`]
//! returns [`Outcome::Interrupted`] once the cgroup is removed, so that the
//! caller can remove its workspace before it ends.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::computer::{
    CAP_INTERVAL, CAP_PASS_ENTRIES, Prepared, SpecParts, WORKSPACE, WorkspaceCap, base_env, prepare,
};
use super::config::Limits;
use super::init::{ERROR_PREFIX, InitError, SETUP_FAILED, check_single_threaded, launcher_message};
use super::namespaces::errno_name;
use super::sys::{self, Exit, Forked};
use super::{init, limits, namespaces};
use crate::SandboxError;
use crate::grants::Grant;

/// Exit status of a command that could not be started (as shells use it).
const CANNOT_RUN: i32 = 126;

/// Exit status of a command that was not found (as shells use it).
const NOT_FOUND: i32 = 127;

/// How often the wait checks on PID 1 where the kernel has no pidfds.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Settings of a one-shot jail.
#[derive(Debug, Clone)]
pub struct OneShotConfig {
    /// Host folders visible at `/mnt/<name>`.
    pub grants: Vec<Grant>,
    /// Host directory bound at `/workspace`; created if missing.
    pub workspace: PathBuf,
    /// Root file system of a built cubicle image; `None` uses read-only
    /// binds of the host's system directories.
    pub rootfs: Option<PathBuf>,
    /// Resource limits.
    pub limits: Limits,
    /// Variables added to (or overriding) the base environment.
    pub env: BTreeMap<String, String>,
    /// Run even where landlock cannot be enforced.
    pub dangerously_allow_no_landlock: bool,
    /// The command and its arguments; the program is looked up on the
    /// environment's `PATH` unless it contains a `/`.
    pub argv: Vec<String>,
    /// Working directory inside the jail; `/workspace` when `None`.
    pub cwd: Option<String>,
    /// Kill the command (and the jail) after this long.
    pub timeout: Option<Duration>,
}

/// How a one-shot command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this status (128 + N when killed by signal N).
    Exited(i32),
    /// It ran past its timeout and was killed.
    TimedOut,
    /// This process was asked to stop (`SIGINT`, `SIGTERM` or `SIGHUP`):
    /// the jail was killed and cleaned up; the caller should end with 128
    /// plus the signal's number.
    Interrupted(i32),
    /// The workspace went over its cap and the command was killed.
    OverCap {
        /// The cap, in MiB.
        cap_mib: u64,
        /// What was in use when it was killed, in MiB.
        used_mib: u64,
    },
}

/// The command as PID 1 receives it (in memory: the launcher is a fork of
/// the host process).
#[derive(Debug)]
pub(super) struct Command {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: String,
    /// Where PID 1 says that the command started: the hand-off pipe.
    started: libc::c_int,
}

/// The command as C strings, made before PID 1 waits for its go.
pub(super) struct PreparedCommand<'a> {
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Where to look for the program, in order.
    candidates: Vec<PathBuf>,
    cwd: CString,
    command: &'a Command,
}

impl Command {
    pub(super) fn prepare(&self) -> Result<PreparedCommand<'_>, InitError> {
        let bad = |e: std::io::Error| InitError::new(format!("bad command: {e}"));
        let argv = self
            .argv
            .iter()
            .map(sys::cstr)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let envp = self
            .env
            .iter()
            .map(|(k, v)| sys::cstr(format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let program = self
            .argv
            .first()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| InitError::new("empty command"))?;
        let candidates = if program.contains('/') {
            vec![PathBuf::from(program)]
        } else {
            self.env
                .get("PATH")
                .map(String::as_str)
                .unwrap_or_default()
                .split(':')
                .filter(|dir| !dir.is_empty())
                .map(|dir| Path::new(dir).join(program))
                .collect()
        };
        Ok(PreparedCommand {
            argv,
            envp,
            candidates,
            cwd: sys::cstr(&self.cwd).map_err(bad)?,
            command: self,
        })
    }
}

/// Runs `config`'s command in a fresh jail and returns how it ended, having
/// copied its output to this process's stdout and stderr.
///
/// Must be called while this process is single-threaded (first thing in
/// `main`, before any runtime starts): it forks, and the child runs
/// ordinary Rust code.
pub fn run(config: OneShotConfig) -> Result<Outcome, SandboxError> {
    check_single_threaded().map_err(|e| SandboxError::Start(e.to_string()))?;
    let Prepared {
        spec,
        workspace,
        cgroup,
        ..
    } = prepare(&SpecParts {
        grants: &config.grants,
        workspace: &config.workspace,
        skills: &[],
        plugins: &[],
        guest: None,
        rootfs: config.rootfs.as_ref(),
        limits: &config.limits,
        dangerously_allow_no_landlock: config.dangerously_allow_no_landlock,
    })?;
    let mut env = base_env();
    env.extend(config.env.clone());
    let start = |what: &str, e: std::io::Error| {
        SandboxError::Start(format!("cannot start the jail: {what}: {}", errno_name(&e)))
    };
    let pipe = || sys::pipe().map_err(|e| start("a pipe", e));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (started_r, started_w) = pipe()?;
    let (alive_r, alive_w) = pipe()?;
    let devnull = std::fs::File::open("/dev/null").map_err(|e| start("/dev/null", e))?;
    let command = Command {
        argv: config.argv.clone(),
        env,
        cwd: config.cwd.clone().unwrap_or_else(|| WORKSPACE.to_owned()),
        started: started_w.as_raw_fd(),
    };
    // A request to stop this process (a terminal's ^C reaches the command
    // too) must not leave the workspace or the cgroup behind: take those
    // signals through a descriptor, and clean up before ending.
    let blocked = sys::block_signals(&STOP_SIGNALS).map_err(|e| start("signals", e))?;
    // From here on, dropping `jail` kills and reaps PID 1, removes the
    // cgroup and restores the signal mask, however this function returns.
    let mut jail = Jail {
        pid1: None,
        cgroup,
        blocked,
    };
    let signals = sys::signalfd(&jail.blocked).map_err(|e| start("signalfd", e))?;
    // Step 0, the host's half: the session cgroup, which PID 1 joins.
    let cgroups = limits::create_cgroup(&jail.cgroup, &spec.limits);
    init::warn_if_root_without_pids(&cgroups);
    let ids = sys::ids();
    match namespaces::clone_into_namespaces().map_err(|e| SandboxError::Start(e.to_string()))? {
        Forked::Child => {
            // The jail's processes take signals as usual.
            sys::restore_signal_mask(&jail.blocked);
            drop(signals);
            // The host's ends stay with the host: a command whose reader
            // went away must see its pipe broken, and PID 1 must see the
            // host gone.
            drop((out_r, err_r, started_r, alive_w));
            let stdio = sys::dup2(devnull.as_fd(), 0)
                .and_then(|()| sys::dup2(out_w.as_fd(), 1))
                .and_then(|()| sys::dup2(err_w.as_fd(), 2));
            drop((out_w, err_w, devnull));
            let from = init::OneShotStart {
                host_alive: alive_r.as_fd(),
                ids,
                cgroups: &cgroups,
            };
            let status = stdio
                .map_err(|e| InitError::new(format!("cannot set up stdio: {}", errno_name(&e))))
                .and_then(|()| init::one_shot_pid1(&spec, &from, &command));
            match status {
                Ok(status) => sys::exit_now(status),
                Err(e) => {
                    eprintln!("{ERROR_PREFIX} {e}");
                    sys::exit_now(SETUP_FAILED)
                }
            }
        }
        Forked::Parent(pid) => jail.pid1 = Some(pid),
    }
    drop((out_w, err_w, started_w, alive_r, devnull));
    let outcome = jail.run(&started_r, out_r, err_r, &signals, &config, workspace);
    // PID 1 checks this end is open once it asked to die with us.
    drop(alive_w);
    outcome
}

/// PID 1 of a one-shot jail, until reaped, and the session cgroup; dropping
/// it kills and reaps PID 1 (and so every process of the jail) and removes
/// the cgroup.
struct Jail {
    pid1: Option<libc::pid_t>,
    cgroup: String,
    /// [`STOP_SIGNALS`], blocked while the jail runs.
    blocked: sys::BlockedSignals,
}

/// Signals that ask this process to stop; while a one-shot jail runs they
/// are read from a `signalfd`, and end it cleanly.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

impl Jail {
    fn run(
        &mut self,
        started: &OwnedFd,
        out: OwnedFd,
        err: OwnedFd,
        signals: &OwnedFd,
        config: &OneShotConfig,
        workspace: PathBuf,
    ) -> Result<Outcome, SandboxError> {
        let Some(pid1) = self.pid1 else {
            return Err(SandboxError::Start("the jail has no PID 1".to_owned()));
        };
        // PID 1 says the command started once the jail is built; the pipe
        // ends without a word when it failed.
        if !matches!(sys::read_byte(started.as_fd()), Ok(Some(_))) {
            self.kill_and_reap();
            // Every writer of the stderr pipe is gone: it ends.
            return Err(setup_error(&drain(err.as_fd())));
        }
        let pidfd = cubicle_guest::pidfd(pid1).ok();
        let mut relay = [Some((out, 1)), Some((err, 2))];
        let deadline = config.timeout.map(|t| Instant::now() + t);
        let cap = config
            .limits
            .workspace_bytes
            .map(|bytes| (WorkspaceCap::new(workspace, bytes), bytes));
        let mut next_measure = Instant::now() + CAP_INTERVAL;
        let mut ended_by = None;
        let mut buf = vec![0u8; 64 * 1024];
        let exit = loop {
            let now = Instant::now();
            let mut wake = [Some(next_measure), deadline.filter(|_| ended_by.is_none())]
                .into_iter()
                .flatten()
                .min()
                .map(|t| t.saturating_duration_since(now));
            if pidfd.is_none() {
                wake = Some(wake.map_or(POLL_INTERVAL, |w| w.min(POLL_INTERVAL)));
            }
            let mut fds: Vec<BorrowedFd<'_>> =
                relay.iter().flatten().map(|(fd, _)| fd.as_fd()).collect();
            fds.extend(pidfd.as_ref().map(|fd| fd.as_fd()));
            fds.push(signals.as_fd());
            let ready = sys::poll_readable(&fds, wake).map_err(|e| {
                SandboxError::Io(std::io::Error::new(
                    e.kind(),
                    format!("waiting for the jail: {e}"),
                ))
            })?;
            let mut ready = ready.into_iter();
            for slot in &mut relay {
                if let Some((fd, to)) = slot
                    && ready.next() == Some(true)
                    && !copy_once(fd.as_fd(), *to, &mut buf)
                {
                    *slot = None;
                }
            }
            // Once the jail is ending, a further stop signal stays pending:
            // it acts when the mask is restored.
            if ended_by.is_none()
                && let Some(sig) = sys::read_signal(signals.as_fd())
            {
                end(&mut ended_by, pid1, Outcome::Interrupted(sig));
            }
            if let Some(exit) = sys::try_waitpid(pid1)? {
                self.pid1 = None;
                break exit;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                end(&mut ended_by, pid1, Outcome::TimedOut);
            }
            if now >= next_measure {
                next_measure = now + CAP_INTERVAL;
                if let Some((cap, bytes)) = &cap
                    && ended_by.is_none()
                    && cap.pass(CAP_PASS_ENTRIES)
                {
                    let over = Outcome::OverCap {
                        cap_mib: bytes.div_ceil(1 << 20),
                        used_mib: cap.state().used.div_ceil(1 << 20),
                    };
                    end(&mut ended_by, pid1, over);
                }
            }
        };
        // PID 1 is reaped, so every process of the jail is gone: the pipes
        // end once what is left in them is copied.
        for (fd, to) in relay.into_iter().flatten() {
            while copy_once(fd.as_fd(), to, &mut buf) {}
        }
        Ok(ended_by.unwrap_or(match exit {
            Exit::Code(code) => Outcome::Exited(code),
            // PID 1 ends by itself with the command's status; killed, it
            // reports the signal as a shell does.
            Exit::Signal(sig) => Outcome::Exited(128 + sig),
        }))
    }
}

impl Jail {
    /// Kills PID 1, and so every process of the jail, and reaps it.
    fn kill_and_reap(&mut self) {
        if let Some(pid) = self.pid1.take() {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::waitpid(pid);
        }
    }
}

/// Ends the jail early for `why` (the first reason given is kept): kills
/// PID 1, which the wait loop then reaps.
fn end(ended_by: &mut Option<Outcome>, pid1: libc::pid_t, why: Outcome) {
    if ended_by.is_none() {
        *ended_by = Some(why);
        let _ = sys::kill(pid1, libc::SIGKILL);
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        self.kill_and_reap();
        limits::remove_cgroup(&self.cgroup);
        // A stop signal that came in the meantime is acted on now (the
        // caller's scratch files are its own to clean up first).
        sys::restore_signal_mask(&self.blocked);
    }
}

/// Copies one read's worth from `from` to the descriptor `to`; false at end
/// of file, or when either side failed (a reader of our output that went
/// away: closing `from` then tells the command so, by `SIGPIPE`).
fn copy_once(from: BorrowedFd<'_>, to: libc::c_int, buf: &mut [u8]) -> bool {
    match sys::read(from, buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => sys::write_all(to, buf.get(..n).unwrap_or_default()).is_ok(),
    }
}

/// Everything left to read from `fd`, as text.
fn drain(fd: BorrowedFd<'_>) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = sys::read(fd, &mut buf) {
        all.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// The launcher's or PID 1's reason, from what they printed.
fn setup_error(stderr: &str) -> SandboxError {
    let reason = stderr
        .lines()
        .filter_map(launcher_message)
        .find_map(|(message, warning)| (!warning).then_some(message));
    SandboxError::Start(match reason {
        Some(reason) => reason.to_owned(),
        None if stderr.trim().is_empty() => "the jail ended before its command started".to_owned(),
        None => format!(
            "the jail ended before its command started: {}",
            stderr.trim()
        ),
    })
}

/// Step 9 of a one-shot jail, in PID 1 once the host let it go: starts the
/// command and reaps every process until the command has ended; returns
/// the status PID 1 exits with.
pub(super) fn pid1(command: &PreparedCommand<'_>) -> i32 {
    let started = start(command);
    // Tell the host the jail is built; from here on its stderr is the
    // command's.
    let _ = sys::write_all(command.command.started, &[1]);
    let child = match started {
        Ok(pid) => pid,
        Err((code, why)) => {
            eprintln!("cubicle: {why}");
            return code;
        }
    };
    loop {
        match sys::waitpid(-1) {
            Ok((pid, exit)) if pid == child => {
                return match exit {
                    Exit::Code(code) => code,
                    Exit::Signal(sig) => 128 + sig,
                };
            }
            Ok(_) => {}
            // No child left: cannot happen while the command is unreaped.
            Err(_) => return SETUP_FAILED,
        }
    }
}

/// Starts the command in its working directory, as `execvp` would (a file
/// without `#!` runs with `/bin/sh`), with `posix_spawn`: PID 1 is a copy
/// of the whole host process, and a `fork` would copy its page tables for
/// nothing. Returns the command's pid, or the status to end with and why.
fn start(command: &PreparedCommand<'_>) -> Result<libc::pid_t, (i32, String)> {
    let program = command.command.argv.first().map_or("", String::as_str);
    // PID 1's own settings are the command's: its working directory, and
    // nothing but stdio inherited. SIGPIPE, which the Rust runtime ignores,
    // is a no-op for PID 1 (the kernel does not deliver default-action
    // signals to a namespace's init) and the command's default again.
    sys::default_sigpipe();
    if let Err(e) = sys::chdir(&command.cwd) {
        return Err((
            CANNOT_RUN,
            format!(
                "cannot enter the working directory {}: {}",
                command.command.cwd,
                errno_name(&e)
            ),
        ));
    }
    sys::cloexec_from(3);
    let mut denied = None;
    for path in &command.candidates {
        let Ok(path_c) = sys::cstr(path) else {
            continue;
        };
        // A start costs a process: a `PATH` entry without the program is
        // passed over as `execve` would pass it over, for a `stat`.
        if let Err(e) = std::fs::metadata(path)
            && matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
        {
            continue;
        }
        let err = match sys::spawn(&path_c, &command.argv, &command.envp) {
            Ok(pid) => return Ok(pid),
            Err(e) => e,
        };
        match err.raw_os_error() {
            Some(libc::ENOEXEC) => {
                let mut argv = vec![c"/bin/sh".to_owned(), path_c];
                argv.extend(command.argv.iter().skip(1).cloned());
                match sys::spawn(c"/bin/sh", &argv, &command.envp) {
                    Ok(pid) => return Ok(pid),
                    Err(e) => denied = Some(e),
                }
                break;
            }
            Some(libc::ENOENT | libc::ENOTDIR) => {}
            _ => {
                denied = Some(err);
                if command.candidates.len() == 1 {
                    break;
                }
            }
        }
    }
    Err(match denied {
        Some(e) => (
            CANNOT_RUN,
            format!("cannot run `{program}`: {}", errno_name(&e)),
        ),
        None => (
            NOT_FOUND,
            format!("`{program}` was not found in the cubicle"),
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    fn command(argv: &[&str], path: Option<&str>) -> Command {
        Command {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            env: path
                .map(|p| BTreeMap::from([("PATH".to_owned(), p.to_owned())]))
                .unwrap_or_default(),
            cwd: WORKSPACE.to_owned(),
            started: -1,
        }
    }

    #[test]
    fn the_program_is_looked_up_on_the_session_path_unless_it_has_a_slash() {
        let c = command(&["python3", "-V"], Some("/usr/local/bin::/usr/bin"));
        let p = c.prepare().unwrap();
        assert_eq!(
            p.candidates,
            [
                PathBuf::from("/usr/local/bin/python3"),
                PathBuf::from("/usr/bin/python3")
            ]
        );
        assert_eq!(p.argv, [c"python3".to_owned(), c"-V".to_owned()]);
        assert_eq!(p.envp, [c"PATH=/usr/local/bin::/usr/bin".to_owned()]);
        let c = command(&["./run.sh"], Some("/usr/bin"));
        assert_eq!(c.prepare().unwrap().candidates, [PathBuf::from("./run.sh")]);
        // No PATH: nothing is found, rather than the host's PATH used.
        let c = command(&["ls"], None);
        assert!(c.prepare().unwrap().candidates.is_empty());
    }

    #[test]
    fn bad_commands_are_refused_before_the_jail_runs_them() {
        assert_eq!(
            command(&[], Some("/bin"))
                .prepare()
                .err()
                .map(|e| e.to_string()),
            Some("empty command".to_owned())
        );
        assert!(command(&[""], Some("/bin")).prepare().is_err());
        let err = command(&["a\0b"], Some("/bin")).prepare().err().unwrap();
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn a_setup_failure_is_reported_by_its_reason() {
        let printed = format!(
            "{ERROR_PREFIX} warning: started as root without a pids cgroup\n\
             {ERROR_PREFIX} landlock is not enforced by this kernel — see `cubicle doctor`\n"
        );
        assert_eq!(
            setup_error(&printed).to_string(),
            SandboxError::Start(
                "landlock is not enforced by this kernel — see `cubicle doctor`".to_owned()
            )
            .to_string()
        );
        assert!(
            setup_error("")
                .to_string()
                .contains("ended before its command started"),
        );
        assert!(
            setup_error("Segmentation fault\n")
                .to_string()
                .contains("Segmentation fault")
        );
    }
}

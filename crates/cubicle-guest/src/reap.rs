//! Waiting for a command's process and collecting its resource usage.
//!
//! Commands are spawned with `std::process` (not `tokio::process`) and waited
//! for here: a pidfd on the reactor says when the process ended, and
//! `wait4(pid)` reaps it with its `rusage` (a blocking `wait4` on a thread
//! where pidfds do not exist). tokio's child handling reaps with `waitpid`,
//! which throws the `rusage` away, and two reapers for one pid would race.
//! Each command is waited for by exactly one call to [`wait`], by pid.
//!
//! When the guest is PID 1 (of the jail's PID namespace) it must also reap
//! the orphans re-parented to it, and a per-pid wait would leave them
//! zombies. [`start_reaping`] then switches to one reaper task: on every
//! `SIGCHLD` it loops on `wait4(-1)` and hands each status to the command
//! [`watch`]ed under that pid, dropping the rest (orphans). A command is
//! started and watched under [`spawn_guard`], which the reaper also takes,
//! so the reaper never collects a command before its watch exists.

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;

/// The reaper of a guest that is PID 1; unset otherwise.
static REAPER: OnceLock<Reaper> = OnceLock::new();

#[derive(Debug, Default)]
struct Reaper {
    /// Held while a command is started and watched, and while reaping.
    spawn: Mutex<()>,
    /// Commands waiting for their status, by pid.
    waiters: Mutex<HashMap<libc::pid_t, oneshot::Sender<ChildExit>>>,
}

/// Makes this process reap every child that ends, orphans included (for a
/// guest that is PID 1). Call it inside the runtime before any command is
/// started; later calls do nothing.
pub fn start_reaping() -> io::Result<()> {
    if REAPER.get().is_some() {
        return Ok(());
    }
    // The handler first: a child that ends after it is installed raises a
    // signal the stream sees; one that ended before is found by the first
    // pass below.
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    let _ = REAPER.set(Reaper::default());
    tokio::spawn(async move {
        loop {
            reap_all();
            if sigchld.recv().await.is_none() {
                break;
            }
        }
    });
    Ok(())
}

/// Collects every ended child and delivers the statuses of watched ones.
fn reap_all() {
    let Some(reaper) = REAPER.get() else {
        return;
    };
    let _spawning = reaper
        .spawn
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Until none has ended yet (0) or there are no children (ECHILD).
    while let Ok(Some((pid, exit))) = wait4(-1, libc::WNOHANG) {
        let waiter = reaper
            .waiters
            .lock()
            .ok()
            .and_then(|mut map| map.remove(&pid));
        if let Some(tx) = waiter {
            let _ = tx.send(exit);
        }
    }
}

/// Hold while starting a command and [`watch`]ing it: the reaper waits, so
/// it cannot collect the command before its watch exists. `None` when this
/// process does not reap orphans (nothing to hold off).
pub fn spawn_guard() -> Option<MutexGuard<'static, ()>> {
    let reaper = REAPER.get()?;
    Some(
        reaper
            .spawn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// How a started command's end will be learnt; see [`watch`].
#[derive(Debug)]
pub enum Watch {
    /// From the reaper (the guest is PID 1).
    Reaper(oneshot::Receiver<ChildExit>),
    /// By waiting for this pid.
    Pid(u32),
}

/// Watches the command `pid`, just started (under [`spawn_guard`]).
pub fn watch(pid: u32) -> Watch {
    let Some(reaper) = REAPER.get() else {
        return Watch::Pid(pid);
    };
    let (tx, rx) = oneshot::channel();
    if let (Ok(pid), Ok(mut map)) = (libc::pid_t::try_from(pid), reaper.waiters.lock()) {
        map.insert(pid, tx);
    }
    Watch::Reaper(rx)
}

impl Watch {
    /// Waits until the command has ended and been reaped.
    pub async fn ended(self) -> io::Result<ChildExit> {
        match self {
            Watch::Reaper(rx) => rx
                .await
                .map_err(|_| io::Error::other("the reaper lost the command")),
            Watch::Pid(pid) => wait(pid).await,
        }
    }
}

/// How a process ended, with its resource usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChildExit {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Terminating signal, when killed.
    pub signal: Option<i32>,
    /// User CPU time.
    pub user: Duration,
    /// System CPU time.
    pub system: Duration,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
}

/// Waits for process `pid` (a child of this process) to end and reaps it.
///
/// Where the kernel has pidfds (Linux 5.3), the wait is a readiness event on
/// the reactor, which costs no thread; otherwise it is a blocking `wait4` on
/// tokio's blocking pool.
pub async fn wait(pid: u32) -> io::Result<ChildExit> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    match open_pidfd(pid) {
        Ok(fd) => wait_pidfd(pid, fd).await,
        Err(_) => wait_on_thread(pid).await,
    }
}

async fn wait_on_thread(pid: libc::pid_t) -> io::Result<ChildExit> {
    tokio::task::spawn_blocking(move || {
        wait4(pid, 0)?
            .map(|(_, exit)| exit)
            .ok_or_else(|| io::Error::other("wait4 returned without a status"))
    })
    .await
    .map_err(io::Error::other)?
}

/// A pidfd becomes readable when its process has ended; the status is
/// then collected with a non-blocking `wait4`, which keeps the `rusage`.
async fn wait_pidfd(
    pid: libc::pid_t,
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
) -> io::Result<ChildExit> {
    loop {
        // Checked before each wait: the process may have ended before the
        // pidfd was registered.
        if let Some((_, exit)) = wait4(pid, libc::WNOHANG)? {
            return Ok(exit);
        }
        fd.readable().await?.clear_ready();
    }
}

/// A pidfd for our child `pid` (`pidfd_open(2)`, Linux 5.3): it turns
/// readable once the process has ended. The pid cannot be reused while the
/// child is unreaped. Needs no runtime; see [`open_pidfd`] for one
/// registered with tokio's reactor.
pub fn pidfd(pid: libc::pid_t) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(rc).map_err(io::Error::other)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one
    // else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// A [`pidfd`] registered with the tokio reactor. Needs a runtime.
pub fn open_pidfd(pid: libc::pid_t) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    let fd = pidfd(pid)?;
    // SAFETY: the `OwnedFd` owns the pidfd and is moved into the `AsyncFd`,
    // which keeps it open, unchanged, until it is dropped.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// `wait4(pid)` with `flags` (`pid` -1: any child); the pid reaped and how
/// it ended, or `None` when `WNOHANG` found nothing ended yet.
fn wait4(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<(libc::pid_t, ChildExit)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: `status` and `usage` are valid, exclusively borrowed
        // out-pointers for the duration of the call.
        let rc = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if rc > 0 {
            break rc;
        }
        if rc == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    let exit = ChildExit {
        code,
        signal,
        user: timeval(usage.ru_utime),
        system: timeval(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    };
    Ok(Some((reaped, exit)))
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(tv.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(tv.tv_usec).unwrap_or(0))
}

/// Sends `signal` to the process group `pgid`. Errors when no process of the
/// group is left.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(io::Error::other)?;
    if pgid <= 1 {
        // killpg(0) or (1) would hit the guest's own group or everything.
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: killpg has no memory-safety preconditions.
    let rc = unsafe { libc::killpg(pgid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    /// A child that the code under test, not std, reaps.
    #[allow(clippy::zombie_processes)]
    fn spawn(script: &str) -> libc::pid_t {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .spawn()
            .unwrap();
        libc::pid_t::try_from(child.id()).unwrap()
    }

    #[tokio::test]
    async fn pidfd_wait_reports_exit_codes_and_signals() {
        let pid = spawn("exit 3");
        let exit = wait(u32::try_from(pid).unwrap()).await.unwrap();
        assert_eq!((exit.code, exit.signal), (Some(3), None));
        let pid = spawn("kill -9 $$");
        let exit = wait(u32::try_from(pid).unwrap()).await.unwrap();
        assert_eq!((exit.code, exit.signal), (None, Some(libc::SIGKILL)));
        // Reaped: a second wait finds no such child.
        assert!(wait4(pid, libc::WNOHANG).is_err());
    }

    #[tokio::test]
    async fn thread_wait_is_the_same_without_pidfds() {
        let pid = spawn("exit 7");
        let exit = wait_on_thread(pid).await.unwrap();
        assert_eq!((exit.code, exit.signal), (Some(7), None));
    }

    #[tokio::test]
    async fn a_process_that_ended_before_the_wait_is_still_reaped() {
        let pid = spawn("exit 5");
        // Let it become a zombie before the pidfd exists.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let exit = wait(u32::try_from(pid).unwrap()).await.unwrap();
        assert_eq!(exit.code, Some(5));
    }
}

//! Waiting for a command's process and collecting its resource usage.
//!
//! Commands are spawned with `std::process` (not `tokio::process`) and waited
//! for here with `wait4(pid)` on a blocking thread: tokio's child handling
//! reaps with `waitpid`, which throws the `rusage` away, and two reapers for
//! one pid would race. Each command is waited for by exactly one call to
//! [`wait`], by pid.
//!
//! When the guest runs as PID 1 of a jail it must also reap orphans. That
//! will replace this per-pid wait with one thread looping on `wait4(-1)` that
//! hands each status to the [`wait`] call registered for its pid (and drops
//! the rest); [`wait`]'s signature already fits that.

use std::io;
use std::time::Duration;

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
pub async fn wait(pid: u32) -> io::Result<ChildExit> {
    tokio::task::spawn_blocking(move || wait_blocking(pid))
        .await
        .map_err(io::Error::other)?
}

fn wait_blocking(pid: u32) -> io::Result<ChildExit> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid, exclusively borrowed
        // out-pointers for the duration of the call; `pid` is our own child.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Ok(ChildExit {
        code,
        signal,
        user: timeval(usage.ru_utime),
        system: timeval(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
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

//! `cubicle-guest`: the agent that runs inside every cubicle. It speaks the
//! guest protocol ([`cubicle_protocol::guest`]) with the host over one byte
//! stream, runs commands and file operations on the host's behalf, and
//! tunnels in-cubicle connections to the host's egress proxy.
//!
//! The guest trusts the host and nothing else: every path and process it
//! handles may have been arranged by something hostile inside the cubicle.
//! The host side reuses [`wire`] for framing and [`Window`] for tunnel flow
//! control.

mod confine;
mod error;
mod exec;
mod files;
mod reap;
mod search;
mod server;
mod tunnel;
pub mod wire;

pub use reap::{open_pidfd, pidfd};
pub use server::{ServeError, serve, serve_until};
pub use tunnel::Window;

/// Marks every inherited file descriptor above stderr close-on-exec, so
/// that commands never receive whatever the guest's own parent left open
/// (a backend's channel, a build tool's jobserver pipe). Call it first
/// thing, before any thread starts.
pub fn close_inherited_fds_on_exec() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        tracing::warn!("cannot list open file descriptors; inherited ones may leak to commands");
        return;
    };
    // Collect first: the directory handle itself is one of the entries.
    let fds: Vec<i32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only touch the descriptor's flags; a stale
        // fd (the closed directory handle) just fails with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// One malloc arena for every thread: the guest is mostly idle, and glibc's
/// default of an arena per thread (up to 8 per core) keeps memory that
/// blocking threads freed long ago.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // thread of ours exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Stdin and stdout registered with the reactor, when both are pipes (the
/// host and jail backends) or character devices (the VM's virtio-serial
/// port), which poll like pipes once non-blocking. Anything else is read
/// through tokio's blocking threads.
///
/// In a VM this matters beyond speed: a thread per read means the channel
/// needs new threads now and then, and a fork bomb that fills the session's
/// `pids` cgroup (which the guest shares with its commands) would leave the
/// guest unable to read the host's pings.
fn stdio_pipes() -> Option<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Sender,
)> {
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::fs::FileTypeExt as _;
    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().ok();
    let stdin: OwnedFd = dup(std::io::stdin().as_fd())?;
    let stdout: OwnedFd = dup(std::io::stdout().as_fd())?;
    let kind = |fd: &OwnedFd| {
        std::fs::File::from(fd.try_clone().ok()?)
            .metadata()
            .ok()
            .map(|m| m.file_type())
    };
    let (in_kind, out_kind) = (kind(&stdin)?, kind(&stdout)?);
    if in_kind.is_fifo() && out_kind.is_fifo() {
        let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(stdin).ok()?;
        let writer = tokio::net::unix::pipe::Sender::from_owned_fd(stdout).ok()?;
        return Some((reader, writer));
    }
    if in_kind.is_char_device() && out_kind.is_char_device() {
        for fd in [&stdin, &stdout] {
            use std::os::fd::AsRawFd as _;
            // SAFETY: fcntl on a descriptor this function owns; F_GETFL and
            // F_SETFL touch no memory.
            let ok = unsafe {
                let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                flags >= 0
                    && libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) >= 0
            };
            if !ok {
                return None;
            }
        }
        let reader = tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(stdin).ok()?;
        let writer = tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(stdout).ok()?;
        return Some((reader, writer));
    }
    None
}

/// Serves the protocol on this process's stdin and stdout until the host
/// hangs up, asks for shutdown, or sends SIGTERM/SIGHUP. Call it from a
/// process's `main` before any async runtime exists: it builds its own.
pub fn run_stdio() -> std::process::ExitCode {
    close_inherited_fds_on_exec();
    limit_malloc_arenas();
    // One thread drives everything: the guest's work is waiting on pipes,
    // pidfds and sockets, and file-system work goes to the blocking pool.
    // A single-threaded runtime saves a worker thread per core (and its
    // malloc arena) and the cross-thread wake-ups on every request.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Blocking threads (file operations) go soon after a burst.
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    // PID 1 of a jail: orphans are re-parented to the guest, which must
    // reap them. The kernel delivers to PID 1 only the signals it handles,
    // so leaving SIGTERM and SIGHUP unhandled then means no process in the
    // jail can end the session by signal (the host ends it by hanging up,
    // or by killing PID 1, its own child, from outside the namespace).
    let init = std::process::id() == 1;
    if init {
        // Not dumpable (`execve` made it so again): commands, which run as
        // the same uid, cannot read the guest's memory or open its /proc
        // files.
        // SAFETY: prctl with integer arguments touches no memory.
        unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        }
    }
    if init && let Err(e) = runtime.block_on(async { reap::start_reaping() }) {
        tracing::error!(error = %e, "cannot reap orphans as PID 1");
        return std::process::ExitCode::FAILURE;
    }
    let result = runtime.block_on(async {
        let stop = async {
            // SIGTERM and SIGHUP end the session as cleanly as a host
            // hang-up: every command's process group is killed first.
            use tokio::signal::unix::{SignalKind, signal};
            if init {
                return std::future::pending().await;
            }
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(mut term), Ok(mut hup)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = hup.recv() => {}
                    }
                }
                _ => std::future::pending().await,
            }
        };
        // Pipes and the VM's port are driven by the reactor; tokio's own
        // stdin/stdout go through a blocking thread per read, which costs a
        // thread hop on every frame.
        match stdio_pipes() {
            Some((reader, writer)) => serve_until(reader, writer, stop).await,
            None => serve_until(tokio::io::stdin(), tokio::io::stdout(), stop).await,
        }
    });
    // tokio reads stdin on a blocking thread that cannot be cancelled; after
    // a `shutdown` the host may keep the pipe open, so do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "guest stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

//! Thin, checked wrappers over the Linux system calls the jail launcher
//! needs. Every `unsafe` block of the jail lives in this file, so that a
//! reviewer can audit them in one place; callers get `io::Result`s.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// Turns a path or string into a C string, refusing interior NULs.
pub fn cstr(s: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a path contains a NUL byte and cannot be used",
        )
    })
}

/// Maps a C return value to `io::Result`, reading `errno` on -1.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Makes a system call with `call` until a signal does not interrupt it
/// (`EINTR`): its non-negative result, or the error it set.
fn retrying<T: Copy + PartialOrd + Default>(mut call: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let rc = call();
        if rc >= T::default() {
            return Ok(rc);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `mount(2)`.
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstr).transpose()?;
    let target = cstr(target)?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.map(cstr).transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null (allowed by mount(2) for these
    // arguments) or points to a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    check(rc).map(drop)
}

/// `umount2(2)`.
pub fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cstr(target)?;
    // SAFETY: `target` is a valid NUL-terminated string for the call.
    check(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// `pivot_root(2)` (no libc wrapper exists).
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let new_root = cstr(new_root)?;
    let put_old = cstr(put_old)?;
    // SAFETY: both arguments are valid NUL-terminated strings for the call.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `unshare(2)`.
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes no pointers. CLONE_FILES and CLONE_VM are never
    // passed, and the caller is single-threaded, so no other thread can
    // observe a half-changed state.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

/// `sethostname(2)`.
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes for the call.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `prctl(2)` with integer arguments only.
pub fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the options used by the jail (PDEATHSIG, NO_NEW_PRIVS,
    // CAPBSET_DROP, CAP_AMBIENT, SET_DUMPABLE, SET_SECUREBITS) take plain
    // integers, no pointers.
    check(unsafe { libc::prctl(option, arg2, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) })
}

/// `setrlimit(2)` with the soft and hard limits both set to `value`.
pub fn setrlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `lim` is a valid rlimit value for the duration of the call.
    check(unsafe { libc::setrlimit(resource, &lim) }).map(drop)
}

/// Empties the effective, permitted and inheritable capability sets of the
/// calling thread (`capset(2)`, version 3).
pub fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data have the kernel's v3 layout (one header, two
    // 32-bit data words) and live across the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The result of [`fork_sibling`].
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(libc::pid_t),
    /// In the child.
    Child,
}

/// `clone(2)` with `CLONE_PARENT`: `fork`, but the child is a child of
/// *our* parent (its death signal goes there, and only that parent can reap
/// it), so that we may exit and leave it running under the host.
///
/// Callers must be single-threaded (the jail launcher is: it runs before any
/// runtime or thread is started), so the child may run ordinary Rust code
/// rather than only async-signal-safe functions.
pub fn fork_sibling() -> io::Result<Forked> {
    clone_with(libc::CLONE_PARENT)
}

/// `clone(2)` as a `fork` with extra `flags` (namespaces, `CLONE_PARENT`),
/// the child's death reported by `SIGCHLD`. The caller must be
/// single-threaded, as for [`fork_sibling`].
pub fn clone_with(flags: libc::c_int) -> io::Result<Forked> {
    let flags = flags | libc::SIGCHLD;
    // SAFETY: without `CLONE_VM` and with a null stack this is a fork (the
    // child gets a copy of the address space and of the stack, and returns
    // here like `fork` does); the launcher never starts a thread, so no lock
    // can be held in the copy. The null pointer arguments are unused
    // without the `*_SETTID`/`CLONE_SETTLS` flags.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => libc::pid_t::try_from(pid)
            .map(Forked::Parent)
            .map_err(io::Error::other),
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors were just created by the kernel and belong
    // to no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads one byte from `fd`, retrying on `EINTR`; `None` at end of file.
pub fn read_byte(fd: BorrowedFd<'_>) -> io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    Ok((read(fd, &mut byte)? == 1).then_some(byte[0]))
}

/// Writes all of `bytes` to the raw descriptor `fd` (no buffering), retrying
/// on `EINTR`.
pub fn write_all(fd: libc::c_int, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid buffer of `bytes.len()` bytes.
        let rc = retrying(|| unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) })?;
        if rc == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = bytes.get(rc.unsigned_abs()..).unwrap_or_default();
    }
    Ok(())
}

/// `kill(pid, signal)`. Only for a child not yet reaped, whose pid cannot
/// have been reused.
pub fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers and touches no memory.
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// `getppid(2)`.
pub fn parent_pid() -> libc::pid_t {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() }
}

/// `waitpid(pid, WNOHANG)`: how our child `pid` ended, or `None` while it
/// runs. Retries on `EINTR`.
pub fn try_waitpid(pid: libc::pid_t) -> io::Result<Option<Exit>> {
    Ok(wait(pid, libc::WNOHANG)?.map(|(_, exit)| exit))
}

/// `waitpid(pid, flags)`, retrying on `EINTR`: the pid reaped and how it
/// ended, or `None` when `WNOHANG` found nothing ended yet.
fn wait(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<(libc::pid_t, Exit)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid out-pointer for the call.
    let rc = retrying(|| unsafe { libc::waitpid(pid, &mut status, flags) })?;
    Ok((rc != 0).then(|| (rc, decode_status(status))))
}

fn decode_status(status: libc::c_int) -> Exit {
    if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    }
}

/// How a child ended, from `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// `waitpid(pid, 0)`, retrying on `EINTR`; `pid` -1 waits for any child.
/// Returns the pid reaped and how it ended (stops are not requested).
pub fn waitpid(pid: libc::pid_t) -> io::Result<(libc::pid_t, Exit)> {
    wait(pid, 0)?.ok_or_else(|| io::Error::other("waitpid returned no child"))
}

/// `execve(2)` with an explicit (usually empty) environment. Returns only on
/// failure.
pub fn execve(program: &Path, argv: &[CString], envp: &[CString]) -> io::Error {
    let program = match cstr(program) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: `program` is NUL-terminated; both arrays are NULL-terminated
    // and point to strings that outlive the call (which only returns on
    // failure).
    unsafe { libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// Sets `IFF_UP` on the interface `name` (brings up `lo` in a fresh network
/// namespace) with `SIOCSIFFLAGS`.
pub fn interface_up(name: &CStr) -> io::Result<()> {
    // SAFETY: socket takes no pointers.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.to_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; the ioctls
    // read and write only that struct.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: reading the flags member the kernel just filled in.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
}

/// Current real uid and gid of the process.
pub fn ids() -> (u32, u32) {
    // SAFETY: getuid and getgid cannot fail and take no arguments.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// The landlock ABI version the kernel supports: 0 when landlock is absent
/// or disabled.
pub fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with the VERSION flag the kernel reads no attributes: a null
    // pointer and zero size are what landlock_create_ruleset(2) requires.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 { 0 } else { rc }
}

/// Exits the process immediately with `code`, without running destructors
/// or flushing stdio buffers a forked child shares with its parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// The mount flags (`ST_*`) of the file system mounted at `path`.
pub fn statvfs_flags(path: &Path) -> io::Result<libc::c_ulong> {
    let path = cstr(path)?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` a valid out-pointer.
    check(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    Ok(st.f_flag)
}

/// Runs `f` in a forked child and returns its result as seen by the
/// parent: `Ok(())` when `f` succeeded, else the errno it failed with.
///
/// Safe to call from a multi-threaded process only because `f` must do
/// nothing but raw system calls (the child of a multi-threaded `fork` may
/// only call async-signal-safe functions): used by the feature probes.
pub fn probe_in_child(f: fn() -> io::Result<()>) -> io::Result<()> {
    // SAFETY: the child runs only `f` (documented to make raw system calls
    // only) and `_exit`, both async-signal-safe.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let code = match f() {
                Ok(()) => 0,
                Err(e) => e.raw_os_error().unwrap_or(255).clamp(1, 255),
            };
            exit_now(code)
        }
        pid => match waitpid(pid)?.1 {
            Exit::Code(0) => Ok(()),
            Exit::Code(errno) => Err(io::Error::from_raw_os_error(errno)),
            Exit::Signal(s) => Err(io::Error::other(format!("probe killed by signal {s}"))),
        },
    }
}

/// Whether the calling process may write into `dir` (`access(W_OK)`).
pub fn writable(dir: &Path) -> bool {
    let Ok(path) = cstr(dir) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string for the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
}

/// Marks every descriptor from `first` up close-on-exec, so that nothing
/// the host's caller left open reaches a program executed next. Uses
/// `close_range` (Linux 5.11); on older kernels, walks `/proc/self/fd`.
pub fn cloexec_from(first: libc::c_int) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let first = first.unsigned_abs();
    // SAFETY: close_range takes plain integers; with CLOSE_RANGE_CLOEXEC it
    // only sets a flag on descriptors, closing none that Rust owns.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<libc::c_int> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd: &libc::c_int| fd.unsigned_abs() >= first)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD with FD_CLOEXEC changes a flag of `fd` (or fails
        // with EBADF for the directory's own descriptor, now closed).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// `dup2(from, to)`: `to` becomes a copy of `from`, without close-on-exec.
pub fn dup2(from: BorrowedFd<'_>, to: libc::c_int) -> io::Result<()> {
    // SAFETY: dup2 takes plain descriptors; `to` is replaced atomically.
    check(unsafe { libc::dup2(from.as_raw_fd(), to) }).map(drop)
}

/// `posix_spawn(3)` of `program`: a new process sharing this one's memory
/// until it executes (glibc's `CLONE_VM | CLONE_VFORK`), so no copy of the
/// page tables is made, as `fork` would; the child inherits the working
/// directory, the descriptors not close-on-exec, the signal mask and the
/// ignored signals. Returns the child's pid, or why it could not start
/// (the `execve` error included).
pub fn spawn(program: &CStr, argv: &[CString], envp: &[CString]) -> io::Result<libc::pid_t> {
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut libc::c_char> =
        envp.iter().map(|a| a.as_ptr().cast_mut()).collect();
    envp_ptrs.push(std::ptr::null_mut());
    let mut pid = 0;
    // SAFETY: `program` is NUL-terminated; both arrays are NULL-terminated
    // and point to strings that outlive the call, which does not write
    // through them; no file actions and no attributes.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
        )
    };
    match rc {
        0 => Ok(pid),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Restores the default action of `SIGPIPE`, which the Rust runtime
/// ignores and which a program executed next would otherwise inherit
/// ignored.
pub fn default_sigpipe() {
    // SAFETY: SIG_DFL is a valid disposition; no handler is installed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// `poll(2)` on `fds` for readability, for at most `timeout` (`None`:
/// forever); retried on `EINTR` without adjusting the timeout. Returns
/// which were readable, hung up or in error, in the order given.
pub fn poll_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<std::time::Duration>,
) -> io::Result<Vec<bool>> {
    let ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis().max(1)).unwrap_or(libc::c_int::MAX)
    });
    Ok(poll_in(fds, ms)?.into_iter().map(|r| r != 0).collect())
}

/// `poll(2)` for `POLLIN` on `fds` for `ms` milliseconds (-1: forever),
/// retried on `EINTR`; each descriptor's returned events.
fn poll_in(fds: &[BorrowedFd<'_>], ms: libc::c_int) -> io::Result<Vec<libc::c_short>> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let n = libc::nfds_t::try_from(polls.len()).map_err(io::Error::other)?;
    // SAFETY: `polls` is a valid array of `n` pollfd structures.
    retrying(|| unsafe { libc::poll(polls.as_mut_ptr(), n, ms) })?;
    Ok(polls.iter().map(|p| p.revents).collect())
}

/// `read(2)` into `buf`, retrying on `EINTR`; 0 at end of file.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid, exclusively borrowed buffer of its length.
    retrying(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
        .map(isize::unsigned_abs)
}

/// `chdir(2)`.
pub fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string for the call.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// Whether every writer of the pipe whose read end is `fd` has closed it
/// (asked without waiting).
pub fn hung_up(fd: BorrowedFd<'_>) -> bool {
    poll_in(&[fd], 0).is_ok_and(|r| r.first().is_some_and(|e| e & libc::POLLHUP != 0))
}

/// Signals blocked in this process, to be read from a [`signalfd`] instead
/// of acted on; restore with [`restore_signal_mask`].
pub struct BlockedSignals {
    set: libc::sigset_t,
    old: libc::sigset_t,
}

/// Blocks `signals` for the calling thread (the whole process when it is
/// single-threaded) and returns what to restore.
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<BlockedSignals> {
    // SAFETY: all-zero sigset_t values are valid for sigemptyset to fill.
    let (mut set, mut old): (libc::sigset_t, libc::sigset_t) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: `set` is a valid sigset_t; the signal numbers are plain ints.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    // SAFETY: both pointers are valid sigset_t values.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(BlockedSignals { set, old })
}

/// Restores the signal mask from before [`block_signals`].
pub fn restore_signal_mask(blocked: &BlockedSignals) {
    // SAFETY: `old` is the valid mask pthread_sigmask returned.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &blocked.old, std::ptr::null_mut()) };
}

/// A non-blocking, close-on-exec `signalfd` for the signals `blocked`
/// holds: readable when one is pending.
pub fn signalfd(blocked: &BlockedSignals) -> io::Result<OwnedFd> {
    // SAFETY: `set` is a valid sigset_t; -1 asks for a new descriptor.
    let fd =
        check(unsafe { libc::signalfd(-1, &blocked.set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: `fd` was just returned by the kernel and belongs to no one
    // else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The next pending signal from a [`signalfd`], if any.
pub fn read_signal(fd: BorrowedFd<'_>) -> Option<libc::c_int> {
    // SAFETY: an all-zero signalfd_siginfo is a valid value of this plain
    // C struct.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is a valid, exclusively borrowed buffer of `size`
    // bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut info).cast(), size) };
    (n.unsigned_abs() == size).then(|| libc::c_int::try_from(info.ssi_signo).unwrap_or(0))
}

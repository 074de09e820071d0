//! The jail launcher (`cubicle-jail-init`, or `cubicle __jail-init`):
//! creates the namespaces, forks the jail's PID 1 as a child of the host,
//! hands it over and exits; PID 1 builds the cubicle around itself and ends
//! by executing the guest. The steps and their order are documented in
//! [`super`]; each is a function named there.
//!
//! This runs as the first thing in a fresh, single-threaded process — no
//! async runtime, no threads — because `unshare(CLONE_NEWUSER)` refuses a
//! multi-threaded caller, and because it lets the forked children run
//! ordinary Rust code (no lock can be held by a thread that does not exist).
//!
//! Failures are one line on stderr, `cubicle-jail: <what> — <what to do>`,
//! and a non-zero exit; the host turns that line into
//! [`crate::SandboxError::Start`].

use std::ffi::CString;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd};
use std::path::Path;

use super::config::LaunchSpec;
use super::namespaces::errno_name;
use super::sys::{self, Forked};
use super::{landlock, limits, mounts, namespaces, seccomp};

/// Prefix of every line the launcher writes to stderr.
pub const ERROR_PREFIX: &str = "cubicle-jail:";

/// What follows [`ERROR_PREFIX`] on a line that only warns: the host logs
/// it but does not take it for the reason a start failed.
const WARNING: &str = "warning:";

/// Prints a warning line (see [`WARNING`]).
pub(super) fn warn(message: std::fmt::Arguments<'_>) {
    eprintln!("{ERROR_PREFIX} {WARNING} {message}");
}

/// The message of a line the launcher or PID 1 printed (the text after
/// [`ERROR_PREFIX`]) and whether it only warns; `None` for any other line.
pub(super) fn launcher_message(line: &str) -> Option<(&str, bool)> {
    let message = line.strip_prefix(ERROR_PREFIX)?.trim();
    Some((message, message.starts_with(WARNING)))
}

/// Exit status of a launcher that could not set the jail up.
pub const SETUP_FAILED: i32 = 125;

/// Where the guest binary is inside the jail.
pub const GUEST_PATH: &str = "/.cubicle/guest";

/// A setup step that failed, as one line for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitError(String);

impl InitError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InitError {}

/// Length of the hand-off record: [`HANDOFF_MAGIC`], then PID 1's host pid
/// (little-endian `u32`).
pub const HANDOFF_LEN: usize = 8;

/// First bytes of the hand-off record, so that the host can tell a
/// launcher that speaks it from anything else.
const HANDOFF_MAGIC: [u8; 4] = *b"CJP1";

/// The record the launcher writes on its stdout, before the guest's first
/// byte, to hand PID 1 over to the host: who it is.
pub fn handoff_record(pid1: u32) -> [u8; HANDOFF_LEN] {
    let mut record = [0; HANDOFF_LEN];
    let (magic, pid) = record.split_at_mut(HANDOFF_MAGIC.len());
    magic.copy_from_slice(&HANDOFF_MAGIC);
    pid.copy_from_slice(&pid1.to_le_bytes());
    record
}

/// PID 1's host pid from a hand-off record, or `None` when `record` is not
/// one.
pub fn parse_handoff(record: &[u8; HANDOFF_LEN]) -> Option<u32> {
    let (magic, pid) = record.split_at(HANDOFF_MAGIC.len());
    if magic != HANDOFF_MAGIC {
        return None;
    }
    let pid = u32::from_le_bytes(pid.try_into().ok()?);
    (pid > 1).then_some(pid)
}

/// Runs the launcher with `spec` and never returns: exits with status 0
/// once PID 1 is handed over to the host, or [`SETUP_FAILED`] after printing
/// why the jail could not be built.
pub fn main(spec: LaunchSpec) -> ! {
    match launch(&spec) {
        Ok(()) => sys::exit_now(0),
        Err(e) => {
            eprintln!("{ERROR_PREFIX} {e}");
            sys::exit_now(SETUP_FAILED)
        }
    }
}

/// Parses the process arguments (see [`LaunchSpec::from_args`]) and runs
/// [`main`].
pub fn main_from_args() -> ! {
    match LaunchSpec::from_args(std::env::args_os()) {
        Ok(spec) => main(spec),
        Err(e) => {
            eprintln!("{ERROR_PREFIX} {e}");
            sys::exit_now(2)
        }
    }
}

/// Steps 0–2, in the launcher process on the host side of the namespaces.
fn launch(spec: &LaunchSpec) -> Result<(), InitError> {
    if let Some(parent) = spec.parent_pid {
        die_with_parent(parent)?;
    }
    check_single_threaded()?;
    // Step 0: the session cgroup, joined while we still have the host's view
    // of /sys/fs/cgroup; the namespaces below are then rooted in it.
    let cgroups = match &spec.cgroup {
        Some(name) => limits::enter_cgroup(name, &spec.limits),
        None => Vec::new(),
    };
    // The kernel does not apply RLIMIT_NPROC to processes of host uid 0, so
    // a jail started by root needs the pids cgroup to stop a fork bomb.
    warn_if_root_without_pids(&cgroups);
    // Step 1.
    namespaces::unshare_all()?;
    // Step 2: the first child is PID 1 of the new PID namespace. It is made
    // a child of the host process rather than of the launcher, so that the
    // launcher can exit once it has handed it over: a jail is then PID 1
    // and what runs in it, and no process waits in between.
    let pipe = |what| {
        sys::pipe().map_err(|e| {
            InitError::new(format!("cannot create the {what} pipe: {}", errno_name(&e)))
        })
    };
    let (ready_rx, ready_tx) = pipe("ready")?;
    let (go_rx, go_tx) = pipe("go")?;
    match sys::fork_sibling()
        .map_err(|e| InitError::new(format!("cannot fork: {}", errno_name(&e))))?
    {
        Forked::Child => {
            drop((ready_rx, go_tx));
            // Both pipes stay open until an error is printed, so that the
            // launcher never finds them closed before PID 1 said why.
            let status = match pid1(spec, ready_tx.as_fd(), go_rx.as_fd()) {
                Ok(status) => status,
                Err(e) => {
                    eprintln!("{ERROR_PREFIX} {e}");
                    SETUP_FAILED
                }
            };
            sys::exit_now(status)
        }
        Forked::Parent(pid) => {
            drop((ready_tx, go_rx));
            hand_over(spec, pid, ready_rx, go_tx)
        }
    }
}

/// Step 2, in the launcher: tells the host PID 1's pid (the hand-off record
/// on stdout, before any byte of the guest's) at once, so that whatever
/// happens next the host knows which child of its own to reap; then, once
/// PID 1 has asked to die with the host and the host is still there (so
/// that request is tied to it), lets PID 1 go on.
///
/// A failure after the fork kills PID 1, which the host then reaps: its
/// pid cannot have been reused, since only the host can reap it.
fn hand_over(
    spec: &LaunchSpec,
    pid: libc::pid_t,
    ready: OwnedFd,
    go: OwnedFd,
) -> Result<(), InitError> {
    let checked = tell_host(pid).and_then(|()| check_host(spec, ready));
    if checked.is_err() {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    checked?;
    // A failure here means PID 1 has ended already (and said why), or it
    // finds the pipe closed when we exit and stops: nothing to add.
    let _ = sys::write_all(go.as_raw_fd(), &[1]);
    Ok(())
}

/// Writes the hand-off record.
fn tell_host(pid: libc::pid_t) -> Result<(), InitError> {
    let pid1 = u32::try_from(pid)
        .map_err(|_| InitError::new(format!("the jail's first process has a bad pid {pid}")))?;
    sys::write_all(1, &handoff_record(pid1)).map_err(|e| {
        InitError::new(format!(
            "cannot tell the host about the jail: {}",
            errno_name(&e)
        ))
    })
}

/// Waits for PID 1's word that it asked to die with its parent, and checks
/// the host is still our parent, so that the request is tied to it.
fn check_host(spec: &LaunchSpec, ready: OwnedFd) -> Result<(), InitError> {
    match sys::read_byte(ready.as_fd()) {
        Ok(Some(_)) => {}
        Ok(None) => return Err(InitError::new("the jail's first process ended at once")),
        Err(e) => {
            return Err(InitError::new(format!(
                "cannot hear from the jail's first process: {}",
                errno_name(&e)
            )));
        }
    }
    // PID 1 set its parent-death signal before saying so: if the host is
    // still our parent now, it was PID 1's parent then, and its death will
    // kill PID 1. (Had it died before, PID 1 went to another parent, and no
    // signal would ever come.)
    if let Some(parent) = spec.parent_pid
        && u32::try_from(sys::parent_pid()).ok() != Some(parent)
    {
        return Err(InitError::new(
            "the process that started the launcher has exited",
        ));
    }
    Ok(())
}

/// Asks for `SIGKILL` when the host process that started the launcher dies
/// (PID 1, the host's child, asks the same in step 2), then
/// checks that `parent` is still the parent: had it died before the request,
/// no signal would ever come.
fn die_with_parent(parent: u32) -> Result<(), InitError> {
    die_with_parent_process()?;
    if u32::try_from(sys::parent_pid()).ok() != Some(parent) {
        return Err(InitError::new(
            "the process that started the launcher has already exited",
        ));
    }
    Ok(())
}

/// Asks for `SIGKILL` when the parent process dies (`PR_SET_PDEATHSIG`).
/// The callers check that the parent was still there when they asked.
fn die_with_parent_process() -> Result<(), InitError> {
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        .map(drop)
        .map_err(|e| InitError::new(format!("cannot set the parent-death signal: {e}")))
}

/// PID 1 of the jail: the rest of step 2, steps 3–8 on itself, then step 9:
/// it becomes the guest. Returns only when that fails.
fn pid1(spec: &LaunchSpec, ready: BorrowedFd<'_>, go: BorrowedFd<'_>) -> Result<i32, InitError> {
    // Its parent is the host process (`CLONE_PARENT`): when the host dies,
    // take the whole jail down, since the kernel kills every process of a
    // PID namespace when its PID 1 dies. The request survives the `execve`
    // below: it changes no credentials.
    die_with_parent_process()?;
    // The launcher now checks that the host is still there and tells it who
    // we are, while we build the jail.
    sys::write_all(ready.as_raw_fd(), &[1])
        .map_err(|e| InitError::new(format!("cannot reach the launcher: {}", errno_name(&e))))?;
    build(spec)?;
    // Step 9: the guest is PID 1 itself (it reaps orphans), which saves a
    // process per session and a fork on every start.
    let argv = guest_argv(spec)?;
    let envp = guest_env(spec)?;
    // The hand-off record must reach the host before any byte of the
    // guest's, and the guest must not run for a host that is gone.
    if !matches!(sys::read_byte(go), Ok(Some(_))) {
        return Err(InitError::new(
            "the launcher stopped before handing the jail over",
        ));
    }
    // Descriptors the host's caller left open without close-on-exec stay
    // out of the jail.
    sys::cloexec_from(3);
    let err = sys::execve(Path::new(GUEST_PATH), &argv, &envp);
    Err(InitError::new(format!(
        "cannot start the guest: {}",
        errno_name(&err)
    )))
}

/// Steps 3–8, in PID 1, on itself.
fn build(spec: &LaunchSpec) -> Result<(), InitError> {
    // Step 3.
    mounts::build_root(spec)?;
    // Step 4.
    namespaces::configure_uts_and_net()?;
    // Step 5.
    limits::apply_rlimits(&spec.limits)?;
    // Step 6.
    drop_privileges()?;
    // Step 7.
    landlock::restrict(spec)?;
    // Step 8.
    seccomp::install()
}

/// Where a one-shot jail's PID 1 comes from, for [`one_shot_pid1`].
pub(super) struct OneShotStart<'a> {
    /// The read end of a pipe only the host holds open for writing: it
    /// hangs up when the host has exited.
    pub host_alive: BorrowedFd<'a>,
    /// The host's uid and gid, mapped to 0 inside.
    pub ids: (u32, u32),
    /// The session cgroup directories the host created, to join.
    pub cgroups: &'a [std::path::PathBuf],
}

/// PID 1 of a one-shot jail ([`super::oneshot`]), cloned by the host
/// straight into the namespaces: the rest of steps 0–2 (parent-death
/// signal, id maps, the session cgroup and then the cgroup namespace),
/// steps 3–8 as for a session, then step 9: the command. Returns the status
/// to exit with, or why the jail could not be built.
pub(super) fn one_shot_pid1(
    spec: &LaunchSpec,
    start: &OneShotStart<'_>,
    command: &super::oneshot::Command,
) -> Result<i32, InitError> {
    die_with_parent_process()?;
    // Had the host died before the request, no signal would ever come.
    // (`getppid` cannot tell: PID 1's parent is outside its namespace.)
    if sys::hung_up(start.host_alive) {
        return Err(InitError::new(
            "the process that started the jail has exited",
        ));
    }
    namespaces::map_ids(start.ids.0, start.ids.1)?;
    // Joining moves only this thread, which is the whole process, and
    // skips the kernel's global lock (see `limits::join`). A cgroup that
    // cannot be joined leaves its limits to the rlimits of step 5.
    limits::join_cgroups(start.cgroups);
    sys::unshare(libc::CLONE_NEWCGROUP).map_err(|e| {
        InitError::new(format!(
            "cannot create the cgroup namespace: {}",
            errno_name(&e)
        ))
    })?;
    build(spec)?;
    let prepared = command.prepare()?;
    Ok(super::oneshot::pid1(&prepared))
}

/// Warns that a jail started by host root has no `pids` cgroup, so that
/// nothing caps its processes (`RLIMIT_NPROC` does not apply to uid 0).
pub(super) fn warn_if_root_without_pids(cgroups: &[std::path::PathBuf]) {
    if sys::ids().0 == 0 && !limits::has_pids_cgroup(cgroups) {
        warn(format_args!(
            "started as root without a pids cgroup: the process limit is not enforced \
             (RLIMIT_NPROC does not apply to host uid 0)"
        ));
    }
}

/// Step 6: `no_new_privs`, then every capability gone: the bounding set
/// (so no `execve` can regain one), the ambient set, and the effective,
/// permitted and inheritable sets. Securebits make uid 0 inside ordinary:
/// executing a program as root grants nothing, and this is locked.
fn drop_privileges() -> Result<(), InitError> {
    let fail = |what: &'static str| {
        move |e: std::io::Error| InitError::new(format!("cannot {what}: {}", errno_name(&e)))
    };
    sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(fail("set no_new_privs"))?;
    // Not dumpable: processes in the jail cannot read PID 1's memory or
    // open its /proc files while it holds the launch spec (`execve` makes
    // it dumpable again; the guest then clears the flag itself).
    sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(fail("clear the dumpable flag"))?;
    const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
    const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
    const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
    const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
    const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;
    sys::prctl(
        libc::PR_SET_SECUREBITS,
        SECBIT_NOROOT
            | SECBIT_NOROOT_LOCKED
            | SECBIT_NO_SETUID_FIXUP
            | SECBIT_NO_SETUID_FIXUP_LOCKED
            | SECBIT_KEEP_CAPS_LOCKED
            | SECBIT_NO_CAP_AMBIENT_RAISE
            | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
    )
    .map_err(fail("set securebits"))?;
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_ulong>().ok())
        .unwrap_or(63);
    for cap in 0..=last_cap {
        match sys::prctl(libc::PR_CAPBSET_DROP, cap) {
            Ok(_) => {}
            // Capabilities this kernel does not know.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(fail("drop the capability bounding set")(e)),
        }
    }
    const PR_CAP_AMBIENT_CLEAR_ALL: libc::c_ulong = 4;
    sys::prctl(libc::PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        .map_err(fail("clear the ambient capabilities"))?;
    sys::clear_capabilities().map_err(fail("drop capabilities"))?;
    Ok(())
}

fn guest_argv(spec: &LaunchSpec) -> Result<Vec<CString>, InitError> {
    std::iter::once("cubicle-guest")
        .chain(spec.guest_args.iter().map(String::as_str))
        .map(|a| sys::cstr(a).map_err(|e| InitError::new(format!("bad guest argument: {e}"))))
        .collect()
}

/// Step 9's environment: empty but for the guest's log filter. Commands get
/// the session environment from the protocol's hello, never from here.
fn guest_env(spec: &LaunchSpec) -> Result<Vec<CString>, InitError> {
    spec.guest_log
        .iter()
        .map(|f| {
            sys::cstr(format!("CUBICLE_GUEST_LOG={f}"))
                .map_err(|e| InitError::new(format!("bad guest log filter: {e}")))
        })
        .collect()
}

/// `unshare(CLONE_NEWUSER)` fails with `EINVAL` in a multi-threaded
/// process; say so plainly instead.
pub(super) fn check_single_threaded() -> Result<(), InitError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(1);
    if threads > 1 {
        return Err(InitError::new(format!(
            "the launcher must run before any thread is started (found {threads} threads) — \
             call jail::init::main first thing in main()"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn handoff_record_round_trips_and_refuses_anything_else() {
        let record = handoff_record(123_456);
        assert_eq!(&record[..4], b"CJP1");
        assert_eq!(parse_handoff(&record), Some(123_456));
        // The guest's first frame, or a launcher of another version.
        assert_eq!(parse_handoff(&[0, 0, 0, 42, b'{', b'"', b't', b'y']), None);
        // PID 0 and 1 are never a jail's PID 1 as the host sees it.
        assert_eq!(parse_handoff(&handoff_record(1)), None);
    }
}

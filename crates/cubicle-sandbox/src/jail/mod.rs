//! The `jail` backend (Linux): a cubicle made of namespaces, a private root
//! file system, landlock, seccomp and resource limits, around the same
//! unchanged `cubicle-guest` every backend runs.
//!
//! The host side ([`JailComputer`]) starts the launcher `cubicle-jail-init`
//! with piped stdin and stdout and the [`LaunchSpec`] as its argument. The
//! launcher creates the namespaces and forks the jail's PID 1 as a child of
//! the host process, hands it over and exits; PID 1 builds the jail around
//! itself and finally executes the guest, which serves the guest protocol
//! on the pipes it inherited. A running jail is thus PID 1 and what runs in
//! it, nothing more. One jail is started per session and kept; every
//! command is a request to its guest.
//!
//! # How the jail is built, step by step
//!
//! In the order the code runs; each step names the function that does it.
//! Before step 0 the launcher asks for `SIGKILL` when the host process that
//! started it dies (`init::die_with_parent`, checking it is still that
//! process's child), so that the host can start it with `posix_spawn`.
//!
//! 0. **Session cgroup** — [`limits::enter_cgroup`], in the launcher, still
//!    with the host's view: where cgroup v1 `pids` and `memory` are
//!    writable (root), create `cubicle/<session>` in each, set `pids.max`
//!    and `memory.limit_in_bytes`, and move in (by writing `0` to `tasks`:
//!    the launcher is single-threaded, and unlike `cgroup.procs` this does
//!    not wait for an RCU grace period). Optional: without it the rlimits of
//!    step 5 still apply. (Delegated cgroup v2 is not handled.) The session
//!    cgroups of hosts that died without removing theirs (killed outright)
//!    are swept first.
//! 1. **Namespaces** — [`namespaces::unshare_all`]: one `unshare` of user,
//!    mount, PID, network, IPC, UTS and cgroup namespaces; then
//!    `setgroups` = `deny` and `uid_map`/`gid_map` map the caller's uid and
//!    gid to 0 inside (and nothing else: every other host uid shows up as
//!    `nobody`). The launcher checks first that it is single-threaded.
//! 2. **PID 1** — `init::launch` forks with `CLONE_PARENT`: the child is
//!    PID 1 of the new PID namespace and a child of the host process, not
//!    of the launcher. PID 1 sets `PR_SET_PDEATHSIG` = `SIGKILL` (tied to
//!    the host thread that started the launcher, which is the thread the
//!    launcher's own parent-death signal is tied to) and tells the launcher
//!    over a pipe. Right after the fork the launcher writes the hand-off
//!    record (`CJP1` and PID 1's host pid, [`init::handoff_record`]) on
//!    stdout, so that the host knows which child of its own to reap
//!    whatever happens next; it then waits for PID 1's word and checks that
//!    the host is still its parent (had the host died before PID 1's
//!    request, no signal would come: it kills PID 1 and fails instead),
//!    lets PID 1 go on and exits with status 0. PID 1 builds the jail
//!    meanwhile (steps 3–8) but waits for that go before step 9, so that
//!    the record comes before any byte of the guest's and no guest runs for
//!    a host that is gone. The host reads the record, takes PID 1 over (a
//!    pidfd on its reactor: it waits for, kills and reaps it, also when the
//!    start fails) and reaps the launcher.
//! 3. **Root file system** — [`mounts::build_root`], in PID 1:
//!    (a) `/` becomes recursively private, so no mount propagates to the
//!    host; every source is opened (`O_PATH`) before anything is mounted;
//!    (b) a tmpfs becomes the new root;
//!    (c) read-only, nosuid, nodev, non-recursive binds of the image's
//!    top-level directories, or of the host's `/usr`, `/bin`, `/sbin`,
//!    `/lib*` (usrmerge symlinks recreated as symlinks) and an allowlist of
//!    `/etc` entries (`ssl`, `ca-certificates*`, `alternatives`, `ld.so.*`,
//!    `nsswitch.conf`, `localtime`, `fonts`, `python3*`, …); `passwd`,
//!    `group`, `hosts` and `hostname` are generated, never the host's —
//!    there is no `/home`, `/root`, `/run`, `/var/run`, `/etc/shadow`, host
//!    `/tmp` or any host socket; on an image, the generated four are bound
//!    over the image's own and its `shadow`, `gshadow` and `sudoers` are
//!    hidden (`/dev/null` bound over them), so `/etc` looks the same on
//!    either root;
//!    (d) a fresh `/proc` of the new PID namespace, with `/proc/sys`,
//!    `/proc/sysrq-trigger`, `/proc/irq`, `/proc/bus`, `/proc/fs` bound
//!    read-only and `/proc/kcore`, `/proc/keys`, `/proc/kallsyms`, … hidden;
//!    (e) `/dev` on a small tmpfs: binds of the host's `null`, `zero`,
//!    `full`, `random`, `urandom`, `tty`, a new `devpts` instance, a `shm`
//!    tmpfs and the `fd`/`stdin`/`stdout`/`stderr` symlinks;
//!    (f) `/tmp` on a size-capped tmpfs;
//!    (g) `/workspace` bound read-write from the host's workspace, each grant
//!    at `/mnt/<name>` (read-only grants remounted
//!    `MS_RDONLY|MS_NOSUID|MS_NODEV`, which even root inside cannot undo:
//!    the remount needs `CAP_SYS_ADMIN`, dropped in step 6, and `mount` is
//!    refused by step 8), the guest bound read-only at `/.cubicle/guest`;
//!    (h) `pivot_root(".", ".")`, the old root detached (`MNT_DETACH`),
//!    `chdir("/")`, and the root tmpfs itself remounted read-only.
//! 4. **Host name and network** — [`namespaces::configure_uts_and_net`]:
//!    hostname `cubicle`; `lo` up. The network namespace has no other
//!    interface, so there is no route out; the guest's egress listener on
//!    `127.0.0.1:3128` is the one way, tunnelled over the protocol to the
//!    host, which refuses every tunnel until the egress proxy exists.
//! 5. **Limits** — [`limits::apply_rlimits`]: `RLIMIT_NPROC`, `RLIMIT_DATA`,
//!    `RLIMIT_NOFILE`, `RLIMIT_FSIZE`, `RLIMIT_CORE` = 0 and optionally
//!    `RLIMIT_CPU`, soft = hard; inherited by the guest and every command.
//! 6. **Privileges** — `init::drop_privileges`: `no_new_privs`; PID 1 not
//!    dumpable; securebits `NOROOT`, `NO_SETUID_FIXUP`,
//!    `NO_CAP_AMBIENT_RAISE` (locked); the capability bounding set emptied,
//!    the ambient set cleared, and the effective, permitted and inheritable
//!    sets emptied.
//! 7. **Landlock** — [`landlock::restrict`]: read and execute anywhere in
//!    the new root, write only under `/workspace`, `/tmp`, `/dev/shm`,
//!    `/dev/pts`, `/dev/null`-like devices and read-write grants. Fails
//!    closed unless fully enforced (ABI 2, Linux 5.19), except with
//!    `dangerously_allow_no_landlock`.
//! 8. **Seccomp** — [`seccomp::install`]: see that module for the list.
//! 9. **The guest** — `init::pid1` executes `/.cubicle/guest` itself, with
//!    an empty environment (the session's environment arrives in the
//!    protocol's hello): the guest is PID 1. Seeing that, it reaps every
//!    process that ends (orphans included), takes no signal from inside the
//!    jail (the kernel delivers to PID 1 only signals it handles, and it
//!    handles none but `SIGCHLD`), and makes itself non-dumpable again.
//!    When it exits the kernel kills everything left in the namespace.
//! 10. **Workspace cap** — on the host, once the guest answers:
//!     `JailComputer::start` spawns a monitor that every 250 ms adds up the
//!     disk space of the host's workspace folder — allocated blocks
//!     (`st_blocks × 512`, so sparse files count for what they use), the
//!     symbolic links themselves rather than what they point to — against
//!     [`Limits::workspace_bytes`] (default 10 GiB). The walk is resumable
//!     and bounded: at most 50,000 entries per pass (a larger tree takes
//!     several passes; a partial sum already over the cap counts at once),
//!     at most 32 open directories and 8,192 remembered deeper ones, never
//!     the whole tree in memory. Over the cap, it sends `SIGKILL` to the
//!     process group of every command in flight
//!     ([`GuestClient::signal_all`]), and each killed command's result gets
//!     a last stderr line, `cubicle: the workspace is over its N MiB cap
//!     (M MiB used); the command was stopped — delete files to continue`.
//!     While over, new commands still run (so `rm` can free space), each
//!     warned the same way, and the workspace is measured afresh as each
//!     ends, so the warning goes as soon as files are deleted; any growth of
//!     more than 1 MiB over the lowest usage since the last kill kills every
//!     command again. The cap is enforced after the fact: a writer can
//!     overshoot by what it writes between two measurements (write rate ×
//!     (250 ms + one pass), a few MiB for a shell loop), and a
//!     process that left its command's process group (`setsid` and a
//!     daemon) escapes the kill though its growth is still reported. It is
//!     not a kernel quota because `/workspace` is a bind mount of a host
//!     folder: project quotas, a loop-mounted image or a size-capped tmpfs
//!     need root on the host (or would move the workspace off the host's
//!     folder, which the session must see), and the per-file
//!     `RLIMIT_FSIZE` of step 5 does not bound many files.
//!
//! Steps 3–8 run in PID 1 itself before it becomes the guest. Any failure
//! (of the launcher or of PID 1) prints one line, `cubicle-jail: <what> —
//! <what to do>`, and exits with status 125; [`JailComputer::start`]
//! returns that line as [`SandboxError::Start`].
//!
//! `cubicle sandbox exec` runs one command in a *one-shot* jail
//! ([`oneshot`]): the same steps 3–8, started without a launcher (PID 1 is
//! cloned straight into the namespaces from `main`), and with PID 1 running
//! the command instead of becoming the guest.
//!
//! Stopping the jail (`Computer::stop`) asks the guest to shut down, waits
//! for PID 1 to exit (else kills it) and reaps it; every process in the PID
//! namespace dies with it. When the host process dies instead, however it
//! dies, PID 1 gets its parent-death signal. Mounts live only in the jail's mount
//! namespace, so nothing remains on the host but the session cgroup
//! directories, which `stop` removes.
//!
//! [`SandboxError::Start`]: crate::SandboxError::Start
//! [`GuestClient::signal_all`]: crate::guest_client::GuestClient::signal_all

#![cfg(target_os = "linux")]

mod computer;
pub mod config;
pub mod escape_suite;
pub mod init;
pub mod landlock;
pub mod limits;
pub mod mounts;
pub mod namespaces;
pub mod oneshot;
mod pid1;
pub mod probe;
pub mod seccomp;
mod sys;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use computer::JailComputer;
pub use config::{GrantSpec, JailConfig, LaunchSpec, Limits};

use crate::SandboxError;

/// Environment variable naming the launcher explicitly.
pub const JAIL_INIT_ENV: &str = "CUBICLE_JAIL_INIT";

/// File name of the launcher.
const JAIL_INIT_NAME: &str = "cubicle-jail-init";

/// Finds the launcher: `$CUBICLE_JAIL_INIT`, else `cubicle-jail-init` beside
/// the running executable, else in its parent directory (so test binaries in
/// `target/debug/deps/` find `target/debug/cubicle-jail-init`).
pub fn locate_jail_init() -> Result<PathBuf, SandboxError> {
    locate_from(
        std::env::var_os(JAIL_INIT_ENV),
        std::env::current_exe().ok(),
    )
}

fn locate_from(env: Option<OsString>, exe: Option<PathBuf>) -> Result<PathBuf, SandboxError> {
    if let Some(path) = env.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(SandboxError::Start(format!(
                "cannot find cubicle-jail-init: {JAIL_INIT_ENV} is {}, which is not a file",
                path.display()
            )))
        };
    }
    let mut looked = Vec::new();
    if let Some(dir) = exe.as_deref().and_then(Path::parent) {
        for candidate in [Some(dir), dir.parent()].into_iter().flatten() {
            let path = candidate.join(JAIL_INIT_NAME);
            if path.is_file() {
                return Ok(path);
            }
            looked.push(path.display().to_string());
        }
    }
    Err(SandboxError::Start(format!(
        "cannot find cubicle-jail-init (looked for {}) — install it beside cubicle or set \
         {JAIL_INIT_ENV}",
        if looked.is_empty() {
            "nothing: the running program's location is unknown".to_owned()
        } else {
            looked.join(" and ")
        }
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn locates_env_then_beside_then_parent() {
        let dir = tempfile::tempdir().unwrap();
        let deps = dir.path().join("deps");
        std::fs::create_dir(&deps).unwrap();
        let exe = deps.join("tests-1");
        assert!(locate_from(None, Some(exe.clone())).is_err());
        let parent = dir.path().join(JAIL_INIT_NAME);
        std::fs::write(&parent, "").unwrap();
        assert_eq!(locate_from(None, Some(exe.clone())).unwrap(), parent);
        let beside = deps.join(JAIL_INIT_NAME);
        std::fs::write(&beside, "").unwrap();
        assert_eq!(locate_from(None, Some(exe.clone())).unwrap(), beside);
        let err = locate_from(Some("/no/such".into()), Some(exe))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such, which is not a file"), "{err}");
    }
}
